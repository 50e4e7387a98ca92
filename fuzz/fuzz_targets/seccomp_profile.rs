#![no_main]
//! libFuzzer target: see berth_fuzz::seccomp_profile.
libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz::seccomp_profile(data));
