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
//! Besides: `completion/complete` for the upstreams' prompts and resource templates (the
//! agent must be able to see them), resource subscriptions (`resources/subscribe` and, on
//! 2026-07-28, `subscriptions/listen`) and list changes relayed by [`super::watch`], and
//! `logging/setLevel` for the gateway's own messages about the session's calls.
//!
//! The agent is the one the request's Bearer key authenticated (the `authorize` middleware,
//! before rmcp sees the request); its key never reaches an upstream.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aaf_core::action::{ActionRequest, ActionStatus, Verdict};
use aaf_store::AgentPrincipal;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, PromptReference, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Reference, ServerCapabilities, ServerConfig,
    SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Map, Value};

use crate::app::AppState;
use crate::auth::Principal;
use crate::pipeline::{self, Submission};

use super::pins::{self, PinStatus};
use super::upstream::{Upstream, Upstreams};
use super::watch::{ListKind, Subscriber};

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

/// A logging level's rank (RFC 5424 severities, as the MCP specification orders them:
/// debug lowest, emergency highest).
#[allow(deprecated)] // logging: MCP revisions up to 2025-11-25 (SEP-2577)
fn rank(level: rmcp::model::LoggingLevel) -> u8 {
    use rmcp::model::LoggingLevel as L;
    match level {
        L::Debug => 0,
        L::Info => 1,
        L::Notice => 2,
        L::Warning => 3,
        L::Error => 4,
        L::Critical => 5,
        L::Alert => 6,
        L::Emergency => 7,
    }
}

/// What one MCP session holds besides its transport: the lowest level of the gateway's log
/// messages it wants (none until `logging/setLevel`), its resource subscriptions, and its
/// watcher id ([`super::watch`]). When the session ends, its subscriptions and watches end.
struct Session {
    id: u64,
    level: Mutex<Option<u8>>,
    subscriptions: Mutex<Vec<(Arc<Upstream>, String)>>,
    mcp: Arc<Upstreams>,
}

impl Session {
    fn subscriptions(&self) -> std::sync::MutexGuard<'_, Vec<(Arc<Upstream>, String)>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for (upstream, uri) in self.subscriptions().drain(..) {
            Upstreams::unsubscribe(&upstream, &uri, self.id);
        }
        self.mcp.lists().unwatch(self.id);
    }
}

/// What a `subscriptions/listen` request holds; released when it ends.
struct Listening {
    id: u64,
    held: Vec<(Arc<Upstream>, String)>,
    mcp: Arc<Upstreams>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        for (upstream, uri) in self.held.drain(..) {
            Upstreams::unsubscribe(&upstream, &uri, self.id);
        }
        self.mcp.lists().unwatch(self.id);
    }
}

/// The handler of one MCP session.
#[derive(Clone)]
pub struct Gateway {
    state: AppState,
    session: Arc<Session>,
}

impl Gateway {
    /// The handler of a new session over the server's state.
    pub fn new(state: AppState) -> Gateway {
        let session = Arc::new(Session {
            id: state.mcp.lists().next_id(),
            level: Mutex::new(None),
            subscriptions: Mutex::new(Vec::new()),
            mcp: Arc::clone(&state.mcp),
        });
        Gateway { state, session }
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
        let settled = if submitted.status == ActionStatus::PendingApproval {
            self.log(
                ctx,
                2,
                json!({"action_id": id, "message": format!("waits for a human approval: {}", submitted.decision.reason)}),
            )
            .await;
            match self.await_approval(&agent.org.id, id, ctx).await {
                Some(action) => {
                    Self::outcome(id, action.status, &action.reason, action.result.as_ref())
                }
                None => Settled::Refused(format!("action {id} could not be read")),
            }
        } else {
            Self::outcome(
                id,
                submitted.status,
                &submitted.decision.reason,
                submitted.result.as_ref(),
            )
        };
        if let Settled::Refused(text) = &settled {
            self.log(ctx, 3, json!({"action_id": id, "message": text}))
                .await;
        }
        Ok(settled)
    }

    /// Sends the session a log message of the gateway (`notifications/message`, logger
    /// `aaf`) when the client asked for messages of this level (`rank`) or above with
    /// `logging/setLevel`.
    #[allow(deprecated)] // logging: MCP revisions up to 2025-11-25 (SEP-2577)
    async fn log(&self, ctx: &RequestContext<RoleServer>, rank_of: u8, data: Value) {
        let wanted = *self
            .session
            .level
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if wanted.is_none_or(|w| rank_of < w) {
            return;
        }
        use rmcp::model::LoggingLevel as L;
        let level = match rank_of {
            0 => L::Debug,
            1 => L::Info,
            2 => L::Notice,
            3 => L::Warning,
            _ => L::Error,
        };
        let message =
            rmcp::model::LoggingMessageNotificationParam::new(level, data).with_logger("aaf");
        if let Err(e) = ctx.peer.notify_logging_message(message).await {
            tracing::debug!(error = %e, "mcp: a log message was not sent");
        }
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
    /// the one whose URI template's fixed prefix it has (only one may match), or, when the
    /// organisation has a single server, that one (it answers for URIs it does not list).
    /// A refusal is recorded as made to `method`.
    async fn resource_owner(
        &self,
        agent: &AgentPrincipal,
        method: &str,
        uri: &str,
    ) -> Result<String, ErrorData> {
        match self.find_owner(agent, uri).await? {
            Ok(server) => Ok(server),
            Err(why) => Err(self.refuse(agent, method, why).await),
        }
    }

    /// [`Gateway::resource_owner`] without recording: `Err(why)` when no single server is
    /// found.
    async fn find_owner(
        &self,
        agent: &AgentPrincipal,
        uri: &str,
    ) -> Result<Result<String, String>, ErrorData> {
        let servers = self.servers_of(agent).await?;
        let mut by_template = Vec::new();
        for upstream in &servers {
            if let Ok(resources) = self.state.mcp.list_resources(upstream).await {
                if resources.iter().any(|r| r.uri == uri) {
                    return Ok(Ok(upstream.name().to_string()));
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
        Ok(match (by_template.as_slice(), servers.as_slice()) {
            ([one], _) => Ok(one.clone()),
            ([], [only]) => Ok(only.name().to_string()),
            ([], _) => Err(format!("unknown resource {uri:?}")),
            (several, _) => Err(format!(
                "the resource {uri:?} matches the URI templates of several servers: {several:?}"
            )),
        })
    }

    /// The upstream that offers `uri` to the agent, if the agent may read it (its key's
    /// scope and a dry evaluation of the read, as for the listing); `Err(why)` otherwise.
    async fn readable_owner(
        &self,
        agent: &AgentPrincipal,
        uri: &str,
    ) -> Result<Result<Arc<Upstream>, String>, ErrorData> {
        let server = match self.find_owner(agent, uri).await? {
            Ok(server) => server,
            Err(why) => return Ok(Err(why)),
        };
        let mut params = Map::new();
        params.insert("uri".into(), json!(uri));
        if !self
            .visible(agent, action_resource(&server), "read", params)
            .await
        {
            return Ok(Err(format!(
                "the resource {uri:?} may not be read by this agent"
            )));
        }
        let upstream = self
            .state
            .mcp
            .server(&agent.org.id, &server)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(Ok(upstream))
    }

    /// Relays the list changes of `kind` to this session from now on (it listed them).
    fn watch_list(&self, agent: &AgentPrincipal, ctx: &RequestContext<RoleServer>, kind: ListKind) {
        let lists = self.state.mcp.lists();
        if !lists.watches(self.session.id, kind) {
            lists.watch(
                self.session.id,
                &agent.org.id,
                &[kind],
                Subscriber::Session(ctx.peer.clone()),
            );
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

    #[allow(deprecated)] // logging: MCP revisions up to 2025-11-25 (SEP-2577)
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_completions()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_prompts()
                .enable_prompts_list_changed()
                .enable_resources()
                .enable_resources_list_changed()
                .enable_resources_subscribe()
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
        self.watch_list(&agent, &ctx, ListKind::Tools);
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
                    Ok(PinStatus::Changed { .. } | PinStatus::Flagged { .. }) => continue,
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
        self.watch_list(&agent, &ctx, ListKind::Prompts);
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
        self.watch_list(&agent, &ctx, ListKind::Resources);
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
        let server = self
            .resource_owner(&agent, "resources/read", &request.uri)
            .await?;
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

    /// The lowest level of the gateway's log messages the session wants (MCP "Logging";
    /// revisions up to 2025-11-25). The gateway tells the session when one of its calls
    /// waits for an approval (notice) and why one was refused or failed (warning). The
    /// upstreams' own log messages go to AAF's log, not to agents (docs/mcp.md).
    #[allow(deprecated)] // logging: MCP revisions up to 2025-11-25 (SEP-2577)
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        agent(&ctx)?;
        *self
            .session
            .level
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(rank(request.level));
        Ok(())
    }

    /// Completes an argument of a prompt (`ref/prompt`, by its namespaced name) or of a
    /// resource template (`ref/resource`) of an upstream, if the agent can see it; no values
    /// when the upstream offers no completions.
    async fn complete(
        &self,
        request: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        const METHOD: &str = "completion/complete";
        let agent = agent(&ctx)?;
        let mut forwarded = request.clone();
        let upstream = match &request.r#ref {
            Reference::Prompt(reference) => {
                let (server, prompt) = self
                    .split(&agent, METHOD, "prompt", &reference.name)
                    .await?;
                if !self
                    .visible(&agent, action_prompt(server, prompt), "get", Map::new())
                    .await
                {
                    let message = format!(
                        "the prompt {:?} may not be used by this agent",
                        reference.name
                    );
                    return Err(self.refuse(&agent, METHOD, message).await);
                }
                let mut renamed = PromptReference::new(prompt);
                if let Some(title) = &reference.title {
                    renamed = renamed.with_title(title);
                }
                forwarded.r#ref = Reference::Prompt(renamed);
                self.state
                    .mcp
                    .server(&agent.org.id, server)
                    .await
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?
            }
            Reference::Resource(reference) => {
                match self.readable_owner(&agent, &reference.uri).await? {
                    Ok(upstream) => upstream,
                    Err(why) => return Err(self.refuse(&agent, METHOD, why).await),
                }
            }
            _ => {
                let message = "ref: only ref/prompt and ref/resource can be completed".to_string();
                return Err(self.refuse(&agent, METHOD, message).await);
            }
        };
        let mut result = self
            .state
            .mcp
            .complete(&upstream, forwarded)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        result.result_type = Some(rmcp::model::ResultType::COMPLETE);
        Ok(result)
    }

    /// Subscribes the session to a resource of an upstream it may read (revisions up to
    /// 2025-11-25): `notifications/resources/updated` of the upstream for that URI is
    /// relayed to it; reading it is still an action. At most
    /// `mcp.max_subscriptions_per_session` per session.
    #[allow(deprecated)] // resources/subscribe: revisions up to 2025-11-25
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        const METHOD: &str = "resources/subscribe";
        let agent = agent(&ctx)?;
        let uri = request.uri.as_str();
        let upstream = match self.readable_owner(&agent, uri).await? {
            Ok(upstream) => upstream,
            Err(why) => return Err(self.refuse(&agent, METHOD, why).await),
        };
        let limit = self.state.config.mcp.max_subscriptions_per_session;
        let (already, count) = {
            let held = self.session.subscriptions();
            let already = held
                .iter()
                .any(|(u, x)| Arc::ptr_eq(u, &upstream) && x == uri);
            (already, held.len())
        };
        if already {
            return Ok(());
        }
        if count >= limit {
            let message = format!(
                "a session may hold at most {limit} resource subscriptions (mcp.max_subscriptions_per_session)"
            );
            return Err(self.refuse(&agent, METHOD, message).await);
        }
        let subscriber = Subscriber::Session(ctx.peer.clone());
        match self
            .state
            .mcp
            .subscribe(&upstream, uri, self.session.id, subscriber)
            .await
        {
            Ok(()) => {}
            Err(e @ super::UpstreamError::Unsupported { .. }) => {
                return Err(self.refuse(&agent, METHOD, e.to_string()).await);
            }
            Err(e) => return Err(ErrorData::internal_error(e.to_string(), None)),
        }
        let mut held = self.session.subscriptions();
        if !held
            .iter()
            .any(|(u, x)| Arc::ptr_eq(u, &upstream) && x == uri)
        {
            held.push((upstream, uri.to_string()));
        }
        Ok(())
    }

    /// Ends the session's subscription to a resource (nothing to do when it holds none).
    #[allow(deprecated)] // resources/unsubscribe: revisions up to 2025-11-25
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        agent(&ctx)?;
        let mut left = Vec::new();
        self.session.subscriptions().retain(|(upstream, uri)| {
            if *uri == request.uri {
                left.push(Arc::clone(upstream));
                false
            } else {
                true
            }
        });
        for upstream in left {
            Upstreams::unsubscribe(&upstream, &request.uri, self.session.id);
        }
        Ok(())
    }

    /// `subscriptions/listen` (2026-07-28): every category the client asks for that `/mcp`
    /// declares (rmcp intersects them). Which resource URIs are relayed is decided in
    /// [`Gateway::listen`], where the agent is known.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    /// Holds a `subscriptions/listen` request (2026-07-28) until the client ends it: list
    /// changes of the organisation's upstreams, and updates of the resources it named that
    /// the agent may read (at most `mcp.max_subscriptions_per_session`; others are never
    /// sent, which tells nothing of whether they exist).
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let ctx = context.request_context();
        let agent = agent(ctx)?;
        let accepted = context.accepted().clone();
        let sink = context.sink().clone();
        let mut listening = Listening {
            id: self.state.mcp.lists().next_id(),
            held: Vec::new(),
            mcp: Arc::clone(&self.state.mcp),
        };
        let kinds: Vec<ListKind> = [
            (accepted.tools_list_changed, ListKind::Tools),
            (accepted.prompts_list_changed, ListKind::Prompts),
            (accepted.resources_list_changed, ListKind::Resources),
        ]
        .into_iter()
        .filter_map(|(on, kind)| (on == Some(true)).then_some(kind))
        .collect();
        if !kinds.is_empty() {
            self.state.mcp.lists().watch(
                listening.id,
                &agent.org.id,
                &kinds,
                Subscriber::Listen(sink.clone()),
            );
        }
        let limit = self.state.config.mcp.max_subscriptions_per_session;
        for uri in accepted.resource_subscriptions.iter().flatten().take(limit) {
            let Ok(upstream) = self.readable_owner(&agent, uri).await? else {
                continue;
            };
            let subscriber = Subscriber::Listen(sink.clone());
            match self
                .state
                .mcp
                .subscribe(&upstream, uri, listening.id, subscriber)
                .await
            {
                Ok(()) => listening.held.push((upstream, uri.clone())),
                Err(e) => {
                    tracing::debug!(%uri, error = %e, "mcp: a listen request's subscription failed");
                }
            }
        }
        context.cancelled().await;
        drop(listening);
        Ok(())
    }
}
