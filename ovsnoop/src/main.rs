//! # ovsnoop: `snoop` for overlays
//!
//! Theory statement. ovsnoop reads frames captured on the underlay (UL3)
//! and shows each one with its VXLAN layer opened: the VNI first, named
//! with its overlay when overlayd answers, then the UL3 addresses, then the
//! overlay (VL2/VL3) frame inside.
//!
//! ```text
//!  -r FILE ──► read (pcap-parser: pcap/pcapng; Ethernet, Linux cooked v1/v2)
//!  -i IFACE ─► live (AF_PACKET socket on an underlay interface)
//!                │ (link type, bytes, wire length)
//!                ▼
//!              decode (pure: outer Ethernet/VLAN, IPv4/IPv6, UDP ──VXLAN port──►
//!                │      VXLAN ──► inner Ethernet/VLAN, ARP, IPv4/IPv6, ICMP,
//!                │      ICMPv6+NDP, TCP, UDP, DHCP)
//!                ▼
//!              format (one line | -v every field | --json)  ──► stdout
//!  overlayd.sock ──ShowProps──► VNI → overlay name (optional)
//! ```
//!
//! Parts: [`decode`] never fails — a truncated or invalid layer ends that
//! frame's decode with a note, and the rest of the file is still shown.
//! [`read`] fails on a file that is not a capture or is corrupt at some
//! record, naming the file and the record; ovsnoop then exits 1 after
//! printing what came before. Usage errors exit 2. overlayd being
//! unreachable is not an error: VNIs are then shown without names.
//! [`live`] captures until SIGINT or SIGTERM, then prints a summary (frames,
//! VXLAN frames per VNI) on standard error.
//!
//! Not yet: the driver's own decisions (`--trace`).

mod decode;
mod format;
mod live;
mod read;

use anyhow::Context;
use clap::Parser;
use overlay_api::proto::{Reply, Request};
use overlay_api::Client;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// VXLAN-aware packet tracing: shows underlay captures with their overlay
/// frames opened, VNI first.
#[derive(Parser, Debug)]
#[command(name = "ovsnoop", version)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "iface"])))]
struct Args {
    /// Read frames from a pcap or pcapng file.
    #[arg(short = 'r', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Capture live on an (Ethernet) underlay interface until Ctrl-C.
    #[arg(short = 'i', value_name = "IFACE")]
    iface: Option<String>,
    /// Show every field of every layer, like `snoop -v`.
    #[arg(short = 'v', conflicts_with = "json")]
    verbose: bool,
    /// One JSON object per frame (keys `len`, `outer`, `vxlan`, `inner`).
    #[arg(long)]
    json: bool,
    /// Another UDP port that carries VXLAN (4789 always does; Linux's
    /// default is 8472). May be given more than once.
    #[arg(long = "vxlan-port", value_name = "N")]
    vxlan_ports: Vec<u16>,
    /// overlayd's run directory, to name VNIs after their overlays.
    #[arg(
        long,
        value_name = "DIR",
        env = "OVERLAY_RUN_DIR",
        default_value = "/run/overlay"
    )]
    run_dir: PathBuf,
}

/// VNI → overlay name from overlayd's properties; empty when it is not
/// reachable (names are a nicety, not a need).
fn overlay_names(run_dir: &Path) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    let Ok(mut c) = Client::overlayd(run_dir) else {
        return names;
    };
    if let Ok(Reply::Props { rows }) = c.call(&Request::ShowProps { name: None }) {
        for r in rows.into_iter().filter(|r| r.property == "vnetid") {
            if let Some(vni) = r.value.as_deref().and_then(|v| v.parse().ok()) {
                names.insert(vni, r.link);
            }
        }
    }
    names
}

/// Frames seen, for the live summary.
#[derive(Default)]
struct Tally {
    frames: u64,
    per_vni: BTreeMap<u32, u64>,
}

impl Tally {
    fn summary(&self, iface: &str) -> String {
        let vxlan: u64 = self.per_vni.values().sum();
        let mut s = format!("ovsnoop: {} frames on {iface}, {vxlan} VXLAN", self.frames);
        for (vni, n) in &self.per_vni {
            s.push_str(&format!("; VNI {vni}: {n}"));
        }
        s
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut opts = decode::Options::default();
    opts.vxlan_ports.extend(&args.vxlan_ports);
    let names = overlay_names(&args.run_dir);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let live = args.iface.is_some();
    let mut tally = Tally::default();
    let mut write_err = None;
    let mut show = |rec: read::Record| {
        if write_err.is_some() {
            return;
        }
        tally.frames += 1;
        let mut f = decode::decode(rec.link, &rec.data, rec.len, &opts);
        if let Some(v) = f.vxlan.as_mut() {
            v.overlay = names.get(&v.vni).cloned();
            *tally.per_vni.entry(v.vni).or_default() += 1;
        }
        let text = if args.json {
            format::json(&f)
        } else if args.verbose {
            format::verbose(&f, tally.frames)
        } else {
            format::line(&f)
        };
        let mut r = writeln!(out, "{text}");
        if live && r.is_ok() {
            r = out.flush();
        }
        if let Err(e) = r {
            write_err = Some(e);
        }
    };
    let result: anyhow::Result<()> = match (&args.file, &args.iface) {
        (Some(file), _) => read::read_file(file, &mut show)
            .map(|_| ())
            .map_err(Into::into),
        (None, Some(iface)) => {
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, Arc::clone(&stop))
                    .context("cannot install the Ctrl-C handler")?;
            }
            let ready = || eprintln!("ovsnoop: listening on {iface}");
            live::capture(iface, &stop, ready, &mut show).map_err(Into::into)
        }
        (None, None) => unreachable!("clap requires -r or -i"),
    };
    let flushed = out.flush();
    if let Some(iface) = &args.iface {
        eprintln!("{}", tally.summary(iface));
    }
    if let Some(e) = write_err {
        // A closed pipe (ovsnoop | head) is a normal way to stop.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(());
        }
        return Err(e).context("cannot write to standard output");
    }
    result?;
    match flushed {
        // The final flush meets the closed pipe too.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovsnoop: {e:#}");
            ExitCode::from(1)
        }
    }
}
