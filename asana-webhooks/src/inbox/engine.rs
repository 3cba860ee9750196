//! The inbox engine shared by the memory and file inboxes: leases, backoffs
//! and the queue of waiting events live in memory, and every change goes
//! through one writer thread that commits whole batches to a [`Journal`]
//! (group commit) before anyone is told it happened.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::{
    Acknowledge, Appended, BoxFuture, DEDUPE_HORIZON, DeadLetter, InboxError, InboxItem,
    InboxStats, Released, Retries, Selection, StoredEvent, VerifiedDelivery, now_ms,
};
use crate::secrets::TargetKey;

/// The most operations in one commit.
const MAX_BATCH: usize = 4096;

/// How long a commit holding only hand-outs waits for more work to share
/// its flush: a consumer that acknowledges within this time pays one flush
/// per event rather than two, and one that crashes later than this (and a
/// flush) after taking an event finds the attempt counted.
const HANDOUT_WAIT: Duration = Duration::from_millis(2);

/// What a journal holds when it is opened.
#[derive(Default)]
pub(crate) struct Loaded {
    pub(crate) events: Vec<StoredEvent>,
    pub(crate) attempts: Vec<(u64, Attempts)>,
    pub(crate) dead: Vec<DeadRecord>,
    pub(crate) seen: Vec<(u64, [u8; 32])>,
    pub(crate) duplicates: u64,
    pub(crate) next_id: u64,
    pub(crate) heartbeats: Vec<(String, u64)>,
}

/// What is stored beside an event that was handed out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Attempts {
    /// How many times it was handed out.
    pub(crate) attempts: u32,
    /// Not to be handed out before this (ms since the epoch; 0: at once).
    pub(crate) retry_at_ms: u64,
    /// What its last failed attempt said.
    pub(crate) last_error: Option<String>,
}

/// A dead letter.
#[derive(Clone)]
pub(crate) struct DeadRecord {
    pub(crate) event: Arc<StoredEvent>,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) dead_at_ms: u64,
}

/// One commit: everything in it becomes durable together, or nothing does.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) appends: Vec<StoredEvent>,
    pub(crate) seen: Vec<(u64, [u8; 32])>,
    /// Acknowledged: removed with their attempts.
    pub(crate) acks: Vec<u64>,
    /// Attempts written, each replacing the event's record.
    pub(crate) attempts: Vec<(u64, Attempts)>,
    /// Moved from the events to the dead letters, their attempts removed.
    pub(crate) buried: Vec<DeadRecord>,
    /// Moved from the dead letters back to the events, as new.
    pub(crate) revived: Vec<Arc<StoredEvent>>,
    /// Dead letters deleted.
    pub(crate) purged: Vec<u64>,
    pub(crate) heartbeats: Vec<(String, u64)>,
    /// Dedupe keys older than this (ms) may be forgotten.
    pub(crate) prune_before: u64,
    pub(crate) duplicates: u64,
    pub(crate) next_id: u64,
}

/// Durable storage under the engine.
pub(crate) trait Journal: Send + 'static {
    fn load(&mut self) -> Result<Loaded, InboxError>;
    fn commit(&mut self, batch: &Batch) -> Result<(), InboxError>;
}

enum Op {
    Append(
        VerifiedDelivery,
        Vec<[u8; 32]>,
        oneshot::Sender<Result<Appended, InboxError>>,
    ),
    Heartbeat(String, oneshot::Sender<Result<(), InboxError>>),
    /// Items handed out, with their new counts; nobody waits for these.
    HandedOut(Vec<(u64, Attempts)>),
    /// An acknowledgement whose lease was checked; the item is settling.
    Ack(u64, oneshot::Sender<Result<(), InboxError>>),
    /// A failed attempt whose lease was checked; the item is settling.
    Release(Release),
    /// Items found spent when about to be handed out; they are settling.
    Bury(Vec<u64>),
    Redrive(Selection, oneshot::Sender<Result<u64, InboxError>>),
    Purge(Selection, oneshot::Sender<Result<u64, InboxError>>),
    /// A readiness check: a commit with nothing of its own.
    Probe(oneshot::Sender<Result<(), InboxError>>),
}

struct Release {
    id: u64,
    /// The record to keep, its backoff and reason included.
    record: Attempts,
    retry_at: Instant,
    after: Duration,
    bury: bool,
    reply: oneshot::Sender<Result<Released, InboxError>>,
}

/// One live (not dead) event.
struct Item {
    event: Arc<StoredEvent>,
    attempts: u32,
    last_error: Option<String>,
    /// The token of the latest hand-out, until it is acknowledged or
    /// released: only its holder may do either.
    token: Option<u64>,
    state: State,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Ready,
    Leased(Instant),
    /// Waiting out the backoff after a failed attempt.
    Backoff(Instant),
    /// Its acknowledgement, release or burial is being committed; holds the
    /// lease deadline to go back to should the commit fail.
    Settling(Instant),
}

#[derive(Default)]
struct Queue {
    items: HashMap<u64, Item>,
    /// The ids ready to be handed out, lowest (oldest) first.
    ready: BTreeSet<u64>,
    /// Leases and backoffs, by when they end.
    timers: BTreeSet<(Instant, u64)>,
    dead: BTreeMap<u64, DeadRecord>,
    last_token: u64,
    /// Bytes of the live events (dead letters do not count).
    bytes: u64,
    duplicates: u64,
    heartbeats: BTreeMap<String, u64>,
}

impl Queue {
    /// Moves `id` to `state`, keeping `ready` and `timers` in step.
    fn set(&mut self, id: u64, state: State) {
        let Some(item) = self.items.get_mut(&id) else {
            return;
        };
        match std::mem::replace(&mut item.state, state) {
            State::Ready => {
                self.ready.remove(&id);
            }
            State::Leased(at) | State::Backoff(at) => {
                self.timers.remove(&(at, id));
            }
            State::Settling(_) => {}
        }
        match state {
            State::Ready => {
                self.ready.insert(id);
            }
            State::Leased(at) | State::Backoff(at) => {
                self.timers.insert((at, id));
            }
            State::Settling(_) => {}
        }
    }

    fn insert(&mut self, event: Arc<StoredEvent>, attempts: Attempts, now: Instant) {
        let id = event.id;
        self.bytes += event.size();
        let state = match attempts.retry_at_ms.checked_sub(now_ms()) {
            Some(wait) if wait > 0 => State::Backoff(now + Duration::from_millis(wait)),
            _ => State::Ready,
        };
        self.items.insert(
            id,
            Item {
                event,
                attempts: attempts.attempts,
                last_error: attempts.last_error,
                token: None,
                state: State::Settling(now),
            },
        );
        self.set(id, state);
    }

    fn remove(&mut self, id: u64) -> Option<Item> {
        self.set(id, State::Settling(Instant::now()));
        let item = self.items.remove(&id)?;
        self.bytes = self.bytes.saturating_sub(item.event.size());
        Some(item)
    }

    /// Ends the leases and backoffs that are over. An expired lease makes
    /// its item ready at once: the attempt was counted when it was handed
    /// out, and its holder may still acknowledge it until it is handed out
    /// again.
    fn expire(&mut self, now: Instant) {
        let mut expired = 0;
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            // Timers are leases or backoffs: only the former count.
            if matches!(self.items.get(&id).map(|i| i.state), Some(State::Leased(_))) {
                expired += 1;
            }
            self.set(id, State::Ready);
        }
        crate::metrics::lease_expired(expired);
    }

    /// Checks that `token` is the latest lease of `id` (held, or expired
    /// and not handed out since) and marks the item settling; returns the
    /// lease deadline to go back to.
    fn settle(&mut self, id: u64, attempt: u32, token: u64) -> Result<Instant, InboxError> {
        let lost = || InboxError::LeaseLost { id, attempt };
        let item = self.items.get_mut(&id).ok_or_else(lost)?;
        if item.token != Some(token) {
            return Err(lost());
        }
        let deadline = match item.state {
            State::Leased(at) => at,
            State::Ready => Instant::now(),
            State::Backoff(_) | State::Settling(_) => return Err(lost()),
        };
        item.token = None;
        self.set(id, State::Settling(deadline));
        Ok(deadline)
    }

    /// Moves a live item to the dead letters.
    fn bury(&mut self, record: DeadRecord) {
        let id = record.event.id;
        self.remove(id);
        self.dead.insert(id, record);
        crate::metrics::dead_lettered(1);
    }
}

struct Shared {
    queue: Mutex<Queue>,
    notify: Notify,
    closed: AtomicBool,
    lease: Duration,
    max_bytes: u64,
    retries: Mutex<Retries>,
    ops: Mutex<Option<std::sync::mpsc::Sender<Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn retries(&self) -> Retries {
        *self.retries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, op: Op) -> Result<(), InboxError> {
        match &*self.ops.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(ops) => ops.send(op).map_err(|_| InboxError::Closed),
            None => Err(InboxError::Closed),
        }
    }
}

/// A handle to a running engine. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// Loads `journal` and starts its writer thread.
    pub(crate) fn start(
        mut journal: Box<dyn Journal>,
        lease: Duration,
        max_bytes: u64,
    ) -> Result<Self, InboxError> {
        let loaded = journal.load()?;
        let mut queue = Queue {
            duplicates: loaded.duplicates,
            heartbeats: loaded.heartbeats.into_iter().collect(),
            ..Queue::default()
        };
        let mut attempts: HashMap<u64, Attempts> = loaded.attempts.into_iter().collect();
        let now = Instant::now();
        for event in loaded.events {
            let record = attempts.remove(&event.id).unwrap_or_default();
            queue.insert(Arc::new(event), record, now);
        }
        for record in loaded.dead {
            queue.dead.insert(record.event.id, record);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            lease,
            max_bytes,
            retries: Mutex::new(Retries::default()),
            ops: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
        });
        // The writer holds the shared state weakly: when every handle is
        // gone, the channel closes and the thread ends, releasing the file.
        let writer = Writer {
            journal,
            shared: Arc::downgrade(&shared),
            seen: loaded.seen.iter().map(|(ms, key)| (*key, *ms)).collect(),
            seen_order: loaded.seen.into_iter().collect(),
            next_id: loaded.next_id,
        };
        let handle = std::thread::Builder::new()
            .name("asana-webhooks-inbox".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| InboxError::Storage {
                location: "inbox writer thread".into(),
                message: e.to_string(),
            })?;
        *shared.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(Self { shared })
    }

    /// Sets how failed items are retried, for every handle.
    pub(crate) fn set_retries(&self, retries: Retries) {
        *self
            .shared
            .retries
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = retries;
        // A smaller limit may make waiting items spent.
        self.shared.notify.notify_waiters();
    }

    pub(crate) async fn append(&self, delivery: VerifiedDelivery) -> Result<Appended, InboxError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(InboxError::Closed);
        }
        let keys = delivery.keys().collect();
        let (tx, rx) = oneshot::channel();
        self.shared.send(Op::Append(delivery, keys, tx))?;
        rx.await.map_err(|_| InboxError::Closed)?
    }

    pub(crate) async fn heartbeat(
        &self,
        target: &TargetKey,
        webhook_gid: Option<&str>,
    ) -> Result<(), InboxError> {
        let _ = target;
        let (tx, rx) = oneshot::channel();
        self.shared
            .send(Op::Heartbeat(webhook_gid.unwrap_or("-").to_string(), tx))?;
        rx.await.map_err(|_| InboxError::Closed)?
    }

    /// Whether a commit goes through now: shares the next commit (or makes
    /// one with nothing in it), which also reopens a journal a storage
    /// error closed once its backoff is over.
    pub(crate) async fn probe(&self) -> Result<(), InboxError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(InboxError::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.shared.send(Op::Probe(tx))?;
        rx.await.map_err(|_| InboxError::Closed)?
    }

    pub(crate) async fn next(&self) -> Option<InboxItem> {
        self.next_batch(1).await.pop()
    }

    pub(crate) async fn next_batch(&self, max: usize) -> Vec<InboxItem> {
        let acker: Arc<dyn Acknowledge> = Arc::new(self.clone());
        loop {
            let notified = self.shared.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let (items, wake_at) = {
                if self.shared.closed.load(Ordering::SeqCst) {
                    return Vec::new();
                }
                let retries = self.shared.retries();
                let lease = self.shared.lease;
                let mut queue = self.shared.queue();
                let now = Instant::now();
                queue.expire(now);
                let (mut items, mut handed, mut spent) = (Vec::new(), Vec::new(), Vec::new());
                while items.len() < max.max(1) {
                    let Some(id) = queue.ready.first().copied() else {
                        break;
                    };
                    if retries.spent(queue.items[&id].attempts) {
                        // Its last lease expired, or it was spent before a
                        // restart: it goes to the dead letters, not out.
                        queue.set(id, State::Settling(now));
                        if let Some(item) = queue.items.get_mut(&id) {
                            item.token = None;
                        }
                        spent.push(id);
                        continue;
                    }
                    queue.last_token += 1;
                    let token = queue.last_token;
                    queue.set(id, State::Leased(now + lease));
                    let item = queue.items.get_mut(&id).expect("a ready id is an item");
                    item.attempts += 1;
                    item.token = Some(token);
                    handed.push((
                        id,
                        Attempts {
                            attempts: item.attempts,
                            retry_at_ms: 0,
                            last_error: item.last_error.clone(),
                        },
                    ));
                    items.push(InboxItem::new(
                        Arc::clone(&item.event),
                        item.attempts,
                        token,
                        lease,
                        Arc::clone(&acker),
                    ));
                }
                // Sent under the lock, so that the writer sees the changes
                // of one item in the order they happened.
                if !spent.is_empty() {
                    let _ = self.shared.send(Op::Bury(spent));
                }
                if !handed.is_empty() {
                    let _ = self.shared.send(Op::HandedOut(handed));
                }
                (items, queue.timers.first().map(|(at, _)| *at))
            };
            if !items.is_empty() {
                return items;
            }
            match wake_at {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at, notified).await;
                }
                None => notified.await,
            }
        }
    }

    pub(crate) fn stats(&self) -> InboxStats {
        let queue = self.shared.queue();
        let mut stats = InboxStats {
            bytes: queue.bytes,
            duplicates_dropped: queue.duplicates,
            dead_letters: queue.dead.len() as u64,
            ..InboxStats::default()
        };
        let mut oldest = None::<u64>;
        for item in queue.items.values() {
            match item.state {
                State::Ready => stats.waiting += 1,
                State::Backoff(_) => {
                    stats.waiting += 1;
                    stats.retrying += 1;
                }
                State::Leased(_) | State::Settling(_) => stats.in_flight += 1,
            }
            let event = &item.event;
            oldest = Some(oldest.map_or(event.received_at_ms, |o| o.min(event.received_at_ms)));
            *stats
                .per_webhook
                .entry(event.webhook_gid.clone().unwrap_or_else(|| "-".into()))
                .or_default() += 1;
        }
        stats.oldest = oldest.map(super::timestamp);
        stats.last_heartbeats = queue
            .heartbeats
            .iter()
            .map(|(gid, ms)| (gid.clone(), super::timestamp(*ms)))
            .collect();
        stats
    }

    pub(crate) fn dead_letters(&self) -> Vec<DeadLetter> {
        self.shared
            .queue()
            .dead
            .values()
            .map(|d| DeadLetter::new(&d.event, d.attempts, d.last_error.clone(), d.dead_at_ms))
            .collect()
    }

    pub(crate) async fn redrive(&self, which: Selection) -> Result<u64, InboxError> {
        let (tx, rx) = oneshot::channel();
        self.shared.send(Op::Redrive(which, tx))?;
        rx.await.map_err(|_| InboxError::Closed)?
    }

    pub(crate) async fn purge(&self, which: Selection) -> Result<u64, InboxError> {
        let (tx, rx) = oneshot::channel();
        self.shared.send(Op::Purge(which, tx))?;
        rx.await.map_err(|_| InboxError::Closed)?
    }

    /// Every live event, waiting or in flight, in id order (for the
    /// command line's `inbox --print`).
    pub(crate) fn snapshot(&self) -> Vec<Arc<StoredEvent>> {
        let queue = self.shared.queue();
        let mut all: Vec<_> = queue.items.values().map(|i| Arc::clone(&i.event)).collect();
        all.sort_by_key(|e| e.id);
        all
    }

    /// Stops the inbox; returns once the writer has committed what it had
    /// and released its storage.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        // Dropping the sender ends the writer thread once it has drained.
        self.shared
            .ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.shared.notify.notify_waiters();
        let writer = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }

    /// Checks the lease and submits `op` made from its deadline; a refused
    /// submission leaves the item as it was.
    fn submit(
        &self,
        id: u64,
        attempt: u32,
        token: u64,
        op: impl FnOnce(&Queue) -> Op,
    ) -> Result<(), InboxError> {
        let mut queue = self.shared.queue();
        let deadline = queue.settle(id, attempt, token)?;
        self.shared.send(op(&queue)).inspect_err(|_| {
            queue.set(id, State::Leased(deadline));
            if let Some(item) = queue.items.get_mut(&id) {
                item.token = Some(token);
            }
        })
    }
}

impl Acknowledge for Engine {
    fn ack(&self, id: u64, attempt: u32, token: u64) -> BoxFuture<'static, Result<(), InboxError>> {
        let (tx, rx) = oneshot::channel();
        let submitted = self.submit(id, attempt, token, |_| Op::Ack(id, tx));
        Box::pin(async move {
            submitted?;
            rx.await.map_err(|_| InboxError::Closed)?
        })
    }

    fn release(
        &self,
        id: u64,
        attempt: u32,
        token: u64,
        reason: String,
    ) -> BoxFuture<'static, Result<Released, InboxError>> {
        let retries = self.shared.retries();
        let (tx, rx) = oneshot::channel();
        let submitted = self.submit(id, attempt, token, |queue| {
            let attempts = queue.items.get(&id).map_or(attempt, |i| i.attempts);
            let after = retries.backoff_after(attempts);
            Op::Release(Release {
                id,
                record: Attempts {
                    attempts,
                    retry_at_ms: now_ms() + after.as_millis() as u64,
                    last_error: Some(reason),
                },
                retry_at: Instant::now() + after,
                after,
                bury: retries.spent(attempts),
                reply: tx,
            })
        });
        Box::pin(async move {
            submitted?;
            rx.await.map_err(|_| InboxError::Closed)?
        })
    }
}

/// Implements [`super::Inbox`] for a type whose `engine` field is a [`Engine`].
macro_rules! inbox_over_engine {
    ($inbox:ty) => {
        impl $crate::inbox::Inbox for $inbox {
            async fn append(
                &self,
                delivery: $crate::inbox::VerifiedDelivery,
            ) -> Result<$crate::inbox::Appended, $crate::inbox::InboxError> {
                self.engine.append(delivery).await
            }

            async fn heartbeat(
                &self,
                target: &$crate::secrets::TargetKey,
                webhook_gid: Option<&str>,
            ) -> Result<(), $crate::inbox::InboxError> {
                self.engine.heartbeat(target, webhook_gid).await
            }

            async fn next(&self) -> Option<$crate::inbox::InboxItem> {
                self.engine.next().await
            }

            async fn next_batch(&self, max: usize) -> Vec<$crate::inbox::InboxItem> {
                self.engine.next_batch(max).await
            }

            async fn stats(&self) -> Result<$crate::inbox::InboxStats, $crate::inbox::InboxError> {
                Ok(self.engine.stats())
            }

            async fn dead_letters(
                &self,
            ) -> Result<Vec<$crate::inbox::DeadLetter>, $crate::inbox::InboxError> {
                Ok(self.engine.dead_letters())
            }

            async fn redrive_dead_letters(
                &self,
                which: $crate::inbox::Selection,
            ) -> Result<u64, $crate::inbox::InboxError> {
                self.engine.redrive(which).await
            }

            async fn purge_dead_letters(
                &self,
                which: $crate::inbox::Selection,
            ) -> Result<u64, $crate::inbox::InboxError> {
                self.engine.purge(which).await
            }

            fn close(&self) {
                self.engine.close();
            }

            async fn check_ready(&self) -> Result<(), $crate::inbox::InboxError> {
                self.ready().await
            }
        }
    };
}
pub(crate) use inbox_over_engine;

/// The one thread that changes the journal.
struct Writer {
    journal: Box<dyn Journal>,
    shared: std::sync::Weak<Shared>,
    seen: HashMap<[u8; 32], u64>,
    seen_order: VecDeque<(u64, [u8; 32])>,
    next_id: u64,
}

/// What to do once a batch is committed (or failed).
enum After {
    Append(oneshot::Sender<Result<Appended, InboxError>>, Appended),
    Done(oneshot::Sender<Result<(), InboxError>>),
    Ack(u64, Instant, oneshot::Sender<Result<(), InboxError>>),
    Release(Release, Instant),
    Bury(u64),
    Redrive(Vec<u64>, oneshot::Sender<Result<u64, InboxError>>),
    Purge(Vec<u64>, oneshot::Sender<Result<u64, InboxError>>),
}

impl Writer {
    fn run(mut self, ops: std::sync::mpsc::Receiver<Op>) {
        // Whatever arrives while a commit is being flushed waits here and
        // goes into the next one: that is the group commit.
        while let Ok(first) = ops.recv() {
            let mut batch = vec![first];
            let mut waited = false;
            loop {
                while batch.len() < MAX_BATCH {
                    match ops.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                let handouts_only = batch.iter().all(|op| matches!(op, Op::HandedOut(_)));
                if handouts_only && !waited && batch.len() < MAX_BATCH {
                    waited = true;
                    if let Ok(op) = ops.recv_timeout(HANDOUT_WAIT) {
                        batch.push(op);
                        continue;
                    }
                }
                break;
            }
            let Some(shared) = self.shared.upgrade() else {
                break;
            };
            self.commit(&shared, batch);
        }
    }

    fn commit(&mut self, shared: &Shared, ops: Vec<Op>) {
        let now = now_ms();
        let horizon = DEDUPE_HORIZON.as_millis() as u64;
        let mut batch = Batch {
            prune_before: now.saturating_sub(horizon),
            ..Batch::default()
        };
        let mut after = Vec::with_capacity(ops.len());
        let mut keys_in_batch = HashSet::new();
        // The last record of each item in this batch, and the dead letters
        // it already moves.
        let mut attempts: BTreeMap<u64, Attempts> = BTreeMap::new();
        let mut dead_moved = HashSet::new();
        let (mut bytes, mut duplicates) = {
            let queue = shared.queue();
            (queue.bytes, queue.duplicates)
        };
        let first_id = self.next_id;
        for op in ops {
            match op {
                Op::Append(delivery, keys, reply) => {
                    // A verified delivery is word from its webhook, like a
                    // heartbeat: what the watch dates a gap's start by.
                    if delivery.source == super::EventSource::Webhook
                        && let Some(gid) = &delivery.webhook_gid
                    {
                        heard(&mut batch.heartbeats, gid, now);
                    }
                    let mut appended = Appended::default();
                    let mut events = Vec::new();
                    let mut new_keys = Vec::new();
                    for (event, key) in delivery.into_stored(now).zip(keys) {
                        if self.seen.contains_key(&key)
                            || keys_in_batch.contains(&key)
                            || new_keys.contains(&key)
                        {
                            appended.duplicates += 1;
                            continue;
                        }
                        new_keys.push(key);
                        events.push(event);
                    }
                    let size: u64 = events.iter().map(StoredEvent::size).sum();
                    if size > 0 && bytes + size > shared.max_bytes {
                        // All of the delivery or none of it.
                        let _ = reply.send(Err(InboxError::Full {
                            waiting: bytes,
                            limit: shared.max_bytes,
                            unit: super::LimitUnit::Bytes,
                        }));
                        continue;
                    }
                    bytes += size;
                    duplicates += appended.duplicates as u64;
                    appended.added = events.len();
                    for mut event in events {
                        event.id = self.next_id;
                        self.next_id += 1;
                        batch.appends.push(event);
                    }
                    for key in new_keys {
                        keys_in_batch.insert(key);
                        batch.seen.push((now, key));
                    }
                    after.push(After::Append(reply, appended));
                }
                Op::Heartbeat(gid, reply) => {
                    heard(&mut batch.heartbeats, &gid, now);
                    after.push(After::Done(reply));
                }
                Op::Probe(reply) => after.push(After::Done(reply)),
                Op::HandedOut(handed) => attempts.extend(handed),
                Op::Ack(id, reply) => {
                    attempts.remove(&id);
                    batch.acks.push(id);
                    after.push(After::Ack(id, settling_deadline(shared, id), reply));
                }
                Op::Release(release) => {
                    let deadline = settling_deadline(shared, release.id);
                    if release.bury {
                        attempts.remove(&release.id);
                        if let Some(record) =
                            dead_record(shared, release.id, release.record.clone(), now)
                        {
                            batch.buried.push(record);
                        }
                    } else {
                        attempts.insert(release.id, release.record.clone());
                    }
                    after.push(After::Release(release, deadline));
                }
                Op::Bury(ids) => {
                    for id in ids {
                        attempts.remove(&id);
                        let record = shared.queue().items.get(&id).map(|item| Attempts {
                            attempts: item.attempts,
                            retry_at_ms: 0,
                            last_error: item.last_error.clone(),
                        });
                        if let Some(record) = record.and_then(|r| dead_record(shared, id, r, now)) {
                            batch.buried.push(record);
                            after.push(After::Bury(id));
                        }
                    }
                }
                Op::Redrive(which, reply) => {
                    let queue = shared.queue();
                    let ids: Vec<u64> = queue
                        .dead
                        .keys()
                        .copied()
                        .filter(|id| which.contains(*id) && dead_moved.insert(*id))
                        .collect();
                    batch
                        .revived
                        .extend(ids.iter().map(|id| Arc::clone(&queue.dead[id].event)));
                    after.push(After::Redrive(ids, reply));
                }
                Op::Purge(which, reply) => {
                    let queue = shared.queue();
                    let ids: Vec<u64> = queue
                        .dead
                        .keys()
                        .copied()
                        .filter(|id| which.contains(*id) && dead_moved.insert(*id))
                        .collect();
                    batch.purged.extend(&ids);
                    after.push(After::Purge(ids, reply));
                }
            }
        }
        batch.attempts = attempts.into_iter().collect();
        batch.duplicates = duplicates;
        batch.next_id = self.next_id;
        if after.is_empty() && batch.attempts.is_empty() {
            return;
        }
        let committed = self.journal.commit(&batch);
        if let Err(e) = &committed {
            // Nothing of the batch happened: say so to everyone in it.
            self.next_id = first_id;
            tracing::error!(error = %e, "inbox commit failed");
        } else {
            self.remember(&batch);
        }
        self.apply(shared, batch, after, committed);
    }

    /// Keeps the committed dedupe keys, forgetting those past the horizon.
    fn remember(&mut self, batch: &Batch) {
        for (ms, key) in &batch.seen {
            self.seen.insert(*key, *ms);
            self.seen_order.push_back((*ms, *key));
        }
        while let Some((ms, key)) = self.seen_order.front().copied() {
            if ms >= batch.prune_before {
                break;
            }
            self.seen_order.pop_front();
            if self.seen.get(&key) == Some(&ms) {
                self.seen.remove(&key);
            }
        }
    }

    /// Brings the queue in step with a committed batch, or puts back what
    /// a failed one would have changed, and answers everyone in it.
    fn apply(
        &self,
        shared: &Shared,
        batch: Batch,
        after: Vec<After>,
        committed: Result<(), InboxError>,
    ) {
        let failure = committed.err().map(|e| match e {
            InboxError::Storage { location, message } => (location, message),
            other => ("inbox".to_string(), other.to_string()),
        });
        fn outcome<T>(failure: &Option<(String, String)>, value: T) -> Result<T, InboxError> {
            match failure {
                None => Ok(value),
                Some((location, message)) => Err(InboxError::Storage {
                    location: location.clone(),
                    message: message.clone(),
                }),
            }
        }
        let ok = failure.is_none();
        let retries = shared.retries();
        let mut buried: HashMap<u64, DeadRecord> =
            batch.buried.into_iter().map(|r| (r.event.id, r)).collect();
        let mut replies = Vec::with_capacity(after.len());
        {
            let mut queue = shared.queue();
            let now = Instant::now();
            if ok {
                queue.duplicates = batch.duplicates;
                for event in batch.appends {
                    queue.insert(Arc::new(event), Attempts::default(), now);
                }
                for (gid, ms) in batch.heartbeats {
                    queue.heartbeats.insert(gid, ms);
                }
            }
            for step in after {
                match step {
                    After::Append(tx, appended) => {
                        replies.push(Reply::Appended(tx, outcome(&failure, appended)));
                    }
                    After::Done(tx) => replies.push(Reply::Done(tx, outcome(&failure, ()))),
                    After::Ack(id, deadline, tx) => {
                        if ok {
                            queue.remove(id);
                        } else {
                            queue.set(id, State::Leased(deadline));
                        }
                        replies.push(Reply::Done(tx, outcome(&failure, ())));
                    }
                    After::Release(release, deadline) => {
                        let id = release.id;
                        let outcome = if !ok {
                            queue.set(id, State::Leased(deadline));
                            outcome(&failure, Released::DeadLettered)
                        } else if let Some(record) = buried.remove(&id).filter(|_| release.bury) {
                            queue.bury(record);
                            Ok(Released::DeadLettered)
                        } else {
                            if let Some(item) = queue.items.get_mut(&id) {
                                item.last_error = release.record.last_error;
                            }
                            queue.set(id, State::Backoff(release.retry_at));
                            Ok(Released::Retrying {
                                after: release.after,
                            })
                        };
                        replies.push(Reply::Released(release.reply, outcome));
                    }
                    After::Bury(id) => match buried.remove(&id).filter(|_| ok) {
                        Some(record) => queue.bury(record),
                        // Tried again later, not in a loop on a failing disk.
                        None => queue.set(id, State::Backoff(now + retries.first_backoff())),
                    },
                    After::Redrive(ids, tx) => {
                        if ok {
                            for id in &ids {
                                if let Some(dead) = queue.dead.remove(id) {
                                    queue.insert(dead.event, Attempts::default(), now);
                                }
                            }
                        }
                        replies.push(Reply::Count(tx, outcome(&failure, ids.len() as u64)));
                    }
                    After::Purge(ids, tx) => {
                        if ok {
                            for id in &ids {
                                queue.dead.remove(id);
                            }
                        }
                        replies.push(Reply::Count(tx, outcome(&failure, ids.len() as u64)));
                    }
                }
            }
        }
        shared.notify.notify_waiters();
        for reply in replies {
            reply.send();
        }
    }
}

/// An answer owed, sent once the queue is in step.
enum Reply {
    Appended(
        oneshot::Sender<Result<Appended, InboxError>>,
        Result<Appended, InboxError>,
    ),
    Done(
        oneshot::Sender<Result<(), InboxError>>,
        Result<(), InboxError>,
    ),
    Released(
        oneshot::Sender<Result<Released, InboxError>>,
        Result<Released, InboxError>,
    ),
    Count(
        oneshot::Sender<Result<u64, InboxError>>,
        Result<u64, InboxError>,
    ),
}

impl Reply {
    fn send(self) {
        // A caller that stopped waiting does not need the answer.
        let _ = match self {
            Self::Appended(tx, r) => tx.send(r).map_err(drop),
            Self::Done(tx, r) => tx.send(r).map_err(drop),
            Self::Released(tx, r) => tx.send(r).map_err(drop),
            Self::Count(tx, r) => tx.send(r).map_err(drop),
        };
    }
}

/// The lease deadline a settling item goes back to should its commit fail.
fn settling_deadline(shared: &Shared, id: u64) -> Instant {
    match shared.queue().items.get(&id).map(|i| i.state) {
        Some(State::Settling(deadline)) => deadline,
        _ => Instant::now(),
    }
}

/// The dead letter a live item becomes.
fn dead_record(shared: &Shared, id: u64, record: Attempts, now_ms: u64) -> Option<DeadRecord> {
    let queue = shared.queue();
    let item = queue.items.get(&id)?;
    Some(DeadRecord {
        event: Arc::clone(&item.event),
        attempts: record.attempts,
        last_error: record.last_error,
        dead_at_ms: now_ms,
    })
}

/// Records that `gid` was heard from at `now`, once per webhook and batch:
/// a burst of deliveries writes one row per webhook, not one per delivery.
fn heard(heartbeats: &mut Vec<(String, u64)>, gid: &str, now: u64) {
    match heartbeats.iter_mut().find(|(g, _)| g == gid) {
        Some(entry) => entry.1 = entry.1.max(now),
        None => heartbeats.push((gid.to_string(), now)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::value::RawValue;

    /// A journal kept in memory that can be told to fail, standing in for
    /// a failing disk.
    #[derive(Clone, Default)]
    pub(crate) struct FlakyJournal {
        pub(crate) fail: Arc<AtomicBool>,
        pub(crate) commits: Arc<std::sync::atomic::AtomicUsize>,
        /// How long a commit takes, like an fsync.
        pub(crate) delay: Duration,
    }

    impl Journal for FlakyJournal {
        fn load(&mut self) -> Result<Loaded, InboxError> {
            Ok(Loaded::default())
        }
        fn commit(&mut self, _batch: &Batch) -> Result<(), InboxError> {
            self.commits.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.delay);
            if self.fail.load(Ordering::SeqCst) {
                return Err(InboxError::Storage {
                    location: "flaky".into(),
                    message: "disk on fire".into(),
                });
            }
            Ok(())
        }
    }

    pub(crate) fn delivery(events: &[&str]) -> VerifiedDelivery {
        VerifiedDelivery {
            target: TargetKey::from_path_and_query("/t"),
            webhook_gid: Some("1".into()),
            source: super::super::EventSource::Webhook,
            resource: None,
            events: events
                .iter()
                .map(|e| RawValue::from_string(e.to_string()).unwrap())
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_failing_journal_commits_nothing_and_says_so() {
        let journal = FlakyJournal::default();
        let inbox =
            Engine::start(Box::new(journal.clone()), Duration::from_secs(60), 1 << 20).unwrap();
        journal.fail.store(true, Ordering::SeqCst);
        let err = inbox.append(delivery(&[r#"{"a":1}"#])).await.unwrap_err();
        assert!(matches!(err, InboxError::Storage { .. }), "{err}");
        assert_eq!(
            inbox.stats().waiting,
            0,
            "nothing that failed to commit is handed out"
        );
        // Once the disk recovers, the same delivery (Asana's retry) is taken,
        // not mistaken for a duplicate of the failed attempt.
        journal.fail.store(false, Ordering::SeqCst);
        let appended = inbox.append(delivery(&[r#"{"a":1}"#])).await.unwrap();
        assert_eq!(
            appended,
            Appended {
                added: 1,
                duplicates: 0
            }
        );
    }

    #[tokio::test]
    async fn concurrent_appends_share_commits() {
        let journal = FlakyJournal {
            delay: Duration::from_millis(5),
            ..FlakyJournal::default()
        };
        let inbox =
            Engine::start(Box::new(journal.clone()), Duration::from_secs(60), 1 << 30).unwrap();
        let appends = (0..200).map(|n| {
            let inbox = inbox.clone();
            async move { inbox.append(delivery(&[&format!(r#"{{"n":{n}}}"#)])).await }
        });
        for result in futures::future::join_all(appends).await {
            assert_eq!(result.unwrap().added, 1);
        }
        let commits = journal.commits.load(Ordering::SeqCst);
        assert_eq!(inbox.stats().waiting, 200);
        // One commit per delivery would be 200 commits of 5 ms each.
        assert!(commits < 50, "200 deliveries took {commits} commits");
    }

    #[tokio::test]
    async fn acknowledgements_made_together_share_commits() {
        let journal = FlakyJournal {
            delay: Duration::from_millis(5),
            ..FlakyJournal::default()
        };
        let inbox =
            Engine::start(Box::new(journal.clone()), Duration::from_secs(60), 1 << 30).unwrap();
        let events: Vec<String> = (0..200).map(|n| format!(r#"{{"n":{n}}}"#)).collect();
        let events: Vec<&str> = events.iter().map(String::as_str).collect();
        inbox.append(delivery(&events)).await.unwrap();
        let items = inbox.next_batch(500).await;
        assert_eq!(items.len(), 200, "one batch takes what is there");
        let before = journal.commits.load(Ordering::SeqCst);
        for result in futures::future::join_all(items.into_iter().map(InboxItem::ack)).await {
            result.unwrap();
        }
        let commits = journal.commits.load(Ordering::SeqCst) - before;
        assert!(commits < 10, "200 acknowledgements took {commits} commits");
        let stats = inbox.stats();
        assert_eq!((stats.waiting, stats.in_flight), (0, 0));
    }

    #[tokio::test]
    async fn an_acknowledgement_that_fails_to_commit_leaves_the_item_leased() {
        let journal = FlakyJournal::default();
        let inbox = Engine::start(
            Box::new(journal.clone()),
            Duration::from_millis(100),
            1 << 20,
        )
        .unwrap();
        inbox.append(delivery(&[r#"{"a":1}"#])).await.unwrap();
        let item = inbox.next().await.unwrap();
        journal.fail.store(true, Ordering::SeqCst);
        let err = item.ack().await.unwrap_err();
        assert!(matches!(err, InboxError::Storage { .. }), "{err}");
        journal.fail.store(false, Ordering::SeqCst);
        assert_eq!(inbox.stats().in_flight, 1, "still leased, not lost");
        let again = tokio::time::timeout(Duration::from_secs(5), inbox.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            again.attempt(),
            2,
            "handed out again once the lease ran out"
        );
        again.ack().await.unwrap();
    }
}
