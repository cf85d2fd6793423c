//! varpd's proxies: any frame a guest broadcasts reaches the ARP and NDP
//! parsers, and a parsed request is answered with a built reply, which must
//! itself parse as a frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_api::Mac;
use overlay_wire::{arp, eth, ndp};

fuzz_target!(|data: &[u8]| {
    let answer = Mac([2, 0, 0, 0, 0, 0x42]);
    if let Ok(m) = arp::parse(data) {
        if let Ok(reply) = m.reply(answer) {
            assert!(eth::classify(&reply).is_some());
            assert!(arp::parse(&reply).is_ok(), "a reply we built does not parse");
        }
    }
    if let Ok(ns) = ndp::parse_solicit(data) {
        if let Ok(na) = ns.advertisement(answer) {
            assert!(eth::classify(&na).is_some());
        }
    }
});
