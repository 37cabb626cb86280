//! The group-commit audit writer.
//!
//! Every request that must be audited hands its [`WriteUnit`] to one writer task and waits.
//! The task takes the first waiting unit, drains whatever else is already queued (up to
//! `max_batch` units), commits them all in one transaction (as [`Store::commit`] does, but
//! synchronously on the task's own thread: no thread hop per statement) and then
//! answers every waiter. One transaction (and one fsync) thus serves many requests, and a
//! waiter is answered only once its events are durable: nothing is acknowledged before its
//! audit event is committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aaf_core::audit::ChainedEvent;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::prepared::PreparedUnit;
use crate::{Store, StoreError, WriteUnit};

/// What a waiter receives.
type Reply = oneshot::Sender<Result<Vec<ChainedEvent>, StoreError>>;

/// Called by the writer after each transaction it committed, with the committed units'
/// events (each unit's events in order, units in commit order): e.g. the server's alert
/// rules, which read every event as it is recorded. It runs on the writer's own thread
/// (SQLite) or task (PostgreSQL) before the waiters are answered, so it must not block or
/// do I/O: take what it needs and hand it on (a bounded channel's `try_send`). It is not
/// called for units that failed, nor for [`Store::commit`] calls outside the writer.
pub type CommitObserver = Arc<dyn Fn(&[Vec<ChainedEvent>]) + Send + Sync>;

/// One queued unit and its waiter.
struct Request {
    unit: PreparedUnit,
    reply: Reply,
}

/// Handle to the group-commit writer task. Cheap to clone; all clones feed the same task.
#[derive(Clone)]
pub struct AuditWriter {
    inner: Arc<Inner>,
}

struct Inner {
    /// The store units are prepared (sealed) for, on the submitter's task.
    store: Store,
    queue: mpsc::Sender<Request>,
    /// Set by [`AuditWriter::shutdown`]: later submits are refused at once.
    closed: AtomicBool,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("closed", &self.inner.queue.is_closed())
            .finish()
    }
}

impl AuditWriter {
    /// Starts the writer task on the current tokio runtime (must be called from within one).
    ///
    /// `max_batch` is the most units committed in one transaction (at least 1; a few hundred
    /// suits SQLite). The queue holds up to `4 * max_batch` units; beyond that,
    /// [`AuditWriter::submit`] waits, which pushes back on the callers.
    pub fn spawn(store: Store, max_batch: usize) -> AuditWriter {
        AuditWriter::spawn_observed(store, max_batch, None)
    }

    /// [`AuditWriter::spawn`] with an observer of every committed unit's events (see
    /// [`CommitObserver`]).
    pub fn spawn_observed(
        store: Store,
        max_batch: usize,
        observer: Option<CommitObserver>,
    ) -> AuditWriter {
        let max_batch = max_batch.max(1);
        let handle = store.clone();
        let (queue, requests) = mpsc::channel(max_batch.saturating_mul(4));
        let (stop, stopped) = watch::channel(false);
        let metrics = BatchMetrics::register();
        let task = if store.blocking_writes() {
            // SQLite: the writer runs on a thread and runtime of its own, where its blocking
            // commits hold up nothing else; on the shared runtime its task would also wait
            // behind HTTP tasks after every database round trip, which stretches each commit
            // and so caps throughput (batches are bounded by the requests in flight).
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name("aaf-audit-writer".to_string())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime
                            .block_on(run(store, requests, stopped, max_batch, metrics, observer)),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start the audit writer runtime")
                        }
                    }
                    let _ = done_tx.send(());
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the audit writer thread");
            }
            tokio::spawn(async move {
                let _ = done_rx.await;
            })
        } else {
            // PostgreSQL: commits are asynchronous, and the pool's connections must belong to
            // the runtime that outlives the writer, so the task runs on the caller's runtime.
            tokio::spawn(run(store, requests, stopped, max_batch, metrics, observer))
        };
        AuditWriter {
            inner: Arc::new(Inner {
                store: handle,
                queue,
                closed: AtomicBool::new(false),
                stop,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// Queues `unit` and resolves once the transaction holding it is committed, with the
    /// unit's events as chained (same order as `unit.events`).
    ///
    /// # Errors
    ///
    /// The commit's error when the transaction failed (nothing of the unit was written):
    /// every unit of a failed batch gets the error, except that when the failure may be
    /// specific to one unit or one organisation's chain ([`StoreError::Conflict`],
    /// [`StoreError::NotFound`], [`StoreError::Invalid`], [`StoreError::Corrupt`]) the batch
    /// is retried unit by unit so that only the offending units fail. [`StoreError::Unavailable`] when the writer is shut down or its task ended.
    pub async fn submit(&self, unit: WriteUnit) -> Result<Vec<ChainedEvent>, StoreError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        // Serialise, canonicalise and seal here, on the caller's thread, so the one writer
        // thread spends its time only on linking, hashing and inserting.
        let unit = self.inner.store.prepare(unit).await?;
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .send(Request { unit, reply })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| {
            StoreError::Unavailable("the audit writer stopped before committing".to_string())
        })?
    }

    /// Stops accepting units, commits everything already queued, answers its waiters and
    /// waits for the task to end. Other clones' later submits fail with
    /// [`StoreError::Unavailable`].
    pub async fn shutdown(self) {
        self.inner.closed.store(true, Ordering::Release);
        // The receiver may already be gone (task ended): nothing to signal then.
        let _ = self.inner.stop.send(true);
        let task = match self.inner.task.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "audit writer task failed");
            }
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the audit writer is shut down".to_string())
}

/// The writer task: batch, commit, answer; until stopped and drained or all handles dropped.
async fn run(
    store: Store,
    mut requests: mpsc::Receiver<Request>,
    mut stopped: watch::Receiver<bool>,
    max_batch: usize,
    metrics: BatchMetrics,
    observer: Option<CommitObserver>,
) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            requests.recv().await
        } else {
            tokio::select! {
                biased;
                _ = stopped.changed() => {
                    // Stop accepting; what is queued is still received and committed.
                    stopping = true;
                    requests.close();
                    continue;
                }
                request = requests.recv() => request,
            }
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = Vec::with_capacity(max_batch.min(1024));
        batch.push(first);
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit_batch(&store, batch, &metrics, observer.as_ref()).await;
    }
}

/// The writer's metrics (described by the server, `aaf_server::metrics`), registered once
/// when the writer starts, with the recorder installed then (no-ops without one).
struct BatchMetrics {
    /// `aaf_audit_batch_size`: units per group commit.
    batch_size: metrics::Histogram,
    /// `aaf_audit_commit_duration_seconds`: time of one group commit, retries included.
    commit_duration: metrics::Histogram,
}

impl BatchMetrics {
    fn register() -> BatchMetrics {
        BatchMetrics {
            batch_size: metrics::histogram!("aaf_audit_batch_size"),
            commit_duration: metrics::histogram!("aaf_audit_commit_duration_seconds"),
        }
    }
}

/// Commits one batch and answers its waiters. On SQLite this blocks the writer's thread
/// (which runs nothing else) for the duration of the transaction. Records the batch's size
/// and the commit's time (with its unit-by-unit retries).
async fn commit_batch(
    store: &Store,
    batch: Vec<Request>,
    metrics: &BatchMetrics,
    observer: Option<&CommitObserver>,
) {
    let started = std::time::Instant::now();
    let (units, replies): (Vec<PreparedUnit>, Vec<Reply>) =
        batch.into_iter().map(|r| (r.unit, r.reply)).unzip();
    // Batches are at most `max_batch` units: exact as a double.
    let size = units.len() as f64;
    commit_units(store, units, replies, observer).await;
    metrics.batch_size.record(size);
    metrics
        .commit_duration
        .record(started.elapsed().as_secs_f64());
}

async fn commit_units(
    store: &Store,
    mut units: Vec<PreparedUnit>,
    replies: Vec<Reply>,
    observer: Option<&CommitObserver>,
) {
    match store.commit_prepared(&units).await {
        Ok(mut chained) => {
            crate::prepared::hand_back_data(&mut units, &mut chained);
            if let Some(observe) = observer {
                observe(&chained);
            }
            for (reply, events) in replies.into_iter().zip(chained) {
                // A waiter that went away still had its unit committed.
                let _ = reply.send(Ok(events));
            }
        }
        Err(error) if units.len() > 1 && is_specific_to_a_unit(&error) => {
            tracing::warn!(%error, units = units.len(), "audit batch failed; retrying unit by unit");
            for (unit, reply) in units.iter_mut().zip(replies) {
                let result =
                    store
                        .commit_prepared(std::slice::from_ref(unit))
                        .await
                        .map(|mut chained| {
                            crate::prepared::hand_back_data(
                                std::slice::from_mut(unit),
                                &mut chained,
                            );
                            chained.pop().unwrap_or_default()
                        });
                if let (Some(observe), Ok(events)) = (observer, &result) {
                    observe(std::slice::from_ref(events));
                }
                let _ = reply.send(result);
            }
        }
        Err(error) if is_refusal(&error) => {
            // A unit the store refused for its own data (a missing row, a conflict): the
            // caller answers 404/409/400; nothing is wrong with the store.
            tracing::debug!(%error, "write unit refused");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            tracing::error!(%error, units = units.len(), "audit batch commit failed");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Whether the store refused a unit because of its own data (a missing row, a conflict,
/// an invalid value), which the caller reports to its client, rather than failing.
fn is_refusal(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Conflict(_)
            | StoreError::Stale(_)
            | StoreError::DuplicateVote(_)
            | StoreError::NotFound(_)
            | StoreError::Invalid(_)
    )
}

/// Whether a failed batch may be retried unit by unit to spare the other units: yes when
/// the failure can come from one unit's data or one organisation's chain (so a tampered
/// chain head does not stop other organisations), no when the database itself failed.
fn is_specific_to_a_unit(error: &StoreError) -> bool {
    match error {
        StoreError::Conflict(_)
        | StoreError::Stale(_)
        | StoreError::DuplicateVote(_)
        | StoreError::NotFound(_)
        | StoreError::Invalid(_)
        | StoreError::Corrupt(_) => true,
        StoreError::Unavailable(_) | StoreError::KeysNotLoaded(_) => false,
    }
}
