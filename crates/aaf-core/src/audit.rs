//! The audit chain format: events, their hashes and the verification of a chain.
//!
//! Every organisation has its own append-only chain of [`AuditEvent`]s numbered `1, 2, 3, ...`
//! (`seq`). Each event is linked to its predecessor by hash:
//!
//! ```text
//! hash(n) = SHA-256( hash(n-1) || JCS(event n) )        hash(0) = GENESIS_HASH (32 zero bytes)
//! ```
//!
//! where `||` is concatenation of the 32 raw bytes of the previous hash with the RFC 8785
//! canonical JSON ([`crate::canonical`]) of the event object
//! `{seq, ts, org_id, agent_id, action_id, type, data}`, and SHA-256 is FIPS 180-4.
//! The store keeps, per organisation, the chain head (last `seq` and its hash), so that
//! deleting the newest events is detected too. `docs/audit.md` describes the format for
//! third-party verifiers.
//!
//! This module does no I/O and reads no clock: timestamps are passed in.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::{
    write_canonical_json, write_canonical_number, write_canonical_string, CanonicalError,
};
use crate::evidence::payload::Payload;

/// The previous hash of the first event of every chain: 32 zero bytes.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Declares the event type constants and [`event_types::ALL`], the list of them, in one
/// place, so that a type cannot be added without being listed.
macro_rules! event_types {
    ($($(#[$doc:meta])* $name:ident = $value:literal;)*) => {
        /// Event type names (the `type` field of an [`AuditEvent`]).
        ///
        /// Every type the code writes is a constant here and in [`ALL`]; `docs/audit.md`
        /// documents each of them (a test compares the two, and checks that every constant
        /// is used by the code that writes events).
        pub mod event_types {
            $($(#[$doc])* pub const $name: &str = $value;)*

            /// Every event type the code writes, in declaration order.
            pub const ALL: &[&str] = &[$($name),*];

            /// Every constant's name and value (`("ACTION_DECIDED", "action.decided")`),
            /// for the check that each one is written somewhere.
            pub const NAMES: &[(&str, &str)] = &[$((stringify!($name), $name)),*];

            /// Types that earlier versions wrote and that chains may still hold; no code
            /// writes them any more: `admin_token.created` (the first admin token, now
            /// `user.created` of the first user).
            pub const RETIRED: &[&str] = &["admin_token.created"];
        }
    };
}

event_types! {
    /// A decision was made on an action (data: verdict, reason, policies, ...).
    ACTION_DECIDED = "action.decided";
    /// An allowed action was executed by a connector.
    ACTION_EXECUTED = "action.executed";
    /// An allowed action failed while executing.
    ACTION_FAILED = "action.failed";
    /// A request was rejected before a decision (authentication, validation, rate limit).
    REQUEST_REJECTED = "request.rejected";
    /// An organisation was created.
    ORG_CREATED = "org.created";
    /// An agent and its first key were created (data holds the key prefix, never the key).
    AGENT_CREATED = "agent.created";
    /// A user (a person with a role) was created with a personal access token.
    USER_CREATED = "user.created";
    /// A user's role was changed (data: old and new role).
    USER_ROLE_CHANGED = "user.role_changed";
    /// A user was deleted; their tokens stopped working at once.
    USER_DELETED = "user.deleted";
    /// An agent key was created (data: key id, prefix, expiry, tools; never the key).
    AGENT_KEY_CREATED = "agent_key.created";
    /// An agent key was rotated: a new key, and the old one expiring after a grace period.
    AGENT_KEY_ROTATED = "agent_key.rotated";
    /// An agent key was revoked.
    AGENT_KEY_REVOKED = "agent_key.revoked";
    /// An expired or revoked agent key was presented (the request was refused with 401).
    AGENT_KEY_REFUSED = "agent_key.refused";
    /// A credential of a known organisation failed authentication in another way (a bad or
    /// missing request signature, a replayed nonce, an unusable registered public key).
    AUTH_FAILED = "auth.failed";
    /// An approver approved a pending action (data: approver, comment, digest, approvals so
    /// far and required; `final` when it completed the quorum).
    APPROVAL_APPROVED = "approval.approved";
    /// An approver rejected a pending action (data: approver, comment, digest).
    APPROVAL_REJECTED = "approval.rejected";
    /// A pending action passed its deadline unanswered (a security event: seed 000 lists
    /// approval timeouts among the events to monitor).
    APPROVAL_EXPIRED = "approval.expired";
    /// The agent withdrew its pending action.
    APPROVAL_CANCELLED = "approval.cancelled";
    /// An approved action was not run: its stored form no longer matches the approved
    /// digest, or the policies in force now deny it (data: reason, check).
    APPROVAL_RECHECK_DENIED = "approval.recheck_denied";
    /// AAF's connector started running an approved action (the at-most-once claim).
    ACTION_EXECUTION_STARTED = "action.execution_started";
    /// The agent reported the outcome of an allowed or approved action it ran itself (data:
    /// reported_status, detail, usage).
    ACTION_RESULT_REPORTED = "action.result_reported";
    /// A webhook was created (data: url, events, format; never the secret).
    WEBHOOK_CREATED = "webhook.created";
    /// A webhook was disabled.
    WEBHOOK_DISABLED = "webhook.disabled";
    /// The approval settings of an organisation changed (data: old and new settings).
    ORG_SETTINGS_CHANGED = "org.settings_changed";
    /// A managed policy was created (data: policy_id, name, version, mode, sha256, author,
    /// revision).
    POLICY_CREATED = "policy.created";
    /// A new version of a managed policy was written and put in force (same data).
    POLICY_UPDATED = "policy.updated";
    /// An earlier version of a managed policy was put back in force (data: from_version too).
    POLICY_ROLLED_BACK = "policy.rolled_back";
    /// A managed policy was disabled (its history is kept).
    POLICY_DISABLED = "policy.disabled";
    /// A data document was written (data: path, version, sha256, author, revision).
    DATA_UPDATED = "data.updated";
    /// A policy pack was enabled for the organisation.
    PACK_ENABLED = "policy_pack.enabled";
    /// A policy pack was disabled for the organisation.
    PACK_DISABLED = "policy_pack.disabled";
    /// A kill switch was engaged (data: kill_switch_id, scope, agent_id, tool, reason,
    /// source, expires_at, by).
    KILL_SWITCH_ENGAGED = "kill_switch.engaged";
    /// A kill switch was released (data: kill_switch_id, scope, agent_id, tool, by).
    KILL_SWITCH_RELEASED = "kill_switch.released";
    /// An agent was isolated: its kill switch engaged, every key revoked, a snapshot of its
    /// recent actions and audit events kept (data: kill_switch_id, revoked key ids,
    /// snapshot_id, the snapshot's SHA-256, by).
    AGENT_ISOLATED = "agent.isolated";
    /// A rate limit was created (data: rate_limit_id, scope, agent_id, tool, limit, window,
    /// burst, by).
    RATE_LIMIT_CREATED = "rate_limit.created";
    /// A rate limit was deleted (data: rate_limit_id, by).
    RATE_LIMIT_DELETED = "rate_limit.deleted";
    /// A budget was created (data: budget_id, agent_id, unit, period, limit, by).
    BUDGET_CREATED = "budget.created";
    /// A budget's limit changed (data: budget_id, old and new limit, by).
    BUDGET_UPDATED = "budget.updated";
    /// A budget was deleted (data: budget_id, by).
    BUDGET_DELETED = "budget.deleted";
    /// A circuit breaker engaged an agent's kill switch (data: breaker, kill_switch_id,
    /// reason, expires_at); a `kill_switch.engaged` event follows.
    CIRCUIT_BREAKER_TRIPPED = "circuit_breaker.tripped";
    /// The organisation's circuit breakers were set (data: the old and new settings, by).
    CIRCUIT_BREAKERS_SET = "circuit_breakers.set";
    /// An organisation admin registered an upstream MCP server (data: name, transport with
    /// secrets only as `${secret:...}` references, by).
    MCP_SERVER_CREATED = "mcp_server.created";
    /// A registered MCP server's settings changed (data: name, old and new transport, by).
    MCP_SERVER_UPDATED = "mcp_server.updated";
    /// A registered MCP server was deleted (data: name, by).
    MCP_SERVER_DELETED = "mcp_server.deleted";
    /// An upstream MCP tool's definition was pinned at first sight (data: server, tool,
    /// hash).
    MCP_TOOL_PINNED = "mcp_tool.pinned";
    /// An upstream MCP tool's definition changed from the pinned one (a possible "rug
    /// pull"): the tool is hidden and refused until an admin accepts it (data: server, tool,
    /// pinned and new hash, the new definition, what the prompt-injection detector found in
    /// it).
    MCP_TOOL_CHANGED = "mcp_tool.changed";
    /// A tool seen for the first time whose definition looks like a prompt injection: not
    /// accepted by itself; refused until an admin accepts it.
    MCP_TOOL_FLAGGED = "mcp_tool.flagged";
    /// An admin accepted a changed MCP tool definition (data: server, tool, old and new
    /// hash, by).
    MCP_TOOL_ACCEPTED = "mcp_tool.accepted";
    /// An alert rule raised a new alert (data: alert_id, rule, subject, severity, summary,
    /// detail, kill_switch_id); docs/alerts.md.
    ALERT_RAISED = "alert.raised";
    /// A person acknowledged an alert (data: alert_id, rule, subject, count, comment, by).
    ALERT_ACKNOWLEDGED = "alert.acknowledged";
    /// A person resolved an alert (data: alert_id, rule, subject, count, comment, by).
    ALERT_RESOLVED = "alert.resolved";
    /// An admin rotated the organisation's data key: new writes are sealed under the new
    /// key, what the old one sealed stays readable (data: key_id, previous_key_id, by).
    ENCRYPTION_KEY_ROTATED = "encryption.key_rotated";
    /// An admin crypto-shredded an action: its own data key was destroyed and its events'
    /// payloads removed; the chain and proofs still verify (data: action_id, by).
    ENCRYPTION_ACTION_SHREDDED = "encryption.action_shredded";
    /// An admin crypto-shredded the organisation's data: every data key but a new one was
    /// destroyed, so nothing sealed before can be read (data: destroyed_keys, key_id, by).
    ENCRYPTION_ORG_SHREDDED = "encryption.org_shredded";
    /// An admin changed the organisation's retention rules or legal hold (data: rules,
    /// legal_hold, by).
    RETENTION_CHANGED = "retention.changed";
    /// Retention removed the payloads of events past their class's period (data: class, days,
    /// before, seqs: the removed events' seqs, count).
    RETENTION_APPLIED = "retention.applied";
}

/// One audit event: the object whose canonical JSON is hashed.
///
/// JSON shape (field names exactly): `{"seq": 1, "ts": "2026-11-21T05:35:00.123456Z",
/// "org_id": "...", "agent_id": null, "action_id": null, "type": "org.created", "data": {...}}`.
/// `None` is serialised as `null`, and is hashed as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the organisation's chain, starting at 1, without gaps.
    pub seq: u64,
    /// When the event was recorded: RFC 3339 in UTC with microsecond precision,
    /// e.g. `2026-11-21T05:35:00.123456Z`.
    pub ts: String,
    /// The organisation (chain) the event belongs to; `"system"` for events that belong to
    /// no authenticated organisation.
    pub org_id: String,
    /// The agent involved, if any.
    pub agent_id: Option<String>,
    /// The action involved, if any.
    pub action_id: Option<String>,
    /// The event type, one of [`event_types`].
    #[serde(rename = "type")]
    pub event_type: String,
    /// Type-specific details; never secrets or token hashes.
    pub data: serde_json::Value,
}

/// Computes `SHA-256(prev_hash || JCS(event))` (FIPS 180-4 over RFC 8785 canonical JSON).
///
/// `prev_hash` is the raw 32-byte hash of the previous event, [`GENESIS_HASH`] for `seq` 1.
///
/// # Errors
///
/// [`CanonicalError`] when the event has no canonical JSON form (not reachable for events
/// whose `data` is a `serde_json::Value`, which cannot hold non-finite numbers).
pub fn event_hash(prev_hash: &[u8; 32], event: &AuditEvent) -> Result<[u8; 32], CanonicalError> {
    let canonical = canonical_event(event)?;
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(&canonical);
    Ok(hasher.finalize().into())
}

/// Returns the RFC 8785 canonical JSON of an event: the object
/// `{"action_id","agent_id","data","org_id","seq","ts","type"}` (members in canonical order).
///
/// Same bytes as `to_canonical_json_of(event)`, written directly for speed.
///
/// # Errors
///
/// As [`write_canonical_json`] (none in practice).
pub fn canonical_event(event: &AuditEvent) -> Result<Vec<u8>, CanonicalError> {
    let mut data = Vec::with_capacity(128);
    write_canonical_json(&mut data, &event.data)?;
    canonical_event_parts(&EventHeader::of(event), &data)
}

/// The fields of an event other than `data`, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader<'a> {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// RFC 3339 UTC timestamp.
    pub ts: &'a str,
    /// The chain (organisation id or `system`).
    pub org_id: &'a str,
    /// The agent involved, if any.
    pub agent_id: Option<&'a str>,
    /// The action involved, if any.
    pub action_id: Option<&'a str>,
    /// The event type.
    pub event_type: &'a str,
}

impl<'a> EventHeader<'a> {
    /// The header of `event`.
    pub fn of(event: &'a AuditEvent) -> EventHeader<'a> {
        EventHeader {
            seq: event.seq,
            ts: &event.ts,
            org_id: &event.org_id,
            agent_id: event.agent_id.as_deref(),
            action_id: event.action_id.as_deref(),
            event_type: &event.event_type,
        }
    }
}

/// [`canonical_event`] for an event given as its header and its `data` already in canonical
/// form (`canonical_data` = [`to_canonical_json`](crate::canonical::to_canonical_json) of the
/// data), so that the data, the bulk of an event, is canonicalised once, by whoever has it
/// first (the audit writer does it on the submitting request's thread, not its own).
///
/// # Errors
///
/// As [`write_canonical_json`] (none in practice).
pub fn canonical_event_parts(
    header: &EventHeader<'_>,
    canonical_data: &[u8],
) -> Result<Vec<u8>, CanonicalError> {
    fn optional(out: &mut Vec<u8>, text: Option<&str>) -> Result<(), CanonicalError> {
        match text {
            Some(text) => write_canonical_string(out, text),
            None => {
                out.extend_from_slice(b"null");
                Ok(())
            }
        }
    }
    let mut out = Vec::with_capacity(160 + canonical_data.len());
    out.extend_from_slice(br#"{"action_id":"#);
    optional(&mut out, header.action_id)?;
    out.extend_from_slice(br#","agent_id":"#);
    optional(&mut out, header.agent_id)?;
    out.extend_from_slice(br#","data":"#);
    out.extend_from_slice(canonical_data);
    out.extend_from_slice(br#","org_id":"#);
    write_canonical_string(&mut out, header.org_id)?;
    out.extend_from_slice(br#","seq":"#);
    write_canonical_number(&mut out, &serde_json::Number::from(header.seq))?;
    out.extend_from_slice(br#","ts":"#);
    write_canonical_string(&mut out, header.ts)?;
    out.extend_from_slice(br#","type":"#);
    write_canonical_string(&mut out, header.event_type)?;
    out.push(b'}');
    Ok(out)
}

/// [`event_hash`] for an event given as its header and its canonical `data` (see
/// [`canonical_event_parts`]): SHA-256(prev_hash || JCS(event)), the same value.
///
/// # Errors
///
/// As [`canonical_event_parts`].
pub fn event_hash_parts(
    prev_hash: &[u8; 32],
    header: &EventHeader<'_>,
    canonical_data: &[u8],
) -> Result<[u8; 32], CanonicalError> {
    let canonical = canonical_event_parts(header, canonical_data)?;
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(&canonical);
    Ok(hasher.finalize().into())
}

/// An event as stored and exported: the event plus its chain links.
///
/// JSON shape (the event flattened, hashes as 64 lowercase hex characters):
/// `{"seq", "ts", "org_id", "agent_id", "action_id", "type", "data", "prev_hash", "hash"}`.
/// Deserialising accepts upper- or lowercase hex and fails on anything but 32 bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainedEvent {
    /// The hashed event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// The hash of the previous event in the chain ([`GENESIS_HASH`] for `seq` 1).
    #[serde(with = "hex32")]
    pub prev_hash: [u8; 32],
    /// `event_hash(prev_hash, hashed event)`.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    /// For an event of format 2, its payload commitment
    /// ([`crate::evidence::payload`]): the hashed event then holds the committed data
    /// `{"payload_sha256": ...}` in place of `data`, and `data` is the payload's data (or
    /// `null` when the payload is withheld, [`Payload::withheld`]). `None` for an event of
    /// the first format, whose `data` is hashed as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
}

impl ChainedEvent {
    /// Links `event` after `prev_hash`, computing its hash.
    ///
    /// # Errors
    ///
    /// As [`event_hash`].
    pub fn link(event: AuditEvent, prev_hash: [u8; 32]) -> Result<ChainedEvent, CanonicalError> {
        let hash = event_hash(&prev_hash, &event)?;
        Ok(ChainedEvent {
            event,
            prev_hash,
            hash,
            payload: None,
        })
    }

    /// The event as hashed: [`ChainedEvent::hashed_data`] in place of `data` (what
    /// [`canonical_event`] must be given to compute the chain hash or the Merkle leaf).
    pub fn hashed_event(&self) -> AuditEvent {
        AuditEvent {
            data: self.hashed_data().into_owned(),
            ..self.event.clone()
        }
    }

    /// The `data` the chain hash covers: the committed data
    /// ([`crate::evidence::payload::committed_data`]) for an event of format 2, else `data`.
    pub fn hashed_data(&self) -> std::borrow::Cow<'_, serde_json::Value> {
        match &self.payload {
            Some(p) => std::borrow::Cow::Owned(crate::evidence::payload::committed_data(&p.sha256)),
            None => std::borrow::Cow::Borrowed(&self.event.data),
        }
    }
}

/// Serde helpers for 32-byte hashes as 64 hex characters (lowercase when written).
pub mod hex32 {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// Writes the hash as 64 lowercase hex characters.
    ///
    /// # Errors
    ///
    /// Only the serializer's own errors.
    pub fn serialize<S: Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&encode(hash))
    }

    /// `bytes` (a hash, a salt) as lowercase hex, two characters per byte. Table-driven into
    /// one buffer: this runs several times for every recorded event, where `hex::encode`'s
    /// generic character iterator costs several times as much.
    pub fn encode(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            out.push(char::from(DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// Reads 64 hex characters (either case) into 32 bytes.
    ///
    /// # Errors
    ///
    /// A deserializer error when the string is not hex or not 32 bytes long.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(D::Error::custom)
    }

    /// Parses 64 hex characters (either case) into 32 bytes.
    ///
    /// # Errors
    ///
    /// A message saying why the text is not a 32-byte hex hash.
    pub fn parse(text: &str) -> Result<[u8; 32], String> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out)
            .map_err(|e| format!("not a 32-byte hex hash ({e}): {text:?}"))?;
        Ok(out)
    }
}

/// An event as stored, unparsed: its columns, with `data` as the stored text. What a
/// database verifier reads ([`ChainVerifier::push_raw`]) without parsing the JSON of events
/// that are intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// RFC 3339 UTC timestamp.
    pub ts: String,
    /// The chain (organisation id or `system`).
    pub org_id: String,
    /// The agent involved, if any.
    pub agent_id: Option<String>,
    /// The action involved, if any.
    pub action_id: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The stored text of `data` (RFC 8785 canonical JSON as AAF writes it).
    pub data: String,
    /// The stored `prev_hash`.
    pub prev_hash: [u8; 32],
    /// The stored `hash`.
    pub hash: [u8; 32],
    /// The stored payload of an event of format 2 (sealed or in clear, see
    /// `aaf_store::encryption`), when read and still stored; `None` otherwise.
    pub payload: Option<String>,
    /// Why the payload was removed (retention or shredding), when it was.
    pub payload_removed: Option<String>,
}

impl StoredEvent {
    /// The header of the event.
    pub fn header(&self) -> EventHeader<'_> {
        EventHeader {
            seq: self.seq,
            ts: &self.ts,
            org_id: &self.org_id,
            agent_id: self.agent_id.as_deref(),
            action_id: self.action_id.as_deref(),
            event_type: &self.event_type,
        }
    }
}

/// The result of verifying one organisation's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSummary {
    /// The organisation (chain) verified.
    pub org_id: String,
    /// Number of events verified.
    pub count: u64,
    /// The last `seq` (0 for an empty chain).
    pub head_seq: u64,
    /// The last hash ([`GENESIS_HASH`] for an empty chain), as hex in JSON.
    #[serde(with = "hex32")]
    pub head_hash: [u8; 32],
}

/// The first place where a chain is not intact.
///
/// `seq` is the first position that cannot be verified: everything before it is intact.
/// Its `Display` names the organisation, that `seq` and what is wrong, e.g.
/// `audit chain of org o1 is broken at seq 5: event is missing (the next stored event is seq 6): events were deleted`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain of org {org_id} is broken at seq {seq}: {kind}")]
pub struct ChainError {
    /// The organisation (chain) being verified.
    pub org_id: String,
    /// The first `seq` that cannot be verified.
    pub seq: u64,
    /// What is wrong.
    pub kind: ChainErrorKind,
}

/// What is wrong with a chain at [`ChainError::seq`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainErrorKind {
    /// The event at this `seq` is missing; the next stored event has seq `found`.
    #[error("event is missing (the next stored event is seq {found}): events were deleted")]
    Missing {
        /// The seq of the event that came instead.
        found: u64,
    },
    /// An event with an already-seen (or lower) seq came where this seq was expected.
    #[error("expected this seq but found seq {found} again: events were inserted or reordered")]
    Repeated {
        /// The seq of the event that came instead.
        found: u64,
    },
    /// The event belongs to another organisation.
    #[error("event belongs to org {found}: events were moved between chains")]
    WrongOrg {
        /// The event's `org_id`.
        found: String,
    },
    /// The event's `prev_hash` is not the previous event's hash.
    #[error(
        "prev_hash is {}, but the previous event's hash is {}: events were inserted, deleted or reordered",
        hex::encode(found),
        hex::encode(expected)
    )]
    PrevHashMismatch {
        /// The previous event's hash (or [`GENESIS_HASH`]).
        expected: [u8; 32],
        /// The stored `prev_hash`.
        found: [u8; 32],
    },
    /// The recomputed hash differs from the stored one: the event was modified.
    #[error(
        "stored hash is {}, but the event hashes to {}: the event was modified",
        hex::encode(stored),
        hex::encode(computed)
    )]
    HashMismatch {
        /// `event_hash(prev_hash, event)`.
        computed: [u8; 32],
        /// The stored `hash`.
        stored: [u8; 32],
    },
    /// The stored row cannot be read as an event (bad JSON, bad hex, negative seq, ...).
    #[error("stored event is malformed: {reason}")]
    Malformed {
        /// Why the row is not an event.
        reason: String,
    },
    /// The chain ends before the recorded head: the newest events were deleted.
    #[error("the chain ends at seq {last_seq} but its head records seq {head_seq}: the newest events were deleted")]
    Truncated {
        /// The last verified seq (0 when no event is left).
        last_seq: u64,
        /// The seq the head records.
        head_seq: u64,
    },
    /// Events exist after the recorded head.
    #[error("events continue after the head, which records seq {head_seq}: events were appended outside aaf or the head was rolled back")]
    BeyondHead {
        /// The seq the head records.
        head_seq: u64,
    },
    /// Events exist but no head is recorded for the chain.
    #[error("the chain has events up to seq {last_seq} but no recorded head")]
    HeadMissing {
        /// The last verified seq.
        last_seq: u64,
    },
    /// The last event's hash is not the hash the head records.
    #[error(
        "the head records hash {}, but the last event's hash is {}: the chain was rewritten",
        hex::encode(head),
        hex::encode(last)
    )]
    HeadHashMismatch {
        /// The hash the head records.
        head: [u8; 32],
        /// The last event's hash.
        last: [u8; 32],
    },
    /// The event has no canonical JSON form, not even the rounded one of
    /// [`crate::canonical::to_rounded_canonical_json`] (e.g. a number that is not a double).
    #[error("event cannot be canonicalised: {0}: the event was modified")]
    Canonical(String),
    /// The event's payload does not match the commitment its hashed event holds
    /// ([`crate::evidence::payload::verify`]).
    #[error("{0}")]
    Payload(String),
    /// The stored `data` text is neither byte for byte the RFC 8785 canonical form of the
    /// JSON value it parses to, which is what AAF stores, nor the compact `serde_json`
    /// serialisation of it, which versions before that rule stored. Its hash may still
    /// match (the hash covers the parsed value), but readers could see something else in
    /// the stored text: a duplicated member (`{"decision":"allow",...,"decision":"deny"}`
    /// is `allow` to SQLite's `json_extract` and `deny` to other parsers), or another
    /// spelling.
    #[error("the stored data is not its RFC 8785 canonical form (stored {stored}, canonical {canonical}): the event was modified")]
    NotCanonical {
        /// The start of the stored text (at most 120 characters).
        stored: String,
        /// The start of the canonical form of what it parses to (at most 120 characters).
        canonical: String,
    },
    /// The organisation exists but its chain has no event and no head: the whole chain was
    /// deleted (every organisation's chain starts with its `org.created` event).
    #[error("the organisation exists but its audit chain (events and head) is gone: the chain was deleted")]
    ChainMissing,
    /// The chain belongs to no organisation that exists (and is not the `system` chain):
    /// the organisation's row was deleted.
    #[error("the chain has events but organisation {org_id} does not exist: its row was deleted")]
    OrgMissing {
        /// The chain's organisation id.
        org_id: String,
    },
}

/// Verifies one organisation's chain incrementally, one event at a time in `seq` order,
/// so that a store can stream any number of rows through it in constant memory.
///
/// Checks, per event: `seq` is 1 for the first event and then increases by exactly 1
/// (a gap means deleted events, a repeat means inserted or reordered ones), `org_id` is the
/// chain's, `prev_hash` is the previous event's hash ([`GENESIS_HASH`] for seq 1), and the
/// recomputed [`event_hash`] equals the stored hash. [`ChainVerifier::finish`] then checks
/// that the last event is the recorded chain head, so deleting the newest events is caught.
///
/// The first error is sticky: later calls return it again.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    org_id: String,
    count: u64,
    last_seq: u64,
    last_hash: [u8; 32],
    failed: Option<ChainError>,
    /// `Some` when leaf hashes are computed ([`ChainVerifier::with_leaves`]): the last
    /// verified event's, `[0; 32]` before the first.
    last_leaf: Option<[u8; 32]>,
}

impl ChainVerifier {
    /// Starts verifying the chain of `org_id` (empty so far).
    pub fn new(org_id: impl Into<String>) -> ChainVerifier {
        ChainVerifier {
            org_id: org_id.into(),
            count: 0,
            last_seq: 0,
            last_hash: GENESIS_HASH,
            failed: None,
            last_leaf: None,
        }
    }

    /// Continues verifying the chain of `org_id` after an event already verified: the next
    /// event must have seq `last_seq + 1` and `prev_hash` = `last_hash`. [`ChainSummary::count`]
    /// then counts the events verified since. The tree builder uses it to go on from the
    /// tree's size without reading the chain again from its start.
    pub fn resume(org_id: impl Into<String>, last_seq: u64, last_hash: [u8; 32]) -> ChainVerifier {
        ChainVerifier {
            last_seq,
            last_hash,
            ..ChainVerifier::new(org_id)
        }
    }

    /// Also computes each verified event's Merkle leaf hash
    /// ([`crate::evidence::event_leaf_hash`]: `SHA-256(0x00 || JCS(event))`, the bytes the
    /// chain hash covers), read with [`ChainVerifier::last_leaf_hash`]. Costs one more
    /// SHA-256 of the event per event.
    pub fn with_leaves(mut self) -> ChainVerifier {
        self.last_leaf = Some([0; 32]);
        self
    }

    /// The leaf hash of the last event verified, when [`ChainVerifier::with_leaves`] was
    /// asked for and an event was verified (`None` otherwise).
    pub fn last_leaf_hash(&self) -> Option<[u8; 32]> {
        self.last_leaf.filter(|_| self.count > 0)
    }

    /// The organisation whose chain this verifies.
    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    /// The seq the next event must have (1 for an empty chain).
    pub fn next_seq(&self) -> u64 {
        self.last_seq + 1
    }

    /// Verifies the next event.
    ///
    /// The hash is recomputed over the RFC 8785 form of the event
    /// ([`crate::canonical::to_canonical_json`]). An event whose `data` holds a number
    /// without an exact form (an integer beyond 2^53-1), which AAF refuses since it hashes
    /// exactly but earlier versions wrote, is hashed over the form those versions used, with
    /// such numbers rounded to the nearest double
    /// ([`crate::canonical::to_rounded_canonical_json`]); no event written since can match
    /// that way.
    ///
    /// # Errors
    ///
    /// The first [`ChainError`] of the chain (this event's, or an earlier one's).
    pub fn push(&mut self, chained: &ChainedEvent) -> Result<(), ChainError> {
        self.push_event(chained, None)
    }

    /// Verifies the next event as stored: `stored_data` is the stored text of its `data`,
    /// which must be byte for byte the RFC 8785 canonical form of `chained.event.data` (its
    /// parse), as AAF writes it; the hash is then computed over those stored bytes. This is
    /// what a database verifier uses, so that the stored text, whatever a reader makes of
    /// it, is exactly what was hashed (a duplicated member or any other spelling is
    /// refused).
    ///
    /// # Errors
    ///
    /// As [`ChainVerifier::push`], and [`ChainErrorKind::NotCanonical`] when the stored text
    /// is not the canonical form. Events stored by versions before the canonical rule hold
    /// the compact `serde_json` serialisation of their `data` instead (still one fixed
    /// spelling of the hashed value), which is accepted too.
    pub fn push_stored(
        &mut self,
        chained: &ChainedEvent,
        stored_data: &[u8],
    ) -> Result<(), ChainError> {
        self.push_event(chained, Some(stored_data))
    }

    /// Verifies the next event from its stored columns: as [`ChainVerifier::push_stored`],
    /// but without parsing `data` when the event is intact. The hash is first computed over
    /// the header and the stored `data` bytes exactly as they are; when it is the stored
    /// hash, those bytes are the ones hashed when the event was written (AAF writes the
    /// canonical form), and the event is accepted. Otherwise `data` is parsed and checked as
    /// [`ChainVerifier::push_stored`] does, which reports what is wrong (or accepts the forms
    /// of events written by earlier versions). Same results as `push_stored` for everything
    /// AAF writes, about twice as fast (no JSON parse, no re-serialisation).
    ///
    /// # Errors
    ///
    /// As [`ChainVerifier::push_stored`]; [`ChainErrorKind::Malformed`] when `data` is not
    /// JSON.
    pub fn push_raw(&mut self, stored: &StoredEvent) -> Result<(), ChainError> {
        self.check_sequence(stored.seq)?;
        let expected_seq = self.last_seq + 1;
        if stored.org_id == self.org_id && stored.prev_hash == self.last_hash {
            if let Ok(canonical) = canonical_event_parts(&stored.header(), stored.data.as_bytes()) {
                let mut hasher = Sha256::new();
                hasher.update(stored.prev_hash);
                hasher.update(&canonical);
                let computed: [u8; 32] = hasher.finalize().into();
                if computed == stored.hash {
                    if let Some(leaf) = self.last_leaf.as_mut() {
                        *leaf = crate::evidence::event_leaf_hash(&canonical);
                    }
                    self.count += 1;
                    self.last_seq = stored.seq;
                    self.last_hash = stored.hash;
                    return Ok(());
                }
            }
        }
        let data: serde_json::Value = match serde_json::from_str(&stored.data) {
            Ok(data) => data,
            Err(e) => {
                return Err(self.fail(
                    expected_seq,
                    ChainErrorKind::Malformed {
                        reason: format!("data is not json: {e}"),
                    },
                ))
            }
        };
        let chained = ChainedEvent {
            event: AuditEvent {
                seq: stored.seq,
                ts: stored.ts.clone(),
                org_id: stored.org_id.clone(),
                agent_id: stored.agent_id.clone(),
                action_id: stored.action_id.clone(),
                event_type: stored.event_type.clone(),
                data,
            },
            prev_hash: stored.prev_hash,
            hash: stored.hash,
            payload: None,
        };
        self.push_event(&chained, Some(stored.data.as_bytes()))
    }

    fn push_event(
        &mut self,
        chained: &ChainedEvent,
        stored_data: Option<&[u8]>,
    ) -> Result<(), ChainError> {
        self.check_sequence(chained.event.seq)?;
        let expected_seq = self.last_seq + 1;
        if chained.event.org_id != self.org_id {
            return Err(self.fail(
                expected_seq,
                ChainErrorKind::WrongOrg {
                    found: chained.event.org_id.clone(),
                },
            ));
        }
        if chained.prev_hash != self.last_hash {
            return Err(self.fail(
                expected_seq,
                ChainErrorKind::PrevHashMismatch {
                    expected: self.last_hash,
                    found: chained.prev_hash,
                },
            ));
        }
        // Format 2: the payload, when given, must be what the hashed event commits to.
        if let Some(payload) = &chained.payload {
            if let Some(salt) = &payload.salt {
                if let Err(e) =
                    crate::evidence::payload::verify(&payload.sha256, salt, &chained.event.data)
                {
                    return Err(self.fail(expected_seq, ChainErrorKind::Payload(e.to_string())));
                }
            }
        }
        let hashed_data = chained.hashed_data();
        // Events written before AAF refused inexact numbers may hold one; their hash covers
        // the rounded form (see `to_rounded_canonical_json` for why accepting it is safe).
        let (canonical_data, rounded) = match crate::canonical::to_canonical_json(&hashed_data) {
            Ok(bytes) => (bytes, false),
            Err(crate::canonical::CanonicalError::InexactNumber(_)) => {
                match crate::canonical::to_rounded_canonical_json(&hashed_data) {
                    Ok(bytes) => (bytes, true),
                    Err(e) => {
                        return Err(
                            self.fail(expected_seq, ChainErrorKind::Canonical(e.to_string()))
                        )
                    }
                }
            }
            Err(e) => return Err(self.fail(expected_seq, ChainErrorKind::Canonical(e.to_string()))),
        };
        if let Some(stored) = stored_data {
            // The canonical bytes, or the compact serialisation that versions before the
            // canonical rule stored: both are one fixed spelling of the parsed value, so no
            // reader can see anything but what was hashed.
            let accepted = (!rounded && stored == canonical_data.as_slice())
                || serde_json::to_vec(&*hashed_data).is_ok_and(|earlier| stored == earlier);
            if !accepted {
                let start = |bytes: &[u8]| -> String {
                    String::from_utf8_lossy(bytes).chars().take(120).collect()
                };
                return Err(self.fail(
                    expected_seq,
                    ChainErrorKind::NotCanonical {
                        stored: start(stored),
                        canonical: start(&canonical_data),
                    },
                ));
            }
        }
        let canonical =
            match canonical_event_parts(&EventHeader::of(&chained.event), &canonical_data) {
                Ok(bytes) => bytes,
                Err(e) => {
                    return Err(self.fail(expected_seq, ChainErrorKind::Canonical(e.to_string())))
                }
            };
        let computed: [u8; 32] = {
            let mut hasher = Sha256::new();
            hasher.update(chained.prev_hash);
            hasher.update(&canonical);
            hasher.finalize().into()
        };
        if computed != chained.hash {
            return Err(self.fail(
                expected_seq,
                ChainErrorKind::HashMismatch {
                    computed,
                    stored: chained.hash,
                },
            ));
        }
        if let Some(leaf) = self.last_leaf.as_mut() {
            *leaf = crate::evidence::event_leaf_hash(&canonical);
        }
        self.count += 1;
        self.last_seq = chained.event.seq;
        self.last_hash = chained.hash;
        Ok(())
    }

    /// Records that the stored row at `seq` cannot be read as an event.
    ///
    /// A gap or repeat at `seq` is reported in preference to the malformation, so the
    /// reported seq is always the first position that cannot be verified.
    ///
    /// # Errors
    ///
    /// Always: the first [`ChainError`] of the chain.
    pub fn push_malformed(&mut self, seq: u64, reason: impl Into<String>) -> ChainError {
        if let Err(e) = self.check_sequence(seq) {
            return e;
        }
        self.fail(
            seq,
            ChainErrorKind::Malformed {
                reason: reason.into(),
            },
        )
    }

    /// Ends verification, comparing the last event with the recorded chain head
    /// (`(seq, hash)`, or `None` when no head is recorded).
    ///
    /// An empty chain with no head verifies, with `head_seq` 0 and [`GENESIS_HASH`].
    ///
    /// # Errors
    ///
    /// The first [`ChainError`] of the chain; otherwise `Truncated`, `BeyondHead`,
    /// `HeadMissing` or `HeadHashMismatch` when the last event is not the recorded head.
    pub fn finish(
        mut self,
        expected_head: Option<(u64, [u8; 32])>,
    ) -> Result<ChainSummary, ChainError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let last_seq = self.last_seq;
        match expected_head {
            None if last_seq == 0 => {}
            None => {
                return Err(self.fail(last_seq, ChainErrorKind::HeadMissing { last_seq }));
            }
            Some((head_seq, _)) if head_seq > last_seq => {
                return Err(self.fail(
                    last_seq + 1,
                    ChainErrorKind::Truncated { last_seq, head_seq },
                ));
            }
            Some((head_seq, _)) if head_seq < last_seq => {
                return Err(self.fail(head_seq + 1, ChainErrorKind::BeyondHead { head_seq }));
            }
            Some((_, head_hash)) if head_hash != self.last_hash => {
                let last = self.last_hash;
                return Err(self.fail(
                    last_seq,
                    ChainErrorKind::HeadHashMismatch {
                        head: head_hash,
                        last,
                    },
                ));
            }
            Some(_) => {}
        }
        Ok(ChainSummary {
            org_id: self.org_id,
            count: self.count,
            head_seq: last_seq,
            head_hash: self.last_hash,
        })
    }

    /// Checks that `seq` is the next expected seq (and that no error happened before).
    fn check_sequence(&mut self, seq: u64) -> Result<(), ChainError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let expected = self.last_seq + 1;
        if seq > expected {
            return Err(self.fail(expected, ChainErrorKind::Missing { found: seq }));
        }
        if seq < expected {
            return Err(self.fail(expected, ChainErrorKind::Repeated { found: seq }));
        }
        Ok(())
    }

    /// Records the first error and returns it.
    fn fail(&mut self, seq: u64, kind: ChainErrorKind) -> ChainError {
        let error = ChainError {
            org_id: self.org_id.clone(),
            seq,
            kind,
        };
        self.failed = Some(error.clone());
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_from_parts_equals_hashing_the_event() {
        let datas = [
            serde_json::json!({"b": 1.0, "a": [1, 2.5, "x\u{1F600}"], "c": {"z": null, "y": true}}),
            serde_json::json!({}),
            serde_json::json!({"n": 1e21, "s": "line\nbreak \"quoted\""}),
        ];
        for (i, data) in datas.into_iter().enumerate() {
            for (agent, action) in [(None, None), (Some("ag"), Some("ac"))] {
                let event = AuditEvent {
                    seq: 41 + i as u64,
                    ts: "2026-11-21T05:35:00.123456Z".into(),
                    org_id: "org-ü".into(),
                    agent_id: agent.map(str::to_string),
                    action_id: action.map(str::to_string),
                    event_type: "action.decided".into(),
                    data: data.clone(),
                };
                let prev = [i as u8; 32];
                let canonical = crate::canonical::to_canonical_json(&data).unwrap();
                assert_eq!(
                    event_hash_parts(&prev, &EventHeader::of(&event), &canonical).unwrap(),
                    event_hash(&prev, &event).unwrap()
                );
                assert_eq!(
                    canonical_event(&event).unwrap(),
                    crate::canonical::to_canonical_json_of(&event).unwrap()
                );
            }
        }
    }
    use crate::canonical::{to_canonical_json_of, CanonicalError};
    use serde_json::json;

    fn event(org: &str, seq: u64, data: serde_json::Value) -> AuditEvent {
        AuditEvent {
            seq,
            ts: format!("2026-11-21T05:35:00.{seq:06}Z"),
            org_id: org.to_string(),
            agent_id: (seq & 1 == 0).then(|| "agent-1".to_string()),
            action_id: None,
            event_type: event_types::ACTION_DECIDED.to_string(),
            data,
        }
    }

    /// `chained` as stored: `data` as the given text.
    fn stored(chained: &ChainedEvent, data: String) -> StoredEvent {
        StoredEvent {
            seq: chained.event.seq,
            ts: chained.event.ts.clone(),
            org_id: chained.event.org_id.clone(),
            agent_id: chained.event.agent_id.clone(),
            action_id: chained.event.action_id.clone(),
            event_type: chained.event.event_type.clone(),
            data,
            prev_hash: chained.prev_hash,
            hash: chained.hash,
            payload: None,
            payload_removed: None,
        }
    }

    fn canonical_data(chained: &ChainedEvent) -> String {
        String::from_utf8(crate::canonical::to_canonical_json(&chained.event.data).unwrap())
            .unwrap()
    }

    #[test]
    fn raw_verification_agrees_with_stored_verification_and_gives_the_leaves() {
        let events = chain(20);
        // Intact: both accept, the leaves are the tree's.
        let mut raw = ChainVerifier::new("o1").with_leaves();
        let mut tree = crate::evidence::merkle::MemoryTree::new();
        for e in &events {
            raw.push_raw(&stored(e, canonical_data(e))).unwrap();
            let leaf = raw.last_leaf_hash().unwrap();
            assert_eq!(
                leaf,
                crate::evidence::merkle::leaf_hash(&canonical_event(&e.event).unwrap())
            );
            tree.append(leaf).unwrap();
        }
        assert_eq!(raw.finish(Some((20, events[19].hash))).unwrap().count, 20);
        assert_eq!(tree.size(), 20);

        // Each kind of damage is reported as push_stored reports it.
        type Damage = fn(&mut StoredEvent);
        let damages: [(&str, Damage); 5] = [
            ("changed value", |s| s.data = s.data.replace("1.5", "2.5")),
            ("other spelling", |s| s.data = s.data.replace("1.5", "1.50")),
            ("not json", |s| s.data = "{".into()),
            ("changed type", |s| s.event_type = "auth.failed".into()),
            ("other org", |s| s.org_id = "o2".into()),
        ];
        for (what, damage) in damages {
            let mut raw = ChainVerifier::new("o1");
            let mut strict = ChainVerifier::new("o1");
            for e in &events[..6] {
                let mut row = stored(e, canonical_data(e));
                if e.event.seq == 6 {
                    damage(&mut row);
                }
                let by_raw = raw.push_raw(&row);
                let by_stored = match serde_json::from_str(&row.data) {
                    Ok(data) => {
                        let mut parsed = e.clone();
                        parsed.event.data = data;
                        parsed.event.event_type = row.event_type.clone();
                        parsed.event.org_id = row.org_id.clone();
                        strict.push_stored(&parsed, row.data.as_bytes())
                    }
                    Err(_) => Err(strict.push_malformed(6, "data is not json")),
                };
                match (by_raw, by_stored) {
                    (Ok(()), Ok(())) => assert!(e.event.seq < 6, "{what}"),
                    (Err(a), Err(b)) => {
                        assert_eq!((a.seq, e.event.seq), (6, 6), "{what}");
                        assert_eq!(
                            std::mem::discriminant(&a.kind),
                            std::mem::discriminant(&b.kind),
                            "{what}: {a} / {b}"
                        );
                    }
                    (a, b) => panic!("{what}: raw {a:?}, stored {b:?}"),
                }
            }
        }
    }

    #[test]
    fn a_resumed_verifier_goes_on_from_a_verified_event() {
        let events = chain(10);
        let mut verifier = ChainVerifier::resume("o1", 6, events[5].hash);
        for e in &events[6..] {
            verifier.push_raw(&stored(e, canonical_data(e))).unwrap();
        }
        let summary = verifier.finish(Some((10, events[9].hash))).unwrap();
        assert_eq!((summary.count, summary.head_seq), (4, 10));
        // Resumed at the wrong hash, the next event does not link.
        let mut wrong = ChainVerifier::resume("o1", 6, events[4].hash);
        let e = wrong
            .push_raw(&stored(&events[6], canonical_data(&events[6])))
            .unwrap_err();
        assert!(
            matches!(e.kind, ChainErrorKind::PrevHashMismatch { .. }),
            "{e}"
        );
    }

    /// A valid chain of `n` events of org `o1`.
    fn chain(n: u64) -> Vec<ChainedEvent> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let linked =
                    ChainedEvent::link(event("o1", seq, json!({"n": seq, "x": 1.5})), prev)
                        .unwrap();
                prev = linked.hash;
                linked
            })
            .collect()
    }

    fn head(events: &[ChainedEvent]) -> Option<(u64, [u8; 32])> {
        events.last().map(|e| (e.event.seq, e.hash))
    }

    /// Runs a chain through a verifier and returns the outcome.
    fn verify(
        events: &[ChainedEvent],
        expected_head: Option<(u64, [u8; 32])>,
    ) -> Result<ChainSummary, ChainError> {
        let mut verifier = ChainVerifier::new("o1");
        for e in events {
            if verifier.push(e).is_err() {
                break;
            }
        }
        verifier.finish(expected_head)
    }

    #[test]
    fn hash_is_sha256_of_prev_hash_and_canonical_event() {
        let e = AuditEvent {
            seq: 1,
            ts: "2026-11-21T05:35:00.123456Z".into(),
            org_id: "o1".into(),
            agent_id: None,
            action_id: Some("a1".into()),
            event_type: "org.created".into(),
            data: json!({"name": "acme", "amount": 1.0}),
        };
        let canonical = br#"{"action_id":"a1","agent_id":null,"data":{"amount":1,"name":"acme"},"org_id":"o1","seq":1,"ts":"2026-11-21T05:35:00.123456Z","type":"org.created"}"#;
        assert_eq!(to_canonical_json_of(&e).unwrap(), canonical.to_vec());
        let mut input = GENESIS_HASH.to_vec();
        input.extend_from_slice(canonical);
        let expected: [u8; 32] = Sha256::digest(&input).into();
        assert_eq!(event_hash(&GENESIS_HASH, &e).unwrap(), expected);
        // A different previous hash gives a different hash.
        assert_ne!(event_hash(&[1; 32], &e).unwrap(), expected);
    }

    #[test]
    fn direct_event_form_matches_the_generic_one() {
        let events = [
            event("o1", 1, json!({})),
            event(
                "o\u{1f}\"\\é😀",
                2,
                json!({"b": [1, 2.5, 1e21], "a": null, "é": "\n"}),
            ),
            event("o1", crate::canonical::MAX_EXACT_INTEGER, json!("text")),
            event("o1", 1 << 52, json!(-0.0)),
            event("o1", (1 << 53) - 2, json!([{"z": 1, "a": {"y": true}}])),
        ];
        for e in events {
            let direct = canonical_event(&e).unwrap();
            assert_eq!(direct, to_canonical_json_of(&e).unwrap(), "{e:?}");
            let value = serde_json::to_value(&e).unwrap();
            assert_eq!(direct, crate::canonical::to_canonical_json(&value).unwrap());
        }
    }

    #[test]
    fn events_differing_beyond_double_precision_are_never_hashed_alike() {
        // Rounded to doubles, both amounts had one canonical form and so one hash: an event
        // changed from one to the other verified. Now neither has a hash.
        for n in [4_000_000_000_000_000_015u64, 4_000_000_000_000_000_014] {
            let e = event("o1", 1, json!({"params": {"n": n}}));
            assert_eq!(
                event_hash(&GENESIS_HASH, &e),
                Err(CanonicalError::InexactNumber(n.to_string()))
            );
        }
        // A stored event changed to such a number no longer verifies.
        let genuine = ChainedEvent::link(event("o1", 1, json!({"n": 7})), GENESIS_HASH).unwrap();
        let mut changed = genuine.clone();
        changed.event.data = json!({"n": 4_000_000_000_000_000_014u64});
        let mut verifier = ChainVerifier::new("o1");
        let err = verifier.push(&changed).unwrap_err();
        assert_eq!(err.seq, 1);
        assert!(
            matches!(err.kind, ChainErrorKind::HashMismatch { .. }),
            "{err}"
        );
        // From 10^21 on, doubles are exact (written `1e+21`), but a stored text changed to
        // an integer that parses to the same double is not the canonical form.
        let genuine = ChainedEvent::link(event("o1", 1, json!({"n": 1e21})), GENESIS_HASH).unwrap();
        let stored = crate::canonical::to_canonical_json(&genuine.event.data).unwrap();
        assert_eq!(stored, br#"{"n":1e+21}"#);
        let changed_text = r#"{"n":1000000000000000000001}"#;
        let mut changed = genuine.clone();
        changed.event.data = serde_json::from_str(changed_text).unwrap();
        assert_eq!(
            event_hash(&GENESIS_HASH, &changed.event).unwrap(),
            genuine.hash
        );
        let mut verifier = ChainVerifier::new("o1");
        verifier.push_stored(&genuine, &stored).unwrap();
        let mut verifier = ChainVerifier::new("o1");
        let err = verifier
            .push_stored(&changed, changed_text.as_bytes())
            .unwrap_err();
        assert!(
            matches!(err.kind, ChainErrorKind::NotCanonical { .. }),
            "{err}"
        );
    }

    #[test]
    fn stored_data_must_be_its_canonical_bytes() {
        let genuine = ChainedEvent::link(
            event("o1", 1, json!({"decision": "deny", "amount": 1.5})),
            GENESIS_HASH,
        )
        .unwrap();
        let canonical = crate::canonical::to_canonical_json(&genuine.event.data).unwrap();
        assert_eq!(canonical, br#"{"amount":1.5,"decision":"deny"}"#);
        let mut verifier = ChainVerifier::new("o1");
        verifier.push_stored(&genuine, &canonical).unwrap();
        assert_eq!(
            verifier
                .finish(head(std::slice::from_ref(&genuine)))
                .unwrap()
                .count,
            1
        );

        // A duplicated member in front: serde_json keeps the last value (the hashed
        // `deny`), SQLite's json_extract the first (`allow`). The hash still matches.
        let tampered = r#"{"decision":"allow","amount":1.5,"decision":"deny"}"#;
        let parsed: serde_json::Value = serde_json::from_str(tampered).unwrap();
        assert_eq!(parsed, genuine.event.data);
        let mut reread = genuine.clone();
        reread.event.data = parsed;
        let mut lenient = ChainVerifier::new("o1");
        lenient.push(&reread).unwrap();
        let mut verifier = ChainVerifier::new("o1");
        let err = verifier
            .push_stored(&reread, tampered.as_bytes())
            .unwrap_err();
        assert_eq!(err.seq, 1);
        assert!(
            matches!(err.kind, ChainErrorKind::NotCanonical { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("modified"), "{err}");

        // Any other spelling of the same value is refused too.
        for other in [
            r#"{"amount":1.50,"decision":"deny"}"#,
            r#"{"amount":1.5, "decision":"deny"}"#,
            r#"{"amount":1.5,"decision":"d\u0065ny"}"#,
        ] {
            let mut verifier = ChainVerifier::new("o1");
            let err = verifier
                .push_stored(&genuine, other.as_bytes())
                .unwrap_err();
            assert!(
                matches!(err.kind, ChainErrorKind::NotCanonical { .. }),
                "{other}: {err}"
            );
        }
    }

    /// An event as versions before the canonical rule wrote it: `data` stored as its
    /// compact `serde_json` text, hashed over the RFC 8785 form with numbers beyond 2^53
    /// rounded to the nearest double.
    fn earlier_version_event(data: serde_json::Value) -> (ChainedEvent, Vec<u8>) {
        let e = event("o1", 1, data);
        let rounded = crate::canonical::to_rounded_canonical_json(&e.data).unwrap();
        let hash = event_hash_parts(&GENESIS_HASH, &EventHeader::of(&e), &rounded).unwrap();
        let stored = serde_json::to_vec(&e.data).unwrap();
        let chained = ChainedEvent {
            event: e,
            prev_hash: GENESIS_HASH,
            hash,
            payload: None,
        };
        (chained, stored)
    }

    #[test]
    fn events_stored_by_earlier_versions_still_verify() {
        // Stored as serialised (`1.0`, members in written order), not canonically.
        let (legacy, stored) = earlier_version_event(json!({"z": 1.0, "a": "é"}));
        assert_eq!(stored, r#"{"z":1.0,"a":"é"}"#.as_bytes());
        let mut verifier = ChainVerifier::new("o1");
        verifier.push_stored(&legacy, &stored).unwrap();
        assert_eq!(
            verifier
                .finish(head(std::slice::from_ref(&legacy)))
                .unwrap()
                .count,
            1
        );
        // A duplicated member is neither form and is still refused.
        let tampered = r#"{"z":2.0,"z":1.0,"a":"é"}"#;
        let mut verifier = ChainVerifier::new("o1");
        let err = verifier
            .push_stored(&legacy, tampered.as_bytes())
            .unwrap_err();
        assert!(
            matches!(err.kind, ChainErrorKind::NotCanonical { .. }),
            "{err}"
        );

        // An integer beyond 2^53 that an earlier version hashed rounded.
        let n = 4_000_000_000_000_000_015u64;
        let (legacy, stored) = earlier_version_event(json!({"params": {"n": n}}));
        assert_eq!(stored, format!(r#"{{"params":{{"n":{n}}}}}"#).as_bytes());
        let mut verifier = ChainVerifier::new("o1");
        verifier.push_stored(&legacy, &stored).unwrap();
        // Changed to a number with another nearest double, it no longer verifies.
        let mut changed = legacy.clone();
        changed.event.data = json!({"params": {"n": 4_000_000_000_000_001_015u64}});
        let stored = serde_json::to_vec(&changed.event.data).unwrap();
        let err = ChainVerifier::new("o1")
            .push_stored(&changed, &stored)
            .unwrap_err();
        assert!(
            matches!(err.kind, ChainErrorKind::HashMismatch { .. }),
            "{err}"
        );
        // Only the serialised text fits such an event: its rounded canonical form
        // would be another number to every reader.
        let rounded = crate::canonical::to_rounded_canonical_json(&legacy.event.data).unwrap();
        let err = ChainVerifier::new("o1")
            .push_stored(&legacy, &rounded)
            .unwrap_err();
        assert!(
            matches!(err.kind, ChainErrorKind::NotCanonical { .. }),
            "{err}"
        );
    }

    #[test]
    fn sha256_matches_fips_180_4_example() {
        // FIPS 180-4 / NIST example "abc".
        assert_eq!(
            hex::encode(Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn chained_event_json_shape() {
        let events = chain(2);
        let value = serde_json::to_value(&events[1]).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "seq",
                "ts",
                "org_id",
                "agent_id",
                "action_id",
                "type",
                "data",
                "prev_hash",
                "hash"
            ]
        );
        assert_eq!(value["action_id"], serde_json::Value::Null);
        assert_eq!(value["prev_hash"], hex::encode(events[0].hash));
        assert_eq!(value["hash"].as_str().unwrap().len(), 64);
        let back: ChainedEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, events[1]);
    }

    #[test]
    fn chained_event_rejects_bad_hex() {
        let mut value = serde_json::to_value(&chain(1)[0]).unwrap();
        value["hash"] = json!("abc");
        assert!(serde_json::from_value::<ChainedEvent>(value.clone()).is_err());
        value["hash"] = json!("zz".repeat(32));
        assert!(serde_json::from_value::<ChainedEvent>(value).is_err());
    }

    #[test]
    fn intact_chain_verifies() {
        let events = chain(5);
        let summary = verify(&events, head(&events)).unwrap();
        assert_eq!(summary.org_id, "o1");
        assert_eq!(summary.count, 5);
        assert_eq!(summary.head_seq, 5);
        assert_eq!(summary.head_hash, events[4].hash);
    }

    #[test]
    fn empty_chain_without_head_verifies() {
        let summary = verify(&[], None).unwrap();
        assert_eq!(summary.count, 0);
        assert_eq!(summary.head_seq, 0);
        assert_eq!(summary.head_hash, GENESIS_HASH);
    }

    #[test]
    fn modified_data_is_a_hash_mismatch_at_its_seq() {
        let mut events = chain(5);
        let expected_head = head(&events);
        events[2].event.data = json!({"n": 3, "x": 2.5});
        let err = verify(&events, expected_head).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(matches!(err.kind, ChainErrorKind::HashMismatch { .. }));
        assert!(err.to_string().contains("broken at seq 3"), "{err}");
        assert!(err.to_string().contains("modified"), "{err}");
    }

    #[test]
    fn every_hashed_field_is_covered() {
        let mutations: [fn(&mut AuditEvent); 6] = [
            |e| e.ts.push('1'),
            |e| e.agent_id = Some("other".into()),
            |e| e.action_id = Some("other".into()),
            |e| e.event_type = "action.executed".into(),
            |e| e.data = json!({"n": 2, "x": 1.5, "extra": true}),
            |e| e.data = json!(null),
        ];
        for mutate in mutations {
            let mut events = chain(3);
            let expected_head = head(&events);
            mutate(&mut events[1].event);
            let err = verify(&events, expected_head).unwrap_err();
            assert_eq!(err.seq, 2);
            assert!(matches!(err.kind, ChainErrorKind::HashMismatch { .. }));
        }
    }

    #[test]
    fn modified_stored_hash_is_caught() {
        let mut events = chain(3);
        let expected_head = head(&events);
        events[2].hash = [7; 32];
        let err = verify(&events, expected_head).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(matches!(err.kind, ChainErrorKind::HashMismatch { .. }));
    }

    #[test]
    fn deleted_middle_event_is_a_gap() {
        let mut events = chain(5);
        let expected_head = head(&events);
        events.remove(2);
        let err = verify(&events, expected_head).unwrap_err();
        assert_eq!(err.seq, 3);
        assert_eq!(err.kind, ChainErrorKind::Missing { found: 4 });
        assert!(err.to_string().contains("deleted"), "{err}");
    }

    #[test]
    fn deleted_first_event_is_a_gap_at_one() {
        let mut events = chain(3);
        let expected_head = head(&events);
        events.remove(0);
        let err = verify(&events, expected_head).unwrap_err();
        assert_eq!(err.seq, 1);
        assert_eq!(err.kind, ChainErrorKind::Missing { found: 2 });
    }

    #[test]
    fn deleted_last_events_are_caught_by_the_head() {
        let mut events = chain(5);
        let expected_head = head(&events);
        events.truncate(3);
        let err = verify(&events, expected_head).unwrap_err();
        assert_eq!(err.seq, 4);
        assert_eq!(
            err.kind,
            ChainErrorKind::Truncated {
                last_seq: 3,
                head_seq: 5
            }
        );
    }

    #[test]
    fn all_events_deleted_is_caught_by_the_head() {
        let events = chain(2);
        let err = verify(&[], head(&events)).unwrap_err();
        assert_eq!(err.seq, 1);
        assert!(matches!(err.kind, ChainErrorKind::Truncated { .. }));
    }

    #[test]
    fn events_without_a_head_are_caught() {
        let events = chain(2);
        let err = verify(&events, None).unwrap_err();
        assert_eq!(err.kind, ChainErrorKind::HeadMissing { last_seq: 2 });
    }

    #[test]
    fn events_after_the_head_are_caught() {
        let events = chain(4);
        let err = verify(&events, Some((2, events[1].hash))).unwrap_err();
        assert_eq!(err.seq, 3);
        assert_eq!(err.kind, ChainErrorKind::BeyondHead { head_seq: 2 });
    }

    #[test]
    fn head_hash_mismatch_is_caught() {
        let events = chain(3);
        let err = verify(&events, Some((3, [9; 32]))).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(matches!(err.kind, ChainErrorKind::HeadHashMismatch { .. }));
    }

    #[test]
    fn forged_insertion_with_renumbering_is_caught() {
        // The forger inserts a correctly hashed event at seq 3 and renumbers the rest,
        // without being able to rehash the events after it.
        let original = chain(5);
        let expected_head = head(&original);
        let forged =
            ChainedEvent::link(event("o1", 3, json!({"forged": true})), original[1].hash).unwrap();
        let mut events = original[..2].to_vec();
        events.push(forged);
        for e in &original[2..] {
            let mut moved = e.clone();
            moved.event.seq += 1;
            events.push(moved);
        }
        let err = verify(&events, expected_head).unwrap_err();
        assert_eq!(err.seq, 4);
        assert!(matches!(err.kind, ChainErrorKind::PrevHashMismatch { .. }));
    }

    #[test]
    fn forged_insertion_without_rehash_is_caught() {
        let original = chain(3);
        let mut events = original.clone();
        let mut forged = original[1].clone();
        forged.event.seq = 3;
        forged.event.data = json!({"forged": true});
        forged.prev_hash = original[1].hash;
        events.insert(2, forged);
        let err = verify(&events, head(&original)).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(matches!(err.kind, ChainErrorKind::HashMismatch { .. }));
    }

    #[test]
    fn swapped_seq_numbers_are_caught() {
        // Swapping the seq of events 2 and 4 keeps the numbering gap-free.
        let original = chain(5);
        let mut events = original.clone();
        events[1].event.seq = 4;
        events[3].event.seq = 2;
        events.sort_by_key(|e| e.event.seq);
        let err = verify(&events, head(&original)).unwrap_err();
        assert_eq!(err.seq, 2);
        assert!(matches!(err.kind, ChainErrorKind::PrevHashMismatch { .. }));
        assert!(err.to_string().contains("reordered"), "{err}");
    }

    #[test]
    fn out_of_order_delivery_is_a_repeat() {
        let original = chain(3);
        let events = vec![
            original[0].clone(),
            original[1].clone(),
            original[1].clone(),
            original[2].clone(),
        ];
        let err = verify(&events, head(&original)).unwrap_err();
        assert_eq!(err.seq, 3);
        assert_eq!(err.kind, ChainErrorKind::Repeated { found: 2 });
    }

    #[test]
    fn first_event_must_start_from_genesis() {
        let mut events = chain(2);
        let expected_head = head(&events);
        events[0].prev_hash = [1; 32];
        let err = verify(&events, expected_head).unwrap_err();
        assert_eq!(err.seq, 1);
        assert_eq!(
            err.kind,
            ChainErrorKind::PrevHashMismatch {
                expected: GENESIS_HASH,
                found: [1; 32]
            }
        );
    }

    #[test]
    fn event_of_another_org_is_caught() {
        let mut prev = GENESIS_HASH;
        let mut events = Vec::new();
        for (seq, org) in [(1, "o1"), (2, "o2")] {
            let linked = ChainedEvent::link(event(org, seq, json!({})), prev).unwrap();
            prev = linked.hash;
            events.push(linked);
        }
        let err = verify(&events, head(&events)).unwrap_err();
        assert_eq!(err.seq, 2);
        assert_eq!(
            err.kind,
            ChainErrorKind::WrongOrg {
                found: "o2".to_string()
            }
        );
    }

    #[test]
    fn malformed_rows_are_reported_at_their_seq() {
        let events = chain(3);
        let mut verifier = ChainVerifier::new("o1");
        verifier.push(&events[0]).unwrap();
        let err = verifier.push_malformed(2, "data is not json");
        assert_eq!(err.seq, 2);
        assert!(err.to_string().contains("data is not json"), "{err}");
        // A malformed row after a gap reports the gap.
        let mut verifier = ChainVerifier::new("o1");
        verifier.push(&events[0]).unwrap();
        let err = verifier.push_malformed(3, "bad hex");
        assert_eq!(err.seq, 2);
        assert_eq!(err.kind, ChainErrorKind::Missing { found: 3 });
    }

    #[test]
    fn the_first_error_is_sticky() {
        let mut events = chain(4);
        events[1].event.data = json!("tampered");
        let mut verifier = ChainVerifier::new("o1");
        verifier.push(&events[0]).unwrap();
        let first = verifier.push(&events[1]).unwrap_err();
        // A valid later event does not clear the error.
        assert_eq!(verifier.push(&events[2]).unwrap_err(), first);
        assert_eq!(verifier.finish(head(&events)).unwrap_err(), first);
    }

    #[test]
    fn event_type_names() {
        use event_types::*;
        assert_eq!(
            [ACTION_DECIDED, ORG_CREATED, USER_CREATED, AUTH_FAILED],
            [
                "action.decided",
                "org.created",
                "user.created",
                "auth.failed"
            ]
        );
        // Every constant is listed once, and no retired type is written again.
        assert_eq!(ALL.len(), NAMES.len());
        let unique: std::collections::BTreeSet<&str> = ALL.iter().copied().collect();
        assert_eq!(unique.len(), ALL.len(), "{ALL:?}");
        for (name, value) in NAMES {
            assert!(ALL.contains(value), "{name}");
            assert!(!RETIRED.contains(value), "{name}");
        }
    }
}
