//! `overlay-exporter [--run-dir DIR]... [--host NAME]... [--listen ADDR] [--max-peers N]`
//!
//! Theory: a stateless bridge. Every scrape of `/metrics` reads overlayd's
//! and varpd's snapshots from each run directory's control sockets and
//! serves them in the Prometheus text format (see the library's docs for
//! the mapping). With several run directories each gets a `host` label: the
//! name of the run directory's parent (`/srv/a/run` → `a`), or the `--host`
//! given at the same position.

use anyhow::{bail, Context};
use clap::Parser;
use overlay_exporter::collect::{Options, DEFAULT_MAX_PEERS};
use overlay_exporter::serve::{serve, Target};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(version, about = "Prometheus exporter for overlayd and varpd")]
struct Args {
    /// Run directory of the daemons (their sockets); repeat for several hosts.
    #[arg(long = "run-dir", default_value = overlay_api::DEFAULT_RUN_DIR)]
    run_dirs: Vec<PathBuf>,
    /// `host` label of the run directory at the same position (repeat as
    /// --run-dir); by default, with several run directories, the name of each
    /// one's parent directory. With one run directory and no --host, no
    /// `host` label.
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Address to serve /metrics on.
    #[arg(long, default_value = "127.0.0.1:9477")]
    listen: String,
    /// At most this many underlay peers per overlay get overlay_peer_* series
    /// (the busiest by bytes); overlay_peers counts them all.
    #[arg(long, default_value_t = DEFAULT_MAX_PEERS)]
    max_peers: usize,
}

fn parent_name(dir: &Path) -> String {
    dir.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

fn targets(args: &Args) -> anyhow::Result<Vec<Target>> {
    if !args.hosts.is_empty() && args.hosts.len() != args.run_dirs.len() {
        bail!(
            "{} --host for {} --run-dir: give one per run directory, or none",
            args.hosts.len(),
            args.run_dirs.len()
        );
    }
    let t: Vec<Target> = args
        .run_dirs
        .iter()
        .enumerate()
        .map(|(i, d)| Target {
            run_dir: d.clone(),
            host: match (args.hosts.get(i), args.run_dirs.len()) {
                (Some(h), _) => Some(h.clone()),
                (None, 1) => None,
                (None, _) => Some(parent_name(d)),
            },
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for x in &t {
        if let Some(h) = &x.host {
            if !seen.insert(h) {
                bail!("two run directories get the host label {h:?}: name them with --host");
            }
        }
    }
    Ok(t)
}

/// A scrape of a thousand overlays allocates and frees some 100,000 metric
/// objects of the `prometheus` crate, each with its label pairs: mimalloc
/// does that in about half the time of glibc's malloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let targets = targets(&args)?;
    let server = tiny_http::Server::http(&args.listen)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    log::info!(
        "serving /metrics on {} for {}",
        args.listen,
        targets
            .iter()
            .map(|t| t.run_dir.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    serve(
        server,
        &targets,
        &Options {
            max_peers: args.max_peers,
        },
    );
    Ok(())
}
