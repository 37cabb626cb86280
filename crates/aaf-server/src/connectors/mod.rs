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
    /// The MCP connector: tools, prompts and resources of upstream MCP servers
    /// ([`crate::mcp::Upstreams`]).
    Mcp,
}

/// The prefix of the tools the MCP connector runs (`mcp:<server>/...`).
pub const MCP_PREFIX: &str = "mcp:";

/// What an MCP action asks of its server: by its tool and operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpTarget<'a> {
    /// `mcp:<server>/<tool>`, operation `call`: call the tool with the params.
    Tool {
        /// The server.
        server: &'a str,
        /// The tool's name at the server.
        tool: &'a str,
    },
    /// `mcp:<server>/prompts/<prompt>`, operation `get`: get the prompt with the params.
    Prompt {
        /// The server.
        server: &'a str,
        /// The prompt's name at the server.
        prompt: &'a str,
    },
    /// `mcp:<server>/resources/read`, operation `read`: read `params.uri`.
    Resource {
        /// The server.
        server: &'a str,
    },
}

/// What the MCP action `tool`/`operation` asks, or `None` when it is not one. The operation
/// tells a tool whose name holds a `/` (the MCP specification advises against it) from a
/// prompt or resource.
pub fn mcp_target<'a>(tool: &'a str, operation: &str) -> Option<McpTarget<'a>> {
    let (server, rest) = tool
        .strip_prefix(MCP_PREFIX)?
        .split_once('/')
        .filter(|(server, rest)| !server.is_empty() && !rest.is_empty())?;
    match operation {
        "call" => Some(McpTarget::Tool { server, tool: rest }),
        "get" => rest
            .strip_prefix("prompts/")
            .filter(|p| !p.is_empty())
            .map(|prompt| McpTarget::Prompt { server, prompt }),
        "read" => (rest == "resources/read").then_some(McpTarget::Resource { server }),
        _ => None,
    }
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
            // Boxed: its future (listings, pins) is large, and the decision path of every
            // other action should not carry its size.
            Connector::Mcp => Box::pin(mcp_preflight(state, org_id, request)).await,
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
                let target = mcp_parts(request)?;
                let (McpTarget::Tool { server, .. }
                | McpTarget::Prompt { server, .. }
                | McpTarget::Resource { server }) = target;
                let upstream = state
                    .mcp
                    .server(org_id, server)
                    .await
                    .map_err(upstream_error)?;
                let executed = match target {
                    McpTarget::Tool { tool, .. } => {
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
                    McpTarget::Prompt { prompt, .. } => {
                        let result = state
                            .mcp
                            .get_prompt(&upstream, prompt, request.params.clone())
                            .await
                            .map_err(upstream_error)?;
                        Ok(Executed {
                            result,
                            summary: serde_json::json!({ "server": server, "prompt": prompt }),
                        })
                    }
                    McpTarget::Resource { .. } => {
                        let uri = resource_uri(request)?;
                        let result = state
                            .mcp
                            .read_resource(&upstream, uri)
                            .await
                            .map_err(upstream_error)?;
                        Ok(Executed {
                            result,
                            summary: serde_json::json!({ "server": server, "uri": uri }),
                        })
                    }
                }?;
                let size = serde_json::to_vec(&executed.result).map_or(usize::MAX, |v| v.len());
                let limit = state.config.mcp.max_result_bytes;
                if size > limit {
                    return Err(ConnectorError::Upstream(format!(
                        "the MCP server's answer is {size} bytes of JSON, more than mcp.max_result_bytes ({limit})"
                    )));
                }
                Ok(executed)
            }
        }
    }
}

/// The MCP connector's preflight: the server is the organisation's; for a tool, the server
/// has it and its definition is the pinned one.
async fn mcp_preflight(
    state: &AppState,
    org_id: &str,
    request: &ActionRequest,
) -> Result<(), ConnectorError> {
    let (server, tool) = match mcp_parts(request)? {
        McpTarget::Tool { server, tool } => (server, tool),
        McpTarget::Prompt { server, .. } => {
            state
                .mcp
                .server(org_id, server)
                .await
                .map_err(upstream_error)?;
            return Ok(());
        }
        McpTarget::Resource { server } => {
            state
                .mcp
                .server(org_id, server)
                .await
                .map_err(upstream_error)?;
            return resource_uri(request).map(|_| ());
        }
    };
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
        Ok(crate::mcp::pins::PinStatus::Flagged { current }) => Err(ConnectorError::Refused(
            crate::mcp::pins::flagged_reason(server, tool, &current),
        )),
        Ok(crate::mcp::pins::PinStatus::Changed { current, .. }) => Err(ConnectorError::Refused(
            crate::mcp::pins::changed_reason(server, tool, &current),
        )),
        Err(e) => Err(ConnectorError::Refused(format!("mcp_tool_pin: {e}"))),
    }
}

/// What an MCP action asks.
fn mcp_parts(request: &ActionRequest) -> Result<McpTarget<'_>, ConnectorError> {
    mcp_target(&request.tool, &request.operation).ok_or_else(|| {
        ConnectorError::InvalidRequest(format!(
            "{:?} with operation {:?} is not an MCP action: mcp:<server>/<tool> (call), mcp:<server>/prompts/<prompt> (get) or mcp:<server>/resources/read (read)",
            request.tool, request.operation
        ))
    })
}

/// The `params.uri` of a resource read.
fn resource_uri(request: &ActionRequest) -> Result<&str, ConnectorError> {
    request
        .params
        .get("uri")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            ConnectorError::InvalidRequest(
                "params.uri (a string) is required to read a resource".into(),
            )
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
