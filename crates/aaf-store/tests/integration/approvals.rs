//! The store's part of the approvals workflow, on both backends: compare-and-set updates of
//! an action (exactly one of two concurrent transitions wins, and a loser writes nothing),
//! approvers' answers (one per user, only on the organisation's actions), settings, and the
//! queries the sweepers use.

use aaf_store::{
    ActionQuery, ActionWrite, ApprovalVote, DeliveryUpdate, Mutation, NewEvent, OrgSettings,
    StoreError, Webhook, WebhookDelivery, WriteUnit,
};
use serde_json::json;

use crate::common::{action_unit, assert_all_chains_verify, org_with_agent, ts, TestDb};

fn vote(org_id: &str, action_id: &str, user: &str, n: u64) -> Mutation {
    Mutation::InsertApprovalVote(ApprovalVote {
        org_id: org_id.into(),
        action_id: action_id.into(),
        user_id: user.into(),
        user_name: format!("{user}-name"),
        vote: "approve".into(),
        comment: format!("ok from {user}"),
        created_at: ts(n),
    })
}

fn transition(org_id: &str, id: &str, status: &str, expected: i64, n: u64) -> ActionWrite {
    ActionWrite::Update {
        org_id: org_id.into(),
        id: id.into(),
        status: aaf_core::action::ActionStatus::parse(status).unwrap(),
        result: None,
        reason: Some(format!("now {status}")),
        expected_version: Some(expected),
        inputs: None,
        updated_at: ts(n),
    }
}

fn event(org_id: &str, id: &str, kind: &str, n: u64) -> NewEvent {
    NewEvent {
        org_id: org_id.into(),
        ts: ts(n),
        agent_id: None,
        action_id: Some(id.into()),
        event_type: kind.into(),
        data: json!({}),
    }
}

both_backends!(a_transition_is_a_compare_and_set_and_a_loser_writes_nothing);
async fn a_transition_is_a_compare_and_set_and_a_loser_writes_nothing(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let mut unit = action_unit(&org, &agent, "act-1", 10);
    if let Some(ActionWrite::Insert(record)) = &mut unit.action {
        record.status = aaf_core::action::ActionStatus::PendingApproval;
        record.version = 41; // ignored: an inserted action starts at version 0
    }
    store.commit(&[unit]).await.unwrap();
    let stored = store.get_action(&org.id, "act-1").await.unwrap().unwrap();
    assert_eq!((stored.version, stored.approvals_required), (0, Some(2)));

    // Two approvers read version 0 and both try to move it: the first commits...
    let first = WriteUnit {
        mutations: vec![vote(&org.id, "act-1", "alice", 20)],
        action: Some(transition(&org.id, "act-1", "approved", 0, 20)),
        events: vec![event(&org.id, "act-1", "approval.approved", 20)],
    };
    store.commit(&[first]).await.unwrap();
    let before = store.list_audit(&org.id, 0, 1000).await.unwrap();
    // ... the second finds version 1: a conflict, and neither its vote nor its event lands.
    let second = WriteUnit {
        mutations: vec![vote(&org.id, "act-1", "bob", 21)],
        action: Some(transition(&org.id, "act-1", "rejected", 0, 21)),
        events: vec![event(&org.id, "act-1", "approval.rejected", 21)],
    };
    let err = store.commit(&[second]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Stale(ref m) if m.contains("changed concurrently")),
        "{err:?}"
    );
    assert_eq!(store.list_audit(&org.id, 0, 1000).await.unwrap(), before);
    let votes = store.list_approval_votes(&org.id, "act-1").await.unwrap();
    assert_eq!(votes.len(), 1);
    assert_eq!(
        (votes[0].user_id.as_str(), votes[0].comment.as_str()),
        ("alice", "ok from alice")
    );
    let stored = store.get_action(&org.id, "act-1").await.unwrap().unwrap();
    assert_eq!((stored.status.as_str(), stored.version), ("approved", 1));
    assert_eq!(stored.reason, "now approved");

    // A reason of None keeps the reason; the version goes on counting.
    let keep = WriteUnit {
        action: Some(ActionWrite::Update {
            org_id: org.id.clone(),
            id: "act-1".into(),
            status: aaf_core::action::ActionStatus::Executing,
            result: None,
            reason: None,
            expected_version: Some(1),
            inputs: None,
            updated_at: ts(30),
        }),
        ..WriteUnit::default()
    };
    store.commit(&[keep]).await.unwrap();
    let stored = store.get_action(&org.id, "act-1").await.unwrap().unwrap();
    assert_eq!((stored.status.as_str(), stored.version), ("executing", 2));
    assert_eq!(stored.reason, "now approved");

    // A missing action is not found, whatever the version.
    let missing = WriteUnit {
        action: Some(transition(&org.id, "nope", "approved", 0, 40)),
        ..WriteUnit::default()
    };
    assert!(matches!(
        store.commit(&[missing]).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    assert_all_chains_verify(store).await;
}

both_backends!(approvers_answer_once_and_only_on_their_organisations_actions);
async fn approvers_answer_once_and_only_on_their_organisations_actions(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    store
        .commit(&[action_unit(&org, &agent, "act-1", 10)])
        .await
        .unwrap();
    let once = WriteUnit {
        mutations: vec![vote(&org.id, "act-1", "alice", 20)],
        ..WriteUnit::default()
    };
    store.commit(std::slice::from_ref(&once)).await.unwrap();
    let err = store.commit(&[once]).await.unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateVote(ref m) if m.contains("already answered")),
        "{err:?}"
    );
    // An answer filed under another organisation finds no action there.
    let foreign = WriteUnit {
        mutations: vec![vote(&other.id, "act-1", "mallory", 21)],
        ..WriteUnit::default()
    };
    assert!(matches!(
        store.commit(&[foreign]).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    assert_eq!(
        store
            .list_approval_votes(&org.id, "act-1")
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .list_approval_votes(&other.id, "act-1")
        .await
        .unwrap()
        .is_empty());
}

both_backends!(settings_are_per_organisation_and_replaced);
async fn settings_are_per_organisation_and_replaced(db: TestDb) {
    let store = &db.store;
    let (org, _) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    assert_eq!(store.get_org_settings(&org.id).await.unwrap(), None);
    for (four_eyes, timeout) in [(false, Some(120)), (true, None)] {
        let settings = OrgSettings {
            org_id: org.id.clone(),
            four_eyes,
            approval_timeout_seconds: timeout,
            updated_at: ts(10),
            outbound_detection: Some(serde_json::json!({"pii": "block"})),
        };
        let unit = WriteUnit {
            mutations: vec![Mutation::SetOrgSettings(settings.clone())],
            ..WriteUnit::default()
        };
        store.commit(&[unit]).await.unwrap();
        assert_eq!(
            store.get_org_settings(&org.id).await.unwrap(),
            Some(settings)
        );
    }
    assert_eq!(store.get_org_settings(&other.id).await.unwrap(), None);
}

both_backends!(list_actions_filters_by_status_decision_deadline_and_age);
async fn list_actions_filters_by_status_decision_deadline_and_age(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let (other, other_agent) = org_with_agent(store, "globex").await;
    let mut units = Vec::new();
    for (i, (status, decision, expires, updated)) in [
        ("pending_approval", "require_approval", 100, 10),
        ("pending_approval", "require_approval", 200, 11),
        ("pending_approval", "require_approval", 300, 12),
        ("approved", "require_approval", 100, 13),
        ("executing", "allow", 100, 14),
        ("executing", "require_approval", 100, 15),
        ("allowed", "allow", 100, 16),
    ]
    .into_iter()
    .enumerate()
    {
        let mut unit = action_unit(&org, &agent, &format!("act-{i}"), 10 + i as u64);
        if let Some(ActionWrite::Insert(r)) = &mut unit.action {
            r.status = aaf_core::action::ActionStatus::parse(status).unwrap();
            r.decision = decision.into();
            r.expires_at = Some(ts(expires));
            r.updated_at = ts(updated);
        }
        units.push(unit);
    }
    let mut foreign = action_unit(&other, &other_agent, "foreign", 20);
    if let Some(ActionWrite::Insert(r)) = &mut foreign.action {
        r.status = aaf_core::action::ActionStatus::PendingApproval;
        r.decision = "require_approval".into();
        r.expires_at = Some(ts(1));
    }
    units.push(foreign);
    store.commit(&units).await.unwrap();

    let ids = |actions: Vec<aaf_store::ActionRecord>| -> Vec<String> {
        actions.into_iter().map(|a| a.id).collect()
    };
    let query =
        |status: &str, expires: Option<u64>, updated: Option<u64>, limit: u32| ActionQuery {
            status: aaf_core::action::ActionStatus::parse(status).unwrap(),
            decision: "require_approval".into(),
            expires_at_or_before: expires.map(ts),
            updated_before: updated.map(ts),
            limit,
        };
    let all = store
        .list_actions(&org.id, &query("pending_approval", None, None, 10))
        .await;
    assert_eq!(ids(all.unwrap()), ["act-0", "act-1", "act-2"]);
    let due = store
        .list_actions(&org.id, &query("pending_approval", Some(200), None, 10))
        .await;
    assert_eq!(ids(due.unwrap()), ["act-0", "act-1"]);
    let limited = store
        .list_actions(&org.id, &query("pending_approval", None, None, 1))
        .await;
    assert_eq!(ids(limited.unwrap()), ["act-0"]);
    let stale = store
        .list_actions(&org.id, &query("pending_approval", None, Some(12), 10))
        .await;
    assert_eq!(ids(stale.unwrap()), ["act-0", "act-1"]);
    let approved = store
        .list_actions(&org.id, &query("approved", None, None, 10))
        .await;
    assert_eq!(ids(approved.unwrap()), ["act-3"]);
    // The decision is part of the filter: the limit counts only matching actions.
    let executing_approved = store
        .list_actions(&org.id, &query("executing", None, None, 1))
        .await;
    assert_eq!(ids(executing_approved.unwrap()), ["act-5"]);
    let executing_allowed = store
        .list_actions(
            &org.id,
            &ActionQuery {
                decision: "allow".into(),
                ..query("executing", None, None, 1)
            },
        )
        .await;
    assert_eq!(ids(executing_allowed.unwrap()), ["act-4"]);
}

/// A webhook of `org_id` and one delivery to it, ids tagged with `tag`.
pub fn webhook_and_delivery(org_id: &str, tag: &str) -> (Webhook, WebhookDelivery) {
    let webhook = Webhook {
        id: format!("{tag}-hook"),
        org_id: org_id.into(),
        url: "https://hooks.example.com/aaf".into(),
        events: vec!["approval.requested".into(), "approval.expired".into()],
        format: "json".into(),
        secret: "s3cret".into(),
        created_at: ts(50),
        created_by: Some("admin".into()),
        disabled_at: None,
    };
    let delivery = WebhookDelivery {
        id: format!("{tag}-delivery"),
        org_id: org_id.into(),
        webhook_id: webhook.id.clone(),
        event: "approval.requested".into(),
        action_id: Some(format!("{tag}-act-1")),
        payload: json!({"event": "approval.requested"}),
        status: "pending".into(),
        attempts: 0,
        next_attempt_at: ts(60),
        last_status_code: None,
        last_error: None,
        created_at: ts(60),
        updated_at: ts(60),
        version: 0,
    };
    (webhook, delivery)
}

both_backends!(webhooks_and_deliveries_are_queued_claimed_once_and_scoped);
async fn webhooks_and_deliveries_are_queued_claimed_once_and_scoped(db: TestDb) {
    let store = &db.store;
    let (org, _) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    let (webhook, delivery) = webhook_and_delivery(&org.id, "a");
    let unit = WriteUnit {
        mutations: vec![
            Mutation::InsertWebhook(webhook.clone()),
            Mutation::InsertDelivery(delivery.clone()),
        ],
        ..WriteUnit::default()
    };
    store.commit(&[unit]).await.unwrap();
    assert_eq!(
        store.list_webhooks(&org.id).await.unwrap(),
        vec![webhook.clone()]
    );
    assert!(store.list_webhooks(&other.id).await.unwrap().is_empty());

    // Due only once its time has come; another organisation sees none of it.
    assert!(store
        .due_deliveries(&org.id, &ts(59), 10)
        .await
        .unwrap()
        .is_empty());
    let due = store.due_deliveries(&org.id, &ts(60), 10).await.unwrap();
    assert_eq!(due, vec![delivery.clone()]);
    assert!(store
        .due_deliveries(&other.id, &ts(99), 10)
        .await
        .unwrap()
        .is_empty());

    // Two workers claim the same attempt: one wins.
    let claim = DeliveryUpdate {
        org_id: org.id.clone(),
        id: delivery.id.clone(),
        expected_version: 0,
        status: "pending".into(),
        attempts: 1,
        next_attempt_at: ts(120),
        last_status_code: None,
        last_error: None,
        updated_at: ts(61),
    };
    store.update_delivery(&claim).await.unwrap();
    let err = store.update_delivery(&claim).await.unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err:?}");
    let done = DeliveryUpdate {
        expected_version: 1,
        status: "delivered".into(),
        last_status_code: Some(204),
        ..claim.clone()
    };
    store.update_delivery(&done).await.unwrap();
    let listed = store
        .list_deliveries(&org.id, &webhook.id, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].status.as_str(),
            listed[0].attempts,
            listed[0].last_status_code
        ),
        ("delivered", 1, Some(204))
    );
    assert!(store
        .due_deliveries(&org.id, &ts(999), 10)
        .await
        .unwrap()
        .is_empty());
    // Another organisation cannot update it.
    let foreign = DeliveryUpdate {
        org_id: other.id.clone(),
        expected_version: 2,
        ..claim
    };
    assert!(store.update_delivery(&foreign).await.is_err());

    // A delivery for another organisation's webhook finds no webhook; disabling twice fails.
    let (_, mut stray) = webhook_and_delivery(&other.id, "b");
    stray.webhook_id = webhook.id.clone();
    let unit = WriteUnit {
        mutations: vec![Mutation::InsertDelivery(stray)],
        ..WriteUnit::default()
    };
    assert!(matches!(
        store.commit(&[unit]).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    let disable = || WriteUnit {
        mutations: vec![Mutation::DisableWebhook {
            org_id: org.id.clone(),
            id: webhook.id.clone(),
            now: ts(70),
        }],
        ..WriteUnit::default()
    };
    store.commit(&[disable()]).await.unwrap();
    assert!(matches!(
        store.commit(&[disable()]).await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    assert_eq!(
        store.list_webhooks(&org.id).await.unwrap()[0].disabled_at,
        Some(ts(70))
    );
}
