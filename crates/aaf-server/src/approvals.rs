//! The approvals workflow on the server: approvers' answers, expiry, cancellation, reported
//! results, execution of approved connector actions, recovery after a node stopped, and the
//! notifications that wake agents waiting on an action.
//!
//! Every change of an approval-requiring action goes through [`aaf_core::approval`]'s state
//! machine and is committed as a compare-and-set on the action's version together with its
//! audit event (and, for answers, the approver's vote): of two concurrent changes exactly one
//! commits; the other re-reads and re-applies its event to what the winner left, which the
//! state machine then refuses or accepts. Execution is at most once: only the writer whose
//! `approved → executing` transition committed runs the action.

use std::sync::Arc;
use std::time::Duration;

use aaf_core::action::{
    ActionRequest, ActionStatus, AgentInfo, AllowedAction, Decision, OrgInfo, Verdict,
};
use aaf_core::approval::{
    action_digest, ApprovalError, ApprovalEvent, ApprovalState, ApprovalStatus,
};
use aaf_core::audit::event_types;
use aaf_store::{
    ActionInputs, ActionQuery, ActionRecord, ActionWrite, ApprovalVote, Mutation, NewEvent,
    StoreError, TokenPrincipal, WriteUnit,
};
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::app::AppState;
use crate::connectors::Connector;
use crate::error::ApiError;
use crate::pipeline::evaluate::{evaluate, Subject};

/// How many times a change is re-applied after losing a compare-and-set to a concurrent one.
const MAX_ATTEMPTS: usize = 8;
/// How many actions of one organisation a sweep handles per kind.
const SWEEP_BATCH: u32 = 100;

/// Announces changed actions to the requests waiting on them
/// (`GET /v1/actions/{id}?wait=`): this node's own changes, and other nodes' through the
/// store's notifications (PostgreSQL `NOTIFY`).
#[derive(Debug)]
pub struct ActionEvents {
    tx: broadcast::Sender<Arc<str>>,
}

/// The id announced when any action may have changed (a notification listener reconnected).
pub const ANY_ACTION: &str = "*";

impl Default for ActionEvents {
    fn default() -> Self {
        ActionEvents {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl ActionEvents {
    /// Wakes the waiters on action `id`.
    pub fn announce(&self, id: &str) {
        let _ = self.tx.send(Arc::from(id));
    }

    /// Wakes every waiter (changes may have been missed).
    pub fn announce_all(&self) {
        self.announce(ANY_ACTION);
    }

    /// Receives the ids of changed actions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

/// An organisation's approval settings in force: its own, or the server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveSettings {
    /// Whether the user an action was requested for may not approve it.
    pub four_eyes: bool,
    /// The approval deadline in seconds, unless a policy asks for another.
    pub approval_timeout_seconds: u64,
    /// Whether the organisation set its own (false: the server's defaults).
    pub customised: bool,
    /// When the organisation last changed them, if it did.
    pub updated_at: Option<String>,
    /// The organisation's own outbound detection rules, if it set any.
    pub outbound_detection: Option<serde_json::Value>,
}

/// The settings in force for `org_id`.
///
/// Errors: 503 when the database cannot be read.
pub async fn settings(state: &AppState, org_id: &str) -> Result<EffectiveSettings, ApiError> {
    let defaults = &state.config.approvals;
    Ok(match state.store.get_org_settings(org_id).await? {
        Some(s) => EffectiveSettings {
            four_eyes: s.four_eyes,
            approval_timeout_seconds: s
                .approval_timeout_seconds
                .unwrap_or(defaults.default_timeout_seconds),
            customised: true,
            updated_at: Some(s.updated_at),
            outbound_detection: s.outbound_detection,
        },
        None => EffectiveSettings {
            four_eyes: defaults.four_eyes,
            approval_timeout_seconds: defaults.default_timeout_seconds,
            customised: false,
            updated_at: None,
            outbound_detection: None,
        },
    })
}

/// The approval status of a stored action; 409 for an action that never needed approval.
fn approval_status(action: &ActionRecord) -> Result<ApprovalStatus, ApiError> {
    match (
        action.decision.as_str(),
        ApprovalStatus::parse(action.status.as_str()),
    ) {
        ("require_approval", Some(status)) => Ok(status),
        _ => Err(ApiError::Conflict(format!(
            "action {} did not require approval (decision {}, status {})",
            action.id, action.decision, action.status
        ))),
    }
}

/// The user named by the action's `context.user_id`: `Ok(None)` when it is absent, `null` or
/// blank, `Ok(Some(text))` for a string.
///
/// # Errors
///
/// The JSON type's name (`a number`, `an array`, ...) when it is present but not a string:
/// four eyes cannot tell whom such an action was requested for, so nobody may approve it
/// (see [`answer`]).
fn requested_for(action: &ActionRecord) -> Result<Option<String>, &'static str> {
    match action.context.get("user_id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Bool(_)) => Err("a boolean"),
        Some(Value::Number(_)) => Err("a number"),
        Some(Value::Array(_)) => Err("an array"),
        Some(Value::Object(_)) => Err("an object"),
    }
}

/// The form in which four eyes compares a user named by `context.user_id` with an approver's
/// id and name, so that spelling variants of one user compare equal.
///
/// The text is normalised to Unicode NFKC (UAX #15: compatibility forms such as full-width
/// letters become their plain forms), stripped of control and format characters (general
/// categories Cc and Cf: zero-width spaces, bidirectional marks, BOM), trimmed of white
/// space and lowercased (Unicode full case mapping), then normalised again. A UUID (user ids
/// are UUIDv7, RFC 9562) in any of its textual forms (hyphenated, simple, braced, `urn:uuid:`)
/// becomes its lowercase hyphenated form. Names that differ only in case therefore bar each
/// other: the rule errs on the side of refusing.
pub fn identity_key(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    let visible: String = text
        .nfkc()
        .filter(|c| !c.is_control() && c.general_category() != GeneralCategory::Format)
        .collect();
    let folded: String = visible.trim().to_lowercase().nfkc().collect();
    match uuid::Uuid::try_parse(&folded) {
        Ok(id) => id.hyphenated().to_string(),
        Err(_) => folded,
    }
}

/// Whether `who` (an action's `context.user_id`) names `user`, by id or by name, compared by
/// [`identity_key`].
fn names_user(who: &str, user: &TokenPrincipal) -> bool {
    let who = identity_key(who);
    who == identity_key(&user.user_id) || who == identity_key(&user.name)
}

/// The action's approval state as the core state machine sees it. With four eyes on, a
/// `context.user_id` naming the approving user (by id or name, compared by [`identity_key`])
/// bars that user. A `context.user_id` that is not a string is refused before this (see
/// [`answer`]).
fn machine_state(
    action: &ActionRecord,
    status: ApprovalStatus,
    votes: &[ApprovalVote],
    four_eyes: bool,
    approver: Option<&TokenPrincipal>,
) -> ApprovalState {
    let requested_for = four_eyes
        .then(|| requested_for(action).ok().flatten())
        .flatten()
        .map(|who| match approver {
            Some(u) if names_user(&who, u) => u.user_id.clone(),
            _ => who,
        });
    ApprovalState {
        status,
        required: action.approvals_required.unwrap_or(1).max(1),
        approvers: votes
            .iter()
            .filter(|v| v.vote == "approve")
            .map(|v| v.user_id.clone())
            .collect(),
        // An approval-requiring action always has a deadline; none would be a corrupt row,
        // and the empty string makes every approval late (fail closed).
        expires_at: action.expires_at.clone().unwrap_or_default(),
        requested_for,
    }
}

/// One transition of `action` as a write unit: the compare-and-set at its version, the
/// extra mutations, and one audit event.
struct Transition {
    status: ApprovalStatus,
    reason: Option<String>,
    result: Option<Value>,
    mutations: Vec<Mutation>,
    event_type: &'static str,
    data: Value,
    /// The webhook event announcing it (`approval.approved`, ...), queued in the same
    /// transaction.
    notify: Option<&'static str>,
}

async fn commit(state: &AppState, action: &ActionRecord, t: Transition) -> Result<(), StoreError> {
    let now = state.clock.now_rfc3339();
    let mut mutations = t.mutations;
    if let Some(event) = t.notify {
        let mut after = action.clone();
        after.status = t.status.into();
        if let Some(reason) = &t.reason {
            after.reason = reason.clone();
        }
        mutations
            .extend(crate::webhooks::deliveries_for(state, event, &after, t.data.clone()).await?);
    }
    let queued = mutations
        .iter()
        .any(|m| matches!(m, Mutation::InsertDelivery(_)));
    let final_status = t.status.is_final();
    // An action that ends without running used nothing of what it reserved of its budgets.
    if matches!(
        t.status,
        ApprovalStatus::Rejected
            | ApprovalStatus::Expired
            | ApprovalStatus::Cancelled
            | ApprovalStatus::Denied
    ) && state.runtime.has_budgets(&action.org_id)
    {
        mutations.push(Mutation::SettleBudget {
            org_id: action.org_id.clone(),
            action_id: action.id.clone(),
            tokens: Some(0),
            cost: Some(0),
            now: now.clone(),
        });
    }
    let unit = WriteUnit {
        mutations,
        action: Some(ActionWrite::Update {
            org_id: action.org_id.clone(),
            id: action.id.clone(),
            status: t.status.into(),
            result: t.result,
            reason: t.reason,
            expected_version: Some(action.version),
            // Once nothing will run the action any more, its inputs are kept redacted only,
            // like every other action's.
            inputs: final_status.then(|| ActionInputs {
                params: aaf_core::redact::redact(&action.params),
                context: aaf_core::redact::redact(&action.context),
            }),
            updated_at: now.clone(),
        }),
        events: vec![NewEvent {
            org_id: action.org_id.clone(),
            ts: crate::time::now_rfc3339(),
            agent_id: Some(action.agent_id.clone()),
            action_id: Some(action.id.clone()),
            event_type: t.event_type.to_string(),
            data: t.data,
        }],
    };
    state.writer.submit(unit).await?;
    state.action_events.announce(&action.id);
    if queued {
        state.webhooks.queued.notify_one();
    }
    Ok(())
}

/// Whether a store error is a lost compare-and-set (re-read and re-apply).
fn lost_race(e: &StoreError) -> bool {
    matches!(e, StoreError::Stale(_))
}

fn unavailable(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) | StoreError::Stale(m) | StoreError::DuplicateVote(m) => {
            ApiError::Conflict(m)
        }
        StoreError::NotFound(m) => ApiError::NotFound(m),
        other => ApiError::Unavailable(format!(
            "the change could not be recorded in the audit log, so it was not made: {other}"
        )),
    }
}

async fn load(state: &AppState, org_id: &str, id: &str) -> Result<ActionRecord, ApiError> {
    state
        .store
        .get_action(org_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no action {id}")))
}

/// An approver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Approve.
    Approve,
    /// Reject.
    Reject,
}

/// Records `user`'s answer to pending action `id` of their organisation. The final approval
/// of a connector action runs it (see [`run_approved`]) before this returns.
///
/// `digest`, when given, must be the action's digest: the approver answers for exactly the
/// action they reviewed.
///
/// Errors: 404 unknown action; 409 not pending (already decided, expired, approved by this
/// user, ...) or digest mismatch; 403 four-eyes; 503 the answer could not be recorded.
pub async fn answer(
    state: &AppState,
    user: &TokenPrincipal,
    id: &str,
    answer: Answer,
    comment: &str,
    digest: Option<&str>,
) -> Result<ActionRecord, ApiError> {
    let org_id = user.org.id.as_str();
    let mut approved = false;
    for _ in 0..MAX_ATTEMPTS {
        let action = load(state, org_id, id).await?;
        let status = approval_status(&action)?;
        if let Some(d) = digest {
            if action.digest.as_deref() != Some(d) {
                return Err(ApiError::Conflict(format!(
                    "digest mismatch: action {id} has digest {}, not the {d} you reviewed",
                    action.digest.as_deref().unwrap_or("(none)")
                )));
            }
        }
        // A kill switch in force over the action's agent or tool: it cannot be approved
        // (rejecting it stays possible).
        if matches!(answer, Answer::Approve) {
            if let Err(refused) =
                crate::pipeline::guards::kill_switch(state, org_id, &action.agent_id, &action.tool)
            {
                return Err(ApiError::Forbidden(format!(
                    "action {id} cannot be approved: {}",
                    refused.reason
                )));
            }
        }
        let votes = state.store.list_approval_votes(org_id, id).await?;
        let four_eyes = settings(state, org_id).await?.four_eyes;
        if four_eyes && matches!(answer, Answer::Approve) {
            if let Err(kind) = requested_for(&action) {
                return Err(ApiError::Forbidden(format!(
                    "context.user_id of action {id} is {kind}, not a string: the four-eyes rule cannot tell whom it was requested for, so nobody may approve it; reject it and have the agent submit it again with a string user id"
                )));
            }
        }
        let current = machine_state(&action, status, &votes, four_eyes, Some(user));
        let now = state.clock.now_rfc3339();
        let event = match answer {
            Answer::Approve => ApprovalEvent::Approve {
                approver: user.user_id.clone(),
                at: now.clone(),
            },
            Answer::Reject => ApprovalEvent::Reject {
                approver: user.user_id.clone(),
                at: now.clone(),
            },
        };
        let next = match current.apply(&event) {
            Ok(next) => next,
            Err(ApprovalError::DeadlinePassed { expires_at }) => {
                expire(state, &action).await?;
                return Err(ApiError::Conflict(format!(
                    "the approval deadline {expires_at} of action {id} has passed; it expired"
                )));
            }
            Err(e @ ApprovalError::SelfApproval { .. }) => {
                return Err(ApiError::Forbidden(e.to_string()))
            }
            Err(e) => return Err(ApiError::Conflict(e.to_string())),
        };
        let (vote, event_type) = match answer {
            Answer::Approve => ("approve", event_types::APPROVAL_APPROVED),
            Answer::Reject => ("reject", event_types::APPROVAL_REJECTED),
        };
        let transition = Transition {
            status: next.status,
            reason: None,
            result: action.result.clone(),
            mutations: vec![Mutation::InsertApprovalVote(ApprovalVote {
                org_id: org_id.to_string(),
                action_id: id.to_string(),
                user_id: user.user_id.clone(),
                user_name: user.name.clone(),
                vote: vote.to_string(),
                comment: comment.to_string(),
                created_at: now,
            })],
            event_type,
            notify: match next.status {
                ApprovalStatus::Approved => Some("approval.approved"),
                ApprovalStatus::Rejected => Some("approval.rejected"),
                _ => None,
            },
            data: json!({
                "approver_id": user.user_id,
                "approver_name": user.name,
                "comment": comment,
                "digest": action.digest,
                "approvals": next.approvers.len(),
                "approvals_required": next.required,
                "final": next.status != ApprovalStatus::PendingApproval,
                "status": next.status.as_str(),
            }),
        };
        match commit(state, &action, transition).await {
            Ok(()) => {
                approved = next.status == ApprovalStatus::Approved;
                break;
            }
            Err(e) if lost_race(&e) => continue,
            Err(StoreError::DuplicateVote(_)) => {
                return Err(ApiError::Conflict(format!(
                    "{} has already answered action {id}",
                    user.name
                )))
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
    if approved {
        let action = load(state, org_id, id).await?;
        if Connector::for_tool(&action.tool).is_some() {
            run_approved(state, org_id, id).await?;
        }
    }
    load(state, org_id, id).await
}

/// Expires `action` if its deadline has passed (an `approval.expired` security event).
/// Returns whether this call expired it; losing to a concurrent change is not an error.
///
/// Errors: 503 when the expiry could not be recorded.
pub async fn expire(state: &AppState, action: &ActionRecord) -> Result<bool, ApiError> {
    let mut action = action.clone();
    for _ in 0..MAX_ATTEMPTS {
        let Ok(status) = approval_status(&action) else {
            return Ok(false);
        };
        let current = machine_state(&action, status, &[], false, None);
        let Ok(next) = current.apply(&ApprovalEvent::Expire {
            at: state.clock.now_rfc3339(),
        }) else {
            return Ok(false);
        };
        let votes = state
            .store
            .list_approval_votes(&action.org_id, &action.id)
            .await?;
        let transition = Transition {
            status: next.status,
            reason: Some(format!(
                "nobody approved the action before its deadline {}",
                current.expires_at
            )),
            result: None,
            mutations: Vec::new(),
            event_type: event_types::APPROVAL_EXPIRED,
            notify: Some("approval.expired"),
            data: json!({
                "digest": action.digest,
                "expires_at": current.expires_at,
                "approvals": votes.iter().filter(|v| v.vote == "approve").count(),
                "approvals_required": current.required,
                "security_event": true,
            }),
        };
        match commit(state, &action, transition).await {
            Ok(()) => {
                tracing::warn!(
                    action_id = %action.id,
                    org_id = %action.org_id,
                    expires_at = %current.expires_at,
                    "security event: approval timed out; the action expired"
                );
                return Ok(true);
            }
            Err(e) if lost_race(&e) => {
                action = load(state, &action.org_id, &action.id).await?;
            }
            Err(e) => return Err(unavailable(e)),
        }
    }
    Ok(false)
}

/// Withdraws the agent's own pending action.
///
/// Errors: 404 unknown action or another agent's; 409 not pending; 503.
pub async fn cancel(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    id: &str,
) -> Result<ActionRecord, ApiError> {
    agent_transition(state, org_id, agent_id, id, |_| {
        Ok((
            ApprovalEvent::Cancel,
            event_types::APPROVAL_CANCELLED,
            None,
            json!({}),
            Vec::new(),
        ))
    })
    .await
}

/// What an agent reports it used running an action itself (`usage` of
/// `POST /v1/actions/{id}/result`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportedUsage {
    /// Tokens used.
    pub tokens: Option<u64>,
    /// Cost, in micro-units of the configured currency.
    pub cost: Option<u64>,
}

/// The budget settlement of a reported result: the reported usage replaces the action's
/// reservation (what it did not report stays as reserved).
fn settlement(state: &AppState, action: &ActionRecord, usage: ReportedUsage) -> Vec<Mutation> {
    if !state.runtime.has_budgets(&action.org_id) {
        return Vec::new();
    }
    vec![Mutation::SettleBudget {
        org_id: action.org_id.clone(),
        action_id: action.id.clone(),
        tokens: usage.tokens,
        cost: usage.cost,
        now: state.clock.now_rfc3339(),
    }]
}

/// Records the outcome the agent reports for its own action (tools the agent runs itself):
/// an allowed action, or an approved one; a second report is refused. The reported usage
/// settles what the action reserved of its budgets.
///
/// Errors: 404 unknown action or another agent's; 409 not allowed or approved, already
/// reported, or a connector tool (AAF runs those itself); 503.
pub async fn report_result(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    id: &str,
    succeeded: bool,
    detail: Map<String, Value>,
    usage: ReportedUsage,
) -> Result<ActionRecord, ApiError> {
    let action = load(state, org_id, id).await?;
    if action.agent_id != agent_id {
        return Err(ApiError::NotFound(format!("no action {id}")));
    }
    if action.decision == "allow" {
        return report_allowed(state, action, succeeded, detail, usage).await;
    }
    agent_transition(state, org_id, agent_id, id, |action| {
        if Connector::for_tool(&action.tool).is_some() {
            return Err(ApiError::Conflict(format!(
                "AAF runs {} actions itself after approval; there is no result to report",
                action.tool
            )));
        }
        let status = if succeeded { "succeeded" } else { "failed" };
        let result =
            json!({"reported_status": status, "detail": detail, "usage": usage_json(usage)});
        Ok((
            if succeeded {
                ApprovalEvent::Succeeded
            } else {
                ApprovalEvent::FailedToRun
            },
            event_types::ACTION_RESULT_REPORTED,
            Some(result.clone()),
            result,
            settlement(state, action, usage),
        ))
    })
    .await
}

fn usage_json(usage: ReportedUsage) -> Value {
    json!({"tokens": usage.tokens, "cost_micros": usage.cost})
}

/// The outcome of an allowed action of a tool the agent runs itself: `allowed` becomes
/// `executed` or `failed` (a compare-and-set: a second report is a 409).
async fn report_allowed(
    state: &AppState,
    action: ActionRecord,
    succeeded: bool,
    detail: Map<String, Value>,
    usage: ReportedUsage,
) -> Result<ActionRecord, ApiError> {
    if Connector::for_tool(&action.tool).is_some() {
        return Err(ApiError::Conflict(format!(
            "AAF ran this {} action itself; there is no result to report",
            action.tool
        )));
    }
    if action.status != ActionStatus::Allowed {
        return Err(ApiError::Conflict(format!(
            "the outcome of action {} was already reported (status {})",
            action.id, action.status
        )));
    }
    let reported = if succeeded { "succeeded" } else { "failed" };
    let result = json!({"reported_status": reported, "detail": detail, "usage": usage_json(usage)});
    let now = state.clock.now_rfc3339();
    let settled = settlement(state, &action, usage);
    let budgeted = !settled.is_empty();
    let unit = WriteUnit {
        mutations: settled,
        action: Some(ActionWrite::Update {
            org_id: action.org_id.clone(),
            id: action.id.clone(),
            status: if succeeded {
                ActionStatus::Executed
            } else {
                ActionStatus::Failed
            },
            result: Some(result.clone()),
            reason: None,
            expected_version: Some(action.version),
            inputs: None,
            updated_at: now.clone(),
        }),
        events: vec![NewEvent {
            org_id: action.org_id.clone(),
            ts: now,
            agent_id: Some(action.agent_id.clone()),
            action_id: Some(action.id.clone()),
            event_type: event_types::ACTION_RESULT_REPORTED.to_string(),
            data: result,
        }],
    };
    match state.writer.submit(unit).await {
        Ok(_) => {}
        Err(e) if lost_race(&e) => {
            return Err(ApiError::Conflict(format!(
                "the outcome of action {} was already reported",
                action.id
            )))
        }
        Err(e) => return Err(unavailable(e)),
    }
    state.action_events.announce(&action.id);
    if let Some(cost) = usage.cost.filter(|c| budgeted && *c > 0) {
        crate::metrics::budget_spent(&state.config.budgets.currency, cost);
        crate::runtime::breaker::after_spend(state, &action.org_id, &action.agent_id).await;
    }
    load(state, &action.org_id, &action.id).await
}

type AgentEvent = (
    ApprovalEvent,
    &'static str,
    Option<Value>,
    Value,
    Vec<Mutation>,
);

async fn agent_transition(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    id: &str,
    event_for: impl Fn(&ActionRecord) -> Result<AgentEvent, ApiError>,
) -> Result<ActionRecord, ApiError> {
    for _ in 0..MAX_ATTEMPTS {
        let action = load(state, org_id, id).await?;
        if action.agent_id != agent_id {
            return Err(ApiError::NotFound(format!("no action {id}")));
        }
        let status = approval_status(&action)?;
        let (event, event_type, result, data, mutations) = event_for(&action)?;
        let current = machine_state(&action, status, &[], false, None);
        let next = current.apply(&event).map_err(|e| match e {
            ApprovalError::InvalidTransition {
                status: ApprovalStatus::Executed | ApprovalStatus::Failed,
                ..
            } => ApiError::Conflict(format!(
                "the outcome of action {id} was already reported (status {})",
                action.status
            )),
            e => ApiError::Conflict(e.to_string()),
        })?;
        let transition = Transition {
            status: next.status,
            reason: None,
            result: result.or_else(|| action.result.clone()),
            mutations,
            event_type,
            data,
            notify: None,
        };
        match commit(state, &action, transition).await {
            Ok(()) => return load(state, org_id, id).await,
            Err(e) if lost_race(&e) => continue,
            Err(e) => return Err(unavailable(e)),
        }
    }
    Err(ApiError::Conflict(format!(
        "action {id} kept changing; try again"
    )))
}

/// Runs an approved connector action, at most once: checks that the stored action still
/// has the digest it was approved under, that no kill switch in force stops it (else it is
/// denied with the `kill_switch:` reason), re-evaluates the current policies (a deny stops
/// it; a renewed `require_approval` is covered by the approval), claims it
/// (`approved → executing`, a compare-and-set that only one node wins) and runs it through
/// the HTTP connector. Returns without doing anything when the action is not `approved`
/// (someone else got there first).
///
/// Errors: 503 when a step could not be recorded (nothing runs unless the claim was
/// recorded).
pub async fn run_approved(state: &AppState, org_id: &str, id: &str) -> Result<(), ApiError> {
    let action = load(state, org_id, id).await?;
    if !matches!(approval_status(&action), Ok(ApprovalStatus::Approved)) {
        return Ok(());
    }
    let as_map = |v: &Value| match v {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let request = ActionRequest {
        tool: action.tool.clone(),
        operation: action.operation.clone(),
        params: as_map(&action.params),
        context: as_map(&action.context),
    };

    // 1. The digest: what is stored is what was approved. A stored action without a digest
    // (changed to hold a number without an exact RFC 8785 form) does not match either.
    let recomputed = match action_digest(
        &action.org_id,
        &action.agent_id,
        &request.tool,
        &request.operation,
        &request.params,
        &request.context,
    ) {
        Ok(digest) => digest,
        Err(e) => {
            let reason = format!(
                "denied at re-check: the stored action no longer matches the digest it was approved under (approved {}, the stored action has no digest: {e}); it was not executed",
                action.digest.as_deref().unwrap_or("(none)")
            );
            tracing::warn!(action_id = %id, %org_id, "security event: {reason}");
            return deny_at_recheck(state, &action, reason, json!({"check": "digest", "approved_digest": action.digest, "stored_digest": null, "security_event": true})).await;
        }
    };
    if action.digest.as_deref() != Some(recomputed.as_str()) {
        let reason = format!(
            "denied at re-check: the stored action no longer matches the digest it was approved under (approved {}, stored action hashes to {recomputed}); it was not executed",
            action.digest.as_deref().unwrap_or("(none)")
        );
        tracing::warn!(action_id = %id, %org_id, "security event: {reason}");
        return deny_at_recheck(state, &action, reason, json!({"check": "digest", "approved_digest": action.digest, "stored_digest": recomputed, "security_event": true})).await;
    }

    // 2. The kill switches in force now: an approved action they stop is not run.
    if let Err(refused) =
        crate::pipeline::guards::kill_switch(state, org_id, &action.agent_id, &action.tool)
    {
        let reason = refused.reason.clone();
        return deny_at_recheck(
            state,
            &action,
            reason,
            json!({"check": "kill_switch", "reason": refused.reason, "kill_switch_id": refused.kill_switch_id}),
        )
        .await;
    }

    // 3. The policies in force now.
    let (decision, revision) = recheck(state, &action, &request).await?;
    if decision.verdict == Verdict::Deny {
        let reason = format!("denied at re-check after approval: {}", decision.reason);
        return deny_at_recheck(
            state,
            &action,
            reason,
            json!({"check": "policy", "reason": decision.reason, "matched_policies": decision.matched_policies, "policy_revision": revision}),
        )
        .await;
    }

    // 4. The claim: only the writer of approved → executing runs it.
    let claim = Transition {
        status: ApprovalStatus::Executing,
        reason: None,
        result: None,
        mutations: Vec::new(),
        event_type: event_types::ACTION_EXECUTION_STARTED,
        notify: None,
        data: json!({
            "digest": recomputed,
            "recheck_decision": decision.verdict.as_str(),
            "policy_revision": revision,
        }),
    };
    match commit(state, &action, claim).await {
        Ok(()) => {}
        Err(e) if lost_race(&e) => return Ok(()),
        Err(e) => return Err(unavailable(e)),
    }

    // 5. Run it, once.
    let Some(allowed) =
        AllowedAction::from_approval(id, request, ApprovalStatus::Executing, &decision)
    else {
        return Err(ApiError::Internal(
            "an approved action could not be made runnable".into(),
        ));
    };
    crate::pipeline::execute::run(
        state,
        org_id,
        &action.agent_id,
        &allowed,
        Some(action.version + 1),
        true,
    )
    .await?;
    Ok(())
}

/// The current policies' decision on a stored action, as at submission (without the
/// original peer address, which is not stored), and the revision that made it; the
/// connector's checks apply too.
async fn recheck(
    state: &AppState,
    action: &ActionRecord,
    request: &ActionRequest,
) -> Result<(Decision, String), ApiError> {
    let (agent, org) = tokio::try_join!(
        state.store.get_agent(&action.org_id, &action.agent_id),
        state.store.get_org(&action.org_id)
    )?;
    let (Some(agent), Some(org)) = (agent, org) else {
        return Ok((
            Decision::fail_closed("the agent or organisation of the action no longer exists"),
            "unavailable".to_string(),
        ));
    };
    let subject = Subject {
        agent: AgentInfo {
            id: agent.id,
            name: agent.name,
            risk_score: agent.risk_score,
        },
        org: OrgInfo {
            id: org.id,
            plan: org.plan,
        },
        // The key that submitted it is not stored; its scope was applied at submission.
        key_tools: None,
        ip: None,
    };
    let evaluated = evaluate(
        state,
        &subject,
        request.clone(),
        action.id.clone(),
        crate::pipeline::guards::Passed::default(),
    )
    .await;
    let (decision, revision) = (evaluated.decision, evaluated.revision);
    Ok((decision, revision))
}

async fn deny_at_recheck(
    state: &AppState,
    action: &ActionRecord,
    reason: String,
    data: Value,
) -> Result<(), ApiError> {
    let transition = Transition {
        status: ApprovalStatus::Denied,
        reason: Some(reason),
        result: None,
        mutations: Vec::new(),
        event_type: event_types::APPROVAL_RECHECK_DENIED,
        notify: None,
        data,
    };
    match commit(state, action, transition).await {
        Ok(()) => Ok(()),
        Err(e) if lost_race(&e) => Ok(()),
        Err(e) => Err(unavailable(e)),
    }
}

/// One pass of the sweeper over every organisation: expires pending actions past their
/// deadline, runs approved connector actions whose approving node stopped before running
/// them (`approvals.recovery_after_seconds`), and fails actions left `executing` by a
/// stopped node (beyond the connector's timeout plus that delay) as "outcome unknown",
/// never running them again. Every node sweeps; the compare-and-set makes each change
/// happen once. When the process records metrics, it also counts the actions waiting for
/// approval (`aaf_approvals_pending`).
///
/// Errors: 503 when the database cannot be read.
pub async fn sweep(state: &AppState) -> Result<(), ApiError> {
    let now = state.clock.now();
    let recovery = Duration::from_secs(state.config.approvals.recovery_after_seconds);
    let stale_approved = crate::time::format_rfc3339(now - recovery);
    let stale_executing = crate::time::format_rfc3339(
        now - recovery - Duration::from_millis(state.config.connectors.http.timeout_ms),
    );
    let now = crate::time::format_rfc3339(now);
    // `aaf_approvals_pending`, when this process records metrics: counted in the index.
    let mut pending = crate::metrics::installed().then_some(0);
    for org in state.store.list_orgs().await? {
        let query = |status: ActionStatus, decision: Verdict| ActionQuery {
            status,
            decision: decision.as_str().to_string(),
            expires_at_or_before: None,
            updated_before: None,
            limit: SWEEP_BATCH,
        };
        let due = ActionQuery {
            expires_at_or_before: Some(now.clone()),
            ..query(ActionStatus::PendingApproval, Verdict::RequireApproval)
        };
        for action in state.store.list_actions(&org.id, &due).await? {
            if let Err(e) = expire(state, &action).await {
                tracing::warn!(action_id = %action.id, error = %e, "could not expire an action");
            }
        }
        if let Some(total) = pending {
            let waiting = ActionStatus::PendingApproval;
            let decision = Verdict::RequireApproval.as_str();
            // A failed count leaves the gauge as it was; the sweep goes on.
            pending = match state.store.count_actions(&org.id, waiting, decision).await {
                Ok(n) => Some(total + n),
                Err(e) => {
                    tracing::warn!(error = %e, "could not count the actions waiting for approval");
                    None
                }
            };
        }
        let approved = ActionQuery {
            updated_before: Some(stale_approved.clone()),
            ..query(ActionStatus::Approved, Verdict::RequireApproval)
        };
        for action in state.store.list_actions(&org.id, &approved).await? {
            if Connector::for_tool(&action.tool).is_some() {
                tracing::warn!(action_id = %action.id, "recovering an approved action its node did not run");
                if let Err(e) = run_approved(state, &org.id, &action.id).await {
                    tracing::warn!(action_id = %action.id, error = %e, "could not run a recovered approved action");
                }
            }
        }
        // Allowed HTTP actions execute at once; approved ones after their approval.
        for decision in [Verdict::Allow, Verdict::RequireApproval] {
            let executing = ActionQuery {
                updated_before: Some(stale_executing.clone()),
                ..query(ActionStatus::Executing, decision)
            };
            for action in state.store.list_actions(&org.id, &executing).await? {
                if let Err(e) = outcome_unknown(state, &action).await {
                    tracing::warn!(action_id = %action.id, error = %e, "could not fail a stale executing action");
                }
            }
        }
    }
    if let Some(pending) = pending {
        crate::metrics::approvals_pending(pending);
    }
    Ok(())
}

/// Fails an action left `executing` by a node that stopped mid-run: whether it reached its
/// destination is unknown, and it is never run again.
async fn outcome_unknown(state: &AppState, action: &ActionRecord) -> Result<(), ApiError> {
    let reason = "outcome unknown: the node executing this action stopped before recording its outcome; it was not run again".to_string();
    tracing::warn!(action_id = %action.id, org_id = %action.org_id, "{reason}");
    let transition = Transition {
        status: ApprovalStatus::Failed,
        reason: Some(reason.clone()),
        result: Some(json!({"error": reason})),
        mutations: Vec::new(),
        event_type: event_types::ACTION_FAILED,
        notify: None,
        data: json!({"error": reason, "kind": "outcome_unknown"}),
    };
    match commit(state, action, transition).await {
        Ok(()) => Ok(()),
        Err(e) if lost_race(&e) => Ok(()),
        Err(e) => Err(unavailable(e)),
    }
}

/// Runs [`sweep`] every `approvals.sweep_interval_ms` until the task is aborted.
pub async fn sweeper(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        state.config.approvals.sweep_interval_ms,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "approvals sweep failed; retrying at the next tick");
        }
    }
}
