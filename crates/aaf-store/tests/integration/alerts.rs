//! Alerts in the store, on both backends: one unresolved alert per (organisation, rule,
//! subject) (a second raise is `Stale`, also between two stores on one database, and the
//! hit bumps the open one instead), acknowledging and resolving are compare-and-sets on the
//! status committed with their audit events, a resolved alert frees its subject, listings
//! filter and page, counted rules' hits and denial counts are read from the database, and
//! another organisation's alerts are out of reach.

use aaf_store::{
    ActionWrite, Alert, AlertQuery, AlertStatus, Mutation, NewEvent, StoreError, WriteUnit,
};
use serde_json::json;

use crate::common::{action, org_with_agent, ts, TestDb};

fn alert(org_id: &str, id: &str, rule: &str, subject: &str, n: u64) -> Alert {
    Alert {
        id: id.into(),
        org_id: org_id.into(),
        rule: rule.into(),
        subject: subject.into(),
        agent_id: Some("agent-1".into()),
        severity: "warning".into(),
        status: AlertStatus::Open,
        summary: "11 denied actions within 300 seconds (more than 10)".into(),
        detail: json!({"denials": 11, "window_seconds": 300}),
        count: 1,
        first_seen_at: ts(n),
        last_seen_at: ts(n),
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        resolved_by: None,
        kill_switch_id: None,
        updated_at: ts(n),
    }
}

fn raise(a: &Alert) -> WriteUnit {
    WriteUnit {
        mutations: vec![Mutation::InsertAlert(a.clone())],
        action: None,
        events: vec![NewEvent {
            org_id: a.org_id.clone(),
            ts: a.first_seen_at.clone(),
            agent_id: a.agent_id.clone(),
            action_id: None,
            event_type: "alert.raised".into(),
            data: json!({"alert_id": a.id}),
        }],
    }
}

fn transition(org_id: &str, id: &str, from: AlertStatus, to: AlertStatus, n: u64) -> WriteUnit {
    WriteUnit {
        mutations: vec![Mutation::AlertTransition {
            org_id: org_id.into(),
            id: id.into(),
            from,
            to,
            by: "user-1".into(),
            now: ts(n),
        }],
        action: None,
        events: vec![NewEvent {
            org_id: org_id.into(),
            ts: ts(n),
            agent_id: None,
            action_id: None,
            event_type: "alert.resolved".into(),
            data: json!({"alert_id": id}),
        }],
    }
}

async fn events(db: &TestDb, org_id: &str) -> usize {
    db.store.list_audit(org_id, 0, 10_000).await.unwrap().len()
}

both_backends!(one_open_alert_per_rule_and_subject);
async fn one_open_alert_per_rule_and_subject(db: TestDb) {
    let store = &db.store;
    let (org, _) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    let first = alert(&org.id, "al-1", "repeated_denials", "agent:a1", 1);
    let before = events(&db, &org.id).await;
    store.commit(&[raise(&first)]).await.unwrap();
    assert_eq!(events(&db, &org.id).await, before + 1);
    assert_eq!(
        store.get_alert(&org.id, "al-1").await.unwrap(),
        Some(first.clone())
    );

    // A second raise of the same rule and subject is refused as stale, with its event.
    let second = alert(&org.id, "al-2", "repeated_denials", "agent:a1", 2);
    let e = store.commit(&[raise(&second)]).await.unwrap_err();
    assert!(matches!(e, StoreError::Stale(_)), "{e:?}");
    assert_eq!(events(&db, &org.id).await, before + 1);
    assert_eq!(store.get_alert(&org.id, "al-2").await.unwrap(), None);
    // The hit counts on the open one instead, without an event.
    assert!(store
        .bump_alert(&org.id, "repeated_denials", "agent:a1", &ts(3))
        .await
        .unwrap());
    let bumped = store.get_alert(&org.id, "al-1").await.unwrap().unwrap();
    assert_eq!(
        (bumped.count, bumped.last_seen_at.as_str()),
        (2, ts(3).as_str())
    );
    assert_eq!(bumped.first_seen_at, ts(1));
    assert_eq!(events(&db, &org.id).await, before + 1);
    // Other subjects, rules and organisations are other alerts.
    store
        .commit(&[raise(&alert(
            &org.id,
            "al-3",
            "repeated_denials",
            "agent:a2",
            4,
        ))])
        .await
        .unwrap();
    store
        .commit(&[raise(&alert(
            &org.id,
            "al-4",
            "approval_timeout",
            "agent:a1",
            4,
        ))])
        .await
        .unwrap();
    store
        .commit(&[raise(&alert(
            &other.id,
            "al-5",
            "repeated_denials",
            "agent:a1",
            4,
        ))])
        .await
        .unwrap();
    assert!(!store
        .bump_alert(&org.id, "repeated_denials", "agent:nobody", &ts(5))
        .await
        .unwrap());

    // Acknowledged: still the open alert of its subject.
    store
        .commit(&[transition(
            &org.id,
            "al-1",
            AlertStatus::Open,
            AlertStatus::Acknowledged,
            6,
        )])
        .await
        .unwrap();
    let acked = store.get_alert(&org.id, "al-1").await.unwrap().unwrap();
    assert_eq!(acked.status, AlertStatus::Acknowledged);
    assert_eq!(acked.acknowledged_by.as_deref(), Some("user-1"));
    assert_eq!(acked.acknowledged_at, Some(ts(6)));
    assert!(store
        .bump_alert(&org.id, "repeated_denials", "agent:a1", &ts(7))
        .await
        .unwrap());
    assert!(matches!(
        store.commit(&[raise(&second)]).await.unwrap_err(),
        StoreError::Stale(_)
    ));
    // A transition from a status it is no longer in: stale, nothing written.
    let before = events(&db, &org.id).await;
    let e = store
        .commit(&[transition(
            &org.id,
            "al-1",
            AlertStatus::Open,
            AlertStatus::Acknowledged,
            8,
        )])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Stale(_)), "{e:?}");
    assert_eq!(events(&db, &org.id).await, before);
    // Unknown, or another organisation's: not found.
    for (org_id, id) in [(&org.id, "al-404"), (&other.id, "al-1")] {
        let e = store
            .commit(&[transition(
                org_id,
                id,
                AlertStatus::Open,
                AlertStatus::Resolved,
                8,
            )])
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound(_)), "{e:?}");
    }
    assert_eq!(store.get_alert(&other.id, "al-1").await.unwrap(), None);

    // Resolved: the subject is free, and the resolution time is what counted rules start
    // from.
    assert_eq!(
        store
            .last_resolved_alert_at(&org.id, "repeated_denials", "agent:a1")
            .await
            .unwrap(),
        None
    );
    store
        .commit(&[transition(
            &org.id,
            "al-1",
            AlertStatus::Acknowledged,
            AlertStatus::Resolved,
            9,
        )])
        .await
        .unwrap();
    let resolved = store.get_alert(&org.id, "al-1").await.unwrap().unwrap();
    assert_eq!(resolved.status, AlertStatus::Resolved);
    assert_eq!(resolved.count, 3);
    assert_eq!(
        store
            .last_resolved_alert_at(&org.id, "repeated_denials", "agent:a1")
            .await
            .unwrap(),
        Some(ts(9))
    );
    assert!(!store
        .bump_alert(&org.id, "repeated_denials", "agent:a1", &ts(10))
        .await
        .unwrap());
    store
        .commit(&[raise(&alert(
            &org.id,
            "al-6",
            "repeated_denials",
            "agent:a1",
            11,
        ))])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_alert(&org.id, "al-1")
            .await
            .unwrap()
            .unwrap()
            .count,
        3,
        "a resolved alert no longer counts"
    );
}

both_backends!(two_stores_raising_at_once_make_one_alert);
async fn two_stores_raising_at_once_make_one_alert(db: TestDb) {
    let (org, _) = org_with_agent(&db.store, "acme").await;
    let other_node = db.reopen().await;
    for round in 0..5u64 {
        let subject = format!("agent:a{round}");
        let a = alert(
            &org.id,
            &format!("x-{round}"),
            "repeated_denials",
            &subject,
            1,
        );
        let b = alert(
            &org.id,
            &format!("y-{round}"),
            "repeated_denials",
            &subject,
            1,
        );
        let (ua, ub) = ([raise(&a)], [raise(&b)]);
        let (ra, rb) = tokio::join!(db.store.commit(&ua), other_node.commit(&ub));
        let stale = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Stale(_))))
            .count();
        assert_eq!(
            (ra.is_ok() as usize + rb.is_ok() as usize, stale),
            (1, 1),
            "{ra:?} {rb:?}"
        );
        let open = db
            .store
            .list_alerts(
                &org.id,
                &AlertQuery {
                    status: Some(AlertStatus::Open),
                    limit: 100,
                    ..AlertQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(open.iter().filter(|x| x.subject == subject).count(), 1);
    }
}

both_backends!(listings_filter_and_page_newest_first);
async fn listings_filter_and_page_newest_first(db: TestDb) {
    let store = &db.store;
    let (org, _) = org_with_agent(store, "acme").await;
    for i in 0..5u64 {
        let mut a = alert(
            &org.id,
            &format!("al-{i}"),
            if i % 2 == 0 {
                "repeated_denials"
            } else {
                "approval_timeout"
            },
            &format!("agent:a{i}"),
            i,
        );
        a.agent_id = Some(format!("a{i}"));
        store.commit(&[raise(&a)]).await.unwrap();
    }
    store
        .commit(&[transition(
            &org.id,
            "al-4",
            AlertStatus::Open,
            AlertStatus::Resolved,
            9,
        )])
        .await
        .unwrap();
    let ids = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let all = AlertQuery {
        limit: 100,
        ..AlertQuery::default()
    };
    assert_eq!(
        ids(store.list_alerts(&org.id, &all).await.unwrap()),
        ["al-4", "al-3", "al-2", "al-1", "al-0"]
    );
    let page = AlertQuery {
        limit: 2,
        before_id: Some("al-3".into()),
        ..AlertQuery::default()
    };
    assert_eq!(
        ids(store.list_alerts(&org.id, &page).await.unwrap()),
        ["al-2", "al-1"]
    );
    let filtered = AlertQuery {
        status: Some(AlertStatus::Open),
        rule: Some("repeated_denials".into()),
        limit: 100,
        ..AlertQuery::default()
    };
    assert_eq!(
        ids(store.list_alerts(&org.id, &filtered).await.unwrap()),
        ["al-2", "al-0"]
    );
    let by_agent = AlertQuery {
        agent_id: Some("a3".into()),
        limit: 100,
        ..AlertQuery::default()
    };
    assert_eq!(
        ids(store.list_alerts(&org.id, &by_agent).await.unwrap()),
        ["al-3"]
    );
    let (other, _) = org_with_agent(store, "globex").await;
    assert!(store.list_alerts(&other.id, &all).await.unwrap().is_empty());
}

both_backends!(counted_rules_read_their_windows_from_the_database);
async fn counted_rules_read_their_windows_from_the_database(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    // Hits: every store on the database counts every hit since the window's start.
    let other_node = db.reopen().await;
    let rule = "failed_auth_address";
    let subject = "address:203.0.113.9";
    for n in 1..=3u64 {
        let count = store
            .record_alert_hit(&org.id, rule, subject, &ts(n), &ts(0))
            .await
            .unwrap();
        assert_eq!(count, n);
    }
    assert_eq!(
        other_node
            .record_alert_hit(&org.id, rule, subject, &ts(4), &ts(2))
            .await
            .unwrap(),
        3,
        "hits at 2, 3 and 4"
    );
    assert_eq!(
        store
            .record_alert_hit(&other.id, rule, subject, &ts(5), &ts(0))
            .await
            .unwrap(),
        1,
        "another organisation's hits are its own"
    );
    assert_eq!(store.purge_alert_hits(&org.id, &ts(3)).await.unwrap(), 2);
    assert_eq!(
        store
            .record_alert_hit(&org.id, rule, subject, &ts(6), &ts(0))
            .await
            .unwrap(),
        3
    );

    // Denials: counted from the actions table since the window's start.
    let mut units = Vec::new();
    for (i, decision) in ["deny", "deny", "allow", "deny"].iter().enumerate() {
        let mut a = action(&org, &agent, &format!("act-{i}"));
        a.decision = (*decision).into();
        a.created_at = ts(10 + i as u64);
        units.push(WriteUnit {
            action: Some(ActionWrite::Insert(a)),
            ..WriteUnit::default()
        });
    }
    store.commit(&units).await.unwrap();
    assert_eq!(
        store
            .count_agent_denials(&org.id, &agent.id, &ts(0))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .count_agent_denials(&org.id, &agent.id, &ts(11))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .count_agent_denials(&other.id, &agent.id, &ts(0))
            .await
            .unwrap(),
        0
    );
}
