//! `--capture`: the frames overlayd itself handled, each with what it did
//! with it — sent to a UL3 address, delivered, queued for a lookup, handed
//! to varpd, injected, or dropped with its reason — including the frames a
//! wire capture never sees because overlayd dropped them.
//!
//! ovsnoop asks the overlayd of `--run-dir` for a capture over the control
//! socket (`capture-start`, with the overlays and `--drops-only`, which
//! overlayd applies itself), reads one [`CaptureMsg`] line per frame until
//! Ctrl-C, SIGTERM, `-c COUNT` frames or `--duration`, then sends
//! `capture-stop` and reads on until overlayd's end line with the totals.
//! overlayd never waits for ovsnoop: frames it could not keep for a slow
//! reader are lost, and counted, and the count is shown at the end.
//!
//! [`Captured`] is one frame with its inner Ethernet frame decoded (by
//! [`crate::decode`]), so that `--mac`, `--host`, `--port` and `--vni` filter
//! here as on the wire (the UL3 addresses of the verdict count as outer
//! addresses).

use crate::decode::{self, Frame, LinkType};
use crate::filter::Subject;
use crate::format;
use overlay_api::capture::{CaptureFrame, CaptureMsg, CaptureOverlay, CaptureVerdict};
use overlay_api::proto::{Reply, Request};
use overlay_api::{DropReason, Mac};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to capture and for how long.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Overlays by name; every overlay (and the muxes' drops) when empty.
    pub overlays: Vec<String>,
    /// Only dropped frames.
    pub drops_only: bool,
    /// Bytes kept of each frame (all when `None`).
    pub snaplen: Option<u32>,
    /// Stop after this many frames passed the filters.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// One captured frame and its decoded inner frame.
pub struct Captured {
    /// What overlayd sent.
    pub rec: CaptureFrame,
    /// The inner Ethernet frame, decoded (`None` for a mux's drop: its
    /// bytes are a datagram, not a frame).
    pub inner: Option<Frame>,
}

impl Captured {
    /// Decodes `rec`'s frame.
    pub fn new(rec: CaptureFrame) -> Captured {
        let inner = rec.overlay.as_ref().map(|_| {
            decode::decode(
                LinkType::Ethernet,
                &rec.frame,
                rec.len as usize,
                &decode::Options::default(),
            )
        });
        Captured { rec, inner }
    }

    /// The UL3 addresses of the frame: where it was sent, who sent it.
    fn ul3(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let dest = match self.rec.verdict {
            CaptureVerdict::Sent { dest } => Some(dest),
            _ => None,
        };
        dest.into_iter().chain(self.rec.from).chain(self.rec.listen)
    }

    /// Where the frame comes from, as a line names it: `VNI n (ov0)`, or
    /// `VNI n (mux 10.0.0.1:4789)` for a mux's drop.
    fn origin(&self) -> String {
        match &self.rec.overlay {
            Some(o) => format!("VNI {} ({o})", self.rec.vni),
            None => format!(
                "VNI {} (mux {})",
                self.rec.vni,
                self.rec
                    .listen
                    .map_or_else(|| "?".to_string(), |l| l.to_string())
            ),
        }
    }

    /// One line: origin, direction, the inner frame as on the wire, the
    /// verdict.
    pub fn line(&self) -> String {
        let mut s = format!("{}  {}  ", self.origin(), self.rec.dir.as_str());
        match &self.inner {
            Some(f) => format::line_into(&mut s, f),
            None => {
                if let Some(from) = self.rec.from {
                    s.push_str(&format!("from {from}  "));
                }
                s.push_str(&format!("len {}", self.rec.len));
            }
        }
        s.push_str(&format!("  {}", self.rec.verdict));
        s
    }

    /// Every field: the line, then the decoded layers.
    pub fn verbose(&self, number: u64) -> String {
        let mut s = format!(
            "CAPTURE:  ----- Frame {number} -----\nCAPTURE:  {}\nCAPTURE:  verdict = {}\n",
            self.line(),
            self.rec.verdict
        );
        if let Some(from) = self.rec.from {
            s.push_str(&format!(
                "CAPTURE:  underlay = {from} -> {}\n",
                self.rec
                    .listen
                    .map_or_else(|| "?".to_string(), |l| l.to_string())
            ));
        }
        if !self.rec.outer.is_empty() {
            s.push_str(&format!(
                "CAPTURE:  outer header = {}\n",
                overlay_api::hexbytes::encode(&self.rec.outer)
            ));
        }
        if let Some(f) = &self.inner {
            s.push_str(&format::verbose(f, number));
        }
        s
    }

    /// The frame as overlayd sent it, one JSON object, with `n`.
    pub fn json(&self, number: u64) -> String {
        let mut v = serde_json::to_value(&self.rec).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("n".into(), number.into());
            o.insert("decision".into(), self.rec.verdict.to_string().into());
        }
        v.to_string()
    }
}

impl Subject for Captured {
    fn vni(&self) -> Option<u32> {
        Some(self.rec.vni)
    }

    fn overlay(&self) -> Option<&str> {
        self.rec.overlay.as_deref()
    }

    fn has_mac(&self, m: &Mac) -> bool {
        self.inner.as_ref().is_some_and(|f| f.has_mac(m))
    }

    fn has_host(&self, a: &IpAddr) -> bool {
        self.ul3().any(|u| u.ip() == *a) || self.inner.as_ref().is_some_and(|f| f.has_host(a))
    }

    fn has_port(&self, p: u16) -> bool {
        self.ul3().any(|u| u.port() == p) || self.inner.as_ref().is_some_and(|f| f.has_port(p))
    }
}

/// What a capture saw, for the summary.
#[derive(Debug, Default)]
pub struct Summary {
    /// Frames overlayd sent.
    pub frames: u64,
    /// Frames overlayd lost for this capture (its own count, at the end).
    pub lost: u64,
    /// Frames by what became of them (`sent`, `delivered`, ...).
    pub by_verdict: BTreeMap<&'static str, u64>,
    /// Drops by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// Whether overlayd confirmed the end (its totals are exact).
    pub ended: bool,
}

impl Summary {
    fn count(&mut self, v: &CaptureVerdict) {
        let name = match v {
            CaptureVerdict::Sent { .. } => "sent",
            CaptureVerdict::Delivered { .. } => "delivered",
            CaptureVerdict::Queued { .. } => "queued",
            CaptureVerdict::ToVarpd { .. } => "to varpd",
            CaptureVerdict::Answered => "answered by varpd",
            CaptureVerdict::Injected => "injected",
            CaptureVerdict::Dropped { reason } => {
                *self.drops.entry(*reason).or_default() += 1;
                "dropped"
            }
        };
        *self.by_verdict.entry(name).or_default() += 1;
    }

    /// `N frames captured; delivered a; dropped d (reason n, ...); ...; L lost`.
    pub fn text(&self) -> String {
        let mut s = format!("{} frames captured", self.frames);
        for (k, n) in &self.by_verdict {
            s.push_str(&format!("; {k} {n}"));
            if *k == "dropped" {
                let d: Vec<String> = self.drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
                s.push_str(&format!(" ({})", d.join(", ")));
            }
        }
        s.push_str(&format!("; {} lost", self.lost));
        if !self.ended {
            s.push_str(" (overlayd did not confirm the end: the count may be short)");
        }
        s
    }
}

/// Runs a capture on the overlayd of `run_dir`: `ready` gets the overlays
/// captured once it runs, `each` every frame, and returns whether it
/// passed the filters (for `-c`). Stops on `stop`, the count or the
/// duration.
pub fn run(
    run_dir: &Path,
    opts: &Options,
    stop: &AtomicBool,
    ready: impl FnOnce(&[CaptureOverlay]) -> anyhow::Result<()>,
    mut each: impl FnMut(Captured) -> anyhow::Result<bool>,
) -> anyhow::Result<Summary> {
    let path = run_dir.join(overlay_api::OVERLAYD_SOCKET);
    let stream = UnixStream::connect(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to {}: {e} (is overlayd running with this --run-dir?)",
            path.display()
        )
    })?;
    let mut writer = stream.try_clone()?;
    let req = Request::CaptureStart {
        overlays: opts.overlays.clone(),
        drops_only: opts.drops_only,
        snaplen: opts.snaplen,
    };
    let mut line = serde_json::to_vec(&req)?;
    line.push(b'\n');
    writer.write_all(&line)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut buf = Vec::new();
    reader
        .read_until(b'\n', &mut buf)
        .map_err(|e| anyhow::anyhow!("no answer from {}: {e}", path.display()))?;
    match serde_json::from_slice::<Reply>(&buf) {
        Ok(Reply::Capturing { overlays }) => ready(&overlays)?,
        Ok(Reply::Error { error }) => anyhow::bail!("overlayd refused the capture: {error}"),
        Ok(other) => anyhow::bail!("unexpected answer from overlayd: {other:?}"),
        Err(e) => anyhow::bail!(
            "overlayd does not know capture-start (an older overlayd?): {e}: {}",
            String::from_utf8_lossy(&buf).trim()
        ),
    }
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))?;
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut shown = 0u64;
    let mut stopping: Option<Instant> = None;
    let mut done = false;
    buf.clear();
    while !done {
        let want_stop = stop.load(Ordering::Relaxed)
            || opts.count.is_some_and(|c| shown >= c)
            || opts.duration.is_some_and(|d| started.elapsed() >= d);
        if want_stop && stopping.is_none() {
            let mut l = serde_json::to_vec(&Request::CaptureStop)?;
            l.push(b'\n');
            if writer.write_all(&l).is_err() {
                break;
            }
            stopping = Some(Instant::now());
        }
        if stopping.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
            break;
        }
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) if buf.last() == Some(&b'\n') => {}
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => anyhow::bail!("reading the capture from {}: {e}", path.display()),
        }
        let msg = serde_json::from_slice::<CaptureMsg>(&buf);
        match msg {
            Ok(CaptureMsg::Frame(f)) => {
                summary.frames += 1;
                summary.count(&f.verdict);
                // Frames after the count go uncounted and unshown.
                if opts.count.is_none_or(|c| shown < c) && each(Captured::new(f))? {
                    shown += 1;
                }
            }
            Ok(CaptureMsg::Lost { total }) => summary.lost = total,
            Ok(CaptureMsg::End { lost, .. }) => {
                summary.lost = lost;
                summary.ended = true;
                done = true;
            }
            Err(_) => match serde_json::from_slice::<Reply>(&buf) {
                Ok(Reply::Error { error }) => anyhow::bail!("overlayd: {error}"),
                _ => anyhow::bail!(
                    "unexpected line from overlayd: {}",
                    String::from_utf8_lossy(&buf).trim()
                ),
            },
        }
        buf.clear();
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;
    use overlay_api::capture::CaptureDir;

    fn rx_drop() -> Captured {
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x88, 0xb5];
        frame.extend_from_slice(&[0; 46]);
        Captured::new(CaptureFrame {
            ts_ns: 1,
            overlay: Some("ov0".into()),
            vni: 7,
            dir: CaptureDir::Rx,
            verdict: CaptureVerdict::Dropped {
                reason: DropReason::SpoofedSource,
            },
            len: 60,
            frame,
            from: Some("10.0.0.9:5000".parse().unwrap()),
            listen: Some("10.0.0.1:4789".parse().unwrap()),
            outer: vec![8, 0, 0, 0, 0, 0, 7, 0],
        })
    }

    #[test]
    fn a_frame_shows_as_on_the_wire_with_its_verdict_last() {
        let c = rx_drop();
        assert_eq!(
            c.line(),
            "VNI 7 (ov0)  rx  02:00:00:00:00:02 -> 02:00:00:00:00:01  ethertype 0x88b5  len 60  dropped: spoofed-source"
        );
        let v = c.verbose(3);
        assert!(
            v.contains("CAPTURE:  underlay = 10.0.0.9:5000 -> 10.0.0.1:4789"),
            "{v}"
        );
        assert!(
            v.contains("CAPTURE:  outer header = 0800000000000700"),
            "{v}"
        );
        let j: serde_json::Value = serde_json::from_str(&c.json(3)).unwrap();
        assert_eq!(
            (j["n"].as_u64(), j["reason"].as_str()),
            (Some(3), Some("spoofed-source"))
        );
    }

    #[test]
    fn filters_see_the_inner_frame_and_the_underlay_addresses() {
        let c = rx_drop();
        let f = |f: Filter| f.matches(&c);
        assert!(f(Filter {
            hosts: vec!["10.0.0.9".parse().unwrap()],
            ports: vec![4789],
            macs: vec!["02:00:00:00:00:02".parse().unwrap()],
            vnis: vec![7],
            overlays: vec!["ov0".into()],
        }));
        assert!(!f(Filter {
            hosts: vec!["10.0.0.8".parse().unwrap()],
            ..Filter::default()
        }));
        assert!(!f(Filter {
            overlays: vec!["ov1".into()],
            ..Filter::default()
        }));
    }

    #[test]
    fn the_summary_counts_verdicts_and_drops_by_reason() {
        let mut s = Summary::default();
        s.count(&rx_drop().rec.verdict);
        s.count(&CaptureVerdict::Injected);
        s.frames = 2;
        s.ended = true;
        assert_eq!(
            s.text(),
            "2 frames captured; dropped 1 (spoofed-source 1); injected 1; 0 lost"
        );
    }
}
