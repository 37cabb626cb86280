//! Replays a corpus of policy sets and inputs through `PolicySet::evaluate` (one thread,
//! decision cache off, constant rules on: as a node decides) and prints every decision as
//! one line of JSON (timings zeroed), so that two builds can be compared line by line.
//! `vendor/regorus-differential.sh` builds this example at two commits and compares them.
//!
//! Usage: `decision_replay CORPUS.json` where the corpus is a JSON array of groups
//! `{"name", "sources": [{"path", "rego"}], "data", "inputs": [...]}` (written by the
//! ignored test `write_corpus` of `tests/pack_differential.rs`). With a number `N` as a
//! second argument, it also loads the evaluator benchmark's first `N` policies (the
//! starter, the packs, generated policies) and replays every input of the corpus through
//! them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aaf_core::policy::{EvaluatorOptions, PolicyBundle, PolicySet, PolicySource};
use serde_json::Value;

#[path = "../benches/common/mod.rs"]
mod common;

fn options() -> EvaluatorOptions {
    EvaluatorOptions {
        decision_cache_entries: 0,
        eval_threads: 1,
        eval_timeout: std::time::Duration::from_secs(60),
        ..EvaluatorOptions::default()
    }
}

fn replay(name: &str, set: &PolicySet, inputs: &[Value]) {
    for (i, input) in inputs.iter().enumerate() {
        let mut decision = set.evaluate(input);
        for p in &mut decision.policies {
            p.eval_time_us = 0;
        }
        println!(
            "{}",
            serde_json::json!({"group": name, "input": i, "decision": decision})
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let corpus: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&args[1]).expect("CORPUS.json")).unwrap();
    let mut all_inputs = Vec::new();
    for group in &corpus {
        let name = group["name"].as_str().unwrap();
        let sources = group["sources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| PolicySource {
                path: s["path"].as_str().unwrap().to_string(),
                rego: s["rego"].as_str().unwrap().to_string(),
            })
            .collect();
        let set = PolicySet::load_bundle(
            PolicyBundle {
                sources,
                data: group["data"].clone(),
                labels: Default::default(),
            },
            options(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let inputs = group["inputs"].as_array().unwrap();
        replay(name, &set, inputs);
        all_inputs.extend(inputs.iter().cloned());
    }
    if let Some(n) = args.get(2) {
        let n: usize = n.parse().expect("N");
        let set = PolicySet::load(common::sources(n), options()).unwrap();
        replay(&format!("{n} policies of the benchmark"), &set, &all_inputs);
    }
}
