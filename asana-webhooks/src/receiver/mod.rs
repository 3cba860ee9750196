//! The receiving side: an axum router that answers handshakes inside their
//! registration window, verifies every delivery, and hands verified events
//! to your code through a bounded queue.
//!
//! Requests are handled in this order, each step refusing before the next
//! one runs:
//!
//! | request | answer |
//! |---|---|
//! | not a POST | 405 |
//! | body over the limit (default 1 MiB) | 413 |
//! | `X-Hook-Secret` present, registration window open for its target | 200, header echoed |
//! | `X-Hook-Secret` present, no window | 403, warning logged, nothing stored |
//! | no secret known for the target, signature missing or wrong | 401 |
//! | signature valid, body not a delivery | 400 |
//! | heartbeat or events, queue has room | 200, [`Notification`] queued |
//! | queue full (your code is behind) | 503: Asana retries later |
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

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::Event;
use crate::secrets::{SecretStore, TargetKey};

/// The default largest accepted body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The default number of deliveries that may wait for your code.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// What the receiver hands to your code.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notification {
    /// A verified delivery with at least one event.
    Events {
        /// The target it was delivered to.
        target: TargetKey,
        /// The webhook's gid, when the store knows it.
        webhook_gid: Option<String>,
        /// The events, as Asana sent them.
        events: Vec<Event>,
    },
    /// A verified heartbeat (`{"events": []}`).
    Heartbeat {
        /// The target it was delivered to.
        target: TargetKey,
        /// The webhook's gid, when the store knows it.
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
}

impl<S: SecretStore> ReceiverBuilder<S> {
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

    /// Builds the receiver and the queue its deliveries go to.
    pub fn build(self) -> (Receiver<S>, Notifications) {
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let receiver = Receiver {
            inner: Arc::new(Inner {
                store: self.store,
                body_limit: self.body_limit,
                accept_handshakes_outside_window: self.accept_handshakes_outside_window,
                queue: tx,
            }),
        };
        (receiver, Notifications { rx })
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
    queue: mpsc::Sender<Notification>,
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

    /// Serves the receiver alone on `listener` until `shutdown` completes.
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
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}
