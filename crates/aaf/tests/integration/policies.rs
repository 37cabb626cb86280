//! The policy lifecycle end to end over HTTP: managed policies with versions, rollback and
//! disable; 422 with `line:col` for invalid uploads while the set in force stays; data
//! documents; the built-in packs with their parameters; shadow mode and its report; dry-run
//! explanations and the playground; stored revisions; concurrent changes; and the policy
//! directory reloaded on change.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{policy_dir, within, TestServer, ADMIN_TOKEN, ALLOW_ALL};

async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .client
        .request(method, server.url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

const KB_ALLOW: &str = "package aaf.policies.kb\nimport rego.v1\n\ndecision := \"allow\" if {\n\tinput.action.tool == \"knowledge_base\"\n\tinput.action.operation == \"search\"\n}\n";
const KB_DENY: &str = "package aaf.policies.kb\nimport rego.v1\n\ndecision := {\"action\": \"deny\", \"reason\": \"search is closed\"} if input.action.tool == \"knowledge_base\"\n";

fn search() -> Value {
    json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "refund policy"}})
}

fn charge(amount: u64) -> Value {
    json!({
        "tool": "http_proxy",
        "operation": "POST",
        "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": amount, "currency": "usd"}},
        "context": {"user_id": "u-1", "purpose": "invoice"}
    })
}

#[tokio::test]
async fn managed_policies_are_versioned_rolled_back_and_disabled() {
    let dir = policy_dir(&[]);
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (_, key) = server.create_agent("kb-agent").await;

    // No policy: default deny.
    let (code, _) = server.act(&key, search()).await;
    assert_eq!(code, 403);

    let (code, created) = call(
        &server,
        Method::POST,
        "/v1/policies",
        Some(json!({"name": "kb-search", "rego": KB_ALLOW})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["version"], 1);
    assert_eq!(created["mode"], "enforce");
    assert_eq!(created["status"], "active");
    let r1 = created["revision"].as_str().unwrap().to_string();

    let (code, body) = server.act(&key, search()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["matched_policies"], json!(["kb-search"]));
    assert_eq!(body["policy_revision"], r1.as_str());

    // Version 2 denies, in force at once.
    let (code, v2) = call(
        &server,
        Method::PUT,
        &format!("/v1/policies/{id}"),
        Some(json!({"rego": KB_DENY})),
    )
    .await;
    assert_eq!(code, 200, "{v2}");
    assert_eq!(
        (v2["version"].as_i64(), v2["latest_version"].as_i64()),
        (Some(2), Some(2))
    );
    let (code, body) = server.act(&key, search()).await;
    assert_eq!(code, 403);
    assert_eq!(body["reason"], "search is closed");

    // An invalid version 3 (seed 000's unsafe rule) is refused with line:col; version 2 stays.
    let unsafe_rego = "package aaf.policies.kb\ndefault decision = \"deny\"\ndecision = \"allow\" { allowed_domains[input.action.params.url] }\nallowed_domains[url] {\n  startswith(url, \"https://api.trusted.com/\")\n}\n";
    let (code, err) = call(
        &server,
        Method::PUT,
        &format!("/v1/policies/{id}"),
        Some(json!({"rego": unsafe_rego})),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert_eq!(err["error"]["code"], "invalid");
    assert_eq!(err["error"]["field"], "rego");
    let problem = &err["error"]["problems"][0];
    assert_eq!(problem["file"], "managed/kb-search.rego");
    assert_eq!(problem["line"], 5, "{problem}");
    assert!(
        problem["message"].as_str().unwrap().contains("unsafe"),
        "{problem}"
    );
    assert!(problem["text"]
        .as_str()
        .unwrap()
        .starts_with("managed/kb-search.rego:5:"));
    // A parse error too.
    let (code, err) = call(
        &server,
        Method::PUT,
        &format!("/v1/policies/{id}"),
        Some(json!({"rego": "package aaf.policies.kb\nimport rego.v1\ndecision := \"allow\" if {\n  input.x ==\n}\n"})),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["error"]["problems"][0]["line"].as_u64().unwrap() >= 4,
        "{err}"
    );
    let (code, _) = server.act(&key, search()).await;
    assert_eq!(code, 403, "version 2 is still in force");

    let (code, versions) = call(
        &server,
        Method::GET,
        &format!("/v1/policies/{id}/versions"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let versions = versions["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 2, "refused uploads leave no version");
    assert_eq!(versions[1]["active"], true);
    assert_eq!(versions[0]["rego"], KB_ALLOW);

    // Rollback to version 1: the same sources give the same revision.
    let (code, rolled) = call(
        &server,
        Method::POST,
        &format!("/v1/policies/{id}/rollback"),
        Some(json!({"version": 1})),
    )
    .await;
    assert_eq!(code, 200, "{rolled}");
    assert_eq!(
        (
            rolled["version"].as_i64(),
            rolled["latest_version"].as_i64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(rolled["revision"], r1.as_str());
    let (code, body) = server.act(&key, search()).await;
    assert_eq!(code, 200, "{body}");
    let (code, err) = call(
        &server,
        Method::POST,
        &format!("/v1/policies/{id}/rollback"),
        Some(json!({"version": 7})),
    )
    .await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (400, Some("version")),
        "{err}"
    );

    // The revision's sources are stored for replay.
    let (code, revision) = call(
        &server,
        Method::GET,
        &format!("/v1/policy-revisions/{r1}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{revision}");
    assert!(revision["sources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["path"] == "managed/kb-search.rego" && s["rego"] == KB_ALLOW));
    let (code, _) = call(
        &server,
        Method::GET,
        &format!("/v1/policy-revisions/{}", "0".repeat(64)),
        None,
    )
    .await;
    assert_eq!(code, 404);

    // A second policy with the same package, and a duplicate name, are refused.
    let (code, err) = call(
        &server,
        Method::POST,
        "/v1/policies",
        Some(json!({"name": "kb-copy", "rego": KB_DENY})),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("also declared"),
        "{err}"
    );
    let (code, _) = call(
        &server,
        Method::POST,
        "/v1/policies",
        Some(json!({"name": "kb-search", "rego": ALLOW_ALL})),
    )
    .await;
    assert_eq!(code, 409);
    let (code, err) = call(
        &server,
        Method::POST,
        "/v1/policies",
        Some(json!({"name": "../etc", "rego": ALLOW_ALL})),
    )
    .await;
    assert_eq!((code, err["error"]["field"].as_str()), (400, Some("name")));

    // Disable: no longer evaluated, history kept, no further change.
    let (code, disabled) = call(&server, Method::DELETE, &format!("/v1/policies/{id}"), None).await;
    assert_eq!(code, 200, "{disabled}");
    assert_eq!(disabled["status"], "disabled");
    let (code, _) = server.act(&key, search()).await;
    assert_eq!(code, 403);
    let (code, _) = call(
        &server,
        Method::PUT,
        &format!("/v1/policies/{id}"),
        Some(json!({"rego": KB_ALLOW})),
    )
    .await;
    assert_eq!(code, 409);
    let (_, versions) = call(
        &server,
        Method::GET,
        &format!("/v1/policies/{id}/versions"),
        None,
    )
    .await;
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    let (_, list) = call(&server, Method::GET, "/v1/policies", None).await;
    assert_eq!(list["policies"][0]["status"], "disabled");

    // Every change is audited with its author, version and the source's SHA-256.
    let events = server.audit(None).await;
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|e| e["type"].as_str())
        .filter(|t| t.starts_with("policy."))
        .collect();
    assert_eq!(
        kinds,
        [
            "policy.created",
            "policy.updated",
            "policy.rolled_back",
            "policy.disabled"
        ]
    );
    let created_event = events
        .iter()
        .find(|e| e["type"] == "policy.created")
        .unwrap();
    assert_eq!(created_event["data"]["author"], "admin");
    assert_eq!(created_event["data"]["version"], 1);
    assert_eq!(
        created_event["data"]["sha256"].as_str().unwrap(),
        hex_sha256(KB_ALLOW)
    );
    assert_eq!(created_event["data"]["revision"], r1.as_str());
    let rolled_event = events
        .iter()
        .find(|e| e["type"] == "policy.rolled_back")
        .unwrap();
    assert_eq!(rolled_event["data"]["from_version"], 2);
    // The organisation's own set and its decision cache.
    let (code, stats) = server.get_json("/v1/stats", ADMIN_TOKEN).await;
    assert_eq!(code, 200);
    let cache = &stats["policy_cache"];
    assert_eq!(
        (cache["enabled"].as_bool(), cache["shared"].as_bool()),
        (Some(true), Some(false)),
        "{stats}"
    );
    assert!(stats["policy_revision"].is_string());
    // Each decision names the revision it was made under.
    let decided: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "action.decided")
        .collect();
    assert!(decided
        .iter()
        .any(|e| e["data"]["policy_revision"] == r1.as_str()));
    server.stop().await;
}

fn hex_sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn data_documents_and_policy_packs_decide_with_their_parameters() {
    let dir = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (_, key) = server.create_agent("payments").await;
    let dry = |body: Value| {
        let server = &server;
        let key = key.clone();
        async move { server.post_json("/v1/actions/dry-run", &key, body).await }
    };

    // A managed policy reading a data document.
    let limits = "package aaf.policies.limits\nimport rego.v1\n\ndecision := {\"action\": \"deny\", \"reason\": \"over the limit\"} if input.action.params.body.amount > data.limits.max_amount\n";
    let (code, _) = call(
        &server,
        Method::PUT,
        "/v1/data/limits",
        Some(json!({"max_amount": 100})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, body) = call(
        &server,
        Method::POST,
        "/v1/policies",
        Some(json!({"name": "limits", "rego": limits})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (_, d) = dry(charge(150)).await;
    assert_eq!(d["decision"], "deny", "{d}");
    let (code, doc) = call(
        &server,
        Method::PUT,
        "/v1/data/limits",
        Some(json!({"max_amount": 1000})),
    )
    .await;
    assert_eq!(code, 200, "{doc}");
    assert_eq!(doc["version"], 2);
    let (_, d) = dry(charge(150)).await;
    assert_eq!(d["decision"], "allow", "{d}");
    assert_eq!(d["policy_revision"], doc["revision"]);
    let (code, doc) = call(&server, Method::GET, "/v1/data/limits", None).await;
    assert_eq!((code, &doc["value"]), (200, &json!({"max_amount": 1000})));
    assert_eq!(doc["latest_version"], 2);
    let (code, old_doc) = call(&server, Method::GET, "/v1/data/limits?version=1", None).await;
    assert_eq!(
        (code, &old_doc["value"]),
        (200, &json!({"max_amount": 100})),
        "{old_doc}"
    );
    assert_eq!(old_doc["version"], 1);
    let (code, _) = call(&server, Method::GET, "/v1/data/limits?version=9", None).await;
    assert_eq!(code, 404);
    for (path, why) in [("a-b", "identifier"), ("limits/inner", "overlaps")] {
        let (code, err) = call(
            &server,
            Method::PUT,
            &format!("/v1/data/{path}"),
            Some(json!(1)),
        )
        .await;
        assert_eq!(code, 400, "{path}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(why),
            "{err}"
        );
    }

    // Packs: listed, none enabled.
    let (code, packs) = call(&server, Method::GET, "/v1/policy-packs", None).await;
    assert_eq!(code, 200);
    let names: Vec<&str> = packs["packs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["security", "compliance", "financial"]);
    assert!(packs["packs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["enabled"] == false));

    // The financial pack with its defaults: above 10000 cents needs approval.
    let (code, pack) = call(
        &server,
        Method::POST,
        "/v1/policy-packs/financial/enable",
        None,
    )
    .await;
    assert_eq!(code, 200, "{pack}");
    assert_eq!(pack["enabled"], true);
    let (_, d) = dry(charge(50_000)).await;
    assert_eq!(
        d["decision"], "deny",
        "the limits policy still denies above 1000: {d}"
    );
    let (code, _) = call(
        &server,
        Method::PUT,
        "/v1/data/limits",
        Some(json!({"max_amount": 10_000_000})),
    )
    .await;
    assert_eq!(code, 200);
    let (_, d) = dry(charge(50_000)).await;
    assert_eq!(d["decision"], "require_approval", "{d}");
    assert_eq!(d["matched_policies"], json!(["pack:financial"]));
    let (_, d) = dry(charge(500)).await;
    assert_eq!(d["decision"], "allow", "{d}");

    // Its parameters from the data document packs/financial.
    let (code, _) = call(
        &server,
        Method::PUT,
        "/v1/data/packs/financial",
        Some(json!({"apis": {"api.stripe.com": {"approval_threshold": 100, "max_amount": 1000}}})),
    )
    .await;
    assert_eq!(code, 200);
    let (_, d) = dry(charge(500)).await;
    assert_eq!(d["decision"], "require_approval", "{d}");
    // Parameters the pack reports as invalid are refused before they are stored.
    let (code, err) = call(
        &server,
        Method::PUT,
        "/v1/data/packs/financial",
        Some(json!({"apis": {"api.stripe.com": {"max_amount": "lots"}}, "typo": 1})),
    )
    .await;
    assert_eq!(
        (code, err["error"]["field"].as_str()),
        (422, Some("value")),
        "{err}"
    );
    let problems = err["error"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["message"].as_str().unwrap().contains("typo")),
        "{err}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["message"].as_str().unwrap().contains("max_amount")),
        "{err}"
    );
    let (_, doc) = call(&server, Method::GET, "/v1/data/packs/financial", None).await;
    assert_eq!(doc["version"], 1, "nothing was written: {doc}");
    let (_, d) = dry(charge(5000)).await;
    assert_eq!(d["decision"], "deny", "{d}");
    // The explanation names the pack's lines.
    let pack_explained = d["explanation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy"] == "pack:financial")
        .unwrap()
        .clone();
    assert_eq!(pack_explained["decision"], "deny");
    assert!(pack_explained["covered_lines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["file"] == "packs/financial.rego"));

    // Disabled: back to the limits policy alone.
    let (code, pack) = call(
        &server,
        Method::POST,
        "/v1/policy-packs/financial/disable",
        None,
    )
    .await;
    assert_eq!((code, &pack["enabled"]), (200, &json!(false)));
    let (_, d) = dry(charge(500)).await;
    assert_eq!(d["decision"], "allow", "{d}");
    let (code, _) = call(
        &server,
        Method::POST,
        "/v1/policy-packs/nosuch/enable",
        None,
    )
    .await;
    assert_eq!(code, 404);

    // The security pack denies every HTTP call until hosts are allowlisted.
    let (code, _) = call(
        &server,
        Method::POST,
        "/v1/policy-packs/security/enable",
        None,
    )
    .await;
    assert_eq!(code, 200);
    let get = json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "https://api.github.com/repos"}});
    let (_, d) = dry(get.clone()).await;
    assert_eq!(d["decision"], "deny", "{d}");
    let (code, _) = call(
        &server,
        Method::PUT,
        "/v1/data/packs/security",
        Some(json!({"allowed_domains": ["api.github.com"]})),
    )
    .await;
    assert_eq!(code, 200);
    let (_, d) = dry(get).await;
    assert_eq!(d["decision"], "allow", "{d}");
    let (_, d) = dry(json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "https://169.254.169.254/latest/meta-data/"}})).await;
    assert_eq!(d["decision"], "deny", "{d}");

    let kinds: Vec<String> = server
        .audit(None)
        .await
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_string))
        .filter(|t| t.starts_with("policy_pack.") || t.starts_with("data."))
        .collect();
    assert_eq!(
        kinds,
        [
            "data.updated",
            "data.updated",
            "policy_pack.enabled",
            "data.updated",
            "data.updated",
            "policy_pack.disabled",
            "policy_pack.enabled",
            "data.updated"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn shadow_policies_are_recorded_and_reported_but_never_decide() {
    let dir = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (_, key) = server.create_agent("shadowed").await;
    let (code, before) = server
        .act(&key, json!({"tool": "export", "operation": "run"}))
        .await;
    assert_eq!(code, 200, "{before}");
    let enforced_revision = before["policy_revision"].as_str().unwrap().to_string();
    let strict = "package aaf.policies.strict\nimport rego.v1\n\ndecision := {\"action\": \"deny\", \"reason\": \"no exports\"} if input.action.tool == \"export\"\n";
    let (code, created) = call(
        &server,
        Method::POST,
        "/v1/policies",
        Some(json!({"name": "strict", "rego": strict, "mode": "shadow"})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["mode"], "shadow");
    let id = created["id"].as_str().unwrap().to_string();
    // The revision names the enforced set, which a shadow policy is not part of: creating
    // one answers the revision in force, unchanged, and decisions keep recording it.
    assert_eq!(created["revision"], enforced_revision.as_str(), "{created}");

    let (code, exported) = server
        .act(&key, json!({"tool": "export", "operation": "run"}))
        .await;
    assert_eq!(
        code, 200,
        "shadow mode never changes the outcome: {exported}"
    );
    assert_eq!(exported["shadow"][0]["decision"], "deny");
    assert_eq!(exported["shadow"][0]["differs"], true);
    assert_eq!(exported["shadow"][0]["policy"], "strict");
    assert_eq!(exported["shadow"][0]["version"], 1);
    assert_eq!(exported["policy_revision"], enforced_revision.as_str());
    let (code, other) = server
        .act(&key, json!({"tool": "search", "operation": "run"}))
        .await;
    assert_eq!(code, 200);
    assert_eq!(other["shadow"][0]["differs"], false);

    let (code, report) = call(
        &server,
        Method::GET,
        &format!("/v1/policies/{id}/shadow-report"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        (report["total"].as_u64(), report["differing"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(report["samples"][0]["action_id"], exported["id"]);
    assert_eq!(report["samples"][0]["shadow"], "deny");
    assert_eq!(report["samples"][0]["enforced"], "allow");
    let decided = server
        .audit(None)
        .await
        .into_iter()
        .find(|e| e["type"] == "action.decided" && e["action_id"] == exported["id"])
        .unwrap();
    assert_eq!(decided["data"]["shadow"][0]["decision"], "deny");

    // Promoted to enforce: now it decides.
    let (code, promoted) = call(
        &server,
        Method::PUT,
        &format!("/v1/policies/{id}"),
        Some(json!({"mode": "enforce"})),
    )
    .await;
    assert_eq!((code, promoted["version"].as_i64()), (200, Some(2)));
    // Now part of the enforced set: a new revision, the one decisions record.
    assert_ne!(
        promoted["revision"],
        enforced_revision.as_str(),
        "{promoted}"
    );
    let (code, body) = server
        .act(&key, json!({"tool": "export", "operation": "run"}))
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.get("shadow").is_none());
    assert_eq!(body["policy_revision"], promoted["revision"]);
    server.stop().await;
}

/// `/healthz` counts every policy that decides the default organisation's actions
/// (directory, enforced managed policies, enabled packs; not shadow policies) and names the
/// revision its decisions record.
#[tokio::test]
async fn health_counts_the_policies_in_force_for_the_default_organisation() {
    let dir = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(dir.path(), |_| {}).await;
    let health = || async {
        let r = server
            .client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let h = health().await;
    assert_eq!(h["policies"], 1, "{h}");

    let (code, created) = call(
        &server,
        Method::POST,
        "/v1/policies",
        Some(json!({"name": "kb-search", "rego": KB_ALLOW})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let h = health().await;
    assert_eq!(h["policies"], 2, "{h}");
    assert_eq!(h["policy_revision"], created["revision"], "{h}");

    let (code, pack) = call(
        &server,
        Method::POST,
        "/v1/policy-packs/security/enable",
        None,
    )
    .await;
    assert_eq!(code, 200, "{pack}");
    let h = health().await;
    assert_eq!(h["policies"], 3, "{h}");
    let revision = h["policy_revision"].clone();

    let strict = "package aaf.policies.strict\nimport rego.v1\n\ndecision := \"deny\" if input.action.tool == \"export\"\n";
    let (code, shadow) = call(
        &server,
        Method::POST,
        "/v1/policies",
        Some(json!({"name": "strict", "rego": strict, "mode": "shadow"})),
    )
    .await;
    assert_eq!(code, 201, "{shadow}");
    let h = health().await;
    assert_eq!(h["policies"], 3, "a shadow policy does not decide: {h}");
    assert_eq!(h["policy_revision"], revision);
    server.stop().await;
}

#[tokio::test]
async fn dry_runs_explain_and_the_playground_stores_nothing() {
    let dir = policy_dir(&[("kb.rego", KB_ALLOW)]);
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (_, key) = server.create_agent("explorer").await;
    let (code, d) = server
        .post_json("/v1/actions/dry-run", &key, search())
        .await;
    assert_eq!(code, 200, "{d}");
    let kb = &d["explanation"][0];
    assert_eq!(kb["policy"], "aaf.policies.kb");
    assert_eq!(kb["decision"], "allow");
    assert!(kb["eval_time_us"].as_u64().is_some());
    let lines = kb["covered_lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["line"] == 5 && l["text"] == "input.action.tool == \"knowledge_base\""),
        "{lines:?}"
    );

    let before = server.audit(None).await.len();
    let playground = json!({
        "rego": "package play\nimport rego.v1\n\ndecision := \"require_approval\" if input.action.params.body.amount > data.max\n",
        "input": {"action": {"params": {"body": {"amount": 50}}}},
        "data": {"max": 10}
    });
    let (code, result) = call(&server, Method::POST, "/v1/playground", Some(playground)).await;
    assert_eq!(code, 200, "{result}");
    assert_eq!(result["decision"], "require_approval");
    assert_eq!(result["matched_policies"], json!(["play"]));
    assert_eq!(result["policies"][0]["covered_lines"][0]["line"], 4);
    // Together with the organisation's policies.
    let (code, result) = call(
        &server,
        Method::POST,
        "/v1/playground",
        Some(json!({"rego": "package play\nimport rego.v1\ndecision := \"deny\" if input.action.params.q == \"x\"\n", "input": {"action": {"tool": "knowledge_base", "operation": "search", "params": {"q": "y"}}}, "with_org_policies": true})),
    )
    .await;
    assert_eq!(
        (code, result["decision"].as_str()),
        (200, Some("allow")),
        "{result}"
    );
    // Invalid Rego: 422 with its position.
    let (code, err) = call(
        &server,
        Method::POST,
        "/v1/playground",
        Some(json!({"rego": "package play\ndecision = \"allow\" { nosuchfn(input.x) }\n", "input": {}})),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert_eq!(err["error"]["problems"][0]["file"], "playground.rego");
    assert_eq!(
        server.audit(None).await.len(),
        before,
        "the playground stores nothing"
    );
    let (_, list) = call(&server, Method::GET, "/v1/policies", None).await;
    assert_eq!(list["policies"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn concurrent_changes_never_lose_a_version() {
    let dir = policy_dir(&[]);
    let server = TestServer::start(dir.path(), |_| {}).await;
    let (code, created) = call(
        &server,
        Method::POST,
        "/v1/policies",
        Some(json!({"name": "kb", "rego": KB_ALLOW})),
    )
    .await;
    assert_eq!(code, 201);
    let id = created["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let rego = format!("{KB_ALLOW}# edit {i}\n");
        let (client, url) = (
            server.client.clone(),
            server.url(&format!("/v1/policies/{id}")),
        );
        tasks.push(tokio::spawn(async move {
            let r = client
                .put(url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"rego": rego}))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let code = t.await.unwrap();
        assert!(code == 200 || code == 409, "{code}");
        ok += usize::from(code == 200);
    }
    assert!(ok >= 1);
    let (_, versions) = call(
        &server,
        Method::GET,
        &format!("/v1/policies/{id}/versions"),
        None,
    )
    .await;
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1 + ok, "one version per successful change");
    let (_, policy) = call(&server, Method::GET, &format!("/v1/policies/{id}"), None).await;
    assert_eq!(policy["version"].as_i64(), Some((1 + ok) as i64));
    assert_eq!(policy["rego"], versions[ok]["rego"]);
    let updates = server
        .audit(None)
        .await
        .iter()
        .filter(|e| e["type"] == "policy.updated")
        .count();
    assert_eq!(updates, ok);
    server.stop().await;
}

#[tokio::test]
async fn the_policy_directory_is_reloaded_on_change_and_a_broken_file_keeps_the_set() {
    let dir = policy_dir(&[("kb.rego", KB_ALLOW)]);
    let server = TestServer::start(dir.path(), |c| {
        c.policy_engine.watch_debounce_ms = 50;
        c.policy_engine.refresh_interval_ms = 50;
    })
    .await;
    let (_, key) = server.create_agent("watched").await;
    let (code, _) = server.act(&key, search()).await;
    assert_eq!(code, 200);

    // A broken file: logged, the set in force stays.
    std::fs::write(
        dir.path().join("broken.rego"),
        "package broken\ndecision := {\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, _) = server.act(&key, search()).await;
    assert_eq!(code, 200, "a broken file must not replace the set in force");
    // Decisions of the same input come from the cache.
    let (_, stats) = server.get_json("/v1/stats", ADMIN_TOKEN).await;
    let cache = &stats["policy_cache"];
    assert_eq!(cache["shared"], true, "{stats}");
    assert!(cache["hits"].as_u64().unwrap() >= 1, "{stats}");

    // Fixed, and the policy changed: reloaded.
    std::fs::remove_file(dir.path().join("broken.rego")).unwrap();
    std::fs::write(dir.path().join("kb.rego"), KB_DENY).unwrap();
    within("the directory reload", async {
        loop {
            let (code, _) = server.act(&key, search()).await;
            if code == 403 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let (_, health) = server.get_json("/healthz", ADMIN_TOKEN).await;
    assert_eq!(health["policies"], 1);
    server.stop().await;
}
