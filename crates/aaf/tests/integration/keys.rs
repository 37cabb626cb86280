//! Agent keys and users over HTTP: least-privilege keys limited to tools, expiry, rotation
//! with a grace period, revocation on the next request, last use, users and roles, and the
//! failed-authentication limit. Every lifecycle step is checked in the audit chain.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN, ALLOW_ALL};

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server
        .client
        .request(method, server.url(path))
        .bearer_auth(token);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn search() -> Value {
    json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "x"}})
}

fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

async fn allow_all_server(
    tweak: impl FnOnce(&mut aaf_server::config::Config),
) -> (TestServer, tempfile::TempDir) {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), tweak).await;
    (server, policies)
}

#[tokio::test]
async fn scoped_keys_expire_and_every_step_is_audited() {
    let (server, _p) = allow_all_server(|_| {}).await;
    let (agent_id, first_key) = server.create_agent("scoped").await;

    // A key limited to the HTTP connector, expiring in 2 seconds.
    let (status, created) = call(
        &server,
        "POST",
        &format!("/v1/agents/{agent_id}/keys"),
        ADMIN_TOKEN,
        Some(json!({"tools": ["http_proxy"], "expires_in": 2})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let scoped = created["api_key"].as_str().unwrap().to_string();
    let scoped_id = created["id"].as_str().unwrap().to_string();
    assert!(scoped.starts_with("aaf_ak_"));
    assert_eq!(created["tools"], json!(["http_proxy"]));
    assert!(scoped.starts_with(created["prefix"].as_str().unwrap()));

    // Outside its scope: denied (a recorded decision), not merely refused.
    let (status, body) = server.act(&scoped, search()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["decision"], "deny");
    assert!(
        body["reason"].as_str().unwrap().starts_with("key_scope:"),
        "{body}"
    );
    // The unrestricted key of the same agent may.
    let (status, _) = server.act(&first_key, search()).await;
    assert_eq!(status, 200);

    // The listing shows prefixes, scope and status, never a secret.
    let (status, list) = call(
        &server,
        "GET",
        &format!("/v1/agents/{agent_id}/keys"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(!text.contains(&scoped) && !text.contains(&first_key));
    assert!(!text.contains("hash"));
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1]["id"], scoped_id.as_str());
    assert_eq!(keys[1]["status"], "active");
    // The default lifetime (72 h) applies to the first key.
    assert!(keys[0]["expires_at"].is_string());

    // last_used_at is recorded (in the background, to within a second).
    let mut used = Value::Null;
    for _ in 0..40 {
        let (_, list) = call(
            &server,
            "GET",
            &format!("/v1/agents/{agent_id}/keys"),
            ADMIN_TOKEN,
            None,
        )
        .await;
        used = list["keys"][0]["last_used_at"].clone();
        if used.is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(used.is_string(), "last_used_at was never set");

    // After its expiry the key fails with 401 and a clear message.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, body) = server.act(&scoped, json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "https://example.com"}})).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    let (_, list) = call(
        &server,
        "GET",
        &format!("/v1/agents/{agent_id}/keys"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(list["keys"][1]["status"], "expired");

    let events = server.audit(None).await;
    let created_events = events_of(&events, "agent_key.created");
    assert_eq!(created_events.len(), 1);
    assert_eq!(created_events[0]["data"]["key_id"], scoped_id.as_str());
    assert_eq!(created_events[0]["data"]["tools"], json!(["http_proxy"]));
    assert!(!created_events[0].to_string().contains(&scoped));
    let scope_denials: Vec<_> = events_of(&events, "action.decided")
        .into_iter()
        .filter(|e| {
            e["data"]["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("key_scope:")
        })
        .collect();
    assert_eq!(scope_denials.len(), 1);
    let refused = events_of(&events, "agent_key.refused");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["data"]["key_id"], scoped_id.as_str());
    assert_eq!(refused[0]["agent_id"], agent_id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn rotation_keeps_the_old_key_for_the_grace_period_and_revocation_is_immediate() {
    let (server, _p) = allow_all_server(|_| {}).await;
    let (agent_id, old_key) = server.create_agent("rotating").await;

    let (status, rotated) = call(
        &server,
        "POST",
        &format!("/v1/agents/{agent_id}/keys/rotate"),
        ADMIN_TOKEN,
        Some(json!({"grace_seconds": 2})),
    )
    .await;
    assert_eq!(status, 201, "{rotated}");
    let new_key = rotated["api_key"].as_str().unwrap().to_string();
    let old_id = rotated["rotated"]["key_id"].as_str().unwrap().to_string();
    // Both work during the grace period.
    assert_eq!(server.act(&new_key, search()).await.0, 200);
    assert_eq!(server.act(&old_key, search()).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, body) = server.act(&old_key, search()).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
    assert_eq!(server.act(&new_key, search()).await.0, 200);

    // Rotating without key_id needs exactly one active key: now there is one.
    let (status, _) = call(
        &server,
        "POST",
        &format!("/v1/agents/{agent_id}/keys"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = call(
        &server,
        "POST",
        &format!("/v1/agents/{agent_id}/keys/rotate"),
        ADMIN_TOKEN,
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "key_id");

    // Revocation: the very next request with the key is refused (the key was cached).
    let new_id = rotated["id"].as_str().unwrap();
    let (status, revoked) = call(
        &server,
        "POST",
        &format!("/v1/agents/{agent_id}/keys/{new_id}/revoke"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    let (status, body) = server.act(&new_key, search()).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    let (status, _) = call(
        &server,
        "POST",
        &format!("/v1/agents/{agent_id}/keys/{new_id}/revoke"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(
        &server,
        "POST",
        &format!("/v1/agents/{agent_id}/keys/no-such-key/revoke"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 404);

    let events = server.audit(None).await;
    let rotations = events_of(&events, "agent_key.rotated");
    assert_eq!(rotations.len(), 1);
    assert_eq!(rotations[0]["data"]["old_key_id"], old_id.as_str());
    let revocations = events_of(&events, "agent_key.revoked");
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0]["data"]["key_id"], new_id);
    assert_eq!(events_of(&events, "agent_key.refused").len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn users_roles_and_deletion_take_effect_at_once() {
    let (server, _p) = allow_all_server(|_| {}).await;
    let (status, created) = call(
        &server,
        "POST",
        "/v1/users",
        ADMIN_TOKEN,
        Some(json!({"name": "alice", "role": "approver"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let alice = created["token"].as_str().unwrap().to_string();
    let alice_id = created["id"].as_str().unwrap().to_string();
    let (status, me) = call(&server, "GET", "/v1/whoami", &alice, None).await;
    assert_eq!(status, 200);
    assert_eq!(me["role"], "approver");
    assert_eq!(me["name"], "alice");
    // approver may read the audit log but not manage users.
    assert_eq!(call(&server, "GET", "/v1/audit", &alice, None).await.0, 200);
    assert_eq!(call(&server, "GET", "/v1/users", &alice, None).await.0, 403);

    // Promote to admin: she can now manage users at once.
    let (status, updated) = call(
        &server,
        "PATCH",
        &format!("/v1/users/{alice_id}"),
        ADMIN_TOKEN,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["role"], "admin");
    assert_eq!(call(&server, "GET", "/v1/users", &alice, None).await.0, 200);

    // Bad input names the field; duplicates conflict.
    let (status, body) = call(
        &server,
        "POST",
        "/v1/users",
        ADMIN_TOKEN,
        Some(json!({"name": "bob", "role": "root"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("role")),
        "{body}"
    );
    let (status, body) = call(
        &server,
        "POST",
        "/v1/users",
        ADMIN_TOKEN,
        Some(json!({"name": "", "role": "viewer"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("name"))
    );
    let (status, _) = call(
        &server,
        "POST",
        "/v1/users",
        ADMIN_TOKEN,
        Some(json!({"name": "alice", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, 409);

    // The bootstrap admin (the first user) deletes... itself is fine while alice is admin;
    // but the last admin cannot go.
    let (_, me) = call(&server, "GET", "/v1/whoami", ADMIN_TOKEN, None).await;
    let root_id = me["id"].as_str().unwrap().to_string();
    let (status, _) = call(
        &server,
        "DELETE",
        &format!("/v1/users/{alice_id}"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 204);
    // Her token stops working with the next request.
    let (status, body) = call(&server, "GET", "/v1/whoami", &alice, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = call(
        &server,
        "PATCH",
        &format!("/v1/users/{root_id}"),
        ADMIN_TOKEN,
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = call(
        &server,
        "DELETE",
        &format!("/v1/users/{root_id}"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _) = call(
        &server,
        "GET",
        &format!("/v1/users/{alice_id}"),
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 404);

    let events = server.audit(None).await;
    let created = events_of(&events, "user.created");
    // The bootstrap admin and alice.
    assert_eq!(created.len(), 2);
    assert_eq!(created[1]["data"]["role"], "approver");
    assert!(!created[1].to_string().contains(&alice));
    let changed = events_of(&events, "user.role_changed");
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (
            changed[0]["data"]["old_role"].as_str(),
            changed[0]["data"]["new_role"].as_str()
        ),
        (Some("approver"), Some("admin"))
    );
    assert_eq!(events_of(&events, "user.deleted").len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address_and_indistinguishable() {
    // 30 failures a minute: a burst of 30, then one more every 2 seconds.
    let (server, _p) = allow_all_server(|c| c.auth.failed_auth_per_minute = 30).await;
    let (_, agent_key) = server.create_agent("behind-the-same-nat").await;
    let unknown_key = format!("aaf_ak_{}", "A".repeat(43));
    let wrong_token = format!("aaf_at_{}", "B".repeat(43));
    let garbage = "x".repeat(40);
    let mut messages = Vec::new();
    for i in 0..30 {
        let token = [&unknown_key, &wrong_token, &garbage][i % 3];
        let (status, body) = call(&server, "GET", "/v1/whoami", token, None).await;
        assert_eq!(status, 401, "failure {i}");
        messages.push(body["error"]["message"].as_str().unwrap().to_string());
    }
    // Unknown agent key, unknown token, garbage: the same answer.
    assert!(messages.iter().all(|m| m == &messages[0]), "{messages:?}");

    // The 31st failure within the minute exhausts the budget ...
    let r = server
        .client
        .get(server.url("/v1/whoami"))
        .bearer_auth(&garbage)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    // ... and until it refills, further failures from that address get 429 (unaudited), but
    // valid credentials from the same address (a shared NAT) are still served.
    let (status, body) = call(&server, "GET", "/v1/whoami", &wrong_token, None).await;
    assert_eq!(status, 429, "{body}");
    let (status, body) = call(&server, "GET", "/v1/whoami", ADMIN_TOKEN, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.act(&agent_key, search()).await;
    assert_eq!(status, 200, "{body}");
    // Public endpoints stay open.
    assert_eq!(
        server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Once the budget refills, a failure is a plain 401 again.
    tokio::time::sleep(Duration::from_secs(retry + 1)).await;
    let (status, _) = call(&server, "GET", "/v1/whoami", &garbage, None).await;
    assert_eq!(status, 401);

    let system = server.audit(Some("system")).await;
    let statuses: Vec<u64> = system
        .iter()
        .filter_map(|e| e["data"]["status"].as_u64())
        .collect();
    let mut expected = vec![401; 30];
    expected.extend([429, 401]);
    assert_eq!(statuses, expected);
    let text = serde_json::to_string(&system).unwrap();
    assert!(
        !text.contains(&unknown_key) && !text.contains(&wrong_token) && !text.contains(&garbage)
    );
    server.stop().await;
}

#[tokio::test]
async fn key_and_agent_bodies_are_validated_by_field() {
    let (server, _p) = allow_all_server(|_| {}).await;
    let (agent_id, _) = server.create_agent("validated").await;
    let cases = [
        (
            "/v1/agents",
            json!({"name": "x", "public_key": "not-base64!"}),
            "public_key",
        ),
        ("/v1/agents", json!({"name": "y", "tools": []}), "tools"),
        (
            "/v1/agents",
            json!({"name": "z", "expires_in": 0}),
            "expires_in",
        ),
        (
            &*format!("/v1/agents/{agent_id}/keys"),
            json!({"tools": ["a", "a"]}),
            "tools[1]",
        ),
        (
            &*format!("/v1/agents/{agent_id}/keys"),
            json!({"expires_in": 999_999_999}),
            "expires_in",
        ),
        (
            &*format!("/v1/agents/{agent_id}/keys"),
            json!({"scopes": ["a"]}),
            "scopes",
        ),
        (
            &*format!("/v1/agents/{agent_id}/keys/rotate"),
            json!({"grace_seconds": 99_999_999}),
            "grace_seconds",
        ),
    ];
    for (path, body, field) in cases {
        let (status, answer) = call(&server, "POST", path, ADMIN_TOKEN, Some(body.clone())).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{path} {body}: {answer}");
    }
    let (status, _) = call(
        &server,
        "POST",
        "/v1/agents/no-such-agent/keys",
        ADMIN_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// A key scope is a tool name matched exactly. `tool.operation` (which used to be stored and
/// then matched nothing, so every call of the key was denied) and wildcards are refused at
/// creation, at agent registration and at rotation, with 400 naming the entry; a tool name
/// scope works.
#[tokio::test]
async fn key_scopes_are_tool_names_and_other_forms_are_refused() {
    let (server, _p) = allow_all_server(|_| {}).await;
    let (agent_id, _) = server.create_agent("scopes").await;
    let keys = format!("/v1/agents/{agent_id}/keys");
    let rotate = format!("/v1/agents/{agent_id}/keys/rotate");
    let cases = [
        (keys.as_str(), json!({"tools": ["kb.search"]}), "tools[0]"),
        (
            keys.as_str(),
            json!({"tools": ["knowledge_base", "knowledge_base.search"]}),
            "tools[1]",
        ),
        (keys.as_str(), json!({"tools": ["*"]}), "tools[0]"),
        (keys.as_str(), json!({"tools": ["kb*"]}), "tools[0]"),
        (keys.as_str(), json!({"tools": ["kb\u{7}"]}), "tools[0]"),
        (
            "/v1/agents",
            json!({"name": "dotted", "tools": ["kb.search"]}),
            "tools[0]",
        ),
        (rotate.as_str(), json!({"tools": ["kb.search"]}), "tools[0]"),
    ];
    for (path, body, field) in cases {
        let (status, answer) = call(&server, "POST", path, ADMIN_TOKEN, Some(body.clone())).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{path} {body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("tool name") && message.contains("tool.operation"),
            "the answer names the accepted form: {message}"
        );
    }
    // Nothing was stored: the agent still has its one key.
    let (status, list) = call(&server, "GET", &keys, ADMIN_TOKEN, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["keys"].as_array().unwrap().len(), 1, "{list}");

    // The accepted form: the tool's name, matched exactly.
    let (status, created) = call(
        &server,
        "POST",
        &keys,
        ADMIN_TOKEN,
        Some(json!({"tools": ["knowledge_base"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let scoped = created["api_key"].as_str().unwrap();
    let (status, body) = server.act(scoped, search()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow", "{body}");
    let (status, body) = server
        .act(
            scoped,
            json!({"tool": "ticketing", "operation": "create", "params": {}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"].as_str().unwrap().starts_with("key_scope:"),
        "{body}"
    );
    server.stop().await;
}

/// With `auth.failed_auth_lockout = "address"`, a blocked address is refused whatever it
/// presents, valid credentials included, until its budget refills.
#[tokio::test]
async fn address_lockout_refuses_valid_credentials_too() {
    let (server, _p) = allow_all_server(|c| {
        c.auth.failed_auth_per_minute = 2;
        c.auth.failed_auth_lockout = aaf_server::config::FailedAuthLockout::Address;
    })
    .await;
    let garbage = "x".repeat(40);
    for _ in 0..2 {
        let (status, _) = call(&server, "GET", "/v1/whoami", &garbage, None).await;
        assert_eq!(status, 401);
    }
    let (status, _) = call(&server, "GET", "/v1/whoami", &garbage, None).await;
    assert_eq!(status, 429);
    let (status, body) = call(&server, "GET", "/v1/whoami", ADMIN_TOKEN, None).await;
    assert_eq!(status, 429, "{body}");
    server.stop().await;
}
