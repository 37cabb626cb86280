//! libFuzzer entry point of the `canonical_json` target; the target itself is
//! [`aaf_fuzz::canonical_json`] (shared with the corpus replay).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aaf_fuzz::canonical_json(data));
