//! NVGRE's receive path: an IP payload (GRE header and all) through
//! `nvgre::parse`, as overlayd's raw-socket mux does, and the header view
//! ovsnoop reads any GRE header with. What parse accepts re-reads the same
//! through the view: the key's top 24 bits are the VSID, the inner frame is
//! the tail after the header the flags announce.
#![no_main]
use libfuzzer_sys::fuzz_target;
use overlay_wire::{eth, nvgre};

fuzz_target!(|data: &[u8]| {
    let h = nvgre::Header(data);
    let _ = (h.flags(), h.version(), h.protocol(), h.key());
    if let Ok(p) = nvgre::parse(data) {
        assert_eq!(h.key().map(|k| k >> 8), Some(p.vsid));
        assert!(p.vsid <= 0x00ff_ffff);
        assert_eq!(p.inner.len() + h.len(), data.len());
        assert!(p.inner.len() >= eth::HEADER_LEN);
        let _ = eth::classify(p.inner);
    }
});
