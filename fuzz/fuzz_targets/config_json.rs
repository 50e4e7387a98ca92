#![no_main]
//! libFuzzer target: see berth_fuzz::config_json.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::config_json(data));
