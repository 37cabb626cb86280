//! The MCP gateway (docs/mcp.md): AAF between agents that speak the Model Context Protocol
//! and the MCP servers that hold their tools.
//!
//! - [`gateway`]: AAF as an MCP server for agents at `/mcp` (streamable HTTP, rmcp): the
//!   upstreams' tools, namespaced and filtered per agent; every `tools/call` an action
//!   through the pipeline;
//! - [`upstream`]: AAF as the MCP client of the upstream servers (stdio child processes with
//!   a scrubbed environment, restarted after they die; streamable-HTTP servers behind the
//!   SSRF guard), with the credentials AAF holds for them;
//! - [`servers`]: the servers an organisation's admins register (`/v1/mcp/servers`);
//! - [`pins`]: each tool's definition pinned at first sight (rug-pull protection);
//! - [`rejections`]: rejected MCP requests recorded in the audit chain;
//! - [`watch`]: resource subscriptions and list changes relayed from the upstreams to the
//!   agents that watch them.
//!
//! rmcp (the official Rust SDK) serves both sides.

pub mod gateway;
pub mod pins;
pub mod rejections;
pub mod servers;
pub mod upstream;
pub mod watch;

pub use upstream::{Transport, UpstreamDeps, UpstreamError, Upstreams};

use crate::app::AppState;

/// The path of the MCP endpoint.
pub const PATH: &str = "/mcp";

/// The path of its OAuth 2.0 protected-resource metadata (RFC 9728 section 3.1: the
/// well-known prefix inserted before the resource's path).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";

/// The URL of the MCP endpoint as clients know it: `mcp.resource_url` when set, else
/// `http://` and the request's `Host` (behind a proxy that terminates TLS, set
/// `mcp.resource_url`).
pub fn resource_url(state: &AppState, headers: &http::HeaderMap) -> String {
    if let Some(url) = &state.config.mcp.resource_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| state.config.listen.to_string(), str::to_string);
    format!("http://{host}{PATH}")
}

/// The URL of the endpoint's protected-resource metadata.
pub fn metadata_url(state: &AppState, headers: &http::HeaderMap) -> String {
    let resource = resource_url(state, headers);
    match resource.strip_suffix(PATH) {
        Some(base) => format!("{base}{METADATA_PATH}"),
        None => format!("{resource}/.well-known/oauth-protected-resource"),
    }
}

/// An audit event of the organisation's chain that no agent or action is part of (server
/// registrations, tool pins).
pub(crate) fn org_event(
    org_id: &str,
    now: &str,
    event_type: &str,
    data: serde_json::Value,
) -> aaf_store::NewEvent {
    aaf_store::NewEvent {
        org_id: org_id.to_string(),
        ts: now.to_string(),
        agent_id: None,
        action_id: None,
        event_type: event_type.to_string(),
        data,
    }
}
