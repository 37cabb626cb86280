//! Prometheus metrics: every metric AAF exposes, described in one place, the recorder, and
//! `GET /metrics` (docs/runtime-protection.md, "Metrics").
//!
//! Recording goes through the [`metrics`] facade: without an installed recorder (a library
//! user, a unit test) every call is a no-op. [`install`] installs the
//! `metrics-exporter-prometheus` recorder once per process (`aaf serve` calls it through
//! [`crate::app::prepare`] when `metrics.enabled`), and `/metrics` renders it in the
//! Prometheus text exposition format (0.0.4). The recorder's histograms are drained by
//! every scrape and by [`upkeep`], a task of [`crate::app::run`], so that they do not grow
//! when nobody scrapes.
//!
//! On the decision path, recording costs an atomic add (counters) or a lock-free push
//! (histograms) through handles registered once at [`install`]; every series is named with
//! a literal name and literal label values (a key built at compile time, nothing allocated),
//! which is why the helpers here take enums, not strings.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `aaf_decisions_total` | counter | `decision` = `allow`, `deny`, `require_approval` | decisions the pipeline recorded (stage 4 committed), by verdict as recorded in `action.decided` |
//! | `aaf_dry_run_decisions_total` | counter | `decision` | decisions of dry runs (`POST /v1/actions/dry-run`), which record nothing |
//! | `aaf_pipeline_stage_duration_seconds` | histogram | `stage` = `evaluate` (stages 1 to 3), `record` (4), `execute` (5, the connector call), `outcome` (6) | time spent in each stage of the action pipeline, dry runs and re-checks of approved actions included (`evaluate`) |
//! | `aaf_action_duration_seconds` | histogram | none | the whole `pipeline::submit`, from the first stage to the answer (errors included) |
//! | `aaf_guard_refusals_total` | counter | `guard` = `kill_switch`, `rate_limit`, `budget` | actions a runtime-protection guard refused before stage 1 |
//! | `aaf_kill_switches_active` | gauge | none | kill switches in force |
//! | `aaf_budget_spend_micros_total` | counter | `unit` (the currency, e.g. `USD`) | cost of the actions AAF ran, as settled against budgets, in micro-units |
//! | `aaf_audit_batch_size` | histogram | none | write units committed per group commit of the audit writer |
//! | `aaf_audit_commit_duration_seconds` | histogram | none | time of one group commit (its transaction, with unit-by-unit retries) |
//! | `aaf_connector_calls_total` | counter | `connector` = `http`, `mcp`; `outcome` = `executed`, `failed`, `denied` | actions run through a connector, by outcome |
//! | `aaf_connector_duration_seconds` | histogram | `connector` | time of one connector call |
//! | `aaf_approvals_pending` | gauge | none | actions waiting for approval, in every organisation (counted in the database by the approvals sweeper) |
//! | `aaf_alerts_raised_total` | counter | `rule` (a built-in alert rule, docs/alerts.md) | alerts this node raised (a hit on an open alert only counts on it) |
//! | `aaf_alert_signals_lost_total` | counter | `reason` = `queue_full`, `failed` | recorded events the alert rules never evaluated: the queue was full, or evaluating and recording failed after retries |
//! | `aaf_audit_tree_breaks_total` | counter | none | audit chains the tree builder found not to verify (each break once); their Merkle trees stop before it (docs/audit.md, "Transparency log") |
//! | `aaf_audit_checkpoints_signed_total` | counter | none | checkpoints of the audit log this node signed |
//! | `aaf_audit_checkpoint_exports_total` | counter | `sink` = `directory`, `http`, `witness`; `outcome` = `written`, `failed` | checkpoints written to the sinks (a failure is retried) |
//! | `aaf_decision_log_exported_total` | counter | `sink` = `file`, `http` | decisions exported in the OPA decision-log format |
//! | `aaf_decision_log_failures_total` | counter | `sink` | decision-log batches that failed (retried with back-off) |
//!
//! No label takes an unbounded value (no action, agent or organisation id, no path).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ::metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram,
};
use aaf_core::action::{ActionStatus, Verdict};
use aaf_core::secrets::Secret;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::AppState;
use crate::connectors::Connector;
use crate::error::ApiError;

/// The route of the scrape endpoint, on the main listener and on `metrics.listen`.
pub const PATH: &str = "/metrics";

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What kind of metric a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution, in buckets.
    Histogram,
}

/// Every metric AAF exposes: name, kind, description. The module documentation and
/// docs/runtime-protection.md list the same (a test compares).
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "aaf_audit_tree_breaks_total",
        Kind::Counter,
        "Audit chains the tree builder found not to verify (each break counted once); their Merkle trees stop before it.",
    ),
    (
        "aaf_audit_checkpoints_signed_total",
        Kind::Counter,
        "Checkpoints of the audit log this node signed.",
    ),
    (
        "aaf_audit_checkpoint_exports_total",
        Kind::Counter,
        "Checkpoints written to a sink, by sink kind (directory, http, witness) and outcome (written, failed).",
    ),
    (
        "aaf_decision_log_exported_total",
        Kind::Counter,
        "Decisions exported in the OPA decision-log format, by sink kind (file, http).",
    ),
    (
        "aaf_decision_log_failures_total",
        Kind::Counter,
        "Failed decision-log batches (retried), by sink kind (file, http).",
    ),
    (
        "aaf_decisions_total",
        Kind::Counter,
        "Decisions the action pipeline recorded, by verdict (decision).",
    ),
    (
        "aaf_dry_run_decisions_total",
        Kind::Counter,
        "Decisions of dry runs, which record nothing, by verdict (decision).",
    ),
    (
        "aaf_pipeline_stage_duration_seconds",
        Kind::Histogram,
        "Time spent in each stage of the action pipeline: evaluate (stages 1-3), record (4), execute (5), outcome (6).",
    ),
    (
        "aaf_action_duration_seconds",
        Kind::Histogram,
        "Time of a whole action submission through the pipeline.",
    ),
    (
        "aaf_guard_refusals_total",
        Kind::Counter,
        "Actions refused by a runtime-protection guard before evaluation, by guard.",
    ),
    (
        "aaf_kill_switches_active",
        Kind::Gauge,
        "Kill switches in force.",
    ),
    (
        "aaf_budget_spend_micros_total",
        Kind::Counter,
        "Cost of the actions AAF ran, as settled against budgets, in micro-units of the currency (unit).",
    ),
    (
        "aaf_audit_batch_size",
        Kind::Histogram,
        "Write units committed per group commit of the audit writer.",
    ),
    (
        "aaf_audit_commit_duration_seconds",
        Kind::Histogram,
        "Time of one group commit of the audit writer.",
    ),
    (
        "aaf_connector_calls_total",
        Kind::Counter,
        "Actions run through a connector, by connector and outcome (executed, failed, denied).",
    ),
    (
        "aaf_connector_duration_seconds",
        Kind::Histogram,
        "Time of one connector call, by connector.",
    ),
    (
        "aaf_approvals_pending",
        Kind::Gauge,
        "Actions waiting for approval in every organisation (from the database, refreshed by the approvals sweeper).",
    ),
    (
        "aaf_alerts_raised_total",
        Kind::Counter,
        "Alerts this node raised, by rule.",
    ),
    (
        "aaf_alert_signals_lost_total",
        Kind::Counter,
        "Recorded events the alert rules never evaluated, by reason (queue_full, failed).",
    ),
];

/// Bucket bounds of every `_seconds` histogram: 100 µs to 30 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Bucket bounds of `aaf_audit_batch_size` (up to `audit.max_batch`'s default and beyond).
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// How often [`upkeep`] drains the histograms when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The recorder of this process once [`install`] ran, or why it could not be installed.
static RECORDER: OnceLock<Result<Installed, String>> = OnceLock::new();

/// AAF's installed recorder: its handle for rendering, and the decision path's series.
struct Installed {
    prometheus: PrometheusHandle,
    series: Series,
}

/// The exporter's configuration: histogram buckets for every `_seconds` metric and for the
/// audit batch size.
///
/// # Errors
///
/// A bucket list the exporter refuses (none of ours is).
pub fn builder() -> Result<PrometheusBuilder, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full("aaf_audit_batch_size".into()), BATCH_BUCKETS)
}

/// Installs the Prometheus recorder as the process's global recorder, once; later calls
/// return the first call's outcome. Describes every metric of [`METRICS`] and starts at zero
/// the counters whose labels are known, so that they show before their first event.
///
/// # Errors
///
/// Another recorder is already installed in this process (by an application embedding
/// AAF): AAF's metrics then go to that recorder and `/metrics` answers 503.
pub fn install() -> Result<&'static PrometheusHandle, &'static str> {
    RECORDER
        .get_or_init(|| {
            let prometheus = builder()
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| e.to_string())?;
            describe();
            Ok(Installed {
                prometheus,
                series: Series::register(),
            })
        })
        .as_ref()
        .map(|installed| &installed.prometheus)
        .map_err(String::as_str)
}

/// The installed recorder's handle, if [`install`] succeeded in this process.
pub fn handle() -> Option<&'static PrometheusHandle> {
    installed_recorder().map(|i| &i.prometheus)
}

fn installed_recorder() -> Option<&'static Installed> {
    RECORDER.get().and_then(|r| r.as_ref().ok())
}

/// The decision path's series of AAF's recorder, registered once at [`install`]; `None`
/// without it (then each call goes through the `metrics` macros: a no-op without any
/// recorder, or another recorder's registry).
fn series() -> Option<&'static Series> {
    installed_recorder().map(|i| &i.series)
}

/// Whether this process records metrics into AAF's recorder (work done only for metrics,
/// such as counting pending approvals, is skipped otherwise).
pub fn installed() -> bool {
    handle().is_some()
}

/// Describes every metric of [`METRICS`] to the current recorder, and registers at zero the
/// series whose labels are known in advance.
pub fn describe() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, help),
        }
    }
    for verdict in VERDICTS {
        decision_counter(verdict).absolute(0);
        dry_run_counter(verdict).absolute(0);
    }
    for guard in [
        counter!("aaf_guard_refusals_total", "guard" => "kill_switch"),
        counter!("aaf_guard_refusals_total", "guard" => "rate_limit"),
        counter!("aaf_guard_refusals_total", "guard" => "budget"),
    ] {
        guard.absolute(0);
    }
    for outcome in CONNECTOR_OUTCOMES {
        connector_counter(Connector::Http, outcome).absolute(0);
    }
    gauge!("aaf_kill_switches_active").set(0.0);
    approvals_pending_gauge().set(0.0);
}

/// Drains the histograms every [`UPKEEP_INTERVAL`] (until the task is aborted), so that their
/// samples do not pile up between scrapes. Does nothing without AAF's recorder.
pub async fn upkeep() {
    let Some(handle) = handle() else {
        return;
    };
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

// ---------------------------------------------------------------------------------------------
// Recording
//
// Each series is named once, in a function below, with a literal name and literal label
// values (a key built at compile time: nothing is allocated). [`Series`] registers the
// decision path's series once at [`install`]; recording through a registered handle is an
// atomic add (counters) or a lock-free push (histograms), without the registry lookup (a
// hash and a sharded read lock) that each macro call does.

/// The decision path's series, registered once with AAF's recorder.
struct Series {
    /// By [`verdict_index`].
    decisions: [Counter; 3],
    /// By [`verdict_index`].
    dry_runs: [Counter; 3],
    /// By [`Stage`] (its discriminant).
    stages: [Histogram; 4],
    action: Histogram,
    /// By [`connector_outcome_index`].
    http_calls: [Counter; 3],
    http_duration: Histogram,
    approvals_pending: Gauge,
}

impl Series {
    /// Registers every series with the current recorder.
    fn register() -> Series {
        let verdicts = VERDICTS;
        let outcomes = CONNECTOR_OUTCOMES;
        Series {
            decisions: verdicts.map(decision_counter),
            dry_runs: verdicts.map(dry_run_counter),
            stages: STAGES.map(stage_histogram),
            action: action_histogram(),
            http_calls: outcomes.map(|o| connector_counter(Connector::Http, o)),
            http_duration: connector_histogram(Connector::Http),
            approvals_pending: approvals_pending_gauge(),
        }
    }
}

const VERDICTS: [Verdict; 3] = [Verdict::Allow, Verdict::Deny, Verdict::RequireApproval];

fn verdict_index(verdict: Verdict) -> usize {
    match verdict {
        Verdict::Allow => 0,
        Verdict::Deny => 1,
        Verdict::RequireApproval => 2,
    }
}

/// The outcomes of a connector call: what [`connector_called`] counts.
const CONNECTOR_OUTCOMES: [ConnectorOutcome; 3] = [
    ConnectorOutcome::Executed,
    ConnectorOutcome::Failed,
    ConnectorOutcome::Denied,
];

/// How a connector call ended, as `aaf_connector_calls_total` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectorOutcome {
    Executed,
    Failed,
    Denied,
}

impl ConnectorOutcome {
    /// The outcome of a call that ended with `status` (`None` for a status no call ends
    /// with).
    fn of(status: ActionStatus) -> Option<ConnectorOutcome> {
        match status {
            ActionStatus::Executed => Some(ConnectorOutcome::Executed),
            ActionStatus::Failed => Some(ConnectorOutcome::Failed),
            ActionStatus::Denied => Some(ConnectorOutcome::Denied),
            _ => None,
        }
    }
}

fn connector_outcome_index(outcome: ConnectorOutcome) -> usize {
    match outcome {
        ConnectorOutcome::Executed => 0,
        ConnectorOutcome::Failed => 1,
        ConnectorOutcome::Denied => 2,
    }
}

fn decision_counter(verdict: Verdict) -> Counter {
    match verdict {
        Verdict::Allow => counter!("aaf_decisions_total", "decision" => "allow"),
        Verdict::Deny => counter!("aaf_decisions_total", "decision" => "deny"),
        Verdict::RequireApproval => {
            counter!("aaf_decisions_total", "decision" => "require_approval")
        }
    }
}

fn dry_run_counter(verdict: Verdict) -> Counter {
    match verdict {
        Verdict::Allow => counter!("aaf_dry_run_decisions_total", "decision" => "allow"),
        Verdict::Deny => counter!("aaf_dry_run_decisions_total", "decision" => "deny"),
        Verdict::RequireApproval => {
            counter!("aaf_dry_run_decisions_total", "decision" => "require_approval")
        }
    }
}

fn connector_counter(connector: Connector, outcome: ConnectorOutcome) -> Counter {
    match (connector, outcome) {
        (Connector::Http, ConnectorOutcome::Executed) => {
            counter!("aaf_connector_calls_total", "connector" => "http", "outcome" => "executed")
        }
        (Connector::Http, ConnectorOutcome::Failed) => {
            counter!("aaf_connector_calls_total", "connector" => "http", "outcome" => "failed")
        }
        (Connector::Http, ConnectorOutcome::Denied) => {
            counter!("aaf_connector_calls_total", "connector" => "http", "outcome" => "denied")
        }
        (Connector::Mcp, ConnectorOutcome::Executed) => {
            counter!("aaf_connector_calls_total", "connector" => "mcp", "outcome" => "executed")
        }
        (Connector::Mcp, ConnectorOutcome::Failed) => {
            counter!("aaf_connector_calls_total", "connector" => "mcp", "outcome" => "failed")
        }
        (Connector::Mcp, ConnectorOutcome::Denied) => {
            counter!("aaf_connector_calls_total", "connector" => "mcp", "outcome" => "denied")
        }
    }
}

fn connector_histogram(connector: Connector) -> Histogram {
    match connector {
        Connector::Http => histogram!("aaf_connector_duration_seconds", "connector" => "http"),
        Connector::Mcp => histogram!("aaf_connector_duration_seconds", "connector" => "mcp"),
    }
}

fn stage_histogram(stage: Stage) -> Histogram {
    match stage {
        Stage::Evaluate => {
            histogram!("aaf_pipeline_stage_duration_seconds", "stage" => "evaluate")
        }
        Stage::Record => histogram!("aaf_pipeline_stage_duration_seconds", "stage" => "record"),
        Stage::Execute => {
            histogram!("aaf_pipeline_stage_duration_seconds", "stage" => "execute")
        }
        Stage::Outcome => {
            histogram!("aaf_pipeline_stage_duration_seconds", "stage" => "outcome")
        }
    }
}

fn action_histogram() -> Histogram {
    histogram!("aaf_action_duration_seconds")
}

fn approvals_pending_gauge() -> Gauge {
    gauge!("aaf_approvals_pending")
}

/// Counts a decision the pipeline recorded (stage 4 committed).
pub fn decision_recorded(verdict: Verdict) {
    match series() {
        Some(s) => s.decisions[verdict_index(verdict)].increment(1),
        None => decision_counter(verdict).increment(1),
    }
}

/// Counts an alert raised by `rule` (a built-in rule's name).
pub fn alert_raised(rule: &'static str) {
    counter!("aaf_alerts_raised_total", "rule" => rule).increment(1);
}

/// Counts a signal the alert rules never evaluated (`reason`: `queue_full`, `failed`).
pub fn alert_signal_lost(reason: &'static str) {
    counter!("aaf_alert_signals_lost_total", "reason" => reason).increment(1);
}

/// Counts an action a runtime-protection guard refused before stage 1 (`guard`:
/// `kill_switch`, `rate_limit`, `budget`). Refusals are rare, so the registry lookup of the
/// macro is not on the common path.
pub fn guard_refused(guard: &'static str) {
    counter!("aaf_guard_refusals_total", "guard" => guard).increment(1);
}

/// Counts cost settled against budgets (`micros` of the currency `unit`).
pub fn budget_spent(unit: &str, micros: u64) {
    counter!("aaf_budget_spend_micros_total", "unit" => unit.to_string()).increment(micros);
}

/// Sets the number of kill switches in force on this node (every organisation's unreleased
/// switches; one that expired counts until the next reload).
pub fn kill_switches_active(count: usize) {
    gauge!("aaf_kill_switches_active").set(count as f64);
}

/// Counts the decision of a dry run.
pub fn dry_run_decided(verdict: Verdict) {
    match series() {
        Some(s) => s.dry_runs[verdict_index(verdict)].increment(1),
        None => dry_run_counter(verdict).increment(1),
    }
}

/// Records one connector call: its outcome (`status`: `executed`, `failed` or `denied`) and
/// how long it took (also the pipeline's `execute` stage).
pub fn connector_called(connector: Connector, status: ActionStatus, took: Duration) {
    let seconds = took.as_secs_f64();
    let outcome = ConnectorOutcome::of(status);
    match (series(), connector) {
        (Some(s), Connector::Http) => {
            if let Some(o) = outcome {
                s.http_calls[connector_outcome_index(o)].increment(1);
            }
            s.http_duration.record(seconds);
            s.stages[Stage::Execute as usize].record(seconds);
        }
        (_, Connector::Mcp) | (None, _) => {
            if let Some(o) = outcome {
                connector_counter(connector, o).increment(1);
            }
            connector_histogram(connector).record(seconds);
            stage_histogram(Stage::Execute).record(seconds);
        }
    }
}

/// Sets `aaf_approvals_pending`.
pub fn approvals_pending(count: u64) {
    // Counts of actions fit a double exactly far beyond any realistic number.
    let count = count as f64;
    match series() {
        Some(s) => s.approvals_pending.set(count),
        None => approvals_pending_gauge().set(count),
    }
}

/// A stage of the action pipeline, as `aaf_pipeline_stage_duration_seconds` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Stages 1 to 3: policy input, evaluation, connector preflight.
    Evaluate = 0,
    /// Stage 4: the durable record of the decision.
    Record = 1,
    /// Stage 5: the connector call (recorded by [`connector_called`]).
    Execute = 2,
    /// Stage 6: the durable record of the outcome.
    Outcome = 3,
}

const STAGES: [Stage; 4] = [
    Stage::Evaluate,
    Stage::Record,
    Stage::Execute,
    Stage::Outcome,
];

/// What a [`Timer`] times.
#[derive(Debug, Clone, Copy)]
enum Timed {
    Stage(Stage),
    Action,
}

/// Measures from its making to its drop (early returns and errors included) and records the
/// time into its histogram.
#[must_use = "the time is recorded when the timer is dropped"]
pub struct Timer {
    started: Instant,
    timed: Timed,
}

impl Timer {
    /// Times a stage of the pipeline.
    pub fn stage(stage: Stage) -> Timer {
        Timer {
            started: Instant::now(),
            timed: Timed::Stage(stage),
        }
    }

    /// Times a whole submission (`aaf_action_duration_seconds`).
    pub fn action() -> Timer {
        Timer {
            started: Instant::now(),
            timed: Timed::Action,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let seconds = self.started.elapsed().as_secs_f64();
        match (series(), self.timed) {
            (Some(s), Timed::Stage(stage)) => s.stages[stage as usize].record(seconds),
            (Some(s), Timed::Action) => s.action.record(seconds),
            (None, Timed::Stage(stage)) => stage_histogram(stage).record(seconds),
            (None, Timed::Action) => action_histogram().record(seconds),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The endpoint

/// `GET /metrics`: every metric in the Prometheus text exposition format. On the main
/// listener it passes the `authorize` middleware (an admin or auditor, or `metrics.token`);
/// on `metrics.listen` it needs nothing.
///
/// # Errors
///
/// 404 when `metrics.enabled` is false; 503 when this process has no AAF recorder (another
/// recorder was installed first).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "every metric, in the Prometheus text exposition format 0.0.4 (docs/runtime-protection.md)", body = String, content_type = "text/plain"),
        (status = 404, description = "metrics are turned off (metrics.enabled = false)", body = crate::error::ErrorBody),
        (status = 503, description = "the database could not be read (authentication), or this process records no metrics (another recorder was installed first)", body = crate::error::ErrorBody)))]
pub async fn scrape(State(state): State<AppState>) -> Response {
    if !state.config.metrics.enabled {
        return ApiError::NotFound("metrics are turned off (metrics.enabled = false)".into())
            .into_response();
    }
    render()
}

/// The scrape answer of this process's recorder.
fn render() -> Response {
    match handle() {
        Some(handle) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], handle.render()).into_response(),
        None => ApiError::Unavailable(
            "metrics are not recorded in this process (another metrics recorder was installed first)"
                .into(),
        )
        .into_response(),
    }
}

/// Whether `presented` is `metrics.token`: their SHA-256 digests compared in constant time,
/// so neither the token's bytes nor its length show in the time taken.
pub fn token_matches(presented: &str, token: &Secret) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    let expected = Sha256::digest(token.expose().as_bytes());
    presented.ct_eq(&expected).into()
}

/// The router of `metrics.listen`: `GET /metrics` without authentication, nothing else.
pub fn listener_router() -> axum::Router {
    axum::Router::new()
        .route(PATH, axum::routing::get(|| async { render() }))
        .fallback(|| async { ApiError::NotFound("this listener serves only GET /metrics".into()) })
}

/// The `metrics.listen` listener, serving until [`MetricsListener::stop`].
pub struct MetricsListener {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// Most connections of the `metrics.listen` listener at once (a scraper needs one or two).
pub const LISTENER_MAX_CONNECTIONS: usize = 16;

impl MetricsListener {
    /// Binds `metrics.listen`, when metrics are enabled and it is set, and serves
    /// [`listener_router`] on it with `[server]`'s time-outs and
    /// [`LISTENER_MAX_CONNECTIONS`].
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub async fn start(state: &AppState) -> std::io::Result<Option<MetricsListener>> {
        let config = &state.config.metrics;
        let Some(address) = config.listen.filter(|_| config.enabled) else {
            return Ok(None);
        };
        let listener = TcpListener::bind(address).await?;
        let bound = listener.local_addr()?;
        tracing::warn!(
            metrics_address = %bound,
            "serving GET /metrics without authentication on metrics.listen: keep this address private"
        );
        let limits = crate::connections::ConnectionLimits {
            max_connections: LISTENER_MAX_CONNECTIONS,
            ..crate::connections::ConnectionLimits::from_config(&state.config.server)
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::connections::serve(
            listener,
            listener_router(),
            limits,
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Some(MetricsListener { stop, task }))
    }

    /// Stops accepting, lets scrapes in progress finish, and waits for the listener to close.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the metrics listener failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `series` (name and labels as rendered) in `text`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_metric_is_described_with_its_type_and_the_helpers_record_with_literal_labels() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            describe();
            decision_recorded(Verdict::Allow);
            decision_recorded(Verdict::Allow);
            decision_recorded(Verdict::Deny);
            dry_run_decided(Verdict::RequireApproval);
            connector_called(
                Connector::Http,
                ActionStatus::Executed,
                Duration::from_millis(3),
            );
            connector_called(Connector::Http, ActionStatus::Failed, Duration::ZERO);
            drop(Timer::stage(Stage::Evaluate));
            drop(Timer::stage(Stage::Record));
            drop(Timer::stage(Stage::Outcome));
            drop(Timer::action());
            approvals_pending(7);
            histogram!("aaf_audit_batch_size").record(3.0);
            histogram!("aaf_audit_commit_duration_seconds").record(0.002);
            gauge!("aaf_kill_switches_active").set(1.0);
            counter!("aaf_budget_spend_micros_total", "unit" => "usd").increment(5);
            alert_raised("repeated_denials");
            alert_signal_lost("queue_full");
            counter!("aaf_audit_tree_breaks_total").increment(1);
            counter!("aaf_audit_checkpoints_signed_total").increment(1);
            counter!("aaf_audit_checkpoint_exports_total", "sink" => "directory", "outcome" => "written").increment(1);
            counter!("aaf_decision_log_exported_total", "sink" => "file").increment(1);
            counter!("aaf_decision_log_failures_total", "sink" => "http").increment(1);
        });
        let text = handle.render();
        for &(name, kind, help) in METRICS {
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} is not a {kind}:\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP {name} {help}\n")),
                "{name} has no description:\n{text}"
            );
        }
        assert_eq!(
            sample(&text, "aaf_decisions_total{decision=\"allow\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "aaf_decisions_total{decision=\"deny\"}"),
            Some(1.0)
        );
        // Known series show at zero before their first event.
        assert_eq!(
            sample(&text, "aaf_decisions_total{decision=\"require_approval\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "aaf_guard_refusals_total{guard=\"rate_limit\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "aaf_dry_run_decisions_total{decision=\"require_approval\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "aaf_connector_calls_total{connector=\"http\",outcome=\"executed\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "aaf_connector_calls_total{connector=\"http\",outcome=\"denied\"}"
            ),
            Some(0.0)
        );
        assert_eq!(sample(&text, "aaf_approvals_pending"), Some(7.0));
        // Histograms have buckets: 3 ms falls in le=0.005, not in le=0.0025.
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("aaf_connector_duration_seconds_bucket{{connector=\"http\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.0025"), Some(1.0), "{text}");
        assert_eq!(bucket("0.005"), Some(2.0), "{text}");
        assert_eq!(bucket("+Inf"), Some(2.0), "{text}");
        assert_eq!(
            sample(
                &text,
                "aaf_pipeline_stage_duration_seconds_count{stage=\"execute\"}"
            ),
            Some(2.0)
        );
        for stage in ["evaluate", "record", "outcome"] {
            assert_eq!(
                sample(
                    &text,
                    &format!("aaf_pipeline_stage_duration_seconds_count{{stage=\"{stage}\"}}")
                ),
                Some(1.0),
                "{stage}"
            );
        }
        assert_eq!(
            sample(&text, "aaf_audit_batch_size_bucket{le=\"4\"}"),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn the_registered_series_are_indexed_as_they_were_registered() {
        for (i, verdict) in VERDICTS.into_iter().enumerate() {
            assert_eq!(verdict_index(verdict), i);
        }
        for (i, outcome) in CONNECTOR_OUTCOMES.into_iter().enumerate() {
            assert_eq!(connector_outcome_index(outcome), i);
        }
        for (i, stage) in STAGES.into_iter().enumerate() {
            assert_eq!(stage as usize, i);
        }
        // And through registered handles the same series are recorded.
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            let series = Series::register();
            series.decisions[verdict_index(Verdict::RequireApproval)].increment(2);
            series.stages[Stage::Outcome as usize].record(0.5);
            series.http_calls[connector_outcome_index(ConnectorOutcome::Denied)].increment(1);
        });
        let text = handle.render();
        assert_eq!(
            sample(&text, "aaf_decisions_total{decision=\"require_approval\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "aaf_pipeline_stage_duration_seconds_count{stage=\"outcome\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "aaf_connector_calls_total{connector=\"http\",outcome=\"denied\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn without_a_recorder_recording_does_nothing() {
        decision_recorded(Verdict::Deny);
        connector_called(Connector::Http, ActionStatus::Denied, Duration::ZERO);
        drop(Timer::action());
        approvals_pending(1);
    }

    #[test]
    fn the_metrics_token_is_compared_whole_and_the_configuration_is_checked() {
        use crate::config::{CliOverrides, Config};
        let token = Secret::new("t".repeat(40));
        assert!(token_matches(&"t".repeat(40), &token));
        assert!(!token_matches(&"t".repeat(39), &token));
        assert!(!token_matches(&format!("{}u", "t".repeat(39)), &token));
        assert!(!token_matches("", &token));

        let load = |pairs: &[(&str, &str)]| {
            Config::load(
                None,
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())),
                &CliOverrides::default(),
            )
        };
        let c = load(&[]).unwrap();
        assert!(c.metrics.enabled);
        assert!(c.metrics.token.is_none() && c.metrics.listen.is_none());
        let c = load(&[
            ("AAF_METRICS__ENABLED", "false"),
            ("AAF_METRICS__TOKEN", &"t".repeat(32)),
            ("AAF_METRICS__LISTEN", "127.0.0.1:9464"),
        ])
        .unwrap();
        assert!(!c.metrics.enabled);
        assert_eq!(c.metrics.token.unwrap().expose(), "t".repeat(32));
        assert_eq!(c.metrics.listen.unwrap().to_string(), "127.0.0.1:9464");
        let e = load(&[("AAF_METRICS__TOKEN", "short")]).unwrap_err();
        assert!(e.to_string().contains("metrics.token"), "{e}");
        let e = load(&[("AAF_METRICS__LISTEN", "127.0.0.1:8700")]).unwrap_err();
        assert!(e.to_string().contains("metrics.listen"), "{e}");
        // Debug output never shows the token.
        let c = load(&[("AAF_METRICS__TOKEN", &"s3cret".repeat(6))]).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn the_documentation_lists_every_metric() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../docs/runtime-protection.md"),
        )
        .unwrap();
        let section = doc
            .split("\n## Metrics\n")
            .nth(1)
            .expect("docs/runtime-protection.md has a `## Metrics` section");
        let section = section.split("\n## ").next().unwrap_or(section);
        let module = include_str!("metrics.rs");
        for &(name, _, _) in METRICS {
            assert!(
                section.contains(&format!("`{name}`")),
                "docs/runtime-protection.md, Metrics, does not list {name}"
            );
            assert!(
                module.contains(&format!("//! | `{name}` |")),
                "the module documentation does not list {name}"
            );
        }
    }
}
