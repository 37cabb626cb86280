//! libFuzzer entry point of the `rego_load` target; the target itself is
//! [`aaf_fuzz::rego_load`] (shared with the corpus replay).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aaf_fuzz::rego_load(data));
