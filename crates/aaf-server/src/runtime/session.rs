//! `input.session`: what came before an action in the same session, so that a policy can
//! decide on sequences ("no POST to a new host after a read of customer records", "the
//! third payment in ten minutes needs a human"). Issue 17, section 3; docs/policies.md.
//!
//! The session of an action is `context.session_id` (a string the agent gives), else the MCP
//! session of a call through the gateway (`context.mcp.session_id`). An action with neither
//! sees the agent's actions of the last `runtime.session.agent_window_seconds` instead.
//!
//! `input.session` is an array, newest first, of at most `runtime.session.max_actions`
//! entries none older than `runtime.session.max_age_seconds`:
//!
//! ```json
//! {"action_id": "…", "tool": "http_proxy", "operation": "GET", "decision": "allow",
//!  "status": "executed", "host": "crm.example.com", "detections": ["email"],
//!  "time": "2026-12-05T07:40:00.123456Z"}
//! ```
//!
//! `host` is the host of `params.url` when the action has one (the HTTP connector's
//! destination), else `null`; `detections` are the detectors that matched the action's
//! params or context (see docs/detection.md).
//!
//! It is read from a per-node cache of each agent's latest actions
//! (`runtime.session.scan_actions` of them), which this node updates at once with the
//! actions it records and reads again from the store when it is older than
//! `runtime.session.cache_ms`: actions recorded by other nodes are seen within that time.
//! A status is the one the action had when it was recorded on this node or read from the
//! store. It is built only for policy sets that refer to `session`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aaf_store::ActionRecord;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// `[runtime.session]`: how much of a session policies see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// The most entries in `input.session`, 1 to 200. Default 20.
    pub max_actions: usize,
    /// The oldest action `input.session` shows, in seconds, 1 to 86400. Default 3600.
    pub max_age_seconds: u64,
    /// For an action without a session: how far back its agent's actions are shown, in
    /// seconds, 1 to 86400 (at most `max_age_seconds` is used). Default 600.
    pub agent_window_seconds: u64,
    /// How many of an agent's latest actions are read (and cached) to find a session's,
    /// `max_actions` to 5000. Default 200.
    pub scan_actions: usize,
    /// How old, in milliseconds, a node's cached copy of an agent's actions may be before
    /// it is read again from the store, 0 to 10000 (0: at every action). Default 250.
    pub cache_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_actions: 20,
            max_age_seconds: 3600,
            agent_window_seconds: 600,
            scan_actions: 200,
            cache_ms: 250,
        }
    }
}

impl SessionConfig {
    /// Checks the section.
    ///
    /// # Errors
    ///
    /// `(key, message)` for the first key out of range.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=200).contains(&self.max_actions) {
            return Err(("max_actions", "must be from 1 to 200".into()));
        }
        if !(1..=86_400).contains(&self.max_age_seconds) {
            return Err(("max_age_seconds", "must be from 1 to 86400".into()));
        }
        if !(1..=86_400).contains(&self.agent_window_seconds) {
            return Err(("agent_window_seconds", "must be from 1 to 86400".into()));
        }
        if !(self.max_actions..=5000).contains(&self.scan_actions) {
            return Err((
                "scan_actions",
                format!("must be from max_actions ({}) to 5000", self.max_actions),
            ));
        }
        if self.cache_ms > 10_000 {
            return Err(("cache_ms", "must be at most 10000".into()));
        }
        Ok(())
    }
}

/// One earlier action as `input.session` shows it, with the session it belongs to.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    session: Option<String>,
    /// RFC 3339 UTC, as stored (sorts as time).
    time: String,
    view: Value,
}

/// The session an action belongs to: `context.session_id`, else `context.mcp.session_id`.
pub fn session_of(context: &Map<String, Value>) -> Option<String> {
    context
        .get("session_id")
        .and_then(Value::as_str)
        .or_else(|| {
            context
                .get("mcp")
                .and_then(|m| m.get("session_id"))
                .and_then(Value::as_str)
        })
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The detectors named in an action's signals (`{"detections": [{detector, ...}]}`).
fn detectors_of(signals: Option<&Value>) -> Value {
    let mut names: Vec<&str> = signals
        .and_then(|s| s.get("detections"))
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(|x| x.get("detector").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    names.sort_unstable();
    names.dedup();
    json!(names)
}

impl Entry {
    fn of(record: &ActionRecord) -> Entry {
        let context = record.context.as_object().cloned().unwrap_or_default();
        Entry {
            session: session_of(&context),
            time: record.created_at.clone(),
            view: json!({
                "action_id": record.id,
                "tool": record.tool,
                "operation": record.operation,
                "decision": record.decision,
                "status": record.status.as_str(),
                "host": record
                    .params
                    .as_object()
                    .and_then(super::risk::host_of)
                    .map_or(Value::Null, Value::String),
                "detections": detectors_of(record.signals.as_ref()),
                "time": record.created_at,
            }),
        }
    }
}

/// An agent's latest actions, newest first, and when they were read from the store.
struct Cached {
    read_at: Instant,
    entries: Vec<Entry>,
}

/// An action about to be recorded, for its agent's cached actions
/// ([`SessionHistory::prepare`]).
pub struct Recording {
    cached: Arc<std::sync::Mutex<Cached>>,
    entry: Entry,
}

/// Each agent's latest actions on this node (see the module's documentation).
pub struct SessionHistory {
    config: SessionConfig,
    /// Whether any policy asked for `input.session` on this node yet: until then no agent's
    /// actions are cached, and recording an action has nothing to update.
    used: std::sync::atomic::AtomicBool,
    cache: quick_cache::sync::Cache<(String, String), Arc<std::sync::Mutex<Cached>>>,
}

impl std::fmt::Debug for SessionHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHistory")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The number of agents whose actions a node keeps.
const CACHED_AGENTS: usize = 10_000;

impl SessionHistory {
    /// An empty history.
    pub fn new(config: SessionConfig) -> SessionHistory {
        SessionHistory {
            config,
            used: std::sync::atomic::AtomicBool::new(false),
            cache: quick_cache::sync::Cache::new(CACHED_AGENTS),
        }
    }

    /// What [`SessionHistory::recorded`] will add for an action about to be recorded: `None`
    /// (nothing to do) unless its agent's actions are cached on this node.
    pub fn prepare(&self, record: &ActionRecord) -> Option<Recording> {
        if !self.used.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let key = (record.org_id.clone(), record.agent_id.clone());
        let cached = self.cache.get(&key)?;
        Some(Recording {
            cached,
            entry: Entry::of(record),
        })
    }

    /// Adds an action this node just recorded to its agent's cached actions, so that the
    /// agent's next action sees it at once.
    pub fn recorded(&self, recording: Recording) {
        let Recording { cached, entry } = recording;
        let mut cached = cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached
            .entries
            .iter()
            .any(|e| e.view["action_id"] == entry.view["action_id"])
        {
            return;
        }
        cached.entries.insert(0, entry);
        cached.entries.truncate(self.config.scan_actions);
    }

    /// `input.session` for an action of `agent_id` in `session` (`None`: the agent's window)
    /// submitted at `now`.
    ///
    /// # Errors
    ///
    /// What could not be read from the store, as text (the caller denies).
    pub async fn input_view(
        &self,
        store: &aaf_store::Store,
        org_id: &str,
        agent_id: &str,
        session: Option<&str>,
        now: time::OffsetDateTime,
    ) -> Result<Value, String> {
        let max_age = Duration::from_secs(self.config.max_age_seconds);
        let window = match session {
            Some(_) => max_age,
            None => Duration::from_secs(self.config.agent_window_seconds).min(max_age),
        };
        let since = crate::time::format_rfc3339(now - window);
        self.used.store(true, std::sync::atomic::Ordering::Relaxed);
        let key = (org_id.to_string(), agent_id.to_string());
        let fresh = Duration::from_millis(self.config.cache_ms);
        let cached = self.cache.get(&key).filter(|c| {
            c.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .read_at
                .elapsed()
                < fresh
        });
        let cached = match cached {
            Some(c) => c,
            None => {
                let oldest = crate::time::format_rfc3339(now - max_age);
                let limit = u32::try_from(self.config.scan_actions).unwrap_or(u32::MAX);
                let records = store
                    .agent_actions_since(org_id, agent_id, &oldest, limit)
                    .await
                    .map_err(|e| {
                        format!("input.session: the agent's actions could not be read: {e}")
                    })?;
                let fresh = Arc::new(std::sync::Mutex::new(Cached {
                    read_at: Instant::now(),
                    entries: records.iter().map(Entry::of).collect(),
                }));
                self.cache.insert(key, Arc::clone(&fresh));
                fresh
            }
        };
        let cached = cached
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entries: Vec<Value> = cached
            .entries
            .iter()
            .filter(|e| e.time >= since)
            .filter(|e| session.is_none_or(|s| e.session.as_deref() == Some(s)))
            .take(self.config.max_actions)
            .map(|e| e.view.clone())
            .collect();
        Ok(Value::Array(entries))
    }
}
