//! Creating, changing and deleting budgets, and setting an organisation's circuit breakers:
//! each change is stored with its audit event and installed on this node before it is
//! answered (other nodes: as kill switches, by the runtime generation).

use aaf_core::audit::event_types;
use aaf_core::budget::{validate, Budget};
use aaf_store::{Mutation, NewEvent};
use serde_json::json;

use super::breaker::CircuitBreakers;
use super::budget::BudgetStatus;
use super::control::{agent_in_org, commit, install, unavailable, ControlError};
use crate::app::AppState;

/// Most live budgets an organisation may have (the API refuses more with 409).
pub const MAX_BUDGETS_PER_ORG: usize = 1000;

/// A budget to create, as asked.
#[derive(Debug, Clone)]
pub struct NewBudget<'a> {
    /// The agent it limits; `None`: the organisation.
    pub agent_id: Option<&'a str>,
    /// `tokens` or the configured currency.
    pub unit: &'a str,
    /// `day`, `month` or `total`.
    pub period: &'a str,
    /// The limit (as sent, so that a negative one can be named).
    pub limit: i128,
}

fn invalid((field, message): (&'static str, String)) -> ControlError {
    ControlError::Invalid { field, message }
}

/// The units a budget may have: tokens, and the configured currency.
fn currencies(state: &AppState) -> Vec<String> {
    vec![state.config.budgets.currency.clone()]
}

/// Creates a budget (event `budget.created`) and installs it on this node.
///
/// # Errors
///
/// [`ControlError::Invalid`] naming `agent_id`, `unit`, `period` or `limit`;
/// [`ControlError::Conflict`] beyond [`MAX_BUDGETS_PER_ORG`]; [`ControlError::Unavailable`].
pub async fn create(
    state: &AppState,
    org_id: &str,
    by: &str,
    request: &NewBudget<'_>,
) -> Result<Budget, ControlError> {
    let (unit, period, limit) = validate(
        request.unit,
        request.period,
        request.limit,
        &currencies(state),
    )
    .map_err(invalid)?;
    if let Some(agent) = request.agent_id {
        agent_in_org(state, org_id, agent, "agent_id").await?;
    }
    let live = state
        .store
        .list_budgets(org_id)
        .await
        .map_err(unavailable("the budgets could not be read"))?;
    if live.len() >= MAX_BUDGETS_PER_ORG {
        return Err(ControlError::Conflict(format!(
            "the organisation has {MAX_BUDGETS_PER_ORG} budgets, the most allowed; delete one first"
        )));
    }
    let now = state.clock.now_rfc3339();
    let budget = Budget {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org_id.to_string(),
        agent_id: request.agent_id.map(str::to_string),
        unit,
        period,
        limit,
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let event = NewEvent {
        org_id: org_id.to_string(),
        ts: now,
        agent_id: budget.agent_id.clone(),
        action_id: None,
        event_type: event_types::BUDGET_CREATED.to_string(),
        data: json!({
            "budget_id": budget.id,
            "agent_id": budget.agent_id,
            "unit": budget.unit,
            "period": budget.period.as_str(),
            "limit": budget.limit,
            "by": by,
        }),
    };
    let mutation = Mutation::InsertBudget {
        budget: budget.clone(),
        by: Some(by.to_string()),
    };
    commit(state, vec![mutation], vec![event]).await?;
    install(state, org_id).await;
    Ok(budget)
}

/// The organisation's live budgets, each with what its current window has spent.
///
/// # Errors
///
/// [`ControlError::Unavailable`].
pub async fn list(state: &AppState, org_id: &str) -> Result<Vec<BudgetStatus>, ControlError> {
    let budgets = state
        .store
        .list_budgets(org_id)
        .await
        .map_err(unavailable("the budgets could not be read"))?;
    super::budget::status(&state.store, org_id, &budgets, &state.clock.now_rfc3339())
        .await
        .map_err(ControlError::Unavailable)
}

/// One live budget of the organisation, with its current window's spend.
///
/// # Errors
///
/// [`ControlError::NotFound`]; [`ControlError::Unavailable`].
pub async fn get(state: &AppState, org_id: &str, id: &str) -> Result<BudgetStatus, ControlError> {
    list(state, org_id)
        .await?
        .into_iter()
        .find(|s| s.budget.id == id)
        .ok_or_else(|| ControlError::NotFound(format!("no budget {id} in your organisation")))
}

/// Changes a budget's limit (event `budget.updated`): from the answer on, reservations
/// check the new limit (what was spent stays).
///
/// # Errors
///
/// [`ControlError::Invalid`] naming `limit`; [`ControlError::NotFound`];
/// [`ControlError::Unavailable`].
pub async fn update(
    state: &AppState,
    org_id: &str,
    by: &str,
    id: &str,
    limit: i128,
) -> Result<BudgetStatus, ControlError> {
    let current = get(state, org_id, id).await?;
    let (_, _, limit) = validate(
        &current.budget.unit,
        current.budget.period.as_str(),
        limit,
        std::slice::from_ref(&current.budget.unit),
    )
    .map_err(invalid)?;
    let now = state.clock.now_rfc3339();
    let event = NewEvent {
        org_id: org_id.to_string(),
        ts: now.clone(),
        agent_id: current.budget.agent_id.clone(),
        action_id: None,
        event_type: event_types::BUDGET_UPDATED.to_string(),
        data: json!({
            "budget_id": id,
            "old_limit": current.budget.limit,
            "limit": limit,
            "by": by,
        }),
    };
    let mutation = Mutation::UpdateBudget {
        org_id: org_id.to_string(),
        id: id.to_string(),
        limit,
        now,
    };
    commit(state, vec![mutation], vec![event]).await?;
    install(state, org_id).await;
    get(state, org_id, id).await
}

/// Deletes a budget (event `budget.deleted`; it is kept, marked deleted).
///
/// # Errors
///
/// [`ControlError::NotFound`]; [`ControlError::Unavailable`].
pub async fn delete(
    state: &AppState,
    org_id: &str,
    by: &str,
    id: &str,
) -> Result<(), ControlError> {
    let now = state.clock.now_rfc3339();
    let event = NewEvent {
        org_id: org_id.to_string(),
        ts: now.clone(),
        agent_id: None,
        action_id: None,
        event_type: event_types::BUDGET_DELETED.to_string(),
        data: json!({ "budget_id": id, "by": by }),
    };
    let mutation = Mutation::DeleteBudget {
        org_id: org_id.to_string(),
        id: id.to_string(),
        by: by.to_string(),
        now,
    };
    commit(state, vec![mutation], vec![event]).await?;
    install(state, org_id).await;
    Ok(())
}

/// Sets the organisation's circuit breakers (event `circuit_breakers.set`).
///
/// # Errors
///
/// [`ControlError::Invalid`] naming the field; [`ControlError::Unavailable`].
pub async fn set_breakers(
    state: &AppState,
    org_id: &str,
    by: &str,
    breakers: CircuitBreakers,
) -> Result<CircuitBreakers, ControlError> {
    breakers.validate().map_err(invalid)?;
    let old = super::breaker::effective(state, org_id);
    let now = state.clock.now_rfc3339();
    let config = serde_json::to_value(breakers).map_err(|e| {
        ControlError::Unavailable(format!("the settings could not be encoded: {e}"))
    })?;
    let event = NewEvent {
        org_id: org_id.to_string(),
        ts: now.clone(),
        agent_id: None,
        action_id: None,
        event_type: event_types::CIRCUIT_BREAKERS_SET.to_string(),
        data: json!({ "old": old, "new": config, "by": by }),
    };
    let mutation = Mutation::SetCircuitBreakers {
        org_id: org_id.to_string(),
        config,
        by: by.to_string(),
        now,
    };
    commit(state, vec![mutation], vec![event]).await?;
    install(state, org_id).await;
    Ok(breakers)
}
