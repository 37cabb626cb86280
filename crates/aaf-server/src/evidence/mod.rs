//! The transparency log over each organisation's audit chain (docs/audit.md, "Transparency
//! log"; issue 18, section 1).
//!
//! Each chain is also an RFC 6962 / RFC 9162 Merkle tree whose leaf `i` is the event with seq
//! `i + 1` (leaf hash `SHA-256(0x00 || JCS(event))`, [`aaf_core::evidence::event_leaf_hash`]).
//! The [`worker`] of every node brings each chain's tree up to the chain's head in the
//! background, off the decision path: it reads the new events as stored, checks that they
//! link to the chain (a broken chain stops its tree at the break, with an error log line and
//! the `aaf_audit_tree_breaks_total` counter), and appends their stored hashes with
//! [`aaf_store::Mutation::ExtendAuditTree`], which is idempotent, so nodes may build the same
//! tree at once. It then signs a checkpoint (C2SP `tlog-checkpoint` as a C2SP signed note
//! with the Ed25519 log key) every `evidence.checkpoint_every_events` events or
//! `evidence.checkpoint_interval_seconds`, stores it, and writes it to the configured sinks
//! ([`sinks`]). Proofs are served from the stored hashes: [`TransparencyLog::inclusion`] and
//! [`TransparencyLog::consistency`]; [`pack`] gathers proof packs (docs/proof-packs.md);
//! [`decision_log`] exports decisions in the OPA decision-log format.

pub mod config;
pub mod decision_log;
pub mod pack;
pub mod sinks;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aaf_core::audit::{ChainVerifier, GENESIS_HASH};
use aaf_core::evidence::checkpoint::{Checkpoint, LogKey};
use aaf_core::evidence::merkle::{self, Hash};
use aaf_store::evidence::{StoredCheckpoint, TreeState};
use aaf_store::{AuditWriter, Mutation, Store, StoreError, WriteUnit};

pub use config::{EvidenceConfig, SinkConfig};

/// The file of the log key generated on first start (SQLite, no `evidence.log_key_file`).
pub const GENERATED_KEY_FILE: &str = "log-key";

/// Why a transparency-log request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A query parameter is wrong (400, naming it).
    #[error("{message}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// What was asked for does not exist (yet) (404, naming the parameter).
    #[error("{message}")]
    NotFound {
        /// The parameter.
        field: &'static str,
        /// What is missing.
        message: String,
    },
    /// Checkpoints are not signed: no log key is configured (503).
    #[error("checkpoints are not signed on this server: configure evidence.log_key_file (docs/audit.md, \"Transparency log\")")]
    NotSigned,
    /// The transparency log is turned off (`evidence.enabled = false`) (503).
    #[error("the transparency log is turned off (evidence.enabled = false)")]
    Disabled,
    /// The chain is broken: its tree stops before the break (500, logged).
    #[error("the audit chain of {org_id} is broken: {reason}")]
    Broken {
        /// The chain.
        org_id: String,
        /// The chain verifier's message.
        reason: String,
    },
    /// The checkpoint cannot be signed (500).
    #[error("the checkpoint cannot be signed: {0}")]
    Sign(String),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored hashes do not make a tree (500).
    #[error("the stored audit tree: {0}")]
    Tree(#[from] merkle::MerkleError),
}

impl From<EvidenceError> for crate::error::ApiError {
    fn from(e: EvidenceError) -> Self {
        use crate::error::ApiError;
        match e {
            EvidenceError::Invalid { field, message } => ApiError::field(field, message),
            EvidenceError::NotFound { field, message } => {
                ApiError::NotFound(format!("{field}: {message}"))
            }
            e @ (EvidenceError::NotSigned | EvidenceError::Disabled) => {
                ApiError::Unavailable(e.to_string())
            }
            EvidenceError::Store(e) => e.into(),
            e
            @ (EvidenceError::Broken { .. } | EvidenceError::Tree(_) | EvidenceError::Sign(_)) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

/// An inclusion proof (RFC 9162 section 2.1.3) of one event in a tree.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    /// The event's seq; its leaf index is `seq - 1`.
    pub seq: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The event's leaf hash.
    pub leaf_hash: Hash,
    /// The sibling hashes from the leaf up.
    pub proof: Vec<Hash>,
    /// The root of the tree of `tree_size`.
    pub root_hash: Hash,
    /// The signed checkpoint of that size, when one was signed.
    pub checkpoint: Option<StoredCheckpoint>,
}

/// A consistency proof (RFC 9162 section 2.1.4) between two tree sizes.
#[derive(Debug, Clone)]
pub struct ConsistencyProof {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// The root of the tree of `from`.
    pub from_root: Hash,
    /// The root of the tree of `to`.
    pub to_root: Hash,
    /// The proof's hashes.
    pub proof: Vec<Hash>,
}

/// What one node knows of one chain's tree.
#[derive(Debug, Default)]
struct ChainTree {
    /// How far it is built (`None`: not read yet).
    state: Option<TreeState>,
    /// The break that stopped it (logged once).
    broken: Option<String>,
    /// The last checkpoint: its size and when this node saw or signed it.
    last_checkpoint: Option<(u64, Instant)>,
    /// The stored hashes of the tree's right edge ([`merkle::root_indexes`] of `state`'s
    /// size): what appending needs, kept so that a round does not read them again.
    edge: Option<(u64, std::collections::HashMap<u64, Hash>)>,
}

/// The transparency log of every chain, as one node serves it.
pub struct TransparencyLog {
    store: Store,
    writer: AuditWriter,
    config: EvidenceConfig,
    key: Option<LogKey>,
    sinks: sinks::Sinks,
    chains: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<ChainTree>>>>,
}

impl std::fmt::Debug for TransparencyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransparencyLog")
            .field("enabled", &self.config.enabled)
            .field("log", &self.key.as_ref().map(LogKey::name))
            .finish_non_exhaustive()
    }
}

/// Reads the log key `evidence` names, or (SQLite, `data_dir` given, nothing configured)
/// reads or creates `<data_dir>/log-key`. `Ok(None)`: no key (PostgreSQL without one).
///
/// # Errors
///
/// A message naming the key or file that cannot be read, parsed or written.
pub fn load_log_key(
    evidence: &EvidenceConfig,
    generate_in: Option<&Path>,
) -> Result<Option<LogKey>, String> {
    if let Some(secret) = &evidence.log_key {
        return LogKey::from_private_key(secret.expose())
            .map(Some)
            .map_err(|e| format!("evidence.log_key: {e}"));
    }
    let read = |path: &Path| -> Result<LogKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("evidence.log_key_file {}: {e}", path.display()))?;
        LogKey::from_private_key(&text)
            .map_err(|e| format!("evidence.log_key_file {}: {e}", path.display()))
    };
    if let Some(path) = &evidence.log_key_file {
        return read(path).map(Some);
    }
    let Some(dir) = generate_in else {
        return Ok(None);
    };
    let path = dir.join(GENERATED_KEY_FILE);
    if path.exists() {
        return read(&path).map(Some);
    }
    let key =
        LogKey::generate(&evidence.log_name).map_err(|e| format!("evidence.log_name: {e}"))?;
    crate::app::write_secret_file(&path, &key.to_private_key())
        .map_err(|e| format!("the log key {}: {e}", path.display()))?;
    tracing::info!(file = %path.display(), verifier_key = %key.verifier_key(),
        "generated the audit log key; keep the file, and give the verifier key to whoever verifies checkpoints");
    Ok(Some(key))
}

impl TransparencyLog {
    /// The log of `store`'s chains, writing through `writer`, signing with `key`.
    ///
    /// # Errors
    ///
    /// A sink that cannot be set up (an HTTP client that cannot be built).
    pub fn new(
        store: Store,
        writer: AuditWriter,
        config: EvidenceConfig,
        key: Option<LogKey>,
        secrets: Arc<dyn crate::secrets::SecretStore>,
    ) -> Result<Self, String> {
        let sinks = sinks::Sinks::new(&config, secrets)?;
        Ok(TransparencyLog {
            store,
            writer,
            config,
            key,
            sinks,
            chains: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The signed-note verifier key of the log key (`<name>+<id>+<base64>`), when there is
    /// one: what verifies every checkpoint.
    pub fn verifier_key(&self) -> Option<String> {
        self.key.as_ref().map(LogKey::verifier_key)
    }

    /// The checkpoint origin of `org_id`'s chain: `<log name>/<org_id>`.
    pub fn origin(&self, org_id: &str) -> Option<String> {
        self.key
            .as_ref()
            .map(|key| format!("{}/{org_id}", key.name()))
    }

    fn chain(&self, org_id: &str) -> Arc<tokio::sync::Mutex<ChainTree>> {
        let mut chains = self.chains.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(chains.entry(org_id.to_string()).or_default())
    }

    fn enabled(&self) -> Result<(), EvidenceError> {
        if self.config.enabled {
            Ok(())
        } else {
            Err(EvidenceError::Disabled)
        }
    }

    /// Brings `org_id`'s tree up to seq `head` (at least), in batches of
    /// `evidence.build_batch` events; returns the tree's size.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Broken`] when the chain does not verify where the tree goes on (the
    /// tree stays before the break); the store's errors.
    pub async fn build(&self, org_id: &str, head: u64) -> Result<u64, EvidenceError> {
        self.enabled()?;
        let chain = self.chain(org_id);
        let mut chain = chain.lock().await;
        let stored = |state: Option<TreeState>| {
            state.unwrap_or(TreeState {
                size: 0,
                last_hash: GENESIS_HASH,
            })
        };
        let mut state = match chain.state {
            // Another node may have built further (nodes build every chain): go on from there.
            Some(state) if state.size < head => {
                let read = stored(self.store.audit_tree(org_id).await?);
                if read.size > state.size {
                    chain.edge = None;
                    read
                } else {
                    state
                }
            }
            Some(state) => state,
            None => stored(self.store.audit_tree(org_id).await?),
        };
        chain.state = Some(state);
        while state.size < head {
            let events = self
                .store
                .audit_events_raw(org_id, state.size, self.config.build_batch)
                .await?;
            if events.is_empty() {
                break;
            }
            let mut verifier =
                ChainVerifier::resume(org_id, state.size, state.last_hash).with_leaves();
            let mut known = match chain.edge.take() {
                Some((size, edge)) if size == state.size => edge,
                _ => {
                    self.store
                        .audit_tree_hashes(org_id, &merkle::root_indexes(state.size)?)
                        .await?
                }
            };
            let mut new_hashes = Vec::with_capacity(events.len() * 2);
            let mut next = state;
            let mut broken = None;
            for event in &events {
                if let Err(e) = verifier.push_raw(event) {
                    broken = Some(e.to_string());
                    break;
                }
                let leaf = verifier.last_leaf_hash().unwrap_or_default();
                let hashes = merkle::hashes_to_store(next.size, leaf, &known)?;
                known.extend(hashes.iter().copied());
                new_hashes.extend(hashes);
                next = TreeState {
                    size: event.seq,
                    last_hash: event.hash,
                };
            }
            if next.size > state.size {
                let unit = WriteUnit {
                    mutations: vec![Mutation::ExtendAuditTree {
                        org_id: org_id.to_string(),
                        size: next.size,
                        last_hash: next.last_hash,
                        hashes: new_hashes,
                        now: crate::time::now_rfc3339(),
                    }],
                    action: None,
                    events: Vec::new(),
                };
                self.writer.submit(unit).await?;
                state = next;
                chain.state = Some(state);
                let edge = merkle::root_indexes(state.size)?;
                known.retain(|index, _| edge.contains(index));
                chain.edge = Some((state.size, known));
            }
            if let Some(reason) = broken {
                if chain.broken.as_deref() != Some(reason.as_str()) {
                    tracing::error!(org_id, error = %reason,
                        "the audit chain does not verify: its Merkle tree stops before the break and no checkpoint will cover it; run `aaf audit verify`");
                    chain.broken = Some(reason.clone());
                    metrics::counter!("aaf_audit_tree_breaks_total").increment(1);
                }
                return Err(EvidenceError::Broken {
                    org_id: org_id.to_string(),
                    reason,
                });
            }
        }
        Ok(state.size)
    }

    /// Signs and stores a checkpoint of `org_id`'s tree as built, when it is larger than the
    /// last checkpoint and (unless `force`) `evidence.checkpoint_every_events` events or
    /// `evidence.checkpoint_interval_seconds` have passed since it; writes a new checkpoint
    /// to the sinks. Returns the latest checkpoint (new or not); `None` when there is none, or
    /// (not forced) when nothing was due.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::NotSigned`] without a log key; the store's errors.
    pub async fn checkpoint(
        &self,
        org_id: &str,
        force: bool,
    ) -> Result<Option<StoredCheckpoint>, EvidenceError> {
        self.enabled()?;
        let Some(key) = &self.key else {
            return Err(EvidenceError::NotSigned);
        };
        let chain = self.chain(org_id);
        let mut chain = chain.lock().await;
        let size = match chain.state {
            Some(state) => state.size,
            None => self.store.audit_tree(org_id).await?.map_or(0, |s| s.size),
        };
        // Not forced and the last checkpoint known: decide from memory (no read per round).
        if let (false, Some((last, at))) = (force, chain.last_checkpoint) {
            let due = size > last
                && (size - last >= self.config.checkpoint_every_events
                    || at.elapsed()
                        >= Duration::from_secs(self.config.checkpoint_interval_seconds));
            if !due {
                return Ok(None);
            }
        }
        let latest = self.store.audit_checkpoint(org_id, None).await?;
        let last_size = latest.as_ref().map_or(0, |c| c.tree_size);
        if let Some(latest) = &latest {
            if chain.last_checkpoint.map(|(s, _)| s) != Some(latest.tree_size) {
                chain.last_checkpoint = Some((latest.tree_size, Instant::now()));
            }
        }
        let due = force
            || size.saturating_sub(last_size) >= self.config.checkpoint_every_events
            || chain.last_checkpoint.is_none_or(|(_, at)| {
                at.elapsed() >= Duration::from_secs(self.config.checkpoint_interval_seconds)
            });
        if size == 0 || size <= last_size || !due {
            return Ok(latest);
        }
        let root = merkle::root(
            size,
            &self
                .store
                .audit_tree_hashes(org_id, &merkle::root_indexes(size)?)
                .await?,
        )?;
        let origin = format!("{}/{org_id}", key.name());
        let note = key
            .sign(&Checkpoint { origin, size, root })
            .map_err(|e| EvidenceError::Sign(e.to_string()))?;
        let checkpoint = StoredCheckpoint {
            org_id: org_id.to_string(),
            tree_size: size,
            root_hash: root,
            note,
            created_at: crate::time::now_rfc3339(),
        };
        self.writer
            .submit(WriteUnit {
                mutations: vec![Mutation::PutCheckpoint(checkpoint.clone())],
                action: None,
                events: Vec::new(),
            })
            .await?;
        chain.last_checkpoint = Some((size, Instant::now()));
        metrics::counter!("aaf_audit_checkpoints_signed_total").increment(1);
        self.sinks.submit(checkpoint.clone());
        drop(chain);
        self.export().await;
        Ok(Some(checkpoint))
    }

    /// The latest stored checkpoint of `org_id`.
    ///
    /// # Errors
    ///
    /// [`EvidenceError::NotFound`] when none was signed yet; the store's errors.
    pub async fn latest(&self, org_id: &str) -> Result<StoredCheckpoint, EvidenceError> {
        self.enabled()?;
        self.store
            .audit_checkpoint(org_id, None)
            .await?
            .ok_or_else(|| match self.key {
                None => EvidenceError::NotSigned,
                Some(_) => EvidenceError::NotFound {
                    field: "checkpoint",
                    message: "no checkpoint has been signed for this organisation yet; POST /v1/audit/checkpoint signs one now".into(),
                },
            })
    }

    /// The size of `org_id`'s tree as stored.
    async fn built_size(&self, org_id: &str) -> Result<u64, EvidenceError> {
        Ok(self.store.audit_tree(org_id).await?.map_or(0, |s| s.size))
    }

    /// The inclusion proof of the event `seq` in the tree of `tree_size` (default: the
    /// latest checkpoint's size).
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Invalid`] for `seq` 0, `tree_size` 0 or `seq > tree_size`;
    /// [`EvidenceError::NotFound`] for a `tree_size` beyond the tree as built (or no
    /// checkpoint when none is given); the store's errors.
    pub async fn inclusion(
        &self,
        org_id: &str,
        seq: u64,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, EvidenceError> {
        self.enabled()?;
        if seq == 0 {
            return Err(EvidenceError::Invalid {
                field: "seq",
                message: "seq must be at least 1 (events are numbered from 1)".into(),
            });
        }
        let (tree_size, checkpoint) = match tree_size {
            Some(0) => {
                return Err(EvidenceError::Invalid {
                    field: "tree_size",
                    message: "tree_size must be at least 1".into(),
                })
            }
            Some(size) => (size, None),
            None => {
                let latest = self.latest(org_id).await?;
                (latest.tree_size, Some(latest))
            }
        };
        let built = self.built_size(org_id).await?;
        if tree_size > built {
            return Err(EvidenceError::NotFound {
                field: "tree_size",
                message: format!(
                    "tree_size {tree_size} is beyond the tree, which has {built} events so far"
                ),
            });
        }
        if seq > tree_size {
            return Err(EvidenceError::Invalid {
                field: "seq",
                message: format!("seq {seq} is not in the tree of size {tree_size}"),
            });
        }
        let index = seq - 1;
        let mut indexes = merkle::inclusion_proof_indexes(index, tree_size)?;
        indexes.extend(merkle::root_indexes(tree_size)?);
        let leaf_index = merkle::stored_hash_index(0, index)?;
        indexes.push(leaf_index);
        let hashes = self.store.audit_tree_hashes(org_id, &indexes).await?;
        let proof = merkle::inclusion_proof(index, tree_size, &hashes)?;
        let root_hash = merkle::root(tree_size, &hashes)?;
        let checkpoint = match checkpoint {
            Some(c) => Some(c),
            None => self.store.audit_checkpoint(org_id, Some(tree_size)).await?,
        };
        Ok(InclusionProof {
            seq,
            tree_size,
            leaf_hash: hashes[&leaf_index],
            proof,
            root_hash,
            checkpoint,
        })
    }

    /// The consistency proof from the tree of `from` to the tree of `to` (default: the
    /// latest checkpoint's size).
    ///
    /// # Errors
    ///
    /// [`EvidenceError::Invalid`] for `from` 0 or `from > to`; [`EvidenceError::NotFound`]
    /// for a `to` beyond the tree as built; the store's errors.
    pub async fn consistency(
        &self,
        org_id: &str,
        from: u64,
        to: Option<u64>,
    ) -> Result<ConsistencyProof, EvidenceError> {
        self.enabled()?;
        if from == 0 {
            return Err(EvidenceError::Invalid {
                field: "from",
                message: "from must be at least 1 (every tree is consistent with the empty one)"
                    .into(),
            });
        }
        let to = match to {
            Some(to) => to,
            None => self.latest(org_id).await?.tree_size,
        };
        if from > to {
            return Err(EvidenceError::Invalid {
                field: "from",
                message: format!("from {from} is larger than to {to}"),
            });
        }
        let built = self.built_size(org_id).await?;
        if to > built {
            return Err(EvidenceError::NotFound {
                field: "to",
                message: format!("to {to} is beyond the tree, which has {built} events so far"),
            });
        }
        let mut indexes = merkle::consistency_proof_indexes(from, to)?;
        indexes.extend(merkle::root_indexes(from)?);
        indexes.extend(merkle::root_indexes(to)?);
        let hashes = self.store.audit_tree_hashes(org_id, &indexes).await?;
        Ok(ConsistencyProof {
            from,
            to,
            from_root: merkle::root(from, &hashes)?,
            to_root: merkle::root(to, &hashes)?,
            proof: merkle::consistency_proof(from, to, &hashes)?,
        })
    }

    /// Writes the checkpoints still to write to each sink; what fails is logged, counted
    /// (`aaf_audit_checkpoint_exports_total{outcome="failed"}`) and retried at the next round.
    async fn export(&self) {
        for (index, sink, checkpoint) in self.sinks.pending() {
            let outcome = match &sink {
                SinkConfig::Directory { path } => {
                    let (path, written) = (path.clone(), checkpoint.clone());
                    tokio::task::spawn_blocking(move || sinks::write_to_directory(&path, &written))
                        .await
                        .unwrap_or_else(|e| Err(format!("the writing task failed: {e}")))
                }
                SinkConfig::Http { url, headers } => {
                    self.sinks.post(url, headers, &checkpoint).await
                }
                SinkConfig::Witness { url } => self.witness(index, url, &checkpoint).await,
            };
            let kind = match sink {
                SinkConfig::Directory { .. } => "directory",
                SinkConfig::Http { .. } => "http",
                SinkConfig::Witness { .. } => "witness",
            };
            match outcome {
                Ok(()) => {
                    self.sinks.done(index, &checkpoint);
                    metrics::counter!("aaf_audit_checkpoint_exports_total", "sink" => kind, "outcome" => "written").increment(1);
                }
                Err(e) => {
                    metrics::counter!("aaf_audit_checkpoint_exports_total", "sink" => kind, "outcome" => "failed").increment(1);
                    tracing::warn!(sink = index, kind, org_id = %checkpoint.org_id,
                        tree_size = checkpoint.tree_size, error = %e,
                        "a checkpoint could not be exported; retried at the next round");
                }
            }
        }
    }

    /// Submits `checkpoint` to the witness of sink `index` (C2SP tlog-witness), with a
    /// consistency proof from the size it cosigned last; on a 409 naming another size, once
    /// more from that size.
    async fn witness(
        &self,
        index: usize,
        url: &str,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), String> {
        let org_id = &checkpoint.org_id;
        let mut old = self.sinks.witnessed(index, org_id);
        for _ in 0..2 {
            if old >= checkpoint.tree_size {
                // The witness has this one or a newer one (cosigned through another node).
                return Ok(());
            }
            let proof = if old == 0 {
                Vec::new()
            } else {
                self.consistency(org_id, old, Some(checkpoint.tree_size))
                    .await
                    .map_err(|e| format!("the consistency proof from {old}: {e}"))?
                    .proof
            };
            match self
                .sinks
                .add_checkpoint(url, old, &proof, &checkpoint.note)
                .await?
            {
                sinks::WitnessAnswer::Cosigned(cosignatures) => {
                    self.sinks
                        .set_witnessed(index, org_id, checkpoint.tree_size);
                    tracing::info!(org_id = %org_id, tree_size = checkpoint.tree_size,
                        cosignatures = %cosignatures.trim_end(), "checkpoint cosigned by the witness");
                    return Ok(());
                }
                sinks::WitnessAnswer::Conflict(size) => {
                    self.sinks.set_witnessed(index, org_id, size);
                    old = size;
                }
            }
        }
        Err(format!(
            "the witness keeps answering 409 (it last cosigned size {old})"
        ))
    }

    /// One round of the worker: every chain's tree brought up to its head, checkpoints
    /// signed where due, sinks retried.
    async fn round(&self) {
        let heads = match self.store.audit_chain_heads().await {
            Ok(heads) => heads,
            Err(e) => {
                tracing::warn!(error = %e, "the audit chain heads could not be read; the trees are built at the next round");
                return;
            }
        };
        for (org_id, head) in heads {
            match self.build(&org_id, head).await {
                Ok(_) => {}
                // Logged once by `build`.
                Err(EvidenceError::Broken { .. }) => continue,
                Err(e) => {
                    tracing::warn!(org_id, error = %e, "the audit tree could not be extended; retried at the next round");
                    continue;
                }
            }
            if self.key.is_some() {
                if let Err(e) = self.checkpoint(&org_id, false).await {
                    tracing::warn!(org_id, error = %e, "a checkpoint could not be signed; retried at the next round");
                }
            }
        }
        self.export().await;
    }
}

/// The background worker of the transparency log: a [`TransparencyLog::round`] every
/// `evidence.build_interval_ms`. Runs until aborted.
pub async fn worker(log: Arc<TransparencyLog>) {
    if !log.config.enabled {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(log.config.build_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        log.round().await;
    }
}
