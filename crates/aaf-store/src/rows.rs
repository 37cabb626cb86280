//! Reading rows the same way from every backend: a small [`DbRow`] trait over sqlx's SQLite
//! and PostgreSQL rows, and the readers of orgs, agents, users, keys, actions, audit events
//! and chain heads built on it.

use std::collections::HashMap;

use aaf_core::audit::{
    hex32, AuditEvent, ChainError, ChainErrorKind, ChainSummary, ChainVerifier, ChainedEvent,
    StoredEvent,
};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::encryption::{Keyring, Unreadable};
use crate::model::{
    ActionRecord, Agent, AgentKey, AgentPrincipal, AgentProfileRecord, AgentSnapshot, ApprovalVote,
    McpServer, McpToolPin, Org, OrgSettings, PolicyObject, PolicyObjectVersion,
    PolicyRevisionRecord, ShadowCount, ShadowResult, TokenPrincipal, User, Webhook,
    WebhookDelivery,
};
use crate::StoreError;

/// A column type the store reads.
pub(crate) trait ColumnValue: Sized {
    fn from_sqlite(row: &SqliteRow, column: &str) -> Result<Self, sqlx::Error>;
    fn from_pg(row: &PgRow, column: &str) -> Result<Self, sqlx::Error>;
}

macro_rules! column_value {
    ($($t:ty),*) => {$(
        impl ColumnValue for $t {
            fn from_sqlite(row: &SqliteRow, column: &str) -> Result<Self, sqlx::Error> {
                row.try_get(column)
            }
            fn from_pg(row: &PgRow, column: &str) -> Result<Self, sqlx::Error> {
                row.try_get(column)
            }
        }
    )*};
}
column_value!(String, Option<String>, i64, Option<i64>, f64);

/// A row of either backend.
pub(crate) trait DbRow {
    /// The value of `column`.
    fn col<T: ColumnValue>(&self, column: &str) -> Result<T, sqlx::Error>;
}

impl DbRow for SqliteRow {
    fn col<T: ColumnValue>(&self, column: &str) -> Result<T, sqlx::Error> {
        T::from_sqlite(self, column)
    }
}

impl DbRow for PgRow {
    fn col<T: ColumnValue>(&self, column: &str) -> Result<T, sqlx::Error> {
        T::from_pg(self, column)
    }
}

/// Parses a JSON text column.
pub(crate) fn parse_json(text: &str, column: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("column {column} is not json: {e}")))
}

/// The outcome's organisation, for sorting results.
pub(crate) fn result_org(result: &Result<ChainSummary, ChainError>) -> &str {
    match result {
        Ok(summary) => &summary.org_id,
        Err(error) => &error.org_id,
    }
}

/// Finishes one chain against its recorded head (removing the head from `heads`).
pub(crate) fn finish_chain(
    verifier: ChainVerifier,
    heads: &mut HashMap<String, Result<(u64, [u8; 32]), ChainError>>,
) -> Result<ChainSummary, ChainError> {
    match heads.remove(verifier.org_id()) {
        None => verifier.finish(None),
        Some(Ok(head)) => verifier.finish(Some(head)),
        // An event error comes before the malformed head; a missing head is the head's fault.
        Some(Err(head_error)) => match verifier.finish(None) {
            Err(e) if !matches!(e.kind, ChainErrorKind::HeadMissing { .. }) => Err(e),
            _ => Err(head_error),
        },
    }
}

/// Compares the verified chains with the organisations that exist (`org_ids`): every
/// organisation must have a chain (its `org.created` event starts it), reported as
/// [`ChainErrorKind::ChainMissing`] when events and head are both gone; a chain that is
/// neither an organisation's nor the [`crate::SYSTEM_CHAIN`] is reported as
/// [`ChainErrorKind::OrgMissing`] (unless it is already broken). Keeps `results` sorted
/// by organisation.
pub(crate) fn compare_with_orgs(
    results: &mut Vec<Result<ChainSummary, ChainError>>,
    org_ids: &[String],
) {
    let orgs: std::collections::HashSet<&str> = org_ids.iter().map(String::as_str).collect();
    let chains: std::collections::HashSet<String> =
        results.iter().map(|r| result_org(r).to_string()).collect();
    for result in results.iter_mut() {
        if let Ok(summary) = result {
            if summary.org_id != crate::SYSTEM_CHAIN && !orgs.contains(summary.org_id.as_str()) {
                *result = Err(ChainError {
                    org_id: summary.org_id.clone(),
                    seq: 1,
                    kind: ChainErrorKind::OrgMissing {
                        org_id: summary.org_id.clone(),
                    },
                });
            }
        }
    }
    for org_id in org_ids {
        if !chains.contains(org_id) {
            results.push(Err(ChainError {
                org_id: org_id.clone(),
                seq: 1,
                kind: ChainErrorKind::ChainMissing,
            }));
        }
    }
    results.sort_by(|a, b| result_org(a).cmp(result_org(b)));
}

/// [`compare_with_orgs`] for chains verified with their trees: the results are compared,
/// each keeps its tree and checkpoints, and a chain missing from them is added with none.
pub(crate) fn compare_verifications(
    verifications: &mut Vec<crate::evidence::ChainVerification>,
    org_ids: &[String],
) {
    let mut by_org: HashMap<String, crate::evidence::ChainVerification> = verifications
        .drain(..)
        .map(|v| (v.org_id().to_string(), v))
        .collect();
    let mut results: Vec<_> = by_org.values().map(|v| v.result.clone()).collect();
    compare_with_orgs(&mut results, org_ids);
    for result in results {
        let mut verification = by_org
            .remove(result_org(&result))
            .unwrap_or_else(|| crate::evidence::ChainVerification::of(result.clone()));
        verification.result = result;
        verifications.push(verification);
    }
}

/// Reads an `audit_heads` row; on failure, the seq if it could be read and the reason.
pub(crate) fn head_from_row(row: &impl DbRow) -> Result<(u64, [u8; 32]), (Option<u64>, String)> {
    parse_head(row.col::<i64>("seq").map_err(|e| e.to_string()), || {
        row.col::<String>("hash").map_err(|e| e.to_string())
    })
}

/// Checks a chain head's columns (as read by either driver); on failure, the seq if it
/// could be read and the reason.
pub(crate) fn parse_head(
    seq: Result<i64, String>,
    hash: impl FnOnce() -> Result<String, String>,
) -> Result<(u64, [u8; 32]), (Option<u64>, String)> {
    let seq = seq.map_err(|e| (None, format!("seq is not an integer: {e}")))?;
    let seq = u64::try_from(seq).map_err(|_| (None, format!("seq {seq} is negative")))?;
    let hash = hash().map_err(|e| (Some(seq), format!("hash is not text: {e}")))?;
    let hash = hex32::parse(&hash).map_err(|e| (Some(seq), e))?;
    Ok((seq, hash))
}

/// Reads an `audit_events` row (with `payload` and `payload_removed`), its payload opened and
/// its `data` parsed; on failure, the seq if it could be read and the reason.
/// [`StoreError::KeysNotLoaded`] comes through as the reason `Err((None, org))` never: it is
/// returned as the outer error so the store can load the keys and read again.
pub(crate) fn event_from_row(
    row: &impl DbRow,
    keys: &Keyring,
) -> Result<Result<ChainedEvent, (Option<u64>, String)>, StoreError> {
    match crate::evidence::raw_event_with_payload(row) {
        Ok(stored) => open_event(keys, stored),
        Err(e) => Ok(Err(e)),
    }
}

/// An event as stored made readable: for an event of format 2 (its `data` column holds the
/// committed data and a payload or a removal reason is stored), the payload opened and checked
/// against its commitment, with [`aaf_core::evidence::payload::Payload`] saying what was
/// withheld and why; else `data` parsed.
///
/// # Errors
///
/// [`StoreError::KeysNotLoaded`] when the organisation's keys must be loaded first; inside, the
/// seq and reason when `data` is not JSON.
pub(crate) fn open_event(
    keys: &Keyring,
    stored: StoredEvent,
) -> Result<Result<ChainedEvent, (Option<u64>, String)>, StoreError> {
    use aaf_core::evidence::payload::{commitment_of, Payload};
    let seq = stored.seq;
    // The committed data of format 2 (its exact spelling: AAF never wrote it as the data of a
    // format-1 event).
    let commitment = commitment_of(&stored.data);
    let (data, payload) = match commitment {
        Some(sha256) => match (&stored.payload, &stored.payload_removed) {
            (Some(text), _) => match keys.open_payload(&stored.org_id, &sha256, text) {
                Ok(opened) => match serde_json::from_str::<Value>(&opened.data) {
                    Ok(data) => (
                        data,
                        Some(Payload {
                            sha256,
                            salt: Some(hex32::encode(&opened.salt)),
                            withheld: None,
                        }),
                    ),
                    Err(e) => return Ok(Err((Some(seq), format!("payload is not json: {e}")))),
                },
                Err(Unreadable::NotLoaded) => return Err(StoreError::KeysNotLoaded(stored.org_id)),
                Err(Unreadable::Withheld(why)) => (
                    Value::Null,
                    Some(Payload {
                        sha256,
                        salt: None,
                        withheld: Some(format!("payload unreadable: {why}")),
                    }),
                ),
            },
            (None, removed) => (
                Value::Null,
                Some(Payload {
                    sha256,
                    salt: None,
                    // Neither the payload nor a reason: removed behind AAF's back (the
                    // triggers allow a removal only with its reason).
                    withheld: Some(removed.clone().unwrap_or_else(|| {
                        "payload missing, with no recorded reason: it was removed outside AAF"
                            .to_string()
                    })),
                }),
            ),
        },
        None => match serde_json::from_str(&stored.data) {
            Ok(data) => (data, None),
            Err(e) => return Ok(Err((Some(seq), format!("data is not json: {e}")))),
        },
    };
    Ok(Ok(ChainedEvent {
        event: AuditEvent {
            seq,
            ts: stored.ts,
            org_id: stored.org_id,
            agent_id: stored.agent_id,
            action_id: stored.action_id,
            event_type: stored.event_type,
            data,
        },
        prev_hash: stored.prev_hash,
        hash: stored.hash,
        payload,
    }))
}

/// Reads an org from columns `{prefix}id`, `{prefix}name`, ... (`id`, `name` when the
/// prefix is empty; `org_id`, `org_name`, `org_plan`, `org_created_at` for `"org_"`).
pub(crate) fn org_from_row(row: &impl DbRow, prefix: &str) -> Result<Org, StoreError> {
    Ok(Org {
        id: row.col(format!("{prefix}id").as_str())?,
        name: row.col(format!("{prefix}name").as_str())?,
        plan: row.col(format!("{prefix}plan").as_str())?,
        created_at: row.col(format!("{prefix}created_at").as_str())?,
    })
}

/// Reads an agent from columns `{prefix}id`, `{prefix}org_id`, ... (see [`org_from_row`]).
pub(crate) fn agent_from_row(row: &impl DbRow, prefix: &str) -> Result<Agent, StoreError> {
    Ok(Agent {
        id: row.col(format!("{prefix}id").as_str())?,
        org_id: row.col(format!("{prefix}org_id").as_str())?,
        name: row.col(format!("{prefix}name").as_str())?,
        risk_score: row.col(format!("{prefix}risk_score").as_str())?,
        public_key: row.col(format!("{prefix}public_key").as_str())?,
        created_at: row.col(format!("{prefix}created_at").as_str())?,
    })
}

/// Reads an `actions` row (`action_select!()`), opening its sealed columns with the action's
/// key (the row's `data_key`, unwrapped by its organisation's data key).
///
/// # Errors
///
/// [`StoreError::KeysNotLoaded`] when the organisation's keys must be loaded first;
/// [`StoreError::Corrupt`] when a column cannot be read. A sealed column that cannot be opened
/// (the action's or the organisation's key was destroyed) is `null`, and
/// [`ActionRecord::withheld`] says why.
pub(crate) fn action_from_row(
    row: &impl DbRow,
    keys: &Keyring,
) -> Result<ActionRecord, StoreError> {
    let id: String = row.col("id")?;
    let org_id: String = row.col("org_id")?;
    let mut opener = ColumnOpener {
        keys,
        data_key: row.col("data_key")?,
        key: None,
        withheld: None,
        org_id: &org_id,
        id: &id,
    };
    let (params, context) = opener.inputs(row.col("params")?, row.col("context")?)?;
    let params = params
        .map(|p| parse_json(&p, "params"))
        .transpose()?
        .unwrap_or(Value::Null);
    let context = context
        .map(|c| parse_json(&c, "context"))
        .transpose()?
        .unwrap_or(Value::Null);
    let mut json = |column: &str, text: Option<String>| -> Result<Option<Value>, StoreError> {
        match text {
            Some(text) => opener
                .column(column, text)?
                .map(|plain| parse_json(&plain, column))
                .transpose(),
            None => Ok(None),
        }
    };
    let result = json("result", row.col("result")?)?;
    let signals = json("signals", row.col("signals")?)?;
    let withheld = opener.withheld;
    let policies: String = row.col("policies")?;
    Ok(ActionRecord {
        agent_id: row.col("agent_id")?,
        tool: row.col("tool")?,
        operation: row.col("operation")?,
        params,
        context,
        decision: row.col("decision")?,
        reason: row.col("reason")?,
        risk_level: row.col("risk_level")?,
        status: {
            let status: String = row.col("status")?;
            aaf_core::action::ActionStatus::parse(&status).ok_or_else(|| {
                StoreError::Corrupt(format!("action status {status:?} is not a status"))
            })?
        },
        policies: parse_json(&policies, "policies")?,
        result,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        digest: row.col("digest")?,
        expires_at: row.col("expires_at")?,
        approvals_required: row
            .col::<Option<i64>>("approvals_required")?
            .map(|n| {
                u32::try_from(n).map_err(|_| {
                    StoreError::Corrupt(format!("approvals_required {n} is out of range"))
                })
            })
            .transpose()?,
        version: row.col("version")?,
        signals,
        withheld,
        id,
        org_id,
    })
}

/// Opens the sealed columns of one `actions` row with the action's key (unwrapped once, on
/// the first sealed column), recording the first reason a column reads as `null`.
struct ColumnOpener<'a> {
    keys: &'a Keyring,
    /// The row's wrapped action key; `None` when it has none (clear, or shredded).
    data_key: Option<String>,
    key: Option<std::sync::Arc<crate::encryption::ActionKey>>,
    withheld: Option<String>,
    org_id: &'a str,
    id: &'a str,
}

impl ColumnOpener<'_> {
    /// The action's key, unwrapped on first use; `None` (and `withheld` set) when it cannot
    /// be.
    fn key(&mut self) -> Result<Option<std::sync::Arc<crate::encryption::ActionKey>>, StoreError> {
        if self.key.is_none() && self.withheld.is_none() {
            match self
                .keys
                .action_key(self.org_id, self.id, self.data_key.as_deref())
            {
                Ok(key) => self.key = Some(key),
                Err(Unreadable::NotLoaded) => {
                    return Err(StoreError::KeysNotLoaded(self.org_id.to_string()))
                }
                Err(Unreadable::Withheld(why)) => self.withheld = Some(why),
            }
        }
        Ok(self.key.clone())
    }

    /// Records why a column reads as `null` (the first reason wins).
    fn withhold(&mut self, why: impl FnOnce() -> String) -> Option<String> {
        self.withheld.get_or_insert_with(why);
        None
    }

    /// One sealed JSON column's text; a column in clear as it is (an action written without
    /// encryption), unless the action has a key: every column of such an action is sealed,
    /// so a clear one was written behind AAF's back (whoever can write the database cannot
    /// seal).
    fn column(&mut self, column: &str, text: String) -> Result<Option<String>, StoreError> {
        if !crate::encryption::is_sealed(&text) {
            if self.data_key.is_some() {
                return Ok(self.withhold(|| {
                    format!("the action's {column} is stored in clear although the action is encrypted: it was modified")
                }));
            }
            return Ok(Some(text));
        }
        let Some(key) = self.key()? else {
            return Ok(None);
        };
        match Keyring::open_action_column(&key, self.org_id, self.id, column, &text) {
            Ok(plain) => Ok(Some(plain)),
            Err(Unreadable::Withheld(why)) => Ok(self.withhold(|| why)),
            Err(Unreadable::NotLoaded) => Err(StoreError::KeysNotLoaded(self.org_id.to_string())),
        }
    }

    /// The `params` and `context` columns' texts: sealed together
    /// ([`Keyring::seal_action_inputs`]), or each on its own (written before they were sealed
    /// together, or in clear).
    fn inputs(
        &mut self,
        params: String,
        context: String,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let together = Keyring::is_sealed_inputs(&params);
        if !together && context != crate::encryption::INPUTS_MARKER {
            return Ok((
                self.column("params", params)?,
                self.column("context", context)?,
            ));
        }
        if !together || context != crate::encryption::INPUTS_MARKER {
            self.withhold(|| {
                "the action's params and context are not sealed together although one says so: it was modified".to_string()
            });
            return Ok((None, None));
        }
        let Some(key) = self.key()? else {
            return Ok((None, None));
        };
        match Keyring::open_action_inputs(&key, self.org_id, self.id, &params) {
            Ok((params, context)) => Ok((Some(params), Some(context))),
            Err(Unreadable::Withheld(why)) => Ok((self.withhold(|| why), None)),
            Err(Unreadable::NotLoaded) => Err(StoreError::KeysNotLoaded(self.org_id.to_string())),
        }
    }
}

/// The error of an action update that changed no row: the action does not exist
/// ([`StoreError::NotFound`]), or its version is no longer `expected` ([`StoreError::Stale`]).
pub(crate) fn update_refused(
    org_id: &str,
    id: &str,
    expected: Option<i64>,
    found: Option<i64>,
) -> StoreError {
    match (expected, found) {
        (Some(expected), Some(found)) => StoreError::Stale(format!(
            "action {id} changed concurrently (version {found}, expected {expected})"
        )),
        _ => StoreError::NotFound(format!("action {id} of org {org_id} does not exist")),
    }
}

/// An approval timeout as stored (seconds, a signed 64-bit integer).
pub(crate) fn timeout_to_sql(seconds: Option<u64>) -> Result<Option<i64>, StoreError> {
    seconds
        .map(|s| {
            i64::try_from(s).map_err(|_| {
                StoreError::Invalid(format!("approval_timeout_seconds {s} is too large"))
            })
        })
        .transpose()
}

/// The result of a delivery update that changed `done` rows: none means its version moved on
/// (or it does not exist): [`StoreError::Stale`].
pub(crate) fn delivery_updated(
    u: &crate::model::DeliveryUpdate,
    done: u64,
) -> Result<(), StoreError> {
    if done == 0 {
        return Err(StoreError::Stale(format!(
            "delivery {} changed concurrently (expected version {})",
            u.id, u.expected_version
        )));
    }
    Ok(())
}

pub(crate) fn webhook_from_row(row: &impl DbRow, keys: &Keyring) -> Result<Webhook, StoreError> {
    let events: String = row.col("events")?;
    let id: String = row.col("id")?;
    let org_id: String = row.col("org_id")?;
    Ok(Webhook {
        id: id.clone(),
        org_id: org_id.clone(),
        url: row.col("url")?,
        events: serde_json::from_str(&events)
            .map_err(|e| StoreError::Corrupt(format!("webhook events are not a list: {e}")))?,
        format: row.col("format")?,
        secret: {
            let text: String = row.col("secret")?;
            match keys.open_secret(&org_id, &id, &text) {
                Ok(secret) => secret.to_string(),
                Err(Unreadable::NotLoaded) => return Err(StoreError::KeysNotLoaded(org_id)),
                // Shredded: the webhook can no longer sign (deliveries fail, visibly).
                Err(Unreadable::Withheld(_)) => String::new(),
            }
        },
        created_at: row.col("created_at")?,
        created_by: row.col("created_by")?,
        disabled_at: row.col("disabled_at")?,
    })
}

pub(crate) fn kill_switch_from_row(
    row: &impl DbRow,
) -> Result<aaf_core::kill_switch::KillSwitch, StoreError> {
    use aaf_core::kill_switch::{KillSwitch, KillSwitchScope, KillSwitchSource};
    let scope: String = row.col("scope")?;
    let source: String = row.col("source")?;
    Ok(KillSwitch {
        id: row.col("id")?,
        org_id: row.col("org_id")?,
        scope: KillSwitchScope::parse(&scope)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown kill switch scope {scope:?}")))?,
        agent_id: row.col("agent_id")?,
        tool: row.col("tool")?,
        reason: row.col("reason")?,
        source: KillSwitchSource::parse(&source)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown kill switch source {source:?}")))?,
        created_at: row.col("created_at")?,
        created_by: row.col("created_by")?,
        expires_at: row.col("expires_at")?,
        released_at: row.col("released_at")?,
        released_by: row.col("released_by")?,
    })
}

pub(crate) fn rate_limit_from_row(
    row: &impl DbRow,
) -> Result<(aaf_core::rate_limit::RateLimit, crate::model::RateLimitMeta), StoreError> {
    use aaf_core::kill_switch::KillSwitchScope;
    use aaf_core::rate_limit::{LimitMode, RateLimit, Window};
    let scope: String = row.col("scope")?;
    let period: String = row.col("period")?;
    let mode: String = row.col("mode")?;
    let count = |column: &str| -> Result<u32, StoreError> {
        let n: i64 = row.col(column)?;
        u32::try_from(n)
            .map_err(|_| StoreError::Corrupt(format!("rate limit {column} {n} is out of range")))
    };
    Ok((
        RateLimit {
            id: row.col("id")?,
            org_id: row.col("org_id")?,
            scope: KillSwitchScope::parse(&scope).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown rate limit scope {scope:?}"))
            })?,
            agent_id: row.col("agent_id")?,
            tool: row.col("tool")?,
            limit: count("limit_count")?,
            window: Window::parse(&period).ok_or_else(|| {
                StoreError::Corrupt(format!("unknown rate limit period {period:?}"))
            })?,
            burst: count("burst")?,
            mode: LimitMode::parse(&mode)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown rate limit mode {mode:?}")))?,
        },
        crate::model::RateLimitMeta {
            created_at: row.col("created_at")?,
            created_by: row.col("created_by")?,
        },
    ))
}

pub(crate) fn snapshot_from_row(row: &impl DbRow) -> Result<AgentSnapshot, StoreError> {
    let snapshot: String = row.col("snapshot")?;
    Ok(AgentSnapshot {
        id: row.col("id")?,
        org_id: row.col("org_id")?,
        agent_id: row.col("agent_id")?,
        kill_switch_id: row.col("kill_switch_id")?,
        created_at: row.col("created_at")?,
        created_by: row.col("created_by")?,
        sha256: row.col("sha256")?,
        snapshot: parse_json(&snapshot, "snapshot")?,
    })
}

/// Reads a `webhook_deliveries` row, opening a sealed payload (a JSON string `enc1....`,
/// sealed under the organisation's key); a payload that cannot be opened (shredded) is
/// `null`.
pub(crate) fn delivery_from_row(
    row: &impl DbRow,
    keys: &Keyring,
) -> Result<WebhookDelivery, StoreError> {
    let payload: String = row.col("payload")?;
    let attempts: i64 = row.col("attempts")?;
    let code: Option<i64> = row.col("last_status_code")?;
    let id: String = row.col("id")?;
    let org_id: String = row.col("org_id")?;
    let mut payload = parse_json(&payload, "payload")?;
    if let Some(sealed) = payload
        .as_str()
        .filter(|text| crate::encryption::is_sealed(text))
    {
        payload = match keys.open_secret(&org_id, &id, sealed) {
            Ok(plain) => parse_json(&plain, "payload")?,
            Err(Unreadable::NotLoaded) => return Err(StoreError::KeysNotLoaded(org_id)),
            Err(Unreadable::Withheld(_)) => Value::Null,
        };
    }
    Ok(WebhookDelivery {
        id,
        org_id,
        webhook_id: row.col("webhook_id")?,
        event: row.col("event")?,
        action_id: row.col("action_id")?,
        payload,
        status: row.col("status")?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("delivery attempts {attempts}")))?,
        next_attempt_at: row.col("next_attempt_at")?,
        last_status_code: code.and_then(|c| u16::try_from(c).ok()),
        last_error: row.col("last_error")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        version: row.col("version")?,
    })
}

pub(crate) fn vote_from_row(row: &impl DbRow) -> Result<ApprovalVote, StoreError> {
    Ok(ApprovalVote {
        org_id: row.col("org_id")?,
        action_id: row.col("action_id")?,
        user_id: row.col("user_id")?,
        user_name: row.col("user_name")?,
        vote: row.col("vote")?,
        comment: row.col("comment")?,
        created_at: row.col("created_at")?,
    })
}

/// The conflict of a policy object write that found no row to change.
pub(crate) fn policy_object_changed(kind: &str, key: &str) -> StoreError {
    StoreError::Stale(format!(
        "{kind} {key} changed concurrently or is disabled; read it again"
    ))
}

pub(crate) fn policy_object_from_row(row: &impl DbRow) -> Result<PolicyObject, StoreError> {
    Ok(PolicyObject {
        org_id: row.col("org_id")?,
        kind: row.col("kind")?,
        key: row.col("key")?,
        name: row.col("name")?,
        active_version: row.col("active_version")?,
        latest_version: row.col("latest_version")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        created_by: row.col("created_by")?,
        disabled_at: row.col("disabled_at")?,
        body: row.col("body")?,
        mode: row.col("mode")?,
        sha256: row.col("sha256")?,
    })
}

pub(crate) fn policy_version_from_row(row: &impl DbRow) -> Result<PolicyObjectVersion, StoreError> {
    Ok(PolicyObjectVersion {
        org_id: row.col("org_id")?,
        kind: row.col("kind")?,
        key: row.col("key")?,
        version: row.col("version")?,
        body: row.col("body")?,
        mode: row.col("mode")?,
        sha256: row.col("sha256")?,
        author: row.col("author")?,
        created_at: row.col("created_at")?,
    })
}

pub(crate) fn revision_from_row(row: &impl DbRow) -> Result<PolicyRevisionRecord, StoreError> {
    let bundle: String = row.col("bundle")?;
    Ok(PolicyRevisionRecord {
        org_id: row.col("org_id")?,
        revision: row.col("revision")?,
        bundle: parse_json(&bundle, "bundle")?,
        created_at: row.col("created_at")?,
    })
}

pub(crate) fn shadow_result_from_row(row: &impl DbRow) -> Result<ShadowResult, StoreError> {
    Ok(ShadowResult {
        org_id: row.col("org_id")?,
        policy_key: row.col("policy_key")?,
        policy_version: row.col("policy_version")?,
        action_id: row.col("action_id")?,
        enforced: row.col("enforced")?,
        shadow: row.col("shadow")?,
        differs: row.col::<i64>("differs")? != 0,
        created_at: row.col("created_at")?,
    })
}

pub(crate) fn shadow_count_from_row(row: &impl DbRow) -> Result<ShadowCount, StoreError> {
    let n: i64 = row.col("n")?;
    Ok(ShadowCount {
        enforced: row.col("enforced")?,
        shadow: row.col("shadow")?,
        count: u64::try_from(n).unwrap_or(0),
    })
}

pub(crate) fn settings_from_row(row: &impl DbRow) -> Result<OrgSettings, StoreError> {
    let timeout: Option<i64> = row.col("approval_timeout_seconds")?;
    let outbound: Option<String> = row.col("outbound_detection")?;
    Ok(OrgSettings {
        org_id: row.col("org_id")?,
        four_eyes: row.col::<i64>("four_eyes")? != 0,
        approval_timeout_seconds: timeout
            .map(|t| {
                u64::try_from(t).map_err(|_| {
                    StoreError::Corrupt(format!("approval_timeout_seconds {t} is negative"))
                })
            })
            .transpose()?,
        updated_at: row.col("updated_at")?,
        outbound_detection: outbound
            .map(|t| parse_json(&t, "outbound_detection"))
            .transpose()?,
    })
}

pub(crate) fn agent_profile_from_row(row: &impl DbRow) -> Result<AgentProfileRecord, StoreError> {
    let profile: String = row.col("profile")?;
    let folded_at: Option<String> = row.col("folded_at")?;
    let folded_id: Option<String> = row.col("folded_id")?;
    let folded_until = match (folded_at, folded_id) {
        (Some(at), Some(id)) => Some((at, id)),
        (None, None) => None,
        _ => {
            return Err(StoreError::Corrupt(
                "agent profile has only one of folded_at and folded_id".into(),
            ))
        }
    };
    Ok(AgentProfileRecord {
        org_id: row.col("org_id")?,
        agent_id: row.col("agent_id")?,
        profile: parse_json(&profile, "profile")?,
        folded_until,
        updated_at: row.col("updated_at")?,
    })
}

pub(crate) fn user_from_row(row: &impl DbRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.col("id")?,
        org_id: row.col("org_id")?,
        name: row.col("name")?,
        role: row.col("role")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    })
}

pub(crate) fn key_from_row(row: &impl DbRow) -> Result<AgentKey, StoreError> {
    Ok(AgentKey {
        id: row.col("id")?,
        org_id: row.col("org_id")?,
        agent_id: row.col("agent_id")?,
        prefix: row.col("prefix")?,
        created_at: row.col("created_at")?,
        expires_at: row.col("expires_at")?,
        revoked_at: row.col("revoked_at")?,
        last_used_at: row.col("last_used_at")?,
        tools: tools_from_row(row)?,
        created_by: row.col("created_by")?,
    })
}

/// The `tools` column: NULL or a JSON array of strings.
pub(crate) fn tools_from_row(row: &impl DbRow) -> Result<Option<Vec<String>>, StoreError> {
    let text: Option<String> = row.col("tools")?;
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| {
            StoreError::Corrupt(format!("column tools is not a JSON string array: {e}"))
        })
    })
    .transpose()
}

/// Constant-time equality of two hex digests (the row was found by an index lookup on the
/// digest; this re-check keeps the final comparison independent of where they differ).
pub(crate) fn same_digest(stored: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    stored.len() == presented.len() && bool::from(stored.as_bytes().ct_eq(presented.as_bytes()))
}

/// A [`TokenPrincipal`] from a [`crate::sql::FIND_TOKEN`] row; `None` unless its stored
/// digest equals `presented` (compared in constant time).
pub(crate) fn token_principal_from_row(
    row: &impl DbRow,
    presented: &str,
) -> Result<Option<TokenPrincipal>, StoreError> {
    if !same_digest(&row.col::<String>("token_hash")?, presented) {
        return Ok(None);
    }
    Ok(Some(TokenPrincipal {
        token_id: row.col("token_id")?,
        user_id: row.col("user_id")?,
        org: org_from_row(row, "org_")?,
        role: row.col("role")?,
        name: row.col("user_name")?,
    }))
}

/// An [`AgentPrincipal`] from a [`crate::sql::FIND_AGENT_KEY`] row; `None` unless its stored
/// digest equals `presented` (compared in constant time).
pub(crate) fn agent_principal_from_row(
    row: &impl DbRow,
    presented: &str,
) -> Result<Option<AgentPrincipal>, StoreError> {
    if !same_digest(&row.col::<String>("key_hash")?, presented) {
        return Ok(None);
    }
    let revoked_at: Option<String> = row.col("revoked_at")?;
    Ok(Some(AgentPrincipal {
        key_id: row.col("key_id")?,
        agent: agent_from_row(row, "agent_")?,
        org: org_from_row(row, "org_")?,
        expires_at: row.col("expires_at")?,
        revoked: revoked_at.is_some(),
        tools: tools_from_row(row)?,
    }))
}

/// The `tools` column's text for a key's tool list (`None` = every tool).
pub(crate) fn tools_text(tools: Option<&Vec<String>>) -> Result<Option<String>, StoreError> {
    tools
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Invalid(format!("key tools: {e}")))
}

/// Whether a key may be revoked, given its `revoked_at` as read (`None`: no such key).
pub(crate) fn check_revocable(
    key_id: &str,
    revoked: Option<Option<String>>,
) -> Result<(), StoreError> {
    match revoked {
        None => Err(StoreError::NotFound(format!("key {key_id}"))),
        Some(Some(at)) => Err(StoreError::Conflict(format!(
            "key {key_id} was already revoked at {at}"
        ))),
        Some(None) => Ok(()),
    }
}

/// [`StoreError::Conflict`] when no other admin would be left.
pub(crate) fn check_other_admins(others: usize) -> Result<(), StoreError> {
    if others == 0 {
        return Err(StoreError::Conflict(
            "the organisation must keep at least one admin: make another user admin first"
                .to_string(),
        ));
    }
    Ok(())
}

/// A page of `audit_events` rows as chained events; a row that cannot be read is
/// [`StoreError::Corrupt`] naming its place (verification reports it in detail).
pub(crate) fn page_of_events<R: DbRow>(
    rows: &[R],
    org_id: &str,
    keys: &Keyring,
) -> Result<Vec<ChainedEvent>, StoreError> {
    rows.iter()
        .map(|r| {
            event_from_row(r, keys)?.map_err(|(seq, reason)| {
                StoreError::Corrupt(format!(
                    "audit event {org_id}/{}: {reason}",
                    seq.map_or("?".to_string(), |s| s.to_string())
                ))
            })
        })
        .collect()
}

pub(crate) fn budget_from_row(row: &impl DbRow) -> Result<aaf_core::budget::Budget, StoreError> {
    use aaf_core::budget::{Budget, BudgetPeriod};
    let period: String = row.col("period")?;
    let limit: i64 = row.col("limit_amount")?;
    Ok(Budget {
        id: row.col("id")?,
        org_id: row.col("org_id")?,
        agent_id: row.col("agent_id")?,
        unit: row.col("unit")?,
        period: BudgetPeriod::parse(&period)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown budget period {period:?}")))?,
        limit: u64::try_from(limit)
            .map_err(|_| StoreError::Corrupt(format!("budget limit {limit} is negative")))?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    })
}

/// A row of `mcp_servers` (`sql::LIST_MCP_SERVERS`, `sql::GET_MCP_SERVER`).
pub(crate) fn mcp_server_from_row(row: &impl DbRow) -> Result<McpServer, StoreError> {
    let transport: String = row.col("transport")?;
    Ok(McpServer {
        id: row.col("id")?,
        org_id: row.col("org_id")?,
        name: row.col("name")?,
        transport: parse_json(&transport, "transport")?,
        created_at: row.col("created_at")?,
        created_by: row.col("created_by")?,
        updated_at: row.col("updated_at")?,
    })
}

/// A row of `mcp_tool_pins` (`sql::LIST_MCP_TOOL_PINS`, `sql::GET_MCP_TOOL_PIN`).
pub(crate) fn mcp_tool_pin_from_row(row: &impl DbRow) -> Result<McpToolPin, StoreError> {
    let definition: String = row.col("definition")?;
    let pending_definition: Option<String> = row.col("pending_definition")?;
    Ok(McpToolPin {
        org_id: row.col("org_id")?,
        server: row.col("server")?,
        tool: row.col("tool")?,
        hash: row.col("hash")?,
        definition: parse_json(&definition, "definition")?,
        pending_hash: row.col("pending_hash")?,
        pending_definition: pending_definition
            .map(|text| parse_json(&text, "pending_definition"))
            .transpose()?,
        first_seen_at: row.col("first_seen_at")?,
        accepted_at: row.col("accepted_at")?,
        accepted_by: row.col("accepted_by")?,
        changed_at: row.col("changed_at")?,
    })
}

/// Adds one row of `AGENT_USAGE` (one tool) to `usage`.
pub(crate) fn add_usage_row(
    usage: &mut crate::model::AgentUsage,
    row: &impl DbRow,
) -> Result<(), StoreError> {
    let count = |column: &str| -> Result<u64, StoreError> {
        let n: Option<i64> = row.col(column)?;
        Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
    };
    let tool: String = row.col("tool")?;
    let (minute, hour, denials) = (
        count("last_minute")?,
        count("last_hour")?,
        count("denials")?,
    );
    usage.actions_last_minute += minute;
    usage.actions_last_hour += hour;
    usage.denials_last_5_minutes += denials;
    usage.tools.insert(tool, (minute, hour));
    Ok(())
}

/// Reads a `data_keys` row.
pub(crate) fn data_key_from_row(
    row: &impl DbRow,
) -> Result<crate::encryption::DataKeyRow, StoreError> {
    Ok(crate::encryption::DataKeyRow {
        org_id: row.col("org_id")?,
        id: row.col("id")?,
        wrapped: row.col("wrapped")?,
        master_key_id: row.col("master_key_id")?,
        created_at: row.col("created_at")?,
        retired_at: row.col("retired_at")?,
        destroyed_at: row.col("destroyed_at")?,
    })
}

/// Why an action could not be shredded: `found` is `None` when there is no such action, else
/// when its key was destroyed (`None` inside: it was written in clear).
pub(crate) fn shred_refused(action_id: &str, found: Option<Option<String>>) -> StoreError {
    match found {
        None => StoreError::NotFound(format!("action_id: no action {action_id}")),
        Some(Some(at)) => StoreError::Conflict(format!(
            "action {action_id} was crypto-shredded already (on {at})"
        )),
        Some(None) => StoreError::Conflict(format!(
            "action {action_id} was recorded in clear (before encryption was configured): it has no data key to destroy"
        )),
    }
}

/// Reads the columns of a `retention_rules` row.
pub(crate) fn retention_from_columns(
    rules: &str,
    legal_hold: Option<String>,
) -> Result<aaf_core::retention::RetentionRules, StoreError> {
    Ok(aaf_core::retention::RetentionRules {
        rules: serde_json::from_str(rules)
            .map_err(|e| StoreError::Corrupt(format!("retention rules: {e}")))?,
        legal_hold,
    })
}

/// The stored text of an organisation's retention rules (days per class).
pub(crate) fn retention_rules_text(
    rules: &aaf_core::retention::RetentionRules,
) -> Result<String, StoreError> {
    serde_json::to_string(&rules.rules)
        .map_err(|e| StoreError::Invalid(format!("retention rules: {e}")))
}

/// The conflict of a payload removal that found the payload gone (another node removed it).
pub(crate) fn payload_gone(org_id: &str, seq: u64) -> StoreError {
    StoreError::Conflict(format!(
        "the payload of event {org_id}/{seq} is already removed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(org_id: &str) -> Result<ChainSummary, ChainError> {
        Ok(ChainSummary {
            org_id: org_id.to_string(),
            count: 1,
            head_seq: 1,
            head_hash: [1; 32],
        })
    }

    #[test]
    fn chains_are_compared_with_the_organisations() {
        let broken = Err(ChainError {
            org_id: "gone-broken".into(),
            seq: 3,
            kind: ChainErrorKind::Missing { found: 4 },
        });
        let mut results = vec![ok("b"), ok(crate::SYSTEM_CHAIN), ok("gone"), broken.clone()];
        compare_with_orgs(&mut results, &["a".to_string(), "b".to_string()]);
        let orgs: Vec<&str> = results.iter().map(result_org).collect();
        assert_eq!(orgs, ["a", "b", "gone", "gone-broken", crate::SYSTEM_CHAIN]);
        // An organisation without a chain lost it.
        let missing = results[0].clone().unwrap_err();
        assert_eq!(missing.kind, ChainErrorKind::ChainMissing);
        assert_eq!(missing.seq, 1);
        assert!(
            missing.to_string().contains("audit chain of org a"),
            "{missing}"
        );
        // A chain of no organisation (other than system) lost its organisation's row.
        assert_eq!(
            results[2].clone().unwrap_err().kind,
            ChainErrorKind::OrgMissing {
                org_id: "gone".into()
            }
        );
        // A chain already broken keeps its first error; intact ones stay intact.
        assert_eq!(results[3], broken);
        assert!(results[1].is_ok() && results[4].is_ok());
    }
}
