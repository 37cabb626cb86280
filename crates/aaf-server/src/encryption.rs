//! `[encryption]`: encryption at rest (docs/encryption.md). The master key that wraps every
//! organisation's data keys, where it comes from, and the operations on keys: rotation and
//! crypto-shredding, each recorded in the audit chain.

use std::path::{Path, PathBuf};

use aaf_core::secrets::Secret;
use aaf_store::encryption::MasterKey;
use serde::{Deserialize, Serialize};

/// The file a generated master key is kept in, inside the data directory (SQLite only).
pub const GENERATED_KEY_FILE: &str = "master-key";

/// `[encryption]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Whether payloads, params, results and secrets are sealed. Default true. `false` (for
    /// a deployment whose database is encrypted by other means, or a test of clear rows):
    /// no master key is read or made, new values are written in clear, and values sealed
    /// before read as withheld until encryption is enabled again.
    pub enabled: bool,
    /// A file holding the master key: 32 random bytes in base64 (`aaf encryption keygen`
    /// writes one). Unset: on SQLite, `<data_dir>/master-key`, created (mode 0600) on first
    /// start; on PostgreSQL, where every node needs the same key, nothing is encrypted (a
    /// warning at start) unless `required`. This is where a KMS or Vault plugs in later: it
    /// would hold the master key and wrap and unwrap the data keys.
    pub master_key_file: Option<PathBuf>,
    /// The master key itself, instead of a file (environment: `AAF_ENCRYPTION__MASTER_KEY`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_key: Option<Secret>,
    /// Refuse to start without a master key (set it for PostgreSQL deployments, so that a
    /// node missing the key cannot write in clear). Default false.
    pub required: bool,
    /// How long each node uses the data keys it loaded before it reads them again, in seconds,
    /// 1 to 3600: the longest another node can go on sealing with a key this node rotated,
    /// or reading with a key it destroyed. Default 60.
    pub key_cache_seconds: u64,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            enabled: true,
            master_key_file: None,
            master_key: None,
            required: false,
            key_cache_seconds: 60,
        }
    }
}

impl EncryptionConfig {
    /// Checks the values.
    ///
    /// # Errors
    ///
    /// A message naming the key that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=3600).contains(&self.key_cache_seconds) {
            return Err("encryption.key_cache_seconds must be from 1 to 3600".into());
        }
        if self.required && !self.enabled {
            return Err("encryption.required is set but encryption.enabled is false".into());
        }
        if self.master_key.is_some() && self.master_key_file.is_some() {
            return Err(
                "give encryption.master_key or encryption.master_key_file, not both".into(),
            );
        }
        Ok(())
    }
}

/// Reads the master key `config` names, or (SQLite: `generate_in` is the data directory,
/// nothing configured) reads or creates `<data_dir>/master-key`. `Ok(None)`: no key
/// (PostgreSQL without one).
///
/// # Errors
///
/// A message naming the key or file that cannot be read, parsed or written, or saying that
/// a key is `required` and none is given.
pub fn load_master_key(
    config: &EncryptionConfig,
    generate_in: Option<&Path>,
) -> Result<Option<MasterKey>, String> {
    if !config.enabled {
        return Ok(None);
    }
    if let Some(secret) = &config.master_key {
        return MasterKey::from_text(secret.expose())
            .map(Some)
            .map_err(|e| format!("encryption.master_key: {e}"));
    }
    let read = |path: &Path| -> Result<MasterKey, String> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("encryption.master_key_file {}: {e}", path.display()))?,
        );
        MasterKey::from_text(&text)
            .map_err(|e| format!("encryption.master_key_file {}: {e}", path.display()))
    };
    if let Some(path) = &config.master_key_file {
        return read(path).map(Some);
    }
    let Some(dir) = generate_in else {
        if config.required {
            return Err("encryption.required is set but no master key is given: set encryption.master_key_file or AAF_ENCRYPTION__MASTER_KEY".into());
        }
        return Ok(None);
    };
    let path = dir.join(GENERATED_KEY_FILE);
    if path.exists() {
        return read(&path).map(Some);
    }
    let (key, text) = MasterKey::generate();
    crate::app::write_secret_file(&path, &text)
        .map_err(|e| format!("the master key {}: {e}", path.display()))?;
    tracing::info!(file = %path.display(), master_key_id = key.id(),
        "generated the master key of encryption at rest; back it up apart from the database: without it nothing encrypted can be read");
    Ok(Some(key))
}

/// Why a key operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyOpError {
    /// Encryption at rest is not configured: there is no key to rotate or destroy.
    #[error("encryption at rest is not configured (no master key): there is no data key to rotate or destroy")]
    NotConfigured,
    /// The action is still in progress: it may yet need its params.
    #[error("action {0} is still {1}: shred it once it is final")]
    NotFinal(String, &'static str),
    /// A legal hold is in force (docs/retention.md): nothing may be destroyed.
    #[error("a legal hold is in force ({0}): nothing can be shredded until it is lifted (PUT /v1/retention)")]
    LegalHold(String),
    /// The store's error (not found, conflict, unavailable).
    #[error(transparent)]
    Store(#[from] aaf_store::StoreError),
}

/// Rotates `org_id`'s data key: new writes are sealed under a new key, what the old one
/// sealed stays readable. Recorded as `encryption.key_rotated`. Returns the new key.
///
/// # Errors
///
/// [`KeyOpError::NotConfigured`] without a master key; the store's errors.
pub async fn rotate(
    store: &aaf_store::Store,
    writer: &aaf_store::AuditWriter,
    org_id: &str,
    by: &str,
    now: &str,
) -> Result<aaf_store::encryption::DataKeyRow, KeyOpError> {
    if !store.encryption_enabled() {
        return Err(KeyOpError::NotConfigured);
    }
    let previous = store
        .list_data_keys(org_id)
        .await?
        .into_iter()
        .find(|k| k.retired_at.is_none())
        .map(|k| k.id);
    let new = store.new_data_key(org_id, now)?;
    writer
        .submit(audited(
            aaf_store::Mutation::RotateDataKey {
                new: new.clone(),
                now: now.to_string(),
            },
            org_id,
            (None, None),
            aaf_core::audit::event_types::ENCRYPTION_KEY_ROTATED,
            serde_json::json!({"key_id": new.id, "previous_key_id": previous, "by": by}),
            now,
        ))
        .await?;
    store.reload_data_keys(org_id, None).await?;
    Ok(new)
}

/// Crypto-shreds one action of `org_id`: destroys its own data key (its params, context,
/// result and signals can no longer be read) and removes its events' payloads; the chain, the
/// Merkle tree and every proof still verify. Recorded as `encryption.action_shredded`.
///
/// # Errors
///
/// [`KeyOpError::NotConfigured`]; [`KeyOpError::NotFinal`] for an action still in
/// progress; the store's `NotFound` (no such action) and `Conflict` (written in clear, or
/// shredded already).
pub async fn shred_action(
    store: &aaf_store::Store,
    writer: &aaf_store::AuditWriter,
    org_id: &str,
    action_id: &str,
    by: &str,
    now: &str,
) -> Result<(), KeyOpError> {
    if !store.encryption_enabled() {
        return Err(KeyOpError::NotConfigured);
    }
    refuse_under_hold(store, org_id).await?;
    let action = store.get_action(org_id, action_id).await?.ok_or_else(|| {
        aaf_store::StoreError::NotFound(format!("action_id: no action {action_id}"))
    })?;
    if !action.status.is_final() {
        return Err(KeyOpError::NotFinal(
            action_id.to_string(),
            action.status.as_str(),
        ));
    }
    writer
        .submit(audited(
            aaf_store::Mutation::ShredAction {
                org_id: org_id.to_string(),
                action_id: action_id.to_string(),
                reason: format!("payload removed: the action was crypto-shredded on {now} by {by}"),
                now: now.to_string(),
            },
            org_id,
            (Some(action.agent_id.clone()), Some(action_id.to_string())),
            aaf_core::audit::event_types::ENCRYPTION_ACTION_SHREDDED,
            serde_json::json!({"action_id": action_id, "by": by}),
            now,
        ))
        .await?;
    store.reload_data_keys(org_id, Some(action_id)).await?;
    Ok(())
}

/// Crypto-shreds everything `org_id` has sealed so far: rotates to a new data key, then
/// destroys every other one. Recorded as `encryption.org_shredded` (sealed under the new key,
/// so it stays readable). Returns the ids of the destroyed keys.
///
/// # Errors
///
/// As [`rotate`].
pub async fn shred_org(
    store: &aaf_store::Store,
    writer: &aaf_store::AuditWriter,
    org_id: &str,
    by: &str,
    now: &str,
) -> Result<Vec<String>, KeyOpError> {
    refuse_under_hold(store, org_id).await?;
    let kept = rotate(store, writer, org_id, by, now).await?;
    let destroyed: Vec<String> = store
        .list_data_keys(org_id)
        .await?
        .into_iter()
        .filter(|k| k.id != kept.id && k.destroyed_at.is_none())
        .map(|k| k.id)
        .collect();
    writer
        .submit(audited(
            aaf_store::Mutation::DestroyDataKeys {
                org_id: org_id.to_string(),
                keep: kept.id.clone(),
                now: now.to_string(),
            },
            org_id,
            (None, None),
            aaf_core::audit::event_types::ENCRYPTION_ORG_SHREDDED,
            serde_json::json!({"destroyed_keys": destroyed, "key_id": kept.id, "by": by}),
            now,
        ))
        .await?;
    store.reload_data_keys(org_id, None).await?;
    Ok(destroyed)
}

async fn refuse_under_hold(store: &aaf_store::Store, org_id: &str) -> Result<(), KeyOpError> {
    match store
        .retention_rules(org_id)
        .await?
        .and_then(|r| r.legal_hold)
    {
        Some(hold) => Err(KeyOpError::LegalHold(hold)),
        None => Ok(()),
    }
}

/// One write unit: `mutation` and the event that records it (organisation chain, no agent
/// unless given).
fn audited(
    mutation: aaf_store::Mutation,
    org_id: &str,
    (agent_id, action_id): (Option<String>, Option<String>),
    event_type: &str,
    data: serde_json::Value,
    now: &str,
) -> aaf_store::WriteUnit {
    aaf_store::WriteUnit {
        mutations: vec![mutation],
        action: None,
        events: vec![aaf_store::NewEvent {
            org_id: org_id.to_string(),
            ts: now.to_string(),
            agent_id,
            action_id,
            event_type: event_type.to_string(),
            data,
        }],
    }
}
