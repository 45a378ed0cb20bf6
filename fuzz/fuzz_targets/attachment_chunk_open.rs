#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| comity_fuzz::attachment_chunk_open(data));
