//! Connectors: the code that carries out an allowed action against the outside world.
//!
//! A connector runs only after the decision path allowed the action; it still enforces its own
//! safety rules (for the HTTP connector: SSRF protection) whatever the policy said, because a
//! policy is configuration and can be wrong.
//!
//! - [`http`]: the `http_proxy` tool (alias `http`), an HTTP(S) client with SSRF protection
//!   (OWASP SSRF Prevention Cheat Sheet): scheme and host checks, DNS pinning, manual redirect
//!   handling, response size and time limits.
//!
//! [`Connector::for_tool`] is the registry: the one place that says which tools a connector
//! runs. Any other tool is decision-only: AAF decides and records it, and the agent runs it.

pub mod http;

use aaf_core::action::{ActionRequest, AllowedAction};
use serde_json::Value;

use crate::app::AppState;
pub use http::ConnectorError;

/// A connector AAF runs actions through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    /// The HTTP connector ([`http::HttpConnector`]).
    Http,
}

/// Every tool a connector runs, and its connector.
pub const TOOLS: &[(&str, Connector)] = &[
    (http::TOOL_NAME, Connector::Http),
    (http::TOOL_ALIAS, Connector::Http),
];

impl Connector {
    /// The connector that runs `tool`, or `None` for a decision-only tool.
    pub fn for_tool(tool: &str) -> Option<Connector> {
        TOOLS
            .iter()
            .find(|(name, _)| *name == tool)
            .map(|(_, connector)| *connector)
    }

    /// The connector's checks that need no I/O (for HTTP: the method, the parameters and
    /// every destination check that needs no DNS), so that the decision path can deny an
    /// action the connector would refuse before anything runs.
    ///
    /// # Errors
    ///
    /// The connector's refusal ([`ConnectorError::InvalidRequest`], [`ConnectorError::Ssrf`]).
    pub fn preflight(
        self,
        state: &AppState,
        request: &ActionRequest,
    ) -> Result<(), ConnectorError> {
        match self {
            Connector::Http => state.http.preflight(&request.operation, &request.params),
        }
    }

    /// Runs an allowed action and returns the connector's result as JSON (for HTTP,
    /// `{status, headers, body, truncated}`) and the few members of it the audit event
    /// records.
    ///
    /// # Errors
    ///
    /// The connector's error; see [`http::HttpConnector::execute`].
    pub async fn execute(
        self,
        state: &AppState,
        action: &AllowedAction,
    ) -> Result<Executed, ConnectorError> {
        match self {
            Connector::Http => {
                let out = state.http.execute(action).await?;
                Ok(Executed {
                    result: serde_json::json!({
                        "status": out.status,
                        "headers": out.headers,
                        "body": out.body,
                        "truncated": out.truncated,
                    }),
                    summary: serde_json::json!({
                        "status": out.status,
                        "truncated": out.truncated,
                    }),
                })
            }
        }
    }
}

/// What a connector returned for an action it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// The result the agent gets and the action record keeps.
    pub result: Value,
    /// What the `action.executed` event records of it (for HTTP: `status`, `truncated`).
    pub summary: Value,
}
