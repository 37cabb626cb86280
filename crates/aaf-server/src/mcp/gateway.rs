//! AAF as an MCP server for agents (`/mcp`, streamable HTTP, rmcp): the tools of the
//! configured upstreams, namespaced `<server>__<tool>`, and every `tools/call` taken through
//! the action pipeline as the action `mcp:<server>/<tool>` (operation `call`, params = the
//! arguments). The pipeline's MCP connector ([`crate::connectors::Connector::Mcp`]) forwards
//! an allowed call to the upstream; this handler only maps the outcome to an MCP result.
//!
//! The agent is the one the request's Bearer key authenticated (the `authorize` middleware,
//! before rmcp sees the request); its key never reaches an upstream.

use std::time::Duration;

use aaf_core::action::{ActionRequest, ActionStatus, Verdict};
use aaf_store::AgentPrincipal;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};

use crate::app::AppState;
use crate::auth::Principal;
use crate::pipeline::{self, Submission};

use super::pins::{self, PinStatus};

/// How often a call held for approval tells a client that asked for progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Separates the server's name from the tool's in the names agents see.
pub const SEPARATOR: &str = "__";

/// The action tool of an MCP tool: `mcp:<server>/<tool>`.
pub fn action_tool(server: &str, tool: &str) -> String {
    format!("mcp:{server}/{tool}")
}

/// The handler of one MCP session.
#[derive(Clone)]
pub struct Gateway {
    state: AppState,
}

impl Gateway {
    /// A handler over the server's state.
    pub fn new(state: AppState) -> Gateway {
        Gateway { state }
    }
}

/// The agent the request was authenticated as.
fn agent(ctx: &RequestContext<RoleServer>) -> Result<AgentPrincipal, ErrorData> {
    let parts = ctx
        .extensions
        .get::<http::request::Parts>()
        .ok_or_else(|| ErrorData::internal_error("no HTTP request behind this call", None))?;
    match parts.extensions.get::<Principal>() {
        Some(Principal::Agent(agent)) => Ok(agent.clone()),
        _ => Err(ErrorData::invalid_request(
            "only agents (an agent key as the Bearer token) may use /mcp",
            None,
        )),
    }
}

/// The client's address, for `input.request.ip_address` and the record.
fn peer_ip(ctx: &RequestContext<RoleServer>) -> Option<String> {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(crate::auth::peer_ip)
        .map(|ip| ip.to_string())
}

fn session_id(ctx: &RequestContext<RoleServer>) -> Option<String> {
    ctx.extensions
        .get::<http::request::Parts>()?
        .headers
        .get("mcp-session-id")?
        .to_str()
        .ok()
        .map(str::to_string)
}

fn refusal(text: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(text)]).into()
}

impl Gateway {
    /// Whether the agent may see `tool` of `server`: its key's scope allows the tool, and a
    /// dry evaluation with no arguments (docs/mcp.md) is not a deny.
    async fn visible(&self, agent: &AgentPrincipal, server: &str, tool: &str) -> bool {
        let name = action_tool(server, tool);
        if agent.tools.as_ref().is_some_and(|t| !t.contains(&name)) {
            return false;
        }
        let request = ActionRequest {
            tool: name,
            operation: "call".into(),
            params: Map::new(),
            context: Map::new(),
        };
        let submission = Submission { agent, ip: None };
        match pipeline::dry_run(&self.state, submission, request).await {
            Ok(evaluated) => evaluated.decision.verdict != Verdict::Deny,
            Err(_) => false,
        }
    }

    /// Waits, up to `mcp.approval_wait_seconds`, for an action waiting for approval to be
    /// answered and run; the action as it is then. When the client asked for progress
    /// (a `progressToken` in the call's `_meta`), a `notifications/progress` every
    /// [`PROGRESS_EVERY`] says what the call waits for; a client that cancels the call stops
    /// the wait (the action stays waiting for its approval).
    async fn await_approval(
        &self,
        org_id: &str,
        action_id: &str,
        ctx: &RequestContext<RoleServer>,
    ) -> Option<aaf_store::ActionRecord> {
        let wait = Duration::from_secs(self.state.config.mcp.approval_wait_seconds);
        let started = tokio::time::Instant::now();
        let deadline = started + wait;
        let mut changes = self.state.action_events.subscribe();
        let progress = ctx.meta.get_progress_token();
        let mut next_progress = started;
        loop {
            let action = self
                .state
                .store
                .get_action(org_id, action_id)
                .await
                .ok()??;
            let waiting = matches!(
                action.status,
                ActionStatus::PendingApproval | ActionStatus::Approved | ActionStatus::Executing
            );
            let now = tokio::time::Instant::now();
            if !waiting || now >= deadline || ctx.ct.is_cancelled() {
                return Some(action);
            }
            if let Some(token) = progress.as_ref().filter(|_| now >= next_progress) {
                let waited = now.duration_since(started).as_secs_f64();
                let note = ProgressNotificationParam::new(token.clone(), waited)
                    .with_total(wait.as_secs_f64())
                    .with_message(format!(
                        "waiting for a human approval of action {action_id}"
                    ));
                // A client that went away does not stop the wait; its deadline does.
                if let Err(e) = ctx.peer.notify_progress(note).await {
                    tracing::debug!(%action_id, error = %e, "mcp: a progress notification was not sent");
                }
                next_progress = now + PROGRESS_EVERY;
            }
            tokio::select! {
                _ = changes.recv() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = ctx.ct.cancelled() => {}
            }
        }
    }

    /// The MCP result of an action that ran (or not), from its stored status and result.
    fn outcome(
        action_id: &str,
        status: ActionStatus,
        reason: &str,
        result: Option<&Value>,
    ) -> CallToolResponse {
        match status {
            ActionStatus::Executed => match result
                .cloned()
                .map(serde_json::from_value::<CallToolResult>)
            {
                Some(Ok(r)) => r.into(),
                _ => refusal(format!(
                    "AAF ran action {action_id} but its result is not an MCP tool result"
                )),
            },
            ActionStatus::Failed => refusal(format!(
                "the call failed (action {action_id}): {}",
                result
                    .and_then(|r| r.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or(reason)
            )),
            ActionStatus::PendingApproval | ActionStatus::Approved | ActionStatus::Executing => {
                refusal(format!(
                    "this call waits for a human approval (action {action_id}); it was not answered in time. Follow it with GET /v1/actions/{action_id}"
                ))
            }
            other => refusal(format!(
                "AAF did not run this call (action {action_id}, {}): {reason}",
                other.as_str()
            )),
        }
    }
}

impl Gateway {
    /// Records a request the gateway refuses as invalid (`request.rejected`) and returns its
    /// JSON-RPC error (invalid params).
    async fn refuse(&self, agent: &AgentPrincipal, method: &str, message: String) -> ErrorData {
        let refusal = super::rejections::Refusal {
            status: None,
            code: Some(i64::from(rmcp::model::ErrorCode::INVALID_PARAMS.0)),
        };
        super::rejections::record(&self.state, agent, refusal, Some(method), &message).await;
        ErrorData::invalid_params(message, Some(super::rejections::recorded_data()))
    }
}

impl ServerHandler for Gateway {
    /// A method the gateway does not know: the JSON-RPC error "method not found", recorded.
    async fn on_custom_request(
        &self,
        request: rmcp::model::CustomRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CustomResult, ErrorData> {
        let message = format!("method not found: {}", request.method);
        if let Ok(agent) = agent(&ctx) {
            let refusal = super::rejections::Refusal {
                status: None,
                code: Some(i64::from(rmcp::model::ErrorCode::METHOD_NOT_FOUND.0)),
            };
            super::rejections::record(
                &self.state,
                &agent,
                refusal,
                Some(&request.method),
                &message,
            )
            .await;
        }
        Err(ErrorData::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            message,
            Some(super::rejections::recorded_data()),
        ))
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("aaf", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Agent Action Firewall: every tool call is decided by your organisation's policies, may wait for a human approval, and is recorded.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let agent = agent(&ctx)?;
        let org_id = agent.org.id.clone();
        let servers = self
            .state
            .mcp
            .servers(&org_id)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let mut tools = Vec::new();
        for upstream in servers {
            let server = upstream.name();
            let listed = match self.state.mcp.list_tools(&upstream).await {
                Ok(listed) => listed,
                Err(e) => {
                    tracing::warn!(%server, error = %e, "mcp: an upstream's tools could not be listed");
                    continue;
                }
            };
            for tool in listed.iter() {
                // A changed definition is hidden until an admin accepts it; one that cannot
                // be checked is hidden too (fail closed).
                match pins::check(&self.state, &org_id, server, tool).await {
                    Ok(PinStatus::Accepted) => {}
                    Ok(PinStatus::Changed { .. }) => continue,
                    Err(e) => {
                        tracing::error!(%server, tool = %tool.name, error = %e, "mcp: a tool's pin could not be checked; it is hidden");
                        continue;
                    }
                }
                if !self.visible(&agent, server, &tool.name).await {
                    continue;
                }
                let mut shown: Tool = tool.clone();
                shown.name = format!("{server}{SEPARATOR}{}", tool.name).into();
                tools.push(shown);
            }
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let agent = agent(&ctx)?;
        let Some((server, tool)) = request.name.split_once(SEPARATOR) else {
            let message = format!(
                "unknown tool {:?}: tools are named <server>{SEPARATOR}<tool>",
                request.name
            );
            return Err(self.refuse(&agent, "tools/call", message).await);
        };
        if let Err(e) = self.state.mcp.server(&agent.org.id, server).await {
            return Err(match e {
                crate::mcp::UpstreamError::UnknownServer(_) => {
                    let message =
                        format!("unknown tool {:?}: no MCP server {server:?}", request.name);
                    self.refuse(&agent, "tools/call", message).await
                }
                other => ErrorData::internal_error(other.to_string(), None),
            });
        }
        let mut context = Map::new();
        context.insert(
            "mcp".into(),
            json!({"session_id": session_id(&ctx), "tool": request.name}),
        );
        let action = ActionRequest {
            tool: action_tool(server, tool),
            operation: "call".into(),
            params: request.arguments.unwrap_or_default(),
            context,
        };
        let ip = peer_ip(&ctx);
        let submission = Submission {
            agent: &agent,
            ip: ip.as_deref(),
        };
        let submitted = pipeline::submit(&self.state, submission, action)
            .await
            .map_err(|e| match e {
                pipeline::PipelineError::Invalid { field, message } => {
                    ErrorData::invalid_params(format!("{field}: {message}"), None)
                }
                other => ErrorData::internal_error(other.to_string(), None),
            })?;
        let id = submitted.action_id.as_str();
        if submitted.status == ActionStatus::PendingApproval {
            return Ok(match self.await_approval(&agent.org.id, id, &ctx).await {
                Some(action) => {
                    Self::outcome(id, action.status, &action.reason, action.result.as_ref())
                }
                None => refusal(format!("action {id} could not be read")),
            });
        }
        Ok(Self::outcome(
            id,
            submitted.status,
            &submitted.decision.reason,
            submitted.result.as_ref(),
        ))
    }
}
