//! Kill switches, key revocation and isolation snapshots in the store, on both backends:
//! engaging and releasing advance the organisation's generation, a release is once, another
//! organisation's switch cannot be released, and an agent's history is read within its
//! organisation only.

use aaf_core::kill_switch::{KillSwitch, KillSwitchScope, KillSwitchSource};
use aaf_store::{AgentSnapshot, Mutation, StoreError, WriteUnit};

use crate::common::{action_unit, assert_all_chains_verify, org_with_agent, ts, TestDb};

fn switch(
    org_id: &str,
    id: &str,
    scope: KillSwitchScope,
    agent: Option<&str>,
    tool: Option<&str>,
) -> KillSwitch {
    KillSwitch {
        id: id.into(),
        org_id: org_id.into(),
        scope,
        agent_id: agent.map(str::to_string),
        tool: tool.map(str::to_string),
        reason: format!("reason of {id}"),
        source: KillSwitchSource::Manual,
        created_at: ts(100),
        created_by: Some("u1".into()),
        expires_at: Some(ts(200)),
        released_at: None,
        released_by: None,
    }
}

fn unit(m: Mutation) -> WriteUnit {
    WriteUnit {
        mutations: vec![m],
        ..WriteUnit::default()
    }
}

both_backends!(kill_switches_are_versioned_per_organisation_and_released_once);
async fn kill_switches_are_versioned_per_organisation_and_released_once(db: TestDb) {
    let store = &db.store;
    let (a, agent_a) = org_with_agent(store, "acme").await;
    let (b, _) = org_with_agent(store, "globex").await;
    assert_eq!(store.runtime_generations().await.unwrap(), vec![]);
    assert_eq!(
        store.kill_switch_state(&a.id, true, 10).await.unwrap(),
        (0, vec![])
    );

    let k1 = switch(&a.id, "k1", KillSwitchScope::Agent, Some(&agent_a.id), None);
    let k2 = switch(
        &a.id,
        "k2",
        KillSwitchScope::AgentTool,
        Some(&agent_a.id),
        Some("http"),
    );
    let k3 = switch(&b.id, "k3", KillSwitchScope::Org, None, None);
    store
        .commit(&[unit(Mutation::InsertKillSwitch(k1.clone()))])
        .await
        .unwrap();
    store
        .commit(&[unit(Mutation::InsertKillSwitch(k2.clone()))])
        .await
        .unwrap();
    store
        .commit(&[unit(Mutation::InsertKillSwitch(k3.clone()))])
        .await
        .unwrap();

    let mut generations = store.runtime_generations().await.unwrap();
    generations.sort();
    let mut expected = vec![(a.id.clone(), 2), (b.id.clone(), 1)];
    expected.sort();
    assert_eq!(generations, expected);
    let (generation, live) = store.kill_switch_state(&a.id, true, 10).await.unwrap();
    assert_eq!(generation, 2);
    assert_eq!(live.len(), 2);
    assert!(
        live.contains(&k1) && live.contains(&k2),
        "round trip: {live:?}"
    );

    // Another organisation's switch is not found, and nothing changes.
    let release_b = Mutation::ReleaseKillSwitch {
        org_id: a.id.clone(),
        id: "k3".into(),
        by: "u1".into(),
        now: ts(150),
    };
    assert!(matches!(
        store.commit(&[unit(release_b)]).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.kill_switch_state(&b.id, true, 10).await.unwrap().1,
        vec![k3]
    );

    let release = || Mutation::ReleaseKillSwitch {
        org_id: a.id.clone(),
        id: "k1".into(),
        by: "u2".into(),
        now: ts(150),
    };
    store.commit(&[unit(release())]).await.unwrap();
    assert!(
        matches!(
            store.commit(&[unit(release())]).await,
            Err(StoreError::NotFound(_))
        ),
        "a release is once"
    );
    let (generation, live) = store.kill_switch_state(&a.id, true, 10).await.unwrap();
    assert_eq!((generation, live), (3, vec![k2]));
    let (_, all) = store.kill_switch_state(&a.id, false, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    let released = all.iter().find(|k| k.id == "k1").unwrap();
    assert_eq!(released.released_at.as_deref(), Some(ts(150).as_str()));
    assert_eq!(released.released_by.as_deref(), Some("u2"));

    // A scope without its target is refused by the database too.
    let mut bad = switch(&a.id, "k4", KillSwitchScope::Agent, None, None);
    bad.tool = Some("http".into());
    assert!(store
        .commit(&[unit(Mutation::InsertKillSwitch(bad))])
        .await
        .is_err());
    assert_eq!(
        store.kill_switch_state(&a.id, true, 10).await.unwrap().0,
        3,
        "a refused unit changes nothing"
    );
    assert_all_chains_verify(store).await;
}

both_backends!(isolation_revokes_every_key_and_keeps_the_agents_history);
async fn isolation_revokes_every_key_and_keeps_the_agents_history(db: TestDb) {
    let store = &db.store;
    let (a, agent) = org_with_agent(store, "acme").await;
    let (b, other) = org_with_agent(store, "globex").await;
    store
        .commit(&[
            action_unit(&a, &agent, "a-act-1", 10),
            action_unit(&a, &agent, "a-act-2", 11),
            action_unit(&b, &other, "b-act-1", 12),
        ])
        .await
        .unwrap();
    let (actions, events) = store
        .agent_history(&a.id, &agent.id, 100, 100)
        .await
        .unwrap();
    assert_eq!(
        actions.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(),
        ["a-act-2", "a-act-1"]
    );
    assert!(!events.is_empty());
    assert!(events
        .iter()
        .all(|e| e.event.agent_id.as_deref() == Some(agent.id.as_str())));
    assert!(
        events.windows(2).all(|w| w[0].event.seq > w[1].event.seq),
        "newest first"
    );
    // The window bounds the read: only the newest action of the organisation is looked at.
    let (actions, _) = store.agent_history(&a.id, &agent.id, 1, 100).await.unwrap();
    assert_eq!(actions.len(), 1);
    // Another organisation's agent has nothing here.
    let (actions, events) = store
        .agent_history(&a.id, &other.id, 100, 100)
        .await
        .unwrap();
    assert!(actions.is_empty() && events.is_empty());

    let k = switch(&a.id, "iso", KillSwitchScope::Agent, Some(&agent.id), None);
    let snapshot = AgentSnapshot {
        id: "snap-1".into(),
        org_id: a.id.clone(),
        agent_id: agent.id.clone(),
        kill_switch_id: "iso".into(),
        created_at: ts(300),
        created_by: Some("u1".into()),
        sha256: "ab".repeat(32),
        snapshot: serde_json::json!({"actions": [{"id": "a-act-2"}], "n": 1.5}),
    };
    store
        .commit(&[WriteUnit {
            mutations: vec![
                Mutation::InsertKillSwitch(k),
                Mutation::RevokeAllAgentKeys {
                    org_id: a.id.clone(),
                    agent_id: agent.id.clone(),
                    now: ts(300),
                },
                Mutation::InsertAgentSnapshot(snapshot.clone()),
            ],
            ..WriteUnit::default()
        }])
        .await
        .unwrap();
    let keys = store.list_agent_keys(&a.id, &agent.id).await.unwrap();
    assert!(!keys.is_empty());
    assert!(keys
        .iter()
        .all(|k| k.revoked_at.as_deref() == Some(ts(300).as_str())));
    assert!(store
        .list_agent_keys(&b.id, &other.id)
        .await
        .unwrap()
        .iter()
        .all(|k| k.revoked_at.is_none()));
    assert_eq!(
        store.list_agent_snapshots(&a.id, &agent.id).await.unwrap(),
        vec![snapshot]
    );
    assert!(store
        .list_agent_snapshots(&b.id, &agent.id)
        .await
        .unwrap()
        .is_empty());
    // Revoking an agent with no live key is not an error.
    store
        .commit(&[unit(Mutation::RevokeAllAgentKeys {
            org_id: a.id.clone(),
            agent_id: agent.id.clone(),
            now: ts(301),
        })])
        .await
        .unwrap();
    assert_all_chains_verify(store).await;
}
