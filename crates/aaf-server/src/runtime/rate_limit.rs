//! The rate-limit guard: counts an action under every limit that applies to it and refuses
//! it when one is over (docs/runtime-protection.md, "Rate limits").
//!
//! Which limits apply comes from this node's copy of the organisation's rules
//! ([`super::RuntimeRules::rate_limits`]) and the configuration's defaults
//! (`runtime.rate_limits`). Where they are counted depends on the store:
//!
//! - SQLite (one node): in memory, with `governor`'s keyed GCRA limiters, one per limit;
//! - PostgreSQL (several nodes): in the shared table `rate_limit_counters`, one atomic GCRA
//!   step per action and limit on the database's clock ([`Store::rate_limit_take`]), so the
//!   limit holds for the cluster, not per node. A counter that cannot be reached refuses the
//!   action (fail closed).
//!
//! An action is counted by each limit in turn and stops at the first refusal; the limits
//! before it have counted it (a refused action costs its caller, as in any GCRA).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aaf_core::kill_switch::{parse_target, KillSwitchScope};
use aaf_core::rate_limit::{LimitMode, RateLimit, Window, MAX_COUNT};
use aaf_store::Store;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A refusal by a rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    /// The limit that refused.
    pub limit: RateLimit,
    /// How long until the action would be admitted, in milliseconds (at least 1).
    pub retry_after_ms: u64,
    /// The reason to record, starting with `rate_limit:`.
    pub reason: String,
}

/// The node's in-memory counters (used on SQLite), one `governor` limiter per limit.
#[derive(Default)]
pub struct LocalCounters {
    limiters: Mutex<HashMap<String, Arc<Limiter>>>,
}

struct Limiter {
    /// The limit's parameters the limiter was built with (a default can change across
    /// restarts only, but a changed one must not reuse counters).
    params: (u32, u64, u32),
    limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for LocalCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCounters").finish_non_exhaustive()
    }
}

fn quota(limit: &RateLimit) -> Quota {
    let period = Duration::from_micros(limit.emission_interval_us());
    let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
    // `with_period` refuses only a zero period; the interval is at least 1 µs.
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl LocalCounters {
    fn limiter(&self, limit: &RateLimit) -> Arc<Limiter> {
        let params = (limit.limit, limit.window.seconds(), limit.burst);
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match limiters.get(&limit.id) {
            Some(l) if l.params == params => Arc::clone(l),
            _ => {
                let l = Arc::new(Limiter {
                    params,
                    limiter: RateLimiter::keyed(quota(limit)),
                });
                limiters.insert(limit.id.clone(), Arc::clone(&l));
                l
            }
        }
    }

    /// One GCRA step of `limit` for `counter` (which names the organisation: the
    /// configuration's limits apply to each organisation separately): `Err(retry_after_ms)`
    /// when over.
    fn take(&self, limit: &RateLimit, counter: String) -> Result<(), u64> {
        let l = self.limiter(limit);
        match l.limiter.check_key(&counter) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1))
            }
        }
    }

    /// Forgets counters that are back to a full burst, and limiters of limits that are
    /// gone (`live`: the ids of every limit in force).
    pub fn housekeeping(&self, live: &[String]) {
        let mut limiters = self
            .limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        limiters.retain(|id, _| live.contains(id));
        for l in limiters.values() {
            l.limiter.retain_recent();
        }
    }
}

/// A rate limit as asked for (over the API or in the configuration), before it is checked.
#[derive(Debug, Clone, Copy)]
pub struct LimitSpec<'a> {
    /// `org`, `agent`, `tool` or `agent_tool`.
    pub scope: &'a str,
    /// Only this agent, tool or `<agent_id>:<tool>`; `None`: each separately.
    pub target: Option<&'a str>,
    /// Actions per window.
    pub limit: u32,
    /// `second`, `minute` or `hour`.
    pub window: &'a str,
    /// Most at once (default `limit`).
    pub burst: Option<u32>,
    /// `enforce` (default) or `policy`.
    pub mode: Option<&'a str>,
}

/// Checks and builds a rate limit: `scope`, `target` (as for kill switches, but optional:
/// without it the limit applies to each agent or tool separately), `limit` and `burst`
/// (default `limit`) from 1 to [`MAX_COUNT`], `window` `second`, `minute` or `hour`, `mode`
/// `enforce` (the default) or `policy`.
///
/// # Errors
///
/// `(field, message)` for the first bad field.
pub fn build(
    id: String,
    org_id: String,
    spec: &LimitSpec<'_>,
) -> Result<RateLimit, (&'static str, String)> {
    let LimitSpec {
        scope,
        target,
        limit,
        window,
        burst,
        mode,
    } = *spec;
    let mode = match mode {
        None => LimitMode::Enforce,
        Some(m) => {
            LimitMode::parse(m).ok_or(("mode", format!("must be enforce or policy, not {m:?}")))?
        }
    };
    let scope = KillSwitchScope::parse(scope).ok_or((
        "scope",
        format!("unknown scope {scope:?}; expected one of org, agent, tool, agent_tool"),
    ))?;
    let target = target.map(str::trim).filter(|t| !t.is_empty());
    let (agent_id, tool) = match (scope, target) {
        (KillSwitchScope::Org, None) => (None, None),
        (KillSwitchScope::Org, Some(_)) => {
            return Err(("target", "scope org takes no target".into()))
        }
        (KillSwitchScope::AgentTool, Some(t)) if !t.contains(':') => {
            return Err(("target", "scope agent_tool takes <agent_id>:<tool>".into()))
        }
        (_, None) => (None, None),
        (scope, Some(t)) => {
            parse_target(scope, Some(t), &org_id).map_err(|e| ("target", e.to_string()))?
        }
    };
    let window = Window::parse(window).ok_or((
        "window",
        format!("must be second, minute or hour, not {window:?}"),
    ))?;
    let burst = burst.unwrap_or(limit);
    for (field, n) in [("limit", limit), ("burst", burst)] {
        if !(1..=MAX_COUNT).contains(&n) {
            return Err((field, format!("must be from 1 to {MAX_COUNT}, not {n}")));
        }
    }
    Ok(RateLimit {
        id,
        org_id,
        scope,
        agent_id,
        tool,
        limit,
        window,
        burst,
        mode,
    })
}

/// Counts an action of `agent_id` on `tool` in `org_id` under every limit of `limits` that
/// applies to it: `Ok(true)` when a limit in `policy` mode is over (left to the policies).
///
/// # Errors
///
/// [`OverLimit`] for the first limit in `enforce` mode that is over, or whose shared
/// counter could not be reached, in either mode (then `retry_after_ms` is 1000 and the
/// reason says so).
pub async fn take(
    store: &Store,
    local: &LocalCounters,
    limits: &[RateLimit],
    org_id: &str,
    agent_id: &str,
    tool: &str,
) -> Result<bool, OverLimit> {
    let mut exceeded = false;
    for limit in limits.iter().filter(|l| l.applies(agent_id, tool)) {
        let counter = limit.counter(agent_id, tool);
        let outcome = if store.shares_rate_limit_counters() {
            match store
                .rate_limit_take(
                    org_id,
                    &counter,
                    limit.emission_interval_us(),
                    limit.tolerance_us(),
                )
                .await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(wait_us)) => Err(wait_us.div_ceil(1000).max(1)),
                Err(e) => {
                    return Err(OverLimit {
                        limit: limit.clone(),
                        retry_after_ms: 1000,
                        reason: format!(
                            "rate_limit: the shared counter of limit {} could not be reached, so the action is refused: {e}",
                            limit.id
                        ),
                    })
                }
            }
        } else {
            local.take(limit, format!("{org_id}|{counter}"))
        };
        if let Err(retry_after_ms) = outcome {
            if limit.mode == LimitMode::Policy {
                exceeded = true;
                continue;
            }
            return Err(OverLimit {
                reason: limit.refusal(retry_after_ms),
                limit: limit.clone(),
                retry_after_ms,
            });
        }
    }
    Ok(exceeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_counters_admit_the_burst_per_counter() {
        let local = LocalCounters::default();
        let limit = RateLimit {
            id: "rl".into(),
            org_id: "o".into(),
            scope: KillSwitchScope::Agent,
            agent_id: None,
            tool: None,
            limit: 60,
            window: Window::Hour,
            burst: 5,
            mode: LimitMode::Enforce,
        };
        for _ in 0..5 {
            assert!(local.take(&limit, limit.counter("a1", "t")).is_ok());
        }
        let wait = local.take(&limit, limit.counter("a1", "t")).unwrap_err();
        assert!(
            (55_000..=60_000).contains(&wait),
            "about one interval: {wait} ms"
        );
        assert!(
            local.take(&limit, limit.counter("a2", "t")).is_ok(),
            "each agent its own"
        );
        local.housekeeping(&[]);
        assert!(local.limiters.lock().unwrap().is_empty());
    }
}
