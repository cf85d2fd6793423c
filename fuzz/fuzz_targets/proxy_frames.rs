//! varpd's proxies: any frame a guest broadcasts reaches the ARP, NDP and
//! DHCP parsers, and a parsed request is answered with a built reply (or a
//! re-addressed request), which must itself parse as a frame.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_api::Mac;
use overlay_wire::{arp, dhcp, eth, ndp};

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
    if let Ok(req) = dhcp::parse_request(data) {
        let resent = dhcp::readdress(data, answer);
        let again = dhcp::parse_request(&resent).expect("a re-addressed request does not parse");
        assert_eq!(again, req);
        assert_eq!(eth::classify(&resent).map(|i| i.dst), Some(answer));
    }
});
