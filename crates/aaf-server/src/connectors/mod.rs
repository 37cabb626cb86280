//! Connectors: the code that carries out an allowed action against the outside world.
//!
//! A connector runs only after the decision path allowed the action; it still enforces its own
//! safety rules (for the HTTP connector: SSRF protection) whatever the policy said, because a
//! policy is configuration and can be wrong.
//!
//! - [`http`]: the `http_proxy` tool (alias `http`), an HTTP(S) client with SSRF protection
//!   (OWASP SSRF Prevention Cheat Sheet): scheme and host checks, DNS pinning, manual redirect
//!   handling, response size and time limits.

pub mod http;
