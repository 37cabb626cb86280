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
