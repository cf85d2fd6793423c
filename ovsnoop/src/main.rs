//! ovsnoop's command line; the theory statement is the library's (`lib.rs`).

use anyhow::Context;
use clap::Parser;
use overlay_api::proto::{Reply, Request};
use overlay_api::{Client, Mac};
use ovsnoop::filter::Filter;
use ovsnoop::{capture, decode, format, live, pcapng, read, trace, write};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// VXLAN-aware packet tracing: shows underlay captures with their overlay
/// frames opened, VNI first.
#[derive(Parser, Debug)]
#[command(name = "ovsnoop", version)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "iface", "trace", "trace_program", "capture"])))]
#[command(group(clap::ArgGroup::new("decisions").args(["trace", "capture"])))]
#[command(group(clap::ArgGroup::new("capturing").args(["capture"])))]
struct Args {
    /// Read frames from a pcap or pcapng file.
    #[arg(short = 'r', value_name = "FILE")]
    file: Option<PathBuf>,
    /// Capture live on an (Ethernet) underlay interface until Ctrl-C.
    #[arg(short = 'i', value_name = "IFACE")]
    iface: Option<String>,
    /// Show the driver's decisions, from the USDT probes of the overlayd
    /// and varpd of --run-dir (bpftrace, as root), until Ctrl-C.
    #[arg(long)]
    trace: bool,
    /// Print the bpftrace program --trace would run, and exit.
    #[arg(long)]
    trace_program: bool,
    /// Capture with decisions: overlayd's own copy of every frame it
    /// handled on the overlays (--overlay; all by default), dropped ones
    /// included, each with its verdict, until Ctrl-C, -c or --duration.
    /// With -w, writes pcapng: an interface per overlay, the verdict in
    /// each frame's comment.
    #[arg(long)]
    capture: bool,
    /// With --trace or --capture: only dropped frames (and, in --trace,
    /// lookups answered with a drop).
    #[arg(long, requires = "decisions")]
    drops_only: bool,
    /// With --capture: stop after COUNT frames passed the filters.
    #[arg(short = 'c', value_name = "COUNT", requires = "capturing")]
    count: Option<u64>,
    /// With --capture: stop after SECS seconds.
    #[arg(long, value_name = "SECS", requires = "capturing")]
    duration: Option<f64>,
    /// With --capture -w: also write each received frame as the datagram
    /// it came in (outer IP, UDP and encapsulation header), on its mux's
    /// interface, with the same comment.
    #[arg(long, requires = "capturing")]
    outer: bool,
    /// With --capture: keep at most N bytes of each frame (default: all).
    #[arg(long, value_name = "N", requires = "capturing")]
    snaplen: Option<u32>,
    /// Only frames of this VNI (repeatable: any of them).
    #[arg(long, value_name = "VNI")]
    vni: Vec<u32>,
    /// Only frames of this overlay (needs overlayd to name VNIs; repeatable).
    #[arg(long, value_name = "NAME")]
    overlay: Vec<String>,
    /// Only frames with this MAC, outer or inner, source or destination (repeatable).
    #[arg(long, value_name = "MAC")]
    mac: Vec<Mac>,
    /// Only frames of this VNIC (guest): its MAC, as --mac, looked up in
    /// the overlayd of --run-dir (repeatable).
    #[arg(long, value_name = "NAME")]
    vnic: Vec<String>,
    /// Only frames with this IP address, outer or inner (UL3 destination in
    /// --trace), source or destination (repeatable).
    #[arg(long, value_name = "IP")]
    host: Vec<IpAddr>,
    /// Only frames with this TCP/UDP port, outer or inner (UL3 port in
    /// --trace), source or destination (repeatable).
    #[arg(long, value_name = "PORT")]
    port: Vec<u16>,
    /// Also write the frames that pass the filters to FILE, as pcap
    /// (--capture: pcapng, with each frame's verdict in its comment).
    #[arg(short = 'w', value_name = "FILE", conflicts_with_all = ["trace", "trace_program"])]
    write: Option<PathBuf>,
    /// Show every field of every layer, like `snoop -v`.
    #[arg(short = 'v', conflicts_with = "json")]
    verbose: bool,
    /// One JSON object per frame (keys `frame`, `ts`, `len`, `outer`,
    /// `vxlan`, `geneve` or `nvgre`, `inner`, `error`; in --trace, `event`, `ts`, `overlay`,
    /// `dir`, `vni`, `decision`, ...).
    #[arg(long)]
    json: bool,
    /// Another UDP port that carries VXLAN (4789 always does; Linux's
    /// default is 8472). May be given more than once.
    #[arg(long = "vxlan-port", value_name = "N")]
    vxlan_ports: Vec<u16>,
    /// Another UDP port that carries Geneve (6081 always does). May be
    /// given more than once.
    #[arg(long = "geneve-port", value_name = "N")]
    geneve_ports: Vec<u16>,
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

/// Frames seen, for the summary.
#[derive(Default)]
struct Tally {
    frames: u64,
    per_vni: BTreeMap<u32, u64>,
    geneve: u64,
    nvgre: u64,
    errors: u64,
    shown: u64,
}

impl Tally {
    fn summary(&self, source: &str, filtered: bool) -> String {
        let vxlan: u64 = self.per_vni.values().sum::<u64>() - self.geneve - self.nvgre;
        let mut s = format!("ovsnoop: {} frames {source}, {vxlan} VXLAN", self.frames);
        if self.geneve > 0 {
            s.push_str(&format!(", {} Geneve", self.geneve));
        }
        if self.nvgre > 0 {
            s.push_str(&format!(", {} NVGRE", self.nvgre));
        }
        for (vni, n) in &self.per_vni {
            s.push_str(&format!("; VNI {vni}: {n}"));
        }
        s.push_str(&format!("; {} with errors", self.errors));
        if filtered {
            s.push_str(&format!("; {} passed the filters", self.shown));
        }
        s
    }
}

/// The filters of the command line; each `--vnic` becomes its MAC, which
/// overlayd must know.
fn filter_of(args: &Args) -> anyhow::Result<Filter> {
    let mut macs = args.mac.clone();
    if !args.vnic.is_empty() {
        let mut c = Client::overlayd(&args.run_dir)
            .map_err(|e| anyhow::anyhow!("--vnic needs overlayd to name its VNICs: {e}"))?;
        let rows = match c.call(&Request::ShowVnics { name: None }) {
            Ok(Reply::Vnics { rows }) => rows,
            Ok(other) => return Err(c.unexpected(&other).into()),
            Err(e) => anyhow::bail!("--vnic: cannot list overlayd's VNICs: {e}"),
        };
        for name in &args.vnic {
            let row = rows.iter().find(|r| &r.link == name).with_context(|| {
                let have: Vec<_> = rows.iter().map(|r| r.link.as_str()).collect();
                format!(
                    "--vnic {name}: no such VNIC in the overlayd of {} (it has: {})",
                    args.run_dir.display(),
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                )
            })?;
            macs.push(row.macaddress);
        }
    }
    Ok(Filter {
        vnis: args.vni.clone(),
        overlays: args.overlay.clone(),
        macs,
        hosts: args.host.clone(),
        ports: args.port.clone(),
    })
}

fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install the Ctrl-C handler")?;
    }
    Ok(stop)
}

/// Ends a run: a closed pipe (ovsnoop | head) is a normal way to stop.
fn finish_output(
    write_err: Option<std::io::Error>,
    result: anyhow::Result<()>,
    flushed: std::io::Result<()>,
) -> anyhow::Result<()> {
    if let Some(e) = write_err {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(());
        }
        return Err(e).context("cannot write to standard output");
    }
    result?;
    match flushed {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

fn run_trace(args: &Args) -> anyhow::Result<()> {
    let filter = filter_of(args)?;
    let stop = stop_flag()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut shown = 0u64;
    let mut write_err: Option<std::io::Error> = None;
    let ready = |what: &str| {
        eprintln!("ovsnoop: tracing {what}. Hit Ctrl-C to end.");
    };
    let summary = trace::run::run(&args.run_dir, &stop, ready, |wall, r| {
        if write_err.is_some() || (args.drops_only && !r.is_drop()) || !filter.matches(r) {
            return;
        }
        shown += 1;
        let text = if args.json {
            r.json(shown, wall)
        } else if args.verbose {
            r.verbose(shown, wall)
        } else {
            r.line()
        };
        if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
            write_err = Some(e);
        }
    })?;
    eprintln!("ovsnoop: {}; {shown} shown", summary.text());
    finish_output(write_err, Ok(()), Ok(()))
}

fn run_capture(args: &Args) -> anyhow::Result<()> {
    let filter = filter_of(args)?;
    let stop = stop_flag()?;
    let opts = capture::Options {
        overlays: args.overlay.clone(),
        drops_only: args.drops_only,
        snaplen: args.snaplen,
        count: args.count,
        duration: match args.duration {
            Some(d) if d.is_finite() && d >= 0.0 => Some(std::time::Duration::from_secs_f64(d)),
            Some(d) => anyhow::bail!("--duration {d}: give a number of seconds"),
            None => None,
        },
    };
    // Both the start (interfaces) and each frame write to the file.
    let file = std::cell::RefCell::new(match &args.write {
        Some(p) => Some(pcapng::PcapngWriter::create(p)?),
        None => None,
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut shown = 0u64;
    let mut write_err: Option<std::io::Error> = None;
    let run_dir = args.run_dir.display().to_string();
    let ready = |overlays: &[overlay_api::capture::CaptureOverlay]| -> anyhow::Result<()> {
        if let Some(w) = file.borrow_mut().as_mut() {
            for o in overlays {
                w.overlay(&o.name, o.vnetid)?;
            }
        }
        let names: Vec<String> = overlays
            .iter()
            .map(|o| format!("{} (VNI {})", o.name, o.vnetid))
            .collect();
        eprintln!(
            "ovsnoop: capturing on {} in the overlayd of {run_dir}{}. Hit Ctrl-C to end.",
            if names.is_empty() {
                "no overlay yet".to_string()
            } else {
                names.join(", ")
            },
            if args.overlay.is_empty() {
                " (and its muxes' own drops)"
            } else {
                ""
            }
        );
        Ok(())
    };
    let summary = capture::run(&args.run_dir, &opts, &stop, ready, |c| {
        if !filter.matches(&c) {
            return Ok(false);
        }
        shown += 1;
        if let Some(w) = file.borrow_mut().as_mut() {
            let r = &c.rec;
            let comment = r.verdict.to_string();
            match &r.overlay {
                Some(name) => {
                    let id = w.overlay(name, r.vni)?;
                    w.packet(id, r.ts_ns, &r.frame, r.len, &comment, r.dir)?;
                    // --outer: the datagram it came in, on its mux's interface.
                    if let (true, Some(from), Some(to)) = (args.outer, r.from, r.listen) {
                        let mut d = r.outer.clone();
                        d.extend_from_slice(&r.frame);
                        let p = pcapng::ip_packet(from, to, &d);
                        let len = r.len + (p.len() - r.frame.len()) as u32;
                        let id = w.mux(r.listen)?;
                        w.packet(id, r.ts_ns, &p, len, &comment, r.dir)?;
                    }
                }
                None => {
                    let id = w.mux(r.listen)?;
                    let (from, to) = (
                        r.from.unwrap_or(([0, 0, 0, 0], 0).into()),
                        r.listen.unwrap_or(([0, 0, 0, 0], 0).into()),
                    );
                    let p = pcapng::ip_packet(from, to, &r.frame);
                    let len = r.len + (p.len() - r.frame.len()) as u32;
                    w.packet(id, r.ts_ns, &p, len, &comment, r.dir)?;
                }
            }
        }
        if write_err.is_none() {
            let text = if args.json {
                c.json(shown)
            } else if args.verbose {
                c.verbose(shown)
            } else {
                c.line()
            };
            if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
                write_err = Some(e);
            }
        }
        Ok(true)
    })?;
    if let Some(w) = file.into_inner() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        w.finish(now, summary.lost)?;
    }
    eprintln!("ovsnoop: {}; {shown} shown", summary.text());
    if summary.lost > 0 {
        eprintln!(
            "ovsnoop: {} frames were lost to this capture (overlayd's capture ring was full, or ovsnoop read too slowly); overlayd forwarded them as usual",
            summary.lost
        );
    }
    finish_output(write_err, Ok(()), Ok(()))
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.trace_program {
        for (daemon, placeholder) in [("overlayd", "@OVERLAYD@"), ("varpd", "@VARPD@")] {
            let (prog, _) = trace::run::program_for(daemon, placeholder)?;
            println!("// {daemon}: bpftrace -B line -p PID -e PROGRAM, {placeholder} = readlink /proc/PID/exe\n{prog}");
        }
        return Ok(());
    }
    if args.trace {
        return run_trace(&args);
    }
    if args.capture {
        return run_capture(&args);
    }
    let mut opts = decode::Options::default();
    opts.vxlan_ports.extend(&args.vxlan_ports);
    opts.geneve_ports.extend(&args.geneve_ports);
    let names = overlay_names(&args.run_dir);
    let filter = filter_of(&args)?;
    let filtered = !filter.is_empty();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let live = args.iface.is_some();
    let mut pcap = match &args.write {
        Some(p) => Some(write::PcapWriter::create(p)?),
        None => None,
    };
    let mut tally = Tally::default();
    let mut write_err = None;
    let mut pcap_err: Option<write::WriteError> = None;
    let mut text = String::with_capacity(512);
    let mut show = |rec: read::Record<'_>| {
        if write_err.is_some() || pcap_err.is_some() {
            return;
        }
        tally.frames += 1;
        let mut f = decode::decode(rec.link, rec.data, rec.len, &opts);
        if let Some(vni) = f.vni() {
            if !names.is_empty() {
                f.set_overlay(names.get(&vni).cloned());
            }
            *tally.per_vni.entry(vni).or_default() += 1;
            tally.geneve += u64::from(f.geneve.is_some());
            tally.nvgre += u64::from(f.nvgre.is_some());
        }
        if f.error().is_some() {
            tally.errors += 1;
        }
        if filtered && !filter.matches(&f) {
            return;
        }
        tally.shown += 1;
        if let Some(w) = pcap.as_mut() {
            if let Err(e) = w.write(tally.frames, &rec) {
                pcap_err = Some(e);
                return;
            }
        }
        text.clear();
        if args.json {
            text.push_str(&format::json(
                &f,
                tally.frames,
                Some(rec.ts_ns as f64 / 1e9),
            ));
        } else if args.verbose {
            text.push_str(&format::verbose(&f, tally.frames));
        } else {
            format::line_into(&mut text, &f);
        }
        text.push('\n');
        let mut r = out.write_all(text.as_bytes());
        if live && r.is_ok() {
            r = out.flush();
        }
        if let Err(e) = r {
            write_err = Some(e);
        }
    };
    let (source, result): (String, anyhow::Result<()>) = match (&args.file, &args.iface) {
        (Some(file), _) => (
            format!("in {}", file.display()),
            read::read_file(file, &mut show)
                .map(|_| ())
                .map_err(Into::into),
        ),
        (None, Some(iface)) => {
            let stop = stop_flag()?;
            let ready = || eprintln!("ovsnoop: listening on {iface}");
            (
                format!("on {iface}"),
                live::capture(iface, &stop, ready, &mut show).map_err(Into::into),
            )
        }
        (None, None) => unreachable!("clap requires -r, -i or --trace"),
    };
    let flushed = out.flush();
    let result = match (result, pcap_err, pcap) {
        (Err(e), _, _) => Err(e),
        (Ok(()), Some(e), _) => Err(e.into()),
        (Ok(()), None, Some(w)) => w.finish().map_err(Into::into),
        (Ok(()), None, None) => Ok(()),
    };
    eprintln!("{}", tally.summary(&source, filtered));
    finish_output(write_err, result, flushed)
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
