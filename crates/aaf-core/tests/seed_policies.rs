//! The decisions the product documents promise, checked against the example policies in
//! `examples/policies/` (read in place).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use aaf_core::action::{ActionRequest, AgentInfo, OrgInfo, PolicyInput, RequestMetadata, Verdict};
use aaf_core::policy::{EvaluatorOptions, PolicySet, PolicySource};
use serde_json::{json, Value};

fn load(dir: &str) -> PolicySet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies")
        .join(dir);
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rego") {
            sources.push(PolicySource {
                path: path.display().to_string(),
                rego: std::fs::read_to_string(&path).unwrap(),
            });
        }
    }
    assert!(!sources.is_empty(), "no policies in {}", dir.display());
    PolicySet::load(sources, EvaluatorOptions::default()).unwrap()
}

fn decide(set: &PolicySet, action: Value) -> aaf_core::action::Decision {
    let request: ActionRequest = serde_json::from_value(json!({
        "tool": action["tool"],
        "operation": action["operation"],
        "params": action.get("params").cloned().unwrap_or(json!({})),
        "context": action.get("context").cloned().unwrap_or(json!({})),
    }))
    .unwrap();
    let input = PolicyInput::build(
        "action-123",
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
            timestamp: "2024-01-15T10:30:00Z".into(),
            ip_address: Some("203.0.113.42".into()),
        },
    );
    set.evaluate(&input)
}

#[test]
fn seed_004_stripe_charge_of_50000_requires_approval() {
    let set = load("seed-004");
    let d = decide(
        &set,
        json!({
            "tool": "http_proxy", "operation": "POST",
            "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 50000}}
        }),
    );
    assert_eq!(d.verdict, Verdict::RequireApproval, "{d:?}");
    assert_eq!(d.matched_policies, vec!["aaf.policy".to_string()]);
}

#[test]
fn seed_004_small_charge_is_allowed_and_private_network_denied() {
    let set = load("seed-004");
    let d = decide(
        &set,
        json!({
            "tool": "http_proxy", "operation": "POST",
            "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 500}}
        }),
    );
    assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
    for url in [
        "http://10.0.0.5/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://0x7f000001/",
        "http://localhost:8080/",
    ] {
        let d = decide(
            &set,
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": url}}),
        );
        assert_eq!(d.verdict, Verdict::Deny, "{url}: {d:?}");
    }
}

#[test]
fn seed_000_default_deny_with_trusted_get_allowed() {
    let set = load("seed-000");
    let d = decide(
        &set,
        json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "https://api.trusted.com/v1/status"}}),
    );
    assert_eq!(d.verdict, Verdict::Allow, "{d:?}");
    for (op, url) in [
        ("GET", "https://api.trusted.com.evil.example/"),
        ("GET", "https://evil.example/"),
        ("POST", "https://api.trusted.com/v1/status"),
        ("GET", "http://api.trusted.com/v1/status"),
    ] {
        let d = decide(
            &set,
            json!({"tool": "http_proxy", "operation": op, "params": {"url": url}}),
        );
        assert_eq!(d.verdict, Verdict::Deny, "{op} {url}: {d:?}");
        assert_eq!(d.reason, "No matching allow rule");
    }
}

#[test]
fn seed_000_as_written_is_rejected_at_load() {
    let original = "package aaf.policies\ndefault decision = {\"action\": \"deny\", \"reason\": \"No matching allow rule\"}\ndecision = {\"action\": \"allow\"} {\ninput.tool == \"http_proxy\"\ninput.operation == \"GET\"\nallowed_domains[input.params.url]\n}\nallowed_domains[url] {\nstartswith(url, \"https://api.trusted.com/\")\n}\n";
    let errors = PolicySet::load(
        vec![PolicySource {
            path: "seed000.rego".into(),
            rego: original.into(),
        }],
        EvaluatorOptions::default(),
    )
    .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, "seed000.rego");
    assert_eq!(errors[0].line, 9);
    assert!(
        errors[0].message.contains("var url is unsafe"),
        "{}",
        errors[0]
    );
}
