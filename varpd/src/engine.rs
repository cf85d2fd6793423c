//! The instance table (illumos `libvarpd.c` + `libvarpd_overlay.c`): turns
//! overlayd's [`DriverMsg`]s into plugin operations and their results into
//! [`VarpdMsg`]s.
//!
//! The engine holds one slot per overlay id. A slot keeps what overlayd sent
//! (so a failed instance can be retried on SIGHUP), the instance's
//! [`Provider`] (its counters, health and outbox), and the started instance
//! — or nothing, if it failed to start. Every call here is synchronous and
//! quick; lookups return a future that owns what it needs, which the link
//! spawns, so the engine lock is never held across an await.

use crate::persist::Store;
use crate::plugin::{BoxFuture, Instance, LookupQuery, Plugin, PluginError};
use crate::provider::{DestType, InstanceStatus, Outbox, Provider};
use crate::proxy;
use overlay_api::proto::LookupResult;
use overlay_api::proto::{DriverMsg, VarpdMsg, VarpdReply};
use overlay_api::{DestMode, InstanceInfo, Mac, PluginInfo};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What overlayd asked for an overlay's instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Overlay name.
    pub overlay: String,
    /// VNI.
    pub vnetid: u32,
    /// Search plugin name.
    pub search: String,
    /// Every property of the overlay.
    pub props: BTreeMap<String, String>,
}

struct Slot {
    spec: InstanceSpec,
    provider: Provider,
    instance: Option<Arc<dyn Instance>>,
}

/// varpd's state: its plugins, whether it is linked, and the instances of
/// the current link.
pub struct Engine {
    plugins: Vec<Box<dyn Plugin>>,
    linked: AtomicBool,
    slots: Mutex<BTreeMap<u64, Slot>>,
    /// Saved plugin state (`persist.rs`), if varpd keeps any.
    store: Option<Store>,
}

fn reply(id: u64, oid: u64, result: LookupResult) -> VarpdMsg {
    VarpdMsg::LookupReply { id, oid, result }
}

impl Engine {
    /// An engine offering `plugins`, unlinked, with no instances.
    pub fn new(plugins: Vec<Box<dyn Plugin>>) -> Engine {
        Engine {
            plugins,
            linked: AtomicBool::new(false),
            slots: Mutex::new(BTreeMap::new()),
            store: None,
        }
    }

    /// Keeps every started instance's saved state in `store`, and restores
    /// instances from it when overlayd sends their overlays again.
    pub fn with_store(mut self, store: Store) -> Engine {
        self.store = Some(store);
        self
    }

    /// Saves the state of every started instance (at shutdown).
    pub fn save_all(&self) {
        let Some(store) = &self.store else {
            return;
        };
        for slot in self.slots().values() {
            if let Some(i) = &slot.instance {
                store.record(&slot.spec.overlay, &slot.spec.search, i.save());
            }
        }
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<u64, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The plugins as the hello and the status announce them.
    pub fn plugin_info(&self) -> Vec<PluginInfo> {
        self.plugins
            .iter()
            .map(|p| PluginInfo {
                name: p.name().into(),
                mode: p.mode(),
                props: p.propinfo(),
            })
            .collect()
    }

    fn plugin(&self, name: &str) -> Option<&dyn Plugin> {
        self.plugins.iter().find(|p| p.name() == name).map(|p| &**p)
    }

    /// Whether the link to overlayd is up.
    pub fn is_linked(&self) -> bool {
        self.linked.load(Ordering::Relaxed)
    }

    /// A link came up.
    pub fn linked(&self) {
        self.linked.store(true, Ordering::Relaxed);
    }

    /// The link went down: every instance is stopped and dropped, since
    /// overlayd re-sends them all on the next link. Stopped, not destroyed:
    /// their overlays still exist, and what they published stays.
    pub fn unlinked(&self) {
        self.linked.store(false, Ordering::Relaxed);
        let old = std::mem::take(&mut *self.slots());
        for slot in old.into_values() {
            if let Some(i) = slot.instance {
                i.stop();
            }
        }
    }

    /// Handles one message from overlayd, writing immediate answers to
    /// `outbox`. A lookup's answer may take time: it is returned as a future
    /// resolving to the messages to send, in order.
    pub fn handle(&self, msg: DriverMsg, outbox: &Outbox) -> Option<BoxFuture<Vec<VarpdMsg>>> {
        match msg {
            DriverMsg::Instance {
                oid,
                overlay,
                vnetid,
                search,
                props,
            } => {
                self.instance(
                    oid,
                    InstanceSpec {
                        overlay,
                        vnetid,
                        search,
                        props,
                    },
                    outbox,
                );
                None
            }
            DriverMsg::InstanceDelete { oid } => {
                self.delete(oid);
                None
            }
            DriverMsg::Lookup {
                id,
                oid,
                src,
                dst,
                frame,
            } => Some(self.lookup(id, oid, src, dst, frame)),
            DriverMsg::LocalMac { oid, mac, present } => {
                let instance = self.slots().get(&oid).and_then(|s| s.instance.clone());
                if let Some(i) = instance {
                    i.local_mac(mac, present);
                }
                None
            }
        }
    }

    /// Creates (or replaces) the instance of overlay `oid` and tells
    /// overlayd whether it works.
    pub fn instance(&self, oid: u64, spec: InstanceSpec, outbox: &Outbox) {
        let mode = self
            .plugin(&spec.search)
            .map(|p| p.mode())
            .unwrap_or(DestMode::Dynamic);
        let provider = Provider::new(oid, &spec.overlay, spec.vnetid, mode, outbox.clone())
            .with_dest(encap_of(&spec.props).map_or(DestType::IpPort, |m| m.dest()));
        let instance = self.start(&spec, &provider);
        let mut slots = self.slots();
        if let Some(old) = slots.remove(&oid) {
            log::info!(
                "overlay {} (oid {oid}): replacing its {} instance",
                old.spec.overlay,
                old.spec.search
            );
            if let Some(i) = old.instance {
                i.stop();
            }
        }
        slots.insert(
            oid,
            Slot {
                spec,
                provider,
                instance,
            },
        );
    }

    /// Creates, configures and starts an instance for `spec`, reporting the
    /// outcome through `provider`.
    fn start(&self, spec: &InstanceSpec, provider: &Provider) -> Option<Arc<dyn Instance>> {
        let overlay = &spec.overlay;
        let Some(plugin) = self.plugin(&spec.search) else {
            let names: Vec<&str> = self.plugins.iter().map(|p| p.name()).collect();
            let error = format!(
                "unknown search plugin '{}' (varpd has: {})",
                spec.search,
                names.join(", ")
            );
            log::warn!("overlay {overlay}: {error}");
            overlay_probes::varpd::plugin_error(&spec.search, overlay, &error);
            provider.degraded(error);
            return None;
        };
        let saved = self
            .store
            .as_ref()
            .and_then(|s| s.get(overlay, plugin.name()));
        let made = match saved {
            Some(saved) => match restore(plugin, &saved, spec, provider) {
                Ok(i) => {
                    log::info!(
                        "overlay {overlay}: {} instance restored from its saved state",
                        plugin.name()
                    );
                    Ok(i)
                }
                Err(e) => {
                    log::warn!(
                        "overlay {overlay}: cannot restore the saved {} instance ({e}); configuring it afresh",
                        plugin.name()
                    );
                    configure(plugin, spec, provider)
                }
            },
            None => configure(plugin, spec, provider),
        };
        match made {
            Ok(instance) => {
                if let Some(store) = &self.store {
                    store.record(overlay, plugin.name(), instance.save());
                }
                let point = instance.default();
                log::info!(
                    "overlay {overlay} (oid {}, vnetid {}): {} instance ready{}",
                    provider.oid(),
                    spec.vnetid,
                    plugin.name(),
                    point.map(|p| format!(", point {p}")).unwrap_or_default()
                );
                provider.ready(point);
                Some(Arc::from(instance))
            }
            Err(e) => {
                log::warn!("overlay {overlay}: {} instance failed: {e}", plugin.name());
                overlay_probes::varpd::plugin_error(plugin.name(), overlay, &e.to_string());
                provider.degraded(e.to_string());
                None
            }
        }
    }

    /// Destroys the instance of overlay `oid`, if any.
    pub fn delete(&self, oid: u64) {
        match self.slots().remove(&oid) {
            Some(slot) => {
                log::info!(
                    "overlay {} (oid {oid}): instance deleted",
                    slot.spec.overlay
                );
                if let Some(store) = &self.store {
                    store.forget(&slot.spec.overlay);
                }
                if let Some(i) = slot.instance {
                    // The overlay is gone for good: withdraw, then stop.
                    i.destroy();
                    i.stop();
                }
            }
            None => log::debug!("delete of unknown instance {oid} ignored"),
        }
    }

    /// Answers a lookup: unicast ones through the plugin's `lookup`, those
    /// carrying a group-addressed frame through [`proxy`].
    pub fn lookup(
        &self,
        id: u64,
        oid: u64,
        src: Mac,
        dst: Mac,
        frame: Option<Vec<u8>>,
    ) -> BoxFuture<Vec<VarpdMsg>> {
        let started = std::time::Instant::now();
        let (instance, status, plugin, overlay) = {
            let slots = self.slots();
            let Some(slot) = slots.get(&oid) else {
                return crate::plugin::ready(vec![reply(
                    id,
                    oid,
                    LookupResult::Drop {
                        reason: "no instance".into(),
                    },
                )]);
            };
            let status = slot.provider.status().clone();
            InstanceStatus::bump(&status.lookups);
            overlay_probes::varpd::lookup_start(&slot.spec.search, &slot.spec.overlay, dst, id);
            let Some(instance) = slot.instance.clone() else {
                let why = status.health().1.unwrap_or_default();
                let reason = format!("instance failed: {why}");
                let result = LookupResult::Drop { reason };
                overlay_probes::varpd::lookup_done(
                    &slot.spec.search,
                    &slot.spec.overlay,
                    dst,
                    &result,
                    0,
                );
                return crate::plugin::ready(vec![reply(id, oid, result)]);
            };
            (
                instance,
                status,
                slot.spec.search.clone(),
                slot.spec.overlay.clone(),
            )
        };
        let done = {
            let (plugin, overlay) = (plugin.clone(), overlay.clone());
            move |result: &LookupResult| {
                let ns = started.elapsed().as_nanos() as u64;
                overlay_probes::varpd::lookup_done(&plugin, &overlay, dst, result, ns);
            }
        };
        let unicast = |instance: Arc<dyn Instance>| -> BoxFuture<Vec<VarpdMsg>> {
            let fut = instance.lookup(LookupQuery { src, dst });
            let done = done.clone();
            Box::pin(async move {
                let result = fut.await;
                done(&result);
                vec![reply(id, oid, result)]
            })
        };
        let Some(frame) = frame else {
            return unicast(instance);
        };
        let Some(info) = overlay_wire::eth::classify(&frame) else {
            let reason = format!("runt frame ({} bytes)", frame.len());
            return crate::plugin::ready(vec![reply(
                id,
                oid,
                LookupResult::NotAnswered { reason },
            )]);
        };
        // A frame to a unicast address has nothing to proxy: a plain lookup.
        let Some(kind) = info.group else {
            return unicast(instance);
        };
        proxy::learn(&*instance, kind, &frame);
        let fut = proxy::answer(instance, status, overlay, kind, frame);
        Box::pin(async move {
            let out = fut.await;
            done(&out.result);
            let mut msgs = Vec::with_capacity(2);
            if let Some(frame) = out.inject {
                msgs.push(VarpdMsg::Inject { oid, frame });
            }
            if let Some(frame) = out.resend {
                msgs.push(VarpdMsg::Resend { oid, frame });
            }
            msgs.push(reply(id, oid, out.result));
            msgs
        })
    }

    /// SIGHUP: every instance re-reads its configuration, and every instance
    /// that failed to start is tried again.
    pub fn hangup(&self) {
        let mut working = Vec::new();
        let mut failed = Vec::new();
        for (oid, slot) in self.slots().iter() {
            match &slot.instance {
                Some(i) => working.push(i.clone()),
                None => failed.push((*oid, slot.spec.clone(), slot.provider.clone())),
            }
        }
        for i in working {
            i.refresh();
        }
        for (oid, spec, provider) in failed {
            log::info!(
                "overlay {}: retrying its {} instance",
                spec.overlay,
                spec.search
            );
            let Some(instance) = self.start(&spec, &provider) else {
                continue;
            };
            let mut slots = self.slots();
            match slots.get_mut(&oid) {
                // Only if overlayd did not replace or delete it meanwhile.
                Some(slot) if slot.instance.is_none() && slot.spec == spec => {
                    slot.instance = Some(instance)
                }
                _ => instance.stop(),
            }
        }
    }

    /// Sets or removes mappings by hand in overlay `overlay`'s instance, in
    /// order; the first failure stops and is the answer.
    pub fn hand_mappings(
        &self,
        overlay: &str,
        ops: Vec<crate::plugin::HandMapping>,
    ) -> BoxFuture<VarpdReply> {
        let err = |kind, message: String| VarpdReply::Error {
            error: overlay_api::ApiError::new(kind, message),
        };
        let instance = {
            let slots = self.slots();
            let Some(slot) = slots.values().find(|s| s.spec.overlay == overlay) else {
                return crate::plugin::ready(err(
                    overlay_api::ErrorKind::NotFound,
                    format!("varpd has no overlay {overlay}"),
                ));
            };
            match &slot.instance {
                Some(i) => (i.clone(), slot.spec.search.clone()),
                None => {
                    return crate::plugin::ready(err(
                        overlay_api::ErrorKind::Plugin,
                        format!(
                            "overlay {overlay}: its {} instance is not running: {}",
                            slot.spec.search,
                            slot.provider.status().health().1.unwrap_or_default()
                        ),
                    ))
                }
            }
        };
        let overlay = overlay.to_string();
        Box::pin(async move {
            let (instance, search) = instance;
            for op in ops {
                if let Err(e) = instance.hand_mapping(op).await {
                    return err(
                        overlay_api::ErrorKind::Plugin,
                        format!("overlay {overlay} (search plugin {search}): {e}"),
                    );
                }
            }
            VarpdReply::Done
        })
    }

    /// The answer to `varpd.sock`'s status request.
    pub fn status(&self) -> VarpdReply {
        let instances = self
            .slots()
            .iter()
            .map(|(oid, slot)| {
                let st = slot.provider.status();
                let (status, details) = st.health();
                InstanceInfo {
                    oid: *oid,
                    overlay: slot.spec.overlay.clone(),
                    search: slot.spec.search.clone(),
                    status,
                    details,
                    lookups: st.lookups.load(Ordering::Relaxed),
                    proxy_arp: st.proxy_arp.load(Ordering::Relaxed),
                    proxy_ndp: st.proxy_ndp.load(Ordering::Relaxed),
                    proxy_dhcp: st.proxy_dhcp.load(Ordering::Relaxed),
                    invalidations: st.invalidations.load(Ordering::Relaxed),
                    mac_conflicts: st.mac_conflicts.load(Ordering::Relaxed),
                }
            })
            .collect();
        VarpdReply::Status {
            linked: self.is_linked(),
            plugins: self.plugin_info(),
            instances,
        }
    }
}

/// `create` → `setprop` for each of the plugin's properties the overlay has
/// → `start`.
fn configure(
    plugin: &dyn Plugin,
    spec: &InstanceSpec,
    provider: &Provider,
) -> Result<Box<dyn Instance>, PluginError> {
    setup(plugin, plugin.create(provider.clone()), spec)
}

/// [`Plugin::restore`] from `saved`, then as [`configure`]: overlayd's
/// properties are set over the restored ones (they win where they differ).
fn restore(
    plugin: &dyn Plugin,
    saved: &serde_json::Value,
    spec: &InstanceSpec,
    provider: &Provider,
) -> Result<Box<dyn Instance>, PluginError> {
    setup(plugin, plugin.restore(provider.clone(), saved)?, spec)
}

/// `setprop` for each of the plugin's properties the overlay has, then
/// `start`.
fn setup(
    plugin: &dyn Plugin,
    mut instance: Box<dyn Instance>,
    spec: &InstanceSpec,
) -> Result<Box<dyn Instance>, PluginError> {
    let prefix = format!("{}/", plugin.name());
    for (name, value) in spec.props.iter().filter(|(k, _)| k.starts_with(&prefix)) {
        instance.setprop(name, value)?;
    }
    if let Some(listen) = underlay(&spec.props) {
        instance.underlay(listen);
    }
    instance.start()?;
    if plugin.mode() == DestMode::Point && instance.default().is_none() {
        return Err(PluginError::Config(
            format!("{} plugin named no destination", plugin.name()).into(),
        ));
    }
    Ok(instance)
}

/// The overlay's encapsulation module, named by the prefix of its
/// `MODULE/listen_ip` property (every module has one; overlayd sends every
/// property of the overlay).
fn encap_of(props: &BTreeMap<String, String>) -> Option<&'static overlay_wire::encap::Encap> {
    props
        .keys()
        .find_map(|k| k.strip_suffix("/listen_ip"))
        .and_then(overlay_wire::encap::module)
}

/// The overlay's listen address from its encapsulation's `*/listen_ip` and
/// `*/listen_port` (default: the module's port; 0 for a module without
/// ports, such as NVGRE) properties.
fn underlay(props: &BTreeMap<String, String>) -> Option<std::net::SocketAddr> {
    let find = |suffix: &str| {
        props
            .iter()
            .find(|(k, _)| k.ends_with(suffix))
            .map(|(_, v)| v.as_str())
    };
    let ip: std::net::IpAddr = find("/listen_ip")?.parse().ok()?;
    let default = encap_of(props).map_or(Some(4789), |m| m.default_port().or(Some(0)));
    let port = find("/listen_port").map_or(default, |p| p.parse().ok())?;
    Some(std::net::SocketAddr::new(ip, port))
}

/// The text of a lookup result, as probes show it.
pub(crate) fn result_reason(r: &LookupResult) -> String {
    overlay_probes::result_text(r)
}
