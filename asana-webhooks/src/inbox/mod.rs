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
//! # One inbox, two sources, each event once
//!
//! Events reach an inbox from two **sources** ([`EventSource`]): webhook
//! deliveries, which the receiver appends, and the Events API
//! (`GET /events`), through which missed events are caught up
//! ([`VerifiedDelivery::from_events_api`]). Each stored event keeps its
//! source and the **watched resource** it belongs to (the resource of the
//! webhook that delivered it, or the resource whose events were fetched):
//! [`InboxItem::source`], [`InboxItem::resource`], and the same on
//! [`DeadLetter`].
//!
//! The same event can arrive more than once: a retried delivery repeats
//! events already committed, and the Events API returns events a webhook
//! delivered too. Each event gets a **dedupe key**, and an event whose key
//! was committed within [`DEDUPE_HORIZON`] (24 hours: Asana retries a
//! delivery for 24 hours, and its Events API keeps events for 24 hours) is
//! dropped and counted ([`Appended::duplicates`],
//! [`InboxStats::duplicates_dropped`]), acknowledged or not. The key is:
//!
//! - when the watched resource is known and the event has an identity (an
//!   object with a string `action`, `created_at` and `resource.gid`): a
//!   SHA-256 over the watched resource and the event's
//!   [`EventIdentity`]. The same event is then recognised from either
//!   source and in either shape. The identity (whose docs hold the rule)
//!   is the resource's gid, the action, `created_at` (as sent), the
//!   user's and the parent's gids, the change's field and action, and its
//!   `new_value`, `added_value` and `removed_value` (by gid when they are
//!   resources). Every other
//!   difference is tolerated: names (`resource.name`, `user.name`,
//!   `parent.name`, the names of change values), `resource_type`,
//!   `resource_subtype`, the Events API's `type`, keys Asana may add, key
//!   order and whitespace, and the webhook, target and source it came
//!   through. Two events that differ in an identity field are two events;
//!   the same event for two watched resources (a webhook on a task and one
//!   on its project) is one event per resource, while two webhooks on one
//!   resource feeding one inbox (another target, other filters) share its
//!   events' keys: each is handed out once, as it first came.
//! - otherwise (the watched resource unknown, as for records and secrets
//!   from before it was kept, or an event without an identity): a SHA-256
//!   over the target, the webhook and the event's canonical JSON (keys
//!   sorted, no whitespace), which recognises an exact repeat only.
//!
//! Heartbeats are recorded per webhook, not queued; the time of each
//! webhook's last heartbeat or verified delivery is kept
//! ([`InboxStats::last_heartbeats`]): the watch dates a gap's start by it.
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
use crate::identity::EventIdentity;
use crate::secrets::TargetKey;

/// How long a repeated event is recognised: Asana retries a delivery for
/// 24 hours, and its Events API keeps events for 24 hours.
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

/// Where a stored event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventSource {
    /// A webhook delivery, verified by the receiver (and what events
    /// stored before the source was kept count as).
    #[default]
    Webhook,
    /// The Events API (`GET /events`), catching up what webhooks missed.
    EventsApi,
}

impl EventSource {
    /// Its name as stored: `webhook` or `events_api`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::EventsApi => "events_api",
        }
    }

    /// The source named `name` (see [`as_str`](Self::as_str)); `None` when
    /// it is none this build knows.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "webhook" => Some(Self::Webhook),
            "events_api" => Some(Self::EventsApi),
            _ => None,
        }
    }
}

impl std::fmt::Display for EventSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Events on their way into an inbox: a verified webhook delivery
/// ([`from_body`](Self::from_body)), or events fetched from the Events API
/// ([`from_events_api`](Self::from_events_api)).
#[derive(Debug, Clone)]
pub struct VerifiedDelivery {
    /// The target it was delivered to; for the Events API, the target of
    /// the webhook whose events are caught up.
    pub target: TargetKey,
    /// The webhook whose secret verified it (`None` for the Events API).
    pub webhook_gid: Option<String>,
    /// Where its events come from.
    pub source: EventSource,
    /// The watched resource its events belong to: the webhook's resource,
    /// or the resource whose events were fetched. With it, an event is
    /// recognised whichever source and shape it comes in (see the
    /// [module docs](self)).
    pub resource: Option<String>,
    /// Its events, each as the JSON Asana sent.
    pub events: Vec<Box<RawValue>>,
}

impl VerifiedDelivery {
    /// Splits a verified webhook delivery's body into its events without
    /// decoding them: a body that is JSON but not `{"events": [...]}`
    /// becomes one item (kept whole). Fails only when the body is not JSON.
    /// Its watched resource is unknown until
    /// [`with_resource`](Self::with_resource) sets it.
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
            source: EventSource::Webhook,
            resource: None,
            events,
        })
    }

    /// Events the Events API returned for `resource` (each as sent, for
    /// example [`FetchedEvent::raw`](crate::events::FetchedEvent::raw)
    /// through [`serde_json::value::to_raw_value`]), to be handed out like
    /// delivered ones. `target` is where the resource's webhook delivers,
    /// so that the app routes them alike; it does not count in their
    /// dedupe key, which recognises the events that webhook delivered too.
    pub fn from_events_api(
        target: TargetKey,
        resource: impl Into<String>,
        events: Vec<Box<RawValue>>,
    ) -> Self {
        Self {
            target,
            webhook_gid: None,
            source: EventSource::EventsApi,
            resource: Some(resource.into()),
            events,
        }
    }

    /// Sets the watched resource its events belong to.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// A heartbeat: no events.
    pub fn is_heartbeat(&self) -> bool {
        self.events.is_empty()
    }

    /// The dedupe key of each event, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.events.iter().map(|event| {
            dedupe_key(
                &self.target,
                self.webhook_gid.as_deref(),
                self.resource.as_deref(),
                event,
            )
        })
    }

    /// Its events as stored (ids not yet given), received at `now_ms`.
    pub(crate) fn into_stored(self, now_ms: u64) -> impl Iterator<Item = StoredEvent> {
        let Self {
            target,
            webhook_gid,
            source,
            resource,
            events,
        } = self;
        events.into_iter().map(move |event| StoredEvent {
            id: 0,
            target: target.clone(),
            webhook_gid: webhook_gid.clone(),
            source,
            resource: resource.clone(),
            received_at_ms: now_ms,
            event,
        })
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
    /// Absent from records written before it was kept: a webhook's.
    #[serde(default)]
    pub(crate) source: EventSource,
    /// Absent from records written before it was kept: unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resource: Option<String>,
    pub(crate) received_at_ms: u64,
    pub(crate) event: Box<RawValue>,
}

impl StoredEvent {
    fn size(&self) -> u64 {
        let resource = self.resource.as_ref().map_or(0, String::len);
        (self.event.get().len() + self.target.as_str().len() + resource + 64) as u64
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
            .field("source", &self.stored.source)
            .field("resource", &self.stored.resource)
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

    /// The webhook whose secret verified the delivery (`None` for an event
    /// from the Events API).
    pub fn webhook_gid(&self) -> Option<&str> {
        self.stored.webhook_gid.as_deref()
    }

    /// Where the event came from: a webhook delivery or the Events API.
    pub fn source(&self) -> EventSource {
        self.stored.source
    }

    /// The watched resource the event belongs to (the delivering webhook's
    /// resource, or the resource whose events were fetched), when known.
    pub fn resource(&self) -> Option<&str> {
        self.stored.resource.as_deref()
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
    /// When each webhook (by gid, `-` when unknown) was last heard from:
    /// its last verified heartbeat or delivery.
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

/// The key that recognises a repeated event; the one place its rule is
/// written (see the [module docs](self)).
///
/// With the watched `resource` and an event that has an identity: SHA-256
/// over a tag, the resource and the event's [`EventIdentity`], whatever
/// the source, shape, target or webhook. Otherwise: SHA-256 over the
/// target, the webhook and the event's canonical JSON (keys sorted, no
/// whitespace), so that the same event re-serialised differently is still
/// the same. The tag starts with a byte no UTF-8 text has, so no input of
/// one kind is an input of the other.
pub(crate) fn dedupe_key(
    target: &TargetKey,
    webhook_gid: Option<&str>,
    resource: Option<&str>,
    event: &RawValue,
) -> [u8; 32] {
    let value = serde_json::from_str::<serde_json::Value>(event.get()).ok();
    let mut hasher = Sha256::new();
    if let (Some(resource), Some(value)) = (resource, value.as_ref().filter(|v| has_identity(v))) {
        hasher.update(b"\xffidentity/1\0");
        hasher.update((resource.len() as u64).to_be_bytes());
        hasher.update(resource.as_bytes());
        hasher.update(EventIdentity::of(value).as_bytes());
        return hasher.finalize().into();
    }
    hasher.update(target.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(webhook_gid.unwrap_or("").as_bytes());
    hasher.update([0]);
    match value {
        // serde_json's maps are sorted, so this is canonical.
        Some(value) => hasher.update(serde_json::to_vec(&value).unwrap_or_default()),
        None => hasher.update(event.get().as_bytes()),
    }
    hasher.finalize().into()
}

/// Whether an event carries what tells it from others by identity: a
/// string `action`, `created_at` and `resource.gid`. Anything else (a
/// payload that drifted, a body kept whole) is keyed by its JSON, so that
/// two such payloads are never taken for one event.
fn has_identity(event: &serde_json::Value) -> bool {
    let text = |v: Option<&serde_json::Value>| v.is_some_and(serde_json::Value::is_string);
    text(event.get("action"))
        && text(event.get("created_at"))
        && text(event.get("resource").and_then(|r| r.get("gid")))
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
            .append(
                VerifiedDelivery::from_body(
                    TargetKey::from_path_and_query("/a"),
                    None,
                    br#"{"events":[{"n":1},{"n":2}]}"#,
                )
                .unwrap(),
            )
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
    fn without_a_resource_the_key_ignores_formatting_but_not_the_webhook() {
        let target = TargetKey::from_path_and_query("/a");
        let a = dedupe_key(&target, Some("1"), None, &raw(r#"{"a":1,"b":[1,2]}"#));
        let b = dedupe_key(&target, Some("1"), None, &raw(r#"{ "b": [1, 2], "a": 1 }"#));
        let c = dedupe_key(&target, Some("2"), None, &raw(r#"{"a":1,"b":[1,2]}"#));
        let d = dedupe_key(
            &TargetKey::from_path_and_query("/b"),
            Some("1"),
            None,
            &raw(r#"{"a":1,"b":[1,2]}"#),
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d, "nor the target");
        // Events with an identity too: without the resource, the two shapes
        // of one event are two events.
        let (compact, named) = (raw(COMPACT), raw(NAMED));
        assert_ne!(
            dedupe_key(&target, Some("1"), None, &compact),
            dedupe_key(&target, Some("1"), None, &named)
        );
    }

    /// An assignee change as a webhook delivers it (compact)...
    const COMPACT: &str = r#"{"user":{"gid":"1201","resource_type":"user"},"created_at":"2026-03-17T10:11:06.611Z","action":"changed","resource":{"gid":"1205","resource_type":"task","resource_subtype":"default_task"},"parent":null,"change":{"field":"assignee","action":"changed","new_value":{"gid":"1201","resource_type":"user"}}}"#;
    /// ...and as the Events API returns it: names, `type`, another order.
    const NAMED: &str = r#"{"type":"task","action":"changed","created_at":"2026-03-17T10:11:06.611Z",
        "change":{"action":"changed","field":"assignee","new_value":{"gid":"1201","name":"Ada Lovelace","resource_type":"user"}},
        "parent":null,"resource":{"gid":"1205","name":"Ship the release","resource_subtype":"default_task","resource_type":"task"},
        "user":{"gid":"1201","name":"Ada Lovelace","resource_type":"user"}}"#;

    #[test]
    fn with_a_resource_the_key_is_the_events_identity_in_that_resource() {
        let (a, b) = (
            TargetKey::from_path_and_query("/a"),
            TargetKey::from_path_and_query("/b"),
        );
        let key = |target: &TargetKey, gid: Option<&str>, resource: &str, event: &str| {
            dedupe_key(target, gid, Some(resource), &raw(event))
        };
        let delivered = key(&a, Some("1"), "1300", COMPACT);
        // The same event from the Events API (no webhook), another
        // webhook of the resource, another target: the same key.
        assert_eq!(delivered, key(&a, None, "1300", NAMED));
        assert_eq!(delivered, key(&b, Some("2"), "1300", NAMED));
        // Another watched resource: another key.
        assert_ne!(delivered, key(&a, Some("1"), "1301", COMPACT));
        // An identity field differs: another key.
        let later = COMPACT.replace("06.611Z", "06.612Z");
        assert_ne!(delivered, key(&a, Some("1"), "1300", &later));
        let other_assignee = NAMED.replace(
            r#""new_value":{"gid":"1201""#,
            r#""new_value":{"gid":"1202""#,
        );
        assert_ne!(delivered, key(&a, None, "1300", &other_assignee));
        // The resource is length-prefixed: no two (resource, identity)
        // pairs share their bytes.
        assert_ne!(key(&a, None, "1", NAMED), key(&a, None, "12", NAMED));
        // Nor is it the key the event has without a resource.
        assert_ne!(delivered, dedupe_key(&a, Some("1"), None, &raw(COMPACT)));
    }

    #[test]
    fn payloads_without_an_identity_are_keyed_by_their_json_even_with_a_resource() {
        let target = TargetKey::from_path_and_query("/a");
        let key = |event: &str| dedupe_key(&target, Some("1"), Some("1300"), &raw(event));
        // Drifted payloads share no identity fields, yet are not one event.
        assert_ne!(key(r#"{"n":1}"#), key(r#"{"n":2}"#));
        assert_ne!(
            key(r#"{"action":"added","created_at":null}"#),
            key(r#"{"action":"added","created_at":null,"x":1}"#)
        );
        assert_ne!(key("1"), key("2"));
        // Each is the key it has without a resource.
        assert_eq!(
            key(r#"{"n":1}"#),
            dedupe_key(&target, Some("1"), None, &raw(r#"{ "n": 1 }"#))
        );
    }

    #[test]
    fn sources_have_stable_names() {
        for source in [EventSource::Webhook, EventSource::EventsApi] {
            assert_eq!(EventSource::from_name(source.as_str()), Some(source));
            assert_eq!(
                serde_json::to_value(source).unwrap(),
                serde_json::Value::String(source.to_string())
            );
        }
        assert_eq!(EventSource::EventsApi.as_str(), "events_api");
        assert_eq!(EventSource::from_name("carrier pigeon"), None);
        assert_eq!(EventSource::default(), EventSource::Webhook);
    }

    #[test]
    fn events_api_events_carry_their_source_and_resource() {
        let target = TargetKey::from_path_and_query("/a");
        let fetched = VerifiedDelivery::from_events_api(target.clone(), "1300", vec![raw(NAMED)]);
        assert_eq!(
            (
                fetched.source,
                fetched.resource.as_deref(),
                fetched.webhook_gid.as_deref()
            ),
            (EventSource::EventsApi, Some("1300"), None)
        );
        let delivered = VerifiedDelivery::from_body(
            target,
            Some("1".into()),
            format!(r#"{{"events":[{COMPACT}]}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (delivered.source, delivered.resource.as_deref()),
            (EventSource::Webhook, None)
        );
        let delivered = delivered.with_resource("1300");
        assert_eq!(
            delivered.keys().collect::<Vec<_>>(),
            fetched.keys().collect::<Vec<_>>()
        );
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
