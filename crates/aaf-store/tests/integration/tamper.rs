//! Tampering with a real database through a separate raw connection, as an attacker with
//! the SQLite file or the PostgreSQL owner's password would: every kind of change is
//! reported at the first bad seq, on both backends.

use aaf_core::audit::{event_hash, AuditEvent, ChainError, ChainErrorKind};
use aaf_store::{NewEvent, Org, Store, WriteUnit};
use serde_json::json;

use crate::common::{action_unit, assert_all_chains_verify, org_with_agent, Raw, TestDb, Val};

/// A database with two orgs; `acme` has 3 setup events + 2 * 10 action events = seq 1..=23.
async fn setup(db: TestDb) -> (TestDb, Org, Org, Raw) {
    let (org, agent) = org_with_agent(&db.store, "acme").await;
    let (other, other_agent) = org_with_agent(&db.store, "globex").await;
    let units: Vec<_> = (0..10)
        .flat_map(|i| {
            [
                action_unit(&org, &agent, &format!("a{i}"), i),
                action_unit(&other, &other_agent, &format!("b{i}"), i),
            ]
        })
        .collect();
    db.store.commit(&units).await.unwrap();
    assert_all_chains_verify(&db.store).await;
    let mut raw = db.raw().await;
    // The append-only triggers stop mistakes, not someone who has the file.
    raw.drop_append_only_triggers().await;
    (db, org, other, raw)
}

/// Verifies all chains: the untouched org must verify, the tampered one must fail; returns
/// the failure.
async fn broken_chain(store: &Store, tampered: &Org, untouched: &Org) -> ChainError {
    let results = store.verify_audit().await.unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    let mut failure = None;
    for result in results {
        match result {
            Ok(summary) => assert_eq!(summary.org_id, untouched.id, "tampered chain verified"),
            Err(e) => {
                assert_eq!(e.org_id, tampered.id, "untouched chain failed: {e}");
                failure = Some(e);
            }
        }
    }
    let failure = failure.expect("tampering was not detected");
    println!("detected: {failure}");
    assert!(
        failure
            .to_string()
            .contains(&format!("broken at seq {}", failure.seq)),
        "{failure}"
    );
    failure
}

/// Runs `sql` with the org's id as its one bind value.
async fn exec(raw: &mut Raw, sql: &str, org: &Org) {
    raw.exec(sql, &[(&org.id).into()]).await;
}

both_backends!(changed_event_data_is_detected_at_its_seq);
async fn changed_event_data_is_detected_at_its_seq(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    exec(
        &mut raw,
        r#"UPDATE audit_events SET data = '{"decision":"deny"}' WHERE org_id = ? AND seq = 9"#,
        &org,
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 9);
    assert!(matches!(e.kind, ChainErrorKind::HashMismatch { .. }), "{e}");
}

both_backends!(stored_data_is_the_canonical_form);
async fn stored_data_is_the_canonical_form(db: TestDb) {
    // What is stored is byte for byte what is hashed: RFC 8785, keys sorted, `1.0` as `1`.
    let (_db, org, _other, mut raw) = setup(db).await;
    let data: String = raw
        .scalar(
            "SELECT data FROM audit_events WHERE org_id = ? AND seq = 10",
            &[(&org.id).into()],
        )
        .await;
    // Format 2: the data column holds the committed data, whose commitment is over the
    // salted canonical payload stored beside it (in clear here: no master key).
    let commitment = aaf_core::evidence::payload::commitment_of(&data)
        .unwrap_or_else(|| panic!("not committed data: {data}"));
    let payload: String = raw
        .scalar(
            "SELECT payload FROM audit_events WHERE org_id = ? AND seq = 10",
            &[(&org.id).into()],
        )
        .await;
    use base64::Engine as _;
    let plain = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.strip_prefix("clear1.").unwrap())
        .unwrap();
    let (salt, canonical) = plain.split_at(aaf_core::evidence::payload::SALT_LEN);
    assert_eq!(
        std::str::from_utf8(canonical).unwrap(),
        r#"{"decision":"allow","n":3,"one":1,"reason":"ok","score":0.5}"#
    );
    assert_eq!(
        aaf_core::evidence::payload::commitment(salt.try_into().unwrap(), canonical),
        commitment
    );
}

both_backends!(reformatted_data_is_detected);
async fn reformatted_data_is_detected(db: TestDb) {
    // The hash covers the parsed value, so other key order and spacing hash alike; but the
    // stored text must be the canonical bytes, so a rewrite of the text is reported.
    let (db, org, other, mut raw) = setup(db).await;
    let data: String = raw
        .scalar(
            "SELECT data FROM audit_events WHERE org_id = ? AND seq = 9",
            &[(&org.id).into()],
        )
        .await;
    let value: serde_json::Value = serde_json::from_str(&data).unwrap();
    let mut entries: Vec<_> = value.as_object().unwrap().iter().collect();
    entries.reverse();
    let reordered = format!(
        "{{ {} }}",
        entries
            .iter()
            .map(|(k, v)| format!("{:?} : {}", k, v))
            .collect::<Vec<_>>()
            .join(" , ")
    );
    assert_ne!(reordered, data);
    raw.exec(
        "UPDATE audit_events SET data = ? WHERE org_id = ? AND seq = 9",
        &[(&reordered).into(), (&org.id).into()],
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 9);
    assert!(matches!(e.kind, ChainErrorKind::NotCanonical { .. }), "{e}");
}

both_backends!(duplicated_member_in_front_is_detected);
async fn duplicated_member_in_front_is_detected(db: TestDb) {
    // `{"payload_sha256":"<forged>","payload_sha256":"<genuine>"}`: serde_json reads the last
    // member (so the hash matched the genuine commitment), SQLite's json_extract and others
    // the first, which would point readers at another payload.
    let (db, org, other, mut raw) = setup(db).await;
    let denied = NewEvent {
        org_id: org.id.clone(),
        ts: "2026-11-21T05:35:00.000000Z".into(),
        agent_id: None,
        action_id: Some("denied-1".into()),
        event_type: "action.decided".into(),
        data: json!({"decision": "deny", "reason": "card number"}),
    };
    db.store
        .commit(&[WriteUnit {
            mutations: Vec::new(),
            action: None,
            events: vec![denied],
        }])
        .await
        .unwrap();
    assert_all_chains_verify(&db.store).await;
    let original: String = raw
        .scalar(
            "SELECT data FROM audit_events WHERE org_id = ? AND seq = 24",
            &[(&org.id).into()],
        )
        .await;
    let forged = "0".repeat(64);
    raw.exec(
        "UPDATE audit_events SET data = ? WHERE org_id = ? AND seq = 24",
        &[
            (&format!(r#"{{"payload_sha256":"{forged}",{}"#, &original[1..])).into(),
            (&org.id).into(),
        ],
    )
    .await;
    if let Raw::Sqlite(_) = raw {
        let seen: String = raw
            .scalar(
                "SELECT json_extract(data, '$.payload_sha256') FROM audit_events WHERE org_id = ? AND seq = 24",
                &[(&org.id).into()],
            )
            .await;
        assert_eq!(seen, forged);
    }
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 24);
    assert!(matches!(e.kind, ChainErrorKind::NotCanonical { .. }), "{e}");
}

both_backends!(number_changed_beyond_double_precision_is_detected);
async fn number_changed_beyond_double_precision_is_detected(db: TestDb) {
    // 1e21 is stored as `1e+21`; `1000000000000000000001` parses to the same double, so it
    // hashed alike and the change passed.
    let (db, org, other, mut raw) = setup(db).await;
    let event = NewEvent {
        org_id: org.id.clone(),
        ts: "2026-11-21T05:35:00.000000Z".into(),
        agent_id: None,
        action_id: Some("big-1".into()),
        event_type: "action.executed".into(),
        data: json!({"amount": 1e21}),
    };
    db.store
        .commit(&[WriteUnit {
            mutations: Vec::new(),
            action: None,
            events: vec![event],
        }])
        .await
        .unwrap();
    assert_all_chains_verify(&db.store).await;
    for (changed, stored_form_only) in [
        (r#"{"amount":1000000000000000000001}"#, true),
        (r#"{"amount":4000000000000000014}"#, false),
    ] {
        raw.exec(
            "UPDATE audit_events SET data = ? WHERE org_id = ? AND seq = 24",
            &[changed.to_string().into(), (&org.id).into()],
        )
        .await;
        let e = broken_chain(&db.store, &org, &other).await;
        assert_eq!(e.seq, 24);
        if stored_form_only {
            assert!(matches!(e.kind, ChainErrorKind::NotCanonical { .. }), "{e}");
        } else {
            // Verified as an event of an earlier version (number rounded), the hash no
            // longer matches.
            assert!(matches!(e.kind, ChainErrorKind::HashMismatch { .. }), "{e}");
        }
    }
    // An event holding such an integer is never written.
    let refused = NewEvent {
        org_id: org.id.clone(),
        ts: "2026-11-21T05:35:00.000000Z".into(),
        agent_id: None,
        action_id: Some("big-2".into()),
        event_type: "action.executed".into(),
        data: json!({"amount": 4_000_000_000_000_000_014u64}),
    };
    let err = db
        .store
        .commit(&[WriteUnit {
            mutations: Vec::new(),
            action: None,
            events: vec![refused],
        }])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("4000000000000000014"), "{err}");
}

both_backends!(changed_timestamp_or_type_is_detected);
async fn changed_timestamp_or_type_is_detected(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    exec(
        &mut raw,
        "UPDATE audit_events SET type = 'action.failed' WHERE org_id = ? AND seq = 12",
        &org,
    )
    .await;
    exec(
        &mut raw,
        "UPDATE audit_events SET ts = '2020-01-01T00:00:00.000000Z' WHERE org_id = ? AND seq = 15",
        &org,
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 12);
}

both_backends!(deleted_middle_event_is_detected);
async fn deleted_middle_event_is_detected(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    exec(
        &mut raw,
        "DELETE FROM audit_events WHERE org_id = ? AND seq = 7",
        &org,
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 7);
    assert_eq!(e.kind, ChainErrorKind::Missing { found: 8 });
}

both_backends!(deleted_last_events_are_detected_by_the_head);
async fn deleted_last_events_are_detected_by_the_head(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    exec(
        &mut raw,
        "DELETE FROM audit_events WHERE org_id = ? AND seq >= 22",
        &org,
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 22);
    assert_eq!(
        e.kind,
        ChainErrorKind::Truncated {
            last_seq: 21,
            head_seq: 23
        }
    );
}

both_backends!(deleted_chain_is_detected_by_the_head);
async fn deleted_chain_is_detected_by_the_head(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    exec(&mut raw, "DELETE FROM audit_events WHERE org_id = ?", &org).await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 1);
    assert!(
        matches!(e.kind, ChainErrorKind::Truncated { last_seq: 0, .. }),
        "{e}"
    );
}

both_backends!(deleted_chain_and_head_are_detected);
async fn deleted_chain_and_head_are_detected(db: TestDb) {
    // Every organisation's chain starts with its org.created event, so an organisation
    // without events and head lost its chain.
    let (db, org, other, mut raw) = setup(db).await;
    exec(&mut raw, "DELETE FROM audit_events WHERE org_id = ?", &org).await;
    exec(&mut raw, "DELETE FROM audit_heads WHERE org_id = ?", &org).await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 1);
    assert_eq!(e.kind, ChainErrorKind::ChainMissing);
    assert!(e.to_string().contains(&org.id), "{e}");
    assert!(e.to_string().contains("deleted"), "{e}");
}

both_backends!(deleted_head_is_detected);
async fn deleted_head_is_detected(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    exec(&mut raw, "DELETE FROM audit_heads WHERE org_id = ?", &org).await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.kind, ChainErrorKind::HeadMissing { last_seq: 23 });
}

both_backends!(forged_event_with_renumbering_is_detected);
async fn forged_event_with_renumbering_is_detected(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    // Make room at seq 10 by renumbering 10.. to 11.. (in two steps to avoid key clashes).
    exec(
        &mut raw,
        "UPDATE audit_events SET seq = seq + 1000 WHERE org_id = ? AND seq >= 10",
        &org,
    )
    .await;
    exec(
        &mut raw,
        "UPDATE audit_events SET seq = seq - 999 WHERE org_id = ? AND seq >= 1000",
        &org,
    )
    .await;
    // Forge a correctly hashed event at seq 10 linked to seq 9, and move the head.
    let prev: String = raw
        .scalar(
            "SELECT hash FROM audit_events WHERE org_id = ? AND seq = 9",
            &[(&org.id).into()],
        )
        .await;
    let prev = aaf_core::audit::hex32::parse(&prev).unwrap();
    let forged = AuditEvent {
        seq: 10,
        ts: "2026-11-21T05:35:00.000000Z".into(),
        org_id: org.id.clone(),
        agent_id: None,
        action_id: None,
        event_type: "action.decided".into(),
        data: json!({"decision": "allow", "forged": true}),
    };
    let hash = event_hash(&prev, &forged).unwrap();
    raw.exec(
        "INSERT INTO audit_events (org_id, seq, ts, agent_id, action_id, type, data, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &[
            (&org.id).into(),
            Val::Int(10),
            (&forged.ts).into(),
            Val::Null,
            Val::Null,
            (&forged.event_type).into(),
            forged.data.to_string().into(),
            hex::encode(prev).into(),
            hex::encode(hash).into(),
        ],
    )
    .await;
    exec(
        &mut raw,
        "UPDATE audit_heads SET seq = seq + 1 WHERE org_id = ?",
        &org,
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    // The forged event itself is consistent; the next one no longer links to it.
    assert_eq!(e.seq, 11);
    assert!(
        matches!(e.kind, ChainErrorKind::PrevHashMismatch { .. }),
        "{e}"
    );
}

both_backends!(swapped_events_are_detected);
async fn swapped_events_are_detected(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    exec(
        &mut raw,
        "UPDATE audit_events SET seq = -5 WHERE org_id = ? AND seq = 5",
        &org,
    )
    .await;
    exec(
        &mut raw,
        "UPDATE audit_events SET seq = 5 WHERE org_id = ? AND seq = 14",
        &org,
    )
    .await;
    exec(
        &mut raw,
        "UPDATE audit_events SET seq = 14 WHERE org_id = ? AND seq = -5",
        &org,
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 5);
    assert!(
        matches!(e.kind, ChainErrorKind::PrevHashMismatch { .. }),
        "{e}"
    );
}

both_backends!(event_moved_to_another_chain_is_detected);
async fn event_moved_to_another_chain_is_detected(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    raw.exec(
        "UPDATE audit_events SET org_id = ?, seq = ? WHERE org_id = ? AND seq = ?",
        &[
            (&other.id).into(),
            Val::Int(100),
            (&org.id).into(),
            Val::Int(23),
        ],
    )
    .await;
    let results = db.store.verify_audit().await.unwrap();
    let errors: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let of = |o: &Org| errors.iter().find(|e| e.org_id == o.id).unwrap().clone();
    assert!(matches!(of(&org).kind, ChainErrorKind::Truncated { .. }));
    assert_eq!(of(&other).seq, 24);
}

both_backends!(malformed_rows_are_reported_not_fatal);
async fn malformed_rows_are_reported_not_fatal(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    exec(
        &mut raw,
        "UPDATE audit_events SET data = 'not json' WHERE org_id = ? AND seq = 4",
        &org,
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 4);
    assert!(matches!(e.kind, ChainErrorKind::Malformed { .. }), "{e}");
    exec(
        &mut raw,
        "UPDATE audit_events SET data = '{}', hash = 'xyz' WHERE org_id = ? AND seq = 4",
        &org,
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 4);
    assert!(e.to_string().contains("hash"), "{e}");
}

both_backends!(rewritten_head_hash_is_detected);
async fn rewritten_head_hash_is_detected(db: TestDb) {
    let (db, org, other, mut raw) = setup(db).await;
    exec(
        &mut raw,
        "UPDATE audit_heads SET hash = '00000000000000000000000000000000000000000000000000000000000000ff' WHERE org_id = ?",
        &org,
    )
    .await;
    let e = broken_chain(&db.store, &org, &other).await;
    assert_eq!(e.seq, 23);
    assert!(
        matches!(e.kind, ChainErrorKind::HeadHashMismatch { .. }),
        "{e}"
    );
}
