//! libFuzzer entry point of the `policy_input` target; the target itself is
//! [`aaf_fuzz::policy_input`] (shared with the corpus replay).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aaf_fuzz::policy_input(data));
