//! Tool-definition pinning: protection against a "rug pull", an upstream MCP server that
//! changes what a tool says it does after it was trusted (docs/mcp.md, "Pinning").
//!
//! The first time AAF sees a tool of a server for an organisation (in a listing or a call),
//! it pins the tool's definition: the hex SHA-256 of the RFC 8785 (JCS) canonical JSON of
//! its name, title, description, input and output schema and annotations
//! ([`definition`]). From then on a definition with another hash is hidden from `tools/list`
//! and refused by `tools/call` (a deny whose reason starts `mcp_tool_changed:`) until an
//! admin accepts the new version (`POST /v1/mcp/servers/{server}/tools/{tool}/accept`). Each
//! step is an audit event (`mcp_tool.pinned`, `mcp_tool.changed`, `mcp_tool.accepted`).
//!
//! A definition is also scanned by the prompt-injection detector ([`injections`]): one that
//! shows injection at first sight is not accepted by itself but flagged (hidden and refused,
//! reason `mcp_tool_injection:`, event `mcp_tool.flagged`) until an admin reviews and
//! accepts it the same way; a changed definition's `mcp_tool.changed` event names what the
//! detector found in it.

use aaf_core::audit::event_types;
use aaf_store::{McpToolPin, Mutation, NewEvent, WriteUnit};
use rmcp::model::Tool;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::org_event as event;
use crate::app::AppState;

/// The prefix of the reason of a call refused because its tool changed.
pub const CHANGED_PREFIX: &str = "mcp_tool_changed:";

/// The prefix of the reason of a call refused because its tool's definition looks like a
/// prompt injection and no admin accepted it.
pub const INJECTION_PREFIX: &str = "mcp_tool_injection:";

/// The accepted hash of a pin whose first definition was flagged: no definition has it, so
/// the tool stays refused until an admin accepts the waiting definition.
pub(crate) const UNREVIEWED: &str = "unreviewed";

/// What the prompt-injection detector finds in a tool's definition (its name, title,
/// description, the descriptions and other strings of its schemas, its annotations):
/// `[{detector, sub_kind, path, confidence}]`, empty when nothing.
pub fn injections(definition: &Value) -> Vec<Value> {
    use aaf_core::detect::{scan_value, DetectorSet, Kind, ScanOptions};
    let options = ScanOptions::only(DetectorSet::of_kind(Kind::PromptInjection));
    scan_value(definition, &options)
        .detections
        .into_iter()
        .map(|d| {
            json!({
                "detector": d.detector.name(),
                "sub_kind": d.sub_kind,
                "path": d.path,
                "confidence": d.confidence,
            })
        })
        .collect()
}

/// The pinned part of a tool: `{"name", "title", "description", "inputSchema",
/// "outputSchema", "annotations"}` (absent members as `null`).
pub fn definition(tool: &Tool) -> Value {
    json!({
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "outputSchema": tool.output_schema,
        "annotations": tool.annotations,
    })
}

/// The hex SHA-256 of the RFC 8785 canonical JSON of `definition`.
///
/// # Errors
///
/// When the definition cannot be canonicalised (a number JSON cannot hold).
pub fn hash(definition: &Value) -> Result<String, String> {
    let canonical = serde_jcs::to_vec(definition)
        .map_err(|e| format!("the tool definition cannot be canonicalised: {e}"))?;
    Ok(hex::encode(Sha256::digest(canonical)))
}

/// How a tool's current definition stands against its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinStatus {
    /// It is the accepted definition (or was pinned just now, at first sight).
    Accepted,
    /// It differs from the accepted one: hidden and refused until an admin accepts it.
    Changed {
        /// The accepted definition's hash.
        pinned: String,
        /// The current definition's hash.
        current: String,
    },
    /// It showed prompt injection when first seen and no admin accepted it yet: hidden and
    /// refused.
    Flagged {
        /// The current definition's hash (what an admin accepts).
        current: String,
    },
}

/// Checks `tool` of `server` against the organisation's pin, pinning it at first sight and
/// recording a change (once per new definition).
///
/// # Errors
///
/// When the pin cannot be read or written (the caller refuses the tool: fail closed).
pub async fn check(
    state: &AppState,
    org_id: &str,
    server: &str,
    tool: &Tool,
) -> Result<PinStatus, String> {
    let definition = definition(tool);
    let current = hash(&definition)?;
    let name = tool.name.as_ref();
    let read = |e: aaf_store::StoreError| format!("the pinned definition could not be read: {e}");
    let pin = state
        .store
        .get_mcp_tool_pin(org_id, server, name)
        .await
        .map_err(read)?;
    let now = state.clock.now_rfc3339();
    let pin = match pin {
        Some(pin) => pin,
        None => {
            let found = injections(&definition);
            let (pin, event) = if found.is_empty() {
                let event = event(
                    org_id,
                    &now,
                    event_types::MCP_TOOL_PINNED,
                    json!({"server": server, "tool": name, "hash": current}),
                );
                let pin = McpToolPin {
                    org_id: org_id.to_string(),
                    server: server.to_string(),
                    tool: name.to_string(),
                    hash: current.clone(),
                    definition: definition.clone(),
                    pending_hash: None,
                    pending_definition: None,
                    first_seen_at: now.clone(),
                    accepted_at: now.clone(),
                    accepted_by: None,
                    changed_at: None,
                };
                (pin, event)
            } else {
                let event = event(
                    org_id,
                    &now,
                    event_types::MCP_TOOL_FLAGGED,
                    json!({"server": server, "tool": name, "hash": current,
                        "definition": definition, "detections": found}),
                );
                tracing::warn!(%org_id, %server, tool = %name, "mcp: a tool's definition looks like a prompt injection; it is refused until an admin accepts it");
                let pin = McpToolPin {
                    org_id: org_id.to_string(),
                    server: server.to_string(),
                    tool: name.to_string(),
                    hash: UNREVIEWED.to_string(),
                    definition: Value::Null,
                    pending_hash: Some(current.clone()),
                    pending_definition: Some(definition.clone()),
                    first_seen_at: now.clone(),
                    accepted_at: now.clone(),
                    accepted_by: None,
                    changed_at: Some(now.clone()),
                };
                (pin, event)
            };
            write(state, Mutation::PinMcpTool(pin), event).await?;
            // Another node may have pinned it first: what is stored is the pin.
            state
                .store
                .get_mcp_tool_pin(org_id, server, name)
                .await
                .map_err(read)?
                .ok_or_else(|| "the pinned definition was not stored".to_string())?
        }
    };
    if pin.hash == current {
        return Ok(PinStatus::Accepted);
    }
    if pin.hash == UNREVIEWED && pin.pending_hash.as_deref() == Some(current.as_str()) {
        return Ok(PinStatus::Flagged { current });
    }
    if pin.pending_hash.as_deref() != Some(current.as_str()) {
        let found = injections(&definition);
        let event = event(
            org_id,
            &now,
            event_types::MCP_TOOL_CHANGED,
            json!({"server": server, "tool": name, "pinned_hash": pin.hash,
                "hash": current, "definition": definition, "detections": found}),
        );
        write(
            state,
            Mutation::FlagMcpToolChange {
                org_id: org_id.to_string(),
                server: server.to_string(),
                tool: name.to_string(),
                hash: current.clone(),
                definition,
                now,
            },
            event,
        )
        .await?;
        tracing::warn!(%org_id, %server, tool = %name, "mcp: a tool's definition changed since it was pinned; it is refused until an admin accepts it");
    }
    Ok(PinStatus::Changed {
        pinned: pin.hash,
        current,
    })
}

/// The reason a call of a tool flagged at first sight is refused with.
pub fn flagged_reason(server: &str, tool: &str, current: &str) -> String {
    format!(
        "{INJECTION_PREFIX} the definition of {server}/{tool} looks like a prompt injection; an admin must review and accept it first: POST /v1/mcp/servers/{server}/tools/{tool}/accept {{\"hash\": \"{current}\"}}"
    )
}

/// The reason a call of a changed tool is refused with.
pub fn changed_reason(server: &str, tool: &str, current: &str) -> String {
    format!(
        "{CHANGED_PREFIX} the definition of {server}/{tool} changed since it was pinned (a possible rug pull); an admin must accept it first: POST /v1/mcp/servers/{server}/tools/{tool}/accept {{\"hash\": \"{current}\"}}"
    )
}

async fn write(state: &AppState, mutation: Mutation, event: NewEvent) -> Result<(), String> {
    state
        .writer
        .submit(WriteUnit {
            mutations: vec![mutation],
            action: None,
            events: vec![event],
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("the pinned definition could not be recorded: {e}"))
}
