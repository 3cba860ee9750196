//! The receiving side: an axum router that answers handshakes while a
//! registration is in flight, verifies every delivery, and hands verified
//! events to your code through a bounded queue.
//!
//! Requests are handled in this order, each step refusing before the next
//! one runs; nothing is read from the body until the request could be
//! genuine:
//!
//! | request | answer |
//! |---|---|
//! | not a POST | 405 |
//! | declared body over the limit (default 1 MiB) | 413 |
//! | `X-Hook-Secret`, a registration for its target in flight | 200, header echoed; the secret is *pending* (and, in durable stores, written down before the echo) |
//! | `X-Hook-Secret`, none in flight | 403, nothing stored |
//! | no `X-Hook-Signature`, or not 64 hex digits | 401, body not read |
//! | no secret stored or pending for the target | 401, body not read |
//! | body slower than the read timeout (default 10 s) | 408 |
//! | body over the limit | 413 |
//! | signature matches no secret of the target | 401 |
//! | signature matches a *pending* secret: a heartbeat | 200 |
//! | signature matches a *pending* secret: events | 503 + `Retry-After`: Asana delivers again once the 201 confirmed it |
//! | verified, not JSON | 400, logged with the webhook |
//! | verified JSON, queue has room | 200, [`Notification`] queued |
//! | queue full (your code is behind) | 503 + `Retry-After`: Asana retries later |
//!
//! A verified body that is JSON is never refused for its shape: events that
//! do not decode into [`Event`] are handed over as [`UndecodedEvent`]s.
//! Several webhooks may deliver to one target; a delivery is checked
//! against each of their secrets (each comparison in constant time) and
//! the notification names the webhook whose secret matched.
//!
//! Refusals are logged at `debug`, with a `warn` at most every 10 seconds
//! per kind of refusal, so a flood of junk cannot flood the log. Every
//! answer is counted ([`crate::metrics`]): 200s by outcome, 4xx and 503s
//! by reason, handshakes by outcome.
//!
//! # Health
//!
//! [`Receiver::health_router`] answers `/livez` and `/readyz` for probes,
//! on a listener of its own (any path of the receiver may be a target);
//! [`Receiver::check_ready`] is the readiness check behind it: the serve
//! loop runs, the secret store is reachable and writable, the inbox takes
//! commits.
//!
//! # Serving
//!
//! [`Receiver::serve`] runs the router with limits that slow, idle or
//! useless clients cannot exhaust: a header read timeout, an idle timeout
//! for kept-alive connections, a write timeout for clients that do not take
//! their answers, a maximum connection age, and connection limits, overall
//! and per peer address, under which a new client takes the place of the
//! connection that has waited longest for a request (see
//! [`ReceiverBuilder::header_read_timeout`] and the setters after it).
//! Every refusal (4xx) is answered `Connection: close`, so a client that
//! sends nothing genuine keeps no connection. The body read timeout is part
//! of the router itself. Mounting [`Receiver::router`] in your own server,
//! give that server the same protection: with hyper, a `timer` and
//! `header_read_timeout` on the HTTP/1 connection builder and a limit on
//! concurrent connections (or a reverse proxy that does it).
//!
//! # Why a channel
//!
//! Verified deliveries go into a bounded [`tokio::sync::mpsc`] queue that you
//! drain with [`Notifications::recv`]. Asana wants an answer within 10
//! seconds and retries otherwise, so the receiver answers as soon as the
//! delivery is queued and your code runs afterwards, at its own pace, in a
//! task you own (no `'static` closure bounds, no hidden spawning). When the
//! queue is full the receiver answers 503 instead of dropping anything, and
//! Asana delivers again later.

mod handler;
mod health;
mod limited_log;
mod serve;

pub use health::{DEFAULT_PROBE_TIMEOUT, NotReady};

use std::sync::Arc;

use tokio::sync::mpsc;

use std::time::Duration;

use crate::event::{Event, UndecodedEvent};
use crate::inbox::{Appended, Inbox, InboxError, VerifiedDelivery};
use crate::secrets::{SecretStore, TargetKey};

/// The default largest accepted body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The default number of deliveries that may wait for your code.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// The default time allowed to read a request's body: 10 s.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The default time allowed to read a request's headers: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The default time a kept-alive connection may sit idle: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default largest number of open connections: 1024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The default largest number of open connections from one peer address:
/// 128.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 128;

/// The default time a client has to take a response before its connection
/// is dropped: 10 s.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default age after which a connection is closed once its request in
/// flight is answered: 5 minutes.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// What the receiver hands to your code.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notification {
    /// A verified delivery with at least one event.
    Events {
        /// The target it was delivered to.
        target: TargetKey,
        /// The webhook whose secret verified the delivery, when its gid is
        /// known.
        webhook_gid: Option<String>,
        /// The events that decode, as Asana sent them.
        events: Vec<Event>,
        /// The events that do not decode (drifted payloads), kept raw.
        undecoded: Vec<UndecodedEvent>,
    },
    /// A verified heartbeat (`{"events": []}`).
    Heartbeat {
        /// The target it was delivered to.
        target: TargetKey,
        /// The webhook whose secret verified it; `None` for the heartbeat
        /// that comes before the 201 answer confirmed the secret.
        webhook_gid: Option<String>,
    },
}

/// The receiving end of the queue: verified deliveries, in arrival order.
#[derive(Debug)]
pub struct Notifications {
    rx: mpsc::Receiver<Notification>,
}

impl Notifications {
    /// The next notification; `None` once every [`Receiver`] is dropped.
    pub async fn recv(&mut self) -> Option<Notification> {
        self.rx.recv().await
    }

    /// The next notification if one is waiting.
    pub fn try_recv(&mut self) -> Option<Notification> {
        self.rx.try_recv().ok()
    }
}

/// Settings of a [`Receiver`]; start with [`Receiver::builder`].
#[derive(Debug, Clone)]
pub struct ReceiverBuilder<S> {
    store: S,
    body_limit: usize,
    queue_capacity: usize,
    accept_handshakes_outside_window: bool,
    limits: Limits,
}

/// Time and connection limits (see the builder's setters).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) body_read_timeout: Duration,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) max_connection_age: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
}

impl<S: SecretStore> ReceiverBuilder<S> {
    /// How long reading a body may take before the request gets 408
    /// (default 10 s). Applies to [`Receiver::router`] wherever it is
    /// mounted. Asana sends small bodies at once; this stops a client that
    /// trickles one from holding memory and a task.
    pub fn body_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.body_read_timeout = timeout;
        self
    }

    /// How long reading a request's headers may take, counted from the
    /// connection's start or its first byte (default 10 s). Used by
    /// [`Receiver::serve`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// How long a connection may go without sending a byte while the
    /// server waits for one (an idle keep-alive connection, or a stalled
    /// client) before it is closed (default 60 s). Used by
    /// [`Receiver::serve`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.limits.idle_timeout = timeout;
        self
    }

    /// How long a client may leave a response untaken before its
    /// connection is dropped (default 10 s): the clock runs while output
    /// waits for the client to drain it, so one that pipelines requests and
    /// never reads the answers cannot hold its connection. Used by
    /// [`Receiver::serve`].
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.limits.write_timeout = timeout;
        self
    }

    /// The age after which a connection is closed, as soon as the request
    /// in flight (if any) is answered (default 5 minutes): no client keeps
    /// a connection for good. Used by [`Receiver::serve`].
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.limits.max_connection_age = age;
        self
    }

    /// The most connections served at once (default 1024, at least 1).
    /// When all are taken, a new client takes the place of the connection
    /// that has waited longest for a request; it waits to be accepted only
    /// while every connection has a request in flight (or opened in the
    /// last 100 ms). Used by [`Receiver::serve`].
    pub fn max_connections(mut self, max: usize) -> Self {
        self.limits.max_connections = max.max(1);
        self
    }

    /// The most connections served at once for one peer address, IPv6
    /// peers counted by /64 network (default 128, at least 1). A client
    /// over it takes the place of its address's connection that has waited
    /// longest for a request, or is closed at once if they are all busy.
    /// Asana delivers from a few addresses with far fewer requests in
    /// flight; behind a reverse proxy, where every connection comes from
    /// the proxy, set it to [`max_connections`](Self::max_connections).
    /// Used by [`Receiver::serve`].
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.limits.max_connections_per_ip = max.max(1);
        self
    }

    /// The largest body accepted; larger ones get 413. Default 1 MiB.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How many deliveries may wait for your code before the receiver
    /// answers 503. Default 1024, at least 1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// **Unsafe for public endpoints.** Accepts a handshake for a target
    /// that has no registration in flight, storing its secret (and
    /// replacing any stored one). Only for a webhook created by another tool
    /// while this receiver was running; anyone who can reach the endpoint
    /// could otherwise replace the secret and forge deliveries. Off by default.
    pub fn accept_handshakes_outside_window(mut self, accept: bool) -> Self {
        self.accept_handshakes_outside_window = accept;
        self
    }

    /// Builds a receiver that hands deliveries over through an in-memory
    /// queue. **Not durable**: deliveries answered 200 but still in the
    /// queue when the process stops are lost, and Asana never sends them
    /// again. Prefer [`build_with_inbox`](Self::build_with_inbox).
    pub fn build(self) -> (Receiver<S>, Notifications) {
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        (self.finish(Sink::Queue(tx)), Notifications { rx })
    }

    /// Builds a receiver that commits every verified delivery to `inbox`
    /// before it answers 200; your code takes the events from the inbox and
    /// acknowledges each one (see [`crate::inbox`]). A full or failing inbox
    /// answers 503, so Asana delivers again later: nothing is acknowledged
    /// that was not written.
    pub fn build_with_inbox<I: Inbox>(self, inbox: I) -> Receiver<S> {
        self.finish(Sink::Inbox(Arc::new(inbox)))
    }

    fn finish(self, sink: Sink) -> Receiver<S> {
        Receiver {
            inner: Arc::new(Inner {
                store: self.store,
                body_limit: self.body_limit,
                accept_handshakes_outside_window: self.accept_handshakes_outside_window,
                limits: self.limits,
                sink,
                serving: health::Serving::default(),
            }),
        }
    }
}

/// Receives Asana webhook requests. Cheap to clone.
///
/// ```no_run
/// use asana_webhooks::receiver::{Notification, Receiver};
/// use asana_webhooks::secrets::MemorySecretStore;
///
/// # async fn run() -> std::io::Result<()> {
/// let (receiver, mut notifications) = Receiver::new(MemorySecretStore::new());
/// // Mount it under any path of your own axum app…
/// let app = axum::Router::new().nest("/hooks", receiver.router());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// tokio::spawn(async move { axum::serve(listener, app).await });
/// // …and handle verified events after they were acknowledged.
/// while let Some(notification) = notifications.recv().await {
///     if let Notification::Events { events, .. } = notification {
///         for event in events {
///             println!("{} {} {}", event.action, event.resource.resource_type, event.resource.gid);
///         }
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Receiver<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Receiver<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

#[derive(Debug)]
struct Inner<S> {
    store: S,
    body_limit: usize,
    accept_handshakes_outside_window: bool,
    limits: Limits,
    sink: Sink,
    serving: health::Serving,
}

/// Where verified deliveries go.
pub(crate) enum Sink {
    Queue(mpsc::Sender<Notification>),
    Inbox(Arc<dyn ErasedInbox>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Queue(_) => f.write_str("Sink::Queue"),
            Sink::Inbox(_) => f.write_str("Sink::Inbox"),
        }
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// [`Inbox`] without its generic methods, so that the receiver need not be
/// generic over it.
pub(crate) trait ErasedInbox: Send + Sync {
    fn append(&self, delivery: VerifiedDelivery) -> BoxFuture<'_, Result<Appended, InboxError>>;
    fn heartbeat<'a>(
        &'a self,
        target: &'a TargetKey,
        webhook_gid: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), InboxError>>;
    fn check_ready(&self) -> BoxFuture<'_, Result<(), InboxError>>;
}

impl<I: Inbox> ErasedInbox for I {
    fn append(&self, delivery: VerifiedDelivery) -> BoxFuture<'_, Result<Appended, InboxError>> {
        Box::pin(Inbox::append(self, delivery))
    }

    fn heartbeat<'a>(
        &'a self,
        target: &'a TargetKey,
        webhook_gid: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), InboxError>> {
        Box::pin(Inbox::heartbeat(self, target, webhook_gid))
    }

    fn check_ready(&self) -> BoxFuture<'_, Result<(), InboxError>> {
        Box::pin(Inbox::check_ready(self))
    }
}

impl<S: SecretStore> Receiver<S> {
    /// A receiver with default settings.
    pub fn new(store: S) -> (Self, Notifications) {
        Self::builder(store).build()
    }

    /// A builder for every setting.
    pub fn builder(store: S) -> ReceiverBuilder<S> {
        ReceiverBuilder {
            store,
            body_limit: DEFAULT_BODY_LIMIT,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            accept_handshakes_outside_window: false,
            limits: Limits {
                body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
                header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                write_timeout: DEFAULT_WRITE_TIMEOUT,
                max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            },
        }
    }

    /// The store that holds the secrets and windows.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// An axum router that handles webhook requests on every path below
    /// where it is mounted; several webhooks can share it, told apart by the
    /// path and query of their targets.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(handler::handle::<S>)
            .with_state(self.clone())
    }

    /// Serves the receiver alone on `listener` until `shutdown` completes,
    /// with the time and connection limits of the builder. On
    /// shutdown it stops accepting, lets the requests in flight finish
    /// (each one answered), and returns.
    ///
    /// ```no_run
    /// # use asana_webhooks::{receiver::Receiver, secrets::MemorySecretStore};
    /// # async fn run() -> std::io::Result<()> {
    /// let (receiver, _notifications) = Receiver::new(MemorySecretStore::new());
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
    /// receiver.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
    /// # }
    /// ```
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.inner.limits;
        // Liveness says whether this loop still runs (a panic included).
        let _serving = self.inner.serving.start();
        serve::serve(listener, self.router(), limits, shutdown).await
    }
}
