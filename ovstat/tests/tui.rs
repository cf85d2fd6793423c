//! `ovstat --tui` end to end, in a real terminal: tmux runs it at 80×24
//! against a lab with traffic, `capture-pane` reads the screen, `send-keys`
//! quits it; and against a run dir where no overlayd runs, it says so and
//! keeps running. Each capture is printed (`--nocapture`) as an example.

use overlay_tests::Lab;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A tmux server of its own (`-L`), killed whole on drop: no session or
/// ovstat is left behind, whatever the test did.
struct Tmux {
    socket: String,
    /// The server's socket file, removed on drop (tmux leaves it).
    path: String,
}

impl Tmux {
    /// Starts `ovstat --tui --run-dir RUN_DIR INTERVAL` in an 80×24 session.
    fn start(label: &str, run_dir: &Path, interval: &str) -> Tmux {
        let mut t = Tmux {
            socket: format!("ovstat-tui-{label}-{}", std::process::id()),
            path: String::new(),
        };
        let cmd = format!(
            "'{}' --tui --run-dir '{}' {interval}",
            env!("CARGO_BIN_EXE_ovstat"),
            run_dir.display()
        );
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-s",
            "ovstat",
            "-x",
            "80",
            "-y",
            "24",
            &cmd,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        let path = t.tmux(&["display-message", "-p", "#{socket_path}"]);
        t.path = String::from_utf8_lossy(&path.stdout).trim().to_string();
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("running tmux")
    }

    fn capture(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "ovstat"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.tmux(&["has-session", "-t", "ovstat"]).status.success()
    }

    /// Captures until `ok` holds or `timeout` passes; returns the last one.
    fn wait_for(&self, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + timeout;
        loop {
            let s = self.capture();
            if ok(&s) || Instant::now() >= end {
                return s;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Closing the pane hangs up ovstat's terminal: SIGHUP ends it.
        let _ = self.tmux(&["kill-server"]);
        if self.path.ends_with(&self.socket) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether a process runs `ovstat --tui --run-dir DIR` (by its command line).
fn ovstat_running(run_dir: &Path) -> bool {
    let want = run_dir.display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let args: Vec<_> = c.split(|&b| b == 0).map(String::from_utf8_lossy).collect();
                args.iter().any(|a| a.ends_with("ovstat")) && args.iter().any(|a| a == &want)
            })
        })
}

/// The TX_PPS column of the overlays-table row of `name` with VNI `vni`.
fn tx_pps(screen: &str, name: &str, vni: &str) -> Option<f64> {
    let line = screen
        .lines()
        .find(|l| l.contains(name) && l.contains(vni))?;
    let cells: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || c == '│' || c == '>')
        .filter(|c| !c.is_empty())
        .collect();
    let i = cells.iter().position(|c| *c == vni)?;
    let v = cells.get(i + 3)?;
    let (num, mul) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1e3),
        'M' => (&v[..v.len() - 1], 1e6),
        'G' => (&v[..v.len() - 1], 1e9),
        _ => (&v[..], 1.0),
    };
    num.parse::<f64>().ok().map(|n| n * mul)
}

const KEYS: &str = "↑/↓ or j/k select  s sort  p pause  q quit";

#[test]
#[ignore = "needs root, network namespaces and tmux: run `sudo make test`"]
fn tui_shows_a_lab_with_traffic_and_quits_on_q() {
    let mut lab = Lab::new("ovstui");
    let p = lab.files_pair(64, 6464);
    let r = lab.wait_ping(p.a, &p.ip4(2), Duration::from_secs(10));
    assert!(r.all_answered(), "the pair does not reach itself:\n{r}");
    let _traffic = lab.ping_background(p.a, &p.ip4(2), &["-c", "2000", "-i", "0.01"]);
    let run_dir = lab.run_dir(p.a);

    let tmux = Tmux::start("lab", &run_dir, "0.5");
    std::thread::sleep(Duration::from_secs(2));
    let screen = tmux.wait_for(Duration::from_secs(10), |s| {
        tx_pps(s, "ov0", "6464").is_some_and(|v| v > 0.0) && s.contains(KEYS)
    });
    eprintln!("$ tmux capture-pane -p (ovstat --tui, 80x24)\n{screen}");
    assert!(screen.contains("ov0"), "{screen}");
    assert!(screen.contains(KEYS), "{screen}");
    let tx = tx_pps(&screen, "ov0", "6464");
    assert!(tx.is_some_and(|v| v > 0.0), "tx rate {tx:?}:\n{screen}");
    for title in [
        " target table ",
        " drops by reason ",
        " lookup latency ",
        " top peers ",
    ] {
        assert!(screen.contains(title), "{title:?} missing:\n{screen}");
    }
    assert!(screen.contains(&p.ul(2)), "the peer is listed:\n{screen}");

    let out = tmux.tmux(&["send-keys", "-t", "ovstat", "q"]);
    assert!(out.status.success(), "send-keys: {out:?}");
    let end = Instant::now() + Duration::from_secs(5);
    while tmux.alive() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !tmux.alive(),
        "ovstat did not exit on q:\n{}",
        tmux.capture()
    );
}

#[test]
#[ignore = "needs root, network namespaces and tmux: run `sudo make test`"]
fn tui_without_overlayd_says_so_and_keeps_retrying() {
    let dir = std::env::temp_dir().join(format!("ovstat-tui-absent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the run dir");
    let tmux = Tmux::start("absent", &dir, "0.5");
    std::thread::sleep(Duration::from_secs(2));
    let screen = tmux.capture();
    eprintln!("$ tmux capture-pane -p (ovstat --tui, no overlayd)\n{screen}");
    assert!(tmux.alive(), "ovstat exited without overlayd:\n{screen}");
    let flat = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("overlayd is not reachable at"), "{screen}");
    assert!(flat.contains("retrying"), "{screen}");
    assert!(screen.contains(KEYS), "{screen}");
    drop(tmux);
    let end = Instant::now() + Duration::from_secs(5);
    while ovstat_running(&dir) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!ovstat_running(&dir), "ovstat outlived its terminal");
    let _ = std::fs::remove_dir_all(&dir);
}
