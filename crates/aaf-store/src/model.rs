//! The rows the store reads and writes.
//!
//! Timestamps are RFC 3339 UTC strings chosen by the caller; ids are UUID strings. JSON
//! columns are [`serde_json::Value`]s here and JSON text in the database.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The reserved chain id of events that belong to no authenticated organisation (e.g. a
/// request rejected before authentication). It has no `orgs` row.
pub const SYSTEM_CHAIN: &str = "system";

/// How to open a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// `true`: SQLite `synchronous=FULL`, every commit is durable against power loss.
    /// `false`: `synchronous=NORMAL`, which in WAL mode may lose the last commits on power
    /// loss (never on a process crash) but never corrupts the database.
    pub synchronous_full: bool,
    /// How long a statement waits for a lock held by another connection or process, in
    /// milliseconds, before failing with [`crate::StoreError::Unavailable`].
    pub busy_timeout_ms: u64,
    /// Open an existing database without writing anything (no migrations, writes fail
    /// with [`crate::StoreError::Invalid`]); for offline inspection and verification.
    pub read_only: bool,
}

impl Default for StoreOptions {
    /// `synchronous=FULL`, 5000 ms busy timeout, read-write.
    fn default() -> StoreOptions {
        StoreOptions {
            synchronous_full: true,
            busy_timeout_ms: 5000,
            read_only: false,
        }
    }
}

/// An organisation (tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    /// UUID string.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Plan, e.g. `"self_hosted"`.
    pub plan: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// An agent of an organisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// UUID string.
    pub id: String,
    /// The owning organisation.
    pub org_id: String,
    /// Unique within the organisation.
    pub name: String,
    /// Risk score in `0.0..=1.0`, as given at creation.
    pub risk_score: f64,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// The owner of a live (not revoked) human or admin API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPrincipal {
    /// The token's id.
    pub token_id: String,
    /// The organisation the token acts for.
    pub org: Org,
    /// The token's role, e.g. `"admin"`.
    pub role: String,
    /// The token's name.
    pub name: String,
}

/// The owner of an agent key, as found by its hash. Expiry and revocation are reported,
/// not enforced: the caller decides (and can say why it refuses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentPrincipal {
    /// The key's id.
    pub key_id: String,
    /// The agent the key belongs to.
    pub agent: Agent,
    /// The agent's organisation.
    pub org: Org,
    /// When the key expires (RFC 3339 UTC), if ever.
    pub expires_at: Option<String>,
    /// Whether the key was revoked.
    pub revoked: bool,
}

/// An action and its decision, as stored in `actions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// UUID string.
    pub id: String,
    /// The organisation.
    pub org_id: String,
    /// The agent that asked.
    pub agent_id: String,
    /// The tool, e.g. `http_proxy`.
    pub tool: String,
    /// The operation on the tool.
    pub operation: String,
    /// Tool parameters (JSON).
    pub params: Value,
    /// The agent's context (JSON).
    pub context: Value,
    /// The verdict: `allow`, `require_approval` or `deny`.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// The winning risk level, if any.
    pub risk_level: Option<String>,
    /// Lifecycle status, e.g. `pending`, `executed`, `failed`, `denied`.
    pub status: String,
    /// Per-policy outcomes (JSON).
    pub policies: Value,
    /// The execution result (JSON), once there is one.
    pub result: Option<Value>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// The action part of a [`WriteUnit`].
// Inserts are the common case, so boxing the record would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ActionWrite {
    /// Insert a new action. An existing id is a [`crate::StoreError::Conflict`].
    Insert(ActionRecord),
    /// Set the status, result and `updated_at` of an existing action. A missing action is a
    /// [`crate::StoreError::NotFound`].
    Update {
        /// The organisation the action belongs to.
        org_id: String,
        /// The action id.
        id: String,
        /// New status.
        status: String,
        /// New result (`None` stores SQL NULL).
        result: Option<Value>,
        /// RFC 3339 UTC.
        updated_at: String,
    },
}

/// An audit event to append; the store assigns `seq` and the hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The chain: the organisation id, or [`SYSTEM_CHAIN`].
    pub org_id: String,
    /// RFC 3339 UTC with microsecond precision.
    pub ts: String,
    /// The agent involved, if any.
    pub agent_id: Option<String>,
    /// The action involved, if any.
    pub action_id: Option<String>,
    /// One of [`aaf_core::audit::event_types`].
    pub event_type: String,
    /// Type-specific details; never secrets.
    pub data: Value,
}

/// What one request writes: an optional action row and the audit events that describe it,
/// all committed together (or not at all).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteUnit {
    /// The action row to insert or update, written before the events.
    pub action: Option<ActionWrite>,
    /// Events appended, in this order, to their organisations' chains.
    pub events: Vec<NewEvent>,
}
