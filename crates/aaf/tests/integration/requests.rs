//! Bad requests, authentication, limits, health and the OpenAPI document.

use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN, ALLOW_ALL};

#[tokio::test]
async fn authentication_failures_are_401_and_audited() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let body = json!({"tool": "t", "operation": "o"});

    let r = server
        .client
        .post(server.url("/v1/actions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");

    let secret = "aaf_ak_definitely_not_a_real_key_000000000000000";
    let (status, v) = server.act(secret, body.clone()).await;
    assert_eq!(status, 401, "{v}");
    // The admin token is valid but not an agent's: 403 (docs/security.md).
    let (status, v) = server.act(ADMIN_TOKEN, body.clone()).await;
    assert_eq!(status, 403, "{v}");
    // An agent key is valid but not a user's.
    let (_, key) = server.create_agent("a").await;
    let r = server
        .client
        .get(server.url("/v1/agents"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let system = server.audit(Some("system")).await;
    let rejected: Vec<_> = system
        .iter()
        .filter(|e| e["type"] == "request.rejected")
        .collect();
    assert_eq!(rejected.len(), 2, "{system:?}");
    let all = serde_json::to_string(&system).unwrap();
    assert!(
        !all.contains(secret),
        "a presented key was stored in the audit log"
    );
    assert!(!all.contains(&key));
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_field_and_audited() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (agent_id, key) = server.create_agent("a").await;

    let cases = [
        (json!({"operation": "o"}), "tool"),
        (json!({"tool": "t"}), "operation"),
        (json!({"tool": "", "operation": "o"}), "tool"),
        (
            json!({"tool": "t", "operation": "o", "params": [1, 2]}),
            "params",
        ),
        (
            json!({"tool": "t", "operation": "o", "context": "x"}),
            "context",
        ),
        (json!({"tool": 5, "operation": "o"}), "tool"),
        (
            json!({"tool": "t", "operation": "o", "agent_id": "someone-else"}),
            "agent_id",
        ),
    ];
    for (body, field) in cases {
        let (status, v) = server.act(&key, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {v}");
        assert_eq!(v["error"]["code"], "bad_request");
        assert_eq!(v["error"]["field"], field, "{body} -> {v}");
    }
    let r = server
        .client
        .post(server.url("/v1/actions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let events = server.audit(None).await;
    let rejected: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "request.rejected" && e["agent_id"] == agent_id.as_str())
        .collect();
    assert_eq!(rejected.len(), 8);
    assert_eq!(rejected[0]["data"]["status"], 400);
    assert!(events.iter().all(|e| e["type"] != "action.decided"));
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| c.limits.max_body_bytes = 4096).await;
    let (_, key) = server.create_agent("a").await;
    let big = "x".repeat(8192);
    let (status, v) = server
        .act(
            &key,
            json!({"tool": "t", "operation": "o", "params": {"blob": big}}),
        )
        .await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");
    let (status, _) = server
        .act(&key, json!({"tool": "t", "operation": "o"}))
        .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn agents_are_created_and_listed_without_keys() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (id, key) = server.create_agent("lister").await;
    assert!(key.starts_with("aaf_ak_"));
    let r = server
        .client
        .post(server.url("/v1/agents"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "lister"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    for (body, field) in [
        (json!({"name": "r", "risk_score": 1.5}), "risk_score"),
        (json!({"name": ""}), "name"),
    ] {
        let r = server
            .client
            .post(server.url("/v1/agents"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["field"], field);
    }
    let r = server
        .client
        .get(server.url("/v1/agents"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains(&key));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["agents"][0]["id"], id.as_str());
    assert_eq!(v["agents"][0]["risk_score"], 0.2);
    server.stop().await;
}

#[tokio::test]
async fn health_request_ids_and_openapi() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let r = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-request-id").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["database"], "sqlite");

    let r = server
        .client
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for (path, method, statuses) in [
        ("/healthz", "get", &["200"][..]),
        (
            "/v1/agents",
            "post",
            &["201", "400", "401", "403", "409", "413", "503"][..],
        ),
        ("/v1/agents", "get", &["200", "401"][..]),
        (
            "/v1/actions",
            "post",
            &["200", "202", "400", "401", "403", "413", "503"][..],
        ),
        ("/v1/actions/dry-run", "post", &["200", "400", "401"][..]),
        ("/v1/audit", "get", &["200", "400", "401", "403"][..]),
    ] {
        let op = &doc["paths"][path][method];
        assert!(
            op.is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
        for s in statuses {
            assert!(
                op["responses"][s].is_object(),
                "{method} {path} lacks response {s}"
            );
        }
    }
    assert!(doc["components"]["schemas"]["ActionBody"].is_object());
    assert!(doc["components"]["schemas"]["ActionResponse"].is_object());

    let r = server
        .client
        .get(server.url("/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;
}
