//! Usage, budgets and circuit breakers end to end on the real server (issue 15, sections 3
//! and 4): `input.usage` and seed 000's `rate_limit_exceeded(input.agent_id)` rule as
//! written, reservations refused with `budget:`, settlement by the agent's report and by the
//! LLM usage of an HTTP response, `input.budget`, the breakers that stop an agent by
//! themselves, and bad input refused with the field named and nothing stored.

use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN, ALLOW_ALL};

/// Seed 000's rate-limiting rule, exactly as the seed writes it (Rego v0 syntax).
const SEED_RATE_LIMIT: &str = "package aaf.policies.seed_rate_limit

decision = {
\"action\": \"deny\",
\"reason\": \"Rate limit exceeded\"
} {
rate_limit_exceeded(input.agent_id)
}
";

fn action(tool: &str, context: Value) -> Value {
    json!({"tool": tool, "operation": "run", "params": {}, "context": context})
}

async fn create(server: &TestServer, path: &str, body: Value) -> Value {
    let (status, created) = server.post_json(path, ADMIN_TOKEN, body).await;
    assert_eq!(status, 201, "{created}");
    created
}

#[tokio::test]
async fn seed_000s_rule_runs_unchanged_on_a_limit_left_to_the_policies() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("seed.rego", SEED_RATE_LIMIT)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (a_id, a_key) = server.create_agent("chatty").await;
    let (_, b_key) = server.create_agent("calm").await;
    let limit = create(
        &server,
        "/v1/rate-limits",
        json!({"scope": "agent", "target": a_id, "limit": 3, "window": "hour", "mode": "policy"}),
    )
    .await;
    assert_eq!(limit["mode"], "policy");
    for _ in 0..3 {
        let (status, body) = server.act(&a_key, action("search", json!({}))).await;
        assert_eq!(
            (status, &body["decision"]),
            (200, &json!("allow")),
            "{body}"
        );
    }
    // Over the limit: not a 429 from the guard, but the policy's deny.
    let (status, body) = server.act(&a_key, action("search", json!({}))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "Rate limit exceeded");
    let (status, body) = server.act(&b_key, action("search", json!({}))).await;
    assert_eq!(
        (status, &body["decision"]),
        (200, &json!("allow")),
        "{body}"
    );
}

#[tokio::test]
async fn policies_see_the_agents_recent_usage() {
    let usage_policy = r#"package aaf.policies.usage
import rego.v1

decision := {"action": "deny", "reason": sprintf("minute=%d hour=%d denials=%d search=%d", [
    input.usage.actions_last_minute,
    input.usage.actions_last_hour,
    input.usage.denials_last_5_minutes,
    input.usage.tools.search.last_minute,
])} if input.tool == "probe"

decision := {"action": "deny", "reason": "forbidden"} if input.tool == "forbidden"
"#;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("usage.rego", usage_policy)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("watched").await;
    for _ in 0..3 {
        assert_eq!(server.act(&key, action("search", json!({}))).await.0, 200);
    }
    for _ in 0..2 {
        assert_eq!(
            server.act(&key, action("forbidden", json!({}))).await.0,
            403
        );
    }
    let (status, body) = server.act(&key, action("probe", json!({}))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["reason"], "minute=5 hour=5 denials=2 search=3");
    // A dry run sees the same counts (the probe itself was recorded: 6 now, 3 denials).
    let (_, body) = server
        .post_json("/v1/actions/dry-run", &key, action("probe", json!({})))
        .await;
    assert_eq!(
        body["reason"], "minute=6 hour=6 denials=3 search=3",
        "{body}"
    );
}

#[tokio::test]
async fn a_token_budget_reserves_refuses_and_settles_with_the_reported_usage() {
    let budget_policy = r#"package aaf.policies.budget_view
import rego.v1

decision := {"action": "deny", "reason": sprintf("remaining=%d", [input.budget.remaining.tokens])} if input.tool == "probe"
"#;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("view.rego", budget_policy)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (agent_id, key) = server.create_agent("llm-user").await;
    let budget = create(
        &server,
        "/v1/budgets",
        json!({"agent_id": agent_id, "unit": "tokens", "period": "day", "limit": 100}),
    )
    .await;
    assert_eq!(
        (budget["scope"].as_str(), budget["spent"].as_u64()),
        (Some("agent"), Some(0))
    );
    let uses = |tokens: u64| action("llm_tool", json!({"expected_usage": {"tokens": tokens}}));
    let (status, first) = server.act(&key, uses(40)).await;
    assert_eq!(
        (status, &first["status"]),
        (200, &json!("allowed")),
        "{first}"
    );
    assert_eq!(server.act(&key, uses(40)).await.0, 200);
    // 80 reserved: 40 more does not fit.
    let (status, refused) = server.act(&key, uses(40)).await;
    assert_eq!(status, 403, "{refused}");
    let reason = refused["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("budget: the agent's daily budget of 100 tokens has 20 left"),
        "{reason}"
    );
    // Policies see what is left after the reservation (the probe reserves nothing).
    let (_, probe) = server.act(&key, action("probe", json!({}))).await;
    assert_eq!(probe["reason"], "remaining=20");
    // The first action used only 10: 30 come back.
    let (status, reported) = server
        .post_json(
            &format!("/v1/actions/{}/result", first["id"].as_str().unwrap()),
            &key,
            json!({"status": "succeeded", "usage": {"tokens": 10}}),
        )
        .await;
    assert_eq!(
        (status, &reported["status"]),
        (200, &json!("executed")),
        "{reported}"
    );
    let (status, again) = server
        .post_json(
            &format!("/v1/actions/{}/result", first["id"].as_str().unwrap()),
            &key,
            json!({"status": "succeeded", "usage": {"tokens": 10}}),
        )
        .await;
    assert_eq!(status, 409, "a second report: {again}");
    let (_, view) = server
        .get_json(
            &format!("/v1/budgets/{}", budget["id"].as_str().unwrap()),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(
        (view["spent"].as_u64(), view["remaining"].as_u64()),
        (Some(50), Some(50))
    );
    assert_eq!(server.act(&key, uses(40)).await.0, 200);
    // The refusal is recorded like every decision, with the guard named.
    let events = server.audit(None).await;
    let decided = events
        .iter()
        .find(|e| e["action_id"] == refused["id"] && e["type"] == "action.decided")
        .expect("the refusal is in the audit chain");
    assert_eq!(decided["data"]["guard"]["guard"], "budget");
    assert_eq!(decided["data"]["policy_revision"], "not_evaluated");
    assert!(events.iter().any(|e| e["type"] == "budget.created"));
}

/// An upstream that answers like OpenAI's chat completions, with usage.
async fn llm_upstream() -> String {
    let app = axum::Router::new().fallback(|| async {
        axum::Json(json!({
            "id": "chatcmpl-1", "model": "gpt-4o-2024-08-06",
            "choices": [{"message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}
        }))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1/chat/completions")
}

#[tokio::test]
async fn the_http_connector_settles_llm_usage_priced_from_the_table() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.budgets.prices = vec![aaf_core::budget::ModelPrice {
            model: "gpt-4o".into(),
            input_per_million: 2_500_000,
            output_per_million: 10_000_000,
        }];
    })
    .await;
    let url = llm_upstream().await;
    let (agent_id, key) = server.create_agent("caller").await;
    let cost = create(
        &server,
        "/v1/budgets",
        json!({"agent_id": agent_id, "unit": "USD", "period": "month", "limit": 1_000_000}),
    )
    .await;
    let tokens = create(
        &server,
        "/v1/budgets",
        json!({"unit": "tokens", "period": "total", "limit": 1_000_000}),
    )
    .await;
    let call = |model: &str| {
        json!({"tool": "http_proxy", "operation": "POST", "params": {"url": url, "body": {
            "model": model, "max_tokens": 500,
            "messages": [{"role": "user", "content": "hello"}]
        }}})
    };
    let (status, body) = server.act(&key, call("gpt-4o")).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("executed")),
        "{body}"
    );
    // 1000 input tokens at 2.5 USD and 100 output tokens at 10 USD per million.
    let (_, view) = server
        .get_json(
            &format!("/v1/budgets/{}", cost["id"].as_str().unwrap()),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(view["spent"].as_u64(), Some(3500), "{view}");
    let (_, view) = server
        .get_json(
            &format!("/v1/budgets/{}", tokens["id"].as_str().unwrap()),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(view["spent"].as_u64(), Some(1100), "{view}");
    // A model without a price cannot be counted against a cost budget: refused.
    let (status, body) = server.act(&key, call("mystery-model")).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("budget: the model \"mystery-model\" has no price"),
        "{body}"
    );
}

#[tokio::test]
async fn an_exhausted_budget_trips_the_agents_breaker_until_an_admin_releases_it() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (agent_id, key) = server.create_agent("runaway").await;
    let (_, other_key) = server.create_agent("bystander").await;
    let budget = create(
        &server,
        "/v1/budgets",
        json!({"agent_id": agent_id, "unit": "tokens", "period": "total", "limit": 50}),
    )
    .await;
    let uses = |tokens: u64| action("llm_tool", json!({"expected_usage": {"tokens": tokens}}));
    assert_eq!(server.act(&key, uses(50)).await.0, 200);
    let (status, body) = server.act(&key, uses(1)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("is exhausted"),
        "{body}"
    );
    // The breaker stopped the agent: even an action that needs nothing is refused now.
    let (status, body) = server.act(&key, action("search", json!({}))).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("kill_switch: "),
        "{body}"
    );
    assert_eq!(
        server.act(&other_key, action("search", json!({}))).await.0,
        200
    );
    let (_, switches) = server.get_json("/v1/kill-switches", ADMIN_TOKEN).await;
    let switch = &switches["kill_switches"][0];
    assert_eq!(switch["source"], "circuit_breaker", "{switches}");
    assert!(
        switch["expires_at"].is_string(),
        "the default cooldown: {switch}"
    );
    let events = server.audit(None).await;
    let tripped = events
        .iter()
        .find(|e| e["type"] == "circuit_breaker.tripped")
        .expect("audited");
    assert_eq!(tripped["data"]["breaker"], "budget_exhausted");
    // An admin raises the budget and releases the switch: the agent acts again. (While
    // the budget stays exhausted, every action of the agent is refused by it.)
    let (status, raised) = server
        .send_json(
            reqwest::Method::PATCH,
            &format!("/v1/budgets/{}", budget["id"].as_str().unwrap()),
            ADMIN_TOKEN,
            json!({"limit": 100}),
        )
        .await;
    assert_eq!(
        (status, raised["remaining"].as_u64()),
        (200, Some(50)),
        "{raised}"
    );
    let id = switch["id"].as_str().unwrap();
    let r = server
        .client
        .delete(server.url(&format!("/v1/kill-switches/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(server.act(&key, action("search", json!({}))).await.0, 200);
}

#[tokio::test]
async fn too_many_denials_trip_the_breaker_the_organisation_set() {
    let deny_bad =
        "package aaf.policies.bad\nimport rego.v1\ndecision := \"deny\" if input.tool == \"bad\"\n";
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("bad.rego", deny_bad)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("prober").await;
    let (status, set) = server
        .send_json(
            reqwest::Method::PUT,
            "/v1/circuit-breakers",
            ADMIN_TOKEN,
            json!({"max_denials": 3, "denials_window_seconds": 300, "cooldown_seconds": 0}),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["budget_exhausted"], true, "defaults fill the rest");
    let (_, got) = server.get_json("/v1/circuit-breakers", ADMIN_TOKEN).await;
    assert_eq!(got["max_denials"], 3);
    for _ in 0..3 {
        assert_eq!(server.act(&key, action("bad", json!({}))).await.0, 403);
    }
    assert_eq!(server.act(&key, action("search", json!({}))).await.0, 200);
    // The fourth denial is more than 3 in the window.
    assert_eq!(server.act(&key, action("bad", json!({}))).await.0, 403);
    let (status, body) = server.act(&key, action("search", json!({}))).await;
    assert_eq!(status, 403, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("circuit_breaker: 4 denied actions"),
        "{reason}"
    );
    let (_, switches) = server.get_json("/v1/kill-switches", ADMIN_TOKEN).await;
    assert!(
        switches["kill_switches"][0]["expires_at"].is_null(),
        "cooldown 0: until an admin releases it"
    );
}

#[tokio::test]
async fn bad_budgets_and_declarations_are_refused_with_the_field_named() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("a").await;
    for (body, field) in [
        (json!({"unit": "EUR", "period": "day", "limit": 5}), "unit"),
        (json!({"unit": "usd", "period": "day", "limit": 5}), "unit"),
        (
            json!({"unit": "tokens", "period": "week", "limit": 5}),
            "period",
        ),
        (
            json!({"unit": "tokens", "period": "day", "limit": -5}),
            "limit",
        ),
        (
            json!({"unit": "tokens", "period": "day", "limit": 0}),
            "limit",
        ),
        (
            json!({"unit": "tokens", "period": "day", "limit": 1e30}),
            "limit",
        ),
        (
            json!({"unit": "tokens", "period": "day", "limit": 5, "agent_id": "nobody"}),
            "agent_id",
        ),
    ] {
        let (status, error) = server
            .post_json("/v1/budgets", ADMIN_TOKEN, body.clone())
            .await;
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    let (_, list) = server.get_json("/v1/budgets", ADMIN_TOKEN).await;
    assert_eq!(list["budgets"], json!([]), "nothing stored");
    let (status, error) = server
        .send_json(
            reqwest::Method::PUT,
            "/v1/circuit-breakers",
            ADMIN_TOKEN,
            json!({"denials_window_seconds": 0}),
        )
        .await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (400, &json!("denials_window_seconds"))
    );
    let (status, error) = server
        .send_json(
            reqwest::Method::PUT,
            "/v1/circuit-breakers",
            ADMIN_TOKEN,
            json!({"spike_min_spend": 9_223_372_036_854_775_808u64}),
        )
        .await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (400, &json!("spike_min_spend")),
        "{error}"
    );
    let (status, error) = server
        .act(&key, action("x", json!({"expected_usage": {"tokens": -1}})))
        .await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (400, &json!("context.expected_usage.tokens")),
        "{error}"
    );
    let (status, error) = server
        .post_json(
            "/v1/rate-limits",
            ADMIN_TOKEN,
            json!({"scope": "agent", "limit": 5, "window": "hour", "mode": "advise"}),
        )
        .await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (400, &json!("mode")),
        "{error}"
    );
}

#[tokio::test]
async fn a_spend_spike_trips_the_breaker() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.runtime.circuit_breakers.spend_spike_multiple = 3;
        c.runtime.circuit_breakers.spike_window_seconds = 60;
        c.runtime.circuit_breakers.baseline_seconds = 3600;
        c.runtime.circuit_breakers.spike_min_spend = 250;
    })
    .await;
    let (_, key) = server.create_agent("spender").await;
    // The spike breaker measures what budgets charge: an organisation budget in USD.
    create(
        &server,
        "/v1/budgets",
        json!({"unit": "USD", "period": "month", "limit": 1_000_000}),
    )
    .await;
    let costs = action("llm_tool", json!({"expected_usage": {"cost_micros": 100}}));
    // 100 and 200 spent: below the least spend that counts as a spike.
    assert_eq!(server.act(&key, costs.clone()).await.0, 200);
    assert_eq!(server.act(&key, costs.clone()).await.0, 200);
    // 300 within a minute, against no usual spend before: a spike.
    assert_eq!(server.act(&key, costs.clone()).await.0, 200);
    let (status, body) = server.act(&key, costs).await;
    assert_eq!(status, 403, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("kill_switch: ") && reason.contains("circuit_breaker: spent 300"),
        "{reason}"
    );
    let events = server.audit(None).await;
    assert!(events
        .iter()
        .any(|e| e["type"] == "circuit_breaker.tripped" && e["data"]["breaker"] == "spend_spike"));
}
