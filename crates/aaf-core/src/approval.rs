//! The human-approval workflow of an action that a policy answered `require_approval`: its
//! state machine, in one place, and the digest that binds an approval to the exact action.
//!
//! States and transitions (each transition is one audit event naming who and why):
//!
//! ```text
//! pending_approval ──approve (the last of N distinct approvers)──▶ approved
//! pending_approval ──approve (fewer than N so far)───────────────▶ pending_approval
//! pending_approval ──reject (any one approver)───────────────────▶ rejected
//! pending_approval ──expire (at or after the deadline)───────────▶ expired
//! pending_approval ──cancel (the agent)──────────────────────────▶ cancelled
//! approved ──re-check denies (digest or policies)────────────────▶ denied
//! approved ──AAF's connector starts running it───────────────────▶ executing
//! approved ──the agent reports success───────────────────────────▶ executed
//! approved ──the agent reports failure───────────────────────────▶ failed
//! executing ──the connector refused at connection time (SSRF)────▶ denied
//! executing ──the connector succeeded────────────────────────────▶ executed
//! executing ──the connector failed, or its node stopped mid-run──▶ failed
//! ```
//!
//! `executing` is what makes execution at most once: only the one writer whose
//! `approved → executing` transition commits may run the action, and an action found
//! `executing` after its node stopped is failed ("outcome unknown"), never run again.
//!
//! `rejected`, `expired`, `cancelled`, `denied`, `executed` and `failed` are final: every
//! event on them is refused, so nothing can be approved, executed or reported twice. An
//! approval or rejection arriving at or after the deadline is refused (the action must be
//! expired instead); the same approver cannot count twice; with four-eyes on, the user the action was
//! requested for (`context.user_id`) cannot approve it.
//!
//! No I/O and no clock: times are RFC 3339 UTC strings passed in (strings of the one format
//! AAF writes compare in time order).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::canonical::{to_canonical_json, CanonicalError};

/// Where an approval-requiring action is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for approvers.
    PendingApproval,
    /// Approved; to be executed (by AAF's connector or by the agent).
    Approved,
    /// AAF's connector is running it (claimed by exactly one node).
    Executing,
    /// Rejected by an approver. Final.
    Rejected,
    /// Nobody decided before the deadline. Final.
    Expired,
    /// Withdrawn by the agent. Final.
    Cancelled,
    /// Approved, but the policies in force when it was about to run denied it. Final.
    Denied,
    /// Executed successfully. Final.
    Executed,
    /// Execution failed. Final.
    Failed,
}

impl ApprovalStatus {
    /// Every status.
    pub const ALL: [ApprovalStatus; 9] = [
        ApprovalStatus::PendingApproval,
        ApprovalStatus::Approved,
        ApprovalStatus::Executing,
        ApprovalStatus::Rejected,
        ApprovalStatus::Expired,
        ApprovalStatus::Cancelled,
        ApprovalStatus::Denied,
        ApprovalStatus::Executed,
        ApprovalStatus::Failed,
    ];

    /// The wire and storage name, e.g. `pending_approval`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::PendingApproval => "pending_approval",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Executing => "executing",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Cancelled => "cancelled",
            ApprovalStatus::Denied => "denied",
            ApprovalStatus::Executed => "executed",
            ApprovalStatus::Failed => "failed",
        }
    }

    /// Whether no event can change it any more.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            ApprovalStatus::PendingApproval | ApprovalStatus::Approved | ApprovalStatus::Executing
        )
    }

    /// Parses the wire and storage name; `None` for any other string (e.g. `allowed`, the
    /// status of an action that needed no approval).
    pub fn parse(s: &str) -> Option<ApprovalStatus> {
        ApprovalStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something that happens to an approval-requiring action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalEvent {
    /// An approver approves.
    Approve {
        /// The approving user's id.
        approver: String,
        /// When (RFC 3339 UTC).
        at: String,
    },
    /// An approver rejects.
    Reject {
        /// The rejecting user's id.
        approver: String,
        /// When (RFC 3339 UTC).
        at: String,
    },
    /// The deadline passed.
    Expire {
        /// When it was noticed (RFC 3339 UTC).
        at: String,
    },
    /// The agent withdraws the action.
    Cancel,
    /// The checks before execution (digest, current policies) deny it.
    RecheckDenied,
    /// AAF's connector starts running it.
    StartExecution,
    /// It ran (AAF's connector) or the agent reported success.
    Succeeded,
    /// It failed (AAF's connector) or the agent reported failure.
    FailedToRun,
}

impl ApprovalEvent {
    /// A short name for messages and tests.
    pub fn name(&self) -> &'static str {
        match self {
            ApprovalEvent::Approve { .. } => "approve",
            ApprovalEvent::Reject { .. } => "reject",
            ApprovalEvent::Expire { .. } => "expire",
            ApprovalEvent::Cancel => "cancel",
            ApprovalEvent::RecheckDenied => "recheck_denied",
            ApprovalEvent::StartExecution => "start_execution",
            ApprovalEvent::Succeeded => "succeeded",
            ApprovalEvent::FailedToRun => "failed",
        }
    }
}

/// Why an event was refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// The event does not apply to the current status (e.g. approving an executed action,
    /// reporting a result twice).
    #[error("cannot {event} an action that is {status}")]
    InvalidTransition {
        /// The current status.
        status: ApprovalStatus,
        /// The refused event's name.
        event: &'static str,
    },
    /// The deadline has passed: the action must be expired, not approved.
    #[error("the approval deadline {expires_at} has passed")]
    DeadlinePassed {
        /// The deadline.
        expires_at: String,
    },
    /// Expiry was asked before the deadline.
    #[error("the approval deadline {expires_at} has not passed yet")]
    NotYetExpired {
        /// The deadline.
        expires_at: String,
    },
    /// This approver already approved.
    #[error("{approver} has already approved this action; it needs {required} distinct approvers")]
    DuplicateApprover {
        /// The approver.
        approver: String,
        /// Approvals required.
        required: u32,
    },
    /// Four-eyes: the action was requested for this user, who cannot approve it.
    #[error("{approver} cannot approve an action requested for themselves (four-eyes rule)")]
    SelfApproval {
        /// The approver.
        approver: String,
    },
}

/// The approval state of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalState {
    /// Where it is.
    pub status: ApprovalStatus,
    /// Distinct approvals needed (at least 1).
    pub required: u32,
    /// Who approved so far, in order.
    pub approvers: Vec<String>,
    /// The deadline (RFC 3339 UTC).
    pub expires_at: String,
    /// With four-eyes on: the user the action was requested for (`context.user_id`), who
    /// may not approve it.
    pub requested_for: Option<String>,
}

impl ApprovalState {
    /// A new pending action: `required` distinct approvals (0 counts as 1) before
    /// `expires_at`; `requested_for` is excluded from approving (four-eyes) when given.
    pub fn pending(
        required: u32,
        expires_at: impl Into<String>,
        requested_for: Option<String>,
    ) -> Self {
        ApprovalState {
            status: ApprovalStatus::PendingApproval,
            required: required.max(1),
            approvers: Vec::new(),
            expires_at: expires_at.into(),
            requested_for,
        }
    }

    /// Applies `event`, returning the next state; the current one is left as it was.
    ///
    /// # Errors
    ///
    /// [`ApprovalError`] when the event does not apply (see the module table).
    pub fn apply(&self, event: &ApprovalEvent) -> Result<ApprovalState, ApprovalError> {
        use ApprovalEvent as E;
        use ApprovalStatus as S;
        let refuse = || ApprovalError::InvalidTransition {
            status: self.status,
            event: event.name(),
        };
        let mut next = self.clone();
        match (self.status, event) {
            (S::PendingApproval, E::Approve { approver, at }) => {
                if at.as_str() >= self.expires_at.as_str() {
                    return Err(ApprovalError::DeadlinePassed {
                        expires_at: self.expires_at.clone(),
                    });
                }
                if self.requested_for.as_deref() == Some(approver.as_str()) {
                    return Err(ApprovalError::SelfApproval {
                        approver: approver.clone(),
                    });
                }
                if self.approvers.contains(approver) {
                    return Err(ApprovalError::DuplicateApprover {
                        approver: approver.clone(),
                        required: self.required,
                    });
                }
                next.approvers.push(approver.clone());
                if next.approvers.len() >= self.required as usize {
                    next.status = S::Approved;
                }
            }
            (S::PendingApproval, E::Reject { at, .. }) => {
                // After the deadline the outcome is an expiry, whoever answers.
                if at.as_str() >= self.expires_at.as_str() {
                    return Err(ApprovalError::DeadlinePassed {
                        expires_at: self.expires_at.clone(),
                    });
                }
                next.status = S::Rejected;
            }
            (S::PendingApproval, E::Expire { at }) => {
                if at.as_str() < self.expires_at.as_str() {
                    return Err(ApprovalError::NotYetExpired {
                        expires_at: self.expires_at.clone(),
                    });
                }
                next.status = S::Expired;
            }
            (S::PendingApproval, E::Cancel) => next.status = S::Cancelled,
            (S::Approved | S::Executing, E::RecheckDenied) => next.status = S::Denied,
            (S::Approved, E::StartExecution) => next.status = S::Executing,
            (S::Approved | S::Executing, E::Succeeded) => next.status = S::Executed,
            (S::Approved | S::Executing, E::FailedToRun) => next.status = S::Failed,
            _ => return Err(refuse()),
        }
        Ok(next)
    }

    /// How many more approvals are needed (0 once approved).
    pub fn approvals_missing(&self) -> u32 {
        if self.status != ApprovalStatus::PendingApproval {
            return 0;
        }
        let have = u32::try_from(self.approvers.len()).unwrap_or(u32::MAX);
        self.required.saturating_sub(have)
    }
}

/// The digest that binds an approval to one exact action: lowercase hex SHA-256 of the
/// RFC 8785 canonical JSON of `{"org_id", "agent_id", "tool", "operation", "params",
/// "context"}`. Shown to approvers, stored in the audit chain, checked again before the
/// approved action runs.
///
/// Every number in `params` and `context` must have an exact RFC 8785 form
/// ([`crate::canonical::is_exact_number`]): otherwise two actions whose amounts differ only
/// beyond double precision would share a digest, and a stored action changed from one to
/// the other would pass the check before it runs.
///
/// # Errors
///
/// [`CanonicalError::InexactNumber`] for an integer beyond `-(2^53-1)..=2^53-1` (I-JSON,
/// RFC 7493 section 2.2) or a double RFC 8785 writes as one: such an action has no digest,
/// so it cannot be approved, and a stored action changed to hold one cannot run.
pub fn action_digest(
    org_id: &str,
    agent_id: &str,
    tool: &str,
    operation: &str,
    params: &Map<String, Value>,
    context: &Map<String, Value>,
) -> Result<String, CanonicalError> {
    let document = json!({
        "org_id": org_id,
        "agent_id": agent_id,
        "tool": tool,
        "operation": operation,
        "params": params,
        "context": context,
    });
    Ok(hex::encode(Sha256::digest(to_canonical_json(&document)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ApprovalEvent as E;
    use ApprovalStatus as S;

    const DEADLINE: &str = "2026-11-21T10:00:00.000000Z";
    const BEFORE: &str = "2026-11-21T09:00:00.000000Z";
    const AFTER: &str = "2026-11-21T11:00:00.000000Z";

    fn state(status: S) -> ApprovalState {
        ApprovalState {
            status,
            required: 1,
            approvers: Vec::new(),
            expires_at: DEADLINE.to_string(),
            requested_for: Some("requester".to_string()),
        }
    }

    fn events() -> Vec<ApprovalEvent> {
        vec![
            E::Approve {
                approver: "alice".into(),
                at: BEFORE.into(),
            },
            E::Reject {
                approver: "alice".into(),
                at: BEFORE.into(),
            },
            E::Expire { at: AFTER.into() },
            E::Cancel,
            E::RecheckDenied,
            E::StartExecution,
            E::Succeeded,
            E::FailedToRun,
        ]
    }

    /// Every status x every event: the table of the module documentation, and nothing else.
    #[test]
    fn every_state_and_event() {
        let mut checked = 0;
        for status in S::ALL {
            for event in events() {
                let expected = match (status, event.name()) {
                    (S::PendingApproval, "approve") => Some(S::Approved),
                    (S::PendingApproval, "reject") => Some(S::Rejected),
                    (S::PendingApproval, "expire") => Some(S::Expired),
                    (S::PendingApproval, "cancel") => Some(S::Cancelled),
                    (S::Approved, "recheck_denied") => Some(S::Denied),
                    (S::Approved, "succeeded") => Some(S::Executed),
                    (S::Approved, "failed") => Some(S::Failed),
                    (S::Approved, "start_execution") => Some(S::Executing),
                    (S::Executing, "succeeded") => Some(S::Executed),
                    (S::Executing, "recheck_denied") => Some(S::Denied),
                    (S::Executing, "failed") => Some(S::Failed),
                    _ => None,
                };
                let before = state(status);
                let result = before.apply(&event);
                match expected {
                    Some(next) => {
                        assert_eq!(
                            result.as_ref().map(|s| s.status),
                            Ok(next),
                            "{status} x {}",
                            event.name()
                        )
                    }
                    None => assert_eq!(
                        result,
                        Err(ApprovalError::InvalidTransition {
                            status,
                            event: event.name()
                        }),
                        "{status} x {}",
                        event.name()
                    ),
                }
                assert_eq!(
                    before,
                    state(status),
                    "apply must not change the state it is given"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 9 * 8);
        for status in S::ALL {
            let open = events().iter().any(|e| state(status).apply(e).is_ok());
            assert_eq!(status.is_final(), !open, "{status}");
        }
    }

    #[test]
    fn statuses_parse_back() {
        for status in S::ALL {
            assert_eq!(S::parse(status.as_str()), Some(status));
        }
        assert_eq!(S::parse("allowed"), None);
    }

    #[test]
    fn several_approvers_four_eyes_and_the_deadline() {
        let approve = |who: &str, at: &str| E::Approve {
            approver: who.into(),
            at: at.into(),
        };
        let pending = ApprovalState::pending(2, DEADLINE, Some("bob".into()));
        assert_eq!(pending.approvals_missing(), 2);
        // The user the action is for cannot approve it.
        assert_eq!(
            pending.apply(&approve("bob", BEFORE)),
            Err(ApprovalError::SelfApproval {
                approver: "bob".into()
            })
        );
        // One of two approvals: still pending.
        let one = pending.apply(&approve("alice", BEFORE)).unwrap();
        assert_eq!(
            (one.status, one.approvals_missing()),
            (S::PendingApproval, 1)
        );
        // The same approver does not count twice.
        assert!(matches!(
            one.apply(&approve("alice", BEFORE)),
            Err(ApprovalError::DuplicateApprover { .. })
        ));
        // One rejection rejects, whatever approvals came before.
        assert_eq!(
            one.apply(&E::Reject {
                approver: "carol".into(),
                at: BEFORE.into(),
            })
            .unwrap()
            .status,
            S::Rejected
        );
        let two = one.apply(&approve("carol", BEFORE)).unwrap();
        assert_eq!(two.status, S::Approved);
        assert_eq!(two.approvers, ["alice", "carol"]);
        assert_eq!(two.approvals_missing(), 0);
        // At or after the deadline an answer is refused and expiry applies; before, not.
        assert!(matches!(
            one.apply(&approve("carol", DEADLINE)),
            Err(ApprovalError::DeadlinePassed { .. })
        ));
        assert!(matches!(
            one.apply(&E::Reject {
                approver: "carol".into(),
                at: AFTER.into()
            }),
            Err(ApprovalError::DeadlinePassed { .. })
        ));
        assert!(matches!(
            one.apply(&E::Expire { at: BEFORE.into() }),
            Err(ApprovalError::NotYetExpired { .. })
        ));
        assert_eq!(
            one.apply(&E::Expire {
                at: DEADLINE.into()
            })
            .unwrap()
            .status,
            S::Expired
        );
        // Without four-eyes the requester may approve; 0 required counts as 1.
        let open = ApprovalState::pending(0, DEADLINE, None);
        assert_eq!(
            open.apply(&approve("bob", BEFORE)).unwrap().status,
            S::Approved
        );
    }

    #[test]
    fn the_digest_binds_every_field_and_ignores_key_order() {
        let params: Map<String, Value> =
            serde_json::from_str(r#"{"amount": 50000, "currency": "usd"}"#).unwrap();
        let reordered: Map<String, Value> =
            serde_json::from_str(r#"{"currency": "usd", "amount": 50000}"#).unwrap();
        let context: Map<String, Value> = serde_json::from_str(r#"{"user_id": "u1"}"#).unwrap();
        let d = action_digest("o", "a", "stripe", "charge", &params, &context).unwrap();
        assert_eq!(d.len(), 64);
        assert_eq!(
            d,
            action_digest("o", "a", "stripe", "charge", &reordered, &context).unwrap()
        );
        // The canonical document hashed, spelled out (RFC 8785 sorts keys).
        let expected = hex::encode(Sha256::digest(
            br#"{"agent_id":"a","context":{"user_id":"u1"},"operation":"charge","org_id":"o","params":{"amount":50000,"currency":"usd"},"tool":"stripe"}"#,
        ));
        assert_eq!(d, expected);
        let changed: Map<String, Value> =
            serde_json::from_str(r#"{"amount": 50001, "currency": "usd"}"#).unwrap();
        for other in [
            action_digest("o2", "a", "stripe", "charge", &params, &context),
            action_digest("o", "a2", "stripe", "charge", &params, &context),
            action_digest("o", "a", "stripe2", "charge", &params, &context),
            action_digest("o", "a", "stripe", "refund", &params, &context),
            action_digest("o", "a", "stripe", "charge", &changed, &context),
            action_digest("o", "a", "stripe", "charge", &params, &Map::new()),
        ] {
            assert_ne!(other.unwrap(), d);
        }
    }

    #[test]
    fn amounts_differing_beyond_double_precision_have_no_shared_digest() {
        // Rounded to doubles, both had one digest: a stored pending action changed from
        // one amount to the other passed the check before running.
        let context = Map::new();
        for amount in ["4000000000000000015", "4000000000000000014"] {
            let params: Map<String, Value> =
                serde_json::from_str(&format!(r#"{{"amount": {amount}}}"#)).unwrap();
            assert_eq!(
                action_digest("o", "a", "stripe", "charge", &params, &context),
                Err(CanonicalError::InexactNumber(amount.to_string()))
            );
        }
        // Sent as strings, as the API asks, they are told apart.
        let as_string = |amount: &str| {
            let params: Map<String, Value> =
                serde_json::from_str(&format!(r#"{{"amount": "{amount}"}}"#)).unwrap();
            action_digest("o", "a", "stripe", "charge", &params, &context).unwrap()
        };
        assert_ne!(
            as_string("4000000000000000015"),
            as_string("4000000000000000014")
        );
    }
}
