//! Interned IPv6 UL3 destinations.
//!
//! An IPv4 destination fits in the state word itself; an IPv6 one (address,
//! port, flow info, scope) does not, so it is interned: the state word names
//! it by a 32-bit id. Many VL2 MACs live behind one UL3 host, so the few
//! records readers touch stay hot in cache. The writer keeps the reverse map and reference
//! counts; an id whose count falls to zero goes through the epoch limbo
//! before its record may be rewritten for another address.

use crate::error::TableError;
use crate::slab::{Segmented, MAX_IDS, SEG_SHIFT};
use crate::state::DestRecord;
use crossbeam_epoch::Guard;
use std::collections::HashMap;
use std::net::SocketAddr;

/// The writer's side of the destination records.
#[derive(Default)]
pub(crate) struct DestInterner {
    ids: HashMap<SocketAddr, u32>,
    /// By id: the address and how many state words name it (0: free or in limbo).
    by_id: Vec<(SocketAddr, u32)>,
    free: Vec<u32>,
}

impl DestInterner {
    /// The id of `addr`, with one more reference; writes a new record if it
    /// had none.
    pub(crate) fn acquire(
        &mut self,
        addr: SocketAddr,
        recs: &Segmented<DestRecord>,
        guard: &Guard,
    ) -> Result<u32, TableError> {
        if let Some(&id) = self.ids.get(&addr) {
            self.by_id[id as usize].1 += 1;
            return Ok(id);
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let id = self.by_id.len();
                if id >= MAX_IDS {
                    return Err(TableError::SlotsExhausted { slots: MAX_IDS });
                }
                if id & ((1 << SEG_SHIFT) - 1) == 0 {
                    recs.install(id >> SEG_SHIFT);
                }
                self.by_id.push((addr, 0));
                id as u32
            }
        };
        recs.get(id, guard)
            .expect("destination segment installed")
            .store(addr);
        self.by_id[id as usize] = (addr, 1);
        self.ids.insert(addr, id);
        Ok(id)
    }

    /// Drops one reference to `id`; true when it was the last (the caller
    /// retires the id through the limbo).
    pub(crate) fn release(&mut self, id: u32) -> bool {
        let e = &mut self.by_id[id as usize];
        e.1 -= 1;
        if e.1 == 0 {
            self.ids.remove(&e.0);
            true
        } else {
            false
        }
    }

    /// Makes `id` reusable (its grace period is over).
    pub(crate) fn free_id(&mut self, id: u32) {
        self.free.push(id);
    }

    /// Distinct destinations in use.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_counts_references() {
        let c = crossbeam_epoch::Collector::new();
        let h = c.register();
        let g = h.pin();
        let recs = Segmented::new();
        let mut d = DestInterner::default();
        let a: SocketAddr = "192.0.2.1:4789".parse().unwrap();
        let b: SocketAddr = "[2001:db8::2]:4789".parse().unwrap();
        let ia = d.acquire(a, &recs, &g).unwrap();
        assert_eq!(d.acquire(a, &recs, &g).unwrap(), ia);
        let ib = d.acquire(b, &recs, &g).unwrap();
        assert_ne!(ia, ib);
        assert_eq!(recs.get(ib, &g).unwrap().load(), b);
        assert!(!d.release(ia));
        assert!(d.release(ia));
        assert_eq!(d.len(), 1);
        // A retired id is not handed out until it is freed.
        let a2 = d.acquire(a, &recs, &g).unwrap();
        assert_ne!(a2, ia);
        d.free_id(ia);
        let c3: SocketAddr = "198.51.100.3:1".parse().unwrap();
        assert_eq!(d.acquire(c3, &recs, &g).unwrap(), ia);
        assert_eq!(recs.get(ia, &g).unwrap().load(), c3);
    }
}
