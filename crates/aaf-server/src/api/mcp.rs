//! The MCP gateway's HTTP API (docs/mcp.md): the `/mcp` endpoint's OAuth 2.0
//! protected-resource metadata (RFC 9728), which MCP clients read to learn how to present
//! credentials, and `/v1/mcp/servers`, the organisation's upstream servers and the pinned
//! definitions of their tools.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{json_body, Object};
use crate::app::AppState;
use crate::auth::UserAuth;
use crate::error::{ApiError, ErrorBody};
use crate::mcp::servers::{self, PinView, ServerView};
use crate::mcp::Transport;

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

// ---------------------------------------------------------------------------------------------
// `/v1/mcp/servers`: the organisation's upstream MCP servers and their pinned tools
// (crate::mcp::servers does the work).

/// `POST /v1/mcp/servers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerBody {
    /// 1 to 64 of a-z, 0-9 and -; not the name of a configured server.
    pub name: String,
    /// How AAF reaches it.
    pub transport: Transport,
}

/// `PUT /v1/mcp/servers/{name}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerPatch {
    /// The new settings (replacing the old ones).
    pub transport: Transport,
}

/// The MCP servers the organisation's agents may use.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerList {
    /// By name.
    pub servers: Vec<ServerView>,
}

/// The pinned definitions of a server's tools.
#[derive(Debug, Serialize, ToSchema)]
pub struct PinList {
    /// By tool.
    pub tools: Vec<PinView>,
}

/// `POST /v1/mcp/servers/{name}/tools/{tool}/accept` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// The hash of the changed definition accepted (`pending_hash`), so that a definition
    /// that changed again since it was reviewed is not accepted unseen.
    pub hash: String,
}

/// Registers an upstream MCP server for the organisation.
#[utoipa::path(post, path = "/v1/mcp/servers", tag = "mcp",
    request_body = ServerBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "registered", body = ServerView),
        (status = 400, description = "a bad name or transport (the field is named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "the name is taken, or too many servers", body = ErrorBody),
        (status = 503, description = "not recorded; nothing was registered", body = ErrorBody),
    ))]
pub async fn create_server(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<ServerBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<ServerView>), ApiError> {
    let ServerBody { name, transport } = json_body(&state, body)?;
    let view = servers::create(&state, &admin.org.id, &admin.user_id, &name, transport).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The MCP servers the organisation's agents may use: the configured ones and its own.
#[utoipa::path(get, path = "/v1/mcp/servers", tag = "mcp",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the servers", body = ServerList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not a user", body = ErrorBody),
        (status = 503, description = "the servers could not be read", body = ErrorBody),
    ))]
pub async fn list_servers(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<ServerList>, ApiError> {
    Ok(Json(ServerList {
        servers: servers::list(&state, &user.org.id).await?,
    }))
}

/// One MCP server.
#[utoipa::path(get, path = "/v1/mcp/servers/{name}", tag = "mcp",
    params(("name" = String, Path, description = "server name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the server", body = ServerView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not a user", body = ErrorBody),
        (status = 404, description = "no such server for the organisation", body = ErrorBody),
    ))]
pub async fn get_server(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(name): Path<String>,
) -> Result<Json<ServerView>, ApiError> {
    Ok(Json(servers::get(&state, &user.org.id, &name).await?))
}

/// Replaces a registered server's settings.
#[utoipa::path(put, path = "/v1/mcp/servers/{name}", tag = "mcp",
    params(("name" = String, Path, description = "server name")),
    request_body = ServerPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "changed", body = ServerView),
        (status = 400, description = "a bad transport (the field is named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no server of the organisation by this name", body = ErrorBody),
        (status = 503, description = "not recorded; nothing changed", body = ErrorBody),
    ))]
pub async fn update_server(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(name): Path<String>,
    body: Result<Json<Object<ServerPatch>>, JsonRejection>,
) -> Result<Json<ServerView>, ApiError> {
    let ServerPatch { transport } = json_body(&state, body)?;
    let view = servers::update(&state, &admin.org.id, &admin.user_id, &name, transport).await?;
    Ok(Json(view))
}

/// Deletes a registered server.
#[utoipa::path(delete, path = "/v1/mcp/servers/{name}", tag = "mcp",
    params(("name" = String, Path, description = "server name")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no server of the organisation by this name", body = ErrorBody),
        (status = 503, description = "not recorded; nothing was deleted", body = ErrorBody),
    ))]
pub async fn delete_server(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    servers::delete(&state, &admin.org.id, &admin.user_id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The pinned definitions of a server's tools, and the changed ones waiting for an admin.
#[utoipa::path(get, path = "/v1/mcp/servers/{name}/tools", tag = "mcp",
    params(("name" = String, Path, description = "server name")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the pins", body = PinList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not a user", body = ErrorBody),
        (status = 404, description = "no such server for the organisation", body = ErrorBody),
    ))]
pub async fn list_pins(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(name): Path<String>,
) -> Result<Json<PinList>, ApiError> {
    Ok(Json(PinList {
        tools: servers::pins(&state, &user.org.id, &name).await?,
    }))
}

/// Accepts a tool's changed definition: it is shown and may be called again.
#[utoipa::path(post, path = "/v1/mcp/servers/{name}/tools/{tool}/accept", tag = "mcp",
    params(("name" = String, Path, description = "server name"),
        ("tool" = String, Path, description = "the tool's name at its server")),
    request_body = AcceptBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "accepted", body = PinView),
        (status = 400, description = "a bad body", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no pin of this tool", body = ErrorBody),
        (status = 409, description = "the hash is not the changed definition waiting", body = ErrorBody),
        (status = 503, description = "not recorded", body = ErrorBody),
    ))]
pub async fn accept_tool(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path((name, tool)): Path<(String, String)>,
    body: Result<Json<Object<AcceptBody>>, JsonRejection>,
) -> Result<Json<PinView>, ApiError> {
    let AcceptBody { hash } = json_body(&state, body)?;
    let view = servers::accept(&state, &admin.org.id, &admin.user_id, &name, &tool, &hash).await?;
    Ok(Json(view))
}
