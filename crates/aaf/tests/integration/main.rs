//! End-to-end tests: the real server on port 0, a real SQLite file in a temporary data
//! directory, a loopback upstream, and the real `aaf` binary for the offline commands.
//!
//! All integration tests are one test binary (`mod common` is the shared harness).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod actions;
mod alerts;
mod approvals;
mod audit;
mod binary;
mod budgets;
mod compliance;
mod connector;
mod contract;
mod credentials;
mod detection;
mod encryption;
mod evidence;
mod fail_closed;
mod keys;
mod kill_switch;
mod limits;
mod mcp;
mod mcp_bench;
mod mcp_node;
mod mcp_python;
mod mcp_servers;
mod metrics;
mod multinode;
mod policies;
mod rate_limits;
mod rbac;
mod requests;
mod signatures;
mod tour;
mod webhooks;
