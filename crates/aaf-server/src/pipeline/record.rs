//! Stage 4 of the pipeline: the durable record of a decision. The action row, its
//! `action.decided` event, the shadow policies' results and, for an action that waits for
//! approval, its `approval.requested` webhooks are one write unit: all of it commits, or
//! none of it and the action goes no further.

use aaf_core::action::{ActionRequest, ActionStatus, Decision, Verdict};
use aaf_core::audit::event_types;
use aaf_core::redact::redact;
use aaf_store::{ActionRecord, ActionWrite, Mutation, NewEvent, WriteUnit};
use serde_json::Value;

use super::{guards, ApprovalBinding, Evaluated, PipelineError, Submission};
use crate::app::AppState;
use crate::connectors::Connector;
use crate::policies::ShadowOutcome;
use crate::time::now_rfc3339;

/// A decision that is durable.
pub struct Recorded {
    /// The action's id.
    pub action_id: String,
    /// The request as decided (in full: a connector may still run it).
    pub request: ActionRequest,
    /// The decision.
    pub decision: Decision,
    /// The revision of the set that decided.
    pub revision: String,
    /// The shadow policies' would-be outcomes.
    pub shadow: Vec<ShadowOutcome>,
    /// For `require_approval`: what binds the approval to the action.
    pub approval: Option<ApprovalBinding>,
    /// The status recorded: `denied`, `pending_approval`, `executing` (a connector runs it
    /// next) or `allowed` (decision-only: the agent runs it).
    pub status: ActionStatus,
    /// The guard that refused it before evaluation, if one did.
    pub refused: Option<guards::Refused>,
}

/// What an action keeps of its stage-1 signals (`signals`): `{"detections": [...]}` when the
/// detectors found something, `{"risk": {...}}` when it was scored; `None` for neither.
fn signals_of(detections: Option<&Value>, risk: Option<&aaf_core::risk::Risk>) -> Option<Value> {
    let mut signals = serde_json::Map::new();
    if let Some(d) = detections.filter(|d| d.as_array().is_some_and(|a| !a.is_empty())) {
        signals.insert("detections".into(), d.clone());
    }
    if let Some(r) = risk {
        signals.insert(
            "risk".into(),
            serde_json::to_value(r).unwrap_or(Value::Null),
        );
    }
    (!signals.is_empty()).then_some(Value::Object(signals))
}

/// The status an action gets when it is decided ([`ActionStatus::decided`]).
pub fn status_of(verdict: Verdict, tool: &str) -> ActionStatus {
    ActionStatus::decided(verdict, Connector::for_tool(tool).is_some())
}

/// The digest and deadline of an action that requires approval.
///
/// # Errors
///
/// [`PipelineError::Invalid`] (field `params`) when the action has no exact digest;
/// [`PipelineError::Unavailable`] when the organisation's settings cannot be read.
async fn approval_binding(
    state: &AppState,
    submission: &Submission<'_>,
    request: &ActionRequest,
    decision: &Decision,
) -> Result<ApprovalBinding, PipelineError> {
    let agent = submission.agent;
    let digest = aaf_core::approval::action_digest(
        &agent.org.id,
        &agent.agent.id,
        &request.tool,
        &request.operation,
        &request.params,
        &request.context,
    )
    .map_err(|e| PipelineError::Invalid {
        field: "params".into(),
        message: format!("the action cannot be bound to an approval: {e}"),
    })?;
    let timeout = match decision.approval_timeout_seconds {
        Some(t) => t,
        None => {
            crate::approvals::settings(state, &agent.org.id)
                .await
                .map_err(|e| {
                    PipelineError::Unavailable(format!(
                        "the organisation's approval settings could not be read, so the action was not recorded: {e}"
                    ))
                })?
                .approval_timeout_seconds
        }
    };
    Ok(ApprovalBinding {
        digest,
        expires_at: state.clock.in_seconds(timeout),
        approvals_required: decision.approvals_required.max(1),
    })
}

/// Records the decision on a submitted action durably.
///
/// Only an action AAF may still have to run (one waiting for approval) keeps its parameters
/// and context in full; every other record, and every audit event, keeps the redacted form.
///
/// # Errors
///
/// [`PipelineError::Unavailable`] when the write failed (nothing was recorded, so nothing
/// may run); [`PipelineError::Invalid`] when the action has no exact digest (it cannot be
/// bound to an approval).
pub async fn decision(
    state: &AppState,
    submission: &Submission<'_>,
    evaluated: Evaluated,
) -> Result<Recorded, PipelineError> {
    let _timer = crate::metrics::Timer::stage(crate::metrics::Stage::Record);
    let Evaluated {
        action_id,
        request,
        decision,
        revision,
        shadow,
        explain: _,
        refused,
        reserved,
        detections,
        risk,
    } = evaluated;
    let agent = submission.agent;
    let now = now_rfc3339();
    let status = status_of(decision.verdict, &request.tool);
    let policies_json = serde_json::to_value(crate::api::policy_views(&decision, false))
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
    let keep_full = decision.verdict == Verdict::RequireApproval;
    let approval = if keep_full {
        Some(approval_binding(state, submission, &request, &decision).await?)
    } else {
        None
    };
    let params = Value::Object(request.params.clone());
    let context = Value::Object(request.context.clone());
    let redacted_params = redact(&params);
    let redacted_context = redact(&context);
    let record = ActionRecord {
        id: action_id.clone(),
        org_id: agent.org.id.clone(),
        agent_id: agent.agent.id.clone(),
        tool: request.tool.clone(),
        operation: request.operation.clone(),
        params: if keep_full {
            params
        } else {
            redacted_params.clone()
        },
        context: if keep_full {
            context
        } else {
            redacted_context.clone()
        },
        decision: decision.verdict.as_str().to_string(),
        reason: decision.reason.clone(),
        risk_level: decision.risk_level.clone(),
        status,
        policies: policies_json.clone(),
        result: None,
        created_at: now.clone(),
        updated_at: now.clone(),
        digest: approval.as_ref().map(|a| a.digest.clone()),
        expires_at: approval.as_ref().map(|a| a.expires_at.clone()),
        approvals_required: approval.as_ref().map(|a| a.approvals_required),
        version: 0,
        signals: signals_of(detections.as_ref(), risk.as_ref()),
        withheld: None,
    };
    let mut decided_event = NewEvent {
        org_id: agent.org.id.clone(),
        ts: now,
        agent_id: Some(agent.agent.id.clone()),
        action_id: Some(action_id.clone()),
        event_type: event_types::ACTION_DECIDED.to_string(),
        data: serde_json::json!({
            "tool": request.tool,
            "operation": request.operation,
            "params": redacted_params,
            "context": redacted_context,
            "decision": decision.verdict.as_str(),
            "reason": decision.reason,
            "risk_level": decision.risk_level,
            "matched_policies": decision.matched_policies,
            "policies": policies_json,
            "policy_revision": revision,
            "ip_address": submission.ip,
            "approval": approval,
            "shadow": (!shadow.is_empty()).then_some(&shadow),
        }),
    };
    if let Some(r) = &refused {
        decided_event.data["guard"] = r.audit_data();
    }
    if !reserved.is_empty() {
        decided_event.data["budget"] = crate::runtime::budget::input_view(&reserved);
    }
    if let Some(d) = &detections {
        decided_event.data["detections"] = d.clone();
    }
    if let Some(r) = &risk {
        decided_event.data["risk"] = serde_json::to_value(r).unwrap_or(Value::Null);
    }
    let shadow_rows = shadow.iter().map(|s| {
        Mutation::InsertShadowResult(aaf_store::ShadowResult {
            org_id: agent.org.id.clone(),
            policy_key: s.policy_id.clone(),
            policy_version: s.version,
            action_id: action_id.clone(),
            enforced: decision.verdict.as_str().to_string(),
            shadow: s.decision.clone(),
            differs: s.differs,
            created_at: decided_event.ts.clone(),
        })
    });
    // Webhooks announcing the request are queued with it (same transaction).
    let notifications = if keep_full {
        crate::webhooks::deliveries_for(
            state,
            "approval.requested",
            &record,
            serde_json::json!({"policies": decision.matched_policies}),
        )
        .await
        .map_err(|e| {
            PipelineError::Unavailable(format!(
                "the webhooks could not be read, so the action was not recorded: {e}"
            ))
        })?
    } else {
        Vec::new()
    };
    let queued = !notifications.is_empty();
    let mut mutations: Vec<Mutation> = shadow_rows.collect();
    mutations.extend(notifications);
    // A denied action uses nothing: its reservation is released with its record. One
    // waiting for approval keeps it until it runs or ends.
    if !reserved.is_empty() && decision.verdict == Verdict::Deny {
        mutations.push(Mutation::SettleBudget {
            org_id: agent.org.id.clone(),
            action_id: action_id.clone(),
            tokens: Some(0),
            cost: Some(0),
            now: decided_event.ts.clone(),
        });
    }
    let session_entry = state.sessions.prepare(&record);
    let risk_entry = state.risk.prepare(&record);
    state
        .writer
        .submit(WriteUnit {
            mutations,
            action: Some(ActionWrite::Insert(record)),
            events: vec![decided_event],
        })
        .await
        .map_err(|e| {
            PipelineError::Unavailable(format!(
                "the audit log could not record the decision, so the action was not executed: {e}"
            ))
        })?;
    crate::metrics::decision_recorded(decision.verdict);
    if let Some(entry) = session_entry {
        state.sessions.recorded(entry);
    }
    if let Some(entry) = risk_entry {
        state.risk.recorded(&entry);
    }
    if queued {
        state.webhooks.queued.notify_one();
    }
    Ok(Recorded {
        action_id,
        request,
        decision,
        revision,
        shadow,
        approval,
        status,
        refused,
    })
}
