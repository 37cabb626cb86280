//! The policy evaluator: OPA Rego policies run by the embedded `regorus` engine.
//!
//! A *policy* is a Rego package that defines a rule named `decision` (in any of its modules).
//! Its value is a string (`"allow"`, `"deny"`, `"require_approval"`) or an object
//! `{"action": <one of those>, "reason": <string>?, "risk_level": <string>?}`; an undefined
//! value means the policy abstains. All policies are evaluated for every action and combined by
//! [`Decision::combine`]: the most restrictive decision wins.
//!
//! Fail closed: an evaluation error of any policy (conflicting values of a complete rule, a
//! type error in a built-in, an unknown decision value, running past the time limit, even a
//! panic inside the engine) makes that policy deny with a reason naming the policy and the error.
//!
//! Modules are accepted in Rego v1 syntax and in the older v0 syntax (as the product documents
//! use); each file is parsed as v1 first and as v0 when that fails. Loading also evaluates every
//! package once against an empty input, which surfaces unsafe variables (such as
//! `allowed_domains[url] { startswith(url, "x") }`) and calls to unknown functions as load errors
//! with `file:line:col`, the same mistakes `opa check` rejects.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
use sha2::{Digest, Sha256};

use crate::action::{
    Decision, PolicyOutcome, Verdict, MAX_APPROVALS_REQUIRED, MAX_APPROVAL_TIMEOUT_SECONDS,
};
use crate::{detect, net};

pub mod testing;

/// One Rego source file to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The path shown in messages (e.g. `policies/base.rego`); must be unique in a set.
    pub path: String,
    /// The Rego text.
    pub rego: String,
}

/// Options of a [`PolicySet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvaluatorOptions {
    /// Time limit of one evaluation of all policies (wall clock). A policy still running when
    /// it is reached is stopped and denies; policies not yet started deny too.
    pub eval_timeout: Duration,
}

impl Default for EvaluatorOptions {
    fn default() -> Self {
        EvaluatorOptions {
            eval_timeout: Duration::from_millis(100),
        }
    }
}

/// A problem found while loading policies, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct LoadError {
    /// The source path given in [`PolicySource::path`].
    pub file: String,
    /// 1-based line; 0 when the error has no position.
    pub line: u32,
    /// 1-based column; 0 when the error has no position.
    pub col: u32,
    /// What is wrong, as the engine reports it.
    pub message: String,
}

/// The Rego syntax a module was parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegoSyntax {
    /// Rego v1 (`if`/`contains` required, keywords on by default).
    V1,
    /// Rego v0, as in OPA before 1.0.
    V0,
}

/// A loaded module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Its source path.
    pub path: String,
    /// Its package, without the leading `data.` (e.g. `aaf.policy`).
    pub package: String,
    /// The syntax it was parsed with.
    pub syntax: RegoSyntax,
}

/// A policy: a package with a `decision` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// The policy name: the package path without `data.`.
    pub name: String,
    /// The modules of the package (their source paths).
    pub files: Vec<String>,
    rule_path: String,
}

/// A compiled, immutable set of policies, ready to evaluate on many threads.
///
/// Evaluation clones the prepared engine once per thread and reuses it, so the per-action cost
/// is setting the input and evaluating each policy's `decision` rule.
pub struct PolicySet {
    id: u64,
    master: Mutex<Engine>,
    modules: Vec<ModuleInfo>,
    policies: Vec<PolicyInfo>,
    revision: String,
    options: EvaluatorOptions,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("revision", &self.revision)
            .field("policies", &self.policies)
            .finish_non_exhaustive()
    }
}

static NEXT_SET_ID: AtomicU64 = AtomicU64::new(1);

/// How many prepared engines one thread keeps (one per policy set it has evaluated recently).
const ENGINES_PER_THREAD: usize = 4;

thread_local! {
    static ENGINES: RefCell<Vec<(u64, Engine)>> = const { RefCell::new(Vec::new()) };
}

/// Registers AAF's built-in functions on an engine. Documented in `docs/policies.md`.
///
/// * `is_private_network(url_or_host)` and its alias `is_private_ip`: see
///   [`net::is_private_network`];
/// * `has_pii(value)`: [`detect::has_pii`], over any JSON value;
/// * `has_credit_card(value)`: [`detect::has_credit_card`].
///
/// A wrong argument type is an evaluation error (and so, in AAF, a deny).
fn register_builtins(engine: &mut Engine) -> anyhow::Result<()> {
    for name in ["is_private_network", "is_private_ip"] {
        engine.add_extension(
            name.to_string(),
            1,
            Box::new(|args: Vec<Value>| {
                let arg = args
                    .first()
                    .ok_or_else(|| anyhow::anyhow!("expects one argument"))?;
                let s = arg.as_string().map_err(|_| {
                    anyhow::anyhow!("expects a string (a URL or a host), got {arg}")
                })?;
                Ok(Value::from(net::is_private_network(s)))
            }),
        )?;
    }
    engine.add_extension(
        "has_pii".to_string(),
        1,
        Box::new(|args: Vec<Value>| {
            let v = json_arg(&args)?;
            Ok(Value::from(detect::has_pii(&v)))
        }),
    )?;
    engine.add_extension(
        "has_credit_card".to_string(),
        1,
        Box::new(|args: Vec<Value>| {
            let v = json_arg(&args)?;
            Ok(Value::from(detect::has_credit_card(&v)))
        }),
    )?;
    Ok(())
}

fn json_arg(args: &[Value]) -> anyhow::Result<serde_json::Value> {
    let arg = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("expects one argument"))?;
    Ok(serde_json::to_value(arg)?)
}

/// Splits a regorus error (`\n--> file:line:col\n ... \nerror: message`) into a [`LoadError`].
fn load_error(default_file: &str, err: &anyhow::Error) -> LoadError {
    let text = err.to_string();
    let mut file = default_file.to_string();
    let (mut line, mut col) = (0, 0);
    if let Some(loc) = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("--> "))
    {
        let mut parts = loc.rsplitn(3, ':');
        let c = parts.next().and_then(|s| s.trim().parse().ok());
        let l = parts.next().and_then(|s| s.trim().parse().ok());
        if let (Some(c), Some(l), Some(f)) = (c, l, parts.next()) {
            file = f.to_string();
            line = l;
            col = c;
        }
    }
    let message = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.trim().to_string());
    LoadError {
        file,
        line,
        col,
        message,
    }
}

/// Compact one-line form of an evaluation error: `file:line:col: message`.
fn eval_error_text(err: &anyhow::Error) -> String {
    let e = load_error("", err);
    if e.line == 0 {
        e.message
    } else {
        format!("{}:{}:{}: {}", e.file, e.line, e.col, e.message)
    }
}

impl PolicySet {
    /// Parses, checks and prepares a set of policy modules.
    ///
    /// Errors: every module that fails to parse, and every package whose evaluation against an
    /// empty input fails (unsafe variables, unknown functions, ...), each as a [`LoadError`]
    /// with its location. An empty `sources` is not an error: such a set denies every action.
    pub fn load(
        sources: Vec<PolicySource>,
        options: EvaluatorOptions,
    ) -> Result<PolicySet, Vec<LoadError>> {
        Self::load_checked(sources, options, |_| true)
    }

    /// [`PolicySet::load`] for running Rego unit tests ([`PolicySet::run_tests`]): packages
    /// whose modules are all test files (`*_test.rego`) are not evaluated at load, since
    /// evaluating them runs their tests; their errors are reported by the tests instead.
    ///
    /// Errors: as [`PolicySet::load`], for the other packages.
    pub fn load_for_tests(
        sources: Vec<PolicySource>,
        options: EvaluatorOptions,
    ) -> Result<PolicySet, Vec<LoadError>> {
        let test_files: Vec<String> = sources
            .iter()
            .filter(|s| s.path.ends_with("_test.rego"))
            .map(|s| s.path.clone())
            .collect();
        Self::load_checked(sources, options, move |files: &[&str]| {
            !files.iter().all(|f| test_files.iter().any(|t| t == f))
        })
    }

    /// Loads, evaluating at load the packages for whose module paths `check` says so.
    fn load_checked(
        sources: Vec<PolicySource>,
        options: EvaluatorOptions,
        check: impl Fn(&[&str]) -> bool,
    ) -> Result<PolicySet, Vec<LoadError>> {
        let mut engine = Engine::new();
        engine.set_strict_builtin_errors(true);
        let fatal = |e: anyhow::Error| {
            vec![LoadError {
                file: String::new(),
                line: 0,
                col: 0,
                message: format!("policy engine setup failed: {e}"),
            }]
        };
        register_builtins(&mut engine).map_err(fatal)?;

        let mut errors = Vec::new();
        let mut modules = Vec::new();
        let mut hasher = Sha256::new();
        let mut sorted = sources;
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        for source in &sorted {
            hasher.update((source.path.len() as u64).to_be_bytes());
            hasher.update(source.path.as_bytes());
            hasher.update((source.rego.len() as u64).to_be_bytes());
            hasher.update(source.rego.as_bytes());
            engine.set_rego_v0(false);
            let v1 = engine.add_policy(source.path.clone(), source.rego.clone());
            let (package, syntax) = match v1 {
                Ok(p) => (p, RegoSyntax::V1),
                Err(v1_err) => {
                    engine.set_rego_v0(true);
                    match engine.add_policy(source.path.clone(), source.rego.clone()) {
                        Ok(p) => (p, RegoSyntax::V0),
                        Err(v0_err) => {
                            // Report the error of the parse that got further into the file: the
                            // other syntax most likely stopped at its first difference.
                            let a = load_error(&source.path, &v1_err);
                            let b = load_error(&source.path, &v0_err);
                            errors.push(if (b.line, b.col) > (a.line, a.col) {
                                b
                            } else {
                                a
                            });
                            continue;
                        }
                    }
                }
            };
            let package = package
                .strip_prefix("data.")
                .unwrap_or(&package)
                .to_string();
            modules.push(ModuleInfo {
                path: source.path.clone(),
                package,
                syntax,
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        let mut by_package: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in &modules {
            let defines = engine
                .has_declared_rule_rooted_at(&m.path, "decision")
                .map_err(|e| vec![load_error(&m.path, &e)])?;
            if defines {
                by_package
                    .entry(m.package.clone())
                    .or_default()
                    .push(m.path.clone());
            }
        }
        let policies: Vec<PolicyInfo> = by_package
            .into_iter()
            .map(|(name, files)| PolicyInfo {
                rule_path: format!("data.{name}.decision"),
                name,
                files,
            })
            .collect();

        // Static checks by evaluation: every package once, with an empty input.
        let mut packages: Vec<&str> = modules.iter().map(|m| m.package.as_str()).collect();
        packages.sort_unstable();
        packages.dedup();
        engine.set_input(Value::new_object());
        for package in packages {
            let files: Vec<&str> = modules
                .iter()
                .filter(|m| m.package == package)
                .map(|m| m.path.as_str())
                .collect();
            if !check(&files) {
                continue;
            }
            if let Err(e) = engine.eval_query(format!("data.{package}"), false) {
                let file = modules
                    .iter()
                    .find(|m| m.package == package)
                    .map(|m| m.path.as_str())
                    .unwrap_or_default();
                errors.push(load_error(file, &e));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }

        Ok(PolicySet {
            id: NEXT_SET_ID.fetch_add(1, Ordering::Relaxed),
            master: Mutex::new(engine),
            modules,
            policies,
            revision: hex::encode(hasher.finalize()),
            options,
        })
    }

    /// The loaded modules, sorted by path.
    pub fn modules(&self) -> &[ModuleInfo] {
        &self.modules
    }

    /// The policies (packages with a `decision` rule), sorted by name.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.policies
    }

    /// The revision: hex SHA-256 over the (path, source) pairs sorted by path.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The options the set was loaded with.
    pub fn options(&self) -> EvaluatorOptions {
        self.options
    }

    /// Evaluates every policy against `input` (the document built by
    /// [`crate::action::PolicyInput::build`]) and combines the results.
    ///
    /// Never fails: every error becomes a deny (see the module documentation).
    pub fn evaluate(&self, input: &serde_json::Value) -> Decision {
        let started = Instant::now();
        let deadline = started + self.options.eval_timeout;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            self.with_engine(|engine| self.evaluate_with(engine, input, deadline))
        }));
        match result {
            Ok(Ok(decision)) => decision,
            Ok(Err(e)) => Decision::fail_closed(format!("policy evaluation failed: {e}")),
            Err(_) => {
                // The thread's engine may be in an inconsistent state: drop it.
                ENGINES.with(|cell| {
                    if let Ok(mut engines) = cell.try_borrow_mut() {
                        engines.retain(|(id, _)| *id != self.id);
                    }
                });
                Decision::fail_closed("policy evaluation failed: the policy engine panicked")
            }
        }
    }

    fn with_engine<R>(&self, f: impl FnOnce(&mut Engine) -> R) -> Result<R, String> {
        ENGINES.with(|cell| {
            let mut engines = cell
                .try_borrow_mut()
                .map_err(|_| "policy engine is busy on this thread".to_string())?;
            let pos = match engines.iter().position(|(id, _)| *id == self.id) {
                Some(pos) => pos,
                None => {
                    let engine = self
                        .master
                        .lock()
                        .map_err(|_| "policy engine lock is poisoned".to_string())?
                        .clone();
                    if engines.len() >= ENGINES_PER_THREAD {
                        engines.remove(0);
                    }
                    engines.push((self.id, engine));
                    engines.len() - 1
                }
            };
            let (_, engine) = engines
                .get_mut(pos)
                .ok_or_else(|| "policy engine cache is inconsistent".to_string())?;
            Ok(f(engine))
        })
    }

    fn evaluate_with(
        &self,
        engine: &mut Engine,
        input: &serde_json::Value,
        deadline: Instant,
    ) -> Decision {
        // Deserialize from the borrowed JSON value: no intermediate deep copy.
        let input = match <Value as serde::Deserialize>::deserialize(input) {
            Ok(v) => v,
            Err(e) => return Decision::fail_closed(format!("policy input is not valid: {e}")),
        };
        engine.set_input(input);
        let mut outcomes = Vec::with_capacity(self.policies.len());
        for policy in &self.policies {
            let start = Instant::now();
            let remaining = deadline.saturating_duration_since(start);
            if remaining.is_zero() {
                outcomes.push(PolicyOutcome {
                    policy: policy.name.clone(),
                    decision: Some(Verdict::Deny),
                    reason: Some(format!(
                        "policy {} was not evaluated: the evaluation time limit of {} ms was reached",
                        policy.name,
                        self.options.eval_timeout.as_millis()
                    )),
                    risk_level: None,
                    approvals_required: None,
                    approval_timeout_seconds: None,
                    eval_time_us: 0,
                });
                continue;
            }
            engine.set_execution_timer_config(ExecutionTimerConfig {
                limit: remaining,
                check_interval: NonZeroU32::MIN.saturating_add(63),
            });
            let value = engine.eval_rule(policy.rule_path.clone());
            let eval_time_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            let mut outcome = match value {
                Ok(v) => interpret(&policy.name, &v),
                Err(e) => deny_outcome(
                    &policy.name,
                    format!(
                        "policy {} failed to evaluate: {}",
                        policy.name,
                        eval_error_text(&e)
                    ),
                ),
            };
            outcome.eval_time_us = eval_time_us;
            outcomes.push(outcome);
        }
        Decision::combine(outcomes)
    }
}

fn deny_outcome(policy: &str, reason: String) -> PolicyOutcome {
    PolicyOutcome {
        policy: policy.to_string(),
        decision: Some(Verdict::Deny),
        reason: Some(reason),
        risk_level: None,
        approvals_required: None,
        approval_timeout_seconds: None,
        eval_time_us: 0,
    }
}

/// Turns a `decision` value into an outcome; any value of the wrong shape is a deny.
fn interpret(policy: &str, value: &Value) -> PolicyOutcome {
    let abstain = PolicyOutcome {
        policy: policy.to_string(),
        decision: None,
        reason: None,
        risk_level: None,
        approvals_required: None,
        approval_timeout_seconds: None,
        eval_time_us: 0,
    };
    let unknown = |what: String| {
        deny_outcome(
            policy,
            format!("policy {policy} returned an unknown decision {what}; expected \"allow\", \"deny\" or \"require_approval\""),
        )
    };
    match value {
        Value::Undefined => abstain,
        Value::String(s) => match Verdict::parse(s) {
            Some(v) => PolicyOutcome {
                decision: Some(v),
                ..abstain
            },
            None => unknown(format!("{value}")),
        },
        Value::Object(obj) => {
            let field = |name: &str| obj.get(&Value::from(name));
            let Some(Value::String(action)) = field("action") else {
                return unknown(format!("object without a string \"action\": {value}"));
            };
            let Some(verdict) = Verdict::parse(action) else {
                return unknown(format!("{value}"));
            };
            let text = |name: &str| match field(name) {
                Some(Value::String(s)) => Some(s.to_string()),
                _ => None,
            };
            // Approval terms: whole numbers in range, or the policy denies (fail closed).
            let whole = |name: &str, max: u64| -> Result<Option<u64>, PolicyOutcome> {
                let Some(v) = field(name) else {
                    return Ok(None);
                };
                match v.as_u64() {
                    Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(deny_outcome(
                        policy,
                        format!(
                            "policy {policy} returned {name} {v}; expected a whole number from 1 to {max}"
                        ),
                    )),
                }
            };
            let approvals_required =
                match whole("approvals_required", u64::from(MAX_APPROVALS_REQUIRED)) {
                    Ok(n) => n.and_then(|n| u32::try_from(n).ok()),
                    Err(deny) => return deny,
                };
            let approval_timeout_seconds =
                match whole("approval_timeout_seconds", MAX_APPROVAL_TIMEOUT_SECONDS) {
                    Ok(n) => n,
                    Err(deny) => return deny,
                };
            PolicyOutcome {
                decision: Some(verdict),
                reason: text("reason"),
                risk_level: text("risk_level"),
                approvals_required,
                approval_timeout_seconds,
                ..abstain
            }
        }
        other => unknown(format!("{other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(files: &[(&str, &str)]) -> PolicySet {
        PolicySet::load(
            files
                .iter()
                .map(|(p, r)| PolicySource {
                    path: p.to_string(),
                    rego: r.to_string(),
                })
                .collect(),
            EvaluatorOptions::default(),
        )
        .unwrap()
    }

    fn load_err(rego: &str) -> Vec<LoadError> {
        PolicySet::load(
            vec![PolicySource {
                path: "p.rego".into(),
                rego: rego.into(),
            }],
            EvaluatorOptions::default(),
        )
        .unwrap_err()
    }

    #[test]
    fn string_and_object_decisions_and_abstention() {
        let s = set(&[
            ("a.rego", "package a\nimport rego.v1\ndecision := \"allow\" if input.tool == \"t\"\n"),
            (
                "b.rego",
                "package b\ndecision = {\"action\": \"require_approval\", \"reason\": \"big\", \"risk_level\": \"high\"} { input.n > 10 }\n",
            ),
        ]);
        assert_eq!(s.policies().len(), 2);
        let d = s.evaluate(&json!({"tool": "t", "n": 1}));
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.policies[1].decision, None);
        let d = s.evaluate(&json!({"tool": "t", "n": 11}));
        assert_eq!(d.verdict, Verdict::RequireApproval);
        assert_eq!(d.reason, "big");
        assert_eq!(d.risk_level.as_deref(), Some("high"));
        assert_eq!(d.matched_policies, vec!["b".to_string()]);
        let d = s.evaluate(&json!({"tool": "x", "n": 1}));
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(d.reason, "no policy allowed this action");
    }

    #[test]
    fn approval_terms_are_read_from_the_decision_object_and_checked() {
        let s = set(&[(
            "q.rego",
            "package q\nimport rego.v1\ndecision := {\"action\": \"require_approval\", \"approvals_required\": input.n, \"approval_timeout_seconds\": input.t}\n",
        )]);
        let d = s.evaluate(&json!({"n": 2, "t": 600}));
        assert_eq!(d.verdict, Verdict::RequireApproval);
        assert_eq!(d.approvals_required, 2);
        assert_eq!(d.approval_timeout_seconds, Some(600));
        // Out of range, fractional or not a number: the policy denies (fail closed).
        for (n, t) in [
            (json!(0), json!(600)),
            (json!(11), json!(600)),
            (json!(1.5), json!(600)),
            (json!("2"), json!(600)),
            (json!(2), json!(0)),
            (json!(2), json!(3_000_000)),
        ] {
            let d = s.evaluate(&json!({"n": n, "t": t}));
            assert_eq!(d.verdict, Verdict::Deny, "{n} {t}");
            assert!(d.reason.contains("expected a whole number"), "{}", d.reason);
        }
    }

    #[test]
    fn modules_without_decision_are_libraries_not_policies() {
        let s = set(&[
            ("lib.rego", "package lib\nimport rego.v1\ntrusted(u) if startswith(u, \"https://ok/\")\n"),
            ("p.rego", "package p\nimport rego.v1\nimport data.lib\ndecision := \"allow\" if lib.trusted(input.url)\n"),
        ]);
        assert_eq!(s.policies().len(), 1);
        assert_eq!(
            s.evaluate(&json!({"url": "https://ok/x"})).verdict,
            Verdict::Allow
        );
        assert_eq!(
            s.evaluate(&json!({"url": "https://no/x"})).verdict,
            Verdict::Deny
        );
    }

    #[test]
    fn errors_fail_closed_naming_the_policy() {
        let s = set(&[
            ("ok.rego", "package ok\nimport rego.v1\ndecision := \"allow\"\n"),
            (
                "conflict.rego",
                "package conflict\ndecision = \"allow\" { input.x == \"a\" }\ndecision = \"deny\" { input.x == \"a\" }\n",
            ),
            ("types.rego", "package types\ndecision = \"allow\" { startswith(input.n, \"a\") }\n"),
            ("weird.rego", "package weird\ndecision = 42 { input.w }\n"),
        ]);
        let d = s.evaluate(&json!({"x": "a"}));
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(
            d.reason.contains("policy conflict failed to evaluate"),
            "{}",
            d.reason
        );
        assert!(d.reason.contains("conflict.rego:3:1"), "{}", d.reason);
        let d = s.evaluate(&json!({"n": 3}));
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(d.reason.contains("policy types failed"), "{}", d.reason);
        let d = s.evaluate(&json!({"w": true}));
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(d.reason.contains("unknown decision 42"), "{}", d.reason);
        assert_eq!(s.evaluate(&json!({})).verdict, Verdict::Allow);
    }

    #[test]
    fn time_limit_denies() {
        let s = PolicySet::load(
            vec![PolicySource {
                path: "slow.rego".into(),
                rego: "package slow\nimport rego.v1\ndecision := \"allow\" if {\n  input.slow\n  count([1 | some i in numbers.range(1, 4000); some j in numbers.range(1, 4000)]) > 0\n}\n".into(),
            }],
            EvaluatorOptions {
                eval_timeout: Duration::from_millis(20),
            },
        )
        .unwrap();
        let d = s.evaluate(&json!({"slow": true}));
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(d.reason.contains("time limit"), "{}", d.reason);
    }

    #[test]
    fn unsafe_variable_is_a_load_error_with_position() {
        let errs = load_err(
            "package aaf.policies\ndefault decision = \"deny\"\ndecision = \"allow\" { allowed[input.url] }\nallowed[url] {\n  startswith(url, \"https://x/\")\n}\n",
        );
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].file.as_str(), errs[0].line), ("p.rego", 5));
        assert!(errs[0].message.contains("unsafe"), "{}", errs[0]);
    }

    #[test]
    fn parse_errors_have_positions() {
        let errs =
            load_err("package p\nimport rego.v1\ndecision := \"allow\" if {\n  input.x ==\n}\n");
        assert_eq!(errs[0].file, "p.rego");
        assert!(errs[0].line >= 4, "{}", errs[0]);
        let errs = load_err("package p\ndecision = \"allow\" { nosuchfn(input.x) }\n");
        assert!(errs[0].message.contains("nosuchfn"), "{}", errs[0]);
    }

    #[test]
    fn builtins_are_available() {
        let s = set(&[(
            "b.rego",
            "package b\nimport rego.v1\ndecision := \"deny\" if is_private_network(input.url)\ndecision := \"deny\" if has_pii(input.body)\ndecision := \"deny\" if has_credit_card(input.body)\ndefault decision := \"allow\"\n",
        )]);
        assert_eq!(
            s.evaluate(&json!({"url": "http://127.1/", "body": {}}))
                .verdict,
            Verdict::Deny
        );
        assert_eq!(
            s.evaluate(&json!({"url": "https://example.com/", "body": {"x": "nothing here"}}))
                .verdict,
            Verdict::Allow
        );
        assert_eq!(
            s.evaluate(
                &json!({"url": "https://example.com/", "body": {"card": "4111 1111 1111 1111"}})
            )
            .verdict,
            Verdict::Deny
        );
    }

    #[test]
    fn revision_depends_on_sources_only() {
        let a = set(&[("a.rego", "package a\ndecision = \"allow\"\n")]);
        let b = set(&[("a.rego", "package a\ndecision = \"allow\"\n")]);
        let c = set(&[("a.rego", "package a\ndecision = \"deny\"\n")]);
        assert_eq!(a.revision(), b.revision());
        assert_ne!(a.revision(), c.revision());
    }
}
