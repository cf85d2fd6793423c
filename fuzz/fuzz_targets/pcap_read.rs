//! ovsnoop's capture reader on any file: pcap or pcapng, any block, any
//! length. Reading ends, frame by frame or with an error that names the
//! record, and never hangs or panics; every frame it hands over fits in
//! what the file held and decodes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovsnoop::decode::{decode, Options};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let opts = Options::default();
    let mut seen = 0u64;
    let r = ovsnoop::read::read(
        std::io::Cursor::new(data.to_vec()),
        Path::new("fuzz.pcap"),
        |rec| {
            seen += 1;
            assert!(rec.data.len() <= data.len());
            let f = decode(rec.link, rec.data, rec.len.max(rec.data.len()), &opts);
            let _ = f.error();
        },
    );
    match r {
        Ok(n) => assert_eq!(n, seen),
        Err(e) => assert!(e.to_string().starts_with("fuzz.pcap: record ")),
    }
});
