//! Differential test of the built-in policy packs (issue 19): the packs as shipped
//! (`policies/packs/`) against the packs as they were before they were restructured for speed
//! (`tests/reference_packs/`, frozen copies), over a generated corpus of thousands of inputs
//! and every kind of parameter document (absent, valid, invalid). Both must give every input
//! the same outcome: decision, reason, risk level and approval terms, word for word.
//!
//! Each pack is evaluated three ways: the reference pack on the plain interpreter
//! (`constant_rules` off: every rule evaluated in every decision, as before), the shipped pack
//! as AAF runs it (the default options: rules that do not depend on the input are kept per
//! revision), and the shipped pack on the plain interpreter. The third way checks the
//! engine's per-revision rules on their own.
//!
//! The corpus is generated from a fixed seed, so a failure reproduces; the first difference
//! is reported with its input and parameters. The packs' own Rego unit tests run here too, with
//! constant rules on and off.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use aaf_core::action::PolicyOutcome;
use aaf_core::policy::{EvaluatorOptions, PolicyBundle, PolicySet, PolicySource};
use serde_json::{json, Value};

/// xorshift64*: a small deterministic generator, enough to sample the corpus.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &'a [Value]) -> &'a Value {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap();
        &items[i]
    }
}

/// A value that means "leave the field out".
fn absent() -> Value {
    json!({"$absent": true})
}

fn is_absent(v: &Value) -> bool {
    v.get("$absent").is_some()
}

fn tools() -> Vec<Value> {
    vec![
        json!("http_proxy"),
        json!("http_proxy"),
        json!("http"),
        json!("knowledge_base"),
        json!("stripe"),
        json!("HTTP_PROXY"),
        json!(""),
        json!(null),
        json!(42),
        absent(),
    ]
}

fn operations() -> Vec<Value> {
    [
        "GET", "GET", "POST", "POST", "post", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS",
        "search", "refund",
    ]
    .iter()
    .map(|s| json!(s))
    .chain([json!(null), json!(7), absent()])
    .collect()
}

fn urls() -> Vec<Value> {
    [
        "https://api.stripe.com/v1/charges",
        "https://api.stripe.com/v1/refunds",
        "https://API.Stripe.COM./v1/charges",
        "https://api.stripe.com:443/v1/charges",
        "https://api.stripe.com:0443/v1/charges",
        "https://api.stripe.com:8443/v1/charges",
        "https://api.stripe.com:99999/v1",
        "http://api.stripe.com/v1/charges",
        "HTTPS://API.STRIPE.COM/V1/CHARGES",
        "https://user@api.stripe.com/v1/charges",
        "https://api.stripe.com@evil.example.com/",
        "https://api.%73tripe.com/v1/charges",
        "https://api.ｓtripe.com/v1/charges",
        " https://api.stripe.com/v1/charges ",
        "https://api.stripe.com\t/v1/charges",
        "https://api.stripe\n.com/v1/charges",
        "https://api.stripe.com\r\n/v1",
        "\u{1}https://api.stripe.com/v1/charges",
        "https://api.stripe.com\\v1\\charges",
        "https://api.stripe.com/v1/charges?amount=5",
        "https://api.stripe.com/v1/charges?currency=usd&amount=5#x",
        "https://api.stripe.com/v1/charges#amount=5",
        "https://api.stripe.com?x=1",
        "https://api.stripe.com",
        "https://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/admin",
        "https://10.0.0.1/",
        "https://[::1]/",
        "https://2130706433/",
        "https://0x7f000001/",
        "https://127.1/",
        "https://localhost/",
        "https://metadata.google.internal/computeMetadata",
        "https://api.github.com/repos/x/y",
        "https://sub.example.com/a",
        "https://deep.sub.example.com/a",
        "https://example.com/",
        "https://evil.example.org/",
        "https://api.paypal.com/v1/payments",
        "https://API.PAYPAL.COM/v1/payments",
        "https://a..b.com/",
        "https://-a.com/",
        "https://a.com./",
        "ftp://api.stripe.com/",
        "api.stripe.com/v1/charges",
        "https://",
        "",
        "//api.stripe.com/v1",
        "https:api.stripe.com",
    ]
    .iter()
    .map(|s| json!(s))
    .chain([
        json!(123),
        json!(null),
        json!(["https://api.stripe.com"]),
        absent(),
    ])
    .collect()
}

fn bodies() -> Vec<Value> {
    vec![
        json!({"amount": 50000, "currency": "usd"}),
        json!({"amount": 0}),
        json!({"amount": -1}),
        json!({"amount": 100}),
        json!({"amount": 101}),
        json!({"amount": 10000}),
        json!({"amount": 10001}),
        json!({"amount": 100000}),
        json!({"amount": 1000000}),
        json!({"amount": 1000001}),
        json!({"amount": 1e15}),
        json!({"amount": 0.5}),
        json!({"amount": "5000"}),
        json!({"amount": null}),
        json!({"amount": [1]}),
        json!({}),
        json!({"amount": 5, "memo": "&amount=99999999"}),
        json!({"amount": 5, "memo": "a;amount=9"}),
        json!({"amount": 5, "memo": "#&amount=9"}),
        json!({"total": 5}),
        json!({"total": 500000, "amount": 1}),
        json!("amount=5000"),
        json!("amount=5000&currency=usd"),
        json!("amount=5000&amount=1"),
        json!("amount=abc"),
        json!("amount=-5"),
        json!("amount=12.50"),
        json!("amount=1e3"),
        json!("amount=5;x=1"),
        json!("amount=5#x"),
        json!("amount=5\n"),
        json!("amount=%35"),
        json!("total=700000"),
        json!("{\"amount\": 5}"),
        json!("currency=usd"),
        json!(""),
        json!([1, 2]),
        json!(7),
        json!(null),
        absent(),
    ]
}

fn contexts() -> Vec<Value> {
    vec![
        json!({}),
        json!({"user_id": "user-456"}),
        json!({"user_id": "user-456", "purpose": "answer a customer", "team": "team-7"}),
        json!({"user_id": "", "purpose": "  "}),
        json!({"user_id": null, "ticket": "T-1"}),
        json!({"purpose": 5, "user_id": false}),
        json!("not an object"),
        absent(),
    ]
}

fn extra_params() -> Vec<Value> {
    vec![
        json!({}),
        json!({}),
        json!({"q": "refund policy"}),
        json!({"note": "customer SSN 123-45-6789"}),
        json!({"card": "4111 1111 1111 1111"}),
        json!({"card": "4111 1111 1111 1112"}),
        json!({"email": "jane@example.com", "phone": "+1 415 555 0100"}),
        json!({"nested": {"deep": ["078-05-1120"]}}),
    ]
}

/// The parameter documents of each pack: absent, valid ones (twice, so that most inputs
/// meet valid parameters), invalid ones.
fn configs(pack: &str) -> Vec<Value> {
    let (valid, invalid) = parameters(pack);
    let mut out = vec![absent()];
    out.extend(valid.iter().cloned());
    out.extend(valid);
    out.extend(invalid);
    out
}

/// Valid and invalid parameter documents of a pack.
fn parameters(pack: &str) -> (Vec<Value>, Vec<Value>) {
    match pack {
        "security" => (
            vec![
                json!({}),
                json!({"allowed_domains": ["api.stripe.com", "*.example.com"]}),
                json!({"allowed_domains": ["api.github.com", "API.Stripe.com", "localhost.example"], "allow_http": true, "allowed_ports": [8443, 8080], "allowed_tools": ["knowledge_base.search", "stripe"], "allowed_methods": ["GET", "post"], "approval_methods": ["DELETE", "put"]}),
                json!({"allowed_domains": ["*.example.com"], "allowed_methods": [], "approval_methods": []}),
            ],
            vec![
                json!({"allowed_domains": "api.stripe.com"}),
                json!({"allow_http": "yes", "bogus": 1}),
                json!({"allowed_ports": [0, 1.5, 70000, "80"]}),
                json!({"allowed_domains": ["1.2.3.4", "*.com", "a.com.", "https://x.com", 5]}),
                json!({"allowed_methods": "GET", "allowed_tools": [1]}),
                json!("not an object"),
                json!([]),
            ],
        ),
        "compliance" => (
            vec![
                json!({}),
                json!({"on_pii": "deny", "exempt_tools": ["knowledge_base"], "required_context": ["user_id", "purpose"], "on_missing_context": "require_approval"}),
                json!({"required_context": ["team"], "on_credit_card": "require_approval"}),
                json!({"exempt_tools": ["http_proxy", "stripe"], "on_pii": "require_approval"}),
            ],
            vec![
                json!({"on_pii": "allow"}),
                json!({"required_context": [""]}),
                json!({"exempt_tools": "x", "bogus": true}),
                json!({"required_context": [1, "a"], "on_missing_context": null}),
                json!("not an object"),
            ],
        ),
        "financial" => (
            vec![
                json!({}),
                json!({"apis": {}}),
                json!({"apis": {"api.stripe.com": {"approval_threshold": 100, "max_amount": 100000, "approvals_required": 2}, "API.PayPal.com": {"amount_field": "total", "methods": ["post", "PUT"]}}}),
                json!({"apis": {"api.stripe.com": {"methods": ["POST", "GET"], "amount_field": "total"}}}),
            ],
            vec![
                json!({"apis": {"api.stripe.com": {"approval_threshold": -1}}}),
                json!({"apis": {"1.2.3.4": {}, "a.com": 5}}),
                json!({"apis": {"a.com": {}, "A.com": {}}}),
                json!({"apis": {"x.com": {"approvals_required": 11, "methods": "POST", "amount_field": ""}}}),
                json!({"apis": {"x.com": {"bogus": 1, "max_amount": "9"}}}),
                json!({"apis": []}),
                json!({"foo": 1}),
                json!("not an object"),
            ],
        ),
        other => panic!("no parameters for {other}"),
    }
}

fn set_field(object: &mut Value, key: &str, value: &Value) {
    if !is_absent(value) {
        object[key] = value.clone();
    }
}

/// One generated input: the policy input AAF builds, with the action's fields drawn from
/// the lists above (including values of the wrong type and absent fields).
fn generated_input(i: usize, rng: &mut Rng) -> Value {
    let urls = urls();
    let bodies = bodies();
    // URL and body walk their lists together so that every pair occurs.
    let url = &urls[i % urls.len()];
    let body = &bodies[(i / urls.len()) % bodies.len()];
    let mut params = rng.pick(&extra_params()).clone();
    if rng.next().is_multiple_of(8) {
        params = json!("not an object");
    } else {
        set_field(&mut params, "url", url);
        set_field(&mut params, "body", body);
    }
    let mut action = json!({"id": format!("0193a0d2-0000-7000-8000-{i:012}")});
    if rng.next().is_multiple_of(2) {
        // A plausible call: an HTTP tool, a common method, a well-formed URL and body.
        let url = rng
            .pick(&[
                json!("https://api.stripe.com/v1/charges"),
                json!("https://api.stripe.com/v1/charges"),
                json!("https://api.stripe.com/v1/refunds"),
                json!("https://api.paypal.com/v1/payments"),
                json!("https://api.github.com/repos/x/y"),
                json!("https://sub.example.com/a"),
            ])
            .clone();
        let body = rng.pick(&bodies[..12]).clone();
        if params.is_object() {
            params["url"] = url;
            params["body"] = body;
        }
        set_field(
            &mut action,
            "tool",
            rng.pick(&[json!("http_proxy"), json!("http")]),
        );
        set_field(
            &mut action,
            "operation",
            rng.pick(&[
                json!("GET"),
                json!("POST"),
                json!("POST"),
                json!("DELETE"),
                json!("PUT"),
            ]),
        );
    } else {
        set_field(&mut action, "tool", rng.pick(&tools()));
        set_field(&mut action, "operation", rng.pick(&operations()));
    }
    action["params"] = params;
    set_field(&mut action, "context", rng.pick(&contexts()));
    json!({
        "action": action,
        "agent": {"id": "agent-001", "name": "Payment Agent", "risk_score": 0.2},
        "org": {"id": "org-uuid", "plan": "pro"},
        "metadata": {"timestamp": "2026-11-21T10:30:00.000000Z", "ip_address": "203.0.113.42"},
    })
}

/// The systematic part of the corpus, beside the random one: every URL with every HTTP tool
/// and a few methods (a JSON body with an amount), and every body with a POST to the
/// default payment API, so that each URL and body edge case meets the HTTP path of every
/// pack whatever the random draws.
fn swept_inputs() -> Vec<Value> {
    let input = |tool: &Value, operation: &str, url: &Value, body: &Value| {
        let mut params = json!({});
        set_field(&mut params, "url", url);
        set_field(&mut params, "body", body);
        json!({
            "action": {
                "id": "0193a0d2-0000-7000-8000-000000000000",
                "tool": tool,
                "operation": operation,
                "params": params,
                "context": {"user_id": "user-456"},
            },
            "agent": {"id": "agent-001", "name": "Payment Agent", "risk_score": 0.2},
            "org": {"id": "org-uuid", "plan": "pro"},
            "metadata": {"timestamp": "2026-11-21T10:30:00.000000Z", "ip_address": "203.0.113.42"},
        })
    };
    let tools = [json!("http_proxy"), json!("http")];
    let mut out = Vec::new();
    for url in urls() {
        for tool in &tools {
            for operation in ["POST", "GET", "post", "DELETE"] {
                out.push(input(tool, operation, &url, &bodies()[0]));
            }
        }
    }
    for body in bodies() {
        for url in [
            "https://api.stripe.com/v1/charges",
            "https://api.paypal.com/v1/payments",
        ] {
            out.push(input(&tools[0], "POST", &json!(url), &body));
        }
    }
    out
}

fn load(path: &Path, pack: &str, config: &Value, constant_rules: bool) -> PolicySet {
    let data = if is_absent(config) {
        json!({})
    } else {
        json!({"packs": {pack: config}})
    };
    PolicySet::load_bundle(
        PolicyBundle {
            sources: vec![PolicySource {
                path: format!("packs/{pack}.rego"),
                rego: std::fs::read_to_string(path).unwrap(),
            }],
            data,
            labels: Default::default(),
        },
        EvaluatorOptions {
            decision_cache_entries: 0,
            eval_threads: 1,
            constant_rules,
            // A debug build on a busy machine: the limit must not decide anything here.
            eval_timeout: std::time::Duration::from_secs(10),
            ..EvaluatorOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{pack} with {config}: {e:?}"))
}

/// What a decision says, in the words the firewall records.
fn outcome(set: &PolicySet, input: &Value) -> PolicyOutcome {
    let decision = set.evaluate(input);
    assert_eq!(decision.policies.len(), 1, "{decision:?}");
    let mut outcome = decision.policies[0].clone();
    outcome.eval_time_us = 0;
    outcome
}

const INPUTS_PER_PACK: usize = 6000;

fn differential(pack: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference = root.join(format!("tests/reference_packs/{pack}.rego"));
    let shipped = root.join(format!("../../policies/packs/{pack}.rego"));
    let configs = configs(pack);
    let sets: Vec<(PolicySet, PolicySet, PolicySet)> = configs
        .iter()
        .map(|c| {
            (
                load(&reference, pack, c, false),
                load(&shipped, pack, c, true),
                load(&shipped, pack, c, false),
            )
        })
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ pack.len() as u64);
    let mut outcomes = std::collections::BTreeMap::new();
    // Each swept input meets every parameter document; the random ones one each.
    let swept: Vec<(Value, usize)> = swept_inputs()
        .into_iter()
        .flat_map(|input| (0..configs.len()).map(move |c| (input.clone(), c)))
        .collect();
    let total = INPUTS_PER_PACK + swept.len();
    let random = (0..INPUTS_PER_PACK).map(|i| (generated_input(i, &mut rng), i % configs.len()));
    for (input, c) in random.collect::<Vec<_>>().into_iter().chain(swept) {
        let (reference, shipped, plain) = &sets[c];
        let want = outcome(reference, &input);
        let got = outcome(shipped, &input);
        assert_eq!(
            want, got,
            "{pack} pack: the shipped pack decides differently from the reference\n\
             parameters: {}\ninput action: {}",
            configs[c], input["action"]
        );
        let plain = outcome(plain, &input);
        assert_eq!(
            got, plain,
            "{pack} pack: per-revision rules change the decision\n\
             parameters: {}\ninput action: {}",
            configs[c], input["action"]
        );
        *outcomes
            .entry(format!("{:?}", want.decision))
            .or_insert(0usize) += 1;
    }
    // The corpus must exercise every outcome of the pack, not only its default.
    let expected: &[&str] = match pack {
        "security" => &["Some(Allow)", "Some(Deny)", "Some(RequireApproval)"],
        _ => &["None", "Some(Deny)", "Some(RequireApproval)"],
    };
    for e in expected {
        assert!(
            outcomes.get(*e).is_some_and(|n| *n >= 20),
            "{pack}: the corpus gives too few {e} outcomes: {outcomes:?}"
        );
    }
    eprintln!("{pack}: {total} inputs, outcomes {outcomes:?}");
}

#[test]
fn the_security_pack_decides_as_before() {
    differential("security");
}

#[test]
fn the_compliance_pack_decides_as_before() {
    differential("compliance");
}

#[test]
fn the_financial_pack_decides_as_before() {
    differential("financial");
}

/// The packs' own Rego unit tests (`policies/packs/*_test.rego`, which set parameters with
/// `with data.packs.<name> as ...`) pass with constant rules on and off: under a `with`
/// modifier the engine evaluates constant rules again instead of using the kept values.
#[test]
fn the_packs_unit_tests_pass_with_constant_rules_on_and_off() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let mut sources = Vec::new();
    for pack in ["security", "compliance", "financial"] {
        for file in [
            format!("packs/{pack}.rego"),
            format!("packs/{pack}_test.rego"),
        ] {
            sources.push(PolicySource {
                rego: std::fs::read_to_string(root.join(&file)).unwrap(),
                path: file,
            });
        }
    }
    for constant_rules in [true, false] {
        let set = PolicySet::load_for_tests(
            sources.clone(),
            EvaluatorOptions {
                constant_rules,
                eval_timeout: std::time::Duration::from_secs(10),
                ..EvaluatorOptions::default()
            },
        )
        .unwrap();
        assert_eq!(set.constant_rules().is_empty(), !constant_rules);
        let report = set.run_tests(|_| true, false);
        assert!(report.passed >= 50, "{} tests passed", report.passed);
        assert_eq!(
            (report.failed, report.errors),
            (0, 0),
            "constant rules {constant_rules}: {:?}",
            report
                .results
                .iter()
                .filter(|r| r.outcome != aaf_core::policy::testing::TestOutcome::Pass)
                .collect::<Vec<_>>()
        );
    }
}

/// One set of the starter policy and the three packs, evaluated on one thread (each policy
/// continuing from what the earlier ones evaluated, with constant rules kept), gives every
/// policy the outcome it has when evaluated alone, from scratch, over the generated corpus.
#[test]
fn the_packs_together_decide_as_each_alone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let files = [
        "starter.rego",
        "packs/compliance.rego",
        "packs/financial.rego",
        "packs/security.rego",
    ];
    let source = |f: &str| PolicySource {
        path: f.to_string(),
        rego: std::fs::read_to_string(root.join(f)).unwrap(),
    };
    let data = json!({"packs": {
        "security": {"allowed_domains": ["api.stripe.com", "*.example.com"], "allowed_tools": ["knowledge_base.search"]},
        "compliance": {"required_context": ["user_id"], "on_missing_context": "require_approval"},
        "financial": {"apis": {"api.stripe.com": {"approval_threshold": 100, "max_amount": 100000}}},
    }});
    let options = |constant_rules| EvaluatorOptions {
        decision_cache_entries: 0,
        eval_threads: 1,
        constant_rules,
        eval_timeout: std::time::Duration::from_secs(10),
        ..EvaluatorOptions::default()
    };
    let bundle = |sources: Vec<PolicySource>, constant_rules| {
        PolicySet::load_bundle(
            PolicyBundle {
                sources,
                data: data.clone(),
                labels: Default::default(),
            },
            options(constant_rules),
        )
        .unwrap()
    };
    let together = bundle(files.iter().map(|f| source(f)).collect(), true);
    let alone: Vec<PolicySet> = files
        .iter()
        .map(|f| bundle(vec![source(f)], false))
        .collect();
    let mut rng = Rng(0x5eed);
    for i in 0..1500 {
        let input = generated_input(i, &mut rng);
        let mut got = together.evaluate(&input).policies;
        for p in &mut got {
            p.eval_time_us = 0;
        }
        let mut want: Vec<PolicyOutcome> = alone.iter().map(|s| outcome(s, &input)).collect();
        want.sort_by(|a, b| a.policy.cmp(&b.policy));
        got.sort_by(|a, b| a.policy.cmp(&b.policy));
        assert_eq!(got, want, "input action: {}", input["action"]);
    }
}

/// Writes this file's corpus for `examples/decision_replay.rs`, which compares two builds
/// of the engine decision by decision (`vendor/regorus-differential.sh`): each pack with
/// each parameter document and the inputs `differential` gives it, the four policies
/// together, and the evaluator benchmark's 100-policy set. Not a check by itself:
/// `AAF_CORPUS_OUT=corpus.json cargo test -p aaf-core --test pack_differential
/// write_corpus -- --ignored`.
#[test]
#[ignore = "writes a corpus file for vendor/regorus-differential.sh"]
fn write_corpus() {
    let out = std::env::var("AAF_CORPUS_OUT").expect("AAF_CORPUS_OUT names the file to write");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let source =
        |f: &str| json!({"path": f, "rego": std::fs::read_to_string(root.join(f)).unwrap()});
    let mut groups = Vec::new();
    for pack in ["security", "compliance", "financial"] {
        let configs = configs(pack);
        let mut inputs: Vec<Vec<Value>> = vec![Vec::new(); configs.len()];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ pack.len() as u64);
        for i in 0..INPUTS_PER_PACK {
            inputs[i % configs.len()].push(generated_input(i, &mut rng));
        }
        for (c, config) in configs.iter().enumerate() {
            let data = if is_absent(config) {
                json!({})
            } else {
                json!({"packs": {pack: config}})
            };
            groups.push(json!({
                "name": format!("{pack} pack, parameters {c}"),
                "sources": [source(&format!("packs/{pack}.rego"))],
                "data": data,
                "inputs": inputs[c],
            }));
        }
    }
    let four: Vec<Value> = [
        "starter.rego",
        "packs/security.rego",
        "packs/compliance.rego",
        "packs/financial.rego",
    ]
    .iter()
    .map(|f| source(f))
    .collect();
    let mut rng = Rng(0x5eed);
    let inputs: Vec<Value> = (0..1500).map(|i| generated_input(i, &mut rng)).collect();
    groups.push(json!({
        "name": "the starter and the three packs, parameters set",
        "sources": four,
        "data": {"packs": {
            "security": {"allowed_domains": ["api.stripe.com", "*.example.com"], "allowed_tools": ["knowledge_base.search"]},
            "compliance": {"required_context": ["user_id"], "on_missing_context": "require_approval"},
            "financial": {"apis": {"api.stripe.com": {"approval_threshold": 100, "max_amount": 100000}}},
        }},
        "inputs": inputs,
    }));
    groups.push(json!({
        "name": "the starter and the three packs, no parameters",
        "sources": four,
        "data": {},
        "inputs": inputs,
    }));
    // Every group has inputs, and together they are the whole corpus.
    let total: usize = groups
        .iter()
        .map(|g| g["inputs"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(groups
        .iter()
        .all(|g| g["inputs"].as_array().is_some_and(|i| !i.is_empty())));
    assert_eq!(total, 3 * INPUTS_PER_PACK + 2 * 1500);
    std::fs::write(&out, serde_json::to_vec(&groups).unwrap()).unwrap();
    eprintln!("wrote {} groups to {out}", groups.len());
}
