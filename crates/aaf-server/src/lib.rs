//! AAF server: the axum HTTP API, authentication, the connectors, configuration and the
//! serve loop.
//!
//! Architecture invariants:
//! - Only this crate knows HTTP and the JSON wire format ([`api`], [`error`]).
//! - A connector runs only an [`aaf_core::action::AllowedAction`], which only an allow
//!   decision can make.
//! - Nothing is executed or acknowledged before its audit event is committed.
//! - Every action takes one path, [`pipeline`], whichever door it came in by.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod app;
pub mod approvals;
pub mod auth;
pub mod clock;
pub mod config;
pub mod connections;
pub mod connectors;
pub mod encryption;
pub mod error;
pub mod evidence;
pub mod key_cache;
pub mod mcp;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod policies;
pub mod policy_loader;
pub mod rbac;
pub mod retention;
pub mod runtime;
pub mod secrets;
pub mod telemetry;
pub mod time;
pub mod webhooks;
