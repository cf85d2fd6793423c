//! The etcd schema of an overlay's mappings, and the local mirror of it.
//!
//! ```text
//! PREFIX/VNI/vl2/MAC  →  {"ip": "10.0.0.1", "port": 4789}   where VL2 MAC lives (UL3)
//! PREFIX/VNI/vl3/IP   →  {"mac": "02:00:00:00:00:01"}       which MAC owns VL3 IP (proxy ARP/NDP)
//! ```
//!
//! MACs are written as `ovadm` prints them (lower-case, colon-separated),
//! IPs in their usual text form (`192.168.1.2`, `fd00::2`). Keys a host
//! registers for its own guests carry its lease; keys written by hand
//! carry none and stay until deleted.
//!
//! A [`Mirror`] is this overlay's copy of everything under `PREFIX/VNI/`:
//! filled by a ranged GET, kept current by the watch, and answering
//! lookups. Each operation on it says what changed, so that the plugin
//! invalidates exactly those target entries in overlayd.

use overlay_api::Mac;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Why a key or value under the prefix is not a mapping.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The key is not `PREFIX/VNI/vl2/MAC` or `PREFIX/VNI/vl3/IP`.
    #[error("{0}: not PREFIX/VNI/vl2/MAC or PREFIX/VNI/vl3/IP")]
    Key(String),
    /// The value does not parse.
    #[error("{key}: bad value '{value}': {why}")]
    Value {
        /// The key.
        key: String,
        /// The value, lossily decoded.
        value: String,
        /// What is wrong.
        why: String,
    },
}

/// A key of the schema, the prefix and VNI stripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// `vl2/MAC`.
    Vl2(Mac),
    /// `vl3/IP`.
    Vl3(IpAddr),
}

/// The value of a `vl2` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vl2Value {
    /// Underlay address.
    pub ip: IpAddr,
    /// Underlay UDP port.
    pub port: u16,
}

/// The value of a `vl3` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vl3Value {
    /// The VL2 MAC that owns the address.
    pub mac: Mac,
}

/// Where one overlay's keys live: `PREFIX/VNI/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    base: String,
}

impl Schema {
    /// The schema under `prefix` (no trailing `/`) for VNI `vni`.
    pub fn new(prefix: &str, vni: u32) -> Schema {
        Schema {
            base: format!("{}/{vni}/", prefix.trim_end_matches('/')),
        }
    }

    /// `PREFIX/VNI/`: what the GET and the watch cover.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The full key of `key`.
    pub fn key(&self, key: Key) -> String {
        match key {
            Key::Vl2(m) => format!("{}vl2/{m}", self.base),
            Key::Vl3(ip) => format!("{}vl3/{ip}", self.base),
        }
    }

    /// Parses a full key.
    pub fn parse_key(&self, full: &[u8]) -> Result<Key, SchemaError> {
        let text = String::from_utf8_lossy(full);
        let bad = || SchemaError::Key(text.to_string());
        let rest = text.strip_prefix(&self.base).ok_or_else(bad)?;
        if let Some(mac) = rest.strip_prefix("vl2/") {
            return mac.parse().map(Key::Vl2).map_err(|_| bad());
        }
        if let Some(ip) = rest.strip_prefix("vl3/") {
            return ip.parse().map(Key::Vl3).map_err(|_| bad());
        }
        Err(bad())
    }
}

/// A parsed entry: a key and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// MAC → underlay.
    Vl2(Mac, SocketAddr),
    /// IP → MAC.
    Vl3(IpAddr, Mac),
}

/// Parses a key and its value.
pub fn parse_entry(schema: &Schema, key: &[u8], value: &[u8]) -> Result<Entry, SchemaError> {
    parse_value(key, schema.parse_key(key)?, value)
}

/// Parses the value of full key `key`, already parsed as `k`.
pub fn parse_value(key: &[u8], k: Key, value: &[u8]) -> Result<Entry, SchemaError> {
    let bad = |e: serde_json::Error| SchemaError::Value {
        key: String::from_utf8_lossy(key).into(),
        value: String::from_utf8_lossy(value).into(),
        why: e.to_string(),
    };
    Ok(match k {
        Key::Vl2(m) => {
            let v: Vl2Value = serde_json::from_slice(value).map_err(bad)?;
            Entry::Vl2(m, SocketAddr::new(v.ip, v.port))
        }
        Key::Vl3(ip) => {
            let v: Vl3Value = serde_json::from_slice(value).map_err(bad)?;
            Entry::Vl3(ip, v.mac)
        }
    })
}

/// The value text of a vl2 mapping.
pub fn vl2_value(dest: SocketAddr) -> String {
    serde_json::to_string(&Vl2Value {
        ip: dest.ip(),
        port: dest.port(),
    })
    .expect("plain values serialize")
}

/// The value text of a vl3 mapping.
pub fn vl3_value(mac: Mac) -> String {
    serde_json::to_string(&Vl3Value { mac }).expect("plain values serialize")
}

/// Something that changed in the mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The location of a MAC changed, appeared or went.
    Vl2 {
        /// The MAC.
        mac: Mac,
        /// Its new location, if any.
        now: Option<SocketAddr>,
    },
    /// The owner of an address changed, appeared or went.
    Vl3 {
        /// The address.
        ip: IpAddr,
        /// The previous owner, if any.
        was: Option<Mac>,
        /// The new owner, if any.
        now: Option<Mac>,
    },
}

/// This overlay's copy of `PREFIX/VNI/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirror {
    vl2: HashMap<Mac, SocketAddr>,
    vl3: HashMap<IpAddr, Mac>,
}

impl Mirror {
    /// Where `mac` lives, if known.
    pub fn vl2(&self, mac: &Mac) -> Option<SocketAddr> {
        self.vl2.get(mac).copied()
    }

    /// Which MAC owns `ip`, if known.
    pub fn vl3(&self, ip: &IpAddr) -> Option<Mac> {
        self.vl3.get(ip).copied()
    }

    /// Number of vl2 and vl3 entries.
    pub fn len(&self) -> (usize, usize) {
        (self.vl2.len(), self.vl3.len())
    }

    /// Sets an entry; the change, if it is one.
    pub fn set(&mut self, e: Entry) -> Option<Change> {
        match e {
            Entry::Vl2(mac, dest) => {
                (self.vl2.insert(mac, dest) != Some(dest)).then_some(Change::Vl2 {
                    mac,
                    now: Some(dest),
                })
            }
            Entry::Vl3(ip, mac) => {
                let was = self.vl3.insert(ip, mac);
                (was != Some(mac)).then_some(Change::Vl3 {
                    ip,
                    was,
                    now: Some(mac),
                })
            }
        }
    }

    /// Removes an entry; the change, if it was there.
    pub fn remove(&mut self, key: Key) -> Option<Change> {
        match key {
            Key::Vl2(mac) => self
                .vl2
                .remove(&mac)
                .map(|_| Change::Vl2 { mac, now: None }),
            Key::Vl3(ip) => self.vl3.remove(&ip).map(|was| Change::Vl3 {
                ip,
                was: Some(was),
                now: None,
            }),
        }
    }

    /// Replaces the whole mirror (after a fresh GET); every difference.
    pub fn replace(&mut self, new: Mirror) -> Vec<Change> {
        let mut out = Vec::new();
        for (mac, _) in self.vl2.iter().filter(|(m, _)| !new.vl2.contains_key(m)) {
            out.push(Change::Vl2 {
                mac: *mac,
                now: None,
            });
        }
        for (mac, dest) in &new.vl2 {
            if self.vl2.get(mac) != Some(dest) {
                out.push(Change::Vl2 {
                    mac: *mac,
                    now: Some(*dest),
                });
            }
        }
        for (ip, was) in self.vl3.iter().filter(|(i, _)| !new.vl3.contains_key(i)) {
            out.push(Change::Vl3 {
                ip: *ip,
                was: Some(*was),
                now: None,
            });
        }
        for (ip, mac) in &new.vl3 {
            let was = self.vl3.get(ip).copied();
            if was != Some(*mac) {
                out.push(Change::Vl3 {
                    ip: *ip,
                    was,
                    now: Some(*mac),
                });
            }
        }
        *self = new;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    #[test]
    fn keys_round_trip_and_bad_keys_are_named() {
        let s = Schema::new("/overlay/", 77);
        assert_eq!(s.base(), "/overlay/77/");
        let k2 = Key::Vl2(mac("02:aa:00:00:00:01"));
        let k3 = Key::Vl3("fd00::1".parse().unwrap());
        let k4 = Key::Vl3("192.168.1.9".parse().unwrap());
        assert_eq!(s.key(k2), "/overlay/77/vl2/02:aa:00:00:00:01");
        assert_eq!(s.key(k4), "/overlay/77/vl3/192.168.1.9");
        for k in [k2, k3, k4] {
            assert_eq!(s.parse_key(s.key(k).as_bytes()), Ok(k));
        }
        for bad in [
            "/overlay/78/vl2/02:aa:00:00:00:01",
            "/overlay/77/vl2/nope",
            "/overlay/77/vl4/1.2.3.4",
            "/overlay/77/vl3/1.2.3",
        ] {
            assert_eq!(
                s.parse_key(bad.as_bytes()),
                Err(SchemaError::Key(bad.into()))
            );
        }
    }

    #[test]
    fn values_parse_strictly() {
        let s = Schema::new("/o", 1);
        assert_eq!(
            parse_entry(
                &s,
                b"/o/1/vl2/02:00:00:00:00:01",
                br#"{"ip":"10.0.0.1","port":4789}"#
            ),
            Ok(Entry::Vl2(
                mac("02:00:00:00:00:01"),
                "10.0.0.1:4789".parse().unwrap()
            ))
        );
        assert_eq!(
            parse_entry(&s, b"/o/1/vl3/10.1.0.1", br#"{"mac":"02:00:00:00:00:01"}"#),
            Ok(Entry::Vl3(
                "10.1.0.1".parse().unwrap(),
                mac("02:00:00:00:00:01")
            ))
        );
        for v in [
            &br#"{"ip":"10.0.0.1"}"#[..],
            br#"{"ip":"10.0.0.1","port":70000}"#,
            br#"{"ip":"x","port":1}"#,
            br#"{"ip":"10.0.0.1","port":1,"extra":1}"#,
            b"garbage",
        ] {
            let e = parse_entry(&s, b"/o/1/vl2/02:00:00:00:00:01", v).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("/o/1/vl2/02:00:00:00:00:01: bad value"),
                "{e}"
            );
        }
        // What we write, we read.
        let d: SocketAddr = "[fd00::9]:4790".parse().unwrap();
        let m = mac("02:00:00:00:00:02");
        assert_eq!(
            parse_entry(&s, b"/o/1/vl2/02:00:00:00:00:02", vl2_value(d).as_bytes()),
            Ok(Entry::Vl2(m, d))
        );
        assert_eq!(
            parse_entry(&s, b"/o/1/vl3/1.1.1.1", vl3_value(m).as_bytes()),
            Ok(Entry::Vl3("1.1.1.1".parse().unwrap(), m))
        );
    }

    #[test]
    fn mirror_reports_exactly_the_changes() {
        let mut m = Mirror::default();
        let a = mac("02:00:00:00:00:0a");
        let b = mac("02:00:00:00:00:0b");
        let d1: SocketAddr = "10.0.0.1:4789".parse().unwrap();
        let d2: SocketAddr = "10.0.0.2:4789".parse().unwrap();
        let ip: IpAddr = "192.168.0.1".parse().unwrap();
        assert_eq!(
            m.set(Entry::Vl2(a, d1)),
            Some(Change::Vl2 {
                mac: a,
                now: Some(d1)
            })
        );
        assert_eq!(m.set(Entry::Vl2(a, d1)), None);
        assert_eq!(
            m.set(Entry::Vl2(a, d2)),
            Some(Change::Vl2 {
                mac: a,
                now: Some(d2)
            })
        );
        assert_eq!(
            m.set(Entry::Vl3(ip, a)),
            Some(Change::Vl3 {
                ip,
                was: None,
                now: Some(a)
            })
        );
        assert_eq!(
            m.set(Entry::Vl3(ip, b)),
            Some(Change::Vl3 {
                ip,
                was: Some(a),
                now: Some(b)
            })
        );
        assert_eq!(m.remove(Key::Vl2(b)), None);
        assert_eq!(m.vl2(&a), Some(d2));
        assert_eq!(m.vl3(&ip), Some(b));
        // A fresh GET: a moved back, b appears, ip gone.
        let mut new = Mirror::default();
        new.set(Entry::Vl2(a, d1));
        new.set(Entry::Vl2(b, d2));
        let mut ch = m.replace(new.clone());
        ch.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            ch,
            vec![
                Change::Vl2 {
                    mac: a,
                    now: Some(d1)
                },
                Change::Vl2 {
                    mac: b,
                    now: Some(d2)
                },
                Change::Vl3 {
                    ip,
                    was: Some(b),
                    now: None
                },
            ]
        );
        assert_eq!(m, new);
        assert_eq!(m.replace(new), vec![]);
        assert_eq!(
            m.remove(Key::Vl2(a)),
            Some(Change::Vl2 { mac: a, now: None })
        );
        assert_eq!(m.len(), (1, 0));
    }
}
