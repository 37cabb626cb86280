//! AAF as an MCP server for agents (`/mcp`, streamable HTTP, rmcp): the tools, prompts and
//! resources of the organisation's upstreams, and every use of them taken through the action
//! pipeline ([`crate::connectors::McpTarget`]):
//!
//! - `tools/call` of `<server>__<tool>`: the action `mcp:<server>/<tool>`, operation `call`,
//!   params = the arguments;
//! - `prompts/get` of `<server>__<prompt>`: `mcp:<server>/prompts/<prompt>`, operation
//!   `get`, params = the arguments;
//! - `resources/read` of a URI: `mcp:<server>/resources/read`, operation `read`, params
//!   `{"uri": ...}` (the server that listed the URI, or whose URI template's fixed prefix it
//!   has).
//!
//! The pipeline's MCP connector ([`crate::connectors::Connector::Mcp`]) forwards an allowed
//! action to the upstream; this handler only maps the outcome to an MCP result.
//!
//! The agent is the one the request's Bearer key authenticated (the `authorize` middleware,
//! before rmcp sees the request); its key never reaches an upstream.

use std::time::Duration;

use aaf_core::action::{ActionRequest, ActionStatus, Verdict};
use aaf_store::AgentPrincipal;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    ServerCapabilities, ServerConfig, Tool,
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

/// The action tool of an MCP prompt: `mcp:<server>/prompts/<prompt>`.
pub fn action_prompt(server: &str, prompt: &str) -> String {
    format!("mcp:{server}/prompts/{prompt}")
}

/// The action tool of reading an MCP server's resources: `mcp:<server>/resources/read`.
pub fn action_resource(server: &str) -> String {
    format!("mcp:{server}/resources/read")
}

/// What became of an action the gateway submitted.
enum Settled {
    /// It ran: the connector's result.
    Ran(Value),
    /// It did not run, or failed: why, for the agent.
    Refused(String),
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
    /// Whether the agent may see an item (a tool, prompt or resource) used as the action
    /// `tool`/`operation`: its key's scope allows the action tool, and a dry evaluation with
    /// `params` (no arguments; a resource's URI) is not a deny (docs/mcp.md).
    async fn visible(
        &self,
        agent: &AgentPrincipal,
        tool: String,
        operation: &str,
        params: Map<String, Value>,
    ) -> bool {
        if agent.tools.as_ref().is_some_and(|t| !t.contains(&tool)) {
            return false;
        }
        let request = ActionRequest {
            tool,
            operation: operation.into(),
            params,
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

    /// What became of an action, from its stored status and result.
    fn outcome(
        action_id: &str,
        status: ActionStatus,
        reason: &str,
        result: Option<&Value>,
    ) -> Settled {
        match status {
            ActionStatus::Executed => match result {
                Some(r) => Settled::Ran(r.clone()),
                None => Settled::Refused(format!("AAF ran action {action_id} but kept no result")),
            },
            ActionStatus::Failed => Settled::Refused(format!(
                "the request failed (action {action_id}): {}",
                result
                    .and_then(|r| r.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or(reason)
            )),
            ActionStatus::PendingApproval | ActionStatus::Approved | ActionStatus::Executing => {
                Settled::Refused(format!(
                    "this request waits for a human approval (action {action_id}); it was not answered in time. Follow it with GET /v1/actions/{action_id}"
                ))
            }
            other => Settled::Refused(format!(
                "AAF did not run this request (action {action_id}, {}): {reason}",
                other.as_str()
            )),
        }
    }

    /// Takes an action through the pipeline and, when it needs a human approval, waits for
    /// it (up to `mcp.approval_wait_seconds`).
    async fn settle(
        &self,
        agent: &AgentPrincipal,
        action: ActionRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Settled, ErrorData> {
        let ip = peer_ip(ctx);
        let submission = Submission {
            agent,
            ip: ip.as_deref(),
        };
        let submit = pipeline::submit(&self.state, submission, action);
        // A client that asked for progress hears the upstream's too (tool calls).
        let submitted = match ctx.meta.get_progress_token() {
            Some(token) => {
                let sink = super::upstream::ProgressSink {
                    peer: ctx.peer.clone(),
                    token,
                };
                super::upstream::PROGRESS.scope(sink, submit).await
            }
            None => submit.await,
        }
        .map_err(|e| match e {
            pipeline::PipelineError::Invalid { field, message } => {
                ErrorData::invalid_params(format!("{field}: {message}"), None)
            }
            other => ErrorData::internal_error(other.to_string(), None),
        })?;
        let id = submitted.action_id.as_str();
        if submitted.status == ActionStatus::PendingApproval {
            return Ok(match self.await_approval(&agent.org.id, id, ctx).await {
                Some(action) => {
                    Self::outcome(id, action.status, &action.reason, action.result.as_ref())
                }
                None => Settled::Refused(format!("action {id} could not be read")),
            });
        }
        Ok(Self::outcome(
            id,
            submitted.status,
            &submitted.decision.reason,
            submitted.result.as_ref(),
        ))
    }

    /// Every upstream the agent's organisation may use.
    async fn servers_of(
        &self,
        agent: &AgentPrincipal,
    ) -> Result<Vec<std::sync::Arc<super::upstream::Upstream>>, ErrorData> {
        self.state
            .mcp
            .servers(&agent.org.id)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }

    /// The MCP context of an action: the session and what the client asked for.
    fn context(ctx: &RequestContext<RoleServer>, key: &str, value: &str) -> Map<String, Value> {
        let mut mcp = Map::new();
        mcp.insert("session_id".into(), json!(session_id(ctx)));
        mcp.insert(key.into(), json!(value));
        let mut context = Map::new();
        context.insert("mcp".into(), Value::Object(mcp));
        context
    }

    /// The server of a namespaced name (`<server>__<item>`), checked to be the
    /// organisation's.
    async fn split<'n>(
        &self,
        agent: &AgentPrincipal,
        method: &str,
        what: &str,
        name: &'n str,
    ) -> Result<(&'n str, &'n str), ErrorData> {
        let Some((server, item)) = name.split_once(SEPARATOR) else {
            let message =
                format!("unknown {what} {name:?}: {what}s are named <server>{SEPARATOR}<{what}>");
            return Err(self.refuse(agent, method, message).await);
        };
        match self.state.mcp.server(&agent.org.id, server).await {
            Ok(_) => Ok((server, item)),
            Err(crate::mcp::UpstreamError::UnknownServer(_)) => {
                let message = format!("unknown {what} {name:?}: no MCP server {server:?}");
                Err(self.refuse(agent, method, message).await)
            }
            Err(other) => Err(ErrorData::internal_error(other.to_string(), None)),
        }
    }

    /// The organisation's server that offers the resource `uri`: the one that listed it, or
    /// the one whose URI template's fixed prefix it has (only one may match).
    async fn resource_owner(&self, agent: &AgentPrincipal, uri: &str) -> Result<String, ErrorData> {
        let servers = self.servers_of(agent).await?;
        let mut by_template = Vec::new();
        for upstream in &servers {
            if let Ok(resources) = self.state.mcp.list_resources(upstream).await {
                if resources.iter().any(|r| r.uri == uri) {
                    return Ok(upstream.name().to_string());
                }
            }
            if let Ok(templates) = self.state.mcp.list_resource_templates(upstream).await {
                let matches = templates.iter().any(|t| {
                    let prefix = t.uri_template.split('{').next().unwrap_or_default();
                    !prefix.is_empty() && uri.starts_with(prefix)
                });
                if matches {
                    by_template.push(upstream.name().to_string());
                }
            }
        }
        match by_template.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(self
                .refuse(agent, "resources/read", format!("unknown resource {uri:?}"))
                .await),
            several => Err(self
                .refuse(
                    agent,
                    "resources/read",
                    format!("the resource {uri:?} matches the URI templates of several servers: {several:?}"),
                )
                .await),
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
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .build(),
        )
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
        let servers = self.servers_of(&agent).await?;
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
                let name = action_tool(server, &tool.name);
                if !self.visible(&agent, name, "call", Map::new()).await {
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
        let (server, tool) = self
            .split(&agent, "tools/call", "tool", &request.name)
            .await?;
        let action = ActionRequest {
            tool: action_tool(server, tool),
            operation: "call".into(),
            params: request.arguments.clone().unwrap_or_default(),
            context: Self::context(&ctx, "tool", &request.name),
        };
        Ok(match self.settle(&agent, action, &ctx).await? {
            // An upstream on an earlier revision leaves `resultType` out; AAF's clients on
            // 2026-07-28 need it (rmcp clears it again for older clients).
            Settled::Ran(value) => match serde_json::from_value::<CallToolResult>(value) {
                Ok(mut result) => {
                    result.result_type = Some(rmcp::model::ResultType::COMPLETE);
                    result.into()
                }
                Err(_) => {
                    refusal("AAF ran the call but its result is not an MCP tool result".into())
                }
            },
            Settled::Refused(text) => refusal(text),
        })
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let agent = agent(&ctx)?;
        let servers = self.servers_of(&agent).await?;
        let mut prompts = Vec::new();
        for upstream in servers {
            let server = upstream.name();
            let listed = match self.state.mcp.list_prompts(&upstream).await {
                Ok(listed) => listed,
                Err(e) => {
                    tracing::warn!(%server, error = %e, "mcp: an upstream's prompts could not be listed");
                    continue;
                }
            };
            for mut prompt in listed {
                let name = action_prompt(server, &prompt.name);
                if !self.visible(&agent, name, "get", Map::new()).await {
                    continue;
                }
                prompt.name = format!("{server}{SEPARATOR}{}", prompt.name);
                prompts.push(prompt);
            }
        }
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let agent = agent(&ctx)?;
        let (server, prompt) = self
            .split(&agent, "prompts/get", "prompt", &request.name)
            .await?;
        let params = request
            .arguments
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, json!(v)))
            .collect();
        let action = ActionRequest {
            tool: action_prompt(server, prompt),
            operation: "get".into(),
            params,
            context: Self::context(&ctx, "prompt", &request.name),
        };
        match self.settle(&agent, action, &ctx).await? {
            Settled::Ran(value) => serde_json::from_value::<GetPromptResult>(value)
                .map(|mut result| {
                    result.result_type = Some(rmcp::model::ResultType::COMPLETE);
                    result.into()
                })
                .map_err(|_| {
                    ErrorData::internal_error("the upstream's answer is not a prompt", None)
                }),
            Settled::Refused(text) => Err(ErrorData::invalid_request(text, None)),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let agent = agent(&ctx)?;
        let servers = self.servers_of(&agent).await?;
        let mut resources = Vec::new();
        for upstream in servers {
            let server = upstream.name();
            let listed = match self.state.mcp.list_resources(&upstream).await {
                Ok(listed) => listed,
                Err(e) => {
                    tracing::warn!(%server, error = %e, "mcp: an upstream's resources could not be listed");
                    continue;
                }
            };
            for resource in listed {
                let mut params = Map::new();
                params.insert("uri".into(), json!(resource.uri));
                if self
                    .visible(&agent, action_resource(server), "read", params)
                    .await
                {
                    resources.push(resource);
                }
            }
        }
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let agent = agent(&ctx)?;
        let servers = self.servers_of(&agent).await?;
        let mut templates = Vec::new();
        for upstream in servers {
            match self.state.mcp.list_resource_templates(&upstream).await {
                Ok(listed) => templates.extend(listed),
                Err(e) => {
                    tracing::warn!(server = %upstream.name(), error = %e, "mcp: an upstream's resource templates could not be listed");
                }
            }
        }
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let agent = agent(&ctx)?;
        let server = self.resource_owner(&agent, &request.uri).await?;
        let mut params = Map::new();
        params.insert("uri".into(), json!(request.uri));
        let action = ActionRequest {
            tool: action_resource(&server),
            operation: "read".into(),
            params,
            context: Self::context(&ctx, "uri", &request.uri),
        };
        match self.settle(&agent, action, &ctx).await? {
            Settled::Ran(value) => serde_json::from_value::<ReadResourceResult>(value)
                .map(|mut result| {
                    result.result_type = Some(rmcp::model::ResultType::COMPLETE);
                    result.into()
                })
                .map_err(|_| {
                    ErrorData::internal_error("the upstream's answer is not a resource", None)
                }),
            Settled::Refused(text) => Err(ErrorData::invalid_request(text, None)),
        }
    }
}
