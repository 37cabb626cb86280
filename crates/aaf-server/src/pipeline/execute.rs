//! Stages 5 and 6 of the pipeline: running an allowed action through the connector of its
//! tool, once, and recording the outcome.

use aaf_core::action::{ActionStatus, AllowedAction};
use aaf_core::audit::event_types;
use aaf_core::redact::redact;
use aaf_store::{ActionInputs, ActionWrite, NewEvent, WriteUnit};
use serde_json::Value;

use super::PipelineError;
use crate::app::AppState;
use crate::connectors::{Connector, ConnectorError};
use crate::time::now_rfc3339;

/// What became of an action AAF ran through a connector.
#[derive(Debug, Clone)]
pub struct ExecutionOutcome {
    /// `executed`, `failed` (also when a kill switch aborted it while it ran), or `denied`
    /// (the connector refused while connecting: a name that resolved to a blocked address,
    /// a redirect to one; or a kill switch stopped it before it started).
    pub status: ActionStatus,
    /// The connector's result, or `{error}`.
    pub result: Option<Value>,
    /// For `denied`: why.
    pub denial: Option<String>,
}

/// Why a connector call did not complete.
enum Stop {
    /// The connector failed or refused.
    Connector(ConnectorError),
    /// A kill switch in force stopped it before it started (a `kill_switch:` reason).
    Refused(String),
    /// A kill switch engaged while it ran aborted it (a `kill_switch:` reason).
    Aborted(String),
}

/// Runs an allowed action through the connector of its tool and records its outcome
/// (`action.executed` or `action.failed`) as a compare-and-set at `expected_version` when
/// given; with `redact_inputs`, the stored parameters and context are replaced by their
/// redacted form (an approved action kept them in full to be run).
///
/// # Errors
///
/// [`PipelineError::Internal`] for a tool no connector runs (the caller checks
/// [`Connector::for_tool`] first); [`PipelineError::Unavailable`] when the outcome could
/// not be recorded (the action ran).
pub async fn run(
    state: &AppState,
    org_id: &str,
    agent_id: &str,
    allowed: &AllowedAction,
    expected_version: Option<i64>,
    redact_inputs: bool,
) -> Result<ExecutionOutcome, PipelineError> {
    let Some(connector) = Connector::for_tool(&allowed.request().tool) else {
        return Err(PipelineError::Internal(format!(
            "no connector runs the tool {:?}",
            allowed.request().tool
        )));
    };
    let started = std::time::Instant::now();
    // Registered as in flight: a kill switch engaged while it runs aborts it (the
    // connector's future is dropped, which closes its connection), and one already in force
    // stops it before it starts.
    let tool = &allowed.request().tool;
    let executed = match state
        .runtime
        .begin(org_id, agent_id, tool, &state.clock.now_rfc3339())
    {
        Err(refusal) => Err(Stop::Refused(refusal.reason().to_string())),
        Ok(call) => {
            tokio::select! {
                r = connector.execute(state, org_id, allowed) => r.map_err(Stop::Connector),
                () = call.cancelled() => Err(Stop::Aborted(call.abort_reason().unwrap_or_else(|| {
                    "kill_switch: a kill switch stopped this call".to_string()
                }))),
            }
        }
    };
    let (status, event_type, result, data, denial) = match executed {
        Ok(executed) => {
            // Stage 5b: the outbound checks, before the agent or the store sees the result.
            let checked = state
                .outbound
                .for_org(&state.store, org_id)
                .await
                .map(|rules| super::outbound::check(&rules, executed.result));
            match checked {
                Ok(super::outbound::Checked::Pass { result, detections }) => {
                    let mut data = executed.summary;
                    if !detections.is_empty() {
                        data["outbound"] = Value::Array(detections);
                    }
                    (
                        ActionStatus::Executed,
                        event_types::ACTION_EXECUTED,
                        Some(result),
                        data,
                        None,
                    )
                }
                Ok(super::outbound::Checked::Blocked { reason, detections }) => (
                    ActionStatus::Failed,
                    event_types::ACTION_FAILED,
                    Some(serde_json::json!({ "error": reason })),
                    serde_json::json!({ "error": reason, "kind": "outbound_blocked", "outbound": detections }),
                    None,
                ),
                Err(e) => {
                    let reason = format!("{} {e}", super::outbound::BLOCKED_PREFIX);
                    (
                        ActionStatus::Failed,
                        event_types::ACTION_FAILED,
                        Some(serde_json::json!({ "error": reason })),
                        serde_json::json!({ "error": reason, "kind": "outbound_blocked" }),
                        None,
                    )
                }
            }
        }
        Err(Stop::Refused(reason)) => (
            ActionStatus::Denied,
            event_types::ACTION_FAILED,
            Some(serde_json::json!({ "error": format!("not run: {reason}") })),
            serde_json::json!({ "error": format!("not run: {reason}"), "kind": "kill_switch" }),
            Some(reason),
        ),
        Err(Stop::Aborted(reason)) => {
            let error = format!(
                "aborted by kill switch: {}",
                reason.strip_prefix("kill_switch: ").unwrap_or(&reason)
            );
            (
                ActionStatus::Failed,
                event_types::ACTION_FAILED,
                Some(serde_json::json!({ "error": error })),
                serde_json::json!({ "error": error, "kind": "kill_switch" }),
                None,
            )
        }
        Err(Stop::Connector(e)) => {
            let kind = match &e {
                ConnectorError::Ssrf(_) => "ssrf",
                ConnectorError::InvalidRequest(_) => "invalid_request",
                ConnectorError::Upstream(_) => "upstream",
                ConnectorError::Timeout(_) => "timeout",
                ConnectorError::Refused(_) => "refused",
            };
            let denied = matches!(
                e,
                ConnectorError::Ssrf(_)
                    | ConnectorError::InvalidRequest(_)
                    | ConnectorError::Refused(_)
            );
            let status = if denied {
                ActionStatus::Denied
            } else {
                ActionStatus::Failed
            };
            let data = serde_json::json!({ "error": e.to_string(), "kind": kind });
            (
                status,
                event_types::ACTION_FAILED,
                Some(serde_json::json!({ "error": e.to_string() })),
                data,
                denied.then(|| e.to_string()),
            )
        }
    };
    crate::metrics::connector_called(connector, status, started.elapsed());
    let _timer = crate::metrics::Timer::stage(crate::metrics::Stage::Outcome);
    let now = now_rfc3339();
    // Stage 7: what it reserved of its budgets becomes what it used (the LLM usage of the
    // response, priced), or nothing when it was never sent.
    let budgeted = state.runtime.has_budgets(org_id);
    let mut mutations = Vec::new();
    let mut spent = None;
    if budgeted {
        let (tokens, cost) = match (status, &result) {
            (ActionStatus::Executed, Some(r)) => {
                let model = allowed
                    .request()
                    .params
                    .get("body")
                    .and_then(|b| b.get("model"))
                    .and_then(Value::as_str);
                crate::runtime::budget::used(r, model, &state.config.budgets)
            }
            // Never sent (refused while connecting, or stopped before it started): nothing
            // used. Failed or aborted after it was sent: the upstream may have done the work,
            // so the reservation stands.
            (ActionStatus::Denied, _) => (Some(0), Some(0)),
            _ => (None, None),
        };
        spent = cost;
        mutations.push(aaf_store::Mutation::SettleBudget {
            org_id: org_id.to_string(),
            action_id: allowed.id().to_string(),
            tokens,
            cost,
            now: now.clone(),
        });
    }
    state
        .writer
        .submit(WriteUnit {
            mutations,
            action: Some(ActionWrite::Update {
                org_id: org_id.to_string(),
                id: allowed.id().to_string(),
                status,
                result: result.clone(),
                reason: denial.clone(),
                expected_version,
                inputs: redact_inputs.then(|| ActionInputs {
                    params: redact(&Value::Object(allowed.request().params.clone())),
                    context: redact(&Value::Object(allowed.request().context.clone())),
                }),
                updated_at: now.clone(),
            }),
            events: vec![NewEvent {
                org_id: org_id.to_string(),
                ts: now,
                agent_id: Some(agent_id.to_string()),
                action_id: Some(allowed.id().to_string()),
                event_type: event_type.to_string(),
                data,
            }],
        })
        .await
        .map_err(|e| {
            PipelineError::Unavailable(format!(
                "the action ran but its outcome could not be recorded in the audit log: {e}"
            ))
        })?;
    state.action_events.announce(allowed.id());
    if let Some(cost) = spent.filter(|c| *c > 0) {
        crate::metrics::budget_spent(&state.config.budgets.currency, cost);
        crate::runtime::breaker::after_spend(state, org_id, agent_id).await;
    }
    Ok(ExecutionOutcome {
        status,
        result,
        denial,
    })
}
