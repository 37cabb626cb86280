//! Cryptographic agent identity (seed 001): an agent registered with an Ed25519 public key
//! must sign every request (RFC 9421 over `@method`, `@target-uri`, `content-digest` and
//! `created`, with a nonce); the tests sign with the workspace's client helper
//! (`aaf-httpsig`) against the real server.

use aaf_httpsig::Signer;
use ed25519_dalek::SigningKey;
use http::{HeaderMap, Method};
use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN, ALLOW_ALL};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Sends `body` to `path` with the API key and, when `signer` is given, a signature made at
/// `created` with `nonce`; `tamper` may change the body after signing.
#[allow(clippy::too_many_arguments)]
async fn send(
    server: &TestServer,
    method: Method,
    path: &str,
    key: &str,
    body: &[u8],
    signer: Option<&Signer>,
    created: i64,
    nonce: &str,
    tamper: Option<&[u8]>,
) -> (u16, Value, HeaderMap) {
    let url = server.url(path);
    let mut headers = HeaderMap::new();
    if !body.is_empty() {
        headers.insert("content-type", "application/json".parse().unwrap());
    }
    if let Some(s) = signer {
        s.apply(&method, &url, &mut headers, body, created, Some(nonce))
            .unwrap();
    }
    let sent = headers.clone();
    let response = server
        .client
        .request(method, &url)
        .bearer_auth(key)
        .headers(headers)
        .body(tamper.unwrap_or(body).to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null), sent)
}

#[tokio::test]
async fn signed_agents_must_sign_every_request_once() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| c.auth.failed_auth_per_minute = 0).await;
    let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public_key = Signer::new("pending", signing.clone()).public_key_base64();
    let r = server
        .client
        .post(server.url("/v1/agents"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "signed-agent", "public_key": public_key}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let agent_id = created["id"].as_str().unwrap().to_string();
    let key = created["api_key"].as_str().unwrap().to_string();
    assert_eq!(created["public_key"], public_key.as_str());
    let signer = Signer::new(agent_id.clone(), signing);
    let body =
        serde_json::to_vec(&json!({"tool": "knowledge_base", "operation": "search"})).unwrap();

    // The API key alone is not enough.
    let (status, answer) = server
        .act(
            &key,
            json!({"tool": "knowledge_base", "operation": "search"}),
        )
        .await;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{answer}"
    );

    // Signed: accepted.
    let n = nonce();
    let (status, answer, sent) = send(
        &server,
        Method::POST,
        "/v1/actions",
        &key,
        &body,
        Some(&signer),
        now(),
        &n,
        None,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "allow");

    // The same signed request again (a replay): refused.
    let mut replay = server
        .client
        .post(server.url("/v1/actions"))
        .bearer_auth(&key)
        .body(body.clone());
    for (name, value) in &sent {
        replay = replay.header(name, value);
    }
    let r = replay.send().await.unwrap();
    assert_eq!(r.status(), 401);
    let answer: Value = r.json().await.unwrap();
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nonce"),
        "{answer}"
    );

    // Outside the 300 s window, changed after signing, or signed by another key: refused.
    let (status, answer, _) = send(
        &server,
        Method::POST,
        "/v1/actions",
        &key,
        &body,
        Some(&signer),
        now() - 301,
        &nonce(),
        None,
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    let evil = serde_json::to_vec(&json!({"tool": "payments", "operation": "transfer"})).unwrap();
    let (status, answer, _) = send(
        &server,
        Method::POST,
        "/v1/actions",
        &key,
        &body,
        Some(&signer),
        now(),
        &nonce(),
        Some(&evil),
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    let impostor = Signer::new(
        agent_id.clone(),
        SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
    );
    let (status, answer, _) = send(
        &server,
        Method::POST,
        "/v1/actions",
        &key,
        &body,
        Some(&impostor),
        now(),
        &nonce(),
        None,
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    // A signature for another path does not carry over.
    let mut headers = HeaderMap::new();
    signer
        .apply(
            &Method::POST,
            &server.url("/v1/actions/dry-run"),
            &mut headers,
            &body,
            now(),
            Some(&nonce()),
        )
        .unwrap();
    let r = server
        .client
        .post(server.url("/v1/actions"))
        .bearer_auth(&key)
        .headers(headers)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // GETs (empty body) and dry runs are signed the same way.
    let (status, me, _) = send(
        &server,
        Method::GET,
        "/v1/whoami",
        &key,
        b"",
        Some(&signer),
        now(),
        &nonce(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], agent_id.as_str());
    let (status, _, _) = send(
        &server,
        Method::POST,
        "/v1/actions/dry-run",
        &key,
        &body,
        Some(&signer),
        now(),
        &nonce(),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Exactly one action was decided, and every refusal is in the organisation's chain.
    let events = server.audit(None).await;
    let decided: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "action.decided" && e["agent_id"] == agent_id.as_str())
        .collect();
    assert_eq!(decided.len(), 1);
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "auth.failed")
        .collect();
    assert_eq!(failed.len(), 6, "{failed:?}");
    assert!(failed.iter().all(|e| e["agent_id"] == agent_id.as_str()));
    server.stop().await;
}
