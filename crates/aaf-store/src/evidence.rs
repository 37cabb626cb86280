//! The transparency log over each audit chain, in the database (docs/audit.md,
//! "Transparency log"): the stored hashes of every chain's RFC 6962 / RFC 9162 Merkle tree
//! (`audit_tree_hashes`, the layout of [`aaf_core::evidence::merkle`]), how far each tree is
//! built (`audit_trees`), the signed checkpoints (`audit_checkpoints`), and the verification
//! of chains together with their trees and checkpoints.
//!
//! Trees are built by the server's tree builder (`aaf-server`, `evidence::builder`) with
//! [`crate::Mutation::ExtendAuditTree`]; checkpoints are written with
//! [`crate::Mutation::PutCheckpoint`]. Both are idempotent, so several nodes may do the
//! same work at once: a stored hash or a checkpoint is written once and never changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aaf_core::audit::{hex32, ChainError, ChainSummary, ChainVerifier, StoredEvent};
use aaf_core::evidence::merkle::{self, CompactTree, Hash};

use crate::rows::{finish_chain, DbRow};
use crate::{Backend, Store, StoreError};

/// How far a chain's tree is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeState {
    /// Leaves in the tree: the events with seq `1..=size`.
    pub size: u64,
    /// The chain hash of the event at seq `size` ([`aaf_core::audit::GENESIS_HASH`] for 0),
    /// where building goes on.
    pub last_hash: Hash,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The chain (organisation id or `system`).
    pub org_id: String,
    /// The tree size it commits to.
    pub tree_size: u64,
    /// The root of the tree of that size.
    pub root_hash: Hash,
    /// The C2SP signed note, as published.
    pub note: String,
    /// When it was signed (RFC 3339 UTC).
    pub created_at: String,
}

/// The result of verifying one chain together with its tree and checkpoints
/// ([`Store::verify_audit_tree`]).
#[derive(Debug, Clone)]
pub struct ChainVerification {
    /// The chain itself: as [`Store::verify_audit`].
    pub result: Result<ChainSummary, ChainError>,
    /// The roots of the tree recomputed from the chain's events, at every size that was
    /// asked for (the stored checkpoints', the stored tree's, the caller's) and that the
    /// chain reached before any break. A size that is missing here was not reached: the
    /// chain is shorter, or broken before it.
    pub roots: BTreeMap<u64, Hash>,
    /// The checkpoints stored for the chain, by tree size.
    pub checkpoints: Vec<StoredCheckpoint>,
    /// The stored tree: its size and the root computed from its stored hashes (an error
    /// when they cannot be read), `None` when no tree is stored.
    pub stored_tree: Option<(u64, Result<Hash, String>)>,
}

impl ChainVerification {
    /// A chain with nothing but its result.
    pub(crate) fn of(result: Result<ChainSummary, ChainError>) -> Self {
        ChainVerification {
            result,
            roots: BTreeMap::new(),
            checkpoints: Vec::new(),
            stored_tree: None,
        }
    }

    /// The chain's organisation.
    pub fn org_id(&self) -> &str {
        crate::rows::result_org(&self.result)
    }
}

/// One chain's verification as its rows stream in: the chain through
/// [`ChainVerifier::push_raw`] with leaf hashes, the tree's right edge, and the roots at the
/// asked sizes.
pub(crate) struct ChainWalk {
    verifier: ChainVerifier,
    tree: CompactTree,
    sizes: BTreeSet<u64>,
    roots: BTreeMap<u64, Hash>,
    failed: Option<ChainError>,
}

impl ChainWalk {
    pub(crate) fn new(org_id: &str, sizes: BTreeSet<u64>) -> Self {
        let mut roots = BTreeMap::new();
        if sizes.contains(&0) {
            roots.insert(0, merkle::EMPTY_ROOT);
        }
        ChainWalk {
            verifier: ChainVerifier::new(org_id).with_leaves(),
            tree: CompactTree::new(),
            sizes,
            roots,
            failed: None,
        }
    }

    /// Verifies the next row; `false` once the chain is broken (stop reading).
    pub(crate) fn push(&mut self, row: Result<StoredEvent, (Option<u64>, String)>) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let outcome = match row {
            Ok(event) => self.verifier.push_raw(&event),
            Err((seq, reason)) => {
                let seq = seq.unwrap_or_else(|| self.verifier.next_seq());
                Err(self.verifier.push_malformed(seq, reason))
            }
        };
        match outcome {
            Ok(()) => {
                let Some(leaf) = self.verifier.last_leaf_hash() else {
                    return true;
                };
                match self.tree.append(leaf) {
                    Ok(size) if self.sizes.contains(&size) => {
                        self.roots.insert(size, self.tree.root());
                    }
                    Ok(_) => {}
                    // Not reachable below 2^62 events; the chain is still verified.
                    Err(_) => {}
                }
                true
            }
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

    /// Ends the chain against its recorded head (see [`finish_chain`]).
    pub(crate) fn finish(
        self,
        heads: &mut HashMap<String, Result<(u64, Hash), ChainError>>,
    ) -> (Result<ChainSummary, ChainError>, BTreeMap<u64, Hash>) {
        let result = match self.failed {
            Some(e) => {
                heads.remove(self.verifier.org_id());
                Err(e)
            }
            None => finish_chain(self.verifier, heads),
        };
        (result, self.roots)
    }
}

/// Reads an `audit_events` row without parsing its `data`; on failure, the seq if it could be
/// read and the reason.
pub(crate) fn raw_event_from_row(row: &impl DbRow) -> Result<StoredEvent, (Option<u64>, String)> {
    let seq: i64 = row
        .col("seq")
        .map_err(|e| (None, format!("seq is not an integer: {e}")))?;
    let seq = u64::try_from(seq).map_err(|_| (None, format!("seq {seq} is negative")))?;
    let bad = |what: &str, e: &dyn std::fmt::Display| (Some(seq), format!("{what}: {e}"));
    let text = |column: &str| -> Result<String, (Option<u64>, String)> {
        row.col::<String>(column)
            .map_err(|e| bad(&format!("{column} is not text"), &e))
    };
    let optional_text = |column: &str| -> Result<Option<String>, (Option<u64>, String)> {
        row.col::<Option<String>>(column)
            .map_err(|e| bad(&format!("{column} is not text"), &e))
    };
    Ok(StoredEvent {
        seq,
        ts: text("ts")?,
        org_id: text("org_id")?,
        agent_id: optional_text("agent_id")?,
        action_id: optional_text("action_id")?,
        event_type: text("type")?,
        data: text("data")?,
        prev_hash: hex32::parse(&text("prev_hash")?).map_err(|e| bad("prev_hash", &e))?,
        hash: hex32::parse(&text("hash")?).map_err(|e| bad("hash", &e))?,
        payload: None,
        payload_removed: None,
    })
}

/// [`raw_event_from_row`] of a query that also selects `payload` and `payload_removed`.
pub(crate) fn raw_event_with_payload(
    row: &impl DbRow,
) -> Result<StoredEvent, (Option<u64>, String)> {
    let mut event = raw_event_from_row(row)?;
    let seq = event.seq;
    let optional_text = |column: &str| -> Result<Option<String>, (Option<u64>, String)> {
        row.col::<Option<String>>(column)
            .map_err(|e| (Some(seq), format!("{column} is not text: {e}")))
    };
    event.payload = optional_text("payload")?;
    event.payload_removed = optional_text("payload_removed")?;
    Ok(event)
}

/// Reads an `audit_checkpoints` row.
pub(crate) fn checkpoint_from_row(row: &impl DbRow) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        org_id: row.col("org_id")?,
        tree_size: non_negative(row.col("tree_size")?, "audit_checkpoints.tree_size")?,
        root_hash: hash_column(
            &row.col::<String>("root_hash")?,
            "audit_checkpoints.root_hash",
        )?,
        note: row.col("note")?,
        created_at: row.col("created_at")?,
    })
}

/// Reads an `audit_trees` row.
pub(crate) fn tree_from_row(row: &impl DbRow) -> Result<TreeState, StoreError> {
    Ok(TreeState {
        size: non_negative(row.col("size")?, "audit_trees.size")?,
        last_hash: hash_column(&row.col::<String>("last_hash")?, "audit_trees.last_hash")?,
    })
}

/// Reads `(idx, hash)` rows of `audit_tree_hashes`.
pub(crate) fn tree_hashes_from_rows<R: DbRow>(
    rows: &[R],
) -> Result<HashMap<u64, Hash>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok((
                non_negative(row.col("idx")?, "audit_tree_hashes.idx")?,
                hash_column(&row.col::<String>("hash")?, "audit_tree_hashes.hash")?,
            ))
        })
        .collect()
}

pub(crate) fn non_negative(value: i64, column: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} is negative")))
}

pub(crate) fn hash_column(text: &str, column: &str) -> Result<Hash, StoreError> {
    hex32::parse(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// The root of a stored tree of `size` leaves from the stored hashes `hashes` (which must hold
/// [`merkle::root_indexes`]`(size)`).
pub(crate) fn stored_root(size: u64, hashes: &HashMap<u64, Hash>) -> Result<Hash, String> {
    merkle::root(size, hashes).map_err(|e| format!("the stored tree of size {size}: {e}"))
}

/// The stored hashes of `org_id`'s tree at `indexes`, as a map; [`StoreError::NotFound`] when
/// one is missing.
pub(crate) fn all_found(
    org_id: &str,
    indexes: &[u64],
    found: HashMap<u64, Hash>,
) -> Result<HashMap<u64, Hash>, StoreError> {
    match indexes.iter().find(|i| !found.contains_key(i)) {
        Some(missing) => Err(StoreError::NotFound(format!(
            "stored hash {missing} of the audit tree of {org_id}"
        ))),
        None => Ok(found),
    }
}

/// The audit events of one type in a period ([`Store::audit_event_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeStats {
    /// How many.
    pub count: u64,
    /// The seqs of the newest, newest first.
    pub samples: Vec<u64>,
}

/// Reads `(type, n)` and `(type, seq)` rows into stats per type.
pub(crate) fn stats_from_rows<R: DbRow>(
    counts: &[R],
    samples: &[R],
) -> Result<BTreeMap<String, TypeStats>, StoreError> {
    let mut stats: BTreeMap<String, TypeStats> = BTreeMap::new();
    for row in counts {
        stats.entry(row.col("type")?).or_default().count = non_negative(row.col("n")?, "count")?;
    }
    for row in samples {
        stats
            .entry(row.col("type")?)
            .or_default()
            .samples
            .push(non_negative(row.col("seq")?, "audit_events.seq")?);
    }
    Ok(stats)
}

/// Stored events read by a backend, each row that could not be read a
/// [`StoreError::Corrupt`] naming its seq.
fn readable(
    org_id: &str,
    rows: Vec<Result<StoredEvent, (Option<u64>, String)>>,
) -> Result<Vec<StoredEvent>, StoreError> {
    rows.into_iter()
        .map(|row| {
            row.map_err(|(seq, reason)| {
                StoreError::Corrupt(format!(
                    "audit event {} of {org_id}: {reason}",
                    seq.map_or_else(|| "?".to_string(), |s| s.to_string())
                ))
            })
        })
        .collect()
}

impl Store {
    /// Per event type, how many of `org_id`'s audit events have `from <= ts < to` (RFC 3339
    /// UTC with microseconds, as events are stamped), and the seqs of up to `samples` of the
    /// newest. One pass over the organisation's chain (no index on `ts`): for reports, not
    /// for the decision path.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    pub async fn audit_event_stats(
        &self,
        org_id: &str,
        from: &str,
        to: &str,
        samples: u32,
    ) -> Result<BTreeMap<String, TypeStats>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.audit_event_stats(org_id, from, to, samples).await,
            Backend::Postgres(p) => p.audit_event_stats(org_id, from, to, samples).await,
        }
    }

    /// The `ts` of `org_id`'s newest audit event of `event_type`, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    pub async fn latest_audit_event_ts(
        &self,
        org_id: &str,
        event_type: &str,
    ) -> Result<Option<String>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.latest_audit_event_ts(org_id, event_type).await,
            Backend::Postgres(p) => p.latest_audit_event_ts(org_id, event_type).await,
        }
    }

    /// `org_id`'s checkpoints signed with `from <= created_at < to`, by tree size.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    pub async fn audit_checkpoints_between(
        &self,
        org_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.audit_checkpoints_between(org_id, from, to).await,
            Backend::Postgres(p) => p.audit_checkpoints_between(org_id, from, to).await,
        }
    }

    /// Every chain's head: `(org_id, seq)` of each organisation's chain and of
    /// [`crate::SYSTEM_CHAIN`] (what the tree builder polls). Across organisations (on
    /// PostgreSQL through the `SECURITY DEFINER` function `aaf_chain_heads()`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] for a negative seq.
    pub async fn audit_chain_heads(&self) -> Result<Vec<(String, u64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.audit_chain_heads().await,
            Backend::Postgres(p) => p.audit_chain_heads().await,
        }
    }

    /// How far `org_id`'s tree is built (`None`: not started).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    pub async fn audit_tree(&self, org_id: &str) -> Result<Option<TreeState>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.audit_tree(org_id).await,
            Backend::Postgres(p) => p.audit_tree(org_id).await,
        }
    }

    /// Up to `limit` events of `org_id`'s chain with `seq > after_seq`, in seq order, as
    /// stored (`data` unparsed), for [`ChainVerifier::push_raw`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] when a row cannot be read.
    pub async fn audit_events_raw(
        &self,
        org_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = match &self.backend {
            Backend::Sqlite(s) => s.audit_events_raw(org_id, after_seq, limit).await,
            Backend::Postgres(p) => p.audit_events_raw(org_id, after_seq, limit).await,
        }?;
        readable(org_id, rows)
    }

    /// Up to `limit` events of `org_id`'s chain with `from <= ts < to` (RFC 3339 UTC with
    /// microseconds), of the agent `agent_id` when given, in seq order, as stored. One pass
    /// over the organisation's chain (no index on `ts`): for evidence exports, not for the
    /// decision path.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] when a row cannot be read.
    pub async fn audit_events_between(
        &self,
        org_id: &str,
        agent_id: Option<&str>,
        from: &str,
        to: &str,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = match &self.backend {
            Backend::Sqlite(s) => {
                s.audit_events_between(org_id, agent_id, from, to, limit)
                    .await
            }
            Backend::Postgres(p) => {
                p.audit_events_between(org_id, agent_id, from, to, limit)
                    .await
            }
        }?;
        readable(org_id, rows)
    }

    /// The events of `org_id`'s chain about the action `action_id`, in seq order, as stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] when a row cannot be read.
    pub async fn audit_events_of_action(
        &self,
        org_id: &str,
        action_id: &str,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = match &self.backend {
            Backend::Sqlite(s) => s.audit_events_of_action(org_id, action_id).await,
            Backend::Postgres(p) => p.audit_events_of_action(org_id, action_id).await,
        }?;
        readable(org_id, rows)
    }

    /// Up to `limit` of `org_id`'s audit events of `event_type` with `seq > after_seq`, in
    /// seq order, as stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] when a row cannot be read.
    pub async fn audit_events_of_type_after(
        &self,
        org_id: &str,
        event_type: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = match &self.backend {
            Backend::Sqlite(s) => {
                s.audit_events_of_type_after(org_id, event_type, after_seq, limit)
                    .await
            }
            Backend::Postgres(p) => {
                p.audit_events_of_type_after(org_id, event_type, after_seq, limit)
                    .await
            }
        }?;
        readable(org_id, rows)
    }

    /// How far decision-log sink `sink` exported `org_id`'s decisions (the last seq), if at
    /// all ([`crate::Mutation::SetDecisionLogCursor`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    pub async fn decision_log_cursor(
        &self,
        sink: &str,
        org_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let seq = match &self.backend {
            Backend::Sqlite(s) => s.decision_log_cursor(sink, org_id).await,
            Backend::Postgres(p) => p.decision_log_cursor(sink, org_id).await,
        }?;
        seq.map(|s| non_negative(s, "decision_log_cursors.seq"))
            .transpose()
    }

    /// The stored hashes of `org_id`'s tree at `indexes` (from
    /// [`merkle::root_indexes`], [`merkle::inclusion_proof_indexes`], ...), as a map that is a
    /// [`merkle::HashReader`].
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when one is not stored (the tree is not built that far),
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    pub async fn audit_tree_hashes(
        &self,
        org_id: &str,
        indexes: &[u64],
    ) -> Result<HashMap<u64, Hash>, StoreError> {
        if indexes.is_empty() {
            return Ok(HashMap::new());
        }
        let found = match &self.backend {
            Backend::Sqlite(s) => s.audit_tree_hashes(org_id, indexes).await,
            Backend::Postgres(p) => p.audit_tree_hashes(org_id, indexes).await,
        }?;
        all_found(org_id, indexes, found)
    }

    /// The checkpoint of `org_id` at `tree_size`, or (`tree_size` `None`) the latest.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`], [`StoreError::Corrupt`].
    pub async fn audit_checkpoint(
        &self,
        org_id: &str,
        tree_size: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.audit_checkpoint(org_id, tree_size).await,
            Backend::Postgres(p) => p.audit_checkpoint(org_id, tree_size).await,
        }
    }

    /// Verifies every chain as [`Store::verify_audit`] does, and with it each chain's tree:
    /// the roots of the tree recomputed from the events at the sizes of the chain's stored
    /// checkpoints, of its stored tree, and at `extra_sizes` (per chain: for example the
    /// sizes of checkpoints exported out of the database), and the root of the stored tree
    /// read from its stored hashes. Comparing them (and checking the checkpoints'
    /// signatures) is the caller's: see `aaf audit verify`. One consistent snapshot; memory
    /// does not grow with the number of events.
    ///
    /// A chain named in `extra_sizes` that has no events and no head is reported as a chain
    /// (so that checkpoints of a chain deleted whole are not silently skipped).
    ///
    /// # Errors
    ///
    /// As [`Store::verify_audit`].
    pub async fn verify_audit_tree(
        &self,
        extra_sizes: &BTreeMap<String, BTreeSet<u64>>,
    ) -> Result<Vec<ChainVerification>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.verify_audit_tree(extra_sizes).await,
            Backend::Postgres(p) => p.verify_audit_tree(extra_sizes).await,
        }
    }
}

/// The SQL of the transparency log; `_SQLITE` / `_PG` where the two differ.
pub(crate) mod q {
    /// `()` → `(org_id, seq)` of every chain head.
    pub(crate) const CHAIN_HEADS_SQLITE: &str =
        "SELECT org_id, seq FROM audit_heads ORDER BY org_id";
    /// [`CHAIN_HEADS_SQLITE`] across row-level security.
    pub(crate) const CHAIN_HEADS_PG: &str =
        "SELECT org_id, seq FROM aaf_chain_heads() ORDER BY org_id";
    /// `()` → every chain id with events, a head, a tree or a checkpoint.
    pub(crate) const CHAIN_IDS_SQLITE: &str = "SELECT org_id FROM audit_heads \
         UNION SELECT DISTINCT org_id FROM audit_events \
         UNION SELECT org_id FROM audit_trees \
         UNION SELECT DISTINCT org_id FROM audit_checkpoints ORDER BY 1";
    /// [`CHAIN_IDS_SQLITE`] in a database of a version before the transparency log.
    pub(crate) const CHAIN_IDS_BEFORE_TREES_SQLITE: &str = "SELECT org_id FROM audit_heads \
         UNION SELECT DISTINCT org_id FROM audit_events ORDER BY 1";
    /// `(org_id)` → the chain's head.
    pub(crate) const CHAIN_HEAD: &str =
        "SELECT org_id, seq, hash FROM audit_heads WHERE org_id = $1";
    /// `(org_id)` → how far the tree is built.
    pub(crate) const GET_TREE: &str = "SELECT size, last_hash FROM audit_trees WHERE org_id = $1";
    /// `(org_id, after_seq, limit)` → events in seq order.
    pub(crate) const EVENTS_AFTER: &str = "SELECT org_id, seq, ts, agent_id, action_id, type, \
         data, prev_hash, hash FROM audit_events WHERE org_id = $1 AND seq > $2 \
         ORDER BY seq LIMIT $3";
    /// `(org_id, action_id)` → the action's events in seq order.
    /// `(org_id, from, to, agent_id or NULL, limit)` → the events of the period (of one agent
    /// when given), in seq order.
    pub(crate) const EVENTS_BETWEEN: &str = "SELECT org_id, seq, ts, agent_id, action_id, \
         type, data, prev_hash, hash, payload, payload_removed FROM audit_events WHERE org_id = $1 AND ts >= $2 \
         AND ts < $3 AND ($4 IS NULL OR agent_id = $4) ORDER BY seq LIMIT $5";
    pub(crate) const EVENTS_OF_ACTION: &str = "SELECT org_id, seq, ts, agent_id, action_id, \
         type, data, prev_hash, hash, payload, payload_removed FROM audit_events WHERE org_id = $1 AND action_id = $2 \
         ORDER BY seq";
    /// `(org_id, from, to)` → `(type, n)`: events per type with `from <= ts < to`.
    pub(crate) const EVENT_COUNTS: &str = "SELECT type, count(*) AS n FROM audit_events \
         WHERE org_id = $1 AND ts >= $2 AND ts < $3 GROUP BY type";
    /// `(org_id, from, to, per type)` → `(type, seq)`: the newest events of each type in
    /// the period.
    pub(crate) const EVENT_SAMPLES: &str = "SELECT type, seq FROM (SELECT type, seq, \
         row_number() OVER (PARTITION BY type ORDER BY seq DESC) AS rn FROM audit_events \
         WHERE org_id = $1 AND ts >= $2 AND ts < $3) ranked WHERE rn <= $4 \
         ORDER BY type, seq DESC";
    /// `(org_id, type)` → the `ts` of the newest event of that type.
    pub(crate) const LATEST_OF_TYPE: &str = "SELECT ts FROM audit_events \
         WHERE org_id = $1 AND type = $2 ORDER BY seq DESC LIMIT 1";
    /// `(org_id, from, to)` → the checkpoints signed in the period, by tree size.
    pub(crate) const CHECKPOINTS_BETWEEN: &str = "SELECT org_id, tree_size, root_hash, note, \
         created_at FROM audit_checkpoints WHERE org_id = $1 AND created_at >= $2 \
         AND created_at < $3 ORDER BY tree_size";
    /// `(org_id, type, after_seq, limit)` → events of one type after a seq, in seq order.
    pub(crate) const EVENTS_OF_TYPE_AFTER: &str = "SELECT org_id, seq, ts, agent_id, \
         action_id, type, data, prev_hash, hash, payload, payload_removed FROM audit_events WHERE org_id = $1 \
         AND type = $2 AND seq > $3 ORDER BY seq LIMIT $4";
    /// `(sink, org_id)` → the decision-log cursor.
    pub(crate) const GET_DECISION_LOG_CURSOR: &str =
        "SELECT seq FROM decision_log_cursors WHERE sink = $1 AND org_id = $2";
    /// `(sink, org_id, seq, now, expected)`: the new cursor, when the stored one is
    /// `expected` (insert when there is none and `expected` is NULL).
    pub(crate) const PUT_DECISION_LOG_CURSOR: &str = "INSERT INTO decision_log_cursors \
         (sink, org_id, seq, updated_at) SELECT $1, $2, $3, $4 WHERE $5 IS NULL \
         ON CONFLICT (sink, org_id) DO NOTHING";
    /// `(seq, now, sink, org_id, expected)`: moves an existing cursor from `expected`.
    pub(crate) const MOVE_DECISION_LOG_CURSOR: &str = "UPDATE decision_log_cursors \
         SET seq = $1, updated_at = $2 WHERE sink = $3 AND org_id = $4 AND seq = $5";
    /// `(org_id)` → every event in seq order.
    pub(crate) const EVENTS_ALL: &str = "SELECT org_id, seq, ts, agent_id, action_id, type, \
         data, prev_hash, hash FROM audit_events WHERE org_id = $1 ORDER BY seq";
    /// `(org_id, JSON array of indexes)` → `(idx, hash)`.
    pub(crate) const TREE_HASHES_SQLITE: &str = "SELECT idx, hash FROM audit_tree_hashes \
         WHERE org_id = $1 AND idx IN (SELECT value FROM json_each($2))";
    /// `(org_id, bigint[])` → `(idx, hash)`.
    pub(crate) const TREE_HASHES_PG: &str =
        "SELECT idx, hash FROM audit_tree_hashes WHERE org_id = $1 AND idx = ANY($2)";
    /// `(org_id)` → the latest checkpoint.
    pub(crate) const LATEST_CHECKPOINT: &str = "SELECT org_id, tree_size, root_hash, note, created_at FROM audit_checkpoints WHERE org_id = $1 \
         ORDER BY tree_size DESC LIMIT 1";
    /// `(org_id, tree_size)` → that checkpoint.
    pub(crate) const CHECKPOINT_AT: &str =
        "SELECT org_id, tree_size, root_hash, note, created_at FROM audit_checkpoints \
         WHERE org_id = $1 AND tree_size = $2";
    /// `(org_id)` → every checkpoint by tree size.
    pub(crate) const LIST_CHECKPOINTS: &str = "SELECT org_id, tree_size, root_hash, note, created_at FROM audit_checkpoints WHERE org_id = $1 \
         ORDER BY tree_size";
    /// `(org_id, idx, hash)`: a stored hash, unless that index is stored.
    pub(crate) const INSERT_TREE_HASH: &str = "INSERT INTO audit_tree_hashes (org_id, idx, hash) \
         VALUES ($1, $2, $3) ON CONFLICT (org_id, idx) DO NOTHING";
    /// `(org_id, bigint[], text[])`: [`INSERT_TREE_HASH`] for many.
    pub(crate) const INSERT_TREE_HASHES_PG: &str = "INSERT INTO audit_tree_hashes \
         (org_id, idx, hash) SELECT $1, * FROM UNNEST($2::bigint[], $3::text[]) \
         ON CONFLICT (org_id, idx) DO NOTHING";
    /// `(org_id, size, last_hash, now)`: the tree's new size, unless it is built further.
    pub(crate) const UPSERT_TREE: &str = "INSERT INTO audit_trees \
         (org_id, size, last_hash, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id) DO UPDATE SET size = excluded.size, \
         last_hash = excluded.last_hash, updated_at = excluded.updated_at \
         WHERE audit_trees.size < excluded.size";
    /// `(org_id, tree_size, root_hash, note, created_at)`: a checkpoint, unless one of that
    /// size is stored.
    pub(crate) const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints \
         (org_id, tree_size, root_hash, note, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (org_id, tree_size) DO NOTHING";
}
