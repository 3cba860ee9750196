//! A [`SecretStore`] that persists secrets in a JSON file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};

use super::atomic_file::{self, Stamp, stamp, write_atomically};
use super::recovery::RecoveryBook;
use super::registry::{Registry, UnconfirmedEntry};
use super::{
    Gap, GapStatus, HandshakeVerdict, MemorySecretStore, RecoveryStore, RegistrationId,
    SecretStore, StoreError, StoredSecret, SyncToken, TargetKey, UnconfirmedHandshake,
    UnrecordedSpan,
};
use crate::hook_secret::HookSecret;

/// Secrets in a JSON file that survives restarts; registrations in memory.
///
/// - **Atomic**: every change writes a new file beside the old one (created
///   exclusively, mode 0600), flushes it, renames it over the old one and
///   flushes the directory, so a crash leaves the old or the new contents.
///   Temporary files a crash left behind are removed on open.
/// - **Shared safely**: several processes may use one file (for example
///   several `asana-webhooks listen`). Each change is made under an
///   exclusive lock on `<file>.lock`, applied to what is on disk at that
///   moment (not to a stale copy), so no process loses another's secrets;
///   a process sees the others' changes when the file changes.
/// - **Private**: the file is readable by its owner only.
/// - **Survives a death mid-create**: each handshake is written to the file
///   before it is echoed, and stays there until a 201 confirms its secret
///   (see [`SecretStore::unconfirmed_handshakes`]), so a process killed
///   between the handshake and Asana's answer leaves what the next
///   `ensure()` needs to store the secret.
///
/// Registrations in flight live in this process's memory: the handshake of
/// a create must reach the process that sent it. Behind a load balancer,
/// use a database-backed store shared by every instance.
#[derive(Clone)]
pub struct FileSecretStore {
    inner: Arc<Inner>,
    memory: MemorySecretStore,
}

struct Inner {
    path: PathBuf,
    lock_path: PathBuf,
    /// Serialises this process's writers; the file lock serialises processes.
    write_lock: tokio::sync::Mutex<()>,
    /// The identity of the file version the memory copy was loaded from.
    loaded: Mutex<Option<Stamp>>,
}

#[derive(Default, Serialize, Deserialize)]
struct FileContents {
    version: u32,
    webhooks: Vec<StoredSecret>,
    /// Absent before version 3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unconfirmed: Vec<UnconfirmedEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unrecorded: Vec<UnrecordedSpan>,
    /// Gaps, leases and sync tokens; absent before version 4.
    #[serde(default, skip_serializing_if = "RecoveryBook::is_empty")]
    recovery: RecoveryBook,
}

/// Version 2 holds several secrets per target (one per webhook) and the
/// watched resource; version 1 (one secret per target) is read as is.
/// Version 3 adds unconfirmed handshakes: a file that holds some is
/// written as version 3, so that a build that predates them refuses it
/// rather than rewriting it without them. Version 4 adds gaps, leases
/// and sync tokens, on the same terms.
const FILE_VERSION: u32 = 2;
const FILE_VERSION_WITH_UNCONFIRMED: u32 = 3;
const FILE_VERSION_WITH_RECOVERY: u32 = 4;
const READABLE_VERSIONS: [u32; 4] = [1, 2, 3, 4];

impl std::fmt::Debug for FileSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSecretStore")
            .field("path", &self.inner.path)
            .field("memory", &self.memory)
            .finish()
    }
}

impl FileSecretStore {
    /// Opens the store at `path`, loading it when the file exists. A file
    /// that is not a secret store is reported, never overwritten.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let given = path.into();
        let path = std::path::absolute(&given).map_err(|source| io_error(&given, source))?;
        let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
        lock_name.push(".lock");
        let store = Self {
            inner: Arc::new(Inner {
                lock_path: path.with_file_name(lock_name),
                path,
                write_lock: tokio::sync::Mutex::new(()),
                loaded: Mutex::new(None),
            }),
            memory: MemorySecretStore::new(),
        };
        let inner = Arc::clone(&store.inner);
        let (stamp, contents) = blocking(move || {
            let _lock = inner.lock_file()?;
            inner.remove_stale_temps()?;
            inner.read()
        })
        .await?;
        store.memory.with(|s| load(s, contents));
        *store.loaded() = stamp;
        Ok(store)
    }

    /// The file's path (made absolute).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, Option<Stamp>> {
        self.inner.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads the records when another process changed the file.
    ///
    /// The contents and their stamp come from one open file (one version),
    /// and memory and stamp change together under the stamp's lock (which
    /// writes hold from their read to their write), so a write of this
    /// process racing the reload can never leave memory holding one
    /// version under the stamp of another, which would never be reloaded.
    fn refresh(&self) -> Result<(), StoreError> {
        let current = stamp(&self.inner.path).map_err(|e| self.inner.io(e))?;
        let mut loaded = match self.inner.loaded.try_lock() {
            Ok(loaded) => loaded,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            // A write of this process is under way: it read the file under
            // the file lock and leaves memory newer than what is on disk,
            // so there is nothing to reload (and no reason to wait for its
            // fsync on an async thread).
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        if *loaded == current {
            return Ok(());
        }
        let (stamp, contents) = self.inner.read()?;
        self.memory.with(|s| load(s, contents));
        *loaded = stamp;
        Ok(())
    }

    /// Applies `change` to the records as they are on disk, under the file
    /// lock, and writes the result before returning.
    async fn change<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Registry) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        self.change_if(move |s| (change(s), true)).await
    }

    /// Like [`Self::change`], but writes only when `change` says (in the
    /// second half of its result) that it changed something.
    async fn change_if<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Registry) -> (T, bool) + Send + 'static,
    ) -> Result<T, StoreError> {
        let _guard = self.inner.write_lock.lock().await;
        let (inner, memory) = (Arc::clone(&self.inner), self.memory.clone());
        blocking(move || {
            let _lock = inner.lock_file()?;
            let (read_stamp, on_disk) = inner.read()?;
            // Memory and stamp change together (see `refresh`).
            let mut loaded = inner.loaded.lock().unwrap_or_else(|p| p.into_inner());
            let (result, contents) = memory.with(|s| {
                load(s, on_disk);
                let (result, changed) = change(s);
                let unconfirmed = !s.unconfirmed.is_empty() || !s.unrecorded.is_empty();
                let contents = changed.then(|| FileContents {
                    version: if !s.recovery.is_empty() {
                        FILE_VERSION_WITH_RECOVERY
                    } else if unconfirmed {
                        FILE_VERSION_WITH_UNCONFIRMED
                    } else {
                        FILE_VERSION
                    },
                    webhooks: s.records.clone(),
                    unconfirmed: s.unconfirmed.clone(),
                    unrecorded: s.unrecorded.clone(),
                    recovery: s.recovery.clone(),
                });
                (result, contents)
            });
            let Some(contents) = contents else {
                *loaded = read_stamp;
                return Ok(result);
            };
            let bytes = serde_json::to_vec_pretty(&contents).expect("secrets serialise");
            match write_atomically(&inner.path, &bytes) {
                Ok(written) => {
                    // Under the file lock no other process writes: the file
                    // is the version just written.
                    *loaded = Some(written);
                    Ok(result)
                }
                Err(e) => {
                    // Memory must not claim what the disk does not hold.
                    *loaded = None;
                    if let Ok((stamp, on_disk)) = inner.read() {
                        memory.with(|s| load(s, on_disk));
                        *loaded = stamp;
                    }
                    Err(inner.io(e))
                }
            }
        })
        .await
    }
}

/// Replaces the durable part of `registry` with what the file holds.
fn load(registry: &mut Registry, contents: FileContents) {
    registry.records = contents.webhooks;
    registry.unconfirmed = contents.unconfirmed;
    registry.unrecorded = contents.unrecorded;
    registry.recovery = contents.recovery;
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .expect("secret store file work does not panic")
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Inner {
    fn io(&self, source: std::io::Error) -> StoreError {
        io_error(&self.path, source)
    }

    /// Takes the exclusive lock shared by every process using this store;
    /// it is released when the returned file is dropped.
    fn lock_file(&self) -> Result<std::fs::File, StoreError> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(&self.lock_path)
            .map_err(|e| io_error(&self.lock_path, e))?;
        fs4::FileExt::lock(&file).map_err(|e| io_error(&self.lock_path, e))?;
        Ok(file)
    }

    /// The file's contents and the stamp of that very version: both come
    /// from one open file, so a rename racing the read cannot pair one
    /// version's contents with another's stamp.
    fn read(&self) -> Result<(Option<Stamp>, FileContents), StoreError> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((None, FileContents::default()));
            }
            Err(e) => return Err(self.io(e)),
        };
        let before = Some(Stamp::of(&file.metadata().map_err(|e| self.io(e))?));
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| self.io(e))?;
        let contents: FileContents =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            })?;
        if !READABLE_VERSIONS.contains(&contents.version) {
            return Err(StoreError::Corrupt {
                path: self.path.display().to_string(),
                reason: format!(
                    "version {} (this crate reads versions {READABLE_VERSIONS:?})",
                    contents.version
                ),
            });
        }
        Ok((before, contents))
    }

    /// Removes temporary files that a process killed mid-write left behind.
    /// Called under the lock, so no live writer owns one.
    fn remove_stale_temps(&self) -> Result<(), StoreError> {
        atomic_file::remove_stale_temps(&self.path).map_err(|(path, e)| io_error(&path, e))
    }
}

impl SecretStore for FileSecretStore {
    async fn check_ready(&self) -> Result<(), StoreError> {
        let store = self.clone();
        blocking(move || {
            store.refresh()?;
            // Every write creates a file beside this one and renames it:
            // try the first half (a leftover is removed at the next open).
            let probe = atomic_file::temp_path(&store.inner.path);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .map_err(|e| io_error(&probe, e))?;
            std::fs::remove_file(&probe).map_err(|e| io_error(&probe, e))
        })
        .await
    }

    async fn open_registration(
        &self,
        target: &TargetKey,
        ttl: Duration,
    ) -> Result<RegistrationId, StoreError> {
        self.memory.open_registration(target, ttl).await
    }

    async fn accept_handshake(
        &self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> Result<HandshakeVerdict, StoreError> {
        let verdict = self.memory.accept_handshake(target, secret).await?;
        if let HandshakeVerdict::Accepted { .. } = verdict {
            // On disk before it is echoed: from the echo on, Asana may
            // create the webhook whether or not this process lives on.
            let handshake = UnconfirmedHandshake {
                target: target.clone(),
                secret: secret.clone(),
                received_at: chrono::Utc::now(),
            };
            // Never refused for the limit: a flood must not block creates.
            // Nothing to write for a repeat.
            self.change_if(move |s| ((), s.record_unconfirmed(handshake)))
                .await?;
        }
        Ok(verdict)
    }

    async fn release_handshakes(&self, registration: &RegistrationId) -> Result<(), StoreError> {
        let registration = registration.clone();
        self.change_if(move |s| ((), s.release_unconfirmed(&registration)))
            .await
    }

    async fn pending_secrets(&self, target: &TargetKey) -> Result<Vec<HookSecret>, StoreError> {
        self.memory.pending_secrets(target).await
    }

    async fn confirm(
        &self,
        _registration: &RegistrationId,
        record: StoredSecret,
    ) -> Result<bool, StoreError> {
        self.change(move |s| s.confirm(record)).await
    }

    async fn close_registration(
        &self,
        registration: &RegistrationId,
    ) -> Result<Vec<HookSecret>, StoreError> {
        self.memory.close_registration(registration).await
    }

    async fn save(&self, record: StoredSecret) -> Result<(), StoreError> {
        self.change(move |s| s.save(record)).await
    }

    async fn secrets_for(&self, target: &TargetKey) -> Result<Vec<StoredSecret>, StoreError> {
        self.refresh()?;
        self.memory.secrets_for(target).await
    }

    async fn by_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        self.refresh()?;
        self.memory.by_gid(gid).await
    }

    async fn remove_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        let gid = gid.to_string();
        self.change(move |s| s.remove_gid(&gid)).await
    }

    async fn unconfirmed_handshakes(
        &self,
        target: &TargetKey,
    ) -> Result<Vec<UnconfirmedHandshake>, StoreError> {
        self.refresh()?;
        Ok(self.memory.with(|s| s.unconfirmed_for(target)))
    }

    async fn unrecorded_handshakes(
        &self,
        target: &TargetKey,
    ) -> Result<Option<UnrecordedSpan>, StoreError> {
        self.refresh()?;
        Ok(self.memory.with(|s| s.unrecorded_for(target)))
    }
}

/// Every change is made under the file lock on what is on disk (see
/// [`FileSecretStore`]), so a lease taken here excludes every process that
/// shares the file.
impl RecoveryStore for FileSecretStore {
    async fn record_gap(&self, gap: Gap) -> Result<bool, StoreError> {
        self.change_if(move |s| {
            let before = s.recovery.gaps.len();
            let new = s.recovery.record_gap(gap, Utc::now());
            (new, new || s.recovery.gaps.len() != before)
        })
        .await
    }

    async fn gaps(&self) -> Result<Vec<Gap>, StoreError> {
        self.refresh()?;
        Ok(self.memory.with(|s| s.recovery.gaps.clone()))
    }

    async fn set_gap_status(&self, id: &str, status: GapStatus) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.change_if(move |s| {
            let found = s.recovery.set_gap_status(&id, status);
            (found, found)
        })
        .await
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.change_if(move |s| {
            let taken = s.recovery.try_lease(&name, &holder, ttl, Utc::now());
            (taken, taken)
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        self.change_if(move |s| ((), s.recovery.release_lease(&name, &holder)))
            .await
    }

    async fn sync_token(&self, resource: &str) -> Result<Option<SyncToken>, StoreError> {
        self.refresh()?;
        Ok(self
            .memory
            .with(|s| s.recovery.sync_tokens.get(resource).cloned()))
    }

    async fn save_sync_token(
        &self,
        resource: &str,
        token: &str,
        stream_since: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (resource, token) = (resource.to_string(), token.to_string());
        self.change(move |s| {
            s.recovery
                .save_sync_token(&resource, &token, stream_since, Utc::now())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::atomic_file::{temp_path, write_temp};

    fn record(target: &str, gid: &str, secret: &str) -> StoredSecret {
        StoredSecret::new(
            TargetKey::from_path_and_query(target),
            gid,
            HookSecret::new(secret),
        )
    }

    fn key(target: &str) -> TargetKey {
        TargetKey::from_path_and_query(target)
    }

    #[tokio::test]
    async fn a_handshake_is_on_disk_before_it_is_echoed_and_forgotten_once_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let store = FileSecretStore::open(&path).await.unwrap();
        let registration = store
            .open_registration(&key("/a"), Duration::from_secs(30))
            .await
            .unwrap();
        let secret = HookSecret::new("from-the-handshake");
        store.accept_handshake(&key("/a"), &secret).await.unwrap();

        // What a restart would find.
        let after_a_crash = FileSecretStore::open(&path).await.unwrap();
        let unconfirmed = after_a_crash
            .unconfirmed_handshakes(&key("/a"))
            .await
            .unwrap();
        assert_eq!(unconfirmed.len(), 1);
        assert_eq!(unconfirmed[0].secret, secret);
        assert!(
            after_a_crash
                .unconfirmed_handshakes(&key("/b"))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            after_a_crash
                .secrets_for(&key("/a"))
                .await
                .unwrap()
                .is_empty(),
            "unconfirmed is not stored: it verifies nothing"
        );
        assert!(
            after_a_crash
                .pending_secrets(&key("/a"))
                .await
                .unwrap()
                .is_empty(),
            "nor is it pending in a process that opened no registration"
        );

        let confirmed = store
            .confirm(&registration, record("/a", "1", "from-the-handshake"))
            .await
            .unwrap();
        assert!(confirmed);
        assert!(
            after_a_crash
                .unconfirmed_handshakes(&key("/a"))
                .await
                .unwrap()
                .is_empty()
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("unconfirmed"), "{text}");
    }

    #[tokio::test]
    async fn a_flood_past_the_limit_rewrites_the_file_at_most_once_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSecretStore::open(dir.path().join("secrets.json"))
            .await
            .unwrap();
        let target = key("/flooded");
        let registration = store
            .open_registration(&target, Duration::from_secs(30))
            .await
            .unwrap();
        for n in 0..super::super::MAX_UNCONFIRMED_PER_TARGET {
            let secret = HookSecret::new(format!("{n:064x}"));
            store.accept_handshake(&target, &secret).await.unwrap();
        }
        // Past the limit: 500 more distinct handshakes within one step.
        let started = std::time::Instant::now();
        let mut versions = std::collections::HashSet::new();
        for n in 0..500 {
            let secret = HookSecret::new(format!("{:064x}", 1_000_000 + n));
            let verdict = store.accept_handshake(&target, &secret).await.unwrap();
            assert!(matches!(verdict, HandshakeVerdict::Accepted { .. }));
            versions.insert(stamp(store.path()).unwrap());
        }
        let steps = started.elapsed().as_secs() / super::super::UNRECORDED_SPAN_STEP.as_secs();
        assert!(
            versions.len() as u64 <= steps + 1,
            "{} versions of the file in {} steps",
            versions.len(),
            steps + 1
        );
        // Asana's handshake among the flood is confirmed by its 201.
        let asana = HookSecret::new(format!("{:064x}", 1_000_250));
        let record = StoredSecret::new(target.clone(), "7", asana);
        assert!(store.confirm(&registration, record).await.unwrap());
    }

    #[tokio::test]
    async fn a_201_after_its_registration_expired_still_confirms_a_written_down_handshake() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSecretStore::open(dir.path().join("secrets.json"))
            .await
            .unwrap();
        let target = key("/slow");
        let registration = store
            .open_registration(&target, Duration::from_millis(50))
            .await
            .unwrap();
        let secret = HookSecret::new("a".repeat(64));
        store.accept_handshake(&target, &secret).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            store.pending_secrets(&target).await.unwrap().is_empty(),
            "expired"
        );
        let record = StoredSecret::new(target.clone(), "8", secret.clone());
        assert!(
            store.confirm(&registration, record).await.unwrap(),
            "the echoed handshake was written down: the 201 confirms it"
        );
        let forged = StoredSecret::new(target.clone(), "9", HookSecret::new("b".repeat(64)));
        assert!(!store.confirm(&registration, forged).await.unwrap());
        assert_eq!(store.by_gid("8").await.unwrap().unwrap().secret, secret);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_never_keeps_an_old_version_under_the_stamp_of_a_newer_one() {
        // Another process writes; then this one writes while it also reads.
        // Each read sees the file changed by the other process and reloads
        // it, racing this process's own write: afterwards this process must
        // see its own record, not the other's version under its stamp.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let this = FileSecretStore::open(&path).await.unwrap();
        let other = FileSecretStore::open(&path).await.unwrap();
        // Writes as slow as a busy disk's: the reads land inside them.
        crate::secrets::atomic_file::slow_disk::set(this.path(), Duration::from_millis(20));
        let target = key("/race");
        for n in 0..30 {
            other
                .save(record("/race", &format!("o{n}"), &format!("o{n}")))
                .await
                .unwrap();
            let write = {
                let this = this.clone();
                tokio::spawn(async move {
                    this.save(record("/race", &format!("t{n}"), &format!("t{n}")))
                        .await
                        .unwrap()
                })
            };
            for _ in 0..20 {
                this.secrets_for(&target).await.unwrap();
                tokio::task::yield_now().await;
            }
            write.await.unwrap();
            let seen = this.secrets_for(&target).await.unwrap();
            assert_eq!(seen.len(), 2 * (n + 1), "round {n}: a stale copy");
        }
    }

    #[tokio::test]
    async fn past_the_limit_handshakes_are_answered_but_only_their_span_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSecretStore::open(dir.path().join("secrets.json"))
            .await
            .unwrap();
        store
            .open_registration(&key("/a"), Duration::from_secs(30))
            .await
            .unwrap();
        for n in 0..super::super::MAX_UNCONFIRMED_PER_TARGET {
            let secret = HookSecret::new(format!("flood-{n}"));
            store.accept_handshake(&key("/a"), &secret).await.unwrap();
        }
        assert_eq!(store.unrecorded_handshakes(&key("/a")).await.unwrap(), None);
        let before = stamp(store.path()).unwrap();
        let repeat = HookSecret::new("flood-0");
        assert!(store.accept_handshake(&key("/a"), &repeat).await.is_ok());
        assert_eq!(
            stamp(store.path()).unwrap(),
            before,
            "a repeat rewrites nothing"
        );
        for n in 0..3 {
            let one_more = HookSecret::new(format!("one-more-{n}"));
            let verdict = store.accept_handshake(&key("/a"), &one_more).await.unwrap();
            assert!(
                matches!(verdict, HandshakeVerdict::Accepted { .. }),
                "never refused for the limit: a flood must not block creates"
            );
        }
        assert_eq!(
            store
                .unconfirmed_handshakes(&key("/a"))
                .await
                .unwrap()
                .len(),
            super::super::MAX_UNCONFIRMED_PER_TARGET,
            "no more written down"
        );
        let reopened = FileSecretStore::open(store.path()).await.unwrap();
        let span = reopened
            .unrecorded_handshakes(&key("/a"))
            .await
            .unwrap()
            .expect("the span of the unrecorded ones is kept");
        assert!(span.first <= span.last);
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert!(text.contains(r#""version": 3"#), "{text}");
    }

    #[tokio::test]
    async fn a_crash_between_write_and_rename_leaves_the_old_secret_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let store = FileSecretStore::open(&path).await.unwrap();
        store.save(record("/a", "1", "old-secret")).await.unwrap();

        // The next write got as far as its temporary file, then the process died.
        let half =
            br#"{"version":2,"webhooks":[{"target":"/a","webhook_gid":"1","secret":"new-sec"#;
        let temp = write_temp(&path, half).unwrap();
        assert!(temp.exists());

        let reopened = FileSecretStore::open(&path).await.unwrap();
        let found = reopened.by_gid("1").await.unwrap().unwrap();
        assert_eq!(found.secret.expose(), "old-secret");
        assert!(
            !temp.exists(),
            "open removes what an interrupted write left"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_secret_file_stays_private_even_with_a_planted_world_readable_temp_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        // A leftover temp file with the old fixed name, world-readable.
        let planted = dir
            .path()
            .join(format!("secrets.json.tmp.{}", std::process::id()));
        std::fs::write(&planted, "{}").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();

        let store = FileSecretStore::open(&path).await.unwrap();
        store.save(record("/a", "1", "s")).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let lock_mode = std::fs::metadata(dir.path().join("secrets.json.lock"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(lock_mode, 0o600);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_temp_name_taken_by_a_symlink_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let path = dir.path().join("secrets.json");
        // Exclusive creation refuses an existing name, symlink or not.
        let temp = temp_path(&path);
        std::os::unix::fs::symlink(&victim, &temp).unwrap();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        assert!(options.open(&temp).is_err());
        let store = FileSecretStore::open(&path).await.unwrap();
        store.save(record("/a", "1", "s")).await.unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    }

    #[tokio::test]
    async fn a_relative_path_is_made_absolute_so_its_directory_is_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = std::env::current_dir().unwrap();
        // A relative path to the temporary directory, climbing from the
        // working directory to the root: nothing is written outside it.
        let mut relative = PathBuf::new();
        for _ in cwd.components().skip(1) {
            relative.push("..");
        }
        relative.push(dir.path().strip_prefix("/").unwrap());
        relative.push("s.json");
        assert!(relative.is_relative());
        let store = FileSecretStore::open(&relative).await.unwrap();
        assert!(store.path().is_absolute());
        let parent = store.path().parent().unwrap();
        assert_eq!(
            parent.canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[tokio::test]
    async fn two_stores_on_one_file_never_lose_each_others_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let a = FileSecretStore::open(&path).await.unwrap();
        let b = FileSecretStore::open(&path).await.unwrap();
        let writes = (0..20).map(|n| {
            let store = if n % 2 == 0 { a.clone() } else { b.clone() };
            async move {
                store
                    .save(record("/shared", &n.to_string(), &format!("s{n}")))
                    .await
            }
        });
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
        let fresh = FileSecretStore::open(&path).await.unwrap();
        assert_eq!(fresh.secrets_for(&key("/shared")).await.unwrap().len(), 20);
        // Each store sees the other's writes without reopening.
        assert_eq!(a.secrets_for(&key("/shared")).await.unwrap().len(), 20);
        assert!(b.by_gid("0").await.unwrap().is_some());
        a.remove_gid("3").await.unwrap();
        assert!(b.by_gid("3").await.unwrap().is_none());
        assert_eq!(b.secrets_for(&key("/shared")).await.unwrap().len(), 19);
    }

    #[tokio::test]
    async fn a_version_1_file_is_read_and_rewritten_as_version_2_without_losing_a_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        std::fs::write(
            &path,
            r#"{"version":1,"webhooks":[
                {"target":"/a","webhook_gid":"1","secret":"one"},
                {"target":"/b","webhook_gid":"2","secret":"two"},
                {"target":"/c","webhook_gid":null,"secret":"three"}]}"#,
        )
        .unwrap();
        let store = FileSecretStore::open(&path).await.unwrap();
        store.save(record("/a", "4", "four")).await.unwrap();
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written["version"], 2);
        assert_eq!(written["webhooks"].as_array().unwrap().len(), 4);
        let reopened = FileSecretStore::open(&path).await.unwrap();
        assert_eq!(reopened.secrets_for(&key("/a")).await.unwrap().len(), 2);
        assert_eq!(
            reopened.by_gid("2").await.unwrap().unwrap().secret.expose(),
            "two"
        );
        assert_eq!(reopened.secrets_for(&key("/c")).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_store_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        std::fs::write(&path, "not json").unwrap();
        let err = FileSecretStore::open(&path).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not json");
        std::fs::write(&path, r#"{"version":9,"webhooks":[]}"#).unwrap();
        let err = FileSecretStore::open(&path).await.unwrap_err();
        assert!(err.to_string().contains("version 9"), "{err}");
    }
}
