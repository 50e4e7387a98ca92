#![no_main]
//! libFuzzer target: see berth_fuzz::word_expansion.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::word_expansion(data));
