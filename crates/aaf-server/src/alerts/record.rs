//! Raising, bumping, acknowledging and resolving alerts: each change that matters is one
//! write unit (the alert row, its audit event, its webhook deliveries); a hit on an alert
//! that is open already only adds to its count (no event, no delivery).

use aaf_store::{Alert, AlertStatus, Mutation, NewEvent, StoreError, WriteUnit};
use serde_json::json;

use super::event_types;
use super::rules::{Hit, Rule};
use crate::app::AppState;
use crate::error::ApiError;

/// Longest comment on an acknowledgement or resolution, in characters.
pub const MAX_COMMENT_CHARS: usize = 2000;

/// Why an alert operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    /// The request cannot be taken as given; `field` names the offending field.
    #[error("{message}")]
    Invalid {
        /// The field, e.g. `comment`.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such alert in the organisation.
    #[error("no alert {0} in your organisation")]
    NotFound(String),
    /// The alert is not in a status the change applies to (e.g. acknowledging a resolved
    /// alert), or it changed while the request was answered.
    #[error("alert {id} is {status}: {message}")]
    WrongStatus {
        /// The alert.
        id: String,
        /// Its status now.
        status: AlertStatus,
        /// What to do.
        message: String,
    },
    /// The change could not be recorded; nothing changed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> ApiError {
        match e {
            AlertError::Invalid { field, message } => ApiError::field(field, message),
            AlertError::NotFound(_) => ApiError::NotFound(e.to_string()),
            AlertError::WrongStatus { .. } => ApiError::Conflict(e.to_string()),
            AlertError::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

/// What a hit did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fired {
    /// The new alert's id; `None`: the hit counted on the alert that was open already.
    pub raised: Option<String>,
    /// The kill switch the rule engaged for the new alert, if it acted.
    pub kill_switch_id: Option<String>,
}

/// The audit event of an alert's change.
fn alert_event(alert: &Alert, event_type: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        org_id: alert.org_id.clone(),
        ts: crate::time::now_rfc3339(),
        agent_id: alert.agent_id.clone(),
        action_id: None,
        event_type: event_type.to_string(),
        data,
    }
}

/// Records one hit: adds it to the open alert of its rule and subject, or raises a new
/// alert (engaging the agent's kill switch first when `alerts.kill_switch_rules` names the
/// rule). Of several nodes raising one alert at once, one raises it and the others count.
///
/// # Errors
///
/// The store's error when nothing could be recorded (the caller retries).
pub async fn fire(state: &AppState, hit: &Hit) -> Result<Fired, StoreError> {
    let rule = hit.rule.name();
    let now = state.clock.now_rfc3339();
    if state
        .store
        .bump_alert(&hit.org_id, rule, &hit.subject, &now)
        .await?
    {
        return Ok(Fired::default());
    }
    let kill_switch_id = match (&hit.agent_id, state.config.alerts.stops_agent(hit.rule)) {
        (Some(agent_id), true) => stop_agent(state, hit, agent_id).await,
        _ => None,
    };
    let alert = Alert {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: hit.org_id.clone(),
        rule: rule.to_string(),
        subject: hit.subject.clone(),
        agent_id: hit.agent_id.clone(),
        severity: hit.severity.to_string(),
        status: AlertStatus::Open,
        summary: hit.summary.clone(),
        detail: hit.detail.clone(),
        count: 1,
        first_seen_at: now.clone(),
        last_seen_at: now.clone(),
        acknowledged_at: None,
        acknowledged_by: None,
        resolved_at: None,
        resolved_by: None,
        kill_switch_id,
        updated_at: now.clone(),
    };
    let event = alert_event(
        &alert,
        event_types::ALERT_RAISED,
        json!({
            "alert_id": alert.id,
            "rule": alert.rule,
            "subject": alert.subject,
            "severity": alert.severity,
            "summary": alert.summary,
            "detail": alert.detail,
            "kill_switch_id": alert.kill_switch_id,
        }),
    );
    let mut mutations = vec![Mutation::InsertAlert(alert.clone())];
    mutations
        .extend(crate::webhooks::alert_deliveries(state, event_types::ALERT_RAISED, &alert).await?);
    let queued = mutations.len() > 1;
    let unit = WriteUnit {
        mutations,
        action: None,
        events: vec![event],
    };
    match state.writer.submit(unit).await {
        Ok(_) => {
            if queued {
                state.webhooks.queued.notify_one();
            }
            crate::metrics::alert_raised(hit.rule.name());
            tracing::warn!(org_id = %alert.org_id, alert_id = %alert.id, rule, subject = %alert.subject, summary = %alert.summary, "security alert raised");
            Ok(Fired {
                raised: Some(alert.id),
                kill_switch_id: alert.kill_switch_id,
            })
        }
        // Raised concurrently (another node): this hit counts on that alert.
        Err(StoreError::Stale(_)) => {
            state
                .store
                .bump_alert(&hit.org_id, rule, &hit.subject, &now)
                .await?;
            Ok(Fired {
                raised: None,
                kill_switch_id: alert.kill_switch_id,
            })
        }
        Err(e) => Err(e),
    }
}

/// Engages the agent's kill switch for a new alert of `hit`'s rule, through a circuit
/// breaker trip named `alert:<rule>` (no user; `alerts.kill_switch_cooldown_seconds`).
/// Returns the switch, or `None` when a breaker's switch stops the agent already or it
/// could not be engaged (logged; the alert is raised either way).
async fn stop_agent(state: &AppState, hit: &Hit, agent_id: &str) -> Option<String> {
    if state
        .runtime
        .breaker_engaged(&hit.org_id, agent_id, &state.clock.now_rfc3339())
    {
        return None;
    }
    let seconds = state.config.alerts.kill_switch_cooldown_seconds;
    let breaker = format!("alert:{}", hit.rule.name());
    let reason = format!("alert {}: {}", hit.rule.name(), hit.summary);
    match crate::runtime::control::trip(
        state,
        &hit.org_id,
        agent_id,
        &breaker,
        &reason,
        (seconds > 0).then_some(seconds),
    )
    .await
    {
        Ok(switch) => Some(switch.id),
        Err(e) => {
            tracing::error!(org_id = %hit.org_id, %agent_id, rule = hit.rule.name(), error = %e, "an alert rule could not engage the agent's kill switch");
            None
        }
    }
}

/// Checks a comment on an acknowledgement or resolution.
///
/// # Errors
///
/// [`AlertError::Invalid`] naming `comment` when it is longer than [`MAX_COMMENT_CHARS`].
pub fn check_comment(comment: &str) -> Result<(), AlertError> {
    if comment.chars().count() > MAX_COMMENT_CHARS {
        return Err(AlertError::Invalid {
            field: "comment",
            message: format!("must be at most {MAX_COMMENT_CHARS} characters"),
        });
    }
    Ok(())
}

/// The organisation's alert `id`.
///
/// # Errors
///
/// [`AlertError::NotFound`]; [`AlertError::Unavailable`].
pub async fn get(state: &AppState, org_id: &str, id: &str) -> Result<Alert, AlertError> {
    state
        .store
        .get_alert(org_id, id)
        .await
        .map_err(|e| AlertError::Unavailable(format!("the alert could not be read: {e}")))?
        .ok_or_else(|| AlertError::NotFound(id.to_string()))
}

/// Acknowledges (`to` = [`AlertStatus::Acknowledged`], only from `open`) or resolves (`to`
/// = [`AlertStatus::Resolved`], from `open` or `acknowledged`) the organisation's alert `id`
/// for user `by`: the change, its `alert.acknowledged` / `alert.resolved` event and its
/// webhook deliveries in one write unit. Returns the alert as it is now.
///
/// # Errors
///
/// [`AlertError::Invalid`] (comment), [`AlertError::NotFound`], [`AlertError::WrongStatus`]
/// (not in a status the change applies to, or changed concurrently: 409),
/// [`AlertError::Unavailable`].
pub async fn transition(
    state: &AppState,
    org_id: &str,
    by: &str,
    id: &str,
    to: AlertStatus,
    comment: &str,
) -> Result<Alert, AlertError> {
    check_comment(comment)?;
    let alert = get(state, org_id, id).await?;
    let (applies, event_type, what) = match to {
        AlertStatus::Acknowledged => (
            alert.status == AlertStatus::Open,
            event_types::ALERT_ACKNOWLEDGED,
            "only an open alert can be acknowledged",
        ),
        AlertStatus::Resolved => (
            alert.status != AlertStatus::Resolved,
            event_types::ALERT_RESOLVED,
            "it is resolved already; a new hit raises a new alert",
        ),
        AlertStatus::Open => (false, "", "an alert cannot be reopened"),
    };
    if !applies {
        return Err(AlertError::WrongStatus {
            id: id.to_string(),
            status: alert.status,
            message: what.to_string(),
        });
    }
    let now = state.clock.now_rfc3339();
    let mut after = alert.clone();
    after.status = to;
    after.updated_at = now.clone();
    match to {
        AlertStatus::Acknowledged => {
            after.acknowledged_at = Some(now.clone());
            after.acknowledged_by = Some(by.to_string());
        }
        _ => {
            after.resolved_at = Some(now.clone());
            after.resolved_by = Some(by.to_string());
        }
    }
    let mut mutations = vec![Mutation::AlertTransition {
        org_id: org_id.to_string(),
        id: id.to_string(),
        from: alert.status,
        to,
        by: by.to_string(),
        now,
    }];
    mutations.extend(
        crate::webhooks::alert_deliveries(state, event_type, &after)
            .await
            .map_err(|e| {
                AlertError::Unavailable(format!(
                    "the webhooks could not be read, so nothing changed: {e}"
                ))
            })?,
    );
    let queued = mutations.len() > 1;
    let event = alert_event(
        &alert,
        event_type,
        json!({
            "alert_id": alert.id,
            "rule": alert.rule,
            "subject": alert.subject,
            "count": alert.count,
            "comment": comment,
            "by": by,
        }),
    );
    let unit = WriteUnit {
        mutations,
        action: None,
        events: vec![event],
    };
    match state.writer.submit(unit).await {
        Ok(_) => {}
        Err(StoreError::NotFound(_)) => return Err(AlertError::NotFound(id.to_string())),
        Err(StoreError::Stale(_)) => {
            let now = get(state, org_id, id).await?;
            return Err(AlertError::WrongStatus {
                id: id.to_string(),
                status: now.status,
                message: "it changed while your request was answered; read it again".into(),
            });
        }
        Err(e) => {
            return Err(AlertError::Unavailable(format!(
                "the change could not be recorded: {e}"
            )))
        }
    }
    if queued {
        state.webhooks.queued.notify_one();
    }
    get(state, org_id, id).await
}

/// Whether `name` is a rule (for the API's `rule` filter).
pub fn known_rule(name: &str) -> bool {
    Rule::parse(name).is_some()
}
