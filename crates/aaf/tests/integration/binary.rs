//! The real `aaf` binary: serve with signals, offline audit verification and tampering,
//! policy check and eval, and the agents client.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{examples, policy_dir, ADMIN_TOKEN, ALLOW_ALL};

const AAF: &str = env!("CARGO_BIN_EXE_aaf");

/// Runs `aaf serve` on port 0 and returns the child and its base URL (read from the log).
/// `admin_token`: the AAF_ADMIN_TOKEN to start with, or None to let the server generate one;
/// `env`: more environment variables (e.g. AAF_DATABASE_URL).
/// Standard output is piped (the generated token is printed there).
pub fn spawn_serve_with(
    data_dir: &Path,
    policies: &Path,
    admin_token: Option<&str>,
    env: &[(&str, &str)],
) -> (Child, String) {
    let mut command = Command::new(AAF);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .arg("--policies")
        .arg(policies)
        .env_remove("AAF_ADMIN_TOKEN")
        .env_remove("AAF_DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = admin_token {
        command.env("AAF_ADMIN_TOKEN", token);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = std::time::Instant::now();
    let base = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "aaf serve did not log its address"
        );
        let line = lines
            .next()
            .expect("aaf serve exited before listening")
            .unwrap();
        if let Some(rest) = line.split("address=").nth(1) {
            if line.contains("listening") {
                let addr = rest.split_whitespace().next().unwrap();
                break format!("http://{addr}");
            }
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

/// Kills the child when dropped unless it has exited, so that a failing assertion does not
/// leave a server running after the test.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_serve(data_dir: &Path, policies: &Path) -> (Child, String) {
    spawn_serve_with(data_dir, policies, Some(ADMIN_TOKEN), &[])
}

pub fn sigterm(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("aaf serve did not stop within 10 s of SIGTERM");
}

fn verify(data_dir: &Path) -> (bool, String) {
    let out = Command::new(AAF)
        .args(["audit", "verify", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn sigterm_right_after_listening_is_a_graceful_shutdown() {
    // The handlers are installed before the `listening` line, so a SIGTERM sent the moment
    // it appears stops the server gracefully (exit 0) instead of killing it.
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    for _ in 0..3 {
        let data = tempfile::tempdir().unwrap();
        let (mut child, _base) = spawn_serve(data.path(), policies.path());
        let status = sigterm(&mut child);
        assert!(
            status.success(),
            "aaf serve exited with {status} on an early SIGTERM"
        );
    }
}

#[tokio::test]
async fn serve_sigterm_restart_verify_and_tamper() {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let (mut child, base) = spawn_serve(data.path(), policies.path());
    let client = reqwest::Client::new();

    // The agents client of the binary against the running server.
    let out = Command::new(AAF)
        .args([
            "agents",
            "create",
            "cli-agent",
            "--risk-score",
            "0.3",
            "--server",
            &base,
        ])
        .env("AAF_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = created["api_key"].as_str().unwrap().to_string();

    for i in 0..5 {
        let r = client
            .post(format!("{base}/v1/actions"))
            .bearer_auth(&key)
            .json(&json!({"tool": "t", "operation": "o", "params": {"i": i}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let status = sigterm(&mut child);
    assert!(
        status.success(),
        "aaf serve exited with {status} on SIGTERM"
    );

    let (ok, text) = verify(data.path());
    assert!(ok, "{text}");
    assert!(text.contains("audit verification passed"), "{text}");

    // Restart: the chain continues and still verifies.
    let (mut child, base) = spawn_serve(data.path(), policies.path());
    let r = client
        .post(format!("{base}/v1/actions"))
        .bearer_auth(&key)
        .json(&json!({"tool": "t", "operation": "o"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(sigterm(&mut child).success());
    let (ok, text) = verify(data.path());
    assert!(ok, "{text}");

    // Tamper with one event's data: verification fails and names the seq.
    let url = format!("sqlite://{}", data.path().join("aaf.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let org: String = sqlx::query_scalar("SELECT id FROM orgs WHERE name = 'default'")
        .fetch_one(&pool)
        .await
        .unwrap();
    // The append-only triggers stop a careless UPDATE; an attacker with the file drops them.
    for t in ["audit_events_no_update", "audit_events_no_delete"] {
        sqlx::query(&format!("DROP TRIGGER {t}"))
            .execute(&pool)
            .await
            .unwrap();
    }
    // The hashed data is a commitment to the payload (format 2): change its first digits.
    sqlx::query("UPDATE audit_events SET data = replace(data, substr(data, 20, 8), '00000000') WHERE org_id = ? AND seq = 3")
        .bind(&org)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (ok, text) = verify(data.path());
    assert!(!ok, "tampering not detected: {text}");
    assert!(text.contains("seq"), "{text}");
}

#[test]
fn serve_refuses_unsafe_policies_with_a_location() {
    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[(
        "seed000.rego",
        "package aaf.policies\ndefault decision = {\"action\": \"deny\", \"reason\": \"No matching allow rule\"}\ndecision = {\"action\": \"allow\"} {\ninput.tool == \"http_proxy\"\ninput.operation == \"GET\"\nallowed_domains[input.params.url]\n}\nallowed_domains[url] {\nstartswith(url, \"https://api.trusted.com/\")\n}\n",
    )]);
    let out = Command::new(AAF)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .arg("--policies")
        .arg(policies.path())
        .env("AAF_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seed000.rego:9:"), "{err}");
    assert!(err.contains("var url is unsafe"), "{err}");

    let out = Command::new(AAF)
        .args(["policy", "check"])
        .arg(policies.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("seed000.rego:9:"));
}

#[test]
fn policy_check_lists_the_policies_the_rule_index_can_skip() {
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("payments.rego"),
        "package payments\nimport rego.v1\ndecision := \"require_approval\" if {\n\tinput.action.tool in {\"stripe\", \"payments\"}\n\tinput.action.params.amount > 100\n}\n",
    )
    .unwrap();
    std::fs::write(
        policies.path().join("base.rego"),
        "package base\nimport rego.v1\ndefault decision := \"deny\"\n",
    )
    .unwrap();
    let out = Command::new(AAF)
        .args(["policy", "check"])
        .arg(policies.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "indexed  payments: evaluated only when input.action.tool in {\"payments\", \"stripe\"}"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("indexed  base"), "{stdout}");
    assert!(stdout.contains("1 of 2 policies indexed"), "{stdout}");
}

#[test]
fn policy_check_and_eval_on_the_examples() {
    for dir in ["seed-000", "seed-004"] {
        let out = Command::new(AAF)
            .args(["policy", "check"])
            .arg(examples(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let input = examples("../inputs/stripe_charge.json");
    let out = Command::new(AAF)
        .args(["policy", "eval", "--policies"])
        .arg(examples("seed-004"))
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["decision"], "require_approval");
    assert_eq!(v["matched_policies"], json!(["aaf.policy"]));
}

#[test]
fn unknown_configuration_keys_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("aaf.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\n[limits]\neval_timeout = 5\n",
    )
    .unwrap();
    let out = Command::new(AAF)
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("eval_timeout"), "{err}");
}

/// First start without AAF_ADMIN_TOKEN: a token is generated, printed once on standard
/// output, written to <data-dir>/admin-token with mode 0600, works, and only its hash is in
/// the database. A second start prints nothing and keeps the token.
#[tokio::test]
async fn first_start_generates_the_admin_token() {
    use std::os::unix::fs::PermissionsExt;

    let data = tempfile::tempdir().unwrap();
    let policies = policy_dir(&[("allow.rego", ALLOW_ALL)]);
    let (token, stdout) = start_check_stop(data.path(), policies.path(), None).await;
    let token_file = data.path().join("admin-token");
    assert!(token.starts_with("aaf_at_"), "{token}");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin-token mode {mode:o}");
    assert!(
        stdout.contains(&token),
        "the token was not printed: {stdout:?}"
    );

    // Only the hash is stored.
    let db = std::fs::read(data.path().join("aaf.db")).unwrap();
    let wal = std::fs::read(data.path().join("aaf.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "token stored in clear"
        );
    }

    // A second start makes no new token and the first one still works.
    let (_, stdout) = start_check_stop(data.path(), policies.path(), Some(token.clone())).await;
    assert!(!stdout.contains("admin token"), "{stdout}");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
}

/// Starts `aaf serve` without AAF_ADMIN_TOKEN, checks that `token` (default: the one in
/// `<data_dir>/admin-token`) works, stops the server; returns the token and what it printed.
async fn start_check_stop(
    data_dir: &Path,
    policies: &Path,
    token: Option<String>,
) -> (String, String) {
    let (mut child, base) = spawn_serve_with(data_dir, policies, None, &[]);
    let token = match token {
        Some(t) => t,
        None => std::fs::read_to_string(data_dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_string(),
    };
    let r = reqwest::Client::new()
        .get(format!("{base}/v1/agents"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(sigterm(&mut child).success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    (token, stdout)
}

fn policy_test(args: &[&str]) -> (bool, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(AAF)
        .current_dir(&root)
        .args(["policy", "test"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The example policies of issue 17 (`input.detections`, `input.session`, `input.risk`) pass
/// their own unit tests, every one of them.
#[test]
fn the_detection_session_and_risk_examples_pass_their_unit_tests() {
    let dirs = [
        "examples/policies/detections",
        "examples/policies/session",
        "examples/policies/risk",
    ];
    let (ok, out, err) = policy_test(&dirs);
    assert!(ok, "{out}\n{err}");
    for package in ["secret_egress_test", "session_test", "risk_review_test"] {
        let passed = out
            .lines()
            .filter(|l| l.starts_with(&format!("PASS  data.aaf.examples.{package}.test_")))
            .count();
        assert!(passed >= 4, "{package}: {passed} tests passed\n{out}");
    }
    let passed = out.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(out.contains(&format!("PASS: {passed}/{passed}")), "{out}");
}

#[test]
fn policy_test_runs_the_starter_and_example_unit_tests() {
    // The bundled starter policy's, the built-in packs' (policies/packs) and seed 004's tests
    // (as CI runs them).
    let (ok, out, err) = policy_test(&["policies", "examples/policies/seed-004", "--coverage"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("PASS  data.aaf.starter_test.test_userinfo_trick_is_denied"),
        "{out}"
    );
    assert!(
        out.contains("PASS  data.aaf.policy_test.test_stripe_charge_over_10000_requires_approval"),
        "{out}"
    );
    assert!(out.contains("100.0%  policies/starter.rego"), "{out}");
    for pack in ["security", "compliance", "financial"] {
        let tests = out
            .lines()
            .filter(|l| l.starts_with(&format!("PASS  data.aaf.packs.{pack}_test.test_")))
            .count();
        assert!(tests >= 10, "{pack}: {tests} tests\n{out}");
        assert!(
            out.contains(&format!("policies/packs/{pack}.rego")),
            "{out}"
        );
    }
    let passed = out.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(out.contains(&format!("PASS: {passed}/{passed}")), "{out}");
    // docs/policies.md shows this very command's summary line.
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/policies.md"),
    )
    .unwrap();
    assert!(
        doc.contains(&format!("\nPASS: {passed}/{passed}\n")),
        "docs/policies.md must show `PASS: {passed}/{passed}` for `aaf policy test policies examples/policies/seed-004 --coverage`"
    );

    // --run selects by full name; JSON for machines.
    let (ok, out, _) = policy_test(&["policies", "--run", "private|userinfo", "--format", "json"]);
    assert!(ok);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["data.aaf.starter_test.test_userinfo_trick_is_denied"]
    );
    assert_eq!(report["passed"], 1);

    // A failing test fails the run; so does a directory without tests.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.rego"),
        "package p\nimport rego.v1\ndecision := \"allow\" if input.tool == \"a\"\n",
    )
    .unwrap();
    let (ok, out, _) = policy_test(&[dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("no tests found"), "{out}");
    std::fs::write(
        dir.path().join("p_test.rego"),
        "package p_test\nimport rego.v1\nimport data.p\ntest_b_allowed if p.decision == \"allow\" with input as {\"tool\": \"b\"}\n",
    )
    .unwrap();
    let (ok, out, _) = policy_test(&[dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("FAIL  data.p_test.test_b_allowed") && out.contains("undefined"),
        "{out}"
    );
    assert!(out.contains("FAIL: 1/1"), "{out}");
    // A bad --run is a clear error.
    let (ok, _, err) = policy_test(&["policies", "--run", "("]);
    assert!(!ok);
    assert!(err.contains("--run"), "{err}");
}
