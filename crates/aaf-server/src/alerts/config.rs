//! `[alerts]`: the thresholds of the built-in alert rules, which rules are off, and which
//! ones stop the agent (docs/alerts.md, docs/configuration.md).

use serde::{Deserialize, Serialize};

use super::rules::Rule;

/// Longest window of a counted rule, in seconds (one day).
pub const MAX_WINDOW_SECONDS: u64 = 24 * 3600;
/// Largest count threshold.
pub const MAX_THRESHOLD: u32 = 1_000_000;
/// Bounds of the queue of signals waiting for the rules.
pub const QUEUE_CAPACITY: std::ops::RangeInclusive<usize> = 16..=1_000_000;
/// Most budget thresholds.
pub const MAX_BUDGET_PERCENTAGES: usize = 10;
/// Longest `kill_switch_cooldown_seconds` (one year, as a kill switch's `expires_in`).
pub const MAX_COOLDOWN_SECONDS: u64 = crate::runtime::control::MAX_EXPIRES_IN_SECONDS;

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Whether the alert rules run at all. Default true.
    pub enabled: bool,
    /// Rules that raise nothing (names as in docs/alerts.md, e.g. `high_risk_submission`).
    /// Default: none.
    pub disabled_rules: Vec<String>,
    /// `repeated_denials` raises an alert when an agent has more than this many denied
    /// actions within `denials_window_seconds`, 1 to 1000000. Default 10 (seed 000: "more
    /// than 10 in 5 minutes").
    pub denials_threshold: u32,
    /// The window of `repeated_denials`, in seconds, 1 to 86400. Default 300.
    pub denials_window_seconds: u64,
    /// `failed_auth_address` raises an alert when one client address has more than this
    /// many failed authentications against the organisation's credentials within
    /// `failed_auth_window_seconds`, 1 to 1000000. Default 5.
    pub failed_auth_address_threshold: u32,
    /// `failed_auth_org` raises an alert when the organisation's credentials fail
    /// authentication more than this many times (from any address) within
    /// `failed_auth_window_seconds`, 1 to 1000000. Default 20.
    pub failed_auth_org_threshold: u32,
    /// The window of both failed-authentication rules, in seconds, 1 to 86400. Default 300.
    pub failed_auth_window_seconds: u64,
    /// `high_risk_submission` raises an alert for an action whose risk score (the action's
    /// own when the pipeline gives one, else its agent's configured `risk_score`) is at
    /// least this, 0 to 1. Default 0.8.
    pub high_risk_score: f64,
    /// `budget_threshold` raises an alert when a budget's current window has spent at
    /// least each of these percentages of its limit (each 1 to 100, at most 10). Default
    /// `[80, 100]`.
    pub budget_percentages: Vec<u8>,
    /// Rules whose new alerts also engage the agent's kill switch (through a circuit
    /// breaker trip named `alert:<rule>`): any of `repeated_denials`,
    /// `high_risk_submission`, `approval_timeout`, `outbound_detection`,
    /// `budget_threshold`. Default: none.
    pub kill_switch_rules: Vec<String>,
    /// Seconds until a kill switch engaged by an alert releases itself, at most 31536000;
    /// 0: only an admin releases it. Default 3600.
    pub kill_switch_cooldown_seconds: u64,
    /// Signals (recorded events) that may wait for the rules on this node, 16 to 1000000;
    /// beyond it, signals are counted as lost (`aaf_alert_signals_lost_total`) and logged.
    /// Default 10000.
    pub queue_capacity: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            enabled: true,
            disabled_rules: Vec::new(),
            denials_threshold: 10,
            denials_window_seconds: 300,
            failed_auth_address_threshold: 5,
            failed_auth_org_threshold: 20,
            failed_auth_window_seconds: 300,
            high_risk_score: 0.8,
            budget_percentages: vec![80, 100],
            kill_switch_rules: Vec::new(),
            kill_switch_cooldown_seconds: 3600,
            queue_capacity: 10_000,
        }
    }
}

impl AlertsConfig {
    /// Checks every key.
    ///
    /// # Errors
    ///
    /// The first bad key, named (`alerts.<key>`), and what it must be.
    pub fn validate(&self) -> Result<(), String> {
        for name in &self.disabled_rules {
            if Rule::parse(name).is_none() {
                return Err(format!(
                    "alerts.disabled_rules: unknown rule {name:?}; the rules are {}",
                    Rule::names()
                ));
            }
        }
        for name in &self.kill_switch_rules {
            match Rule::parse(name) {
                Some(rule) if rule.may_stop_agent() => {}
                _ => {
                    return Err(format!(
                        "alerts.kill_switch_rules: {name:?} cannot engage a kill switch; the rules that can are {}",
                        Rule::ALL
                            .iter()
                            .filter(|r| r.may_stop_agent())
                            .map(|r| r.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
        }
        for (key, value) in [
            ("denials_threshold", self.denials_threshold),
            (
                "failed_auth_address_threshold",
                self.failed_auth_address_threshold,
            ),
            ("failed_auth_org_threshold", self.failed_auth_org_threshold),
        ] {
            if !(1..=MAX_THRESHOLD).contains(&value) {
                return Err(format!(
                    "alerts.{key} must be from 1 to {MAX_THRESHOLD}, not {value}"
                ));
            }
        }
        for (key, value) in [
            ("denials_window_seconds", self.denials_window_seconds),
            (
                "failed_auth_window_seconds",
                self.failed_auth_window_seconds,
            ),
        ] {
            if !(1..=MAX_WINDOW_SECONDS).contains(&value) {
                return Err(format!(
                    "alerts.{key} must be from 1 to {MAX_WINDOW_SECONDS} seconds, not {value}"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.high_risk_score) {
            return Err(format!(
                "alerts.high_risk_score must be from 0 to 1, not {}",
                self.high_risk_score
            ));
        }
        if self.budget_percentages.len() > MAX_BUDGET_PERCENTAGES {
            return Err(format!(
                "alerts.budget_percentages may hold at most {MAX_BUDGET_PERCENTAGES} percentages"
            ));
        }
        if let Some(bad) = self
            .budget_percentages
            .iter()
            .find(|p| !(1..=100).contains(*p))
        {
            return Err(format!(
                "alerts.budget_percentages: each must be from 1 to 100, not {bad}"
            ));
        }
        if self.kill_switch_cooldown_seconds > MAX_COOLDOWN_SECONDS {
            return Err(format!(
                "alerts.kill_switch_cooldown_seconds must be at most {MAX_COOLDOWN_SECONDS}, not {}",
                self.kill_switch_cooldown_seconds
            ));
        }
        if !QUEUE_CAPACITY.contains(&self.queue_capacity) {
            return Err(format!(
                "alerts.queue_capacity must be from {} to {}, not {}",
                QUEUE_CAPACITY.start(),
                QUEUE_CAPACITY.end(),
                self.queue_capacity
            ));
        }
        Ok(())
    }

    /// Whether `rule` raises alerts.
    pub fn enabled(&self, rule: Rule) -> bool {
        self.enabled && !self.disabled_rules.iter().any(|r| r == rule.name())
    }

    /// Whether new alerts of `rule` engage the agent's kill switch.
    pub fn stops_agent(&self, rule: Rule) -> bool {
        self.kill_switch_rules.iter().any(|r| r == rule.name())
    }

    /// The longest window a counted rule looks back over, in seconds.
    pub fn longest_window_seconds(&self) -> u64 {
        self.denials_window_seconds
            .max(self.failed_auth_window_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_keys_are_named() {
        assert_eq!(AlertsConfig::default().validate(), Ok(()));
        let cases: Vec<(AlertsConfig, &str)> = vec![
            (
                AlertsConfig {
                    denials_threshold: 0,
                    ..Default::default()
                },
                "alerts.denials_threshold",
            ),
            (
                AlertsConfig {
                    failed_auth_window_seconds: MAX_WINDOW_SECONDS + 1,
                    ..Default::default()
                },
                "alerts.failed_auth_window_seconds",
            ),
            (
                AlertsConfig {
                    high_risk_score: 1.5,
                    ..Default::default()
                },
                "alerts.high_risk_score",
            ),
            (
                AlertsConfig {
                    high_risk_score: f64::NAN,
                    ..Default::default()
                },
                "alerts.high_risk_score",
            ),
            (
                AlertsConfig {
                    budget_percentages: vec![0],
                    ..Default::default()
                },
                "alerts.budget_percentages",
            ),
            (
                AlertsConfig {
                    disabled_rules: vec!["nope".into()],
                    ..Default::default()
                },
                "alerts.disabled_rules",
            ),
            (
                AlertsConfig {
                    kill_switch_rules: vec!["kill_switch_engaged".into()],
                    ..Default::default()
                },
                "alerts.kill_switch_rules",
            ),
            (
                AlertsConfig {
                    queue_capacity: 1,
                    ..Default::default()
                },
                "alerts.queue_capacity",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().unwrap_err();
            assert!(error.starts_with(key), "{error}");
        }
    }
}
