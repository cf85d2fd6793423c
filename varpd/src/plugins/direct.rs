//! The `direct` plugin (point to point): every frame of the overlay goes to
//! one UL3 destination, `direct/dest_ip` : `direct/dest_port` — the
//! traditional tunnel in overlay form. Its `default` op names that
//! destination, which overlayd installs once; unicast lookups, should any
//! come, get the same answer. It proxies nothing.
//!
//! As in illumos, the destination must be a usable unicast address: not
//! unspecified, multicast, broadcast or an IPv4-compatible IPv6 address.
//! An IPv4-mapped IPv6 address is taken as the IPv4 address it maps.
//!
//! `direct/dest_port` is required only when the overlay's encapsulation
//! sends to a port (VXLAN, Geneve: [`DestType::IpPort`]). NVGRE has none
//! ([`DestType::Ip`]): there the port may be left out, and one that is given
//! (as configurations written before had to) is checked and ignored.
//! illumos' direct plugin does not even list the property for an IP-only
//! destination, so dladm would refuse it as unknown; it is kept here so
//! that saved overlays and scripts that set it still work.

use crate::plugin::{ready, BoxFuture, Instance, LookupQuery, Plugin, PluginError};
use crate::provider::{DestType, Provider};
use overlay_api::proto::LookupResult;
use overlay_api::{DestMode, Perm, PropSpec};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The destination address property.
pub const PROP_DEST_IP: &str = "direct/dest_ip";
/// The destination port property.
pub const PROP_DEST_PORT: &str = "direct/dest_port";

/// The `direct` registration.
pub struct Direct;

/// Constructor for the registry.
pub fn plugin() -> Box<dyn Plugin> {
    Box::new(Direct)
}

impl Plugin for Direct {
    fn name(&self) -> &'static str {
        "direct"
    }

    fn mode(&self) -> DestMode {
        DestMode::Point
    }

    fn propinfo(&self) -> Vec<PropSpec> {
        vec![
            PropSpec {
                name: PROP_DEST_IP.into(),
                perm: Perm::Rw,
                required: true,
                default: None,
                possible: None,
            },
            // Required by UDP encapsulations only, which start() checks:
            // the list is the plugin's, not the overlay's.
            PropSpec {
                name: PROP_DEST_PORT.into(),
                perm: Perm::Rw,
                required: false,
                default: None,
                possible: Some("1-65535".into()),
            },
        ]
    }

    fn create(&self, provider: Provider) -> Box<dyn Instance> {
        Box::new(DirectInstance {
            ip: None,
            port: None,
            dest: provider.dest(),
        })
    }

    fn restore(
        &self,
        provider: Provider,
        saved: &serde_json::Value,
    ) -> Result<Box<dyn Instance>, PluginError> {
        let mut inst = self.create(provider);
        for name in [PROP_DEST_IP, PROP_DEST_PORT] {
            if let Some(v) = saved.get(name).and_then(|v| v.as_str()) {
                inst.setprop(name, v)?;
            }
        }
        Ok(inst)
    }
}

struct DirectInstance {
    ip: Option<IpAddr>,
    port: Option<u16>,
    dest: DestType,
}

/// The destination as a usable unicast address, or `None`.
fn unicast(value: &str) -> Option<IpAddr> {
    let ip = value.parse::<IpAddr>().ok()?.to_canonical();
    let bad = match ip {
        IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a == Ipv4Addr::BROADCAST,
        // ::a.b.c.d, deprecated by RFC 4291 (but not :: or ::1).
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_unspecified() || a.is_multicast() || (s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1))
        }
    };
    (!bad).then_some(ip)
}

impl Instance for DirectInstance {
    fn setprop(&mut self, name: &str, value: &str) -> Result<(), PluginError> {
        let bad = |expected: &str| PluginError::BadValue {
            name: name.into(),
            value: value.into(),
            expected: expected.into(),
        };
        match name {
            PROP_DEST_IP => {
                self.ip = Some(unicast(value).ok_or_else(|| bad("a unicast IPv4 or IPv6 address"))?)
            }
            PROP_DEST_PORT => {
                let port = value
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad("in 1-65535"))?;
                self.port = Some(port);
            }
            _ => return Err(PluginError::unknown_property(&Direct, name)),
        }
        Ok(())
    }

    fn getprop(&self, name: &str) -> Result<Option<String>, PluginError> {
        match name {
            PROP_DEST_IP => Ok(self.ip.map(|a| a.to_string())),
            PROP_DEST_PORT => Ok(self.port.map(|p| p.to_string())),
            _ => Err(PluginError::unknown_property(&Direct, name)),
        }
    }

    fn start(&mut self) -> Result<(), PluginError> {
        if self.ip.is_none() {
            return Err(PluginError::Unset(PROP_DEST_IP.into()));
        }
        if self.port.is_none() && self.dest == DestType::IpPort {
            return Err(PluginError::Unset(PROP_DEST_PORT.into()));
        }
        Ok(())
    }

    fn default(&self) -> Option<SocketAddr> {
        match self.dest {
            DestType::IpPort => Some(SocketAddr::new(self.ip?, self.port?)),
            // No port on the wire: a given one is ignored.
            DestType::Ip => Some(SocketAddr::new(self.ip?, 0)),
        }
    }

    fn lookup(&self, _q: LookupQuery) -> BoxFuture<LookupResult> {
        ready(match self.default() {
            Some(dest) => LookupResult::Target { dest },
            None => LookupResult::Drop {
                reason: "direct instance has no destination".into(),
            },
        })
    }

    fn save(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for name in [PROP_DEST_IP, PROP_DEST_PORT] {
            if let Ok(Some(v)) = self.getprop(name) {
                m.insert(name.into(), v.into());
            }
        }
        m.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_api::Mac;
    use tokio::sync::mpsc;

    fn instance() -> Box<dyn Instance> {
        let (tx, _rx) = mpsc::unbounded_channel();
        Direct.create(Provider::new(1, "ov1", 1, DestMode::Point, tx))
    }

    fn setprop_err(name: &str, value: &str) -> String {
        instance().setprop(name, value).unwrap_err().to_string()
    }

    #[tokio::test]
    async fn point_destination() {
        let mut i = instance();
        i.setprop(PROP_DEST_IP, "192.168.50.2").unwrap();
        i.setprop(PROP_DEST_PORT, "4789").unwrap();
        i.start().unwrap();
        let dest: SocketAddr = "192.168.50.2:4789".parse().unwrap();
        assert_eq!(i.default(), Some(dest));
        let q = LookupQuery {
            src: Mac([2, 0, 0, 0, 0, 1]),
            dst: Mac([2, 0, 0, 0, 0, 2]),
        };
        assert_eq!(i.lookup(q).await, LookupResult::Target { dest });
        assert!(i.arp("10.0.0.1".parse().unwrap()).await.is_err());
        assert_eq!(i.getprop(PROP_DEST_PORT).unwrap().as_deref(), Some("4789"));

        let mut v6 = instance();
        v6.setprop(PROP_DEST_IP, "fd00::50:2").unwrap();
        v6.setprop(PROP_DEST_PORT, "1").unwrap();
        v6.start().unwrap();
        assert_eq!(v6.default(), Some("[fd00::50:2]:1".parse().unwrap()));

        // save → restore → same destination.
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut back = Direct
            .restore(Provider::new(1, "ov1", 1, DestMode::Point, tx), &i.save())
            .unwrap();
        back.start().unwrap();
        assert_eq!(back.default(), Some(dest));
    }

    #[tokio::test]
    async fn no_port_for_an_ip_only_encapsulation() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let provider =
            || Provider::new(1, "ov1", 1, DestMode::Point, tx.clone()).with_dest(DestType::Ip);
        let mut i = Direct.create(provider());
        i.setprop(PROP_DEST_IP, "10.0.0.2").unwrap();
        i.start().unwrap();
        assert_eq!(i.default(), Some("10.0.0.2:0".parse().unwrap()));
        // A port is accepted (checked) and ignored.
        let mut i = Direct.create(provider());
        i.setprop(PROP_DEST_IP, "10.0.0.2").unwrap();
        i.setprop(PROP_DEST_PORT, "4789").unwrap();
        i.start().unwrap();
        assert_eq!(i.default(), Some("10.0.0.2:0".parse().unwrap()));
        assert_eq!(
            Direct
                .create(provider())
                .setprop(PROP_DEST_PORT, "0")
                .unwrap_err()
                .to_string(),
            "direct/dest_port: '0' is not in 1-65535"
        );
        let q = LookupQuery {
            src: Mac([2, 0, 0, 0, 0, 1]),
            dst: Mac([2, 0, 0, 0, 0, 2]),
        };
        assert_eq!(
            i.lookup(q).await,
            LookupResult::Target {
                dest: "10.0.0.2:0".parse().unwrap()
            }
        );
    }

    #[test]
    fn property_errors_name_the_property_and_range() {
        assert_eq!(
            setprop_err(PROP_DEST_PORT, "70000"),
            "direct/dest_port: '70000' is not in 1-65535"
        );
        assert_eq!(
            setprop_err(PROP_DEST_PORT, "0"),
            "direct/dest_port: '0' is not in 1-65535"
        );
        assert_eq!(
            setprop_err(PROP_DEST_PORT, "http"),
            "direct/dest_port: 'http' is not in 1-65535"
        );
        for bad in [
            "10.1",
            "",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "ff02::1",
            "::10.0.0.1",
        ] {
            assert_eq!(
                setprop_err(PROP_DEST_IP, bad),
                format!("direct/dest_ip: '{bad}' is not a unicast IPv4 or IPv6 address")
            );
        }
        assert_eq!(
            setprop_err("direct/dest", "x"),
            "unknown property direct/dest (plugin direct has: direct/dest_ip, direct/dest_port)"
        );
        let mut i = instance();
        assert_eq!(
            i.start().unwrap_err().to_string(),
            "unset required property: direct/dest_ip"
        );
        i.setprop(PROP_DEST_IP, "::ffff:10.0.0.1").unwrap();
        assert_eq!(
            i.getprop(PROP_DEST_IP).unwrap().as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            i.start().unwrap_err().to_string(),
            "unset required property: direct/dest_port"
        );
    }
}
