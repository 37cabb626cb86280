//! Every compile and evaluation of Rego is bounded in time and memory (docs/policies.md,
//! "Resource limits"): for each family of built-ins that can allocate or loop without bound,
//! and for deeply nested literals, loading or evaluating a policy that abuses it ends in a
//! clean error (a load error, or a deny naming the policy and the limit), within a bounded
//! time, and the memory it took is given back. The process surviving is part of each test:
//! before these limits, several of these cases aborted it.
//!
//! The allocator is the `aaf` binary's (regorus's mimalloc with its counters, which regorus
//! declares as the global allocator), so the memory limit is enforced as in the server. The limit is process-wide, so the cases run one at a
//! time (one lock).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aaf_core::action::Verdict;
use aaf_core::policy::{set_memory_limit, EvaluatorOptions, PolicySet, PolicySource};
use serde_json::json;

/// The memory limit of these tests: far above what a normal policy needs, far below what
/// the abusive ones ask for.
const MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
const EVAL_TIMEOUT: Duration = Duration::from_millis(200);
const LOAD_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long past its limit a stopped load or evaluation may still take: generous, since the
/// machine is shared; without the limits these cases ran for seconds or for ever, or aborted.
const SLACK: Duration = Duration::from_secs(5);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn options() -> EvaluatorOptions {
    EvaluatorOptions {
        eval_timeout: EVAL_TIMEOUT,
        load_timeout: LOAD_TIMEOUT,
        decision_cache_entries: 0,
        eval_threads: 1,
        ..EvaluatorOptions::default()
    }
}

fn allocated() -> u64 {
    regorus_mimalloc::allocation_stats_snapshot().0.allocated
}

/// Runs `case` with the limit set, and checks that the heap is back near where it was.
fn bounded<R>(name: &str, case: impl FnOnce() -> R) -> R {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    set_memory_limit(Some(MEMORY_LIMIT));
    regorus::flush_thread_memory_counters();
    let before = allocated();
    let result = case();
    regorus::flush_thread_memory_counters();
    let after = allocated();
    assert!(
        after < before + 32 * 1024 * 1024,
        "{name}: the heap grew from {before} to {after} bytes and stayed there"
    );
    result
}

fn module(body: &str) -> Vec<PolicySource> {
    vec![PolicySource {
        path: "abuse.rego".into(),
        rego: format!("package abuse\nimport rego.v1\n{body}\n"),
    }]
}

/// Loading `body` (evaluated at load against an empty input) fails with a message that
/// contains one of `expected`.
fn load_fails(name: &str, body: &str, expected: &[&str]) {
    bounded(name, || {
        let started = Instant::now();
        let errors = match PolicySet::load(module(body), options()) {
            Ok(_) => panic!("{name}: loaded, but it should have been stopped"),
            Err(errors) => errors,
        };
        let elapsed = started.elapsed();
        assert!(
            elapsed < LOAD_TIMEOUT + SLACK,
            "{name}: the load took {elapsed:?}"
        );
        let text = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        assert!(
            expected.iter().any(|e| text.contains(e)),
            "{name}: expected one of {expected:?} in {text:?}"
        );
        assert!(
            errors.iter().all(|e| e.file == "abuse.rego"),
            "{name}: {text}"
        );
    });
}

const MEMORY: &str = "memory limit";
const TIME: &str = "time limit of 1000 ms for loading";

#[test]
fn ranges_are_bounded() {
    load_fails(
        "numbers.range",
        "x := count(numbers.range(1, 1000000000000000))",
        &[MEMORY],
    );
    load_fails(
        "numbers.range_step",
        "x := count(numbers.range_step(1, 1000000000000000, 1))",
        &[MEMORY],
    );
    load_fails(
        "net.cidr_expand",
        r#"x := count(net.cidr_expand("::/0"))"#,
        &[MEMORY, TIME],
    );
}

#[test]
fn string_padding_and_repetition_are_bounded() {
    // The width overflows 32 bits: an error of its own.
    load_fails(
        "sprintf width overflow",
        r#"x := sprintf("%01000000000000d", [1])"#,
        &["format width or precision is too large"],
    );
    load_fails(
        "sprintf width",
        r#"x := sprintf("%0900000000d", [1])"#,
        &[MEMORY],
    );
    load_fails(
        "sprintf cell width",
        r#"x := sprintf("%900000000d", [1])"#,
        &[MEMORY],
    );
    load_fails(
        "sprintf precision",
        r#"x := sprintf("%.900000000f", [1.5])"#,
        &[MEMORY],
    );
    // A 100 kB string, then every gap filled with it: 10 GB in one allocation.
    let s = r#"s := concat("", ["a" | some _ in numbers.range(1, 100000)])"#;
    load_fails(
        "replace",
        &format!("{s}\nx := count(replace(s, \"\", s))"),
        &[MEMORY],
    );
    load_fails(
        "strings.replace_n",
        &format!("{s}\nx := count(strings.replace_n({{\"a\": s}}, s))"),
        &[MEMORY],
    );
    load_fails(
        "concat",
        &format!("{s}\nx := count(concat(s, [\"b\" | some _ in numbers.range(1, 100000)]))"),
        &[MEMORY],
    );
    load_fails("bits.lsh", "x := bits.lsh(1, 4000000000)", &[MEMORY]);
}

#[test]
fn comprehensions_are_bounded() {
    load_fails(
        "a comprehension over a large range",
        "x := count([y | some y in numbers.range(1, 20000000)])",
        &[MEMORY, TIME],
    );
    load_fails(
        "a product of two ranges",
        "x := count([[a, b] | some a in numbers.range(1, 100000); some b in numbers.range(1, 100000)])",
        &[MEMORY, TIME],
    );
    load_fails(
        "a set comprehension",
        "x := count({sprintf(\"%d-%d\", [a, b]) | some a in numbers.range(1, 10000); some b in numbers.range(1, 10000)})",
        &[MEMORY, TIME],
    );
}

#[test]
fn walks_are_bounded() {
    load_fails(
        "walk over a large document",
        "big := [[[i, j] | some j in numbers.range(1, 2000)] | some i in numbers.range(1, 2000)]\nx := count([p | walk(big, [p, _])])",
        &[MEMORY, TIME],
    );
}

#[test]
fn regex_and_glob_are_bounded() {
    // A regex whose compiled program is enormous is refused by the regex size limit.
    load_fails(
        "regex size",
        r#"x := regex.match("((a{1000}){1000}){1000}", "a")"#,
        &["regex"],
    );
    // Matching is linear in the input (no backtracking), so a long input is no attack; a
    // huge alternation built at run time still stops at a limit.
    load_fails(
        "glob alternation",
        r#"p := concat(",", [sprintf("%d", [i]) | some i in numbers.range(1, 3000000)])
x := glob.match(concat("", ["{", p, "}"]), [], "1")"#,
        &[MEMORY, TIME, "regex"],
    );
}

#[test]
fn unmarshalling_is_bounded() {
    load_fails(
        "json.unmarshal nesting",
        r#"x := json.unmarshal(concat("", ["[" | some _ in numbers.range(1, 100000)]))"#,
        &["recursion limit", "json", "JSON"],
    );
    // "Billion laughs": nine levels of ten aliases each.
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\\n");
    for i in 1..9 {
        let p = i - 1;
        yaml.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\\n"
        ));
    }
    load_fails(
        "yaml.unmarshal aliases",
        &format!("x := yaml.unmarshal(\"{yaml}\")"),
        &[MEMORY, TIME, "yaml", "YAML", "alias", "recursion"],
    );
}

#[test]
fn deeply_nested_literals_are_bounded() {
    // Parse time doubles with each level of nesting (regorus parses each level twice).
    for depth in [24, 40] {
        let literal = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        load_fails(
            &format!("{depth} nested arrays"),
            &format!("x := {literal}"),
            &[TIME, "nesting too deep", "nesting"],
        );
        let literal = format!("{}1{}", "{\"k\": ".repeat(depth), "}".repeat(depth));
        load_fails(
            &format!("{depth} nested objects"),
            &format!("x := {literal}"),
            &[TIME, "nesting too deep", "nesting"],
        );
    }
}

/// `test.sleep` cannot be interrupted by any check, so AAF's regorus build does not have it
/// (it comes with regorus's `opa-testutil` feature, which AAF leaves off).
#[test]
fn sleeping_is_not_available() {
    load_fails(
        "test.sleep",
        r#"x := test.sleep("10s")"#,
        &[
            "could not find function test.sleep",
            "undefined function test.sleep",
        ],
    );
}

/// A loaded policy that passes input-controlled sizes to such built-ins: the agent picks the
/// size, the policy denies naming the limit, and the next action is decided normally.
#[test]
fn input_controlled_sizes_deny_naming_the_policy() {
    let set = PolicySet::load(
        module(
            r#"decision := "allow" if {
    count(numbers.range(1, input.action.params.n)) > 0
    count(sprintf(concat("", ["%0", format_int(input.action.params.w, 10), "d"]), [1])) > 0
    count([x | some x in numbers.range(1, input.action.params.m); some y in numbers.range(1, input.action.params.m)]) > 0
}"#,
        ),
        options(),
    )
    .unwrap();
    let input = |n: u64, w: u64, m: u64| json!({"action": {"tool": "t", "operation": "o", "params": {"n": n, "w": w, "m": m}}});
    for (name, abusive, limit) in [
        ("range", input(1_000_000_000_000_000, 1, 1), "memory limit"),
        ("sprintf width", input(1, 900_000_000, 1), "memory limit"),
        ("product", input(1, 1, 100_000), "time limit of 200 ms"),
    ] {
        bounded(name, || {
            let started = Instant::now();
            let d = set.evaluate(&abusive);
            assert!(started.elapsed() < EVAL_TIMEOUT + SLACK, "{name}");
            assert_eq!(d.verdict, Verdict::Deny, "{name}: {d:?}");
            assert!(
                d.reason.contains("policy abuse failed to evaluate") && d.reason.contains(limit),
                "{name}: {}",
                d.reason
            );
        });
        let d = set.evaluate(&input(10, 5, 10));
        assert_eq!(d.verdict, Verdict::Allow, "after {name}: {d:?}");
    }
}
