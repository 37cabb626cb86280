//! AAF decision core.
//!
//! Domain types ([`action`]), the Rego policy evaluator over `regorus` ([`policy`]) and its
//! built-in functions, the network classification used by SSRF protection ([`net`]), sensitive
//! data detectors ([`detect`]), token handling ([`secrets`]) and the audit chain format
//! ([`canonical`], [`audit`]).
//!
//! Architecture invariant: this crate does no I/O (no files, sockets, clocks are passed in
//! where they matter), so every decision can be tested with plain data and cannot fail for
//! I/O reasons.

#![forbid(unsafe_code)]

pub mod action;
pub mod approval;
pub mod audit;
pub mod budget;
pub mod canonical;
pub mod compliance;
pub mod detect;
pub mod evidence;
pub mod identity;
pub mod kill_switch;
pub mod net;
pub mod policy;
pub mod rate_limit;
pub mod redact;
pub mod retention;
pub mod risk;
pub mod secrets;
