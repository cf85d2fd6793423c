//! Saved plugin state: what each instance's [`Instance::save`] wrote, kept
//! in `STATE_DIR/varpd.json` by overlay name, so that a restarted varpd
//! rebuilds an instance with [`Plugin::restore`] when overlayd sends its
//! overlay again (illumos varpd keeps its instances the same way).
//!
//! The scheme is overlayd's (`overlays.json`): the file is rewritten whole
//! on every change — temp file, fsync, rename, fsync of the directory — and
//! carries a format version; on load it must parse, have [`VERSION`], and
//! name overlays by valid link names and plugins by non-empty names. A file
//! that fails is renamed to `varpd.json.corrupt-UNIXTIME`, contents intact,
//! and reported; varpd then starts with no saved state, which costs little:
//! overlayd re-sends every overlay's properties on each link.
//!
//! What it buys today is little, since `direct` and `files` save only their
//! properties, which overlayd sends anyway (and which win where they
//! differ). A plugin whose instances learn state of their own (a watch
//! revision, a lease) gets it back on restart for free.
//!
//! [`Instance::save`]: crate::plugin::Instance::save
//! [`Plugin::restore`]: crate::plugin::Plugin::restore

use overlay_api::statefile::StateFile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "varpd.json";
/// The temporary file a save writes before renaming it.
#[cfg(test)]
const TEMP_FILE: &str = "varpd.json.tmp";
/// The format version this varpd writes and reads.
pub const VERSION: u32 = 1;

/// One instance's saved state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedInstance {
    /// The plugin that wrote it (restored only by the same plugin).
    pub search: String,
    /// What its `save` returned.
    pub saved: serde_json::Value,
}

/// Saved instances by overlay name.
pub type Saved = BTreeMap<String, SavedInstance>;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    version: u32,
    instances: Saved,
}

#[derive(Deserialize)]
struct Versioned {
    version: Option<u32>,
}

/// Why the state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It could not be read.
    #[error("cannot read it: {0}")]
    Io(io::Error),
    /// Not JSON of the expected shape (with line and column).
    #[error("malformed: {0}")]
    Parse(serde_json::Error),
    /// Another format version.
    #[error("format version {} is not the version {VERSION} this varpd reads", .found.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into()))]
    Version {
        /// The version found, if any.
        found: Option<u32>,
    },
    /// An entry is not acceptable; `field` names it.
    #[error("{field}: {error}")]
    Invalid {
        /// Where (`instances.NAME`).
        field: String,
        /// What is wrong.
        error: String,
    },
}

fn valid_link_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && name != "."
        && name != ".."
}

/// Parses and validates the text of a state file.
pub fn parse(text: &str) -> Result<Saved, LoadError> {
    let v: Versioned = serde_json::from_str(text).map_err(LoadError::Parse)?;
    if v.version != Some(VERSION) {
        return Err(LoadError::Version { found: v.version });
    }
    let file: FileContents = serde_json::from_str(text).map_err(LoadError::Parse)?;
    for (name, i) in &file.instances {
        let field = format!("instances.{name}");
        if !valid_link_name(name) {
            return Err(LoadError::Invalid {
                field,
                error: "not an overlay (link) name".into(),
            });
        }
        if i.search.is_empty() {
            return Err(LoadError::Invalid {
                field: format!("{field}.search"),
                error: "empty plugin name".into(),
            });
        }
    }
    Ok(file.instances)
}

/// The state file in `dir`.
fn file(dir: &Path) -> StateFile<'_> {
    StateFile {
        dir,
        name: STATE_FILE,
    }
}

/// Reads `dir/varpd.json` (none: nothing saved), after removing a temp
/// file a crashed save left.
pub fn load(dir: &Path) -> Result<Saved, LoadError> {
    let read = file(dir).read().map_err(LoadError::Io)?;
    match read.stale_temp {
        Some((tmp, Ok(()))) => {
            log::warn!("removed {} (a save interrupted by a crash)", tmp.display())
        }
        Some((tmp, Err(e))) => log::warn!("cannot remove {}: {e}", tmp.display()),
        None => {}
    }
    read.text.map_or_else(|| Ok(Saved::new()), |t| parse(&t))
}

/// Renames an unusable state file aside (never over an earlier one) and
/// returns where it went.
pub fn set_aside(dir: &Path) -> io::Result<PathBuf> {
    file(dir).set_aside()
}

/// Writes `saved` atomically and durably.
pub fn save(dir: &Path, saved: &Saved) -> io::Result<()> {
    let contents = FileContents {
        version: VERSION,
        instances: saved.clone(),
    };
    let mut text = serde_json::to_string_pretty(&contents).map_err(io::Error::other)?;
    text.push('\n');
    file(dir).write(&text)
}

/// The saved state of every instance, in memory and on disk.
pub struct Store {
    dir: PathBuf,
    saved: Mutex<Saved>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Opens the store in `dir`: loads it, or sets an unusable file aside
    /// (logged with its path and error) and starts empty.
    pub fn open(dir: &Path) -> Store {
        let saved = match load(dir) {
            Ok(s) => {
                if !s.is_empty() {
                    log::info!(
                        "{} saved instance(s) in {}, restored when overlayd sends their overlays",
                        s.len(),
                        dir.join(STATE_FILE).display()
                    );
                }
                s
            }
            Err(e) => {
                let path = dir.join(STATE_FILE);
                match set_aside(dir) {
                    Ok(to) => log::error!(
                        "state file {}: {e}; it is kept as {} (contents intact) and varpd starts with no saved plugin state",
                        path.display(),
                        to.display()
                    ),
                    Err(e2) => log::error!(
                        "state file {}: {e}; cannot set it aside ({e2}); varpd starts with no saved plugin state",
                        path.display()
                    ),
                }
                Saved::new()
            }
        };
        Store {
            dir: dir.to_path_buf(),
            saved: Mutex::new(saved),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Saved> {
        self.saved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The saved state of `overlay`'s instance, if written by `search`.
    pub fn get(&self, overlay: &str, search: &str) -> Option<serde_json::Value> {
        self.lock()
            .get(overlay)
            .filter(|s| s.search == search)
            .map(|s| s.saved.clone())
    }

    /// Records `overlay`'s state (written at once if it changed).
    pub fn record(&self, overlay: &str, search: &str, saved: serde_json::Value) {
        let entry = SavedInstance {
            search: search.to_string(),
            saved,
        };
        let mut all = self.lock();
        if all.get(overlay) == Some(&entry) {
            return;
        }
        all.insert(overlay.to_string(), entry);
        self.write(&all);
    }

    /// Forgets `overlay` (its overlay was deleted).
    pub fn forget(&self, overlay: &str) {
        let mut all = self.lock();
        if all.remove(overlay).is_some() {
            self.write(&all);
        }
    }

    fn write(&self, all: &Saved) {
        if let Err(e) = save(&self.dir, all) {
            log::error!(
                "cannot save plugin state to {}: {e}",
                self.dir.join(STATE_FILE).display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fs;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("varpd-persist-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_through_the_store() {
        let d = tmpdir("store");
        let s = Store::open(&d);
        s.record("ov0", "files", json!({"files/config": "/x.json"}));
        s.record("ov1", "direct", json!({"direct/dest_ip": "10.0.0.2"}));
        s.forget("ov1");
        let again = Store::open(&d);
        assert_eq!(
            again.get("ov0", "files"),
            Some(json!({"files/config": "/x.json"}))
        );
        assert_eq!(again.get("ov0", "direct"), None, "another plugin's state");
        assert_eq!(again.get("ov1", "direct"), None, "forgotten");
        assert!(!d.join(TEMP_FILE).exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn versions_and_fields_are_checked() {
        let e = parse("{\"version\": 7, \"instances\": {}}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "format version 7 is not the version 1 this varpd reads"
        );
        let e = parse(
            "{\"version\": 1, \"instances\": {\"a/b\": {\"search\": \"files\", \"saved\": {}}}}",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "instances.a/b: not an overlay (link) name");
        let e = parse("{\"version\": 1,\n\"instances\": [}").unwrap_err();
        assert!(e.to_string().contains("line 2 column"), "{e}");
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_a_temp_file_ignored() {
        let d = tmpdir("corrupt");
        fs::write(d.join(STATE_FILE), "{\"version\": 1, \"inst").unwrap();
        fs::write(d.join(TEMP_FILE), "half a save").unwrap();
        let s = Store::open(&d);
        assert_eq!(s.get("ov0", "files"), None);
        assert!(!d.join(STATE_FILE).exists() && !d.join(TEMP_FILE).exists());
        let kept: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(
            fs::read_to_string(&kept[0]).unwrap(),
            "{\"version\": 1, \"inst"
        );
        fs::remove_dir_all(&d).unwrap();
    }
}

#[cfg(test)]
mod engine_tests {
    use super::*;
    use crate::engine::{Engine, InstanceSpec};
    use overlay_api::proto::VarpdMsg;
    use serde_json::json;
    use std::fs;

    fn direct(dest: &str) -> InstanceSpec {
        InstanceSpec {
            overlay: "ov0".into(),
            vnetid: 1,
            search: "direct".into(),
            props: [
                ("direct/dest_ip".to_string(), dest.to_string()),
                ("direct/dest_port".to_string(), "4789".to_string()),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn instances_are_saved_restored_and_forgotten() {
        let d = std::env::temp_dir().join(format!("varpd-engine-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<VarpdMsg>();
        let e = Engine::new(crate::plugins::all()).with_store(Store::open(&d));
        e.instance(7, direct("10.0.0.2"), &tx);
        assert!(matches!(
            rx.try_recv(),
            Ok(VarpdMsg::InstanceReady { point: Some(_), .. })
        ));
        assert_eq!(
            Store::open(&d).get("ov0", "direct"),
            Some(json!({"direct/dest_ip": "10.0.0.2", "direct/dest_port": "4789"}))
        );
        // A new varpd: the instance comes back from its saved state, with
        // overlayd's properties over it (they win).
        let e2 = Engine::new(crate::plugins::all()).with_store(Store::open(&d));
        e2.instance(9, direct("10.0.0.3"), &tx);
        match rx.try_recv() {
            Ok(VarpdMsg::InstanceReady { point, .. }) => {
                assert_eq!(point, Some("10.0.0.3:4789".parse().unwrap()))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Store::open(&d).get("ov0", "direct").unwrap()["direct/dest_ip"],
            "10.0.0.3"
        );
        e2.delete(9);
        assert_eq!(Store::open(&d).get("ov0", "direct"), None);
        fs::remove_dir_all(&d).unwrap();
    }
}
