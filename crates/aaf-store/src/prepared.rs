//! Write units made ready for any backend: JSON serialised and canonicalised on the
//! submitter's thread, and events linked into their chains (seq, prev_hash, hash) in memory
//! once the chain heads are read inside the writing transaction.

use std::collections::HashMap;

use aaf_core::audit::{event_hash_parts, AuditEvent, ChainedEvent, EventHeader, GENESIS_HASH};
use aaf_core::canonical::to_canonical_json;
use serde_json::Value;

use crate::model::{ActionWrite, NewEvent, WriteUnit};
use crate::StoreError;

/// A [`WriteUnit`] with its JSON already serialised: the action's JSON columns and each
/// event's `data` as stored text and in RFC 8785 canonical form (for the hash). Made by
/// [`PreparedUnit::new`] on the submitting request's thread, so the single writer thread only
/// links, hashes and inserts.
#[derive(Debug, Clone)]
pub(crate) struct PreparedUnit {
    pub(crate) unit: WriteUnit,
    pub(crate) action: Option<ActionTexts>,
    pub(crate) event_data: Vec<EventData>,
}

/// An event's `data` in RFC 8785 canonical form: what is hashed, and, as text, exactly what
/// is stored (so that the verifier can require the stored bytes to be the hashed ones).
#[derive(Debug, Clone)]
pub(crate) struct EventData {
    pub(crate) text: String,
}

impl EventData {
    /// The canonical bytes (the stored text's bytes).
    pub(crate) fn canonical(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

/// The serialised JSON columns of a unit's action write.
#[derive(Debug, Clone)]
pub(crate) enum ActionTexts {
    Insert {
        params: String,
        context: String,
        policies: String,
        result: Option<String>,
        signals: Option<String>,
    },
    Update {
        result: Option<String>,
        params: Option<String>,
        context: Option<String>,
    },
}

impl PreparedUnit {
    /// Serialises the unit's JSON.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] when a value cannot be serialised or canonicalised.
    pub(crate) fn new(unit: WriteUnit) -> Result<PreparedUnit, StoreError> {
        let action = match &unit.action {
            Some(ActionWrite::Insert(record)) => Some(ActionTexts::Insert {
                params: json_text(&record.params)?,
                context: json_text(&record.context)?,
                policies: json_text(&record.policies)?,
                result: record.result.as_ref().map(json_text).transpose()?,
                signals: record.signals.as_ref().map(json_text).transpose()?,
            }),
            Some(ActionWrite::Update {
                result,
                params,
                context,
                ..
            }) => Some(ActionTexts::Update {
                result: result.as_ref().map(json_text).transpose()?,
                params: params.as_ref().map(json_text).transpose()?,
                context: context.as_ref().map(json_text).transpose()?,
            }),
            None => None,
        };
        let event_data = canonical_data(&unit.events)?;
        Ok(PreparedUnit {
            unit,
            action,
            event_data,
        })
    }
}

/// Each event's `data` in canonical form (RFC 8785), which is both hashed and stored.
///
/// # Errors
///
/// [`StoreError::Invalid`] when the data has no canonical form (an integer beyond
/// `-(2^53-1)..=2^53-1`, see [`aaf_core::canonical`]): such an event is not recorded.
pub(crate) fn canonical_data(events: &[NewEvent]) -> Result<Vec<EventData>, StoreError> {
    events
        .iter()
        .map(|e| {
            let canonical = to_canonical_json(&e.data).map_err(|err| {
                StoreError::Invalid(format!(
                    "audit event {} cannot be hashed: {err}",
                    e.event_type
                ))
            })?;
            let text = String::from_utf8(canonical).map_err(|err| {
                StoreError::Invalid(format!("canonical json is not utf-8: {err}"))
            })?;
            Ok(EventData { text })
        })
        .collect()
}

pub(crate) fn json_text(value: &Value) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("value cannot be written as json: {e}")))
}

pub(crate) fn seq_to_sql(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Invalid(format!("seq {seq} is out of range")))
}

/// An event ready to insert: the chained event and its text columns.
pub(crate) struct EventRow {
    pub(crate) seq: i64,
    pub(crate) data: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

/// Links each group's events, in order, to their organisations' chains starting from
/// `heads` (genesis for a chain without a head), advancing `heads`; returns the chained
/// events per group and, flattened in the same order, their rows.
pub(crate) fn link_events(
    heads: &mut HashMap<String, (u64, [u8; 32])>,
    groups: &[(&[NewEvent], &[EventData])],
) -> Result<(Vec<Vec<ChainedEvent>>, Vec<EventRow>), StoreError> {
    let mut chained: Vec<Vec<ChainedEvent>> = Vec::with_capacity(groups.len());
    let mut rows: Vec<EventRow> = Vec::new();
    for (group, data) in groups {
        if group.len() != data.len() {
            return Err(StoreError::Invalid(
                "prepared event data does not match the events".to_string(),
            ));
        }
        let mut linked = Vec::with_capacity(group.len());
        for (new, canonical) in group.iter().zip(data.iter()) {
            let head = heads.entry(new.org_id.clone()).or_insert((0, GENESIS_HASH));
            let seq = head.0 + 1;
            let header = EventHeader {
                seq,
                ts: &new.ts,
                org_id: &new.org_id,
                agent_id: new.agent_id.as_deref(),
                action_id: new.action_id.as_deref(),
                event_type: &new.event_type,
            };
            let hash = event_hash_parts(&head.1, &header, canonical.canonical())
                .map_err(|e| StoreError::Invalid(format!("audit event cannot be hashed: {e}")))?;
            let link = ChainedEvent {
                event: AuditEvent {
                    seq,
                    ts: new.ts.clone(),
                    org_id: new.org_id.clone(),
                    agent_id: new.agent_id.clone(),
                    action_id: new.action_id.clone(),
                    event_type: new.event_type.clone(),
                    data: new.data.clone(),
                },
                prev_hash: head.1,
                hash,
            };
            *head = (seq, hash);
            rows.push(EventRow {
                seq: seq_to_sql(seq)?,
                data: canonical.text.clone(),
                prev_hash: hex::encode(link.prev_hash),
                hash: hex::encode(hash),
            });
            linked.push(link);
        }
        chained.push(linked);
    }
    Ok((chained, rows))
}
