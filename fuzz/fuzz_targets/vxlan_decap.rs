//! The receive path's parsing: a UDP payload from the underlay through the
//! VXLAN header to the inner frame's classification and flow hash, exactly
//! as overlayd's mux does before it writes to a TAP device.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_wire::{eth, vxlan};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = vxlan::parse(data) {
        assert!(p.vni <= vxlan::VNI_MAX);
        assert_eq!(p.inner.len() + vxlan::HEADER_LEN, data.len());
        let _ = eth::classify(p.inner);
        let _ = eth::flow_hash(p.inner);
    }
    // The transmit side classifies whatever a guest writes to its TAP.
    if let Some(i) = eth::classify(data) {
        assert!(i.l3 <= 18);
    }
    let _ = eth::source_port(eth::flow_hash(data), 49152, 65535);
});
