//! `[retention]` and retention itself (docs/retention.md): each organisation's days per event
//! class and legal hold (`/v1/retention`), applied by a background worker of every node and on
//! demand. Past its class's period an event's payload is removed, with the reason recorded in
//! its place; the event, its commitment and its leaf hash stay, so the chain, the trees and
//! every proof still verify.

use std::collections::BTreeMap;
use std::time::Duration;

use aaf_core::audit::event_types;
use aaf_core::retention::{EventClass, RetentionRules};
use aaf_store::{AuditWriter, Mutation, NewEvent, Store, StoreError, WriteUnit};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `[retention]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Whether each node applies the organisations' rules in the background. Default true.
    /// `POST /v1/retention/run` applies them on demand either way.
    pub enabled: bool,
    /// How often, in seconds, 1 to 86400. Default 3600.
    pub interval_seconds: u64,
    /// Most payloads removed in one write (one `retention.applied` event), 1 to 100000.
    /// Default 1000.
    pub batch_size: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            interval_seconds: 3600,
            batch_size: 1000,
        }
    }
}

impl RetentionConfig {
    /// Checks the values.
    ///
    /// # Errors
    ///
    /// A message naming the key that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=86_400).contains(&self.interval_seconds) {
            return Err("retention.interval_seconds must be from 1 to 86400".into());
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return Err("retention.batch_size must be from 1 to 100000".into());
        }
        Ok(())
    }
}

/// What one application of an organisation's rules did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Applied {
    /// Payloads removed, per class.
    pub removed: BTreeMap<String, u64>,
    /// Set when a legal hold suspended retention: its reason (nothing was removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<String>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// Applies `org_id`'s rules as of `now`: for each class with a period, removes the stored
/// payloads of its events recorded more than that many days before `now`, in writes of at
/// most `batch` payloads, each recorded as a `retention.applied` event.
///
/// # Errors
///
/// The store's and the writer's errors (what was removed before stays removed).
pub async fn apply(
    store: &Store,
    writer: &AuditWriter,
    org_id: &str,
    now: OffsetDateTime,
    batch: u32,
) -> Result<Applied, StoreError> {
    let Some(rules) = store.retention_rules(org_id).await? else {
        return Ok(Applied::default());
    };
    if let Some(hold) = rules.legal_hold {
        return Ok(Applied {
            removed: BTreeMap::new(),
            legal_hold: Some(hold),
        });
    }
    let mut applied = Applied::default();
    for (class, days) in &rules.rules {
        let before = rfc3339(now - time::Duration::days(i64::from(*days)));
        let reason = format!(
            "payload removed by retention on {} under rule {} ({days} days)",
            &rfc3339(now)[..10],
            class.as_str()
        );
        // A conflict means another node removed some first: read the candidates again, a
        // few times at most.
        let mut conflicts = 0;
        loop {
            let mut seqs = Vec::new();
            for event_type in class.event_types() {
                let room = batch.saturating_sub(u32::try_from(seqs.len()).unwrap_or(u32::MAX));
                if room == 0 {
                    break;
                }
                seqs.extend(
                    store
                        .retention_candidates(org_id, event_type, &before, room)
                        .await?,
                );
            }
            if seqs.is_empty() {
                break;
            }
            seqs.sort_unstable();
            let count = seqs.len() as u64;
            let unit = WriteUnit {
                mutations: vec![Mutation::RemovePayloads {
                    org_id: org_id.to_string(),
                    seqs: seqs.clone(),
                    reason: reason.clone(),
                }],
                action: None,
                events: vec![NewEvent {
                    org_id: org_id.to_string(),
                    ts: crate::time::now_rfc3339(),
                    agent_id: None,
                    action_id: None,
                    event_type: event_types::RETENTION_APPLIED.to_string(),
                    data: serde_json::json!({
                        "class": class.as_str(), "days": days, "before": before,
                        "seqs": seqs, "count": count,
                    }),
                }],
            };
            match writer.submit(unit).await {
                Ok(_) => {
                    *applied
                        .removed
                        .entry(class.as_str().to_string())
                        .or_default() += count;
                    if count < u64::from(batch) {
                        break;
                    }
                }
                Err(StoreError::Conflict(_)) if conflicts < 3 => conflicts += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(applied)
}

/// Sets `org_id`'s rules (checked by the caller), recorded as `retention.changed`.
///
/// # Errors
///
/// The writer's errors.
pub async fn set(
    writer: &AuditWriter,
    org_id: &str,
    rules: RetentionRules,
    by: &str,
    now: &str,
) -> Result<(), StoreError> {
    let data = serde_json::json!({"rules": rules.rules, "legal_hold": rules.legal_hold, "by": by});
    writer
        .submit(WriteUnit {
            mutations: vec![Mutation::SetRetention {
                org_id: org_id.to_string(),
                rules,
                now: now.to_string(),
                by: by.to_string(),
            }],
            action: None,
            events: vec![NewEvent {
                org_id: org_id.to_string(),
                ts: now.to_string(),
                agent_id: None,
                action_id: None,
                event_type: event_types::RETENTION_CHANGED.to_string(),
                data,
            }],
        })
        .await?;
    Ok(())
}

/// The event classes and their event types, for `GET /v1/retention`.
pub fn classes() -> BTreeMap<String, Vec<&'static str>> {
    EventClass::ALL
        .into_iter()
        .map(|c| (c.as_str().to_string(), c.event_types()))
        .collect()
}

/// The background worker: every `retention.interval_seconds`, applies every organisation's
/// rules as of the server's clock. Errors are logged and the next round tries again.
pub async fn worker(state: crate::app::AppState) {
    let config = state.config.retention.clone();
    if !config.enabled {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(config.interval_seconds));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let orgs = match state.store.list_orgs().await {
            Ok(orgs) => orgs,
            Err(e) => {
                tracing::warn!(error = %e, "retention: cannot list the organisations");
                continue;
            }
        };
        for org in orgs {
            match apply(
                &state.store,
                &state.writer,
                &org.id,
                state.clock.now(),
                config.batch_size,
            )
            .await
            {
                Ok(applied) if !applied.removed.is_empty() => {
                    tracing::info!(org_id = %org.id, removed = ?applied.removed, "retention removed payloads");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(org_id = %org.id, error = %e, "retention failed; next round tries again")
                }
            }
        }
    }
}
