//! Alerts on SQLite: [`Mutation`]s inside the caller's write transaction, bumps and hits in
//! their own write transaction on the writer connection, reads on the reader pool. The SQL
//! is shared with PostgreSQL ([`crate::alerts::sql`]).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use crate::alerts::{
    alert_from_row, count_to_u64, sql, transition_refused, Alert, AlertQuery, AlertStatus,
    ALREADY_OPEN,
};
use crate::model::Mutation;
use crate::prepared::json_text;
use crate::StoreError;

/// A count as SQLite stores it (saturating).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Applies an alert mutation inside the caller's transaction.
///
/// # Errors
///
/// [`StoreError::Stale`] for a second unresolved alert of one rule and subject, or a
/// transition from a status the alert is no longer in; [`StoreError::NotFound`] for an
/// unknown alert or organisation; [`StoreError::Invalid`] for any other mutation; the
/// database's errors.
pub(super) fn apply_mutation(conn: &Connection, mutation: &Mutation) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertAlert(a) => {
            conn.prepare_cached(sql::INSERT_ALERT)?
                .execute(params![
                    a.id,
                    a.org_id,
                    a.rule,
                    a.subject,
                    a.agent_id,
                    a.severity,
                    a.status.as_str(),
                    a.summary,
                    json_text(&a.detail)?,
                    to_i64(a.count),
                    a.first_seen_at,
                    a.last_seen_at,
                    a.acknowledged_at,
                    a.acknowledged_by,
                    a.resolved_at,
                    a.resolved_by,
                    a.kill_switch_id,
                    a.updated_at
                ])
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(detail) => {
                        StoreError::Stale(format!("{ALREADY_OPEN} ({detail})"))
                    }
                    other => other,
                })?;
        }
        Mutation::AlertTransition {
            org_id,
            id,
            from,
            to,
            by,
            now,
        } => {
            let statement = match to {
                AlertStatus::Acknowledged => sql::ACKNOWLEDGE_ALERT,
                AlertStatus::Resolved => sql::RESOLVE_ALERT,
                AlertStatus::Open => {
                    return Err(StoreError::Invalid(
                        "an alert cannot be moved back to open".into(),
                    ))
                }
            };
            let done = conn.prepare_cached(statement)?.execute(params![
                now,
                by,
                org_id,
                id,
                from.as_str()
            ])?;
            if done == 0 {
                let found: Option<String> = conn
                    .prepare_cached(sql::ALERT_STATUS)?
                    .query_row(params![org_id, id], |row| row.get(0))
                    .optional()?;
                return Err(transition_refused(id, found));
            }
        }
        _ => return Err(StoreError::Invalid("not an alert mutation".into())),
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn bump_alert(
        &self,
        org_id: &str,
        rule: &str,
        subject: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let (org_id, rule, subject, now) = (
            org_id.to_string(),
            rule.to_string(),
            subject.to_string(),
            now.to_string(),
        );
        self.write(move |conn| {
            let done = conn
                .prepare_cached(sql::BUMP_ALERT)?
                .execute(params![now, org_id, rule, subject])?;
            Ok(done > 0)
        })
        .await
    }

    pub(crate) async fn get_alert(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<Alert>, StoreError> {
        let row = sqlx::query(sql::GET_ALERT)
            .bind(org_id)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(alert_from_row).transpose()
    }

    pub(crate) async fn list_alerts(
        &self,
        org_id: &str,
        query: &AlertQuery,
    ) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(sql::LIST_ALERTS)
            .bind(org_id)
            .bind(query.status.map(AlertStatus::as_str))
            .bind(query.rule.as_deref())
            .bind(query.agent_id.as_deref())
            .bind(query.before_id.as_deref())
            .bind(i64::from(query.limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(alert_from_row).collect()
    }

    pub(crate) async fn last_resolved_alert_at(
        &self,
        org_id: &str,
        rule: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        let at: Option<String> = sqlx::query_scalar(sql::LAST_RESOLVED_AT)
            .bind(org_id)
            .bind(rule)
            .bind(subject)
            .fetch_one(&self.reader)
            .await?;
        Ok(at)
    }

    pub(crate) async fn count_agent_denials(
        &self,
        org_id: &str,
        agent_id: &str,
        since: &str,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(sql::COUNT_AGENT_DENIALS)
            .bind(org_id)
            .bind(agent_id)
            .bind(since)
            .fetch_one(&self.reader)
            .await?;
        Ok(count_to_u64(n))
    }

    pub(crate) async fn record_alert_hit(
        &self,
        org_id: &str,
        rule: &str,
        subject: &str,
        at: &str,
        since: &str,
    ) -> Result<u64, StoreError> {
        let (org_id, rule, subject, at, since) = (
            org_id.to_string(),
            rule.to_string(),
            subject.to_string(),
            at.to_string(),
            since.to_string(),
        );
        let id = uuid::Uuid::now_v7().to_string();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(sql::INSERT_ALERT_HIT)?
                .execute(params![org_id, rule, subject, at, id])?;
            let n: i64 = tx
                .prepare_cached(sql::COUNT_ALERT_HITS)?
                .query_row(params![org_id, rule, subject, since], |row| row.get(0))?;
            tx.commit()?;
            Ok(count_to_u64(n))
        })
        .await
    }

    pub(crate) async fn purge_alert_hits(
        &self,
        org_id: &str,
        before: &str,
    ) -> Result<u64, StoreError> {
        let (org_id, before) = (org_id.to_string(), before.to_string());
        self.write(move |conn| {
            let done = conn
                .prepare_cached(sql::PURGE_ALERT_HITS)?
                .execute(params![org_id, before])?;
            Ok(done as u64)
        })
        .await
    }
}
