//! ovsnoop's decoder on whatever a capture holds: the first byte picks the
//! link type (Ethernet, Linux cooked v1, v2) and whether 8472 is a VXLAN
//! port too, the rest is the frame. Decoding never panics, the length on
//! the wire is kept, an error is always a message, and every output form
//! (one line, `-v`, `--json`) renders, the JSON as valid JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovsnoop::decode::{decode, LinkType, Options};
use ovsnoop::format;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let lt = [LinkType::Ethernet, LinkType::LinuxSll, LinkType::LinuxSll2][usize::from(sel % 3)];
    let mut opts = Options::default();
    if sel & 0x80 != 0 {
        opts.vxlan_ports.push(8472);
    }
    // A wire length past the capture, as a short snaplen leaves it.
    let len = frame.len() + usize::from(sel & 0x40);
    let f = decode(lt, frame, len, &opts);
    assert_eq!(f.len, len);
    if let Some(e) = f.error() {
        assert!(!e.is_empty());
    }
    if let Some(v) = &f.vxlan {
        assert!(v.vni <= 0x00ff_ffff);
        assert!(f.inner.is_some());
    }
    let line = format::line(&f);
    assert!(!line.contains('\n'));
    let _ = format::verbose(&f, 1);
    let j = format::json(&f, 1, Some(0.0));
    serde_json::from_str::<serde_json::Value>(&j).expect("--json is JSON");
});
