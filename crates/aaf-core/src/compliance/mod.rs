//! Compliance evidence (issue 18, section 5): a mapping, kept as data, from AAF's controls and
//! audit event types to the controls of SOC 2, HIPAA, NIST SP 800-53 (and FedRAMP), ISO/IEC
//! 27001:2022 Annex A and the EU AI Act, and the report of the evidence AAF holds for each
//! control over a period and the gaps it can see.
//!
//! - The mapping is `mapping.yaml` beside this file, compiled in ([`MAPPING_YAML`]) and parsed
//!   once ([`Mapping::builtin`]). Frameworks and their sources:
//!   - `soc2`: AICPA 2017 Trust Services Criteria (points of focus revised 2022), common
//!     criteria CC6, CC7, CC8.
//!   - `hipaa`: 45 CFR 164.312, the HIPAA Security Rule's technical safeguards.
//!   - `nist-800-53` (alias `fedramp`): NIST SP 800-53 Rev. 5, whose controls FedRAMP's Rev. 5
//!     baselines select.
//!   - `iso27001`: ISO/IEC 27001:2022 Annex A.
//!   - `eu-ai-act`: Regulation (EU) 2024/1689, Articles 12, 14 and 26(6).
//! - The server gathers an [`EvidenceSnapshot`] for an organisation and a period (event counts
//!   and sample `seq`s per event type, the audit log's checkpoints, and [`OrgFacts`], the
//!   settings the checks read); [`report`] turns it into a [`Report`] per framework, which is
//!   JSON (`serde`) or HTML ([`render_html`]).
//!
//! This is evidence support, not a certification: a `satisfied` control means that AAF holds
//! records of it for the period and sees no weakness in its own settings, not that an auditor
//! would find the control met. docs/compliance.md is the reference (tables, statuses, the
//! report's JSON, `GET /v1/compliance/report`).
//!
//! Like the rest of `aaf-core` this does no I/O: the server reads the store and passes plain
//! data in.

mod html;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::audit::event_types;

pub use html::{escape_html, render_html};

/// The mapping's YAML text as compiled in (`crates/aaf-core/src/compliance/mapping.yaml`).
pub const MAPPING_YAML: &str = include_str!("mapping.yaml");

/// At most this many sample `seq`s per event type are kept in a [`Report`] (the first ones of
/// [`EventEvidence::samples`], in the order given).
pub const MAX_SAMPLES: usize = 5;

/// The sentence every report carries (`Report::notice`, and the HTML page's banner).
pub const NOTICE: &str = "Evidence support, not a certification: this report lists the records \
AAF holds for each control over the period and the weaknesses AAF can see in its own settings. \
Whether a control is met is for the organisation and its auditor to judge, with evidence from \
outside AAF as well.";

/// The whole mapping: every framework AAF maps, in the file's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The frameworks.
    pub frameworks: Vec<Framework>,
}

/// One framework: its identity, the retention it is taken to ask for, and its controls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    /// The id in the API (`?framework=`): `soc2`, `hipaa`, `nist-800-53`, `iso27001`,
    /// `eu-ai-act`.
    pub id: String,
    /// Other names accepted for it (`fedramp` for `nist-800-53`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// What the framework is, e.g. `SOC 2 (Trust Services Criteria, ...)`.
    pub title: String,
    /// The edition mapped, e.g. `Rev. 5 (FedRAMP Rev. 5 baselines)`.
    pub version: String,
    /// The document the control ids come from.
    pub source: String,
    /// Scope and caveats, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// How long this framework is taken to want audit records kept.
    pub retention: RetentionRequirement,
    /// The controls, in the file's order.
    pub controls: Vec<Control>,
}

/// How long a framework is taken to want audit records kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRequirement {
    /// Days; the figure the framework's [`Check::RetentionAtLeast`] checks use.
    pub days: u32,
    /// Where the figure comes from.
    pub basis: String,
    /// `true` when the figure is a common reading rather than what the text requires.
    pub interpretation: bool,
}

/// One control of a framework and what AAF holds for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The framework's own id: `CC6.1`, `164.312(b)`, `AU-9`, `A.8.15`, `Art. 12(1)`.
    pub id: String,
    /// A short paraphrase of the control (AAF's words, not the framework's text).
    pub title: String,
    /// What AAF does for it, naming the feature.
    pub provides: String,
    /// The audit event types that are evidence of it (each one of [`event_types::ALL`]).
    #[serde(default)]
    pub events: Vec<String>,
    /// Whether the audit log's checkpoints of the period are evidence of it too.
    #[serde(default)]
    pub checkpoints: bool,
    /// Checks that must pass: a failure makes the control [`Status::Gap`].
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Checks that should pass: a failure makes it [`Status::Partial`].
    #[serde(default)]
    pub recommended: Vec<Check>,
}

/// A gap check: something AAF can see in its own settings or records that a control relies
/// on. The closed set; each reads [`OrgFacts`] or the snapshot, as documented per variant.
///
/// JSON and YAML: a variant without parameters is its name (`"approval_policy_present"`); one
/// with parameters is a map of its name to them (`{"retention_at_least": {"days": 365}}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// At least one policy in force can send an action to approval
    /// ([`OrgFacts::approval_policy`]).
    ApprovalPolicyPresent,
    /// The four-eyes rule is on: the person an action was requested for may not approve it
    /// ([`OrgFacts::four_eyes`]).
    FourEyesEnabled,
    /// Every active agent has a registered public key, so all its requests are signed (RFC
    /// 9421) ([`OrgFacts::agents_without_public_key`] is 0).
    AgentSignaturesRequired,
    /// Every active agent key is limited to named tools ([`OrgFacts::unscoped_agent_keys`]
    /// is 0).
    AgentKeysScoped,
    /// Every active agent key has an expiry ([`OrgFacts::agent_keys_without_expiry`] is 0).
    AgentKeysExpire,
    /// A log key signs the audit log's checkpoints ([`OrgFacts::log_key_configured`]), and
    /// every checkpoint of the period is signed ([`CheckpointRef::signed`]).
    CheckpointsSigned,
    /// Checkpoints are published outside AAF's database ([`OrgFacts::checkpoint_sinks`] is
    /// at least 1).
    CheckpointSinkConfigured,
    /// At least one checkpoint of the audit log was made in the period
    /// ([`EvidenceSnapshot::checkpoints`] is not empty).
    CheckpointInPeriod,
    /// Every event type of the control is kept at least `days` days
    /// ([`OrgFacts::retention`]; kept forever passes).
    RetentionAtLeast {
        /// The minimum, in days.
        days: u32,
    },
    /// Stored data is encrypted at rest ([`OrgFacts::encryption_at_rest`]).
    EncryptionAtRest,
    /// Clients reach AAF over TLS only ([`OrgFacts::transport_encrypted`]).
    TransportEncryption,
    /// At least one alert rule runs ([`OrgFacts::alert_rules_enabled`] is at least 1).
    AlertRulesEnabled,
    /// At least one enabled webhook receives alert events ([`OrgFacts::alert_webhooks`] is at
    /// least 1).
    AlertNotificationsConfigured,
    /// Behavioural risk scoring is on ([`OrgFacts::risk_scoring_enabled`]).
    RiskScoringEnabled,
    /// A kill switch of the organisation has been engaged at least once, in the period
    /// (`kill_switch.engaged` events) or before ([`OrgFacts::kill_switch_last_engaged`]): the
    /// stop procedure has been exercised.
    KillSwitchTested,
    /// No policy module of the organisation comes from the server's policy directory, whose
    /// changes carry no author in the audit chain ([`OrgFacts::directory_policies`] is 0).
    PolicyChangesAudited,
}

impl Check {
    /// The check's name as written in the mapping and the report (`retention_at_least` for
    /// every [`Check::RetentionAtLeast`]).
    pub fn name(self) -> &'static str {
        match self {
            Check::ApprovalPolicyPresent => "approval_policy_present",
            Check::FourEyesEnabled => "four_eyes_enabled",
            Check::AgentSignaturesRequired => "agent_signatures_required",
            Check::AgentKeysScoped => "agent_keys_scoped",
            Check::AgentKeysExpire => "agent_keys_expire",
            Check::CheckpointsSigned => "checkpoints_signed",
            Check::CheckpointSinkConfigured => "checkpoint_sink_configured",
            Check::CheckpointInPeriod => "checkpoint_in_period",
            Check::RetentionAtLeast { .. } => "retention_at_least",
            Check::EncryptionAtRest => "encryption_at_rest",
            Check::TransportEncryption => "transport_encryption",
            Check::AlertRulesEnabled => "alert_rules_enabled",
            Check::AlertNotificationsConfigured => "alert_notifications_configured",
            Check::RiskScoringEnabled => "risk_scoring_enabled",
            Check::KillSwitchTested => "kill_switch_tested",
            Check::PolicyChangesAudited => "policy_changes_audited",
        }
    }

    /// What the check asks, in a sentence (for readers of the report).
    pub fn describe(self) -> String {
        match self {
            Check::ApprovalPolicyPresent => {
                "a policy in force can send actions to approval by people".into()
            }
            Check::FourEyesEnabled => {
                "the four-eyes rule is on: nobody approves an action requested for themselves"
                    .into()
            }
            Check::AgentSignaturesRequired => {
                "every active agent has a public key, so its requests are signed".into()
            }
            Check::AgentKeysScoped => "every active agent key is limited to named tools".into(),
            Check::AgentKeysExpire => "every active agent key has an expiry".into(),
            Check::CheckpointsSigned => "the audit log's checkpoints are signed".into(),
            Check::CheckpointSinkConfigured => {
                "checkpoints are published outside AAF's database".into()
            }
            Check::CheckpointInPeriod => "a checkpoint was made in the period".into(),
            Check::RetentionAtLeast { days } => {
                format!("the control's audit events are kept at least {days} days")
            }
            Check::EncryptionAtRest => "stored data is encrypted at rest".into(),
            Check::TransportEncryption => "clients reach AAF over TLS only".into(),
            Check::AlertRulesEnabled => "at least one alert rule runs".into(),
            Check::AlertNotificationsConfigured => "alerts are sent to a webhook".into(),
            Check::RiskScoringEnabled => "behavioural risk scoring is on".into(),
            Check::KillSwitchTested => "a kill switch has been engaged at least once".into(),
            Check::PolicyChangesAudited => {
                "every policy change goes through the audited API".into()
            }
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::RetentionAtLeast { days } => write!(f, "retention_at_least({days} days)"),
            other => f.write_str(other.name()),
        }
    }
}

/// Why a mapping was refused by [`Mapping::from_yaml`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The text is not YAML of the mapping's shape (an unknown member, a missing one, an
    /// unknown check).
    #[error("the compliance mapping is not valid: {0}")]
    Syntax(String),
    /// Two frameworks share an id or alias (compared without case).
    #[error("the compliance mapping names framework {0:?} twice")]
    DuplicateFramework(String),
    /// Two controls of a framework share an id.
    #[error("framework {framework}: control {control:?} appears twice")]
    DuplicateControl {
        /// The framework's id.
        framework: String,
        /// The control's id.
        control: String,
    },
    /// A control names an event type that is not one of [`event_types::ALL`].
    #[error(
        "framework {framework}, control {control}: {event_type:?} is not an AAF audit event type"
    )]
    UnknownEventType {
        /// The framework's id.
        framework: String,
        /// The control's id.
        control: String,
        /// The type named.
        event_type: String,
    },
    /// A control has neither event types nor checkpoints as evidence, so it could never show
    /// any.
    #[error("framework {framework}, control {control}: no evidence (no events, no checkpoints)")]
    NoEvidence {
        /// The framework's id.
        framework: String,
        /// The control's id.
        control: String,
    },
    /// A framework, a control or a check is missing something it needs: an empty id or title,
    /// no controls, a retention of 0 days.
    #[error("{0}")]
    Invalid(String),
}

/// The error of [`Mapping::framework`]: no framework has that id or alias.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compliance framework {requested:?}: expected one of {}", known.join(", "))]
pub struct UnknownFramework {
    /// The id asked for.
    pub requested: String,
    /// Every framework id of the mapping, in its order.
    pub known: Vec<String>,
}

static BUILTIN: LazyLock<Mapping> = LazyLock::new(parse_builtin);

/// Parses [`MAPPING_YAML`].
// Constant data, parsed by `tests::the_builtin_mapping_parses_and_names_only_real_event_types`.
#[allow(clippy::expect_used)]
fn parse_builtin() -> Mapping {
    Mapping::from_yaml(MAPPING_YAML).expect("the built-in compliance mapping is valid")
}

impl Mapping {
    /// The built-in mapping ([`MAPPING_YAML`]), parsed on first use. It is valid: the unit
    /// tests parse it.
    pub fn builtin() -> &'static Mapping {
        &BUILTIN
    }

    /// Parses and checks a mapping in the format of `mapping.yaml`.
    ///
    /// # Errors
    ///
    /// [`MappingError`]: the text is not a mapping of the documented shape (unknown members
    /// are errors), an id appears twice, an event type is not one of [`event_types::ALL`], a
    /// control has no evidence, or something is empty.
    pub fn from_yaml(text: &str) -> Result<Mapping, MappingError> {
        let mapping: Mapping = yaml_serde::with::singleton_map_recursive::deserialize(
            yaml_serde::Deserializer::from_str(text),
        )
        .map_err(|e| MappingError::Syntax(e.to_string()))?;
        mapping.validate()?;
        Ok(mapping)
    }

    fn validate(&self) -> Result<(), MappingError> {
        if self.frameworks.is_empty() {
            return Err(MappingError::Invalid(
                "the mapping has no frameworks".into(),
            ));
        }
        let mut names = BTreeSet::new();
        for framework in &self.frameworks {
            for name in std::iter::once(&framework.id).chain(&framework.aliases) {
                if name.trim().is_empty() {
                    return Err(MappingError::Invalid(
                        "a framework id or alias is empty".into(),
                    ));
                }
                if !names.insert(name.to_ascii_lowercase()) {
                    return Err(MappingError::DuplicateFramework(name.clone()));
                }
            }
            framework.validate()?;
        }
        Ok(())
    }

    /// The framework with this id or alias (compared without ASCII case).
    ///
    /// # Errors
    ///
    /// [`UnknownFramework`], listing the known ids.
    pub fn framework(&self, id: &str) -> Result<&Framework, UnknownFramework> {
        self.frameworks
            .iter()
            .find(|f| {
                f.id.eq_ignore_ascii_case(id)
                    || f.aliases.iter().any(|a| a.eq_ignore_ascii_case(id))
            })
            .ok_or_else(|| UnknownFramework {
                requested: id.to_owned(),
                known: self.ids(),
            })
    }

    /// Every framework id, in the mapping's order.
    pub fn ids(&self) -> Vec<String> {
        self.frameworks.iter().map(|f| f.id.clone()).collect()
    }
}

impl Framework {
    fn validate(&self) -> Result<(), MappingError> {
        let invalid = |what: &str| MappingError::Invalid(format!("framework {}: {what}", self.id));
        if self.title.trim().is_empty() || self.version.trim().is_empty() {
            return Err(invalid("title and version must not be empty"));
        }
        if self.retention.days == 0 {
            return Err(invalid("retention.days must be at least 1"));
        }
        if self.controls.is_empty() {
            return Err(invalid("no controls"));
        }
        let mut ids = BTreeSet::new();
        for control in &self.controls {
            if control.id.trim().is_empty()
                || control.title.trim().is_empty()
                || control.provides.trim().is_empty()
            {
                return Err(invalid(
                    "a control's id, title and provides must not be empty",
                ));
            }
            if !ids.insert(control.id.as_str()) {
                return Err(MappingError::DuplicateControl {
                    framework: self.id.clone(),
                    control: control.id.clone(),
                });
            }
            if control.events.is_empty() && !control.checkpoints {
                return Err(MappingError::NoEvidence {
                    framework: self.id.clone(),
                    control: control.id.clone(),
                });
            }
            if let Some(unknown) = control
                .events
                .iter()
                .find(|t| !event_types::ALL.contains(&t.as_str()))
            {
                return Err(MappingError::UnknownEventType {
                    framework: self.id.clone(),
                    control: control.id.clone(),
                    event_type: unknown.clone(),
                });
            }
            let mut seen = BTreeSet::new();
            for check in control.checks.iter().chain(&control.recommended) {
                if matches!(check, Check::RetentionAtLeast { days: 0 }) {
                    return Err(invalid("retention_at_least needs at least 1 day"));
                }
                if !seen.insert(*check) {
                    return Err(MappingError::Invalid(format!(
                        "framework {}, control {}: check {check} listed twice",
                        self.id, control.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// The control with this id (exact).
    pub fn control(&self, id: &str) -> Option<&Control> {
        self.controls.iter().find(|c| c.id == id)
    }
}

/// The framework's controls as a Markdown table: control, title, what AAF provides, evidence
/// (event types, and checkpoints), required checks, recommended checks. docs/compliance.md
/// holds one per framework, and a unit test compares them with the mapping.
pub fn markdown_table(framework: &Framework) -> String {
    fn cell(text: &str) -> String {
        text.replace('|', "\\|").replace('\n', " ")
    }
    fn checks(list: &[Check]) -> String {
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
    let mut out = String::from(
        "| control | title | what AAF provides | evidence | required checks | recommended checks |\n\
         |---|---|---|---|---|---|\n",
    );
    for c in &framework.controls {
        let mut evidence: Vec<String> = c.events.iter().map(|t| format!("`{t}`")).collect();
        if c.checkpoints {
            evidence.push("checkpoints".to_owned());
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            cell(&c.id),
            cell(&c.title),
            cell(&c.provides),
            evidence.join(", "),
            checks(&c.checks),
            checks(&c.recommended),
        ));
    }
    out
}

/// What the server gives [`report`]: the evidence of one organisation over one period.
///
/// The server builds it from the store; its JSON shape (for tests and tools) is
/// `{"org_id", "org_name", "from", "to", "generated_at", "events": {"action.decided":
/// {"count": 120, "samples": [7, 9]}}, "checkpoints": [{"tree_size", "time", "root",
/// "signed"}], "facts": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvidenceSnapshot {
    /// The organisation's id.
    pub org_id: String,
    /// The organisation's name, as shown to people (any text; the HTML escapes it).
    pub org_name: String,
    /// Start of the period, inclusive: RFC 3339 in UTC, e.g. `2026-01-01T00:00:00Z`.
    pub from: String,
    /// End of the period, exclusive: RFC 3339 in UTC.
    pub to: String,
    /// When the snapshot was taken, RFC 3339 in UTC (the core has no clock).
    pub generated_at: String,
    /// Per audit event type, the organisation's events of that type whose `ts` is in the
    /// period. Types without events may be absent (a count of 0).
    pub events: BTreeMap<String, EventEvidence>,
    /// The audit log's checkpoints made in the period, oldest first (ascending `tree_size`).
    pub checkpoints: Vec<CheckpointRef>,
    /// The organisation's settings the checks read, as they are when the snapshot is taken.
    pub facts: OrgFacts,
}

/// The events of one type in the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEvidence {
    /// How many events of the type the period holds.
    pub count: u64,
    /// Some of their `seq`s in the organisation's chain (the server gives at most
    /// [`MAX_SAMPLES`], newest first; a reader fetches one with `GET
    /// /v1/audit?after_seq=<seq - 1>&limit=1`).
    pub samples: Vec<u64>,
}

/// One checkpoint of the organisation's audit log (issue 18, section 1: the transparency log
/// over the chain).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRef {
    /// The tree size it commits to: how many audit events (`seq` 1 to `tree_size`) it covers.
    pub tree_size: u64,
    /// When it was made, RFC 3339 in UTC.
    pub time: String,
    /// The Merkle root (RFC 9162), 64 lowercase hexadecimal characters.
    pub root: String,
    /// Whether it is signed with the log key.
    pub signed: bool,
}

/// The organisation's settings the checks read, taken when the snapshot is made. Plain data:
/// the server fills it from its configuration and the store. `Default` is nothing configured
/// and no agents: every boolean `false`, every count 0, retention unset (kept forever).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrgFacts {
    /// At least one policy in force (managed, pack or directory) can decide
    /// `require_approval`. Read by [`Check::ApprovalPolicyPresent`].
    pub approval_policy: bool,
    /// The organisation's four-eyes setting (`four_eyes` of `GET /v1/settings`). Read by
    /// [`Check::FourEyesEnabled`].
    pub four_eyes: bool,
    /// Active agents (not isolated, with at least one usable key) registered without a
    /// public key, whose requests are therefore not signed. Read by
    /// [`Check::AgentSignaturesRequired`].
    pub agents_without_public_key: u64,
    /// Active (unrevoked, unexpired) agent keys without a tool scope: they may ask for any
    /// tool. Read by [`Check::AgentKeysScoped`].
    pub unscoped_agent_keys: u64,
    /// Active agent keys without an expiry. Read by [`Check::AgentKeysExpire`].
    pub agent_keys_without_expiry: u64,
    /// A log key signs the organisation's audit-log checkpoints. Read by
    /// [`Check::CheckpointsSigned`].
    pub log_key_configured: bool,
    /// How many places outside AAF's database the checkpoints are published to. Read by
    /// [`Check::CheckpointSinkConfigured`].
    pub checkpoint_sinks: u32,
    /// Stored data is encrypted at rest (by AAF, or declared by the operator for the
    /// database's storage). Read by [`Check::EncryptionAtRest`].
    pub encryption_at_rest: bool,
    /// Clients reach AAF over TLS only (AAF's public URL is `https://`, or the operator
    /// declares a TLS-terminating proxy). Read by [`Check::TransportEncryption`].
    pub transport_encrypted: bool,
    /// How many alert rules run for the organisation (0 when alerts are off). Read by
    /// [`Check::AlertRulesEnabled`].
    pub alert_rules_enabled: u32,
    /// How many enabled webhooks receive `alert.*` events. Read by
    /// [`Check::AlertNotificationsConfigured`].
    pub alert_webhooks: u32,
    /// Behavioural risk scoring is on (`detection.risk.enabled`). Read by
    /// [`Check::RiskScoringEnabled`].
    pub risk_scoring_enabled: bool,
    /// When a kill switch of the organisation was last engaged (any scope, any source), RFC
    /// 3339; `None`: never. Read by [`Check::KillSwitchTested`].
    pub kill_switch_last_engaged: Option<String>,
    /// How many of the organisation's policy modules come from the server's policy directory
    /// rather than the audited policy API. Read by [`Check::PolicyChangesAudited`].
    pub directory_policies: u32,
    /// How long audit events are kept. Read by [`Check::RetentionAtLeast`].
    pub retention: RetentionFacts,
}

/// How long the organisation keeps its audit events, per event class.
///
/// The retention of an event type is `by_class[type]` if present (`"action.decided"`), else
/// `by_class[class]` where the class is the type up to its first dot (`"action"` for
/// `action.decided`, `"agent_key"` for `agent_key.revoked`), else `default_days`. A value of
/// `None` (JSON `null`) is kept forever.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionFacts {
    /// Days kept unless a class says otherwise; `None`: forever.
    pub default_days: Option<u32>,
    /// Days per event type or class; `None`: forever.
    pub by_class: BTreeMap<String, Option<u32>>,
}

impl RetentionFacts {
    /// How many days events of this type are kept; `None`: forever.
    pub fn days_for(&self, event_type: &str) -> Option<u32> {
        if let Some(days) = self.by_class.get(event_type) {
            return *days;
        }
        let class = event_type.split('.').next().unwrap_or(event_type);
        match self.by_class.get(class) {
            Some(days) => *days,
            None => self.default_days,
        }
    }
}

/// A control's standing in a report.
///
/// In order of precedence (the first that applies):
/// - `gap`: a required check ([`Control::checks`]) failed.
/// - `partial`: every required check passed, a recommended one ([`Control::recommended`])
///   failed.
/// - `no_activity`: every check passed, and the period holds no evidence of the control: no
///   event of its types and (for a control with [`Control::checkpoints`]) no checkpoint. Not a
///   failure (no incident to handle, no key to rotate), but nothing to show for the period.
/// - `satisfied`: every check passed and the period holds evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Checks pass and the period holds evidence.
    Satisfied,
    /// Required checks pass, a recommended one fails.
    Partial,
    /// A required check fails.
    Gap,
    /// Checks pass, no evidence in the period.
    NoActivity,
}

impl Status {
    /// The wire name: `satisfied`, `partial`, `gap` or `no_activity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Satisfied => "satisfied",
            Status::Partial => "partial",
            Status::Gap => "gap",
            Status::NoActivity => "no_activity",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The report of one framework for one organisation and period. JSON (snake_case):
///
/// ```json
/// {"framework": {"id", "title", "version", "source", "note", "retention": {"days", "basis",
///   "interpretation"}},
///  "org_id", "org_name", "from", "to", "generated_at",
///  "summary": {"controls": 10, "satisfied": 4, "partial": 3, "gap": 1, "no_activity": 2},
///  "controls": [{"id", "title", "provides", "status",
///    "evidence": {"total_events": 3, "events": [{"type", "count", "samples"}],
///                 "checkpoints": {"count", "first", "last"} | null},
///    "findings": [{"check", "required", "message"}], "passed": [check...]}],
///  "facts": {...OrgFacts}, "notice": "..."}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The framework reported on (without its controls).
    pub framework: FrameworkInfo,
    /// The organisation's id.
    pub org_id: String,
    /// The organisation's name.
    pub org_name: String,
    /// Start of the period (inclusive), RFC 3339.
    pub from: String,
    /// End of the period (exclusive), RFC 3339.
    pub to: String,
    /// When the evidence was gathered, RFC 3339.
    pub generated_at: String,
    /// How many controls have each status.
    pub summary: Summary,
    /// One entry per control of the framework, in the mapping's order.
    pub controls: Vec<ControlReport>,
    /// The settings the checks read.
    pub facts: OrgFacts,
    /// [`NOTICE`]: evidence support, not a certification.
    pub notice: String,
}

/// A framework's identity in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    /// [`Framework::id`].
    pub id: String,
    /// [`Framework::title`].
    pub title: String,
    /// [`Framework::version`].
    pub version: String,
    /// [`Framework::source`].
    pub source: String,
    /// [`Framework::note`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// [`Framework::retention`].
    pub retention: RetentionRequirement,
}

/// How many controls have each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// All controls of the framework.
    pub controls: u32,
    /// [`Status::Satisfied`].
    pub satisfied: u32,
    /// [`Status::Partial`].
    pub partial: u32,
    /// [`Status::Gap`].
    pub gap: u32,
    /// [`Status::NoActivity`].
    pub no_activity: u32,
}

/// One control in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlReport {
    /// [`Control::id`].
    pub id: String,
    /// [`Control::title`].
    pub title: String,
    /// [`Control::provides`].
    pub provides: String,
    /// The control's standing ([`Status`]).
    pub status: Status,
    /// What the period holds for it.
    pub evidence: ControlEvidence,
    /// The checks that failed, required ones first, each in the mapping's order.
    pub findings: Vec<Finding>,
    /// The checks that passed, required ones first.
    pub passed: Vec<Check>,
}

/// The evidence of one control in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlEvidence {
    /// The sum of `events[].count`.
    pub total_events: u64,
    /// One entry per event type of the control, in the mapping's order, count 0 included.
    pub events: Vec<EventTypeEvidence>,
    /// The period's checkpoints, for a control with [`Control::checkpoints`]; `null`
    /// otherwise.
    pub checkpoints: Option<CheckpointEvidence>,
}

/// The events of one type, in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTypeEvidence {
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// How many the period holds.
    pub count: u64,
    /// At most [`MAX_SAMPLES`] of their `seq`s.
    pub samples: Vec<u64>,
}

/// The period's checkpoints, in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEvidence {
    /// How many checkpoints the period holds.
    pub count: u64,
    /// The oldest (smallest tree); `null` when there is none.
    pub first: Option<CheckpointRef>,
    /// The newest (largest tree); `null` when there is none. A consistency proof from
    /// `first` to `last` (`GET` of the transparency log's proofs) shows that nothing logged
    /// was rewritten in the period.
    pub last: Option<CheckpointRef>,
}

/// A failed check of a control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The check ([`Check`]'s JSON: its name, or `{"retention_at_least": {"days": N}}`).
    pub check: Check,
    /// `true` for a required check (the control is `gap`), `false` for a recommended one.
    pub required: bool,
    /// What is wrong, for people, with the numbers involved.
    pub message: String,
}

/// The report of `framework` for the snapshot's organisation and period: each control's
/// status, evidence and findings (see [`Status`] for the rules). Pure: the same inputs give
/// the same report.
pub fn report(framework: &Framework, snapshot: &EvidenceSnapshot) -> Report {
    let mut summary = Summary::default();
    let controls: Vec<ControlReport> = framework
        .controls
        .iter()
        .map(|control| {
            let row = control_report(control, snapshot);
            summary.controls += 1;
            match row.status {
                Status::Satisfied => summary.satisfied += 1,
                Status::Partial => summary.partial += 1,
                Status::Gap => summary.gap += 1,
                Status::NoActivity => summary.no_activity += 1,
            }
            row
        })
        .collect();
    Report {
        framework: FrameworkInfo {
            id: framework.id.clone(),
            title: framework.title.clone(),
            version: framework.version.clone(),
            source: framework.source.clone(),
            note: framework.note.clone(),
            retention: framework.retention.clone(),
        },
        org_id: snapshot.org_id.clone(),
        org_name: snapshot.org_name.clone(),
        from: snapshot.from.clone(),
        to: snapshot.to.clone(),
        generated_at: snapshot.generated_at.clone(),
        summary,
        controls,
        facts: snapshot.facts.clone(),
        notice: NOTICE.to_owned(),
    }
}

fn control_report(control: &Control, snapshot: &EvidenceSnapshot) -> ControlReport {
    let events: Vec<EventTypeEvidence> = control
        .events
        .iter()
        .map(|t| {
            let found = snapshot.events.get(t);
            EventTypeEvidence {
                event_type: t.clone(),
                count: found.map_or(0, |e| e.count),
                samples: found
                    .map(|e| e.samples.iter().copied().take(MAX_SAMPLES).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    let total_events = events.iter().map(|e| e.count).sum();
    let checkpoints = control.checkpoints.then(|| CheckpointEvidence {
        count: snapshot.checkpoints.len() as u64,
        first: snapshot
            .checkpoints
            .iter()
            .min_by_key(|c| c.tree_size)
            .cloned(),
        last: snapshot
            .checkpoints
            .iter()
            .max_by_key(|c| c.tree_size)
            .cloned(),
    });
    let has_evidence = total_events > 0 || checkpoints.as_ref().is_some_and(|c| c.count > 0);

    let mut findings = Vec::new();
    let mut passed = Vec::new();
    let mut required_failed = false;
    let mut recommended_failed = false;
    let all = control
        .checks
        .iter()
        .map(|c| (c, true))
        .chain(control.recommended.iter().map(|c| (c, false)));
    for (check, required) in all {
        match evaluate(*check, control, snapshot) {
            None => passed.push(*check),
            Some(message) => {
                if required {
                    required_failed = true;
                } else {
                    recommended_failed = true;
                }
                findings.push(Finding {
                    check: *check,
                    required,
                    message,
                });
            }
        }
    }
    let status = if required_failed {
        Status::Gap
    } else if recommended_failed {
        Status::Partial
    } else if !has_evidence {
        Status::NoActivity
    } else {
        Status::Satisfied
    };
    ControlReport {
        id: control.id.clone(),
        title: control.title.clone(),
        provides: control.provides.clone(),
        status,
        evidence: ControlEvidence {
            total_events,
            events,
            checkpoints,
        },
        findings,
        passed,
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// `None` when the check passes; otherwise the finding's message.
fn evaluate(check: Check, control: &Control, snapshot: &EvidenceSnapshot) -> Option<String> {
    let facts = &snapshot.facts;
    match check {
        Check::ApprovalPolicyPresent => (!facts.approval_policy).then(|| {
            "no policy in force can decide require_approval: no agent action waits for a person"
                .to_owned()
        }),
        Check::FourEyesEnabled => (!facts.four_eyes).then(|| {
            "the four-eyes rule is off: the person an action was requested for may approve it"
                .to_owned()
        }),
        Check::AgentSignaturesRequired => (facts.agents_without_public_key > 0).then(|| {
            format!(
                "{} no public key: their requests are authenticated by API key alone, unsigned",
                plural(
                    facts.agents_without_public_key,
                    "active agent has",
                    "active agents have"
                )
            )
        }),
        Check::AgentKeysScoped => (facts.unscoped_agent_keys > 0).then(|| {
            format!(
                "{}: only the policies limit which tools may be asked for",
                plural(
                    facts.unscoped_agent_keys,
                    "active agent key has no tool scope",
                    "active agent keys have no tool scope"
                )
            )
        }),
        Check::AgentKeysExpire => (facts.agent_keys_without_expiry > 0).then(|| {
            plural(
                facts.agent_keys_without_expiry,
                "active agent key never expires",
                "active agent keys never expire",
            )
        }),
        Check::CheckpointsSigned => {
            if !facts.log_key_configured {
                Some("no log key is configured: the audit log's checkpoints are not signed".into())
            } else {
                let unsigned = snapshot.checkpoints.iter().filter(|c| !c.signed).count() as u64;
                (unsigned > 0).then(|| {
                    format!(
                        "{} of the period {} not signed with the log key",
                        plural(unsigned, "checkpoint", "checkpoints"),
                        if unsigned == 1 { "is" } else { "are" }
                    )
                })
            }
        }
        Check::CheckpointSinkConfigured => (facts.checkpoint_sinks == 0).then(|| {
            "checkpoints are not published outside AAF's database: whoever can write the \
             database could rewrite the log and its checkpoints together"
                .to_owned()
        }),
        Check::CheckpointInPeriod => snapshot
            .checkpoints
            .is_empty()
            .then(|| "no checkpoint of the audit log was made in the period".to_owned()),
        Check::RetentionAtLeast { days } => retention_finding(days, control, facts),
        Check::EncryptionAtRest => (!facts.encryption_at_rest)
            .then(|| "stored data is not known to be encrypted at rest".to_owned()),
        Check::TransportEncryption => (!facts.transport_encrypted)
            .then(|| "clients are not known to reach AAF over TLS only".to_owned()),
        Check::AlertRulesEnabled => (facts.alert_rules_enabled == 0).then(|| {
            "no alert rule runs: nothing watches the audit events for anomalies".to_owned()
        }),
        Check::AlertNotificationsConfigured => (facts.alert_webhooks == 0).then(|| {
            "no enabled webhook receives alert events: alerts are seen only in AAF's API".to_owned()
        }),
        Check::RiskScoringEnabled => (!facts.risk_scoring_enabled).then(|| {
            "behavioural risk scoring is off (detection.risk.enabled): actions get no risk score"
                .to_owned()
        }),
        Check::KillSwitchTested => {
            let in_period = snapshot
                .events
                .get(event_types::KILL_SWITCH_ENGAGED)
                .is_some_and(|e| e.count > 0);
            (!in_period && facts.kill_switch_last_engaged.is_none()).then(|| {
                "no kill switch of this organisation has ever been engaged: the stop procedure \
                 has not been exercised"
                    .to_owned()
            })
        }
        Check::PolicyChangesAudited => (facts.directory_policies > 0).then(|| {
            format!(
                "{} from the server's policy directory: changes to {} are recorded as policy \
                 revisions but carry no author in the audit chain",
                plural(
                    u64::from(facts.directory_policies),
                    "policy module comes",
                    "policy modules come"
                ),
                if facts.directory_policies == 1 {
                    "it"
                } else {
                    "them"
                }
            )
        }),
    }
}

/// The retention check: every event type of the control (or, for a control with none, the
/// default) must be kept `days` days or forever.
fn retention_finding(days: u32, control: &Control, facts: &OrgFacts) -> Option<String> {
    let kept: Vec<(&str, Option<u32>)> = if control.events.is_empty() {
        vec![("", facts.retention.default_days)]
    } else {
        control
            .events
            .iter()
            .map(|t| (t.as_str(), facts.retention.days_for(t)))
            .collect()
    };
    let shortest = kept.iter().filter_map(|(_, d)| *d).min()?;
    if shortest >= days {
        return None;
    }
    let short: Vec<&str> = kept
        .iter()
        .filter(|(_, d)| *d == Some(shortest))
        .map(|(t, _)| *t)
        .collect();
    let what = if control.events.is_empty() {
        "audit events are".to_owned()
    } else if short.len() == kept.len() && kept.len() > 2 {
        format!(
            "the audit events of all {} event types of this control are",
            kept.len()
        )
    } else {
        format!("audit events of type {} are", short.join(", "))
    };
    Some(format!(
        "{what} kept {shortest} days, less than the {days} days this check asks for (the \
         framework's retention basis says why)"
    ))
}

#[cfg(test)]
mod tests;
