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
    /// The master key that wraps the data keys (docs/encryption.md); `None`: nothing new is
    /// sealed, and sealed values cannot be read.
    pub master_key: Option<crate::encryption::MasterKey>,
    /// How long loaded data keys are used before they are read again, in seconds (another
    /// node may rotate or destroy one). Default 60.
    pub key_cache_seconds: u64,
}

impl Default for StoreOptions {
    /// `synchronous=FULL`, 5000 ms busy timeout, read-write.
    fn default() -> StoreOptions {
        StoreOptions {
            synchronous_full: true,
            busy_timeout_ms: 5000,
            read_only: false,
            master_key: None,
            key_cache_seconds: 60,
        }
    }
}

/// How to open a PostgreSQL store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Most pooled connections. Default 16.
    pub max_connections: u32,
    /// Connect without migrating or writing (offline verification).
    pub read_only: bool,
    /// As [`StoreOptions::master_key`].
    pub master_key: Option<crate::encryption::MasterKey>,
    /// As [`StoreOptions::key_cache_seconds`].
    pub key_cache_seconds: u64,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            max_connections: 16,
            read_only: false,
            master_key: None,
            key_cache_seconds: 60,
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
    /// Base64 (standard alphabet, padded) of the agent's raw 32-byte Ed25519 public key;
    /// when set, the agent's requests must be signed (RFC 9421).
    pub public_key: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// Counts of an organisation's objects, for the dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OrgStats {
    /// Registered agents.
    pub agents: u64,
    /// Current users.
    pub users: u64,
    /// Actions by decision (`allow`, `require_approval`, `deny`).
    pub actions_by_decision: std::collections::BTreeMap<String, u64>,
    /// Actions by status (`allowed`, `executed`, `denied`, `pending_approval`, ...).
    pub actions_by_status: std::collections::BTreeMap<String, u64>,
}

/// A person of an organisation, with one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// UUID string.
    pub id: String,
    /// The owning organisation.
    pub org_id: String,
    /// Unique among the organisation's current users.
    pub name: String,
    /// `admin`, `approver`, `auditor` or `viewer` (see [`aaf_core::identity::Role`]).
    pub role: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// An agent key as listed: everything but the secret and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKey {
    /// UUID string.
    pub id: String,
    /// The owning organisation.
    pub org_id: String,
    /// The agent.
    pub agent_id: String,
    /// The first characters of the key (`aaf_ak_` and 8 more), to tell keys apart.
    pub prefix: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When the key stops working (RFC 3339 UTC), if ever.
    pub expires_at: Option<String>,
    /// When the key was revoked (RFC 3339 UTC), if it was.
    pub revoked_at: Option<String>,
    /// When the key last authenticated a request (RFC 3339 UTC, to within the key cache's
    /// lifetime, about a second).
    pub last_used_at: Option<String>,
    /// The tools the key may submit; `None` = every tool.
    pub tools: Option<Vec<String>>,
    /// Who created the key (a user id), when known.
    pub created_by: Option<String>,
}

/// The owner of a live (not revoked) personal access token: a current user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPrincipal {
    /// The token's id.
    pub token_id: String,
    /// The user the token belongs to.
    pub user_id: String,
    /// The organisation the token acts for.
    pub org: Org,
    /// The user's role, e.g. `"admin"`.
    pub role: String,
    /// The user's name.
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
    /// The tools the key may submit; `None` = every tool.
    pub tools: Option<Vec<String>>,
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
    /// Where the action is in its life (stored as its name, e.g. `pending_approval`).
    pub status: aaf_core::action::ActionStatus,
    /// Per-policy outcomes (JSON).
    pub policies: Value,
    /// The execution result (JSON), once there is one.
    pub result: Option<Value>,
    /// For an action that needs approval: lowercase hex SHA-256 of the RFC 8785 canonical
    /// JSON of (org, agent, tool, operation, params, context)
    /// ([`aaf_core::approval::action_digest`]); `None` otherwise.
    pub digest: Option<String>,
    /// For an action that needs approval: its approval deadline (RFC 3339 UTC).
    pub expires_at: Option<String>,
    /// For an action that needs approval: the distinct approvals it needs (at least 1).
    pub approvals_required: Option<u32>,
    /// How many times the action was changed since it was inserted (0 on insert, whatever
    /// the record says): the value an [`ActionWrite::Update`] compares and sets.
    pub version: i64,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// What AAF found in the action besides the decision, as one JSON object:
    /// `{"detections": [{detector, kind, path, confidence}]}` (issue 17); `None` when it
    /// found nothing or the action was recorded before signals were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signals: Option<Value>,
    /// Why the sealed columns (`params`, `context`, `result`, `signals`) read as `null`: the
    /// action's data key, or its organisation's, was destroyed (crypto-shredding,
    /// docs/encryption.md). `None` when everything is readable. Ignored on insert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

/// One approver's answer to a pending action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalVote {
    /// The organisation.
    pub org_id: String,
    /// The action.
    pub action_id: String,
    /// The approver's user id.
    pub user_id: String,
    /// The approver's name when they answered.
    pub user_name: String,
    /// `approve` or `reject`.
    pub vote: String,
    /// The approver's comment (may be empty).
    pub comment: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// An organisation's approval settings (`None` fields: the server's defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSettings {
    /// The organisation.
    pub org_id: String,
    /// Whether the user an action was requested for (`context.user_id`) is barred from
    /// approving it.
    pub four_eyes: bool,
    /// The approval deadline of this organisation's actions, in seconds, unless a policy
    /// asks for a shorter one; `None` = the server's `approvals.default_timeout_seconds`.
    pub approval_timeout_seconds: Option<u64>,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// The organisation's outbound detection rules laid over the server's
    /// (`{"<detector, kind or default>": "record" | "mask" | "block"}`); `None`: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_detection: Option<Value>,
}

/// A webhook of an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// UUID string.
    pub id: String,
    /// The organisation.
    pub org_id: String,
    /// Where deliveries are POSTed (checked by the SSRF guard when created and when sent).
    pub url: String,
    /// The event types it receives, e.g. `approval.requested`.
    pub events: Vec<String>,
    /// `json` (signed with HMAC-SHA256) or `slack` (an incoming-webhook message).
    pub format: String,
    /// The HMAC-SHA256 key of the `json` format's signature.
    pub secret: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The user who created it.
    pub created_by: Option<String>,
    /// When it was disabled (RFC 3339 UTC); disabled webhooks receive nothing.
    pub disabled_at: Option<String>,
}

/// When and by whom a rate limit was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitMeta {
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The user who created it.
    pub created_by: Option<String>,
}

/// An agent's recent actions, as policies see them (`input.usage`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUsage {
    /// Its actions (any decision) in the last minute.
    pub actions_last_minute: u64,
    /// Its actions in the last hour.
    pub actions_last_hour: u64,
    /// Its denied actions in the last 5 minutes.
    pub denials_last_5_minutes: u64,
    /// Per tool: `(last minute, last hour)`.
    pub tools: std::collections::BTreeMap<String, (u64, u64)>,
}

/// One budget's share of a reservation ([`crate::Store::budget_reserve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The budget.
    pub budget_id: String,
    /// Its window now (`2026-12-05`, `2026-12`, `total`).
    pub window_key: String,
    /// `tokens` or a currency code.
    pub unit: String,
    /// What the action reserves (tokens or micro-units).
    pub amount: u64,
    /// The budget's limit.
    pub limit: u64,
}

/// What an isolated agent had done recently, kept for forensics
/// (`POST /v1/agents/{id}/isolate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSnapshot {
    /// UUIDv7 string.
    pub id: String,
    /// The organisation.
    pub org_id: String,
    /// The agent.
    pub agent_id: String,
    /// The kill switch the isolation engaged.
    pub kill_switch_id: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The user who isolated the agent.
    pub created_by: Option<String>,
    /// Lowercase hex SHA-256 of the RFC 8785 form of `snapshot` (also in the
    /// `agent.isolated` audit event, which binds the snapshot to the chain).
    pub sha256: String,
    /// The snapshot: `{agent, keys, actions, audit_events}` as the server wrote it.
    pub snapshot: Value,
}

/// A behavioural profile of one agent, learned from its own actions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentProfileRecord {
    /// The organisation.
    pub org_id: String,
    /// The agent.
    pub agent_id: String,
    /// The profile, as JSON (its shape is aaf_core's business, not the store's).
    pub profile: Value,
    /// `(created_at, id)` of the last action folded into the profile; `None`: none yet.
    pub folded_until: Option<(String, String)>,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// An upstream MCP server an organisation registered over the API (`/v1/mcp/servers`).
/// Deleted servers are kept in the database but never returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServer {
    /// Its id (`mcps_` + random, made by the caller).
    pub id: String,
    /// The organisation.
    pub org_id: String,
    /// 1 to 64 of a-z, 0-9, - (checked by the caller); unique among the organisation's live
    /// servers.
    pub name: String,
    /// The transport and its settings, as the API shows them, e.g.
    /// `{"type":"stdio","command":"npx","args":[..],"env":{..},"cwd":null}` or
    /// `{"type":"http","url":"https://..","headers":{"Authorization":"Bearer ${secret:x}"}}`;
    /// secrets appear only as `${secret:NAME}` references. Stored as JSON text, as given.
    pub transport: Value,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The user who registered it, when known.
    pub created_by: Option<String>,
    /// RFC 3339 UTC of the last change (the creation at first).
    pub updated_at: String,
}

/// The pinned definition of one upstream MCP tool (rug-pull protection): the definition
/// first seen (or last accepted by an admin), and a changed one seen since, waiting for an
/// admin to accept it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolPin {
    /// The organisation.
    pub org_id: String,
    /// The upstream server's name (a server of the configuration or of the organisation).
    pub server: String,
    /// The tool's name on the upstream server.
    pub tool: String,
    /// Lowercase hex SHA-256 of the accepted definition (computed by the caller).
    pub hash: String,
    /// The accepted definition (name, description, input schema, ...) as JSON.
    pub definition: Value,
    /// Hex SHA-256 of a changed definition seen since, waiting for an admin to accept it.
    pub pending_hash: Option<String>,
    /// That changed definition (set exactly when `pending_hash` is).
    pub pending_definition: Option<Value>,
    /// RFC 3339 UTC: when the tool was first seen.
    pub first_seen_at: String,
    /// RFC 3339 UTC: when the accepted definition was accepted (first sight, or an admin's
    /// acceptance of a change).
    pub accepted_at: String,
    /// The admin who accepted the definition; `None` for the first sight.
    pub accepted_by: Option<String>,
    /// RFC 3339 UTC: when the pending definition was seen, if there is one (kept after it
    /// is accepted).
    pub changed_at: Option<String>,
}

/// One event to deliver to one webhook, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// UUID string.
    pub id: String,
    /// The organisation.
    pub org_id: String,
    /// The webhook.
    pub webhook_id: String,
    /// The event type, e.g. `approval.expired`.
    pub event: String,
    /// The action it is about.
    pub action_id: Option<String>,
    /// The body to send (JSON).
    pub payload: Value,
    /// `pending`, `delivered` or `failed` (no attempts left).
    pub status: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (RFC 3339 UTC); while an attempt runs, when it may be
    /// taken over (its node stopped).
    pub next_attempt_at: String,
    /// The HTTP status of the last attempt, if it got an answer.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// Changes since insertion (0 on insert): what [`DeliveryUpdate`] compares and sets.
    pub version: i64,
}

/// A change of a delivery, made only if its version is still `expected_version`
/// ([`crate::StoreError::Conflict`] otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryUpdate {
    /// The organisation.
    pub org_id: String,
    /// The delivery.
    pub id: String,
    /// The version read.
    pub expected_version: i64,
    /// New status.
    pub status: String,
    /// New attempt count.
    pub attempts: u32,
    /// New due time (RFC 3339 UTC).
    pub next_attempt_at: String,
    /// HTTP status of the attempt, if any.
    pub last_status_code: Option<u16>,
    /// Error of the attempt, if any.
    pub last_error: Option<String>,
    /// RFC 3339 UTC.
    pub updated_at: String,
}

/// Which actions [`crate::Store::list_actions`] returns (all conditions must hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionQuery {
    /// Only actions with this status.
    pub status: aaf_core::action::ActionStatus,
    /// Only actions with this decision (`allow`, `require_approval`, `deny`).
    pub decision: String,
    /// Only actions whose approval deadline is at or before this time (RFC 3339 UTC).
    pub expires_at_or_before: Option<String>,
    /// Only actions last changed before this time (RFC 3339 UTC).
    pub updated_before: Option<String>,
    /// At most this many, oldest first.
    pub limit: u32,
}

/// The action part of a [`WriteUnit`].
// Inserts are the common case, so boxing the record would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ActionWrite {
    /// Insert a new action. An existing id is a [`crate::StoreError::Conflict`].
    Insert(ActionRecord),
    /// Set the status, result and `updated_at` of an existing action (and its reason, when
    /// given), adding 1 to its version. A missing action is a
    /// [`crate::StoreError::NotFound`]; with `expected_version`, an action whose version is
    /// another (someone changed it since it was read) is a [`crate::StoreError::Stale`]
    /// and nothing of the unit is written: a compare-and-set.
    Update {
        /// The organisation the action belongs to.
        org_id: String,
        /// The action id.
        id: String,
        /// New status.
        status: aaf_core::action::ActionStatus,
        /// New result (`None` stores SQL NULL).
        result: Option<Value>,
        /// New reason; `None` keeps the reason.
        reason: Option<String>,
        /// New parameters and context together (e.g. redacted once nothing will run the
        /// action any more); `None` keeps them. Together because they are sealed together
        /// (docs/encryption.md).
        inputs: Option<ActionInputs>,
        /// Only if the action's version is still this one.
        expected_version: Option<i64>,
        /// RFC 3339 UTC.
        updated_at: String,
    },
}

/// An action's parameters and context, written together by [`ActionWrite::Update`].
#[derive(Debug, Clone, PartialEq)]
pub struct ActionInputs {
    /// The parameters (a JSON object).
    pub params: Value,
    /// The context (a JSON object).
    pub context: Value,
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

/// A change to the identity tables, made inside a [`WriteUnit`]'s transaction.
///
/// Each mutation is checked in the database: a mutation that finds nothing to change fails
/// its unit with [`crate::StoreError::NotFound`] (so another organisation's id never
/// changes anything), a duplicate with [`crate::StoreError::Conflict`].
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Insert an organisation.
    InsertOrg(Org),
    /// Insert a user.
    InsertUser(User),
    /// Change a current user's role. Refused with [`crate::StoreError::Conflict`] when it
    /// would leave the organisation without an admin.
    SetUserRole {
        /// The organisation.
        org_id: String,
        /// The user.
        user_id: String,
        /// The new role.
        role: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Delete a current user (kept, marked deleted) and revoke all their tokens. Refused with
    /// [`crate::StoreError::Conflict`] for the organisation's last admin.
    DeleteUser {
        /// The organisation.
        org_id: String,
        /// The user.
        user_id: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Insert a personal access token of a user (only its hash).
    InsertToken {
        /// Token id.
        id: String,
        /// The organisation.
        org_id: String,
        /// The user it belongs to.
        user_id: String,
        /// A label.
        name: String,
        /// Hex SHA-256 of the token.
        token_hash: String,
        /// The visible prefix.
        prefix: String,
        /// RFC 3339 UTC.
        created_at: String,
    },
    /// Insert an agent.
    InsertAgent(Agent),
    /// Insert an agent key (only its hash).
    InsertAgentKey {
        /// The key (without secret).
        key: AgentKey,
        /// Hex SHA-256 of the key.
        key_hash: String,
    },
    /// Make a live key of the agent expire at `expires_at` unless it already expires sooner
    /// (rotation's grace period).
    ShortenAgentKey {
        /// The organisation.
        org_id: String,
        /// The agent.
        agent_id: String,
        /// The key.
        key_id: String,
        /// RFC 3339 UTC.
        expires_at: String,
    },
    /// Revoke a key of the agent (already revoked: [`crate::StoreError::Conflict`]).
    RevokeAgentKey {
        /// The organisation.
        org_id: String,
        /// The agent.
        agent_id: String,
        /// The key.
        key_id: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Record that a signature nonce was used; a nonce the agent used before (and not yet
    /// purged) is a [`crate::StoreError::Conflict`].
    UseNonce {
        /// The organisation.
        org_id: String,
        /// The agent.
        agent_id: String,
        /// The nonce as sent.
        nonce: String,
        /// When the nonce may be forgotten (RFC 3339 UTC): after the signature window.
        expires_at: String,
    },
    /// Record an approver's answer to a pending action; a second answer of the same user is
    /// a [`crate::StoreError::Conflict`], an action of another organisation
    /// [`crate::StoreError::NotFound`].
    InsertApprovalVote(ApprovalVote),
    /// Create or replace an organisation's approval settings.
    SetOrgSettings(OrgSettings),
    /// Insert a webhook.
    InsertWebhook(Webhook),
    /// Disable a live webhook of the organisation ([`crate::StoreError::NotFound`] when
    /// there is none with this id).
    DisableWebhook {
        /// The organisation.
        org_id: String,
        /// The webhook.
        id: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Queue a delivery (written with the event it announces).
    InsertDelivery(WebhookDelivery),
    /// Write a new version of a policy object: `version.version == 1` creates the object (a
    /// live object of the same kind and name is a [`crate::StoreError::Conflict`]), a later
    /// version updates it if its latest version is still `version.version - 1` and it is
    /// live (else [`crate::StoreError::Conflict`]).
    PutPolicyObject {
        /// The new version.
        version: PolicyObjectVersion,
        /// The object's name (for policies the name users gave; else the key).
        name: String,
        /// The version in force after the write (the new one, or the one in force before).
        active_version: i64,
    },
    /// Put an existing version of a live object in force (rollback);
    /// [`crate::StoreError::NotFound`] when there is no such live object or version.
    ActivatePolicyObjectVersion {
        /// The organisation.
        org_id: String,
        /// `policy`, `data` or `pack`.
        kind: String,
        /// The object's key.
        key: String,
        /// The version to put in force.
        version: i64,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Disable a live object for good (its versions are kept);
    /// [`crate::StoreError::NotFound`] when there is no such live object.
    DisablePolicyObject {
        /// The organisation.
        org_id: String,
        /// `policy`, `data` or `pack`.
        kind: String,
        /// The object's key.
        key: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Engage a kill switch (and advance the organisation's kill-switch generation, so
    /// that every node reloads its switches; PostgreSQL also announces it by `NOTIFY`).
    InsertKillSwitch(aaf_core::kill_switch::KillSwitch),
    /// Release a kill switch in force; [`crate::StoreError::NotFound`] when the
    /// organisation has no unreleased switch with this id. Advances the generation too.
    ReleaseKillSwitch {
        /// The organisation.
        org_id: String,
        /// The switch.
        id: String,
        /// The user who released it.
        by: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Create a rate limit (and advance the organisation's runtime generation).
    InsertRateLimit(aaf_core::rate_limit::RateLimit, RateLimitMeta),
    /// Delete a live rate limit; [`crate::StoreError::NotFound`] when the organisation has
    /// none with this id. Advances the runtime generation.
    DeleteRateLimit {
        /// The organisation.
        org_id: String,
        /// The limit.
        id: String,
        /// The user who deleted it.
        by: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Create a budget (and advance the organisation's runtime generation).
    InsertBudget {
        /// The budget.
        budget: aaf_core::budget::Budget,
        /// The user who created it.
        by: Option<String>,
    },
    /// Change a live budget's limit; [`crate::StoreError::NotFound`] when the organisation
    /// has none with this id. Advances the runtime generation.
    UpdateBudget {
        /// The organisation.
        org_id: String,
        /// The budget.
        id: String,
        /// The new limit.
        limit: u64,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Delete a live budget (kept, marked deleted); [`crate::StoreError::NotFound`] when
    /// there is none with this id. Advances the runtime generation.
    DeleteBudget {
        /// The organisation.
        org_id: String,
        /// The budget.
        id: String,
        /// The user who deleted it.
        by: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Settle what an action reserved of its budgets with what it used: each unsettled
    /// charge becomes `tokens` (token budgets) or `cost` (currency budgets), and its window's
    /// spend moves by the difference. `None` keeps the reservation as the charge (usage
    /// unknown). An action without unsettled charges is left alone.
    SettleBudget {
        /// The organisation.
        org_id: String,
        /// The action.
        action_id: String,
        /// Tokens used.
        tokens: Option<u64>,
        /// Cost, in micro-units of the configured currency.
        cost: Option<u64>,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Set the organisation's circuit breakers (JSON) and advance its runtime generation.
    SetCircuitBreakers {
        /// The organisation.
        org_id: String,
        /// The configuration, as JSON.
        config: serde_json::Value,
        /// The user who set it.
        by: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Revoke every live key of an agent (none is not an error); every node drops its
    /// cached key lookups (PostgreSQL `NOTIFY`).
    RevokeAllAgentKeys {
        /// The organisation.
        org_id: String,
        /// The agent.
        agent_id: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Keep a snapshot of an isolated agent.
    InsertAgentSnapshot(AgentSnapshot),
    /// Advance the organisation's policy generation from `expected` (0: none yet) to
    /// `expected + 1`; [`crate::StoreError::Conflict`] when another change came first.
    BumpPolicyGeneration {
        /// The organisation.
        org_id: String,
        /// The generation the change was validated against.
        expected: i64,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Record what a policy set revision was built from (kept if already recorded).
    InsertPolicyRevision(PolicyRevisionRecord),
    /// Record a shadow policy's would-be outcome of an action.
    InsertShadowResult(ShadowResult),
    /// Register an upstream MCP server of an organisation (and advance its runtime
    /// generation, so that every node reloads its servers). A live server of the same name
    /// in the organisation (or an existing id) is a [`crate::StoreError::Conflict`].
    InsertMcpServer(McpServer),
    /// Replace a live MCP server's transport; [`crate::StoreError::NotFound`] when the
    /// organisation has no live server of this name. Advances the runtime generation.
    UpdateMcpServer {
        /// The organisation.
        org_id: String,
        /// The server's name.
        name: String,
        /// The new transport and settings (see [`McpServer::transport`]).
        transport: Value,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Delete a live MCP server (kept, marked deleted; its name is free again);
    /// [`crate::StoreError::NotFound`] when the organisation has no live server of this
    /// name. Advances the runtime generation. Its tools' pins are kept.
    DeleteMcpServer {
        /// The organisation.
        org_id: String,
        /// The server's name.
        name: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Pin a tool's definition on first sight: inserts the pin unless the (organisation,
    /// server, tool) has one already, in which case nothing changes (the first sight wins;
    /// concurrent first sights on several nodes are fine).
    PinMcpTool(McpToolPin),
    /// Record a changed definition of a pinned tool, waiting for an admin: when the pin's
    /// accepted hash differs from `hash` and its pending hash is not `hash` already, sets
    /// its pending hash and definition and `changed_at`; otherwise changes nothing (no
    /// error). [`crate::StoreError::NotFound`] when the tool has no pin.
    FlagMcpToolChange {
        /// The organisation.
        org_id: String,
        /// The server's name.
        server: String,
        /// The tool.
        tool: String,
        /// Hex SHA-256 of the definition now seen.
        hash: String,
        /// The definition now seen.
        definition: Value,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Raise an alert (`crate::alerts`): insert it, open. When the organisation has an
    /// unresolved alert of the same rule and subject already (raised concurrently, e.g. by
    /// another node), [`crate::StoreError::Stale`]: bump that one instead.
    InsertAlert(crate::alerts::Alert),
    /// Move an alert from `from` to `to` (`acknowledged` sets `acknowledged_at`/`_by`,
    /// `resolved` sets `resolved_at`/`_by`, to `now` and `by`): a compare-and-set on its
    /// status. [`crate::StoreError::NotFound`] when the organisation has no such alert,
    /// [`crate::StoreError::Stale`] when its status is no longer `from`,
    /// [`crate::StoreError::Invalid`] for a `to` other than those two.
    AlertTransition {
        /// The organisation.
        org_id: String,
        /// The alert.
        id: String,
        /// The status it was read in.
        from: crate::alerts::AlertStatus,
        /// `acknowledged` or `resolved`.
        to: crate::alerts::AlertStatus,
        /// The user.
        by: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Write an agent's behavioural profile, as a compare-and-set on its watermark: `record`
    /// is written only when the stored profile's `folded_until` is still `expected`
    /// (`None`: no profile yet, or one that folded nothing). Otherwise nothing changes and
    /// it is not an error (another node folded first; read the profile again). A missing
    /// profile is written whatever `expected` (profiles are never deleted, so one read with
    /// a watermark is always found). An unknown organisation is a
    /// [`crate::StoreError::NotFound`].
    PutAgentProfile {
        /// The profile to write (its organisation is the mutation's).
        record: AgentProfileRecord,
        /// The `folded_until` of the profile the new one was computed from.
        expected: Option<(String, String)>,
    },
    /// Extend an audit chain's Merkle tree (docs/audit.md, "Transparency log"): store
    /// `hashes` (`(stored index, hash)`, from [`aaf_core::evidence::merkle::hashes_to_store`])
    /// unless an index is stored already, and record that the tree has `size` leaves ending
    /// at the event whose chain hash is `last_hash`, unless it is recorded further. Idempotent:
    /// nodes building the same tree at once write the same rows.
    ExtendAuditTree {
        /// The chain (organisation id or `system`).
        org_id: String,
        /// The tree's size after these hashes.
        size: u64,
        /// The chain hash of the event at seq `size`.
        last_hash: [u8; 32],
        /// The stored hashes to add.
        hashes: Vec<(u64, [u8; 32])>,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Record that decision-log sink `sink` exported `org_id`'s `action.decided` events up to
    /// `seq`, as a compare-and-set: only when the stored cursor is still `expected` (`None`:
    /// no cursor yet). Otherwise nothing changes and it is not an error (another node moved
    /// it; read it again).
    SetDecisionLogCursor {
        /// The sink's id (the SHA-256 of its configuration).
        sink: String,
        /// The chain.
        org_id: String,
        /// The last seq exported.
        seq: u64,
        /// The cursor this export started from.
        expected: Option<u64>,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Store an organisation's first data key (docs/encryption.md); one that has an active
    /// key already is a [`crate::StoreError::Conflict`] (another node made it: read it).
    InsertDataKey(crate::encryption::DataKeyRow),
    /// Rotate: retire the organisation's active data key and store `new` as the active one.
    /// What the old key sealed stays readable.
    RotateDataKey {
        /// The new key ([`crate::Store::new_data_key`]).
        new: crate::encryption::DataKeyRow,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Crypto-shred an organisation: destroy every data key of the organisation but `keep`
    /// (the active key after a rotation), so that nothing sealed before can be read.
    DestroyDataKeys {
        /// The organisation.
        org_id: String,
        /// The key that stays (it sealed nothing of before).
        keep: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Crypto-shred an action: destroy its own key (its sealed `params`, `context`, `result`
    /// and `signals` can no longer be read) and remove the stored payloads of its audit
    /// events, recording `reason` in their place. The chain and every proof still verify.
    /// [`crate::StoreError::NotFound`] when the organisation has no such action,
    /// [`crate::StoreError::Conflict`] when it has no key (written in clear, or shredded).
    ShredAction {
        /// The organisation.
        org_id: String,
        /// The action.
        action_id: String,
        /// What its events' payloads are replaced by, e.g. `payload removed: the action was
        /// crypto-shredded on ... by ...`.
        reason: String,
        /// RFC 3339 UTC.
        now: String,
    },
    /// Set an organisation's retention rules and legal hold (docs/retention.md).
    SetRetention {
        /// The organisation.
        org_id: String,
        /// The rules (checked by the caller: [`aaf_core::retention::RetentionRules::validate`]).
        rules: aaf_core::retention::RetentionRules,
        /// RFC 3339 UTC.
        now: String,
        /// The admin.
        by: String,
    },
    /// Remove the stored payloads of these events of the organisation, recording `reason` in
    /// their place (retention). An event whose payload is already gone makes the unit fail
    /// with [`crate::StoreError::Conflict`] (another node applied retention first: read the
    /// candidates again).
    RemovePayloads {
        /// The organisation (chain).
        org_id: String,
        /// The events.
        seqs: Vec<u64>,
        /// E.g. `payload removed by retention on 2027-03-01 under rule errors (7 days)`.
        reason: String,
    },
    /// Store a signed checkpoint, unless one of its chain and tree size is stored (the same:
    /// Ed25519 signatures are deterministic).
    PutCheckpoint(crate::evidence::StoredCheckpoint),
    /// Accept a tool's pending definition: when its pending hash is `hash`, it becomes the
    /// accepted definition (`accepted_at` = `now`, `accepted_by` = `by`) and nothing is
    /// pending any more. [`crate::StoreError::NotFound`] when the tool has no pin,
    /// [`crate::StoreError::Conflict`] when nothing is pending or another hash is.
    AcceptMcpTool {
        /// The organisation.
        org_id: String,
        /// The server's name.
        server: String,
        /// The tool.
        tool: String,
        /// The pending hash the admin reviewed.
        hash: String,
        /// The admin who accepts it.
        by: String,
        /// RFC 3339 UTC.
        now: String,
    },
}

/// A versioned policy object of an organisation, with its version in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyObject {
    /// The organisation.
    pub org_id: String,
    /// `policy` (Rego), `data` (a JSON data document) or `pack` (a built-in pack's state).
    pub kind: String,
    /// A policy's id, a data document's path, a pack's name.
    pub key: String,
    /// A policy's name; the key for the other kinds.
    pub name: String,
    /// The version in force (1-based).
    pub active_version: i64,
    /// The newest version.
    pub latest_version: i64,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// Who created it (a user name or id).
    pub created_by: Option<String>,
    /// When it was disabled for good (RFC 3339 UTC).
    pub disabled_at: Option<String>,
    /// The active version's body: Rego, JSON text, or `enabled`/`disabled`.
    pub body: String,
    /// The active version's mode: `enforce` or `shadow`.
    pub mode: String,
    /// Hex SHA-256 of the active version's body.
    pub sha256: String,
}

/// One version of a policy object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyObjectVersion {
    /// The organisation.
    pub org_id: String,
    /// The object's kind.
    pub kind: String,
    /// The object's key.
    pub key: String,
    /// 1-based.
    pub version: i64,
    /// Rego, JSON text, or `enabled`/`disabled`.
    pub body: String,
    /// `enforce` or `shadow`.
    pub mode: String,
    /// Hex SHA-256 of the body.
    pub sha256: String,
    /// Who wrote it.
    pub author: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// What a policy set revision was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyRevisionRecord {
    /// The organisation.
    pub org_id: String,
    /// Hex SHA-256 (see `aaf_core::policy::PolicySet::revision`).
    pub revision: String,
    /// `{"sources": [{"path", "rego"}], "data": {...}}`.
    pub bundle: Value,
    /// RFC 3339 UTC of the first time it was recorded.
    pub created_at: String,
}

/// A shadow policy's would-be outcome of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowResult {
    /// The organisation.
    pub org_id: String,
    /// The shadow policy's key (id).
    pub policy_key: String,
    /// The version evaluated.
    pub policy_version: i64,
    /// The action.
    pub action_id: String,
    /// The verdict in force (`allow`, `deny`, `require_approval`).
    pub enforced: String,
    /// The verdict had the shadow policy been enforced.
    pub shadow: String,
    /// `enforced != shadow`.
    pub differs: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// How many actions had one pair of (enforced, shadow) verdicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowCount {
    /// The verdict in force.
    pub enforced: String,
    /// The would-be verdict.
    pub shadow: String,
    /// Number of actions.
    pub count: u64,
}

/// What one request writes: identity changes, an optional action row and the audit events
/// that describe them, all committed together (or not at all).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WriteUnit {
    /// Identity changes, applied first, in order.
    pub mutations: Vec<Mutation>,
    /// The action row to insert or update, written before the events.
    pub action: Option<ActionWrite>,
    /// Events appended, in this order, to their organisations' chains.
    pub events: Vec<NewEvent>,
}
