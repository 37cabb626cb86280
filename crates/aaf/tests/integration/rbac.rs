//! The permission matrix: every endpoint of the permission table x every kind of caller
//! (no credentials, each of the four roles, an agent) x an object of the caller's own
//! organisation and of another organisation, against the real server. The expected status
//! is derived from `aaf_server::rbac::PERMISSIONS`: 401 without credentials, 403 for a
//! caller the table does not list, 404 for another organisation's object, and the
//! endpoint's success status otherwise. Also: the table, the router (through the OpenAPI
//! document) and docs/security.md list the same endpoints.

use std::collections::BTreeSet;
use std::process::Command;

use aaf_core::identity::Role;
use aaf_server::rbac::{Caller, Permission, PERMISSIONS};
use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN, ALLOW_ALL};

/// One organisation's credentials and objects.
struct Org {
    admin: String,
    users: Vec<(Role, String)>,
    agent_key: String,
    /// An agent of the org (not the one whose key is `agent_key`).
    agent_id: String,
    /// Its key.
    key_id: String,
    /// A user that is none of the callers.
    user_id: String,
    /// An action submitted with `agent_key`.
    action_id: String,
}

impl Org {
    fn token(&self, caller: Caller) -> Option<String> {
        match caller {
            Caller::Public => None,
            Caller::Agent => Some(self.agent_key.clone()),
            Caller::User(role) => self
                .users
                .iter()
                .find(|(r, _)| *r == role)
                .map(|(_, t)| t.clone()),
        }
    }
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = server.client.request(method, server.url(path));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

async fn create_user(server: &TestServer, admin: &str, role: &str) -> (String, String) {
    let (status, body) = send(
        server,
        "POST",
        "/v1/users",
        Some(admin),
        Some(json!({"name": unique(role), "role": role})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

async fn create_agent(server: &TestServer, admin: &str) -> (String, String, String) {
    let (status, body) = send(
        server,
        "POST",
        "/v1/agents",
        Some(admin),
        Some(json!({"name": unique("agent")})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_string(),
        body["api_key"].as_str().unwrap().to_string(),
        body["key_id"].as_str().unwrap().to_string(),
    )
}

async fn setup_org(server: &TestServer, admin: String) -> Org {
    let mut users = vec![(Role::Admin, admin.clone())];
    for role in [Role::Approver, Role::Auditor, Role::Viewer] {
        let (_, token) = create_user(server, &admin, role.as_str()).await;
        users.push((role, token));
    }
    let (_, agent_key, _) = create_agent(server, &admin).await;
    let (agent_id, _, key_id) = create_agent(server, &admin).await;
    let (user_id, _) = create_user(server, &admin, "viewer").await;
    let (status, body) = server
        .act(
            &agent_key,
            json!({"tool": "knowledge_base", "operation": "search"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    Org {
        admin,
        users,
        agent_key,
        agent_id,
        key_id,
        user_id,
        action_id: body["id"].as_str().unwrap().to_string(),
    }
}

/// A budget no matrix action reaches (the organisation's, in tokens, far above its use).
fn budget_body() -> Value {
    json!({"unit": "tokens", "period": "total", "limit": 1_000_000_000u64})
}

/// The endpoint's answer when the call is allowed and the object is the caller's.
fn success_status(p: &Permission) -> u16 {
    match (p.method, p.path) {
        ("POST", "/v1/users")
        | ("POST", "/v1/agents")
        | ("POST", "/v1/agents/{id}/keys")
        | ("POST", "/v1/agents/{id}/keys/rotate")
        | ("POST", "/v1/webhooks")
        | ("POST", "/v1/policies")
        | ("POST", "/v1/kill-switches")
        | ("POST", "/v1/rate-limits")
        | ("POST", "/v1/budgets")
        | ("POST", "/v1/mcp/servers")
        | ("POST", "/v1/agents/{id}/isolate") => 201,
        (
            "DELETE",
            "/v1/users/{id}"
            | "/v1/webhooks/{id}"
            | "/v1/rate-limits/{id}"
            | "/v1/budgets/{id}"
            | "/v1/mcp/servers/{name}",
        ) => 204,
        // No tool of the server has a changed definition waiting (the MCP tests accept one):
        // an allowed caller gets past authorization to the 404.
        ("POST", "/v1/mcp/servers/{name}/tools/{tool}/accept") => 404,
        ("DELETE", "/v1/policies/{id}" | "/v1/kill-switches/{id}") => 200,
        ("GET" | "PATCH" | "POST" | "PUT", _) => 200,
        other => panic!("no expected success status for {other:?}: extend the matrix test"),
    }
}

/// A concrete path and body for the endpoint, on objects of `target` (fresh objects for
/// endpoints that change or remove them, made with the target's admin token).
async fn request_for(server: &TestServer, p: &Permission, target: &Org) -> (String, Option<Value>) {
    let body = match (p.method, p.path) {
        ("POST", "/v1/users") => Some(json!({"name": unique("u"), "role": "viewer"})),
        ("PATCH", "/v1/users/{id}") => Some(json!({"role": "auditor"})),
        ("POST", "/v1/agents") => Some(json!({"name": unique("a")})),
        ("POST", "/v1/agents/{id}/keys") => Some(json!({"expires_in": 3600})),
        ("POST", "/v1/agents/{id}/keys/rotate") => Some(json!({"grace_seconds": 0})),
        ("POST", "/v1/actions") | ("POST", "/v1/actions/dry-run") => {
            Some(json!({"tool": "knowledge_base", "operation": "search"}))
        }
        ("POST", "/v1/approvals/{id}/approve" | "/v1/approvals/{id}/reject") => {
            Some(json!({"comment": "matrix"}))
        }
        ("POST", "/v1/actions/{id}/result") => Some(json!({"status": "succeeded"})),
        ("PATCH", "/v1/settings") => Some(json!({"four_eyes": true})),
        ("POST", "/v1/webhooks") => Some(webhook_body()),
        // A tool of its own: the matrix's agents must keep acting.
        ("POST", "/v1/kill-switches") => Some(kill_switch_body()),
        ("POST", "/v1/rate-limits") => Some(rate_limit_body()),
        ("POST", "/v1/budgets") => Some(budget_body()),
        ("POST", "/v1/mcp/servers") => Some(mcp_server_body(&unique("m"))),
        ("PUT", "/v1/mcp/servers/{name}") => Some(json!({"transport": mcp_transport()})),
        ("POST", "/v1/mcp/servers/{name}/tools/{tool}/accept") => {
            Some(json!({"hash": "0".repeat(64)}))
        }
        ("PATCH", "/v1/budgets/{id}") => Some(json!({"limit": 5000})),
        ("PUT", "/v1/retention") => Some(json!({"rules": {"errors": 3650}})),
        ("POST", "/v1/encryption/shred") => {
            // A fresh, final action of the target to shred.
            let (status, action) = server
                .act(
                    &target.agent_key,
                    json!({"tool": "knowledge_base", "operation": "search"}),
                )
                .await;
            assert!(status == 200 || status == 403, "{action}");
            Some(json!({"scope": "action", "action_id": action["id"]}))
        }
        ("PUT", "/v1/circuit-breakers") => Some(json!({"max_denials": 0})),
        ("POST", "/v1/agents/{id}/isolate") => Some(json!({"reason": "matrix"})),
        ("POST", "/v1/policies") => Some(policy_body()),
        ("PUT", "/v1/policies/{id}") => Some(json!({"mode": "shadow"})),
        ("POST", "/v1/policies/{id}/rollback") => Some(json!({"version": 1})),
        ("PUT", "/v1/data/{path}") => Some(json!({"matrix": true})),
        ("POST", "/v1/playground") => Some(
            json!({"rego": "package play\nimport rego.v1\ndecision := \"allow\"\n", "input": {}}),
        ),
        _ => None,
    };
    let path = match (p.method, p.path) {
        ("DELETE" | "PATCH", "/v1/users/{id}") => {
            let (id, _) = create_user(server, &target.admin, "viewer").await;
            format!("/v1/users/{id}")
        }
        (_, "/v1/users/{id}") => format!("/v1/users/{}", target.user_id),
        ("POST", "/v1/agents/{id}/keys/rotate") => {
            let (id, _, _) = create_agent(server, &target.admin).await;
            format!("/v1/agents/{id}/keys/rotate")
        }
        ("POST", "/v1/agents/{id}/keys/{key_id}/revoke") => {
            let (id, _, key) = create_agent(server, &target.admin).await;
            format!("/v1/agents/{id}/keys/{key}/revoke")
        }
        ("POST", "/v1/agents/{id}/isolate") => {
            // An agent of its own: isolating revokes its keys.
            let (id, _, _) = create_agent(server, &target.admin).await;
            format!("/v1/agents/{id}/isolate")
        }
        (_, "/v1/rate-limits/{id}") => {
            let (status, body) = server
                .post_json("/v1/rate-limits", &target.admin, rate_limit_body())
                .await;
            assert_eq!(status, 201, "{body}");
            p.path.replace("{id}", body["id"].as_str().unwrap())
        }
        (_, "/v1/budgets/{id}") => {
            let (status, body) = server
                .post_json("/v1/budgets", &target.admin, budget_body())
                .await;
            assert_eq!(status, 201, "{body}");
            p.path.replace("{id}", body["id"].as_str().unwrap())
        }
        (_, path) if path.starts_with("/v1/mcp/servers/{name}") => {
            let name = unique("m");
            let (status, body) = server
                .post_json("/v1/mcp/servers", &target.admin, mcp_server_body(&name))
                .await;
            assert_eq!(status, 201, "{body}");
            path.replace("{name}", &name).replace("{tool}", "echo")
        }
        (_, path) if path.starts_with("/v1/alerts/{id}") => {
            let id = fresh_alert(server, target).await;
            path.replace("{id}", &id)
        }
        (_, "/v1/compliance/report") => format!("{}?framework=soc2", p.path),
        (_, "/v1/proof-pack/{action_id}") => {
            // An action the organisation's approver answered: approvers may read its pack.
            let id = pending_action(server, target).await;
            let approver = target.token(Caller::User(Role::Approver)).unwrap();
            let (status, body) = send(
                server,
                "POST",
                &format!("/v1/approvals/{id}/approve"),
                Some(&approver),
                Some(json!({})),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            format!("/v1/proof-pack/{id}")
        }
        (
            _,
            "/v1/audit/checkpoint" | "/v1/audit/proof/inclusion" | "/v1/audit/proof/consistency",
        ) => {
            // The target's chain signed up to now, so that there is a checkpoint to read.
            let (status, body) = send(
                server,
                "POST",
                "/v1/audit/checkpoint",
                Some(&target.admin),
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            match p.path {
                "/v1/audit/proof/inclusion" => format!("{}?seq=1", p.path),
                "/v1/audit/proof/consistency" => format!("{}?from=1", p.path),
                path => path.to_string(),
            }
        }
        (_, "/v1/kill-switches/{id}") => {
            let (status, body) = server
                .post_json("/v1/kill-switches", &target.admin, kill_switch_body())
                .await;
            assert_eq!(status, 201, "{body}");
            p.path.replace("{id}", body["id"].as_str().unwrap())
        }
        (_, path) if path.starts_with("/v1/agents/{id}") => path.replace("{id}", &target.agent_id),
        (_, "/v1/actions/{id}") => format!("/v1/actions/{}", target.action_id),
        ("POST", "/v1/approvals/{id}/approve" | "/v1/approvals/{id}/reject")
        | ("POST", "/v1/actions/{id}/cancel") => {
            let id = pending_action(server, target).await;
            p.path.replace("{id}", &id)
        }
        (_, "/v1/webhooks/{id}" | "/v1/webhooks/{id}/deliveries") => {
            let (status, body) = server
                .post_json("/v1/webhooks", &target.admin, webhook_body())
                .await;
            assert_eq!(status, 201, "{body}");
            p.path.replace("{id}", body["id"].as_str().unwrap())
        }
        (_, path) if path.starts_with("/v1/policies/{id}") => {
            let (status, body) = server
                .post_json("/v1/policies", &target.admin, policy_body())
                .await;
            assert_eq!(status, 201, "{body}");
            path.replace("{id}", body["id"].as_str().unwrap())
        }
        (_, "/v1/data/{path}") => {
            // A document of the target only (the path names its organisation).
            let path = format!("/v1/data/matrixdata/m_{}", target.agent_id.replace('-', ""));
            let (status, body) =
                send(server, "PUT", &path, Some(&target.admin), Some(json!(1))).await;
            assert_eq!(status, 200, "{body}");
            path
        }
        (_, "/v1/policy-packs/{name}/enable" | "/v1/policy-packs/{name}/disable") => {
            p.path.replace("{name}", "compliance")
        }
        (_, "/v1/policy-revisions/{revision}") => {
            // A revision of the target only (its new policy has a package of its own).
            let (status, body) = server
                .post_json("/v1/policies", &target.admin, policy_body())
                .await;
            assert_eq!(status, 201, "{body}");
            p.path
                .replace("{revision}", body["revision"].as_str().unwrap())
        }
        ("POST", "/v1/actions/{id}/result") => {
            let id = pending_action(server, target).await;
            let (status, body) = server
                .post_json(
                    &format!("/v1/approvals/{id}/approve"),
                    &target.admin,
                    json!({}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["action"]["status"], "approved", "{body}");
            format!("/v1/actions/{id}/result")
        }
        (_, path) => {
            assert!(
                !path.contains('{'),
                "no object for {path}: extend the matrix test"
            );
            path.to_string()
        }
    };
    let _ = &target.key_id;
    (path, body)
}

/// A streamable-HTTP MCP server (never reached: registering one does not connect).
fn mcp_transport() -> Value {
    json!({"type": "http", "url": "https://mcp.example.com/mcp"})
}

fn mcp_server_body(name: &str) -> Value {
    json!({"name": name, "transport": mcp_transport()})
}

/// A managed policy with a package and name of its own, that decides nothing.
fn policy_body() -> Value {
    let id = uuid::Uuid::now_v7().simple().to_string();
    json!({"name": format!("matrix-{id}"), "rego": format!("package matrix.p_{id}\nimport rego.v1\n\nunused := true\n")})
}

/// A webhook for an event the matrix never causes (nothing is delivered).
fn rate_limit_body() -> Value {
    json!({"scope": "tool", "target": unique("matrix-tool"), "limit": 10, "window": "minute"})
}

fn kill_switch_body() -> Value {
    json!({"scope": "tool", "target": unique("matrix-tool"), "reason": "matrix"})
}

fn webhook_body() -> Value {
    json!({"url": "https://hooks.example.com/aaf", "events": ["approval.expired"]})
}

/// A new open alert of the target's organisation: a kill switch on a tool of its own
/// raises `kill_switch_engaged` about it (the alert rules run in the background).
async fn fresh_alert(server: &TestServer, target: &Org) -> String {
    let body = kill_switch_body();
    let (status, created) = server
        .post_json("/v1/kill-switches", &target.admin, body.clone())
        .await;
    assert_eq!(status, 201, "{created}");
    let subject = format!("kill_switch:tool:{}", body["target"].as_str().unwrap());
    crate::common::within("the kill switch's alert", async {
        loop {
            let (status, page) = send(
                server,
                "GET",
                "/v1/alerts?rule=kill_switch_engaged&limit=1000",
                Some(&target.admin),
                None,
            )
            .await;
            assert_eq!(status, 200, "{page}");
            if let Some(alert) = page["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["subject"] == subject.as_str())
            {
                return alert["id"].as_str().unwrap().to_string();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A new action of the target's agent that waits for approval.
async fn pending_action(server: &TestServer, target: &Org) -> String {
    let (status, body) = server
        .act(
            &target.agent_key,
            json!({"tool": "needs_approval", "operation": "run"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Actions of the tool `needs_approval` wait for an approver.
const NEEDS_APPROVAL: &str = "package test.approval\nimport rego.v1\ndecision := \"require_approval\" if input.tool == \"needs_approval\"\n";

#[tokio::test]
async fn permission_matrix_every_endpoint_role_and_organisation() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("approval.rego", NEEDS_APPROVAL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.auth.failed_auth_per_minute = 0;
        c.connectors.http.system_dns = false;
    })
    .await;

    // A second organisation, made by the operator's CLI on the live data directory.
    let out = Command::new(env!("CARGO_BIN_EXE_aaf"))
        .args(["orgs", "create", "other-org", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let other_admin = stdout
        .lines()
        .find_map(|l| l.strip_prefix("admin token (shown once): "))
        .unwrap()
        .trim()
        .to_string();

    let own = setup_org(&server, ADMIN_TOKEN.to_string()).await;
    let other = setup_org(&server, other_admin).await;

    let callers = [
        Caller::Public,
        Caller::User(Role::Admin),
        Caller::User(Role::Approver),
        Caller::User(Role::Auditor),
        Caller::User(Role::Viewer),
        Caller::Agent,
    ];
    let mut checked = 0;
    let mut failures = Vec::new();
    for p in PERMISSIONS {
        // Pack names are the same in every organisation, and PUT /v1/data creates the
        // document in the caller's organisation: no object of another organisation there.
        let has_object = p.path.contains('{')
            && !p.path.starts_with("/v1/policy-packs/")
            && !(p.method == "PUT" && p.path == "/v1/data/{path}");
        for caller in callers {
            for target in [&own, &other] {
                let foreign = std::ptr::eq(target, &other);
                if foreign && !has_object {
                    continue;
                }
                let public = p.allow.contains(&Caller::Public);
                // The MCP endpoint answers an allowed caller in JSON-RPC (rmcp), not in the
                // API's error format: what an agent gets there is checked by the MCP tests;
                // here, that everyone else is refused before it.
                if p.path == "/mcp" && p.allow.contains(&caller) {
                    continue;
                }
                let (path, body) = request_for(&server, p, target).await;
                let token = own.token(caller);
                let expected = if public {
                    success_status(p)
                } else if caller == Caller::Public {
                    401
                } else if !p.allow.contains(&caller) {
                    403
                } else if foreign {
                    404
                } else {
                    success_status(p)
                };
                let (status, answer) = send(&server, p.method, &path, token.as_deref(), body).await;
                checked += 1;
                if status != expected {
                    failures.push(format!(
                        "{} {path} as {} ({} org): expected {expected}, got {status}: {answer}",
                        p.method,
                        caller.label(),
                        if foreign { "other" } else { "own" }
                    ));
                }
                if status >= 400 {
                    assert!(answer["error"]["message"].is_string(), "{answer}");
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("permission matrix: {checked} cases checked");

    // Listings never show another organisation's objects.
    let (_, agents) = send(&server, "GET", "/v1/agents", Some(ADMIN_TOKEN), None).await;
    let ids: Vec<&str> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&own.agent_id.as_str()));
    assert!(!ids.contains(&other.agent_id.as_str()));
    let (_, users) = send(&server, "GET", "/v1/users", Some(&other.admin), None).await;
    let ids: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&other.user_id.as_str()));
    assert!(!ids.contains(&own.user_id.as_str()));
    // An agent reads only its own actions, even within its organisation.
    let (_, second_key, _) = create_agent(&server, ADMIN_TOKEN).await;
    let (status, body) = send(
        &server,
        "GET",
        &format!("/v1/actions/{}", own.action_id),
        Some(&second_key),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // An unknown method on a known path is 405, an unknown path 404.
    let (status, _) = send(&server, "PUT", "/v1/agents", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 405);
    let (status, _) = send(&server, "GET", "/v1/nothing-here", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[test]
fn the_table_the_router_and_the_docs_agree() {
    let doc: Value = serde_json::from_str(&aaf_server::openapi::openapi_json()).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.insert("GET /v1/openapi.json".to_string());
    // The MCP endpoint speaks JSON-RPC over streamable HTTP (docs/mcp.md), not the REST API
    // the OpenAPI document describes.
    for method in ["POST", "GET", "DELETE"] {
        documented.insert(format!("{method} /mcp"));
    }
    let table: BTreeSet<String> = PERMISSIONS
        .iter()
        .map(|p| format!("{} {}", p.method, p.path))
        .collect();
    assert_eq!(
        documented, table,
        "OpenAPI paths and the permission table differ"
    );

    let security = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/security.md"),
    )
    .unwrap();
    let table = aaf_server::rbac::markdown_table();
    assert!(
        security.contains(&table),
        "docs/security.md must contain the permission table exactly as rbac::markdown_table() renders it:\n{table}"
    );
}
