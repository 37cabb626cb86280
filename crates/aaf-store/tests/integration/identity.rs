//! Identity mutations on a real database: organisation scoping (another org's id changes
//! nothing), the last-admin rule, key expiry shortening and revocation, nonce reuse, and the
//! upgrade of a database made before users existed.

use aaf_store::units::{self, KeySpec};
use aaf_store::{Mutation, StoreError, WriteUnit};
use sha2::Digest;

use crate::common::{org_with_agent, raw, ts, TestDb};

fn key(hash: &str) -> KeySpec {
    KeySpec {
        key_hash: hash.to_string(),
        prefix: format!("aaf_ak_{hash}"),
        expires_at: Some(ts(3_000_000)),
        tools: Some(vec!["http_proxy".to_string()]),
    }
}

both_backends!(mutations_never_reach_another_organisation);
async fn mutations_never_reach_another_organisation(db: TestDb) {
    let store = &db.store;
    let (acme, acme_agent) = org_with_agent(store, "acme").await;
    let (globex, globex_agent) = org_with_agent(store, "globex").await;

    // A key for globex's agent, claimed to be acme's: not found, nothing written.
    let (_, unit) = units::new_agent_key(&acme.id, &globex_agent.id, &key("k1"), "t", &ts(10));
    let err = store.commit(&[unit]).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(store.find_agent_key("k1").await.unwrap().is_none());
    assert_eq!(store.list_audit(&acme.id, 0, 100).await.unwrap().len(), 3);

    // In its own organisation it works, with the tools and expiry.
    let (row, unit) = units::new_agent_key(&acme.id, &acme_agent.id, &key("k1"), "t", &ts(10));
    store.commit(&[unit]).await.unwrap();
    let principal = store.find_agent_key("k1").await.unwrap().unwrap();
    assert_eq!(principal.tools, Some(vec!["http_proxy".to_string()]));
    assert_eq!(principal.expires_at, Some(ts(3_000_000)));

    // Revoking or shortening it through globex: not found; the key stays live.
    for unit in [
        units::revoke_agent_key(&globex.id, &acme_agent.id, &row.id, "t", &ts(11)),
        WriteUnit {
            mutations: vec![Mutation::ShortenAgentKey {
                org_id: globex.id.clone(),
                agent_id: acme_agent.id.clone(),
                key_id: row.id.clone(),
                expires_at: ts(12),
            }],
            ..WriteUnit::default()
        },
    ] {
        let err = store.commit(&[unit]).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
    let principal = store.find_agent_key("k1").await.unwrap().unwrap();
    assert!(!principal.revoked);
    assert_eq!(principal.expires_at, Some(ts(3_000_000)));

    // Shortening shortens, never lengthens; revoking twice conflicts.
    let shorten = |at: String| WriteUnit {
        mutations: vec![Mutation::ShortenAgentKey {
            org_id: acme.id.clone(),
            agent_id: acme_agent.id.clone(),
            key_id: row.id.clone(),
            expires_at: at,
        }],
        ..WriteUnit::default()
    };
    store.commit(&[shorten(ts(20))]).await.unwrap();
    store.commit(&[shorten(ts(4_000_000))]).await.unwrap();
    assert_eq!(
        store
            .find_agent_key("k1")
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        Some(ts(20))
    );
    store
        .commit(&[units::revoke_agent_key(
            &acme.id,
            &acme_agent.id,
            &row.id,
            "t",
            &ts(21),
        )])
        .await
        .unwrap();
    assert!(store.find_agent_key("k1").await.unwrap().unwrap().revoked);
    let err = store
        .commit(&[units::revoke_agent_key(
            &acme.id,
            &acme_agent.id,
            &row.id,
            "t",
            &ts(22),
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // Users: another org's user cannot be changed or given a token.
    let (user, _, unit) = units::new_user(&acme.id, "alice", "viewer", "ht1", "p", "t", &ts(30));
    store.commit(&[unit]).await.unwrap();
    let err = store
        .commit(&[units::set_user_role(
            &globex.id,
            &user.id,
            "viewer",
            "admin",
            "t",
            &ts(31),
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store
        .commit(&[WriteUnit {
            mutations: vec![Mutation::InsertToken {
                id: "tok-x".into(),
                org_id: globex.id.clone(),
                user_id: user.id.clone(),
                name: "x".into(),
                token_hash: "ht2".into(),
                prefix: "p".into(),
                created_at: ts(32),
            }],
            ..WriteUnit::default()
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(store
        .get_user(&globex.id, &user.id)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .get_user(&acme.id, &user.id)
            .await
            .unwrap()
            .unwrap()
            .role,
        "viewer"
    );
    crate::common::assert_all_chains_verify(store).await;
}

both_backends!(an_organisation_keeps_an_admin_and_deleted_users_lose_their_tokens);
async fn an_organisation_keeps_an_admin_and_deleted_users_lose_their_tokens(db: TestDb) {
    let store = &db.store;
    let (org, _) = org_with_agent(store, "acme").await;
    let admin = store.find_token("tokenhash-acme").await.unwrap().unwrap();
    assert_eq!(admin.role, "admin");

    for unit in [
        units::set_user_role(&org.id, &admin.user_id, "admin", "viewer", "t", &ts(40)),
        units::delete_user(&org.id, &admin.user_id, "admin", "t", &ts(41)),
    ] {
        let err = store.commit(&[unit]).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    }

    let (bob, _, unit) = units::new_user(&org.id, "bob", "admin", "bob-hash", "p", "t", &ts(42));
    store.commit(&[unit]).await.unwrap();
    // Names are unique among current users only.
    let (_, _, dup) = units::new_user(&org.id, "bob", "viewer", "bob2", "p", "t", &ts(43));
    assert!(matches!(
        store.commit(&[dup]).await.unwrap_err(),
        StoreError::Conflict(_)
    ));

    // With bob as a second admin, the first may go; its token stops working.
    store
        .commit(&[units::delete_user(
            &org.id,
            &admin.user_id,
            "admin",
            "t",
            &ts(44),
        )])
        .await
        .unwrap();
    assert!(store.find_token("tokenhash-acme").await.unwrap().is_none());
    assert!(store
        .get_user(&org.id, &admin.user_id)
        .await
        .unwrap()
        .is_none());
    let users = store.list_users(&org.id).await.unwrap();
    assert_eq!(
        users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
    // And bob is now the last admin.
    let err = store
        .commit(&[units::set_user_role(
            &org.id,
            &bob.id,
            "admin",
            "auditor",
            "t",
            &ts(45),
        )])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    // A name freed by deletion can be used again.
    let (_, _, again) = units::new_user(&org.id, "admin", "viewer", "h-again", "p", "t", &ts(46));
    store.commit(&[again]).await.unwrap();
    crate::common::assert_all_chains_verify(store).await;
}

both_backends!(a_nonce_is_used_once_until_purged);
async fn a_nonce_is_used_once_until_purged(db: TestDb) {
    let store = &db.store;
    let (org, agent) = org_with_agent(store, "acme").await;
    let use_nonce = |nonce: &str, expires: u64| WriteUnit {
        mutations: vec![Mutation::UseNonce {
            org_id: org.id.clone(),
            agent_id: agent.id.clone(),
            nonce: nonce.to_string(),
            expires_at: ts(expires),
        }],
        ..WriteUnit::default()
    };
    store.commit(&[use_nonce("n1", 100)]).await.unwrap();
    store.commit(&[use_nonce("n2", 300)]).await.unwrap();
    let err = store.commit(&[use_nonce("n1", 100)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.purge_nonces(&ts(200)).await.unwrap(), 1);
    store.commit(&[use_nonce("n1", 400)]).await.unwrap();
    assert!(matches!(
        store.commit(&[use_nonce("n2", 400)]).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
}

/// A database written by the first schema (tokens carried their role; no users) opens with
/// every token turned into a user of that role.
// SQLite only: PostgreSQL support started after the users schema, so there is no older
// PostgreSQL schema to upgrade from.
#[tokio::test]
async fn a_database_from_before_users_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::File::create(dir.path().join(aaf_store::SQLITE_FILE_NAME)).unwrap();
    let mut conn = raw(dir.path()).await;
    let initial = include_str!("../../migrations/sqlite/0001_initial.sql");
    sqlx::raw_sql(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(initial).execute(&mut conn).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (1, 'initial', TRUE, ?, 0)",
    )
    .bind(sha2::Sha384::digest(initial.as_bytes()).to_vec())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(
        "INSERT INTO orgs VALUES ('o1', 'default', 'self_hosted', '2026-11-01T00:00:00.000000Z'); \
         INSERT INTO api_tokens (id, org_id, name, role, token_hash, prefix, created_at) \
         VALUES ('t1', 'o1', 'bootstrap admin', 'admin', 'old-hash', 'aaf_at_x', '2026-11-01T00:00:00.000000Z');",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);

    let store = crate::common::open(dir.path()).await;
    let principal = store.find_token("old-hash").await.unwrap().unwrap();
    assert_eq!(principal.role, "admin");
    assert_eq!(principal.user_id, "t1");
    assert_eq!(principal.name, "bootstrap admin");
    let users = store.list_users("o1").await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].role, "admin");
}
