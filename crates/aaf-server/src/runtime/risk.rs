//! Behavioural risk scores (issue 17, section 4; docs/detection.md, "Risk scores"): each
//! agent's [`Profile`] learned from its own recorded actions, stored so that it survives
//! restarts and every node shares it, and the score of each action against it.
//!
//! **Learning.** A profile is folded from the agent's actions in the order they were
//! recorded, `(created_at, id)`, and stored with the last action folded (the watermark).
//! Only actions older than `detection.risk.fold_delay_seconds` are folded, so that an action
//! another node stamped a moment earlier but committed later is not skipped. A node refreshes
//! its copy when it is older than `detection.risk.cache_ms`: one request of the agent does it
//! (the others are scored against the copy they find meanwhile, never waiting); it reads the stored profile, folds at most
//! `detection.risk.fold_batch` newer actions (an agent faster than that is learned with a
//! delay, caught up as it slows down) and writes the result back with a compare-and-set on the
//! watermark (when another node folded first, its profile wins and this node reads it next
//! time). The write is not on the action's path.
//!
//! **Scoring.** The action being decided is scored against the profile with what the agent
//! did in the last 5 minutes (its latest actions in the store, at most
//! `detection.risk.recent_actions` of them, plus those this node recorded since: the last
//! minute's count and the latest 20 decisions) and what the detectors found in it.
//! Dry runs are scored but neither counted nor learned from (they are not recorded).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use aaf_core::action::ActionRequest;
use aaf_core::detect::Kind;
use aaf_core::risk::{Hit, Learning, Observation, Profile, Recent, Risk};
use aaf_store::{ActionRecord, AgentProfileRecord, Mutation, Store, WriteUnit};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// How many of an agent's latest actions `denials_above_usual` looks at.
const RECENT_DECIDED: usize = 20;

/// The number of agents whose profiles a node keeps.
const CACHED_AGENTS: usize = 10_000;

/// `[detection.risk]`: behavioural risk scores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Whether every action is scored (recorded in `action.decided`, the action's view and the
    /// `high_risk_submission` alert). A policy set that refers to `input.risk` has its actions
    /// scored even when this is off. Default false: scoring every action costs about 10% more
    /// instructions per decision and a periodic read per active agent (docs/performance.md).
    pub enabled: bool,
    /// Actions a profile must have learned from before its baseline factors count,
    /// 1 to 1,000,000. Default 100.
    pub learning_actions: u64,
    /// Seconds between the first and the latest action learned from before the baseline
    /// factors count, 0 to 2,592,000 (30 days). Default 86400 (a day).
    pub learning_seconds: u64,
    /// How old, in milliseconds, a node's copy of a profile may be before it is read and
    /// folded again, 0 to 60000. Default 1000.
    pub cache_ms: u64,
    /// The most actions folded into a profile per refresh, 10 to 10000. Default 1000.
    pub fold_batch: u32,
    /// How old, in seconds, an action must be before it is learned from, 0 to 3600: longer
    /// than any write takes to commit, so that an action another node stamped earlier but
    /// committed later is not skipped. Default 120.
    pub fold_delay_seconds: u64,
    /// The most of an agent's actions of the last minute read for `rate_above_usual`
    /// (a burst is seen as at least this many), 20 to 10000. Default 1000.
    pub recent_actions: u32,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            enabled: false,
            learning_actions: 100,
            learning_seconds: 86_400,
            cache_ms: 1000,
            fold_batch: 1000,
            fold_delay_seconds: 120,
            recent_actions: 1000,
        }
    }
}

impl RiskConfig {
    /// Checks the section.
    ///
    /// # Errors
    ///
    /// `(key, message)` for the first key out of range.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=1_000_000).contains(&self.learning_actions) {
            return Err(("learning_actions", "must be from 1 to 1000000".into()));
        }
        if self.learning_seconds > 2_592_000 {
            return Err(("learning_seconds", "must be at most 2592000".into()));
        }
        if self.cache_ms > 60_000 {
            return Err(("cache_ms", "must be at most 60000".into()));
        }
        if !(10..=10_000).contains(&self.fold_batch) {
            return Err(("fold_batch", "must be from 10 to 10000".into()));
        }
        if self.fold_delay_seconds > 3600 {
            return Err(("fold_delay_seconds", "must be at most 3600".into()));
        }
        if !(20..=10_000).contains(&self.recent_actions) {
            return Err(("recent_actions", "must be from 20 to 10000".into()));
        }
        Ok(())
    }

    fn learning(&self) -> Learning {
        Learning {
            actions: self.learning_actions,
            seconds: self.learning_seconds,
        }
    }
}

/// One recent action of an agent: `(id, Unix seconds, denied)`.
type RecentAction = (String, i64, bool);

/// An action just recorded, as [`RiskProfiles::recorded`] counts it.
#[derive(Debug, Clone)]
pub struct RecordedAction {
    org_id: String,
    agent_id: String,
    id: String,
    at: Option<i64>,
    denied: bool,
}

impl RecordedAction {
    /// What counts of `record`.
    fn of(record: &ActionRecord) -> RecordedAction {
        RecordedAction {
            org_id: record.org_id.clone(),
            agent_id: record.agent_id.clone(),
            id: record.id.clone(),
            at: unix_seconds(&record.created_at),
            denied: record.decision == "deny",
        }
    }
}

/// A node's copy of one agent's profile, as read at `read_at`.
struct Snapshot {
    read_at: Instant,
    profile: Profile,
}

/// One agent's state on this node. The profile is an immutable snapshot that every request
/// reads without waiting; when it is stale, one request refreshes it (the others go on with
/// the stale one meanwhile), so requests of one agent are never serialised on a refresh.
#[derive(Default)]
struct Entry {
    snapshot: std::sync::RwLock<Option<Arc<Snapshot>>>,
    refreshing: std::sync::atomic::AtomicBool,
    /// The agent's actions of the last 5 minutes, oldest first (read at the last refresh,
    /// then those this node recorded).
    recent: std::sync::Mutex<Vec<RecentAction>>,
}

/// Clears [`Entry::refreshing`] when the refresh ends, however it ends (a request dropped
/// mid-refresh included).
struct Refreshing<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Each agent's profile on this node (see the module's documentation).
pub struct RiskProfiles {
    config: RiskConfig,
    /// Whether any action was scored on this node yet: until then no profile is cached and
    /// recording an action has nothing to add.
    used: std::sync::atomic::AtomicBool,
    cache: quick_cache::sync::Cache<(String, String), Arc<Entry>>,
}

impl std::fmt::Debug for RiskProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiskProfiles")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The destination host of an action: the host of `params.url`, lower case, if it has one.
pub fn host_of(params: &serde_json::Map<String, Value>) -> Option<String> {
    params
        .get("url")
        .and_then(Value::as_str)
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
}

fn unix_seconds(rfc3339: &str) -> Option<i64> {
    OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

fn params_bytes(params: &Value) -> u64 {
    serde_json::to_vec(params).map_or(0, |v| v.len() as u64)
}

/// What the detectors found, as the score uses it (`input.detections`' entries; the scan
/// limit marker is not a finding).
pub fn hits_of(detections: &Value) -> Vec<Hit> {
    detections
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|d| {
                    let kind = match d.get("kind").and_then(Value::as_str)? {
                        "pii" => Kind::Pii,
                        "secret" => Kind::Secret,
                        "prompt_injection" => Kind::PromptInjection,
                        "tool_argument" => Kind::ToolArgument,
                        _ => return None,
                    };
                    let confidence = d.get("confidence").and_then(Value::as_f64)?;
                    Some(Hit { kind, confidence })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn observation_of<'a>(record: &'a ActionRecord, host: Option<&'a str>) -> Option<Observation<'a>> {
    Some(Observation {
        tool: &record.tool,
        operation: &record.operation,
        host,
        at: unix_seconds(&record.created_at)?,
        params_bytes: params_bytes(&record.params),
        denied: record.decision == "deny",
    })
}

impl RiskProfiles {
    /// No profile read yet.
    pub fn new(config: RiskConfig) -> RiskProfiles {
        RiskProfiles {
            config,
            used: std::sync::atomic::AtomicBool::new(false),
            cache: quick_cache::sync::Cache::new(CACHED_AGENTS),
        }
    }

    /// Whether every action is scored (`detection.risk.enabled`).
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// The risk of `request`, submitted by `agent_id` of `org_id` at `now`, with `hits` the
    /// detectors' findings in it.
    ///
    /// # Errors
    ///
    /// What could not be read from the store, as text (the caller denies when a policy asked
    /// for `input.risk`).
    pub async fn assess(
        &self,
        store: &Store,
        writer: &aaf_store::AuditWriter,
        (org_id, agent_id): (&str, &str),
        request: &ActionRequest,
        hits: &[Hit],
        now: OffsetDateTime,
    ) -> Result<Risk, String> {
        self.used.store(true, Ordering::Relaxed);
        let key = (org_id.to_string(), agent_id.to_string());
        let entry = self
            .cache
            .get_or_insert_with(&key, || {
                Ok::<_, std::convert::Infallible>(Arc::new(Entry::default()))
            })
            .unwrap_or_else(|never| match never {});
        let current = entry
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let fresh = Duration::from_millis(self.config.cache_ms);
        let stale = current
            .as_ref()
            .is_none_or(|s| s.read_at.elapsed() >= fresh);
        let claimed = stale
            && entry
                .refreshing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        let snapshot = match current {
            // Another request refreshes it: this one goes on with the copy it has.
            Some(current) if !claimed => current,
            _ => {
                let _guard = claimed.then(|| Refreshing(&entry.refreshing));
                let (snapshot, read) = self.refresh(store, writer, org_id, agent_id, now).await?;
                let snapshot = Arc::new(snapshot);
                *entry
                    .snapshot
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&snapshot));
                let mut recent = entry.recent.lock().unwrap_or_else(PoisonError::into_inner);
                // Keep what this node recorded while the store was read.
                let known: std::collections::HashSet<String> =
                    read.iter().map(|(id, _, _)| id.clone()).collect();
                let mut merged = read;
                merged.extend(recent.drain(..).filter(|(id, _, _)| !known.contains(id)));
                merged.sort_by_key(|(_, at, _)| *at);
                *recent = merged;
                snapshot
            }
        };
        let at = now.unix_timestamp();
        let recent = {
            let mut recent = entry.recent.lock().unwrap_or_else(PoisonError::into_inner);
            // Oldest first (appended in time order, sorted at each merge): cut by time with a
            // binary search, and keep at most `recent_actions`.
            let cap = self.config.recent_actions as usize;
            let old = recent
                .partition_point(|(_, t, _)| *t <= at - 300)
                .max(recent.len().saturating_sub(cap));
            recent.drain(..old);
            let latest = &recent[recent.len().saturating_sub(RECENT_DECIDED)..];
            Recent {
                last_minute: (recent.len() - recent.partition_point(|(_, t, _)| *t <= at - 60))
                    as u64,
                decided: latest.len() as u64,
                denied: latest.iter().filter(|(_, _, d)| *d).count() as u64,
            }
        };
        let host = host_of(&request.params);
        let observation = Observation {
            tool: &request.tool,
            operation: &request.operation,
            host: host.as_deref(),
            at,
            params_bytes: serde_json::to_vec(&request.params).map_or(0, |v| v.len() as u64),
            denied: false,
        };
        Ok(snapshot
            .profile
            .score(&observation, recent, hits, self.config.learning()))
    }

    /// What [`RiskProfiles::recorded`] will count of an action about to be recorded: `None`
    /// (nothing to do, nothing copied) until an action was scored on this node.
    pub fn prepare(&self, record: &ActionRecord) -> Option<RecordedAction> {
        self.used
            .load(Ordering::Relaxed)
            .then(|| RecordedAction::of(record))
    }

    /// Adds an action this node just recorded to its agent's recent actions, so that a burst
    /// is seen before the next refresh.
    pub fn recorded(&self, action: &RecordedAction) {
        let Some(at) = action.at else {
            return;
        };
        let Some(entry) = self
            .cache
            .get(&(action.org_id.clone(), action.agent_id.clone()))
        else {
            return;
        };
        let mut recent = entry.recent.lock().unwrap_or_else(PoisonError::into_inner);
        // Each action is recorded once; a copy also read from the store is dropped when the
        // two lists are merged at the next refresh.
        recent.push((action.id.clone(), at, action.denied));
        // Bounded: at most twice `recent_actions` between two scores, cut back to it.
        let cap = self.config.recent_actions as usize;
        if recent.len() > 2 * cap {
            let excess = recent.len() - cap;
            recent.drain(..excess);
        }
    }

    /// Reads the stored profile, folds the actions recorded since its watermark that are old
    /// enough, writes it back (in the background) and reads the agent's latest actions.
    async fn refresh(
        &self,
        store: &Store,
        writer: &aaf_store::AuditWriter,
        org_id: &str,
        agent_id: &str,
        now: OffsetDateTime,
    ) -> Result<(Snapshot, Vec<RecentAction>), String> {
        let stored = store
            .get_agent_profile(org_id, agent_id)
            .await
            .map_err(|e| format!("input.risk: the agent's profile could not be read: {e}"))?;
        let (mut profile, expected) = match stored {
            Some(record) => {
                let profile = serde_json::from_value::<Profile>(record.profile)
                    .map_err(|e| format!("input.risk: the stored profile is malformed: {e}"))?;
                (profile, record.folded_until)
            }
            None => (Profile::default(), None),
        };
        let mut folded_until = expected.clone();
        let batch = store
            .agent_actions_after(
                org_id,
                agent_id,
                expected.as_ref().map(|(t, i)| (t.as_str(), i.as_str())),
                self.config.fold_batch,
            )
            .await
            .map_err(|e| format!("input.risk: the agent's actions could not be read: {e}"))?;
        let cutoff = now.unix_timestamp()
            - i64::try_from(self.config.fold_delay_seconds).unwrap_or(i64::MAX);
        let mut folded = 0_usize;
        for record in &batch {
            let host = record.params.as_object().and_then(host_of);
            match observation_of(record, host.as_deref()) {
                Some(obs) if obs.at > cutoff => break,
                Some(obs) => profile.observe(&obs),
                // An unreadable time is skipped, not learned from.
                None => {}
            }
            folded_until = Some((record.created_at.clone(), record.id.clone()));
            folded += 1;
        }
        if folded > 0 {
            let profile_json = serde_json::to_value(&profile)
                .map_err(|e| format!("input.risk: the profile could not be serialized: {e}"))?;
            let unit = WriteUnit {
                mutations: vec![Mutation::PutAgentProfile {
                    record: AgentProfileRecord {
                        org_id: org_id.to_string(),
                        agent_id: agent_id.to_string(),
                        profile: profile_json,
                        folded_until,
                        updated_at: crate::time::format_rfc3339(now),
                    },
                    expected,
                }],
                action: None,
                events: Vec::new(),
            };
            let writer = writer.clone();
            let (org, agent) = (org_id.to_string(), agent_id.to_string());
            tokio::spawn(async move {
                if let Err(e) = writer.submit(unit).await {
                    tracing::warn!(org_id = %org, agent_id = %agent, error = %e,
                        "an agent's risk profile could not be stored; it is folded again at the next refresh");
                }
            });
        }
        let since = crate::time::format_rfc3339(now - time::Duration::seconds(300));
        let latest = store
            .agent_actions_since(org_id, agent_id, &since, self.config.recent_actions)
            .await
            .map_err(|e| {
                format!("input.risk: the agent's recent actions could not be read: {e}")
            })?;
        let recent: Vec<RecentAction> = latest
            .iter()
            .rev()
            .filter_map(|r| {
                Some((
                    r.id.clone(),
                    unix_seconds(&r.created_at)?,
                    r.decision == "deny",
                ))
            })
            .collect();
        Ok((
            Snapshot {
                read_at: Instant::now(),
                profile,
            },
            recent,
        ))
    }
}
