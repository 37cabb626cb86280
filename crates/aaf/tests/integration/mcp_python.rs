//! The MCP gateway reached by a client written with the official Python SDK (`mcp` on PyPI,
//! `tests/mcp/python_client.py`): the script connects to `/mcp` with the agent's key, lists
//! the tools and makes its calls; AAF stands in front of the Python demo upstream over stdio.
//! A listing; calls allowed, denied by an argument-level rule, refused as unknown, held for
//! approval (with progress) and approved by the test while the script waits, and refused by a
//! kill switch: each ends as documented and, when it is an action, is in the audit chain.
//! Once with the SDK's default negotiation (2026-07-28 with `mcp` 2.x), once over the
//! initialize handshake.
//!
//! Needs Python's `mcp` package: skipped with a notice without it, except in CI (`CI` set),
//! where its absence fails the test.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{policy_dir, within, TestServer, ADMIN_TOKEN, ALLOW_ALL};
use crate::mcp::{demo_config, python_mcp_available};

const POLICY: &str = r#"package aaf.policies.mcp_python
import rego.v1

decision := {"action": "deny", "reason": "no forbidden words"} if {
    input.tool == "mcp:demo/echo"
    contains(input.params.text, "forbidden")
}

decision := {"action": "require_approval", "reason": "large sums need a human"} if {
    input.tool == "mcp:demo/add"
    input.params.a > 100
}
"#;

fn python_client() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp/python_client.py")
        .display()
        .to_string()
}

/// Starts the Python client against `server`'s `/mcp` with `key` and `calls`, negotiating
/// the protocol revision as `mode` says (the script's `--mode`); its output (one JSON object)
/// once it ends.
fn run_client(
    server: &TestServer,
    key: &str,
    mode: &str,
    calls: Value,
) -> tokio::task::JoinHandle<Value> {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(python_client())
        .args(["--mode", mode])
        .arg(server.url("/mcp"))
        .arg(calls.to_string())
        .env("AAF_AGENT_KEY", key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tokio::spawn(async move {
        let out = command.output().await.expect("python3 starts");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the Python client failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
    })
}

/// The SDK's default: `server/discover`, then the newest revision both speak (2026-07-28
/// with `mcp` 2.x; 1.x always uses the initialize handshake).
#[tokio::test]
async fn a_python_sdk_client_on_its_default_revision() {
    if !python_mcp_available() {
        return;
    }
    scenario("auto").await;
}

/// The initialize handshake (a revision before 2026-07-28), as older clients connect.
#[tokio::test]
async fn a_python_sdk_client_over_the_initialize_handshake() {
    if !python_mcp_available() {
        return;
    }
    scenario("legacy").await;
}

/// A listing; calls allowed, denied, unknown, held for approval and approved; a kill switch;
/// the audit chain.
async fn scenario(mode: &str) {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("mcp.rego", POLICY)]);
    let server = TestServer::start(policies.path(), |c| {
        c.mcp.servers = vec![demo_config()];
        c.mcp.approval_wait_seconds = 20;
    })
    .await;
    let (agent_id, key) = server.create_agent("python-agent").await;

    // One session: allowed, denied, unknown, then held for approval (the script waits).
    let first = run_client(
        &server,
        &key,
        mode,
        json!([
            {"name": "demo__echo", "arguments": {"text": "hello from python"}},
            {"name": "demo__echo", "arguments": {"text": "a forbidden word"}},
            {"name": "nosuch__tool", "arguments": {}},
            {"name": "demo__add", "arguments": {"a": 500, "b": 1}},
        ]),
    );
    // The admin approves the held call while the script waits for its result.
    let approval_id = within("the approval request", async {
        loop {
            let (_, list) = server.get_json("/v1/approvals", ADMIN_TOKEN).await;
            if let Some(a) = list["approvals"].as_array().and_then(|a| a.first()) {
                break a["action"]["id"].as_str().unwrap().to_string();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let (status, answer) = server
        .post_json(
            &format!("/v1/approvals/{approval_id}/approve"),
            ADMIN_TOKEN,
            json!({"comment": "fine"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let out = within("the Python client", first).await.unwrap();
    eprintln!("Python client ({mode}): {out}");
    let sdk = out["sdk"].as_str().unwrap();
    let revision = out["protocol_version"].as_str().unwrap();
    if mode == "legacy" || sdk.starts_with("1.") {
        assert!(revision < "2026-07-28", "{out}");
    } else {
        assert!(revision >= "2026-07-28", "{out}");
    }
    assert_eq!(out["server"], "aaf", "{out}");
    // The demo's tools, namespaced (none is denied whatever its arguments, so none hidden).
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for tool in ["demo__add", "demo__echo", "demo__env", "demo__whoami"] {
        assert!(tools.contains(&tool), "{tool} not listed: {out}");
    }
    let results = out["results"].as_array().unwrap();
    // Allowed: the upstream's text.
    assert_eq!(results[0]["is_error"], false, "{out}");
    assert_eq!(results[0]["text"], "hello from python", "{out}");
    // Denied by the argument-level rule: a tool error with the reason and the action.
    assert_eq!(results[1]["is_error"], true, "{out}");
    let denied = results[1]["text"].as_str().unwrap();
    assert!(denied.contains("no forbidden words"), "{denied}");
    assert!(denied.contains("(action "), "{denied}");
    // An unknown server: a JSON-RPC "invalid params" error, which the SDK raises.
    assert_eq!(results[2]["error"]["code"], -32602, "{out}");
    // Held, approved, then run: the upstream's result.
    assert_eq!(results[3]["is_error"], false, "{out}");
    assert_eq!(results[3]["text"], "501", "{out}");
    // The script asked for progress (a progressToken): it heard what the call waited for.
    assert!(
        results[3]["progress"].as_array().unwrap().iter().any(|m| m
            .as_str()
            .unwrap()
            .starts_with("waiting for a human approval of action")),
        "{out}"
    );

    // A kill switch on the agent: every tool is hidden, and a call is refused before any
    // policy.
    let (status, switch) = server
        .post_json(
            "/v1/kill-switches",
            ADMIN_TOKEN,
            json!({"scope": "agent", "target": agent_id, "reason": "python test"}),
        )
        .await;
    assert_eq!(status, 201, "{switch}");
    let second = run_client(
        &server,
        &key,
        mode,
        json!([{"name": "demo__echo", "arguments": {"text": "hello again"}}]),
    );
    let out = within("the Python client", second).await.unwrap();
    eprintln!("Python client ({mode}) after the kill switch: {out}");
    assert_eq!(out["tools"], json!([]), "{out}");
    let refused = &out["results"][0];
    assert_eq!(refused["is_error"], true, "{out}");
    assert!(
        refused["text"].as_str().unwrap().contains("kill_switch:"),
        "{out}"
    );

    // Every call that is an action is in the audit chain.
    let events = server.audit(None).await;
    let decisions: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "action.decided")
        .map(|e| {
            (
                e["data"]["tool"].as_str().unwrap(),
                e["data"]["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("mcp:demo/echo", "allow"),
            ("mcp:demo/echo", "deny"),
            ("mcp:demo/add", "require_approval"),
            ("mcp:demo/echo", "deny"),
        ]
    );
    let executed: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "action.executed" && e["data"]["is_error"] == false)
        .map(|e| e["data"]["tool"].as_str().unwrap())
        .collect();
    assert_eq!(executed, ["echo", "add"], "{events:?}");
}
