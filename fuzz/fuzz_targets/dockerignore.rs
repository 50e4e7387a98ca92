#![no_main]
//! libFuzzer target: see berth_fuzz::dockerignore.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::dockerignore(data));
