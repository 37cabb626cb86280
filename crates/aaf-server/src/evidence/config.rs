//! `[evidence]`: the transparency log over the audit chains (docs/audit.md, "Transparency
//! log").

use std::path::PathBuf;

use aaf_core::secrets::Secret;
use serde::{Deserialize, Serialize};

/// `[evidence]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// Whether each chain's Merkle tree is built and checkpoints are signed. Default true.
    pub enabled: bool,
    /// The log key: a file holding a C2SP signed-note Ed25519 private key
    /// (`PRIVATE+KEY+<name>+<id>+<base64>`, as `aaf audit keygen` writes). Its name is the
    /// log's name, and each chain's checkpoint origin is `<name>/<org_id>`. Unset: on SQLite,
    /// `<data_dir>/log-key`, created on first start with the name `log_name`; on PostgreSQL,
    /// where every node must sign with the same key, checkpoints are not signed (trees are
    /// still built and proofs served) until a key is configured. This is where a KMS or
    /// Vault plugs in later.
    pub log_key_file: Option<PathBuf>,
    /// The log key itself, instead of a file (environment: `AAF_EVIDENCE__LOG_KEY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_key: Option<Secret>,
    /// The name of a key generated on first start (SQLite without `log_key_file`): 1 to 128
    /// printable ASCII characters without spaces or `+`, ideally a domain name the log is
    /// known by (`aaf.example.com/audit`). Default `aaf-audit`.
    pub log_name: String,
    /// A checkpoint is signed once the tree has grown by this many events since the last
    /// one, 1 to 10000000. Default 1000.
    pub checkpoint_every_events: u64,
    /// ... or once this many seconds have passed since the last one and the tree has grown,
    /// 1 to 86400. Default 60.
    pub checkpoint_interval_seconds: u64,
    /// How often each node brings the trees up to the chains' heads, in milliseconds, 50 to
    /// 600000. Default 1000.
    pub build_interval_ms: u64,
    /// Most events added to a tree in one write, 1 to 100000. Default 256 (about 512
    /// stored hashes: a short write, so decisions committed in the same group are not held
    /// up).
    pub build_batch: u32,
    /// Where each new checkpoint is also written, so that rewriting the database together
    /// with its chain heads is detected (`aaf audit verify --checkpoints DIR`). Default none.
    pub sinks: Vec<SinkConfig>,
    /// Time-out of one export to an HTTP or witness sink, in milliseconds, 100 to 60000.
    /// Default 5000.
    pub sink_timeout_ms: u64,
    /// Continuous export of decisions in the OPA decision-log format.
    pub decision_log: super::decision_log::DecisionLogConfig,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            enabled: true,
            log_key_file: None,
            log_key: None,
            log_name: "aaf-audit".into(),
            checkpoint_every_events: 1000,
            checkpoint_interval_seconds: 60,
            build_interval_ms: 1000,
            build_batch: 256,
            sinks: Vec::new(),
            sink_timeout_ms: 5000,
            decision_log: super::decision_log::DecisionLogConfig::default(),
        }
    }
}

/// One checkpoint sink (`[[evidence.sinks]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    /// A directory: each checkpoint is written to `<path>/<org_id>/<tree_size>.checkpoint`
    /// (atomically: a temporary file renamed), what `aaf audit verify --checkpoints` reads.
    /// Put it where whoever can write the database cannot (another volume, host or account;
    /// an object store mounted write-once).
    Directory {
        /// The directory (created when missing).
        path: PathBuf,
    },
    /// An HTTP endpoint: each checkpoint `POST`ed as `text/plain; charset=utf-8` (the signed
    /// note), with the headers given; a 2xx answer is success, anything else is retried.
    Http {
        /// `http` or `https` URL.
        url: String,
        /// Extra request headers (for example `Authorization`); values may be
        /// `${secret:name}` references (docs/credentials.md).
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
    },
    /// A witness speaking the C2SP `tlog-witness` protocol: each checkpoint is submitted
    /// to `<url>/add-checkpoint` with a consistency proof from the size the witness last
    /// cosigned; the witness's cosignatures are logged.
    Witness {
        /// The witness's base URL (`http` or `https`).
        url: String,
    },
}

impl EvidenceConfig {
    /// Checks the section.
    ///
    /// # Errors
    ///
    /// A message naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000_000).contains(&self.checkpoint_every_events) {
            return Err("evidence.checkpoint_every_events must be from 1 to 10000000".into());
        }
        if !(1..=86_400).contains(&self.checkpoint_interval_seconds) {
            return Err("evidence.checkpoint_interval_seconds must be from 1 to 86400".into());
        }
        if !(50..=600_000).contains(&self.build_interval_ms) {
            return Err("evidence.build_interval_ms must be from 50 to 600000".into());
        }
        if !(1..=100_000).contains(&self.build_batch) {
            return Err("evidence.build_batch must be from 1 to 100000".into());
        }
        if !(100..=60_000).contains(&self.sink_timeout_ms) {
            return Err("evidence.sink_timeout_ms must be from 100 to 60000".into());
        }
        let name_ok = !self.log_name.is_empty()
            && self.log_name.len() <= 128
            && self
                .log_name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'+');
        if !name_ok {
            return Err(format!(
                "evidence.log_name must be 1 to 128 printable ASCII characters without spaces or '+', not {:?}",
                self.log_name
            ));
        }
        self.decision_log.validate()?;
        if self.log_key.is_some() && self.log_key_file.is_some() {
            return Err("give evidence.log_key or evidence.log_key_file, not both".into());
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            match sink {
                SinkConfig::Directory { path } if path.as_os_str().is_empty() => {
                    return Err(format!("evidence.sinks[{i}].path must not be empty"));
                }
                SinkConfig::Directory { .. } => {}
                SinkConfig::Http { url, .. } | SinkConfig::Witness { url } => {
                    let parsed = url::Url::parse(url)
                        .map_err(|e| format!("evidence.sinks[{i}].url is not a URL: {e}"))?;
                    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                        return Err(format!(
                            "evidence.sinks[{i}].url must be an http or https URL with a host"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
