//! The target table at scale, through the real daemon: a million entries
//! set over the control socket (pipelined, as a bulk loader would), the
//! table resizing live while bpftrace watches its `table-resize-*` probes,
//! a paged dump of every entry through `ovadm show-overlay -t`, a flush
//! that shrinks it again, and the `target/max_entries` bound refusing new
//! MACs — by an operator's set and by a flood of misses — with a count.

use overlay_api::proto::{Reply, Request};
use overlay_api::{Mac, TargetDest};
use overlay_tests::{map_value, Daemon, Host, Lab};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

const IGNORE: &str = "needs root, network namespaces and bpftrace: run `sudo make test`";

fn mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac([0x02, 0x55, b[0], b[1], b[2], b[3]])
}

/// Sends `n` set-target requests without waiting between them (a writer
/// thread), reads the `n` replies, and returns how many were errors with
/// the first error's text.
fn pipelined_sets(lab: &Lab, h: Host, overlay: &str, n: u32, first: u32) -> (u32, Option<String>) {
    let sock = lab.run_dir(h).join("overlayd.sock");
    let stream = UnixStream::connect(&sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
    let mut w = stream.try_clone().expect("clone");
    let overlay = overlay.to_string();
    let writer = std::thread::spawn(move || {
        let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut w);
        for i in first..first + n {
            let dest = TargetDest::Valid(std::net::SocketAddr::from((
                [10, 55, (i >> 8) as u8, i as u8],
                4789,
            )));
            let req = Request::SetTarget {
                name: overlay.clone(),
                mac: mac(i),
                dest,
            };
            serde_json::to_writer(&mut buf, &req).expect("encode");
            buf.write_all(b"\n").expect("write");
        }
        buf.flush().expect("flush");
    });
    let (mut errors, mut first_error) = (0, None);
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    for _ in 0..n {
        line.clear();
        assert!(
            r.read_line(&mut line).expect("read reply") > 0,
            "overlayd closed the connection"
        );
        match serde_json::from_str::<Reply>(&line).expect("a reply") {
            Reply::Ok { .. } => {}
            Reply::Error { error } => {
                errors += 1;
                first_error.get_or_insert(error.message);
            }
            other => panic!("unexpected reply {other:?}"),
        }
    }
    writer.join().expect("writer");
    (errors, first_error)
}

const RESIZE_PROBES: &str = r#"
BEGIN { printf("counting; Hit Ctrl-C to end.\n"); }
usdt:@OVERLAYD@:overlay:table-resize-start { @start[str(arg0)] = count(); @maxcap = max(arg2); }
usdt:@OVERLAYD@:overlay:table-resize-step { @step = count(); }
usdt:@OVERLAYD@:overlay:table-resize-done { @done[str(arg0)] = count(); @moved = max(arg3); }
"#;

#[test]
#[ignore = "needs root, network namespaces and bpftrace: run `sudo make test`"]
fn a_million_entries_resize_live_and_dump_in_pages() {
    let _ = IGNORE;
    let mut lab = Lab::new("table-scale");
    let h = lab.add_host("a");
    let peer = lab.add_host("b");
    lab.link(h, "10.56.0.1/24", peer, "10.56.0.2/24");
    lab.overlay_host(h);
    let cfg = lab.write_file("files.json", "{}");
    lab.create_files_overlay(h, "ov0", 5656, "10.56.0.1", &cfg);

    let trace = lab.bpftrace(h, Daemon::Overlayd, "resize", RESIZE_PROBES);
    // The library's script for the same question, through ovtrace.
    let script = lab.ovtrace(h, Daemon::Overlayd, "resize");
    const N: u32 = 1_000_000;
    let t = Instant::now();
    let (errors, first) = pipelined_sets(&lab, h, "ov0", N, 0);
    let set_secs = t.elapsed().as_secs_f64();
    assert_eq!(errors, 0, "sets refused: {first:?}");
    let stats = lab.stats(h);
    let table = &stats.overlays[0].table;
    assert_eq!(table.entries, N as u64);
    assert!(
        table.capacity >= 2 * N as u64,
        "capacity {} for {N} entries",
        table.capacity
    );
    assert!(
        table.resizes >= 10,
        "a table grown from empty to 1M resizes many times: {}",
        table.resizes
    );

    // The dump, a page at a time, through ovadm.
    let t = Instant::now();
    let out = lab.ovadm_ok(
        h,
        [
            "show-overlay",
            "-t",
            "-p",
            "-o",
            "target,destination",
            "ov0",
        ],
    );
    let dump_secs = t.elapsed().as_secs_f64();
    assert_eq!(out.lines().count(), N as usize, "every entry dumped once");
    let probe = format!("{}:10.55.", mac(123_456).to_string().replace(':', "\\:"));
    assert!(out.contains(&probe), "entry {} missing", mac(123_456));
    eprintln!("table-scale: {N} sets in {set_secs:.2} s, dump of {N} entries in {dump_secs:.2} s, capacity {}, {} resizes", table.capacity, table.resizes);

    // A flush empties it; the table shrinks back on the timer.
    lab.ovadm_ok(h, ["modify-overlay", "-f", "ov0"]);
    assert!(
        overlay_tests::wait_for(std::time::Duration::from_secs(10), || lab.stats(h).overlays
            [0]
        .table
        .capacity
            < 1 << 16),
        "table did not shrink after the flush: {:?}",
        lab.stats(h).overlays[0].table
    );
    let timeline = script.finish();
    for want in ["ov0", "start  capacity", "step   moved", "done   capacity"] {
        assert!(
            timeline.contains(want),
            "ovtrace resize shows no '{want}':\n{timeline}"
        );
    }
    let out = trace.finish();
    assert!(
        map_value(&out, "@start[ov0]").unwrap_or(0) >= 10,
        "table-resize-start:\n{out}"
    );
    assert!(
        map_value(&out, "@done[ov0]").unwrap_or(0) >= 10,
        "table-resize-done:\n{out}"
    );
    assert!(
        map_value(&out, "@step").unwrap_or(0) > 0,
        "table-resize-step:\n{out}"
    );
    assert!(
        map_value(&out, "@maxcap").unwrap_or(0) >= 2 * N as u64,
        "largest new capacity:\n{out}"
    );
}

#[test]
#[ignore = "needs root, network namespaces and bpftrace: run `sudo make test`"]
fn max_entries_bounds_the_table() {
    let mut lab = Lab::new("table-bound");
    let h = lab.add_host("a");
    let peer = lab.add_host("b");
    lab.link(h, "10.57.0.1/24", peer, "10.57.0.2/24");
    lab.overlay_host(h);
    let cfg = lab.write_file("files.json", "{}");
    let props = format!(
        "vxlan/listen_ip=10.57.0.1,files/config={},target/max_entries=100",
        cfg.display()
    );
    lab.ovadm_ok(
        h,
        [
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "files",
            "-v",
            "5757",
            "-p",
            &props,
            "ov0",
        ],
    );
    let (errors, first) = pipelined_sets(&lab, h, "ov0", 150, 0);
    assert_eq!(errors, 50);
    let first = first.expect("an error");
    assert!(first.contains("target/max_entries"), "{first}");
    let s = lab.stats(h);
    assert_eq!(
        (s.overlays[0].table.entries, s.overlays[0].table.max_entries),
        (100, 100)
    );
    // Existing entries still change.
    lab.ovadm_ok(
        h,
        ["modify-overlay", "-s", &format!("{}=drop", mac(5)), "ov0"],
    );
    // A flood of misses to new MACs is dropped and counted, not queued.
    lab.addr(h, "ov0", "02:57:00:00:00:01", &["192.168.57.1/24"]);
    for i in 2..30 {
        let ip = format!("192.168.57.{i}");
        let m = format!("02:57:00:00:01:{i:02x}");
        lab.ip(
            h,
            &[
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &m,
                "dev",
                "ov0",
                "nud",
                "permanent",
            ],
        );
        let _ = lab.exec(h, "ping", ["-c", "1", "-W", "0.2", ip.as_str()]);
    }
    let s = lab.stats(h);
    let full = s.overlays[0].drops.get("table-full").copied().unwrap_or(0);
    assert!(
        full >= 28,
        "table-full drops: {full} ({:?})",
        s.overlays[0].drops
    );
    assert!(s.overlays[0].table.rejected_full >= 50 + 28);
}
