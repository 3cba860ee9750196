//! Where verified deliveries wait until your code has handled them.
//!
//! Asana delivers each event at most once and never replays a delivery
//! that was answered 2xx, so the receiver answers 200 only once the
//! delivery's events are **committed** to an [`Inbox`]: on disk with
//! [`FileInbox`] (the default of the command line), shared by every
//! instance with a database-backed inbox, or in memory with
//! [`MemoryInbox`] (lost with the process: for tests, or when losing
//! events is acceptable).
//!
//! Your code takes events with [`Inbox::next`] and acknowledges each with
//! [`InboxItem::ack`] once handled. An item taken and not acknowledged is
//! handed out again when its lease expires or after a restart: handling is
//! at least once, so make it idempotent.
//!
//! ```no_run
//! # async fn run(inbox: asana_webhooks::inbox::FileInbox) -> Result<(), asana_webhooks::inbox::InboxError> {
//! use asana_webhooks::inbox::Inbox;
//! while let Some(item) = inbox.next().await {
//!     match item.event() {
//!         Ok(event) => println!("{} {}", event.action, event.resource.gid),
//!         Err(undecoded) => eprintln!("kept as sent: {}", undecoded.raw),
//!     }
//!     item.ack().await?;
//! }
//! # Ok(()) }
//! ```
//!
//! A retried delivery can repeat events that were already committed: each
//! event gets a key (its target, its webhook and a SHA-256 of its
//! canonical JSON) and a repeat within Asana's 24-hour retry horizon is
//! dropped and counted ([`InboxStats::duplicates_dropped`]). Heartbeats
//! are recorded per webhook ([`InboxStats::last_heartbeats`]), not queued.
//!
//! Concurrent deliveries share commits (group commit): while one commit is
//! being flushed to disk the next deliveries gather, and each is answered
//! only after the commit that holds it.

mod engine;
mod file;
mod memory;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

pub use file::FileInbox;
pub use memory::MemoryInbox;

use crate::event::{Event, UndecodedEvent};
use crate::secrets::TargetKey;

/// How long a repeated event is recognised: Asana retries for 24 hours.
pub const DEDUPE_HORIZON: Duration = Duration::from_secs(24 * 60 * 60);

/// How long an item handed out may go unacknowledged before it is handed
/// out again, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The default largest size of the events waiting in an inbox: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Why an inbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboxError {
    /// The inbox holds as much as it may; the receiver answers 503 so that
    /// Asana delivers again later.
    #[error(
        "the inbox is full ({waiting} {unit} waiting, limit {limit} {unit}); handle and acknowledge events to make room"
    )]
    Full {
        /// How much waits, in `unit`.
        waiting: u64,
        /// The configured limit, in `unit`.
        limit: u64,
        /// What `waiting` and `limit` count: bytes of events in
        /// [`FileInbox`] and [`MemoryInbox`], events in a database inbox.
        unit: LimitUnit,
    },
    /// The storage failed (disk full, read-only, database down); nothing
    /// of the operation was committed.
    #[error("inbox storage at {location}: {message}")]
    Storage {
        /// The file or database.
        location: String,
        /// What went wrong.
        message: String,
    },
    /// The inbox was closed.
    #[error("the inbox is closed")]
    Closed,
}

/// What an inbox's size limit counts ([`InboxError::Full`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitUnit {
    /// Bytes of stored events.
    Bytes,
    /// Stored events.
    Events,
}

impl std::fmt::Display for LimitUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bytes => "bytes",
            Self::Events => "events",
        })
    }
}

/// A verified delivery on its way into an inbox.
#[derive(Debug, Clone)]
pub struct VerifiedDelivery {
    /// The target it was delivered to.
    pub target: TargetKey,
    /// The webhook whose secret verified it.
    pub webhook_gid: Option<String>,
    /// Its events, each as the JSON Asana sent.
    pub events: Vec<Box<RawValue>>,
}

impl VerifiedDelivery {
    /// Splits a verified body into its events without decoding them: a
    /// body that is JSON but not `{"events": [...]}` becomes one item (kept
    /// whole). Fails only when the body is not JSON.
    pub fn from_body(
        target: TargetKey,
        webhook_gid: Option<String>,
        body: &[u8],
    ) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Envelope {
            events: Vec<Box<RawValue>>,
        }
        let events = match serde_json::from_slice::<Envelope>(body) {
            Ok(envelope) => envelope.events,
            Err(_) => vec![serde_json::from_slice::<Box<RawValue>>(body)?],
        };
        Ok(Self {
            target,
            webhook_gid,
            events,
        })
    }

    /// A heartbeat: no events.
    pub fn is_heartbeat(&self) -> bool {
        self.events.is_empty()
    }
}

/// What [`Inbox::append`] committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Events committed now.
    pub added: usize,
    /// Events dropped as repeats of events already committed.
    pub duplicates: usize,
}

/// One stored event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    pub(crate) id: u64,
    pub(crate) target: TargetKey,
    pub(crate) webhook_gid: Option<String>,
    pub(crate) received_at_ms: u64,
    pub(crate) event: Box<RawValue>,
}

impl StoredEvent {
    fn size(&self) -> u64 {
        (self.event.get().len() + self.target.as_str().len() + 64) as u64
    }
}

/// An event handed out by [`Inbox::next`]: acknowledge it once handled.
pub struct InboxItem {
    stored: Arc<StoredEvent>,
    attempt: u32,
    acker: Arc<dyn Acknowledge>,
}

impl std::fmt::Debug for InboxItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxItem")
            .field("id", &self.stored.id)
            .field("target", &self.stored.target)
            .field("webhook_gid", &self.stored.webhook_gid)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl InboxItem {
    #[cfg(feature = "postgres")]
    pub(crate) fn new(stored: Arc<StoredEvent>, attempt: u32, acker: Arc<dyn Acknowledge>) -> Self {
        Self {
            stored,
            attempt,
            acker,
        }
    }

    /// The item's id in its inbox.
    pub fn id(&self) -> u64 {
        self.stored.id
    }

    /// The target the event was delivered to.
    pub fn target(&self) -> &TargetKey {
        &self.stored.target
    }

    /// The webhook whose secret verified the delivery.
    pub fn webhook_gid(&self) -> Option<&str> {
        self.stored.webhook_gid.as_deref()
    }

    /// When the receiver committed it.
    pub fn received_at(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.stored.received_at_ms as i64)
            .unwrap_or_default()
    }

    /// How many times it has been handed out, this time included (1 the
    /// first time; more after an expired lease or a restart).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The event's JSON exactly as Asana sent it.
    pub fn raw(&self) -> &str {
        self.stored.event.get()
    }

    /// The typed event, or the raw JSON and the decoding error when the
    /// payload drifted from what this crate knows.
    pub fn event(&self) -> Result<Event, UndecodedEvent> {
        serde_json::from_str::<Event>(self.raw()).map_err(|e| UndecodedEvent {
            raw: serde_json::from_str(self.raw()).unwrap_or(serde_json::Value::Null),
            error: e.to_string(),
        })
    }

    /// Acknowledges the item: it is removed for good. Call it after the
    /// event was handled; until then a crash hands it out again.
    pub async fn ack(self) -> Result<(), InboxError> {
        self.acker.ack(self.stored.id).await
    }

    /// Gives the item back without handling it: it is handed out again at
    /// once instead of after its lease.
    pub fn release(self) {
        self.acker.release(self.stored.id);
    }
}

/// The acknowledgement side of an inbox, for [`InboxItem`].
pub(crate) trait Acknowledge: Send + Sync {
    fn ack(&self, id: u64) -> Pin<Box<dyn Future<Output = Result<(), InboxError>> + Send + '_>>;
    fn release(&self, id: u64);
}

/// What waits in an inbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InboxStats {
    /// Events not yet handed out.
    pub waiting: usize,
    /// Events handed out and not yet acknowledged.
    pub in_flight: usize,
    /// Bytes of events stored (waiting and in flight).
    pub bytes: u64,
    /// When the oldest stored event was committed.
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
    /// Stored events per webhook gid (`-` when unknown).
    pub per_webhook: BTreeMap<String, usize>,
    /// Events dropped as repeats since the inbox was created.
    pub duplicates_dropped: u64,
    /// The last heartbeat per webhook gid (`-` when unknown).
    pub last_heartbeats: BTreeMap<String, chrono::DateTime<chrono::Utc>>,
}

/// A durable queue of verified events; see the [module docs](self).
pub trait Inbox: Clone + Send + Sync + 'static {
    /// Commits a delivery's events (repeats dropped) and returns once they
    /// are durable: only then may the receiver answer 2xx. All of the
    /// delivery or none of it is committed.
    fn append(
        &self,
        delivery: VerifiedDelivery,
    ) -> impl Future<Output = Result<Appended, InboxError>> + Send;

    /// Records a heartbeat of a webhook.
    fn heartbeat(
        &self,
        target: &TargetKey,
        webhook_gid: Option<&str>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send;

    /// The next event to handle, waiting for one; `None` once the inbox is
    /// closed. It is leased to the caller until acknowledged, released, or
    /// its lease expires.
    fn next(&self) -> impl Future<Output = Option<InboxItem>> + Send;

    /// What waits in the inbox.
    fn stats(&self) -> impl Future<Output = Result<InboxStats, InboxError>> + Send;

    /// Closes the inbox: consumers waiting in [`Inbox::next`] get `None`
    /// and appends fail. What is stored stays stored.
    fn close(&self);
}

/// Runs `handler` on every event as it arrives, acknowledging each one the
/// handler returns `Ok` for and releasing the others for another try,
/// until the inbox is closed.
///
/// ```no_run
/// # async fn run(inbox: asana_webhooks::inbox::MemoryInbox) {
/// asana_webhooks::inbox::handle_each(inbox, async |item| {
///     println!("{}", item.raw());
///     Ok::<(), std::io::Error>(())
/// })
/// .await;
/// # }
/// ```
pub async fn handle_each<I, F, E>(inbox: I, mut handler: F)
where
    I: Inbox,
    F: AsyncFnMut(&InboxItem) -> Result<(), E>,
    E: std::fmt::Display,
{
    while let Some(item) = inbox.next().await {
        match handler(&item).await {
            Ok(()) => {
                if let Err(e) = item.ack().await {
                    tracing::warn!(error = %e, "could not acknowledge an event; it will be handed out again");
                }
            }
            Err(e) => {
                tracing::warn!(id = item.id(), error = %e, "the handler failed; the event is handed out again");
                item.release();
            }
        }
    }
}

/// The key that recognises a repeated event: SHA-256 over the target, the
/// webhook and the event's canonical JSON (keys sorted, no whitespace), so
/// that the same event re-serialised differently is still the same.
pub(crate) fn dedupe_key(
    target: &TargetKey,
    webhook_gid: Option<&str>,
    event: &RawValue,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(target.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(webhook_gid.unwrap_or("").as_bytes());
    hasher.update([0]);
    match serde_json::from_str::<serde_json::Value>(event.get()) {
        // serde_json's maps are sorted, so this is canonical.
        Ok(value) => hasher.update(serde_json::to_vec(&value).unwrap_or_default()),
        Err(_) => hasher.update(event.get().as_bytes()),
    }
    hasher.finalize().into()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[tokio::test]
    async fn handle_each_acknowledges_what_was_handled_and_retries_what_failed() {
        let inbox = MemoryInbox::new();
        inbox
            .append(VerifiedDelivery {
                target: TargetKey::from_path_and_query("/a"),
                webhook_gid: None,
                events: vec![raw(r#"{"n":1}"#), raw(r#"{"n":2}"#)],
            })
            .await
            .unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let handler = handle_each(inbox.clone(), async |item: &InboxItem| {
            seen.lock()
                .unwrap()
                .push((item.raw().to_string(), item.attempt()));
            if item.raw().contains('2') && item.attempt() == 1 {
                return Err("not this time");
            }
            Ok(())
        });
        let closer = async {
            for _ in 0..200 {
                if seen.lock().unwrap().len() >= 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Let the last acknowledgement land.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let stats = inbox.stats().await.unwrap();
            inbox.close();
            stats
        };
        let ((), stats) = tokio::join!(handler, closer);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (r#"{"n":1}"#.to_string(), 1),
                (r#"{"n":2}"#.to_string(), 1),
                (r#"{"n":2}"#.to_string(), 2)
            ]
        );
        assert_eq!(
            (stats.waiting, stats.in_flight),
            (0, 0),
            "both acknowledged"
        );
    }

    #[test]
    fn a_full_inbox_says_what_its_limit_counts() {
        let bytes = InboxError::Full {
            waiting: 300,
            limit: 256,
            unit: LimitUnit::Bytes,
        };
        assert_eq!(
            bytes.to_string(),
            "the inbox is full (300 bytes waiting, limit 256 bytes); handle and acknowledge events to make room"
        );
        let events = InboxError::Full {
            waiting: 2,
            limit: 2,
            unit: LimitUnit::Events,
        };
        assert_eq!(
            events.to_string(),
            "the inbox is full (2 events waiting, limit 2 events); handle and acknowledge events to make room"
        );
    }

    #[test]
    fn the_key_ignores_formatting_but_not_the_webhook() {
        let target = TargetKey::from_path_and_query("/a");
        let a = dedupe_key(&target, Some("1"), &raw(r#"{"a":1,"b":[1,2]}"#));
        let b = dedupe_key(&target, Some("1"), &raw(r#"{ "b": [1, 2], "a": 1 }"#));
        let c = dedupe_key(&target, Some("2"), &raw(r#"{"a":1,"b":[1,2]}"#));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn bodies_split_into_raw_events() {
        let target = TargetKey::from_path_and_query("/a");
        let d = VerifiedDelivery::from_body(target.clone(), None, br#"{"events":[{"x":1}, 2]}"#)
            .unwrap();
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.events[1].get(), "2");
        let odd = VerifiedDelivery::from_body(target.clone(), None, br#"{"other":true}"#).unwrap();
        assert_eq!(odd.events.len(), 1);
        assert!(
            VerifiedDelivery::from_body(target.clone(), None, br#"{"events":[]}"#)
                .unwrap()
                .is_heartbeat()
        );
        assert!(VerifiedDelivery::from_body(target, None, b"nope").is_err());
    }
}
