//! Circuit breakers (docs/runtime-protection.md, "Circuit breakers"): an agent's kill switch
//! engaged automatically, without a human, when
//!
//! - an action is refused because one of its budgets is exhausted (`budget_exhausted`);
//! - it has more than `max_denials` denied actions within `denials_window_seconds` (seed
//!   000's "more than 10 denials in 5 minutes");
//! - its spend in `spike_window_seconds` passes `spend_spike_multiple` times its usual
//!   spend for such a window (its average over `baseline_seconds`), and at least
//!   `spike_min_spend`.
//!
//! A tripped breaker engages a kill switch of the agent with source `circuit_breaker`,
//! recorded (`circuit_breaker.tripped`, `kill_switch.engaged`) and announced by webhook
//! (`kill_switch.engaged`); it releases itself after `cooldown_seconds` (0: only an admin
//! releases it). An organisation sets its own breakers (`PUT /v1/circuit-breakers`), or the
//! configuration's `runtime.circuit_breakers` apply.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::budget::OverBudget;
use super::control::MAX_EXPIRES_IN_SECONDS;
use crate::app::AppState;

/// Longest window or baseline a breaker may look back over, in seconds (31 days).
pub const MAX_WINDOW_SECONDS: u64 = 31 * 24 * 3600;

/// Most denials `max_denials` may allow.
pub const MAX_DENIALS: u32 = 1_000_000;

/// Largest `spend_spike_multiple`.
pub const MAX_SPIKE_MULTIPLE: u32 = 1000;

/// The circuit breakers of an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreakers {
    /// Stop the agent when an action is refused because one of its budgets is exhausted.
    /// Default true.
    pub budget_exhausted: bool,
    /// Stop the agent when it has more than this many denied actions within
    /// `denials_window_seconds`, at most 1000000; 0 (the default) turns this breaker off.
    #[schema(maximum = 1_000_000)]
    pub max_denials: u32,
    /// The window of `max_denials`, in seconds, 1 to 2678400. Default 300.
    #[schema(minimum = 1, maximum = 2_678_400)]
    pub denials_window_seconds: u64,
    /// Stop the agent when its spend (in the configured currency) within
    /// `spike_window_seconds` passes this multiple of its usual spend for such a window; 0
    /// (the default) turns this breaker off; at most 1000.
    #[schema(maximum = 1000)]
    pub spend_spike_multiple: u32,
    /// The short window of the spike breaker, in seconds, 1 to 2678400. Default 300.
    #[schema(minimum = 1, maximum = 2_678_400)]
    pub spike_window_seconds: u64,
    /// How far back the usual spend is averaged, in seconds (longer than the short window,
    /// at most 2678400). Default 86400.
    #[schema(minimum = 1, maximum = 2_678_400)]
    pub baseline_seconds: u64,
    /// Least spend within the short window (micro-units) before a spike counts, so that a
    /// new agent's first spending does not trip it; at most 10^15. Default 1000000.
    #[schema(maximum = 1_000_000_000_000_000_u64)]
    pub spike_min_spend: u64,
    /// Seconds until a breaker's kill switch releases itself, at most 31536000; 0: only an
    /// admin releases it. Default 3600.
    #[schema(maximum = 31_536_000)]
    pub cooldown_seconds: u64,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        CircuitBreakers {
            budget_exhausted: true,
            max_denials: 0,
            denials_window_seconds: 300,
            spend_spike_multiple: 0,
            spike_window_seconds: 300,
            baseline_seconds: 86_400,
            spike_min_spend: 1_000_000,
            cooldown_seconds: 3600,
        }
    }
}

impl CircuitBreakers {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// `(field, message)` for the first bad field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, seconds) in [
            ("denials_window_seconds", self.denials_window_seconds),
            ("spike_window_seconds", self.spike_window_seconds),
            ("baseline_seconds", self.baseline_seconds),
        ] {
            if !(1..=MAX_WINDOW_SECONDS).contains(&seconds) {
                return Err((
                    field,
                    format!("must be from 1 to {MAX_WINDOW_SECONDS} seconds, not {seconds}"),
                ));
            }
        }
        if self.baseline_seconds <= self.spike_window_seconds {
            return Err((
                "baseline_seconds",
                "must be longer than spike_window_seconds".into(),
            ));
        }
        if self.max_denials > MAX_DENIALS {
            return Err((
                "max_denials",
                format!("must be at most {MAX_DENIALS}, not {}", self.max_denials),
            ));
        }
        if self.spend_spike_multiple > MAX_SPIKE_MULTIPLE {
            return Err((
                "spend_spike_multiple",
                format!(
                    "must be at most {MAX_SPIKE_MULTIPLE}, not {}",
                    self.spend_spike_multiple
                ),
            ));
        }
        if self.spike_min_spend > aaf_core::budget::MAX_LIMIT {
            return Err((
                "spike_min_spend",
                format!(
                    "must be at most {}, not {}",
                    aaf_core::budget::MAX_LIMIT,
                    self.spike_min_spend
                ),
            ));
        }
        if self.cooldown_seconds > MAX_EXPIRES_IN_SECONDS {
            return Err((
                "cooldown_seconds",
                format!(
                    "must be at most {MAX_EXPIRES_IN_SECONDS} seconds, not {}",
                    self.cooldown_seconds
                ),
            ));
        }
        Ok(())
    }

    fn cooldown(&self) -> Option<u64> {
        (self.cooldown_seconds > 0).then_some(self.cooldown_seconds)
    }
}

/// The breakers in force for the organisation: its own, else the configuration's.
pub fn effective(state: &AppState, org_id: &str) -> CircuitBreakers {
    state
        .runtime
        .breakers(org_id)
        .map_or(state.config.runtime.circuit_breakers, |b| *b)
}

/// `seconds` before now, RFC 3339 UTC as actions are stored.
fn seconds_ago(state: &AppState, seconds: u64) -> String {
    let now = state.clock.now();
    let back = time::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX));
    crate::time::format_rfc3339(now.checked_sub(back).unwrap_or(now))
}

/// Engages the agent's kill switch unless a breaker's switch stops it already; a failure
/// is logged (the action that tripped it is refused or recorded either way).
async fn trip(state: &AppState, org_id: &str, agent_id: &str, breaker: &str, reason: &str) {
    if state
        .runtime
        .breaker_engaged(org_id, agent_id, &state.clock.now_rfc3339())
    {
        return;
    }
    let cooldown = effective(state, org_id).cooldown();
    if let Err(e) = super::control::trip(state, org_id, agent_id, breaker, reason, cooldown).await {
        tracing::error!(%org_id, %agent_id, %breaker, error = %e, "a circuit breaker tripped but the kill switch could not be engaged");
    }
}

/// After the budget guard refused an action: trips `budget_exhausted` when that budget is
/// exhausted.
pub async fn after_budget_refusal(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    refusal: &OverBudget,
) {
    if refusal.exhausted && effective(state, org_id).budget_exhausted {
        let reason = refusal
            .reason
            .strip_prefix("budget: ")
            .unwrap_or(&refusal.reason);
        trip(state, org_id, agent_id, "budget_exhausted", reason).await;
    }
}

/// After a deny was recorded: trips `max_denials` when the agent has more denials than
/// that within the window.
pub async fn after_denial(state: &AppState, org_id: &str, agent_id: &str) {
    let breakers = effective(state, org_id);
    if breakers.max_denials == 0 {
        return;
    }
    let ago = |s: u64| seconds_ago(state, s);
    let window = ago(breakers.denials_window_seconds);
    let since = [window.as_str(), window.as_str(), window.as_str()];
    match state.store.agent_usage(org_id, agent_id, since).await {
        Ok(usage) if usage.denials_last_5_minutes > u64::from(breakers.max_denials) => {
            let reason = format!(
                "{} denied actions within {} seconds (more than {})",
                usage.denials_last_5_minutes, breakers.denials_window_seconds, breakers.max_denials
            );
            trip(state, org_id, agent_id, "max_denials", &reason).await;
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(%org_id, %agent_id, error = %e, "the denial circuit breaker could not count the agent's denials");
        }
    }
}

/// After the agent spent (a reservation or a settlement in the configured currency): trips
/// `spend_spike_multiple` when its recent spend passes that multiple of its usual spend.
pub async fn after_spend(state: &AppState, org_id: &str, agent_id: &str) {
    let breakers = effective(state, org_id);
    if breakers.spend_spike_multiple == 0 {
        return;
    }
    let ago = |s: u64| seconds_ago(state, s);
    let unit = &state.config.budgets.currency;
    let recent = state
        .store
        .agent_spend_since(org_id, agent_id, unit, &ago(breakers.spike_window_seconds))
        .await;
    let baseline = state
        .store
        .agent_spend_since(org_id, agent_id, unit, &ago(breakers.baseline_seconds))
        .await;
    let (recent, baseline) = match (recent, baseline) {
        (Ok(r), Ok(b)) => (r, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(%org_id, %agent_id, error = %e, "the spend-spike circuit breaker could not read the agent's spend");
            return;
        }
    };
    // The usual spend per short window: what the baseline period spent before the short
    // window, spread over its length.
    let before = baseline.saturating_sub(recent);
    let periods = (breakers.baseline_seconds - breakers.spike_window_seconds)
        / breakers.spike_window_seconds.max(1);
    let usual = before / periods.max(1);
    let threshold = usual.saturating_mul(u64::from(breakers.spend_spike_multiple));
    if recent >= breakers.spike_min_spend && recent > threshold {
        let reason = format!(
            "spent {recent} {unit} micro-units within {} seconds, more than {} times its usual {usual}",
            breakers.spike_window_seconds, breakers.spend_spike_multiple
        );
        trip(state, org_id, agent_id, "spend_spike", &reason).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        assert!(CircuitBreakers::default().validate().is_ok());
        let bad = CircuitBreakers {
            denials_window_seconds: 0,
            ..CircuitBreakers::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "denials_window_seconds");
        let bad = CircuitBreakers {
            baseline_seconds: 300,
            ..CircuitBreakers::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "baseline_seconds");
        let bad = CircuitBreakers {
            cooldown_seconds: u64::MAX,
            ..CircuitBreakers::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "cooldown_seconds");
        // Beyond the integers the audit chain's canonical JSON holds exactly.
        let bad = CircuitBreakers {
            spike_min_spend: 1 << 63,
            ..CircuitBreakers::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "spike_min_spend");
        let parsed: CircuitBreakers =
            serde_json::from_value(serde_json::json!({"max_denials": 10})).unwrap();
        assert_eq!(parsed.max_denials, 10);
        assert!(parsed.budget_exhausted);
    }
}
