#![no_main]
//! libFuzzer target: see berth_fuzz::cni_result.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::cni_result(data));
