//! From probe lines to per-frame decisions.
//!
//! overlayd's data path runs on one thread, so the probes of one frame
//! fire back to back: `tx` opens a frame and the next of `encap` (sent),
//! `target-miss` (queued), `lookup-request` with `bcast` 1 (handed to
//! varpd, for ARP/NDP/DHCP) or `drop` (dropped, with its reason) closes it.
//! Probes that fire without an open `tx` are frames of their own: `rx` (a
//! datagram delivered to the TAP device), `drop` at a mux (`overlay` `-`)
//! or on the receive side, `encap` of a frame released from a pending
//! queue after varpd answered, and `inject` (varpd's proxy ARP/NDP reply,
//! named by varpd's `proxy-arp`/`proxy-ndp`, which fire just before it in
//! the other daemon). `lookup-reply` is shown as a line of its own: it is
//! what turns queued frames into sent or dropped ones.

use crate::filter::Subject;
use overlay_api::Mac;
use serde::Serialize;
use std::collections::VecDeque;
use std::fmt::Write;
use std::net::IpAddr;

/// One probe firing, as the generated program printed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    /// Provider (`overlay`, `varpd`).
    pub provider: String,
    /// Probe (`tx`, `proxy-arp`, ...).
    pub probe: String,
    /// `nsecs` when it fired (CLOCK_MONOTONIC).
    pub ns: u64,
    /// Argument values, by name.
    pub args: Vec<(String, String)>,
}

impl ProbeEvent {
    /// Parses one line of the program's output for `probes` (`None` for
    /// anything else bpftrace prints).
    pub fn parse(line: &str, probes: &[super::script::Probe]) -> Option<ProbeEvent> {
        let mut it = line.strip_suffix('\n').unwrap_or(line).split('\t');
        if it.next()? != super::script::TAG {
            return None;
        }
        let provider = it.next()?;
        let probe = it.next()?;
        let ns = it.next()?.parse().ok()?;
        let def = probes
            .iter()
            .find(|p| p.provider == provider && p.name == probe)?;
        let args = def
            .args
            .iter()
            .zip(it)
            .map(|(a, v)| (a.name.clone(), v.to_string()))
            .collect();
        Some(ProbeEvent {
            provider: provider.to_string(),
            probe: probe.to_string(),
            ns,
            args,
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn num(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok()
    }

    fn mac(&self, name: &str) -> Option<Mac> {
        self.get(name)?.parse().ok()
    }

    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("?").to_string()
    }
}

/// Which way a traced frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// From the overlay's TAP device towards the underlay.
    Tx,
    /// From the underlay towards the TAP device.
    Rx,
    /// Made by varpd and written to the TAP device.
    Inject,
    /// A lookup's answer (not a frame).
    Lookup,
}

impl Dir {
    fn as_str(self) -> &'static str {
        match self {
            Dir::Tx => "tx",
            Dir::Rx => "rx",
            Dir::Inject => "inject",
            Dir::Lookup => "lookup",
        }
    }
}

/// What the driver decided for a frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Encapsulated and sent to a UL3 destination.
    Sent {
        /// `ip:port`.
        dest: String,
        /// Released from a pending queue (varpd answered a lookup).
        released: bool,
        /// For a TCP segmentation offload super-frame, sent as several
        /// datagrams: which one this is (2, 3, ...; the first is the frame's
        /// own record).
        #[serde(skip_serializing_if = "Option::is_none")]
        segment: Option<u32>,
    },
    /// No target entry yet: queued while varpd is asked.
    Queued {
        /// This frame's miss created the pending entry (and asked varpd).
        new_entry: bool,
    },
    /// A broadcast (ARP, NDP, DHCP) handed to varpd with its lookup.
    ToVarpd {
        /// The lookup's id.
        id: u64,
    },
    /// Dropped.
    Dropped {
        /// The drop reason (`ovadm show-stats` names).
        reason: String,
    },
    /// Written to the TAP device from the underlay.
    Delivered {
        /// The UL3 address it came from.
        peer: String,
    },
    /// Injected by varpd.
    Injected {
        /// `proxy ARP`, `proxy NDP`, or `varpd` when varpd is not traced.
        by: String,
        /// What varpd answered (`192.168.77.2 is-at 02:...`), if traced.
        #[serde(skip_serializing_if = "Option::is_none")]
        answer: Option<String>,
    },
    /// varpd answered a lookup.
    Answered {
        /// `ip:port`, `drop:REASON`, `handled` or `not-answered:REASON`.
        result: String,
        /// Nanoseconds since the request.
        ns: u64,
    },
    /// The frame's probes stopped before a decision (the trace ended).
    Unknown,
}

/// One traced frame (or lookup answer), with its decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Record {
    /// `nsecs` of its first probe.
    #[serde(skip)]
    pub ns: u64,
    /// Overlay name (`-` for a datagram a mux dropped before demux).
    pub overlay: String,
    /// Direction.
    pub dir: Dir,
    /// VNI, when a probe gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vni: Option<u32>,
    /// Inner source MAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_mac: Option<Mac>,
    /// Inner destination MAC (the lookup's MAC for a lookup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_mac: Option<Mac>,
    /// Bytes of the inner frame (0 when dropped in bulk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
    /// What happened to it.
    #[serde(flatten)]
    pub decision: Decision,
    /// The probes that fired for it, in order.
    pub probes: Vec<String>,
}

impl Record {
    /// Whether it is a dropped frame (`--drops-only`).
    pub fn is_drop(&self) -> bool {
        matches!(self.decision, Decision::Dropped { .. })
            || matches!(&self.decision, Decision::Answered { result, .. } if result.starts_with("drop"))
    }

    /// The UL3 `ip:port` or `ip` the decision names, split.
    fn ul3(&self) -> Option<(IpAddr, Option<u16>)> {
        let s = match &self.decision {
            Decision::Sent { dest, .. } => dest.as_str(),
            Decision::Delivered { peer } => peer.as_str(),
            Decision::Answered { result, .. } => result.as_str(),
            _ => return None,
        };
        if let Ok(a) = s.parse::<std::net::SocketAddr>() {
            return Some((a.ip(), Some(a.port())));
        }
        s.parse().ok().map(|ip| (ip, None))
    }

    /// The decision in words.
    pub fn decision_text(&self) -> String {
        match &self.decision {
            Decision::Sent {
                dest,
                released,
                segment,
            } => match (released, segment) {
                (true, _) => format!("sent to {dest} (released from the lookup queue)"),
                (false, Some(n)) => format!("sent to {dest} (segment {n})"),
                (false, None) => format!("sent to {dest}"),
            },
            Decision::Queued { new_entry } => {
                if *new_entry {
                    "queued for lookup (asked varpd)".into()
                } else {
                    "queued for lookup (already asked)".into()
                }
            }
            Decision::ToVarpd { id } => format!("handed to varpd (lookup {id})"),
            Decision::Dropped { reason } => format!("dropped: {reason}"),
            Decision::Delivered { peer } => format!("delivered from {peer}"),
            Decision::Injected { by, answer } => match answer {
                Some(a) => format!("injected by {by} ({a})"),
                None => format!("injected by {by}"),
            },
            Decision::Answered { result, ns } => {
                format!("answered {result} in {} us", ns / 1000)
            }
            Decision::Unknown => "no decision seen".into(),
        }
    }

    /// One line, VNI first as on the wire: `VNI 4242 (ov0)  tx  SRC ->
    /// DST  len 98  sent to 10.77.0.2:4789`.
    pub fn line(&self) -> String {
        let mut o = String::new();
        match self.vni {
            Some(v) => {
                let _ = write!(o, "VNI {v} ({})", self.overlay);
            }
            None => {
                let _ = write!(o, "{}", self.overlay);
            }
        }
        let _ = write!(o, "  {}", self.dir.as_str());
        match (self.src_mac, self.dst_mac) {
            (Some(s), Some(d)) => {
                let _ = write!(o, "  {s} -> {d}");
            }
            (None, Some(d)) => {
                let _ = write!(o, "  -> {d}");
            }
            _ => {}
        }
        if let Some(l) = self.len {
            let _ = write!(o, "  len {l}");
        }
        let _ = write!(o, "  {}", self.decision_text());
        o
    }

    /// Every field, one per line, `snoop -v` style.
    pub fn verbose(&self, number: u64, wall_ns: u64) -> String {
        let p = "TRACE:  ";
        let mut o = String::new();
        let _ = writeln!(o, "{p}----- Event {number} -----");
        let _ = writeln!(o, "{p}Time = {}", clock(wall_ns));
        let _ = writeln!(o, "{p}Overlay = {}", self.overlay);
        let _ = writeln!(o, "{p}Direction = {}", self.dir.as_str());
        if let Some(v) = self.vni {
            let _ = writeln!(o, "{p}VNI = {v}");
        }
        if let Some(m) = self.src_mac {
            let _ = writeln!(o, "{p}Source = {m}");
        }
        if let Some(m) = self.dst_mac {
            let _ = writeln!(o, "{p}Destination = {m}");
        }
        if let Some(l) = self.len {
            let _ = writeln!(o, "{p}Length = {l} bytes");
        }
        let _ = writeln!(o, "{p}Decision = {}", self.decision_text());
        let _ = writeln!(o, "{p}Probes = {}", self.probes.join(", "));
        o
    }

    /// One JSON object: `event`, `ts`, then the record's fields.
    pub fn json(&self, number: u64, wall_ns: u64) -> String {
        #[derive(Serialize)]
        struct J<'a> {
            event: u64,
            ts: f64,
            #[serde(flatten)]
            r: &'a Record,
        }
        serde_json::to_string(&J {
            event: number,
            ts: wall_ns as f64 / 1e9,
            r: self,
        })
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// `HH:MM:SS.ffffff` (UTC) of a wall-clock time in ns.
fn clock(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06} UTC",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        ns % 1_000_000_000 / 1000
    )
}

impl Subject for Record {
    fn vni(&self) -> Option<u32> {
        self.vni
    }

    fn overlay(&self) -> Option<&str> {
        Some(&self.overlay)
    }

    fn has_mac(&self, m: &Mac) -> bool {
        self.src_mac.as_ref() == Some(m) || self.dst_mac.as_ref() == Some(m)
    }

    fn has_host(&self, a: &IpAddr) -> bool {
        self.ul3().is_some_and(|(ip, _)| ip == *a)
            || matches!(&self.decision, Decision::Injected { answer: Some(t), .. }
                if t.split_whitespace().next().and_then(|w| w.parse::<IpAddr>().ok()) == Some(*a))
    }

    fn has_port(&self, p: u16) -> bool {
        self.ul3().and_then(|(_, port)| port) == Some(p)
    }
}

/// A proxy answer of varpd, waiting for overlayd's `inject` of it.
struct Proxy {
    ns: u64,
    overlay: String,
    requester: Option<Mac>,
    by: &'static str,
    answer: String,
}

/// Turns probe events, in firing order, into [`Record`]s.
#[derive(Default)]
pub struct Assembler {
    open: Option<Record>,
    /// The frame an `encap` just sent (overlay, destination MAC, datagrams
    /// so far): more `encap`s right after it are its TSO segments.
    last_sent: Option<(String, Option<Mac>, u32)>,
    proxies: VecDeque<Proxy>,
}

/// A proxy answer older than this (ns) no longer names an `inject`.
const PROXY_WINDOW_NS: u64 = 2_000_000_000;

impl Assembler {
    /// Feeds one event; returns the records it completes (in order).
    pub fn push(&mut self, e: &ProbeEvent) -> Vec<Record> {
        let mut out = Vec::new();
        let probe = e.probe.clone();
        let last_sent = self.last_sent.take();
        match (e.provider.as_str(), e.probe.as_str()) {
            ("overlay", "tx") => {
                out.extend(self.close_open());
                self.open = Some(Record {
                    ns: e.ns,
                    overlay: e.text("overlay"),
                    dir: Dir::Tx,
                    vni: e.num("vni").map(|v| v as u32),
                    src_mac: e.mac("src"),
                    dst_mac: e.mac("dst"),
                    len: e.num("len"),
                    decision: Decision::Unknown,
                    probes: vec![probe],
                });
            }
            ("overlay", "target-hit" | "target-queue-overflow") => {
                if let Some(o) = self.open.as_mut() {
                    o.probes.push(probe);
                }
            }
            ("overlay", "encap") => {
                let dest = e.text("ip");
                let dest = match e.get("port") {
                    Some(port) if !dest.contains(':') || dest.starts_with('[') => {
                        format!("{dest}:{port}")
                    }
                    Some(port) => format!("[{dest}]:{port}"),
                    None => dest,
                };
                let segment = match (&last_sent, self.open.is_some()) {
                    (Some((ov, mac, n)), false)
                        if *ov == e.text("overlay") && *mac == e.mac("dst") =>
                    {
                        Some(n + 1)
                    }
                    _ => None,
                };
                match self.take_open(e) {
                    Some(mut o) => {
                        o.probes.push(probe);
                        o.decision = Decision::Sent {
                            dest,
                            released: false,
                            segment: None,
                        };
                        self.last_sent = Some((o.overlay.clone(), o.dst_mac, 1));
                        out.push(o);
                    }
                    None => {
                        if let Some(n) = segment {
                            self.last_sent = Some((e.text("overlay"), e.mac("dst"), n));
                        }
                        out.push(Record {
                            ns: e.ns,
                            overlay: e.text("overlay"),
                            dir: Dir::Tx,
                            vni: e.num("vni").map(|v| v as u32),
                            src_mac: None,
                            dst_mac: e.mac("dst"),
                            len: e.num("len"),
                            decision: Decision::Sent {
                                dest,
                                released: segment.is_none(),
                                segment,
                            },
                            probes: vec![probe],
                        })
                    }
                }
            }
            ("overlay", "target-miss") => {
                if let Some(mut o) = self.take_open(e) {
                    o.probes.push(probe);
                    o.decision = Decision::Queued {
                        new_entry: e.num("new_entry") == Some(1),
                    };
                    out.push(o);
                }
            }
            ("overlay", "lookup-request") if e.num("bcast") == Some(1) => {
                if let Some(mut o) = self.take_open(e) {
                    o.probes.push(probe);
                    o.decision = Decision::ToVarpd {
                        id: e.num("id").unwrap_or(0),
                    };
                    out.push(o);
                }
            }
            ("overlay", "drop") => {
                let reason = e.text("reason");
                match self.take_open(e) {
                    Some(mut o) => {
                        o.probes.push(probe);
                        o.decision = Decision::Dropped { reason };
                        out.push(o);
                    }
                    None => {
                        out.extend(self.close_open());
                        let rx = matches!(
                            reason.as_str(),
                            "short-header"
                                | "no-vni-flag"
                                | "unknown-vni"
                                | "tap-write-error"
                                | "too-big"
                        );
                        out.push(Record {
                            ns: e.ns,
                            overlay: e.text("overlay"),
                            dir: if rx { Dir::Rx } else { Dir::Tx },
                            vni: e.num("vni").map(|v| v as u32),
                            src_mac: None,
                            dst_mac: None,
                            len: e.num("len"),
                            decision: Decision::Dropped { reason },
                            probes: vec![probe],
                        });
                    }
                }
            }
            ("overlay", "rx") => {
                out.extend(self.close_open());
                out.push(Record {
                    ns: e.ns,
                    overlay: e.text("overlay"),
                    dir: Dir::Rx,
                    vni: e.num("vni").map(|v| v as u32),
                    src_mac: e.mac("src"),
                    dst_mac: e.mac("dst"),
                    len: e.num("len"),
                    decision: Decision::Delivered {
                        peer: e.text("peer"),
                    },
                    probes: vec![probe],
                });
            }
            ("overlay", "inject") => {
                out.extend(self.close_open());
                let overlay = e.text("overlay");
                let dst = e.mac("dst");
                self.proxies
                    .retain(|p| e.ns.saturating_sub(p.ns) < PROXY_WINDOW_NS);
                let found = self
                    .proxies
                    .iter()
                    .position(|p| p.overlay == overlay && p.requester == dst);
                let (by, answer) = match found.and_then(|i| self.proxies.remove(i)) {
                    Some(p) => (p.by.to_string(), Some(p.answer)),
                    None => ("varpd".to_string(), None),
                };
                out.push(Record {
                    ns: e.ns,
                    overlay,
                    dir: Dir::Inject,
                    vni: e.num("vni").map(|v| v as u32),
                    src_mac: e.mac("src"),
                    dst_mac: dst,
                    len: e.num("len"),
                    decision: Decision::Injected { by, answer },
                    probes: vec![probe],
                });
            }
            ("overlay", "lookup-reply") => {
                out.push(Record {
                    ns: e.ns,
                    overlay: e.text("overlay"),
                    dir: Dir::Lookup,
                    vni: None,
                    src_mac: None,
                    dst_mac: e.mac("mac"),
                    len: None,
                    decision: Decision::Answered {
                        result: e.text("result"),
                        ns: e.num("ns").unwrap_or(0),
                    },
                    probes: vec![probe],
                });
            }
            ("varpd", "proxy-arp" | "proxy-ndp") => {
                let arp = e.probe == "proxy-arp";
                self.proxies.push_back(Proxy {
                    ns: e.ns,
                    overlay: e.text("overlay"),
                    requester: e.mac("requester"),
                    by: if arp { "proxy ARP" } else { "proxy NDP" },
                    answer: format!("{} is-at {}", e.text("ip"), e.text("mac")),
                });
            }
            _ => {}
        }
        out
    }

    /// The open `tx` frame, if `e` belongs to it (same overlay).
    fn take_open(&mut self, e: &ProbeEvent) -> Option<Record> {
        if self.open.as_ref()?.overlay == e.text("overlay") {
            self.open.take()
        } else {
            None
        }
    }

    fn close_open(&mut self) -> Option<Record> {
        self.open.take()
    }

    /// The frame still open when the trace ends.
    pub fn finish(&mut self) -> Option<Record> {
        self.close_open()
    }
}

#[cfg(test)]
mod tests {
    use super::super::script;
    use super::*;

    fn events(lines: &[&str]) -> Vec<ProbeEvent> {
        let mut all = script::probes("overlay.d", script::OVERLAY_D).unwrap();
        all.extend(script::probes("varpd.d", script::VARPD_D).unwrap());
        lines
            .iter()
            .map(|l| {
                ProbeEvent::parse(&l.replace(' ', "\t"), &all).unwrap_or_else(|| panic!("{l}"))
            })
            .collect()
    }

    fn run(lines: &[&str]) -> Vec<Record> {
        let mut a = Assembler::default();
        let mut out: Vec<Record> = events(lines).iter().flat_map(|e| a.push(e)).collect();
        out.extend(a.finish());
        out
    }

    const M1: &str = "02:77:00:00:00:01";
    const M2: &str = "02:77:00:00:00:02";

    #[test]
    fn decisions_are_joined_to_their_frames() {
        let tx = format!("OVSNOOP overlay tx 1 ov0 4242 {M1} {M2} 98");
        let lines = [
            tx.clone(),
            format!("OVSNOOP overlay target-hit 2 ov0 {M2} 10.77.0.2:4789"),
            format!("OVSNOOP overlay encap 3 ov0 4242 {M2} 10.77.0.2 4789 98"),
            tx.clone(),
            format!("OVSNOOP overlay target-miss 5 ov0 {M2} 1"),
            format!("OVSNOOP overlay lookup-request 6 ov0 {M2} 7 0"),
            format!("OVSNOOP overlay lookup-reply 7 ov0 {M2} 10.77.0.2:4789 5000"),
            format!("OVSNOOP overlay encap 8 ov0 4242 {M2} 10.77.0.2 4789 98"),
            tx.clone(),
            "OVSNOOP overlay drop 10 ov0 4242 target-drop 98".to_string(),
            "OVSNOOP overlay drop 11 - 4999 unknown-vni 60".to_string(),
            format!("OVSNOOP overlay rx 12 ov0 4242 {M2} {M1} 98 10.77.0.2"),
            format!("OVSNOOP varpd proxy-arp 13 ov0 {M1} 192.168.77.2 {M2}"),
            format!("OVSNOOP overlay inject 14 ov0 4242 {M2} {M1} 42"),
            format!("OVSNOOP overlay tx 15 ov0 4242 {M1} ff:ff:ff:ff:ff:ff 42"),
            "OVSNOOP overlay lookup-request 16 ov0 ff:ff:ff:ff:ff:ff 8 1".to_string(),
            tx,
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let r = run(&lines);
        let text: Vec<String> = r.iter().map(Record::line).collect();
        let want = [
            format!("VNI 4242 (ov0)  tx  {M1} -> {M2}  len 98  sent to 10.77.0.2:4789"),
            format!("VNI 4242 (ov0)  tx  {M1} -> {M2}  len 98  queued for lookup (asked varpd)"),
            format!("ov0  lookup  -> {M2}  answered 10.77.0.2:4789 in 5 us"),
            format!("VNI 4242 (ov0)  tx  -> {M2}  len 98  sent to 10.77.0.2:4789 (released from the lookup queue)"),
            format!("VNI 4242 (ov0)  tx  {M1} -> {M2}  len 98  dropped: target-drop"),
            "VNI 4999 (-)  rx  len 60  dropped: unknown-vni".to_string(),
            format!("VNI 4242 (ov0)  rx  {M2} -> {M1}  len 98  delivered from 10.77.0.2"),
            format!("VNI 4242 (ov0)  inject  {M2} -> {M1}  len 42  injected by proxy ARP (192.168.77.2 is-at {M2})"),
            format!("VNI 4242 (ov0)  tx  {M1} -> ff:ff:ff:ff:ff:ff  len 42  handed to varpd (lookup 8)"),
            format!("VNI 4242 (ov0)  tx  {M1} -> {M2}  len 98  no decision seen"),
        ];
        assert_eq!(text, want);
        assert_eq!(r[0].probes, ["tx", "target-hit", "encap"]);
        assert!(r[4].is_drop() && r[5].is_drop() && !r[0].is_drop());
        let j: serde_json::Value = serde_json::from_str(&r[4].json(5, 1_000_000_000)).unwrap();
        assert_eq!(j["decision"], "dropped");
        assert_eq!(j["reason"], "target-drop");
        assert_eq!(j["vni"], 4242);
        assert_eq!(j["dir"], "tx");
        assert_eq!(j["event"], 5);
        let s: serde_json::Value = serde_json::from_str(&r[0].json(1, 0)).unwrap();
        assert_eq!(s["dest"], "10.77.0.2:4789");
        assert!(r[4]
            .verbose(5, 0)
            .contains("TRACE:  Decision = dropped: target-drop"));
    }

    #[test]
    fn tso_segments_are_not_queue_releases() {
        let r = run(&[
            &format!("OVSNOOP overlay tx 1 ov0 4242 {M1} {M2} 9000"),
            &format!("OVSNOOP overlay target-hit 2 ov0 {M2} 10.77.0.2:4789"),
            &format!("OVSNOOP overlay encap 3 ov0 4242 {M2} 10.77.0.2 4789 1414"),
            &format!("OVSNOOP overlay encap 4 ov0 4242 {M2} 10.77.0.2 4789 1414"),
            &format!("OVSNOOP overlay encap 5 ov0 4242 {M2} 10.77.0.2 4789 1000"),
            &format!("OVSNOOP overlay lookup-reply 6 ov0 {M2} 10.77.0.2:4789 5000"),
            &format!("OVSNOOP overlay encap 7 ov0 4242 {M2} 10.77.0.2 4789 98"),
        ]);
        let d: Vec<String> = r.iter().map(Record::decision_text).collect();
        assert_eq!(
            d,
            [
                "sent to 10.77.0.2:4789",
                "sent to 10.77.0.2:4789 (segment 2)",
                "sent to 10.77.0.2:4789 (segment 3)",
                "answered 10.77.0.2:4789 in 5 us",
                "sent to 10.77.0.2:4789 (released from the lookup queue)",
            ]
        );
    }

    #[test]
    fn trace_filters() {
        use crate::filter::Filter;
        let r = run(&[
            &format!("OVSNOOP overlay tx 1 ov0 4242 {M1} {M2} 98"),
            &format!("OVSNOOP overlay encap 3 ov0 4242 {M2} 10.77.0.2 4789 98"),
        ]);
        let f = |f: Filter| f.matches(&r[0]);
        assert!(f(Filter {
            vnis: vec![4242],
            ..Filter::default()
        }));
        assert!(f(Filter {
            overlays: vec!["ov0".into()],
            ..Filter::default()
        }));
        assert!(f(Filter {
            macs: vec![M1.parse().unwrap()],
            ..Filter::default()
        }));
        assert!(f(Filter {
            hosts: vec!["10.77.0.2".parse().unwrap()],
            ..Filter::default()
        }));
        assert!(f(Filter {
            ports: vec![4789],
            ..Filter::default()
        }));
        assert!(!f(Filter {
            ports: vec![8472],
            ..Filter::default()
        }));
        assert!(!f(Filter {
            vnis: vec![1],
            macs: vec![M1.parse().unwrap()],
            ..Filter::default()
        }));
    }

    #[test]
    fn other_lines_are_ignored() {
        let all = script::probes("overlay.d", script::OVERLAY_D).unwrap();
        assert!(ProbeEvent::parse("Attaching 10 probes...", &all).is_none());
        assert!(ProbeEvent::parse("OVSNOOP\tready", &all).is_none());
    }
}
