//! libFuzzer entry point of the `url_guard` target; the target itself is
//! [`aaf_fuzz::url_guard`] (shared with the corpus replay).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aaf_fuzz::url_guard(data));
