//! Runs the RFC 6962 Merkle proof test vectors (transparency-dev/merkle's `testdata`, Apache
//! 2.0) against `aaf_core::evidence::merkle`, read in place from
//! `shared/testdata/merkle` beside the repository:
//!
//! - `inclusion/<case>/*.json`, `inclusion/additional/<n>/*.json`,
//!   `inclusion/single-entry/*.json`: `leafIdx`, `treeSize`, `root`, `leafHash`, `proof`,
//!   `desc`, `wantErr`;
//! - `consistency/<case>/*.json`, `consistency/additional/*.json`: `size1`, `size2`, `root1`,
//!   `root2`, `proof`, `desc`, `wantErr`.
//!
//! Hashes are base64; `proof` may be `null` (no hashes). Every vector must give its `wantErr`
//! outcome, and `tlog_tiles`' own `check_record` / `check_tree` must agree with ours on every
//! vector (ours adds only argument checks in front of them). A run that finds no vector fails;
//! missing data fails in CI and skips with a NOTICE elsewhere (`aaf-testdata`).
//!
//! Some vectors use byte strings that are not 32 bytes long as wrong or "don't care" hashes
//! (`""`, 9- and 12-byte strings). Our API takes `[u8; 32]`, so such a value cannot reach the
//! verifier as it is. The harness treats it as the reference verifier the vectors were written
//! for (transparency-dev/merkle's `proof` package) does: a leaf hash of the wrong size is an
//! error before any hashing (`RootFromInclusionProof` checks it), while roots and proof hashes
//! are opaque bytes there (compared, or hashed, as they are), which the harness models by a
//! 32-byte stand-in that no real hash equals in practice (`SHA-256("not a 32-byte hash" ||
//! bytes)`): equal placeholders stay equal and different ones different. Every vector with
//! such a value expects an error except one (`consistency/additional`, "sizes are equal (one)
//! and proof is empty", whose equal roots are the 12 bytes "don't care 2"), whose point, that
//! equal sizes need an empty proof and equal roots, holds with the stand-in.

// A test: a vector that cannot be read or does not hold is a failure, which is a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use aaf_core::evidence::merkle::{verify_consistency, verify_inclusion, Hash};
use base64::prelude::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

struct Decoded {
    hash: Hash,
    placeholder: bool,
}

fn decode(value: &Value, what: &str, file: &Path) -> Decoded {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{}: {what} is not a string", file.display()));
    let bytes = BASE64_STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("{}: {what} is not base64: {e}", file.display()));
    match <Hash>::try_from(bytes.as_slice()) {
        Ok(hash) => Decoded {
            hash,
            placeholder: false,
        },
        Err(_) => Decoded {
            hash: Sha256::new()
                .chain_update(b"not a 32-byte hash")
                .chain_update(&bytes)
                .finalize()
                .into(),
            placeholder: true,
        },
    }
}

fn decode_proof(value: &Value, file: &Path, placeholders: &mut bool) -> Vec<Hash> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let d = decode(item, "proof hash", file);
                *placeholders |= d.placeholder;
                d.hash
            })
            .collect(),
        other => panic!("{}: proof is {other}", file.display()),
    }
}

fn number(v: &Value, key: &str, file: &Path) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: {key} is not an unsigned integer", file.display()))
}

/// Every `*.json` below `dir`, sorted.
fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
}

fn read_json(file: &Path) -> Value {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

struct Tally {
    passed: usize,
    happy: usize,
    placeholders: usize,
    failures: Vec<String>,
}

impl Tally {
    /// Counts one vector: ours and tlog_tiles' `checker` must both give `want_err`.
    fn outcome<E: std::fmt::Debug, F: std::fmt::Debug>(
        &mut self,
        file: &Path,
        desc: &str,
        want_err: bool,
        got: &Result<(), E>,
        tlog: &Result<(), F>,
        checker: &str,
    ) {
        if got.is_err() != want_err {
            self.failures.push(format!(
                "{} ({desc}): wantErr {want_err}, got {got:?}",
                file.display()
            ));
        } else if tlog.is_err() != want_err {
            self.failures.push(format!(
                "{} ({desc}): tlog_tiles::{checker} disagrees: {tlog:?}",
                file.display()
            ));
        } else {
            self.passed += 1;
            self.happy += usize::from(!want_err);
        }
    }

    fn new() -> Self {
        Tally {
            passed: 0,
            happy: 0,
            placeholders: 0,
            failures: Vec::new(),
        }
    }
}

fn run_inclusion(file: &Path, tally: &mut Tally) {
    let v = read_json(file);
    let index = number(&v, "leafIdx", file);
    let size = number(&v, "treeSize", file);
    let root = decode(&v["root"], "root", file);
    let leaf = decode(&v["leafHash"], "leafHash", file);
    let mut placeholders = root.placeholder || leaf.placeholder;
    let proof = decode_proof(&v["proof"], file, &mut placeholders);
    let want_err = v["wantErr"].as_bool().expect("wantErr");
    let (got, tlog) = if leaf.placeholder {
        let refused = Err("leafHash is not 32 bytes".to_owned());
        (refused.clone(), refused)
    } else {
        let tlog_proof: Vec<tlog_tiles::Hash> =
            proof.iter().copied().map(tlog_tiles::Hash).collect();
        (
            verify_inclusion(index, size, &leaf.hash, &proof, &root.hash)
                .map_err(|e| format!("{e:?}")),
            tlog_tiles::check_record(
                &tlog_proof,
                size,
                tlog_tiles::Hash(root.hash),
                index,
                tlog_tiles::Hash(leaf.hash),
            )
            .map_err(|e| format!("{e:?}")),
        )
    };
    tally.placeholders += usize::from(placeholders);
    let desc = v["desc"].as_str().unwrap_or("");
    tally.outcome(file, desc, want_err, &got, &tlog, "check_record");
}

fn run_consistency(file: &Path, tally: &mut Tally) {
    let v = read_json(file);
    let size1 = number(&v, "size1", file);
    let size2 = number(&v, "size2", file);
    let root1 = decode(&v["root1"], "root1", file);
    let root2 = decode(&v["root2"], "root2", file);
    let mut placeholders = root1.placeholder || root2.placeholder;
    let proof = decode_proof(&v["proof"], file, &mut placeholders);
    let want_err = v["wantErr"].as_bool().expect("wantErr");
    let got = verify_consistency(size1, size2, &root1.hash, &root2.hash, &proof);
    let tlog_proof: Vec<tlog_tiles::Hash> = proof.iter().copied().map(tlog_tiles::Hash).collect();
    let tlog = tlog_tiles::check_tree(
        &tlog_proof,
        size2,
        tlog_tiles::Hash(root2.hash),
        size1,
        tlog_tiles::Hash(root1.hash),
    );
    tally.placeholders += usize::from(placeholders);
    let desc = v["desc"].as_str().unwrap_or("");
    tally.outcome(file, desc, want_err, &got, &tlog, "check_tree");
}

/// The vector directory, or `None` (with a NOTICE) when it is missing outside CI.
fn merkle_dir() -> Option<PathBuf> {
    let dir = aaf_testdata::dir().join("merkle");
    if dir.join("inclusion").is_dir() && dir.join("consistency").is_dir() {
        return Some(dir);
    }
    // Reports the missing directory: fails in CI, prints a NOTICE elsewhere.
    aaf_testdata::read("merkle/inclusion/1/happy-path.json")?;
    panic!(
        "{} exists only in part: inclusion/ and consistency/ are both needed",
        dir.display()
    );
}

#[test]
fn rfc6962_test_vectors() {
    let Some(dir) = merkle_dir() else {
        return;
    };

    let mut inclusion_files = Vec::new();
    json_files(&dir.join("inclusion"), &mut inclusion_files);
    let mut consistency_files = Vec::new();
    json_files(&dir.join("consistency"), &mut consistency_files);

    let mut inclusion = Tally::new();
    for file in &inclusion_files {
        run_inclusion(file, &mut inclusion);
    }
    let mut consistency = Tally::new();
    for file in &consistency_files {
        run_consistency(file, &mut consistency);
    }

    println!(
        "merkle vectors: inclusion {}/{} passed ({} valid proofs, {} with non-32-byte placeholders), \
         consistency {}/{} passed ({} valid proofs, {} with non-32-byte placeholders)",
        inclusion.passed,
        inclusion_files.len(),
        inclusion.happy,
        inclusion.placeholders,
        consistency.passed,
        consistency_files.len(),
        consistency.happy,
        consistency.placeholders,
    );
    let failures: Vec<&String> = inclusion
        .failures
        .iter()
        .chain(&consistency.failures)
        .collect();
    assert!(
        failures.is_empty(),
        "{} vectors failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A run that checked nothing, or no valid proof, proves nothing.
    assert!(
        inclusion.passed > 0 && consistency.passed > 0,
        "no vectors found under {}",
        dir.display()
    );
    assert!(
        inclusion.happy > 0 && consistency.happy > 0,
        "no vector with a valid proof under {}",
        dir.display()
    );
    // Every sub-folder the data set has: the numbered cases, `additional` and `single-entry`.
    for sub in [
        "inclusion/0",
        "inclusion/4",
        "inclusion/additional",
        "inclusion/single-entry",
        "consistency/0",
        "consistency/4",
        "consistency/additional",
    ] {
        let prefix = dir.join(sub);
        assert!(
            inclusion_files
                .iter()
                .chain(&consistency_files)
                .any(|f| f.starts_with(&prefix)),
            "no vector read from {}",
            prefix.display()
        );
    }
}
