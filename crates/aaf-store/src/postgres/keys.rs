//! Data keys, crypto-shredding and retention on PostgreSQL (docs/encryption.md,
//! docs/retention.md): their mutations inside the caller's transaction, in the organisation's
//! context (row-level security), and their reads.

use super::{set_org, OrgContext, PgStore};
use crate::encryption::DataKeyRow;
use crate::model::Mutation;
use crate::rows::data_key_from_row;
use crate::{sql, StoreError};

/// Applies a key mutation inside the caller's transaction.
///
/// # Errors
///
/// As documented on each [`Mutation`]; [`StoreError::Invalid`] for any other mutation.
pub(super) async fn apply_mutation(
    ctx: &mut OrgContext<'_, '_>,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertDataKey(row) => insert(ctx, row).await?,
        Mutation::RotateDataKey { new, now } => {
            sqlx::query(sql::RETIRE_DATA_KEY)
                .bind(now)
                .bind(&new.org_id)
                .execute(ctx.conn(&new.org_id).await?)
                .await?;
            insert(ctx, new).await?;
        }
        Mutation::DestroyDataKeys { org_id, keep, now } => {
            sqlx::query(sql::DESTROY_DATA_KEYS)
                .bind(now)
                .bind(org_id)
                .bind(keep)
                .execute(ctx.conn(org_id).await?)
                .await?;
        }
        Mutation::ShredAction {
            org_id,
            action_id,
            reason,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(sql::DESTROY_ACTION_KEY)
                .bind(now)
                .bind(org_id)
                .bind(action_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if done == 0 {
                let found: Option<(Option<String>, Option<String>)> =
                    sqlx::query_as(sql::ACTION_DATA_KEY)
                        .bind(org_id)
                        .bind(action_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                return Err(crate::rows::shred_refused(
                    action_id,
                    found.map(|(_, destroyed)| destroyed),
                ));
            }
            sqlx::query(sql::REMOVE_ACTION_PAYLOADS)
                .bind(reason)
                .bind(org_id)
                .bind(action_id)
                .execute(&mut *conn)
                .await?;
        }
        Mutation::SetRetention {
            org_id,
            rules,
            now,
            by,
        } => {
            sqlx::query(sql::UPSERT_RETENTION)
                .bind(org_id)
                .bind(crate::rows::retention_rules_text(rules)?)
                .bind(&rules.legal_hold)
                .bind(now)
                .bind(by)
                .execute(ctx.conn(org_id).await?)
                .await?;
        }
        Mutation::RemovePayloads {
            org_id,
            seqs,
            reason,
        } => {
            let conn = ctx.conn(org_id).await?;
            for seq in seqs {
                let done = sqlx::query(sql::REMOVE_PAYLOAD)
                    .bind(reason)
                    .bind(org_id)
                    .bind(crate::prepared::seq_to_sql(*seq)?)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                if done == 0 {
                    return Err(crate::rows::payload_gone(org_id, *seq));
                }
            }
        }
        _ => return Err(StoreError::Invalid("not a data-key mutation".to_string())),
    }
    Ok(())
}

async fn insert(ctx: &mut OrgContext<'_, '_>, row: &DataKeyRow) -> Result<(), StoreError> {
    sqlx::query(sql::INSERT_DATA_KEY)
        .bind(&row.org_id)
        .bind(&row.id)
        .bind(&row.wrapped)
        .bind(&row.master_key_id)
        .bind(&row.created_at)
        .execute(ctx.conn(&row.org_id).await?)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "organisation {} has an active data key already",
                row.org_id
            )),
            other => other,
        })?;
    Ok(())
}

impl PgStore {
    pub(crate) async fn data_keys(&self, org_id: &str) -> Result<Vec<DataKeyRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        set_org(&mut tx, org_id).await?;
        let rows = sqlx::query(sql::LIST_DATA_KEYS)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(data_key_from_row).collect()
    }

    pub(crate) async fn action_data_key(
        &self,
        org_id: &str,
        action_id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        set_org(&mut tx, org_id).await?;
        let row: Option<(Option<String>,)> = sqlx::query_as(sql::ACTION_DATA_KEY_ONLY)
            .bind(org_id)
            .bind(action_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.map(|(key,)| key))
    }
}

impl PgStore {
    pub(crate) async fn retention_rules(
        &self,
        org_id: &str,
    ) -> Result<Option<aaf_core::retention::RetentionRules>, StoreError> {
        let mut tx = self.pool.begin().await?;
        set_org(&mut tx, org_id).await?;
        let row: Option<(String, Option<String>)> = sqlx::query_as(sql::GET_RETENTION)
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|(rules, hold)| crate::rows::retention_from_columns(&rules, hold))
            .transpose()
    }

    pub(crate) async fn retention_candidates(
        &self,
        org_id: &str,
        event_type: &str,
        before: &str,
        limit: u32,
    ) -> Result<Vec<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        set_org(&mut tx, org_id).await?;
        let seqs: Vec<i64> = sqlx::query_scalar(sql::RETENTION_CANDIDATES)
            .bind(org_id)
            .bind(event_type)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seqs
            .into_iter()
            .filter_map(|s| u64::try_from(s).ok())
            .collect())
    }
}
