//! Stages 1 to 3 of the pipeline: the policy input, the evaluation (the key's tool scope,
//! the organisation's policies, its shadow policies) and the connector's preflight.

use std::sync::Arc;

use aaf_core::action::{
    ActionRequest, AgentInfo, Decision, OrgInfo, PolicyInput, RequestMetadata, Verdict,
};
use serde_json::Value;

use super::guards::{self, Passed, Refused};
use super::{PipelineError, Submission};
use crate::app::AppState;
use crate::connectors::{Connector, ConnectorError};
use crate::policies::{OrgPolicies, ShadowOutcome};
use crate::runtime::budget::BudgetStatus;
use crate::time::now_rfc3339;

/// What stages 1 to 3 produced for one action, before anything is stored.
pub struct Evaluated {
    /// The action's id.
    pub action_id: String,
    /// The request as evaluated.
    pub request: ActionRequest,
    /// The decision (after the key scope and the connector's preflight).
    pub decision: Decision,
    /// The revision of the set that decided (`unavailable` when none could be built).
    pub revision: String,
    /// The shadow policies' would-be outcomes.
    pub shadow: Vec<ShadowOutcome>,
    /// The set that decided and the policy input, for an explanation (dry runs).
    pub explain: Option<(Arc<OrgPolicies>, Value)>,
    /// The guard that refused the action before evaluation, if one did.
    pub refused: Option<Refused>,
    /// The budgets the action reserved in stage 0 (empty: none); released when it is
    /// denied, settled when its outcome is recorded.
    pub reserved: Vec<BudgetStatus>,
    /// What the detectors found in the params and context (`input.detections`), when the
    /// policies asked for it or the action was scored; kept on the action (`signals`) and in
    /// `action.decided`.
    pub detections: Option<Value>,
    /// The action's behavioural risk (`input.risk`), when it was scored; kept on the action
    /// and in `action.decided`.
    pub risk: Option<aaf_core::risk::Risk>,
}

/// The revision recorded for an action a guard refused: no policy set was consulted.
pub const NOT_EVALUATED: &str = "not_evaluated";

/// Who an action is evaluated for.
pub struct Subject<'a> {
    /// The agent.
    pub agent: AgentInfo,
    /// Its organisation.
    pub org: OrgInfo,
    /// The tools the submitting key may use (`None`: any); unknown at a re-check.
    pub key_tools: Option<&'a [String]>,
    /// The client's address, when known.
    pub ip: Option<String>,
}

/// Stage 0 (the guards), then stages 1 to 3 for an action an agent submits: an action a
/// guard refuses is denied without evaluating anything. With `counted` false (a dry run),
/// rate limits neither count nor refuse it and no budget is reserved: only the kill
/// switches are asked.
///
/// # Errors
///
/// [`PipelineError::Invalid`] for a malformed `context.expected_usage`.
pub async fn for_agent(
    state: &AppState,
    submission: &Submission<'_>,
    request: ActionRequest,
    action_id: String,
    counted: bool,
) -> Result<Evaluated, PipelineError> {
    let agent = submission.agent;
    let guarded = if counted {
        guards::check(state, &agent.org.id, &agent.agent.id, &request, &action_id).await?
    } else {
        guards::kill_switch(state, &agent.org.id, &agent.agent.id, &request.tool)
            .map(|()| Passed::default())
    };
    let passed = match guarded {
        Ok(passed) => passed,
        Err(refused) => {
            if counted {
                crate::metrics::guard_refused(refused.guard.as_str());
            }
            return Ok(Evaluated {
                action_id,
                request,
                decision: refused.decision(),
                revision: NOT_EVALUATED.to_string(),
                shadow: Vec::new(),
                explain: None,
                refused: Some(refused),
                reserved: Vec::new(),
                detections: None,
                risk: None,
            });
        }
    };
    let subject = Subject {
        agent: AgentInfo {
            id: agent.agent.id.clone(),
            name: agent.agent.name.clone(),
            risk_score: agent.agent.risk_score,
        },
        org: OrgInfo {
            id: agent.org.id.clone(),
            plan: agent.org.plan.clone(),
        },
        key_tools: agent.tools.as_deref(),
        ip: submission.ip.map(str::to_string),
    };
    Ok(evaluate(state, &subject, request, action_id, passed).await)
}

/// Stages 1 to 3: builds the policy input, applies the key's tool scope, evaluates the
/// organisation's policies (and its shadow policies), and lets the connector of the tool,
/// if any, refuse an action it would not run. `passed` is what the guards found (for
/// `input.usage.rate_limit_exceeded` and `input.budget`). Never fails: any error is a deny
/// ([`Decision::fail_closed`]).
pub async fn evaluate(
    state: &AppState,
    subject: &Subject<'_>,
    request: ActionRequest,
    action_id: String,
    passed: Passed,
) -> Evaluated {
    let _timer = crate::metrics::Timer::stage(crate::metrics::Stage::Evaluate);
    let mut input = PolicyInput::build(
        &action_id,
        &request,
        &subject.agent,
        &subject.org,
        &RequestMetadata {
            timestamp: now_rfc3339(),
            ip_address: subject.ip.clone(),
        },
    );
    let policies = crate::policies::for_org(state, &subject.org.id).await;
    let needs = policies
        .as_ref()
        .map(|p| p.set.runtime_inputs())
        .unwrap_or_default();
    let scored = policies.is_ok() && (needs.risk || state.risk.enabled());
    let mut classifier_denial = None;
    let detections = match &policies {
        Ok(p) if p.set.runtime_inputs().detections => {
            let mut found = detections_of(&request);
            if let Some(classifier) = &state.classifier {
                match classifier.classify(&action_id, &request).await {
                    crate::pipeline::classifier::Classified::Found(more) => {
                        if let Value::Array(list) = &mut found {
                            list.extend(more);
                        }
                    }
                    crate::pipeline::classifier::Classified::Deny(reason) => {
                        classifier_denial = Some(reason);
                    }
                }
            }
            if let Some(fields) = input.as_object_mut() {
                fields.insert("detections".into(), found.clone());
            }
            Some(found)
        }
        _ if scored => Some(detections_of(&request)),
        _ => None,
    };
    let mut risk_error = None;
    let risk = if scored {
        let hits = detections
            .as_ref()
            .map(crate::runtime::risk::hits_of)
            .unwrap_or_default();
        match state
            .risk
            .assess(
                &state.store,
                &state.writer,
                (&subject.org.id, &subject.agent.id),
                &request,
                &hits,
                state.clock.now(),
            )
            .await
        {
            Ok(risk) => Some(risk),
            Err(e) => {
                tracing::warn!(org_id = %subject.org.id, agent_id = %subject.agent.id, error = %e,
                    "the action could not be scored");
                risk_error = Some(e);
                None
            }
        }
    } else {
        None
    };
    if needs.risk {
        if let (Some(r), Some(fields)) = (&risk, input.as_object_mut()) {
            fields.insert(
                "risk".into(),
                serde_json::to_value(r).unwrap_or(Value::Null),
            );
        }
    }
    let runtime_input = match &policies {
        Ok(_) if needs.risk && risk_error.is_some() => risk_error,
        Ok(_) => add_runtime_inputs(
            state, subject, needs, &passed, &request, &action_id, &mut input,
        )
        .await
        .err(),
        Err(_) => None,
    };
    let mut shadow = Vec::new();
    let mut revision = "unavailable".to_string();
    // A key limited to some tools cannot submit others, whatever the policies say.
    let mut decision = match (subject.key_tools, &policies) {
        (Some(tools), _) if !tools.iter().any(|t| t == &request.tool) => {
            Decision::fail_closed(format!(
                "key_scope: this API key may submit only the tools {tools:?}, not {:?}",
                request.tool
            ))
        }
        (_, Err(e)) => Decision::fail_closed(format!("policy evaluation failed: {e}")),
        (_, Ok(p)) if classifier_denial.is_some() => {
            revision = p.set.revision().to_string();
            Decision::fail_closed(classifier_denial.clone().unwrap_or_default())
        }
        (_, Ok(p)) if runtime_input.is_some() => {
            revision = p.set.revision().to_string();
            Decision::fail_closed(format!(
                "policy evaluation failed: {}",
                runtime_input.unwrap_or_default()
            ))
        }
        (_, Ok(p)) => {
            revision = p.set.revision().to_string();
            let d = p.set.evaluate(&input);
            shadow = crate::policies::evaluate_shadows(p, &input, d.verdict);
            d
        }
    };
    // The connector's own checks apply whatever the policies say: an allowed HTTP call to a
    // forbidden destination is denied here, before anything runs. An action that would need
    // approval is checked too: approvers never see a request the connector would refuse.
    if matches!(decision.verdict, Verdict::Allow | Verdict::RequireApproval) {
        if let Some(connector) = Connector::for_tool(&request.tool) {
            if let Err(e) = connector.preflight(state, &subject.org.id, &request).await {
                decision = connector_denial(decision, &e);
            }
        }
    }
    Evaluated {
        action_id,
        request,
        decision,
        revision,
        shadow,
        explain: policies.ok().map(|p| (p, input)),
        refused: None,
        reserved: passed.budgets.unwrap_or_default(),
        detections,
        risk,
    }
}

/// `input.detections`: every detector over the action's params and context (within the
/// detectors' default limits), as `[{detector, kind, sub_kind?, path, key?, confidence}]`
/// with `path` an RFC 6901 JSON pointer from the action (`/params/...`, `/context/...`).
/// Matched text is never included (docs/detection.md).
pub fn detections_of(request: &ActionRequest) -> Value {
    use aaf_core::detect::{scan_value, ScanOptions};
    let options = ScanOptions::new();
    let mut found = Vec::new();
    for (prefix, part) in [("/params", &request.params), ("/context", &request.context)] {
        let report = scan_value(&Value::Object(part.clone()), &options);
        for d in report.detections {
            let mut view = serde_json::json!({
                "detector": d.detector.name(),
                "kind": d.kind.name(),
                "path": format!("{prefix}{}", d.path),
                "confidence": d.confidence,
            });
            if let Some(sub) = d.sub_kind {
                view["sub_kind"] = serde_json::to_value(sub).unwrap_or(Value::Null);
            }
            if d.key {
                view["key"] = Value::Bool(true);
            }
            found.push(view);
        }
        if report.truncated {
            found.push(serde_json::json!({
                "detector": "scan_limit",
                "kind": "limit",
                "path": prefix,
                "confidence": 1.0,
            }));
        }
    }
    Value::Array(found)
}

/// Adds to the policy input the runtime parts the set refers to: `input.usage` (the
/// agent's recent actions, read now), `input.budget` (after this action's reservation, or
/// read now when it made none) and `input.session` (the earlier actions of its session,
/// [`crate::runtime::session`]; never the action itself, which a re-check after approval
/// finds stored).
///
/// # Errors
///
/// What could not be read, as text (the caller denies).
async fn add_runtime_inputs(
    state: &AppState,
    subject: &Subject<'_>,
    needs: aaf_core::policy::RuntimeInputs,
    passed: &Passed,
    request: &ActionRequest,
    action_id: &str,
    input: &mut Value,
) -> Result<(), String> {
    let Some(fields) = input.as_object_mut() else {
        return Ok(());
    };
    let (org_id, agent_id) = (&subject.org.id, &subject.agent.id);
    if needs.usage {
        let usage = crate::runtime::usage::input_view(
            &state.store,
            org_id,
            agent_id,
            state.clock.now(),
            passed.rate_limit_exceeded,
        )
        .await?;
        fields.insert("usage".into(), usage);
    }
    if needs.budget {
        let statuses = match &passed.budgets {
            Some(statuses) => statuses.clone(),
            None => {
                let budgets = state.runtime.budgets(org_id, agent_id);
                crate::runtime::budget::status(
                    &state.store,
                    org_id,
                    &budgets,
                    &state.clock.now_rfc3339(),
                )
                .await?
            }
        };
        fields.insert(
            "budget".into(),
            crate::runtime::budget::input_view(&statuses),
        );
    }
    if needs.session {
        let session = crate::runtime::session::session_of(&request.context);
        let mut view = state
            .sessions
            .input_view(
                &state.store,
                org_id,
                agent_id,
                session.as_deref(),
                state.clock.now(),
            )
            .await?;
        if let Value::Array(entries) = &mut view {
            entries.retain(|e| e["action_id"] != action_id);
        }
        fields.insert("session".into(), view);
    }
    Ok(())
}

/// Turns an allow into a deny because the connector refused the request (SSRF guard,
/// allowlist, malformed parameters). The policies' outcomes are kept for the record.
fn connector_denial(mut decision: Decision, error: &ConnectorError) -> Decision {
    decision.verdict = Verdict::Deny;
    decision.reason = error.to_string();
    decision.risk_level = None;
    decision.matched_policies = Vec::new();
    decision
}
