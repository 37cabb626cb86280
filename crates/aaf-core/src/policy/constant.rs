//! Constant rules: the rules of a policy set whose value cannot depend on the input, so
//! that the engine evaluates them once per revision instead of in every decision.
//!
//! A policy's parameters, and everything derived from them (a pack's validation of its data
//! document, normalised host lists, method sets), depend only on the set's code and its
//! data, which are fixed for a revision. The analysis here finds such rules by reading the
//! modules' syntax trees; the engine (regorus, with AAF's patch `set_constant_rules`) keeps
//! each one's value from its first evaluation outside any `with` modifier until the set is
//! replaced. A decision then reads the value as it would read a data document.
//!
//! A rule is constant when:
//!
//! * its head is a plain name (`name := ...`, `name contains ...`, `default name := ...`):
//!   no function, no ref head (`a.b := ...`, `a[x] := ...`), and no other rule's path
//!   extends its path or is extended by it (so no conflict between rules can be hidden);
//! * no definition, `else` branch, value or key of it mentions `input` (nor a local
//!   variable that happens to be called `input`), uses a `with` modifier, reads `data`
//!   other than by a path of plain names (`data.packs.financial`), or imports anything
//!   but `rego.v1` / `future.keywords`;
//! * every function it calls is one of regorus's built-ins that always gives the same
//!   answer for the same arguments (not `time.now_ns`, `rand.*`, `uuid.*`, `http.send`,
//!   `net.lookup_ip_addr`, `opa.runtime`, `io.jwt.*` or `crypto.x509.*`, whose answers
//!   depend on the clock, randomness, the network or the process; not `print` or `trace`)
//!   or a user-defined function that is itself constant in that sense; AAF's own built-ins
//!   (`is_private_network`, the detectors, `rate_limit_exceeded`) do not count;
//! * every rule it reads (by name in its package, or by a `data.` path that reaches it) is
//!   constant.
//!
//! Anything the analysis does not recognise makes a rule non-constant: it is then evaluated
//! in every decision, as before. A false "constant" would be a wrong decision, a false
//! "not constant" only a slower one.

use std::collections::{BTreeMap, BTreeSet};

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleHead, BUILTINS};

/// Built-ins whose answer is not a function of their arguments (prefix match).
const NON_DETERMINISTIC: &[&str] = &[
    "time.now_ns",
    "rand.",
    "uuid.",
    "http.",
    "net.lookup_ip_addr",
    "opa.runtime",
    "io.jwt.",
    "crypto.x509.",
    "trace",
    "print",
];

/// What one definition reads.
#[derive(Debug, Default)]
struct Reads {
    /// Something that makes it non-constant by itself (input, `with`, a dynamic `data`
    /// read, an unknown or non-deterministic function).
    tainted: bool,
    /// Paths (components after `data`) of rules, functions or data it reads.
    paths: Vec<Vec<String>>,
}

/// One node: a rule or a function of some package.
#[derive(Debug, Default)]
struct Node {
    /// A plain-named rule that may be recorded (functions and ref heads never are).
    recordable: bool,
    is_function: bool,
    reads: Reads,
}

/// The paths (`data.pkg.rule`) of the constant rules of `modules`, sorted.
pub(crate) fn constant_rules<'a>(modules: impl IntoIterator<Item = &'a Module>) -> Vec<String> {
    let modules: Vec<&Module> = modules.into_iter().collect();
    let mut nodes: BTreeMap<Vec<String>, Node> = BTreeMap::new();
    // Names of rules and functions per package, to resolve plain names in bodies.
    let mut names: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    let mut packages = Vec::new();
    for module in &modules {
        let Some(package) = static_path(&module.package.refr) else {
            return Vec::new();
        };
        for rule in &module.policy {
            if let Some(name) = head_name(rule) {
                names
                    .entry(package.clone())
                    .or_default()
                    .insert(name.to_string());
            }
        }
        packages.push(package);
    }
    for (module, package) in modules.iter().zip(&packages) {
        let imports_ok = module.imports.iter().all(|i| {
            static_path(&i.refr).is_some_and(|p| {
                matches!(p.first().map(String::as_str), Some("rego" | "future")) && i.r#as.is_none()
            })
        });
        let local_names = names.get(package).cloned().unwrap_or_default();
        for rule in &module.policy {
            let (path, recordable, is_function) = match rule_path(package, rule) {
                Some(p) => p,
                None => return Vec::new(),
            };
            let mut walker = Walker {
                package,
                names: &local_names,
                reads: Reads {
                    tainted: !imports_ok,
                    ..Reads::default()
                },
            };
            walker.rule(rule);
            let node = nodes.entry(path).or_insert_with(|| Node {
                recordable: true,
                is_function,
                reads: Reads::default(),
            });
            node.recordable &= recordable;
            node.is_function |= is_function;
            node.reads.tainted |= walker.reads.tainted;
            node.reads.paths.extend(walker.reads.paths);
        }
    }
    // A path nested in another's (`a.b` and `a.b.c`) is not recorded: its value and the
    // other's are merged, and their conflicts are checked, during an evaluation.
    let all: Vec<Vec<String>> = nodes.keys().cloned().collect();
    for (path, node) in &mut nodes {
        if all
            .iter()
            .any(|other| other != path && (other.starts_with(path) || path.starts_with(other)))
        {
            node.recordable = false;
        }
    }
    // Greatest fixed point: start from every untainted node, drop those reading a dropped
    // one until nothing changes. (Rego forbids recursion; a cycle fails to evaluate, and a
    // failed evaluation records nothing.)
    let mut constant: BTreeSet<Vec<String>> = nodes
        .iter()
        .filter(|(_, n)| !n.reads.tainted && (n.recordable || n.is_function))
        .map(|(p, _)| p.clone())
        .collect();
    loop {
        let dropped: Vec<Vec<String>> = constant
            .iter()
            .filter(|p| {
                nodes[*p].reads.paths.iter().any(|read| {
                    all.iter()
                        .filter(|rule| rule.starts_with(read) || read.starts_with(rule))
                        .any(|rule| !constant.contains(rule))
                })
            })
            .cloned()
            .collect();
        if dropped.is_empty() {
            break;
        }
        for p in dropped {
            constant.remove(&p);
        }
    }
    constant
        .into_iter()
        .filter(|p| nodes[p].recordable && !nodes[p].is_function)
        .filter(|p| p.iter().all(|c| is_identifier(c)))
        .map(|p| format!("data.{}", p.join(".")))
        .collect()
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The name a rule's head starts with (`name` of `name := ...`, `name contains ...`,
/// `default name := ...`, `name(x)`, `name.a[x] := ...`), or `None`.
fn head_name(rule: &Rule) -> Option<&str> {
    let mut refr: &Expr = match rule {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. }
            | RuleHead::Set { refr, .. }
            | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    };
    loop {
        match refr {
            Expr::Var { span, .. } => return Some(span.text()),
            Expr::RefDot { refr: inner, .. } | Expr::RefBrack { refr: inner, .. } => {
                refr = inner;
            }
            _ => return None,
        }
    }
}

/// The rule's node path (package components then its name, or the static prefix of a ref
/// head), whether it may be recorded (a plain name), and whether it is a function.
fn rule_path(package: &[String], rule: &Rule) -> Option<(Vec<String>, bool, bool)> {
    let (refr, is_function) = match rule {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => (refr, false),
            RuleHead::Func { refr, .. } => (refr, true),
        },
        Rule::Default { refr, args, .. } => (refr, !args.is_empty()),
    };
    let plain = matches!(refr.as_ref(), Expr::Var { .. });
    let mut path = package.to_vec();
    path.extend(static_prefix(refr)?);
    Some((path, plain, is_function))
}

/// The components of a path of plain names (`a.b["c"]`), or `None`.
fn static_path(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Var { span, .. } => Some(vec![span.text().to_string()]),
        Expr::RefDot { refr, field, .. } => {
            let mut p = static_path(refr)?;
            p.push(field.0.text().to_string());
            Some(p)
        }
        Expr::RefBrack { refr, index, .. } => {
            let mut p = static_path(refr)?;
            match index.as_ref() {
                Expr::String { value, .. } => p.push(value.as_string().ok()?.to_string()),
                _ => return None,
            }
            Some(p)
        }
        _ => None,
    }
}

/// The longest static prefix of a reference (`a.b[x].c` gives `a.b`), or `None` when its
/// root is not a variable.
fn static_prefix(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Var { span, .. } => Some(vec![span.text().to_string()]),
        Expr::RefDot { refr, field, .. } => {
            let mut p = static_prefix(refr)?;
            if static_path(refr).is_some() {
                p.push(field.0.text().to_string());
            }
            Some(p)
        }
        Expr::RefBrack { refr, index, .. } => {
            let mut p = static_prefix(refr)?;
            if static_path(refr).is_some() {
                if let Expr::String { value, .. } = index.as_ref() {
                    p.push(value.as_string().ok()?.to_string());
                }
            }
            Some(p)
        }
        _ => None,
    }
}

struct Walker<'a> {
    package: &'a [String],
    names: &'a BTreeSet<String>,
    reads: Reads,
}

impl Walker<'_> {
    fn rule(&mut self, rule: &Rule) {
        match rule {
            Rule::Spec { head, bodies, .. } => {
                match head {
                    RuleHead::Compr { assign, .. } => {
                        if let Some(a) = assign {
                            self.expr(&a.value);
                        }
                    }
                    RuleHead::Set { key, .. } => {
                        if let Some(k) = key {
                            self.expr(k);
                        }
                    }
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
            if !stmt.with_mods.is_empty() {
                self.reads.tainted = true;
            }
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
        }
    }

    /// A name read in a body: `input` taints, a rule or function of the package is read.
    fn name(&mut self, name: &str) {
        match name {
            "input" | "data" => self.reads.tainted = true,
            _ if self.names.contains(name) => {
                let mut p = self.package.to_vec();
                p.push(name.to_string());
                self.reads.paths.push(p);
            }
            _ => {}
        }
    }

    /// A reference: `data.<static path>` is a read of that path, anything rooted at
    /// `input` taints, other roots are names; index expressions are walked.
    fn reference(&mut self, expr: &Expr) {
        let prefix = static_prefix(expr);
        match prefix.as_deref() {
            Some([root, rest @ ..]) if root == "data" => {
                if rest.is_empty() {
                    // `data` as a whole or `data[x]`: anything may be read.
                    self.reads.tainted = true;
                } else {
                    self.reads.paths.push(rest.to_vec());
                }
            }
            Some([root, ..]) => self.name(root),
            _ => {}
        }
        // Index expressions (and a non-variable root) are expressions of their own.
        let mut e = expr;
        loop {
            match e {
                Expr::RefDot { refr, .. } => e = refr,
                Expr::RefBrack { refr, index, .. } => {
                    self.expr(index);
                    e = refr;
                }
                Expr::Var { .. } => break,
                other => {
                    self.expr(other);
                    break;
                }
            }
        }
    }

    fn call(&mut self, fcn: &Expr) {
        let Some(path) = static_path(fcn) else {
            self.reads.tainted = true;
            return;
        };
        let dotted = path.join(".");
        if path.first().is_some_and(|r| r == "data") {
            self.reads.paths.push(path[1..].to_vec());
        } else if path.len() == 1 && self.names.contains(&dotted) {
            self.name(&dotted);
        } else if BUILTINS.contains_key(dotted.as_str())
            && !NON_DETERMINISTIC.iter().any(|p| dotted.starts_with(p))
        {
            // A deterministic built-in of regorus.
        } else {
            // AAF's built-ins, imported functions, anything unknown.
            self.reads.tainted = true;
        }
    }

    fn expr(&mut self, expr: &Expr) {
        match expr {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. } => {}
            Expr::Var { span, .. } => self.name(span.text()),
            Expr::RefDot { .. } | Expr::RefBrack { .. } => self.reference(expr),
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
            #[allow(unreachable_patterns)]
            _ => self.reads.tainted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constants(rego: &str) -> Vec<String> {
        let mut engine = regorus::Engine::new();
        engine.add_policy("p.rego".into(), rego.into()).unwrap();
        constant_rules(engine.get_modules().iter().map(|m| m.as_ref()))
    }

    #[test]
    fn rules_reading_only_data_and_constants_are_constant() {
        let c = constants(
            r#"package p
import rego.v1
conf := object.get(data, "x", {}) if true
params := object.get(data.packs, "p", {})
hosts := {lower(h) | some h in params.hosts}
errors contains sprintf("bad %v", [h]) if { some h in hosts; not regex.match(`^[a-z.]+$`, h) }
errors contains "many" if count(hosts) > 10
default limit := 10
tool := input.action.tool
is_http if tool == "http"
uses_tool := concat(",", [tool])
via_fn := f(1)
f(x) := x + count(hosts)
via_bad_fn := g(1)
g(x) := x + count(input.y)
now := time.now_ns()
private := is_private_network("10.0.0.1")
shadowed if { some input in [1]; input == 1 }
withed if { count(hosts) == 0 with data.packs as {} }
"#,
        );
        assert_eq!(
            c,
            [
                "data.p.errors",
                "data.p.hosts",
                "data.p.limit",
                "data.p.params",
                "data.p.via_fn"
            ]
        );
    }

    #[test]
    fn nested_paths_and_ref_heads_are_not_recorded() {
        let c = constants(
            r#"package p
import rego.v1
a := 1
a2.b := 2
x[k] := 1 if some k in ["a"]
y := x
z := data.p.a
"#,
        );
        // `y` reads `x` (a ref head, never recorded); `z` reads `a` through data.
        assert_eq!(c, ["data.p.a", "data.p.z"]);
    }

    #[test]
    fn a_value_computed_under_with_is_not_kept() {
        // The engine side (regorus, AAF's patch): a constant rule first evaluated under a
        // `with` modifier is not recorded; outside, it is, and later evaluations read it.
        let mut engine = regorus::Engine::new();
        engine
            .add_policy(
                "t.rego".into(),
                r#"package t
import rego.v1
limit := object.get(data.conf, "limit", 5)
inner := y if { y := limit with data.conf as {"limit": 100} }
outer := limit + 1
"#
                .into(),
            )
            .unwrap();
        engine
            .add_data(regorus::Value::from_json_str(r#"{"conf": {"limit": 7}}"#).unwrap())
            .unwrap();
        engine
            .set_constant_rules(&["data.t.limit".to_string()])
            .unwrap();
        engine.set_input(regorus::Value::new_object());
        let eval = |engine: &mut regorus::Engine, rule: &str| {
            engine
                .eval_rule(rule.to_string())
                .unwrap()
                .as_i64()
                .unwrap()
        };
        assert_eq!(eval(&mut engine, "data.t.inner"), 100);
        assert!(engine.recorded_constant_rules().is_empty());
        assert_eq!(eval(&mut engine, "data.t.outer"), 8);
        assert_eq!(engine.recorded_constant_rules(), ["data.t.limit"]);
        // Recorded: still 7 outside, still 100 under `with`.
        assert_eq!(eval(&mut engine, "data.t.inner"), 100);
        assert_eq!(eval(&mut engine, "data.t.limit"), 7);
        assert_eq!(eval(&mut engine, "data.t.outer"), 8);
        // New data drops what was recorded.
        engine
            .add_data(regorus::Value::from_json_str(r#"{"other": 1}"#).unwrap())
            .unwrap();
        assert_eq!(eval(&mut engine, "data.t.outer"), 8);
        assert!(engine.recorded_constant_rules().is_empty());
    }

    #[test]
    fn other_imports_make_every_rule_of_the_module_non_constant() {
        assert!(constants("package p\nimport input.action as a\nx := 1\n").is_empty());
        assert_eq!(
            constants("package p\nimport rego.v1\nx := 1\n"),
            ["data.p.x"]
        );
    }
}
