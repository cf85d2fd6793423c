//! Recurring setups, and the files plugin's configuration.
//!
//! The address plan of a pair numbered N (10..=99) is the one of
//! `acceptance/lib.sh` and of `make lab`: host i (1 or 2) has underlay
//! `10.N.0.i/24` on `ul0`, and overlay `ov0` with MAC `02:N:00:00:00:0i`,
//! `192.168.N.i/24` and `fdN::i/64`.

use crate::lab::{Host, Lab};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One entry of a files-plugin configuration (illumos `overlay_files(5)`):
/// the VL2 MAC, where it lives on the underlay, and the VL3 addresses that
/// proxy ARP and NDP answer with it.
#[derive(Clone, Debug)]
pub struct FilesEntry {
    /// VL2 MAC, the entry's key.
    pub mac: String,
    /// Underlay (UL3) address.
    pub ip: String,
    /// Underlay UDP port; 0 for none (left out of the entry: an
    /// encapsulation without ports, NVGRE).
    pub port: u16,
    /// IPv4 address that proxy ARP answers for, if any.
    pub arp: Option<String>,
    /// IPv6 address that proxy NDP answers for, if any.
    pub ndp: Option<String>,
}

impl FilesEntry {
    /// The configuration text for some entries: a JSON object keyed by MAC.
    pub fn json(entries: &[FilesEntry]) -> String {
        let mut m = Map::new();
        for e in entries {
            let mut v = json!({ "ip": e.ip });
            if e.port != 0 {
                v["port"] = Value::from(e.port);
            }
            if let Some(a) = &e.arp {
                v["arp"] = Value::from(a.as_str());
            }
            if let Some(n) = &e.ndp {
                v["ndp"] = Value::from(n.as_str());
            }
            m.insert(e.mac.clone(), v);
        }
        serde_json::to_string_pretty(&Value::Object(m)).expect("JSON values always serialize")
    }
}

/// Two overlayd hosts on a veth pair, overlay `ov0` on the files plugin.
#[derive(Clone, Debug)]
pub struct Pair {
    /// Host 1.
    pub a: Host,
    /// Host 2.
    pub b: Host,
    /// The pair's number N in the address plan.
    pub n: u8,
    /// VNI of `ov0`.
    pub vni: u32,
    /// The shared files-plugin configuration.
    pub config: PathBuf,
    /// Encapsulation module of `ov0` (`vxlan`, `geneve`).
    pub encap: &'static str,
}

impl Pair {
    /// Host 1 or 2.
    pub fn host(&self, i: u8) -> Host {
        match i {
            1 => self.a,
            2 => self.b,
            _ => panic!("a pair has hosts 1 and 2, not {i}"),
        }
    }

    /// Underlay port of the pair's encapsulation (its default).
    pub fn port(&self) -> u16 {
        match self.encap {
            "geneve" => 6081,
            _ => 4789,
        }
    }

    /// Underlay address of host i.
    pub fn ul(&self, i: u8) -> String {
        format!("10.{}.0.{i}", self.n)
    }

    /// Overlay MAC of host i.
    pub fn mac(&self, i: u8) -> String {
        format!("02:{}:00:00:00:{i:02}", self.n)
    }

    /// Overlay IPv4 address of host i.
    pub fn ip4(&self, i: u8) -> String {
        format!("192.168.{}.{i}", self.n)
    }

    /// Overlay IPv6 address of host i.
    pub fn ip6(&self, i: u8) -> String {
        format!("fd{}::{i}", self.n)
    }

    /// The files entry of host i.
    pub fn entry(&self, i: u8) -> FilesEntry {
        FilesEntry {
            mac: self.mac(i),
            ip: self.ul(i),
            port: self.port(),
            arp: Some(self.ip4(i)),
            ndp: Some(self.ip6(i)),
        }
    }
}

impl Lab {
    /// Creates overlay `name` on the files plugin: VNI `vni`, listening on
    /// `listen_ip` (port 4789), configuration `config`. Panics unless ovadm
    /// succeeds.
    pub fn create_files_overlay(
        &self,
        h: Host,
        name: &str,
        vni: u32,
        listen_ip: &str,
        config: &Path,
    ) {
        self.create_files_overlay_encap(h, name, "vxlan", vni, listen_ip, config)
    }

    /// As [`Lab::create_files_overlay`], with encapsulation `encap`
    /// (listening on `ENCAP/listen_ip`, at the module's default port).
    pub fn create_files_overlay_encap(
        &self,
        h: Host,
        name: &str,
        encap: &str,
        vni: u32,
        listen_ip: &str,
        config: &Path,
    ) {
        let props = format!(
            "{encap}/listen_ip={listen_ip},files/config={}",
            config.display()
        );
        self.ovadm_ok(
            h,
            [
                "create-overlay",
                "-e",
                encap,
                "-s",
                "files",
                "-v",
                &vni.to_string(),
                "-p",
                &props,
                name,
            ],
        );
    }

    /// Two hosts joined by a veth: overlayd on `a` (files plugin, `ov0`,
    /// `192.168.N.1`, `fdN::1`), Linux kernel VXLAN on `b` (`vx0`,
    /// `192.168.N.2`, `fdN::2`, MTU 1400), the path checked by a ping.
    pub fn kernel_vxlan_pair(&mut self, n: u8) -> (Host, Host) {
        self.kernel_vxlan_pair_with(n, false)
    }

    /// As [`Lab::kernel_vxlan_pair`], each host's underlay on a bridge
    /// `br0` ([`Lab::link_bridged`]).
    pub fn kernel_vxlan_pair_bridged(&mut self, n: u8) -> (Host, Host) {
        self.kernel_vxlan_pair_with(n, true)
    }

    fn kernel_vxlan_pair_with(&mut self, n: u8, bridged: bool) -> (Host, Host) {
        let a = self.add_host("a");
        let b = self.add_host("b");
        let (ca, cb) = (format!("10.{n}.0.1/24"), format!("10.{n}.0.2/24"));
        if bridged {
            self.link_bridged(a, &ca, b, &cb);
        } else {
            self.link(a, &ca, b, &cb);
        }
        self.overlay_host(a);
        let peer = FilesEntry {
            mac: format!("02:{n}:00:00:00:02"),
            ip: format!("10.{n}.0.2"),
            port: 4789,
            arp: Some(format!("192.168.{n}.2")),
            ndp: Some(format!("fd{n}::2")),
        };
        let config = self.write_file("files.json", &FilesEntry::json(&[peer]));
        let vni = 100 * n as u32 + n as u32;
        self.create_files_overlay(a, "ov0", vni, &format!("10.{n}.0.1"), &config);
        self.addr(
            a,
            "ov0",
            &format!("02:{n}:00:00:00:01"),
            &[&format!("192.168.{n}.1/24"), &format!("fd{n}::1/64")],
        );
        self.kernel_vxlan(
            b,
            "vx0",
            vni,
            &format!("10.{n}.0.2"),
            &format!("10.{n}.0.1"),
        );
        self.addr(
            b,
            "vx0",
            &format!("02:{n}:00:00:00:02"),
            &[&format!("192.168.{n}.2/24"), &format!("fd{n}::2/64")],
        );
        let r = self.wait_ping(a, &format!("192.168.{n}.2"), Duration::from_secs(10));
        assert!(r.all_answered(), "overlayd cannot reach kernel VXLAN:\n{r}");
        (a, b)
    }

    /// A permanent neighbour entry on host `from` of pair `p` for host
    /// `to`'s overlay address: frames go to its MAC without ARP, whatever
    /// the table or varpd says.
    pub fn pin_neighbour(&self, p: &Pair, from: u8, to: u8) {
        let (ip, mac) = (p.ip4(to), p.mac(to));
        let args = [
            "neigh",
            "replace",
            &ip,
            "lladdr",
            &mac,
            "dev",
            "ov0",
            "nud",
            "permanent",
        ];
        self.ip(p.host(from), &args);
    }

    /// The two-host files setup (see the module docs for addresses): hosts
    /// `a` and `b` on a veth pair, each with overlayd and varpd linked, and
    /// `ov0` up with its MAC and addresses. `n` is 10..=99 so that it can
    /// stand in a MAC and an IPv6 prefix as written.
    pub fn files_pair(&mut self, n: u8, vni: u32) -> Pair {
        self.files_pair_encap(n, vni, "vxlan")
    }

    /// As [`Lab::files_pair`], with encapsulation `encap` on both hosts.
    pub fn files_pair_encap(&mut self, n: u8, vni: u32, encap: &'static str) -> Pair {
        self.files_pair_with(n, vni, encap, false)
    }

    /// As [`Lab::files_pair_encap`], each host's underlay address on a
    /// bridge `br0` with its veth end enslaved ([`Lab::link_bridged`]).
    pub fn files_pair_bridged(&mut self, n: u8, vni: u32, encap: &'static str) -> Pair {
        self.files_pair_with(n, vni, encap, true)
    }

    fn files_pair_with(&mut self, n: u8, vni: u32, encap: &'static str, bridged: bool) -> Pair {
        assert!((10..=99).contains(&n), "pair number {n} must be 10..=99");
        let a = self.add_host("a");
        let b = self.add_host("b");
        let mut p = Pair {
            a,
            b,
            n,
            vni,
            config: PathBuf::new(),
            encap,
        };
        let (ca, cb) = (format!("{}/24", p.ul(1)), format!("{}/24", p.ul(2)));
        if bridged {
            self.link_bridged(a, &ca, b, &cb);
        } else {
            self.link(a, &ca, b, &cb);
        }
        p.config = self.write_file("files.json", &FilesEntry::json(&[p.entry(1), p.entry(2)]));
        for i in [1, 2] {
            let h = p.host(i);
            self.overlay_host(h);
            self.create_files_overlay_encap(h, "ov0", encap, vni, &p.ul(i), &p.config);
            self.addr(
                h,
                "ov0",
                &p.mac(i),
                &[&format!("{}/24", p.ip4(i)), &format!("{}/64", p.ip6(i))],
            );
        }
        p
    }
}
