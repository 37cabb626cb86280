//! The one error type of the crate.

use thiserror::Error;

/// Why a request could not be signed or why its signature was refused.
///
/// Every variant names the header, parameter or component at fault. Verification fails closed:
/// anything the verifier does not understand is an error, never a pass.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SigError {
    /// A header the verifier needs is absent (`signature-input`, `signature`, or
    /// `content-digest` when it is covered).
    #[error("missing `{0}` header")]
    MissingHeader(&'static str),

    /// A header, parameter or input value does not parse or has the wrong shape
    /// (RFC 8941 structured field syntax, RFC 9421 §4.1/§4.2, RFC 9530 §2).
    #[error("malformed `{field}`: {reason}")]
    Malformed {
        /// The header, parameter or input at fault (`signature-input`, `@target-uri`, ...).
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The label asked for by [`crate::VerifyPolicy::label`] is not in both `Signature-Input`
    /// and `Signature` (RFC 9421 §4.3).
    #[error("signature label `{0}` is not present in both `signature-input` and `signature`")]
    LabelNotFound(String),

    /// No label is present in both `Signature-Input` and `Signature` (RFC 9421 §4.3).
    #[error("no signature label is present in both `signature-input` and `signature`")]
    NoCommonLabel,

    /// A component the policy requires is not among the covered components (RFC 9421 §3.2.1,
    /// step 5).
    #[error("required component `{0}` is not covered by the signature")]
    MissingComponent(String),

    /// A covered component cannot be computed from the request, e.g. an HTTP field that is
    /// absent (RFC 9421 §2.5: this MUST be an error).
    #[error("covered component `{0}` is not present in the request")]
    ComponentUnavailable(String),

    /// A covered component this crate does not implement: a derived component other than
    /// `@method`, `@target-uri`, `@authority`, `@scheme`, `@request-target`, `@path` and
    /// `@query`, or any component parameter (`;sf`, `;key`, `;bs`, `;req`, `;tr`, `;name`).
    #[error("unsupported component `{0}`")]
    UnsupportedComponent(String),

    /// A signature parameter this crate requires is absent (`created`, `keyid`, or `nonce` when
    /// [`crate::VerifyPolicy::require_nonce`] is set).
    #[error("signature parameter `{0}` is missing")]
    MissingParameter(&'static str),

    /// A signature parameter outside RFC 9421 §2.3's `created`, `expires`, `nonce`, `alg`,
    /// `keyid` and `tag`.
    #[error("unsupported signature parameter `{0}`")]
    UnsupportedParameter(String),

    /// The `alg` parameter names an algorithm other than `ed25519` (RFC 9421 §3.3.6).
    #[error("unsupported signature algorithm `{0}` (only `ed25519` is accepted)")]
    UnsupportedAlgorithm(String),

    /// `created` is older than the policy's window allows (RFC 9421 §3.2.1, step 7).
    #[error(
        "signature `created` {created} is older than the allowed window of {window_secs} s \
         (now {now})"
    )]
    TooOld {
        /// The `created` parameter, Unix seconds.
        created: i64,
        /// The verifier's clock, Unix seconds.
        now: i64,
        /// The window, seconds.
        window_secs: u64,
    },

    /// `created` lies further in the future than the allowed clock skew.
    #[error(
        "signature `created` {created} is in the future beyond the allowed skew of \
         {max_skew_secs} s (now {now})"
    )]
    FromFuture {
        /// The `created` parameter, Unix seconds.
        created: i64,
        /// The verifier's clock, Unix seconds.
        now: i64,
        /// The allowed skew, seconds.
        max_skew_secs: u64,
    },

    /// The `expires` parameter is in the past (RFC 9421 §3.2.1, step 7).
    #[error("signature expired: `expires` {expires} is before now ({now})")]
    Expired {
        /// The `expires` parameter, Unix seconds.
        expires: i64,
        /// The verifier's clock, Unix seconds.
        now: i64,
    },

    /// The key lookup knows no key for the `keyid` parameter.
    #[error("unknown `keyid` `{0}`")]
    UnknownKey(String),

    /// The Ed25519 signature does not verify over the signature base with the agent's key.
    #[error("signature does not verify")]
    BadSignature,

    /// The `content-digest` header does not match the body (RFC 9530 §2).
    #[error("`content-digest` does not match the body ({0})")]
    DigestMismatch(&'static str),

    /// The `content-digest` header has no `sha-256` or `sha-512` entry (RFC 9530 §5).
    #[error("`content-digest` has no supported algorithm (`sha-256` or `sha-512`)")]
    NoSupportedDigest,
}

impl SigError {
    pub(crate) fn malformed(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SigError::Malformed {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
