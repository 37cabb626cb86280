//! Stage 0 of the pipeline: the guards of runtime protection, asked before anything else.
//! A refusal is a deny that no policy made: the action is recorded (stage 4) with the
//! guard's reason and goes no further; no policy is evaluated and no connector is asked.
//!
//! Every refusal's reason starts with the guard's name and a colon (`kill_switch:`,
//! `rate_limit:`; to come: `budget:`), ARCHITECTURE.md.

use aaf_core::action::Decision;
use aaf_core::rate_limit::RateLimit;

use crate::app::AppState;
use crate::runtime::rate_limit::OverLimit;
use crate::runtime::Refusal;

/// The guard that refused an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// A kill switch in force stops the action (or the node cannot confirm which do).
    KillSwitch,
    /// A rate limit is over (or its shared counter cannot be reached).
    RateLimit,
}

impl Guard {
    /// The guard's name, as recorded (`kill_switch`, `rate_limit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Guard::KillSwitch => "kill_switch",
            Guard::RateLimit => "rate_limit",
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
        }
    }
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

/// Every guard for a new action of `agent_id` on `tool` in `org_id`: the kill switches, then
/// the rate limits (the configuration's, then the organisation's), which count it.
///
/// # Errors
///
/// [`Refused`] when a guard refuses it.
pub async fn check(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    tool: &str,
) -> Result<(), Refused> {
    kill_switch(state, org_id, agent_id, tool)?;
    let rules = &state.runtime;
    let store = &state.store;
    if !rules.default_limits.is_empty() {
        let take = crate::runtime::rate_limit::take(
            store,
            &rules.counters,
            &rules.default_limits,
            org_id,
            agent_id,
            tool,
        );
        take.await.map_err(Refused::from)?;
    }
    if let Some(limits) = rules.rate_limits(org_id) {
        let take = crate::runtime::rate_limit::take(
            store,
            &rules.counters,
            &limits,
            org_id,
            agent_id,
            tool,
        );
        take.await.map_err(Refused::from)?;
    }
    Ok(())
}
