//! Continuous export of decisions in the OPA decision-log format (docs/audit.md, "Decision
//! log export"): every `action.decided` audit event becomes one OPA decision-log entry
//! (`decision_id`, `path`, `input`, `result`, `timestamp`, `labels`, ... plus AAF's own
//! fields under `aaf`), redacted as stored, written in batches to a file (JSON lines) or
//! `POST`ed to an HTTP endpoint (a JSON array, as OPA's decision-log plugin sends), with
//! retries. Each sink's position per chain is a cursor in the database
//! (`decision_log_cursors`), moved with a compare-and-set after a batch is written, so a
//! restart goes on where the last node stopped; delivery is at least once (a batch written
//! but not yet recorded is written again), and a consumer deduplicates on `decision_id`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aaf_core::audit::{event_types, StoredEvent};
use aaf_store::{Mutation, Store, WriteUnit};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `[evidence.decision_log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionLogConfig {
    /// Where decisions go. Default none (no export).
    pub sinks: Vec<DecisionLogSink>,
    /// Most decisions written in one batch, 1 to 10000. Default 500.
    pub batch_size: u32,
    /// How often new decisions are looked for, in milliseconds, 100 to 600000. Default 1000.
    pub interval_ms: u64,
    /// Time-out of one HTTP batch, in milliseconds, 100 to 120000. Default 10000.
    pub timeout_ms: u64,
    /// The longest wait between retries of a failing sink, in milliseconds (the wait doubles
    /// from `interval_ms` after each failure), 100 to 3600000. Default 60000.
    pub max_backoff_ms: u64,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        DecisionLogConfig {
            sinks: Vec::new(),
            batch_size: 500,
            interval_ms: 1000,
            timeout_ms: 10_000,
            max_backoff_ms: 60_000,
        }
    }
}

/// One decision-log sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DecisionLogSink {
    /// Appended to a file, one JSON entry per line, synced after each batch.
    File {
        /// The file (created when missing).
        path: PathBuf,
    },
    /// `POST`ed as a JSON array (`Content-Type: application/json`); a 2xx answer is success.
    Http {
        /// `http` or `https` URL.
        url: String,
        /// Extra request headers; values may be `${secret:name}` references.
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

impl DecisionLogSink {
    /// The sink's id in the database: hex SHA-256 of its RFC 8785 canonical JSON, so that
    /// reordering sinks in the configuration keeps their cursors.
    pub fn id(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let canonical = aaf_core::canonical::to_canonical_json(&value).unwrap_or_default();
        hex::encode(Sha256::digest(canonical))
    }

    fn kind(&self) -> &'static str {
        match self {
            DecisionLogSink::File { .. } => "file",
            DecisionLogSink::Http { .. } => "http",
        }
    }
}

impl DecisionLogConfig {
    /// Checks the section.
    ///
    /// # Errors
    ///
    /// A message naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.batch_size) {
            return Err("evidence.decision_log.batch_size must be from 1 to 10000".into());
        }
        if !(100..=600_000).contains(&self.interval_ms) {
            return Err("evidence.decision_log.interval_ms must be from 100 to 600000".into());
        }
        if !(100..=120_000).contains(&self.timeout_ms) {
            return Err("evidence.decision_log.timeout_ms must be from 100 to 120000".into());
        }
        if !(100..=3_600_000).contains(&self.max_backoff_ms) {
            return Err("evidence.decision_log.max_backoff_ms must be from 100 to 3600000".into());
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            match sink {
                DecisionLogSink::File { path } if path.as_os_str().is_empty() => {
                    return Err(format!(
                        "evidence.decision_log.sinks[{i}].path must not be empty"
                    ));
                }
                DecisionLogSink::File { .. } => {}
                DecisionLogSink::Http { url, .. } => {
                    let parsed = url::Url::parse(url).map_err(|e| {
                        format!("evidence.decision_log.sinks[{i}].url is not a URL: {e}")
                    })?;
                    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                        return Err(format!(
                            "evidence.decision_log.sinks[{i}].url must be an http or https URL with a host"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The OPA decision-log entry of one `action.decided` event (its `data` parsed).
///
/// OPA's fields: `decision_id` (the action id), `path` (`aaf/decision`, the rule AAF's
/// policies define), `input` (the agent, tool, operation, params and context as recorded,
/// redacted as stored), `result` (the decision, reason, risk level and every policy's
/// outcome), `timestamp` (the event's), `labels` (`app`, `org_id`), `requested_by` (the
/// client address), `bundles` (the policy revision). AAF's own, under `aaf`: the chain,
/// seq and event hash (to find the event and its proofs), the matched policies, and the
/// detections, risk, budget and refusing guard when present.
pub fn entry(event: &StoredEvent, data: &Value) -> Value {
    let mut input = json!({
        "agent_id": event.agent_id,
        "tool": data["tool"],
        "operation": data["operation"],
        "params": data["params"],
        "context": data["context"],
    });
    for field in ["detections", "risk", "budget"] {
        if let Some(value) = data.get(field).filter(|v| !v.is_null()) {
            input[field] = value.clone();
        }
    }
    let mut aaf = json!({
        "org_id": event.org_id,
        "seq": event.seq,
        "hash": hex::encode(event.hash),
        "matched_policies": data["matched_policies"],
    });
    if let Some(guard) = data.get("guard").filter(|v| !v.is_null()) {
        aaf["guard"] = guard.clone();
    }
    json!({
        "decision_id": event.action_id,
        "path": "aaf/decision",
        "input": input,
        "result": {
            "decision": data["decision"],
            "reason": data["reason"],
            "risk_level": data["risk_level"],
            "policies": data["policies"],
        },
        "timestamp": event.ts,
        "labels": {"app": "aaf", "org_id": event.org_id, "version": env!("CARGO_PKG_VERSION")},
        "requested_by": data["ip_address"],
        "bundles": {"aaf": {"revision": data["policy_revision"]}},
        "aaf": aaf,
    })
}

/// The exporter of one node.
pub struct DecisionLog {
    store: Store,
    writer: aaf_store::AuditWriter,
    config: DecisionLogConfig,
    client: reqwest::Client,
    secrets: Arc<dyn crate::secrets::SecretStore>,
}

impl DecisionLog {
    /// The exporter of `config`'s sinks.
    ///
    /// # Errors
    ///
    /// The HTTP client cannot be built.
    pub fn new(
        store: Store,
        writer: aaf_store::AuditWriter,
        config: DecisionLogConfig,
        secrets: Arc<dyn crate::secrets::SecretStore>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("aaf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("evidence.decision_log: {e}"))?;
        Ok(DecisionLog {
            store,
            writer,
            config,
            client,
            secrets,
        })
    }

    /// Exports what is new for every chain to one sink; `Err` when the sink failed (the
    /// cursor stays, the batch is written again later).
    async fn export(&self, sink: &DecisionLogSink, id: &str) -> Result<u64, String> {
        let heads = self
            .store
            .audit_chain_heads()
            .await
            .map_err(|e| e.to_string())?;
        let mut written = 0;
        for (org_id, head) in heads {
            loop {
                let cursor = self
                    .store
                    .decision_log_cursor(id, &org_id)
                    .await
                    .map_err(|e| e.to_string())?;
                let after = cursor.unwrap_or(0);
                if after >= head {
                    break;
                }
                let events = self
                    .store
                    .audit_events_of_type_after(
                        &org_id,
                        event_types::ACTION_DECIDED,
                        after,
                        self.config.batch_size,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let complete = events.len() < self.config.batch_size as usize;
                let upto = match events.last() {
                    // Every decision so far is in this batch: the cursor may move to the
                    // head read before (any later decision has a larger seq).
                    Some(last) if complete => last.seq.max(head),
                    Some(last) => last.seq,
                    None => head,
                };
                // Opened (decrypted, checked against their commitments); an event whose
                // payload is withheld is exported with `input` and `result` null.
                let opened = self
                    .store
                    .open_events(&events)
                    .await
                    .map_err(|e| e.to_string())?;
                let entries: Vec<Value> = events
                    .iter()
                    .zip(&opened)
                    .map(|(e, readable)| entry(e, &readable.event.data))
                    .collect();
                if !entries.is_empty() {
                    self.write(sink, &entries).await?;
                    written += entries.len() as u64;
                    metrics::counter!("aaf_decision_log_exported_total", "sink" => sink.kind())
                        .increment(entries.len() as u64);
                }
                self.writer
                    .submit(WriteUnit {
                        mutations: vec![Mutation::SetDecisionLogCursor {
                            sink: id.to_string(),
                            org_id: org_id.clone(),
                            seq: upto,
                            expected: cursor,
                            now: crate::time::now_rfc3339(),
                        }],
                        action: None,
                        events: Vec::new(),
                    })
                    .await
                    .map_err(|e| format!("the cursor could not be recorded: {e}"))?;
                if complete {
                    break;
                }
            }
        }
        Ok(written)
    }

    /// Writes one batch to `sink`.
    async fn write(&self, sink: &DecisionLogSink, entries: &[Value]) -> Result<(), String> {
        match sink {
            DecisionLogSink::File { path } => {
                let mut lines = Vec::new();
                for e in entries {
                    serde_json::to_writer(&mut lines, e).map_err(|e| e.to_string())?;
                    lines.push(b'\n');
                }
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)?;
                    file.write_all(&lines)?;
                    file.sync_data()
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{}: {e}", path_of(sink)))
            }
            DecisionLogSink::Http { url, headers } => {
                super::sinks::send_with_headers(
                    self.client.post(url).json(entries),
                    headers,
                    self.secrets.as_ref(),
                )
                .await
            }
        }
    }
}

fn path_of(sink: &DecisionLogSink) -> String {
    match sink {
        DecisionLogSink::File { path } => path.display().to_string(),
        DecisionLogSink::Http { url, .. } => url.clone(),
    }
}

/// The exporter's background task: each sink every `interval_ms`, a failing sink retried
/// after a wait that doubles up to `max_backoff_ms`. Runs until aborted; returns at once
/// without sinks.
pub async fn worker(log: Arc<DecisionLog>) {
    if log.config.sinks.is_empty() {
        return;
    }
    let interval = Duration::from_millis(log.config.interval_ms);
    let sinks: Vec<(DecisionLogSink, String)> = log
        .config
        .sinks
        .iter()
        .map(|s| (s.clone(), s.id()))
        .collect();
    let mut waits: Vec<(Duration, tokio::time::Instant)> =
        vec![(interval, tokio::time::Instant::now()); sinks.len()];
    loop {
        tokio::time::sleep(interval).await;
        for (i, (sink, id)) in sinks.iter().enumerate() {
            if tokio::time::Instant::now() < waits[i].1 {
                continue;
            }
            match log.export(sink, id).await {
                Ok(_) => waits[i] = (interval, tokio::time::Instant::now()),
                Err(e) => {
                    let next =
                        (waits[i].0 * 2).min(Duration::from_millis(log.config.max_backoff_ms));
                    waits[i] = (next, tokio::time::Instant::now() + next);
                    metrics::counter!("aaf_decision_log_failures_total", "sink" => sink.kind())
                        .increment(1);
                    tracing::warn!(sink = %path_of(sink), error = %e, retry_in_ms = next.as_millis() as u64,
                        "decisions could not be exported; retried");
                }
            }
        }
    }
}
