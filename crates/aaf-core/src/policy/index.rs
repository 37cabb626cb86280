//! The rule index: skips, without evaluating them, the policies whose `decision` rule
//! provably cannot apply to an input.
//!
//! The idea is OPA's rule indexing (<https://www.openpolicyagent.org/docs/policy-performance#indexing>):
//! most policies of a large set concern a few tools, and say so first
//! (`input.action.tool == "stripe"`); evaluating them against every other action only to
//! find their rule undefined costs the interpreter tens of microseconds each.
//!
//! A policy is indexed when, over all the modules of its package:
//!
//! * every rule whose head starts with `decision` is a plain complete rule
//!   `decision := <value> if { ... }` (Rego v1) or `decision = <value> { ... }` (v0), with no
//!   `default decision`, no partial-set, function or ref-head (`decision.x`) form;
//! * every body of every such rule (an `else` branch is a body too; a rule without a body
//!   always applies) *starts* with one or more guards, a guard being a statement without
//!   `with` of one of the forms
//!   `input.a.b == "s"`, `"s" == input.a.b`, `input.a.b = "s"` (unification of two ground
//!   terms is equality) or `input.a.b in {"s", "t"}` / `["s", "t"]`, over a path of plain
//!   field names below `input` and string literals only;
//! * the module never binds a local variable named `input`.
//!
//! A body whose first statement is a bare reference to a [constant rule](super::constant) of
//! the package that is undefined or `false` at this revision (the financial pack's
//! `config_invalid` while its parameters are valid) cannot succeed for any input: it is left
//! out, and needs no guard.
//!
//! For an input, a guard holds when the value at its path is a string equal to one of its
//! literals; otherwise the Rego expression is false or undefined and the body fails. A body
//! with a failing guard cannot produce a value, and guards come first, so the interpreter
//! would stop at them too (no later statement of that body is reached, so no error it might
//! raise is lost). When every body has a failing guard, the policy's `decision` is undefined
//! and the policy abstains: [`RuleIndex::can_skip`] says so and the evaluator does not run it.
//! Anything the analysis does not recognise makes the policy unindexed (always evaluated).

use regorus::unstable::{AssignOp, BoolOp, Expr, Literal, LiteralStmt, Module, Rule, RuleHead};
use regorus::Value;

/// One guard: the input at `path` must be a string in `allowed` (sorted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Guard {
    /// Field names below `input` (`["action", "tool"]`).
    pub path: Vec<String>,
    /// The string literals the value must equal one of, sorted and deduplicated.
    pub allowed: Vec<String>,
}

impl Guard {
    fn holds(&self, input: &serde_json::Value) -> bool {
        let mut v = input;
        for field in &self.path {
            match v.get(field) {
                Some(next) => v = next,
                None => return false,
            }
        }
        v.as_str()
            .is_some_and(|s| self.allowed.binary_search_by(|a| a.as_str().cmp(s)).is_ok())
    }
}

/// The guards of one policy: one list per body of its `decision` rules (each non-empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleIndex {
    bodies: Vec<Vec<Guard>>,
}

impl RuleIndex {
    /// Builds the index of the package's `decision` rule from its modules, or `None` when
    /// the policy cannot be indexed (see the module documentation). `never_holds(name)`
    /// says whether the rule `name` of the package is a constant rule whose value at this
    /// revision is undefined or `false`: a body that starts with such a rule cannot succeed
    /// for any input, so it is left out of the index (it needs no guard).
    pub(crate) fn build<'a>(
        modules: impl IntoIterator<Item = &'a Module>,
        never_holds: &dyn Fn(&str) -> bool,
    ) -> Option<RuleIndex> {
        let mut bodies = Vec::new();
        for module in modules {
            if binds_input(module.package.span.source.contents()) {
                return None;
            }
            for rule in &module.policy {
                match rule.as_ref() {
                    Rule::Default { refr, .. } => {
                        if root_var(refr) == Some("decision") {
                            return None;
                        }
                    }
                    Rule::Spec {
                        head,
                        bodies: rule_bodies,
                        ..
                    } => {
                        let refr = match head {
                            RuleHead::Compr { refr, .. }
                            | RuleHead::Set { refr, .. }
                            | RuleHead::Func { refr, .. } => refr,
                        };
                        if root_var(refr) != Some("decision") {
                            continue;
                        }
                        let plain = matches!(head, RuleHead::Compr { .. })
                            && matches!(refr.as_ref(), Expr::Var { .. });
                        if !plain || rule_bodies.is_empty() {
                            return None;
                        }
                        for body in rule_bodies {
                            if body
                                .query
                                .stmts
                                .first()
                                .and_then(constant_guard)
                                .is_some_and(never_holds)
                            {
                                continue;
                            }
                            let guards: Vec<Guard> =
                                body.query.stmts.iter().map_while(guard).collect();
                            if guards.is_empty() {
                                return None;
                            }
                            bodies.push(guards);
                        }
                    }
                }
            }
        }
        (!bodies.is_empty()).then_some(RuleIndex { bodies })
    }

    /// True when no body of the policy's `decision` rules can succeed for `input` (the
    /// policy input document): every body has a guard that does not hold.
    pub(crate) fn can_skip(&self, input: &serde_json::Value) -> bool {
        self.bodies
            .iter()
            .all(|guards| guards.iter().any(|g| !g.holds(input)))
    }

    /// The guards as Rego-like text, for logs and explanations
    /// (`input.action.tool in {"a", "b"}` per body, bodies joined by ` | `).
    pub(crate) fn describe(&self) -> String {
        self.bodies
            .iter()
            .map(|guards| {
                guards
                    .iter()
                    .map(|g| {
                        let path = format!("input.{}", g.path.join("."));
                        let lits: Vec<String> =
                            g.allowed.iter().map(|a| format!("{a:?}")).collect();
                        if lits.len() == 1 {
                            format!("{path} == {}", lits[0])
                        } else {
                            format!("{path} in {{{}}}", lits.join(", "))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// Whether the module's code may bind a local variable named `input` (`input := ...`,
/// `some input`, `some input in ...`, `some k, input in ...`), which would make `input.x` in
/// a guard mean something else. Lexical and conservative.
fn binds_input(code: &str) -> bool {
    static PATTERN: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    PATTERN
        .get_or_init(|| {
            regex::Regex::new(r"\binput\s*:=|\bsome\s+(?:[A-Za-z_][A-Za-z0-9_]*\s*,\s*)*input\b")
                .ok()
        })
        .as_ref()
        .is_none_or(|re| re.is_match(code))
}

/// The variable a reference starts from (`decision` for `decision`, `decision.x`,
/// `decision[x]`).
fn root_var(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Var { value, .. } => value.as_string().ok().map(|s| s.as_ref()),
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => root_var(refr),
        _ => None,
    }
}

/// The rule a statement that is a bare rule name (`config_invalid`) refers to.
fn constant_guard(stmt: &LiteralStmt) -> Option<&str> {
    if !stmt.with_mods.is_empty() {
        return None;
    }
    match &stmt.literal {
        Literal::Expr { expr, .. } => match expr.as_ref() {
            Expr::Var { value, .. } => value.as_string().ok().map(|s| s.as_ref()),
            _ => None,
        },
        _ => None,
    }
}

/// The statement as a guard, if it is one.
fn guard(stmt: &LiteralStmt) -> Option<Guard> {
    if !stmt.with_mods.is_empty() {
        return None;
    }
    let Literal::Expr { expr, .. } = &stmt.literal else {
        return None;
    };
    let (path, allowed) = match expr.as_ref() {
        Expr::BoolExpr {
            op: BoolOp::Eq,
            lhs,
            rhs,
            ..
        }
        | Expr::AssignExpr {
            op: AssignOp::Eq,
            lhs,
            rhs,
            ..
        } => match (input_path(lhs), input_path(rhs)) {
            (Some(path), None) => (path, vec![string_literal(rhs)?]),
            (None, Some(path)) => (path, vec![string_literal(lhs)?]),
            _ => return None,
        },
        Expr::Membership {
            key: None,
            value,
            collection,
            ..
        } => {
            let path = input_path(value)?;
            let items = match collection.as_ref() {
                Expr::Set { items, .. } | Expr::Array { items, .. } => items,
                _ => return None,
            };
            let allowed = items
                .iter()
                .map(|i| string_literal(i))
                .collect::<Option<Vec<_>>>()?;
            (path, allowed)
        }
        _ => return None,
    };
    let mut allowed = allowed;
    allowed.sort();
    allowed.dedup();
    Some(Guard { path, allowed })
}

/// `input.a.b` as `["a", "b"]` (at least one field; plain field names only).
fn input_path(expr: &Expr) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut e = expr;
    loop {
        match e {
            Expr::RefDot { refr, field, .. } => {
                fields.push(field.1.as_string().ok()?.to_string());
                e = refr;
            }
            Expr::Var { value, .. } => {
                if value.as_string().ok()?.as_ref() != "input" || fields.is_empty() {
                    return None;
                }
                fields.reverse();
                return Some(fields);
            }
            _ => return None,
        }
    }
}

fn string_literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::String { value, .. } | Expr::RawString { value, .. } => match value {
            Value::String(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::{json, Value as Json};

    use crate::policy::{EvaluatorOptions, PolicySet, PolicySource};

    fn load(files: &[(&str, &str)], rule_index: bool) -> PolicySet {
        PolicySet::load(
            crate::policy::tests::sources(files),
            EvaluatorOptions {
                decision_cache_entries: 0,
                rule_index,
                ..EvaluatorOptions::default()
            },
        )
        .unwrap()
    }

    const SHAPES: &[(&str, &str)] = &[
        (
            "a.rego",
            "package a\nimport rego.v1\ndecision := \"allow\" if {\n input.action.tool == \"kb\"\n input.action.operation in {\"search\", \"read\"}\n}\ndecision := {\"action\": \"deny\", \"reason\": \"big\"} if {\n input.action.tool in [\"stripe\", \"payments\"]\n input.action.params.amount > 100\n}\n",
        ),
        ("b.rego", "package b\ndecision = \"deny\" { \"evil\" == input.tool }\n"),
        (
            "c.rego",
            "package c\nimport rego.v1\ndefault decision := \"allow\"\ndecision := \"deny\" if input.action.tool == \"x\"\n",
        ),
        (
            "d.rego",
            "package d\nimport rego.v1\ndecision := \"deny\" if {\n p := input.action.params\n input.action.tool == \"y\"\n p.k == 1\n}\n",
        ),
        (
            "e.rego",
            "package e\nimport rego.v1\ndecision := \"deny\" if {\n input.action.tool == \"z\"\n} else := \"require_approval\"\n",
        ),
        (
            "f.rego",
            "package f\nimport rego.v1\ndecision := \"deny\" if {\n input.action.tool == \"w\" with input.action.tool as \"w\"\n}\n",
        ),
        ("g.rego", "package g\ndecision = \"deny\" { input.tool = \"u\" }\n"),
        (
            "h.rego",
            "package h\nimport rego.v1\ndecision := \"require_approval\" if {\n input.action.tool == \"kb\"\n} else := \"deny\" if {\n input.action.tool == \"stripe\"\n}\n",
        ),
        (
            "i.rego",
            "package i\nimport rego.v1\ndecision := \"deny\" if {\n input.action.tool == \"kb\"\n input.action.params.n == 1\n}\ndecision := \"allow\" if input.action.params.n == 2\n",
        ),
        // Escapes in the literal: the index compares the unescaped string, as Rego does.
        (
            "j.rego",
            "package j\nimport rego.v1\ndecision := \"deny\" if input.action.tool in {\"a\\\"b\\u0041\\\\\", `raw\\n`}\n",
        ),
    ];

    fn inputs() -> Vec<Json> {
        let mut out = Vec::new();
        for tool in [
            json!("kb"),
            json!("stripe"),
            json!("payments"),
            json!("evil"),
            json!("x"),
            json!("y"),
            json!("z"),
            json!("w"),
            json!("u"),
            json!("other"),
            json!("a\"bA\\"),
            json!("raw\\n"),
            json!(7),
            json!(null),
            json!(["kb"]),
        ] {
            for (operation, params) in [
                ("search", json!({"amount": 500, "n": 1, "k": 1})),
                ("write", json!({"amount": 5, "n": 2})),
            ] {
                out.push(json!({
                    "tool": tool, "operation": operation, "params": params,
                    "action": {"tool": tool, "operation": operation, "params": params},
                }));
            }
        }
        out.push(json!({"action": "not an object"}));
        out.push(json!({}));
        out
    }

    #[test]
    fn only_leading_literal_guards_of_every_body_index_a_policy() {
        let s = load(SHAPES, true);
        let index: Vec<(String, Option<String>)> = s
            .policies()
            .iter()
            .map(|p| (p.package.clone(), p.index()))
            .collect();
        let expected = [
            (
                "a",
                Some(
                    "input.action.tool == \"kb\"; input.action.operation in {\"read\", \"search\"} | input.action.tool in {\"payments\", \"stripe\"}",
                ),
            ),
            ("b", Some("input.tool == \"evil\"")),
            ("c", None), // default decision: always has a value
            ("d", None), // the guard is not the first statement
            ("e", None), // an else branch without a guard
            ("f", None), // `with` on the guard
            ("g", Some("input.tool == \"u\"")),
            (
                "h",
                Some("input.action.tool == \"kb\" | input.action.tool == \"stripe\""),
            ),
            ("i", None), // one rule without a guard
            ("j", Some("input.action.tool in {\"a\\\"bA\\\\\", \"raw\\\\n\"}")),
        ];
        assert_eq!(index.len(), expected.len());
        for ((package, got), (want_package, want)) in index.iter().zip(expected) {
            assert_eq!(package, want_package);
            assert_eq!(got.as_deref(), want, "{package}");
        }
    }

    #[test]
    fn the_index_never_changes_a_decision_and_skips_what_cannot_apply() {
        let indexed = load(SHAPES, true);
        let full = load(SHAPES, false);
        assert!(full.policies().iter().all(|p| p.index().is_none()));
        let mut skipped = 0;
        for input in inputs() {
            let a = indexed.evaluate(&input);
            let b = full.evaluate(&input);
            assert_eq!(a.verdict, b.verdict, "{input}");
            assert_eq!(a.reason, b.reason, "{input}");
            for (x, y) in a.policies.iter().zip(&b.policies) {
                assert_eq!(
                    (&x.policy, x.decision, &x.reason),
                    (&y.policy, y.decision, &y.reason),
                    "{input}"
                );
            }
            // A policy whose every body fails a guard is not run at all.
            let a_policy = &a.policies[0];
            if input["action"]["tool"] == json!("other") {
                assert_eq!(a_policy.policy, "a");
                assert_eq!((a_policy.decision, a_policy.eval_time_us), (None, 0));
                skipped += 1;
            }
        }
        assert_eq!(skipped, 2);
        for tool in ["a\"bA\\", "raw\\n"] {
            let input = json!({"action": {"tool": tool}});
            let d = indexed.evaluate(&input);
            let j = d.policies.iter().find(|p| p.policy == "j").unwrap();
            assert_eq!(j.decision, Some(crate::action::Verdict::Deny), "{tool}");
        }
    }

    #[test]
    fn explanations_evaluate_indexed_policies_too() {
        let s = load(SHAPES, true);
        let e = s.explain(&json!({"action": {"tool": "other"}, "tool": "other"}));
        let a = e.policies.iter().find(|p| p.package == "a").unwrap();
        assert_eq!(a.decision, None);
        assert!(!a.covered_lines.is_empty(), "{a:?}");
    }

    #[test]
    fn a_module_that_may_bind_input_is_not_indexed() {
        assert!(super::binds_input("x := 1\ninput := {}"));
        assert!(super::binds_input("some input in xs"));
        assert!(super::binds_input("some k, input in xs"));
        assert!(!super::binds_input(
            "input.action.tool == \"x\"\nsome i in input.xs"
        ));
    }

    /// The shipped policies (starter, packs, the seeds' examples) decide identically with
    /// and without the index over a corpus of actions.
    #[test]
    fn shipped_policies_decide_identically_with_and_without_the_index() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut sets = Vec::new();
        for dir in [
            "policies",
            "policies/packs",
            "examples/policies/seed-000",
            "examples/policies/seed-004",
        ] {
            let mut sources = Vec::new();
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.display().to_string();
                if name.ends_with(".rego") && !name.ends_with("_test.rego") {
                    sources.push(PolicySource {
                        path: name,
                        rego: std::fs::read_to_string(&path).unwrap(),
                    });
                }
            }
            assert!(!sources.is_empty(), "{dir}");
            sets.push(sources);
        }
        let actions = [
            json!({"tool": "http_proxy", "operation": "POST", "params": {"url": "https://api.stripe.com/v1/charges", "body": {"amount": 50000}}, "context": {"user_id": "u"}}),
            json!({"tool": "http_proxy", "operation": "GET", "params": {"url": "http://169.254.169.254/latest/meta-data/"}}),
            json!({"tool": "http", "operation": "GET", "params": {"url": "https://api.trusted.com/v1/items"}}),
            json!({"tool": "knowledge_base", "operation": "search", "params": {"q": "ssn 123-45-6789"}}),
            json!({"tool": "payments", "operation": "refund", "params": {"amount": 20000, "card": "4111 1111 1111 1111"}}),
            json!({"tool": "file", "operation": "read", "params": {"path": "../../etc/passwd"}}),
        ];
        for sources in sets {
            let on = PolicySet::load(
                sources.clone(),
                EvaluatorOptions {
                    decision_cache_entries: 0,
                    ..EvaluatorOptions::default()
                },
            )
            .unwrap();
            let off = PolicySet::load(
                sources,
                EvaluatorOptions {
                    decision_cache_entries: 0,
                    rule_index: false,
                    ..EvaluatorOptions::default()
                },
            )
            .unwrap();
            for action in &actions {
                let input = json!({
                    "tool": action["tool"], "operation": action["operation"],
                    "params": action["params"], "context": action.get("context").cloned().unwrap_or(json!({})),
                    "agent_id": "agent-1",
                    "action": {
                        "id": "a-1", "tool": action["tool"], "operation": action["operation"],
                        "params": action["params"], "context": action.get("context").cloned().unwrap_or(json!({})),
                    },
                    "agent": {"id": "agent-1", "name": "n", "risk_score": 0.2},
                    "org": {"id": "o", "plan": "pro"},
                    "metadata": {"timestamp": "2026-11-21T10:30:00Z", "ip_address": "203.0.113.1"},
                });
                let a = on.evaluate(&input);
                let b = off.evaluate(&input);
                assert_eq!((a.verdict, &a.reason), (b.verdict, &b.reason), "{input}");
            }
        }
    }
}
