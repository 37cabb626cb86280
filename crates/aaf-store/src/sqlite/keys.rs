//! Data keys, crypto-shredding and retention on SQLite (docs/encryption.md,
//! docs/retention.md): their mutations inside the writer's transaction, and their reads.

use rusqlite::{params, Connection, OptionalExtension};

use super::SqliteStore;
use crate::encryption::DataKeyRow;
use crate::model::Mutation;
use crate::rows::data_key_from_row;
use crate::{sql, StoreError};

/// Applies a key mutation inside the caller's transaction.
///
/// # Errors
///
/// As documented on each [`Mutation`]; [`StoreError::Invalid`] for any other mutation.
pub(super) fn apply_mutation(conn: &Connection, mutation: &Mutation) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertDataKey(row) => insert(conn, row)?,
        Mutation::RotateDataKey { new, now } => {
            conn.prepare_cached(sql::RETIRE_DATA_KEY)?
                .execute(params![now, new.org_id])?;
            insert(conn, new)?;
        }
        Mutation::DestroyDataKeys { org_id, keep, now } => {
            conn.prepare_cached(sql::DESTROY_DATA_KEYS)?
                .execute(params![now, org_id, keep])?;
        }
        Mutation::ShredAction {
            org_id,
            action_id,
            reason,
            now,
        } => {
            let done = conn
                .prepare_cached(sql::DESTROY_ACTION_KEY)?
                .execute(params![now, org_id, action_id])?;
            if done == 0 {
                let found: Option<Option<String>> = conn
                    .prepare_cached(sql::ACTION_DATA_KEY)?
                    .query_row(params![org_id, action_id], |r| r.get(1))
                    .optional()?;
                return Err(super::super::rows::shred_refused(action_id, found));
            }
            conn.prepare_cached(sql::REMOVE_ACTION_PAYLOADS)?
                .execute(params![reason, org_id, action_id])?;
        }
        Mutation::SetRetention {
            org_id,
            rules,
            now,
            by,
        } => {
            conn.prepare_cached(sql::UPSERT_RETENTION)?
                .execute(params![
                    org_id,
                    crate::rows::retention_rules_text(rules)?,
                    rules.legal_hold,
                    now,
                    by
                ])?;
        }
        Mutation::RemovePayloads {
            org_id,
            seqs,
            reason,
        } => {
            let mut remove = conn.prepare_cached(sql::REMOVE_PAYLOAD)?;
            for seq in seqs {
                let done =
                    remove.execute(params![reason, org_id, crate::prepared::seq_to_sql(*seq)?])?;
                if done == 0 {
                    return Err(crate::rows::payload_gone(org_id, *seq));
                }
            }
        }
        _ => return Err(StoreError::Invalid("not a data-key mutation".to_string())),
    }
    Ok(())
}

fn insert(conn: &Connection, row: &DataKeyRow) -> Result<(), StoreError> {
    conn.prepare_cached(sql::INSERT_DATA_KEY)?
        .execute(params![
            row.org_id,
            row.id,
            row.wrapped,
            row.master_key_id,
            row.created_at
        ])
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "organisation {} has an active data key already",
                row.org_id
            )),
            other => other,
        })?;
    Ok(())
}

impl SqliteStore {
    pub(crate) async fn data_keys(&self, org_id: &str) -> Result<Vec<DataKeyRow>, StoreError> {
        let rows = sqlx::query(sql::LIST_DATA_KEYS)
            .bind(org_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(data_key_from_row).collect()
    }

    pub(crate) async fn action_data_key(
        &self,
        org_id: &str,
        action_id: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        let row: Option<(Option<String>,)> = sqlx::query_as(sql::ACTION_DATA_KEY_ONLY)
            .bind(org_id)
            .bind(action_id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|(key,)| key))
    }
}

impl SqliteStore {
    pub(crate) async fn retention_rules(
        &self,
        org_id: &str,
    ) -> Result<Option<aaf_core::retention::RetentionRules>, StoreError> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(sql::GET_RETENTION)
            .bind(org_id)
            .fetch_optional(&self.reader)
            .await?;
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
        let seqs: Vec<i64> = sqlx::query_scalar(sql::RETENTION_CANDIDATES)
            .bind(org_id)
            .bind(event_type)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        Ok(seqs
            .into_iter()
            .filter_map(|s| u64::try_from(s).ok())
            .collect())
    }
}
