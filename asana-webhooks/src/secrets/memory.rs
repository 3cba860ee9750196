//! An in-process [`SecretStore`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::registry::Registry;
use super::{
    Gap, GapStatus, HandshakeVerdict, RecoveryStore, RegistrationId, SecretStore, StoreError,
    StoredSecret, SyncToken, TargetKey,
};
use crate::hook_secret::HookSecret;

/// Secrets and registrations in memory: for tests and single-process apps
/// that re-create their webhooks at start. Everything is lost on exit; use
/// [`super::FileSecretStore`] to keep secrets.
#[derive(Clone, Default)]
pub struct MemorySecretStore {
    state: Arc<Mutex<Registry>>,
}

impl std::fmt::Debug for MemorySecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.with(|s| {
            f.debug_struct("MemorySecretStore")
                .field("secrets", &s.records.len())
                .field("open_windows", &s.open_windows())
                .finish()
        })
    }
}

impl MemorySecretStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        // Each registry operation leaves it consistent before it can panic,
        // so a poisoned lock is still safe to use.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }
}

impl SecretStore for MemorySecretStore {
    async fn open_registration(
        &self,
        target: &TargetKey,
        ttl: Duration,
    ) -> Result<RegistrationId, StoreError> {
        Ok(self.with(|s| s.open_registration(target, ttl)))
    }

    async fn accept_handshake(
        &self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> Result<HandshakeVerdict, StoreError> {
        Ok(self.with(|s| s.accept_handshake(target, secret)))
    }

    async fn pending_secrets(&self, target: &TargetKey) -> Result<Vec<HookSecret>, StoreError> {
        Ok(self.with(|s| s.pending_secrets(target)))
    }

    async fn confirm(
        &self,
        _registration: &RegistrationId,
        record: StoredSecret,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|s| s.confirm(record)))
    }

    async fn close_registration(
        &self,
        registration: &RegistrationId,
    ) -> Result<Vec<HookSecret>, StoreError> {
        Ok(self.with(|s| s.close_registration(registration)))
    }

    async fn save(&self, record: StoredSecret) -> Result<(), StoreError> {
        self.with(|s| s.save(record));
        Ok(())
    }

    async fn secrets_for(&self, target: &TargetKey) -> Result<Vec<StoredSecret>, StoreError> {
        Ok(self.with(|s| s.secrets_for(target)))
    }

    async fn by_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        Ok(self.with(|s| s.by_gid(gid)))
    }

    async fn remove_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        Ok(self.with(|s| s.remove_gid(gid)))
    }
}

impl RecoveryStore for MemorySecretStore {
    async fn record_gap(&self, gap: Gap) -> Result<bool, StoreError> {
        Ok(self.with(|s| s.recovery.record_gap(gap, Utc::now())))
    }

    async fn gaps(&self) -> Result<Vec<Gap>, StoreError> {
        Ok(self.with(|s| s.recovery.gaps.clone()))
    }

    async fn set_gap_status(&self, id: &str, status: GapStatus) -> Result<bool, StoreError> {
        Ok(self.with(|s| s.recovery.set_gap_status(id, status)))
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        Ok(self.with(|s| s.recovery.try_lease(name, holder, ttl, Utc::now())))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.with(|s| s.recovery.release_lease(name, holder));
        Ok(())
    }

    async fn sync_token(&self, resource: &str) -> Result<Option<SyncToken>, StoreError> {
        Ok(self.with(|s| s.recovery.sync_tokens.get(resource).cloned()))
    }

    async fn save_sync_token(
        &self,
        resource: &str,
        token: &str,
        stream_since: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.with(|s| {
            s.recovery
                .save_sync_token(resource, token, stream_since, Utc::now())
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> TargetKey {
        TargetKey::from_path_and_query(s)
    }

    fn secret(s: &str) -> HookSecret {
        HookSecret::new(s)
    }

    const TTL: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_handshake_is_accepted_only_while_a_registration_is_open() {
        let store = MemorySecretStore::new();
        assert_eq!(
            store
                .accept_handshake(&key("/a"), &secret("s"))
                .await
                .unwrap(),
            HandshakeVerdict::NoRegistration
        );
        let id = store.open_registration(&key("/a"), TTL).await.unwrap();
        assert_eq!(
            store
                .accept_handshake(&key("/b"), &secret("s"))
                .await
                .unwrap(),
            HandshakeVerdict::NoRegistration
        );
        assert_eq!(
            store
                .accept_handshake(&key("/a"), &secret("s"))
                .await
                .unwrap(),
            HandshakeVerdict::Accepted { suspicious: false }
        );
        assert_eq!(
            store.pending_secrets(&key("/a")).await.unwrap(),
            [secret("s")]
        );
        assert_eq!(
            store.close_registration(&id).await.unwrap(),
            [secret("s")],
            "the unconfirmed secret is returned as a candidate"
        );
        assert!(store.pending_secrets(&key("/a")).await.unwrap().is_empty());
        assert!(
            store.secrets_for(&key("/a")).await.unwrap().is_empty(),
            "a handshake alone stores nothing"
        );
    }

    #[tokio::test]
    async fn concurrent_registrations_each_confirm_their_own_secret() {
        let store = MemorySecretStore::new();
        let target = key("/a");
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(store.open_registration(&target, TTL).await.unwrap());
        }
        for n in 0..4 {
            let verdict = store
                .accept_handshake(&key("/a"), &secret(&format!("s{n}")))
                .await
                .unwrap();
            assert_eq!(verdict, HandshakeVerdict::Accepted { suspicious: false });
        }
        assert_eq!(
            store
                .accept_handshake(&key("/a"), &secret("extra"))
                .await
                .unwrap(),
            HandshakeVerdict::Accepted { suspicious: true },
            "a fifth handshake for four registrations is suspicious"
        );
        for (n, id) in ids.iter().enumerate() {
            let record = StoredSecret::new(key("/a"), format!("{n}"), secret(&format!("s{n}")));
            assert!(store.confirm(id, record).await.unwrap());
        }
        assert!(
            !store
                .confirm(
                    &ids[0],
                    StoredSecret::new(key("/a"), "9", secret("never-sent"))
                )
                .await
                .unwrap(),
            "a secret no handshake brought is not confirmed"
        );
        for id in &ids {
            store.close_registration(id).await.unwrap();
        }
        let stored = store.secrets_for(&key("/a")).await.unwrap();
        assert_eq!(stored.len(), 4, "four webhooks, four secrets on one target");
        assert!(store.pending_secrets(&key("/a")).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn registrations_expire_with_their_pending_secrets() {
        let store = MemorySecretStore::new();
        store
            .open_registration(&key("/a"), Duration::from_secs(1))
            .await
            .unwrap();
        store
            .accept_handshake(&key("/a"), &secret("p"))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            store
                .accept_handshake(&key("/a"), &secret("x"))
                .await
                .unwrap(),
            HandshakeVerdict::NoRegistration
        );
        assert!(store.pending_secrets(&key("/a")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn several_webhooks_on_one_target_keep_their_own_secrets() {
        let store = MemorySecretStore::new();
        store
            .save(StoredSecret::new(key("/a"), "1", secret("one")))
            .await
            .unwrap();
        store
            .save(StoredSecret::new(key("/a"), "2", secret("two")))
            .await
            .unwrap();
        assert_eq!(store.secrets_for(&key("/a")).await.unwrap().len(), 2);
        // Saving webhook 1 again replaces its own record only.
        store
            .save(StoredSecret::new(key("/a"), "1", secret("one-b")))
            .await
            .unwrap();
        assert_eq!(store.secrets_for(&key("/a")).await.unwrap().len(), 2);
        let removed = store.remove_gid("1").await.unwrap().unwrap();
        assert_eq!(removed.secret.expose(), "one-b");
        let left = store.secrets_for(&key("/a")).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].webhook_gid.as_deref(), Some("2"));
        assert!(!format!("{store:?} {left:?}").contains("two"));
    }
}
