#![no_main]
// See redeemd::fuzzing::hidpos for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redeemd::fuzzing::hidpos(data));
