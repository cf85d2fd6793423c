//! The search-plugin interface: illumos `varpd_plugin_ops_t`, in Rust.
//!
//! A [`Plugin`] is a registration (illumos `varpd_plugin_register_t`): a
//! name, a destination mode, the properties it takes, and the `create` and
//! `restore` constructors. An [`Instance`] is one plugin serving one overlay
//! and carries the rest of the operations vector.
//!
//! ## Life of an instance
//!
//! `create` → `setprop` for each of the plugin's properties the overlay has
//! → `start` → (`default`, `lookup`, `arp`, `ndp`, `dhcp`, `refresh`, `save`,
//! any number of times, concurrently) → (`destroy`, only when the overlay
//! is deleted) → `stop` → drop. As in illumos, the query operations are only
//! called between `start` and `stop`.
//!
//! `stop` alone is what varpd does when it shuts down, when overlayd goes
//! away, and when an instance is replaced: whatever the instance published
//! for other hosts (the etcd plugin's registrations) stays in place, for the
//! next instance to take over — a varpd restart must cost other hosts
//! nothing. `destroy` is the overlay's deletion (`ovadm delete-overlay`):
//! then, and only then, the instance withdraws what it published.
//!
//! ## Why queries return boxed futures
//!
//! `lookup`, `arp`, `ndp` and `dhcp` return a [`BoxFuture`] that owns what it
//! needs (`'static`). This is illumos' asynchronous query handle without the
//! handle: varpd spawns one task per query and writes the answer to overlayd
//! when the future completes, so a plugin that must ask the network (etcd)
//! returns a future doing just that, and a slow answer holds up nobody
//! else. A plugin that knows the answer at once (direct, files) returns
//! [`ready`]. Everything else — properties, `start`, `stop`, `save` — is
//! synchronous and must be quick: `start` checks configuration and may read
//! a local file, but a network plugin connects in the background (in a task
//! it spawns) and makes its queries wait or fail on their own.
//!
//! Things a plugin learns on its own — a file changed, a watch fired — go
//! back to overlayd through its [`Provider`] (illumos
//! `varpd_provider_handle_t`): `invalidate`, `degraded`, `ready`.
//!
//! A new backend is one new module implementing these two traits, plus one
//! line in the registry ([`crate::plugins::REGISTRY`]).

use crate::provider::Provider;
use overlay_api::proto::LookupResult;
use overlay_api::{DestMode, Mac, PropSpec};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;

/// A boxed future that owns its data, as every query operation returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A future that is already complete: the answer of a plugin that knows it
/// at once.
pub fn ready<T: Send + 'static>(value: T) -> BoxFuture<T> {
    Box::pin(std::future::ready(value))
}

/// What a unicast lookup asks: where does the VL2 address `dst` live?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookupQuery {
    /// The VL2 source of the frame that missed.
    pub src: Mac,
    /// The VL2 destination that missed.
    pub dst: Mac,
}

/// A mapping set or removed by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandMapping {
    /// VL2 MAC lives at a UL3 address.
    SetVl2(Mac, SocketAddr),
    /// VL3 address belongs to a MAC.
    SetVl3(IpAddr, Mac),
    /// Forget where a MAC lives.
    RemoveVl2(Mac),
    /// Forget who owns an address.
    RemoveVl3(IpAddr),
}

/// Why a proxy query (ARP, NDP, DHCP) has no answer; becomes
/// [`LookupResult::NotAnswered`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoAnswer(pub String);

/// Why a plugin refused a property or could not start.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// A required property was never set.
    #[error("unset required property: {0}")]
    Unset(String),
    /// A property value is outside what the plugin accepts.
    #[error("{name}: '{value}' is not {expected}")]
    BadValue {
        /// Property name.
        name: String,
        /// The value given.
        value: String,
        /// What would have been accepted, e.g. `in 1-65535`.
        expected: String,
    },
    /// The plugin has no property by that name.
    #[error("unknown property {name} (plugin {plugin} has: {known})")]
    UnknownProperty {
        /// Property name.
        name: String,
        /// Plugin name.
        plugin: String,
        /// The properties it has, comma-separated.
        known: String,
    },
    /// The plugin's own configuration (a file, a server) is wrong; the
    /// message names the culprit.
    #[error(transparent)]
    Config(Box<dyn std::error::Error + Send + Sync>),
}

impl PluginError {
    /// [`PluginError::UnknownProperty`] for a plugin and its property list.
    pub fn unknown_property(plugin: &dyn Plugin, name: &str) -> PluginError {
        let known: Vec<String> = plugin.propinfo().into_iter().map(|p| p.name).collect();
        PluginError::UnknownProperty {
            name: name.to_string(),
            plugin: plugin.name().to_string(),
            known: known.join(", "),
        }
    }
}

/// A search plugin's registration (illumos `varpd_plugin_register_t` plus
/// the `create`, `restore` and `propinfo` entries of its operations vector).
pub trait Plugin: Send + Sync + 'static {
    /// The name overlays select it by (`search` of the overlay).
    fn name(&self) -> &'static str;

    /// Point (one destination, from `default`) or dynamic (per-MAC `lookup`).
    fn mode(&self) -> DestMode;

    /// Its properties (illumos `nprops` + `propinfo`); names are
    /// `PLUGIN/NAME`, the only keys of an overlay's properties it reads.
    fn propinfo(&self) -> Vec<PropSpec>;

    /// A new, unconfigured instance for one overlay.
    fn create(&self, provider: Provider) -> Box<dyn Instance>;

    /// An instance re-created from what [`Instance::save`] wrote, not yet
    /// started.
    fn restore(
        &self,
        provider: Provider,
        saved: &serde_json::Value,
    ) -> Result<Box<dyn Instance>, PluginError>;
}

/// One plugin serving one overlay: the rest of `varpd_plugin_ops_t`.
pub trait Instance: Send + Sync + 'static {
    /// Sets a property before `start` (illumos `setprop`); checks the value.
    fn setprop(&mut self, name: &str, value: &str) -> Result<(), PluginError>;

    /// A property's current value, `None` if unset (illumos `getprop`).
    fn getprop(&self, name: &str) -> Result<Option<String>, PluginError>;

    /// Checks that every required property is set and readies the instance:
    /// after this the query operations may be called.
    fn start(&mut self) -> Result<(), PluginError>;

    /// The instance is going away; release what `start` took, but leave
    /// what it published for other hosts in place (varpd may be restarting:
    /// the next instance takes it over).
    fn stop(&self) {}

    /// The overlay is deleted (illumos `destroy`): withdraw, at once, what
    /// the instance published for other hosts. Called before `stop`, and
    /// only on the overlay's deletion — never when varpd or overlayd stop.
    fn destroy(&self) {}

    /// For point plugins, the one destination of every frame.
    fn default(&self) -> Option<SocketAddr> {
        None
    }

    /// Where does `q.dst` live? [`LookupResult::Target`] or
    /// [`LookupResult::Drop`].
    fn lookup(&self, q: LookupQuery) -> BoxFuture<LookupResult>;

    /// Which VL2 MAC owns the IPv4 address `ip`? (proxy ARP)
    fn arp(&self, ip: Ipv4Addr) -> BoxFuture<Result<Mac, NoAnswer>> {
        let _ = ip;
        ready(Err(NoAnswer(
            "this search plugin does not proxy ARP".into(),
        )))
    }

    /// Which VL2 MAC owns the IPv6 address `ip`? (proxy NDP; illumos folds
    /// this into `arp` with an `AF_INET6` address)
    fn ndp(&self, ip: Ipv6Addr) -> BoxFuture<Result<Mac, NoAnswer>> {
        let _ = ip;
        ready(Err(NoAnswer(
            "this search plugin does not proxy NDP".into(),
        )))
    }

    /// Which VL2 MAC is the DHCP server of `client`? (proxy DHCP)
    fn dhcp(&self, client: Mac) -> BoxFuture<Result<Mac, NoAnswer>> {
        let _ = client;
        ready(Err(NoAnswer(
            "this search plugin does not proxy DHCP".into(),
        )))
    }

    /// The overlay's own underlay address (its `*/listen_ip` and
    /// `*/listen_port` properties), given before `start`: where this host's
    /// guests are reached. Only plugins that register local guests use it.
    fn underlay(&mut self, listen: SocketAddr) {
        let _ = listen;
    }

    /// A guest of this host sends from VL2 `mac` (`present`), or stopped
    /// doing so: overlayd's `DriverMsg::LocalMac`. Not in illumos.
    fn local_mac(&self, mac: Mac, present: bool) {
        let _ = (mac, present);
    }

    /// A guest of this host announced that VL3 `ip` is at `mac` (the sender
    /// of its ARP, the source of its neighbour solicitation). Not in illumos.
    fn local_ip(&self, ip: IpAddr, mac: Mac) {
        let _ = (ip, mac);
    }

    /// Sets or removes one mapping by hand (`ovadm set-mapping`,
    /// `remove-mapping`). Only plugins with a shared mapping database
    /// take them; the error says why not.
    fn hand_mapping(&self, m: HandMapping) -> BoxFuture<Result<(), String>> {
        let _ = m;
        ready(Err(
            "this search plugin takes no mappings by hand (edit its configuration)".into(),
        ))
    }

    /// Re-reads the instance's configuration (varpd got SIGHUP). Changes are
    /// reported through the [`Provider`]. Not in illumos.
    fn refresh(&self) {}

    /// The instance's state, enough for [`Plugin::restore`] to rebuild it.
    fn save(&self) -> serde_json::Value;
}
