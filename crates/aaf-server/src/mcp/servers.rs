//! The upstream MCP servers an organisation's admins register (`/v1/mcp/servers`), and the
//! pinned definitions of their tools. Transport-free: the API handlers in
//! [`crate::api::mcp`] parse, call these and answer.
//!
//! A registered server is the organisation's alone; the configured ones (`mcp.servers`) are
//! offered to every organisation and their names cannot be registered. Registering a stdio
//! server (a command run on AAF's own host) needs `mcp.allow_api_stdio`; a streamable-HTTP
//! server's URL must pass the HTTP connector's destination checks. Settings may refer only
//! to secrets the operator made usable by the organisation (`secrets.<name>.orgs`). What is
//! shown and recorded of the settings never holds a header or environment value: only the
//! names and the secrets they refer to ([`ServerView`]).

use aaf_core::audit::event_types;
use aaf_store::{McpServer, McpToolPin, Mutation, NewEvent, StoreError, WriteUnit};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::org_event as event;
use super::upstream::Transport;
use crate::app::AppState;
use crate::runtime::control::ControlError;

/// A server as the API shows it: no header or environment value, only names.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ServerView {
    /// Its name; its tools are offered as `<name>__<tool>` and decided as
    /// `mcp:<name>/<tool>`.
    pub name: String,
    /// `config` (from `mcp.servers`, every organisation) or `api` (this organisation's).
    pub source: &'static str,
    /// `stdio` or `http`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The program (stdio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments (stdio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// The URL (HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The names of the environment variables (stdio) or headers (HTTP) AAF sets; their
    /// values are never shown.
    pub credentials: Vec<String>,
    /// The secrets those values refer to.
    pub secrets: Vec<String>,
    /// RFC 3339, for a registered server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Who registered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// RFC 3339, for a registered server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl ServerView {
    fn of(name: &str, source: &'static str, transport: &Transport) -> ServerView {
        let (kind, command, args, url, credentials) = match transport {
            Transport::Stdio {
                command, args, env, ..
            } => (
                "stdio",
                Some(command.clone()),
                Some(args.clone()),
                None,
                env.keys().cloned().collect(),
            ),
            Transport::Http { url, headers } => (
                "http",
                None,
                None,
                Some(url.clone()),
                headers.keys().cloned().collect(),
            ),
        };
        let mut secrets = transport.secret_names();
        secrets.sort();
        secrets.dedup();
        ServerView {
            name: name.to_string(),
            source,
            kind,
            command,
            args,
            url,
            credentials,
            secrets,
            created_at: None,
            created_by: None,
            updated_at: None,
        }
    }

    fn of_record(record: &McpServer) -> Result<ServerView, ControlError> {
        let transport: Transport =
            serde_json::from_value(record.transport.clone()).map_err(|e| {
                ControlError::Unavailable(format!(
                    "the stored settings of the MCP server {:?} cannot be read: {e}",
                    record.name
                ))
            })?;
        let mut view = ServerView::of(&record.name, "api", &transport);
        view.created_at = Some(record.created_at.clone());
        view.created_by.clone_from(&record.created_by);
        view.updated_at = Some(record.updated_at.clone());
        Ok(view)
    }

    /// The form audit events record (the view without times).
    fn audit(&self) -> Value {
        json!({"type": self.kind, "command": self.command, "args": self.args, "url": self.url,
            "credentials": self.credentials, "secrets": self.secrets})
    }
}

/// A tool's pinned definition as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PinView {
    /// The tool's name at its server.
    pub tool: String,
    /// `accepted`; `changed`: a new definition waits for an admin (the tool is hidden and
    /// refused until then); or `flagged`: the first definition looked like a prompt
    /// injection and waits for an admin the same way (`hash` is then `unreviewed`).
    pub status: &'static str,
    /// Hex SHA-256 of the accepted definition (RFC 8785 canonical JSON).
    pub hash: String,
    /// The accepted definition.
    pub definition: Value,
    /// The changed definition's hash, to accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_hash: Option<String>,
    /// The changed definition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_definition: Option<Value>,
    /// RFC 3339.
    pub first_seen_at: String,
    /// RFC 3339.
    pub accepted_at: String,
    /// The admin who accepted the definition in force (none: pinned at first sight).
    pub accepted_by: Option<String>,
    /// When the change was seen (RFC 3339).
    pub changed_at: Option<String>,
}

impl From<McpToolPin> for PinView {
    fn from(p: McpToolPin) -> PinView {
        PinView {
            tool: p.tool,
            status: if p.hash == super::pins::UNREVIEWED {
                "flagged"
            } else if p.pending_hash.is_some() {
                "changed"
            } else {
                "accepted"
            },
            hash: p.hash,
            definition: p.definition,
            pending_hash: p.pending_hash,
            pending_definition: p.pending_definition,
            first_seen_at: p.first_seen_at,
            accepted_at: p.accepted_at,
            accepted_by: p.accepted_by,
            changed_at: p.changed_at,
        }
    }
}

fn unavailable(what: &'static str) -> impl Fn(StoreError) -> ControlError {
    move |e| ControlError::Unavailable(format!("{what}: {e}"))
}

/// Every server the organisation's agents may use: the configured ones, then its own.
///
/// # Errors
///
/// [`ControlError::Unavailable`].
pub async fn list(state: &AppState, org_id: &str) -> Result<Vec<ServerView>, ControlError> {
    let mut views: Vec<ServerView> = state
        .mcp
        .configured()
        .iter()
        .map(|u| ServerView::of(u.name(), "config", u.transport()))
        .collect();
    let stored = state
        .store
        .list_mcp_servers(org_id)
        .await
        .map_err(unavailable("the MCP servers could not be read"))?;
    for record in &stored {
        views.push(ServerView::of_record(record)?);
    }
    views.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(views)
}

/// One server the organisation's agents may use.
///
/// # Errors
///
/// [`ControlError::NotFound`], [`ControlError::Unavailable`].
pub async fn get(state: &AppState, org_id: &str, name: &str) -> Result<ServerView, ControlError> {
    if let Some(u) = state.mcp.configured().iter().find(|u| u.name() == name) {
        return Ok(ServerView::of(u.name(), "config", u.transport()));
    }
    let record = state
        .store
        .get_mcp_server(org_id, name)
        .await
        .map_err(unavailable("the MCP server could not be read"))?
        .ok_or_else(|| ControlError::NotFound(format!("no MCP server {name:?}")))?;
    ServerView::of_record(&record)
}

/// Checks a server's name.
///
/// # Errors
///
/// [`ControlError::Invalid`] naming `name`.
pub fn check_name(name: &str) -> Result<(), ControlError> {
    let good = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if good {
        Ok(())
    } else {
        Err(ControlError::Invalid {
            field: "name",
            message: format!("must be 1 to 64 of a-z, 0-9 and -, not {name:?}"),
        })
    }
}

/// Checks settings an organisation's admin gives.
fn check_transport(
    state: &AppState,
    org_id: &str,
    transport: &Transport,
) -> Result<(), ControlError> {
    let invalid = |message: String| ControlError::Invalid {
        field: "transport",
        message,
    };
    if let Transport::Stdio { .. } = transport {
        if !state.config.mcp.allow_api_stdio {
            return Err(invalid(
                "type stdio: a stdio server is a command run on AAF's own host, which organisations may register only when the operator turns on mcp.allow_api_stdio; register a streamable-HTTP server (type http) or ask the operator to configure it".into(),
            ));
        }
    }
    transport
        .validate(state.secrets.as_ref())
        .map_err(|(field, message)| invalid(format!("{field}: {message}")))?;
    if let Some(name) = transport
        .secret_names()
        .into_iter()
        .find(|n| !state.secrets.usable_by(n, org_id))
    {
        return Err(invalid(format!(
            "the secret {name:?} is not usable by this organisation (secrets.{name}.orgs)"
        )));
    }
    if let Transport::Http { url, .. } = transport {
        state
            .http
            .check_destination(url)
            .map_err(|e| invalid(format!("url: {e}")))?;
    }
    Ok(())
}

/// Writes a change of the organisation's servers and has every node read them again.
async fn commit(
    state: &AppState,
    org_id: &str,
    mutation: Mutation,
    event: NewEvent,
) -> Result<(), ControlError> {
    state
        .writer
        .submit(WriteUnit {
            mutations: vec![mutation],
            action: None,
            events: vec![event],
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound(m) => ControlError::NotFound(format!("no {m}")),
            StoreError::Conflict(m) => ControlError::Conflict(m),
            e => ControlError::Unavailable(format!("the change could not be recorded: {e}")),
        })?;
    crate::runtime::control::install(state, org_id).await;
    Ok(())
}

/// Registers a server for the organisation.
///
/// # Errors
///
/// [`ControlError::Invalid`] (a bad name or settings, the field named);
/// [`ControlError::Conflict`] when the name is taken (by a configured server too) or the
/// organisation has `mcp.max_servers_per_org` servers; [`ControlError::Unavailable`].
pub async fn create(
    state: &AppState,
    org_id: &str,
    by: &str,
    name: &str,
    transport: Transport,
) -> Result<ServerView, ControlError> {
    check_name(name)?;
    if state.mcp.is_configured(name) {
        return Err(ControlError::Conflict(format!(
            "the MCP server name {name:?} is taken by a server of AAF's configuration"
        )));
    }
    check_transport(state, org_id, &transport)?;
    let count = state
        .store
        .list_mcp_servers(org_id)
        .await
        .map_err(unavailable("the MCP servers could not be read"))?
        .len();
    if count >= state.config.mcp.max_servers_per_org {
        return Err(ControlError::Conflict(format!(
            "the organisation has {count} MCP servers, the most allowed (mcp.max_servers_per_org)"
        )));
    }
    let now = state.clock.now_rfc3339();
    let record = McpServer {
        id: format!("mcps_{}", uuid::Uuid::now_v7().simple()),
        org_id: org_id.to_string(),
        name: name.to_string(),
        transport: serde_json::to_value(&transport)
            .map_err(|e| ControlError::Unavailable(e.to_string()))?,
        created_at: now.clone(),
        created_by: Some(by.to_string()),
        updated_at: now.clone(),
    };
    let mut view = ServerView::of_record(&record)?;
    let data = json!({"name": name, "transport": view.audit(), "by": by});
    commit(
        state,
        org_id,
        Mutation::InsertMcpServer(record),
        event(org_id, &now, event_types::MCP_SERVER_CREATED, data),
    )
    .await
    .map_err(|e| match e {
        ControlError::Conflict(_) => {
            ControlError::Conflict(format!("the organisation has an MCP server {name:?}"))
        }
        other => other,
    })?;
    view.created_by = Some(by.to_string());
    Ok(view)
}

/// Replaces a registered server's settings (its client is started afresh on next use).
///
/// # Errors
///
/// [`ControlError::Invalid`]; [`ControlError::NotFound`] (a configured server cannot be
/// changed over the API); [`ControlError::Unavailable`].
pub async fn update(
    state: &AppState,
    org_id: &str,
    by: &str,
    name: &str,
    transport: Transport,
) -> Result<ServerView, ControlError> {
    let old = get_registered(state, org_id, name).await?;
    check_transport(state, org_id, &transport)?;
    let now = state.clock.now_rfc3339();
    let value =
        serde_json::to_value(&transport).map_err(|e| ControlError::Unavailable(e.to_string()))?;
    let new = ServerView::of(name, "api", &transport);
    let data = json!({"name": name, "old": ServerView::of_record(&old)?.audit(),
        "new": new.audit(), "by": by});
    commit(
        state,
        org_id,
        Mutation::UpdateMcpServer {
            org_id: org_id.to_string(),
            name: name.to_string(),
            transport: value,
            now: now.clone(),
        },
        event(org_id, &now, event_types::MCP_SERVER_UPDATED, data),
    )
    .await?;
    get(state, org_id, name).await
}

/// Deletes a registered server (its tools' pins are kept).
///
/// # Errors
///
/// [`ControlError::NotFound`]; [`ControlError::Unavailable`].
pub async fn delete(
    state: &AppState,
    org_id: &str,
    by: &str,
    name: &str,
) -> Result<(), ControlError> {
    get_registered(state, org_id, name).await?;
    let now = state.clock.now_rfc3339();
    commit(
        state,
        org_id,
        Mutation::DeleteMcpServer {
            org_id: org_id.to_string(),
            name: name.to_string(),
            now: now.clone(),
        },
        event(
            org_id,
            &now,
            event_types::MCP_SERVER_DELETED,
            json!({"name": name, "by": by}),
        ),
    )
    .await
}

async fn get_registered(
    state: &AppState,
    org_id: &str,
    name: &str,
) -> Result<McpServer, ControlError> {
    if state.mcp.is_configured(name) {
        return Err(ControlError::NotFound(format!(
            "the MCP server {name:?} is configured by the operator (mcp.servers) and cannot be changed over the API"
        )));
    }
    state
        .store
        .get_mcp_server(org_id, name)
        .await
        .map_err(unavailable("the MCP server could not be read"))?
        .ok_or_else(|| ControlError::NotFound(format!("no MCP server {name:?}")))
}

/// The pinned definitions of a server's tools, by tool.
///
/// # Errors
///
/// [`ControlError::NotFound`] when the organisation has no such server;
/// [`ControlError::Unavailable`].
pub async fn pins(
    state: &AppState,
    org_id: &str,
    server: &str,
) -> Result<Vec<PinView>, ControlError> {
    get(state, org_id, server).await?;
    let pins = state
        .store
        .list_mcp_tool_pins(org_id, Some(server))
        .await
        .map_err(unavailable("the pinned tool definitions could not be read"))?;
    Ok(pins.into_iter().map(PinView::from).collect())
}

/// Accepts the changed definition `hash` of a tool: it is shown and may be called again.
///
/// # Errors
///
/// [`ControlError::NotFound`] when there is no pin of this tool;
/// [`ControlError::Conflict`] when `hash` is not the changed definition waiting;
/// [`ControlError::Unavailable`].
pub async fn accept(
    state: &AppState,
    org_id: &str,
    by: &str,
    server: &str,
    tool: &str,
    hash: &str,
) -> Result<PinView, ControlError> {
    let pin = state
        .store
        .get_mcp_tool_pin(org_id, server, tool)
        .await
        .map_err(unavailable("the pinned tool definition could not be read"))?
        .ok_or_else(|| ControlError::NotFound(format!("no pinned tool {tool:?} of {server:?}")))?;
    if pin.pending_hash.as_deref() != Some(hash) {
        return Err(ControlError::Conflict(format!(
            "the changed definition waiting for {server}/{tool} is {}, not {hash:?}",
            pin.pending_hash
                .as_deref()
                .map_or("none".to_string(), |h| format!("{h:?}"))
        )));
    }
    let now = state.clock.now_rfc3339();
    state.mcp.accepted_pins().forget(org_id, server, tool);
    let committed = commit(
        state,
        org_id,
        Mutation::AcceptMcpTool {
            org_id: org_id.to_string(),
            server: server.to_string(),
            tool: tool.to_string(),
            hash: hash.to_string(),
            by: by.to_string(),
            now: now.clone(),
        },
        event(
            org_id,
            &now,
            event_types::MCP_TOOL_ACCEPTED,
            json!({"server": server, "tool": tool, "old_hash": pin.hash, "hash": hash, "by": by}),
        ),
    )
    .await;
    state.mcp.accepted_pins().forget(org_id, server, tool);
    committed?;
    state
        .store
        .get_mcp_tool_pin(org_id, server, tool)
        .await
        .map_err(unavailable("the pinned tool definition could not be read"))?
        .map(PinView::from)
        .ok_or_else(|| ControlError::NotFound(format!("no pinned tool {tool:?} of {server:?}")))
}
