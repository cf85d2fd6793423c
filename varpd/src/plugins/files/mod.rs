//! The `files` plugin (dynamic): a static mapping from VL2 MAC to UL3
//! destination read from a JSON file (`files/config`, illumos
//! `overlay_files(5)`, see [`mapping`]), with proxy ARP and NDP for the
//! addresses the file lists, and proxy DHCP for the guests whose entry
//! names their DHCP server (`dhcp-proxy`).
//!
//! The mapping is read at `start`. On `refresh` (varpd got SIGHUP) the file
//! is read again: if it parses, the new mapping replaces the old and every
//! MAC whose entry was added, removed or changed is invalidated in overlayd;
//! if it does not, the old mapping stays in use and the instance reports
//! itself degraded until a later refresh succeeds.

pub mod mapping;

use crate::plugin::{ready, BoxFuture, Instance, LookupQuery, NoAnswer, Plugin, PluginError};
use crate::provider::Provider;
use mapping::Mapping;
use overlay_api::proto::LookupResult;
use overlay_api::{DestMode, Mac, Perm, PropSpec};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The plugin's only property: the mapping file, an absolute path.
pub const PROP_CONFIG: &str = "files/config";

/// The `files` registration.
pub struct Files;

/// Constructor for the registry.
pub fn plugin() -> Box<dyn Plugin> {
    Box::new(Files)
}

impl Plugin for Files {
    fn name(&self) -> &'static str {
        "files"
    }

    fn mode(&self) -> DestMode {
        DestMode::Dynamic
    }

    fn propinfo(&self) -> Vec<PropSpec> {
        vec![PropSpec {
            name: PROP_CONFIG.into(),
            perm: Perm::Rw,
            required: true,
            default: None,
            possible: None,
        }]
    }

    fn create(&self, provider: Provider) -> Box<dyn Instance> {
        Box::new(FilesInstance {
            provider,
            path: None,
            map: Arc::new(RwLock::new(Arc::new(Mapping::default()))),
        })
    }

    fn restore(
        &self,
        provider: Provider,
        saved: &serde_json::Value,
    ) -> Result<Box<dyn Instance>, PluginError> {
        let mut inst = self.create(provider);
        if let Some(path) = saved.get(PROP_CONFIG).and_then(|v| v.as_str()) {
            inst.setprop(PROP_CONFIG, path)?;
        }
        Ok(inst)
    }
}

/// One overlay's files instance.
struct FilesInstance {
    provider: Provider,
    path: Option<PathBuf>,
    /// Swapped whole on reload; queries take a snapshot and never block a
    /// reload for longer than a pointer copy.
    map: Arc<RwLock<Arc<Mapping>>>,
}

impl FilesInstance {
    fn snapshot(&self) -> Arc<Mapping> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn path_text(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

impl Instance for FilesInstance {
    fn setprop(&mut self, name: &str, value: &str) -> Result<(), PluginError> {
        if name != PROP_CONFIG {
            return Err(PluginError::unknown_property(&Files, name));
        }
        let path = PathBuf::from(value);
        if !path.is_absolute() {
            return Err(PluginError::BadValue {
                name: name.into(),
                value: value.into(),
                expected: "an absolute path".into(),
            });
        }
        self.path = Some(path);
        Ok(())
    }

    fn getprop(&self, name: &str) -> Result<Option<String>, PluginError> {
        if name != PROP_CONFIG {
            return Err(PluginError::unknown_property(&Files, name));
        }
        Ok(self.path.as_ref().map(|p| p.display().to_string()))
    }

    fn start(&mut self) -> Result<(), PluginError> {
        let path = self
            .path
            .as_ref()
            .ok_or_else(|| PluginError::Unset(PROP_CONFIG.into()))?;
        let map = Mapping::load(path, self.provider.dest())
            .map_err(|e| PluginError::Config(Box::new(e)))?;
        log::info!(
            "overlay {}: {} entries from {}",
            self.provider.overlay(),
            map.len(),
            path.display()
        );
        *self.map.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        Ok(())
    }

    fn lookup(&self, q: LookupQuery) -> BoxFuture<LookupResult> {
        let result = match self.snapshot().get(&q.dst) {
            Some(e) => LookupResult::Target { dest: e.dest },
            None => LookupResult::Drop {
                reason: format!("no entry for {} in {}", q.dst, self.path_text()),
            },
        };
        ready(result)
    }

    fn arp(&self, ip: Ipv4Addr) -> BoxFuture<Result<Mac, NoAnswer>> {
        let r = self
            .snapshot()
            .arp(ip)
            .ok_or_else(|| NoAnswer(format!("no entry has arp {ip}")));
        ready(r)
    }

    fn ndp(&self, ip: Ipv6Addr) -> BoxFuture<Result<Mac, NoAnswer>> {
        let r = self
            .snapshot()
            .ndp(ip)
            .ok_or_else(|| NoAnswer(format!("no entry has ndp {ip}")));
        ready(r)
    }

    fn dhcp(&self, client: Mac) -> BoxFuture<Result<Mac, NoAnswer>> {
        let r = match self.snapshot().get(&client) {
            Some(e) => e.dhcp_proxy.ok_or_else(|| {
                NoAnswer(format!(
                    "entry {client} in {} has no dhcp-proxy",
                    self.path_text()
                ))
            }),
            None => Err(NoAnswer(format!(
                "no entry for {client} in {}",
                self.path_text()
            ))),
        };
        ready(r)
    }

    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let overlay = self.provider.overlay();
        match Mapping::load(path, self.provider.dest()) {
            Ok(new) => {
                let changed = {
                    let mut cur = self.map.write().unwrap_or_else(|p| p.into_inner());
                    let changed = cur.changed(&new);
                    *cur = Arc::new(new);
                    changed
                };
                log::info!(
                    "overlay {overlay}: reloaded {}: {} entries changed",
                    path.display(),
                    changed.len()
                );
                overlay_probes::varpd::config_reload("files", overlay, changed.len() as u64, "ok");
                for mac in changed {
                    self.provider.invalidate(Some(mac));
                }
                if self.provider.is_degraded() {
                    log::info!("overlay {overlay}: {} is valid again", path.display());
                    self.provider.ready(None);
                }
            }
            Err(e) => {
                log::warn!("overlay {overlay}: reload failed, keeping the previous mapping: {e}");
                overlay_probes::varpd::config_reload("files", overlay, 0, &e.to_string());
                overlay_probes::varpd::plugin_error("files", overlay, &e.to_string());
                self.provider.degraded_serving(e.to_string());
            }
        }
    }

    fn save(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if let Some(p) = &self.path {
            m.insert(PROP_CONFIG.into(), p.display().to_string().into());
        }
        m.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempFile;
    use overlay_api::proto::VarpdMsg;
    use tokio::sync::mpsc;

    fn provider() -> (Provider, mpsc::UnboundedReceiver<VarpdMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Provider::new(9, "ov9", 9, DestMode::Dynamic, tx), rx)
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

    const V1: &str = r#"{
        "02:31:00:00:00:04": {"ip": "10.31.0.2", "port": 4789, "arp": "192.168.32.4", "ndp": "fd32::4"},
        "02:31:00:00:00:05": {"ip": "10.31.0.3", "port": 4789}
    }"#;

    fn started(
        file: &TempFile,
    ) -> (
        Box<dyn Instance>,
        Provider,
        mpsc::UnboundedReceiver<VarpdMsg>,
    ) {
        let (p, rx) = provider();
        let mut inst = Files.create(p.clone());
        inst.setprop(PROP_CONFIG, file.path.to_str().unwrap())
            .unwrap();
        inst.start().unwrap();
        (inst, p, rx)
    }

    #[tokio::test]
    async fn properties_and_start() {
        let (p, _rx) = provider();
        let mut inst = Files.create(p.clone());
        assert_eq!(
            inst.start().unwrap_err().to_string(),
            "unset required property: files/config"
        );
        assert_eq!(
            inst.setprop(PROP_CONFIG, "rel/files.json")
                .unwrap_err()
                .to_string(),
            "files/config: 'rel/files.json' is not an absolute path"
        );
        assert_eq!(
            inst.setprop("files/nope", "x").unwrap_err().to_string(),
            "unknown property files/nope (plugin files has: files/config)"
        );
        assert_eq!(inst.getprop(PROP_CONFIG).unwrap(), None);
        inst.setprop(PROP_CONFIG, "/nonexistent/varpd/files.json")
            .unwrap();
        assert_eq!(
            inst.getprop(PROP_CONFIG).unwrap().as_deref(),
            Some("/nonexistent/varpd/files.json")
        );
        let e = inst.start().unwrap_err().to_string();
        assert!(
            e.starts_with("/nonexistent/varpd/files.json: cannot read: "),
            "{e}"
        );
        // save → restore gives back the same configuration.
        let back = Files.restore(p, &inst.save()).unwrap();
        assert_eq!(
            back.getprop(PROP_CONFIG).unwrap().as_deref(),
            Some("/nonexistent/varpd/files.json")
        );
        assert_eq!(back.default(), None);
    }

    #[tokio::test]
    async fn lookups_and_proxy_answers() {
        let file = TempFile::new("lookup", V1);
        let (inst, _p, _rx) = started(&file);
        let q = |dst: &str| LookupQuery {
            src: mac("02:31:00:00:00:09"),
            dst: mac(dst),
        };
        assert_eq!(
            inst.lookup(q("02:31:00:00:00:04")).await,
            LookupResult::Target {
                dest: "10.31.0.2:4789".parse().unwrap()
            }
        );
        assert_eq!(
            inst.lookup(q("02:31:00:00:00:07")).await,
            LookupResult::Drop {
                reason: format!("no entry for 02:31:00:00:00:07 in {}", file.path.display())
            }
        );
        assert_eq!(
            inst.arp("192.168.32.4".parse().unwrap()).await,
            Ok(mac("02:31:00:00:00:04"))
        );
        assert_eq!(
            inst.arp("192.168.32.5".parse().unwrap()).await,
            Err(NoAnswer("no entry has arp 192.168.32.5".into()))
        );
        assert_eq!(
            inst.ndp("fd32::4".parse().unwrap()).await,
            Ok(mac("02:31:00:00:00:04"))
        );
        assert!(inst.ndp("fd32::5".parse().unwrap()).await.is_err());
        assert_eq!(
            inst.dhcp(mac("02:31:00:00:00:04")).await,
            Err(NoAnswer(format!(
                "entry 02:31:00:00:00:04 in {} has no dhcp-proxy",
                file.path.display()
            )))
        );
        assert_eq!(
            inst.dhcp(mac("02:31:00:00:00:07")).await,
            Err(NoAnswer(format!(
                "no entry for 02:31:00:00:00:07 in {}",
                file.path.display()
            )))
        );
    }

    #[tokio::test]
    async fn refresh_invalidates_exactly_the_changes_and_survives_a_bad_file() {
        let file = TempFile::new("refresh", V1);
        let (inst, p, mut rx) = started(&file);
        // Unchanged file: nothing to say.
        inst.refresh();
        assert_eq!(drain(&mut rx), vec![]);
        // One changed, one removed, one added.
        file.write(
            r#"{
            "02:31:00:00:00:04": {"ip": "10.31.0.2", "port": 4790, "arp": "192.168.32.4", "ndp": "fd32::4"},
            "02:31:00:00:00:06": {"ip": "10.31.0.4", "port": 4789}
        }"#,
        );
        inst.refresh();
        let inval = |m: &str| VarpdMsg::Invalidate {
            oid: 9,
            mac: Some(mac(m)),
        };
        assert_eq!(
            drain(&mut rx),
            vec![
                inval("02:31:00:00:00:04"),
                inval("02:31:00:00:00:05"),
                inval("02:31:00:00:00:06")
            ]
        );
        assert_eq!(
            inst.lookup(LookupQuery {
                src: mac("02:31:00:00:00:09"),
                dst: mac("02:31:00:00:00:04")
            })
            .await,
            LookupResult::Target {
                dest: "10.31.0.2:4790".parse().unwrap()
            }
        );
        // A broken file: degraded, old mapping kept.
        file.write("{ \"02:31:00:00:00:04\": ");
        inst.refresh();
        let msgs = drain(&mut rx);
        assert_eq!(msgs.len(), 1);
        match &msgs[0] {
            VarpdMsg::InstanceFailed {
                oid: 9,
                error,
                serving,
            } => {
                assert!(serving, "a failed reload keeps serving the old mapping");
                assert!(
                    error.starts_with(&format!("{}:1:", file.path.display())),
                    "{error}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(p.is_degraded());
        assert_eq!(
            inst.lookup(LookupQuery {
                src: mac("02:31:00:00:00:09"),
                dst: mac("02:31:00:00:00:06")
            })
            .await,
            LookupResult::Target {
                dest: "10.31.0.4:4789".parse().unwrap()
            }
        );
        // Fixed again: the changes since the last good file, then ready.
        file.write(V1);
        inst.refresh();
        assert_eq!(
            drain(&mut rx),
            vec![
                inval("02:31:00:00:00:04"),
                inval("02:31:00:00:00:05"),
                inval("02:31:00:00:00:06"),
                VarpdMsg::InstanceReady {
                    oid: 9,
                    mode: DestMode::Dynamic,
                    point: None
                }
            ]
        );
        assert!(!p.is_degraded());
    }
}
