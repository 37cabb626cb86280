//! HTTP handlers and the wire format (DTOs) of the `/v1` API.
//!
//! Only this module and [`crate::error`] know the JSON wire format; domain types from
//! `aaf-core` and rows from `aaf-store` are converted here.

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

use aaf_core::action::{ActionRequest, ActionStatus, Decision, Verdict};
use aaf_core::audit::{event_types, ChainedEvent};
use aaf_core::redact::redact;
use aaf_store::{ActionRecord, NewEvent, WriteUnit};

use crate::app::AppState;
use crate::auth::{AgentAuth, AnyAuth, Principal, UserAuth};
use crate::connectors::Connector;
use crate::error::{ApiError, ErrorBody};
use crate::pipeline::{self, Submission};
use crate::time::now_rfc3339;
use body::{json_body, Object};

pub mod alerts;
pub mod approvals;
pub mod body;
pub mod budgets;
pub mod compliance;
pub mod encryption;
pub mod evidence;
pub mod identity;
pub mod mcp;
pub mod policies;
pub mod retention;
pub mod runtime;
pub mod webhooks;

/// Longest accepted tool, operation, agent or user name, in characters.
const MAX_NAME_CHARS: usize = 256;

// ---------------------------------------------------------------------------------------------
// Health

/// Health of the server.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers 200.
    pub status: &'static str,
    /// The storage backend, e.g. `sqlite`.
    pub database: &'static str,
    /// The revision (hex SHA-256) of the policy set in force for the default organisation
    /// (the one `aaf serve` creates on first start): the policy directory's modules with
    /// that organisation's enforced managed policies, enabled packs and data documents, as
    /// its decisions record it. Other organisations' revisions are in their decisions.
    pub policy_revision: String,
    /// How many policies decide the default organisation's actions: those of the policy
    /// directory, its enforced managed policies and its enabled packs (shadow policies,
    /// which never decide, are not counted).
    pub policies: usize,
}

/// Liveness and basic facts; needs no credentials.
///
/// # Errors
///
/// 503 when the default organisation's policies cannot be read or built (its actions are
/// denied until they can); the cause is in the server log.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses(
        (status = 200, description = "the server is up", body = Health),
        (status = 503, description = "the default organisation's policies cannot be loaded", body = ErrorBody)))]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let policies = crate::policies::for_org(&state, &state.default_org_id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "health check: the default organisation's policies cannot be loaded");
            ApiError::Unavailable(
                "the default organisation's policies cannot be loaded, so its actions are denied (see the server log)"
                    .into(),
            )
        })?;
    Ok(Json(Health {
        status: "ok",
        database: state.store.backend_name(),
        policy_revision: policies.set.revision().to_string(),
        policies: policies.set.policies().len(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Agents

/// `POST /v1/agents` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentBody {
    /// Unique name within the organisation, 1 to 256 characters.
    pub name: String,
    /// Risk score in `0.0..=1.0`; default 0.
    #[serde(default)]
    pub risk_score: Option<f64>,
    /// Standard base64 of the agent's raw 32-byte Ed25519 public key. When set, every
    /// request of the agent must also carry an RFC 9421 signature by this key
    /// (`docs/agents.md`).
    #[serde(default)]
    pub public_key: Option<String>,
    /// Lifetime of the first key in seconds; default `auth.agent_key_ttl_seconds`.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Tools the first key may submit; omit for every tool.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
}

/// A new agent with its API key. The key is shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAgent {
    /// Agent id.
    pub id: String,
    /// Agent name.
    pub name: String,
    /// Risk score.
    pub risk_score: f64,
    /// The agent's API key (`aaf_ak_...`); store it now, it cannot be shown again.
    pub api_key: String,
    /// The first characters of the key, shown in listings to tell keys apart.
    pub key_prefix: String,
    /// The key's id.
    pub key_id: String,
    /// When the key stops working (RFC 3339), or null for never.
    pub expires_at: Option<String>,
    /// Tools the key may submit; null = every tool.
    pub tools: Option<Vec<String>>,
    /// The registered Ed25519 public key, if any.
    pub public_key: Option<String>,
}

/// An agent as listed (never with keys).
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// Agent id.
    pub id: String,
    /// Agent name.
    pub name: String,
    /// Risk score.
    pub risk_score: f64,
    /// The registered Ed25519 public key (standard base64), if the agent signs its requests.
    pub public_key: Option<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

impl From<aaf_store::Agent> for AgentView {
    fn from(a: aaf_store::Agent) -> Self {
        AgentView {
            id: a.id,
            name: a.name,
            risk_score: a.risk_score,
            public_key: a.public_key,
            created_at: a.created_at,
        }
    }
}

/// `GET /v1/agents` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    /// The organisation's agents, oldest first.
    pub agents: Vec<AgentView>,
}

/// Registers an agent and returns its API key once.
#[utoipa::path(post, path = "/v1/agents", tag = "agents",
    request_body = CreateAgentBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "agent created", body = CreatedAgent),
        (status = 400, description = "malformed body; `field` names the problem", body = ErrorBody),
        (status = 401, description = "missing or invalid admin token", body = ErrorBody),
        (status = 403, description = "the token is not an admin token", body = ErrorBody),
        (status = 409, description = "an agent with this name exists", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn create_agent(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<CreateAgentBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedAgent>), ApiError> {
    let body = json_body(&state, body)?;
    let name = identity::valid_name("name", &body.name)?;
    let name = name.as_str();
    let risk_score = body.risk_score.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&risk_score) {
        return Err(ApiError::field(
            "risk_score",
            "must be a number from 0 to 1",
        ));
    }
    if let Some(key) = &body.public_key {
        if crate::auth::decode_public_key(key).is_none() {
            return Err(ApiError::field(
                "public_key",
                "must be standard base64 of a 32-byte Ed25519 public key",
            ));
        }
    }
    let tools = identity::valid_tools(body.tools)?;
    let expires_at = identity::key_expiry(&state, body.expires_in)?;
    let (key, spec) = identity::new_key_spec(expires_at, tools);
    let (agent, key_row, unit) = aaf_store::units::new_agent(
        &admin.org.id,
        name,
        risk_score,
        body.public_key.as_deref(),
        &spec,
        &format!("user:{}", admin.user_id),
        &now_rfc3339(),
    );
    state.store.commit(&[unit]).await.map_err(|e| match e {
        aaf_store::StoreError::Conflict(_) => {
            ApiError::Conflict(format!("an agent named {name:?} already exists"))
        }
        other => other.into(),
    })?;
    tracing::info!(agent_id = %agent.id, agent = %agent.name, "agent created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedAgent {
            id: agent.id,
            name: agent.name,
            risk_score: agent.risk_score,
            api_key: key,
            key_prefix: key_row.prefix,
            key_id: key_row.id,
            expires_at: key_row.expires_at,
            tools: key_row.tools,
            public_key: agent.public_key,
        }),
    ))
}

/// Lists the organisation's agents (without keys).
#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the agents", body = AgentList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "agents may not list agents", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn list_agents(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<AgentList>, ApiError> {
    let agents = state.store.list_agents(&user.org.id).await?;
    Ok(Json(AgentList {
        agents: agents.into_iter().map(AgentView::from).collect(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Actions

/// `POST /v1/actions` and `POST /v1/actions/dry-run` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// The tool, e.g. `http_proxy` (alias `http`) or a decision-only tool of yours.
    pub tool: String,
    /// The operation; for `http_proxy` the HTTP method.
    pub operation: String,
    /// Tool parameters (an object). For `http_proxy`: `url`, `headers`, `body`, `timeout_ms`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
    /// Context for policies: `user_id`, `session_id`, `purpose`, ... (an object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
}

/// One policy's part in a decision.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyDecisionView {
    /// The policy (its Rego package, without `data.`).
    pub policy: String,
    /// `allow`, `deny`, `require_approval`, or null when the policy abstained.
    pub decision: Option<String>,
    /// The policy's reason, or the evaluation error that made it deny.
    pub reason: Option<String>,
    /// Evaluation time in microseconds (dry runs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_time_us: Option<u64>,
}

/// The decision on an action and what happened to it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionResponse {
    /// Action id (absent in dry runs, which store nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `allow`, `require_approval` or `deny`.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// The risk level given by the deciding policies, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_level: Option<String>,
    /// The policies whose decision equals the final decision.
    pub matched_policies: Vec<String>,
    /// Every policy's decision.
    pub policies: Vec<PolicyDecisionView>,
    /// `allowed` (decision-only tool: the agent may run it), `executed`, `failed`
    /// (connector tools), `pending_approval`, `denied`, or `dry_run`.
    pub status: String,
    /// The connector's result when executed: for `http_proxy`
    /// `{status, headers, body, truncated}`; for `failed`, `{error}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// The revision of the policy set that decided: hex SHA-256 of its sources and data
    /// (`GET /v1/policy-revisions/{revision}` returns them).
    pub policy_revision: String,
    /// For `require_approval`: what binds an approval to this exact action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalBinding>,
    /// What the organisation's shadow policies would have decided (never the outcome).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<crate::policies::ShadowOutcome>,
    /// Dry runs: per policy, its decision, evaluation time and the lines it evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub explanation: Option<Vec<aaf_core::policy::PolicyExplanation>>,
}

/// The `403` answer of `POST /v1/actions`: either the decision (denied by policy, or by the
/// connector's SSRF guard), an [`ActionResponse`] with `decision` `deny`; or an error
/// ([`ErrorBody`], `error.code` `forbidden`) when the caller may not submit actions (a user's
/// token instead of an agent key; see `crate::rbac`). An agent key limited to other tools
/// gets a decision (a deny), not an error. The two shapes
/// have no required member in common (`decision` and `error`), so a client tells them apart
/// by which is present.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ActionForbidden {
    /// The action was decided and denied.
    Denied(Box<ActionResponse>),
    /// The caller may not submit this action.
    Refused(ErrorBody),
}

/// The body of a `429` from `POST /v1/actions`: a decision a rate limit denied, or the
/// failed-authentication limit's error.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ActionTooMany {
    /// The action was recorded and denied by a rate limit.
    Denied(Box<ActionResponse>),
    /// Too many failed authentications from the address.
    Refused(ErrorBody),
}

pub use crate::pipeline::ApprovalBinding;

/// The answer for `decision`; `with_times` adds each policy's evaluation time (dry runs).
fn action_response(
    revision: &str,
    id: Option<String>,
    decision: &Decision,
    status: &str,
    with_times: bool,
) -> ActionResponse {
    ActionResponse {
        id,
        decision: decision.verdict.as_str().to_string(),
        reason: decision.reason.clone(),
        risk_level: decision.risk_level.clone(),
        matched_policies: decision.matched_policies.clone(),
        policies: policy_views(decision, with_times),
        status: status.to_string(),
        result: None,
        policy_revision: revision.to_string(),
        approval: None,
        shadow: Vec::new(),
        explanation: None,
    }
}

/// Each policy's decision as answered and recorded; `with_times` adds evaluation times.
pub(crate) fn policy_views(decision: &Decision, with_times: bool) -> Vec<PolicyDecisionView> {
    decision
        .policies
        .iter()
        .map(|p| PolicyDecisionView {
            policy: p.policy.clone(),
            decision: p.decision.map(|v| v.as_str().to_string()),
            reason: p.reason.clone(),
            eval_time_us: with_times.then_some(p.eval_time_us),
        })
        .collect()
}

/// Checks a parsed `POST /v1/actions` (or dry-run) body beyond what serde checks and turns
/// it into the domain [`ActionRequest`]: `tool` and `operation` non-blank and at most 256
/// characters, `params` and `context` JSON objects (absent or `null`: an empty object), and
/// every number in them with an exact RFC 8785 form (I-JSON, RFC 7493 section 2.2).
///
/// Public so that the fuzz targets (`fuzz/`) exercise the server's own validation.
///
/// # Errors
/// [`ApiError::BadRequest`] whose `field` names the offending field (for a number without
/// an exact RFC 8785 form, its JSON path, e.g. `params.amount`).
pub fn validate_action(body: ActionBody) -> Result<ActionRequest, ApiError> {
    fn name(field: &str, v: &str) -> Result<String, ApiError> {
        if v.trim().is_empty() {
            return Err(ApiError::field(field, "must not be empty"));
        }
        if v.chars().count() > MAX_NAME_CHARS {
            return Err(ApiError::field(
                field,
                format!("must be at most {MAX_NAME_CHARS} characters"),
            ));
        }
        Ok(v.to_string())
    }
    fn object(field: &str, v: Option<Value>) -> Result<Map<String, Value>, ApiError> {
        match v {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m),
            Some(_) => Err(ApiError::field(field, "must be a JSON object")),
        }
    }
    let request = ActionRequest {
        tool: name("tool", &body.tool)?,
        operation: name("operation", &body.operation)?,
        params: object("params", body.params)?,
        context: object("context", body.context)?,
    };
    // The cache key, the approval digest and the audit hash are over RFC 8785 JSON, which
    // has no exact form for integers beyond 2^53-1: refuse them rather than let two
    // actions share a hash (I-JSON, RFC 7493 section 2.2).
    request
        .check_numbers()
        .map_err(|found| ApiError::field(found.path.clone(), found.to_string()))?;
    Ok(request)
}

fn http_status(verdict: Verdict) -> StatusCode {
    match verdict {
        Verdict::Allow => StatusCode::OK,
        Verdict::RequireApproval => StatusCode::ACCEPTED,
        Verdict::Deny => StatusCode::FORBIDDEN,
    }
}

/// Submits an action through the action pipeline ([`crate::pipeline::submit`]: decision,
/// durable record, the connector when allowed, the outcome's record) and answers.
///
/// Statuses: 200 allow, 202 require_approval (stored as `pending_approval`), 403 deny, 429
/// denied by a rate limit. Nothing is executed unless the decision was recorded; if recording
/// fails the answer is 503.
#[utoipa::path(post, path = "/v1/actions", tag = "actions",
    request_body = ActionBody,
    security(("agent_key" = [])),
    responses(
        (status = 200, description = "allowed (and executed for connector tools)", body = ActionResponse),
        (status = 202, description = "requires approval; stored as pending_approval", body = ActionResponse),
        (status = 403, description = "denied by policy, by a kill switch (reason `kill_switch: ...`) or by the connector's SSRF guard (an ActionResponse), or the caller is not an agent (an ErrorBody)", body = ActionForbidden),
        (status = 429, description = "denied by a rate limit (an ActionResponse, reason `rate_limit: ...`, recorded like every decision), or too many failed authentications from the address (an ErrorBody)", body = ActionTooMany,
            headers(
                ("Retry-After" = u64, description = "seconds until the action would be admitted"),
                ("RateLimit-Policy" = String, description = "the limit that was over (IETF draft-ietf-httpapi-ratelimit-headers): `\"<limit id>\";q=<limit>;w=<window seconds>`"),
                ("RateLimit" = String, description = "its state: `\"<limit id>\";r=0;t=<seconds until admitted>`"),
            )),
        (status = 400, description = "malformed body; `field` names the problem", body = ErrorBody),
        (status = 401, description = "missing, unknown, revoked or expired agent key", body = ErrorBody),
        (status = 413, description = "body larger than limits.max_body_bytes", body = ErrorBody),
        (status = 415, description = "body is not JSON", body = ErrorBody),
        (status = 503, description = "the audit log could not record the action; nothing was executed", body = ErrorBody),
    ))]
pub async fn submit_action(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AgentAuth(agent): AgentAuth,
    body: Result<Json<Object<ActionBody>>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = match json_body(&state, body).and_then(validate_action) {
        Ok(r) => r,
        Err(e) => return Err(record_bad_request(&state, &agent, e).await),
    };
    let ip = peer.ip().to_string();
    let submission = Submission {
        agent: &agent,
        ip: Some(&ip),
    };
    let submitted = pipeline::submit(&state, submission, request).await?;
    let mut response = action_response(
        &submitted.revision,
        Some(submitted.action_id),
        &submitted.decision,
        submitted.status.as_str(),
        false,
    );
    response.approval = submitted.approval;
    response.shadow = submitted.shadow;
    response.result = submitted.result;
    if let Some((limit, retry_after_ms)) = submitted.refused.and_then(|r| r.rate_limit) {
        return Ok(too_many(&limit, retry_after_ms, response));
    }
    Ok((http_status(submitted.decision.verdict), Json(response)).into_response())
}

/// `429` for an action a rate limit denied, with `Retry-After` (RFC 9110, section 10.2.3)
/// and the `RateLimit-Policy` / `RateLimit` fields of the IETF draft
/// draft-ietf-httpapi-ratelimit-headers (structured fields, RFC 8941): the limit's id as the
/// policy name, `q` its limit, `w` its window in seconds, `r` the remaining quota (0) and
/// `t` the seconds until the action would be admitted.
fn too_many(
    limit: &aaf_core::rate_limit::RateLimit,
    retry_after_ms: u64,
    response: ActionResponse,
) -> Response {
    let seconds = retry_after_ms.div_ceil(1000).max(1);
    let mut answer = (StatusCode::TOO_MANY_REQUESTS, Json(response)).into_response();
    let headers = answer.headers_mut();
    // Limit ids are UUIDs or `config:<n>`: valid inside an sf-string as they are.
    let values = [
        ("retry-after", seconds.to_string()),
        (
            "ratelimit-policy",
            format!(
                "\"{}\";q={};w={}",
                limit.id,
                limit.limit,
                limit.window.seconds()
            ),
        ),
        ("ratelimit", format!("\"{}\";r=0;t={seconds}", limit.id)),
    ];
    for (name, value) in values {
        if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    answer
}

/// Records a malformed action request in the agent's chain (without the body) and returns
/// the error to answer.
async fn record_bad_request(
    state: &AppState,
    agent: &aaf_store::AgentPrincipal,
    error: ApiError,
) -> ApiError {
    let (status, _) = error.status_and_code();
    let field = match &error {
        ApiError::BadRequest { field, .. } => field.clone(),
        _ => None,
    };
    let unit = WriteUnit {
        mutations: Vec::new(),
        action: None,
        events: vec![NewEvent {
            org_id: agent.org.id.clone(),
            ts: now_rfc3339(),
            agent_id: Some(agent.agent.id.clone()),
            action_id: None,
            event_type: event_types::REQUEST_REJECTED.to_string(),
            data: serde_json::json!({
                "status": status.as_u16(),
                "reason": error.to_string(),
                "field": field,
                "path": "/v1/actions",
            }),
        }],
    };
    if let Err(e) = state.writer.submit(unit).await {
        tracing::error!(error = %e, "could not record a rejected request in the audit log");
    }
    error
}

/// Evaluates an action exactly as `POST /v1/actions` would, without executing or storing it,
/// and reports each policy's evaluation time.
#[utoipa::path(post, path = "/v1/actions/dry-run", tag = "actions",
    request_body = ActionBody,
    security(("agent_key" = [])),
    responses(
        (status = 200, description = "the decision that would be made (any verdict)", body = ActionResponse),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "missing, unknown, revoked or expired agent key", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
    ))]
pub async fn dry_run(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    AgentAuth(agent): AgentAuth,
    body: Result<Json<Object<ActionBody>>, JsonRejection>,
) -> Result<Json<ActionResponse>, ApiError> {
    let body = json_body(&state, body)?;
    let request = validate_action(body)?;
    let ip = peer.ip().to_string();
    let submission = Submission {
        agent: &agent,
        ip: Some(&ip),
    };
    let evaluated = pipeline::dry_run(&state, submission, request).await?;
    let mut response = action_response(
        &evaluated.revision,
        None,
        &evaluated.decision,
        "dry_run",
        true,
    );
    response.shadow = evaluated.shadow;
    if let Some((policies, input)) = evaluated.explain {
        let explanation = tokio::task::spawn_blocking(move || policies.set.explain(&input))
            .await
            .map_err(|e| ApiError::Internal(format!("explanation failed: {e}")))?;
        response.explanation = Some(explanation.policies);
    }
    Ok(Json(response))
}

/// A stored action.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionView {
    /// Action id.
    pub id: String,
    /// The agent that submitted it.
    pub agent_id: String,
    /// Tool.
    pub tool: String,
    /// Operation.
    pub operation: String,
    /// Parameters, with secrets and personal data redacted (an action waiting for approval
    /// keeps them in full in the database, bound by its digest, until it is finished).
    #[schema(value_type = Object)]
    pub params: Value,
    /// Context, redacted likewise.
    #[schema(value_type = Object)]
    pub context: Value,
    /// `allow`, `require_approval` or `deny`.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// The winning risk level, if any.
    pub risk_level: Option<String>,
    /// `allowed`, `executing`, `executed`, `failed`, `denied` or `pending_approval`.
    pub status: String,
    /// Every policy's decision.
    #[schema(value_type = Vec<Object>)]
    pub policies: Value,
    /// The connector's result, when executed.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// For an action that needs approval: its digest (see [`ApprovalBinding`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// For an action that needs approval: its approval deadline (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// What the detectors found in the params and context, when they ran and found
    /// something: `[{detector, kind, path, confidence}]` (docs/detection.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub detections: Option<Value>,
    /// The action's behavioural risk when it was scored: `{score, factors: [{name,
    /// contribution, detail}], learning, baseline_actions}` (docs/detection.md, "Risk
    /// scores"). Not shown to the agent itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub risk: Option<Value>,
    /// Why `params`, `context`, `result` and the signals read as `null`: the action was
    /// crypto-shredded, or its sealed columns were modified (docs/encryption.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

impl From<ActionRecord> for ActionView {
    fn from(r: ActionRecord) -> Self {
        ActionView {
            id: r.id,
            agent_id: r.agent_id,
            tool: r.tool,
            operation: r.operation,
            params: redact(&r.params),
            context: redact(&r.context),
            decision: r.decision,
            reason: r.reason,
            risk_level: r.risk_level,
            status: r.status.as_str().to_string(),
            policies: r.policies,
            result: r.result,
            created_at: r.created_at,
            updated_at: r.updated_at,
            digest: r.digest,
            expires_at: r.expires_at,
            detections: r
                .signals
                .as_ref()
                .and_then(|s| s.get("detections"))
                .cloned(),
            risk: r.signals.as_ref().and_then(|s| s.get("risk")).cloned(),
            withheld: r.withheld,
        }
    }
}

/// `GET /v1/actions/{id}` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetActionQuery {
    /// Wait up to this many seconds (0 to 60) for the action's status to change before
    /// answering, while it is in progress (`pending_approval`, `executing`, or `approved`
    /// for a connector tool AAF is about to run); the answer comes as soon as the status
    /// changes, on whichever node changed it. Default 0 (answer at once).
    #[serde(default)]
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<u64>,
}

/// Whether something is still to happen to the action that is not its agent's move: it
/// waits for approvers, or AAF is about to run or is running it.
fn in_progress(action: &ActionRecord) -> bool {
    match action.status {
        ActionStatus::PendingApproval | ActionStatus::Executing => true,
        ActionStatus::Approved => Connector::for_tool(&action.tool).is_some(),
        _ => false,
    }
}

/// The longest `wait` of `GET /v1/actions/{id}`, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// One action of the organisation. An agent sees only its own actions. With `wait`, the
/// answer is held until the status changes or the wait ends (long polling).
#[utoipa::path(get, path = "/v1/actions/{id}", tag = "actions",
    params(("id" = String, Path, description = "action id"), GetActionQuery),
    security(("bearer" = []), ("agent_key" = [])),
    responses(
        (status = 200, description = "the action", body = ActionView),
        (status = 400, description = "wait out of range", body = ErrorBody),
        (status = 401, description = "missing or invalid credentials", body = ErrorBody),
        (status = 403, description = "the role may not read actions", body = ErrorBody),
        (status = 404, description = "no such action in the organisation (or of this agent)", body = ErrorBody),
    ))]
pub async fn get_action(
    State(state): State<AppState>,
    AnyAuth(principal): AnyAuth,
    axum::extract::Path(id): axum::extract::Path<String>,
    query: Result<Query<GetActionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ActionView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let wait = query.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::field(
            "wait",
            format!("must be from 0 to {MAX_WAIT_SECONDS} seconds"),
        ));
    }
    // Subscribe before the first read, so that a change right after it is not missed.
    let mut changes = state.action_events.subscribe();
    let read = || async {
        state
            .store
            .get_action(&principal.org().id, &id)
            .await?
            .filter(|a| match &principal {
                Principal::Agent(agent) => a.agent_id == agent.agent.id,
                Principal::User(_) => true,
            })
            .ok_or_else(|| ApiError::NotFound(format!("no action {id}")))
    };
    // An agent is not told its own risk score: it would show it how to stay under it.
    let view = |record: ActionRecord| {
        let mut view = ActionView::from(record);
        if matches!(principal, Principal::Agent(_)) {
            view.risk = None;
        }
        Json(view)
    };
    let first = read().await?;
    if wait == 0 || !in_progress(&first) {
        return Ok(view(first));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    // A lost notification costs at most this long.
    let recheck = std::time::Duration::from_secs(5);
    loop {
        let woke = tokio::select! {
            changed = changes.recv() => match changed {
                Ok(changed) => &*changed == id.as_str() || &*changed == crate::approvals::ANY_ACTION,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    tokio::time::sleep_until(deadline).await;
                    return Ok(view(read().await?));
                }
            },
            _ = tokio::time::sleep(recheck) => true,
            _ = tokio::time::sleep_until(deadline) => return Ok(view(read().await?)),
        };
        if woke {
            let now = read().await?;
            if now.status != first.status {
                return Ok(view(now));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Audit

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Return events with `seq` greater than this, 0 to 2^63-1 (a signed 64-bit integer,
    /// as stored); default 0 (from the start).
    #[serde(default)]
    #[param(minimum = 0)]
    pub after_seq: i64,
    /// At most this many events, 1 to 1000; default 100.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `system` to read the chain of unauthenticated events (admins and auditors of the
    /// first organisation only); default: the caller's organisation.
    #[serde(default)]
    pub chain: Option<String>,
}

/// A page of audit events.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The chain read: the organisation id or `system`.
    pub chain: String,
    /// Events in `seq` order: `{seq, ts, org_id, agent_id, action_id, type, data, prev_hash, hash}`.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<ChainedEvent>,
    /// Pass as `after_seq` to read on; absent when this page is the end of the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after_seq: Option<u64>,
}

/// Reads the organisation's audit chain in order.
#[utoipa::path(get, path = "/v1/audit", tag = "audit",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "events in seq order", body = AuditPage),
        (status = 400, description = "bad query parameter", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "the role may not read the audit log, or the system chain was asked for by another organisation or role", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn list_audit(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be from 1 to 1000"));
    }
    let after_seq = u64::try_from(query.after_seq)
        .map_err(|_| ApiError::field("after_seq", "must be from 0 to 2^63-1"))?;
    let chain = evidence::requested_chain(&state, &user, query.chain.as_deref())?;
    let events = state.store.list_audit(&chain, after_seq, limit).await?;
    let next_after_seq = if events.len() == limit as usize {
        events.last().map(|e| e.event.seq)
    } else {
        None
    };
    Ok(Json(AuditPage {
        chain,
        events,
        next_after_seq,
    }))
}
