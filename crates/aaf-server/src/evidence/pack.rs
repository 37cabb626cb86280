//! Proof packs (docs/proof-packs.md): one action's record, audit events, inclusion proofs to
//! a signed checkpoint, the log key, the policy sources of its decision, its approval votes
//! and signals, with a manifest and a README, as a zip. The format and its verification are
//! [`aaf_core::evidence::pack`]'s; this module gathers the files.

use std::collections::BTreeMap;
use std::io::Write;

use aaf_core::audit::{canonical_event, AuditEvent, StoredEvent};
use aaf_core::evidence::pack::{
    sha256_hex, CheckpointInfo, EventEntry, LogInfo, Manifest, PolicyEntry, FORMAT, MANIFEST,
};
use aaf_store::{ActionRecord, ApprovalVote};
use serde_json::{json, Value};

use super::{EvidenceError, TransparencyLog};

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
        // A checkpoint that covers every event of the action.
        let checkpoint = match self.store.audit_checkpoint(&org_id, None).await? {
            Some(c) if c.tree_size >= last => c,
            _ => {
                self.build(&org_id, last).await?;
                match self.checkpoint(&org_id, true).await? {
                    Some(c) if c.tree_size >= last => c,
                    _ => {
                        return Err(EvidenceError::Broken {
                            org_id,
                            reason: format!(
                                "no checkpoint covers seq {last}: the tree stops before it"
                            ),
                        })
                    }
                }
            }
        };
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut entries = Vec::with_capacity(events.len());
        let mut decided: Option<Value> = None;
        for event in &events {
            let bytes = canonical_bytes(event)?;
            let proof = self
                .inclusion(&org_id, event.seq, Some(checkpoint.tree_size))
                .await?;
            if event.event_type == aaf_core::audit::event_types::ACTION_DECIDED {
                decided = serde_json::from_slice(&bytes).ok();
            }
            let file = format!("events/{:020}.json", event.seq);
            entries.push(EventEntry {
                seq: event.seq,
                file: file.clone(),
                leaf_hash: hex::encode(proof.leaf_hash),
                prev_hash: hex::encode(event.prev_hash),
                hash: hex::encode(event.hash),
                proof: proof.proof.iter().map(hex::encode).collect(),
            });
            files.insert(file, bytes);
        }
        files.insert(
            "checkpoint.note".into(),
            checkpoint.note.clone().into_bytes(),
        );
        files.insert(
            "log.pub".into(),
            format!("{}\n", key.verifier_key()).into_bytes(),
        );
        let pretty = |value: &Value| -> Vec<u8> {
            let mut text = serde_json::to_vec_pretty(value).unwrap_or_default();
            text.push(b'\n');
            text
        };
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
        files.insert("README.md".into(), README.as_bytes().to_vec());
        let manifest = Manifest {
            format: FORMAT.into(),
            action_id,
            org_id: org_id.clone(),
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
            events: entries,
            policy,
            files: files
                .iter()
                .map(|(path, bytes)| (path.clone(), sha256_hex(bytes)))
                .collect(),
        };
        files.insert(
            MANIFEST.into(),
            pretty(&serde_json::to_value(&manifest).unwrap_or(Value::Null)),
        );
        zip_files(&files).map_err(|e| EvidenceError::Sign(format!("the zip: {e}")))
    }
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
