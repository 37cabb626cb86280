//! Kill switches and isolation end to end, on the real server: a stopped agent is denied
//! before any policy is evaluated while a second agent runs at full speed; every scope; expiry
//! and restarts; bad input; who may engage and release; pending approvals that can no longer
//! be approved and approved actions that are not run; a running connector call aborted;
//! isolation with its snapshot; the CLI.

use std::sync::Arc;
use std::time::Duration;

use aaf_server::clock::Clock;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

use crate::approvals::{answer, charge, leave_as, recovering_server, wait_for_status};
use crate::common::{policy_dir, within, TestServer, ADMIN_TOKEN, ALLOW_ALL};

fn search() -> Value {
    json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "x"}})
}

fn tool(name: &str) -> Value {
    json!({"tool": name, "operation": "run", "params": {}})
}

async fn engage(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    server.post_json("/v1/kill-switches", token, body).await
}

async fn release(server: &TestServer, token: &str, id: &str) -> (u16, Value) {
    server
        .send_json(
            reqwest::Method::DELETE,
            &format!("/v1/kill-switches/{id}"),
            token,
            Value::Null,
        )
        .await
}

/// Engages as the admin, asserting 201; returns the switch's id.
async fn engaged(server: &TestServer, body: Value) -> String {
    let (status, body) = engage(server, ADMIN_TOKEN, body).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn assert_stopped(status: u16, body: &Value, switch: &str) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["decision"], "deny", "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.starts_with("kill_switch: "), "{reason}");
    assert!(reason.contains(switch), "{reason} names {switch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_denied_before_evaluation_while_a_second_agent_runs_at_full_speed() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = Arc::new(TestServer::start(policies.path(), |_| {}).await);
    let (a_id, a_key) = server.create_agent("runaway").await;
    let (_, b_key) = server.create_agent("steady").await;
    let (status, _) = server.act(&a_key, search()).await;
    assert_eq!(status, 200);

    // The second agent submits as fast as it can while the first is killed.
    let (started_tx, mut started_rx) = mpsc::channel::<()>(1);
    let steady = {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..200 {
                if i == 20 {
                    let _ = started_tx.send(()).await;
                }
                statuses.push(server.act(&b_key, search()).await.0);
            }
            statuses
        })
    };
    started_rx.recv().await.unwrap();
    let (status, switch) = engage(
        &server,
        ADMIN_TOKEN,
        json!({"scope": "agent", "target": a_id, "reason": "runaway agent"}),
    )
    .await;
    assert_eq!(status, 201, "{switch}");
    let id = switch["id"].as_str().unwrap().to_string();
    assert_eq!(switch["state"], "in_force");
    assert_eq!(switch["scope"], "agent");
    assert_eq!(switch["agent_id"], a_id.as_str());
    let (status, body) = server.act(&a_key, search()).await;
    assert_stopped(status, &body, &id);
    assert_eq!(body["status"], "denied");
    assert_eq!(body["policy_revision"], "not_evaluated");
    assert!(body["reason"]
        .as_str()
        .unwrap()
        .ends_with(": runaway agent"));
    let denied_id = body["id"].as_str().unwrap().to_string();
    // A dry run says the same, and stores nothing.
    let (status, body) = server
        .post_json("/v1/actions/dry-run", &a_key, search())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "deny");
    assert!(body["reason"]
        .as_str()
        .unwrap()
        .starts_with("kill_switch: "));

    let statuses = within("the steady agent", steady).await.unwrap();
    assert_eq!(statuses.len(), 200);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "the second agent was never refused: {statuses:?}"
    );

    // The refusal is recorded: no policy evaluated, the guard and the switch named.
    let audit = server.audit(None).await;
    let decided = audit
        .iter()
        .find(|e| e["type"] == "action.decided" && e["action_id"] == denied_id.as_str())
        .unwrap();
    assert_eq!(decided["data"]["guard"]["guard"], "kill_switch");
    assert_eq!(decided["data"]["guard"]["kill_switch_id"], id.as_str());
    assert_eq!(decided["data"]["policy_revision"], "not_evaluated");
    assert_eq!(decided["data"]["policies"], json!([]));
    let engaged_event = audit
        .iter()
        .find(|e| e["type"] == "kill_switch.engaged")
        .unwrap();
    assert_eq!(engaged_event["data"]["kill_switch_id"], id.as_str());
    assert_eq!(engaged_event["data"]["reason"], "runaway agent");
    assert_eq!(engaged_event["agent_id"], a_id.as_str());

    let (status, list) = server.get_json("/v1/kill-switches", ADMIN_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(list["kill_switches"].as_array().unwrap().len(), 1);

    // Released: the agent is decided by the policies again.
    let (status, body) = release(&server, ADMIN_TOKEN, &id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "released");
    assert!(body["released_by"].is_string());
    let (status, _) = server.act(&a_key, search()).await;
    assert_eq!(status, 200);
    let (status, _) = release(&server, ADMIN_TOKEN, &id).await;
    assert_eq!(status, 404, "a release is once");
    let (_, list) = server.get_json("/v1/kill-switches", ADMIN_TOKEN).await;
    assert_eq!(list["kill_switches"], json!([]));
    let (_, list) = server
        .get_json("/v1/kill-switches?state=all", ADMIN_TOKEN)
        .await;
    assert_eq!(list["kill_switches"][0]["state"], "released");
    let audit = server.audit(None).await;
    assert!(
        audit
            .iter()
            .any(|e| e["type"] == "kill_switch.released"
                && e["data"]["kill_switch_id"] == id.as_str())
    );
    Arc::try_unwrap(server).ok().unwrap().stop().await;
}

#[tokio::test]
async fn every_scope_stops_exactly_its_actions_expires_and_survives_a_restart() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let clock = Clock::manual(time::OffsetDateTime::now_utc());
    let mut server = TestServer::start_clocked(policies.path(), clock.clone(), |_| {}).await;
    let (a_id, a_key) = server.create_agent("a").await;
    let (_, b_key) = server.create_agent("b").await;
    let outcome = |status: u16| status == 200;

    // One tool, whichever agent.
    let id = engaged(
        &server,
        json!({"scope": "tool", "target": "knowledge_base", "reason": "leaking"}),
    )
    .await;
    for key in [&a_key, &b_key] {
        let (status, body) = server.act(key, search()).await;
        assert_stopped(status, &body, &id);
        assert!(body["reason"]
            .as_str()
            .unwrap()
            .contains("the tool \"knowledge_base\""));
        assert!(outcome(server.act(key, tool("calendar")).await.0));
    }
    assert!(
        outcome(server.act(&a_key, tool("knowledge_base2")).await.0),
        "names are exact"
    );
    release(&server, ADMIN_TOKEN, &id).await;

    // One agent's use of one tool.
    let id = engaged(
        &server,
        json!({"scope": "agent_tool", "target": format!("{a_id}:knowledge_base"), "reason": "x"}),
    )
    .await;
    let (status, body) = server.act(&a_key, search()).await;
    assert_stopped(status, &body, &id);
    assert!(outcome(server.act(&a_key, tool("calendar")).await.0));
    assert!(outcome(server.act(&b_key, search()).await.0));
    release(&server, ADMIN_TOKEN, &id).await;

    // The whole organisation, for a minute.
    let (status, body) = engage(
        &server,
        ADMIN_TOKEN,
        json!({"scope": "org", "reason": "incident", "expires_in": 60}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(body["expires_at"].is_string());
    let id = body["id"].as_str().unwrap().to_string();
    for key in [&a_key, &b_key] {
        let (status, body) = server.act(key, tool("calendar")).await;
        assert_stopped(status, &body, &id);
    }
    clock.advance(Duration::from_secs(61));
    assert!(outcome(server.act(&a_key, search()).await.0), "expired");
    let (_, list) = server.get_json("/v1/kill-switches", ADMIN_TOKEN).await;
    assert_eq!(list["kill_switches"][0]["state"], "expired");
    let (status, _) = release(&server, ADMIN_TOKEN, &id).await;
    assert_eq!(status, 200, "an expired switch can be closed");

    // Stored: a restart keeps it.
    let id = engaged(
        &server,
        json!({"scope": "agent", "target": a_id, "reason": "keep"}),
    )
    .await;
    let data = server.take_data_dir();
    server.stop().await;
    let server = TestServer::start_with_clock(data.path(), policies.path(), clock, |_| {}).await;
    let (status, body) = server.act(&a_key, search()).await;
    assert_stopped(status, &body, &id);
    assert!(outcome(server.act(&b_key, search()).await.0));
    server.stop().await;
}

#[tokio::test]
async fn bad_kill_switch_requests_are_400_naming_the_field_and_store_nothing() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (a_id, _) = server.create_agent("a").await;
    let cases = [
        (json!({"scope": "global", "reason": "x"}), "scope"),
        (json!({"scope": "agent", "reason": "x"}), "target"),
        (
            json!({"scope": "agent", "target": "no-such-agent", "reason": "x"}),
            "target",
        ),
        (
            json!({"scope": "org", "target": "another-org", "reason": "x"}),
            "target",
        ),
        (
            json!({"scope": "agent_tool", "target": a_id, "reason": "x"}),
            "target",
        ),
        (
            json!({"scope": "tool", "target": "t".repeat(201), "reason": "x"}),
            "target",
        ),
        (
            json!({"scope": "agent", "target": a_id, "reason": "  "}),
            "reason",
        ),
        (
            json!({"scope": "agent", "target": a_id, "reason": "r".repeat(1001)}),
            "reason",
        ),
        (
            json!({"scope": "agent", "target": a_id, "reason": "x", "expires_in": 0}),
            "expires_in",
        ),
        (
            json!({"scope": "agent", "target": a_id, "reason": "x", "expires_in": -5}),
            "expires_in",
        ),
        (
            json!({"scope": "agent", "target": a_id, "reason": "x", "expires_in": 31_536_001}),
            "expires_in",
        ),
        (
            json!({"scope": "agent", "target": a_id, "reason": "x", "expires_in": 1e30}),
            "expires_in",
        ),
        (
            json!({"scope": "agent", "target": a_id, "reason": "x", "until": "never"}),
            "until",
        ),
        (json!({"target": a_id, "reason": "x"}), "scope"),
    ];
    for (body, field) in cases {
        let (status, answer) = engage(&server, ADMIN_TOKEN, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let named = answer["error"]["field"].as_str().unwrap_or_default();
        assert!(
            named.contains(field),
            "{body}: names {named:?}, not {field}: {answer}"
        );
    }
    let (status, answer) = server
        .get_json("/v1/kill-switches?state=dead", ADMIN_TOKEN)
        .await;
    assert_eq!(status, 400, "{answer}");
    let (_, list) = server
        .get_json("/v1/kill-switches?state=all", ADMIN_TOKEN)
        .await;
    assert_eq!(list["kill_switches"], json!([]), "nothing stored");
    let audit = server.audit(None).await;
    assert!(!audit.iter().any(|e| e["type"] == "kill_switch.engaged"));
    server.stop().await;
}

#[tokio::test]
async fn approvers_may_stop_agents_only_admins_release_and_agents_neither() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (a_id, a_key) = server.create_agent("a").await;
    let (_, approver) = server.create_user("ann", "approver").await;
    let (_, auditor) = server.create_user("aud", "auditor").await;
    let (_, viewer) = server.create_user("vic", "viewer").await;
    let body = json!({"scope": "agent", "target": a_id, "reason": "on call"});
    for token in [&viewer, &auditor, &a_key] {
        let (status, answer) = engage(&server, token, body.clone()).await;
        assert_eq!(status, 403, "{answer}");
    }
    let (status, switch) = engage(&server, &approver, body).await;
    assert_eq!(status, 201, "{switch}");
    let id = switch["id"].as_str().unwrap();
    for token in [&viewer, &auditor, &approver] {
        let (status, list) = server.get_json("/v1/kill-switches", token).await;
        assert_eq!(status, 200);
        assert_eq!(list["kill_switches"][0]["id"], id);
    }
    for token in [&approver, &auditor, &a_key] {
        let (status, _) = release(&server, token, id).await;
        assert_eq!(status, 403);
    }
    let (status, _) = release(&server, ADMIN_TOKEN, id).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_pending_approval_cannot_be_approved_and_an_approved_action_is_not_run() {
    let (upstream, clock, server, agent_key) = recovering_server().await;
    let (_, who) = server.get_json("/v1/whoami", &agent_key).await;
    let agent_id = who["id"].as_str().unwrap().to_string();
    let (_, approver) = server.create_user("ann", "approver").await;
    let (status, body) = server.act(&agent_key, charge(&upstream, 50000)).await;
    assert_eq!(status, 202, "{body}");
    let pending = body["id"].as_str().unwrap().to_string();
    let (_, body) = server.act(&agent_key, charge(&upstream, 60000)).await;
    let approved = body["id"].as_str().unwrap().to_string();
    // Approved, and its node stopped before running it.
    leave_as(&server.data_dir, &approved, "approved").await;

    let id = engaged(
        &server,
        json!({"scope": "agent", "target": agent_id, "reason": "fraud"}),
    )
    .await;
    let (status, body) = answer(&server, &approver, &pending, "approve", json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("kill_switch: "));
    let (status, body) = answer(
        &server,
        &approver,
        &pending,
        "reject",
        json!({"comment": "no"}),
    )
    .await;
    assert_eq!(status, 200, "rejecting stays possible: {body}");

    // The sweeper finds the approved action but does not run it.
    clock.advance(Duration::from_secs(61));
    let done = wait_for_status(&server, &approved, "denied").await;
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .starts_with("kill_switch: "),
        "{done}"
    );
    assert_eq!(upstream.count(), 0, "nothing reached the upstream");
    let audit = server.audit(None).await;
    let recheck = audit
        .iter()
        .find(|e| e["type"] == "approval.recheck_denied" && e["action_id"] == approved.as_str())
        .unwrap();
    assert_eq!(recheck["data"]["check"], "kill_switch");
    assert_eq!(recheck["data"]["kill_switch_id"], id.as_str());
    server.stop().await;
}

/// A loopback upstream that reports each request's path as it arrives and answers only when
/// `release` is notified (or after a minute).
async fn slow_upstream() -> (String, mpsc::Receiver<String>, Arc<Notify>) {
    let (tx, rx) = mpsc::channel::<String>(16);
    let release = Arc::new(Notify::new());
    let gate = Arc::clone(&release);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let tx = tx.clone();
        let gate = Arc::clone(&gate);
        async move {
            let _ = tx.send(uri.path().to_string()).await;
            let _ = tokio::time::timeout(Duration::from_secs(60), gate.notified()).await;
            axum::Json(json!({"slow": "done"}))
        }
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), rx, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_switch_aborts_a_running_connector_call_of_its_scope_only() {
    let (base, mut arrived, release_upstream) = slow_upstream().await;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = Arc::new(
        TestServer::start(policies.path(), |c| {
            c.connectors.http.timeout_ms = 60_000;
        })
        .await,
    );
    let (a_id, a_key) = server.create_agent("a").await;
    let (_, b_key) = server.create_agent("b").await;
    let call = |key: String, path: &str| {
        let server = Arc::clone(&server);
        let body =
            json!({"tool": "http", "operation": "GET", "params": {"url": format!("{base}{path}")}});
        tokio::spawn(async move { server.act(&key, body).await })
    };
    let a_call = call(a_key.clone(), "/a");
    assert_eq!(within("a's call", arrived.recv()).await.unwrap(), "/a");
    let b_call = call(b_key.clone(), "/b");
    assert_eq!(within("b's call", arrived.recv()).await.unwrap(), "/b");

    let started = std::time::Instant::now();
    let id = engaged(
        &server,
        json!({"scope": "agent", "target": a_id, "reason": "stop now"}),
    )
    .await;
    let (status, body) = within("the aborted call", a_call).await.unwrap();
    eprintln!(
        "running call aborted {:?} after the engagement began",
        started.elapsed()
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "failed", "{body}");
    let error = body["result"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("aborted by kill switch: this agent is stopped by kill switch"),
        "{error}"
    );
    assert!(error.contains(&id));
    let a_action = body["id"].as_str().unwrap().to_string();

    // The other agent's call is still running, and completes.
    assert!(!b_call.is_finished());
    release_upstream.notify_waiters();
    let (status, body) = within("b's call", b_call).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "executed");
    assert_eq!(body["result"]["body"]["slow"], "done");

    let (_, stored) = server
        .get_json(&format!("/v1/actions/{a_action}"), ADMIN_TOKEN)
        .await;
    assert_eq!(stored["status"], "failed");
    let audit = server.audit(None).await;
    let failed = audit
        .iter()
        .find(|e| e["type"] == "action.failed" && e["action_id"] == a_action.as_str())
        .unwrap();
    assert_eq!(failed["data"]["kind"], "kill_switch");
    Arc::try_unwrap(server).ok().unwrap().stop().await;
}

#[tokio::test]
async fn isolating_an_agent_stops_it_revokes_its_keys_and_keeps_a_snapshot() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.auth.failed_auth_per_minute = 0;
    })
    .await;
    let (a_id, a_key) = server.create_agent("suspect").await;
    let (_, b_key) = server.create_agent("bystander").await;
    let (status, second) = server
        .post_json(&format!("/v1/agents/{a_id}/keys"), ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(status, 201, "{second}");
    for _ in 0..3 {
        assert_eq!(
            server
                .act(
                    &a_key,
                    json!({"tool": "db", "operation": "read", "params": {"password": "hunter2"}})
                )
                .await
                .0,
            200
        );
    }
    assert_eq!(server.act(&b_key, search()).await.0, 200);
    let (_, auditor) = server.create_user("aud", "auditor").await;
    let (_, viewer) = server.create_user("vic", "viewer").await;

    let (status, body) = server
        .post_json(
            &format!("/v1/agents/{a_id}/isolate"),
            &auditor,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .post_json(
            "/v1/agents/no-such-agent/isolate",
            ADMIN_TOKEN,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, iso) = server
        .post_json(
            &format!("/v1/agents/{a_id}/isolate"),
            ADMIN_TOKEN,
            json!({"reason": "exfiltration suspected"}),
        )
        .await;
    assert_eq!(status, 201, "{iso}");
    assert_eq!(iso["kill_switch"]["source"], "isolation");
    assert_eq!(iso["revoked_keys"].as_array().unwrap().len(), 2);

    // Its keys no longer work; the bystander's do.
    let (status, _) = server.act(&a_key, search()).await;
    assert_eq!(status, 401);
    let (status, _) = server
        .act(second["api_key"].as_str().unwrap(), search())
        .await;
    assert_eq!(status, 401);
    assert_eq!(server.act(&b_key, search()).await.0, 200);

    // The snapshot: readable by admins and auditors, bound to the chain by its hash.
    let (status, _) = server
        .get_json(&format!("/v1/agents/{a_id}/snapshots"), &viewer)
        .await;
    assert_eq!(status, 403);
    let (status, list) = server
        .get_json(&format!("/v1/agents/{a_id}/snapshots"), &auditor)
        .await;
    assert_eq!(status, 200, "{list}");
    let snap = &list["snapshots"][0];
    assert_eq!(snap["id"], iso["snapshot_id"]);
    assert_eq!(snap["sha256"], iso["snapshot_sha256"]);
    let text = serde_json::to_string(&snap["snapshot"]).unwrap();
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    };
    assert_eq!(
        snap["sha256"],
        digest.as_str(),
        "the hash is of the stored text"
    );
    let actions = snap["snapshot"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3, "the agent's actions, not the bystander's");
    assert!(
        actions
            .iter()
            .all(|a| a["params"]["password"] == "[REDACTED]"),
        "{actions:?}"
    );
    assert!(!snap["snapshot"]["audit_events"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(snap["snapshot"]["keys"].as_array().unwrap().len(), 2);
    assert!(!text.contains("hunter2"));
    let audit = server.audit(None).await;
    let isolated = audit
        .iter()
        .find(|e| e["type"] == "agent.isolated")
        .unwrap();
    assert_eq!(isolated["data"]["snapshot_sha256"], iso["snapshot_sha256"]);
    assert_eq!(isolated["data"]["actions"], 3);

    // Reinstating takes a release and a new key.
    let switch = iso["kill_switch"]["id"].as_str().unwrap();
    assert_eq!(release(&server, ADMIN_TOKEN, switch).await.0, 200);
    assert_eq!(
        server.act(&a_key, search()).await.0,
        401,
        "old keys stay revoked"
    );
    let (_, fresh) = server
        .post_json(&format!("/v1/agents/{a_id}/keys"), ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(
        server
            .act(fresh["api_key"].as_str().unwrap(), search())
            .await
            .0,
        200
    );
    server.stop().await;
}

async fn cli(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    server.cli(ADMIN_TOKEN, args).await
}

#[tokio::test]
async fn the_cli_kills_lists_and_unkills() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (a_id, a_key) = server.create_agent("a").await;
    let (ok, out, err) = cli(
        &server,
        &[
            "kill",
            "agent-tool",
            &a_id,
            "knowledge_base",
            "--reason",
            "cli test",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("engaged"), "{out}");
    let id = out
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    assert_eq!(server.act(&a_key, search()).await.0, 403);
    let (ok, out, _) = cli(&server, &["kill-switches"]).await;
    assert!(
        ok && out.contains(&id) && out.contains("agent_tool") && out.contains("cli test"),
        "{out}"
    );
    let (ok, out, err) = cli(&server, &["kill", "agent", "--reason", "no target"]).await;
    assert!(!ok, "{out}{err}");
    let (ok, _, err) = cli(&server, &["kill", "agent", "nobody", "--reason", "x"]).await;
    assert!(!ok && err.contains("400"), "{err}");
    let (ok, out, err) = cli(&server, &["unkill", &id]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(server.act(&a_key, search()).await.0, 200);
    server.stop().await;
}
