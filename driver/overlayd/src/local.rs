//! The VL2 MACs of an overlay's own guests, learned from the source of the
//! frames its TAP device sends, so that a search plugin that registers
//! where MACs live (etcd) can publish them (`DriverMsg::LocalMac`).
//!
//! Bounded ([`MAX_LOCAL_MACS`]) and aged ([`IDLE`], checked on the
//! housekeeping tick). Touching a MAC already known allocates nothing: the
//! map only grows when a new MAC arrives. Group and all-zero sources are
//! never learned; when the table is full a new MAC is simply not learned
//! (counted in `refused`), since the plugin is an optimisation of lookups
//! elsewhere, never needed for this host's own forwarding.

use overlay_api::Mac;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most MACs one overlay remembers as local.
pub const MAX_LOCAL_MACS: usize = 4096;
/// A local MAC that sent nothing for this long is forgotten.
pub const IDLE: Duration = Duration::from_secs(30);

/// The learned MACs of one overlay and when each last sent.
#[derive(Debug, Default)]
pub struct LocalMacs {
    seen: HashMap<Mac, Instant>,
    /// New MACs not learned because the table was full.
    pub refused: u64,
}

impl LocalMacs {
    /// `mac` sent a frame at `now`: true if it was not known (announce it).
    #[inline]
    pub fn touch(&mut self, mac: Mac, now: Instant) -> bool {
        if let Some(t) = self.seen.get_mut(&mac) {
            *t = now;
            return false;
        }
        if !mac.is_unicast() || mac == Mac::default() {
            return false;
        }
        if self.seen.len() >= MAX_LOCAL_MACS {
            self.refused += 1;
            return false;
        }
        self.seen.insert(mac, now);
        true
    }

    /// Forgets the MACs idle since before `now - IDLE` and returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<Mac> {
        let Some(before) = now.checked_sub(IDLE) else {
            return Vec::new();
        };
        let gone: Vec<Mac> = self
            .seen
            .iter()
            .filter(|(_, t)| **t < before)
            .map(|(m, _)| *m)
            .collect();
        for m in &gone {
            self.seen.remove(m);
        }
        gone
    }

    /// Forgets `mac` (it moved to another host).
    pub fn forget(&mut self, mac: Mac) {
        self.seen.remove(&mac);
    }

    /// Every MAC currently known.
    pub fn all(&self) -> impl Iterator<Item = Mac> + '_ {
        self.seen.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_unicast_once_and_expires_idle() {
        let mut l = LocalMacs::default();
        let t0 = Instant::now();
        let m: Mac = "02:00:00:00:00:01".parse().unwrap();
        assert!(l.touch(m, t0));
        assert!(!l.touch(m, t0));
        assert!(!l.touch(Mac::BROADCAST, t0));
        assert!(!l.touch("33:33:00:00:00:01".parse().unwrap(), t0));
        assert!(!l.touch(Mac::default(), t0));
        assert_eq!(l.expire(t0 + Duration::from_secs(1)), vec![]);
        assert!(!l.touch(m, t0 + Duration::from_secs(20)));
        assert_eq!(l.expire(t0 + Duration::from_secs(40)), vec![]);
        assert_eq!(l.expire(t0 + Duration::from_secs(51)), vec![m]);
        assert_eq!(l.all().count(), 0);
        // Forgotten (moved away), it is new again when it comes back.
        assert!(l.touch(m, t0));
        l.forget(m);
        assert!(l.touch(m, t0));
    }

    #[test]
    fn bounded() {
        let mut l = LocalMacs::default();
        let t0 = Instant::now();
        for i in 0..MAX_LOCAL_MACS as u32 + 10 {
            let b = i.to_be_bytes();
            l.touch(Mac([2, 0, b[0], b[1], b[2], b[3]]), t0);
        }
        assert_eq!(l.all().count(), MAX_LOCAL_MACS);
        assert_eq!(l.refused, 10);
    }
}
