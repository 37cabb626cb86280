//! The group-commit writer: concurrency, failures, shutdown.

use std::collections::HashMap;
use std::time::Duration;

use aaf_core::audit::event_types;
use aaf_store::{AuditWriter, NewEvent, Store, StoreError, WriteUnit, SYSTEM_CHAIN};
use serde_json::json;

use crate::common::{action_unit, assert_all_chains_verify, org_with_agent, ts, TestDb};

/// A new store on the test's database, to check what a writer committed once the writer is
/// shut down. Not the writer's own store: on PostgreSQL its pool may keep connections that
/// were opened on the writer's private runtime, and such a connection can fail ("A Tokio 1.x
/// context was found, but it is being shutdown") once the writer is gone: a bug of
/// `AuditWriter` (src/writer.rs), timing-dependent, so not a test of its own here.
async fn reopened(db: &TestDb) -> Store {
    db.reopen().await
}

/// Fails the test instead of hanging when a future does not finish.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in time"))
}

both_backends!(
    many_concurrent_submitters_get_a_gap_free_chain,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn many_concurrent_submitters_get_a_gap_free_chain(db: TestDb) {
    const TASKS: usize = 50;
    const UNITS: usize = 200;
    let (a, agent_a) = org_with_agent(&db.store, "a").await;
    let (b, agent_b) = org_with_agent(&db.store, "b").await;
    let writer = AuditWriter::spawn(db.store.clone(), 256);

    let mut handles = Vec::new();
    for task in 0..TASKS {
        let writer = writer.clone();
        let (org, agent) = if task % 2 == 0 {
            (a.clone(), agent_a.clone())
        } else {
            (b.clone(), agent_b.clone())
        };
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..UNITS {
                let n = (task * UNITS + i) as u64;
                let mut unit = action_unit(&org, &agent, &format!("t{task}-{i}"), n);
                if i % 10 == 0 {
                    unit.events.push(NewEvent {
                        org_id: SYSTEM_CHAIN.into(),
                        ts: ts(n),
                        agent_id: None,
                        action_id: None,
                        event_type: event_types::REQUEST_REJECTED.into(),
                        data: json!({"reason": "bad signature", "task": task}),
                    });
                }
                let chained = writer.submit(unit).await.unwrap();
                assert_eq!(chained[1].prev_hash, chained[0].hash);
                assert_eq!(chained[1].event.seq, chained[0].event.seq + 1);
                seqs.push(chained[0].event.seq);
            }
            seqs
        }));
    }
    let started = std::time::Instant::now();
    let mut per_task = Vec::new();
    for handle in handles {
        per_task.push(within("submitters", handle).await.unwrap());
    }
    let elapsed = started.elapsed();
    println!(
        "{} units through the writer in {elapsed:?} ({:.0} units/s, debug build)",
        TASKS * UNITS,
        (TASKS * UNITS) as f64 / elapsed.as_secs_f64()
    );
    // Each task saw its own units committed in submission order.
    for seqs in &per_task {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }
    within("shutdown", writer.shutdown()).await;

    // Every chain is gap-free from 1 and verifies.
    let store = reopened(&db).await;
    let mut counts: HashMap<String, u64> =
        assert_all_chains_verify(&store).await.into_iter().collect();
    let per_org = (TASKS / 2 * UNITS * 2 + 3) as u64;
    assert_eq!(counts.remove(&a.id), Some(per_org));
    assert_eq!(counts.remove(&b.id), Some(per_org));
    assert_eq!(
        counts.remove(SYSTEM_CHAIN),
        Some((TASKS * UNITS / 10) as u64)
    );
    assert!(counts.is_empty());
    let events = store.list_audit(&a.id, 0, u32::MAX).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs, (1..=per_org).collect::<Vec<_>>());
}

both_backends!(
    a_failing_commit_answers_every_waiter_and_the_writer_recovers,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_failing_commit_answers_every_waiter_and_the_writer_recovers(db: TestDb) {
    let (org, agent) = org_with_agent(&db.store, "acme").await;
    let writer = AuditWriter::spawn(db.store.clone(), 64);
    writer
        .submit(action_unit(&org, &agent, "before", 0))
        .await
        .unwrap();

    // Break the database under the writer.
    let mut raw = db.raw().await;
    let restore = raw.remove_audit_events().await;

    let mut handles = Vec::new();
    for i in 0..40 {
        let writer = writer.clone();
        let unit = action_unit(&org, &agent, &format!("during-{i}"), i);
        handles.push(tokio::spawn(async move { writer.submit(unit).await }));
    }
    for handle in handles {
        let result = within("failing submit", handle).await.unwrap();
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("audit_events"), "{err}");
    }
    // Nothing of the failed batches was written.
    let actions: i64 = raw
        .scalar("SELECT COUNT(*) FROM actions WHERE id LIKE 'during-%'", &[])
        .await;
    assert_eq!(actions, 0);

    // Repair the table (its events are lost, which verification will report) and go on.
    raw.restore_audit_events(&restore).await;
    let chained = within(
        "submit after repair",
        writer.submit(action_unit(&org, &agent, "after", 1)),
    )
    .await
    .unwrap();
    assert_eq!(
        chained[0].event.seq, 6,
        "the head survived, so the chain continues"
    );
    let results = db.store.verify_audit().await.unwrap();
    let error = results.into_iter().find_map(Result::err).unwrap();
    assert_eq!(error.seq, 1);
    within("shutdown", writer.shutdown()).await;
}

both_backends!(
    a_bad_unit_fails_alone,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_bad_unit_fails_alone(db: TestDb) {
    let (org, agent) = org_with_agent(&db.store, "acme").await;
    db.store
        .commit(&[action_unit(&org, &agent, "taken", 0)])
        .await
        .unwrap();
    let writer = AuditWriter::spawn(db.store.clone(), 64);
    let mut handles = Vec::new();
    for i in 0..30 {
        let writer = writer.clone();
        let id = if i == 15 {
            "taken".to_string()
        } else {
            format!("ok-{i}")
        };
        let unit = action_unit(&org, &agent, &id, i);
        handles.push(tokio::spawn(async move { (i, writer.submit(unit).await) }));
    }
    for handle in handles {
        let (i, result) = within("submit", handle).await.unwrap();
        if i == 15 {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        } else {
            assert!(result.is_ok(), "unit {i}: {result:?}");
        }
    }
    writer.shutdown().await;
    assert_eq!(
        assert_all_chains_verify(&reopened(&db).await).await,
        vec![(org.id.clone(), 3 + 2 + 29 * 2)]
    );
}

both_backends!(
    shutdown_flushes_what_is_queued_and_refuses_the_rest,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn shutdown_flushes_what_is_queued_and_refuses_the_rest(db: TestDb) {
    let (org, agent) = org_with_agent(&db.store, "acme").await;
    let writer = AuditWriter::spawn(db.store.clone(), 8);

    // Hold the database's write lock (SQLite) or the chain head's row lock (PostgreSQL)
    // from another connection, so the writer's first commit waits (within SQLite's busy
    // timeout) and the other units stay queued.
    let mut raw = db.raw().await;
    raw.hold_write_lock(&org.id).await;
    // 30 units fit in the queue (4 * max_batch), so all of them are accepted.
    let mut handles = Vec::new();
    for i in 0..30 {
        let writer = writer.clone();
        let unit = action_unit(&org, &agent, &format!("q{i}"), i);
        handles.push(tokio::spawn(async move { writer.submit(unit).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = writer.clone();
    let shutdown = tokio::spawn(writer.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the queued units"
    );
    let err = late
        .submit(action_unit(&org, &agent, "late", 99))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    raw.release().await;

    within("shutdown", shutdown).await.unwrap();
    for handle in handles {
        within("submit", handle).await.unwrap().unwrap();
    }
    // Every queued unit was committed; the late one was not.
    let store = reopened(&db).await;
    let counts = assert_all_chains_verify(&store).await;
    assert_eq!(counts, vec![(org.id.clone(), 3 + 2 * 30)]);
    assert!(store.get_action(&org.id, "late").await.unwrap().is_none());
    let err = late.submit(WriteUnit::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

both_backends!(works_on_a_current_thread_runtime);
async fn works_on_a_current_thread_runtime(db: TestDb) {
    let (org, agent) = org_with_agent(&db.store, "acme").await;
    let writer = AuditWriter::spawn(db.store.clone(), 16);
    let chained = within("submit", writer.submit(action_unit(&org, &agent, "a1", 1)))
        .await
        .unwrap();
    assert_eq!(chained[0].event.seq, 4);
    within("shutdown", writer.shutdown()).await;
    assert_eq!(
        assert_all_chains_verify(&reopened(&db).await).await,
        vec![(org.id.clone(), 5)]
    );
}

both_backends!(
    a_corrupt_chain_head_stops_only_its_own_organisation,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn a_corrupt_chain_head_stops_only_its_own_organisation(db: TestDb) {
    let (bad, bad_agent) = org_with_agent(&db.store, "bad").await;
    let (good, good_agent) = org_with_agent(&db.store, "good").await;
    let mut raw = db.raw().await;
    raw.exec(
        "UPDATE audit_heads SET hash = 'not hex' WHERE org_id = ?",
        &[(&bad.id).into()],
    )
    .await;
    let writer = AuditWriter::spawn(db.store.clone(), 64);
    let mut handles = Vec::new();
    for i in 0..20u64 {
        let writer = writer.clone();
        let unit = if i % 2 == 0 {
            action_unit(&bad, &bad_agent, &format!("bad-{i}"), i)
        } else {
            action_unit(&good, &good_agent, &format!("good-{i}"), i)
        };
        handles.push(tokio::spawn(async move { (i, writer.submit(unit).await) }));
    }
    for handle in handles {
        let (i, result) = within("submit", handle).await.unwrap();
        if i % 2 == 0 {
            assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
        } else {
            assert!(result.is_ok(), "unit {i}: {result:?}");
        }
    }
    writer.shutdown().await;
    let results = reopened(&db).await.verify_audit().await.unwrap();
    for result in results {
        match result {
            Ok(summary) => assert_eq!((summary.org_id, summary.count), (good.id.clone(), 23)),
            Err(e) => {
                assert_eq!(e.org_id, bad.id);
                assert!(e.to_string().contains("chain head"), "{e}");
            }
        }
    }
}
