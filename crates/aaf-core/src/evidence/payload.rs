//! Payload commitments: how an audit event's `data` can be encrypted, shredded or removed by
//! retention while the chain, the Merkle tree and every proof still verify without it
//! (issue 18, sections 3 and 4).
//!
//! Events written by AAF since the evidence format 2 do not hash their `data` directly. The
//! hashed event (the object whose RFC 8785 form the chain hash and the Merkle leaf cover,
//! [`crate::audit::canonical_event`]) holds in its place the *committed data*
//!
//! ```text
//! {"payload_sha256": "<64 lowercase hex>"}
//! ```
//!
//! where the hex is the *commitment* `SHA-256(salt || JCS(data))`: the 16-byte random `salt`
//! followed by the RFC 8785 canonical JSON of the real `data`. The payload (salt and data)
//! is stored beside the event, encrypted under a data key, and can be removed (retention) or
//! made unreadable (crypto-shredding) without touching anything hashed.
//!
//! The salt makes the commitment *hiding*: without it, a commitment to a low-entropy value
//! (an amount, a card number, a yes/no) could be confirmed by hashing guesses long after the
//! payload itself was shredded. This is the salted-digest construction of SD-JWT's
//! disclosures (RFC 9901: a salt of at least 128 bits per disclosed value, so that the digest
//! does not reveal its preimage), applied to the whole `data` object.
//!
//! A reader holding the payload checks it with [`verify`]: its commitment must be the one the
//! hashed event holds.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Length of a payload's salt in bytes (128 bits, the minimum RFC 9901 recommends for SD-JWT
/// salts).
pub const SALT_LEN: usize = 16;

/// The one member of the committed data: `{"payload_sha256": "<hex>"}`.
pub const COMMITMENT_MEMBER: &str = "payload_sha256";

/// `SHA-256(salt || canonical_data)`, where `canonical_data` is the RFC 8785 canonical JSON of
/// the event's data.
pub fn commitment(salt: &[u8; SALT_LEN], canonical_data: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(canonical_data);
    hasher.finalize().into()
}

/// The committed data in its RFC 8785 canonical form (one member, so exactly
/// `{"payload_sha256":"<64 lowercase hex>"}`): what is stored in the event's `data` column
/// and hashed.
pub fn committed_data_text(commitment: &[u8; 32]) -> String {
    let mut out = String::with_capacity(COMMITMENT_MEMBER.len() + 70);
    out.push_str("{\"");
    out.push_str(COMMITMENT_MEMBER);
    out.push_str("\":\"");
    out.push_str(&crate::audit::hex32::encode(commitment));
    out.push_str("\"}");
    out
}

/// The committed data as a JSON value (see [`committed_data_text`]).
pub fn committed_data(commitment: &[u8; 32]) -> serde_json::Value {
    serde_json::json!({ COMMITMENT_MEMBER: hex::encode(commitment) })
}

/// The commitment a committed data text holds, or `None` when the text is not exactly
/// [`committed_data_text`] of some commitment (an event of the first format, whose `data` is
/// hashed directly).
pub fn commitment_of(data_text: &str) -> Option<[u8; 32]> {
    let hex_part = data_text
        .strip_prefix("{\"payload_sha256\":\"")?
        .strip_suffix("\"}")?;
    if hex_part.len() != 64 || hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    Some(out)
}

/// Why a payload does not match its commitment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The salt is not `2 * SALT_LEN` hex characters.
    #[error("the payload salt is not {SALT_LEN} bytes of hex")]
    BadSalt,
    /// The data has no RFC 8785 canonical form.
    #[error("the payload data has no canonical form: {0}")]
    Canonical(String),
    /// The commitment of salt and data is another.
    #[error("the payload does not match its commitment (computed {computed}, committed {committed}): the payload was modified")]
    Mismatch {
        /// Hex of the commitment computed from salt and data.
        computed: String,
        /// Hex of the commitment the hashed event holds.
        committed: String,
    },
}

/// Checks that `data`, salted with `salt_hex`, is what `committed` commits to.
///
/// # Errors
///
/// [`PayloadError`] naming what does not hold.
pub fn verify(
    committed: &[u8; 32],
    salt_hex: &str,
    data: &serde_json::Value,
) -> Result<(), PayloadError> {
    let mut salt = [0u8; SALT_LEN];
    hex::decode_to_slice(salt_hex, &mut salt).map_err(|_| PayloadError::BadSalt)?;
    let canonical = crate::canonical::to_canonical_json(data)
        .map_err(|e| PayloadError::Canonical(e.to_string()))?;
    let computed = commitment(&salt, &canonical);
    if &computed != committed {
        return Err(PayloadError::Mismatch {
            computed: hex::encode(computed),
            committed: hex::encode(committed),
        });
    }
    Ok(())
}

/// The payload part of an event of format 2, as readers and exports show it beside the
/// event's `data` (which then holds the payload's data, or `null` when it is withheld).
///
/// JSON shape: `{"sha256": "<hex commitment>", "salt": "<32 hex>" | null, "withheld": "..." | null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The commitment the hashed event holds (`SHA-256(salt || JCS(data))`).
    #[serde(with = "crate::audit::hex32")]
    pub sha256: [u8; 32],
    /// The salt as 32 lowercase hex characters, when the payload is readable.
    #[serde(default)]
    pub salt: Option<String>,
    /// Why the payload is not given, when it is not: e.g. `"payload removed by retention on
    /// 2027-03-01 under rule data_access"`, or `"the data key of this action was destroyed
    /// (crypto-shredded) on ..."`. `None` when the payload is readable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_committed_data_is_canonical_and_parses_back() {
        let c = commitment(&[7; SALT_LEN], br#"{"a":1}"#);
        let text = committed_data_text(&c);
        assert_eq!(
            crate::canonical::to_canonical_json(&committed_data(&c)).unwrap(),
            text.as_bytes()
        );
        assert_eq!(commitment_of(&text), Some(c));
        assert_eq!(commitment_of(&text.to_uppercase()), None);
        assert_eq!(commitment_of(r#"{"payload_sha256":"00"}"#), None);
        assert_eq!(commitment_of(r#"{"a":1}"#), None);
    }

    #[test]
    fn a_payload_verifies_only_with_its_salt_and_data() {
        let salt = [9u8; SALT_LEN];
        let data = json!({"card": "4111 1111 1111 1111", "amount": 12});
        let c = commitment(&salt, &crate::canonical::to_canonical_json(&data).unwrap());
        verify(&c, &hex::encode(salt), &data).unwrap();
        assert!(matches!(
            verify(&c, &hex::encode([8u8; SALT_LEN]), &data),
            Err(PayloadError::Mismatch { .. })
        ));
        assert!(matches!(
            verify(&c, &hex::encode(salt), &json!({"card": "x", "amount": 12})),
            Err(PayloadError::Mismatch { .. })
        ));
        assert_eq!(verify(&c, "zz", &data), Err(PayloadError::BadSalt));
    }
}
