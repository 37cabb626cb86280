//! Integration tests of the store on real SQLite files: one test binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod identity;
mod lifecycle;
mod python_verifier;
mod tamper;
mod writer;
