//! Redaction of sensitive data before values are written to the audit log or shown by the
//! API.
//!
//! Two rules, applied in this order:
//!
//! 1. By key name. The field names follow the product's security guide (seed 000: `password`,
//!    `api_key`, `token`, `credit_card`, `ssn`) plus the usual HTTP credential headers. A key
//!    matches when its lowercase form, with `-` read as `_`, equals one of [`SENSITIVE_KEYS`]
//!    or ends with `_<key>` for the multi-word ones (e.g. `x_api_key`, `stripe_secret`). Its
//!    whole value (of any type) becomes [`REDACTED`].
//! 2. By content. Every other string, number and object key is scanned with the detectors of
//!    [`DetectorSet::redaction`] (US SSNs, payment card numbers and every secret detector; see
//!    [`crate::detect`]), without size limits, and each match is masked in place by
//!    [`crate::detect::mask_text`]: card numbers and SSNs keep their shape and last four
//!    digits (`card **** **** **** 1111 please`), secrets become `[REDACTED:<detector>]`, the
//!    surrounding text stays. A number holding a match becomes the masked string.

use serde_json::Value;

use crate::detect::{mask_value_in_place, DetectorLimits, DetectorSet, ScanOptions};

/// The replacement written instead of a sensitive value.
pub const REDACTED: &str = "[REDACTED]";

/// Keys whose values are never written to the audit log.
pub const SENSITIVE_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "refresh_token",
    "authorization",
    "proxy_authorization",
    "cookie",
    "set_cookie",
    "credit_card",
    "card_number",
    "ssn",
    "private_key",
    "client_secret",
    "x_api_key",
];

/// True when `key` names a sensitive field (see the module documentation).
///
/// Compares in place (ASCII letters case-insensitively, `-` as `_`), without allocating: it
/// runs for every key of every action's parameters and context.
pub fn is_sensitive_key(key: &str) -> bool {
    fn normal(byte: u8) -> u8 {
        if byte == b'-' {
            b'_'
        } else {
            byte.to_ascii_lowercase()
        }
    }
    let key = key.as_bytes();
    SENSITIVE_KEYS.iter().any(|name| {
        let name = name.as_bytes();
        let Some(start) = key.len().checked_sub(name.len()) else {
            return false;
        };
        key[start..].iter().zip(name).all(|(k, n)| normal(*k) == *n)
            && (start == 0 || normal(key[start - 1]) == b'_')
    })
}

/// Returns a copy of `value` in which the value of every sensitive key, at any depth, is
/// replaced by [`REDACTED`], and every SSN, payment card number and secret found in the
/// other strings, numbers and keys is masked (see the module documentation).
pub fn redact(value: &Value) -> Value {
    let mut out = redact_keys(value);
    redact_content(&mut out);
    out
}

/// Masks, in place, the SSNs, payment card numbers and secrets in the strings, numbers and
/// keys of `value` (rule 2 of the module documentation). Returns whether anything was
/// masked.
pub fn redact_content(value: &mut Value) -> bool {
    if !may_need_redaction(value) {
        return false;
    }
    let opts = ScanOptions {
        detectors: DetectorSet::redaction(),
        limits: DetectorLimits::unbounded(),
    };
    !mask_value_in_place(value, &opts).detections.is_empty()
}

/// Whether any string, number or key of `value` passes the byte-level tests the redaction
/// detectors apply before they search (an SSN or card number needs at least 9 digits, a
/// secret rule a token run of 10 characters, an `@` or `-----`, the generic-secret rule a
/// key-like member name over a long enough value): when none does, the scan would find nothing, and most action parameters
/// (short words, ids, small numbers) are skipped without it.
fn may_need_redaction(value: &Value) -> bool {
    use crate::detect::secrets::{is_key_like, GENERIC_MIN_LEN};
    // One pass over the bytes: 9 digits (SSN, card), a token run of 10 (every token rule),
    // `@` (credentials in a URL) or `-----` (a private key block); what
    // `Facts::may_hold_secret` and the PII rules' digit counts require.
    let text_may = |text: &str| {
        let (mut digits, mut run, mut dashes) = (0usize, 0usize, 0usize);
        for &b in text.as_bytes() {
            digits += usize::from(b.is_ascii_digit());
            let token = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-');
            run = if token { run + 1 } else { 0 };
            dashes = if b == b'-' { dashes + 1 } else { 0 };
            if digits >= 9 || run >= 10 || dashes >= 5 || b == b'@' {
                return true;
            }
        }
        false
    };
    // The generic-secret rule: a key-like member name over a value of at least
    // `GENERIC_MIN_LEN` characters without whitespace.
    let generic_may = |key: &str, item: &Value| {
        let long = match item {
            Value::String(s) => {
                s.trim().len() >= GENERIC_MIN_LEN && !s.trim().contains(char::is_whitespace)
            }
            Value::Number(_) => true,
            _ => false,
        };
        long && is_key_like(key)
    };
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(text) => {
                if text_may(text) {
                    return true;
                }
            }
            Value::Number(number) => {
                if text_may(&number.to_string()) {
                    return true;
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(map) => {
                for (key, item) in map {
                    if text_may(key) || generic_may(key, item) {
                        return true;
                    }
                    stack.push(item);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
    false
}

/// Rule 1 of the module documentation.
fn redact_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_sensitive_key(k) {
                        Value::String(REDACTED.to_string())
                    } else {
                        redact_keys(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact_keys).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_matching_agrees_with_the_lowercase_and_suffix_rule() {
        // The rule as the module states it, written the obvious (allocating) way.
        fn reference(key: &str) -> bool {
            let k = key.to_ascii_lowercase().replace('-', "_");
            SENSITIVE_KEYS
                .iter()
                .any(|s| k == *s || k.ends_with(&format!("_{s}")))
        }
        let mut keys: Vec<String> = vec![
            "".into(),
            "_".into(),
            "token".into(),
            "Token".into(),
            "TOKEN".into(),
            "my_token".into(),
            "my-Token".into(),
            "mytoken".into(),
            "token_x".into(),
            "_token".into(),
            "-token".into(),
            "x-api-key".into(),
            "X_API_KEY".into(),
            "apikey".into(),
            "stripe_secret".into(),
            "secrets".into(),
            "é_token".into(),
            "étoken".into(),
            "ssn".into(),
            "a_ssn".into(),
            "assn".into(),
            "Set-Cookie".into(),
            "cookie_".into(),
            "ToKeN_ToKeN".into(),
            "tokén".into(),
            "к_token".into(),
        ];
        for name in SENSITIVE_KEYS {
            for prefix in ["", "_", "-", "x_", "X-", "x", "ü_", "é"] {
                for variant in [
                    name.to_string(),
                    name.to_uppercase(),
                    name.replace('_', "-"),
                ] {
                    keys.push(format!("{prefix}{variant}"));
                    keys.push(format!("{prefix}{variant}s"));
                }
            }
        }
        for key in &keys {
            assert_eq!(is_sensitive_key(key), reference(key), "{key:?}");
        }
    }

    #[test]
    fn redacts_nested_sensitive_fields_only() {
        let v = json!({
            "url": "https://x",
            "headers": {"Authorization": "Bearer abc", "Accept": "json", "X-Api-Key": "k"},
            "body": {"password": "p", "items": [{"card_number": "4111"}], "amount": 5}
        });
        let r = redact(&v);
        assert_eq!(r["headers"]["Authorization"], REDACTED);
        assert_eq!(r["headers"]["X-Api-Key"], REDACTED);
        assert_eq!(r["headers"]["Accept"], "json");
        assert_eq!(r["body"]["password"], REDACTED);
        assert_eq!(r["body"]["items"][0]["card_number"], REDACTED);
        assert_eq!(r["body"]["amount"], 5);
        assert_eq!(r["url"], "https://x");
    }

    #[test]
    fn redacts_card_numbers_ssns_and_secrets_in_free_text() {
        let v = json!({
            "note": "card 4111 1111 1111 1111 please",
            "memo": ["ssn is 078-05-1123.", "call me"],
            "amount": 4111111111111111u64,
            "cfg": "export GITHUB=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 now",
            "url": "https://user:hunter22@db.example.com/x",
            "4012888888881881": "as a key",
            "plain": "order 12345 for 42.50 EUR, see https://x",
            "email": "a@example.com",
        });
        let r = redact(&v);
        assert_eq!(r["note"], "card **** **** **** 1111 please");
        assert_eq!(r["memo"], json!(["ssn is ***-**-1123.", "call me"]));
        assert_eq!(r["amount"], "************1111");
        assert_eq!(r["cfg"], "export GITHUB=[REDACTED:github_token] now");
        assert_eq!(
            r["url"],
            "https://user:[REDACTED:url_credentials]@db.example.com/x"
        );
        assert_eq!(r["************1881"], "as a key");
        assert_eq!(r["plain"], v["plain"]);
        // Email addresses are personal data but not redacted from the audit chain.
        assert_eq!(r["email"], "a@example.com");
    }

    #[test]
    fn the_precheck_skips_only_values_without_candidates() {
        assert!(!may_need_redaction(
            &json!({"q": "refund policy", "limit": 5, "context": {"user_id": "user-456"}})
        ));
        for v in [
            json!({"n": 123456789}),
            json!({"t": "ghp_aaaaaaaaaa"}),
            json!({"u": "https://a@b"}),
            json!({"k": "-----BEGIN"}),
            json!([{"hmac_key": "aB3.xY9!kL2#pQ"}]),
            json!({"4111111111111111": true}),
        ] {
            assert!(may_need_redaction(&v), "{v}");
        }
    }

    #[test]
    fn key_rule_comes_first_and_content_rule_skips_nothing_else() {
        let v = json!({"password": "4111 1111 1111 1111", "body": {"text": "078-05-1123"}});
        let r = redact(&v);
        assert_eq!(r["password"], REDACTED);
        assert_eq!(r["body"]["text"], "***-**-1123");
        let mut clean = json!({"a": ["b", 1, null, true]});
        assert!(!redact_content(&mut clean));
        assert_eq!(clean, json!({"a": ["b", 1, null, true]}));
    }
}
