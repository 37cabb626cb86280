//! AAF storage.
//!
//! One [`Store`] type in front of the database backends (SQLite now; the PostgreSQL backend
//! for multi-node deployments slots in as another [`Store`] constructor and another arm of
//! the internal backend enum), the embedded migrations (`migrations/sqlite/`), the
//! group-commit [`AuditWriter`] and offline audit chain verification ([`Store::verify_audit`]).
//!
//! Tables (every tenant table has `org_id`, ready for PostgreSQL row-level security):
//! `orgs`, `api_tokens` (human and admin tokens, hashes only), `agents`, `agent_keys`
//! (hashes only), `actions`, `audit_events` (one hash chain per org, primary key
//! `(org_id, seq)`, see `docs/audit.md`) and `audit_heads` (the last `seq` and hash of each
//! chain, so that deleting the newest events is detected).
//!
//! Architecture invariant: an audit event is appended only inside the same transaction as
//! the rows it describes, and its chain head is updated in that transaction too; a failed
//! transaction leaves nothing behind.

#![forbid(unsafe_code)]

mod error;
mod model;
mod sqlite;
mod writer;

use std::path::Path;

use aaf_core::audit::{ChainError, ChainSummary, ChainedEvent};

pub use error::StoreError;
pub use model::{
    ActionRecord, ActionWrite, Agent, AgentPrincipal, NewEvent, Org, StoreOptions, TokenPrincipal,
    WriteUnit, SYSTEM_CHAIN,
};
pub use writer::AuditWriter;

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

    /// The backend's name: `"sqlite"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// Closes all connections (waiting for those in use to be returned). Later calls on
    /// any clone fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
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
        }
    }

    /// Creates an organisation and its first admin token in one transaction, and appends
    /// `org.created` (data `{org_id, name, plan}`) and `admin_token.created` (data
    /// `{token_id, name, prefix, role}`, never the hash or the secret) to the new
    /// organisation's audit chain (seq 1 and 2). Ids are UUIDv7; the token's role is
    /// `"admin"`; `now` is RFC 3339 UTC.
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
        match &self.backend {
            Backend::Sqlite(s) => {
                s.create_org_with_admin_token(name, plan, token_name, token_hash, token_prefix, now)
                    .await
            }
        }
    }

    /// The live token with this hash and its organisation; `None` when unknown or revoked.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Corrupt`].
    pub async fn find_token(&self, token_hash: &str) -> Result<Option<TokenPrincipal>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.find_token(token_hash).await,
        }
    }

    /// Creates an agent with its first key in one transaction and appends `agent.created`
    /// (data `{agent_id, name, risk_score, key_id, key_prefix, created_by}`, never the key
    /// or its hash) to the organisation's chain. `risk_score` is in `0.0..=1.0` by
    /// convention (not checked here, but it must be finite); `created_by` names the
    /// creating principal (e.g. a token id); `now` is RFC 3339 UTC.
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
        match &self.backend {
            Backend::Sqlite(s) => {
                s.create_agent(
                    org_id, name, risk_score, key_hash, key_prefix, now, created_by,
                )
                .await
            }
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
        match &self.backend {
            Backend::Sqlite(s) => s.get_action(org_id, id).await,
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
        match &self.backend {
            Backend::Sqlite(s) => s.list_audit(org_id, after_seq, limit).await,
        }
    }

    /// Verifies every audit chain (each `org_id` with events or a recorded head, including
    /// [`SYSTEM_CHAIN`]) from one consistent snapshot, streaming the events in seq order
    /// through [`aaf_core::audit::ChainVerifier`] and comparing each chain's end with its
    /// recorded head. Returns one result per chain, sorted by `org_id`: a summary, or the
    /// first place where the chain is broken (tampering, or a malformed row).
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
        }
    }

    /// Writes all `units` in ONE transaction (group commit). Per unit, in order: its action
    /// write, then its events appended to their organisations' chains (seq and hashes
    /// assigned here). Returns each unit's chained events, in the order of `units`.
    ///
    /// Action inserts of the whole batch are written before its action updates, so an
    /// update may refer to an action inserted by an earlier unit of the same batch.
    /// Rows are written with multi-row `INSERT`s, each chain head is read once and written
    /// once per call. Nothing is written when it fails.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] (duplicate action id), [`StoreError::NotFound`] (update of a
    /// missing action, or an action of an unknown org or agent), [`StoreError::Invalid`]
    /// (read-only store), [`StoreError::Corrupt`] (a chain head is unreadable or behind its
    /// events), [`StoreError::Unavailable`].
    pub async fn commit(&self, units: &[WriteUnit]) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.commit(units).await,
        }
    }

    /// [`Store::commit`] run on the calling thread, blocking it until the transaction is
    /// committed: for the group-commit writer, which owns a thread of its own.
    pub(crate) fn commit_blocking(
        &self,
        units: &[sqlite::PreparedUnit],
    ) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.commit_blocking(units),
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
