//! Encryption at rest and payload removal in the store, on both backends
//! (docs/encryption.md, docs/retention.md): what is stored is sealed, two stores with one
//! master key read each other's writes (a rotation on one is picked up by the other),
//! shredding and retention leave the chain verifying, and the triggers allow nothing but the
//! removal of a payload with its reason.

use aaf_store::encryption::MasterKey;
use aaf_store::{Mutation, WriteUnit};

use crate::common::{action, action_unit, assert_all_chains_verify, org_with_agent, TestDb};

both_backends!(sealed_inputs_that_were_moved_or_split_read_as_modified);
async fn sealed_inputs_that_were_moved_or_split_read_as_modified(db: TestDb) {
    let (master, _) = MasterKey::generate();
    let store = db.reopen_encrypted(master).await;
    let (org, agent) = org_with_agent(&store, "inputs").await;
    store
        .commit(&[
            action_unit(&org, &agent, "a1", 1),
            action_unit(&org, &agent, "a2", 2),
        ])
        .await
        .unwrap();
    let mut raw = db.raw().await;
    let column = |name: &'static str, id: &'static str| {
        (
            format!("SELECT {name} FROM actions WHERE org_id = ? AND id = ?"),
            id,
        )
    };
    // `params` and `context` are sealed together, in `params`; `context` says so.
    let (sql, id) = column("context", "a1");
    let context: String = raw.scalar(&sql, &[(&org.id).into(), id.into()]).await;
    assert_eq!(context, "enc1.inputs");
    let (sql, id) = column("params", "a2");
    let a2_params: String = raw.scalar(&sql, &[(&org.id).into(), id.into()]).await;
    assert!(a2_params.starts_with("enc1.inputs."), "{a2_params}");
    let read = store.get_action(&org.id, "a1").await.unwrap().unwrap();
    assert_eq!(read.params, action(&org, &agent, "a1").params);
    assert_eq!(read.context, action(&org, &agent, "a1").context);

    // a2's sealed inputs copied onto a1: bound to a2 by their associated data.
    raw.exec(
        "UPDATE actions SET params = ? WHERE org_id = ? AND id = 'a1'",
        &[a2_params.as_str().into(), (&org.id).into()],
    )
    .await;
    let read = store.get_action(&org.id, "a1").await.unwrap().unwrap();
    assert!(read.params.is_null() && read.context.is_null(), "{read:?}");
    assert!(
        read.withheld
            .as_deref()
            .unwrap()
            .contains("modified or moved"),
        "{read:?}"
    );
    // a2's context written in clear beside its sealed params.
    raw.exec(
        "UPDATE actions SET context = '{}' WHERE org_id = ? AND id = 'a2'",
        &[(&org.id).into()],
    )
    .await;
    let read = store.get_action(&org.id, "a2").await.unwrap().unwrap();
    assert!(read.params.is_null() && read.context.is_null(), "{read:?}");
    assert!(
        read.withheld
            .as_deref()
            .unwrap()
            .contains("not sealed together"),
        "{read:?}"
    );
}

both_backends!(sealed_writes_are_shared_rotated_shredded_and_retained);
async fn sealed_writes_are_shared_rotated_shredded_and_retained(db: TestDb) {
    let (master, _) = MasterKey::generate();
    let node1 = db.reopen_encrypted(master.clone()).await;
    let node2 = db.reopen_encrypted(master.clone()).await;
    assert!(node1.encryption_enabled());
    let (org, agent) = org_with_agent(&node1, "sealed").await;
    node1
        .commit(&[action_unit(&org, &agent, "a1", 1)])
        .await
        .unwrap();

    // Stored sealed: the params under the action's key, the payloads under the data key.
    let mut raw = db.raw().await;
    let params: String = raw
        .scalar(
            "SELECT params FROM actions WHERE org_id = ? AND id = ?",
            &[(&org.id).into(), "a1".into()],
        )
        .await;
    assert!(params.starts_with("enc1.inputs."), "{params}");
    assert!(!params.contains("example.com"), "{params}");
    let payload: String = raw
        .scalar(
            "SELECT payload FROM audit_events WHERE org_id = ? AND action_id = ? AND type = 'action.decided'",
            &[(&org.id).into(), "a1".into()],
        )
        .await;
    assert!(payload.starts_with("enc1.dk-"), "{payload}");

    // Read back opened, by this node and by another with the same master key.
    for node in [&node1, &node2] {
        let read = node.get_action(&org.id, "a1").await.unwrap().unwrap();
        assert_eq!(read.params, action(&org, &agent, "a1").params);
        assert_eq!(read.withheld, None);
        let events = node.list_audit(&org.id, 0, 100).await.unwrap();
        let decided = events
            .iter()
            .find(|e| e.event.event_type == "action.decided")
            .unwrap();
        assert_eq!(decided.event.data["decision"], "allow");
        assert!(decided.payload.as_ref().unwrap().salt.is_some());
    }

    // A rotation on node 1; node 2 reads what is sealed under the new key.
    let new_key = node1.new_data_key(&org.id, &crate::common::ts(5)).unwrap();
    node1
        .commit(&[WriteUnit {
            mutations: vec![Mutation::RotateDataKey {
                new: new_key.clone(),
                now: crate::common::ts(5),
            }],
            action: None,
            events: Vec::new(),
        }])
        .await
        .unwrap();
    node1.reload_data_keys(&org.id, None).await.unwrap();
    node1
        .commit(&[action_unit(&org, &agent, "a2", 2)])
        .await
        .unwrap();
    let keys = node1.list_data_keys(&org.id).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k.wrapped.is_some()));
    let payload: String = raw
        .scalar(
            "SELECT payload FROM audit_events WHERE org_id = ? AND action_id = ? AND type = 'action.decided'",
            &[(&org.id).into(), "a2".into()],
        )
        .await;
    assert!(
        payload.starts_with(&format!("enc1.{}.", new_key.id)),
        "{payload}"
    );
    let read = node2.get_action(&org.id, "a2").await.unwrap().unwrap();
    assert_eq!(read.params, action(&org, &agent, "a2").params);

    // Shred a1: its record and its events' payloads are withheld, on both nodes.
    node1
        .commit(&[WriteUnit {
            mutations: vec![Mutation::ShredAction {
                org_id: org.id.clone(),
                action_id: "a1".into(),
                reason: "payload removed: shredded in a test".into(),
                now: crate::common::ts(6),
            }],
            action: None,
            events: Vec::new(),
        }])
        .await
        .unwrap();
    for node in [&node1, &node2] {
        let read = node.get_action(&org.id, "a1").await.unwrap().unwrap();
        assert!(read.params.is_null());
        assert!(read.withheld.unwrap().contains("destroyed"));
        let events = node.list_audit(&org.id, 0, 100).await.unwrap();
        for e in events
            .iter()
            .filter(|e| e.event.action_id.as_deref() == Some("a1"))
        {
            assert!(e.event.data.is_null());
            let payload = e.payload.as_ref().unwrap();
            assert_eq!(
                payload.withheld.as_deref(),
                Some("payload removed: shredded in a test")
            );
        }
    }
    let again = node1
        .commit(&[WriteUnit {
            mutations: vec![Mutation::ShredAction {
                org_id: org.id.clone(),
                action_id: "a1".into(),
                reason: "again".into(),
                now: crate::common::ts(7),
            }],
            action: None,
            events: Vec::new(),
        }])
        .await
        .unwrap_err();
    assert!(
        matches!(again, aaf_store::StoreError::Conflict(_)),
        "{again}"
    );

    // Retention removes one payload of a2; removing it twice is a conflict.
    let seqs = node1
        .retention_candidates(&org.id, "action.executed", &crate::common::ts(100), 10)
        .await
        .unwrap();
    assert_eq!(
        seqs.len(),
        1,
        "a1's payload is gone already: only a2's is a candidate"
    );
    let remove = WriteUnit {
        mutations: vec![Mutation::RemovePayloads {
            org_id: org.id.clone(),
            seqs: seqs.clone(),
            reason: "payload removed by retention in a test".into(),
        }],
        action: None,
        events: Vec::new(),
    };
    node1.commit(std::slice::from_ref(&remove)).await.unwrap();
    let conflict = node1.commit(&[remove]).await.unwrap_err();
    assert!(
        matches!(conflict, aaf_store::StoreError::Conflict(_)),
        "{conflict}"
    );
    assert_all_chains_verify(&node1).await;

    // The triggers allow only the removal of a payload, with its reason.
    for (sql, what) in [
        (
            "UPDATE audit_events SET data = '{}' WHERE org_id = ? AND seq = 5",
            "a change of data",
        ),
        (
            "UPDATE audit_events SET payload = NULL WHERE org_id = ? AND seq = 6",
            "a removal without its reason",
        ),
        (
            "DELETE FROM audit_events WHERE org_id = ? AND seq = 6",
            "a deletion",
        ),
    ] {
        let refused = raw.try_exec(sql, &[(&org.id).into()]).await;
        assert!(refused.is_err(), "{what} was allowed");
    }

    // A payload removed behind AAF's back (triggers dropped) is reported, not shown as data.
    {
        let mut attacker = db.raw().await;
        attacker.drop_append_only_triggers().await;
        let removed = attacker
            .try_exec(
                "UPDATE audit_events SET payload = NULL WHERE org_id = ? AND seq = 2",
                &[(&org.id).into()],
            )
            .await
            .unwrap();
        assert_eq!(removed, 1);
        let events = node1.list_audit(&org.id, 1, 1).await.unwrap();
        assert!(events[0].event.data.is_null());
        let why = events[0]
            .payload
            .as_ref()
            .unwrap()
            .withheld
            .clone()
            .unwrap();
        assert!(why.contains("no recorded reason"), "{why}");
    }
}
