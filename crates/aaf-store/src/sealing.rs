//! The store's side of encryption at rest (docs/encryption.md): gathering the keys a write
//! unit is sealed with (loading them, or making an organisation's first data key), reading
//! again when a sealed value needs keys this node has not loaded, and opening events read
//! raw.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use aaf_core::audit::{ChainedEvent, StoredEvent};

use crate::encryption::{DataKeyRow, Keyring, OrgKeys, Unreadable};
use crate::model::{ActionWrite, Mutation, WriteUnit};
use crate::prepared::{PreparedUnit, Sealing};
use crate::{Backend, Store, StoreError};

/// How many times a read is retried after loading keys it found missing (each retry may
/// meet another organisation's keys in a read across organisations).
const KEY_LOAD_RETRIES: usize = 8;

impl Store {
    pub(crate) fn keys(&self) -> &Arc<Keyring> {
        match &self.backend {
            Backend::Sqlite(s) => &s.keys,
            Backend::Postgres(p) => &p.keys,
        }
    }

    /// Whether new values are sealed at rest (a master key is configured).
    pub fn encryption_enabled(&self) -> bool {
        self.keys().enabled()
    }

    /// The configured master key's id ([`crate::encryption::MasterKey::id`]), if any.
    pub fn master_key_id(&self) -> Option<&str> {
        self.keys().master_key_id()
    }

    /// The organisation's data keys as stored (never their key material), oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] when a row cannot be read.
    pub async fn list_data_keys(&self, org_id: &str) -> Result<Vec<DataKeyRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.data_keys(org_id).await,
            Backend::Postgres(p) => p.data_keys(org_id).await,
        }
    }

    /// A new data key for `org_id` wrapped by the master key, for
    /// [`Mutation::RotateDataKey`].
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] when no master key is configured.
    pub fn new_data_key(&self, org_id: &str, now: &str) -> Result<DataKeyRow, StoreError> {
        self.keys().new_data_key(org_id, now)
    }

    /// Reads the organisation's data keys again (after this node rotated or destroyed one),
    /// and forgets the cached key of `action_id` when given (after it was shredded).
    ///
    /// # Errors
    ///
    /// As [`Store::list_data_keys`]; [`StoreError::Unavailable`] when a key does not unwrap
    /// with the configured master key.
    pub async fn reload_data_keys(
        &self,
        org_id: &str,
        action_id: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(action_id) = action_id {
            self.keys().forget_action(org_id, action_id);
        }
        self.load_org_keys(org_id).await
    }

    async fn load_org_keys(&self, org_id: &str) -> Result<(), StoreError> {
        let rows = self.list_data_keys(org_id).await?;
        self.keys().install(org_id, &rows)
    }

    /// The organisation's keys with an active one, loading them when missing or stale and
    /// making the organisation's first data key when it has none.
    async fn org_keys_for_writing(&self, org_id: &str) -> Result<Arc<OrgKeys>, StoreError> {
        let keys = self.keys();
        if let Some(org) = keys.fresh(org_id).filter(|k| k.has_active()) {
            return Ok(org);
        }
        self.load_org_keys(org_id).await?;
        if let Some(org) = keys.org(org_id).filter(|k| k.has_active()) {
            return Ok(org);
        }
        let first = keys.new_data_key(org_id, &now_rfc3339())?;
        let unit = WriteUnit {
            mutations: vec![Mutation::InsertDataKey(first)],
            action: None,
            events: Vec::new(),
        };
        // Nothing of this unit is sealed: prepared without keys (no recursion into here).
        let prepared = PreparedUnit::new(
            unit,
            &Sealing {
                keys,
                orgs: HashMap::new(),
                actions: HashMap::new(),
            },
        )?;
        let written = match &self.backend {
            Backend::Sqlite(s) => s.commit(vec![prepared]).await,
            Backend::Postgres(p) => p.commit(std::slice::from_ref(&prepared)).await,
        };
        match written {
            // Another node (or task) made it first: read theirs.
            Ok(_) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        self.load_org_keys(org_id).await?;
        keys.org(org_id).filter(|k| k.has_active()).ok_or_else(|| {
            StoreError::Unavailable(format!(
                "organisation {org_id} has no active data key: nothing can be sealed"
            ))
        })
    }

    /// Prepares a unit for writing: gathers its keys, then serialises and seals it
    /// ([`PreparedUnit::new`]).
    ///
    /// # Errors
    ///
    /// As [`PreparedUnit::new`]; the store's errors while loading or making keys.
    pub(crate) async fn prepare(&self, unit: WriteUnit) -> Result<PreparedUnit, StoreError> {
        let keys = self.keys();
        let mut sealing = Sealing {
            keys,
            orgs: HashMap::new(),
            actions: HashMap::new(),
        };
        if keys.enabled() {
            let mut orgs: Vec<&str> = unit.events.iter().map(|e| e.org_id.as_str()).collect();
            for mutation in &unit.mutations {
                match mutation {
                    Mutation::InsertWebhook(webhook) => orgs.push(&webhook.org_id),
                    Mutation::InsertDelivery(delivery) => orgs.push(&delivery.org_id),
                    _ => {}
                }
            }
            match &unit.action {
                Some(ActionWrite::Insert(record)) => orgs.push(&record.org_id),
                Some(ActionWrite::Update {
                    org_id,
                    id,
                    result,
                    inputs,
                    ..
                }) if result.is_some() || inputs.is_some() => {
                    let key = self.action_key(org_id, id).await?;
                    sealing.actions.insert((org_id.clone(), id.clone()), key);
                }
                _ => {}
            }
            orgs.sort_unstable();
            orgs.dedup();
            for org in orgs {
                let loaded = self.org_keys_for_writing(org).await?;
                sealing.orgs.insert(org.to_string(), loaded);
            }
        }
        PreparedUnit::new(unit, &sealing)
    }

    /// An existing action's key (`None`: the action was recorded in clear, or its key was
    /// destroyed; what is written of it then is written in clear, or refused).
    async fn action_key(
        &self,
        org_id: &str,
        action_id: &str,
    ) -> Result<Option<Arc<crate::encryption::ActionKey>>, StoreError> {
        if let Some(key) = self.keys().cached_action_key(org_id, action_id) {
            return Ok(Some(key));
        }
        let wrapped = match &self.backend {
            Backend::Sqlite(s) => s.action_data_key(org_id, action_id).await?,
            Backend::Postgres(p) => p.action_data_key(org_id, action_id).await?,
        };
        let Some(Some(wrapped)) = wrapped else {
            return Ok(None);
        };
        for _ in 0..2 {
            match self.keys().action_key(org_id, action_id, Some(&wrapped)) {
                Ok(key) => return Ok(Some(key)),
                Err(Unreadable::NotLoaded) => self.load_org_keys(org_id).await?,
                Err(Unreadable::Withheld(why)) => {
                    return Err(StoreError::Conflict(format!(
                        "action {action_id} cannot be written: {why}"
                    )))
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "the data keys of organisation {org_id} could not be loaded"
        )))
    }

    /// Runs `read`, and when it meets sealed values of an organisation whose keys this node
    /// has not loaded (or loaded too long ago), loads them and runs it again.
    ///
    /// # Errors
    ///
    /// `read`'s errors; [`StoreError::KeysNotLoaded`] when the keys are still missing after
    /// [`KEY_LOAD_RETRIES`] loads.
    pub(crate) async fn keyed<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut last = None;
        for _ in 0..=KEY_LOAD_RETRIES {
            match read().await {
                Err(StoreError::KeysNotLoaded(org_id)) => {
                    self.load_org_keys(&org_id).await?;
                    last = Some(org_id);
                }
                other => return other,
            }
        }
        Err(StoreError::KeysNotLoaded(last.unwrap_or_default()))
    }

    /// The organisation's retention rules, if any were set (docs/retention.md).
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`]; [`StoreError::Corrupt`] when the row cannot be read.
    pub async fn retention_rules(
        &self,
        org_id: &str,
    ) -> Result<Option<aaf_core::retention::RetentionRules>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.retention_rules(org_id).await,
            Backend::Postgres(p) => p.retention_rules(org_id).await,
        }
    }

    /// Seqs of at most `limit` events of `org_id` of `event_type` recorded before `before`
    /// (RFC 3339 UTC) whose payload is still stored, oldest first: what retention removes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`].
    pub async fn retention_candidates(
        &self,
        org_id: &str,
        event_type: &str,
        before: &str,
        limit: u32,
    ) -> Result<Vec<u64>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.retention_candidates(org_id, event_type, before, limit)
                    .await
            }
            Backend::Postgres(p) => {
                p.retention_candidates(org_id, event_type, before, limit)
                    .await
            }
        }
    }

    /// Makes events read raw ([`Store::audit_events_of_action`] and the like) readable: their
    /// payloads opened and checked against their commitments, `data` parsed
    /// ([`aaf_core::audit::ChainedEvent::payload`] says what is withheld and why).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] when an event's data or payload is not JSON; the errors of
    /// loading keys.
    pub async fn open_events(
        &self,
        events: &[StoredEvent],
    ) -> Result<Vec<ChainedEvent>, StoreError> {
        self.keyed(|| async {
            events
                .iter()
                .map(|stored| {
                    crate::rows::open_event(self.keys(), stored.clone())?.map_err(
                        |(seq, reason)| {
                            StoreError::Corrupt(format!(
                                "audit event {}/{}: {reason}",
                                stored.org_id,
                                seq.map_or("?".to_string(), |s| s.to_string())
                            ))
                        },
                    )
                })
                .collect()
        })
        .await
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
