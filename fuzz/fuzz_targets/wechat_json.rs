#![no_main]
// See redeemd::fuzzing::wechat_json for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| redeemd::fuzzing::wechat_json(data));
