//! [`Inbox`] in PostgreSQL.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::inbox::{
    Acknowledge, Appended, BoxFuture, DEDUPE_HORIZON, DEFAULT_LEASE, DeadLetter, EventSource,
    Inbox, InboxError, InboxItem, InboxStats, LimitUnit, Released, Retries, Selection, StoredEvent,
    VerifiedDelivery,
};
use crate::secrets::TargetKey;

const CHANNEL: &str = "asana_webhooks_inbox";

/// How heartbeats and statistics name a webhook whose gid is unknown.
const UNKNOWN_WEBHOOK: &str = "-";

/// How long a waiting consumer sleeps before it looks again when no
/// notification came (a lost notification, or a lease that expired).
const POLL: Duration = Duration::from_millis(500);

/// The default largest number of events waiting in the database.
pub const DEFAULT_MAX_EVENTS: i64 = 1_000_000;

/// An [`Inbox`] in PostgreSQL, shared by every receiver instance.
///
/// Each delivery is committed in one transaction before the receiver
/// answers (PostgreSQL flushes concurrent commits together); consumers on
/// any instance claim events with `FOR UPDATE SKIP LOCKED` and a lease, so
/// an event held by an instance that dies is handed out elsewhere when its
/// lease expires. Each claim stores a random lease token with the lease,
/// and an acknowledgement or release must bring it back, so that a
/// consumer whose lease expired cannot touch an event another one holds.
/// Acknowledgements made together are deleted in one statement. A failed
/// attempt puts the event's lease off by its backoff; an event spent on
/// its attempts moves to `asana_webhooks_dead_letters`. `LISTEN/NOTIFY`
/// wakes waiting consumers. Repeats are recognised for [`DEDUPE_HORIZON`]
/// by a unique key. Its size limit counts events ([`InboxError::Full`] in
/// [`LimitUnit::Events`]; dead letters do not count). Run
/// [`super::migrate`] first.
#[derive(Clone)]
pub struct PostgresInbox {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Connections whose commits do not wait for the disk: for leases and
    /// acknowledgements, which a crash may only undo into a redelivery.
    relaxed: Pool,
    lease: Duration,
    max_events: i64,
    wake: Arc<Notify>,
    /// Asks the notifier task to NOTIFY the other instances.
    kick: Arc<Notify>,
    closed: AtomicBool,
    appends: AtomicU64,
    /// The number of stored events as last counted, and when (ms).
    counted: AtomicI64,
    counted_at: AtomicU64,
    /// Deliveries waiting for the next group commit.
    batches: tokio::sync::mpsc::Sender<Waiting>,
    /// Acknowledgements waiting for the next batched delete.
    acks: mpsc::UnboundedSender<Acking>,
    retries: Mutex<Retries>,
}

/// An acknowledgement waiting to be committed, and whom to tell.
struct Acking {
    id: i64,
    token: i64,
    attempt: u32,
    reply: oneshot::Sender<Result<(), InboxError>>,
}

/// Deletes acknowledged events whose lease token is still theirs; `$1` the
/// ids, `$2` the tokens.
const ACK: &str = "DELETE FROM asana_webhooks_inbox i
    USING unnest($1::int8[], $2::int8[]) AS a(id, token)
    WHERE i.id = a.id AND i.lease_token = a.token
    RETURNING i.id";

/// Deletes the acknowledgements that arrive while the previous delete runs
/// in one statement (one commit for them all); each is answered after it,
/// refused when its lease token is no longer the event's.
async fn commit_acks(pool: Pool, mut waiting: mpsc::UnboundedReceiver<Acking>) {
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let ids: Vec<i64> = batch.iter().map(|a| a.id).collect();
        let tokens: Vec<i64> = batch.iter().map(|a| a.token).collect();
        let deleted = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            let statement = client
                .prepare_cached(ACK)
                .await
                .map_err(|e| e.to_string())?;
            let rows = client
                .query(&statement, &[&ids, &tokens])
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(
                rows.iter()
                    .map(|r| r.get::<_, i64>(0))
                    .collect::<HashSet<_>>(),
            )
        }
        .await;
        if let Err(e) = &deleted {
            tracing::error!(error = %e, acknowledgements = batch.len(), "inbox acknowledgements failed");
        }
        for acking in batch {
            let answer = match &deleted {
                Ok(deleted) if deleted.contains(&acking.id) => Ok(()),
                Ok(_) => Err(InboxError::LeaseLost {
                    id: acking.id as u64,
                    attempt: acking.attempt,
                }),
                Err(e) => Err(storage(e)),
            };
            let _ = acking.reply.send(answer);
        }
    }
}

/// A delivery waiting to be committed, and whom to tell.
struct Waiting {
    delivery: VerifiedDelivery,
    reply: tokio::sync::oneshot::Sender<Result<Appended, InboxError>>,
}

/// Commits the deliveries that arrive while the previous commit is being
/// flushed in one statement, so one WAL flush serves them all (group
/// commit); each is answered only after the commit that holds it.
async fn commit_batches(pool: Pool, mut waiting: tokio::sync::mpsc::Receiver<Waiting>) {
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match commit(&pool, &batch).await {
            Ok(results) => {
                for (waiting, appended) in batch.into_iter().zip(results) {
                    let _ = waiting.reply.send(Ok(appended));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, deliveries = batch.len(), "inbox commit failed");
                for waiting in batch {
                    let _ = waiting.reply.send(Err(storage(&e)));
                }
            }
        }
    }
}

/// One statement, so one atomic commit: the keys not seen before are
/// recorded and their events stored, in arrival order; returns what each
/// delivery added.
async fn commit(pool: &Pool, batch: &[Waiting]) -> Result<Vec<Appended>, String> {
    let mut results = vec![Appended::default(); batch.len()];
    let mut seen = std::collections::HashSet::new();
    let (mut index, mut targets, mut gids, mut keys, mut events) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut sources, mut resources) = (Vec::new(), Vec::new());
    for (d, waiting) in batch.iter().enumerate() {
        let delivery = &waiting.delivery;
        for (event, key) in delivery.events.iter().zip(delivery.keys()) {
            if !seen.insert(key) {
                results[d].duplicates += 1;
                continue;
            }
            index.push(d as i32);
            targets.push(delivery.target.as_str());
            gids.push(delivery.webhook_gid.as_deref());
            sources.push(delivery.source.as_str());
            resources.push(delivery.resource.as_deref());
            keys.push(key);
            events.push(event.get());
        }
    }
    let key_slices: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "WITH incoming AS (
                 SELECT * FROM unnest($1::int4[], $2::text[], $3::text[], $4::bytea[], $5::text[],
                                      $6::text[], $7::text[])
                     WITH ORDINALITY AS t(d, target, gid, key, event, source, resource, n)),
             fresh AS (
                 INSERT INTO asana_webhooks_seen (key) SELECT key FROM incoming
                 ON CONFLICT DO NOTHING RETURNING key),
             added AS (
                 INSERT INTO asana_webhooks_inbox (target, webhook_gid, event, source, resource)
                 SELECT i.target, i.gid, i.event, i.source, i.resource
                 FROM incoming i JOIN fresh f ON f.key = i.key
                 ORDER BY i.n RETURNING 1),
             heard AS (
                 INSERT INTO asana_webhooks_heartbeats (webhook, at)
                 SELECT DISTINCT gid, now() FROM incoming WHERE gid IS NOT NULL AND source = 'webhook'
                 ON CONFLICT (webhook) DO UPDATE SET at = now() RETURNING 1)
             SELECT i.d, count(*) FROM incoming i JOIN fresh f ON f.key = i.key GROUP BY i.d",
            &[
                &index,
                &targets,
                &gids,
                &key_slices,
                &events,
                &sources,
                &resources,
            ],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut offered = vec![0usize; batch.len()];
    for d in &index {
        offered[*d as usize] += 1;
    }
    for row in rows {
        let d = row.get::<_, i32>(0) as usize;
        results[d].added = row.get::<_, i64>(1) as usize;
    }
    let mut duplicates = 0;
    for (d, result) in results.iter_mut().enumerate() {
        result.duplicates += offered[d] - result.added;
        duplicates += result.duplicates;
    }
    if duplicates > 0 {
        // Statistics only, after the commit that matters: a failure here
        // must not turn committed deliveries into refused ones.
        if let Err(e) = client
            .execute(
                "INSERT INTO asana_webhooks_counters (name, value) VALUES ('duplicates', $1)
                 ON CONFLICT (name) DO UPDATE SET value = asana_webhooks_counters.value + $1",
                &[&(duplicates as i64)],
            )
            .await
        {
            tracing::warn!(error = %e, "could not count dropped repeats");
        }
    }
    Ok(results)
}

/// How long a count of stored events is trusted for the size limit.
const COUNT_TTL_MS: u64 = 200;

impl std::fmt::Debug for PostgresInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresInbox")
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

fn storage(e: impl std::fmt::Display) -> InboxError {
    InboxError::Storage {
        location: "postgresql".into(),
        message: e.to_string(),
    }
}

impl PostgresInbox {
    /// An inbox over `pool`, listening for new events on its own
    /// connection to `url`, with the default lease and size limit.
    pub fn new(pool: Pool, url: &str) -> Result<Self, InboxError> {
        Self::with_limits(pool, url, DEFAULT_LEASE, DEFAULT_MAX_EVENTS)
    }

    /// Like [`new`](Self::new), with the lease of handed-out events and the
    /// most events that may wait (beyond, the receiver answers 503).
    pub fn with_limits(
        pool: Pool,
        url: &str,
        lease: Duration,
        max_events: i64,
    ) -> Result<Self, InboxError> {
        // Every connection keeps the URL's options; commits have their own pool.
        let config = super::session_config(url, super::PoolOptions::default().create_timeout)
            .map_err(storage)?;
        let relaxed = super::relaxed_pool(url, &pool).map_err(storage)?;
        let commits = super::commit_pool(url, &pool).map_err(storage)?;
        let wake = Arc::new(Notify::new());
        let kick = Arc::new(Notify::new());
        tokio::spawn(listen(config, Arc::downgrade(&wake)));
        tokio::spawn(notify_others(pool.clone(), Arc::downgrade(&kick)));
        let (batches, waiting) = tokio::sync::mpsc::channel(4096);
        tokio::spawn(commit_batches(commits, waiting));
        // Acknowledgements go on the relaxed pool: one lost in a crash only
        // hands its event out again (at least once).
        let (acks, acking) = mpsc::unbounded_channel();
        tokio::spawn(commit_acks(relaxed.clone(), acking));
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                relaxed,
                lease,
                max_events,
                wake,
                kick,
                closed: AtomicBool::new(false),
                appends: AtomicU64::new(0),
                counted: AtomicI64::new(0),
                counted_at: AtomicU64::new(0),
                batches,
                acks,
                retries: Mutex::new(Retries::default()),
            }),
        })
    }

    /// Retries failed events as `retries` says (by default
    /// [`Retries::default`]), for this inbox and every clone of it. Give
    /// every instance sharing the database the same: each applies its own
    /// to the events it hands out.
    pub fn with_retries(self, retries: Retries) -> Self {
        *self.inner.retries.lock().unwrap_or_else(|p| p.into_inner()) = retries;
        self
    }

    fn retries(&self) -> Retries {
        *self.inner.retries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The number of stored events, counted at most every 200 ms: the size
    /// limit is approximate by what arrives in that time.
    async fn stored_count(&self, client: &deadpool_postgres::Object) -> Result<i64, InboxError> {
        let now = crate::inbox::now_ms();
        if now.saturating_sub(self.inner.counted_at.load(Ordering::Relaxed)) < COUNT_TTL_MS {
            return Ok(self.inner.counted.load(Ordering::Relaxed));
        }
        let count: i64 = client
            .query_one("SELECT count(*) FROM asana_webhooks_inbox", &[])
            .await
            .map_err(storage)?
            .get(0);
        self.inner.counted.store(count, Ordering::Relaxed);
        self.inner.counted_at.store(now, Ordering::Relaxed);
        Ok(count)
    }

    /// Claims up to `max` claimable events under one lease token, moving
    /// those spent on their attempts to the dead letters instead; returns
    /// the claimed ones and whether any was moved.
    async fn claim(&self, max: usize) -> Result<(Vec<InboxItem>, bool), InboxError> {
        let client = self.inner.relaxed.get().await.map_err(storage)?;
        let token = fastrand::i64(..);
        let max_attempts = self.retries().max_attempts().min(i32::MAX as u32) as i32;
        // Prepared once per connection rather than parsed and planned per claim.
        let statement = client.prepare_cached(CLAIM).await.map_err(storage)?;
        let rows = client
            .query(
                &statement,
                &[
                    &(max.max(1) as i64),
                    &max_attempts,
                    &self.inner.lease.as_secs_f64(),
                    &token,
                ],
            )
            .await
            .map_err(storage)?;
        // Every row carries the same two counts.
        if let Some(first) = rows.first() {
            crate::metrics::dead_lettered(first.get::<_, i64>(6) as u64);
            crate::metrics::lease_expired(first.get::<_, i64>(9) as u64);
        }
        let mut buried = false;
        let mut items = Vec::with_capacity(rows.len());
        let acker: Arc<dyn Acknowledge> = Arc::new(self.clone());
        for row in rows {
            buried |= row.get::<_, i64>(6) > 0;
            let Some(id) = row.get::<_, Option<i64>>(0) else {
                continue;
            };
            let event: String = row.get(4);
            let stored = StoredEvent {
                id: id as u64,
                target: TargetKey::from_path_and_query(row.get::<_, &str>(1)),
                webhook_gid: row.get(2),
                source: source(row.get(7)),
                resource: row.get(8),
                received_at_ms: row.get::<_, i64>(3) as u64,
                event: RawValue::from_string(event).map_err(storage)?,
            };
            items.push(InboxItem::new(
                Arc::new(stored),
                row.get::<_, i32>(5) as u32,
                token as u64,
                self.inner.lease,
                Arc::clone(&acker),
            ));
        }
        Ok((items, buried))
    }
}

/// Claims up to `$1` claimable events, oldest first, under the lease token
/// `$4` for `$3` seconds; those already handed out `$2` times move to the
/// dead letters instead. One row per claimed event (or one without an
/// event when none was claimed), each with how many moved and how many of
/// those picked had a lease that expired (a token still set: a backoff
/// after a release has none).
const CLAIM: &str = "WITH picked AS (
        SELECT id, lease_token IS NOT NULL AS expired FROM asana_webhooks_inbox
        WHERE leased_until IS NULL OR leased_until < now()
        ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED),
    spent AS (
        DELETE FROM asana_webhooks_inbox i USING picked p
        WHERE i.id = p.id AND i.attempts >= $2
        RETURNING i.id, i.target, i.webhook_gid, i.received_at, i.event, i.attempts, i.last_error,
            i.source, i.resource),
    buried AS (
        INSERT INTO asana_webhooks_dead_letters
            (id, target, webhook_gid, received_at, event, attempts, last_error, source, resource)
        SELECT * FROM spent RETURNING 1),
    claimed AS (
        UPDATE asana_webhooks_inbox i
        SET leased_until = now() + make_interval(secs => $3),
            attempts = i.attempts + 1, lease_token = $4
        FROM picked p WHERE i.id = p.id AND i.attempts < $2
        RETURNING i.id, i.target, i.webhook_gid,
            (extract(epoch from i.received_at) * 1000)::bigint AS received_ms,
            i.event, i.attempts, i.source, i.resource)
    SELECT c.id, c.target, c.webhook_gid, c.received_ms, c.event, c.attempts, b.n,
        c.source, c.resource, e.n
    FROM (SELECT count(*) AS n FROM buried) b
    CROSS JOIN (SELECT count(*) AS n FROM picked WHERE expired) e
    LEFT JOIN claimed c ON true
    ORDER BY c.id";

/// Sends one NOTIFY for every burst of appends, outside their transactions:
/// a NOTIFY inside each would serialise their commits.
async fn notify_others(pool: Pool, kick: std::sync::Weak<Notify>) {
    loop {
        let Some(kicked) = kick.upgrade() else { return };
        // Wake up at least once a second to notice that the inbox is gone.
        let woke = tokio::time::timeout(Duration::from_secs(1), kicked.notified())
            .await
            .is_ok();
        drop(kicked);
        if !woke {
            continue;
        }
        if let Ok(client) = pool.get().await
            && let Err(e) = client.batch_execute(&format!("NOTIFY {CHANNEL}")).await
        {
            tracing::debug!(error = %e, "could not notify other instances");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Keeps a connection listening on the channel and wakes consumers on each
/// notification; reconnects when the connection drops, until the inbox is
/// gone.
async fn listen(config: tokio_postgres::Config, wake: std::sync::Weak<Notify>) {
    loop {
        if wake.strong_count() == 0 {
            return;
        }
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                let listening = async {
                    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
                    std::future::pending::<Result<(), tokio_postgres::Error>>().await
                };
                let relay = async {
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                                match wake.upgrade() {
                                    Some(wake) => wake.notify_waiters(),
                                    None => return,
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "inbox notification connection failed");
                                return;
                            }
                        }
                    }
                };
                tokio::select! {
                    result = listening => if let Err(e) = result {
                        tracing::warn!(error = %e, "could not LISTEN for new inbox events");
                    },
                    () = relay => {}
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not connect to listen for inbox events"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Puts off the lease of event `$1`, held under token `$2`, by `$4`
/// seconds and records `$5` as its last error; or, when it was handed out
/// `$3` times, moves it to the dead letters. Counts the events held (0:
/// the lease was lost) and moved.
const RELEASE: &str = "WITH held AS (
        SELECT id, attempts FROM asana_webhooks_inbox
        WHERE id = $1 AND lease_token = $2 FOR UPDATE),
    spent AS (
        DELETE FROM asana_webhooks_inbox i USING held h
        WHERE i.id = h.id AND h.attempts >= $3
        RETURNING i.id, i.target, i.webhook_gid, i.received_at, i.event, i.attempts,
            i.source, i.resource),
    buried AS (
        INSERT INTO asana_webhooks_dead_letters
            (id, target, webhook_gid, received_at, event, attempts, source, resource, last_error)
        SELECT s.*, $5 FROM spent s RETURNING 1),
    retried AS (
        UPDATE asana_webhooks_inbox i
        SET leased_until = now() + make_interval(secs => $4),
            lease_token = NULL, last_error = $5
        FROM held h WHERE i.id = h.id AND h.attempts < $3 RETURNING 1)
    SELECT (SELECT count(*) FROM held), (SELECT count(*) FROM buried)";

impl Acknowledge for PostgresInbox {
    fn ack(&self, id: u64, attempt: u32, token: u64) -> BoxFuture<'static, Result<(), InboxError>> {
        let (reply, answer) = oneshot::channel();
        let sent = self.inner.acks.send(Acking {
            id: id as i64,
            token: token as i64,
            attempt,
            reply,
        });
        Box::pin(async move {
            sent.map_err(|_| InboxError::Closed)?;
            answer.await.map_err(|_| InboxError::Closed)?
        })
    }

    fn release(
        &self,
        id: u64,
        attempt: u32,
        token: u64,
        reason: String,
    ) -> BoxFuture<'static, Result<Released, InboxError>> {
        let inbox = self.clone();
        let retries = self.retries();
        let after = retries.backoff_after(attempt);
        Box::pin(async move {
            let client = inbox.inner.relaxed.get().await.map_err(storage)?;
            // The lease is put off by the backoff: nobody claims the event
            // before it is over.
            let statement = client.prepare_cached(RELEASE).await.map_err(storage)?;
            let row = client
                .query_one(
                    &statement,
                    &[
                        &(id as i64),
                        &(token as i64),
                        &(retries.max_attempts().min(i32::MAX as u32) as i32),
                        &after.as_secs_f64(),
                        &reason,
                    ],
                )
                .await
                .map_err(storage)?;
            match (row.get::<_, i64>(0), row.get::<_, i64>(1)) {
                (0, _) => Err(InboxError::LeaseLost { id, attempt }),
                (_, 0) => Ok(Released::Retrying { after }),
                (_, moved) => {
                    crate::metrics::dead_lettered(moved as u64);
                    Ok(Released::DeadLettered)
                }
            }
        })
    }
}

impl Inbox for PostgresInbox {
    async fn check_ready(&self) -> Result<(), InboxError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(InboxError::Closed);
        }
        let client = self.inner.pool.get().await.map_err(storage)?;
        let standby: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(storage)?
            .get(0);
        if standby {
            return Err(storage("the database is a read-only standby (in recovery)"));
        }
        Ok(())
    }

    async fn append(&self, delivery: VerifiedDelivery) -> Result<Appended, InboxError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(InboxError::Closed);
        }
        // No connection is held while waiting for the commit: the writer
        // needs one from the same pool.
        let waiting = {
            let client = self.inner.pool.get().await.map_err(storage)?;
            self.stored_count(&client).await?
        };
        if waiting + delivery.events.len() as i64 > self.inner.max_events {
            return Err(InboxError::Full {
                waiting: waiting as u64,
                limit: self.inner.max_events as u64,
                unit: LimitUnit::Events,
            });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .batches
            .send(Waiting { delivery, reply })
            .await
            .map_err(|_| InboxError::Closed)?;
        let appended = answer.await.map_err(|_| InboxError::Closed)??;
        // Forget keys past Asana's retry horizon (DEDUPE_HORIZON) now and then.
        if self
            .inner
            .appends
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1000)
        {
            let client = self.inner.pool.get().await.map_err(storage)?;
            client
                .execute(
                    "DELETE FROM asana_webhooks_seen WHERE seen_at < now() - make_interval(secs => $1)",
                    &[&DEDUPE_HORIZON.as_secs_f64()],
                )
                .await
                .map_err(storage)?;
        }
        if appended.added > 0 {
            self.inner
                .counted
                .fetch_add(appended.added as i64, Ordering::Relaxed);
            self.inner.wake.notify_waiters();
            self.inner.kick.notify_one();
        }
        Ok(appended)
    }

    async fn heartbeat(
        &self,
        _target: &TargetKey,
        webhook_gid: Option<&str>,
    ) -> Result<(), InboxError> {
        let client = self.inner.pool.get().await.map_err(storage)?;
        client
            .execute(
                "INSERT INTO asana_webhooks_heartbeats (webhook, at) VALUES ($1, now())
                 ON CONFLICT (webhook) DO UPDATE SET at = now()",
                &[&webhook_gid.unwrap_or(UNKNOWN_WEBHOOK)],
            )
            .await
            .map_err(storage)?;
        Ok(())
    }

    async fn next(&self) -> Option<InboxItem> {
        self.next_batch(1).await.pop()
    }

    async fn next_batch(&self, max: usize) -> Vec<InboxItem> {
        loop {
            if self.inner.closed.load(Ordering::SeqCst) {
                return Vec::new();
            }
            let notified = self.inner.wake.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match self.claim(max).await {
                Ok((items, _)) if !items.is_empty() => return items,
                // What it found was spent: look again at once.
                Ok((_, true)) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim an inbox event; trying again")
                }
            }
            // A backoff that ends is noticed here too: it notifies nobody.
            let _ = tokio::time::timeout(POLL, notified).await;
        }
    }

    async fn stats(&self) -> Result<InboxStats, InboxError> {
        let client = self.inner.pool.get().await.map_err(storage)?;
        // A lease without a token is a backoff (see `release`).
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE lease_token IS NULL OR leased_until IS NULL
                                           OR leased_until < now()),
                        count(*) FILTER (WHERE lease_token IS NULL AND leased_until >= now()),
                        count(*) FILTER (WHERE lease_token IS NOT NULL AND leased_until >= now()),
                        coalesce(sum(octet_length(event)), 0)::bigint,
                        (extract(epoch from min(received_at)) * 1000)::bigint,
                        (SELECT count(*) FROM asana_webhooks_dead_letters)
                 FROM asana_webhooks_inbox",
                &[],
            )
            .await
            .map_err(storage)?;
        let mut stats = InboxStats {
            waiting: row.get::<_, i64>(0) as usize,
            retrying: row.get::<_, i64>(1) as usize,
            in_flight: row.get::<_, i64>(2) as usize,
            bytes: row.get::<_, i64>(3) as u64,
            oldest: row
                .get::<_, Option<i64>>(4)
                .and_then(chrono::DateTime::from_timestamp_millis),
            dead_letters: row.get::<_, i64>(5) as u64,
            ..InboxStats::default()
        };
        for row in client
            .query(
                "SELECT coalesce(webhook_gid, $1), count(*) FROM asana_webhooks_inbox GROUP BY 1",
                &[&UNKNOWN_WEBHOOK],
            )
            .await
            .map_err(storage)?
        {
            stats
                .per_webhook
                .insert(row.get(0), row.get::<_, i64>(1) as usize);
        }
        stats.duplicates_dropped = client
            .query_opt(
                "SELECT value FROM asana_webhooks_counters WHERE name = 'duplicates'",
                &[],
            )
            .await
            .map_err(storage)?
            .map_or(0, |r| r.get::<_, i64>(0) as u64);
        for row in client
            .query(
                "SELECT webhook, (extract(epoch from at) * 1000)::bigint FROM asana_webhooks_heartbeats",
                &[],
            )
            .await
            .map_err(storage)?
        {
            if let Some(at) = chrono::DateTime::from_timestamp_millis(row.get(1)) {
                stats.last_heartbeats.insert(row.get(0), at);
            }
        }
        Ok(stats)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, InboxError> {
        let client = self.inner.pool.get().await.map_err(storage)?;
        let rows = client
            .query(
                "SELECT id, target, webhook_gid, (extract(epoch from received_at) * 1000)::bigint,
                        event, attempts, last_error, (extract(epoch from dead_at) * 1000)::bigint,
                        source, resource
                 FROM asana_webhooks_dead_letters ORDER BY id",
                &[],
            )
            .await
            .map_err(storage)?;
        rows.iter()
            .map(|row| {
                let stored = StoredEvent {
                    id: row.get::<_, i64>(0) as u64,
                    target: TargetKey::from_path_and_query(row.get::<_, &str>(1)),
                    webhook_gid: row.get(2),
                    source: source(row.get(8)),
                    resource: row.get(9),
                    received_at_ms: row.get::<_, i64>(3) as u64,
                    event: RawValue::from_string(row.get(4)).map_err(storage)?,
                };
                Ok(DeadLetter::new(
                    &stored,
                    row.get::<_, i32>(5) as u32,
                    row.get(6),
                    row.get::<_, i64>(7) as u64,
                ))
            })
            .collect()
    }

    async fn redrive_dead_letters(&self, which: Selection) -> Result<u64, InboxError> {
        let (all, ids) = selection(&which);
        let client = self.inner.pool.get().await.map_err(storage)?;
        // Back with their ids (which the sequence gave out once), as new.
        let moved = client
            .execute(
                "WITH moved AS (
                     DELETE FROM asana_webhooks_dead_letters WHERE $1 OR id = ANY($2)
                     RETURNING id, target, webhook_gid, received_at, event, source, resource)
                 INSERT INTO asana_webhooks_inbox
                     (id, target, webhook_gid, received_at, event, source, resource)
                 SELECT * FROM moved",
                &[&all, &ids],
            )
            .await
            .map_err(storage)?;
        if moved > 0 {
            self.inner.wake.notify_waiters();
            self.inner.kick.notify_one();
        }
        Ok(moved)
    }

    async fn purge_dead_letters(&self, which: Selection) -> Result<u64, InboxError> {
        let (all, ids) = selection(&which);
        let client = self.inner.pool.get().await.map_err(storage)?;
        client
            .execute(
                "DELETE FROM asana_webhooks_dead_letters WHERE $1 OR id = ANY($2)",
                &[&all, &ids],
            )
            .await
            .map_err(storage)
    }

    fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.wake.notify_waiters();
    }
}

/// A stored source: one this build does not know (written by a newer
/// one) counts as a webhook's, the source of every event before sources.
fn source(name: &str) -> EventSource {
    EventSource::from_name(name).unwrap_or_else(|| {
        tracing::warn!(
            source = name,
            "an inbox event of a source this build does not know"
        );
        EventSource::Webhook
    })
}

/// A selection as query parameters: everything, or these ids.
fn selection(which: &Selection) -> (bool, Vec<i64>) {
    match which {
        Selection::All => (true, Vec::new()),
        Selection::Ids(ids) => (false, ids.iter().map(|id| *id as i64).collect()),
    }
}
