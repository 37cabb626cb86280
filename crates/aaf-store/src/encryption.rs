//! Encryption at rest (docs/encryption.md): what the store seals before it writes and opens
//! after it reads.
//!
//! # Key hierarchy
//!
//! - The **master key** (32 bytes, [`MasterKey`]) is given to the process by file or
//!   environment and never stored in the database. It only wraps data keys. A KMS or Vault
//!   plugs in here later: it would wrap and unwrap data keys in place of the master key.
//! - Each organisation (and the `system` chain) has **data keys** (`data_keys` table), random
//!   32-byte keys stored wrapped by the master key. One is *active* (new writes); rotation
//!   retires it and makes a new one (old data stays readable); destroying a data key
//!   (crypto-shredding) deletes its wrapped form, after which what it sealed cannot be read
//!   by anyone.
//! - Each **action** has a key of its own, made when the action is recorded and stored in the
//!   action's row wrapped by its organisation's active data key. It seals the action's
//!   `params`, `context`, `result` and `signals`. Destroying it shreds one action.
//!
//! Audit event payloads (the salted payload of [`aaf_core::evidence::payload`]) and webhook
//! secrets are sealed under the organisation's data key.
//!
//! # Algorithm and formats
//!
//! XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha; ChaCha20-Poly1305 of RFC 8439 with a 192-bit
//! nonce), from RustCrypto's `chacha20poly1305`. Nonces are random: at 192 bits they may be,
//! for any number of messages under one key (a 96-bit random nonce, as AES-GCM's, bounds a key
//! to 2^32 messages, NIST SP 800-38D section 8.3). Every sealed value is bound to its place by
//! its associated data (organisation, action, column, or the payload's commitment), so a sealed
//! value copied to another row does not open.
//!
//! A sealed value is stored as the text `enc1.<key>.<base64url(nonce || ciphertext)>`, where
//! `<key>` is the data key's id, or `action` for the action's own key. Without a master key
//! nothing is sealed: payloads are stored as `clear1.<base64url(salt || data)>` and the other
//! columns as JSON, as before.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload as AeadPayload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use aaf_core::evidence::payload::SALT_LEN;

use crate::StoreError;

/// Length of every key, in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
/// The prefix of a sealed value.
const SEALED: &str = "enc1.";
/// The prefix of a payload stored in clear (no master key).
const CLEAR: &str = "clear1.";
/// The prefix of values sealed with the action's own key (`enc1.action.`).
const ACTION_COLUMN_PREFIX: &str = "enc1.action.";
/// An action's `params` and `context` sealed together (one AEAD call for both, the most
/// frequent write): stored in `params`; `context` then holds [`INPUTS_MARKER`].
const INPUTS_PREFIX: &str = "enc1.inputs.";
/// What an action's `context` column holds when it is sealed together with `params`.
pub(crate) const INPUTS_MARKER: &str = "enc1.inputs";

type Key = Zeroizing<[u8; KEY_LEN]>;
/// An action's own key.
pub(crate) type ActionKey = Key;

/// The master key: 32 bytes that wrap the data keys.
#[derive(Clone)]
pub struct MasterKey {
    key: Key,
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl PartialEq for MasterKey {
    fn eq(&self, other: &MasterKey) -> bool {
        self.id == other.id
    }
}
impl Eq for MasterKey {}

impl MasterKey {
    /// Reads a master key from its text: 32 bytes in base64 (standard or URL-safe alphabet,
    /// padded or not), surrounding whitespace ignored.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong (never the key).
    pub fn from_text(text: &str) -> Result<MasterKey, String> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| "the master key is not base64".to_string())?;
        let bytes = Zeroizing::new(bytes);
        let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "the master key must be {KEY_LEN} bytes, it is {}",
                bytes.len()
            )
        })?;
        Ok(MasterKey::from_bytes(key))
    }

    /// A new random master key and its text (standard base64).
    pub fn generate() -> (MasterKey, Zeroizing<String>) {
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        let text = Zeroizing::new(STANDARD.encode(key));
        (MasterKey::from_bytes(key), text)
    }

    fn from_bytes(key: [u8; KEY_LEN]) -> MasterKey {
        let mut hasher = Sha256::new();
        hasher.update(b"aaf master key id\0");
        hasher.update(key);
        let id = format!("mk-{}", &hex::encode(hasher.finalize())[..16]);
        MasterKey {
            key: Zeroizing::new(key),
            id,
        }
    }

    /// The key's id: `mk-` and 16 hex characters of a SHA-256 of the key (recorded beside
    /// every data key it wraps, so a wrong master key is named, not silently misused).
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// One data key as stored (`data_keys`), without its key material in clear.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DataKeyRow {
    /// The organisation (or `system`).
    pub org_id: String,
    /// `dk-` and a UUIDv7.
    pub id: String,
    /// The key wrapped by the master key (base64url of nonce and ciphertext); `None` once
    /// destroyed.
    #[serde(skip)]
    pub wrapped: Option<String>,
    /// The master key that wrapped it ([`MasterKey::id`]).
    pub master_key_id: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When it stopped sealing new writes (rotation or destruction); `None` for the active key.
    pub retired_at: Option<String>,
    /// When it was destroyed (crypto-shredded).
    pub destroyed_at: Option<String>,
}

/// Seals `plaintext` and returns the parts of `prefix` followed by
/// base64url(nonce || ciphertext || tag): one buffer, encrypted in place (this runs for every
/// recorded decision).
fn seal_with_prefix(
    prefix: &[&str],
    key: &[u8; KEY_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<String, StoreError> {
    use chacha20poly1305::aead::AeadInPlace;
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut buf = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
    buf.resize(NONCE_LEN, 0);
    rand::rng().fill_bytes(&mut buf[..NONCE_LEN]);
    buf.extend_from_slice(plaintext);
    let (nonce, body) = buf.split_at_mut(NONCE_LEN);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, body)
        .map_err(|_| StoreError::Invalid("a value could not be encrypted".to_string()))?;
    buf.extend_from_slice(&tag);
    let prefix_len: usize = prefix.iter().map(|p| p.len()).sum();
    let mut out = String::with_capacity(prefix_len + buf.len().div_ceil(3) * 4);
    for part in prefix {
        out.push_str(part);
    }
    URL_SAFE_NO_PAD.encode_string(&buf, &mut out);
    Ok(out)
}

fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<String, StoreError> {
    seal_with_prefix(&[], key, aad, plaintext)
}

fn open(key: &[u8; KEY_LEN], aad: &[u8], sealed: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| "the sealed value is not base64url".to_string())?;
    if bytes.len() < NONCE_LEN + 16 {
        return Err("the sealed value is too short".to_string());
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            AeadPayload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| {
            "the sealed value does not open with its key (it was modified or moved)".to_string()
        })
}

/// Splits `enc1.<key>.<sealed>` into key reference and sealed part.
fn sealed_parts(text: &str) -> Option<(&str, &str)> {
    text.strip_prefix(SEALED)?.split_once('.')
}

/// Whether a stored column text is a sealed value (and not JSON, which never starts so).
pub(crate) fn is_sealed(text: &str) -> bool {
    text.starts_with(SEALED)
}

/// An organisation's data keys, as this node last loaded them.
#[derive(Default)]
pub(crate) struct OrgKeys {
    /// The id of the key that seals new writes.
    active: Option<String>,
    keys: HashMap<String, KeySlot>,
    loaded_at: Option<Instant>,
}

enum KeySlot {
    Live(Key),
    Destroyed(String),
    /// Stored, but this node cannot unwrap it (why).
    Unavailable(String),
}

impl OrgKeys {
    /// Whether the organisation has an active (live) key.
    pub(crate) fn has_active(&self) -> bool {
        self.active().is_some()
    }

    fn active(&self) -> Option<(&str, &Key)> {
        let id = self.active.as_deref()?;
        match self.keys.get(id)? {
            KeySlot::Live(key) => Some((id, key)),
            KeySlot::Destroyed(_) | KeySlot::Unavailable(_) => None,
        }
    }
}

/// How a stored value that should be readable is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unreadable {
    /// The organisation's keys are not loaded on this node (or are stale): load, then retry.
    NotLoaded,
    /// It cannot be read, and why (destroyed key, modified value).
    Withheld(String),
}

/// The payload of an event, opened.
pub(crate) struct OpenedPayload {
    pub(crate) salt: [u8; SALT_LEN],
    /// The RFC 8785 canonical JSON of the event's data.
    pub(crate) data: String,
}

/// Every key this node holds, and the rules to use them: shared by all clones of a store.
pub struct Keyring {
    master: Option<MasterKey>,
    orgs: RwLock<HashMap<String, Arc<OrgKeys>>>,
    /// Action keys recently made or opened on this node (bounded), so that recording an
    /// action's outcome does not read its key back.
    actions: quick_cache::sync::Cache<(String, String), Arc<Key>>,
    /// How long loaded keys are trusted before they are read again (another node may have
    /// rotated or destroyed one).
    ttl: Duration,
    /// Key ids met in stored values but missing from the organisation's loaded keys: the
    /// next load resolves them (a key another node made since) or records them as unknown, so
    /// a read loads at most once for them.
    unknown: std::sync::Mutex<HashMap<String, std::collections::HashSet<String>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("master", &self.master)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Action keys kept in memory on each node.
const ACTION_KEY_CACHE: usize = 10_000;

impl Keyring {
    /// A keyring with `master` (none: nothing is sealed) whose loaded keys are read again after
    /// `ttl`.
    pub fn new(master: Option<MasterKey>, ttl: Duration) -> Keyring {
        Keyring {
            master,
            orgs: RwLock::new(HashMap::new()),
            actions: quick_cache::sync::Cache::new(ACTION_KEY_CACHE),
            ttl,
            unknown: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Whether values are sealed (a master key is configured).
    pub fn enabled(&self) -> bool {
        self.master.is_some()
    }

    /// The master key's id, if one is configured.
    pub fn master_key_id(&self) -> Option<&str> {
        self.master.as_ref().map(MasterKey::id)
    }

    pub(crate) fn org(&self, org_id: &str) -> Option<Arc<OrgKeys>> {
        let orgs = match self.orgs.read() {
            Ok(orgs) => orgs,
            Err(poisoned) => poisoned.into_inner(),
        };
        orgs.get(org_id).cloned()
    }

    /// The organisation's keys if loaded within the ttl.
    pub(crate) fn fresh(&self, org_id: &str) -> Option<Arc<OrgKeys>> {
        self.org(org_id)
            .filter(|k| k.loaded_at.is_some_and(|at| at.elapsed() < self.ttl))
    }

    /// Installs an organisation's keys as read from `data_keys`, unwrapping the live ones.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when a key was wrapped by another master key than the one
    /// configured, or does not unwrap (its row was modified): nothing of the organisation can
    /// then be sealed or opened, so its writes and reads fail rather than go on without it.
    pub(crate) fn install(&self, org_id: &str, rows: &[DataKeyRow]) -> Result<(), StoreError> {
        let mut keys = OrgKeys {
            loaded_at: Some(Instant::now()),
            ..OrgKeys::default()
        };
        for row in rows {
            let slot = match (&row.wrapped, &row.destroyed_at) {
                (Some(_), None) if self.master.is_none() => KeySlot::Unavailable(
                    "no master key is configured on this node (encryption.master_key_file)"
                        .to_string(),
                ),
                (Some(wrapped), None) => {
                    let Some(master) = &self.master else {
                        continue;
                    };
                    if master.id() != row.master_key_id {
                        return Err(StoreError::Unavailable(format!(
                            "data key {} of organisation {org_id} is wrapped by master key {}, but the configured master key is {}: configure the master key that wrapped it",
                            row.id, row.master_key_id, master.id()
                        )));
                    }
                    let plain = open(&master.key, &data_key_aad(org_id, &row.id), wrapped)
                        .map_err(|e| {
                            StoreError::Unavailable(format!(
                                "data key {} of organisation {org_id} does not unwrap: {e}",
                                row.id
                            ))
                        })?;
                    let key: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| {
                        StoreError::Corrupt(format!("data key {} is not {KEY_LEN} bytes", row.id))
                    })?;
                    KeySlot::Live(Zeroizing::new(key))
                }
                (_, destroyed) => KeySlot::Destroyed(
                    destroyed
                        .clone()
                        .unwrap_or_else(|| "an unknown date".to_string()),
                ),
            };
            if row.retired_at.is_none() && row.destroyed_at.is_none() {
                keys.active = Some(row.id.clone());
            }
            keys.keys.insert(row.id.clone(), slot);
        }
        let unknown = match self.unknown.lock() {
            Ok(mut unknown) => unknown.remove(org_id),
            Err(poisoned) => poisoned.into_inner().remove(org_id),
        };
        for id in unknown.unwrap_or_default() {
            keys.keys.entry(id).or_insert_with(|| {
                KeySlot::Unavailable("it is not among the organisation's keys".to_string())
            });
        }
        let mut orgs = match self.orgs.write() {
            Ok(orgs) => orgs,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A key that was live and is destroyed now: the action keys it wrapped, which this
        // node may hold in memory, must go with it (the cache is dropped whole: it is only
        // a cache).
        let destroyed_since = orgs.get(org_id).is_some_and(|before| {
            before.keys.iter().any(|(id, slot)| {
                matches!(slot, KeySlot::Live(_))
                    && !matches!(keys.keys.get(id), Some(KeySlot::Live(_)))
            })
        });
        if destroyed_since {
            self.actions.clear();
        }
        orgs.insert(org_id.to_string(), Arc::new(keys));
        Ok(())
    }

    /// A new data key for `org_id`, wrapped by the master key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] when no master key is configured.
    pub(crate) fn new_data_key(&self, org_id: &str, now: &str) -> Result<DataKeyRow, StoreError> {
        let master = self.master.as_ref().ok_or_else(|| {
            StoreError::Invalid("encryption is not configured (no master key)".to_string())
        })?;
        let id = format!("dk-{}", uuid::Uuid::now_v7().simple());
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(key.as_mut());
        let wrapped = seal(&master.key, &data_key_aad(org_id, &id), key.as_ref())?;
        Ok(DataKeyRow {
            org_id: org_id.to_string(),
            id,
            wrapped: Some(wrapped),
            master_key_id: master.id().to_string(),
            created_at: now.to_string(),
            retired_at: None,
            destroyed_at: None,
        })
    }

    /// An action's key if this node has it in memory.
    pub(crate) fn cached_action_key(&self, org_id: &str, action_id: &str) -> Option<Arc<Key>> {
        self.actions
            .get(&(org_id.to_string(), action_id.to_string()))
    }

    /// Forgets an action's key on this node (it was destroyed).
    pub(crate) fn forget_action(&self, org_id: &str, action_id: &str) {
        self.actions
            .remove(&(org_id.to_string(), action_id.to_string()));
    }

    /// Seals an event payload (`salt || canonical data`) under the organisation's active key;
    /// in clear when no master key is configured.
    pub(crate) fn seal_payload(
        &self,
        org: Option<&OrgKeys>,
        org_id: &str,
        commitment: &[u8; 32],
        salt: &[u8; SALT_LEN],
        canonical_data: &[u8],
    ) -> Result<String, StoreError> {
        let mut plain = Zeroizing::new(Vec::with_capacity(SALT_LEN + canonical_data.len()));
        plain.extend_from_slice(salt);
        plain.extend_from_slice(canonical_data);
        if self.master.is_none() {
            return Ok(format!(
                "{CLEAR}{}",
                URL_SAFE_NO_PAD.encode(plain.as_slice())
            ));
        }
        let (id, key) = active_key(org, org_id)?;
        seal_with_prefix(
            &[SEALED, id, "."],
            key,
            &payload_aad(org_id, commitment),
            &plain,
        )
    }

    /// Opens a stored event payload, checking it against the commitment its hashed event holds.
    pub(crate) fn open_payload(
        &self,
        org_id: &str,
        commitment: &[u8; 32],
        text: &str,
    ) -> Result<OpenedPayload, Unreadable> {
        let plain = if let Some(clear) = text.strip_prefix(CLEAR) {
            Zeroizing::new(URL_SAFE_NO_PAD.decode(clear).map_err(|_| {
                Unreadable::Withheld("the stored payload is not base64url".to_string())
            })?)
        } else {
            let (key_id, sealed) = sealed_parts(text).ok_or_else(|| {
                Unreadable::Withheld("the stored payload is in no known format".to_string())
            })?;
            let key = self.org_key(org_id, key_id)?;
            open(&key, &payload_aad(org_id, commitment), sealed).map_err(Unreadable::Withheld)?
        };
        if plain.len() < SALT_LEN {
            return Err(Unreadable::Withheld(
                "the stored payload is too short".to_string(),
            ));
        }
        let (salt, data) = plain.split_at(SALT_LEN);
        let salt: [u8; SALT_LEN] = salt.try_into().unwrap_or([0; SALT_LEN]);
        if &aaf_core::evidence::payload::commitment(&salt, data) != commitment {
            return Err(Unreadable::Withheld(
                "the stored payload does not match its commitment: it was modified".to_string(),
            ));
        }
        let data = String::from_utf8(data.to_vec())
            .map_err(|_| Unreadable::Withheld("the stored payload is not UTF-8".to_string()))?;
        Ok(OpenedPayload { salt, data })
    }

    fn org_key(&self, org_id: &str, key_id: &str) -> Result<Arc<Key>, Unreadable> {
        let org = self.fresh(org_id).ok_or(Unreadable::NotLoaded)?;
        match org.keys.get(key_id) {
            Some(KeySlot::Live(key)) => Ok(Arc::new(key.clone())),
            Some(KeySlot::Destroyed(at)) => Err(Unreadable::Withheld(format!(
                "its data key {key_id} was destroyed (crypto-shredded) on {at}"
            ))),
            Some(KeySlot::Unavailable(why)) => Err(Unreadable::Withheld(format!(
                "its data key {key_id} cannot be unwrapped: {why}"
            ))),
            // Perhaps made by another node since this one loaded the keys: load them again
            // (once: the load records the id as unknown if it is still missing).
            None => {
                match self.unknown.lock() {
                    Ok(mut unknown) => unknown,
                    Err(poisoned) => poisoned.into_inner(),
                }
                .entry(org_id.to_string())
                .or_default()
                .insert(key_id.to_string());
                Err(Unreadable::NotLoaded)
            }
        }
    }

    /// A new key for a new action: the key, and its wrapped form for the action's row (sealed
    /// under the organisation's active key). Kept in this node's cache.
    pub(crate) fn new_action_key(
        &self,
        org: Option<&OrgKeys>,
        org_id: &str,
        action_id: &str,
    ) -> Result<(Arc<Key>, String), StoreError> {
        let (id, org_key) = active_key(org, org_id)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(key.as_mut());
        let wrapped = seal_with_prefix(
            &[SEALED, id, "."],
            org_key,
            &action_key_aad(org_id, action_id),
            key.as_ref(),
        )?;
        let key = Arc::new(key);
        self.actions.insert(
            (org_id.to_string(), action_id.to_string()),
            Arc::clone(&key),
        );
        Ok((key, wrapped))
    }

    /// An action's key from its wrapped form (the action row's `data_key`), through the cache.
    pub(crate) fn action_key(
        &self,
        org_id: &str,
        action_id: &str,
        wrapped: Option<&str>,
    ) -> Result<Arc<Key>, Unreadable> {
        let cache_key = (org_id.to_string(), action_id.to_string());
        let Some(wrapped) = wrapped else {
            return Err(Unreadable::Withheld(
                "the action's data key was destroyed (crypto-shredded)".to_string(),
            ));
        };
        // The organisation's keys must be fresh even on a cache hit: reloading them is what
        // drops the cached action keys of a destroyed organisation key ([`Keyring::install`]).
        if self.fresh(org_id).is_none() {
            return Err(Unreadable::NotLoaded);
        }
        if let Some(key) = self.actions.get(&cache_key) {
            return Ok(key);
        }
        let (key_id, sealed) = sealed_parts(wrapped).ok_or_else(|| {
            Unreadable::Withheld("the action's data key is in no known format".to_string())
        })?;
        let org_key = self.org_key(org_id, key_id)?;
        let plain = open(&org_key, &action_key_aad(org_id, action_id), sealed)
            .map_err(Unreadable::Withheld)?;
        let key: [u8; KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Unreadable::Withheld("the action's data key is not 32 bytes".into()))?;
        let key = Arc::new(Zeroizing::new(key));
        self.actions.insert(cache_key, Arc::clone(&key));
        Ok(key)
    }

    /// Seals one JSON column of an action under the action's key.
    pub(crate) fn seal_action_column(
        key: &Key,
        org_id: &str,
        action_id: &str,
        column: &str,
        json: &str,
    ) -> Result<String, StoreError> {
        seal_with_prefix(
            &[ACTION_COLUMN_PREFIX],
            key,
            &column_aad(org_id, action_id, column),
            json.as_bytes(),
        )
    }

    /// Seals an action's `params` and `context` (JSON texts) together under the action's
    /// key: returns the texts of the two columns, the sealed pair and [`INPUTS_MARKER`].
    /// The plaintext is the length of `params` (4 bytes, little-endian), `params`, then
    /// `context`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] when `params` is longer than 4 GiB or sealing fails.
    pub(crate) fn seal_action_inputs(
        key: &Key,
        org_id: &str,
        action_id: &str,
        params: &str,
        context: &str,
    ) -> Result<(String, String), StoreError> {
        let len = u32::try_from(params.len())
            .map_err(|_| StoreError::Invalid("the action's params are too large".to_string()))?;
        let mut plain = Zeroizing::new(Vec::with_capacity(4 + params.len() + context.len()));
        plain.extend_from_slice(&len.to_le_bytes());
        plain.extend_from_slice(params.as_bytes());
        plain.extend_from_slice(context.as_bytes());
        let sealed = seal_with_prefix(
            &[INPUTS_PREFIX],
            key,
            &column_aad(org_id, action_id, "inputs"),
            &plain,
        )?;
        Ok((sealed, INPUTS_MARKER.to_string()))
    }

    /// Whether an action's `params` column holds its params and context sealed together.
    pub(crate) fn is_sealed_inputs(params: &str) -> bool {
        params.starts_with(INPUTS_PREFIX)
    }

    /// Opens an action's `params` and `context` sealed together
    /// ([`Keyring::seal_action_inputs`]): their JSON texts.
    pub(crate) fn open_action_inputs(
        key: &Key,
        org_id: &str,
        action_id: &str,
        params: &str,
    ) -> Result<(String, String), Unreadable> {
        let sealed = params.strip_prefix(INPUTS_PREFIX).ok_or_else(|| {
            Unreadable::Withheld("the action's params are in no known format".to_string())
        })?;
        let plain = open(key, &column_aad(org_id, action_id, "inputs"), sealed)
            .map_err(Unreadable::Withheld)?;
        let malformed = || Unreadable::Withheld("the action's sealed inputs are malformed".into());
        let (len, rest) = plain.split_first_chunk::<4>().ok_or_else(malformed)?;
        let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| malformed())?;
        if len > rest.len() {
            return Err(malformed());
        }
        let (params, context) = rest.split_at(len);
        let text = |bytes: &[u8]| {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| Unreadable::Withheld("the action's inputs are not UTF-8".into()))
        };
        Ok((text(params)?, text(context)?))
    }

    /// Opens one sealed JSON column of an action.
    pub(crate) fn open_action_column(
        key: &Key,
        org_id: &str,
        action_id: &str,
        column: &str,
        text: &str,
    ) -> Result<String, Unreadable> {
        let (_, sealed) = sealed_parts(text).ok_or_else(|| {
            Unreadable::Withheld(format!("the action's {column} is in no known format"))
        })?;
        let plain = open(key, &column_aad(org_id, action_id, column), sealed)
            .map_err(Unreadable::Withheld)?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| Unreadable::Withheld(format!("the action's {column} is not UTF-8")))
    }

    /// Seals a secret of the organisation (a webhook's signing secret) under its active key;
    /// as given when no master key is configured.
    pub(crate) fn seal_secret(
        &self,
        org: Option<&OrgKeys>,
        org_id: &str,
        owner: &str,
        secret: &str,
    ) -> Result<String, StoreError> {
        if self.master.is_none() {
            return Ok(secret.to_string());
        }
        let (id, key) = active_key(org, org_id)?;
        let sealed = seal(key, &secret_aad(org_id, owner), secret.as_bytes())?;
        Ok(format!("{SEALED}{id}.{sealed}"))
    }

    /// Opens a stored secret (a text that is not sealed is returned as it is: written before
    /// encryption was configured).
    pub(crate) fn open_secret(
        &self,
        org_id: &str,
        owner: &str,
        text: &str,
    ) -> Result<Zeroizing<String>, Unreadable> {
        let Some((key_id, sealed)) = sealed_parts(text) else {
            return Ok(Zeroizing::new(text.to_string()));
        };
        let key = self.org_key(org_id, key_id)?;
        let plain = open(&key, &secret_aad(org_id, owner), sealed).map_err(Unreadable::Withheld)?;
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| Unreadable::Withheld("the secret is not UTF-8".to_string()))
    }
}

fn active_key<'a>(
    org: Option<&'a OrgKeys>,
    org_id: &str,
) -> Result<(&'a str, &'a Key), StoreError> {
    org.and_then(OrgKeys::active).ok_or_else(|| {
        StoreError::Unavailable(format!(
            "organisation {org_id} has no active data key loaded: nothing can be sealed"
        ))
    })
}

/// Associated data: a label and the parts that bind a sealed value to its place, each
/// followed by a zero byte (ids never hold one).
fn aad(label: &str, parts: &[&[u8]]) -> Vec<u8> {
    let len = label.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(label.as_bytes());
    for part in parts {
        out.push(0);
        out.extend_from_slice(part);
    }
    out
}
fn data_key_aad(org_id: &str, key_id: &str) -> Vec<u8> {
    aad("aaf data key", &[org_id.as_bytes(), key_id.as_bytes()])
}
fn action_key_aad(org_id: &str, action_id: &str) -> Vec<u8> {
    aad("aaf action key", &[org_id.as_bytes(), action_id.as_bytes()])
}
fn column_aad(org_id: &str, action_id: &str, column: &str) -> Vec<u8> {
    aad(
        "aaf action column",
        &[org_id.as_bytes(), action_id.as_bytes(), column.as_bytes()],
    )
}
fn payload_aad(org_id: &str, commitment: &[u8; 32]) -> Vec<u8> {
    aad("aaf event payload", &[org_id.as_bytes(), commitment])
}
fn secret_aad(org_id: &str, owner: &str) -> Vec<u8> {
    aad("aaf secret", &[org_id.as_bytes(), owner.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring_with_org(org: &str) -> (Keyring, DataKeyRow) {
        let (master, _) = MasterKey::generate();
        let ring = Keyring::new(Some(master), Duration::from_secs(60));
        let row = ring.new_data_key(org, "2026-12-05T00:00:00Z").unwrap();
        ring.install(org, std::slice::from_ref(&row)).unwrap();
        (ring, row)
    }

    #[test]
    fn master_keys_parse_from_base64_and_name_their_errors() {
        let (key, text) = MasterKey::generate();
        assert_eq!(
            MasterKey::from_text(&format!(" {} \n", *text)).unwrap(),
            key
        );
        assert!(key.id().starts_with("mk-") && key.id().len() == 19);
        assert!(format!("{key:?}").contains(key.id()));
        assert!(!format!("{key:?}").contains(text.as_str()));
        assert!(MasterKey::from_text("!!").unwrap_err().contains("base64"));
        assert!(MasterKey::from_text("AAAA")
            .unwrap_err()
            .contains("32 bytes"));
    }

    #[test]
    fn payloads_seal_open_and_are_bound_to_their_commitment() {
        let (ring, _) = keyring_with_org("o1");
        let org = ring.org("o1");
        let salt = [3u8; SALT_LEN];
        let data = br#"{"card":"4111111111111111"}"#;
        let c = aaf_core::evidence::payload::commitment(&salt, data);
        let text = ring
            .seal_payload(org.as_deref(), "o1", &c, &salt, data)
            .unwrap();
        assert!(text.starts_with("enc1.dk-"));
        assert!(!text.contains("4111"));
        let opened = ring.open_payload("o1", &c, &text).unwrap();
        assert_eq!(opened.data.as_bytes(), data);
        assert_eq!(opened.salt, salt);
        // Under another commitment (moved to another event) or org, it does not open.
        let other = [0u8; 32];
        assert!(matches!(
            ring.open_payload("o1", &other, &text),
            Err(Unreadable::Withheld(_))
        ));
        assert_eq!(
            ring.open_payload("o2", &c, &text).err(),
            Some(Unreadable::NotLoaded)
        );
        // One changed character fails.
        let mut bad = text.clone().into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(ring
            .open_payload("o1", &c, std::str::from_utf8(&bad).unwrap())
            .is_err());
    }

    #[test]
    fn without_a_master_key_payloads_are_clear_and_still_checked() {
        let ring = Keyring::new(None, Duration::from_secs(60));
        let salt = [1u8; SALT_LEN];
        let c = aaf_core::evidence::payload::commitment(&salt, b"{}");
        let text = ring.seal_payload(None, "o1", &c, &salt, b"{}").unwrap();
        assert!(text.starts_with("clear1."));
        assert_eq!(ring.open_payload("o1", &c, &text).unwrap().data, "{}");
        assert!(ring.open_payload("o1", &[1; 32], &text).is_err());
    }

    #[test]
    fn destroyed_keys_withhold_what_they_sealed_and_action_keys_follow_their_org_key() {
        let (ring, row) = keyring_with_org("o1");
        let org = ring.org("o1");
        let (key, wrapped) = ring.new_action_key(org.as_deref(), "o1", "a1").unwrap();
        let col = Keyring::seal_action_column(&key, "o1", "a1", "params", r#"{"x":1}"#).unwrap();
        ring.forget_action("o1", "a1");
        let again = ring.action_key("o1", "a1", Some(&wrapped)).unwrap();
        assert_eq!(
            Keyring::open_action_column(&again, "o1", "a1", "params", &col).unwrap(),
            r#"{"x":1}"#
        );
        assert!(Keyring::open_action_column(&again, "o1", "a1", "context", &col).is_err());
        assert!(ring.action_key("o1", "a1", None).is_err());
        let secret = ring
            .seal_secret(org.as_deref(), "o1", "wh1", "s3cret")
            .unwrap();
        assert_eq!(
            ring.open_secret("o1", "wh1", &secret).unwrap().as_str(),
            "s3cret"
        );
        // Destroy the org key: the action key no longer unwraps, the secret no longer opens.
        let destroyed = DataKeyRow {
            wrapped: None,
            retired_at: Some("2026-12-06T00:00:00Z".into()),
            destroyed_at: Some("2026-12-06T00:00:00Z".into()),
            ..row
        };
        ring.install("o1", &[destroyed]).unwrap();
        ring.forget_action("o1", "a1");
        match ring.action_key("o1", "a1", Some(&wrapped)) {
            Err(Unreadable::Withheld(why)) => assert!(why.contains("destroyed"), "{why}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(ring.open_secret("o1", "wh1", &secret).is_err());
    }

    #[test]
    fn a_data_key_of_another_master_key_is_named() {
        let (ring, row) = keyring_with_org("o1");
        let (other, _) = MasterKey::generate();
        let ring2 = Keyring::new(Some(other), Duration::from_secs(60));
        let err = ring2.install("o1", &[row]).unwrap_err();
        assert!(err.to_string().contains("wrapped by master key"), "{err}");
        drop(ring);
    }
}
