//! Test support, one rule for every crate's tests: how the shared third-party test data
//! (`../shared/testdata` beside the repository, read in place, never copied) is found, and
//! what happens when it is missing.
//!
//! The directory is `$SHARED_TESTDATA_DIR` when set (not an `AAF_*` name: a spawned
//! `aaf serve` would refuse it as an unknown key), else `../shared/testdata` beside the
//! repository. A file that cannot be read fails the test in CI (`CI` set to anything but
//! `false`/`0`, or `REQUIRE_TESTDATA=1`), as the PostgreSQL tests do with
//! `REQUIRE_POSTGRES_TESTS=1`; elsewhere a NOTICE is printed and the caller skips.

// A missing file in CI is a test failure, which is a panic.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};

/// The shared test data directory (see the crate documentation).
pub fn dir() -> PathBuf {
    std::env::var_os("SHARED_TESTDATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"))
}

/// Whether missing shared test data fails the test (CI) rather than skipping it.
pub fn required() -> bool {
    std::env::var("REQUIRE_TESTDATA").as_deref() == Ok("1")
        || std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"))
}

/// Reads `rel` (e.g. `security/ssrf_payloads.txt`) from [`dir`]: `None` (with a NOTICE)
/// when it cannot be read outside CI.
///
/// # Panics
///
/// When it cannot be read and [`required`] holds.
pub fn read(rel: &str) -> Option<String> {
    read_in(&dir(), rel, required())
}

/// [`read`] with the directory and the CI decision given.
///
/// # Panics
///
/// When the file cannot be read and `required` is true.
pub fn read_in(dir: &Path, rel: &str, required: bool) -> Option<String> {
    let path = dir.join(rel);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) => {
            if required {
                panic!(
                    "{} is required in CI (CI or REQUIRE_TESTDATA=1 is set) but cannot be read: {e}; \
                     put the shared test data beside the repository or set SHARED_TESTDATA_DIR",
                    path.display()
                );
            }
            eprintln!(
                "NOTICE: {} cannot be read ({e}); test skipped (set SHARED_TESTDATA_DIR, or CI=true to fail instead)",
                path.display()
            );
            None
        }
    }
}
