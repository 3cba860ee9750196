//! An inbox in one file on disk, through redb.

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{Database, ReadableTable, TableDefinition};

use serde::{Deserialize, Serialize};

use super::engine::{Attempts, Batch, DeadRecord, Engine, Journal, Loaded};
use super::{DEFAULT_LEASE, DEFAULT_MAX_BYTES, InboxError, Retries, StoredEvent};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Beside each event handed out: its attempts, backoff and last error.
const ATTEMPTS: TableDefinition<u64, &[u8]> = TableDefinition::new("attempts");
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const SEEN: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("seen");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const HEARTBEATS: TableDefinition<&str, u64> = TableDefinition::new("heartbeats");

/// An [`Inbox`](super::Inbox) in one file (a [redb](https://docs.rs/redb) database):
/// every commit is flushed to disk before the receiver answers, so an
/// acknowledged delivery survives a crash, a kill or a power cut. One
/// process at a time may open the file.
#[derive(Clone)]
pub struct FileInbox {
    engine: Engine,
    path: PathBuf,
    /// The file opened: (device, inode) on Unix.
    identity: Option<(u64, u64)>,
}

impl std::fmt::Debug for FileInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileInbox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileInbox {
    /// Opens (or creates) the inbox at `path` with the default lease and
    /// size limit. Everything stored and not acknowledged is handed out
    /// again.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, InboxError> {
        Self::open_with_limits(path, DEFAULT_LEASE, DEFAULT_MAX_BYTES).await
    }

    /// Opens the inbox at `path`; items are leased for `lease`, and it
    /// holds at most `max_bytes` of events (beyond, the receiver answers
    /// 503 and Asana delivers again later).
    pub async fn open_with_limits(
        path: impl Into<PathBuf>,
        lease: Duration,
        max_bytes: u64,
    ) -> Result<Self, InboxError> {
        let path = path.into();
        let opened = path.clone();
        let journal = tokio::task::spawn_blocking(move || RedbJournal::open(&opened))
            .await
            .expect("opening the inbox does not panic")?;
        let engine =
            tokio::task::spawn_blocking(move || Engine::start(Box::new(journal), lease, max_bytes))
                .await
                .expect("loading the inbox does not panic")?;
        let identity = file_identity(&path).ok();
        Ok(Self {
            engine,
            path,
            identity,
        })
    }

    /// Retries failed items as `retries` says (by default
    /// [`Retries::default`]), for this inbox and every clone of it.
    pub fn with_retries(self, retries: Retries) -> Self {
        self.engine.set_retries(retries);
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every stored event (waiting or in flight; not the dead letters) as
    /// `(id, webhook gid, received at, raw JSON)`, oldest first: what
    /// `asana-webhooks inbox --print` shows.
    pub fn stored(&self) -> Vec<(u64, Option<String>, chrono::DateTime<chrono::Utc>, String)> {
        self.engine
            .snapshot()
            .into_iter()
            .map(|e| {
                (
                    e.id,
                    e.webhook_gid.clone(),
                    chrono::DateTime::from_timestamp_millis(e.received_at_ms as i64)
                        .unwrap_or_default(),
                    e.event.get().to_string(),
                )
            })
            .collect()
    }
}

impl FileInbox {
    /// See [`Inbox::check_ready`](super::Inbox::check_ready). Commits
    /// into a file that was removed (or replaced) since it was opened are
    /// lost at the next open: not ready.
    async fn ready(&self) -> Result<(), InboxError> {
        let path = self.path.clone();
        let now = tokio::task::spawn_blocking(move || file_identity(&path))
            .await
            .expect("reading metadata does not panic");
        let storage = |message: String| InboxError::Storage {
            location: self.path.display().to_string(),
            message,
        };
        match now {
            Ok(now) if self.identity.is_none_or(|opened| opened == now) => {}
            Ok(_) => {
                return Err(storage(
                    "the file was replaced since the inbox opened it".into(),
                ));
            }
            Err(e) => {
                return Err(storage(format!("the file opened is no longer there ({e})")));
            }
        }
        self.engine.probe().await
    }
}

/// What tells the file at `path` from another one put in its place.
fn file_identity(path: &Path) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok((0, 0))
    }
}

super::engine::inbox_over_engine!(FileInbox);

/// The first wait before reopening a database a write error left unusable;
/// it doubles with each failed reopen, up to [`REOPEN_MAX_WAIT`].
const REOPEN_FIRST_WAIT: Duration = Duration::from_millis(500);
/// The longest wait between two reopen attempts.
const REOPEN_MAX_WAIT: Duration = Duration::from_secs(30);

/// A dead letter as stored: the event and how it died.
#[derive(Serialize, Deserialize)]
struct Buried {
    event: StoredEvent,
    attempts: u32,
    last_error: Option<String>,
    dead_at_ms: u64,
}

struct RedbJournal {
    /// `None` after a write error: redb refuses every transaction once one
    /// failed, until the database is reopened.
    db: Option<Database>,
    path: PathBuf,
    location: String,
    /// When the database may be reopened next, and the wait after that.
    reopen: Option<(std::time::Instant, Duration)>,
}

impl RedbJournal {
    fn open(path: &Path) -> Result<Self, InboxError> {
        let location = path.display().to_string();
        let db = Self::open_database(path, &location)?;
        Ok(Self {
            db: Some(db),
            path: path.to_path_buf(),
            location,
            reopen: None,
        })
    }

    fn open_database(path: &Path, location: &str) -> Result<Database, InboxError> {
        Database::create(path).map_err(|e| {
            let message = match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    "it is open in another process (one process at a time: stop `asana-webhooks listen` first)".to_string()
                }
                other => other.to_string(),
            };
            InboxError::Storage {
                location: location.to_string(),
                message,
            }
        })
    }

    /// The database, reopened first when a write error closed it and its
    /// backoff has passed (the cause, a full disk say, may be gone). Until
    /// then every commit fails at once with what happened, so deliveries
    /// are answered 503 and Asana delivers them again later.
    fn database(&mut self) -> Result<&Database, InboxError> {
        if self.db.is_none() {
            let (at, wait) = self
                .reopen
                .unwrap_or((std::time::Instant::now(), REOPEN_FIRST_WAIT));
            if std::time::Instant::now() < at {
                return Err(self.error(format!(
                    "the inbox is recovering from a storage error; it is reopened in {:?}",
                    at.saturating_duration_since(std::time::Instant::now())
                )));
            }
            match Self::open_database(&self.path, &self.location) {
                Ok(db) => {
                    tracing::info!(inbox = %self.location, "reopened the inbox after a storage error; deliveries are accepted again");
                    self.db = Some(db);
                    self.reopen = None;
                }
                Err(e) => {
                    let next = (wait * 2).min(REOPEN_MAX_WAIT);
                    tracing::error!(inbox = %self.location, error = %e, retry_in = ?wait, "the inbox could not be reopened");
                    self.reopen = Some((std::time::Instant::now() + wait, next));
                    return Err(e);
                }
            }
        }
        Ok(self.db.as_ref().expect("open"))
    }

    fn error(&self, e: impl std::fmt::Display) -> InboxError {
        InboxError::Storage {
            location: self.location.clone(),
            message: e.to_string(),
        }
    }
}

impl Journal for RedbJournal {
    fn load(&mut self) -> Result<Loaded, InboxError> {
        // Creating the tables up front makes reads of a new file simple.
        let txn = self.database()?.begin_write().map_err(|e| self.error(e))?;
        {
            txn.open_table(EVENTS).map_err(|e| self.error(e))?;
            txn.open_table(SEEN).map_err(|e| self.error(e))?;
            txn.open_table(META).map_err(|e| self.error(e))?;
            txn.open_table(HEARTBEATS).map_err(|e| self.error(e))?;
            txn.open_table(ATTEMPTS).map_err(|e| self.error(e))?;
            txn.open_table(DEAD_LETTERS).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))?;

        let txn = self.database()?.begin_read().map_err(|e| self.error(e))?;
        let mut loaded = Loaded::default();
        let events = txn.open_table(EVENTS).map_err(|e| self.error(e))?;
        for entry in events.iter().map_err(|e| self.error(e))? {
            let (_, value) = entry.map_err(|e| self.error(e))?;
            let event: StoredEvent =
                serde_json::from_slice(value.value()).map_err(|e| self.error(e))?;
            loaded.events.push(event);
        }
        let attempts = txn.open_table(ATTEMPTS).map_err(|e| self.error(e))?;
        for entry in attempts.iter().map_err(|e| self.error(e))? {
            let (id, value) = entry.map_err(|e| self.error(e))?;
            let record: Attempts =
                serde_json::from_slice(value.value()).map_err(|e| self.error(e))?;
            loaded.attempts.push((id.value(), record));
        }
        let dead = txn.open_table(DEAD_LETTERS).map_err(|e| self.error(e))?;
        for entry in dead.iter().map_err(|e| self.error(e))? {
            let (_, value) = entry.map_err(|e| self.error(e))?;
            let buried: Buried =
                serde_json::from_slice(value.value()).map_err(|e| self.error(e))?;
            loaded.dead.push(DeadRecord {
                event: std::sync::Arc::new(buried.event),
                attempts: buried.attempts,
                last_error: buried.last_error,
                dead_at_ms: buried.dead_at_ms,
            });
        }
        let seen = txn.open_table(SEEN).map_err(|e| self.error(e))?;
        for entry in seen.iter().map_err(|e| self.error(e))? {
            let (key, _) = entry.map_err(|e| self.error(e))?;
            let (ms, hash) = key.value();
            if let Ok(hash) = <[u8; 32]>::try_from(hash) {
                loaded.seen.push((ms, hash));
            }
        }
        loaded.seen.sort();
        let meta = txn.open_table(META).map_err(|e| self.error(e))?;
        let read = |key: &str| -> Result<u64, InboxError> {
            Ok(meta
                .get(key)
                .map_err(|e| self.error(e))?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        loaded.duplicates = read("duplicates")?;
        // A re-driven dead letter keeps its id, so ids come from both.
        let last_dead = loaded.dead.iter().map(|d| d.event.id + 1).max();
        loaded.next_id = read("next_id")?
            .max(loaded.events.last().map_or(0, |e| e.id + 1))
            .max(last_dead.unwrap_or(0));
        let heartbeats = txn.open_table(HEARTBEATS).map_err(|e| self.error(e))?;
        for entry in heartbeats.iter().map_err(|e| self.error(e))? {
            let (gid, ms) = entry.map_err(|e| self.error(e))?;
            loaded
                .heartbeats
                .push((gid.value().to_string(), ms.value()));
        }
        Ok(loaded)
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), InboxError> {
        let result = self.commit_once(batch);
        if let Err(e) = &result
            && self.db.is_some()
        {
            // redb refuses every later transaction after an I/O error until
            // the database is reopened: close it now, reopen it after a
            // backoff (see `database`).
            tracing::error!(inbox = %self.location, error = %e, "an inbox commit failed; the inbox is reopened after a backoff");
            self.db = None;
            self.reopen = Some((
                std::time::Instant::now() + REOPEN_FIRST_WAIT,
                REOPEN_FIRST_WAIT * 2,
            ));
        }
        result
    }
}

impl RedbJournal {
    fn commit_once(&mut self, batch: &Batch) -> Result<(), InboxError> {
        let txn = self.database()?.begin_write().map_err(|e| self.error(e))?;
        {
            let mut events = txn.open_table(EVENTS).map_err(|e| self.error(e))?;
            for event in &batch.appends {
                let bytes = serde_json::to_vec(event).map_err(|e| self.error(e))?;
                events
                    .insert(event.id, bytes.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            let mut attempts = txn.open_table(ATTEMPTS).map_err(|e| self.error(e))?;
            let mut dead = txn.open_table(DEAD_LETTERS).map_err(|e| self.error(e))?;
            for event in &batch.revived {
                let bytes = serde_json::to_vec(&**event).map_err(|e| self.error(e))?;
                events
                    .insert(event.id, bytes.as_slice())
                    .map_err(|e| self.error(e))?;
                dead.remove(event.id).map_err(|e| self.error(e))?;
                attempts.remove(event.id).map_err(|e| self.error(e))?;
            }
            for (id, record) in &batch.attempts {
                let bytes = serde_json::to_vec(record).map_err(|e| self.error(e))?;
                attempts
                    .insert(*id, bytes.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            for id in &batch.acks {
                events.remove(id).map_err(|e| self.error(e))?;
                attempts.remove(id).map_err(|e| self.error(e))?;
            }
            for record in &batch.buried {
                let id = record.event.id;
                let bytes = serde_json::to_vec(&Buried {
                    event: (*record.event).clone(),
                    attempts: record.attempts,
                    last_error: record.last_error.clone(),
                    dead_at_ms: record.dead_at_ms,
                })
                .map_err(|e| self.error(e))?;
                dead.insert(id, bytes.as_slice())
                    .map_err(|e| self.error(e))?;
                events.remove(id).map_err(|e| self.error(e))?;
                attempts.remove(id).map_err(|e| self.error(e))?;
            }
            for id in &batch.purged {
                dead.remove(id).map_err(|e| self.error(e))?;
            }
            let mut seen = txn.open_table(SEEN).map_err(|e| self.error(e))?;
            for (ms, key) in &batch.seen {
                seen.insert((*ms, key.as_slice()), ())
                    .map_err(|e| self.error(e))?;
            }
            let empty: &[u8] = &[];
            seen.retain_in(..(batch.prune_before, empty), |_, _| false)
                .map_err(|e| self.error(e))?;
            let mut meta = txn.open_table(META).map_err(|e| self.error(e))?;
            meta.insert("duplicates", batch.duplicates)
                .map_err(|e| self.error(e))?;
            meta.insert("next_id", batch.next_id)
                .map_err(|e| self.error(e))?;
            let mut heartbeats = txn.open_table(HEARTBEATS).map_err(|e| self.error(e))?;
            for (gid, ms) in &batch.heartbeats {
                heartbeats
                    .insert(gid.as_str(), *ms)
                    .map_err(|e| self.error(e))?;
            }
        }
        // Durability::Immediate (redb's default): flushed when this returns.
        txn.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::engine::tests::delivery;
    use super::super::{Appended, Inbox, InboxItem};
    use super::*;
    use crate::secrets::TargetKey;

    const A: &str = r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}"#;
    const B: &str = r#"{"action":"removed","resource":{"gid":"2","resource_type":"task"},"created_at":"2026-01-01T00:00:01Z"}"#;

    async fn next(inbox: &FileInbox) -> InboxItem {
        tokio::time::timeout(Duration::from_secs(5), inbox.next())
            .await
            .expect("an item")
            .expect("open")
    }

    #[tokio::test]
    async fn acknowledged_items_are_gone_and_the_rest_come_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.redb");
        {
            let inbox = FileInbox::open(&path).await.unwrap();
            let appended = inbox.append(delivery(&[A, B])).await.unwrap();
            assert_eq!(
                appended,
                Appended {
                    added: 2,
                    duplicates: 0
                }
            );
            let first = next(&inbox).await;
            assert_eq!(first.raw(), A);
            assert_eq!(first.event().unwrap().resource.gid, "1");
            first.ack().await.unwrap();
            let second = next(&inbox).await;
            assert_eq!(second.attempt(), 1);
            // Taken, never acknowledged: the process "dies" here.
            drop(second);
            inbox.close();
        }
        let inbox = FileInbox::open(&path).await.unwrap();
        let again = next(&inbox).await;
        assert_eq!(
            again.raw(),
            B,
            "the unacknowledged item is handed out again"
        );
        assert_eq!(inbox.stats().await.unwrap().in_flight, 1);
        again.ack().await.unwrap();
        assert_eq!(
            inbox.stats().await.unwrap().waiting + inbox.stats().await.unwrap().in_flight,
            0
        );
    }

    #[tokio::test]
    async fn an_expired_lease_hands_the_item_out_again() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = FileInbox::open_with_limits(
            dir.path().join("i.redb"),
            Duration::from_millis(200),
            1 << 20,
        )
        .await
        .unwrap();
        inbox.append(delivery(&[A])).await.unwrap();
        let first = next(&inbox).await;
        assert_eq!(first.attempt(), 1);
        let started = std::time::Instant::now();
        let second = next(&inbox).await;
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "not before the lease ran out"
        );
        assert_eq!(second.id(), first.id());
        assert_eq!(second.attempt(), 2);
        second.ack().await.unwrap();
        // The late acknowledgement of the first lease is refused, harmlessly.
        let late = first.ack().await.unwrap_err();
        assert!(
            matches!(late, InboxError::LeaseLost { attempt: 1, .. }),
            "{late}"
        );
        let stats = inbox.stats().await.unwrap();
        assert_eq!((stats.waiting, stats.in_flight), (0, 0));
    }

    #[tokio::test]
    async fn released_items_come_back_after_their_backoff_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        let backoff = Duration::from_millis(200);
        let retries = Retries::default()
            .with_max_attempts(2)
            .with_backoff(backoff, backoff);
        let inbox = FileInbox::open(&path).await.unwrap().with_retries(retries);
        inbox.append(delivery(&[A])).await.unwrap();
        let first = next(&inbox).await;
        let id = first.id();
        let started = std::time::Instant::now();
        let released = first.release("not yet").await.unwrap();
        assert!(
            matches!(released, super::super::Released::Retrying { after } if after >= backoff / 2),
            "{released:?}"
        );
        assert_eq!(inbox.stats().await.unwrap().retrying, 1);
        let again = next(&inbox).await;
        assert!(started.elapsed() >= backoff / 2, "not before its backoff");
        assert_eq!((again.id(), again.attempt()), (id, 2));
        assert_eq!(
            again.release("still not").await.unwrap(),
            super::super::Released::DeadLettered
        );
        inbox.close();
        let inbox = FileInbox::open(&path).await.unwrap();
        let dead = inbox.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1, "dead letters are stored");
        assert_eq!(
            (dead[0].id, dead[0].attempts, dead[0].last_error.as_deref()),
            (id, 2, Some("still not"))
        );
        assert_eq!(dead[0].raw, A);
    }

    #[tokio::test]
    async fn repeated_events_are_dropped_and_counted_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        {
            let inbox = FileInbox::open(&path).await.unwrap();
            assert_eq!(inbox.append(delivery(&[A])).await.unwrap().added, 1);
            // The same event again (a retried delivery), re-serialised.
            let reformatted = serde_json::to_string_pretty(
                &serde_json::from_str::<serde_json::Value>(A).unwrap(),
            )
            .unwrap();
            let appended = inbox.append(delivery(&[&reformatted, B])).await.unwrap();
            assert_eq!(
                appended,
                Appended {
                    added: 1,
                    duplicates: 1
                }
            );
            next(&inbox).await.ack().await.unwrap();
            inbox.close();
        }
        let inbox = FileInbox::open(&path).await.unwrap();
        let appended = inbox.append(delivery(&[A, B])).await.unwrap();
        assert_eq!(
            appended,
            Appended {
                added: 0,
                duplicates: 2
            },
            "acknowledged or not, a repeat is a repeat"
        );
        assert_eq!(inbox.stats().await.unwrap().duplicates_dropped, 3);
    }

    #[tokio::test]
    async fn a_full_inbox_refuses_the_whole_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = FileInbox::open_with_limits(dir.path().join("i.redb"), DEFAULT_LEASE, 300)
            .await
            .unwrap();
        inbox.append(delivery(&[A])).await.unwrap();
        let err = inbox
            .append(delivery(&[B, r#"{"x":1}"#]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                InboxError::Full {
                    unit: super::super::LimitUnit::Bytes,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("acknowledge"), "{err}");
        assert_eq!(
            inbox.stats().await.unwrap().waiting,
            1,
            "none of the refused delivery was kept"
        );
        next(&inbox).await.ack().await.unwrap();
        assert_eq!(
            inbox.append(delivery(&[B])).await.unwrap().added,
            1,
            "room again"
        );
    }

    #[tokio::test]
    async fn heartbeats_are_recorded_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        {
            let inbox = FileInbox::open(&path).await.unwrap();
            inbox
                .heartbeat(&TargetKey::from_path_and_query("/t"), Some("42"))
                .await
                .unwrap();
            let stats = inbox.stats().await.unwrap();
            assert_eq!(stats.waiting, 0);
            assert!(stats.last_heartbeats.contains_key("42"));
            inbox.close();
        }
        let inbox = FileInbox::open(&path).await.unwrap();
        assert!(
            inbox
                .stats()
                .await
                .unwrap()
                .last_heartbeats
                .contains_key("42")
        );
    }

    #[tokio::test]
    async fn an_inbox_that_cannot_be_written_is_a_clear_error() {
        // A path below a regular file cannot be created, whoever runs the
        // test (root ignores directory permissions, not this).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, "x").unwrap();
        let err = FileInbox::open(file.join("i.redb")).await.unwrap_err();
        assert!(matches!(err, InboxError::Storage { .. }), "{err}");
        assert!(err.to_string().contains("i.redb"), "{err}");
    }

    #[tokio::test]
    async fn records_from_before_sources_load_as_webhook_events_of_no_known_resource() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        {
            // An event and a dead letter as an earlier build wrote them.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let old = format!(
                    r#"{{"id":0,"target":"/t","webhook_gid":"1","received_at_ms":1700000000000,"event":{A}}}"#
                );
                let mut events = txn.open_table(EVENTS).unwrap();
                events.insert(0, old.as_bytes()).unwrap();
                let buried = format!(
                    r#"{{"event":{{"id":1,"target":"/t","webhook_gid":"1","received_at_ms":1700000000000,"event":{B}}},"attempts":3,"last_error":"x","dead_at_ms":1700000000001}}"#
                );
                let mut dead = txn.open_table(DEAD_LETTERS).unwrap();
                dead.insert(1, buried.as_bytes()).unwrap();
            }
            txn.commit().unwrap();
        }
        let inbox = FileInbox::open(&path).await.unwrap();
        let item = next(&inbox).await;
        assert_eq!(item.raw(), A);
        assert_eq!(
            (item.source(), item.resource(), item.webhook_gid()),
            (super::super::EventSource::Webhook, None, Some("1"))
        );
        let dead = inbox.dead_letters().await.unwrap();
        assert_eq!(
            (
                dead[0].raw.as_str(),
                dead[0].source,
                dead[0].resource.as_deref()
            ),
            (B, super::super::EventSource::Webhook, None)
        );
        // New ids follow the old ones.
        let appended = inbox
            .append(super::super::VerifiedDelivery::from_events_api(
                TargetKey::from_path_and_query("/t"),
                "1300",
                vec![serde_json::value::RawValue::from_string(A.replace("00Z", "09Z")).unwrap()],
            ))
            .await
            .unwrap();
        assert_eq!(appended.added, 1);
        item.ack().await.unwrap();
        let fetched = next(&inbox).await;
        assert_eq!(fetched.id(), 2);
        assert_eq!(
            (fetched.source(), fetched.resource()),
            (super::super::EventSource::EventsApi, Some("1300"))
        );
    }

    #[tokio::test]
    async fn a_second_process_gets_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        let _first = FileInbox::open(&path).await.unwrap();
        let err = FileInbox::open(&path).await.unwrap_err();
        assert!(err.to_string().contains("another process"), "{err}");
    }
}
