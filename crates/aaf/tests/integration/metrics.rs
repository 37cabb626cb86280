//! `GET /metrics` of the real `aaf serve` (one recorder per process, so each test starts its
//! own binary and can count exactly): decisions, stages, the audit writer, the connector and
//! pending approvals as a scrape shows them; who may scrape on the main listener (an admin
//! or auditor, or only `metrics.token` when it is set); the separate `metrics.listen`
//! listener without authentication. docs/runtime-protection.md, "Metrics".

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::binary::{sigterm, KillOnDrop};
use crate::common::{policy_dir, TestServer, Upstream, ADMIN_TOKEN, ALLOW_ALL};

/// Allows `allowed` and the HTTP connector, sends `needs_approval` to approval, denies the
/// rest (no policy decides them).
const POLICY: &str = r#"package test.metrics
import rego.v1
decision := "allow" if input.action.tool in {"allowed", "http_proxy"}
decision := "require_approval" if input.action.tool == "needs_approval"
"#;

/// A token for `metrics.token` (at least 32 characters).
const METRICS_TOKEN: &str = "metrics-token-0123456789abcdefghijklmnopqrstuv";

/// A running `aaf serve`: its base URL and, when `metrics.listen` is set, the metrics
/// listener's.
struct Served {
    child: KillOnDrop,
    base: String,
    metrics_base: Option<String>,
    client: reqwest::Client,
}

/// Starts `aaf serve` on port 0 with `env` (`AAF_*`), and reads from its log the main
/// address and, if it opens one, the metrics listener's.
fn serve(data_dir: &Path, policies: &Path, env: &[(&str, &str)]) -> Served {
    let mut command = Command::new(env!("CARGO_BIN_EXE_aaf"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--policies")
        .arg(policies)
        .env_remove("AAF_DATABASE_URL")
        .env("AAF_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let child = KillOnDrop(child);
    let wants_metrics_listener = env.iter().any(|(k, _)| *k == "AAF_METRICS__LISTEN");
    let mut lines = BufReader::new(stderr).lines();
    let (mut base, mut metrics_base) = (None, None);
    let started = std::time::Instant::now();
    while base.is_none() || (wants_metrics_listener && metrics_base.is_none()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "aaf serve did not log its addresses"
        );
        let line = lines
            .next()
            .expect("aaf serve exited before listening")
            .unwrap();
        let value = |key: &str| {
            line.split(key)
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .map(|addr| format!("http://{addr}"))
        };
        if line.contains("metrics_address=") {
            metrics_base = value("metrics_address=");
        } else if line.contains("listening") {
            base = value(" address=");
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Served {
        child,
        base: base.unwrap(),
        metrics_base,
        client: reqwest::Client::new(),
    }
}

impl Served {
    /// `GET {base}/metrics` with `token`: (status, content type, body).
    async fn scrape_at(&self, base: &str, token: Option<&str>) -> (u16, String, String) {
        let mut request = self.client.get(format!("{base}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, content_type, answer.text().await.unwrap())
    }

    async fn scrape(&self, token: Option<&str>) -> (u16, String, String) {
        self.scrape_at(&self.base, token).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let answer = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// Creates a user with `role`; returns its token.
    async fn user(&self, role: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/users",
                ADMIN_TOKEN,
                json!({"name": format!("metrics-{role}"), "role": role}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_string()
    }

    /// Registers an agent; returns its key.
    async fn agent(&self) -> String {
        let (status, body) = self
            .post("/v1/agents", ADMIN_TOKEN, json!({"name": "metrics-agent"}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["api_key"].as_str().unwrap().to_string()
    }
}

/// The value of one sample (`name{labels}` exactly as rendered, or a bare name) in a
/// Prometheus text exposition, if present once.
fn sample(text: &str, series: &str) -> Option<f64> {
    let mut found = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().unwrap())
        });
    let value = found.next()?;
    assert!(found.next().is_none(), "{series} appears twice:\n{text}");
    Some(value)
}

fn must(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

#[tokio::test]
async fn a_scrape_counts_what_the_server_did_and_needs_an_admin_or_auditor() {
    let upstream = Upstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("metrics.rego", POLICY)]);
    let server = serve(
        data.path(),
        policies.path(),
        &[
            ("AAF_METRICS__LISTEN", "127.0.0.1:0"),
            ("AAF_APPROVALS__SWEEP_INTERVAL_MS", "50"),
            (
                "AAF_CONNECTORS__HTTP__ALLOW_PRIVATE_CIDRS",
                "[\"127.0.0.1/32\"]",
            ),
        ],
    );
    let key = server.agent().await;
    let auditor = server.user("auditor").await;
    let viewer = server.user("viewer").await;

    // Before any action: the decision counters are there, at zero.
    let (status, content_type, text) = server.scrape(Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for decision in ["allow", "deny", "require_approval"] {
        assert_eq!(
            must(
                &text,
                &format!("aaf_decisions_total{{decision=\"{decision}\"}}")
            ),
            0.0
        );
    }
    assert!(
        text.contains("# TYPE aaf_decisions_total counter\n"),
        "{text}"
    );

    // 3 allowed, 2 denied, 1 waiting for approval, 1 allowed HTTP call that runs, 1 dry run.
    let act = |tool: &'static str, params: Value| {
        let server = &server;
        let key = key.clone();
        async move {
            server
                .post(
                    "/v1/actions",
                    &key,
                    json!({"tool": tool, "operation": "run", "params": params}),
                )
                .await
        }
    };
    for i in 0..3 {
        let (status, body) = act("allowed", json!({"i": i})).await;
        assert_eq!(status, 200, "{body}");
    }
    for i in 0..2 {
        let (status, body) = act("forbidden", json!({"i": i})).await;
        assert_eq!(status, 403, "{body}");
    }
    let (status, body) = act("needs_approval", json!({})).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = server
        .post(
            "/v1/actions",
            &key,
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": upstream.url("/m")}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "executed", "{body}");
    assert_eq!(upstream.count(), 1);
    let (status, body) = server
        .post(
            "/v1/actions/dry-run",
            &key,
            json!({"tool": "allowed", "operation": "run"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The sweeper counts the pending action in the database.
    let mut text = String::new();
    for _ in 0..100 {
        let (status, _, scraped) = server.scrape(Some(&auditor)).await;
        assert_eq!(status, 200, "{scraped}");
        text = scraped;
        if sample(&text, "aaf_approvals_pending") == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(must(&text, "aaf_approvals_pending"), 1.0, "{text}");

    assert_eq!(must(&text, "aaf_decisions_total{decision=\"allow\"}"), 4.0);
    assert_eq!(must(&text, "aaf_decisions_total{decision=\"deny\"}"), 2.0);
    assert_eq!(
        must(&text, "aaf_decisions_total{decision=\"require_approval\"}"),
        1.0
    );
    assert_eq!(
        must(&text, "aaf_dry_run_decisions_total{decision=\"allow\"}"),
        1.0
    );
    assert_eq!(
        must(&text, "aaf_dry_run_decisions_total{decision=\"deny\"}"),
        0.0
    );
    // Seven submissions went through every stage they reach: 7 evaluated (and the dry run),
    // 7 recorded, 1 executed and its outcome recorded.
    assert_eq!(must(&text, "aaf_action_duration_seconds_count"), 7.0);
    let stage = |name: &str| {
        must(
            &text,
            &format!("aaf_pipeline_stage_duration_seconds_count{{stage=\"{name}\"}}"),
        )
    };
    assert_eq!(stage("evaluate"), 8.0);
    assert_eq!(stage("record"), 7.0);
    assert_eq!(stage("execute"), 1.0);
    assert_eq!(stage("outcome"), 1.0);
    // Buckets are cumulative and end with +Inf = count.
    assert_eq!(
        must(&text, "aaf_action_duration_seconds_bucket{le=\"+Inf\"}"),
        7.0
    );
    assert!(must(&text, "aaf_action_duration_seconds_bucket{le=\"0.0001\"}") <= 7.0);
    assert!(must(&text, "aaf_action_duration_seconds_sum") > 0.0);
    assert_eq!(
        must(
            &text,
            "aaf_connector_calls_total{connector=\"http\",outcome=\"executed\"}"
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            "aaf_connector_calls_total{connector=\"http\",outcome=\"failed\"}"
        ),
        0.0
    );
    assert_eq!(
        must(
            &text,
            "aaf_connector_duration_seconds_count{connector=\"http\"}"
        ),
        1.0
    );
    // The audit writer committed at least the 7 decisions and the outcome, in as many
    // batches as its commits.
    let units = must(&text, "aaf_audit_batch_size_sum");
    let batches = must(&text, "aaf_audit_batch_size_count");
    assert!(units >= 8.0, "{units} units");
    assert!((1.0..=units).contains(&batches), "{batches} batches");
    assert_eq!(
        must(&text, "aaf_audit_commit_duration_seconds_count"),
        batches
    );
    // Described for the guards, at zero until they refuse something.
    assert_eq!(
        must(&text, "aaf_guard_refusals_total{guard=\"kill_switch\"}"),
        0.0
    );
    assert_eq!(must(&text, "aaf_kill_switches_active"), 0.0);
    // A tool's kill switch: engaged, one refusal counted, then released.
    let (status, switch) = server
        .post(
            "/v1/kill-switches",
            ADMIN_TOKEN,
            json!({"scope": "tool", "target": "metrics_tool", "reason": "metrics"}),
        )
        .await;
    assert_eq!(status, 201, "{switch}");
    let (status, _) = server
        .post(
            "/v1/actions",
            &key,
            json!({"tool": "metrics_tool", "operation": "run"}),
        )
        .await;
    assert_eq!(status, 403);
    let (_, _, text) = server.scrape(Some(ADMIN_TOKEN)).await;
    assert_eq!(
        must(&text, "aaf_guard_refusals_total{guard=\"kill_switch\"}"),
        1.0
    );
    assert_eq!(must(&text, "aaf_kill_switches_active"), 1.0);
    // No label carries an id.
    let agent_id_like = regex_free_uuid_check(&text);
    assert!(!agent_id_like, "a label carries an id:\n{text}");

    // Who may scrape the main listener.
    let (status, _, body) = server.scrape(None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = server.scrape(Some(&key)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = server.scrape(Some(&viewer)).await;
    assert_eq!(status, 403, "{body}");
    let (status, _, body) = server
        .scrape(Some("aaf_at_not_a_token_of_this_server"))
        .await;
    assert_eq!(status, 401, "{body}");

    // The separate listener: /metrics without credentials, nothing else.
    let metrics_base = server.metrics_base.clone().unwrap();
    let (status, content_type, text) = server.scrape_at(&metrics_base, None).await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    // The two denies above and the kill switch's.
    assert_eq!(must(&text, "aaf_decisions_total{decision=\"deny\"}"), 3.0);
    let answer = server
        .client
        .get(format!("{metrics_base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let answer = server
        .client
        .post(format!("{metrics_base}/v1/actions"))
        .bearer_auth(&key)
        .json(&json!({"tool": "allowed", "operation": "run"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);

    let Served { mut child, .. } = server;
    assert!(sigterm(&mut child.0).success());
}

/// Whether any sample's labels hold something shaped like a UUID (an action, agent or
/// organisation id).
fn regex_free_uuid_check(text: &str) -> bool {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('{').map(|(_, labels)| labels))
        .any(|labels| {
            labels
                .split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
                .any(|word| word.len() == 36 && word.matches('-').count() == 4)
        })
}

#[tokio::test]
async fn with_a_metrics_token_only_that_token_scrapes_the_main_listener() {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = serve(
        data.path(),
        policies.path(),
        &[("AAF_METRICS__TOKEN", METRICS_TOKEN)],
    );
    assert!(server.metrics_base.is_none());
    let key = server.agent().await;
    let (status, body) = server
        .post(
            "/v1/actions",
            &key,
            json!({"tool": "anything", "operation": "run"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, content_type, text) = server.scrape(Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(must(&text, "aaf_decisions_total{decision=\"allow\"}"), 1.0);
    for token in [
        None,
        Some(ADMIN_TOKEN),
        Some(key.as_str()),
        Some("metrics-token-0123456789abcdefghijklmnopqrstuw"),
        Some("metrics-token"),
    ] {
        let (status, _, body) = server.scrape(token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["code"], "unauthorized", "{body}");
    }
    // The token is only for /metrics.
    let answer = server
        .client
        .get(format!("{}/v1/whoami", server.base))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let Served { mut child, .. } = server;
    assert!(sigterm(&mut child.0).success());
}

#[tokio::test]
async fn metrics_turned_off_is_404() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| c.metrics.enabled = false).await;
    let (status, body) = server.get_json("/metrics", ADMIN_TOKEN).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    server.stop().await;
}
