//! Reading the daemons' sockets at scrape time, and the HTTP server.

use crate::collect::{self, HostSample, Options, OverlaydSample, VarpdSample};
use overlay_api::proto::{Reply, Request, VarpdReply, VarpdRequest};
use overlay_api::Client;
use std::path::PathBuf;
use std::time::Duration;

/// How long a daemon may take to answer one request of a scrape.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// One run directory to read, and its `host` label value, if labelled.
#[derive(Clone, Debug)]
pub struct Target {
    /// `--run-dir`.
    pub run_dir: PathBuf,
    /// The `host` label, or none when only one run directory is read.
    pub host: Option<String>,
}

fn read_overlayd(t: &Target, max_peers: usize) -> Option<OverlaydSample> {
    let mut c = Client::overlayd(&t.run_dir)
        .map_err(|e| log::debug!("overlayd: {e}"))
        .ok()?;
    c.set_timeout(REPLY_TIMEOUT);
    let stats = c
        .stats_top(None, Some(max_peers.try_into().unwrap_or(u32::MAX)))
        .map_err(|e| log::warn!("overlayd stats: {e}"))
        .ok()?;
    // The degraded reason is a nicety: its failure costs only the label.
    let status = match c.call(&Request::ShowStatus { name: None }) {
        Ok(Reply::Status { rows }) => rows,
        _ => Vec::new(),
    };
    Some(OverlaydSample { stats, status })
}

fn read_varpd(t: &Target) -> Option<VarpdSample> {
    let mut c = Client::varpd(&t.run_dir)
        .map_err(|e| log::debug!("varpd: {e}"))
        .ok()?;
    c.set_timeout(REPLY_TIMEOUT);
    match c.call_varpd(&VarpdRequest::Status) {
        Ok(VarpdReply::Status {
            linked,
            plugins,
            instances,
        }) => Some(VarpdSample {
            linked,
            plugins: plugins.len(),
            instances,
        }),
        Ok(other) => {
            log::warn!(
                "varpd status at {}: unexpected {other:?}",
                t.run_dir.display()
            );
            None
        }
        Err(e) => {
            log::warn!("varpd status: {e}");
            None
        }
    }
}

/// Reads every target now, with the busiest `max_peers` peers per overlay:
/// each daemon on a thread of its own, so a scrape waits for the slowest
/// answer rather than for their sum.
pub fn sample(targets: &[Target], max_peers: usize) -> Vec<HostSample> {
    std::thread::scope(|scope| {
        let pending: Vec<_> = targets
            .iter()
            .map(|t| {
                let varpd = scope.spawn(move || read_varpd(t));
                (t, scope.spawn(move || read_overlayd(t, max_peers)), varpd)
            })
            .collect();
        pending
            .into_iter()
            .map(|(t, overlayd, varpd)| HostSample {
                host: t.host.clone(),
                overlayd: overlayd.join().expect("reading overlayd panicked"),
                varpd: varpd.join().expect("reading varpd panicked"),
            })
            .collect()
    })
}

/// One scrape's exposition text; its phases are logged at debug level.
fn timed_text(targets: &[Target], opts: &Options) -> anyhow::Result<String> {
    let t = std::time::Instant::now();
    let hosts = sample(targets, opts.max_peers);
    let read = t.elapsed();
    let families = collect::families(&hosts, opts);
    let built = t.elapsed();
    let text = collect::render(families)?;
    log::debug!(
        "scrape: read {:.1} ms, families {:.1} ms, encode {:.1} ms, {} bytes",
        read.as_secs_f64() * 1e3,
        (built - read).as_secs_f64() * 1e3,
        (t.elapsed() - built).as_secs_f64() * 1e3,
        text.len()
    );
    Ok(text)
}

/// Serves `/metrics` (and a pointer to it on `/`) until the process ends.
/// Requests are handled one at a time: a scrape is a few socket round trips.
pub fn serve(server: tiny_http::Server, targets: &[Target], opts: &Options) {
    let text_ct: tiny_http::Header = "Content-Type: text/plain; version=0.0.4; charset=utf-8"
        .parse()
        .expect("static header");
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let resp = match path {
            "/metrics" => match timed_text(targets, opts) {
                Ok(body) => tiny_http::Response::from_string(body).with_header(text_ct.clone()),
                Err(e) => {
                    log::error!("encoding metrics: {e:#}");
                    tiny_http::Response::from_string(format!("encoding metrics: {e:#}\n"))
                        .with_status_code(500)
                }
            },
            "/" => tiny_http::Response::from_string(
                "overlay-exporter: metrics are at /metrics\n".to_string(),
            ),
            _ => tiny_http::Response::from_string("not found\n".to_string()).with_status_code(404),
        };
        let t = std::time::Instant::now();
        if let Err(e) = req.respond(resp) {
            log::debug!("answering a scrape: {e}");
        }
        log::debug!("answered in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    }
}
