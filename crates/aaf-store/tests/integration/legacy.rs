//! A database written by an earlier version of AAF (commit 609a762, the last before event
//! `data` was stored in RFC 8785 canonical form and integers beyond 2^53-1 were refused):
//! this version opens it, verifies it read-only (as `aaf audit verify` does before any
//! server has opened it), migrates it, writes on, and verifies it again, and a change to an
//! old event is still caught (docs/audit.md, "Databases written by earlier versions").
//!
//! The fixture `tests/fixtures/written-by-609a762/aaf.db` was made by the release build of
//! that commit with `tests/fixtures/make-written-by-609a762.sh`.

use std::path::Path;

use aaf_core::audit::ChainErrorKind;
use aaf_core::canonical::to_canonical_json;
use aaf_store::{NewEvent, Store, StoreOptions, WriteUnit, SQLITE_FILE_NAME};
use serde_json::{json, Value};

use crate::common::{assert_all_chains_verify, open, raw, Raw};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/written-by-609a762/aaf.db"
);

/// A copy of the fixture in a temporary data directory.
fn copy_of_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(FIXTURE, dir.path().join(SQLITE_FILE_NAME)).unwrap();
    dir
}

async fn stored_texts(dir: &Path) -> Vec<(i64, String)> {
    let mut raw = Raw::Sqlite(raw(dir).await);
    raw.rows(
        "SELECT seq, data FROM audit_events ORDER BY org_id, seq",
        &[],
    )
    .await
}

#[tokio::test]
async fn a_database_of_the_earlier_version_verifies_migrates_and_goes_on() {
    let dir = copy_of_fixture();
    // The fixture holds both forms that differ from today's: data stored as serialised
    // rather than canonically, and an integer beyond 2^53-1 (hashed rounded).
    let texts = stored_texts(dir.path()).await;
    let not_canonical = texts
        .iter()
        .filter(|(_, text)| {
            let value: Value = serde_json::from_str(text).unwrap();
            to_canonical_json(&value).ok().as_deref() != Some(text.as_bytes())
        })
        .count();
    assert!(not_canonical > 0, "the fixture has no non-canonical event");
    assert!(
        texts.iter().any(|(_, t)| t.contains("4000000000000000015")),
        "the fixture has no integer beyond 2^53-1"
    );

    // Read-only, before this version has ever opened it.
    let read_only = Store::open_sqlite(
        dir.path(),
        &StoreOptions {
            read_only: true,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let before = assert_all_chains_verify(&read_only).await;
    read_only.close().await;
    assert!(before.iter().map(|(_, n)| n).sum::<u64>() as usize == texts.len());

    // Opened (and migrated) by this version, which writes on after the old events.
    let store = open(dir.path()).await;
    assert_eq!(assert_all_chains_verify(&store).await, before);
    let (org_id, count) = before
        .iter()
        .find(|(org, _)| org != aaf_store::SYSTEM_CHAIN)
        .cloned()
        .unwrap();
    store
        .commit(&[WriteUnit {
            mutations: Vec::new(),
            action: None,
            events: vec![NewEvent {
                org_id: org_id.clone(),
                ts: "2026-12-04T21:00:00.000000Z".into(),
                agent_id: None,
                action_id: None,
                event_type: "action.decided".into(),
                data: json!({"decision": "allow", "amount": 1.0, "é": "after the upgrade"}),
            }],
        }])
        .await
        .unwrap();
    let after = assert_all_chains_verify(&store).await;
    let now = after.iter().find(|(org, _)| *org == org_id).unwrap().1;
    assert_eq!(now, count + 1);
    store.close().await;
}

/// The one chain error of the fixture (it has one organisation) after `change` on a raw
/// connection.
async fn broken_after(change: &str, binds: &[crate::common::Val]) -> aaf_core::audit::ChainError {
    let dir = copy_of_fixture();
    let mut raw = Raw::Sqlite(raw(dir.path()).await);
    raw.drop_append_only_triggers().await;
    assert_eq!(raw.exec(change, binds).await, 1, "{change}");
    let store = open(dir.path()).await;
    let mut errors: Vec<_> = store
        .verify_audit()
        .await
        .unwrap()
        .into_iter()
        .filter_map(Result::err)
        .collect();
    store.close().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = errors.remove(0);
    println!("detected: {e}");
    e
}

#[tokio::test]
async fn a_changed_event_of_the_earlier_version_is_still_caught() {
    let dir = copy_of_fixture();
    let seq = stored_texts(dir.path())
        .await
        .into_iter()
        .find(|(_, t)| t.contains("4000000000000000015"))
        .map(|(seq, _)| seq)
        .unwrap();
    // A number whose nearest double differs: the rounded hash no longer matches.
    let e = broken_after(
        "UPDATE audit_events SET data = replace(data, '4000000000000000015', '4000000000000001015') \
         WHERE seq = ?",
        &[seq.into()],
    )
    .await;
    assert_eq!(e.seq, u64::try_from(seq).unwrap());
    assert!(matches!(e.kind, ChainErrorKind::HashMismatch { .. }), "{e}");

    // A duplicated member in front of an old (serialised) event: neither stored form.
    let e = broken_after(
        r#"UPDATE audit_events SET data = '{"name":"evil",' || substr(data, 2) WHERE seq = 1"#,
        &[],
    )
    .await;
    assert_eq!(e.seq, 1);
    assert!(matches!(e.kind, ChainErrorKind::NotCanonical { .. }), "{e}");
}
