//! Authentication of API callers.
//!
//! Two kinds of principals present bearer credentials (`Authorization: Bearer <secret>`):
//! people and automation with organisation tokens ([`AdminAuth`], role `admin` for now; the
//! other roles come with RBAC), and agents with their API keys ([`AgentAuth`]). Only the
//! SHA-256 of a secret is ever looked up or stored. Every failed authentication is answered
//! 401 with the same message whatever the cause of the mismatch, and is recorded in the audit
//! log (the `system` chain, as no organisation is known) without the presented secret.

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use std::net::SocketAddr;

use aaf_core::audit::event_types;
use aaf_core::secrets::hash_token;
use aaf_store::{AgentPrincipal, NewEvent, TokenPrincipal, WriteUnit, SYSTEM_CHAIN};

use crate::app::AppState;
use crate::error::ApiError;
use crate::time::now_rfc3339;

/// The message of every 401 for a credential that was presented but did not match.
const INVALID_CREDENTIALS: &str =
    "invalid credentials: the bearer token or API key is unknown, revoked or expired";

/// An authenticated organisation admin.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub TokenPrincipal);

/// An authenticated agent (its key is live).
#[derive(Debug, Clone)]
pub struct AgentAuth(pub AgentPrincipal);

/// The peer address of the request, when the server knows it.
pub fn peer_ip(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
}

fn bearer(parts: &Parts) -> Result<&str, &'static str> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or("missing credentials: send Authorization: Bearer <token>")?;
    let value = value
        .to_str()
        .map_err(|_| "malformed Authorization header")?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or("malformed Authorization header: expected `Bearer <token>`")?
        .trim();
    if token.is_empty() {
        return Err("malformed Authorization header: the token is empty");
    }
    Ok(token)
}

/// Records a rejected request in the `system` chain (never the credential) and returns the
/// 401 to answer. A failure to record is logged; the answer stays 401.
async fn reject(state: &AppState, parts: &Parts, reason: &str, status: u16) -> ApiError {
    let unit = WriteUnit {
        action: None,
        events: vec![NewEvent {
            org_id: SYSTEM_CHAIN.to_string(),
            ts: now_rfc3339(),
            agent_id: None,
            action_id: None,
            event_type: event_types::REQUEST_REJECTED.to_string(),
            data: serde_json::json!({
                "status": status,
                "reason": reason,
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "ip_address": peer_ip(parts),
                "credential_presented": parts.headers.contains_key(header::AUTHORIZATION),
            }),
        }],
    };
    if let Err(e) = state.writer.submit(unit).await {
        tracing::error!(error = %e, "could not record a rejected request in the audit log");
    }
    ApiError::Unauthorized(reason.to_string())
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = match bearer(parts) {
            Ok(t) => t,
            Err(msg) => return Err(reject(state, parts, msg, 401).await),
        };
        let principal = state.store.find_token(&hash_token(token)).await?;
        match principal {
            Some(p) if p.role == "admin" => Ok(AdminAuth(p)),
            Some(p) => Err(ApiError::Forbidden(format!(
                "this endpoint needs the admin role; the token has role {}",
                p.role
            ))),
            None => Err(reject(state, parts, INVALID_CREDENTIALS, 401).await),
        }
    }
}

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = match bearer(parts) {
            Ok(t) => t,
            Err(msg) => return Err(reject(state, parts, msg, 401).await),
        };
        let key_hash = hash_token(key);
        let principal = match state.key_cache.get(&key_hash) {
            Some(p) => p,
            None => {
                let Some(p) = state.store.find_agent_key(&key_hash).await? else {
                    return Err(reject(state, parts, INVALID_CREDENTIALS, 401).await);
                };
                if !p.revoked {
                    state.key_cache.put(&key_hash, &p);
                }
                p
            }
        };
        if principal.revoked {
            return Err(reject(state, parts, INVALID_CREDENTIALS, 401).await);
        }
        if let Some(expires_at) = &principal.expires_at {
            // RFC 3339 UTC strings of the same format compare in time order.
            if expires_at.as_str() <= now_rfc3339().as_str() {
                return Err(reject(
                    state,
                    parts,
                    "the API key has expired; create a new key for the agent",
                    401,
                )
                .await);
            }
        }
        Ok(AgentAuth(principal))
    }
}
