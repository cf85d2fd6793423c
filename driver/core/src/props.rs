//! Overlay properties: the kernel's (`mtu`, `vnetid`, `encap`, `search`) and
//! the encapsulation module's (`vxlan/listen_ip`, `vxlan/listen_port`,
//! `geneve/...`: whatever [`overlay_wire::encap`] says the module has), with
//! the illumos names, defaults and ranges. Plugin properties (`files/...`,
//! `direct/...`) belong to varpd's plugins; they are carried through and
//! checked against the plugin's own definitions when varpd is known.

use overlay_api::{OverlaySpec, Perm, PropRow, PropSpec};
use overlay_wire::encap::{self, Encap};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// Smallest overlay MTU.
pub const MTU_MIN: u32 = 576;
/// Largest overlay MTU.
pub const MTU_MAX: u32 = 8900;
/// Default overlay MTU.
pub const MTU_DEFAULT: u32 = 1400;

/// Encapsulations this build knows, comma-separated.
fn encap_list(sep: &str) -> String {
    encap::names().collect::<Vec<_>>().join(sep)
}

/// Why an overlay's properties are not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PropError {
    /// A required property was not given.
    #[error("unset required property: {0}")]
    Unset(String),
    /// A value is outside what the property accepts.
    #[error("{name}: '{value}' is not in {possible}")]
    Range {
        /// Property.
        name: String,
        /// Value given.
        value: String,
        /// What is accepted.
        possible: String,
    },
    /// No module or plugin defines that property.
    #[error("unknown property: {0} (see show-overlay for the properties an overlay has)")]
    Unknown(String),
    /// The encapsulation module is not known.
    #[error("unknown encapsulation '{0}' (supported: {list})", list = encap_list(", "))]
    Encap(String),
    /// The link name cannot name a network device.
    #[error(
        "invalid overlay name '{0}': use 1-15 characters from a-z, A-Z, 0-9, '_', '-' and '.'"
    )]
    Name(String),
}

/// A validated overlay configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayConfig {
    /// Link (and TAP device) name.
    pub name: String,
    /// Encapsulation module.
    pub encap: String,
    /// The module itself.
    pub module: &'static Encap,
    /// Search plugin.
    pub search: String,
    /// VNI.
    pub vnetid: u32,
    /// MTU of the TAP device.
    pub mtu: u32,
    /// Where the mux listens (port 0 for a raw-IP module).
    pub listen: SocketAddr,
    /// Most entries the target table may hold.
    pub max_entries: usize,
    /// Take a frame from the underlay only if the target table maps its
    /// inner source MAC to the datagram's source address
    /// (`target/check_source`).
    pub check_source: bool,
    /// Not persisted.
    pub temporary: bool,
    /// Every property as given, plus the kernel's with their effective values.
    pub props: BTreeMap<String, String>,
}

/// The kernel and encapsulation properties, as `show-overlay` lists them.
pub fn kernel_props(encap: &str) -> Vec<PropSpec> {
    let p = |name: &str, perm, required, default: Option<&str>, possible: Option<&str>| PropSpec {
        name: name.into(),
        perm,
        required,
        default: default.map(Into::into),
        possible: possible.map(Into::into),
    };
    let mut v = vec![
        p("encap", Perm::R, false, None, Some(&encap_list(","))),
        p("mtu", Perm::Rw, false, Some("1400"), Some("576-8900")),
        p("search", Perm::R, false, None, None),
        p(
            "target/check_source",
            Perm::Rw,
            false,
            Some("no"),
            Some("no,yes"),
        ),
        p(
            "target/max_entries",
            Perm::Rw,
            false,
            Some("1048576"),
            Some("1-33554432"),
        ),
        p("varpd/id", Perm::R, false, None, None),
        p("vnetid", Perm::Rw, false, None, Some("0-16777215")),
    ];
    if let Some(m) = encap::module(encap) {
        v.extend(
            m.props
                .iter()
                .map(|d| p(d.name, d.perm, d.required, d.default, d.possible)),
        );
    }
    v
}

fn range<T: std::str::FromStr + PartialOrd>(
    name: &str,
    value: &str,
    lo: T,
    hi: T,
    possible: &str,
) -> Result<T, PropError> {
    match value.trim().parse::<T>() {
        Ok(v) if v >= lo && v <= hi => Ok(v),
        _ => Err(PropError::Range {
            name: name.into(),
            value: value.into(),
            possible: possible.into(),
        }),
    }
}

/// True when `name` can be a Linux network device name.
pub fn valid_link_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && name != "."
        && name != ".."
}

/// Bytes a frame may have beyond the MTU: an Ethernet header and one
/// 802.1Q tag (what a guest may send).
pub const L2_OVERHEAD: usize = overlay_wire::eth::HEADER_LEN + 4;

impl OverlayConfig {
    /// The longest frame the overlay carries: its MTU and [`L2_OVERHEAD`].
    #[inline]
    pub fn max_frame(&self) -> usize {
        self.mtu as usize + L2_OVERHEAD
    }

    /// Validates a create request. `plugin` is the search plugin's property
    /// list when varpd has announced it; without it plugin properties are
    /// taken on trust and checked by varpd when it configures the instance.
    pub fn from_spec(
        spec: &OverlaySpec,
        plugin: Option<&[PropSpec]>,
    ) -> Result<OverlayConfig, PropError> {
        if !valid_link_name(&spec.name) {
            return Err(PropError::Name(spec.name.clone()));
        }
        let Some(module) = encap::module(&spec.encap) else {
            return Err(PropError::Encap(spec.encap.clone()));
        };
        if spec.vnetid > module.vni_max() {
            return Err(PropError::Range {
                name: "vnetid".into(),
                value: spec.vnetid.to_string(),
                possible: format!("0-{}", module.vni_max()),
            });
        }
        let kernel = kernel_props(&spec.encap);
        let search_prefix = format!("{}/", spec.search);
        for name in spec.props.keys() {
            let known_kernel = kernel
                .iter()
                .any(|p| &p.name == name && p.perm == Perm::Rw && name != "vnetid");
            let known_plugin = match plugin {
                Some(specs) => specs.iter().any(|p| &p.name == name),
                None => name.starts_with(&search_prefix),
            };
            if !known_kernel && !known_plugin {
                return Err(PropError::Unknown(name.clone()));
            }
        }
        let get = |n: &str| spec.props.get(n).map(String::as_str);
        let mtu = match get("mtu") {
            Some(v) => range("mtu", v, MTU_MIN, MTU_MAX, "576-8900")?,
            None => MTU_DEFAULT,
        };
        let ip_prop = format!("{}/listen_ip", module.name);
        let port_prop = format!("{}/listen_port", module.name);
        let ip: IpAddr = match get(&ip_prop) {
            None => return Err(PropError::Unset(ip_prop)),
            Some(v) => v.trim().parse().map_err(|_| PropError::Range {
                name: ip_prop.clone(),
                value: v.into(),
                possible: "an IPv4 or IPv6 address".into(),
            })?,
        };
        let max_entries = match get("target/max_entries") {
            Some(v) => range(
                "target/max_entries",
                v,
                1usize,
                crate::target::MAX_MAX_ENTRIES,
                "1-33554432",
            )?,
            None => crate::target::DEFAULT_MAX_ENTRIES,
        };
        let check_source = match get("target/check_source").map(str::trim) {
            None | Some("no") => false,
            Some("yes") => true,
            Some(v) => {
                return Err(PropError::Range {
                    name: "target/check_source".into(),
                    value: v.into(),
                    possible: "no,yes".into(),
                })
            }
        };
        let port = match (get(&port_prop), module.default_port()) {
            (Some(v), Some(_)) => range(&port_prop, v, 1u16, 65535, "1-65535")?,
            (None, Some(d)) => d,
            (_, None) => 0,
        };
        if let Some(specs) = plugin {
            if let Some(p) = specs
                .iter()
                .find(|p| p.required && p.default.is_none() && !spec.props.contains_key(&p.name))
            {
                return Err(PropError::Unset(p.name.clone()));
            }
        }
        let mut props = spec.props.clone();
        props.insert("mtu".into(), mtu.to_string());
        props.insert("target/max_entries".into(), max_entries.to_string());
        let yes_no = if check_source { "yes" } else { "no" };
        props.insert("target/check_source".into(), yes_no.into());
        props.insert(ip_prop, ip.to_string());
        if module.default_port().is_some() {
            props.insert(port_prop, port.to_string());
        }
        Ok(OverlayConfig {
            name: spec.name.clone(),
            encap: spec.encap.clone(),
            module,
            search: spec.search.clone(),
            vnetid: spec.vnetid,
            mtu,
            listen: SocketAddr::new(ip, port),
            max_entries,
            check_source,
            temporary: spec.temporary,
            props,
        })
    }

    /// `show-overlay` rows: kernel properties, then the plugin's (from its
    /// announced definitions when known, else the values as set).
    pub fn prop_rows(&self, oid: u64, plugin: Option<&[PropSpec]>) -> Vec<PropRow> {
        let mut rows: Vec<PropRow> = kernel_props(&self.encap)
            .into_iter()
            .map(|p| {
                let value = match p.name.as_str() {
                    "encap" => Some(self.encap.clone()),
                    "search" => Some(self.search.clone()),
                    "vnetid" => Some(self.vnetid.to_string()),
                    "varpd/id" => Some(oid.to_string()),
                    n => self.props.get(n).cloned(),
                };
                PropRow {
                    link: self.name.clone(),
                    property: p.name,
                    perm: p.perm,
                    required: p.required,
                    value,
                    default: p.default,
                    possible: p.possible,
                }
            })
            .collect();
        let prefix = format!("{}/", self.search);
        match plugin {
            Some(specs) => rows.extend(specs.iter().map(|p| PropRow {
                link: self.name.clone(),
                property: p.name.clone(),
                perm: p.perm,
                required: p.required,
                value: self.props.get(&p.name).cloned(),
                default: p.default.clone(),
                possible: p.possible.clone(),
            })),
            None => rows.extend(
                self.props
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| PropRow {
                        link: self.name.clone(),
                        property: k.clone(),
                        perm: Perm::Rw,
                        required: false,
                        value: Some(v.clone()),
                        default: None,
                        possible: None,
                    }),
            ),
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(props: &[(&str, &str)]) -> OverlaySpec {
        OverlaySpec {
            name: "ov0".into(),
            encap: "vxlan".into(),
            search: "files".into(),
            vnetid: 4242,
            temporary: false,
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn files_plugin() -> Vec<PropSpec> {
        vec![PropSpec {
            name: "files/config".into(),
            perm: Perm::Rw,
            required: true,
            default: None,
            possible: None,
        }]
    }

    #[test]
    fn defaults_and_listen() {
        let c = OverlayConfig::from_spec(
            &spec(&[("vxlan/listen_ip", "10.0.0.1"), ("files/config", "/x")]),
            None,
        )
        .unwrap();
        assert_eq!((c.mtu, c.listen), (1400, "10.0.0.1:4789".parse().unwrap()));
        assert_eq!(c.props["vxlan/listen_port"], "4789");
    }

    #[test]
    fn errors_name_the_property() {
        let e = OverlayConfig::from_spec(&spec(&[]), None).unwrap_err();
        assert_eq!(e.to_string(), "unset required property: vxlan/listen_ip");
        let e = OverlayConfig::from_spec(
            &spec(&[("vxlan/listen_ip", "10.0.0.1"), ("mtu", "9000")]),
            None,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "mtu: '9000' is not in 576-8900");
        let e = OverlayConfig::from_spec(
            &spec(&[("vxlan/listen_ip", "10.0.0.1"), ("vxlan/listen_port", "0")]),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("1-65535"));
        let e = OverlayConfig::from_spec(
            &spec(&[("vxlan/listen_ip", "10.0.0.1"), ("target/max_entries", "0")]),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "target/max_entries: '0' is not in 1-33554432"
        );
        let e = OverlayConfig::from_spec(&spec(&[("vxlan/listen_ip", "nope")]), None).unwrap_err();
        assert!(e.to_string().starts_with("vxlan/listen_ip: 'nope'"));
        let e = OverlayConfig::from_spec(
            &spec(&[
                ("vxlan/listen_ip", "10.0.0.1"),
                ("direct/dest_ip", "1.2.3.4"),
            ]),
            None,
        )
        .unwrap_err();
        assert_eq!(e, PropError::Unknown("direct/dest_ip".into()));
        let e = OverlayConfig::from_spec(
            &spec(&[("vxlan/listen_ip", "10.0.0.1")]),
            Some(&files_plugin()),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "unset required property: files/config");
        let mut s = spec(&[("vxlan/listen_ip", "10.0.0.1")]);
        s.vnetid = 1 << 24;
        assert!(OverlayConfig::from_spec(&s, None)
            .unwrap_err()
            .to_string()
            .contains("0-16777215"));
        s.vnetid = 1;
        s.name = "this-name-is-too-long".into();
        assert!(matches!(
            OverlayConfig::from_spec(&s, None),
            Err(PropError::Name(_))
        ));
    }

    #[test]
    fn rows_cover_kernel_and_plugin() {
        let c = OverlayConfig::from_spec(
            &spec(&[("vxlan/listen_ip", "fd00::1"), ("files/config", "/x")]),
            Some(&files_plugin()),
        )
        .unwrap();
        let rows = c.prop_rows(7, Some(&files_plugin()));
        let names: Vec<_> = rows.iter().map(|r| r.property.as_str()).collect();
        assert_eq!(
            names,
            [
                "encap",
                "mtu",
                "search",
                "target/check_source",
                "target/max_entries",
                "varpd/id",
                "vnetid",
                "vxlan/listen_ip",
                "vxlan/listen_port",
                "files/config"
            ]
        );
        assert_eq!(rows[3].value.as_deref(), Some("no"));
        assert_eq!(rows[3].possible.as_deref(), Some("no,yes"));
        assert_eq!(rows[4].value.as_deref(), Some("1048576"));
        assert_eq!(rows[5].value.as_deref(), Some("7"));
        assert_eq!(rows[9].value.as_deref(), Some("/x"));
        assert!(rows[9].required);
        assert!(!c.check_source);
        let mut s = spec(&[
            ("vxlan/listen_ip", "fd00::1"),
            ("target/check_source", "yes"),
        ]);
        assert!(OverlayConfig::from_spec(&s, None).unwrap().check_source);
        s.props.insert("target/check_source".into(), "maybe".into());
        assert_eq!(
            OverlayConfig::from_spec(&s, None).unwrap_err().to_string(),
            "target/check_source: 'maybe' is not in no,yes"
        );
    }

    #[test]
    fn geneve_has_its_own_listen_properties() {
        let mut s = spec(&[("geneve/listen_ip", "fd00::1"), ("files/config", "/x")]);
        s.encap = "geneve".into();
        let c = OverlayConfig::from_spec(&s, None).unwrap();
        assert_eq!(c.listen, "[fd00::1]:6081".parse().unwrap());
        assert_eq!(c.module.name, "geneve");
        assert_eq!(c.props["geneve/listen_port"], "6081");
        let rows = c.prop_rows(1, None);
        let port = rows
            .iter()
            .find(|r| r.property == "geneve/listen_port")
            .unwrap();
        assert_eq!(
            (port.default.as_deref(), port.possible.as_deref()),
            (Some("6081"), Some("1-65535"))
        );
        assert!(rows[0].possible.as_deref().unwrap().contains("geneve"));
        s.props.insert("geneve/listen_port".into(), "7000".into());
        let c = OverlayConfig::from_spec(&s, None).unwrap();
        assert_eq!(c.listen.port(), 7000);
        // The other module's properties are unknown to it.
        s.props.insert("vxlan/listen_ip".into(), "10.0.0.1".into());
        assert_eq!(
            OverlayConfig::from_spec(&s, None).unwrap_err(),
            PropError::Unknown("vxlan/listen_ip".into())
        );
        s.props.clear();
        assert_eq!(
            OverlayConfig::from_spec(&s, None).unwrap_err().to_string(),
            "unset required property: geneve/listen_ip"
        );
        s.encap = "nope".into();
        assert!(OverlayConfig::from_spec(&s, None)
            .unwrap_err()
            .to_string()
            .contains("supported: vxlan, geneve"));
    }

    #[test]
    fn nvgre_listens_on_an_address_without_a_port() {
        let mut s = spec(&[("nvgre/listen_ip", "10.0.0.1"), ("files/config", "/x")]);
        s.encap = "nvgre".into();
        let c = OverlayConfig::from_spec(&s, None).unwrap();
        assert_eq!(c.listen, "10.0.0.1:0".parse().unwrap());
        assert!(!c.props.contains_key("nvgre/listen_port"));
        let names: Vec<_> = c
            .prop_rows(1, None)
            .into_iter()
            .map(|r| r.property)
            .collect();
        assert!(names.contains(&"nvgre/listen_ip".to_string()));
        assert!(!names.iter().any(|n| n.ends_with("listen_port")));
        s.props.insert("nvgre/listen_port".into(), "1".into());
        assert_eq!(
            OverlayConfig::from_spec(&s, None).unwrap_err(),
            PropError::Unknown("nvgre/listen_port".into())
        );
    }
}
