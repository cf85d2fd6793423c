//! `ovstat [--run-dir DIR] [-d | -D] [-o FIELD,...] [-p | --json] [INTERVAL [COUNT]]`
//! or `ovstat --tui [--run-dir DIR] [INTERVAL]`:
//! the sampling loop around [`ovstat::rates`] and [`ovstat::output`] (see the
//! crate's theory statement in `lib.rs`).

use anyhow::{anyhow, Context, Result};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use overlay_api::{Client, StatsSnapshot, DEFAULT_RUN_DIR};
use ovstat::output::{Format, Printer, View};
use ovstat::rates;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest first sample, in seconds.
const FIRST_SAMPLE: f64 = 1.0;

/// ovstat: overlay counters as rates per second, vmstat-style.
#[derive(Debug, Parser)]
#[command(
    name = "ovstat",
    about = "Report overlay traffic, drops, misses and lookups per second (vmstat-style)",
    after_help = "The first report is printed at once and covers the time since each overlay \
was created (vmstat's \"since boot\" line: its counters over its age). Later reports \
cover INTERVAL each. Without INTERVAL, ovstat prints the first report and exits. An \
older overlayd that does not say when its overlays were created gets a first sample \
of 1 second (or INTERVAL, if shorter) instead. Counters that went backwards (overlay \
recreated, overlayd restarted) are counted since the overlay's creation.\n\n\
Fields: overlay,vni,rx_pps,tx_pps,rx_bps,tx_bps,drops_ps,misses_ps,lookups_ps,entries; \
with -d: overlay,peer,rx_pps,tx_pps,rx_bps,tx_bps; with -D: overlay,reason,drops_ps; \
with -V: overlay,vnic,mac,rx_pps,tx_pps,rx_bps,tx_bps (rx: delivered to the guest). \
bps are bits per second of inner (overlay) frames."
)]
struct Cli {
    /// Directory holding overlayd's control socket (overlayd.sock).
    #[arg(long, env = "OVERLAY_RUN_DIR", default_value = DEFAULT_RUN_DIR, value_name = "DIR")]
    run_dir: PathBuf,
    /// One line per overlay per destination (underlay peer).
    #[arg(short = 'd', long = "dest", conflicts_with = "drops")]
    dest: bool,
    /// One line per overlay per drop reason.
    #[arg(short = 'D', long = "drops", conflicts_with = "vnic")]
    drops: bool,
    /// One line per overlay per VNIC (guest), named and with its MAC.
    #[arg(short = 'V', long = "vnic", conflicts_with = "dest")]
    vnic: bool,
    /// Fields to print, comma-separated, or `all`.
    #[arg(short = 'o', long = "output", value_name = "FIELD,...")]
    output: Option<String>,
    /// Parseable: the fields joined by `:`, no header (`:` in values escaped as `\:`).
    #[arg(short = 'p', long = "parseable", conflicts_with = "json")]
    parseable: bool,
    /// One JSON object per overlay per interval, with every field, its peers and drops.
    #[arg(long, conflicts_with = "output")]
    json: bool,
    /// A live dashboard (rates, sparklines, drops, lookup latency, target
    /// table, top peers) refreshed every INTERVAL (default 1 s); keeps
    /// retrying while overlayd is not reachable.
    #[arg(long, conflicts_with_all = ["dest", "drops", "vnic", "output", "parseable", "json", "count"])]
    tui: bool,
    /// Seconds between reports (fractions allowed); without it, one report.
    #[arg(value_name = "INTERVAL", value_parser = parse_interval)]
    interval: Option<f64>,
    /// Number of reports (default: until interrupted).
    #[arg(value_name = "COUNT", requires = "interval", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds in (0, 86400]")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.tui {
        return match ovstat::tui::run(&cli.run_dir, cli.interval.unwrap_or(1.0)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ovstat: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let view = match (cli.dest, cli.drops, cli.vnic) {
        (true, ..) => View::Dest,
        (_, true, _) => View::Drops,
        (.., true) => View::Vnic,
        _ => View::Overlay,
    };
    let fields = match view.select(cli.output.as_deref()) {
        Ok(f) => f,
        Err(e) => Cli::command().error(ErrorKind::InvalidValue, e).exit(),
    };
    let format = if cli.json {
        Format::Json
    } else if cli.parseable {
        Format::Parseable
    } else {
        Format::Columns
    };
    let printer = Printer::new(view, format, fields);
    match run(&cli, printer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovstat: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Fetches a snapshot, reconnecting once if the kept connection failed
/// (overlayd restarted between two reports).
fn fetch(client: &mut Option<Client>, run_dir: &Path) -> Result<StatsSnapshot> {
    if let Some(c) = client.as_mut() {
        if let Ok(s) = c.stats(None) {
            return Ok(s);
        }
        *client = None;
    }
    // The client's errors already name the socket and their cause.
    let mut c = Client::overlayd(run_dir).map_err(|e| anyhow!("{e}"))?;
    let s = c.stats(None).map_err(|e| anyhow!("{e}"))?;
    *client = Some(c);
    Ok(s)
}

/// Sleeps until `deadline`, waking early (and returning false) on a signal.
fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Writes one report; `Ok(false)` when stdout is closed (time to stop).
fn emit(printer: &mut Printer, rates: &[rates::OverlayRates]) -> Result<bool> {
    let text = printer.report(rates);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

fn run(cli: &Cli, mut printer: Printer) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let mut client = None;
    let mut prev = fetch(&mut client, &cli.run_dir)?;
    let mut prev_at = Instant::now();
    let count = if cli.interval.is_none() {
        Some(1)
    } else {
        cli.count
    };
    let mut done = 0u64;
    // The first report: since each overlay's creation, at once, when
    // overlayd says when that was; else over a short first sample.
    let mut deadline = match rates::since_creation(&prev) {
        Some(first) => {
            if !emit(&mut printer, &first)? {
                return Ok(());
            }
            done += 1;
            prev_at + Duration::from_secs_f64(cli.interval.unwrap_or(0.0))
        }
        None => {
            let first = cli.interval.map_or(FIRST_SAMPLE, |i| i.min(FIRST_SAMPLE));
            prev_at + Duration::from_secs_f64(first)
        }
    };
    while count.is_none_or(|c| done < c) {
        if !sleep_until(deadline, &stop) {
            return Ok(());
        }
        let cur = fetch(&mut client, &cli.run_dir)?;
        let now = Instant::now();
        let secs = rates::interval_secs(&prev, &cur)
            .unwrap_or_else(|| now.duration_since(prev_at).as_secs_f64());
        if !emit(&mut printer, &rates::rates(&prev, &cur, secs))? {
            return Ok(());
        }
        done += 1;
        (prev, prev_at) = (cur, now);
        if let Some(i) = cli.interval {
            deadline += Duration::from_secs_f64(i);
            // Fell behind (a slow overlayd, a stopped terminal): do not burst.
            if deadline < now {
                deadline = now + Duration::from_secs_f64(i);
            }
        }
    }
    Ok(())
}
