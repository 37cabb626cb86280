//! The webhooks API: register, list, disable, and the delivery log. Sending is in
//! [`crate::webhooks`].

use aaf_core::audit::event_types;
use aaf_store::{Mutation, NewEvent, WriteUnit};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::body::{json_body, Object};
use crate::app::AppState;
use crate::auth::UserAuth;
use crate::error::{ApiError, ErrorBody};
use crate::webhooks::{EVENTS, FORMATS, SECRET_PREFIX};

/// Most webhooks per organisation.
const MAX_WEBHOOKS: usize = 50;

/// `POST /v1/webhooks` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookBody {
    /// An absolute `https` (or `http`) URL of a public host; refused (400) when the SSRF
    /// guard or `webhooks.allowed_domains` refuses it.
    pub url: String,
    /// Events to receive: `approval.requested`, `approval.approved`, `approval.rejected`,
    /// `approval.expired` (at least one).
    pub events: Vec<String>,
    /// `json` (default; signed with HMAC-SHA256) or `slack` (an incoming-webhook message).
    #[serde(default)]
    pub format: Option<String>,
}

/// A webhook as listed (never with its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// Webhook id.
    pub id: String,
    /// Target URL.
    pub url: String,
    /// Events it receives.
    pub events: Vec<String>,
    /// `json` or `slack`.
    pub format: String,
    /// RFC 3339.
    pub created_at: String,
    /// When it was disabled (RFC 3339), if it was.
    pub disabled_at: Option<String>,
}

impl From<aaf_store::Webhook> for WebhookView {
    fn from(w: aaf_store::Webhook) -> Self {
        WebhookView {
            id: w.id,
            url: w.url,
            events: w.events,
            format: w.format,
            created_at: w.created_at,
            disabled_at: w.disabled_at,
        }
    }
}

/// A new webhook with its signing secret, shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The HMAC-SHA256 key of the `X-AAF-Signature` header (`json` format); store it now.
    pub secret: String,
}

/// The organisation's webhooks.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first, disabled ones included.
    pub webhooks: Vec<WebhookView>,
}

/// Registers a webhook for approval events. The URL passes the same SSRF guard as the HTTP
/// connector now and again at every delivery (a name that later resolves to a private
/// address is refused then).
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks",
    request_body = CreateWebhookBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "created; the secret is shown once", body = CreatedWebhook),
        (status = 400, description = "bad url (refused by the SSRF guard or allowlist), events or format", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "too many webhooks", body = ErrorBody),
    ))]
pub async fn create_webhook(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<CreateWebhookBody>>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedWebhook>), ApiError> {
    let body = json_body(&state, body)?;
    let url = state
        .webhooks
        .connector
        .check_destination(body.url.trim())
        .map_err(|e| ApiError::field("url", e.to_string()))?;
    if body.events.is_empty() {
        return Err(ApiError::field("events", "must name at least one event"));
    }
    let mut events = Vec::new();
    for e in &body.events {
        if !EVENTS.contains(&e.as_str()) {
            return Err(ApiError::field(
                "events",
                format!("unknown event {e:?}; expected some of {EVENTS:?}"),
            ));
        }
        if !events.contains(e) {
            events.push(e.clone());
        }
    }
    let format = body.format.unwrap_or_else(|| "json".to_string());
    if !FORMATS.contains(&format.as_str()) {
        return Err(ApiError::field(
            "format",
            format!("must be one of {FORMATS:?}, not {format:?}"),
        ));
    }
    let live = state
        .store
        .list_webhooks(&admin.org.id)
        .await?
        .into_iter()
        .filter(|w| w.disabled_at.is_none())
        .count();
    if live >= MAX_WEBHOOKS {
        return Err(ApiError::Conflict(format!(
            "the organisation has {live} webhooks, the most allowed; disable one first"
        )));
    }
    let now = crate::time::now_rfc3339();
    let webhook = aaf_store::Webhook {
        id: uuid::Uuid::now_v7().to_string(),
        org_id: admin.org.id.clone(),
        url: url.to_string(),
        events,
        format,
        secret: aaf_core::secrets::generate_token(SECRET_PREFIX),
        created_at: now.clone(),
        created_by: Some(admin.user_id.clone()),
        disabled_at: None,
    };
    let unit = WriteUnit {
        mutations: vec![Mutation::InsertWebhook(webhook.clone())],
        action: None,
        events: vec![NewEvent {
            org_id: admin.org.id.clone(),
            ts: now,
            agent_id: None,
            action_id: None,
            event_type: event_types::WEBHOOK_CREATED.to_string(),
            data: serde_json::json!({
                "webhook_id": webhook.id,
                "url": webhook.url,
                "events": webhook.events,
                "format": webhook.format,
                "by": admin.user_id,
            }),
        }],
    };
    state
        .writer
        .submit(unit)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the webhook could not be recorded: {e}")))?;
    let secret = webhook.secret.clone();
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: webhook.into(),
            secret,
        }),
    ))
}

/// Lists the organisation's webhooks (without secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the webhooks", body = WebhookList),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin or auditor", body = ErrorBody),
    ))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<WebhookList>, ApiError> {
    let webhooks = state.store.list_webhooks(&user.org.id).await?;
    Ok(Json(WebhookList {
        webhooks: webhooks.into_iter().map(Into::into).collect(),
    }))
}

/// Disables a webhook: it receives nothing more; its delivery log is kept.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "disabled"),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no live webhook with this id in the organisation", body = ErrorBody),
    ))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let now = crate::time::now_rfc3339();
    let unit = WriteUnit {
        mutations: vec![Mutation::DisableWebhook {
            org_id: admin.org.id.clone(),
            id: id.clone(),
            now: now.clone(),
        }],
        action: None,
        events: vec![NewEvent {
            org_id: admin.org.id.clone(),
            ts: now,
            agent_id: None,
            action_id: None,
            event_type: event_types::WEBHOOK_DISABLED.to_string(),
            data: serde_json::json!({"webhook_id": id, "by": admin.user_id}),
        }],
    };
    state.writer.submit(unit).await.map_err(|e| match e {
        aaf_store::StoreError::NotFound(_) => ApiError::NotFound(format!("no webhook {id}")),
        e => ApiError::Unavailable(format!("the change could not be recorded: {e}")),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/webhooks/{id}/deliveries` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// At most this many, 1 to 1000; default 100. Newest first.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One delivery and its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Delivery id (also sent as `X-AAF-Delivery`).
    pub id: String,
    /// The event.
    pub event: String,
    /// The action it is about.
    pub action_id: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (RFC 3339), while pending.
    pub next_attempt_at: String,
    /// HTTP status of the last attempt, if the receiver answered.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// The body sent.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// The webhook's deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<DeliveryView>,
}

/// The delivery log of a webhook: every event queued for it, its attempts and outcome.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "webhook id"), DeliveriesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the deliveries, newest first", body = DeliveryList),
        (status = 400, description = "bad query parameter", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin or auditor", body = ErrorBody),
        (status = 404, description = "no webhook with this id in the organisation", body = ErrorBody),
    ))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
    Path(id): Path<String>,
    query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::from_query_rejection(&e))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", "must be from 1 to 1000"));
    }
    let known = state
        .store
        .list_webhooks(&user.org.id)
        .await?
        .iter()
        .any(|w| w.id == id);
    if !known {
        return Err(ApiError::NotFound(format!("no webhook {id}")));
    }
    let deliveries = state
        .store
        .list_deliveries(&user.org.id, &id, limit)
        .await?;
    Ok(Json(DeliveryList {
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryView {
                id: d.id,
                event: d.event,
                action_id: d.action_id,
                status: d.status,
                attempts: d.attempts,
                next_attempt_at: d.next_attempt_at,
                last_status_code: d.last_status_code,
                last_error: d.last_error,
                payload: d.payload,
                created_at: d.created_at,
                updated_at: d.updated_at,
            })
            .collect(),
    }))
}
