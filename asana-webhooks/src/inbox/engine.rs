//! The inbox engine shared by the memory and file inboxes: leases and the
//! queue of waiting events live in memory, and every change goes through
//! one writer thread that commits whole batches to a [`Journal`] (group
//! commit) before anyone is told it happened.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::{
    Acknowledge, Appended, DEDUPE_HORIZON, InboxError, InboxItem, InboxStats, StoredEvent,
    VerifiedDelivery, dedupe_key, now_ms,
};
use crate::secrets::TargetKey;

/// What a journal holds when it is opened.
#[derive(Default)]
pub(crate) struct Loaded {
    pub(crate) events: Vec<StoredEvent>,
    pub(crate) seen: Vec<(u64, [u8; 32])>,
    pub(crate) duplicates: u64,
    pub(crate) next_id: u64,
    pub(crate) heartbeats: Vec<(String, u64)>,
}

/// One commit: everything in it becomes durable together, or nothing does.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) appends: Vec<StoredEvent>,
    pub(crate) seen: Vec<(u64, [u8; 32])>,
    pub(crate) acks: Vec<u64>,
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
    Ack(u64, oneshot::Sender<Result<(), InboxError>>),
    Heartbeat(String, oneshot::Sender<Result<(), InboxError>>),
}

struct Lease {
    event: Arc<StoredEvent>,
    deadline: Instant,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Arc<StoredEvent>>,
    leased: HashMap<u64, Lease>,
    attempts: HashMap<u64, u32>,
    bytes: u64,
    duplicates: u64,
    heartbeats: BTreeMap<String, u64>,
}

struct Shared {
    queue: Mutex<Queue>,
    notify: Notify,
    closed: AtomicBool,
    lease: Duration,
    max_bytes: u64,
    ops: Mutex<Option<std::sync::mpsc::Sender<Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
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
        for event in loaded.events {
            queue.bytes += event.size();
            queue.ready.push_back(Arc::new(event));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            lease,
            max_bytes,
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

    pub(crate) async fn append(&self, delivery: VerifiedDelivery) -> Result<Appended, InboxError> {
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(InboxError::Closed);
        }
        let keys = delivery
            .events
            .iter()
            .map(|e| dedupe_key(&delivery.target, delivery.webhook_gid.as_deref(), e))
            .collect();
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

    pub(crate) async fn next(&self) -> Option<InboxItem> {
        loop {
            let notified = self.shared.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                if self.shared.closed.load(Ordering::SeqCst) {
                    return None;
                }
                let mut queue = self.shared.queue();
                let now = Instant::now();
                let expired: Vec<u64> = queue
                    .leased
                    .iter()
                    .filter(|(_, lease)| lease.deadline <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in expired {
                    if let Some(lease) = queue.leased.remove(&id) {
                        queue.ready.push_front(lease.event);
                    }
                }
                if let Some(event) = queue.ready.pop_front() {
                    let attempt = {
                        let count = queue.attempts.entry(event.id).or_insert(0);
                        *count += 1;
                        *count
                    };
                    queue.leased.insert(
                        event.id,
                        Lease {
                            event: Arc::clone(&event),
                            deadline: now + self.shared.lease,
                        },
                    );
                    return Some(InboxItem {
                        stored: event,
                        attempt,
                        acker: Arc::new(self.clone()),
                    });
                }
                queue.leased.values().map(|l| l.deadline).min()
            };
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
            waiting: queue.ready.len(),
            in_flight: queue.leased.len(),
            bytes: queue.bytes,
            duplicates_dropped: queue.duplicates,
            ..InboxStats::default()
        };
        let all = queue
            .ready
            .iter()
            .chain(queue.leased.values().map(|l| &l.event));
        let mut oldest = None::<u64>;
        for event in all {
            oldest = Some(oldest.map_or(event.received_at_ms, |o| o.min(event.received_at_ms)));
            *stats
                .per_webhook
                .entry(event.webhook_gid.clone().unwrap_or_else(|| "-".into()))
                .or_default() += 1;
        }
        stats.oldest = oldest.and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64));
        stats.last_heartbeats = queue
            .heartbeats
            .iter()
            .filter_map(|(gid, ms)| {
                chrono::DateTime::from_timestamp_millis(*ms as i64).map(|t| (gid.clone(), t))
            })
            .collect();
        stats
    }

    /// Every stored event, waiting or in flight, in id order (for the
    /// command line's `inbox --print`).
    pub(crate) fn snapshot(&self) -> Vec<Arc<StoredEvent>> {
        let queue = self.shared.queue();
        let mut all: Vec<_> = queue
            .ready
            .iter()
            .cloned()
            .chain(queue.leased.values().map(|l| Arc::clone(&l.event)))
            .collect();
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
}

impl Acknowledge for Engine {
    fn ack(&self, id: u64) -> Pin<Box<dyn Future<Output = Result<(), InboxError>> + Send + '_>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.shared.send(Op::Ack(id, tx))?;
            rx.await.map_err(|_| InboxError::Closed)?
        })
    }

    fn release(&self, id: u64) {
        let mut queue = self.shared.queue();
        if let Some(lease) = queue.leased.remove(&id) {
            queue.ready.push_front(lease.event);
            drop(queue);
            self.shared.notify.notify_waiters();
        }
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

            async fn stats(&self) -> Result<$crate::inbox::InboxStats, $crate::inbox::InboxError> {
                Ok(self.engine.stats())
            }

            fn close(&self) {
                self.engine.close();
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

/// Replies owed once a batch is committed.
enum Reply {
    Append(oneshot::Sender<Result<Appended, InboxError>>, Appended),
    Done(oneshot::Sender<Result<(), InboxError>>),
}

impl Writer {
    fn run(mut self, ops: std::sync::mpsc::Receiver<Op>) {
        // Whatever arrives while a commit is being flushed waits here and
        // goes into the next one: that is the group commit.
        while let Ok(first) = ops.recv() {
            let mut batch = vec![first];
            while batch.len() < 4096 {
                match ops.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
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
        let mut replies = Vec::with_capacity(ops.len());
        let mut keys_in_batch = HashSet::new();
        let (mut bytes, mut duplicates) = {
            let queue = shared.queue();
            (queue.bytes, queue.duplicates)
        };
        let first_id = self.next_id;
        let mut acked = Vec::new();
        for op in ops {
            match op {
                Op::Append(delivery, keys, reply) => {
                    let mut appended = Appended::default();
                    let mut events = Vec::new();
                    let mut new_keys = Vec::new();
                    for (event, key) in delivery.events.into_iter().zip(keys) {
                        if self.seen.contains_key(&key)
                            || keys_in_batch.contains(&key)
                            || new_keys.contains(&key)
                        {
                            appended.duplicates += 1;
                            continue;
                        }
                        new_keys.push(key);
                        events.push(StoredEvent {
                            id: 0,
                            target: delivery.target.clone(),
                            webhook_gid: delivery.webhook_gid.clone(),
                            received_at_ms: now,
                            event,
                        });
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
                    replies.push(Reply::Append(reply, appended));
                }
                Op::Ack(id, reply) => {
                    batch.acks.push(id);
                    acked.push(id);
                    replies.push(Reply::Done(reply));
                }
                Op::Heartbeat(gid, reply) => {
                    batch.heartbeats.push((gid, now));
                    replies.push(Reply::Done(reply));
                }
            }
        }
        batch.duplicates = duplicates;
        batch.next_id = self.next_id;
        if replies.is_empty() {
            return;
        }
        if let Err(e) = self.journal.commit(&batch) {
            // Nothing of the batch happened: say so to everyone in it.
            self.next_id = first_id;
            tracing::error!(error = %e, "inbox commit failed");
            for reply in replies {
                let error = || match &e {
                    InboxError::Storage { location, message } => InboxError::Storage {
                        location: location.clone(),
                        message: message.clone(),
                    },
                    other => InboxError::Storage {
                        location: "inbox".into(),
                        message: other.to_string(),
                    },
                };
                match reply {
                    Reply::Append(tx, _) => {
                        let _ = tx.send(Err(error()));
                    }
                    Reply::Done(tx) => {
                        let _ = tx.send(Err(error()));
                    }
                }
            }
            return;
        }
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
        {
            let mut queue = shared.queue();
            queue.duplicates = duplicates;
            for event in batch.appends {
                queue.bytes += event.size();
                queue.ready.push_back(Arc::new(event));
            }
            for id in acked {
                let removed = match queue.leased.remove(&id) {
                    Some(lease) => Some(lease.event),
                    None => queue
                        .ready
                        .iter()
                        .position(|e| e.id == id)
                        .and_then(|i| queue.ready.remove(i)),
                };
                if let Some(event) = removed {
                    queue.bytes = queue.bytes.saturating_sub(event.size());
                }
                queue.attempts.remove(&id);
            }
            for (gid, ms) in batch.heartbeats {
                queue.heartbeats.insert(gid, ms);
            }
        }
        shared.notify.notify_waiters();
        for reply in replies {
            match reply {
                Reply::Append(tx, appended) => {
                    let _ = tx.send(Ok(appended));
                }
                Reply::Done(tx) => {
                    let _ = tx.send(Ok(()));
                }
            }
        }
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
}
