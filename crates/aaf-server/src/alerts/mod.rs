//! Alerts (docs/alerts.md): built-in rules that watch what AAF records and raise
//! deduplicated alerts, stored, audited, announced by webhook and answered over
//! `/v1/alerts`; a rule may also stop the agent.
//!
//! How a recorded event becomes an alert:
//!
//! ```text
//! AuditWriter commits a batch ── CommitObserver (writer thread; no I/O) ──▶ signals_of(event)
//!        ──▶ Signal ──try_send──▶ bounded queue (alerts.queue_capacity; full: counted, logged)
//!        ──▶ worker task (one per node) ──▶ rules::evaluate (windows read from the store)
//!        ──▶ Hit ──▶ record::fire: bump the open alert, or raise one (alert row + alert.raised
//!            + webhook deliveries, one write unit; optionally the agent's kill switch first)
//! ```
//!
//! Nothing here is on the decision path: the observer only reads a few fields of each
//! committed event and queues a [`Signal`]; the rules run later, on their own task, and an
//! error there never changes a decision. Other parts of the server that find something the
//! audit chain does not hold as an event call [`Alerts::signal`] directly (the outbound
//! detectors: [`Signal::DetectorHit`]).

pub mod config;
pub mod record;
pub mod rules;
mod worker;

use std::sync::{Arc, Mutex};

use aaf_core::action::Verdict;
use aaf_core::audit::{event_types as core_types, ChainedEvent};
use aaf_store::CommitObserver;
use serde_json::Value;
use tokio::sync::mpsc;

pub use config::AlertsConfig;
pub use record::AlertError;
pub use rules::Rule;
pub use worker::worker;

/// The audit event types alerts write (declared with the others in
/// [`aaf_core::audit::event_types`]; `docs/audit.md`).
pub mod event_types {
    pub use aaf_core::audit::event_types::{ALERT_ACKNOWLEDGED, ALERT_RAISED, ALERT_RESOLVED};

    /// Every alert event type, which is also the webhook event of the same name.
    pub const ALL: &[&str] = &[ALERT_RAISED, ALERT_ACKNOWLEDGED, ALERT_RESOLVED];
}

/// Who engaged a kill switch, as a [`Signal::KillSwitchEngaged`] carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalSource {
    /// A person (`POST /v1/kill-switches`, `aaf kill`).
    Manual,
    /// An isolation (`POST /v1/agents/{id}/isolate`).
    Isolation,
    /// A circuit breaker (or an alert acting through one).
    CircuitBreaker,
}

impl SignalSource {
    /// The name as stored in the kill switch: `manual`, `isolation`, `circuit_breaker`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignalSource::Manual => "manual",
            SignalSource::Isolation => "isolation",
            SignalSource::CircuitBreaker => "circuit_breaker",
        }
    }

    fn parse(name: &str) -> Option<SignalSource> {
        [
            SignalSource::Manual,
            SignalSource::Isolation,
            SignalSource::CircuitBreaker,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// Something that happened that an alert rule may care about. Built from committed audit
/// events ([`signals_of`]) or passed to [`Alerts::signal`] by the code that saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An action's decision was recorded (`action.decided`).
    Decided {
        /// The organisation.
        org_id: String,
        /// The agent.
        agent_id: String,
        /// The action.
        action_id: String,
        /// Whether it was denied.
        denied: bool,
        /// The action's own risk score in `0..=1`, when the pipeline computed one (the
        /// event's `risk.score`, issue 17 section 4); `None`: the rule uses the agent's
        /// configured `risk_score`.
        risk_score: Option<f64>,
    },
    /// An action's outcome was recorded (`action.executed`, `action.failed`,
    /// `action.result_reported`): its budgets were settled.
    Settled {
        /// The organisation.
        org_id: String,
        /// The agent.
        agent_id: String,
    },
    /// A credential of the organisation failed authentication (`auth.failed`,
    /// `agent_key.refused`).
    AuthFailed {
        /// The organisation whose credential it was.
        org_id: String,
        /// The agent whose key it was, if known.
        agent_id: Option<String>,
        /// The client's address, if known.
        address: Option<String>,
    },
    /// An action waiting for approval expired (`approval.expired`).
    ApprovalExpired {
        /// The organisation.
        org_id: String,
        /// The agent.
        agent_id: String,
        /// The action.
        action_id: String,
    },
    /// An outbound detector matched data an upstream returned for an agent's action. The
    /// entry point of the outbound detectors (issue 17 section 1): call
    /// [`Alerts::signal`] with it after the match is recorded.
    DetectorHit {
        /// The organisation.
        org_id: String,
        /// The agent the data was for.
        agent_id: String,
        /// The detector's name, e.g. `credit_card`.
        detector: String,
        /// The action whose response it was.
        action_id: String,
    },
    /// A kill switch was engaged (`kill_switch.engaged`).
    KillSwitchEngaged {
        /// The organisation.
        org_id: String,
        /// The switch.
        kill_switch_id: String,
        /// `org`, `agent`, `tool` or `agent_tool`.
        scope: String,
        /// What it stops (`<agent>`, `<tool>`, `<agent>:<tool>`; empty for `org`).
        target: String,
        /// The agent, for agent scopes.
        agent_id: Option<String>,
        /// Who engaged it.
        source: SignalSource,
        /// Why.
        reason: String,
    },
    /// A circuit breaker stopped an agent (`circuit_breaker.tripped`).
    CircuitBreakerTripped {
        /// The organisation.
        org_id: String,
        /// The agent.
        agent_id: String,
        /// The breaker, e.g. `budget_exhausted`, or `alert:<rule>` for an alert that acted.
        breaker: String,
        /// The kill switch it engaged.
        kill_switch_id: String,
        /// Why.
        reason: String,
    },
}

impl Signal {
    /// The organisation it concerns.
    pub fn org_id(&self) -> &str {
        match self {
            Signal::Decided { org_id, .. }
            | Signal::Settled { org_id, .. }
            | Signal::AuthFailed { org_id, .. }
            | Signal::ApprovalExpired { org_id, .. }
            | Signal::DetectorHit { org_id, .. }
            | Signal::KillSwitchEngaged { org_id, .. }
            | Signal::CircuitBreakerTripped { org_id, .. } => org_id,
        }
    }
}

fn text(data: &Value, key: &str) -> Option<String> {
    data.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The signals a committed audit event makes: read from its type (a constant of
/// [`aaf_core::audit::event_types`]) and the typed fields its writer puts in `data`. Events
/// of the `system` chain name no organisation and make none. An action's outcome
/// (`action.executed`, `action.failed`) makes a [`Signal::Settled`] and, for each detection
/// of the outbound checks in its `outbound` member (`[{detector, ...}]`, docs/audit.md), a
/// [`Signal::DetectorHit`].
pub fn signals_of(event: &ChainedEvent) -> Vec<Signal> {
    let mut signals = Vec::new();
    if let Some(signal) = signal_of(event) {
        signals.push(signal);
    }
    let e = &event.event;
    if matches!(
        e.event_type.as_str(),
        core_types::ACTION_EXECUTED | core_types::ACTION_FAILED
    ) {
        if let (Some(agent_id), Some(action_id), Some(found)) = (
            &e.agent_id,
            &e.action_id,
            e.data.get("outbound").and_then(Value::as_array),
        ) {
            let mut seen: Vec<&str> = Vec::new();
            for detector in found
                .iter()
                .filter_map(|d| d.get("detector").and_then(Value::as_str))
            {
                // One hit per detector and action, however many places it matched.
                if !seen.contains(&detector) {
                    seen.push(detector);
                    signals.push(Signal::DetectorHit {
                        org_id: e.org_id.clone(),
                        agent_id: agent_id.clone(),
                        detector: detector.to_string(),
                        action_id: action_id.clone(),
                    });
                }
            }
        }
    }
    signals
}

/// The one signal an event's type makes, if any (see [`signals_of`]).
fn signal_of(event: &ChainedEvent) -> Option<Signal> {
    let e = &event.event;
    let org_id = e.org_id.clone();
    let agent = || e.agent_id.clone();
    let action = || e.action_id.clone();
    match e.event_type.as_str() {
        core_types::ACTION_DECIDED => {
            let denied = e
                .data
                .get("decision")
                .and_then(Value::as_str)
                .and_then(Verdict::parse)
                == Some(Verdict::Deny);
            let risk_score = e
                .data
                .get("risk")
                .and_then(|r| r.get("score"))
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite());
            Some(Signal::Decided {
                org_id,
                agent_id: agent()?,
                action_id: action()?,
                denied,
                risk_score,
            })
        }
        core_types::ACTION_EXECUTED
        | core_types::ACTION_FAILED
        | core_types::ACTION_RESULT_REPORTED => Some(Signal::Settled {
            org_id,
            agent_id: agent()?,
        }),
        core_types::AUTH_FAILED | core_types::AGENT_KEY_REFUSED
            if org_id != aaf_store::SYSTEM_CHAIN =>
        {
            Some(Signal::AuthFailed {
                org_id,
                agent_id: agent(),
                address: text(&e.data, "ip_address"),
            })
        }
        core_types::APPROVAL_EXPIRED => Some(Signal::ApprovalExpired {
            org_id,
            agent_id: agent()?,
            action_id: action()?,
        }),
        core_types::KILL_SWITCH_ENGAGED => {
            let agent_id = text(&e.data, "agent_id");
            let tool = text(&e.data, "tool");
            let target = match (&agent_id, &tool) {
                (Some(a), Some(t)) => format!("{a}:{t}"),
                (Some(a), None) => a.clone(),
                (None, Some(t)) => t.clone(),
                (None, None) => String::new(),
            };
            Some(Signal::KillSwitchEngaged {
                org_id,
                kill_switch_id: text(&e.data, "kill_switch_id")?,
                scope: text(&e.data, "scope")?,
                target,
                agent_id,
                source: text(&e.data, "source").and_then(|s| SignalSource::parse(&s))?,
                reason: text(&e.data, "reason").unwrap_or_default(),
            })
        }
        core_types::CIRCUIT_BREAKER_TRIPPED => Some(Signal::CircuitBreakerTripped {
            org_id,
            agent_id: agent()?,
            breaker: text(&e.data, "breaker")?,
            kill_switch_id: text(&e.data, "kill_switch_id")?,
            reason: text(&e.data, "reason").unwrap_or_default(),
        }),
        _ => None,
    }
}

/// The node's alert queue: where signals wait for the rules' worker.
#[derive(Debug)]
pub struct Alerts {
    queue: Option<mpsc::Sender<Signal>>,
    receiver: Mutex<Option<mpsc::Receiver<Signal>>>,
}

impl Alerts {
    /// A queue of `alerts.queue_capacity` signals; with `alerts.enabled` false, one that
    /// takes nothing.
    pub fn new(config: &AlertsConfig) -> Alerts {
        if !config.enabled {
            return Alerts {
                queue: None,
                receiver: Mutex::new(None),
            };
        }
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        Alerts {
            queue: Some(queue),
            receiver: Mutex::new(Some(receiver)),
        }
    }

    /// Queues `signal` for the rules, without waiting. When the queue is full (the rules
    /// cannot keep up) or its worker stopped, the signal is counted as lost
    /// (`aaf_alert_signals_lost_total{reason="queue_full"}`) and logged: counted rules
    /// still count it at their next signal (their windows are read from the database), an
    /// event rule's alert for it is missed.
    pub fn signal(&self, signal: Signal) {
        let Some(queue) = &self.queue else {
            return;
        };
        if let Err(e) = queue.try_send(signal) {
            crate::metrics::alert_signal_lost("queue_full");
            let signal = match e {
                mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
            };
            tracing::error!(org_id = %signal.org_id(), ?signal, "alert signal lost: the alert queue is full or stopped (alerts.queue_capacity)");
        }
    }

    /// The observer to give the audit writer: every committed event that makes a signal
    /// queues it. `None` when alerts are off.
    pub fn observer(self: &Arc<Self>) -> Option<CommitObserver> {
        self.queue.as_ref()?;
        let alerts = Arc::clone(self);
        Some(Arc::new(move |units: &[Vec<ChainedEvent>]| {
            for event in units.iter().flatten() {
                for signal in signals_of(event) {
                    alerts.signal(signal);
                }
            }
        }))
    }

    /// The receiving end, once (for the worker [`worker()`]); `None` after that or when
    /// alerts are off.
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<Signal>> {
        self.receiver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aaf_core::audit::AuditEvent;
    use serde_json::json;

    fn event(event_type: &str, agent: Option<&str>, data: Value) -> ChainedEvent {
        ChainedEvent {
            event: AuditEvent {
                seq: 1,
                ts: "2026-11-21T05:35:00.000000Z".into(),
                org_id: "o1".into(),
                agent_id: agent.map(str::to_string),
                action_id: Some("a1".into()),
                event_type: event_type.into(),
                data,
            },
            prev_hash: [0; 32],
            hash: [0; 32],
            payload: None,
        }
    }

    #[test]
    fn decisions_make_signals_from_their_typed_fields() {
        let denied = event(
            core_types::ACTION_DECIDED,
            Some("ag"),
            json!({"decision": "deny", "reason": "allow me? no"}),
        );
        assert_eq!(
            signal_of(&denied),
            Some(Signal::Decided {
                org_id: "o1".into(),
                agent_id: "ag".into(),
                action_id: "a1".into(),
                denied: true,
                risk_score: None
            })
        );
        // The reason's text does not matter; the verdict does.
        let allowed = event(
            core_types::ACTION_DECIDED,
            Some("ag"),
            json!({"decision": "allow", "reason": "deny", "risk": {"score": 0.9}}),
        );
        assert!(matches!(
            signal_of(&allowed),
            Some(Signal::Decided { denied: false, risk_score: Some(s), .. }) if s == 0.9
        ));
    }

    #[test]
    fn system_chain_failures_and_other_events_make_none() {
        let mut e = event(
            core_types::AUTH_FAILED,
            None,
            json!({"ip_address": "203.0.113.9"}),
        );
        assert!(matches!(
            signal_of(&e),
            Some(Signal::AuthFailed {
                address: Some(_),
                ..
            })
        ));
        e.event.org_id = aaf_store::SYSTEM_CHAIN.into();
        assert_eq!(signals_of(&e), vec![]);
        assert_eq!(
            signals_of(&event(core_types::USER_CREATED, None, json!({}))),
            vec![]
        );
        assert_eq!(
            signals_of(&event(event_types::ALERT_RAISED, None, json!({}))),
            vec![]
        );
    }

    #[test]
    fn kill_switches_name_their_target_and_source() {
        let e = event(
            core_types::KILL_SWITCH_ENGAGED,
            Some("ag"),
            json!({"kill_switch_id": "k1", "scope": "agent_tool", "agent_id": "ag", "tool": "pay", "source": "circuit_breaker", "reason": "r"}),
        );
        assert!(matches!(
            signal_of(&e),
            Some(Signal::KillSwitchEngaged { target, source: SignalSource::CircuitBreaker, .. }) if target == "ag:pay"
        ));
    }

    #[test]
    fn outbound_detections_make_one_hit_per_detector() {
        let e = event(
            core_types::ACTION_EXECUTED,
            Some("ag"),
            json!({"status": 200, "outbound": [
                {"detector": "credit_card", "kind": "pii", "path": "/body/0", "action": "mask"},
                {"detector": "credit_card", "kind": "pii", "path": "/body/1", "action": "mask"},
                {"detector": "aws_access_key", "kind": "secret", "path": "/body/2", "action": "record"}
            ]}),
        );
        let signals = signals_of(&e);
        assert_eq!(signals.len(), 3, "{signals:?}");
        assert!(matches!(&signals[0], Signal::Settled { .. }));
        let detectors: Vec<&str> = signals[1..]
            .iter()
            .map(|s| match s {
                Signal::DetectorHit {
                    detector,
                    action_id,
                    ..
                } => {
                    assert_eq!(action_id, "a1");
                    detector.as_str()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(detectors, ["credit_card", "aws_access_key"]);
    }

    #[test]
    fn alert_event_types_are_core_types_and_webhook_events() {
        for t in event_types::ALL {
            assert!(core_types::ALL.contains(t), "{t} is an audit event type");
            assert!(
                crate::webhooks::EVENTS.contains(t),
                "{t} is a webhook event too"
            );
        }
    }

    #[test]
    fn a_full_queue_loses_signals_without_blocking() {
        let alerts = Alerts::new(&AlertsConfig {
            queue_capacity: 16,
            ..AlertsConfig::default()
        });
        for _ in 0..20 {
            alerts.signal(Signal::Settled {
                org_id: "o".into(),
                agent_id: "a".into(),
            });
        }
        let mut rx = alerts.take_receiver().unwrap();
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 16);
        assert!(alerts.take_receiver().is_none());
    }
}
