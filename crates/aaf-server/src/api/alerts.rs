//! The alerts API (`/v1/alerts`): list, read, acknowledge and resolve the alerts the
//! built-in rules raised (docs/alerts.md). What the changes do is in
//! [`crate::alerts::record`]; these handlers parse, call it and answer.

use aaf_store::{Alert, AlertQuery, AlertStatus};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::optional_json;
use crate::alerts::record;
use crate::alerts::Rule;
use crate::app::AppState;
use crate::auth::UserAuth;
use crate::error::{ApiError, ErrorBody};

/// Longest id or agent id accepted in a query, in bytes.
const MAX_ID_LEN: usize = 200;

/// `GET /v1/alerts` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertListQuery {
    /// Only alerts with this status: `open`, `acknowledged` or `resolved`.
    #[serde(default)]
    pub status: Option<String>,
    /// Only alerts of this rule (docs/alerts.md, e.g. `repeated_denials`).
    #[serde(default)]
    pub rule: Option<String>,
    /// Only alerts about this agent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Only alerts older than this one (its id): pass `next_before` of the previous page.
    #[serde(default)]
    pub before: Option<String>,
    /// At most this many alerts, 1 to 1000; default 100.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// `POST /v1/alerts/{id}/ack` and `/resolve` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertAnswer {
    /// Why, or what was done; kept in the audit log. Up to 2000 characters.
    #[serde(default)]
    pub comment: Option<String>,
}

/// An alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    /// Alert id (UUIDv7).
    pub id: String,
    /// The rule that raised it (docs/alerts.md).
    pub rule: String,
    /// What it is about: `agent:<id>`, `address:<ip>`, `org`, `kill_switch:<scope>:<target>`,
    /// `budget:<id>:<window>:<percent>`, `agent:<id>:detector:<name>`.
    pub subject: String,
    /// The agent concerned, if any.
    pub agent_id: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    /// One line for people.
    pub summary: String,
    /// The hit that raised it (rule-specific fields).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// Hits folded into it (1 when raised).
    pub count: u64,
    /// When it was raised (RFC 3339).
    pub first_seen_at: String,
    /// The latest hit (RFC 3339).
    pub last_seen_at: String,
    /// When it was acknowledged (RFC 3339).
    pub acknowledged_at: Option<String>,
    /// The user who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When it was resolved (RFC 3339).
    pub resolved_at: Option<String>,
    /// The user who resolved it.
    pub resolved_by: Option<String>,
    /// The kill switch the rule engaged, if it acted.
    pub kill_switch_id: Option<String>,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<Alert> for AlertView {
    fn from(a: Alert) -> AlertView {
        AlertView {
            status: a.status.as_str().to_string(),
            id: a.id,
            rule: a.rule,
            subject: a.subject,
            agent_id: a.agent_id,
            severity: a.severity,
            summary: a.summary,
            detail: a.detail,
            count: a.count,
            first_seen_at: a.first_seen_at,
            last_seen_at: a.last_seen_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by,
            resolved_at: a.resolved_at,
            resolved_by: a.resolved_by,
            kill_switch_id: a.kill_switch_id,
            updated_at: a.updated_at,
        }
    }
}

/// A page of alerts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    /// Newest first.
    pub alerts: Vec<AlertView>,
    /// Pass as `before` to read on; absent when this page is the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// A query value that names something: non-empty, at most [`MAX_ID_LEN`] bytes, no control
/// characters.
fn name_param(field: &'static str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_ID_LEN || v.chars().any(char::is_control) => {
            Err(ApiError::field(
                field,
                format!("must be 1 to {MAX_ID_LEN} bytes without control characters"),
            ))
        }
        other => Ok(other),
    }
}

/// Lists the organisation's alerts, newest first.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts",
    params(AlertListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "a page of alerts, newest first", body = AlertPage),
        (status = 400, description = "a bad query parameter (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin, approver or auditor", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn list_alerts(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    query: Result<Query<AlertListQuery>, QueryRejection>,
) -> Result<Json<AlertPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be from 1 to 1000"));
    }
    let status =
        match query.status.as_deref() {
            None => None,
            Some(s) => Some(AlertStatus::parse(s).ok_or_else(|| {
                ApiError::field("status", "must be open, acknowledged or resolved")
            })?),
        };
    if let Some(rule) = query.rule.as_deref() {
        if !record::known_rule(rule) {
            return Err(ApiError::field(
                "rule",
                format!("unknown rule {rule:?}; the rules are {}", Rule::names()),
            ));
        }
    }
    let request = AlertQuery {
        status,
        rule: query.rule,
        agent_id: name_param("agent_id", query.agent_id)?,
        before_id: name_param("before", query.before)?,
        limit,
    };
    let alerts = state.store.list_alerts(&user.org.id, &request).await?;
    let next_before = if alerts.len() == limit as usize {
        alerts.last().map(|a| a.id.clone())
    } else {
        None
    };
    Ok(Json(AlertPage {
        alerts: alerts.into_iter().map(AlertView::from).collect(),
        next_before,
    }))
}

/// One alert of the organisation.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "alert id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the alert", body = AlertView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin, approver or auditor", body = ErrorBody),
        (status = 404, description = "no such alert in the organisation", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn get_alert(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
) -> Result<Json<AlertView>, ApiError> {
    Ok(Json(record::get(&state, &user.org.id, &id).await?.into()))
}

async fn answer(
    state: AppState,
    user: aaf_store::TokenPrincipal,
    id: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    to: AlertStatus,
) -> Result<Json<AlertView>, ApiError> {
    let body: AlertAnswer = optional_json(&state, &headers, body)?;
    let comment = body.comment.unwrap_or_default();
    let alert = record::transition(&state, &user.org.id, &user.user_id, &id, to, &comment).await?;
    Ok(Json(alert.into()))
}

/// Acknowledges an open alert: someone is on it. Later hits still add to its count.
#[utoipa::path(post, path = "/v1/alerts/{id}/ack", tag = "alerts",
    params(("id" = String, Path, description = "alert id")),
    request_body(content = Option<AlertAnswer>, description = "optional"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "acknowledged; the alert as it now is", body = AlertView),
        (status = 400, description = "malformed body, or a comment longer than 2000 characters (field comment)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin or approver", body = ErrorBody),
        (status = 404, description = "no such alert in the organisation", body = ErrorBody),
        (status = 409, description = "the alert is not open (acknowledged or resolved already)", body = ErrorBody),
        (status = 503, description = "not recorded; nothing changed", body = ErrorBody),
    ))]
pub async fn ack_alert(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlertView>, ApiError> {
    answer(state, user, id, headers, body, AlertStatus::Acknowledged).await
}

/// Resolves an open or acknowledged alert: closed; counted rules count afresh, and the
/// next hit raises a new alert.
#[utoipa::path(post, path = "/v1/alerts/{id}/resolve", tag = "alerts",
    params(("id" = String, Path, description = "alert id")),
    request_body(content = Option<AlertAnswer>, description = "optional"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "resolved; the alert as it now is", body = AlertView),
        (status = 400, description = "malformed body, or a comment longer than 2000 characters (field comment)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such alert in the organisation", body = ErrorBody),
        (status = 409, description = "the alert is resolved already", body = ErrorBody),
        (status = 503, description = "not recorded; nothing changed", body = ErrorBody),
    ))]
pub async fn resolve_alert(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AlertView>, ApiError> {
    answer(state, user, id, headers, body, AlertStatus::Resolved).await
}
