//! The shared harness: start the server in-process on 127.0.0.1:0, a loopback upstream,
//! policy directories, and HTTP helpers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aaf_server::clock::Clock;
use aaf_server::config::Config;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The admin token the test servers are started with.
pub const ADMIN_TOKEN: &str = "aaf_at_test_admin_token_0123456789abcdefghijklmnop";

/// A policy that allows every action (for connector tests, where the connector's own
/// checks are what is tested).
pub const ALLOW_ALL: &str = "package test.allow_all\nimport rego.v1\ndecision := \"allow\"\n";

/// The path of the seeds' example policies.
pub fn examples(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies")
        .join(dir)
}

/// Reads `rel` from the shared third-party test data (`aaf_testdata::read`: fails in CI when
/// it is missing, skips with a NOTICE elsewhere).
pub fn read_testdata(rel: &str) -> Option<String> {
    aaf_testdata::read(rel)
}

/// Writes `files` (name, Rego) into a new temporary policy directory.
pub fn policy_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, rego) in files {
        std::fs::write(dir.path().join(name), rego).unwrap();
    }
    dir
}

/// A running server.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    _data: Option<TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with a fresh data directory.
    pub async fn start(policies: &Path, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_path_buf();
        let mut server = Self::start_in(&data_dir, policies, tweak).await;
        server._data = Some(data);
        server
    }

    /// Starts a server on an existing data directory (for restarts).
    pub async fn start_in(
        data_dir: &Path,
        policies: &Path,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        Self::start_with_clock(data_dir, policies, Clock::system(), tweak).await
    }

    /// Starts a server with a fresh data directory whose approval clock is `clock` (a manual
    /// clock lets a test move time instead of sleeping).
    pub async fn start_clocked(
        policies: &Path,
        clock: Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let data = tempfile::tempdir().unwrap();
        let data_dir = data.path().to_path_buf();
        let mut server = Self::start_with_clock(&data_dir, policies, clock, tweak).await;
        server._data = Some(data);
        server
    }

    /// Starts a server on `data_dir` with the approval clock `clock`.
    pub async fn start_with_clock(
        data_dir: &Path,
        policies: &Path,
        clock: Clock,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.to_path_buf(),
            policies: policies.to_path_buf(),
            admin_token: Some(aaf_core::secrets::Secret::new(ADMIN_TOKEN)),
            ..Config::default()
        };
        config.connectors.http.allow_private_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        tweak(&mut config);
        let (state, _) = aaf_server::app::prepare_with_clock(config, clock)
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            aaf_server::app::run(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        eprintln!(
            "test server on {addr}, database: sqlite ({})",
            data_dir.join("aaf.db").display()
        );
        TestServer {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            data_dir: data_dir.to_path_buf(),
            _data: None,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Stops the server gracefully and waits for the audit writer to flush.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }

    /// Keeps the temporary data directory alive beyond the server (for restarts).
    pub fn take_data_dir(&mut self) -> TempDir {
        self._data.take().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers an agent; returns (id, api key).
    pub async fn create_agent(&self, name: &str) -> (String, String) {
        let r = self
            .client
            .post(self.url("/v1/agents"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": name, "risk_score": 0.2}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["api_key"].as_str().unwrap().to_string(),
        )
    }

    /// Creates a user with `role`; returns (id, token).
    pub async fn create_user(&self, name: &str, role: &str) -> (String, String) {
        let (status, body) = self
            .post_json(
                "/v1/users",
                ADMIN_TOKEN,
                json!({"name": name, "role": role}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["id"].as_str().unwrap().to_string(),
            body["token"].as_str().unwrap().to_string(),
        )
    }

    /// `GET path` with a bearer token; returns (status, body).
    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Submits an action; returns (status, body).
    pub async fn act(&self, key: &str, body: Value) -> (u16, Value) {
        self.post_json("/v1/actions", key, body).await
    }

    pub async fn post_json(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.send_json(reqwest::Method::POST, path, key, body).await
    }

    /// `method path` with a JSON body and a bearer token; returns (status, body).
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        let r = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Runs the `aaf` binary with `args` against this server as `token` (`--server`,
    /// `--token`); returns (success, stdout, stderr).
    pub async fn cli(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_aaf"))
            .args(args)
            .args(["--server", &self.base, "--token", token])
            .env_remove("AAF_ADMIN_TOKEN")
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Reads the whole audit chain (`chain` = None for the admin's org, or "system").
    pub async fn audit(&self, chain: Option<&str>) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let mut url = format!("{}?after_seq={after}&limit=1000", self.url("/v1/audit"));
            if let Some(c) = chain {
                url.push_str(&format!("&chain={c}"));
            }
            let r = self
                .client
                .get(url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let page: Value = r.json().await.unwrap();
            let batch = page["events"].as_array().unwrap().clone();
            events.extend(batch);
            match page["next_after_seq"].as_u64() {
                Some(n) => after = n,
                None => return events,
            }
        }
    }
}

/// A request the upstream received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A loopback HTTP server that records what it receives and answers JSON.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let recorded = hits.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let recorded = recorded.clone();
                async move {
                    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    recorded.lock().unwrap().push(Hit {
                        headers: headers.clone(),
                        body,
                    });
                    axum::Json(json!({
                        "upstream": "ok",
                        "method": method.to_string(),
                        "path": uri.path(),
                        "received_body": body_json,
                        "cookie_seen": headers.contains_key("cookie"),
                    }))
                }
            },
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Upstream { addr, hits }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
pub struct PgDb {
    admin_url: String,
    pub name: String,
    /// The database's URL (as the `postgres` superuser, the tables' owner).
    pub url: String,
}

/// Creates a fresh database on the PostgreSQL of `TEST_DATABASE_URL` (default
/// `postgres://postgres@127.0.0.1:5432/test`). When PostgreSQL is not reachable the test is
/// skipped with a notice, unless `REQUIRE_POSTGRES_TESTS=1` (CI), which fails it.
pub async fn pg_db(test: &str) -> Option<PgDb> {
    use sqlx::Connection;
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let mut conn = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("REQUIRE_POSTGRES_TESTS").as_deref() == Ok("1") {
                panic!("{test}: PostgreSQL is required (REQUIRE_POSTGRES_TESTS=1) but not reachable at {admin_url}: {e}");
            }
            eprintln!("SKIPPED (PostgreSQL not reachable at {admin_url}: {e}): {test}");
            return None;
        }
    };
    let name = format!("aaf_e2e_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    eprintln!("{test}: database: postgres ({url})");
    Some(PgDb {
        admin_url,
        name,
        url,
    })
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            use sqlx::Connection;
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

/// Awaits `future`, failing the test if it takes more than a minute (a state that never
/// comes must not hang the suite).
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within 60 s"))
}
