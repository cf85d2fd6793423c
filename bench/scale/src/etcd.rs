//! A three-member etcd cluster of real `etcd` processes on loopback ports,
//! with its data under a temporary directory.
//!
//! Every member is a child in its own process group that dies with the
//! bench (`PR_SET_PDEATHSIG`), and [`Cluster`]'s `Drop` kills them and
//! removes the directory, so a failing or interrupted run leaves nothing
//! behind. A member can be killed (SIGKILL) and started again on the same
//! data directory; the CPU time of every process a member ran as is
//! summed from `/proc/PID/stat`.

use anyhow::{bail, Context, Result};
use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Number of members.
pub const MEMBERS: usize = 3;

/// etcd's backend quota: its default (2 GiB), stated so that the report
/// can set the DB size against it.
pub const QUOTA_BYTES: u64 = 2 << 30;

struct Member {
    name: String,
    client: u16,
    peer: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// CPU seconds of the processes this member ran as before the current.
    past_cpu_s: f64,
}

/// The cluster; killed and removed when dropped.
pub struct Cluster {
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// CPU seconds (user + system) of process `pid` so far, from
/// `/proc/PID/stat`; 0 if it is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime and stime are fields 14 and 15.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

impl Member {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    fn start(&mut self, cluster: &str, token: &str) -> Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", token])
            // etcd's defaults, stated: what a deployment starts from.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--quota-backend-bytes", &QUOTA_BYTES.to_string()])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("dup log fd")?)
            .stderr(log)
            .process_group(0);
        // SAFETY: prctl in the child between fork and exec only sets its
        // parent-death signal, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot run etcd: {e} (install the etcd-server package: sudo make deps)"
            )
        })?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.past_cpu_s += cpu_seconds(c.id());
            // SAFETY: kill(2) has no memory effects; ESRCH is harmless.
            unsafe { libc::kill(-(c.id() as libc::pid_t), libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    fn cpu_s(&self) -> f64 {
        self.past_cpu_s + self.child.as_ref().map_or(0.0, |c| cpu_seconds(c.id()))
    }
}

impl Cluster {
    /// Starts the members with their data in a new directory under `base`
    /// and waits until each answers a status request.
    pub async fn start(base: &Path) -> Result<Cluster> {
        let dir = base.join(format!("overlay-bench-scale-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut c = Cluster {
            token: format!("bench-scale-{}", std::process::id()),
            members: Vec::new(),
            dir,
        };
        for i in 0..MEMBERS {
            c.members.push(Member {
                name: format!("e{i}"),
                client: free_port()?,
                peer: free_port()?,
                data: c.dir.join(format!("e{i}")),
                log: c.dir.join(format!("e{i}.log")),
                child: None,
                past_cpu_s: 0.0,
            });
        }
        let initial = c.initial_cluster();
        for m in &mut c.members {
            m.start(&initial, &c.token)?;
        }
        for i in 0..MEMBERS {
            c.wait_up(i, Duration::from_secs(30)).await?;
        }
        Ok(c)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client URLs: the value of `etcd/endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::url).collect()
    }

    /// The last lines of member `i`'s log, for error messages.
    fn log_tail(&self, i: usize) -> String {
        let text = fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// The status of member `i`, through a client of its own.
    pub async fn status(&self, i: usize) -> Result<etcd_client::StatusResponse> {
        let opts = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        let mut c = etcd_client::Client::connect([self.members[i].url()], Some(opts)).await?;
        Ok(c.status().await?)
    }

    /// Waits until member `i` answers a status request with a leader known.
    pub async fn wait_up(&self, i: usize, limit: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            match self.status(i).await {
                Ok(s) if s.leader() != 0 => return Ok(()),
                Ok(_) | Err(_) if start.elapsed() < limit => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => bail!(
                    "etcd {} has no leader after {limit:?}",
                    self.members[i].name
                ),
                Err(e) => bail!(
                    "etcd {} does not answer after {limit:?}: {e}\n{}:\n{}",
                    self.members[i].name,
                    self.members[i].log.display(),
                    self.log_tail(i)
                ),
            }
        }
    }

    /// The index of the current leader, as the running members see it.
    pub async fn leader(&self) -> Option<usize> {
        for i in (0..MEMBERS).filter(|&i| self.members[i].child.is_some()) {
            if let Ok(s) = self.status(i).await {
                let id = s.header().map(|h| h.member_id());
                if s.leader() != 0 && id == Some(s.leader()) {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Kills member `i` with SIGKILL (no goodbye).
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its data directory.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        let initial = self.initial_cluster();
        self.members[i].start(&initial, &self.token)
    }

    /// Member `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// CPU seconds of every member over the run so far, restarts included.
    pub fn cpu_s(&self) -> f64 {
        self.members.iter().map(Member::cpu_s).sum()
    }

    /// The largest backend DB size any member reports, in bytes.
    pub async fn db_bytes(&self) -> Result<i64> {
        let mut max = 0;
        for i in (0..MEMBERS).filter(|&i| self.members[i].child.is_some()) {
            max = max.max(self.status(i).await?.db_size());
        }
        Ok(max)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            m.kill();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
