#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| comity_fuzz::attachment_manifest_decode(data));
