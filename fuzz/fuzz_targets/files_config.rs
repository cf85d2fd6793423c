//! The files plugin's configuration (illumos overlay_files(5) JSON), which an
//! operator writes by hand: anything is rejected with a message or accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use varpd::plugins::files::mapping::Mapping;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Mapping::parse(Path::new("/fuzz/files.json"), text) {
            assert!(e.to_string().contains("/fuzz/files.json"), "error does not name the file: {e}");
        }
    }
});
