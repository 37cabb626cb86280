//! The MCP endpoint's OAuth 2.0 protected-resource metadata (RFC 9728), which MCP clients
//! read to learn how to present credentials to `/mcp` (docs/mcp.md).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;

/// OAuth 2.0 protected-resource metadata (RFC 9728 section 2).
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceMetadata {
    /// The resource: the URL of `/mcp` as agents reach it.
    pub resource: String,
    /// How the token is presented: only in the `Authorization` header (RFC 6750).
    pub bearer_methods_supported: Vec<&'static str>,
    /// A name for people.
    pub resource_name: &'static str,
}

/// The protected-resource metadata of `/mcp`: the token is an AAF agent key, sent as a
/// Bearer token in the `Authorization` header. It names no authorization server
/// (`authorization_servers` is left out): agent keys are issued by the organisation's admins
/// (`POST /v1/agents`), not through OAuth.
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/mcp", tag = "operations",
    responses((status = 200, description = "the metadata (RFC 9728)", body = ResourceMetadata)))]
pub async fn protected_resource_metadata(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Json<ResourceMetadata> {
    Json(ResourceMetadata {
        resource: crate::mcp::resource_url(&state, &headers),
        bearer_methods_supported: vec!["header"],
        resource_name: "Agent Action Firewall MCP gateway",
    })
}
