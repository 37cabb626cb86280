//! The benchmark of docs/performance.md ("MCP gateway: added latency of tools/call"): the
//! latency of a `tools/call` made directly on an upstream MCP server and the same call made
//! through AAF's `/mcp`, and the difference (what the gateway adds: authentication, the
//! decision, the action row and its audit events, the forwarding).
//!
//! The upstream is an rmcp server in this process (one `echo` tool, streamable HTTP on
//! 127.0.0.1), configured in AAF as an HTTP upstream (`mcp.servers`, reached through the SSRF
//! guard) under an allow-all policy, `mcp.tool_cache_seconds` at its default. The clients
//! are rmcp's, one MCP session per caller and path. After a warm-up, rounds alternate the two
//! paths (direct first in one round, AAF first in the next), each phase with `CALLERS`
//! concurrent callers.
//!
//! ```sh
//! cargo test --release -p aaf --test integration mcp_bench -- --ignored --nocapture
//! ```
//!
//! `MCP_BENCH_CALLERS` (default 4), `MCP_BENCH_CALLS` (calls per path, default 2000),
//! `MCP_BENCH_RATE` (calls per second per caller, paced, latency counted from when each call
//! was due; default 0: back to back),
//! `MCP_BENCH_ROUNDS` (default 10), `MCP_BENCH_WARMUP` (calls per path, default 200),
//! `MCP_BENCH_CLIENT_POOL=0`: the callers on rmcp's default HTTP client, a new connection per
//! request (default: connections kept open, see [`connect`]),
//! `MCP_BENCH_UPSTREAM_NODELAY=0`: the upstream without `TCP_NODELAY` (see [`start_upstream`]),
//! `MCP_BENCH_SQLITE_SYNCHRONOUS=normal`: AAF's commits not fsynced (default `full`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{
    StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use crate::common::{policy_dir, TestServer, ALLOW_ALL};
use crate::mcp::text;

/// The upstream: one tool, `echo(text)`, which returns the text.
#[derive(Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        });
        let Value::Object(schema) = schema else {
            unreachable!()
        };
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "echo",
            "Echo the given text back.",
            schema,
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("text"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

/// Serves [`Echo`] on 127.0.0.1 and a free port; returns the URL of its MCP endpoint.
///
/// With `nodelay`, every accepted connection has `TCP_NODELAY`, as uvicorn's and Node's HTTP
/// servers set by default (`axum::serve` does not). Without it, Nagle's algorithm holds the
/// second write of a streamable-HTTP answer (an SSE priming event, then the result) until the
/// client acknowledges the first, which a delayed ACK can put off by 40 ms.
async fn start_upstream(nodelay: bool) -> String {
    let service = StreamableHttpService::new(
        || Ok(Echo),
        Arc::<LocalSessionManager>::default(),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().route_service("/mcp", service);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(move |tcp| {
        if nodelay {
            tcp.set_nodelay(true).unwrap();
        }
    });
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}/mcp")
}

type Client = RunningService<RoleClient, ()>;

/// An MCP session on `url`. With `pooled`, the client keeps its HTTP connections open between
/// calls, as the official SDKs' clients do (the TypeScript SDK's `fetch`, the Python SDK's
/// `httpx`); rmcp's own default client opens a new connection for every request
/// (`pool_max_idle_per_host(0)`), which costs both paths a TCP handshake per call.
async fn connect(url: &str, key: Option<&str>, pooled: bool) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(key) = key {
        config = config.auth_header(key.to_string());
    }
    let transport = if pooled {
        let http = reqwest013::Client::builder()
            .tcp_nodelay(true)
            .build()
            .expect("an HTTP client");
        StreamableHttpClientTransport::with_client(http, config)
    } else {
        StreamableHttpClientTransport::from_config(config)
    };
    ().serve(transport).await.expect("the MCP session starts")
}

/// `calls` calls of `tool` on `client`, one after the other; the latency of each. With a
/// `pace`, call `i` is due `i * pace` after the start (the callers' starts are spread over one
/// `pace`) and its latency counts from when it was due, not from when it was sent: a call that
/// waits for a late one before it counts that wait too (no coordinated omission).
async fn run_calls(
    client: Arc<Client>,
    tool: &'static str,
    calls: usize,
    tag: usize,
    pace: Option<(Duration, usize)>,
) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(calls);
    let first = Instant::now()
        + pace.map_or(Duration::ZERO, |(every, callers)| {
            every.mul_f64(tag as f64 / callers as f64)
        });
    for i in 0..calls {
        let sent = format!("caller {tag} call {i}");
        let mut args = Map::new();
        args.insert("text".into(), Value::String(sent.clone()));
        let started = match pace {
            Some((every, _)) => {
                let due = first + every * u32::try_from(i).expect("calls fit in u32");
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        let result = client
            .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
            .await
            .expect("tools/call answers");
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            (result.is_error, text(&result)),
            (Some(false), sent),
            "{result:?}"
        );
    }
    latencies
}

/// One phase: every caller makes `per_caller` calls of `tool` at the same time, back to back
/// or one every `pace`.
async fn phase(
    clients: &[Arc<Client>],
    tool: &'static str,
    per_caller: usize,
    pace: Option<Duration>,
) -> Vec<f64> {
    let pace = pace.map(|every| (every, clients.len()));
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(tag, c)| tokio::spawn(run_calls(c.clone(), tool, per_caller, tag, pace)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// The `p`th percentile of sorted `values` (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Summary {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

fn summarise(name: &str, mut values: Vec<f64>, seconds: f64) -> Summary {
    values.sort_by(f64::total_cmp);
    let s = Summary {
        p50: percentile(&values, 50.0),
        p90: percentile(&values, 90.0),
        p99: percentile(&values, 99.0),
        max: values[values.len() - 1],
    };
    eprintln!(
        "BENCH {name:<22} n={:<6} p50={:.3} ms  p90={:.3} ms  p99={:.3} ms  max={:.3} ms  over 20 ms: {}  ({:.0} calls/s while measured)",
        values.len(),
        s.p50,
        s.p90,
        s.p99,
        s.max,
        values.iter().filter(|&&v| v > 20.0).count(),
        values.len() as f64 / seconds
    );
    s
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo test --release -p aaf --test integration mcp_bench -- --ignored --nocapture"]
async fn mcp_gateway_added_latency_benchmark() {
    let callers = env_usize("MCP_BENCH_CALLERS", 4).max(1);
    let calls = env_usize("MCP_BENCH_CALLS", 2000);
    let rounds = env_usize("MCP_BENCH_ROUNDS", 10).max(1);
    let warmup = env_usize("MCP_BENCH_WARMUP", 200);
    let per_caller = (calls / rounds / callers).max(1);
    // Calls per second per caller; 0: back to back (each caller waits only for its last call).
    let rate = env_usize("MCP_BENCH_RATE", 0);
    let pace = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
    eprintln!(
        "BENCH {callers} concurrent callers, {rounds} rounds of {per_caller} calls per caller and path ({} per path), warm-up {warmup} per path; {}; {} build",
        per_caller * callers * rounds,
        match pace {
            Some(_) => format!("paced: {rate} calls/s per caller, {} calls/s in all, latency from when each call was due", rate * callers),
            None => "back to back".to_string(),
        },
        if cfg!(debug_assertions) { "DEBUG (numbers not meaningful)" } else { "release" }
    );

    let nodelay = std::env::var("MCP_BENCH_UPSTREAM_NODELAY").as_deref() != Ok("0");
    eprintln!("BENCH upstream TCP_NODELAY: {nodelay}");
    let upstream = start_upstream(nodelay).await;
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    // `normal`: commits are not fsynced (to tell the two awaited commits' fsyncs apart).
    let synchronous = match std::env::var("MCP_BENCH_SQLITE_SYNCHRONOUS").as_deref() {
        Ok("normal") => aaf_server::config::SqliteSynchronous::Normal,
        _ => aaf_server::config::SqliteSynchronous::Full,
    };
    eprintln!("BENCH database: SQLite, synchronous={synchronous:?}");
    let server = TestServer::start(policies.path(), |c| {
        c.mcp.servers = vec![aaf_server::config::McpServerConfig::http(
            "bench", &upstream,
        )];
        c.database.sqlite_synchronous = synchronous;
    })
    .await;
    let (_, key) = server.create_agent("bench-agent").await;

    let pooled = std::env::var("MCP_BENCH_CLIENT_POOL").as_deref() != Ok("0");
    eprintln!(
        "BENCH callers' HTTP connections: {}",
        if pooled {
            "kept open between calls"
        } else {
            "a new one per request (rmcp's default client)"
        }
    );
    let mut direct = Vec::new();
    let mut gateway = Vec::new();
    for _ in 0..callers {
        direct.push(Arc::new(connect(&upstream, None, pooled).await));
        gateway.push(Arc::new(
            connect(&server.url("/mcp"), Some(&key), pooled).await,
        ));
    }
    let listed = gateway[0].list_all_tools().await.unwrap();
    assert!(listed.iter().any(|t| t.name == "bench__echo"), "{listed:?}");

    // Warm-up: sessions, connections, the upstream's session in AAF, caches.
    let warm_each = (warmup / callers).max(1);
    phase(&direct, "echo", warm_each, None).await;
    phase(&gateway, "bench__echo", warm_each, None).await;

    let (mut direct_ms, mut gateway_ms) = (Vec::new(), Vec::new());
    let (mut direct_s, mut gateway_s) = (0.0, 0.0);
    let started = Instant::now();
    for round in 0..rounds {
        for path in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let t = Instant::now();
            if path == 0 {
                direct_ms.extend(phase(&direct, "echo", per_caller, pace).await);
                direct_s += t.elapsed().as_secs_f64();
            } else {
                gateway_ms.extend(phase(&gateway, "bench__echo", per_caller, pace).await);
                gateway_s += t.elapsed().as_secs_f64();
            }
        }
    }
    let elapsed = started.elapsed();

    let d = summarise("direct to upstream", direct_ms, direct_s);
    let g = summarise("through AAF", gateway_ms, gateway_s);
    eprintln!(
        "BENCH added by AAF: p50 {:+.3} ms, p90 {:+.3} ms, p99 {:+.3} ms (measured in {:.1} s)",
        g.p50 - d.p50,
        g.p90 - d.p90,
        g.p99 - d.p99,
        elapsed.as_secs_f64()
    );
    eprintln!(
        "BENCH goal: at most 1 ms added at p99: {}",
        if g.p99 - d.p99 <= 1.0 {
            "met"
        } else {
            "NOT met"
        }
    );

    for c in direct.into_iter().chain(gateway) {
        if let Ok(c) = Arc::try_unwrap(c) {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.cancel()).await;
        }
    }
    server.stop().await;
}
