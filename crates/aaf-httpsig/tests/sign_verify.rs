//! Round trips through `Signer` and `verify_request`, and every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aaf_httpsig::{
    content_digest, verify_request, RequestParts, SigError, SignatureParam, Signer,
    VerifiedSignature, VerifyPolicy, DEFAULT_COMPONENTS,
};
use ed25519_dalek::{SigningKey, VerifyingKey};
use http::{HeaderMap, HeaderValue, Method};

const KEY_ID: &str = "0193f1c2-agent";
const URL: &str = "https://aaf.example.com/v1/actions?dry_run=1";
const BODY: &[u8] =
    br#"{"tool":"http_proxy","operation":"GET","params":{"url":"https://api.example.com/"}}"#;
const CREATED: i64 = 1_700_000_000;

fn signer() -> Signer {
    Signer::new(KEY_ID, SigningKey::from_bytes(&[42; 32]))
}

fn other_key() -> VerifyingKey {
    SigningKey::from_bytes(&[43; 32]).verifying_key()
}

fn base_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("authorization", HeaderValue::from_static("Bearer aaf_ak_x"));
    h
}

/// Headers signed by `signer()` the default way.
fn signed(nonce: Option<&str>) -> HeaderMap {
    let mut h = base_headers();
    signer()
        .apply(&Method::POST, URL, &mut h, BODY, CREATED, nonce)
        .unwrap();
    h
}

/// Headers signed over `covered` with `params` under `label`.
fn signed_with(label: &str, covered: &[&str], params: &[SignatureParam]) -> HeaderMap {
    let mut h = base_headers();
    h.insert(
        "content-digest",
        HeaderValue::from_str(&content_digest(BODY)).unwrap(),
    );
    let fields = signer()
        .sign_components(
            label,
            &RequestParts {
                method: &Method::POST,
                target_uri: URL,
                headers: &h,
            },
            covered,
            params,
        )
        .unwrap();
    h.insert(
        "signature-input",
        HeaderValue::from_str(&fields.signature_input).unwrap(),
    );
    h.insert(
        "signature",
        HeaderValue::from_str(&fields.signature).unwrap(),
    );
    h
}

fn default_params() -> Vec<SignatureParam> {
    vec![
        SignatureParam::Created(CREATED),
        SignatureParam::KeyId(KEY_ID.into()),
        SignatureParam::Alg("ed25519".into()),
    ]
}

fn lookup(id: &str) -> Option<VerifyingKey> {
    (id == KEY_ID).then(|| signer().verifying_key())
}

fn verify_at(headers: &HeaderMap, now: i64) -> Result<VerifiedSignature, SigError> {
    verify_request(
        &Method::POST,
        URL,
        headers,
        BODY,
        &VerifyPolicy::new(now),
        lookup,
    )
}

fn verify(headers: &HeaderMap) -> Result<VerifiedSignature, SigError> {
    verify_at(headers, CREATED + 5)
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    headers.insert(name, HeaderValue::from_str(value).unwrap());
}

#[test]
fn round_trip_with_nonce() {
    let h = signed(Some("3f9c1a7e5b2d4c68"));
    let v = verify(&h).unwrap();
    assert_eq!(
        v,
        VerifiedSignature {
            key_id: KEY_ID.into(),
            created: CREATED,
            expires: None,
            nonce: Some("3f9c1a7e5b2d4c68".into()),
            label: "sig1".into(),
            covered: DEFAULT_COMPONENTS.iter().map(|s| (*s).to_owned()).collect(),
        }
    );
    // The header shapes the docs promise.
    assert_eq!(h["content-digest"], content_digest(BODY).as_str());
    assert_eq!(
        h["signature-input"],
        format!(
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created={CREATED};\
             keyid=\"{KEY_ID}\";alg=\"ed25519\";nonce=\"3f9c1a7e5b2d4c68\""
        )
        .as_str()
    );
    let sig = h["signature"].to_str().unwrap();
    assert!(sig.starts_with("sig1=:") && sig.ends_with(':'), "{sig}");
    // Untouched headers stay.
    assert_eq!(h["authorization"], "Bearer aaf_ak_x");
}

#[test]
fn round_trip_without_nonce_and_sign_equals_apply() {
    let s = signer()
        .sign(&Method::POST, URL, &base_headers(), BODY, CREATED, None)
        .unwrap();
    let h = signed(None);
    assert_eq!(h["content-digest"], s.content_digest.as_str());
    assert_eq!(h["signature-input"], s.signature_input.as_str());
    assert_eq!(h["signature"], s.signature.as_str());
    let v = verify(&h).unwrap();
    assert_eq!(v.nonce, None);
    assert!(!s.signature_input.contains("nonce"));
}

#[test]
fn require_nonce_refuses_a_signature_without_one() {
    let mut policy = VerifyPolicy::new(CREATED);
    policy.require_nonce = true;
    let err = verify_request(&Method::POST, URL, &signed(None), BODY, &policy, lookup).unwrap_err();
    assert_eq!(err, SigError::MissingParameter("nonce"));
    verify_request(
        &Method::POST,
        URL,
        &signed(Some("n")),
        BODY,
        &policy,
        lookup,
    )
    .unwrap();
}

#[test]
fn round_trip_empty_body_and_get() {
    let mut h = HeaderMap::new();
    signer()
        .apply(
            &Method::GET,
            "https://aaf.example.com/v1/agents",
            &mut h,
            b"",
            CREATED,
            Some("n"),
        )
        .unwrap();
    assert_eq!(
        h["content-digest"],
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    );
    verify_request(
        &Method::GET,
        "https://aaf.example.com/v1/agents",
        &h,
        b"",
        &VerifyPolicy::new(CREATED),
        lookup,
    )
    .unwrap();
}

#[test]
fn each_required_component_must_be_covered() {
    for missing in DEFAULT_COMPONENTS {
        let covered: Vec<&str> = DEFAULT_COMPONENTS
            .iter()
            .copied()
            .filter(|c| *c != missing)
            .collect();
        let h = signed_with("sig1", &covered, &default_params());
        assert_eq!(
            verify(&h).unwrap_err(),
            SigError::MissingComponent(missing.to_owned()),
            "without {missing}"
        );
    }
}

#[test]
fn extra_components_and_any_order_are_accepted() {
    let h = signed_with(
        "sig1",
        &[
            "content-type",
            "content-digest",
            "@target-uri",
            "@method",
            "@authority",
        ],
        &default_params(),
    );
    let v = verify(&h).unwrap();
    assert_eq!(v.covered[0], "content-type");
}

#[test]
fn wrong_key_is_refused() {
    let h = signed(Some("n"));
    let err = verify_request(
        &Method::POST,
        URL,
        &h,
        BODY,
        &VerifyPolicy::new(CREATED),
        |_| Some(other_key()),
    )
    .unwrap_err();
    assert_eq!(err, SigError::BadSignature);
}

#[test]
fn unknown_keyid_is_refused() {
    let h = signed(Some("n"));
    let err = verify_request(
        &Method::POST,
        URL,
        &h,
        BODY,
        &VerifyPolicy::new(CREATED),
        |_| None,
    )
    .unwrap_err();
    assert_eq!(err, SigError::UnknownKey(KEY_ID.into()));
}

#[test]
fn body_changed_after_signing_is_a_digest_mismatch() {
    let h = signed(Some("n"));
    let err = verify_request(
        &Method::POST,
        URL,
        &h,
        br#"{"tool":"http_proxy","operation":"DELETE"}"#,
        &VerifyPolicy::new(CREATED),
        lookup,
    )
    .unwrap_err();
    assert_eq!(err, SigError::DigestMismatch("sha-256"));
}

#[test]
fn body_and_digest_changed_together_is_a_bad_signature() {
    let evil = br#"{"tool":"http_proxy","operation":"DELETE"}"#;
    let mut h = signed(Some("n"));
    set(&mut h, "content-digest", &content_digest(evil));
    let err = verify_request(
        &Method::POST,
        URL,
        &h,
        evil,
        &VerifyPolicy::new(CREATED),
        lookup,
    )
    .unwrap_err();
    assert_eq!(err, SigError::BadSignature);
}

#[test]
fn method_or_target_changed_is_a_bad_signature() {
    let h = signed(Some("n"));
    let policy = VerifyPolicy::new(CREATED);
    assert_eq!(
        verify_request(&Method::PUT, URL, &h, BODY, &policy, lookup).unwrap_err(),
        SigError::BadSignature
    );
    for other in [
        "https://aaf.example.com/v1/actions",
        "https://aaf.example.com/v1/actions?dry_run=0",
        "http://aaf.example.com/v1/actions?dry_run=1",
        "https://evil.example.com/v1/actions?dry_run=1",
    ] {
        assert_eq!(
            verify_request(&Method::POST, other, &h, BODY, &policy, lookup).unwrap_err(),
            SigError::BadSignature,
            "{other}"
        );
    }
}

#[test]
fn covered_header_changed_or_removed_is_refused() {
    let mut h = signed_with(
        "sig1",
        &["@method", "@target-uri", "content-digest", "content-type"],
        &default_params(),
    );
    set(&mut h, "content-type", "text/plain");
    assert_eq!(verify(&h).unwrap_err(), SigError::BadSignature);
    h.remove("content-type");
    assert_eq!(
        verify(&h).unwrap_err(),
        SigError::ComponentUnavailable("content-type".into())
    );
}

#[test]
fn signature_tampered_is_refused() {
    let mut h = signed(Some("n"));
    let sig = h["signature"].to_str().unwrap().to_owned();
    // Flip one base64 character inside the byte sequence.
    let mut chars: Vec<char> = sig.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    set(&mut h, "signature", &chars.into_iter().collect::<String>());
    assert_eq!(verify(&h).unwrap_err(), SigError::BadSignature);
}

#[test]
fn signature_input_changed_is_refused() {
    // A different nonce than the one signed: the @signature-params line no longer matches.
    let mut h = signed(Some("n1"));
    let input = h["signature-input"].to_str().unwrap().replace("n1", "n2");
    set(&mut h, "signature-input", &input);
    assert_eq!(verify(&h).unwrap_err(), SigError::BadSignature);
}

#[test]
fn created_window_edges() {
    let h = signed(Some("n"));
    // Exactly 300 s old: accepted. 301 s: refused.
    verify_at(&h, CREATED + 300).unwrap();
    assert_eq!(
        verify_at(&h, CREATED + 301).unwrap_err(),
        SigError::TooOld {
            created: CREATED,
            now: CREATED + 301,
            window_secs: 300
        }
    );
    // 60 s in the future: accepted. 61 s: refused.
    verify_at(&h, CREATED - 60).unwrap();
    assert_eq!(
        verify_at(&h, CREATED - 61).unwrap_err(),
        SigError::FromFuture {
            created: CREATED,
            now: CREATED - 61,
            max_skew_secs: 60
        }
    );
}

#[test]
fn window_is_configurable() {
    let h = signed(Some("n"));
    let mut policy = VerifyPolicy::new(CREATED + 100);
    policy.window_secs = 30;
    assert!(matches!(
        verify_request(&Method::POST, URL, &h, BODY, &policy, lookup),
        Err(SigError::TooOld {
            window_secs: 30,
            ..
        })
    ));
}

#[test]
fn extreme_times_do_not_overflow() {
    let h = signed_with(
        "sig1",
        &DEFAULT_COMPONENTS,
        &[
            SignatureParam::Created(-999_999_999_999_999),
            SignatureParam::KeyId(KEY_ID.into()),
        ],
    );
    assert!(matches!(
        verify_at(&h, i64::MAX),
        Err(SigError::TooOld { .. })
    ));
    let h = signed_with(
        "sig1",
        &DEFAULT_COMPONENTS,
        &[
            SignatureParam::Created(999_999_999_999_999),
            SignatureParam::KeyId(KEY_ID.into()),
        ],
    );
    assert!(matches!(
        verify_at(&h, i64::MIN),
        Err(SigError::FromFuture { .. })
    ));
}

#[test]
fn expires_is_enforced() {
    let mut params = default_params();
    params.push(SignatureParam::Expires(CREATED + 10));
    let h = signed_with("sig1", &DEFAULT_COMPONENTS, &params);
    assert_eq!(
        verify_at(&h, CREATED + 10).unwrap().expires,
        Some(CREATED + 10)
    );
    assert_eq!(
        verify_at(&h, CREATED + 11).unwrap_err(),
        SigError::Expired {
            expires: CREATED + 10,
            now: CREATED + 11
        }
    );

    let mut params = default_params();
    params.push(SignatureParam::Expires(CREATED - 1));
    let h = signed_with("sig1", &DEFAULT_COMPONENTS, &params);
    assert!(matches!(
        verify_at(&h, CREATED).unwrap_err(),
        SigError::Malformed { field, .. } if field == "expires"
    ));
}

#[test]
fn alg_other_than_ed25519_is_refused() {
    for alg in [
        "rsa-pss-sha512",
        "hmac-sha256",
        "ED25519",
        "ecdsa-p256-sha256",
    ] {
        let h = signed_with(
            "sig1",
            &DEFAULT_COMPONENTS,
            &[
                SignatureParam::Created(CREATED),
                SignatureParam::KeyId(KEY_ID.into()),
                SignatureParam::Alg(alg.into()),
            ],
        );
        assert_eq!(
            verify(&h).unwrap_err(),
            SigError::UnsupportedAlgorithm(alg.into())
        );
    }
}

#[test]
fn alg_may_be_absent() {
    let h = signed_with(
        "sig1",
        &DEFAULT_COMPONENTS,
        &[
            SignatureParam::KeyId(KEY_ID.into()),
            SignatureParam::Created(CREATED),
        ],
    );
    verify(&h).unwrap();
}

#[test]
fn missing_keyid_or_created_is_refused() {
    let h = signed_with(
        "sig1",
        &DEFAULT_COMPONENTS,
        &[
            SignatureParam::Created(CREATED),
            SignatureParam::Alg("ed25519".into()),
        ],
    );
    assert_eq!(verify(&h).unwrap_err(), SigError::MissingParameter("keyid"));
    let h = signed_with(
        "sig1",
        &DEFAULT_COMPONENTS,
        &[SignatureParam::KeyId(KEY_ID.into())],
    );
    assert_eq!(
        verify(&h).unwrap_err(),
        SigError::MissingParameter("created")
    );
}

#[test]
fn missing_headers_are_refused() {
    let mut h = signed(Some("n"));
    h.remove("signature");
    assert_eq!(
        verify(&h).unwrap_err(),
        SigError::MissingHeader("signature")
    );
    let mut h = signed(Some("n"));
    h.remove("signature-input");
    assert_eq!(
        verify(&h).unwrap_err(),
        SigError::MissingHeader("signature-input")
    );
    let mut h = signed(Some("n"));
    h.remove("content-digest");
    assert_eq!(
        verify(&h).unwrap_err(),
        SigError::ComponentUnavailable("content-digest".into())
    );
    assert_eq!(
        verify(&base_headers()).unwrap_err(),
        SigError::MissingHeader("signature-input")
    );
}

fn assert_malformed(result: Result<VerifiedSignature, SigError>, want_field: &str) {
    match result {
        Err(SigError::Malformed { field, reason }) => {
            assert_eq!(field, want_field, "reason: {reason}");
        }
        other => panic!("expected Malformed({want_field}), got {other:?}"),
    }
}

#[test]
fn malformed_signature_input_is_refused() {
    let good = signed(Some("n"));
    for bad in [
        // Not a dictionary / broken syntax.
        "sig1=(\"@method\" \"@target-uri\" \"content-digest\"",
        "sig1=(\"@method\"),",
        "(\"@method\")",
        "Sig1=(\"@method\")",
        // An item, not an inner list.
        "sig1=\"@method\"",
        // Components must be strings.
        "sig1=(@method @target-uri content-digest);created=1700000000;keyid=\"k\"",
        // A date is RFC 9651, not RFC 8941.
        "sig1=(\"@method\");created=@1700000000",
        // Uppercase field name.
        "sig1=(\"@method\" \"@target-uri\" \"Content-Digest\");created=1700000000;keyid=\"0193f1c2-agent\"",
        // Repeated component.
        "sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"@method\");created=1700000000;keyid=\"0193f1c2-agent\"",
        // @signature-params cannot be covered.
        "sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"@signature-params\");created=1700000000;keyid=\"0193f1c2-agent\"",
    ] {
        let mut h = good.clone();
        set(&mut h, "signature-input", bad);
        assert_malformed(verify(&h), "signature-input");
    }
}

#[test]
fn wrongly_typed_parameters_are_refused() {
    let good = signed(Some("n"));
    for (bad, field) in [
        (
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=\"1700000000\";keyid=\"0193f1c2-agent\"",
            "created",
        ),
        (
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=abc;keyid=\"0193f1c2-agent\"",
            "created",
        ),
        (
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1700000000;keyid=agent",
            "keyid",
        ),
        (
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1700000000;keyid=\"0193f1c2-agent\";alg=ed25519",
            "alg",
        ),
        (
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1700000000.5;keyid=\"0193f1c2-agent\"",
            "created",
        ),
        (
            "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1700000000;keyid=\"0193f1c2-agent\";nonce=\"\"",
            "nonce",
        ),
    ] {
        let mut h = good.clone();
        set(&mut h, "signature-input", bad);
        assert_malformed(verify(&h), field);
    }
}

#[test]
fn unsupported_parameters_and_component_parameters_are_refused() {
    let mut h = signed(Some("n"));
    set(
        &mut h,
        "signature-input",
        "sig1=(\"@method\" \"@target-uri\" \"content-digest\");created=1700000000;keyid=\"0193f1c2-agent\";foo=1",
    );
    assert_eq!(
        verify(&h).unwrap_err(),
        SigError::UnsupportedParameter("foo".into())
    );

    set(
        &mut h,
        "signature-input",
        "sig1=(\"@method\" \"@target-uri\" \"content-digest\";sf);created=1700000000;keyid=\"0193f1c2-agent\"",
    );
    assert_eq!(
        verify(&h).unwrap_err(),
        SigError::UnsupportedComponent("content-digest;sf".into())
    );

    set(
        &mut h,
        "signature-input",
        "sig1=(\"@method\" \"@target-uri\" \"content-digest\" \"@status\");created=1700000000;keyid=\"0193f1c2-agent\"",
    );
    assert_eq!(
        verify(&h).unwrap_err(),
        SigError::UnsupportedComponent("@status".into())
    );
}

#[test]
fn malformed_signature_is_refused() {
    let good = signed(Some("n"));
    for bad in [
        "sig1=:AAAA:",        // 3 bytes, not 64
        "sig1=\"not bytes\"", // a string
        "sig1=:!!!:",         // not base64
        "sig1=(:AAAA:)",      // an inner list
        "sig1",               // boolean true
    ] {
        let mut h = good.clone();
        set(&mut h, "signature", bad);
        assert_malformed(verify(&h), "signature");
    }
    // A valid signature with parameters attached is refused too.
    let mut h = good.clone();
    let sig = format!("{};x=1", good["signature"].to_str().unwrap());
    set(&mut h, "signature", &sig);
    assert_malformed(verify(&h), "signature");
}

#[test]
fn label_mismatch_is_refused() {
    let mut h = signed(Some("n"));
    let sig = h["signature"]
        .to_str()
        .unwrap()
        .replacen("sig1=", "sig2=", 1);
    set(&mut h, "signature", &sig);
    assert_eq!(verify(&h).unwrap_err(), SigError::NoCommonLabel);

    // A label asked for by the policy must be present in both headers.
    let h = signed(Some("n"));
    let mut policy = VerifyPolicy::new(CREATED);
    policy.label = Some("sig2".into());
    assert_eq!(
        verify_request(&Method::POST, URL, &h, BODY, &policy, lookup).unwrap_err(),
        SigError::LabelNotFound("sig2".into())
    );
    policy.label = Some("sig1".into());
    verify_request(&Method::POST, URL, &h, BODY, &policy, lookup).unwrap();
}

#[test]
fn first_common_label_is_verified_and_header_lines_are_joined() {
    let a = signed_with("proxy", &["@method"], &[SignatureParam::Created(CREATED)]);
    let b = signed(Some("n"));
    let mut h = b.clone();
    // Two Signature-Input lines and two Signature lines: RFC 9110 §5.3 joins them.
    h.append("signature-input", a["signature-input"].clone());
    h.append("signature", a["signature"].clone());
    let v = verify(&h).unwrap();
    assert_eq!(v.label, "sig1");

    // With the other signature first, it is picked, and refused for lacking components.
    let mut h = b.clone();
    h.insert("signature-input", a["signature-input"].clone());
    h.append("signature-input", b["signature-input"].clone());
    h.insert("signature", a["signature"].clone());
    h.append("signature", b["signature"].clone());
    assert_eq!(
        verify(&h).unwrap_err(),
        SigError::MissingComponent("@target-uri".into())
    );
}

#[test]
fn signer_refuses_bad_input() {
    let s = signer();
    assert!(matches!(
        s.sign(&Method::POST, "/v1/actions", &HeaderMap::new(), BODY, CREATED, None),
        Err(SigError::Malformed { field, .. }) if field == "@target-uri"
    ));
    assert!(matches!(
        s.sign(&Method::POST, "ftp://aaf.example.com/", &HeaderMap::new(), BODY, CREATED, None),
        Err(SigError::Malformed { field, .. }) if field == "@target-uri"
    ));
    assert!(matches!(
        s.sign(&Method::POST, "https://u:p@aaf.example.com/", &HeaderMap::new(), BODY, CREATED, None),
        Err(SigError::Malformed { field, .. }) if field == "@target-uri"
    ));
    assert!(matches!(
        s.sign(&Method::POST, URL, &HeaderMap::new(), BODY, CREATED, Some("caf\u{e9}")),
        Err(SigError::Malformed { field, .. }) if field == "nonce"
    ));
    let bad_id = Signer::new("agent\n1", SigningKey::from_bytes(&[1; 32]));
    assert!(matches!(
        bad_id.sign(&Method::POST, URL, &HeaderMap::new(), BODY, CREATED, None),
        Err(SigError::Malformed { field, .. }) if field == "keyid"
    ));
}

#[test]
fn debug_does_not_show_the_private_key() {
    let s = signer();
    let shown = format!("{s:?}");
    assert!(shown.contains(KEY_ID));
    assert!(shown.contains(&s.public_key_base64()));
    let secret = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [42u8; 32]);
    assert!(!shown.contains(&secret));
}

#[test]
fn keyid_and_nonce_with_quotes_round_trip() {
    let s = Signer::new(r#"a"b\c"#, SigningKey::from_bytes(&[9; 32]));
    let mut h = HeaderMap::new();
    s.apply(&Method::POST, URL, &mut h, BODY, CREATED, Some(r#"n"1\"#))
        .unwrap();
    assert!(h["signature-input"]
        .to_str()
        .unwrap()
        .contains(r#"keyid="a\"b\\c""#));
    let key = s.verifying_key();
    let v = verify_request(
        &Method::POST,
        URL,
        &h,
        BODY,
        &VerifyPolicy::new(CREATED),
        |id| (id == r#"a"b\c"#).then_some(key),
    )
    .unwrap();
    assert_eq!(v.nonce.as_deref(), Some(r#"n"1\"#));
}
