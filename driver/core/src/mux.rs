//! The mux: overlays that listen on the same UL3 address and port share one
//! socket, and received datagrams are demultiplexed by VNI (illumos
//! `overlay_mux`). This is the bookkeeping; the socket lives in overlayd.

use crate::FastMap as HashMap;
use std::net::SocketAddr;

/// Why an overlay cannot join a mux.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MuxError {
    /// Another overlay on the same listen address already uses the VNI.
    #[error("vnetid {vni} is already used by overlay {owner} on {listen}: each overlay sharing a listen address needs its own vnetid")]
    VniInUse {
        /// The VNI.
        vni: u32,
        /// The overlay that has it.
        owner: String,
        /// The mux's address.
        listen: SocketAddr,
    },
}

/// One mux's VNI map; `T` identifies an overlay (overlayd uses its id).
#[derive(Debug, Default)]
pub struct MuxTable<T> {
    by_vni: HashMap<u32, (T, String)>,
}

impl<T: Copy + PartialEq> MuxTable<T> {
    /// An empty mux.
    pub fn new() -> Self {
        MuxTable {
            by_vni: HashMap::default(),
        }
    }

    /// Adds overlay `id` (named `name`) with `vni`.
    pub fn join(
        &mut self,
        listen: SocketAddr,
        vni: u32,
        id: T,
        name: &str,
    ) -> Result<(), MuxError> {
        if let Some((_, owner)) = self.by_vni.get(&vni) {
            return Err(MuxError::VniInUse {
                vni,
                owner: owner.clone(),
                listen,
            });
        }
        self.by_vni.insert(vni, (id, name.to_string()));
        Ok(())
    }

    /// Removes whatever overlay has `vni`.
    pub fn leave(&mut self, vni: u32) {
        self.by_vni.remove(&vni);
    }

    /// The overlay that receives `vni`, if any.
    #[inline]
    pub fn demux(&self, vni: u32) -> Option<T> {
        self.by_vni.get(&vni).map(|(id, _)| *id)
    }

    /// True when no overlay uses the mux any more.
    pub fn is_empty(&self) -> bool {
        self.by_vni.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_and_refuse_duplicates() {
        let l: SocketAddr = "10.0.0.1:4789".parse().unwrap();
        let mut m = MuxTable::new();
        m.join(l, 1, 10u64, "ov0").unwrap();
        m.join(l, 2, 11u64, "ov1").unwrap();
        let e = m.join(l, 1, 12u64, "ov2").unwrap_err();
        assert!(e
            .to_string()
            .contains("vnetid 1 is already used by overlay ov0 on 10.0.0.1:4789"));
        assert_eq!(
            (m.demux(1), m.demux(2), m.demux(3)),
            (Some(10), Some(11), None)
        );
        m.leave(1);
        m.leave(2);
        assert!(m.is_empty());
    }
}
