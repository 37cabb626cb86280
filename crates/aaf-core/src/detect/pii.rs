//! Personal data: US SSNs, payment cards, email addresses, phone numbers, IBANs and IP
//! addresses.
//!
//! - `us_ssn` (confidence 0.85): the rules of Microsoft Presidio's `UsSsnRecognizer` at its
//!   medium-confidence level (`AAA-GG-SSSS` with `-`, `.` or a space, the same delimiter
//!   twice, not touching other letters or digits, valid per the Social Security
//!   Administration: area not `000`, `666`, `900`-`999`; group not `00`; serial not `0000`;
//!   not one digit nine times; not the advertising numbers `078-05-1120`, `219-09-9999`,
//!   `123-45-6789`). Undelimited nine-digit numbers are not reported (Presidio scores them
//!   "weak": any nine-digit id, amount or phone number would match).
//! - `payment_card` (0.95): 13 to 19 digits, optionally in groups separated by single spaces
//!   or dashes, Luhn-valid (ISO/IEC 7812-1 Annex B), with the issuer prefix and length of a
//!   network (Presidio's `CreditCardRecognizer` test cases; see [`text_has_credit_card`]).
//! - `email` (0.9): `local@domain.tld` (local part at most 64 bytes, labels at most 63, the
//!   domain at most 253) with an alphabetic or IDNA (`xn--`) top-level domain; not the
//!   `user:password@host` of a URL.
//! - `phone` (0.5 to 0.8): `+` and a country code with 8 to 15 digits (0.8); North American
//!   `(415) 555-0132`, `415-555-0132`, `415.555.0132` (0.75); 9 to 13 digits in 2 to 5
//!   groups separated by single spaces or dashes (0.6; not the SSN shape 3-2-4, not a date,
//!   not thousands groups); 10 to 12 bare digits within 40 bytes after a word such as
//!   `phone`, `call`, `number` (0.5). Presidio uses Google's libphonenumber with region
//!   hints; these shapes cover its test cases without a numbering-plan database.
//! - `iban` (0.9): a country code, two check digits and up to 30 letters or digits (groups
//!   of four may be separated by single spaces), the length the SWIFT IBAN registry gives
//!   for that country, and the ISO 7064 mod 97-10 check (remainder 1).
//! - `ip_address`: a dotted-quad IPv4 address (each part 0-255; 0.6, since version numbers
//!   look the same) or an IPv6 address accepted by the standard library's parser, with an
//!   optional zone (`fe80::1%eth0`; at least two colons and a digit; 0.8).

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use regex::Regex;

use super::batch::Prefilter;
use super::{char_at, char_before, compile, Detector, DetectorSet, Facts, Parts, Sink};

/// A US SSN candidate: area, delimiter, group, delimiter, serial. Validity and boundaries are
/// checked in code (the `regex` crate has no look-around).
static SSN_CANDIDATE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"([0-9]{3})([-. ])([0-9]{2})([-. ])([0-9]{4})"));

/// A maximal run of ASCII digit groups separated by single spaces or dashes.
static DIGIT_RUN: LazyLock<Regex> = LazyLock::new(|| compile(r"[0-9]+(?:[ -][0-9]+)*"));

/// An email address candidate (ASCII or Unicode letters in the domain, IDNA TLDs).
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"[\p{L}\p{N}._%+\-]+@(?:[\p{L}\p{N}](?:[\p{L}\p{N}\-]*[\p{L}\p{N}])?\.)+(?:xn--[A-Za-z0-9\-]+|\p{L}{2,})",
    )
});

/// Phone shapes with punctuation: international (`+CC …`) and North American.
static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,5}\)?){2,6}|\([2-9][0-9]{2}\)[ ]?[2-9][0-9]{2}[ .\-][0-9]{4}|[2-9][0-9]{2}\.[2-9][0-9]{2}\.[0-9]{4}",
    )
});

/// An IBAN candidate: country, check digits, then letters and digits in groups of four
/// (optionally separated by single spaces).
static IBAN: LazyLock<Regex> =
    LazyLock::new(|| compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"));

/// A dotted-quad IPv4 address.
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}",
    )
});

/// An IPv6 candidate: hex digits, colons (at least two) and dots, and an optional zone.
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*(?:%[A-Za-z0-9_.\-]{1,32})?")
});

/// Words after which a run of bare digits is read as a phone number.
const PHONE_CONTEXT: &[&str] = &[
    "phone", "tel", "mobile", "cell", "call", "number", "fax", "whatsapp", "contact", "sms",
];

/// Shortest and longest payment card number, in digits (ISO/IEC 7812-1 allows 8 to 19; the
/// major networks issue 13 to 19).
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;

/// Social Security numbers that were never issued to a person although they look valid:
/// the Woolworth wallet card number, an SSA advertising number, and the textbook example.
const ADVERTISED_SSNS: &[&str] = &["078051120", "219099999", "123456789"];

/// IBAN lengths by country (SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// The prefilter of the PII rules (see [`super::batch`]): for each part, a pattern that
/// matches wherever one of its rules can report (a superset of their matches):
///
/// - SSN: the shape with one delimiter twice, area not `9xx`, not touching an ASCII letter or
///   digit;
/// - card: 13 digits with single spaces or dashes between them, the first one an issuer
///   digit `1`-`6`, at the start of a digit group;
/// - phone: the start of the punctuated shapes (`+` and a digit, `(415)`, `415.555.0132`),
///   or 9 digits (single spaces or dashes between them; no
///   one-digit first group) not after a letter, digit or one of `_ - / @ # \ + .`;
/// - IBAN: a country code, check digits and two groups of four;
/// - IPv4: four dotted groups of 1-3 digits; IPv6: two colons with only hex digits and dots
///   between them; email: an `@`.
pub(crate) static PREFILTER: LazyLock<Prefilter> = LazyLock::new(|| {
    Prefilter::new(&[
        (
            r"(?:^|[^0-9A-Za-z])[0-8][0-9]{2}(?:-[0-9]{2}-|\.[0-9]{2}\.| [0-9]{2} )[0-9]{4}(?:$|[^0-9A-Za-z])",
            Parts::SSN,
        ),
        (r"(?:^|[^0-9])[1-6](?:[ -]?[0-9]){12}", Parts::CARD),
        (
            r"\+[1-9]|\([2-9][0-9]{2}\)|[2-9][0-9]{2}\.[2-9][0-9]{2}\.[0-9]{4}",
            Parts::PHONE,
        ),
        (
            r"(?:^|[^0-9A-Za-z_\-/@#\\+.])[0-9]{2}(?:[ -]?[0-9]){7}",
            Parts::PHONE,
        ),
        (r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}", Parts::IBAN),
        (r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]", Parts::IPV4),
        (r":[0-9A-Fa-f.]*:", Parts::IPV6),
        (r"@", Parts::EMAIL),
    ])
});

/// Runs the PII detectors of `set` (those of `parts`) over `text`.
pub(crate) fn scan(text: &str, facts: &Facts, set: DetectorSet, sink: &mut Sink, parts: Parts) {
    if parts.any(Parts::SSN) && set.contains(Detector::UsSsn) && facts.digits >= 9 {
        ssn_matches(text, |start, end| {
            sink.push(Detector::UsSsn, None, 0.85, start, end);
            true
        });
    }
    if parts.any(Parts::CARD)
        && set.contains(Detector::PaymentCard)
        && facts.digits >= *CARD_DIGITS.start()
    {
        card_matches(text, |start, end| {
            sink.push(Detector::PaymentCard, None, 0.95, start, end);
            true
        });
    }
    if parts.any(Parts::PHONE) && set.contains(Detector::Phone) && facts.digits >= 8 {
        phones(text, sink);
    }
    if parts.any(Parts::IBAN)
        && set.contains(Detector::Iban)
        && facts.upper >= 2
        && facts.digits >= 2
        && text.len() >= 15
    {
        ibans(text, sink);
    }
    if parts.any(Parts::IPV4.union(Parts::IPV6)) && set.contains(Detector::IpAddress) {
        ips(text, facts, sink, parts);
    }
    if parts.any(Parts::EMAIL) && set.contains(Detector::Email) && facts.at {
        emails(text, sink);
    }
}

/// Says whether `text` contains a US Social Security number.
///
/// Matches `AAA-GG-SSSS`, `AAA GG SSSS` and `AAA.GG.SSSS` (the same delimiter twice: Presidio
/// rejects `693-09.4444`), neither preceded nor followed by a letter, a digit, or `-` or `.`
/// next to a digit (so `1-078-05-1123` and `078-05-1123-4` are not SSNs). The number must be
/// one the Social Security Administration could have issued: area not `000`, `666` or
/// `900`-`999`, group not `00`, serial not `0000`, not nine times the same digit, and not one
/// of the advertising numbers `078-05-1120`, `219-09-9999` and `123-45-6789`. Nine digits
/// without delimiters are not matched.
pub fn text_has_ssn(text: &str) -> bool {
    // An SSN has nine ASCII digits: a text with fewer has none (no regex search).
    if ascii_digit_count(text) < 9 {
        return false;
    }
    let mut found = false;
    ssn_matches(text, |_, _| {
        found = true;
        false
    });
    found
}

/// The number of ASCII digits in `text`.
fn ascii_digit_count(text: &str) -> usize {
    text.bytes().filter(u8::is_ascii_digit).count()
}

/// Calls `found(start, end)` for each SSN in `text` until it returns false.
fn ssn_matches(text: &str, mut found: impl FnMut(usize, usize) -> bool) {
    let mut start = 0;
    while let Some(captures) = SSN_CANDIDATE.captures_at(text, start) {
        let (Some(whole), Some(area), Some(first), Some(group), Some(second), Some(serial)) = (
            captures.get(0),
            captures.get(1),
            captures.get(2),
            captures.get(3),
            captures.get(4),
            captures.get(5),
        ) else {
            return;
        };
        if first.as_str() == second.as_str()
            && ssn_boundaries_ok(text, whole.start(), whole.end())
            && ssn_is_valid(area.as_str(), group.as_str(), serial.as_str())
        {
            if !found(whole.start(), whole.end()) {
                return;
            }
            start = whole.end();
        } else {
            // The candidate starts with an ASCII digit, so the next byte is a char boundary;
            // restarting there finds candidates that overlap a rejected one.
            start = whole.start() + 1;
        }
    }
}

fn ssn_boundaries_ok(text: &str, start: usize, end: usize) -> bool {
    let mut before = text.get(..start).unwrap_or_default().chars().rev();
    match before.next() {
        Some(c) if c.is_alphanumeric() => return false,
        Some('-' | '.') if before.next().is_some_and(|c| c.is_ascii_digit()) => return false,
        _ => {}
    }
    let mut after = text.get(end..).unwrap_or_default().chars();
    match after.next() {
        None => true,
        Some(c) if c.is_alphanumeric() => false,
        Some('-' | '.') => !after.next().is_some_and(|c| c.is_ascii_digit()),
        Some(_) => true,
    }
}

fn ssn_is_valid(area: &str, group: &str, serial: &str) -> bool {
    if area == "000" || area == "666" || area.starts_with('9') || group == "00" || serial == "0000"
    {
        return false;
    }
    let digits = format!("{area}{group}{serial}");
    let all_same = digits
        .bytes()
        .all(|digit| Some(digit) == digits.bytes().next());
    !all_same && !ADVERTISED_SSNS.contains(&digits.as_str())
}

/// Says whether `text` contains a payment card number.
///
/// Looks at every run of ASCII digits in groups separated by single spaces or dashes
/// (`4111 1111 1111 1111`, `4111-1111-1111-1111`, `4111111111111111`) and at every sequence of
/// whole consecutive groups in it with 13 to 19 digits. Such a sequence is a card number when
/// it passes [`luhn_valid`] and its issuer prefix and length fit a network: Visa `4` (13, 16 or
/// 19 digits), Mastercard `51`-`55` and `2221`-`2720` (16), American Express `34`, `37` (15),
/// Diners Club `300`-`305`, `309`, `36`, `38`, `39` (14-19), JCB `3528`-`3589` (16-19), Mir
/// `2200`-`2204` (16-19), Maestro and Dankort `50`, `56`-`58` (13-19), Discover, UnionPay,
/// RuPay and Maestro `6` (13-19), UATP/AirPlus `1` (15). So `1748503543012` (Luhn-valid, no
/// network) and a 16-digit run with a bad check digit are not card numbers.
pub fn text_has_credit_card(text: &str) -> bool {
    // A card number has at least 13 ASCII digits: a text with fewer has none.
    if ascii_digit_count(text) < *CARD_DIGITS.start() {
        return false;
    }
    let mut found = false;
    card_matches(text, |_, _| {
        found = true;
        false
    });
    found
}

/// Calls `found(start, end)` for each card number in `text` until it returns false. After
/// a match, the search goes on after its last group.
fn card_matches(text: &str, mut found: impl FnMut(usize, usize) -> bool) {
    for run in DIGIT_RUN.find_iter(text) {
        // Byte ranges of the run's groups, relative to `text`.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut at = run.start();
        for group in run.as_str().split([' ', '-']) {
            groups.push((at, at + group.len()));
            at += group.len() + 1;
        }
        let mut first = 0;
        'outer: while first < groups.len() {
            let mut digits = String::new();
            for (last, &(start, end)) in groups.iter().enumerate().skip(first) {
                digits.push_str(text.get(start..end).unwrap_or_default());
                if digits.len() > *CARD_DIGITS.end() {
                    break;
                }
                if CARD_DIGITS.contains(&digits.len())
                    && card_prefix_fits(&digits)
                    && luhn_valid(&digits)
                {
                    let begin = groups.get(first).map_or(start, |g| g.0);
                    if !found(begin, end) {
                        return;
                    }
                    first = last + 1;
                    continue 'outer;
                }
            }
            first += 1;
        }
    }
}

/// Whether the issuer identification number (the leading digits) of an all-digit `number`
/// belongs to a card network that issues numbers of this length.
fn card_prefix_fits(number: &str) -> bool {
    let prefix = |len: usize| -> u32 {
        number
            .get(..len)
            .and_then(|digits| digits.parse().ok())
            .unwrap_or(0)
    };
    let len = number.len();
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    match p1 {
        1 => len == 15,
        2 => {
            ((2221..=2720).contains(&p4) && len == 16) || ((2200..=2204).contains(&p4) && len >= 16)
        }
        3 => {
            ((p2 == 34 || p2 == 37) && len == 15)
                || (((300..=305).contains(&p3) || p3 == 309 || p2 == 36 || p2 == 38 || p2 == 39)
                    && len >= 14)
                || ((3528..=3589).contains(&p4) && len >= 16)
        }
        4 => len == 13 || len == 16 || len == 19,
        5 => ((51..=55).contains(&p2) && len == 16) || p2 == 50 || (56..=58).contains(&p2),
        6 => true,
        _ => false,
    }
}

/// The Luhn (mod 10) check of ISO/IEC 7812-1 Annex B, used by every payment card number.
///
/// `digits` is ASCII digits, optionally separated by spaces or dashes (which are ignored).
/// Returns `false` for any other character and for fewer than two digits.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for c in digits.chars().rev() {
        if c == ' ' || c == '-' {
            continue;
        }
        let Some(digit) = c.to_digit(10).filter(|_| c.is_ascii_digit()) else {
            return false;
        };
        let value = if count % 2 == 1 {
            let doubled = digit * 2;
            if doubled > 9 {
                doubled - 9
            } else {
                doubled
            }
        } else {
            digit
        };
        sum += value;
        count += 1;
    }
    // Not `is_multiple_of`, which is newer than the workspace rust-version (1.85).
    count >= 2 && matches!(sum % 10, 0)
}

/// Whether `iban` (letters and digits, no spaces, upper case) passes the ISO 7064 mod 97-10
/// check of ISO 13616: the country and check digits moved to the end, letters as 10-35, the
/// number modulo 97 is 1.
pub fn iban_checksum_valid(iban: &str) -> bool {
    if iban.len() < 5 || !iban.is_ascii() {
        return false;
    }
    let (head, tail) = iban.split_at(4);
    let mut remainder: u32 = 0;
    for c in tail.chars().chain(head.chars()) {
        let value = match c {
            '0'..='9' => u32::from(c) - u32::from('0'),
            'A'..='Z' => u32::from(c) - u32::from('A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

fn ibans(text: &str, sink: &mut Sink) {
    for candidate in IBAN.find_iter(text) {
        let raw = candidate.as_str();
        let Some(country) = raw.get(..2) else {
            continue;
        };
        let Some(&(_, length)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) else {
            continue;
        };
        // Take exactly `length` letters and digits (the candidate may run into a following
        // word); the end must then be the end of a group.
        let mut count = 0;
        let mut end = None;
        for (i, c) in raw.char_indices() {
            if c != ' ' {
                count += 1;
                if count == length {
                    end = Some(i + c.len_utf8());
                    break;
                }
            }
        }
        let Some(end) = end else {
            continue;
        };
        if !matches!(raw.as_bytes().get(end), None | Some(b' ')) {
            continue;
        }
        let compact: String = raw.get(..end).unwrap_or_default().replace(' ', "");
        if iban_checksum_valid(&compact) {
            sink.push(
                Detector::Iban,
                None,
                0.9,
                candidate.start(),
                candidate.start() + end,
            );
        }
    }
}

/// Whether `c` may not touch a phone number or an IP address (part of a word, an
/// identifier, a path or a longer number).
fn joins_number(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | '@' | '#' | '\\' | '+')
}

fn phone_boundaries_ok(text: &str, start: usize, end: usize) -> bool {
    let before_ok = !char_before(text, start).is_some_and(|c| joins_number(c) || c == '.');
    let mut after = text.get(end..).unwrap_or_default().chars();
    let after_ok = match after.next() {
        None => true,
        Some('.') => !after.next().is_some_and(|c| c.is_ascii_digit()),
        Some(c) => !joins_number(c),
    };
    before_ok && after_ok
}

fn phones(text: &str, sink: &mut Sink) {
    for m in PHONE.find_iter(text) {
        let digits = ascii_digit_count(m.as_str());
        let international = m.as_str().starts_with('+');
        if international && !(8..=15).contains(&digits) {
            continue;
        }
        if phone_boundaries_ok(text, m.start(), m.end()) {
            let confidence = if international { 0.8 } else { 0.75 };
            sink.push(Detector::Phone, None, confidence, m.start(), m.end());
        }
    }
    for run in DIGIT_RUN.find_iter(text) {
        if char_before(text, run.start()) == Some('+') {
            continue; // The international shape above.
        }
        if !phone_boundaries_ok(text, run.start(), run.end()) {
            continue;
        }
        let groups: Vec<&str> = run.as_str().split([' ', '-']).collect();
        let digits: usize = groups.iter().map(|g| g.len()).sum();
        if groups.len() == 1 {
            if (10..=12).contains(&digits) && phone_context_before(text, run.start()) {
                sink.push(Detector::Phone, None, 0.5, run.start(), run.end());
            }
            continue;
        }
        if (2..=5).contains(&groups.len()) && (9..=13).contains(&digits) && !not_a_phone(&groups) {
            sink.push(Detector::Phone, None, 0.6, run.start(), run.end());
        }
    }
}

/// Digit-group shapes that are something else: the SSN shape 3-2-4, a date
/// (`2024-01-15 …`), thousands groups (`1 000 000 000`), a group of one digit.
fn not_a_phone(groups: &[&str]) -> bool {
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let ssn_shape = lens == [3, 2, 4];
    let date = lens.len() >= 3
        && lens.first() == Some(&4)
        && lens.get(1) == Some(&2)
        && lens.get(2) == Some(&2)
        && groups
            .first()
            .is_some_and(|y| y.starts_with("19") || y.starts_with("20"));
    let thousands = lens.first().is_some_and(|&l| l <= 3) && lens.iter().skip(1).all(|&l| l == 3);
    let single = lens.contains(&1);
    ssn_shape || date || thousands || single
}

/// Whether one of [`PHONE_CONTEXT`] appears (as a word start) in the 40 bytes before `at`.
fn phone_context_before(text: &str, at: usize) -> bool {
    let mut from = at.saturating_sub(40);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let window = text.get(from..at).unwrap_or_default().to_ascii_lowercase();
    PHONE_CONTEXT.iter().any(|word| {
        window.match_indices(word).any(|(i, _)| {
            i == 0
                || !window
                    .as_bytes()
                    .get(i - 1)
                    .is_some_and(u8::is_ascii_alphabetic)
        })
    })
}

fn ips(text: &str, facts: &Facts, sink: &mut Sink, parts: Parts) {
    if parts.any(Parts::IPV4) && facts.dot && facts.digits >= 4 {
        for m in IPV4.find_iter(text) {
            let before_ok = !char_before(text, m.start())
                .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'));
            let mut after = text.get(m.end()..).unwrap_or_default().chars();
            let after_ok = match after.next() {
                None => true,
                Some('.') => !after.next().is_some_and(|c| c.is_ascii_digit()),
                Some(c) => !(c.is_alphanumeric() || c == '_'),
            };
            if before_ok && after_ok {
                sink.push(Detector::IpAddress, None, 0.6, m.start(), m.end());
            }
        }
    }
    if parts.any(Parts::IPV6) && facts.colons >= 2 && facts.digits >= 1 {
        for m in IPV6.find_iter(text) {
            let candidate = m.as_str();
            let (address, _zone) = candidate.split_once('%').unwrap_or((candidate, ""));
            let trimmed = address.trim_end_matches('.');
            if trimmed.matches(':').count() < 2 || !trimmed.bytes().any(|b| b.is_ascii_digit()) {
                continue;
            }
            let before_ok = !char_before(text, m.start())
                .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '.'));
            let end = if trimmed.len() < address.len() {
                m.start() + trimmed.len()
            } else {
                m.end()
            };
            let after_ok = !char_at(text, end).is_some_and(|c| c.is_alphanumeric() || c == '_');
            if before_ok && after_ok && trimmed.parse::<Ipv6Addr>().is_ok() {
                sink.push(Detector::IpAddress, None, 0.8, m.start(), end);
            }
        }
    }
}

fn emails(text: &str, sink: &mut Sink) {
    for m in EMAIL.find_iter(text) {
        let local_end = m.as_str().find('@').map_or(m.start(), |i| m.start() + i);
        let local = text.get(m.start()..local_end).unwrap_or_default();
        let domain = text.get(local_end + 1..m.end()).unwrap_or_default();
        if local.len() > 64
            || domain.len() > 253
            || domain.split('.').any(|label| label.len() > 63)
            || local.starts_with('.')
            || local.ends_with('.')
        {
            continue;
        }
        if char_at(text, m.end()).is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '@') {
            continue;
        }
        if in_url_userinfo(text, m.start()) {
            continue;
        }
        sink.push(Detector::Email, None, 0.9, m.start(), m.end());
    }
}

/// Whether byte `at` is inside the user information of a URL (`scheme://user:pass@`): a
/// `://` earlier in the same whitespace-free token.
fn in_url_userinfo(text: &str, at: usize) -> bool {
    let before = text.get(..at).unwrap_or_default();
    let token_start = before
        .rfind(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '(' | '['))
        .map_or(0, |i| i + 1);
    before
        .get(token_start..)
        .unwrap_or_default()
        .contains("://")
}

/// Compiles every pattern of this module (tests).
#[cfg(test)]
pub(crate) fn force_patterns() {
    for re in [
        &SSN_CANDIDATE,
        &DIGIT_RUN,
        &EMAIL,
        &PHONE,
        &IBAN,
        &IPV4,
        &IPV6,
    ] {
        assert!(!re.as_str().is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{scan_text, Detector, DetectorSet, ScanOptions};

    fn found(text: &str, detector: Detector) -> bool {
        scan_text(
            text,
            &ScanOptions::only(DetectorSet::empty().with(detector)),
        )
        .iter()
        .any(|f| f.detector == detector)
    }

    #[test]
    fn luhn() {
        for valid in [
            "4111111111111111",
            "4012-8888-8888-1881",
            "4012 8888 8888 1881",
            "79927398713",
            "00",
            "18",
        ] {
            assert!(luhn_valid(valid), "{valid}");
        }
        for invalid in [
            "4111111111111112",
            "79927398710",
            "",
            "0",
            "-",
            "4111x111111111111",
            "٤١١١١١١١١١١١١١١١",
            "12",
        ] {
            assert!(!luhn_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn ssn_text() {
        for text in [
            "078-05-1123",
            "078.05.1123",
            "078 05 1123",
            "abc 078 05 1123 abc",
            "ssn:078-05-1123.",
            "(078-05-1123)",
            "ssn=078-05-1123, next",
            "1234-56-7890 then 078-05-1123",
            "665-01-0001",
            "899-99-9999",
            "call 555-12-3456",
        ] {
            assert!(text_has_ssn(text), "{text:?} must match");
            assert!(found(text, Detector::UsSsn), "{text:?} must match");
        }
        for text in [
            "078051123",
            "078-051121 07805-1121",
            "693-09.4444",
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "078-00-1123",
            "078-05-0000",
            "111-11-1111",
            "078-05-1120",
            "219-09-9999",
            "123-45-6789",
            "1078-05-1123",
            "078-05-11234",
            "x078-05-1123",
            "078-05-1123x",
            "078-05-1123-4",
            "1-078-05-1123.5",
            "1-078-05-1123",
            "2.078.05.1123",
        ] {
            assert!(!text_has_ssn(text), "{text:?} must not match");
            assert!(!found(text, Detector::UsSsn), "{text:?} must not match");
        }
    }

    #[test]
    fn card_text() {
        for text in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "card: 4111 1111 1111 1111, exp 12/29",
            "2024-01-15 4111 1111 1111 1111",
            "371449635398431",
            "3714 496353 98431",
            "5555555555554444",
            "2223000048400011",
            "6011000400000000",
            "3528000700000000",
            "30569309025904",
            "122000000000003",
            "4222222222222",
        ] {
            assert!(text_has_credit_card(text), "{text:?} must match");
            assert!(found(text, Detector::PaymentCard), "{text:?} must match");
        }
        for text in [
            "4111111111111112",
            "1748503543012",
            "41111111111111111111",
            "4111  1111 1111 1111",
            "4111--1111-1111-1111",
            "4111.1111.1111.1111",
            "1234567890123456",
            "9111111111111111",
            "5511984565666",
            "order 12345, amount 42",
            "",
        ] {
            assert!(!text_has_credit_card(text), "{text:?} must not match");
            assert!(
                !found(text, Detector::PaymentCard),
                "{text:?} must not match"
            );
        }
    }

    #[test]
    fn card_ranges_cover_the_number_only() {
        let text = "2024-01-15 4111 1111 1111 1111 ok";
        let findings = scan_text(
            text,
            &ScanOptions::only(DetectorSet::empty().with(Detector::PaymentCard)),
        );
        let ranges: Vec<&str> = findings
            .iter()
            .filter_map(|f| text.get(f.start..f.end))
            .collect();
        assert_eq!(ranges, ["4111 1111 1111 1111"]);
    }

    #[test]
    fn emails() {
        for text in [
            "info@presidio.site",
            "write to a.b+c@mail.example.co.uk.",
            "user@xn--80ak6aa92e.com",
            "a@xn--d1acufc.xn--p1ai",
            "josé@exämple.de",
        ] {
            assert!(found(text, Detector::Email), "{text:?}");
        }
        for text in [
            "my email is info@presidio.",
            "https://username:password@yelp.com",
            "@handle",
            "a@b",
            "x.@example.com",
        ] {
            assert!(!found(text, Detector::Email), "{text:?}");
        }
    }

    #[test]
    fn phones() {
        for text in [
            "My US number is (415) 555-0132",
            "+1 415 555 0132",
            "call 415.555.0132",
            "My Israeli number is 09-7625400",
            "Brazil: +55 11 98456 5666",
            "My Japanese number is 090-1234-5678",
            "My CN number is 13812345678",
            "+44 20 7946 0958",
        ] {
            assert!(found(text, Detector::Phone), "{text:?}");
        }
        for text in [
            "078-05-1123",
            "2024-01-15 10:30",
            "1 000 000 000",
            "13812345678",
            "order 4012-8888-8888-1882",
            "my ip: 192.168.0",
            "xoxb-781236542736-2364535789652-Gkw",
            "id e8e4df51-2054-49b0",
            "version 1.2.3",
        ] {
            assert!(!found(text, Detector::Phone), "{text:?}");
        }
    }

    #[test]
    fn ibans() {
        assert!(iban_checksum_valid("DE89370400440532013000"));
        assert!(iban_checksum_valid("GB82WEST12345698765432"));
        assert!(!iban_checksum_valid("DE89370400440532013001"));
        assert!(!iban_checksum_valid("DE"));
        for text in [
            "DE89 3704 0044 0532 0130 00",
            "pay to GB82WEST12345698765432 today",
            "FR1420041010050500013M02606",
            "NO9386011117947",
            "DE89 3704 0044 0532 0130 00 THANKS",
        ] {
            assert!(found(text, Detector::Iban), "{text:?}");
        }
        for text in [
            "DE89 3704 0044 0532 0130 01",
            "XX89370400440532013000",
            "DE8937040044053201300",
            "de89370400440532013000",
        ] {
            assert!(!found(text, Detector::Iban), "{text:?}");
        }
    }

    #[test]
    fn ips() {
        for text in [
            "microsoft.com 192.168.0.1",
            "::ffff:127.0.0.1",
            "fe80::1%eth0",
            "Connect to [2001:db8::1]:8080",
            "::1",
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
            "host 10.0.0.255.",
        ] {
            assert!(found(text, Detector::IpAddress), "{text:?}");
        }
        for text in [
            "my ip: 192.168.0",
            "256.1.1.1",
            "1.2.3.4.5",
            "12:30:45",
            "std::io::Result",
            "a::b",
            "00:1a:2b:3c:4d:5e",
            "x1.2.3.4",
        ] {
            assert!(!found(text, Detector::IpAddress), "{text:?}");
        }
    }
}
