//! Proof packs (docs/proof-packs.md): one action's record, audit events, inclusion proofs to
//! a signed checkpoint, the log key, the policy sources of its decision, its approval votes
//! and signals, with a manifest and a README, as a zip. The format and its verification are
//! [`aaf_core::evidence::pack`]'s; this module gathers the files.

use std::collections::BTreeMap;
use std::io::Write;

use aaf_core::audit::{canonical_event, AuditEvent, StoredEvent};
use aaf_core::evidence::merkle;
use aaf_core::evidence::pack::{
    sha256_hex, CheckpointInfo, ConsistencyInfo, EventEntry, LogInfo, Manifest, PayloadEntry,
    PolicyEntry, Scope, FORMAT, MANIFEST,
};
use aaf_store::evidence::StoredCheckpoint;
use aaf_store::{ActionRecord, ApprovalVote};
use serde_json::{json, Value};

use super::{EvidenceError, TransparencyLog};

/// Stored hashes read per query while gathering a pack's proofs.
const PROOF_HASHES_PER_READ: usize = 500;

/// The README of every pack: how to verify it by hand.
pub const README: &str = include_str!("pack_readme.md");

/// The RFC 8785 canonical JSON of a stored event: its stored `data` bytes when they are what
/// its hash covers (everything AAF writes), else the canonical form of its parsed `data` (events
/// of versions that stored another spelling).
fn canonical_bytes(event: &StoredEvent) -> Result<Vec<u8>, EvidenceError> {
    use sha2::{Digest, Sha256};
    let direct = aaf_core::audit::canonical_event_parts(&event.header(), event.data.as_bytes())
        .map_err(|e| EvidenceError::Sign(e.to_string()))?;
    let mut hasher = Sha256::new();
    hasher.update(event.prev_hash);
    hasher.update(&direct);
    if <[u8; 32]>::from(hasher.finalize()) == event.hash {
        return Ok(direct);
    }
    let data: Value = serde_json::from_str(&event.data).map_err(|e| EvidenceError::Broken {
        org_id: event.org_id.clone(),
        reason: format!("event {} has data that is not JSON: {e}", event.seq),
    })?;
    canonical_event(&AuditEvent {
        seq: event.seq,
        ts: event.ts.clone(),
        org_id: event.org_id.clone(),
        agent_id: event.agent_id.clone(),
        action_id: event.action_id.clone(),
        event_type: event.event_type.clone(),
        data,
    })
    .map_err(|e| EvidenceError::Sign(e.to_string()))
}

/// What a pack is made of, besides the log: the action, its votes and its decision's policy
/// revision (`(revision, {sources, data})`), as read by the caller.
pub struct PackInput {
    /// The action as stored.
    pub action: ActionRecord,
    /// Its approval votes.
    pub votes: Vec<ApprovalVote>,
    /// The action's view as the API shows it (redacted as stored).
    pub view: Value,
    /// The policy revision the decision names and its bundle, when still stored.
    pub policy: Option<(String, Value)>,
}

impl TransparencyLog {
    /// The proof pack of `input.action` as zip bytes: its audit events proven to a signed
    /// checkpoint that covers all of them (signed now when the latest does not).
    ///
    /// # Errors
    ///
    /// [`EvidenceError::NotSigned`] without a log key; [`EvidenceError::NotFound`] when the
    /// action has no audit event; the store's and the tree's errors.
    pub async fn proof_pack(&self, input: PackInput, now: &str) -> Result<Vec<u8>, EvidenceError> {
        self.enabled()?;
        let Some(key) = &self.key else {
            return Err(EvidenceError::NotSigned);
        };
        let org_id = input.action.org_id.clone();
        let action_id = input.action.id.clone();
        let events = self
            .store
            .audit_events_of_action(&org_id, &action_id)
            .await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Err(EvidenceError::NotFound {
                field: "action_id",
                message: format!("action {action_id} has no audit event"),
            });
        };
        let checkpoint = self.covering_checkpoint(&org_id, last).await?;
        let (mut files, entries, decided) = self.event_files(&org_id, &events, &checkpoint).await?;
        files.insert("action-record.json".into(), pretty(&input.view));
        let votes: Vec<Value> = input
            .votes
            .iter()
            .map(|v| {
                json!({"user_id": v.user_id, "user_name": v.user_name, "vote": v.vote,
                       "comment": v.comment, "created_at": v.created_at})
            })
            .collect();
        if !votes.is_empty() {
            files.insert("approvals.json".into(), pretty(&Value::Array(votes)));
        }
        if let Some(signals) = &input.action.signals {
            files.insert("signals.json".into(), pretty(signals));
        }
        if let Some(decided) = &decided {
            let data = &decided["data"];
            let mut recorded = serde_json::Map::new();
            recorded.insert("agent_id".into(), decided["agent_id"].clone());
            for field in [
                "tool",
                "operation",
                "params",
                "context",
                "ip_address",
                "detections",
                "risk",
                "budget",
                "guard",
            ] {
                if let Some(value) = data.get(field).filter(|v| !v.is_null()) {
                    recorded.insert(field.into(), value.clone());
                }
            }
            files.insert(
                "decision_input.json".into(),
                pretty(&Value::Object(recorded)),
            );
        }
        let policy = match &input.policy {
            Some((revision, bundle)) => {
                files.insert(
                    "policy/revision.json".into(),
                    pretty(&json!({"revision": revision, "sources": bundle["sources"], "data": bundle["data"]})),
                );
                Some(PolicyEntry {
                    revision: revision.clone(),
                    file: "policy/revision.json".into(),
                })
            }
            None => None,
        };
        let manifest = Manifest {
            action_id: Some(action_id),
            scope: None,
            consistency: None,
            policy,
            ..self.manifest(key, &org_id, &checkpoint, entries, now)
        };
        finish(files, manifest)
    }

    /// The evidence of a period (`GET /v1/evidence`): every event of `org_id` (of `agent_id`
    /// when given) with `from <= ts < to`, proven to a checkpoint that covers them all, with
    /// the consistency proof from the first checkpoint signed in the period when there is an
    /// earlier one than that, as a zip of the proof-pack format ([`Manifest::scope`]).
    ///
    /// # Errors
    ///
    /// [`EvidenceError::NotSigned`] without a log key; [`EvidenceError::NotFound`] when the
    /// period holds no event; [`EvidenceError::Invalid`] (naming `from`) when it holds more
    /// than `max_events`; the store's and the tree's errors.
    pub async fn evidence_pack(
        &self,
        org_id: &str,
        agent_id: Option<&str>,
        (from, to): (&str, &str),
        max_events: u32,
        now: &str,
    ) -> Result<Vec<u8>, EvidenceError> {
        self.enabled()?;
        let Some(key) = &self.key else {
            return Err(EvidenceError::NotSigned);
        };
        let events = self
            .store
            .audit_events_between(org_id, agent_id, from, to, max_events.saturating_add(1))
            .await?;
        if events.len() > max_events as usize {
            return Err(EvidenceError::Invalid {
                field: "from",
                message: format!(
                    "the period holds more than {max_events} events: ask for a shorter one"
                ),
            });
        }
        let Some(last) = events.last().map(|e| e.seq) else {
            return Err(EvidenceError::NotFound {
                field: "from",
                message: "the period holds no audit event".into(),
            });
        };
        let checkpoint = self.covering_checkpoint(org_id, last).await?;
        let (mut files, entries, _) = self.event_files(org_id, &events, &checkpoint).await?;
        let first = self
            .store
            .audit_checkpoints_between(org_id, from, to)
            .await?
            .into_iter()
            .next()
            .filter(|first| first.tree_size < checkpoint.tree_size);
        let consistency = match first {
            Some(first) => {
                let proof = self
                    .consistency(org_id, first.tree_size, Some(checkpoint.tree_size))
                    .await?;
                files.insert("checkpoints/first.note".into(), first.note.into_bytes());
                Some(ConsistencyInfo {
                    file: "checkpoints/first.note".into(),
                    from_size: first.tree_size,
                    proof: proof.proof.iter().map(hex::encode).collect(),
                })
            }
            None => None,
        };
        let manifest = Manifest {
            action_id: None,
            scope: Some(Scope {
                agent_id: agent_id.map(str::to_string),
                from: from.to_string(),
                to: to.to_string(),
            }),
            consistency,
            policy: None,
            ..self.manifest(key, org_id, &checkpoint, entries, now)
        };
        finish(files, manifest)
    }

    /// A manifest's common part (no action, scope, consistency or policy; files filled by
    /// [`finish`]).
    fn manifest(
        &self,
        key: &aaf_core::evidence::checkpoint::LogKey,
        org_id: &str,
        checkpoint: &StoredCheckpoint,
        events: Vec<EventEntry>,
        now: &str,
    ) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            action_id: None,
            scope: None,
            consistency: None,
            org_id: org_id.to_string(),
            created_at: now.to_string(),
            log: LogInfo {
                verifier_key: key.verifier_key(),
                origin: format!("{}/{org_id}", key.name()),
            },
            checkpoint: CheckpointInfo {
                file: "checkpoint.note".into(),
                tree_size: checkpoint.tree_size,
                root_hash: hex::encode(checkpoint.root_hash),
            },
            events,
            policy: None,
            files: BTreeMap::new(),
        }
    }

    /// A stored checkpoint whose tree holds the event `last` (the latest, or one signed now).
    async fn covering_checkpoint(
        &self,
        org_id: &str,
        last: u64,
    ) -> Result<StoredCheckpoint, EvidenceError> {
        match self.store.audit_checkpoint(org_id, None).await? {
            Some(c) if c.tree_size >= last => Ok(c),
            _ => {
                self.build(org_id, last).await?;
                match self.checkpoint(org_id, true).await? {
                    Some(c) if c.tree_size >= last => Ok(c),
                    _ => Err(EvidenceError::Broken {
                        org_id: org_id.to_string(),
                        reason: format!(
                            "no checkpoint covers seq {last}: the tree stops before it"
                        ),
                    }),
                }
            }
        }
    }

    /// The files of `events` (canonical JSON), their manifest entries with inclusion proofs
    /// to `checkpoint`, the checkpoint, the log key, the README; and the `action.decided`
    /// event among them, parsed.
    async fn event_files(
        &self,
        org_id: &str,
        events: &[StoredEvent],
        checkpoint: &StoredCheckpoint,
    ) -> Result<(BTreeMap<String, Vec<u8>>, Vec<EventEntry>, Option<Value>), EvidenceError> {
        // Every stored hash the proofs need, read in a few queries rather than per event.
        let size = checkpoint.tree_size;
        let mut needed = std::collections::BTreeSet::new();
        for event in events {
            let index = event.seq.saturating_sub(1);
            needed.extend(merkle::inclusion_proof_indexes(index, size)?);
            needed.insert(merkle::stored_hash_index(0, index)?);
        }
        let needed: Vec<u64> = needed.into_iter().collect();
        let mut hashes = std::collections::HashMap::with_capacity(needed.len());
        for chunk in needed.chunks(PROOF_HASHES_PER_READ) {
            hashes.extend(self.store.audit_tree_hashes(org_id, chunk).await?);
        }
        // The payloads, opened (with the data keys) and checked against their commitments.
        let opened = self.store.open_events(events).await?;
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut entries = Vec::with_capacity(events.len());
        let mut decided: Option<Value> = None;
        for (event, readable) in events.iter().zip(&opened) {
            let bytes = canonical_bytes(event)?;
            let index = event.seq.saturating_sub(1);
            let proof = merkle::inclusion_proof(index, size, &hashes)?;
            let leaf = aaf_core::evidence::event_leaf_hash(&bytes);
            if hashes.get(&merkle::stored_hash_index(0, index)?) != Some(&leaf) {
                return Err(EvidenceError::Broken {
                    org_id: org_id.to_string(),
                    reason: format!(
                        "the stored tree's leaf {index} is not the hash of event {}: run `aaf audit verify`",
                        event.seq
                    ),
                });
            }
            if event.event_type == aaf_core::audit::event_types::ACTION_DECIDED {
                decided = serde_json::to_value(&readable.event).ok();
            }
            let file = format!("events/{:020}.json", event.seq);
            let payload = match &readable.payload {
                None => None,
                Some(p) => match &p.salt {
                    Some(salt) => {
                        let payload_file = format!("payloads/{:020}.json", event.seq);
                        let data = aaf_core::canonical::to_canonical_json(&readable.event.data)
                            .map_err(|e| EvidenceError::Broken {
                                org_id: org_id.to_string(),
                                reason: format!("event {} payload: {e}", event.seq),
                            })?;
                        files.insert(payload_file.clone(), data);
                        Some(PayloadEntry {
                            file: Some(payload_file),
                            salt: Some(salt.clone()),
                            withheld: None,
                        })
                    }
                    None => Some(PayloadEntry {
                        file: None,
                        salt: None,
                        withheld: p.withheld.clone(),
                    }),
                },
            };
            entries.push(EventEntry {
                seq: event.seq,
                file: file.clone(),
                leaf_hash: hex::encode(leaf),
                prev_hash: hex::encode(event.prev_hash),
                hash: hex::encode(event.hash),
                proof: proof.iter().map(hex::encode).collect(),
                payload,
            });
            files.insert(file, bytes);
        }
        files.insert(
            "checkpoint.note".into(),
            checkpoint.note.clone().into_bytes(),
        );
        if let Some(key) = &self.key {
            files.insert(
                "log.pub".into(),
                format!("{}\n", key.verifier_key()).into_bytes(),
            );
        }
        files.insert("README.md".into(), README.as_bytes().to_vec());
        Ok((files, entries, decided))
    }
}

/// The pretty JSON of `value`, with a final newline.
fn pretty(value: &Value) -> Vec<u8> {
    let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
    text.push(b'\n');
    text
}

/// Adds the manifest of `files` (their SHA-256s) to them and zips them.
fn finish(
    mut files: BTreeMap<String, Vec<u8>>,
    mut manifest: Manifest,
) -> Result<Vec<u8>, EvidenceError> {
    manifest.files = files
        .iter()
        .map(|(path, bytes)| (path.clone(), sha256_hex(bytes)))
        .collect();
    files.insert(
        MANIFEST.into(),
        pretty(&serde_json::to_value(&manifest).unwrap_or(Value::Null)),
    );
    zip_files(&files).map_err(|e| EvidenceError::Sign(format!("the zip: {e}")))
}

/// `files` as a zip (deflated, in name order, with a fixed time so that the same files make
/// the same bytes).
///
/// # Errors
///
/// The zip writer's.
pub fn zip_files(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, zip::result::ZipError> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (path, bytes) in files {
        writer.start_file(path.as_str(), options)?;
        writer.write_all(bytes)?;
    }
    Ok(writer.finish()?.into_inner())
}
