//! AAF's fuzz targets, one function per target, each taking the fuzzer's bytes.
//!
//! The libFuzzer binaries in `fuzz_targets/` call these functions, and so does the corpus
//! replay (`src/bin/replay.rs`, run by `.ci/run` through `fuzz/replay.sh`), which needs
//! neither libFuzzer nor a nightly toolchain. Every target goes through the public API of the
//! crate it tests, and checks properties beyond "does not panic": a target panics (a finding)
//! when a property is violated.
//!
//! | target | code under test | properties checked |
//! |---|---|---|
//! | [`url_guard`] | `HttpConnector::check_destination` / `preflight` (parse, classify, allowlist), `aaf_core::net` | an accepted URL is http(s), has no userinfo, a host outside every reserved range (or exempted by `allow_private_cidrs`) and inside `allowed_domains`; the `is_private_network` built-in agrees; re-checking the serialised URL gives the same answer |
//! | [`action_body`] | axum's JSON extractor on `ActionBody`, `api::validate_action`, the approval digest | refusals are 4xx naming a field; accepted bodies round-trip through their stored JSON form to the same request; the digest is deterministic |
//! | [`canonical_json`] | `aaf_core::canonical` (RFC 8785) | byte-equal to `serde_jcs`; canonical output is valid JSON and a fixed point |
//! | [`policy_input`] | `PolicyInput::build` and `PolicySet::evaluate` over the bundled policies | the input carries the request unchanged; a cached decision equals a fresh one |
//! | [`signature_input`] | `aaf_httpsig::verify_request` (RFC 9421 `Signature-Input` / `Signature` parsing) | arbitrary headers never verify; what `Signer::sign_components` signs, `verify_request` accepts with the same components and parameters |
//! | [`rego_load`] | `PolicySet::load` with the default options | a set that loads evaluates to a decision; a refusal has at least one located error |

use std::net::IpAddr;
use std::sync::{LazyLock, Once};

use aaf_core::action::{AgentInfo, OrgInfo, PolicyInput, RequestMetadata};
use aaf_core::net::{classify_ip, is_internal_hostname, is_private_network};
use aaf_core::policy::{EvaluatorOptions, PolicySet, PolicySource};
use aaf_server::api::body::Object;
use aaf_server::api::{validate_action, ActionBody};
use aaf_server::connectors::http::{HttpConnector, HttpConnectorConfig};
use aaf_server::error::ApiError;
use axum::Json;
use serde_json::{json, Map, Value};
use url::{Host, Url};

/// A fuzz target: takes the fuzzer's bytes, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by name; the name is also its corpus directory, `fuzz/corpus/<name>/`, and
/// its libFuzzer binary, `fuzz_targets/<name>.rs`.
pub const TARGETS: &[(&str, Target)] = &[
    ("url_guard", url_guard),
    ("action_body", action_body),
    ("canonical_json", canonical_json),
    ("policy_input", policy_input),
    ("signature_input", signature_input),
    ("rego_load", rego_load),
];

/// Panics that the code under test catches itself (the evaluator turns an engine panic into
/// a deny) are not findings of AAF: report them on stderr instead of letting libFuzzer's
/// panic hook abort on them. A panic that escapes a target still fails: libFuzzer aborts on
/// it, and the replay counts it as a failure.
fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("aaf-fuzz: panic (a caught one is not a finding by itself): {info}");
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// URL guard

/// `allowed_domains` of the allowlist configuration.
const ALLOWED_DOMAINS: &[&str] = &[
    "api.example.com",
    "*.example.org",
    "bücher.example",
    "203.0.114.7",
    "[2001:4860::1]",
];

/// `allow_private_cidrs` of the exemption configuration.
const PRIVATE_CIDRS: &[&str] = &["10.20.0.0/16", "fd00:1::/32"];

/// The three connector configurations: no rules beyond the defaults, an allowlist, and an
/// exemption of private networks. DNS is off (`system_dns: false`); the checks under test
/// need none.
static CONNECTORS: LazyLock<Vec<HttpConnector>> = LazyLock::new(|| {
    let base = HttpConnectorConfig {
        system_dns: false,
        ..HttpConnectorConfig::default()
    };
    let allowlist = HttpConnectorConfig {
        allowed_domains: ALLOWED_DOMAINS.iter().map(|d| (*d).to_owned()).collect(),
        ..base.clone()
    };
    let exempt = HttpConnectorConfig {
        allow_private_cidrs: PRIVATE_CIDRS
            .iter()
            .map(|c| c.parse().unwrap_or_else(|e| panic!("cidr {c}: {e}")))
            .collect(),
        ..base.clone()
    };
    [base, allowlist, exempt]
        .iter()
        .map(|config| {
            HttpConnector::new(config).unwrap_or_else(|e| panic!("connector config: {e}"))
        })
        .collect()
});

/// Whether `name` (lowercase, IDNA ASCII, no trailing dot) is in [`ALLOWED_DOMAINS`].
fn allowlisted_name(name: &str) -> bool {
    name == "api.example.com"
        || name == "xn--bcher-kva.example"
        || (name.len() > ".example.org".len() && name.ends_with(".example.org"))
}

/// Whether `ip` is in [`ALLOWED_DOMAINS`].
fn allowlisted_ip(ip: IpAddr) -> bool {
    ip == IpAddr::from([203, 0, 114, 7]) || ip == IpAddr::from([0x2001, 0x4860, 0, 0, 0, 0, 0, 1])
}

/// Whether `allow_private_cidrs` of the exemption configuration exempts `ip` (an IPv4-mapped
/// IPv6 address by its IPv4 address too).
fn exempted(ip: IpAddr) -> bool {
    let mapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    PRIVATE_CIDRS.iter().any(|c| {
        c.parse::<ipnet::IpNet>()
            .is_ok_and(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)))
    })
}

/// The URL guard of the HTTP connector: parse, classify, allowlist.
///
/// Input: the first byte picks the configuration (none, allowlist, private exemption), the
/// rest is the URL. Panics when the connector accepts a URL it must refuse: not http(s),
/// with userinfo, without a host, an IP host in a reserved range (RFC 6890 and the others of
/// `classify_ip`) that is not exempted, an internal host name, a host outside
/// `allowed_domains`; when the `is_private_network` built-in calls an accepted URL private;
/// when the serialised form of an accepted URL is refused; or when `preflight` accepts what
/// `check_destination` refuses.
pub fn url_guard(data: &[u8]) {
    init();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let config = usize::from(selector % 3);
    let text = String::from_utf8_lossy(rest);
    let connector = &CONNECTORS[config];

    // The building blocks on their own (coverage; `parse_host` must not panic).
    let _ = aaf_core::net::parse_host(&text);
    let private = is_private_network(&text);

    let checked = connector.check_destination(&text);
    let mut params = Map::new();
    params.insert("url".to_owned(), Value::String(text.to_string()));
    let preflight = connector.preflight(if selector & 0x80 == 0 { "GET" } else { "POST" }, &params);
    assert!(
        preflight.is_err() || checked.is_ok(),
        "preflight accepted {text:?}, check_destination refused it: {checked:?}"
    );
    let Ok(url) = checked else {
        return;
    };

    assert!(
        url.scheme() == "http" || url.scheme() == "https",
        "accepted scheme {:?} in {text:?}",
        url.scheme()
    );
    assert!(
        url.username().is_empty() && url.password().is_none(),
        "accepted userinfo in {text:?}"
    );
    match url.host() {
        None => panic!("accepted a url without host: {text:?}"),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            assert!(
                !is_internal_hostname(&name),
                "accepted internal host name {name:?} in {text:?}"
            );
            if config == 1 {
                assert!(
                    allowlisted_name(&name),
                    "accepted {name:?}, not in allowed_domains"
                );
            }
        }
        Some(Host::Ipv4(ip)) => check_accepted_ip(config, IpAddr::V4(ip), &text),
        Some(Host::Ipv6(ip)) => check_accepted_ip(config, IpAddr::V6(ip), &text),
    }
    if config != 2 {
        assert!(
            !private,
            "the connector accepted {text:?}, is_private_network calls it private"
        );
    }
    let again = connector.check_destination(url.as_str());
    assert!(
        again.is_ok(),
        "accepted {text:?} but refused its serialisation {:?}: {again:?}",
        url.as_str()
    );
    let reparsed = Url::parse(url.as_str()).map(|u| u.host().map(|h| h.to_owned()));
    assert_eq!(
        reparsed.ok().flatten(),
        url.host().map(|h| h.to_owned()),
        "the host of {text:?} changes when its serialisation is parsed again"
    );
}

fn check_accepted_ip(config: usize, ip: IpAddr, text: &str) {
    let range = classify_ip(ip);
    if config == 2 {
        assert!(
            range.is_none() || exempted(ip),
            "accepted {ip} in {text:?}: in {range:?}, not exempted"
        );
    } else {
        assert!(range.is_none(), "accepted {ip} in {text:?}: in {range:?}");
    }
    if config == 1 {
        assert!(allowlisted_ip(ip), "accepted {ip}, not in allowed_domains");
    }
}

// ---------------------------------------------------------------------------------------------
// Action body

/// The `POST /v1/actions` body: axum's JSON extractor (what the server runs), then
/// `validate_action`, then the approval digest of what was accepted.
///
/// Panics when a refusal is not a 4xx, when a validation error names no field, when an
/// accepted request breaks its documented shape (non-blank `tool` and `operation` of at most
/// 256 characters), when the accepted request, written as JSON (as actions are stored) and
/// read again, is not the same request, or when the digest of one request differs between
/// two computations.
pub fn action_body(data: &[u8]) {
    init();
    let body = match Json::<Object<ActionBody>>::from_bytes(data) {
        Ok(Json(Object(body))) => body,
        Err(rejection) => {
            assert!(
                rejection.status().is_client_error(),
                "json rejection {} is not a 4xx",
                rejection.status()
            );
            return;
        }
    };
    let request = match validate_action(body) {
        Ok(request) => request,
        Err(error) => {
            assert_eq!(error.status_and_code().0.as_u16(), 400, "{error:?}");
            assert!(
                matches!(&error, ApiError::BadRequest { field: Some(f), .. } if !f.is_empty()),
                "a refused body must name its field: {error:?}"
            );
            return;
        }
    };
    for (field, value) in [("tool", &request.tool), ("operation", &request.operation)] {
        assert!(
            !value.trim().is_empty(),
            "{field} accepted blank: {value:?}"
        );
        assert!(
            value.chars().count() <= 256,
            "{field} accepted over 256 characters"
        );
    }
    // As stored (JSON text) and read back, e.g. by the approval re-check.
    let stored = json!({
        "tool": request.tool,
        "operation": request.operation,
        "params": request.params,
        "context": request.context,
    })
    .to_string();
    let again = Json::<Object<ActionBody>>::from_bytes(stored.as_bytes())
        .map_err(|r| r.body_text())
        .and_then(|Json(Object(b))| validate_action(b).map_err(|e| format!("{e:?}")));
    assert_eq!(
        again.as_ref().ok(),
        Some(&request),
        "the stored form {stored} reads back as {again:?}"
    );
    let digest = |r: &aaf_core::action::ActionRequest| {
        aaf_core::approval::action_digest(
            "org",
            "agent",
            &r.tool,
            &r.operation,
            &r.params,
            &r.context,
        )
    };
    let first = digest(&request);
    assert_eq!(
        first,
        digest(&request),
        "the approval digest is not deterministic"
    );
}

// ---------------------------------------------------------------------------------------------
// RFC 8785 canonicalisation

/// RFC 8785 (JCS) canonicalisation of any JSON text that `serde_json` parses.
///
/// Panics when `to_canonical_json` and `serde_jcs` (the reference implementation the module
/// documents itself as equal to) both succeed with different bytes, when the canonical form
/// does not parse as JSON, or when canonicalising it again changes it (RFC 8785 output is a
/// fixed point).
pub fn canonical_json(data: &[u8]) {
    init();
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(ours) = aaf_core::canonical::to_canonical_json(&value) else {
        return;
    };
    if let Ok(reference) = serde_jcs::to_vec(&value) {
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&reference),
            "differs from serde_jcs"
        );
    }
    let reparsed: Value = serde_json::from_slice(&ours).unwrap_or_else(|e| {
        panic!(
            "canonical form is not JSON ({e}): {}",
            String::from_utf8_lossy(&ours)
        )
    });
    if let Ok(twice) = aaf_core::canonical::to_canonical_json(&reparsed) {
        assert_eq!(
            String::from_utf8_lossy(&twice),
            String::from_utf8_lossy(&ours),
            "canonical form is not a fixed point"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Policy input building and evaluation

/// The bundled policies the input is evaluated against, each as a set of its own: the
/// starter policy, the seed-004 example (Rego v0, `is_private_network`), and the compliance
/// pack (card numbers, SSNs: exact numbers matter).
const POLICY_SETS: &[(&str, &str)] = &[
    ("starter.rego", include_str!("../../policies/starter.rego")),
    (
        "seed-004/policy.rego",
        include_str!("../../examples/policies/seed-004/policy.rego"),
    ),
    (
        "packs/compliance.rego",
        include_str!("../../policies/packs/compliance.rego"),
    ),
];

/// Each of [`POLICY_SETS`] loaded twice: with the decision cache and constant rules kept per
/// revision (the server's defaults), and with neither (every rule evaluated for every input).
/// A long time limit (10 s) so that a slow machine cannot make the two differ by a time-out.
static EVALUATORS: LazyLock<Vec<(PolicySet, PolicySet)>> = LazyLock::new(|| {
    let options = |cache| EvaluatorOptions {
        eval_timeout: std::time::Duration::from_secs(10),
        decision_cache_entries: cache,
        rule_index: true,
        eval_threads: 1,
        load_timeout: std::time::Duration::from_secs(10),
        constant_rules: cache > 0,
    };
    POLICY_SETS
        .iter()
        .filter_map(|(path, rego)| {
            let load = |cache| {
                PolicySet::load(
                    vec![PolicySource {
                        path: (*path).to_owned(),
                        rego: (*rego).to_owned(),
                    }],
                    options(cache),
                )
            };
            match (load(10_000), load(0)) {
                (Ok(cached), Ok(fresh)) => Some((cached, fresh)),
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("aaf-fuzz: {path} does not load on its own, skipped: {e:?}");
                    None
                }
            }
        })
        .collect()
});

/// Builds the policy input of an action body (parsed and validated as the server does) and
/// evaluates it with the bundled policies.
///
/// Panics when the input does not carry the request's fields unchanged in both of its shapes
/// (flat and nested), or when a decision taken through the decision cache (with constant
/// rules kept) differs from one taken without either (verdict, reason, matched policies, risk
/// level, approvals): a cache key that confuses two inputs the policies tell apart, or a rule
/// kept as constant whose value depended on the input. The cache persists across inputs, so a
/// collision between two inputs of one fuzzing run is found.
pub fn policy_input(data: &[u8]) {
    init();
    let Ok(Json(Object(body))) = Json::<Object<ActionBody>>::from_bytes(data) else {
        return;
    };
    let Ok(request) = validate_action(body) else {
        return;
    };
    let input = PolicyInput::build(
        "01900000-0000-7000-8000-000000000000",
        &request,
        &AgentInfo {
            id: "agent-1".to_owned(),
            name: "fuzz agent".to_owned(),
            risk_score: 0.25,
        },
        &OrgInfo {
            id: "org-1".to_owned(),
            plan: "self_hosted".to_owned(),
        },
        &RequestMetadata {
            timestamp: "2026-01-01T00:00:00Z".to_owned(),
            ip_address: Some("127.0.0.1".to_owned()),
        },
    );
    let params = Value::Object(request.params.clone());
    let context = Value::Object(request.context.clone());
    for (path, expected) in [
        ("/tool", Value::String(request.tool.clone())),
        ("/operation", Value::String(request.operation.clone())),
        ("/params", params.clone()),
        ("/context", context.clone()),
        ("/action/tool", Value::String(request.tool.clone())),
        (
            "/action/operation",
            Value::String(request.operation.clone()),
        ),
        ("/action/params", params),
        ("/action/context", context),
    ] {
        assert_eq!(input.pointer(path), Some(&expected), "input{path}");
    }
    for (cached, fresh) in EVALUATORS.iter() {
        let a = cached.evaluate(&input);
        let b = fresh.evaluate(&input);
        let key = |d: &aaf_core::action::Decision| {
            (
                d.verdict,
                d.reason.clone(),
                d.matched_policies.clone(),
                d.risk_level.clone(),
                d.approvals_required,
                d.approval_timeout_seconds,
            )
        };
        assert_eq!(
            key(&a),
            key(&b),
            "cached and fresh decisions differ for {input}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 9421 signatures

/// The verifier's clock in the signature target, Unix seconds.
const NOW: i64 = 1_700_000_000;
const TARGET_URI: &str = "https://aaf.example.com/v1/actions?x=1";

static SIGNER: LazyLock<aaf_httpsig::Signer> = LazyLock::new(|| {
    aaf_httpsig::Signer::new("agent-1", ed25519_dalek::SigningKey::from_bytes(&[7; 32]))
});

/// Components the round-trip mode may cover.
const COMPONENTS: &[&str] = &[
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@path",
    "@query",
    "@request-target",
    "content-digest",
    "content-type",
    "x-fuzz",
];

/// RFC 9421 `Signature-Input` and `Signature` parsing and verification.
///
/// Even first byte: the rest is `Signature-Input`, `Signature`, `Content-Digest` and the body,
/// separated by `\n`; a request with these headers must never verify (nobody but the key's
/// holder can sign), whatever the parser makes of them. Odd first byte: the bytes choose a
/// label, covered components, parameters (a `keyid`, a `nonce`, a `tag`, `created` and
/// `expires` around the clock) and a header value; `Signer::sign_components` signs, and
/// `verify_request` must accept exactly what was signed, so that what the client serialises
/// the server parses back the same (RFC 8941 strings with escapes, parameter order, labels).
pub fn signature_input(data: &[u8]) {
    init();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        signature_raw(rest);
    } else {
        signature_round_trip(rest);
    }
}

fn signature_raw(data: &[u8]) {
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let mut headers = http::HeaderMap::new();
    for name in ["signature-input", "signature", "content-digest"] {
        if let Some(value) = parts.next() {
            if let Ok(value) = http::HeaderValue::from_bytes(value) {
                headers.append(http::HeaderName::from_static(name), value);
            }
        }
    }
    let body = parts.next().unwrap_or_default();
    let key = SIGNER.verifying_key();
    let result = aaf_httpsig::verify_request(
        &http::Method::POST,
        TARGET_URI,
        &headers,
        body,
        &aaf_httpsig::VerifyPolicy::new(NOW),
        |id| (id == "agent-1").then_some(key),
    );
    assert!(result.is_err(), "unsigned headers verified: {result:?}");
}

/// Printable ASCII (RFC 8941 String characters) from fuzz bytes.
fn sf_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(0x20 + b % 95)).collect()
}

fn signature_round_trip(data: &[u8]) {
    use aaf_httpsig::SignatureParam;
    // Split the input into fields at 0xff bytes: flags, label, keyid, nonce, tag, header.
    let mut fields = data.split(|b| *b == 0xff);
    let flags = fields.next().unwrap_or_default();
    let flag = |i: usize| flags.get(i).copied().unwrap_or(0);
    let label: String = fields
        .next()
        .unwrap_or_default()
        .iter()
        .map(|b| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789_-.*"[usize::from(*b) % 40]))
        .collect();
    let key_id = sf_string(fields.next().unwrap_or_default());
    let nonce = fields.next().map(sf_string);
    let tag = fields.next().map(sf_string);
    let header = fields.next().unwrap_or_default();

    // Covered components: a subset of COMPONENTS, in an order chosen by the flags.
    let mut covered: Vec<&str> = Vec::new();
    for i in 0..COMPONENTS.len() {
        let pick = COMPONENTS[usize::from(flag(1 + i)) % COMPONENTS.len()];
        if flag(1 + i) & 0x80 != 0 && !covered.contains(&pick) {
            covered.push(pick);
        }
    }
    let created = NOW - i64::from(flag(12)) + 30;
    let mut params = vec![SignatureParam::Created(created)];
    if flag(0) & 1 == 0 {
        params.push(SignatureParam::KeyId(key_id.clone()));
    }
    if flag(0) & 2 != 0 {
        params.push(SignatureParam::Alg("ed25519".to_owned()));
    }
    if let Some(nonce) = &nonce {
        params.push(SignatureParam::Nonce(nonce.clone()));
    }
    if let Some(tag) = tag {
        params.push(SignatureParam::Tag(tag));
    }
    let expires = (flag(0) & 4 != 0).then(|| NOW + i64::from(flag(13)));
    if let Some(expires) = expires {
        params.push(SignatureParam::Expires(expires));
    }
    if flag(0) & 8 != 0 {
        params.rotate_left(1);
    }

    let body = header;
    let mut headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_bytes(header) {
        headers.append(http::HeaderName::from_static("x-fuzz"), value);
    }
    headers.insert(
        http::HeaderName::from_static("content-type"),
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = http::HeaderValue::from_str(&aaf_httpsig::content_digest(body)) {
        headers.insert(http::HeaderName::from_static("content-digest"), value);
    }
    let request = aaf_httpsig::RequestParts {
        method: &http::Method::POST,
        target_uri: TARGET_URI,
        headers: &headers,
    };
    let Ok(fields) = SIGNER.sign_components(&label, &request, &covered, &params) else {
        return;
    };
    let mut signed = headers.clone();
    for (name, value) in [
        ("signature-input", &fields.signature_input),
        ("signature", &fields.signature),
    ] {
        let value = http::HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("the signer wrote an invalid {name} {value:?}: {e}"));
        signed.insert(http::HeaderName::from_static(name), value);
    }
    let policy = aaf_httpsig::VerifyPolicy {
        required_components: Vec::new(),
        label: Some(label.clone()),
        ..aaf_httpsig::VerifyPolicy::new(NOW)
    };
    let key = SIGNER.verifying_key();
    let verified = aaf_httpsig::verify_request(
        &http::Method::POST,
        TARGET_URI,
        &signed,
        body,
        &policy,
        |id| (id == key_id).then_some(key),
    );
    // What verify_request refuses by policy, not by parsing: a missing keyid, an empty or
    // long nonce, an `expires` before `created` (which `sign_components` signs as given).
    let keyid_missing = flag(0) & 1 != 0;
    let nonce_bad = nonce
        .as_ref()
        .is_some_and(|n| n.is_empty() || n.len() > aaf_httpsig::MAX_NONCE_LEN);
    let expires_before_created = expires.is_some_and(|e| e < created);
    if keyid_missing || nonce_bad || expires_before_created {
        assert!(verified.is_err(), "accepted {fields:?}");
        return;
    }
    let verified = verified.unwrap_or_else(|e| {
        panic!(
            "signed {:?} / {:?} but verification failed: {e}",
            fields.signature_input, fields.signature
        )
    });
    assert_eq!(verified.label, label);
    assert_eq!(verified.key_id, key_id);
    assert_eq!(verified.created, created);
    assert_eq!(verified.nonce, nonce);
    assert_eq!(verified.covered, covered);
}

// ---------------------------------------------------------------------------------------------
// Rego policy loading

/// The input the loaded policy is evaluated against.
static REGO_INPUT: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "tool": "http_proxy",
        "operation": "GET",
        "params": {"url": "https://api.example.com/v1", "amount": 12},
        "context": {"user_id": "u1"},
        "agent_id": "agent-1",
        "action": {
            "id": "01900000-0000-7000-8000-000000000000",
            "tool": "http_proxy",
            "operation": "GET",
            "params": {"url": "https://api.example.com/v1", "amount": 12},
            "context": {"user_id": "u1"},
        },
        "agent": {"id": "agent-1", "name": "fuzz agent", "risk_score": 0.25},
        "org": {"id": "org-1", "plan": "self_hosted"},
        "metadata": {"timestamp": "2026-01-01T00:00:00Z", "ip_address": "127.0.0.1"},
    })
});

/// Loads the bytes as one Rego module with `PolicySet::load` and the default options (the
/// load-time limits and checks the server applies to every policy), and evaluates a set that
/// loads.
///
/// Panics when a refusal carries no error, or when a set that loaded has no policy revision.
/// An evaluation never fails (errors and time-outs are denies); a panic escaping `load` or
/// `evaluate` is a finding.
pub fn rego_load(data: &[u8]) {
    init();
    // The server's default memory limit of policy work (limits.policy_memory_limit_mb),
    // under which every load and evaluation runs (docs/policies.md#resource-limits).
    static LIMIT: Once = Once::new();
    LIMIT.call_once(|| aaf_core::policy::set_memory_limit(Some(1024 * 1024 * 1024)));
    let rego = String::from_utf8_lossy(data).into_owned();
    match PolicySet::load(
        vec![PolicySource {
            path: "fuzz.rego".to_owned(),
            rego,
        }],
        EvaluatorOptions::default(),
    ) {
        Ok(set) => {
            assert!(!set.revision().is_empty(), "a loaded set has no revision");
            let _decision = set.evaluate(&REGO_INPUT);
        }
        Err(errors) => assert!(!errors.is_empty(), "load refused with no error"),
    }
}
