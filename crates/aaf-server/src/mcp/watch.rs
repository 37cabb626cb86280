//! What agents watch on the upstreams: resource subscriptions and list changes (MCP
//! specification, "Resources: Subscriptions" and "List Changed Notification").
//!
//! AAF holds one client session per upstream, shared by every agent that uses it. An
//! agent's subscription to a resource is kept here, per upstream and URI; AAF subscribes on
//! the upstream once, when the first agent subscribes to a URI, and unsubscribes when the
//! last one leaves. A `notifications/resources/updated` of the upstream goes to every agent
//! subscribed to that URI. A `notifications/{tools,prompts,resources}/list_changed` goes to
//! every agent of the organisations that may use the upstream (all for a configured server,
//! the owner for a server registered over the API) that listed or watches that list.
//!
//! An agent is reached in one of two ways:
//!
//! - **its session** (`resources/subscribe`, and list changes after it listed): the
//!   notification is sent on the session's stream (MCP revisions up to 2025-11-25);
//! - **a `subscriptions/listen` request** (MCP 2026-07-28): the notification is sent on that
//!   request's stream, with its subscription id, and only if the request's accepted filter
//!   names it.
//!
//! Notifications carry no content (a URI, or nothing), so no answer of an upstream reaches
//! an agent outside the pipeline. A subscriber that cannot be reached any more is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::SubscriptionSink;
use rmcp::{Peer, RoleServer};

/// A list an upstream may say changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    /// `notifications/tools/list_changed`.
    Tools,
    /// `notifications/prompts/list_changed`.
    Prompts,
    /// `notifications/resources/list_changed`.
    Resources,
}

/// Where an agent's notifications go.
#[derive(Clone)]
pub enum Subscriber {
    /// The agent's MCP session (revisions up to 2025-11-25).
    Session(Peer<RoleServer>),
    /// A `subscriptions/listen` request (revision 2026-07-28); it sends only what its
    /// accepted filter names.
    Listen(SubscriptionSink),
}

impl Subscriber {
    /// Tells the agent that the resource `uri` changed; `false` when it cannot be reached
    /// any more.
    async fn resource_updated(&self, uri: &str) -> bool {
        match self {
            Subscriber::Session(peer) => {
                if peer.is_transport_closed() {
                    return false;
                }
                let params = ResourceUpdatedNotificationParam::new(uri.to_string());
                if let Err(e) = peer.notify_resource_updated(params).await {
                    tracing::debug!(error = %e, "mcp: a resource update was not relayed");
                    return !peer.is_transport_closed();
                }
                true
            }
            Subscriber::Listen(sink) => match sink.notify_resource_updated(uri.to_string()).await {
                Ok(()) => true,
                Err(rmcp::service::SubscriptionSendError::SubscriptionClosed) => false,
                Err(e) => {
                    tracing::debug!(error = %e, "mcp: a resource update was not relayed");
                    true
                }
            },
        }
    }

    /// Tells the agent that a list changed; `false` when it cannot be reached any more.
    async fn list_changed(&self, kind: ListKind) -> bool {
        match self {
            Subscriber::Session(peer) => {
                if peer.is_transport_closed() {
                    return false;
                }
                let sent = match kind {
                    ListKind::Tools => peer.notify_tool_list_changed().await,
                    ListKind::Prompts => peer.notify_prompt_list_changed().await,
                    ListKind::Resources => peer.notify_resource_list_changed().await,
                };
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "mcp: a list change was not relayed");
                    return !peer.is_transport_closed();
                }
                true
            }
            Subscriber::Listen(sink) => {
                let sent = match kind {
                    ListKind::Tools => sink.notify_tool_list_changed().await,
                    ListKind::Prompts => sink.notify_prompt_list_changed().await,
                    ListKind::Resources => sink.notify_resource_list_changed().await,
                };
                match sent {
                    Ok(()) => true,
                    Err(rmcp::service::SubscriptionSendError::SubscriptionClosed) => false,
                    // Not in the listen request's filter: nothing to send.
                    Err(_) => true,
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One watcher of list changes.
struct ListWatcher {
    org_id: String,
    kinds: Vec<ListKind>,
    subscriber: Subscriber,
}

/// The watchers of list changes, for all upstreams (one per node).
#[derive(Default)]
pub struct ListWatches {
    next: AtomicU64,
    watchers: Mutex<HashMap<u64, ListWatcher>>,
}

impl ListWatches {
    /// A new watcher id (of a session or a listen request), unique on this node.
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `id` (an agent of `org_id`) the changes of `kinds` from now on; a watcher that
    /// watches already gets the kinds added.
    pub fn watch(&self, id: u64, org_id: &str, kinds: &[ListKind], subscriber: Subscriber) {
        let mut watchers = lock(&self.watchers);
        let watcher = watchers.entry(id).or_insert_with(|| ListWatcher {
            org_id: org_id.to_string(),
            kinds: Vec::new(),
            subscriber,
        });
        for kind in kinds {
            if !watcher.kinds.contains(kind) {
                watcher.kinds.push(*kind);
            }
        }
    }

    /// Whether `id` watches `kind` already.
    pub fn watches(&self, id: u64, kind: ListKind) -> bool {
        lock(&self.watchers)
            .get(&id)
            .is_some_and(|w| w.kinds.contains(&kind))
    }

    /// Stops sending `id` anything.
    pub fn unwatch(&self, id: u64) {
        lock(&self.watchers).remove(&id);
    }

    /// Relays a list change of an upstream offered to `owner` (`None`: a configured server,
    /// offered to every organisation).
    pub async fn changed(&self, owner: Option<&str>, kind: ListKind) {
        let targets: Vec<(u64, Subscriber)> = lock(&self.watchers)
            .iter()
            .filter(|(_, w)| w.kinds.contains(&kind) && owner.is_none_or(|o| o == w.org_id))
            .map(|(id, w)| (*id, w.subscriber.clone()))
            .collect();
        for (id, subscriber) in targets {
            if !subscriber.list_changed(kind).await {
                self.unwatch(id);
            }
        }
    }

    /// How many watchers there are (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.watchers).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The agents subscribed to one upstream's resources, by URI.
#[derive(Default)]
pub struct ResourceWatches {
    by_uri: Mutex<HashMap<String, HashMap<u64, Subscriber>>>,
}

impl ResourceWatches {
    /// Adds `id` as a subscriber of `uri`; `true` when it is the URI's first (AAF must
    /// subscribe on the upstream).
    pub fn add(&self, uri: &str, id: u64, subscriber: Subscriber) -> bool {
        let mut by_uri = lock(&self.by_uri);
        let subscribers = by_uri.entry(uri.to_string()).or_default();
        let first = subscribers.is_empty();
        subscribers.insert(id, subscriber);
        first
    }

    /// Removes `id` from the subscribers of `uri`; `true` when it was the last one (AAF
    /// should unsubscribe on the upstream).
    pub fn remove(&self, uri: &str, id: u64) -> bool {
        let mut by_uri = lock(&self.by_uri);
        let Some(subscribers) = by_uri.get_mut(uri) else {
            return false;
        };
        if subscribers.remove(&id).is_none() {
            return false;
        }
        if subscribers.is_empty() {
            by_uri.remove(uri);
            return true;
        }
        false
    }

    /// Every URI someone is subscribed to (to subscribe again on a restarted upstream).
    pub fn uris(&self) -> Vec<String> {
        lock(&self.by_uri).keys().cloned().collect()
    }

    /// Relays `notifications/resources/updated` for `uri` to its subscribers; `true` when
    /// no subscriber is left (AAF should unsubscribe on the upstream).
    pub async fn updated(&self, uri: &str) -> bool {
        let targets: Vec<(u64, Subscriber)> = lock(&self.by_uri)
            .get(uri)
            .map(|s| s.iter().map(|(id, s)| (*id, s.clone())).collect())
            .unwrap_or_default();
        let mut emptied = false;
        for (id, subscriber) in targets {
            if !subscriber.resource_updated(uri).await {
                emptied |= self.remove(uri, id);
            }
        }
        emptied
    }
}
