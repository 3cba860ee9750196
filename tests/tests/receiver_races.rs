//! Verification sees one consistent state of the secret store: a confirm
//! that lands between the receiver's reads never gets a genuine delivery
//! refused, and pending secrets cost a bounded amount of work whatever a
//! flood of handshakes left behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use asana_webhooks::HookSecret;
use asana_webhooks::receiver::{Notification, Notifications, Receiver};
use asana_webhooks::secrets::{
    HandshakeVerdict, MAX_PENDING_PER_TARGET, MemorySecretStore, RegistrationId, SecretStore,
    StoreError, StoredSecret, TargetKey,
};
use asana_webhooks_tests::{deliver, hmac_hex, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A memory store whose first `secrets_for` after `arm` lets a confirm land
/// right after it has read: the receiver's next read sees the secret no
/// longer pending but stored, as when the create's 201 arrives mid-request.
#[derive(Clone)]
struct ConfirmBetweenReads {
    inner: MemorySecretStore,
    armed: Arc<AtomicBool>,
    registration: Arc<std::sync::Mutex<Option<(RegistrationId, StoredSecret)>>>,
}

impl ConfirmBetweenReads {
    fn new() -> Self {
        Self {
            inner: MemorySecretStore::new(),
            armed: Arc::default(),
            registration: Arc::default(),
        }
    }

    fn arm(&self, registration: RegistrationId, record: StoredSecret) {
        *self.registration.lock().unwrap() = Some((registration, record));
        self.armed.store(true, Ordering::SeqCst);
    }
}

impl SecretStore for ConfirmBetweenReads {
    async fn open_registration(
        &self,
        target: &TargetKey,
        ttl: Duration,
    ) -> Result<RegistrationId, StoreError> {
        self.inner.open_registration(target, ttl).await
    }
    async fn accept_handshake(
        &self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> Result<HandshakeVerdict, StoreError> {
        self.inner.accept_handshake(target, secret).await
    }
    async fn pending_secrets(&self, target: &TargetKey) -> Result<Vec<HookSecret>, StoreError> {
        self.inner.pending_secrets(target).await
    }
    async fn confirm(
        &self,
        registration: &RegistrationId,
        record: StoredSecret,
    ) -> Result<bool, StoreError> {
        self.inner.confirm(registration, record).await
    }
    async fn close_registration(
        &self,
        registration: &RegistrationId,
    ) -> Result<Vec<HookSecret>, StoreError> {
        self.inner.close_registration(registration).await
    }
    async fn save(&self, record: StoredSecret) -> Result<(), StoreError> {
        self.inner.save(record).await
    }
    async fn secrets_for(&self, target: &TargetKey) -> Result<Vec<StoredSecret>, StoreError> {
        let read = self.inner.secrets_for(target).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            let (registration, record) = self.registration.lock().unwrap().take().unwrap();
            assert!(self.inner.confirm(&registration, record).await.unwrap());
        }
        read
    }
    async fn by_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        self.inner.by_gid(gid).await
    }
    async fn remove_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        self.inner.remove_gid(gid).await
    }
}

async fn receiver<S: SecretStore>(store: S) -> (String, Receiver<S>, Notifications) {
    let (receiver, notifications) = Receiver::new(store);
    let addr = serve(axum::Router::new().nest("/hooks", receiver.router())).await;
    (format!("http://{addr}/hooks"), receiver, notifications)
}

const EVENT: &str = r#"{"events":[{"action":"changed","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}]}"#;

/// Opens a registration for `target` and has a handshake with `secret`
/// accepted, as the create through the handshake does.
async fn pending(store: &ConfirmBetweenReads, target: &TargetKey, secret: &str) -> RegistrationId {
    let registration = store
        .open_registration(target, Duration::from_secs(60))
        .await
        .unwrap();
    let verdict = store
        .accept_handshake(target, &HookSecret::new(secret))
        .await
        .unwrap();
    assert!(matches!(verdict, HandshakeVerdict::Accepted { .. }));
    registration
}

async fn events_arrive(notifications: &mut Notifications) {
    let notification = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("a notification")
        .expect("the queue is open");
    assert!(matches!(notification, Notification::Events { .. }));
}

#[tokio::test]
async fn a_genuine_delivery_is_never_refused_while_its_secret_turns_from_pending_to_confirmed() {
    // The target's only webhook: its secret is pending when the receiver
    // first reads the stored ones, and confirmed when it reads the pending.
    let store = ConfirmBetweenReads::new();
    let (base, _receiver, mut notifications) = receiver(store.clone()).await;
    let target = TargetKey::from_path_and_query("/hooks/first");
    let registration = pending(&store, &target, "first-secret").await;
    let record = StoredSecret::new(target.clone(), "1", HookSecret::new("first-secret"));
    store.arm(registration, record);
    let signature = hmac_hex("first-secret", EVENT.as_bytes());
    let status = deliver(&format!("{base}/first"), EVENT.as_bytes(), Some(&signature)).await;
    assert_eq!(status, 200, "no webhook secret is known for this target?");
    events_arrive(&mut notifications).await;
}

#[tokio::test]
async fn a_second_webhooks_delivery_is_never_refused_while_its_secret_is_confirmed() {
    // The target has a webhook already; a second one on another resource
    // is being confirmed as its first event arrives.
    let store = ConfirmBetweenReads::new();
    let (base, _receiver, mut notifications) = receiver(store.clone()).await;
    let target = TargetKey::from_path_and_query("/hooks/second");
    store
        .save(StoredSecret::new(
            target.clone(),
            "1",
            HookSecret::new("older"),
        ))
        .await
        .unwrap();
    let registration = pending(&store, &target, "newer").await;
    store.arm(
        registration,
        StoredSecret::new(target.clone(), "2", HookSecret::new("newer")),
    );
    let signature = hmac_hex("newer", EVENT.as_bytes());
    let status = deliver(
        &format!("{base}/second"),
        EVENT.as_bytes(),
        Some(&signature),
    )
    .await;
    assert_eq!(status, 200, "invalid X-Hook-Signature?");
    events_arrive(&mut notifications).await;
}

#[tokio::test]
async fn a_handshake_flood_leaves_every_delivery_bounded_work() {
    let store = MemorySecretStore::new();
    let (base, receiver, _notifications) = receiver(store.clone()).await;
    let target = TargetKey::from_path_and_query("/hooks/flooded");
    let registration = store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    let url = format!("{base}/flooded");
    let http = reqwest::Client::new();
    let handshake = |secret: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(&url)
                .header("X-Hook-Secret", secret)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Forged handshakes past the bound, then Asana's, then more forged.
    let flood = 2 * MAX_PENDING_PER_TARGET;
    for n in 0..flood {
        assert_eq!(handshake(format!("{n:064x}")).await, 200);
    }
    assert_eq!(handshake("asana".repeat(12)).await, 200);
    for n in flood..flood + 10 {
        assert_eq!(handshake(format!("{n:064x}")).await, 200);
    }
    // Secrets Asana would never send are refused outright.
    assert_eq!(handshake("x".repeat(300)).await, 400);
    assert_eq!(handshake("not a secret".into()).await, 400);
    // Only the bound is kept whole (for heartbeats)...
    assert_eq!(
        store.pending_secrets(&target).await.unwrap().len(),
        MAX_PENDING_PER_TARGET
    );
    // ...and a large body to a target with only pending secrets is refused
    // after its first bytes: the server answers before the rest is sent,
    // so it was never read, let alone hashed once per pending secret.
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches("/hooks")
        .to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /hooks/flooded HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-hook-signature: {}\r\ncontent-length: {}\r\n\r\n",
        "0".repeat(64),
        1 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b' '; 4096]).await.unwrap();
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered before the body was sent")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Asana's secret, the 513th handshake, is still confirmed by its 201.
    let record = StoredSecret::new(target.clone(), "9", HookSecret::new("asana".repeat(12)));
    assert!(
        receiver
            .store()
            .confirm(&registration, record)
            .await
            .unwrap()
    );
    let signature = hmac_hex(&"asana".repeat(12), EVENT.as_bytes());
    assert_eq!(deliver(&url, EVENT.as_bytes(), Some(&signature)).await, 200);
}

#[tokio::test]
async fn an_honest_failure_leaves_nothing_that_blocks_a_later_recovery() {
    // A create whose handshake was echoed and then refused by Asana (no
    // webhook made): its handshake is forgotten, so a later create that
    // dies before its 201 finds only its own handshake written down.
    use asana_webhooks::HandshakeExt;
    use asana_webhooks::secrets::FileSecretStore;
    use asana_webhooks_tests::{CreateBehaviour, FakeAsana};

    let dir = tempfile::tempdir().unwrap();
    let store = FileSecretStore::open(dir.path().join("secrets.json"))
        .await
        .unwrap();
    let (base, _receiver, _notifications) = receiver(store.clone()).await;
    let target = format!("{base}/honest");
    let key = TargetKey::from_url(&target).unwrap();
    let asana = FakeAsana::start().await;
    asana.set_behaviour(CreateBehaviour::HandshakeThenRefuse);
    let refused = asana
        .client()
        .create_webhook_with_handshake(&store, "41", &target)
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.status().map(|s| s.as_u16()), Some(400), "{refused}");
    assert!(
        store.unconfirmed_handshakes(&key).await.unwrap().is_empty(),
        "the refused create's handshake is nobody's secret"
    );
    // A create that succeeds leaves nothing behind either.
    asana.set_behaviour(CreateBehaviour::Normal);
    asana
        .client()
        .create_webhook_with_handshake(&store, "42", &target)
        .send()
        .await
        .unwrap();
    assert!(store.unconfirmed_handshakes(&key).await.unwrap().is_empty());
}
