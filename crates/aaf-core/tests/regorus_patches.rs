//! The evaluation shortcuts AAF's regorus patches add (vendor/regorus/AAF-PATCHES.md: rule
//! values remembered within an evaluation, call sites resolved once, static references,
//! string-key lookups) decide as plain evaluation does. Each case of
//! `tests/regorus_patches/cases.json` (modules, optional data and input, a rule, and the
//! expected value or an error text) is evaluated three times on one engine, so that the
//! later evaluations start with whatever the first left behind, and once more on a copy
//! of the engine. regorus's own test suite runs against the patched source with
//! `vendor/regorus-upstream-tests.sh`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use regorus::{Engine, Value};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    modules: Vec<String>,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    input: Option<serde_json::Value>,
    rule: String,
    #[serde(default)]
    expected: Option<serde_json::Value>,
    /// A text the evaluation's error must contain, instead of `expected`.
    #[serde(default)]
    error: Option<String>,
}

fn value(json: &serde_json::Value) -> Value {
    Value::from_json_str(&json.to_string()).unwrap()
}

fn engine(case: &Case) -> Engine {
    let mut engine = Engine::new();
    for (i, module) in case.modules.iter().enumerate() {
        engine
            .add_policy(format!("{}-{i}.rego", case.name), module.clone())
            .unwrap_or_else(|e| panic!("{}: module {i}: {e}", case.name));
    }
    if let Some(data) = &case.data {
        engine.add_data(value(data)).unwrap();
    }
    engine
}

fn check(case: &Case, engine: &mut Engine, round: &str) {
    engine.set_input(case.input.as_ref().map_or(Value::new_object(), value));
    let result = engine.eval_rule(case.rule.clone());
    match (&case.expected, &case.error) {
        (Some(expected), None) => {
            let got = result.unwrap_or_else(|e| panic!("{} ({round}): {e}", case.name));
            let got: serde_json::Value = serde_json::from_str(&got.to_json_str().unwrap()).unwrap();
            assert_eq!(&got, expected, "{} ({round})", case.name);
        }
        (None, Some(text)) => {
            let error = result.expect_err(&format!("{} ({round}): no error", case.name));
            assert!(
                error.to_string().contains(text.as_str()),
                "{} ({round}): {error}",
                case.name
            );
        }
        _ => panic!("{}: give exactly one of expected and error", case.name),
    }
}

#[test]
fn every_case_decides_the_same_on_every_evaluation() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/regorus_patches/cases.json"
    );
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 15, "the case file lost cases");
    for case in &cases {
        let mut engine = engine(case);
        for round in ["first", "second", "third"] {
            check(case, &mut engine, round);
        }
        let mut copy = engine.clone();
        check(case, &mut copy, "copy");
    }
}

#[test]
fn adding_a_policy_resolves_call_sites_again() {
    let mut engine = Engine::new();
    engine
        .add_policy(
            "t.rego".into(),
            "package t\nimport rego.v1\nout := lower(\"A\")\n".into(),
        )
        .unwrap();
    assert_eq!(
        engine.eval_rule("data.t.out".into()).unwrap(),
        Value::from("a")
    );
    // A function of the same name in the same package now takes the call.
    engine
        .add_policy(
            "t2.rego".into(),
            "package t\nimport rego.v1\nlower(_) := \"mine\"\n".into(),
        )
        .unwrap();
    assert_eq!(
        engine.eval_rule("data.t.out".into()).unwrap(),
        Value::from("mine")
    );
}

#[test]
fn changed_data_is_read_again() {
    let mut engine = Engine::new();
    engine
        .add_policy(
            "t.rego".into(),
            "package t\nimport rego.v1\nlimit := data.conf.limit\nout := [limit, limit]\n".into(),
        )
        .unwrap();
    for limit in [1, 2, 3] {
        engine.clear_data();
        engine
            .add_data(
                Value::from_json_str(&format!(r#"{{"conf": {{"limit": {limit}}}}}"#)).unwrap(),
            )
            .unwrap();
        assert_eq!(
            engine.eval_rule("data.t.out".into()).unwrap(),
            Value::from_json_str(&format!("[{limit}, {limit}]")).unwrap(),
            "limit = {limit}"
        );
    }
}

#[test]
fn another_input_on_the_same_engine_is_read_afresh() {
    let mut engine = Engine::new();
    engine
        .add_policy(
            "t.rego".into(),
            "package t\nimport rego.v1\nv := input.x\nf(y) := y + v\nout := [v, v, f(1), f(1)]\n"
                .into(),
        )
        .unwrap();
    for x in [1, 2, 3] {
        engine.set_input(Value::from_json_str(&format!(r#"{{"x": {x}}}"#)).unwrap());
        let expected = format!("[{x}, {x}, {y}, {y}]", y = x + 1);
        assert_eq!(
            engine.eval_rule("data.t.out".into()).unwrap(),
            Value::from_json_str(&expected).unwrap(),
            "input x = {x}"
        );
    }
}

/// `Value::from_json_value` (AAF's input conversion) gives what deserializing the same
/// document gives: documents written out (every kind of number, nested and empty
/// containers, keys out of order, non-ASCII keys) and 2,000 generated ones.
#[test]
fn json_documents_convert_as_deserializing_does() {
    let mut documents = vec![
        serde_json::json!(null),
        serde_json::json!({}),
        serde_json::json!([]),
        serde_json::json!({"z": 1, "a": 2, "m": {"y": [], "b": {}}, "": "empty key"}),
        serde_json::json!([0, 1, -1, u64::MAX, i64::MIN, 1.5, -0.0, 1e300, 2.5e-300]),
        serde_json::json!({"é": "accent", "e": "plain", "Z": "upper", "ä": ["ü", {"ß": true}]}),
        serde_json::json!({"action": {"tool": "http_proxy", "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 50000}}}}),
    ];
    // A small deterministic generator (xorshift): nested objects and arrays of every kind
    // of value, keys drawn from a short alphabet so that orders and prefixes collide.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    fn generate(next: &mut dyn FnMut() -> u64, depth: u32) -> serde_json::Value {
        let keys = ["a", "ab", "b", "B", "", "é", "a\u{0}", "10", "9", "aa"];
        match next() % if depth == 0 { 5 } else { 7 } {
            0 => serde_json::Value::Null,
            1 => serde_json::Value::Bool(next().is_multiple_of(2)),
            2 => match next() % 3 {
                0 => serde_json::json!(next()),
                1 => serde_json::json!(-((next() >> 2) as i64)),
                _ => serde_json::json!((next() % 1_000_000) as f64 / 7.0),
            },
            3 | 4 => serde_json::Value::String(
                keys[(next() % 10) as usize].repeat((next() % 3) as usize),
            ),
            5 => (0..next() % 4).map(|_| generate(next, depth - 1)).collect(),
            _ => {
                let mut map = serde_json::Map::new();
                for _ in 0..next() % 6 {
                    let key = keys[(next() % 10) as usize].to_string();
                    map.insert(key, generate(next, depth - 1));
                }
                serde_json::Value::Object(map)
            }
        }
    }
    for _ in 0..2_000 {
        documents.push(generate(&mut next, 4));
    }
    for document in &documents {
        let direct = Value::from_json_value(document).unwrap();
        let deserialized: Value = serde_json::from_value(document.clone()).unwrap();
        assert_eq!(direct, deserialized, "{document}");
        // Equal, and ordered alike: the same JSON text back.
        assert_eq!(
            direct.to_json_str().unwrap(),
            deserialized.to_json_str().unwrap(),
            "{document}"
        );
        // Looked up by key as the interpreter looks them up.
        if let serde_json::Value::Object(map) = document {
            for key in map.keys() {
                assert_eq!(
                    direct[key.as_str()],
                    deserialized[key.as_str()],
                    "{key} in {document}"
                );
            }
        }
    }
}

/// An object whose first key is serde_json's arbitrary-precision marker stays an object:
/// the deserializer read it as a number (or failed), so a policy saw a different input
/// than AAF built.
#[test]
fn the_number_marker_key_is_an_ordinary_key() {
    let document = serde_json::json!({"$serde_json::private::Number": "12", "amount": 5});
    let direct = Value::from_json_value(&document).unwrap();
    assert_eq!(direct["amount"], Value::from(5_u64));
    assert_eq!(
        direct["$serde_json::private::Number"],
        Value::String("12".into())
    );
}

/// Strings order as `str` orders them (byte-wise), through every path the patched
/// comparison takes: values against values, and object lookups by a string key, for
/// strings of 0 to 40 bytes that share prefixes of every length and differ in one byte,
/// multi-byte UTF-8 included.
#[test]
fn strings_order_as_str_orders_them() {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let alphabet = [
        "a",
        "b",
        "z",
        "A",
        "0",
        "9",
        ".",
        "-",
        "\u{e9}",
        "\u{1f600}",
        "\u{0}",
        "\u{7f}",
    ];
    let mut strings: Vec<String> = vec![String::new()];
    for _ in 0..400 {
        let len = usize::try_from(next() % 24).unwrap();
        let s: String = (0..len)
            .map(|_| alphabet[usize::try_from(next() % alphabet.len() as u64).unwrap()])
            .collect();
        strings.push(s);
    }
    // Shared prefixes: each string with its last character changed, and cut short.
    for s in strings.clone() {
        if let Some(c) = s.chars().last() {
            let stem = &s[..s.len() - c.len_utf8()];
            strings.push(format!("{stem}b"));
            strings.push(format!("{stem}\u{e9}"));
            strings.push(stem.to_string());
            strings.push(format!("{s}{s}"));
        }
    }
    for a in &strings {
        let va = Value::from(a.as_str());
        for b in &strings {
            let vb = Value::from(b.as_str());
            assert_eq!(va.cmp(&vb), a.as_str().cmp(b.as_str()), "{a:?} vs {b:?}");
        }
    }
    // Lookups by a string key in an object of them find exactly the keys it holds.
    let object = Value::from(
        strings
            .iter()
            .step_by(3)
            .map(|s| (Value::from(s.as_str()), Value::from(s.len() as u64)))
            .collect::<std::collections::BTreeMap<_, _>>(),
    );
    for s in &strings {
        let held = strings.iter().step_by(3).any(|t| t == s);
        assert_eq!(object[s.as_str()] != Value::Undefined, held, "{s:?}");
    }
}
