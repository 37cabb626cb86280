//! Policy evaluator benchmark: one full decision (input conversion, every policy of the set,
//! combination) over the example policies of the product documents.
//!
//! Run: `cargo bench -p aaf-core --bench evaluator`. Numbers: `docs/performance.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use aaf_core::action::{ActionRequest, AgentInfo, OrgInfo, PolicyInput, RequestMetadata};
use aaf_core::policy::{EvaluatorOptions, PolicySet, PolicySource};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

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
    PolicySet::load(sources, EvaluatorOptions::default()).unwrap()
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
