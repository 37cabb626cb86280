//! PostgreSQL only: tenant isolation by row-level security (what a query that forgets its
//! organisation filter sees and may change), the check of the role the store works as, a
//! read-only store, and two nodes appending to one chain.

use std::collections::HashMap;
use std::time::Duration;

use aaf_store::units::{self, KeySpec};
use aaf_store::{
    Agent, ApprovalVote, AuditWriter, Mutation, Org, OrgSettings, PgOptions, Store, StoreError,
    WriteUnit,
};
use sqlx::{Connection, PgConnection};

use crate::common::{
    action_unit, assert_all_chains_verify, org_with_agent, ts, PgDatabase, TestDb, TestRole,
};

/// Every tenant table with its organisation column.
const TENANT_TABLES: [(&str, &str); 22] = [
    ("agent_profiles", "org_id"),
    ("mcp_servers", "org_id"),
    ("mcp_tool_pins", "org_id"),
    ("kill_switches", "org_id"),
    ("agent_snapshots", "org_id"),
    ("policy_objects", "org_id"),
    ("policy_object_versions", "org_id"),
    ("policy_revisions", "org_id"),
    ("shadow_results", "org_id"),
    ("webhooks", "org_id"),
    ("webhook_deliveries", "org_id"),
    ("approval_votes", "org_id"),
    ("org_settings", "org_id"),
    ("orgs", "id"),
    ("users", "org_id"),
    ("api_tokens", "org_id"),
    ("agents", "org_id"),
    ("agent_keys", "org_id"),
    ("signature_nonces", "org_id"),
    ("actions", "org_id"),
    ("audit_events", "org_id"),
    ("audit_heads", "org_id"),
];

/// Fails the test instead of hanging when a future does not finish.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in time"))
}

/// Gives the organisation rows in every tenant table, through the store: besides its admin,
/// agent and key, a second user with a token, a second agent key, a used signature nonce
/// and two actions with their events.
async fn populate(store: &Store, org: &Org, agent: &Agent, tag: &str) {
    let (_, _, user) = units::new_user(
        &org.id,
        &format!("{tag}-alice"),
        "viewer",
        &format!("{tag}-user-token"),
        "aaf_pat_x",
        "t",
        &ts(20),
    );
    let key = KeySpec {
        key_hash: format!("{tag}-second-key"),
        prefix: "aaf_ak_x".into(),
        expires_at: None,
        tools: None,
    };
    let (_, key) = units::new_agent_key(&org.id, &agent.id, &key, "t", &ts(21));
    let nonce = WriteUnit {
        mutations: vec![Mutation::UseNonce {
            org_id: org.id.clone(),
            agent_id: agent.id.clone(),
            nonce: format!("{tag}-nonce"),
            expires_at: ts(1_000_000),
        }],
        ..WriteUnit::default()
    };
    store
        .commit(&[
            user,
            key,
            nonce,
            action_unit(org, agent, &format!("{tag}-act-1"), 30),
            action_unit(org, agent, &format!("{tag}-act-2"), 31),
        ])
        .await
        .unwrap();
    let approval = WriteUnit {
        mutations: vec![
            Mutation::InsertApprovalVote(ApprovalVote {
                org_id: org.id.clone(),
                action_id: format!("{tag}-act-1"),
                user_id: format!("{tag}-approver"),
                user_name: "approver".into(),
                vote: "approve".into(),
                comment: String::new(),
                created_at: ts(40),
            }),
            Mutation::SetOrgSettings(OrgSettings {
                org_id: org.id.clone(),
                four_eyes: false,
                approval_timeout_seconds: Some(60),
                updated_at: ts(41),
                outbound_detection: None,
            }),
        ],
        ..WriteUnit::default()
    };
    store.commit(&[approval]).await.unwrap();
    let (webhook, delivery) = crate::approvals::webhook_and_delivery(&org.id, tag);
    let hooks = WriteUnit {
        mutations: vec![
            Mutation::InsertWebhook(webhook),
            Mutation::InsertDelivery(delivery),
        ],
        ..WriteUnit::default()
    };
    store.commit(&[hooks]).await.unwrap();
    store
        .commit(&[crate::policies::policy_rows(&org.id, tag)])
        .await
        .unwrap();
    let switch = aaf_core::kill_switch::KillSwitch {
        id: format!("{tag}-ks"),
        org_id: org.id.clone(),
        scope: aaf_core::kill_switch::KillSwitchScope::Agent,
        agent_id: Some(agent.id.clone()),
        tool: None,
        reason: "isolated".into(),
        source: aaf_core::kill_switch::KillSwitchSource::Isolation,
        created_at: ts(50),
        created_by: Some("u".into()),
        expires_at: None,
        released_at: None,
        released_by: None,
    };
    let isolation = WriteUnit {
        mutations: vec![
            Mutation::InsertKillSwitch(switch),
            Mutation::InsertAgentSnapshot(aaf_store::AgentSnapshot {
                id: format!("{tag}-snap"),
                org_id: org.id.clone(),
                agent_id: agent.id.clone(),
                kill_switch_id: format!("{tag}-ks"),
                created_at: ts(50),
                created_by: Some("u".into()),
                sha256: "00".repeat(32),
                snapshot: serde_json::json!({"actions": []}),
            }),
        ],
        ..WriteUnit::default()
    };
    store.commit(&[isolation]).await.unwrap();
    let mcp = WriteUnit {
        mutations: vec![
            Mutation::InsertMcpServer(aaf_store::McpServer {
                id: format!("{tag}-mcps"),
                org_id: org.id.clone(),
                name: "everything".into(),
                transport: serde_json::json!({"type": "stdio", "command": "npx"}),
                created_at: ts(60),
                created_by: Some("u".into()),
                updated_at: ts(60),
            }),
            Mutation::PinMcpTool(aaf_store::McpToolPin {
                org_id: org.id.clone(),
                server: "everything".into(),
                tool: "echo".into(),
                hash: "00".repeat(32),
                definition: serde_json::json!({"name": "echo"}),
                pending_hash: None,
                pending_definition: None,
                first_seen_at: ts(61),
                accepted_at: ts(61),
                accepted_by: None,
                changed_at: None,
            }),
        ],
        ..WriteUnit::default()
    };
    store.commit(&[mcp]).await.unwrap();
    let profile = WriteUnit {
        mutations: vec![Mutation::PutAgentProfile {
            record: aaf_store::AgentProfileRecord {
                org_id: org.id.clone(),
                agent_id: agent.id.clone(),
                profile: serde_json::json!({"tools": {}}),
                folded_until: Some((ts(31), format!("{tag}-act-2"))),
                updated_at: ts(70),
            },
            expected: None,
        }],
        ..WriteUnit::default()
    };
    store.commit(&[profile]).await.unwrap();
}

/// `SELECT <column> FROM <table>`: no WHERE clause, as a query that forgot its filter.
async fn unfiltered(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT {column} FROM {table}"))
        .fetch_all(conn)
        .await
}

/// Sets the organisation of the rest of the transaction, as the store does.
async fn set_org(conn: &mut PgConnection, org_id: &str) {
    sqlx::query("SELECT set_config('app.org_id', $1, true)")
        .bind(org_id)
        .execute(conn)
        .await
        .unwrap();
}

async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The SQLSTATE of a database error.
fn sqlstate(error: &sqlx::Error) -> String {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// Grants `aaf_app` to a test role (on the admin connection: roles are cluster-wide).
async fn grant_app_role(db: &PgDatabase, role: &TestRole) {
    let mut admin = db.admin().await;
    exec(&mut admin, &format!("GRANT aaf_app TO \"{}\"", role.name)).await;
    let _ = admin.close().await;
}

postgres_only!(an_unfiltered_query_sees_and_changes_only_its_own_organisation);
async fn an_unfiltered_query_sees_and_changes_only_its_own_organisation(db: TestDb) {
    let (a, agent_a) = org_with_agent(&db.store, "acme").await;
    let (b, agent_b) = org_with_agent(&db.store, "globex").await;
    populate(&db.store, &a, &agent_a, "a").await;
    populate(&db.store, &b, &agent_b, "b").await;

    // As the owner (policy owner_access): both organisations have rows in every table.
    let mut conn = db.pg().owner().await;
    let mut rows_of_a = HashMap::new();
    let mut rows_of_b = HashMap::new();
    for (table, column) in TENANT_TABLES {
        let ids = unfiltered(&mut conn, table, column).await.unwrap();
        let of_a = ids.iter().filter(|id| **id == a.id).count();
        let of_b = ids.iter().filter(|id| **id == b.id).count();
        assert!(of_a > 0 && of_b > 0, "{table}: {ids:?}");
        assert_eq!(of_a + of_b, ids.len(), "{table}: {ids:?}");
        rows_of_a.insert(table, of_a);
        rows_of_b.insert(table, of_b);
    }

    exec(&mut conn, "SET ROLE aaf_app").await;
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(role, "aaf_app");

    // Working for A: every unfiltered query returns A's rows, all of them, and only those.
    let mut tx = conn.begin().await.unwrap();
    set_org(&mut tx, &a.id).await;
    for (table, column) in TENANT_TABLES {
        let ids = unfiltered(&mut tx, table, column).await.unwrap();
        assert_eq!(ids.len(), rows_of_a[table], "{table}: {ids:?}");
        assert!(ids.iter().all(|id| *id == a.id), "{table}: {ids:?}");
    }
    tx.commit().await.unwrap();

    // The setting was transaction-local: a new transaction with no organisation sees
    // nothing at all, and neither does a session that never set one.
    let mut tx = conn.begin().await.unwrap();
    for (table, column) in TENANT_TABLES {
        let ids = unfiltered(&mut tx, table, column).await.unwrap();
        assert!(ids.is_empty(), "{table} without app.org_id: {ids:?}");
    }
    tx.commit().await.unwrap();
    let mut fresh = db.pg().owner().await;
    exec(&mut fresh, "SET ROLE aaf_app").await;
    for (table, column) in TENANT_TABLES {
        let ids = unfiltered(&mut fresh, table, column).await.unwrap();
        assert!(ids.is_empty(), "{table} in a new session: {ids:?}");
    }
    let _ = fresh.close().await;

    // Writing another organisation's rows while working for A: refused by WITH CHECK.
    let writes: [(&str, &str, Vec<&str>); 4] = [
        (
            "insert a nonce of B",
            "INSERT INTO signature_nonces (org_id, agent_id, nonce, expires_at) \
             VALUES ($1, $2, 'forged', '2026-12-01T00:00:00.000000Z')",
            vec![&b.id, &agent_b.id],
        ),
        (
            "create another organisation",
            "INSERT INTO orgs (id, name, plan, created_at) \
             VALUES ('forged-org', 'forged', 'self_hosted', '2026-12-01T00:00:00.000000Z')",
            vec![],
        ),
        (
            "move A's agent to B",
            "UPDATE agents SET org_id = $1",
            vec![&b.id],
        ),
        (
            "append to B's chain",
            "INSERT INTO audit_events (org_id, seq, ts, type, data, prev_hash, hash) \
             VALUES ($1, 1000, '2026-12-01T00:00:00.000000Z', 'action.decided', '{}', 'x', 'y')",
            vec![&b.id],
        ),
    ];
    for (what, sql, binds) in writes {
        let mut tx = conn.begin().await.unwrap();
        set_org(&mut tx, &a.id).await;
        let mut query = sqlx::query(sql);
        for bind in binds {
            query = query.bind(bind);
        }
        let err = query.execute(&mut *tx).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{what}: {err}");
        assert!(
            err.to_string().contains("row-level security"),
            "{what}: {err}"
        );
        tx.rollback().await.unwrap();
    }

    // Unfiltered changes while working for A change A's rows only.
    let mut tx = conn.begin().await.unwrap();
    set_org(&mut tx, &a.id).await;
    let renamed = sqlx::query("UPDATE agents SET name = name || '-renamed'")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(renamed.rows_affected(), rows_of_a["agents"] as u64);
    let forgotten = sqlx::query("DELETE FROM signature_nonces")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(
        forgotten.rows_affected(),
        rows_of_a["signature_nonces"] as u64
    );
    tx.commit().await.unwrap();
    let agents_a = db.store.list_agents(&a.id).await.unwrap();
    assert!(
        agents_a.iter().all(|x| x.name.ends_with("-renamed")),
        "{agents_a:?}"
    );
    let agents_b = db.store.list_agents(&b.id).await.unwrap();
    assert_eq!(agents_b, vec![agent_b.clone()]);

    // The audit trail cannot be changed by the server's role at all: no privilege (even
    // before the append-only trigger), whatever the organisation.
    for sql in [
        "UPDATE audit_events SET data = '{}'",
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
        "DELETE FROM audit_heads",
        "UPDATE orgs SET name = 'x'",
        "DELETE FROM orgs",
        "DELETE FROM actions",
    ] {
        let mut tx = conn.begin().await.unwrap();
        set_org(&mut tx, &a.id).await;
        let err = sqlx::query(sql).execute(&mut *tx).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{sql}: {err}");
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
        tx.rollback().await.unwrap();
    }

    // B's rows are all still there, and every chain verifies.
    exec(&mut conn, "RESET ROLE").await;
    for (table, column) in TENANT_TABLES {
        let ids = unfiltered(&mut conn, table, column).await.unwrap();
        let of_b = ids.iter().filter(|id| **id == b.id).count();
        assert_eq!(of_b, rows_of_b[table], "{table}: {ids:?}");
    }
    let _ = conn.close().await;
    let mut counts = assert_all_chains_verify(&db.store).await;
    counts.sort();
    let mut expected = vec![(a.id.clone(), 3 + 2 + 4), (b.id.clone(), 3 + 2 + 4)];
    expected.sort();
    assert_eq!(counts, expected);
}

/// Tables of the migrations without row-level security, on purpose: the migrations'
/// bookkeeping, and the generations every node polls for all organisations at once (a
/// number per organisation, nothing of its content).
const TABLES_WITHOUT_RLS: [&str; 3] = ["_sqlx_migrations", "policy_state", "runtime_state"];

postgres_only!(every_tenant_table_has_forced_row_level_security);
async fn every_tenant_table_has_forced_row_level_security(db: TestDb) {
    let mut conn = db.pg().owner().await;
    let tables: Vec<(String, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity, \
           COALESCE(ARRAY(SELECT p.policyname::text FROM pg_policies p \
             WHERE p.schemaname = n.nspname AND p.tablename = c.relname \
             ORDER BY p.policyname), ARRAY[]::text[]) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    for (table, _) in TENANT_TABLES {
        assert!(names.contains(&table), "{table} missing: {names:?}");
    }
    for (table, enabled, forced, policies) in &tables {
        if TABLES_WITHOUT_RLS.contains(&table.as_str()) {
            continue;
        }
        assert!(
            *enabled && *forced,
            "{table}: row-level security not forced"
        );
        assert_eq!(
            policies,
            &["owner_access", "tenant_isolation"],
            "{table}: policies"
        );
    }
    assert!(names.contains(&"agent_profiles"), "{names:?}");
}

postgres_only!(the_owner_url_works_as_aaf_app);
async fn the_owner_url_works_as_aaf_app(db: TestDb) {
    let (a, agent_a) = org_with_agent(&db.store, "acme").await;
    let (b, _) = org_with_agent(&db.store, "globex").await;
    // Record who writes: the role the statement runs as, and the login role.
    let mut owner = db.pg().owner().await;
    exec(
        &mut owner,
        "ALTER TABLE signature_nonces ADD COLUMN written_as TEXT DEFAULT current_user, \
         ADD COLUMN logged_in_as TEXT DEFAULT session_user",
    )
    .await;
    db.store
        .commit(&[WriteUnit {
            mutations: vec![Mutation::UseNonce {
                org_id: a.id.clone(),
                agent_id: agent_a.id.clone(),
                nonce: "n1".into(),
                expires_at: ts(100),
            }],
            ..WriteUnit::default()
        }])
        .await
        .unwrap();
    let (written_as, logged_in_as): (String, String) =
        sqlx::query_as("SELECT written_as, logged_in_as FROM signature_nonces")
            .fetch_one(&mut owner)
            .await
            .unwrap();
    let owner_name: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(written_as, "aaf_app");
    assert_eq!(logged_in_as, owner_name);
    let _ = owner.close().await;

    // And row-level security applies to what it reads: get_org reads `orgs` without a
    // filter of its own, so without RLS it would answer with whichever org came first.
    assert_eq!(db.store.get_org(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(db.store.get_org(&b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(db.store.get_org("no-such-org").await.unwrap(), None);
}

postgres_only!(a_role_that_may_bypass_row_level_security_is_refused);
async fn a_role_that_may_bypass_row_level_security_is_refused(db: TestDb) {
    // The database is migrated (by the owner); this login role is no member of aaf_app.
    let role = TestRole::create(db.pg(), "aaf_t_bypass_", "LOGIN BYPASSRLS").await;
    let url = db.pg().url_as(&role.name);
    // Read-only, so that the open goes straight to the role check (a read-write open first
    // migrates, which only the owner may; it is refused as well, below).
    let read_only = PgOptions {
        read_only: true,
        max_connections: 2,
        ..Default::default()
    };
    let err = Store::open_postgres(&url, &read_only).await.unwrap_err();
    println!("refused: {err}");
    match &err {
        StoreError::Unavailable(message) => {
            assert!(message.contains("row-level security"), "{message}");
            assert!(message.contains(&role.name), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let err = Store::open_postgres(&url, &PgOptions::default())
        .await
        .unwrap_err();
    println!("refused (read-write): {err}");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

postgres_only!(a_login_role_that_is_a_member_of_aaf_app_is_accepted);
async fn a_login_role_that_is_a_member_of_aaf_app_is_accepted(db: TestDb) {
    let (a, agent_a) = org_with_agent(&db.store, "acme").await;
    let (b, _) = org_with_agent(&db.store, "globex").await;
    let role = TestRole::create(db.pg(), "aaf_t_login_", "LOGIN").await;
    grant_app_role(db.pg(), &role).await;
    // Read-only here; the read-write open is the next test.
    let store = Store::open_postgres(
        &db.pg().url_as(&role.name),
        &PgOptions {
            read_only: true,
            max_connections: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(store.get_org(&a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.get_org(&b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(store.get_org("no-such-org").await.unwrap(), None);
    assert_eq!(
        store
            .find_token("tokenhash-globex")
            .await
            .unwrap()
            .unwrap()
            .org,
        b
    );
    assert_eq!(
        store.list_agents(&a.id).await.unwrap(),
        vec![agent_a.clone()]
    );
    assert_eq!(assert_all_chains_verify(&store).await.len(), 2);
    let err = store
        .commit(&[action_unit(&a, &agent_a, "x", 1)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    store.close().await;
}

postgres_only!(a_login_role_that_is_a_member_of_aaf_app_can_write);
async fn a_login_role_that_is_a_member_of_aaf_app_can_write(db: TestDb) {
    let (a, agent_a) = org_with_agent(&db.store, "acme").await;
    let (b, _) = org_with_agent(&db.store, "globex").await;
    let role = TestRole::create(db.pg(), "aaf_t_login_", "LOGIN").await;
    grant_app_role(db.pg(), &role).await;
    let store = Store::open_postgres(&db.pg().url_as(&role.name), &PgOptions::default())
        .await
        .unwrap();
    store
        .commit(&[action_unit(&a, &agent_a, "x", 1)])
        .await
        .unwrap();
    assert_eq!(store.get_org(&b.id).await.unwrap(), Some(b.clone()));
    assert!(store.get_action(&b.id, "x").await.unwrap().is_none());
    assert!(store.get_action(&a.id, "x").await.unwrap().is_some());
    assert_all_chains_verify(&store).await;
    store.close().await;
}

postgres_only!(a_read_only_store_reads_and_never_writes);
async fn a_read_only_store_reads_and_never_writes(db: TestDb) {
    let (org, agent) = org_with_agent(&db.store, "acme").await;
    let reader = Store::open_postgres(
        &db.pg().url,
        &PgOptions {
            read_only: true,
            max_connections: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
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
    let err = reader.purge_nonces(&ts(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(reader.get_action(&org.id, "a").await.unwrap().is_none());
    reader.close().await;
}

postgres_only!(
    two_nodes_append_to_one_chain_without_gaps,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn two_nodes_append_to_one_chain_without_gaps(db: TestDb) {
    const NODES: usize = 2;
    const TASKS: usize = 8;
    const UNITS: usize = 50;
    let (org, agent) = org_with_agent(&db.store, "acme").await;
    // Two "nodes": stores of their own on the same database, each with its writer.
    let stores = [db.store.clone(), db.reopen().await];
    let writers: Vec<AuditWriter> = stores
        .iter()
        .map(|store| AuditWriter::spawn(store.clone(), 64))
        .collect();

    let mut handles = Vec::new();
    for (node, writer) in writers.iter().enumerate() {
        for task in 0..TASKS {
            let writer = writer.clone();
            let (org, agent) = (org.clone(), agent.clone());
            handles.push(tokio::spawn(async move {
                let mut events = 0u64;
                let mut last_seq = 0;
                for i in 0..UNITS {
                    let n = ((node * TASKS + task) * UNITS + i) as u64;
                    let mut unit = action_unit(&org, &agent, &format!("n{node}-t{task}-{i}"), n);
                    // Every third unit has two events, the others one.
                    if i % 3 != 0 {
                        unit.events.truncate(1);
                    }
                    let chained = writer.submit(unit).await.unwrap();
                    for pair in chained.windows(2) {
                        assert_eq!(pair[1].prev_hash, pair[0].hash);
                        assert_eq!(pair[1].event.seq, pair[0].event.seq + 1);
                    }
                    assert!(chained[0].event.seq > last_seq);
                    last_seq = chained[chained.len() - 1].event.seq;
                    events += chained.len() as u64;
                }
                events
            }));
        }
    }
    let started = std::time::Instant::now();
    let mut total = 3; // org.created, user.created, agent.created
    for handle in handles {
        total += within("submitters", handle).await.unwrap();
    }
    println!(
        "{} units from {NODES} nodes in {:?}",
        NODES * TASKS * UNITS,
        started.elapsed()
    );
    for writer in writers {
        within("shutdown", writer.shutdown()).await;
    }
    let per_task = (0..UNITS)
        .map(|i| if i % 3 == 0 { 2 } else { 1 })
        .sum::<u64>();
    assert_eq!(total, 3 + (NODES * TASKS) as u64 * per_task);

    drop(stores);

    // Checked from a third store (the nodes' own pools may hold connections of their
    // writers' runtimes, which are gone: see writer::reopened).
    let auditor = db.reopen().await;
    assert_eq!(
        assert_all_chains_verify(&auditor).await,
        vec![(org.id.clone(), total)]
    );
    let events = auditor.list_audit(&org.id, 0, u32::MAX).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.event.seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    let mut owner = db.pg().owner().await;
    let (head_seq, head_hash): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE org_id = $1")
            .bind(&org.id)
            .fetch_one(&mut owner)
            .await
            .unwrap();
    let _ = owner.close().await;
    assert_eq!(head_seq as u64, total);
    assert_eq!(head_hash, hex::encode(events[events.len() - 1].hash));
    // How often the chain passed from one node's events to the other's.
    let node_of = |e: &aaf_core::audit::ChainedEvent| {
        e.event
            .action_id
            .as_deref()
            .and_then(|id| id.split('-').next())
            .map(str::to_string)
    };
    let switches = events
        .windows(2)
        .skip(2) // the setup events
        .filter(|w| node_of(&w[0]) != node_of(&w[1]))
        .count();
    println!("the chain switched between the nodes {switches} times");
    assert!(switches >= 1);
}
