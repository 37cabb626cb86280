//! Integration tests of the store on real databases: one test binary, one module per area.
//!
//! Most tests run on both backends (`<test>::sqlite` and `<test>::postgres`, see
//! `common::both_backends!`); PostgreSQL comes from `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), and its tests are skipped with a notice when
//! it cannot be reached unless `REQUIRE_POSTGRES_TESTS=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;
mod alerts;
mod approvals;
mod budgets;
mod encryption;
mod evidence;
mod identity;
mod kill_switches;
mod legacy;
mod lifecycle;
mod mcp;
mod policies;
mod postgres_rls;
mod profiles;
mod python_verifier;
mod tamper;
mod writer;
