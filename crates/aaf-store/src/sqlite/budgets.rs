//! Usage, budgets and circuit breakers on SQLite: [`Mutation`]s inside the caller's write
//! transaction, reservations in their own write transaction on the writer connection, reads
//! on the reader pool. The SQL is shared with PostgreSQL ([`crate::sql`]).

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{named_conflict, SqliteStore};
use crate::model::{AgentUsage, Mutation, Reservation};
use crate::{sql, StoreError};

/// A count or amount as SQLite stores it (saturating).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored amount (never negative by the schema's checks).
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Applies a budget or circuit-breaker mutation inside the caller's transaction.
///
/// # Errors
///
/// [`StoreError::NotFound`] for a budget that is not live; [`StoreError::Invalid`] for any
/// other mutation; the database's errors.
pub(super) fn apply_mutation(conn: &Connection, mutation: &Mutation) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertBudget { budget: b, by } => {
            conn.prepare_cached(sql::INSERT_BUDGET)?
                .execute(params![
                    b.id,
                    b.org_id,
                    b.agent_id,
                    b.unit,
                    b.period.as_str(),
                    to_i64(b.limit),
                    b.created_at,
                    by,
                    b.updated_at
                ])
                .map_err(|e| named_conflict(e, "a budget with this id already exists"))?;
            bump(conn, &b.org_id, &b.created_at)?;
        }
        Mutation::UpdateBudget {
            org_id,
            id,
            limit,
            now,
        } => {
            let done = conn.prepare_cached(sql::UPDATE_BUDGET)?.execute(params![
                to_i64(*limit),
                now,
                org_id,
                id
            ])?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("budget {id}")));
            }
            bump(conn, org_id, now)?;
        }
        Mutation::DeleteBudget {
            org_id,
            id,
            by,
            now,
        } => {
            let done = conn
                .prepare_cached(sql::DELETE_BUDGET)?
                .execute(params![now, by, org_id, id])?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("budget {id}")));
            }
            bump(conn, org_id, now)?;
        }
        Mutation::SettleBudget {
            org_id,
            action_id,
            tokens,
            cost,
            now,
        } => {
            let charges: Vec<(String, String, String, i64)> = conn
                .prepare_cached(sql::UNSETTLED_CHARGES)?
                .query_map(params![org_id, action_id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            for (budget_id, window_key, unit, reserved) in charges {
                let used = if unit == aaf_core::budget::TOKENS {
                    *tokens
                } else {
                    *cost
                };
                let actual = used.map_or(reserved, to_i64);
                conn.prepare_cached(sql::BUDGET_ADJUST)?.execute(params![
                    actual.saturating_sub(reserved),
                    org_id,
                    budget_id,
                    window_key
                ])?;
                conn.prepare_cached(sql::SETTLE_CHARGE)?
                    .execute(params![actual, now, org_id, action_id, budget_id])?;
            }
        }
        Mutation::SetCircuitBreakers {
            org_id,
            config,
            by,
            now,
        } => {
            conn.prepare_cached(sql::SET_CIRCUIT_BREAKERS)?
                .execute(params![org_id, config.to_string(), now, by])?;
            bump(conn, org_id, now)?;
        }
        _ => {
            return Err(StoreError::Invalid(
                "not a budget or circuit-breaker mutation".into(),
            ))
        }
    }
    Ok(())
}

/// Advances the organisation's runtime generation.
pub(super) fn bump(conn: &Connection, org_id: &str, now: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql::BUMP_RUNTIME_GENERATION)?
        .execute(params![org_id, now])?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn agent_usage(
        &self,
        org_id: &str,
        agent_id: &str,
        since: [&str; 3],
    ) -> Result<AgentUsage, StoreError> {
        let [minute_ago, five_minutes_ago, hour_ago] = since;
        let rows = sqlx::query(sql::AGENT_USAGE)
            .bind(minute_ago)
            .bind(five_minutes_ago)
            .bind(org_id)
            .bind(agent_id)
            .bind(hour_ago)
            .fetch_all(&self.reader)
            .await?;
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
        let rows = sqlx::query(sql::AGENT_ACTIONS_SINCE)
            .bind(org_id)
            .bind(agent_id)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| crate::rows::action_from_row(r, &self.keys))
            .collect()
    }

    pub(crate) async fn list_budgets(
        &self,
        org_id: &str,
    ) -> Result<Vec<aaf_core::budget::Budget>, StoreError> {
        let rows = sqlx::query(sql::LIST_BUDGETS)
            .bind(org_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(crate::rows::budget_from_row).collect()
    }

    pub(crate) async fn budget_spent(
        &self,
        org_id: &str,
        windows: &[(String, String)],
    ) -> Result<Vec<u64>, StoreError> {
        let mut spent = Vec::with_capacity(windows.len());
        for (budget_id, window_key) in windows {
            let s: Option<i64> = sqlx::query_scalar(sql::BUDGET_SPENT)
                .bind(org_id)
                .bind(budget_id)
                .bind(window_key)
                .fetch_optional(&self.reader)
                .await?;
            spent.push(to_u64(s.unwrap_or(0)));
        }
        Ok(spent)
    }

    pub(crate) async fn agent_spend_since(
        &self,
        org_id: &str,
        agent_id: &str,
        unit: &str,
        since: &str,
    ) -> Result<u64, StoreError> {
        let s: i64 = sqlx::query_scalar(sql::AGENT_SPEND_SINCE)
            .bind(org_id)
            .bind(agent_id)
            .bind(unit)
            .bind(since)
            .fetch_one(&self.reader)
            .await?;
        Ok(to_u64(s))
    }

    pub(crate) async fn get_circuit_breakers(
        &self,
        org_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = sqlx::query_scalar(sql::GET_CIRCUIT_BREAKERS)
            .bind(org_id)
            .fetch_optional(&self.reader)
            .await?;
        text.map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| StoreError::Corrupt(format!("circuit breakers of {org_id}: {e}")))
        })
        .transpose()
    }

    pub(crate) async fn budget_reserve(
        &self,
        org_id: &str,
        action_id: &str,
        agent_id: &str,
        now: &str,
        reservations: &[Reservation],
    ) -> Result<Result<Vec<u64>, (usize, u64)>, StoreError> {
        let (org_id, action_id, agent_id, now) = (
            org_id.to_string(),
            action_id.to_string(),
            agent_id.to_string(),
            now.to_string(),
        );
        let reservations = reservations.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut totals = Vec::with_capacity(reservations.len());
            for (i, r) in reservations.iter().enumerate() {
                tx.prepare_cached(sql::BUDGET_WINDOW)?.execute(params![
                    org_id,
                    r.budget_id,
                    r.window_key
                ])?;
                let total: Option<i64> = tx
                    .prepare_cached(sql::BUDGET_RESERVE)?
                    .query_row(
                        params![
                            to_i64(r.amount),
                            org_id,
                            r.budget_id,
                            r.window_key,
                            to_i64(r.limit)
                        ],
                        |row| row.get(0),
                    )
                    .optional()?;
                let Some(total) = total else {
                    let spent: i64 = tx
                        .prepare_cached(sql::BUDGET_SPENT)?
                        .query_row(params![org_id, r.budget_id, r.window_key], |row| row.get(0))?;
                    // Dropping the transaction rolls back the reservations made so far.
                    return Ok(Err((i, to_u64(spent))));
                };
                totals.push(to_u64(total));
                tx.prepare_cached(sql::INSERT_BUDGET_CHARGE)?
                    .execute(params![
                        org_id,
                        action_id,
                        r.budget_id,
                        r.window_key,
                        agent_id,
                        r.unit,
                        to_i64(r.amount),
                        now
                    ])
                    .map_err(|e| {
                        named_conflict(e, "the action has reserved this budget already")
                    })?;
            }
            tx.commit()?;
            Ok(Ok(totals))
        })
        .await
    }
}
