//! Proof packs (docs/proof-packs.md): everything about one action that a third party needs to
//! check what happened, offline, and what each file is worth.
//!
//! A pack is a set of named files (the server zips them). `manifest.json` ([`Manifest`])
//! lists every other file with its SHA-256, the action's audit events with their chain links
//! and inclusion proofs, and the signed checkpoint they are proven to. [`verify`] checks a
//! pack and says precisely what was proven and what was not ([`PackReport`]). It takes the
//! files as bytes: reading the zip is the caller's.
//!
//! What a valid pack proves, with a trusted verifier key: the events in `events/` are entries
//! of the organisation's audit log, the one whose checkpoint of `tree_size` that key signed
//! (RFC 9162 inclusion proofs to the checkpoint's root); their chain links are those stored;
//! the action record's tool, operation and decision are the proven `action.decided` event's;
//! the policy sources and data are those of the revision that event names (the revision is
//! their hash, [`crate::policy::revision_of`]); each approval vote matches a proven approval
//! event. Everything else in the pack (the action's current status and result, the detector
//! results and risk factors, the redacted decision input) is a copy of what the database
//! holds, shown for convenience and marked not proven where it goes beyond the events.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::checkpoint::verify_checkpoint;
use super::merkle::{leaf_hash, verify_inclusion, Hash};

/// The `format` of the packs this version writes and reads.
pub const FORMAT: &str = "aaf-proof-pack/1";

/// The manifest file's name.
pub const MANIFEST: &str = "manifest.json";

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The action, for the pack of one action (`GET /v1/proof-pack/{action_id}`); absent
    /// for the evidence of a period ([`Manifest::scope`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// The period (and agent) of an evidence pack (`GET /v1/evidence`): its events are every
    /// event of the organisation (of the agent) with `from <= ts < to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// For an evidence pack: the consistency proof from the first checkpoint signed in the
    /// period to [`Manifest::checkpoint`], when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<ConsistencyInfo>,
    /// Its organisation (the audit chain).
    pub org_id: String,
    /// When the pack was made (RFC 3339 UTC).
    pub created_at: String,
    /// The log: its verifier key (also in `log.pub`) and the checkpoint origin of the chain.
    pub log: LogInfo,
    /// The signed checkpoint the events are proven to.
    pub checkpoint: CheckpointInfo,
    /// The action's audit events, in seq order.
    pub events: Vec<EventEntry>,
    /// The policy revision of the decision, when its sources are in the pack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyEntry>,
    /// Every other file of the pack: path → SHA-256, 64 hex characters.
    pub files: BTreeMap<String, String>,
}

/// The period of an evidence pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Only this agent's events, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Start, inclusive, RFC 3339 UTC with microseconds (as events are stamped).
    pub from: String,
    /// End, exclusive, likewise.
    pub to: String,
}

/// The consistency proof of an evidence pack (RFC 9162 section 2.1.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyInfo {
    /// The file holding the earlier signed checkpoint.
    pub file: String,
    /// Its tree size.
    pub from_size: u64,
    /// The proof's hashes, hex.
    pub proof: Vec<String>,
}

/// The log of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogInfo {
    /// The signed-note verifier key (`<name>+<id>+<base64>`).
    pub verifier_key: String,
    /// The checkpoint origin, `<log name>/<org_id>`.
    pub origin: String,
}

/// The checkpoint of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointInfo {
    /// The file holding the signed note.
    pub file: String,
    /// Its tree size.
    pub tree_size: u64,
    /// Its root, hex.
    pub root_hash: String,
}

/// One audit event of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEntry {
    /// Its seq; leaf index `seq - 1`.
    pub seq: u64,
    /// The file holding its RFC 8785 canonical JSON: the leaf data, the bytes the chain hash
    /// covers.
    pub file: String,
    /// `SHA-256(0x00 || file bytes)`, hex.
    pub leaf_hash: String,
    /// The stored `prev_hash`, hex.
    pub prev_hash: String,
    /// The stored `hash` = `SHA-256(prev_hash || file bytes)`, hex.
    pub hash: String,
    /// The inclusion proof in the checkpoint's tree, hex, leaf to root.
    pub proof: Vec<String>,
    /// For an event of format 2 (its hashed `data` is the committed data
    /// `{"payload_sha256": ...}`, [`crate::evidence::payload`]): its payload, disclosed or
    /// withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<PayloadEntry>,
}

/// The payload of an event of format 2 in a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadEntry {
    /// The file holding the payload's data in RFC 8785 canonical form, when disclosed:
    /// `SHA-256(salt || file bytes)` is the commitment the proven event holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The salt, 32 hex characters (with `file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// Why the payload is not in the pack (removed by retention, or its data key destroyed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

/// The policy revision of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// The revision the decision names.
    pub revision: String,
    /// The file holding `{"revision", "sources": [{"path", "rego"}], "data"}`.
    pub file: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackReport {
    /// What the pack proves, one statement each.
    pub proven: Vec<String>,
    /// What it carries without proving it.
    pub not_proven: Vec<String>,
    /// Why it does not verify (empty for a valid pack).
    pub failures: Vec<String>,
}

impl PackReport {
    /// Whether the pack verified.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn parse_hash(text: &str) -> Option<Hash> {
    hex::decode(text).ok()?.try_into().ok()
}

/// Verifies a pack given as its files (`path` → bytes, `manifest.json` included), with the
/// verifier key `trusted_key` when the caller has one from elsewhere (else the pack's own
/// key is used, and the report says that this proves integrity only against that key).
pub fn verify(files: &BTreeMap<String, Vec<u8>>, trusted_key: Option<&str>) -> PackReport {
    let mut report = PackReport::default();
    let Some(manifest_bytes) = files.get(MANIFEST) else {
        report.failures.push("manifest.json is missing".into());
        return report;
    };
    let manifest: Manifest = match serde_json::from_slice(manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            report
                .failures
                .push(format!("manifest.json is not a manifest: {e}"));
            return report;
        }
    };
    if manifest.format != FORMAT {
        report.failures.push(format!(
            "manifest.json: format {:?} is not {FORMAT:?}",
            manifest.format
        ));
        return report;
    }
    // 1. The files are those listed, unchanged.
    for (path, expected) in &manifest.files {
        match files.get(path) {
            None => report
                .failures
                .push(format!("{path} is listed but missing")),
            Some(bytes) if sha256_hex(bytes) != *expected => report.failures.push(format!(
                "{path} was changed: its SHA-256 is not the manifest's"
            )),
            Some(_) => {}
        }
    }
    for path in files.keys() {
        if path != MANIFEST && !manifest.files.contains_key(path) {
            report
                .failures
                .push(format!("{path} is in the pack but not in the manifest"));
        }
    }
    // 2. The checkpoint is signed by the log key.
    let key = match trusted_key {
        Some(key) => {
            if key.trim() != manifest.log.verifier_key {
                report.not_proven.push(format!(
                    "the pack names another log key ({}); the checkpoint was checked with the key you gave",
                    manifest.log.verifier_key
                ));
            }
            key.trim().to_string()
        }
        None => {
            report.not_proven.push(
                "the checkpoint was checked with the log key in the pack (log.pub): compare it with the key you were given by the log's operator; only then does the signature prove who signed".into(),
            );
            manifest.log.verifier_key.clone()
        }
    };
    let Some(note) = files
        .get(&manifest.checkpoint.file)
        .and_then(|b| std::str::from_utf8(b).ok())
    else {
        report.failures.push(format!(
            "{} is missing or not text",
            manifest.checkpoint.file
        ));
        return report;
    };
    let checkpoint = match verify_checkpoint(note, &key) {
        Ok(c) => c,
        Err(e) => {
            report
                .failures
                .push(format!("the checkpoint's signature does not verify: {e}"));
            return report;
        }
    };
    let key_name = key.split('+').next().unwrap_or_default();
    let root = parse_hash(&manifest.checkpoint.root_hash);
    if checkpoint.origin != format!("{key_name}/{}", manifest.org_id)
        || checkpoint.origin != manifest.log.origin
        || checkpoint.size != manifest.checkpoint.tree_size
        || Some(checkpoint.root) != root
    {
        report.failures.push(format!(
            "the signed checkpoint ({} size {}) is not the one the manifest describes ({} size {})",
            checkpoint.origin, checkpoint.size, manifest.log.origin, manifest.checkpoint.tree_size
        ));
        return report;
    }
    report.proven.push(format!(
        "the checkpoint of {} at tree size {} (root {}) is signed by the log key {key}",
        checkpoint.origin,
        checkpoint.size,
        hex::encode(checkpoint.root)
    ));
    // 3. Each event is an entry of that tree, and links as stored.
    let mut events: Vec<(u64, Value)> = Vec::new();
    let mut disclosed = Vec::new();
    let mut withheld = Vec::new();
    for entry in &manifest.events {
        let verified = verify_event(entry, files, &manifest, &checkpoint.root, checkpoint.size)
            .and_then(|event| open_payload(entry, files, event));
        match verified {
            Ok((event, payload)) => {
                match payload {
                    Some(Ok(())) => disclosed.push(entry.seq),
                    Some(Err(why)) => withheld.push(format!("seq {}: {why}", entry.seq)),
                    None => {}
                }
                events.push((entry.seq, event));
            }
            Err(e) => report
                .failures
                .push(format!("event seq {}: {e}", entry.seq)),
        }
    }
    if manifest.events.is_empty() {
        report.failures.push("the pack holds no audit event".into());
    }
    if !report.failures.is_empty() {
        return report;
    }
    report.proven.push(format!(
        "the {} audit events (seq {}) of organisation {} in the pack's {} are entries of that log (RFC 9162 inclusion proofs, leaf index = seq - 1), with the chain hashes listed in the manifest",
        events.len(),
        seq_ranges(&events.iter().map(|(s, _)| *s).collect::<Vec<_>>()),
        manifest.org_id,
        what(&manifest),
    ));
    if !disclosed.is_empty() {
        report.proven.push(format!(
            "the payloads of events {} are those their proven events commit to (salted SHA-256 commitments)",
            seq_ranges(&disclosed)
        ));
    }
    if !withheld.is_empty() {
        report.not_proven.push(format!(
            "the payloads of these events are not in the pack, only their commitments: {}",
            withheld.join("; ")
        ));
    }
    if manifest.scope.is_some() {
        report.not_proven.push(
            "that the pack holds every event of the period: the events are proven to be in the log, not to be all of the period's (compare the seqs with the chain, or ask the log for the same period again)".into(),
        );
    }
    check_consistency(files, &manifest, &key, &checkpoint, &mut report);
    let decided = events
        .iter()
        .find(|(_, e)| e["type"] == crate::audit::event_types::ACTION_DECIDED)
        .map(|(_, e)| e);
    // 4. The action record agrees with the decision event.
    check_action(files, &manifest, decided, &mut report);
    // 5. The policy sources are those of the decision's revision.
    check_policy(files, &manifest, decided, &mut report);
    // 6. The approval votes are the proven approval events.
    check_votes(files, &events, &mut report);
    for (file, what) in [
        ("decision_input.json", "the decision input as recorded (redacted as stored) is a copy of the proven action.decided event's fields"),
        ("signals.json", "the detector results and risk factors are the action's stored signals; those in the proven action.decided event (its detections and risk) are proven with it"),
    ] {
        if manifest.files.contains_key(file) {
            report.not_proven.push(format!("{file}: {what}"));
        }
    }
    report
}

/// Checks one event entry; returns the parsed event.
/// What a pack is about, in words.
fn what(manifest: &Manifest) -> String {
    match (&manifest.action_id, &manifest.scope) {
        (Some(action_id), _) => format!("action {action_id}"),
        (None, Some(scope)) => format!(
            "period [{}, {}){}",
            scope.from,
            scope.to,
            scope
                .agent_id
                .as_ref()
                .map(|a| format!(" of agent {a}"))
                .unwrap_or_default()
        ),
        (None, None) => "nothing (no action and no period)".into(),
    }
}

/// `1-4, 7, 9-10` for sorted seqs.
fn seq_ranges(seqs: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let start = seqs[i];
        let mut end = start;
        while i + 1 < seqs.len() && seqs[i + 1] == end + 1 {
            i += 1;
            end = seqs[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// The consistency proof of an evidence pack: the earlier checkpoint signed by the key, and
/// the tree of the pack's checkpoint extends its tree.
fn check_consistency(
    files: &BTreeMap<String, Vec<u8>>,
    manifest: &Manifest,
    key: &str,
    checkpoint: &super::checkpoint::Checkpoint,
    report: &mut PackReport,
) {
    let Some(consistency) = &manifest.consistency else {
        if manifest.scope.is_some() {
            report.not_proven.push(
                "no checkpoint was signed in the period before its last one: no consistency proof"
                    .into(),
            );
        }
        return;
    };
    let Some(note) = files
        .get(&consistency.file)
        .and_then(|b| std::str::from_utf8(b).ok())
    else {
        return report
            .failures
            .push(format!("{} is missing or not text", consistency.file));
    };
    let first = match verify_checkpoint(note, key) {
        Ok(c) => c,
        Err(e) => {
            return report.failures.push(format!(
                "{}: the signature does not verify: {e}",
                consistency.file
            ))
        }
    };
    let proof: Option<Vec<Hash>> = consistency.proof.iter().map(|h| parse_hash(h)).collect();
    let verified = first.origin == checkpoint.origin
        && first.size == consistency.from_size
        && proof.is_some_and(|proof| {
            super::merkle::verify_consistency(
                first.size,
                checkpoint.size,
                &first.root,
                &checkpoint.root,
                &proof,
            )
            .is_ok()
        });
    if verified {
        report.proven.push(format!(
            "the log at tree size {} (signed checkpoint {}) is a prefix of the log at tree size {}: nothing logged before it was changed or removed in the period (RFC 9162 consistency proof)",
            first.size, consistency.file, checkpoint.size
        ));
    } else {
        report.failures.push(format!(
            "the consistency proof from {} (size {}) to the pack's checkpoint does not verify",
            consistency.file, consistency.from_size
        ));
    }
}

fn verify_event(
    entry: &EventEntry,
    files: &BTreeMap<String, Vec<u8>>,
    manifest: &Manifest,
    root: &Hash,
    size: u64,
) -> Result<Value, String> {
    let bytes = files
        .get(&entry.file)
        .ok_or_else(|| format!("{} is missing", entry.file))?;
    let event: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{} is not JSON: {e}", entry.file))?;
    let canonical =
        crate::canonical::to_canonical_json(&event).map_err(|e| format!("{}: {e}", entry.file))?;
    if canonical != *bytes {
        return Err(format!("{} is not in RFC 8785 canonical form", entry.file));
    }
    let member = match (&manifest.action_id, &manifest.scope) {
        (Some(action_id), _) => event["action_id"] == action_id.as_str(),
        (None, Some(scope)) => {
            let ts = event["ts"].as_str().unwrap_or_default();
            ts >= scope.from.as_str()
                && ts < scope.to.as_str()
                && scope
                    .agent_id
                    .as_ref()
                    .is_none_or(|agent| event["agent_id"] == agent.as_str())
        }
        (None, None) => false,
    };
    if event["seq"].as_u64() != Some(entry.seq)
        || event["org_id"] != manifest.org_id.as_str()
        || !member
    {
        return Err(format!(
            "{} is not event {} of organisation {} in the pack's {}",
            entry.file,
            entry.seq,
            manifest.org_id,
            what(manifest)
        ));
    }
    let leaf = leaf_hash(bytes);
    if Some(leaf) != parse_hash(&entry.leaf_hash) {
        return Err("its leaf hash is not SHA-256(0x00 || the event)".into());
    }
    let (Some(prev), Some(hash)) = (parse_hash(&entry.prev_hash), parse_hash(&entry.hash)) else {
        return Err("prev_hash or hash is not 64 hex characters".into());
    };
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(bytes);
    if <[u8; 32]>::from(hasher.finalize()) != hash {
        return Err("its hash is not SHA-256(prev_hash || the event)".into());
    }
    let proof = entry
        .proof
        .iter()
        .map(|h| parse_hash(h).ok_or_else(|| "a proof hash is not 64 hex characters".to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let index = entry
        .seq
        .checked_sub(1)
        .ok_or_else(|| "seq 0 is not an event".to_string())?;
    verify_inclusion(index, size, &leaf, &proof, root)
        .map_err(|e| format!("its inclusion proof does not verify: {e}"))?;
    Ok(event)
}

/// For an event of format 2: checks its disclosed payload against the commitment the proven
/// event holds and puts the payload's data in the event's place (so later checks read the
/// real data); `Some(Err(reason))` when the payload is withheld, `None` for an event of the
/// first format.
#[allow(clippy::type_complexity)]
fn open_payload(
    entry: &EventEntry,
    files: &BTreeMap<String, Vec<u8>>,
    mut event: Value,
) -> Result<(Value, Option<Result<(), String>>), String> {
    let committed = event["data"]
        .as_object()
        .filter(|data| data.len() == 1)
        .and_then(|data| data.get(super::payload::COMMITMENT_MEMBER))
        .and_then(Value::as_str)
        .and_then(parse_hash);
    let (Some(payload), Some(committed)) = (&entry.payload, committed) else {
        if entry.payload.is_some() {
            return Err("the manifest gives a payload, but the event holds no commitment".into());
        }
        return Ok((event, None));
    };
    let (Some(file), Some(salt)) = (&payload.file, &payload.salt) else {
        let why = payload
            .withheld
            .clone()
            .unwrap_or_else(|| "withheld, no reason given".into());
        event["data"] = Value::Null;
        return Ok((event, Some(Err(why))));
    };
    let bytes = files
        .get(file)
        .ok_or_else(|| format!("{file} is missing"))?;
    let salt: [u8; super::payload::SALT_LEN] = hex::decode(salt)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| "the payload salt is not 32 hex characters".to_string())?;
    if super::payload::commitment(&salt, bytes) != committed {
        return Err(format!(
            "{file} is not the payload the event commits to (SHA-256(salt || file) differs)"
        ));
    }
    let data: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("{file} is not JSON: {e}"))?;
    if crate::canonical::to_canonical_json(&data).ok().as_deref() != Some(bytes.as_slice()) {
        return Err(format!("{file} is not in RFC 8785 canonical form"));
    }
    event["data"] = data;
    Ok((event, Some(Ok(()))))
}

fn json_file(files: &BTreeMap<String, Vec<u8>>, path: &str) -> Option<Result<Value, String>> {
    files
        .get(path)
        .map(|bytes| serde_json::from_slice(bytes).map_err(|e| format!("{path} is not JSON: {e}")))
}

fn check_action(
    files: &BTreeMap<String, Vec<u8>>,
    manifest: &Manifest,
    decided: Option<&Value>,
    report: &mut PackReport,
) {
    let action = match json_file(files, "action-record.json") {
        None => return,
        Some(Err(e)) => return report.failures.push(e),
        Some(Ok(a)) => a,
    };
    let Some(decided) = decided else {
        report.not_proven.push(
            "action-record.json: the pack holds no action.decided event to check it against".into(),
        );
        return;
    };
    let data = &decided["data"];
    if data.is_null() {
        report.not_proven.push(
            "action-record.json: the proven action.decided event's payload is withheld (removed by retention, or its data key destroyed), so the record cannot be checked against it".into(),
        );
        return;
    }
    let agrees = manifest
        .action_id
        .as_deref()
        .is_some_and(|id| action["id"] == id)
        && action["tool"] == data["tool"]
        && action["operation"] == data["operation"]
        && action["decision"] == data["decision"];
    if agrees {
        report.proven.push(format!(
            "action-record.json's id, tool ({}), operation ({}) and decision ({}) are those of the proven action.decided event",
            data["tool"], data["operation"], data["decision"]
        ));
        report.not_proven.push(
            "action-record.json's status, result and timestamps are the database's copy at the time of the pack; the proven events (action.executed, action.failed, approval.*) are the record of what happened".into(),
        );
    } else {
        report.failures.push(
            "action-record.json does not agree with the proven action.decided event (id, tool, operation or decision)".into(),
        );
    }
}

fn check_policy(
    files: &BTreeMap<String, Vec<u8>>,
    manifest: &Manifest,
    decided: Option<&Value>,
    report: &mut PackReport,
) {
    let Some(policy) = &manifest.policy else {
        report.not_proven.push(
            "the policy sources are not in the pack (the revision is no longer stored, or the action was refused before any policy ran)".into(),
        );
        return;
    };
    let bundle = match json_file(files, &policy.file) {
        None => return report.failures.push(format!("{} is missing", policy.file)),
        Some(Err(e)) => return report.failures.push(e),
        Some(Ok(b)) => b,
    };
    let sources: Option<Vec<(String, String)>> = bundle["sources"].as_array().map(|list| {
        list.iter()
            .filter_map(|s| {
                Some((
                    s["path"].as_str()?.to_string(),
                    s["rego"].as_str()?.to_string(),
                ))
            })
            .collect()
    });
    let recomputed = sources
        .as_ref()
        .and_then(|s| crate::policy::revision_of(s, &bundle["data"]).ok());
    let named = decided.and_then(|d| d["data"]["policy_revision"].as_str());
    match (recomputed, named) {
        (Some(r), Some(n)) if r == n && r == policy.revision => report.proven.push(format!(
            "{} holds the policy sources and data of revision {r}, the one the proven decision names (the revision is their SHA-256)",
            policy.file
        )),
        (Some(r), _) => report.failures.push(format!(
            "{} hashes to revision {r}, not the revision the proven decision names ({})",
            policy.file,
            named.unwrap_or("none")
        )),
        (None, _) => report
            .failures
            .push(format!("{} is not a policy revision", policy.file)),
    }
}

fn check_votes(
    files: &BTreeMap<String, Vec<u8>>,
    events: &[(u64, Value)],
    report: &mut PackReport,
) {
    let votes = match json_file(files, "approvals.json") {
        None => return,
        Some(Err(e)) => return report.failures.push(e),
        Some(Ok(v)) => v,
    };
    let Some(votes) = votes.as_array() else {
        return report.failures.push("approvals.json is not a list".into());
    };
    for vote in votes {
        let event_type = match vote["vote"].as_str() {
            Some("approve") => crate::audit::event_types::APPROVAL_APPROVED,
            Some("reject") => crate::audit::event_types::APPROVAL_REJECTED,
            _ => {
                report
                    .failures
                    .push(format!("approvals.json: {vote} is not a vote"));
                continue;
            }
        };
        let proven = events
            .iter()
            .any(|(_, e)| e["type"] == event_type && e["data"]["approver_id"] == vote["user_id"]);
        let withheld = events
            .iter()
            .any(|(_, e)| e["type"] == event_type && e["data"].is_null());
        if proven {
            report.proven.push(format!(
                "the vote {} of {} is the proven {event_type} event",
                vote["vote"], vote["user_id"]
            ));
        } else if withheld {
            report.not_proven.push(format!(
                "approvals.json: the vote {} of {}: the payloads of the proven {event_type} events are withheld",
                vote["vote"], vote["user_id"]
            ));
        } else {
            report.failures.push(format!(
                "approvals.json: the vote {} of {} has no proven event",
                vote["vote"], vote["user_id"]
            ));
        }
    }
}
