#![no_main]
// See redeemd::fuzzing::pay_headers for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redeemd::fuzzing::pay_headers(data));
