//! Users, agent keys and the caller's identity: `/v1/users`, `/v1/agents/{id}/keys...`,
//! `/v1/agents/{id}`, `/v1/whoami`, `/v1/stats`.
//!
//! Who may call each handler is decided before it runs ([`crate::rbac::PERMISSIONS`]);
//! handlers only scope every lookup to the caller's organisation, so another organisation's
//! id answers 404.

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

use aaf_core::identity::Role;
use aaf_core::secrets::{
    generate_token, hash_token, visible_prefix, ADMIN_TOKEN_PREFIX, AGENT_KEY_PREFIX,
};
use aaf_store::units::{self, KeySpec};
use aaf_store::{AgentKey, StoreError, User};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{json_body, optional_json, Object};
use super::MAX_NAME_CHARS;
use crate::app::AppState;
use crate::auth::{AnyAuth, Principal, UserAuth};
use crate::error::{ApiError, ErrorBody};
use crate::time::{format_rfc3339, now_rfc3339};

/// Longest tool name in a key's scope, in characters.
const MAX_TOOL_CHARS: usize = 256;
/// Most tools in a key's scope.
const MAX_TOOLS: usize = 100;

/// A trimmed name of 1 to 256 characters without control characters (users, agents).
pub fn valid_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::field(
            field,
            format!("must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(name.to_string())
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    role.parse::<Role>()
        .map_err(|e| ApiError::field("role", e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Users

/// `POST /v1/users` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    /// Unique among the organisation's current users, 1 to 256 characters.
    pub name: String,
    /// `admin`, `approver`, `auditor` or `viewer`.
    pub role: String,
}

/// `PATCH /v1/users/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    /// The new role: `admin`, `approver`, `auditor` or `viewer`.
    pub role: String,
}

/// A user as shown (never with tokens).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// User id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id,
            name: u.name,
            role: u.role,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// A new user with their personal access token, shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    /// The user.
    #[serde(flatten)]
    pub user: UserView,
    /// The personal access token (`aaf_at_...`); store it now, it cannot be shown again.
    pub token: String,
    /// The first characters of the token.
    pub token_prefix: String,
}

/// `GET /v1/users` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Current users, oldest first.
    pub users: Vec<UserView>,
}

/// Creates a user with a role and returns their personal access token once.
#[utoipa::path(post, path = "/v1/users", tag = "users",
    request_body = CreateUserBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "user created", body = CreatedUser),
        (status = 400, description = "malformed body; `field` names the problem", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "a current user has this name", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn create_user(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<CreateUserBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let body = json_body(&state, body)?;
    let name = valid_name("name", &body.name)?;
    let role = parse_role(&body.role)?;
    let token = generate_token(ADMIN_TOKEN_PREFIX);
    let prefix = visible_prefix(&token);
    let (user, _, unit) = units::new_user(
        &admin.org.id,
        &name,
        role.as_str(),
        &hash_token(&token),
        &prefix,
        &format!("user:{}", admin.user_id),
        &now_rfc3339(),
    );
    state.store.commit(&[unit]).await.map_err(|e| match e {
        StoreError::Conflict(_) => {
            ApiError::Conflict(format!("a user named {name:?} already exists"))
        }
        other => other.into(),
    })?;
    tracing::info!(user_id = %user.id, role = %role, "user created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: user.into(),
            token,
            token_prefix: prefix,
        }),
    ))
}

/// Lists the organisation's current users.
#[utoipa::path(get, path = "/v1/users", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the users", body = UserList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn list_users(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
) -> Result<Json<UserList>, ApiError> {
    let users = state.store.list_users(&admin.org.id).await?;
    Ok(Json(UserList {
        users: users.into_iter().map(UserView::from).collect(),
    }))
}

async fn find_user(state: &AppState, org_id: &str, id: &str) -> Result<User, ApiError> {
    state
        .store
        .get_user(org_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {id}")))
}

/// One user of the organisation.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "user id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the user", body = UserView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such user in the organisation", body = ErrorBody),
    ))]
pub async fn get_user(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(find_user(&state, &admin.org.id, &id).await?.into()))
}

/// Changes a user's role. The organisation's last admin cannot be demoted (409).
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "user id")),
    request_body = UpdateUserBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the updated user", body = UserView),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such user in the organisation", body = ErrorBody),
        (status = 409, description = "it would leave the organisation without an admin", body = ErrorBody),
    ))]
pub async fn update_user(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
    body: Result<Json<Object<UpdateUserBody>>, JsonRejection>,
) -> Result<Json<UserView>, ApiError> {
    let body = json_body(&state, body)?;
    let role = parse_role(&body.role)?;
    let user = find_user(&state, &admin.org.id, &id).await?;
    if user.role != role.as_str() {
        let unit = units::set_user_role(
            &admin.org.id,
            &id,
            &user.role,
            role.as_str(),
            &format!("user:{}", admin.user_id),
            &now_rfc3339(),
        );
        state.store.commit(&[unit]).await?;
        tracing::info!(user_id = %id, role = %role, "user role changed");
    }
    Ok(Json(find_user(&state, &admin.org.id, &id).await?.into()))
}

/// Deletes a user; their tokens stop working with the next request. The organisation's
/// last admin cannot be deleted (409).
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users",
    params(("id" = String, Path, description = "user id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such user in the organisation", body = ErrorBody),
        (status = 409, description = "it would leave the organisation without an admin", body = ErrorBody),
    ))]
pub async fn delete_user(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let user = find_user(&state, &admin.org.id, &id).await?;
    let unit = units::delete_user(
        &admin.org.id,
        &id,
        &user.name,
        &format!("user:{}", admin.user_id),
        &now_rfc3339(),
    );
    state.store.commit(&[unit]).await?;
    tracing::info!(user_id = %id, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Agents and their keys

/// An agent key as listed: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Key id.
    pub id: String,
    /// The first characters of the key.
    pub prefix: String,
    /// RFC 3339.
    pub created_at: String,
    /// When the key stops working (RFC 3339), or null for never.
    pub expires_at: Option<String>,
    /// When it was revoked (RFC 3339), or null.
    pub revoked_at: Option<String>,
    /// When it last authenticated a request (RFC 3339, to about a second), or null.
    pub last_used_at: Option<String>,
    /// Tools the key may submit; null = every tool.
    pub tools: Option<Vec<String>>,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
}

impl KeyView {
    fn new(k: AgentKey, now: &str) -> KeyView {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.as_deref().is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        KeyView {
            id: k.id,
            prefix: k.prefix,
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            tools: k.tools,
            status,
        }
    }
}

/// A new key, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// Key id.
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// The API key (`aaf_ak_...`); store it now, it cannot be shown again.
    pub api_key: String,
    /// The first characters of the key.
    pub prefix: String,
    /// When the key stops working (RFC 3339), or null for never.
    pub expires_at: Option<String>,
    /// Tools the key may submit; null = every tool.
    pub tools: Option<Vec<String>>,
    /// For a rotation: the replaced key and when it stops working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated: Option<RotatedKey>,
}

/// The key a rotation replaced.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    /// The old key's id.
    pub key_id: String,
    /// When it stops working (RFC 3339): the end of the grace period, or sooner if it was
    /// due to expire sooner.
    pub expires_at: String,
}

/// `GET /v1/agents/{id}/keys` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// The agent's keys, oldest first, revoked and expired ones included.
    pub keys: Vec<KeyView>,
}

/// `POST /v1/agents/{id}/keys` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// Lifetime in seconds (1 to `auth.max_agent_key_ttl_seconds`); default
    /// `auth.agent_key_ttl_seconds` (72 hours).
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Tools the key may submit (1 to 100 tool names, each matched exactly against an
    /// action's `tool`; `.` and `*` are refused); omit for every tool.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
}

/// `POST /v1/agents/{id}/keys/rotate` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyBody {
    /// How long the old key keeps working, seconds (0 to `auth.max_rotation_grace_seconds`);
    /// default `auth.rotation_grace_seconds` (3600).
    #[serde(default)]
    pub grace_seconds: Option<u64>,
    /// The key to replace; may be omitted when the agent has exactly one active key.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The new key's lifetime in seconds; default `auth.agent_key_ttl_seconds`.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// The new key's tools; default: the old key's.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
}

/// The one form a key scope entry takes, as 400 answers name it.
const SCOPE_FORM: &str = "a tool name exactly as actions send it in `tool` (e.g. \"knowledge_base\" or \"http_proxy\"), matched exactly; `tool.operation` and wildcards are not scopes (omit `tools` for every tool, and limit operations with a policy)";

/// Checks a key's tool list (its scope): 1 to 100 distinct tool names of 1 to 256
/// characters, without surrounding spaces, control characters, `.` or `*`.
///
/// A scope entry matches an action whose `tool` is exactly that name. Entries that look like
/// another form (`kb.search` for tool `kb`, operation `search`; `*` or `kb*` wildcards) are
/// refused rather than stored, because they would match no action and every call of the key
/// would be denied.
///
/// # Errors
///
/// 400 naming the field (`tools` or `tools[i]`) and the accepted form.
pub fn valid_tools(tools: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(tools) = tools else {
        return Ok(None);
    };
    if tools.is_empty() || tools.len() > MAX_TOOLS {
        return Err(ApiError::field(
            "tools",
            format!("must name 1 to {MAX_TOOLS} tools; omit it for a key that may use every tool"),
        ));
    }
    let mut seen = HashSet::new();
    for (i, t) in tools.iter().enumerate() {
        if t.trim().is_empty() || t.chars().count() > MAX_TOOL_CHARS || t.trim() != t {
            return Err(ApiError::field(
                format!("tools[{i}]"),
                format!("must be 1 to {MAX_TOOL_CHARS} characters without surrounding spaces"),
            ));
        }
        if t.chars().any(char::is_control) {
            return Err(ApiError::field(
                format!("tools[{i}]"),
                format!("must not contain control characters; a scope entry is {SCOPE_FORM}"),
            ));
        }
        if t.contains('.') || t.contains('*') {
            return Err(ApiError::field(
                format!("tools[{i}]"),
                format!("{t:?} is not a tool name: a scope entry is {SCOPE_FORM}"),
            ));
        }
        if !seen.insert(t.as_str()) {
            return Err(ApiError::field(
                format!("tools[{i}]"),
                format!("{t:?} is listed twice"),
            ));
        }
    }
    Ok(Some(tools))
}

/// The expiry of a new key: `expires_in` seconds from now (checked against the maximum),
/// else the configured default (none when it is 0).
pub fn key_expiry(state: &AppState, expires_in: Option<u64>) -> Result<Option<String>, ApiError> {
    let auth = &state.config.auth;
    let seconds = match expires_in {
        Some(s) if s == 0 || s > auth.max_agent_key_ttl_seconds => {
            return Err(ApiError::field(
                "expires_in",
                format!("must be 1 to {} seconds", auth.max_agent_key_ttl_seconds),
            ))
        }
        Some(s) => s,
        None if auth.agent_key_ttl_seconds == 0 => return Ok(None),
        None => auth.agent_key_ttl_seconds,
    };
    Ok(Some(seconds_from_now(seconds)))
}

fn seconds_from_now(seconds: u64) -> String {
    let now = time::OffsetDateTime::now_utc();
    format_rfc3339(now.saturating_add(time::Duration::seconds(
        i64::try_from(seconds).unwrap_or(i64::MAX),
    )))
}

/// A new key secret and its stored form.
pub fn new_key_spec(expires_at: Option<String>, tools: Option<Vec<String>>) -> (String, KeySpec) {
    let key = generate_token(AGENT_KEY_PREFIX);
    let spec = KeySpec {
        key_hash: hash_token(&key),
        prefix: visible_prefix(&key),
        expires_at,
        tools,
    };
    (key, spec)
}

async fn find_agent(
    state: &AppState,
    org_id: &str,
    id: &str,
) -> Result<aaf_store::Agent, ApiError> {
    state
        .store
        .get_agent(org_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no agent {id}")))
}

/// One agent of the organisation.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the agent", body = super::AgentView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the role may not read agents", body = ErrorBody),
        (status = 404, description = "no such agent in the organisation", body = ErrorBody),
    ))]
pub async fn get_agent(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
) -> Result<Json<super::AgentView>, ApiError> {
    Ok(Json(find_agent(&state, &user.org.id, &id).await?.into()))
}

/// Creates another key for an agent, optionally limited to some tools.
#[utoipa::path(post, path = "/v1/agents/{id}/keys", tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    request_body(content = Option<CreateKeyBody>, description = "optional"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "the new key, shown once", body = CreatedKey),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such agent in the organisation", body = ErrorBody),
    ))]
pub async fn create_key(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let body: CreateKeyBody = optional_json(&state, &headers, body)?;
    let tools = valid_tools(body.tools)?;
    let expires_at = key_expiry(&state, body.expires_in)?;
    find_agent(&state, &admin.org.id, &agent_id).await?;
    let (secret, spec) = new_key_spec(expires_at, tools);
    let (key, unit) = units::new_agent_key(
        &admin.org.id,
        &agent_id,
        &spec,
        &format!("user:{}", admin.user_id),
        &now_rfc3339(),
    );
    state.store.commit(&[unit]).await?;
    tracing::info!(agent_id = %agent_id, key_id = %key.id, "agent key created");
    Ok((StatusCode::CREATED, Json(created_key(key, secret, None))))
}

fn created_key(key: AgentKey, secret: String, rotated: Option<RotatedKey>) -> CreatedKey {
    CreatedKey {
        id: key.id,
        agent_id: key.agent_id,
        api_key: secret,
        prefix: key.prefix,
        expires_at: key.expires_at,
        tools: key.tools,
        rotated,
    }
}

/// Lists an agent's keys (never the secrets).
#[utoipa::path(get, path = "/v1/agents/{id}/keys", tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the keys", body = KeyList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "neither admin nor auditor", body = ErrorBody),
        (status = 404, description = "no such agent in the organisation", body = ErrorBody),
    ))]
pub async fn list_keys(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(agent_id): Path<String>,
) -> Result<Json<KeyList>, ApiError> {
    find_agent(&state, &user.org.id, &agent_id).await?;
    let now = now_rfc3339();
    let keys = state.store.list_agent_keys(&user.org.id, &agent_id).await?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(|k| KeyView::new(k, &now)).collect(),
    }))
}

/// Rotates a key: returns a new key; the old one keeps working until the grace period ends.
#[utoipa::path(post, path = "/v1/agents/{id}/keys/rotate", tag = "agents",
    params(("id" = String, Path, description = "agent id")),
    request_body(content = Option<RotateKeyBody>, description = "optional"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "the new key, shown once, and the old key's end", body = CreatedKey),
        (status = 400, description = "malformed body, or several active keys and no key_id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such agent, or no such active key", body = ErrorBody),
    ))]
pub async fn rotate_key(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(agent_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let body: RotateKeyBody = optional_json(&state, &headers, body)?;
    let auth = &state.config.auth;
    let grace = body.grace_seconds.unwrap_or(auth.rotation_grace_seconds);
    if grace > auth.max_rotation_grace_seconds {
        return Err(ApiError::field(
            "grace_seconds",
            format!("must be 0 to {} seconds", auth.max_rotation_grace_seconds),
        ));
    }
    let tools = valid_tools(body.tools)?;
    let expires_at = key_expiry(&state, body.expires_in)?;
    find_agent(&state, &admin.org.id, &agent_id).await?;
    let now = now_rfc3339();
    let active: Vec<AgentKey> = state
        .store
        .list_agent_keys(&admin.org.id, &agent_id)
        .await?
        .into_iter()
        .filter(|k| {
            k.revoked_at.is_none() && k.expires_at.as_deref().is_none_or(|e| e > now.as_str())
        })
        .collect();
    let old = match &body.key_id {
        Some(id) => active
            .iter()
            .find(|k| &k.id == id)
            .ok_or_else(|| ApiError::NotFound(format!("no active key {id} of agent {agent_id}")))?,
        None => match active.as_slice() {
            [only] => only,
            [] => {
                return Err(ApiError::NotFound(format!(
                    "agent {agent_id} has no active key to rotate; create one with POST /v1/agents/{agent_id}/keys"
                )))
            }
            many => {
                return Err(ApiError::field(
                    "key_id",
                    format!("the agent has {} active keys; name the one to rotate", many.len()),
                ))
            }
        },
    };
    let grace_end = seconds_from_now(grace);
    let old_end = match &old.expires_at {
        Some(e) if e.as_str() < grace_end.as_str() => e.clone(),
        _ => grace_end,
    };
    let (secret, spec) = new_key_spec(expires_at, tools.or_else(|| old.tools.clone()));
    let (key, unit) = units::rotate_agent_key(
        &admin.org.id,
        &agent_id,
        &old.id,
        &old_end,
        &spec,
        &format!("user:{}", admin.user_id),
        &now,
    );
    state.store.commit(&[unit]).await?;
    state.key_cache.clear();
    tracing::info!(agent_id = %agent_id, old_key_id = %old.id, key_id = %key.id, "agent key rotated");
    let rotated = RotatedKey {
        key_id: old.id.clone(),
        expires_at: old_end,
    };
    Ok((
        StatusCode::CREATED,
        Json(created_key(key, secret, Some(rotated))),
    ))
}

/// Revokes a key: it is refused from the next request on (other nodes within
/// `auth.key_cache_ttl_ms`).
#[utoipa::path(post, path = "/v1/agents/{id}/keys/{key_id}/revoke", tag = "agents",
    params(
        ("id" = String, Path, description = "agent id"),
        ("key_id" = String, Path, description = "key id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the revoked key", body = KeyView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such agent or key in the organisation", body = ErrorBody),
        (status = 409, description = "the key was already revoked", body = ErrorBody),
    ))]
pub async fn revoke_key(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path((agent_id, key_id)): Path<(String, String)>,
) -> Result<Json<KeyView>, ApiError> {
    let now = now_rfc3339();
    let unit = units::revoke_agent_key(
        &admin.org.id,
        &agent_id,
        &key_id,
        &format!("user:{}", admin.user_id),
        &now,
    );
    state.store.commit(&[unit]).await.map_err(|e| match e {
        StoreError::NotFound(_) => {
            ApiError::NotFound(format!("no key {key_id} of agent {agent_id}"))
        }
        other => other.into(),
    })?;
    state.key_cache.clear();
    tracing::info!(agent_id = %agent_id, key_id = %key_id, "agent key revoked");
    let key = state
        .store
        .list_agent_keys(&admin.org.id, &agent_id)
        .await?
        .into_iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| ApiError::NotFound(format!("no key {key_id} of agent {agent_id}")))?;
    Ok(Json(KeyView::new(key, &now)))
}

// ---------------------------------------------------------------------------------------------
// Who am I, stats

/// The authenticated caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// `user` or `agent`.
    pub kind: &'static str,
    /// The organisation's id.
    pub org_id: String,
    /// The organisation's name.
    pub org_name: String,
    /// The user's or agent's id.
    pub id: String,
    /// The user's or agent's name.
    pub name: String,
    /// The user's role (users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The key in use (agents only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key's tools (agents only; null = every tool).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// When the key expires (agents only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Who the credentials belong to.
#[utoipa::path(get, path = "/v1/whoami", tag = "operations",
    security(("bearer" = []), ("agent_key" = [])),
    responses(
        (status = 200, description = "the caller", body = WhoAmI),
        (status = 401, description = "missing or invalid credentials", body = ErrorBody),
    ))]
pub async fn whoami(AnyAuth(principal): AnyAuth) -> Json<WhoAmI> {
    Json(match principal {
        Principal::User(u) => WhoAmI {
            kind: "user",
            org_id: u.org.id,
            org_name: u.org.name,
            id: u.user_id,
            name: u.name,
            role: Some(u.role),
            key_id: None,
            tools: None,
            expires_at: None,
        },
        Principal::Agent(a) => WhoAmI {
            kind: "agent",
            org_id: a.org.id,
            org_name: a.org.name,
            id: a.agent.id,
            name: a.agent.name,
            role: None,
            key_id: Some(a.key_id),
            tools: a.tools,
            expires_at: a.expires_at,
        },
    })
}

/// Counts for the dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Registered agents.
    pub agents: u64,
    /// Current users.
    pub users: u64,
    /// Actions by decision.
    pub actions_by_decision: BTreeMap<String, u64>,
    /// Actions by status.
    pub actions_by_status: BTreeMap<String, u64>,
    /// The revision of the organisation's policy set on this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_revision: Option<String>,
    /// This node's decision cache of that set: `{enabled, disabled_reason?, hits, misses,
    /// bypassed, hit_ratio, entries}`; with `shared: true` when the set is the policy
    /// directory's, shared by every organisation without managed policies, packs or data
    /// (the counters are then theirs together).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub policy_cache: Option<Value>,
}

/// Basic statistics of the caller's organisation.
#[utoipa::path(get, path = "/v1/stats", tag = "operations",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "counts", body = Stats),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "agents may not read statistics", body = ErrorBody),
    ))]
pub async fn stats(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<Stats>, ApiError> {
    let s = state.store.org_stats(&user.org.id).await?;
    let policies = crate::policies::for_org(&state, &user.org.id).await.ok();
    let policy_cache = policies.as_ref().map(|p| {
        let mut cache = serde_json::to_value(p.set.cache_stats()).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut cache {
            map.insert("shared".into(), Value::from(p.generation == 0));
        }
        cache
    });
    Ok(Json(Stats {
        agents: s.agents,
        users: s.users,
        actions_by_decision: s.actions_by_decision,
        actions_by_status: s.actions_by_status,
        policy_revision: policies.map(|p| p.set.revision().to_string()),
        policy_cache,
    }))
}
