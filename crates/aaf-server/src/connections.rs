//! The serve loop: accepting connections within a limit, bounding how long each may hold its
//! descriptor without making progress, and draining them on shutdown.
//!
//! `axum::serve` has no read time-outs, so a client that opens connections and sends nothing,
//! or sends a request head or body a byte at a time, keeps each descriptor forever; enough of
//! them and nothing else is served. This loop serves the same router with hyper-util's
//! HTTP/1.1 + HTTP/2 connection builder and adds (settings under `[server]`,
//! docs/configuration.md):
//!
//! - **a connection limit** (`max_connections`): a permit is taken before each `accept`, so
//!   past the limit new connections wait in the kernel's listen backlog, costing this
//!   process no descriptor, until a connection closes;
//! - **a header read time-out** (`header_read_timeout_ms`): a new connection's first request
//!   head must arrive within it (this loop's watch, which also covers the first bytes hyper
//!   reads to tell HTTP/1.1 from HTTP/2), and so must every later HTTP/1.1 request head,
//!   counted from the end of the previous exchange (hyper's own `header_read_timeout`);
//! - **a body read time-out** (`body_read_timeout_ms`): a request body must arrive in full
//!   within it, counted from its head (a total, not a per-read time-out, so that trickling a
//!   byte at a time does not extend it); a late body fails the request with 400;
//! - **an idle time-out** (`idle_timeout_ms`): a connection with no request in progress for
//!   that long is closed (HTTP/2 connections, and HTTP/1.1 ones if it is the shorter);
//! - **closing that finishes**: a connection being closed (idle, or at shutdown) gets a
//!   graceful shutdown (HTTP/1.1 closes after the response in progress, HTTP/2 sends
//!   GOAWAY); once it has no request in progress it gets `header_read_timeout_ms` more to
//!   finish writing, then it is dropped.
//!
//! At shutdown the loop stops accepting, closes every connection as above (requests in
//! progress finish; each is bounded by its own limits), and returns once all are gone.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::Router;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::config::ServerConfig;

/// The connection settings in force (validated; see [`ServerConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Time allowed for a request head (see the module documentation).
    pub header_read_timeout: Duration,
    /// Time allowed for a whole request body, from its head.
    pub body_read_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
    /// Whether accepted connections get `TCP_NODELAY` (`server.tcp_nodelay`).
    pub tcp_nodelay: bool,
}

impl ConnectionLimits {
    /// The limits of `config`, with `max_connections = 0` resolved by
    /// [`default_max_connections`].
    pub fn from_config(config: &ServerConfig) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: match config.max_connections {
                0 => default_max_connections(),
                n => n,
            },
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(config.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            tcp_nodelay: config.tcp_nodelay,
        }
    }
}

/// Most connections by default: half the process's soft limit of open files
/// (`RLIMIT_NOFILE`, `ulimit -n`), since a served request may open a descriptor of its own
/// (the HTTP connector's or a webhook's connection, the database), and at most
/// [`DEFAULT_MAX_CONNECTIONS_CAP`]; [`DEFAULT_MAX_CONNECTIONS_CAP`] where the limit is unknown
/// or unlimited.
pub fn default_max_connections() -> usize {
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if let Some(soft) = limit.current {
            let half = usize::try_from(soft / 2).unwrap_or(usize::MAX);
            return half.clamp(1, DEFAULT_MAX_CONNECTIONS_CAP);
        }
    }
    DEFAULT_MAX_CONNECTIONS_CAP
}

/// The largest default of `server.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS_CAP: usize = 4096;

/// Serves `app` on `listener` until `shutdown` resolves, then drains the connections (see the
/// module documentation). Each request carries the peer's address as
/// `ConnectInfo<SocketAddr>`.
///
/// Accepting never fails the loop: an error of one connection is skipped, and any other
/// (such as `EMFILE`, out of descriptors) is logged and retried after a second.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if limits.tcp_nodelay {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, %remote, "cannot set TCP_NODELAY on a connection");
            }
        }
        if slots.available_permits() == 0
            && last_full_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60))
        {
            last_full_warning = Some(Instant::now());
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached: new connections wait in the listen backlog until one closes (server.max_connections)"
            );
        }
        tokio::spawn(serve_connection(
            stream,
            remote,
            app.clone(),
            Arc::clone(&builder),
            limits,
            stopped.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    let open = limits.max_connections - slots.available_permits();
    tracing::info!(
        connections = open,
        "stopped accepting; finishing the requests in progress"
    );
    // Every connection holds a permit until it is gone.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Handles an `accept` error as hyper's server did: errors of one connection are skipped;
/// others (out of descriptors) are logged and retried after a second.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// What a connection is doing, as its requests report it.
#[derive(Debug, Clone, Copy)]
struct Activity {
    /// Requests whose response has not been sent in full.
    in_flight: usize,
    /// Requests received so far.
    requests: u64,
    /// When the connection was accepted or its last request ended.
    since: Instant,
}

/// Counts a request in progress from its head until its response body is dropped.
struct InFlight(Arc<watch::Sender<Activity>>);

impl InFlight {
    fn enter(activity: &Arc<watch::Sender<Activity>>) -> InFlight {
        activity.send_modify(|a| {
            a.in_flight += 1;
            a.requests += 1;
        });
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            a.since = Instant::now();
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let (activity, watch_activity) = watch::channel(Activity {
        in_flight: 0,
        requests: 0,
        since: Instant::now(),
    });
    let activity = Arc::new(activity);
    let body_timeout = limits.body_read_timeout;
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let in_flight = InFlight::enter(&activity);
        request.extensions_mut().insert(ConnectInfo(remote));
        let request = request.map(|body| {
            if http_body::Body::is_end_stream(&body) {
                Body::new(body)
            } else {
                Body::new(DeadlineBody::new(Body::new(body), body_timeout))
            }
        });
        let response = app.clone().oneshot(request);
        async move {
            let response = response.await?;
            // The request stays in progress until its response body has been sent.
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &in_flight;
                    frame
                }))
            }))
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let reason = tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(peer = %remote, error = %e, "connection ended with an error");
            }
            return;
        }
        reason = idle(watch_activity.clone(), limits) => reason,
        _ = stopped.wait_for(|stop| *stop) => "shutdown",
    };
    tracing::debug!(peer = %remote, reason, "closing connection");
    connection.as_mut().graceful_shutdown();
    let mut watch_activity = watch_activity;
    let finish = async {
        let _ = watch_activity.wait_for(|a| a.in_flight == 0).await;
        tokio::time::sleep(limits.header_read_timeout).await;
    };
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(peer = %remote, error = %e, "connection ended with an error");
            }
        }
        () = finish => {
            tracing::debug!(peer = %remote, "connection dropped: it did not finish closing");
        }
    }
}

/// Resolves when the connection has had no request in progress for too long: no first
/// request head within the header read time-out, or nothing after the last request for the
/// idle time-out. Returns which.
async fn idle(mut activity: watch::Receiver<Activity>, limits: ConnectionLimits) -> &'static str {
    loop {
        let now = *activity.borrow_and_update();
        if now.in_flight > 0 {
            if activity.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            continue;
        }
        let (limit, reason) = if now.requests == 0 {
            (
                limits.header_read_timeout,
                "no request head within the header read timeout",
            )
        } else {
            (limits.idle_timeout, "idle")
        };
        tokio::select! {
            () = tokio::time::sleep_until(now.since + limit) => return reason,
            changed = activity.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(now.since + limit).await;
                    return reason;
                }
            }
        }
    }
}

/// The error of a request body that did not arrive within `server.body_read_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in full within {} ms (server.body_read_timeout_ms)", .0.as_millis())]
pub struct BodyReadTimeout(pub Duration);

/// A request body that fails with [`BodyReadTimeout`] when it has not ended by its deadline.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    fn new(inner: Body, limit: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyReadTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
