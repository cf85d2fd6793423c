//! [`Lab`]: the hosts of one test, their links, daemons and tools.

use crate::daemon::{self, Daemon, Paths, Running};
use crate::netns;
use crate::tools::{
    describe, require_tools, run, run_ok, tail, text, wait_for, BackgroundPing, Ping,
};
use overlay_api::{Client, StatsSnapshot};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Labs made by this process so far; part of every namespace name.
static LABS: AtomicU32 = AtomicU32::new(0);

/// A host of a lab: a handle to pass back to the lab's methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Host(usize);

struct HostInfo {
    label: String,
    ns: String,
    dir: PathBuf,
}

/// A set of network-namespace hosts for one test, taken down on drop.
///
/// ```no_run
/// # use overlay_tests::Lab;
/// let mut lab = Lab::new("example");
/// let a = lab.add_host("a");
/// let b = lab.add_host("b");
/// lab.link(a, "10.40.0.1/24", b, "10.40.0.2/24");
/// lab.overlay_host(a);
/// assert!(lab.ping(a, "10.40.0.2", &[]).all_answered());
/// ```
pub struct Lab {
    name: String,
    id: String,
    dir: PathBuf,
    bin_dir: PathBuf,
    hosts: Vec<HostInfo>,
    switches: Vec<String>,
    running: Vec<Running>,
    overlayd_args: Vec<String>,
}

impl Lab {
    /// A new, empty lab. `name` (the test's) labels its directory and
    /// messages. Checks that we are root and that `ip` and `ping` exist,
    /// and reaps namespaces that killed runs left behind.
    pub fn new(name: &str) -> Lab {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the namespace lab needs root (network namespaces): run `sudo make test`"
        );
        require_tools(&["ip", "ping"]);
        netns::reap_stale();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}-{n}", netns::PREFIX, std::process::id());
        let dir = std::env::temp_dir().join(format!("{id}-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        Lab {
            name: name.to_string(),
            id,
            dir,
            bin_dir: bin_dir(),
            hosts: Vec::new(),
            switches: Vec::new(),
            running: Vec::new(),
            overlayd_args: Vec::new(),
        }
    }

    /// The lab's scratch directory (host run/state dirs, logs, configs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a host: a namespace `ovt<pid>-<n>-<label>` with loopback up and
    /// nothing else (no addresses, no routes). `label` is a few letters or
    /// digits, unique in the lab.
    pub fn add_host(&mut self, label: &str) -> Host {
        assert!(
            !label.is_empty()
                && label.len() <= 8
                && label.bytes().all(|b| b.is_ascii_alphanumeric()),
            "host label '{label}' must be 1-8 letters or digits (it names interfaces too)"
        );
        assert!(
            self.hosts.iter().all(|h| h.label != label),
            "host '{label}' already exists"
        );
        let ns = format!("{}-{label}", self.id);
        let dir = self.dir.join(label);
        for d in ["run", "state"] {
            std::fs::create_dir_all(dir.join(d))
                .unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        }
        netns::add(&ns);
        self.hosts.push(HostInfo {
            label: label.to_string(),
            ns,
            dir,
        });
        Host(self.hosts.len() - 1)
    }

    fn info(&self, h: Host) -> &HostInfo {
        &self.hosts[h.0]
    }

    /// The host's namespace name.
    pub fn ns(&self, h: Host) -> &str {
        &self.info(h).ns
    }

    /// The host's run directory (its daemons' sockets), for `--run-dir`.
    pub fn run_dir(&self, h: Host) -> PathBuf {
        self.info(h).dir.join("run")
    }

    /// The host's state directory, for `--state-dir`.
    pub fn state_dir(&self, h: Host) -> PathBuf {
        self.info(h).dir.join("state")
    }

    /// The log file of a daemon on a host.
    pub fn log(&self, h: Host, d: Daemon) -> PathBuf {
        self.info(h).dir.join(format!("{}.log", d.binary()))
    }

    /// Path of a binary under test; panics if it was not built.
    pub fn bin(&self, name: &str) -> PathBuf {
        let p = self.bin_dir.join(name);
        assert!(
            p.is_file(),
            "{} not found: build the binaries first (`cargo build --release --workspace --bins`, or `make build`), \
             or point OVERLAY_BIN_DIR at them",
            p.display()
        );
        p
    }

    /// Joins two hosts with a veth pair, each end named `ul0` in its host
    /// and given its underlay address (CIDR; IPv6 without DAD), both up. The pair is made
    /// directly inside the two namespaces, so no name ever appears in the
    /// root namespace.
    pub fn link(&mut self, a: Host, a_cidr: &str, b: Host, b_cidr: &str) {
        self.link_dev("ul0", a, a_cidr, b, b_cidr);
    }

    /// As [`Lab::link`], with both ends named `dev` (a second link of a
    /// host, such as a routed guest's next hop).
    pub fn link_dev(&mut self, dev: &str, a: Host, a_cidr: &str, b: Host, b_cidr: &str) {
        let (na, nb) = (self.ns(a).to_string(), self.ns(b).to_string());
        run_ok(Command::new("ip").args([
            "link", "add", dev, "netns", &na, "type", "veth", "peer", "name", dev, "netns", &nb,
        ]));
        for (h, cidr) in [(a, a_cidr), (b, b_cidr)] {
            // IPv6 without DAD, so that the link is usable at once.
            let nodad = if cidr.contains(':') { "nodad" } else { "" };
            let args = ["addr", "add", cidr, "dev", dev, nodad];
            self.ip(h, &args[..if nodad.is_empty() { 5 } else { 6 }]);
            self.ip(h, &["link", "set", dev, "up"]);
        }
    }

    /// As [`Lab::link`], but each host's underlay address lives on a
    /// bridge `br0` of its own with the veth end `ul0` enslaved to it (the
    /// layout `overlayd --underlay-bridge br0` needs: the host's address
    /// and link on one bridge that overlayd's underlay TAP device joins).
    /// The bridges do not call netfilter, where `br_netfilter` is loaded.
    pub fn link_bridged(&mut self, a: Host, a_cidr: &str, b: Host, b_cidr: &str) {
        let (na, nb) = (self.ns(a).to_string(), self.ns(b).to_string());
        run_ok(Command::new("ip").args([
            "link", "add", "ul0", "netns", &na, "type", "veth", "peer", "name", "ul0", "netns", &nb,
        ]));
        for (h, cidr) in [(a, a_cidr), (b, b_cidr)] {
            let _ = self.exec(h, "sysctl", ["-qw", "net.bridge.bridge-nf-call-iptables=0"]);
            self.ip(h, &["link", "add", "br0", "type", "bridge"]);
            self.ip(h, &["link", "set", "ul0", "master", "br0", "up"]);
            let nodad = if cidr.contains(':') { "nodad" } else { "" };
            let args = ["addr", "add", cidr, "dev", "br0", nodad];
            self.ip(h, &args[..if nodad.is_empty() { 5 } else { 6 }]);
            self.ip(h, &["link", "set", "br0", "up"]);
        }
    }

    /// Puts hosts on one bridge that lives in a namespace of its own
    /// (`…-swN`). Host number i (1-based, in the order given) gets underlay
    /// address `PREFIX.i/24` on `ul0`; its bridge port is `p<label>`.
    pub fn switch(&mut self, prefix: &str, hosts: &[Host]) {
        let sw = format!("{}-sw{}", self.id, self.switches.len());
        netns::add(&sw);
        self.switches.push(sw.clone());
        let ip_sw = |args: &[&str]| run_ok(Command::new("ip").arg("-n").arg(&sw).args(args));
        ip_sw(&["link", "add", "br0", "type", "bridge"]);
        ip_sw(&["link", "set", "br0", "up"]);
        for (i, &h) in hosts.iter().enumerate() {
            let port = format!("p{}", self.info(h).label);
            let ns = self.ns(h).to_string();
            run_ok(Command::new("ip").args([
                "link", "add", "ul0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
                &sw,
            ]));
            ip_sw(&["link", "set", &port, "master", "br0", "up"]);
            self.ip(
                h,
                &[
                    "addr",
                    "add",
                    &format!("{prefix}.{}/24", i + 1),
                    "dev",
                    "ul0",
                ],
            );
            self.ip(h, &["link", "set", "ul0", "up"]);
        }
    }

    /// Runs `ip -n NS ARGS` for a host and panics unless it succeeds.
    pub fn ip(&self, h: Host, args: &[&str]) -> Output {
        run_ok(Command::new("ip").arg("-n").arg(self.ns(h)).args(args))
    }

    /// Runs a program inside a host's namespace (`ip netns exec`) and
    /// returns what it did, whatever its exit status.
    pub fn exec<I, S>(&self, h: Host, program: impl AsRef<OsStr>, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(Command::new("ip")
            .args(["netns", "exec", self.ns(h)])
            .arg(program)
            .args(args))
    }

    /// Gives a device its MAC and addresses (IPv6 ones with `nodad`, so
    /// they are usable at once) and brings it up.
    pub fn addr(&self, h: Host, dev: &str, mac: &str, cidrs: &[&str]) {
        self.ip(h, &["link", "set", dev, "address", mac]);
        for c in cidrs {
            if c.contains(':') {
                self.ip(h, &["addr", "add", c, "dev", dev, "nodad"]);
            } else {
                self.ip(h, &["addr", "add", c, "dev", dev]);
            }
        }
        self.ip(h, &["link", "set", dev, "up"]);
    }

    /// A Linux kernel VXLAN device as a peer implementation: VNI `vni`, UDP
    /// port 4789, local underlay address `local`, all flooded frames to
    /// `remote`, no learning, MTU 1400 (as overlayd's default). Give it its
    /// MAC and addresses with [`Lab::addr`].
    pub fn kernel_vxlan(&self, h: Host, dev: &str, vni: u32, local: &str, remote: &str) {
        let vni = vni.to_string();
        self.ip(
            h,
            &[
                "link",
                "add",
                dev,
                "type",
                "vxlan",
                "id",
                &vni,
                "dstport",
                "4789",
                "local",
                local,
                "remote",
                remote,
                "nolearning",
            ],
        );
        self.ip(h, &["link", "set", dev, "mtu", "1400"]);
    }

    /// The `ping` of [`Lab::ping`] and [`Lab::ping_background`], inside the
    /// host's namespace.
    fn ping_command(&self, h: Host, dest: &str, extra: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            self.ns(h),
            "ping",
            "-q",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
        ])
        .args(extra)
        .arg(dest);
        cmd
    }

    /// Pings `dest` from a host: 3 requests 0.2 s apart, 2 s for each
    /// answer; `extra` arguments go before the destination (and win over
    /// these defaults, e.g. `-c 10`).
    pub fn ping(&self, h: Host, dest: &str, extra: &[&str]) -> Ping {
        let mut cmd = self.ping_command(h, dest, extra);
        let out = run(&mut cmd);
        Ping::parse(format!("$ {}\n{}", describe(&cmd), text(&out)))
    }

    /// Starts [`Lab::ping`] in the background, for traffic that flows
    /// while the test does something else (give `-c`/`-i` in `extra`).
    pub fn ping_background(&self, h: Host, dest: &str, extra: &[&str]) -> BackgroundPing {
        let mut cmd = self.ping_command(h, dest, extra);
        let shown = describe(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}"));
        BackgroundPing {
            child: Some(child),
            cmd: shown,
        }
    }

    /// Pings until every request of one run is answered or `timeout`
    /// passes; returns the last run.
    pub fn wait_ping(&self, h: Host, dest: &str, timeout: Duration) -> Ping {
        let mut last = None;
        wait_for(timeout, || {
            let p = self.ping(h, dest, &[]);
            let ok = p.all_answered();
            last = Some(p);
            ok
        });
        last.expect("wait_for tries at least once")
    }

    /// Gives every overlayd the lab starts from now on these arguments too
    /// (such as `--workers 3`).
    pub fn overlayd_args(&mut self, args: &[&str]) {
        self.overlayd_args = args.iter().map(|a| a.to_string()).collect();
    }

    /// Starts overlayd on a host and waits for its control socket.
    pub fn start_overlayd(&mut self, h: Host) {
        self.start(h, Daemon::Overlayd);
    }

    /// Starts varpd on a host and waits for its control socket.
    pub fn start_varpd(&mut self, h: Host) {
        self.start(h, Daemon::Varpd);
    }

    /// Starts a daemon on a host, with the host's run and state dirs, and
    /// waits for its control socket. Panics if it is already running.
    pub fn start(&mut self, h: Host, d: Daemon) {
        assert!(
            !self.alive(h, d),
            "{} already runs on {}",
            d.binary(),
            self.info(h).label
        );
        let bin = self.bin(d.binary());
        let (run_dir, state_dir, log) = (self.run_dir(h), self.state_dir(h), self.log(h, d));
        let child = daemon::start(
            d,
            &Paths {
                bin: &bin,
                ns: self.ns(h),
                run_dir: &run_dir,
                state_dir: &state_dir,
                log: &log,
                args: match d {
                    Daemon::Overlayd => &self.overlayd_args,
                    Daemon::Varpd => &[],
                },
            },
        );
        self.running.push(Running {
            host: h.0,
            daemon: d,
            child,
        });
    }

    /// overlayd and varpd on a host, up and linked to each other.
    pub fn overlay_host(&mut self, h: Host) {
        self.start_overlayd(h);
        self.start_varpd(h);
        self.wait_linked(h, true);
    }

    fn take(&mut self, h: Host, d: Daemon) -> Option<Running> {
        let i = self
            .running
            .iter()
            .position(|r| r.host == h.0 && r.daemon == d)?;
        Some(self.running.swap_remove(i))
    }

    /// Stops a daemon with SIGTERM (SIGKILL after 5 s) and reaps it.
    pub fn stop(&mut self, h: Host, d: Daemon) {
        let mut r = self
            .take(h, d)
            .unwrap_or_else(|| panic!("{} does not run on {}", d.binary(), self.info(h).label));
        daemon::stop(&mut r.child, libc::SIGTERM, Duration::from_secs(5));
    }

    /// Kills a daemon with SIGKILL, as a crash would, and reaps it.
    pub fn kill(&mut self, h: Host, d: Daemon) {
        let mut r = self
            .take(h, d)
            .unwrap_or_else(|| panic!("{} does not run on {}", d.binary(), self.info(h).label));
        daemon::stop(&mut r.child, libc::SIGKILL, Duration::ZERO);
    }

    /// Whether a daemon the lab started on a host is still running.
    pub fn alive(&mut self, h: Host, d: Daemon) -> bool {
        self.running
            .iter_mut()
            .any(|r| r.host == h.0 && r.daemon == d && matches!(r.child.try_wait(), Ok(None)))
    }

    /// Process id of a daemon the lab started, if it still runs.
    pub fn pid(&mut self, h: Host, d: Daemon) -> Option<u32> {
        if !self.alive(h, d) {
            return None;
        }
        self.running
            .iter()
            .find(|r| r.host == h.0 && r.daemon == d)
            .map(|r| r.child.id())
    }

    /// Runs `ovadm --run-dir RUN_DIR ARGS` inside a host; returns what it
    /// did, whatever its exit status.
    pub fn ovadm<I, S>(&self, h: Host, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns(h)])
            .arg(self.bin("ovadm"))
            .arg("--run-dir")
            .arg(self.run_dir(h))
            .args(args);
        run(&mut cmd)
    }

    /// As [`Lab::ovadm`], but panics unless it exits 0; returns its stdout.
    pub fn ovadm_ok<I, S>(&self, h: Host, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let out = self.ovadm(h, &args);
        if !out.status.success() {
            let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
            panic!(
                "`ovadm {}` on {} failed ({}):\n{}",
                shown.join(" "),
                self.info(h).label,
                out.status,
                text(&out)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A client connected to a host's overlayd control socket.
    pub fn client(&self, h: Host) -> Client {
        Client::overlayd(&self.run_dir(h))
            .unwrap_or_else(|e| panic!("overlayd on {}: {e}", self.info(h).label))
    }

    /// A statistics snapshot of a host's overlayd.
    pub fn stats(&self, h: Host) -> StatsSnapshot {
        self.client(h)
            .stats(None)
            .unwrap_or_else(|e| panic!("stats from overlayd on {}: {e}", self.info(h).label))
    }

    /// Polls a host's statistics until `cond` holds, and returns that
    /// snapshot; after `timeout`, panics showing `what` was awaited and the
    /// last snapshot.
    pub fn wait_stats(
        &self,
        h: Host,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&StatsSnapshot) -> bool,
    ) -> StatsSnapshot {
        let mut last = None;
        if wait_for(timeout, || {
            let s = self.stats(h);
            let ok = cond(&s);
            last = Some(s);
            ok
        }) {
            return last.expect("wait_for tries at least once");
        }
        panic!(
            "on {}: waited {timeout:?} for {what}; last snapshot:\n{:#?}",
            self.info(h).label,
            last
        );
    }

    /// Waits until overlayd on a host reports varpd linked (or unlinked).
    pub fn wait_linked(&self, h: Host, linked: bool) {
        let what = if linked {
            "varpd to link"
        } else {
            "varpd to unlink"
        };
        self.wait_stats(h, Duration::from_secs(10), what, |s| {
            s.varpd_linked == linked
        });
    }

    /// Runs `f` on a thread inside a host's network namespace (see the
    /// crate docs); sockets it opens belong to that host.
    pub fn in_ns<R: Send, F: FnOnce() -> R + Send>(&self, h: Host, f: F) -> R {
        netns::run_in(self.ns(h), f)
    }

    /// Writes a file into the lab directory and returns its absolute path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }

    /// Shows the end of every daemon log, for a test that is failing.
    fn dump_logs(&self) {
        for h in &self.hosts {
            for d in Daemon::ALL {
                let log = h.dir.join(format!("{}.log", d.binary()));
                if log.exists() {
                    eprintln!(
                        "---- {}: {} ({}) ----\n{}",
                        h.label,
                        d.binary(),
                        log.display(),
                        tail(&log, 30)
                    );
                }
            }
        }
    }
}

impl Drop for Lab {
    /// Kills every daemon (SIGTERM, then SIGKILL after 3 s), then every
    /// other process left in the lab's namespaces, then deletes them. On a
    /// failing test the logs are shown and the directory is kept; set
    /// `OVT_KEEP=1` to keep it always.
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if failing {
            eprintln!(
                "==== lab '{}' ({}) failed; daemon logs follow ====",
                self.name, self.id
            );
            self.dump_logs();
        }
        for r in &self.running {
            daemon::signal(&r.child, libc::SIGTERM);
        }
        wait_for(Duration::from_secs(3), || {
            self.running
                .iter_mut()
                .all(|r| matches!(r.child.try_wait(), Ok(Some(_))))
        });
        for r in &mut self.running {
            daemon::stop(&mut r.child, libc::SIGKILL, Duration::ZERO);
        }
        for ns in self.hosts.iter().map(|h| &h.ns).chain(&self.switches) {
            netns::delete(ns);
        }
        if failing || std::env::var_os("OVT_KEEP").is_some() {
            eprintln!("lab '{}' kept in {}", self.name, self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Where the binaries under test are: `$OVERLAY_BIN_DIR`, else the release
/// directory of an absolute `$CARGO_TARGET_DIR`, else the workspace's
/// `target/release` beside this crate.
fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OVERLAY_BIN_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
    {
        return d.join("release");
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("release")
}
