//! `docs/agents.md` stays true: its Python signer is run and its output verified, and its
//! signature base example is what the crate builds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use aaf_httpsig::{
    content_digest, signature_base, verify_request, RequestParts, SignatureParam, Signer,
    VerifyPolicy, DEFAULT_COMPONENTS,
};
use ed25519_dalek::SigningKey;
use http::{HeaderMap, HeaderValue, Method};

fn agents_md() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/agents.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced code block between `<!-- aaf-httpsig:{name}-begin -->` and `...-end -->`.
fn block(doc: &str, name: &str) -> String {
    let begin = format!("<!-- aaf-httpsig:{name}-begin -->");
    let end = format!("<!-- aaf-httpsig:{name}-end -->");
    let start = doc.find(&begin).unwrap_or_else(|| panic!("no {begin}")) + begin.len();
    let stop = start
        + doc[start..]
            .find(&end)
            .unwrap_or_else(|| panic!("no {end}"));
    let fenced = doc[start..stop].trim();
    let first_newline = fenced.find('\n').unwrap();
    assert!(
        fenced[..first_newline].starts_with("```"),
        "{name}: not a fenced block"
    );
    let body = fenced[first_newline + 1..]
        .strip_suffix("```")
        .unwrap_or_else(|| panic!("{name}: unterminated fence"));
    body.strip_suffix('\n').unwrap_or(body).to_owned()
}

const SEED: [u8; 32] = [
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];
const KEY_ID: &str = "0193f1c2-agent";
const URL: &str = "https://aaf.example.com/v1/actions?dry_run=1";
const BODY: &str =
    r#"{"tool":"http_proxy","operation":"GET","params":{"url":"https://api.example.com/"}}"#;
const CREATED: i64 = 1_700_000_000;
const NONCE: &str = "9d0f6c0a5e1b4c2d8f7a3b6e1c0d2f4a";

/// Prints a SKIPPED notice straight to stderr, past the test harness's output capture, so it
/// shows in CI logs.
fn skipped(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {why}; the docs/agents.md Python example was not run"
    );
}

/// Runs `script` with python3; `None` (after a SKIPPED notice) when python3 or `cryptography`
/// is not installed.
fn run_python(script: &str) -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import cryptography"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Err(e) => {
            skipped(&format!("python3 is not available ({e})"));
            return None;
        }
        Ok(status) if !status.success() => {
            skipped(
                "the Python `cryptography` package is not installed (pip install cryptography)",
            );
            return None;
        }
        Ok(_) => {}
    }
    let mut child = Command::new("python3")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn python_example_signs_what_the_verifier_accepts() {
    let code = block(&agents_md(), "python");
    assert!(
        code.contains("def sign_request("),
        "the block defines sign_request"
    );
    let seed_hex: String = SEED.iter().map(|b| format!("{b:02x}")).collect();
    let driver = format!(
        r#"

key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex("{seed_hex}"))
headers = sign_request(key, "{KEY_ID}", "post", "{URL}", {BODY:?}.encode("ascii"), created={CREATED}, nonce="{NONCE}")
for name, value in headers.items():
    print(name + ": " + value)
"#
    );
    let Some(stdout) = run_python(&format!("{code}\n{driver}")) else {
        return;
    };

    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let mut seen = Vec::new();
    for line in stdout.lines() {
        let (name, value) = line.split_once(": ").unwrap();
        seen.push(name.to_ascii_lowercase());
        headers.insert(
            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    assert_eq!(seen, ["content-digest", "signature-input", "signature"]);

    let key = SigningKey::from_bytes(&SEED).verifying_key();
    let verified = verify_request(
        &Method::POST,
        URL,
        &headers,
        BODY.as_bytes(),
        &VerifyPolicy::new(CREATED + 1),
        |id| (id == KEY_ID).then_some(key),
    )
    .unwrap();
    assert_eq!(verified.key_id, KEY_ID);
    assert_eq!(verified.created, CREATED);
    assert_eq!(verified.nonce.as_deref(), Some(NONCE));

    // Ed25519 is deterministic: the Rust signer produces the very same headers.
    let rust = Signer::new(KEY_ID, SigningKey::from_bytes(&SEED))
        .sign(
            &Method::POST,
            URL,
            &HeaderMap::new(),
            BODY.as_bytes(),
            CREATED,
            Some(NONCE),
        )
        .unwrap();
    assert_eq!(headers["content-digest"], rust.content_digest.as_str());
    assert_eq!(headers["signature-input"], rust.signature_input.as_str());
    assert_eq!(headers["signature"], rust.signature.as_str());

    // And a changed body is still caught.
    assert!(verify_request(
        &Method::POST,
        URL,
        &headers,
        b"{}",
        &VerifyPolicy::new(CREATED + 1),
        |_| Some(key),
    )
    .is_err());
}

#[test]
fn documented_signature_base_is_what_the_crate_builds() {
    let documented = block(&agents_md(), "base");
    let body = br#"{"tool":"http_proxy","operation":"GET"}"#;
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-digest",
        HeaderValue::from_str(&content_digest(body)).unwrap(),
    );
    let built = signature_base(
        &RequestParts {
            method: &Method::POST,
            target_uri: "https://aaf.example.com/v1/actions",
            headers: &headers,
        },
        &DEFAULT_COMPONENTS,
        &[
            SignatureParam::Created(CREATED),
            SignatureParam::KeyId(KEY_ID.into()),
            SignatureParam::Alg("ed25519".into()),
            SignatureParam::Nonce(NONCE.into()),
        ],
    )
    .unwrap();
    assert_eq!(documented, built);
}
