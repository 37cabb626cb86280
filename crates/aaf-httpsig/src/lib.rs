//! RFC 9421 HTTP Message Signatures with Ed25519, and RFC 9530 `Content-Digest`, for AAF agents.
//!
//! An agent registered with an Ed25519 public key signs each request to AAF; the server
//! verifies. This crate has both halves and does no I/O:
//!
//! - [`Signer`] (client): computes `Content-Digest` (SHA-256 of the body) and signs
//!   `("@method" "@target-uri" "content-digest")` with `created`, `keyid`, `alg="ed25519"` and
//!   an optional `nonce`, under the label `sig1`.
//! - [`verify_request`] (server): parses `Signature-Input` and `Signature`, enforces a
//!   [`VerifyPolicy`] (required components, a `created` window of 300 s by default, `alg`,
//!   `keyid`), verifies the signature with the key the caller looks up, then checks
//!   `Content-Digest` against the body. It returns the `nonce`; the caller, which has the
//!   database, refuses a nonce it has seen.
//! - The pieces: [`content_digest`], [`verify_content_digest`], [`signature_base`],
//!   [`signature_params_value`], [`component_value`] and [`target_uri`].
//!
//! Structured fields (`Signature-Input`, `Signature`, `Content-Digest`) are parsed and
//! serialised with the `sfv` crate, as RFC 8941 (no Dates or Display Strings). Anything not
//! understood is refused.
//!
//! ```
//! use aaf_httpsig::{verify_request, Signer, VerifyPolicy};
//! use ed25519_dalek::SigningKey;
//! use http::{HeaderMap, Method};
//!
//! let signer = Signer::new("agent-1", SigningKey::from_bytes(&[7; 32]));
//! let body = br#"{"tool":"http_proxy","operation":"GET"}"#;
//! let url = "https://aaf.example.com/v1/actions";
//! let mut headers = HeaderMap::new();
//! signer.apply(&Method::POST, url, &mut headers, body, 1_700_000_000, Some("n-1")).unwrap();
//!
//! let key = signer.verifying_key();
//! let ok = verify_request(&Method::POST, url, &headers, body, &VerifyPolicy::new(1_700_000_010),
//!     |id| (id == "agent-1").then_some(key)).unwrap();
//! assert_eq!(ok.nonce.as_deref(), Some("n-1"));
//! ```

#![forbid(unsafe_code)]

mod base;
mod digest;
mod error;
mod sign;
mod verify;

pub use base::{
    component_value, signature_base, signature_params_value, target_uri, RequestParts,
    SignatureParam, DERIVED_COMPONENTS,
};
pub use digest::{content_digest, verify_content_digest};
pub use error::SigError;
pub use sign::{SignatureFields, SignedHeaders, Signer};
pub use verify::{
    verify_request, VerifiedSignature, VerifyPolicy, DEFAULT_MAX_SKEW_SECS, DEFAULT_WINDOW_SECS,
    MAX_NONCE_LEN,
};

/// The label [`Signer::sign`] uses.
pub const DEFAULT_LABEL: &str = "sig1";

/// The only `alg` value accepted (RFC 9421 §3.3.6).
pub const ALG_ED25519: &str = "ed25519";

/// The components [`Signer::sign`] covers and [`VerifyPolicy::new`] requires, in signed order.
pub const DEFAULT_COMPONENTS: [&str; 3] = ["@method", "@target-uri", "content-digest"];
