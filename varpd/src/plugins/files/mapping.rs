//! The `overlay_files(5)` format: a JSON object keyed by VL2 MAC, each value
//! saying where that MAC lives and which addresses varpd answers for it.
//!
//! ```json
//! {
//!     "02:31:00:00:00:04": {
//!         "ip": "10.31.0.2", "port": 4789,
//!         "arp": "192.168.32.4", "ndp": "fd32::4", "dhcp-proxy": "02:31:00:00:00:01"
//!     }
//! }
//! ```
//!
//! `ip` (IPv4 or IPv6, the UL3 address) and `port` (1-65535) are required,
//! except that an overlay whose encapsulation has no port (NVGRE,
//! [`DestType::Ip`]) may leave `port` out, and ignores one that is given
//! (it is still checked, so that a typo is not silent);
//! `arp` (IPv4), `ndp` (IPv6) and `dhcp-proxy` (the MAC of the DHCP server
//! this guest's requests go to) are optional. No two entries may claim the
//! same MAC, `arp` or `ndp` address. Unknown fields are refused, so that a
//! misspelt `"ndp"` does not silently stop proxy NDP.
//!
//! Errors name the file, and either the line:column of a JSON syntax error
//! (as serde_json reports it) or the entry and field at fault.

use crate::provider::DestType;
use overlay_api::Mac;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Fields an entry may have.
const FIELDS: &str = "ip, port, arp, ndp, dhcp-proxy";

/// Why a files configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON, or not a JSON object.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde_json found wrong.
        message: String,
    },
    /// An entry as a whole is wrong (its key, its shape, an unknown field).
    #[error("{path}: entry \"{key}\": {problem}")]
    Entry {
        /// The file.
        path: String,
        /// The entry's key as written.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// One field of an entry is missing or wrong.
    #[error("{path}: entry \"{key}\": field \"{field}\": {problem}")]
    Field {
        /// The file.
        path: String,
        /// The entry's key as written.
        key: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Two entries claim the same proxy address.
    #[error("{path}: entries \"{first}\" and \"{second}\": field \"{field}\": both claim {value}")]
    Duplicate {
        /// The file.
        path: String,
        /// The first entry's key as written.
        first: String,
        /// The second entry's key as written.
        second: String,
        /// `arp` or `ndp`.
        field: &'static str,
        /// The address both claim.
        value: String,
    },
}

/// Where one VL2 MAC lives and what varpd answers for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The UL3 address and port frames to this MAC are sent to.
    pub dest: SocketAddr,
    /// The IPv4 address proxy ARP answers with this MAC.
    pub arp: Option<Ipv4Addr>,
    /// The IPv6 address proxy NDP answers with this MAC.
    pub ndp: Option<Ipv6Addr>,
    /// The DHCP server this MAC's DHCP requests are sent to.
    pub dhcp_proxy: Option<Mac>,
}

/// A parsed, validated files configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    entries: BTreeMap<Mac, Entry>,
    arp: HashMap<Ipv4Addr, Mac>,
    ndp: HashMap<Ipv6Addr, Mac>,
}

/// The top-level object, keys and values in file order, duplicates kept
/// (a plain map would silently keep only the last of two equal keys).
struct RawEntries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for RawEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEntries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object keyed by MAC address")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntries, A::Error> {
                let mut v = Vec::new();
                while let Some(kv) = map.next_entry::<String, Value>()? {
                    v.push(kv);
                }
                Ok(RawEntries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// How a JSON value looks in an error message.
fn describe(v: &Value) -> String {
    match v {
        Value::Object(_) => "an object".into(),
        Value::Array(_) => "an array".into(),
        other => other.to_string(),
    }
}

impl Mapping {
    /// Reads and parses the file at `path`, for an overlay whose
    /// destinations are `dest`.
    pub fn load(path: &Path, dest: DestType) -> Result<Mapping, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Mapping::parse_for(path, &text, dest)
    }

    /// Parses `text`, the contents of the file at `path` (named in errors),
    /// for an overlay that sends to an IP address and port (VXLAN, Geneve).
    pub fn parse(path: &Path, text: &str) -> Result<Mapping, ConfigError> {
        Mapping::parse_for(path, text, DestType::IpPort)
    }

    /// As [`Mapping::parse`], for an overlay whose destinations are `dest`:
    /// with [`DestType::Ip`] every destination's port is 0.
    pub fn parse_for(path: &Path, text: &str, dest: DestType) -> Result<Mapping, ConfigError> {
        let p = path.display().to_string();
        let raw: RawEntries = serde_json::from_str(text).map_err(|e| {
            let (line, column) = (e.line(), e.column());
            let full = e.to_string();
            let suffix = format!(" at line {line} column {column}");
            let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
            // serde_json says column 0 for "before the first character of
            // the line"; editors count from 1.
            ConfigError::Parse {
                path: p.clone(),
                line,
                column: column.max(1),
                message,
            }
        })?;
        let mut map = Mapping::default();
        let mut keys: HashMap<Mac, String> = HashMap::new();
        for (key, value) in &raw.0 {
            let mac: Mac = key.parse().map_err(|_| ConfigError::Entry {
                path: p.clone(),
                key: key.clone(),
                problem: "key is not a MAC address (six hex octets separated by ':', like 02:08:20:aa:bb:cc)".into(),
            })?;
            if let Some(first) = keys.get(&mac) {
                return Err(ConfigError::Entry {
                    path: p.clone(),
                    key: key.clone(),
                    problem: format!("duplicate of entry \"{first}\" (both are {mac})"),
                });
            }
            let entry = parse_entry(&p, key, value, dest)?;
            let dup = |field, first: &Mac, value: String| ConfigError::Duplicate {
                path: p.clone(),
                first: keys
                    .get(first)
                    .cloned()
                    .unwrap_or_else(|| first.to_string()),
                second: key.clone(),
                field,
                value,
            };
            if let Some(ip) = entry.arp {
                if let Some(first) = map.arp.insert(ip, mac) {
                    return Err(dup("arp", &first, ip.to_string()));
                }
            }
            if let Some(ip) = entry.ndp {
                if let Some(first) = map.ndp.insert(ip, mac) {
                    return Err(dup("ndp", &first, ip.to_string()));
                }
            }
            keys.insert(mac, key.clone());
            map.entries.insert(mac, entry);
        }
        Ok(map)
    }

    /// The entry of `mac`, if any.
    pub fn get(&self, mac: &Mac) -> Option<&Entry> {
        self.entries.get(mac)
    }

    /// The MAC whose entry has `arp` = `ip`.
    pub fn arp(&self, ip: Ipv4Addr) -> Option<Mac> {
        self.arp.get(&ip).copied()
    }

    /// The MAC whose entry has `ndp` = `ip`.
    pub fn ndp(&self, ip: Ipv6Addr) -> Option<Mac> {
        self.ndp.get(&ip).copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The MACs whose entry was added, removed or changed in any field
    /// between `self` and `new`: exactly those overlayd must forget.
    pub fn changed(&self, new: &Mapping) -> BTreeSet<Mac> {
        let mut out = BTreeSet::new();
        for (mac, e) in &self.entries {
            if new.entries.get(mac) != Some(e) {
                out.insert(*mac);
            }
        }
        for mac in new.entries.keys() {
            if !self.entries.contains_key(mac) {
                out.insert(*mac);
            }
        }
        out
    }
}

fn parse_entry(path: &str, key: &str, value: &Value, dest: DestType) -> Result<Entry, ConfigError> {
    let obj = value.as_object().ok_or_else(|| ConfigError::Entry {
        path: path.into(),
        key: key.into(),
        problem: format!(
            "expected an object like {{\"ip\": \"10.0.0.1\", \"port\": 4789}}, found {}",
            describe(value)
        ),
    })?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !FIELDS.split(", ").any(|f| f == k.as_str()))
    {
        return Err(ConfigError::Entry {
            path: path.into(),
            key: key.into(),
            problem: format!("unknown field \"{unknown}\" (expected {FIELDS})"),
        });
    }
    let err = |field: &'static str, problem: String| ConfigError::Field {
        path: path.into(),
        key: key.into(),
        field,
        problem,
    };
    let string = |field: &'static str| -> Result<Option<&str>, ConfigError> {
        match obj.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(err(
                field,
                format!("expected a string, found {}", describe(v)),
            )),
        }
    };

    let ip_text = string("ip")?.ok_or_else(|| err("ip", "missing (required)".into()))?;
    let ip: IpAddr = ip_text
        .parse()
        .map_err(|_| err("ip", format!("invalid IP address \"{ip_text}\"")))?;
    let ip = ip.to_canonical();
    if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        return Err(err("ip", format!("{ip} is not a unicast address")));
    }

    let port = match obj.get("port") {
        None if dest == DestType::Ip => 0,
        None => return Err(err("port", "missing (required)".into())),
        Some(v) => v
            .as_u64()
            .filter(|p| (1..=65535).contains(p))
            .ok_or_else(|| {
                err(
                    "port",
                    format!("expected an integer in 1-65535, found {}", describe(v)),
                )
            })? as u16,
    };

    let arp = match string("arp")? {
        None => None,
        Some(s) => Some(
            s.parse::<Ipv4Addr>()
                .map_err(|_| err("arp", format!("invalid IPv4 address \"{s}\"")))?,
        ),
    };
    let ndp = match string("ndp")? {
        None => None,
        Some(s) => {
            let a = s
                .parse::<Ipv6Addr>()
                .map_err(|_| err("ndp", format!("invalid IPv6 address \"{s}\"")))?;
            if a.is_multicast() || a.is_unspecified() {
                return Err(err("ndp", format!("{a} is not a unicast address")));
            }
            Some(a)
        }
    };
    let dhcp_proxy = match string("dhcp-proxy")? {
        None => None,
        Some(s) => {
            let m = s
                .parse::<Mac>()
                .map_err(|_| err("dhcp-proxy", format!("invalid MAC address \"{s}\"")))?;
            // Requests are resent to this MAC: a group address would bring
            // them back as broadcasts.
            if !m.is_unicast() {
                return Err(err(
                    "dhcp-proxy",
                    format!("{m} is not a unicast MAC address"),
                ));
            }
            Some(m)
        }
    };
    // Checked above, but not on the wire: a port-less encapsulation ignores it.
    let port = if dest == DestType::Ip { 0 } else { port };
    Ok(Entry {
        dest: SocketAddr::new(ip, port),
        arp,
        ndp,
        dhcp_proxy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Mapping, ConfigError> {
        Mapping::parse(Path::new("/x/files.json"), text)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    const GOOD: &str = r#"{
        "02:31:00:00:00:04": {"ip": "10.31.0.2", "port": 4789, "arp": "192.168.32.4", "ndp": "fd32::4"},
        "2:31:0:0:0:5": {"ip": "fd00::2", "port": 8472, "dhcp-proxy": "02:31:00:00:00:01"},
        "02:31:00:00:00:06": {"ip": "::ffff:10.31.0.3", "port": 1}
    }"#;

    #[test]
    fn parses_the_illumos_format() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.len(), 3);
        let e = m.get(&mac("02:31:00:00:00:04")).unwrap();
        assert_eq!(e.dest, "10.31.0.2:4789".parse().unwrap());
        assert_eq!(e.arp, Some("192.168.32.4".parse().unwrap()));
        assert_eq!(e.ndp, Some("fd32::4".parse().unwrap()));
        assert_eq!(e.dhcp_proxy, None);
        let e = m.get(&mac("02:31:00:00:00:05")).unwrap();
        assert_eq!(e.dest, "[fd00::2]:8472".parse().unwrap());
        assert_eq!(e.dhcp_proxy, Some(mac("02:31:00:00:00:01")));
        // v4-mapped IPv6 becomes plain IPv4.
        assert_eq!(
            m.get(&mac("02:31:00:00:00:06")).unwrap().dest,
            "10.31.0.3:1".parse().unwrap()
        );
        assert_eq!(m.get(&mac("02:31:00:00:00:07")), None);
        assert_eq!(
            m.arp("192.168.32.4".parse().unwrap()),
            Some(mac("02:31:00:00:00:04"))
        );
        assert_eq!(m.arp("192.168.32.5".parse().unwrap()), None);
        assert_eq!(
            m.ndp("fd32::4".parse().unwrap()),
            Some(mac("02:31:00:00:00:04"))
        );
        assert!(parse("{}").unwrap().is_empty());
    }

    #[test]
    fn a_port_is_optional_and_ignored_without_ports() {
        let text = r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1"},
                       "02:00:00:00:00:02": {"ip": "fd00::2", "port": 4789}}"#;
        let path = Path::new("/x/files.json");
        let m = Mapping::parse_for(path, text, DestType::Ip).unwrap();
        assert_eq!(
            m.get(&mac("02:00:00:00:00:01")).unwrap().dest,
            "10.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            m.get(&mac("02:00:00:00:00:02")).unwrap().dest,
            "[fd00::2]:0".parse().unwrap()
        );
        // A given port is still checked.
        let bad = r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 0}}"#;
        assert_eq!(
            Mapping::parse_for(path, bad, DestType::Ip)
                .unwrap_err()
                .to_string(),
            r#"/x/files.json: entry "02:00:00:00:00:01": field "port": expected an integer in 1-65535, found 0"#
        );
        // An encapsulation with ports needs it.
        assert_eq!(
            err(text),
            r#"/x/files.json: entry "02:00:00:00:00:01": field "port": missing (required)"#
        );
    }

    #[test]
    fn syntax_errors_carry_path_and_line_column() {
        let e = parse(
            "{\n  \"02:31:00:00:00:04\": {\"ip\": \"10.0.0.1\", \"port\": 4789}\n  \"x\": 1\n}",
        )
        .unwrap_err();
        match &e {
            ConfigError::Parse { line, column, .. } => assert_eq!((*line, *column), (3, 3)),
            other => panic!("{other:?}"),
        }
        assert_eq!(e.to_string(), "/x/files.json:3:3: expected `,` or `}`");
        assert_eq!(err("[]"), "/x/files.json:1:1: invalid type: sequence, expected a JSON object keyed by MAC address");
        assert!(
            err("{\"a\": ").starts_with("/x/files.json:1:6: EOF"),
            "{}",
            err("{\"a\": ")
        );
        assert_eq!(err(""), "/x/files.json:1:1: EOF while parsing a value");
    }

    #[test]
    fn semantic_errors_name_entry_and_field() {
        let cases = [
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.1", "port": 1}}"#,
                r#"entry "02:00:00:00:00:01": field "ip": invalid IP address "10.1""#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"port": 1}}"#,
                r#"entry "02:00:00:00:00:01": field "ip": missing (required)"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": 10, "port": 1}}"#,
                r#"entry "02:00:00:00:00:01": field "ip": expected a string, found 10"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "0.0.0.0", "port": 1}}"#,
                r#"entry "02:00:00:00:00:01": field "ip": 0.0.0.0 is not a unicast address"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1"}}"#,
                r#"entry "02:00:00:00:00:01": field "port": missing (required)"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 70000}}"#,
                r#"entry "02:00:00:00:00:01": field "port": expected an integer in 1-65535, found 70000"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": "4789"}}"#,
                r#"entry "02:00:00:00:00:01": field "port": expected an integer in 1-65535, found "4789""#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 0}}"#,
                r#"entry "02:00:00:00:00:01": field "port": expected an integer in 1-65535, found 0"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1, "arp": "fd00::1"}}"#,
                r#"entry "02:00:00:00:00:01": field "arp": invalid IPv4 address "fd00::1""#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1, "ndp": "10.0.0.1"}}"#,
                r#"entry "02:00:00:00:00:01": field "ndp": invalid IPv6 address "10.0.0.1""#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1, "ndp": "ff02::1"}}"#,
                r#"entry "02:00:00:00:00:01": field "ndp": ff02::1 is not a unicast address"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1, "dhcp-proxy": "ff:ff:ff:ff:ff:ff"}}"#,
                r#"entry "02:00:00:00:00:01": field "dhcp-proxy": ff:ff:ff:ff:ff:ff is not a unicast MAC address"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1, "dhcp-proxy": "nope"}}"#,
                r#"entry "02:00:00:00:00:01": field "dhcp-proxy": invalid MAC address "nope""#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1, "nd": "fd00::1"}}"#,
                r#"entry "02:00:00:00:00:01": unknown field "nd" (expected ip, port, arp, ndp, dhcp-proxy)"#,
            ),
            (
                r#"{"02:00:00:00:00:01": [1]}"#,
                r#"entry "02:00:00:00:00:01": expected an object like {"ip": "10.0.0.1", "port": 4789}, found an array"#,
            ),
            (
                r#"{"host-a": {"ip": "10.0.0.1", "port": 1}}"#,
                r#"entry "host-a": key is not a MAC address (six hex octets separated by ':', like 02:08:20:aa:bb:cc)"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1}, "2:0:0:0:0:1": {"ip": "10.0.0.2", "port": 1}}"#,
                r#"entry "2:0:0:0:0:1": duplicate of entry "02:00:00:00:00:01" (both are 02:00:00:00:00:01)"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1}, "02:00:00:00:00:01": {"ip": "10.0.0.2", "port": 1}}"#,
                r#"entry "02:00:00:00:00:01": duplicate of entry "02:00:00:00:00:01" (both are 02:00:00:00:00:01)"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1, "arp": "10.9.0.1"}, "02:00:00:00:00:02": {"ip": "10.0.0.2", "port": 1, "arp": "10.9.0.1"}}"#,
                r#"entries "02:00:00:00:00:01" and "02:00:00:00:00:02": field "arp": both claim 10.9.0.1"#,
            ),
            (
                r#"{"02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 1, "ndp": "fd00::9"}, "02:00:00:00:00:02": {"ip": "10.0.0.2", "port": 1, "ndp": "fd00:0::9"}}"#,
                r#"entries "02:00:00:00:00:01" and "02:00:00:00:00:02": field "ndp": both claim fd00::9"#,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(err(text), format!("/x/files.json: {want}"), "for {text}");
        }
    }

    #[test]
    fn read_errors_name_the_path() {
        let e = Mapping::load(
            Path::new("/nonexistent/varpd-test/files.json"),
            DestType::IpPort,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/varpd-test/files.json: cannot read: "),
            "{e}"
        );
    }

    #[test]
    fn changed_is_exactly_the_added_removed_and_modified() {
        let old = parse(
            r#"{
            "02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 4789},
            "02:00:00:00:00:02": {"ip": "10.0.0.2", "port": 4789},
            "02:00:00:00:00:03": {"ip": "10.0.0.3", "port": 4789, "arp": "10.9.0.3"},
            "02:00:00:00:00:04": {"ip": "10.0.0.4", "port": 4789},
            "02:00:00:00:00:05": {"ip": "10.0.0.5", "port": 4789}
        }"#,
        )
        .unwrap();
        let new = parse(
            r#"{
            "02:00:00:00:00:01": {"ip": "10.0.0.1", "port": 4789},
            "02:00:00:00:00:02": {"ip": "10.0.0.2", "port": 4790},
            "02:00:00:00:00:03": {"ip": "10.0.0.3", "port": 4789, "arp": "10.9.0.33"},
            "2:0:0:0:0:5": {"port": 4789, "ip": "10.0.0.5"},
            "02:00:00:00:00:06": {"ip": "10.0.0.6", "port": 4789}
        }"#,
        )
        .unwrap();
        let want: BTreeSet<Mac> = [
            "02:00:00:00:00:02",
            "02:00:00:00:00:03",
            "02:00:00:00:00:04",
            "02:00:00:00:00:06",
        ]
        .map(mac)
        .into();
        assert_eq!(old.changed(&new), want);
        assert_eq!(new.changed(&old), want);
        assert!(old.changed(&old.clone()).is_empty());
    }
}
