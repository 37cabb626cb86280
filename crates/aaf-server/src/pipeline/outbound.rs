//! Stage 5b of the pipeline, the outbound checks (issue 17; docs/detection.md, "Outbound"):
//! every detector over what a connector returned (an HTTP response, an MCP tool result,
//! prompt or resource) before the agent sees it and before anything stores it. For each
//! detector that matched, the organisation's rules say what happens:
//!
//! - `record`: the result passes unchanged; the detection is recorded in `action.executed`;
//! - `mask`: every match of that detector is replaced, keeping its shape (docs/detection.md,
//!   "Masking"), in what the agent gets and in what is stored;
//! - `block`: the agent gets no result: the action fails (`outbound_blocked: ...`) and the
//!   result is not stored.
//!
//! A result too large for the detectors to scan in full is blocked when any rule masks or
//! blocks (what was not scanned could hold what they are for): fail closed.

use std::collections::BTreeMap;

use aaf_core::detect::{mask_value_in_place, scan_value, Detector, DetectorSet, ScanOptions};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// What the outbound check does with a detector's match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutboundAction {
    /// Pass the result; record the detection.
    Record,
    /// Replace the match, keeping its shape; record the detection.
    Mask,
    /// Withhold the result: the action fails.
    Block,
}

impl OutboundAction {
    /// Its name: `record`, `mask` or `block`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundAction::Record => "record",
            OutboundAction::Mask => "mask",
            OutboundAction::Block => "block",
        }
    }
}

/// What to do per detector: keys are a detector's name (`payment_card`), a kind (`pii`,
/// `secret`, `prompt_injection`, `tool_argument`) or `default`; the most specific key
/// that names a detector decides, then `record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct OutboundRules(pub BTreeMap<String, OutboundAction>);

/// The kinds a rule may name.
const KINDS: [&str; 4] = ["pii", "secret", "prompt_injection", "tool_argument"];

impl Default for OutboundRules {
    /// Secrets, payment card numbers and US SSNs are masked; everything else is recorded.
    fn default() -> Self {
        OutboundRules(BTreeMap::from([
            ("default".to_string(), OutboundAction::Record),
            ("secret".to_string(), OutboundAction::Mask),
            ("payment_card".to_string(), OutboundAction::Mask),
            ("us_ssn".to_string(), OutboundAction::Mask),
        ]))
    }
}

impl OutboundRules {
    /// Checks that every key is `default`, a kind or a detector.
    ///
    /// # Errors
    ///
    /// The first unknown key, with what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        for key in self.0.keys() {
            let known = key == "default"
                || KINDS.contains(&key.as_str())
                || Detector::from_name(key).is_some();
            if !known {
                return Err(format!(
                    "{key:?} is not a detector, a kind ({}) or \"default\" (docs/detection.md)",
                    KINDS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// These rules with `overrides` (an organisation's) laid over them, key by key.
    pub fn with(&self, overrides: Option<&OutboundRules>) -> OutboundRules {
        let mut merged = self.0.clone();
        if let Some(o) = overrides {
            merged.extend(o.0.iter().map(|(k, v)| (k.clone(), *v)));
        }
        OutboundRules(merged)
    }

    /// What to do with a match of `detector`.
    pub fn action_for(&self, detector: Detector) -> OutboundAction {
        self.0
            .get(detector.name())
            .or_else(|| self.0.get(detector.kind().name()))
            .or_else(|| self.0.get("default"))
            .copied()
            .unwrap_or(OutboundAction::Record)
    }

    /// Whether any rule masks or blocks.
    fn acts(&self) -> bool {
        self.0.values().any(|a| *a != OutboundAction::Record)
    }
}

/// What the outbound check made of a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// The result to give and store (masked where the rules say), and what was found.
    Pass {
        /// The result.
        result: Value,
        /// `[{detector, kind, path, confidence, action}]`.
        detections: Vec<Value>,
    },
    /// The result is withheld.
    Blocked {
        /// `outbound_blocked: ...`.
        reason: String,
        /// As for `Pass`.
        detections: Vec<Value>,
    },
}

/// The prefix of the reason of an action whose result was withheld.
pub const BLOCKED_PREFIX: &str = "outbound_blocked:";

/// Runs the outbound check over `result` under `rules`.
pub fn check(rules: &OutboundRules, mut result: Value) -> Checked {
    let report = scan_value(&result, &ScanOptions::new());
    let mut detections = Vec::with_capacity(report.detections.len());
    let mut mask = DetectorSet::empty();
    let mut blocked: Vec<&'static str> = Vec::new();
    for d in &report.detections {
        let action = rules.action_for(d.detector);
        match action {
            OutboundAction::Mask => mask = mask.with(d.detector),
            OutboundAction::Block => {
                if !blocked.contains(&d.detector.name()) {
                    blocked.push(d.detector.name());
                }
            }
            OutboundAction::Record => {}
        }
        detections.push(json!({
            "detector": d.detector.name(),
            "kind": d.kind.name(),
            "path": d.path,
            "confidence": d.confidence,
            "action": action.as_str(),
        }));
    }
    if !blocked.is_empty() {
        return Checked::Blocked {
            reason: format!(
                "{BLOCKED_PREFIX} the response contained what the organisation's outbound rules block ({})",
                blocked.join(", ")
            ),
            detections,
        };
    }
    if report.truncated && rules.acts() {
        return Checked::Blocked {
            reason: format!(
                "{BLOCKED_PREFIX} the response is larger than the detectors scan in full, so it could not be checked"
            ),
            detections,
        };
    }
    if !mask.is_empty() {
        mask_value_in_place(&mut result, &ScanOptions::only(mask));
    }
    Checked::Pass { result, detections }
}

/// Each organisation's outbound rules in force on this node (the server's
/// `detection.outbound` over the defaults, with the organisation's `outbound_detection`
/// setting over them), read from the store at most once a second per organisation; a change
/// made through this node applies at once ([`OrgRules::forget`]), one made through another
/// node within a second.
pub struct OrgRules {
    base: OutboundRules,
    cache: quick_cache::sync::Cache<String, (std::time::Instant, std::sync::Arc<OutboundRules>)>,
}

impl std::fmt::Debug for OrgRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgRules")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// How long an organisation's rules are reused before they are read again.
const RULES_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl OrgRules {
    /// The rules of every organisation: `configured` (the server's `detection.outbound`)
    /// laid over [`OutboundRules::default`].
    pub fn new(configured: &OutboundRules) -> OrgRules {
        OrgRules {
            base: OutboundRules::default().with(Some(configured)),
            cache: quick_cache::sync::Cache::new(10_000),
        }
    }

    /// The server's rules (before any organisation's).
    pub fn base(&self) -> &OutboundRules {
        &self.base
    }

    /// The rules in force for `org_id`.
    ///
    /// # Errors
    ///
    /// When the organisation's settings cannot be read or hold rules that are not valid
    /// (the caller withholds the result: fail closed).
    pub async fn for_org(
        &self,
        store: &aaf_store::Store,
        org_id: &str,
    ) -> Result<std::sync::Arc<OutboundRules>, String> {
        if let Some((at, rules)) = self.cache.get(org_id) {
            if at.elapsed() < RULES_TTL {
                return Ok(rules);
            }
        }
        let settings = store
            .get_org_settings(org_id)
            .await
            .map_err(|e| format!("the organisation's outbound rules could not be read: {e}"))?;
        let own = match settings.and_then(|s| s.outbound_detection) {
            None => None,
            Some(v) => {
                let rules: OutboundRules = serde_json::from_value(v)
                    .map_err(|e| format!("the organisation's outbound rules are not valid: {e}"))?;
                Some(rules)
            }
        };
        let rules = std::sync::Arc::new(self.base.with(own.as_ref()));
        self.cache.insert(
            org_id.to_string(),
            (std::time::Instant::now(), std::sync::Arc::clone(&rules)),
        );
        Ok(rules)
    }

    /// Forgets `org_id`'s rules (its settings changed on this node).
    pub fn forget(&self, org_id: &str) {
        self.cache.remove(org_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_rule_decides() {
        let rules = OutboundRules::default().with(Some(&OutboundRules(BTreeMap::from([
            ("pii".to_string(), OutboundAction::Block),
            ("email".to_string(), OutboundAction::Record),
        ]))));
        assert_eq!(rules.action_for(Detector::Email), OutboundAction::Record);
        assert_eq!(rules.action_for(Detector::Phone), OutboundAction::Block);
        assert_eq!(
            rules.action_for(Detector::PaymentCard),
            OutboundAction::Mask
        );
        assert_eq!(
            rules.action_for(Detector::GithubToken),
            OutboundAction::Mask
        );
        assert_eq!(
            rules.action_for(Detector::SqlInjection),
            OutboundAction::Record
        );
        assert!(
            OutboundRules(BTreeMap::from([("cards".into(), OutboundAction::Mask)]))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn a_card_number_is_masked_and_a_blocked_detector_withholds_the_result() {
        let body = json!({"status": 200, "body": {"note": "card 4111 1111 1111 1111, mail a@example.com"}});
        let Checked::Pass { result, detections } = check(&OutboundRules::default(), body.clone())
        else {
            panic!("passed")
        };
        let text = result.to_string();
        assert!(!text.contains("4111 1111 1111 1111"), "{text}");
        assert!(text.contains("1111"), "{text}");
        assert!(text.contains("a@example.com"), "{text}");
        assert!(detections
            .iter()
            .any(|d| d["detector"] == "payment_card" && d["action"] == "mask"));
        let strict = OutboundRules(BTreeMap::from([("email".into(), OutboundAction::Block)]));
        let Checked::Blocked { reason, .. } = check(&strict, body) else {
            panic!("blocked")
        };
        assert!(
            reason.starts_with(BLOCKED_PREFIX) && reason.contains("email"),
            "{reason}"
        );
    }
}
