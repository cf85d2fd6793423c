//! What an entry says: its state, where it sends (UL3 destination), and when.
//!
//! A [`TargetState`] is stored in one atomic *state word* in the entry's slot:
//! the state in the low bits and, for [`TargetState::Valid`], the IPv4
//! address and port themselves or, for IPv6, the id of an interned
//! destination record (see `dests.rs`). One word means a reader always sees
//! a state and destination that belong together; IPv4, the common underlay,
//! costs no further load.

use overlay_api::Mac;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The state of a target entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetState {
    /// The lookup was asked and has no answer yet.
    Pending,
    /// Frames for this VL2 MAC go to this UL3 address and port.
    Valid(SocketAddr),
    /// Frames for this VL2 MAC are dropped.
    Drop,
}

const ST_PENDING: u64 = 0;
const ST_VALID6: u64 = 1;
const ST_DROP: u64 = 2;
const ST_VALID4: u64 = 3;
const ST_MASK: u64 = 3;

/// The state word of a slot: state in bits 0–1; for IPv4 the port in bits
/// 16–31 and the address in bits 32–63; for IPv6 the destination id in bits
/// 32–63.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StateWord {
    Pending,
    Valid4(SocketAddrV4),
    Valid6(u32),
    Drop,
}

impl StateWord {
    #[inline]
    pub(crate) fn encode(self) -> u64 {
        match self {
            StateWord::Pending => ST_PENDING,
            StateWord::Valid4(a) => {
                ST_VALID4 | (u64::from(a.port()) << 16) | (u64::from(a.ip().to_bits()) << 32)
            }
            StateWord::Valid6(id) => ST_VALID6 | (u64::from(id) << 32),
            StateWord::Drop => ST_DROP,
        }
    }

    #[inline]
    pub(crate) fn decode(w: u64) -> StateWord {
        match w & ST_MASK {
            ST_VALID4 => StateWord::Valid4(SocketAddrV4::new(
                Ipv4Addr::from_bits((w >> 32) as u32),
                (w >> 16) as u16,
            )),
            ST_VALID6 => StateWord::Valid6((w >> 32) as u32),
            ST_DROP => StateWord::Drop,
            _ => StateWord::Pending,
        }
    }
}

/// A UL3 destination as four atomic words, written once by the writer before
/// any state word names it and not rewritten until every reader that could
/// have seen it has moved on (its id is reclaimed through the epoch).
#[derive(Default, Debug)]
#[repr(C, align(32))]
pub(crate) struct DestRecord {
    /// Bit 0: IPv6; bits 16–31: port.
    meta: AtomicU64,
    /// IPv6 address high half (unused for IPv4).
    hi: AtomicU64,
    /// IPv6 address low half, or the IPv4 address.
    lo: AtomicU64,
    /// IPv6 flow info (low 32 bits) and scope id (high 32 bits).
    v6: AtomicU64,
}

impl DestRecord {
    /// Writes `addr`. Only the writer calls this, on a record no state word
    /// names; the release store of the state word that names it publishes it.
    pub(crate) fn store(&self, addr: SocketAddr) {
        match addr {
            SocketAddr::V4(a) => {
                self.meta.store(u64::from(a.port()) << 16, Relaxed);
                self.hi.store(0, Relaxed);
                self.lo.store(u64::from(a.ip().to_bits()), Relaxed);
                self.v6.store(0, Relaxed);
            }
            SocketAddr::V6(a) => {
                let bits = a.ip().to_bits();
                self.meta.store(1 | (u64::from(a.port()) << 16), Relaxed);
                self.hi.store((bits >> 64) as u64, Relaxed);
                self.lo.store(bits as u64, Relaxed);
                self.v6.store(
                    u64::from(a.flowinfo()) | (u64::from(a.scope_id()) << 32),
                    Relaxed,
                );
            }
        }
    }

    /// Reads the address (the caller acquired the state word naming it).
    #[inline]
    pub(crate) fn load(&self) -> SocketAddr {
        let meta = self.meta.load(Relaxed);
        let port = (meta >> 16) as u16;
        if meta & 1 == 0 {
            let ip = Ipv4Addr::from_bits(self.lo.load(Relaxed) as u32);
            SocketAddr::V4(SocketAddrV4::new(ip, port))
        } else {
            let bits =
                (u128::from(self.hi.load(Relaxed)) << 64) | u128::from(self.lo.load(Relaxed));
            let v6 = self.v6.load(Relaxed);
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from_bits(bits),
                port,
                v6 as u32,
                (v6 >> 32) as u32,
            ))
        }
    }
}

/// A point in time on a table's [`Clock`]: nanoseconds since the table was
/// made, plus one (zero means "never").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tick(pub u64);

impl Tick {
    /// The time from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// The table's time base. Forwarding threads read it once per batch of
/// frames and pass the [`Tick`] to [`crate::ReadGuard::hit`], so the hit path
/// makes no clock call of its own.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            base: Instant::now(),
        }
    }

    /// Now, on this clock.
    #[inline]
    pub fn now(&self) -> Tick {
        self.at(Instant::now())
    }

    /// `t` on this clock (instants before the table was made read as its start).
    #[inline]
    pub fn at(&self, t: Instant) -> Tick {
        let ns = t.saturating_duration_since(self.base).as_nanos();
        Tick(u64::try_from(ns).unwrap_or(u64::MAX - 1) + 1)
    }
}

/// One entry as a dump yields it: a consistent view of that entry.
///
/// The MAC, state and destination belong together (one slot, one state word,
/// read while the slot cannot be reused); the statistics are counters that
/// readers bump with relaxed atomics, so `frames` and `bytes` may be one frame
/// apart from each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySnapshot {
    /// The VL2 MAC.
    pub mac: Mac,
    /// State and UL3 destination.
    pub state: TargetState,
    /// When the entry was created.
    pub created: Tick,
    /// When a frame last hit it, if ever.
    pub last_used: Option<Tick>,
    /// Frames that hit it.
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
}

impl EntrySnapshot {
    /// How old the entry is at `now`.
    pub fn age(&self, now: Tick) -> Duration {
        now.since(self.created)
    }

    /// How long since a frame hit it, at `now` (`None`: never hit).
    pub fn idle(&self, now: Tick) -> Option<Duration> {
        self.last_used.map(|t| now.since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_words_round_trip() {
        for s in [
            StateWord::Pending,
            StateWord::Drop,
            StateWord::Valid6(0),
            StateWord::Valid6(u32::MAX),
            StateWord::Valid4("255.255.255.255:65535".parse().unwrap()),
            StateWord::Valid4("192.0.2.1:4789".parse().unwrap()),
            StateWord::Valid4("0.0.0.0:0".parse().unwrap()),
        ] {
            assert_eq!(StateWord::decode(s.encode()), s);
        }
    }

    #[test]
    fn dest_records_round_trip() {
        let r = DestRecord::default();
        for a in [
            "192.0.2.1:4789",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[2001:db8::1]:4789",
            "[fe80::1%7]:1",
        ] {
            let a: SocketAddr = a.parse().unwrap();
            r.store(a);
            assert_eq!(r.load(), a);
        }
        let a = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 9, 0xabcde, u32::MAX));
        r.store(a);
        assert_eq!(r.load(), a);
    }

    #[test]
    fn ticks_start_after_zero() {
        let c = Clock::new();
        assert!(c.now() > Tick(0));
        assert_eq!(c.at(c.base - Duration::from_secs(1)), Tick(1));
        assert_eq!(Tick(5).since(Tick(9)), Duration::ZERO);
    }
}
