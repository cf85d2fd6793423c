//! Serde helpers that carry frames as hex strings inside JSON messages
//! (frames only cross the control sockets on the slow path: proxy ARP/NDP,
//! injection).

use serde::{Deserialize, Deserializer, Serializer};

/// Encodes bytes as lowercase hex.
pub fn encode(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

/// Decodes a hex string; `None` if it has odd length or a non-hex digit.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// `#[serde(with = "hexbytes")]` for `Vec<u8>`.
pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&encode(b))
}

/// `#[serde(with = "hexbytes")]` for `Vec<u8>`.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    decode(&s).ok_or_else(|| serde::de::Error::custom("frame is not a hex string"))
}

/// `#[serde(with = "hexbytes::option")]` for `Option<Vec<u8>>`.
pub mod option {
    use super::*;

    /// Serializes `None` as null and bytes as hex.
    pub fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&encode(b)),
            None => s.serialize_none(),
        }
    }

    /// Reads null or a hex string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => decode(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("frame is not a hex string")),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(super::decode(&super::encode(&b)).unwrap(), b);
        }
    }

    #[test]
    fn rejects_bad_hex() {
        assert!(super::decode("abc").is_none());
        assert!(super::decode("zz").is_none());
    }
}
