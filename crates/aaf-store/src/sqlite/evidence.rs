//! The transparency log on SQLite: [`Mutation::ExtendAuditTree`] and
//! [`Mutation::PutCheckpoint`] inside the writer's transaction, reads on the reader pool,
//! and the verification of chains with their trees in one read transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aaf_core::audit::{ChainError, ChainErrorKind, StoredEvent};
use aaf_core::evidence::merkle::{self, Hash};
use std::sync::Arc;

use rusqlite::{params, Connection};
use sqlx::Row;

use super::SqliteStore;
use crate::evidence::{
    checkpoint_from_row, non_negative, q, raw_event_with_payload, stats_from_rows, stored_root,
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
                insert.execute(params![
                    org_id,
                    to_sql(*index)?,
                    aaf_core::audit::hex32::encode(hash)
                ])?;
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
        Mutation::SetDecisionLogCursor {
            sink,
            org_id,
            seq,
            expected,
            now,
        } => match expected {
            None => {
                conn.prepare_cached(q::PUT_DECISION_LOG_CURSOR)?
                    .execute(params![
                        sink,
                        org_id,
                        to_sql(*seq)?,
                        now,
                        Option::<i64>::None
                    ])?;
            }
            Some(expected) => {
                conn.prepare_cached(q::MOVE_DECISION_LOG_CURSOR)?
                    .execute(params![
                        to_sql(*seq)?,
                        now,
                        sink,
                        org_id,
                        to_sql(*expected)?
                    ])?;
            }
        },
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

    /// Through the read-only rusqlite connection ([`SqliteStore::raw_reader`]), on a
    /// blocking thread: the tree builder reads every event once, and sqlx's SQLite rows cost
    /// several times more per row.
    pub(crate) async fn audit_events_raw(
        &self,
        org_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Result<StoredEvent, (Option<u64>, String)>>, StoreError> {
        let (reader, path, org_id) = (
            Arc::clone(&self.raw_reader),
            self.path.clone(),
            org_id.to_string(),
        );
        let after = to_sql(after_seq)?;
        tokio::task::spawn_blocking(move || {
            let mut guard = reader.lock().unwrap_or_else(|e| e.into_inner());
            if guard.is_none() {
                let conn = Connection::open_with_flags(
                    &path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                conn.busy_timeout(std::time::Duration::from_secs(5))?;
                *guard = Some(conn);
            }
            let Some(conn) = guard.as_ref() else {
                return Err(StoreError::Unavailable("no reader connection".into()));
            };
            let mut statement = conn.prepare_cached(q::EVENTS_AFTER)?;
            let mut rows = statement.query(params![org_id, after, i64::from(limit)])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(raw_event(row));
            }
            Ok(events)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("the reader thread failed: {e}")))?
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

    pub(crate) async fn audit_events_of_type_after(
        &self,
        org_id: &str,
        event_type: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Result<StoredEvent, (Option<u64>, String)>>, StoreError> {
        let rows = sqlx::query(q::EVENTS_OF_TYPE_AFTER)
            .bind(org_id)
            .bind(event_type)
            .bind(to_sql(after_seq)?)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(raw_event_with_payload).collect())
    }

    pub(crate) async fn decision_log_cursor(
        &self,
        sink: &str,
        org_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(q::GET_DECISION_LOG_CURSOR)
            .bind(sink)
            .bind(org_id)
            .fetch_optional(&self.reader)
            .await?)
    }

    pub(crate) async fn audit_events_between(
        &self,
        org_id: &str,
        agent_id: Option<&str>,
        from: &str,
        to: &str,
        limit: u32,
    ) -> Result<Vec<Result<StoredEvent, (Option<u64>, String)>>, StoreError> {
        let rows = sqlx::query(q::EVENTS_BETWEEN)
            .bind(org_id)
            .bind(from)
            .bind(to)
            .bind(agent_id)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        Ok(rows.iter().map(raw_event_with_payload).collect())
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
        Ok(rows.iter().map(raw_event_with_payload).collect())
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

    /// See [`crate::Store::verify_audit_tree`]. Reads with a read-only rusqlite connection
    /// of its own, on a blocking thread, in one read transaction (one snapshot of the WAL
    /// database while the writer appends): streaming rows through rusqlite is several times
    /// faster than through sqlx's SQLite driver, which is what limited verification.
    pub(crate) async fn verify_audit_tree(
        &self,
        extra_sizes: &BTreeMap<String, BTreeSet<u64>>,
    ) -> Result<Vec<ChainVerification>, StoreError> {
        let path = self.path.clone();
        let extra = extra_sizes.clone();
        tokio::task::spawn_blocking(move || verify_file(&path, &extra))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the verifier thread failed: {e}")))?
    }
}

/// [`SqliteStore::verify_audit_tree`] on the database file at `path`.
fn verify_file(
    path: &std::path::Path,
    extra_sizes: &BTreeMap<String, BTreeSet<u64>>,
) -> Result<Vec<ChainVerification>, StoreError> {
    use rusqlite::OpenFlags;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
    // A database of a version before the transparency log (read-only, not migrated) has
    // chains but no trees.
    let has_trees: i64 = tx.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_checkpoints'",
        [],
        |row| row.get(0),
    )?;
    let chain_ids = if has_trees > 0 {
        q::CHAIN_IDS_SQLITE
    } else {
        q::CHAIN_IDS_BEFORE_TREES_SQLITE
    };
    let mut chains: BTreeSet<String> = tx
        .prepare(chain_ids)?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    chains.extend(extra_sizes.keys().cloned());
    let mut results = Vec::with_capacity(chains.len());
    for org_id in chains {
        results.push(verify_chain(
            &tx,
            &org_id,
            extra_sizes.get(&org_id),
            has_trees > 0,
        )?);
    }
    let org_ids: Vec<String> = tx
        .prepare("SELECT id FROM orgs")?
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    tx.rollback()?;
    compare_verifications(&mut results, &org_ids);
    Ok(results)
}

/// Reads an `audit_events` row (columns in [`q::EVENTS_ALL`]'s order) without parsing its
/// `data`; on failure, the seq if it could be read and the reason.
fn raw_event(row: &rusqlite::Row<'_>) -> Result<StoredEvent, (Option<u64>, String)> {
    let seq: i64 = row
        .get(1)
        .map_err(|e| (None, format!("seq is not an integer: {e}")))?;
    let seq = u64::try_from(seq).map_err(|_| (None, format!("seq {seq} is negative")))?;
    let text = |i: usize, column: &str| -> Result<String, (Option<u64>, String)> {
        row.get::<_, String>(i)
            .map_err(|e| (Some(seq), format!("{column} is not text: {e}")))
    };
    let optional = |i: usize, column: &str| -> Result<Option<String>, (Option<u64>, String)> {
        row.get::<_, Option<String>>(i)
            .map_err(|e| (Some(seq), format!("{column} is not text: {e}")))
    };
    let hash = |i: usize, column: &str| -> Result<[u8; 32], (Option<u64>, String)> {
        aaf_core::audit::hex32::parse(&text(i, column)?)
            .map_err(|e| (Some(seq), format!("{column}: {e}")))
    };
    Ok(StoredEvent {
        seq,
        org_id: text(0, "org_id")?,
        ts: text(2, "ts")?,
        agent_id: optional(3, "agent_id")?,
        action_id: optional(4, "action_id")?,
        event_type: text(5, "type")?,
        data: text(6, "data")?,
        prev_hash: hash(7, "prev_hash")?,
        hash: hash(8, "hash")?,
        payload: None,
        payload_removed: None,
    })
}

/// Verifies one chain with its tree and checkpoints inside `tx`.
fn verify_chain(
    tx: &rusqlite::Transaction<'_>,
    org_id: &str,
    extra: Option<&BTreeSet<u64>>,
    has_trees: bool,
) -> Result<ChainVerification, StoreError> {
    let mut heads = HashMap::new();
    {
        let mut head = tx.prepare(q::CHAIN_HEAD)?;
        let mut rows = head.query([org_id])?;
        if let Some(row) = rows.next()? {
            let parsed = match (row.get::<_, i64>(1), row.get::<_, String>(2)) {
                (Ok(seq), Ok(hash)) => crate::rows::parse_head(Ok(seq), || Ok(hash)),
                (Err(e), _) => crate::rows::parse_head(Err(e.to_string()), || Ok(String::new())),
                (Ok(seq), Err(e)) => crate::rows::parse_head(Ok(seq), || Err(e.to_string())),
            };
            heads.insert(
                org_id.to_string(),
                parsed.map_err(|(seq, reason)| ChainError {
                    org_id: org_id.to_string(),
                    seq: seq.unwrap_or(0),
                    kind: ChainErrorKind::Malformed {
                        reason: format!("chain head: {reason}"),
                    },
                }),
            );
        }
    }
    let (checkpoints, tree) = if has_trees {
        let checkpoints = tx
            .prepare(q::LIST_CHECKPOINTS)?
            .query_map([org_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?
            .map(|row| {
                let (org_id, size, root, note, created_at) = row?;
                Ok(StoredCheckpoint {
                    org_id,
                    tree_size: non_negative(size, "audit_checkpoints.tree_size")?,
                    root_hash: crate::evidence::hash_column(&root, "audit_checkpoints.root_hash")?,
                    note,
                    created_at,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let tree = {
            let mut statement = tx.prepare(q::GET_TREE)?;
            let mut rows = statement.query([org_id])?;
            match rows.next()? {
                Some(row) => Some(TreeState {
                    size: non_negative(row.get(0)?, "audit_trees.size")?,
                    last_hash: crate::evidence::hash_column(
                        &row.get::<_, String>(1)?,
                        "audit_trees.last_hash",
                    )?,
                }),
                None => None,
            }
        };
        (checkpoints, tree)
    } else {
        (Vec::new(), None)
    };
    let mut sizes: BTreeSet<u64> = checkpoints.iter().map(|c| c.tree_size).collect();
    sizes.extend(tree.map(|t| t.size));
    sizes.extend(extra.into_iter().flatten().copied());
    let mut walk = ChainWalk::new(org_id, sizes);
    {
        let mut statement = tx.prepare(q::EVENTS_ALL)?;
        let mut rows = statement.query([org_id])?;
        while let Some(row) = rows.next()? {
            if !walk.push(raw_event(row)) {
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
                    let list = serde_json::to_string(&indexes)
                        .map_err(|e| StoreError::Invalid(format!("indexes: {e}")))?;
                    let found = tx
                        .prepare(q::TREE_HASHES_SQLITE)?
                        .query_map(rusqlite::params![org_id, list], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                        })?
                        .map(|row| {
                            let (index, hash) = row?;
                            Ok((
                                non_negative(index, "audit_tree_hashes.idx")?,
                                crate::evidence::hash_column(&hash, "audit_tree_hashes.hash")?,
                            ))
                        })
                        .collect::<Result<HashMap<u64, Hash>, StoreError>>()?;
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
