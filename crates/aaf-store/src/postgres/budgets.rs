//! Usage, budgets and circuit breakers on PostgreSQL: [`Mutation`]s inside the caller's
//! write transaction, reservations in their own transaction, reads in a transaction with the
//! organisation set (row-level security). The SQL is shared with SQLite ([`crate::sql`]).

use sqlx::PgConnection;

use super::{bump_runtime_generation, conflict, OrgContext, PgStore};
use crate::model::{AgentUsage, Mutation, Reservation};
use crate::sqlite::budgets::{to_i64, to_u64};
use crate::{sql, StoreError};

/// Applies a budget or circuit-breaker mutation inside the caller's transaction.
///
/// # Errors
///
/// [`StoreError::NotFound`] for a budget that is not live; [`StoreError::Invalid`] for any
/// other mutation; the database's errors.
pub(super) async fn apply_mutation(
    ctx: &mut OrgContext<'_, '_>,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertBudget { budget: b, by } => {
            let conn = ctx.conn(&b.org_id).await?;
            sqlx::query(sql::INSERT_BUDGET)
                .bind(&b.id)
                .bind(&b.org_id)
                .bind(&b.agent_id)
                .bind(&b.unit)
                .bind(b.period.as_str())
                .bind(to_i64(b.limit))
                .bind(&b.created_at)
                .bind(by)
                .bind(&b.updated_at)
                .execute(&mut *conn)
                .await
                .map_err(|e| conflict(e, "a budget with this id already exists"))?;
            bump_runtime_generation(conn, &b.org_id, &b.created_at).await?;
        }
        Mutation::UpdateBudget {
            org_id,
            id,
            limit,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(sql::UPDATE_BUDGET)
                .bind(to_i64(*limit))
                .bind(now)
                .bind(org_id)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("budget {id}")));
            }
            bump_runtime_generation(conn, org_id, now).await?;
        }
        Mutation::DeleteBudget {
            org_id,
            id,
            by,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(sql::DELETE_BUDGET)
                .bind(now)
                .bind(by)
                .bind(org_id)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("budget {id}")));
            }
            bump_runtime_generation(conn, org_id, now).await?;
        }
        Mutation::SettleBudget {
            org_id,
            action_id,
            tokens,
            cost,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            settle(conn, org_id, action_id, *tokens, *cost, now).await?;
        }
        Mutation::SetCircuitBreakers {
            org_id,
            config,
            by,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            sqlx::query(sql::SET_CIRCUIT_BREAKERS)
                .bind(org_id)
                .bind(config.to_string())
                .bind(now)
                .bind(by)
                .execute(&mut *conn)
                .await?;
            bump_runtime_generation(conn, org_id, now).await?;
        }
        _ => {
            return Err(StoreError::Invalid(
                "not a budget or circuit-breaker mutation".into(),
            ))
        }
    }
    Ok(())
}

async fn settle(
    conn: &mut PgConnection,
    org_id: &str,
    action_id: &str,
    tokens: Option<u64>,
    cost: Option<u64>,
    now: &str,
) -> Result<(), StoreError> {
    let charges: Vec<(String, String, String, i64)> = sqlx::query_as(sql::UNSETTLED_CHARGES)
        .bind(org_id)
        .bind(action_id)
        .fetch_all(&mut *conn)
        .await?;
    for (budget_id, window_key, unit, reserved) in charges {
        let used = if unit == aaf_core::budget::TOKENS {
            tokens
        } else {
            cost
        };
        let actual = used.map_or(reserved, to_i64);
        sqlx::query(sql::BUDGET_ADJUST)
            .bind(actual.saturating_sub(reserved))
            .bind(org_id)
            .bind(&budget_id)
            .bind(&window_key)
            .execute(&mut *conn)
            .await?;
        sqlx::query(sql::SETTLE_CHARGE)
            .bind(actual)
            .bind(now)
            .bind(org_id)
            .bind(action_id)
            .bind(&budget_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl PgStore {
    pub(crate) async fn agent_usage(
        &self,
        org_id: &str,
        agent_id: &str,
        since: [&str; 3],
    ) -> Result<AgentUsage, StoreError> {
        let [minute_ago, five_minutes_ago, hour_ago] = since;
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::AGENT_USAGE)
            .bind(minute_ago)
            .bind(five_minutes_ago)
            .bind(org_id)
            .bind(agent_id)
            .bind(hour_ago)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut usage = AgentUsage::default();
        for row in &rows {
            crate::rows::add_usage_row(&mut usage, row)?;
        }
        Ok(usage)
    }

    pub(crate) async fn agent_actions_since(
        &self,
        org_id: &str,
        agent_id: &str,
        since: &str,
        limit: u32,
    ) -> Result<Vec<crate::ActionRecord>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::AGENT_ACTIONS_SINCE)
            .bind(org_id)
            .bind(agent_id)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| crate::rows::action_from_row(r, &self.keys))
            .collect()
    }

    pub(crate) async fn list_budgets(
        &self,
        org_id: &str,
    ) -> Result<Vec<aaf_core::budget::Budget>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_BUDGETS)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(crate::rows::budget_from_row).collect()
    }

    pub(crate) async fn budget_spent(
        &self,
        org_id: &str,
        windows: &[(String, String)],
    ) -> Result<Vec<u64>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let mut spent = Vec::with_capacity(windows.len());
        for (budget_id, window_key) in windows {
            let s: Option<i64> = sqlx::query_scalar(sql::BUDGET_SPENT)
                .bind(org_id)
                .bind(budget_id)
                .bind(window_key)
                .fetch_optional(&mut *tx)
                .await?;
            spent.push(to_u64(s.unwrap_or(0)));
        }
        tx.commit().await?;
        Ok(spent)
    }

    pub(crate) async fn agent_spend_since(
        &self,
        org_id: &str,
        agent_id: &str,
        unit: &str,
        since: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let s: i64 = sqlx::query_scalar(sql::AGENT_SPEND_SINCE)
            .bind(org_id)
            .bind(agent_id)
            .bind(unit)
            .bind(since)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(to_u64(s))
    }

    pub(crate) async fn get_circuit_breakers(
        &self,
        org_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let text: Option<String> = sqlx::query_scalar(sql::GET_CIRCUIT_BREAKERS)
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("circuit breakers of {org_id}: {e}")))
        })
        .transpose()
    }

    /// Reserves in one transaction; the rows are taken in the caller's order (sorted by
    /// budget id), so two reservations over the same budgets cannot deadlock.
    pub(crate) async fn budget_reserve(
        &self,
        org_id: &str,
        action_id: &str,
        agent_id: &str,
        now: &str,
        reservations: &[Reservation],
    ) -> Result<Result<Vec<u64>, (usize, u64)>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let mut totals = Vec::with_capacity(reservations.len());
        for (i, r) in reservations.iter().enumerate() {
            sqlx::query(sql::BUDGET_WINDOW)
                .bind(org_id)
                .bind(&r.budget_id)
                .bind(&r.window_key)
                .execute(&mut *tx)
                .await?;
            let total: Option<i64> = sqlx::query_scalar(sql::BUDGET_RESERVE)
                .bind(to_i64(r.amount))
                .bind(org_id)
                .bind(&r.budget_id)
                .bind(&r.window_key)
                .bind(to_i64(r.limit))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(total) = total else {
                let spent: i64 = sqlx::query_scalar(sql::BUDGET_SPENT)
                    .bind(org_id)
                    .bind(&r.budget_id)
                    .bind(&r.window_key)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.rollback().await?;
                return Ok(Err((i, to_u64(spent))));
            };
            totals.push(to_u64(total));
            sqlx::query(sql::INSERT_BUDGET_CHARGE)
                .bind(org_id)
                .bind(action_id)
                .bind(&r.budget_id)
                .bind(&r.window_key)
                .bind(agent_id)
                .bind(&r.unit)
                .bind(to_i64(r.amount))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict(e, "the action has reserved this budget already"))?;
        }
        tx.commit().await?;
        Ok(Ok(totals))
    }
}
