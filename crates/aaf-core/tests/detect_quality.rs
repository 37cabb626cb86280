//! Measures the detectors against the third-party material in `shared/testdata/security/`
//! (read in place through `aaf-testdata`; missing data fails the test in CI) and prints
//! precision, recall and false-positive rates per family and per group; `docs/detection.md`
//! records the numbers. Run with `cargo test -p aaf-core --test detect_quality -- --nocapture`
//! to see them.
//!
//! Expectations come from the files' own markup, never from the text of a line:
//!
//! - `pii_secrets.txt`: a `##########` header starts a section (credit cards, US SSN,
//!   email/phone/IP: personal data; cloud/API keys: secrets). A `##` subheader saying
//!   `expect MATCH`/`medium match`, `expect NO MATCH` or `weak` sets the expectation of the
//!   lines below it; other `##` lines name a group (`## AWS`). Where no subheader sets it, a
//!   line's trailing comment does: `NO MATCH`, `NO flag`, `should NOT flag` or `fp` mean
//!   must-not-match, `policy choice` means ambiguous (not scored, printed), anything else
//!   (`flag`, `tp`, a source reference) must-match. Presidio's "weak" SSN lines are not
//!   scored (we do not report undelimited SSNs; see `detect::pii`). A line is scored for its
//!   section's family only (`author = "james.fake@ymail.com"` is a secret-rule false positive
//!   and, rightly, an email).
//! - `prompt_injection.txt`: lines starting `BENIGN: ` are benign controls, other non-comment
//!   lines attacks; a literal `\n` in a line is a newline.
//! - `path_traversal.txt`: every non-comment line is an attack.

use std::collections::BTreeMap;

use aaf_core::detect::{scan_text, DetectorSet, Finding, Kind, ScanOptions};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Match,
    NoMatch,
    Weak,
    Ambiguous,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    Pii,
    Secret,
}

struct Case {
    family: Family,
    section: String,
    group: String,
    expect: Expect,
    line: usize,
    text: String,
}

fn comment_expectation(comment: &str) -> Expect {
    let lower = comment.to_ascii_lowercase();
    let has_fp_word = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "fp" || w == "fps");
    if lower.contains("policy choice") {
        Expect::Ambiguous
    } else if comment.contains("NO MATCH")
        || comment.contains("NO flag")
        || comment.contains("should NOT flag")
        || has_fp_word
    {
        Expect::NoMatch
    } else {
        Expect::Match
    }
}

fn parse_pii_secrets(contents: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut family = None;
    let mut section = String::new();
    let mut group = String::new();
    let mut expect: Option<Expect> = None;
    for (index, line) in contents.lines().enumerate() {
        if let Some(title) = line.strip_prefix("##########") {
            let title = title.trim_matches(|c: char| c == '#' || c.is_whitespace());
            section = title.split(" [").next().unwrap_or(title).to_string();
            family = if title.contains("KEYS") {
                Some(Family::Secret)
            } else {
                Some(Family::Pii)
            };
            group = section.clone();
            expect = None;
            continue;
        }
        if let Some(header) = line.strip_prefix("##") {
            if header.contains("NO MATCH") {
                expect = Some(Expect::NoMatch);
            } else if header.contains("weak") {
                expect = Some(Expect::Weak);
            } else if header.contains("MATCH") || header.contains("medium match") {
                expect = Some(Expect::Match);
            } else if !header.starts_with("  ") {
                // A group heading (`## AWS`), not a continuation line.
                group = header.trim().to_string();
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(family) = family else {
            continue;
        };
        let (payload, comment) = match line.find(" #") {
            Some(at) => (&line[..at], &line[at..]),
            None => (line, ""),
        };
        cases.push(Case {
            family,
            section: section.clone(),
            group: group.clone(),
            expect: expect.unwrap_or_else(|| comment_expectation(comment)),
            line: index + 1,
            text: payload.trim().to_string(),
        });
    }
    cases
}

#[derive(Default, Debug)]
struct Score {
    must_match: usize,
    caught: usize,
    must_not_match: usize,
    false_positives: usize,
}

impl Score {
    fn add(&mut self, expect_match: bool, flagged: bool) {
        if expect_match {
            self.must_match += 1;
            self.caught += usize::from(flagged);
        } else {
            self.must_not_match += 1;
            self.false_positives += usize::from(flagged);
        }
    }
    fn recall(&self) -> f64 {
        ratio(self.caught, self.must_match)
    }
    fn fp_rate(&self) -> f64 {
        ratio(self.false_positives, self.must_not_match)
    }
    fn precision(&self) -> f64 {
        ratio(self.caught, self.caught + self.false_positives)
    }
    fn row(&self, name: &str) -> String {
        format!(
            "| {name} | {}/{} | {:.3} | {}/{} | {:.3} | {:.3} |",
            self.caught,
            self.must_match,
            self.recall(),
            self.false_positives,
            self.must_not_match,
            self.fp_rate(),
            self.precision()
        )
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

const TABLE_HEAD: &str = "| group | caught | recall | false positives | FP rate | precision |\n|---|---|---|---|---|---|";

fn kinds_found(findings: &[Finding], kind: Kind) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.detector.name().to_string())
        .collect()
}

#[test]
fn pii_and_secrets_quality() {
    let Some(contents) = aaf_testdata::read("security/pii_secrets.txt") else {
        return;
    };
    let cases = parse_pii_secrets(&contents);
    let opts = ScanOptions::new();
    let mut families: BTreeMap<&str, Score> = BTreeMap::new();
    let mut groups: BTreeMap<String, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    for case in &cases {
        let findings = scan_text(&case.text, &opts);
        let kind = match case.family {
            Family::Pii => Kind::Pii,
            Family::Secret => Kind::Secret,
        };
        let found = kinds_found(&findings, kind);
        let flagged = !found.is_empty();
        match case.expect {
            Expect::Weak | Expect::Ambiguous => {
                println!(
                    "not scored ({:?}) line {}: {:?} -> {:?}",
                    case.expect, case.line, case.text, found
                );
                if case.expect == Expect::Weak {
                    assert!(
                        !found.contains(&"us_ssn".to_string()),
                        "a weak (undelimited) SSN was reported at line {}",
                        case.line
                    );
                }
                continue;
            }
            Expect::Match | Expect::NoMatch => {}
        }
        let expect_match = case.expect == Expect::Match;
        let family_name = match case.family {
            Family::Pii => "pii",
            Family::Secret => "secret",
        };
        families
            .entry(family_name)
            .or_default()
            .add(expect_match, flagged);
        groups
            .entry(format!("{family_name}: {}", case.group))
            .or_default()
            .add(expect_match, flagged);
        if expect_match != flagged {
            misses.push(format!(
                "line {} ({}, expected {:?}): {:?} -> {:?}",
                case.line, case.section, case.expect, case.text, found
            ));
        }
    }
    // Per detector where a section is about one detector: the detector itself must fire.
    let mut per_detector: BTreeMap<&str, Score> = BTreeMap::new();
    for case in &cases {
        let detector = if case.section.contains("CREDIT CARDS") {
            "payment_card"
        } else if case.section.contains("US SSN") {
            "us_ssn"
        } else {
            continue;
        };
        if !matches!(case.expect, Expect::Match | Expect::NoMatch) {
            continue;
        }
        let findings = scan_text(&case.text, &opts);
        let flagged = findings.iter().any(|f| f.detector.name() == detector);
        per_detector
            .entry(detector)
            .or_default()
            .add(case.expect == Expect::Match, flagged);
    }
    println!("\npii_secrets.txt ({} lines)\n{TABLE_HEAD}", cases.len());
    for (name, score) in &families {
        println!("{}", score.row(&format!("**{name}**")));
    }
    for (name, score) in &per_detector {
        println!("{}", score.row(name));
    }
    for (name, score) in &groups {
        println!("{}", score.row(name));
    }
    for miss in &misses {
        println!("error: {miss}");
    }
    let pii = families.get("pii");
    let secret = families.get("secret");
    assert!(pii.is_some_and(|s| s.must_match >= 25 && s.must_not_match >= 10));
    assert!(secret.is_some_and(|s| s.must_match >= 20 && s.must_not_match >= 15));
    for (name, score) in [("pii", pii), ("secret", secret)] {
        let Some(score) = score else {
            continue;
        };
        assert!(
            score.recall() >= 0.95,
            "{name} recall {:.3} < 0.95",
            score.recall()
        );
        assert!(
            score.fp_rate() <= 0.02,
            "{name} false-positive rate {:.3} > 0.02",
            score.fp_rate()
        );
    }
}

#[test]
fn prompt_injection_quality() {
    let Some(contents) = aaf_testdata::read("security/prompt_injection.txt") else {
        return;
    };
    let injection_only = ScanOptions::only(DetectorSet::of_kind(Kind::PromptInjection));
    let with_tool_args = ScanOptions::only(
        DetectorSet::of_kind(Kind::PromptInjection).union(DetectorSet::of_kind(Kind::ToolArgument)),
    );
    let mut section = String::new();
    let mut pi = Score::default();
    let mut any = Score::default();
    let mut sections: BTreeMap<String, Score> = BTreeMap::new();
    let mut sub_kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut misses = Vec::new();
    for (index, line) in contents.lines().enumerate() {
        if let Some(title) = line.strip_prefix("##########") {
            section = title
                .trim_matches(|c: char| c == '#' || c.is_whitespace())
                .to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (benign, payload) = match line.strip_prefix("BENIGN: ") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let text = payload.replace("\\n", "\n");
        let pi_findings = scan_text(&text, &injection_only);
        let any_findings = scan_text(&text, &with_tool_args);
        pi.add(!benign, !pi_findings.is_empty());
        any.add(!benign, !any_findings.is_empty());
        sections
            .entry(section.clone())
            .or_default()
            .add(!benign, !pi_findings.is_empty());
        for f in &pi_findings {
            if let Some(sub) = f.sub_kind {
                *sub_kinds.entry(format!("{sub:?}")).or_default() += 1;
            }
        }
        if benign != pi_findings.is_empty() {
            let found: Vec<String> = any_findings
                .iter()
                .map(|f| {
                    format!(
                        "{}{}",
                        f.detector.name(),
                        f.sub_kind.map(|s| format!("/{s:?}")).unwrap_or_default()
                    )
                })
                .collect();
            misses.push(format!(
                "line {} ({}): {:?} -> {:?}",
                index + 1,
                if benign { "benign" } else { "attack" },
                text.chars().take(90).collect::<String>(),
                found
            ));
        }
    }
    println!("\nprompt_injection.txt\n{TABLE_HEAD}");
    println!("{}", pi.row("**prompt_injection detector**"));
    println!("{}", any.row("prompt_injection + tool_argument detectors"));
    for (name, score) in &sections {
        println!("{}", score.row(name));
    }
    println!("sub-kinds of the findings: {sub_kinds:?}");
    for miss in &misses {
        println!("error: {miss}");
    }
    assert!(pi.must_match >= 50 && pi.must_not_match >= 5, "{pi:?}");
    assert!(
        pi.recall() >= 0.8,
        "prompt injection recall {:.3} < 0.8",
        pi.recall()
    );
    assert!(
        pi.fp_rate() <= 0.05,
        "prompt injection false-positive rate on benign controls {:.3} > 0.05",
        pi.fp_rate()
    );
    assert!(any.fp_rate() <= 0.05, "{any:?}");
}

#[test]
fn path_traversal_quality() {
    let Some(contents) = aaf_testdata::read("security/path_traversal.txt") else {
        return;
    };
    let opts = ScanOptions::only(DetectorSet::of_kind(Kind::ToolArgument));
    let mut total = Score::default();
    let mut groups: BTreeMap<String, Score> = BTreeMap::new();
    let mut group = String::new();
    let mut misses = Vec::new();
    for (index, line) in contents.lines().enumerate() {
        if let Some(header) = line.strip_prefix("## ") {
            group = header.split(" [").next().unwrap_or(header).to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let flagged = scan_text(line, &opts)
            .iter()
            .any(|f| f.detector.name() == "path_traversal");
        total.add(true, flagged);
        groups.entry(group.clone()).or_default().add(true, flagged);
        if !flagged {
            misses.push(format!("line {}: {line:?}", index + 1));
        }
    }
    // Benign controls of our own (the file has none): ordinary relative and absolute paths.
    for benign in [
        "docs/readme.md",
        "/var/www/html/index.html",
        "C:\\Users\\me\\Documents\\report.docx",
        "./build/output.log",
        "reports/2024/q1..q2 summary.pdf",
        "/home/user/projects/app/src/main.rs",
        "file name with spaces.txt",
        "https://example.com/a/b/c.html",
        "%E2%82%AC100 invoice.pdf",
        "..hidden-dir-name/file",
    ] {
        let flagged = scan_text(benign, &opts)
            .iter()
            .any(|f| f.detector.name() == "path_traversal");
        total.add(false, flagged);
        if flagged {
            misses.push(format!("benign control flagged: {benign:?}"));
        }
    }
    println!("\npath_traversal.txt (+ 10 benign controls of ours)\n{TABLE_HEAD}");
    println!("{}", total.row("**path_traversal**"));
    for (name, score) in &groups {
        println!("{}", score.row(name));
    }
    for miss in &misses {
        println!("error: {miss}");
    }
    assert!(total.must_match >= 50, "{total:?}");
    assert!(
        total.recall() >= 0.95,
        "path traversal recall {:.3}",
        total.recall()
    );
    assert!(total.fp_rate() <= 0.1, "{total:?}");
}
