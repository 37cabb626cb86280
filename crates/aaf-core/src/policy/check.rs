//! The load-time check of function calls: every call must name a function that exists.
//!
//! OPA's compiler rejects a module that calls an undefined function
//! (`rego_type_error: undefined function rate_limit_exceeded`); the interpreter regorus only
//! finds out when a call is evaluated, so a typo, or a helper the policy's author assumed
//! (seed 000's `rate_limit_exceeded(input.agent_id)`), would load and then make the policy
//! deny every action that reaches the call. This check walks every call expression of every
//! module (rule heads, bodies, `else` branches, comprehensions, `with` values, defaults) and
//! resolves its name the way regorus's interpreter does when it evaluates the call:
//!
//! 1. a leading import alias of the module is replaced by the import's target when that
//!    target is a function (`import data.lib` then `lib.f(x)` is `data.lib.f`);
//! 2. a user function (a rule with arguments, or a `default` function) at that path, or,
//!    for a path without `data.`, below the module's package (`f(x)` in `package a` is
//!    `data.a.f`);
//! 3. one of AAF's extensions ([`super::EXTENSIONS`]), by name;
//! 4. `print`, or a built-in of regorus's table (`regorus::unstable::BUILTINS`: the OPA
//!    built-ins regorus implements with the features AAF enables).
//!
//! A call that resolves to none of them is a [`LoadError`] at the call's `file:line:col`
//! with the message `undefined function <name>`, as OPA words it. Every call is checked,
//! whether or not evaluating the module would reach it, including a call whose function a
//! test replaces (`with f as mock`): `f` must still exist, as OPA requires. The target of a
//! `with` is not itself checked (only calls are); its value is, like any expression.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{Expr, Literal, LiteralStmt, Module, Query, Rule, RuleHead, BUILTINS};
use regorus::utils::{gather_functions, get_path_string};

use super::{LoadError, EXTENSIONS};

/// What a call may name, gathered once from every loaded module.
struct Known {
    /// Full paths of user functions (`data.a.f`), including `default` functions.
    functions: BTreeSet<String>,
    /// Import targets by `<module package path>.<alias>` (`data.a.lib` → `data.lib`).
    imports: BTreeMap<String, String>,
}

/// Checks that every call in `modules` names a function that exists (see the module
/// documentation).
///
/// # Errors
///
/// One [`LoadError`] per call of an undefined function, in module and source order, each
/// with the call's file, line and column and the message `undefined function <name>`.
pub(crate) fn undefined_functions(
    modules: &[regorus::unstable::Ref<Module>],
) -> Result<(), Vec<LoadError>> {
    let known = match gather(modules) {
        Ok(k) => k,
        // regorus reports a malformed module (e.g. a function defined with two arities)
        // when it evaluates it: leave it to the checks by evaluation.
        Err(_) => return Ok(()),
    };
    let mut errors = Vec::new();
    for module in modules {
        let Ok(package) = get_path_string(&module.package.refr, Some("data")) else {
            continue;
        };
        let mut calls = Calls {
            known: &known,
            package: &package,
            errors: &mut errors,
        };
        for rule in &module.policy {
            calls.rule(rule);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn gather(modules: &[regorus::unstable::Ref<Module>]) -> anyhow::Result<Known> {
    let mut functions: BTreeSet<String> = gather_functions(modules)?.into_keys().collect();
    let mut imports = BTreeMap::new();
    for module in modules {
        let package = get_path_string(&module.package.refr, Some("data"))?;
        for rule in &module.policy {
            if let Rule::Default { refr, args, .. } = rule.as_ref() {
                if !args.is_empty() {
                    functions.insert(get_path_string(refr, Some(&package))?);
                }
            }
        }
        for import in &module.imports {
            let alias = match &import.r#as {
                Some(alias) => alias.text().to_string(),
                None => match import.refr.as_ref() {
                    Expr::RefDot { field, .. } => field.0.text().to_string(),
                    _ => continue,
                },
            };
            let Ok(target) = get_path_string(&import.refr, None) else {
                continue;
            };
            imports.insert(format!("{package}.{alias}"), target);
        }
    }
    Ok(Known { functions, imports })
}

/// Walks a module's expressions, recording calls that resolve to nothing.
struct Calls<'a> {
    known: &'a Known,
    /// The module's package path, `data.` included.
    package: &'a str,
    errors: &'a mut Vec<LoadError>,
}

impl Calls<'_> {
    fn rule(&mut self, rule: &Rule) {
        match rule {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { refr, assign, .. } => {
                        self.expr(refr);
                        if let Some(a) = assign {
                            self.expr(&a.value);
                        }
                    }
                    RuleHead::Set { refr, key, .. } => {
                        self.expr(refr);
                        if let Some(k) = key {
                            self.expr(k);
                        }
                    }
                    // The head's reference names the function being defined, not a call.
                    RuleHead::Func { args, assign, .. } => {
                        for a in args {
                            self.expr(a);
                        }
                        if let Some(a) = assign {
                            self.expr(&a.value);
                        }
                    }
                }
                for body in bodies {
                    if let Some(a) = &body.assign {
                        self.expr(&a.value);
                    }
                    self.query(&body.query);
                }
            }
            Rule::Default { args, value, .. } => {
                for a in args {
                    self.expr(a);
                }
                self.expr(value);
            }
        }
    }

    fn query(&mut self, query: &Query) {
        for stmt in &query.stmts {
            self.stmt(stmt);
        }
    }

    fn stmt(&mut self, stmt: &LiteralStmt) {
        match &stmt.literal {
            Literal::SomeVars { .. } => {}
            Literal::SomeIn {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(k) = key {
                    self.expr(k);
                }
                self.expr(value);
                self.expr(collection);
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
            Literal::Every { domain, query, .. } => {
                self.expr(domain);
                self.query(query);
            }
        }
        for w in &stmt.with_mods {
            // The target (`with f as ...`) is replaced, not called; the value is evaluated.
            self.expr(&w.r#as);
        }
    }

    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. }
            | Expr::Var { .. } => {}
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                for i in items {
                    self.expr(i);
                }
            }
            Expr::Object { fields, .. } => {
                for (_, k, v) in fields {
                    self.expr(k);
                    self.expr(v);
                }
            }
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.expr(term);
                self.query(query);
            }
            Expr::ObjectCompr {
                key, value, query, ..
            } => {
                self.expr(key);
                self.expr(value);
                self.query(query);
            }
            Expr::Call { fcn, params, .. } => {
                self.call(fcn);
                for p in params {
                    self.expr(p);
                }
            }
            Expr::UnaryExpr { expr, .. } => self.expr(expr),
            Expr::RefDot { refr, .. } => self.expr(refr),
            Expr::RefBrack { refr, index, .. } => {
                self.expr(refr);
                self.expr(index);
            }
            Expr::BinExpr { lhs, rhs, .. }
            | Expr::BoolExpr { lhs, rhs, .. }
            | Expr::ArithExpr { lhs, rhs, .. }
            | Expr::AssignExpr { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            Expr::Membership {
                key,
                value,
                collection,
                ..
            } => {
                if let Some(k) = key {
                    self.expr(k);
                }
                self.expr(value);
                self.expr(collection);
            }
        }
    }

    /// Records the call of `fcn` (at the position of its name) if the name resolves to no
    /// function.
    fn call(&mut self, fcn: &Expr) {
        // A function expression that is not a plain reference is reported by the
        // interpreter ("invalid function expression") when it is evaluated.
        let Ok(name) = get_path_string(fcn, None) else {
            return;
        };
        if self.resolves(&name) {
            return;
        }
        // The position of the name's first component (`lib` of `lib.f`).
        let mut root = fcn;
        while let Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } = root {
            root = refr;
        }
        let span = root.span();
        self.errors.push(LoadError {
            file: span.source.file().to_string(),
            line: span.line,
            col: span.col,
            message: format!("undefined function {name}"),
        });
    }

    fn resolves(&self, name: &str) -> bool {
        let known = self.known;
        // 1. A leading import alias, when the import's target is a function.
        let path = self
            .through_import(name)
            .filter(|p| known.functions.contains(p))
            .unwrap_or_else(|| name.to_string());
        // 2. A user function, by its full path or below this module's package.
        let full = if path.starts_with("data.") {
            path.clone()
        } else {
            format!("{}.{path}", self.package)
        };
        known.functions.contains(&path)
            || known.functions.contains(&full)
            // 3. AAF's extensions; 4. regorus's built-ins.
            || EXTENSIONS.iter().any(|(ext, _)| *ext == path)
            || path == "print"
            || BUILTINS.contains_key(path.as_str())
    }

    /// `name` with its leading component replaced by the target of the module's import of
    /// that alias, if there is one.
    fn through_import(&self, name: &str) -> Option<String> {
        let end = name.find(['.', '[']).unwrap_or(name.len());
        let (alias, rest) = name.split_at(end);
        if alias.is_empty() || alias == "data" {
            return None;
        }
        let target = self
            .known
            .imports
            .get(&format!("{}.{alias}", self.package))?;
        Some(format!("{target}{rest}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use crate::policy::{EvaluatorOptions, LoadError, PolicySet, EXTENSIONS};

    fn load(files: &[(&str, &str)]) -> Result<PolicySet, Vec<LoadError>> {
        PolicySet::load(
            crate::policy::tests::sources(files),
            EvaluatorOptions::default(),
        )
    }

    fn errors(files: &[(&str, &str)]) -> Vec<String> {
        load(files)
            .expect_err("the set must not load")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Seed 000's rate-limit rule as the product document writes it (Rego v0). Its helper
    /// `rate_limit_exceeded` is AAF's built-in, so the module loads and decides from
    /// `input.usage`.
    const SEED_000_RATE_LIMIT: &str = "package aaf.policies\n\ndefault decision = {\"action\": \"deny\", \"reason\": \"No matching allow rule\"}\n\ndecision = {\n\"action\": \"deny\",\n\"reason\": \"Rate limit exceeded\"\n} {\nrate_limit_exceeded(input.agent_id)\n}\n";

    #[test]
    fn seed_000s_rate_limit_rule_loads_and_reads_the_usage() {
        let set = load(&[("seed-000/rate_limit.rego", SEED_000_RATE_LIMIT)]).unwrap();
        assert!(set.runtime_inputs().usage, "the set asks for input.usage");
        assert!(!set.runtime_inputs().budget);
        let input = |exceeded: bool| serde_json::json!({"agent_id": "a1", "usage": {"rate_limit_exceeded": exceeded}});
        let over = set.evaluate(&input(true));
        assert_eq!(over.verdict, crate::action::Verdict::Deny);
        assert_eq!(over.reason, "Rate limit exceeded");
        let under = set.evaluate(&input(false));
        assert_eq!(under.reason, "No matching allow rule");
        // Without input.usage the built-in fails, and a failure is a deny, never an allow.
        let missing = set.evaluate(&serde_json::json!({"agent_id": "a1"}));
        assert_eq!(missing.verdict, crate::action::Verdict::Deny);
        assert!(missing.reason.contains("no usage"), "{}", missing.reason);
    }

    #[test]
    fn a_typo_is_refused_even_where_evaluation_never_reaches() {
        let rego = "package p\nimport rego.v1\n\ndecision := \"deny\" if {\n\tinput.action.tool == \"http_proxy\"\n\tstarts_with(input.action.params.url, \"http://\")\n}\n";
        assert_eq!(
            errors(&[("p.rego", rego)]),
            ["p.rego:6:5: undefined function starts_with"]
        );
        // Every undefined call is reported, in rule heads, comprehensions and `else` too.
        let rego = "package q\nimport rego.v1\n\nn := cnt([1])\nxs := [y | some x in [1]; y := dbl(x)]\ndecision := \"deny\" if { input.x == 1 } else := lower(uppercase(\"A\"))\n";
        assert_eq!(
            errors(&[("q.rego", rego)]),
            [
                "q.rego:4:6: undefined function cnt",
                "q.rego:5:32: undefined function dbl",
                "q.rego:6:54: undefined function uppercase",
            ]
        );
    }

    #[test]
    fn functions_of_the_package_other_packages_imports_and_builtins_resolve() {
        let lib = "package lib.net\nimport rego.v1\n\ninternal_host(url) if endswith(url, \".internal\")\ndefault trusted(_) := false\ntrusted(url) if startswith(url, \"https://api.trusted.com/\")\n";
        let policy = "package aaf.policies.p\nimport rego.v1\nimport data.lib.net\nimport data.lib.net as n2\n\nlocal(x) := upper(x)\n\ndecision := \"deny\" if net.internal_host(input.action.params.url)\ndecision := \"deny\" if n2.internal_host(input.action.params.url)\ndecision := \"deny\" if data.lib.net.trusted(input.action.params.url)\ndecision := \"deny\" if local(input.action.tool) == \"X\"\ndecision := \"deny\" if { print(\"x\"); regex.match(\"^a\", input.action.tool); time.now_ns() > 0; count(input.x) > 1 }\n";
        let set = load(&[("lib.rego", lib), ("p.rego", policy)]).unwrap();
        assert_eq!(set.policies().len(), 1);
        // Through an import of a package that lacks the function: undefined.
        let bad = "package aaf.policies.q\nimport rego.v1\nimport data.lib.net\n\ndecision := \"deny\" if net.external_host(input.action.params.url)\n";
        assert_eq!(
            errors(&[("lib.rego", lib), ("q.rego", bad)]),
            ["q.rego:5:23: undefined function net.external_host"]
        );
        // Another package's function is not this package's.
        let bad = "package aaf.policies.r\nimport rego.v1\n\ndecision := \"deny\" if internal_host(input.action.params.url)\n";
        assert_eq!(
            errors(&[("lib.rego", lib), ("r.rego", bad)]),
            ["r.rego:4:23: undefined function internal_host"]
        );
    }

    #[test]
    fn functions_replaced_with_with_must_exist_and_mocks_are_checked_too() {
        let policy = "package aaf.policies.p\nimport rego.v1\n\ndecision := \"deny\" if is_private_network(input.action.params.url)\n";
        let test = "package aaf.policies.p_test\nimport rego.v1\nimport data.aaf.policies.p\n\nmock_private(_) := true\n\ntest_mocked if {\n\tp.decision == \"deny\" with is_private_network as mock_private with input as {\"action\": {\"params\": {\"url\": \"https://x.example\"}}}\n}\ntest_value if {\n\tp.decision == \"deny\" with is_private_network as true with time.now_ns as 0 with input as make_input(1)\n}\n";
        let bad = format!("{test}make(x) := x\n");
        let errors: Vec<String> = PolicySet::load_for_tests(
            crate::policy::tests::sources(&[("p.rego", policy), ("p_test.rego", &bad)]),
            EvaluatorOptions::default(),
        )
        .expect_err("make_input is undefined")
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(errors, ["p_test.rego:11:94: undefined function make_input"]);
        let good = test.replace("make_input(1)", "make(1)") + "make(x) := {\"x\": x}\n";
        let set = PolicySet::load_for_tests(
            crate::policy::tests::sources(&[("p.rego", policy), ("p_test.rego", &good)]),
            EvaluatorOptions::default(),
        )
        .unwrap();
        assert_eq!(set.modules().len(), 2);
    }

    #[test]
    fn every_aaf_extension_is_known_to_the_check() {
        assert!(!EXTENSIONS.is_empty());
        for (name, arity) in EXTENSIONS {
            let args = vec!["input.x"; usize::from(*arity)].join(", ");
            let rego = format!(
                "package aaf.policies.ext\nimport rego.v1\n\ndecision := \"deny\" if {name}({args})\n"
            );
            let set = load(&[("ext.rego", &rego)]);
            assert!(set.is_ok(), "{name}: {set:?}");
        }
    }
}
