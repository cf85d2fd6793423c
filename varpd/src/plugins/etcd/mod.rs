//! The `etcd` plugin (dynamic): an overlay whose mappings live in an etcd
//! cluster shared by every host, so that no host needs static
//! configuration (the role of illumos' SVP/portolan, on etcd).
//!
//! ## Schema ([`schema`])
//!
//! `PREFIX/VNI/vl2/MAC` → `{"ip": UL3, "port": N}` (where MAC lives) and
//! `PREFIX/VNI/vl3/IP` → `{"mac": MAC}` (who owns IP, for proxy ARP/NDP).
//!
//! ## Parts and data flow
//!
//! - *Registration.* overlayd learns the source MACs of the frames its TAP
//!   device sends and tells varpd (`DriverMsg::LocalMac`, and again after
//!   every `InstanceReady`); [`Instance::local_mac`] records them and the
//!   session puts `vl2/MAC` = this overlay's own listen address under the
//!   host's lease. The sender of a guest's ARP and the source of its
//!   neighbour solicitation ([`Instance::local_ip`]) become `vl3/IP` keys
//!   under the same lease. What is queued when the session gets to it is
//!   written in one transaction (up to 64 operations), so that every other
//!   host's watch carries it as one message. A MAC that overlayd forgets (idle) is deleted,
//!   but only if the key still says this host (a transaction comparing the
//!   value): the MAC may have moved. The lease is kept alive every TTL/3; a
//!   host that dies stops doing so and its keys expire by themselves.
//! - *Mirror.* The session reads `PREFIX/VNI/` with ranged GETs of 10,000
//!   keys, all at the first one's revision, and watches it from that
//!   revision + 1, so no event falls between them; the [`schema::Mirror`]
//!   answers lookups. A miss in the mirror
//!   reads etcd (the watch may lag); an absent key is a drop, with the key
//!   named.
//! - *Coherence (SVP "shootdown").* Every vl2 change the watch reports
//!   invalidates overlayd's entry for that MAC, which is asked again on its
//!   next frame; every vl3 change also injects a gratuitous ARP (IPv4) or an
//!   unsolicited neighbour advertisement (IPv6) into the overlay so that
//!   guests update their neighbour caches. A stream that ends is watched
//!   again from the last revision the mirror applied; only a watch
//!   cancelled for compaction (that history is gone) is followed by a
//!   fresh read whose differences with the mirror are invalidated. The
//!   first read invalidates everything at once (one message).
//! - *Conflicts.* Another host registering a MAC this host announces is
//!   first taken as a move: this host stops announcing it and overlayd
//!   forgets it, so that it is announced again if the guest sends again (a
//!   move back). Losing it a second time within
//!   [`session::CONFLICT_WINDOW`] while the guest here still sends means
//!   two guests use one MAC: the later registration (by etcd revision)
//!   wins, and this host yields — it keeps the MAC local but announces it
//!   no more (not after a LocalMac, a new session or a restart), so the key
//!   settles after at most one claim back per host. The loser counts the
//!   conflict (`mac_conflicts`, `varpd_mac_conflicts_total`), fires
//!   `varpd:mac-conflict` (MAC, winner, loser) and reports itself degraded
//!   while serving, naming the MAC and both hosts (`show-overlay -f`). The
//!   conflict ends when the winner's key goes (the MAC is claimed again, if
//!   the key is still absent) or the guest here goes idle.
//! - *Failure.* Any etcd call that fails or times out ends the session: the
//!   instance reports itself degraded *while serving* (the mirror keeps
//!   answering; overlayd keeps its valid entries), and the session is
//!   retried with jittered backoff (200 ms → 5 s). When it is back: the
//!   lease again if it is still alive, else a new one; the local MACs and
//!   IPs published again (one transaction), the watch resumed from the last
//!   revision applied, and `ready`. Reading the whole overlay again on every
//!   reconnection is what a thousand hosts cannot do at once after an etcd
//!   member fails (`bench/scale`).
//! - *Graceful restart.* Stopping an instance ([`Instance::stop`]: varpd
//!   shuts down or restarts, overlayd goes away) withdraws nothing: other
//!   hosts keep this host's guests, and overlayd keeps forwarding to what it
//!   knows. The lease id is saved ([`Instance::save`]); the next instance
//!   takes the lease over if it is still alive (`LeaseTimeToLive`) and
//!   otherwise grants a new one. Either way it then *adopts* the keys that
//!   are this host's — vl2 keys naming its own underlay address, and the
//!   vl3 keys of those MACs, written under a lease (keys set by hand carry
//!   none) — re-putting under its lease those under another (same values:
//!   other hosts see no change). An adopted MAC that overlayd does not
//!   report as local within one lease TTL left while varpd was down, and
//!   is withdrawn. A restart shorter than the lease TTL therefore loses
//!   nothing; only [`Instance::destroy`] (the overlay deleted) withdraws
//!   this host's keys at once, by revoking the lease.
//!
//! The session runs on varpd's tokio runtime as one task spawned at `start`
//! and aborted at `stop`.

pub mod config;
pub mod schema;
mod session;

use crate::plugin::{BoxFuture, HandMapping, Instance, LookupQuery, NoAnswer, Plugin, PluginError};
use crate::provider::Provider;
use config::Config;
use overlay_api::proto::LookupResult;
use overlay_api::{DestMode, Mac, Perm, PropSpec};
use schema::{Key, Mirror, Schema};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// The `etcd` registration.
pub struct Etcd;

/// Constructor for the registry.
pub fn plugin() -> Box<dyn Plugin> {
    Box::new(Etcd)
}

impl Plugin for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn mode(&self) -> DestMode {
        DestMode::Dynamic
    }

    fn propinfo(&self) -> Vec<PropSpec> {
        config::ALL
            .iter()
            .map(|&name| PropSpec {
                name: name.into(),
                perm: Perm::Rw,
                required: name == config::PROP_ENDPOINTS,
                default: match name {
                    config::PROP_PREFIX => Some(config::DEFAULT_PREFIX.into()),
                    config::PROP_TTL => Some(config::DEFAULT_TTL.to_string()),
                    _ => None,
                },
                possible: (name == config::PROP_TTL).then(|| "2-3600".into()),
            })
            .collect()
    }

    fn create(&self, provider: Provider) -> Box<dyn Instance> {
        Box::new(EtcdInstance::new(provider))
    }

    /// Properties as saved, and the lease to take over (see [`SAVED_LEASE`]).
    fn restore(
        &self,
        provider: Provider,
        saved: &serde_json::Value,
    ) -> Result<Box<dyn Instance>, PluginError> {
        let mut inst = EtcdInstance::new(provider);
        if let Some(m) = saved.as_object() {
            for (k, v) in m {
                let Some(v) = v.as_str() else { continue };
                if k == SAVED_LEASE {
                    inst.saved_lease = Some(parse_lease(v)?);
                } else {
                    inst.setprop(k, v)?;
                }
            }
        }
        Ok(Box::new(inst))
    }
}

/// The key of the lease id (hexadecimal, as etcdctl prints it) in what
/// [`Instance::save`] writes: not a property, the state a restarted varpd
/// takes over.
pub const SAVED_LEASE: &str = "lease";

fn parse_lease(v: &str) -> Result<i64, PluginError> {
    match i64::from_str_radix(v, 16) {
        Ok(l) if l > 0 => Ok(l),
        _ => Err(PluginError::BadValue {
            name: format!("saved {SAVED_LEASE}"),
            value: v.into(),
            expected: "an etcd lease id in hexadecimal".into(),
        }),
    }
}

/// What the session is asked to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// Publish (true) or withdraw (false) a local MAC.
    Mac(Mac, bool),
    /// Publish a local MAC only if its key is absent or names this host
    /// (a conflict's winner went away).
    Claim(Mac),
    /// Publish a local VL3 address.
    Ip(IpAddr, Mac),
}

/// What the instance, its queries and its session share.
pub(crate) struct Shared {
    pub(crate) provider: Provider,
    pub(crate) cfg: Config,
    pub(crate) schema: Schema,
    /// This overlay's own underlay address: what its guests' vl2 keys say.
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) state: Mutex<State>,
    pub(crate) cmds: mpsc::UnboundedSender<Cmd>,
    /// The lease a previous instance saved, to take over if still alive.
    pub(crate) saved_lease: Option<i64>,
}

/// The mutable part of [`Shared`].
#[derive(Default)]
pub(crate) struct State {
    /// The copy of `PREFIX/VNI/`.
    pub(crate) mirror: Mirror,
    /// The mirror has been filled by a GET at least once.
    pub(crate) synced: bool,
    /// The client of the current session, for lookups that miss.
    pub(crate) client: Option<etcd_client::Client>,
    /// Why there is no session, if there is none.
    pub(crate) error: Option<String>,
    /// MACs of this host's guests (from overlayd).
    pub(crate) local_macs: HashSet<Mac>,
    /// VL3 addresses of this host's guests.
    pub(crate) local_ips: HashMap<IpAddr, Mac>,
    /// The lease of the current (or last) session.
    pub(crate) lease: Option<i64>,
    /// When each MAC this host announced was last registered by another
    /// host (moved away, as far as this host could tell then).
    pub(crate) lost: HashMap<Mac, std::time::Instant>,
    /// MACs this host yields in a conflict (its guest still uses them, but
    /// another host registered them later), with that host's address.
    pub(crate) conflicts: BTreeMap<Mac, SocketAddr>,
    /// MACs whose keys a previous instance left (they name this host) and
    /// this one adopted, not yet reported local by overlayd: since when,
    /// and their adopted vl3 addresses. Withdrawn after a lease TTL.
    pub(crate) adopted: HashMap<Mac, (std::time::Instant, Vec<IpAddr>)>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers from the mirror, or else from etcd itself.
    async fn find(self: Arc<Self>, key: Key) -> Result<schema::Entry, String> {
        let (hit, client, error) = {
            let st = self.state();
            let hit = match key {
                Key::Vl2(m) => st.mirror.vl2(&m).map(|d| schema::Entry::Vl2(m, d)),
                Key::Vl3(ip) => st.mirror.vl3(&ip).map(|m| schema::Entry::Vl3(ip, m)),
            };
            (hit, st.client.clone(), st.error.clone())
        };
        if let Some(e) = hit {
            return Ok(e);
        }
        let full = self.schema.key(key);
        let Some(client) = client else {
            return Err(format!(
                "no etcd key {full} known, and etcd is unreachable: {}",
                error.unwrap_or_else(|| "not connected yet".into())
            ));
        };
        let what = format!("etcd get {full}");
        let resp = session::retry(&what, &client, |mut c| {
            let k = full.clone();
            async move { c.get(k, None).await }
        })
        .await?;
        match resp.kvs().first() {
            Some(kv) => {
                schema::parse_entry(&self.schema, kv.key(), kv.value()).map_err(|e| e.to_string())
            }
            None => Err(format!("no etcd key {full}")),
        }
    }
}

/// One overlay's etcd instance. varpd sees it only as a `Box<dyn
/// Instance>`; it is public so that the scale benchmark (`bench/scale`) can
/// run many real instances in one process and read their mirrors.
pub struct EtcdInstance {
    provider: Provider,
    cfg: Config,
    listen: Option<SocketAddr>,
    shared: Option<Arc<Shared>>,
    task: Option<tokio::task::AbortHandle>,
    /// The lease [`Plugin::restore`] found saved.
    saved_lease: Option<i64>,
}

impl EtcdInstance {
    /// A new, unconfigured instance (what [`Plugin::create`] boxes).
    pub fn new(provider: Provider) -> EtcdInstance {
        EtcdInstance {
            provider,
            cfg: Config::default(),
            listen: None,
            shared: None,
            task: None,
            saved_lease: None,
        }
    }

    /// Calls `f` on the instance's mirror as it is now (under its lock:
    /// keep `f` short); `None` before `start`. For measurements: lookups
    /// go through [`Instance::lookup`], which also asks etcd on a miss.
    pub fn with_mirror<R>(&self, f: impl FnOnce(&Mirror) -> R) -> Option<R> {
        self.shared.as_ref().map(|s| f(&s.state().mirror))
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.shared.clone()
    }
}

impl Instance for EtcdInstance {
    fn setprop(&mut self, name: &str, value: &str) -> Result<(), PluginError> {
        self.cfg.set(name, value)
    }

    fn getprop(&self, name: &str) -> Result<Option<String>, PluginError> {
        self.cfg.get(name)
    }

    fn underlay(&mut self, listen: SocketAddr) {
        self.listen = Some(listen);
    }

    fn start(&mut self) -> Result<(), PluginError> {
        self.cfg.check()?;
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            PluginError::Config("the etcd plugin needs varpd's async runtime".into())
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            provider: self.provider.clone(),
            schema: Schema::new(self.cfg.prefix(), self.provider.vnetid()),
            cfg: self.cfg.clone(),
            listen: self.listen,
            state: Mutex::new(State::default()),
            cmds: tx,
            saved_lease: self.saved_lease,
        });
        log::info!(
            "overlay {}: etcd {} under {}",
            self.provider.overlay(),
            self.cfg.endpoints.join(","),
            shared.schema.base()
        );
        self.task = Some(rt.spawn(session::run(shared.clone(), rx)).abort_handle());
        self.shared = Some(shared);
        Ok(())
    }

    /// Ends the session; this host's keys stay, under a lease that lives
    /// one TTL more unless the next instance takes it over.
    fn stop(&self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }

    /// Revokes the lease and deletes this host's keys: the overlay is gone.
    fn destroy(&self) {
        if let Some(s) = &self.shared {
            session::withdraw(s);
        }
    }

    fn lookup(&self, q: LookupQuery) -> BoxFuture<LookupResult> {
        let Some(shared) = self.shared() else {
            return crate::plugin::ready(LookupResult::Drop {
                reason: "etcd instance not started".into(),
            });
        };
        Box::pin(async move {
            match shared.find(Key::Vl2(q.dst)).await {
                Ok(schema::Entry::Vl2(_, dest)) => LookupResult::Target { dest },
                Ok(_) => LookupResult::Drop {
                    reason: "internal: vl3 answer to a vl2 key".into(),
                },
                Err(reason) => LookupResult::Drop { reason },
            }
        })
    }

    fn arp(&self, ip: Ipv4Addr) -> BoxFuture<Result<Mac, NoAnswer>> {
        self.vl3(ip.into())
    }

    fn ndp(&self, ip: Ipv6Addr) -> BoxFuture<Result<Mac, NoAnswer>> {
        self.vl3(ip.into())
    }

    fn local_mac(&self, mac: Mac, present: bool) {
        let Some(s) = self.shared() else { return };
        let changed = {
            let mut st = s.state();
            if present {
                // Adopted from a previous instance: confirmed, with its
                // addresses.
                if let Some((_, ips)) = st.adopted.remove(&mac) {
                    for ip in ips {
                        st.local_ips.insert(ip, mac);
                    }
                }
                st.local_macs.insert(mac)
            } else {
                st.local_ips.retain(|_, m| *m != mac);
                st.lost.remove(&mac);
                if st.conflicts.remove(&mac).is_some() {
                    log::info!(
                        "overlay {}: {mac} is idle here; its conflict is over",
                        s.provider.overlay()
                    );
                }
                st.local_macs.remove(&mac)
            }
        };
        if changed {
            let _ = s.cmds.send(Cmd::Mac(mac, present));
            if !present {
                session::report_health(&s);
            }
        }
    }

    fn local_ip(&self, ip: IpAddr, mac: Mac) {
        let Some(s) = self.shared() else { return };
        let changed = s.state().local_ips.insert(ip, mac) != Some(mac);
        if changed {
            let _ = s.cmds.send(Cmd::Ip(ip, mac));
        }
    }

    fn hand_mapping(&self, m: HandMapping) -> BoxFuture<Result<(), String>> {
        let Some(s) = self.shared() else {
            return crate::plugin::ready(Err("etcd instance not started".into()));
        };
        Box::pin(async move { session::hand(&s, m).await })
    }

    /// The properties, and the lease id ([`SAVED_LEASE`]) for the next
    /// instance to take over.
    fn save(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for name in config::ALL {
            if let Ok(Some(v)) = self.cfg.get(name) {
                m.insert((*name).into(), v.into());
            }
        }
        let lease = self
            .shared
            .as_ref()
            .and_then(|s| s.state().lease)
            .or(self.saved_lease);
        if let Some(l) = lease {
            m.insert(SAVED_LEASE.into(), format!("{l:x}").into());
        }
        m.into()
    }
}

impl EtcdInstance {
    fn vl3(&self, ip: IpAddr) -> BoxFuture<Result<Mac, NoAnswer>> {
        let Some(shared) = self.shared() else {
            return crate::plugin::ready(Err(NoAnswer("etcd instance not started".into())));
        };
        Box::pin(async move {
            match shared.find(Key::Vl3(ip)).await {
                Ok(schema::Entry::Vl3(_, mac)) => Ok(mac),
                Ok(_) => Err(NoAnswer("internal: vl2 answer to a vl3 key".into())),
                Err(e) => Err(NoAnswer(e)),
            }
        })
    }
}

impl Drop for EtcdInstance {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_api::proto::VarpdMsg;
    use std::time::Duration;

    fn provider() -> (Provider, mpsc::UnboundedReceiver<VarpdMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Provider::new(5, "ov5", 55, DestMode::Dynamic, tx), rx)
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<VarpdMsg>) -> Vec<VarpdMsg> {
        let mut v = Vec::new();
        while let Ok(m) = rx.try_recv() {
            v.push(m);
        }
        v
    }

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    fn q(dst: &str) -> LookupQuery {
        LookupQuery {
            src: mac("02:00:00:00:00:99"),
            dst: mac(dst),
        }
    }

    /// An instance started against an endpoint where nothing listens: it
    /// degrades (serving), and events fed by hand drive its mirror.
    async fn unreachable() -> (
        Box<dyn Instance>,
        Arc<Shared>,
        mpsc::UnboundedReceiver<VarpdMsg>,
    ) {
        let (p, mut rx) = provider();
        let mut inst = EtcdInstance::new(p);
        inst.setprop(config::PROP_ENDPOINTS, "http://127.0.0.1:9")
            .unwrap();
        inst.setprop(config::PROP_PREFIX, "/t").unwrap();
        inst.underlay("10.0.0.1:4789".parse().unwrap());
        inst.start().unwrap();
        // The first session fails fast (connection refused).
        let mut msgs = Vec::new();
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            msgs.extend(drain(&mut rx));
            if !msgs.is_empty() {
                break;
            }
        }
        match &msgs[..] {
            [VarpdMsg::InstanceFailed {
                oid: 5,
                error,
                serving: true,
            }] => {
                assert!(
                    error.starts_with("etcd http://127.0.0.1:9: ") && error.contains("refused"),
                    "{error}"
                )
            }
            other => panic!("expected degraded-serving, got {other:?}"),
        }
        // Reach the shared state the way the session does.
        let shared = inst.shared().unwrap();
        (Box::new(inst), shared, rx)
    }

    #[test]
    fn properties() {
        let (p, _rx) = provider();
        let names: Vec<String> = Etcd.propinfo().into_iter().map(|s| s.name).collect();
        assert_eq!(names, config::ALL);
        let mut inst = Etcd.create(p.clone());
        assert_eq!(
            inst.start().unwrap_err().to_string(),
            "unset required property: etcd/endpoints"
        );
        assert!(inst
            .setprop(config::PROP_ENDPOINTS, "10.0.0.1:2379")
            .is_err());
        inst.setprop(config::PROP_ENDPOINTS, "http://10.0.0.1:2379")
            .unwrap();
        inst.setprop(config::PROP_TTL, "4").unwrap();
        let back = Etcd.restore(p, &inst.save()).unwrap();
        assert_eq!(
            back.getprop(config::PROP_ENDPOINTS).unwrap().as_deref(),
            Some("http://10.0.0.1:2379")
        );
        assert_eq!(
            back.getprop(config::PROP_TTL).unwrap().as_deref(),
            Some("4")
        );
        assert_eq!(back.getprop(config::PROP_CA).unwrap(), None);
    }

    #[test]
    fn the_lease_is_saved_and_restored_but_is_no_property() {
        let (p, _rx) = provider();
        let mut inst = EtcdInstance::new(p.clone());
        inst.setprop(config::PROP_ENDPOINTS, "http://10.0.0.1:2379")
            .unwrap();
        assert_eq!(inst.save().get(SAVED_LEASE), None, "no lease yet");
        inst.saved_lease = Some(0x694d9a3b2c1f0e07);
        let saved = inst.save();
        assert_eq!(saved[SAVED_LEASE], "694d9a3b2c1f0e07");
        let back = Etcd.restore(p.clone(), &saved).unwrap();
        assert_eq!(back.save(), saved, "restored, then saved again");
        assert!(back.getprop(SAVED_LEASE).is_err(), "not a property");
        for bad in ["", "0", "-5", "xyz", "694d9a3b2c1f0e07ff"] {
            let mut s = saved.clone();
            s[SAVED_LEASE] = bad.into();
            let e = Etcd.restore(p.clone(), &s).err().unwrap().to_string();
            assert_eq!(
                e,
                format!("saved lease: '{bad}' is not an etcd lease id in hexadecimal")
            );
        }
    }

    #[tokio::test]
    async fn stop_withdraws_nothing_and_adopted_macs_are_confirmed_by_overlayd() {
        let (inst, s, mut rx) = unreachable().await;
        let m = mac("02:00:00:00:00:0e");
        let ip: IpAddr = "192.168.5.14".parse().unwrap();
        // As the session's adoption leaves it: a MAC registered here
        // before the restart, with one address, not yet local.
        s.state()
            .adopted
            .insert(m, (std::time::Instant::now(), vec![ip]));
        inst.local_mac(m, true);
        {
            let st = s.state();
            assert!(st.adopted.is_empty());
            assert!(st.local_macs.contains(&m));
            assert_eq!(st.local_ips.get(&ip), Some(&m));
        }
        // Moved away meanwhile: no longer adopted.
        let other = mac("02:00:00:00:00:0f");
        s.state()
            .adopted
            .insert(other, (std::time::Instant::now(), vec![]));
        session::event(
            &s,
            b"/t/55/vl2/02:00:00:00:00:0f",
            Some(br#"{"ip":"10.0.0.9","port":4789}"#),
            true,
        );
        assert!(s.state().adopted.is_empty());
        drain(&mut rx);
        // Stopping says nothing to anyone, and keeps what is known.
        inst.stop();
        assert_eq!(drain(&mut rx), vec![]);
        assert!(s.state().local_macs.contains(&m));
        // Destroying without a session (etcd unreachable) cannot withdraw:
        // the keys expire with their lease.
        inst.destroy();
        assert_eq!(s.state().lease, None);
    }

    #[tokio::test]
    async fn a_mac_lost_twice_while_in_use_is_a_conflict_and_yielded() {
        let (inst, s, mut rx) = unreachable().await;
        let m = mac("02:00:00:00:00:0c");
        let key = b"/t/55/vl2/02:00:00:00:00:0c";
        let other = br#"{"ip":"10.0.0.2","port":4789}"#;
        let conflicts = || {
            s.provider
                .status()
                .mac_conflicts
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        inst.local_mac(m, true);
        // Host 10.0.0.2 registers it: a move, as far as we know.
        session::event(&s, key, Some(other), true);
        assert_eq!(
            drain(&mut rx),
            vec![
                VarpdMsg::Invalidate {
                    oid: 5,
                    mac: Some(m)
                },
                VarpdMsg::ForgetLocalMac { oid: 5, mac: m }
            ]
        );
        // The guest here sends again: claimed back (a move back)...
        inst.local_mac(m, true);
        session::event(&s, key, Some(br#"{"ip":"10.0.0.1","port":4789}"#), true);
        drain(&mut rx);
        // ... and taken again: a conflict. Yielded, not forgotten.
        session::event(&s, key, Some(other), true);
        let msgs = drain(&mut rx);
        assert_eq!(conflicts(), 1);
        assert!(
            !msgs
                .iter()
                .any(|m| matches!(m, VarpdMsg::ForgetLocalMac { .. })),
            "{msgs:?}"
        );
        let want = "MAC conflict: 02:00:00:00:00:0c at 10.0.0.1:4789 and at 10.0.0.2:4789 (registered later; it wins); this host yields";
        match msgs.last() {
            Some(VarpdMsg::InstanceFailed {
                error,
                serving: true,
                ..
            }) => assert!(error.ends_with(want), "{error}"),
            other => panic!("{other:?}"),
        }
        {
            let st = s.state();
            assert!(st.local_macs.contains(&m));
            assert_eq!(
                st.conflicts.get(&m),
                Some(&"10.0.0.2:4789".parse().unwrap())
            );
        }
        // The guest keeps sending: nothing is claimed, nothing changes.
        inst.local_mac(m, true);
        session::event(&s, key, Some(other), true);
        assert_eq!(drain(&mut rx), vec![]);
        assert_eq!(conflicts(), 1);
        // The winner's key goes: the conflict is over, the health says so.
        session::event(&s, key, None, true);
        let msgs = drain(&mut rx);
        assert!(s.state().conflicts.is_empty());
        match msgs.last() {
            Some(VarpdMsg::InstanceFailed { error, .. }) => {
                assert!(!error.contains("conflict"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        // A conflict also ends when the guest here goes idle.
        s.state()
            .conflicts
            .insert(m, "10.0.0.2:4789".parse().unwrap());
        inst.local_mac(m, false);
        assert!(s.state().conflicts.is_empty());
    }

    #[tokio::test]
    async fn watch_events_invalidate_announce_and_serve_while_degraded() {
        let (inst, s, mut rx) = unreachable().await;
        let a = "02:00:00:00:00:0a";
        // Unknown and etcd unreachable: a drop naming both.
        match inst.lookup(q(a)).await {
            LookupResult::Drop { reason } => assert!(
                reason.starts_with("no etcd key /t/55/vl2/02:00:00:00:00:0a known, and etcd is unreachable: etcd http://127.0.0.1:9: "),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        // A put: invalidated, then served from the mirror.
        session::event(
            &s,
            b"/t/55/vl2/02:00:00:00:00:0a",
            Some(br#"{"ip":"10.0.0.2","port":4789}"#),
            true,
        );
        assert_eq!(
            drain(&mut rx),
            vec![VarpdMsg::Invalidate {
                oid: 5,
                mac: Some(mac(a))
            }]
        );
        assert_eq!(
            inst.lookup(q(a)).await,
            LookupResult::Target {
                dest: "10.0.0.2:4789".parse().unwrap()
            }
        );
        // The same value again: nothing to say.
        session::event(
            &s,
            b"/t/55/vl2/02:00:00:00:00:0a",
            Some(br#"{"ip":"10.0.0.2","port":4789}"#),
            true,
        );
        assert_eq!(drain(&mut rx), vec![]);
        // Other VNIs and foreign keys are ignored.
        session::event(&s, b"/t/56/vl2/02:00:00:00:00:0a", None, true);
        session::event(&s, b"/t/55/junk", Some(b"x"), true);
        assert_eq!(drain(&mut rx), vec![]);
        // A vl3 put: invalidate and a gratuitous ARP for the new owner.
        session::event(
            &s,
            b"/t/55/vl3/192.168.5.10",
            Some(br#"{"mac":"02:00:00:00:00:0a"}"#),
            true,
        );
        let msgs = drain(&mut rx);
        assert_eq!(
            msgs[0],
            VarpdMsg::Invalidate {
                oid: 5,
                mac: Some(mac(a))
            }
        );
        match &msgs[1] {
            VarpdMsg::Inject { oid: 5, frame } => {
                let m = overlay_wire::arp::parse(frame).unwrap();
                assert!(m.is_gratuitous());
                assert_eq!(
                    (m.sender_mac, m.sender_ip),
                    (mac(a), "192.168.5.10".parse().unwrap())
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(inst.arp("192.168.5.10".parse().unwrap()).await, Ok(mac(a)));
        // IPv6: an unsolicited NA.
        session::event(
            &s,
            b"/t/55/vl3/fd05::10",
            Some(br#"{"mac":"02:00:00:00:00:0a"}"#),
            true,
        );
        let msgs = drain(&mut rx);
        assert!(
            matches!(&msgs[1], VarpdMsg::Inject { frame, .. } if frame[..6] == [0x33, 0x33, 0, 0, 0, 1]),
            "{msgs:?}"
        );
        assert_eq!(inst.ndp("fd05::10".parse().unwrap()).await, Ok(mac(a)));
        // A local guest's own address is not announced to itself.
        inst.local_mac(mac("02:00:00:00:00:0b"), true);
        session::event(
            &s,
            b"/t/55/vl3/192.168.5.11",
            Some(br#"{"mac":"02:00:00:00:00:0b"}"#),
            true,
        );
        assert_eq!(drain(&mut rx).len(), 1, "only the invalidation");
        // A bad value removes what was known rather than serve it stale.
        session::event(&s, b"/t/55/vl2/02:00:00:00:00:0a", Some(b"{bad"), true);
        assert_eq!(
            drain(&mut rx),
            vec![VarpdMsg::Invalidate {
                oid: 5,
                mac: Some(mac(a))
            }]
        );
        // A delete (an expired lease): invalidated once, counted.
        session::event(
            &s,
            b"/t/55/vl2/02:00:00:00:00:0c",
            Some(br#"{"ip":"10.0.0.3","port":4789}"#),
            true,
        );
        session::event(&s, b"/t/55/vl2/02:00:00:00:00:0c", None, true);
        session::event(&s, b"/t/55/vl2/02:00:00:00:00:0c", None, true);
        assert_eq!(drain(&mut rx).len(), 2);
        assert!(
            s.provider
                .status()
                .invalidations
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 6
        );
        assert!(s.provider.is_degraded());
        inst.stop();
    }

    #[tokio::test]
    async fn local_registrations_are_queued_once() {
        let (inst, s, mut rx) = unreachable().await;
        let m = mac("02:00:00:00:00:0d");
        inst.local_mac(m, true);
        inst.local_mac(m, true);
        inst.local_ip("192.168.5.13".parse().unwrap(), m);
        inst.local_ip("192.168.5.13".parse().unwrap(), m);
        {
            let st = s.state();
            assert!(st.local_macs.contains(&m));
            assert_eq!(st.local_ips.len(), 1);
        }
        // Our own registration coming back through the watch changes nothing.
        let key = b"/t/55/vl2/02:00:00:00:00:0d";
        session::event(&s, key, Some(br#"{"ip":"10.0.0.1","port":4789}"#), true);
        assert_eq!(
            drain(&mut rx),
            vec![VarpdMsg::Invalidate {
                oid: 5,
                mac: Some(m)
            }]
        );
        assert!(s.state().local_macs.contains(&m));
        // Another host registers it: it moved away; overlayd forgets it.
        session::event(&s, key, Some(br#"{"ip":"10.0.0.9","port":4789}"#), true);
        assert_eq!(
            drain(&mut rx),
            vec![
                VarpdMsg::Invalidate {
                    oid: 5,
                    mac: Some(m)
                },
                VarpdMsg::ForgetLocalMac { oid: 5, mac: m }
            ]
        );
        {
            let st = s.state();
            assert!(st.local_macs.is_empty() && st.local_ips.is_empty());
        }
        // Expiry of the MAC takes its addresses with it.
        inst.local_mac(m, true);
        inst.local_ip("192.168.5.13".parse().unwrap(), m);
        inst.local_mac(m, false);
        let st = s.state();
        assert!(st.local_macs.is_empty() && st.local_ips.is_empty());
    }
}
