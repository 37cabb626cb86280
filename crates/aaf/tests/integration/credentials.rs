//! Credential injection of the HTTP connector (docs/credentials.md): the operator's secret is
//! added to agents' requests to its destination only, an agent may not set (or override) it,
//! an echo of it is masked, it is in no record, and a secret that cannot be read fails
//! closed.

use std::sync::{Arc, Mutex};

use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN, ALLOW_ALL};

const TOKEN: &str = "sk_live_operator_secret_0123456789";

/// A loopback upstream that echoes the `Authorization` header it got, and redirects.
async fn echo_upstream() -> (u16, Arc<Mutex<Vec<Option<String>>>>) {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let recorded = Arc::clone(&seen);
    let app = axum::Router::new()
        .route(
            "/echo",
            axum::routing::get(move |headers: HeaderMap| {
                let recorded = Arc::clone(&recorded);
                async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string());
                    recorded.lock().unwrap().push(auth.clone());
                    axum::Json(json!({"authorization": auth}))
                }
            }),
        )
        .route(
            "/redirect",
            axum::routing::get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    (
                        axum::http::StatusCode::FOUND,
                        [("location", q["to"].clone())],
                    )
                        .into_response()
                },
            ),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

#[tokio::test]
async fn credentials_are_added_per_destination_masked_and_never_recorded() {
    let (port, seen) = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("api-key");
    std::fs::write(&secret_file, format!("{TOKEN}\n")).unwrap();
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |c| {
        c.secrets.insert(
            "api-key".into(),
            aaf_server::secrets::SecretSource {
                env: None,
                file: Some(secret_file.clone()),
                orgs: Vec::new(),
            },
        );
        c.connectors.http.credentials = vec![aaf_server::connectors::http::CredentialRule {
            host: "api.example".into(),
            headers: [(
                "Authorization".to_string(),
                "Bearer ${secret:api-key}".to_string(),
            )]
            .into(),
            orgs: Vec::new(),
        }];
        // Two names for the same loopback upstream: only one gets the credential.
        for name in ["api.example", "other.example"] {
            c.connectors
                .http
                .hosts
                .insert(name.into(), vec!["127.0.0.1".parse().unwrap()]);
        }
        c.connectors.http.system_dns = false;
    })
    .await;
    let (_, key) = server.create_agent("payer").await;
    let get = |url: String, headers: Value| {
        json!({"tool": "http_proxy", "operation": "GET",
            "params": {"url": url, "headers": headers}})
    };
    let api = format!("http://api.example:{port}");
    let other = format!("http://other.example:{port}");

    // To its destination: added; the upstream's echo of it is masked.
    let (status, body) = server
        .act(&key, get(format!("{api}/echo"), json!({})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "executed", "{body}");
    assert_eq!(
        body["result"]["body"]["authorization"],
        "Bearer [secret:api-key]"
    );
    assert_eq!(
        seen.lock().unwrap().last().unwrap().as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // Elsewhere: not added.
    let (_, body) = server
        .act(&key, get(format!("{other}/echo"), json!({})))
        .await;
    assert_eq!(
        body["result"]["body"]["authorization"],
        Value::Null,
        "{body}"
    );

    // A redirect to another destination does not carry it.
    let (_, body) = server
        .act(
            &key,
            get(format!("{api}/redirect?to={other}/echo"), json!({})),
        )
        .await;
    assert_eq!(body["status"], "executed", "{body}");
    assert_eq!(
        body["result"]["body"]["authorization"],
        Value::Null,
        "{body}"
    );
    assert_eq!(seen.lock().unwrap().last().unwrap(), &None);

    // The agent may not send (or override) it: denied, nothing sent.
    let before = seen.lock().unwrap().len();
    let (status, body) = server
        .act(
            &key,
            get(
                format!("{api}/echo"),
                json!({"authorization": "Bearer mine"}),
            ),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("credentials: "),
        "{body}"
    );
    assert_eq!(seen.lock().unwrap().len(), before);

    // The secret is in no view and no record.
    let (_, actions) = server.get_json("/v1/actions?limit=50", ADMIN_TOKEN).await;
    assert!(!actions.to_string().contains(TOKEN));
    let chain = serde_json::to_string(&server.audit(None).await).unwrap();
    assert!(!chain.contains(TOKEN));

    // A secret that cannot be read: denied (fail closed), nothing sent.
    std::fs::remove_file(&secret_file).unwrap();
    let (status, body) = server
        .act(&key, get(format!("{api}/echo"), json!({})))
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("the secret \"api-key\" cannot be read"),
        "{body}"
    );
    assert_eq!(seen.lock().unwrap().len(), before);
    server.stop().await;
}
