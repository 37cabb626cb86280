//! Runtime protection: what stops, limits and watches agents while they run
//! (docs/runtime-protection.md). The pipeline's guards ([`crate::pipeline::guards`]) ask it
//! before any policy is evaluated.
//!
//! - [`control`]: engaging and releasing kill switches, isolating an agent;
//! - [`kill_switch`]: the kill switches in force on this node, kept current across nodes,
//!   and the connector calls in flight they abort.

pub mod control;
pub mod kill_switch;
pub mod rate_limit;

pub use kill_switch::{Refusal, RuntimeRules};
