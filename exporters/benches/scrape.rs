//! What one scrape of the exporter costs with 1,000 overlays and 100,000
//! target entries, against the budget of 50 ms.
//!
//! Stand-ins for overlayd and varpd listen on real Unix sockets in a
//! temporary run directory and speak the real control protocol (a line of
//! JSON each way, `overlay_api::proto`): overlayd answers `stats` with a
//! synthetic snapshot of OVERLAYS overlays (default 1,000) whose target
//! tables hold ENTRIES entries in all (default 100,000), each with PEERS
//! underlay peers (default 50: 50,000 peer counters, of which the exporter
//! keeps the busiest 10 per overlay), every drop reason, a lookup-latency
//! histogram, and one overlay in a hundred DEGRADED with a reason; it
//! serialises the snapshot anew for every request, as overlayd does. varpd
//! answers `status` with one instance per overlay. The real
//! `overlay-exporter` binary reads that run directory, and each scrape is a
//! timed HTTP GET of /metrics on 127.0.0.1, the whole body read: socket
//! reads, JSON decoding, metric families, encoding and HTTP, end to end.
//!
//! A real overlayd with a thousand TAP devices and 100,000 entries would do
//! too, but needs root and minutes to set up; what the exporter reads is
//! only the snapshot, and this one has the same shape and size.
//!
//! `make bench-exporter` (`cargo bench -p overlay-exporter --bench scrape`).
//! Env: SCRAPES (50), OVERLAYS, ENTRIES, PEERS. Prints every figure, the
//! median and p99, and their ratio to the 50 ms budget.

use overlay_api::proto::{Reply, Request, VarpdReply, VarpdRequest};
use overlay_api::{
    DropReason, HistBucket, InstanceInfo, MuxStats, OverlayState, OverlayStats, PeerStats,
    StatsSnapshot, StatusRow, TableStats,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The budget for one scrape.
const BUDGET: Duration = Duration::from_millis(50);

fn verdict(t: Duration) -> &'static str {
    if t <= BUDGET {
        "within budget"
    } else {
        "OVER BUDGET"
    }
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Shape {
    overlays: usize,
    entries: usize,
    peers: usize,
}

fn snapshot(s: &Shape) -> (StatsSnapshot, Vec<StatusRow>, Vec<InstanceInfo>) {
    let mut overlays = Vec::with_capacity(s.overlays);
    let (mut rows, mut instances) = (Vec::new(), Vec::new());
    for i in 0..s.overlays {
        let name = format!("ov{i}");
        // ENTRIES spread evenly, the remainder on the first overlays.
        let entries = (s.entries / s.overlays + usize::from(i < s.entries % s.overlays)) as u64;
        let degraded = i % 100 == 99;
        let k = i as u64 + 1;
        let peers = (0..s.peers)
            .map(|j| PeerStats {
                addr: Some(
                    format!("10.{}.{}.{}", (i >> 8) & 255, i & 255, j + 1)
                        .parse()
                        .unwrap(),
                ),
                tx_frames: k * 1000 + j as u64,
                tx_bytes: (k * 1000 + j as u64) * 700,
                rx_frames: k * 900 + j as u64,
                rx_bytes: (k * 900 + j as u64) * 650,
            })
            .collect();
        overlays.push(OverlayStats {
            offload: Default::default(),
            vnics: Vec::new(),
            peers_total: 0,
            name: name.clone(),
            vnetid: 10_000 + i as u32,
            rx_frames: k * 1_000_000,
            rx_bytes: k * 700_000_000,
            tx_frames: k * 1_100_000,
            tx_bytes: k * 770_000_000,
            lookups: k * 300,
            misses: k * 310,
            queue_overflows: k,
            injected: k * 20,
            table_entries: entries,
            drops: DropReason::ALL
                .iter()
                .enumerate()
                .map(|(r, d)| (d.as_str().to_string(), k * r as u64))
                .collect(),
            status: if degraded {
                OverlayState::Degraded
            } else {
                OverlayState::Online
            },
            peers,
            lookup_latency: (12..24)
                .map(|b| HistBucket {
                    le_ns: 1 << b,
                    count: k + b,
                })
                .collect(),
            lookup_latency_sum_ns: 1_000_000 * k,
            table: TableStats {
                entries,
                max_entries: 1 << 20,
                capacity: (entries.next_power_of_two() * 2).max(16),
                load: 0.4,
                resizes: 3,
                entries_moved: entries * 2,
                resizing: false,
                rejected_full: 0,
            },
            created_mono_ns: 1_000_000_000,
        });
        let details = degraded.then(|| {
            format!(
                "search plugin files: /etc/overlay/{name}.json:1:9: EOF while parsing an object"
            )
        });
        rows.push(StatusRow {
            link: name.clone(),
            status: overlays[i].status,
            details: details.clone(),
        });
        instances.push(InstanceInfo {
            oid: k,
            overlay: name,
            search: "files".into(),
            status: overlays[i].status,
            details,
            lookups: k * 300,
            proxy_arp: k * 10,
            proxy_ndp: k * 10,
            proxy_dhcp: k,
            invalidations: 0,
            mac_conflicts: 0,
        });
    }
    let snap = StatsSnapshot {
        time_ns: 1_700_000_000_000_000_000,
        mono_ns: 3_600_000_000_000,
        varpd_linked: true,
        overlays,
        muxes: (0..4)
            .map(|m| MuxStats {
                listen: Some(format!("10.0.0.{}:4789", m + 1).parse().unwrap()),
                rx_datagrams: 1_000_000,
                drops: [("unknown-vni".to_string(), 5)].into(),
                ..Default::default()
            })
            .collect(),
        started_mono_ns: 1_000_000_000,
    };
    (snap, rows, instances)
}

/// Serves the control protocol on `path`: each request line gets `answer`'s
/// reply, serialised anew, on a thread per connection.
fn serve_socket<Q, A>(path: &Path, answer: impl Fn(Q) -> A + Send + Sync + 'static)
where
    Q: serde::de::DeserializeOwned,
    A: serde::Serialize,
{
    let listener = UnixListener::bind(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let answer = Arc::clone(&answer);
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let Ok(q) = serde_json::from_str::<Q>(line.trim_end()) else {
                        return;
                    };
                    let mut out = serde_json::to_vec(&answer(q)).unwrap();
                    out.push(b'\n');
                    if w.write_all(&out).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
        }
    });
}

/// CPU time (user + system) process `pid` has used so far, from
/// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
fn cpu_time(pid: u32) -> Duration {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/PID/stat");
    // The command name (field 2) may hold spaces; fields after it are plain.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // `rest` starts at field 3, so utime (14) and stime (15) are 11 and 12.
    Duration::from_millis((f[11] + f[12]) * 10)
}

/// The exporter, killed when dropped.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET /metrics: the time to the last byte, and the body.
fn scrape(port: u16) -> (Duration, String) {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the exporter");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut r = Vec::new();
    s.read_to_end(&mut r).unwrap();
    let took = t.elapsed();
    let r = String::from_utf8(r).expect("utf-8 exposition");
    let (head, body) = r.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(
        head.lines().next().is_some_and(|l| l.ends_with(" 200 OK")),
        "{head}"
    );
    (took, body.to_string())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes --bench; a filter that is not ours means "not me".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"scrape".contains(a.as_str()))
    {
        return;
    }
    let shape = Shape {
        overlays: env_num("OVERLAYS", 1000),
        entries: env_num("ENTRIES", 100_000),
        peers: env_num("PEERS", 50),
    };
    let scrapes = env_num("SCRAPES", 50).max(1);
    let dir = std::env::temp_dir().join(format!("overlay-exporter-bench-{}", std::process::id()));
    let run = dir.join("run");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&run).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());

    let (snap, rows, instances) = snapshot(&shape);
    // What one scrape reads: the exporter asks for its --max-peers busiest.
    let mut asked = snap.clone();
    for o in &mut asked.overlays {
        o.peers
            .truncate(overlay_exporter::collect::DEFAULT_MAX_PEERS);
    }
    // overlayd's share of the read: serialising the reply (median of 5).
    let mut t_ser: Vec<Duration> = (0..5)
        .map(|_| {
            let r = Reply::Stats {
                snapshot: asked.clone(),
            };
            let t = Instant::now();
            let json = serde_json::to_vec(&r).unwrap();
            let took = t.elapsed();
            assert!(json.len() > 1000);
            took
        })
        .collect();
    t_ser.sort();
    let t_ser = t_ser[2];
    let json_len = serde_json::to_vec(&Reply::Stats { snapshot: asked })
        .unwrap()
        .len();
    serve_socket(
        &run.join(overlay_api::OVERLAYD_SOCKET),
        move |q: Request| match q {
            Request::Stats { max_peers, .. } => {
                // As overlayd does: the busiest `max_peers` of each overlay.
                let mut s = snap.clone();
                for o in &mut s.overlays {
                    o.peers_total = o.peers.len() as u64;
                    o.peers
                        .truncate(max_peers.map_or(usize::MAX, |n| n as usize));
                }
                Reply::Stats { snapshot: s }
            }
            Request::ShowStatus { .. } => Reply::Status { rows: rows.clone() },
            _ => Reply::Ok { warning: None },
        },
    );
    serve_socket(
        &run.join(overlay_api::VARPD_SOCKET),
        move |_: VarpdRequest| VarpdReply::Status {
            linked: true,
            plugins: Vec::new(),
            instances: instances.clone(),
        },
    );

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _exporter = Exporter(
        Command::new(env!("CARGO_BIN_EXE_overlay-exporter"))
            .arg("--run-dir")
            .arg(&run)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .spawn()
            .expect("starting overlay-exporter"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the exporter does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }

    println!(
        "scrape benchmark: {} overlays, {} target entries in all, {} peers each; \
         synthetic snapshot served by stand-in overlayd/varpd over the real Unix-socket protocol \
         ({:.1} MiB of stats JSON per scrape), real overlay-exporter binary, GET /metrics over HTTP on 127.0.0.1",
        shape.overlays,
        shape.entries,
        shape.peers,
        json_len as f64 / (1 << 20) as f64
    );
    let (_, body) = scrape(port);
    let series = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    let up = body.lines().any(|l| l == "overlay_up 1") && body.lines().any(|l| l == "varpd_up 1");
    assert!(
        up,
        "the exporter did not read the stand-ins:\n{}",
        &body[..body.len().min(2000)]
    );
    let entries: f64 = body
        .lines()
        .filter(|l| l.starts_with("overlay_target_entries{"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(entries as usize, shape.entries, "entries in the scrape");
    println!(
        "exposition: {series} samples, {:.1} MiB, overlay_target_entries sum {entries}",
        body.len() as f64 / (1 << 20) as f64
    );
    for _ in 0..3 {
        scrape(port);
    }
    // Where the time goes, in this process with the exporter's library.
    let targets = [overlay_exporter::serve::Target {
        run_dir: run.clone(),
        host: None,
    }];
    let opts = overlay_exporter::collect::Options::default();
    let (mut t_read, mut t_fam, mut t_render) = (Vec::new(), Vec::new(), Vec::new());
    let mut t_encode = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let hosts =
            overlay_exporter::serve::sample(&targets, overlay_exporter::collect::DEFAULT_MAX_PEERS);
        t_read.push(t.elapsed());
        let t = Instant::now();
        let fams = overlay_exporter::collect::families(&hosts, &opts);
        t_fam.push(t.elapsed());
        // The prometheus crate's text encoder alone, on the same families.
        let mut buf = Vec::with_capacity(8 << 20);
        let t = Instant::now();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &fams, &mut buf).unwrap();
        t_encode.push(t.elapsed());
        let t = Instant::now();
        let text = overlay_exporter::collect::render(fams).unwrap();
        t_render.push(t.elapsed());
        assert!(text.len() > 1000);
    }
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        ms(v[v.len() / 2])
    };
    println!(
        "in process (median of 5): read and decode the sockets {:.1} ms (of which overlayd's \
         serialisation {:.1} ms), build families {:.1} ms, encode {:.1} ms on all cores \
         (prometheus::TextEncoder on one core {:.1} ms)",
        med(&mut t_read),
        ms(t_ser),
        med(&mut t_fam),
        med(&mut t_render),
        med(&mut t_encode)
    );
    let cpu0 = cpu_time(_exporter.0.id());
    let mut times: Vec<Duration> = (0..scrapes).map(|_| scrape(port).0).collect();
    let cpu = cpu_time(_exporter.0.id()) - cpu0;
    println!(
        "exporter CPU time per scrape (all its threads, user + system): {:.1} ms",
        ms(cpu) / scrapes as f64
    );
    println!(
        "scrapes (ms): {}",
        times
            .iter()
            .map(|t| format!("{:.1}", ms(*t)))
            .collect::<Vec<_>>()
            .join(" ")
    );
    times.sort();
    let (p50, p99, max) = (pct(&times, 0.5), pct(&times, 0.99), *times.last().unwrap());
    println!(
        "scrape time over {scrapes} scrapes: median {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         budget {} ms: median/budget {:.2} ({}), p99/budget {:.2} ({})",
        ms(p50),
        ms(p99),
        ms(max),
        BUDGET.as_millis(),
        p50.as_secs_f64() / BUDGET.as_secs_f64(),
        verdict(p50),
        p99.as_secs_f64() / BUDGET.as_secs_f64(),
        verdict(p99),
    );
}
