//! The policy sets of the evaluator benchmark (`benches/evaluator.rs`) and of the
//! `policy_eval_loop` example: the starter policy, the three built-in packs, then generated
//! policies of realistic shape.

use std::path::Path;

use aaf_core::policy::PolicySource;

/// A generated policy of realistic shape: a host blocklist, a spending threshold per team,
/// a read-only tool allowance.
pub fn generated(i: usize) -> PolicySource {
    PolicySource {
        path: format!("generated/p{i}.rego"),
        rego: format!(
            r#"package aaf.generated.p{i}
import rego.v1

blocked_hosts := {{"blocked{i}.example.com", "evil{i}.example.org", "exfil{i}.example.net"}}

decision := {{"action": "deny", "reason": "host on blocklist {i}"}} if {{
	input.action.tool in {{"http_proxy", "http"}}
	some host in blocked_hosts
	contains(lower(input.action.params.url), host)
}}

decision := {{"action": "require_approval", "risk_level": "medium", "reason": "team {i} spend over its threshold"}} if {{
	input.action.context.team == "team-{i}"
	input.action.params.body.amount > {threshold}
}}

decision := "allow" if {{
	input.action.tool == "tool_{i}"
	input.action.operation in {{"read", "list"}}
}}
"#,
            threshold = 1000 + 10 * i
        ),
    }
}

/// `n` policies: the starter, then the three packs, then generated ones.
pub fn sources(n: usize) -> Vec<PolicySource> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let mut sources = Vec::new();
    for file in [
        "starter.rego",
        "packs/security.rego",
        "packs/compliance.rego",
        "packs/financial.rego",
    ]
    .into_iter()
    .take(n)
    {
        sources.push(PolicySource {
            path: file.to_string(),
            rego: std::fs::read_to_string(root.join(file)).unwrap(),
        });
    }
    for i in sources.len()..n {
        sources.push(generated(i));
    }
    sources
}
