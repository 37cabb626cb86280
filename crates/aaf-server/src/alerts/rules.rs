//! The built-in alert rules: what each one watches, and how a [`Signal`] becomes a
//! [`Hit`] of a rule about a subject (docs/alerts.md, "Rules").
//!
//! Counted rules read their windows from the shared database (denied actions from
//! `actions`, failed authentications from `alert_hits`), so every node counts every node's
//! events; a window starts no earlier than the last time an alert of the same rule and
//! subject was resolved, so resolving an alert starts counting afresh.

use serde_json::{json, Value};

use super::{Signal, SignalSource};
use crate::app::AppState;
use aaf_store::StoreError;

/// A built-in alert rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// More than `alerts.denials_threshold` denied actions of one agent within
    /// `alerts.denials_window_seconds`. Subject `agent:<id>`.
    RepeatedDenials,
    /// More than `alerts.failed_auth_address_threshold` failed authentications of the
    /// organisation's credentials from one client address within the window. Subject
    /// `address:<ip>`.
    FailedAuthAddress,
    /// More than `alerts.failed_auth_org_threshold` failed authentications of the
    /// organisation's credentials within the window. Subject `org`.
    FailedAuthOrg,
    /// An action whose risk score (the higher of its own behavioural score and its agent's
    /// configured `risk_score`) is at least `alerts.high_risk_score`. Subject `agent:<id>`.
    HighRiskSubmission,
    /// An action waiting for approval expired unanswered. Subject `agent:<id>`.
    ApprovalTimeout,
    /// A detector found something in data coming back to an agent. Subject
    /// `agent:<id>:detector:<name>`.
    OutboundDetection,
    /// A kill switch was engaged (by a person or an isolation; a circuit breaker's is
    /// [`Rule::CircuitBreakerTripped`]). Subject `kill_switch:<scope>:<target>`.
    KillSwitchEngaged,
    /// A circuit breaker stopped an agent. Subject `agent:<id>`.
    CircuitBreakerTripped,
    /// A budget's current window spent at least one of `alerts.budget_percentages` of its
    /// limit. Subject `budget:<id>:<window>:<percent>`.
    BudgetThreshold,
}

impl Rule {
    /// Every rule, in the order docs/alerts.md lists them.
    pub const ALL: [Rule; 9] = [
        Rule::RepeatedDenials,
        Rule::FailedAuthAddress,
        Rule::FailedAuthOrg,
        Rule::HighRiskSubmission,
        Rule::ApprovalTimeout,
        Rule::OutboundDetection,
        Rule::KillSwitchEngaged,
        Rule::CircuitBreakerTripped,
        Rule::BudgetThreshold,
    ];

    /// The rule's name, as stored, configured and filtered by.
    pub fn name(self) -> &'static str {
        match self {
            Rule::RepeatedDenials => "repeated_denials",
            Rule::FailedAuthAddress => "failed_auth_address",
            Rule::FailedAuthOrg => "failed_auth_org",
            Rule::HighRiskSubmission => "high_risk_submission",
            Rule::ApprovalTimeout => "approval_timeout",
            Rule::OutboundDetection => "outbound_detection",
            Rule::KillSwitchEngaged => "kill_switch_engaged",
            Rule::CircuitBreakerTripped => "circuit_breaker_tripped",
            Rule::BudgetThreshold => "budget_threshold",
        }
    }

    /// The rule of this name, if any.
    pub fn parse(name: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Every rule's name, comma-separated (for error messages).
    pub fn names() -> String {
        Rule::ALL.map(Rule::name).join(", ")
    }

    /// How urgent its alerts are: `info`, `warning` or `critical` (a budget threshold's
    /// depends on the percentage; see [`Hit::severity`]).
    pub fn severity(self) -> &'static str {
        match self {
            Rule::ApprovalTimeout => "info",
            Rule::RepeatedDenials
            | Rule::FailedAuthAddress
            | Rule::FailedAuthOrg
            | Rule::HighRiskSubmission
            | Rule::BudgetThreshold => "warning",
            Rule::OutboundDetection | Rule::KillSwitchEngaged | Rule::CircuitBreakerTripped => {
                "critical"
            }
        }
    }

    /// Whether the rule's alerts name an agent whose kill switch it may engage
    /// (`alerts.kill_switch_rules`); the others have no agent, or stopped it already.
    pub fn may_stop_agent(self) -> bool {
        matches!(
            self,
            Rule::RepeatedDenials
                | Rule::HighRiskSubmission
                | Rule::ApprovalTimeout
                | Rule::OutboundDetection
                | Rule::BudgetThreshold
        )
    }
}

/// One hit of a rule: the alert to raise, or to add to when one is open.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// The organisation.
    pub org_id: String,
    /// The rule.
    pub rule: Rule,
    /// What it is about (see each [`Rule`]).
    pub subject: String,
    /// The agent concerned, if any.
    pub agent_id: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: &'static str,
    /// One line for people.
    pub summary: String,
    /// Rule-specific details (JSON object; never secrets).
    pub detail: Value,
}

impl Hit {
    fn new(org_id: &str, rule: Rule, subject: String, agent_id: Option<&str>) -> Hit {
        Hit {
            org_id: org_id.to_string(),
            rule,
            subject,
            agent_id: agent_id.map(str::to_string),
            severity: rule.severity(),
            summary: String::new(),
            detail: json!({}),
        }
    }

    fn says(mut self, summary: String, detail: Value) -> Hit {
        self.summary = summary;
        self.detail = detail;
        self
    }
}

/// How long an agent's configured risk score is reused before it is read again.
const RISK_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Most agents whose risk score is remembered (the cache is emptied when full).
const RISK_CACHE: usize = 10_000;

/// The agents' configured risk scores (`POST /v1/agents` `risk_score`), read from the store
/// and reused for [`RISK_TTL`], so that `high_risk_submission` does not read the agent for
/// every action.
#[derive(Debug, Default)]
pub struct AgentRisks {
    scores: std::collections::HashMap<(String, String), (Option<f64>, std::time::Instant)>,
}

impl AgentRisks {
    /// The agent's configured risk score (`None`: no such agent).
    ///
    /// # Errors
    ///
    /// The store's, when the agent cannot be read.
    pub async fn get(
        &mut self,
        state: &AppState,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Option<f64>, StoreError> {
        let key = (org_id.to_string(), agent_id.to_string());
        if let Some((score, at)) = self.scores.get(&key) {
            if at.elapsed() < RISK_TTL {
                return Ok(*score);
            }
        }
        let score = state
            .store
            .get_agent(org_id, agent_id)
            .await?
            .map(|a| a.risk_score);
        if self.scores.len() >= RISK_CACHE {
            self.scores.clear();
        }
        self.scores.insert(key, (score, std::time::Instant::now()));
        Ok(score)
    }
}

/// `seconds` before `now` (RFC 3339 UTC).
fn seconds_before(now: time::OffsetDateTime, seconds: u64) -> String {
    let back = time::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX));
    crate::time::format_rfc3339(now.checked_sub(back).unwrap_or(now))
}

/// The start of a counted rule's window: `window_start`, or the time the last alert of the
/// rule about the subject was resolved when that is later.
async fn window_start(
    state: &AppState,
    org_id: &str,
    rule: Rule,
    subject: &str,
    window_start: String,
) -> Result<String, StoreError> {
    let resolved = state
        .store
        .last_resolved_alert_at(org_id, rule.name(), subject)
        .await?;
    Ok(match resolved {
        // RFC 3339 UTC strings of one format compare in time order.
        Some(at) if at > window_start => at,
        _ => window_start,
    })
}

/// The hits `signal` makes, in order.
///
/// # Errors
///
/// The store's error when a window or an agent could not be read (the caller retries and
/// counts a signal it gives up on).
pub async fn evaluate(
    state: &AppState,
    signal: &Signal,
    risks: &mut AgentRisks,
) -> Result<Vec<Hit>, StoreError> {
    let config = &state.config.alerts;
    let mut hits = Vec::new();
    match signal {
        Signal::Decided {
            org_id,
            agent_id,
            action_id,
            denied,
            risk_score,
        } => {
            if *denied && config.enabled(Rule::RepeatedDenials) {
                hits.extend(repeated_denials(state, org_id, agent_id, action_id).await?);
            }
            if config.enabled(Rule::HighRiskSubmission) {
                // The higher of the action's behavioural score and the agent's configured one.
                let configured = risks.get(state, org_id, agent_id).await?;
                let (score, source) = match (risk_score, configured) {
                    (Some(own), Some(agent)) if agent > *own => (Some(agent), "agent"),
                    (Some(own), _) => (Some(*own), "action"),
                    (None, agent) => (agent, "agent"),
                };
                if let Some(score) = score.filter(|s| *s >= config.high_risk_score) {
                    let subject = format!("agent:{agent_id}");
                    hits.push(
                        Hit::new(org_id, Rule::HighRiskSubmission, subject, Some(agent_id)).says(
                            format!(
                                "an action with risk score {score} (at least {}) was submitted",
                                config.high_risk_score
                            ),
                            json!({"action_id": action_id, "risk_score": score, "score_source": source, "threshold": config.high_risk_score}),
                        ),
                    );
                }
            }
            if config.enabled(Rule::BudgetThreshold) {
                hits.extend(budget_thresholds(state, org_id, agent_id).await?);
            }
        }
        Signal::Settled { org_id, agent_id } => {
            if config.enabled(Rule::BudgetThreshold) {
                hits.extend(budget_thresholds(state, org_id, agent_id).await?);
            }
        }
        Signal::AuthFailed {
            org_id,
            agent_id,
            address,
        } => {
            let now = state.clock.now();
            let at = crate::time::format_rfc3339(now);
            let start = seconds_before(now, config.failed_auth_window_seconds);
            let mut counted = Vec::new();
            if let Some(address) = address {
                counted.push((
                    Rule::FailedAuthAddress,
                    format!("address:{address}"),
                    config.failed_auth_address_threshold,
                ));
            }
            counted.push((
                Rule::FailedAuthOrg,
                "org".to_string(),
                config.failed_auth_org_threshold,
            ));
            for (rule, subject, threshold) in counted {
                if !config.enabled(rule) {
                    continue;
                }
                let since = window_start(state, org_id, rule, &subject, start.clone()).await?;
                let n = state
                    .store
                    .record_alert_hit(org_id, rule.name(), &subject, &at, &since)
                    .await?;
                if n > u64::from(threshold) {
                    let who = match rule {
                        Rule::FailedAuthAddress => format!(" from {subject}"),
                        _ => String::new(),
                    };
                    hits.push(
                        Hit::new(org_id, rule, subject.clone(), agent_id.as_deref()).says(
                            format!(
                                "{n} failed authentications{who} within {} seconds (more than {threshold})",
                                config.failed_auth_window_seconds
                            ),
                            json!({"failures": n, "window_seconds": config.failed_auth_window_seconds, "threshold": threshold, "address": address, "agent_id": agent_id}),
                        ),
                    );
                }
            }
        }
        Signal::ApprovalExpired {
            org_id,
            agent_id,
            action_id,
        } => {
            if config.enabled(Rule::ApprovalTimeout) {
                hits.push(
                    Hit::new(
                        org_id,
                        Rule::ApprovalTimeout,
                        format!("agent:{agent_id}"),
                        Some(agent_id),
                    )
                    .says(
                        "an action waiting for approval expired unanswered".to_string(),
                        json!({"action_id": action_id}),
                    ),
                );
            }
        }
        Signal::DetectorHit {
            org_id,
            agent_id,
            detector,
            action_id,
        } => {
            if config.enabled(Rule::OutboundDetection) {
                hits.push(
                    Hit::new(
                        org_id,
                        Rule::OutboundDetection,
                        format!("agent:{agent_id}:detector:{detector}"),
                        Some(agent_id),
                    )
                    .says(
                        format!("detector {detector} matched data returned to the agent"),
                        json!({"detector": detector, "action_id": action_id}),
                    ),
                );
            }
        }
        Signal::KillSwitchEngaged {
            org_id,
            kill_switch_id,
            scope,
            target,
            agent_id,
            source,
            reason,
        } => {
            if *source != SignalSource::CircuitBreaker && config.enabled(Rule::KillSwitchEngaged) {
                let shown = if target.is_empty() {
                    String::new()
                } else {
                    format!(" {target}")
                };
                hits.push(
                    Hit::new(
                        org_id,
                        Rule::KillSwitchEngaged,
                        format!("kill_switch:{scope}:{target}"),
                        agent_id.as_deref(),
                    )
                    .says(
                        format!("kill switch engaged on {scope}{shown}: {reason}"),
                        json!({"kill_switch_id": kill_switch_id, "scope": scope, "target": target, "source": source.as_str(), "reason": reason}),
                    ),
                );
            }
        }
        Signal::CircuitBreakerTripped {
            org_id,
            agent_id,
            breaker,
            kill_switch_id,
            reason,
        } => {
            if config.enabled(Rule::CircuitBreakerTripped) {
                hits.push(
                    Hit::new(
                        org_id,
                        Rule::CircuitBreakerTripped,
                        format!("agent:{agent_id}"),
                        Some(agent_id),
                    )
                    .says(
                        format!("circuit breaker {breaker} stopped the agent: {reason}"),
                        json!({"breaker": breaker, "kill_switch_id": kill_switch_id, "reason": reason}),
                    ),
                );
            }
        }
    }
    Ok(hits)
}

/// `repeated_denials` after a deny of the agent.
async fn repeated_denials(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    action_id: &str,
) -> Result<Option<Hit>, StoreError> {
    let config = &state.config.alerts;
    let rule = Rule::RepeatedDenials;
    let subject = format!("agent:{agent_id}");
    // Actions are stamped with the system time when recorded (`pipeline::record`): the
    // window is read on the same clock.
    let start = seconds_before(
        time::OffsetDateTime::now_utc(),
        config.denials_window_seconds,
    );
    let mut n = state
        .store
        .count_agent_denials(org_id, agent_id, &start)
        .await?;
    let threshold = u64::from(config.denials_threshold);
    if n <= threshold {
        return Ok(None);
    }
    let since = window_start(state, org_id, rule, &subject, start.clone()).await?;
    if since != start {
        n = state
            .store
            .count_agent_denials(org_id, agent_id, &since)
            .await?;
        if n <= threshold {
            return Ok(None);
        }
    }
    Ok(Some(Hit::new(org_id, rule, subject, Some(agent_id)).says(
        format!(
            "{n} denied actions within {} seconds (more than {threshold})",
            config.denials_window_seconds
        ),
        json!({"denials": n, "window_seconds": config.denials_window_seconds, "threshold": threshold, "action_id": action_id}),
    )))
}

/// `budget_threshold` for every budget counting the agent's spending.
async fn budget_thresholds(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
) -> Result<Vec<Hit>, StoreError> {
    let budgets = state.runtime.budgets(org_id, agent_id);
    if budgets.is_empty() {
        return Ok(Vec::new());
    }
    let statuses =
        crate::runtime::budget::status(&state.store, org_id, &budgets, &state.clock.now_rfc3339())
            .await
            .map_err(StoreError::Unavailable)?;
    let mut hits = Vec::new();
    for s in statuses {
        let limit = s.budget.limit.max(1);
        // u128: spent and limit are at most 10^15.
        let percent = u128::from(s.spent) * 100 / u128::from(limit);
        for p in &state.config.alerts.budget_percentages {
            if percent < u128::from(*p) {
                continue;
            }
            let subject = format!("budget:{}:{}:{p}", s.budget.id, s.window);
            let mut hit = Hit::new(
                org_id,
                Rule::BudgetThreshold,
                subject,
                s.budget.agent_id.as_deref(),
            )
            .says(
                format!(
                    "budget {} spent {} of {} {} in window {} ({percent}%, at least {p}%)",
                    s.budget.id, s.spent, s.budget.limit, s.budget.unit, s.window
                ),
                json!({"budget_id": s.budget.id, "unit": s.budget.unit, "window": s.window, "limit": s.budget.limit, "spent": s.spent, "percent": p, "agent_id": agent_id}),
            );
            if *p >= 100 {
                hit.severity = "critical";
            }
            hits.push(hit);
        }
    }
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for rule in Rule::ALL {
            assert_eq!(Rule::parse(rule.name()), Some(rule));
            assert!(seen.insert(rule.name()));
        }
        assert_eq!(Rule::parse("denials"), None);
    }

    #[test]
    fn windows_count_back_from_now() {
        let now = time::macros::datetime!(2026-11-21 05:35:00 UTC);
        assert_eq!(seconds_before(now, 300), "2026-11-21T05:30:00.000000Z");
    }
}
