//! Persistent configuration: the overlays (and their VNICs) that outlive
//! overlayd, in `STATE_DIR/overlays.json`.
//!
//! What is kept is what `create-overlay` and `create-vnic` were given, as
//! validated then: name, encapsulation, search plugin, VNI, properties, and
//! each VNIC's name, MAC, MAC type and namespace. Temporary overlays
//! (`create-overlay -t`) are not written. The target table is not kept
//! either, as in illumos: entries come back from varpd on demand, and
//! entries set by hand (`modify-overlay -s`) are lost with overlayd.
//!
//! The file is rewritten whole on every change: to `overlays.json.tmp`,
//! fsync'd, renamed over `overlays.json`, and the directory fsync'd, so a
//! crash at any point leaves the old file or the new one, never a mix. A
//! leftover `.tmp` (a crash before the rename) is removed on load.
//!
//! On load the file must parse, carry [`VERSION`], and pass the same checks
//! as `create-overlay` (`OverlayConfig::from_spec`) and `create-vnic`. A
//! file that fails is renamed aside to `overlays.json.corrupt-UNIXTIME`,
//! contents intact, and the error (with line:column or the field at fault)
//! is logged; overlayd then starts with no overlays, and the operator
//! decides what to do with the kept file.
//!
//! A valid overlay that cannot be set up (its listen address is not on the
//! host yet) stays in the file and is tried again every 5 s; until then
//! `show-overlay` lists it, DEGRADED with the reason ([`Unrestored`]).

use mio::Waker;
use overlay_api::statefile::StateFile;
use overlay_api::{Mac, MacAddrType, OverlaySpec};
use overlay_core::OverlayConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "overlays.json";
/// The temporary file a save writes before renaming it.
#[cfg(test)]
const TEMP_FILE: &str = "overlays.json.tmp";
/// The format version this overlayd writes and reads.
pub const VERSION: u32 = 1;

/// One persistent overlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedOverlay {
    /// Link (and TAP device) name.
    pub name: String,
    /// Encapsulation module.
    pub encap: String,
    /// Search plugin.
    pub search: String,
    /// VNI.
    pub vnetid: u32,
    /// Every property, with effective values.
    pub props: BTreeMap<String, String>,
    /// Its VNICs.
    #[serde(default)]
    pub vnics: Vec<SavedVnic>,
}

/// One VNIC of a persistent overlay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedVnic {
    /// Link name.
    pub name: String,
    /// Its MAC.
    pub mac: Mac,
    /// Random or fixed.
    pub addrtype: MacAddrType,
    /// Guest namespace, if not overlayd's.
    #[serde(default)]
    pub netns: Option<String>,
}

impl SavedOverlay {
    /// The create request it stands for.
    pub fn spec(&self) -> OverlaySpec {
        OverlaySpec {
            name: self.name.clone(),
            encap: self.encap.clone(),
            search: self.search.clone(),
            vnetid: self.vnetid,
            temporary: false,
            props: self.props.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    version: u32,
    overlays: Vec<SavedOverlay>,
}

/// Only the version, read first so that a file of another version is
/// refused as such rather than as a parse error.
#[derive(Deserialize)]
struct Versioned {
    version: Option<u32>,
}

/// Why the state file cannot be used.
#[derive(Debug)]
pub enum LoadError {
    /// It could not be read.
    Io(io::Error),
    /// It is not valid JSON of the expected shape (serde's message carries
    /// line and column).
    Parse(serde_json::Error),
    /// It was written by another format version.
    Version {
        /// The version found (`None`: no `version` field).
        found: Option<u32>,
    },
    /// An entry fails validation; `field` names it (`overlays[1] (ov1)`,
    /// `overlays[0] (ov0).vnics[2] (g2)`).
    Invalid {
        /// Where.
        field: String,
        /// What is wrong.
        error: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "cannot read it: {e}"),
            LoadError::Parse(e) => write!(f, "malformed: {e}"),
            LoadError::Version { found: Some(v) } => write!(
                f,
                "format version {v} is not the version {VERSION} this overlayd reads"
            ),
            LoadError::Version { found: None } => {
                write!(f, "no format version (expected \"version\": {VERSION})")
            }
            LoadError::Invalid { field, error } => write!(f, "{field}: {error}"),
        }
    }
}

/// Parses and validates the text of a state file.
pub fn parse(text: &str) -> Result<Vec<SavedOverlay>, LoadError> {
    let v: Versioned = serde_json::from_str(text).map_err(LoadError::Parse)?;
    if v.version != Some(VERSION) {
        return Err(LoadError::Version { found: v.version });
    }
    let file: FileContents = serde_json::from_str(text).map_err(LoadError::Parse)?;
    validate(&file.overlays)?;
    Ok(file.overlays)
}

/// Checks overlays as `create-overlay` and `create-vnic` would.
pub fn validate(overlays: &[SavedOverlay]) -> Result<(), LoadError> {
    let mut names = HashSet::new();
    let mut vnic_names = HashSet::new();
    for (i, o) in overlays.iter().enumerate() {
        let at = format!("overlays[{i}] ({})", o.name);
        let bad = |error: String| LoadError::Invalid {
            field: at.clone(),
            error,
        };
        OverlayConfig::from_spec(&o.spec(), None).map_err(|e| bad(e.to_string()))?;
        if !names.insert(o.name.as_str()) {
            return Err(bad(format!("overlay {} is listed twice", o.name)));
        }
        let mut macs = HashSet::new();
        for (j, v) in o.vnics.iter().enumerate() {
            let bad = |error: String| LoadError::Invalid {
                field: format!("{at}.vnics[{j}] ({})", v.name),
                error,
            };
            crate::vnic::check_name(&v.name).map_err(bad)?;
            if !v.mac.is_unicast() || v.mac.0 == [0; 6] {
                return Err(bad(format!("mac: {} is not a usable unicast MAC", v.mac)));
            }
            if !macs.insert(v.mac) {
                return Err(bad(format!("mac: {} is used twice on {}", v.mac, o.name)));
            }
            if let Some(ns) = &v.netns {
                if ns.is_empty() || ns == "." || ns == ".." || ns.contains('/') {
                    return Err(bad(format!("netns: '{ns}' is not a namespace name")));
                }
            }
            if !vnic_names.insert(v.name.as_str()) || names.contains(v.name.as_str()) {
                return Err(bad(format!("the name {} is used twice", v.name)));
            }
        }
    }
    for n in &names {
        if vnic_names.contains(n) {
            return Err(LoadError::Invalid {
                field: format!("overlay {n}"),
                error: "a VNIC has the same name".into(),
            });
        }
    }
    Ok(())
}

/// The state file in `dir`.
fn file(dir: &Path) -> StateFile<'_> {
    StateFile {
        dir,
        name: STATE_FILE,
    }
}

/// Reads `dir/overlays.json`: no file is no overlays. A leftover temporary
/// file from a crashed save is removed first.
pub fn load(dir: &Path) -> Result<Vec<SavedOverlay>, LoadError> {
    let read = file(dir).read().map_err(LoadError::Io)?;
    match read.stale_temp {
        Some((tmp, Ok(()))) => log::warn!(
            "removed {} (a save interrupted by a crash; {} is the last complete state)",
            tmp.display(),
            STATE_FILE
        ),
        Some((tmp, Err(e))) => log::warn!("cannot remove {}: {e}", tmp.display()),
        None => {}
    }
    read.text.map_or(Ok(Vec::new()), |t| parse(&t))
}

/// Renames a state file that cannot be used to
/// `overlays.json.corrupt-UNIXTIME`, and returns the new path.
pub fn set_aside(dir: &Path) -> io::Result<PathBuf> {
    file(dir).set_aside()
}

/// The file's text for `overlays`.
pub fn render(overlays: &[SavedOverlay]) -> String {
    let file = FileContents {
        version: VERSION,
        overlays: overlays.to_vec(),
    };
    let mut s = serde_json::to_string_pretty(&file).expect("state always serializes");
    s.push('\n');
    s
}

/// Writes `overlays` to `dir/overlays.json` atomically and durably: temp
/// file, fsync, rename, fsync of the directory.
pub fn save(dir: &Path, overlays: &[SavedOverlay]) -> io::Result<()> {
    file(dir).write(&render(overlays))
}

/// How often overlays that could not be restored are tried again (their
/// underlay address may come up after overlayd, as after a reboot).
pub(crate) const RETRY: Duration = Duration::from_secs(5);

/// Persistent overlays of the state file that could not be set up.
#[derive(Debug, Default)]
pub struct Unrestored {
    /// Them, as saved; they stay in the state file.
    pub list: Vec<SavedOverlay>,
    /// Why each (by name) could not be set up the last time it was tried:
    /// `show-overlay -f` shows it.
    pub(crate) why: HashMap<String, String>,
    /// When to try them again.
    pub(crate) next: Option<Instant>,
}

impl Unrestored {
    /// The one called `name`, and why it is not restored.
    pub fn get(&self, name: &str) -> Option<(&SavedOverlay, &str)> {
        let o = self.list.iter().find(|u| u.name == name)?;
        Some((o, self.why.get(name).map_or("", String::as_str)))
    }

    /// Every one, by name.
    pub(crate) fn sorted(&self) -> Vec<&SavedOverlay> {
        let mut v: Vec<_> = self.list.iter().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub(crate) fn failed(&mut self, o: SavedOverlay, why: String) {
        self.why.insert(o.name.clone(), why);
        self.list.push(o);
    }
}

/// Writes the state file on a thread of its own, so that no forwarding
/// thread ever waits for `fsync`. Snapshots are numbered; when several
/// wait, only the latest is written (it holds every earlier change). Each
/// write (or failure, which is logged: the change then holds until
/// overlayd exits) is told to the event loop through its waker.
pub(crate) struct Saver {
    tx: Option<Sender<(u64, Vec<SavedOverlay>)>>,
    /// The number of the last snapshot given.
    issued: u64,
    /// The number of the last snapshot written (or given up on).
    written: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Saver {
    /// Starts the thread that writes `dir`'s state file; `waker` wakes
    /// the event loop after each write.
    pub fn start(dir: PathBuf, waker: Arc<Waker>) -> std::io::Result<Saver> {
        let (tx, rx) = mpsc::channel::<(u64, Vec<SavedOverlay>)>();
        let written = Arc::new(AtomicU64::new(0));
        let done = Arc::clone(&written);
        let thread = std::thread::Builder::new()
            .name("state-saver".into())
            .spawn(move || {
                while let Ok(mut next) = rx.recv() {
                    while let Ok(later) = rx.try_recv() {
                        next = later;
                    }
                    let (seq, overlays) = next;
                    if let Err(e) = save(&dir, &overlays) {
                        log::error!(
                            "cannot save persistent overlays to {}: {e}; the last change will not survive an overlayd restart",
                            dir.join(STATE_FILE).display()
                        );
                    }
                    done.store(seq, Ordering::Release);
                    let _ = waker.wake();
                }
            })?;
        Ok(Saver {
            tx: Some(tx),
            issued: 0,
            written,
            thread: Some(thread),
        })
    }

    /// Has `overlays` written; returns the snapshot's number.
    pub fn save(&mut self, overlays: Vec<SavedOverlay>) -> u64 {
        self.issued += 1;
        if let Some(tx) = &self.tx {
            let _ = tx.send((self.issued, overlays));
        }
        self.issued
    }

    /// The number of the last snapshot given.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Whether snapshot `seq` (and every earlier one) is written.
    pub fn written(&self, seq: u64) -> bool {
        self.written.load(Ordering::Acquire) >= seq
            || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Writes what waits and stops the thread (at shutdown).
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("overlayd-persist-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample() -> Vec<SavedOverlay> {
        let props = [
            ("files/config", "/etc/overlay/files.json"),
            ("mtu", "1400"),
            ("target/max_entries", "1048576"),
            ("vxlan/listen_ip", "10.0.0.1"),
            ("vxlan/listen_port", "4789"),
        ];
        vec![SavedOverlay {
            name: "ov0".into(),
            encap: "vxlan".into(),
            search: "files".into(),
            vnetid: 4242,
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            vnics: vec![SavedVnic {
                name: "g1".into(),
                mac: "02:00:00:00:00:01".parse().unwrap(),
                addrtype: MacAddrType::Fixed,
                netns: Some("guest1".into()),
            }],
        }]
    }

    #[test]
    fn round_trip() {
        let d = tmpdir("round");
        assert_eq!(load(&d).unwrap(), Vec::new(), "no file is no overlays");
        save(&d, &sample()).unwrap();
        assert_eq!(load(&d).unwrap(), sample());
        let text = fs::read_to_string(d.join(STATE_FILE)).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(!d.join(TEMP_FILE).exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn other_versions_are_refused_clearly() {
        let text = render(&sample()).replace("\"version\": 1", "\"version\": 2");
        let e = parse(&text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "format version 2 is not the version 1 this overlayd reads"
        );
        let e = parse("{\"overlays\": []}").unwrap_err();
        assert!(e.to_string().contains("no format version"), "{e}");
    }

    #[test]
    fn parse_errors_give_line_and_column() {
        let e = parse("{\"version\": 1,\n \"overlays\": [\n  {\"name\": }").unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, LoadError::Parse(_)), "{s}");
        assert!(s.contains("line 3 column"), "{s}");
        let e = parse("garbage").unwrap_err();
        assert!(e.to_string().contains("line 1 column 1"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_field() {
        let mut o = sample();
        o[0].props.insert("mtu".into(), "9000".into());
        let e = parse(&render(&o)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "overlays[0] (ov0): mtu: '9000' is not in 576-8900"
        );
        let mut o = sample();
        o[0].vnics[0].name = "a/b".into();
        let e = parse(&render(&o)).unwrap_err().to_string();
        assert!(
            e.starts_with("overlays[0] (ov0).vnics[0] (a/b): VNIC name 'a/b'"),
            "{e}"
        );
        let mut o = sample();
        o[0].vnics[0].mac = "01:00:5e:00:00:01".parse().unwrap();
        let e = parse(&render(&o)).unwrap_err().to_string();
        assert!(e.contains("vnics[0] (g1): mac: "), "{e}");
        let mut o = sample();
        o.push(o[0].clone());
        let e = parse(&render(&o)).unwrap_err().to_string();
        assert!(
            e.starts_with("overlays[1] (ov0): overlay ov0 is listed twice"),
            "{e}"
        );
        let text = render(&sample()).replace("\"vnetid\"", "\"vnetidd\"");
        assert!(matches!(parse(&text), Err(LoadError::Parse(_))));
    }

    #[test]
    fn a_leftover_temp_file_is_ignored_and_removed() {
        let d = tmpdir("tmp");
        save(&d, &sample()).unwrap();
        // A crash between writing the temp file and the rename.
        fs::write(d.join(TEMP_FILE), "{\"version\": 1, \"overl").unwrap();
        assert_eq!(load(&d).unwrap(), sample());
        assert!(!d.join(TEMP_FILE).exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_bad_file_is_set_aside_intact() {
        let d = tmpdir("aside");
        fs::write(d.join(STATE_FILE), "not json").unwrap();
        assert!(load(&d).is_err());
        let to = set_aside(&d).unwrap();
        assert_eq!(fs::read_to_string(&to).unwrap(), "not json");
        assert!(to
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("overlays.json.corrupt-"));
        assert_eq!(load(&d).unwrap(), Vec::new());
        fs::write(d.join(STATE_FILE), "still not json").unwrap();
        let again = set_aside(&d).unwrap();
        assert_ne!(again, to, "a second bad file must not replace the first");
        assert_eq!(fs::read_to_string(&to).unwrap(), "not json");
        assert_eq!(fs::read_to_string(&again).unwrap(), "still not json");
        fs::remove_dir_all(&d).unwrap();
    }
}
