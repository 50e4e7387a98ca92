#![no_main]
//! libFuzzer target: see berth_fuzz::dockerfile.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::dockerfile(data));
