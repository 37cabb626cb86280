//! Component values (RFC 9421 §2.1, §2.2), the signature base layout and `target_uri`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aaf_httpsig::{
    component_value, signature_base, target_uri, verify_content_digest, RequestParts, SigError,
    SignatureParam,
};
use http::{HeaderMap, HeaderValue, Method};

fn value(target: &str, headers: &HeaderMap, component: &str) -> Result<String, SigError> {
    component_value(
        component,
        &RequestParts {
            method: &Method::POST,
            target_uri: target,
            headers,
        },
    )
}

#[test]
fn derived_components_rfc9421_section_2_2_examples() {
    let h = HeaderMap::new();
    // §2.2.2 to §2.2.7 use `POST /path?param=value` to www.example.com over https.
    let t = "https://www.example.com/path?param=value";
    assert_eq!(value(t, &h, "@method").unwrap(), "POST");
    assert_eq!(value(t, &h, "@target-uri").unwrap(), t);
    assert_eq!(value(t, &h, "@authority").unwrap(), "www.example.com");
    assert_eq!(value(t, &h, "@scheme").unwrap(), "https");
    assert_eq!(
        value(t, &h, "@request-target").unwrap(),
        "/path?param=value"
    );
    assert_eq!(value(t, &h, "@path").unwrap(), "/path");
    assert_eq!(value(t, &h, "@query").unwrap(), "?param=value");
}

#[test]
fn query_and_path_edge_cases() {
    let h = HeaderMap::new();
    // §2.2.7: no query is `?` alone; an empty query is `?` too.
    assert_eq!(value("https://a.example/p", &h, "@query").unwrap(), "?");
    assert_eq!(value("https://a.example/p?", &h, "@query").unwrap(), "?");
    // §2.2.7 example: the query is not decoded.
    assert_eq!(
        value("https://a.example/p?queryString=%21&x=1", &h, "@query").unwrap(),
        "?queryString=%21&x=1"
    );
    // §2.2.6: an empty path is `/`.
    assert_eq!(value("https://a.example", &h, "@path").unwrap(), "/");
    assert_eq!(
        value("https://a.example", &h, "@request-target").unwrap(),
        "/"
    );
}

#[test]
fn authority_is_normalised() {
    let h = HeaderMap::new();
    assert_eq!(
        value("https://WWW.Example.COM:443/", &h, "@authority").unwrap(),
        "www.example.com"
    );
    assert_eq!(
        value("http://example.com:80/", &h, "@authority").unwrap(),
        "example.com"
    );
    assert_eq!(
        value("https://example.com:8443/", &h, "@authority").unwrap(),
        "example.com:8443"
    );
    assert_eq!(
        value("http://example.com:443/", &h, "@authority").unwrap(),
        "example.com:443"
    );
    assert_eq!(
        value("https://[::1]:443/", &h, "@authority").unwrap(),
        "[::1]"
    );
    assert_eq!(
        value("HTTPS://example.com/", &h, "@scheme").unwrap(),
        "https"
    );
}

#[test]
fn field_values_are_trimmed_and_joined() {
    let mut h = HeaderMap::new();
    h.append("x-list", HeaderValue::from_static("  a, b  "));
    h.append("x-list", HeaderValue::from_static("\tc"));
    h.insert("x-empty", HeaderValue::from_static(""));
    // RFC 9421 §2.1: each line trimmed, joined with ", ".
    assert_eq!(
        value("https://a.example/", &h, "x-list").unwrap(),
        "a, b, c"
    );
    assert_eq!(value("https://a.example/", &h, "x-empty").unwrap(), "");
    assert_eq!(
        value("https://a.example/", &h, "x-absent").unwrap_err(),
        SigError::ComponentUnavailable("x-absent".into())
    );
    assert!(matches!(
        value("https://a.example/", &h, "X-List"),
        Err(SigError::Malformed { .. })
    ));
    h.insert("x-bin", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
    assert!(matches!(
        value("https://a.example/", &h, "x-bin"),
        Err(SigError::Malformed { field, .. }) if field == "x-bin"
    ));
}

#[test]
fn unsupported_derived_components() {
    let h = HeaderMap::new();
    for c in ["@status", "@query-param", "@foo"] {
        assert_eq!(
            value("https://a.example/", &h, c).unwrap_err(),
            SigError::UnsupportedComponent(c.into())
        );
    }
}

#[test]
fn signature_base_layout() {
    let mut h = HeaderMap::new();
    h.insert("content-digest", HeaderValue::from_static("sha-256=:AAAA:"));
    let base = signature_base(
        &RequestParts {
            method: &Method::POST,
            target_uri: "https://aaf.example.com/v1/actions",
            headers: &h,
        },
        &["@method", "@target-uri", "content-digest"],
        &[
            SignatureParam::Created(1700000000),
            SignatureParam::KeyId("k".into()),
            SignatureParam::Alg("ed25519".into()),
            SignatureParam::Nonce("n".into()),
        ],
    )
    .unwrap();
    assert_eq!(
        base,
        "\"@method\": POST\n\
         \"@target-uri\": https://aaf.example.com/v1/actions\n\
         \"content-digest\": sha-256=:AAAA:\n\
         \"@signature-params\": (\"@method\" \"@target-uri\" \"content-digest\");\
         created=1700000000;keyid=\"k\";alg=\"ed25519\";nonce=\"n\""
    );
}

#[test]
fn signature_base_refuses_repeats() {
    let h = HeaderMap::new();
    let r = RequestParts {
        method: &Method::GET,
        target_uri: "https://a.example/",
        headers: &h,
    };
    assert!(matches!(
        signature_base(&r, &["@method", "@method"], &[]),
        Err(SigError::Malformed { .. })
    ));
    assert!(matches!(
        signature_base(
            &r,
            &["@method"],
            &[SignatureParam::Created(1), SignatureParam::Created(2)]
        ),
        Err(SigError::Malformed { field, .. }) if field == "created"
    ));
}

#[test]
fn target_uri_helper() {
    assert_eq!(
        target_uri("https", "aaf.example.com", "/v1/actions"),
        "https://aaf.example.com/v1/actions"
    );
    assert_eq!(target_uri("HTTP", "Localhost:80", ""), "http://localhost/");
    assert_eq!(
        target_uri("http", "127.0.0.1:8080", "v1/actions?a=1&b=2"),
        "http://127.0.0.1:8080/v1/actions?a=1&b=2"
    );
    // Query case is kept.
    assert_eq!(
        target_uri("https", "a.example:443", "/p?Pet=Dog"),
        "https://a.example/p?Pet=Dog"
    );
}

#[test]
fn content_digest_rules() {
    let body = br#"{"hello": "world"}"#;
    let sha256 = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
    let sha512 = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
    // Both, either order; unknown algorithms ignored.
    verify_content_digest(&format!("{sha256}, {sha512}"), body).unwrap();
    verify_content_digest(&format!("md5=:AAAA:, {sha512}, unixsum=:AAAA:"), body).unwrap();
    // One good and one bad supported digest is refused.
    assert_eq!(
        verify_content_digest(&format!("{sha256}, sha-512=:AAAA:"), body),
        Err(SigError::DigestMismatch("sha-512"))
    );
    // Only unknown algorithms, or nothing at all.
    assert_eq!(
        verify_content_digest("md5=:AAAA:, sha=:AAAA:", body),
        Err(SigError::NoSupportedDigest)
    );
    assert_eq!(
        verify_content_digest("", body),
        Err(SigError::NoSupportedDigest)
    );
    // Wrong shapes.
    for bad in [
        "sha-256=\"X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=\"",
        "sha-256=(:AAAA:)",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
        "SHA-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
    ] {
        assert!(
            matches!(
                verify_content_digest(bad, body),
                Err(SigError::Malformed { ref field, .. }) if field == "content-digest"
            ),
            "{bad}: {:?}",
            verify_content_digest(bad, body)
        );
    }
    // A truncated digest is a mismatch.
    assert_eq!(
        verify_content_digest("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9D:", body),
        Err(SigError::DigestMismatch("sha-256"))
    );
}
