//! A fixed number of decisions of the evaluator benchmark's policy sets, for instruction
//! counting (`valgrind --tool=callgrind`) and profiling (`perf record`), where criterion's
//! adaptive iteration counts get in the way.
//!
//! Usage: `policy_eval_loop POLICIES INPUT N` with `POLICIES` the number of policies (the
//! starter, the three built-in packs, then generated policies, as in
//! `benches/evaluator.rs`) or a comma-separated list of Rego files, `INPUT` `charge` (a Stripe charge of 50000) or `search` (a
//! knowledge-base search), `N` the number of decisions after one warm-up decision. One
//! thread, decision cache off, time limits of 60 s (for valgrind). Prints the decision and the number of decisions made.
//!
//! Run: `cargo run --release -p aaf-core --example policy_eval_loop -- 4 charge 1000`;
//! `bench/callgrind-policies.sh` counts instructions per decision with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aaf_core::action::{ActionRequest, AgentInfo, OrgInfo, PolicyInput, RequestMetadata};
use aaf_core::policy::{EvaluatorOptions, PolicySet, PolicySource};
use serde_json::{json, Value};

#[path = "../benches/common/mod.rs"]
mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spec = args.get(1).map_or("4", String::as_str);
    let which = args.get(2).map_or("charge", String::as_str);
    let iterations: usize = args.get(3).map_or(1000, |a| a.parse().expect("N"));
    let sources = match spec.parse::<usize>() {
        Ok(n) => common::sources(n),
        // Rego files named on the command line, comma-separated.
        Err(_) => spec
            .split(',')
            .map(|file| PolicySource {
                path: file.to_string(),
                rego: std::fs::read_to_string(file).unwrap(),
            })
            .collect(),
    };
    let set = PolicySet::load(
        sources,
        EvaluatorOptions {
            decision_cache_entries: 0,
            eval_threads: 1,
            // Valgrind runs the loop some fifty times slower than a CPU.
            eval_timeout: std::time::Duration::from_secs(60),
            load_timeout: std::time::Duration::from_secs(60),
            ..EvaluatorOptions::default()
        },
    )
    .unwrap();
    let action = match which {
        "charge" => {
            json!({"tool": "http_proxy", "operation": "POST", "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 50000, "currency": "usd"}}, "context": {"user_id": "user-456", "team": "team-7"}})
        }
        "search" => {
            json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "refund policy"}, "context": {"user_id": "user-456"}})
        }
        other => {
            eprintln!("INPUT must be charge or search, not {other}");
            std::process::exit(2);
        }
    };
    let request: ActionRequest = serde_json::from_value(action).unwrap();
    let input: Value = PolicyInput::build(
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
    );
    let first = set.evaluate(&input);
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(set.evaluate(std::hint::black_box(&input)));
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / iterations.max(1) as f64;
    println!("{per:.1} µs per decision (mean)");
    println!(
        "{:?} {}: {iterations} decisions",
        first.verdict, first.reason
    );
    if std::env::var_os("SHOW_CONSTANT_RULES").is_some() {
        println!("constant rules: {}", set.constant_rules().join(" "));
    }
    for p in first.policies.iter().filter(|_| first.policies.len() <= 10) {
        println!(
            "  {}: {:?} {}",
            p.policy,
            p.decision,
            p.reason.as_deref().unwrap_or("")
        );
    }
}
