//! Secrets AAF presents to upstreams on the agents' behalf (docs/credentials.md): the
//! operator, not the agent, holds the keys.
//!
//! A secret has a name and a source, an environment variable of AAF's or a file
//! (`[secrets] stripe = { env = "STRIPE_KEY" }`, `github = { file = "/run/secrets/gh" }`),
//! read when it is used, so that a rotated file is picked up without a restart. Templates
//! name them as `${secret:NAME}` (in credential headers of the HTTP connector and in the
//! headers and environment of MCP upstreams); [`expand`] substitutes them. Every source sits
//! behind the [`SecretStore`] trait, so that Vault or a KMS can plug in later.
//!
//! Secrets never enter the audit chain, API views, logs or webhooks: what is stored and shown
//! is the template; [`Masker`] replaces any secret an upstream echoes back in its answer.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

/// The longest secret, in bytes (a file that is larger is refused).
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The shortest secret, in bytes: masking shorter values would mask ordinary text.
pub const MIN_SECRET_BYTES: usize = 8;

/// What replaces a secret found in an upstream's answer.
pub fn mask_of(name: &str) -> String {
    format!("[secret:{name}]")
}

/// Where one secret comes from: exactly one of `env` and `file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable of AAF's process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// A file holding the secret (one trailing newline is dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The organisations (ids; `*` for every one) whose admins may refer to it in the MCP
    /// servers they register over the API. Default: none (only this file's own settings may
    /// use it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orgs: Vec<String>,
}

/// Why a secret could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No secret of this name is configured.
    #[error("no secret {0:?} is configured ([secrets])")]
    Unknown(String),
    /// The source could not be read or holds no usable secret.
    #[error("the secret {name:?} cannot be read: {reason}")]
    Unreadable {
        /// The secret.
        name: String,
        /// What went wrong (never the value).
        reason: String,
    },
    /// A template is malformed (an unterminated `${secret:`, an empty name).
    #[error("bad secret reference in {0:?}: write ${{secret:NAME}}")]
    BadTemplate(String),
}

/// A secret's value: zeroed when dropped, never printed.
#[derive(Clone)]
pub struct Secret {
    name: String,
    value: Arc<Zeroizing<String>>,
}

impl Secret {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its value.
    pub fn expose(&self) -> &str {
        self.value.as_str()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?}, [redacted])", self.name)
    }
}

/// Where secrets come from. The configured store ([`ConfiguredSecrets`]) reads environment
/// variables and files; another store (Vault, a KMS) implements this trait.
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// The secret `name`.
    ///
    /// # Errors
    ///
    /// [`SecretError::Unknown`] or [`SecretError::Unreadable`].
    fn get(&self, name: &str) -> Result<Secret, SecretError>;

    /// Whether a secret of this name is configured (without reading it).
    fn has(&self, name: &str) -> bool;

    /// Whether the organisation's admins may refer to the secret in what they configure
    /// over the API.
    fn usable_by(&self, name: &str, org_id: &str) -> bool;
}

/// The secrets of `[secrets]`.
#[derive(Debug, Clone, Default)]
pub struct ConfiguredSecrets {
    sources: BTreeMap<String, SecretSource>,
}

impl ConfiguredSecrets {
    /// The store of `sources` (checked by [`validate`]).
    pub fn new(sources: BTreeMap<String, SecretSource>) -> ConfiguredSecrets {
        ConfiguredSecrets { sources }
    }
}

impl SecretStore for ConfiguredSecrets {
    fn get(&self, name: &str) -> Result<Secret, SecretError> {
        let source = self
            .sources
            .get(name)
            .ok_or_else(|| SecretError::Unknown(name.to_string()))?;
        let unreadable = |reason: String| SecretError::Unreadable {
            name: name.to_string(),
            reason,
        };
        let value = match (&source.env, &source.file) {
            (Some(var), None) => std::env::var(var)
                .map_err(|_| unreadable(format!("the environment variable {var} is not set")))?,
            (None, Some(path)) => {
                let meta = std::fs::metadata(path)
                    .map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
                if meta.len() > MAX_SECRET_BYTES as u64 {
                    return Err(unreadable(format!(
                        "{} is larger than {MAX_SECRET_BYTES} bytes",
                        path.display()
                    )));
                }
                let mut text = std::fs::read_to_string(path)
                    .map_err(|e| unreadable(format!("{}: {e}", path.display())))?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
            _ => return Err(unreadable("it needs exactly one of env and file".into())),
        };
        let value = Zeroizing::new(value);
        if value.len() < MIN_SECRET_BYTES {
            return Err(unreadable(format!(
                "it is shorter than {MIN_SECRET_BYTES} bytes"
            )));
        }
        if value.bytes().any(|b| b.is_ascii_control()) {
            return Err(unreadable("it holds control characters".into()));
        }
        Ok(Secret {
            name: name.to_string(),
            value: Arc::new(value),
        })
    }

    fn has(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    fn usable_by(&self, name: &str, org_id: &str) -> bool {
        self.sources
            .get(name)
            .is_some_and(|s| s.orgs.iter().any(|o| o == org_id || o == "*"))
    }
}

/// Checks `[secrets]`: names are 1 to 64 of `A-Za-z0-9_-.`, each has exactly one source.
///
/// # Errors
///
/// A message naming the key.
pub fn validate(sources: &BTreeMap<String, SecretSource>) -> Result<(), String> {
    for (name, source) in sources {
        if !valid_name(name) {
            return Err(format!(
                "secrets.{name}: a secret's name is 1 to 64 of A-Z, a-z, 0-9, _, - and ."
            ));
        }
        match (&source.env, &source.file) {
            (Some(var), None) if !var.is_empty() => {}
            (None, Some(path)) if !path.as_os_str().is_empty() => {}
            _ => return Err(format!("secrets.{name} needs exactly one of env and file")),
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

const OPEN: &str = "${secret:";

/// The secret names a template refers to, in order.
///
/// # Errors
///
/// [`SecretError::BadTemplate`] for an unterminated reference or a bad name.
pub fn references(template: &str) -> Result<Vec<String>, SecretError> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find('}')
            .ok_or_else(|| SecretError::BadTemplate(template.to_string()))?;
        let name = &after[..end];
        if !valid_name(name) {
            return Err(SecretError::BadTemplate(template.to_string()));
        }
        names.push(name.to_string());
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// `template` with every `${secret:NAME}` replaced by the secret's value, and the secrets it
/// used (for [`Masker`]). Text outside references is kept as it is.
///
/// # Errors
///
/// [`SecretError`] for a bad reference or a secret that cannot be had.
pub fn expand(
    template: &str,
    store: &dyn SecretStore,
) -> Result<(Zeroizing<String>, Vec<Secret>), SecretError> {
    let mut out = Zeroizing::new(String::with_capacity(template.len()));
    let mut used = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find('}')
            .ok_or_else(|| SecretError::BadTemplate(template.to_string()))?;
        let name = &after[..end];
        if !valid_name(name) {
            return Err(SecretError::BadTemplate(template.to_string()));
        }
        let secret = store.get(name)?;
        out.push_str(secret.expose());
        used.push(secret);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, used))
}

/// Replaces the values of some secrets wherever they appear in text or JSON (an upstream
/// that echoes a credential back must not hand it to the agent).
#[derive(Debug, Clone, Default)]
pub struct Masker {
    secrets: Vec<Secret>,
}

impl Masker {
    /// A masker of `secrets`.
    pub fn new(secrets: Vec<Secret>) -> Masker {
        Masker { secrets }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with each secret replaced by `[secret:NAME]`; `None` when it holds none.
    pub fn mask_str(&self, text: &str) -> Option<String> {
        let mut masked: Option<String> = None;
        for secret in &self.secrets {
            let current = masked.as_deref().unwrap_or(text);
            if current.contains(secret.expose()) {
                masked = Some(current.replace(secret.expose(), &mask_of(secret.name())));
            }
        }
        masked
    }

    /// Masks every string (and object key) of `value`, in place; whether anything was
    /// masked.
    pub fn mask_json(&self, value: &mut Value) -> bool {
        if self.secrets.is_empty() {
            return false;
        }
        match value {
            Value::String(s) => match self.mask_str(s) {
                Some(m) => {
                    *s = m;
                    true
                }
                None => false,
            },
            Value::Array(items) => {
                // Every item, not only up to the first masked one.
                let mut any = false;
                for item in items.iter_mut() {
                    any |= self.mask_json(item);
                }
                any
            }
            Value::Object(map) => {
                let mut any = false;
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    any |= self.mask_json(&mut v);
                    let key = match self.mask_str(&key) {
                        Some(k) => {
                            any = true;
                            k
                        }
                        None => key,
                    };
                    map.insert(key, v);
                }
                any
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store(dir: &tempfile::TempDir) -> ConfiguredSecrets {
        let path = dir.path().join("gh");
        std::fs::write(&path, "ghp_filesecret123\n").unwrap();
        let mut sources = BTreeMap::new();
        sources.insert(
            "gh".to_string(),
            SecretSource {
                env: None,
                file: Some(path),
                orgs: vec!["org_a".into()],
            },
        );
        sources.insert(
            "short".to_string(),
            SecretSource {
                env: None,
                file: Some(dir.path().join("short")),
                orgs: Vec::new(),
            },
        );
        std::fs::write(dir.path().join("short"), "abc").unwrap();
        sources.insert(
            "unset".to_string(),
            SecretSource {
                env: Some("AAF_TEST_SECRET_THAT_IS_NOT_SET".into()),
                file: None,
                orgs: Vec::new(),
            },
        );
        validate(&sources).unwrap();
        ConfiguredSecrets::new(sources)
    }

    #[test]
    fn templates_expand_and_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let (out, used) = expand("Bearer ${secret:gh}", &store).unwrap();
        assert_eq!(out.as_str(), "Bearer ghp_filesecret123");
        assert_eq!(used.len(), 1);
        assert_eq!(format!("{:?}", used[0]), "Secret(\"gh\", [redacted])");
        assert_eq!(expand("plain", &store).unwrap().0.as_str(), "plain");
        assert_eq!(
            expand("${secret:nope}", &store).unwrap_err(),
            SecretError::Unknown("nope".into())
        );
        assert!(matches!(
            expand("${secret:short}", &store),
            Err(SecretError::Unreadable { .. })
        ));
        assert!(matches!(
            expand("${secret:unset}", &store),
            Err(SecretError::Unreadable { .. })
        ));
        for bad in ["${secret:gh", "${secret:}", "${secret:a b}"] {
            assert!(
                matches!(expand(bad, &store), Err(SecretError::BadTemplate(_))),
                "{bad}"
            );
        }
        assert!(store.usable_by("gh", "org_a") && !store.usable_by("gh", "org_b"));
        assert!(!store.usable_by("nope", "org_a"));
        assert_eq!(
            references("x ${secret:a} ${secret:b.c}").unwrap(),
            ["a", "b.c"]
        );
    }

    #[test]
    fn echoed_secrets_are_masked() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let masker = Masker::new(vec![store.get("gh").unwrap()]);
        let mut body = json!({"headers": {"authorization": "Bearer ghp_filesecret123"},
            "list": ["ghp_filesecret123", 1], "ghp_filesecret123": true, "other": "fine"});
        assert!(masker.mask_json(&mut body));
        assert_eq!(
            body,
            json!({"headers": {"authorization": "Bearer [secret:gh]"},
                "list": ["[secret:gh]", 1], "[secret:gh]": true, "other": "fine"})
        );
        assert!(!masker.mask_json(&mut json!({"a": "clean"})));
    }

    #[test]
    fn bad_configuration_is_named() {
        let mut sources = BTreeMap::new();
        sources.insert(
            "both".to_string(),
            SecretSource {
                env: Some("X".into()),
                file: Some("/x".into()),
                orgs: Vec::new(),
            },
        );
        assert!(validate(&sources).unwrap_err().contains("secrets.both"));
        let mut sources = BTreeMap::new();
        sources.insert(
            "bad name".to_string(),
            SecretSource {
                env: Some("X".into()),
                file: None,
                orgs: Vec::new(),
            },
        );
        assert!(validate(&sources).unwrap_err().contains("bad name"));
    }
}
