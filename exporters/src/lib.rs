//! `overlay-exporter`: the overlay daemons' counters as Prometheus metrics.
//!
//! Theory: the daemons already keep every counter and serve one consistent
//! snapshot over their control sockets, so the exporter keeps no state of its
//! own. At each scrape of `/metrics` it asks every configured run directory's
//! overlayd (`stats`, `show-status`) and varpd (`status`) for a snapshot,
//! turns those snapshots into metric families with a pure function
//! ([`collect::families`]), registers them in a fresh `prometheus::Registry`
//! and encodes that in the text exposition format. Nothing outlives a scrape:
//! an overlay that vanished is simply absent, nothing goes stale, and a
//! daemon that cannot be reached turns into `overlay_up` / `varpd_up` 0 with
//! no other series for it (never an HTTP error).
//!
//! Naming follows the Prometheus guide (see `README.md`): prefixes
//! `overlay_` (overlayd) and `varpd_`, base units (bytes, seconds), `_total`
//! on counters, and labels from bounded sets only: host, overlay, drop
//! reason, mux address, and at most `--max-peers` underlay peers per overlay.
//!
//! - [`collect`]: snapshots to metric families and exposition text (pure).
//! - [`serve`]: reading the sockets, and the HTTP server.

pub mod collect;
pub mod serve;
