//! Budgets in the store, on both backends: a reservation is all or none and never passes a
//! limit, an exhausted window refuses even an empty reservation, settlement moves the spend
//! by what was used (never below zero) once, deletion and changes advance the runtime
//! generation, and another organisation's budget is out of reach.

use aaf_core::budget::{Budget, BudgetPeriod};
use aaf_store::{Mutation, Reservation, StoreError, WriteUnit};

use crate::common::{org_with_agent, ts, TestDb};

fn budget(org_id: &str, id: &str, unit: &str, limit: u64) -> Budget {
    Budget {
        id: id.into(),
        org_id: org_id.into(),
        agent_id: None,
        unit: unit.into(),
        period: BudgetPeriod::Day,
        limit,
        created_at: ts(1),
        updated_at: ts(1),
    }
}

fn unit(m: Mutation) -> WriteUnit {
    WriteUnit {
        mutations: vec![m],
        ..WriteUnit::default()
    }
}

fn reservation(b: &Budget, amount: u64) -> Reservation {
    Reservation {
        budget_id: b.id.clone(),
        window_key: "2026-11-21".into(),
        unit: b.unit.clone(),
        amount,
        limit: b.limit,
    }
}

both_backends!(reservations_are_all_or_none_and_settle_once);
async fn reservations_are_all_or_none_and_settle_once(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    let tokens = budget(&org.id, "b1", "tokens", 100);
    let usd = budget(&org.id, "b2", "USD", 1000);
    for b in [&tokens, &usd] {
        store
            .commit(&[unit(Mutation::InsertBudget {
                budget: b.clone(),
                by: Some("u1".into()),
            })])
            .await
            .unwrap();
    }
    assert_eq!(
        store.list_budgets(&org.id).await.unwrap(),
        vec![tokens.clone(), usd.clone()]
    );
    assert_eq!(store.list_budgets(&other.id).await.unwrap(), vec![]);
    let generation = |gens: Vec<(String, i64)>| gens.into_iter().find(|(o, _)| *o == org.id);
    assert_eq!(
        generation(store.runtime_generations().await.unwrap()),
        Some((org.id.clone(), 2))
    );

    let reserve = |action: &'static str, t: u64, c: u64| {
        let r = vec![reservation(&tokens, t), reservation(&usd, c)];
        let (org_id, agent_id) = (org.id.clone(), agent.id.clone());
        async move {
            store
                .budget_reserve(&org_id, action, &agent_id, &ts(2), &r)
                .await
                .unwrap()
        }
    };
    assert_eq!(reserve("a1", 60, 100).await, Ok(vec![60, 100]));
    // The second budget fits, the first does not: nothing is reserved.
    assert_eq!(reserve("a2", 50, 100).await, Err((0, 60)));
    let windows = vec![
        (tokens.id.clone(), "2026-11-21".to_string()),
        (usd.id.clone(), "2026-11-21".to_string()),
    ];
    assert_eq!(
        store.budget_spent(&org.id, &windows).await.unwrap(),
        vec![60, 100]
    );
    assert_eq!(reserve("a3", 40, 900).await, Ok(vec![100, 1000]));
    // Exhausted: even an action that expects nothing is refused.
    assert_eq!(reserve("a4", 0, 0).await, Err((0, 100)));
    // The same action cannot reserve twice.
    let twice = store
        .budget_reserve(&org.id, "a1", &agent.id, &ts(3), &[reservation(&tokens, 0)])
        .await;
    assert!(
        matches!(twice, Ok(Err(_)) | Err(StoreError::Conflict(_))),
        "{twice:?}"
    );

    // a1 used 10 tokens and 30 micro-units: 50 tokens and 70 come back; a second settlement
    // changes nothing.
    for _ in 0..2 {
        store
            .commit(&[unit(Mutation::SettleBudget {
                org_id: org.id.clone(),
                action_id: "a1".into(),
                tokens: Some(10),
                cost: Some(30),
                now: ts(4),
            })])
            .await
            .unwrap();
    }
    assert_eq!(
        store.budget_spent(&org.id, &windows).await.unwrap(),
        vec![50, 930]
    );
    // Unknown usage keeps the reservation as the charge.
    store
        .commit(&[unit(Mutation::SettleBudget {
            org_id: org.id.clone(),
            action_id: "a3".into(),
            tokens: None,
            cost: None,
            now: ts(5),
        })])
        .await
        .unwrap();
    assert_eq!(
        store.budget_spent(&org.id, &windows).await.unwrap(),
        vec![50, 930]
    );
    assert_eq!(
        store
            .agent_spend_since(&org.id, &agent.id, "USD", &ts(0))
            .await
            .unwrap(),
        930
    );

    // Changes and deletion: the organisation's only; another organisation's is not found.
    let update = |org_id: &str, limit| {
        unit(Mutation::UpdateBudget {
            org_id: org_id.into(),
            id: "b1".into(),
            limit,
            now: ts(6),
        })
    };
    assert!(matches!(
        store.commit(&[update(&other.id, 5)]).await,
        Err(StoreError::NotFound(_))
    ));
    store.commit(&[update(&org.id, 500)]).await.unwrap();
    assert_eq!(store.list_budgets(&org.id).await.unwrap()[0].limit, 500);
    store
        .commit(&[unit(Mutation::DeleteBudget {
            org_id: org.id.clone(),
            id: "b2".into(),
            by: "u1".into(),
            now: ts(7),
        })])
        .await
        .unwrap();
    assert_eq!(store.list_budgets(&org.id).await.unwrap().len(), 1);
    assert_eq!(
        generation(store.runtime_generations().await.unwrap()),
        Some((org.id.clone(), 4))
    );
}
