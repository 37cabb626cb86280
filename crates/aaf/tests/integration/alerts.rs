//! Alerts end to end (docs/alerts.md; issue 17, sections 5 and 6): the real server on port
//! 0 with a real SQLite file (and PostgreSQL for two nodes), real webhook receivers on
//! 127.0.0.1. Eleven denials in a minute raise exactly one alert and one webhook delivery; a
//! second burst only counts on the open alert; acknowledging and resolving go through the
//! API into the audit chain; a burst after the resolution opens a new alert; failed
//! authentications, kill switches, circuit breakers, approval timeouts, budget thresholds,
//! high-risk submissions and outbound detector hits each raise theirs; a rule configured to
//! act stops the agent; bad input is refused with the field named.

use std::time::Duration;

use aaf_server::alerts::Signal;
use aaf_server::app::AppState;
use aaf_server::clock::Clock;
use aaf_server::config::Config;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::common::{pg_db, policy_dir, within, TestServer, ADMIN_TOKEN, ALLOW_ALL};

/// Denies the tool `bad`; actions of `needs_approval` wait for an approver.
const RULES: &str = "package test.alerts\nimport rego.v1\n\
decision := \"deny\" if input.tool == \"bad\"\n\
decision := \"require_approval\" if input.tool == \"needs_approval\"\n";

use crate::webhooks::{verify_signature, Receiver};

fn config(c: &mut Config) {
    c.webhooks.allow_private_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
    c.webhooks.poll_interval_ms = 20;
    c.approvals.sweep_interval_ms = 20;
    c.auth.failed_auth_per_minute = 0;
    c.auth.public_base_url = Some("https://aaf.example.com".into());
}

fn tool(name: &str) -> Value {
    json!({"tool": name, "operation": "run", "params": {}})
}

/// The organisation's alerts matching `query` (e.g. `rule=repeated_denials`).
async fn alerts(server: &TestServer, query: &str) -> Vec<Value> {
    let (status, page) = server
        .get_json(&format!("/v1/alerts?{query}"), ADMIN_TOKEN)
        .await;
    assert_eq!(status, 200, "{page}");
    page["alerts"].as_array().unwrap().clone()
}

/// Waits until the alerts matching `query` satisfy `done`; returns them.
async fn alerts_until(
    server: &TestServer,
    query: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    within(&format!("alerts {query}"), async {
        loop {
            let found = alerts(server, query).await;
            if done(&found) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn deny_burst(server: &TestServer, key: &str, n: usize) {
    for _ in 0..n {
        let (status, body) = server.act(key, tool("bad")).await;
        assert_eq!(status, 403, "{body}");
    }
}

#[tokio::test]
async fn eleven_denials_raise_one_alert_and_one_webhook_delivery() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("rules.rego", RULES)]);
    let server = TestServer::start(policies.path(), config).await;
    let (agent_id, key) = server.create_agent("prober").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let (_, viewer) = server.create_user("victor", "viewer").await;
    let mut raised_hook = Receiver::start(0).await;
    let mut slack_hook = Receiver::start(0).await;
    let (status, hook) = server
        .post_json(
            "/v1/webhooks",
            ADMIN_TOKEN,
            json!({"url": raised_hook.url, "events": ["alert.raised"]}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    let (status, body) = server
        .post_json(
            "/v1/webhooks",
            ADMIN_TOKEN,
            json!({"url": slack_hook.url, "format": "slack", "events": ["alert.raised", "alert.acknowledged", "alert.resolved"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Ten denials are not "more than 10": no alert.
    deny_burst(&server, &key, 10).await;
    let (status, _) = server.act(&key, tool("search")).await;
    assert_eq!(status, 200);
    assert!(raised_hook.quiet_for(Duration::from_millis(300)).await);
    assert!(alerts(&server, "rule=repeated_denials").await.is_empty());

    // The eleventh raises exactly one alert, announced exactly once.
    deny_burst(&server, &key, 1).await;
    let found = alerts_until(&server, "rule=repeated_denials", |a| !a.is_empty()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let alert = &found[0];
    let alert_id = alert["id"].as_str().unwrap().to_string();
    assert_eq!(alert["status"], "open");
    assert_eq!(alert["count"], 1);
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["agent_id"], agent_id.as_str());
    assert_eq!(alert["subject"], format!("agent:{agent_id}"));
    assert_eq!(alert["detail"]["denials"], 11);
    assert!(alert["kill_switch_id"].is_null(), "no rule acts by default");
    let (headers, body) = raised_hook.next().await;
    verify_signature(&secret, &headers, &body);
    assert_eq!(headers["x-aaf-event"], "alert.raised");
    assert_eq!(body["event"], "alert.raised");
    assert_eq!(body["alert"]["id"], alert_id.as_str());
    assert_eq!(body["alert"]["rule"], "repeated_denials");
    assert_eq!(
        body["link"],
        format!("https://aaf.example.com/v1/alerts/{alert_id}")
    );
    let (_, slack) = slack_hook.next().await;
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.starts_with("*Alert raised* (warning): `repeated_denials`"),
        "{text}"
    );

    // A second burst while the alert is open: counted on it, nothing new delivered.
    deny_burst(&server, &key, 11).await;
    let found = alerts_until(&server, "rule=repeated_denials", |a| {
        a.first().is_some_and(|a| a["count"] == 12)
    })
    .await;
    assert_eq!(found.len(), 1);
    assert!(raised_hook.quiet_for(Duration::from_millis(500)).await);
    assert!(slack_hook.quiet_for(Duration::from_millis(100)).await);
    let raised_events = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["type"] == "alert.raised")
            .count()
    };
    assert_eq!(raised_events(&server.audit(None).await), 1);

    // Read, acknowledged (by an approver), resolved (by an admin), each audited.
    let (status, one) = server
        .get_json(&format!("/v1/alerts/{alert_id}"), &approver)
        .await;
    assert_eq!((status, &one["count"]), (200, &json!(12)), "{one}");
    let (status, _) = server.get_json("/v1/alerts", &viewer).await;
    assert_eq!(status, 403);
    let (status, acked) = server
        .post_json(
            &format!("/v1/alerts/{alert_id}/ack"),
            &approver,
            json!({"comment": "looking"}),
        )
        .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    assert!(acked["acknowledged_by"].is_string());
    assert_eq!(
        slack_hook.next().await.1["text"]
            .as_str()
            .unwrap()
            .split(')')
            .next(),
        Some("*Alert acknowledged* (warning")
    );
    let (status, again) = server
        .post_json(&format!("/v1/alerts/{alert_id}/ack"), &approver, json!({}))
        .await;
    assert_eq!(status, 409, "{again}");
    let (status, _) = server
        .post_json(
            &format!("/v1/alerts/{alert_id}/resolve"),
            &approver,
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "approvers acknowledge, admins resolve");
    // Still acknowledged: later hits count on it.
    deny_burst(&server, &key, 1).await;
    alerts_until(&server, "rule=repeated_denials", |a| {
        a.first().is_some_and(|a| a["count"] == 13)
    })
    .await;
    let response = server
        .client
        .post(server.url(&format!("/v1/alerts/{alert_id}/resolve")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "a body is optional");
    let resolved: Value = response.json().await.unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(
        slack_hook.next().await.1["text"]
            .as_str()
            .unwrap()
            .split(')')
            .next(),
        Some("*Alert resolved* (warning")
    );
    for verb in ["ack", "resolve"] {
        let (status, body) = server
            .post_json(
                &format!("/v1/alerts/{alert_id}/{verb}"),
                ADMIN_TOKEN,
                json!({}),
            )
            .await;
        assert_eq!(status, 409, "{verb} on a resolved alert: {body}");
        assert_eq!(body["error"]["code"], "conflict");
    }
    let events = server.audit(None).await;
    for (kind, by_approver) in [("alert.acknowledged", true), ("alert.resolved", false)] {
        let e = events
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event"));
        assert_eq!(e["data"]["alert_id"], alert_id.as_str());
        assert!(e["data"]["by"].is_string(), "{e}");
        if by_approver {
            assert_eq!(e["data"]["comment"], "looking");
        }
    }

    // A new burst after the resolution: counted afresh, a new alert, announced again.
    deny_burst(&server, &key, 10).await;
    assert!(raised_hook.quiet_for(Duration::from_millis(300)).await);
    deny_burst(&server, &key, 1).await;
    let found = alerts_until(&server, "rule=repeated_denials&status=open", |a| {
        !a.is_empty()
    })
    .await;
    assert_eq!(found.len(), 1);
    assert_ne!(found[0]["id"], alert_id.as_str());
    assert_eq!(found[0]["count"], 1);
    let (_, body) = raised_hook.next().await;
    assert_eq!(body["alert"]["id"], found[0]["id"]);
    assert_eq!(alerts(&server, "rule=repeated_denials").await.len(), 2);
    assert_eq!(
        alerts(&server, &format!("agent_id={agent_id}&status=resolved"))
            .await
            .len(),
        1
    );
    // Paged newest first.
    let (_, page) = server.get_json("/v1/alerts?limit=1", ADMIN_TOKEN).await;
    assert_eq!(page["alerts"][0]["id"], found[0]["id"]);
    let next = page["next_before"].as_str().unwrap();
    let (_, page) = server
        .get_json(&format!("/v1/alerts?limit=1&before={next}"), ADMIN_TOKEN)
        .await;
    assert_eq!(page["alerts"][0]["id"], alert_id.as_str());

    // Bad input: the field is named; unknown ids are 404.
    for (query, field) in [
        ("status=closed", Some("status")),
        ("rule=nope", Some("rule")),
        ("limit=0", Some("limit")),
        ("limit=1001", Some("limit")),
        ("before=", Some("before")),
        ("colour=red", None),
    ] {
        let (status, body) = server
            .get_json(&format!("/v1/alerts?{query}"), ADMIN_TOKEN)
            .await;
        assert_eq!(status, 400, "{query}: {body}");
        if let Some(field) = field {
            assert_eq!(body["error"]["field"], field, "{query}: {body}");
        }
    }
    let (status, _) = server.get_json("/v1/alerts/nope", ADMIN_TOKEN).await;
    assert_eq!(status, 404);
    let (status, _) = server
        .post_json("/v1/alerts/nope/ack", ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(status, 404);
    let open_id = found[0]["id"].as_str().unwrap();
    let (status, body) = server
        .post_json(
            &format!("/v1/alerts/{open_id}/ack"),
            ADMIN_TOKEN,
            json!({"comment": "x".repeat(2001)}),
        )
        .await;
    assert_eq!((status, &body["error"]["field"]), (400, &json!("comment")));
    let (status, body) = server
        .post_json(&format!("/v1/alerts/{open_id}/ack"), ADMIN_TOKEN, json!([]))
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, still) = server
        .get_json(&format!("/v1/alerts/{open_id}"), ADMIN_TOKEN)
        .await;
    assert_eq!(still["status"], "open", "nothing changed on bad input");
    server.stop().await;
}

#[tokio::test]
async fn failed_authentications_raise_their_alerts() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        config(c);
        c.alerts.failed_auth_org_threshold = 3;
    })
    .await;
    let (agent_id, key) = server.create_agent("leaky").await;
    let (_, keys) = server
        .get_json(&format!("/v1/agents/{agent_id}/keys"), ADMIN_TOKEN)
        .await;
    let key_id = keys["keys"][0]["id"].as_str().unwrap();
    let (status, body) = server
        .post_json(
            &format!("/v1/agents/{agent_id}/keys/{key_id}/revoke"),
            ADMIN_TOKEN,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Unknown credentials name no organisation: the system chain's, not an alert.
    for _ in 0..3 {
        let (status, _) = server.act("aaf_ak_nobody_knows_this_key", tool("x")).await;
        assert_eq!(status, 401);
    }
    // The revoked key, six times from 127.0.0.1: more than 5 from one address.
    for _ in 0..6 {
        let (status, _) = server.act(&key, tool("search")).await;
        assert_eq!(status, 401);
    }
    let by_address = alerts_until(&server, "rule=failed_auth_address", |a| !a.is_empty()).await;
    assert_eq!(by_address.len(), 1);
    assert_eq!(by_address[0]["subject"], "address:127.0.0.1");
    assert_eq!(by_address[0]["detail"]["failures"], 6);
    let by_org = alerts_until(&server, "rule=failed_auth_org", |a| {
        a.first().is_some_and(|a| a["count"] == 3)
    })
    .await;
    assert_eq!(
        by_org.len(),
        1,
        "4 failures raise it, the 5th and 6th count"
    );
    assert_eq!(by_org[0]["subject"], "org");
    server.stop().await;
}

#[tokio::test]
async fn kill_switches_breakers_timeouts_budgets_and_risk_each_raise_one() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("rules.rego", RULES)]);
    let clock = Clock::manual(time::OffsetDateTime::now_utc());
    let server = TestServer::start_clocked(policies.path(), clock.clone(), config).await;
    let (stopped_id, stopped_key) = server.create_agent("stopped").await;

    // A kill switch engaged by a person.
    let (status, switch) = server
        .post_json(
            "/v1/kill-switches",
            ADMIN_TOKEN,
            json!({"scope": "tool", "target": "wire_transfer", "reason": "incident 42"}),
        )
        .await;
    assert_eq!(status, 201, "{switch}");
    let found = alerts_until(&server, "rule=kill_switch_engaged", |a| !a.is_empty()).await;
    assert_eq!(found[0]["subject"], "kill_switch:tool:wire_transfer");
    assert_eq!(found[0]["severity"], "critical");
    assert_eq!(found[0]["detail"]["kill_switch_id"], switch["id"]);

    // A circuit breaker (3 denials): its own alert, not a second kill-switch alert.
    let (status, _) = server
        .send_json(
            reqwest::Method::PUT,
            "/v1/circuit-breakers",
            ADMIN_TOKEN,
            json!({"max_denials": 2, "cooldown_seconds": 0}),
        )
        .await;
    assert_eq!(status, 200);
    deny_burst(&server, &stopped_key, 3).await;
    let found = alerts_until(&server, "rule=circuit_breaker_tripped", |a| !a.is_empty()).await;
    assert_eq!(found[0]["subject"], format!("agent:{stopped_id}"));
    assert_eq!(found[0]["detail"]["breaker"], "max_denials");

    // An approval that times out (the manual clock passes the default hour).
    let (_, waiting_key) = server.create_agent("patient").await;
    let (status, body) = server.act(&waiting_key, tool("needs_approval")).await;
    assert_eq!(status, 202, "{body}");
    clock.advance(Duration::from_secs(3601));
    let found = alerts_until(&server, "rule=approval_timeout", |a| !a.is_empty()).await;
    assert_eq!(found[0]["detail"]["action_id"], body["id"]);
    assert_eq!(found[0]["severity"], "info");

    // Budget thresholds: 85 of 100 tokens (80%), then 100 of 100 (100%).
    let (spender_id, spender_key) = server.create_agent("spender").await;
    let (status, budget) = server
        .post_json(
            "/v1/budgets",
            ADMIN_TOKEN,
            json!({"agent_id": spender_id, "unit": "tokens", "period": "day", "limit": 100}),
        )
        .await;
    assert_eq!(status, 201, "{budget}");
    let uses = |tokens: u64| json!({"tool": "llm", "operation": "run", "params": {}, "context": {"expected_usage": {"tokens": tokens}}});
    assert_eq!(server.act(&spender_key, uses(85)).await.0, 200);
    let found = alerts_until(&server, "rule=budget_threshold", |a| !a.is_empty()).await;
    assert_eq!(found.len(), 1);
    assert!(found[0]["subject"].as_str().unwrap().ends_with(":80"));
    assert_eq!(found[0]["detail"]["spent"], 85);
    assert_eq!(server.act(&spender_key, uses(15)).await.0, 200);
    let found = alerts_until(&server, "rule=budget_threshold", |a| a.len() == 2).await;
    assert!(found[0]["subject"].as_str().unwrap().ends_with(":100"));
    assert_eq!(found[0]["severity"], "critical");

    // A high-risk agent's submission.
    let (status, risky) = server
        .post_json(
            "/v1/agents",
            ADMIN_TOKEN,
            json!({"name": "risky", "risk_score": 0.9}),
        )
        .await;
    assert_eq!(status, 201, "{risky}");
    let risky_key = risky["api_key"].as_str().unwrap();
    assert_eq!(server.act(risky_key, tool("search")).await.0, 200);
    let found = alerts_until(&server, "rule=high_risk_submission", |a| !a.is_empty()).await;
    assert_eq!(found[0]["agent_id"], risky["id"]);
    assert_eq!(found[0]["detail"]["score_source"], "agent");

    // Each rule raised exactly one alert, and each is in the audit chain.
    let every = alerts(&server, "limit=1000").await;
    let mut rules: Vec<&str> = every.iter().map(|a| a["rule"].as_str().unwrap()).collect();
    rules.sort_unstable();
    assert_eq!(
        rules,
        [
            "approval_timeout",
            "budget_threshold",
            "budget_threshold",
            "circuit_breaker_tripped",
            "high_risk_submission",
            "kill_switch_engaged"
        ]
    );
    let raised = server
        .audit(None)
        .await
        .into_iter()
        .filter(|e| e["type"] == "alert.raised")
        .count();
    assert_eq!(raised, every.len());
    server.stop().await;
}

#[tokio::test]
async fn a_rule_configured_to_act_stops_the_agent() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("rules.rego", RULES)]);
    let server = TestServer::start(policies.path(), |c| {
        config(c);
        c.alerts.denials_threshold = 3;
        c.alerts.kill_switch_rules = vec!["repeated_denials".into()];
        c.alerts.kill_switch_cooldown_seconds = 0;
    })
    .await;
    let (agent_id, key) = server.create_agent("reckless").await;
    let (_, bystander) = server.create_agent("bystander").await;
    deny_burst(&server, &key, 4).await;
    let found = alerts_until(&server, "rule=repeated_denials", |a| !a.is_empty()).await;
    let switch_id = found[0]["kill_switch_id"]
        .as_str()
        .expect("the alert records the kill switch it engaged")
        .to_string();
    let (status, body) = server.act(&key, tool("search")).await;
    assert_eq!(status, 403, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.contains("alert repeated_denials"),
        "the refusal names the alert: {reason}"
    );
    assert_eq!(server.act(&bystander, tool("search")).await.0, 200);
    let (_, switches) = server.get_json("/v1/kill-switches", ADMIN_TOKEN).await;
    let switch = switches["kill_switches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == switch_id.as_str())
        .expect("the switch is listed");
    assert_eq!(switch["target"], agent_id.as_str());
    assert!(switch["expires_at"].is_null());
    let events = server.audit(None).await;
    let tripped = events
        .iter()
        .find(|e| e["type"] == "circuit_breaker.tripped")
        .unwrap();
    assert_eq!(tripped["data"]["breaker"], "alert:repeated_denials");
    let raised = events.iter().find(|e| e["type"] == "alert.raised").unwrap();
    assert_eq!(raised["data"]["kill_switch_id"], switch_id.as_str());
    // The stop is the alert's own doing: no second alert for the breaker or the switch.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let every = alerts(&server, "").await;
    assert_eq!(every.len(), 1, "{every:?}");
    server.stop().await;
}

/// A server started in the test's runtime, with its state at hand (for the alert queue).
struct Node {
    base: String,
    client: reqwest::Client,
    state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

impl Node {
    async fn start(policies: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> Node {
        let data = tempfile::tempdir().unwrap();
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_path_buf(),
            policies: policies.to_path_buf(),
            admin_token: Some(aaf_core::secrets::Secret::new(ADMIN_TOKEN)),
            ..Config::default()
        };
        tweak(&mut config);
        let (state, _) = aaf_server::app::prepare_with_clock(config, Clock::system())
            .await
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let running = state.clone();
        let handle = tokio::spawn(async move {
            aaf_server::app::run(listener, running, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Node {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            state,
            shutdown: Some(tx),
            handle: Some(handle),
            _data: data,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers an agent with the admin token; the 201 body (`id`, `api_key`, ...).
    async fn create_agent(&self, name: &str) -> Value {
        let (status, agent) = self
            .send(
                reqwest::Method::POST,
                "/v1/agents",
                ADMIN_TOKEN,
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{agent}");
        agent
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }
}

async fn node_alerts(node: &Node, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    within(&format!("alerts {query}"), async {
        loop {
            let (status, page) = node
                .send(
                    reqwest::Method::GET,
                    &format!("/v1/alerts?{query}"),
                    ADMIN_TOKEN,
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            let found = page["alerts"].as_array().unwrap().clone();
            if done(&found) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test]
async fn an_outbound_detector_hit_raises_its_alert_through_the_signal_entry_point() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let node = Node::start(policies.path(), |_| {}).await;
    let agent = node.create_agent("reader").await;
    let agent_id = agent["id"].as_str().unwrap().to_string();
    let org_id = node.state.default_org_id.to_string();
    for action in ["act-1", "act-2"] {
        node.state.alerts.signal(Signal::DetectorHit {
            org_id: org_id.clone(),
            agent_id: agent_id.clone(),
            detector: "credit_card".into(),
            action_id: action.into(),
        });
    }
    let found = node_alerts(&node, "rule=outbound_detection", |a| {
        a.first().is_some_and(|a| a["count"] == 2)
    })
    .await;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0]["subject"],
        format!("agent:{agent_id}:detector:credit_card")
    );
    assert_eq!(found[0]["severity"], "critical");
    assert_eq!(found[0]["detail"]["action_id"], "act-1");
    node.stop().await;
}

#[tokio::test]
async fn two_nodes_on_postgresql_raise_one_alert_for_their_denials_together() {
    let Some(db) = pg_db("alerts::two_nodes_on_postgresql").await else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL), ("rules.rego", RULES)]);
    let url = db.url.clone();
    let pg = move |c: &mut Config| {
        c.database.url = Some(aaf_core::secrets::Secret::new(url.clone()));
        c.auth.failed_auth_per_minute = 0;
    };
    let a = Node::start(policies.path(), pg.clone()).await;
    let b = Node::start(policies.path(), pg).await;
    let agent = a.create_agent("spread").await;
    let key = agent["api_key"].as_str().unwrap().to_string();
    // Six denials through one node and five through the other: 11 in the shared window.
    for i in 0..11 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (status, body) = node
            .send(
                reqwest::Method::POST,
                "/v1/actions",
                &key,
                Some(tool("bad")),
            )
            .await;
        assert_eq!(status, 403, "{body}");
    }
    let found = node_alerts(&b, "rule=repeated_denials", |x| !x.is_empty()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["detail"]["denials"], 11);
    // Both nodes see the same alert; more denials on either count on it.
    for node in [&a, &b] {
        let (status, body) = node
            .send(
                reqwest::Method::POST,
                "/v1/actions",
                &key,
                Some(tool("bad")),
            )
            .await;
        assert_eq!(status, 403, "{body}");
    }
    let found = node_alerts(&a, "rule=repeated_denials", |x| {
        x.first().is_some_and(|x| x["count"] == 3)
    })
    .await;
    assert_eq!(found.len(), 1);
    a.stop().await;
    b.stop().await;
}
