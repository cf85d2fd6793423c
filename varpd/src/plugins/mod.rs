//! The search plugins varpd offers, and the registry that lists them.
//!
//! Adding a backend: write `plugins/NAME.rs` implementing
//! [`crate::plugin::Plugin`] and [`crate::plugin::Instance`], and add its
//! constructor to [`REGISTRY`]. Nothing else in varpd names a plugin.

pub mod direct;
pub mod etcd;
pub mod files;

use crate::plugin::Plugin;

/// Constructors of every plugin, in the order varpd announces them.
pub const REGISTRY: &[fn() -> Box<dyn Plugin>] = &[direct::plugin, files::plugin, etcd::plugin];

/// One of each plugin.
pub fn all() -> Vec<Box<dyn Plugin>> {
    REGISTRY.iter().map(|new| new()).collect()
}
