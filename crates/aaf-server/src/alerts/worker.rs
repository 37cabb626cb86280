//! The node's alert worker: takes signals off the queue one at a time, evaluates the rules
//! and records their hits, retrying what the database refused for the moment; every minute
//! forgets alert hits older than any window.

use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::mpsc;

use super::record::{fire, Fired};
use super::rules::{evaluate, AgentRisks};
use super::Signal;
use crate::app::AppState;

/// Attempts at a signal before it is counted as lost.
const ATTEMPTS: u32 = 4;
/// Delay before the first retry; doubled after each.
const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Most kill-switch ids of alerts that acted remembered (to tell their breaker trips from
/// the others'); emptied when full.
const ACTED_MEMORY: usize = 4096;

/// What the worker keeps between signals.
#[derive(Debug, Default)]
struct Memory {
    risks: AgentRisks,
    /// Kill switches this node's alerts engaged: their `circuit_breaker.tripped` is the
    /// alert's own doing, already on the alert, not a new alert.
    acted: HashSet<String>,
}

/// Runs until the queue's senders are gone or the task is aborted.
pub async fn worker(state: AppState, mut signals: mpsc::Receiver<Signal>) {
    let mut memory = Memory::default();
    let mut housekeeping = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            signal = signals.recv() => {
                let Some(signal) = signal else { break };
                handle(&state, &signal, &mut memory).await;
            }
            _ = housekeeping.tick() => purge(&state).await,
        }
    }
}

/// Evaluates and records one signal, retrying transient failures; a signal that still
/// fails is logged and counted (`aaf_alert_signals_lost_total{reason="failed"}`).
async fn handle(state: &AppState, signal: &Signal, memory: &mut Memory) {
    if let Signal::CircuitBreakerTripped { kill_switch_id, .. } = signal {
        if memory.acted.remove(kill_switch_id) {
            return;
        }
    }
    let mut delay = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        match run(state, signal, memory).await {
            Ok(()) => return,
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(org_id = %signal.org_id(), error = %e, attempt, "alert rules failed on a signal; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                crate::metrics::alert_signal_lost("failed");
                tracing::error!(org_id = %signal.org_id(), ?signal, error = %e, "alert signal lost: the alert rules could not be evaluated or recorded");
            }
        }
    }
}

/// Evaluates `signal` and records its hits. Hits already recorded before a failure are
/// recorded again on retry, as one more count on their alert (never a second alert).
async fn run(
    state: &AppState,
    signal: &Signal,
    memory: &mut Memory,
) -> Result<(), aaf_store::StoreError> {
    let hits = evaluate(state, signal, &mut memory.risks).await?;
    for hit in hits {
        let Fired { kill_switch_id, .. } = fire(state, &hit).await?;
        if let Some(switch) = kill_switch_id {
            if memory.acted.len() >= ACTED_MEMORY {
                memory.acted.clear();
            }
            memory.acted.insert(switch);
        }
    }
    Ok(())
}

/// Forgets every organisation's alert hits older than the longest window.
async fn purge(state: &AppState) {
    let seconds = state.config.alerts.longest_window_seconds();
    let now = state.clock.now();
    let before = crate::time::format_rfc3339(
        now.checked_sub(time::Duration::seconds(
            i64::try_from(seconds).unwrap_or(i64::MAX),
        ))
        .unwrap_or(now),
    );
    let orgs = match state.store.list_orgs().await {
        Ok(orgs) => orgs,
        Err(e) => {
            tracing::warn!(error = %e, "could not list organisations to forget old alert hits");
            return;
        }
    };
    for org in orgs {
        if let Err(e) = state.store.purge_alert_hits(&org.id, &before).await {
            tracing::warn!(org_id = %org.id, error = %e, "could not forget old alert hits");
        }
    }
}
