//! The kill switches in force on this node, and the connector calls they can abort.
//!
//! Every node keeps a copy of every organisation's unreleased kill switches
//! ([`RuntimeRules`]), so that the pipeline's guard decides without a database read. The copy
//! is kept current three ways:
//!
//! - a change through this node installs the organisation's switches before it is answered;
//! - a change through another node arrives by PostgreSQL `NOTIFY` (`aaf_runtime_changes`)
//!   and is installed at once ([`refresher`]);
//! - every `runtime.kill_switch_poll_ms` the refresher reads every organisation's
//!   kill-switch generation (one query) and reloads the organisations whose generation
//!   moved. A successful poll *confirms* the copy.
//!
//! A node whose copy has not been confirmed for `runtime.kill_switch_max_staleness_ms`
//! refuses every action ([`Refusal::Unconfirmed`]): it cannot tell which agents are
//! stopped, so it fails closed.
//!
//! Installing switches aborts the connector calls in flight that they stop: each call
//! registers itself ([`RuntimeRules::begin`]) with a cancellation token, under the same lock
//! order as installation, so a call either sees the switch before it starts or is
//! cancelled by its installation.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aaf_core::budget::Budget;
use aaf_core::kill_switch::{first_covering, KillSwitch};
use aaf_core::rate_limit::RateLimit;
use aaf_store::Store;

use super::breaker::CircuitBreakers;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

/// Most unreleased kill switches an organisation may have (the API refuses more with 409).
pub const MAX_LIVE_PER_ORG: u32 = 1000;

/// Why the guard refuses an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A kill switch in force stops it.
    Stopped {
        /// The switch.
        kill_switch_id: String,
        /// The reason to record and answer, starting with `kill_switch:`.
        reason: String,
    },
    /// This node cannot confirm it knows the current kill switches.
    Unconfirmed {
        /// The reason to record and answer, starting with `kill_switch:`.
        reason: String,
    },
}

impl Refusal {
    /// The reason, starting with `kill_switch:`.
    pub fn reason(&self) -> &str {
        match self {
            Refusal::Stopped { reason, .. } | Refusal::Unconfirmed { reason } => reason,
        }
    }

    /// The switch, when one stopped the action.
    pub fn kill_switch_id(&self) -> Option<&str> {
        match self {
            Refusal::Stopped { kill_switch_id, .. } => Some(kill_switch_id),
            Refusal::Unconfirmed { .. } => None,
        }
    }
}

/// One organisation's unreleased switches and live rate limits, and the generation they were
/// read at.
#[derive(Debug, Clone)]
struct OrgSwitches {
    generation: i64,
    switches: Arc<[KillSwitch]>,
    limits: Arc<[RateLimit]>,
    budgets: Arc<[Budget]>,
    breakers: Option<Arc<CircuitBreakers>>,
}

/// What an organisation has set besides its kill switches, installed together with them.
#[derive(Debug, Clone, Default)]
pub struct OrgRules {
    /// Its live rate limits.
    pub limits: Vec<RateLimit>,
    /// Its live budgets.
    pub budgets: Vec<Budget>,
    /// Its own circuit breakers (`None`: the configuration's).
    pub breakers: Option<CircuitBreakers>,
}

/// A connector call in flight.
struct Call {
    org_id: String,
    agent_id: String,
    tool: String,
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

/// The kill switches and rate limits in force on this node, the calls in flight and the
/// node's rate-limit counters (see the module docs).
pub struct RuntimeRules {
    /// The configuration's rate limits (`runtime.rate_limits`), which apply to every
    /// organisation (each counted separately).
    pub default_limits: Vec<RateLimit>,
    /// The in-memory rate-limit counters (SQLite's single node).
    pub counters: super::rate_limit::LocalCounters,
    orgs: RwLock<HashMap<String, OrgSwitches>>,
    calls: Mutex<HashMap<u64, Call>>,
    next_call: AtomicU64,
    /// Milliseconds since `epoch` of the last confirmation; 0 = never.
    confirmed_ms: AtomicU64,
    epoch: Instant,
    max_staleness: Duration,
    /// Organisations announced changed (PostgreSQL `NOTIFY`), for the refresher.
    announced: Mutex<Announced>,
    wake: Notify,
}

#[derive(Default)]
struct Announced {
    orgs: HashSet<String>,
    all: bool,
}

impl std::fmt::Debug for RuntimeRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeRules")
            .field("max_staleness", &self.max_staleness)
            .finish_non_exhaustive()
    }
}

/// A connector call registered with [`RuntimeRules::begin`]; dropping it unregisters it.
pub struct InFlight<'a> {
    switches: &'a RuntimeRules,
    id: u64,
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl InFlight<'_> {
    /// Cancelled when a kill switch that stops this call is installed.
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// Why the call was aborted (a `kill_switch:` reason), once it was.
    pub fn abort_reason(&self) -> Option<String> {
        lock(&self.reason).clone()
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.switches.calls).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RuntimeRules {
    /// An empty, unconfirmed copy: every action is refused until the first successful
    /// [`RuntimeRules::refresh_all`].
    pub fn new(max_staleness: Duration) -> RuntimeRules {
        RuntimeRules {
            default_limits: Vec::new(),
            counters: super::rate_limit::LocalCounters::default(),
            orgs: RwLock::new(HashMap::new()),
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            confirmed_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            max_staleness,
            announced: Mutex::new(Announced::default()),
            wake: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn confirm(&self) {
        self.confirmed_ms.store(self.now_ms(), Ordering::Release);
    }

    /// The guard: `Ok` when no kill switch in force stops an action of `agent_id` on `tool`
    /// in `org_id` and this node's copy is confirmed; `now` gives the time (RFC 3339 UTC)
    /// for the switches' expiry, asked only when the organisation has switches.
    ///
    /// # Errors
    ///
    /// [`Refusal`] with a `kill_switch:` reason.
    pub fn check(
        &self,
        org_id: &str,
        agent_id: &str,
        tool: &str,
        now: impl FnOnce() -> String,
    ) -> Result<(), Refusal> {
        self.check_unconfirmed()?;
        let orgs = self
            .orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match orgs.get(org_id) {
            Some(o) if !o.switches.is_empty() => stopped_by(&o.switches, agent_id, tool, &now()),
            _ => Ok(()),
        }
    }

    fn check_unconfirmed(&self) -> Result<(), Refusal> {
        let confirmed = self.confirmed_ms.load(Ordering::Acquire);
        if confirmed == 0 {
            return Err(Refusal::Unconfirmed {
                reason: "kill_switch: this node has not yet read the kill switches in force, so it refuses every action".into(),
            });
        }
        let age = self.now_ms().saturating_sub(confirmed);
        if u128::from(age) > self.max_staleness.as_millis() {
            return Err(Refusal::Unconfirmed {
                reason: format!(
                    "kill_switch: this node could not confirm the kill switches in force for {age} ms (runtime.kill_switch_max_staleness_ms is {}; the database is unreachable), so it refuses every action",
                    self.max_staleness.as_millis()
                ),
            });
        }
        Ok(())
    }

    /// Registers a connector call of `agent_id` on `tool` in `org_id` that is about to run:
    /// installing a switch that stops it cancels it ([`InFlight::cancelled`]).
    ///
    /// # Errors
    ///
    /// [`Refusal`] when a switch in force already stops it (or the copy is unconfirmed):
    /// the call must not start.
    pub fn begin(
        &self,
        org_id: &str,
        agent_id: &str,
        tool: &str,
        now: &str,
    ) -> Result<InFlight<'_>, Refusal> {
        self.check_unconfirmed()?;
        // Lock order: orgs, then calls (as in `install`), so an installation either ran
        // before this check or sees this call.
        let orgs = self
            .orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(o) = orgs.get(org_id) {
            stopped_by(&o.switches, agent_id, tool, now)?;
        }
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let reason = Arc::new(Mutex::new(None));
        lock(&self.calls).insert(
            id,
            Call {
                org_id: org_id.to_string(),
                agent_id: agent_id.to_string(),
                tool: tool.to_string(),
                token: token.clone(),
                reason: Arc::clone(&reason),
            },
        );
        drop(orgs);
        Ok(InFlight {
            switches: self,
            id,
            token,
            reason,
        })
    }

    /// Installs `switches` (the unreleased ones) and `rules` (live rate limits, budgets,
    /// circuit breakers) as the organisation's, read at `generation`, unless a newer
    /// generation is installed already; cancels the calls in flight that the switches stop.
    /// Returns how many calls it aborted.
    pub fn install(
        &self,
        org_id: &str,
        generation: i64,
        switches: Vec<KillSwitch>,
        rules: OrgRules,
        now: &str,
    ) -> usize {
        let mut orgs = self
            .orgs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if orgs.get(org_id).is_some_and(|o| o.generation > generation) {
            return 0;
        }
        let switches: Arc<[KillSwitch]> = switches.into();
        orgs.insert(
            org_id.to_string(),
            OrgSwitches {
                generation,
                switches: Arc::clone(&switches),
                limits: rules.limits.into(),
                budgets: rules.budgets.into(),
                breakers: rules.breakers.map(Arc::new),
            },
        );
        let mut aborted = 0;
        for call in lock(&self.calls).values() {
            if call.org_id != org_id || call.token.is_cancelled() {
                continue;
            }
            if let Some(s) = first_covering(&switches, &call.agent_id, &call.tool, now) {
                *lock(&call.reason) = Some(s.refusal());
                call.token.cancel();
                aborted += 1;
            }
        }
        let installed = orgs.values().map(|o| o.switches.len()).sum();
        drop(orgs);
        crate::metrics::kill_switches_active(installed);
        if aborted > 0 {
            tracing::warn!(%org_id, aborted, "kill switch: connector calls in flight aborted");
        }
        aborted
    }

    /// The organisation's live rate limits (not the configuration's defaults).
    pub fn rate_limits(&self, org_id: &str) -> Option<Arc<[RateLimit]>> {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(org_id)
            .filter(|o| !o.limits.is_empty())
            .map(|o| Arc::clone(&o.limits))
    }

    /// The organisation's live budgets that count `agent_id`'s spending, sorted by id (the
    /// order reservations lock them in); empty when none.
    pub fn budgets(&self, org_id: &str, agent_id: &str) -> Vec<Budget> {
        let orgs = self
            .orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(org) = orgs.get(org_id) else {
            return Vec::new();
        };
        let mut budgets: Vec<Budget> = org
            .budgets
            .iter()
            .filter(|b| b.applies(agent_id))
            .cloned()
            .collect();
        budgets.sort_by(|a, b| a.id.cmp(&b.id));
        budgets
    }

    /// Whether the organisation has any live budget.
    pub fn has_budgets(&self, org_id: &str) -> bool {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(org_id)
            .is_some_and(|o| !o.budgets.is_empty())
    }

    /// The organisation's own circuit breakers, if it set them.
    pub fn breakers(&self, org_id: &str) -> Option<Arc<CircuitBreakers>> {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(org_id)
            .and_then(|o| o.breakers.clone())
    }

    /// Whether an unreleased, unexpired kill switch engaged by a circuit breaker stops the
    /// agent already.
    pub fn breaker_engaged(&self, org_id: &str, agent_id: &str, now: &str) -> bool {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(org_id)
            .is_some_and(|o| {
                o.switches.iter().any(|s| {
                    s.source == aaf_core::kill_switch::KillSwitchSource::CircuitBreaker
                        && s.agent_id.as_deref() == Some(agent_id)
                        && s.in_force(now)
                })
            })
    }

    /// The ids of every organisation's live rate limits (for the counters' housekeeping).
    pub fn rate_limit_ids(&self) -> Vec<String> {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .flat_map(|o| o.limits.iter().map(|l| l.id.clone()))
            .collect()
    }

    /// The generation installed for the organisation (0: none).
    pub fn generation(&self, org_id: &str) -> i64 {
        self.orgs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(org_id)
            .map_or(0, |o| o.generation)
    }

    /// Reads the organisation's unreleased switches and live rate limits and installs them.
    ///
    /// # Errors
    ///
    /// The store's error, as text; the copy in force stays.
    pub async fn reload_org(
        &self,
        store: &Store,
        clock: &Clock,
        org_id: &str,
    ) -> Result<(), String> {
        let (generation, switches) = store
            // Every unreleased one: the API's cap can be passed by concurrent engagements,
            // and a switch left out would fail open.
            .kill_switch_state(org_id, true, u32::MAX)
            .await
            .map_err(|e| {
                format!("the kill switches of organisation {org_id} could not be read: {e}")
            })?;
        // Read after the generation: at least as new.
        let limits = store
            .list_rate_limits(org_id)
            .await
            .map_err(|e| {
                format!("the rate limits of organisation {org_id} could not be read: {e}")
            })?
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        let budgets = store
            .list_budgets(org_id)
            .await
            .map_err(|e| format!("the budgets of organisation {org_id} could not be read: {e}"))?;
        let breakers = match store.get_circuit_breakers(org_id).await {
            Ok(None) => None,
            Ok(Some(json)) => Some(serde_json::from_value(json).map_err(|e| {
                format!("the circuit breakers of organisation {org_id} are unreadable: {e}")
            })?),
            Err(e) => {
                return Err(format!(
                    "the circuit breakers of organisation {org_id} could not be read: {e}"
                ))
            }
        };
        let rules = OrgRules {
            limits,
            budgets,
            breakers,
        };
        self.install(org_id, generation, switches, rules, &clock.now_rfc3339());
        Ok(())
    }

    /// Reads every organisation's generation, reloads those that moved (or all, with
    /// `force`), and confirms the copy when all of it succeeded.
    ///
    /// # Errors
    ///
    /// The first error, as text; the copy is not confirmed.
    pub async fn refresh_all(
        &self,
        store: &Store,
        clock: &Clock,
        force: bool,
    ) -> Result<(), String> {
        let generations = store
            .runtime_generations()
            .await
            .map_err(|e| format!("the kill-switch generations could not be read: {e}"))?;
        for (org_id, generation) in generations {
            if force || self.generation(&org_id) != generation {
                self.reload_org(store, clock, &org_id).await?;
            }
        }
        self.confirm();
        Ok(())
    }

    /// Notes a change announced by another node (`None`: changes may have been missed) and
    /// wakes the refresher.
    pub fn announce(&self, org_id: Option<&str>) {
        {
            let mut a = lock(&self.announced);
            match org_id {
                Some(o) => {
                    a.orgs.insert(o.to_string());
                }
                None => a.all = true,
            }
        }
        self.wake.notify_one();
    }
}

fn stopped_by(
    switches: &[KillSwitch],
    agent_id: &str,
    tool: &str,
    now: &str,
) -> Result<(), Refusal> {
    match first_covering(switches, agent_id, tool, now) {
        Some(s) => Err(Refusal::Stopped {
            kill_switch_id: s.id.clone(),
            reason: s.refusal(),
        }),
        None => Ok(()),
    }
}

/// The node's kill-switch refresher: installs announced changes at once and polls every
/// `poll` (see the module docs). Runs until the process ends.
pub async fn refresher(switches: Arc<RuntimeRules>, store: Store, clock: Clock, poll: Duration) {
    let mut next_poll = tokio::time::Instant::now() + poll;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_poll) => {}
            _ = switches.wake.notified() => {}
        }
        let announced = std::mem::take(&mut *lock(&switches.announced));
        if announced.all {
            if let Err(e) = switches.refresh_all(&store, &clock, true).await {
                tracing::warn!(error = %e, "kill switches not refreshed");
            }
        }
        for org_id in &announced.orgs {
            if let Err(e) = switches.reload_org(&store, &clock, org_id).await {
                // Not announced again (that would retry at once, in a loop, while the
                // database is down): the next poll sees the generation still differs and
                // reloads it, and confirms nothing until it has.
                tracing::warn!(error = %e, "kill switches not refreshed");
            }
        }
        if tokio::time::Instant::now() >= next_poll {
            if let Err(e) = switches.refresh_all(&store, &clock, false).await {
                tracing::warn!(error = %e, "kill switches not confirmed");
            }
            next_poll = tokio::time::Instant::now() + poll;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aaf_core::kill_switch::{KillSwitchScope, KillSwitchSource};

    const NOW: &str = "2026-12-04T10:00:00.000000Z";

    fn agent_switch(id: &str, agent: &str) -> KillSwitch {
        KillSwitch {
            id: id.into(),
            org_id: "o".into(),
            scope: KillSwitchScope::Agent,
            agent_id: Some(agent.into()),
            tool: None,
            reason: "runaway".into(),
            source: KillSwitchSource::Manual,
            created_at: NOW.into(),
            created_by: None,
            expires_at: None,
            released_at: None,
            released_by: None,
        }
    }

    #[test]
    fn an_unconfirmed_copy_refuses_everything() {
        let ks = RuntimeRules::new(Duration::from_secs(5));
        let refusal = ks.check("o", "a", "http", || NOW.into()).unwrap_err();
        assert!(matches!(refusal, Refusal::Unconfirmed { .. }));
        assert!(refusal.reason().starts_with("kill_switch: "));
        ks.confirm();
        assert_eq!(ks.check("o", "a", "http", || NOW.into()), Ok(()));
    }

    #[test]
    fn a_stale_copy_refuses_everything() {
        let ks = RuntimeRules::new(Duration::from_millis(0));
        ks.confirm();
        std::thread::sleep(Duration::from_millis(5));
        let refusal = ks.check("o", "a", "http", || NOW.into()).unwrap_err();
        assert!(
            refusal.reason().contains("could not confirm"),
            "{refusal:?}"
        );
    }

    #[test]
    fn installing_a_switch_refuses_new_calls_and_aborts_running_ones() {
        let ks = RuntimeRules::new(Duration::from_secs(60));
        ks.confirm();
        let a1 = ks.begin("o", "a1", "http", NOW).unwrap();
        let a2 = ks.begin("o", "a2", "http", NOW).unwrap();
        let other_org = ks.begin("p", "a1", "http", NOW).unwrap();
        assert_eq!(
            ks.install(
                "o",
                1,
                vec![agent_switch("k1", "a1")],
                OrgRules::default(),
                NOW
            ),
            1
        );
        assert!(a1.token.is_cancelled());
        assert!(a1
            .abort_reason()
            .unwrap()
            .starts_with("kill_switch: this agent"));
        assert!(!a2.token.is_cancelled());
        assert!(!other_org.token.is_cancelled());
        let refusal = ks.begin("o", "a1", "db", NOW).err().unwrap();
        assert_eq!(refusal.kill_switch_id(), Some("k1"));
        assert!(ks.check("o", "a2", "http", || NOW.into()).is_ok());
        // An older read never replaces a newer one.
        assert_eq!(ks.install("o", 0, Vec::new(), OrgRules::default(), NOW), 0);
        assert!(ks.check("o", "a1", "http", || NOW.into()).is_err());
        // Released: the agent may act again.
        ks.install("o", 2, Vec::new(), OrgRules::default(), NOW);
        assert!(ks.check("o", "a1", "http", || NOW.into()).is_ok());
        drop((a1, a2, other_org));
        assert!(lock(&ks.calls).is_empty(), "dropping a call unregisters it");
    }
}
