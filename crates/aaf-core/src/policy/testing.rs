//! Rego unit tests, as OPA runs them (`opa test`): every rule whose name starts with
//! `test_` is a test; it passes when it evaluates to `true`, fails when it is false or
//! undefined, and errs when its evaluation fails. Tests give their own input and data with
//! `with` (`with input as {...}`, `with data.x as ...`); the base input is an empty object.
//! Source: OPA documentation, "Policy Testing" (<https://www.openpolicyagent.org/docs/policy-testing>).

use std::num::NonZeroU32;
use std::time::Instant;

use regorus::utils::limits::ExecutionTimerConfig;
use regorus::Value;
use serde::Serialize;

use super::{eval_error_text, PolicySet};

/// What a test came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestOutcome {
    /// The rule evaluated to `true`.
    Pass,
    /// The rule evaluated to `false`, to another value, or was undefined.
    Fail,
    /// The evaluation failed (an error, the time limit).
    Error,
}

/// One test's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestResult {
    /// The test's full name, `data.<package>.<rule>`.
    pub name: String,
    /// The package (without `data.`).
    pub package: String,
    /// The file that declares it.
    pub file: String,
    /// Pass, fail or error.
    pub outcome: TestOutcome,
    /// The value it evaluated to when it failed (JSON), or the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Wall-clock evaluation time, in microseconds.
    pub duration_us: u64,
}

/// Line coverage of one file over the tests that ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileCoverage {
    /// The file.
    pub file: String,
    /// Lines evaluated, ascending (1-based).
    pub covered: Vec<u32>,
    /// Lines with rule bodies not evaluated, ascending.
    pub not_covered: Vec<u32>,
    /// `covered / (covered + not_covered)` in percent (100 for a file without such lines).
    pub percent: f64,
}

/// The results of a test run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestReport {
    /// Every test that ran, in package and name order.
    pub results: Vec<TestResult>,
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests whose evaluation failed.
    pub errors: usize,
    /// Per-file line coverage, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Vec<FileCoverage>>,
}

impl TestReport {
    /// Whether every test passed and there was at least one.
    pub fn success(&self) -> bool {
        !self.results.is_empty() && self.failed == 0 && self.errors == 0
    }
}

/// Identifiers starting with `test_` in a Rego source: the candidates for test rules (each
/// is confirmed by the engine as a declared rule before it runs).
fn candidates(rego: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = rego.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            // Skip comments and string literals.
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            b if is_ident(b) => {
                let start = i;
                while i < bytes.len() && is_ident(bytes[i]) {
                    i += 1;
                }
                let preceded_by_dot = start > 0 && bytes[start - 1] == b'.';
                let word = &rego[start..i];
                if word.starts_with("test_") && !preceded_by_dot && !out.iter().any(|w| w == word) {
                    out.push(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    out
}

impl PolicySet {
    /// Runs the set's Rego unit tests whose full name (`data.<package>.<rule>`) `filter`
    /// accepts, each within the set's evaluation time limit; with `coverage`, also reports
    /// the lines each file had evaluated.
    ///
    /// Never fails: a test whose evaluation fails is reported as an error.
    pub fn run_tests(&self, filter: impl Fn(&str) -> bool, coverage: bool) -> TestReport {
        let mut engine = match self.master.lock() {
            Ok(master) => master.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if coverage {
            engine.set_enable_coverage(true);
        }
        let mut tests: Vec<(String, String, String)> = Vec::new();
        let sources = engine.get_policies().unwrap_or_default();
        for module in &self.modules {
            let Some(source) = sources.iter().find(|s| s.get_path() == &module.path) else {
                continue;
            };
            for name in candidates(source.get_contents()) {
                if engine
                    .has_declared_rule_rooted_at(&module.path, &name)
                    .unwrap_or(false)
                {
                    let full = format!("data.{}.{name}", module.package);
                    if filter(&full) && !tests.iter().any(|(n, _, _)| *n == full) {
                        tests.push((full, module.package.clone(), module.path.clone()));
                    }
                }
            }
        }
        tests.sort();

        let mut results = Vec::with_capacity(tests.len());
        for (name, package, file) in tests {
            engine.set_execution_timer_config(ExecutionTimerConfig {
                limit: self.options.eval_timeout,
                check_interval: NonZeroU32::MIN.saturating_add(63),
            });
            let started = Instant::now();
            let value = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                regorus::utils::limits::with_thread_deadline(self.options.eval_timeout, || {
                    engine.eval_rule(name.clone())
                })
            }));
            let duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            let (outcome, detail) = match value {
                Ok(Ok(Value::Bool(true))) => (TestOutcome::Pass, None),
                Ok(Ok(Value::Undefined)) => (TestOutcome::Fail, Some("undefined".to_string())),
                Ok(Ok(other)) => (TestOutcome::Fail, Some(other.to_string())),
                Ok(Err(e)) => (TestOutcome::Error, Some(eval_error_text(&e))),
                Err(_) => (
                    TestOutcome::Error,
                    Some("the policy engine panicked".to_string()),
                ),
            };
            results.push(TestResult {
                name,
                package,
                file,
                outcome,
                detail,
                duration_us,
            });
        }
        let count = |o: TestOutcome| results.iter().filter(|r| r.outcome == o).count();
        let (passed, failed, errors) = (
            count(TestOutcome::Pass),
            count(TestOutcome::Fail),
            count(TestOutcome::Error),
        );
        let coverage = coverage.then(|| {
            engine
                .get_coverage_report()
                .map(|report| {
                    report
                        .files
                        .into_iter()
                        .map(|f| {
                            let (c, n) = (f.covered.len(), f.not_covered.len());
                            FileCoverage {
                                file: f.path,
                                covered: f.covered.into_iter().collect(),
                                not_covered: f.not_covered.into_iter().collect(),
                                percent: if c + n == 0 {
                                    100.0
                                } else {
                                    (c as f64) * 100.0 / ((c + n) as f64)
                                },
                            }
                        })
                        .collect()
                })
                .unwrap_or_default()
        });
        TestReport {
            results,
            passed,
            failed,
            errors,
            coverage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::EvaluatorOptions;

    fn set(files: &[(&str, &str)]) -> PolicySet {
        PolicySet::load_for_tests(
            crate::policy::tests::sources(files),
            EvaluatorOptions::default(),
        )
        .unwrap()
    }

    const POLICY: &str = r#"package app
import rego.v1
default decision := "deny"
decision := "allow" if input.tool == "search"
decision := "require_approval" if {
    input.tool == "payments"
    input.params.amount > 1000
}
"#;

    const TESTS: &str = r#"package app_test
import rego.v1
import data.app
# test_in_a_comment is not a test
test_search_is_allowed if app.decision == "allow" with input as {"tool": "search"}
test_big_payment_needs_approval if {
    app.decision == "require_approval" with input as {"tool": "payments", "params": {"amount": 5000}}
}
test_small_payment_wrongly_expected_allowed if {
    app.decision == "allow" with input as {"tool": "payments", "params": {"amount": 5}}
}
test_type_error if {
    x := 1 / "a"
    x == 1
}
helper := "test_not_a_rule"
"#;

    #[test]
    fn tests_pass_fail_and_err_like_opa_test() {
        let s = set(&[("app.rego", POLICY), ("app_test.rego", TESTS)]);
        let report = s.run_tests(|_| true, false);
        let outcomes: Vec<(&str, TestOutcome)> = report
            .results
            .iter()
            .map(|r| (r.name.as_str(), r.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                (
                    "data.app_test.test_big_payment_needs_approval",
                    TestOutcome::Pass
                ),
                ("data.app_test.test_search_is_allowed", TestOutcome::Pass),
                (
                    "data.app_test.test_small_payment_wrongly_expected_allowed",
                    TestOutcome::Fail
                ),
                ("data.app_test.test_type_error", TestOutcome::Error),
            ]
        );
        assert_eq!((report.passed, report.failed, report.errors), (2, 1, 1));
        assert!(!report.success());
        assert!(report.results.iter().all(|r| r.file == "app_test.rego"));
    }

    #[test]
    fn a_filter_selects_tests_and_coverage_names_lines() {
        let s = set(&[("app.rego", POLICY), ("app_test.rego", TESTS)]);
        let report = s.run_tests(|name| name.contains("search"), true);
        assert_eq!(report.results.len(), 1);
        assert!(report.success());
        let coverage = report.coverage.unwrap();
        let app = coverage.iter().find(|f| f.file == "app.rego").unwrap();
        // The search rule's line ran; the payment rule's body did not.
        assert!(app.covered.contains(&4), "{app:?}");
        assert!(app.not_covered.contains(&7), "{app:?}");
        assert!(app.percent > 0.0 && app.percent < 100.0);
        // No tests at all is not a success.
        let none = s.run_tests(|_| false, false);
        assert!(none.results.is_empty() && !none.success());
    }

    #[test]
    fn candidates_skip_comments_strings_and_references() {
        assert_eq!(
            candidates("test_a if true\n# test_b\nx := \"test_c\"\ny := data.p.test_d\ntest_a if false\ntest_e := true"),
            ["test_a", "test_e"]
        );
    }
}
