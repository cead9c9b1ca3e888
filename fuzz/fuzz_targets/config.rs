#![no_main]
// See redeemd::fuzzing::config for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redeemd::fuzzing::config(data));
