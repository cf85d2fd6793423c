//! Open vSwitch's userspace datapath as an independent peer: VXLAN, Geneve
//! and GRE with a key, from the Debian package `openvswitch-switch`, with no
//! kernel module (the recipe of `acceptance/lib.sh`'s `ovs_host` and
//! `ovs_tunnel`).
//!
//! A host's own `ovsdb-server` and `ovs-vswitchd` run inside its namespace
//! with their database, sockets, pid files and logs in the host's lab
//! directory (never the system's `/run/openvswitch`); dropping the lab kills
//! them with everything else in the namespace. The host's underlay addresses
//! move from `ul0` to the bridge `br-phy` (datapath `netdev`), which owns
//! `ul0`. OVS reads frames with AF_PACKET and does not complete partial
//! checksums, so whatever sends to it must compute them: `ul0` of the OVS
//! host and of its peers get `ethtool -K ul0 tx off` ([`Lab::tx_csum_off`]).

use crate::lab::{Host, Lab};
use crate::tools::{require_tools, run_ok, tail, wait_for};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// `host/len` for an underlay address: /64 for IPv6, /24 for IPv4.
pub fn underlay_cidr(ul: &str) -> String {
    format!("{ul}/{}", if ul.contains(':') { 64 } else { 24 })
}

impl Lab {
    /// Two hosts on a veth pair with underlay addresses `ul1` and `ul2`
    /// (CIDRs): overlayd and varpd on `a`, which computes its checksums for
    /// OVS, and Open vSwitch on `b`.
    pub fn overlayd_and_ovs(&mut self, ul1: &str, ul2: &str) -> (Host, Host) {
        let a = self.add_host("a");
        let b = self.add_host("b");
        self.link(a, ul1, b, ul2);
        self.tx_csum_off(a, "ul0");
        self.overlay_host(a);
        self.ovs_host(b);
        (a, b)
    }

    /// Pings both ways over IPv4 and IPv6 between `a` (192.168.N.1,
    /// fdN::1) and `b` (.2, ::2) of the overlay numbered `n`, each until
    /// it answers (10 s); `peer` names `b`'s side in the failure.
    pub fn ping_four_ways(&self, a: Host, b: Host, n: u8, peer: &str) {
        for (from, h, to) in [("overlayd", a, 2), (peer, b, 1)] {
            for dest in [format!("192.168.{n}.{to}"), format!("fd{n}::{to}")] {
                let r = self.wait_ping(h, &dest, Duration::from_secs(10));
                assert!(r.all_answered(), "{from} side cannot reach {dest}:\n{r}");
            }
        }
    }

    fn ovs_dir(&self, h: Host) -> PathBuf {
        self.run_dir(h)
            .parent()
            .expect("a host's run dir is in its host dir")
            .join("ovs")
    }

    /// `ovs-vsctl` against a host's own database; panics unless it succeeds.
    pub fn ovs_vsctl(&self, h: Host, args: &[&str]) -> String {
        let d = self.ovs_dir(h);
        let out = run_ok(
            Command::new("ovs-vsctl")
                .env("OVS_RUNDIR", &d)
                .arg(format!("--db=unix:{}", d.join("db.sock").display()))
                .arg("--timeout=10")
                .args(args),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Turns off checksum offload on a host's device, so that what it sends
    /// carries complete checksums (OVS's userspace datapath needs them).
    pub fn tx_csum_off(&self, h: Host, dev: &str) {
        run_ok(Command::new("ip").args([
            "netns",
            "exec",
            self.ns(h),
            "ethtool",
            "-K",
            dev,
            "tx",
            "off",
        ]));
    }

    /// Starts Open vSwitch (userspace datapath) on a host and moves its
    /// underlay addresses from `ul0` to the OVS bridge `br-phy`.
    pub fn ovs_host(&self, h: Host) {
        require_tools(&[
            "ovsdb-tool",
            "ovsdb-server",
            "ovs-vswitchd",
            "ovs-vsctl",
            "ethtool",
        ]);
        let d = self.ovs_dir(h);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot make {}: {e}", d.display()));
        let p = |f: &str| d.join(f).display().to_string();
        run_ok(Command::new("ovsdb-tool").args([
            "create",
            &p("conf.db"),
            "/usr/share/openvswitch/vswitch.ovsschema",
        ]));
        let daemon = |bin: &str, args: &[String]| {
            run_ok(
                Command::new("ip")
                    .args(["netns", "exec", self.ns(h), bin])
                    .env("OVS_RUNDIR", &d)
                    .env("OVS_LOGDIR", &d)
                    .env("OVS_DBDIR", &d)
                    .args(args)
                    .args([
                        format!("--pidfile={}", p(&format!("{bin}.pid"))),
                        format!("--log-file={}", p(&format!("{bin}.log"))),
                        "--detach".into(),
                        "--no-chdir".into(),
                    ]),
            );
        };
        daemon(
            "ovsdb-server",
            &[
                format!("--remote=punix:{}", p("db.sock")),
                format!("--unixctl={}", p("ovsdb.ctl")),
                p("conf.db"),
            ],
        );
        self.ovs_vsctl(h, &["--no-wait", "init"]);
        daemon(
            "ovs-vswitchd",
            &[
                format!("unix:{}", p("db.sock")),
                format!("--unixctl={}", p("vswitchd.ctl")),
            ],
        );
        let addrs = self.ip(h, &["-o", "addr", "show", "dev", "ul0", "scope", "global"]);
        let cidrs: Vec<String> = String::from_utf8_lossy(&addrs.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.position(|x| x == "inet" || x == "inet6")?;
                w.next().map(str::to_string)
            })
            .collect();
        self.ovs_vsctl(
            h,
            &[
                "add-br",
                "br-phy",
                "--",
                "set",
                "bridge",
                "br-phy",
                "datapath_type=netdev",
            ],
        );
        self.ovs_vsctl(h, &["add-port", "br-phy", "ul0"]);
        self.tx_csum_off(h, "ul0");
        self.ip(h, &["addr", "flush", "dev", "ul0"]);
        for c in &cidrs {
            let mut args = vec!["addr", "add", c, "dev", "br-phy"];
            if c.contains(':') {
                args.push("nodad");
            }
            self.ip(h, &args);
        }
        self.ip(h, &["link", "set", "br-phy", "up"]);
    }

    /// A tunnel on an OVS host: a bridge `b-DEV` joining a tunnel port of
    /// `kind` (`vxlan`, `geneve`, `gre`) towards `remote` with key (VNI)
    /// `key` (OVS's tunnel key: the VNI, or for GRE the whole 32-bit key)
    /// and an internal port `DEV` of MTU 1400, without addresses: give it
    /// its MAC and addresses with [`Lab::addr`].
    pub fn ovs_tunnel(&self, h: Host, kind: &str, key: u32, remote: &str, dev: &str) {
        let br = format!("b-{dev}");
        let port = format!("t{dev}");
        self.ovs_vsctl(
            h,
            &[
                "add-br",
                &br,
                "--",
                "set",
                "bridge",
                &br,
                "datapath_type=netdev",
            ],
        );
        self.ovs_vsctl(
            h,
            &[
                "add-port",
                &br,
                &port,
                "--",
                "set",
                "interface",
                &port,
                &format!("type={kind}"),
                &format!("options:remote_ip={remote}"),
                &format!("options:key={key}"),
            ],
        );
        self.ovs_vsctl(
            h,
            &[
                "add-port",
                &br,
                dev,
                "--",
                "set",
                "interface",
                dev,
                "type=internal",
            ],
        );
        assert!(
            wait_for(Duration::from_secs(10), || {
                Command::new("ip")
                    .args(["-n", self.ns(h), "link", "show", dev])
                    .output()
                    .is_ok_and(|o| o.status.success())
            }),
            "OVS port {dev} did not appear; ovs-vswitchd.log:\n{}",
            tail(&self.ovs_dir(h).join("ovs-vswitchd.log"), 30)
        );
        self.tx_csum_off(h, dev);
        self.ip(h, &["link", "set", dev, "mtu", "1400"]);
    }
}
