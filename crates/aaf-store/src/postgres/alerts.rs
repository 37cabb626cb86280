//! Alerts on PostgreSQL: [`Mutation`]s inside the caller's write transaction, bumps, hits
//! and reads each in a transaction with the organisation set (row-level security). The SQL
//! is shared with SQLite ([`crate::alerts::sql`]).

use super::{OrgContext, PgStore};
use crate::alerts::{
    alert_from_row, count_to_u64, sql, transition_refused, Alert, AlertQuery, AlertStatus,
    ALREADY_OPEN,
};
use crate::model::Mutation;
use crate::prepared::json_text;
use crate::StoreError;

/// A count as PostgreSQL stores it (saturating).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Applies an alert mutation inside the caller's transaction.
///
/// # Errors
///
/// As the SQLite backend's: [`StoreError::Stale`] for a second unresolved alert of one
/// rule and subject or a transition from a status the alert is no longer in;
/// [`StoreError::NotFound`]; [`StoreError::Invalid`]; the database's errors.
pub(super) async fn apply_mutation(
    ctx: &mut OrgContext<'_, '_>,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertAlert(a) => {
            let conn = ctx.conn(&a.org_id).await?;
            sqlx::query(sql::INSERT_ALERT)
                .bind(&a.id)
                .bind(&a.org_id)
                .bind(&a.rule)
                .bind(&a.subject)
                .bind(&a.agent_id)
                .bind(&a.severity)
                .bind(a.status.as_str())
                .bind(&a.summary)
                .bind(json_text(&a.detail)?)
                .bind(to_i64(a.count))
                .bind(&a.first_seen_at)
                .bind(&a.last_seen_at)
                .bind(&a.acknowledged_at)
                .bind(&a.acknowledged_by)
                .bind(&a.resolved_at)
                .bind(&a.resolved_by)
                .bind(&a.kill_switch_id)
                .bind(&a.updated_at)
                .execute(conn)
                .await
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
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(statement)
                .bind(now)
                .bind(by)
                .bind(org_id)
                .bind(id)
                .bind(from.as_str())
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                let found: Option<String> = sqlx::query_scalar(sql::ALERT_STATUS)
                    .bind(org_id)
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                return Err(transition_refused(id, found));
            }
        }
        _ => return Err(StoreError::Invalid("not an alert mutation".into())),
    }
    Ok(())
}

impl PgStore {
    pub(crate) async fn bump_alert(
        &self,
        org_id: &str,
        rule: &str,
        subject: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        self.writable()?;
        let mut tx = self.begin_org(org_id).await?;
        let done = sqlx::query(sql::BUMP_ALERT)
            .bind(now)
            .bind(org_id)
            .bind(rule)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn get_alert(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<Alert>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_ALERT)
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(alert_from_row).transpose()
    }

    pub(crate) async fn list_alerts(
        &self,
        org_id: &str,
        query: &AlertQuery,
    ) -> Result<Vec<Alert>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_ALERTS)
            .bind(org_id)
            .bind(query.status.map(AlertStatus::as_str))
            .bind(query.rule.as_deref())
            .bind(query.agent_id.as_deref())
            .bind(query.before_id.as_deref())
            .bind(i64::from(query.limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(alert_from_row).collect()
    }

    pub(crate) async fn last_resolved_alert_at(
        &self,
        org_id: &str,
        rule: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let at: Option<String> = sqlx::query_scalar(sql::LAST_RESOLVED_AT)
            .bind(org_id)
            .bind(rule)
            .bind(subject)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(at)
    }

    pub(crate) async fn count_agent_denials(
        &self,
        org_id: &str,
        agent_id: &str,
        since: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let n: i64 = sqlx::query_scalar(sql::COUNT_AGENT_DENIALS)
            .bind(org_id)
            .bind(agent_id)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
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
        self.writable()?;
        let mut tx = self.begin_org(org_id).await?;
        sqlx::query(sql::INSERT_ALERT_HIT)
            .bind(org_id)
            .bind(rule)
            .bind(subject)
            .bind(at)
            .bind(uuid::Uuid::now_v7().to_string())
            .execute(&mut *tx)
            .await?;
        let n: i64 = sqlx::query_scalar(sql::COUNT_ALERT_HITS)
            .bind(org_id)
            .bind(rule)
            .bind(subject)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(count_to_u64(n))
    }

    pub(crate) async fn purge_alert_hits(
        &self,
        org_id: &str,
        before: &str,
    ) -> Result<u64, StoreError> {
        self.writable()?;
        let mut tx = self.begin_org(org_id).await?;
        let done = sqlx::query(sql::PURGE_ALERT_HITS)
            .bind(org_id)
            .bind(before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
