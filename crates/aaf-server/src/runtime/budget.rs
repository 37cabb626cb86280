//! Budgets (docs/runtime-protection.md, "Budgets"): what an action is expected to use, the
//! reservation before it runs (the budget guard), the settlement with what it used, and what
//! policies see (`input.budget`).
//!
//! A reservation is one conditional update per budget in the shared database
//! ([`Store::budget_reserve`]), so a hard limit holds across every node. Amounts are tokens
//! or integer micro-units of the configured currency (`budgets.currency`).

use aaf_core::action::ActionRequest;
use aaf_core::budget::{estimate_request, Budget, PriceTable, MAX_LIMIT, TOKENS};
use aaf_store::{Reservation, Store};
use serde_json::{json, Map, Value};

/// What an action is expected to use, for its reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Tokens.
    pub tokens: u64,
    /// Cost in micro-units of the configured currency; `None` when it cannot be priced.
    pub cost: Option<u64>,
    /// The model of an LLM request, when the estimate comes from one.
    pub model: Option<String>,
}

/// Reads what an action declares it will use (`context.expected_usage`: `{"tokens": N,
/// "cost_micros": M}`, both optional), or else estimates an LLM request in `params.body`
/// ([`estimate_request`]: prompt characters / 4 plus the output bound, priced from
/// `prices`); an action that is neither expects nothing.
///
/// # Errors
///
/// `(field, message)` for a malformed declaration (a field path such as
/// `context.expected_usage.tokens`).
pub fn expected(
    request: &ActionRequest,
    prices: &PriceTable,
) -> Result<Expected, (String, String)> {
    if let Some(declared) = request.context.get("expected_usage") {
        let Value::Object(declared) = declared else {
            return Err((
                "context.expected_usage".into(),
                "must be an object {\"tokens\", \"cost_micros\"}".into(),
            ));
        };
        let amount = |name: &str| -> Result<Option<u64>, (String, String)> {
            match declared.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(n) if n <= MAX_LIMIT => Ok(Some(n)),
                    _ => Err((
                        format!("context.expected_usage.{name}"),
                        format!("must be an integer from 0 to {MAX_LIMIT}, not {v}"),
                    )),
                },
            }
        };
        if let Some(unknown) = declared
            .keys()
            .find(|k| !matches!(k.as_str(), "tokens" | "cost_micros"))
        {
            return Err((
                format!("context.expected_usage.{unknown}"),
                "unknown field; expected tokens or cost_micros".into(),
            ));
        }
        return Ok(Expected {
            tokens: amount("tokens")?.unwrap_or(0),
            cost: Some(amount("cost_micros")?.unwrap_or(0)),
            model: None,
        });
    }
    if let Some(estimate) = request.params.get("body").and_then(estimate_request) {
        let cost = estimate
            .model
            .as_deref()
            .and_then(|m| prices.cost_micros(m, estimate.input_tokens, estimate.max_output_tokens));
        return Ok(Expected {
            tokens: estimate.total(),
            cost,
            model: Some(estimate.model.unwrap_or_default()),
        });
    }
    Ok(Expected {
        tokens: 0,
        cost: Some(0),
        model: None,
    })
}

/// A budget and what its current window has spent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStatus {
    /// The budget.
    pub budget: Budget,
    /// Its current window (`2026-12-05`, `2026-12`, `total`).
    pub window: String,
    /// Spent in the window (settled plus reserved).
    pub spent: u64,
}

impl BudgetStatus {
    /// What is left, 0 when exhausted.
    pub fn remaining(&self) -> u64 {
        self.budget.limit.saturating_sub(self.spent)
    }
}

/// A refusal by the budget guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverBudget {
    /// Why, starting with `budget:`.
    pub reason: String,
    /// The budget that refused, when one did (not when the store failed).
    pub budget_id: Option<String>,
    /// Whether that budget is exhausted (a circuit breaker may trip on it).
    pub exhausted: bool,
}

/// The current window of `budget` at `now` (RFC 3339 UTC).
fn window(budget: &Budget, now: &str) -> String {
    let at = time::OffsetDateTime::parse(now, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    budget.period.window(at)
}

/// Reserves what the action expects of every budget in `budgets` (those that count its
/// agent, sorted by id), all or none.
///
/// # Errors
///
/// [`OverBudget`] when one does not fit, when a currency budget applies to an LLM request
/// whose model has no price (it could not be counted), or when the store cannot be reached
/// (fail closed).
pub async fn reserve(
    store: &Store,
    budgets: &[Budget],
    org_id: &str,
    agent_id: &str,
    action_id: &str,
    expected: &Expected,
    now: &str,
) -> Result<Vec<BudgetStatus>, OverBudget> {
    let mut reservations = Vec::with_capacity(budgets.len());
    for b in budgets {
        let amount = if b.unit == TOKENS {
            expected.tokens
        } else {
            match (expected.cost, &expected.model) {
                (Some(cost), _) => cost,
                (None, model) => {
                    return Err(OverBudget {
                        reason: format!(
                            "budget: the model {:?} has no price in budgets.prices, so this request cannot be counted against the {} budget {}",
                            model.as_deref().unwrap_or_default(),
                            b.unit,
                            b.id
                        ),
                        budget_id: Some(b.id.clone()),
                        exhausted: false,
                    })
                }
            }
        };
        reservations.push(Reservation {
            budget_id: b.id.clone(),
            window_key: window(b, now),
            unit: b.unit.clone(),
            amount,
            limit: b.limit,
        });
    }
    match store
        .budget_reserve(org_id, action_id, agent_id, now, &reservations)
        .await
    {
        Ok(Ok(totals)) => Ok(budgets
            .iter()
            .zip(reservations)
            .zip(totals)
            .map(|((b, r), spent)| BudgetStatus {
                budget: b.clone(),
                window: r.window_key,
                spent,
            })
            .collect()),
        Ok(Err((i, spent))) => {
            let (b, r) = budgets
                .get(i)
                .zip(reservations.get(i))
                .ok_or_else(|| OverBudget {
                    reason: "budget: the reservation failed on a budget that is not there".into(),
                    budget_id: None,
                    exhausted: false,
                })?;
            Err(OverBudget {
                reason: b.refusal(spent, r.amount),
                budget_id: Some(b.id.clone()),
                exhausted: spent >= b.limit,
            })
        }
        Err(e) => Err(OverBudget {
            reason: format!(
                "budget: the budgets could not be reserved, so the action is refused: {e}"
            ),
            budget_id: None,
            exhausted: false,
        }),
    }
}

/// What `budgets` have spent in their current windows, without reserving anything (dry
/// runs, the API).
///
/// # Errors
///
/// The store's error, as text.
pub async fn status(
    store: &Store,
    org_id: &str,
    budgets: &[Budget],
    now: &str,
) -> Result<Vec<BudgetStatus>, String> {
    let windows: Vec<(String, String)> = budgets
        .iter()
        .map(|b| (b.id.clone(), window(b, now)))
        .collect();
    let spent = store
        .budget_spent(org_id, &windows)
        .await
        .map_err(|e| format!("the budgets could not be read: {e}"))?;
    Ok(budgets
        .iter()
        .zip(windows)
        .zip(spent)
        .map(|((b, (_, window)), spent)| BudgetStatus {
            budget: b.clone(),
            window,
            spent,
        })
        .collect())
}

/// `input.budget`: `{"budgets": [{id, scope, unit, period, window, limit, spent,
/// remaining}], "remaining": {unit: the least remaining of that unit}}`, after this action's
/// reservation when it made one.
pub fn input_view(statuses: &[BudgetStatus]) -> Value {
    let mut remaining = Map::new();
    let budgets: Vec<Value> = statuses
        .iter()
        .map(|s| {
            let left = s.remaining();
            let least = remaining
                .get(&s.budget.unit)
                .and_then(Value::as_u64)
                .map_or(left, |r| r.min(left));
            remaining.insert(s.budget.unit.clone(), least.into());
            json!({
                "id": s.budget.id,
                "scope": if s.budget.agent_id.is_some() { "agent" } else { "org" },
                "unit": s.budget.unit,
                "period": s.budget.period.as_str(),
                "window": s.window,
                "limit": s.budget.limit,
                "spent": s.spent,
                "remaining": left,
            })
        })
        .collect();
    json!({ "budgets": budgets, "remaining": remaining })
}

/// What an action used, read from its connector's result: the LLM usage of an HTTP
/// response body (OpenAI- or Anthropic-style `usage`), priced from `prices` by the
/// response's model, else the request's. `(tokens, cost)`; `None` for what is not known
/// (then the reservation stands as the charge).
pub fn used(
    result: &Value,
    request_model: Option<&str>,
    prices: &PriceTable,
) -> (Option<u64>, Option<u64>) {
    let Some(usage) = result
        .get("body")
        .and_then(aaf_core::budget::usage_from_response)
    else {
        return (None, None);
    };
    let model = usage.model.as_deref().or(request_model);
    let cost = model.and_then(|m| prices.cost_micros(m, usage.input_tokens, usage.output_tokens));
    (Some(usage.total()), cost)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aaf_core::budget::ModelPrice;

    fn request(params: Value, context: Value) -> ActionRequest {
        serde_json::from_value(json!({
            "tool": "http_proxy", "operation": "POST", "params": params, "context": context
        }))
        .unwrap()
    }

    fn prices() -> PriceTable {
        PriceTable {
            currency: "USD".into(),
            prices: vec![ModelPrice {
                model: "gpt-4o".into(),
                input_per_million: 2_500_000,
                output_per_million: 10_000_000,
            }],
        }
    }

    #[test]
    fn a_declaration_wins_over_an_estimate_and_is_checked() {
        let r = request(
            json!({"body": {"model": "gpt-4o", "max_tokens": 100, "messages": []}}),
            json!({"expected_usage": {"tokens": 7, "cost_micros": 9}}),
        );
        assert_eq!(
            expected(&r, &prices()).unwrap(),
            Expected {
                tokens: 7,
                cost: Some(9),
                model: None
            }
        );
        let bad = request(json!({}), json!({"expected_usage": {"tokens": -1}}));
        assert_eq!(
            expected(&bad, &prices()).unwrap_err().0,
            "context.expected_usage.tokens"
        );
        let unknown = request(json!({}), json!({"expected_usage": {"dollars": 1}}));
        assert_eq!(
            expected(&unknown, &prices()).unwrap_err().0,
            "context.expected_usage.dollars"
        );
    }

    #[test]
    fn an_llm_request_is_estimated_and_priced() {
        let r = request(
            json!({"body": {"model": "gpt-4o-2024-08-06", "max_tokens": 1000,
                            "messages": [{"role": "user", "content": "abcdefgh"}]}}),
            json!({}),
        );
        let e = expected(&r, &prices()).unwrap();
        assert!(e.tokens >= 1000, "{e:?}");
        // 1000 output tokens at 10 USD per million: 10,000 micro-USD, plus the input.
        assert!(e.cost.unwrap() >= 10_000, "{e:?}");
        let unpriced = request(
            json!({"body": {"model": "llama", "max_tokens": 5}}),
            json!({}),
        );
        assert_eq!(expected(&unpriced, &prices()).unwrap().cost, None);
        let plain = request(json!({"url": "https://example.com"}), json!({}));
        assert_eq!(expected(&plain, &prices()).unwrap().tokens, 0);
    }

    #[test]
    fn usage_is_read_from_a_response_and_priced() {
        let result = json!({"status": 200, "body": {"model": "gpt-4o",
            "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}});
        assert_eq!(used(&result, None, &prices()), (Some(1100), Some(3500)));
        assert_eq!(
            used(&json!({"body": "text"}), None, &prices()),
            (None, None)
        );
    }
}
