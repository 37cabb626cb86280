//! The PostgreSQL backend, for several stateless `aaf serve` nodes on one database.
//!
//! Tenant isolation is the database's job: every tenant table has row-level security forced
//! on, with a policy for the role `aaf_app` on `org_id = current_setting('app.org_id')`
//! (`migrations/postgres/0001_initial.sql`). Every pooled connection works as `aaf_app`
//! (switching with `SET ROLE` when it logged in as the owner) and the store refuses to start
//! when the role it works as is a superuser, may bypass row-level security or owns the
//! tables. Every statement runs in a transaction that first sets `app.org_id` with
//! `set_config(..., true)` (transaction-local), so a statement that forgot its org filter
//! still sees and changes only that organisation. The few cross-organisation lookups are
//! SECURITY DEFINER functions of the migration.
//!
//! Chains stay gap-free with several writers: a commit locks the head row of every chain it
//! appends to (`SELECT ... FOR UPDATE`, in org id order, so two nodes never deadlock on
//! heads), links its events after the locked head and updates the head before committing.
//! A batch's rows are written per organisation with one multi-row `INSERT ... SELECT FROM
//! UNNEST(...)` per table.

mod alerts;
mod budgets;
mod evidence;
mod keys;
mod mcp;
mod profiles;

use std::collections::{BTreeMap, HashMap};

use aaf_core::audit::{ChainError, ChainSummary, ChainedEvent};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};

use crate::model::{
    ActionQuery, ActionRecord, ActionWrite, Agent, AgentKey, AgentPrincipal, AgentSnapshot,
    ApprovalVote, DeliveryUpdate, Mutation, NewEvent, Org, OrgSettings, OrgStats, PgOptions,
    PolicyObject, PolicyObjectVersion, PolicyRevisionRecord, RateLimitMeta, ShadowCount,
    ShadowResult, TokenPrincipal, User, Webhook, WebhookDelivery,
};
use crate::prepared::{link_events, seq_to_sql, ActionTexts, EventData, EventRow, PreparedUnit};
use crate::rows::{
    action_from_row, agent_from_row, agent_principal_from_row, delivery_from_row, head_from_row,
    key_from_row, org_from_row, policy_object_from_row, policy_version_from_row, revision_from_row,
    settings_from_row, shadow_count_from_row, shadow_result_from_row, token_principal_from_row,
    user_from_row, vote_from_row, webhook_from_row, DbRow,
};
use crate::{sql, StoreError};
use aaf_core::kill_switch::KillSwitch;
use aaf_core::rate_limit::RateLimit;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The role the server works as (created by the migration).
pub(crate) const APP_ROLE: &str = "aaf_app";

const EVENT_COLUMNS: &str =
    "org_id, seq, ts, agent_id, action_id, type, data, prev_hash, hash, payload";
const ACTION_COLUMNS: &str = "id, org_id, agent_id, tool, operation, params, context, decision, \
     reason, risk_level, status, policies, result, created_at, updated_at, digest, expires_at, \
     approvals_required, signals, data_key";

/// The PostgreSQL store: a pool of connections working as `aaf_app`.
#[derive(Debug, Clone)]
pub(crate) struct PgStore {
    pool: PgPool,
    read_only: bool,
    /// The keys that seal and open (shared with every clone of the store).
    pub(crate) keys: std::sync::Arc<crate::encryption::Keyring>,
}

/// The channel on which a revocation or rotation is announced to every node.
const KEY_CHANGES: &str = "aaf_key_changes";

/// Announces, when the transaction commits, that a key of `org_id` changed, so that every
/// node drops its cached key lookups at once (PostgreSQL `NOTIFY` is transactional).
async fn notify_key_change(conn: &mut PgConnection, org_id: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(KEY_CHANGES)
        .bind(org_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Advances the organisation's kill-switch generation and announces, when the transaction
/// commits, that its kill switches changed, so that every node reloads them at once.
async fn bump_runtime_generation(
    conn: &mut PgConnection,
    org_id: &str,
    now: &str,
) -> Result<(), StoreError> {
    sqlx::query(sql::BUMP_RUNTIME_GENERATION)
        .bind(org_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(RUNTIME_CHANGES)
        .bind(org_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The channel on which a changed action (its id as payload) is announced to every node.
const ACTION_CHANGES: &str = "aaf_action_changes";

/// The channel on which a change of an organisation's policies (its id as payload) is
/// announced to every node.
const POLICY_CHANGES: &str = "aaf_policy_changes";

/// The channel on which a change of an organisation's kill switches (its id as payload) is
/// announced to every node.
const RUNTIME_CHANGES: &str = "aaf_runtime_changes";

/// `(org_id, key, emission_us, tolerance_us)`: one GCRA step (ITU-T I.371 virtual
/// scheduling: with `tat` the counter's arrival time, at least now, the action conforms when
/// `tat - tolerance <= now`, and `tat` then advances by the emission interval) on the
/// database's clock, in microseconds; returns the new arrival time when the action
/// conforms, no row when it does not (the counter unchanged). PostgreSQL only.
const GCRA_TAKE: &str =
    "WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us) \
     INSERT INTO rate_limit_counters AS c (org_id, key, tat_us) \
     SELECT $1, $2, clock.us + $3 FROM clock \
     ON CONFLICT (org_id, key) DO UPDATE \
       SET tat_us = GREATEST(c.tat_us, (SELECT us FROM clock)) + $3 \
       WHERE GREATEST(c.tat_us, (SELECT us FROM clock)) - $4 <= (SELECT us FROM clock) \
     RETURNING c.tat_us";

/// `(org_id, key, tolerance_us)` → microseconds until the counter admits an action.
const GCRA_WAIT: &str =
    "SELECT c.tat_us - $3 - (extract(epoch FROM clock_timestamp()) * 1000000)::bigint \
     FROM rate_limit_counters AS c WHERE c.org_id = $1 AND c.key = $2";

/// The conflict of two concurrent changes of an organisation's policies.
const POLICIES_CHANGED: &str =
    "the organisation's policies changed concurrently; read them again and retry";

/// Calls `on_notify(Some(payload))` for every notification on `channel` and
/// `on_notify(None)` after every (re)connection of the listening connection (notifications
/// may have been missed then). Runs until the pool is closed.
fn spawn_listener(
    pool: PgPool,
    channel: &'static str,
    on_notify: impl Fn(Option<&str>) + Send + Sync + 'static,
) {
    tokio::spawn(async move {
        let mut delay = std::time::Duration::from_millis(100);
        while !pool.is_closed() {
            let listener = async {
                let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                l.listen(channel).await?;
                Ok::<_, sqlx::Error>(l)
            };
            let mut listener = match listener.await {
                Ok(l) => l,
                Err(e) => {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(error = %e, channel, "cannot listen for notifications; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                    continue;
                }
            };
            delay = std::time::Duration::from_millis(100);
            // Anything may have changed while nobody listened.
            on_notify(None);
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => on_notify(Some(n.payload())),
                    // The connection was lost; try_recv reconnects on the next call.
                    Ok(None) => on_notify(None),
                    Err(e) => {
                        if !pool.is_closed() {
                            tracing::warn!(error = %e, channel, "notification listener failed; reconnecting");
                        }
                        on_notify(None);
                        break;
                    }
                }
            }
        }
    });
}

/// Applies pending migrations when connected as the schema's owner (or to an empty
/// database); when connected as another role (a login member of `aaf_app`), only checks that
/// every migration was applied, since that role may not change the schema.
async fn migrate(conn: &mut PgConnection) -> Result<(), StoreError> {
    let owner: Option<bool> = sqlx::query_scalar(
        "SELECT tableowner = current_user FROM pg_tables \
         WHERE schemaname = current_schema() AND tablename = '_sqlx_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if owner != Some(false) {
        MIGRATOR.run(conn).await?;
        return Ok(());
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot read the schema version as a non-owner role: {e}"
                ))
            })?;
    let missing: Vec<String> = MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Unavailable(format!(
            "the database schema is out of date (missing migrations: {}); this role does not own \
             the schema, so start AAF once with the owner's URL to migrate",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Sets the organisation of the rest of the transaction (row-level security).
async fn set_org(conn: &mut PgConnection, org_id: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('app.org_id', $1, true)")
        .bind(org_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Tracks the organisation set in a transaction, to set it only when it changes.
struct OrgContext<'t, 'c> {
    tx: &'t mut Transaction<'c, Postgres>,
    current: Option<String>,
}

impl<'t, 'c> OrgContext<'t, 'c> {
    fn new(tx: &'t mut Transaction<'c, Postgres>) -> Self {
        OrgContext { tx, current: None }
    }

    /// The transaction's connection, with `org_id` set.
    async fn conn(&mut self, org_id: &str) -> Result<&mut PgConnection, StoreError> {
        if self.current.as_deref() != Some(org_id) {
            set_org(self.tx, org_id).await?;
            self.current = Some(org_id.to_string());
        }
        Ok(&mut **self.tx)
    }
}

impl PgStore {
    /// Connects, migrates (unless read-only) and checks the role the pool works as.
    pub(crate) async fn open(url: &str, opts: &PgOptions) -> Result<PgStore, StoreError> {
        let connect: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("database url: {e}")))?;
        if !opts.read_only {
            let mut conn = PgConnection::connect_with(&connect).await.map_err(|e| {
                StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}"))
            })?;
            let migrated = migrate(&mut conn).await;
            let _ = conn.close().await;
            migrated?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Work as aaf_app: switch when logged in as a member (e.g. the owner);
                    // a login role that is not a member stays itself and is checked below.
                    let member: bool = sqlx::query_scalar(
                        "SELECT current_user <> $1 AND pg_has_role(current_user, $1, 'MEMBER')",
                    )
                    .bind(APP_ROLE)
                    .fetch_one(&mut *conn)
                    .await?;
                    if member {
                        sqlx::query(&format!("SET ROLE {APP_ROLE}"))
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))?;
        let store = PgStore {
            pool,
            read_only: opts.read_only,
            keys: std::sync::Arc::new(crate::encryption::Keyring::new(
                opts.master_key.clone(),
                std::time::Duration::from_secs(opts.key_cache_seconds),
            )),
        };
        store.check_role().await?;
        Ok(store)
    }

    /// Refuses a role that row-level security would not restrict.
    async fn check_role(&self) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT current_user::text AS role, r.rolsuper, r.rolbypassrls, \
                    EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'audit_events' \
                            AND tableowner = current_user) AS owner \
             FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(&self.pool)
        .await?;
        let role: String = row.try_get("role")?;
        let superuser: bool = row.try_get("rolsuper")?;
        let bypass: bool = row.try_get("rolbypassrls")?;
        let owner: bool = row.try_get("owner")?;
        if superuser || bypass || owner {
            return Err(StoreError::Unavailable(format!(
                "refusing to work as PostgreSQL role {role:?}: it is a superuser, may bypass row-level security or owns the tables, \
                 so tenant isolation would not hold; connect as the owner (AAF switches to {APP_ROLE}) or as a login role that is a member of {APP_ROLE}"
            )));
        }
        tracing::info!(role = %role, "PostgreSQL: working as a role subject to row-level security");
        Ok(())
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::Invalid(
                "the store was opened read-only".to_string(),
            ));
        }
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn spawn_key_change_listener(&self, on_change: impl Fn() + Send + Sync + 'static) {
        spawn_listener(self.pool.clone(), KEY_CHANGES, move |_| on_change());
    }

    pub(crate) fn spawn_action_change_listener(
        &self,
        on_change: impl Fn(Option<&str>) + Send + Sync + 'static,
    ) {
        spawn_listener(self.pool.clone(), ACTION_CHANGES, on_change);
    }

    pub(crate) fn spawn_policy_change_listener(
        &self,
        on_change: impl Fn(Option<&str>) + Send + Sync + 'static,
    ) {
        spawn_listener(self.pool.clone(), POLICY_CHANGES, on_change);
    }

    pub(crate) async fn list_policy_objects(
        &self,
        org_id: &str,
        kind: Option<&str>,
    ) -> Result<Vec<PolicyObject>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_POLICY_OBJECTS)
            .bind(org_id)
            .bind(kind)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(policy_object_from_row).collect()
    }

    pub(crate) async fn get_policy_object(
        &self,
        org_id: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<PolicyObject>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_POLICY_OBJECT)
            .bind(org_id)
            .bind(kind)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(policy_object_from_row).transpose()
    }

    pub(crate) async fn list_policy_object_versions(
        &self,
        org_id: &str,
        kind: &str,
        key: &str,
    ) -> Result<Vec<PolicyObjectVersion>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_POLICY_OBJECT_VERSIONS)
            .bind(org_id)
            .bind(kind)
            .bind(key)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(policy_version_from_row).collect()
    }

    pub(crate) async fn policy_generation(&self, org_id: &str) -> Result<i64, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let g: Option<i64> = sqlx::query_scalar(sql::POLICY_GENERATION)
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(g.unwrap_or(0))
    }

    pub(crate) async fn policy_generations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(sql::POLICY_GENERATIONS)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.col("org_id")?, r.col("generation")?)))
            .collect()
    }

    pub(crate) async fn runtime_generations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(sql::RUNTIME_GENERATIONS)
            .fetch_all(&self.pool)
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
        // One transaction (read committed): the generation is read first, so the switches
        // read next are at least as new.
        let mut tx = self.begin_org(org_id).await?;
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
        let mut tx = self.begin_org(org_id).await?;
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
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_RATE_LIMITS)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(crate::rows::rate_limit_from_row).collect()
    }

    pub(crate) async fn rate_limit_take(
        &self,
        org_id: &str,
        key: &str,
        emission_us: u64,
        tolerance_us: u64,
    ) -> Result<Result<(), u64>, StoreError> {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let mut tx = self.begin_org(org_id).await?;
        // One statement: the counter row is locked by the upsert, so concurrent takes on any
        // node are serialised and each sees the last one's arrival time.
        let taken: Option<i64> = sqlx::query_scalar(GCRA_TAKE)
            .bind(org_id)
            .bind(key)
            .bind(as_i64(emission_us))
            .bind(as_i64(tolerance_us))
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match taken {
            Some(_) => Ok(()),
            None => {
                let wait: Option<i64> = sqlx::query_scalar(GCRA_WAIT)
                    .bind(org_id)
                    .bind(key)
                    .bind(as_i64(tolerance_us))
                    .fetch_optional(&mut *tx)
                    .await?;
                Err(u64::try_from(wait.unwrap_or(0)).unwrap_or(0).max(1))
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub(crate) async fn list_agent_snapshots(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Vec<AgentSnapshot>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_AGENT_SNAPSHOTS)
            .bind(org_id)
            .bind(agent_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(crate::rows::snapshot_from_row).collect()
    }

    pub(crate) fn spawn_runtime_listener(
        &self,
        on_change: impl Fn(Option<&str>) + Send + Sync + 'static,
    ) {
        spawn_listener(self.pool.clone(), RUNTIME_CHANGES, on_change);
    }

    pub(crate) async fn get_policy_revision(
        &self,
        org_id: &str,
        revision: &str,
    ) -> Result<Option<PolicyRevisionRecord>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_POLICY_REVISION)
            .bind(org_id)
            .bind(revision)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(revision_from_row).transpose()
    }

    pub(crate) async fn shadow_report(
        &self,
        org_id: &str,
        policy_key: &str,
        samples: u32,
    ) -> Result<(Vec<ShadowCount>, Vec<ShadowResult>), StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let counts = sqlx::query(sql::SHADOW_COUNTS)
            .bind(org_id)
            .bind(policy_key)
            .fetch_all(&mut *tx)
            .await?;
        let rows = sqlx::query(sql::SHADOW_SAMPLES)
            .bind(org_id)
            .bind(policy_key)
            .bind(i64::from(samples))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
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

    /// A transaction with `org_id` set.
    async fn begin_org(&self, org_id: &str) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        set_org(&mut tx, org_id).await?;
        Ok(tx)
    }

    pub(crate) async fn list_orgs(&self) -> Result<Vec<Org>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT aaf_org_ids()")
            .fetch_all(&self.pool)
            .await?;
        let mut orgs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(org) = self.get_org(&id).await? {
                orgs.push(org);
            }
        }
        Ok(orgs)
    }

    pub(crate) async fn get_org(&self, id: &str) -> Result<Option<Org>, StoreError> {
        let mut tx = self.begin_org(id).await?;
        // Deliberately unfiltered: row-level security returns only this organisation.
        let row = sqlx::query("SELECT id, name, plan, created_at FROM orgs")
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|r| org_from_row(&r, "")).transpose()
    }

    pub(crate) async fn find_org_by_name(&self, name: &str) -> Result<Option<Org>, StoreError> {
        let id: Option<String> = sqlx::query_scalar("SELECT aaf_org_id_by_name($1)")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        match id {
            Some(id) => self.get_org(&id).await,
            None => Ok(None),
        }
    }

    /// The organisation of a credential digest (a SECURITY DEFINER lookup).
    async fn credential_org(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT aaf_credential_org($1)")
            .bind(hash)
            .fetch_one(&self.pool)
            .await?)
    }

    pub(crate) async fn find_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<TokenPrincipal>, StoreError> {
        let Some(org_id) = self.credential_org(token_hash).await? else {
            return Ok(None);
        };
        let mut tx = self.begin_org(&org_id).await?;
        let row = sqlx::query(sql::FIND_TOKEN)
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|r| token_principal_from_row(&r, token_hash))
            .transpose()
            .map(Option::flatten)
    }

    pub(crate) async fn find_agent_key(
        &self,
        key_hash: &str,
    ) -> Result<Option<AgentPrincipal>, StoreError> {
        let Some(org_id) = self.credential_org(key_hash).await? else {
            return Ok(None);
        };
        let mut tx = self.begin_org(&org_id).await?;
        let row = sqlx::query(sql::FIND_AGENT_KEY)
            .bind(key_hash)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|r| agent_principal_from_row(&r, key_hash))
            .transpose()
            .map(Option::flatten)
    }

    pub(crate) async fn list_agents(&self, org_id: &str) -> Result<Vec<Agent>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_AGENTS)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(|r| agent_from_row(r, "")).collect()
    }

    pub(crate) async fn get_agent(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<Agent>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_AGENT)
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|r| agent_from_row(&r, "")).transpose()
    }

    pub(crate) async fn list_users(&self, org_id: &str) -> Result<Vec<User>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_USERS)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(user_from_row).collect()
    }

    pub(crate) async fn get_user(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<User>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_USER)
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(crate) async fn list_agent_keys(
        &self,
        org_id: &str,
        agent_id: &str,
    ) -> Result<Vec<AgentKey>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_AGENT_KEYS)
            .bind(org_id)
            .bind(agent_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(key_from_row).collect()
    }

    pub(crate) async fn touch_agent_key(
        &self,
        org_id: &str,
        key_id: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        self.writable()?;
        let mut tx = self.begin_org(org_id).await?;
        sqlx::query(sql::TOUCH_AGENT_KEY)
            .bind(now)
            .bind(org_id)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn purge_nonces(&self, now: &str) -> Result<u64, StoreError> {
        self.writable()?;
        let n: i64 = sqlx::query_scalar("SELECT aaf_purge_nonces($1)")
            .bind(now)
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn org_stats(&self, org_id: &str) -> Result<OrgStats, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let agents: i64 = sqlx::query_scalar(sql::COUNT_AGENTS)
            .bind(org_id)
            .fetch_one(&mut *tx)
            .await?;
        let users: i64 = sqlx::query_scalar(sql::COUNT_USERS)
            .bind(org_id)
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(sql::COUNT_ACTIONS)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut stats = OrgStats {
            agents: u64::try_from(agents).unwrap_or(0),
            users: u64::try_from(users).unwrap_or(0),
            ..OrgStats::default()
        };
        for row in rows {
            let decision: String = row.try_get("decision")?;
            let status: String = row.try_get("status")?;
            let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0);
            *stats.actions_by_decision.entry(decision).or_default() += n;
            *stats.actions_by_status.entry(status).or_default() += n;
        }
        Ok(stats)
    }

    pub(crate) async fn get_action(
        &self,
        org_id: &str,
        id: &str,
    ) -> Result<Option<ActionRecord>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_ACTION)
            .bind(org_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.map(|r| action_from_row(&r, &self.keys)).transpose()
    }

    pub(crate) async fn list_actions(
        &self,
        org_id: &str,
        query: &ActionQuery,
    ) -> Result<Vec<ActionRecord>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_ACTIONS)
            .bind(org_id)
            .bind(query.status.as_str())
            .bind(&query.decision)
            .bind(&query.expires_at_or_before)
            .bind(&query.updated_before)
            .bind(i64::from(query.limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
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
        let mut tx = self.begin_org(org_id).await?;
        let n: i64 = sqlx::query_scalar(sql::COUNT_ACTIONS_WITH_STATUS)
            .bind(org_id)
            .bind(status.as_str())
            .bind(decision)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn list_webhooks(&self, org_id: &str) -> Result<Vec<Webhook>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_WEBHOOKS)
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
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
        let mut tx = self.begin_org(org_id).await?;
        let query = match (webhook_id, due_at_or_before) {
            (Some(w), _) => sqlx::query(sql::LIST_DELIVERIES).bind(org_id).bind(w),
            (None, due) => sqlx::query(sql::DUE_DELIVERIES)
                .bind(org_id)
                .bind(due.unwrap_or_default()),
        };
        let rows = query.bind(i64::from(limit)).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| delivery_from_row(r, &self.keys))
            .collect()
    }

    pub(crate) async fn update_delivery(&self, u: &DeliveryUpdate) -> Result<(), StoreError> {
        self.writable()?;
        let mut tx = self.begin_org(&u.org_id).await?;
        let done = sqlx::query(sql::UPDATE_DELIVERY)
            .bind(&u.status)
            .bind(i64::from(u.attempts))
            .bind(&u.next_attempt_at)
            .bind(u.last_status_code.map(i64::from))
            .bind(&u.last_error)
            .bind(&u.updated_at)
            .bind(&u.org_id)
            .bind(&u.id)
            .bind(u.expected_version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        crate::rows::delivery_updated(u, done.rows_affected())
    }

    pub(crate) async fn list_approval_votes(
        &self,
        org_id: &str,
        action_id: &str,
    ) -> Result<Vec<ApprovalVote>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_APPROVAL_VOTES)
            .bind(org_id)
            .bind(action_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(vote_from_row).collect()
    }

    pub(crate) async fn get_org_settings(
        &self,
        org_id: &str,
    ) -> Result<Option<OrgSettings>, StoreError> {
        let mut tx = self.begin_org(org_id).await?;
        let row = sqlx::query(sql::GET_ORG_SETTINGS)
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
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
        let mut tx = self.begin_org(org_id).await?;
        let rows = sqlx::query(sql::LIST_AUDIT)
            .bind(org_id)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        crate::rows::page_of_events(&rows, org_id, &self.keys)
    }

    /// Verifies every chain from one REPEATABLE READ snapshot, one chain at a time (each
    /// read with its own `app.org_id`).
    pub(crate) async fn verify_audit(
        &self,
    ) -> Result<Vec<Result<ChainSummary, ChainError>>, StoreError> {
        let verifications = self.verify_audit_tree(&BTreeMap::new()).await?;
        Ok(verifications.into_iter().map(|v| v.result).collect())
    }

    pub(crate) async fn commit(
        &self,
        units: &[PreparedUnit],
    ) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
        self.writable()?;
        if units.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let chained = commit_units(&mut tx, units).await?;
        tx.commit().await?;
        Ok(chained)
    }
}

/// Writes `units` inside `tx`: mutations, action inserts, action updates, then the events
/// appended to their locked chains.
async fn commit_units(
    tx: &mut Transaction<'static, Postgres>,
    units: &[PreparedUnit],
) -> Result<Vec<Vec<ChainedEvent>>, StoreError> {
    let mut ctx = OrgContext::new(tx);
    // Lock first the actions this batch updates, in id order: their updates go with rows
    // that reference them (approvers' votes) whose unique keys another node's batch may be
    // inserting too, so without one lock order two batches could wait on each other.
    let mut updated: Vec<(&str, &str)> = units
        .iter()
        .filter_map(|u| match &u.unit.action {
            Some(ActionWrite::Update { org_id, id, .. }) => Some((id.as_str(), org_id.as_str())),
            _ => None,
        })
        .collect();
    updated.sort_unstable();
    updated.dedup();
    for (id, org_id) in updated {
        sqlx::query("SELECT 1 FROM actions WHERE org_id = $1 AND id = $2 FOR UPDATE")
            .bind(org_id)
            .bind(id)
            .fetch_optional(ctx.conn(org_id).await?)
            .await?;
    }
    for mutation in units.iter().flat_map(|u| u.unit.mutations.iter()) {
        apply_mutation(&mut ctx, mutation).await?;
    }

    // Action inserts, grouped by organisation (row-level security checks each row's org).
    let mut inserts: BTreeMap<&str, Vec<(&ActionRecord, &ActionTexts)>> = BTreeMap::new();
    let mut updates = Vec::new();
    for prepared in units {
        match (&prepared.unit.action, &prepared.action) {
            (Some(ActionWrite::Insert(record)), Some(texts @ ActionTexts::Insert { .. })) => {
                inserts
                    .entry(record.org_id.as_str())
                    .or_default()
                    .push((record, texts));
            }
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
    for (org_id, rows) in &inserts {
        insert_actions(ctx.conn(org_id).await?, rows).await?;
    }
    for (update, result, new_params, new_context) in updates {
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
        let conn = ctx.conn(org_id).await?;
        let done = sqlx::query(sql::UPDATE_ACTION)
            .bind(status.as_str())
            .bind(result)
            .bind(reason)
            .bind(updated_at)
            .bind(new_params)
            .bind(new_context)
            .bind(org_id)
            .bind(id)
            .bind(expected_version)
            .execute(&mut *conn)
            .await?;
        if done.rows_affected() == 0 {
            let found: Option<i64> = sqlx::query_scalar(sql::ACTION_VERSION)
                .bind(org_id)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
            return Err(crate::rows::update_refused(
                org_id,
                id,
                *expected_version,
                found,
            ));
        }
        // Waiters on any node (GET /v1/actions/{id}?wait=) learn of the change at commit.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(ACTION_CHANGES)
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }

    // Lock every touched chain's head (in org order), link, insert, advance the heads.
    let groups: Vec<(&[NewEvent], &[EventData])> = units
        .iter()
        .map(|u| (u.unit.events.as_slice(), u.event_data.as_slice()))
        .collect();
    let mut org_ids: Vec<&str> = groups
        .iter()
        .flat_map(|(events, _)| events.iter().map(|e| e.org_id.as_str()))
        .collect();
    org_ids.sort_unstable();
    org_ids.dedup();
    let mut heads = HashMap::with_capacity(org_ids.len());
    for org_id in &org_ids {
        let conn = ctx.conn(org_id).await?;
        sqlx::query(
            "INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, 0, $2) \
             ON CONFLICT (org_id) DO NOTHING",
        )
        .bind(org_id)
        .bind(hex::encode(aaf_core::audit::GENESIS_HASH))
        .execute(&mut *conn)
        .await?;
        let row =
            sqlx::query("SELECT org_id, seq, hash FROM audit_heads WHERE org_id = $1 FOR UPDATE")
                .bind(org_id)
                .fetch_one(&mut *conn)
                .await?;
        let head = head_from_row(&row).map_err(|(_, reason)| {
            StoreError::Corrupt(format!("audit chain head of org {org_id}: {reason}"))
        })?;
        heads.insert((*org_id).to_string(), head);
    }
    let (chained, rows) = link_events(&mut heads, &groups)?;
    let mut by_org: BTreeMap<&str, Vec<(&ChainedEvent, &EventRow)>> = BTreeMap::new();
    for (link, row) in chained.iter().flatten().zip(rows.iter()) {
        by_org
            .entry(link.event.org_id.as_str())
            .or_default()
            .push((link, row));
    }
    for (org_id, events) in &by_org {
        insert_events(ctx.conn(org_id).await?, events).await?;
    }
    for org_id in &org_ids {
        if let Some((seq, hash)) = heads.get(*org_id) {
            sqlx::query("UPDATE audit_heads SET seq = $1, hash = $2 WHERE org_id = $3")
                .bind(seq_to_sql(*seq)?)
                .bind(aaf_core::audit::hex32::encode(hash))
                .bind(org_id)
                .execute(ctx.conn(org_id).await?)
                .await?;
        }
    }
    Ok(chained)
}

/// One multi-row insert of an organisation's new actions.
async fn insert_actions(
    conn: &mut PgConnection,
    rows: &[(&ActionRecord, &ActionTexts)],
) -> Result<(), StoreError> {
    let mut cols: [Vec<Option<String>>; 17] = Default::default();
    let mut approvals_required: Vec<Option<i64>> = Vec::with_capacity(rows.len());
    let mut signals_col: Vec<Option<String>> = Vec::with_capacity(rows.len());
    let mut data_keys: Vec<Option<String>> = Vec::with_capacity(rows.len());
    for (r, texts) in rows {
        let ActionTexts::Insert {
            params,
            context,
            policies,
            result,
            signals,
            data_key,
        } = texts
        else {
            continue;
        };
        let values = [
            Some(r.id.clone()),
            Some(r.org_id.clone()),
            Some(r.agent_id.clone()),
            Some(r.tool.clone()),
            Some(r.operation.clone()),
            Some(params.clone()),
            Some(context.clone()),
            Some(r.decision.clone()),
            Some(r.reason.clone()),
            r.risk_level.clone(),
            Some(r.status.as_str().to_string()),
            Some(policies.clone()),
            result.clone(),
            Some(r.created_at.clone()),
            Some(r.updated_at.clone()),
            r.digest.clone(),
            r.expires_at.clone(),
        ];
        for (col, value) in cols.iter_mut().zip(values) {
            col.push(value);
        }
        approvals_required.push(r.approvals_required.map(i64::from));
        signals_col.push(signals.clone());
        data_keys.push(data_key.clone());
    }
    let sql = format!(
        "INSERT INTO actions ({ACTION_COLUMNS}) SELECT * FROM UNNEST(\
         $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
         $14::text[], $15::text[], $16::text[], $17::text[], $18::int8[], $19::text[], \
         $20::text[])"
    );
    let mut query = sqlx::query(&sql);
    for col in cols {
        query = query.bind(col);
    }
    query = query
        .bind(approvals_required)
        .bind(signals_col)
        .bind(data_keys);
    query
        .execute(conn)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(detail) => {
                StoreError::Conflict(format!("an action with this id already exists ({detail})"))
            }
            other => other,
        })?;
    Ok(())
}

/// One multi-row insert of an organisation's new events.
async fn insert_events(
    conn: &mut PgConnection,
    events: &[(&ChainedEvent, &EventRow)],
) -> Result<(), StoreError> {
    let mut org_ids = Vec::with_capacity(events.len());
    let mut seqs = Vec::with_capacity(events.len());
    let mut ts = Vec::with_capacity(events.len());
    let mut agent_ids = Vec::with_capacity(events.len());
    let mut action_ids = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut data = Vec::with_capacity(events.len());
    let mut prev = Vec::with_capacity(events.len());
    let mut hashes = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    for (link, row) in events {
        let e = &link.event;
        org_ids.push(e.org_id.clone());
        seqs.push(row.seq);
        ts.push(e.ts.clone());
        agent_ids.push(e.agent_id.clone());
        action_ids.push(e.action_id.clone());
        types.push(e.event_type.clone());
        data.push(row.data.clone());
        prev.push(row.prev_hash.clone());
        hashes.push(row.hash.clone());
        payloads.push(row.payload.clone());
    }
    sqlx::query(&format!(
        "INSERT INTO audit_events ({EVENT_COLUMNS}) SELECT * FROM UNNEST(\
         $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::text[])"
    ))
    .bind(org_ids)
    .bind(seqs)
    .bind(ts)
    .bind(agent_ids)
    .bind(action_ids)
    .bind(types)
    .bind(data)
    .bind(prev)
    .bind(hashes)
    .bind(payloads)
    .execute(conn)
    .await
    .map_err(|e| match StoreError::from(e) {
        // A duplicate (org_id, seq) means the head and the events disagree.
        StoreError::Conflict(detail) => StoreError::Corrupt(format!(
            "audit chain head is behind its events ({detail}): run audit verification"
        )),
        other => other,
    })?;
    Ok(())
}

fn conflict(e: sqlx::Error, message: &str) -> StoreError {
    match StoreError::from(e) {
        StoreError::Conflict(detail) => StoreError::Conflict(format!("{message} ({detail})")),
        other => other,
    }
}

/// Applies one mutation in its organisation's context; see [`Mutation`].
async fn apply_mutation(
    ctx: &mut OrgContext<'_, '_>,
    mutation: &Mutation,
) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertOrg(org) => {
            sqlx::query(sql::INSERT_ORG)
                .bind(&org.id)
                .bind(&org.name)
                .bind(&org.plan)
                .bind(&org.created_at)
                .execute(ctx.conn(&org.id).await?)
                .await
                .map_err(|e| conflict(e, "an organisation with this name already exists"))?;
        }
        Mutation::InsertUser(user) => {
            sqlx::query(sql::INSERT_USER)
                .bind(&user.id)
                .bind(&user.org_id)
                .bind(&user.name)
                .bind(&user.role)
                .bind(&user.created_at)
                .bind(&user.updated_at)
                .execute(ctx.conn(&user.org_id).await?)
                .await
                .map_err(|e| {
                    conflict(
                        e,
                        "a user with this name already exists in the organisation",
                    )
                })?;
        }
        Mutation::SetUserRole {
            org_id,
            user_id,
            role,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let current = current_role(conn, org_id, user_id).await?;
            if current == "admin" && role != "admin" {
                ensure_other_admin(conn, org_id, user_id).await?;
            }
            sqlx::query(sql::SET_USER_ROLE)
                .bind(role)
                .bind(now)
                .bind(org_id)
                .bind(user_id)
                .execute(conn)
                .await?;
        }
        Mutation::DeleteUser {
            org_id,
            user_id,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            if current_role(conn, org_id, user_id).await? == "admin" {
                ensure_other_admin(conn, org_id, user_id).await?;
            }
            sqlx::query(sql::DELETE_USER)
                .bind(now)
                .bind(org_id)
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
            sqlx::query(sql::REVOKE_USER_TOKENS)
                .bind(now)
                .bind(org_id)
                .bind(user_id)
                .execute(conn)
                .await?;
        }
        Mutation::InsertToken {
            id,
            org_id,
            user_id,
            name,
            token_hash,
            prefix,
            created_at,
        } => {
            let done = sqlx::query(sql::INSERT_TOKEN)
                .bind(id)
                .bind(org_id)
                .bind(user_id)
                .bind(name)
                .bind(token_hash)
                .bind(prefix)
                .bind(created_at)
                .execute(ctx.conn(org_id).await?)
                .await
                .map_err(|e| conflict(e, "a token with this hash already exists"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("user {user_id}")));
            }
        }
        Mutation::InsertAgent(agent) => {
            if !agent.risk_score.is_finite() {
                return Err(StoreError::Invalid(format!(
                    "risk score must be a finite number, got {}",
                    agent.risk_score
                )));
            }
            sqlx::query(sql::INSERT_AGENT)
                .bind(&agent.id)
                .bind(&agent.org_id)
                .bind(&agent.name)
                .bind(agent.risk_score)
                .bind(&agent.public_key)
                .bind(&agent.created_at)
                .execute(ctx.conn(&agent.org_id).await?)
                .await
                .map_err(|e| {
                    conflict(
                        e,
                        "an agent with this name already exists in the organisation",
                    )
                })?;
        }
        Mutation::InsertAgentKey { key, key_hash } => {
            let tools = crate::rows::tools_text(key.tools.as_ref())?;
            let done = sqlx::query(sql::INSERT_AGENT_KEY)
                .bind(&key.id)
                .bind(&key.org_id)
                .bind(&key.agent_id)
                .bind(key_hash)
                .bind(&key.prefix)
                .bind(&key.created_at)
                .bind(&key.expires_at)
                .bind(tools)
                .bind(&key.created_by)
                .execute(ctx.conn(&key.org_id).await?)
                .await
                .map_err(|e| conflict(e, "an agent key with this hash already exists"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("agent {}", key.agent_id)));
            }
        }
        Mutation::ShortenAgentKey {
            org_id,
            agent_id,
            key_id,
            expires_at,
        } => {
            let done = sqlx::query(sql::SHORTEN_AGENT_KEY)
                .bind(expires_at)
                .bind(org_id)
                .bind(agent_id)
                .bind(key_id)
                .execute(ctx.conn(org_id).await?)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("live key {key_id}")));
            }
            notify_key_change(ctx.conn(org_id).await?, org_id).await?;
        }
        Mutation::RevokeAgentKey {
            org_id,
            agent_id,
            key_id,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let revoked: Option<Option<String>> = sqlx::query_scalar(sql::KEY_REVOKED_AT_LOCKED)
                .bind(org_id)
                .bind(agent_id)
                .bind(key_id)
                .fetch_optional(&mut *conn)
                .await?;
            crate::rows::check_revocable(key_id, revoked)?;
            sqlx::query(sql::REVOKE_AGENT_KEY)
                .bind(now)
                .bind(org_id)
                .bind(agent_id)
                .bind(key_id)
                .execute(&mut *conn)
                .await?;
            notify_key_change(conn, org_id).await?;
        }
        Mutation::UseNonce {
            org_id,
            agent_id,
            nonce,
            expires_at,
        } => {
            sqlx::query(sql::USE_NONCE)
                .bind(org_id)
                .bind(agent_id)
                .bind(nonce)
                .bind(expires_at)
                .execute(ctx.conn(org_id).await?)
                .await
                .map_err(|e| conflict(e, "the signature nonce was used before"))?;
        }
        Mutation::InsertApprovalVote(v) => {
            let done = sqlx::query(sql::INSERT_APPROVAL_VOTE)
                .bind(&v.org_id)
                .bind(&v.action_id)
                .bind(&v.user_id)
                .bind(&v.user_name)
                .bind(&v.vote)
                .bind(&v.comment)
                .bind(&v.created_at)
                .execute(ctx.conn(&v.org_id).await?)
                .await
                .map_err(|e| {
                    crate::error::duplicate_vote(conflict(
                        e,
                        "this user has already answered this action",
                    ))
                })?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("action {}", v.action_id)));
            }
        }
        Mutation::InsertWebhook(w) => {
            let events = crate::prepared::json_text(&serde_json::json!(w.events))?;
            sqlx::query(sql::INSERT_WEBHOOK)
                .bind(&w.id)
                .bind(&w.org_id)
                .bind(&w.url)
                .bind(events)
                .bind(&w.format)
                .bind(&w.secret)
                .bind(&w.created_at)
                .bind(&w.created_by)
                .execute(ctx.conn(&w.org_id).await?)
                .await
                .map_err(|e| conflict(e, "a webhook with this id already exists"))?;
        }
        Mutation::DisableWebhook { org_id, id, now } => {
            let done = sqlx::query(sql::DISABLE_WEBHOOK)
                .bind(now)
                .bind(org_id)
                .bind(id)
                .execute(ctx.conn(org_id).await?)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("webhook {id}")));
            }
        }
        Mutation::InsertDelivery(d) => {
            let payload = crate::prepared::json_text(&d.payload)?;
            let done = sqlx::query(sql::INSERT_DELIVERY)
                .bind(&d.id)
                .bind(&d.org_id)
                .bind(&d.webhook_id)
                .bind(&d.event)
                .bind(&d.action_id)
                .bind(payload)
                .bind(&d.status)
                .bind(i64::from(d.attempts))
                .bind(&d.next_attempt_at)
                .bind(&d.created_at)
                .bind(&d.updated_at)
                .execute(ctx.conn(&d.org_id).await?)
                .await
                .map_err(|e| conflict(e, "a delivery with this id already exists"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("webhook {}", d.webhook_id)));
            }
        }
        Mutation::PutPolicyObject {
            version: v,
            name,
            active_version,
        } => {
            let conn = ctx.conn(&v.org_id).await?;
            if v.version == 1 {
                sqlx::query(sql::INSERT_POLICY_OBJECT)
                    .bind(&v.org_id)
                    .bind(&v.kind)
                    .bind(&v.key)
                    .bind(name)
                    .bind(active_version)
                    .bind(v.version)
                    .bind(&v.created_at)
                    .bind(&v.created_at)
                    .bind(&v.author)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| conflict(e, &format!("a {} named {name} exists", v.kind)))?;
            } else {
                let done = sqlx::query(sql::UPDATE_POLICY_OBJECT)
                    .bind(name)
                    .bind(v.version)
                    .bind(active_version)
                    .bind(&v.created_at)
                    .bind(&v.org_id)
                    .bind(&v.kind)
                    .bind(&v.key)
                    .bind(v.version - 1)
                    .execute(&mut *conn)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(crate::rows::policy_object_changed(&v.kind, &v.key));
                }
            }
            sqlx::query(sql::INSERT_POLICY_OBJECT_VERSION)
                .bind(&v.org_id)
                .bind(&v.kind)
                .bind(&v.key)
                .bind(v.version)
                .bind(&v.body)
                .bind(&v.mode)
                .bind(&v.sha256)
                .bind(&v.author)
                .bind(&v.created_at)
                .execute(&mut *conn)
                .await
                .map_err(|e| conflict(e, "this version exists already"))?;
        }
        Mutation::ActivatePolicyObjectVersion {
            org_id,
            kind,
            key,
            version,
            now,
        } => {
            let done = sqlx::query(sql::ACTIVATE_POLICY_OBJECT_VERSION)
                .bind(version)
                .bind(now)
                .bind(org_id)
                .bind(kind)
                .bind(key)
                .execute(ctx.conn(org_id).await?)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "{kind} {key} version {version}"
                )));
            }
        }
        Mutation::DisablePolicyObject {
            org_id,
            kind,
            key,
            now,
        } => {
            let done = sqlx::query(sql::DISABLE_POLICY_OBJECT)
                .bind(now)
                .bind(org_id)
                .bind(kind)
                .bind(key)
                .execute(ctx.conn(org_id).await?)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("{kind} {key}")));
            }
        }
        Mutation::BumpPolicyGeneration {
            org_id,
            expected,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let done = if *expected == 0 {
                sqlx::query(sql::INSERT_POLICY_GENERATION)
                    .bind(org_id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| crate::error::stale(conflict(e, POLICIES_CHANGED)))?
            } else {
                sqlx::query(sql::BUMP_POLICY_GENERATION)
                    .bind(now)
                    .bind(org_id)
                    .bind(expected)
                    .execute(&mut *conn)
                    .await?
            };
            if done.rows_affected() == 0 {
                return Err(StoreError::Stale(POLICIES_CHANGED.into()));
            }
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(POLICY_CHANGES)
                .bind(org_id)
                .execute(&mut *conn)
                .await?;
        }
        Mutation::InsertPolicyRevision(r) => {
            let bundle = crate::prepared::json_text(&r.bundle)?;
            sqlx::query(sql::INSERT_POLICY_REVISION)
                .bind(&r.org_id)
                .bind(&r.revision)
                .bind(bundle)
                .bind(&r.created_at)
                .execute(ctx.conn(&r.org_id).await?)
                .await?;
        }
        Mutation::InsertShadowResult(r) => {
            sqlx::query(sql::INSERT_SHADOW_RESULT)
                .bind(&r.org_id)
                .bind(&r.policy_key)
                .bind(r.policy_version)
                .bind(&r.action_id)
                .bind(&r.enforced)
                .bind(&r.shadow)
                .bind(i64::from(r.differs))
                .bind(&r.created_at)
                .execute(ctx.conn(&r.org_id).await?)
                .await?;
        }
        Mutation::InsertKillSwitch(k) => {
            let conn = ctx.conn(&k.org_id).await?;
            sqlx::query(sql::INSERT_KILL_SWITCH)
                .bind(&k.id)
                .bind(&k.org_id)
                .bind(k.scope.as_str())
                .bind(&k.agent_id)
                .bind(&k.tool)
                .bind(&k.reason)
                .bind(k.source.as_str())
                .bind(&k.created_at)
                .bind(&k.created_by)
                .bind(&k.expires_at)
                .execute(&mut *conn)
                .await
                .map_err(|e| conflict(e, "a kill switch with this id already exists"))?;
            bump_runtime_generation(conn, &k.org_id, &k.created_at).await?;
        }
        Mutation::ReleaseKillSwitch {
            org_id,
            id,
            by,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(sql::RELEASE_KILL_SWITCH)
                .bind(now)
                .bind(by)
                .bind(org_id)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("kill switch {id}")));
            }
            bump_runtime_generation(conn, org_id, now).await?;
        }
        Mutation::InsertRateLimit(l, meta) => {
            let conn = ctx.conn(&l.org_id).await?;
            sqlx::query(sql::INSERT_RATE_LIMIT)
                .bind(&l.id)
                .bind(&l.org_id)
                .bind(l.scope.as_str())
                .bind(&l.agent_id)
                .bind(&l.tool)
                .bind(i64::from(l.limit))
                .bind(l.window.as_str())
                .bind(i64::from(l.burst))
                .bind(&meta.created_at)
                .bind(&meta.created_by)
                .bind(l.mode.as_str())
                .execute(&mut *conn)
                .await
                .map_err(|e| conflict(e, "a rate limit with this id already exists"))?;
            bump_runtime_generation(conn, &l.org_id, &meta.created_at).await?;
        }
        Mutation::DeleteRateLimit {
            org_id,
            id,
            by,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            let done = sqlx::query(sql::DELETE_RATE_LIMIT)
                .bind(now)
                .bind(by)
                .bind(org_id)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("rate limit {id}")));
            }
            bump_runtime_generation(conn, org_id, now).await?;
        }
        Mutation::RevokeAllAgentKeys {
            org_id,
            agent_id,
            now,
        } => {
            let conn = ctx.conn(org_id).await?;
            sqlx::query(sql::REVOKE_ALL_AGENT_KEYS)
                .bind(now)
                .bind(org_id)
                .bind(agent_id)
                .execute(&mut *conn)
                .await?;
            notify_key_change(conn, org_id).await?;
        }
        Mutation::InsertAgentSnapshot(snap) => {
            let text = crate::prepared::json_text(&snap.snapshot)?;
            sqlx::query(sql::INSERT_AGENT_SNAPSHOT)
                .bind(&snap.id)
                .bind(&snap.org_id)
                .bind(&snap.agent_id)
                .bind(&snap.kill_switch_id)
                .bind(&snap.created_at)
                .bind(&snap.created_by)
                .bind(&snap.sha256)
                .bind(text)
                .execute(ctx.conn(&snap.org_id).await?)
                .await
                .map_err(|e| conflict(e, "a snapshot with this id already exists"))?;
        }
        Mutation::InsertBudget { .. }
        | Mutation::UpdateBudget { .. }
        | Mutation::DeleteBudget { .. }
        | Mutation::SettleBudget { .. }
        | Mutation::SetCircuitBreakers { .. } => budgets::apply_mutation(ctx, mutation).await?,
        Mutation::InsertMcpServer(_)
        | Mutation::UpdateMcpServer { .. }
        | Mutation::DeleteMcpServer { .. }
        | Mutation::PinMcpTool(_)
        | Mutation::FlagMcpToolChange { .. }
        | Mutation::AcceptMcpTool { .. } => mcp::apply_mutation(ctx, mutation).await?,
        Mutation::InsertAlert(_) | Mutation::AlertTransition { .. } => {
            alerts::apply_mutation(ctx, mutation).await?
        }
        Mutation::PutAgentProfile { .. } => profiles::apply_mutation(ctx, mutation).await?,
        Mutation::ExtendAuditTree { .. }
        | Mutation::PutCheckpoint(_)
        | Mutation::SetDecisionLogCursor { .. } => evidence::apply_mutation(ctx, mutation).await?,
        Mutation::InsertDataKey(_)
        | Mutation::RotateDataKey { .. }
        | Mutation::DestroyDataKeys { .. }
        | Mutation::ShredAction { .. }
        | Mutation::SetRetention { .. }
        | Mutation::RemovePayloads { .. } => keys::apply_mutation(ctx, mutation).await?,
        Mutation::SetOrgSettings(settings) => {
            let timeout = crate::rows::timeout_to_sql(settings.approval_timeout_seconds)?;
            sqlx::query(sql::UPSERT_ORG_SETTINGS)
                .bind(&settings.org_id)
                .bind(i64::from(settings.four_eyes))
                .bind(timeout)
                .bind(&settings.updated_at)
                .bind(
                    settings
                        .outbound_detection
                        .as_ref()
                        .map(serde_json::Value::to_string),
                )
                .execute(ctx.conn(&settings.org_id).await?)
                .await?;
        }
    }
    Ok(())
}

/// The role of a current user (row locked); [`StoreError::NotFound`] for a missing or
/// deleted one.
async fn current_role(
    conn: &mut PgConnection,
    org_id: &str,
    user_id: &str,
) -> Result<String, StoreError> {
    sqlx::query_scalar(sql::CURRENT_ROLE_LOCKED)
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))
}

/// [`StoreError::Conflict`] unless the organisation has a current admin other than `user_id`.
/// The admins' rows are locked, so two concurrent demotions cannot both pass.
async fn ensure_other_admin(
    conn: &mut PgConnection,
    org_id: &str,
    user_id: &str,
) -> Result<(), StoreError> {
    let others: Vec<String> = sqlx::query_scalar(sql::OTHER_ADMINS_LOCKED)
        .bind(org_id)
        .bind(user_id)
        .fetch_all(conn)
        .await?;
    crate::rows::check_other_admins(others.len())
}
