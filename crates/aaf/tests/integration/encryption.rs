//! Encryption at rest (issue 18 section 3; docs/encryption.md), on a real server and its real
//! SQLite file: no plaintext in the file, key rotation, crypto-shredding of an action and of
//! the organisation with the chain, the Merkle tree and proof packs still verifying, and a
//! sealed action changed in the database never executed.

use std::path::Path;

use serde_json::{json, Value};

use crate::approvals::{answer, stripe_to};
use crate::common::{examples, TestServer, Upstream, ADMIN_TOKEN};
use crate::evidence::{aaf_verify_pack, copy_of, python_pack_verifier, python_verify_pack, verify};

/// Values that must never be found in the database file.
const CARD: &str = "4111111111111111";
const PASSWORD: &str = "hunter2-Pa55word";
const PARAM: &str = "zebra-quokka-77";
const CONTEXT: &str = "wombat-context-42";

/// A charge whose body carries the values above (and a bearer secret the connector
/// injects), with the context value.
fn charge_with_secrets(upstream: &Upstream, amount: u64) -> Value {
    json!({
        "tool": "http_proxy",
        "operation": "POST",
        "params": {
            "url": format!("http://api.stripe.com:{}/v1/charges", upstream.addr.port()),
            "body": {"amount": amount, "currency": "usd", "description": PARAM,
                     "card": CARD, "password": PASSWORD},
            "headers": {"Authorization": "Bearer sk_test_approval_secret"}
        },
        "context": {"user_id": "customer-7", "purpose": CONTEXT}
    })
}

/// Every byte of the data directory's database files (`aaf.db`, its WAL and shared memory).
fn database_bytes(data_dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["aaf.db", "aaf.db-wal", "aaf.db-shm"] {
        if let Ok(b) = std::fs::read(data_dir.join(name)) {
            bytes.extend(b);
        }
    }
    bytes
}

/// The `table.column`s of the database that hold `value` in clear (to name a leak).
fn columns_holding(data_dir: &Path, value: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(data_dir.join("aaf.db")).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut found = Vec::new();
    for table in tables {
        let columns: Vec<String> = db
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for column in columns {
            let n: i64 = db
                .query_row(
                    &format!(
                        "SELECT count(*) FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE ?1"
                    ),
                    [format!("%{value}%")],
                    |r| r.get(0),
                )
                .unwrap();
            if n > 0 {
                found.push(format!("{table}.{column}"));
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Downloads the proof pack of action `id` (as the admin) to `<dir>/<id>.zip`.
async fn download_pack(server: &TestServer, id: &str, dir: &Path) -> std::path::PathBuf {
    let response = reqwest::Client::new()
        .get(server.url(&format!("/v1/proof-pack/{id}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let pack = dir.join(format!("{id}.zip"));
    std::fs::write(&pack, response.bytes().await.unwrap()).unwrap();
    pack
}

fn config(c: &mut aaf_server::config::Config) {
    c.webhooks.allow_private_cidrs = vec!["127.0.0.1/32".parse().unwrap()];
}

#[tokio::test]
async fn the_database_file_holds_no_plaintext_and_verifies_without_the_key() {
    let upstream = Upstream::start().await;
    let mut server = TestServer::start(&examples("seed-004"), |c| {
        stripe_to(&upstream)(c);
        config(c);
    })
    .await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let (status, hook) = server
        .post_json(
            "/v1/webhooks",
            ADMIN_TOKEN,
            json!({"url": "http://127.0.0.1:9/hook", "events": ["approval.requested"]}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let webhook_secret = hook["secret"].as_str().unwrap().to_string();

    // Allowed and executed; waiting for approval, then approved and executed.
    let (status, allowed) = server
        .act(&agent_key, charge_with_secrets(&upstream, 500))
        .await;
    assert_eq!(status, 200, "{allowed}");
    let (status, pending) = server
        .act(&agent_key, charge_with_secrets(&upstream, 50000))
        .await;
    assert_eq!(status, 202, "{pending}");
    let pending_id = pending["id"].as_str().unwrap().to_string();
    let (status, body) = answer(&server, &approver, &pending_id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");

    // Readable through the API: the values are stored, sealed.
    let (_, action) = server
        .get_json(&format!("/v1/actions/{pending_id}?wait=10"), ADMIN_TOKEN)
        .await;
    assert_eq!(action["status"], "executed", "{action}");
    assert_eq!(action["context"]["purpose"], CONTEXT, "{action}");
    let events = server.audit(None).await;
    let decided = events
        .iter()
        .find(|e| e["type"] == "action.decided" && e["action_id"] == pending_id.as_str())
        .unwrap();
    assert!(decided["payload"]["sha256"].is_string(), "{decided}");
    assert!(decided["payload"]["salt"].is_string(), "{decided}");
    assert_eq!(decided["data"]["context"]["purpose"], CONTEXT, "{decided}");
    let (status, state) = server.get_json("/v1/encryption", ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["enabled"], true, "{state}");
    assert_eq!(state["algorithm"], "XChaCha20-Poly1305");
    assert_eq!(state["keys"].as_array().unwrap().len(), 1, "{state}");
    assert!(state["keys"][0].get("wrapped").is_none(), "{state}");

    let data = server.take_data_dir();
    server.stop().await;
    let bytes = database_bytes(data.path());
    assert!(bytes.len() > 10_000, "the database is empty?");
    for (what, value) in [
        ("card number", CARD),
        ("password", PASSWORD),
        ("params value", PARAM),
        ("context value", CONTEXT),
        ("webhook secret", webhook_secret.as_str()),
        ("injected credential", "sk_test_approval_secret"),
    ] {
        assert!(
            !contains(&bytes, value),
            "the database file holds the {what} in clear, in {:?}",
            columns_holding(data.path(), value)
        );
    }
    // The master key is not in the database either.
    let master = std::fs::read_to_string(data.path().join("master-key")).unwrap();
    assert!(!contains(&bytes, master.trim()));

    // Verification needs no key: the chain, the trees and the checkpoints verify with the
    // master key moved away.
    let copy = copy_of(data.path());
    std::fs::remove_file(copy.path().join("master-key")).unwrap();
    let (passed, out) = verify(copy.path(), None);
    assert!(passed, "{out}");
    assert!(out.contains("ok      chain"), "{out}");
}

#[tokio::test]
async fn rotation_and_shredding_leave_the_chain_trees_and_packs_verifying() {
    let upstream = Upstream::start().await;
    let mut server = TestServer::start(&examples("seed-004"), |c| {
        stripe_to(&upstream)(c);
        config(c);
    })
    .await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, auditor) = server.create_user("carol", "auditor").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let act = |amount: u64| server.act(&agent_key, charge_with_secrets(&upstream, amount));
    let (_, first) = act(100).await;
    let first = first["id"].as_str().unwrap().to_string();
    let (_, second) = act(200).await;
    let second = second["id"].as_str().unwrap().to_string();

    // Rotation: a new active key, the old one retired; old and new data readable.
    let (status, body) = server
        .post_json("/v1/encryption/rotate", &auditor, json!({}))
        .await;
    assert_eq!(status, 403, "auditors may not rotate: {body}");
    let (status, rotated) = server
        .post_json("/v1/encryption/rotate", ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["active"], true);
    let (status, state) = server.get_json("/v1/encryption", &auditor).await;
    assert_eq!(status, 200, "{state}");
    let keys = state["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{state}");
    assert!(keys[0]["retired_at"].is_string() && keys[0]["active"] == false);
    assert_eq!(keys[1]["id"], rotated["id"]);
    let (_, third) = act(300).await;
    let third = third["id"].as_str().unwrap().to_string();
    for id in [&first, &second, &third] {
        let (_, action) = server
            .get_json(&format!("/v1/actions/{id}"), ADMIN_TOKEN)
            .await;
        assert_eq!(action["params"]["body"]["description"], PARAM, "{action}");
    }
    let events = server.audit(None).await;
    assert!(events
        .iter()
        .any(|e| e["type"] == "encryption.key_rotated" && e["data"]["key_id"] == rotated["id"]));

    // Bad requests name their field; a pending action cannot be shredded.
    let (status, pending) = act(50000).await;
    assert_eq!(status, 202, "{pending}");
    let pending_id = pending["id"].as_str().unwrap().to_string();
    for (body, code, field) in [
        (
            json!({"scope": "action", "action_id": "no-such-action"}),
            404,
            "action_id",
        ),
        (
            json!({"scope": "organisation", "confirm": "not-the-org"}),
            400,
            "confirm",
        ),
        (
            json!({"scope": "action", "action_id": pending_id}),
            409,
            "pending_approval",
        ),
        (json!({"scope": "everything"}), 400, "scope"),
    ] {
        let (status, answer) = server
            .post_json("/v1/encryption/shred", ADMIN_TOKEN, body.clone())
            .await;
        assert_eq!(status, code, "{body}: {answer}");
        assert!(answer.to_string().contains(field), "{body}: {answer}");
    }
    let (status, _) = answer(&server, &approver, &pending_id, "reject", json!({})).await;
    assert_eq!(status, 200);

    // Shred the first action: its record and its events' payloads are gone for good.
    let (status, shredded) = server
        .post_json(
            "/v1/encryption/shred",
            ADMIN_TOKEN,
            json!({"scope": "action", "action_id": first}),
        )
        .await;
    assert_eq!(status, 200, "{shredded}");
    let (_, action) = server
        .get_json(&format!("/v1/actions/{first}"), ADMIN_TOKEN)
        .await;
    assert!(action["params"].is_null(), "{action}");
    assert!(
        action["withheld"].as_str().unwrap().contains("destroyed"),
        "{action}"
    );
    let (status, again) = server
        .post_json(
            "/v1/encryption/shred",
            ADMIN_TOKEN,
            json!({"scope": "action", "action_id": first}),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    let events = server.audit(None).await;
    for e in events.iter().filter(|e| e["action_id"] == first.as_str()) {
        if e["type"] == "encryption.action_shredded" {
            assert_eq!(e["data"]["action_id"], first.as_str(), "{e}");
            continue;
        }
        assert!(e["data"].is_null(), "{e}");
        let why = e["payload"]["withheld"].as_str().unwrap();
        assert!(why.contains("crypto-shredded"), "{e}");
    }
    assert!(events
        .iter()
        .filter(|e| e["action_id"] == second.as_str())
        .all(|e| e["data"].is_object()));

    // Its proof pack still verifies with both verifiers, and says what is withheld.
    let (_, checkpoint) = server
        .post_json("/v1/audit/checkpoint", ADMIN_TOKEN, json!({}))
        .await;
    let verifier_key = checkpoint["verifier_key"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let script = python_pack_verifier(dir.path());
    for (id, withheld) in [(&first, true), (&second, false)] {
        let pack = download_pack(&server, id, dir.path()).await;
        let (ok, out) = aaf_verify_pack(&pack, &verifier_key);
        assert!(ok, "{id}: {out}");
        assert_eq!(
            out.contains("not in the pack, only their commitments"),
            withheld,
            "{out}"
        );
        // The shredding event itself (of the same action) is readable and disclosed.
        assert!(
            out.contains("are those their proven events commit to"),
            "{out}"
        );
        let (ok, out) = python_verify_pack(&script, &pack, &verifier_key);
        assert!(ok, "{id} (python): {out}");
        assert_eq!(out.contains("withheld"), withheld, "{out}");
    }

    // Shred the organisation: everything sealed so far is unreadable; new data is readable.
    let org_id = events[0]["org_id"].as_str().unwrap().to_string();
    let (status, body) = server
        .post_json(
            "/v1/encryption/shred",
            ADMIN_TOKEN,
            json!({"scope": "organisation", "confirm": org_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["destroyed_keys"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    let (_, after) = act(400).await;
    let after = after["id"].as_str().unwrap().to_string();
    for (id, readable) in [(&second, false), (&third, false), (&after, true)] {
        let (_, action) = server
            .get_json(&format!("/v1/actions/{id}"), ADMIN_TOKEN)
            .await;
        assert_eq!(action["params"].is_object(), readable, "{action}");
    }
    let events = server.audit(None).await;
    let shred_event = events
        .iter()
        .find(|e| e["type"] == "encryption.org_shredded")
        .unwrap();
    assert!(shred_event["data"]["by"].is_string(), "{shred_event}");
    let second_decided = events
        .iter()
        .find(|e| e["type"] == "action.decided" && e["action_id"] == second.as_str())
        .unwrap();
    assert!(
        second_decided["payload"]["withheld"]
            .as_str()
            .unwrap()
            .contains("destroyed"),
        "{second_decided}"
    );

    // The chain, the trees and the checkpoints still verify, without any key.
    let data = server.take_data_dir();
    server.stop().await;
    let copy = copy_of(data.path());
    std::fs::remove_file(copy.path().join("master-key")).unwrap();
    let (passed, out) = verify(copy.path(), None);
    assert!(passed, "{out}");
}

#[tokio::test]
async fn a_tampered_sealed_action_is_never_executed() {
    // Whoever can write the database cannot seal: params put there in clear (a changed
    // amount) are refused as modified, and the approved action is denied at the re-check.
    let upstream = Upstream::start().await;
    let server = TestServer::start(&examples("seed-004"), stripe_to(&upstream)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let (status, pending) = server
        .act(&agent_key, charge_with_secrets(&upstream, 50000))
        .await;
    assert_eq!(status, 202, "{pending}");
    let id = pending["id"].as_str().unwrap().to_string();
    {
        let db = rusqlite::Connection::open(server.data_dir.join("aaf.db")).unwrap();
        let forged = json!({
            "url": format!("http://api.stripe.com:{}/v1/charges", upstream.addr.port()),
            "body": {"amount": 99999999, "currency": "usd"}
        });
        let changed = db
            .execute(
                "UPDATE actions SET params = ?1 WHERE id = ?2",
                rusqlite::params![forged.to_string(), id],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    let (_, action) = server
        .get_json(&format!("/v1/actions/{id}"), ADMIN_TOKEN)
        .await;
    assert!(action["params"].is_null(), "{action}");
    assert!(
        action["withheld"].as_str().unwrap().contains("modified"),
        "{action}"
    );
    let (status, body) = answer(&server, &approver, &id, "approve", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["action"]["status"], "denied", "{body}");
    assert_eq!(
        upstream.count(),
        0,
        "the forged charge reached the upstream"
    );
    server.stop().await;
}

/// Retention (issue 18 section 4; docs/retention.md) with the server's clock moved forward.
#[tokio::test]
async fn retention_removes_payloads_by_class_as_the_clock_moves_and_everything_still_verifies() {
    use crate::common::{policy_dir, ALLOW_ALL};
    let clock = aaf_server::clock::Clock::manual(time::OffsetDateTime::now_utc());
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let mut server = TestServer::start_clocked(policies.path(), clock.clone(), |c| {
        // Applied on demand here; the background worker is the same code on a timer.
        c.retention.enabled = false;
        // A name that resolves to a private address: refused by the connector's SSRF guard.
        c.connectors.http.system_dns = false;
        c.connectors
            .http
            .hosts
            .insert("internal.example".into(), vec!["10.0.0.7".parse().unwrap()]);
    })
    .await;
    let (_, key) = server.create_agent("retained").await;
    let (_, auditor) = server.create_user("carol", "auditor").await;
    let mut searches = Vec::new();
    for i in 0..3 {
        let (status, body) = server
            .act(
                &key,
                json!({"tool": "search", "operation": "query", "params": {"q": format!("{PARAM}-{i}")}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        searches.push(body["id"].as_str().unwrap().to_string());
    }
    // Refused by the connector's SSRF guard: an `action.failed` event (class errors).
    let (status, failed) = server
        .act(
            &key,
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "http://internal.example/admin"}}),
        )
        .await;
    assert_eq!(status, 403, "{failed}");
    let types: Vec<Value> = server
        .audit(None)
        .await
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert!(types.contains(&json!("action.failed")), "{types:?}");

    // Bad rules name their field; auditors read but do not change them.
    for (body, field) in [
        (json!({"rules": {"errors": 0}}), "rules.errors"),
        (json!({"rules": {"errors": 40000}}), "rules.errors"),
        (json!({"rules": {"no_such_class": 3}}), "rules"),
        (json!({"rules": {}, "legal_hold": "  "}), "legal_hold"),
    ] {
        let (status, answer) = server
            .send_json(
                reqwest::Method::PUT,
                "/v1/retention",
                ADMIN_TOKEN,
                body.clone(),
            )
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.to_string().contains(field), "{body}: {answer}");
    }
    let rules = json!({"rules": {"errors": 7, "authorization": 30}});
    let (status, _) = server
        .send_json(
            reqwest::Method::PUT,
            "/v1/retention",
            &auditor,
            rules.clone(),
        )
        .await;
    assert_eq!(status, 403);
    let (status, set) = server
        .send_json(
            reqwest::Method::PUT,
            "/v1/retention",
            ADMIN_TOKEN,
            rules.clone(),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    let (status, got) = server.get_json("/v1/retention", &auditor).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["rules"], rules["rules"], "{got}");
    assert!(got["classes"]["errors"]
        .as_array()
        .unwrap()
        .contains(&json!("action.failed")));

    // Nothing is due yet.
    assert_eq!(run_retention(&server).await["removed"], json!({}));

    // Ten days later: the errors (7 days) go, the decisions (30 days) stay.
    clock.advance(std::time::Duration::from_secs(10 * 86_400));
    let applied = run_retention(&server).await;
    assert_eq!(applied["removed"], json!({"errors": 1}), "{applied}");
    let events = server.audit(None).await;
    let failed_event = events
        .iter()
        .find(|e| e["type"] == "action.failed")
        .unwrap();
    assert!(failed_event["data"].is_null(), "{failed_event}");
    let why = failed_event["payload"]["withheld"].as_str().unwrap();
    assert!(
        why.starts_with("payload removed by retention on ")
            && why.ends_with("under rule errors (7 days)"),
        "{why}"
    );
    assert!(events
        .iter()
        .filter(|e| e["type"] == "action.decided")
        .all(|e| e["data"].is_object()));
    assert_eq!(
        run_retention(&server).await["removed"],
        json!({}),
        "removed twice"
    );

    // A legal hold suspends retention and refuses shredding.
    let held = json!({"rules": {"errors": 7, "authorization": 30}, "legal_hold": "litigation hold 2026-17"});
    let (status, _) = server
        .send_json(reqwest::Method::PUT, "/v1/retention", ADMIN_TOKEN, held)
        .await;
    assert_eq!(status, 200);
    clock.advance(std::time::Duration::from_secs(31 * 86_400));
    let applied = run_retention(&server).await;
    assert_eq!(
        applied["legal_hold"], "litigation hold 2026-17",
        "{applied}"
    );
    assert_eq!(applied["removed"], json!({}));
    let (status, refused) = server
        .post_json(
            "/v1/encryption/shred",
            ADMIN_TOKEN,
            json!({"scope": "action", "action_id": searches[0]}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused.to_string().contains("legal hold"), "{refused}");

    // The hold lifted, the decisions (41 days old by the clock) go too.
    let (status, _) = server
        .send_json(reqwest::Method::PUT, "/v1/retention", ADMIN_TOKEN, rules)
        .await;
    assert_eq!(status, 200);
    let applied = run_retention(&server).await;
    assert_eq!(applied["removed"]["authorization"], 4, "{applied}");
    let events = server.audit(None).await;
    for e in events.iter().filter(|e| e["type"] == "action.decided") {
        assert!(e["data"].is_null(), "{e}");
        assert!(
            e["payload"]["withheld"]
                .as_str()
                .unwrap()
                .contains("under rule authorization (30 days)"),
            "{e}"
        );
    }
    let applied_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "retention.applied")
        .collect();
    assert_eq!(applied_events.len(), 2);
    assert_eq!(applied_events[1]["data"]["count"], 4);
    assert!(events.iter().any(|e| e["type"] == "retention.changed"));

    // The pack of a search still verifies, saying its decision's payload is withheld.
    let (_, checkpoint) = server
        .post_json("/v1/audit/checkpoint", ADMIN_TOKEN, json!({}))
        .await;
    let verifier_key = checkpoint["verifier_key"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let pack = download_pack(&server, &searches[1], dir.path()).await;
    let (ok, out) = aaf_verify_pack(&pack, &verifier_key);
    assert!(ok, "{out}");
    assert!(out.contains("under rule authorization"), "{out}");
    let script = python_pack_verifier(dir.path());
    let (ok, out) = python_verify_pack(&script, &pack, &verifier_key);
    assert!(ok, "{out}");

    // Afterwards the database verifies: chain, tree and checkpoints.
    let data = server.take_data_dir();
    server.stop().await;
    let (passed, out) = verify(data.path(), None);
    assert!(passed, "{out}");
}

async fn run_retention(server: &TestServer) -> Value {
    let (status, body) = server
        .post_json("/v1/retention/run", ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn aaf_encryption_keygen_writes_a_new_master_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("master-key");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_aaf"))
            .args(["encryption", "keygen", "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let first = run();
    assert!(first.status.success(), "{first:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let key = aaf_store::encryption::MasterKey::from_text(&text).unwrap();
    assert!(String::from_utf8_lossy(&first.stdout).contains(key.id()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Never overwritten.
    let second = run();
    assert!(!second.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
}
