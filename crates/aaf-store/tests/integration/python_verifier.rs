//! The Python verifier published in docs/audit.md must accept AAF's own exports and reject
//! tampered ones. Runs when `python3` is installed (and says so when it is not).

use std::path::{Path, PathBuf};
use std::process::Command;

use aaf_core::audit::ChainedEvent;
use aaf_store::{NewEvent, WriteUnit};
use serde_json::{json, Value};

use crate::common::{action_unit, assert_all_chains_verify, org_with_agent, ts, TestDb};

/// The first ```python block after the "Verifying an export with Python" heading.
fn python_snippet() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/audit.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let section = doc
        .split("## Verifying an export with Python")
        .nth(1)
        .expect("docs/audit.md has no Python verification section");
    let start = section.find("```python\n").expect("no python block") + "```python\n".len();
    let end = start
        + section[start..]
            .find("\n```")
            .expect("unterminated python block");
    section[start..end].to_string()
}

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the snippet on `export`; returns (success, stdout).
fn run_verifier(script: &Path, export: &Value, dir: &Path, args: &[String]) -> (bool, String) {
    run_verifier_on_text(
        script,
        &serde_json::to_string_pretty(export).unwrap(),
        dir,
        args,
    )
}

/// Runs the snippet on an export given as text; returns (success, stdout).
fn run_verifier_on_text(
    script: &Path,
    export: &str,
    dir: &Path,
    args: &[String],
) -> (bool, String) {
    let file: PathBuf = dir.join("export.json");
    std::fs::write(&file, export).unwrap();
    let output = Command::new("python3")
        .arg(script)
        .arg(&file)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.is_empty() || !output.status.success(),
        "python wrote to stderr: {stderr}"
    );
    assert!(!stderr.contains("Traceback"), "python crashed: {stderr}");
    (output.status.success(), stdout.trim().to_string())
}

/// Awkward doubles: every formatting branch of RFC 8785 and random bit patterns.
// 333333333.33333329 is RFC 8785's own example of an input with more digits than a double.
#[allow(clippy::excessive_precision)]
fn awkward_numbers() -> Vec<Value> {
    let mut numbers = vec![
        json!(0.0),
        json!(-0.0),
        json!(1.0),
        json!(-1.5),
        json!(0.1 + 0.2),
        json!(1e21),
        json!(-1e21),
        json!(2.5e21),
        json!(1e-6),
        json!(1e-7),
        json!(1.5e-7),
        json!(5e-324),
        json!(f64::MAX),
        json!(f64::MIN_POSITIVE),
        json!(333333333.33333329),
        json!(4.5),
        json!(2e-3),
        json!(1e30),
        json!(9007199254740991u64),
        json!(-9007199254740991i64),
        json!(9007199254740991.0),
        json!(42),
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    while numbers.len() < 400 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let x = f64::from_bits(state);
        // Only numbers with an exact RFC 8785 form occur in events: doubles from 2^53 up
        // to 10^21 are refused (the tampering checks below feed such numbers to the script).
        if x.is_finite() && !(2f64.powi(53)..1e21).contains(&x.abs()) {
            numbers.push(json!(x));
        }
        // And decimal-looking values, whose shortest digits are short.
        let decimal = (state % 1_000_000) as f64 / 10f64.powi((state % 23) as i32 - 8);
        numbers.push(json!(decimal));
    }
    numbers
}

// Both backends: the verifier reads exports (what `list_audit` returns), not the database.
both_backends!(python_snippet_verifies_exports_and_catches_tampering);
async fn python_snippet_verifies_exports_and_catches_tampering(db: TestDb) {
    if !python_available() {
        println!("python3 not found: the docs/audit.md verifier was not exercised");
        return;
    }
    let (org, agent) = org_with_agent(&db.store, "acme").await;
    let mut units: Vec<WriteUnit> = (0..5)
        .map(|i| action_unit(&org, &agent, &format!("a{i}"), i))
        .collect();
    let event = |n: u64, data: Value| NewEvent {
        org_id: org.id.clone(),
        ts: ts(n),
        agent_id: None,
        action_id: None,
        event_type: "action.decided".into(),
        data,
    };
    units.push(WriteUnit {
        mutations: Vec::new(),
        action: None,
        events: vec![
            event(100, json!({"numbers": awkward_numbers()})),
            event(
                101,
                json!({
                    "€": 1, "\r": 2, "\u{fb33}": 3, "1": 4, "😀": 5, "\u{80}": 6, "ö": 7,
                    "z": {"b": [true, false, null], "a": ""},
                    "text": "quote\" backslash\\ slash/ nl\n tab\t nul\u{0} us\u{1f} del\u{7f} \u{2028} 日本 😀",
                }),
            ),
            event(102, json!("a bare string")),
            event(103, json!([])),
            event(104, json!({"amount": 2e21})),
        ],
    });
    db.store.commit(&units).await.unwrap();
    assert_all_chains_verify(&db.store).await;

    let events: Vec<ChainedEvent> = db.store.list_audit(&org.id, 0, 1000).await.unwrap();
    let last = events.last().unwrap().clone();
    let page = |events: &[ChainedEvent]| json!({"chain": org.id, "events": events});
    let export = page(&events);

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("verify_aaf_audit.py");
    std::fs::write(&script, python_snippet()).unwrap();
    let head_args = |seq: u64, hash: &str| vec![seq.to_string(), hash.to_string()];

    // An intact export verifies, with and without the kept head.
    let (ok, out) = run_verifier(&script, &export, dir.path(), &[]);
    assert!(ok, "{out}");
    assert_eq!(
        out,
        format!(
            "ok: chain {}, events 1..{}, last hash {}",
            org.id,
            last.event.seq,
            hex::encode(last.hash)
        )
    );
    let (ok, out) = run_verifier(
        &script,
        &export,
        dir.path(),
        &head_args(last.event.seq, &hex::encode(last.hash)),
    );
    assert!(ok, "{out}");
    // Pages given as an array, and a partial export anchored at its first prev_hash.
    let pages = json!([page(&events[..7]), page(&events[7..])]);
    let (ok, out) = run_verifier(&script, &pages, dir.path(), &[]);
    assert!(ok, "{out}");
    let (ok, out) = run_verifier(&script, &page(&events[4..]), dir.path(), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("events 5.."), "{out}");

    // Tampering is reported at the first bad seq.
    let mut changed = export.clone();
    changed["events"][8]["data"]["decision"] = json!("deny");
    let (ok, out) = run_verifier(&script, &changed, dir.path(), &[]);
    assert!(!ok);
    assert_eq!(
        out,
        "BROKEN: seq 9: the payload does not match its commitment: the event was modified"
    );
    // A withheld payload (removed by retention, or its key destroyed) still verifies: the
    // hash covers its commitment; a changed commitment does not.
    let mut withheld = export.clone();
    withheld["events"][8]["data"] = Value::Null;
    withheld["events"][8]["payload"]["salt"] = Value::Null;
    withheld["events"][8]["payload"]["withheld"] = json!("payload removed by retention");
    let (ok, out) = run_verifier(&script, &withheld, dir.path(), &[]);
    assert!(ok, "{out}");
    withheld["events"][8]["payload"]["sha256"] = json!("00".repeat(32));
    let (ok, out) = run_verifier(&script, &withheld, dir.path(), &[]);
    assert!(!ok);
    assert_eq!(out, "BROKEN: seq 9: hash mismatch: the event was modified");

    let mut deleted = export.clone();
    deleted["events"].as_array_mut().unwrap().remove(5);
    let (ok, out) = run_verifier(&script, &deleted, dir.path(), &[]);
    assert!(!ok);
    assert!(out.starts_with("BROKEN: seq 6: event missing"), "{out}");

    let mut swapped = export.clone();
    swapped["events"].as_array_mut().unwrap().swap(3, 4);
    let (ok, out) = run_verifier(&script, &swapped, dir.path(), &[]);
    assert!(!ok);
    assert!(out.starts_with("BROKEN: seq 4:"), "{out}");

    // A number without an exact RFC 8785 form: `2000000000000000000001` parses to the
    // double 2e21 (so its rounded form hashed alike and the old script passed it); AAF
    // refuses such numbers, and the script agrees.
    let text = serde_json::to_string(&export).unwrap();
    assert_eq!(text.matches(r#""amount":2e+21"#).count(), 1);
    let (ok, out) = run_verifier_on_text(&script, &text, dir.path(), &[]);
    assert!(ok, "{out}");
    for changed in ["2000000000000000000001", "4000000000000000014", "4e18"] {
        let tampered = text.replace(r#""amount":2e+21"#, &format!(r#""amount":{changed}"#));
        let (ok, out) = run_verifier_on_text(&script, &tampered, dir.path(), &[]);
        assert!(!ok, "{changed}: {out}");
        let seq = events.len() as u64;
        assert!(
            out.starts_with(&format!("BROKEN: seq {seq}: "))
                && out.contains("no exact RFC 8785 form")
                && out.ends_with("the event was modified"),
            "{changed}: {out}"
        );
    }

    // Truncation is caught against a kept head.
    let truncated = page(&events[..events.len() - 2]);
    let (ok, out) = run_verifier(
        &script,
        &truncated,
        dir.path(),
        &head_args(last.event.seq, &hex::encode(last.hash)),
    );
    assert!(!ok);
    assert!(out.contains("before the head"), "{out}");
    let (ok, out) = run_verifier(
        &script,
        &export,
        dir.path(),
        &head_args(last.event.seq, &"ab".repeat(32)),
    );
    assert!(!ok);
    assert!(out.contains("rewritten"), "{out}");
}
