//! `ovsnoop --trace` against a files pair: with traffic (ping over the
//! overlay) and forced drops (a drop entry, a datagram for an unknown VNI,
//! one without the I flag), the trace must show each frame's decision —
//! proxy ARP injected, queued for lookup, released, sent to ip:port,
//! delivered — and each drop with its reason; `--drops-only` with a
//! `--vni` filter only the drops of that VNI, as JSON. Both stop cleanly,
//! one on SIGINT and one on SIGTERM, taking their bpftrace with them.

use overlay_api::Mac;
use overlay_tests::{eth_frame, require_tools, vxlan_datagram, wait_for, Lab, VXLAN_FLAG_I};
use std::fs::File;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One `ovsnoop --trace` writing to files in the lab directory; killed if
/// the test fails before it is stopped.
struct Snoop {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Snoop {
    fn start(lab: &Lab, run_dir: &std::path::Path, label: &str, extra: &[&str]) -> Snoop {
        let out = lab.dir().join(format!("{label}.out"));
        let err = lab.dir().join(format!("{label}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_ovsnoop"))
            .arg("--trace")
            .arg("--run-dir")
            .arg(run_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(&err).unwrap())
            .spawn()
            .expect("ovsnoop runs");
        Snoop {
            child: Some(child),
            out,
            err,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let ok = wait_for(Duration::from_secs(120), || {
            self.stderr().contains("Hit Ctrl-C")
                || matches!(self.child.as_mut().unwrap().try_wait(), Ok(Some(_)))
        });
        assert!(
            ok && self.stderr().contains("Hit Ctrl-C"),
            "ovsnoop --trace did not start:\n{}",
            self.stderr()
        );
    }

    /// The pids of its bpftrace processes, from its "tracing ..." line.
    fn bpftrace_pids(&self) -> Vec<u32> {
        let e = self.stderr();
        e.split("bpftrace pid ")
            .skip(1)
            .filter_map(|s| s.split(')').next()?.parse().ok())
            .collect()
    }

    /// Sends `sig`, waits for the exit; returns (stdout, stderr).
    fn stop(&mut self, sig: i32) -> (String, String) {
        let mut c = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(c.id() as i32, sig) };
        let mut status = None;
        wait_for(Duration::from_secs(20), || {
            status = c.try_wait().ok().flatten();
            status.is_some()
        });
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        let Some(status) = status else {
            let _ = c.kill();
            let _ = c.wait();
            panic!(
                "ovsnoop --trace did not stop on signal {sig}:\n{}",
                self.stderr()
            );
        };
        assert!(
            status.success(),
            "ovsnoop --trace exited {status}:\n{}\n{out}",
            self.stderr()
        );
        (out, self.stderr())
    }
}

impl Drop for Snoop {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
#[ignore = "needs root, network namespaces and bpftrace: run `sudo make test`"]
fn trace_shows_decisions_and_drops_with_reasons() {
    require_tools(&["bpftrace"]);
    let mut lab = Lab::new("ovsnoop_trace");
    let p = lab.files_pair(79, 4949);
    let run_dir = lab.run_dir(p.a);
    let mut all = Snoop::start(&lab, &run_dir, "trace-all", &[]);
    let mut drops = Snoop::start(
        &lab,
        &run_dir,
        "trace-drops",
        &["--json", "--drops-only", "--vni", "4949"],
    );
    all.wait_ready();
    drops.wait_ready();
    let tracers = [all.bpftrace_pids(), drops.bpftrace_pids()].concat();
    assert_eq!(
        tracers.len(),
        4,
        "one bpftrace per daemon each: {}",
        all.stderr()
    );

    // Traffic: ARP (answered by proxy), a first echo request (queued, then
    // released by varpd's answer), the rest sent straight, replies delivered.
    let r = lab.ping(p.a, &p.ip4(2), &[]);
    assert!(r.all_answered(), "{r}");
    // Forced drops: a drop entry for host 2, then datagrams host 1's mux
    // cannot use.
    lab.ovadm_ok(
        p.a,
        ["modify-overlay", "-s", &format!("{}=drop", p.mac(2)), "ov0"],
    );
    let r = lab.ping(p.a, &p.ip4(2), &["-c", "2"]);
    assert!(r.none_answered(), "a drop entry let pings through:\n{r}");
    let src: Mac = "02:79:00:00:00:99".parse().unwrap();
    let frame = eth_frame(Mac::BROADCAST, src, 0x0800, &[0x45, 0, 0, 20]);
    let target = format!("{}:4789", p.ul(1));
    lab.in_ns(p.b, || {
        let s = UdpSocket::bind(format!("{}:0", p.ul(2))).unwrap();
        s.send_to(&vxlan_datagram(VXLAN_FLAG_I, 4999, &frame), &target)
            .unwrap();
        s.send_to(&vxlan_datagram(0, 4949, &frame), &target)
            .unwrap();
    });
    std::thread::sleep(Duration::from_secs(1));

    let (out, err) = all.stop(libc::SIGINT);
    let (jout, jerr) = drops.stop(libc::SIGTERM);
    eprintln!("ovsnoop --trace:\n{out}{err}\nwith --json --drops-only --vni 4949:\n{jout}{jerr}");
    let (m1, m2) = (p.mac(1), p.mac(2));
    for want in [
        format!("VNI 4949 (ov0)  tx  {m1} -> ff:ff:ff:ff:ff:ff  len 42  handed to varpd"),
        format!("VNI 4949 (ov0)  inject  {m2} -> {m1}  len 42  injected by proxy ARP ({} is-at {m2})", p.ip4(2)),
        format!("VNI 4949 (ov0)  tx  {m1} -> {m2}  len 98  queued for lookup (asked varpd)"),
        format!("ov0  lookup  -> {m2}  answered 10.79.0.2:4789"),
        format!("VNI 4949 (ov0)  tx  -> {m2}  len 98  sent to 10.79.0.2:4789 (released from the lookup queue)"),
        format!("VNI 4949 (ov0)  tx  {m1} -> {m2}  len 98  sent to 10.79.0.2:4789"),
        format!("VNI 4949 (ov0)  rx  {m2} -> {m1}  len 98  delivered from 10.79.0.2"),
        format!("VNI 4949 (ov0)  tx  {m1} -> {m2}  len 98  dropped: target-drop"),
        "VNI 4999 (-)  rx  len 68  dropped: unknown-vni".to_string(),
        "VNI 0 (-)  rx  len 68  dropped: no-vni-flag".to_string(),
    ] {
        assert!(out.contains(&want), "no `{want}` in the trace:\n{out}");
    }
    assert_eq!(
        out.matches("dropped: target-drop").count(),
        2,
        "two pings into a drop entry:\n{out}"
    );
    assert!(
        err.contains("events traced") && err.contains("target-drop 2"),
        "{err}"
    );

    let objs: Vec<serde_json::Value> = jout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON ({e}): {l}")))
        .collect();
    assert!(objs.len() >= 2, "{jout}");
    for o in &objs {
        assert_eq!(o["vni"], 4949, "--vni 4949 let {o} through");
        assert!(
            o["decision"] == "dropped"
                || o["result"].as_str().is_some_and(|r| r.starts_with("drop")),
            "--drops-only let {o} through"
        );
    }
    let td: Vec<_> = objs
        .iter()
        .filter(|o| o["reason"] == "target-drop")
        .collect();
    assert_eq!(td.len(), 2, "{jout}");
    assert_eq!(td[0]["dir"], "tx");
    assert_eq!(td[0]["overlay"], "ov0");
    assert_eq!(td[0]["src_mac"], m1.as_str());
    assert_eq!(td[0]["dst_mac"], m2.as_str());
    assert!(td[0]["ts"].as_f64().unwrap() > 1.6e9);

    // No bpftrace outlives its ovsnoop.
    for pid in tracers {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "bpftrace {pid} still runs after ovsnoop stopped"
        );
    }
}
