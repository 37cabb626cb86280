//! `/v1/retention`: the organisation's retention rules and legal hold, and applying them now
//! (docs/retention.md). Handlers parse, call [`crate::retention`], and map errors.

use std::collections::BTreeMap;

use aaf_core::retention::RetentionRules;
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{json_body, Object};
use crate::app::AppState;
use crate::auth::UserAuth;
use crate::error::{ApiError, ErrorBody};
use crate::retention::Applied;

/// `GET /v1/retention` and the answer of `PUT`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionView {
    /// Days to keep each class's payloads (`{"errors": 7, ...}`); a class without a rule
    /// keeps them for ever.
    #[schema(value_type = Object)]
    pub rules: serde_json::Value,
    /// While set, nothing is removed or shredded: why.
    pub legal_hold: Option<String>,
    /// Every class and its event types.
    pub classes: BTreeMap<String, Vec<&'static str>>,
}

/// `PUT /v1/retention`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// Days per class, 1 to 36500: `authentication`, `authorization`, `data_access`,
    /// `errors`, `administration`, `incident`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub rules: BTreeMap<aaf_core::retention::EventClass, u32>,
    /// A legal hold: why (1 to 1000 characters); `null` or absent: none.
    #[serde(default)]
    pub legal_hold: Option<String>,
}

fn view(rules: RetentionRules) -> RetentionView {
    RetentionView {
        rules: serde_json::to_value(&rules.rules).unwrap_or_default(),
        legal_hold: rules.legal_hold,
        classes: crate::retention::classes(),
    }
}

/// The organisation's retention rules and legal hold, and the event classes.
#[utoipa::path(get, path = "/v1/retention", tag = "retention",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the rules", body = RetentionView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin or auditor", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn get_retention(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<RetentionView>, ApiError> {
    let rules = state
        .store
        .retention_rules(&user.org.id)
        .await?
        .unwrap_or_default();
    Ok(Json(view(rules)))
}

/// Replaces the organisation's retention rules and legal hold. Recorded as
/// `retention.changed`.
#[utoipa::path(put, path = "/v1/retention", tag = "retention",
    request_body = RetentionBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the rules now in force", body = RetentionView),
        (status = 400, description = "an unknown class or a bad number of days (`field` names it)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn put_retention(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<RetentionBody>>, JsonRejection>,
) -> Result<Json<RetentionView>, ApiError> {
    let body = json_body(&state, body)?;
    let rules = RetentionRules {
        rules: body.rules,
        legal_hold: body.legal_hold,
    };
    rules
        .validate()
        .map_err(|(field, message)| ApiError::field(field, message))?;
    let now = state.clock.now_rfc3339();
    crate::retention::set(
        &state.writer,
        &admin.org.id,
        rules.clone(),
        &admin.user_id,
        &now,
    )
    .await?;
    Ok(Json(view(rules)))
}

/// Applies the organisation's rules now (as of the server's clock), as the background worker
/// does every `retention.interval_seconds`.
#[utoipa::path(post, path = "/v1/retention/run", tag = "retention",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "what was removed, per class; or the legal hold that suspended it", body = Applied),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn run_retention(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
) -> Result<Json<Applied>, ApiError> {
    let applied = crate::retention::apply(
        &state.store,
        &state.writer,
        &admin.org.id,
        state.clock.now(),
        state.config.retention.batch_size,
    )
    .await?;
    Ok(Json(applied))
}
