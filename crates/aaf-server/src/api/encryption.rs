//! `/v1/encryption`: the state of encryption at rest, key rotation and crypto-shredding
//! (docs/encryption.md). Handlers parse, call [`crate::encryption`], and map errors.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::body::{json_body, Object};
use crate::app::AppState;
use crate::auth::UserAuth;
use crate::encryption::KeyOpError;
use crate::error::{ApiError, ErrorBody};

/// One data key, without its key material.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataKeyView {
    /// `dk-` and a UUIDv7.
    pub id: String,
    /// The master key that wraps it.
    pub master_key_id: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When it stopped sealing new writes; `null` for the active key.
    pub retired_at: Option<String>,
    /// When it was destroyed (crypto-shredded).
    pub destroyed_at: Option<String>,
    /// Whether it seals new writes.
    pub active: bool,
}

/// `GET /v1/encryption`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EncryptionView {
    /// Whether new writes are sealed (a master key is configured).
    pub enabled: bool,
    /// The configured master key's id (never the key).
    pub master_key_id: Option<String>,
    /// The algorithm: `XChaCha20-Poly1305`.
    pub algorithm: &'static str,
    /// The organisation's data keys, oldest first.
    pub keys: Vec<DataKeyView>,
}

fn key_view(row: aaf_store::encryption::DataKeyRow) -> DataKeyView {
    DataKeyView {
        active: row.retired_at.is_none() && row.destroyed_at.is_none(),
        id: row.id,
        master_key_id: row.master_key_id,
        created_at: row.created_at,
        retired_at: row.retired_at,
        destroyed_at: row.destroyed_at,
    }
}

impl From<KeyOpError> for ApiError {
    fn from(e: KeyOpError) -> ApiError {
        match e {
            KeyOpError::NotConfigured => ApiError::Conflict(e.to_string()),
            KeyOpError::NotFinal(..) | KeyOpError::LegalHold(_) => {
                ApiError::Conflict(e.to_string())
            }
            KeyOpError::Store(e) => e.into(),
        }
    }
}

/// Whether data is encrypted at rest, and the organisation's data keys.
#[utoipa::path(get, path = "/v1/encryption", tag = "encryption",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the state of encryption at rest", body = EncryptionView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin or auditor", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn get_encryption(
    State(state): State<AppState>,
    UserAuth(user): UserAuth,
) -> Result<Json<EncryptionView>, ApiError> {
    let keys = state.store.list_data_keys(&user.org.id).await?;
    Ok(Json(EncryptionView {
        enabled: state.store.encryption_enabled(),
        master_key_id: state.store.master_key_id().map(str::to_string),
        algorithm: "XChaCha20-Poly1305",
        keys: keys.into_iter().map(key_view).collect(),
    }))
}

/// Rotates the organisation's data key: new writes are sealed under a new key; what the old
/// one sealed stays readable. Recorded as `encryption.key_rotated`.
#[utoipa::path(post, path = "/v1/encryption/rotate", tag = "encryption",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the new active key", body = DataKeyView),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 409, description = "encryption at rest is not configured", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn rotate(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
) -> Result<Json<DataKeyView>, ApiError> {
    let now = state.clock.now_rfc3339();
    let key = crate::encryption::rotate(
        &state.store,
        &state.writer,
        &admin.org.id,
        &admin.user_id,
        &now,
    )
    .await?;
    Ok(Json(key_view(key)))
}

/// What to crypto-shred.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, tag = "scope", rename_all = "snake_case")]
pub enum ShredBody {
    /// One action: its own data key is destroyed and its events' payloads removed.
    Action {
        /// The action (final: not pending approval, approved or executing).
        action_id: String,
    },
    /// Everything the organisation sealed so far: every data key but a new one is destroyed.
    Organisation {
        /// The organisation's id, again, to confirm.
        confirm: String,
    },
}

/// What was shredded.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShredView {
    /// `action` or `organisation`.
    pub scope: &'static str,
    /// The action, for an action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// The destroyed data keys, for the organisation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destroyed_keys: Option<Vec<String>>,
    /// RFC 3339 UTC.
    pub shredded_at: String,
}

/// Crypto-shreds one action or everything the organisation sealed so far. What was sealed
/// can no longer be read by anyone; the audit chain, the Merkle tree and every proof still
/// verify, and readers see why a payload is withheld. Recorded as
/// `encryption.action_shredded` or `encryption.org_shredded`.
#[utoipa::path(post, path = "/v1/encryption/shred", tag = "encryption",
    request_body = ShredBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "shredded", body = ShredView),
        (status = 400, description = "malformed body, or `confirm` is not the organisation's id", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such action (`action_id`)", body = ErrorBody),
        (status = 409, description = "encryption is not configured; a legal hold is in force; the action is not final, was recorded in clear, or is shredded already", body = ErrorBody),
        (status = 503, description = "storage unavailable", body = ErrorBody),
    ))]
pub async fn shred(
    State(state): State<AppState>,
    UserAuth(admin): UserAuth,
    body: Result<Json<Object<ShredBody>>, JsonRejection>,
) -> Result<Json<ShredView>, ApiError> {
    let body = json_body(&state, body)?;
    let now = state.clock.now_rfc3339();
    let org_id = &admin.org.id;
    match body {
        ShredBody::Action { action_id } => {
            if action_id.trim().is_empty() {
                return Err(ApiError::field("action_id", "must not be empty"));
            }
            crate::encryption::shred_action(
                &state.store,
                &state.writer,
                org_id,
                &action_id,
                &admin.user_id,
                &now,
            )
            .await?;
            state.action_events.announce(&action_id);
            Ok(Json(ShredView {
                scope: "action",
                action_id: Some(action_id),
                destroyed_keys: None,
                shredded_at: now,
            }))
        }
        ShredBody::Organisation { confirm } => {
            if confirm != *org_id {
                return Err(ApiError::field(
                    "confirm",
                    "must be the organisation's id: shredding cannot be undone",
                ));
            }
            let destroyed = crate::encryption::shred_org(
                &state.store,
                &state.writer,
                org_id,
                &admin.user_id,
                &now,
            )
            .await?;
            Ok(Json(ShredView {
                scope: "organisation",
                action_id: None,
                destroyed_keys: Some(destroyed),
                shredded_at: now,
            }))
        }
    }
}
