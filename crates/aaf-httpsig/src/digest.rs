//! RFC 9530 `Content-Digest`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sfv::{BareItem, Dictionary, ListEntry, Parser, Version};
use sha2::{Digest as _, Sha256, Sha512};

use crate::SigError;

/// The `Content-Digest` value for `body`: `sha-256=:<base64 of SHA-256(body)>:`.
///
/// A one-member RFC 8941 Dictionary whose value is a Byte Sequence (RFC 9530 §2; the algorithm
/// key `sha-256` is from RFC 9530 §5). The digest is over the message content as sent, i.e.
/// the exact body bytes after any content coding. An empty body has a digest too.
///
/// ```
/// assert_eq!(
///     aaf_httpsig::content_digest(br#"{"hello": "world"}"#),
///     "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
/// );
/// ```
pub fn content_digest(body: &[u8]) -> String {
    // RFC 8941 §4.1.8: a Byte Sequence serialises as ":" base64 ":" with padding.
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// Checks a `Content-Digest` header value against `body` (RFC 9530 §2).
///
/// `header_value` is the field value; several header lines are joined with `", "` before
/// (RFC 9110 §5.3). It must parse as an RFC 8941 Dictionary. Entries for `sha-256` and
/// `sha-512` must be Byte Sequences and every one of them must match `body` (RFC 9530 §6.7:
/// a recipient that validates several digests refuses when any fails). Other algorithms,
/// including the deprecated ones of RFC 9530 §5, are ignored.
///
/// # Errors
/// [`SigError::Malformed`] (field `content-digest`) when the value does not parse or a
/// supported entry is not a Byte Sequence; [`SigError::NoSupportedDigest`] when there is no
/// `sha-256` or `sha-512` entry; [`SigError::DigestMismatch`] naming the algorithm whose digest
/// differs.
pub fn verify_content_digest(header_value: &str, body: &[u8]) -> Result<(), SigError> {
    let dict: Dictionary = Parser::new(header_value)
        .with_version(Version::Rfc8941)
        .parse()
        .map_err(|e| SigError::malformed("content-digest", e.to_string()))?;

    let mut checked = 0usize;
    for (key, entry) in &dict {
        let (name, computed): (&'static str, Vec<u8>) = match key.as_str() {
            "sha-256" => ("sha-256", Sha256::digest(body).to_vec()),
            "sha-512" => ("sha-512", Sha512::digest(body).to_vec()),
            _ => continue,
        };
        let received = match entry {
            ListEntry::Item(item) => match &item.bare_item {
                BareItem::ByteSequence(bytes) => bytes,
                _ => {
                    return Err(SigError::malformed(
                        "content-digest",
                        format!("`{name}` is not a byte sequence"),
                    ))
                }
            },
            ListEntry::InnerList(_) => {
                return Err(SigError::malformed(
                    "content-digest",
                    format!("`{name}` is an inner list"),
                ))
            }
        };
        if received.as_slice() != computed.as_slice() {
            return Err(SigError::DigestMismatch(name));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(SigError::NoSupportedDigest);
    }
    Ok(())
}
