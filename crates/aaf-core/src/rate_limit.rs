//! Rate limits: which actions a limit counts, under which counter, and the generic cell rate
//! algorithm (GCRA) parameters it stands for. No I/O; the server keeps the counters (on one
//! node in memory with `governor`, on several nodes in PostgreSQL) and refuses what is over.
//!
//! A limit allows `limit` actions per `window` with bursts of up to `burst`: in GCRA terms
//! (ITU-T I.371, as `governor` implements it), an emission interval of `window / limit` and a
//! tolerance of `(burst - 1)` intervals. A limit has the scopes of kill switches; without a
//! target it applies to each agent, tool or agent's tool separately, with one counter each.

use serde::{Deserialize, Serialize};

use crate::kill_switch::KillSwitchScope;

/// Largest `limit` and `burst` a rate limit may have.
pub const MAX_COUNT: u32 = 1_000_000;

/// The window of a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// One second.
    Second,
    /// One minute.
    Minute,
    /// One hour.
    Hour,
}

impl Window {
    /// The name as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
        }
    }

    /// The window of this name, if it is one.
    pub fn parse(name: &str) -> Option<Window> {
        [Window::Second, Window::Minute, Window::Hour]
            .into_iter()
            .find(|w| w.as_str() == name)
    }

    /// Its length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3600,
        }
    }
}

/// What a rate limit does with an action over it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// Refuse it before evaluation (a recorded deny, HTTP 429): the default.
    #[default]
    Enforce,
    /// Count it, refuse nothing, and tell the policies: `input.usage.rate_limit_exceeded`
    /// and the built-in `rate_limit_exceeded(agent_id)` are true for an action over it, and
    /// the policies decide (deny, or ask for approval).
    Policy,
}

impl LimitMode {
    /// The name as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitMode::Enforce => "enforce",
            LimitMode::Policy => "policy",
        }
    }

    /// The mode of this name, if it is one.
    pub fn parse(name: &str) -> Option<LimitMode> {
        [LimitMode::Enforce, LimitMode::Policy]
            .into_iter()
            .find(|m| m.as_str() == name)
    }
}

/// A rate limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// UUIDv7 string (or `config:<n>` for the configuration's defaults).
    pub id: String,
    /// The organisation it belongs to (empty for the configuration's defaults, which apply
    /// to every organisation).
    pub org_id: String,
    /// What it counts.
    pub scope: KillSwitchScope,
    /// For `agent` and `agent_tool`: only this agent (`None`: each agent separately).
    pub agent_id: Option<String>,
    /// For `tool` and `agent_tool`: only this tool (`None`: each tool separately).
    pub tool: Option<String>,
    /// Actions allowed per window, 1 to [`MAX_COUNT`].
    pub limit: u32,
    /// The window.
    pub window: Window,
    /// Most actions at once after a quiet period, 1 to [`MAX_COUNT`].
    pub burst: u32,
    /// Whether it refuses actions over it or leaves them to the policies.
    #[serde(default)]
    pub mode: LimitMode,
}

impl RateLimit {
    /// Whether it counts an action of `agent_id` on `tool`.
    pub fn applies(&self, agent_id: &str, tool: &str) -> bool {
        let agent = self.agent_id.as_deref().is_none_or(|a| a == agent_id);
        let same_tool = self.tool.as_deref().is_none_or(|t| t == tool);
        match self.scope {
            KillSwitchScope::Org => true,
            KillSwitchScope::Agent => agent,
            KillSwitchScope::Tool => same_tool,
            KillSwitchScope::AgentTool => agent && same_tool,
        }
    }

    /// The counter an action of `agent_id` on `tool` is counted under: the limit's id, and
    /// the agent and/or tool for a limit that applies to each separately.
    pub fn counter(&self, agent_id: &str, tool: &str) -> String {
        match self.scope {
            KillSwitchScope::Org => self.id.clone(),
            KillSwitchScope::Agent => format!("{}|a={agent_id}", self.id),
            KillSwitchScope::Tool => format!("{}|t={tool}", self.id),
            KillSwitchScope::AgentTool => format!("{}|a={agent_id}|t={tool}", self.id),
        }
    }

    /// The GCRA emission interval (`window / limit`), in microseconds, at least 1.
    pub fn emission_interval_us(&self) -> u64 {
        (self.window.seconds() * 1_000_000 / u64::from(self.limit.max(1))).max(1)
    }

    /// The GCRA tolerance (`(burst - 1)` emission intervals), in microseconds.
    pub fn tolerance_us(&self) -> u64 {
        self.emission_interval_us()
            .saturating_mul(u64::from(self.burst.max(1) - 1))
    }

    /// The reason of a refusal by this limit; it starts with `rate_limit:`.
    pub fn refusal(&self, retry_after_ms: u64) -> String {
        let what = match (self.scope, &self.agent_id, &self.tool) {
            (KillSwitchScope::Org, _, _) => "the organisation".to_string(),
            (KillSwitchScope::Agent, _, _) => "this agent".to_string(),
            (KillSwitchScope::Tool, _, Some(t)) => format!("the tool {t:?}"),
            (KillSwitchScope::Tool, _, None) => "this tool".to_string(),
            (KillSwitchScope::AgentTool, _, Some(t)) => format!("this agent's use of {t:?}"),
            (KillSwitchScope::AgentTool, _, None) => "this agent's use of this tool".to_string(),
        };
        format!(
            "rate_limit: {what} is over its limit of {} actions per {} (burst {}, limit {}); retry after {} ms",
            self.limit,
            self.window.as_str(),
            self.burst,
            self.id,
            retry_after_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(scope: KillSwitchScope, agent: Option<&str>, tool: Option<&str>) -> RateLimit {
        RateLimit {
            id: "rl".into(),
            org_id: "o".into(),
            scope,
            agent_id: agent.map(str::to_string),
            tool: tool.map(str::to_string),
            limit: 10,
            window: Window::Minute,
            burst: 3,
            mode: LimitMode::Enforce,
        }
    }

    #[test]
    fn limits_without_a_target_count_each_separately() {
        let each_agent = limit(KillSwitchScope::Agent, None, None);
        assert!(each_agent.applies("a1", "x") && each_agent.applies("a2", "y"));
        assert_ne!(each_agent.counter("a1", "x"), each_agent.counter("a2", "x"));
        assert_eq!(each_agent.counter("a1", "x"), each_agent.counter("a1", "y"));
        let one_agent = limit(KillSwitchScope::Agent, Some("a1"), None);
        assert!(one_agent.applies("a1", "x") && !one_agent.applies("a2", "x"));
        let each_tool = limit(KillSwitchScope::Tool, None, None);
        assert_ne!(each_tool.counter("a1", "x"), each_tool.counter("a1", "y"));
        assert_eq!(each_tool.counter("a1", "x"), each_tool.counter("a2", "x"));
        let pair = limit(KillSwitchScope::AgentTool, Some("a1"), Some("http"));
        assert!(
            pair.applies("a1", "http") && !pair.applies("a1", "db") && !pair.applies("a2", "http")
        );
        let org = limit(KillSwitchScope::Org, None, None);
        assert_eq!(org.counter("a1", "x"), org.counter("a2", "y"));
        assert!(org
            .refusal(1500)
            .starts_with("rate_limit: the organisation is over"));
    }

    #[test]
    fn the_gcra_parameters_follow_the_limit() {
        // 10 per minute, burst 3: interval 6 s, tolerance 12 s.
        let l = limit(KillSwitchScope::Org, None, None);
        assert_eq!(
            (l.emission_interval_us(), l.tolerance_us()),
            (6_000_000, 12_000_000)
        );
        let mut one = l.clone();
        one.burst = 1;
        assert_eq!(one.tolerance_us(), 0, "a burst of one tolerates nothing");
        one.limit = MAX_COUNT;
        one.window = Window::Second;
        assert_eq!(one.emission_interval_us(), 1, "at least a microsecond");
    }
}
