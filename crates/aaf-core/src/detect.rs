//! Sensitive-data detectors over JSON values: US Social Security numbers and payment card
//! numbers. They back the `has_pii`, `has_ssn` and `has_credit_card` Rego built-ins.
//!
//! Every detector walks a whole [`Value`]: strings, numbers (a card number sent as a JSON
//! integer is found), array items, object keys and object values, at any depth (iteratively,
//! so deep nesting cannot overflow the stack). No I/O.
//!
//! The rules are those of Microsoft Presidio's `UsSsnRecognizer` and `CreditCardRecognizer`
//! at their medium-confidence level, checked against Presidio's own test cases
//! (`tests/detect_testdata.rs` reads them from `shared/testdata/security/pii_secrets.txt`):
//!
//! - SSN: `AAA-GG-SSSS` with `-`, `.` or a space as the delimiter, the same one twice, not
//!   touching other letters or digits, and valid per the Social Security Administration's
//!   rules (area not `000`, `666` or `900`-`999`; group not `00`; serial not `0000`; not
//!   all one digit; not the advertising numbers `078-05-1120`, `219-09-9999`, `123-45-6789`).
//!   Undelimited nine-digit numbers are not reported: Presidio scores them "weak" and any ID,
//!   amount or phone number would match.
//! - Payment card: 13 to 19 digits, optionally in groups separated by single spaces or
//!   dashes, that pass the Luhn check (ISO/IEC 7812-1 Annex B) and start with an issuer
//!   prefix of a known network at a length that network issues (see [`has_credit_card`]).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// A US SSN candidate: area, delimiter, group, delimiter, serial. Validity and boundaries are
/// checked in code (the `regex` crate has no look-around).
#[allow(clippy::expect_used)] // A constant pattern; `tests::patterns_compile` compiles it.
static SSN_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"([0-9]{3})([-. ])([0-9]{2})([-. ])([0-9]{4})").expect("ssn pattern is valid")
});

/// A maximal run of ASCII digit groups separated by single spaces or dashes.
#[allow(clippy::expect_used)] // A constant pattern; `tests::patterns_compile` compiles it.
static DIGIT_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9]+(?:[ -][0-9]+)*").expect("digit run pattern is valid"));

/// Shortest and longest payment card number, in digits (ISO/IEC 7812-1 allows 8 to 19; the
/// major networks issue 13 to 19).
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

/// Social Security numbers that were never issued to a person although they look valid:
/// the Woolworth wallet card number, an SSA advertising number, and the textbook example.
const ADVERTISED_SSNS: &[&str] = &["078051120", "219099999", "123456789"];

/// Says whether `value` contains a US Social Security number or a payment card number.
///
/// `has_ssn(value) || has_credit_card(value)`; see those functions for the rules. The
/// `has_pii` Rego built-in.
pub fn has_pii(value: &Value) -> bool {
    has_ssn(value) || has_credit_card(value)
}

/// Says whether `value` contains a US Social Security number in any string, number, array
/// item, object key or object value.
///
/// See [`text_has_ssn`] for what counts as an SSN. The `has_ssn` Rego built-in.
pub fn has_ssn(value: &Value) -> bool {
    any_text(value, text_has_ssn)
}

/// Says whether `value` contains a payment card number in any string, number, array item,
/// object key or object value.
///
/// See [`text_has_credit_card`] for what counts as a card number. The `has_credit_card` Rego
/// built-in.
pub fn has_credit_card(value: &Value) -> bool {
    any_text(value, text_has_credit_card)
}

/// Says whether `text` contains a US Social Security number.
///
/// Matches `AAA-GG-SSSS`, `AAA GG SSSS` and `AAA.GG.SSSS` (the same delimiter twice: Presidio
/// rejects `693-09.4444`), neither preceded nor followed by a letter, a digit, or `-` or `.`
/// next to a digit (so `1-078-05-1123` and `078-05-1123-4` are not SSNs). The number must be one the Social Security Administration could
/// have issued: area not `000`, `666` or `900`-`999`, group not `00`, serial not `0000`, not
/// nine times the same digit, and not one of the advertising numbers `078-05-1120`,
/// `219-09-9999` and `123-45-6789`. Nine digits without delimiters are not matched.
pub fn text_has_ssn(text: &str) -> bool {
    let mut start = 0;
    while let Some(captures) = SSN_CANDIDATE.captures_at(text, start) {
        let (Some(whole), Some(area), Some(first), Some(group), Some(second), Some(serial)) = (
            captures.get(0),
            captures.get(1),
            captures.get(2),
            captures.get(3),
            captures.get(4),
            captures.get(5),
        ) else {
            return false;
        };
        if first.as_str() == second.as_str()
            && ssn_boundaries_ok(text, whole.start(), whole.end())
            && ssn_is_valid(area.as_str(), group.as_str(), serial.as_str())
        {
            return true;
        }
        // The candidate starts with an ASCII digit, so the next byte is a char boundary;
        // restarting there finds candidates that overlap a rejected one.
        start = whole.start() + 1;
    }
    false
}

fn ssn_boundaries_ok(text: &str, start: usize, end: usize) -> bool {
    let mut before = text.get(..start).unwrap_or_default().chars().rev();
    match before.next() {
        Some(c) if c.is_alphanumeric() => return false,
        Some('-' | '.') if before.next().is_some_and(|c| c.is_ascii_digit()) => return false,
        _ => {}
    }
    let mut after = text.get(end..).unwrap_or_default().chars();
    match after.next() {
        None => true,
        Some(c) if c.is_alphanumeric() => false,
        Some('-' | '.') => !after.next().is_some_and(|c| c.is_ascii_digit()),
        Some(_) => true,
    }
}

fn ssn_is_valid(area: &str, group: &str, serial: &str) -> bool {
    if area == "000" || area == "666" || area.starts_with('9') || group == "00" || serial == "0000"
    {
        return false;
    }
    let digits = format!("{area}{group}{serial}");
    let all_same = digits
        .bytes()
        .all(|digit| Some(digit) == digits.bytes().next());
    !all_same && !ADVERTISED_SSNS.contains(&digits.as_str())
}

/// Says whether `text` contains a payment card number.
///
/// Looks at every run of ASCII digits in groups separated by single spaces or dashes
/// (`4111 1111 1111 1111`, `4111-1111-1111-1111`, `4111111111111111`) and at every sequence of
/// whole consecutive groups in it with 13 to 19 digits. Such a sequence is a card number when
/// it passes [`luhn_valid`] and its issuer prefix and length fit a network: Visa `4` (13, 16 or
/// 19 digits), Mastercard `51`-`55` and `2221`-`2720` (16), American Express `34`, `37` (15),
/// Diners Club `300`-`305`, `309`, `36`, `38`, `39` (14-19), JCB `3528`-`3589` (16-19), Mir
/// `2200`-`2204` (16-19), Maestro and Dankort `50`, `56`-`58` (13-19), Discover, UnionPay,
/// RuPay and Maestro `6` (13-19), UATP/AirPlus `1` (15). So `1748503543012` (Luhn-valid, no
/// network) and a 16-digit run with a bad check digit are not card numbers.
pub fn text_has_credit_card(text: &str) -> bool {
    DIGIT_RUN.find_iter(text).any(|run| {
        let groups: Vec<&str> = run.as_str().split([' ', '-']).collect();
        (0..groups.len()).any(|first| {
            let mut digits = String::new();
            groups.iter().skip(first).any(|group| {
                digits.push_str(group);
                CARD_DIGITS.contains(&digits.len())
                    && card_prefix_fits(&digits)
                    && luhn_valid(&digits)
            })
        })
    })
}

/// Whether the issuer identification number (the leading digits) of an all-digit `number`
/// belongs to a card network that issues numbers of this length.
fn card_prefix_fits(number: &str) -> bool {
    let prefix = |len: usize| -> u32 {
        number
            .get(..len)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0)
    };
    let len = number.len();
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    match p1 {
        1 => len == 15,
        2 => {
            ((2221..=2720).contains(&p4) && len == 16) || ((2200..=2204).contains(&p4) && len >= 16)
        }
        3 => {
            ((p2 == 34 || p2 == 37) && len == 15)
                || (((300..=305).contains(&p3) || p3 == 309 || p2 == 36 || p2 == 38 || p2 == 39)
                    && len >= 14)
                || ((3528..=3589).contains(&p4) && len >= 16)
        }
        4 => len == 13 || len == 16 || len == 19,
        5 => ((51..=55).contains(&p2) && len == 16) || p2 == 50 || (56..=58).contains(&p2),
        6 => true,
        _ => false,
    }
}

/// The Luhn (mod 10) check of ISO/IEC 7812-1 Annex B, used by every payment card number.
///
/// `digits` is ASCII digits, optionally separated by spaces or dashes (which are ignored).
/// Returns `false` for any other character and for fewer than two digits.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for c in digits.chars().rev() {
        if c == ' ' || c == '-' {
            continue;
        }
        let Some(digit) = c.to_digit(10).filter(|_| c.is_ascii_digit()) else {
            return false;
        };
        let value = if count % 2 == 1 {
            let doubled = digit * 2;
            if doubled > 9 {
                doubled - 9
            } else {
                doubled
            }
        } else {
            digit
        };
        sum += value;
        count += 1;
    }
    // Not `is_multiple_of`, which is newer than the workspace rust-version (1.85).
    count >= 2 && matches!(sum % 10, 0)
}

/// Whether `matches` is true for the text of any string, number, array item, object key or
/// object value in `value`.
fn any_text(value: &Value, matches: fn(&str) -> bool) -> bool {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Null | Value::Bool(_) => {}
            Value::Number(number) => {
                if matches(&number.to_string()) {
                    return true;
                }
            }
            Value::String(text) => {
                if matches(text) {
                    return true;
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (key, item) in map {
                    if matches(key) {
                        return true;
                    }
                    stack.push(item);
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_compile() {
        assert!(SSN_CANDIDATE.is_match("078-05-1123"));
        assert!(DIGIT_RUN.is_match("4111 1111"));
    }

    #[test]
    fn luhn() {
        for valid in [
            "4111111111111111",
            "4012-8888-8888-1881",
            "4012 8888 8888 1881",
            "79927398713",
            "00",
            "18",
        ] {
            assert!(luhn_valid(valid), "{valid}");
        }
        for invalid in [
            "4111111111111112",
            "79927398710",
            "",
            "0",
            "-",
            "4111x111111111111",
            "٤١١١١١١١١١١١١١١١",
            "12",
        ] {
            assert!(!luhn_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn ssn_text() {
        for text in [
            "078-05-1123",
            "078.05.1123",
            "078 05 1123",
            "abc 078 05 1123 abc",
            "ssn:078-05-1123.",
            "(078-05-1123)",
            "ssn=078-05-1123, next",
            "1234-56-7890 then 078-05-1123",
            "665-01-0001",
            "899-99-9999",
            "call 555-12-3456",
        ] {
            assert!(text_has_ssn(text), "{text:?} must match");
        }
        for text in [
            "078051123",
            "078-051121 07805-1121",
            "693-09.4444",
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "078-00-1123",
            "078-05-0000",
            "111-11-1111",
            "078-05-1120",
            "219-09-9999",
            "123-45-6789",
            "1078-05-1123",
            "078-05-11234",
            "x078-05-1123",
            "078-05-1123x",
            "078-05-1123-4",
            "1-078-05-1123.5",
            "1-078-05-1123",
            "2.078.05.1123",
        ] {
            assert!(!text_has_ssn(text), "{text:?} must not match");
        }
    }

    #[test]
    fn card_text() {
        for text in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "card: 4111 1111 1111 1111, exp 12/29",
            "2024-01-15 4111 1111 1111 1111",
            "371449635398431",
            "3714 496353 98431",
            "5555555555554444",
            "2223000048400011",
            "6011000400000000",
            "3528000700000000",
            "30569309025904",
            "122000000000003",
            "4222222222222",
        ] {
            assert!(text_has_credit_card(text), "{text:?} must match");
        }
        for text in [
            "4111111111111112",
            "1748503543012",
            "41111111111111111111",
            "4111  1111 1111 1111",
            "4111--1111-1111-1111",
            "4111.1111.1111.1111",
            "1234567890123456",
            "9111111111111111",
            "5511984565666",
            "order 12345, amount 42",
            "",
        ] {
            assert!(!text_has_credit_card(text), "{text:?} must not match");
        }
    }

    #[test]
    fn walks_nested_values_keys_and_numbers() {
        assert!(has_credit_card(&json!(4111111111111111u64)));
        assert!(has_credit_card(
            &json!({"a": [{"b": ["x", "4111 1111 1111 1111"]}]})
        ));
        assert!(has_credit_card(&json!({"4111111111111111": true})));
        assert!(has_ssn(&json!({"user": {"tax": ["078-05-1123"]}})));
        assert!(has_ssn(&json!({"078-05-1123": null})));
        assert!(has_pii(&json!(["nothing", {"ssn": "078 05 1123"}])));
        assert!(has_pii(&json!({"n": 5555555555554444u64})));
        assert!(!has_pii(
            &json!({"a": [1, 2.5, true, null, "hello", {"b": 123456789}]})
        ));
        assert!(!has_pii(&json!(null)));

        let mut deep = json!("4111111111111111");
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert!(has_credit_card(&deep));
        // Dropping a deeply nested value recurses; leak it rather than overflow the test stack.
        std::mem::forget(deep);
    }
}
