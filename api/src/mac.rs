//! VL2 MAC addresses: parsed the way operators type them, printed the way
//! `ip link` prints them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address (a VL2 address when it names an overlay endpoint).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// True for the all-ones broadcast address.
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    /// True for any group address (broadcast included): the I/G bit is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for an individual (unicast) address.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// True for a locally administered address (the U/L bit is set).
    pub fn is_local(&self) -> bool {
        self.0[0] & 2 == 2
    }

    /// A locally administered unicast MAC made of six random bytes: the
    /// I/G bit cleared and the U/L bit set, the rest kept (as `dladm
    /// create-vnic -m random` does). Never all zeroes.
    pub fn local_unicast(mut random: [u8; 6]) -> Mac {
        random[0] = (random[0] & 0xfc) | 0x02;
        Mac(random)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address '{input}': expected six hex octets separated by ':', like 02:08:20:aa:bb:cc")]
pub struct MacParseError {
    /// What was given.
    pub input: String,
}

impl FromStr for Mac {
    type Err = MacParseError;

    /// Accepts `02:08:20:aa:bb:cc`, dladm's `2:8:20:aa:bb:cc` and `-` separators.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError {
            input: s.to_string(),
        };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split([':', '-']) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| err())?;
            n += 1;
        }
        if n != 6 {
            return Err(err());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn local_unicast_is_local_and_unicast(b in any::<[u8; 6]>()) {
            let m = Mac::local_unicast(b);
            prop_assert!(m.is_unicast() && m.is_local());
            prop_assert_eq!(&m.0[1..], &b[1..]);
            prop_assert_eq!(m.0[0] & 0xfc, b[0] & 0xfc);
        }
    }

    #[test]
    fn local_unicast_of_group_and_global_bytes() {
        assert_eq!(
            Mac::local_unicast([0xff; 6]).to_string(),
            "fe:ff:ff:ff:ff:ff"
        );
        assert_eq!(Mac::local_unicast([0; 6]).to_string(), "02:00:00:00:00:00");
        assert!(!Mac([0, 1, 2, 3, 4, 5]).is_local());
    }

    #[test]
    fn parses_common_forms() {
        let m: Mac = "02:31:00:00:00:0a".parse().unwrap();
        assert_eq!(m.0, [2, 0x31, 0, 0, 0, 10]);
        assert_eq!("2:31:0:0:0:a".parse::<Mac>().unwrap(), m);
        assert_eq!("02-31-00-00-00-0A".parse::<Mac>().unwrap(), m);
        assert_eq!(m.to_string(), "02:31:00:00:00:0a");
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "02:31:00:00:00",
            "02:31:00:00:00:00:00",
            "0g:00:00:00:00:00",
            "002:0:0:0:0:0",
            "::::::",
        ] {
            assert!(s.parse::<Mac>().is_err(), "{s} parsed");
        }
    }

    #[test]
    fn group_bits() {
        assert!(Mac::BROADCAST.is_broadcast() && Mac::BROADCAST.is_multicast());
        assert!("33:33:ff:00:00:01".parse::<Mac>().unwrap().is_multicast());
        assert!("02:00:00:00:00:01".parse::<Mac>().unwrap().is_unicast());
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(b in any::<[u8; 6]>()) {
            let m = Mac(b);
            prop_assert_eq!(m.to_string().parse::<Mac>().unwrap(), m);
            let j = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<Mac>(&j).unwrap(), m);
        }
    }
}
