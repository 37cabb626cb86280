//! The seeds' decisions through the running server, and dry runs.

use serde_json::json;

use crate::common::{examples, TestServer};

#[tokio::test]
async fn seed_004_decisions_over_http() {
    let server = TestServer::start(&examples("seed-004"), |_| {}).await;
    let (agent_id, key) = server.create_agent("payments").await;

    // The Stripe charge of 50000 requires approval: 202, stored as pending_approval.
    let (status, body) = server
        .act(
            &key,
            json!({
                "tool": "http_proxy", "operation": "POST",
                "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 50000}},
                "context": {"user_id": "user-456", "purpose": "Process payment"}
            }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["decision"], "require_approval");
    assert_eq!(body["status"], "pending_approval");
    assert_eq!(body["matched_policies"], json!(["aaf.policy"]));
    assert!(body["id"].as_str().is_some());
    assert!(body.get("result").is_none());
    // Bound to the exact action: the digest of (org, agent, tool, operation, params,
    // context) and a deadline an hour (approvals.default_timeout_seconds) away.
    let me: serde_json::Value = server
        .client
        .get(server.url("/v1/whoami"))
        .bearer_auth(crate::common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let params = json!({"url": "https://api.stripe.com/v1/charges", "body": {"amount": 50000}});
    let context = json!({"user_id": "user-456", "purpose": "Process payment"});
    let digest = aaf_core::approval::action_digest(
        me["org_id"].as_str().unwrap(),
        &agent_id,
        "http_proxy",
        "POST",
        params.as_object().unwrap(),
        context.as_object().unwrap(),
    )
    .unwrap();
    assert_eq!(body["approval"]["digest"], digest.as_str(), "{body}");
    let expires_at = body["approval"]["expires_at"].as_str().unwrap().to_string();
    let in_59_min = aaf_server::time::format_rfc3339(
        time::OffsetDateTime::now_utc() + time::Duration::minutes(59),
    );
    let in_61_min = aaf_server::time::format_rfc3339(
        time::OffsetDateTime::now_utc() + time::Duration::minutes(61),
    );
    assert!(
        expires_at > in_59_min && expires_at < in_61_min,
        "{expires_at}"
    );
    let pending_id = body["id"].as_str().unwrap().to_string();
    let stored: serde_json::Value = server
        .client
        .get(server.url(&format!("/v1/actions/{pending_id}")))
        .bearer_auth(crate::common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["status"], "pending_approval");
    assert_eq!(stored["digest"], digest.as_str());
    assert_eq!(stored["expires_at"], expires_at.as_str());

    // A request to a private network is denied by the policy.
    let (status, body) = server
        .act(&key, json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "http://169.254.169.254/latest/meta-data/"}}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["decision"], "deny");
    assert_eq!(body["status"], "denied");
    assert_eq!(body["policies"][0]["policy"], "aaf.policy");
    assert_eq!(body["policies"][0]["decision"], "deny");

    // A decision-only tool: seed 004 allows by default; the agent runs it itself.
    let (status, body) = server
        .act(&key, json!({"tool": "calendar", "operation": "read"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow");
    assert_eq!(body["status"], "allowed");
    assert!(body.get("approval").is_none());

    let audit = server.audit(None).await;
    let decided: Vec<_> = audit
        .iter()
        .filter(|e| e["type"] == "action.decided")
        .collect();
    assert_eq!(decided.len(), 3);
    assert_eq!(decided[0]["data"]["decision"], "require_approval");
    assert_eq!(decided[0]["data"]["params"]["body"]["amount"], 50000);
    assert_eq!(decided[0]["data"]["approval"]["digest"], digest.as_str());
    assert_eq!(
        decided[0]["data"]["approval"]["expires_at"],
        expires_at.as_str()
    );
    assert!(decided[2]["data"]["approval"].is_null());
    server.stop().await;
}

#[tokio::test]
async fn seed_000_decisions_by_dry_run() {
    let server = TestServer::start(&examples("seed-000"), |_| {}).await;
    let (_, key) = server.create_agent("reader").await;
    let before = server.audit(None).await.len();

    let (status, body) = server
        .post_json("/v1/actions/dry-run", &key, json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "https://api.trusted.com/v1/items"}}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow");
    assert_eq!(body["status"], "dry_run");
    assert!(
        body["policies"][0]["eval_time_us"].as_u64().is_some(),
        "{body}"
    );
    assert!(body.get("id").is_none());

    let (status, body) = server
        .post_json("/v1/actions/dry-run", &key, json!({"tool": "http_proxy", "operation": "DELETE", "params": {"url": "https://api.trusted.com/v1/items"}}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["decision"], "deny");
    assert_eq!(body["reason"], "No matching allow rule");

    // A dry run stores nothing.
    assert_eq!(server.audit(None).await.len(), before);
    server.stop().await;
}

#[tokio::test]
async fn bundled_starter_policy_is_used_without_a_policy_directory() {
    let missing = tempfile::tempdir().unwrap().path().join("no-such-dir");
    let server = TestServer::start(&missing, |_| {}).await;
    let (_, key) = server.create_agent("kb").await;
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "x"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["matched_policies"], json!(["aaf.starter"]));
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "shell", "operation": "exec", "params": {"cmd": "rm -rf /"}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["reason"],
        "no rule of the starter policy allows this action"
    );
    let (status, body) = server
        .act(&key, json!({"tool": "http_proxy", "operation": "POST", "params": {"url": "https://api.github.com/repos/x/y/issues"}}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["risk_level"], "high");
    server.stop().await;
}

/// A policy on `input.action.params.n` that denies one card number (Luhn-valid) and allows
/// everything else; its decisions are cached.
const CARD_POLICY: &str = r#"package cards
import rego.v1
default decision := "allow"
decision := {"action": "deny", "reason": "a card number"} if input.action.params.n == 4000000000000000014
decision := {"action": "deny", "reason": "a card number"} if input.action.params.n == "4000000000000000014"
"#;

#[tokio::test]
async fn numbers_beyond_double_precision_are_refused_with_their_path() {
    // 4000000000000000015 and 4000000000000000014 differ only beyond double precision:
    // RFC 8785 rounds both to one double, so they shared a decision cache key and the
    // second got the first one's cached allow. Now both are refused, naming the field.
    let policies = crate::common::policy_dir(&[("cards.rego", CARD_POLICY)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("payments").await;
    for n in [4_000_000_000_000_000_015u64, 4_000_000_000_000_000_014] {
        for path in ["/v1/actions", "/v1/actions/dry-run"] {
            let (status, body) = server
                .post_json(
                    path,
                    &key,
                    json!({"tool": "payments", "operation": "charge", "params": {"n": n}}),
                )
                .await;
            assert_eq!(status, 400, "{path} {n}: {body}");
            assert_eq!(body["error"]["field"], "params.n", "{body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(&n.to_string()), "{message}");
            assert!(message.contains("send it as a string"), "{message}");
        }
    }
    // Deeper, in context, negative: the path names the member.
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "payments", "operation": "charge",
                   "params": {"items": [{"qty": 1}, {"qty": -9_007_199_254_740_993i64}]}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "params.items[1].qty", "{body}");
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "payments", "operation": "charge", "params": {},
                   "context": {"order": {"total": 1e20}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "context.order.total", "{body}");

    // Sent as strings, as the answer says, they are told apart: allow, then deny.
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "payments", "operation": "charge", "params": {"n": "4000000000000000015"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "allow");
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "payments", "operation": "charge", "params": {"n": "4000000000000000014"}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "a card number");
    // Integers up to 2^53-1 are exact and accepted.
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "payments", "operation": "charge", "params": {"n": 9_007_199_254_740_991u64}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}
