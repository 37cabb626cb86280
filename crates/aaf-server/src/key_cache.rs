//! A short-lived in-memory cache of agent key lookups.
//!
//! Authenticating an agent is a database read per request; at tens of thousands of decisions
//! per second that read dominates. The cache keeps a successful lookup (by key hash) for
//! `auth.key_cache_ttl_ms` (default 500 ms). A revocation or rotation clears it at once:
//! through this node directly, through another PostgreSQL node by `NOTIFY`
//! ([`aaf_store::Store::on_key_changes`]); the lifetime only bounds the delay should a
//! notification be lost. Failed lookups are never cached: a new key works at once, and an
//! unknown key always costs a database read.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use aaf_store::AgentPrincipal;

/// Most entries kept; when full, expired entries are dropped, and if none had expired the
/// whole cache is cleared (simple and bounded; keys are few per deployment).
const MAX_ENTRIES: usize = 100_000;

/// The cache. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, (Instant, AgentPrincipal)>>,
}

impl KeyCache {
    /// A cache whose entries live `ttl`; a zero `ttl` disables caching.
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached principal of `key_hash`, if it was stored less than `ttl` ago.
    pub fn get(&self, key_hash: &str) -> Option<AgentPrincipal> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().ok()?;
        let (at, principal) = entries.get(key_hash)?;
        (at.elapsed() < self.ttl).then(|| principal.clone())
    }

    /// Forgets every entry (after a revocation or rotation through this node, so that it
    /// takes effect with the next request).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }

    /// Remembers a live principal for `key_hash`.
    pub fn put(&self, key_hash: &str, principal: &AgentPrincipal) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_ENTRIES {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(key_hash.to_string(), (Instant::now(), principal.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aaf_store::{Agent, Org};

    fn principal() -> AgentPrincipal {
        AgentPrincipal {
            key_id: "k".into(),
            agent: Agent {
                id: "a".into(),
                org_id: "o".into(),
                name: "n".into(),
                risk_score: 0.0,
                public_key: None,
                created_at: "t".into(),
            },
            org: Org {
                id: "o".into(),
                name: "default".into(),
                plan: "p".into(),
                created_at: "t".into(),
            },
            expires_at: None,
            revoked: false,
            tools: None,
        }
    }

    #[test]
    fn entries_expire_and_zero_ttl_disables() {
        let cache = KeyCache::new(Duration::from_millis(30));
        cache.put("h", &principal());
        assert!(cache.get("h").is_some());
        assert!(cache.get("other").is_none());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get("h").is_none());
        let off = KeyCache::new(Duration::ZERO);
        off.put("h", &principal());
        assert!(off.get("h").is_none());
    }
}
