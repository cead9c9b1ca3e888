#![no_main]
// See redeemd::fuzzing::keyboard for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redeemd::fuzzing::keyboard(data));
