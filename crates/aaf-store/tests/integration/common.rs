//! Shared helpers: temporary databases, raw connections, sample rows.

use std::path::Path;

use aaf_store::{ActionRecord, ActionWrite, Agent, NewEvent, Org, Store, StoreOptions, WriteUnit};
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

/// A store in a fresh temporary data directory.
pub struct TestDb {
    pub dir: TempDir,
    pub store: Store,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        TestDb { dir, store }
    }

    /// A separate raw connection to the same database file (what an attacker with the file
    /// would use).
    pub async fn raw(&self) -> SqliteConnection {
        raw(self.dir.path()).await
    }
}

/// Opens (read-write, default options) the store in `dir` and prints its backend.
pub async fn open(dir: &Path) -> Store {
    let store = Store::open_sqlite(dir, &StoreOptions::default())
        .await
        .unwrap();
    println!("backend: {}", store.backend_name());
    store
}

/// A raw read-write connection to `<dir>/aaf.db`.
pub async fn raw(dir: &Path) -> SqliteConnection {
    let options = SqliteConnectOptions::new()
        .filename(dir.join(aaf_store::SQLITE_FILE_NAME))
        .busy_timeout(std::time::Duration::from_secs(10));
    SqliteConnection::connect_with(&options).await.unwrap()
}

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
        status: "pending".into(),
        policies: json!([{"policy": "base", "decision": "allow"}]),
        result: None,
        created_at: ts(10),
        updated_at: ts(10),
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
