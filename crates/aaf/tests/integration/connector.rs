//! The HTTP connector through the server: allowed calls reach the upstream; SSRF is refused.

use serde_json::{json, Value};

use crate::common::{policy_dir, read_testdata, TestServer, Upstream, ALLOW_ALL};

#[tokio::test]
async fn allowed_get_and_post_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("http-agent").await;

    let (status, body) = server
        .act(&key, json!({"tool": "http_proxy", "operation": "GET", "params": {
            "url": upstream.url("/items?x=1"),
            "headers": {"Accept": "application/json", "Cookie": "session=stolen", "Host": "evil.example"}
        }}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "executed");
    assert_eq!(body["result"]["status"], 200);
    assert_eq!(body["result"]["body"]["upstream"], "ok");
    assert_eq!(body["result"]["body"]["path"], "/items");
    assert_eq!(body["result"]["body"]["cookie_seen"], false);
    assert_eq!(body["result"]["truncated"], false);
    {
        let hits = upstream.hits.lock().unwrap();
        assert_eq!(hits.len(), 1);
        let host = hits[0].headers.get("host").unwrap().to_str().unwrap();
        assert!(
            host.starts_with("127.0.0.1"),
            "host header forwarded from agent: {host}"
        );
    }

    let (status, body) = server
        .act(
            &key,
            json!({"tool": "http", "operation": "POST", "params": {
                "url": upstream.url("/charges"), "body": {"amount": 42}
            }}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["body"]["method"], "POST");
    assert_eq!(
        body["result"]["body"]["received_body"],
        json!({"amount": 42})
    );
    assert_eq!(upstream.count(), 2);
    {
        let hits = upstream.hits.lock().unwrap();
        let sent: Value = serde_json::from_slice(&hits[1].body).unwrap();
        assert_eq!(sent, json!({"amount": 42}));
        assert_eq!(
            hits[1].headers.get("content-type").unwrap(),
            "application/json"
        );
    }

    let audit = server.audit(None).await;
    let executed = audit
        .iter()
        .filter(|e| e["type"] == "action.executed")
        .count();
    assert_eq!(executed, 2);
    server.stop().await;
}

#[tokio::test]
async fn loopback_is_refused_without_allow_private_cidrs() {
    let upstream = Upstream::start().await;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.connectors.http.allow_private_cidrs.clear();
    })
    .await;
    let (_, key) = server.create_agent("a").await;
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": upstream.url("/")}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"].as_str().unwrap().starts_with("ssrf:"),
        "{body}"
    );
    assert_eq!(upstream.count(), 0);
    let audit = server.audit(None).await;
    let last = audit
        .iter()
        .rfind(|e| e["type"] == "action.decided")
        .unwrap();
    assert_eq!(last["data"]["decision"], "deny");
    assert!(last["data"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("ssrf:"));
    server.stop().await;
}

#[tokio::test]
async fn allowlist_refuses_other_hosts() {
    let upstream = Upstream::start().await;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.connectors.http.allowed_domains = vec!["api.example.com".into()];
    })
    .await;
    let (_, key) = server.create_agent("a").await;
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": upstream.url("/")}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"].as_str().unwrap().starts_with("ssrf:"),
        "{body}"
    );
    assert_eq!(upstream.count(), 0);
    server.stop().await;
}

/// Every payload of the shared SSRF list is refused through the server, whatever the
/// policies say. The server runs with `system_dns = false` so that no DNS query leaves the
/// machine: payloads whose host is a public-looking name (wildcard-DNS names, redirect
/// services) then cannot resolve and must fail before any connection. What such names do
/// when they resolve to internal addresses is `dns_answers_are_checked_at_connection_time`
/// here and the connector's own payload test, which resolves every name to 127.0.0.1.
#[tokio::test]
async fn every_ssrf_payload_is_refused() {
    let Some(text) = read_testdata("security/ssrf_payloads.txt") else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.connectors.http.allow_private_cidrs.clear();
        c.connectors.http.system_dns = false;
    })
    .await;
    let (_, key) = server.create_agent("attacker").await;
    let mut checked = 0;
    let mut ssrf = 0;
    let mut unresolved = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let payload = line.split(" -> ").next().unwrap().trim();
        let url = if payload.contains(':') {
            payload.to_string()
        } else {
            format!("http://{payload}/")
        };
        let (status, body) = server
            .act(
                &key,
                json!({"tool": "http_proxy", "operation": "GET", "params": {"url": url}}),
            )
            .await;
        checked += 1;
        assert_ne!(body["status"], "executed", "{url} was executed: {body}");
        match status {
            403 => {
                assert_eq!(body["decision"], "deny", "{url}: {body}");
                let reason = body["reason"].as_str().unwrap();
                assert!(
                    reason.starts_with("ssrf:") || reason.starts_with("invalid request:"),
                    "{url}: {reason}"
                );
                ssrf += 1;
            }
            200 => {
                // Only names that could not be resolved may end here, as a failure.
                assert_eq!(body["status"], "failed", "{url}: {body}");
                let error: &Value = &body["result"]["error"];
                assert!(
                    error.as_str().unwrap().contains("system_dns is off"),
                    "{url}: {body}"
                );
                unresolved += 1;
            }
            other => panic!("{url}: unexpected status {other}: {body}"),
        }
    }
    eprintln!("{checked} SSRF payloads checked through the server: {ssrf} refused by the SSRF guard, {unresolved} unresolvable names");
    assert!(checked >= 80, "only {checked} payloads read");
    assert!(ssrf >= 65, "only {ssrf} refused by the guard");
    server.stop().await;
}

/// A public-looking name whose DNS answer is internal (wildcard DNS such as nip.io, or DNS
/// rebinding) is refused when it resolves, and the upstream behind it is never reached.
#[tokio::test]
async fn dns_answers_are_checked_at_connection_time() {
    let upstream = Upstream::start().await;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.connectors.http.allow_private_cidrs.clear();
        c.connectors.http.system_dns = false;
        c.connectors.http.hosts.insert(
            "rebind.example.com".into(),
            vec!["127.0.0.1".parse().unwrap()],
        );
    })
    .await;
    let (_, key) = server.create_agent("a").await;
    let url = format!("http://rebind.example.com:{}/", upstream.addr.port());
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": url}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"].as_str().unwrap().starts_with("ssrf:"),
        "{body}"
    );
    assert!(
        !body["reason"].as_str().unwrap().contains("127.0.0.1"),
        "the resolved address leaked: {body}"
    );
    assert_eq!(body["status"], "denied");
    assert_eq!(upstream.count(), 0);
    let audit = server.audit(None).await;
    let failed = audit
        .iter()
        .rfind(|e| e["type"] == "action.failed")
        .unwrap();
    assert_eq!(failed["data"]["kind"], "ssrf");
    server.stop().await;
}

#[tokio::test]
async fn an_upstream_answer_with_inexact_numbers_is_recorded_as_text() {
    // The upstream echoes the request body as JSON, here with an integer beyond 2^53-1.
    // Kept as JSON, the outcome event would have no RFC 8785 form and could not be
    // recorded; it is kept as its exact text instead, and the chain verifies.
    let upstream = Upstream::start().await;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut server = TestServer::start(policies.path(), |_| {}).await;
    let (_, key) = server.create_agent("http-agent").await;
    let (status, body) = server
        .act(
            &key,
            json!({"tool": "http_proxy", "operation": "POST", "params": {
                "url": upstream.url("/echo"),
                "body": "{\"n\": 4000000000000000015}",
            }}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "executed", "{body}");
    let text = body["result"]["body"].as_str().unwrap_or_default();
    assert!(
        text.contains("\"received_body\":{\"n\":4000000000000000015}"),
        "{body}"
    );
    let id = body["id"].as_str().unwrap().to_string();
    let audit = server.audit(None).await;
    let executed: Vec<&Value> = audit
        .iter()
        .filter(|e| e["type"] == "action.executed" && e["action_id"] == id.as_str())
        .collect();
    assert_eq!(executed.len(), 1, "{audit:?}");

    let data = server.take_data_dir();
    server.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aaf"))
        .args(["audit", "verify", "--data-dir"])
        .arg(data.path())
        .env_remove("AAF_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("audit verification passed"), "{stdout}");
}
