//! The reference tables of the documentation, checked against the code they describe (as
//! `crates/aaf/tests/integration/rbac.rs` checks the permission table of `docs/security.md`):
//!
//! * `docs/audit.md`'s event-type table lists exactly the types the code writes
//!   (`aaf_core::audit::event_types::ALL`), its retired-type table exactly
//!   `event_types::RETIRED`; every type constant is used by code that writes events, and no
//!   code spells an event type as a string of its own;
//! * `docs/configuration.md`'s key table lists exactly the keys `aaf serve` accepts, each with
//!   the default the code has;
//! * every repository path the documents cite exists.
//!
//! Each failure names the key, type or path and the file that is missing it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use aaf_core::audit::event_types;
use aaf_core::secrets::Secret;
use aaf_server::config::Config;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The rows of the first Markdown table after the line `heading`: each row's cells, trimmed,
/// without the header and separator rows.
fn table(doc: &str, file: &str, heading: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| l.trim() != heading);
    assert!(lines.next().is_some(), "{file} has no heading {heading:?}");
    let rows: Vec<Vec<String>> = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert!(!rows.is_empty(), "{file}: no table after {heading:?}");
    rows
}

/// The text of a cell's first code span (`` `x` `` → `x`), or its first word.
fn first_code(cell: &str) -> String {
    match cell.strip_prefix('`').and_then(|rest| rest.split_once('`')) {
        Some((code, _)) => code.to_string(),
        None => cell
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// Compares two sets of names, failing with every name missing from either side.
fn same_names(
    code: &BTreeSet<String>,
    docs: &BTreeSet<String>,
    what: &str,
    file: &str,
    source: &str,
) {
    let undocumented: Vec<&String> = code.difference(docs).collect();
    let unknown: Vec<&String> = docs.difference(code).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "{what} missing from {file} (they exist in {source}): {undocumented:?}\n\
         {what} documented in {file} that {source} does not have: {unknown:?}"
    );
}

#[test]
fn the_audit_event_table_lists_exactly_the_types_the_code_writes() {
    let file = "docs/audit.md";
    let doc = read(file);
    let documented: BTreeSet<String> = table(&doc, file, "## Event types")
        .iter()
        .map(|row| first_code(&row[0]))
        .collect();
    let written: BTreeSet<String> = event_types::ALL.iter().map(|t| t.to_string()).collect();
    same_names(
        &written,
        &documented,
        "event types",
        file,
        "aaf_core::audit::event_types::ALL",
    );

    let retired_documented: BTreeSet<String> = table(&doc, file, "### Retired event types")
        .iter()
        .map(|row| first_code(&row[0]))
        .collect();
    let retired: BTreeSet<String> = event_types::RETIRED.iter().map(|t| t.to_string()).collect();
    same_names(
        &retired,
        &retired_documented,
        "retired event types",
        file,
        "aaf_core::audit::event_types::RETIRED",
    );
}

/// The non-test part of every Rust source file of the workspace's crates (a file's tests
/// start at its first `#[cfg(test)]` line, by the project's convention), by path.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code: Vec<&str> = text
                    .lines()
                    .take_while(|l| l.trim() != "#[cfg(test)]")
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect();
                let rel = path.strip_prefix(root()).unwrap_or(&path);
                out.insert(rel.display().to_string(), code.join("\n"));
            }
        }
    }
    let mut out = BTreeMap::new();
    for krate in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            walk(&src, &mut out);
        }
    }
    assert!(out.len() > 20, "found only {} source files", out.len());
    out
}

#[test]
fn every_event_type_is_written_by_the_code_and_only_through_its_constant() {
    let sources = sources();
    let audit_rs = Path::new("crates/aaf-core/src/audit.rs")
        .display()
        .to_string();
    for (name, value) in event_types::NAMES {
        let needle = format!("event_types::{name}");
        let used = sources.iter().any(|(path, code)| {
            *path != audit_rs
                && code.match_indices(&needle).any(|(at, _)| {
                    !code[at + needle.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                })
        });
        assert!(
            used,
            "event type {value} ({needle}) is documented in docs/audit.md but no code writes it: \
             remove it from event_types (listing it in RETIRED if chains may hold it)"
        );
    }

    // A type spelt as a string bypasses the list: every string of the form `<family>.<name>`,
    // for the families of the event types, must be an event type or a webhook event name.
    let families: BTreeSet<&str> = event_types::ALL
        .iter()
        .chain(event_types::RETIRED)
        .filter_map(|t| t.split_once('.').map(|(f, _)| f))
        .collect();
    let mut strays = Vec::new();
    for (path, code) in &sources {
        for family in &families {
            let needle = format!("\"{family}.");
            for (at, _) in code.match_indices(&needle) {
                let rest = &code[at + needle.len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                    .unwrap_or(rest.len());
                if !rest[end..].starts_with('"') || end == 0 {
                    continue;
                }
                let name = format!("{family}.{}", &rest[..end]);
                let retired_here =
                    *path == audit_rs && event_types::RETIRED.contains(&name.as_str());
                if !event_types::ALL.contains(&name.as_str())
                    && !aaf_server::webhooks::EVENTS.contains(&name.as_str())
                    && !retired_here
                {
                    strays.push(format!("{path}: \"{name}\""));
                }
            }
        }
    }
    assert!(
        strays.is_empty(),
        "strings that look like audit event types but are not in aaf_core::audit::event_types \
         (add a constant there and document it in docs/audit.md): {strays:?}"
    );
}

/// `value` as `docs/configuration.md` writes a default: strings bare, `[]`, `{}`, `unset`.
fn render_default(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "[]".to_string(),
        Value::Object(o) if o.is_empty() => "{}".to_string(),
        other => other.to_string(),
    }
}

/// Dotted keys of a serialised configuration: nested non-empty objects are sections, the
/// rest are values.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

#[test]
fn the_configuration_reference_lists_every_key_with_its_default() {
    let file = "docs/configuration.md";
    let mut defaults = BTreeMap::new();
    flatten(
        "",
        &serde_json::to_value(Config::default()).unwrap(),
        &mut defaults,
    );
    // Keys that the default configuration leaves out when serialised (unset secrets).
    let all = Config {
        admin_token: Some(Secret::new("x".repeat(32))),
        ..Config::default()
    };
    let mut every = BTreeMap::new();
    flatten("", &serde_json::to_value(&all).unwrap(), &mut every);
    for key in every.keys() {
        defaults.entry(key.clone()).or_insert(Value::Null);
    }

    let rows = table(&read(file), file, "## Keys");
    let documented: BTreeMap<String, String> = rows
        .iter()
        .map(|row| (first_code(&row[0]), first_code(&row[1])))
        .collect();
    assert_eq!(documented.len(), rows.len(), "{file} lists a key twice");
    same_names(
        &defaults.keys().cloned().collect(),
        &documented.keys().cloned().collect(),
        "configuration keys",
        file,
        "aaf_server::config::Config",
    );
    for (key, value) in &defaults {
        let want = render_default(value);
        assert_eq!(
            documented[key], want,
            "{file}: the default of {key} is `{want}` in aaf_server::config::Config"
        );
    }
    // Every documented key is accepted by the loader (unknown keys are errors there).
    for key in documented.keys() {
        let var = format!("AAF_{}", key.replace('.', "__").to_uppercase());
        let value = render_default(&defaults[key]);
        let value = if key == "admin_token" {
            "x".repeat(32)
        } else if value == "unset" {
            continue;
        } else {
            value
        };
        let loaded = Config::load(None, [(var.clone(), value.clone())], &Default::default());
        assert!(loaded.is_ok(), "{var}={value}: {:?}", loaded.err());
    }
}

#[test]
fn every_repository_path_the_documents_cite_exists() {
    let mut files = vec![
        "README.md".to_string(),
        "ARCHITECTURE.md".to_string(),
        "examples/policies/README.md".to_string(),
    ];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(format!(
                "docs/{}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    let mut missing = Vec::new();
    let mut cited = 0;
    for file in &files {
        let doc = read(file);
        for span in doc.split('`').skip(1).step_by(2) {
            let roots = ["crates/", "examples/", "docs/", "policies/", "bench/"];
            if !roots.iter().any(|r| span.starts_with(r))
                || span.contains(['<', '*', '{', ' ', '$'])
            {
                continue;
            }
            let path = span.split(':').next().unwrap_or(span);
            cited += 1;
            if !root().join(path).exists() {
                missing.push(format!("{file} cites {path}"));
            }
        }
    }
    assert!(cited > 10, "only {cited} cited paths found");
    assert!(missing.is_empty(), "paths that do not exist: {missing:?}");
}
