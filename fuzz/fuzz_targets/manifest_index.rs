#![no_main]
//! libFuzzer target: see berth_fuzz::manifest_index.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::manifest_index(data));
