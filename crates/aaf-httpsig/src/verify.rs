//! The server side: verifies a request's signature (RFC 9421 §3.2).

use ed25519_dalek::{Signature, VerifyingKey};
use http::{HeaderMap, Method};
use sfv::{BareItem, Dictionary, InnerList, ListEntry, Parser, Version};

use crate::base::{check_component_name, signature_base, RequestParts, SignatureParam};
use crate::{verify_content_digest, SigError, ALG_ED25519, DEFAULT_COMPONENTS};

/// The default acceptance window for `created`: 300 seconds.
pub const DEFAULT_WINDOW_SECS: u64 = 300;

/// The default allowance for a `created` in the future (clock skew): 60 seconds.
pub const DEFAULT_MAX_SKEW_SECS: u64 = 60;

/// The longest `nonce` accepted, in bytes.
pub const MAX_NONCE_LEN: usize = 256;

/// What [`verify_request`] demands of a signature.
///
/// A signature is accepted only when
/// `now - window_secs <= created <= now + max_skew_secs` (RFC 9421 §3.2.1, step 7, where the
/// window is the verifier's policy) and, if `expires` is present, `now <= expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// The verifier's clock, Unix seconds.
    pub now: i64,
    /// How old `created` may be, seconds. Default [`DEFAULT_WINDOW_SECS`] (300).
    pub window_secs: u64,
    /// How far in the future `created` may be, seconds. Default [`DEFAULT_MAX_SKEW_SECS`] (60).
    pub max_skew_secs: u64,
    /// Components that must be covered. Default `["@method", "@target-uri", "content-digest"]`.
    pub required_components: Vec<String>,
    /// The label to verify; `None` takes the first label of `Signature-Input` that `Signature`
    /// also has (RFC 9421 §3.2, step 1).
    pub label: Option<String>,
    /// Refuse signatures without a `nonce` parameter. Default `false`.
    pub require_nonce: bool,
}

impl VerifyPolicy {
    /// The default policy at time `now` (Unix seconds).
    pub fn new(now: i64) -> Self {
        VerifyPolicy {
            now,
            window_secs: DEFAULT_WINDOW_SECS,
            max_skew_secs: DEFAULT_MAX_SKEW_SECS,
            required_components: DEFAULT_COMPONENTS.iter().map(|c| (*c).to_owned()).collect(),
            label: None,
            require_nonce: false,
        }
    }
}

/// What a verified signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The `keyid` parameter, whose key verified the signature.
    pub key_id: String,
    /// The `created` parameter, Unix seconds.
    pub created: i64,
    /// The `expires` parameter, if any, Unix seconds.
    pub expires: Option<i64>,
    /// The `nonce` parameter, if any. **The caller must refuse a nonce it has already
    /// accepted** for the same key, and remember each for at least
    /// `window_secs + max_skew_secs` after accepting it.
    pub nonce: Option<String>,
    /// The label that was verified.
    pub label: String,
    /// The covered components, in signed order.
    pub covered: Vec<String>,
}

/// All field lines of `name` joined with `", "` (RFC 9110 §5.3), or `None` when absent.
fn joined_header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, SigError> {
    let mut parts = Vec::new();
    for value in headers.get_all(name) {
        let text = value
            .to_str()
            .map_err(|_| SigError::malformed(name, "not visible ASCII"))?;
        parts.push(text);
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(parts.join(", ")))
}

fn parse_dictionary(headers: &HeaderMap, name: &'static str) -> Result<Dictionary, SigError> {
    let value = joined_header(headers, name)?.ok_or(SigError::MissingHeader(name))?;
    Parser::new(&value)
        .with_version(Version::Rfc8941)
        .parse()
        .map_err(|e| SigError::malformed(name, e.to_string()))
}

fn string_param(name: &'static str, value: &BareItem) -> Result<String, SigError> {
    match value {
        BareItem::String(s) => Ok(s.as_str().to_owned()),
        _ => Err(SigError::malformed(name, "must be a string")),
    }
}

fn integer_param(name: &'static str, value: &BareItem) -> Result<i64, SigError> {
    match value {
        BareItem::Integer(i) => Ok(i64::from(*i)),
        _ => Err(SigError::malformed(name, "must be an integer")),
    }
}

/// The covered component names of an inner list: Strings without parameters.
fn covered_components(list: &InnerList) -> Result<Vec<String>, SigError> {
    let mut covered = Vec::with_capacity(list.items.len());
    for item in &list.items {
        let name = match &item.bare_item {
            BareItem::String(s) => s.as_str().to_owned(),
            _ => {
                return Err(SigError::malformed(
                    "signature-input",
                    "component identifiers must be strings (RFC 9421 §2)",
                ))
            }
        };
        if let Some((param, _)) = item.params.iter().next() {
            return Err(SigError::UnsupportedComponent(format!(
                "{name};{}",
                param.as_str()
            )));
        }
        check_component_name(&name)?;
        if covered.contains(&name) {
            return Err(SigError::malformed(
                "signature-input",
                format!("component `{name}` is covered more than once (RFC 9421 §2.5)"),
            ));
        }
        covered.push(name);
    }
    Ok(covered)
}

/// The signature parameters of an inner list, in order, with their types checked.
fn signature_params(list: &InnerList) -> Result<Vec<SignatureParam>, SigError> {
    let mut params = Vec::with_capacity(list.params.len());
    for (key, value) in &list.params {
        params.push(match key.as_str() {
            "created" => SignatureParam::Created(integer_param("created", value)?),
            "expires" => SignatureParam::Expires(integer_param("expires", value)?),
            "nonce" => SignatureParam::Nonce(string_param("nonce", value)?),
            "alg" => SignatureParam::Alg(string_param("alg", value)?),
            "keyid" => SignatureParam::KeyId(string_param("keyid", value)?),
            "tag" => SignatureParam::Tag(string_param("tag", value)?),
            other => return Err(SigError::UnsupportedParameter(other.to_owned())),
        });
    }
    Ok(params)
}

/// Verifies the RFC 9421 HTTP Message Signature of a request, with Ed25519 keys only.
///
/// Steps, each failing closed:
/// 1. Parse `Signature-Input` and `Signature` as RFC 8941 Dictionaries (all field lines joined);
///    pick `policy.label`, or the first `Signature-Input` label that `Signature` also has
///    (RFC 9421 §3.2, steps 1–3). The input must be an Inner List, the signature a Byte
///    Sequence of 64 bytes (§4.1, §4.2).
/// 2. Covered components must be Strings without parameters, each a supported derived
///    component or a lowercase field name, none repeated (§2, §2.5); every
///    `policy.required_components` entry must be covered (§3.2.1, step 5).
/// 3. Parameters (§2.3): only `created`, `expires` (Integers), `nonce`, `alg`, `keyid`, `tag`
///    (Strings). `created` and `keyid` are required; `alg`, if present, must be `ed25519`;
///    `nonce`, if present, 1 to [`MAX_NONCE_LEN`] bytes (and required when
///    `policy.require_nonce`).
/// 4. Time (§3.2.1, step 7): `created` within `[now - window_secs, now + max_skew_secs]`;
///    `expires`, if present, not before `now` and not before `created`.
/// 5. `key_lookup(keyid)` gives the agent's key; `None` is [`SigError::UnknownKey`].
/// 6. Rebuild the signature base from the request (§2.5, re-serialising `@signature-params` from
///    the parsed values) and verify the Ed25519 signature over it (RFC 8032, strict: small-order
///    keys and non-canonical signatures are refused).
/// 7. If `content-digest` is covered or present, check it against `body` (RFC 9530, see
///    [`verify_content_digest`]).
///
/// `target_uri` is the request's absolute target URI as the server sees it (see
/// [`crate::target_uri`]).
///
/// **Nonces:** this function does not remember anything. The caller must refuse a
/// [`VerifiedSignature::nonce`] it has already accepted for the same key.
///
/// # Errors
/// A [`SigError`] naming the first check that failed.
pub fn verify_request(
    method: &Method,
    target_uri: &str,
    headers: &HeaderMap,
    body: &[u8],
    policy: &VerifyPolicy,
    key_lookup: impl FnOnce(&str) -> Option<VerifyingKey>,
) -> Result<VerifiedSignature, SigError> {
    // Step 1: the label and its two dictionary members.
    let inputs = parse_dictionary(headers, "signature-input")?;
    let signatures = parse_dictionary(headers, "signature")?;
    let label = match &policy.label {
        Some(wanted) => {
            if inputs.get(wanted.as_str()).is_none() || signatures.get(wanted.as_str()).is_none() {
                return Err(SigError::LabelNotFound(wanted.clone()));
            }
            wanted.clone()
        }
        None => inputs
            .keys()
            .find(|k| signatures.get(k.as_str()).is_some())
            .map(|k| k.as_str().to_owned())
            .ok_or(SigError::NoCommonLabel)?,
    };
    let input = match inputs.get(label.as_str()) {
        Some(ListEntry::InnerList(list)) => list,
        Some(ListEntry::Item(_)) => {
            return Err(SigError::malformed(
                "signature-input",
                format!("`{label}` must be an inner list"),
            ))
        }
        None => return Err(SigError::LabelNotFound(label)),
    };
    let signature_bytes: &[u8] = match signatures.get(label.as_str()) {
        Some(ListEntry::Item(item)) if item.params.is_empty() => match &item.bare_item {
            BareItem::ByteSequence(b) => b,
            _ => {
                return Err(SigError::malformed(
                    "signature",
                    format!("`{label}` must be a byte sequence"),
                ))
            }
        },
        Some(_) => {
            return Err(SigError::malformed(
                "signature",
                format!("`{label}` must be a byte sequence without parameters"),
            ))
        }
        None => return Err(SigError::LabelNotFound(label)),
    };
    let signature_array: [u8; 64] = signature_bytes.try_into().map_err(|_| {
        SigError::malformed(
            "signature",
            format!(
                "an ed25519 signature is 64 bytes, got {}",
                signature_bytes.len()
            ),
        )
    })?;
    let signature = Signature::from_bytes(&signature_array);

    // Steps 2 and 3: the shape of the covered components and parameters, then the policy.
    let covered = covered_components(input)?;
    let params = signature_params(input)?;
    for required in &policy.required_components {
        if !covered.iter().any(|c| c == required) {
            return Err(SigError::MissingComponent(required.clone()));
        }
    }
    let mut created = None;
    let mut expires = None;
    let mut nonce = None;
    let mut key_id = None;
    for param in &params {
        match param {
            SignatureParam::Created(t) => created = Some(*t),
            SignatureParam::Expires(t) => expires = Some(*t),
            SignatureParam::Nonce(n) => nonce = Some(n.clone()),
            SignatureParam::Alg(a) => {
                if a != ALG_ED25519 {
                    return Err(SigError::UnsupportedAlgorithm(a.clone()));
                }
            }
            SignatureParam::KeyId(k) => key_id = Some(k.clone()),
            SignatureParam::Tag(_) => {}
        }
    }
    let created = created.ok_or(SigError::MissingParameter("created"))?;
    let key_id = key_id.ok_or(SigError::MissingParameter("keyid"))?;
    match &nonce {
        Some(n) if n.is_empty() || n.len() > MAX_NONCE_LEN => {
            return Err(SigError::malformed(
                "nonce",
                format!("must be 1 to {MAX_NONCE_LEN} bytes"),
            ))
        }
        None if policy.require_nonce => return Err(SigError::MissingParameter("nonce")),
        _ => {}
    }

    // Step 4: time. i128 so that no i64/u64 combination overflows.
    let now = i128::from(policy.now);
    if i128::from(created) > now + i128::from(policy.max_skew_secs) {
        return Err(SigError::FromFuture {
            created,
            now: policy.now,
            max_skew_secs: policy.max_skew_secs,
        });
    }
    if i128::from(created) < now - i128::from(policy.window_secs) {
        return Err(SigError::TooOld {
            created,
            now: policy.now,
            window_secs: policy.window_secs,
        });
    }
    if let Some(exp) = expires {
        if exp < created {
            return Err(SigError::malformed("expires", "is before `created`"));
        }
        if i128::from(exp) < now {
            return Err(SigError::Expired {
                expires: exp,
                now: policy.now,
            });
        }
    }

    // Step 5: the key.
    let key = key_lookup(&key_id).ok_or_else(|| SigError::UnknownKey(key_id.clone()))?;

    // Step 6: the signature over the rebuilt base.
    let request = RequestParts {
        method,
        target_uri,
        headers,
    };
    let base = signature_base(&request, &covered, &params)?;
    key.verify_strict(base.as_bytes(), &signature)
        .map_err(|_| SigError::BadSignature)?;

    // Step 7: the body.
    let digest_covered = covered.iter().any(|c| c == "content-digest");
    match joined_header(headers, "content-digest")? {
        Some(value) => verify_content_digest(&value, body)?,
        None if digest_covered => return Err(SigError::MissingHeader("content-digest")),
        None => {}
    }

    Ok(VerifiedSignature {
        key_id,
        created,
        expires,
        nonce,
        label,
        covered,
    })
}
