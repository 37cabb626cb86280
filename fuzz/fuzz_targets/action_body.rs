//! libFuzzer entry point of the `action_body` target; the target itself is
//! [`aaf_fuzz::action_body`] (shared with the corpus replay).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aaf_fuzz::action_body(data));
