//! Configuration: defaults -> optional `aaf.toml` -> `AAF_*` environment variables -> flags.
//!
//! Layering uses `figment`. Environment variables map to keys by lowercasing and splitting
//! nested sections on a double underscore: `AAF_LIMITS__EVAL_TIMEOUT_MS=50` sets
//! `limits.eval_timeout_ms`. Unknown keys, from any layer, are an error. Every key is
//! documented in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aaf_core::secrets::Secret;
use figment::providers::{Format, Serialized, Toml};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::connectors::http::HttpConnectorConfig;

/// The configuration file read when no `--config` is given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "aaf.toml";

/// The whole server configuration (the raw, user-facing form; see [`Config::load`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8700`.
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite database (`aaf.db`) and the `admin-token` file.
    /// Default `./aaf-data`.
    pub data_dir: PathBuf,
    /// Directory of `.rego` policy files, read recursively (`*_test.rego` files and the
    /// top-level `packs/` are skipped), shared by every organisation and reloaded on change
    /// (`policy_engine.watch`). Default `./policies`; when it does not exist the bundled
    /// starter policy is used.
    pub policies: PathBuf,
    /// Admin token of the default organisation, used on first start instead of a generated
    /// one. Environment: `AAF_ADMIN_TOKEN`. Only its SHA-256 is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
    /// Connections: limit and read/idle time-outs.
    pub server: ServerConfig,
    /// Request and evaluation limits.
    pub limits: LimitsConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// Logging.
    pub log: LogConfig,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: MetricsConfig,
    /// Storage.
    pub database: DatabaseConfig,
    /// The audit writer.
    pub audit: AuditConfig,
    /// Human approvals.
    pub approvals: ApprovalsConfig,
    /// Connectors.
    pub connectors: ConnectorsConfig,
    /// Webhook notifications.
    pub webhooks: WebhooksConfig,
    /// The policy engine: decision cache, refresh of managed policies, directory watch.
    pub policy_engine: PolicyEngineConfig,
    /// Runtime protection: kill switches, rate limits, circuit breakers.
    pub runtime: RuntimeConfig,
    /// Budgets: the currency of cost budgets and the price of each model
    /// (docs/runtime-protection.md, "Budgets").
    pub budgets: aaf_core::budget::PriceTable,
    /// The MCP gateway: the upstream MCP servers and how calls wait (docs/mcp.md).
    pub mcp: McpConfig,
    /// The detectors: what the outbound checks do with what they find (docs/detection.md).
    pub detection: DetectionConfig,
    /// The built-in alert rules: thresholds, rules turned off, rules that stop the agent
    /// (docs/alerts.md).
    pub alerts: crate::alerts::AlertsConfig,
    /// The transparency log over the audit chains: Merkle trees, signed checkpoints and
    /// where they are exported (docs/audit.md, "Transparency log").
    pub evidence: crate::evidence::EvidenceConfig,
    /// Encryption at rest: the master key that wraps the data keys (docs/encryption.md).
    pub encryption: crate::encryption::EncryptionConfig,
    /// Retention: how often each node applies the organisations' rules (docs/retention.md).
    pub retention: crate::retention::RetentionConfig,
    /// Named secrets AAF presents to upstreams for the agents (docs/credentials.md):
    /// `name = { env = "VAR" }` or `name = { file = "/path" }`, referred to as
    /// `${secret:name}`. Default: none.
    pub secrets: std::collections::BTreeMap<String, crate::secrets::SecretSource>,
}

/// `[detection]`: the detectors (docs/detection.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// What the outbound checks do with a match, per detector, kind or `default`:
    /// `record`, `mask` or `block`, laid over the defaults (secrets, payment cards and US
    /// SSNs masked, the rest recorded); each organisation's `outbound_detection` setting is
    /// laid over this. Default: nothing over the defaults.
    pub outbound: crate::pipeline::outbound::OutboundRules,
    /// An external classifier asked about each action whose policies use
    /// `input.detections` (docs/detection.md, "External classifier"). Default: none.
    pub classifier: crate::pipeline::classifier::ClassifierConfig,
    /// Behavioural risk scores: each agent's learned profile and every action's score
    /// against it (docs/detection.md, "Risk scores").
    pub risk: crate::runtime::risk::RiskConfig,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            outbound: crate::pipeline::outbound::OutboundRules(std::collections::BTreeMap::new()),
            classifier: crate::pipeline::classifier::ClassifierConfig::default(),
            risk: crate::runtime::risk::RiskConfig::default(),
        }
    }
}

/// `[mcp]`: the MCP gateway (docs/mcp.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// The upstream MCP servers offered to every organisation's agents. Default: none.
    pub servers: Vec<McpServerConfig>,
    /// How long a `tools/call` that needs a human approval is held for the answer, in
    /// seconds, 0 to 3600; past it the result names the action to follow. Default 30.
    pub approval_wait_seconds: u64,
    /// How long AAF waits for an upstream to start or to answer a call, in milliseconds,
    /// 100 to 600000. Default 60000.
    pub call_timeout_ms: u64,
    /// The URL of `/mcp` as agents reach it (e.g. `https://aaf.example.com/mcp`), named in
    /// its protected-resource metadata (RFC 9728). Default: `http://` and the request's
    /// `Host`.
    #[serde(default)]
    pub resource_url: Option<String>,
    /// Whether organisation admins may register stdio servers (a command AAF runs on its
    /// own host) over the API. Default `false`: only streamable-HTTP servers; stdio servers
    /// come from this file, which only the operator writes.
    pub allow_api_stdio: bool,
    /// How long a listing of an upstream's tools is reused to check a call against its
    /// pinned definition, in seconds, 0 to 3600 (0: list at every call). Default 30.
    pub tool_cache_seconds: u64,
    /// The most servers an organisation may register over the API, 0 to 1000. Default 50.
    pub max_servers_per_org: usize,
    /// The largest answer of an upstream (a tool result, a prompt, a resource) AAF keeps and
    /// returns, in bytes of JSON, 1024 to 67108864; a larger one fails the request. Default
    /// 1 MiB (1048576).
    pub max_result_bytes: usize,
    /// The most resource subscriptions one MCP session (or one `subscriptions/listen`
    /// request) may hold, 0 to 10000. Default 100.
    pub max_subscriptions_per_session: usize,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            servers: Vec::new(),
            approval_wait_seconds: 30,
            call_timeout_ms: 60_000,
            resource_url: None,
            allow_api_stdio: false,
            tool_cache_seconds: 30,
            max_servers_per_org: 50,
            max_result_bytes: 1_048_576,
            max_subscriptions_per_session: 100,
        }
    }
}

/// One entry of `mcp.servers`: an upstream MCP server offered to every organisation, either
/// a child process AAF starts and speaks MCP to over its standard input and output
/// (`command`), or a streamable-HTTP server (`url`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Its name: 1 to 64 of `a-z`, `0-9`, `-`; tools are offered as `<name>__<tool>` and
    /// decided as `mcp:<name>/<tool>`.
    pub name: String,
    /// The program to start (a stdio server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its environment: only these variables, plus `PATH`, `HOME`, `LANG`, `LC_ALL` and
    /// `TMPDIR` from AAF's (nothing else of AAF's environment is passed on). Values may
    /// refer to secrets (`${secret:name}`).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Its working directory (default: AAF's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// The URL of a streamable-HTTP server, reached only through the HTTP connector's SSRF
    /// guard (`connectors.http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Headers AAF sends to a streamable-HTTP server (its credentials), values may refer to
    /// secrets (`Authorization = "Bearer ${secret:github}"`).
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

impl McpServerConfig {
    /// A stdio server.
    pub fn stdio(name: &str, command: &str, args: Vec<String>) -> McpServerConfig {
        McpServerConfig {
            name: name.to_string(),
            command: Some(command.to_string()),
            args,
            env: std::collections::BTreeMap::new(),
            cwd: None,
            url: None,
            headers: std::collections::BTreeMap::new(),
        }
    }

    /// A streamable-HTTP server.
    pub fn http(name: &str, url: &str) -> McpServerConfig {
        McpServerConfig {
            name: name.to_string(),
            command: None,
            args: Vec::new(),
            env: std::collections::BTreeMap::new(),
            cwd: None,
            url: Some(url.to_string()),
            headers: std::collections::BTreeMap::new(),
        }
    }

    /// Its transport (the configuration was checked: exactly one of `command` and `url`).
    pub fn transport(&self) -> crate::mcp::Transport {
        match (&self.command, &self.url) {
            (Some(command), _) => crate::mcp::Transport::Stdio {
                command: command.clone(),
                args: self.args.clone(),
                env: self.env.clone(),
                cwd: self.cwd.clone(),
            },
            (None, url) => crate::mcp::Transport::Http {
                url: url.clone().unwrap_or_default(),
                headers: self.headers.clone(),
            },
        }
    }
}

impl McpConfig {
    /// Checks the section.
    ///
    /// # Errors
    ///
    /// A message naming the key.
    pub fn validate(&self, secrets: &dyn crate::secrets::SecretStore) -> Result<(), String> {
        if self.approval_wait_seconds > 3600 {
            return Err("mcp.approval_wait_seconds must be at most 3600".into());
        }
        if !(100..=600_000).contains(&self.call_timeout_ms) {
            return Err("mcp.call_timeout_ms must be from 100 to 600000".into());
        }
        if self.tool_cache_seconds > 3600 {
            return Err("mcp.tool_cache_seconds must be at most 3600".into());
        }
        if self.max_servers_per_org > 1000 {
            return Err("mcp.max_servers_per_org must be at most 1000".into());
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_result_bytes) {
            return Err("mcp.max_result_bytes must be from 1024 to 67108864".into());
        }
        if self.max_subscriptions_per_session > 10_000 {
            return Err("mcp.max_subscriptions_per_session must be at most 10000".into());
        }
        if let Some(url) = &self.resource_url {
            let parsed =
                url::Url::parse(url).map_err(|e| format!("mcp.resource_url is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err("mcp.resource_url must be an http or https URL with a host".into());
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            let good = !s.name.is_empty()
                && s.name.len() <= 64
                && s.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !good {
                return Err(format!(
                    "mcp.servers[{i}].name must be 1 to 64 of a-z, 0-9 and -, not {:?}",
                    s.name
                ));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(format!("mcp.servers[{i}].name {:?} is used twice", s.name));
            }
            let stdio_only = !s.args.is_empty() || !s.env.is_empty() || s.cwd.is_some();
            match (&s.command, &s.url) {
                (Some(c), None) if !c.trim().is_empty() && s.headers.is_empty() => {}
                (None, Some(_)) if !stdio_only => {}
                (Some(_), None) if !s.headers.is_empty() => {
                    return Err(format!(
                        "mcp.servers[{i}].headers is for streamable-HTTP servers (url); give a stdio server its credentials in env"
                    ));
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "mcp.servers[{i}]: args, env and cwd are for stdio servers (command), not url"
                    ));
                }
                _ => {
                    return Err(format!(
                        "mcp.servers[{i}] needs exactly one of command (a stdio server) and url (a streamable-HTTP server)"
                    ));
                }
            }
            s.transport()
                .validate(secrets)
                .map_err(|(field, message)| format!("mcp.servers[{i}].{field}: {message}"))?;
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            data_dir: PathBuf::from("./aaf-data"),
            policies: PathBuf::from("./policies"),
            admin_token: None,
            server: ServerConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            database: DatabaseConfig::default(),
            audit: AuditConfig::default(),
            approvals: ApprovalsConfig::default(),
            connectors: ConnectorsConfig::default(),
            webhooks: WebhooksConfig::default(),
            policy_engine: PolicyEngineConfig::default(),
            runtime: RuntimeConfig::default(),
            budgets: aaf_core::budget::PriceTable::default(),
            mcp: McpConfig::default(),
            detection: DetectionConfig::default(),
            alerts: crate::alerts::AlertsConfig::default(),
            evidence: crate::evidence::EvidenceConfig::default(),
            encryption: crate::encryption::EncryptionConfig::default(),
            retention: crate::retention::RetentionConfig::default(),
            secrets: std::collections::BTreeMap::new(),
        }
    }
}

/// `[policy_engine]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyEngineConfig {
    /// Most decisions cached per policy set revision; 0 turns the decision cache off.
    /// Default 10000.
    pub decision_cache_entries: usize,
    /// Skip, without evaluating them, the policies whose `decision` rule the rule index
    /// proves undefined for an action (OPA-style rule indexing on leading
    /// `input.<path> == "literal"` / `in {...}` guards; docs/policies.md). Decisions are
    /// the same either way. Default true.
    pub rule_index: bool,
    /// Evaluate the rules whose value cannot depend on the action (a pack's parameter
    /// validation, lists derived from data documents) once per policy set revision instead
    /// of in every decision (docs/policies.md#constant-rules). Decisions are the same either
    /// way. Default true.
    pub constant_rules: bool,
    /// Most threads that evaluate the policies of one decision together: 0 means one per
    /// CPU core (at most 16), 1 evaluates every policy on the request's own thread. A
    /// decision is split only when its policies took at least 200 µs together in earlier
    /// decisions, so this matters only for large policy sets; decisions are the same either
    /// way, only their latency differs. Default 0.
    pub eval_threads: usize,
    /// How often every node checks whether an organisation's managed policies changed
    /// through another node, in milliseconds (PostgreSQL also notifies at once). Default 1000.
    pub refresh_interval_ms: u64,
    /// Watch the policy directory and reload it on change (a broken file keeps the set in
    /// force and logs the error). Default true.
    pub watch: bool,
    /// How long the directory must be quiet before a reload, in milliseconds. Default 300.
    pub watch_debounce_ms: u64,
    /// Most live managed policies per organisation. Default 200.
    pub max_policies: usize,
    /// Largest Rego source of a managed policy, in bytes. Default 262144 (256 KiB).
    pub max_rego_bytes: usize,
}

impl Default for PolicyEngineConfig {
    fn default() -> Self {
        PolicyEngineConfig {
            decision_cache_entries: 10_000,
            rule_index: true,
            constant_rules: true,
            eval_threads: 0,
            refresh_interval_ms: 1000,
            watch: true,
            watch_debounce_ms: 300,
            max_policies: 200,
            max_rego_bytes: 256 * 1024,
        }
    }
}

/// `[server]`: how many connections are served at once and how long each may take to send
/// its requests (see [`crate::connections`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Most connections served at once; past it, new connections wait in the listen backlog
    /// until one closes. 0 (the default): half the process's open-file limit
    /// (`RLIMIT_NOFILE`), at most 4096. At most 1000000.
    pub max_connections: usize,
    /// Time a new connection has to send its first request head, and an HTTP/1.1 connection
    /// its next one after a response, in milliseconds; a connection that does not is closed.
    /// Also how long a closing connection may take to finish writing. Default 10000; 1 to
    /// 3600000.
    pub header_read_timeout_ms: u64,
    /// Time a request body has to arrive in full, from its head, in milliseconds; a late body
    /// fails its request with 400 and the connection is closed. Default 30000; 1 to 3600000.
    pub body_read_timeout_ms: u64,
    /// Time a connection may stay open with no request in progress, in milliseconds (for
    /// HTTP/1.1 `header_read_timeout_ms` applies first when it is shorter). Default 60000;
    /// 1 to 3600000.
    pub idle_timeout_ms: u64,
    /// Sets `TCP_NODELAY` (RFC 896's Nagle algorithm off) on every accepted connection, so a
    /// response written in more than one write (a streamed `/mcp` answer: an SSE priming
    /// event, then the result) is not held until the client acknowledges the first part,
    /// which a delayed ACK puts off by about 40 ms. Default true.
    pub tcp_nodelay: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 0,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            idle_timeout_ms: 60_000,
            tcp_nodelay: true,
        }
    }
}

/// Largest `server.max_connections`.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
/// Largest `server.*_timeout_ms`: one hour.
pub const MAX_SERVER_TIMEOUT_MS: u64 = 3_600_000;

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest accepted request body in bytes; larger bodies get 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Time limit of one policy evaluation (all policies) in milliseconds, at most 60000.
    /// Default 100.
    pub eval_timeout_ms: u64,
    /// Time limit of loading a policy set (parsing every module and its load-time
    /// evaluation) in milliseconds, 1 to 60000: at start, on a directory reload, on every
    /// policy, data or pack change over the API, and in the playground. A load that reaches
    /// it fails (422 over the API; a reload keeps the set in force). Default 2000.
    pub policy_load_timeout_ms: u64,
    /// Memory limit of policy work in MiB, 64 to 1048576: when the process's heap passes
    /// it, every parse, load and evaluation under way stops with an error (a load fails, an
    /// action's policy denies naming the limit) and frees what it built. It counts the whole
    /// process's heap, so set it well above the server's working set. Default 1024.
    pub policy_memory_limit_mb: u64,
}

/// Upper bound of `limits.eval_timeout_ms` and `limits.policy_load_timeout_ms`.
pub const MAX_POLICY_TIMEOUT_MS: u64 = 60_000;

/// Bounds of `limits.policy_memory_limit_mb`.
pub const POLICY_MEMORY_LIMIT_MB: std::ops::RangeInclusive<u64> = 64..=1_048_576;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_body_bytes: 1024 * 1024,
            eval_timeout_ms: 100,
            policy_load_timeout_ms: 2000,
            policy_memory_limit_mb: 1024,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a successful agent key lookup is reused, in milliseconds. Revocations and
    /// rotations clear the cache at once (on PostgreSQL, on every node by `NOTIFY`); this
    /// bounds the delay should a notification be lost. Default 500; 0 disables the cache.
    pub key_cache_ttl_ms: u64,
    /// Lifetime of a new agent key when the request does not say (`expires_in`), in seconds.
    /// Default 259200 (72 hours, the upper end of the 24 to 72 hours the deployment guide
    /// advises for production); 0 = keys without `expires_in` never expire.
    pub agent_key_ttl_seconds: u64,
    /// Longest `expires_in` accepted for an agent key, in seconds. Default 7776000 (90 days).
    pub max_agent_key_ttl_seconds: u64,
    /// Grace period of a rotation when the request does not say (`grace_seconds`), in
    /// seconds: how long the old key keeps working. Default 3600.
    pub rotation_grace_seconds: u64,
    /// Longest `grace_seconds` accepted, in seconds. Default 604800 (7 days).
    pub max_rotation_grace_seconds: u64,
    /// Failed authentications allowed per source IP address per minute (with a burst of the
    /// same size); past it, requests from that address get 429 as `failed_auth_lockout`
    /// says, until the budget refills. Default 30; 0 disables the limit.
    pub failed_auth_per_minute: u32,
    /// What a source address over `failed_auth_per_minute` is refused. Default
    /// [`FailedAuthLockout::Failures`].
    pub failed_auth_lockout: FailedAuthLockout,
    /// How far a signed request's `created` may lie in the past, in seconds (RFC 9421
    /// signatures of agents with a public key). Default 300.
    pub signature_window_seconds: u64,
    /// The scheme and authority clients use to reach this server, e.g.
    /// `https://aaf.example.com`, used to rebuild `@target-uri` when verifying signatures
    /// behind a proxy. Default: none, `http://` and the request's `Host` header.
    pub public_base_url: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            key_cache_ttl_ms: 500,
            agent_key_ttl_seconds: 72 * 3600,
            max_agent_key_ttl_seconds: 90 * 24 * 3600,
            rotation_grace_seconds: 3600,
            max_rotation_grace_seconds: 7 * 24 * 3600,
            failed_auth_per_minute: 30,
            failed_auth_lockout: FailedAuthLockout::Failures,
            signature_window_seconds: 300,
            public_base_url: None,
        }
    }
}

/// What a source address that failed authentication more than `auth.failed_auth_per_minute`
/// times in a minute is refused, until its budget refills.
///
/// Credentials are 256-bit random values, so the limit does not stop guessing (which cannot
/// succeed); it bounds the work and the audit records that a stream of bad credentials
/// causes. Under `failures` one client behind a shared address (NAT, proxy) cannot lock the
/// others out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailedAuthLockout {
    /// Only requests whose credentials fail get 429 (without an audit record each: the
    /// block's start is recorded); a request with valid credentials from the same address is
    /// served. Each request still costs one digest lookup (default).
    Failures,
    /// Every request from the address that needs authentication gets 429 without being
    /// checked, valid credentials included: the least work under attack, but anyone sharing
    /// the address is locked out with the attacker.
    Address,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    Human,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `aaf_server=debug,info`. Default `info`;
    /// `RUST_LOG`, when set, takes precedence.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".to_string(),
        }
    }
}

/// `[metrics]`: the Prometheus endpoint (docs/runtime-protection.md, "Metrics").
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Record metrics and serve `GET /metrics`. Default true.
    pub enabled: bool,
    /// A bearer token that alone may scrape `/metrics` on the main listener (compared in
    /// constant time), at least 32 characters. Unset (default): the token of a user with
    /// the role admin or auditor.
    pub token: Option<Secret>,
    /// A second address that serves only `GET /metrics`, without authentication, for a
    /// scraper on a private network (never expose it publicly). Default: none.
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            token: None,
            listen: None,
        }
    }
}

/// Shortest `metrics.token`.
pub const MIN_METRICS_TOKEN_CHARS: usize = 32;

/// SQLite `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit is fsynced: an acknowledged action survives power loss (default).
    Full,
    /// Commits survive a crash of AAF but the last ones may be lost on power loss.
    Normal,
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL (`postgres://user@host:5432/db`; `AAF_DATABASE__URL` or
    /// `AAF_DATABASE_URL`). Unset (default): the embedded SQLite database in `data_dir`.
    pub url: Option<Secret>,
    /// Most PostgreSQL connections of this node. Default 16.
    pub max_connections: u32,
    /// SQLite `synchronous`: `full` (default) or `normal`.
    pub sqlite_synchronous: SqliteSynchronous,
    /// How long a statement waits for a lock before failing, in milliseconds. Default 5000.
    pub busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 16,
            sqlite_synchronous: SqliteSynchronous::Full,
            busy_timeout_ms: 5000,
        }
    }
}

/// `[audit]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Most write units (one per action step) committed in one transaction. Default 512.
    pub max_batch: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { max_batch: 512 }
    }
}

/// `[runtime]`: runtime protection (docs/runtime-protection.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// How often each node reads every organisation's kill-switch generation, in
    /// milliseconds: the fallback that finds a change whose notification it missed
    /// (PostgreSQL `NOTIFY` reaches it at once) and the confirmation that its kill switches
    /// are current. 50 to 60000; default 1000.
    pub kill_switch_poll_ms: u64,
    /// How long, in milliseconds, a node may go without confirming its kill switches (a
    /// successful poll) before it refuses every action with `kill_switch: ...` (fail
    /// closed: it cannot know which agents are stopped). At least twice
    /// `kill_switch_poll_ms`, at most 600000; default 5000.
    pub kill_switch_max_staleness_ms: u64,
    /// Rate limits of every organisation (each counted separately), beside those each
    /// organisation sets over the API. Default: none.
    pub rate_limits: Vec<RateLimitConfig>,
    /// The circuit breakers of every organisation that has not set its own
    /// (`PUT /v1/circuit-breakers`).
    pub circuit_breakers: crate::runtime::breaker::CircuitBreakers,
    /// How much of a session policies see in `input.session`.
    pub session: crate::runtime::session::SessionConfig,
}

/// One entry of `runtime.rate_limits`: `limit` actions per `window` (`second`, `minute`,
/// `hour`) with bursts of up to `burst` (default `limit`), for the `scope` (`org`, `agent`,
/// `tool`, `agent_tool`; without `target`, each agent or tool separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// `org`, `agent`, `tool` or `agent_tool`.
    pub scope: String,
    /// Only this agent (`agent`), tool (`tool`) or `<agent_id>:<tool>` (`agent_tool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Actions per window, 1 to 1000000.
    pub limit: u32,
    /// `second`, `minute` or `hour`.
    pub window: String,
    /// Most actions at once, 1 to 1000000; default `limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// `enforce` (default: actions over it are refused) or `policy` (counted, and left to
    /// the policies through `input.usage.rate_limit_exceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl Config {
    /// The configuration's rate limits, checked, with ids `config:1`, `config:2`, ...
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the entry and the field.
    pub fn default_rate_limits(&self) -> Result<Vec<aaf_core::rate_limit::RateLimit>, ConfigError> {
        self.runtime
            .rate_limits
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let n = i + 1;
                let spec = crate::runtime::rate_limit::LimitSpec {
                    scope: &c.scope,
                    target: c.target.as_deref(),
                    limit: c.limit,
                    window: &c.window,
                    burst: c.burst,
                    mode: c.mode.as_deref(),
                };
                crate::runtime::rate_limit::build(format!("config:{n}"), String::new(), &spec)
                    .map_err(|(field, message)| {
                        ConfigError::Invalid(format!("runtime.rate_limits[{i}].{field}: {message}"))
                    })
            })
            .collect()
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            kill_switch_poll_ms: 1000,
            kill_switch_max_staleness_ms: 5000,
            rate_limits: Vec::new(),
            circuit_breakers: crate::runtime::breaker::CircuitBreakers::default(),
            session: crate::runtime::session::SessionConfig::default(),
        }
    }
}

/// `[approvals]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// How long an action that requires approval waits for approvers before it expires, in
    /// seconds, unless its organisation or a policy sets another. Default 3600 (1 h).
    pub default_timeout_seconds: u64,
    /// The longest approval deadline an organisation may set, in seconds (policies may ask
    /// for up to 30 days whatever this says). Default 604800 (7 days).
    pub max_timeout_seconds: u64,
    /// Whether, by default, the user an action was requested for (`context.user_id`) is
    /// barred from approving it (four eyes); organisations may change it. Default true.
    pub four_eyes: bool,
    /// How often each node looks for expired approvals and for approved actions to finish,
    /// in milliseconds. Default 1000.
    pub sweep_interval_ms: u64,
    /// How long, in seconds, an approved connector action may stay `approved` (its approving
    /// node stopped before running it) before a sweeper runs it, and how long beyond the
    /// connector's timeout it may stay `executing` (its node stopped mid-run) before it is
    /// failed as "outcome unknown" (never run twice). Default 30.
    pub recovery_after_seconds: u64,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            default_timeout_seconds: 3600,
            max_timeout_seconds: 7 * 24 * 3600,
            four_eyes: true,
            sweep_interval_ms: 1000,
            recovery_after_seconds: 30,
        }
    }
}

/// `[webhooks]`: how approval notifications are delivered. Webhook targets pass the same
/// SSRF guard as the HTTP connector (reserved ranges refused, each resolved address checked),
/// with their own allowlist; name resolution (`connectors.http.hosts`, `system_dns`) and
/// `ca_file` are the connector's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Hosts webhooks may target (same syntax as `connectors.http.allowed_domains`); empty
    /// (the default): any public host.
    pub allowed_domains: Vec<String>,
    /// Networks exempt from the reserved-range block for webhook targets (e.g. an internal
    /// chat server). Empty by default.
    pub allow_private_cidrs: Vec<ipnet::IpNet>,
    /// Attempts per delivery before it is marked failed. Default 12 (with the default
    /// backoff, the last attempt comes about 68 minutes after the first). A refused target and answers 4xx
    /// other than 408 and 429 are not retried.
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubled after each failed attempt.
    /// Default 2000.
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts, in seconds. Default 3600.
    pub max_backoff_seconds: u64,
    /// Time allowed for one attempt, in milliseconds. Default 10000.
    pub timeout_ms: u64,
    /// How often each node looks for due deliveries, in milliseconds. Default 1000.
    pub poll_interval_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allowed_domains: Vec::new(),
            allow_private_cidrs: Vec::new(),
            max_attempts: 12,
            initial_backoff_ms: 2000,
            max_backoff_seconds: 3600,
            timeout_ms: 10_000,
            poll_interval_ms: 1000,
        }
    }
}

/// `[connectors]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorsConfig {
    /// `[connectors.http]`: the HTTP proxy connector (tool `http_proxy`, alias `http`).
    pub http: HttpConnectorConfig,
}

/// Values given on the command line; each one set overrides every other layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CliOverrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--policies`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<PathBuf>,
}

/// A configuration problem, said in the user's terms.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    /// A layer could not be read or has a wrong or unknown key.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the layered configuration.
    ///
    /// `config_file`: the `--config` path (an error if it does not exist); without it
    /// `aaf.toml` in the working directory is read when present. `env` is normally
    /// [`std::env::vars`]; tests pass their own.
    ///
    /// Errors: a missing `--config` file, TOML syntax errors, wrong types and unknown keys,
    /// each naming the key and where it came from.
    pub fn load(
        config_file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        cli: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match config_file {
            Some(path) if !path.exists() => return Err(ConfigError::MissingFile(path.into())),
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => {
                if Path::new(DEFAULT_CONFIG_FILE).exists() {
                    figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
                }
            }
        }
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("AAF_"))
            .collect();
        let mut dict = figment::value::Dict::new();
        for (key, value) in vars {
            let Some(rest) = key.strip_prefix("AAF_") else {
                continue;
            };
            // The conventional name of a database URL, as the docs and issue trackers spell it.
            let rest = if rest == "DATABASE_URL" {
                "DATABASE__URL"
            } else {
                rest
            };
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            insert_path(&mut dict, &path, parse_env_value(&value));
        }
        figment = figment.merge(NamedLayer {
            name: "environment variables AAF_*",
            dict,
        });
        let cli_dict = match figment::value::Value::serialize(cli) {
            Ok(figment::value::Value::Dict(_, d)) => d,
            _ => figment::value::Dict::new(),
        };
        figment = figment.merge(NamedLayer {
            name: "command-line flags",
            dict: cli_dict,
        });
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(ConfigError::Invalid(format!(
                "server.max_connections must be at most {MAX_CONNECTIONS_LIMIT} (0 derives it from the open-file limit), not {}",
                self.server.max_connections
            )));
        }
        for (key, value) in [
            ("header_read_timeout_ms", self.server.header_read_timeout_ms),
            ("body_read_timeout_ms", self.server.body_read_timeout_ms),
            ("idle_timeout_ms", self.server.idle_timeout_ms),
        ] {
            if !(1..=MAX_SERVER_TIMEOUT_MS).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "server.{key} must be from 1 to {MAX_SERVER_TIMEOUT_MS} (one hour), not {value}"
                )));
            }
        }
        if self.limits.max_body_bytes == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_body_bytes must be at least 1".into(),
            ));
        }
        for (key, value) in [
            ("limits.eval_timeout_ms", self.limits.eval_timeout_ms),
            (
                "limits.policy_load_timeout_ms",
                self.limits.policy_load_timeout_ms,
            ),
        ] {
            if !(1..=MAX_POLICY_TIMEOUT_MS).contains(&value) {
                return Err(ConfigError::Invalid(format!(
                    "{key} must be between 1 and {MAX_POLICY_TIMEOUT_MS}, not {value}"
                )));
            }
        }
        if !POLICY_MEMORY_LIMIT_MB.contains(&self.limits.policy_memory_limit_mb) {
            return Err(ConfigError::Invalid(format!(
                "limits.policy_memory_limit_mb must be between {} and {}, not {}",
                POLICY_MEMORY_LIMIT_MB.start(),
                POLICY_MEMORY_LIMIT_MB.end(),
                self.limits.policy_memory_limit_mb
            )));
        }
        if self.audit.max_batch == 0 {
            return Err(ConfigError::Invalid(
                "audit.max_batch must be at least 1".into(),
            ));
        }
        if self.auth.agent_key_ttl_seconds > self.auth.max_agent_key_ttl_seconds {
            return Err(ConfigError::Invalid(
                "auth.agent_key_ttl_seconds must not exceed auth.max_agent_key_ttl_seconds".into(),
            ));
        }
        if self.auth.rotation_grace_seconds > self.auth.max_rotation_grace_seconds {
            return Err(ConfigError::Invalid(
                "auth.rotation_grace_seconds must not exceed auth.max_rotation_grace_seconds"
                    .into(),
            ));
        }
        if self.auth.signature_window_seconds == 0 {
            return Err(ConfigError::Invalid(
                "auth.signature_window_seconds must be at least 1".into(),
            ));
        }
        if let Some(base) = &self.auth.public_base_url {
            let ok = url::Url::parse(base).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
            });
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "auth.public_base_url must be a scheme and authority such as https://aaf.example.com, got {base:?}"
                )));
            }
        }
        if let Some(url) = &self.database.url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::Invalid(
                    "database.url (AAF_DATABASE_URL) must be a postgres:// or postgresql:// URL; leave it unset for the embedded SQLite database".into(),
                ));
            }
        }
        let runtime = &self.runtime;
        if !(50..=60_000).contains(&runtime.kill_switch_poll_ms) {
            return Err(ConfigError::Invalid(format!(
                "runtime.kill_switch_poll_ms must be from 50 to 60000, not {}",
                runtime.kill_switch_poll_ms
            )));
        }
        if runtime.kill_switch_max_staleness_ms < runtime.kill_switch_poll_ms.saturating_mul(2)
            || runtime.kill_switch_max_staleness_ms > 600_000
        {
            return Err(ConfigError::Invalid(format!(
                "runtime.kill_switch_max_staleness_ms must be at least twice runtime.kill_switch_poll_ms ({}) and at most 600000, not {}",
                runtime.kill_switch_poll_ms, runtime.kill_switch_max_staleness_ms
            )));
        }
        self.default_rate_limits()?;
        self.budgets
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("budgets: {e}")))?;
        crate::secrets::validate(&self.secrets).map_err(ConfigError::Invalid)?;
        for (i, rule) in self.connectors.http.credentials.iter().enumerate() {
            for (name, value) in &rule.headers {
                let field = format!("connectors.http.credentials[{i}].headers.{name}");
                let names = crate::secrets::references(value)
                    .map_err(|e| ConfigError::Invalid(format!("{field}: {e}")))?;
                if let Some(unknown) = names.iter().find(|n| !self.secrets.contains_key(*n)) {
                    return Err(ConfigError::Invalid(format!(
                        "{field}: no secret {unknown:?} is configured ([secrets])"
                    )));
                }
            }
        }
        self.detection
            .outbound
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("detection.outbound: {e}")))?;
        self.detection
            .classifier
            .validate()
            .map_err(|(key, e)| ConfigError::Invalid(format!("detection.classifier.{key} {e}")))?;
        self.detection
            .risk
            .validate()
            .map_err(|(key, e)| ConfigError::Invalid(format!("detection.risk.{key} {e}")))?;
        self.mcp
            .validate(&crate::secrets::ConfiguredSecrets::new(
                self.secrets.clone(),
            ))
            .map_err(ConfigError::Invalid)?;
        self.runtime
            .session
            .validate()
            .map_err(|(field, message)| {
                ConfigError::Invalid(format!("runtime.session.{field} {message}"))
            })?;
        self.alerts.validate().map_err(ConfigError::Invalid)?;
        self.evidence.validate().map_err(ConfigError::Invalid)?;
        self.encryption.validate().map_err(ConfigError::Invalid)?;
        self.retention.validate().map_err(ConfigError::Invalid)?;
        self.runtime
            .circuit_breakers
            .validate()
            .map_err(|(field, message)| {
                ConfigError::Invalid(format!("runtime.circuit_breakers.{field}: {message}"))
            })?;
        if self.approvals.default_timeout_seconds == 0 {
            return Err(ConfigError::Invalid(
                "approvals.default_timeout_seconds must be at least 1".into(),
            ));
        }
        if self.approvals.default_timeout_seconds > self.approvals.max_timeout_seconds {
            return Err(ConfigError::Invalid(
                "approvals.default_timeout_seconds must not exceed approvals.max_timeout_seconds"
                    .into(),
            ));
        }
        if self.webhooks.max_attempts == 0
            || self.webhooks.timeout_ms == 0
            || self.webhooks.poll_interval_ms == 0
            || self.webhooks.initial_backoff_ms == 0
            || self.webhooks.max_backoff_seconds == 0
        {
            return Err(ConfigError::Invalid(
                "webhooks.max_attempts, timeout_ms, poll_interval_ms, initial_backoff_ms and max_backoff_seconds must be at least 1"
                    .into(),
            ));
        }
        if self.policy_engine.refresh_interval_ms == 0
            || self.policy_engine.watch_debounce_ms == 0
            || self.policy_engine.max_policies == 0
            || self.policy_engine.max_rego_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "policy_engine.refresh_interval_ms, watch_debounce_ms, max_policies and max_rego_bytes must be at least 1"
                    .into(),
            ));
        }
        if self.policy_engine.eval_threads > aaf_core::policy::MAX_EVAL_THREADS {
            return Err(ConfigError::Invalid(format!(
                "policy_engine.eval_threads must be at most {} (0 means one per CPU core), not {}",
                aaf_core::policy::MAX_EVAL_THREADS,
                self.policy_engine.eval_threads
            )));
        }
        if self.approvals.sweep_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "approvals.sweep_interval_ms must be at least 1".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.max_connections must be at least 1".into(),
            ));
        }
        if let Some(token) = &self.metrics.token {
            if token.expose().chars().count() < MIN_METRICS_TOKEN_CHARS {
                return Err(ConfigError::Invalid(format!(
                    "metrics.token (AAF_METRICS__TOKEN) must be at least {MIN_METRICS_TOKEN_CHARS} characters; leave it unset to let admins and auditors scrape with their own tokens"
                )));
            }
        }
        if let Some(listen) = self.metrics.listen {
            if listen == self.listen && listen.port() != 0 {
                return Err(ConfigError::Invalid(format!(
                    "metrics.listen must differ from listen ({listen})"
                )));
            }
        }
        if let Some(token) = &self.admin_token {
            if token.expose().len() < 32 {
                return Err(ConfigError::Invalid(
                    "admin_token (AAF_ADMIN_TOKEN) must be at least 32 characters; leave it unset to have one generated".into(),
                ));
            }
        }
        Ok(())
    }

    /// The evaluation time limit as a [`Duration`].
    pub fn eval_timeout(&self) -> Duration {
        Duration::from_millis(self.limits.eval_timeout_ms)
    }

    /// The options of every policy set the server loads.
    pub fn evaluator_options(&self) -> aaf_core::policy::EvaluatorOptions {
        aaf_core::policy::EvaluatorOptions {
            eval_timeout: self.eval_timeout(),
            decision_cache_entries: self.policy_engine.decision_cache_entries,
            rule_index: self.policy_engine.rule_index,
            eval_threads: self.policy_engine.eval_threads,
            load_timeout: Duration::from_millis(self.limits.policy_load_timeout_ms),
            constant_rules: self.policy_engine.constant_rules,
        }
    }

    /// `limits.policy_memory_limit_mb` in bytes.
    pub fn policy_memory_limit_bytes(&self) -> u64 {
        self.limits
            .policy_memory_limit_mb
            .saturating_mul(1024 * 1024)
    }
}

/// Parses an environment value the way figment does: TOML-like scalars and arrays, else a
/// string.
fn parse_env_value(value: &str) -> figment::value::Value {
    value
        .parse::<figment::value::Value>()
        .unwrap_or_else(|_| figment::value::Value::from(value.to_string()))
}

/// A layer of already-parsed values with a name that error messages use.
struct NamedLayer {
    name: &'static str,
    dict: figment::value::Dict,
}

impl Provider for NamedLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<figment::value::Map<Profile, figment::value::Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

fn insert_path(dict: &mut figment::value::Dict, path: &[String], value: figment::value::Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| figment::value::Dict::new().into());
            if let figment::value::Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            } else {
                let mut inner = figment::value::Dict::new();
                insert_path(&mut inner, rest, value);
                *entry = inner.into();
            }
        }
    }
}

fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("key `{}`: ", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults() {
        let c = Config::load(None, env(&[]), &CliOverrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8700");
        assert_eq!(c.data_dir, PathBuf::from("./aaf-data"));
        assert_eq!(c.limits.max_body_bytes, 1024 * 1024);
        assert_eq!(c.limits.eval_timeout_ms, 100);
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aaf.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[limits]\neval_timeout_ms = 7\n[connectors.http]\nallowed_domains = [\"api.example.com\"]\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("AAF_DATA_DIR", "/from/env"),
                ("AAF_LIMITS__MAX_BODY_BYTES", "2048"),
                ("PATH", "/bin"),
            ]),
            &CliOverrides {
                listen: Some("127.0.0.1:9100".parse().unwrap()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9100");
        assert_eq!(c.data_dir, PathBuf::from("/from/env"));
        assert_eq!(c.limits.eval_timeout_ms, 7);
        assert_eq!(c.limits.max_body_bytes, 2048);
        assert_eq!(c.connectors.http.allowed_domains, vec!["api.example.com"]);
    }

    #[test]
    fn secrets_and_the_settings_that_refer_to_them_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aaf.toml");
        let load = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Config::load(Some(&file), env(&[]), &CliOverrides::default())
        };
        let good = "[secrets]\nstripe = { env = \"STRIPE_KEY\" }\n[[connectors.http.credentials]]\nhost = \"api.stripe.com\"\nheaders = { Authorization = \"Bearer ${secret:stripe}\" }\n";
        let c = load(good).unwrap();
        assert_eq!(c.connectors.http.credentials[0].host, "api.stripe.com");
        for (text, named) in [
            (
                "[[connectors.http.credentials]]\nhost = \"api.stripe.com\"\nheaders = { Authorization = \"Bearer ${secret:nope}\" }\n",
                "connectors.http.credentials[0].headers.Authorization",
            ),
            ("[secrets]\nx = { env = \"A\", file = \"/b\" }\n", "secrets.x"),
            (
                "[[mcp.servers]]\nname = \"gh\"\nurl = \"https://mcp.example.com/mcp\"\nheaders = { Authorization = \"${secret:gh}\" }\n",
                "mcp.servers[0].headers.Authorization",
            ),
            (
                "[[mcp.servers]]\nname = \"both\"\ncommand = \"x\"\nurl = \"https://mcp.example.com/mcp\"\n",
                "exactly one of command",
            ),
            (
                "[[mcp.servers]]\nname = \"h\"\nurl = \"https://mcp.example.com/mcp\"\nheaders = { Mcp-Session-Id = \"x\" }\n",
                "set by AAF",
            ),
        ] {
            let e = load(text).unwrap_err().to_string();
            assert!(e.contains(named), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_from_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aaf.toml");
        std::fs::write(&file, "[limits]\neval_timeout = 7\n").unwrap();
        let e = Config::load(Some(&file), env(&[]), &CliOverrides::default()).unwrap_err();
        assert!(e.to_string().contains("eval_timeout"), "{e}");
        let e =
            Config::load(None, env(&[("AAF_LISTN", "x")]), &CliOverrides::default()).unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }

    #[test]
    fn missing_config_file_and_bad_values() {
        let e = Config::load(
            Some(Path::new("/nonexistent/aaf.toml")),
            env(&[]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(matches!(e, ConfigError::MissingFile(_)));
        let e = Config::load(
            None,
            env(&[("AAF_ADMIN_TOKEN", "short")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("admin_token"), "{e}");
        let e = Config::load(
            None,
            env(&[("AAF_LISTEN", "nope")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e = Config::load(
            None,
            env(&[("AAF_POLICY_ENGINE__EVAL_THREADS", "17")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("eval_threads must be at most 16"),
            "{e}"
        );
        let c = Config::load(
            None,
            env(&[("AAF_POLICY_ENGINE__EVAL_THREADS", "1")]),
            &CliOverrides::default(),
        )
        .unwrap();
        assert_eq!(c.evaluator_options().eval_threads, 1);
    }

    #[test]
    fn server_connection_settings_are_bounded() {
        let c = Config::load(None, env(&[]), &CliOverrides::default()).unwrap();
        assert_eq!(c.server.max_connections, 0);
        assert_eq!(c.server.header_read_timeout_ms, 10_000);
        assert_eq!(c.server.body_read_timeout_ms, 30_000);
        assert_eq!(c.server.idle_timeout_ms, 60_000);
        assert!(c.server.tcp_nodelay);
        let c = Config::load(
            None,
            env(&[
                ("AAF_SERVER__MAX_CONNECTIONS", "64"),
                ("AAF_SERVER__HEADER_READ_TIMEOUT_MS", "500"),
            ]),
            &CliOverrides::default(),
        )
        .unwrap();
        assert_eq!(c.server.max_connections, 64);
        assert_eq!(c.server.header_read_timeout_ms, 500);
        for (var, value, message) in [
            (
                "AAF_SERVER__HEADER_READ_TIMEOUT_MS",
                "0",
                "server.header_read_timeout_ms",
            ),
            (
                "AAF_SERVER__BODY_READ_TIMEOUT_MS",
                "3600001",
                "server.body_read_timeout_ms",
            ),
            ("AAF_SERVER__IDLE_TIMEOUT_MS", "0", "server.idle_timeout_ms"),
            (
                "AAF_SERVER__MAX_CONNECTIONS",
                "1000001",
                "server.max_connections",
            ),
        ] {
            let e = Config::load(None, env(&[(var, value)]), &CliOverrides::default()).unwrap_err();
            assert!(e.to_string().contains(message), "{var}={value}: {e}");
        }
        let e = Config::load(
            None,
            env(&[("AAF_AUTH__FAILED_AUTH_LOCKOUT", "everyone")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("failed_auth_lockout"), "{e}");
    }

    #[test]
    fn database_url_from_either_variable_and_only_postgres() {
        for var in ["AAF_DATABASE_URL", "AAF_DATABASE__URL"] {
            let c = Config::load(
                None,
                env(&[(var, "postgres://aaf@db:5432/aaf")]),
                &CliOverrides::default(),
            )
            .unwrap();
            assert_eq!(
                c.database.url.as_ref().map(|u| u.expose().to_string()),
                Some("postgres://aaf@db:5432/aaf".to_string())
            );
        }
        let e = Config::load(
            None,
            env(&[("AAF_DATABASE_URL", "mysql://db/aaf")]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("database.url"), "{e}");
        // The URL (it may hold a password) never shows in Debug output.
        let c = Config::load(
            None,
            env(&[("AAF_DATABASE_URL", "postgres://aaf:s3cret@db/aaf")]),
            &CliOverrides::default(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = Config::load(
            None,
            env(&[(
                "AAF_AUTH__PUBLIC_BASE_URL",
                "https://aaf.example.com/some/path",
            )]),
            &CliOverrides::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("public_base_url"), "{e}");
    }
}
