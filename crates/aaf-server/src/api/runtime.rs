//! The runtime-protection API: kill switches (`/v1/kill-switches`), isolating an agent
//! (`POST /v1/agents/{id}/isolate`) and its forensic snapshots. What they do is in
//! [`crate::runtime::control`]; these handlers parse, call it and answer.

use aaf_core::kill_switch::KillSwitch;
use aaf_store::AgentSnapshot;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::body::{json_body, Object};
use crate::app::AppState;
use crate::auth::UserAuth;
use crate::error::{ApiError, ErrorBody};
use crate::runtime::control::{self, Engage};

/// `POST /v1/kill-switches` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngageBody {
    /// What it stops: `org` (every action of your organisation), `agent`, `tool` (every
    /// agent's use of one tool, by exact name) or `agent_tool`.
    pub scope: String,
    /// Nothing for `org`; the agent's id for `agent`; the tool's name for `tool`;
    /// `<agent_id>:<tool>` for `agent_tool`.
    #[serde(default)]
    pub target: Option<String>,
    /// Why (1 to 1000 bytes); every refusal quotes it.
    pub reason: String,
    /// Seconds until it stops applying by itself, 1 to 31536000 (a year); leave it out for
    /// a switch that stays until released.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 31_536_000)]
    pub expires_in: Option<u64>,
}

/// A kill switch.
#[derive(Debug, Serialize, ToSchema)]
pub struct KillSwitchView {
    /// Kill switch id.
    pub id: String,
    /// `org`, `agent`, `tool` or `agent_tool`.
    pub scope: String,
    /// As given when engaged: empty for `org`, the agent id, the tool, or `<agent_id>:<tool>`.
    pub target: String,
    /// The agent, for `agent` and `agent_tool`.
    pub agent_id: Option<String>,
    /// The tool, for `tool` and `agent_tool`.
    pub tool: Option<String>,
    /// Why it was engaged.
    pub reason: String,
    /// `manual`, `isolation` or `circuit_breaker`.
    pub source: String,
    /// `in_force`, `expired` or `released`.
    pub state: String,
    /// RFC 3339.
    pub created_at: String,
    /// The user who engaged it.
    pub created_by: Option<String>,
    /// When it stops applying by itself (RFC 3339), if ever.
    pub expires_at: Option<String>,
    /// When it was released (RFC 3339), if it was.
    pub released_at: Option<String>,
    /// The user who released it.
    pub released_by: Option<String>,
}

impl KillSwitchView {
    fn new(s: KillSwitch, now: &str) -> KillSwitchView {
        KillSwitchView {
            state: control::state_of(&s, now).to_string(),
            target: s.target(),
            scope: s.scope.as_str().to_string(),
            source: s.source.as_str().to_string(),
            id: s.id,
            agent_id: s.agent_id,
            tool: s.tool,
            reason: s.reason,
            created_at: s.created_at,
            created_by: s.created_by,
            expires_at: s.expires_at,
            released_at: s.released_at,
            released_by: s.released_by,
        }
    }
}

/// The organisation's kill switches.
#[derive(Debug, Serialize, ToSchema)]
pub struct KillSwitchList {
    /// Newest first.
    pub kill_switches: Vec<KillSwitchView>,
}

/// `GET /v1/kill-switches` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `unreleased` (the default: in force, and expired but not released) or `all`.
    #[serde(default)]
    pub state: Option<String>,
    /// With `state=all`, at most this many, 1 to 1000; default 100.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Engages a kill switch: from the answer on, actions in its scope are denied on this node
/// before any policy is evaluated (403, reason `kill_switch: ...`), pending approvals in it
/// cannot be approved, approved actions in it are not run, and connector calls in it that
/// are running are aborted; other nodes follow within milliseconds (docs/runtime-protection.md).
#[utoipa::path(post, path = "/v1/kill-switches", tag = "runtime",
    request_body = EngageBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "engaged", body = KillSwitchView),
        (status = 400, description = "bad scope, target, reason or expires_in (the field is named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin or approver", body = ErrorBody),
        (status = 409, description = "too many kill switches in force", body = ErrorBody),
        (status = 503, description = "not recorded; nothing was engaged", body = ErrorBody),
    ))]
pub async fn engage_kill_switch(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    body: Result<Json<Object<EngageBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<KillSwitchView>), ApiError> {
    let body = json_body(&state, body)?;
    let request = Engage {
        scope: &body.scope,
        target: body.target.as_deref(),
        reason: &body.reason,
        expires_in: body.expires_in,
    };
    let switch = control::engage(&state, &user.org.id, &user.user_id, &request).await?;
    let now = state.clock.now_rfc3339();
    Ok((StatusCode::CREATED, Json(KillSwitchView::new(switch, &now))))
}

/// Lists the organisation's kill switches.
#[utoipa::path(get, path = "/v1/kill-switches", tag = "runtime",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the kill switches", body = KillSwitchList),
        (status = 400, description = "bad state or limit", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not a user", body = ErrorBody),
    ))]
pub async fn list_kill_switches(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<KillSwitchList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let all = match query.state.as_deref() {
        None | Some("unreleased") => false,
        Some("all") => true,
        Some(other) => {
            return Err(ApiError::field(
                "state",
                format!("must be unreleased or all, not {other:?}"),
            ))
        }
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be from 1 to 1000"));
    }
    // The unreleased ones are all listed: an operator must see every switch in force.
    let limit = if all { limit } else { u32::MAX };
    let switches = control::list(&state, &user.org.id, all, limit).await?;
    let now = state.clock.now_rfc3339();
    Ok(Json(KillSwitchList {
        kill_switches: switches
            .into_iter()
            .map(|s| KillSwitchView::new(s, &now))
            .collect(),
    }))
}

/// Releases a kill switch (an expired one too, to close it): actions in its scope are
/// decided by the policies again. Keys revoked by an isolation stay revoked.
#[utoipa::path(delete, path = "/v1/kill-switches/{id}", tag = "runtime",
    params(("id" = String, Path, description = "kill switch id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "released", body = KillSwitchView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no unreleased kill switch with this id in the organisation", body = ErrorBody),
        (status = 503, description = "not recorded; nothing was released", body = ErrorBody),
    ))]
pub async fn release_kill_switch(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
) -> Result<Json<KillSwitchView>, ApiError> {
    let switch = control::release(&state, &admin.org.id, &admin.user_id, &id).await?;
    let now = state.clock.now_rfc3339();
    Ok(Json(KillSwitchView::new(switch, &now)))
}

/// `POST /v1/agents/{id}/isolate` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IsolateBody {
    /// Why (1 to 1000 bytes).
    pub reason: String,
}

/// What isolating an agent did.
#[derive(Debug, Serialize, ToSchema)]
pub struct IsolationView {
    /// The agent's kill switch (source `isolation`).
    pub kill_switch: KillSwitchView,
    /// The ids of the keys revoked.
    pub revoked_keys: Vec<String>,
    /// The snapshot kept (`GET /v1/agents/{id}/snapshots`).
    pub snapshot_id: String,
    /// Lowercase hex SHA-256 of the snapshot's stored JSON text, also in the
    /// `agent.isolated` audit event.
    pub snapshot_sha256: String,
}

/// Isolates an agent in one call: engages its kill switch (running calls aborted), revokes
/// every key, and keeps a snapshot of its recent actions and audit events for forensics.
/// Reinstating it takes releasing the switch and a new key.
#[utoipa::path(post, path = "/v1/agents/{id}/isolate", tag = "runtime",
    params(("id" = String, Path, description = "agent id")),
    request_body = IsolateBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "isolated", body = IsolationView),
        (status = 400, description = "bad reason", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such agent in the organisation", body = ErrorBody),
        (status = 409, description = "too many kill switches in force", body = ErrorBody),
        (status = 503, description = "not recorded; nothing changed", body = ErrorBody),
    ))]
pub async fn isolate_agent(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(agent_id): Path<String>,
    body: Result<Json<Object<IsolateBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<IsolationView>), ApiError> {
    let body = json_body(&state, body)?;
    let isolation = control::isolate(
        &state,
        &admin.org.id,
        &admin.user_id,
        &agent_id,
        &body.reason,
    )
    .await?;
    let now = state.clock.now_rfc3339();
    Ok((
        StatusCode::CREATED,
        Json(IsolationView {
            kill_switch: KillSwitchView::new(isolation.kill_switch, &now),
            revoked_keys: isolation.revoked_keys,
            snapshot_id: isolation.snapshot.id,
            snapshot_sha256: isolation.snapshot.sha256,
        }),
    ))
}

/// A forensic snapshot of an isolated agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotView {
    /// Snapshot id.
    pub id: String,
    /// The agent.
    pub agent_id: String,
    /// The kill switch the isolation engaged.
    pub kill_switch_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// The user who isolated the agent.
    pub created_by: Option<String>,
    /// Lowercase hex SHA-256 of the snapshot's JSON text as stored (compact; `snapshot`
    /// below written compactly gives that text).
    pub sha256: String,
    /// `{agent, keys, actions, audit_events, window, taken_at}`: the agent and its keys
    /// (hashes never included), its latest actions (parameters redacted) and audit events,
    /// newest first, found among the organisation's latest 10000 of each, at most 500.
    pub snapshot: Value,
}

impl From<AgentSnapshot> for SnapshotView {
    fn from(s: AgentSnapshot) -> SnapshotView {
        SnapshotView {
            id: s.id,
            agent_id: s.agent_id,
            kill_switch_id: s.kill_switch_id,
            created_at: s.created_at,
            created_by: s.created_by,
            sha256: s.sha256,
            snapshot: s.snapshot,
        }
    }
}

/// The agent's snapshots.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotList {
    /// Newest first.
    pub snapshots: Vec<SnapshotView>,
}

/// The forensic snapshots kept when the agent was isolated.
#[utoipa::path(get, path = "/v1/agents/{id}/snapshots", tag = "runtime",
    params(("id" = String, Path, description = "agent id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the snapshots, newest first", body = SnapshotList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin or auditor", body = ErrorBody),
        (status = 404, description = "no such agent in the organisation", body = ErrorBody),
    ))]
pub async fn list_snapshots(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(agent_id): Path<String>,
) -> Result<Json<SnapshotList>, ApiError> {
    if state
        .store
        .get_agent(&user.org.id, &agent_id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "no agent {agent_id} in your organisation"
        )));
    }
    let snapshots = state
        .store
        .list_agent_snapshots(&user.org.id, &agent_id)
        .await?;
    Ok(Json(SnapshotList {
        snapshots: snapshots.into_iter().map(Into::into).collect(),
    }))
}

/// `POST /v1/rate-limits` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    /// `org`, `agent`, `tool` or `agent_tool`.
    pub scope: String,
    /// Only this agent (`agent`), tool (`tool`) or `<agent_id>:<tool>` (`agent_tool`);
    /// leave it out to limit each agent or tool separately.
    #[serde(default)]
    pub target: Option<String>,
    /// Actions per window, 1 to 1000000.
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub limit: u32,
    /// `second`, `minute` or `hour`.
    pub window: String,
    /// Most actions at once after a quiet period, 1 to 1000000; default `limit`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub burst: Option<u32>,
    /// `enforce` (default: actions over the limit are refused with 429) or `policy`
    /// (counted; the policies see `input.usage.rate_limit_exceeded` and decide).
    #[serde(default)]
    pub mode: Option<String>,
}

/// A rate limit of the organisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitView {
    /// Rate limit id.
    pub id: String,
    /// `org`, `agent`, `tool` or `agent_tool`.
    pub scope: String,
    /// The agent, when the limit is only this agent's.
    pub agent_id: Option<String>,
    /// The tool, when the limit is only this tool's.
    pub tool: Option<String>,
    /// Actions per window.
    pub limit: u32,
    /// `second`, `minute` or `hour`.
    pub window: String,
    /// Most actions at once.
    pub burst: u32,
    /// `enforce` or `policy`.
    pub mode: String,
    /// RFC 3339.
    pub created_at: String,
    /// The user who created it.
    pub created_by: Option<String>,
}

impl RateLimitView {
    fn new(l: aaf_core::rate_limit::RateLimit, meta: aaf_store::RateLimitMeta) -> RateLimitView {
        RateLimitView {
            scope: l.scope.as_str().to_string(),
            window: l.window.as_str().to_string(),
            mode: l.mode.as_str().to_string(),
            id: l.id,
            agent_id: l.agent_id,
            tool: l.tool,
            limit: l.limit,
            burst: l.burst,
            created_at: meta.created_at,
            created_by: meta.created_by,
        }
    }
}

/// The organisation's rate limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitList {
    /// The organisation's own, oldest first.
    pub rate_limits: Vec<RateLimitView>,
    /// The configuration's (`runtime.rate_limits`), which apply to every organisation, each
    /// counted separately; ids `config:<n>`.
    pub defaults: Vec<RateLimitView>,
}

/// Creates a rate limit: from the answer on, actions over it are denied with `429`
/// (`rate_limit: ...`, recorded), on every node (several nodes share one counter).
#[utoipa::path(post, path = "/v1/rate-limits", tag = "runtime",
    request_body = RateLimitBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "created", body = RateLimitView),
        (status = 400, description = "bad scope, target, limit, window, burst or mode (the field is named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "too many rate limits", body = ErrorBody),
        (status = 503, description = "not recorded; nothing was created", body = ErrorBody),
    ))]
pub async fn create_rate_limit(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<RateLimitBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<RateLimitView>), ApiError> {
    let body = json_body(&state, body)?;
    let request = control::NewRateLimit {
        scope: &body.scope,
        target: body.target.as_deref(),
        limit: body.limit,
        window: &body.window,
        burst: body.burst,
        mode: body.mode.as_deref(),
    };
    let (limit, meta) =
        control::create_rate_limit(&state, &admin.org.id, &admin.user_id, &request).await?;
    Ok((StatusCode::CREATED, Json(RateLimitView::new(limit, meta))))
}

/// Lists the organisation's rate limits and the configuration's.
#[utoipa::path(get, path = "/v1/rate-limits", tag = "runtime",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the rate limits", body = RateLimitList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not a user", body = ErrorBody),
    ))]
pub async fn list_rate_limits(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<RateLimitList>, ApiError> {
    let limits = state.store.list_rate_limits(&user.org.id).await?;
    let config_meta = aaf_store::RateLimitMeta {
        created_at: String::new(),
        created_by: None,
    };
    Ok(Json(RateLimitList {
        rate_limits: limits
            .into_iter()
            .map(|(l, m)| RateLimitView::new(l, m))
            .collect(),
        defaults: state
            .runtime
            .default_limits
            .iter()
            .map(|l| RateLimitView::new(l.clone(), config_meta.clone()))
            .collect(),
    }))
}

/// Deletes a rate limit of the organisation (its counters are forgotten).
#[utoipa::path(delete, path = "/v1/rate-limits/{id}", tag = "runtime",
    params(("id" = String, Path, description = "rate limit id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no live rate limit with this id in the organisation", body = ErrorBody),
        (status = 503, description = "not recorded; nothing was deleted", body = ErrorBody),
    ))]
pub async fn delete_rate_limit(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    control::delete_rate_limit(&state, &admin.org.id, &admin.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
