#![no_main]
// See redeemd::fuzzing::framer for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redeemd::fuzzing::framer(data));
