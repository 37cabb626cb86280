//! Retention (docs/retention.md): the class of every audit event type, and an organisation's
//! retention rules (days per class) with its legal hold.
//!
//! Past its class's period an event's *payload* is removed; the event itself, its commitment
//! and its leaf hash stay, so the chain, the Merkle tree, checkpoints and proofs of other events
//! still verify, and the gap reads "payload removed by retention on DATE under rule R". The
//! classes follow the security-event retention of seed 003 (authentication, authorization,
//! data access, errors) with two of AAF's own (administration, incident).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::event_types as t;

/// An event class: what a retention rule is set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventClass {
    /// Who tried to get in and failed: refused credentials and requests.
    Authentication,
    /// What was decided: decisions and human approvals.
    Authorization,
    /// What ran: executions and the results agents reported.
    DataAccess,
    /// What failed while running.
    Errors,
    /// Changes to the configuration: organisations, people, agents and keys, policies, limits,
    /// webhooks, MCP servers, keys of encryption, retention itself.
    Administration,
    /// Stopping and watching agents: kill switches, isolation, circuit breakers, alerts.
    Incident,
}

impl EventClass {
    /// Every class.
    pub const ALL: [EventClass; 6] = [
        EventClass::Authentication,
        EventClass::Authorization,
        EventClass::DataAccess,
        EventClass::Errors,
        EventClass::Administration,
        EventClass::Incident,
    ];

    /// The class's name as in rules and docs (`data_access`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventClass::Authentication => "authentication",
            EventClass::Authorization => "authorization",
            EventClass::DataAccess => "data_access",
            EventClass::Errors => "errors",
            EventClass::Administration => "administration",
            EventClass::Incident => "incident",
        }
    }

    /// The class of a name, if it is one.
    pub fn parse(name: &str) -> Option<EventClass> {
        EventClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The event types of the class (of [`crate::audit::event_types::ALL`]).
    pub fn event_types(self) -> Vec<&'static str> {
        t::ALL
            .iter()
            .copied()
            .filter(|ty| class_of(ty) == Some(self))
            .collect()
    }
}

/// The class of an event type; `None` for a type AAF does not write.
pub fn class_of(event_type: &str) -> Option<EventClass> {
    use EventClass::*;
    Some(match event_type {
        t::AUTH_FAILED | t::AGENT_KEY_REFUSED | t::REQUEST_REJECTED => Authentication,
        t::ACTION_DECIDED
        | t::APPROVAL_APPROVED
        | t::APPROVAL_REJECTED
        | t::APPROVAL_EXPIRED
        | t::APPROVAL_CANCELLED
        | t::APPROVAL_RECHECK_DENIED => Authorization,
        t::ACTION_EXECUTED | t::ACTION_EXECUTION_STARTED | t::ACTION_RESULT_REPORTED => DataAccess,
        t::ACTION_FAILED => Errors,
        t::KILL_SWITCH_ENGAGED
        | t::KILL_SWITCH_RELEASED
        | t::AGENT_ISOLATED
        | t::CIRCUIT_BREAKER_TRIPPED
        | t::ALERT_RAISED
        | t::ALERT_ACKNOWLEDGED
        | t::ALERT_RESOLVED => Incident,
        other if t::ALL.contains(&other) => Administration,
        _ => return None,
    })
}

/// The longest retention period a rule may set, in days (100 years).
pub const MAX_DAYS: u32 = 36_500;

/// An organisation's retention rules and legal hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRules {
    /// Days to keep the payloads of each class's events; a class without a rule keeps them
    /// for ever.
    pub rules: BTreeMap<EventClass, u32>,
    /// While set, nothing is removed (retention is suspended, shredding refused): why, as
    /// given by the admin who set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<String>,
}

impl RetentionRules {
    /// Checks the rules.
    ///
    /// # Errors
    ///
    /// The field (`rules.<class>`) and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (class, days) in &self.rules {
            if *days == 0 || *days > MAX_DAYS {
                return Err((
                    format!("rules.{}", class.as_str()),
                    format!("must be from 1 to {MAX_DAYS} days, not {days}"),
                ));
            }
        }
        if self
            .legal_hold
            .as_ref()
            .is_some_and(|r| r.trim().is_empty() || r.len() > 1000)
        {
            return Err((
                "legal_hold".into(),
                "must say why, in 1 to 1000 characters".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_a_class_and_the_seed_003_classes_exist() {
        for ty in t::ALL {
            assert!(class_of(ty).is_some(), "{ty} has no class");
        }
        assert_eq!(class_of("no.such"), None);
        for name in ["authentication", "authorization", "data_access", "errors"] {
            assert!(EventClass::parse(name).is_some(), "{name}");
        }
        let total: usize = EventClass::ALL.iter().map(|c| c.event_types().len()).sum();
        assert_eq!(total, t::ALL.len());
        assert_eq!(class_of(t::ACTION_FAILED), Some(EventClass::Errors));
        assert_eq!(
            class_of(t::POLICY_CREATED),
            Some(EventClass::Administration)
        );
    }

    #[test]
    fn rules_are_checked_and_named() {
        let mut rules = RetentionRules::default();
        rules.rules.insert(EventClass::Errors, 7);
        assert!(rules.validate().is_ok());
        rules.rules.insert(EventClass::DataAccess, 0);
        assert_eq!(rules.validate().unwrap_err().0, "rules.data_access");
        let json: RetentionRules =
            serde_json::from_str(r#"{"rules": {"errors": 7, "authentication": 90}}"#).unwrap();
        assert_eq!(json.rules[&EventClass::Authentication], 90);
        assert!(serde_json::from_str::<RetentionRules>(r#"{"rules": {"nope": 1}}"#).is_err());
    }
}
