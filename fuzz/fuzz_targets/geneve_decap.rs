//! The receive path of every encapsulation module: a UDP (or IP) payload
//! from the underlay through each module's decap, as overlayd's mux does,
//! and Geneve's options walk as ovsnoop does. Whatever decap accepts must
//! re-read consistently: the inner frame is the datagram's tail and at
//! least an Ethernet header long, the VNI fits the module's width.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_wire::{encap, eth, geneve};

fuzz_target!(|data: &[u8]| {
    for m in encap::MODULES {
        if let Ok(p) = (m.decap)(data) {
            assert!(p.vni <= m.vni_max());
            assert!(p.inner.len() >= eth::HEADER_LEN);
            assert!(data.ends_with(p.inner));
            let _ = eth::classify(p.inner);
        }
    }
    if let Ok(p) = geneve::parse(data) {
        assert_eq!(p.options().count(), usize::from(p.option_count));
        assert!(p.options().all(|o| o.is_ok_and(|o| !o.is_critical())));
    }
    for _ in geneve::options_of(data) {}
});
