//! AAF storage.
//!
//! One [`Store`] type in front of the database backends: SQLite ([`Store::open_sqlite`], the
//! embedded default) and PostgreSQL ([`Store::open_postgres`], for several nodes, with
//! tenants isolated by row-level security); the embedded migrations (`migrations/sqlite/`,
//! `migrations/postgres/`), the group-commit [`AuditWriter`] and offline audit chain
//! verification ([`Store::verify_audit`]).
//!
//! Tables (every tenant table has `org_id`; on PostgreSQL each has a forced row-level
//! security policy on it):
//! `orgs`, `users` (people, one role each), `api_tokens` (personal access tokens of users,
//! hashes only), `agents`, `agent_keys` (hashes only, optional tool scope and expiry),
//! `signature_nonces` (replay protection of signed agent requests), `actions`,
//! `audit_events` (one hash chain per org, primary key
//! `(org_id, seq)`, its `data` a `TEXT` column holding exactly the RFC 8785 canonical bytes
//! that are hashed, see `docs/audit.md`) and `audit_heads` (the last `seq` and hash of each
//! chain, so that deleting the newest events is detected).
//!
//! Architecture invariant: an audit event is appended only inside the same transaction as
//! the rows it describes, and its chain head is updated in that transaction too; a failed
//! transaction leaves nothing behind.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod encryption;
mod error;
pub mod evidence;
mod model;
mod postgres;
mod prepared;
mod rows;
mod sealing;
mod sql;
mod sqlite;
pub mod units;
mod writer;

use std::path::Path;

use aaf_core::audit::{ChainError, ChainSummary, ChainedEvent};

pub use alerts::{Alert, AlertQuery, AlertStatus};
pub use error::StoreError;
pub use model::{
    ActionInputs, ActionQuery, ActionRecord, ActionWrite, Agent, AgentKey, AgentPrincipal,
    AgentProfileRecord, AgentSnapshot, AgentUsage, ApprovalVote, DeliveryUpdate, McpServer,
    McpToolPin, Mutation, NewEvent, Org, OrgSettings, OrgStats, PgOptions, PolicyObject,
    PolicyObjectVersion, PolicyRevisionRecord, RateLimitMeta, Reservation, ShadowCount,
    ShadowResult, StoreOptions, TokenPrincipal, User, Webhook, WebhookDelivery, WriteUnit,
    SYSTEM_CHAIN,
};
pub use writer::{AuditWriter, CommitObserver};

/// The name of the SQLite database file inside the data directory.
pub const SQLITE_FILE_NAME: &str = sqlite::DB_FILE;

/// The store: cheap to clone, shareable between tasks.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// The database behind a [`Store`].
#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Opens the SQLite database `<data_dir>/aaf.db`.
    ///
    /// Read-write (the default): creates `data_dir` (mode 0700 on Unix, parents included)
    /// and the database if missing, and applies pending migrations. The connections use
    /// WAL journaling, `synchronous=FULL` (or `NORMAL` when `opts.synchronous_full` is
    /// false), foreign keys and a busy timeout of `opts.busy_timeout_ms` milliseconds.
    ///
    /// Read-only (`opts.read_only`): the file must exist; nothing is created, migrated or
    /// written, and write methods fail with [`StoreError::Invalid`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the directory or database cannot be created or
    /// opened, the file is missing in read-only mode, or a migration fails.
    pub async fn open_sqlite(data_dir: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::SqliteStore::open(data_dir, opts).await?),
        })
    }

    /// Connects to PostgreSQL at `url` (`postgres://user@host:port/database`).
    ///
    /// Unless `opts.read_only`, first applies the migrations (`migrations/postgres`) on a
    /// connection as the URL's user, who becomes the tables' owner and must be allowed to
    /// create the role `aaf_app` (or it must exist). Then opens a pool whose connections work
    /// as `aaf_app` (`SET ROLE` when the URL's user is a member, e.g. the owner), so that
    /// row-level security applies to everything the server does.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the database cannot be reached, a migration fails,
    /// or the role the pool works as is a superuser, may bypass row-level security or owns
    /// the tables (tenant isolation would not hold).
    pub async fn open_postgres(url: &str, opts: &PgOptions) -> Result<Store, StoreError> {
        Ok(Store {
            backend: Backend::Postgres(postgres::PgStore::open(url, opts).await?),
        })
    }

    /// The backend's name: `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes all connections (waiting for those in use to be returned). Later calls on
    /// any clone fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(p) => p.close().await,
        }
    }

    /// The organisation with this exact name, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn find_org_by_name(&self, name: &str) -> Result<Option<Org>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.find_org_by_name(name).await,
            Backend::Postgres(p) => p.find_org_by_name(name).await,
        }
    }

    /// Every organisation, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_orgs().await,
            Backend::Postgres(p) => p.list_orgs().await,
        }
    }

    /// The organisation with this id, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_org(&self, id: &str) -> Result<Option<Org>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_org(id).await,
            Backend::Postgres(p) => p.get_org(id).await,
        }
    }

    /// Creates an organisation, its first user (role `admin`, named `token_name`) and that
    /// user's token in one transaction (see [`units::new_org`]): events `org.created` and
    /// `user.created` open the new organisation's chain. `now` is RFC 3339 UTC.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the name (or the token hash) is taken;
    /// [`StoreError::Unavailable`]; [`StoreError::Invalid`] on a read-only store.
    pub async fn create_org_with_admin_token(
        &self,
        name: &str,
        plan: &str,
        token_name: &str,
        token_hash: &str,
        token_prefix: &str,
        now: &str,
    ) -> Result<Org, StoreError> {
        let (org, unit) = units::new_org(name, plan, token_name, token_hash, token_prefix, now);
        self.commit(&[unit]).await?;
        Ok(org)
    }

    /// The live token with this hash of a current user, with the user's role and
    /// organisation; `None` when unknown, revoked or the user was deleted.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn find_token(&self, token_hash: &str) -> Result<Option<TokenPrincipal>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.find_token(token_hash).await,
            Backend::Postgres(p) => p.find_token(token_hash).await,
        }
    }

    /// Creates an agent with its first key (no expiry, every tool, no public key) in one
    /// transaction, with event `agent.created` (see [`units::new_agent`]). `created_by` names
    /// the creating principal; `now` is RFC 3339 UTC. The server builds richer agents with
    /// [`units::new_agent`] and [`Store::commit`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the organisation already has an agent of this name (or
    /// the key hash exists); [`StoreError::NotFound`] when the organisation does not exist;
    /// [`StoreError::Invalid`] for a non-finite risk score or a read-only store;
    /// [`StoreError::Unavailable`].
    #[allow(clippy::too_many_arguments)]
    pub async fn create_agent(
        &self,
        org_id: &str,
        name: &str,
        risk_score: f64,
        key_hash: &str,
        key_prefix: &str,
        now: &str,
        created_by: &str,
    ) -> Result<Agent, StoreError> {
        let spec = units::KeySpec {
            key_hash: key_hash.to_string(),
            prefix: key_prefix.to_string(),
            expires_at: None,
            tools: None,
        };
        let (agent, _, unit) =
            units::new_agent(org_id, name, risk_score, None, &spec, created_by, now);
        self.commit(&[unit]).await?;
        Ok(agent)
    }

    /// The agent with this id in this organisation (`None` for another org's agent).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_agent(&self, org_id: &str, id: &str) -> Result<Option<Agent>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_agent(org_id, id).await,
            Backend::Postgres(p) => p.get_agent(org_id, id).await,
        }
    }

    /// The agent's keys, revoked and expired ones included, oldest first (never hashes).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_agent_keys(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Vec<AgentKey>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_agent_keys(org_id, agent_id).await,
            Backend::Postgres(p) => p.list_agent_keys(org_id, agent_id).await,
        }
    }

    /// Records that a key authenticated a request at `now` (RFC 3339 UTC). Not audited:
    /// callers call it at most about once a second per key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Invalid`] on a read-only store.
    pub async fn touch_agent_key(
        &self,
        org_id: &str,
        key_id: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.touch_agent_key(org_id, key_id, now).await,
            Backend::Postgres(p) => p.touch_agent_key(org_id, key_id, now).await,
        }
    }

    /// Forgets signature nonces whose `expires_at` is before `now`; returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Invalid`] on a read-only store.
    pub async fn purge_nonces(&self, now: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.purge_nonces(now).await,
            Backend::Postgres(p) => p.purge_nonces(now).await,
        }
    }

    /// Counts of the organisation's agents, users and actions.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn org_stats(&self, org_id: &str) -> Result<OrgStats, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.org_stats(org_id).await,
            Backend::Postgres(p) => p.org_stats(org_id).await,
        }
    }

    /// The organisation's current users, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_users(&self, org_id: &str) -> Result<Vec<User>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_users(org_id).await,
            Backend::Postgres(p) => p.list_users(org_id).await,
        }
    }

    /// A current user of this organisation (`None` for a deleted user or another org's).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_user(&self, org_id: &str, id: &str) -> Result<Option<User>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_user(org_id, id).await,
            Backend::Postgres(p) => p.get_user(org_id, id).await,
        }
    }

    /// The organisation's agents, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_agents(&self, org_id: &str) -> Result<Vec<Agent>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_agents(org_id).await,
            Backend::Postgres(p) => p.list_agents(org_id).await,
        }
    }

    /// The agent key with this hash, its agent and organisation; `None` when unknown.
    /// Revoked and expired keys are returned (see [`AgentPrincipal`]) so that the caller
    /// can refuse them with a precise reason.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn find_agent_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<AgentPrincipal>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.find_agent_key(key_hash).await,
            Backend::Postgres(p) => p.find_agent_key(key_hash).await,
        }
    }

    /// The action with this id in this organisation (`None` for another org's action).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_action(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<ActionRecord>, StoreError> {
        self.keyed(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.get_action(org_id, id).await,
                Backend::Postgres(p) => p.get_action(org_id, id).await,
            }
        })
        .await
    }

    /// The organisation's actions matching `query`, oldest first (pending approvals, due
    /// expiries, approved actions left behind by a stopped node).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_actions(
        &self,
        org_id: &str,
        query: &ActionQuery,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        self.keyed(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.list_actions(org_id, query).await,
                Backend::Postgres(p) => p.list_actions(org_id, query).await,
            }
        })
        .await
    }

    /// How many of the organisation's actions have `status` and `decision` (e.g. those
    /// waiting for approval), counted in an index: the cost is the number of matches.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn count_actions(
        &self,
        org_id: &str,
        status: aaf_core::action::ActionStatus,
        decision: &str,
    ) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.count_actions(org_id, status, decision).await,
            Backend::Postgres(p) => p.count_actions(org_id, status, decision).await,
        }
    }

    /// The organisation's webhooks (disabled ones included), oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_webhooks(&self, org_id: &str) -> Result<Vec<Webhook>, StoreError> {
        self.keyed(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.list_webhooks(org_id).await,
                Backend::Postgres(p) => p.list_webhooks(org_id).await,
            }
        })
        .await
    }

    /// Up to `limit` deliveries of one webhook of the organisation, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_deliveries(
        &self,
        org_id: &str,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.keyed(|| async {
            match &self.backend {
                Backend::Sqlite(s) => {
                    s.list_deliveries(org_id, Some(webhook_id), None, limit)
                        .await
                }
                Backend::Postgres(p) => {
                    p.list_deliveries(org_id, Some(webhook_id), None, limit)
                        .await
                }
            }
        })
        .await
    }

    /// Up to `limit` pending deliveries of the organisation due at or before `now` (RFC 3339
    /// UTC), oldest due first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn due_deliveries(
        &self,
        org_id: &str,
        now: &str,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        self.keyed(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.list_deliveries(org_id, None, Some(now), limit).await,
                Backend::Postgres(p) => p.list_deliveries(org_id, None, Some(now), limit).await,
            }
        })
        .await
    }

    /// Changes a delivery if its version is still the one read (not audited: deliveries are
    /// notifications; the events they announce are in the audit chain).
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when another node changed it first; [`StoreError::Unavailable`].
    pub async fn update_delivery(&self, update: &DeliveryUpdate) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.update_delivery(update).await,
            Backend::Postgres(p) => p.update_delivery(update).await,
        }
    }

    /// The approvers' answers to an action of the organisation, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_approval_votes(
        &self,
        org_id: &str,
        action_id: &str,
    ) -> Result<Vec<ApprovalVote>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_approval_votes(org_id, action_id).await,
            Backend::Postgres(p) => p.list_approval_votes(org_id, action_id).await,
        }
    }

    /// The organisation's approval settings; `None` when it never set any (the server's
    /// defaults apply).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_org_settings(&self, org_id: &str) -> Result<Option<OrgSettings>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_org_settings(org_id).await,
            Backend::Postgres(p) => p.get_org_settings(org_id).await,
        }
    }

    /// Up to `limit` events of the organisation's chain with `seq > after_seq`, in seq order
    /// (page with `after_seq` = the last seq received). Events are returned as stored; use
    /// [`Store::verify_audit`] to check them.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] when a row cannot be read.
    pub async fn list_audit(
        &self,
        org_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        self.keyed(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.list_audit(org_id, after_seq, limit).await,
                Backend::Postgres(p) => p.list_audit(org_id, after_seq, limit).await,
            }
        })
        .await
    }

    /// Verifies every audit chain (each `org_id` with events or a recorded head, including
    /// [`SYSTEM_CHAIN`]) from one consistent snapshot, streaming the events in seq order
    /// through [`aaf_core::audit::ChainVerifier::push_raw`] (the hash over the stored bytes;
    /// a `data` text that does not hash is parsed and must be its canonical form, as
    /// [`aaf_core::audit::ChainVerifier::push_stored`] requires) and comparing each
    /// chain's end with its recorded head; then compares the chains with the organisations
    /// that exist: an organisation without any chain is reported
    /// ([`aaf_core::audit::ChainErrorKind::ChainMissing`]), and so is a chain, other than
    /// [`SYSTEM_CHAIN`], of no organisation ([`aaf_core::audit::ChainErrorKind::OrgMissing`]).
    /// Returns one result per chain, sorted by `org_id`: a summary, or the first place where
    /// the chain is broken (tampering, or a malformed row).
    ///
    /// Memory use does not grow with the number of events.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the database cannot be read (a broken chain is not
    /// an error of this function but an `Err` item of its result).
    pub async fn verify_audit(&self) -> Result<Vec<Result<ChainSummary, ChainError>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.verify_audit().await,
            Backend::Postgres(p) => p.verify_audit().await,
        }
    }

    /// Writes all `units` in ONE transaction (group commit). First every unit's
    /// [`Mutation`]s, in order; then per unit its action write, then its events appended to their organisations' chains (seq and hashes
    /// assigned here). Returns each unit's chained events, in the order of `units`, with
    /// their `data` as given; it is stored in RFC 8785 canonical form (the same value with
    /// `1.0` written `1` and members sorted), which is what reads return.
    ///
    /// Action inserts of the whole batch are written before its action updates, so an
    /// update may refer to an action inserted by an earlier unit of the same batch.
    /// Rows are written with multi-row `INSERT`s, each chain head is read once and written
    /// once per call. Nothing is written when it fails.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] (duplicate action id, name, hash or nonce; a mutation that
    /// would leave an organisation without an admin; revoking a revoked key),
    /// [`StoreError::NotFound`] (update of a missing action, an action of an unknown org or
    /// agent, a mutation of a row that is not in the given organisation), [`StoreError::Invalid`]
    /// (read-only store; an event whose `data` holds a number without an exact RFC 8785 form,
    /// see [`aaf_core::canonical`]), [`StoreError::Corrupt`] (a chain head is unreadable or behind its
    /// events), [`StoreError::Unavailable`].
    pub async fn commit(&self, units: &[WriteUnit]) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
        let mut prepared = Vec::with_capacity(units.len());
        for unit in units {
            prepared.push(self.prepare(unit.clone()).await?);
        }
        match &self.backend {
            Backend::Sqlite(s) => s.commit(prepared).await,
            Backend::Postgres(p) => {
                let mut chained = p.commit(&prepared).await?;
                prepared::hand_back_data(&mut prepared, &mut chained);
                Ok(chained)
            }
        }
    }

    /// Calls `on_change` (from a background task) whenever an agent key is revoked or
    /// rotated through any node sharing the database, so that caches of key lookups can be
    /// dropped at once. PostgreSQL: `LISTEN`/`NOTIFY`, and also after every reconnection of
    /// the listener. SQLite (one node): nothing to listen to; the caller's own changes are
    /// its to handle.
    pub fn on_key_changes(&self, on_change: impl Fn() + Send + Sync + 'static) {
        match &self.backend {
            Backend::Sqlite(_) => {}
            Backend::Postgres(p) => p.spawn_key_change_listener(on_change),
        }
    }

    /// Calls `on_change(Some(action_id))` (from a background task) whenever an action is
    /// changed through another node sharing the database, and `on_change(None)` when
    /// changes may have been missed (the listener reconnected). PostgreSQL: `LISTEN`/`NOTIFY`
    /// on `aaf_action_changes`, sent in the changing transaction. SQLite (one node): nothing
    /// to listen to; the caller announces its own changes.
    pub fn on_action_changes(&self, on_change: impl Fn(Option<&str>) + Send + Sync + 'static) {
        match &self.backend {
            Backend::Sqlite(_) => {}
            Backend::Postgres(p) => p.spawn_action_change_listener(on_change),
        }
    }

    /// Calls `on_change(Some(org_id))` (from a background task) whenever an organisation's
    /// policies are changed through another node sharing the database, and `on_change(None)`
    /// when changes may have been missed. PostgreSQL: `LISTEN`/`NOTIFY` on
    /// `aaf_policy_changes`. SQLite (one node): nothing to listen to.
    pub fn on_policy_changes(&self, on_change: impl Fn(Option<&str>) + Send + Sync + 'static) {
        match &self.backend {
            Backend::Sqlite(_) => {}
            Backend::Postgres(p) => p.spawn_policy_change_listener(on_change),
        }
    }

    /// The organisation's policy objects of one kind (or all), disabled ones included, each
    /// with its version in force; by kind, then name.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_policy_objects(
        &self,
        org_id: &str,
        kind: Option<&str>,
    ) -> Result<Vec<PolicyObject>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_policy_objects(org_id, kind).await,
            Backend::Postgres(p) => p.list_policy_objects(org_id, kind).await,
        }
    }

    /// One policy object of the organisation with its version in force.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_policy_object(
        &self,
        org_id: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<PolicyObject>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_policy_object(org_id, kind, key).await,
            Backend::Postgres(p) => p.get_policy_object(org_id, kind, key).await,
        }
    }

    /// Every version of a policy object, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_policy_object_versions(
        &self,
        org_id: &str,
        kind: &str,
        key: &str,
    ) -> Result<Vec<PolicyObjectVersion>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_policy_object_versions(org_id, kind, key).await,
            Backend::Postgres(p) => p.list_policy_object_versions(org_id, kind, key).await,
        }
    }

    /// The organisation's policy generation: 0 before its first policy change, then one more
    /// per change ([`Mutation::BumpPolicyGeneration`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn policy_generation(&self, org_id: &str) -> Result<i64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.policy_generation(org_id).await,
            Backend::Postgres(p) => p.policy_generation(org_id).await,
        }
    }

    /// Every organisation's policy generation (organisations that never changed their
    /// policies are absent).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn policy_generations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.policy_generations().await,
            Backend::Postgres(p) => p.policy_generations().await,
        }
    }

    /// Every organisation's kill-switch generation (organisations that never had a kill
    /// switch are absent): one read, polled by every node's kill-switch refresher.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn runtime_generations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.runtime_generations().await,
            Backend::Postgres(p) => p.runtime_generations().await,
        }
    }

    /// The organisation's kill-switch generation (0: never had one) and its kill switches
    /// (only the unreleased ones with `unreleased_only`), newest first, at most `limit`;
    /// read together, so the switches are at least as new as the generation.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`] (an unknown scope or source).
    pub async fn kill_switch_state(
        &self,
        org_id: &str,
        unreleased_only: bool,
        limit: u32,
    ) -> Result<(i64, Vec<aaf_core::kill_switch::KillSwitch>), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.kill_switch_state(org_id, unreleased_only, limit).await,
            Backend::Postgres(p) => p.kill_switch_state(org_id, unreleased_only, limit).await,
        }
    }

    /// Calls `on_change(Some(org_id))` (from a background task) whenever an organisation's
    /// kill switches are changed through any node, and `on_change(None)` when changes may
    /// have been missed (the listener reconnected). PostgreSQL: `LISTEN`/`NOTIFY` on
    /// `aaf_runtime_changes`, sent in the changing transaction. SQLite (one node):
    /// nothing to listen to.
    pub fn on_runtime_changes(&self, on_change: impl Fn(Option<&str>) + Send + Sync + 'static) {
        match &self.backend {
            Backend::Sqlite(_) => {}
            Backend::Postgres(p) => p.spawn_runtime_listener(on_change),
        }
    }

    /// The agent's recent actions and audit events, newest first, at most `limit` of each,
    /// found among the organisation's latest `window` actions and events (read from one
    /// snapshot of the database; a bounded read that needs no index by agent).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn agent_history(
        &self,
        org_id: &str,
        agent_id: &str,
        window: u32,
        limit: u32,
    ) -> Result<(Vec<ActionRecord>, Vec<ChainedEvent>), StoreError> {
        self.keyed(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.agent_history(org_id, agent_id, window, limit).await,
                Backend::Postgres(p) => p.agent_history(org_id, agent_id, window, limit).await,
            }
        })
        .await
    }

    /// The organisation's live rate limits (deleted ones are kept but not listed), oldest
    /// first, each with when and by whom it was created.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_rate_limits(
        &self,
        org_id: &str,
    ) -> Result<Vec<(aaf_core::rate_limit::RateLimit, RateLimitMeta)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_rate_limits(org_id).await,
            Backend::Postgres(p) => p.list_rate_limits(org_id).await,
        }
    }

    /// Whether the store keeps rate-limit counters shared by every node
    /// ([`Store::rate_limit_take`]): PostgreSQL. SQLite's single node counts in memory.
    pub fn shares_rate_limit_counters(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// One GCRA step (ITU-T I.371 virtual scheduling, with the emission interval and
    /// tolerance of [`aaf_core::rate_limit::RateLimit`]) on the organisation's shared counter
    /// `key`, atomically, on the database's clock: `Ok(Ok(()))` when the action conforms (the
    /// counter advanced by `emission_us`), `Ok(Err(retry_after_us))` when it does not (the
    /// counter unchanged).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Invalid`] on SQLite, which shares no
    /// counters.
    pub async fn rate_limit_take(
        &self,
        org_id: &str,
        key: &str,
        emission_us: u64,
        tolerance_us: u64,
    ) -> Result<Result<(), u64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Err(StoreError::Invalid(
                "SQLite keeps no shared rate-limit counters".into(),
            )),
            Backend::Postgres(p) => {
                p.rate_limit_take(org_id, key, emission_us, tolerance_us)
                    .await
            }
        }
    }

    /// The agent's actions since each of `since` = `[minute_ago, five_minutes_ago,
    /// hour_ago]` (RFC 3339 UTC, as the actions were stored): counts per tool in the last
    /// minute and hour, and denials in the last 5 minutes (`input.usage`). Read from the
    /// index on `(org_id, agent_id, created_at)`: the cost grows with the agent's actions
    /// in the last hour.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn agent_usage(
        &self,
        org_id: &str,
        agent_id: &str,
        since: [&str; 3],
    ) -> Result<AgentUsage, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.agent_usage(org_id, agent_id, since).await,
            Backend::Postgres(p) => p.agent_usage(org_id, agent_id, since).await,
        }
    }

    /// The agent's actions created at or after `since` (RFC 3339 UTC, as stored), newest
    /// first, at most `limit` (`input.session`). Read from the index on `(org_id, agent_id,
    /// created_at)`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn agent_actions_since(
        &self,
        org_id: &str,
        agent_id: &str,
        since: &str,
        limit: u32,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        self.keyed(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.agent_actions_since(org_id, agent_id, since, limit).await,
                Backend::Postgres(p) => p.agent_actions_since(org_id, agent_id, since, limit).await,
            }
        })
        .await
    }

    /// The agent's actions strictly after `after` = `(created_at, id)` (RFC 3339 UTC and
    /// id, as stored: typically a profile's [`AgentProfileRecord::folded_until`]), oldest
    /// first (by `created_at`, then `id`), at most `limit`; with `after: None`, from the
    /// agent's first action. Page through an agent's actions by passing the last one's
    /// `(created_at, id)`: actions created at the same instant are neither repeated nor
    /// skipped. Read from the index on `(org_id, agent_id, created_at)`: the cost grows with
    /// `limit` (and the actions sharing one `created_at`), not with the agent's history.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn agent_actions_after(
        &self,
        org_id: &str,
        agent_id: &str,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        self.keyed(|| async {
            match &self.backend {
                Backend::Sqlite(s) => s.agent_actions_after(org_id, agent_id, after, limit).await,
                Backend::Postgres(p) => p.agent_actions_after(org_id, agent_id, after, limit).await,
            }
        })
        .await
    }

    /// The agent's behavioural profile, if one was written ([`Mutation::PutAgentProfile`]);
    /// `None` for an agent without one, or another organisation's agent.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] when the stored profile is not
    /// JSON.
    pub async fn get_agent_profile(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Option<AgentProfileRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_agent_profile(org_id, agent_id).await,
            Backend::Postgres(p) => p.get_agent_profile(org_id, agent_id).await,
        }
    }

    /// The organisation's live budgets (deleted ones are kept but not listed), oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_budgets(
        &self,
        org_id: &str,
    ) -> Result<Vec<aaf_core::budget::Budget>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_budgets(org_id).await,
            Backend::Postgres(p) => p.list_budgets(org_id).await,
        }
    }

    /// The organisation's live MCP servers (registered over the API; deleted ones are kept
    /// but not listed), by name.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_mcp_servers(&self, org_id: &str) -> Result<Vec<McpServer>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_mcp_servers(org_id).await,
            Backend::Postgres(p) => p.list_mcp_servers(org_id).await,
        }
    }

    /// The organisation's live MCP server of this name, if any.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_mcp_server(
        &self,
        org_id: &str,
        name: &str,
    ) -> Result<Option<McpServer>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_mcp_server(org_id, name).await,
            Backend::Postgres(p) => p.get_mcp_server(org_id, name).await,
        }
    }

    /// The organisation's pinned MCP tool definitions, of every server or of the server
    /// named `server`, by server and tool.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_mcp_tool_pins(
        &self,
        org_id: &str,
        server: Option<&str>,
    ) -> Result<Vec<McpToolPin>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_mcp_tool_pins(org_id, server).await,
            Backend::Postgres(p) => p.list_mcp_tool_pins(org_id, server).await,
        }
    }

    /// The pin of one tool of one MCP server of the organisation, if the tool was seen.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_mcp_tool_pin(
        &self,
        org_id: &str,
        server: &str,
        tool: &str,
    ) -> Result<Option<McpToolPin>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_mcp_tool_pin(org_id, server, tool).await,
            Backend::Postgres(p) => p.get_mcp_tool_pin(org_id, server, tool).await,
        }
    }

    /// What each `(budget_id, window_key)` has spent (settled plus reserved; 0 for a window
    /// nothing was charged in), in order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn budget_spent(
        &self,
        org_id: &str,
        windows: &[(String, String)],
    ) -> Result<Vec<u64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.budget_spent(org_id, windows).await,
            Backend::Postgres(p) => p.budget_spent(org_id, windows).await,
        }
    }

    /// Reserves `reservations` for the action, all or none, in one transaction: each is one
    /// conditional update of its window's spend (admitted when the window is not exhausted
    /// and the amount fits the limit), so concurrent reservations on any number of nodes
    /// never take a budget past its limit. Pass them sorted by budget id (lock order).
    /// `Ok(Ok(totals))`: reserved, each window's spend after it; `Ok(Err((index, spent)))`:
    /// the reservation at `index` did not fit (its window had spent `spent`) and nothing was
    /// reserved.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Conflict`] when the action reserved a
    /// budget already.
    pub async fn budget_reserve(
        &self,
        org_id: &str,
        action_id: &str,
        agent_id: &str,
        now: &str,
        reservations: &[Reservation],
    ) -> Result<Result<Vec<u64>, (usize, u64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.budget_reserve(org_id, action_id, agent_id, now, reservations)
                    .await
            }
            Backend::Postgres(p) => {
                p.budget_reserve(org_id, action_id, agent_id, now, reservations)
                    .await
            }
        }
    }

    /// What the agent's actions charged in `unit` since `since` (RFC 3339 UTC): settled
    /// usage, or the reservation while unsettled. For the spend-spike circuit breaker.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn agent_spend_since(
        &self,
        org_id: &str,
        agent_id: &str,
        unit: &str,
        since: &str,
    ) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.agent_spend_since(org_id, agent_id, unit, since).await,
            Backend::Postgres(p) => p.agent_spend_since(org_id, agent_id, unit, since).await,
        }
    }

    /// The organisation's own circuit breakers (JSON), if it set them.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_circuit_breakers(
        &self,
        org_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_circuit_breakers(org_id).await,
            Backend::Postgres(p) => p.get_circuit_breakers(org_id).await,
        }
    }

    /// The snapshots kept when the agent was isolated, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn list_agent_snapshots(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Vec<AgentSnapshot>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.list_agent_snapshots(org_id, agent_id).await,
            Backend::Postgres(p) => p.list_agent_snapshots(org_id, agent_id).await,
        }
    }

    /// What a policy set revision of the organisation was built from.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn get_policy_revision(
        &self,
        org_id: &str,
        revision: &str,
    ) -> Result<Option<PolicyRevisionRecord>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.get_policy_revision(org_id, revision).await,
            Backend::Postgres(p) => p.get_policy_revision(org_id, revision).await,
        }
    }

    /// A shadow policy's results: counts per (enforced, shadow) verdicts, and up to `samples`
    /// of the latest results where they differed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn shadow_report(
        &self,
        org_id: &str,
        policy_key: &str,
        samples: u32,
    ) -> Result<(Vec<ShadowCount>, Vec<ShadowResult>), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.shadow_report(org_id, policy_key, samples).await,
            Backend::Postgres(p) => p.shadow_report(org_id, policy_key, samples).await,
        }
    }

    /// Whether writes block the calling thread (SQLite), so that the group-commit writer
    /// wants a thread of its own.
    pub(crate) fn blocking_writes(&self) -> bool {
        matches!(self.backend, Backend::Sqlite(_))
    }

    /// [`Store::commit`] of units already prepared, for the group-commit writer: on SQLite
    /// it runs on the calling thread, blocking it until the transaction is committed (the
    /// writer owns a thread of its own, so every statement runs without a thread hop); on
    /// PostgreSQL it awaits the database.
    pub(crate) async fn commit_prepared(
        &self,
        units: &[prepared::PreparedUnit],
    ) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.commit_blocking(units),
            Backend::Postgres(p) => p.commit(units).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_writer_can_be_shared_between_tasks() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<Store>();
        shareable::<AuditWriter>();
        shareable::<StoreError>();
    }
}
