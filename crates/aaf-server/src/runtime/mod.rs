//! Runtime protection: what stops, limits and watches agents while they run
//! (docs/runtime-protection.md). The pipeline's guards ([`crate::pipeline::guards`]) ask it
//! before any policy is evaluated.
//!
//! - [`control`]: engaging and releasing kill switches, isolating an agent, creating and
//!   deleting rate limits;
//! - [`kill_switch`]: the kill switches and rate limits in force on this node
//!   ([`RuntimeRules`]), kept current across nodes, and the connector calls in flight the
//!   switches abort;
//! - [`rate_limit`]: the rate-limit guard and its counters;
//! - [`budget`]: the budget guard (reservations), settlement and `input.budget`;
//! - [`budget_control`]: creating, changing and deleting budgets, setting breakers;
//! - [`breaker`]: circuit breakers, which engage an agent's kill switch by themselves;
//! - [`usage`]: `input.usage`, an agent's recent activity as policies see it;
//! - [`session`]: `input.session`, what came before an action in its session;
//! - [`risk`]: each agent's behavioural profile and `input.risk`, an action's risk score.

pub mod breaker;
pub mod budget;
pub mod budget_control;
pub mod control;
pub mod kill_switch;
pub mod rate_limit;
pub mod risk;
pub mod session;
pub mod usage;

pub use kill_switch::{Refusal, RuntimeRules};
