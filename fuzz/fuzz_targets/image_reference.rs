#![no_main]
//! libFuzzer target: see berth_fuzz::image_reference.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::image_reference(data));
