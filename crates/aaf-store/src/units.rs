//! Write units of the identity operations: the rows to change and the audit events that
//! record the change, built once here so that every backend and every caller (server, CLI,
//! tests) writes the same thing.
//!
//! Ids are UUIDv7 strings chosen here; `now` is RFC 3339 UTC; no event data ever holds a
//! secret or its hash (only ids, names, visible prefixes, roles, expiries and tool lists).

use aaf_core::audit::event_types;
use serde_json::json;

use crate::model::{Agent, AgentKey, Mutation, NewEvent, Org, User, WriteUnit};

/// A new agent key, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    /// The visible prefix of the key.
    pub prefix: String,
    /// When the key stops working (RFC 3339 UTC), if ever.
    pub expires_at: Option<String>,
    /// The tools the key may submit; `None` = every tool.
    pub tools: Option<Vec<String>>,
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn event(
    org_id: &str,
    now: &str,
    agent_id: Option<&str>,
    kind: &str,
    data: serde_json::Value,
) -> NewEvent {
    NewEvent {
        org_id: org_id.to_string(),
        ts: now.to_string(),
        agent_id: agent_id.map(str::to_string),
        action_id: None,
        event_type: kind.to_string(),
        data,
    }
}

/// An organisation with its first user (role `admin`, named `admin_name`) and that user's
/// token. Events: `org.created`, then `user.created` (`created_by` = `"bootstrap"`).
pub fn new_org(
    name: &str,
    plan: &str,
    admin_name: &str,
    token_hash: &str,
    token_prefix: &str,
    now: &str,
) -> (Org, WriteUnit) {
    let org = Org {
        id: new_id(),
        name: name.to_string(),
        plan: plan.to_string(),
        created_at: now.to_string(),
    };
    let (_, _, user_unit) = new_user(
        &org.id,
        admin_name,
        "admin",
        token_hash,
        token_prefix,
        "bootstrap",
        now,
    );
    let mut unit = WriteUnit {
        mutations: vec![Mutation::InsertOrg(org.clone())],
        action: None,
        events: vec![event(
            &org.id,
            now,
            None,
            event_types::ORG_CREATED,
            json!({"org_id": org.id, "name": name, "plan": plan}),
        )],
    };
    unit.mutations.extend(user_unit.mutations);
    unit.events.extend(user_unit.events);
    (org, unit)
}

/// A user with a first personal access token. Returns the user, the token id and the unit;
/// event `user.created` `{user_id, name, role, token_id, token_prefix, created_by}`.
pub fn new_user(
    org_id: &str,
    name: &str,
    role: &str,
    token_hash: &str,
    token_prefix: &str,
    created_by: &str,
    now: &str,
) -> (User, String, WriteUnit) {
    let user = User {
        id: new_id(),
        org_id: org_id.to_string(),
        name: name.to_string(),
        role: role.to_string(),
        created_at: now.to_string(),
        updated_at: now.to_string(),
    };
    let token_id = new_id();
    let unit = WriteUnit {
        mutations: vec![
            Mutation::InsertUser(user.clone()),
            Mutation::InsertToken {
                id: token_id.clone(),
                org_id: org_id.to_string(),
                user_id: user.id.clone(),
                name: name.to_string(),
                token_hash: token_hash.to_string(),
                prefix: token_prefix.to_string(),
                created_at: now.to_string(),
            },
        ],
        action: None,
        events: vec![event(
            org_id,
            now,
            None,
            event_types::USER_CREATED,
            json!({
                "user_id": user.id,
                "name": name,
                "role": role,
                "token_id": token_id,
                "token_prefix": token_prefix,
                "created_by": created_by,
            }),
        )],
    };
    (user, token_id, unit)
}

/// Changes a user's role; event `user.role_changed` `{user_id, old_role, new_role, changed_by}`.
pub fn set_user_role(
    org_id: &str,
    user_id: &str,
    old_role: &str,
    new_role: &str,
    changed_by: &str,
    now: &str,
) -> WriteUnit {
    WriteUnit {
        mutations: vec![Mutation::SetUserRole {
            org_id: org_id.to_string(),
            user_id: user_id.to_string(),
            role: new_role.to_string(),
            now: now.to_string(),
        }],
        action: None,
        events: vec![event(
            org_id,
            now,
            None,
            event_types::USER_ROLE_CHANGED,
            json!({
                "user_id": user_id,
                "old_role": old_role,
                "new_role": new_role,
                "changed_by": changed_by,
            }),
        )],
    }
}

/// Deletes a user and revokes their tokens; event `user.deleted` `{user_id, name, deleted_by}`.
pub fn delete_user(
    org_id: &str,
    user_id: &str,
    name: &str,
    deleted_by: &str,
    now: &str,
) -> WriteUnit {
    WriteUnit {
        mutations: vec![Mutation::DeleteUser {
            org_id: org_id.to_string(),
            user_id: user_id.to_string(),
            now: now.to_string(),
        }],
        action: None,
        events: vec![event(
            org_id,
            now,
            None,
            event_types::USER_DELETED,
            json!({"user_id": user_id, "name": name, "deleted_by": deleted_by}),
        )],
    }
}

fn key_row(org_id: &str, agent_id: &str, spec: &KeySpec, created_by: &str, now: &str) -> AgentKey {
    AgentKey {
        id: new_id(),
        org_id: org_id.to_string(),
        agent_id: agent_id.to_string(),
        prefix: spec.prefix.clone(),
        created_at: now.to_string(),
        expires_at: spec.expires_at.clone(),
        revoked_at: None,
        last_used_at: None,
        tools: spec.tools.clone(),
        created_by: Some(created_by.to_string()),
    }
}

fn insert_key(key: &AgentKey, spec: &KeySpec) -> Mutation {
    Mutation::InsertAgentKey {
        key: key.clone(),
        key_hash: spec.key_hash.clone(),
    }
}

/// An agent with its first key; event `agent.created` `{agent_id, name, risk_score,
/// public_key, key_id, key_prefix, expires_at, tools, created_by}`.
#[allow(clippy::too_many_arguments)]
pub fn new_agent(
    org_id: &str,
    name: &str,
    risk_score: f64,
    public_key: Option<&str>,
    key: &KeySpec,
    created_by: &str,
    now: &str,
) -> (Agent, AgentKey, WriteUnit) {
    let agent = Agent {
        id: new_id(),
        org_id: org_id.to_string(),
        name: name.to_string(),
        risk_score,
        public_key: public_key.map(str::to_string),
        created_at: now.to_string(),
    };
    let row = key_row(org_id, &agent.id, key, created_by, now);
    let unit = WriteUnit {
        mutations: vec![Mutation::InsertAgent(agent.clone()), insert_key(&row, key)],
        action: None,
        events: vec![event(
            org_id,
            now,
            Some(&agent.id),
            event_types::AGENT_CREATED,
            json!({
                "agent_id": agent.id,
                "name": name,
                "risk_score": risk_score,
                "public_key": public_key,
                "key_id": row.id,
                "key_prefix": row.prefix,
                "expires_at": row.expires_at,
                "tools": row.tools,
                "created_by": created_by,
            }),
        )],
    };
    (agent, row, unit)
}

/// Another key for an agent; event `agent_key.created` `{key_id, key_prefix, expires_at,
/// tools, created_by}`.
pub fn new_agent_key(
    org_id: &str,
    agent_id: &str,
    key: &KeySpec,
    created_by: &str,
    now: &str,
) -> (AgentKey, WriteUnit) {
    let row = key_row(org_id, agent_id, key, created_by, now);
    let unit = WriteUnit {
        mutations: vec![insert_key(&row, key)],
        action: None,
        events: vec![event(
            org_id,
            now,
            Some(agent_id),
            event_types::AGENT_KEY_CREATED,
            json!({
                "key_id": row.id,
                "key_prefix": row.prefix,
                "expires_at": row.expires_at,
                "tools": row.tools,
                "created_by": created_by,
            }),
        )],
    };
    (row, unit)
}

/// Rotation: a new key, and the old key made to expire at `old_expires_at` (the end of the
/// grace period) unless it expires sooner. Event `agent_key.rotated` `{key_id, key_prefix,
/// expires_at, tools, old_key_id, old_key_expires_at, rotated_by}`.
pub fn rotate_agent_key(
    org_id: &str,
    agent_id: &str,
    old_key_id: &str,
    old_expires_at: &str,
    key: &KeySpec,
    rotated_by: &str,
    now: &str,
) -> (AgentKey, WriteUnit) {
    let row = key_row(org_id, agent_id, key, rotated_by, now);
    let unit = WriteUnit {
        mutations: vec![
            Mutation::ShortenAgentKey {
                org_id: org_id.to_string(),
                agent_id: agent_id.to_string(),
                key_id: old_key_id.to_string(),
                expires_at: old_expires_at.to_string(),
            },
            insert_key(&row, key),
        ],
        action: None,
        events: vec![event(
            org_id,
            now,
            Some(agent_id),
            event_types::AGENT_KEY_ROTATED,
            json!({
                "key_id": row.id,
                "key_prefix": row.prefix,
                "expires_at": row.expires_at,
                "tools": row.tools,
                "old_key_id": old_key_id,
                "old_key_expires_at": old_expires_at,
                "rotated_by": rotated_by,
            }),
        )],
    };
    (row, unit)
}

/// Revokes a key; event `agent_key.revoked` `{key_id, revoked_by}`.
pub fn revoke_agent_key(
    org_id: &str,
    agent_id: &str,
    key_id: &str,
    revoked_by: &str,
    now: &str,
) -> WriteUnit {
    WriteUnit {
        mutations: vec![Mutation::RevokeAgentKey {
            org_id: org_id.to_string(),
            agent_id: agent_id.to_string(),
            key_id: key_id.to_string(),
            now: now.to_string(),
        }],
        action: None,
        events: vec![event(
            org_id,
            now,
            Some(agent_id),
            event_types::AGENT_KEY_REVOKED,
            json!({"key_id": key_id, "revoked_by": revoked_by}),
        )],
    }
}
