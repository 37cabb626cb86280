//! `aaf mcp stdio`: for MCP clients that can only launch a server over stdio. The bridge is
//! an MCP server on its standard input and output, and an MCP client of AAF's `/mcp`
//! (streamable HTTP) with the agent's key from the environment; every request it gets is
//! forwarded to AAF, so every call is decided and recorded there (docs/mcp.md).
//!
//! It forwards `tools/list` and `tools/call` (what AAF's gateway serves); its log goes to
//! standard error, as stdio servers must leave standard output to the protocol.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt};

/// Forwards the client's requests to AAF.
#[derive(Clone)]
struct Bridge {
    aaf: Peer<RoleClient>,
}

/// An error of AAF (or of the way to it) as the stdio client sees it.
fn forwarded(e: rmcp::ServiceError) -> ErrorData {
    match e {
        rmcp::ServiceError::McpError(e) => e,
        other => ErrorData::internal_error(format!("AAF could not be reached: {other}"), None),
    }
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("aaf-mcp-stdio", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Agent Action Firewall: every tool call is decided by your organisation's policies, may wait for a human approval, and is recorded.",
            )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.aaf.list_tools(request).await.map_err(forwarded)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.aaf
            .call_tool(request)
            .await
            .map(Into::into)
            .map_err(forwarded)
    }
}

/// The HTTP client of the bridge: it keeps its connections to AAF open between requests
/// (rmcp's default client opens a new one, and over HTTPS makes a new TLS handshake, for every
/// request), with `TCP_NODELAY`, and follows no redirect (the agent's key goes to the `/mcp`
/// it was given and nowhere else).
///
/// # Errors
///
/// When the client cannot be built (no TLS provider).
fn http_client() -> anyhow::Result<reqwest013::Client> {
    reqwest013::Client::builder()
        .tcp_nodelay(true)
        .redirect(reqwest013::redirect::Policy::none())
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))
}

/// Connects to `server`'s `/mcp` with `key`, then serves MCP on stdio until the client
/// closes it.
///
/// # Errors
///
/// A message when AAF cannot be reached or refuses the key, or stdio fails.
pub async fn run(server: &str, key: &str) -> anyhow::Result<std::process::ExitCode> {
    let url = format!("{}/mcp", server.trim_end_matches('/'));
    let config = StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(key);
    let aaf = ()
        .serve(StreamableHttpClientTransport::with_client(
            http_client()?,
            config,
        ))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start an MCP session with {url}: {e}"))?;
    let bridge = Bridge {
        aaf: aaf.peer().clone(),
    };
    let stdio = bridge
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("the MCP client on stdio did not start a session: {e}"))?;
    stdio
        .waiting()
        .await
        .map_err(|e| anyhow::anyhow!("the stdio session failed: {e}"))?;
    // Ends AAF's session too (DELETE /mcp).
    aaf.cancel()
        .await
        .map_err(|e| anyhow::anyhow!("the session with AAF did not close: {e}"))?;
    Ok(std::process::ExitCode::SUCCESS)
}
