//! Redaction of sensitive fields before values are written to the audit log.
//!
//! The field names follow the product's security guide (seed 000: `password`, `api_key`,
//! `token`, `credit_card`, `ssn`) plus the usual HTTP credential headers. A key matches when its
//! lowercase form, with `-` read as `_`, equals one of [`SENSITIVE_KEYS`] or ends with `_<key>`
//! for the multi-word ones (e.g. `x_api_key`, `stripe_secret`).

use serde_json::Value;

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
pub fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    SENSITIVE_KEYS
        .iter()
        .any(|s| k == *s || k.ends_with(&format!("_{s}")))
}

/// Returns a copy of `value` in which the value of every sensitive key, at any depth, is
/// replaced by [`REDACTED`].
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_sensitive_key(k) {
                        Value::String(REDACTED.to_string())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
