//! Every failure while deciding or recording ends in a deny (or a 503 that executed nothing).

use serde_json::json;

use crate::common::{policy_dir, TestServer, Upstream, ALLOW_ALL};

#[tokio::test]
async fn a_policy_that_errors_denies_naming_the_policy() {
    let policies = policy_dir(&[
        ("allow.rego", ALLOW_ALL),
        (
            "broken.rego",
            "package broken\nimport rego.v1\ndecision := \"allow\" if input.action.params.n > 1\ndecision := \"deny\" if input.action.params.n > 1\n",
        ),
        (
            "types.rego",
            "package types\nimport rego.v1\ndecision := \"allow\" if startswith(input.action.params.s, \"x\")\n",
        ),
    ]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("a").await;
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "t", "operation": "o", "params": {"n": 5}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("policy broken failed to evaluate"),
        "{reason}"
    );
    assert!(reason.contains("broken.rego:"), "{reason}");
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "t", "operation": "o", "params": {"s": 12}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("policy types failed"),
        "{body}"
    );
    // The same policies allow well-formed input.
    let (status, _) = server
        .act(
            &key,
            json!({"tool": "t", "operation": "o", "params": {"n": 0, "s": "xy"}}),
        )
        .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_policy_past_its_time_limit_denies() {
    let policies = policy_dir(&[
        ("allow.rego", ALLOW_ALL),
        (
            "slow.rego",
            "package slow\nimport rego.v1\ndecision := \"allow\" if {\n  input.action.params.slow\n  count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000)]) > 0\n}\n",
        ),
    ]);
    let server = TestServer::start(policies.path(), |c| c.limits.eval_timeout_ms = 25).await;
    let (_, key) = server.create_agent("a").await;
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "t", "operation": "o", "params": {"slow": true}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("time limit"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn no_policy_loaded_denies_everything() {
    let empty = policy_dir(&[]);
    let server = TestServer::start(empty.path(), |_| {}).await;
    let (_, key) = server.create_agent("a").await;
    let (status, body) = server
        .act(&key, json!({"tool": "t", "operation": "o"}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("no policy allowed this action"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_store_failure_is_503_and_nothing_executes() {
    let upstream = Upstream::start().await;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("a").await;

    // Break the audit table behind the server's back.
    let url = format!("sqlite://{}", server.data_dir.join("aaf.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("ALTER TABLE audit_events RENAME TO audit_events_gone")
        .execute(&pool)
        .await
        .unwrap();

    let (status, body) = server
        .act(&key, json!({"tool": "http_proxy", "operation": "POST", "params": {"url": upstream.url("/pay"), "body": {"amount": 1}}}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not executed"),
        "{body}"
    );
    assert_eq!(
        upstream.count(),
        0,
        "the upstream was called although the audit log failed"
    );

    // Repaired, the server works again and the chain is intact.
    sqlx::query("ALTER TABLE audit_events_gone RENAME TO audit_events")
        .execute(&pool)
        .await
        .unwrap();
    let (status, body) = server
        .act(&key, json!({"tool": "http_proxy", "operation": "GET", "params": {"url": upstream.url("/ok")}}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(upstream.count(), 1);
    pool.close().await;
    server.stop().await;
}
