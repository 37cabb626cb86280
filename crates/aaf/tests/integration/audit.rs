//! The audit chain through the server: every step is recorded, concurrent appends stay one
//! gap-free chain, and a restart continues it.

use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ALLOW_ALL};

fn assert_gap_free(events: &[Value]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64().unwrap(), i as u64 + 1, "gap at index {i}");
        if i > 0 {
            assert_eq!(
                e["prev_hash"],
                events[i - 1]["hash"],
                "broken link at seq {}",
                i + 1
            );
        } else {
            assert_eq!(e["prev_hash"], "0".repeat(64));
        }
    }
}

#[tokio::test]
async fn concurrent_actions_form_one_gap_free_chain() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("busy").await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let client = server.client.clone();
        let url = server.url("/v1/actions");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"tool": "search", "operation": "query", "params": {"t": t, "i": i}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                ids.push(v["id"].as_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let events = server.audit(None).await;
    assert_gap_free(&events);
    // Every acknowledged action is in the chain.
    for id in &ids {
        assert!(
            events
                .iter()
                .any(|e| e["type"] == "action.decided" && e["action_id"] == id.as_str()),
            "action {id} acknowledged but not in the audit chain"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_restart_continues_the_chain() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut server = TestServer::start(policies.path(), |_| {}).await;
    let data = server.take_data_dir();
    let (_, key) = server.create_agent("survivor").await;
    for _ in 0..3 {
        assert_eq!(
            server
                .act(&key, json!({"tool": "t", "operation": "o"}))
                .await
                .0,
            200
        );
    }
    let before = server.audit(None).await;
    server.stop().await;

    let server = TestServer::start_in(data.path(), policies.path(), |_| {}).await;
    // The agent and its key survive; the admin token from the first start still works.
    assert_eq!(
        server
            .act(&key, json!({"tool": "t", "operation": "o"}))
            .await
            .0,
        200
    );
    let after = server.audit(None).await;
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(&after[..before.len()], &before[..]);
    assert_gap_free(&after);
    server.stop().await;
}

#[tokio::test]
async fn audit_query_is_validated() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    for q in [
        "limit=0",
        "limit=5000",
        "after_seq=-1",
        "bogus=1",
        "chain=other-org",
    ] {
        let r = server
            .client
            .get(format!("{}?{q}", server.url("/v1/audit")))
            .bearer_auth(crate::common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
    }
    server.stop().await;
}
