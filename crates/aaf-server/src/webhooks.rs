//! Webhook notifications of approval, kill-switch and alert events: what is queued (an outbox row written in the
//! same transaction as the transition it announces), how it is signed, and the delivery
//! worker that sends and retries it.
//!
//! Signature of the `json` format (in the spirit of Stripe's and Svix's schemes): header
//! `X-AAF-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (RFC 2104
//! HMAC with SHA-256, FIPS 180-4). Receivers recompute it over the raw body, compare in
//! constant time and refuse timestamps older than a few minutes (replay).

use std::sync::Arc;
use std::time::Duration;

use aaf_core::kill_switch::KillSwitch;
use aaf_store::{ActionRecord, DeliveryUpdate, Mutation, StoreError, Webhook, WebhookDelivery};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::app::AppState;
use crate::connectors::http::HttpConnector;
use crate::error::ApiError;

/// The events a webhook can receive.
pub const EVENTS: [&str; 9] = [
    "approval.requested",
    "approval.approved",
    "approval.rejected",
    "approval.expired",
    "kill_switch.engaged",
    "kill_switch.released",
    crate::alerts::event_types::ALERT_RAISED,
    crate::alerts::event_types::ALERT_ACKNOWLEDGED,
    crate::alerts::event_types::ALERT_RESOLVED,
];

/// The formats a webhook can have.
pub const FORMATS: [&str; 2] = ["json", "slack"];

/// Prefix of generated webhook secrets.
pub const SECRET_PREFIX: &str = "aaf_whsec";

/// The header carrying the `json` format's signature.
pub const SIGNATURE_HEADER: &str = "x-aaf-signature";

/// How many due deliveries of one organisation a worker pass takes.
const BATCH: u32 = 50;

/// The webhook sender and the worker's wake-up bell.
#[derive(Debug)]
pub struct Webhooks {
    /// An HTTP client with the connector's SSRF rules and the `[webhooks]` allowlist.
    pub connector: HttpConnector,
    /// Rung when deliveries are queued on this node.
    pub queued: Notify,
}

impl Webhooks {
    /// Builds the sender from the configuration.
    ///
    /// Errors: an invalid `[webhooks]` allowlist or connector setting, named.
    pub fn new(config: &crate::config::Config) -> Result<Webhooks, String> {
        let http = crate::connectors::http::HttpConnectorConfig {
            allowed_domains: config.webhooks.allowed_domains.clone(),
            allow_private_cidrs: config.webhooks.allow_private_cidrs.clone(),
            timeout_ms: config.webhooks.timeout_ms,
            max_redirects: 0,
            // Webhook deliveries are not agents' requests: no credentials.
            credentials: Vec::new(),
            section: "webhooks".to_string(),
            ..config.connectors.http.clone()
        };
        let connector = HttpConnector::new(&http).map_err(|e| e.to_string())?;
        Ok(Webhooks {
            connector,
            queued: Notify::new(),
        })
    }
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The summary of an action that webhooks carry (parameters redacted).
fn action_summary(action: &ActionRecord) -> Value {
    json!({
        "id": action.id,
        "agent_id": action.agent_id,
        "tool": action.tool,
        "operation": action.operation,
        "params": aaf_core::redact::redact(&action.params),
        "status": action.status,
        "decision": action.decision,
        "reason": action.reason,
        "risk_level": action.risk_level,
        "digest": action.digest,
        "expires_at": action.expires_at,
        "approvals_required": action.approvals_required,
    })
}

/// The body for `webhook` of `event` about `action` (in its state after the event).
fn payload(
    state: &AppState,
    webhook: &Webhook,
    delivery_id: &str,
    event: &str,
    action: &ActionRecord,
    detail: &Value,
    now: &str,
) -> Value {
    let link = state
        .config
        .auth
        .public_base_url
        .as_deref()
        .map(|base| format!("{}/v1/approvals?status=pending", base.trim_end_matches('/')));
    match webhook.format.as_str() {
        "slack" => {
            let verb = match event {
                "approval.requested" => "Approval requested",
                "approval.approved" => "Approved",
                "approval.rejected" => "Rejected",
                "approval.expired" => "Approval expired",
                other => other,
            };
            let mut text = format!(
                "*{verb}*: `{} {}` by agent `{}` (risk {}). {}\nAction `{}`, digest `{}`, deadline {}.",
                action.tool,
                action.operation,
                action.agent_id,
                action.risk_level.as_deref().unwrap_or("not given"),
                action.reason,
                action.id,
                action.digest.as_deref().unwrap_or("-"),
                action.expires_at.as_deref().unwrap_or("-"),
            );
            if let Some(link) = &link {
                text.push_str(&format!("\n<{link}|Review pending approvals>"));
            }
            json!({ "text": text })
        }
        _ => json!({
            "id": delivery_id,
            "event": event,
            "created_at": now,
            "org_id": action.org_id,
            "action": action_summary(action),
            "detail": detail,
            "link": link,
        }),
    }
}

/// The deliveries to queue for `event` about `action`: one per live webhook of its
/// organisation subscribed to the event. Written by the caller in the same transaction as
/// the event itself.
///
/// Errors: the webhooks cannot be read.
pub async fn deliveries_for(
    state: &AppState,
    event: &str,
    action: &ActionRecord,
    detail: Value,
) -> Result<Vec<Mutation>, StoreError> {
    let webhooks = state.store.list_webhooks(&action.org_id).await?;
    let now = state.clock.now_rfc3339();
    Ok(webhooks
        .iter()
        .filter(|w| w.disabled_at.is_none() && w.events.iter().any(|e| e == event))
        .map(|w| {
            let id = uuid::Uuid::now_v7().to_string();
            Mutation::InsertDelivery(WebhookDelivery {
                payload: payload(state, w, &id, event, action, &detail, &now),
                id,
                org_id: action.org_id.clone(),
                webhook_id: w.id.clone(),
                event: event.to_string(),
                action_id: Some(action.id.clone()),
                status: "pending".to_string(),
                attempts: 0,
                next_attempt_at: now.clone(),
                last_status_code: None,
                last_error: None,
                created_at: now.clone(),
                updated_at: now.clone(),
                version: 0,
            })
        })
        .collect())
}

/// The deliveries to queue for `event` (`kill_switch.engaged` or `kill_switch.released`)
/// about `switch` (in its state after the event): one per live webhook of its organisation
/// subscribed to the event, written by the caller with the change.
///
/// Errors: the webhooks cannot be read.
pub async fn kill_switch_deliveries(
    state: &AppState,
    event: &str,
    switch: &KillSwitch,
) -> Result<Vec<Mutation>, StoreError> {
    let webhooks = state.store.list_webhooks(&switch.org_id).await?;
    let now = state.clock.now_rfc3339();
    let summary = json!({
        "id": switch.id,
        "scope": switch.scope.as_str(),
        "target": switch.target(),
        "agent_id": switch.agent_id,
        "tool": switch.tool,
        "reason": switch.reason,
        "source": switch.source.as_str(),
        "created_at": switch.created_at,
        "created_by": switch.created_by,
        "expires_at": switch.expires_at,
        "released_at": switch.released_at,
        "released_by": switch.released_by,
    });
    Ok(webhooks
        .iter()
        .filter(|w| w.disabled_at.is_none() && w.events.iter().any(|e| e == event))
        .map(|w| {
            let id = uuid::Uuid::now_v7().to_string();
            let payload = match w.format.as_str() {
                "slack" => {
                    let verb = if event == "kill_switch.engaged" {
                        "Kill switch engaged"
                    } else {
                        "Kill switch released"
                    };
                    let target = switch.target();
                    json!({"text": format!(
                        "*{verb}*: scope `{}`{} ({}). {}\nKill switch `{}`.",
                        switch.scope,
                        if target.is_empty() { String::new() } else { format!(" `{target}`") },
                        switch.source.as_str(),
                        switch.reason,
                        switch.id,
                    )})
                }
                _ => json!({
                    "id": id,
                    "event": event,
                    "created_at": now,
                    "org_id": switch.org_id,
                    "kill_switch": summary,
                }),
            };
            Mutation::InsertDelivery(WebhookDelivery {
                payload,
                id,
                org_id: switch.org_id.clone(),
                webhook_id: w.id.clone(),
                event: event.to_string(),
                action_id: None,
                status: "pending".to_string(),
                attempts: 0,
                next_attempt_at: now.clone(),
                last_status_code: None,
                last_error: None,
                created_at: now.clone(),
                updated_at: now.clone(),
                version: 0,
            })
        })
        .collect())
}

/// The deliveries to queue for `event` (`alert.raised`, `alert.acknowledged` or
/// `alert.resolved`) about `alert` (in its state after the event): one per live webhook of
/// its organisation subscribed to the event, written by the caller with the change.
///
/// JSON format: `{"id", "event", "created_at", "org_id", "alert": {id, rule, subject,
/// agent_id, severity, status, summary, detail, count, first_seen_at, last_seen_at,
/// acknowledged_by, resolved_by, kill_switch_id}, "link"}` (`link`: the alert's URL under
/// `auth.public_base_url`, or `null`). Slack format: `{"text": ...}`, one message.
///
/// Errors: the webhooks cannot be read.
pub async fn alert_deliveries(
    state: &AppState,
    event: &str,
    alert: &aaf_store::Alert,
) -> Result<Vec<Mutation>, StoreError> {
    let webhooks = state.store.list_webhooks(&alert.org_id).await?;
    let subscribed: Vec<&Webhook> = webhooks
        .iter()
        .filter(|w| w.disabled_at.is_none() && w.events.iter().any(|e| e == event))
        .collect();
    if subscribed.is_empty() {
        return Ok(Vec::new());
    }
    let now = state.clock.now_rfc3339();
    let link = state
        .config
        .auth
        .public_base_url
        .as_deref()
        .map(|base| format!("{}/v1/alerts/{}", base.trim_end_matches('/'), alert.id));
    let summary = json!({
        "id": alert.id,
        "rule": alert.rule,
        "subject": alert.subject,
        "agent_id": alert.agent_id,
        "severity": alert.severity,
        "status": alert.status.as_str(),
        "summary": alert.summary,
        "detail": alert.detail,
        "count": alert.count,
        "first_seen_at": alert.first_seen_at,
        "last_seen_at": alert.last_seen_at,
        "acknowledged_by": alert.acknowledged_by,
        "resolved_by": alert.resolved_by,
        "kill_switch_id": alert.kill_switch_id,
    });
    Ok(subscribed
        .into_iter()
        .map(|w| {
            let id = uuid::Uuid::now_v7().to_string();
            let payload = match w.format.as_str() {
                "slack" => {
                    let verb = match alert.status {
                        aaf_store::AlertStatus::Open => "Alert raised",
                        aaf_store::AlertStatus::Acknowledged => "Alert acknowledged",
                        aaf_store::AlertStatus::Resolved => "Alert resolved",
                    };
                    let mut text = format!(
                        "*{verb}* ({}): `{}` on `{}`. {}\nAlert `{}`, seen {} time(s) since {}.",
                        alert.severity,
                        alert.rule,
                        alert.subject,
                        alert.summary,
                        alert.id,
                        alert.count,
                        alert.first_seen_at,
                    );
                    if let Some(switch) = &alert.kill_switch_id {
                        text.push_str(&format!(" The agent was stopped (kill switch `{switch}`)."));
                    }
                    if let Some(link) = &link {
                        text.push_str(&format!("\n<{link}|View the alert>"));
                    }
                    json!({ "text": text })
                }
                _ => json!({
                    "id": id,
                    "event": event,
                    "created_at": now,
                    "org_id": alert.org_id,
                    "alert": summary,
                    "link": link,
                }),
            };
            Mutation::InsertDelivery(WebhookDelivery {
                payload,
                id,
                org_id: alert.org_id.clone(),
                webhook_id: w.id.clone(),
                event: event.to_string(),
                action_id: None,
                status: "pending".to_string(),
                attempts: 0,
                next_attempt_at: now.clone(),
                last_status_code: None,
                last_error: None,
                created_at: now.clone(),
                updated_at: now.clone(),
                version: 0,
            })
        })
        .collect())
}

/// The delay before attempt `attempts + 1`: `initial_backoff_ms * 2^(attempts - 1)`, at most
/// `max_backoff_seconds`.
pub fn backoff(config: &crate::config::WebhooksConfig, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(40);
    let ms = config
        .initial_backoff_ms
        .saturating_mul(1u64 << doublings)
        .min(config.max_backoff_seconds.saturating_mul(1000));
    Duration::from_millis(ms)
}

/// Sends one due delivery: claims the attempt (a compare-and-set, so one node sends it),
/// POSTs it, and records the outcome with the next attempt's time (exponential backoff) or
/// its final status.
///
/// Errors: the database failed; a lost claim is not an error.
pub async fn attempt(state: &AppState, delivery: &WebhookDelivery) -> Result<(), ApiError> {
    let config = &state.config.webhooks;
    let now = state.clock.now();
    let attempts = delivery.attempts.saturating_add(1);
    // While the attempt runs, the row is not due: if this node stops, another takes over
    // after the attempt's timeout and a minute.
    let lease = now + Duration::from_millis(config.timeout_ms) + Duration::from_secs(60);
    let claim = DeliveryUpdate {
        org_id: delivery.org_id.clone(),
        id: delivery.id.clone(),
        expected_version: delivery.version,
        status: "pending".to_string(),
        attempts,
        next_attempt_at: crate::time::format_rfc3339(lease),
        last_status_code: delivery.last_status_code,
        last_error: delivery.last_error.clone(),
        updated_at: crate::time::format_rfc3339(now),
    };
    match state.store.update_delivery(&claim).await {
        Ok(()) => {}
        Err(StoreError::Stale(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    let webhook = state
        .store
        .list_webhooks(&delivery.org_id)
        .await?
        .into_iter()
        .find(|w| w.id == delivery.webhook_id);
    let outcome = match &webhook {
        None => Err(("the webhook no longer exists".to_string(), true)),
        Some(w) if w.disabled_at.is_some() => Err(("the webhook was disabled".to_string(), true)),
        Some(w) => send(state, w, delivery).await,
    };
    let after = state.clock.now();
    let (status, next, code, error) = match outcome {
        Ok(code) if (200..300).contains(&code) => ("delivered", after, Some(code), None),
        result => {
            // A refused target or a 4xx other than 408 and 429 will not change by retrying.
            let (code, error, permanent) = match result {
                Ok(code) => (
                    Some(code),
                    format!("the receiver answered {code}"),
                    (400..500).contains(&code) && code != 408 && code != 429,
                ),
                Err((e, permanent)) => (None, e, permanent),
            };
            if permanent || attempts >= config.max_attempts {
                tracing::warn!(delivery = %delivery.id, webhook = %delivery.webhook_id, %error, attempts, "webhook delivery failed for good");
                ("failed", after, code, Some(error))
            } else {
                (
                    "pending",
                    after + backoff(config, attempts),
                    code,
                    Some(error),
                )
            }
        }
    };
    let done = DeliveryUpdate {
        expected_version: delivery.version + 1,
        status: status.to_string(),
        next_attempt_at: crate::time::format_rfc3339(next),
        last_status_code: code,
        last_error: error,
        updated_at: crate::time::format_rfc3339(after),
        ..claim
    };
    match state.store.update_delivery(&done).await {
        Ok(()) | Err(StoreError::Stale(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// POSTs the delivery; the receiver's status code, or why nothing was answered and whether
/// that is permanent (the SSRF guard or allowlist refused the target).
async fn send(
    state: &AppState,
    webhook: &Webhook,
    delivery: &WebhookDelivery,
) -> Result<u16, (String, bool)> {
    // Sealed values whose data key was destroyed (docs/encryption.md) read as null or empty:
    // such a delivery fails for good, visibly, rather than going out unsigned or empty.
    if delivery.payload.is_null() {
        return Err((
            "the delivery's body cannot be read (its data key was destroyed)".to_string(),
            true,
        ));
    }
    if webhook.format == "json" && webhook.secret.is_empty() {
        return Err((
            "the webhook's signing secret cannot be read (its data key was destroyed): register the webhook again".to_string(),
            true,
        ));
    }
    let body = serde_json::to_string(&delivery.payload).map_err(|e| (e.to_string(), true))?;
    let mut headers = Map::new();
    headers.insert("content-type".into(), json!("application/json"));
    headers.insert("x-aaf-event".into(), json!(delivery.event));
    headers.insert("x-aaf-delivery".into(), json!(delivery.id));
    if webhook.format == "json" {
        let timestamp = state.clock.now().unix_timestamp();
        headers.insert(
            SIGNATURE_HEADER.into(),
            json!(signature(&webhook.secret, timestamp, &body)),
        );
    }
    state
        .webhooks
        .connector
        .post(&webhook.url, headers, body)
        .await
        .map(|outcome| outcome.status)
        .map_err(|e| {
            let permanent = matches!(
                e,
                crate::connectors::http::ConnectorError::Ssrf(_)
                    | crate::connectors::http::ConnectorError::InvalidRequest(_)
            );
            (e.to_string(), permanent)
        })
}

/// How many deliveries one node sends at once: a slow receiver does not hold up the others.
const CONCURRENT_ATTEMPTS: usize = 8;

/// One pass over every organisation's due deliveries.
///
/// Errors: the database cannot be read.
pub async fn deliver_due(state: &AppState) -> Result<(), ApiError> {
    let now = state.clock.now_rfc3339();
    let mut due = Vec::new();
    for org in state.store.list_orgs().await? {
        due.extend(state.store.due_deliveries(&org.id, &now, BATCH).await?);
    }
    futures::stream::iter(due)
        .for_each_concurrent(CONCURRENT_ATTEMPTS, |delivery| async move {
            if let Err(e) = attempt(state, &delivery).await {
                tracing::warn!(delivery = %delivery.id, error = %e, "webhook delivery attempt could not be recorded");
            }
        })
        .await;
    Ok(())
}

/// Delivers due webhooks every `webhooks.poll_interval_ms`, and at once when this node
/// queues some, until the task is aborted.
pub async fn worker(state: AppState, webhooks: Arc<Webhooks>) {
    let interval = Duration::from_millis(state.config.webhooks.poll_interval_ms);
    loop {
        if let Err(e) = deliver_due(&state).await {
            tracing::warn!(error = %e, "webhook delivery pass failed; retrying");
        }
        tokio::select! {
            _ = webhooks.queued.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231 test case 2 (key "Jefe"), with the message "what do ya want for nothing?"
        // split as "<timestamp>.<body>" would not fit; check the construction directly.
        let sig = signature("Jefe", 1_700_000_000, "{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1700000000,v1={expected}"));
        // And the HMAC itself against RFC 4231 test case 2.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = crate::config::WebhooksConfig {
            initial_backoff_ms: 1000,
            max_backoff_seconds: 10,
            ..Default::default()
        };
        let delays: Vec<u64> = (1..=6)
            .map(|a| backoff(&config, a).as_millis() as u64)
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff(&config, u32::MAX), Duration::from_secs(10));
    }
}
