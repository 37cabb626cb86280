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
//!   `0.000001` stays `0.000001` and `1e-7` becomes `1e-7`. Integers beyond 2^53 are
//!   rounded to the nearest double first, as every RFC 8785 implementation does.
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
}

/// The largest integer magnitude below which every integer is exactly a double (2^53);
/// integers up to it are written with their decimal digits, as ECMAScript does.
const EXACT_INTEGER_LIMIT: u64 = 1 << 53;

/// Returns the RFC 8785 (JCS) canonical UTF-8 bytes of a JSON value.
///
/// The output does not depend on the order of object members in `value`. It is byte for
/// byte what `serde_jcs::to_vec` produces (a test checks this on generated values), written
/// by a direct walk over the value that avoids `serde_jcs`'s per-token allocations, since
/// every audit event is canonicalised on the write path.
///
/// # Errors
///
/// None in practice: a [`serde_json::Value`] always has a canonical form (its numbers are
/// finite and its keys are strings). The `Result` is kept so that a future number
/// representation without one fails loudly rather than silently.
pub fn to_canonical_json(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_canonical_json(&mut out, value)?;
    Ok(out)
}

/// Appends the RFC 8785 (JCS) canonical form of `value` to `out` (see [`to_canonical_json`]).
///
/// # Errors
///
/// As [`to_canonical_json`]; on error `out` holds a partial value.
pub fn write_canonical_json(out: &mut Vec<u8>, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_canonical_number(out, number)?,
        Value::String(text) => write_canonical_string(out, text)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(out, item)?;
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
                write_canonical_json(out, member)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
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
/// of the IEEE 754 double): integers up to 2^53 in magnitude as their digits, anything else
/// through the double formatting of `serde_jcs` (so `1e21` is `1e+21`, `4.50` is `4.5`).
///
/// # Errors
///
/// None in practice (`serde_json` numbers are finite).
pub fn write_canonical_number(out: &mut Vec<u8>, number: &Number) -> Result<(), CanonicalError> {
    if let Some(n) = number.as_u64() {
        if n <= EXACT_INTEGER_LIMIT {
            return write!(out, "{n}").map_err(unrepresentable);
        }
    } else if let Some(n) = number.as_i64() {
        if n.unsigned_abs() <= EXACT_INTEGER_LIMIT {
            return write!(out, "{n}").map_err(unrepresentable);
        }
    }
    let double = number.as_f64().ok_or_else(|| {
        CanonicalError::Unrepresentable(format!("number {number} is not a double"))
    })?;
    let text = serde_jcs::to_vec(&double).map_err(unrepresentable)?;
    out.extend_from_slice(&text);
    Ok(())
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

/// Returns the RFC 8785 (JCS) canonical UTF-8 bytes of any serializable value, as if it were
/// first converted to a JSON value (structs become objects with their serialized field
/// names). This is `serde_jcs::to_vec`; for [`serde_json::Value`]s prefer the faster
/// [`to_canonical_json`], which gives the same bytes.
///
/// # Errors
///
/// [`CanonicalError::Unrepresentable`] for map keys that are not strings (or integers, which
/// `serde_json` turns into strings) and failing `Serialize` implementations. Non-finite
/// floats are written as `null`, as `serde_json` writes them; RFC 8785 has no form for them.
pub fn to_canonical_json_of<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    serde_jcs::to_vec(value).map_err(unrepresentable)
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
            ("1e20", "100000000000000000000"),
            ("123456789012345680000", "123456789012345680000"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("4.5", "4.5"),
            ("0.1", "0.1"),
            ("-1.5e-10", "-1.5e-10"),
            ("9007199254740992", "9007199254740992"),
            ("9007199254740993", "9007199254740992"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("5e-324", "5e-324"),
            ("295147905179352830000", "295147905179352830000"),
            ("18446744073709551615", "18446744073709552000"),
            ("-9223372036854775808", "-9223372036854776000"),
        ];
        for (input, expected) in cases {
            assert_eq!(canon(input), expected, "input {input}");
        }
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
