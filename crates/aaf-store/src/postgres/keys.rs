//! Data keys and crypto-shredding on PostgreSQL (docs/encryption.md): the key mutations inside
//! the caller's transaction, in the organisation's context (row-level security), and the reads
//! of keys.

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
