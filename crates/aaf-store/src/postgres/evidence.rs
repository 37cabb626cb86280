//! The transparency log on PostgreSQL: [`Mutation::ExtendAuditTree`] and
//! [`Mutation::PutCheckpoint`] inside the caller's write transaction, reads in a transaction
//! with the organisation set (row-level security), and the verification of chains with their
//! trees from one REPEATABLE READ snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aaf_core::audit::StoredEvent;
use aaf_core::evidence::merkle::{self, Hash};
use futures::TryStreamExt;
use sqlx::{PgConnection, Postgres, Row, Transaction};

use super::{set_org, OrgContext, PgStore};
use crate::evidence::{
    all_found, checkpoint_from_row, non_negative, q, raw_event_from_row, raw_event_with_payload,
    stats_from_rows, stored_root, tree_from_row, tree_hashes_from_rows, ChainVerification,
    ChainWalk, StoredCheckpoint, TreeState, TypeStats,
};
use crate::model::Mutation;
use crate::rows::compare_verifications;
use crate::sqlite::evidence::{head_result, to_sql};
use crate::StoreError;

/// Applies a transparency-log mutation inside the caller's transaction.
///
/// # Errors
///
/// [`StoreError::Invalid`] for any other mutation or a size beyond `i64`; the database's
/// errors.
pub(super) async fn apply_mutation(
    ctx: &mut OrgContext<'_, '_>,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    match mutation {
        Mutation::ExtendAuditTree {
            org_id,
            size,
            last_hash,
            hashes,
            now,
        } => {
            let indexes = hashes
                .iter()
                .map(|(index, _)| to_sql(*index))
                .collect::<Result<Vec<_>, _>>()?;
            let values: Vec<String> = hashes
                .iter()
                .map(|(_, h)| aaf_core::audit::hex32::encode(h))
                .collect();
            let conn = ctx.conn(org_id).await?;
            sqlx::query(q::INSERT_TREE_HASHES_PG)
                .bind(org_id)
                .bind(&indexes)
                .bind(&values)
                .execute(&mut *conn)
                .await?;
            sqlx::query(q::UPSERT_TREE)
                .bind(org_id)
                .bind(to_sql(*size)?)
                .bind(hex::encode(last_hash))
                .bind(now)
                .execute(&mut *conn)
                .await?;
        }
        Mutation::PutCheckpoint(checkpoint) => {
            sqlx::query(q::INSERT_CHECKPOINT)
                .bind(&checkpoint.org_id)
                .bind(to_sql(checkpoint.tree_size)?)
                .bind(hex::encode(checkpoint.root_hash))
                .bind(&checkpoint.note)
                .bind(&checkpoint.created_at)
                .execute(ctx.conn(&checkpoint.org_id).await?)
                .await?;
        }
        Mutation::SetDecisionLogCursor {
            sink,
            org_id,
            seq,
            expected,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            match expected {
                None => {
                    sqlx::query(q::PUT_DECISION_LOG_CURSOR)
                        .bind(sink)
                        .bind(org_id)
                        .bind(to_sql(*seq)?)
                        .bind(now)
                        .bind(Option::<i64>::None)
                        .execute(&mut *conn)
                        .await?;
                }
                Some(expected) => {
                    sqlx::query(q::MOVE_DECISION_LOG_CURSOR)
                        .bind(to_sql(*seq)?)
                        .bind(now)
                        .bind(sink)
                        .bind(org_id)
                        .bind(to_sql(*expected)?)
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
        _ => {
            return Err(StoreError::Invalid(
                "not a transparency-log mutation".into(),
            ))
        }
    }
    Ok(())
}

impl PgStore {
    pub(crate) async fn audit_chain_heads(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(q::CHAIN_HEADS_PG).fetch_all(&self.pool).await?;
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
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(q::GET_TREE)
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(tree_from_row).transpose()
    }

    pub(crate) async fn audit_events_raw(
        &self,
        org_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Result<StoredEvent, (Option<u64>, String)>>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(q::EVENTS_AFTER)
            .bind(org_id)
            .bind(to_sql(after_seq)?)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(raw_event_from_row).collect())
    }

    pub(crate) async fn audit_event_stats(
        &self,
        org_id: &str,
        from: &str,
        to: &str,
        samples: u32,
    ) -> Result<BTreeMap<String, TypeStats>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let counts = sqlx::query(q::EVENT_COUNTS)
            .bind(org_id)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *tx)
            .await?;
        let sampled = sqlx::query(q::EVENT_SAMPLES)
            .bind(org_id)
            .bind(from)
            .bind(to)
            .bind(i64::from(samples))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        stats_from_rows(&counts, &sampled)
    }

    pub(crate) async fn latest_audit_event_ts(
        &self,
        org_id: &str,
        event_type: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let ts = sqlx::query_scalar(q::LATEST_OF_TYPE)
            .bind(org_id)
            .bind(event_type)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ts)
    }

    pub(crate) async fn audit_checkpoints_between(
        &self,
        org_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(q::CHECKPOINTS_BETWEEN)
            .bind(org_id)
            .bind(from)
            .bind(to)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    pub(crate) async fn audit_events_of_type_after(
        &self,
        org_id: &str,
        event_type: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<Result<StoredEvent, (Option<u64>, String)>>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(q::EVENTS_OF_TYPE_AFTER)
            .bind(org_id)
            .bind(event_type)
            .bind(to_sql(after_seq)?)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(raw_event_with_payload).collect())
    }

    pub(crate) async fn decision_log_cursor(
        &self,
        sink: &str,
        org_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let seq = sqlx::query_scalar(q::GET_DECISION_LOG_CURSOR)
            .bind(sink)
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(seq)
    }

    pub(crate) async fn audit_events_between(
        &self,
        org_id: &str,
        agent_id: Option<&str>,
        from: &str,
        to: &str,
        limit: u32,
    ) -> Result<Vec<Result<StoredEvent, (Option<u64>, String)>>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(q::EVENTS_BETWEEN)
            .bind(org_id)
            .bind(from)
            .bind(to)
            .bind(agent_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(raw_event_with_payload).collect())
    }

    pub(crate) async fn audit_events_of_action(
        &self,
        org_id: &str,
        action_id: &str,
    ) -> Result<Vec<Result<StoredEvent, (Option<u64>, String)>>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(q::EVENTS_OF_ACTION)
            .bind(org_id)
            .bind(action_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows.iter().map(raw_event_with_payload).collect())
    }

    pub(crate) async fn audit_tree_hashes(
        &self,
        org_id: &str,
        indexes: &[u64],
    ) -> Result<HashMap<u64, Hash>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let found = tree_hashes(&mut tx, org_id, indexes).await?;
        tx.commit().await?;
        Ok(found)
    }

    pub(crate) async fn audit_checkpoint(
        &self,
        org_id: &str,
        tree_size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let query = match tree_size {
            Some(size) => sqlx::query(q::CHECKPOINT_AT)
                .bind(org_id)
                .bind(to_sql(size)?),
            None => sqlx::query(q::LATEST_CHECKPOINT).bind(org_id),
        };
        let row = query.fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    /// See [`crate::Store::verify_audit_tree`]: one REPEATABLE READ snapshot, one chain at a
    /// time (each read with its own `app.org_id`).
    pub(crate) async fn verify_audit_tree(
        &self,
        extra_sizes: &BTreeMap<String, BTreeSet<u64>>,
    ) -> Result<Vec<ChainVerification>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let mut chains: BTreeSet<String> = sqlx::query_scalar("SELECT aaf_chain_ids()")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        chains.extend(extra_sizes.keys().cloned());
        // A database of a version before the transparency log (read-only, not migrated)
        // has chains but no trees.
        let has_trees: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_class WHERE oid = to_regclass('audit_checkpoints')",
        )
        .fetch_one(&mut *tx)
        .await?;
        let mut results = Vec::with_capacity(chains.len());
        for org_id in chains {
            set_org(&mut tx, &org_id).await?;
            results.push(
                verify_chain(&mut tx, &org_id, extra_sizes.get(&org_id), has_trees > 0).await?,
            );
        }
        let org_ids: Vec<String> = sqlx::query_scalar("SELECT aaf_org_ids()")
            .fetch_all(&mut *tx)
            .await?;
        tx.rollback().await?;
        compare_verifications(&mut results, &org_ids);
        Ok(results)
    }
}

/// The stored hashes at `indexes` that are stored (the organisation set in `conn`).
async fn tree_hashes(
    conn: &mut PgConnection,
    org_id: &str,
    indexes: &[u64],
) -> Result<HashMap<u64, Hash>, StoreError> {
    let indexes = indexes
        .iter()
        .map(|i| to_sql(*i))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query(q::TREE_HASHES_PG)
        .bind(org_id)
        .bind(&indexes)
        .fetch_all(&mut *conn)
        .await?;
    tree_hashes_from_rows(&rows)
}

/// Verifies one chain with its tree and checkpoints inside `tx` (its organisation set).
async fn verify_chain(
    tx: &mut Transaction<'_, Postgres>,
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
                    all_found(org_id, &indexes, found)
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
