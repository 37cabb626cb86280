//! Alerts (docs/alerts.md): the rows the server's alert rules raise, their deduplication
//! and the hits of the counted rules, on both backends.
//!
//! An alert is raised by a [`crate::WriteUnit`] holding [`crate::Mutation::InsertAlert`]
//! with its `alert.raised` audit event and webhook deliveries; at most one alert that is not
//! resolved exists per (organisation, rule, subject), enforced by a unique index, so that
//! of two nodes raising the same alert at once one commits and the other gets
//! [`StoreError::Stale`] and bumps the alert instead ([`Store::bump_alert`], not audited:
//! repeated hits do not flood the chain). Acknowledging and resolving are
//! [`crate::Mutation::AlertTransition`]s, compare-and-sets on the status, committed with
//! their audit events.
//!
//! Tables `alerts` and `alert_hits` (`migrations/*/..._alerts.sql`; row-level security on
//! PostgreSQL like every tenant table).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rows::{parse_json, DbRow};
use crate::{Backend, Store, StoreError};

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Raised, nobody has looked at it yet; later hits add to its count.
    Open,
    /// A person has seen it; later hits still add to its count.
    Acknowledged,
    /// Closed; a later hit raises a new alert.
    Resolved,
}

impl AlertStatus {
    /// Every status, in life order.
    pub const ALL: [AlertStatus; 3] = [
        AlertStatus::Open,
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
    ];

    /// The name as stored and shown: `open`, `acknowledged`, `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    /// The status of this name, if it is one.
    pub fn parse(name: &str) -> Option<AlertStatus> {
        AlertStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert, as stored in `alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// UUIDv7 string (time-ordered: listings page by it).
    pub id: String,
    /// The organisation.
    pub org_id: String,
    /// The rule that raised it, e.g. `repeated_denials`.
    pub rule: String,
    /// What it is about, unique per rule among the organisation's unresolved alerts, e.g.
    /// `agent:<id>`, `address:203.0.113.9`, `budget:<id>:2026-12:80`.
    pub subject: String,
    /// The agent concerned, when there is one (for filtering).
    pub agent_id: Option<String>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Where it is in its life.
    pub status: AlertStatus,
    /// One line for people, e.g. `11 denied actions within 300 seconds (more than 10)`.
    pub summary: String,
    /// The hit that raised it, as JSON (rule-specific fields; never secrets).
    pub detail: Value,
    /// Hits folded into it: 1 when raised, plus one per later hit while not resolved.
    pub count: u64,
    /// When it was raised (RFC 3339 UTC).
    pub first_seen_at: String,
    /// The latest hit (RFC 3339 UTC).
    pub last_seen_at: String,
    /// When it was acknowledged (RFC 3339 UTC).
    pub acknowledged_at: Option<String>,
    /// The user who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When it was resolved (RFC 3339 UTC).
    pub resolved_at: Option<String>,
    /// The user who resolved it.
    pub resolved_by: Option<String>,
    /// The kill switch its rule engaged when it was raised, if the rule acts.
    pub kill_switch_id: Option<String>,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// Which alerts [`Store::list_alerts`] returns (all given conditions must hold), newest
/// first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertQuery {
    /// Only alerts with this status.
    pub status: Option<AlertStatus>,
    /// Only alerts of this rule.
    pub rule: Option<String>,
    /// Only alerts about this agent.
    pub agent_id: Option<String>,
    /// Only alerts older than this one (its id): the next page.
    pub before_id: Option<String>,
    /// At most this many.
    pub limit: u32,
}

macro_rules! alert_select {
    () => {
        "SELECT id, org_id, rule, subject, agent_id, severity, status, summary, detail, count, \
           first_seen_at, last_seen_at, acknowledged_at, acknowledged_by, resolved_at, \
           resolved_by, kill_switch_id, updated_at FROM alerts "
    };
}

/// SQL of both backends (`$n` placeholders first appearing in order, as in `crate::sql`).
pub(crate) mod sql {
    pub(crate) const INSERT_ALERT: &str = "INSERT INTO alerts (id, org_id, rule, subject, \
        agent_id, severity, status, summary, detail, count, first_seen_at, last_seen_at, \
        acknowledged_at, acknowledged_by, resolved_at, resolved_by, kill_switch_id, updated_at) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";
    pub(crate) const BUMP_ALERT: &str = "UPDATE alerts SET count = count + 1, \
        last_seen_at = $1, updated_at = $1 \
        WHERE org_id = $2 AND rule = $3 AND subject = $4 AND status <> 'resolved'";
    pub(crate) const ACKNOWLEDGE_ALERT: &str = "UPDATE alerts SET status = 'acknowledged', \
        acknowledged_at = $1, acknowledged_by = $2, updated_at = $1 \
        WHERE org_id = $3 AND id = $4 AND status = $5";
    pub(crate) const RESOLVE_ALERT: &str = "UPDATE alerts SET status = 'resolved', \
        resolved_at = $1, resolved_by = $2, updated_at = $1 \
        WHERE org_id = $3 AND id = $4 AND status = $5";
    pub(crate) const ALERT_STATUS: &str = "SELECT status FROM alerts WHERE org_id = $1 AND id = $2";
    pub(crate) const GET_ALERT: &str = concat!(alert_select!(), "WHERE org_id = $1 AND id = $2");
    pub(crate) const LIST_ALERTS: &str = concat!(
        alert_select!(),
        "WHERE org_id = $1 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR rule = $3) \
         AND ($4 IS NULL OR agent_id = $4) AND ($5 IS NULL OR id < $5) \
         ORDER BY id DESC LIMIT $6"
    );
    pub(crate) const LAST_RESOLVED_AT: &str = "SELECT MAX(resolved_at) FROM alerts \
        WHERE org_id = $1 AND rule = $2 AND subject = $3 AND status = 'resolved'";
    pub(crate) const COUNT_AGENT_DENIALS: &str = "SELECT COUNT(*) FROM actions \
        WHERE org_id = $1 AND agent_id = $2 AND created_at >= $3 AND decision = 'deny'";
    pub(crate) const INSERT_ALERT_HIT: &str =
        "INSERT INTO alert_hits (org_id, rule, subject, at, id) VALUES ($1, $2, $3, $4, $5)";
    pub(crate) const COUNT_ALERT_HITS: &str = "SELECT COUNT(*) FROM alert_hits \
        WHERE org_id = $1 AND rule = $2 AND subject = $3 AND at >= $4";
    pub(crate) const PURGE_ALERT_HITS: &str =
        "DELETE FROM alert_hits WHERE org_id = $1 AND at < $2";

    /// Every statement, for the placeholder test.
    #[cfg(test)]
    pub(crate) const ALL: &[(&str, &str)] = &[
        ("INSERT_ALERT", INSERT_ALERT),
        ("BUMP_ALERT", BUMP_ALERT),
        ("ACKNOWLEDGE_ALERT", ACKNOWLEDGE_ALERT),
        ("RESOLVE_ALERT", RESOLVE_ALERT),
        ("ALERT_STATUS", ALERT_STATUS),
        ("GET_ALERT", GET_ALERT),
        ("LIST_ALERTS", LIST_ALERTS),
        ("LAST_RESOLVED_AT", LAST_RESOLVED_AT),
        ("COUNT_AGENT_DENIALS", COUNT_AGENT_DENIALS),
        ("INSERT_ALERT_HIT", INSERT_ALERT_HIT),
        ("COUNT_ALERT_HITS", COUNT_ALERT_HITS),
        ("PURGE_ALERT_HITS", PURGE_ALERT_HITS),
    ];
}

/// The conflict of a second unresolved alert of one rule and subject: raised concurrently
/// (by another node); bump the one that exists instead.
pub(crate) const ALREADY_OPEN: &str =
    "an alert of this rule and subject is open already (raised concurrently); bump it";

/// The refusal of a transition whose alert is no longer in the status read.
pub(crate) fn transition_refused(id: &str, found: Option<String>) -> StoreError {
    match found {
        None => StoreError::NotFound(format!("alert {id}")),
        Some(status) => StoreError::Stale(format!(
            "alert {id} is {status} now; read it again and retry"
        )),
    }
}

/// A count as stored (never negative).
pub(crate) fn count_to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A row of `alerts`.
pub(crate) fn alert_from_row(row: &impl DbRow) -> Result<Alert, StoreError> {
    let status: String = row.col("status")?;
    let detail: String = row.col("detail")?;
    let count: i64 = row.col("count")?;
    Ok(Alert {
        status: AlertStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown alert status {status:?}")))?,
        detail: parse_json(&detail, "detail")?,
        count: count_to_u64(count),
        id: row.col("id")?,
        org_id: row.col("org_id")?,
        rule: row.col("rule")?,
        subject: row.col("subject")?,
        agent_id: row.col("agent_id")?,
        severity: row.col("severity")?,
        summary: row.col("summary")?,
        first_seen_at: row.col("first_seen_at")?,
        last_seen_at: row.col("last_seen_at")?,
        acknowledged_at: row.col("acknowledged_at")?,
        acknowledged_by: row.col("acknowledged_by")?,
        resolved_at: row.col("resolved_at")?,
        resolved_by: row.col("resolved_by")?,
        kill_switch_id: row.col("kill_switch_id")?,
        updated_at: row.col("updated_at")?,
    })
}

impl Store {
    /// Adds one hit to the organisation's unresolved alert of `rule` about `subject`: its
    /// count grows by one and `last_seen_at` (and `updated_at`) become `now` (RFC 3339 UTC).
    /// Not audited (the alert's `alert.raised` event is; later hits only count). Returns
    /// whether there was such an alert.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Invalid`] on a read-only store.
    pub async fn bump_alert(
        &self,
        org_id: &str,
        rule: &str,
        subject: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.bump_alert(org_id, rule, subject, now).await,
            Backend::Postgres(p) => p.bump_alert(org_id, rule, subject, now).await,
        }
    }

    /// The alert with this id in this organisation (`None` for another org's).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_alert(&self, org_id: &str, id: &str) -> Result<Option<Alert>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_alert(org_id, id).await,
            Backend::Postgres(p) => p.get_alert(org_id, id).await,
        }
    }

    /// The organisation's alerts matching `query`, newest first, at most `query.limit`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_alerts(
        &self,
        org_id: &str,
        query: &AlertQuery,
    ) -> Result<Vec<Alert>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_alerts(org_id, query).await,
            Backend::Postgres(p) => p.list_alerts(org_id, query).await,
        }
    }

    /// When the organisation's latest resolved alert of `rule` about `subject` was resolved
    /// (RFC 3339 UTC), if it had one: a counted rule's window starts no earlier.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn last_resolved_alert_at(
        &self,
        org_id: &str,
        rule: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.last_resolved_alert_at(org_id, rule, subject).await,
            Backend::Postgres(p) => p.last_resolved_alert_at(org_id, rule, subject).await,
        }
    }

    /// How many of the agent's actions were denied since `since` (RFC 3339 UTC, as actions
    /// are stored), read from the index on `(org_id, agent_id, created_at)`: the cost grows
    /// with the agent's actions in the window.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn count_agent_denials(
        &self,
        org_id: &str,
        agent_id: &str,
        since: &str,
    ) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.count_agent_denials(org_id, agent_id, since).await,
            Backend::Postgres(p) => p.count_agent_denials(org_id, agent_id, since).await,
        }
    }

    /// Records one hit of a counted `rule` about `subject` at `at` and returns how many hits
    /// of them there are since `since` (this one included when `at >= since`), in one
    /// transaction, so that every node sharing the database counts every node's hits.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::NotFound`] for an unknown organisation;
    /// [`StoreError::Invalid`] on a read-only store.
    pub async fn record_alert_hit(
        &self,
        org_id: &str,
        rule: &str,
        subject: &str,
        at: &str,
        since: &str,
    ) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.record_alert_hit(org_id, rule, subject, at, since).await,
            Backend::Postgres(p) => p.record_alert_hit(org_id, rule, subject, at, since).await,
        }
    }

    /// Forgets the organisation's alert hits older than `before` (RFC 3339 UTC); returns how
    /// many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Invalid`] on a read-only store.
    pub async fn purge_alert_hits(&self, org_id: &str, before: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.purge_alert_hits(org_id, before).await,
            Backend::Postgres(p) => p.purge_alert_hits(org_id, before).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_first_appear_in_order() {
        for (name, sql) in super::sql::ALL {
            let mut seen: Vec<u32> = Vec::new();
            let mut rest = *sql;
            while let Some(at) = rest.find('$') {
                let digits: String = rest[at + 1..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(n) = digits.parse::<u32>() {
                    if !seen.contains(&n) {
                        seen.push(n);
                    }
                }
                rest = &rest[at + 1..];
            }
            let expected: Vec<u32> = (1..=u32::try_from(seen.len()).unwrap()).collect();
            assert_eq!(seen, expected, "{name}: placeholders out of order");
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in super::AlertStatus::ALL {
            assert_eq!(super::AlertStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(super::AlertStatus::parse("closed"), None);
    }
}
