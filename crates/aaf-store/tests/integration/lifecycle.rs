//! Opening, migrations, orgs, tokens, agents, actions, audit listing, reopening.

use aaf_core::audit::{event_types, GENESIS_HASH};
use aaf_store::{ActionWrite, NewEvent, Store, StoreError, StoreOptions, WriteUnit, SYSTEM_CHAIN};
use serde_json::json;

use crate::common::{
    self, action, action_unit, assert_all_chains_verify, org_with_agent, ts, TestDb,
};

/// The tables every migrated database has.
const TABLES: [&str; 24] = [
    "agent_profiles",
    "mcp_servers",
    "mcp_tool_pins",
    "kill_switches",
    "runtime_state",
    "agent_snapshots",
    "policy_objects",
    "policy_object_versions",
    "policy_state",
    "policy_revisions",
    "shadow_results",
    "webhooks",
    "webhook_deliveries",
    "actions",
    "agent_keys",
    "agents",
    "api_tokens",
    "approval_votes",
    "org_settings",
    "audit_events",
    "audit_heads",
    "orgs",
    "signature_nonces",
    "users",
];

// SQLite only: the data directory (created, mode 0700) and WAL journaling are SQLite's.
#[tokio::test]
async fn open_creates_the_directory_and_migrates() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nested").join("data");
    let store = common::open(&dir).await;
    assert_eq!(store.backend_name(), "sqlite");
    assert!(dir.join("aaf.db").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "data dir mode {mode:o}");
    }
    let mut raw = common::raw(&dir).await;
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    // Opening again (migrations already applied) works and sees nothing new.
    drop(store);
    let again = common::open(&dir).await;
    assert!(again.verify_audit().await.unwrap().is_empty());
}

both_backends!(migrations_create_every_table_and_reopening_applies_nothing);
async fn migrations_create_every_table_and_reopening_applies_nothing(db: TestDb) {
    let mut raw = db.raw().await;
    let tables = raw.tables().await;
    for table in TABLES {
        assert!(
            tables.iter().any(|t| t == table),
            "missing table {table}: {tables:?}"
        );
    }
    let migrations: i64 = raw
        .scalar("SELECT COUNT(*) FROM _sqlx_migrations", &[])
        .await;
    assert!(migrations >= 1);
    assert!(db.store.verify_audit().await.unwrap().is_empty());
    // Opening again (migrations already applied) works and sees nothing new.
    let again = db.reopen().await;
    assert!(again.verify_audit().await.unwrap().is_empty());
    again.close().await;
    let after: i64 = raw
        .scalar("SELECT COUNT(*) FROM _sqlx_migrations", &[])
        .await;
    assert_eq!(after, migrations);
    assert_eq!(raw.tables().await, tables);
}

// SQLite only: `synchronous` and the busy timeout are SQLite options.
#[tokio::test]
async fn normal_synchronous_and_busy_timeout_options_open() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        synchronous_full: false,
        busy_timeout_ms: 100,
        read_only: false,
        ..Default::default()
    };
    let store = Store::open_sqlite(dir.path(), &opts).await.unwrap();
    println!("backend: {}", store.backend_name());
    let (org, _) = org_with_agent(&store, "acme").await;
    assert_eq!(store.get_org(&org.id).await.unwrap().unwrap(), org);
}

both_backends!(orgs_and_admin_tokens);
async fn orgs_and_admin_tokens(db: TestDb) {
    let store = &db.store;
    let org = store
        .create_org_with_admin_token(
            "acme",
            "self_hosted",
            "bootstrap",
            "h1",
            "aaf_adm_ab",
            &ts(5),
        )
        .await
        .unwrap();
    assert_eq!(org.name, "acme");
    assert_eq!(org.plan, "self_hosted");
    assert_eq!(org.created_at, ts(5));
    assert_eq!(uuid::Uuid::parse_str(&org.id).unwrap().get_version_num(), 7);

    assert_eq!(
        store.find_org_by_name("acme").await.unwrap(),
        Some(org.clone())
    );
    assert_eq!(store.get_org(&org.id).await.unwrap(), Some(org.clone()));
    assert_eq!(store.find_org_by_name("ACME").await.unwrap(), None);
    assert_eq!(store.get_org("nope").await.unwrap(), None);

    let principal = store.find_token("h1").await.unwrap().unwrap();
    assert_eq!(principal.org, org);
    assert_eq!(principal.role, "admin");
    assert_eq!(principal.name, "bootstrap");
    assert!(store.find_token("h2").await.unwrap().is_none());

    // The same name is a conflict and writes nothing (no second org, no events).
    let err = store
        .create_org_with_admin_token("acme", "self_hosted", "bootstrap", "h9", "p", &ts(6))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.find_token("h9").await.unwrap().is_none());

    // The audit chain holds org.created and user.created (the first admin), without the hash.
    let events = store.list_audit(&org.id, 0, 100).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event.seq, 1);
    assert_eq!(events[0].prev_hash, GENESIS_HASH);
    assert_eq!(events[0].event.event_type, event_types::ORG_CREATED);
    assert_eq!(events[0].event.data["name"], "acme");
    assert_eq!(events[1].event.event_type, event_types::USER_CREATED);
    assert_eq!(events[1].event.data["token_prefix"], "aaf_adm_ab");
    assert_eq!(events[1].event.data["role"], "admin");
    assert_eq!(events[1].event.data["user_id"], principal.user_id);
    assert_eq!(events[1].event.data["token_id"], principal.token_id);
    assert_eq!(events[1].prev_hash, events[0].hash);
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains("\"h1\""),
        "token hash leaked into the audit log: {text}"
    );

    // A revoked token is not found.
    let mut raw = db.raw().await;
    raw.exec(
        "UPDATE api_tokens SET revoked_at = ? WHERE token_hash = 'h1'",
        &[ts(7).into()],
    )
    .await;
    assert!(store.find_token("h1").await.unwrap().is_none());
    assert_eq!(
        assert_all_chains_verify(store).await,
        vec![(org.id.clone(), 2)]
    );
}

both_backends!(agents_and_keys);
async fn agents_and_keys(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    assert_eq!(agent.org_id, org.id);
    assert_eq!(agent.name, "agent-1");
    assert_eq!(agent.risk_score, 0.25);

    let principal = store.find_agent_key("keyhash-acme").await.unwrap().unwrap();
    assert_eq!(principal.agent, agent);
    assert_eq!(principal.org, org);
    assert_eq!(principal.expires_at, None);
    assert!(!principal.revoked);
    assert!(store.find_agent_key("other").await.unwrap().is_none());

    // Same name in the same org: conflict. Same name in another org: fine.
    let err = store
        .create_agent(&org.id, "agent-1", 0.1, "k2", "p", &ts(2), "t")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.find_agent_key("k2").await.unwrap().is_none());
    let (other_org, other_agent) = org_with_agent(store, "globex").await;
    assert_eq!(other_agent.name, "agent-1");

    // Unknown org: not found.
    let err = store
        .create_agent("no-such-org", "a", 0.1, "k3", "p", &ts(2), "t")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    // Non-finite risk: invalid.
    let err = store
        .create_agent(&org.id, "b", f64::NAN, "k4", "p", &ts(2), "t")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    let second = store
        .create_agent(&org.id, "agent-2", 0.9, "k5", "p", &ts(3), "t")
        .await
        .unwrap();
    let agents = store.list_agents(&org.id).await.unwrap();
    assert_eq!(agents, vec![agent.clone(), second]);
    assert_eq!(
        store.list_agents(&other_org.id).await.unwrap(),
        vec![other_agent]
    );

    // Revocation and expiry are reported.
    let mut raw = db.raw().await;
    raw.exec(
        "UPDATE agent_keys SET revoked_at = ?, expires_at = ? WHERE key_hash = ?",
        &[ts(9).into(), ts(8).into(), "keyhash-acme".into()],
    )
    .await;
    let principal = store.find_agent_key("keyhash-acme").await.unwrap().unwrap();
    assert!(principal.revoked);
    assert_eq!(principal.expires_at, Some(ts(8)));

    // agent.created is in the chain, with the prefix but not the hash.
    let events = store.list_audit(&org.id, 0, 100).await.unwrap();
    let created: Vec<_> = events
        .iter()
        .filter(|e| e.event.event_type == event_types::AGENT_CREATED)
        .collect();
    assert_eq!(created.len(), 2);
    assert_eq!(
        created[0].event.agent_id.as_deref(),
        Some(agent.id.as_str())
    );
    assert_eq!(created[0].event.data["key_prefix"], "aaf_agt_y");
    assert_eq!(created[0].event.data["created_by"], "bootstrap");
    assert!(!serde_json::to_string(&events).unwrap().contains("keyhash"));
    assert_eq!(assert_all_chains_verify(store).await.len(), 2);
}

both_backends!(actions_are_inserted_updated_and_scoped_to_their_org);
async fn actions_are_inserted_updated_and_scoped_to_their_org(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;

    let chained = store
        .commit(&[action_unit(&org, &agent, "act-1", 100)])
        .await
        .unwrap();
    assert_eq!(chained.len(), 1);
    assert_eq!(chained[0].len(), 2);
    assert_eq!(chained[0][0].event.seq, 4); // after org, token and agent events
    assert_eq!(chained[0][1].event.seq, 5);
    assert_eq!(chained[0][1].prev_hash, chained[0][0].hash);

    let stored = store.get_action(&org.id, "act-1").await.unwrap().unwrap();
    assert_eq!(stored, action(&org, &agent, "act-1"));
    assert_eq!(store.get_action(&other.id, "act-1").await.unwrap(), None);

    let update = WriteUnit {
        mutations: Vec::new(),
        action: Some(ActionWrite::Update {
            org_id: org.id.clone(),
            id: "act-1".into(),
            status: aaf_core::action::ActionStatus::Executed,
            result: Some(json!({"status": 200, "body": "ok"})),
            reason: None,
            expected_version: Some(0),
            inputs: None,
            updated_at: ts(200),
        }),
        events: vec![NewEvent {
            org_id: org.id.clone(),
            ts: ts(200),
            agent_id: Some(agent.id.clone()),
            action_id: Some("act-1".into()),
            event_type: event_types::ACTION_EXECUTED.into(),
            data: json!({"status": 200}),
        }],
    };
    let chained = store.commit(&[update]).await.unwrap();
    assert_eq!(chained[0][0].event.seq, 6);
    let stored = store.get_action(&org.id, "act-1").await.unwrap().unwrap();
    assert_eq!(stored.status, aaf_core::action::ActionStatus::Executed);
    assert_eq!(stored.result, Some(json!({"status": 200, "body": "ok"})));
    assert_eq!(stored.updated_at, ts(200));
    assert_eq!(stored.created_at, ts(10));
    assert_eq!(stored.version, 1);

    // Updating an action of another org is not found, and nothing of the batch is written.
    let before = store.list_audit(&org.id, 0, 1000).await.unwrap();
    let bad = WriteUnit {
        mutations: Vec::new(),
        action: Some(ActionWrite::Update {
            org_id: other.id.clone(),
            id: "act-1".into(),
            status: aaf_core::action::ActionStatus::Failed,
            result: None,
            reason: None,
            expected_version: None,
            inputs: None,
            updated_at: ts(300),
        }),
        events: vec![],
    };
    let good = action_unit(&org, &agent, "act-2", 300);
    let err = store.commit(&[good, bad]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(store.list_audit(&org.id, 0, 1000).await.unwrap(), before);
    assert_eq!(store.get_action(&org.id, "act-2").await.unwrap(), None);

    // A duplicate action id is a conflict, and nothing of the batch is written.
    let err = store
        .commit(&[
            action_unit(&org, &agent, "act-3", 400),
            action_unit(&org, &agent, "act-1", 401),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.get_action(&org.id, "act-3").await.unwrap(), None);
    assert_eq!(store.list_audit(&org.id, 0, 1000).await.unwrap(), before);

    // An action of an unknown agent is refused.
    let mut unknown = action_unit(&org, &agent, "act-4", 500);
    if let Some(ActionWrite::Insert(record)) = &mut unknown.action {
        record.agent_id = "no-such-agent".into();
    }
    let err = store.commit(&[unknown]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // An empty commit is a no-op.
    assert!(store.commit(&[]).await.unwrap().is_empty());
    assert_all_chains_verify(store).await;
}

both_backends!(one_batch_appends_to_several_chains_in_unit_order);
async fn one_batch_appends_to_several_chains_in_unit_order(db: TestDb) {
    let store = &db.store;
    let (a, agent_a) = org_with_agent(store, "a").await;
    let (b, agent_b) = org_with_agent(store, "b").await;
    let rejected = |n: u64| NewEvent {
        org_id: SYSTEM_CHAIN.into(),
        ts: ts(n),
        agent_id: None,
        action_id: None,
        event_type: event_types::REQUEST_REJECTED.into(),
        data: json!({"reason": "missing credentials", "ip": "10.0.0.1"}),
    };
    let units = vec![
        action_unit(&a, &agent_a, "a1", 1),
        action_unit(&b, &agent_b, "b1", 2),
        WriteUnit {
            mutations: Vec::new(),
            action: None,
            events: vec![rejected(3), rejected(4)],
        },
        action_unit(&a, &agent_a, "a2", 5),
    ];
    let chained = store.commit(&units).await.unwrap();
    let seqs: Vec<Vec<(String, u64)>> = chained
        .iter()
        .map(|u| {
            u.iter()
                .map(|e| (e.event.org_id.clone(), e.event.seq))
                .collect()
        })
        .collect();
    assert_eq!(
        seqs,
        vec![
            vec![(a.id.clone(), 4), (a.id.clone(), 5)],
            vec![(b.id.clone(), 4), (b.id.clone(), 5)],
            vec![(SYSTEM_CHAIN.to_string(), 1), (SYSTEM_CHAIN.to_string(), 2)],
            vec![(a.id.clone(), 6), (a.id.clone(), 7)],
        ]
    );
    assert_eq!(chained[3][0].prev_hash, chained[0][1].hash);
    assert_eq!(chained[2][0].prev_hash, GENESIS_HASH);
    // What commit returned is what is stored, whose data is in canonical form (RFC 8785:
    // `1.0` is stored as `1`, members sorted).
    let stored_a = store.list_audit(&a.id, 3, 10).await.unwrap();
    let canonical = |mut e: aaf_core::audit::ChainedEvent| {
        let bytes = aaf_core::canonical::to_canonical_json(&e.event.data).unwrap();
        e.event.data = serde_json::from_slice(&bytes).unwrap();
        e
    };
    let returned: Vec<_> = [chained[0].clone(), chained[3].clone()]
        .concat()
        .into_iter()
        .map(canonical)
        .collect();
    assert_eq!(stored_a, returned);

    let mut counts = assert_all_chains_verify(store).await;
    counts.sort();
    let mut expected = vec![
        (a.id.clone(), 7),
        (b.id.clone(), 5),
        (SYSTEM_CHAIN.to_string(), 2),
    ];
    expected.sort();
    assert_eq!(counts, expected);

    let mut raw = db.raw().await;
    let heads: Vec<(String, i64)> = raw
        .rows("SELECT org_id, seq FROM audit_heads ORDER BY org_id", &[])
        .await;
    assert_eq!(heads.len(), 3);
    for (org, seq) in heads {
        let expected_seq = expected.iter().find(|(o, _)| *o == org).unwrap().1;
        assert_eq!(seq as u64, expected_seq);
    }
}

both_backends!(list_audit_pages_in_seq_order);
async fn list_audit_pages_in_seq_order(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let units: Vec<WriteUnit> = (0..10)
        .map(|i| action_unit(&org, &agent, &format!("x{i}"), i))
        .collect();
    store.commit(&units).await.unwrap();
    // 3 setup events + 20 action events.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.list_audit(&org.id, after, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().unwrap().event.seq;
        seen.extend(page.into_iter().map(|e| e.event.seq));
    }
    assert_eq!(seen, (1..=23).collect::<Vec<u64>>());
    assert!(store.list_audit(&org.id, 23, 10).await.unwrap().is_empty());
    assert!(store
        .list_audit(&org.id, u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_audit("other", 0, 10).await.unwrap().is_empty());
}

// SQLite only: a read-only open of a data directory (a missing file is an error, nothing is
// created). PostgreSQL's read-only open is tested in postgres_rls.rs.
#[tokio::test]
async fn read_only_store_reads_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let ro = StoreOptions {
        read_only: true,
        ..StoreOptions::default()
    };
    let missing = Store::open_sqlite(dir.path(), &ro).await.unwrap_err();
    assert!(matches!(missing, StoreError::Unavailable(_)), "{missing:?}");
    assert!(!dir.path().join("aaf.db").exists());

    let store = common::open(dir.path()).await;
    let (org, agent) = org_with_agent(&store, "acme").await;
    store.close().await;

    let reader = Store::open_sqlite(dir.path(), &ro).await.unwrap();
    assert_eq!(reader.get_org(&org.id).await.unwrap(), Some(org.clone()));
    assert_eq!(
        assert_all_chains_verify(&reader).await,
        vec![(org.id.clone(), 3)]
    );
    let err = reader
        .commit(&[action_unit(&org, &agent, "a", 1)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    let err = reader
        .create_org_with_admin_token("x", "p", "t", "h", "p", &ts(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
}

both_backends!(reopening_keeps_the_chain_and_appends_continue_it);
async fn reopening_keeps_the_chain_and_appends_continue_it(db: TestDb) {
    let store = db.store.clone();
    let (org, agent) = org_with_agent(&store, "acme").await;
    let first = store
        .commit(&[action_unit(&org, &agent, "a1", 1)])
        .await
        .unwrap();
    store.close().await;
    assert!(matches!(
        store.get_org(&org.id).await.unwrap_err(),
        StoreError::Unavailable(_)
    ));
    drop(store);
    assert!(matches!(
        db.store.get_org(&org.id).await.unwrap_err(),
        StoreError::Unavailable(_)
    ));

    let store = db.reopen().await;
    let second = store
        .commit(&[action_unit(&org, &agent, "a2", 2)])
        .await
        .unwrap();
    assert_eq!(second[0][0].event.seq, first[0][1].event.seq + 1);
    assert_eq!(second[0][0].prev_hash, first[0][1].hash);
    assert_eq!(
        assert_all_chains_verify(&store).await,
        vec![(org.id.clone(), 7)]
    );
    assert!(store.get_action(&org.id, "a1").await.unwrap().is_some());
}

both_backends!(audit_events_reject_plain_updates_and_deletes);
async fn audit_events_reject_plain_updates_and_deletes(db: TestDb) {
    let (org, _) = org_with_agent(&db.store, "acme").await;
    let mut raw = db.raw().await;
    let err = raw
        .try_exec(
            "UPDATE audit_events SET data = '{}' WHERE org_id = ?",
            &[(&org.id).into()],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = raw
        .try_exec("DELETE FROM audit_events", &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert_eq!(assert_all_chains_verify(&db.store).await, vec![(org.id, 3)]);
}
