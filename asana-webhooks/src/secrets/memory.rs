//! An in-process [`SecretStore`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{SecretStore, StoreError, StoredSecret, TargetKey};
use crate::secret::HookSecret;

/// Secrets and windows in memory: for tests, single-process apps, and as the
/// window half of [`super::FileSecretStore`]. Everything is lost on exit.
#[derive(Clone, Default)]
pub struct MemorySecretStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    records: HashMap<TargetKey, StoredSecret>,
    windows: HashMap<TargetKey, Window>,
}

struct Window {
    expires_at: Instant,
    handshake: Option<HookSecret>,
}

impl State {
    fn open_window(&mut self, target: &TargetKey) -> Option<&mut Window> {
        let now = Instant::now();
        self.windows.retain(|_, w| w.expires_at > now);
        self.windows.get_mut(target)
    }
}

impl std::fmt::Debug for MemorySecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock().expect("store lock");
        f.debug_struct("MemorySecretStore")
            .field("secrets", &state.records.len())
            .field("open_windows", &state.windows.len())
            .finish()
    }
}

impl MemorySecretStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding the lock cannot leave the maps half-updated
        // (each operation is one insert or remove), so poisoning is ignored.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    /// Replaces every record at once (used by the file store on load).
    pub(crate) fn replace_records(&self, records: Vec<StoredSecret>) {
        self.with(|s| s.records = records.into_iter().map(|r| (r.target.clone(), r)).collect());
    }

    /// Every record, sorted by target (used by the file store to persist).
    pub(crate) fn records(&self) -> Vec<StoredSecret> {
        let mut all: Vec<StoredSecret> = self.with(|s| s.records.values().cloned().collect());
        all.sort_by(|a, b| a.target.cmp(&b.target));
        all
    }
}

impl SecretStore for MemorySecretStore {
    async fn open_window(&self, target: &TargetKey, ttl: Duration) -> Result<(), StoreError> {
        self.with(|s| {
            if s.open_window(target).is_some() {
                return Err(StoreError::WindowBusy(target.clone()));
            }
            s.windows.insert(
                target.clone(),
                Window {
                    expires_at: Instant::now() + ttl,
                    handshake: None,
                },
            );
            Ok(())
        })
    }

    async fn accept_handshake(
        &self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|s| match s.open_window(target) {
            Some(window) => {
                window.handshake = Some(secret.clone());
                true
            }
            None => false,
        }))
    }

    async fn pending_secret(&self, target: &TargetKey) -> Result<Option<HookSecret>, StoreError> {
        Ok(self.with(|s| s.open_window(target).and_then(|w| w.handshake.clone())))
    }

    async fn close_window(&self, target: &TargetKey) -> Result<Option<HookSecret>, StoreError> {
        Ok(self.with(|s| s.windows.remove(target).and_then(|w| w.handshake)))
    }

    async fn save(&self, record: StoredSecret) -> Result<(), StoreError> {
        self.with(|s| {
            if let Some(gid) = &record.webhook_gid {
                s.records.retain(|_, r| r.webhook_gid.as_ref() != Some(gid));
            }
            s.records.insert(record.target.clone(), record);
        });
        Ok(())
    }

    async fn by_target(&self, target: &TargetKey) -> Result<Option<StoredSecret>, StoreError> {
        Ok(self.with(|s| s.records.get(target).cloned()))
    }

    async fn by_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        Ok(self.with(|s| {
            s.records
                .values()
                .find(|r| r.webhook_gid.as_deref() == Some(gid))
                .cloned()
        }))
    }

    async fn remove_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        Ok(self.with(|s| {
            let target = s
                .records
                .values()
                .find(|r| r.webhook_gid.as_deref() == Some(gid))?
                .target
                .clone();
            s.records.remove(&target)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> TargetKey {
        TargetKey::from_path_and_query(s)
    }

    #[tokio::test]
    async fn a_handshake_is_accepted_only_inside_an_open_window() {
        let store = MemorySecretStore::new();
        let secret = HookSecret::new("abc");
        assert!(!store.accept_handshake(&key("/a"), &secret).await.unwrap());
        store
            .open_window(&key("/a"), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(matches!(
            store.open_window(&key("/a"), Duration::from_secs(5)).await,
            Err(StoreError::WindowBusy(_))
        ));
        assert!(!store.accept_handshake(&key("/b"), &secret).await.unwrap());
        assert!(store.accept_handshake(&key("/a"), &secret).await.unwrap());
        assert_eq!(
            store.pending_secret(&key("/a")).await.unwrap(),
            Some(secret.clone())
        );
        assert_eq!(
            store.close_window(&key("/a")).await.unwrap(),
            Some(secret.clone())
        );
        assert!(!store.accept_handshake(&key("/a"), &secret).await.unwrap());
        assert_eq!(
            store.by_target(&key("/a")).await.unwrap(),
            None,
            "a handshake alone stores nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn windows_expire() {
        let store = MemorySecretStore::new();
        store
            .open_window(&key("/a"), Duration::from_secs(1))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            !store
                .accept_handshake(&key("/a"), &HookSecret::new("x"))
                .await
                .unwrap()
        );
        store
            .open_window(&key("/a"), Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn records_are_found_by_target_and_gid() {
        let store = MemorySecretStore::new();
        let record = StoredSecret {
            target: key("/a"),
            webhook_gid: Some("1".into()),
            secret: HookSecret::new("topsecretvalue"),
        };
        store.save(record.clone()).await.unwrap();
        assert!(!format!("{store:?} {record:?}").contains("topsecretvalue"));
        assert_eq!(store.by_gid("1").await.unwrap(), Some(record.clone()));
        assert_eq!(
            store.by_target(&key("/a")).await.unwrap(),
            Some(record.clone())
        );
        assert_eq!(store.remove_gid("1").await.unwrap(), Some(record));
        assert_eq!(store.by_target(&key("/a")).await.unwrap(), None);
    }
}
