//! The etcd session of one instance: connect, lease, publish, GET, watch,
//! and start again on any failure. See the module above for the design.

use super::schema::{self, Change, Entry, Key, Mirror};
use super::{Cmd, Shared};
use crate::provider::InstanceStatus;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    KeyValue, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use overlay_api::Mac;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Longest any one etcd call may take before the session is deemed broken.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// First and longest wait between sessions.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));
/// Most announcements (gratuitous ARP / unsolicited NA) after one resync.
const MAX_ANNOUNCE: usize = 64;
/// A MAC lost to another host a second time within this long of the
/// first, while a guest here still uses it, is a conflict, not a move.
pub(crate) const CONFLICT_WINDOW: Duration = Duration::from_secs(300);
/// Most conflicts named in the instance's health (the rest are counted).
const MAX_CONFLICTS_SHOWN: usize = 4;

type Error = String;

async fn op<T, E: std::fmt::Display>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, Error> {
    match timeout(OP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out after {OP_TIMEOUT:?}")),
    }
}

/// Pause between two tries of one call.
const RETRY_GAP: Duration = Duration::from_millis(100);

/// Calls `f` with a clone of `client` until it succeeds or [`OP_TIMEOUT`]
/// passes. With several endpoints, a call that went to a member that is
/// down fails at once where the next try goes to one that is up, and a
/// call made during an election fails until a leader is chosen: neither
/// should break the session. Every call retried here is idempotent.
pub(crate) async fn retry<T, F, Fut>(what: &str, client: &Client, mut f: F) -> Result<T, Error>
where
    F: FnMut(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match timeout(left, f(client.clone())).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if tokio::time::Instant::now() + RETRY_GAP < deadline => {
                log::debug!("{what}: {e}; trying again");
                tokio::time::sleep(RETRY_GAP).await;
            }
            Ok(Err(e)) => return Err(format!("{what}: {e}")),
            Err(_) => return Err(format!("{what}: timed out after {OP_TIMEOUT:?}")),
        }
    }
}

/// Runs sessions for ever (until aborted).
pub(crate) async fn run(shared: Arc<Shared>, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let mut backoff = BACKOFF.0;
    // The revision the mirror is current to, across sessions.
    let mut seen = 0;
    let overlay = shared.provider.overlay().to_string();
    loop {
        let Err(e) = session(&shared, &mut cmds, &mut backoff, &mut seen).await;
        let reason = format!("etcd {}: {e}", shared.cfg.endpoints.join(","));
        let report = {
            let mut st = shared.state();
            st.client = None;
            let new = st.error.as_deref() != Some(reason.as_str());
            st.error = Some(reason.clone());
            new
        };
        if report {
            log::warn!("overlay {overlay}: {reason}; serving what is known, retrying");
            overlay_probes::varpd::plugin_error("etcd", &overlay, &reason);
            report_health(&shared);
        }
        // What was asked meanwhile is in the local sets, published again
        // by the next session.
        tokio::time::sleep(jittered(backoff)).await;
        while cmds.try_recv().is_ok() {}
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

/// `d` scaled by a factor between 0.5 and 1.5, so that hosts that lost
/// etcd together do not all come back in the same instant.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

async fn connect(shared: &Shared) -> Result<Client, Error> {
    let cfg = &shared.cfg;
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(OP_TIMEOUT)
        .with_timeout(OP_TIMEOUT)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
        .with_keep_alive_while_idle(true);
    if cfg.tls() {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))
        };
        let mut tls = TlsOptions::new();
        if let Some(ca) = &cfg.ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(c), Some(k)) = (&cfg.cert, &cfg.key) {
            tls = tls.identity(Identity::from_pem(read(c)?, read(k)?));
        }
        opts = opts.with_tls(tls);
    }
    if let (Some(user), Some(pf)) = (&cfg.user, &cfg.password_file) {
        let pw = std::fs::read_to_string(pf)
            .map_err(|e| format!("{}: cannot read: {e}", pf.display()))?;
        opts = opts.with_user(user.clone(), pw.trim_end_matches(['\r', '\n']).to_string());
    }
    op("connect", Client::connect(&cfg.endpoints, Some(opts))).await
}

/// One session; returns only on failure.
async fn session(
    shared: &Arc<Shared>,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    backoff: &mut Duration,
    seen: &mut i64,
) -> Result<std::convert::Infallible, Error> {
    let mut client = connect(shared).await?;
    let ttl = shared.cfg.ttl();
    let (lease, taken) = match takeover(shared, &client, ttl).await? {
        Some(l) => (l, true),
        None => (
            retry("lease grant", &client, |mut c| async move {
                c.lease_grant(ttl, None).await
            })
            .await?
            .id(),
            false,
        ),
    };
    shared.state().lease = Some(lease);
    let (mut keeper, mut alive) = retry("lease keep-alive", &client, |mut c| async move {
        c.lease_keep_alive(lease).await
    })
    .await?;
    if taken {
        // A lease taken over may have less than a third of its TTL left:
        // renewed now, it has the whole TTL before the first tick.
        keep_alive(&mut keeper, &mut alive, lease).await?;
    }
    // Renewals count from the grant: publishing and reading a large
    // overlay on a busy cluster may take a good part of the TTL, and the
    // first renewal must not wait for it and then a third of the TTL more.
    let mut tick = tokio::time::interval(Duration::from_millis((ttl as u64 * 1000) / 3));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // What overlayd asked until now is in the local sets, published just
    // below: the queue would only write it a second time (one more watch
    // event on every host per key). Withdrawals of MACs that are not
    // back still go.
    let queued: Vec<Cmd> = std::iter::from_fn(|| cmds.try_recv().ok()).collect();
    let (macs, ips) = {
        let st = shared.state();
        // A MAC yielded in a conflict is not announced again.
        let macs: Vec<Mac> = st
            .local_macs
            .iter()
            .filter(|m| !st.conflicts.contains_key(m))
            .copied()
            .collect();
        let ips: Vec<(IpAddr, Mac)> = st.local_ips.iter().map(|(i, m)| (*i, *m)).collect();
        (macs, ips)
    };
    republish(shared, &client, lease, &macs, &ips).await?;
    let withdrawn: Vec<Cmd> = queued
        .into_iter()
        .filter(|c| matches!(c, Cmd::Mac(m, false) if !macs.contains(m)))
        .collect();
    write(shared, &client, lease, withdrawn).await?;
    // A mirror read before is current to `seen`: the watch resumes after
    // it and brings what was missed as events. Reading everything again
    // costs etcd and this host the whole overlay — a thousand hosts doing
    // so at once after a member failure is more than etcd can serve — and
    // is needed only when etcd no longer has that history (compacted: the
    // watch is cancelled, below). The first read also finds the keys a
    // previous instance left (a varpd restart) for adoption; `seen` moves
    // only once they are adopted, so a session that fails before reads
    // again.
    if *seen == 0 {
        let (rev, leased) = resync(shared, &mut client, true).await?;
        adopt(shared, &client, lease, leased).await?;
        *seen = rev;
    }
    let rev = *seen;
    let mut watch = watch_from(shared, &mut client, rev + 1).await?;
    let was_degraded = {
        let mut st = shared.state();
        st.client = Some(client.clone());
        st.error.take().is_some()
    };
    *backoff = BACKOFF.0;
    let overlay = shared.provider.overlay();
    log::info!("overlay {overlay}: etcd session up (lease {lease:x}, ttl {ttl} s, revision {rev})");
    if was_degraded || shared.provider.is_degraded() {
        report_health(shared);
    }
    loop {
        tokio::select! {
            msg = watch.message() => {
                let restart = match msg {
                    Ok(Some(resp)) if resp.canceled() || resp.compact_revision() > 0 => {
                        log::info!(
                            "overlay {overlay}: watch cancelled at revision {seen} (compacted to {}: {}); reading again",
                            resp.compact_revision(), resp.cancel_reason()
                        );
                        *seen = resync(shared, &mut client, false).await?.0;
                        true
                    }
                    Ok(Some(resp)) => {
                        // Only events move `seen`: etcd never splits a
                        // revision across messages, but a header may be
                        // ahead of events still to come.
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            *seen = (*seen).max(kv.mod_revision());
                            let value = (ev.event_type() == EventType::Put).then(|| kv.value());
                            event(shared, kv.key(), value, true);
                        }
                        false
                    }
                    Ok(None) => {
                        log::info!("overlay {overlay}: watch stream ended; watching again from revision {seen}");
                        true
                    }
                    Err(e) => {
                        log::info!("overlay {overlay}: watch: {e}; watching again from revision {seen}");
                        true
                    }
                };
                if restart {
                    watch = watch_from(shared, &mut client, *seen + 1).await?;
                }
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return Err("instance gone".into()) };
                // Whatever else is queued goes in the same transactions.
                let mut batch = vec![cmd];
                batch.extend(std::iter::from_fn(|| cmds.try_recv().ok()));
                write(shared, &client, lease, batch).await?;
            }
            _ = tick.tick() => {
                expire_adopted(shared, &client, ttl).await?;
                if let Err(e) = keep_alive(&mut keeper, &mut alive, lease).await {
                    // Its stream may have gone with one member: another
                    // stream, through whichever member answers.
                    log::info!("overlay {overlay}: {e}; reopening the keep-alive stream");
                    (keeper, alive) = retry("lease keep-alive", &client, |mut c| async move {
                        c.lease_keep_alive(lease).await
                    })
                    .await?;
                    keep_alive(&mut keeper, &mut alive, lease).await?;
                }
            }
        }
    }
}

/// Writes a mapping set by hand: no lease, so it stays until removed.
pub(crate) async fn hand(shared: &Shared, m: crate::plugin::HandMapping) -> Result<(), Error> {
    use crate::plugin::HandMapping as H;
    let (client, error) = {
        let st = shared.state();
        (st.client.clone(), st.error.clone())
    };
    let Some(client) = client else {
        return Err(format!(
            "etcd is unreachable: {}",
            error.unwrap_or_else(|| "not connected yet".into())
        ));
    };
    let (key, value) = match m {
        H::SetVl2(mac, dest) => (
            shared.schema.key(Key::Vl2(mac)),
            Some(schema::vl2_value(dest)),
        ),
        H::SetVl3(ip, mac) => (
            shared.schema.key(Key::Vl3(ip)),
            Some(schema::vl3_value(mac)),
        ),
        H::RemoveVl2(mac) => (shared.schema.key(Key::Vl2(mac)), None),
        H::RemoveVl3(ip) => (shared.schema.key(Key::Vl3(ip)), None),
    };
    match value {
        Some(v) => retry(&format!("put {key}"), &client, |mut c| {
            let (k, v) = (key.clone(), v.clone());
            async move { c.put(k, v, None).await }
        })
        .await
        .map(drop),
        None => {
            let resp = retry(&format!("delete {key}"), &client, |mut c| {
                let k = key.clone();
                async move { c.delete(k, None).await }
            })
            .await?;
            if resp.deleted() == 0 {
                return Err(format!("no etcd key {key}"));
            }
            Ok(())
        }
    }
}

/// Renews the lease once.
async fn keep_alive(
    keeper: &mut etcd_client::LeaseKeeper,
    alive: &mut etcd_client::LeaseKeepAliveStream,
    lease: i64,
) -> Result<(), Error> {
    op("lease keep-alive", keeper.keep_alive()).await?;
    match op("lease keep-alive", alive.message()).await? {
        Some(r) if r.ttl() > 0 => Ok(()),
        Some(_) => Err(format!("lease {lease:x} expired")),
        None => Err("lease keep-alive: stream ended".into()),
    }
}

/// Most operations in one transaction: half etcd's default
/// `--max-txn-ops` (128), because etcd counts a nested transaction's
/// operations against what its parent leaves of that budget.
const MAX_TXN_OPS: usize = 64;

/// Runs `ops` in transactions of at most [`MAX_TXN_OPS`] operations each
/// (retried whole: every operation here is idempotent); the responses.
///
/// A transaction is one revision, which the watch of every host delivers
/// as one message however many keys it holds: a guest's MAC and two
/// addresses, or a whole host's guests, cost each other host one message
/// rather than one per key.
async fn txns(client: &Client, ops: Vec<TxnOp>) -> Result<Vec<TxnOpResponse>, Error> {
    let mut out = Vec::with_capacity(ops.len());
    for chunk in ops.chunks(MAX_TXN_OPS) {
        let resp = retry("put", client, |mut c| {
            let txn = Txn::new().and_then(chunk.to_vec());
            async move { c.txn(txn).await }
        })
        .await?;
        out.extend(resp.op_responses());
    }
    Ok(out)
}

/// `vl2/MAC` = this host under `lease`, unless the key names another host
/// (a missing key fails `version > 0`, our own value fails `!=`: both
/// put). Its response is a transaction that *succeeded* exactly when
/// another host has the MAC. `None` without a listen address.
fn claim_op(shared: &Shared, lease: i64, mac: Mac) -> Option<TxnOp> {
    let listen = shared.listen?;
    let key = shared.schema.key(Key::Vl2(mac));
    let value = schema::vl2_value(listen);
    Some(TxnOp::txn(
        Txn::new()
            .when([
                Compare::version(key.clone(), CompareOp::Greater, 0),
                Compare::value(key.clone(), CompareOp::NotEqual, value.clone()),
            ])
            .or_else([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]),
    ))
}

/// Publishes or withdraws local mappings, the last command for a key
/// winning, in as few transactions as etcd takes.
async fn write(shared: &Shared, client: &Client, lease: i64, cmds: Vec<Cmd>) -> Result<(), Error> {
    let put = |key: String, value: String| {
        TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)))
    };
    // One operation per key: etcd refuses a transaction that writes a key
    // twice. A claim and a MAC command write the same key.
    let key_of = |c: &Cmd| match c {
        Cmd::Mac(m, _) | Cmd::Claim(m) => Key::Vl2(*m),
        Cmd::Ip(ip, _) => Key::Vl3(*ip),
    };
    let mut last: Vec<Cmd> = Vec::with_capacity(cmds.len());
    for c in cmds.into_iter().rev() {
        if !last.iter().any(|o| key_of(o) == key_of(&c)) {
            last.push(c);
        }
    }
    let mut ops = Vec::with_capacity(last.len());
    for cmd in last.into_iter().rev() {
        match cmd {
            Cmd::Mac(mac, present) => {
                let Some(listen) = shared.listen else {
                    continue;
                };
                let key = shared.schema.key(Key::Vl2(mac));
                let value = schema::vl2_value(listen);
                if present {
                    ops.push(put(key, value));
                } else {
                    // Only if it still says here: the MAC may have moved on.
                    ops.push(TxnOp::txn(
                        Txn::new()
                            .when([Compare::value(key.clone(), CompareOp::Equal, value)])
                            .and_then([TxnOp::delete(key, None)]),
                    ));
                }
            }
            Cmd::Ip(ip, mac) => {
                ops.push(put(shared.schema.key(Key::Vl3(ip)), schema::vl3_value(mac)))
            }
            // Another host that registers it first is reported by the
            // watch, as any registration is.
            Cmd::Claim(mac) => ops.extend(claim_op(shared, lease, mac)),
        }
    }
    txns(client, ops).await.map(drop)
}

/// Publishes the local MACs and addresses again under a new lease (a new
/// session), in as few transactions as etcd takes — except a MAC that
/// another host registered meanwhile (it moved while this host could not
/// reach etcd): that one is forgotten, as when the watch reports a move.
async fn republish(
    shared: &Shared,
    client: &Client,
    lease: i64,
    macs: &[Mac],
    ips: &[(IpAddr, Mac)],
) -> Result<(), Error> {
    // Without a listen address there is nothing to say where MACs are.
    let macs = if shared.listen.is_some() { macs } else { &[] };
    let mut ops: Vec<TxnOp> = macs
        .iter()
        .filter_map(|&mac| claim_op(shared, lease, mac))
        .collect();
    for &(ip, mac) in ips {
        ops.push(TxnOp::put(
            shared.schema.key(Key::Vl3(ip)),
            schema::vl3_value(mac),
            Some(PutOptions::new().with_lease(lease)),
        ));
    }
    let resp = txns(client, ops).await?;
    for (&mac, r) in macs.iter().zip(&resp) {
        if matches!(r, TxnOpResponse::Txn(t) if t.succeeded()) {
            shared.state().local_macs.remove(&mac);
            shared.state().local_ips.retain(|_, m| *m != mac);
            log::info!(
                "overlay {}: {mac} moved to another host while etcd was unreachable",
                shared.provider.overlay()
            );
            shared.provider.forget_local_mac(mac);
        }
    }
    Ok(())
}

/// Keys per page of a resync read (about 90 bytes each: some 900 KB).
const PAGE: i64 = 10000;

/// The end of the range of keys that start with `prefix` (etcd's
/// convention: the prefix with its last byte below 0xff incremented).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Reads all of `PREFIX/VNI/`, replaces the mirror with it, reports the
/// differences, and returns the revision it was read at.
///
/// The read goes in pages of [`PAGE`] keys, all at the revision of the
/// first: each page is a bounded call that fits [`OP_TIMEOUT`] and gRPC's
/// 4 MiB message limit however large the overlay, where one GET of a
/// whole VNI grows with it (and many hosts reading at once time out).
///
/// With `leased`, it also returns the keys that are under a lease (for
/// [`adopt`]), as read.
async fn resync(
    shared: &Shared,
    client: &mut Client,
    leased: bool,
) -> Result<(i64, Vec<KeyValue>), Error> {
    let base = shared.schema.base().as_bytes().to_vec();
    let end = prefix_end(&base);
    let mut from = base;
    let mut rev = 0;
    let mut new = Mirror::default();
    let mut kept = Vec::new();
    loop {
        let resp = retry("get", client, |mut c| {
            let (from, end) = (from.clone(), end.clone());
            let mut opts = GetOptions::new().with_range(end).with_limit(PAGE);
            if rev > 0 {
                opts = opts.with_revision(rev);
            }
            async move { c.get(from, Some(opts)).await }
        })
        .await?;
        if rev == 0 {
            rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        }
        for kv in resp.kvs() {
            match schema::parse_entry(&shared.schema, kv.key(), kv.value()) {
                Ok(e) => {
                    new.set(e);
                }
                Err(e) => log::warn!("overlay {}: ignoring {e}", shared.provider.overlay()),
            }
            if leased && kv.lease() != 0 {
                kept.push(kv.clone());
            }
        }
        match resp.kvs().last() {
            Some(kv) if resp.more() => {
                from = kv.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    let (changes, first) = {
        let mut st = shared.state();
        let first = !st.synced;
        st.synced = true;
        (st.mirror.replace(new), first)
    };
    let (l2, l3) = shared.state().mirror.len();
    log::info!(
        "overlay {}: read {} at revision {rev}: {l2} vl2 and {l3} vl3 keys, {} changed",
        shared.provider.overlay(),
        shared.schema.base(),
        changes.len()
    );
    let mut announced = 0;
    for c in changes {
        let announce = !first && announced < MAX_ANNOUNCE;
        if matches!(c, Change::Vl3 { now: Some(_), .. }) && announce {
            announced += 1;
        }
        changed(shared, c, announce, !first);
    }
    // The first read of an instance changes everything overlayd may hold
    // for the overlay: one message says so, where one per mapping would be
    // tens of thousands.
    if first {
        shared.provider.invalidate(None);
    }
    Ok((rev, kept))
}

async fn watch_from(
    shared: &Shared,
    client: &mut Client,
    rev: i64,
) -> Result<etcd_client::WatchStream, Error> {
    let base = shared.schema.base().to_string();
    retry("watch", client, |mut c| {
        let base = base.clone();
        let opts = WatchOptions::new().with_prefix().with_start_revision(rev);
        async move { c.watch(base, Some(opts)).await }
    })
    .await
}

/// One watch event: a put (`value`) or a delete of `key`. A value that does
/// not parse removes the key from the mirror, so that nothing stale is
/// served for it.
pub(crate) fn event(shared: &Shared, key: &[u8], value: Option<&[u8]>, announce: bool) {
    let k = match shared.schema.parse_key(key) {
        Ok(k) => k,
        Err(e) => {
            log::debug!("overlay {}: ignoring {e}", shared.provider.overlay());
            return;
        }
    };
    let change = match value.map(|v| schema::parse_value(key, k, v)) {
        Some(Ok(e)) => shared.state().mirror.set(e),
        Some(Err(e)) => {
            log::warn!("overlay {}: ignoring {e}", shared.provider.overlay());
            shared.state().mirror.remove(k)
        }
        None => shared.state().mirror.remove(k),
    };
    if let Some(c) = change {
        changed(shared, c, announce, true);
    }
}

/// Tells overlayd about one change: invalidate the target entry, and for a
/// new owner of a VL3 address (not one of this host's own guests, which
/// know their addresses) announce it to the guests. Without `invalidate`
/// the caller invalidates every entry at once instead.
pub(crate) fn changed(shared: &Shared, c: Change, announce: bool, invalidate: bool) {
    let p = &shared.provider;
    match c {
        Change::Vl2 { mac, now } => {
            log::debug!("overlay {}: vl2 {mac} now {now:?}", p.overlay());
            if invalidate {
                p.invalidate(Some(mac));
            }
            match now {
                Some(dest) if Some(dest) != shared.listen => lost_to(shared, mac, dest),
                // A conflict's winner went away: the guest here is the
                // MAC's only user now.
                None if shared.state().conflicts.remove(&mac).is_some() => {
                    log::info!(
                        "overlay {}: {mac}'s key is gone; its conflict is over, registering it here",
                        p.overlay()
                    );
                    let _ = shared.cmds.send(Cmd::Claim(mac));
                    report_health(shared);
                }
                _ => {}
            }
        }
        Change::Vl3 { ip, was, now } => {
            log::debug!("overlay {}: vl3 {ip} was {was:?} now {now:?}", p.overlay());
            if let (Some(m), true) = (was, invalidate) {
                p.invalidate(Some(m));
            }
            let Some(mac) = now else { return };
            if invalidate {
                p.invalidate(Some(mac));
            }
            if !announce || shared.state().local_macs.contains(&mac) {
                return;
            }
            let frame = match ip {
                IpAddr::V4(v4) => overlay_wire::arp::gratuitous(mac, v4),
                IpAddr::V6(v6) => overlay_wire::ndp::unsolicited_advertisement(mac, v6),
            };
            p.inject(frame);
        }
    }
}

/// Another host registered `mac` at `winner`. If a guest here announced it,
/// the first time it is taken as a move: this host stops announcing it and
/// overlayd forgets it (it announces it again if the guest sends again — a
/// move back). A second time within [`CONFLICT_WINDOW`], with the guest
/// here still sending, it is a conflict: the later registration wins, and
/// this host yields — it keeps the MAC local but announces it no more, and
/// counts, probes, logs and shows the conflict (DEGRADED, serving).
fn lost_to(shared: &Shared, mac: Mac, winner: SocketAddr) {
    let p = &shared.provider;
    let conflict = {
        let mut st = shared.state();
        st.adopted.remove(&mac);
        if let Some(w) = st.conflicts.get_mut(&mac) {
            // Yielded already; the winner changed.
            let changed = *w != winner;
            *w = winner;
            drop(st);
            if changed {
                report_health(shared);
            }
            return;
        }
        if !st.local_macs.contains(&mac) {
            return;
        }
        st.lost.retain(|_, t| t.elapsed() < CONFLICT_WINDOW);
        if st.lost.remove(&mac).is_some() {
            st.conflicts.insert(mac, winner);
            true
        } else {
            st.lost.insert(mac, std::time::Instant::now());
            st.local_ips.retain(|_, m| *m != mac);
            st.local_macs.remove(&mac);
            false
        }
    };
    if !conflict {
        log::info!("overlay {}: {mac} moved to {winner}", p.overlay());
        p.forget_local_mac(mac);
        return;
    }
    let loser = shared.listen.unwrap_or(winner);
    log::warn!(
        "overlay {}: MAC conflict: {mac} is used here ({loser}) and at {winner}, which registered it later; yielding it",
        p.overlay()
    );
    InstanceStatus::bump(&p.status().mac_conflicts);
    overlay_probes::varpd::mac_conflict("etcd", p.overlay(), mac, winner, loser);
    report_health(shared);
}

/// What the conflicts say in the instance's health, if there are any.
fn conflict_text(
    listen: Option<SocketAddr>,
    conflicts: &BTreeMap<Mac, SocketAddr>,
) -> Option<String> {
    if conflicts.is_empty() {
        return None;
    }
    let here = listen.map_or_else(|| "here".to_string(), |l| l.to_string());
    let mut parts: Vec<String> = conflicts
        .iter()
        .take(MAX_CONFLICTS_SHOWN)
        .map(|(mac, w)| format!("{mac} at {here} and at {w} (registered later; it wins)"))
        .collect();
    if conflicts.len() > MAX_CONFLICTS_SHOWN {
        parts.push(format!(
            "and {} more",
            conflicts.len() - MAX_CONFLICTS_SHOWN
        ));
    }
    Some(format!(
        "MAC conflict{}: {}; this host yields",
        if conflicts.len() > 1 { "s" } else { "" },
        parts.join(", ")
    ))
}

/// Tells overlayd the instance's health: degraded (serving) with etcd's
/// failure and the conflicts, if either, else ready.
pub(crate) fn report_health(shared: &Shared) {
    let why: Vec<String> = {
        let st = shared.state();
        [
            st.error.clone(),
            conflict_text(shared.listen, &st.conflicts),
        ]
        .into_iter()
        .flatten()
        .collect()
    };
    let p = &shared.provider;
    if why.is_empty() {
        if p.is_degraded() {
            p.ready(None);
        }
        return;
    }
    let why = why.join("; ");
    if p.status().health().1.as_deref() != Some(why.as_str()) {
        p.degraded_serving(why);
    }
}

/// The lease of the last session, or the one a previous instance saved,
/// if it is still alive with the TTL in force: this instance's lease, so
/// that a restart re-puts nothing. `None`: grant a new one.
async fn takeover(shared: &Shared, client: &Client, ttl: i64) -> Result<Option<i64>, Error> {
    let Some(old) = shared.state().lease.or(shared.saved_lease) else {
        return Ok(None);
    };
    let resp = retry("lease time-to-live", client, |mut c| async move {
        c.lease_time_to_live(old, None).await
    })
    .await?;
    let overlay = shared.provider.overlay();
    if resp.ttl() > 0 && resp.granted_ttl() == ttl {
        log::info!(
            "overlay {overlay}: taking over lease {old:x} ({} s left)",
            resp.ttl()
        );
        return Ok(Some(old));
    }
    log::info!(
        "overlay {overlay}: lease {old:x} {}; granting a new one",
        if resp.ttl() > 0 {
            format!("has a TTL of {} s, not {ttl}", resp.granted_ttl())
        } else {
            "has expired".into()
        }
    );
    Ok(None)
}

/// Adopts the keys that are this host's but not under `lease`: left by a
/// previous instance (a varpd restart) under its lease, which would expire.
/// They are re-put under `lease` — the same values, so other hosts see no
/// change — unless they changed meanwhile (compared by revision). Keys
/// without a lease were set by hand and are left alone. MACs overlayd has
/// not (yet) reported local are remembered in [`super::State::adopted`].
async fn adopt(
    shared: &Shared,
    client: &Client,
    lease: i64,
    leased: Vec<KeyValue>,
) -> Result<(), Error> {
    let Some(listen) = shared.listen else {
        return Ok(());
    };
    let mut mine: std::collections::HashSet<Mac> = Default::default();
    let mut vl3 = Vec::new();
    let mut moves = Vec::new();
    for kv in &leased {
        if kv.lease() == 0 {
            continue;
        }
        match schema::parse_entry(&shared.schema, kv.key(), kv.value()) {
            Ok(Entry::Vl2(mac, dest)) if dest == listen => {
                mine.insert(mac);
                if kv.lease() != lease {
                    moves.push(kv.clone());
                }
            }
            Ok(Entry::Vl3(ip, mac)) => vl3.push((ip, mac, kv.clone())),
            _ => {}
        }
    }
    let mut ips: std::collections::HashMap<Mac, Vec<IpAddr>> = Default::default();
    for (ip, mac, kv) in vl3 {
        if mine.contains(&mac) {
            ips.entry(mac).or_default().push(ip);
            if kv.lease() != lease {
                moves.push(kv);
            }
        }
    }
    // Each only if unchanged since the read (by revision), all in as few
    // transactions as etcd takes.
    let ops = moves
        .iter()
        .map(|kv| {
            TxnOp::txn(
                Txn::new()
                    .when([Compare::mod_revision(
                        kv.key(),
                        CompareOp::Equal,
                        kv.mod_revision(),
                    )])
                    .and_then([TxnOp::put(
                        kv.key(),
                        kv.value(),
                        Some(PutOptions::new().with_lease(lease)),
                    )]),
            )
        })
        .collect();
    let moved = txns(client, ops)
        .await?
        .iter()
        .filter(|r| matches!(r, TxnOpResponse::Txn(t) if t.succeeded()))
        .count();
    let pending = {
        let mut st = shared.state();
        let now = std::time::Instant::now();
        for (mac, ips) in ips.iter() {
            if st.local_macs.contains(mac) {
                for ip in ips {
                    st.local_ips.entry(*ip).or_insert(*mac);
                }
            }
        }
        let unconfirmed: Vec<Mac> = mine
            .iter()
            .filter(|m| !st.local_macs.contains(m))
            .copied()
            .collect();
        for mac in unconfirmed {
            let ips = ips.remove(&mac).unwrap_or_default();
            st.adopted.entry(mac).or_insert((now, ips));
        }
        st.adopted.len()
    };
    if !mine.is_empty() {
        log::info!(
            "overlay {}: {} MACs registered here in etcd; {moved} keys adopted under lease {lease:x}, {pending} MACs awaiting overlayd",
            shared.provider.overlay(),
            mine.len()
        );
    }
    Ok(())
}

/// Withdraws the adopted MACs that overlayd has not reported local within
/// a lease TTL: their guests left while varpd was down.
async fn expire_adopted(shared: &Shared, client: &Client, ttl: i64) -> Result<(), Error> {
    let Some(listen) = shared.listen else {
        return Ok(());
    };
    let grace = Duration::from_secs(ttl as u64);
    let gone: Vec<(Mac, Vec<IpAddr>)> = {
        let mut st = shared.state();
        let old: Vec<Mac> = st
            .adopted
            .iter()
            .filter(|(_, (t, _))| t.elapsed() >= grace)
            .map(|(m, _)| *m)
            .collect();
        old.into_iter()
            .filter_map(|m| st.adopted.remove(&m).map(|(_, ips)| (m, ips)))
            .collect()
    };
    for (mac, ips) in gone {
        log::info!(
            "overlay {}: {mac} was registered here before a restart but is not local; withdrawing it",
            shared.provider.overlay()
        );
        let mut keys = vec![(shared.schema.key(Key::Vl2(mac)), schema::vl2_value(listen))];
        keys.extend(
            ips.into_iter()
                .map(|ip| (shared.schema.key(Key::Vl3(ip)), schema::vl3_value(mac))),
        );
        for (key, value) in keys {
            delete_if(client, &key, &value).await?;
        }
    }
    Ok(())
}

/// Deletes `key` if its value is still `value`.
async fn delete_if(client: &Client, key: &str, value: &str) -> Result<(), Error> {
    retry("delete", client, |mut c| {
        let txn = Txn::new()
            .when([Compare::value(key, CompareOp::Equal, value)])
            .and_then([TxnOp::delete(key, None)]);
        async move { c.txn(txn).await }
    })
    .await
    .map(drop)
}

/// Withdraws this instance's registrations in the background (the overlay
/// is deleted), so that they go at once rather than after the TTL: revokes
/// the lease, which deletes every key under it, and deletes the local keys
/// that may be under another lease (if they still say here).
pub(crate) fn withdraw(shared: &Arc<Shared>) {
    let (client, lease) = {
        let mut st = shared.state();
        (st.client.take(), st.lease.take())
    };
    let Some(mut client) = client else {
        log::warn!(
            "overlay {}: etcd is unreachable; this host's keys expire with their lease",
            shared.provider.overlay()
        );
        return;
    };
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (macs, ips): (Vec<Mac>, Vec<IpAddr>) = {
        let st = shared.state();
        (
            st.local_macs.iter().copied().collect(),
            st.local_ips.keys().copied().collect(),
        )
    };
    let shared = shared.clone();
    rt.spawn(async move {
        if let Some(l) = lease {
            if let Err(e) = op("lease revoke", client.lease_revoke(l)).await {
                log::warn!("overlay {}: {e}", shared.provider.overlay());
            }
        }
        for m in macs {
            if let Some(listen) = shared.listen {
                let key = shared.schema.key(Key::Vl2(m));
                let txn = Txn::new()
                    .when([Compare::value(
                        key.clone(),
                        CompareOp::Equal,
                        schema::vl2_value(listen),
                    )])
                    .and_then([TxnOp::delete(key, None)]);
                let _ = op("delete", client.txn(txn)).await;
            }
        }
        for ip in ips {
            let _ = op(
                "delete",
                client.delete(shared.schema.key(Key::Vl3(ip)), None),
            )
            .await;
        }
    });
}
