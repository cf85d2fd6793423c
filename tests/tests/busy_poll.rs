//! `--busy-poll-us`: after a wait that brought frames, a forwarding thread
//! keeps polling without blocking for the window before it sleeps in
//! `epoll_wait`. The spin must happen while frames come (or the option
//! does nothing) and stop when they stop: an idle overlayd burns no CPU.

use overlay_tests::{Daemon, Host, Lab};
use std::time::{Duration, Instant};

/// CPU time (user + system) process `pid` has used.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces) in `(...)`.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf(3) has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU time both overlayds used while `f` ran.
fn overlayd_cpu(lab: &mut Lab, hosts: [Host; 2], f: impl FnOnce(&Lab)) -> Duration {
    let pids: Vec<u32> = hosts
        .iter()
        .map(|&h| lab.pid(h, Daemon::Overlayd).expect("overlayd running"))
        .collect();
    let before: Duration = pids.iter().map(|&p| cpu(p)).sum();
    f(lab);
    let after: Duration = pids.iter().map(|&p| cpu(p)).sum();
    after - before
}

#[test]
#[ignore = "needs root and network namespaces: run `sudo make test`"]
fn overlayd_spins_while_frames_come_and_sleeps_when_they_stop() {
    let mut lab = Lab::new("busy_poll");
    // A 20 ms window, longer than the 10 ms between pings: while they
    // come, each overlayd spins without a break.
    lab.overlayd_args(&["--busy-poll-us", "20000"]);
    let p = lab.files_pair(48, 4848);
    let (a, b) = (p.a, p.b);
    let dest = p.ip4(2);
    assert!(
        lab.wait_ping(a, &dest, Duration::from_secs(10))
            .all_answered(),
        "no ping to {dest}"
    );
    let busy = overlayd_cpu(&mut lab, [a, b], |lab| {
        let r = lab.ping(a, &dest, &["-c", "200", "-i", "0.01", "-W", "1"]);
        assert!(r.all_answered(), "{r}");
    });
    println!("busy: both overlayds used {busy:?} of CPU over 2 s of pings");
    // Two seconds of pings; both overlayds spinning is up to 4 s of CPU.
    assert!(
        busy >= Duration::from_millis(800),
        "overlayd used {busy:?} of CPU over 2 s of pings with a 20 ms spin window: it did not spin"
    );
    // Quiet: a tick every 200 ms brings no frames and is followed by no
    // spin, so both sleep.
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let idle = overlayd_cpu(&mut lab, [a, b], |_| {
        std::thread::sleep(Duration::from_secs(3))
    });
    println!("idle: both overlayds used {idle:?} of CPU in 3 s");
    assert!(
        idle <= Duration::from_millis(150),
        "an idle overlayd pair used {idle:?} of CPU in {:?}: it kept spinning",
        start.elapsed()
    );
}
