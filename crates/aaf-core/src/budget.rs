//! Budgets: how many tokens, or how much money, an agent or a whole organisation may spend
//! on LLM calls per day, per month or in total. No I/O; the server keeps what was spent per
//! window and refuses an action whose estimate would go over.
//!
//! The pure parts live here: the [`Budget`] type and its validation ([`validate`]), the
//! windows spending is counted in ([`BudgetPeriod::window`], UTC), reading what a call used
//! out of a provider's response ([`usage_from_response`]), bounding what a call may use
//! before it runs ([`estimate_request`]) and pricing tokens ([`PriceTable`]).
//!
//! A budget's unit is either [`TOKENS`] or a currency code (ISO 4217 shape, see
//! [`is_currency_code`]); amounts of a currency are integer micro-units (1 USD =
//! 1 000 000 micro-units), so that sums are exact.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, Month, OffsetDateTime, UtcOffset};

/// Largest limit a budget may have: 10^15 micro-units (10^9 of the currency) or tokens.
/// It stays below 2^53, so it survives a JSON client that reads numbers as doubles.
pub const MAX_LIMIT: u64 = 1_000_000_000_000_000;

/// Largest price a [`ModelPrice`] may carry, in micro-units per one million tokens (10^6 of
/// the currency per one million tokens).
pub const MAX_PRICE_PER_MILLION: u64 = 1_000_000_000_000;

/// The unit of a token budget; any other unit is a currency code.
pub const TOKENS: &str = "tokens";

/// Whether `s` has the shape of an ISO 4217 currency code: exactly three ASCII upper-case
/// letters (`USD`, `EUR`). Whether the code is configured is [`validate`]'s to check.
pub fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// The period a budget's spending is counted over before it starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// One UTC calendar day.
    Day,
    /// One UTC calendar month.
    Month,
    /// Ever: the budget never starts again.
    Total,
}

impl BudgetPeriod {
    /// Every period, in the order the documentation lists them.
    pub const ALL: [BudgetPeriod; 3] =
        [BudgetPeriod::Day, BudgetPeriod::Month, BudgetPeriod::Total];

    /// The name as stored and as the API spells it: `day`, `month`, `total`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
            BudgetPeriod::Total => "total",
        }
    }

    /// The period of this name, if it is one.
    pub fn parse(name: &str) -> Option<BudgetPeriod> {
        BudgetPeriod::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The word used in prose: `daily`, `monthly`, `total`.
    pub fn adjective(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "daily",
            BudgetPeriod::Month => "monthly",
            BudgetPeriod::Total => "total",
        }
    }

    /// The key of the window that holds `now`, in UTC whatever the offset of `now`:
    /// `YYYY-MM-DD` for a day (`2026-12-05`), `YYYY-MM` for a month (`2026-12`) and `total`
    /// for the whole time. Spending is counted per budget and window key.
    pub fn window(self, now: OffsetDateTime) -> String {
        let date = now.to_offset(UtcOffset::UTC).date();
        match self {
            BudgetPeriod::Day => format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            ),
            BudgetPeriod::Month => format!("{:04}-{:02}", date.year(), u8::from(date.month())),
            BudgetPeriod::Total => "total".to_string(),
        }
    }

    /// When the window that holds `now` ends and the budget starts again: midnight UTC of
    /// the next day, or of the first day of the next month. `None` for [`BudgetPeriod::Total`]
    /// (it never starts again), and at the end of the range of dates `time` can represent.
    pub fn window_end(self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let date = now.to_offset(UtcOffset::UTC).date();
        let next = match self {
            BudgetPeriod::Day => date.next_day()?,
            BudgetPeriod::Month => match date.month() {
                Month::December => Date::from_calendar_date(date.year() + 1, Month::January, 1),
                month => Date::from_calendar_date(date.year(), month.next(), 1),
            }
            .ok()?,
            BudgetPeriod::Total => return None,
        };
        Some(next.midnight().assume_utc())
    }
}

impl std::fmt::Display for BudgetPeriod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A budget as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// UUIDv7 string.
    pub id: String,
    /// The organisation it belongs to.
    pub org_id: String,
    /// The agent it limits; `None`: the whole organisation (every agent's spending together).
    pub agent_id: Option<String>,
    /// [`TOKENS`] or a configured currency code (amounts in micro-units).
    pub unit: String,
    /// The period spending is counted over.
    pub period: BudgetPeriod,
    /// Most that may be spent per window, 1 to [`MAX_LIMIT`], in tokens or micro-units.
    pub limit: u64,
    /// When it was created (RFC 3339 UTC, six fractional digits).
    pub created_at: String,
    /// When it was last changed (same format).
    pub updated_at: String,
}

impl Budget {
    /// Whether it counts the spending of `agent_id`: an organisation's budget counts every
    /// agent's, an agent's budget only that agent's.
    pub fn applies(&self, agent_id: &str) -> bool {
        self.agent_id.as_deref().is_none_or(|a| a == agent_id)
    }

    /// Whether its unit is [`TOKENS`] (otherwise it is a currency, in micro-units).
    pub fn is_tokens(&self) -> bool {
        self.unit == TOKENS
    }

    /// The reason of a refusal by this budget, given what was `spent` in the current window
    /// and the `amount` the action may need at most (both in the budget's unit); it starts
    /// with `budget: `. For example `budget: the agent's daily budget of 5000000 USD
    /// micro-units has 200000 left and this action needs up to 300000`, or, once `spent`
    /// reaches the limit, `budget: the organisation's monthly budget of 100000 tokens is
    /// exhausted (100000 spent)`.
    pub fn refusal(&self, spent: u64, amount: u64) -> String {
        let whose = if self.agent_id.is_some() {
            "the agent's"
        } else {
            "the organisation's"
        };
        let unit = if self.is_tokens() {
            TOKENS.to_string()
        } else {
            format!("{} micro-units", self.unit)
        };
        let what = format!(
            "{whose} {} budget of {} {unit}",
            self.period.adjective(),
            self.limit
        );
        if spent >= self.limit {
            format!("budget: {what} is exhausted ({spent} spent)")
        } else {
            format!(
                "budget: {what} has {} left and this action needs up to {amount}",
                self.limit - spent
            )
        }
    }
}

/// Checks the fields of a budget as an API request gives them and returns them typed:
/// `(unit, period, limit)`. `unit` must be [`TOKENS`] or one of `allowed_currencies` (the
/// currencies the deployment has prices for); `period` must be `day`, `month` or `total`;
/// `limit` must be from 1 to [`MAX_LIMIT`] (it is taken as an `i128` so that a negative or
/// huge number from JSON can be named in the message as it was sent).
///
/// # Errors
///
/// `(field, message)` for the first bad field, in the order `unit`, `period`, `limit`; the
/// message for a unit lists the configured units (`the unit EUR is not configured;
/// configured units: tokens, USD`).
pub fn validate(
    unit: &str,
    period: &str,
    limit: i128,
    allowed_currencies: &[String],
) -> Result<(String, BudgetPeriod, u64), (&'static str, String)> {
    let configured = || {
        std::iter::once(TOKENS)
            .chain(
                allowed_currencies
                    .iter()
                    .map(String::as_str)
                    .filter(|c| is_currency_code(c)),
            )
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unit_ok =
        unit == TOKENS || (is_currency_code(unit) && allowed_currencies.iter().any(|c| c == unit));
    if !unit_ok {
        let message = if is_currency_code(unit) {
            format!(
                "the unit {unit} is not configured; configured units: {}",
                configured()
            )
        } else {
            format!(
                "unknown unit {unit:?}; expected tokens or a currency code of three upper-case letters; configured units: {}",
                configured()
            )
        };
        return Err(("unit", message));
    }
    let period = BudgetPeriod::parse(period).ok_or((
        "period",
        format!("must be day, month or total, not {period:?}"),
    ))?;
    let limit = u64::try_from(limit)
        .ok()
        .filter(|l| (1..=MAX_LIMIT).contains(l))
        .ok_or((
            "limit",
            format!("must be from 1 to {MAX_LIMIT}, not {limit}"),
        ))?;
    Ok((unit.to_string(), period, limit))
}

/// What one LLM call used, as its provider reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmUsage {
    /// The model that answered, if the response names it.
    pub model: Option<String>,
    /// Tokens read (the prompt, cached or not).
    pub input_tokens: u64,
    /// Tokens written (the completion, reasoning included).
    pub output_tokens: u64,
}

impl LlmUsage {
    /// Input and output tokens together (saturating at `u64::MAX`).
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// Reads what an LLM call used out of the provider's JSON response body. It understands:
///
/// - OpenAI Chat Completions (API reference, "The chat completion object"):
///   `{"model": "...", "usage": {"prompt_tokens": N, "completion_tokens": M, "total_tokens": T}}`;
/// - OpenAI Responses (API reference, "The response object"):
///   `{"model": "...", "usage": {"input_tokens": N, "output_tokens": M, "total_tokens": T}}`;
/// - Anthropic Messages (API reference, Messages, "usage"): `{"model": "...", "usage":
///   {"input_tokens": N, "output_tokens": M, "cache_creation_input_tokens": A,
///   "cache_read_input_tokens": B}}`, where the cache tokens are not part of `input_tokens`
///   and are added to it here.
///
/// Input tokens are `prompt_tokens` (or else `input_tokens`) plus the two Anthropic cache
/// counts; output tokens are `completion_tokens` (or else `output_tokens`). OpenAI's cached
/// and reasoning token details are already inside those counts and are not added again. When
/// a `total_tokens` is larger than input and output together, the difference is counted as
/// output tokens, so that a budget never counts fewer tokens than the provider reported.
///
/// A count that is not a non-negative integer (a negative number, a fraction, a string,
/// `null`) is treated as absent. The model is the top-level `model` string when present and
/// non-empty.
///
/// Returns `None` when `body` is not an object, has no `usage` object, or its `usage` holds
/// none of these counts.
pub fn usage_from_response(body: &Value) -> Option<LlmUsage> {
    let usage = body.as_object()?.get("usage")?.as_object()?;
    let count = |key: &str| usage.get(key).and_then(Value::as_u64);
    let prompt = count("prompt_tokens").or_else(|| count("input_tokens"));
    let cache_creation = count("cache_creation_input_tokens");
    let cache_read = count("cache_read_input_tokens");
    let output = count("completion_tokens").or_else(|| count("output_tokens"));
    let total = count("total_tokens");
    if [prompt, cache_creation, cache_read, output, total]
        .iter()
        .all(Option::is_none)
    {
        return None;
    }
    let input_tokens = [prompt, cache_creation, cache_read]
        .into_iter()
        .flatten()
        .fold(0u64, u64::saturating_add);
    let mut output_tokens = output.unwrap_or(0);
    if let Some(total) = total {
        let counted = input_tokens.saturating_add(output_tokens);
        output_tokens = output_tokens.saturating_add(total.saturating_sub(counted));
    }
    Some(LlmUsage {
        model: model_of(body),
        input_tokens,
        output_tokens,
    })
}

/// What an LLM call may use at most, estimated from its request before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmEstimate {
    /// The model asked for, if the request names it.
    pub model: Option<String>,
    /// Estimated tokens of the prompt (see [`estimate_request`]).
    pub input_tokens: u64,
    /// The request's own bound on the tokens of the answer.
    pub max_output_tokens: u64,
}

impl LlmEstimate {
    /// Input and most output tokens together (saturating at `u64::MAX`).
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.max_output_tokens)
    }
}

/// The request fields that hold a prompt, across the OpenAI Chat Completions (`messages`),
/// Completions (`prompt`), Responses (`input`, `instructions`), Anthropic Messages (`system`,
/// `messages`) and Gemini (`contents`) APIs.
const PROMPT_FIELDS: [&str; 6] = [
    "messages",
    "prompt",
    "input",
    "system",
    "instructions",
    "contents",
];

/// The request fields that bound the answer, in the order they are looked at: `max_tokens`
/// (Anthropic Messages, older OpenAI), `max_completion_tokens` (OpenAI Chat Completions),
/// `max_output_tokens` (OpenAI Responses).
const OUTPUT_BOUND_FIELDS: [&str; 3] = ["max_tokens", "max_completion_tokens", "max_output_tokens"];

/// Estimates what an LLM request may use at most, from its JSON body, before it runs.
///
/// The output bound is the first of `max_tokens`, `max_completion_tokens` and
/// `max_output_tokens` that is a non-negative integer (a `null` or junk value is passed
/// over). The input is estimated as ceil(characters / 4) over every string, at any depth, in
/// the prompt fields present (`messages`, `prompt`, `input`, `system`, `instructions`,
/// `contents`), characters being Unicode scalar values. Four characters a token is a rule of
/// thumb, not a tokeniser: OpenAI's own guidance is that "one token is about 4 characters of
/// English text". It counts role names and content-part types too, and binary parts such as
/// base64 images at their length in characters, so it tends to estimate high.
///
/// Returns `None` when `body` is not an object or has no output bound: without one, what a
/// request may use cannot be bounded beforehand.
pub fn estimate_request(body: &Value) -> Option<LlmEstimate> {
    let object = body.as_object()?;
    let max_output_tokens = OUTPUT_BOUND_FIELDS
        .iter()
        .find_map(|key| object.get(*key).and_then(Value::as_u64))?;
    let chars = PROMPT_FIELDS
        .iter()
        .filter_map(|key| object.get(*key))
        .map(string_chars)
        .fold(0u64, u64::saturating_add);
    Some(LlmEstimate {
        model: model_of(body),
        input_tokens: chars.div_ceil(4),
        max_output_tokens,
    })
}

/// The characters of every string in `value`, at any depth (object keys excluded).
fn string_chars(value: &Value) -> u64 {
    match value {
        Value::String(s) => u64::try_from(s.chars().count()).unwrap_or(u64::MAX),
        Value::Array(items) => items.iter().map(string_chars).fold(0, u64::saturating_add),
        Value::Object(map) => map.values().map(string_chars).fold(0, u64::saturating_add),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

/// The top-level `model` string of a request or response body, when present and non-empty.
fn model_of(body: &Value) -> Option<String> {
    body.get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
}

/// The price of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// The model name, or the prefix of a family of names (see [`PriceTable::price`]).
    pub model: String,
    /// Micro-units of the table's currency per one million input tokens, at most
    /// [`MAX_PRICE_PER_MILLION`].
    pub input_per_million: u64,
    /// Micro-units of the table's currency per one million output tokens, at most
    /// [`MAX_PRICE_PER_MILLION`].
    pub output_per_million: u64,
}

/// The prices of models in one currency, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PriceTable {
    /// The currency of every price (a currency code; `USD` by default).
    pub currency: String,
    /// The prices, in any order (none by default).
    pub prices: Vec<ModelPrice>,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable {
            currency: "USD".to_string(),
            prices: Vec::new(),
        }
    }
}

/// Whether `c` may follow a price's model name in a longer model name it prices: a dated or
/// versioned suffix (`-2024-08-06`), a tag (`:latest`), a version (`@20240620`) or a path.
fn is_model_separator(c: char) -> bool {
    matches!(c, '-' | ':' | '@' | '/')
}

impl PriceTable {
    /// The price of `model`: the entry of exactly that name if there is one, otherwise the
    /// entry with the longest name that `model` starts with, followed by `-`, `:`, `@` or
    /// `/`. So `gpt-4o` prices `gpt-4o-2024-08-06` (and `gpt-4o-mini`, unless `gpt-4o-mini` is
    /// listed itself, whose entry is longer and wins), but `gpt-4` does not price `gpt-4o`.
    /// Names are compared as given (case matters); entries with an empty name never match.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(exact) = self.prices.iter().find(|p| p.model == model) {
            return Some(exact);
        }
        self.prices
            .iter()
            .filter(|p| {
                !p.model.is_empty()
                    && model
                        .strip_prefix(p.model.as_str())
                        .and_then(|rest| rest.chars().next())
                        .is_some_and(is_model_separator)
            })
            .max_by_key(|p| p.model.len())
    }

    /// What `input_tokens` and `output_tokens` of `model` cost, in micro-units of the table's
    /// currency, rounded up to a whole micro-unit: ceil((input × input price + output ×
    /// output price) / 10^6), computed in `u128` and saturating at `u64::MAX`. `None` when
    /// [`PriceTable::price`] finds no price for `model`.
    pub fn cost_micros(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<u64> {
        let price = self.price(model)?;
        let input = u128::from(input_tokens) * u128::from(price.input_per_million);
        let output = u128::from(output_tokens) * u128::from(price.output_per_million);
        let micros = input.saturating_add(output).div_ceil(1_000_000);
        Some(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// Checks the table as configured.
    ///
    /// # Errors
    ///
    /// A message naming the first problem: a currency that is not a currency code, an empty
    /// or repeated model name, or a price above [`MAX_PRICE_PER_MILLION`].
    pub fn validate(&self) -> Result<(), String> {
        if !is_currency_code(&self.currency) {
            return Err(format!(
                "the currency must be a code of three upper-case letters (ISO 4217), not {:?}",
                self.currency
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.prices.iter().enumerate() {
            if p.model.trim().is_empty() {
                return Err(format!("price {i}: the model name is empty"));
            }
            if !seen.insert(p.model.as_str()) {
                return Err(format!(
                    "price {i}: the model {:?} is priced twice",
                    p.model
                ));
            }
            for (field, n) in [
                ("input_per_million", p.input_per_million),
                ("output_per_million", p.output_per_million),
            ] {
                if n > MAX_PRICE_PER_MILLION {
                    return Err(format!(
                        "price {i} ({:?}): {field} must be at most {MAX_PRICE_PER_MILLION}, not {n}",
                        p.model
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn budget(agent: Option<&str>, unit: &str, period: BudgetPeriod, limit: u64) -> Budget {
        Budget {
            id: "b".into(),
            org_id: "o".into(),
            agent_id: agent.map(str::to_string),
            unit: unit.into(),
            period,
            limit,
            created_at: "2026-01-01T00:00:00.000000Z".into(),
            updated_at: "2026-01-01T00:00:00.000000Z".into(),
        }
    }

    fn usd() -> Vec<String> {
        vec!["USD".to_string()]
    }

    #[test]
    fn periods_round_trip_their_names() {
        for p in BudgetPeriod::ALL {
            assert_eq!(BudgetPeriod::parse(p.as_str()), Some(p));
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                json!(p.as_str()),
                "serde spells it as the API does"
            );
        }
        assert_eq!(BudgetPeriod::parse("week"), None);
        assert_eq!(BudgetPeriod::parse("Day"), None);
    }

    #[test]
    fn windows_are_utc_days_and_months() {
        let now = datetime!(2026-12-05 13:45:10 UTC);
        assert_eq!(BudgetPeriod::Day.window(now), "2026-12-05");
        assert_eq!(BudgetPeriod::Month.window(now), "2026-12");
        assert_eq!(BudgetPeriod::Total.window(now), "total");
        assert_eq!(
            BudgetPeriod::Day.window_end(now),
            Some(datetime!(2026-12-06 00:00:00 UTC))
        );
        assert_eq!(
            BudgetPeriod::Month.window_end(now),
            Some(datetime!(2027-01-01 00:00:00 UTC))
        );
        assert_eq!(BudgetPeriod::Total.window_end(now), None);

        // Another offset: 01:30 at +02:00 is still the previous day in UTC.
        let east = datetime!(2026-03-01 01:30:00 +02:00);
        assert_eq!(BudgetPeriod::Day.window(east), "2026-02-28");
        assert_eq!(BudgetPeriod::Month.window(east), "2026-02");
        assert_eq!(
            BudgetPeriod::Month.window_end(east),
            Some(datetime!(2026-03-01 00:00:00 UTC))
        );
    }

    #[test]
    fn windows_end_at_month_and_year_ends() {
        let last = datetime!(2026-12-31 23:59:59 UTC);
        assert_eq!(BudgetPeriod::Day.window(last), "2026-12-31");
        assert_eq!(
            BudgetPeriod::Day.window_end(last),
            Some(datetime!(2027-01-01 00:00:00 UTC))
        );
        assert_eq!(
            BudgetPeriod::Month.window_end(last),
            Some(datetime!(2027-01-01 00:00:00 UTC))
        );
        let feb = datetime!(2028-02-29 12:00:00 UTC);
        assert_eq!(
            BudgetPeriod::Day.window_end(feb),
            Some(datetime!(2028-03-01 00:00:00 UTC))
        );
        assert_eq!(
            BudgetPeriod::Month.window_end(datetime!(2026-04-30 23:00:00 UTC)),
            Some(datetime!(2026-05-01 00:00:00 UTC))
        );
        // The first instant of a window belongs to it.
        let first = datetime!(2027-01-01 00:00:00 UTC);
        assert_eq!(BudgetPeriod::Month.window(first), "2027-01");
        assert_eq!(BudgetPeriod::Day.window(first), "2027-01-01");
    }

    #[test]
    fn currency_codes_have_the_iso_4217_shape() {
        assert!(is_currency_code("USD") && is_currency_code("EUR"));
        for bad in ["usd", "US", "USDT", "US1", "", "ÜSD"] {
            assert!(!is_currency_code(bad), "{bad:?}");
        }
    }

    #[test]
    fn validation_accepts_tokens_and_configured_currencies() {
        assert_eq!(
            validate("tokens", "day", 5, &usd()),
            Ok(("tokens".into(), BudgetPeriod::Day, 5))
        );
        assert_eq!(
            validate("USD", "month", i128::from(MAX_LIMIT), &usd()),
            Ok(("USD".into(), BudgetPeriod::Month, MAX_LIMIT))
        );
        assert_eq!(
            validate("tokens", "total", 1, &[]),
            Ok(("tokens".into(), BudgetPeriod::Total, 1))
        );
    }

    #[test]
    fn validation_names_the_first_bad_field() {
        let (field, msg) = validate("dollars", "day", 5, &usd()).unwrap_err();
        assert_eq!(field, "unit");
        assert!(
            msg.contains("\"dollars\"") && msg.ends_with("tokens, USD"),
            "{msg}"
        );

        let (field, msg) = validate("EUR", "day", 5, &usd()).unwrap_err();
        assert_eq!(field, "unit");
        assert_eq!(
            msg,
            "the unit EUR is not configured; configured units: tokens, USD"
        );

        let (field, msg) = validate("usd", "day", 5, &usd()).unwrap_err();
        assert_eq!(field, "unit", "a lower-case code is not a currency code");
        assert!(msg.contains("upper-case"), "{msg}");

        let (field, _) = validate("USD", "day", 5, &[]).unwrap_err();
        assert_eq!(field, "unit", "no currency configured");

        let (field, msg) = validate("tokens", "week", 5, &usd()).unwrap_err();
        assert_eq!(
            (field, msg.as_str()),
            ("period", "must be day, month or total, not \"week\"")
        );

        let (field, msg) = validate("tokens", "day", -5, &usd()).unwrap_err();
        assert_eq!(field, "limit");
        assert_eq!(msg, format!("must be from 1 to {MAX_LIMIT}, not -5"));

        let (field, msg) = validate("tokens", "day", 0, &usd()).unwrap_err();
        assert_eq!(field, "limit");
        assert!(msg.ends_with("not 0"), "{msg}");

        let too_much = i128::from(MAX_LIMIT) + 1;
        let (field, msg) = validate("tokens", "day", too_much, &usd()).unwrap_err();
        assert_eq!(field, "limit");
        assert!(msg.ends_with(&format!("not {too_much}")), "{msg}");
        let (field, _) = validate("tokens", "day", i128::MAX, &usd()).unwrap_err();
        assert_eq!(field, "limit");

        // The unit is named before the period, the period before the limit.
        assert_eq!(validate("x", "y", -1, &usd()).unwrap_err().0, "unit");
        assert_eq!(validate("tokens", "y", -1, &usd()).unwrap_err().0, "period");
    }

    #[test]
    fn budgets_apply_to_their_agent_or_the_whole_organisation() {
        let org = budget(None, "tokens", BudgetPeriod::Month, 100);
        assert!(org.applies("a1") && org.applies("a2"));
        let agent = budget(Some("a1"), "USD", BudgetPeriod::Day, 100);
        assert!(agent.applies("a1") && !agent.applies("a2"));
        assert!(org.is_tokens() && !agent.is_tokens());
    }

    #[test]
    fn refusals_say_which_budget_and_how_much() {
        let agent = budget(Some("a1"), "USD", BudgetPeriod::Day, 5_000_000);
        assert_eq!(
            agent.refusal(4_800_000, 300_000),
            "budget: the agent's daily budget of 5000000 USD micro-units has 200000 left and this action needs up to 300000"
        );
        let org = budget(None, "tokens", BudgetPeriod::Month, 100_000);
        assert_eq!(
            org.refusal(100_000, 1),
            "budget: the organisation's monthly budget of 100000 tokens is exhausted (100000 spent)"
        );
        assert!(org
            .refusal(250_000, 1)
            .contains("is exhausted (250000 spent)"));
        let total = budget(None, "tokens", BudgetPeriod::Total, 10);
        let reason = total.refusal(3, 20);
        assert!(
            reason.starts_with("budget: the organisation's total budget of 10 tokens has 7 left")
        );
    }

    #[test]
    fn usage_is_read_from_openai_chat_completions() {
        let body = json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-4o-2024-08-06",
            "choices": [],
            "usage": {
                "prompt_tokens": 19,
                "completion_tokens": 10,
                "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 5},
                "completion_tokens_details": {"reasoning_tokens": 3}
            }
        });
        let usage = usage_from_response(&body).unwrap();
        assert_eq!(
            usage,
            LlmUsage {
                model: Some("gpt-4o-2024-08-06".into()),
                input_tokens: 19,
                output_tokens: 10
            }
        );
        assert_eq!(usage.total(), 29);
    }

    #[test]
    fn usage_is_read_from_openai_responses() {
        let body = json!({
            "object": "response",
            "model": "gpt-4.1",
            "usage": {
                "input_tokens": 36,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 87,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 123
            }
        });
        assert_eq!(
            usage_from_response(&body),
            Some(LlmUsage {
                model: Some("gpt-4.1".into()),
                input_tokens: 36,
                output_tokens: 87
            })
        );
    }

    #[test]
    fn usage_is_read_from_anthropic_messages_with_cache_tokens_as_input() {
        let body = json!({
            "type": "message",
            "model": "claude-sonnet-4-5-20250929",
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 100,
                "cache_read_input_tokens": 1000,
                "output_tokens": 50
            }
        });
        let usage = usage_from_response(&body).unwrap();
        assert_eq!(usage.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!((usage.input_tokens, usage.output_tokens), (1125, 50));
        let plain = json!({"usage": {"input_tokens": 7, "output_tokens": 2}});
        assert_eq!(
            usage_from_response(&plain),
            Some(LlmUsage {
                model: None,
                input_tokens: 7,
                output_tokens: 2
            })
        );
    }

    #[test]
    fn a_larger_total_is_counted_as_output() {
        let body =
            json!({"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 20}});
        let usage = usage_from_response(&body).unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (10, 10));
        let only_total = json!({"usage": {"total_tokens": 8}});
        assert_eq!(usage_from_response(&only_total).unwrap().total(), 8);
        let smaller =
            json!({"usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 3}});
        assert_eq!(usage_from_response(&smaller).unwrap().total(), 15);
    }

    #[test]
    fn junk_usage_is_absent_and_never_negative() {
        for body in [
            json!(null),
            json!("usage"),
            json!([{"usage": {"prompt_tokens": 1}}]),
            json!({}),
            json!({"model": "gpt-4o"}),
            json!({"usage": null}),
            json!({"usage": 12}),
            json!({"usage": {}}),
            json!({"usage": {"prompt_tokens": -1, "completion_tokens": "10"}}),
            json!({"usage": {"input_tokens": 1.5, "output_tokens": null}}),
        ] {
            assert_eq!(usage_from_response(&body), None, "{body}");
        }
        let mixed = json!({
            "model": 42,
            "usage": {"prompt_tokens": -3, "completion_tokens": 4, "cache_read_input_tokens": "9"}
        });
        assert_eq!(
            usage_from_response(&mixed),
            Some(LlmUsage {
                model: None,
                input_tokens: 0,
                output_tokens: 4
            })
        );
        let huge = json!({"usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": 5, "output_tokens": u64::MAX}});
        let usage = usage_from_response(&huge).unwrap();
        assert_eq!((usage.input_tokens, usage.total()), (u64::MAX, u64::MAX));
    }

    #[test]
    fn chat_requests_are_estimated_from_their_messages() {
        let body = json!({
            "model": "gpt-4o",
            "max_tokens": 100,
            "temperature": 0.2,
            "messages": [
                {"role": "user", "content": "Hello there!"},
                {"role": "assistant", "content": "Hi"}
            ]
        });
        // "user" 4 + "Hello there!" 12 + "assistant" 9 + "Hi" 2 = 27: 7 tokens.
        assert_eq!(
            estimate_request(&body),
            Some(LlmEstimate {
                model: Some("gpt-4o".into()),
                input_tokens: 7,
                max_output_tokens: 100
            })
        );
        let newer = json!({
            "model": "o3",
            "max_tokens": null,
            "max_completion_tokens": 50,
            "messages": [{"role": "user", "content": "abcd"}]
        });
        let estimate = estimate_request(&newer).unwrap();
        assert_eq!((estimate.input_tokens, estimate.max_output_tokens), (2, 50));
        assert_eq!(estimate.total(), 52);
    }

    #[test]
    fn anthropic_requests_count_the_system_prompt() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "héllo"}]}
            ]
        });
        // "Be brief." 9 + "user" 4 + "text" 4 + "héllo" 5 (characters, not bytes) = 22: 6.
        let estimate = estimate_request(&body).unwrap();
        assert_eq!(
            estimate,
            LlmEstimate {
                model: Some("claude-sonnet-4-5".into()),
                input_tokens: 6,
                max_output_tokens: 1024
            }
        );
        let responses = json!({"input": "abcdefgh", "instructions": "x", "max_output_tokens": 9});
        let estimate = estimate_request(&responses).unwrap();
        assert_eq!((estimate.model, estimate.input_tokens), (None, 3));
    }

    #[test]
    fn requests_without_an_output_bound_are_not_estimated() {
        for body in [
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
            json!({"max_tokens": -1, "messages": []}),
            json!({"max_tokens": "100", "prompt": "x"}),
            json!({"max_tokens": 1.5}),
            json!([{"max_tokens": 10}]),
            json!(null),
        ] {
            assert_eq!(estimate_request(&body), None, "{body}");
        }
        assert_eq!(
            estimate_request(&json!({"max_tokens": 0})),
            Some(LlmEstimate {
                model: None,
                input_tokens: 0,
                max_output_tokens: 0
            }),
            "a bound without a prompt estimates no input"
        );
    }

    fn table() -> PriceTable {
        let price = |model: &str, i: u64, o: u64| ModelPrice {
            model: model.into(),
            input_per_million: i,
            output_per_million: o,
        };
        PriceTable {
            currency: "USD".into(),
            prices: vec![
                price("gpt-4", 30_000_000, 60_000_000),
                price("gpt-4o", 2_500_000, 10_000_000),
                price("gpt-4o-mini", 150_000, 600_000),
                price("claude-sonnet-4-5", 3_000_000, 15_000_000),
            ],
        }
    }

    #[test]
    fn prices_are_found_by_name_then_longest_prefix() {
        let t = table();
        let of = |m: &str| t.price(m).map(|p| p.model.as_str());
        assert_eq!(of("gpt-4o"), Some("gpt-4o"), "exact");
        assert_eq!(of("gpt-4o-2024-08-06"), Some("gpt-4o"), "dated suffix");
        assert_eq!(of("gpt-4o-mini"), Some("gpt-4o-mini"), "exact beats prefix");
        assert_eq!(
            of("gpt-4o-mini-2024-07-18"),
            Some("gpt-4o-mini"),
            "longest prefix"
        );
        assert_eq!(of("gpt-4-turbo"), Some("gpt-4"));
        assert_eq!(of("claude-sonnet-4-5@20250929"), Some("claude-sonnet-4-5"));
        assert_eq!(of("claude-sonnet-4-5:beta"), Some("claude-sonnet-4-5"));
        assert_eq!(of("gpt-4o/eu"), Some("gpt-4o"));
        assert_eq!(of("gpt-4.1"), None, "'.' is not a separator");
        assert_eq!(of("gpt-4omni"), None, "no false prefix");
        assert_eq!(of("GPT-4o"), None, "case matters");
        assert_eq!(of("gpt"), None);
        assert_eq!(of(""), None);
        let mut no_mini = table();
        no_mini.prices.retain(|p| p.model != "gpt-4o-mini");
        assert_eq!(
            no_mini.price("gpt-4o-mini").map(|p| p.model.as_str()),
            Some("gpt-4o"),
            "'gpt-4' does not price it: 'o' is not a separator"
        );
    }

    #[test]
    fn costs_round_up_and_saturate() {
        let t = table();
        // 1000 × 2.5 USD/M + 500 × 10 USD/M = 2500 + 5000 micro-units.
        assert_eq!(t.cost_micros("gpt-4o", 1000, 500), Some(7500));
        // 1 × 0.15 USD/M = 0.15 micro-units: rounded up to 1.
        assert_eq!(t.cost_micros("gpt-4o-mini", 1, 0), Some(1));
        // 1 000 001 input tokens × 150 000 = 150 000 150 000 / 10^6 = 150 000.15: 150 001.
        assert_eq!(t.cost_micros("gpt-4o-mini", 1_000_001, 0), Some(150_001));
        assert_eq!(t.cost_micros("gpt-4o", 0, 0), Some(0));
        assert_eq!(t.cost_micros("unknown", 10, 10), None);
        assert_eq!(
            t.cost_micros("gpt-4", u64::MAX, u64::MAX),
            Some(u64::MAX),
            "saturates"
        );
        let extreme = PriceTable {
            currency: "USD".into(),
            prices: vec![ModelPrice {
                model: "m".into(),
                input_per_million: u64::MAX,
                output_per_million: u64::MAX,
            }],
        };
        assert_eq!(extreme.cost_micros("m", u64::MAX, u64::MAX), Some(u64::MAX));
        assert_eq!(
            extreme.cost_micros("m", 1, 0),
            Some(u64::MAX.div_ceil(1_000_000))
        );
    }

    #[test]
    fn price_tables_are_validated() {
        assert_eq!(table().validate(), Ok(()));
        assert_eq!(PriceTable::default().validate(), Ok(()));
        assert_eq!(PriceTable::default().currency, "USD");

        let mut t = table();
        t.currency = "usd".into();
        assert!(t.validate().unwrap_err().contains("currency"));

        let mut t = table();
        t.prices[1].model = " ".into();
        assert!(t.validate().unwrap_err().contains("empty"));

        let mut t = table();
        t.prices[2].model = "gpt-4o".into();
        assert!(t.validate().unwrap_err().contains("priced twice"));

        let mut t = table();
        t.prices[0].output_per_million = MAX_PRICE_PER_MILLION + 1;
        assert!(t.validate().unwrap_err().contains("output_per_million"));
        t.prices[0].output_per_million = MAX_PRICE_PER_MILLION;
        assert_eq!(t.validate(), Ok(()));
    }

    #[test]
    fn price_tables_deserialise_with_defaults_and_no_unknown_fields() {
        let t: PriceTable = serde_json::from_value(json!({
            "prices": [{"model": "gpt-4o", "input_per_million": 1, "output_per_million": 2}]
        }))
        .unwrap();
        assert_eq!(t.currency, "USD");
        assert_eq!(t.prices.len(), 1);
        let unknown = serde_json::from_value::<ModelPrice>(json!({
            "model": "m", "input_per_million": 1, "output_per_million": 2, "cached_per_million": 1
        }));
        assert!(unknown.is_err());
        assert!(
            serde_json::from_value::<PriceTable>(json!({"currency": "USD", "extra": 1})).is_err()
        );
    }
}
