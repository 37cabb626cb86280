//! Stage 0 of the pipeline: the guards of runtime protection, asked before anything else.
//! A refusal is a deny that no policy made: the action is recorded (stage 4) with the
//! guard's reason and goes no further; no policy is evaluated and no connector is asked.
//!
//! Every refusal's reason starts with the guard's name and a colon (`kill_switch:`,
//! `rate_limit:`, `budget:`), ARCHITECTURE.md.
//!
//! The guards run in this order: kill switches, rate limits, budgets. The budget guard
//! reserves what the action expects to use ([`crate::runtime::budget::reserve`]); the
//! reservation is settled when the action's outcome is recorded, and released when it is
//! denied.

use aaf_core::action::{ActionRequest, Decision};
use aaf_core::rate_limit::RateLimit;

use super::PipelineError;
use crate::app::AppState;
use crate::runtime::budget::{BudgetStatus, OverBudget};
use crate::runtime::rate_limit::OverLimit;
use crate::runtime::Refusal;

/// The guard that refused an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// A kill switch in force stops the action (or the node cannot confirm which do).
    KillSwitch,
    /// A rate limit is over (or its shared counter cannot be reached).
    RateLimit,
    /// A budget cannot take the action (or the budgets cannot be reached).
    Budget,
}

impl Guard {
    /// The guard's name, as recorded (`kill_switch`, `rate_limit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::KillSwitch => "kill_switch",
            Guard::RateLimit => "rate_limit",
            Guard::Budget => "budget",
        }
    }
}

/// A guard's refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Which guard.
    pub guard: Guard,
    /// Why, starting with the guard's name and a colon.
    pub reason: String,
    /// The kill switch that stopped the action, if one did.
    pub kill_switch_id: Option<String>,
    /// The rate limit that was over, and how long until the action would be admitted (ms).
    pub rate_limit: Option<(Box<RateLimit>, u64)>,
    /// The budget that refused, if one did.
    pub budget_id: Option<String>,
}

impl Refused {
    /// The deny to record.
    pub fn decision(&self) -> Decision {
        Decision::fail_closed(self.reason.clone())
    }

    /// What the `action.decided` event records of the refusal.
    pub fn audit_data(&self) -> serde_json::Value {
        let mut data = serde_json::json!({ "guard": self.guard.as_str() });
        if let Some(id) = &self.kill_switch_id {
            data["kill_switch_id"] = id.as_str().into();
        }
        if let Some((limit, retry_after_ms)) = &self.rate_limit {
            data["rate_limit_id"] = limit.id.as_str().into();
            data["retry_after_ms"] = (*retry_after_ms).into();
        }
        if let Some(id) = &self.budget_id {
            data["budget_id"] = id.as_str().into();
        }
        data
    }
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Refused {
        Refused {
            guard: Guard::KillSwitch,
            kill_switch_id: r.kill_switch_id().map(str::to_string),
            reason: r.reason().to_string(),
            rate_limit: None,
            budget_id: None,
        }
    }
}

impl From<OverLimit> for Refused {
    fn from(o: OverLimit) -> Refused {
        Refused {
            guard: Guard::RateLimit,
            reason: o.reason,
            kill_switch_id: None,
            rate_limit: Some((Box::new(o.limit), o.retry_after_ms)),
            budget_id: None,
        }
    }
}

impl From<OverBudget> for Refused {
    fn from(o: OverBudget) -> Refused {
        Refused {
            guard: Guard::Budget,
            reason: o.reason,
            kill_switch_id: None,
            rate_limit: None,
            budget_id: o.budget_id,
        }
    }
}

/// What the guards found about an action they let through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passed {
    /// A rate limit in `policy` mode that counts the action is over
    /// (`input.usage.rate_limit_exceeded`).
    pub rate_limit_exceeded: bool,
    /// The budgets that count the action, after its reservation; `None` when none was
    /// made (no budget applies, or a dry run).
    pub budgets: Option<Vec<BudgetStatus>>,
}

/// The kill-switch guard alone, for an action already recorded (approving it, running it
/// after approval): no rate limit counts it again.
///
/// # Errors
///
/// [`Refused`] when a kill switch stops it.
pub fn kill_switch(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    tool: &str,
) -> Result<(), Refused> {
    state
        .runtime
        .check(org_id, agent_id, tool, || state.clock.now_rfc3339())
        .map_err(Refused::from)
}

/// Every guard for a new action `action_id` of `agent_id` in `org_id`: the kill switches,
/// then the rate limits (the configuration's, then the organisation's), which count it, then
/// the budgets that apply to the agent, of which it reserves what it expects to use.
///
/// # Errors
///
/// `Ok(Err(Refused))` when a guard refuses it (a budget refusal may trip a circuit
/// breaker); [`PipelineError::Invalid`] for a malformed `context.expected_usage`.
pub async fn check(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    request: &ActionRequest,
    action_id: &str,
) -> Result<Result<Passed, Refused>, PipelineError> {
    if let Err(refused) = kill_switch(state, org_id, agent_id, &request.tool) {
        return Ok(Err(refused));
    }
    let rules = &state.runtime;
    let store = &state.store;
    let tool = request.tool.as_str();
    // A malformed declaration is refused (400) before any limit counts the action.
    let budgets = rules.budgets(org_id, agent_id);
    let expected = if budgets.is_empty() && !request.context.contains_key("expected_usage") {
        None
    } else {
        Some(
            crate::runtime::budget::expected(request, &state.config.budgets)
                .map_err(|(field, message)| PipelineError::Invalid { field, message })?,
        )
    };
    let mut passed = Passed::default();
    let org_limits = rules.rate_limits(org_id);
    for limits in [Some(&rules.default_limits[..]), org_limits.as_deref()]
        .into_iter()
        .flatten()
        .filter(|l| !l.is_empty())
    {
        let take = crate::runtime::rate_limit::take(
            store,
            &rules.counters,
            limits,
            org_id,
            agent_id,
            tool,
        );
        match take.await {
            Ok(exceeded) => passed.rate_limit_exceeded |= exceeded,
            Err(over) => return Ok(Err(over.into())),
        }
    }
    let Some(expected) = expected.filter(|_| !budgets.is_empty()) else {
        return Ok(Ok(passed));
    };
    let reserved = crate::runtime::budget::reserve(
        store,
        &budgets,
        org_id,
        agent_id,
        action_id,
        &expected,
        &state.clock.now_rfc3339(),
    )
    .await;
    match reserved {
        Ok(statuses) => {
            crate::runtime::breaker::after_spend(state, org_id, agent_id).await;
            passed.budgets = Some(statuses);
            Ok(Ok(passed))
        }
        Err(over) => {
            crate::runtime::breaker::after_budget_refusal(state, org_id, agent_id, &over).await;
            Ok(Err(over.into()))
        }
    }
}
