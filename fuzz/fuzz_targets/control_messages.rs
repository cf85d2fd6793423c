//! Every line a client or varpd can send on the control sockets: requests to
//! overlayd, varpd's link messages, overlayd's link messages (varpd parses
//! those), and requests to varpd. A message that parses must serialize and
//! parse back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_api::proto::{DriverMsg, Request, VarpdMsg, VarpdRequest};

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(m) = serde_json::from_slice::<T>(data) {
        let again = serde_json::to_vec(&m).expect("a parsed message serializes");
        let back: T = serde_json::from_slice(&again).expect("a serialized message parses");
        assert_eq!(back, m);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Request>(data);
    round_trip::<VarpdMsg>(data);
    round_trip::<DriverMsg>(data);
    round_trip::<VarpdRequest>(data);
});
