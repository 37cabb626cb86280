//! Canonical JSON: the byte form that audit hashes are computed over.
//!
//! The form is the JSON Canonicalization Scheme of RFC 8785 (JCS). [`to_canonical_json`]
//! writes it for a [`serde_json::Value`] by a direct walk (fast: it runs for every audit
//! event), using the `serde_jcs` crate for the formatting of doubles; tests check it byte
//! for byte against `serde_jcs`, which [`to_canonical_json_of`] uses for any `Serialize`
//! type. The rules:
//!
//! * object members are sorted by their names compared as UTF-16 code units (RFC 8785
//!   section 3.2.3), whatever order the value was built or parsed in (the workspace enables
//!   `serde_json`'s `preserve_order`, which does not affect the output);
//! * no whitespace between tokens;
//! * strings are UTF-8, escaping only `"`, `\` and the control characters U+0000..U+001F,
//!   with the short forms `\b \t \n \f \r` and lowercase `\u00xx` otherwise
//!   (RFC 8785 section 3.2.2.2);
//! * numbers are IEEE 754 doubles written as ECMAScript's `Number.prototype.toString`
//!   writes them (RFC 8785 section 3.2.2.3): `1.0` becomes `1`, `1e21` becomes `1e+21`,
//!   `0.000001` stays `0.000001` and `1e-7` becomes `1e-7`.
//!
//! **Exact numbers only.** RFC 8785 writes every number as the IEEE 754 double nearest to
//! it, so two integers beyond 2^53 that differ in their last digits (`4000000000000000015`
//! and `4000000000000000014`) would have one canonical form, while policies (regorus keeps
//! integers exact), connectors and readers of the stored JSON tell them apart. A hash over
//! such a form would stand for two different inputs. [`to_canonical_json`] therefore
//! refuses, with [`CanonicalError::InexactNumber`], every integer that I-JSON (RFC 7493
//! section 2.2) does not allow: those outside `[-(2^53-1), 2^53-1]`
//! ([`MAX_EXACT_INTEGER`]), and the doubles from 2^53 up to 10^21 in magnitude, which
//! RFC 8785 writes as such integers (`4e18` as `4000000000000000000`, which a reader takes
//! for an exact integer). Other numbers written with a fraction or an exponent are parsed
//! as the nearest double (`serde_json` with `float_roundtrip`), which is then the value
//! that policies see, the hash covers and connectors send, and whose canonical form reads
//! back as that double, so they are exact by construction.
//! The API refuses such integers at its boundary with a 400 naming the field
//! ([`find_inexact_number`]); agents send them as strings.
//!
//! This module does no I/O.

use std::cmp::Ordering;
use std::io::Write as _;

use serde::Serialize;
use serde_json::{Number, Value};

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// The value cannot be written as RFC 8785 JSON: a map key that is not a string, or a
    /// failing `Serialize` implementation.
    #[error("value has no canonical json form: {0}")]
    Unrepresentable(String),
    /// A number without an exact RFC 8785 form ([`is_exact_number`]): an integer outside
    /// `[-(2^53-1), 2^53-1]` ([`MAX_EXACT_INTEGER`]), which RFC 8785 would write as the
    /// nearest IEEE 754 double, shared with its neighbours, so a hash of it would not stand
    /// for the value (I-JSON, RFC 7493 section 2.2); or a double from 2^53 up to 10^21,
    /// which RFC 8785 writes as such an integer. Holds the number as `serde_json` writes it.
    #[error(
        "the number {0} is beyond -(2^53-1)..=2^53-1, the integers that RFC 8785 JSON \
         (IEEE 754 doubles; I-JSON, RFC 7493 section 2.2) writes exactly; send it as a string"
    )]
    InexactNumber(String),
}

/// The largest integer magnitude that I-JSON (RFC 7493 section 2.2) allows: 2^53 - 1. Every
/// integer up to it in magnitude is exactly one IEEE 754 double and no other integer maps
/// to that double, so RFC 8785's number form identifies it.
pub const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;

/// Doubles from 2^53 up to (not including) 10^21 in magnitude are integers that RFC 8785
/// writes with all their digits (section 3.2.2.3: ECMAScript uses exponent notation only
/// from 10^21): `4e18` becomes `4000000000000000000`, an integer literal beyond I-JSON's
/// range that readers (`serde_json`, regorus, Python) take as an exact integer, not as the
/// double, so the stored canonical text would not read back as the value hashed.
const EXPONENT_FORM_FROM: f64 = 1e21;

/// Whether `number` has an exact RFC 8785 form, one that reads back as the same value and
/// that no other value shares: an integer of magnitude at most [`MAX_EXACT_INTEGER`]
/// (I-JSON, RFC 7493 section 2.2), or a double of magnitude below 2^53 or from 10^21 on
/// (written in exponent form, `1e+21`). Integers from 2^53 on, and doubles from 2^53 up to
/// 10^21, are not.
pub fn is_exact_number(number: &Number) -> bool {
    if let Some(n) = number.as_u64() {
        n <= MAX_EXACT_INTEGER
    } else if let Some(n) = number.as_i64() {
        n.unsigned_abs() <= MAX_EXACT_INTEGER
    } else {
        number.as_f64().is_some_and(|x| {
            let magnitude = x.abs();
            magnitude <= MAX_EXACT_INTEGER as f64 || magnitude >= EXPONENT_FORM_FROM
        })
    }
}

/// A number that [`to_canonical_json`] refuses, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InexactNumber {
    /// The JSON path of the number from the value's root, e.g. `params.amount`,
    /// `params.items[2].n` or `params["a b"]`: members whose names are identifiers
    /// (`[A-Za-z_][A-Za-z0-9_]*`) as `.name`, other names as `["..."]` (a JSON string),
    /// array elements as `[index]`.
    pub path: String,
    /// The number as written by `serde_json` (its exact decimal digits).
    pub number: String,
}

impl std::fmt::Display for InexactNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is the number {}, an integer beyond -(2^53-1)..=2^53-1: AAF hashes JSON \
             numbers in RFC 8785 form (IEEE 754 doubles), which cannot tell such an integer \
             from its neighbours (I-JSON, RFC 7493 section 2.2 allows integers only in this \
             range); send it as a string, e.g. \"{}\"",
            self.path, self.number, self.number
        )
    }
}

/// Finds the first number (in document order, depth first) that [`to_canonical_json`]
/// would refuse ([`is_exact_number`]): an integer outside `[-(2^53-1), 2^53-1]` (I-JSON,
/// RFC 7493 section 2.2), or a double from 2^53 up to 10^21 in magnitude.
/// `root` names the value itself in the returned path (e.g. `params`; empty for none).
///
/// `None` when every number of `value` is exact ([`is_exact_number`]).
pub fn find_inexact_number(value: &Value, root: &str) -> Option<InexactNumber> {
    let mut path = root.to_string();
    walk_numbers(value, &mut path)
}

/// [`find_inexact_number`] for the members of an object (`root` names the object).
pub fn find_inexact_member(
    members: &serde_json::Map<String, Value>,
    root: &str,
) -> Option<InexactNumber> {
    let mut path = root.to_string();
    walk_members(members, &mut path)
}

fn walk_numbers(value: &Value, path: &mut String) -> Option<InexactNumber> {
    match value {
        Value::Number(number) if !is_exact_number(number) => Some(InexactNumber {
            path: path.clone(),
            number: number.to_string(),
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = walk_numbers(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(members) => walk_members(members, path),
        _ => None,
    }
}

fn walk_members(
    members: &serde_json::Map<String, Value>,
    path: &mut String,
) -> Option<InexactNumber> {
    members.iter().find_map(|(name, member)| {
        let len = path.len();
        push_member(path, name);
        let found = walk_numbers(member, path);
        path.truncate(len);
        found
    })
}

fn push_member(path: &mut String, name: &str) {
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if identifier {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(name);
    } else {
        path.push('[');
        path.push_str(&serde_json::Value::String(name.to_string()).to_string());
        path.push(']');
    }
}

/// Returns the RFC 8785 (JCS) canonical UTF-8 bytes of a JSON value.
///
/// The output does not depend on the order of object members in `value`. It is byte for
/// byte what `serde_jcs::to_vec` produces (a test checks this on generated values), written
/// by a direct walk over the value that avoids `serde_jcs`'s per-token allocations, since
/// every audit event is canonicalised on the write path.
///
/// # Errors
///
/// [`CanonicalError::InexactNumber`] for an integer outside `[-(2^53-1), 2^53-1]` (see the
/// module documentation): hashing its rounded form would let another integer share the
/// hash. Callers fail closed on it (no cache entry, no approval digest, no audit event).
pub fn to_canonical_json(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_canonical_json(&mut out, value)?;
    Ok(out)
}

/// The canonical form that AAF wrote before it refused inexact numbers: RFC 8785 exactly as
/// [`to_canonical_json`] except that every number without an exact form
/// ([`is_exact_number`]) is written as the IEEE 754 double nearest to it, as RFC 8785
/// section 3.2.2.3 does (`4000000000000000015` becomes `4000000000000000000`).
///
/// Only audit verification uses it, for events written by those versions whose `data`
/// holds such a number ([`crate::audit::ChainVerifier`]). It is safe there because no event
/// written since holds one: replacing a number of such an event by an inexact integer
/// changes this form, so the hash no longer matches. Never use it to hash new data.
///
/// # Errors
///
/// [`CanonicalError::Unrepresentable`] only (a number that is not a double).
pub fn to_rounded_canonical_json(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value, Numbers::Rounded)?;
    Ok(out)
}

/// Appends the RFC 8785 (JCS) canonical form of `value` to `out` (see [`to_canonical_json`]).
///
/// # Errors
///
/// As [`to_canonical_json`]; on error `out` holds a partial value.
pub fn write_canonical_json(out: &mut Vec<u8>, value: &Value) -> Result<(), CanonicalError> {
    write_value(out, value, Numbers::Exact)
}

/// How [`write_value`] writes numbers.
#[derive(Clone, Copy)]
enum Numbers {
    /// [`write_canonical_number`]: inexact numbers are refused.
    Exact,
    /// [`write_rounded_number`]: inexact numbers become the nearest double.
    Rounded,
}

fn write_value(out: &mut Vec<u8>, value: &Value, numbers: Numbers) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => match numbers {
            Numbers::Exact => write_canonical_number(out, number)?,
            Numbers::Rounded => write_rounded_number(out, number)?,
        },
        Value::String(text) => write_canonical_string(out, text)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, numbers)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| utf16_order(a.0, b.0));
            out.push(b'{');
            for (i, (key, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_string(out, key)?;
                out.push(b':');
                write_value(out, member, numbers)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// `number` as the nearest IEEE 754 double, written as ECMAScript writes it (RFC 8785
/// section 3.2.2.3).
fn write_double(out: &mut Vec<u8>, number: &Number) -> Result<(), CanonicalError> {
    let double = number.as_f64().ok_or_else(|| {
        CanonicalError::Unrepresentable(format!("number {number} is not a double"))
    })?;
    let text = serde_jcs::to_vec(&double).map_err(unrepresentable)?;
    out.extend_from_slice(&text);
    Ok(())
}

/// A number as RFC 8785 writes it, rounded to the nearest double when it has no exact form
/// ([`to_rounded_canonical_json`]).
fn write_rounded_number(out: &mut Vec<u8>, number: &Number) -> Result<(), CanonicalError> {
    if is_exact_number(number) {
        return write_canonical_number(out, number);
    }
    write_double(out, number)
}

/// Appends a JSON string in RFC 8785 form (section 3.2.2.2): `"` and `\` escaped, control
/// characters as `\b \t \n \f \r` or lowercase `\u00xx`, everything else as UTF-8.
///
/// # Errors
///
/// None in practice (writing to a `Vec` cannot fail).
pub fn write_canonical_string(out: &mut Vec<u8>, text: &str) -> Result<(), CanonicalError> {
    // serde_json escapes exactly the RFC 8785 set, with the same spellings.
    serde_json::to_writer(&mut *out, text).map_err(unrepresentable)
}

/// Appends a number in RFC 8785 form (section 3.2.2.3, ECMAScript `Number.prototype.toString`
/// of the IEEE 754 double): integers up to 2^53-1 in magnitude as their digits, doubles
/// through the double formatting of `serde_jcs` (so `1e21` is `1e+21`, `4.50` is `4.5`).
///
/// # Errors
///
/// [`CanonicalError::InexactNumber`] for an integer outside `[-(2^53-1), 2^53-1]`
/// (I-JSON, RFC 7493 section 2.2), which has no form of its own.
pub fn write_canonical_number(out: &mut Vec<u8>, number: &Number) -> Result<(), CanonicalError> {
    if let Some(n) = number.as_u64() {
        if n <= MAX_EXACT_INTEGER {
            return write!(out, "{n}").map_err(unrepresentable);
        }
        return Err(CanonicalError::InexactNumber(n.to_string()));
    } else if let Some(n) = number.as_i64() {
        if n.unsigned_abs() <= MAX_EXACT_INTEGER {
            return write!(out, "{n}").map_err(unrepresentable);
        }
        return Err(CanonicalError::InexactNumber(n.to_string()));
    }
    if !is_exact_number(number) {
        return Err(CanonicalError::InexactNumber(number.to_string()));
    }
    write_double(out, number)
}

/// Orders member names by their UTF-16 code units (RFC 8785 section 3.2.3).
fn utf16_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

fn unrepresentable(error: impl std::fmt::Display) -> CanonicalError {
    CanonicalError::Unrepresentable(error.to_string())
}

/// Returns the RFC 8785 (JCS) canonical UTF-8 bytes of any serializable value: it is
/// converted to a JSON value (structs become objects with their serialized field names)
/// and written by [`to_canonical_json`], so the same numbers are refused.
///
/// # Errors
///
/// [`CanonicalError::Unrepresentable`] for map keys that are not strings (or integers, which
/// `serde_json` turns into strings) and failing `Serialize` implementations;
/// [`CanonicalError::InexactNumber`] as [`to_canonical_json`]. Non-finite floats are
/// written as `null`, as `serde_json` writes them; RFC 8785 has no form for them.
pub fn to_canonical_json_of<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    to_canonical_json(&serde_json::to_value(value).map_err(unrepresentable)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn canon(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(to_canonical_json(&value).unwrap()).unwrap()
    }

    #[test]
    fn rfc8785_section_3_2_2_example() {
        // RFC 8785 section 3.2.2: the input and its canonical form.
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        let expected = concat!(
            r#"{"literals":[null,true,false],"#,
            r#""numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
            r#""string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        assert_eq!(canon(input), expected);
    }

    #[test]
    fn rfc8785_section_3_2_3_sorting_example() {
        // RFC 8785 section 3.2.3: keys sort by UTF-16 code units, so U+1F600 (a surrogate
        // pair starting 0xD83D) sorts before U+FB33 even though its code point is larger.
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let expected = concat!(
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",",
            "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",",
            "\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",",
            "\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
        assert_eq!(canon(input), expected);
    }

    #[test]
    fn numbers_follow_ecmascript_formatting() {
        // RFC 8785 appendix B samples and the cases the audit format relies on.
        let cases = [
            ("1.0", "1"),
            ("-0.0", "0"),
            ("0", "0"),
            ("1e21", "1e+21"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("4.5", "4.5"),
            ("0.1", "0.1"),
            ("-1.5e-10", "-1.5e-10"),
            ("9007199254740991", "9007199254740991"),
            ("-9007199254740991", "-9007199254740991"),
            ("9007199254740991.0", "9007199254740991"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("5e-324", "5e-324"),
            // Beyond u64, serde_json reads an integer as the nearest double: that double
            // is the value policies see and connectors send, and from 10^21 on its form
            // is in exponent notation, read back as that double.
            ("2951479051793528300000", "2.951479051793528e+21"),
        ];
        for (input, expected) in cases {
            assert_eq!(canon(input), expected, "input {input}");
        }
    }

    #[test]
    fn integers_beyond_i_json_are_refused_not_rounded() {
        // I-JSON (RFC 7493 section 2.2): only -(2^53-1)..=2^53-1. Each pair differs only
        // beyond double precision; rounding gave both one form (so one hash).
        let pairs = [
            ("4000000000000000015", "4000000000000000014"),
            ("9007199254740993", "9007199254740992"),
            ("18446744073709551615", "18446744073709551614"),
            ("-9223372036854775808", "-9223372036854775807"),
            ("-9007199254740993", "-9007199254740992"),
        ];
        for (a, b) in pairs {
            for text in [a, b] {
                let value: Value = serde_json::from_str(&format!("{{\"n\":[{text}]}}")).unwrap();
                assert_eq!(
                    to_canonical_json(&value),
                    Err(CanonicalError::InexactNumber(text.to_string())),
                    "{text}"
                );
                let found = find_inexact_number(&value, "params").unwrap();
                assert_eq!(found.path, "params.n[0]");
                assert_eq!(found.number, text);
                assert!(found.to_string().contains("send it as a string"), "{found}");
            }
        }
        // Doubles from 2^53 up to 10^21 would be written as such integers.
        for text in [
            "9007199254740992.0",
            "4e18",
            "-6.9944e18",
            "1e20",
            "9.99e20",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            assert!(value.is_f64());
            assert!(
                matches!(
                    to_canonical_json(&value),
                    Err(CanonicalError::InexactNumber(_))
                ),
                "{text}"
            );
            assert!(find_inexact_number(&value, "n").is_some(), "{text}");
        }
        // The bounds themselves are exact.
        for n in [MAX_EXACT_INTEGER as i64, -(MAX_EXACT_INTEGER as i64), 0] {
            assert!(to_canonical_json(&json!(n)).is_ok());
            assert!(find_inexact_number(&json!({"a": [n]}), "").is_none());
        }
        // Structs go through the same check.
        assert!(matches!(
            to_canonical_json_of(&[1u64 << 60]),
            Err(CanonicalError::InexactNumber(_))
        ));
    }

    #[test]
    fn inexact_number_paths_name_the_member() {
        let value = json!({"ok": 1, "a b": {"x": [0, {"_y1": 9_007_199_254_740_992u64}]}});
        let found = find_inexact_number(&value, "context").unwrap();
        assert_eq!(found.path, r#"context["a b"].x[1]._y1"#);
        let found = find_inexact_number(&json!({"1st": -9_007_199_254_740_992i64}), "").unwrap();
        assert_eq!(found.path, r#"["1st"]"#);
        assert_eq!(
            find_inexact_number(&json!(1u64 << 62), "value")
                .unwrap()
                .path,
            "value"
        );
        assert!(find_inexact_number(
            &json!({"f": 1e300, "g": -0.0, "s": "4000000000000000015"}),
            ""
        )
        .is_none());
    }

    #[test]
    fn member_order_does_not_change_the_output() {
        let a = json!({"b": 1, "a": {"y": [1, 2, {"q": 1, "p": 2}], "x": null}, "c": "s"});
        let mut reordered = serde_json::Map::new();
        reordered.insert("c".into(), json!("s"));
        reordered.insert(
            "a".into(),
            json!({"x": null, "y": [1, 2, {"p": 2, "q": 1}]}),
        );
        reordered.insert("b".into(), json!(1));
        let b = Value::Object(reordered);
        // With preserve_order the plain serialisations differ, the canonical ones do not.
        assert_ne!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(
            to_canonical_json(&a).unwrap(),
            to_canonical_json(&b).unwrap()
        );
        assert_eq!(
            String::from_utf8(to_canonical_json(&a).unwrap()).unwrap(),
            r#"{"a":{"x":null,"y":[1,2,{"p":2,"q":1}]},"b":1,"c":"s"}"#
        );
    }

    #[test]
    fn strings_escape_only_what_rfc8785_requires() {
        let value = json!("tab\tnl\ncr\rbs\u{8}ff\u{c}nul\u{0}us\u{1f}del\u{7f}é/<>&\u{2028}");
        let out = String::from_utf8(to_canonical_json(&value).unwrap()).unwrap();
        assert_eq!(
            out,
            "\"tab\\tnl\\ncr\\rbs\\bff\\fnul\\u0000us\\u001fdel\u{7f}é/<>&\u{2028}\""
        );
    }

    #[test]
    fn structs_canonicalise_like_their_json_value() {
        #[derive(Serialize)]
        struct S {
            zeta: u32,
            alpha: Option<String>,
            #[serde(rename = "type")]
            kind: &'static str,
        }
        let s = S {
            zeta: 7,
            alpha: None,
            kind: "k",
        };
        let direct = to_canonical_json_of(&s).unwrap();
        let via_value = to_canonical_json(&serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(direct, via_value);
        assert_eq!(direct, br#"{"alpha":null,"type":"k","zeta":7}"#);
    }

    /// A small deterministic generator (xorshift) of awkward JSON values.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[(self.next() % items.len() as u64) as usize]
        }

        fn string(&mut self) -> String {
            let pieces = [
                "a",
                "B",
                "z",
                "0",
                "_",
                " ",
                "\"",
                "\\",
                "/",
                "\n",
                "\t",
                "\u{0}",
                "\u{1f}",
                "\u{7f}",
                "\u{80}",
                "é",
                "€",
                "\u{2028}",
                "\u{e000}",
                "\u{fb33}",
                "\u{ffff}",
                "\u{10000}",
                "😀",
                "\u{10ffff}",
                "日本",
            ];
            let len = self.next() % 5;
            (0..len).map(|_| *self.pick(&pieces)).collect()
        }

        fn number(&mut self) -> Value {
            match self.next() % 8 {
                0 => json!(self.next() % 1000),
                1 => json!(-((self.next() % 1_000_000) as i64)),
                2 => json!(self.next()),
                3 => json!((self.next() as i64) | i64::MIN),
                4 => json!((1u64 << 53) + self.next() % 3 - 1),
                5 => {
                    let x = f64::from_bits(self.next());
                    if x.is_finite() {
                        json!(x)
                    } else {
                        json!(0.5)
                    }
                }
                6 => {
                    let exponent = (self.next() % 60) as i32 - 30;
                    json!((self.next() % 100_000) as f64 * 10f64.powi(exponent))
                }
                _ => json!(*self.pick(&[0.0, -0.0, 1.0, 1e21, 1e-7, 1e-6, 0.1, 2.5e-324, 123e20])),
            }
        }

        fn value(&mut self, depth: u32) -> Value {
            let kind = if depth == 0 {
                self.next() % 4
            } else {
                self.next() % 6
            };
            match kind {
                0 => self.pick(&[Value::Null, json!(true), json!(false)]).clone(),
                1 => self.number(),
                2 | 3 => Value::String(self.string()),
                4 => Value::Array(
                    (0..self.next() % 4)
                        .map(|_| self.value(depth - 1))
                        .collect(),
                ),
                _ => {
                    let mut map = serde_json::Map::new();
                    for _ in 0..self.next() % 6 {
                        let key = self.string();
                        let member = self.value(depth - 1);
                        map.insert(key, member);
                    }
                    Value::Object(map)
                }
            }
        }
    }

    #[test]
    fn direct_writer_matches_serde_jcs_on_generated_values() {
        let mut generator = Gen(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let value = generator.value(4);
            if find_inexact_number(&value, "").is_some() {
                // Refused, not rounded (see integers_beyond_i_json_are_refused_not_rounded).
                assert!(
                    matches!(
                        to_canonical_json(&value),
                        Err(CanonicalError::InexactNumber(_))
                    ),
                    "value #{i}: {value}"
                );
                continue;
            }
            let ours = to_canonical_json(&value).unwrap();
            let reference = serde_jcs::to_vec(&value).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&reference),
                "value #{i}: {value}"
            );
            // And the canonical form is itself valid JSON denoting the same value, for
            // values without lossy numbers.
            let back: Value = serde_json::from_slice(&ours).unwrap();
            assert_eq!(to_canonical_json(&back).unwrap(), ours);
        }
    }

    #[test]
    fn non_string_map_keys_have_no_canonical_form() {
        let mut map = std::collections::BTreeMap::new();
        map.insert((1u8, 2u8), 3u8);
        let err = to_canonical_json_of(&map).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("value has no canonical json form"),
            "{err}"
        );
    }

    #[test]
    fn non_finite_floats_become_null_as_in_serde_json() {
        // serde_json writes NaN and infinities as null before the JCS formatter sees them;
        // a serde_json::Value cannot hold them at all, so audit events never contain them.
        assert_eq!(
            to_canonical_json_of(&[f64::NAN, f64::INFINITY]).unwrap(),
            b"[null,null]"
        );
    }
}
