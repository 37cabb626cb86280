//! Identity tables on SQLite: [`Mutation`]s (inside a write transaction, on the rusqlite
//! writer connection) and reads of users and keys (on the sqlx reader pool). The SQL is
//! shared with PostgreSQL ([`crate::sql`]).
//!
//! Every statement is scoped by `org_id`, so an id of another organisation finds nothing
//! and the caller answers 404.

use rusqlite::{params, Connection, OptionalExtension};
use sqlx::sqlite::SqlitePool;

use super::named_conflict;
use crate::error::{duplicate_vote, stale};
use crate::model::{AgentKey, AgentPrincipal, Mutation, TokenPrincipal, User};
use crate::rows::{
    agent_principal_from_row, key_from_row, token_principal_from_row, user_from_row,
};
use crate::{sql, StoreError};

/// Applies one mutation inside the caller's transaction.
pub(super) fn apply_mutation(conn: &Connection, mutation: &Mutation) -> Result<(), StoreError> {
    match mutation {
        Mutation::InsertOrg(org) => {
            conn.prepare_cached(sql::INSERT_ORG)?
                .execute(params![org.id, org.name, org.plan, org.created_at])
                .map_err(|e| named_conflict(e, "an organisation with this name already exists"))?;
        }
        Mutation::InsertUser(user) => {
            conn.prepare_cached(sql::INSERT_USER)?
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
            conn.prepare_cached(sql::SET_USER_ROLE)?
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
            conn.prepare_cached(sql::DELETE_USER)?
                .execute(params![now, org_id, user_id])?;
            conn.prepare_cached(sql::REVOKE_USER_TOKENS)?
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
                .prepare_cached(sql::INSERT_TOKEN)?
                .execute(params![
                    id, org_id, user_id, name, token_hash, prefix, created_at
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
            conn.prepare_cached(sql::INSERT_AGENT)?
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
            let tools = crate::rows::tools_text(key.tools.as_ref())?;
            let done = conn
                .prepare_cached(sql::INSERT_AGENT_KEY)?
                .execute(params![
                    key.id,
                    key.org_id,
                    key.agent_id,
                    key_hash,
                    key.prefix,
                    key.created_at,
                    key.expires_at,
                    tools,
                    key.created_by
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
                .prepare_cached(sql::SHORTEN_AGENT_KEY)?
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
                .prepare_cached(sql::KEY_REVOKED_AT)?
                .query_row(params![org_id, agent_id, key_id], |r| r.get(0))
                .optional()?;
            crate::rows::check_revocable(key_id, revoked)?;
            conn.prepare_cached(sql::REVOKE_AGENT_KEY)?
                .execute(params![now, org_id, agent_id, key_id])?;
        }
        Mutation::UseNonce {
            org_id,
            agent_id,
            nonce,
            expires_at,
        } => {
            conn.prepare_cached(sql::USE_NONCE)?
                .execute(params![org_id, agent_id, nonce, expires_at])
                .map_err(|e| named_conflict(e, "the signature nonce was used before"))?;
        }
        Mutation::InsertApprovalVote(v) => {
            let done = conn
                .prepare_cached(sql::INSERT_APPROVAL_VOTE)?
                .execute(params![
                    v.org_id,
                    v.action_id,
                    v.user_id,
                    v.user_name,
                    v.vote,
                    v.comment,
                    v.created_at
                ])
                .map_err(|e| {
                    duplicate_vote(named_conflict(
                        e,
                        "this user has already answered this action",
                    ))
                })?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("action {}", v.action_id)));
            }
        }
        Mutation::InsertWebhook(w) => {
            let events = crate::prepared::json_text(&serde_json::json!(w.events))?;
            conn.prepare_cached(sql::INSERT_WEBHOOK)?
                .execute(params![
                    w.id,
                    w.org_id,
                    w.url,
                    events,
                    w.format,
                    w.secret,
                    w.created_at,
                    w.created_by
                ])
                .map_err(|e| named_conflict(e, "a webhook with this id already exists"))?;
        }
        Mutation::DisableWebhook { org_id, id, now } => {
            let done = conn
                .prepare_cached(sql::DISABLE_WEBHOOK)?
                .execute(params![now, org_id, id])?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("webhook {id}")));
            }
        }
        Mutation::InsertKillSwitch(k) => {
            conn.prepare_cached(sql::INSERT_KILL_SWITCH)?
                .execute(params![
                    k.id,
                    k.org_id,
                    k.scope.as_str(),
                    k.agent_id,
                    k.tool,
                    k.reason,
                    k.source.as_str(),
                    k.created_at,
                    k.created_by,
                    k.expires_at
                ])
                .map_err(|e| named_conflict(e, "a kill switch with this id already exists"))?;
            conn.prepare_cached(sql::BUMP_RUNTIME_GENERATION)?
                .execute(params![k.org_id, k.created_at])?;
        }
        Mutation::ReleaseKillSwitch {
            org_id,
            id,
            by,
            now,
        } => {
            let done = conn
                .prepare_cached(sql::RELEASE_KILL_SWITCH)?
                .execute(params![now, by, org_id, id])?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("kill switch {id}")));
            }
            conn.prepare_cached(sql::BUMP_RUNTIME_GENERATION)?
                .execute(params![org_id, now])?;
        }
        Mutation::InsertRateLimit(l, meta) => {
            conn.prepare_cached(sql::INSERT_RATE_LIMIT)?
                .execute(params![
                    l.id,
                    l.org_id,
                    l.scope.as_str(),
                    l.agent_id,
                    l.tool,
                    i64::from(l.limit),
                    l.window.as_str(),
                    i64::from(l.burst),
                    meta.created_at,
                    meta.created_by,
                    l.mode.as_str()
                ])
                .map_err(|e| named_conflict(e, "a rate limit with this id already exists"))?;
            conn.prepare_cached(sql::BUMP_RUNTIME_GENERATION)?
                .execute(params![l.org_id, meta.created_at])?;
        }
        Mutation::DeleteRateLimit {
            org_id,
            id,
            by,
            now,
        } => {
            let done = conn
                .prepare_cached(sql::DELETE_RATE_LIMIT)?
                .execute(params![now, by, org_id, id])?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("rate limit {id}")));
            }
            conn.prepare_cached(sql::BUMP_RUNTIME_GENERATION)?
                .execute(params![org_id, now])?;
        }
        Mutation::RevokeAllAgentKeys {
            org_id,
            agent_id,
            now,
        } => {
            conn.prepare_cached(sql::REVOKE_ALL_AGENT_KEYS)?
                .execute(params![now, org_id, agent_id])?;
        }
        Mutation::InsertAgentSnapshot(snap) => {
            let text = crate::prepared::json_text(&snap.snapshot)?;
            conn.prepare_cached(sql::INSERT_AGENT_SNAPSHOT)?
                .execute(params![
                    snap.id,
                    snap.org_id,
                    snap.agent_id,
                    snap.kill_switch_id,
                    snap.created_at,
                    snap.created_by,
                    snap.sha256,
                    text
                ])
                .map_err(|e| named_conflict(e, "a snapshot with this id already exists"))?;
        }
        Mutation::InsertDelivery(d) => {
            let payload = crate::prepared::json_text(&d.payload)?;
            let done = conn
                .prepare_cached(sql::INSERT_DELIVERY)?
                .execute(params![
                    d.id,
                    d.org_id,
                    d.webhook_id,
                    d.event,
                    d.action_id,
                    payload,
                    d.status,
                    i64::from(d.attempts),
                    d.next_attempt_at,
                    d.created_at,
                    d.updated_at
                ])
                .map_err(|e| named_conflict(e, "a delivery with this id already exists"))?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("webhook {}", d.webhook_id)));
            }
        }
        Mutation::PutPolicyObject {
            version: v,
            name,
            active_version,
        } => {
            if v.version == 1 {
                conn.prepare_cached(sql::INSERT_POLICY_OBJECT)?
                    .execute(params![
                        v.org_id,
                        v.kind,
                        v.key,
                        name,
                        active_version,
                        v.version,
                        v.created_at,
                        v.created_at,
                        v.author
                    ])
                    .map_err(|e| named_conflict(e, &format!("a {} named {name} exists", v.kind)))?;
            } else {
                let done = conn
                    .prepare_cached(sql::UPDATE_POLICY_OBJECT)?
                    .execute(params![
                        name,
                        v.version,
                        active_version,
                        v.created_at,
                        v.org_id,
                        v.kind,
                        v.key,
                        v.version - 1
                    ])?;
                if done == 0 {
                    return Err(crate::rows::policy_object_changed(&v.kind, &v.key));
                }
            }
            conn.prepare_cached(sql::INSERT_POLICY_OBJECT_VERSION)?
                .execute(params![
                    v.org_id,
                    v.kind,
                    v.key,
                    v.version,
                    v.body,
                    v.mode,
                    v.sha256,
                    v.author,
                    v.created_at
                ])
                .map_err(|e| named_conflict(e, "this version exists already"))?;
        }
        Mutation::ActivatePolicyObjectVersion {
            org_id,
            kind,
            key,
            version,
            now,
        } => {
            let done = conn
                .prepare_cached(sql::ACTIVATE_POLICY_OBJECT_VERSION)?
                .execute(params![version, now, org_id, kind, key])?;
            if done == 0 {
                return Err(StoreError::NotFound(format!(
                    "{kind} {key} version {version}"
                )));
            }
        }
        Mutation::DisablePolicyObject {
            org_id,
            kind,
            key,
            now,
        } => {
            let done = conn
                .prepare_cached(sql::DISABLE_POLICY_OBJECT)?
                .execute(params![now, org_id, kind, key])?;
            if done == 0 {
                return Err(StoreError::NotFound(format!("{kind} {key}")));
            }
        }
        Mutation::BumpPolicyGeneration {
            org_id,
            expected,
            now,
        } => {
            let done = if *expected == 0 {
                conn.prepare_cached(sql::INSERT_POLICY_GENERATION)?
                    .execute(params![org_id, now])
                    .map_err(|e| stale(named_conflict(e, POLICIES_CHANGED)))?
            } else {
                conn.prepare_cached(sql::BUMP_POLICY_GENERATION)?
                    .execute(params![now, org_id, expected])?
            };
            if done == 0 {
                return Err(StoreError::Stale(POLICIES_CHANGED.into()));
            }
        }
        Mutation::InsertPolicyRevision(r) => {
            let bundle = crate::prepared::json_text(&r.bundle)?;
            conn.prepare_cached(sql::INSERT_POLICY_REVISION)?
                .execute(params![r.org_id, r.revision, bundle, r.created_at])?;
        }
        Mutation::InsertShadowResult(r) => {
            conn.prepare_cached(sql::INSERT_SHADOW_RESULT)?
                .execute(params![
                    r.org_id,
                    r.policy_key,
                    r.policy_version,
                    r.action_id,
                    r.enforced,
                    r.shadow,
                    i64::from(r.differs),
                    r.created_at
                ])?;
        }
        Mutation::InsertBudget { .. }
        | Mutation::UpdateBudget { .. }
        | Mutation::DeleteBudget { .. }
        | Mutation::SettleBudget { .. }
        | Mutation::SetCircuitBreakers { .. } => super::budgets::apply_mutation(conn, mutation)?,
        Mutation::InsertMcpServer(_)
        | Mutation::UpdateMcpServer { .. }
        | Mutation::DeleteMcpServer { .. }
        | Mutation::PinMcpTool(_)
        | Mutation::FlagMcpToolChange { .. }
        | Mutation::AcceptMcpTool { .. } => super::mcp::apply_mutation(conn, mutation)?,
        Mutation::InsertAlert(_) | Mutation::AlertTransition { .. } => {
            super::alerts::apply_mutation(conn, mutation)?
        }
        Mutation::PutAgentProfile { .. } => super::profiles::apply_mutation(conn, mutation)?,
        Mutation::ExtendAuditTree { .. }
        | Mutation::PutCheckpoint(_)
        | Mutation::SetDecisionLogCursor { .. } => super::evidence::apply_mutation(conn, mutation)?,
        Mutation::InsertDataKey(_)
        | Mutation::RotateDataKey { .. }
        | Mutation::DestroyDataKeys { .. }
        | Mutation::ShredAction { .. }
        | Mutation::SetRetention { .. }
        | Mutation::RemovePayloads { .. } => super::keys::apply_mutation(conn, mutation)?,
        Mutation::SetOrgSettings(settings) => {
            let timeout = crate::rows::timeout_to_sql(settings.approval_timeout_seconds)?;
            conn.prepare_cached(sql::UPSERT_ORG_SETTINGS)?
                .execute(params![
                    settings.org_id,
                    i64::from(settings.four_eyes),
                    timeout,
                    settings.updated_at,
                    settings
                        .outbound_detection
                        .as_ref()
                        .map(serde_json::Value::to_string)
                ])?;
        }
    }
    Ok(())
}

/// The conflict of two concurrent changes of an organisation's policies.
pub(crate) const POLICIES_CHANGED: &str =
    "the organisation's policies changed concurrently; read them again and retry";

/// The role of a current user; [`StoreError::NotFound`] for a missing or deleted one.
fn current_role(conn: &Connection, org_id: &str, user_id: &str) -> Result<String, StoreError> {
    conn.prepare_cached(sql::CURRENT_ROLE)?
        .query_row(params![org_id, user_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))
}

/// [`StoreError::Conflict`] unless the organisation has a current admin other than `user_id`.
fn ensure_other_admin(conn: &Connection, org_id: &str, user_id: &str) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(sql::OTHER_ADMINS)?;
    let others = statement
        .query_map(params![org_id, user_id], |_| Ok(()))?
        .count();
    crate::rows::check_other_admins(others)
}

/// The live token with this hash of a current user, with the user's role and organisation.
pub(super) async fn find_token(
    pool: &SqlitePool,
    token_hash: &str,
) -> Result<Option<TokenPrincipal>, StoreError> {
    let row = sqlx::query(sql::FIND_TOKEN)
        .bind(token_hash)
        .fetch_optional(pool)
        .await?;
    row.map(|r| token_principal_from_row(&r, token_hash))
        .transpose()
        .map(Option::flatten)
}

/// The agent key with this hash, its agent and organisation (revoked and expired included).
pub(super) async fn find_agent_key(
    pool: &SqlitePool,
    key_hash: &str,
) -> Result<Option<AgentPrincipal>, StoreError> {
    let row = sqlx::query(sql::FIND_AGENT_KEY)
        .bind(key_hash)
        .fetch_optional(pool)
        .await?;
    row.map(|r| agent_principal_from_row(&r, key_hash))
        .transpose()
        .map(Option::flatten)
}

/// The organisation's current users, oldest first.
pub(super) async fn list_users(pool: &SqlitePool, org_id: &str) -> Result<Vec<User>, StoreError> {
    let rows = sqlx::query(sql::LIST_USERS)
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
    let row = sqlx::query(sql::GET_USER)
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
    let rows = sqlx::query(sql::LIST_AGENT_KEYS)
        .bind(org_id)
        .bind(agent_id)
        .fetch_all(pool)
        .await?;
    rows.iter().map(key_from_row).collect()
}
