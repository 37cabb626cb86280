//! Secrets: provider keys and tokens, private key blocks, JWTs, credentials in URLs, and
//! high-entropy values assigned to key-like names.
//!
//! The token shapes are those of gitleaks (`config/gitleaks.toml`, rules in
//! `cmd/generate/config/rules/*.go`) and Yelp's detect-secrets (`detect_secrets/plugins/*`),
//! named per rule below. The token rules that start with a literal run as one [`RegexSet`]
//! pass over the string (skipping ahead with a literal prefilter); only the rules that
//! matched are run again for their positions. The others run alone when the string can hold
//! them (`aws` for the AWS secret assignment, `://` and `@` for URL credentials, a 40-character
//! token run for a bare AWS secret).
//!
//! A token whose random part is an obvious placeholder is not reported: a run of six or
//! more `x`, `X` or `*` (the conventional masking characters, e.g. gitleaks' false-positive
//! cases `AKIAXXXXXXXXXXXXXXXX` and `ghp_xxxx…`), or a body more than half of which is one
//! ascending sequence (`abcdefgh…`, `12345678…`, e.g. `AIzaSyabcdefghijklmnopqrstuvwxyz…`).
//! Slack webhook URLs are reported even with such a path (both sources flag them; the URL is a
//! destination in itself).
//!
//! The generic rule (`generic_secret`, confidence 0.7) follows gitleaks' `generic-api-key`:
//! an assignment `name = value`, `name: value`, `name => value`, `"name", "value"` (or a JSON
//! object member) whose name is key-like ([`is_key_like`]) and whose value has at least 10
//! characters of `[A-Za-z0-9_+/=.~-]`, is not a placeholder or template, and has a Shannon
//! entropy of at least [`GENERIC_MIN_ENTROPY`] bits per character (gitleaks' threshold 3.5;
//! detect-secrets uses 3.0 for hex and 4.5 for base64 strings, so 3.5 accepts random hex of
//! 32 characters and more and rejects words such as `changeme123`).

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use regex::{Regex, RegexSet};

use super::batch::Prefilter;
use super::{
    char_at, char_before, compile, compile_set, shannon_entropy, Detector, DetectorSet, Facts,
    Parts, Sink,
};

/// Minimum Shannon entropy (bits per character) of a generic secret value.
pub const GENERIC_MIN_ENTROPY: f64 = 3.5;

/// Minimum length of a generic secret value, in bytes.
pub const GENERIC_MIN_LEN: usize = 10;

/// One token rule: a detector, a pattern, a confidence, and whether the placeholder test
/// applies to the match.
struct Rule {
    detector: Detector,
    pattern: &'static str,
    confidence: f64,
    placeholder_check: bool,
}

/// When a rule runs. Rules whose pattern starts with a literal run together in one
/// [`RegexSet`] (the set then skips ahead with a literal prefilter); the others run alone,
/// only when the string can hold them.
#[derive(Clone, Copy, PartialEq)]
enum Gate {
    /// In the set.
    Set,
    /// The string holds `aws` (any case).
    Aws,
    /// The string holds `://` and `@`.
    UrlWithAt,
    /// The string holds a token run of 40+ characters.
    TokenRun40,
}

fn gate(rule: &Rule) -> Gate {
    match rule.detector {
        Detector::AwsSecretKey if rule.confidence < 0.9 => Gate::TokenRun40,
        Detector::AwsSecretKey => Gate::Aws,
        Detector::UrlCredentials => Gate::UrlWithAt,
        _ => Gate::Set,
    }
}

/// The token rules. Their sources:
const RULES: &[Rule] = &[
    // gitleaks `aws-access-token` (prefixes A3T*, AKIA, ASIA, ABIA, ACCA); detect-secrets
    // `AWSKeyDetector`; the body charset [0-9A-Z] of detect-secrets and trufflehog `aws`
    // (gitleaks narrows it to base32 [A-Z2-7], which misses trufflehog's valid test pair).
    Rule {
        detector: Detector::AwsAccessKey,
        pattern: r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
        confidence: 0.9,
        placeholder_check: true,
    },
    // detect-secrets `AWSKeyDetector` secret-key regex: `aws…(key|secret|…)` then 40
    // base64 characters.
    Rule {
        detector: Detector::AwsSecretKey,
        pattern: r#"(?i)aws.{0,20}?(?:secret|key|pwd|pw|password|pass|token).{0,20}?['"\s:=]{1,5}[A-Za-z0-9/+]{40}\b"#,
        confidence: 0.9,
        placeholder_check: true,
    },
    // gitleaks `github-pat`, `github-oauth`, `github-app-token`, `github-refresh-token`;
    // detect-secrets `GitHubTokenDetector`.
    Rule {
        detector: Detector::GithubToken,
        pattern: r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b",
        confidence: 0.95,
        placeholder_check: true,
    },
    // gitleaks `github-fine-grained-pat`.
    Rule {
        detector: Detector::GithubToken,
        pattern: r"\bgithub_pat_[A-Za-z0-9_]{82}\b",
        confidence: 0.95,
        placeholder_check: true,
    },
    // gitleaks `gitlab-pat`.
    Rule {
        detector: Detector::GitlabToken,
        pattern: r"\bglpat-[A-Za-z0-9_\-]{20}\b",
        confidence: 0.9,
        placeholder_check: true,
    },
    // gitleaks `stripe-access-token` (sk/rk, test/live/prod); detect-secrets `StripeDetector`
    // (live only). Publishable `pk_` keys are not secrets.
    Rule {
        detector: Detector::StripeKey,
        pattern: r"\b(?:sk|rk)_(?:live|prod)_[A-Za-z0-9]{10,99}\b",
        confidence: 0.95,
        placeholder_check: true,
    },
    Rule {
        detector: Detector::StripeKey,
        pattern: r"\b(?:sk|rk)_test_[A-Za-z0-9]{10,99}\b",
        confidence: 0.7,
        placeholder_check: true,
    },
    // detect-secrets `SlackDetector` token regex; gitleaks `slack-bot-token`,
    // `slack-user-token`, `slack-app-token`.
    Rule {
        detector: Detector::SlackToken,
        pattern: r"\bxox[abposre]-[0-9]{6,}-(?:[0-9]{6,}-)*[A-Za-z0-9]{8,}\b",
        confidence: 0.95,
        placeholder_check: true,
    },
    Rule {
        detector: Detector::SlackToken,
        pattern: r"\bxapp-[0-9]-[A-Z0-9]+-[0-9]+-[a-z0-9]{16,}\b",
        confidence: 0.95,
        placeholder_check: true,
    },
    // detect-secrets `SlackDetector` webhook regex; gitleaks `slack-webhook-url`.
    Rule {
        detector: Detector::SlackWebhook,
        pattern: r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_+/]{20,}",
        confidence: 0.9,
        placeholder_check: false,
    },
    // detect-secrets `OpenAIDetector` (`sk-…T3BlbkFJ…`); gitleaks `openai-api-key` (with the
    // `proj`, `svcacct`, `admin` prefixes).
    Rule {
        detector: Detector::OpenaiKey,
        pattern: r"\bsk-(?:(?:proj|svcacct|admin)-)?[A-Za-z0-9_\-]{20,74}T3BlbkFJ[A-Za-z0-9_\-]{20,74}",
        confidence: 0.95,
        placeholder_check: true,
    },
    // gitleaks `anthropic-api-key` and `anthropic-admin-api-key`: 93 characters then `AA`.
    Rule {
        detector: Detector::AnthropicKey,
        pattern: r"\bsk-ant-(?:api03|admin01)-[A-Za-z0-9_\-]{93}AA",
        confidence: 0.95,
        placeholder_check: true,
    },
    // gitleaks `gcp-api-key`.
    Rule {
        detector: Detector::GcpApiKey,
        pattern: r"\bAIza[0-9A-Za-z_\-]{35}",
        confidence: 0.9,
        placeholder_check: true,
    },
    // detect-secrets `JwtTokenDetector`; gitleaks `jwt`. Validated below.
    Rule {
        detector: Detector::Jwt,
        pattern: r"\beyJ[A-Za-z0-9_\-]{10,}={0,2}\.eyJ[A-Za-z0-9_\-]{5,}={0,2}\.[A-Za-z0-9_\-+/=]*",
        confidence: 0.9,
        placeholder_check: false,
    },
    // detect-secrets `BasicAuthDetector`: `scheme://user:password@host`. Validated below.
    Rule {
        detector: Detector::UrlCredentials,
        pattern: r#"[A-Za-z][A-Za-z0-9+.\-]{1,20}://[^\s:/?#@'"<>{}\[\]]{1,256}:[^\s/?#@'"<>{}]{1,256}@[A-Za-z0-9\[]"#,
        confidence: 0.8,
        placeholder_check: false,
    },
    // gitleaks `private-key` header; the block is measured below.
    Rule {
        detector: Detector::PrivateKey,
        pattern: r"-----BEGIN[ A-Z0-9_\-]{0,100}PRIVATE KEY(?: BLOCK)?-----",
        confidence: 0.99,
        placeholder_check: false,
    },
    // trufflehog `aws` secret shape: exactly 40 base64 characters, mixed case and digits,
    // entropy >= 4. 0.9 next to an access key id or the word `aws`/`secret`, else 0.5.
    Rule {
        detector: Detector::AwsSecretKey,
        pattern: r"[A-Za-z0-9/+]{40,}",
        confidence: 0.5,
        placeholder_check: true,
    },
];

/// The indices (into [`RULES`]) of the rules in [`RULE_SET`].
static SET_RULES: LazyLock<Vec<usize>> = LazyLock::new(|| {
    RULES
        .iter()
        .enumerate()
        .filter(|(_, r)| gate(r) == Gate::Set)
        .map(|(i, _)| i)
        .collect()
});

static RULE_SET: LazyLock<RegexSet> = LazyLock::new(|| {
    compile_set(
        &SET_RULES
            .iter()
            .filter_map(|&i| RULES.get(i).map(|r| r.pattern))
            .collect::<Vec<_>>(),
    )
});

static RULE_REGEXES: LazyLock<Vec<Regex>> =
    LazyLock::new(|| RULES.iter().map(|r| compile(r.pattern)).collect());

/// The end of a private key block.
static PRIVATE_KEY_END: LazyLock<Regex> =
    LazyLock::new(|| compile(r"-----END[ A-Z0-9_\-]{0,100}PRIVATE KEY(?: BLOCK)?-----"));

/// An assignment: a name, an operator, a value (gitleaks `generic-api-key`, simplified).
static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"([A-Za-z0-9_.\-]{1,64})["']?[ \t]{0,3}(?:=|:=|::=|:|=>|,|\?=|\|\|)[ \t]{0,3}["'`]?([A-Za-z0-9_+/=.~\-]{10,256})"#,
    )
});

/// Words that make a name key-like (matched case-insensitively anywhere in the name;
/// gitleaks `generic-api-key` keywords, plus `pwd`, `passphrase`, `bearer`).
const KEY_WORDS: &[&str] = &[
    "secret",
    "token",
    "passw",
    "pwd",
    "passphrase",
    "credential",
    "creds",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "bearer",
    "private_key",
    "privatekey",
    "access_key",
    "accesskey",
    "signing_key",
    "encryption_key",
    "session_key",
];

/// Name parts that make a key-like name an identifier or metadata, not a secret (gitleaks
/// `generic-api-key` allowlist: `access_id`, `credentials_id`, `public_key`, `author`, key
/// names, lengths, …).
const NOT_SECRET_NAME_PARTS: &[&str] = &[
    "public",
    "pubkey",
    "keyboard",
    "keyword",
    "tokenizer",
    "max_tokens",
];

/// Name endings that make a name an identifier or metadata.
const NOT_SECRET_NAME_ENDS: &[&str] = &[
    "id", "ids", "name", "names", "url", "uri", "path", "file", "type", "length", "size", "count",
    "format", "version", "alias", "prefix", "header", "endpoint", "expiry", "expires", "ttl", "at",
    "enabled", "author", "authors",
];

/// Prefilter of the generic rule: any of [`KEY_WORDS`] or a final `key`.
static KEY_WORD_FINDER: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    let mut words: Vec<&str> = KEY_WORDS.to_vec();
    words.push("key");
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(words)
        .ok()
});

/// The prefilter of [`scan`] (see [`super::batch`]): a pattern that matches wherever a rule
/// can report (a superset of their matches), with [`AWS_RUN`]: each token rule's literal
/// prefix, `aws` (any case; the AWS secret assignment), an `@` (credentials in a URL), and
/// a name holding one of the words every key-like name holds (`secret`, `token`, `pass`,
/// `pwd`, `cred`, `auth`, `bearer`, `key`) followed by an assignment operator. No long
/// counts: a count of 40 in the DFA it makes with the other families' prefilters makes that
/// a third slower.
pub(crate) static PREFILTER: LazyLock<Prefilter> = LazyLock::new(|| {
    Prefilter::new(&[(
        &[
            r"(?i:aws)",
            r"A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA",
            r"gh[pousr]_",
            r"github_pat_",
            r"glpat-",
            r"[sr]k_(?:live|prod|test)_",
            r"xox[abposre]-",
            r"xapp-",
            r"hooks\.slack\.com/",
            r"T3BlbkFJ",
            r"sk-ant-",
            r"AIza",
            r"eyJ",
            r"@",
            r"-----BEGIN",
            r#"(?i:secret|token|pass|pwd|cred|auth|bearer|key)[A-Za-z0-9_.\-]*["']?[ \t]*(?:=|:|,|\?=|\|\|)"#,
        ]
        .join("|"),
        Parts::SECRET,
    )])
});

/// The rest of the prefilter of [`scan`]: a maximal run of exactly this many characters of
/// [`in_aws_run`], the only one the bare AWS secret rule reports (the other AWS secret rule
/// needs `aws`). [`super::batch`] finds the runs without a DFA.
pub(crate) const AWS_RUN: usize = 40;

/// The characters of the bare AWS secret rule's run (`[A-Za-z0-9/+]`).
pub(crate) fn in_aws_run(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'/' || b == b'+'
}

/// Whether `name` may be key-like ([`is_key_like`] is false when this is): it holds one of
/// the words every key-like name holds. No allocation: the test for every object member.
pub(crate) fn may_be_key_like(name: &str) -> bool {
    const WORDS: &[&[u8]] = &[
        b"secret", b"token", b"pass", b"pwd", b"cred", b"auth", b"bearer", b"key",
    ];
    let bytes = name.as_bytes();
    bytes.len() <= 64
        && (0..bytes.len()).any(|i| {
            WORDS.iter().any(|word| {
                bytes
                    .get(i..i + word.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(word))
            })
        })
}

/// Runs the secret detectors of `set` over `text`.
pub(crate) fn scan(text: &str, facts: &Facts, set: DetectorSet, sink: &mut Sink) {
    if text.len() < 10 {
        return;
    }
    let has_aws = text
        .as_bytes()
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"aws"));
    let has_url_at = facts.at && text.contains("://");
    // `is_match` stops at the first match with the fast search; only then is the (slower,
    // overlapping) search for every matching rule run.
    let mut matched: Vec<usize> = if RULE_SET.is_match(text) {
        RULE_SET
            .matches(text)
            .iter()
            .filter_map(|i| SET_RULES.get(i).copied())
            .collect()
    } else {
        Vec::new()
    };
    for (index, rule) in RULES.iter().enumerate() {
        let run = match gate(rule) {
            Gate::Set => false,
            Gate::Aws => has_aws,
            Gate::UrlWithAt => has_url_at,
            Gate::TokenRun40 => facts.max_token_run >= 40,
        };
        if run {
            matched.push(index);
        }
    }
    for index in matched {
        let (Some(rule), Some(re)) = (RULES.get(index), RULE_REGEXES.get(index)) else {
            continue;
        };
        if !set.contains(rule.detector) {
            continue;
        }
        for m in re.find_iter(text) {
            let token = m.as_str();
            if rule.placeholder_check && is_placeholder(token) {
                continue;
            }
            match rule.detector {
                Detector::Jwt => {
                    if jwt_valid(token) {
                        sink.push(rule.detector, None, rule.confidence, m.start(), m.end());
                    }
                }
                Detector::UrlCredentials => url_credentials(text, m.start(), m.end(), sink),
                Detector::PrivateKey => private_key(text, m.start(), m.end(), sink),
                Detector::AwsSecretKey if rule.confidence < 0.9 => {
                    bare_aws_secret(text, m.start(), m.end(), sink);
                }
                Detector::AwsSecretKey => {
                    // The 40 characters at the end of the assignment.
                    let start = m.end().saturating_sub(40);
                    sink.push(rule.detector, None, rule.confidence, start, m.end());
                }
                Detector::AwsAccessKey => {
                    // AWS's documented example key: reported, with less confidence.
                    let confidence = if token.ends_with("EXAMPLE") {
                        0.6
                    } else {
                        rule.confidence
                    };
                    sink.push(rule.detector, None, confidence, m.start(), m.end());
                }
                _ => {
                    if token_boundary_ok(text, m.end()) {
                        sink.push(rule.detector, None, rule.confidence, m.start(), m.end());
                    }
                }
            }
        }
    }
    if set.contains(Detector::GenericSecret) {
        assignments(text, sink);
    }
}

/// The generic rule for an object member: `key` is the member's name, `value` its string.
/// Reports the whole value.
pub(crate) fn scan_member(key: &str, value: &str, sink: &mut Sink) {
    if is_key_like(key) && generic_value_ok(value) {
        sink.push(Detector::GenericSecret, None, 0.7, 0, value.len());
    }
}

/// Whether `name` is key-like: it contains one of the key words (`secret`, `token`,
/// `passw`, `pwd`, `credential`, `api_key`, `auth`, …) or ends with `key`/`keys`, and is not
/// an identifier or metadata name (`…_id`, `…Id`, `…_name`, `…_url`, `public…`, `author`,
/// …). Case-insensitive; `-` and `.` count as `_`.
pub fn is_key_like(name: &str) -> bool {
    if name.len() > 64 {
        return false;
    }
    let lower: String = name
        .chars()
        .map(|c| match c {
            '-' | '.' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let keyish = KEY_WORDS.iter().any(|w| lower.contains(w))
        || lower.ends_with("key")
        || lower.ends_with("keys");
    if !keyish || NOT_SECRET_NAME_PARTS.iter().any(|p| lower.contains(p)) {
        return false;
    }
    // The last part of the name, split at `_` and at camelCase humps.
    let last_part = last_name_part(name);
    !NOT_SECRET_NAME_ENDS.contains(&last_part.as_str())
}

/// The last word of an identifier, lower case: `credentialsId` → `id`, `report_access_id`
/// → `id`, `api_key` → `key`.
fn last_name_part(name: &str) -> String {
    let trimmed = name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut start = 0;
    let chars: Vec<(usize, char)> = trimmed.char_indices().collect();
    for window in chars.windows(2) {
        if let [(_, a), (i, b)] = window {
            if !b.is_ascii_alphanumeric() {
                start = i + b.len_utf8();
            } else if a.is_ascii_lowercase() && b.is_ascii_uppercase() {
                start = *i;
            }
        }
    }
    trimmed
        .get(start..)
        .unwrap_or_default()
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_ascii_lowercase()
}

/// Whether `value` could be a secret: long enough, not a placeholder or a template, not a
/// path or URL, entropy at least [`GENERIC_MIN_ENTROPY`].
fn generic_value_ok(value: &str) -> bool {
    let value = value.trim();
    if value.len() < GENERIC_MIN_LEN || value.len() > 1024 {
        return false;
    }
    if value.contains("://")
        || value.starts_with('/')
        || value.starts_with("./")
        || value.contains("${")
        || value.contains("{{")
        || value.contains('<')
        || value.contains(char::is_whitespace)
        || is_placeholder(value)
    {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    if [
        "example",
        "changeme",
        "placeholder",
        "your_",
        "dummy",
        "redacted",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        return false;
    }
    shannon_entropy(value) >= GENERIC_MIN_ENTROPY
}

fn assignments(text: &str, sink: &mut Sink) {
    let Some(finder) = KEY_WORD_FINDER.as_ref() else {
        return;
    };
    if finder.find(text).is_none() {
        return;
    }
    for captures in ASSIGNMENT.captures_iter(text) {
        let (Some(name), Some(value)) = (captures.get(1), captures.get(2)) else {
            continue;
        };
        if char_before(text, name.start()).is_some_and(|c| c.is_alphanumeric()) {
            continue;
        }
        if is_key_like(name.as_str()) && generic_value_ok(value.as_str()) {
            sink.push(
                Detector::GenericSecret,
                None,
                0.7,
                value.start(),
                value.end(),
            );
        }
    }
}

/// Whether the token ends at a boundary: not followed by a character that could continue
/// it (letters, digits, `_`, `-`).
fn token_boundary_ok(text: &str, end: usize) -> bool {
    !char_at(text, end).is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// Whether `token` is a placeholder (see the module documentation).
pub fn is_placeholder(token: &str) -> bool {
    let bytes = token.as_bytes();
    // A run of six or more masking characters.
    let mut run = 0;
    for &b in bytes {
        if matches!(b, b'x' | b'X' | b'*') {
            run += 1;
            if run >= 6 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    // A body more than half of which is one ascending sequence.
    let mut longest = 1;
    let mut current = 1;
    for pair in bytes.windows(2) {
        if let [a, b] = pair {
            if a.is_ascii_alphanumeric() && b.wrapping_sub(*a) == 1 && b.is_ascii_alphanumeric() {
                current += 1;
                longest = longest.max(current);
            } else {
                current = 1;
            }
        }
    }
    bytes.len() >= 8 && longest >= 8 && longest * 2 > bytes.len() - prefix_len(token)
}

/// Length of a known vendor prefix of `token` (not counted as body).
fn prefix_len(token: &str) -> usize {
    [
        "AIzaSy", "AIza", "ghp_", "gho_", "sk-", "sk_live_", "xoxb-", "xoxp-",
    ]
    .iter()
    .find(|p| token.starts_with(*p))
    .map_or(0, |p| p.len())
}

/// Whether a JWT candidate's header and payload are base64url-encoded JSON objects.
fn jwt_valid(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
        return false;
    };
    [header, payload].iter().all(|part| {
        let part = part.trim_end_matches('=');
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .is_some_and(|v| v.is_object())
    })
}

/// Reports the password of a `scheme://user:password@host` match (not a template such as
/// `${PASSWORD}`, `%s` or `<password>`).
fn url_credentials(text: &str, start: usize, end: usize, sink: &mut Sink) {
    let Some(matched) = text.get(start..end) else {
        return;
    };
    let Some(scheme_end) = matched.find("://") else {
        return;
    };
    let rest = matched.get(scheme_end + 3..).unwrap_or_default();
    let (Some(colon), Some(at)) = (rest.find(':'), rest.rfind('@')) else {
        return;
    };
    if colon >= at {
        return;
    }
    let password = rest.get(colon + 1..at).unwrap_or_default();
    if password.is_empty()
        || password.starts_with('$')
        || password.starts_with('%')
        || password.chars().all(|c| c == '*')
        || password.bytes().all(|b| b.is_ascii_digit()) && password.len() <= 5
    {
        // Empty, a template, a mask, or a port number (`host:8080@…` is not userinfo).
        return;
    }
    let password_start = start + scheme_end + 3 + colon + 1;
    sink.push(
        Detector::UrlCredentials,
        None,
        0.8,
        password_start,
        password_start + password.len(),
    );
}

/// Reports a private key block: from the `BEGIN` header to the matching `END` line when
/// at least 64 key characters lie between them (0.99, gitleaks `private-key`), else the
/// header and what follows up to an `END` line within 64 KiB (0.6: detect-secrets
/// `PrivateKeyDetector` flags the header alone; a truncated key in a tool call is still a
/// leak).
fn private_key(text: &str, start: usize, header_end: usize, sink: &mut Sink) {
    let window_end = (header_end + (64 << 10)).min(text.len());
    let mut window_end_ok = window_end;
    while !text.is_char_boundary(window_end_ok) {
        window_end_ok -= 1;
    }
    let window = text.get(header_end..window_end_ok).unwrap_or_default();
    match PRIVATE_KEY_END.find(window) {
        Some(end) => {
            let body = window.get(..end.start()).unwrap_or_default();
            let key_chars = body
                .bytes()
                .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                .count();
            let confidence = if key_chars >= 64 { 0.99 } else { 0.6 };
            sink.push(
                Detector::PrivateKey,
                None,
                confidence,
                start,
                header_end + end.end(),
            );
        }
        None => {
            // No END line: the header and the base64 lines after it.
            let body_len = window
                .find(|c: char| {
                    !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '\n' | '\r'))
                })
                .unwrap_or(window.len());
            sink.push(
                Detector::PrivateKey,
                None,
                0.6,
                start,
                header_end + body_len,
            );
        }
    }
}

/// The trufflehog-shaped bare AWS secret: a maximal run of exactly 40 base64 characters
/// with upper case, lower case and a digit and entropy at least 4 bits per character.
fn bare_aws_secret(text: &str, start: usize, end: usize, sink: &mut Sink) {
    let Some(token) = text.get(start..end) else {
        return;
    };
    if token.len() != 40
        || char_before(text, start).is_some_and(|c| matches!(c, '_' | '-' | '='))
        || char_at(text, end).is_some_and(|c| matches!(c, '_' | '-' | '='))
        || !token.bytes().any(|b| b.is_ascii_uppercase())
        || !token.bytes().any(|b| b.is_ascii_lowercase())
        || !token.bytes().any(|b| b.is_ascii_digit())
        || shannon_entropy(token) < 4.0
    {
        return;
    }
    let from = {
        let mut from = start.saturating_sub(100);
        while !text.is_char_boundary(from) {
            from += 1;
        }
        from
    };
    let context = text.get(from..start).unwrap_or_default();
    let lower = context.to_ascii_lowercase();
    let near_id = RULE_REGEXES.first().is_some_and(|re| re.is_match(context));
    let confidence = if near_id || lower.contains("aws") || lower.contains("secret") {
        0.9
    } else {
        0.5
    };
    sink.push(Detector::AwsSecretKey, None, confidence, start, end);
}

/// Compiles every pattern of this module (tests).
#[cfg(test)]
pub(crate) fn force_patterns() {
    assert_eq!(RULE_REGEXES.len(), RULES.len());
    assert_eq!(RULE_SET.len(), SET_RULES.len());
    assert!(PRIVATE_KEY_END.is_match("-----END RSA PRIVATE KEY-----"));
    assert!(ASSIGNMENT.is_match("token = abcdefghijkl"));
    assert!(KEY_WORD_FINDER.is_some());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{scan_text, ScanOptions};

    fn detectors(text: &str) -> Vec<Detector> {
        scan_text(text, &ScanOptions::new())
            .into_iter()
            .filter(|f| f.kind == crate::detect::Kind::Secret)
            .map(|f| f.detector)
            .collect()
    }

    #[test]
    fn provider_tokens() {
        let cases: &[(&str, Detector)] = &[
            ("AKIALALEMEL33243OLIB", Detector::AwsAccessKey),
            ("id=ASIAZZZZZZZZZZZZZZZZ", Detector::AwsAccessKey),
            (
                "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",
                Detector::GithubToken,
            ),
            ("glpat-abcDEF123456_ghijKLM", Detector::GitlabToken),
            ("sk_live_ReTllpYQYfIZu2Jnf2lAPFjD", Detector::StripeKey),
            (
                "xoxb-781236542736-2364535789652-GkwFDQoHqzXDVsC6GzqYUypD",
                Detector::SlackToken,
            ),
            (
                "https://hooks.slack.com/services/Txxxxxxxx/Bxxxxxxxx/xxxxxxxxxxxxxxxxxxxxxxxx",
                Detector::SlackWebhook,
            ),
            (
                "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",
                Detector::OpenaiKey,
            ),
            (
                "key AIzaSyD4gK9x2Lq7Vb0Tz8WmN3pR5sH6jF1cE2u",
                Detector::GcpApiKey,
            ),
            (
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc",
                Detector::Jwt,
            ),
            (
                "https://user:hunter2@db.example.com",
                Detector::UrlCredentials,
            ),
            (
                "aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'",
                Detector::AwsSecretKey,
            ),
            (
                "client_secret: 6da89121079f83b2eb6acccf8219ea982c3d79bccc3e9c6a85856480661f8fde",
                Detector::GenericSecret,
            ),
        ];
        for (text, detector) in cases {
            assert!(
                detectors(text).contains(detector),
                "{text:?}: {:?}",
                detectors(text)
            );
        }
    }

    #[test]
    fn not_secrets() {
        for text in [
            "akiazzzzzzzzzzzzzzzz",
            "AKIAZZZ",
            "key = AKIAXXXXXXXXXXXXXXXX",
            "TODAYINASIAASACKOFRICEFELLOVER",
            "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "pk_live_j5krY8XTgIcDaHDb3YrsAfCl",
            "sk_live_",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            "eyJAAAA.eyJBBB",
            "http://localhost:5000/<%= @variable %>",
            "http://host:8080@x",
            "report_access_id: e8e4df51-2054-49b0-ab1c-516ac95c691d",
            "credentialsId: 'ff083f76-7804-4ef1-80e4-fe975bb9141b'",
            "public_key = \"9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit\"",
            "red_herring = 'DEADBEEF'",
            "password = changeme123",
            "token_count: 1234567890",
            "AIzaSyabcdefghijklmnopqrstuvwxyz1234567",
            "the quick brown fox jumps over the lazy dog",
            "commit 8b1118b376c313ed420e5133ba91307817ed52c2",
        ] {
            assert!(
                detectors(text).is_empty(),
                "{text:?}: {:?}",
                detectors(text)
            );
        }
    }

    #[test]
    fn private_keys() {
        let full = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpQIBAAKCAQEAn6/O8li+SX4m98LLYt/PKSzEmQ++ZBD7Loh9P13f4yQ92EF3\nyxR5MsXFu9PRsrYQA7/4UTPHiC4y2sAVCBg4C2yyBpUEtMQjyCESi6Y=\n-----END RSA PRIVATE KEY-----";
        let findings = scan_text(full, &ScanOptions::new());
        let key = findings.iter().find(|f| f.detector == Detector::PrivateKey);
        assert!(key.is_some_and(|f| f.confidence > 0.9 && f.start == 0 && f.end == full.len()));
        for weak in [
            "-----BEGIN PRIVATE KEY-----\nanything\n-----END PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----",
        ] {
            let findings = scan_text(weak, &ScanOptions::new());
            assert!(findings
                .iter()
                .any(|f| f.detector == Detector::PrivateKey && f.confidence < 0.7));
        }
    }

    #[test]
    fn key_like_names() {
        for name in [
            "client_secret",
            "api_token",
            "API-KEY",
            "credentials",
            "hex_secret",
            "password",
            "stripeKey",
            "tokenWithNoneAlg",
            "Authorization",
        ] {
            assert!(is_key_like(name), "{name}");
        }
        for name in [
            "report_access_id",
            "credentialsId",
            "public_key",
            "author",
            "red_herring",
            "token_count",
            "keyboard",
            "api_key_name",
            "monkey_business",
        ] {
            assert!(!is_key_like(name), "{name}");
        }
    }

    #[test]
    fn placeholders() {
        assert!(is_placeholder("ghp_xxxxxxxxxxxxxxxxxxxxxxxx"));
        assert!(is_placeholder("AIzaSyabcdefghijklmnopqrstuvwxyz1234567"));
        assert!(!is_placeholder("AKIAZZZZZZZZZZZZZZZZ"));
        assert!(!is_placeholder(
            "sk-ant-api03-abc123xyz-456def789ghij-klmnopqrstuvwx-3456yza789bcde-1234fghijklmnopby56aaaogaopaaaabc123xyzAA"
        ));
    }
}
