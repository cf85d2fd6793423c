//! ovsnoop on hand-made captures (no root needed): malformed frames are
//! each printed with their error and counted; `-w` keeps exactly what
//! passed the filters, as a pcap tshark reads back.

use overlay_tests::require_tools;
use ovsnoop::decode::LinkType;
use ovsnoop::read::Record;
use ovsnoop::write::PcapWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ovsnoop-t{}-{name}", std::process::id()))
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn eth(dst: [u8; 6], src: [u8; 6], et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// VXLAN over IPv4 (10.0.0.1 -> 10.0.0.2), VNI `vni`, inner frame from
/// MAC 02:00:00:00:00:`h` / 192.168.0.`h` to `.h+1`: UDP `sport` -> `dport`.
fn vxlan_frame(vni: u32, h: u8, sport: u16, dport: u16) -> Vec<u8> {
    let inner = eth(
        [2, 0, 0, 0, 0, h + 1],
        [2, 0, 0, 0, 0, h],
        0x0800,
        &ipv4(
            [192, 168, 0, h],
            [192, 168, 0, h + 1],
            17,
            &udp(sport, dport, b"hello, overlay"),
        ),
    );
    let mut vx = vec![0x08, 0, 0, 0];
    vx.extend_from_slice(&vni.to_be_bytes()[1..]);
    vx.push(0);
    vx.extend_from_slice(&inner);
    eth(
        [0xaa, 0, 0, 0, 0, 2],
        [0xaa, 0, 0, 0, 0, 1],
        0x0800,
        &ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, &udp(50000, 4789, &vx)),
    )
}

/// Writes `frames` (bytes, wire length) as a pcap file.
fn pcap(path: &Path, frames: &[(Vec<u8>, usize)]) {
    let mut w = PcapWriter::create(path).unwrap();
    for (i, (f, len)) in frames.iter().enumerate() {
        let r = Record {
            link: LinkType::Ethernet,
            data: f,
            len: *len,
            ts_ns: 1_700_000_000_000_000_000 + i as u64 * 1000,
        };
        w.write(i as u64 + 1, &r).unwrap();
    }
    w.finish().unwrap();
}

/// Runs ovsnoop; returns (stdout, stderr), panicking unless it exits 0.
fn ovsnoop(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ovsnoop"))
        .args(["--run-dir", "/nonexistent"])
        .args(args)
        .output()
        .expect("ovsnoop runs");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "ovsnoop {args:?} failed: {e}\n{o}");
    (o, e)
}

#[test]
fn malformed_frames_are_printed_with_their_error_and_counted() {
    let full = vxlan_frame(9, 1, 1000, 2000);
    // Where each layer starts: outer Ethernet, IPv4, UDP, VXLAN, inner
    // Ethernet, IPv4, UDP, and where the frame ends.
    let starts = [0usize, 14, 34, 42, 50, 64, 84, full.len()];
    let mut frames: Vec<(Vec<u8>, usize, &str)> = Vec::new();
    for w in starts.windows(2) {
        // Cut in the middle of each layer, as a short snaplen would.
        let cut = w[0] + (w[1] - w[0]) / 2;
        frames.push((full[..cut].to_vec(), full.len(), "truncated"));
    }
    // A datagram that really is short: the UDP length says more than the
    // IPv4 packet holds (a VXLAN header and half an inner Ethernet header).
    let mut short = full[..57].to_vec();
    short[16..18].copy_from_slice(&43u16.to_be_bytes());
    frames.push((short.clone(), short.len(), "shorter than a VXLAN header"));
    let mut no_i = full.clone();
    no_i[42] = 0x00;
    frames.push((no_i, full.len(), "without the I flag"));
    for (at, bit) in [(42, 0x80u8), (43, 0x01), (45, 0x10), (49, 0xff)] {
        let mut r = full.clone();
        r[at] |= bit;
        frames.push((r, full.len(), "VXLAN reserved bits set"));
    }
    let bad = frames.len();
    // One good frame among them, which must not be counted.
    frames.push((full.clone(), full.len(), ""));
    let file = tmp("malformed.pcap");
    let list: Vec<(Vec<u8>, usize)> = frames.iter().map(|(f, l, _)| (f.clone(), *l)).collect();
    pcap(&file, &list);

    let (lines, summary) = ovsnoop(&["-r", file.to_str().unwrap()]);
    let (json, _) = ovsnoop(&["-r", file.to_str().unwrap(), "--json"]);
    let (verbose, _) = ovsnoop(&["-r", file.to_str().unwrap(), "-v"]);
    std::fs::remove_file(&file).unwrap();
    eprintln!("{lines}{summary}");
    let lines: Vec<&str> = lines.lines().collect();
    let objs: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!((lines.len(), objs.len()), (frames.len(), frames.len()));
    for (i, (_, _, want)) in frames.iter().enumerate() {
        let err = objs[i]["error"].as_str().unwrap_or("");
        assert_eq!(objs[i]["frame"], i as u64 + 1);
        if want.is_empty() {
            assert!(
                err.is_empty() && !lines[i].contains("[error"),
                "{}",
                lines[i]
            );
            assert_eq!(objs[i]["inner"]["sport"], 1000);
        } else {
            assert!(
                err.contains(want),
                "frame {}: `{err}` lacks `{want}`",
                i + 1
            );
            assert!(
                lines[i].contains("[error: "),
                "frame {}: {}",
                i + 1,
                lines[i]
            );
        }
    }
    assert!(
        summary.contains(&format!("; {bad} with errors")),
        "the summary does not count {bad} errors: {summary}"
    );
    let noted = verbose
        .split("\n\n")
        .filter(|b| b.contains("NOTE:  "))
        .count();
    assert_eq!(noted, bad, "{verbose}");
}

#[test]
fn filters_combine_and_w_keeps_what_passed() {
    require_tools(&["tshark"]);
    // VNIs 1, 2, 3; inner hosts .1->.2, .3->.4, .5->.6; ports vary.
    let mut frames = Vec::new();
    for i in 0..30u32 {
        let vni = i % 3 + 1;
        let h = (i % 3) as u8 * 2 + 1;
        let f = vxlan_frame(vni, h, 1000 + (i % 5) as u16, 53);
        let n = f.len();
        frames.push((f, n));
    }
    let file = tmp("filters.pcap");
    pcap(&file, &frames);
    let out = tmp("filtered.pcap");
    let f = file.to_str().unwrap();
    let o = out.to_str().unwrap();
    let count = |args: &[&str]| {
        let mut a = vec!["-r", f];
        a.extend_from_slice(args);
        ovsnoop(&a).0.lines().count()
    };
    assert_eq!(count(&[]), 30);
    assert_eq!(count(&["--vni", "2"]), 10);
    assert_eq!(count(&["--vni", "2", "--vni", "3"]), 20);
    assert_eq!(count(&["--mac", "02:00:00:00:00:04"]), 10);
    assert_eq!(count(&["--host", "192.168.0.5"]), 10);
    assert_eq!(count(&["--host", "10.0.0.2"]), 30);
    assert_eq!(count(&["--port", "1001"]), 6);
    assert_eq!(count(&["--vni", "1", "--port", "1001"]), 2);
    assert_eq!(count(&["--vni", "1", "--mac", "02:00:00:00:00:04"]), 0);
    assert_eq!(count(&["--overlay", "ov0"]), 0, "no overlayd, so no names");

    let (shown, summary) = ovsnoop(&["-r", f, "--vni", "1", "--port", "1001", "-w", o]);
    assert!(summary.contains("; 2 passed the filters"), "{summary}");
    let tshark = Command::new("tshark")
        .args([
            "-r",
            o,
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "vxlan.vni",
            "-e",
            "udp.srcport",
        ])
        .output()
        .expect("tshark runs");
    let t = String::from_utf8_lossy(&tshark.stdout).into_owned();
    assert!(
        tshark.status.success(),
        "tshark cannot read the -w file: {}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), shown.lines().count(), "{t}\n{shown}");
    for r in &rows {
        assert_eq!(r[1], "1", "{t}");
        assert_eq!(r[2], "50000,1001", "{t}");
    }
    // The written frames decode as the originals did.
    let (again, _) = ovsnoop(&["-r", o]);
    assert_eq!(again, shown);
    // Nothing passing still makes a valid, empty capture.
    ovsnoop(&["-r", f, "--vni", "77", "-w", o]);
    let empty = Command::new("tshark").args(["-r", o]).output().unwrap();
    assert!(empty.status.success() && empty.stdout.is_empty());
    std::fs::remove_file(&file).unwrap();
    std::fs::remove_file(&out).unwrap();
}
