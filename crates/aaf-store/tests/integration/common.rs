//! Shared helpers: test databases on both backends, raw connections, sample rows.
//!
//! Every test that does not depend on one backend's specifics is written once, as
//! `async fn name(db: TestDb)`, and instantiated for both backends with
//! [`both_backends!`]: `name::sqlite` runs on a SQLite file in a temporary directory,
//! `name::postgres` on a fresh PostgreSQL database (`aaf_t_<uuid>`) created on the server of
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`, a role allowed to
//! create databases) and dropped afterwards. When PostgreSQL cannot be reached the PostgreSQL
//! variants print `SKIPPED ...` and pass, unless `REQUIRE_POSTGRES_TESTS=1` (CI), which makes
//! them fail. `KEEP_TEST_DATABASES=1` keeps the databases for inspection.
//!
//! (No variable here starts with `AAF_`: the server treats unknown `AAF_*` variables as
//! configuration errors.)

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aaf_store::{
    ActionRecord, ActionWrite, Agent, NewEvent, Org, PgOptions, Store, StoreOptions, WriteUnit,
};
use serde_json::json;
use sqlx::postgres::PgRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Connection, PgConnection, Postgres, Sqlite, SqliteConnection};
use tempfile::TempDir;

/// Runs the test body `async fn $name(db: TestDb)` (defined next to the macro call) on both
/// backends, as the tests `$name::sqlite` and `$name::postgres`. Optional attributes after
/// the name replace `#[tokio::test]`, e.g.
/// `both_backends!(name, #[tokio::test(flavor = "multi_thread", worker_threads = 2)]);`.
macro_rules! both_backends {
    ($name:ident) => {
        both_backends!($name, #[tokio::test]);
    };
    ($name:ident, $(#[$attr:meta])+) => {
        mod $name {
            $(#[$attr])+
            async fn sqlite() {
                super::$name($crate::common::TestDb::sqlite().await).await;
            }

            $(#[$attr])+
            async fn postgres() {
                if let Some(db) =
                    $crate::common::TestDb::postgres(concat!(module_path!(), "::postgres")).await
                {
                    super::$name(db).await;
                }
            }
        }
    };
}

/// Runs the test body `async fn $name(db: TestDb)` on PostgreSQL only, as `$name::postgres`
/// (skipped like the PostgreSQL half of [`both_backends!`]); attributes as there.
macro_rules! postgres_only {
    ($name:ident) => {
        postgres_only!($name, #[tokio::test]);
    };
    ($name:ident, $(#[$attr:meta])+) => {
        mod $name {
            $(#[$attr])+
            async fn postgres() {
                if let Some(db) =
                    $crate::common::TestDb::postgres(concat!(module_path!(), "::postgres")).await
                {
                    super::$name(db).await;
                }
            }
        }
    };
}

/// A store on a fresh database of one backend.
pub struct TestDb {
    pub store: Store,
    // Dropped after `store`: the database outlives the store's connections.
    target: Target,
}

enum Target {
    Sqlite(TempDir),
    Postgres(PgDatabase),
}

impl TestDb {
    /// A store in a fresh temporary SQLite data directory.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        TestDb {
            store,
            target: Target::Sqlite(dir),
        }
    }

    /// A store on a fresh PostgreSQL database, or `None` (after printing why) when the
    /// server cannot be reached and `REQUIRE_POSTGRES_TESTS` is not `1`.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let database = PgDatabase::create(test).await?;
        let store = Store::open_postgres(&database.url, &PgOptions::default())
            .await
            .unwrap_or_else(|e| panic!("open_postgres({}): {e}", database.url));
        assert_eq!(store.backend_name(), "postgres");
        println!("backend: postgres (database {})", database.name);
        Some(TestDb {
            store,
            target: Target::Postgres(database),
        })
    }

    /// The PostgreSQL database, for PostgreSQL-only tests.
    pub fn pg(&self) -> &PgDatabase {
        match &self.target {
            Target::Postgres(database) => database,
            Target::Sqlite(_) => panic!("not a PostgreSQL test database"),
        }
    }

    /// Another store on the same database (another process or node; migrations already
    /// applied).
    pub async fn reopen(&self) -> Store {
        match &self.target {
            Target::Sqlite(dir) => open(dir.path()).await,
            Target::Postgres(database) => {
                Store::open_postgres(&database.url, &PgOptions::default())
                    .await
                    .unwrap()
            }
        }
    }

    /// Another store on the same database that seals with `master` (docs/encryption.md).
    pub async fn reopen_encrypted(&self, master: aaf_store::encryption::MasterKey) -> Store {
        match &self.target {
            Target::Sqlite(dir) => Store::open_sqlite(
                dir.path(),
                &StoreOptions {
                    master_key: Some(master),
                    ..StoreOptions::default()
                },
            )
            .await
            .unwrap(),
            Target::Postgres(database) => Store::open_postgres(
                &database.url,
                &PgOptions {
                    master_key: Some(master),
                    ..PgOptions::default()
                },
            )
            .await
            .unwrap(),
        }
    }

    /// A separate raw connection to the same database, bypassing the store (what an
    /// attacker with the file, or a database administrator, would use). On PostgreSQL it
    /// logs in as the tables' owner, whose `owner_access` policies let it see and change
    /// every organisation's rows (the default test admin, a superuser, bypasses them anyway).
    pub async fn raw(&self) -> Raw {
        match &self.target {
            Target::Sqlite(dir) => Raw::Sqlite(raw(dir.path()).await),
            Target::Postgres(database) => Raw::Postgres(database.owner().await),
        }
    }
}

/// Opens (read-write, default options) the SQLite store in `dir` and prints its backend.
pub async fn open(dir: &Path) -> Store {
    let store = Store::open_sqlite(dir, &StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.backend_name(), "sqlite");
    println!("backend: sqlite");
    store
}

/// A raw read-write connection to `<dir>/aaf.db`.
pub async fn raw(dir: &Path) -> SqliteConnection {
    let options = SqliteConnectOptions::new()
        .filename(dir.join(aaf_store::SQLITE_FILE_NAME))
        .busy_timeout(Duration::from_secs(10));
    SqliteConnection::connect_with(&options).await.unwrap()
}

// ---------------------------------------------------------------------------------------
// PostgreSQL test databases

/// The server's administrative URL (a role that may create databases and roles).
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn postgres_required() -> bool {
    std::env::var("REQUIRE_POSTGRES_TESTS").is_ok_and(|v| v.trim() == "1")
}

/// Set once the server was found unreachable, so that later tests skip at once.
static UNREACHABLE: AtomicBool = AtomicBool::new(false);
/// Whether the (uncaptured) one-line notice for the whole run was printed.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);

/// `url` with its user (and password) replaced by `user` when given, and its database by
/// `database`; the query string is kept.
pub fn url_with(url: &str, user: Option<&str>, database: &str) -> String {
    let (scheme, rest) = url
        .split_once("://")
        .unwrap_or_else(|| panic!("not a URL: {url}"));
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let authority = match user {
        Some(user) => format!("{user}@{host}"),
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Connects to the admin URL, at most 5 s.
async fn connect_admin(admin_url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(admin_url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connection timed out after 5 s".to_string()),
    }
}

/// A fresh database on the test server, dropped (`WITH (FORCE)`) when this is dropped.
pub struct PgDatabase {
    /// `aaf_t_<uuid>`.
    pub name: String,
    /// The admin URL pointed at this database: the migrating user, i.e. the tables' owner.
    pub url: String,
    /// The admin URL (its own database), for creating and dropping databases and roles.
    pub admin_url: String,
}

impl PgDatabase {
    /// Creates the database, or returns `None` when the server is unreachable (panics
    /// instead when `REQUIRE_POSTGRES_TESTS=1`).
    async fn create(test: &str) -> Option<PgDatabase> {
        let admin_url = admin_url();
        let skip = |reason: &str| {
            if postgres_required() {
                panic!(
                    "PostgreSQL not reachable at {admin_url} ({reason}) and REQUIRE_POSTGRES_TESTS=1: {test}"
                );
            }
            eprintln!("SKIPPED (PostgreSQL not reachable at {admin_url}: {reason}): {test}");
            if !ANNOUNCED.swap(true, Ordering::SeqCst) {
                // Past the test harness's output capture, once per run.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: PostgreSQL not reachable at {admin_url} ({reason}): the PostgreSQL \
                     variants of the store tests are SKIPPED (set TEST_DATABASE_URL, or \
                     REQUIRE_POSTGRES_TESTS=1 to fail instead)"
                );
            }
        };
        if UNREACHABLE.load(Ordering::SeqCst) && !postgres_required() {
            skip("an earlier test could not connect");
            return None;
        }
        let mut admin = match connect_admin(&admin_url).await {
            Ok(conn) => conn,
            Err(reason) => {
                UNREACHABLE.store(true, Ordering::SeqCst);
                skip(&reason);
                return None;
            }
        };
        let name = format!("aaf_t_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin_url}: {e}"));
        let _ = admin.close().await;
        Some(PgDatabase {
            url: url_with(&admin_url, None, &name),
            name,
            admin_url,
        })
    }

    /// A new connection to this database as the owner.
    pub async fn owner(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }

    /// A new connection to the admin database.
    pub async fn admin(&self) -> PgConnection {
        connect_admin(&self.admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.admin_url))
    }

    /// This database's URL for another login role (no password: trust or peer auth).
    pub fn url_as(&self, user: &str) -> String {
        url_with(&self.admin_url, Some(user), &self.name)
    }
}

impl Drop for PgDatabase {
    /// Drops the database on a thread with a runtime of its own (this may run inside a
    /// runtime, or while a test panics); reports failures, never panics.
    fn drop(&mut self) {
        if std::env::var("KEEP_TEST_DATABASES").is_ok_and(|v| v.trim() == "1") {
            eprintln!("kept test database {}", self.name);
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::Builder::new()
            .name("drop-test-database".to_string())
            .spawn(move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    let work = async {
                        let mut admin = connect_admin(&admin_url).await?;
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut admin)
                            .await
                            .map_err(|e| e.to_string())?;
                        let _ = admin.close().await;
                        Ok(())
                    };
                    tokio::time::timeout(Duration::from_secs(30), work)
                        .await
                        .map_err(|_| "timed out after 30 s".to_string())?
                })
            });
        let outcome = match dropped {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err("the thread panicked".to_string())),
            Err(e) => Err(format!("cannot start a thread: {e}")),
        };
        if let Err(e) = outcome {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

/// A login role created for one test and dropped (with `DROP ROLE IF EXISTS`) at its end.
pub struct TestRole {
    pub name: String,
    admin_url: String,
}

impl TestRole {
    /// `CREATE ROLE <prefix><uuid> <options>`.
    pub async fn create(db: &PgDatabase, prefix: &str, options: &str) -> TestRole {
        let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        let mut admin = db.admin().await;
        sqlx::query(&format!("CREATE ROLE \"{name}\" {options}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE ROLE {name}: {e}"));
        let _ = admin.close().await;
        TestRole {
            name,
            admin_url: db.admin_url.clone(),
        }
    }
}

impl Drop for TestRole {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = connect_admin(&admin_url).await?;
                sqlx::query(&format!("DROP ROLE IF EXISTS \"{name}\""))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok(())
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the thread panicked".to_string()));
        if let Err(e) = dropped {
            eprintln!("warning: could not drop test role {}: {e}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw connections

/// A bind value of [`Raw`] statements. Integers are bound as 64-bit (PostgreSQL's `seq` is
/// BIGINT), everything else as text.
#[derive(Debug, Clone)]
pub enum Val {
    Text(String),
    Int(i64),
    Null,
}

impl From<&str> for Val {
    fn from(value: &str) -> Val {
        Val::Text(value.to_string())
    }
}

impl From<String> for Val {
    fn from(value: String) -> Val {
        Val::Text(value)
    }
}

impl From<&String> for Val {
    fn from(value: &String) -> Val {
        Val::Text(value.clone())
    }
}

impl From<i64> for Val {
    fn from(value: i64) -> Val {
        Val::Int(value)
    }
}

/// `sql` with each `?` placeholder (outside quoted literals and identifiers) turned into
/// `$1..$n`, for PostgreSQL.
pub fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (None, '?') => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            _ => out.push(c),
        }
    }
    out
}

/// What a scalar query may return on both backends.
pub trait Scalar:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + Send
    + Unpin
{
}

impl<T> Scalar for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + Send
        + Unpin
{
}

/// What a row may be read as on both backends (e.g. a tuple).
pub trait Record:
    for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin
{
}

/// Binds every [`Val`] of `$binds` to `$query` (any sqlx query type of either backend).
macro_rules! bind_all {
    ($query:ident, $binds:expr) => {
        for bind in $binds {
            $query = match bind {
                Val::Text(s) => $query.bind(s.clone()),
                Val::Int(i) => $query.bind(*i),
                Val::Null => $query.bind(None::<String>),
            };
        }
    };
}

/// A raw connection to a test database, bypassing the store: SQLite, or PostgreSQL as the
/// tables' owner (whom the `owner_access` policies let see and change every organisation's
/// rows). Statements use `?` placeholders on both.
pub enum Raw {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Raw {
    /// Runs one statement; returns the number of rows affected.
    ///
    /// # Errors
    ///
    /// The database's error, e.g. an append-only trigger's.
    pub async fn try_exec(&mut self, sql: &str, binds: &[Val]) -> Result<u64, sqlx::Error> {
        match self {
            Raw::Sqlite(conn) => {
                let mut query = sqlx::query::<Sqlite>(sql);
                bind_all!(query, binds);
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }
            Raw::Postgres(conn) => {
                let sql = numbered_placeholders(sql);
                let mut query = sqlx::query::<Postgres>(&sql);
                bind_all!(query, binds);
                Ok(query.execute(&mut *conn).await?.rows_affected())
            }
        }
    }

    /// [`Raw::try_exec`] that must succeed.
    pub async fn exec(&mut self, sql: &str, binds: &[Val]) -> u64 {
        self.try_exec(sql, binds)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The one value of the one row of a query.
    pub async fn scalar<T: Scalar>(&mut self, sql: &str, binds: &[Val]) -> T {
        let result = match self {
            Raw::Sqlite(conn) => {
                let mut query = sqlx::query_scalar::<Sqlite, T>(sql);
                bind_all!(query, binds);
                query.fetch_one(&mut *conn).await
            }
            Raw::Postgres(conn) => {
                let sql = numbered_placeholders(sql);
                let mut query = sqlx::query_scalar::<Postgres, T>(&sql);
                bind_all!(query, binds);
                query.fetch_one(&mut *conn).await
            }
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Every row of a query, each read as `T` (e.g. `(String, i64)`).
    pub async fn rows<T: Record>(&mut self, sql: &str, binds: &[Val]) -> Vec<T> {
        let result = match self {
            Raw::Sqlite(conn) => {
                let mut query = sqlx::query_as::<Sqlite, T>(sql);
                bind_all!(query, binds);
                query.fetch_all(&mut *conn).await
            }
            Raw::Postgres(conn) => {
                let sql = numbered_placeholders(sql);
                let mut query = sqlx::query_as::<Postgres, T>(&sql);
                bind_all!(query, binds);
                query.fetch_all(&mut *conn).await
            }
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The names of the schema's tables, sorted.
    pub async fn tables(&mut self) -> Vec<String> {
        let sql = match self {
            Raw::Sqlite(_) => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            Raw::Postgres(_) => {
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            }
        };
        self.rows::<(String,)>(sql, &[])
            .await
            .into_iter()
            .map(|(name,)| name)
            .collect()
    }

    /// Drops the triggers that make `audit_events` append-only: they stop mistakes, not
    /// someone with the file or the owner's password.
    pub async fn drop_append_only_triggers(&mut self) {
        let statements: &[&str] = match self {
            Raw::Sqlite(_) => &[
                "DROP TRIGGER audit_events_no_update",
                "DROP TRIGGER audit_events_no_delete",
            ],
            Raw::Postgres(_) => &[
                "DROP TRIGGER audit_events_no_delete ON audit_events",
                "DROP TRIGGER audit_events_payload_removal_only ON audit_events",
            ],
        };
        for sql in statements {
            self.exec(sql, &[]).await;
        }
    }

    /// Makes `audit_events` disappear under the store (every write then fails); returns
    /// what [`Raw::restore_audit_events`] needs to put back an empty table of the same
    /// shape.
    pub async fn remove_audit_events(&mut self) -> Vec<String> {
        match self {
            Raw::Sqlite(_) => {
                let create: String = self
                    .scalar(
                        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'audit_events'",
                        &[],
                    )
                    .await;
                self.exec("DROP TABLE audit_events", &[]).await;
                vec![create]
            }
            Raw::Postgres(_) => {
                // Renamed away rather than dropped, so that the empty replacement can copy
                // its definition; grants and row-level security are set up as the
                // migration does.
                self.exec(
                    "ALTER TABLE audit_events RENAME TO audit_events_removed",
                    &[],
                )
                .await;
                [
                    "CREATE TABLE audit_events (LIKE audit_events_removed INCLUDING ALL)",
                    "GRANT SELECT, INSERT ON audit_events TO aaf_app",
                    "ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY",
                    "ALTER TABLE audit_events FORCE ROW LEVEL SECURITY",
                    "CREATE POLICY tenant_isolation ON audit_events TO aaf_app \
                     USING (org_id = current_setting('app.org_id', true)) \
                     WITH CHECK (org_id = current_setting('app.org_id', true))",
                    "CREATE POLICY owner_access ON audit_events TO CURRENT_USER \
                     USING (true) WITH CHECK (true)",
                ]
                .map(String::from)
                .to_vec()
            }
        }
    }

    /// Creates an empty `audit_events` again (see [`Raw::remove_audit_events`]).
    pub async fn restore_audit_events(&mut self, statements: &[String]) {
        for sql in statements {
            self.exec(sql, &[]).await;
        }
    }

    /// Holds what the store's next commit to `org_id`'s chain must wait for, until
    /// [`Raw::release`]: SQLite's write lock (`BEGIN IMMEDIATE`), or on PostgreSQL the lock
    /// on the chain's head row.
    pub async fn hold_write_lock(&mut self, org_id: &str) {
        match self {
            Raw::Sqlite(_) => {
                self.exec("BEGIN IMMEDIATE", &[]).await;
            }
            Raw::Postgres(_) => {
                self.exec("BEGIN", &[]).await;
                let seq: i64 = self
                    .scalar(
                        "SELECT seq FROM audit_heads WHERE org_id = ? FOR UPDATE",
                        &[org_id.into()],
                    )
                    .await;
                assert!(seq > 0);
            }
        }
    }

    /// Ends the transaction of [`Raw::hold_write_lock`].
    pub async fn release(&mut self) {
        self.exec("COMMIT", &[]).await;
    }
}

// ---------------------------------------------------------------------------------------
// Sample data

/// An RFC 3339 UTC timestamp with microseconds, distinct per `n`.
pub fn ts(n: u64) -> String {
    format!(
        "2026-11-21T05:{:02}:{:02}.{:06}Z",
        (n / 60_000_000) % 60,
        (n / 1_000_000) % 60,
        n % 1_000_000
    )
}

/// Creates an org named `name` with an admin token and one agent.
pub async fn org_with_agent(store: &Store, name: &str) -> (Org, Agent) {
    let org = store
        .create_org_with_admin_token(
            name,
            "self_hosted",
            "bootstrap",
            &format!("tokenhash-{name}"),
            "aaf_adm_x",
            &ts(0),
        )
        .await
        .unwrap();
    let agent = store
        .create_agent(
            &org.id,
            "agent-1",
            0.25,
            &format!("keyhash-{name}"),
            "aaf_agt_y",
            &ts(1),
            "bootstrap",
        )
        .await
        .unwrap();
    (org, agent)
}

/// A decided action with the given id.
pub fn action(org: &Org, agent: &Agent, id: &str) -> ActionRecord {
    ActionRecord {
        id: id.to_string(),
        org_id: org.id.clone(),
        agent_id: agent.id.clone(),
        tool: "http_proxy".into(),
        operation: "GET".into(),
        params: json!({"url": "https://example.com/a", "headers": {"b": 1, "a": 2}}),
        context: json!({"user": "u1"}),
        decision: "allow".into(),
        reason: "allowed by policy".into(),
        risk_level: Some("low".into()),
        status: aaf_core::action::ActionStatus::Allowed,
        policies: json!([{"policy": "base", "decision": "allow"}]),
        result: None,
        created_at: ts(10),
        updated_at: ts(10),
        // Round-tripped on both backends (set for approval-requiring actions).
        digest: Some(format!("{:064x}", id.len())),
        expires_at: Some(ts(3_600_000_000)),
        approvals_required: Some(2),
        version: 0,
        signals: None,
        withheld: None,
    }
}

/// The events of a decided action.
pub fn decided_event(org: &Org, agent: &Agent, action_id: &str, n: u64) -> NewEvent {
    NewEvent {
        org_id: org.id.clone(),
        ts: ts(n),
        agent_id: Some(agent.id.clone()),
        action_id: Some(action_id.to_string()),
        event_type: "action.decided".into(),
        data: json!({"decision": "allow", "reason": "ok", "n": n, "score": 0.5, "one": 1.0}),
    }
}

/// A unit inserting one action with two events.
pub fn action_unit(org: &Org, agent: &Agent, id: &str, n: u64) -> WriteUnit {
    let mut executed = decided_event(org, agent, id, n);
    executed.event_type = "action.executed".into();
    executed.data = json!({"status": 200, "bytes": n * 3});
    WriteUnit {
        mutations: Vec::new(),
        action: Some(ActionWrite::Insert(action(org, agent, id))),
        events: vec![decided_event(org, agent, id, n), executed],
    }
}

/// Asserts that every chain verifies and returns the number of events per chain.
pub async fn assert_all_chains_verify(store: &Store) -> Vec<(String, u64)> {
    let results = store.verify_audit().await.unwrap();
    results
        .into_iter()
        .map(|r| match r {
            Ok(summary) => (summary.org_id, summary.count),
            Err(e) => panic!("chain does not verify: {e}"),
        })
        .collect()
}

#[test]
fn placeholders_are_numbered_outside_literals() {
    assert_eq!(
        numbered_placeholders("UPDATE t SET a = ?, b = '?' WHERE \"c?\" = ? AND d = ?"),
        "UPDATE t SET a = $1, b = '?' WHERE \"c?\" = $2 AND d = $3"
    );
    assert_eq!(
        url_with("postgres://postgres@127.0.0.1:5432/test", None, "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        url_with(
            "postgresql://u:pw@h:1/test?sslmode=disable",
            Some("other"),
            "x"
        ),
        "postgresql://other@h:1/x?sslmode=disable"
    );
    assert_eq!(url_with("postgres://h", None, "x"), "postgres://h/x");
}
