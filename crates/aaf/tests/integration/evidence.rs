//! The transparency log end to end (docs/audit.md, "Transparency log"): checkpoints signed
//! by the log key, exported to a directory sink; inclusion proofs of every event and a
//! consistency proof checked with `aaf_core`'s verifiers against leaves computed here from
//! the events as `GET /v1/audit` returns them; bad parameters named; and the tamper matrix
//! on a real database file, with the real `aaf audit verify`, where truncating the chain
//! together with its head (and the database's own checkpoints and tree) is caught only
//! through the exported checkpoints.

use std::path::Path;

use aaf_core::audit::{canonical_event, ChainedEvent};
use aaf_core::evidence::checkpoint::verify_checkpoint;
use aaf_core::evidence::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use serde_json::{json, Value};

use crate::common::{policy_dir, TestServer, ADMIN_TOKEN, ALLOW_ALL};

fn hash(value: &Value) -> [u8; 32] {
    hex::decode(value.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn hashes(value: &Value) -> Vec<[u8; 32]> {
    value.as_array().unwrap().iter().map(hash).collect()
}

/// A server whose checkpoints also go to `sink`, and its policy directory.
async fn server_with_sink(sink: &Path) -> (TestServer, tempfile::TempDir) {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let sink = sink.to_path_buf();
    let server = TestServer::start(policies.path(), move |c| {
        c.evidence.sinks = vec![aaf_server::evidence::SinkConfig::Directory { path: sink }];
    })
    .await;
    (server, policies)
}

async fn act_n(server: &TestServer, key: &str, n: usize) {
    for i in 0..n {
        let (status, body) = server
            .act(
                key,
                json!({"tool": "search", "operation": "query", "params": {"i": i}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn sign(server: &TestServer) -> Value {
    let (status, body) = server
        .post_json("/v1/audit/checkpoint", ADMIN_TOKEN, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn checkpoints_and_proofs_verify_with_the_log_key() {
    let sink = tempfile::tempdir().unwrap();
    let (server, _policies) = server_with_sink(sink.path()).await;
    let (_, key) = server.create_agent("prover").await;
    act_n(&server, &key, 12).await;

    // A checkpoint of the whole chain, signed by the log key, exported as it is.
    let first = sign(&server).await;
    let verifier_key = first["verifier_key"].as_str().unwrap();
    let checkpoint = verify_checkpoint(first["note"].as_str().unwrap(), verifier_key).unwrap();
    let org = first["chain"].as_str().unwrap();
    assert_eq!(checkpoint.origin, format!("aaf-audit/{org}"));
    assert_eq!(checkpoint.size, first["tree_size"].as_u64().unwrap());
    assert_eq!(checkpoint.root, hash(&first["root_hash"]));
    let exported = std::fs::read_to_string(
        sink.path()
            .join(org)
            .join(format!("{}.checkpoint", checkpoint.size)),
    )
    .unwrap();
    assert_eq!(exported, first["note"].as_str().unwrap());
    let (status, latest) = server.get_json("/v1/audit/checkpoint", ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{latest}");
    assert_eq!(latest["note"], first["note"]);

    // Every event is in the tree: its leaf, computed here from the event as the API
    // returns it, is proven to the checkpoint's root.
    let events = server.audit(None).await;
    assert_eq!(events.len() as u64, checkpoint.size);
    for event in &events {
        let chained: ChainedEvent = serde_json::from_value(event.clone()).unwrap();
        let leaf = leaf_hash(&canonical_event(&chained.hashed_event()).unwrap());
        let seq = chained.event.seq;
        let (status, proof) = server
            .get_json(&format!("/v1/audit/proof/inclusion?seq={seq}"), ADMIN_TOKEN)
            .await;
        assert_eq!(status, 200, "{proof}");
        assert_eq!(hash(&proof["leaf_hash"]), leaf, "seq {seq}");
        assert_eq!(proof["tree_size"].as_u64(), Some(checkpoint.size));
        assert_eq!(proof["checkpoint"]["note"], first["note"]);
        verify_inclusion(
            seq - 1,
            checkpoint.size,
            &leaf,
            &hashes(&proof["proof"]),
            &checkpoint.root,
        )
        .unwrap_or_else(|e| panic!("seq {seq}: {e}"));
        // A proof does not verify for another leaf.
        assert!(verify_inclusion(
            seq - 1,
            checkpoint.size,
            &leaf_hash(b"another event"),
            &hashes(&proof["proof"]),
            &checkpoint.root,
        )
        .is_err());
    }

    // The chain grows; the new checkpoint's tree extends the old one.
    act_n(&server, &key, 7).await;
    let second = sign(&server).await;
    let newer = verify_checkpoint(second["note"].as_str().unwrap(), verifier_key).unwrap();
    assert!(newer.size > checkpoint.size);
    let (status, consistency) = server
        .get_json(
            &format!(
                "/v1/audit/proof/consistency?from={}&to={}",
                checkpoint.size, newer.size
            ),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(status, 200, "{consistency}");
    assert_eq!(hash(&consistency["from_root"]), checkpoint.root);
    assert_eq!(hash(&consistency["to_root"]), newer.root);
    verify_consistency(
        checkpoint.size,
        newer.size,
        &checkpoint.root,
        &newer.root,
        &hashes(&consistency["proof"]),
    )
    .unwrap();
    // An inclusion proof in an older tree size names that size's checkpoint.
    let (status, old) = server
        .get_json(
            &format!(
                "/v1/audit/proof/inclusion?seq=2&tree_size={}",
                checkpoint.size
            ),
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(status, 200, "{old}");
    assert_eq!(old["checkpoint"]["note"], first["note"]);

    // Bad parameters: 400 naming the field, 404 for what is beyond the tree.
    let beyond = newer.size + 100;
    for (path, status, field) in [
        ("/v1/audit/proof/inclusion".to_string(), 400, "seq"),
        ("/v1/audit/proof/inclusion?seq=0".to_string(), 400, "seq"),
        ("/v1/audit/proof/inclusion?seq=x".to_string(), 400, "seq"),
        (
            format!("/v1/audit/proof/inclusion?seq=5&tree_size={beyond}"),
            404,
            "tree_size",
        ),
        (
            "/v1/audit/proof/inclusion?seq=9&tree_size=3".to_string(),
            400,
            "seq",
        ),
        (
            "/v1/audit/proof/inclusion?seq=1&tree_size=0".to_string(),
            400,
            "tree_size",
        ),
        (
            "/v1/audit/proof/inclusion?seq=1&size=3".to_string(),
            400,
            "size",
        ),
        ("/v1/audit/proof/consistency".to_string(), 400, "from"),
        (
            "/v1/audit/proof/consistency?from=9&to=3".to_string(),
            400,
            "from",
        ),
        (
            format!("/v1/audit/proof/consistency?from=1&to={beyond}"),
            404,
            "to",
        ),
        (
            "/v1/audit/proof/consistency?from=1&chain=other".to_string(),
            400,
            "chain",
        ),
    ] {
        let (got, body) = server.get_json(&path, ADMIN_TOKEN).await;
        assert_eq!(got, status, "{path}: {body}");
        let named = body["error"]["field"] == field
            || body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field));
        assert!(named, "{path}: the answer does not name {field}: {body}");
    }
    server.stop().await;
}

/// Runs `aaf audit verify` on `data` (with the exported checkpoints in `sink` when given);
/// returns (passed, stdout).
pub(crate) fn verify(data: &Path, sink: Option<&Path>) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aaf"));
    command
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .env_remove("AAF_DATABASE_URL");
    if let Some(sink) = sink {
        command.arg("--checkpoints").arg(sink);
    }
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Copies the data directory (database, WAL, log key) to a new temporary directory.
pub(crate) fn copy_of(data: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(data).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
        }
    }
    copy
}

/// Opens the copy's database as an attacker would: the append-only triggers dropped.
fn attacker(data: &Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(data.join("aaf.db")).unwrap();
    for trigger in [
        "audit_events_no_update",
        "audit_events_no_delete",
        "audit_tree_hashes_no_update",
        "audit_tree_hashes_no_delete",
        "audit_checkpoints_no_update",
        "audit_checkpoints_no_delete",
    ] {
        db.execute(&format!("DROP TRIGGER {trigger}"), []).unwrap();
    }
    db
}

#[tokio::test]
async fn the_tamper_matrix_is_caught_and_a_rewritten_head_only_by_the_exported_checkpoints() {
    let sink = tempfile::tempdir().unwrap();
    let (mut server, _policies) = server_with_sink(sink.path()).await;
    let data = server.take_data_dir();
    let (_, key) = server.create_agent("tampered").await;
    act_n(&server, &key, 10).await;
    let signed = sign(&server).await;
    let org = signed["chain"].as_str().unwrap().to_string();
    let size = signed["tree_size"].as_i64().unwrap();
    server.stop().await;

    // Untouched: everything verifies, the exported checkpoint included.
    let (passed, out) = verify(data.path(), Some(sink.path()));
    assert!(passed, "{out}");
    assert!(
        out.contains(&format!("ok      checkpoint {org}@{size} (")),
        "{out}"
    );

    type Tamper = fn(&rusqlite::Connection, &str, i64);
    let tampers: [(&str, Tamper); 6] = [
        ("change an event", |db, org, _| {
            db.execute(
                "UPDATE audit_events SET data = replace(data, substr(data, 20, 8), '00000000') WHERE org_id = ?1 AND seq = 5",
                [org],
            )
            .unwrap();
        }),
        ("delete an event", |db, org, _| {
            db.execute(
                "DELETE FROM audit_events WHERE org_id = ?1 AND seq = 4",
                [org],
            )
            .unwrap();
        }),
        ("insert an event", |db, org, size| {
            db.execute(
                "INSERT INTO audit_events (org_id, seq, ts, agent_id, action_id, type, data, prev_hash, hash) \
                 SELECT org_id, ?2, ts, agent_id, action_id, type, data, hash, hash FROM audit_events \
                 WHERE org_id = ?1 AND seq = ?3",
                rusqlite::params![org, size + 1, size],
            )
            .unwrap();
        }),
        ("reorder two events", |db, org, _| {
            db.execute_batch(&format!(
                "UPDATE audit_events SET seq = -1 WHERE org_id = '{org}' AND seq = 6; \
                 UPDATE audit_events SET seq = 6 WHERE org_id = '{org}' AND seq = 7; \
                 UPDATE audit_events SET seq = 7 WHERE org_id = '{org}' AND seq = -1;"
            ))
            .unwrap();
        }),
        ("truncate the tail", |db, org, size| {
            db.execute(
                "DELETE FROM audit_events WHERE org_id = ?1 AND seq > ?2",
                rusqlite::params![org, size - 3],
            )
            .unwrap();
        }),
        (
            "truncate the tail and its head, tree and checkpoints",
            |db, org, size| {
                let keep = size - 3;
                db.execute(
                    "DELETE FROM audit_events WHERE org_id = ?1 AND seq > ?2",
                    rusqlite::params![org, keep],
                )
                .unwrap();
                db.execute(
                    "UPDATE audit_heads SET seq = ?2, hash = (SELECT hash FROM audit_events \
                 WHERE org_id = ?1 AND seq = ?2) WHERE org_id = ?1",
                    rusqlite::params![org, keep],
                )
                .unwrap();
                for table in ["audit_checkpoints", "audit_trees", "audit_tree_hashes"] {
                    db.execute(&format!("DELETE FROM {table} WHERE org_id = ?1"), [org])
                        .unwrap();
                }
            },
        ),
    ];
    for (what, tamper) in tampers {
        let copy = copy_of(data.path());
        {
            let db = attacker(copy.path());
            tamper(&db, &org, size);
        }
        let (passed, out) = verify(copy.path(), Some(sink.path()));
        assert!(!passed, "{what}: not caught\n{out}");
        assert!(out.contains("BROKEN"), "{what}: {out}");
        if what.starts_with("truncate the tail and its head") {
            // The database alone is consistent again: only the exported checkpoint,
            // signed by the log key before the attack, shows that events are gone.
            let (alone, out_alone) = verify(copy.path(), None);
            assert!(
                alone,
                "{what}: the database alone should look intact\n{out_alone}"
            );
            assert!(
                out.contains(&format!("BROKEN  checkpoint {org}@{size} (")),
                "{what}: {out}"
            );
            assert!(out.contains("events were removed"), "{what}: {out}");
        }
    }
}

/// The first ```python block of docs/proof-packs.md, written to `dir`.
pub(crate) fn python_pack_verifier(dir: &Path) -> std::path::PathBuf {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/proof-packs.md"),
    )
    .unwrap();
    let start = doc.find("```python\n").expect("no python block") + "```python\n".len();
    let end = start
        + doc[start..]
            .find("\n```")
            .expect("unterminated python block");
    let script = dir.join("verify_pack.py");
    std::fs::write(&script, &doc[start..end]).unwrap();
    script
}

/// Runs `aaf proof verify`; returns (passed, stdout).
pub(crate) fn aaf_verify_pack(pack: &Path, key: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aaf"))
        .args(["proof", "verify"])
        .arg(pack)
        .args(["--verifier-key", key])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Runs the Python verifier; returns (passed, stdout and stderr).
pub(crate) fn python_verify_pack(script: &Path, pack: &Path, key: &str) -> (bool, String) {
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(pack)
        .arg(key)
        .output()
        .expect("python3 must be installed (CI installs it with the cryptography package)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn proof_packs_of_allowed_denied_and_approved_actions_verify_with_both_verifiers() {
    use crate::approvals::{answer, charge, stripe_to};
    use crate::common::{examples, Upstream};

    let upstream = Upstream::start().await;
    let server = TestServer::start(&examples("seed-004"), stripe_to(&upstream)).await;
    let (_, agent_key) = server.create_agent("billing-agent").await;
    let (_, approver) = server.create_user("alice", "approver").await;
    let (_, other_approver) = server.create_user("bob", "approver").await;
    let (_, auditor) = server.create_user("carol", "auditor").await;

    // Allowed and executed; denied (a private network); approved, then executed.
    let (status, allowed) = server.act(&agent_key, charge(&upstream, 500)).await;
    assert_eq!(status, 200, "{allowed}");
    let (status, denied) = server
        .act(
            &agent_key,
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "http://10.0.0.7/admin"}}),
        )
        .await;
    assert_eq!(status, 403, "{denied}");
    let (status, pending) = server.act(&agent_key, charge(&upstream, 50000)).await;
    assert_eq!(status, 202, "{pending}");
    let approved_id = pending["id"].as_str().unwrap().to_string();
    let (status, body) = answer(
        &server,
        &approver,
        &approved_id,
        "approve",
        json!({"comment": "ok"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, done) = server
        .get_json(&format!("/v1/actions/{approved_id}?wait=10"), ADMIN_TOKEN)
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "executed", "{done}");

    let (_, checkpoint) = server.get_json("/v1/audit/checkpoint", ADMIN_TOKEN).await;
    let verifier_key = checkpoint["verifier_key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let script = python_pack_verifier(dir.path());
    let cases = [
        (
            allowed["id"].as_str().unwrap().to_string(),
            "allowed",
            ADMIN_TOKEN.to_string(),
        ),
        (
            denied["id"].as_str().unwrap().to_string(),
            "denied",
            auditor.clone(),
        ),
        (approved_id.clone(), "approved", approver.clone()),
    ];
    for (id, what, token) in &cases {
        let response = server
            .client
            .get(server.url(&format!("/v1/proof-pack/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{what}");
        assert_eq!(response.headers()["content-type"], "application/zip");
        let bytes = response.bytes().await.unwrap();
        let pack = dir.path().join(format!("{what}.zip"));
        std::fs::write(&pack, &bytes).unwrap();
        // The log key of the pack is the server's (read once the first pack signed it).
        let key = if verifier_key.is_empty() {
            let (_, c) = server.get_json("/v1/audit/checkpoint", ADMIN_TOKEN).await;
            c["verifier_key"].as_str().unwrap().to_string()
        } else {
            verifier_key.clone()
        };

        let (passed, out) = aaf_verify_pack(&pack, &key);
        assert!(passed, "{what}: {out}");
        assert!(
            out.contains("proven      the checkpoint of"),
            "{what}: {out}"
        );
        assert!(
            out.contains("holds the policy sources and data of revision"),
            "{what}: {out}"
        );
        assert!(
            out.contains("action-record.json's id, tool"),
            "{what}: {out}"
        );
        let (passed, out_py) = python_verify_pack(&script, &pack, &key);
        assert!(passed, "{what} (python): {out_py}");
        assert!(
            out_py.contains("proven policy sources of revision"),
            "{what}: {out_py}"
        );
        match *what {
            "allowed" => assert!(out_py.contains("action.executed is in the log"), "{out_py}"),
            "denied" => assert!(out_py.contains("action.decided is in the log"), "{out_py}"),
            _ => {
                assert!(
                    out_py.contains("approval.approved is in the log"),
                    "{out_py}"
                );
                assert!(out_py.contains("action.executed is in the log"), "{out_py}");
                assert!(
                    out.contains("is the proven approval.approved event"),
                    "{out}"
                );
            }
        }

        // One changed byte anywhere in a file's content: both verifiers refuse the pack.
        let mut files = aaf_pack_files(&bytes);
        let target = files
            .keys()
            .find(|k| k.starts_with("events/"))
            .unwrap()
            .clone();
        let content = files.get_mut(&target).unwrap();
        let at = content.len() / 2;
        content[at] ^= 0x01;
        let tampered = dir.path().join(format!("{what}-tampered.zip"));
        std::fs::write(
            &tampered,
            aaf_server::evidence::pack::zip_files(&files).unwrap(),
        )
        .unwrap();
        let (passed, out) = aaf_verify_pack(&tampered, &key);
        assert!(!passed, "{what}: a changed byte passed: {out}");
        assert!(out.contains(&format!("{target} was changed")), "{out}");
        let (passed, out_py) = python_verify_pack(&script, &tampered, &key);
        assert!(!passed, "{what} (python): a changed byte passed: {out_py}");
        // Checked with another key, the pack proves nothing.
        let other = aaf_core::evidence::checkpoint::LogKey::generate("aaf-audit").unwrap();
        let (passed, out) = aaf_verify_pack(&pack, &other.verifier_key());
        assert!(!passed, "{what}: another key passed: {out}");
    }

    // Who may read a pack: not an approver who did not answer, not an unknown action.
    let (status, body) = server
        .get_json(&format!("/v1/proof-pack/{approved_id}"), &other_approver)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .get_json(&format!("/v1/proof-pack/{}", cases[0].0), &approver)
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = server
        .get_json(
            "/v1/proof-pack/0193c1f2-0000-7000-8000-000000000000",
            ADMIN_TOKEN,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("action_id"),
        "{body}"
    );
    server.stop().await;
}

/// The files of a zip, read with the same reader `aaf proof verify` uses.
fn aaf_pack_files(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.zip");
    std::fs::write(&path, bytes).unwrap();
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        files.insert(name, content);
    }
    files
}

/// A witness speaking C2SP tlog-witness for the test: `add-checkpoint` checks the log's
/// signature, the old size against what it cosigned last (409 `text/x.tlog.size` when they
/// differ), the consistency proof from it (422 when it does not verify), then records the
/// checkpoint and cosigns it with its own key.
/// What the witness cosigned last, per origin: `(tree size, root)`.
type Cosigned =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (u64, [u8; 32])>>>;

#[derive(Clone)]
struct Witness {
    log_key: std::sync::Arc<String>,
    own: std::sync::Arc<aaf_core::evidence::checkpoint::LogKey>,
    latest: Cosigned,
    requests: std::sync::Arc<std::sync::Mutex<Vec<(u64, u16)>>>,
}

async fn add_checkpoint(
    axum::extract::State(w): axum::extract::State<Witness>,
    body: String,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let answer = |status: u16, content_type: &str, text: String, w: &Witness, old: u64| {
        w.requests.lock().unwrap().push((old, status));
        (
            axum::http::StatusCode::from_u16(status).unwrap(),
            [(axum::http::header::CONTENT_TYPE, content_type.to_string())],
            text,
        )
            .into_response()
    };
    let (head, note) = body.split_once("\n\n").unwrap();
    let mut lines = head.lines();
    let old: u64 = lines
        .next()
        .unwrap()
        .strip_prefix("old ")
        .unwrap()
        .parse()
        .unwrap();
    let proof: Vec<[u8; 32]> = lines
        .map(|l| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(l)
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    let Ok(checkpoint) = verify_checkpoint(note, &w.log_key) else {
        return answer(403, "text/plain", "bad signature".into(), &w, old);
    };
    let known = w.latest.lock().unwrap().get(&checkpoint.origin).copied();
    let (size, root) = known.unwrap_or((0, [0; 32]));
    if old != size {
        return answer(409, "text/x.tlog.size", format!("{size}\n"), &w, old);
    }
    if old > 0 && verify_consistency(old, checkpoint.size, &root, &checkpoint.root, &proof).is_err()
    {
        return answer(422, "text/plain", "bad proof".into(), &w, old);
    }
    w.latest.lock().unwrap().insert(
        checkpoint.origin.clone(),
        (checkpoint.size, checkpoint.root),
    );
    let cosigned = w.own.sign(&checkpoint).unwrap();
    let signature = cosigned.split_once("\n\n").unwrap().1.to_string();
    answer(200, "text/plain; charset=utf-8", signature, &w, old)
}

#[tokio::test]
async fn checkpoints_are_cosigned_by_a_c2sp_witness_with_consistency_proofs() {
    // The log key, made beforehand and given to the witness out of band.
    let keys = tempfile::tempdir().unwrap();
    let log_key = aaf_core::evidence::checkpoint::LogKey::generate("aaf.test/audit").unwrap();
    let key_file = keys.path().join("log.key");
    std::fs::write(&key_file, log_key.to_private_key()).unwrap();
    let witness = Witness {
        log_key: std::sync::Arc::new(log_key.verifier_key()),
        own: std::sync::Arc::new(
            aaf_core::evidence::checkpoint::LogKey::generate("witness.test").unwrap(),
        ),
        latest: Default::default(),
        requests: Default::default(),
    };
    let app = axum::Router::new()
        .route("/add-checkpoint", axum::routing::post(add_checkpoint))
        .with_state(witness.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let config = move |c: &mut aaf_server::config::Config| {
        c.evidence.log_key_file = Some(key_file);
        c.evidence.sinks = vec![aaf_server::evidence::SinkConfig::Witness { url }];
    };
    let mut server = TestServer::start(policies.path(), config.clone()).await;
    let data = server.take_data_dir();
    let (_, key) = server.create_agent("witnessed").await;
    let mut signed = Vec::new();
    for n in [3, 2, 4] {
        act_n(&server, &key, n).await;
        signed.push(sign(&server).await);
    }
    server.stop().await;
    let before_restart = witness.requests.lock().unwrap().len();

    // A restarted node does not know what the witness cosigned: it learns it from the 409.
    let server = TestServer::start_in(data.path(), policies.path(), config).await;
    act_n(&server, &key, 2).await;
    let last = sign(&server).await;
    let origin = format!("aaf.test/audit/{}", last["chain"].as_str().unwrap());
    let latest = witness.latest.lock().unwrap().get(&origin).copied();
    assert_eq!(
        latest.map(|(size, root)| (size, hex::encode(root))),
        Some((
            last["tree_size"].as_u64().unwrap(),
            last["root_hash"].as_str().unwrap().to_string()
        )),
        "the witness holds the latest checkpoint"
    );
    let requests = witness.requests.lock().unwrap().clone();
    // Before the restart: every checkpoint accepted from the size cosigned before it, the
    // consistency proof checked by the witness (never a 422, never a bad signature).
    assert!(
        requests[..before_restart].iter().all(|(_, s)| *s == 200),
        "{requests:?}"
    );
    for pair in signed.windows(2) {
        let from = pair[0]["tree_size"].as_u64().unwrap();
        assert!(
            requests.contains(&(from, 200)),
            "no submission from {from}: {requests:?}"
        );
    }
    // After: once from 0 (409 naming the size), then from that size.
    let after = &requests[before_restart..];
    let third = signed[2]["tree_size"].as_u64().unwrap();
    assert_eq!(after.first(), Some(&(0, 409)), "{requests:?}");
    assert!(after.contains(&(third, 200)), "{requests:?}");
    assert!(
        !requests.iter().any(|(_, s)| *s == 422 || *s == 403),
        "{requests:?}"
    );
    server.stop().await;
}

/// An HTTP receiver of decision-log batches that refuses the first `fail` of them (500).
#[derive(Clone, Default)]
struct Receiver {
    fail: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    entries: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

async fn receive_logs(
    axum::extract::State(r): axum::extract::State<Receiver>,
    axum::Json(batch): axum::Json<Vec<Value>>,
) -> axum::http::StatusCode {
    use std::sync::atomic::Ordering;
    if r.fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.entries.lock().unwrap().extend(batch);
    axum::http::StatusCode::NO_CONTENT
}

#[tokio::test]
async fn decisions_are_exported_in_the_opa_decision_log_format_with_retries() {
    use aaf_server::evidence::decision_log::DecisionLogSink;
    use std::collections::BTreeSet;

    let receiver = Receiver::default();
    receiver.fail.store(2, std::sync::atomic::Ordering::SeqCst);
    let app = axum::Router::new()
        .route("/logs", axum::routing::post(receive_logs))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/logs", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("decisions.jsonl");

    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let sinks = vec![
        DecisionLogSink::File { path: file.clone() },
        DecisionLogSink::Http {
            url,
            headers: Default::default(),
        },
    ];
    let config = move |c: &mut aaf_server::config::Config| {
        c.evidence.decision_log.sinks = sinks;
        c.evidence.decision_log.interval_ms = 100;
        c.evidence.decision_log.max_backoff_ms = 200;
        c.evidence.decision_log.batch_size = 3;
    };
    let mut server = TestServer::start(policies.path(), config.clone()).await;
    let data = server.take_data_dir();
    let (agent_id, key) = server.create_agent("logged").await;
    let mut ids = BTreeSet::new();
    for i in 0..7 {
        let (status, body) = server
            .act(&key, json!({"tool": "search", "operation": "query", "params": {"i": i, "api_key": "sk_live_abcdefghijklmnopqrstuvwx"}}))
            .await;
        assert_eq!(status, 200, "{body}");
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    let file_ids = |file: &Path| -> Vec<Value> {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let decision_ids = |entries: &[Value]| -> BTreeSet<String> {
        entries
            .iter()
            .map(|e| e["decision_id"].as_str().unwrap().to_string())
            .collect()
    };
    crate::common::within("every decision exported to both sinks", async {
        while decision_ids(&file_ids(&file)) != ids
            || decision_ids(&receiver.entries.lock().unwrap()) != ids
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    server.stop().await;

    // The OPA fields, AAF's own, redacted as stored.
    let entries = file_ids(&file);
    assert_eq!(entries.len(), 7, "each decision once in the file");
    let first = &entries[0];
    assert_eq!(first["path"], "aaf/decision");
    assert_eq!(first["result"]["decision"], "allow");
    assert_eq!(first["input"]["tool"], "search");
    assert_eq!(first["input"]["agent_id"], agent_id.as_str());
    assert_eq!(first["input"]["params"]["api_key"], "[REDACTED]", "{first}");
    assert_eq!(first["labels"]["app"], "aaf");
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(first["bundles"]["aaf"]["revision"].is_string());
    assert!(first["aaf"]["seq"].as_u64().unwrap() > 0);
    // The HTTP sink refused twice and was retried: every decision arrived.
    assert_eq!(receiver.fail.load(std::sync::atomic::Ordering::SeqCst), 0);

    // A restart goes on from the recorded cursors: new decisions only.
    let server = TestServer::start_in(data.path(), policies.path(), config).await;
    let (status, body) = server
        .act(&key, json!({"tool": "search", "operation": "query"}))
        .await;
    assert_eq!(status, 200, "{body}");
    ids.insert(body["id"].as_str().unwrap().to_string());
    crate::common::within("the new decision exported after the restart", async {
        while decision_ids(&file_ids(&file)) != ids {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        file_ids(&file).len(),
        8,
        "nothing written twice after the restart"
    );
    server.stop().await;
}

#[tokio::test]
async fn checkpoints_are_posted_to_an_http_sink_with_its_headers() {
    type Posted = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, String, String)>>>;
    let posted: Posted = Default::default();
    async fn receive(
        axum::extract::State(posted): axum::extract::State<Posted>,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> axum::http::StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        posted.lock().unwrap().push((
            header("authorization"),
            header("content-type").unwrap_or_default(),
            body,
        ));
        axum::http::StatusCode::ACCEPTED
    }
    let app = axum::Router::new()
        .route("/checkpoints", axum::routing::post(receive))
        .with_state(posted.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/checkpoints", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), move |c| {
        c.evidence.sinks = vec![aaf_server::evidence::SinkConfig::Http {
            url,
            headers: [("Authorization".to_string(), "Bearer sink-token".to_string())].into(),
        }];
    })
    .await;
    let (_, key) = server.create_agent("posted").await;
    act_n(&server, &key, 2).await;
    let signed = sign(&server).await;
    let posted = posted.lock().unwrap().clone();
    let last = posted.last().expect("nothing was posted to the sink");
    assert_eq!(last.0.as_deref(), Some("Bearer sink-token"));
    assert_eq!(last.1, "text/plain; charset=utf-8");
    assert_eq!(last.2, signed["note"].as_str().unwrap());
    server.stop().await;
}

#[tokio::test]
async fn the_evidence_of_a_period_and_an_agent_verifies_with_both_verifiers() {
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let server = TestServer::start(policies.path(), |_| {}).await;
    let (agent_id, key) = server.create_agent("watched").await;
    let (_, other_key) = server.create_agent("other").await;
    let from = aaf_server::time::now_rfc3339();
    act_n(&server, &key, 3).await;
    // A checkpoint in the period, then more events: the pack proves the later tree extends it.
    sign(&server).await;
    act_n(&server, &key, 2).await;
    act_n(&server, &other_key, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let script = python_pack_verifier(dir.path());
    let (_, latest) = server.get_json("/v1/audit/checkpoint", ADMIN_TOKEN).await;
    let verifier_key = latest["verifier_key"].as_str().unwrap().to_string();

    for (agent, expected_events) in [(Some(agent_id.as_str()), 5), (None, 7)] {
        let mut path = format!("/v1/evidence?from={}", from.replace(':', "%3A"));
        if let Some(agent) = agent {
            path.push_str(&format!("&agent_id={agent}"));
        }
        let response = server
            .client
            .get(server.url(&path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let bytes = response.bytes().await.unwrap();
        let files = aaf_pack_files(&bytes);
        let events = files.keys().filter(|k| k.starts_with("events/")).count();
        assert!(events >= expected_events, "{path}: {events} events");
        if agent.is_some() {
            assert_eq!(
                events, expected_events,
                "only the agent's action.decided events"
            );
        }
        assert!(files.contains_key("checkpoints/first.note"), "{path}");
        let pack = dir.path().join("period.zip");
        std::fs::write(&pack, &bytes).unwrap();
        let (passed, out) = aaf_verify_pack(&pack, &verifier_key);
        assert!(passed, "{path}: {out}");
        assert!(out.contains("is a prefix of the log at tree size"), "{out}");
        assert!(
            out.contains("not proven  that the pack holds every event"),
            "{out}"
        );
        let (passed, out_py) = python_verify_pack(&script, &pack, &verifier_key);
        assert!(passed, "{path} (python): {out_py}");
        assert!(
            out_py.contains("is a prefix of the log at size"),
            "{out_py}"
        );
        // A consistency proof changed by one byte fails both.
        let mut files = files;
        let mut manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let proof = manifest["consistency"]["proof"][0]
            .as_str()
            .unwrap()
            .to_string();
        let flipped = format!(
            "{}{}",
            if proof.starts_with('0') { "1" } else { "0" },
            &proof[1..]
        );
        manifest["consistency"]["proof"][0] = json!(flipped);
        files.insert(
            "manifest.json".into(),
            serde_json::to_vec(&manifest).unwrap(),
        );
        let tampered = dir.path().join("period-tampered.zip");
        std::fs::write(
            &tampered,
            aaf_server::evidence::pack::zip_files(&files).unwrap(),
        )
        .unwrap();
        let (passed, out) = aaf_verify_pack(&tampered, &verifier_key);
        assert!(!passed, "a changed consistency proof passed: {out}");
        let (passed, out_py) = python_verify_pack(&script, &tampered, &verifier_key);
        assert!(
            !passed,
            "a changed consistency proof passed (python): {out_py}"
        );
    }

    // Bad parameters.
    for (query, status, field) in [
        ("from=yesterday", 400, "from"),
        (
            "from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
            400,
            "to",
        ),
        ("agent_id=nobody", 404, "agent_id"),
        (
            "from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z",
            404,
            "from",
        ),
        ("since=2020-01-01T00:00:00Z", 400, "since"),
    ] {
        let (got, body) = server
            .get_json(&format!("/v1/evidence?{query}"), ADMIN_TOKEN)
            .await;
        assert_eq!(got, status, "{query}: {body}");
        let named = body["error"]["field"] == field
            || body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(field));
        assert!(named, "{query}: {body}");
    }
    server.stop().await;
}
