//! Several `aaf serve` nodes on one PostgreSQL database: shared organisations and keys,
//! revocation seen by the other node within a second, one gap-free chain per organisation
//! while both append, and no acknowledged action lost when a node is killed (SIGKILL)
//! mid-load. Real processes, real PostgreSQL; skipped with a notice without PostgreSQL.

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::binary::{sigterm, spawn_serve_with};
use crate::common::{pg_db, policy_dir, within, PgDb, ADMIN_TOKEN, ALLOW_ALL};

struct Node {
    child: Child,
    base: String,
    _data: tempfile::TempDir,
}

/// Starts a node on `db` with `policies`, no failed-authentication limit, warnings-only logs
/// and the `extra` environment.
fn start_node_with(db: &PgDb, policies: &std::path::Path, extra: &[(&str, &str)]) -> Node {
    let data = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("AAF_DATABASE_URL", db.url.as_str()),
        ("AAF_AUTH__FAILED_AUTH_PER_MINUTE", "0"),
        ("AAF_LOG__LEVEL", "warn"),
    ];
    env.extend_from_slice(extra);
    let (child, base) = spawn_serve_with(data.path(), policies, Some(ADMIN_TOKEN), &env);
    Node {
        child,
        base,
        _data: data,
    }
}

/// Starts a node; its agent key cache keeps lookups for a minute, so that a revocation seen
/// by another node within a second can only have come through the database's notification.
fn start_node(db: &PgDb, policies: &std::path::Path) -> Node {
    start_node_with(db, policies, &[("AAF_AUTH__KEY_CACHE_TTL_MS", "60000")])
}

fn search() -> Value {
    json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "x"}})
}

async fn act(
    client: &reqwest::Client,
    node: &str,
    key: &str,
) -> Result<(u16, Value), reqwest::Error> {
    let r = client
        .post(format!("{node}/v1/actions"))
        .bearer_auth(key)
        .json(&search())
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// `GET url` with the admin token: the JSON body.
async fn admin_get(client: &reqwest::Client, url: &str) -> Value {
    client
        .get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every `action.decided` action id of the admin's organisation, read through `node`.
/// Registers an agent through `base` with the admin token; the 201 body (`id`, `key_id`,
/// `api_key`, ...).
async fn create_agent(client: &reqwest::Client, base: &str, name: &str) -> Value {
    let response = client
        .post(format!("{base}/v1/agents"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    response.json().await.unwrap()
}

async fn decided_ids(client: &reqwest::Client, node: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = 0u64;
    loop {
        let page = admin_get(
            client,
            &format!("{node}/v1/audit?after_seq={after}&limit=1000"),
        )
        .await;
        for e in page["events"].as_array().unwrap() {
            if e["type"] == "action.decided" {
                ids.push(e["action_id"].as_str().unwrap().to_string());
            }
        }
        match page["next_after_seq"].as_u64() {
            Some(n) => after = n,
            None => return ids,
        }
    }
}

fn verify_offline(db: &PgDb) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_aaf"))
        .args(["audit", "verify", "--database-url", &db.url])
        .env_remove("AAF_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "aaf audit verify failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn two_nodes_share_agents_keys_and_one_chain() {
    let Some(db) = pg_db("two_nodes_share_agents_keys_and_one_chain").await else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut a = start_node(&db, policies.path());
    let mut b = start_node(&db, policies.path());
    let client = reqwest::Client::new();

    // An agent created through A acts through B.
    let created = create_agent(&client, &a.base, "shared").await;
    let agent_id = created["id"].as_str().unwrap().to_string();
    let key_id = created["key_id"].as_str().unwrap().to_string();
    let key = created["api_key"].as_str().unwrap().to_string();
    assert_eq!(act(&client, &b.base, &key).await.unwrap().0, 200);

    // Both nodes append to the organisation's chain at once.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (client, key) = (client.clone(), key.clone());
        let node = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for _ in 0..40 {
                let (status, body) = act(&client, &node, &key).await.unwrap();
                assert_eq!(status, 200, "{body}");
                ok += 1;
            }
            ok
        }));
    }
    let mut acknowledged = 1;
    for t in tasks {
        acknowledged += t.await.unwrap();
    }
    assert_eq!(decided_ids(&client, &b.base).await.len(), acknowledged);

    // A key revoked through A is refused by B within a second, although B caches key lookups
    // for a minute: the revocation's NOTIFY drops B's cache.
    assert_eq!(act(&client, &b.base, &key).await.unwrap().0, 200);
    let r = client
        .post(format!(
            "{}/v1/agents/{agent_id}/keys/{key_id}/revoke",
            a.base
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let revoked_at = Instant::now();
    let refused_after = loop {
        let (status, _) = act(&client, &b.base, &key).await.unwrap();
        if status == 401 {
            break revoked_at.elapsed();
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(3),
            "node B still accepts a revoked key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("revocation through node A refused by node B after {refused_after:?}");
    assert!(
        refused_after <= Duration::from_millis(1000),
        "{refused_after:?}"
    );

    assert!(sigterm(&mut a.child).success());
    assert!(sigterm(&mut b.child).success());
    let report = verify_offline(&db);
    assert!(report.contains("audit verification passed"), "{report}");
}

#[tokio::test]
async fn a_node_killed_mid_load_loses_no_acknowledged_action() {
    let Some(db) = pg_db("a_node_killed_mid_load_loses_no_acknowledged_action").await else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut a = start_node(&db, policies.path());
    let mut b = start_node(&db, policies.path());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let created = create_agent(&client, &a.base, "loaded").await;
    let key = created["api_key"].as_str().unwrap().to_string();

    // 16 clients, half on each node, until 2.5 s have passed; node B is killed at 1 s.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop_at = Instant::now() + Duration::from_millis(2500);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (client, key, acknowledged) = (client.clone(), key.clone(), acknowledged.clone());
        let node = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut errors = 0;
            while Instant::now() < stop_at {
                match act(&client, &node, &key).await {
                    Ok((200, body)) => acknowledged
                        .lock()
                        .unwrap()
                        .push(body["id"].as_str().unwrap().to_string()),
                    Ok((status, body)) => panic!("node {node} answered {status}: {body}"),
                    // The killed node: connection refused or reset.
                    Err(_) => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            errors
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "{} actions acknowledged, {errors} failed requests to the killed node",
        acknowledged.len()
    );
    assert!(errors > 0, "node B was not killed during the load");

    // Every acknowledged action is in the chain, and the chain verifies without gaps.
    let recorded: HashSet<String> = decided_ids(&client, &a.base).await.into_iter().collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged actions are not in the chain: {missing:?}",
        missing.len()
    );
    assert!(sigterm(&mut a.child).success());
    let report = verify_offline(&db);
    assert!(report.contains("audit verification passed"), "{report}");
}

const HTTP_NEEDS_APPROVAL: &str = "package org.http_approval\nimport rego.v1\ndecision := \"require_approval\" if input.tool == \"http_proxy\"\ndecision := \"allow\" if input.tool != \"http_proxy\"\n";

/// Lets the HTTP connector reach the loopback upstream.
const PRIVATE_LOOPBACK: (&str, &str) = (
    "AAF_CONNECTORS__HTTP__ALLOW_PRIVATE_CIDRS",
    "[\"127.0.0.1/32\"]",
);

/// A node whose HTTP connector may reach the loopback upstream.
fn start_approval_node(db: &PgDb, policies: &std::path::Path) -> Node {
    start_node_with(db, policies, &[PRIVATE_LOOPBACK])
}

#[tokio::test]
async fn approvals_wake_waiters_on_other_nodes_and_race_to_one_execution() {
    let Some(db) = pg_db("approvals_wake_waiters_on_other_nodes_and_race_to_one_execution").await
    else {
        return;
    };
    let upstream = crate::common::Upstream::start().await;
    let policies = policy_dir(&[("approval.rego", HTTP_NEEDS_APPROVAL)]);
    let mut a = start_approval_node(&db, policies.path());
    let mut b = start_approval_node(&db, policies.path());
    let client = reqwest::Client::new();
    let post = |node: &str, path: &str, token: &str, body: Value| {
        let request = client
            .post(format!("{node}{path}"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, agent) = post(&a.base, "/v1/agents", ADMIN_TOKEN, json!({"name": "payer"})).await;
    assert_eq!(status, 201, "{agent}");
    let key = agent["api_key"].as_str().unwrap().to_string();
    let mut approvers = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let (status, user) = post(
            &a.base,
            "/v1/users",
            ADMIN_TOKEN,
            json!({"name": name, "role": "approver"}),
        )
        .await;
        assert_eq!(status, 201, "{user}");
        approvers.push(user["token"].as_str().unwrap().to_string());
    }
    let charge = |n: u64| {
        json!({"tool": "http_proxy", "operation": "POST",
               "params": {"url": upstream.url("/charges"), "body": {"n": n}}})
    };

    // The agent waits on B; the approval comes through A; B's wait returns at once.
    let (status, submitted) = post(&b.base, "/v1/actions", &key, charge(1)).await;
    assert_eq!(status, 202, "{submitted}");
    let id = submitted["id"].as_str().unwrap().to_string();
    let waiting = {
        let request = client
            .get(format!("{}/v1/actions/{id}?wait=30", b.base))
            .bearer_auth(&key);
        tokio::spawn(async move {
            let started = Instant::now();
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = post(
        &a.base,
        &format!("/v1/approvals/{id}/approve"),
        &approvers[0],
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action"]["status"], "executed");
    let (woke, waited) = waiting.await.unwrap();
    assert_ne!(woke["status"], "pending_approval", "{woke}");
    assert!(
        waited < Duration::from_secs(30),
        "B's waiter was woken by A's change"
    );
    eprintln!("waiter on B woke {waited:?} after waiting began");

    // Six approvals at once, three on each node: one wins, the charge runs once.
    for n in 2..5u64 {
        let (status, submitted) = post(&a.base, "/v1/actions", &key, charge(n)).await;
        assert_eq!(status, 202, "{submitted}");
        let id = submitted["id"].as_str().unwrap().to_string();
        let mut tasks = Vec::new();
        for (i, token) in approvers.iter().chain(approvers.iter()).enumerate() {
            let node = if i % 2 == 0 { &a.base } else { &b.base };
            let request = client
                .post(format!("{node}/v1/approvals/{id}/approve"))
                .bearer_auth(token)
                .json(&json!({}));
            tasks.push(tokio::spawn(async move {
                let r = request.send().await.unwrap();
                let code = r.status().as_u16();
                (code, r.text().await.unwrap_or_default())
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        let codes: Vec<u16> = answers.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            codes.iter().filter(|c| **c == 200).count(),
            1,
            "{answers:?}"
        );
        assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{answers:?}");
    }
    assert_eq!(
        upstream.count(),
        4,
        "every approved charge ran exactly once"
    );

    assert!(sigterm(&mut a.child).success());
    assert!(sigterm(&mut b.child).success());
    verify_offline(&db);
}

/// A loopback upstream that counts requests and answers only after `delay`.
async fn slow_upstream(delay: Duration) -> (String, Arc<Mutex<usize>>) {
    let hits = Arc::new(Mutex::new(0usize));
    let counted = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        let counted = Arc::clone(&counted);
        async move {
            *counted.lock().unwrap() += 1;
            tokio::time::sleep(delay).await;
            "late"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/charges"), hits)
}

#[tokio::test]
async fn a_node_killed_while_running_an_approved_action_never_runs_it_twice() {
    let Some(db) =
        pg_db("a_node_killed_while_running_an_approved_action_never_runs_it_twice").await
    else {
        return;
    };
    let (url, hits) = slow_upstream(Duration::from_secs(30)).await;
    let policies = policy_dir(&[("approval.rego", HTTP_NEEDS_APPROVAL)]);
    let node = |db: &PgDb| {
        start_node_with(
            db,
            policies.path(),
            &[
                PRIVATE_LOOPBACK,
                ("AAF_CONNECTORS__HTTP__TIMEOUT_MS", "2000"),
                ("AAF_APPROVALS__RECOVERY_AFTER_SECONDS", "1"),
                ("AAF_APPROVALS__SWEEP_INTERVAL_MS", "200"),
            ],
        )
    };
    let mut a = node(&db);
    let mut b = node(&db);
    let client = reqwest::Client::new();
    let agent = create_agent(&client, &a.base, "payer").await;
    let key = agent["api_key"].as_str().unwrap().to_string();
    let submitted: Value = client
        .post(format!("{}/v1/actions", a.base))
        .bearer_auth(&key)
        .json(&json!({"tool": "http_proxy", "operation": "POST", "params": {"url": url, "body": {"n": 1}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = submitted["id"].as_str().unwrap().to_string();

    // A approves and starts running it; A is killed while the upstream holds the request.
    let approving = {
        let request = client
            .post(format!("{}/v1/approvals/{id}/approve", a.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({}));
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    };
    let started = Instant::now();
    while *hits.lock().unwrap() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the upstream was never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    assert!(approving.await.unwrap().is_err(), "A died before answering");

    // B finds it `executing` past the connector's timeout and fails it: outcome unknown.
    let started = Instant::now();
    let action = loop {
        let action: Value = client
            .get(format!("{}/v1/actions/{id}?wait=5", b.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if action["status"] != "executing" {
            break action;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{action}");
    };
    assert_eq!(action["status"], "failed", "{action}");
    assert!(
        action["reason"]
            .as_str()
            .unwrap()
            .contains("outcome unknown"),
        "{action}"
    );
    assert_eq!(*hits.lock().unwrap(), 1, "never run a second time");
    assert!(sigterm(&mut b.child).success());
    verify_offline(&db);
}

/// Waits until `node` answers `search()` with `status`; returns how long it took (at most
/// 3 s, else the test fails).
async fn until_status(
    client: &reqwest::Client,
    node: &str,
    key: &str,
    status: u16,
) -> (Duration, Value) {
    let started = Instant::now();
    loop {
        let (got, body) = act(client, node, key).await.unwrap();
        if got == status {
            return (started.elapsed(), body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{node} still answers {got}, not {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_policy_change_through_one_node_is_enforced_by_the_other_at_once() {
    let Some(db) = pg_db("a_policy_change_through_one_node_is_enforced_by_the_other_at_once").await
    else {
        return;
    };
    let policies = policy_dir(&[]);
    // B polls for changes only once a minute: within a second, only the NOTIFY can tell it.
    let mut a = start_node(&db, policies.path());
    let mut b = start_node_with(
        &db,
        policies.path(),
        &[("AAF_POLICY_ENGINE__REFRESH_INTERVAL_MS", "60000")],
    );
    let client = reqwest::Client::new();
    let created = create_agent(&client, &a.base, "kb").await;
    let key = created["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        act(&client, &b.base, &key).await.unwrap().0,
        403,
        "no policy yet"
    );

    let kb = "package aaf.policies.kb\nimport rego.v1\ndecision := \"allow\" if input.action.tool == \"knowledge_base\"\n";
    let r = client
        .post(format!("{}/v1/policies", a.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "kb", "rego": kb}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let policy: Value = r.json().await.unwrap();
    let (took, body) = until_status(&client, &b.base, &key, 200).await;
    eprintln!("a policy created through node A enforced by node B after {took:?}");
    assert!(took <= Duration::from_millis(1000), "{took:?}");
    assert_eq!(body["policy_revision"], policy["revision"]);
    assert_eq!(body["matched_policies"], json!(["kb"]));

    // Disabled through A: B denies again.
    let r = client
        .delete(format!(
            "{}/v1/policies/{}",
            a.base,
            policy["id"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (took, _) = until_status(&client, &b.base, &key, 403).await;
    assert!(took <= Duration::from_millis(1000), "{took:?}");

    assert!(sigterm(&mut a.child).success());
    assert!(sigterm(&mut b.child).success());
    let report = verify_offline(&db);
    assert!(report.contains("audit verification passed"), "{report}");
}

/// Starts `aaf serve` on `db` without `AAF_ADMIN_TOKEN`; returns the process and every log
/// line it wrote up to and including the one announcing its address.
fn start_logged_node(
    db: &PgDb,
    data: &std::path::Path,
    policies: &std::path::Path,
) -> (Child, Vec<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_aaf"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--policies")
        .arg(policies)
        .env_remove("AAF_ADMIN_TOKEN")
        .env("AAF_DATABASE_URL", &db.url)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("aaf serve exited before listening")
            .unwrap();
        let listening = line.contains("listening") && line.contains("address=");
        log.push(line);
        if listening {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (child, log)
}

/// Waits until the node whose startup `log` this is answers `/healthz`.
async fn until_serving(log: &[String]) {
    let address = log
        .last()
        .and_then(|l| l.split("address=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    let client = reqwest::Client::new();
    within("the node's first answer", async {
        while client
            .get(format!("http://{address}/healthz"))
            .send()
            .await
            .map_or(true, |r| r.status() != 200)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Only the node that created the default organisation has its generated admin token file;
/// another node's log must not send the operator to a file that does not exist.
#[tokio::test]
async fn only_the_node_that_wrote_the_admin_token_file_names_it() {
    let Some(db) = pg_db("only_the_node_that_wrote_the_admin_token_file_names_it").await else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first_file = first_dir.path().join(aaf_server::app::ADMIN_TOKEN_FILE);
    let second_file = second_dir.path().join(aaf_server::app::ADMIN_TOKEN_FILE);

    let (mut first, log) = start_logged_node(&db, first_dir.path(), policies.path());
    assert!(
        first_file.exists(),
        "the first node generates and writes the token"
    );
    until_serving(&log).await;
    let (mut second, log) = start_logged_node(&db, second_dir.path(), policies.path());
    until_serving(&log).await;
    let log = log.join("\n");
    assert!(!second_file.exists());
    assert!(
        !log.contains(&second_file.display().to_string()),
        "the second node names an admin token file it does not have:\n{log}"
    );
    assert!(
        log.contains("default organisation found")
            && log.contains("the node that created it (not this one)"),
        "{log}"
    );
    assert!(sigterm(&mut second).success());

    // Restarted, the first node still has its file and says where it is.
    assert!(sigterm(&mut first).success());
    let (mut first, log) = start_logged_node(&db, first_dir.path(), policies.path());
    until_serving(&log).await;
    let log = log.join("\n");
    assert!(
        log.contains(&first_file.display().to_string()) && log.contains("written to this file"),
        "{log}"
    );
    assert!(sigterm(&mut first).success());
}

/// A dry run of the search action through `node`: whether a kill switch refused it.
async fn refused_by_kill_switch(client: &reqwest::Client, node: &str, key: &str) -> bool {
    let body: Value = client
        .post(format!("{node}/v1/actions/dry-run"))
        .bearer_auth(key)
        .json(&search())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("kill_switch: "))
}

/// Sends `request` (an engagement or release through node A) and measures, in
/// milliseconds from its answer, how long node B takes to reach `refused` for the agent's
/// dry runs (polled back to back). Panics after 10 s.
async fn propagation_ms(
    client: &reqwest::Client,
    request: reqwest::RequestBuilder,
    b: &str,
    key: &str,
    refused: bool,
) -> f64 {
    let r = request.send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let answered = Instant::now();
    while refused_by_kill_switch(client, b, key).await != refused {
        assert!(
            answered.elapsed() < Duration::from_secs(10),
            "node B did not follow node A within 10 s"
        );
    }
    answered.elapsed().as_secs_f64() * 1000.0
}

/// Engages and releases a kill switch on the agent through node A `rounds` times; returns the
/// propagation delays to node B of the engagements (from A's answer, and from the request's
/// sending) and of the releases (from A's answer), in milliseconds.
async fn kill_switch_rounds(a: &Node, b: &Node, rounds: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let client = reqwest::Client::new();
    let created = create_agent(&client, &a.base, "runaway").await;
    let agent_id = created["id"].as_str().unwrap().to_string();
    let key = created["api_key"].as_str().unwrap().to_string();
    assert!(!refused_by_kill_switch(&client, &b.base, &key).await);
    let (mut engaged, mut released, mut from_request) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let engage = client
            .post(format!("{}/v1/kill-switches", a.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"scope": "agent", "target": agent_id, "reason": "propagation"}));
        let sent = Instant::now();
        let r = engage.try_clone().unwrap().send().await.unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        // Measured from the engagement's answer, and from its sending (which adds the
        // request, its commit and node A's own installation).
        let answered = Instant::now();
        while !refused_by_kill_switch(&client, &b.base, &key).await {
            assert!(
                answered.elapsed() < Duration::from_secs(10),
                "not propagated"
            );
        }
        engaged.push(answered.elapsed().as_secs_f64() * 1000.0);
        from_request.push(sent.elapsed().as_secs_f64() * 1000.0);
        let release = client
            .delete(format!("{}/v1/kill-switches/{id}", a.base))
            .bearer_auth(ADMIN_TOKEN);
        released.push(propagation_ms(&client, release, &b.base, &key, false).await);
    }
    (engaged, from_request, released)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&values, 50.0), percentile(&values, 99.0));
    eprintln!(
        "{name}: n={} p50={p50:.2} ms p99={p99:.2} ms max={:.2} ms",
        values.len(),
        values[values.len() - 1]
    );
    (p50, p99)
}

#[tokio::test]
async fn a_kill_switch_engaged_through_one_node_is_in_force_on_the_other_at_once() {
    let Some(db) =
        pg_db("a_kill_switch_engaged_through_one_node_is_in_force_on_the_other_at_once").await
    else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    // The poll is a minute: a change seen within seconds came by the notification.
    let slow_poll = [
        ("AAF_RUNTIME__KILL_SWITCH_POLL_MS", "60000"),
        ("AAF_RUNTIME__KILL_SWITCH_MAX_STALENESS_MS", "600000"),
    ];
    let mut a = start_node_with(&db, policies.path(), &slow_poll);
    let mut b = start_node_with(&db, policies.path(), &slow_poll);
    let (engaged, _, released) = within("propagation", kill_switch_rounds(&a, &b, 10)).await;
    let (_, engaged_max) = summary("engaged on A, in force on B", engaged);
    let (_, released_max) = summary("released on A, lifted on B", released);
    assert!(engaged_max < 5000.0 && released_max < 5000.0);

    // Stored: a node started afterwards has the switch in force from its first request.
    let client = reqwest::Client::new();
    let created = create_agent(&client, &a.base, "stopped").await;
    let key = created["api_key"].as_str().unwrap().to_string();
    let r = client
        .post(format!("{}/v1/kill-switches", a.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"scope": "agent", "target": created["id"], "reason": "kept"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut c = start_node_with(&db, policies.path(), &slow_poll);
    assert!(refused_by_kill_switch(&client, &c.base, &key).await);
    let (status, body) = act(&client, &c.base, &key).await.unwrap();
    assert_eq!(status, 403, "{body}");
    for node in [&mut a, &mut b, &mut c] {
        assert!(sigterm(&mut node.child).success());
    }
}

#[tokio::test]
async fn a_node_that_cannot_confirm_its_kill_switches_refuses_every_action() {
    let Some(db) = pg_db("a_node_that_cannot_confirm_its_kill_switches_refuses_every_action").await
    else {
        return;
    };
    use sqlx::Connection;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut node = start_node_with(
        &db,
        policies.path(),
        &[
            ("AAF_RUNTIME__KILL_SWITCH_POLL_MS", "100"),
            ("AAF_RUNTIME__KILL_SWITCH_MAX_STALENESS_MS", "500"),
        ],
    );
    let client = reqwest::Client::new();
    let created = create_agent(&client, &node.base, "any").await;
    let key = created["api_key"].as_str().unwrap().to_string();
    assert_eq!(act(&client, &node.base, &key).await.unwrap().0, 200);

    // The poll starts failing (its table unreadable): within the staleness limit the node
    // refuses everything, recording why; once it can read again, it confirms and allows.
    let mut owner = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("REVOKE SELECT ON runtime_state FROM aaf_app")
        .execute(&mut owner)
        .await
        .unwrap();
    let revoked = Instant::now();
    let body = loop {
        let (status, body) = act(&client, &node.base, &key).await.unwrap();
        if status == 403 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            revoked.elapsed() < Duration::from_secs(10),
            "the node never failed closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "failed closed {:?} after the poll began failing",
        revoked.elapsed()
    );
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("kill_switch: this node could not confirm"),
        "{reason}"
    );
    sqlx::query("GRANT SELECT ON runtime_state TO aaf_app")
        .execute(&mut owner)
        .await
        .unwrap();
    let granted = Instant::now();
    loop {
        let (status, body) = act(&client, &node.base, &key).await.unwrap();
        if status == 200 {
            break;
        }
        assert!(
            granted.elapsed() < Duration::from_secs(10),
            "never recovered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    owner.close().await.unwrap();
    assert!(sigterm(&mut node.child).success());
}

/// The benchmark of docs/performance.md ("Kill-switch propagation"): 200 engagements and
/// releases through node A, each timed until node B refuses (or allows again) the agent's
/// dry runs, with the default poll. Run by `bench/kill_switch.sh` (release build).
#[tokio::test]
#[ignore = "a benchmark: bench/kill_switch.sh"]
async fn kill_switch_propagation_benchmark() {
    let Some(db) = pg_db("kill_switch_propagation_benchmark").await else {
        return;
    };
    let rounds = std::env::var("KILL_SWITCH_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200);
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut a = start_node_with(&db, policies.path(), &[]);
    let mut b = start_node_with(&db, policies.path(), &[]);
    let (engaged, from_request, released) = kill_switch_rounds(&a, &b, rounds).await;
    summary(
        "BENCH the same, from the engaging request's sending",
        from_request.clone(),
    );
    summary(
        "BENCH kill switch engaged on node A, in force on node B",
        engaged,
    );
    summary(
        "BENCH kill switch released on node A, lifted on node B",
        released,
    );
    for node in [&mut a, &mut b] {
        assert!(sigterm(&mut node.child).success());
    }
}

#[tokio::test]
async fn a_rate_limit_holds_for_the_cluster_not_per_node() {
    let Some(db) = pg_db("a_rate_limit_holds_for_the_cluster_not_per_node").await else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut a = start_node(&db, policies.path());
    let client = reqwest::Client::new();
    let created = create_agent(&client, &a.base, "busy").await;
    let key = created["api_key"].as_str().unwrap().to_string();
    let r = client
        .post(format!("{}/v1/rate-limits", a.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"scope": "agent", "target": created["id"], "limit": 100, "window": "minute"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Started after the limit was made, node B has it from its first request.
    let mut b = start_node(&db, policies.path());
    let started = Instant::now();
    // 500 requests, split across both nodes, 8 at a time.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (client, key) = (client.clone(), key.clone());
        let node = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        tasks.push(tokio::spawn(async move {
            let (mut admitted, mut limited) = (0u32, 0u32);
            for _ in 0..(if i < 4 { 63 } else { 62 }) {
                match act(&client, &node, &key).await.unwrap().0 {
                    200 => admitted += 1,
                    429 => limited += 1,
                    other => panic!("unexpected status {other}"),
                }
            }
            (admitted, limited)
        }));
    }
    let (mut admitted, mut limited) = (0, 0);
    for t in tasks {
        let (x, y) = t.await.unwrap();
        admitted += x;
        limited += y;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(admitted + limited, 500);
    // The documented tolerance: what the limit refills while the requests run (100 a
    // minute), and one more for the refill under way.
    let tolerance = (elapsed * 100.0 / 60.0).ceil() as u32 + 1;
    eprintln!("cluster-wide limit of 100/minute: {admitted} of 500 admitted over both nodes in {elapsed:.2} s (tolerance {tolerance})");
    assert!(admitted >= 100, "{admitted}");
    assert!(
        admitted <= 100 + tolerance,
        "{admitted} > 100 + {tolerance}"
    );
    for node in [&mut a, &mut b] {
        assert!(sigterm(&mut node.child).success());
    }
}

#[tokio::test]
async fn a_rate_limit_whose_shared_counter_cannot_be_reached_refuses() {
    let Some(db) = pg_db("a_rate_limit_whose_shared_counter_cannot_be_reached_refuses").await
    else {
        return;
    };
    use sqlx::Connection;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut node = start_node(&db, policies.path());
    let client = reqwest::Client::new();
    let limited = create_agent(&client, &node.base, "limited").await;
    let free = create_agent(&client, &node.base, "free").await;
    let r = client
        .post(format!("{}/v1/rate-limits", node.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(
            &json!({"scope": "agent", "target": limited["id"], "limit": 1000, "window": "second"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let limited_key = limited["api_key"].as_str().unwrap();
    let free_key = free["api_key"].as_str().unwrap();
    assert_eq!(act(&client, &node.base, limited_key).await.unwrap().0, 200);

    // The counters' table becomes unwritable: the limited agent is refused, the other not.
    let mut owner = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("REVOKE UPDATE, INSERT ON rate_limit_counters FROM aaf_app")
        .execute(&mut owner)
        .await
        .unwrap();
    let (status, body) = act(&client, &node.base, limited_key).await.unwrap();
    assert_eq!(status, 429, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rate_limit: the shared counter of limit"),
        "{reason}"
    );
    assert_eq!(act(&client, &node.base, free_key).await.unwrap().0, 200);
    sqlx::query("GRANT UPDATE, INSERT ON rate_limit_counters TO aaf_app")
        .execute(&mut owner)
        .await
        .unwrap();
    assert_eq!(act(&client, &node.base, limited_key).await.unwrap().0, 200);
    owner.close().await.unwrap();
    assert!(sigterm(&mut node.child).success());
}

/// Issue 15, section 4: the hard limit of a budget holds across nodes. 50 actions at once,
/// split over two nodes, each declaring a cost of 100 micro-units, against a budget of
/// 1000: exactly 10 are admitted (each reservation is one conditional update of the shared
/// row), the rest are denied with `budget:`, and the budget shows 1000 spent.
#[tokio::test]
async fn a_budget_admits_no_more_than_it_fits_across_two_nodes() {
    let Some(db) = pg_db("a_budget_admits_no_more_than_it_fits_across_two_nodes").await else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut a = start_node(&db, policies.path());
    let mut b = start_node(&db, policies.path());
    let client = reqwest::Client::new();
    let agent = create_agent(&client, &a.base, "spender").await;
    let r = client
        .post(format!("{}/v1/budgets", a.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"agent_id": agent["id"], "unit": "USD", "period": "day", "limit": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let budget: Value = r.json().await.unwrap();
    // Only the reservation is under test here: no breaker stops the agent once it is spent.
    let r = client
        .put(format!("{}/v1/circuit-breakers", a.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"budget_exhausted": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Node b learns of the budget by the runtime generation (NOTIFY, or its next poll).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let key = agent["api_key"].as_str().unwrap().to_string();
    let action = json!({"tool": "llm_tool", "operation": "complete", "params": {},
                        "context": {"expected_usage": {"cost_micros": 100}}});
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (client, key, action) = (client.clone(), key.clone(), action.clone());
        let node = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(format!("{node}/v1/actions"))
                .bearer_auth(&key)
                .json(&action)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }));
    }
    let (mut admitted, mut refused) = (0, 0);
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => admitted += 1,
            403 => {
                let reason = body["reason"].as_str().unwrap();
                assert!(reason.starts_with("budget: "), "{reason}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    println!("budget across two nodes: {admitted} admitted, {refused} refused of 50");
    assert_eq!((admitted, refused), (10, 40));
    let r = client
        .get(format!(
            "{}/v1/budgets/{}",
            b.base,
            budget["id"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let view: Value = r.json().await.unwrap();
    assert_eq!(
        (view["spent"].as_u64(), view["remaining"].as_u64()),
        (Some(1000), Some(0))
    );
    for node in [&mut a, &mut b] {
        assert!(sigterm(&mut node.child).success());
    }
}

/// `input.session` across nodes: a session reads customer records through one node, and an
/// upload to a new host through the other is denied by the exfiltration-chain example once
/// that node's cached copy of the agent's actions is older than `runtime.session.cache_ms`
/// (250 ms by default), even though that node had read the agent's actions before.
#[tokio::test]
async fn a_session_spans_nodes_for_session_aware_policies() {
    let Some(db) = pg_db("a_session_spans_nodes_for_session_aware_policies").await else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let session = crate::common::examples("session");
    std::fs::copy(
        session.join("exfiltration_chain.rego"),
        policies.path().join("exfiltration_chain.rego"),
    )
    .unwrap();
    // The test checks decisions, not time limits: a busy machine may evaluate slowly.
    let roomy = [("AAF_LIMITS__EVAL_TIMEOUT_MS", "5000")];
    let mut a = start_node_with(&db, policies.path(), &roomy);
    let mut b = start_node_with(&db, policies.path(), &roomy);
    let client = reqwest::Client::new();
    let created = create_agent(&client, &a.base, "exporter").await;
    let key = created["api_key"].as_str().unwrap().to_string();
    let post = |node: &str, body: Value| {
        client
            .post(format!("{node}/v1/actions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let in_session = |tool: &str, operation: &str, url: &str| {
        json!({"tool": tool, "operation": operation, "params": {"url": url},
               "context": {"session_id": "s-multi"}})
    };

    // B reads the agent's actions once (and caches them): nothing of the session yet.
    let first = post(
        &b.base,
        in_session("docs", "GET", "https://docs.example.com/"),
    )
    .await;
    assert_eq!(first.unwrap().status().as_u16(), 200);
    // A records the read of customer records.
    let read = post(
        &a.base,
        in_session("crm", "GET", "https://crm.example.com/customers"),
    )
    .await;
    assert_eq!(read.unwrap().status().as_u16(), 200);
    // Past B's cache time, B sees it: the upload is denied.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let upload = post(
        &b.base,
        in_session("http_proxy", "POST", "https://paste.example.net/upload"),
    )
    .await
    .unwrap();
    assert_eq!(upload.status().as_u16(), 403);
    let body: Value = upload.json().await.unwrap();
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("exfiltration chain"),
        "{body}"
    );

    sigterm(&mut a.child);
    sigterm(&mut b.child);
}

/// Risk profiles are shared by nodes (issue 17, section 4): an agent's usual calls go through
/// node A, which folds and stores its profile; node B, which never saw the agent, scores its
/// next call against that stored profile (not learning, the baseline A learned) and its first
/// call to a new host with `new_host`.
#[tokio::test]
async fn nodes_share_an_agents_risk_profile() {
    let Some(db) = pg_db("nodes_share_an_agents_risk_profile").await else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let fast = [
        ("AAF_DETECTION__RISK__ENABLED", "true"),
        ("AAF_DETECTION__RISK__LEARNING_ACTIONS", "20"),
        ("AAF_DETECTION__RISK__LEARNING_SECONDS", "0"),
        ("AAF_DETECTION__RISK__FOLD_DELAY_SECONDS", "0"),
        ("AAF_DETECTION__RISK__CACHE_MS", "0"),
        ("AAF_LIMITS__EVAL_TIMEOUT_MS", "5000"),
    ];
    let mut a = start_node_with(&db, policies.path(), &fast);
    let mut b = start_node_with(&db, policies.path(), &fast);
    let client = reqwest::Client::new();
    let created = create_agent(&client, &a.base, "steady").await;
    let key = created["api_key"].as_str().unwrap().to_string();
    let act = |node: &str, url: &str| {
        client
            .post(format!("{node}/v1/actions"))
            .bearer_auth(&key)
            .json(&json!({"tool": "crm", "operation": "read", "params": {"url": url}}))
            .send()
    };
    let risk_of = |node: &str, body: &Value| {
        let id = body["id"].as_str().unwrap().to_string();
        let url = format!("{node}/v1/actions/{id}");
        let client = client.clone();
        async move { admin_get(&client, &url).await["risk"].clone() }
    };
    for i in 0..25 {
        let r = act(&a.base, &format!("https://crm.example.com/customers/{i}"))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let usual: Value = act(&b.base, "https://crm.example.com/customers/7")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let risk = risk_of(&b.base, &usual).await;
    assert_eq!(risk["learning"], false, "{risk}");
    assert_eq!(risk["score"], 0.0, "{risk}");
    assert!(risk["baseline_actions"].as_u64().unwrap() >= 25, "{risk}");
    let odd: Value = act(&b.base, "https://upload.exfil.example.net/drop")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let risk = risk_of(&a.base, &odd).await;
    assert_eq!(risk["factors"][0]["name"], "new_host", "{risk}");
    assert_eq!(risk["score"], 0.6, "{risk}");

    sigterm(&mut a.child);
    sigterm(&mut b.child);
}

/// Two nodes with the same log key build one chain's tree while both append (each node's
/// worker every 50 ms, writing the same stored hashes): a checkpoint signed through one node
/// is served by the other, every event's inclusion proof from the other node verifies
/// against it, and `aaf audit verify` on the database checks every stored checkpoint. A node
/// without the key signs nothing and says why.
#[tokio::test]
async fn nodes_build_one_tree_and_share_its_checkpoints() {
    use aaf_core::audit::{canonical_event, ChainedEvent};
    use aaf_core::evidence::checkpoint::{verify_checkpoint, LogKey};
    use aaf_core::evidence::merkle::{leaf_hash, verify_inclusion};

    let Some(db) = pg_db("nodes_build_one_tree_and_share_its_checkpoints").await else {
        return;
    };
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let key = LogKey::generate("aaf.test/audit").unwrap();
    let private = key.to_private_key();
    let env = [
        ("AAF_EVIDENCE__LOG_KEY", private.as_str()),
        ("AAF_EVIDENCE__BUILD_INTERVAL_MS", "50"),
        ("AAF_EVIDENCE__CHECKPOINT_EVERY_EVENTS", "5"),
    ];
    let mut a = start_node_with(&db, policies.path(), &env);
    let mut b = start_node_with(&db, policies.path(), &env);
    let client = reqwest::Client::new();
    let agent = create_agent(&client, &a.base, "evidence").await;
    let agent_key = agent["api_key"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for node in [a.base.clone(), b.base.clone()] {
        let (client, agent_key) = (client.clone(), agent_key.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                assert_eq!(act(&client, &node, &agent_key).await.unwrap().0, 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let response = client
        .post(format!("{}/v1/audit/checkpoint", a.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let signed: Value = response.json().await.unwrap();
    let checkpoint =
        verify_checkpoint(signed["note"].as_str().unwrap(), &key.verifier_key()).unwrap();
    let latest = admin_get(&client, &format!("{}/v1/audit/checkpoint", b.base)).await;
    assert_eq!(latest["note"], signed["note"]);
    let mut after = 0;
    let mut events = Vec::new();
    loop {
        let page = admin_get(
            &client,
            &format!("{}/v1/audit?after_seq={after}&limit=1000", b.base),
        )
        .await;
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_after_seq"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert!(events.len() as u64 >= checkpoint.size);
    for event in events.iter().take(checkpoint.size as usize) {
        let chained: ChainedEvent = serde_json::from_value(event.clone()).unwrap();
        let seq = chained.event.seq;
        let proof = admin_get(
            &client,
            &format!(
                "{}/v1/audit/proof/inclusion?seq={seq}&tree_size={}",
                b.base, checkpoint.size
            ),
        )
        .await;
        let path: Vec<[u8; 32]> = proof["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        verify_inclusion(
            seq - 1,
            checkpoint.size,
            &leaf_hash(&canonical_event(&chained.hashed_event()).unwrap()),
            &path,
            &checkpoint.root,
        )
        .unwrap_or_else(|e| panic!("seq {seq}: {e}"));
    }
    // The offline verifier checks the stored checkpoints with the key's verifier key.
    let out = Command::new(env!("CARGO_BIN_EXE_aaf"))
        .args([
            "audit",
            "verify",
            "--database-url",
            &db.url,
            "--verifier-key",
        ])
        .arg(key.verifier_key())
        .env_remove("AAF_DATABASE_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "@{} (database): size {}",
            checkpoint.size, checkpoint.size
        )),
        "{stdout}"
    );
    sigterm(&mut a.child);
    sigterm(&mut b.child);

    // A node without the log key: trees and proofs, but no checkpoint, and it says why.
    let mut keyless = start_node_with(&db, policies.path(), &[]);
    let response = client
        .post(format!("{}/v1/audit/checkpoint", keyless.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("evidence.log_key_file"),
        "{body}"
    );
    let proof = admin_get(
        &client,
        &format!(
            "{}/v1/audit/proof/consistency?from=1&to={}",
            keyless.base, checkpoint.size
        ),
    )
    .await;
    assert_eq!(proof["to"].as_u64(), Some(checkpoint.size), "{proof}");
    sigterm(&mut keyless.child);
}
