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
        let leaf = leaf_hash(&canonical_event(&chained.event).unwrap());
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
fn verify(data: &Path, sink: Option<&Path>) -> (bool, String) {
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
fn copy_of(data: &Path) -> tempfile::TempDir {
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
                "UPDATE audit_events SET data = replace(data, 'query', 'delete') WHERE org_id = ?1 AND seq = 5",
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
