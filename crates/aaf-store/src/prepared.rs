//! Write units made ready for any backend: JSON serialised and canonicalised on the
//! submitter's thread, and events linked into their chains (seq, prev_hash, hash) in memory
//! once the chain heads are read inside the writing transaction.

use std::collections::HashMap;
use std::sync::Arc;

use aaf_core::audit::{
    event_hash_parts, hex32, AuditEvent, ChainedEvent, EventHeader, GENESIS_HASH,
};
use aaf_core::canonical::to_canonical_json;
use aaf_core::evidence::payload::{self, Payload, SALT_LEN};
use rand::RngCore;
use serde_json::Value;

use crate::encryption::{ActionKey, Keyring, OrgKeys};
use crate::model::{ActionWrite, Mutation, NewEvent, WriteUnit};
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

/// An event's hashed `data` in RFC 8785 canonical form (what is hashed, and, as text, exactly
/// what is stored, so that the verifier can require the stored bytes to be the hashed ones),
/// and its payload. Events of format 2, all that AAF writes, hash the committed data
/// `{"payload_sha256": ...}` ([`aaf_core::evidence::payload`]) and store the salted payload
/// sealed beside it.
#[derive(Debug, Clone)]
pub(crate) struct EventData {
    pub(crate) text: String,
    /// The stored payload (sealed, or in clear without a master key).
    pub(crate) payload: Option<String>,
    /// The commitment and salt, for the chained event handed back to the caller.
    pub(crate) committed: Option<Payload>,
}

impl EventData {
    /// The canonical bytes (the stored text's bytes).
    pub(crate) fn canonical(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

/// The keys a unit is sealed with, gathered (and loaded or made when missing) by the store
/// before [`PreparedUnit::new`]: each organisation's keys, and the keys of existing actions
/// the unit updates.
pub(crate) struct Sealing<'a> {
    pub(crate) keys: &'a Keyring,
    pub(crate) orgs: HashMap<String, Arc<OrgKeys>>,
    pub(crate) actions: HashMap<(String, String), Option<Arc<ActionKey>>>,
}

impl Sealing<'_> {
    fn org(&self, org_id: &str) -> Option<&OrgKeys> {
        self.orgs.get(org_id).map(|k| &**k)
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
        /// The action's own key, wrapped (`None` without a master key).
        data_key: Option<String>,
    },
    Update {
        result: Option<String>,
        params: Option<String>,
        context: Option<String>,
    },
}

impl PreparedUnit {
    /// Serialises the unit's JSON and seals what is sealed at rest (docs/encryption.md): the
    /// action's `params`, `context`, `result` and `signals` under the action's key, each
    /// event's salted payload, each new webhook's secret and each webhook delivery's body
    /// under the organisation's key.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] when a value cannot be serialised or canonicalised;
    /// [`StoreError::Unavailable`] when a key needed is missing from `sealing`.
    pub(crate) fn new(
        mut unit: WriteUnit,
        sealing: &Sealing<'_>,
    ) -> Result<PreparedUnit, StoreError> {
        let keys = sealing.keys;
        let action = match &unit.action {
            Some(ActionWrite::Insert(record)) => {
                let (org, id) = (&record.org_id, &record.id);
                let (key, data_key) = if keys.enabled() {
                    let (key, wrapped) = keys.new_action_key(sealing.org(org), org, id)?;
                    (Some(key), Some(wrapped))
                } else {
                    (None, None)
                };
                let seal = |column: &str, value: &Value| -> Result<String, StoreError> {
                    let text = json_text(value)?;
                    match &key {
                        Some(key) => Keyring::seal_action_column(key, org, id, column, &text),
                        None => Ok(text),
                    }
                };
                let (params, context) =
                    seal_inputs(key.as_deref(), org, id, &record.params, &record.context)?;
                Some(ActionTexts::Insert {
                    params,
                    context,
                    policies: json_text(&record.policies)?,
                    result: record
                        .result
                        .as_ref()
                        .map(|v| seal("result", v))
                        .transpose()?,
                    signals: record
                        .signals
                        .as_ref()
                        .map(|v| seal("signals", v))
                        .transpose()?,
                    data_key,
                })
            }
            Some(ActionWrite::Update {
                org_id,
                id,
                result,
                inputs,
                ..
            }) => {
                let key = sealing
                    .actions
                    .get(&(org_id.clone(), id.clone()))
                    .cloned()
                    .flatten();
                let seal = |column: &str, value: &Value| -> Result<String, StoreError> {
                    let text = json_text(value)?;
                    match &key {
                        Some(key) => Keyring::seal_action_column(key, org_id, id, column, &text),
                        None => Ok(text),
                    }
                };
                let (params, context) = match inputs {
                    Some(inputs) => {
                        let (params, context) = seal_inputs(
                            key.as_deref(),
                            org_id,
                            id,
                            &inputs.params,
                            &inputs.context,
                        )?;
                        (Some(params), Some(context))
                    }
                    None => (None, None),
                };
                Some(ActionTexts::Update {
                    result: result.as_ref().map(|v| seal("result", v)).transpose()?,
                    params,
                    context,
                })
            }
            None => None,
        };
        for mutation in &mut unit.mutations {
            match mutation {
                Mutation::InsertWebhook(webhook) => {
                    webhook.secret = keys.seal_secret(
                        sealing.org(&webhook.org_id),
                        &webhook.org_id,
                        &webhook.id,
                        &webhook.secret,
                    )?;
                }
                // A delivery's body repeats its event (an approval request shows the action's
                // params): sealed like a secret, stored as the JSON string of the sealed text.
                Mutation::InsertDelivery(delivery) if keys.enabled() => {
                    let text = json_text(&delivery.payload)?;
                    delivery.payload = Value::String(keys.seal_secret(
                        sealing.org(&delivery.org_id),
                        &delivery.org_id,
                        &delivery.id,
                        &text,
                    )?);
                }
                _ => {}
            }
        }
        let event_data = committed_data(&unit.events, sealing)?;
        Ok(PreparedUnit {
            unit,
            action,
            event_data,
        })
    }
}

/// Each event's committed data (what is hashed and stored in `data`) and sealed payload.
///
/// # Errors
///
/// [`StoreError::Invalid`] when the data has no canonical form (an integer beyond
/// `-(2^53-1)..=2^53-1`, see [`aaf_core::canonical`]): such an event is not recorded.
pub(crate) fn committed_data(
    events: &[NewEvent],
    sealing: &Sealing<'_>,
) -> Result<Vec<EventData>, StoreError> {
    let mut rng = rand::rng();
    events
        .iter()
        .map(|e| {
            let canonical = to_canonical_json(&e.data).map_err(|err| {
                StoreError::Invalid(format!(
                    "audit event {} cannot be hashed: {err}",
                    e.event_type
                ))
            })?;
            let mut salt = [0u8; SALT_LEN];
            rng.fill_bytes(&mut salt);
            let sha256 = payload::commitment(&salt, &canonical);
            let sealed = sealing.keys.seal_payload(
                sealing.org(&e.org_id),
                &e.org_id,
                &sha256,
                &salt,
                &canonical,
            )?;
            Ok(EventData {
                text: payload::committed_data_text(&sha256),
                payload: Some(sealed),
                committed: Some(Payload {
                    sha256,
                    salt: Some(hex32::encode(&salt)),
                    withheld: None,
                }),
            })
        })
        .collect()
}

/// The texts of an action's `params` and `context` columns: sealed together under the
/// action's key ([`Keyring::seal_action_inputs`]), or their JSON in clear without one.
fn seal_inputs(
    key: Option<&ActionKey>,
    org_id: &str,
    action_id: &str,
    params: &Value,
    context: &Value,
) -> Result<(String, String), StoreError> {
    let (params, context) = (json_text(params)?, json_text(context)?);
    match key {
        Some(key) => Keyring::seal_action_inputs(key, org_id, action_id, &params, &context),
        None => Ok((params, context)),
    }
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
    pub(crate) payload: Option<String>,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
}

/// Moves each unit's event data into its chained events, which [`link_events`] made without
/// it (cloning every event's data on the writer's thread cost more than the rest of the
/// linking): called once the units are committed, with `chained` in the order of `units`.
pub(crate) fn hand_back_data(units: &mut [PreparedUnit], chained: &mut [Vec<ChainedEvent>]) {
    for (unit, events) in units.iter_mut().zip(chained.iter_mut()) {
        for (new, event) in unit.unit.events.iter_mut().zip(events.iter_mut()) {
            event.event.data = std::mem::take(&mut new.data);
        }
    }
}

/// Links each group's events, in order, to their organisations' chains starting from
/// `heads` (genesis for a chain without a head), advancing `heads`; returns the chained
/// events per group (their `data` left `null` for [`hand_back_data`]) and, flattened in the
/// same order, their rows.
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
                    // Moved in from the unit once the transaction commits
                    // ([`hand_back_data`]): a failed batch is retried with its units intact.
                    data: Value::Null,
                },
                prev_hash: head.1,
                hash,
                payload: canonical.committed.clone(),
            };
            *head = (seq, hash);
            rows.push(EventRow {
                seq: seq_to_sql(seq)?,
                data: canonical.text.clone(),
                payload: canonical.payload.clone(),
                prev_hash: hex32::encode(&link.prev_hash),
                hash: hex32::encode(&hash),
            });
            linked.push(link);
        }
        chained.push(linked);
    }
    Ok((chained, rows))
}
