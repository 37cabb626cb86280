//! The transparency log on SQLite: [`Mutation::ExtendAuditTree`] and
//! [`Mutation::PutCheckpoint`] inside the writer's transaction, reads on the reader pool,
//! and the verification of chains with their trees in one read transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aaf_core::audit::{ChainError, ChainErrorKind, StoredEvent};
use aaf_core::evidence::merkle::{self, Hash};
use futures::TryStreamExt;
use rusqlite::{params, Connection};
use sqlx::{Row, Sqlite, Transaction};

use super::SqliteStore;
use crate::evidence::{
    checkpoint_from_row, non_negative, q, raw_event_from_row, stats_from_rows, stored_root,
    tree_from_row, tree_hashes_from_rows, ChainVerification, ChainWalk, StoredCheckpoint,
    TreeState, TypeStats,
};
use crate::model::Mutation;
use crate::rows::{compare_verifications, head_from_row};
use crate::StoreError;

/// Applies a transparency-log mutation inside the caller's transaction.
///
/// # Errors
///
/// [`StoreError::Invalid`] for any other mutation or a size beyond `i64`; the database's
/// errors.
pub(super) fn apply_mutation(conn: &Connection, mutation: &Mutation) -> Result<(), StoreError> {
    match mutation {
        Mutation::ExtendAuditTree {
            org_id,
            size,
            last_hash,
            hashes,
            now,
        } => {
            let mut insert = conn.prepare_cached(q::INSERT_TREE_HASH)?;
            for (index, hash) in hashes {
                insert.execute(params![org_id, to_sql(*index)?, hex::encode(hash)])?;
            }
            conn.prepare_cached(q::UPSERT_TREE)?.execute(params![
                org_id,
                to_sql(*size)?,
                hex::encode(last_hash),
                now
            ])?;
        }
        Mutation::PutCheckpoint(checkpoint) => {
            conn.prepare_cached(q::INSERT_CHECKPOINT)?.execute(params![
                checkpoint.org_id,
                to_sql(checkpoint.tree_size)?,
                hex::encode(checkpoint.root_hash),
                checkpoint.note,
                checkpoint.created_at
            ])?;
        }
        _ => {
            return Err(StoreError::Invalid(
                "not a transparency-log mutation".into(),
            ))
        }
    }
    Ok(())
}

/// A size or index as a database integer.
pub(crate) fn to_sql(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{value} is beyond 2^63-1")))
}

impl SqliteStore {
    pub(crate) async fn audit_chain_heads(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(q::CHAIN_HEADS_SQLITE)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("org_id")?,
                    non_negative(row.try_get("seq")?, "audit_heads.seq")?,
                ))
            })
            .collect()
    }

    pub(crate) async fn audit_tree(&self, org_id: &str) -> Result<Option<TreeState>, StoreError> {
        let row = sqlx::query(q::GET_TREE)
            .bind(org_id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(tree_from_row).transpose()
    }

    pub(crate) async fn audit_events_raw(
        &self,
        org_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Result<StoredEvent, (Option<u64>, String)>>, StoreError> {
        let rows = sqlx::query(q::EVENTS_AFTER)
            .bind(org_id)
            .bind(to_sql(after_seq)?)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(raw_event_from_row).collect())
    }

    pub(crate) async fn audit_event_stats(
        &self,
        org_id: &str,
        from: &str,
        to: &str,
        samples: u32,
    ) -> Result<BTreeMap<String, TypeStats>, StoreError> {
        let counts = sqlx::query(q::EVENT_COUNTS)
            .bind(org_id)
            .bind(from)
            .bind(to)
            .fetch_all(&self.reader)
            .await?;
        let sampled = sqlx::query(q::EVENT_SAMPLES)
            .bind(org_id)
            .bind(from)
            .bind(to)
            .bind(i64::from(samples))
            .fetch_all(&self.reader)
            .await?;
        stats_from_rows(&counts, &sampled)
    }

    pub(crate) async fn latest_audit_event_ts(
        &self,
        org_id: &str,
        event_type: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(q::LATEST_OF_TYPE)
            .bind(org_id)
            .bind(event_type)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub(crate) async fn audit_checkpoints_between(
        &self,
        org_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let rows = sqlx::query(q::CHECKPOINTS_BETWEEN)
            .bind(org_id)
            .bind(from)
            .bind(to)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    pub(crate) async fn audit_events_of_action(
        &self,
        org_id: &str,
        action_id: &str,
    ) -> Result<Vec<Result<StoredEvent, (Option<u64>, String)>>, StoreError> {
        let rows = sqlx::query(q::EVENTS_OF_ACTION)
            .bind(org_id)
            .bind(action_id)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(raw_event_from_row).collect())
    }

    pub(crate) async fn audit_tree_hashes(
        &self,
        org_id: &str,
        indexes: &[u64],
    ) -> Result<HashMap<u64, Hash>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        tree_hashes(&mut conn, org_id, indexes).await
    }

    pub(crate) async fn audit_checkpoint(
        &self,
        org_id: &str,
        tree_size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let query = match tree_size {
            Some(size) => sqlx::query(q::CHECKPOINT_AT)
                .bind(org_id)
                .bind(to_sql(size)?),
            None => sqlx::query(q::LATEST_CHECKPOINT).bind(org_id),
        };
        let row = query.fetch_optional(&self.reader).await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    /// See [`crate::Store::verify_audit_tree`].
    pub(crate) async fn verify_audit_tree(
        &self,
        extra_sizes: &BTreeMap<String, BTreeSet<u64>>,
    ) -> Result<Vec<ChainVerification>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        // One read transaction: heads, events, trees and checkpoints of one snapshot, even
        // while the writer appends.
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // A database of a version before the transparency log (read-only, not migrated)
        // has chains but no trees.
        let has_trees: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_checkpoints'",
        )
        .fetch_one(&mut *tx)
        .await?;
        let chain_ids = if has_trees > 0 {
            q::CHAIN_IDS_SQLITE
        } else {
            q::CHAIN_IDS_BEFORE_TREES_SQLITE
        };
        let mut chains: BTreeSet<String> = sqlx::query_scalar(chain_ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        chains.extend(extra_sizes.keys().cloned());
        let mut results = Vec::with_capacity(chains.len());
        for org_id in chains {
            results.push(
                verify_chain(&mut tx, &org_id, extra_sizes.get(&org_id), has_trees > 0).await?,
            );
        }
        let org_ids: Vec<String> = sqlx::query_scalar("SELECT id FROM orgs")
            .fetch_all(&mut *tx)
            .await?;
        tx.rollback().await?;
        compare_verifications(&mut results, &org_ids);
        Ok(results)
    }
}

/// The stored hashes at `indexes` that are stored.
async fn tree_hashes(
    conn: &mut sqlx::SqliteConnection,
    org_id: &str,
    indexes: &[u64],
) -> Result<HashMap<u64, Hash>, StoreError> {
    let list =
        serde_json::to_string(indexes).map_err(|e| StoreError::Invalid(format!("indexes: {e}")))?;
    let rows = sqlx::query(q::TREE_HASHES_SQLITE)
        .bind(org_id)
        .bind(list)
        .fetch_all(&mut *conn)
        .await?;
    tree_hashes_from_rows(&rows)
}

/// Verifies one chain with its tree and checkpoints inside `tx`.
async fn verify_chain(
    tx: &mut Transaction<'_, Sqlite>,
    org_id: &str,
    extra: Option<&BTreeSet<u64>>,
    has_trees: bool,
) -> Result<ChainVerification, StoreError> {
    let mut heads = HashMap::new();
    if let Some(row) = sqlx::query(q::CHAIN_HEAD)
        .bind(org_id)
        .fetch_optional(&mut **tx)
        .await?
    {
        heads.insert(org_id.to_string(), head_result(org_id, &row));
    }
    let (checkpoints, tree) = if has_trees {
        let checkpoints = sqlx::query(q::LIST_CHECKPOINTS)
            .bind(org_id)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(checkpoint_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let tree = sqlx::query(q::GET_TREE)
            .bind(org_id)
            .fetch_optional(&mut **tx)
            .await?
            .as_ref()
            .map(tree_from_row)
            .transpose()?;
        (checkpoints, tree)
    } else {
        (Vec::new(), None)
    };
    let mut sizes: BTreeSet<u64> = checkpoints.iter().map(|c| c.tree_size).collect();
    sizes.extend(tree.map(|t| t.size));
    sizes.extend(extra.into_iter().flatten().copied());
    let mut walk = ChainWalk::new(org_id, sizes);
    {
        let mut rows = sqlx::query(q::EVENTS_ALL).bind(org_id).fetch(&mut **tx);
        while let Some(row) = rows.try_next().await? {
            if !walk.push(raw_event_from_row(&row)) {
                break;
            }
        }
    }
    let (result, roots) = walk.finish(&mut heads);
    let stored_tree = match tree {
        None => None,
        Some(tree) => {
            let root = match merkle::root_indexes(tree.size) {
                Ok(indexes) => {
                    let found = tree_hashes(&mut *tx, org_id, &indexes).await?;
                    crate::evidence::all_found(org_id, &indexes, found)
                        .map_err(|e| e.to_string())
                        .and_then(|hashes| stored_root(tree.size, &hashes))
                }
                Err(e) => Err(e.to_string()),
            };
            Some((tree.size, root))
        }
    };
    Ok(ChainVerification {
        result,
        roots,
        checkpoints,
        stored_tree,
    })
}

/// A chain head row as the verifier takes it.
pub(crate) fn head_result(
    org_id: &str,
    row: &impl crate::rows::DbRow,
) -> Result<(u64, Hash), ChainError> {
    head_from_row(row).map_err(|(seq, reason)| ChainError {
        org_id: org_id.to_string(),
        seq: seq.unwrap_or(0),
        kind: ChainErrorKind::Malformed {
            reason: format!("chain head: {reason}"),
        },
    })
}
