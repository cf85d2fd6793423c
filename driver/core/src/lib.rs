//! # overlay-core: the overlay data plane, without I/O
//!
//! Theory statement. An *overlay* is a virtual Ethernet (VL2) network whose
//! frames travel encapsulated (VXLAN or Geneve in UDP, NVGRE in IP) between
//! underlay (UL3) addresses. Each overlay has:
//!
//! - a **configuration** ([`props`]): VNI, MTU, the encapsulation's listen
//!   address, and the search plugin's properties, validated here with
//!   errors that name the property and its accepted range;
//! - a **destination mode**: *point* (every frame to one UL3 destination)
//!   or *dynamic* (each destination MAC is looked up in the **target table**,
//!   [`target`]);
//! - **counters** ([`stats`]) for every arrow a frame can take, with drops
//!   counted per [`overlay_api::DropReason`].
//!
//! Overlays that listen on the same UL3 address and port share one socket:
//! a **mux** ([`mux`]) that demultiplexes received datagrams by VNI.
//!
//! The target table is a state machine per VL2 MAC: absent → *pending* (a
//! lookup is asked of varpd; frames queue, up to a byte limit) → *valid*
//! (frames go to a UL3 address) or *drop*. varpd may be away at any time:
//! valid entries keep forwarding, pending entries wait and are asked again
//! when varpd returns. Nothing here blocks, does I/O or allocates on the hit
//! path; the shell in `overlayd` owns the TAP devices, sockets and event
//! loop and calls in here for every decision.

pub mod decide;
/// A hash map for the per-frame lookups (overlays and muxes by id, a mux's
/// overlays by VNI, peers by address): foldhash's fast hasher, seeded per
/// process, where std's SipHash costs a few percent of a flow (`make
/// profile`). Keys here come from overlayd itself or are bounded by it.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub mod mux;
pub mod props;
pub mod stats;
pub mod target;

pub use mux::{MuxError, MuxTable};
pub use props::{OverlayConfig, PropError};
pub use stats::Counters;
pub use target::{Answer, SourceCheck, TargetTable, TxDecision};
