//! Rate limits end to end on the real server: an organisation's limit and the
//! configuration's, `429` with `Retry-After` and the IETF `RateLimit` fields, the recorded
//! deny, dry runs that count nothing, other agents unaffected, deletion, and bad input.

use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN, ALLOW_ALL};

fn search() -> Value {
    json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "x"}})
}

/// Submits an action; returns (status, body, headers).
async fn act_with_headers(
    server: &TestServer,
    key: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = server
        .client
        .post(server.url("/v1/actions"))
        .bearer_auth(key)
        .json(&search())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap(), headers)
}

#[tokio::test]
async fn an_agent_over_its_limit_gets_429_recorded_and_others_go_on() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (a_id, a_key) = server.create_agent("busy").await;
    let (_, b_key) = server.create_agent("quiet").await;
    let (status, limit) = server
        .post_json(
            "/v1/rate-limits",
            ADMIN_TOKEN,
            json!({"scope": "agent", "target": a_id, "limit": 5, "window": "hour"}),
        )
        .await;
    assert_eq!(status, 201, "{limit}");
    assert_eq!(limit["burst"], 5, "burst defaults to the limit");
    let id = limit["id"].as_str().unwrap().to_string();

    // Dry runs count nothing.
    for _ in 0..10 {
        let (status, body) = server
            .post_json("/v1/actions/dry-run", &a_key, search())
            .await;
        assert_eq!(
            (status, &body["decision"]),
            (200, &json!("allow")),
            "{body}"
        );
    }
    for i in 0..5 {
        let (status, body, _) = act_with_headers(&server, &a_key).await;
        assert_eq!(status, 200, "action {i}: {body}");
    }
    let (status, body, headers) = act_with_headers(&server, &a_key).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["decision"], "deny");
    assert_eq!(body["status"], "denied");
    assert_eq!(body["policy_revision"], "not_evaluated");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rate_limit: this agent is over its limit of 5 actions per hour"),
        "{reason}"
    );
    // One action per 720 s comes back.
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((700..=720).contains(&retry), "{retry}");
    assert_eq!(
        headers["ratelimit-policy"].to_str().unwrap(),
        format!("\"{id}\";q=5;w=3600")
    );
    assert_eq!(
        headers["ratelimit"].to_str().unwrap(),
        format!("\"{id}\";r=0;t={retry}")
    );
    let refused_id = body["id"].as_str().unwrap().to_string();
    for _ in 0..8 {
        assert_eq!(
            server.act(&b_key, search()).await.0,
            200,
            "another agent goes on"
        );
    }
    let audit = server.audit(None).await;
    let decided = audit
        .iter()
        .find(|e| e["type"] == "action.decided" && e["action_id"] == refused_id.as_str())
        .unwrap();
    assert_eq!(decided["data"]["guard"]["guard"], "rate_limit");
    assert_eq!(decided["data"]["guard"]["rate_limit_id"], id.as_str());
    assert!(audit.iter().any(|e| e["type"] == "rate_limit.created"));

    let (status, list) = server.get_json("/v1/rate-limits", ADMIN_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(list["rate_limits"][0]["id"], id.as_str());
    assert_eq!(list["defaults"], json!([]));
    let (status, _) = server
        .send_json(
            reqwest::Method::DELETE,
            &format!("/v1/rate-limits/{id}"),
            ADMIN_TOKEN,
            Value::Null,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        server.act(&a_key, search()).await.0,
        200,
        "deleted: no limit"
    );
    let (status, _) = server
        .send_json(
            reqwest::Method::DELETE,
            &format!("/v1/rate-limits/{id}"),
            ADMIN_TOKEN,
            Value::Null,
        )
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[tokio::test]
async fn the_configurations_limits_apply_to_each_agent_of_every_organisation() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.runtime.rate_limits = vec![aaf_server::config::RateLimitConfig {
            scope: "agent".into(),
            target: None,
            limit: 3,
            window: "minute".into(),
            burst: None,
            mode: None,
        }];
    })
    .await;
    let (_, a_key) = server.create_agent("a").await;
    let (_, b_key) = server.create_agent("b").await;
    for key in [&a_key, &b_key] {
        for _ in 0..3 {
            assert_eq!(server.act(key, search()).await.0, 200);
        }
        let (status, body) = server.act(key, search()).await;
        assert_eq!(status, 429, "{body}");
        assert!(body["reason"]
            .as_str()
            .unwrap()
            .contains("(burst 3, limit config:1)"));
    }
    let (_, list) = server.get_json("/v1/rate-limits", ADMIN_TOKEN).await;
    assert_eq!(list["defaults"][0]["id"], "config:1");
    assert_eq!(list["defaults"][0]["window"], "minute");
    server.stop().await;
}

#[tokio::test]
async fn bad_rate_limits_are_400_naming_the_field_and_store_nothing() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let cases = [
        (
            json!({"scope": "team", "limit": 5, "window": "hour"}),
            "scope",
        ),
        (
            json!({"scope": "agent", "target": "nobody", "limit": 5, "window": "hour"}),
            "target",
        ),
        (
            json!({"scope": "org", "target": "x", "limit": 5, "window": "hour"}),
            "target",
        ),
        (
            json!({"scope": "agent", "limit": 0, "window": "hour"}),
            "limit",
        ),
        (
            json!({"scope": "agent", "limit": -1, "window": "hour"}),
            "limit",
        ),
        (
            json!({"scope": "agent", "limit": 1_000_001, "window": "hour"}),
            "limit",
        ),
        (
            json!({"scope": "agent", "limit": 5, "window": "day"}),
            "window",
        ),
        (
            json!({"scope": "agent", "limit": 5, "window": "hour", "burst": 0}),
            "burst",
        ),
        (
            json!({"scope": "agent", "limit": 5, "window": "hour", "per": 1}),
            "per",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = server
            .post_json("/v1/rate-limits", ADMIN_TOKEN, body.clone())
            .await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let named = answer["error"]["field"].as_str().unwrap_or_default();
        assert!(
            named.contains(field),
            "{body}: names {named:?}, not {field}"
        );
    }
    let (_, list) = server.get_json("/v1/rate-limits", ADMIN_TOKEN).await;
    assert_eq!(list["rate_limits"], json!([]));
    server.stop().await;
}

#[test]
fn a_bad_configured_limit_stops_the_server_naming_it() {
    let mut config = aaf_server::config::Config::default();
    config.runtime.rate_limits = vec![aaf_server::config::RateLimitConfig {
        scope: "agent".into(),
        target: None,
        limit: 10,
        window: "fortnight".into(),
        burst: None,
        mode: None,
    }];
    let error = config.default_rate_limits().unwrap_err().to_string();
    assert!(error.contains("runtime.rate_limits[0].window"), "{error}");
}
