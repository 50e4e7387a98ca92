#![no_main]
//! libFuzzer target: see berth_fuzz::layer_unpack.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::layer_unpack(data));
