//! Engaging and releasing kill switches, isolating an agent, creating and deleting rate
//! limits: what `POST/DELETE /v1/kill-switches`, `POST /v1/agents/{id}/isolate` and
//! `POST/DELETE /v1/rate-limits` do, without HTTP.
//!
//! Each change is one write unit (the row, its audit event and its webhook deliveries),
//! after which this node installs the organisation's switches and limits before answering;
//! other nodes install them on the PostgreSQL notification or their next poll.

use aaf_core::audit::event_types;
use aaf_core::kill_switch::{
    parse_target, KillSwitch, KillSwitchScope, KillSwitchSource, MAX_REASON_LEN,
};
use aaf_store::{AgentSnapshot, Mutation, NewEvent, StoreError, WriteUnit};
use serde_json::{json, Value};
use sha2::Digest;

use super::kill_switch::MAX_LIVE_PER_ORG;
use crate::app::AppState;
use crate::error::ApiError;

/// Longest `expires_in` of a kill switch, in seconds (one year).
pub const MAX_EXPIRES_IN_SECONDS: u64 = 365 * 24 * 3600;
/// An isolation snapshot holds the agent's actions and audit events found among the
/// organisation's latest this many of each.
pub const SNAPSHOT_WINDOW: u32 = 10_000;
/// And at most this many of each.
pub const SNAPSHOT_LIMIT: u32 = 500;

/// Why a change of kill switches was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The request cannot be taken as given; `field` names the offending field.
    #[error("{message}")]
    Invalid {
        /// The field, e.g. `target`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such kill switch or agent in the organisation (or already released).
    #[error("{0}")]
    NotFound(String),
    /// The organisation has too many kill switches in force.
    #[error("{0}")]
    Conflict(String),
    /// The change could not be recorded; nothing changed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::Invalid { field, message } => ApiError::field(field, message),
            ControlError::NotFound(m) => ApiError::NotFound(m),
            ControlError::Conflict(m) => ApiError::Conflict(m),
            ControlError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

pub(super) fn unavailable(what: &str) -> impl FnOnce(StoreError) -> ControlError + '_ {
    move |e| ControlError::Unavailable(format!("{what}: {e}"))
}

/// A kill switch to engage, as asked.
#[derive(Debug, Clone)]
pub struct Engage<'a> {
    /// `org`, `agent`, `tool` or `agent_tool`.
    pub scope: &'a str,
    /// See [`aaf_core::kill_switch::parse_target`].
    pub target: Option<&'a str>,
    /// Why (required, at most [`MAX_REASON_LEN`] bytes).
    pub reason: &'a str,
    /// Seconds until it releases itself (1 to [`MAX_EXPIRES_IN_SECONDS`]); `None`: never.
    pub expires_in: Option<u64>,
}

/// Checks `request` and builds the switch for `org_id`, engaged by `by` (a user id).
///
/// # Errors
///
/// [`ControlError::Invalid`] naming `scope`, `target`, `reason` or `expires_in`;
/// [`ControlError::Unavailable`] when the agent cannot be looked up.
async fn build(
    state: &AppState,
    org_id: &str,
    by: Option<&str>,
    request: &Engage<'_>,
    source: KillSwitchSource,
) -> Result<KillSwitch, ControlError> {
    let scope = KillSwitchScope::parse(request.scope).ok_or_else(|| ControlError::Invalid {
        field: "scope",
        message: format!(
            "unknown scope {:?}; expected one of org, agent, tool, agent_tool",
            request.scope
        ),
    })?;
    let (agent_id, tool) =
        parse_target(scope, request.target, org_id).map_err(|e| ControlError::Invalid {
            field: "target",
            message: e.to_string(),
        })?;
    if let Some(agent) = &agent_id {
        agent_in_org(state, org_id, agent, "target").await?;
    }
    let reason = request.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_LEN {
        return Err(ControlError::Invalid {
            field: "reason",
            message: format!("must say why, in 1 to {MAX_REASON_LEN} bytes"),
        });
    }
    if let Some(seconds) = request.expires_in {
        if !(1..=MAX_EXPIRES_IN_SECONDS).contains(&seconds) {
            return Err(ControlError::Invalid {
                field: "expires_in",
                message: format!(
                    "must be from 1 to {MAX_EXPIRES_IN_SECONDS} seconds (one year), not {seconds}; leave it out for a switch that stays until released"
                ),
            });
        }
    }
    Ok(KillSwitch {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org_id.to_string(),
        scope,
        agent_id,
        tool,
        reason: reason.to_string(),
        source,
        created_at: state.clock.now_rfc3339(),
        created_by: by.map(str::to_string),
        expires_at: request.expires_in.map(|s| state.clock.in_seconds(s)),
        released_at: None,
        released_by: None,
    })
}

fn engaged_event(switch: &KillSwitch) -> NewEvent {
    NewEvent {
        org_id: switch.org_id.clone(),
        ts: switch.created_at.clone(),
        agent_id: switch.agent_id.clone(),
        action_id: None,
        event_type: event_types::KILL_SWITCH_ENGAGED.to_string(),
        data: json!({
            "kill_switch_id": switch.id,
            "scope": switch.scope.as_str(),
            "agent_id": switch.agent_id,
            "tool": switch.tool,
            "reason": switch.reason,
            "source": switch.source.as_str(),
            "expires_at": switch.expires_at,
            "by": switch.created_by,
        }),
    }
}

/// Checks that `agent_id` is an agent of the organisation.
///
/// # Errors
///
/// [`ControlError::Invalid`] naming `field` when it is not; [`ControlError::Unavailable`].
pub(super) async fn agent_in_org(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    field: &'static str,
) -> Result<(), ControlError> {
    let found = state
        .store
        .get_agent(org_id, agent_id)
        .await
        .map_err(unavailable("the agent could not be looked up"))?;
    if found.is_none() {
        return Err(ControlError::Invalid {
            field,
            message: format!("no agent {agent_id:?} in your organisation"),
        });
    }
    Ok(())
}

/// Refuses a new switch when the organisation has [`MAX_LIVE_PER_ORG`] unreleased ones.
async fn check_room(state: &AppState, org_id: &str) -> Result<(), ControlError> {
    let (_, live) = state
        .store
        .kill_switch_state(org_id, true, MAX_LIVE_PER_ORG)
        .await
        .map_err(unavailable("the kill switches could not be read"))?;
    if live.len() >= MAX_LIVE_PER_ORG as usize {
        return Err(ControlError::Conflict(format!(
            "the organisation has {MAX_LIVE_PER_ORG} kill switches in force, the most allowed; release some first (an org-wide switch stops everything)"
        )));
    }
    Ok(())
}

/// Installs the organisation's switches and rate limits on this node after a change it
/// committed.
pub(crate) async fn install(state: &AppState, org_id: &str) {
    if let Err(e) = state
        .runtime
        .reload_org(&state.store, &state.clock, org_id)
        .await
    {
        // Committed but not installed here: the refresher retries, and until this node
        // confirms its copy again it refuses every action.
        tracing::error!(%org_id, error = %e, "a kill-switch change was recorded but could not be installed on this node");
        state.runtime.announce(Some(org_id));
    }
}

/// Engages a kill switch: stored with its `kill_switch.engaged` event and webhook
/// deliveries, then installed on this node (aborting the calls in flight it stops) before
/// this returns.
///
/// # Errors
///
/// [`ControlError::Invalid`] (the field named), [`ControlError::Conflict`] (too many in
/// force), [`ControlError::Unavailable`] (nothing was engaged).
pub async fn engage(
    state: &AppState,
    org_id: &str,
    by: &str,
    request: &Engage<'_>,
) -> Result<KillSwitch, ControlError> {
    let switch = build(state, org_id, Some(by), request, KillSwitchSource::Manual).await?;
    store_switch(state, &switch, Vec::new()).await?;
    tracing::warn!(%org_id, kill_switch = %switch.id, scope = %switch.scope, target = %switch.target(), reason = %switch.reason, "kill switch engaged");
    Ok(switch)
}

/// Engages the agent's kill switch for a circuit breaker (source `circuit_breaker`, no
/// user): stored with its `kill_switch.engaged` and `circuit_breaker.tripped` events and
/// webhook deliveries, installed on this node before this returns. `cooldown` seconds until
/// it releases itself (`None`: an admin releases it).
///
/// # Errors
///
/// As [`engage`].
pub async fn trip(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    breaker: &str,
    reason: &str,
    cooldown: Option<u64>,
) -> Result<KillSwitch, ControlError> {
    let reason = format!("circuit_breaker: {reason}");
    let request = Engage {
        scope: KillSwitchScope::Agent.as_str(),
        target: Some(agent_id),
        reason: &reason,
        expires_in: cooldown,
    };
    let switch = build(
        state,
        org_id,
        None,
        &request,
        KillSwitchSource::CircuitBreaker,
    )
    .await?;
    let tripped = NewEvent {
        org_id: org_id.to_string(),
        ts: switch.created_at.clone(),
        agent_id: Some(agent_id.to_string()),
        action_id: None,
        event_type: event_types::CIRCUIT_BREAKER_TRIPPED.to_string(),
        data: json!({
            "breaker": breaker,
            "kill_switch_id": switch.id,
            "reason": switch.reason,
            "expires_at": switch.expires_at,
        }),
    };
    store_switch(state, &switch, vec![tripped]).await?;
    tracing::warn!(%org_id, %agent_id, kill_switch = %switch.id, %breaker, reason = %switch.reason, "security event: circuit breaker tripped; the agent is stopped");
    Ok(switch)
}

/// Stores a new switch with `events` before its `kill_switch.engaged` event and its webhook
/// deliveries, and installs it on this node (aborting the calls in flight it stops).
///
/// # Errors
///
/// [`ControlError::Conflict`] when the organisation has too many switches in force;
/// [`ControlError::Unavailable`].
async fn store_switch(
    state: &AppState,
    switch: &KillSwitch,
    mut events: Vec<NewEvent>,
) -> Result<(), ControlError> {
    check_room(state, &switch.org_id).await?;
    let mut mutations = vec![Mutation::InsertKillSwitch(switch.clone())];
    mutations.extend(
        crate::webhooks::kill_switch_deliveries(state, event_types::KILL_SWITCH_ENGAGED, switch)
            .await
            .map_err(unavailable(
                "the webhooks could not be read, so nothing was engaged",
            ))?,
    );
    events.push(engaged_event(switch));
    commit(state, mutations, events).await?;
    install(state, &switch.org_id).await;
    Ok(())
}

pub(super) async fn commit(
    state: &AppState,
    mutations: Vec<Mutation>,
    events: Vec<NewEvent>,
) -> Result<(), ControlError> {
    let queued = mutations
        .iter()
        .any(|m| matches!(m, Mutation::InsertDelivery(_)));
    state
        .writer
        .submit(WriteUnit {
            mutations,
            action: None,
            events,
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound(m) => ControlError::NotFound(format!("no {m} in force")),
            e => ControlError::Unavailable(format!("the change could not be recorded: {e}")),
        })?;
    if queued {
        state.webhooks.queued.notify_one();
    }
    Ok(())
}

/// Releases a kill switch of the organisation (expired ones too, to close them), with its
/// `kill_switch.released` event and webhook deliveries.
///
/// # Errors
///
/// [`ControlError::NotFound`] when the organisation has no unreleased switch `id`;
/// [`ControlError::Unavailable`].
pub async fn release(
    state: &AppState,
    org_id: &str,
    by: &str,
    id: &str,
) -> Result<KillSwitch, ControlError> {
    let (_, live) = state
        .store
        .kill_switch_state(org_id, true, u32::MAX)
        .await
        .map_err(unavailable("the kill switches could not be read"))?;
    let Some(mut switch) = live.into_iter().find(|s| s.id == id) else {
        return Err(ControlError::NotFound(format!(
            "no kill switch {id} in force in your organisation"
        )));
    };
    let now = state.clock.now_rfc3339();
    switch.released_at = Some(now.clone());
    switch.released_by = Some(by.to_string());
    let mut mutations = vec![Mutation::ReleaseKillSwitch {
        org_id: org_id.to_string(),
        id: id.to_string(),
        by: by.to_string(),
        now: now.clone(),
    }];
    mutations.extend(
        crate::webhooks::kill_switch_deliveries(state, event_types::KILL_SWITCH_RELEASED, &switch)
            .await
            .map_err(unavailable(
                "the webhooks could not be read, so nothing was released",
            ))?,
    );
    let event = NewEvent {
        org_id: org_id.to_string(),
        ts: now,
        agent_id: switch.agent_id.clone(),
        action_id: None,
        event_type: event_types::KILL_SWITCH_RELEASED.to_string(),
        data: json!({
            "kill_switch_id": switch.id,
            "scope": switch.scope.as_str(),
            "agent_id": switch.agent_id,
            "tool": switch.tool,
            "by": by,
        }),
    };
    commit(state, mutations, vec![event]).await?;
    install(state, org_id).await;
    tracing::warn!(%org_id, kill_switch = %switch.id, "kill switch released");
    Ok(switch)
}

/// What isolating an agent did.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// The agent's kill switch (source `isolation`).
    pub kill_switch: KillSwitch,
    /// The keys it revoked.
    pub revoked_keys: Vec<String>,
    /// The forensic snapshot kept.
    pub snapshot: AgentSnapshot,
}

/// Isolates an agent (seed 003's containment in one call): engages its kill switch (in-flight
/// calls aborted), revokes every live key, and keeps a snapshot of its recent actions and
/// audit events; all in one write unit with a `kill_switch.engaged` and an
/// `agent.isolated` event. Reinstating it takes a release and a new key.
///
/// # Errors
///
/// [`ControlError::NotFound`] for an agent not in the organisation;
/// [`ControlError::Invalid`] for a bad reason; [`ControlError::Unavailable`] (nothing
/// changed).
pub async fn isolate(
    state: &AppState,
    org_id: &str,
    by: &str,
    agent_id: &str,
    reason: &str,
) -> Result<Isolation, ControlError> {
    let agent = state
        .store
        .get_agent(org_id, agent_id)
        .await
        .map_err(unavailable("the agent could not be looked up"))?
        .ok_or_else(|| {
            ControlError::NotFound(format!("no agent {agent_id} in your organisation"))
        })?;
    let request = Engage {
        scope: "agent",
        target: Some(agent_id),
        reason,
        expires_in: None,
    };
    let switch = build(
        state,
        org_id,
        Some(by),
        &request,
        KillSwitchSource::Isolation,
    )
    .await?;
    check_room(state, org_id).await?;
    let keys = state
        .store
        .list_agent_keys(org_id, agent_id)
        .await
        .map_err(unavailable("the agent's keys could not be read"))?;
    let (actions, events) = state
        .store
        .agent_history(org_id, agent_id, SNAPSHOT_WINDOW, SNAPSHOT_LIMIT)
        .await
        .map_err(unavailable("the agent's history could not be read"))?;
    let revoked_keys: Vec<String> = keys
        .iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| k.id.clone())
        .collect();
    // Parameters and context as the API shows them: redacted (an action waiting for
    // approval keeps them in full in its row).
    let actions: Vec<Value> = actions
        .into_iter()
        .map(|mut a| {
            a.params = aaf_core::redact::redact(&a.params);
            a.context = aaf_core::redact::redact(&a.context);
            serde_json::to_value(a).unwrap_or(Value::Null)
        })
        .collect();
    let snapshot = json!({
        "agent": agent,
        "keys": keys,
        "actions": actions,
        "audit_events": events,
        "window": {"latest": SNAPSHOT_WINDOW, "limit": SNAPSHOT_LIMIT},
        "taken_at": switch.created_at,
    });
    // The hash of the text stored (serde_json's compact form; parsing and writing it again
    // gives the same text), so that the stored snapshot can be checked against the chain.
    let text = serde_json::to_string(&snapshot).map_err(|e| {
        ControlError::Unavailable(format!("the snapshot could not be written: {e}"))
    })?;
    let sha256 = hex::encode(sha2::Sha256::digest(text.as_bytes()));
    let snapshot = AgentSnapshot {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: org_id.to_string(),
        agent_id: agent_id.to_string(),
        kill_switch_id: switch.id.clone(),
        created_at: switch.created_at.clone(),
        created_by: Some(by.to_string()),
        sha256,
        snapshot,
    };
    let mut mutations = vec![
        Mutation::InsertKillSwitch(switch.clone()),
        Mutation::RevokeAllAgentKeys {
            org_id: org_id.to_string(),
            agent_id: agent_id.to_string(),
            now: switch.created_at.clone(),
        },
        Mutation::InsertAgentSnapshot(snapshot.clone()),
    ];
    mutations.extend(
        crate::webhooks::kill_switch_deliveries(state, event_types::KILL_SWITCH_ENGAGED, &switch)
            .await
            .map_err(unavailable(
                "the webhooks could not be read, so nothing was changed",
            ))?,
    );
    let isolated = NewEvent {
        org_id: org_id.to_string(),
        ts: switch.created_at.clone(),
        agent_id: Some(agent_id.to_string()),
        action_id: None,
        event_type: event_types::AGENT_ISOLATED.to_string(),
        data: json!({
            "kill_switch_id": switch.id,
            "revoked_keys": revoked_keys,
            "snapshot_id": snapshot.id,
            "snapshot_sha256": snapshot.sha256,
            "actions": actions.len(),
            "audit_events": events.len(),
            "reason": switch.reason,
            "by": by,
        }),
    };
    commit(state, mutations, vec![engaged_event(&switch), isolated]).await?;
    state.key_cache.clear();
    install(state, org_id).await;
    tracing::warn!(%org_id, %agent_id, kill_switch = %switch.id, keys = revoked_keys.len(), "agent isolated");
    Ok(Isolation {
        kill_switch: switch,
        revoked_keys,
        snapshot,
    })
}

/// The organisation's kill switches, newest first: the unreleased ones, or (`all`) the last
/// `limit` of every state.
///
/// # Errors
///
/// [`ControlError::Unavailable`].
pub async fn list(
    state: &AppState,
    org_id: &str,
    all: bool,
    limit: u32,
) -> Result<Vec<KillSwitch>, ControlError> {
    let (_, switches) = state
        .store
        .kill_switch_state(org_id, !all, limit)
        .await
        .map_err(unavailable("the kill switches could not be read"))?;
    Ok(switches)
}

/// `in_force`, `expired` or `released`, at `now`.
pub fn state_of(switch: &KillSwitch, now: &str) -> &'static str {
    if switch.released_at.is_some() {
        "released"
    } else if switch.in_force(now) {
        "in_force"
    } else {
        "expired"
    }
}

/// Most live rate limits per organisation.
pub const MAX_RATE_LIMITS_PER_ORG: usize = 100;

/// A rate limit to create, as asked ([`super::rate_limit::LimitSpec`]).
pub type NewRateLimit<'a> = super::rate_limit::LimitSpec<'a>;

/// Creates a rate limit of the organisation, with its `rate_limit.created` event, and
/// installs it on this node before this returns (other nodes: as kill switches).
///
/// # Errors
///
/// [`ControlError::Invalid`] naming `scope`, `target`, `limit`, `window`, `burst` or `mode`;
/// [`ControlError::Conflict`] beyond [`MAX_RATE_LIMITS_PER_ORG`];
/// [`ControlError::Unavailable`].
pub async fn create_rate_limit(
    state: &AppState,
    org_id: &str,
    by: &str,
    request: &NewRateLimit<'_>,
) -> Result<(aaf_core::rate_limit::RateLimit, aaf_store::RateLimitMeta), ControlError> {
    let limit = super::rate_limit::build(
        uuid::Uuid::now_v7().to_string(),
        org_id.to_string(),
        request,
    )
    .map_err(|(field, message)| ControlError::Invalid { field, message })?;
    if let Some(agent) = &limit.agent_id {
        agent_in_org(state, org_id, agent, "target").await?;
    }
    let live = state
        .store
        .list_rate_limits(org_id)
        .await
        .map_err(unavailable("the rate limits could not be read"))?;
    if live.len() >= MAX_RATE_LIMITS_PER_ORG {
        return Err(ControlError::Conflict(format!(
            "the organisation has {MAX_RATE_LIMITS_PER_ORG} rate limits, the most allowed; delete one first"
        )));
    }
    let meta = aaf_store::RateLimitMeta {
        created_at: state.clock.now_rfc3339(),
        created_by: Some(by.to_string()),
    };
    let event = NewEvent {
        org_id: org_id.to_string(),
        ts: meta.created_at.clone(),
        agent_id: limit.agent_id.clone(),
        action_id: None,
        event_type: event_types::RATE_LIMIT_CREATED.to_string(),
        data: json!({
            "rate_limit_id": limit.id,
            "scope": limit.scope.as_str(),
            "agent_id": limit.agent_id,
            "tool": limit.tool,
            "limit": limit.limit,
            "window": limit.window.as_str(),
            "burst": limit.burst,
            "mode": limit.mode.as_str(),
            "by": by,
        }),
    };
    commit(
        state,
        vec![Mutation::InsertRateLimit(limit.clone(), meta.clone())],
        vec![event],
    )
    .await?;
    install(state, org_id).await;
    Ok((limit, meta))
}

/// Deletes a live rate limit of the organisation, with its `rate_limit.deleted` event.
///
/// # Errors
///
/// [`ControlError::NotFound`] when the organisation has no live limit `id`;
/// [`ControlError::Unavailable`].
pub async fn delete_rate_limit(
    state: &AppState,
    org_id: &str,
    by: &str,
    id: &str,
) -> Result<(), ControlError> {
    let now = state.clock.now_rfc3339();
    let event = NewEvent {
        org_id: org_id.to_string(),
        ts: now.clone(),
        agent_id: None,
        action_id: None,
        event_type: event_types::RATE_LIMIT_DELETED.to_string(),
        data: json!({"rate_limit_id": id, "by": by}),
    };
    commit(
        state,
        vec![Mutation::DeleteRateLimit {
            org_id: org_id.to_string(),
            id: id.to_string(),
            by: by.to_string(),
            now,
        }],
        vec![event],
    )
    .await?;
    install(state, org_id).await;
    Ok(())
}
