//! README's five-minute tour, run as written against the real `aaf` binary.
//!
//! The shell blocks are read from README.md between `<!-- tour:start -->` and
//! `<!-- tour:end -->`; the marker before a block says where it runs:
//!
//! - `<!-- tour:server -->`: the server's terminal. Run by bash in a temporary working
//!   directory (with `examples/` linked to the repository's), on port 0 (`AAF_LISTEN`), so its
//!   data directory is the tour's `./aaf-data` and its admin token is generated there;
//! - `<!-- tour:client -->`: the reader's second terminal. All of these blocks run in one bash
//!   with `set -euo pipefail`, so shell variables carry from one to the next;
//! - `<!-- tour:stopped -->`: after the server stopped on SIGINT (Ctrl-C).
//!
//! The only changes made to the text: `localhost:8700` becomes this server's address,
//! `127.0.0.1:8701` a free loopback port for the tour's upstream, and `cargo run --release --`
//! the `aaf` binary of this build. Each client block's standard output (every line a JSON
//! document) is checked against what the README says it shows.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const AAF: &str = env!("CARGO_BIN_EXE_aaf");

/// The longest a step of the tour (server start, the client blocks, shutdown) may take before
/// the test gives up: a bound on waiting, not a speed claim.
const STEP_LIMIT: Duration = Duration::from_secs(300);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tour's shell blocks, by where they run.
#[derive(Debug, Default)]
struct Tour {
    server: Vec<String>,
    client: Vec<String>,
    stopped: Vec<String>,
}

/// Reads the tour's blocks from README text. Panics when a marker is missing or repeated, when
/// a block of the tour is not `sh` or comes before any section marker (it would not be run).
fn read_tour(readme: &str) -> Tour {
    for marker in ["<!-- tour:start -->", "<!-- tour:end -->"] {
        assert_eq!(
            readme.matches(marker).count(),
            1,
            "README.md must contain {marker} exactly once"
        );
    }
    let region = readme
        .split("<!-- tour:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- tour:end -->").next())
        .expect("<!-- tour:start --> must come before <!-- tour:end -->");
    let mut tour = Tour::default();
    let mut section: Option<&str> = None;
    let mut block: Option<Vec<&str>> = None;
    for line in region.lines() {
        if let Some(lines) = block.as_mut() {
            if line.trim_end() == "```" {
                let text = lines.join("\n");
                match section {
                    Some("server") => tour.server.push(text),
                    Some("client") => tour.client.push(text),
                    Some("stopped") => tour.stopped.push(text),
                    other => panic!("a tour block outside a known section ({other:?}):\n{text}"),
                }
                block = None;
            } else {
                lines.push(line);
            }
        } else if let Some(name) = line
            .trim()
            .strip_prefix("<!-- tour:")
            .and_then(|rest| rest.strip_suffix(" -->"))
        {
            section = Some(name);
        } else if let Some(info) = line.trim_start().strip_prefix("```") {
            assert_eq!(info.trim(), "sh", "every block of the tour is `sh`: {line}");
            block = Some(Vec::new());
        }
    }
    assert!(block.is_none(), "a tour block is not closed");
    assert_eq!(tour.server.len(), 1, "one server block: {tour:?}");
    assert!(!tour.client.is_empty(), "no client blocks: {tour:?}");
    assert!(
        !tour.stopped.is_empty(),
        "no block after the server stopped: {tour:?}"
    );
    tour
}

/// `cargo run --release --` of the tour's text replaced by the `aaf` binary of this build.
fn with_binary(block: &str) -> String {
    assert!(!AAF.contains('\''), "the binary's path has a quote: {AAF}");
    block.replace("cargo run --release --", &format!("'{AAF}'"))
}

/// The tour's text with its server's and upstream's addresses replaced by the test's, and
/// `cargo run --release --` by the binary ([`with_binary`]).
fn with_addresses(block: &str, aaf: &str, upstream: &str) -> String {
    with_binary(
        &block
            .replace("localhost:8700", aaf)
            .replace("127.0.0.1:8701", upstream),
    )
}

/// A command in its own process group (like a terminal's foreground job), in `dir`, with no
/// `AAF_*` variable of the test's environment (an unknown one would stop the server).
fn shell(script: &str, dir: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .process_group(0);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AAF_") {
            command.env_remove(name);
        }
    }
    command
}

/// Sends `signal` to the process group led by `child` (started by [`shell`]), and only while
/// `child` is running, so that the group exists and its id cannot have been reused. The signal
/// goes through bash's builtin `kill`, never `/usr/bin/kill`: procps-ng 4.0's, given the
/// negative id of a group that no longer exists, signals every process it may, as `kill -1`.
fn signal_group(child: &mut Child, signal: &str) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = Command::new("bash")
            .args(["-c", "kill -s \"$1\" -- \"-$2\"", "kill", signal])
            .arg(child.id().to_string())
            .status();
    }
}

/// Waits for `child` at most [`STEP_LIMIT`]; kills its process group and panics beyond.
fn wait_bounded(child: &mut Child, what: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > STEP_LIMIT {
            signal_group(child, "KILL");
            let _ = child.wait();
            panic!("{what} did not finish within {STEP_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server started by the tour's server block; its process group is killed on drop.
struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Runs the server block in `dir` on port 0 and waits until it logs its address.
    fn start(block: &str, dir: &Path) -> (Server, String) {
        let mut child = shell(block, dir)
            .env("AAF_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(String::new()));
        let started = Instant::now();
        let address = loop {
            assert!(
                started.elapsed() < STEP_LIMIT,
                "the tour's server did not log its address"
            );
            let Some(line) = lines.next() else {
                panic!(
                    "the tour's server exited before listening:\n{}",
                    log.lock().unwrap()
                );
            };
            let line = line.unwrap();
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if line.contains("listening") {
                if let Some(rest) = line.split("address=").nth(1) {
                    break rest.split_whitespace().next().unwrap().to_string();
                }
            }
        };
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        (Server { child, log }, address)
    }

    /// Stops the server as Ctrl-C does (SIGINT to its process group) and returns its status.
    fn interrupt(&mut self) -> ExitStatus {
        signal_group(&mut self.child, "INT");
        wait_bounded(&mut self.child, "the server after SIGINT")
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        signal_group(&mut self.child, "KILL");
        let _ = self.child.wait();
    }
}

/// Runs `script` with bash in `dir`; returns its status, standard output and error.
fn run_script(script: &str, dir: &Path, name: &str) -> (ExitStatus, String, String) {
    let out = dir.join(format!("{name}.stdout"));
    let err = dir.join(format!("{name}.stderr"));
    let mut child = shell(script, dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    // A script that fails half-way leaves nothing behind: the client script's EXIT trap
    // stops the tour's upstream.
    let status = wait_bounded(&mut child, name);
    (
        status,
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap(),
    )
}

/// A loopback port free at the time of the call (for the tour's upstream, which takes a fixed
/// port, as a reader runs it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const BLOCK_SEPARATOR: &str = "@@@ tour block ";

#[test]
fn the_readme_tour_runs_as_written() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let tour = read_tour(&readme);
    let blocks = [&tour.server[..], &tour.client[..], &tour.stopped[..]]
        .concat()
        .join("\n");
    for text in ["localhost:8700", "127.0.0.1:8701", "cargo run --release --"] {
        assert!(
            blocks.contains(text),
            "the tour no longer uses {text}: update the test's substitutions"
        );
    }

    // The reader's checkout: the tour runs from the repository's directory and keeps its data
    // in ./aaf-data, here a new temporary one.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("examples"), dir.path().join("examples")).unwrap();

    let server_block = with_binary(&tour.server[0]);
    assert!(server_block.contains(AAF), "{server_block}");
    let (mut server, aaf) = Server::start(&server_block, dir.path());
    let upstream = format!("127.0.0.1:{}", free_port());
    let subs = |block: &str| with_addresses(block, &aaf, &upstream);

    let mut script =
        String::from("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    for (i, block) in tour.client.iter().enumerate() {
        script.push_str(&format!("echo '{BLOCK_SEPARATOR}{i}'\n{}\n", subs(block)));
    }
    let (status, stdout, stderr) = run_script(&script, dir.path(), "client");
    let context = format!(
        "client blocks: {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server log\n{}",
        server.log()
    );
    assert!(status.success(), "{context}");

    // Each block's output, every line a JSON document.
    let outputs: Vec<Vec<Value>> = stdout
        .split(BLOCK_SEPARATOR)
        .skip(1)
        .map(|part| {
            part.lines()
                .skip(1)
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{context}"))
                })
                .collect()
        })
        .collect();
    assert_eq!(outputs.len(), tour.client.len(), "{context}");
    check_client_outputs(&outputs, &context);

    // The upstream received exactly one charge: the approved one, once.
    assert_eq!(
        stderr.matches("\"POST /v1/charges HTTP/1.1\" 201").count(),
        1,
        "{context}"
    );

    // Ctrl-C in the server's terminal, then the blocks run with the server stopped.
    let status = server.interrupt();
    assert!(
        status.success(),
        "the server exited with {status} on SIGINT:\n{}",
        server.log()
    );
    let mut script = String::from("set -euo pipefail\n");
    for block in &tour.stopped {
        script.push_str(&subs(block));
        script.push('\n');
    }
    let (status, stdout, stderr) = run_script(&script, dir.path(), "stopped");
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("audit verification passed: 1 chains"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("proven      the checkpoint of aaf-audit/"),
        "{stdout}\n{stderr}"
    );
    assert!(stdout.contains("proof pack verified"), "{stdout}\n{stderr}");
}

/// What each client block of the tour prints, in the README's order.
fn check_client_outputs(outputs: &[Vec<Value>], context: &str) {
    assert_eq!(
        outputs.len(),
        9,
        "a new block needs its checks here\n{context}"
    );
    let block = |i: usize, lines: usize| lines_of(outputs, i, lines, context);

    // Setup: the upstream answers.
    assert_eq!(block(0, 1)[0], json!({"status": "ok"}), "{context}");

    // 1. The agent, with its key shown once.
    let agent = &block(1, 1)[0];
    assert_eq!(agent["name"], "support-bot", "{context}");
    assert!(
        agent["api_key"].as_str().unwrap().starts_with("aaf_ak_"),
        "{context}"
    );

    // 2. Allowed.
    let allowed = &block(2, 1)[0];
    assert_eq!(allowed["decision"], "allow", "{context}");
    assert_eq!(allowed["status"], "allowed", "{context}");

    // 3. Denied, and the dry run of the metadata address denied without being stored.
    let out = block(3, 2);
    assert_eq!(out[0]["decision"], "deny", "{context}");
    assert_eq!(out[0]["status"], "denied", "{context}");
    assert_eq!(
        out[0]["reason"], "no rule of the starter policy allows this action",
        "{context}"
    );
    assert_eq!(out[1]["status"], "dry_run", "{context}");
    assert_eq!(out[1]["decision"], "deny", "{context}");
    assert!(out[1].get("id").is_none(), "{context}");

    // 4. The charge waits; the approver sees it and approves it; the upstream's own answer.
    let out = block(4, 3);
    let (pending, queue, approved) = (&out[0], &out[1], &out[2]);
    assert_eq!(pending["status"], "pending_approval", "{context}");
    assert_eq!(pending["decision"], "require_approval", "{context}");
    assert_eq!(pending["approval"]["approvals_required"], 1, "{context}");
    assert_eq!(
        pending["approval"]["digest"].as_str().unwrap().len(),
        64,
        "{context}"
    );
    assert_eq!(
        queue["approvals"][0]["action"]["id"], pending["id"],
        "{context}"
    );
    assert_eq!(queue["approvals"].as_array().unwrap().len(), 1, "{context}");
    assert_eq!(approved["action"]["id"], pending["id"], "{context}");
    assert_eq!(approved["action"]["status"], "executed", "{context}");
    assert_eq!(approved["votes"][0]["user_name"], "bob", "{context}");
    let result = &approved["action"]["result"];
    assert_eq!(result["status"], 201, "{context}");
    assert_eq!(result["body"]["id"], "ch_tour_1", "{context}");
    assert_eq!(
        result["body"]["received"],
        json!({"amount": 50000, "currency": "usd"}),
        "{context}"
    );

    // 5. An auditor, and a second key of the same agent limited to http_proxy.
    let out = block(5, 2);
    assert_eq!(out[0]["role"], "auditor", "{context}");
    assert_eq!(out[1]["agent_id"], agent["id"], "{context}");
    assert_eq!(out[1]["tools"], json!(["http_proxy"]), "{context}");
    assert!(
        out[1]["api_key"].as_str().unwrap().starts_with("aaf_ak_"),
        "{context}"
    );

    // 6. The shadow policy, the pack, an allowed search the shadow policy would deny, and the
    //    report saying so.
    let out = block(6, 4);
    let (policy, enabled, search, report) = (&out[0], &out[1], &out[2], &out[3]);
    assert_eq!(policy["mode"], "shadow", "{context}");
    assert_eq!(policy["version"], 1, "{context}");
    assert_eq!(*enabled, json!(true), "{context}");
    assert_eq!(search["decision"], "allow", "{context}");
    assert_eq!(search["shadow"][0]["decision"], "deny", "{context}");
    assert_eq!(search["shadow"][0]["differs"], true, "{context}");
    assert_eq!(report["policy_id"], policy["id"], "{context}");
    assert_eq!(report["total"], 1, "{context}");
    assert_eq!(report["differing"], 1, "{context}");
    assert_eq!(
        report["counts"],
        json!([{"enforced": "allow", "shadow": "deny", "count": 1}]),
        "{context}"
    );
    assert_eq!(report["samples"][0]["action_id"], search["id"], "{context}");

    // 7. The kill switch: engaged, the agent's action refused before evaluation, released.
    let out = block(7, 3);
    let (switch, refused, released) = (&out[0], &out[1], &out[2]);
    assert_eq!(switch["scope"], "agent", "{context}");
    assert_eq!(switch["agent_id"], agent["id"], "{context}");
    assert_eq!(switch["state"], "in_force", "{context}");
    assert_eq!(refused["decision"], "deny", "{context}");
    assert_eq!(refused["status"], "denied", "{context}");
    assert_eq!(refused["policy_revision"], "not_evaluated", "{context}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .starts_with("kill_switch: this agent is stopped by kill switch"),
        "{context}"
    );
    assert_eq!(released["id"], switch["id"], "{context}");
    assert_eq!(released["state"], "released", "{context}");

    // 8. Ten audit events, each linked to the one before, the first from the genesis; a
    // checkpoint signed over the whole chain so far.
    let events = block(8, 2)[0]["events"].as_array().unwrap().clone();
    let checkpoint = &block(8, 2)[1];
    assert!(
        checkpoint["tree_size"].as_u64().unwrap() >= 10,
        "{checkpoint}\n{context}"
    );
    assert!(
        checkpoint["note"]
            .as_str()
            .unwrap()
            .contains("\n\n\u{2014} aaf-audit "),
        "{checkpoint}\n{context}"
    );
    assert_eq!(events.len(), 10, "{context}");
    assert_eq!(events[0]["prev_hash"], "0".repeat(64), "{context}");
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "{context}");
    }
    assert!(
        events.iter().any(|e| e["type"] == "action.executed"),
        "{context}"
    );
}

/// The output of client block `i`, which must have `lines` lines.
fn lines_of<'a>(outputs: &'a [Vec<Value>], i: usize, lines: usize, context: &str) -> &'a [Value] {
    let output = &outputs[i];
    assert_eq!(output.len(), lines, "block {i}: {output:?}\n{context}");
    output
}

/// The tour's policy set (the starter policy and its one added rule) passes its Rego unit tests.
#[test]
fn the_tour_policies_pass_their_unit_tests() {
    let out = Command::new(AAF)
        .current_dir(repo_root())
        .args(["policy", "test", "examples/tour/policies"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout
            .contains("PASS  data.aaf.tour_test.test_a_charge_to_the_tour_upstream_needs_approval"),
        "{stdout}"
    );
    assert!(stdout.contains("PASS: 4/4"), "{stdout}");
}
