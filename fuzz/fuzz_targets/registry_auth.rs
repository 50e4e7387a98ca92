#![no_main]
//! libFuzzer target: see berth_fuzz::registry_auth.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::registry_auth(data));
