//! The transparency log in the store, on both backends: stored hashes and the tree's size
//! written idempotently (two stores extending the same tree at once end with one tree whose
//! root is the events'), a tree never shrinks, a checkpoint is written once per size, and
//! `verify_audit_tree` recomputes the roots at the stored and asked sizes and reads the
//! stored tree's root.

use std::collections::{BTreeMap, BTreeSet};

use aaf_core::audit::{ChainVerifier, GENESIS_HASH};
use aaf_core::evidence::merkle::{self, MemoryTree};
use aaf_store::evidence::StoredCheckpoint;
use aaf_store::{Mutation, Store, WriteUnit};

use crate::common::{org_with_agent, ts, TestDb};

/// The leaves of `org_id`'s chain as stored, and the chain hash of each event.
async fn leaves(store: &Store, org_id: &str) -> Vec<([u8; 32], [u8; 32])> {
    let events = store.audit_events_raw(org_id, 0, 10_000).await.unwrap();
    let mut verifier = ChainVerifier::new(org_id).with_leaves();
    events
        .iter()
        .map(|e| {
            verifier.push_raw(e).unwrap();
            (verifier.last_leaf_hash().unwrap(), e.hash)
        })
        .collect()
}

/// Extends `org_id`'s tree from `from` to `to` leaves (stored hashes computed over `leaves`).
async fn extend(store: &Store, org_id: &str, leaves: &[([u8; 32], [u8; 32])], from: u64, to: u64) {
    let mut known = store
        .audit_tree_hashes(org_id, &merkle::root_indexes(from).unwrap())
        .await
        .unwrap();
    let mut hashes = Vec::new();
    for n in from..to {
        let new = merkle::hashes_to_store(n, leaves[n as usize].0, &known).unwrap();
        known.extend(new.iter().copied());
        hashes.extend(new);
    }
    store
        .commit(&[WriteUnit {
            mutations: vec![Mutation::ExtendAuditTree {
                org_id: org_id.to_string(),
                size: to,
                last_hash: leaves[to as usize - 1].1,
                hashes,
                now: ts(to),
            }],
            action: None,
            events: Vec::new(),
        }])
        .await
        .unwrap();
}

both_backends!(trees_are_written_idempotently_and_verified_with_their_checkpoints);

async fn trees_are_written_idempotently_and_verified_with_their_checkpoints(db: TestDb) {
    let (org, _) = org_with_agent(&db.store, "acme").await;
    // More events: each agent creation appends to the chain.
    for i in 0..6 {
        db.store
            .create_agent(
                &org.id,
                &format!("a{i}"),
                0.1,
                &format!("k{i}"),
                "p",
                &ts(i),
                "t",
            )
            .await
            .unwrap();
    }
    let leaves = leaves(&db.store, &org.id).await;
    let n = leaves.len() as u64;
    assert!(n >= 8, "{n} events");
    assert_eq!(db.store.audit_tree(&org.id).await.unwrap(), None);

    // Two stores extend the same tree, overlapping, at once: one tree, the events' root.
    let other = db.reopen().await;
    let half = n / 2;
    let (first, second) = tokio::join!(
        extend(&db.store, &org.id, &leaves, 0, n),
        extend(&other, &org.id, &leaves, 0, half),
    );
    let ((), ()) = (first, second);
    let tree = db.store.audit_tree(&org.id).await.unwrap().unwrap();
    assert_eq!(tree.size, n, "the larger size wins, whatever the order");
    assert_eq!(tree.last_hash, leaves[n as usize - 1].1);
    let expected = MemoryTree::from_leaves(leaves.iter().map(|(leaf, _)| *leaf)).unwrap();
    let stored = db
        .store
        .audit_tree_hashes(&org.id, &merkle::root_indexes(n).unwrap())
        .await
        .unwrap();
    assert_eq!(merkle::root(n, &stored).unwrap(), expected.root().unwrap());
    // Again from the start: nothing changes, and a smaller size does not shrink it.
    extend(&other, &org.id, &leaves, 0, 2).await;
    assert_eq!(db.store.audit_tree(&org.id).await.unwrap().unwrap().size, n);
    // A hash the tree does not hold yet is NotFound.
    let beyond = merkle::stored_hash_index(0, n + 5).unwrap();
    assert!(matches!(
        db.store.audit_tree_hashes(&org.id, &[beyond]).await,
        Err(aaf_store::StoreError::NotFound(_))
    ));

    // A checkpoint per size, written once.
    let checkpoint = |size: u64, note: &str| StoredCheckpoint {
        org_id: org.id.clone(),
        tree_size: size,
        root_hash: merkle::root(size, &expected).unwrap(),
        note: note.to_string(),
        created_at: ts(size),
    };
    for (size, note) in [(half, "first"), (n, "second"), (half, "again")] {
        db.store
            .commit(&[WriteUnit {
                mutations: vec![Mutation::PutCheckpoint(checkpoint(size, note))],
                action: None,
                events: Vec::new(),
            }])
            .await
            .unwrap();
    }
    assert_eq!(
        db.store.audit_checkpoint(&org.id, None).await.unwrap(),
        Some(checkpoint(n, "second"))
    );
    assert_eq!(
        db.store
            .audit_checkpoint(&org.id, Some(half))
            .await
            .unwrap(),
        Some(checkpoint(half, "first"))
    );
    assert_eq!(
        db.store.audit_checkpoint(&org.id, Some(3)).await.unwrap(),
        None
    );

    // Verification recomputes the roots at the checkpoints', the tree's and asked sizes.
    let asked = BTreeMap::from([(org.id.clone(), BTreeSet::from([3, n + 10]))]);
    let chains = db.store.verify_audit_tree(&asked).await.unwrap();
    let chain = chains.iter().find(|c| c.org_id() == org.id).unwrap();
    assert_eq!(chain.result.as_ref().unwrap().count, n);
    for size in [3, half, n] {
        assert_eq!(
            chain.roots.get(&size),
            Some(&merkle::root(size, &expected).unwrap()),
            "size {size}"
        );
    }
    assert!(
        !chain.roots.contains_key(&(n + 10)),
        "a size beyond the chain is not reached"
    );
    assert_eq!(chain.checkpoints.len(), 2);
    assert_eq!(
        chain
            .stored_tree
            .as_ref()
            .map(|(size, root)| (*size, root.clone())),
        Some((n, Ok(expected.root().unwrap())))
    );
    assert_ne!(tree.last_hash, GENESIS_HASH);
}
