//! # varpd: the virtual ARP daemon
//!
//! Theory statement. overlayd forwards a guest's frame by looking up its
//! destination VL2 MAC in the overlay's *target table*, which maps it to a
//! UL3 address and port. When the entry is missing overlayd queues the frame
//! and asks varpd, the way IP asks ARP; varpd asks the overlay's *search
//! plugin* and answers with a target (or a drop). Broadcast and multicast
//! frames that a plugin can answer by proxy — ARP requests, IPv6 neighbour
//! solicitations, DHCP — come with the frame itself, and varpd may answer
//! with a frame for overlayd to inject into the overlay (illumos varpd,
//! proxy ARP/NDP/DHCP).
//!
//! ## Parts
//!
//! - [`plugin`]: the plugin traits, mirroring illumos `varpd_plugin_ops_t`
//!   (create, start, stop, destroy, default, lookup, properties, save,
//!   restore, arp, ndp, dhcp), and why queries return futures.
//! - [`plugins`]: the registry and the plugins — [`plugins::direct`] (point
//!   to point), [`plugins::files`] (a JSON mapping with proxy ARP/NDP) and
//!   [`plugins::etcd`] (mappings in an etcd cluster that every host
//!   registers its own guests in, kept coherent by a watch).
//! - [`provider`]: the handle an instance calls back into, and its counters.
//! - [`engine`]: the instance table; turns overlayd's messages into plugin
//!   operations and their results into messages.
//! - [`proxy`]: classifying, checking and answering broadcast frames, on top
//!   of `overlay_wire::{arp, ndp}`.
//! - [`persist`]: instances' saved state (`save`/`restore`) in the state
//!   directory, kept across varpd restarts.
//! - [`link`]: the connection to overlayd; [`control`]: `varpd.sock`;
//!   [`lines`]: bounded line reading for both; [`daemon`]: start-up, signals
//!   and shutdown.
//!
//! ## Data flow
//!
//! ```text
//!  overlayd ──DriverMsg──► link reader ──► engine ──Instance──► plugin create/setprop/start ──► InstanceReady|Failed ─┐
//!                                            │                                                                       │
//!                                            └─Lookup──► spawned task: plugin lookup | proxy (arp/ndp/dhcp) ──┐      │
//!                                                                                                              ▼      ▼
//!  overlayd ◄──VarpdMsg── link writer ◄──────────────────────── outbox ◄── Inject, LookupReply, Invalidate (provider) ◄─ SIGHUP refresh
//! ```
//!
//! ## Failure
//!
//! varpd keeps no instances across links: when overlayd goes away every
//! instance is dropped and varpd reconnects (100 ms → 1 s backoff); on
//! relink overlayd re-sends every instance and pending lookup. What each
//! instance saved (`save`) outlives links and restarts in the state
//! directory ([`persist`]) and seeds its `restore` when its overlay comes
//! again. A message that is too long or
//! does not parse is logged and skipped. An instance that cannot start is
//! reported with [`overlay_api::proto::VarpdMsg::InstanceFailed`] naming the
//! property, file, entry or field at fault; its overlay is degraded in
//! overlayd and its lookups are dropped with that reason. SIGHUP re-reads
//! every plugin's configuration and retries failed instances; a files
//! mapping that no longer parses is reported while the last good one stays
//! in use. Nothing that overlayd, a control client or a configuration file
//! sends can make varpd panic.

pub mod control;
pub mod daemon;
pub mod engine;
pub mod lines;
pub mod link;
pub mod persist;
pub mod plugin;
pub mod plugins;
pub mod provider;
pub mod proxy;

#[cfg(test)]
mod testutil;
