//! Where checkpoints go besides the database (`[[evidence.sinks]]`): a directory, an HTTP
//! endpoint, a C2SP `tlog-witness`. A checkpoint that could not be written is retried at
//! every round of the worker until it is, or until a newer checkpoint of the same chain
//! replaces it (a newer checkpoint commits to everything the older one did). Every node
//! exports the checkpoints it signs: delivery is at least once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aaf_core::evidence::merkle::Hash;
use aaf_store::evidence::StoredCheckpoint;
use base64::Engine as _;

use super::config::{EvidenceConfig, SinkConfig};

/// The configured sinks, the checkpoints still to write to each, and what each witness
/// cosigned last.
pub struct Sinks {
    sinks: Vec<SinkConfig>,
    client: reqwest::Client,
    secrets: Arc<dyn crate::secrets::SecretStore>,
    /// `(sink index, org_id)` → the newest checkpoint not yet written there.
    pending: Mutex<BTreeMap<(usize, String), StoredCheckpoint>>,
    /// `(sink index, org_id)` → the tree size the witness last cosigned (as far as known).
    witnessed: Mutex<BTreeMap<(usize, String), u64>>,
}

/// What a witness answered to `add-checkpoint` (C2SP tlog-witness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessAnswer {
    /// 200: its cosignature lines.
    Cosigned(String),
    /// 409 with `text/x.tlog.size`: the size it last cosigned, which is not the old size
    /// sent.
    Conflict(u64),
}

impl Sinks {
    /// The sinks of `config`.
    ///
    /// # Errors
    ///
    /// The HTTP client cannot be built.
    pub fn new(
        config: &EvidenceConfig,
        secrets: Arc<dyn crate::secrets::SecretStore>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.sink_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("aaf/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("evidence.sinks: {e}"))?;
        Ok(Sinks {
            sinks: config.sinks.clone(),
            client,
            secrets,
            pending: Mutex::new(BTreeMap::new()),
            witnessed: Mutex::new(BTreeMap::new()),
        })
    }

    /// Queues `checkpoint` for every sink (replacing an older one of its chain not yet
    /// written).
    pub fn submit(&self, checkpoint: StoredCheckpoint) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for index in 0..self.sinks.len() {
            let key = (index, checkpoint.org_id.clone());
            let newer = pending
                .get(&key)
                .is_none_or(|queued| queued.tree_size < checkpoint.tree_size);
            if newer {
                pending.insert(key, checkpoint.clone());
            }
        }
    }

    /// The checkpoints still to write: `(sink index, sink, checkpoint)`.
    pub(super) fn pending(&self) -> Vec<(usize, SinkConfig, StoredCheckpoint)> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .iter()
            .map(|((index, _), checkpoint)| {
                (*index, self.sinks[*index].clone(), checkpoint.clone())
            })
            .collect()
    }

    /// Records that `checkpoint` was written to sink `index` (unless a newer one of its chain
    /// was queued meanwhile).
    pub(super) fn done(&self, index: usize, checkpoint: &StoredCheckpoint) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = (index, checkpoint.org_id.clone());
        if pending
            .get(&key)
            .is_some_and(|queued| queued.tree_size <= checkpoint.tree_size)
        {
            pending.remove(&key);
        }
    }

    /// The size witness `index` last cosigned for `org_id`, as far as this node knows (0:
    /// unknown; the witness answers 409 with its size).
    pub(super) fn witnessed(&self, index: usize, org_id: &str) -> u64 {
        let witnessed = self.witnessed.lock().unwrap_or_else(|e| e.into_inner());
        witnessed
            .get(&(index, org_id.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Records the size witness `index` cosigned (or said it cosigned) for `org_id`.
    pub(super) fn set_witnessed(&self, index: usize, org_id: &str, size: u64) {
        let mut witnessed = self.witnessed.lock().unwrap_or_else(|e| e.into_inner());
        witnessed.insert((index, org_id.to_string()), size);
    }

    /// `POST`s the signed note to an HTTP sink.
    ///
    /// # Errors
    ///
    /// A message: the request failed, a header's secret cannot be read, or the answer is
    /// not 2xx.
    pub(super) async fn post(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        checkpoint: &StoredCheckpoint,
    ) -> Result<(), String> {
        let request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(checkpoint.note.clone());
        send_with_headers(request, headers, self.secrets.as_ref()).await
    }

    /// Submits `note` to a C2SP tlog-witness at `<url>/add-checkpoint` with the consistency
    /// proof `proof` from `old_size` (empty when `old_size` is 0).
    ///
    /// # Errors
    ///
    /// A message: the request failed, or the witness refused (400, 403 bad signature, 404
    /// unknown origin, 409 without a size, 422 bad proof, ...).
    pub(super) async fn add_checkpoint(
        &self,
        url: &str,
        old_size: u64,
        proof: &[Hash],
        note: &str,
    ) -> Result<WitnessAnswer, String> {
        let body = witness_request_body(old_size, proof, note);
        let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
        let response = self
            .client
            .post(&endpoint)
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let size_body = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "text/x.tlog.size");
        let text = response.text().await.map_err(|e| e.to_string())?;
        match status.as_u16() {
            200 => Ok(WitnessAnswer::Cosigned(text)),
            409 if size_body => text
                .trim_end_matches('\n')
                .parse()
                .map(WitnessAnswer::Conflict)
                .map_err(|_| format!("answered 409 with a size that is not a number: {text:?}")),
            409 => Err("answered 409 Conflict: its checkpoint of this size has another root hash (the log was forked, or rewritten)".into()),
            code => Err(format!(
                "answered {status}: {}",
                match code {
                    403 => "no signature verifies with the log key it trusts for this origin",
                    404 => "it does not know this log's origin",
                    422 => "the consistency proof does not verify",
                    _ => text.trim(),
                }
            )),
        }
    }
}

/// Sends `request` with `headers` (values with `${secret:name}` expanded); `Ok` for a 2xx
/// answer.
///
/// # Errors
///
/// A message: a secret cannot be read, the request failed, or the answer is not 2xx.
pub(super) async fn send_with_headers(
    mut request: reqwest::RequestBuilder,
    headers: &BTreeMap<String, String>,
    secrets: &dyn crate::secrets::SecretStore,
) -> Result<(), String> {
    for (name, value) in headers {
        let (value, _) =
            crate::secrets::expand(value, secrets).map_err(|e| format!("header {name}: {e}"))?;
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", response.status()))
    }
}

/// The body of a C2SP tlog-witness `add-checkpoint` request: `old <size>\n`, one base64 hash
/// per line, an empty line, the signed note.
pub fn witness_request_body(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old_size}\n");
    for hash in proof {
        body.push_str(&base64::engine::general_purpose::STANDARD.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// The directory of `org_id`'s checkpoints under a directory sink: `<dir>/<org_id>`, the id
/// hex-encoded (`x` + hex) unless it is only ASCII letters, digits, `-` and `_`.
pub fn chain_directory(dir: &Path, org_id: &str) -> PathBuf {
    let plain = !org_id.is_empty()
        && org_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        dir.join(org_id)
    } else {
        dir.join(format!("x{}", hex::encode(org_id)))
    }
}

/// Writes `checkpoint` to `<dir>/<org_id>/<tree_size>.checkpoint`: a temporary file, synced,
/// renamed into place, the directory synced.
///
/// # Errors
///
/// The I/O error, with the path.
pub fn write_to_directory(dir: &Path, checkpoint: &StoredCheckpoint) -> Result<(), String> {
    use std::io::Write;
    let chain = chain_directory(dir, &checkpoint.org_id);
    std::fs::create_dir_all(&chain).map_err(|e| format!("{}: {e}", chain.display()))?;
    let path = chain.join(format!("{}.checkpoint", checkpoint.tree_size));
    let temporary = chain.join(format!(
        ".{}.checkpoint.{}.tmp",
        checkpoint.tree_size,
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(checkpoint.note.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&chain)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        format!("{}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_witness_request_is_the_c2sp_body() {
        let body = witness_request_body(2, &[[0; 32], [255; 32]], "o\n3\nroot\n\n— o sig\n");
        assert_eq!(
            body,
            "old 2\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n//////////////////////////////////////////8=\n\no\n3\nroot\n\n— o sig\n"
        );
        assert_eq!(witness_request_body(0, &[], "n\n"), "old 0\n\nn\n");
    }

    #[test]
    fn chain_directories_cannot_leave_the_sink() {
        let dir = Path::new("/sink");
        assert_eq!(chain_directory(dir, "org-1_a"), Path::new("/sink/org-1_a"));
        assert_eq!(chain_directory(dir, "../x"), Path::new("/sink/x2e2e2f78"));
        assert_eq!(chain_directory(dir, ""), Path::new("/sink/x"));
    }
}
