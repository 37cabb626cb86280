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
