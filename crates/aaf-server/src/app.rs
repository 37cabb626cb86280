//! The server: state, router, start-up (bootstrap) and graceful shutdown.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::policies::PolicyRegistry;
use aaf_core::secrets::{generate_token, hash_token, visible_prefix, ADMIN_TOKEN_PREFIX};
use aaf_store::{AuditWriter, PgOptions, Store, StoreOptions};
use axum::extract::rejection::JsonRejection;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::api;
use crate::api::approvals;
use crate::api::identity;
use crate::api::policies;
use crate::api::webhooks;
use crate::approvals::ActionEvents;
use crate::auth::{authorize, FailedAuthLimiter};
use crate::clock::Clock;
use crate::config::{Config, SqliteSynchronous};
use crate::connectors::http::HttpConnector;
use crate::error::ApiError;
use crate::key_cache::KeyCache;
use crate::openapi::ApiDoc;
use crate::policy_loader::{load_sources, PolicyLoadError, PolicyOrigin};
use crate::runtime::RuntimeRules;
use crate::time::now_rfc3339;

/// Name of the default organisation created on first start.
pub const DEFAULT_ORG_NAME: &str = "default";
/// Plan recorded for organisations of a self-hosted deployment.
pub const SELF_HOSTED_PLAN: &str = "self_hosted";
/// Name of the first user of an organisation (role admin), whose token is the admin token.
pub const BOOTSTRAP_ADMIN_NAME: &str = "admin";
/// File in the data directory that receives a generated admin token (mode 0600).
pub const ADMIN_TOKEN_FILE: &str = "admin-token";

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Shared state of every request handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The group-commit audit writer.
    pub writer: AuditWriter,
    /// The policies in force, per organisation.
    pub registry: Arc<PolicyRegistry>,
    /// Wakes the policy refresher (a change through this node, another node or the
    /// directory).
    pub policy_wake: Arc<tokio::sync::Notify>,
    /// The HTTP connector.
    pub http: Arc<HttpConnector>,
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The id of the first organisation (the operator's).
    pub default_org_id: Arc<str>,
    /// Recent agent key lookups (see [`KeyCache`]).
    pub key_cache: Arc<KeyCache>,
    /// Failed authentications per source address (see [`FailedAuthLimiter`]).
    pub auth_limiter: Arc<FailedAuthLimiter>,
    /// The clock of approval deadlines, expiry and recovery (manual in tests).
    pub clock: Clock,
    /// Wakes requests waiting on a changed action.
    pub action_events: Arc<ActionEvents>,
    /// The webhook sender (SSRF-guarded) and the delivery worker's bell.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The kill switches and rate limits in force on this node, and the connector calls
    /// they can abort.
    pub runtime: Arc<RuntimeRules>,
    /// The upstream MCP servers (`mcp.servers` and the organisations' own).
    pub mcp: Arc<crate::mcp::Upstreams>,
    /// Where `${secret:...}` references are read (`[secrets]`, docs/credentials.md).
    pub secrets: Arc<dyn crate::secrets::SecretStore>,
    /// The alert rules' queue (docs/alerts.md): fed by the audit writer's committed events
    /// and by [`crate::alerts::Alerts::signal`].
    pub alerts: Arc<crate::alerts::Alerts>,
    /// Each agent's latest actions on this node, for `input.session`.
    pub sessions: Arc<crate::runtime::session::SessionHistory>,
    /// Each agent's behavioural profile on this node, for risk scores (`input.risk`).
    pub risk: Arc<crate::runtime::risk::RiskProfiles>,
    /// Each organisation's outbound detection rules in force on this node.
    pub outbound: Arc<crate::pipeline::outbound::OrgRules>,
    /// The external classifier (`detection.classifier`), if one is configured.
    pub classifier: Option<Arc<crate::pipeline::classifier::Classifier>>,
    /// The transparency log over the audit chains: trees, checkpoints, proofs.
    pub evidence: Arc<crate::evidence::TransparencyLog>,
    /// The export of decisions in the OPA decision-log format.
    pub decision_log: Arc<crate::evidence::decision_log::DecisionLog>,
}

impl AppState {
    /// Maps a JSON body rejection to an API error (413 uses the configured limit).
    pub fn json_rejection(&self, rejection: JsonRejection) -> ApiError {
        ApiError::from_json_rejection(rejection, self.config.limits.max_body_bytes)
    }
}

/// Builds the router with every route and layer. Every route passes through
/// [`authorize`], which applies the permission table ([`crate::rbac::PERMISSIONS`]).
pub fn router(state: AppState) -> Router {
    let max_body = state.config.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/v1/openapi.json", get(openapi_json))
        .route(crate::metrics::PATH, get(crate::metrics::scrape))
        .route("/v1/whoami", get(identity::whoami))
        .route("/v1/stats", get(identity::stats))
        .route("/v1/users", post(identity::create_user).get(identity::list_users))
        .route(
            "/v1/users/{id}",
            get(identity::get_user)
                .patch(identity::update_user)
                .delete(identity::delete_user),
        )
        .route("/v1/agents", post(api::create_agent).get(api::list_agents))
        .route("/v1/agents/{id}", get(identity::get_agent))
        .route(
            "/v1/agents/{id}/keys",
            post(identity::create_key).get(identity::list_keys),
        )
        .route("/v1/agents/{id}/keys/rotate", post(identity::rotate_key))
        .route(
            "/v1/agents/{id}/keys/{key_id}/revoke",
            post(identity::revoke_key),
        )
        .route(
            "/v1/agents/{id}/isolate",
            post(api::runtime::isolate_agent),
        )
        .route(
            "/v1/agents/{id}/snapshots",
            get(api::runtime::list_snapshots),
        )
        .route(
            "/v1/kill-switches",
            post(api::runtime::engage_kill_switch).get(api::runtime::list_kill_switches),
        )
        .route("/v1/alerts", get(api::alerts::list_alerts))
        .route("/v1/alerts/{id}", get(api::alerts::get_alert))
        .route("/v1/alerts/{id}/ack", post(api::alerts::ack_alert))
        .route("/v1/alerts/{id}/resolve", post(api::alerts::resolve_alert))
        .route(
            "/v1/kill-switches/{id}",
            axum::routing::delete(api::runtime::release_kill_switch),
        )
        .route(
            "/v1/rate-limits",
            post(api::runtime::create_rate_limit).get(api::runtime::list_rate_limits),
        )
        .route(
            "/v1/rate-limits/{id}",
            axum::routing::delete(api::runtime::delete_rate_limit),
        )
        .route(
            "/v1/budgets",
            post(api::budgets::create_budget).get(api::budgets::list_budgets),
        )
        .route(
            "/v1/budgets/{id}",
            get(api::budgets::get_budget)
                .patch(api::budgets::update_budget)
                .delete(api::budgets::delete_budget),
        )
        .route(
            "/v1/circuit-breakers",
            get(api::budgets::get_circuit_breakers).put(api::budgets::set_circuit_breakers),
        )
        .route(
            "/v1/mcp/servers",
            post(api::mcp::create_server).get(api::mcp::list_servers),
        )
        .route(
            "/v1/mcp/servers/{name}",
            get(api::mcp::get_server)
                .put(api::mcp::update_server)
                .delete(api::mcp::delete_server),
        )
        .route("/v1/mcp/servers/{name}/tools", get(api::mcp::list_pins))
        .route(
            "/v1/mcp/servers/{name}/tools/{tool}/accept",
            post(api::mcp::accept_tool),
        )
        .route("/v1/actions", post(api::submit_action))
        .route("/v1/actions/dry-run", post(api::dry_run))
        .route("/v1/actions/{id}", get(api::get_action))
        .route("/v1/actions/{id}/cancel", post(approvals::cancel_action))
        .route("/v1/actions/{id}/result", post(approvals::report_result))
        .route("/v1/approvals", get(approvals::list_approvals))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/reject", post(approvals::reject))
        .route(
            "/v1/webhooks",
            post(webhooks::create_webhook).get(webhooks::list_webhooks),
        )
        .route("/v1/webhooks/{id}", axum::routing::delete(webhooks::delete_webhook))
        .route(
            "/v1/webhooks/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route(
            "/v1/settings",
            get(approvals::get_settings).patch(approvals::update_settings),
        )
        .route(
            "/v1/policies",
            post(policies::create_policy).get(policies::list_policies),
        )
        .route(
            "/v1/policies/{id}",
            get(policies::get_policy)
                .put(policies::update_policy)
                .delete(policies::delete_policy),
        )
        .route(
            "/v1/policies/{id}/versions",
            get(policies::list_policy_versions),
        )
        .route("/v1/policies/{id}/rollback", post(policies::rollback_policy))
        .route(
            "/v1/policies/{id}/shadow-report",
            get(policies::shadow_report),
        )
        .route("/v1/data", get(policies::list_data))
        .route(
            "/v1/data/{*path}",
            get(policies::get_data).put(policies::put_data),
        )
        .route("/v1/policy-packs", get(policies::list_packs))
        .route(
            "/v1/policy-packs/{name}/enable",
            post(policies::enable_pack),
        )
        .route(
            "/v1/policy-packs/{name}/disable",
            post(policies::disable_pack),
        )
        .route("/v1/playground", post(policies::playground))
        .route(
            "/v1/policy-revisions/{revision}",
            get(policies::get_revision),
        )
        .route("/v1/audit", get(api::list_audit))
        .route("/v1/encryption", get(api::encryption::get_encryption))
        .route("/v1/encryption/rotate", post(api::encryption::rotate))
        .route("/v1/encryption/shred", post(api::encryption::shred))
        .route(
            "/v1/retention",
            get(api::retention::get_retention).put(api::retention::put_retention),
        )
        .route("/v1/retention/run", post(api::retention::run_retention))
        .route(
            "/v1/audit/checkpoint",
            get(api::evidence::get_checkpoint).post(api::evidence::sign_checkpoint),
        )
        .route(
            "/v1/audit/proof/inclusion",
            get(api::evidence::inclusion_proof),
        )
        .route(
            "/v1/audit/proof/consistency",
            get(api::evidence::consistency_proof),
        )
        .route(
            "/v1/proof-pack/{action_id}",
            get(api::evidence::proof_pack),
        )
        .route("/v1/evidence", get(api::evidence::evidence))
        .route(
            "/v1/compliance/report",
            get(api::compliance::compliance_report),
        )
        .route_service(
            crate::mcp::PATH,
            tower::ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::mcp::rejections::audit,
                ))
                .service(mcp_service(&state)),
        )
        .route(
            crate::mcp::METADATA_PATH,
            get(api::mcp::protected_resource_metadata),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

/// The MCP endpoint (`/mcp`, streamable HTTP): one [`crate::mcp::gateway::Gateway`] per
/// session, behind the `authorize` middleware (an agent key as the Bearer token).
fn mcp_service(
    state: &AppState,
) -> rmcp::transport::StreamableHttpService<
    crate::mcp::gateway::Gateway,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    let state_of_sessions = state.clone();
    // Every request carries the agent's key; there are no ambient credentials (cookies) a
    // rebound name could borrow, so the Host header is not restricted.
    // A message larger than `limits.max_body_bytes` is refused (413) while it streams.
    let config = rmcp::transport::StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        .with_max_request_body_bytes(state.config.limits.max_body_bytes);
    rmcp::transport::StreamableHttpService::new(
        move || Ok(crate::mcp::gateway::Gateway::new(state_of_sessions.clone())),
        Arc::default(),
        config,
    )
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see GET /v1/openapi.json".into())
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Policies could not be loaded.
    #[error(transparent)]
    Policies(#[from] crate::policy_loader::PolicyLoadError),
    /// The database could not be opened or bootstrapped.
    #[error("database: {0}")]
    Store(#[from] aaf_store::StoreError),
    /// The HTTP connector's configuration is invalid.
    #[error("connectors.http: {0}")]
    Connector(String),
    /// The `[webhooks]` configuration is invalid.
    #[error("webhooks: {0}")]
    Webhooks(String),
    /// The external classifier's client cannot be built.
    #[error("{0}")]
    Classifier(String),
    /// The transparency log cannot be set up (its key or a sink).
    #[error("{0}")]
    Evidence(String),
    /// The master key of encryption at rest cannot be read or made.
    #[error("{0}")]
    Encryption(String),
    /// The admin token file could not be written.
    #[error("cannot write {0}: {1}")]
    TokenFile(PathBuf, String),
    /// The listener failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// What happened to the admin token at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTokenNotice {
    /// The default organisation already existed; no token was made.
    Existing,
    /// Taken from `AAF_ADMIN_TOKEN` / `admin_token`.
    FromConfig,
    /// Generated and written to this file (mode 0600).
    Generated(PathBuf),
}

/// Opens the store, bootstraps the default organisation and its admin token, and loads the
/// policies: everything `aaf serve` needs before it listens.
pub async fn prepare(config: Config) -> Result<(AppState, AdminTokenNotice), StartError> {
    prepare_with_clock(config, Clock::system()).await
}

/// [`prepare`] with the clock of approval deadlines, expiry and recovery (tests pass a
/// manual one to move time instead of sleeping).
pub async fn prepare_with_clock(
    config: Config,
    clock: Clock,
) -> Result<(AppState, AdminTokenNotice), StartError> {
    // Process-wide: every policy load and evaluation from here on is bounded by it.
    aaf_core::policy::set_memory_limit(Some(config.policy_memory_limit_bytes()));
    crate::connectors::guarded::install_crypto_provider();
    // Process-wide too: once installed, the recorder serves every server of the process.
    if config.metrics.enabled {
        if let Err(e) = crate::metrics::install() {
            tracing::warn!(error = %e, "metrics recorder not installed; /metrics answers 503");
        }
    }
    let (sources, origin) = load_sources(&config.policies)?;
    let registry = PolicyRegistry::new(sources, origin.clone(), config.evaluator_options())
        .map_err(PolicyLoadError::Invalid)?;
    let base = registry.base();
    let policies = &base.set;
    match &origin {
        PolicyOrigin::Directory(dir) => tracing::info!(
            directory = %dir.display(),
            revision = %policies.revision(),
            "policies loaded"
        ),
        PolicyOrigin::BundledStarter(dir) => tracing::warn!(
            directory = %dir.display(),
            "policy directory does not exist; using the bundled starter policy (default deny; see policies/starter.rego)"
        ),
    }
    for m in policies.modules() {
        tracing::info!(file = %m.path, package = %m.package, syntax = ?m.syntax, "policy module");
    }
    if policies.policies().is_empty() {
        tracing::warn!("no policy defines a `decision` rule: every action will be denied");
    }
    for p in policies.policies() {
        tracing::info!(policy = %p.name, files = ?p.files, "policy");
    }

    let secrets: Arc<dyn crate::secrets::SecretStore> = Arc::new(
        crate::secrets::ConfiguredSecrets::new(config.secrets.clone()),
    );
    let http = HttpConnector::new(&config.connectors.http)
        .map_err(|e| StartError::Connector(e.to_string()))?
        .with_secrets(Arc::clone(&secrets));
    let webhooks = crate::webhooks::Webhooks::new(&config).map_err(StartError::Webhooks)?;
    if !config.connectors.http.allow_private_cidrs.is_empty() {
        tracing::warn!(
            cidrs = ?config.connectors.http.allow_private_cidrs,
            "connectors.http.allow_private_cidrs lets agents reach these internal ranges"
        );
    }
    if !config.webhooks.allow_private_cidrs.is_empty() {
        tracing::warn!(
            cidrs = ?config.webhooks.allow_private_cidrs,
            "webhooks.allow_private_cidrs lets webhooks reach these internal ranges"
        );
    }
    if !config.connectors.http.allowed_domains.is_empty() {
        tracing::info!(domains = ?config.connectors.http.allowed_domains, "connectors.http.allowed_domains in force");
    }

    let master_key = crate::encryption::load_master_key(
        &config.encryption,
        config
            .database
            .url
            .is_none()
            .then_some(config.data_dir.as_path()),
    )
    .map_err(StartError::Encryption)?;
    match &master_key {
        Some(key) => tracing::info!(master_key_id = key.id(), "encryption at rest on"),
        None => tracing::warn!("no master key is configured (encryption.master_key_file): payloads, params, results and webhook secrets are stored in clear; on PostgreSQL every node must be given the same key"),
    }
    let key_cache_seconds = config.encryption.key_cache_seconds;
    let store = match &config.database.url {
        Some(url) => {
            let store = Store::open_postgres(
                url.expose(),
                &PgOptions {
                    max_connections: config.database.max_connections,
                    read_only: false,
                    master_key: master_key.clone(),
                    key_cache_seconds,
                },
            )
            .await?;
            tracing::info!(
                database = store.backend_name(),
                "database open (PostgreSQL, row-level security)"
            );
            store
        }
        None => {
            let store = Store::open_sqlite(
                &config.data_dir,
                &StoreOptions {
                    synchronous_full: config.database.sqlite_synchronous == SqliteSynchronous::Full,
                    busy_timeout_ms: config.database.busy_timeout_ms,
                    read_only: false,
                    master_key: master_key.clone(),
                    key_cache_seconds,
                },
            )
            .await?;
            tracing::info!(data_dir = %config.data_dir.display(), database = store.backend_name(), "database open");
            store
        }
    };

    let (org_id, notice) = bootstrap(&store, &config).await?;
    match &notice {
        AdminTokenNotice::Existing => {
            if let Some(token) = &config.admin_token {
                if store
                    .find_token(&hash_token(token.expose()))
                    .await?
                    .is_none()
                {
                    tracing::warn!("AAF_ADMIN_TOKEN is set but is not a token of this data directory; it is only used when the data directory is first created");
                }
            }
            // Only the node that created the organisation has the file (PostgreSQL nodes
            // share the organisation, not their data directories): name it only if it is here.
            let file = config.data_dir.join(ADMIN_TOKEN_FILE);
            if file.exists() {
                tracing::info!(file = %file.display(), "default organisation found; the admin token generated when it was created was written to this file");
            } else {
                tracing::info!("default organisation found; its admin token was made when it was created: taken from AAF_ADMIN_TOKEN, or generated and written to the admin-token file in the data directory of the node that created it (not this one)");
            }
        }
        AdminTokenNotice::FromConfig => {
            tracing::info!("admin token of the default organisation taken from AAF_ADMIN_TOKEN")
        }
        AdminTokenNotice::Generated(path) => {
            tracing::info!(file = %path.display(), "admin token of the default organisation generated and written")
        }
    }

    // The alert rules read every event the writer commits (off the decision path: the
    // observer only queues signals for the alert worker).
    let alerts = Arc::new(crate::alerts::Alerts::new(&config.alerts));
    let writer =
        AuditWriter::spawn_observed(store.clone(), config.audit.max_batch, alerts.observer());
    let key_cache = Arc::new(KeyCache::new(std::time::Duration::from_millis(
        config.auth.key_cache_ttl_ms,
    )));
    // Revocations and rotations through other nodes drop this node's cached key lookups at
    // once (PostgreSQL LISTEN/NOTIFY); the cache's lifetime bounds the delay if a
    // notification is lost.
    {
        let key_cache = Arc::clone(&key_cache);
        store.on_key_changes(move || key_cache.clear());
    }
    // Changes of actions through other nodes wake this node's waiters.
    let action_events = Arc::new(ActionEvents::default());
    {
        let events = Arc::clone(&action_events);
        store.on_action_changes(move |id| match id {
            Some(id) => events.announce(id),
            None => events.announce_all(),
        });
    }
    // Policy changes through other nodes wake this node's refresher.
    let policy_wake = Arc::new(tokio::sync::Notify::new());
    {
        let wake = Arc::clone(&policy_wake);
        store.on_policy_changes(move |_| wake.notify_one());
    }
    // The kill switches in force, read before the first request; changes through other
    // nodes are installed at once (PostgreSQL LISTEN/NOTIFY), and the refresher's poll
    // confirms the copy (an unconfirmed copy refuses every action).
    let mut runtime = RuntimeRules::new(std::time::Duration::from_millis(
        config.runtime.kill_switch_max_staleness_ms,
    ));
    // Checked by the configuration's validation already.
    runtime.default_limits = config
        .default_rate_limits()
        .map_err(|e| StartError::Store(aaf_store::StoreError::Invalid(e.to_string())))?;
    let runtime = Arc::new(runtime);
    {
        let switches = Arc::clone(&runtime);
        store.on_runtime_changes(move |org| switches.announce(org));
    }
    runtime
        .refresh_all(&store, &clock, true)
        .await
        .map_err(|e| StartError::Store(aaf_store::StoreError::Unavailable(e)))?;
    let config_mcp = config.mcp.clone();
    let http = Arc::new(http);
    let mcp = Arc::new(crate::mcp::Upstreams::new(
        &config_mcp.servers,
        crate::mcp::UpstreamDeps {
            timeout: std::time::Duration::from_millis(config_mcp.call_timeout_ms),
            tool_cache: std::time::Duration::from_secs(config_mcp.tool_cache_seconds),
            http: Arc::clone(&http),
            secrets: Arc::clone(&secrets),
            store: store.clone(),
            runtime: Arc::clone(&runtime),
        },
    ));
    // The transparency log over the chains (built in the background by its worker).
    let log_key = crate::evidence::load_log_key(
        &config.evidence,
        config
            .database
            .url
            .is_none()
            .then_some(config.data_dir.as_path()),
    )
    .map_err(StartError::Evidence)?;
    if log_key.is_none() && config.evidence.enabled {
        tracing::warn!("no audit log key is configured (evidence.log_key_file): the Merkle trees are built and proofs served, but no checkpoint is signed; on PostgreSQL every node must be given the same key");
    }
    let evidence = Arc::new(
        crate::evidence::TransparencyLog::new(
            store.clone(),
            writer.clone(),
            config.evidence.clone(),
            log_key,
            Arc::clone(&secrets),
        )
        .map_err(StartError::Evidence)?,
    );
    let decision_log = Arc::new(
        crate::evidence::decision_log::DecisionLog::new(
            store.clone(),
            writer.clone(),
            config.evidence.decision_log.clone(),
            Arc::clone(&secrets),
        )
        .map_err(StartError::Evidence)?,
    );
    let state = AppState {
        evidence,
        decision_log,
        store,
        writer,
        registry: Arc::new(registry),
        policy_wake,
        http,
        secrets,
        default_org_id: Arc::from(org_id.as_str()),
        key_cache,
        auth_limiter: Arc::new(FailedAuthLimiter::new(
            config.auth.failed_auth_per_minute,
            config.auth.failed_auth_lockout,
        )),
        sessions: Arc::new(crate::runtime::session::SessionHistory::new(
            config.runtime.session.clone(),
        )),
        risk: Arc::new(crate::runtime::risk::RiskProfiles::new(
            config.detection.risk.clone(),
        )),
        outbound: Arc::new(crate::pipeline::outbound::OrgRules::new(
            &config.detection.outbound,
        )),
        classifier: crate::pipeline::classifier::Classifier::new(&config.detection.classifier)
            .map_err(StartError::Classifier)?
            .map(Arc::new),
        config: Arc::new(config),
        clock,
        action_events,
        webhooks: Arc::new(webhooks),
        runtime,
        mcp,
        alerts,
    };
    Ok((state, notice))
}

/// Creates the default organisation and its admin token on first start.
async fn bootstrap(
    store: &Store,
    config: &Config,
) -> Result<(String, AdminTokenNotice), StartError> {
    if let Some(org) = store.find_org_by_name(DEFAULT_ORG_NAME).await? {
        return Ok((org.id, AdminTokenNotice::Existing));
    }
    let (token, notice) = match &config.admin_token {
        Some(t) => (t.expose().to_string(), AdminTokenNotice::FromConfig),
        None => {
            let path = config.data_dir.join(ADMIN_TOKEN_FILE);
            (
                generate_token(ADMIN_TOKEN_PREFIX),
                AdminTokenNotice::Generated(path),
            )
        }
    };
    if let AdminTokenNotice::Generated(path) = &notice {
        write_secret_file(path, &token)?;
    }
    let created = store
        .create_org_with_admin_token(
            DEFAULT_ORG_NAME,
            SELF_HOSTED_PLAN,
            BOOTSTRAP_ADMIN_NAME,
            &hash_token(&token),
            &visible_prefix(&token),
            &now_rfc3339(),
        )
        .await;
    let org = match created {
        Ok(org) => org,
        // Another node sharing the database created it first: use theirs.
        Err(aaf_store::StoreError::Conflict(_)) => {
            if let AdminTokenNotice::Generated(path) = &notice {
                let _ = std::fs::remove_file(path);
            }
            if let Some(org) = store.find_org_by_name(DEFAULT_ORG_NAME).await? {
                return Ok((org.id, AdminTokenNotice::Existing));
            }
            return Err(StartError::Store(aaf_store::StoreError::Unavailable(
                "the default organisation could not be created nor found".into(),
            )));
        }
        Err(e) => {
            if let AdminTokenNotice::Generated(path) = &notice {
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
    };
    if let AdminTokenNotice::Generated(path) = &notice {
        // Printed once, on standard output, for the operator who started the server.
        println!(
            "admin token (shown once, also written to {}): {token}",
            path.display()
        );
    }
    Ok((org.id, notice))
}

/// Writes `content` to `path` with mode 0600 (owner read/write only), refusing to overwrite;
/// creates the directory (mode 0700) when missing.
pub(crate) fn write_secret_file(path: &Path, content: &str) -> Result<(), StartError> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder
            .create(dir)
            .map_err(|e| StartError::TokenFile(path.into(), e.to_string()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| StartError::TokenFile(path.into(), e.to_string()))?;
    file.write_all(format!("{content}\n").as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| StartError::TokenFile(path.into(), e.to_string()))
}

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish, and flushes the audit writer. Connections are limited and
/// timed out as `[server]` says ([`crate::connections`]).
///
/// # Errors
///
/// `metrics.listen` cannot be bound; accept errors are logged and retried.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let metrics_listener = crate::metrics::MetricsListener::start(&state).await?;
    let metrics_upkeep = tokio::spawn(crate::metrics::upkeep());
    let writer = state.writer.clone();
    let store = state.store.clone();
    let housekeeping = tokio::spawn(housekeeping(state.clone()));
    let sweeper = tokio::spawn(crate::approvals::sweeper(state.clone()));
    let deliveries = tokio::spawn(crate::webhooks::worker(
        state.clone(),
        Arc::clone(&state.webhooks),
    ));
    let refresher = tokio::spawn(crate::policies::refresher(state.clone()));
    let evidence = tokio::spawn(crate::evidence::worker(Arc::clone(&state.evidence)));
    let retention = tokio::spawn(crate::retention::worker(state.clone()));
    let decision_log = tokio::spawn(crate::evidence::decision_log::worker(Arc::clone(
        &state.decision_log,
    )));
    let alert_worker = state
        .alerts
        .take_receiver()
        .map(|signals| tokio::spawn(crate::alerts::worker(state.clone(), signals)));
    let kill_switch_refresher = tokio::spawn(crate::runtime::kill_switch::refresher(
        Arc::clone(&state.runtime),
        state.store.clone(),
        state.clock.clone(),
        std::time::Duration::from_millis(state.config.runtime.kill_switch_poll_ms),
    ));
    // Reload the policy directory on change (kept alive until shutdown).
    let _watcher = match &state.registry.base().origin {
        PolicyOrigin::Directory(dir) if state.config.policy_engine.watch => {
            match crate::policies::watch_directory(state.clone(), dir) {
                Ok(w) => {
                    tracing::info!(directory = %dir.display(), "watching the policy directory for changes");
                    Some(w)
                }
                Err(e) => {
                    tracing::warn!(directory = %dir.display(), error = %e, "cannot watch the policy directory; restart to reload it");
                    None
                }
            }
        }
        _ => None,
    };
    let limits = crate::connections::ConnectionLimits::from_config(&state.config.server);
    tracing::info!(
        max_connections = limits.max_connections,
        header_read_timeout_ms = state.config.server.header_read_timeout_ms,
        body_read_timeout_ms = state.config.server.body_read_timeout_ms,
        idle_timeout_ms = state.config.server.idle_timeout_ms,
        tcp_nodelay = state.config.server.tcp_nodelay,
        "connection limits"
    );
    let app = router(state);
    crate::connections::serve(listener, app, limits, shutdown).await;
    housekeeping.abort();
    sweeper.abort();
    deliveries.abort();
    refresher.abort();
    evidence.abort();
    retention.abort();
    decision_log.abort();
    if let Some(worker) = &alert_worker {
        worker.abort();
    }
    kill_switch_refresher.abort();
    metrics_upkeep.abort();
    if let Some(metrics_listener) = metrics_listener {
        metrics_listener.stop().await;
    }
    tracing::info!("stopped accepting; flushing the audit log");
    writer.shutdown().await;
    store.close().await;
    tracing::info!("audit log flushed and database closed; bye");
    Ok(())
}

/// Every minute: forgets expired signature nonces and idle failed-authentication counters.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.auth_limiter.prune();
        let mut live = state.runtime.rate_limit_ids();
        live.extend(state.runtime.default_limits.iter().map(|l| l.id.clone()));
        state.runtime.counters.housekeeping(&live);
        match state.store.purge_nonces(&now_rfc3339()).await {
            Ok(n) if n > 0 => tracing::debug!(purged = n, "expired signature nonces forgotten"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not purge expired signature nonces"),
        }
    }
}

/// Installs the SIGINT and SIGTERM handlers at once and returns a future that resolves on
/// the first of them. Installing before the server binds and logs `listening` means a
/// signal sent as soon as that line appears is never lost (nor does it kill the process
/// with the default action instead of a graceful shutdown).
///
/// Must be called inside a tokio runtime. A handler that cannot be installed is logged and
/// that signal then never resolves the future.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                None
            }
        };
        let interrupt = install(SignalKind::interrupt(), "SIGINT");
        let terminate = install(SignalKind::terminate(), "SIGTERM");
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => tracing::info!("SIGINT received; shutting down"),
                _ = wait(terminate) => tracing::info!("SIGTERM received; shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C received; shutting down");
        }
    }
}

/// `aaf serve`: prepare, bind, log where everything is, and serve until a signal.
///
/// Errors: anything in [`prepare`], and a listen address that cannot be bound.
pub async fn serve(config: Config) -> Result<(), StartError> {
    let listen = config.listen;
    let (state, _) = prepare(config).await?;
    let shutdown = shutdown_signal();
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(address = %addr, "listening (OpenAPI at /v1/openapi.json)");
    run(listener, state, shutdown).await
}
