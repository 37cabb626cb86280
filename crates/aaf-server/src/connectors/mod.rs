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
//! - MCP: the tools `mcp:<server>/<tool>` of the configured upstream MCP servers
//!   ([`crate::mcp`]), called with the action's params as the arguments.
//!
//! [`Connector::for_tool`] is the registry: the one place that says which tools a connector
//! runs. Any other tool is decision-only: AAF decides and records it, and the agent runs it.

pub mod guarded;
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
    /// The MCP connector: tools of upstream MCP servers ([`crate::mcp::Upstreams`]).
    Mcp,
}

/// The prefix of the tools the MCP connector runs (`mcp:<server>/<tool>`).
pub const MCP_PREFIX: &str = "mcp:";

/// The server and tool of an MCP action tool (`mcp:<server>/<tool>`).
pub fn mcp_target(tool: &str) -> Option<(&str, &str)> {
    tool.strip_prefix(MCP_PREFIX)?
        .split_once('/')
        .filter(|(server, tool)| !server.is_empty() && !tool.is_empty())
}

/// Every tool a connector runs, and its connector.
pub const TOOLS: &[(&str, Connector)] = &[
    (http::TOOL_NAME, Connector::Http),
    (http::TOOL_ALIAS, Connector::Http),
];

impl Connector {
    /// The connector that runs `tool`, or `None` for a decision-only tool.
    pub fn for_tool(tool: &str) -> Option<Connector> {
        if tool.starts_with(MCP_PREFIX) {
            return Some(Connector::Mcp);
        }
        TOOLS
            .iter()
            .find(|(name, _)| *name == tool)
            .map(|(_, connector)| *connector)
    }

    /// The connector's checks before an action is allowed, so that the decision path can
    /// deny an action the connector would refuse before anything runs. For HTTP: the method,
    /// the parameters and every destination check that needs no DNS (no I/O). For MCP: the
    /// server is one of the organisation's, it has the tool, and the tool's definition is
    /// the pinned one ([`crate::mcp::pins`]; this may list the server's tools).
    ///
    /// # Errors
    ///
    /// The connector's refusal ([`ConnectorError::InvalidRequest`], [`ConnectorError::Ssrf`],
    /// [`ConnectorError::Refused`]); for MCP also [`ConnectorError::Upstream`] or
    /// [`ConnectorError::Timeout`] when the server's tools cannot be listed (fail closed).
    pub async fn preflight(
        self,
        state: &AppState,
        org_id: &str,
        request: &ActionRequest,
    ) -> Result<(), ConnectorError> {
        match self {
            Connector::Http => state
                .http
                .preflight_as(org_id, &request.operation, &request.params),
            Connector::Mcp => {
                let (server, tool) = mcp_parts(request)?;
                let upstream = state
                    .mcp
                    .server(org_id, server)
                    .await
                    .map_err(upstream_error)?;
                let Some(current) = state
                    .mcp
                    .tool(&upstream, tool)
                    .await
                    .map_err(upstream_error)?
                else {
                    return Err(ConnectorError::InvalidRequest(format!(
                        "the MCP server {server:?} has no tool {tool:?}"
                    )));
                };
                match crate::mcp::pins::check(state, org_id, server, &current).await {
                    Ok(crate::mcp::pins::PinStatus::Accepted) => Ok(()),
                    Ok(crate::mcp::pins::PinStatus::Changed { current, .. }) => {
                        Err(ConnectorError::Refused(crate::mcp::pins::changed_reason(
                            server, tool, &current,
                        )))
                    }
                    Err(e) => Err(ConnectorError::Refused(format!("mcp_tool_pin: {e}"))),
                }
            }
        }
    }

    /// Runs an allowed action of the organisation and returns the connector's result as
    /// JSON (for HTTP, `{status, headers, body, truncated}`; for MCP, the tool's
    /// `CallToolResult`) and the few members of it the audit event records.
    ///
    /// # Errors
    ///
    /// The connector's error; see [`http::HttpConnector::execute`].
    pub async fn execute(
        self,
        state: &AppState,
        org_id: &str,
        action: &AllowedAction,
    ) -> Result<Executed, ConnectorError> {
        match self {
            Connector::Http => {
                let out = state.http.execute_as(org_id, action).await?;
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
            Connector::Mcp => {
                let request = action.request();
                let (server, tool) = mcp_parts(request)?;
                let upstream = state
                    .mcp
                    .server(org_id, server)
                    .await
                    .map_err(upstream_error)?;
                let result = state
                    .mcp
                    .call_tool(&upstream, tool, request.params.clone())
                    .await
                    .map_err(upstream_error)?;
                let is_error = result
                    .get("isError")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                Ok(Executed {
                    result,
                    summary: serde_json::json!({ "server": server, "tool": tool, "is_error": is_error }),
                })
            }
        }
    }
}

/// The server and tool of an MCP action.
fn mcp_parts(request: &ActionRequest) -> Result<(&str, &str), ConnectorError> {
    mcp_target(&request.tool).ok_or_else(|| {
        ConnectorError::InvalidRequest(format!(
            "{:?} is not an MCP tool (mcp:<server>/<tool>)",
            request.tool
        ))
    })
}

fn upstream_error(e: crate::mcp::UpstreamError) -> ConnectorError {
    match e {
        crate::mcp::UpstreamError::Timeout { ms, .. } => ConnectorError::Timeout(ms),
        crate::mcp::UpstreamError::UnknownServer(_) => {
            ConnectorError::InvalidRequest(e.to_string())
        }
        crate::mcp::UpstreamError::Ssrf(m) => ConnectorError::Ssrf(m),
        other => ConnectorError::Upstream(other.to_string()),
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
