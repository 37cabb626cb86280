//! The approvals API: the approvers' queue and answers, the agent's cancel and result
//! report, and the organisation's approval settings. The workflow itself is in
//! [`crate::approvals`].

use aaf_core::action::{ActionStatus, Verdict};
use aaf_core::approval::ApprovalStatus;
use aaf_core::audit::event_types;
use aaf_store::{ActionQuery, ActionRecord, Mutation, NewEvent, OrgSettings, WriteUnit};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::body::{json_body, optional_json, Object};
use super::ActionView;
use crate::app::AppState;
use crate::approvals::{self as workflow, Answer};
use crate::auth::{AgentAuth, UserAuth};
use crate::error::{ApiError, ErrorBody};
use crate::pipeline::outbound::OutboundRules;

/// Longest approver comment, in characters.
const MAX_COMMENT_CHARS: usize = 4096;

/// One approver's answer, as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct VoteView {
    /// The approver's user id.
    pub user_id: String,
    /// The approver's name.
    pub user_name: String,
    /// `approve` or `reject`.
    pub vote: String,
    /// Their comment.
    pub comment: String,
    /// When (RFC 3339).
    pub at: String,
}

/// An action that needs (or needed) approval, as approvers see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    /// The action (parameters in full while it waits).
    pub action: ActionView,
    /// The policies that asked for approval.
    pub requested_by_policies: Vec<String>,
    /// Why approval is needed.
    pub reason: String,
    /// The risk level, if a policy gave one.
    pub risk_level: Option<String>,
    /// Lowercase hex SHA-256 of the RFC 8785 canonical JSON of `{org_id, agent_id, tool,
    /// operation, params, context}`: pass it back with your answer to bind it to exactly
    /// this action.
    pub digest: Option<String>,
    /// The deadline (RFC 3339).
    pub expires_at: Option<String>,
    /// Whole seconds until the deadline (0 once passed).
    pub seconds_left: u64,
    /// Distinct approvals needed.
    pub approvals_required: u32,
    /// Approvals still missing (0 once approved).
    pub approvals_missing: u32,
    /// The answers so far, oldest first.
    pub votes: Vec<VoteView>,
}

async fn approval_view(state: &AppState, action: ActionRecord) -> Result<ApprovalView, ApiError> {
    let votes = state
        .store
        .list_approval_votes(&action.org_id, &action.id)
        .await?;
    let required = action.approvals_required.unwrap_or(1).max(1);
    let approvals =
        u32::try_from(votes.iter().filter(|v| v.vote == "approve").count()).unwrap_or(u32::MAX);
    let pending = action.status == ActionStatus::PendingApproval;
    let seconds_left = action
        .expires_at
        .as_deref()
        .and_then(|e| {
            time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|deadline| (deadline - state.clock.now()).whole_seconds().max(0))
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0);
    let requested_by_policies = match &action.policies {
        Value::Array(items) => items
            .iter()
            .filter(|p| p["decision"] == "require_approval")
            .filter_map(|p| p["policy"].as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Ok(ApprovalView {
        requested_by_policies,
        reason: action.reason.clone(),
        risk_level: action.risk_level.clone(),
        digest: action.digest.clone(),
        expires_at: action.expires_at.clone(),
        seconds_left: if pending { seconds_left } else { 0 },
        approvals_required: required,
        approvals_missing: if pending {
            required.saturating_sub(approvals)
        } else {
            0
        },
        votes: votes
            .into_iter()
            .map(|v| VoteView {
                user_id: v.user_id,
                user_name: v.user_name,
                vote: v.vote,
                comment: v.comment,
                at: v.created_at,
            })
            .collect(),
        action: action.into(),
    })
}

/// `GET /v1/approvals` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApprovalsQuery {
    /// `pending` (default; alias of `pending_approval`) or another approval status:
    /// `approved`, `executing`, `executed`, `failed`, `rejected`, `expired`, `cancelled`,
    /// `denied`.
    #[serde(default)]
    pub status: Option<String>,
    /// At most this many, 1 to 1000; default 100. Oldest first.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The approval queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalList {
    /// Actions with the status asked for, oldest first.
    pub approvals: Vec<ApprovalView>,
}

/// Lists the organisation's actions waiting for approval (or with another approval status),
/// with the policies that asked, risk level, digest, time left and answers so far.
#[utoipa::path(get, path = "/v1/approvals", tag = "approvals",
    params(ApprovalsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the queue, oldest first", body = ApprovalList),
        (status = 400, description = "bad query parameter", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an approver or admin", body = ErrorBody),
    ))]
pub async fn list_approvals(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    query: Result<Query<ApprovalsQuery>, QueryRejection>,
) -> Result<Json<ApprovalList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let status = match query.status.as_deref() {
        None | Some("pending") => ApprovalStatus::PendingApproval,
        Some(s) => ApprovalStatus::parse(s).ok_or_else(|| {
            ApiError::field(
                "status",
                format!(
                    "unknown approval status {s:?}; expected pending or one of {:?}",
                    ApprovalStatus::ALL.map(|s| s.as_str())
                ),
            )
        })?,
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be from 1 to 1000"));
    }
    let actions = state
        .store
        .list_actions(
            &user.org.id,
            &ActionQuery {
                status: status.into(),
                decision: Verdict::RequireApproval.as_str().to_string(),
                expires_at_or_before: None,
                updated_before: None,
                limit,
            },
        )
        .await?;
    let mut approvals = Vec::with_capacity(actions.len());
    for action in actions {
        approvals.push(approval_view(&state, action).await?);
    }
    Ok(Json(ApprovalList { approvals }))
}

/// `POST /v1/approvals/{id}/approve|reject` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// Why; kept in the audit log. Up to 4096 characters.
    #[serde(default)]
    pub comment: Option<String>,
    /// The digest the approver reviewed; when given, the answer is refused (409) unless
    /// the action still has it.
    #[serde(default)]
    pub digest: Option<String>,
}

async fn answer_route(
    state: AppState,
    user: aaf_store::TokenPrincipal,
    id: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    answer: Answer,
) -> Result<Json<ApprovalView>, ApiError> {
    let body: AnswerBody = optional_json(&state, &headers, body)?;
    let comment = body.comment.unwrap_or_default();
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(ApiError::field(
            "comment",
            format!("must be at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    let action =
        workflow::answer(&state, &user, &id, answer, &comment, body.digest.as_deref()).await?;
    Ok(Json(approval_view(&state, action).await?))
}

/// Approves a pending action. With `approvals_required` N (from the policy), the action is
/// approved by the N-th distinct approver; then a connector action (`http_proxy`) is
/// executed at once, after its digest and the current policies are checked again, and the
/// answer shows the outcome.
#[utoipa::path(post, path = "/v1/approvals/{id}/approve", tag = "approvals",
    params(("id" = String, Path, description = "action id")),
    request_body(content = Option<AnswerBody>, description = "optional"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the answer was recorded; the action as it now is", body = ApprovalView),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an approver or admin, or the four-eyes rule: the action was requested for this user", body = ErrorBody),
        (status = 404, description = "no such action in the organisation", body = ErrorBody),
        (status = 409, description = "not pending (decided, expired, cancelled), already answered by this user, no approval needed, or digest mismatch", body = ErrorBody),
        (status = 503, description = "the answer could not be recorded", body = ErrorBody),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApprovalView>, ApiError> {
    answer_route(state, user, id, headers, body, Answer::Approve).await
}

/// Rejects a pending action: one rejection rejects it, whatever approvals came before.
#[utoipa::path(post, path = "/v1/approvals/{id}/reject", tag = "approvals",
    params(("id" = String, Path, description = "action id")),
    request_body(content = Option<AnswerBody>, description = "optional"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "rejected; the action as it now is", body = ApprovalView),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an approver or admin", body = ErrorBody),
        (status = 404, description = "no such action in the organisation", body = ErrorBody),
        (status = 409, description = "not pending, already answered by this user, or digest mismatch", body = ErrorBody),
        (status = 503, description = "the answer could not be recorded", body = ErrorBody),
    ))]
pub async fn reject(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApprovalView>, ApiError> {
    answer_route(state, user, id, headers, body, Answer::Reject).await
}

/// Withdraws one of the agent's own actions while it waits for approval.
#[utoipa::path(post, path = "/v1/actions/{id}/cancel", tag = "actions",
    params(("id" = String, Path, description = "action id")),
    security(("agent_key" = [])),
    responses(
        (status = 200, description = "cancelled", body = ActionView),
        (status = 401, description = "missing or invalid agent key", body = ErrorBody),
        (status = 403, description = "not an agent", body = ErrorBody),
        (status = 404, description = "no such action of this agent", body = ErrorBody),
        (status = 409, description = "not pending approval", body = ErrorBody),
    ))]
pub async fn cancel_action(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
) -> Result<Json<ActionView>, ApiError> {
    let action = workflow::cancel(&state, &agent.org.id, &agent.agent.id, &id).await?;
    Ok(Json(action.into()))
}

/// `POST /v1/actions/{id}/result` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultBody {
    /// `succeeded` or `failed`.
    pub status: String,
    /// Anything the agent wants kept about the outcome (a JSON object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
    /// What running it used, which settles what it reserved of its budgets.
    #[serde(default)]
    pub usage: Option<UsageBody>,
}

/// What an action used, as its agent reports it: `tokens` (or `input_tokens` and
/// `output_tokens`, which also price it by `model` from `budgets.prices`) and
/// `cost_micros` (micro-units of the configured currency; wins over the price). Each from 0
/// to 10^15.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageBody {
    /// Tokens used in all.
    pub tokens: Option<u64>,
    /// Input (prompt) tokens.
    pub input_tokens: Option<u64>,
    /// Output (completion) tokens.
    pub output_tokens: Option<u64>,
    /// The model, to price the tokens.
    pub model: Option<String>,
    /// The cost, in micro-units of the configured currency.
    pub cost_micros: Option<u64>,
}

impl UsageBody {
    /// The reported usage, priced when it can be.
    fn reported(
        &self,
        prices: &aaf_core::budget::PriceTable,
    ) -> Result<workflow::ReportedUsage, ApiError> {
        for (field, v) in [
            ("usage.tokens", self.tokens),
            ("usage.input_tokens", self.input_tokens),
            ("usage.output_tokens", self.output_tokens),
            ("usage.cost_micros", self.cost_micros),
        ] {
            if v.is_some_and(|n| n > aaf_core::budget::MAX_LIMIT) {
                return Err(ApiError::field(
                    field,
                    format!("must be at most {}", aaf_core::budget::MAX_LIMIT),
                ));
            }
        }
        let split = match (self.input_tokens, self.output_tokens) {
            (None, None) => None,
            (i, o) => Some((i.unwrap_or(0), o.unwrap_or(0))),
        };
        let tokens = self
            .tokens
            .or_else(|| split.map(|(i, o)| i.saturating_add(o)));
        let cost = self.cost_micros.or_else(|| {
            let (i, o) = split?;
            prices.cost_micros(self.model.as_deref()?, i, o)
        });
        Ok(workflow::ReportedUsage { tokens, cost })
    }
}

/// Reports the outcome of an allowed or approved action that the agent ran itself (tools
/// other than AAF's connectors), and what it used: the usage settles what the action
/// reserved of its budgets. Once: a second report is refused.
#[utoipa::path(post, path = "/v1/actions/{id}/result", tag = "actions",
    params(("id" = String, Path, description = "action id")),
    request_body = ResultBody,
    security(("agent_key" = [])),
    responses(
        (status = 200, description = "recorded; status is now executed or failed", body = ActionView),
        (status = 400, description = "malformed body", body = ErrorBody),
        (status = 401, description = "missing or invalid agent key", body = ErrorBody),
        (status = 403, description = "not an agent", body = ErrorBody),
        (status = 404, description = "no such action of this agent", body = ErrorBody),
        (status = 409, description = "not allowed or approved, already reported, or run by AAF's connector", body = ErrorBody),
    ))]
pub async fn report_result(
    State(state): State<AppState>,
    AgentAuth(agent): AgentAuth,
    Path(id): Path<String>,
    body: Result<Json<Object<ResultBody>>, JsonRejection>,
) -> Result<Json<ActionView>, ApiError> {
    let body = json_body(&state, body)?;
    let succeeded = match body.status.as_str() {
        "succeeded" => true,
        "failed" => false,
        other => {
            return Err(ApiError::field(
                "status",
                format!("must be \"succeeded\" or \"failed\", not {other:?}"),
            ))
        }
    };
    let detail = match body.detail {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ApiError::field("detail", "must be a JSON object")),
    };
    if let Some(found) = aaf_core::canonical::find_inexact_member(&detail, "detail") {
        return Err(ApiError::field(found.path.clone(), found.to_string()));
    }
    let usage = body
        .usage
        .as_ref()
        .map(|u| u.reported(&state.config.budgets))
        .transpose()?
        .unwrap_or_default();
    let action = workflow::report_result(
        &state,
        &agent.org.id,
        &agent.agent.id,
        &id,
        succeeded,
        detail,
        usage,
    )
    .await?;
    Ok(Json(action.into()))
}

/// The organisation's approval settings in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// Whether the user an action was requested for (`context.user_id`, matched against
    /// user ids and names) may not approve it.
    pub four_eyes: bool,
    /// Approval deadline in seconds, unless a policy asks for another.
    pub approval_timeout_seconds: u64,
    /// Whether the organisation set these (false: the server's defaults).
    pub customised: bool,
    /// When they were last changed (RFC 3339), if ever.
    pub updated_at: Option<String>,
    /// The organisation's own outbound detection rules (`{"<detector, kind or default>":
    /// "record" | "mask" | "block"}`), laid over the server's; `null` when it set none.
    #[schema(value_type = Option<Object>)]
    pub outbound_detection: Option<Value>,
    /// The outbound detection rules in force: the defaults, the server's
    /// `detection.outbound` and the organisation's, in that order (docs/detection.md).
    #[schema(value_type = Object)]
    pub outbound_detection_in_force: OutboundRules,
}

impl SettingsView {
    fn of(s: workflow::EffectiveSettings, base: &OutboundRules) -> SettingsView {
        let own: Option<OutboundRules> = s
            .outbound_detection
            .clone()
            .and_then(|v| serde_json::from_value(v).ok());
        SettingsView {
            four_eyes: s.four_eyes,
            approval_timeout_seconds: s.approval_timeout_seconds,
            customised: s.customised,
            updated_at: s.updated_at,
            outbound_detection: s.outbound_detection,
            outbound_detection_in_force: base.with(own.as_ref()),
        }
    }
}

/// The organisation's approval settings.
#[utoipa::path(get, path = "/v1/settings", tag = "approvals",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the settings in force", body = SettingsView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
    ))]
pub async fn get_settings(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<SettingsView>, ApiError> {
    let settings = workflow::settings(&state, &user.org.id).await?;
    Ok(Json(SettingsView::of(settings, state.outbound.base())))
}

/// `PATCH /v1/settings` body: fields left out keep their value.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettingsBody {
    /// Four eyes on or off.
    #[serde(default)]
    pub four_eyes: Option<bool>,
    /// Approval deadline in seconds, 1 to `approvals.max_timeout_seconds`.
    #[serde(default)]
    pub approval_timeout_seconds: Option<u64>,
    /// The organisation's outbound detection rules: an object `{"<detector, kind or
    /// default>": "record" | "mask" | "block"}` replaces them, `null` removes them (the
    /// server's apply), absent keeps them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub outbound_detection: Option<Value>,
}

/// A field that is present (`Some`, possibly `Some(null)`) or absent (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Changes the organisation's approval settings (an `org.settings_changed` audit event).
/// They apply to actions submitted from then on.
#[utoipa::path(patch, path = "/v1/settings", tag = "approvals",
    request_body = UpdateSettingsBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the settings now in force", body = SettingsView),
        (status = 400, description = "malformed body or value out of range", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 503, description = "the change could not be recorded", body = ErrorBody),
    ))]
pub async fn update_settings(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<UpdateSettingsBody>>, JsonRejection>,
) -> Result<Json<SettingsView>, ApiError> {
    let body = json_body(&state, body)?;
    let max = state.config.approvals.max_timeout_seconds;
    if let Some(t) = body.approval_timeout_seconds {
        if !(1..=max).contains(&t) {
            return Err(ApiError::field(
                "approval_timeout_seconds",
                format!("must be from 1 to {max} (approvals.max_timeout_seconds)"),
            ));
        }
    }
    let outbound = match &body.outbound_detection {
        None | Some(Value::Null) => None,
        Some(v) => {
            let rules: OutboundRules = serde_json::from_value(v.clone()).map_err(|e| {
                ApiError::field(
                    "outbound_detection",
                    format!("must be an object of \"record\", \"mask\" or \"block\": {e}"),
                )
            })?;
            rules
                .validate()
                .map_err(|e| ApiError::field("outbound_detection", e))?;
            Some(v.clone())
        }
    };
    let before = workflow::settings(&state, &admin.org.id).await?;
    let now = crate::time::now_rfc3339();
    let after = OrgSettings {
        org_id: admin.org.id.clone(),
        four_eyes: body.four_eyes.unwrap_or(before.four_eyes),
        approval_timeout_seconds: Some(
            body.approval_timeout_seconds
                .unwrap_or(before.approval_timeout_seconds),
        ),
        updated_at: now.clone(),
        outbound_detection: match &body.outbound_detection {
            None => before.outbound_detection.clone(),
            Some(_) => outbound,
        },
    };
    let unit = WriteUnit {
        mutations: vec![Mutation::SetOrgSettings(after.clone())],
        action: None,
        events: vec![NewEvent {
            org_id: admin.org.id.clone(),
            ts: now,
            agent_id: None,
            action_id: None,
            event_type: event_types::ORG_SETTINGS_CHANGED.to_string(),
            data: serde_json::json!({
                "by": admin.user_id,
                "before": {"four_eyes": before.four_eyes, "approval_timeout_seconds": before.approval_timeout_seconds,
                    "outbound_detection": before.outbound_detection},
                "after": {"four_eyes": after.four_eyes, "approval_timeout_seconds": after.approval_timeout_seconds,
                    "outbound_detection": after.outbound_detection},
            }),
        }],
    };
    state
        .writer
        .submit(unit)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the settings could not be recorded: {e}")))?;
    state.outbound.forget(&admin.org.id);
    let settings = workflow::settings(&state, &admin.org.id).await?;
    Ok(Json(SettingsView::of(settings, state.outbound.base())))
}
