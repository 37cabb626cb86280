//! The budgets API (`/v1/budgets`) and the organisation's circuit breakers
//! (`/v1/circuit-breakers`). What they do is in [`crate::runtime::budget_control`]; these
//! handlers parse, call it and answer.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{json_body, Object};
use crate::app::AppState;
use crate::auth::UserAuth;
use crate::error::{ApiError, ErrorBody};
use crate::runtime::breaker::CircuitBreakers;
use crate::runtime::budget::BudgetStatus;
use crate::runtime::budget_control::{self as control, NewBudget};

/// `POST /v1/budgets` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    /// The agent it limits; leave it out for the whole organisation.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// `tokens`, or the configured currency (`budgets.currency`, e.g. `USD`; amounts in
    /// micro-units: 1 USD = 1000000).
    pub unit: String,
    /// `day` or `month` (UTC calendar windows) or `total`.
    pub period: String,
    /// Most that may be spent per window, 1 to 10^15.
    #[schema(value_type = i64, minimum = 1)]
    pub limit: serde_json::Number,
}

/// `PATCH /v1/budgets/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetPatch {
    /// The new limit, 1 to 10^15.
    #[schema(value_type = i64, minimum = 1)]
    pub limit: serde_json::Number,
}

/// A budget and its current window.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetView {
    /// Budget id.
    pub id: String,
    /// `agent` or `org`.
    pub scope: String,
    /// The agent, for an agent's budget.
    pub agent_id: Option<String>,
    /// `tokens` or a currency.
    pub unit: String,
    /// `day`, `month` or `total`.
    pub period: String,
    /// The limit per window.
    pub limit: u64,
    /// The current window (`2026-12-05`, `2026-12`, `total`).
    pub window: String,
    /// Spent in it: settled usage plus what actions not yet settled reserved.
    pub spent: u64,
    /// What is left.
    pub remaining: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<BudgetStatus> for BudgetView {
    fn from(s: BudgetStatus) -> BudgetView {
        let remaining = s.remaining();
        let b = s.budget;
        BudgetView {
            scope: if b.agent_id.is_some() { "agent" } else { "org" }.to_string(),
            period: b.period.as_str().to_string(),
            id: b.id,
            agent_id: b.agent_id,
            unit: b.unit,
            limit: b.limit,
            window: s.window,
            spent: s.spent,
            remaining,
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

/// The organisation's budgets.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetList {
    /// Oldest first.
    pub budgets: Vec<BudgetView>,
}

/// A limit from JSON as an `i128`, so that a negative or huge one is named as sent.
fn limit_of(n: &serde_json::Number) -> Result<i128, ApiError> {
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .ok_or_else(|| ApiError::field("limit", format!("must be a whole number, not {n}")))
}

/// Creates a budget: from the answer on, every node reserves against it.
#[utoipa::path(post, path = "/v1/budgets", tag = "runtime",
    request_body = BudgetBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "created", body = BudgetView),
        (status = 400, description = "bad agent_id, unit, period or limit (the field is named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "too many budgets", body = ErrorBody),
        (status = 503, description = "not recorded; nothing was created", body = ErrorBody),
    ))]
pub async fn create_budget(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<BudgetBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<BudgetView>), ApiError> {
    let body = json_body(&state, body)?;
    let request = NewBudget {
        agent_id: body.agent_id.as_deref(),
        unit: &body.unit,
        period: &body.period,
        limit: limit_of(&body.limit)?,
    };
    let budget = control::create(&state, &admin.org.id, &admin.user_id, &request).await?;
    let view = control::get(&state, &admin.org.id, &budget.id).await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// Lists the organisation's budgets with what each has spent in its current window.
#[utoipa::path(get, path = "/v1/budgets", tag = "runtime",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the budgets", body = BudgetList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not a user", body = ErrorBody),
        (status = 503, description = "the budgets could not be read", body = ErrorBody),
    ))]
pub async fn list_budgets(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<BudgetList>, ApiError> {
    let budgets = control::list(&state, &user.org.id).await?;
    Ok(Json(BudgetList {
        budgets: budgets.into_iter().map(BudgetView::from).collect(),
    }))
}

/// One budget with what it has spent in its current window.
#[utoipa::path(get, path = "/v1/budgets/{id}", tag = "runtime",
    params(("id" = String, Path, description = "budget id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the budget", body = BudgetView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not a user", body = ErrorBody),
        (status = 404, description = "no live budget with this id in the organisation", body = ErrorBody),
    ))]
pub async fn get_budget(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
) -> Result<Json<BudgetView>, ApiError> {
    Ok(Json(control::get(&state, &user.org.id, &id).await?.into()))
}

/// Changes a budget's limit.
#[utoipa::path(patch, path = "/v1/budgets/{id}", tag = "runtime",
    params(("id" = String, Path, description = "budget id")),
    request_body = BudgetPatch,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "changed", body = BudgetView),
        (status = 400, description = "bad limit", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no live budget with this id in the organisation", body = ErrorBody),
        (status = 503, description = "not recorded; nothing changed", body = ErrorBody),
    ))]
pub async fn update_budget(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
    body: Result<Json<Object<BudgetPatch>>, JsonRejection>,
) -> Result<Json<BudgetView>, ApiError> {
    let body = json_body(&state, body)?;
    let limit = limit_of(&body.limit)?;
    let view = control::update(&state, &admin.org.id, &admin.user_id, &id, limit).await?;
    Ok(Json(view.into()))
}

/// Deletes a budget (what it counted is kept).
#[utoipa::path(delete, path = "/v1/budgets/{id}", tag = "runtime",
    params(("id" = String, Path, description = "budget id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no live budget with this id in the organisation", body = ErrorBody),
        (status = 503, description = "not recorded; nothing was deleted", body = ErrorBody),
    ))]
pub async fn delete_budget(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    control::delete(&state, &admin.org.id, &admin.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The circuit breakers in force for the organisation (its own, or the configuration's).
#[utoipa::path(get, path = "/v1/circuit-breakers", tag = "runtime",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the breakers in force", body = CircuitBreakers),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not a user", body = ErrorBody),
    ))]
pub async fn get_circuit_breakers(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Json<CircuitBreakers> {
    Json(crate::runtime::breaker::effective(&state, &user.org.id))
}

/// Sets the organisation's circuit breakers (fields left out take their defaults).
#[utoipa::path(put, path = "/v1/circuit-breakers", tag = "runtime",
    request_body = CircuitBreakers,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "set", body = CircuitBreakers),
        (status = 400, description = "a bad field (named)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 503, description = "not recorded; nothing changed", body = ErrorBody),
    ))]
pub async fn set_circuit_breakers(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<CircuitBreakers>>, JsonRejection>,
) -> Result<Json<CircuitBreakers>, ApiError> {
    let body = json_body(&state, body)?;
    let set = control::set_breakers(&state, &admin.org.id, &admin.user_id, body).await?;
    Ok(Json(set))
}
