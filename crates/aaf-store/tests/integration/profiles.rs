//! Agents' behavioural profiles in the store, on both backends: a profile is read back as
//! written, a put is a compare-and-set on the watermark (a stale one changes nothing and is
//! no error), concurrent folds on two stores never lose one, an agent's actions are read in
//! `(created_at, id)` order strictly after a watermark (ties on `created_at` neither
//! repeated nor skipped), and another organisation's profiles and actions are out of reach.

use aaf_store::{ActionWrite, AgentProfileRecord, Mutation, Store, StoreError, WriteUnit};
use serde_json::json;

use crate::common::{action, org_with_agent, ts, TestDb};

fn profile(
    org_id: &str,
    agent_id: &str,
    folded: u64,
    watermark: Option<(String, String)>,
    n: u64,
) -> AgentProfileRecord {
    AgentProfileRecord {
        org_id: org_id.into(),
        agent_id: agent_id.into(),
        profile: json!({"folded": folded, "tools": {"http_proxy": {"count": folded}}, "mean": 0.5}),
        folded_until: watermark,
        updated_at: ts(n),
    }
}

fn mark(n: u64, id: &str) -> Option<(String, String)> {
    Some((ts(n), id.to_string()))
}

async fn put(
    store: &Store,
    record: &AgentProfileRecord,
    expected: Option<(String, String)>,
) -> Result<(), StoreError> {
    store
        .commit(&[WriteUnit {
            mutations: vec![Mutation::PutAgentProfile {
                record: record.clone(),
                expected,
            }],
            ..WriteUnit::default()
        }])
        .await
        .map(|_| ())
}

both_backends!(profiles_are_read_back_as_written_per_agent_and_organisation);
async fn profiles_are_read_back_as_written_per_agent_and_organisation(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let (other, other_agent) = org_with_agent(store, "globex").await;
    assert_eq!(
        store.get_agent_profile(&org.id, &agent.id).await.unwrap(),
        None
    );

    // The first profile, before any action was folded, then one with a watermark.
    let empty = profile(&org.id, &agent.id, 0, None, 1);
    put(store, &empty, None).await.unwrap();
    assert_eq!(
        store.get_agent_profile(&org.id, &agent.id).await.unwrap(),
        Some(empty.clone())
    );
    let first = profile(&org.id, &agent.id, 2, mark(10, "a2"), 2);
    put(store, &first, None).await.unwrap();
    assert_eq!(
        store.get_agent_profile(&org.id, &agent.id).await.unwrap(),
        Some(first.clone())
    );

    // Per agent and per organisation: another organisation's reads find nothing of it.
    assert_eq!(
        store
            .get_agent_profile(&org.id, &other_agent.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.get_agent_profile(&other.id, &agent.id).await.unwrap(),
        None
    );
    let theirs = profile(&other.id, &other_agent.id, 7, mark(20, "b7"), 3);
    put(store, &theirs, None).await.unwrap();
    assert_eq!(
        store
            .get_agent_profile(&other.id, &other_agent.id)
            .await
            .unwrap(),
        Some(theirs)
    );
    assert_eq!(
        store.get_agent_profile(&org.id, &agent.id).await.unwrap(),
        Some(first)
    );

    // A profile of an organisation that does not exist is refused.
    let orphan = profile("no-such-org", &agent.id, 1, None, 4);
    let err = put(store, &orphan, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

both_backends!(a_put_is_a_compare_and_set_on_the_watermark);
async fn a_put_is_a_compare_and_set_on_the_watermark(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let get = || async { store.get_agent_profile(&org.id, &agent.id).await.unwrap() };

    let v1 = profile(&org.id, &agent.id, 1, mark(10, "a1"), 1);
    put(store, &v1, None).await.unwrap();
    assert_eq!(get().await, Some(v1.clone()));

    // `expected: None` while the stored profile has a watermark: nothing changes, no error.
    let late_first = profile(&org.id, &agent.id, 1, mark(10, "x1"), 2);
    put(store, &late_first, None).await.unwrap();
    assert_eq!(get().await, Some(v1.clone()));

    // A stale watermark (an earlier one, another id at the same instant, a later one):
    // nothing changes, no error.
    let v2 = profile(&org.id, &agent.id, 2, mark(11, "a2"), 3);
    for stale in [
        mark(9, "a0"),
        mark(10, "a0"),
        mark(10, "a2"),
        mark(11, "a2"),
    ] {
        put(store, &v2, stale).await.unwrap();
        assert_eq!(get().await, Some(v1.clone()));
    }

    // The right watermark replaces the profile, and moves the watermark.
    put(store, &v2, mark(10, "a1")).await.unwrap();
    assert_eq!(get().await, Some(v2.clone()));
    put(store, &v2, mark(10, "a1")).await.unwrap();
    assert_eq!(get().await, Some(v2.clone()));

    // A profile that folded nothing yet is replaced by a put expecting none.
    let (_, agent_b) = org_with_agent_second(store, &org.id).await;
    let empty = profile(&org.id, &agent_b, 0, None, 4);
    put(store, &empty, mark(1, "nothing")).await.unwrap();
    assert_eq!(
        store.get_agent_profile(&org.id, &agent_b).await.unwrap(),
        Some(empty.clone()),
        "a missing profile is written whatever the expected watermark"
    );
    let stale_empty = profile(&org.id, &agent_b, 5, mark(30, "b5"), 5);
    put(store, &stale_empty, mark(1, "nothing")).await.unwrap();
    assert_eq!(
        store.get_agent_profile(&org.id, &agent_b).await.unwrap(),
        Some(empty)
    );
    let folded = profile(&org.id, &agent_b, 5, mark(30, "b5"), 6);
    put(store, &folded, None).await.unwrap();
    assert_eq!(
        store.get_agent_profile(&org.id, &agent_b).await.unwrap(),
        Some(folded)
    );

    // A unit whose profile put lost its compare-and-set still commits the rest.
    let v3 = profile(&org.id, &agent.id, 3, mark(12, "a3"), 7);
    let chained = store
        .commit(&[WriteUnit {
            mutations: vec![Mutation::PutAgentProfile {
                record: v3,
                expected: mark(10, "a1"),
            }],
            action: Some(ActionWrite::Insert(action(&org, &agent, "kept"))),
            events: Vec::new(),
        }])
        .await
        .unwrap();
    assert_eq!(chained, vec![Vec::new()]);
    assert_eq!(get().await, Some(v2));
    assert!(store.get_action(&org.id, "kept").await.unwrap().is_some());
}

/// A second agent of the organisation (its id).
async fn org_with_agent_second(store: &Store, org_id: &str) -> (String, String) {
    let agent = store
        .create_agent(
            org_id,
            "agent-2",
            0.1,
            "keyhash-second",
            "aaf_agt_z",
            &ts(2),
            "t",
        )
        .await
        .unwrap();
    (org_id.to_string(), agent.id)
}

both_backends!(
    concurrent_folds_on_two_stores_never_lose_one,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn concurrent_folds_on_two_stores_never_lose_one(db: TestDb) {
    const TASKS: u64 = 4;
    const FOLDS: u64 = 10;
    let (org, agent) = org_with_agent(&db.store, "acme").await;
    let stores = [db.store.clone(), db.reopen().await];
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let store = stores[(task % 2) as usize].clone();
        let (org_id, agent_id) = (org.id.clone(), agent.id.clone());
        handles.push(tokio::spawn(async move {
            let mut attempts = 0u64;
            for i in 0..FOLDS {
                // Read, fold one more (its id appended to the profile's log), write if
                // nobody folded in between; else read and fold again. A fold that was
                // written is in every later profile's log.
                let id = format!("t{task}-{i}");
                loop {
                    let current = store.get_agent_profile(&org_id, &agent_id).await.unwrap();
                    let mut log = current
                        .as_ref()
                        .map(|p| p.profile["log"].as_array().unwrap().clone())
                        .unwrap_or_default();
                    if log.contains(&json!(id)) {
                        break;
                    }
                    let expected = current.and_then(|p| p.folded_until);
                    log.push(json!(id));
                    let n = log.len() as u64;
                    let next = AgentProfileRecord {
                        profile: json!({"log": log}),
                        ..profile(&org_id, &agent_id, n, mark(n, &id), n)
                    };
                    put(&store, &next, expected).await.unwrap();
                    attempts += 1;
                }
            }
            attempts
        }));
    }
    let mut attempts = 0;
    for handle in handles {
        attempts += handle.await.unwrap();
    }
    let last = db
        .store
        .get_agent_profile(&org.id, &agent.id)
        .await
        .unwrap()
        .unwrap();
    let log = last.profile["log"].as_array().unwrap();
    println!(
        "{} folds in {attempts} compare-and-sets (the others lost and retried)",
        log.len()
    );
    let mut ids: Vec<&str> = log.iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ids.len() as u64, TASKS * FOLDS, "{ids:?}");
    assert_eq!(
        last.folded_until.map(|(_, id)| id).as_deref(),
        ids.last().copied()
    );
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, TASKS * FOLDS, "a fold written twice");
    for store in &stores[1..] {
        store.close().await;
    }
}

both_backends!(an_agents_actions_are_read_in_order_strictly_after_a_watermark);
async fn an_agents_actions_are_read_in_order_strictly_after_a_watermark(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let (other, other_agent) = org_with_agent(store, "globex").await;
    let (_, agent_2) = org_with_agent_second(store, &org.id).await;
    // Inserted out of order; "b" and "c" and "d" share one created_at.
    let rows = [
        ("e", 40),
        ("c", 30),
        ("a", 20),
        ("d", 30),
        ("b", 30),
        ("f", 50),
    ];
    let mut units = Vec::new();
    for (id, n) in rows {
        let mut record = action(&org, &agent, id);
        record.created_at = ts(n);
        record.updated_at = ts(n);
        units.push(WriteUnit {
            action: Some(ActionWrite::Insert(record)),
            ..WriteUnit::default()
        });
    }
    // Another agent of the organisation, and another organisation's agent.
    let mut theirs = action(&org, &agent, "other-agent");
    theirs.agent_id = agent_2.clone();
    theirs.created_at = ts(35);
    let mut elsewhere = action(&other, &other_agent, "other-org");
    elsewhere.created_at = ts(35);
    for record in [theirs, elsewhere] {
        units.push(WriteUnit {
            action: Some(ActionWrite::Insert(record)),
            ..WriteUnit::default()
        });
    }
    store.commit(&units).await.unwrap();

    let ids = |records: Vec<aaf_store::ActionRecord>| {
        records.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    let after = |at: u64, id: &'static str, limit: u32| {
        let (org_id, agent_id) = (org.id.clone(), agent.id.clone());
        async move {
            let at = ts(at);
            ids(store
                .agent_actions_after(&org_id, &agent_id, Some((&at, id)), limit)
                .await
                .unwrap())
        }
    };

    // From the first action, oldest first, ties by id.
    let all = ids(store
        .agent_actions_after(&org.id, &agent.id, None, 100)
        .await
        .unwrap());
    assert_eq!(all, ["a", "b", "c", "d", "e", "f"]);
    let first = store
        .agent_actions_after(&org.id, &agent.id, None, 2)
        .await
        .unwrap();
    assert_eq!(ids(first.clone()), ["a", "b"]);
    // Whole records, as stored.
    assert_eq!(first[0].created_at, ts(20));
    assert_eq!(
        Some(&first[0]),
        store.get_action(&org.id, "a").await.unwrap().as_ref()
    );

    // Strictly after: ties at the watermark's instant continue after its id.
    assert_eq!(after(30, "b", 100).await, ["c", "d", "e", "f"]);
    assert_eq!(after(30, "c", 100).await, ["d", "e", "f"]);
    assert_eq!(after(30, "d", 100).await, ["e", "f"]);
    assert_eq!(after(30, "a", 100).await, ["b", "c", "d", "e", "f"]);
    assert_eq!(after(30, "", 2).await, ["b", "c"]);
    assert_eq!(after(20, "a", 3).await, ["b", "c", "d"]);
    assert_eq!(after(25, "zzz", 1).await, ["b"]);
    assert_eq!(after(50, "f", 100).await, Vec::<String>::new());
    assert_eq!(after(60, "", 100).await, Vec::<String>::new());
    assert_eq!(after(20, "a", 0).await, Vec::<String>::new());

    // Paging by the last one's watermark visits each action exactly once.
    let mut seen = Vec::new();
    let mut watermark: Option<(String, String)> = None;
    loop {
        let page = store
            .agent_actions_after(
                &org.id,
                &agent.id,
                watermark
                    .as_ref()
                    .map(|(at, id)| (at.as_str(), id.as_str())),
                2,
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        watermark = Some((last.created_at.clone(), last.id.clone()));
        seen.extend(ids(page));
    }
    assert_eq!(seen, all);

    // Another organisation reads nothing of the agent.
    assert!(store
        .agent_actions_after(&other.id, &agent.id, None, 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(store
            .agent_actions_after(&other.id, &other_agent.id, None, 100)
            .await
            .unwrap()),
        ["other-org"]
    );
}
