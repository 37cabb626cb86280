//! Upstream MCP servers: AAF is their client (rmcp). A server is either a child process AAF
//! starts and speaks MCP to over its standard input and output (stdio), or a remote server
//! reached over streamable HTTP. Servers come from the configuration (`mcp.servers`, offered
//! to every organisation) or from an organisation's admins (`/v1/mcp/servers`, that
//! organisation only; a configured name cannot be registered again).
//!
//! Each server is started (or connected) on first use, kept, and started again after it
//! dies: a call that finds it gone fails, and the next one starts it afresh.
//!
//! - A stdio server gets a scrubbed environment: nothing of AAF's own environment (which
//!   holds its secrets) but `PATH`, `HOME`, `LANG`, `LC_ALL`, `TMPDIR` and what its settings
//!   name; its standard error is captured line by line into AAF's log (target
//!   `aaf::mcp::upstream`).
//! - A streamable-HTTP server is reached only through the HTTP connector's SSRF guard
//!   ([`crate::connectors::guarded`]), never following a redirect.
//! - Credentials: header values (HTTP) and environment values (stdio) may refer to secrets
//!   (`${secret:name}`, [`crate::secrets`]), expanded when the server is started; an answer
//!   of the server that echoes one is masked before anyone sees it. The agent's own key is
//!   never passed on.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResult, GetPromptRequestParams, ProgressNotificationParam,
    ProgressToken, Prompt, ReadResourceRequestParams, Resource, ResourceTemplate,
    ServerCapabilities, Tool,
};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, RoleServer, ServiceError, ServiceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Mutex;

use crate::config::McpServerConfig;
use crate::connectors::http::HttpConnector;
use crate::runtime::RuntimeRules;
use crate::secrets::{self, Masker, SecretStore};

use super::watch::{ListKind, ListWatches, ResourceWatches, Subscriber};

/// Environment variables a stdio server inherits from AAF (everything else is dropped).
pub const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"];

/// Headers AAF sets itself on requests to a streamable-HTTP server, which settings may not
/// name: the transport's own (MCP streamable HTTP; SEP-2243's `Mcp-Method` and `Mcp-Name`)
/// and those that describe the connection (RFC 9110 section 7.6.1) or the body.
pub const RESERVED_HEADERS: &[&str] = &[
    "accept",
    "connection",
    "content-length",
    "content-type",
    "host",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "mcp-session-id",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// How AAF reaches an upstream MCP server; the JSON form of `/v1/mcp/servers` (`type`
/// `stdio` or `http`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Transport {
    /// A child process speaking MCP over its standard input and output.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Its environment (besides `PATH`, `HOME`, `LANG`, `LC_ALL`, `TMPDIR`); values may
        /// refer to secrets (`${secret:name}`).
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Its working directory (default: AAF's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP server.
    Http {
        /// Its MCP endpoint, `http` or `https`.
        url: String,
        /// Headers sent with every request (its credentials); values may refer to secrets
        /// (`${secret:name}`).
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

impl Transport {
    /// Checks the settings: a command, environment names, a URL, header names that are not
    /// [`RESERVED_HEADERS`], and every `${secret:...}` reference well formed and configured.
    ///
    /// # Errors
    ///
    /// `(field, message)`, the field relative to the transport (e.g. `headers.Authorization`).
    pub fn validate(&self, secrets: &dyn SecretStore) -> Result<(), (String, String)> {
        let templates: Vec<(String, &String)> = match self {
            Transport::Stdio {
                command, env, cwd, ..
            } => {
                if command.trim().is_empty() {
                    return Err(("command".into(), "must not be empty".into()));
                }
                if cwd.as_ref().is_some_and(|c| c.as_os_str().is_empty()) {
                    return Err(("cwd".into(), "must not be empty".into()));
                }
                for key in env.keys() {
                    if key.is_empty() || key.contains('=') || key.contains('\0') {
                        return Err((
                            format!("env.{key}"),
                            "is not an environment variable name".into(),
                        ));
                    }
                }
                env.iter().map(|(k, v)| (format!("env.{k}"), v)).collect()
            }
            Transport::Http { url, headers } => {
                let parsed = url::Url::parse(url)
                    .map_err(|e| ("url".to_string(), format!("is not a URL: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err((
                        "url".into(),
                        "must be an http or https URL with a host".into(),
                    ));
                }
                for (name, value) in headers {
                    let field = format!("headers.{name}");
                    let header = http::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| (field.clone(), "is not a header name".to_string()))?;
                    if RESERVED_HEADERS.contains(&header.as_str()) {
                        return Err((field, "is set by AAF and cannot be configured".into()));
                    }
                    if value.bytes().any(|b| b.is_ascii_control()) {
                        return Err((field, "holds control characters".into()));
                    }
                }
                headers
                    .iter()
                    .map(|(k, v)| (format!("headers.{k}"), v))
                    .collect()
            }
        };
        for (field, template) in templates {
            let names =
                secrets::references(template).map_err(|e| (field.clone(), e.to_string()))?;
            if let Some(unknown) = names.iter().find(|n| !secrets.has(n)) {
                return Err((
                    field,
                    format!("no secret {unknown:?} is configured ([secrets])"),
                ));
            }
        }
        Ok(())
    }

    /// The secrets its settings refer to.
    pub fn secret_names(&self) -> Vec<String> {
        let values: Vec<&String> = match self {
            Transport::Stdio { env, .. } => env.values().collect(),
            Transport::Http { headers, .. } => headers.values().collect(),
        };
        values
            .into_iter()
            .filter_map(|v| secrets::references(v).ok())
            .flatten()
            .collect()
    }
}

/// Why an upstream call did not return a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No server of that name is configured for the organisation.
    #[error("no MCP server {0:?} is configured")]
    UnknownServer(String),
    /// The server could not be started or reached, or broke off.
    #[error("the MCP server {server:?} failed: {message}")]
    Failed {
        /// The server.
        server: String,
        /// What happened.
        message: String,
    },
    /// The server did not answer in time (`mcp.call_timeout_ms`).
    #[error("the MCP server {server:?} did not answer within {ms} ms")]
    Timeout {
        /// The server.
        server: String,
        /// The time limit.
        ms: u64,
    },
    /// The SSRF guard refused the server's URL.
    #[error("ssrf: {0}")]
    Ssrf(String),
    /// The server does not offer what was asked of it (its handshake did not declare it).
    #[error("the MCP server {server:?} does not offer {what}")]
    Unsupported {
        /// The server.
        server: String,
        /// What it does not offer, e.g. "resource subscriptions".
        what: &'static str,
    },
}

/// Where an upstream's progress on a call goes: the agent's session and the token the agent
/// gave its request. The MCP gateway sets it ([`PROGRESS`]) around the pipeline when the
/// agent asked for progress.
#[derive(Clone)]
pub struct ProgressSink {
    /// The agent's session.
    pub peer: rmcp::Peer<RoleServer>,
    /// The agent's token.
    pub token: ProgressToken,
}

tokio::task_local! {
    /// The progress sink of the tool call the current task runs, if the agent asked for
    /// progress.
    pub static PROGRESS: ProgressSink;
}

/// A listing of a server's tools and when it was made.
type ToolCache = Mutex<Option<(Instant, Arc<Vec<Tool>>)>>;

/// AAF as the client of an upstream: relays the upstream's progress on a call to the agent
/// that asked for it (under the agent's own token; the upstream never sees it), masked;
/// relays its resource updates and list changes to the agents that watch them
/// ([`super::watch`]); writes its log messages to AAF's log.
#[derive(Clone)]
struct UpstreamClient {
    relays: Arc<std::sync::Mutex<HashMap<ProgressToken, ProgressSink>>>,
    masker: Arc<std::sync::OnceLock<Masker>>,
    server: Arc<str>,
    owner: Option<Arc<str>>,
    tools: Arc<ToolCache>,
    resources: Arc<ResourceWatches>,
    lists: Arc<ListWatches>,
}

impl UpstreamClient {
    fn relays(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, ProgressSink>> {
        self.relays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ClientHandler for UpstreamClient {
    async fn on_progress(
        &self,
        mut params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let Some(sink) = self.relays().get(&params.progress_token).cloned() else {
            return;
        };
        params.progress_token = sink.token;
        if let (Some(masker), Some(message)) = (self.masker.get(), params.message.as_ref()) {
            if let Some(masked) = masker.mask_str(message) {
                params.message = Some(masked);
            }
        }
        if let Err(e) = sink.peer.notify_progress(params).await {
            tracing::debug!(error = %e, "mcp: an upstream's progress was not relayed");
        }
    }

    /// The server's log messages go to AAF's log (target `aaf::mcp::upstream`), masked; they
    /// are not relayed to agents: the session is shared by every agent that uses the
    /// server, so a message cannot be told to be one agent's.
    #[allow(deprecated)] // logging: MCP revisions up to 2025-11-25 (SEP-2577)
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        use rmcp::model::LoggingLevel;
        let mut data = params.data;
        if let Some(masker) = self.masker.get() {
            masker.mask_json(&mut data);
        }
        let server = &*self.server;
        let logger = params.logger.as_deref().unwrap_or("");
        match params.level {
            LoggingLevel::Debug => {
                tracing::debug!(target: "aaf::mcp::upstream", %server, %logger, %data);
            }
            LoggingLevel::Info | LoggingLevel::Notice => {
                tracing::info!(target: "aaf::mcp::upstream", %server, %logger, %data);
            }
            LoggingLevel::Warning => {
                tracing::warn!(target: "aaf::mcp::upstream", %server, %logger, %data);
            }
            _ => tracing::error!(target: "aaf::mcp::upstream", %server, %logger, %data),
        }
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        ctx: NotificationContext<RoleClient>,
    ) {
        if self.resources.updated(&params.uri).await {
            // Nobody listens any more.
            #[allow(deprecated)] // resources/unsubscribe: revisions up to 2025-11-25
            let left = ctx
                .peer
                .unsubscribe(rmcp::model::UnsubscribeRequestParams::new(params.uri))
                .await;
            if let Err(e) = left {
                tracing::debug!(server = %self.server, error = %e, "mcp: unsubscribing on the server failed");
            }
        }
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        // The next call checks the pinned definition against a fresh listing.
        self.tools.lock().await.take();
        self.lists
            .changed(self.owner.as_deref(), ListKind::Tools)
            .await;
    }

    async fn on_prompt_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.lists
            .changed(self.owner.as_deref(), ListKind::Prompts)
            .await;
    }

    async fn on_resource_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        self.lists
            .changed(self.owner.as_deref(), ListKind::Resources)
            .await;
    }
}

type Client = RunningService<RoleClient, UpstreamClient>;

/// Ends a relayed call: forgets its progress relay, and tells the server the request is
/// cancelled when dropped before its answer.
struct CancelOnDrop {
    peer: Option<rmcp::Peer<RoleClient>>,
    id: rmcp::model::RequestId,
    relays: UpstreamClient,
    token: ProgressToken,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.relays.relays().remove(&self.token);
        let Some(peer) = self.peer.take() else {
            return;
        };
        let id = self.id.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let params = rmcp::model::CancelledNotificationParam::new(
                    Some(id),
                    Some("cancelled by AAF".into()),
                );
                let _ = peer.notify_cancelled(params).await;
            });
        }
    }
}

/// A started server: its client, the secrets its settings gave it (to mask), and the
/// progress relays of its calls.
struct Running {
    client: Client,
    masker: Masker,
    handler: UpstreamClient,
}

/// One upstream server and its running client, if started.
pub struct Upstream {
    name: String,
    /// The organisation that registered it; `None` for a configured server.
    owner: Option<String>,
    transport: Transport,
    running: Mutex<Option<Arc<Running>>>,
    tools: Arc<ToolCache>,
    resources: Arc<ResourceWatches>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    fn new(name: &str, owner: Option<&str>, transport: Transport) -> Arc<Upstream> {
        Arc::new(Upstream {
            name: name.to_string(),
            owner: owner.map(str::to_string),
            transport,
            running: Mutex::new(None),
            tools: Arc::new(Mutex::new(None)),
            resources: Arc::default(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }
}

/// An organisation's servers registered over the API, read at a runtime generation.
struct OrgServers {
    generation: i64,
    servers: HashMap<String, Arc<Upstream>>,
}

/// The upstream MCP servers: the configured ones and each organisation's.
pub struct Upstreams {
    configured: HashMap<String, Arc<Upstream>>,
    orgs: std::sync::RwLock<HashMap<String, OrgServers>>,
    timeout: Duration,
    tool_cache: Duration,
    http: Arc<HttpConnector>,
    secrets: Arc<dyn SecretStore>,
    store: aaf_store::Store,
    runtime: Arc<RuntimeRules>,
    lists: Arc<ListWatches>,
    accepted_pins: super::pins::AcceptedPins,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.configured.keys().collect();
        names.sort();
        f.debug_struct("Upstreams")
            .field("configured", &names)
            .finish_non_exhaustive()
    }
}

/// What [`Upstreams::new`] needs besides the configured servers.
pub struct UpstreamDeps {
    /// How long AAF waits for a server to start or answer (`mcp.call_timeout_ms`).
    pub timeout: Duration,
    /// How long a tool listing is reused to check a call (`mcp.tool_cache_seconds`).
    pub tool_cache: Duration,
    /// The HTTP connector, whose SSRF guard HTTP servers are reached through.
    pub http: Arc<HttpConnector>,
    /// Where `${secret:...}` references are read.
    pub secrets: Arc<dyn SecretStore>,
    /// Where organisations' servers are stored.
    pub store: aaf_store::Store,
    /// Whose generations say when an organisation's servers changed.
    pub runtime: Arc<RuntimeRules>,
}

impl Upstreams {
    /// The configured servers (checked by the configuration), none started yet.
    pub fn new(servers: &[McpServerConfig], deps: UpstreamDeps) -> Upstreams {
        Upstreams {
            configured: servers
                .iter()
                .map(|c| (c.name.clone(), Upstream::new(&c.name, None, c.transport())))
                .collect(),
            orgs: std::sync::RwLock::new(HashMap::new()),
            timeout: deps.timeout,
            tool_cache: deps.tool_cache,
            http: deps.http,
            secrets: deps.secrets,
            store: deps.store,
            runtime: deps.runtime,
            lists: Arc::default(),
            accepted_pins: super::pins::AcceptedPins::new(deps.tool_cache),
        }
    }

    /// The tools whose pins were lately found accepted ([`super::pins::AcceptedPins`]).
    pub fn accepted_pins(&self) -> &super::pins::AcceptedPins {
        &self.accepted_pins
    }

    /// The watchers of the upstreams' list changes.
    pub fn lists(&self) -> &ListWatches {
        &self.lists
    }

    /// Where `${secret:...}` references are read.
    pub fn secrets(&self) -> &dyn SecretStore {
        self.secrets.as_ref()
    }

    /// Whether a server of this name is in the configuration (offered to every
    /// organisation).
    pub fn is_configured(&self, name: &str) -> bool {
        self.configured.contains_key(name)
    }

    /// The configured servers, sorted by name.
    pub fn configured(&self) -> Vec<Arc<Upstream>> {
        let mut servers: Vec<Arc<Upstream>> = self.configured.values().cloned().collect();
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        servers
    }

    /// The organisation's servers registered over the API, read again from the store when
    /// its runtime generation moved since they were read.
    async fn org_servers(&self, org_id: &str) -> Result<Vec<Arc<Upstream>>, UpstreamError> {
        let generation = self.runtime.generation(org_id);
        {
            let orgs = self
                .orgs
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(cached) = orgs.get(org_id).filter(|o| o.generation == generation) {
                return Ok(cached.servers.values().cloned().collect());
            }
        }
        let stored =
            self.store
                .list_mcp_servers(org_id)
                .await
                .map_err(|e| UpstreamError::Failed {
                    server: "*".into(),
                    message: format!("the organisation's MCP servers could not be read: {e}"),
                })?;
        let mut orgs = self
            .orgs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = orgs.remove(org_id);
        let mut servers = HashMap::new();
        for record in stored {
            let Ok(transport) = serde_json::from_value::<Transport>(record.transport.clone())
            else {
                tracing::error!(%org_id, server = %record.name, "mcp: a stored server's settings cannot be read; it is left out");
                continue;
            };
            // A server whose settings did not change keeps its running client.
            let kept = previous
                .as_ref()
                .and_then(|p| p.servers.get(&record.name))
                .filter(|u| u.transport == transport)
                .cloned();
            let upstream =
                kept.unwrap_or_else(|| Upstream::new(&record.name, Some(org_id), transport));
            servers.insert(record.name, upstream);
        }
        let list = servers.values().cloned().collect();
        orgs.insert(
            org_id.to_string(),
            OrgServers {
                generation,
                servers,
            },
        );
        Ok(list)
    }

    /// Every server the organisation's agents may use, sorted by name.
    ///
    /// # Errors
    ///
    /// [`UpstreamError::Failed`] when its registered servers cannot be read.
    pub async fn servers(&self, org_id: &str) -> Result<Vec<Arc<Upstream>>, UpstreamError> {
        let mut servers = self.configured();
        servers.extend(self.org_servers(org_id).await?);
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(servers)
    }

    /// The server `name` of the organisation.
    ///
    /// # Errors
    ///
    /// [`UpstreamError::UnknownServer`], or [`UpstreamError::Failed`] when the
    /// organisation's servers cannot be read.
    pub async fn server(&self, org_id: &str, name: &str) -> Result<Arc<Upstream>, UpstreamError> {
        if let Some(u) = self.configured.get(name) {
            return Ok(Arc::clone(u));
        }
        self.org_servers(org_id)
            .await?
            .into_iter()
            .find(|u| u.name == name)
            .ok_or_else(|| UpstreamError::UnknownServer(name.to_string()))
    }

    /// The running client of `upstream`, started when it is not running.
    async fn running(&self, upstream: &Upstream) -> Result<Arc<Running>, UpstreamError> {
        let mut slot = upstream.running.lock().await;
        if let Some(running) = slot.as_ref() {
            if !running.client.is_closed() {
                return Ok(Arc::clone(running));
            }
            tracing::warn!(server = %upstream.name, "mcp upstream: the server stopped; starting it again");
        }
        let started = tokio::time::timeout(self.timeout, self.start(upstream))
            .await
            .map_err(|_| self.timed_out(&upstream.name))??;
        let running = Arc::new(started);
        *slot = Some(Arc::clone(&running));
        Ok(running)
    }

    /// Forgets a client that failed, so that the next call starts the server again.
    async fn drop_client(upstream: &Upstream) {
        upstream.running.lock().await.take();
        upstream.tools.lock().await.take();
    }

    fn timed_out(&self, name: &str) -> UpstreamError {
        UpstreamError::Timeout {
            server: name.to_string(),
            ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn failed(name: &str, e: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Failed {
            server: name.to_string(),
            message: e.to_string(),
        }
    }

    /// Every tool of the server (all pages), listed now; secrets it echoes are masked.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when it cannot be started or does not answer.
    pub async fn list_tools(&self, upstream: &Upstream) -> Result<Arc<Vec<Tool>>, UpstreamError> {
        let (listed, masker) = self
            .request(upstream, |r| async move { r.client.list_all_tools().await })
            .await?;
        let tools: Vec<Tool> = listed.into_iter().map(|tool| mask(&masker, tool)).collect();
        let tools = Arc::new(tools);
        *upstream.tools.lock().await = Some((Instant::now(), Arc::clone(&tools)));
        Ok(tools)
    }

    /// The server's current definition of `tool`: from a listing at most
    /// `mcp.tool_cache_seconds` old, else listed now. `None`: the server has no such tool.
    ///
    /// # Errors
    ///
    /// As [`Upstreams::list_tools`].
    pub async fn tool(
        &self,
        upstream: &Upstream,
        tool: &str,
    ) -> Result<Option<Tool>, UpstreamError> {
        let cached = upstream
            .tools
            .lock()
            .await
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.tool_cache)
            .map(|(_, tools)| Arc::clone(tools));
        let tools = match cached {
            Some(tools) => tools,
            None => self.list_tools(upstream).await?,
        };
        Ok(tools.iter().find(|t| t.name == tool).cloned())
    }

    /// Calls `tool` of the server with `arguments`; the server's own tool errors are results
    /// (`is_error`), not errors. Secrets the result echoes are masked.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when it cannot be started, fails or does not answer within the
    /// time limit.
    pub async fn call_tool(
        &self,
        upstream: &Upstream,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        // The progress sink of the call is read here, in the task of the agent's request.
        let sink = PROGRESS.try_with(Clone::clone).ok();
        let (result, masker) = self
            .request(upstream, |r| async move {
                match sink {
                    None => r.client.call_tool(params).await,
                    Some(sink) => Self::call_relaying(&r, params, sink).await,
                }
            })
            .await?;
        to_masked_json(&masker, &result).map_err(|e| Self::failed(&upstream.name, e))
    }

    /// Calls a tool and relays the server's progress on it to `sink`. rmcp gives every
    /// request a progress token of its own; the relay is keyed by it (a notification the
    /// server sends before the request is registered here, within microseconds, is lost).
    /// Dropped before the answer (a kill switch aborting the call, a timeout), it tells the
    /// server the request is cancelled, as rmcp's own `call_tool` does.
    async fn call_relaying(
        running: &Running,
        params: CallToolRequestParams,
        sink: ProgressSink,
    ) -> Result<CallToolResult, ServiceError> {
        let request =
            rmcp::model::ClientRequest::CallToolRequest(rmcp::model::Request::new(params));
        let handle = running
            .client
            .send_cancellable_request(request, rmcp::service::PeerRequestOptions::no_options())
            .await?;
        let token = handle.progress_token.clone();
        running.handler.relays().insert(token.clone(), sink);
        let mut cancel = CancelOnDrop {
            peer: Some(handle.peer.clone()),
            id: handle.id.clone(),
            relays: running.handler.clone(),
            token,
        };
        let answer = handle.await_response().await;
        // Answered: nothing to cancel (the relay goes with the guard).
        cancel.peer = None;
        drop(cancel);
        match answer? {
            rmcp::model::ServerResult::CallToolResult(result) => Ok(result),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }

    /// Runs one request on the server's client within the time limit; a client that broke
    /// off is forgotten, so that the next request starts the server again.
    async fn request<T, F, Fut>(
        &self,
        upstream: &Upstream,
        f: F,
    ) -> Result<(T, Masker), UpstreamError>
    where
        F: FnOnce(Arc<Running>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ServiceError>>,
    {
        let running = self.running(upstream).await?;
        let masker = running.masker.clone();
        let closed = Arc::clone(&running);
        match tokio::time::timeout(self.timeout, f(running)).await {
            Ok(Ok(value)) => Ok((value, masker)),
            Ok(Err(e)) => {
                if closed.client.is_closed() {
                    Self::drop_client(upstream).await;
                }
                Err(Self::failed(&upstream.name, e))
            }
            Err(_) => Err(self.timed_out(&upstream.name)),
        }
    }

    /// What the server said it offers in its handshake (none when it cannot be started).
    async fn capabilities(&self, upstream: &Upstream) -> Option<ServerCapabilities> {
        let running = self.running(upstream).await.ok()?;
        running
            .client
            .peer_info()
            .map(|info| info.capabilities.clone())
    }

    /// Every prompt of the server (none when it offers none); secrets it echoes are masked.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when it cannot be started or does not answer.
    pub async fn list_prompts(&self, upstream: &Upstream) -> Result<Vec<Prompt>, UpstreamError> {
        if self
            .capabilities(upstream)
            .await
            .is_some_and(|c| c.prompts.is_none())
        {
            return Ok(Vec::new());
        }
        let (prompts, masker) = self
            .request(
                upstream,
                |r| async move { r.client.list_all_prompts().await },
            )
            .await?;
        Ok(prompts.into_iter().map(|p| mask(&masker, p)).collect())
    }

    /// Gets the prompt `name` with `arguments`, as JSON (`GetPromptResult`), masked.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`].
    pub async fn get_prompt(
        &self,
        upstream: &Upstream,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<Value, UpstreamError> {
        let mut params = GetPromptRequestParams::new(name.to_string());
        if !arguments.is_empty() {
            params = params.with_arguments(arguments);
        }
        let (result, masker) = self
            .request(
                upstream,
                |r| async move { r.client.get_prompt(params).await },
            )
            .await?;
        to_masked_json(&masker, &result).map_err(|e| Self::failed(&upstream.name, e))
    }

    /// Every resource of the server (none when it offers none), masked.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`].
    pub async fn list_resources(
        &self,
        upstream: &Upstream,
    ) -> Result<Vec<Resource>, UpstreamError> {
        if self
            .capabilities(upstream)
            .await
            .is_some_and(|c| c.resources.is_none())
        {
            return Ok(Vec::new());
        }
        let (resources, masker) = self
            .request(
                upstream,
                |r| async move { r.client.list_all_resources().await },
            )
            .await?;
        Ok(resources.into_iter().map(|x| mask(&masker, x)).collect())
    }

    /// Every resource template of the server (none when it offers no resources), masked.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`].
    pub async fn list_resource_templates(
        &self,
        upstream: &Upstream,
    ) -> Result<Vec<ResourceTemplate>, UpstreamError> {
        if self
            .capabilities(upstream)
            .await
            .is_some_and(|c| c.resources.is_none())
        {
            return Ok(Vec::new());
        }
        let (templates, masker) = self
            .request(upstream, |r| async move {
                r.client.list_all_resource_templates().await
            })
            .await?;
        Ok(templates.into_iter().map(|x| mask(&masker, x)).collect())
    }

    /// Reads the resource `uri`, as JSON (`ReadResourceResult`), masked.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`].
    pub async fn read_resource(
        &self,
        upstream: &Upstream,
        uri: &str,
    ) -> Result<Value, UpstreamError> {
        let params = ReadResourceRequestParams::new(uri.to_string());
        let (result, masker) = self
            .request(
                upstream,
                |r| async move { r.client.read_resource(params).await },
            )
            .await?;
        to_masked_json(&masker, &result).map_err(|e| Self::failed(&upstream.name, e))
    }

    /// Subscribes the watcher `id` (an agent's session or listen request) to the resource
    /// `uri` of the server; AAF subscribes on the server when it is the URI's first
    /// subscriber. Updates are relayed by [`super::watch`].
    ///
    /// # Errors
    ///
    /// [`UpstreamError::Unsupported`] when the server does not offer subscriptions, else as
    /// any request.
    pub async fn subscribe(
        &self,
        upstream: &Upstream,
        uri: &str,
        id: u64,
        subscriber: Subscriber,
    ) -> Result<(), UpstreamError> {
        let offered = self
            .capabilities(upstream)
            .await
            .and_then(|c| c.resources)
            .and_then(|r| r.subscribe)
            .unwrap_or(false);
        if !offered {
            return Err(UpstreamError::Unsupported {
                server: upstream.name.clone(),
                what: "resource subscriptions",
            });
        }
        if !upstream.resources.add(uri, id, subscriber) {
            return Ok(());
        }
        let params = rmcp::model::SubscribeRequestParams::new(uri.to_string());
        #[allow(deprecated)] // resources/subscribe: revisions up to 2025-11-25
        let subscribed = self
            .request(
                upstream,
                |r| async move { r.client.subscribe(params).await },
            )
            .await;
        if let Err(e) = subscribed {
            upstream.resources.remove(uri, id);
            return Err(e);
        }
        Ok(())
    }

    /// Ends the subscription of `id` to `uri`; when it was the last, AAF unsubscribes on the
    /// server (in the background, and only when the server is running: a stopped server
    /// holds no subscription). Does nothing when `id` is not subscribed.
    pub fn unsubscribe(upstream: &Arc<Upstream>, uri: &str, id: u64) {
        if !upstream.resources.remove(uri, id) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let upstream = Arc::clone(upstream);
        let uri = uri.to_string();
        runtime.spawn(async move {
            let running = upstream.running.lock().await.clone();
            let Some(running) = running.filter(|r| !r.client.is_closed()) else {
                return;
            };
            #[allow(deprecated)] // resources/unsubscribe: revisions up to 2025-11-25
            let left = running
                .client
                .unsubscribe(rmcp::model::UnsubscribeRequestParams::new(uri.clone()))
                .await;
            if let Err(e) = left {
                tracing::debug!(server = %upstream.name, %uri, error = %e, "mcp: unsubscribing on the server failed");
            }
        });
    }

    /// Asks the server to complete an argument of one of its prompts or resource templates
    /// (`completion/complete`, `request.ref` naming the server's own prompt or template); no
    /// values when the server offers no completions. Values that echo a secret are masked.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`].
    pub async fn complete(
        &self,
        upstream: &Upstream,
        request: rmcp::model::CompleteRequestParams,
    ) -> Result<rmcp::model::CompleteResult, UpstreamError> {
        if self
            .capabilities(upstream)
            .await
            .is_some_and(|c| c.completions.is_none())
        {
            return Ok(rmcp::model::CompleteResult::default());
        }
        let (result, masker) = self
            .request(
                upstream,
                |r| async move { r.client.complete(request).await },
            )
            .await?;
        Ok(mask(&masker, result))
    }

    /// Starts (stdio) or connects to (HTTP) a server and runs the MCP handshake.
    async fn start(&self, upstream: &Upstream) -> Result<Running, UpstreamError> {
        let name = upstream.name.as_str();
        let secret_error =
            |field: &str, e: secrets::SecretError| Self::failed(name, format!("{field}: {e}"));
        let mut used = Vec::new();
        let mut refusals = None;
        let handler = UpstreamClient {
            relays: Arc::default(),
            masker: Arc::default(),
            server: name.into(),
            owner: upstream.owner.as_deref().map(Into::into),
            tools: Arc::clone(&upstream.tools),
            resources: Arc::clone(&upstream.resources),
            lists: Arc::clone(&self.lists),
        };
        let client = match &upstream.transport {
            Transport::Stdio {
                command: program,
                args,
                env,
                cwd,
            } => {
                let mut command = tokio::process::Command::new(program);
                command.args(args).env_clear().kill_on_drop(true);
                for key in INHERITED_ENV {
                    if let Some(value) = std::env::var_os(key) {
                        command.env(key, value);
                    }
                }
                for (key, template) in env {
                    let (value, secrets) = secrets::expand(template, self.secrets.as_ref())
                        .map_err(|e| secret_error(&format!("env.{key}"), e))?;
                    command.env(key, value.as_str());
                    used.extend(secrets);
                }
                if let Some(dir) = cwd {
                    command.current_dir(dir);
                }
                let (transport, stderr) = TokioChildProcess::builder(command)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| Self::failed(name, format!("cannot start {program:?}: {e}")))?;
                if let Some(stderr) = stderr {
                    let server = name.to_string();
                    let masker = Masker::new(used.clone());
                    tokio::spawn(async move {
                        let mut lines = tokio::io::BufReader::new(stderr).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            let line = masker.mask_str(&line).unwrap_or(line);
                            tracing::info!(target: "aaf::mcp::upstream", server = %server, "{line}");
                        }
                    });
                }
                handler.clone().serve(transport).await
            }
            Transport::Http { url, headers } => {
                let (client, refused) = crate::connectors::guarded::client(&self.http, url)
                    .map_err(|e| match e {
                        crate::connectors::ConnectorError::Ssrf(m) => UpstreamError::Ssrf(m),
                        other => Self::failed(name, other),
                    })?;
                let mut custom = HashMap::new();
                for (key, template) in headers {
                    let field = format!("headers.{key}");
                    let (value, secrets) = secrets::expand(template, self.secrets.as_ref())
                        .map_err(|e| secret_error(&field, e))?;
                    let header = http::HeaderName::from_bytes(key.as_bytes())
                        .map_err(|e| Self::failed(name, format!("{field}: {e}")))?;
                    let mut value = http::HeaderValue::from_str(value.as_str())
                        .map_err(|_| Self::failed(name, format!("{field}: not a header value")))?;
                    value.set_sensitive(true);
                    custom.insert(header, value);
                    used.extend(secrets);
                }
                refusals = Some(refused);
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom);
                handler
                    .clone()
                    .serve(StreamableHttpClientTransport::with_client(client, config))
                    .await
            }
        };
        let masker = Masker::new(used);
        let _ = handler.masker.set(masker.clone());
        let client = client.map_err(|e| {
            if let Some(reason) = refusals.as_ref().and_then(|r| r.take()) {
                return UpstreamError::Ssrf(reason);
            }
            let chain = crate::connectors::http::error_chain(&e);
            let message = format!("the MCP handshake failed: {chain}");
            Self::failed(name, masker.mask_str(&message).unwrap_or(message))
        })?;
        tracing::info!(server = %name, "mcp upstream: started");
        // A server started again gets the subscriptions agents still hold.
        for uri in upstream.resources.uris() {
            #[allow(deprecated)] // resources/subscribe: revisions up to 2025-11-25
            let subscribed = client
                .subscribe(rmcp::model::SubscribeRequestParams::new(uri.clone()))
                .await;
            if let Err(e) = subscribed {
                tracing::warn!(server = %name, %uri, error = %e, "mcp upstream: a subscription could not be renewed");
            }
        }
        Ok(Running {
            client,
            masker,
            handler,
        })
    }
}

/// `item` (a tool, prompt, resource) with the secrets it echoes masked (in its description,
/// schema, ...).
fn mask<T: Serialize + serde::de::DeserializeOwned>(masker: &Masker, item: T) -> T {
    if masker.is_empty() {
        return item;
    }
    let Ok(mut value) = serde_json::to_value(&item) else {
        return item;
    };
    if !masker.mask_json(&mut value) {
        return item;
    }
    serde_json::from_value(value).unwrap_or(item)
}

/// `result` as JSON with the secrets it echoes masked.
fn to_masked_json<T: Serialize>(masker: &Masker, result: &T) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(result)?;
    masker.mask_json(&mut value);
    Ok(value)
}
