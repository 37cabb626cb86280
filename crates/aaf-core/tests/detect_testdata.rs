//! Checks the SSN and payment card detectors against the third-party examples in
//! `shared/testdata/security/pii_secrets.txt` (Microsoft Presidio's recognizer tests), read in
//! place from the repository's sibling `shared/` folder.
//!
//! File format: `########## TITLE ##########` starts a section, `## ...` starts a subsection
//! whose text says what is expected (`expect MATCH`, `medium match`, `weak/very weak`,
//! `expect NO MATCH`; a `##` line without these words continues the previous one), other
//! lines starting with `#` are comments, and a payload line may end
//! in a comment introduced by whitespace and `#`.

use aaf_core::detect::{has_credit_card, has_pii, has_ssn};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Section {
    CreditCards,
    UsSsn,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Match,
    /// Presidio's "weak" SSN matches (undelimited or half-delimited nine digits): we do not
    /// report them, because every nine-digit ID, amount or phone number would match.
    Weak,
    NoMatch,
    Unspecified,
}

struct Case {
    section: Section,
    expect: Expect,
    line_number: usize,
    text: String,
}

fn parse(contents: &str) -> Vec<Case> {
    let mut section = Section::Other;
    let mut expect = Expect::Unspecified;
    let mut cases = Vec::new();
    for (index, line) in contents.lines().enumerate() {
        if line.starts_with("##########") {
            section = if line.contains("CREDIT CARDS") {
                Section::CreditCards
            } else if line.contains("US SSN") {
                Section::UsSsn
            } else {
                Section::Other
            };
            expect = Expect::Unspecified;
            continue;
        }
        if let Some(header) = line.strip_prefix("##") {
            expect = if header.contains("NO MATCH") {
                Expect::NoMatch
            } else if header.contains("weak") {
                Expect::Weak
            } else if header.contains("MATCH") || header.contains("medium match") {
                Expect::Match
            } else {
                // A continuation of the previous subsection header, or a heading such as
                // `## AWS` in a section without expectations.
                expect
            };
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let text = match line.find(" #") {
            Some(comment) => &line[..comment],
            None => line,
        };
        cases.push(Case {
            section,
            expect,
            line_number: index + 1,
            text: text.trim().to_owned(),
        });
    }
    cases
}

/// Reads `rel` from the shared third-party test data (`aaf_testdata::read`).
fn read_testdata(rel: &str) -> Option<String> {
    aaf_testdata::read(rel)
}

#[test]
#[should_panic(expected = "is required in CI")]
fn missing_testdata_fails_when_required() {
    let dir = missing_dir();
    aaf_testdata::read_in(&dir, "security/pii_secrets.txt", true);
}

#[test]
fn missing_testdata_skips_when_not_required() {
    let dir = missing_dir();
    assert_eq!(
        aaf_testdata::read_in(&dir, "security/pii_secrets.txt", false),
        None
    );
}

/// A directory that does not exist (under the target directory, so nothing is created).
fn missing_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("no-such-testdata-directory")
}

#[test]
fn ssn_and_card_examples_from_presidio() {
    let Some(contents) = read_testdata("security/pii_secrets.txt") else {
        return;
    };
    let cases = parse(&contents);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for case in &cases {
        let value = Value::String(case.text.clone());
        let where_ = format!("pii_secrets.txt:{} {:?}", case.line_number, case.text);
        match (case.section, case.expect) {
            (Section::CreditCards, Expect::Match) => {
                assert!(has_credit_card(&value), "card not detected: {where_}");
                assert!(has_pii(&value), "has_pii missed a card: {where_}");
            }
            (Section::CreditCards, Expect::NoMatch) => {
                assert!(!has_credit_card(&value), "false card: {where_}");
            }
            (Section::UsSsn, Expect::Match) => {
                assert!(has_ssn(&value), "ssn not detected: {where_}");
                assert!(has_pii(&value), "has_pii missed an ssn: {where_}");
            }
            (Section::UsSsn, Expect::Weak | Expect::NoMatch) => {
                assert!(!has_ssn(&value), "false ssn: {where_}");
                assert!(!has_pii(&value), "false pii: {where_}");
            }
            // Emails, phone numbers, IP addresses, keys and tokens are controls here: none is
            // an SSN or a card number.
            (Section::Other, _) => {
                assert!(
                    !has_pii(&value),
                    "false pii in a non-ssn, non-card line: {where_}"
                );
            }
            (section, expect) => panic!("unexpected {section:?}/{expect:?} at {where_}"),
        }
        *counts
            .entry(format!("{:?}/{:?}", case.section, case.expect))
            .or_default() += 1;
    }
    println!("pii_secrets.txt cases checked: {counts:?}");
    // Guard against a format change that silently skips everything.
    assert!(
        counts.get("CreditCards/Match").copied().unwrap_or(0) >= 15,
        "{counts:?}"
    );
    assert!(
        counts.get("CreditCards/NoMatch").copied().unwrap_or(0) >= 4,
        "{counts:?}"
    );
    assert!(
        counts.get("UsSsn/Match").copied().unwrap_or(0) >= 4,
        "{counts:?}"
    );
    assert!(
        counts.get("UsSsn/NoMatch").copied().unwrap_or(0) >= 7,
        "{counts:?}"
    );
    assert!(
        counts.get("Other/Unspecified").copied().unwrap_or(0) >= 40,
        "{counts:?}"
    );
}

#[test]
fn payloads_inside_json_documents() {
    let action = serde_json::json!({
        "tool": "http_proxy",
        "params": {
            "url": "https://api.example.com/customers",
            "body": {"customer": {"name": "Jane", "card": "4012 8888 8888 1881"}},
        },
    });
    assert!(has_credit_card(&action));
    assert!(!has_ssn(&action));
    let action = serde_json::json!({"params": {"rows": [["id", 1], ["ssn", "078-05-1123"]]}});
    assert!(has_ssn(&action));
    assert!(!has_credit_card(&action));
}
