//! Actions, verdicts and decisions: the domain types of the decision path.
//!
//! An agent submits an [`ActionRequest`]; the evaluator turns it, together with the agent,
//! organisation and request metadata, into a policy input ([`PolicyInput`]) and then into a
//! [`Decision`]. Only a [`Decision`] whose verdict is [`Verdict::Allow`] can be turned into an
//! [`AllowedAction`], the one value a connector accepts.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The outcome of a policy, ordered by restrictiveness: `Allow < RequireApproval < Deny`.
///
/// Combining decisions takes the maximum, so the most restrictive one wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The action may proceed.
    Allow,
    /// The action waits for a human approval.
    RequireApproval,
    /// The action is blocked.
    Deny,
}

impl Verdict {
    /// The wire and Rego spelling: `"allow"`, `"require_approval"` or `"deny"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::RequireApproval => "require_approval",
            Verdict::Deny => "deny",
        }
    }

    /// Parses the Rego spelling; `None` for any other string.
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "allow" => Some(Verdict::Allow),
            "require_approval" => Some(Verdict::RequireApproval),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an agent asks to do: `POST /v1/actions` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// The tool, e.g. `http_proxy`. Non-empty.
    pub tool: String,
    /// The operation on the tool, e.g. `GET` for `http_proxy`. Non-empty.
    pub operation: String,
    /// Tool parameters; an object (an absent value is an empty object).
    pub params: Map<String, Value>,
    /// Free-form context from the agent (user id, session, purpose); an object.
    pub context: Map<String, Value>,
}

impl ActionRequest {
    /// Checks that every number in `params` and `context` has an exact RFC 8785 form
    /// ([`crate::canonical::is_exact_number`]), so that the decision cache key, the approval
    /// digest and the audit hash, all computed over that form, tell apart every two
    /// actions that a policy or a connector tells apart. The API answers 400 naming the
    /// field otherwise: integers beyond `-(2^53-1)..=2^53-1` (I-JSON, RFC 7493 section 2.2)
    /// must be sent as strings.
    ///
    /// # Errors
    ///
    /// The first such number, its path starting with `params` or `context` (e.g.
    /// `params.amount`).
    pub fn check_numbers(&self) -> Result<(), crate::canonical::InexactNumber> {
        use crate::canonical::find_inexact_member;
        match find_inexact_member(&self.params, "params")
            .or_else(|| find_inexact_member(&self.context, "context"))
        {
            Some(found) => Err(found),
            None => Ok(()),
        }
    }
}

/// The agent as policies see it (`input.agent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent id (a UUID string).
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Risk score in `0.0..=1.0`.
    pub risk_score: f64,
}

/// The organisation as policies see it (`input.org`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgInfo {
    /// Organisation id (a UUID string).
    pub id: String,
    /// The organisation's plan, e.g. `"self_hosted"`.
    pub plan: String,
}

/// Facts about the request itself (`input.metadata`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMetadata {
    /// When AAF received the action, RFC 3339 in UTC.
    pub timestamp: String,
    /// The peer address of the agent's connection, if known.
    pub ip_address: Option<String>,
}

/// Builds the Rego `input` document for an action.
///
/// The document carries both shapes used by the product documents, so policies written for
/// either work unchanged:
///
/// * flat (seed 000): `tool`, `operation`, `params`, `context`, `agent_id`;
/// * nested (seed 004): `action` {`id`, `tool`, `operation`, `params`, `context`},
///   `agent` {`id`, `name`, `risk_score`}, `org` {`id`, `plan`},
///   `metadata` {`timestamp`, `ip_address`}.
///
/// The schema is documented in `docs/policies.md`.
pub struct PolicyInput;

impl PolicyInput {
    /// Builds the input as a JSON value (see the type's documentation for the shape).
    pub fn build(
        action_id: &str,
        request: &ActionRequest,
        agent: &AgentInfo,
        org: &OrgInfo,
        metadata: &RequestMetadata,
    ) -> Value {
        let params = Value::Object(request.params.clone());
        let context = Value::Object(request.context.clone());
        serde_json::json!({
            "tool": request.tool,
            "operation": request.operation,
            "params": params,
            "context": context,
            "agent_id": agent.id,
            "action": {
                "id": action_id,
                "tool": request.tool,
                "operation": request.operation,
                "params": params,
                "context": context,
            },
            "agent": {
                "id": agent.id,
                "name": agent.name,
                "risk_score": agent.risk_score,
            },
            "org": {
                "id": org.id,
                "plan": org.plan,
            },
            "metadata": {
                "timestamp": metadata.timestamp,
                "ip_address": metadata.ip_address,
            },
        })
    }
}

/// One policy's contribution to a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    /// The policy's name: its Rego package path without the leading `data.`.
    pub policy: String,
    /// The policy's decision; `None` when it abstained (its `decision` rule was undefined).
    pub decision: Option<Verdict>,
    /// The reason the policy gave, or the evaluation error that made it deny.
    pub reason: Option<String>,
    /// The `risk_level` the policy gave, if any.
    pub risk_level: Option<String>,
    /// For `require_approval`: how many distinct approvers the policy asks for
    /// (`approvals_required` in its decision object, 1 to [`MAX_APPROVALS_REQUIRED`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals_required: Option<u32>,
    /// For `require_approval`: the approval deadline the policy asks for, in seconds from the
    /// decision (`approval_timeout_seconds` in its decision object, 1 to
    /// [`MAX_APPROVAL_TIMEOUT_SECONDS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_seconds: Option<u64>,
    /// Wall-clock evaluation time of this policy, in microseconds.
    pub eval_time_us: u64,
}

/// The most distinct approvers a policy may ask for.
pub const MAX_APPROVALS_REQUIRED: u32 = 10;
/// The longest approval deadline a policy may ask for: 30 days, in seconds.
pub const MAX_APPROVAL_TIMEOUT_SECONDS: u64 = 30 * 24 * 3600;

/// The combined decision over all policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The most restrictive verdict of all policies (deny when none allowed).
    pub verdict: Verdict,
    /// Why: the reason of the first policy that gave the winning verdict, or a reason of AAF's.
    pub reason: String,
    /// The highest `risk_level` among the policies that gave the winning verdict.
    pub risk_level: Option<String>,
    /// Names of the policies whose decision equals the winning verdict.
    pub matched_policies: Vec<String>,
    /// Every policy's outcome, in evaluation order.
    pub policies: Vec<PolicyOutcome>,
    /// For `require_approval`: the distinct approvals needed, the largest that any policy
    /// asking for approval named (1 when none did); 0 for other verdicts.
    #[serde(default)]
    pub approvals_required: u32,
    /// For `require_approval`: the shortest approval deadline, in seconds, that any policy
    /// asking for approval named; `None` when none did (the organisation's default applies).
    #[serde(default)]
    pub approval_timeout_seconds: Option<u64>,
}

impl Decision {
    /// A deny that no policy made: AAF's own fail-closed decision (e.g. an internal error).
    pub fn fail_closed(reason: impl Into<String>) -> Decision {
        Decision {
            verdict: Verdict::Deny,
            reason: reason.into(),
            risk_level: None,
            matched_policies: Vec::new(),
            policies: Vec::new(),
            approvals_required: 0,
            approval_timeout_seconds: None,
        }
    }

    /// Combines per-policy outcomes: the most restrictive decision wins
    /// (`deny` > `require_approval` > `allow`); when no policy allowed (all abstained, or
    /// none loaded) the result is a deny with reason `"no policy allowed this action"`.
    pub fn combine(policies: Vec<PolicyOutcome>) -> Decision {
        let winner = policies.iter().filter_map(|p| p.decision).max();
        let Some(verdict) = winner else {
            let reason = if policies.is_empty() {
                "no policy allowed this action (no policies are loaded)"
            } else {
                "no policy allowed this action"
            };
            return Decision {
                verdict: Verdict::Deny,
                reason: reason.to_string(),
                risk_level: None,
                matched_policies: Vec::new(),
                policies,
                approvals_required: 0,
                approval_timeout_seconds: None,
            };
        };
        let matched: Vec<&PolicyOutcome> = policies
            .iter()
            .filter(|p| p.decision == Some(verdict))
            .collect();
        let reason = matched
            .iter()
            .find_map(|p| p.reason.clone())
            .unwrap_or_else(|| match verdict {
                Verdict::Allow => "allowed by policy".to_string(),
                Verdict::RequireApproval => "approval required by policy".to_string(),
                Verdict::Deny => "denied by policy".to_string(),
            });
        let risk_level = matched
            .iter()
            .filter_map(|p| p.risk_level.clone())
            .max_by_key(|r| risk_rank(r));
        let matched_policies = matched.iter().map(|p| p.policy.clone()).collect();
        let (approvals_required, approval_timeout_seconds) = if verdict == Verdict::RequireApproval
        {
            (
                matched
                    .iter()
                    .filter_map(|p| p.approvals_required)
                    .max()
                    .unwrap_or(1),
                matched
                    .iter()
                    .filter_map(|p| p.approval_timeout_seconds)
                    .min(),
            )
        } else {
            (0, None)
        };
        Decision {
            verdict,
            reason,
            risk_level,
            matched_policies,
            policies,
            approvals_required,
            approval_timeout_seconds,
        }
    }
}

/// Orders the conventional risk levels; unknown levels rank between `medium` and `high`
/// so that an unexpected label is never treated as the lowest.
fn risk_rank(level: &str) -> u8 {
    match level {
        "low" => 1,
        "medium" => 2,
        "high" => 4,
        "critical" => 5,
        _ => 3,
    }
}

/// An action that the decision path allowed, or that humans approved.
///
/// It can only be made by [`AllowedAction::from_decision`], which refuses anything but an
/// allow, and [`AllowedAction::from_approval`], which refuses anything but an approved action
/// claimed for execution and not denied at re-check, so a connector that takes an
/// `AllowedAction` cannot run a denied or pending action.
#[derive(Debug, Clone)]
pub struct AllowedAction {
    id: String,
    request: ActionRequest,
}

impl AllowedAction {
    /// Returns the allowed action, or `None` when the decision is not [`Verdict::Allow`].
    pub fn from_decision(
        id: &str,
        request: ActionRequest,
        decision: &Decision,
    ) -> Option<AllowedAction> {
        (decision.verdict == Verdict::Allow).then(|| AllowedAction {
            id: id.to_string(),
            request,
        })
    }

    /// Returns the approved action AAF is about to run, or `None` unless its approval is in
    /// `executing` (this node won the `approved → executing` claim, so nobody else runs it)
    /// and the re-check of the current policies did not deny it (a renewed
    /// `require_approval` is covered by the approval given).
    pub fn from_approval(
        id: &str,
        request: ActionRequest,
        status: crate::approval::ApprovalStatus,
        recheck: &Decision,
    ) -> Option<AllowedAction> {
        (status == crate::approval::ApprovalStatus::Executing && recheck.verdict != Verdict::Deny)
            .then(|| AllowedAction {
                id: id.to_string(),
                request,
            })
    }

    /// The action id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The request that was allowed.
    pub fn request(&self) -> &ActionRequest {
        &self.request
    }
}

/// The status of a stored action: where it is in its life. Stored and answered as its
/// snake_case name ([`ActionStatus::as_str`]).
///
/// - `denied`, `allowed` (a decision-only tool: the agent runs it), `executing` (AAF's
///   connector is running it), `executed`, `failed`: an action decided without approval;
/// - `pending_approval`, `approved`, `rejected`, `expired`, `cancelled` and, once approved,
///   `executing`, `executed`, `failed` or `denied` (the policies in force when it was about
///   to run denied it): an action that needed approval ([`crate::approval::ApprovalStatus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Allowed; a decision-only tool, which the agent runs itself. Final for AAF.
    Allowed,
    /// Denied (by a policy, a guard, a connector's check, or at the re-check after
    /// approval). Final.
    Denied,
    /// Waiting for approvers.
    PendingApproval,
    /// Approved; to be run (by AAF's connector, or by the agent for a decision-only tool).
    Approved,
    /// AAF's connector is running it.
    Executing,
    /// Run successfully. Final.
    Executed,
    /// Running it failed. Final.
    Failed,
    /// Rejected by an approver. Final.
    Rejected,
    /// Nobody decided before the deadline. Final.
    Expired,
    /// Withdrawn by the agent. Final.
    Cancelled,
}

impl ActionStatus {
    /// Every status.
    pub const ALL: [ActionStatus; 10] = [
        ActionStatus::Allowed,
        ActionStatus::Denied,
        ActionStatus::PendingApproval,
        ActionStatus::Approved,
        ActionStatus::Executing,
        ActionStatus::Executed,
        ActionStatus::Failed,
        ActionStatus::Rejected,
        ActionStatus::Expired,
        ActionStatus::Cancelled,
    ];

    /// The stored and wire name, e.g. `pending_approval`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Allowed => "allowed",
            ActionStatus::Denied => "denied",
            ActionStatus::PendingApproval => "pending_approval",
            ActionStatus::Approved => "approved",
            ActionStatus::Executing => "executing",
            ActionStatus::Executed => "executed",
            ActionStatus::Failed => "failed",
            ActionStatus::Rejected => "rejected",
            ActionStatus::Expired => "expired",
            ActionStatus::Cancelled => "cancelled",
        }
    }

    /// The status named `name` ([`ActionStatus::as_str`]); `None` for any other text.
    pub fn parse(name: &str) -> Option<ActionStatus> {
        ActionStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether nothing more happens to the action in AAF (`approved` and `executing` still
    /// change; `allowed` is final because the agent runs it).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            ActionStatus::PendingApproval | ActionStatus::Approved | ActionStatus::Executing
        )
    }

    /// The status an action gets when it is decided: `denied`, `pending_approval`,
    /// `executing` when a connector runs its tool (`runs_in_connector`), else `allowed`.
    pub fn decided(verdict: Verdict, runs_in_connector: bool) -> ActionStatus {
        match verdict {
            Verdict::Deny => ActionStatus::Denied,
            Verdict::RequireApproval => ActionStatus::PendingApproval,
            Verdict::Allow if runs_in_connector => ActionStatus::Executing,
            Verdict::Allow => ActionStatus::Allowed,
        }
    }
}

impl From<crate::approval::ApprovalStatus> for ActionStatus {
    fn from(status: crate::approval::ApprovalStatus) -> ActionStatus {
        use crate::approval::ApprovalStatus as A;
        match status {
            A::PendingApproval => ActionStatus::PendingApproval,
            A::Approved => ActionStatus::Approved,
            A::Executing => ActionStatus::Executing,
            A::Rejected => ActionStatus::Rejected,
            A::Expired => ActionStatus::Expired,
            A::Cancelled => ActionStatus::Cancelled,
            A::Denied => ActionStatus::Denied,
            A::Executed => ActionStatus::Executed,
            A::Failed => ActionStatus::Failed,
        }
    }
}

impl std::fmt::Display for ActionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_statuses_round_trip_and_agree_with_approval_statuses() {
        for status in ActionStatus::ALL {
            assert_eq!(ActionStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert_eq!(ActionStatus::parse("Allowed"), None);
        for approval in crate::approval::ApprovalStatus::ALL {
            let status = ActionStatus::from(approval);
            assert_eq!(status.as_str(), approval.as_str());
            assert_eq!(status.is_final(), approval.is_final(), "{status}");
        }
        assert_eq!(
            ActionStatus::decided(Verdict::Allow, true),
            ActionStatus::Executing
        );
        assert_eq!(
            ActionStatus::decided(Verdict::Allow, false),
            ActionStatus::Allowed
        );
        assert_eq!(
            ActionStatus::decided(Verdict::Deny, true),
            ActionStatus::Denied
        );
        assert_eq!(
            ActionStatus::decided(Verdict::RequireApproval, false),
            ActionStatus::PendingApproval
        );
    }

    fn request(params: Value) -> ActionRequest {
        ActionRequest {
            tool: "payments".into(),
            operation: "charge".into(),
            params: params.as_object().cloned().unwrap_or_default(),
            context: Map::new(),
        }
    }

    #[test]
    fn numbers_beyond_double_precision_are_refused_with_their_path() {
        let err = request(serde_json::json!({"card": {"n": 4_000_000_000_000_000_014u64}}))
            .check_numbers()
            .unwrap_err();
        assert_eq!(err.path, "params.card.n");
        assert_eq!(err.number, "4000000000000000014");
        let mut in_context = request(serde_json::json!({"amount": 12.5}));
        in_context.context.insert(
            "ids".into(),
            serde_json::json!([1, -9_007_199_254_740_993i64]),
        );
        assert_eq!(
            in_context.check_numbers().unwrap_err().path,
            "context.ids[1]"
        );
        request(serde_json::json!({"amount": 9_007_199_254_740_991u64, "f": 0.1, "s": "4000000000000000014"}))
            .check_numbers()
            .unwrap();
    }

    /// Two actions that differ only beyond double precision: before, both had one cache
    /// key (RFC 8785 rounds), so the second got the first's cached allow. The cache key
    /// now has no form for them, so each is evaluated.
    #[test]
    fn the_decision_cache_tells_apart_numbers_beyond_double_precision() {
        use crate::policy::{EvaluatorOptions, PolicySet, PolicySource};
        let rego = r#"package cards
import rego.v1
default decision := {"action": "allow"}
decision := {"action": "deny", "reason": "card"} if input.action.params.n == 4000000000000000014
"#;
        let set = PolicySet::load(
            vec![PolicySource {
                path: "cards.rego".into(),
                rego: rego.into(),
            }],
            EvaluatorOptions::default(),
        )
        .unwrap();
        let input = |n: u64| {
            PolicyInput::build(
                "action-1",
                &request(serde_json::json!({"n": n})),
                &AgentInfo {
                    id: "agent".into(),
                    name: "agent".into(),
                    risk_score: 0.0,
                },
                &OrgInfo {
                    id: "org".into(),
                    plan: "self_hosted".into(),
                },
                &RequestMetadata {
                    timestamp: "2026-12-04T00:00:00Z".into(),
                    ip_address: None,
                },
            )
        };
        // Warm the cache with an ordinary input: the set is cacheable.
        let first = set.evaluate(&input(15));
        assert_eq!(first.verdict, Verdict::Allow, "{first:?}");
        assert_eq!(set.evaluate(&input(15)).verdict, Verdict::Allow);
        assert_eq!(set.cache_stats().hits, 1);
        assert_eq!(
            set.evaluate(&input(4_000_000_000_000_000_015)).verdict,
            Verdict::Allow
        );
        assert_eq!(
            set.evaluate(&input(4_000_000_000_000_000_014)).verdict,
            Verdict::Deny
        );
        assert_eq!(set.cache_stats().hits, 1);
    }

    fn outcome(policy: &str, decision: Option<Verdict>, reason: Option<&str>) -> PolicyOutcome {
        PolicyOutcome {
            policy: policy.to_string(),
            decision,
            reason: reason.map(str::to_string),
            risk_level: None,
            approvals_required: None,
            approval_timeout_seconds: None,
            eval_time_us: 0,
        }
    }

    #[test]
    fn approval_terms_take_the_strictest_of_the_policies_asking_for_approval() {
        let mut a = outcome("a", Some(Verdict::RequireApproval), None);
        a.approvals_required = Some(2);
        a.approval_timeout_seconds = Some(600);
        let mut b = outcome("b", Some(Verdict::RequireApproval), None);
        b.approvals_required = Some(3);
        b.approval_timeout_seconds = Some(1200);
        let plain = outcome("c", Some(Verdict::RequireApproval), None);
        let d = Decision::combine(vec![a.clone(), b, plain.clone()]);
        assert_eq!(d.approvals_required, 3);
        assert_eq!(d.approval_timeout_seconds, Some(600));
        let d = Decision::combine(vec![plain]);
        assert_eq!(
            (d.approvals_required, d.approval_timeout_seconds),
            (1, None)
        );
        // Terms of a policy that lost to a deny do not apply.
        let d = Decision::combine(vec![a, outcome("d", Some(Verdict::Deny), None)]);
        assert_eq!(
            (d.approvals_required, d.approval_timeout_seconds),
            (0, None)
        );
    }

    #[test]
    fn most_restrictive_wins_in_every_combination() {
        let all = [
            None,
            Some(Verdict::Allow),
            Some(Verdict::RequireApproval),
            Some(Verdict::Deny),
        ];
        for a in all {
            for b in all {
                let d = Decision::combine(vec![outcome("a", a, None), outcome("b", b, None)]);
                let expected = match (a, b) {
                    (None, None) => Verdict::Deny,
                    _ => a.max(b).unwrap_or(Verdict::Deny),
                };
                assert_eq!(d.verdict, expected, "{a:?} + {b:?}");
            }
        }
    }

    #[test]
    fn no_policies_is_a_deny() {
        let d = Decision::combine(vec![]);
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(d.reason.contains("no policy allowed"));
    }

    #[test]
    fn matched_policies_are_those_with_the_winning_verdict() {
        let d = Decision::combine(vec![
            outcome("base", Some(Verdict::Allow), None),
            outcome(
                "financial",
                Some(Verdict::RequireApproval),
                Some("big charge"),
            ),
        ]);
        assert_eq!(d.verdict, Verdict::RequireApproval);
        assert_eq!(d.matched_policies, vec!["financial".to_string()]);
        assert_eq!(d.reason, "big charge");
    }

    #[test]
    fn only_an_allow_makes_an_allowed_action() {
        let req = ActionRequest {
            tool: "t".into(),
            operation: "o".into(),
            params: Map::new(),
            context: Map::new(),
        };
        let deny = Decision::fail_closed("x");
        assert!(AllowedAction::from_decision("1", req.clone(), &deny).is_none());
        let allow = Decision::combine(vec![outcome("p", Some(Verdict::Allow), None)]);
        assert!(AllowedAction::from_decision("1", req.clone(), &allow).is_some());
        // An approved action runs only once claimed (executing) and if the re-check allows.
        use crate::approval::ApprovalStatus as S;
        let again = Decision::combine(vec![outcome("p", Some(Verdict::RequireApproval), None)]);
        assert!(AllowedAction::from_approval("1", req.clone(), S::Executing, &again).is_some());
        assert!(AllowedAction::from_approval("1", req.clone(), S::Executing, &allow).is_some());
        assert!(AllowedAction::from_approval("1", req.clone(), S::Executing, &deny).is_none());
        for status in S::ALL.into_iter().filter(|s| *s != S::Executing) {
            assert!(AllowedAction::from_approval("1", req.clone(), status, &allow).is_none());
        }
    }
}
