//! `--trace`: the driver's decisions, from the USDT probes of the running
//! overlayd and varpd.
//!
//! [`script`] generates a bpftrace program from `probes/overlay.d` and
//! `probes/varpd.d` (dtrace-parser); [`run`] finds the daemons of a run
//! directory, attaches one bpftrace to each and merges their lines;
//! [`event`] joins each frame's probes into one [`event::Record`]: the
//! overlay, the direction, the VNI, the inner MACs and length, and the
//! decision (sent to ip:port, queued for lookup, handed to varpd, dropped
//! with its reason, delivered, injected by proxy ARP/NDP).
//!
//! On illumos the same provider definitions would drive DTrace; only the
//! Linux (bpftrace) runner is written.

pub mod event;
pub mod run;
pub mod script;
