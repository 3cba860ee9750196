//! A [`SecretStore`] that persists secrets in a JSON file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{MemorySecretStore, SecretStore, StoreError, StoredSecret, TargetKey};
use crate::secret::HookSecret;

/// Secrets in a JSON file that survives restarts; windows in memory.
///
/// Every change rewrites the file atomically: a temporary file beside it is
/// written, flushed to disk and renamed over the old one, so a crash leaves
/// the old or the new contents, never a torn file. The file is created with
/// mode 0600 (readable by its owner only). One process should own the file;
/// for several receiver instances implement [`SecretStore`] over a shared
/// database.
#[derive(Clone)]
pub struct FileSecretStore {
    path: Arc<PathBuf>,
    memory: MemorySecretStore,
    /// Serialises writes so that the file always holds the latest state.
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Serialize, Deserialize)]
struct FileContents {
    version: u32,
    webhooks: Vec<StoredSecret>,
}

const FILE_VERSION: u32 = 1;

impl std::fmt::Debug for FileSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSecretStore")
            .field("path", &self.path)
            .field("memory", &self.memory)
            .finish()
    }
}

impl FileSecretStore {
    /// Opens the store at `path`, loading it when the file exists. A file
    /// that is not a secret store is reported, never overwritten.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let path = path.into();
        let memory = MemorySecretStore::new();
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let contents: FileContents =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if contents.version != FILE_VERSION {
                    return Err(StoreError::Corrupt {
                        path: path.display().to_string(),
                        reason: format!(
                            "version {} (this crate reads version {FILE_VERSION})",
                            contents.version
                        ),
                    });
                }
                memory.replace_records(contents.webhooks);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
        Ok(Self {
            path: Arc::new(path),
            memory,
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn persist(&self) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock().await;
        let contents = FileContents {
            version: FILE_VERSION,
            webhooks: self.memory.records(),
        };
        let bytes = serde_json::to_vec_pretty(&contents).expect("secrets serialise");
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .expect("the write task does not panic")
            .map_err(|source| StoreError::Io {
                path: self.path.display().to_string(),
                source,
            })
    }
}

/// The temporary file a write goes through before it is renamed into place.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes the full new contents to a temporary file and flushes it to disk.
fn write_temp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let temp = temp_path(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(temp)
}

/// Renames the temporary file over `path` and flushes the directory entry.
fn commit(temp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(temp, path)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = write_temp(path, bytes)?;
    commit(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

impl SecretStore for FileSecretStore {
    async fn open_window(&self, target: &TargetKey, ttl: Duration) -> Result<(), StoreError> {
        self.memory.open_window(target, ttl).await
    }

    async fn accept_handshake(
        &self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> Result<bool, StoreError> {
        self.memory.accept_handshake(target, secret).await
    }

    async fn pending_secret(&self, target: &TargetKey) -> Result<Option<HookSecret>, StoreError> {
        self.memory.pending_secret(target).await
    }

    async fn close_window(&self, target: &TargetKey) -> Result<Option<HookSecret>, StoreError> {
        self.memory.close_window(target).await
    }

    async fn save(&self, record: StoredSecret) -> Result<(), StoreError> {
        self.memory.save(record).await?;
        self.persist().await
    }

    async fn by_target(&self, target: &TargetKey) -> Result<Option<StoredSecret>, StoreError> {
        self.memory.by_target(target).await
    }

    async fn by_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        self.memory.by_gid(gid).await
    }

    async fn remove_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        let removed = self.memory.remove_gid(gid).await?;
        if removed.is_some() {
            self.persist().await?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(target: &str, gid: &str, secret: &str) -> StoredSecret {
        StoredSecret {
            target: TargetKey::from_path_and_query(target),
            webhook_gid: Some(gid.into()),
            secret: HookSecret::new(secret),
        }
    }

    #[tokio::test]
    async fn a_crash_between_write_and_rename_leaves_the_old_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        let store = FileSecretStore::open(&path).await.unwrap();
        store.save(record("/a", "1", "old-secret")).await.unwrap();

        // The next write got as far as its temporary file, then the process died.
        let half =
            br#"{"version":1,"webhooks":[{"target":"/a","webhook_gid":"1","secret":"new-sec"#;
        let temp = write_temp(&path, half).unwrap();
        assert!(temp.exists());

        let reopened = FileSecretStore::open(&path).await.unwrap();
        let found = reopened.by_gid("1").await.unwrap().unwrap();
        assert_eq!(found.secret.expose(), "old-secret");

        // The next successful save replaces the leftover and wins.
        reopened
            .save(record("/a", "1", "new-secret"))
            .await
            .unwrap();
        let again = FileSecretStore::open(&path).await.unwrap();
        assert_eq!(
            again
                .by_target(&TargetKey::from_path_and_query("/a"))
                .await
                .unwrap()
                .unwrap()
                .secret
                .expose(),
            "new-secret"
        );
        assert!(!temp.exists(), "the rename consumed the temporary file");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        FileSecretStore::open(&path)
            .await
            .unwrap()
            .save(record("/a", "1", "s"))
            .await
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_store_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        std::fs::write(&path, "not json").unwrap();
        let err = FileSecretStore::open(&path).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not json");
    }
}
