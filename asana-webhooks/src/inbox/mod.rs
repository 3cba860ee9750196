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
//! at least once, so make it idempotent. Each hand-out carries a lease
//! token: once a lease expired and the item went to another consumer, the
//! first holder's acknowledgement or release is refused
//! ([`InboxError::LeaseLost`]), so that only the current holder decides.
//!
//! An item whose handling failed is given back with
//! [`InboxItem::release`]: it is handed out again after a backoff that
//! grows with its attempts (with jitter), and after its last allowed
//! attempt ([`Retries`], [`DEFAULT_MAX_ATTEMPTS`] by default; an expired
//! lease counts as a failed attempt) it moves to the **dead letters**,
//! where it blocks nothing: [`Inbox::dead_letters`] lists them,
//! [`Inbox::redrive_dead_letters`] hands them out again with their attempts
//! reset, [`Inbox::purge_dead_letters`] deletes them. Attempt counts are
//! stored with the events, so they survive restarts (a hand-out is written
//! within milliseconds without making the consumer wait: a crash in those
//! milliseconds does not count it). [`handle_each`] does all this for you.
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
//! only after the commit that holds it. Acknowledgements share commits the
//! same way: acknowledge several items together (for example with
//! `futures::future::join_all` over their [`InboxItem::ack`]s, or let
//! [`handle_each`] do it) and they are committed together.

mod engine;
mod file;
mod handle;
mod memory;
mod retry;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

pub use file::FileInbox;
pub use handle::handle_each;
pub use memory::MemoryInbox;
pub use retry::{
    DEFAULT_FIRST_BACKOFF, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_BACKOFF, DeadLetter, Released,
    Retries, Selection,
};

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
    /// The caller's lease on the item was lost: it expired and the item
    /// was handed to another consumer (or, after its last attempt, moved
    /// to the dead letters). The acknowledgement or release was refused
    /// and changed nothing; whoever holds the item now decides its fate.
    #[error(
        "inbox item {id}: the lease of attempt {attempt} was lost (it expired and the item was handed to another consumer, or moved to the dead letters); this acknowledgement or release was refused and changed nothing"
    )]
    LeaseLost {
        /// The item's id.
        id: u64,
        /// The attempt whose lease was lost.
        attempt: u32,
    },
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
    /// Tells this hand-out apart from every other one of the same item.
    token: u64,
    /// When it was handed out, and for how long.
    leased_at: Instant,
    lease: Duration,
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
    pub(crate) fn new(
        stored: Arc<StoredEvent>,
        attempt: u32,
        token: u64,
        lease: Duration,
        acker: Arc<dyn Acknowledge>,
    ) -> Self {
        Self {
            stored,
            attempt,
            token,
            leased_at: Instant::now(),
            lease,
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
        timestamp(self.stored.received_at_ms)
    }

    /// How many times it has been handed out, this time included (1 the
    /// first time; more after a release, an expired lease or a restart,
    /// all of which count).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// How long is left of this lease, as this process measures it; at
    /// zero the item may be handed to another consumer at any moment.
    pub fn lease_left(&self) -> Duration {
        self.lease.saturating_sub(self.leased_at.elapsed())
    }

    /// The event's JSON exactly as Asana sent it.
    pub fn raw(&self) -> &str {
        self.stored.event.get()
    }

    /// The typed event, or the raw JSON and the decoding error when the
    /// payload drifted from what this crate knows.
    pub fn event(&self) -> Result<Event, UndecodedEvent> {
        decode(self.raw())
    }

    /// Acknowledges the item: it is removed for good once this returns
    /// `Ok`. Call it after the event was handled; until then a crash hands
    /// it out again. Acknowledgements made together share a commit.
    ///
    /// Fails with [`InboxError::LeaseLost`] when the lease expired and the
    /// item was handed to another consumer meanwhile: it is not removed,
    /// since that consumer is handling it.
    pub async fn ack(self) -> Result<(), InboxError> {
        self.acknowledge().await
    }

    /// Submits the acknowledgement now; the future says when it is
    /// committed.
    pub(crate) fn acknowledge(self) -> BoxFuture<'static, Result<(), InboxError>> {
        self.acker.ack(self.stored.id, self.attempt, self.token)
    }

    /// Gives the item back unhandled, as a failed attempt (`reason` is
    /// kept with it, and shown with the dead letters): it is handed out
    /// again after a backoff ([`Retries::backoff_after`]), or, when this
    /// was its last allowed attempt, moved to the dead letters. Returns
    /// once that is committed.
    ///
    /// Fails with [`InboxError::LeaseLost`], changing nothing, when the
    /// lease expired and the item was handed to another consumer.
    pub async fn release(self, reason: impl std::fmt::Display) -> Result<Released, InboxError> {
        self.acker
            .release(self.stored.id, self.attempt, self.token, reason.to_string())
            .await
    }
}

/// A boxed future, for the object-safe [`Acknowledge`].
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The acknowledgement side of an inbox, for [`InboxItem`]. Both submit
/// their work when called (so that several share a commit) and refuse a
/// `token` that is no longer the item's latest lease.
pub(crate) trait Acknowledge: Send + Sync {
    fn ack(&self, id: u64, attempt: u32, token: u64) -> BoxFuture<'static, Result<(), InboxError>>;
    fn release(
        &self,
        id: u64,
        attempt: u32,
        token: u64,
        reason: String,
    ) -> BoxFuture<'static, Result<Released, InboxError>>;
}

/// Decodes an event, keeping the raw JSON and the error when it drifted.
fn decode(raw: &str) -> Result<Event, UndecodedEvent> {
    serde_json::from_str::<Event>(raw).map_err(|e| UndecodedEvent {
        raw: serde_json::from_str(raw).unwrap_or(serde_json::Value::Null),
        error: e.to_string(),
    })
}

/// A stored time (ms since the epoch).
pub(crate) fn timestamp(ms: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms as i64).unwrap_or_default()
}

/// What waits in an inbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InboxStats {
    /// Events not handed out now (those waiting out a backoff included).
    pub waiting: usize,
    /// Of the waiting events, those waiting out the backoff after a failed
    /// attempt.
    pub retrying: usize,
    /// Events handed out and not yet acknowledged.
    pub in_flight: usize,
    /// Events in the dead letters ([`Inbox::dead_letters`]): not counted in
    /// the other fields, nor against the inbox's size limit.
    pub dead_letters: u64,
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

impl InboxStats {
    /// Sets the inbox gauges of [`crate::metrics`] (events by state, bytes,
    /// age of the oldest event) from these stats. Call it on a timer or
    /// just before each scrape.
    pub fn record_metrics(&self) {
        let oldest_age = self.oldest.map_or(Duration::ZERO, |oldest| {
            (chrono::Utc::now() - oldest).to_std().unwrap_or_default()
        });
        crate::metrics::inbox_gauges(crate::metrics::InboxGauges {
            ready: self.waiting.saturating_sub(self.retrying) as u64,
            retrying: self.retrying as u64,
            in_flight: self.in_flight as u64,
            dead_letters: self.dead_letters,
            bytes: self.bytes,
            oldest_age,
        });
    }
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
    /// its lease expires. An event that has had all its attempts is moved
    /// to the dead letters instead of being handed out again.
    fn next(&self) -> impl Future<Output = Option<InboxItem>> + Send;

    /// Like [`next`](Self::next), up to `max` events at once (at least
    /// one), taking only what is there once one is: empty once the inbox
    /// is closed. Their leases all start now.
    fn next_batch(&self, max: usize) -> impl Future<Output = Vec<InboxItem>> + Send;

    /// What waits in the inbox.
    fn stats(&self) -> impl Future<Output = Result<InboxStats, InboxError>> + Send;

    /// The dead letters, oldest first.
    fn dead_letters(&self) -> impl Future<Output = Result<Vec<DeadLetter>, InboxError>> + Send;

    /// Moves the selected dead letters back to the waiting events, their
    /// attempts reset, to be handed out (oldest first) as if new; returns
    /// how many moved.
    fn redrive_dead_letters(
        &self,
        which: Selection,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// Deletes the selected dead letters for good; returns how many.
    fn purge_dead_letters(
        &self,
        which: Selection,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// Closes the inbox: consumers waiting in [`Inbox::next`] get `None`
    /// and appends fail. What is stored stays stored.
    fn close(&self);

    /// Whether the inbox takes commits now, for readiness probes (the
    /// receiver's [`check_ready`](crate::receiver::Receiver::check_ready)).
    /// [`FileInbox`] checks that its file is still the one it opened and
    /// commits an empty transaction (sharing the flush of concurrent
    /// deliveries); [`MemoryInbox`] only that it is open; a database inbox
    /// that the database answers and is not a read-only standby. The
    /// default says ready.
    fn check_ready(&self) -> impl Future<Output = Result<(), InboxError>> + Send {
        async { Ok(()) }
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
        let backoff = Duration::from_millis(20);
        let inbox =
            MemoryInbox::new().with_retries(Retries::default().with_backoff(backoff, backoff));
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
