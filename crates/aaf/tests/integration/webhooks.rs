//! Webhook notifications of approval events over real HTTP: HMAC-SHA256 signed JSON, the
//! Slack format, retries with exponential backoff (moved by a manual clock), the delivery
//! log, and the SSRF guard on webhook targets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aaf_server::clock::Clock;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::common::{examples, within, TestServer, Upstream, ADMIN_TOKEN};

/// A webhook receiver that answers `fail_first` requests with 503, then 200, and passes
/// every request on.
pub(crate) struct Receiver {
    pub(crate) url: String,
    requests: mpsc::UnboundedReceiver<(HeaderMap, Bytes)>,
}

impl Receiver {
    pub(crate) async fn start(fail_first: usize) -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let seen = Arc::new(Mutex::new(0usize));
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (tx, seen) = (tx.clone(), seen.clone());
            async move {
                let n = {
                    let mut seen = seen.lock().unwrap();
                    *seen += 1;
                    *seen
                };
                let _ = tx.send((headers, body));
                if n <= fail_first {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}/hooks/aaf"),
            requests: rx,
        }
    }

    /// The next request (30 s at most).
    pub(crate) async fn next(&mut self) -> (HeaderMap, Value) {
        let (headers, body) = tokio::time::timeout(Duration::from_secs(30), self.requests.recv())
            .await
            .expect("no webhook request arrived")
            .unwrap();
        (headers, serde_json::from_slice(&body).unwrap())
    }

    fn nothing_more(&mut self) -> bool {
        self.requests.try_recv().is_err()
    }

    /// Whether nothing more arrived within `wait`.
    pub(crate) async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.requests.recv())
            .await
            .is_err()
    }
}

/// Recomputes `X-AAF-Signature` over the raw body and checks it.
pub(crate) fn verify_signature(secret: &str, headers: &HeaderMap, body: &Value) {
    let header = headers["x-aaf-signature"].to_str().unwrap();
    let (t, v1) = header.split_once(",v1=").unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let raw = serde_json::to_string(body).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{raw}").as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    assert_eq!(v1, expected, "signature of {raw}");
}

fn config(clock_interval_ms: u64) -> impl FnOnce(&mut aaf_server::config::Config) {
    move |c| {
        c.connectors.http.system_dns = false;
        c.connectors
            .http
            .hosts
            .insert("api.stripe.com".into(), vec!["127.0.0.1".parse().unwrap()]);
        c.webhooks.allow_private_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
        c.webhooks.poll_interval_ms = clock_interval_ms;
        c.approvals.sweep_interval_ms = clock_interval_ms;
        c.auth.public_base_url = Some("https://aaf.example.com".into());
    }
}

fn charge(upstream: &Upstream, amount: u64) -> Value {
    json!({
        "tool": "http_proxy",
        "operation": "POST",
        "params": {
            "url": format!("http://api.stripe.com:{}/v1/charges", upstream.addr.port()),
            "body": {"amount": amount},
            "headers": {"Authorization": "Bearer sk_live_should_not_leak"}
        }
    })
}

async fn create_webhook(server: &TestServer, body: Value) -> (u16, Value) {
    server.post_json("/v1/webhooks", ADMIN_TOKEN, body).await
}

#[tokio::test]
async fn json_webhooks_are_signed_and_announce_every_approval_event() {
    let upstream = Upstream::start().await;
    let mut receiver = Receiver::start(0).await;
    let clock = Clock::manual(time::OffsetDateTime::now_utc());
    let server = TestServer::start_clocked(&examples("seed-004"), clock.clone(), config(20)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;

    let (code, hook) = create_webhook(
        &server,
        json!({"url": receiver.url, "events": ["approval.requested", "approval.approved", "approval.rejected", "approval.expired"]}),
    )
    .await;
    assert_eq!(code, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("aaf_whsec_"));
    let hook_id = hook["id"].as_str().unwrap().to_string();
    let (_, listed) = server.get_json("/v1/webhooks", ADMIN_TOKEN).await;
    assert!(listed["webhooks"][0].get("secret").is_none(), "{listed}");

    // Requested, then approved.
    let (_, submitted) = server.act(&agent_key, charge(&upstream, 50000)).await;
    let id = submitted["id"].as_str().unwrap().to_string();
    let (headers, body) = receiver.next().await;
    verify_signature(&secret, &headers, &body);
    assert_eq!(headers["x-aaf-event"], "approval.requested");
    assert_eq!(body["event"], "approval.requested");
    assert_eq!(body["action"]["id"], id.as_str());
    assert_eq!(body["action"]["digest"], submitted["approval"]["digest"]);
    assert_eq!(body["action"]["params"]["body"]["amount"], 50000);
    assert_ne!(
        body["action"]["params"]["headers"]["Authorization"], "Bearer sk_live_should_not_leak",
        "secrets in parameters are redacted in notifications"
    );
    assert_eq!(
        body["link"],
        "https://aaf.example.com/v1/approvals?status=pending"
    );
    let (code, _) = server
        .post_json(
            &format!("/v1/approvals/{id}/approve"),
            &approver,
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(code, 200);
    let (headers, body) = receiver.next().await;
    verify_signature(&secret, &headers, &body);
    assert_eq!(body["event"], "approval.approved");
    assert_eq!(body["detail"]["comment"], "ok");

    // Rejected.
    let (_, submitted) = server.act(&agent_key, charge(&upstream, 60000)).await;
    let rejected = submitted["id"].as_str().unwrap().to_string();
    assert_eq!(receiver.next().await.1["event"], "approval.requested");
    server
        .post_json(
            &format!("/v1/approvals/{rejected}/reject"),
            &approver,
            json!({}),
        )
        .await;
    let (_, body) = receiver.next().await;
    assert_eq!(
        (body["event"].as_str(), body["action"]["id"].as_str()),
        (Some("approval.rejected"), Some(rejected.as_str()))
    );

    // Expired.
    let (_, submitted) = server.act(&agent_key, charge(&upstream, 70000)).await;
    let expired = submitted["id"].as_str().unwrap().to_string();
    assert_eq!(receiver.next().await.1["event"], "approval.requested");
    clock.advance(Duration::from_secs(3601));
    let (headers, body) = receiver.next().await;
    verify_signature(&secret, &headers, &body);
    assert_eq!(
        (body["event"].as_str(), body["action"]["id"].as_str()),
        (Some("approval.expired"), Some(expired.as_str()))
    );
    assert_eq!(body["action"]["status"], "expired");

    // The delivery log has all six, delivered at the first attempt.
    let log = within("the expected state", async {
        loop {
            let (code, log) = server
                .get_json(&format!("/v1/webhooks/{hook_id}/deliveries"), ADMIN_TOKEN)
                .await;
            assert_eq!(code, 200, "{log}");
            let all_done = log["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["status"] != "pending");
            if all_done {
                break log;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let deliveries = log["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 6, "{log}");
    for d in deliveries {
        assert_eq!(
            (
                d["status"].as_str(),
                d["attempts"].as_u64(),
                d["last_status_code"].as_u64()
            ),
            (Some("delivered"), Some(1), Some(200)),
            "{d}"
        );
    }
    assert!(receiver.nothing_more());

    // Disabled: nothing more is sent.
    let r = server
        .client
        .delete(server.url(&format!("/v1/webhooks/{hook_id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    server.act(&agent_key, charge(&upstream, 80000)).await;
    let (_, log) = server
        .get_json(&format!("/v1/webhooks/{hook_id}/deliveries"), ADMIN_TOKEN)
        .await;
    assert_eq!(log["deliveries"].as_array().unwrap().len(), 6);
    let events = server.audit(None).await;
    assert!(events
        .iter()
        .any(|e| e["type"] == "webhook.created" && e["data"].get("secret").is_none()));
    assert!(events.iter().any(|e| e["type"] == "webhook.disabled"));
    server.stop().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_exponential_backoff_then_given_up() {
    let upstream = Upstream::start().await;
    let mut flaky = Receiver::start(2).await;
    let mut down = Receiver::start(usize::MAX).await;
    let clock = Clock::manual(time::OffsetDateTime::now_utc());
    let server = TestServer::start_clocked(&examples("seed-004"), clock.clone(), |c| {
        config(20)(c);
        c.webhooks.max_attempts = 3;
        c.webhooks.initial_backoff_ms = 1000;
    })
    .await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, flaky_hook) = create_webhook(
        &server,
        json!({"url": flaky.url, "events": ["approval.requested"]}),
    )
    .await;
    let (_, down_hook) = create_webhook(
        &server,
        json!({"url": down.url, "events": ["approval.requested"]}),
    )
    .await;
    server.act(&agent_key, charge(&upstream, 50000)).await;

    // First attempts fail (503); nothing more happens until the backoff has passed.
    let first = flaky.next().await.1;
    down.next().await;
    let log = |hook: &Value| {
        let path = format!("/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap());
        let server = &server;
        async move { server.get_json(&path, ADMIN_TOKEN).await.1["deliveries"][0].clone() }
    };
    // Waits until the hook's delivery recorded attempt `n`, due again `backoff` later.
    let recorded = |hook: Value, n: u64, backoff: Duration| {
        let due = aaf_server::time::format_rfc3339(clock.now() + backoff);
        let log = &log;
        async move {
            within("the expected state", async {
                loop {
                    let d = log(&hook).await;
                    if d["attempts"] == n
                        && (d["next_attempt_at"] == due.as_str() || d["status"] != "pending")
                    {
                        return d;
                    }
                    tokio::task::yield_now().await;
                }
            })
            .await
        }
    };
    let d = recorded(flaky_hook.clone(), 1, Duration::from_millis(1000)).await;
    assert_eq!(
        (d["status"].as_str(), d["last_status_code"].as_u64()),
        (Some("pending"), Some(503))
    );
    assert!(d["last_error"].as_str().unwrap().contains("503"));
    recorded(down_hook.clone(), 1, Duration::from_millis(1000)).await;
    assert!(flaky.nothing_more() && down.nothing_more());
    // After 1 s (the first backoff) the second attempt; after 2 s more the third.
    clock.advance(Duration::from_millis(1000));
    assert_eq!(flaky.next().await.1, first, "a retry sends the same body");
    down.next().await;
    recorded(flaky_hook.clone(), 2, Duration::from_millis(2000)).await;
    recorded(down_hook.clone(), 2, Duration::from_millis(2000)).await;
    clock.advance(Duration::from_millis(2000));
    flaky.next().await;
    down.next().await;
    let d = within("the expected state", async {
        loop {
            let d = log(&flaky_hook).await;
            if d["status"] == "delivered" {
                break d;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        (d["attempts"].as_u64(), d["last_status_code"].as_u64()),
        (Some(3), Some(200))
    );
    // The receiver that stays down is given up after max_attempts.
    let d = within("the expected state", async {
        loop {
            let d = log(&down_hook).await;
            if d["status"] != "pending" {
                break d;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_u64()),
        (Some("failed"), Some(3))
    );
    clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(down.nothing_more(), "a failed delivery is not sent again");
    server.stop().await;
}

#[tokio::test]
async fn webhook_targets_pass_the_ssrf_guard_and_slack_gets_a_summary() {
    let upstream = Upstream::start().await;
    let mut slack = Receiver::start(0).await;
    let server = TestServer::start(&examples("seed-004"), |c| {
        config(20)(c);
        // A public-looking name that resolves to a private address.
        c.connectors.http.hosts.insert(
            "hooks.rebind.example".into(),
            vec!["10.1.2.3".parse().unwrap()],
        );
    })
    .await;
    let (_, agent_key) = server.create_agent("billing-agent").await;

    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "file:///etc/passwd",
        "not a url",
    ] {
        let (code, body) = create_webhook(
            &server,
            json!({"url": url, "events": ["approval.requested"]}),
        )
        .await;
        assert_eq!(code, 400, "{url}: {body}");
        assert_eq!(body["error"]["field"], "url", "{url}");
    }
    for (body, field) in [
        (json!({"url": slack.url, "events": []}), "events"),
        (
            json!({"url": slack.url, "events": ["action.decided"]}),
            "events",
        ),
        (
            json!({"url": slack.url, "events": ["approval.expired"], "format": "xml"}),
            "format",
        ),
    ] {
        let (code, answer) = create_webhook(&server, body).await;
        assert_eq!(
            (code, answer["error"]["field"].as_str()),
            (400, Some(field)),
            "{answer}"
        );
    }

    // The name passes at creation; the delivery finds it resolves to 10.1.2.3 and refuses.
    let (code, rebind) = create_webhook(
        &server,
        json!({"url": "http://hooks.rebind.example/hook", "events": ["approval.requested"]}),
    )
    .await;
    assert_eq!(code, 201, "{rebind}");
    let (code, _) = create_webhook(
        &server,
        json!({"url": slack.url, "events": ["approval.requested"], "format": "slack"}),
    )
    .await;
    assert_eq!(code, 201);
    let (_, submitted) = server.act(&agent_key, charge(&upstream, 50000)).await;
    let (headers, body) = slack.next().await;
    assert!(
        headers.get("x-aaf-signature").is_none(),
        "slack messages are not signed"
    );
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("Approval requested") && text.contains("http_proxy POST"),
        "{text}"
    );
    assert!(text.contains(submitted["id"].as_str().unwrap()), "{text}");
    assert!(
        text.contains("<https://aaf.example.com/v1/approvals?status=pending|"),
        "{text}"
    );

    let path = format!("/v1/webhooks/{}/deliveries", rebind["id"].as_str().unwrap());
    let d = within("the expected state", async {
        loop {
            let (_, log) = server.get_json(&path, ADMIN_TOKEN).await;
            let d = log["deliveries"][0].clone();
            if d["attempts"].as_u64().unwrap_or(0) >= 1 && d["last_error"].is_string() {
                break d;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let error = d["last_error"].as_str().unwrap();
    assert!(
        error.contains("ssrf") && error.contains("blocked range"),
        "{error}"
    );
    assert!(error.contains("webhooks.allow_private_cidrs"), "{error}");
    assert_eq!(d["last_status_code"], Value::Null);
    assert_eq!(
        d["status"], "failed",
        "a refused target is not retried: {d}"
    );
    server.stop().await;
}

#[tokio::test]
async fn kill_switch_changes_are_announced_signed_and_in_slack_form() {
    let mut receiver = Receiver::start(0).await;
    let mut slack = Receiver::start(0).await;
    let clock = Clock::manual(time::OffsetDateTime::now_utc());
    let server = TestServer::start_clocked(&examples("seed-004"), clock, config(20)).await;
    let (agent_id, _) = server.create_agent("runaway").await;
    let (code, hook) = create_webhook(
        &server,
        json!({"url": receiver.url, "events": ["kill_switch.engaged", "kill_switch.released"]}),
    )
    .await;
    assert_eq!(code, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_string();
    let (code, _) = create_webhook(
        &server,
        json!({"url": slack.url, "events": ["kill_switch.engaged"], "format": "slack"}),
    )
    .await;
    assert_eq!(code, 201);

    let (code, switch) = server
        .post_json(
            "/v1/kill-switches",
            ADMIN_TOKEN,
            json!({"scope": "agent", "target": agent_id, "reason": "loops on refunds"}),
        )
        .await;
    assert_eq!(code, 201, "{switch}");
    let (headers, body) = receiver.next().await;
    verify_signature(&secret, &headers, &body);
    assert_eq!(headers["x-aaf-event"], "kill_switch.engaged");
    assert_eq!(body["event"], "kill_switch.engaged");
    assert_eq!(body["kill_switch"]["id"], switch["id"]);
    assert_eq!(body["kill_switch"]["scope"], "agent");
    assert_eq!(body["kill_switch"]["agent_id"], agent_id.as_str());
    assert_eq!(body["kill_switch"]["reason"], "loops on refunds");
    assert!(body.get("action").is_none());
    let (_, text) = slack.next().await;
    let text = text["text"].as_str().unwrap();
    assert!(
        text.starts_with("*Kill switch engaged*: scope `agent`")
            && text.contains("loops on refunds"),
        "{text}"
    );

    let id = switch["id"].as_str().unwrap();
    let (code, _) = server
        .send_json(
            reqwest::Method::DELETE,
            &format!("/v1/kill-switches/{id}"),
            ADMIN_TOKEN,
            Value::Null,
        )
        .await;
    assert_eq!(code, 200);
    let (headers, body) = receiver.next().await;
    verify_signature(&secret, &headers, &body);
    assert_eq!(body["event"], "kill_switch.released");
    assert!(body["kill_switch"]["released_at"].is_string());
    assert!(
        slack.nothing_more(),
        "the slack webhook takes engagements only"
    );
    server.stop().await;
}
