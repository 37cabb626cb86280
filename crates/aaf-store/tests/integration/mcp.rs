//! The MCP gateway's upstream servers and tool pins in the store, on both backends: a live
//! name is unique per organisation, changes and deletion advance the runtime generation and
//! commit with their audit events (or not at all), the first sight of a tool wins, a changed
//! definition waits until an admin accepts exactly its hash, and another organisation's
//! servers and pins are out of reach.

use aaf_store::{McpServer, McpToolPin, Mutation, NewEvent, Store, StoreError, WriteUnit};
use serde_json::{json, Value};

use crate::common::{org_with_agent, ts, TestDb};

fn unit(m: Mutation) -> WriteUnit {
    WriteUnit {
        mutations: vec![m],
        ..WriteUnit::default()
    }
}

fn server(org_id: &str, id: &str, name: &str, n: u64) -> McpServer {
    McpServer {
        id: id.into(),
        org_id: org_id.into(),
        name: name.into(),
        transport: json!({
            "type": "stdio",
            "command": "npx",
            "args": ["-y", "@modelcontextprotocol/server-everything"],
            "env": {"TOKEN": "${secret:token}"},
            "cwd": null
        }),
        created_at: ts(n),
        created_by: Some("u1".into()),
        updated_at: ts(n),
    }
}

fn definition(tool: &str, description: &str) -> Value {
    json!({
        "name": tool,
        "description": description,
        "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}
    })
}

fn pin(org_id: &str, server: &str, tool: &str, hash: &str, n: u64) -> McpToolPin {
    McpToolPin {
        org_id: org_id.into(),
        server: server.into(),
        tool: tool.into(),
        hash: hash.into(),
        definition: definition(tool, hash),
        pending_hash: None,
        pending_definition: None,
        first_seen_at: ts(n),
        accepted_at: ts(n),
        accepted_by: None,
        changed_at: None,
    }
}

fn flag(org_id: &str, tool: &str, hash: &str, n: u64) -> WriteUnit {
    unit(Mutation::FlagMcpToolChange {
        org_id: org_id.into(),
        server: "everything".into(),
        tool: tool.into(),
        hash: hash.into(),
        definition: definition(tool, hash),
        now: ts(n),
    })
}

fn accept(org_id: &str, tool: &str, hash: &str, n: u64) -> WriteUnit {
    unit(Mutation::AcceptMcpTool {
        org_id: org_id.into(),
        server: "everything".into(),
        tool: tool.into(),
        hash: hash.into(),
        by: "admin-1".into(),
        now: ts(n),
    })
}

/// The organisation's runtime generation (0: never advanced).
async fn generation(store: &Store, org_id: &str) -> i64 {
    store
        .runtime_generations()
        .await
        .unwrap()
        .into_iter()
        .find(|(o, _)| o == org_id)
        .map_or(0, |(_, g)| g)
}

/// How many audit events the organisation's chain has.
async fn events(store: &Store, org_id: &str) -> usize {
    store.list_audit(org_id, 0, 10_000).await.unwrap().len()
}

fn event(org_id: &str, n: u64) -> NewEvent {
    NewEvent {
        org_id: org_id.into(),
        ts: ts(n),
        agent_id: None,
        action_id: None,
        event_type: "mcp.server.created".into(),
        data: json!({"name": "everything"}),
    }
}

both_backends!(servers_are_unique_per_organisation_and_advance_the_generation);
async fn servers_are_unique_per_organisation_and_advance_the_generation(db: TestDb) {
    let store = &db.store;
    let (org, _) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    assert_eq!(generation(store, &org.id).await, 0);
    assert_eq!(store.list_mcp_servers(&org.id).await.unwrap(), vec![]);

    // Created with its audit event, in one commit.
    let everything = server(&org.id, "mcps_1", "everything", 2);
    let before = events(store, &org.id).await;
    store
        .commit(&[WriteUnit {
            mutations: vec![Mutation::InsertMcpServer(everything.clone())],
            events: vec![event(&org.id, 2)],
            ..WriteUnit::default()
        }])
        .await
        .unwrap();
    assert_eq!(events(store, &org.id).await, before + 1);
    assert_eq!(generation(store, &org.id).await, 1);
    let alpha = server(&org.id, "mcps_2", "alpha", 3);
    store
        .commit(&[unit(Mutation::InsertMcpServer(alpha.clone()))])
        .await
        .unwrap();
    assert_eq!(generation(store, &org.id).await, 2);
    // Listed by name; read back exactly as written.
    assert_eq!(
        store.list_mcp_servers(&org.id).await.unwrap(),
        vec![alpha.clone(), everything.clone()]
    );
    assert_eq!(
        store.get_mcp_server(&org.id, "everything").await.unwrap(),
        Some(everything.clone())
    );
    assert_eq!(store.get_mcp_server(&org.id, "nope").await.unwrap(), None);

    // A second live server of the name: a conflict, and its audit event is not written.
    let duplicate = WriteUnit {
        mutations: vec![Mutation::InsertMcpServer(server(
            &org.id,
            "mcps_3",
            "everything",
            4,
        ))],
        events: vec![event(&org.id, 4)],
        ..WriteUnit::default()
    };
    let err = store.commit(&[duplicate]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(events(store, &org.id).await, before + 1);
    assert_eq!(generation(store, &org.id).await, 2);
    // An existing id too.
    let err = store
        .commit(&[unit(Mutation::InsertMcpServer(server(
            &org.id, "mcps_1", "other", 4,
        )))])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // Another organisation sees none of them, and may use the same name.
    assert_eq!(store.list_mcp_servers(&other.id).await.unwrap(), vec![]);
    assert_eq!(
        store.get_mcp_server(&other.id, "everything").await.unwrap(),
        None
    );
    let theirs = server(&other.id, "mcps_4", "everything", 5);
    store
        .commit(&[unit(Mutation::InsertMcpServer(theirs.clone()))])
        .await
        .unwrap();
    assert_eq!(generation(store, &other.id).await, 1);
    assert_eq!(generation(store, &org.id).await, 2);

    // Changes: only a live server of the organisation.
    let update = |org_id: &str, name: &str, n: u64| {
        unit(Mutation::UpdateMcpServer {
            org_id: org_id.into(),
            name: name.into(),
            transport: json!({
                "type": "http",
                "url": "https://mcp.example.com/mcp",
                "headers": {"Authorization": "Bearer ${secret:x}"}
            }),
            now: ts(n),
        })
    };
    for (org_id, name) in [(&other.id, "alpha"), (&org.id, "nope")] {
        let err = store.commit(&[update(org_id, name, 6)]).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
    assert_eq!(generation(store, &org.id).await, 2);
    store
        .commit(&[update(&org.id, "everything", 6)])
        .await
        .unwrap();
    assert_eq!(generation(store, &org.id).await, 3);
    let updated = store
        .get_mcp_server(&org.id, "everything")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.transport["type"], "http");
    assert_eq!(
        updated.transport["headers"]["Authorization"],
        "Bearer ${secret:x}"
    );
    assert_eq!(updated.updated_at, ts(6));
    assert_eq!(updated.created_at, everything.created_at);
    assert_eq!(updated.id, everything.id);
    // The other organisation's server of the same name is unchanged.
    assert_eq!(
        store.get_mcp_server(&other.id, "everything").await.unwrap(),
        Some(theirs.clone())
    );

    // Deletion: only a live server of the organisation; kept in the table, not listed.
    let delete = |org_id: &str, name: &str, n: u64| {
        unit(Mutation::DeleteMcpServer {
            org_id: org_id.into(),
            name: name.into(),
            now: ts(n),
        })
    };
    let err = store
        .commit(&[delete(&other.id, "alpha", 7)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    store
        .commit(&[delete(&org.id, "everything", 7)])
        .await
        .unwrap();
    assert_eq!(generation(store, &org.id).await, 4);
    assert_eq!(
        store.list_mcp_servers(&org.id).await.unwrap(),
        vec![alpha.clone()]
    );
    assert_eq!(
        store.get_mcp_server(&org.id, "everything").await.unwrap(),
        None
    );
    for unit in [
        delete(&org.id, "everything", 8),
        update(&org.id, "everything", 8),
    ] {
        let err = store.commit(&[unit]).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
    assert_eq!(generation(store, &org.id).await, 4);
    let mut raw = db.raw().await;
    let kept: i64 = raw
        .scalar(
            "SELECT COUNT(*) FROM mcp_servers WHERE org_id = ? AND name = 'everything' \
             AND deleted_at IS NOT NULL",
            &[org.id.as_str().into()],
        )
        .await;
    assert_eq!(kept, 1);
    // The name is free again.
    let again = server(&org.id, "mcps_5", "everything", 9);
    store
        .commit(&[unit(Mutation::InsertMcpServer(again.clone()))])
        .await
        .unwrap();
    assert_eq!(generation(store, &org.id).await, 5);
    assert_eq!(
        store.list_mcp_servers(&org.id).await.unwrap(),
        vec![alpha, again]
    );
    assert_eq!(
        store.list_mcp_servers(&other.id).await.unwrap(),
        vec![theirs]
    );
}

both_backends!(
    the_first_sight_of_a_tool_wins_and_a_change_waits_for_its_acceptance,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
);
async fn the_first_sight_of_a_tool_wins_and_a_change_waits_for_its_acceptance(db: TestDb) {
    let store = &db.store;
    let (org, _) = org_with_agent(store, "acme").await;
    let (other, _) = org_with_agent(store, "globex").await;
    let missing = |err: StoreError| assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // No pin yet: nothing to flag or accept.
    missing(
        store
            .commit(&[flag(&org.id, "echo", "h2", 1)])
            .await
            .unwrap_err(),
    );
    missing(
        store
            .commit(&[accept(&org.id, "echo", "h2", 1)])
            .await
            .unwrap_err(),
    );

    // First sights: the first wins, a later (or concurrent) one changes nothing.
    let echo = pin(&org.id, "everything", "echo", "h1", 2);
    store
        .commit(&[unit(Mutation::PinMcpTool(echo.clone()))])
        .await
        .unwrap();
    store
        .commit(&[unit(Mutation::PinMcpTool(pin(
            &org.id,
            "everything",
            "echo",
            "h9",
            3,
        )))])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_mcp_tool_pin(&org.id, "everything", "echo")
            .await
            .unwrap(),
        Some(echo.clone())
    );
    let first = [unit(Mutation::PinMcpTool(pin(
        &org.id,
        "everything",
        "add",
        "ha",
        4,
    )))];
    let second = [unit(Mutation::PinMcpTool(pin(
        &org.id,
        "everything",
        "add",
        "hb",
        4,
    )))];
    let (a, b) = tokio::join!(store.commit(&first), store.commit(&second));
    a.unwrap();
    b.unwrap();
    let add = store
        .get_mcp_tool_pin(&org.id, "everything", "add")
        .await
        .unwrap()
        .unwrap();
    assert!(add.hash == "ha" || add.hash == "hb", "{add:?}");
    let fetch = pin(&org.id, "fetcher", "fetch", "hf", 5);
    store
        .commit(&[unit(Mutation::PinMcpTool(fetch.clone()))])
        .await
        .unwrap();
    // Listed by server and tool, of every server or of one.
    assert_eq!(
        store.list_mcp_tool_pins(&org.id, None).await.unwrap(),
        vec![add.clone(), echo.clone(), fetch.clone()]
    );
    assert_eq!(
        store
            .list_mcp_tool_pins(&org.id, Some("fetcher"))
            .await
            .unwrap(),
        vec![fetch.clone()]
    );
    assert_eq!(
        store
            .list_mcp_tool_pins(&org.id, Some("nope"))
            .await
            .unwrap(),
        vec![]
    );
    // Pins do not advance the runtime generation.
    assert_eq!(generation(store, &org.id).await, 0);

    // Another organisation: sees nothing, changes nothing, and pins its own.
    assert_eq!(
        store.list_mcp_tool_pins(&other.id, None).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store
            .get_mcp_tool_pin(&other.id, "everything", "echo")
            .await
            .unwrap(),
        None
    );
    missing(
        store
            .commit(&[flag(&other.id, "echo", "h2", 6)])
            .await
            .unwrap_err(),
    );
    missing(
        store
            .commit(&[accept(&other.id, "echo", "h1", 6)])
            .await
            .unwrap_err(),
    );
    let theirs = pin(&other.id, "everything", "echo", "hx", 6);
    store
        .commit(&[unit(Mutation::PinMcpTool(theirs.clone()))])
        .await
        .unwrap();
    assert_eq!(
        store
            .get_mcp_tool_pin(&org.id, "everything", "echo")
            .await
            .unwrap(),
        Some(echo.clone())
    );

    // The accepted definition seen again: nothing changes.
    store
        .commit(&[flag(&org.id, "echo", "h1", 7)])
        .await
        .unwrap();
    let read = || async {
        store
            .get_mcp_tool_pin(&org.id, "everything", "echo")
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(read().await, echo);

    // A change: pending, with when it was seen; seen again, unchanged.
    store
        .commit(&[flag(&org.id, "echo", "h2", 8)])
        .await
        .unwrap();
    let mut expected = echo.clone();
    expected.pending_hash = Some("h2".into());
    expected.pending_definition = Some(definition("echo", "h2"));
    expected.changed_at = Some(ts(8));
    assert_eq!(read().await, expected);
    store
        .commit(&[flag(&org.id, "echo", "h2", 9)])
        .await
        .unwrap();
    assert_eq!(read().await, expected);
    // Another change replaces the pending one.
    store
        .commit(&[flag(&org.id, "echo", "h3", 10)])
        .await
        .unwrap();
    expected.pending_hash = Some("h3".into());
    expected.pending_definition = Some(definition("echo", "h3"));
    expected.changed_at = Some(ts(10));
    assert_eq!(read().await, expected);

    // Accepting another hash than the pending one (e.g. the version the admin reviewed
    // before it changed again): a conflict, nothing changes.
    for hash in ["h2", "h1"] {
        let err = store
            .commit(&[accept(&org.id, "echo", hash, 11)])
            .await
            .unwrap_err();
        match &err {
            StoreError::Conflict(message) => {
                assert!(message.contains("pending version"), "{message}");
                assert!(message.contains(hash), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(read().await, expected);
    // Another organisation cannot accept it: it reaches only its own pin of the tool, which
    // has nothing pending, and a tool it never saw is not found.
    let err = store
        .commit(&[accept(&other.id, "echo", "h3", 11)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    missing(
        store
            .commit(&[accept(&other.id, "add", "h3", 11)])
            .await
            .unwrap_err(),
    );
    assert_eq!(read().await, expected);

    // Accepted: the pending definition becomes the pinned one.
    store
        .commit(&[accept(&org.id, "echo", "h3", 12)])
        .await
        .unwrap();
    let accepted = McpToolPin {
        hash: "h3".into(),
        definition: definition("echo", "h3"),
        pending_hash: None,
        pending_definition: None,
        accepted_at: ts(12),
        accepted_by: Some("admin-1".into()),
        ..expected.clone()
    };
    assert_eq!(read().await, accepted);
    assert_eq!(accepted.first_seen_at, ts(2));
    // Nothing pending any more: accepting again is a conflict.
    let err = store
        .commit(&[accept(&org.id, "echo", "h3", 13)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // The old definition seen again is a change again.
    store
        .commit(&[flag(&org.id, "echo", "h1", 14)])
        .await
        .unwrap();
    assert_eq!(read().await.pending_hash.as_deref(), Some("h1"));

    // The other organisation's pin and the other tools are untouched; still no generation.
    assert_eq!(
        store.list_mcp_tool_pins(&other.id, None).await.unwrap(),
        vec![theirs]
    );
    assert_eq!(
        store
            .list_mcp_tool_pins(&org.id, Some("fetcher"))
            .await
            .unwrap(),
        vec![fetch]
    );
    assert_eq!(generation(store, &org.id).await, 0);
    assert_eq!(generation(store, &other.id).await, 0);
}
