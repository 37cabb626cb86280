//! Published test vectors: RFC 9421 Appendix B.2.6 (ed25519) and RFC 9530 digests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aaf_httpsig::{
    content_digest, verify_content_digest, verify_request, RequestParts, SigError, SignatureParam,
    Signer, VerifyPolicy,
};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use http::{HeaderMap, HeaderValue, Method};

// RFC 9421 Appendix B.1.4, "Example Ed25519 Test Key" (`test-key-ed25519`), PKCS#8 / SPKI PEM.
// Decoded with ed25519-dalek's `pkcs8` + `pem` features (dev-dependency only).
const TEST_KEY_ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
";
const TEST_KEY_ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
";

// RFC 9421 Appendix B.2: the test request `POST /foo?param=Value&Pet=dog` to example.com.
const BODY: &[u8] = br#"{"hello": "world"}"#;
const TARGET: &str = "https://example.com/foo?param=Value&Pet=dog";

fn test_request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "example.com"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        (
            "content-digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        ("content-length", "18"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    h
}

// RFC 9421 Appendix B.2.6, with the RFC 8792 line wrapping undone.
const B26_COVERED: [&str; 6] = [
    "date",
    "@method",
    "@path",
    "@authority",
    "content-type",
    "content-length",
];
const B26_CREATED: i64 = 1618884473;
const B26_BASE: &str = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
\"@method\": POST\n\
\"@path\": /foo\n\
\"@authority\": example.com\n\
\"content-type\": application/json\n\
\"content-length\": 18\n\
\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
const B26_SIGNATURE_INPUT: &str = "sig-b26=(\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
const B26_SIGNATURE: &str = "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";

fn test_keys() -> (SigningKey, VerifyingKey) {
    let private = SigningKey::from_pkcs8_pem(TEST_KEY_ED25519_PRIVATE).unwrap();
    let public = VerifyingKey::from_public_key_pem(TEST_KEY_ED25519_PUBLIC).unwrap();
    (private, public)
}

#[test]
fn b14_private_and_public_keys_belong_together() {
    let (private, public) = test_keys();
    assert_eq!(private.verifying_key(), public);
    // The PKCS#8 DER ends with the 32-byte seed; the SPKI DER with the 32-byte public key.
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode("MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF")
        .unwrap();
    assert_eq!(&der[der.len() - 32..], private.to_bytes().as_slice());
}

#[test]
fn b26_signature_base_and_signature_match_the_rfc() {
    let (private, _) = test_keys();
    let signer = Signer::new("test-key-ed25519", private);
    let headers = test_request_headers();
    let request = RequestParts {
        method: &Method::POST,
        target_uri: TARGET,
        headers: &headers,
    };
    let fields = signer
        .sign_components(
            "sig-b26",
            &request,
            &B26_COVERED,
            &[
                SignatureParam::Created(B26_CREATED),
                SignatureParam::KeyId("test-key-ed25519".into()),
            ],
        )
        .unwrap();
    assert_eq!(fields.signature_base, B26_BASE);
    assert_eq!(fields.signature_input, B26_SIGNATURE_INPUT);
    // Ed25519 is deterministic (RFC 8032), so the signature is byte for byte the RFC's.
    assert_eq!(fields.signature, B26_SIGNATURE);
}

fn b26_policy(now: i64) -> VerifyPolicy {
    let mut policy = VerifyPolicy::new(now);
    policy.required_components = vec!["@method".into(), "@authority".into(), "@path".into()];
    policy
}

#[test]
fn b26_rfc_headers_verify() {
    let (_, public) = test_keys();
    let mut headers = test_request_headers();
    headers.insert(
        "signature-input",
        HeaderValue::from_static(B26_SIGNATURE_INPUT),
    );
    headers.insert("signature", HeaderValue::from_static(B26_SIGNATURE));
    let verified = verify_request(
        &Method::POST,
        TARGET,
        &headers,
        BODY,
        &b26_policy(B26_CREATED + 10),
        |id| (id == "test-key-ed25519").then_some(public),
    )
    .unwrap();
    assert_eq!(verified.label, "sig-b26");
    assert_eq!(verified.key_id, "test-key-ed25519");
    assert_eq!(verified.created, B26_CREATED);
    assert_eq!(verified.nonce, None);
    assert_eq!(verified.covered, B26_COVERED);

    // The RFC's request carries a sha-512 Content-Digest (not covered by sig-b26); it is still
    // checked against the body when present.
    let err = verify_request(
        &Method::POST,
        TARGET,
        &headers,
        br#"{"hello": "World"}"#,
        &b26_policy(B26_CREATED + 10),
        |_| Some(public),
    )
    .unwrap_err();
    assert_eq!(err, SigError::DigestMismatch("sha-512"));
}

#[test]
fn b26_rfc_headers_refused_when_a_covered_header_changes() {
    let (_, public) = test_keys();
    let mut headers = test_request_headers();
    headers.insert(
        "signature-input",
        HeaderValue::from_static(B26_SIGNATURE_INPUT),
    );
    headers.insert("signature", HeaderValue::from_static(B26_SIGNATURE));
    headers.insert(
        "date",
        HeaderValue::from_static("Tue, 20 Apr 2021 02:07:56 GMT"),
    );
    let err = verify_request(
        &Method::POST,
        TARGET,
        &headers,
        BODY,
        &b26_policy(B26_CREATED),
        |_| Some(public),
    )
    .unwrap_err();
    assert_eq!(err, SigError::BadSignature);
}

#[test]
fn rfc9530_sha256_of_hello_world() {
    assert_eq!(
        content_digest(br#"{"hello": "world"}"#),
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    );
    verify_content_digest(
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        br#"{"hello": "world"}"#,
    )
    .unwrap();
}

#[test]
fn rfc9530_section2_sha512_example() {
    // RFC 9530 §2's sha-512 example value: the digest of `{"hello": "world"}` plus a newline.
    let value = "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:";
    verify_content_digest(value, b"{\"hello\": \"world\"}\n").unwrap();
    assert_eq!(
        verify_content_digest(value, br#"{"hello": "world"}"#),
        Err(SigError::DigestMismatch("sha-512"))
    );
}

#[test]
fn rfc9421_b2_sha512_content_digest_matches_body() {
    // The Content-Digest of RFC 9421's test request (Appendix B.2).
    verify_content_digest(
        test_request_headers()["content-digest"].to_str().unwrap(),
        BODY,
    )
    .unwrap();
}
