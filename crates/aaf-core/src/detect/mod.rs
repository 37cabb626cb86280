//! Content detectors: personal data, secrets, prompt injection and tool-argument attacks in
//! strings and JSON values. No I/O; every scan is bounded (see [`DetectorLimits`]).
//!
//! A scan returns [`Finding`]s (over one string: byte ranges) or [`Detection`]s (over a JSON
//! value: the same plus an RFC 6901 JSON pointer). Each names its [`Detector`] (a stable
//! snake_case name such as `payment_card` or `aws_access_key`), its [`Kind`] (`pii`, `secret`,
//! `prompt_injection`, `tool_argument`) and a confidence in `[0, 1]`. Detections serialize as
//! `{detector, kind, sub_kind?, path, key?, confidence, start, end}`, the shape of
//! `input.detections` in policies; they never carry the matched text.
//!
//! The families, their rules and sources are documented in their modules and in
//! `docs/detection.md`:
//!
//! - [`pii`]: US SSN (Presidio's `UsSsnRecognizer` rules), payment cards (Luhn and issuer
//!   prefixes), email, phone numbers, IBAN (ISO 13616 mod 97), IPv4 and IPv6 addresses;
//! - [`secrets`]: provider keys and tokens (gitleaks and detect-secrets rules, named in each
//!   rule), private key blocks, JWTs, credentials in URLs, and high-entropy values assigned to
//!   key-like names;
//! - [`injection`]: prompt-injection phrasing (instruction override, prompt leaking,
//!   role-play and jailbreak, fake chat delimiters, exfiltration), hidden Unicode (zero-width,
//!   bidi controls, tag characters), base64 or hex segments that decode to injection phrasing,
//!   and homoglyph (mixed-script) words, matched over a normalised copy of the text;
//! - [`tool_args`]: path traversal (with URL, double, overlong UTF-8 and `%u` decoding),
//!   sensitive absolute paths, shell injection and SQL injection.
//!
//! The Rego built-ins `has_pii`, `has_ssn`, `has_credit_card` (unchanged semantics: SSN and
//! card only, whole value, no limits), `has_secret` and `has_prompt_injection` are
//! [`has_pii`], [`has_ssn`], [`has_credit_card`], [`has_secret`] and
//! [`has_prompt_injection`].

mod batch;
pub mod injection;
pub mod pii;
pub mod secrets;
pub mod tool_args;
mod walk;

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use serde_json::Value;

pub use pii::{luhn_valid, text_has_credit_card, text_has_ssn};

/// A detector: a stable snake_case name (its serialized form and [`Detector::name`]), a
/// [`Kind`], and rules documented in its family module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// A US Social Security number (`AAA-GG-SSSS`, Presidio's validity rules).
    UsSsn,
    /// A payment card number: Luhn-valid, with a known issuer prefix and length.
    PaymentCard,
    /// An email address.
    Email,
    /// A telephone number (international `+`, North American, delimited national forms,
    /// or bare digits after a word such as "phone").
    Phone,
    /// An IBAN whose length fits its country and whose ISO 7064 mod-97 check passes.
    Iban,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// An AWS access key id (`AKIA…`, `ASIA…`).
    AwsAccessKey,
    /// An AWS secret access key (40 base64 characters).
    AwsSecretKey,
    /// A GitHub token (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken,
    /// A GitLab personal access token (`glpat-`).
    GitlabToken,
    /// A Stripe secret or restricted key (`sk_live_`, `rk_live_`, `sk_test_`, …).
    StripeKey,
    /// A Slack token (`xoxb-`, `xoxp-`, `xapp-`, …).
    SlackToken,
    /// A Slack incoming-webhook URL.
    SlackWebhook,
    /// An OpenAI API key (`sk-…T3BlbkFJ…`).
    OpenaiKey,
    /// An Anthropic API key (`sk-ant-api03-…`).
    AnthropicKey,
    /// A Google Cloud / Firebase API key (`AIza…`).
    GcpApiKey,
    /// A PEM private key block (`-----BEGIN … PRIVATE KEY-----`).
    PrivateKey,
    /// A JSON Web Token (three base64url segments whose first two decode to JSON).
    Jwt,
    /// A password in a URL's user information (`scheme://user:password@host`).
    UrlCredentials,
    /// A high-entropy value assigned to a key-like name (`client_secret = "…"`).
    GenericSecret,
    /// Prompt-injection phrasing or smuggling; see [`InjectionKind`] for the sub-kinds.
    PromptInjection,
    /// Path traversal (`../`, encoded forms) or a sensitive absolute path (`/etc/passwd`).
    PathTraversal,
    /// Shell injection (`; rm`, `$(…)`, backticks, `| sh`, `&&`).
    ShellInjection,
    /// SQL injection (`' OR 1=1`, `UNION SELECT`, `; DROP TABLE`, comment terminators).
    SqlInjection,
}

impl Detector {
    /// Every detector, in declaration order.
    pub const ALL: [Detector; 24] = [
        Detector::UsSsn,
        Detector::PaymentCard,
        Detector::Email,
        Detector::Phone,
        Detector::Iban,
        Detector::IpAddress,
        Detector::AwsAccessKey,
        Detector::AwsSecretKey,
        Detector::GithubToken,
        Detector::GitlabToken,
        Detector::StripeKey,
        Detector::SlackToken,
        Detector::SlackWebhook,
        Detector::OpenaiKey,
        Detector::AnthropicKey,
        Detector::GcpApiKey,
        Detector::PrivateKey,
        Detector::Jwt,
        Detector::UrlCredentials,
        Detector::GenericSecret,
        Detector::PromptInjection,
        Detector::PathTraversal,
        Detector::ShellInjection,
        Detector::SqlInjection,
    ];

    /// The stable snake_case name (the serialized form), e.g. `"payment_card"`.
    pub fn name(self) -> &'static str {
        match self {
            Detector::UsSsn => "us_ssn",
            Detector::PaymentCard => "payment_card",
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Iban => "iban",
            Detector::IpAddress => "ip_address",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::AwsSecretKey => "aws_secret_key",
            Detector::GithubToken => "github_token",
            Detector::GitlabToken => "gitlab_token",
            Detector::StripeKey => "stripe_key",
            Detector::SlackToken => "slack_token",
            Detector::SlackWebhook => "slack_webhook",
            Detector::OpenaiKey => "openai_key",
            Detector::AnthropicKey => "anthropic_key",
            Detector::GcpApiKey => "gcp_api_key",
            Detector::PrivateKey => "private_key",
            Detector::Jwt => "jwt",
            Detector::UrlCredentials => "url_credentials",
            Detector::GenericSecret => "generic_secret",
            Detector::PromptInjection => "prompt_injection",
            Detector::PathTraversal => "path_traversal",
            Detector::ShellInjection => "shell_injection",
            Detector::SqlInjection => "sql_injection",
        }
    }

    /// The detector named `name` (as [`Detector::name`] spells it), if any.
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The family of this detector.
    pub fn kind(self) -> Kind {
        match self {
            Detector::UsSsn
            | Detector::PaymentCard
            | Detector::Email
            | Detector::Phone
            | Detector::Iban
            | Detector::IpAddress => Kind::Pii,
            Detector::PromptInjection => Kind::PromptInjection,
            Detector::PathTraversal | Detector::ShellInjection | Detector::SqlInjection => {
                Kind::ToolArgument
            }
            _ => Kind::Secret,
        }
    }

    /// How [`mask_text`] replaces a match of this detector: [`MaskStyle::KeepLast4`] for
    /// `us_ssn`, `payment_card`, `phone` and `iban`, [`MaskStyle::Label`] for the others.
    pub fn mask_style(self) -> MaskStyle {
        match self {
            Detector::UsSsn | Detector::PaymentCard | Detector::Phone | Detector::Iban => {
                MaskStyle::KeepLast4
            }
            _ => MaskStyle::Label,
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The family of a [`Detector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Personal data.
    Pii,
    /// Credentials: keys, tokens, passwords.
    Secret,
    /// Text that tries to steer a language model.
    PromptInjection,
    /// Attacks on the tool an action calls: path traversal, shell and SQL injection.
    ToolArgument,
}

impl Kind {
    /// The serialized name, e.g. `"tool_argument"`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pii => "pii",
            Kind::Secret => "secret",
            Kind::PromptInjection => "prompt_injection",
            Kind::ToolArgument => "tool_argument",
        }
    }
}

/// The sub-kind of a `prompt_injection` finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InjectionKind {
    /// "Ignore (all) previous instructions", "disregard the above", "STOP EVERYTHING", …
    InstructionOverride,
    /// Asks for the system prompt, the instructions given, or a password or key.
    PromptLeak,
    /// Role-play and jailbreak personas: DAN, "developer mode", "you are now …".
    RolePlay,
    /// Fake chat-format delimiters: `<|endoftext|>`, `[system](#…)`, a line `System:`.
    Delimiter,
    /// Instructions to smuggle conversation data out (e.g. through a markdown image URL).
    Exfiltration,
    /// Zero-width, bidi-control or Unicode tag characters.
    HiddenUnicode,
    /// A base64 or hex segment that decodes to injection phrasing.
    Encoded,
    /// A word mixing Latin with Cyrillic or Greek look-alike letters.
    Homoglyph,
}

/// How [`mask_text`] replaces a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskStyle {
    /// Every ASCII letter and digit but the last four becomes `*`; separators stay
    /// (`4111 1111 1111 1111` → `**** **** **** 1111`, `078-05-1123` → `***-**-1123`).
    KeepLast4,
    /// The whole match becomes `[REDACTED:<detector>]`.
    Label,
}

/// One match in one string.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What matched.
    pub detector: Detector,
    /// The detector's family (`detector.kind()`).
    pub kind: Kind,
    /// For `prompt_injection`: which technique.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_kind: Option<InjectionKind>,
    /// How sure the rule is, in `[0, 1]` (documented per rule in `docs/detection.md`).
    pub confidence: f64,
    /// Byte offset of the match's first byte in the scanned string (a char boundary).
    pub start: usize,
    /// Byte offset just past the match (a char boundary); `start < end`.
    pub end: usize,
}

/// One match in a JSON value: a [`Finding`] and where it is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// What matched.
    pub detector: Detector,
    /// The detector's family.
    pub kind: Kind,
    /// For `prompt_injection`: which technique.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_kind: Option<InjectionKind>,
    /// RFC 6901 JSON pointer of the string or number (or, with `key`, of the object
    /// member whose key) matched: `""` for the root, `/body/items/0/note`; `~` is written
    /// `~0` and `/` is written `~1`.
    pub path: String,
    /// True when the match is in the object key at `path`, not in its value.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub key: bool,
    /// How sure the rule is, in `[0, 1]`.
    pub confidence: f64,
    /// Byte range of the match within the key or value text (for a number: its JSON text).
    pub start: usize,
    /// See `start`.
    pub end: usize,
}

/// A set of [`Detector`]s (which to run, or which to mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DetectorSet(u32);

impl DetectorSet {
    /// Every detector.
    pub fn all() -> DetectorSet {
        Detector::ALL.into_iter().collect()
    }

    /// No detector.
    pub fn empty() -> DetectorSet {
        DetectorSet(0)
    }

    /// Every detector of `kind`.
    pub fn of_kind(kind: Kind) -> DetectorSet {
        Detector::ALL
            .into_iter()
            .filter(|d| d.kind() == kind)
            .collect()
    }

    /// The detectors of [`crate::redact::redact`]: `us_ssn`, `payment_card` and every
    /// `secret` detector.
    pub fn redaction() -> DetectorSet {
        DetectorSet::of_kind(Kind::Secret)
            .with(Detector::UsSsn)
            .with(Detector::PaymentCard)
    }

    /// This set plus `detector`.
    #[must_use]
    pub fn with(self, detector: Detector) -> DetectorSet {
        DetectorSet(self.0 | detector.bit())
    }

    /// The union of two sets.
    #[must_use]
    pub fn union(self, other: DetectorSet) -> DetectorSet {
        DetectorSet(self.0 | other.0)
    }

    /// Whether `detector` is in the set.
    pub fn contains(self, detector: Detector) -> bool {
        self.0 & detector.bit() != 0
    }

    /// Whether the set holds a detector of `kind`.
    pub fn has_kind(self, kind: Kind) -> bool {
        self.0 & DetectorSet::of_kind(kind).0 != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The detectors in the set, in [`Detector::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Detector> {
        Detector::ALL.into_iter().filter(move |d| self.contains(*d))
    }
}

impl FromIterator<Detector> for DetectorSet {
    fn from_iter<I: IntoIterator<Item = Detector>>(iter: I) -> DetectorSet {
        DetectorSet(iter.into_iter().fold(0, |bits, d| bits | d.bit()))
    }
}

impl Default for DetectorSet {
    fn default() -> DetectorSet {
        DetectorSet::all()
    }
}

/// Bounds on the work of one scan. Exceeding one is not an error: the scan stops there
/// and says so ([`ScanReport::truncated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorLimits {
    /// Bytes of one string (or key, or number text) that are scanned; the rest is not
    /// (cut at a char boundary). Default 1 MiB.
    pub max_string_bytes: usize,
    /// Bytes scanned over a whole value; strings after the budget is spent are not scanned.
    /// Default 4 MiB.
    pub max_total_bytes: usize,
    /// JSON nodes (values, including containers) visited in a value. Default 1,000,000.
    pub max_nodes: usize,
    /// Findings kept per scan (one string or one value). Default 1,000.
    pub max_findings: usize,
}

impl DetectorLimits {
    /// No limits: every byte of every string is scanned (the work is still linear in the
    /// size of the input). Used by redaction, which must not leave a match in clear.
    pub fn unbounded() -> DetectorLimits {
        DetectorLimits {
            max_string_bytes: usize::MAX,
            max_total_bytes: usize::MAX,
            max_nodes: usize::MAX,
            max_findings: usize::MAX,
        }
    }
}

impl Default for DetectorLimits {
    fn default() -> DetectorLimits {
        DetectorLimits {
            max_string_bytes: 1 << 20,
            max_total_bytes: 4 << 20,
            max_nodes: 1_000_000,
            max_findings: 1_000,
        }
    }
}

/// What a scan runs and how far it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanOptions {
    /// The detectors to run (default: all).
    pub detectors: DetectorSet,
    /// Work bounds (default: [`DetectorLimits::default`]).
    pub limits: DetectorLimits,
}

impl ScanOptions {
    /// All detectors, default limits.
    pub fn new() -> ScanOptions {
        ScanOptions::default()
    }

    /// Only `detectors`, default limits.
    pub fn only(detectors: DetectorSet) -> ScanOptions {
        ScanOptions {
            detectors,
            limits: DetectorLimits::default(),
        }
    }
}

/// The result of scanning a JSON value.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanReport {
    /// The detections, in document order (depth-first, object members in order; within
    /// one string by position).
    pub detections: Vec<Detection>,
    /// True when a limit of [`DetectorLimits`] stopped the scan before the whole value was
    /// scanned: a caller that must not miss anything (e.g. outbound masking) should treat
    /// the value as unscanned past that point.
    pub truncated: bool,
}

/// Scans one string with the detectors of `opts` and returns its findings, sorted by
/// `start`, then `end`, then detector.
///
/// Only the first `opts.limits.max_string_bytes` bytes are scanned (cut at a char
/// boundary), and at most `opts.limits.max_findings` findings are returned. Any UTF-8,
/// including control characters, is accepted; ranges are byte offsets into `text`.
pub fn scan_text(text: &str, opts: &ScanOptions) -> Vec<Finding> {
    let mut sink = Sink::new(opts.limits.max_findings);
    scan_into(text, opts, &mut sink, None);
    sink.finish()
}

/// Scans every string, number and object key of `value` (iteratively: any depth) and
/// returns the detections and whether a limit stopped the scan.
///
/// Besides the per-string detectors, an object member whose key is key-like (see
/// [`secrets::is_key_like`]) and whose value is a string passing the generic-secret test
/// yields a `generic_secret` detection over the whole value.
pub fn scan_value(value: &Value, opts: &ScanOptions) -> ScanReport {
    walk::scan(value, opts)
}

/// Replaces the matches of `findings` in `text` (ranges as returned by [`scan_text`] on
/// this `text`) according to each detector's [`MaskStyle`].
///
/// Overlapping or touching ranges are merged; a merged range made of one finding, or of
/// findings of one `KeepLast4` detector, keeps its shape, anything else becomes
/// `[REDACTED:<detector>]` naming the detector of its widest finding. A range outside `text`
/// or not on char boundaries is ignored.
pub fn mask_text(text: &str, findings: &[Finding]) -> String {
    let mut ranges: Vec<(usize, usize, Detector)> = findings
        .iter()
        .filter(|f| f.start < f.end && text.get(f.start..f.end).is_some())
        .map(|f| (f.start, f.end, f.detector))
        .collect();
    ranges.sort_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while let Some(&(start, mut end, mut widest)) = ranges.get(i) {
        let mut same = true;
        let mut widest_len = end - start;
        i += 1;
        while let Some(&(next_start, next_end, detector)) = ranges.get(i) {
            if next_start > end {
                break;
            }
            same &= detector == widest;
            if next_end - next_start > widest_len {
                widest_len = next_end - next_start;
                widest = detector;
            }
            end = end.max(next_end);
            i += 1;
        }
        if start < copied {
            continue;
        }
        out.push_str(text.get(copied..start).unwrap_or_default());
        let matched = text.get(start..end).unwrap_or_default();
        if same && widest.mask_style() == MaskStyle::KeepLast4 {
            out.push_str(&keep_last4(matched));
        } else {
            out.push_str("[REDACTED:");
            out.push_str(widest.name());
            out.push(']');
        }
        copied = end;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// Masks, in place, every match in `value` of the detectors of `opts` ([`mask_text`] on
/// each string; a number with a match becomes the masked string of its JSON text; a key
/// with a match is replaced by its masked form, keeping member order, with `#2`, `#3`, …
/// appended if two masked keys collide). Returns the report of the scan; when it is
/// `truncated`, the unscanned rest is left as it was.
pub fn mask_value_in_place(value: &mut Value, opts: &ScanOptions) -> ScanReport {
    let report = walk::scan(value, opts);
    walk::apply_masks(value, &report.detections);
    report
}

/// [`mask_value_in_place`] on a copy: returns the masked value and the scan report.
pub fn mask_value(value: &Value, opts: &ScanOptions) -> (Value, ScanReport) {
    let mut masked = value.clone();
    let report = mask_value_in_place(&mut masked, opts);
    (masked, report)
}

/// Says whether `value` contains a US Social Security number or a payment card number.
///
/// `has_ssn(value) || has_credit_card(value)`; see those functions for the rules. The
/// `has_pii` Rego built-in. Its meaning is unchanged from earlier AAF versions: email
/// addresses, phone numbers, IBANs and IP addresses are reported in `input.detections`, not
/// here.
pub fn has_pii(value: &Value) -> bool {
    has_ssn(value) || has_credit_card(value)
}

/// Whether `matches` holds for any string, number (as JSON writes it), object key or object
/// value of `value`, at any depth: the walk of [`has_ssn`] and [`has_credit_card`], for
/// callers that hold one part of a value in another form (the policy built-ins).
pub fn walk_any_text(value: &Value, matches: fn(&str) -> bool) -> bool {
    walk::any_text(value, matches)
}

/// Says whether `value` contains a US Social Security number in any string, number, array
/// item, object key or object value, at any depth (no size limit).
///
/// See [`text_has_ssn`] for what counts as an SSN. The `has_ssn` Rego built-in.
pub fn has_ssn(value: &Value) -> bool {
    walk::any_text(value, text_has_ssn)
}

/// Says whether `value` contains a payment card number in any string, number, array item,
/// object key or object value, at any depth (no size limit).
///
/// See [`text_has_credit_card`] for what counts as a card number. The `has_credit_card`
/// Rego built-in.
pub fn has_credit_card(value: &Value) -> bool {
    walk::any_text(value, text_has_credit_card)
}

/// Says whether `value` holds a secret: a detection of a `secret` detector by
/// [`scan_value`] with default limits. The `has_secret` Rego built-in.
pub fn has_secret(value: &Value) -> bool {
    !scan_value(
        value,
        &ScanOptions::only(DetectorSet::of_kind(Kind::Secret)),
    )
    .detections
    .is_empty()
}

/// Says whether `value` holds prompt-injection content: a `prompt_injection` detection by
/// [`scan_value`] with default limits. The `has_prompt_injection` Rego built-in.
pub fn has_prompt_injection(value: &Value) -> bool {
    !scan_value(
        value,
        &ScanOptions::only(DetectorSet::of_kind(Kind::PromptInjection)),
    )
    .detections
    .is_empty()
}

/// `text` with every ASCII letter and digit but the last four replaced by `*`.
fn keep_last4(text: &str) -> String {
    let alnum = text.bytes().filter(u8::is_ascii_alphanumeric).count();
    let mut seen = 0;
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                seen += 1;
                if seen + 4 <= alnum {
                    return '*';
                }
            }
            c
        })
        .collect()
}

/// Scans `text` (cut to the string limit) into `sink`; `member_key` is the key of the
/// object member whose value `text` is, if any (for the generic-secret rule). Returns
/// whether the text was cut.
fn scan_into(text: &str, opts: &ScanOptions, sink: &mut Sink, member_key: Option<&str>) -> bool {
    let (text, cut) = truncate(text, opts.limits.max_string_bytes);
    scan_parts(text, opts.detectors, sink, member_key, Parts::ALL);
    cut
}

/// Runs the rules of `set` that `parts` allows over `text` (already cut) into `sink`. With
/// [`Parts::ALL`] this is the whole scan of one string; the batched scan of a JSON value
/// ([`batch`]) passes only the parts whose prefilter matched the string, which is the same
/// result: a part left out cannot match.
pub(crate) fn scan_parts(
    text: &str,
    set: DetectorSet,
    sink: &mut Sink,
    member_key: Option<&str>,
    parts: Parts,
) {
    let facts = Facts::of(text);
    if set.has_kind(Kind::Pii) && parts.any(Parts::PII) {
        pii::scan(text, &facts, set, sink, parts);
    }
    if set.has_kind(Kind::Secret) && parts.any(Parts::SECRET) && facts.may_hold_secret() {
        secrets::scan(text, &facts, set, sink);
    }
    if let Some(key) = member_key {
        if set.contains(Detector::GenericSecret) && parts.any(Parts::MEMBER) {
            secrets::scan_member(key, text, sink);
        }
    }
    if set.contains(Detector::PromptInjection) && parts.any(Parts::INJECTION) {
        injection::scan(text, &facts, sink, parts);
    }
    if set.has_kind(Kind::ToolArgument)
        && parts.any(Parts::TOOL_ARGUMENT)
        && facts.may_hold_tool_attack()
    {
        tool_args::scan(text, set, sink);
    }
}

/// Which rules of the families [`scan_parts`] runs over a string (a bit set). Each part is
/// a group of rules with a prefilter of its own in [`batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Parts(u32);

impl Parts {
    pub(crate) const NONE: Parts = Parts(0);
    pub(crate) const ALL: Parts = Parts(u32::MAX);
    pub(crate) const SSN: Parts = Parts(1);
    pub(crate) const CARD: Parts = Parts(1 << 1);
    pub(crate) const PHONE: Parts = Parts(1 << 2);
    pub(crate) const IBAN: Parts = Parts(1 << 3);
    pub(crate) const IPV4: Parts = Parts(1 << 4);
    pub(crate) const IPV6: Parts = Parts(1 << 5);
    pub(crate) const EMAIL: Parts = Parts(1 << 6);
    /// Every PII rule.
    pub(crate) const PII: Parts = Parts(0x7F);
    /// The token rules and assignments of [`secrets::scan`].
    pub(crate) const SECRET: Parts = Parts(1 << 7);
    /// The generic-secret rule for an object member ([`secrets::scan_member`]).
    pub(crate) const MEMBER: Parts = Parts(1 << 8);
    /// Phrase rules and hidden Unicode.
    pub(crate) const PHRASES: Parts = Parts(1 << 9);
    /// Encoded (base64, hex) phrases.
    pub(crate) const ENCODED: Parts = Parts(1 << 10);
    /// Homoglyph words.
    pub(crate) const HOMOGLYPHS: Parts = Parts(1 << 11);
    /// Every prompt-injection rule.
    pub(crate) const INJECTION: Parts = Parts(0b111 << 9);
    /// Every tool-argument rule.
    pub(crate) const TOOL_ARGUMENT: Parts = Parts(1 << 12);

    /// The union of two sets.
    pub(crate) const fn union(self, other: Parts) -> Parts {
        Parts(self.0 | other.0)
    }

    /// Whether any part of `other` is in this set.
    pub(crate) fn any(self, other: Parts) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Adds the parts of `other`.
    pub(crate) fn add(&mut self, other: Parts) {
        self.0 |= other.0;
    }
}

/// Byte-level facts about a string, gathered in one pass, that let the families skip rules
/// that cannot match (most strings in action parameters are short ids, numbers and URLs).
pub(crate) struct Facts {
    /// ASCII digits.
    pub(crate) digits: usize,
    /// ASCII upper-case letters.
    pub(crate) upper: usize,
    /// Longest run of token characters (`[A-Za-z0-9+/=_-]`).
    pub(crate) max_token_run: usize,
    /// Colons.
    pub(crate) colons: usize,
    /// Whether the string is all ASCII.
    pub(crate) ascii: bool,
    /// Whether it holds ASCII whitespace.
    pub(crate) whitespace: bool,
    /// `@`, `.`, `%`.
    pub(crate) at: bool,
    pub(crate) dot: bool,
    pub(crate) percent: bool,
    /// Any of ``; & | $ ` ' " ( ) < > [ ] \ /`` or a control character.
    pub(crate) special: bool,
    /// A `0x`/`0X` pair.
    pub(crate) zero_x: bool,
    /// Five dashes in a row.
    pub(crate) dashes5: bool,
}

impl Facts {
    pub(crate) fn of(text: &str) -> Facts {
        let mut f = Facts {
            digits: 0,
            upper: 0,
            max_token_run: 0,
            colons: 0,
            ascii: true,
            whitespace: false,
            at: false,
            dot: false,
            percent: false,
            special: false,
            zero_x: false,
            dashes5: false,
        };
        let mut run = 0usize;
        let mut dashes = 0usize;
        let mut previous = 0u8;
        for &b in text.as_bytes() {
            let token = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-');
            run = if token { run + 1 } else { 0 };
            f.max_token_run = f.max_token_run.max(run);
            dashes = if b == b'-' { dashes + 1 } else { 0 };
            f.zero_x |= matches!(b, b'x' | b'X') && previous == b'0';
            f.dashes5 |= dashes >= 5;
            match b {
                b'0'..=b'9' => f.digits += 1,
                b'A'..=b'Z' => f.upper += 1,
                b':' => f.colons += 1,
                b'@' => f.at = true,
                b'.' => f.dot = true,
                b'%' => f.percent = true,
                b';' | b'&' | b'|' | b'$' | b'`' | b'\'' | b'"' | b'(' | b')' | b'<' | b'>'
                | b'[' | b']' | b'\\' | b'/' => f.special = true,
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => f.whitespace = true,
                0x80..=0xFF => f.ascii = false,
                _ if b.is_ascii_control() => f.special = true,
                _ => {}
            }
            previous = b;
        }
        f
    }

    /// Whether a secret rule could match: a token run of 10+ characters (every token rule
    /// and the generic rule need one), an `@` (credentials in a URL) or `-----` (a private
    /// key header).
    fn may_hold_secret(&self) -> bool {
        self.max_token_run >= 10 || self.at || self.dashes5
    }

    /// Whether a tool-argument rule could match: every rule needs whitespace, punctuation
    /// of ``. % ; & | $ ` ' " ( ) < > [ ] \ /``, a control character, `0x`, or (for the
    /// look-alike decoding) non-ASCII text.
    fn may_hold_tool_attack(&self) -> bool {
        self.whitespace || self.special || self.dot || self.percent || self.zero_x || !self.ascii
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary, and
/// whether it is shorter than `text`.
fn truncate(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text.get(..end).unwrap_or_default(), true)
}

/// Collects the findings of one string, up to a cap.
pub(crate) struct Sink {
    findings: Vec<Finding>,
    max: usize,
    full: bool,
}

impl Sink {
    pub(crate) fn new(max: usize) -> Sink {
        Sink {
            findings: Vec::new(),
            max,
            full: false,
        }
    }

    /// Records a finding (ignored when the range is empty or the sink is full).
    pub(crate) fn push(
        &mut self,
        detector: Detector,
        sub_kind: Option<InjectionKind>,
        confidence: f64,
        start: usize,
        end: usize,
    ) {
        if start >= end {
            return;
        }
        if self.findings.len() >= self.max.saturating_mul(4).max(64) {
            // Far more raw findings than will be kept: stop collecting (bounded memory).
            self.full = true;
            return;
        }
        self.findings.push(Finding {
            detector,
            kind: detector.kind(),
            sub_kind,
            confidence: confidence.clamp(0.0, 1.0),
            start,
            end,
        });
    }

    /// Whether more findings than the cap were offered.
    pub(crate) fn overflowed(&self) -> bool {
        self.full || self.findings.len() > self.max
    }

    /// The findings with duplicates removed (a finding inside another of the same detector
    /// and sub-kind is dropped, the container keeping the higher confidence), sorted by
    /// position, cut to the cap.
    pub(crate) fn finish(mut self) -> Vec<Finding> {
        self.findings.sort_by(|a, b| {
            (a.detector, a.sub_kind, a.start, std::cmp::Reverse(a.end)).cmp(&(
                b.detector,
                b.sub_kind,
                b.start,
                std::cmp::Reverse(b.end),
            ))
        });
        let mut kept: Vec<Finding> = Vec::with_capacity(self.findings.len());
        for finding in self.findings {
            if let Some(last) = kept.last_mut() {
                if last.detector == finding.detector
                    && last.sub_kind == finding.sub_kind
                    && finding.start < last.end
                {
                    // Overlapping matches of one rule family: one finding spanning both.
                    last.end = last.end.max(finding.end);
                    last.confidence = last.confidence.max(finding.confidence);
                    continue;
                }
            }
            kept.push(finding);
        }
        kept.sort_by(|a, b| {
            (a.start, a.end, a.detector, a.sub_kind).cmp(&(b.start, b.end, b.detector, b.sub_kind))
        });
        kept.truncate(self.max);
        kept
    }
}

/// Size of the lazy DFA cache of each detector pattern, in bytes. The regex crate's default
/// (2 MiB) is too small for the larger sets: the cache is cleared and rebuilt over and over
/// (measured: a third of the scan time). The memory is only used as states are built.
const DFA_CACHE_BYTES: usize = 32 << 20;

/// Compiles a constant pattern, with `\b` made ASCII-only (`(?-u:\b)`): a Unicode word
/// boundary forces the regex crate off its fast DFA on non-ASCII input.
#[allow(clippy::expect_used)] // Constant patterns; `tests::patterns_compile` compiles all.
pub(crate) fn compile(pattern: &str) -> Regex {
    regex::RegexBuilder::new(&pattern.replace(r"\b", r"(?-u:\b)"))
        .dfa_size_limit(DFA_CACHE_BYTES)
        .build()
        .expect("detector pattern is valid")
}

/// Compiles constant patterns into a set (see [`compile`]).
#[allow(clippy::expect_used)] // Constant patterns; `tests::patterns_compile` compiles all.
pub(crate) fn compile_set(patterns: &[&str]) -> regex::RegexSet {
    regex::RegexSetBuilder::new(patterns.iter().map(|p| p.replace(r"\b", r"(?-u:\b)")))
        .dfa_size_limit(DFA_CACHE_BYTES)
        .build()
        .expect("detector pattern set is valid")
}

/// Shannon entropy of `text` in bits per character (over chars).
pub fn shannon_entropy(text: &str) -> f64 {
    let mut counts = std::collections::HashMap::<char, u32>::new();
    let mut total = 0u32;
    for c in text.chars() {
        *counts.entry(c).or_default() += 1;
        total += 1;
    }
    if total == 0 {
        return 0.0;
    }
    let total = f64::from(total);
    counts
        .values()
        .map(|&n| {
            let p = f64::from(n) / total;
            -p * p.log2()
        })
        .sum()
}

/// The char before byte `at` of `text`, if any.
pub(crate) fn char_before(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|t| t.chars().next_back())
}

/// The char at byte `at` of `text`, if any.
pub(crate) fn char_at(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|t| t.chars().next())
}

/// Forces every lazily compiled pattern of the detectors (tests and benchmarks: the first
/// scan otherwise pays for compilation).
pub fn warm_up() {
    let _ = scan_text(WARM_UP.as_str(), &ScanOptions::new());
    // The prefilters of the batched scan of a value, for the detector sets used in AAF
    // (each combination of families has a pattern of its own).
    let value = Value::from(WARM_UP.as_str());
    for detectors in [
        DetectorSet::all(),
        DetectorSet::redaction(),
        DetectorSet::of_kind(Kind::Secret),
        DetectorSet::of_kind(Kind::PromptInjection),
    ] {
        let _ = scan_value(&value, &ScanOptions::only(detectors));
    }
}

static WARM_UP: LazyLock<String> = LazyLock::new(|| {
    "078-05-1123 4111 1111 1111 1111 a@b.co +1 415 555 0132 DE89 3704 0044 0532 0130 00 \
     10.0.0.1 ::1 AKIAIOSFODNN7EXAMPLE 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 \
     token=8b1118b376c313ed420e5133ba91307817ed52c2 ignore previous instructions \
     ../../etc/passwd ; rm -rf / ' OR 1=1 --"
        .to_string()
});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_compile() {
        pii::force_patterns();
        secrets::force_patterns();
        injection::force_patterns();
        tool_args::force_patterns();
        batch::force_prefilters();
        warm_up();
    }

    #[test]
    fn names_round_trip_and_serialize() {
        for d in Detector::ALL {
            assert_eq!(Detector::from_name(d.name()), Some(d));
            assert_eq!(serde_json::to_value(d).ok(), Some(json!(d.name())));
            assert_eq!(
                serde_json::to_value(d.kind()).ok(),
                Some(json!(d.kind().name()))
            );
        }
        assert_eq!(DetectorSet::all().iter().count(), Detector::ALL.len());
        assert!(DetectorSet::of_kind(Kind::Pii).contains(Detector::Iban));
        assert!(!DetectorSet::of_kind(Kind::Pii).contains(Detector::Jwt));
        assert!(DetectorSet::redaction().contains(Detector::PaymentCard));
        assert!(!DetectorSet::redaction().contains(Detector::Email));
        assert!(DetectorSet::empty().is_empty());
    }

    #[test]
    fn masks_keep_shape_or_label() {
        let text = "card 4111 1111 1111 1111 ssn 078-05-1123 mail a@example.com end";
        let findings = scan_text(text, &ScanOptions::new());
        let masked = mask_text(text, &findings);
        assert_eq!(
            masked,
            "card **** **** **** 1111 ssn ***-**-1123 mail [REDACTED:email] end"
        );
        assert_eq!(mask_text("abc", &[]), "abc");
        // Out-of-range and non-boundary ranges are ignored.
        let bogus = Finding {
            detector: Detector::Email,
            kind: Kind::Pii,
            sub_kind: None,
            confidence: 1.0,
            start: 1,
            end: 99,
        };
        assert_eq!(mask_text("abc", &[bogus]), "abc");
    }

    #[test]
    fn truncation_is_on_char_boundaries() {
        assert_eq!(truncate("aé", 2), ("a", true));
        assert_eq!(truncate("aé", 3), ("aé", false));
        assert_eq!(truncate("", 0), ("", false));
    }

    #[test]
    fn entropy() {
        assert!(shannon_entropy("") == 0.0);
        assert!(shannon_entropy("aaaa") == 0.0);
        assert!((shannon_entropy("ab") - 1.0).abs() < 1e-9);
    }
}
