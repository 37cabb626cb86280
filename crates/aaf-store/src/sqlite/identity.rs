//! Identity tables on SQLite: [`Mutation`]s (inside a write transaction, on the rusqlite
//! writer connection) and reads of users, agents and keys (on the sqlx reader pool).
//!
//! Every statement is scoped by `org_id`, so an id of another organisation finds nothing
//! and the caller answers 404.

use rusqlite::{params, Connection, OptionalExtension};
use sqlx::sqlite::SqlitePool;
use sqlx::Row;

use super::named_conflict;
use crate::model::{AgentKey, AgentPrincipal, Mutation, TokenPrincipal, User};
use crate::rows::{agent_from_row, key_from_row, org_from_row, tools_from_row, user_from_row};
use crate::StoreError;

/// Columns of `users`, in select order.
const USER_COLUMNS: &str = "id, org_id, name, role, created_at, updated_at";

/// Columns of `agent_keys` without the hash, in select order.
const KEY_COLUMNS: &str =
    "id, org_id, agent_id, prefix, created_at, expires_at, revoked_at, last_used_at, tools, created_by";

/// Applies one mutation inside the caller's transaction.
pub(super) fn apply_mutation(conn: &Connection, mutation: &Mutation) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertOrg(org) => {
            conn.prepare_cached(
                "INSERT INTO orgs (id, name, plan, created_at) VALUES (?, ?, ?, ?)",
            )?
            .execute(params![org.id, org.name, org.plan, org.created_at])
            .map_err(|e| named_conflict(e, "an organisation with this name already exists"))?;
        }
        Mutation::InsertUser(user) => {
            conn.prepare_cached(
                "INSERT INTO users (id, org_id, name, role, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                user.id,
                user.org_id,
                user.name,
                user.role,
                user.created_at,
                user.updated_at
            ])
            .map_err(|e| {
                named_conflict(
                    e,
                    "a user with this name already exists in the organisation",
                )
            })?;
        }
        Mutation::SetUserRole {
            org_id,
            user_id,
            role,
            now,
        } => {
            let current = current_role(conn, org_id, user_id)?;
            if current == "admin" && role != "admin" {
                ensure_other_admin(conn, org_id, user_id)?;
            }
            conn.prepare_cached(
                "UPDATE users SET role = ?, updated_at = ? \
                 WHERE org_id = ? AND id = ? AND deleted_at IS NULL",
            )?
            .execute(params![role, now, org_id, user_id])?;
        }
        Mutation::DeleteUser {
            org_id,
            user_id,
            now,
        } => {
            if current_role(conn, org_id, user_id)? == "admin" {
                ensure_other_admin(conn, org_id, user_id)?;
            }
            conn.prepare_cached(
                "UPDATE users SET deleted_at = ?, updated_at = ? \
                 WHERE org_id = ? AND id = ? AND deleted_at IS NULL",
            )?
            .execute(params![now, now, org_id, user_id])?;
            conn.prepare_cached(
                "UPDATE api_tokens SET revoked_at = ? \
                 WHERE org_id = ? AND user_id = ? AND revoked_at IS NULL",
            )?
            .execute(params![now, org_id, user_id])?;
        }
        Mutation::InsertToken {
            id,
            org_id,
            user_id,
            name,
            token_hash,
            prefix,
            created_at,
        } => {
            let done = conn
                .prepare_cached(
                    "INSERT INTO api_tokens (id, org_id, user_id, name, token_hash, prefix, created_at) \
                     SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS \
                       (SELECT 1 FROM users WHERE org_id = ? AND id = ? AND deleted_at IS NULL)",
                )?
                .execute(params![
                    id, org_id, user_id, name, token_hash, prefix, created_at, org_id, user_id
                ])
                .map_err(|e| named_conflict(e, "a token with this hash already exists"))?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("user {user_id}")));
            }
        }
        Mutation::InsertAgent(agent) => {
            if !agent.risk_score.is_finite() {
                return Err(StoreError::Invalid(format!(
                    "risk score must be a finite number, got {}",
                    agent.risk_score
                )));
            }
            conn.prepare_cached(
                "INSERT INTO agents (id, org_id, name, risk_score, public_key, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                agent.id,
                agent.org_id,
                agent.name,
                agent.risk_score,
                agent.public_key,
                agent.created_at
            ])
            .map_err(|e| {
                named_conflict(
                    e,
                    "an agent with this name already exists in the organisation",
                )
            })?;
        }
        Mutation::InsertAgentKey { key, key_hash } => {
            let tools = key
                .tools
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::Invalid(format!("key tools: {e}")))?;
            let done = conn
                .prepare_cached(
                    "INSERT INTO agent_keys (id, org_id, agent_id, key_hash, prefix, created_at, \
                                             expires_at, tools, created_by) \
                     SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS \
                       (SELECT 1 FROM agents WHERE org_id = ? AND id = ?)",
                )?
                .execute(params![
                    key.id,
                    key.org_id,
                    key.agent_id,
                    key_hash,
                    key.prefix,
                    key.created_at,
                    key.expires_at,
                    tools,
                    key.created_by,
                    key.org_id,
                    key.agent_id
                ])
                .map_err(|e| named_conflict(e, "an agent key with this hash already exists"))?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("agent {}", key.agent_id)));
            }
        }
        Mutation::ShortenAgentKey {
            org_id,
            agent_id,
            key_id,
            expires_at,
        } => {
            let done = conn
                .prepare_cached(
                    "UPDATE agent_keys SET expires_at = \
                       CASE WHEN expires_at IS NULL OR expires_at > ?1 THEN ?1 ELSE expires_at END \
                     WHERE org_id = ?2 AND agent_id = ?3 AND id = ?4 AND revoked_at IS NULL",
                )?
                .execute(params![expires_at, org_id, agent_id, key_id])?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("live key {key_id}")));
            }
        }
        Mutation::RevokeAgentKey {
            org_id,
            agent_id,
            key_id,
            now,
        } => {
            let revoked: Option<Option<String>> = conn
                .prepare_cached(
                    "SELECT revoked_at FROM agent_keys WHERE org_id = ? AND agent_id = ? AND id = ?",
                )?
                .query_row(params![org_id, agent_id, key_id], |r| r.get(0))
                .optional()?;
            match revoked {
                None => return Err(StoreError::NotFound(format!("key {key_id}"))),
                Some(Some(at)) => {
                    return Err(StoreError::Conflict(format!(
                        "key {key_id} was already revoked at {at}"
                    )))
                }
                Some(None) => {}
            }
            conn.prepare_cached(
                "UPDATE agent_keys SET revoked_at = ? WHERE org_id = ? AND agent_id = ? AND id = ?",
            )?
            .execute(params![now, org_id, agent_id, key_id])?;
        }
        Mutation::UseNonce {
            org_id,
            agent_id,
            nonce,
            expires_at,
        } => {
            conn.prepare_cached(
                "INSERT INTO signature_nonces (org_id, agent_id, nonce, expires_at) \
                 VALUES (?, ?, ?, ?)",
            )?
            .execute(params![org_id, agent_id, nonce, expires_at])
            .map_err(|e| named_conflict(e, "the signature nonce was used before"))?;
        }
    }
    Ok(())
}

/// The role of a current user; [`StoreError::NotFound`] for a missing or deleted one.
fn current_role(conn: &Connection, org_id: &str, user_id: &str) -> Result<String, StoreError> {
    conn.prepare_cached(
        "SELECT role FROM users WHERE org_id = ? AND id = ? AND deleted_at IS NULL",
    )?
    .query_row(params![org_id, user_id], |r| r.get(0))
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))
}

/// [`StoreError::Conflict`] unless the organisation has a current admin other than `user_id`.
fn ensure_other_admin(conn: &Connection, org_id: &str, user_id: &str) -> Result<(), StoreError> {
    let others: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM users \
             WHERE org_id = ? AND role = 'admin' AND deleted_at IS NULL AND id <> ?",
        )?
        .query_row(params![org_id, user_id], |r| r.get(0))?;
    if others == 0 {
        return Err(StoreError::Conflict(
            "the organisation must keep at least one admin: make another user admin first"
                .to_string(),
        ));
    }
    Ok(())
}

/// The live token with this hash of a current user, with the user's role and organisation.
pub(super) async fn find_token(
    pool: &SqlitePool,
    token_hash: &str,
) -> Result<Option<TokenPrincipal>, StoreError> {
    let row = sqlx::query(
        "SELECT t.token_hash, t.id AS token_id, u.id AS user_id, u.name AS user_name, u.role, \
                o.id AS org_id, o.name AS org_name, o.plan AS org_plan, \
                o.created_at AS org_created_at \
         FROM api_tokens t \
         JOIN users u ON u.id = t.user_id AND u.org_id = t.org_id \
         JOIN orgs o ON o.id = t.org_id \
         WHERE t.token_hash = ? AND t.revoked_at IS NULL AND u.deleted_at IS NULL",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if !crate::rows::same_digest(&row.try_get::<String, _>("token_hash")?, token_hash) {
        return Ok(None);
    }
    Ok(Some(TokenPrincipal {
        token_id: row.try_get("token_id")?,
        user_id: row.try_get("user_id")?,
        org: org_from_row(&row, "org_")?,
        role: row.try_get("role")?,
        name: row.try_get("user_name")?,
    }))
}

/// The agent key with this hash, its agent and organisation (revoked and expired included).
pub(super) async fn find_agent_key(
    pool: &SqlitePool,
    key_hash: &str,
) -> Result<Option<AgentPrincipal>, StoreError> {
    let row = sqlx::query(
        "SELECT k.key_hash, k.id AS key_id, k.expires_at, k.revoked_at, k.tools, \
                a.id AS agent_id, a.org_id AS agent_org_id, a.name AS agent_name, \
                a.risk_score AS agent_risk_score, a.public_key AS agent_public_key, \
                a.created_at AS agent_created_at, \
                o.id AS org_id, o.name AS org_name, o.plan AS org_plan, \
                o.created_at AS org_created_at \
         FROM agent_keys k \
         JOIN agents a ON a.id = k.agent_id AND a.org_id = k.org_id \
         JOIN orgs o ON o.id = a.org_id \
         WHERE k.key_hash = ?",
    )
    .bind(key_hash)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if !crate::rows::same_digest(&row.try_get::<String, _>("key_hash")?, key_hash) {
        return Ok(None);
    }
    let revoked_at: Option<String> = row.try_get("revoked_at")?;
    Ok(Some(AgentPrincipal {
        key_id: row.try_get("key_id")?,
        agent: agent_from_row(&row, "agent_")?,
        org: org_from_row(&row, "org_")?,
        expires_at: row.try_get("expires_at")?,
        revoked: revoked_at.is_some(),
        tools: tools_from_row(&row)?,
    }))
}

/// The organisation's current users, oldest first.
pub(super) async fn list_users(pool: &SqlitePool, org_id: &str) -> Result<Vec<User>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE org_id = ? AND deleted_at IS NULL \
         ORDER BY created_at, id"
    ))
    .bind(org_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(user_from_row).collect()
}

/// A current user of the organisation.
pub(super) async fn get_user(
    pool: &SqlitePool,
    org_id: &str,
    id: &str,
) -> Result<Option<User>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE org_id = ? AND id = ? AND deleted_at IS NULL"
    ))
    .bind(org_id)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// The agent's keys (all, revoked and expired included), oldest first.
pub(super) async fn list_agent_keys(
    pool: &SqlitePool,
    org_id: &str,
    agent_id: &str,
) -> Result<Vec<AgentKey>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {KEY_COLUMNS} FROM agent_keys WHERE org_id = ? AND agent_id = ? \
         ORDER BY created_at, id"
    ))
    .bind(org_id)
    .bind(agent_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(key_from_row).collect()
}
