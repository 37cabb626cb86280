//! Bearer tokens and agent API keys: generation, hashing and comparison.
//!
//! A token is `<prefix>_<43 characters>`: 32 random bytes (256 bits) from the operating
//! system's CSPRNG, base64url without padding. With that much entropy a fast hash is the right
//! one to store (NIST SP 800-63B §5.1.1.2 asks for a salted slow hash only for low-entropy
//! secrets such as passwords), so only the hex SHA-256 of the whole token is kept; the token
//! itself is shown once.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Prefix of organisation (human) bearer tokens.
pub const ADMIN_TOKEN_PREFIX: &str = "aaf_at";
/// Prefix of agent API keys.
pub const AGENT_KEY_PREFIX: &str = "aaf_ak";
/// How many characters of a token are kept in clear to tell keys apart (prefix + 8 characters).
const VISIBLE_CHARS: usize = 8;

/// Generates a new token `<prefix>_<base64url(32 random bytes)>`.
pub fn generate_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The stored form of a token: lowercase hex SHA-256 (64 characters) of its UTF-8 bytes.
pub fn hash_token(token: &str) -> String {
    crate::audit::hex32::encode(&Sha256::digest(token.as_bytes()))
}

/// The part of a token that may be shown again: its prefix and first 8 secret characters.
///
/// The secret part is base64url, whose alphabet includes `_`, so the prefix is recognised by
/// name (`aaf_at_`, `aaf_ak_`), not by searching for an underscore. A token of another form
/// shows its first 8 characters.
pub fn visible_prefix(token: &str) -> String {
    let skip = [ADMIN_TOKEN_PREFIX, AGENT_KEY_PREFIX]
        .iter()
        .find(|p| {
            token
                .strip_prefix(**p)
                .is_some_and(|rest| rest.starts_with('_'))
        })
        .map_or(0, |p| p.len() + 1);
    token.chars().take(skip + VISIBLE_CHARS).collect()
}

/// A secret string whose `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value; call only where it is really needed.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hashed() {
        let a = generate_token(AGENT_KEY_PREFIX);
        let b = generate_token(AGENT_KEY_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("aaf_ak_"));
        assert_eq!(a.len(), "aaf_ak_".len() + 43);
        assert_eq!(hash_token(&a).len(), 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
        assert_eq!(visible_prefix(&a).len(), "aaf_ak_".len() + 8);
        assert!(a.starts_with(&visible_prefix(&a)));
    }

    #[test]
    fn visible_prefix_ignores_underscores_in_the_secret() {
        assert_eq!(visible_prefix("aaf_ak_ab_cd_efgh_ijkl"), "aaf_ak_ab_cd_ef");
        assert_eq!(visible_prefix("aaf_at__________xyz"), "aaf_at_________");
        assert_eq!(visible_prefix("other-token-value"), "other-to");
        for _ in 0..200 {
            let t = generate_token(AGENT_KEY_PREFIX);
            assert_eq!(visible_prefix(&t).len(), "aaf_ak_".len() + 8, "{t}");
        }
    }

    #[test]
    fn secret_debug_hides_value() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
