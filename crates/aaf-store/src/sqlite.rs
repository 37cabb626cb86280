//! The SQLite backend: one file `<data_dir>/aaf.db` in WAL mode.
//!
//! Connections: one synchronous (rusqlite) writer connection behind a mutex (SQLite admits
//! one writer at a time, so one connection serialises this process's writes without lock
//! contention) and a small sqlx pool of read-only connections, which WAL lets read while the
//! writer writes. Migrations run at open on a short-lived sqlx connection.
//!
//! Writes are synchronous so that the group-commit writer thread commits a batch without a
//! round trip to another thread per statement: [`SqliteStore::commit_blocking`] runs on the
//! caller's thread, the async write methods run the same code on tokio's blocking pool.
//! Write transactions start with `BEGIN IMMEDIATE`, so another process writing the same file
//! makes them wait up to the busy timeout instead of failing on a lock upgrade.
//!
//! SQL is kept portable (plain `INSERT ... VALUES` lists, `ON CONFLICT ... DO UPDATE`,
//! TEXT/INTEGER/REAL columns) so that the PostgreSQL backend can mirror it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aaf_core::audit::{ChainError, ChainSummary, ChainedEvent};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;

use crate::model::{
    ActionQuery, ActionRecord, ActionWrite, Agent, AgentKey, AgentPrincipal, AgentSnapshot,
    ApprovalVote, DeliveryUpdate, NewEvent, Org, OrgSettings, OrgStats, PolicyObject,
    PolicyObjectVersion, PolicyRevisionRecord, RateLimitMeta, ShadowCount, ShadowResult,
    StoreOptions, TokenPrincipal, User, Webhook, WebhookDelivery,
};
use crate::{sql, StoreError};
use aaf_core::kill_switch::KillSwitch;
use aaf_core::rate_limit::RateLimit;

mod alerts;
pub(crate) mod budgets;
pub(crate) mod evidence;
mod identity;
pub(crate) mod keys;
pub(crate) mod mcp;
pub(crate) mod profiles;

use crate::prepared::{link_events, seq_to_sql, ActionTexts, EventData, PreparedUnit};
use crate::rows::{
    action_from_row, agent_from_row, delivery_from_row, org_from_row, parse_head,
    policy_object_from_row, policy_version_from_row, revision_from_row, settings_from_row,
    shadow_count_from_row, shadow_result_from_row, vote_from_row, webhook_from_row, DbRow,
};

/// The database file inside the data directory.
pub(crate) const DB_FILE: &str = "aaf.db";

/// Number of read-only connections.
const READERS: u32 = 4;

/// Columns of `audit_events`, in insert and select order.
macro_rules! event_columns {
    () => {
        "org_id, seq, ts, agent_id, action_id, type, data, prev_hash, hash, payload"
    };
}

/// Columns of `actions`, in insert and select order.
macro_rules! action_columns {
    () => {
        "id, org_id, agent_id, tool, operation, params, context, decision, \
         reason, risk_level, status, policies, result, created_at, updated_at, digest, \
         expires_at, approvals_required, signals, data_key"
    };
}

const INSERT_ACTION: &str = concat!(
    "INSERT INTO actions (",
    action_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);
const INSERT_EVENT: &str = concat!(
    "INSERT INTO audit_events (",
    event_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
);
const SELECT_HEAD: &str = "SELECT seq, hash FROM audit_heads WHERE org_id = ?";
const UPSERT_HEAD: &str = "INSERT INTO audit_heads (org_id, seq, hash) VALUES (?, ?, ?) \
     ON CONFLICT (org_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash";

/// The writer connection; `None` once the store is closed.
type Writer = Arc<Mutex<Option<Connection>>>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite store: a writer (absent when read-only) and readers.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    writer: Option<Writer>,
    reader: SqlitePool,
    /// The database file (the chain verifier reads it with a connection of its own).
    path: std::path::PathBuf,
    /// A read-only rusqlite connection for reading many events fast (the tree builder),
    /// opened on first use.
    raw_reader: Arc<Mutex<Option<Connection>>>,
    /// The keys that seal and open (shared with every clone of the store).
    pub(crate) keys: Arc<crate::encryption::Keyring>,
}

impl SqliteStore {
    /// Opens (creating and migrating unless read-only) `<data_dir>/aaf.db`.
    pub(crate) async fn open(
        data_dir: &Path,
        opts: &StoreOptions,
    ) -> Result<SqliteStore, StoreError> {
        let path = data_dir.join(DB_FILE);
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_millis(opts.busy_timeout_ms))
            .foreign_keys(true);
        let reader_options = base.clone().read_only(true).create_if_missing(false);
        if opts.read_only {
            if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
                return Err(StoreError::Unavailable(format!(
                    "no database at {}: check the data directory, or start the server once to create it",
                    path.display()
                )));
            }
            let reader = reader_pool(reader_options).await?;
            return Ok(SqliteStore {
                writer: None,
                reader,
                path,
                raw_reader: Arc::default(),
                keys: Arc::new(crate::encryption::Keyring::new(
                    opts.master_key.clone(),
                    Duration::from_secs(opts.key_cache_seconds),
                )),
            });
        }
        create_data_dir(data_dir).await?;
        let synchronous = if opts.synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        };
        let migrate_options = base
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous);
        let migrator = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(migrate_options)
            .await
            .map_err(|e| open_error(&path, e))?;
        let migrated = MIGRATOR.run(&migrator).await;
        migrator.close().await;
        migrated?;
        let writer = {
            let path = path.clone();
            let opts = opts.clone();
            tokio::task::spawn_blocking(move || open_writer(&path, &opts))
                .await
                .map_err(|e| StoreError::Unavailable(format!("cannot open the writer: {e}")))??
        };
        let reader = reader_pool(reader_options).await?;
        Ok(SqliteStore {
            writer: Some(Arc::new(Mutex::new(Some(writer)))),
            reader,
            path,
            raw_reader: Arc::default(),
            keys: Arc::new(crate::encryption::Keyring::new(
                opts.master_key.clone(),
                Duration::from_secs(opts.key_cache_seconds),
            )),
        })
    }

    /// Closes every connection (waiting for a write in progress); later calls fail with
    /// [`StoreError::Unavailable`].
    pub(crate) async fn close(&self) {
        if let Some(writer) = &self.writer {
            let writer = Arc::clone(writer);
            let closed = tokio::task::spawn_blocking(move || drop(lock(&writer).take())).await;
            if let Err(e) = closed {
                tracing::error!(error = %e, "closing the writer connection failed");
            }
        }
        self.reader.close().await;
    }

    fn writer(&self) -> Result<&Writer, StoreError> {
        self.writer
            .as_ref()
            .ok_or_else(|| StoreError::Invalid("the store was opened read-only".to_string()))
    }

    /// Runs `f` on the writer connection, on this thread (blocking while another write is
    /// in progress).
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = lock(self.writer()?);
        let conn = guard
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".to_string()))?;
        f(conn)
    }

    /// Runs `f` on the writer connection on tokio's blocking pool.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer()?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.with_writer(f))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the write task failed: {e}")))?
    }

    pub(crate) async fn find_org_by_name(&self, name: &str) -> Result<Option<Org>, StoreError> {
        let row = sqlx::query("SELECT id, name, plan, created_at FROM orgs WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| org_from_row(&r, "")).transpose()
    }

    pub(crate) async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        let rows =
            sqlx::query("SELECT id, name, plan, created_at FROM orgs ORDER BY created_at, id")
                .fetch_all(&self.reader)
                .await?;
        rows.iter().map(|r| org_from_row(r, "")).collect()
    }

    pub(crate) async fn get_org(&self, id: &str) -> Result<Option<Org>, StoreError> {
        let row = sqlx::query("SELECT id, name, plan, created_at FROM orgs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| org_from_row(&r, "")).transpose()
    }

    pub(crate) async fn find_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenPrincipal>, StoreError> {
        identity::find_token(&self.reader, token_hash).await
    }

    pub(crate) async fn list_agents(&self, org_id: &str) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(sql::LIST_AGENTS)
            .bind(org_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| agent_from_row(r, "")).collect()
    }

    pub(crate) async fn get_agent(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(sql::GET_AGENT)
            .bind(org_id)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| agent_from_row(&r, "")).transpose()
    }

    pub(crate) async fn find_agent_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<AgentPrincipal>, StoreError> {
        identity::find_agent_key(&self.reader, key_hash).await
    }

    pub(crate) async fn org_stats(&self, org_id: &str) -> Result<OrgStats, StoreError> {
        let count = |sql: &'static str| {
            let pool = self.reader.clone();
            let org_id = org_id.to_string();
            async move {
                let n: i64 = sqlx::query_scalar(sql)
                    .bind(org_id)
                    .fetch_one(&pool)
                    .await?;
                Ok::<u64, StoreError>(u64::try_from(n).unwrap_or(0))
            }
        };
        let mut stats = OrgStats {
            agents: count(sql::COUNT_AGENTS).await?,
            users: count(sql::COUNT_USERS).await?,
            ..OrgStats::default()
        };
        let rows = sqlx::query(sql::COUNT_ACTIONS)
            .bind(org_id)
            .fetch_all(&self.reader)
            .await?;
        for row in rows {
            let decision: String = row.try_get("decision")?;
            let status: String = row.try_get("status")?;
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            *stats.actions_by_decision.entry(decision).or_default() += n;
            *stats.actions_by_status.entry(status).or_default() += n;
        }
        Ok(stats)
    }

    pub(crate) async fn list_users(&self, org_id: &str) -> Result<Vec<User>, StoreError> {
        identity::list_users(&self.reader, org_id).await
    }

    pub(crate) async fn get_user(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<User>, StoreError> {
        identity::get_user(&self.reader, org_id, id).await
    }

    pub(crate) async fn list_agent_keys(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Vec<AgentKey>, StoreError> {
        identity::list_agent_keys(&self.reader, org_id, agent_id).await
    }

    /// Sets `last_used_at` of a key (not audited; precision is the caller's).
    pub(crate) async fn touch_agent_key(
        &self,
        org_id: &str,
        key_id: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        let (org_id, key_id, now) = (org_id.to_string(), key_id.to_string(), now.to_string());
        self.write(move |conn| {
            conn.prepare_cached(sql::TOUCH_AGENT_KEY)?
                .execute(params![now, org_id, key_id])?;
            Ok(())
        })
        .await
    }

    /// Forgets signature nonces that expired before `now`; returns how many.
    pub(crate) async fn purge_nonces(&self, now: &str) -> Result<u64, StoreError> {
        let now = now.to_string();
        self.write(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM signature_nonces WHERE expires_at < ?")?
                .execute(params![now])?;
            Ok(n as u64)
        })
        .await
    }

    pub(crate) async fn get_action(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<ActionRecord>, StoreError> {
        let row = sqlx::query(sql::GET_ACTION)
            .bind(org_id)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| action_from_row(&r, &self.keys)).transpose()
    }

    pub(crate) async fn list_actions(
        &self,
        org_id: &str,
        query: &ActionQuery,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let rows = sqlx::query(sql::LIST_ACTIONS)
            .bind(org_id)
            .bind(query.status.as_str())
            .bind(&query.decision)
            .bind(&query.expires_at_or_before)
            .bind(&query.updated_before)
            .bind(i64::from(query.limit))
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| action_from_row(r, &self.keys))
            .collect()
    }

    pub(crate) async fn count_actions(
        &self,
        org_id: &str,
        status: aaf_core::action::ActionStatus,
        decision: &str,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(sql::COUNT_ACTIONS_WITH_STATUS)
            .bind(org_id)
            .bind(status.as_str())
            .bind(decision)
            .fetch_one(&self.reader)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn list_webhooks(&self, org_id: &str) -> Result<Vec<Webhook>, StoreError> {
        let rows = sqlx::query(sql::LIST_WEBHOOKS)
            .bind(org_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| webhook_from_row(r, &self.keys))
            .collect()
    }

    pub(crate) async fn list_deliveries(
        &self,
        org_id: &str,
        webhook_id: Option<&str>,
        due_at_or_before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let query = match (webhook_id, due_at_or_before) {
            (Some(w), _) => sqlx::query(sql::LIST_DELIVERIES).bind(org_id).bind(w),
            (None, due) => sqlx::query(sql::DUE_DELIVERIES)
                .bind(org_id)
                .bind(due.unwrap_or_default()),
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| delivery_from_row(r, &self.keys))
            .collect()
    }

    pub(crate) async fn update_delivery(&self, u: &DeliveryUpdate) -> Result<(), StoreError> {
        let u = u.clone();
        self.write(move |conn| {
            let done = conn.prepare_cached(sql::UPDATE_DELIVERY)?.execute(params![
                u.status,
                i64::from(u.attempts),
                u.next_attempt_at,
                u.last_status_code.map(i64::from),
                u.last_error,
                u.updated_at,
                u.org_id,
                u.id,
                u.expected_version
            ])?;
            crate::rows::delivery_updated(&u, done as u64)
        })
        .await
    }

    pub(crate) async fn list_approval_votes(
        &self,
        org_id: &str,
        action_id: &str,
    ) -> Result<Vec<ApprovalVote>, StoreError> {
        let rows = sqlx::query(sql::LIST_APPROVAL_VOTES)
            .bind(org_id)
            .bind(action_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(vote_from_row).collect()
    }

    pub(crate) async fn list_policy_objects(
        &self,
        org_id: &str,
        kind: Option<&str>,
    ) -> Result<Vec<PolicyObject>, StoreError> {
        let rows = sqlx::query(sql::LIST_POLICY_OBJECTS)
            .bind(org_id)
            .bind(kind)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(policy_object_from_row).collect()
    }

    pub(crate) async fn get_policy_object(
        &self,
        org_id: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<PolicyObject>, StoreError> {
        let row = sqlx::query(sql::GET_POLICY_OBJECT)
            .bind(org_id)
            .bind(kind)
            .bind(key)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(policy_object_from_row).transpose()
    }

    pub(crate) async fn list_policy_object_versions(
        &self,
        org_id: &str,
        kind: &str,
        key: &str,
    ) -> Result<Vec<PolicyObjectVersion>, StoreError> {
        let rows = sqlx::query(sql::LIST_POLICY_OBJECT_VERSIONS)
            .bind(org_id)
            .bind(kind)
            .bind(key)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(policy_version_from_row).collect()
    }

    pub(crate) async fn policy_generation(&self, org_id: &str) -> Result<i64, StoreError> {
        let g: Option<i64> = sqlx::query_scalar(sql::POLICY_GENERATION)
            .bind(org_id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(g.unwrap_or(0))
    }

    pub(crate) async fn policy_generations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(sql::POLICY_GENERATIONS)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| Ok((r.col("org_id")?, r.col("generation")?)))
            .collect()
    }

    pub(crate) async fn runtime_generations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(sql::RUNTIME_GENERATIONS)
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|r| Ok((r.col("org_id")?, r.col("generation")?)))
            .collect()
    }

    pub(crate) async fn kill_switch_state(
        &self,
        org_id: &str,
        unreleased_only: bool,
        limit: u32,
    ) -> Result<(i64, Vec<KillSwitch>), StoreError> {
        // One read transaction: the generation and the switches are of one moment.
        let mut tx = self.reader.begin().await?;
        let generation: Option<i64> = sqlx::query_scalar(sql::RUNTIME_GENERATION)
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        let rows = sqlx::query(sql::LIST_KILL_SWITCHES)
            .bind(org_id)
            .bind(i64::from(unreleased_only))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let switches = rows
            .iter()
            .map(crate::rows::kill_switch_from_row)
            .collect::<Result<_, _>>()?;
        Ok((generation.unwrap_or(0), switches))
    }

    pub(crate) async fn agent_history(
        &self,
        org_id: &str,
        agent_id: &str,
        window: u32,
        limit: u32,
    ) -> Result<(Vec<ActionRecord>, Vec<ChainedEvent>), StoreError> {
        let mut tx = self.reader.begin().await?;
        let actions = sqlx::query(sql::AGENT_RECENT_ACTIONS)
            .bind(org_id)
            .bind(i64::from(window))
            .bind(agent_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let events = sqlx::query(sql::AGENT_RECENT_EVENTS)
            .bind(org_id)
            .bind(i64::from(window))
            .bind(agent_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((
            actions
                .iter()
                .map(|r| crate::rows::action_from_row(r, &self.keys))
                .collect::<Result<_, _>>()?,
            crate::rows::page_of_events(&events, org_id, &self.keys)?,
        ))
    }

    pub(crate) async fn list_rate_limits(
        &self,
        org_id: &str,
    ) -> Result<Vec<(RateLimit, RateLimitMeta)>, StoreError> {
        let rows = sqlx::query(sql::LIST_RATE_LIMITS)
            .bind(org_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(crate::rows::rate_limit_from_row).collect()
    }

    pub(crate) async fn list_agent_snapshots(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Vec<AgentSnapshot>, StoreError> {
        let rows = sqlx::query(sql::LIST_AGENT_SNAPSHOTS)
            .bind(org_id)
            .bind(agent_id)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(crate::rows::snapshot_from_row).collect()
    }

    pub(crate) async fn get_policy_revision(
        &self,
        org_id: &str,
        revision: &str,
    ) -> Result<Option<PolicyRevisionRecord>, StoreError> {
        let row = sqlx::query(sql::GET_POLICY_REVISION)
            .bind(org_id)
            .bind(revision)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(revision_from_row).transpose()
    }

    pub(crate) async fn shadow_report(
        &self,
        org_id: &str,
        policy_key: &str,
        samples: u32,
    ) -> Result<(Vec<ShadowCount>, Vec<ShadowResult>), StoreError> {
        let counts = sqlx::query(sql::SHADOW_COUNTS)
            .bind(org_id)
            .bind(policy_key)
            .fetch_all(&self.reader)
            .await?;
        let rows = sqlx::query(sql::SHADOW_SAMPLES)
            .bind(org_id)
            .bind(policy_key)
            .bind(i64::from(samples))
            .fetch_all(&self.reader)
            .await?;
        Ok((
            counts
                .iter()
                .map(shadow_count_from_row)
                .collect::<Result<_, _>>()?,
            rows.iter()
                .map(shadow_result_from_row)
                .collect::<Result<_, _>>()?,
        ))
    }

    pub(crate) async fn get_org_settings(
        &self,
        org_id: &str,
    ) -> Result<Option<OrgSettings>, StoreError> {
        let row = sqlx::query(sql::GET_ORG_SETTINGS)
            .bind(org_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| settings_from_row(&r)).transpose()
    }

    pub(crate) async fn list_audit(
        &self,
        org_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        let Ok(after_seq) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(sql::LIST_AUDIT)
            .bind(org_id)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await?;
        crate::rows::page_of_events(&rows, org_id, &self.keys)
    }

    pub(crate) async fn verify_audit(
        &self,
    ) -> Result<Vec<Result<ChainSummary, ChainError>>, StoreError> {
        let verifications = self
            .verify_audit_tree(&std::collections::BTreeMap::new())
            .await?;
        Ok(verifications.into_iter().map(|v| v.result).collect())
    }

    /// Writes `units` in one transaction; see [`crate::Store::commit`].
    pub(crate) async fn commit(
        &self,
        units: Vec<PreparedUnit>,
    ) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
        self.writer()?;
        if units.is_empty() {
            return Ok(Vec::new());
        }
        self.write(move |conn| {
            let mut units = units;
            let mut chained = commit_units(conn, &units)?;
            crate::prepared::hand_back_data(&mut units, &mut chained);
            Ok(chained)
        })
        .await
    }

    /// [`SqliteStore::commit`] on this thread: for the group-commit writer's own thread,
    /// which thus runs every statement of the batch without a thread hop.
    pub(crate) fn commit_blocking(
        &self,
        units: &[PreparedUnit],
    ) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
        self.writer()?;
        if units.is_empty() {
            return Ok(Vec::new());
        }
        self.with_writer(|conn| commit_units(conn, units))
    }
}

/// Writes `units` in one `BEGIN IMMEDIATE` transaction on the writer connection: the
/// mutations of every unit (in order), action inserts, then action updates, then the events
/// appended to their chains.
fn commit_units(
    conn: &mut Connection,
    units: &[PreparedUnit],
) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
    let mut inserts = Vec::new();
    let mut updates = Vec::new();
    for prepared in units {
        match (&prepared.unit.action, &prepared.action) {
            (
                Some(ActionWrite::Insert(record)),
                Some(ActionTexts::Insert {
                    params,
                    context,
                    policies,
                    result,
                    signals,
                    data_key,
                }),
            ) => inserts.push(ActionRow {
                record,
                params,
                context,
                policies,
                result: result.as_deref(),
                signals: signals.as_deref(),
                data_key: data_key.as_deref(),
            }),
            (
                Some(update @ ActionWrite::Update { .. }),
                Some(ActionTexts::Update {
                    result,
                    params,
                    context,
                }),
            ) => updates.push((
                update,
                result.as_deref(),
                params.as_deref(),
                context.as_deref(),
            )),
            (None, None) => {}
            _ => {
                return Err(StoreError::Invalid(
                    "a prepared unit does not match its action".to_string(),
                ))
            }
        }
    }
    let groups: Vec<(&[NewEvent], &[EventData])> = units
        .iter()
        .map(|u| (u.unit.events.as_slice(), u.event_data.as_slice()))
        .collect();

    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for mutation in units.iter().flat_map(|u| u.unit.mutations.iter()) {
        identity::apply_mutation(&tx, mutation)?;
    }
    insert_actions(&tx, &inserts)?;
    for (update, result, new_params, new_context) in &updates {
        let ActionWrite::Update {
            org_id,
            id,
            status,
            reason,
            expected_version,
            updated_at,
            ..
        } = update
        else {
            continue;
        };
        let done = tx.prepare_cached(sql::UPDATE_ACTION)?.execute(params![
            status.as_str(),
            result,
            reason,
            updated_at,
            new_params,
            new_context,
            org_id,
            id,
            expected_version
        ])?;
        if done == 0 {
            let found: Option<i64> = tx
                .prepare_cached(sql::ACTION_VERSION)?
                .query_row(params![org_id, id], |r| r.get(0))
                .optional()?;
            return Err(crate::rows::update_refused(
                org_id,
                id,
                *expected_version,
                found,
            ));
        }
    }
    let chained = append_events(&tx, &groups)?;
    tx.commit()?;
    Ok(chained)
}

async fn reader_pool(options: SqliteConnectOptions) -> Result<SqlitePool, StoreError> {
    let path = options.get_filename().to_path_buf();
    SqlitePoolOptions::new()
        .max_connections(READERS)
        .min_connections(0)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(|e| open_error(&path, e))
}

fn open_error(path: &Path, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("cannot open database {}: {error}", path.display()))
}

/// Page cache of the writer connection, in KiB.
const WRITER_CACHE_KIB: i64 = 32 * 1024;

/// Opens the writer connection to the (migrated) database with the writer's pragmas: WAL,
/// `synchronous` per `opts`, foreign keys, the busy timeout and a page cache of
/// [`WRITER_CACHE_KIB`].
fn open_writer(path: &Path, opts: &StoreOptions) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
    conn.busy_timeout(Duration::from_millis(opts.busy_timeout_ms))
        .map_err(|e| open_error(path, e))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| open_error(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(path, format!("journal mode is {mode}, not WAL")));
    }
    let synchronous = if opts.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(|e| open_error(path, e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| open_error(path, e))?;
    // Negative: KiB. SQLite's default (2 MiB) made the writer re-read index pages from the
    // file on most commits under load; the writer's pages stay cached across transactions.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
        .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// Locks the writer; a panic during an earlier write left the connection usable (its
/// transaction was rolled back when dropped).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Creates the data directory (and missing parents) with mode 0700 on Unix.
async fn create_data_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await.map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })
}

/// Maps a UNIQUE violation to a [`StoreError::Conflict`] with a useful message.
fn named_conflict(error: rusqlite::Error, message: &str) -> StoreError {
    match StoreError::from(error) {
        StoreError::Conflict(detail) => StoreError::Conflict(format!("{message} ({detail})")),
        other => other,
    }
}

/// An action insert with its JSON columns serialised.
struct ActionRow<'a> {
    record: &'a ActionRecord,
    params: &'a str,
    context: &'a str,
    policies: &'a str,
    result: Option<&'a str>,
    signals: Option<&'a str>,
    data_key: Option<&'a str>,
}

/// Inserts actions with one cached prepared statement.
fn insert_actions(conn: &Connection, rows: &[ActionRow<'_>]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(INSERT_ACTION)?;
    for row in rows {
        let r = row.record;
        insert
            .execute(params![
                r.id,
                r.org_id,
                r.agent_id,
                r.tool,
                r.operation,
                row.params,
                row.context,
                r.decision,
                r.reason,
                r.risk_level,
                r.status.as_str(),
                row.policies,
                row.result,
                r.created_at,
                r.updated_at,
                r.digest,
                r.expires_at,
                r.approvals_required,
                row.signals,
                row.data_key
            ])
            .map_err(|e| named_conflict(e, "an action with this id already exists"))?;
    }
    Ok(())
}

/// Appends each group's events, in order, to their organisations' chains inside the
/// caller's transaction: reads each chain head once, hashes in memory, inserts the events
/// and upserts each touched head once.
fn append_events(
    conn: &Connection,
    groups: &[(&[NewEvent], &[EventData])],
) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
    let mut org_ids: Vec<&str> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for event in groups.iter().flat_map(|(g, _)| g.iter()) {
        if seen.insert(&event.org_id) {
            org_ids.push(&event.org_id);
        }
    }
    let mut heads = load_heads(conn, &org_ids)?;
    let (chained, rows) = link_events(&mut heads, groups)?;
    if rows.is_empty() {
        return Ok(chained);
    }

    {
        let mut insert = conn.prepare_cached(INSERT_EVENT)?;
        for (link, row) in chained.iter().flatten().zip(rows.iter()) {
            let e = &link.event;
            insert
                .execute(params![
                    e.org_id,
                    row.seq,
                    e.ts,
                    e.agent_id,
                    e.action_id,
                    e.event_type,
                    row.data,
                    row.prev_hash,
                    row.hash,
                    row.payload
                ])
                .map_err(|e| {
                    // A duplicate (org_id, seq) means the head and the events disagree.
                    match StoreError::from(e) {
                        StoreError::Conflict(detail) => StoreError::Corrupt(format!(
                            "audit chain head is behind its events ({detail}): run audit verification"
                        )),
                        other => other,
                    }
                })?;
        }
    }

    let mut upsert = conn.prepare_cached(UPSERT_HEAD)?;
    for org in &org_ids {
        if let Some((seq, hash)) = heads.get(*org) {
            upsert.execute(params![
                org,
                seq_to_sql(*seq)?,
                aaf_core::audit::hex32::encode(hash)
            ])?;
        }
    }
    Ok(chained)
}

/// Reads the chain heads of `org_ids` (absent for chains without events).
fn load_heads(
    conn: &Connection,
    org_ids: &[&str],
) -> Result<HashMap<String, (u64, [u8; 32])>, StoreError> {
    let mut heads = HashMap::with_capacity(org_ids.len());
    let mut select = conn.prepare_cached(SELECT_HEAD)?;
    for org_id in org_ids {
        let mut rows = select.query([org_id])?;
        if let Some(row) = rows.next()? {
            let head = parse_head(row.get::<_, i64>(0).map_err(|e| e.to_string()), || {
                row.get::<_, String>(1).map_err(|e| e.to_string())
            })
            .map_err(|(_, reason)| {
                StoreError::Corrupt(format!("audit chain head of org {org_id}: {reason}"))
            })?;
            heads.insert((*org_id).to_string(), head);
        }
    }
    Ok(heads)
}
