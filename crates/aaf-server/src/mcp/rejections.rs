//! Rejected MCP requests in the audit chain (`request.rejected`, path `/mcp`): a message the
//! transport refuses (malformed JSON-RPC, a header that contradicts the body, a body too
//! large, a client that does not accept the transport's media types, an unknown session),
//! and a request the gateway refuses (an unknown method or tool). Nothing of them reaches an
//! upstream. Requests without a valid key are recorded by the authentication layer
//! (`auth.failed`, `agent_key.refused`) and never get here.

use aaf_core::audit::event_types;
use aaf_store::{AgentPrincipal, NewEvent, WriteUnit};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::Principal;

/// The most of a refusal's body read to find its JSON-RPC error message, in bytes.
const MAX_REFUSAL_BODY: usize = 16 * 1024;

/// The member of a JSON-RPC error's `data` that says the gateway recorded the refusal
/// already (so that the transport's answer is not recorded a second time).
pub const RECORDED: &str = "aaf_recorded";

/// The `data` of a JSON-RPC error the gateway recorded.
pub fn recorded_data() -> Value {
    json!({ RECORDED: true })
}

/// How a request was refused: the HTTP status (when the transport answered it) and the
/// JSON-RPC error code (when there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status, e.g. 400, 406, 413.
    pub status: Option<u16>,
    /// The JSON-RPC error code, e.g. -32601 (method not found), -32602 (invalid params).
    pub code: Option<i64>,
}

/// Records one rejected request of the agent. A failure to record is logged: the request is
/// refused either way.
pub async fn record(
    state: &AppState,
    agent: &AgentPrincipal,
    refusal: Refusal,
    method: Option<&str>,
    reason: &str,
) {
    let unit = WriteUnit {
        mutations: Vec::new(),
        action: None,
        events: vec![NewEvent {
            org_id: agent.org.id.clone(),
            ts: state.clock.now_rfc3339(),
            agent_id: Some(agent.agent.id.clone()),
            action_id: None,
            event_type: event_types::REQUEST_REJECTED.to_string(),
            data: json!({
                "status": refusal.status,
                "code": refusal.code,
                "reason": reason,
                "path": super::PATH,
                "method": method,
            }),
        }],
    };
    if let Err(e) = state.writer.submit(unit).await {
        tracing::error!(error = %e, "could not record a rejected MCP request in the audit log");
    }
}

/// Middleware of `/mcp`: a `4xx` answer of the transport to an authenticated agent is
/// recorded, with the JSON-RPC error's message when the body holds one. The answer is passed
/// on unchanged.
pub async fn audit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let agent = match request.extensions().get::<Principal>() {
        Some(Principal::Agent(agent)) => Some(agent.clone()),
        _ => None,
    };
    let method = request
        .headers()
        .get("mcp-method")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let response = next.run(request).await;
    let Some(agent) = agent.filter(|_| response.status().is_client_error()) else {
        return response;
    };
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let (reason, code, recorded, body) = match axum::body::to_bytes(body, MAX_REFUSAL_BODY).await {
        Ok(bytes) => {
            let json = serde_json::from_slice::<Value>(&bytes).ok();
            let recorded = json
                .as_ref()
                .and_then(|v| v.pointer(&format!("/error/data/{RECORDED}")))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let code = json
                .as_ref()
                .and_then(|v| v.pointer("/error/code"))
                .and_then(Value::as_i64);
            (
                message_of(json.as_ref(), &bytes),
                code,
                recorded,
                Body::from(bytes),
            )
        }
        Err(_) => (None, None, false, Body::empty()),
    };
    if recorded {
        return Response::from_parts(parts, body);
    }
    let reason = reason.unwrap_or_else(|| {
        parts
            .status
            .canonical_reason()
            .unwrap_or("refused")
            .to_string()
    });
    let refusal = Refusal {
        status: Some(status),
        code,
    };
    record(&state, &agent, refusal, method.as_deref(), &reason).await;
    Response::from_parts(parts, body)
}

/// The message of a JSON-RPC error body (`{"error": {"message"}}`), or the body's text.
fn message_of(json: Option<&Value>, bytes: &[u8]) -> Option<String> {
    if let Some(message) = json
        .and_then(|v| v.pointer("/error/message"))
        .and_then(Value::as_str)
    {
        return Some(message.to_string());
    }
    let text = String::from_utf8_lossy(bytes).trim().to_string();
    (!text.is_empty()).then(|| text.chars().take(500).collect())
}
