//! The action pipeline: the one path every action takes, whichever door it came in by
//! (`POST /v1/actions`, its dry run, and the execution of an approved action; the MCP
//! gateway and the SDK endpoints are to call it too). It knows no HTTP: it takes a parsed
//! [`ActionRequest`] and the authenticated agent, and returns what was decided and done, or a
//! [`PipelineError`]. The handlers in [`crate::api`] only parse, call it and map the result
//! to HTTP.
//!
//! Stages, in order (ARCHITECTURE.md, "The action pipeline"):
//!
//! 0. **guards** ([`guards`]): runtime protection (kill switches, rate limits, the budget
//!    reservation) before anything else; a refusal is a deny recorded in stage 4 with a
//!    reason starting `kill_switch:`, `rate_limit:` or `budget:`, and stages 1 to 3, 5 and 6
//!    do not run;
//! 1. **policy input** ([`evaluate`]): [`aaf_core::action::PolicyInput::build`] from the
//!    request, the agent, its organisation and the request's metadata;
//! 2. **evaluation** ([`evaluate`]): the key's tool scope, then the organisation's policy set
//!    (the most restrictive decision wins; any error is a deny) and its shadow policies;
//! 3. **connector preflight** ([`evaluate`]): an action a connector would run (allowed, or
//!    waiting for approval) is checked by that connector's own rules (the HTTP connector's
//!    SSRF guard and allowlist) and denied when they refuse;
//! 4. **durable record** ([`record`]): the action row and its `action.decided` event (with
//!    shadow results and `approval.requested` webhooks) in one write; nothing runs, and
//!    nothing is answered, unless it committed;
//! 5. **execution** ([`execute`]): an allowed action of a connector tool
//!    ([`crate::connectors::Connector::for_tool`]) runs through that connector, once, unless
//!    a kill switch stops it first; one engaged while it runs aborts it; its result then
//!    passes the **outbound checks** ([`outbound`]): the detectors, with the organisation's
//!    rules to record, mask or withhold what they find, before anyone sees or stores it;
//! 6. **outcome record** ([`execute`]): `action.executed` or `action.failed`, with the
//!    result; an SSRF refusal found only while connecting makes the outcome a deny;
//! 7. **budget settlement** (with stage 6, or stage 4 for a deny): the reservation becomes
//!    what the action used (the LLM usage of the response, priced), or is released; an
//!    action the agent runs itself is settled when it reports its result
//!    (`POST /v1/actions/{id}/result`).
//!
//! A dry run ([`dry_run`]) runs stages 0 to 3 and stops: it stores nothing, runs nothing,
//! counts against no rate limit and reserves no budget (only the kill switches are asked in
//! stage 0).
//! The execution of an approved action ([`crate::approvals::run_approved`]) re-runs stages 1
//! to 3 on the stored action (the policies in force now), then 5 and 6.

pub mod classifier;
pub mod evaluate;
pub mod execute;
pub mod guards;
pub mod outbound;
pub mod record;

use aaf_core::action::{ActionRequest, ActionStatus, AllowedAction, Decision, Verdict};
use aaf_store::AgentPrincipal;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::connectors::Connector;
use crate::error::ApiError;
use crate::policies::ShadowOutcome;

pub use evaluate::Evaluated;
pub use execute::ExecutionOutcome;

/// Why the pipeline could not take an action through. A decision, including a deny, is not
/// an error: it is an outcome ([`Submitted`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    /// The request cannot be taken as given; `field` names the offending field.
    #[error("{message}")]
    Invalid {
        /// The JSON path of the field, e.g. `params`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Something the pipeline needs (the store, the audit log, the webhook table) failed;
    /// nothing that was not recorded was run.
    #[error("{0}")]
    Unavailable(String),
    /// A bug: a state the pipeline's own types should make impossible.
    #[error("{0}")]
    Internal(String),
}

impl From<PipelineError> for ApiError {
    fn from(error: PipelineError) -> ApiError {
        match error {
            PipelineError::Invalid { field, message } => ApiError::BadRequest {
                field: Some(field),
                message,
            },
            PipelineError::Unavailable(message) => ApiError::Unavailable(message),
            PipelineError::Internal(message) => ApiError::Internal(message),
        }
    }
}

/// What binds a human approval to one exact action.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApprovalBinding {
    /// Lowercase hex SHA-256 of the RFC 8785 canonical JSON of `{org_id, agent_id, tool,
    /// operation, params, context}`; approvers see it, the audit chain keeps it.
    pub digest: String,
    /// The approval deadline (RFC 3339 UTC): the policy's `approval_timeout_seconds` after
    /// the decision, else the organisation's timeout (default
    /// `approvals.default_timeout_seconds`).
    pub expires_at: String,
    /// Distinct approvals needed (the policy's `approvals_required`, default 1).
    pub approvals_required: u32,
}

/// An action submitted by an agent.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// The authenticated agent (and the key's tool scope).
    pub agent: &'a AgentPrincipal,
    /// The client's IP address, for `input.request.ip_address` and the record.
    pub ip: Option<&'a str>,
}

/// What the pipeline did with a submitted action.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The action's id (UUIDv7).
    pub action_id: String,
    /// The decision; a deny when the connector refused it while connecting (then with the
    /// connector's reason and no matched policies).
    pub decision: Decision,
    /// The revision of the policy set that decided (`unavailable` when none could be built).
    pub revision: String,
    /// `allowed`, `executed`, `failed`, `denied` or `pending_approval`.
    pub status: ActionStatus,
    /// The connector's result when it ran (`{error}` when it failed).
    pub result: Option<Value>,
    /// For `require_approval`: what binds the approval to this action.
    pub approval: Option<ApprovalBinding>,
    /// What the shadow policies would have decided.
    pub shadow: Vec<ShadowOutcome>,
    /// The guard that refused the action before evaluation, if one did.
    pub refused: Option<guards::Refused>,
}

/// Takes a submitted action through every stage: evaluation, durable record, and, when
/// allowed and a connector serves its tool, execution and the outcome's record.
///
/// # Errors
///
/// [`PipelineError::Invalid`] when the action cannot be bound to an approval (no exact
/// digest); [`PipelineError::Unavailable`] when the decision or the outcome could not be
/// recorded (nothing ran in the first case; it ran in the second).
pub async fn submit(
    state: &AppState,
    submission: Submission<'_>,
    request: ActionRequest,
) -> Result<Submitted, PipelineError> {
    let _timer = crate::metrics::Timer::action();
    let action_id = uuid::Uuid::now_v7().to_string();
    let evaluated = evaluate::for_agent(state, &submission, request, action_id, true).await?;
    let recorded = record::decision(state, &submission, evaluated).await?;
    if recorded.decision.verdict == Verdict::Deny {
        crate::runtime::breaker::after_denial(
            state,
            &submission.agent.org.id,
            &submission.agent.agent.id,
        )
        .await;
    }
    let record::Recorded {
        action_id,
        request,
        mut decision,
        revision,
        shadow,
        approval,
        mut status,
        refused,
    } = recorded;
    let mut result = None;
    if let Some(allowed) = AllowedAction::from_decision(&action_id, request, &decision) {
        if Connector::for_tool(&allowed.request().tool).is_some() {
            let outcome = execute::run(
                state,
                &submission.agent.org.id,
                &submission.agent.agent.id,
                &allowed,
                Some(0),
                false,
            )
            .await?;
            if let Some(reason) = outcome.denial {
                decision.verdict = Verdict::Deny;
                decision.reason = reason;
                decision.matched_policies = Vec::new();
            }
            status = outcome.status;
            result = outcome.result;
        }
    }
    Ok(Submitted {
        action_id,
        decision,
        revision,
        status,
        result,
        approval,
        shadow,
        refused,
    })
}

/// Evaluates an action exactly as [`submit`] would (stages 0 to 3), without recording or
/// running anything; [`Evaluated::explain`] holds the set and input for an explanation.
///
/// # Errors
///
/// [`PipelineError::Invalid`] for a malformed `context.expected_usage`.
pub async fn dry_run(
    state: &AppState,
    submission: Submission<'_>,
    request: ActionRequest,
) -> Result<Evaluated, PipelineError> {
    let action_id = format!("dry-run-{}", uuid::Uuid::now_v7());
    let evaluated = evaluate::for_agent(state, &submission, request, action_id, false).await?;
    crate::metrics::dry_run_decided(evaluated.decision.verdict);
    Ok(evaluated)
}
