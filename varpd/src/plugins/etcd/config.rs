//! The etcd plugin's properties, checked as they are set.
//!
//! | property | default | meaning |
//! |---|---|---|
//! | `etcd/endpoints` | (required) | comma-separated `http://HOST:PORT` or `https://HOST:PORT` |
//! | `etcd/prefix` | `/overlay` | where the keys live: `PREFIX/VNI/vl2/MAC`, `PREFIX/VNI/vl3/IP` |
//! | `etcd/lease_ttl` | `30` | seconds (2–3600) a dead host's registrations outlive it — and the longest varpd restart that other hosts do not notice |
//! | `etcd/ca` | | PEM CA bundle that signed the servers' certificates (needed for `https`) |
//! | `etcd/cert`, `etcd/key` | | PEM client certificate and key (mutual TLS), both or neither |
//! | `etcd/user`, `etcd/password_file` | | etcd authentication: user name, and a file holding the password (kept out of `show-overlay`) |

use crate::plugin::PluginError;
use std::path::{Path, PathBuf};

/// `etcd/endpoints`.
pub const PROP_ENDPOINTS: &str = "etcd/endpoints";
/// `etcd/prefix`.
pub const PROP_PREFIX: &str = "etcd/prefix";
/// `etcd/lease_ttl`.
pub const PROP_TTL: &str = "etcd/lease_ttl";
/// `etcd/ca`.
pub const PROP_CA: &str = "etcd/ca";
/// `etcd/cert`.
pub const PROP_CERT: &str = "etcd/cert";
/// `etcd/key`.
pub const PROP_KEY: &str = "etcd/key";
/// `etcd/user`.
pub const PROP_USER: &str = "etcd/user";
/// `etcd/password_file`.
pub const PROP_PASSWORD_FILE: &str = "etcd/password_file";

/// Default `etcd/prefix`.
pub const DEFAULT_PREFIX: &str = "/overlay";
/// Default `etcd/lease_ttl`, seconds: long enough for a varpd restart
/// (an upgrade) to take its lease over before it expires, short enough
/// that a dead host's guests are forgotten within half a minute.
pub const DEFAULT_TTL: i64 = 30;
/// Allowed `etcd/lease_ttl` range, seconds.
pub const TTL_RANGE: std::ops::RangeInclusive<i64> = 2..=3600;

/// Every property, in `show-overlay` order.
pub const ALL: &[&str] = &[
    PROP_ENDPOINTS,
    PROP_PREFIX,
    PROP_TTL,
    PROP_CA,
    PROP_CERT,
    PROP_KEY,
    PROP_USER,
    PROP_PASSWORD_FILE,
];

/// The properties of one instance, each checked when set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Endpoint URLs.
    pub endpoints: Vec<String>,
    /// Key prefix, without a trailing `/`.
    pub prefix: Option<String>,
    /// Lease TTL, seconds.
    pub ttl: Option<i64>,
    /// CA bundle.
    pub ca: Option<PathBuf>,
    /// Client certificate.
    pub cert: Option<PathBuf>,
    /// Client key.
    pub key: Option<PathBuf>,
    /// User name.
    pub user: Option<String>,
    /// Password file.
    pub password_file: Option<PathBuf>,
}

fn bad(name: &str, value: &str, expected: &str) -> PluginError {
    PluginError::BadValue {
        name: name.into(),
        value: value.into(),
        expected: expected.into(),
    }
}

/// Checks one endpoint URL: `http(s)://HOST:PORT` (a bracketed IPv6 HOST
/// allowed), nothing after the port but an optional `/`.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or("the scheme must be http:// or https://")?;
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p),
        _ => return Err("HOST:PORT is needed after the scheme".into()),
    };
    if host.contains('/') || host.contains(char::is_whitespace) {
        return Err(format!("'{host}' is not a host name or address"));
    }
    if host.starts_with('[') != host.ends_with(']') {
        return Err(format!("'{host}' is not a bracketed IPv6 address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("'{port}' is not a port in 1-65535")),
    }
}

fn existing_file(name: &str, value: &str) -> Result<PathBuf, PluginError> {
    let p = Path::new(value);
    if !p.is_absolute() {
        return Err(bad(name, value, "an absolute path"));
    }
    if !p.is_file() {
        return Err(bad(name, value, "an existing file"));
    }
    Ok(p.to_path_buf())
}

impl Config {
    /// Sets a property, checking its value.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), PluginError> {
        match name {
            PROP_ENDPOINTS => {
                let eps: Vec<String> = value
                    .split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty())
                    .collect();
                if eps.is_empty() {
                    return Err(bad(
                        name,
                        value,
                        "a comma-separated list of http(s)://HOST:PORT",
                    ));
                }
                for e in &eps {
                    check_endpoint(e).map_err(|why| {
                        bad(
                            name,
                            value,
                            &format!("a list of http(s)://HOST:PORT URLs ({e}: {why})"),
                        )
                    })?;
                }
                let tls = eps.iter().filter(|e| e.starts_with("https://")).count();
                if tls != 0 && tls != eps.len() {
                    return Err(bad(name, value, "all http:// or all https://"));
                }
                self.endpoints = eps;
            }
            PROP_PREFIX => {
                let p = value.trim_end_matches('/');
                if !p.starts_with('/') || p.contains(char::is_whitespace) || p.contains("//") {
                    return Err(bad(
                        name,
                        value,
                        "a key prefix starting with / (e.g. /overlay)",
                    ));
                }
                self.prefix = Some(p.to_string());
            }
            PROP_TTL => match value.parse::<i64>() {
                Ok(t) if TTL_RANGE.contains(&t) => self.ttl = Some(t),
                _ => return Err(bad(name, value, "a number of seconds in 2-3600")),
            },
            PROP_CA => self.ca = Some(existing_file(name, value)?),
            PROP_CERT => self.cert = Some(existing_file(name, value)?),
            PROP_KEY => self.key = Some(existing_file(name, value)?),
            PROP_PASSWORD_FILE => self.password_file = Some(existing_file(name, value)?),
            PROP_USER => {
                if value.is_empty() || value.contains(char::is_whitespace) {
                    return Err(bad(name, value, "an etcd user name"));
                }
                self.user = Some(value.to_string());
            }
            _ => return Err(PluginError::unknown_property(&super::Etcd, name)),
        }
        Ok(())
    }

    /// A property's value, `None` if unset.
    pub fn get(&self, name: &str) -> Result<Option<String>, PluginError> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        Ok(match name {
            PROP_ENDPOINTS => (!self.endpoints.is_empty()).then(|| self.endpoints.join(",")),
            PROP_PREFIX => self.prefix.clone(),
            PROP_TTL => self.ttl.map(|t| t.to_string()),
            PROP_CA => path(&self.ca),
            PROP_CERT => path(&self.cert),
            PROP_KEY => path(&self.key),
            PROP_USER => self.user.clone(),
            PROP_PASSWORD_FILE => path(&self.password_file),
            _ => return Err(PluginError::unknown_property(&super::Etcd, name)),
        })
    }

    /// The prefix in force.
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or(DEFAULT_PREFIX)
    }

    /// The lease TTL in force.
    pub fn ttl(&self) -> i64 {
        self.ttl.unwrap_or(DEFAULT_TTL)
    }

    /// Whether the endpoints use TLS.
    pub fn tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// Checks that the properties make a whole (at `start`).
    pub fn check(&self) -> Result<(), PluginError> {
        if self.endpoints.is_empty() {
            return Err(PluginError::Unset(PROP_ENDPOINTS.into()));
        }
        let conflict = |msg: &str| PluginError::Config(msg.to_string().into());
        if self.cert.is_some() != self.key.is_some() {
            return Err(conflict(
                "etcd/cert and etcd/key go together: set both or neither",
            ));
        }
        if self.tls() && self.ca.is_none() {
            return Err(conflict("https:// endpoints need etcd/ca, the CA bundle that signed the servers' certificates"));
        }
        if !self.tls() && (self.ca.is_some() || self.cert.is_some()) {
            return Err(conflict(
                "etcd/ca, etcd/cert and etcd/key need https:// endpoints",
            ));
        }
        if self.user.is_some() != self.password_file.is_some() {
            return Err(conflict(
                "etcd/user and etcd/password_file go together: set both or neither",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for ok in [
            "http://10.0.0.1:2379",
            "https://etcd.example:2379/",
            "http://[fd00::1]:2379",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "10.0.0.1:2379",
            "ftp://10.0.0.1:2379",
            "http://10.0.0.1",
            "http://10.0.0.1:0",
            "http://10.0.0.1:99999",
            "http://:2379",
            "http://[fd00::1]",
            "http://a/b:2379",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        let mut c = Config::default();
        c.set(
            PROP_ENDPOINTS,
            " http://10.0.0.1:2379, http://10.0.0.2:2379 ,",
        )
        .unwrap();
        assert_eq!(c.endpoints.len(), 2);
        let e = c
            .set(PROP_ENDPOINTS, "http://10.0.0.1:2379,10.0.0.2")
            .unwrap_err()
            .to_string();
        assert!(e.contains("10.0.0.2: the scheme must be"), "{e}");
        assert!(c
            .set(PROP_ENDPOINTS, "http://10.0.0.1:2379,https://10.0.0.2:2379")
            .is_err());
        assert!(c.set(PROP_ENDPOINTS, " , ").is_err());
    }

    #[test]
    fn ttl_prefix_and_files() {
        let mut c = Config::default();
        assert_eq!(c.ttl(), 30);
        assert_eq!(c.prefix(), "/overlay");
        for bad in ["1", "3601", "-5", "ten", ""] {
            assert_eq!(
                c.set(PROP_TTL, bad).unwrap_err().to_string(),
                format!("etcd/lease_ttl: '{bad}' is not a number of seconds in 2-3600")
            );
        }
        c.set(PROP_TTL, "3").unwrap();
        assert_eq!(c.get(PROP_TTL).unwrap().as_deref(), Some("3"));
        c.set(PROP_PREFIX, "/lab/ov/").unwrap();
        assert_eq!(c.prefix(), "/lab/ov");
        for bad in ["lab", "/a b", "/a//b"] {
            assert!(c.set(PROP_PREFIX, bad).is_err(), "{bad}");
        }
        assert_eq!(
            c.set(PROP_CA, "/nonexistent/ca.pem")
                .unwrap_err()
                .to_string(),
            "etcd/ca: '/nonexistent/ca.pem' is not an existing file"
        );
        assert!(c.set(PROP_CERT, "rel/cert.pem").is_err());
        assert!(c.set(PROP_CA, "/etc").is_err(), "a directory is not a file");
        assert!(c
            .set("etcd/nope", "x")
            .unwrap_err()
            .to_string()
            .contains("unknown property etcd/nope"));
    }

    #[test]
    fn check_wants_a_whole() {
        let file = std::env::current_exe().unwrap();
        let f = file.to_str().unwrap();
        let mut c = Config::default();
        assert_eq!(
            c.check().unwrap_err().to_string(),
            "unset required property: etcd/endpoints"
        );
        c.set(PROP_ENDPOINTS, "https://10.0.0.1:2379").unwrap();
        assert!(c.check().unwrap_err().to_string().contains("need etcd/ca"));
        c.set(PROP_CA, f).unwrap();
        c.check().unwrap();
        c.set(PROP_CERT, f).unwrap();
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("set both or neither"));
        c.set(PROP_KEY, f).unwrap();
        c.set(PROP_USER, "ov").unwrap();
        assert!(c.check().is_err());
        c.set(PROP_PASSWORD_FILE, f).unwrap();
        c.check().unwrap();
        c.set(PROP_ENDPOINTS, "http://10.0.0.1:2379").unwrap();
        assert!(c.check().unwrap_err().to_string().contains("need https://"));
    }
}
