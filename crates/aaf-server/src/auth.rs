//! Authentication and authorisation of API callers.
//!
//! One middleware, [`authorize`], runs on every route. It looks the route up in the
//! permission table ([`crate::rbac::PERMISSIONS`]), authenticates the bearer credential
//! (`Authorization: Bearer <secret>`), checks that the caller's kind and role are allowed,
//! verifies the RFC 9421 request signature of agents registered with a public key, and puts
//! the [`Principal`] in the request's extensions. Handlers take it with the [`UserAuth`],
//! [`AgentAuth`] or [`AnyAuth`] extractors, which never authenticate by themselves.
//!
//! Credentials: agent API keys start with `aaf_ak_`; anything else is a user's personal
//! access token. Only the SHA-256 of a secret is looked up or stored: the secret itself is
//! never compared with anything, and the stored digest is compared in constant time.
//!
//! Failures:
//! - 401 for missing, malformed, unknown, revoked or expired credentials and for bad
//!   signatures. Unknown and wrong credentials get the same message and take the same path
//!   (one digest lookup). Each is audited: in the organisation's chain when the credential
//!   names one (revoked or expired key, bad signature, replayed nonce), else in the `system`
//!   chain; never with the presented secret.
//! - 429 once a source address has failed authentication more than
//!   `auth.failed_auth_per_minute` times in a minute, until the budget refills: by default
//!   ([`FailedAuthLockout::Failures`]) only its failing requests (each still checked, so
//!   valid credentials from the same address, e.g. behind a shared NAT, are served); with
//!   [`FailedAuthLockout::Address`] every request from it that needs authentication, unchecked.
//!   The block's start is audited, not each refusal.
//! - 403 for an authenticated caller whose kind or role the table does not list, and for
//!   every route missing from the table (fail closed).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aaf_core::audit::event_types;
use aaf_core::identity::Role;
use aaf_core::secrets::{hash_token, AGENT_KEY_PREFIX};
use aaf_store::{
    AgentPrincipal, Mutation, NewEvent, Org, StoreError, TokenPrincipal, WriteUnit, SYSTEM_CHAIN,
};
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::app::AppState;
use crate::config::FailedAuthLockout;
use crate::error::ApiError;
use crate::rbac::{self, Caller};
use crate::time::{format_rfc3339, now_rfc3339};

/// The message of every 401 for a credential that was presented but matched nothing.
const INVALID_CREDENTIALS: &str =
    "invalid credentials: the bearer token or API key is unknown, revoked or expired";

/// Most source addresses remembered as blocked; beyond it, expired blocks are dropped.
const MAX_BLOCKED: usize = 100_000;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A user with a personal access token.
    User(TokenPrincipal),
    /// An agent with a live key (and a verified signature, if it has a public key).
    Agent(AgentPrincipal),
}

impl Principal {
    /// The caller's organisation.
    pub fn org(&self) -> &Org {
        match self {
            Principal::User(u) => &u.org,
            Principal::Agent(a) => &a.org,
        }
    }

    /// The caller's kind and role, as the permission table names them. A user whose stored
    /// role is unknown has none (and is refused everywhere but public routes).
    fn caller(&self) -> Option<Caller> {
        match self {
            Principal::User(u) => u.role.parse::<Role>().ok().map(Caller::User),
            Principal::Agent(_) => Some(Caller::Agent),
        }
    }

    /// How audit events name the caller: `user:<id>` or `agent:<id>`.
    pub fn audit_name(&self) -> String {
        match self {
            Principal::User(u) => format!("user:{}", u.user_id),
            Principal::Agent(a) => format!("agent:{}", a.agent.id),
        }
    }
}

/// The authenticated user of a users-only route.
#[derive(Debug, Clone)]
pub struct UserAuth(pub TokenPrincipal);

/// The authenticated agent of an agents-only route.
#[derive(Debug, Clone)]
pub struct AgentAuth(pub AgentPrincipal);

/// The authenticated caller of a route open to users and agents.
#[derive(Debug, Clone)]
pub struct AnyAuth(pub Principal);

/// Takes the principal the middleware stored (each request has one principal extractor).
fn principal(parts: &mut Parts) -> Result<Principal, ApiError> {
    parts.extensions.remove::<Principal>().ok_or_else(|| {
        ApiError::Internal(
            "route has no authenticated principal: is it in the permission table?".into(),
        )
    })
}

impl<S: Send + Sync> FromRequestParts<S> for UserAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match principal(parts)? {
            Principal::User(u) => Ok(UserAuth(u)),
            Principal::Agent(_) => Err(ApiError::Forbidden(
                "agents may not call this endpoint".into(),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match principal(parts)? {
            Principal::Agent(a) => Ok(AgentAuth(a)),
            Principal::User(_) => Err(ApiError::Forbidden(
                "only agents may call this endpoint".into(),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AnyAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        principal(parts).map(AnyAuth)
    }
}

/// The peer address of the request, when the server knows it. Forwarding headers such as
/// `X-Forwarded-For` are not trusted.
pub fn peer_ip(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

// ---------------------------------------------------------------------------------------------
// Failed-authentication limit

/// Per-source-address limit of failed authentications (governor's GCRA, keyed by IP).
pub struct FailedAuthLimiter {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    lockout: FailedAuthLockout,
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

impl std::fmt::Debug for FailedAuthLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailedAuthLimiter")
            .field("enabled", &self.limiter.is_some())
            .field("lockout", &self.lockout)
            .finish()
    }
}

impl FailedAuthLimiter {
    /// `per_minute` failures per address per minute, burst of the same size; 0 disables.
    /// `lockout` says what a blocked address is refused.
    pub fn new(per_minute: u32, lockout: FailedAuthLockout) -> FailedAuthLimiter {
        FailedAuthLimiter {
            limiter: NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            lockout,
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` stays blocked, if it is.
    fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let blocked = self.blocked.lock().ok()?;
        let until = blocked.get(&ip)?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a failure of `ip`; returns the block's length when this failure exhausts the
    /// address's budget.
    fn failed(&self, ip: IpAddr) -> Option<Duration> {
        let limiter = self.limiter.as_ref()?;
        let Err(not_until) = limiter.check_key(&ip) else {
            return None;
        };
        let wait = not_until
            .wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
            .max(Duration::from_secs(1));
        if let Ok(mut blocked) = self.blocked.lock() {
            if blocked.len() >= MAX_BLOCKED {
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(ip, Instant::now() + wait);
        }
        Some(wait)
    }

    /// Drops state of addresses that are no longer limited (call now and then).
    pub fn prune(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
        }
        if let Ok(mut blocked) = self.blocked.lock() {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The middleware

/// Authenticates and authorises every request against [`rbac::PERMISSIONS`]; see the module
/// documentation. Installed with `route_layer`, so it knows the matched route.
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // A 401 of the MCP endpoint points at its protected-resource metadata (RFC 9728
    // section 5.1, as the MCP authorization specification asks).
    let metadata = (request.uri().path() == crate::mcp::PATH)
        .then(|| crate::mcp::metadata_url(&state, request.headers()));
    match authorize_request(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => {
            let mut response = error.into_response();
            if let Some(url) = metadata.filter(|_| response.status() == StatusCode::UNAUTHORIZED) {
                let challenge = format!("Bearer realm=\"aaf\", resource_metadata=\"{url}\"");
                if let Ok(value) = axum::http::HeaderValue::from_str(&challenge) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::WWW_AUTHENTICATE, value);
                }
            }
            response
        }
    }
}

async fn authorize_request(state: &AppState, request: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = request.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map_or("", |p| p.as_str());
    let Some(permission) = rbac::permission_for(&parts.method, route) else {
        if rbac::PERMISSIONS.iter().any(|p| p.path == route) {
            return Err(ApiError::MethodNotAllowed(format!(
                "{} is not allowed on {route}",
                parts.method
            )));
        }
        tracing::error!(route = %route, method = %parts.method, "route missing from the permission table; refused");
        return Err(ApiError::Forbidden(
            "this endpoint has no permission rule".into(),
        ));
    };
    let path = permission.path;
    if rbac::allows(permission, Caller::Public) {
        return Ok(Request::from_parts(parts, body));
    }
    // Under `address` lockout a blocked address is refused before its credentials are
    // checked; under `failures` they are checked, and only a failure is refused (429, see
    // `reject_unknown` and `reject_agent`).
    if state.auth_limiter.lockout == FailedAuthLockout::Address {
        if let Some(wait) = peer_ip(&parts).and_then(|ip| state.auth_limiter.blocked_for(ip)) {
            return Err(ApiError::TooManyRequests {
                message: "too many failed authentications from this address; try again later"
                    .into(),
                retry_after_secs: wait.as_secs().max(1),
            });
        }
    }
    // With `metrics.token` set, that token alone scrapes /metrics (no user or agent).
    if let (crate::metrics::PATH, Some(token)) = (path, &state.config.metrics.token) {
        return match bearer(&parts) {
            Ok(presented) if crate::metrics::token_matches(presented, token) => {
                Ok(Request::from_parts(parts, body))
            }
            Ok(_) => Err(reject_unknown(state, &parts, INVALID_CREDENTIALS).await),
            Err(message) => Err(reject_unknown(state, &parts, message).await),
        };
    }
    let principal = authenticate(state, &parts).await?;
    let allowed = principal
        .caller()
        .is_some_and(|caller| rbac::allows(permission, caller));
    if !allowed {
        let who = match &principal {
            Principal::User(u) => format!("a user with role {}", u.role),
            Principal::Agent(_) => "an agent".to_string(),
        };
        let may: Vec<&str> = permission.allow.iter().map(|c| c.label()).collect();
        return Err(ApiError::Forbidden(format!(
            "{} {path} is for: {}; the caller is {who}",
            parts.method,
            may.join(", ")
        )));
    }
    let body = match &principal {
        Principal::Agent(agent) if agent.agent.public_key.is_some() => {
            let max = state.config.limits.max_body_bytes;
            let bytes = axum::body::to_bytes(body, max).await.map_err(|e| {
                if is_length_limit(&e) {
                    ApiError::PayloadTooLarge(max)
                } else {
                    ApiError::BadRequest {
                        field: None,
                        message: format!("could not read request body: {e}"),
                    }
                }
            })?;
            verify_signature(state, &parts, agent, &bytes).await?;
            axum::body::Body::from(bytes)
        }
        _ => body,
    };
    parts.extensions.insert(principal);
    Ok(Request::from_parts(parts, body))
}

/// Whether a body read failed because the body exceeded its length limit (413), rather than
/// for another reason such as `server.body_read_timeout_ms` (400).
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// The bearer secret of the request.
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

async fn authenticate(state: &AppState, parts: &Parts) -> Result<Principal, ApiError> {
    let secret = match bearer(parts) {
        Ok(s) => s,
        Err(msg) => return Err(reject_unknown(state, parts, msg).await),
    };
    let digest = hash_token(secret);
    let is_agent_key = secret
        .strip_prefix(AGENT_KEY_PREFIX)
        .is_some_and(|rest| rest.starts_with('_'));
    if is_agent_key {
        authenticate_agent(state, parts, &digest)
            .await
            .map(Principal::Agent)
    } else {
        match state.store.find_token(&digest).await? {
            Some(user) => Ok(Principal::User(user)),
            None => Err(reject_unknown(state, parts, INVALID_CREDENTIALS).await),
        }
    }
}

async fn authenticate_agent(
    state: &AppState,
    parts: &Parts,
    digest: &str,
) -> Result<AgentPrincipal, ApiError> {
    let principal = match state.key_cache.get(digest) {
        Some(p) => p,
        None => {
            let Some(p) = state.store.find_agent_key(digest).await? else {
                return Err(reject_unknown(state, parts, INVALID_CREDENTIALS).await);
            };
            if !p.revoked {
                state.key_cache.put(digest, &p);
                touch(state, &p.org.id, &p.key_id);
            }
            p
        }
    };
    if principal.revoked {
        return Err(reject_agent(
            state,
            parts,
            &principal,
            event_types::AGENT_KEY_REFUSED,
            "the API key has been revoked; use another key of the agent",
        )
        .await);
    }
    if let Some(expires_at) = &principal.expires_at {
        // RFC 3339 UTC strings of the same format compare in time order.
        if expires_at.as_str() <= now_rfc3339().as_str() {
            let message = format!(
                "the API key expired at {expires_at}; create or rotate a key for the agent"
            );
            return Err(reject_agent(
                state,
                parts,
                &principal,
                event_types::AGENT_KEY_REFUSED,
                &message,
            )
            .await);
        }
    }
    Ok(principal)
}

/// Records `last_used_at` of a key in the background (not on the request's path).
fn touch(state: &AppState, org_id: &str, key_id: &str) {
    let store = state.store.clone();
    let (org_id, key_id) = (org_id.to_string(), key_id.to_string());
    tokio::spawn(async move {
        if let Err(e) = store
            .touch_agent_key(&org_id, &key_id, &now_rfc3339())
            .await
        {
            tracing::warn!(error = %e, key_id = %key_id, "could not record the key's last use");
        }
    });
}

/// Verifies the RFC 9421 signature of an agent registered with a public key (keyid = the
/// agent's id; a nonce is required and may be used once), and records the nonce.
async fn verify_signature(
    state: &AppState,
    parts: &Parts,
    agent: &AgentPrincipal,
    body: &[u8],
) -> Result<(), ApiError> {
    let Some(key) = agent
        .agent
        .public_key
        .as_deref()
        .and_then(decode_public_key)
    else {
        return Err(reject_agent(
            state,
            parts,
            agent,
            event_types::AUTH_FAILED,
            "the agent's registered public key is unusable; register the agent again",
        )
        .await);
    };
    let target = target_uri(state, parts);
    let now = time::OffsetDateTime::now_utc();
    let mut policy = aaf_httpsig::VerifyPolicy::new(now.unix_timestamp());
    policy.window_secs = state.config.auth.signature_window_seconds;
    policy.require_nonce = true;
    let verified = aaf_httpsig::verify_request(
        &parts.method,
        &target,
        &parts.headers,
        body,
        &policy,
        |key_id| (key_id == agent.agent.id).then_some(key),
    );
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            let message = format!("request signature refused (RFC 9421): {e}");
            return Err(
                reject_agent(state, parts, agent, event_types::AUTH_FAILED, &message).await,
            );
        }
    };
    let Some(nonce) = verified.nonce else {
        return Err(reject_agent(
            state,
            parts,
            agent,
            event_types::AUTH_FAILED,
            "the signature has no nonce",
        )
        .await);
    };
    // Remember the nonce as long as a signature carrying it could still be accepted.
    let keep = policy
        .window_secs
        .saturating_add(policy.max_skew_secs)
        .saturating_add(60);
    let keep_until = now + Duration::from_secs(keep);
    let unit = WriteUnit {
        mutations: vec![Mutation::UseNonce {
            org_id: agent.org.id.clone(),
            agent_id: agent.agent.id.clone(),
            nonce,
            expires_at: format_rfc3339(keep_until),
        }],
        action: None,
        events: Vec::new(),
    };
    match state.writer.submit(unit).await {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict(_)) => Err(reject_agent(
            state,
            parts,
            agent,
            event_types::AUTH_FAILED,
            "request signature refused: its nonce was used before (replay)",
        )
        .await),
        Err(e) => Err(ApiError::Unavailable(format!(
            "could not record the signature nonce, so the request was refused: {e}"
        ))),
    }
}

/// `@target-uri` as the client addressed this server: `auth.public_base_url` (or `http://`
/// and the `Host` header) followed by the request's path and query.
fn target_uri(state: &AppState, parts: &Parts) -> String {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(base) = &state.config.auth.public_base_url {
        if let Ok(url) = url::Url::parse(base) {
            let authority = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_string(),
            };
            return aaf_httpsig::target_uri(url.scheme(), &authority, path_and_query);
        }
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    aaf_httpsig::target_uri("http", host, path_and_query)
}

/// Parses a stored public key: standard base64 of 32 raw Ed25519 bytes.
pub fn decode_public_key(text: &str) -> Option<ed25519_dalek::VerifyingKey> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()
}

/// A refusal of a credential that names no organisation: audited in the `system` chain,
/// counted against the source address, answered 401 (or 429 when this failure exhausts the
/// address's budget).
async fn reject_unknown(state: &AppState, parts: &Parts, reason: &str) -> ApiError {
    if let Some(refused) = already_blocked(state, parts, reason) {
        return refused;
    }
    let blocked = peer_ip(parts).and_then(|ip| state.auth_limiter.failed(ip));
    let status = if blocked.is_some() { 429 } else { 401 };
    record(
        state,
        parts,
        SYSTEM_CHAIN,
        None,
        event_types::REQUEST_REJECTED,
        reason,
        status,
    )
    .await;
    refusal(reason, blocked)
}

/// A refusal of an agent's credential (revoked, expired, bad signature): audited in the
/// agent's organisation's chain, counted against the source address.
async fn reject_agent(
    state: &AppState,
    parts: &Parts,
    agent: &AgentPrincipal,
    event_type: &str,
    reason: &str,
) -> ApiError {
    if let Some(refused) = already_blocked(state, parts, reason) {
        return refused;
    }
    let blocked = peer_ip(parts).and_then(|ip| state.auth_limiter.failed(ip));
    let status = if blocked.is_some() { 429 } else { 401 };
    record(
        state,
        parts,
        &agent.org.id,
        Some(agent),
        event_type,
        reason,
        status,
    )
    .await;
    refusal(reason, blocked)
}

/// The 429 of a failure from an address that is already blocked: neither counted again nor
/// audited (the block's start was).
fn already_blocked(state: &AppState, parts: &Parts, reason: &str) -> Option<ApiError> {
    let wait = peer_ip(parts).and_then(|ip| state.auth_limiter.blocked_for(ip))?;
    Some(refusal(reason, Some(wait)))
}

fn refusal(reason: &str, blocked: Option<Duration>) -> ApiError {
    match blocked {
        Some(wait) => ApiError::TooManyRequests {
            message: format!(
                "{reason}; too many failed authentications from this address, try again later"
            ),
            retry_after_secs: wait.as_secs().max(1),
        },
        None => ApiError::Unauthorized(reason.to_string()),
    }
}

/// Appends the refusal to a chain (never the credential). A failure to record is logged;
/// the answer stays a refusal.
async fn record(
    state: &AppState,
    parts: &Parts,
    chain: &str,
    agent: Option<&AgentPrincipal>,
    event_type: &str,
    reason: &str,
    status: u16,
) {
    let mut data = serde_json::json!({
        "status": status,
        "reason": reason,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "ip_address": peer_ip(parts).map(|ip| ip.to_string()),
        "credential_presented": parts.headers.contains_key(header::AUTHORIZATION),
    });
    if let (Some(agent), Some(map)) = (agent, data.as_object_mut()) {
        map.insert("key_id".into(), agent.key_id.clone().into());
    }
    let unit = WriteUnit {
        mutations: Vec::new(),
        action: None,
        events: vec![NewEvent {
            org_id: chain.to_string(),
            ts: now_rfc3339(),
            agent_id: agent.map(|a| a.agent.id.clone()),
            action_id: None,
            event_type: event_type.to_string(),
            data,
        }],
    };
    if let Err(e) = state.writer.submit(unit).await {
        tracing::error!(error = %e, "could not record a refused request in the audit log");
    }
}
