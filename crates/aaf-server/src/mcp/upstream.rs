//! Upstream MCP servers: AAF is their client (rmcp). Each configured server is started (a
//! child process speaking MCP over stdio) on first use, kept running, and started again
//! after it dies; a call that finds it gone fails, and the next one starts it afresh.
//!
//! A stdio server gets a scrubbed environment: nothing of AAF's own environment (which holds
//! its secrets) but `PATH`, `HOME`, `LANG` and what its configuration names; its standard
//! error is captured line by line into AAF's log (target `aaf::mcp::upstream`).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Mutex;

use crate::config::McpServerConfig;

/// Environment variables a stdio server inherits from AAF (everything else is dropped).
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"];

/// Why an upstream call did not return a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No server of that name is configured.
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
}

type Client = RunningService<RoleClient, ()>;

/// One configured upstream and its running client, if started.
struct Upstream {
    config: McpServerConfig,
    client: Mutex<Option<Arc<Client>>>,
}

/// The configured upstream MCP servers.
pub struct Upstreams {
    servers: HashMap<String, Upstream>,
    timeout: Duration,
}

impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.servers.keys().collect();
        names.sort();
        f.debug_struct("Upstreams")
            .field("servers", &names)
            .finish_non_exhaustive()
    }
}

impl Upstreams {
    /// The upstreams of `servers` (checked by the configuration), none started yet; a call
    /// waits at most `timeout` for its answer (and for a server to start).
    pub fn new(servers: &[McpServerConfig], timeout: Duration) -> Upstreams {
        Upstreams {
            servers: servers
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        Upstream {
                            config: c.clone(),
                            client: Mutex::new(None),
                        },
                    )
                })
                .collect(),
            timeout,
        }
    }

    /// The configured servers' names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.servers.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether a server of this name is configured.
    pub fn has(&self, name: &str) -> bool {
        self.servers.contains_key(name)
    }

    fn upstream(&self, name: &str) -> Result<&Upstream, UpstreamError> {
        self.servers
            .get(name)
            .ok_or_else(|| UpstreamError::UnknownServer(name.to_string()))
    }

    /// The running client of `name`, started when it is not running.
    async fn client(&self, name: &str) -> Result<Arc<Client>, UpstreamError> {
        let upstream = self.upstream(name)?;
        let mut slot = upstream.client.lock().await;
        if let Some(client) = slot.as_ref() {
            if !client.is_closed() {
                return Ok(Arc::clone(client));
            }
            tracing::warn!(server = %name, "mcp upstream: the server stopped; starting it again");
        }
        let started = tokio::time::timeout(self.timeout, start(&upstream.config))
            .await
            .map_err(|_| self.timed_out(name))??;
        let client = Arc::new(started);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Forgets a client that failed, so that the next call starts the server again.
    async fn drop_client(&self, name: &str) {
        if let Ok(upstream) = self.upstream(name) {
            upstream.client.lock().await.take();
        }
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

    /// Every tool of the server `name` (all pages).
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when it is not configured, cannot be started or does not answer.
    pub async fn list_tools(&self, name: &str) -> Result<Vec<Tool>, UpstreamError> {
        let client = self.client(name).await?;
        match tokio::time::timeout(self.timeout, client.list_all_tools()).await {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(e)) => {
                self.drop_client(name).await;
                Err(Self::failed(name, e))
            }
            Err(_) => Err(self.timed_out(name)),
        }
    }

    /// Calls `tool` of the server `name` with `arguments`; the server's own tool errors are
    /// results (`is_error`), not errors.
    ///
    /// # Errors
    ///
    /// [`UpstreamError`] when it is not configured, cannot be started, fails or does not
    /// answer within the time limit.
    pub async fn call_tool(
        &self,
        name: &str,
        tool: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallToolResult, UpstreamError> {
        let client = self.client(name).await?;
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        match tokio::time::timeout(self.timeout, client.call_tool(params)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(e)) => {
                if client.is_closed() {
                    self.drop_client(name).await;
                }
                Err(Self::failed(name, e))
            }
            Err(_) => Err(self.timed_out(name)),
        }
    }
}

/// Starts a stdio server with a scrubbed environment and its standard error logged, and
/// runs the MCP handshake with it.
async fn start(config: &McpServerConfig) -> Result<Client, UpstreamError> {
    let name = config.name.as_str();
    let Some(program) = &config.command else {
        return Err(Upstreams::failed(
            name,
            "only stdio servers (command) are supported so far",
        ));
    };
    let mut command = tokio::process::Command::new(program);
    command.args(&config.args).env_clear().kill_on_drop(true);
    for key in INHERITED_ENV {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command.envs(&config.env);
    if let Some(dir) = &config.cwd {
        command.current_dir(dir);
    }
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Upstreams::failed(name, format!("cannot start {program:?}: {e}")))?;
    if let Some(stderr) = stderr {
        let server = name.to_string();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "aaf::mcp::upstream", server = %server, "{line}");
            }
        });
    }
    let client = ()
        .serve(transport)
        .await
        .map_err(|e| Upstreams::failed(name, format!("the MCP handshake failed: {e}")))?;
    tracing::info!(server = %name, "mcp upstream: started");
    Ok(client)
}
