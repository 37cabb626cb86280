//! Measures audit commit throughput on a temporary SQLite database.
//!
//! Each action is one `actions` row and two audit events (`action.decided`,
//! `action.executed`), as on the decision path. Two runs:
//!
//! * `commit`: `Store::commit` called directly with batches of `BATCH` units;
//! * `writer`: `SUBMITTERS` tasks submitting one unit at a time through `AuditWriter`
//!   (group commit), as concurrent requests do.
//!
//! Run: `cargo run --release -p aaf-store --example commit_throughput -- [ACTIONS] [full|normal] [commit|writer|all]`
//! (`normal` selects `synchronous=NORMAL`; the default is `FULL`; the default phase is
//! `all`, which also times `verify_audit`). Numbers belong in `docs/performance.md`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aaf_store::{ActionRecord, ActionWrite, AuditWriter, NewEvent, Store, StoreOptions, WriteUnit};
use serde_json::json;

const BATCH: usize = 256;
const SUBMITTERS: usize = 512;

fn unit(org_id: &str, agent_id: &str, n: usize) -> WriteUnit {
    let id = uuid::Uuid::now_v7().to_string();
    let ts = format!(
        "2026-11-21T05:35:{:02}.{:06}Z",
        (n / 1_000_000) % 60,
        n % 1_000_000
    );
    let event = |event_type: &str, data: serde_json::Value| NewEvent {
        org_id: org_id.to_string(),
        ts: ts.clone(),
        agent_id: Some(agent_id.to_string()),
        action_id: Some(id.clone()),
        event_type: event_type.to_string(),
        data,
    };
    WriteUnit {
        mutations: Vec::new(),
        events: vec![
            event(
                "action.decided",
                json!({
                    "tool": "http_proxy", "operation": "GET", "decision": "allow",
                    "reason": "allowed by policy", "risk_level": "low",
                    "matched_policies": ["base"], "eval_time_us": 41,
                }),
            ),
            event(
                "action.executed",
                json!({"status": 200, "duration_ms": 12.5, "bytes": 5123}),
            ),
        ],
        action: Some(ActionWrite::Insert(ActionRecord {
            id: id.clone(),
            org_id: org_id.to_string(),
            agent_id: agent_id.to_string(),
            tool: "http_proxy".into(),
            operation: "GET".into(),
            params: json!({"url": format!("https://api.example.com/items/{n}"), "headers": {}}),
            context: json!({"user_id": "u-123", "session": "s-9"}),
            decision: "allow".into(),
            reason: "allowed by policy".into(),
            risk_level: Some("low".into()),
            status: aaf_core::action::ActionStatus::Executed,
            policies: json!([{"policy": "base", "decision": "allow", "eval_time_us": 41}]),
            result: Some(json!({"status": 200})),
            created_at: ts.clone(),
            updated_at: ts,
            digest: None,
            expires_at: None,
            approvals_required: None,
            version: 0,
            signals: None,
            withheld: None,
        })),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let actions: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let full = args.get(2).map(String::as_str) != Some("normal");
    let phase = args.get(3).map(String::as_str).unwrap_or("all");
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        synchronous_full: full,
        ..StoreOptions::default()
    };
    let store = Store::open_sqlite(dir.path(), &opts).await.unwrap();
    println!(
        "backend: {}, synchronous={}",
        store.backend_name(),
        if full { "FULL" } else { "NORMAL" }
    );
    let org = store
        .create_org_with_admin_token(
            "bench",
            "self_hosted",
            "t",
            "h",
            "p",
            "2026-11-21T05:35:00.000000Z",
        )
        .await
        .unwrap();
    let agent = store
        .create_agent(
            &org.id,
            "a",
            0.1,
            "k",
            "p",
            "2026-11-21T05:35:00.000000Z",
            "t",
        )
        .await
        .unwrap();

    // Direct batches.
    if phase == "commit" || phase == "all" {
        commit_phase(&store, &org.id, &agent.id, actions).await;
    }
    if phase == "writer" || phase == "all" {
        writer_phase(&store, &org.id, &agent.id, actions).await;
    }
    if phase == "all" {
        verify_phase(&store).await;
    }
}

async fn commit_phase(store: &Store, org_id: &str, agent_id: &str, actions: usize) {
    let started = Instant::now();
    let units: Vec<WriteUnit> = (0..actions).map(|n| unit(org_id, agent_id, n)).collect();
    println!(
        "(building {actions} units took {:.2} s)",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    for batch in units.chunks(BATCH) {
        store.commit(batch).await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "commit: {actions} actions in batches of {BATCH}: {secs:.2} s, {:.0} actions/s",
        actions as f64 / secs
    );
}

/// Through the group-commit writer.
async fn writer_phase(store: &Store, org_id: &str, agent_id: &str, actions: usize) {
    let writer = AuditWriter::spawn(store.clone(), BATCH);
    let per_task = actions / SUBMITTERS;
    let started = Instant::now();
    // Timestamps follow submission order, as a clock would.
    let clock = Arc::new(AtomicUsize::new(actions));
    let mut tasks = Vec::new();
    for _ in 0..SUBMITTERS {
        let writer = writer.clone();
        let clock = Arc::clone(&clock);
        let (org_id, agent_id) = (org_id.to_string(), agent_id.to_string());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_task {
                let n = clock.fetch_add(1, Ordering::Relaxed);
                writer.submit(unit(&org_id, &agent_id, n)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let total = per_task * SUBMITTERS;
    println!(
        "writer: {total} actions from {SUBMITTERS} concurrent submitters: {secs:.2} s, {:.0} actions/s",
        total as f64 / secs
    );
    writer.shutdown().await;
}

async fn verify_phase(store: &Store) {
    let started = Instant::now();
    let results = store.verify_audit().await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let events: u64 = results.iter().map(|r| r.as_ref().unwrap().count).sum();
    println!(
        "verify: {events} events in {secs:.2} s, {:.0} events/s",
        events as f64 / secs
    );
}
