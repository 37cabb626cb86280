//! The store's part of the policy lifecycle, on both backends: versioned policy objects
//! (create, new versions as a compare-and-set, rollback, disable), the organisation's
//! policy generation as the compare-and-set of every change (a loser writes nothing),
//! revision records written once, and shadow results with their report; all scoped to
//! the organisation.

use aaf_store::{
    Mutation, PolicyObjectVersion, PolicyRevisionRecord, ShadowResult, StoreError, WriteUnit,
};
use serde_json::json;

use crate::common::{org_with_agent, ts, TestDb};

fn version(org_id: &str, key: &str, v: i64, body: &str, n: u64) -> PolicyObjectVersion {
    PolicyObjectVersion {
        org_id: org_id.into(),
        kind: "policy".into(),
        key: key.into(),
        version: v,
        body: body.into(),
        mode: "enforce".into(),
        sha256: format!("sha-{body}"),
        author: Some("admin".into()),
        created_at: ts(n),
    }
}

fn put(org_id: &str, key: &str, name: &str, v: i64, body: &str, n: u64) -> Mutation {
    Mutation::PutPolicyObject {
        version: version(org_id, key, v, body, n),
        name: name.into(),
        active_version: v,
    }
}

fn bump(org_id: &str, expected: i64, n: u64) -> Mutation {
    Mutation::BumpPolicyGeneration {
        org_id: org_id.into(),
        expected,
        now: ts(n),
    }
}

fn unit(mutations: Vec<Mutation>) -> WriteUnit {
    WriteUnit {
        mutations,
        ..WriteUnit::default()
    }
}

pub(crate) fn policy_rows(org_id: &str, tag: &str) -> WriteUnit {
    unit(vec![
        put(
            org_id,
            &format!("{tag}-p"),
            &format!("{tag}-policy"),
            1,
            "package a",
            50,
        ),
        bump(org_id, 0, 50),
        Mutation::InsertPolicyRevision(PolicyRevisionRecord {
            org_id: org_id.into(),
            revision: format!("{tag}-rev"),
            bundle: json!({"sources": [], "data": {}}),
            created_at: ts(50),
        }),
        Mutation::InsertShadowResult(ShadowResult {
            org_id: org_id.into(),
            policy_key: format!("{tag}-p"),
            policy_version: 1,
            action_id: format!("{tag}-act-1"),
            enforced: "allow".into(),
            shadow: "deny".into(),
            differs: true,
            created_at: ts(51),
        }),
    ])
}

both_backends!(policy_objects_are_versioned_with_compare_and_set);
async fn policy_objects_are_versioned_with_compare_and_set(db: TestDb) {
    let store = &db.store;
    let (org, _) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    let o = org.id.as_str();
    assert_eq!(store.policy_generation(o).await.unwrap(), 0);

    store
        .commit(&[unit(vec![
            put(o, "p1", "limits", 1, "v1", 10),
            bump(o, 0, 10),
        ])])
        .await
        .unwrap();
    assert_eq!(store.policy_generation(o).await.unwrap(), 1);
    // A second first change (expected 0) loses, and writes nothing of its unit.
    let lost = store
        .commit(&[unit(vec![
            put(o, "p2", "other", 1, "x", 11),
            bump(o, 0, 11),
        ])])
        .await
        .unwrap_err();
    assert!(matches!(lost, StoreError::Stale(_)), "{lost:?}");
    assert!(store
        .get_policy_object(o, "policy", "p2")
        .await
        .unwrap()
        .is_none());

    // Version 2, then a stale version 2 (its latest is no longer 1): refused.
    store
        .commit(&[unit(vec![
            put(o, "p1", "limits", 2, "v2", 12),
            bump(o, 1, 12),
        ])])
        .await
        .unwrap();
    let stale = store
        .commit(&[unit(vec![
            put(o, "p1", "limits", 2, "v2b", 13),
            bump(o, 2, 13),
        ])])
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::Stale(_)), "{stale:?}");
    assert_eq!(
        store.policy_generation(o).await.unwrap(),
        2,
        "the loser bumped nothing"
    );
    let p = store
        .get_policy_object(o, "policy", "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.active_version, p.latest_version, p.body.as_str()),
        (2, 2, "v2")
    );
    assert_eq!(p.created_by.as_deref(), Some("admin"));

    // A live name is unique; a stale generation is refused.
    let dup = store
        .commit(&[unit(vec![
            put(o, "p3", "limits", 1, "dup", 14),
            bump(o, 2, 14),
        ])])
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    let old_gen = store
        .commit(&[unit(vec![bump(o, 1, 15)])])
        .await
        .unwrap_err();
    assert!(matches!(old_gen, StoreError::Stale(_)), "{old_gen:?}");

    // Rollback to version 1; a version that does not exist is not found.
    let activate = |v: i64| Mutation::ActivatePolicyObjectVersion {
        org_id: o.into(),
        kind: "policy".into(),
        key: "p1".into(),
        version: v,
        now: ts(16),
    };
    store
        .commit(&[unit(vec![activate(1), bump(o, 2, 16)])])
        .await
        .unwrap();
    let p = store
        .get_policy_object(o, "policy", "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.active_version, p.latest_version, p.body.as_str()),
        (1, 2, "v1")
    );
    for bad in [0, 3] {
        let e = store
            .commit(&[unit(vec![activate(bad)])])
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound(_)), "{bad}: {e:?}");
    }
    let versions = store
        .list_policy_object_versions(o, "policy", "p1")
        .await
        .unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.body.as_str()))
            .collect::<Vec<_>>(),
        [(1, "v1"), (2, "v2")]
    );

    // Disable: kept, readable, final; its name is free again.
    let disable = Mutation::DisablePolicyObject {
        org_id: o.into(),
        kind: "policy".into(),
        key: "p1".into(),
        now: ts(17),
    };
    store
        .commit(&[unit(vec![disable.clone(), bump(o, 3, 17)])])
        .await
        .unwrap();
    let p = store
        .get_policy_object(o, "policy", "p1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.disabled_at, Some(ts(17)));
    let again = store.commit(&[unit(vec![disable])]).await.unwrap_err();
    assert!(matches!(again, StoreError::NotFound(_)), "{again:?}");
    let after = store
        .commit(&[unit(vec![put(o, "p1", "limits", 3, "v3", 18)])])
        .await
        .unwrap_err();
    assert!(matches!(after, StoreError::Stale(_)), "{after:?}");
    store
        .commit(&[unit(vec![
            put(o, "p4", "limits", 1, "new", 19),
            bump(o, 4, 19),
        ])])
        .await
        .unwrap();
    let listed = store.list_policy_objects(o, Some("policy")).await.unwrap();
    assert_eq!(listed.len(), 2);

    // Another organisation sees none of it and has its own generation.
    assert!(store
        .list_policy_objects(&other.id, None)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .get_policy_object(&other.id, "policy", "p4")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_policy_object_versions(&other.id, "policy", "p1")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.policy_generation(&other.id).await.unwrap(), 0);
    let generations = store.policy_generations().await.unwrap();
    assert_eq!(generations, vec![(org.id.clone(), 5)]);
}

both_backends!(revisions_are_kept_once_and_shadow_results_are_reported);
async fn revisions_are_kept_once_and_shadow_results_are_reported(db: TestDb) {
    let store = &db.store;
    let (org, _) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    let o = org.id.as_str();
    let record = |bundle: serde_json::Value, n: u64| {
        Mutation::InsertPolicyRevision(PolicyRevisionRecord {
            org_id: o.into(),
            revision: "r1".into(),
            bundle,
            created_at: ts(n),
        })
    };
    store
        .commit(&[unit(vec![record(
            json!({"sources": [{"path": "a.rego", "rego": "package a"}], "data": {}}),
            1,
        )])])
        .await
        .unwrap();
    store
        .commit(&[unit(vec![record(json!({"sources": []}), 2)])])
        .await
        .unwrap();
    let kept = store.get_policy_revision(o, "r1").await.unwrap().unwrap();
    assert_eq!(kept.created_at, ts(1), "the first record is kept");
    assert_eq!(kept.bundle["sources"][0]["path"], "a.rego");
    assert!(store
        .get_policy_revision(&other.id, "r1")
        .await
        .unwrap()
        .is_none());

    let result = |action: &str, enforced: &str, shadow: &str, n: u64| {
        Mutation::InsertShadowResult(ShadowResult {
            org_id: o.into(),
            policy_key: "p1".into(),
            policy_version: 1,
            action_id: action.into(),
            enforced: enforced.into(),
            shadow: shadow.into(),
            differs: enforced != shadow,
            created_at: ts(n),
        })
    };
    store
        .commit(&[unit(vec![
            result("a1", "allow", "deny", 10),
            result("a2", "allow", "allow", 11),
            result("a3", "allow", "deny", 12),
            result("a4", "deny", "deny", 13),
        ])])
        .await
        .unwrap();
    let (counts, samples) = store.shadow_report(o, "p1", 1).await.unwrap();
    let counts: Vec<(String, String, u64)> = counts
        .into_iter()
        .map(|c| (c.enforced, c.shadow, c.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("allow".into(), "allow".into(), 1),
            ("allow".into(), "deny".into(), 2),
            ("deny".into(), "deny".into(), 1)
        ]
    );
    assert_eq!(samples.len(), 1);
    assert_eq!(
        samples[0].action_id, "a3",
        "the latest differing result first"
    );
    let (counts, samples) = store.shadow_report(&other.id, "p1", 10).await.unwrap();
    assert!(counts.is_empty() && samples.is_empty());
}
