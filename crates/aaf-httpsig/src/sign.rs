//! The client helper: signs requests the way [`crate::verify_request`] expects.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use http::header::HeaderValue;
use http::{HeaderMap, Method};
use sfv::{DictSerializer, KeyRef};

use crate::base::{signature_base, signature_params_value, RequestParts, SignatureParam};
use crate::{content_digest, SigError, ALG_ED25519, DEFAULT_COMPONENTS, DEFAULT_LABEL};

/// The three header values [`Signer::sign`] produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `Content-Digest`: `sha-256=:<base64>:` (RFC 9530 §2).
    pub content_digest: String,
    /// `Signature-Input`: `sig1=("@method" "@target-uri" "content-digest");created=...`
    /// (RFC 9421 §4.1).
    pub signature_input: String,
    /// `Signature`: `sig1=:<base64 of the 64-byte Ed25519 signature>:` (RFC 9421 §4.2).
    pub signature: String,
}

/// `Signature-Input` and `Signature` for one label, with the signature base they sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFields {
    /// The `Signature-Input` dictionary member, `label=(...);params`.
    pub signature_input: String,
    /// The `Signature` dictionary member, `label=:base64:`.
    pub signature: String,
    /// The signature base that was signed (RFC 9421 §2.5), for debugging and tests.
    pub signature_base: String,
}

/// Signs requests with an agent's Ed25519 key (RFC 9421 §3.1, algorithm `ed25519` of §3.3.6).
///
/// `key_id` is sent as the `keyid` parameter; AAF looks the key up by it. `Debug` shows the key
/// id and the public key, never the private key.
#[derive(Clone)]
pub struct Signer {
    /// The `keyid` parameter value (printable ASCII).
    pub key_id: String,
    /// The agent's private key.
    pub key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("public_key", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer for `key_id` with `key`.
    pub fn new(key_id: impl Into<String>, key: SigningKey) -> Self {
        Signer {
            key_id: key_id.into(),
            key,
        }
    }

    /// The public key that verifies this signer's signatures.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as registered with AAF: standard base64 (with padding) of the 32 raw
    /// key bytes (RFC 8032 §5.1.5 encoding).
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.key.verifying_key().as_bytes())
    }

    /// Signs a request the way AAF requires.
    ///
    /// Computes `Content-Digest` over `body` (SHA-256, RFC 9530) and signs, under the label
    /// `sig1`, the components `("@method" "@target-uri" "content-digest")` with the parameters
    /// `created` (Unix seconds), `keyid`, `alg="ed25519"` and, when given, `nonce`, in that
    /// order (RFC 9421 §2.3). `target_uri` is the absolute URL the request is sent to, with a
    /// lowercase host and no default port (see [`crate::target_uri`]). `headers` are the
    /// request's other headers; any `Content-Digest` among them is replaced by the computed one.
    ///
    /// Send a fresh random `nonce` with every request: the server refuses a nonce it has seen.
    ///
    /// # Errors
    /// [`SigError::Malformed`] when `target_uri` is not an absolute http(s) URI, or `key_id` or
    /// `nonce` is not a printable-ASCII RFC 8941 String.
    pub fn sign(
        &self,
        method: &Method,
        target_uri: &str,
        headers: &HeaderMap,
        body: &[u8],
        created: i64,
        nonce: Option<&str>,
    ) -> Result<SignedHeaders, SigError> {
        let digest = content_digest(body);
        let mut with_digest = headers.clone();
        let digest_value = HeaderValue::from_str(&digest)
            .map_err(|e| SigError::malformed("content-digest", e.to_string()))?;
        with_digest.insert(
            http::HeaderName::from_static("content-digest"),
            digest_value,
        );

        let mut params = vec![
            SignatureParam::Created(created),
            SignatureParam::KeyId(self.key_id.clone()),
            SignatureParam::Alg(ALG_ED25519.to_owned()),
        ];
        if let Some(n) = nonce {
            params.push(SignatureParam::Nonce(n.to_owned()));
        }
        let request = RequestParts {
            method,
            target_uri,
            headers: &with_digest,
        };
        let fields = self.sign_components(DEFAULT_LABEL, &request, &DEFAULT_COMPONENTS, &params)?;
        Ok(SignedHeaders {
            content_digest: digest,
            signature_input: fields.signature_input,
            signature: fields.signature,
        })
    }

    /// [`Signer::sign`], then sets `Content-Digest`, `Signature-Input` and `Signature` in
    /// `headers` (replacing any earlier values). The body must then be sent byte for byte as
    /// given.
    ///
    /// # Errors
    /// As [`Signer::sign`].
    pub fn apply(
        &self,
        method: &Method,
        target_uri: &str,
        headers: &mut HeaderMap,
        body: &[u8],
        created: i64,
        nonce: Option<&str>,
    ) -> Result<(), SigError> {
        let signed = self.sign(method, target_uri, headers, body, created, nonce)?;
        for (name, value) in [
            ("content-digest", signed.content_digest),
            ("signature-input", signed.signature_input),
            ("signature", signed.signature),
        ] {
            let value = HeaderValue::from_str(&value)
                .map_err(|e| SigError::malformed(name, e.to_string()))?;
            headers.insert(http::HeaderName::from_static(name), value);
        }
        Ok(())
    }

    /// Signs any covered components with any parameters under `label` (RFC 9421 §3.1): the
    /// general form behind [`Signer::sign`]. The parameters are used exactly as given; nothing
    /// is added (no `keyid` or `alg` unless listed).
    ///
    /// # Errors
    /// [`SigError::Malformed`] for a label that is not an RFC 8941 key (lowercase letters,
    /// digits, `_ - . *`), and everything [`crate::signature_base`] refuses.
    pub fn sign_components<S: AsRef<str>>(
        &self,
        label: &str,
        request: &RequestParts<'_>,
        covered: &[S],
        params: &[SignatureParam],
    ) -> Result<SignatureFields, SigError> {
        let label_key = KeyRef::from_str(label)
            .map_err(|e| SigError::malformed("signature label", e.to_string()))?;
        let base = signature_base(request, covered, params)?;
        let signature = self.key.sign(base.as_bytes());

        let input = format!("{label}={}", signature_params_value(covered, params)?);
        let mut ser = DictSerializer::new();
        let _ = ser.bare_item(label_key, &signature.to_bytes()[..]);
        let signature_header = ser
            .finish()
            .ok_or_else(|| SigError::malformed("signature", "empty serialisation"))?;
        Ok(SignatureFields {
            signature_input: input,
            signature: signature_header,
            signature_base: base,
        })
    }
}
