//! A real etcd, as a test's mapping database: one member per lab host
//! (its own namespace on the lab's switch), data in the lab directory.
//!
//! [`Lab::etcd`] starts a cluster of one or more members and waits until it
//! answers; [`EtcdCluster`] stops and starts members (a restarted member
//! keeps its data directory and rejoins), runs `etcdctl` against it, and
//! kills every member when dropped. etcd is the Debian `etcd-server`
//! package (`etcdctl` from `etcd-client`); elections are tuned short
//! (heartbeat 100 ms, election timeout 1 s) so that tests stay quick.

use crate::lab::{Host, Lab};
use crate::tools::{describe, require_tools, run, tail, text};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// One member.
struct Member {
    name: String,
    ns: String,
    ip: String,
    data: PathBuf,
    log: PathBuf,
    cluster: String,
    token: String,
    tls: Option<EtcdTls>,
    child: Option<Child>,
}

/// PEM files for an etcd that speaks TLS and wants client certificates:
/// a CA, the servers' certificate and key (valid for every member's
/// address), and a client certificate and key, all signed by that CA.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    /// CA certificate.
    pub ca: PathBuf,
    /// Server certificate.
    pub server_cert: PathBuf,
    /// Server key.
    pub server_key: PathBuf,
    /// Client certificate.
    pub client_cert: PathBuf,
    /// Client key.
    pub client_key: PathBuf,
}

impl EtcdTls {
    /// Makes the files in `dir` with openssl, the server's certificate valid
    /// for the addresses `ips`.
    pub fn generate(dir: &std::path::Path, ips: &[&str]) -> EtcdTls {
        require_tools(&["openssl"]);
        let p = |n: &str| dir.join(n);
        let openssl = |args: &[&str]| {
            let out = run(Command::new("openssl").args(args));
            assert!(out.status.success(), "openssl {args:?}:\n{}", text(&out));
        };
        let s = |p: &PathBuf| p.display().to_string();
        let (ca, cak) = (p("ca.pem"), p("ca-key.pem"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &s(&cak),
            "-out",
            &s(&ca),
            "-days",
            "2",
            "-subj",
            "/CN=overlay test CA",
        ]);
        let sign = |name: &str, cn: &str, ext: &str| -> (PathBuf, PathBuf) {
            let (cert, key, csr, extf) = (
                p(&format!("{name}.pem")),
                p(&format!("{name}-key.pem")),
                p(&format!("{name}.csr")),
                p(&format!("{name}.ext")),
            );
            std::fs::write(&extf, ext).expect("write ext file");
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &s(&key),
                "-out",
                &s(&csr),
                "-subj",
                &format!("/CN={cn}"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &s(&csr),
                "-CA",
                &s(&ca),
                "-CAkey",
                &s(&cak),
                "-CAcreateserial",
                "-out",
                &s(&cert),
                "-days",
                "2",
                "-extfile",
                &s(&extf),
            ]);
            (cert, key)
        };
        let sans: Vec<String> = ips.iter().map(|ip| format!("IP:{ip}")).collect();
        let (server_cert, server_key) = sign(
            "server",
            "etcd",
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\n",
                sans.join(",")
            ),
        );
        let (client_cert, client_key) = sign("client", "varpd", "extendedKeyUsage=clientAuth\n");
        EtcdTls {
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}

/// One event of etcd's history, as `etcdctl watch` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdEvent {
    /// A put (else a delete).
    pub put: bool,
    /// The key.
    pub key: String,
    /// The value put (empty for a delete).
    pub value: String,
}

/// An etcd cluster started by a test; killed when dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
}

impl Member {
    fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log.display()));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://{}:2379", self.ip);
        let peer = format!("http://{}:2380", self.ip);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, "etcd", "--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"]);
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log)
            .process_group(0);
        let shown = describe(&cmd);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}")),
        );
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:2379", self.ip)
    }

    fn stop(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) has no memory effects; ESRCH is harmless.
            unsafe { libc::kill(-(c.id() as libc::pid_t), sig) };
            let _ = c.wait();
        }
    }
}

impl EtcdCluster {
    /// The client URLs, comma-separated: the value of `etcd/endpoints`.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.url())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// etcdctl's TLS flags, if the cluster speaks TLS.
    fn tls_flags(&self) -> Vec<String> {
        match self.members.first().and_then(|m| m.tls.as_ref()) {
            None => Vec::new(),
            Some(t) => vec![
                format!("--cacert={}", t.ca.display()),
                format!("--cert={}", t.client_cert.display()),
                format!("--key={}", t.client_key.display()),
            ],
        }
    }

    /// Stops member `i` (0-based) with SIGTERM, or SIGKILL when `kill`.
    pub fn stop(&mut self, i: usize, kill: bool) {
        self.members[i].stop(if kill { libc::SIGKILL } else { libc::SIGTERM });
    }

    /// Starts member `i` again on its data directory.
    pub fn start(&mut self, i: usize) {
        self.members[i].start();
    }

    /// Runs `etcdctl --endpoints ENDPOINTS ARGS` in the first running
    /// member's namespace; returns what it did, whatever its status.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let m = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .unwrap_or(&self.members[0]);
        run(Command::new("ip")
            .args([
                "netns",
                "exec",
                &m.ns,
                "etcdctl",
                "--dial-timeout=1s",
                "--command-timeout=2s",
            ])
            .arg(format!("--endpoints={}", self.endpoints()))
            .args(self.tls_flags())
            .env("ETCDCTL_API", "3")
            .args(args))
    }

    /// As [`EtcdCluster::etcdctl`], but panics unless it succeeds; its stdout.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed:\n{}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The keys under `prefix`, one per line.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.etcdctl_ok(&["get", "--prefix", "--keys-only", prefix])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The cluster's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl_ok(&[
            "get",
            "/",
            "--prefix",
            "--keys-only",
            "--limit=1",
            "-w",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("etcdctl get -w json: {e}:\n{out}"));
        v["header"]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no header.revision in:\n{out}"))
    }

    /// The lease a key is attached to (0: none), `None` if the key is absent.
    pub fn lease_of(&self, key: &str) -> Option<i64> {
        let out = self.etcdctl_ok(&["get", key, "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("etcdctl get -w json: {e}:\n{out}"));
        v["kvs"]
            .as_array()
            .and_then(|kvs| kvs.first())
            .map(|kv| kv["lease"].as_i64().unwrap_or(0))
    }

    /// Every event under `prefix` from revision `rev` on, in order: the
    /// history etcd keeps (the tests never compact), replayed by
    /// `etcdctl watch --rev`, which is stopped after `wait` (by then it has
    /// printed what happened before it started).
    pub fn events_since(&self, prefix: &str, rev: i64, wait: Duration) -> Vec<EtcdEvent> {
        let m = self
            .members
            .iter()
            .find(|m| m.child.is_some())
            .unwrap_or(&self.members[0]);
        let out = run(Command::new("timeout")
            .arg(format!("{}", wait.as_secs_f64()))
            .args(["ip", "netns", "exec", &m.ns, "etcdctl", "--dial-timeout=1s"])
            .arg(format!("--endpoints={}", self.endpoints()))
            .args(self.tls_flags())
            .env("ETCDCTL_API", "3")
            .args(["watch", "--prefix", &format!("--rev={rev}"), prefix]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut lines = stdout.lines();
        let mut events = Vec::new();
        while let Some(l) = lines.next() {
            let put = match l {
                "PUT" => true,
                "DELETE" => false,
                _ => continue,
            };
            let key = lines.next().unwrap_or_default().to_string();
            let value = lines.next().unwrap_or_default().to_string();
            events.push(EtcdEvent { put, key, value });
        }
        events
    }

    /// Waits until every running member answers `endpoint health`.
    pub fn wait_healthy(&self, timeout: Duration) {
        let ok = crate::tools::wait_for(timeout, || {
            self.members.iter().filter(|m| m.child.is_some()).all(|m| {
                run(Command::new("ip")
                    .args(["netns", "exec", &m.ns, "etcdctl", "--dial-timeout=1s"])
                    .arg(format!("--endpoints={}", m.url()))
                    .args(self.tls_flags())
                    .env("ETCDCTL_API", "3")
                    .args(["endpoint", "health"]))
                .status
                .success()
            })
        });
        if !ok {
            let logs: Vec<String> = self
                .members
                .iter()
                .map(|m| format!("{}:\n{}", m.log.display(), tail(&m.log, 30)))
                .collect();
            panic!(
                "etcd is not healthy after {timeout:?}:\n{}",
                logs.join("\n")
            );
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.stop(libc::SIGKILL);
        }
    }
}

impl Lab {
    /// Starts an etcd cluster with one member on each of `hosts`, at the
    /// matching underlay address of `ips` (the hosts must already be on a
    /// switch or link with those addresses), and waits until it is healthy.
    pub fn etcd(&self, hosts: &[Host], ips: &[&str]) -> EtcdCluster {
        self.etcd_with(hosts, ips, None)
    }

    /// As [`Lab::etcd`], speaking TLS with client certificates when `tls`.
    pub fn etcd_with(&self, hosts: &[Host], ips: &[&str], tls: Option<EtcdTls>) -> EtcdCluster {
        require_tools(&["etcd", "etcdctl"]);
        assert_eq!(hosts.len(), ips.len(), "one address per etcd host");
        let cluster = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("e{i}=http://{ip}:2380"))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            members: hosts
                .iter()
                .zip(ips)
                .enumerate()
                .map(|(i, (&h, ip))| Member {
                    name: format!("e{i}"),
                    ns: self.ns(h).to_string(),
                    ip: ip.to_string(),
                    data: self.dir().join(format!("etcd-e{i}")),
                    log: self.dir().join(format!("etcd-e{i}.log")),
                    cluster: cluster.clone(),
                    token: format!("{}-etcd", self.ns(hosts[0])),
                    tls: tls.clone(),
                    child: None,
                })
                .collect(),
        };
        for m in &mut c.members {
            m.start();
        }
        c.wait_healthy(Duration::from_secs(20));
        c
    }

    /// Creates overlay `name` on the etcd plugin: VNI `vni`, listening on
    /// `listen_ip` (port 4789), with `etcd/endpoints` and any `extra`
    /// properties (`etcd/lease_ttl=4,...`). Panics unless ovadm succeeds.
    pub fn create_etcd_overlay(
        &self,
        h: Host,
        name: &str,
        vni: u32,
        listen_ip: &str,
        endpoints: &str,
        extra: &str,
    ) {
        let mut props = format!("vxlan/listen_ip={listen_ip},etcd/endpoints={endpoints}");
        if !extra.is_empty() {
            props = format!("{props},{extra}");
        }
        self.ovadm_ok(
            h,
            [
                "create-overlay",
                "-e",
                "vxlan",
                "-s",
                "etcd",
                "-v",
                &vni.to_string(),
                "-p",
                &props,
                name,
            ],
        );
    }

    /// Gives a guest device its MAC and addresses the way a booting guest
    /// announces itself: a gratuitous ARP when it comes up (`arp_notify`)
    /// and duplicate address detection for IPv6 (no `nodad`), which is
    /// what the etcd plugin learns VL3 addresses from.
    pub fn guest_addr(&self, h: Host, dev: &str, mac: &str, cidrs: &[&str]) {
        // Down first: the announcement is sent on the way up.
        self.ip(h, &["link", "set", dev, "down"]);
        self.ip(h, &["link", "set", dev, "address", mac]);
        let sysctl = format!("net.ipv4.conf.{dev}.arp_notify=1");
        let out = self.exec(h, "sysctl", ["-q", "-w", sysctl.as_str()]);
        assert!(out.status.success(), "{sysctl}: {}", text(&out));
        for c in cidrs {
            self.ip(h, &["addr", "add", c, "dev", dev]);
        }
        self.ip(h, &["link", "set", dev, "up"]);
    }

    /// Gives guest namespace `guest` a VNIC named `vnic` over host `host`'s
    /// `ov0`, with MAC `mac` and addresses `cidrs`, announced as by
    /// [`Lab::guest_addr`]: a guest (re)appearing on that host.
    pub fn attach_guest(&self, host: Host, guest: Host, vnic: &str, mac: &str, cidrs: &[&str]) {
        self.ovadm_ok(
            host,
            [
                "create-vnic",
                "-l",
                "ov0",
                "-m",
                mac,
                "--netns",
                self.ns(guest),
                vnic,
            ],
        );
        self.guest_addr(guest, vnic, mac, cidrs);
    }
}
