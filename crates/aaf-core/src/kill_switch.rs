//! Kill switches: what one stops, and whether it applies to an action. No I/O; the server
//! stores them, keeps every node's copy current and refuses actions in scope before any
//! policy is evaluated (docs/runtime-protection.md).
//!
//! A kill switch has a [`KillSwitchScope`]: the whole organisation, one agent, one tool (by
//! its exact name, for every agent) or one agent's use of one tool. It is in force from its
//! creation until it is released or its optional expiry passes.

use serde::{Deserialize, Serialize};

/// Longest tool name a kill switch may name (the API refuses longer ones with a 400).
pub const MAX_TOOL_LEN: usize = 200;
/// Longest reason a kill switch may carry, in bytes.
pub const MAX_REASON_LEN: usize = 1000;

/// What a kill switch stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillSwitchScope {
    /// Every action of the organisation.
    Org,
    /// Every action of one agent.
    Agent,
    /// Every action of one tool (exact name), whichever agent submits it.
    Tool,
    /// One agent's actions of one tool.
    AgentTool,
}

impl KillSwitchScope {
    /// Every scope, in the order the documentation lists them.
    pub const ALL: [KillSwitchScope; 4] = [
        KillSwitchScope::Org,
        KillSwitchScope::Agent,
        KillSwitchScope::Tool,
        KillSwitchScope::AgentTool,
    ];

    /// The name as stored and as the API spells it: `org`, `agent`, `tool`, `agent_tool`.
    pub fn as_str(self) -> &'static str {
        match self {
            KillSwitchScope::Org => "org",
            KillSwitchScope::Agent => "agent",
            KillSwitchScope::Tool => "tool",
            KillSwitchScope::AgentTool => "agent_tool",
        }
    }

    /// The scope of this name, if it is one.
    pub fn parse(name: &str) -> Option<KillSwitchScope> {
        KillSwitchScope::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for KillSwitchScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who or what engaged a kill switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillSwitchSource {
    /// A user, through `POST /v1/kill-switches` or `aaf kill`.
    Manual,
    /// `POST /v1/agents/{id}/isolate`.
    Isolation,
    /// A circuit breaker (budget exhausted, spend or denials over a threshold).
    CircuitBreaker,
}

impl KillSwitchSource {
    /// The name as stored: `manual`, `isolation`, `circuit_breaker`.
    pub fn as_str(self) -> &'static str {
        match self {
            KillSwitchSource::Manual => "manual",
            KillSwitchSource::Isolation => "isolation",
            KillSwitchSource::CircuitBreaker => "circuit_breaker",
        }
    }

    /// The source of this name, if it is one.
    pub fn parse(name: &str) -> Option<KillSwitchSource> {
        [
            KillSwitchSource::Manual,
            KillSwitchSource::Isolation,
            KillSwitchSource::CircuitBreaker,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// A kill switch as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillSwitch {
    /// UUIDv7 string.
    pub id: String,
    /// The organisation it belongs to (a kill switch never reaches across organisations).
    pub org_id: String,
    /// What it stops.
    pub scope: KillSwitchScope,
    /// The agent, for the scopes `agent` and `agent_tool`.
    pub agent_id: Option<String>,
    /// The tool's exact name, for the scopes `tool` and `agent_tool`.
    pub tool: Option<String>,
    /// Why it was engaged (shown in every refusal).
    pub reason: String,
    /// Who or what engaged it.
    pub source: KillSwitchSource,
    /// When it was engaged (RFC 3339 UTC, six fractional digits).
    pub created_at: String,
    /// The user who engaged it (`None` for a circuit breaker).
    pub created_by: Option<String>,
    /// When it stops applying by itself (same format), if ever.
    pub expires_at: Option<String>,
    /// When it was released (same format), if it was.
    pub released_at: Option<String>,
    /// The user who released it.
    pub released_by: Option<String>,
}

impl KillSwitch {
    /// Whether it is in force at `now` (RFC 3339 UTC with six fractional digits, the format
    /// AAF writes, whose strings sort in time order): not released and not expired.
    pub fn in_force(&self, now: &str) -> bool {
        self.released_at.is_none() && self.expires_at.as_deref().is_none_or(|e| now < e)
    }

    /// Whether it stops an action of `agent_id` on `tool` (scope only; see
    /// [`KillSwitch::in_force`] for time).
    pub fn covers(&self, agent_id: &str, tool: &str) -> bool {
        let agent = || self.agent_id.as_deref() == Some(agent_id);
        let same_tool = || self.tool.as_deref() == Some(tool);
        match self.scope {
            KillSwitchScope::Org => true,
            KillSwitchScope::Agent => agent(),
            KillSwitchScope::Tool => same_tool(),
            KillSwitchScope::AgentTool => agent() && same_tool(),
        }
    }

    /// The target as the API spells it: empty for `org`, the agent id, the tool name, or
    /// `<agent_id>:<tool>`.
    pub fn target(&self) -> String {
        match self.scope {
            KillSwitchScope::Org => String::new(),
            KillSwitchScope::Agent => self.agent_id.clone().unwrap_or_default(),
            KillSwitchScope::Tool => self.tool.clone().unwrap_or_default(),
            KillSwitchScope::AgentTool => format!(
                "{}:{}",
                self.agent_id.as_deref().unwrap_or_default(),
                self.tool.as_deref().unwrap_or_default()
            ),
        }
    }

    /// The reason of a refusal because of this switch; it starts with `kill_switch:` (the
    /// prefix every kill-switch refusal carries, ARCHITECTURE.md).
    pub fn refusal(&self) -> String {
        let what = match self.scope {
            KillSwitchScope::Org => "the organisation".to_string(),
            KillSwitchScope::Agent => "this agent".to_string(),
            KillSwitchScope::Tool => format!("the tool {:?}", self.tool.as_deref().unwrap_or("")),
            KillSwitchScope::AgentTool => format!(
                "this agent's use of the tool {:?}",
                self.tool.as_deref().unwrap_or("")
            ),
        };
        format!(
            "kill_switch: {what} is stopped by kill switch {} ({}): {}",
            self.id,
            self.source.as_str(),
            self.reason
        )
    }
}

/// Why a kill-switch target cannot be taken as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TargetError(pub String);

/// Splits an API target into `(agent_id, tool)` for `scope`: nothing (or the organisation's
/// own id) for `org`, an agent id for `agent`, a tool name for `tool`, and
/// `<agent_id>:<tool>` for `agent_tool` (split at the first `:`; agent ids never hold one).
/// Whether the agent exists is the caller's to check.
///
/// # Errors
///
/// [`TargetError`] when a part is missing or empty, a tool name is longer than
/// [`MAX_TOOL_LEN`] or holds control characters, or an `org` target names another
/// organisation.
pub fn parse_target(
    scope: KillSwitchScope,
    target: Option<&str>,
    org_id: &str,
) -> Result<(Option<String>, Option<String>), TargetError> {
    let target = target.map(str::trim).filter(|t| !t.is_empty());
    let need = |what: &str| TargetError(format!("scope {scope} needs a target: {what}"));
    match scope {
        KillSwitchScope::Org => match target {
            None => Ok((None, None)),
            Some(t) if t == org_id => Ok((None, None)),
            Some(t) => Err(TargetError(format!(
                "scope org stops your own organisation and takes no target (or its id {org_id}), not {t:?}"
            ))),
        },
        KillSwitchScope::Agent => {
            let agent = target.ok_or_else(|| need("the agent's id"))?;
            Ok((Some(agent.to_string()), None))
        }
        KillSwitchScope::Tool => {
            let tool = target.ok_or_else(|| need("the tool's name"))?;
            check_tool(tool)?;
            Ok((None, Some(tool.to_string())))
        }
        KillSwitchScope::AgentTool => {
            let t = target.ok_or_else(|| need("<agent_id>:<tool>"))?;
            let Some((agent, tool)) = t.split_once(':') else {
                return Err(need("<agent_id>:<tool>, with a colon"));
            };
            let (agent, tool) = (agent.trim(), tool.trim());
            if agent.is_empty() || tool.is_empty() {
                return Err(need("<agent_id>:<tool>, both non-empty"));
            }
            check_tool(tool)?;
            Ok((Some(agent.to_string()), Some(tool.to_string())))
        }
    }
}

fn check_tool(tool: &str) -> Result<(), TargetError> {
    if tool.len() > MAX_TOOL_LEN {
        return Err(TargetError(format!(
            "a tool name has at most {MAX_TOOL_LEN} bytes"
        )));
    }
    if tool.chars().any(char::is_control) {
        return Err(TargetError(
            "a tool name holds no control characters".into(),
        ));
    }
    Ok(())
}

/// The first switch of `switches` in force at `now` that stops an action of `agent_id` on
/// `tool`, the broadest scope first (organisation, agent, tool, agent's tool) so that a
/// refusal names the widest reason.
pub fn first_covering<'a>(
    switches: &'a [KillSwitch],
    agent_id: &str,
    tool: &str,
    now: &str,
) -> Option<&'a KillSwitch> {
    KillSwitchScope::ALL.into_iter().find_map(|scope| {
        switches
            .iter()
            .find(|s| s.scope == scope && s.in_force(now) && s.covers(agent_id, tool))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(scope: KillSwitchScope, agent: Option<&str>, tool: Option<&str>) -> KillSwitch {
        KillSwitch {
            id: format!("ks-{scope}"),
            org_id: "org".into(),
            scope,
            agent_id: agent.map(str::to_string),
            tool: tool.map(str::to_string),
            reason: "runaway".into(),
            source: KillSwitchSource::Manual,
            created_at: "2026-12-04T10:00:00.000000Z".into(),
            created_by: Some("u".into()),
            expires_at: None,
            released_at: None,
            released_by: None,
        }
    }

    #[test]
    fn each_scope_covers_exactly_its_actions() {
        let org = switch(KillSwitchScope::Org, None, None);
        let agent = switch(KillSwitchScope::Agent, Some("a1"), None);
        let tool = switch(KillSwitchScope::Tool, None, Some("http"));
        let both = switch(KillSwitchScope::AgentTool, Some("a1"), Some("http"));
        for (a, t) in [("a1", "http"), ("a2", "http"), ("a1", "db"), ("a2", "db")] {
            assert!(org.covers(a, t));
            assert_eq!(agent.covers(a, t), a == "a1", "{a} {t}");
            assert_eq!(tool.covers(a, t), t == "http", "{a} {t}");
            assert_eq!(both.covers(a, t), a == "a1" && t == "http", "{a} {t}");
        }
        // Names are compared exactly: no prefixes, no case folding.
        assert!(!tool.covers("a1", "HTTP"));
        assert!(!tool.covers("a1", "http2"));
    }

    #[test]
    fn released_and_expired_switches_are_not_in_force() {
        let now = "2026-12-04T10:00:05.000000Z";
        let mut s = switch(KillSwitchScope::Org, None, None);
        assert!(s.in_force(now));
        s.expires_at = Some("2026-12-04T10:00:05.000001Z".into());
        assert!(s.in_force(now));
        s.expires_at = Some(now.into());
        assert!(!s.in_force(now), "in force until, not at, its expiry");
        s.expires_at = None;
        s.released_at = Some("2026-12-04T10:00:01.000000Z".into());
        assert!(!s.in_force(now));
    }

    #[test]
    fn the_broadest_switch_is_named_first() {
        let now = "2026-12-04T10:00:05.000000Z";
        let switches = vec![
            switch(KillSwitchScope::AgentTool, Some("a1"), Some("http")),
            switch(KillSwitchScope::Agent, Some("a1"), None),
        ];
        let found = first_covering(&switches, "a1", "http", now).unwrap();
        assert_eq!(found.scope, KillSwitchScope::Agent);
        assert!(found
            .refusal()
            .starts_with("kill_switch: this agent is stopped"));
        assert!(first_covering(&switches, "a2", "http", now).is_none());
    }

    #[test]
    fn targets_are_parsed_per_scope() {
        use KillSwitchScope::*;
        assert_eq!(parse_target(Org, None, "o").unwrap(), (None, None));
        assert_eq!(parse_target(Org, Some("o"), "o").unwrap(), (None, None));
        assert!(parse_target(Org, Some("other"), "o").is_err());
        assert_eq!(
            parse_target(Agent, Some(" a1 "), "o").unwrap(),
            (Some("a1".into()), None)
        );
        assert!(parse_target(Agent, Some(""), "o").is_err());
        assert!(parse_target(Tool, None, "o").is_err());
        assert!(parse_target(Tool, Some("a\u{7}b"), "o").is_err());
        assert!(parse_target(Tool, Some(&"t".repeat(MAX_TOOL_LEN + 1)), "o").is_err());
        assert_eq!(
            parse_target(AgentTool, Some("a1:mcp:files.read"), "o").unwrap(),
            (Some("a1".into()), Some("mcp:files.read".into()))
        );
        for bad in ["a1", "a1:", ":http", ""] {
            assert!(parse_target(AgentTool, Some(bad), "o").is_err(), "{bad:?}");
        }
        for scope in KillSwitchScope::ALL {
            assert_eq!(KillSwitchScope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(KillSwitchScope::parse("global"), None);
    }
}
