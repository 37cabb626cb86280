//! Policy evaluator benchmark: one full decision (input conversion, every policy of the set,
//! combination) over the example policies of the product documents (`evaluate/*`, decision
//! cache off), and over sets of 1, 4, 10 and 100 policies (the starter, the three built-in
//! packs and generated policies of realistic shape), with the decision cache off, on with a
//! repeated input (every decision a hit), and on with a new input every time (every
//! decision a miss: the cost of the key and the insertion), and, cache off, for an action
//! the generated policies do not concern with the rule index off and on. The cache-off
//! charge is measured with the decision split across the evaluation threads (the default)
//! and on one thread (`eval_threads = 1`).
//!
//! The allocator is mimalloc as vendored by regorus (with its allocation counters), which
//! regorus declares as the global allocator, as in the `aaf` binary.
//!
//! Run: `cargo bench -p aaf-core --bench evaluator`. Numbers: `docs/performance.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use aaf_core::action::{ActionRequest, AgentInfo, OrgInfo, PolicyInput, RequestMetadata};
use aaf_core::policy::{EvaluatorOptions, PolicySet, PolicySource};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

mod common;

fn load(rel: &str) -> PolicySet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join(rel);
    let mut sources = Vec::new();
    let files: Vec<_> = if path.is_dir() {
        std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    } else {
        vec![path]
    };
    for f in files {
        if f.extension().is_some_and(|e| e == "rego") {
            sources.push(PolicySource {
                path: f.display().to_string(),
                rego: std::fs::read_to_string(&f).unwrap(),
            });
        }
    }
    PolicySet::load(sources, no_cache()).unwrap()
}

fn no_cache() -> EvaluatorOptions {
    EvaluatorOptions {
        decision_cache_entries: 0,
        ..EvaluatorOptions::default()
    }
}

/// `n` policies: the starter, then the three packs, then generated ones.
fn policy_set(n: usize, options: EvaluatorOptions) -> PolicySet {
    let set = PolicySet::load(common::sources(n), options).unwrap();
    assert_eq!(set.policies().len(), n);
    set
}

fn input(action: Value) -> Value {
    let request: ActionRequest = serde_json::from_value(action).unwrap();
    PolicyInput::build(
        "0193a0d2-0000-7000-8000-000000000000",
        &request,
        &AgentInfo {
            id: "agent-001".into(),
            name: "Payment Agent".into(),
            risk_score: 0.2,
        },
        &OrgInfo {
            id: "org-uuid".into(),
            plan: "pro".into(),
        },
        &RequestMetadata {
            timestamp: "2026-11-21T10:30:00.000000Z".into(),
            ip_address: Some("203.0.113.42".into()),
        },
    )
}

fn bench(c: &mut Criterion) {
    let cases = [
        (
            "seed-004/stripe_charge_requires_approval",
            "examples/policies/seed-004",
            json!({"tool": "http_proxy", "operation": "POST", "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 50000}}, "context": {"user_id": "user-456"}}),
        ),
        (
            "seed-004/private_network_denied",
            "examples/policies/seed-004",
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "http://169.254.169.254/latest/meta-data/"}, "context": {}}),
        ),
        (
            "seed-000/trusted_get_allowed",
            "examples/policies/seed-000",
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "https://api.trusted.com/v1/items"}, "context": {}}),
        ),
        (
            "starter/decision_only_tool_allowed",
            "policies/starter.rego",
            json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "refund policy"}, "context": {}}),
        ),
        (
            "starter/https_get_allowed",
            "policies/starter.rego",
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "https://api.github.com/repos/x/y"}, "context": {}}),
        ),
    ];
    let mut group = c.benchmark_group("evaluate");
    for (name, policies, action) in cases {
        let set = load(policies);
        let input = input(action);
        // Warm the per-thread engine, then measure steady-state decisions.
        let _ = set.evaluate(&input);
        group.bench_function(name, |b| {
            b.iter(|| set.evaluate(std::hint::black_box(&input)))
        });
    }
    group.finish();

    let charge = input(
        json!({"tool": "http_proxy", "operation": "POST", "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 50000, "currency": "usd"}}, "context": {"user_id": "user-456", "team": "team-7"}}),
    );
    let search = input(
        json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "refund policy"}, "context": {"user_id": "user-456"}}),
    );
    let mut group = c.benchmark_group("policy_sets");
    for n in [1, 4, 10, 100] {
        let one_thread = policy_set(
            n,
            EvaluatorOptions {
                eval_threads: 1,
                ..no_cache()
            },
        );
        let _ = one_thread.evaluate(&charge);
        group.bench_function(format!("{n}_policies/cache_off_one_thread"), |b| {
            b.iter(|| one_thread.evaluate(std::hint::black_box(&charge)))
        });
        let _ = one_thread.evaluate(&search);
        group.bench_function(format!("{n}_policies/search_one_thread"), |b| {
            b.iter(|| one_thread.evaluate(std::hint::black_box(&search)))
        });
        let off = policy_set(n, no_cache());
        let _ = off.evaluate(&charge);
        group.bench_function(format!("{n}_policies/cache_off"), |b| {
            b.iter(|| off.evaluate(std::hint::black_box(&charge)))
        });
        let on = policy_set(n, EvaluatorOptions::default());
        assert!(on.cache_stats().enabled, "{:?}", on.cache_stats());
        let _ = on.evaluate(&charge);
        group.bench_function(format!("{n}_policies/cache_hit"), |b| {
            b.iter(|| on.evaluate(std::hint::black_box(&charge)))
        });
        let mut amount = 0u64;
        group.bench_function(format!("{n}_policies/cache_miss"), |b| {
            b.iter(|| {
                amount += 1;
                let mut fresh = charge.clone();
                fresh["action"]["params"]["body"]["amount"] = json!(amount);
                on.evaluate(std::hint::black_box(&fresh))
            })
        });
        // The charge concerns every generated policy (each has an HTTP blocklist rule), so
        // the rule index skips none of them; a knowledge-base search concerns none of them
        // (their rules start with tool and team guards), so it skips them all. Cache off.
        let unindexed = policy_set(
            n,
            EvaluatorOptions {
                rule_index: false,
                ..no_cache()
            },
        );
        let _ = unindexed.evaluate(&search);
        group.bench_function(format!("{n}_policies/search_index_off"), |b| {
            b.iter(|| unindexed.evaluate(std::hint::black_box(&search)))
        });
        let _ = off.evaluate(&search);
        group.bench_function(format!("{n}_policies/search_index_on"), |b| {
            b.iter(|| off.evaluate(std::hint::black_box(&search)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
