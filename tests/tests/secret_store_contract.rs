//! The `SecretStore` contract, written once and run against every backend:
//! memory, file and PostgreSQL (a real server, started per test). What
//! only durable stores promise (surviving a restart, recovery records)
//! runs against the file and PostgreSQL stores.

use std::future::Future;
use std::time::Duration;

use asana_webhooks::HookSecret;
use asana_webhooks::postgres::PostgresSecretStore;
use asana_webhooks::secrets::{
    FileSecretStore, Gap, GapCause, GapStatus, HandshakeVerdict, MAX_PENDING_PER_TARGET,
    MAX_UNCONFIRMED_PER_TARGET, MemorySecretStore, RecoveryStore, SecretStore, StoredSecret,
    TargetKey,
};
use asana_webhooks::types::WebhookFilter;
use asana_webhooks_tests::postgres::Postgres;

/// A backend under test: a store, and a way to open it again as a
/// restarted process would.
trait Backend: Sized {
    type Store: SecretStore + RecoveryStore;
    fn start() -> impl Future<Output = Self>;
    fn store(&self) -> Self::Store;
    /// The store as a new process opens it; `None` for stores that do not
    /// outlive their process.
    fn reopen(&self) -> impl Future<Output = Option<Self::Store>>;
}

struct Memory(MemorySecretStore);

impl Backend for Memory {
    type Store = MemorySecretStore;
    async fn start() -> Self {
        Memory(MemorySecretStore::new())
    }
    fn store(&self) -> MemorySecretStore {
        self.0.clone()
    }
    async fn reopen(&self) -> Option<MemorySecretStore> {
        None
    }
}

struct File {
    dir: tempfile::TempDir,
    store: FileSecretStore,
}

impl Backend for File {
    type Store = FileSecretStore;
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = FileSecretStore::open(dir.path().join("secrets.json"))
            .await
            .unwrap();
        File { dir, store }
    }
    fn store(&self) -> FileSecretStore {
        self.store.clone()
    }
    async fn reopen(&self) -> Option<FileSecretStore> {
        Some(
            FileSecretStore::open(self.dir.path().join("secrets.json"))
                .await
                .unwrap(),
        )
    }
}

struct Pg {
    db: Postgres,
    store: PostgresSecretStore,
}

impl Backend for Pg {
    type Store = PostgresSecretStore;
    async fn start() -> Self {
        let db = Postgres::start();
        let store = PostgresSecretStore::new(db.pool().await);
        Pg { db, store }
    }
    fn store(&self) -> PostgresSecretStore {
        self.store.clone()
    }
    async fn reopen(&self) -> Option<PostgresSecretStore> {
        Some(PostgresSecretStore::new(self.db.pool().await))
    }
}

fn key(path: &str) -> TargetKey {
    TargetKey::from_path_and_query(path)
}

fn secret(n: impl std::fmt::Display) -> HookSecret {
    HookSecret::new(format!("{:0>64}", n.to_string()))
}

fn accepted(verdict: HandshakeVerdict) -> bool {
    matches!(verdict, HandshakeVerdict::Accepted { .. })
}

async fn a_handshake_is_accepted_only_during_a_registration<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    let target = key("/window");
    let verdict = store.accept_handshake(&target, &secret(1)).await.unwrap();
    assert_eq!(verdict, HandshakeVerdict::NoRegistration);
    let registration = store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(accepted(
        store.accept_handshake(&target, &secret(2)).await.unwrap()
    ));
    // Another target has no registration.
    let other = store.accept_handshake(&key("/other"), &secret(3)).await;
    assert_eq!(other.unwrap(), HandshakeVerdict::NoRegistration);
    // Pending, not stored: it verifies a heartbeat at most.
    assert_eq!(store.pending_secrets(&target).await.unwrap(), [secret(2)]);
    assert!(store.secrets_for(&target).await.unwrap().is_empty());
    // Closing returns it as a candidate; afterwards nothing is accepted.
    let candidates = store.close_registration(&registration).await.unwrap();
    assert_eq!(candidates, [secret(2)]);
    assert!(
        store
            .close_registration(&registration)
            .await
            .unwrap()
            .is_empty()
    );
    let late = store.accept_handshake(&target, &secret(4)).await.unwrap();
    assert_eq!(late, HandshakeVerdict::NoRegistration);
}

async fn only_the_secret_of_the_201_is_confirmed<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    let target = key("/confirm");
    let registration = store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    for n in [10, 11] {
        assert!(accepted(
            store.accept_handshake(&target, &secret(n)).await.unwrap()
        ));
    }
    let forged = StoredSecret::new(target.clone(), "1", secret(99));
    assert!(!store.confirm(&registration, forged).await.unwrap());
    assert!(store.by_gid("1").await.unwrap().is_none());
    let genuine = StoredSecret::new(target.clone(), "1", secret(11)).with_resource("77");
    assert!(store.confirm(&registration, genuine.clone()).await.unwrap());
    assert_eq!(store.by_gid("1").await.unwrap(), Some(genuine.clone()));
    assert_eq!(store.secrets_for(&target).await.unwrap(), [genuine]);
    // The confirmed secret is no longer pending; the other one still is.
    assert_eq!(store.pending_secrets(&target).await.unwrap(), [secret(10)]);
}

async fn several_webhooks_share_a_target_each_with_its_secret<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    let target = key("/shared");
    let a = StoredSecret::new(target.clone(), "1", secret(1)).with_resource("10");
    let b = StoredSecret::new(target.clone(), "2", secret(2)).with_resource("20");
    store.save(a.clone()).await.unwrap();
    store.save(b.clone()).await.unwrap();
    let mut both = store.secrets_for(&target).await.unwrap();
    both.sort_by(|x, y| x.webhook_gid.cmp(&y.webhook_gid));
    assert_eq!(both, [a.clone(), b.clone()]);
    // Saving a webhook's record again replaces it.
    let a2 = StoredSecret::new(target.clone(), "1", secret(3)).with_resource("10");
    store.save(a2.clone()).await.unwrap();
    assert_eq!(store.by_gid("1").await.unwrap(), Some(a2.clone()));
    assert_eq!(store.secrets_for(&target).await.unwrap().len(), 2);
    // Removing one keeps the other.
    assert_eq!(store.remove_gid("1").await.unwrap(), Some(a2));
    assert_eq!(store.secrets_for(&target).await.unwrap(), [b]);
    assert_eq!(store.remove_gid("1").await.unwrap(), None);
}

async fn a_flood_of_handshakes_keeps_a_bounded_pending_set_and_asanas_still_confirms<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    let target = key("/flood");
    let registration = store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    let flood = MAX_PENDING_PER_TARGET + 40;
    for n in 0..flood {
        assert!(accepted(
            store.accept_handshake(&target, &secret(n)).await.unwrap()
        ));
    }
    assert_eq!(
        store.pending_secrets(&target).await.unwrap().len(),
        MAX_PENDING_PER_TARGET
    );
    // Asana's came after the bound: its 201 still confirms it.
    let asana = StoredSecret::new(target.clone(), "5", secret(flood - 1));
    assert!(store.confirm(&registration, asana).await.unwrap());
    assert_eq!(
        store.by_gid("5").await.unwrap().unwrap().secret,
        secret(flood - 1)
    );
}

async fn durable_stores_keep_secrets_and_echoed_handshakes_across_a_restart<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    let target = key("/durable");
    let saved = StoredSecret::new(target.clone(), "1", secret(1)).with_resource("10");
    store.save(saved.clone()).await.unwrap();
    store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(accepted(
        store.accept_handshake(&target, &secret(2)).await.unwrap()
    ));
    let Some(restarted) = backend.reopen().await else {
        // Not durable: it keeps no recovery records either.
        assert!(
            store
                .unconfirmed_handshakes(&target)
                .await
                .unwrap()
                .is_empty()
        );
        return;
    };
    assert_eq!(restarted.by_gid("1").await.unwrap(), Some(saved));
    let unconfirmed = restarted.unconfirmed_handshakes(&target).await.unwrap();
    assert_eq!(unconfirmed.len(), 1);
    assert_eq!(unconfirmed[0].secret, secret(2));
    // Saving the webhook's secret forgets the record.
    let record = StoredSecret::new(target.clone(), "2", secret(2));
    restarted.save(record).await.unwrap();
    assert!(
        restarted
            .unconfirmed_handshakes(&target)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn durable_stores_write_down_a_bounded_number_and_the_span_of_the_rest<B: Backend>() {
    let backend = B::start().await;
    if backend.reopen().await.is_none() {
        return;
    }
    let store = backend.store();
    let target = key("/bounded");
    store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    for n in 0..MAX_UNCONFIRMED_PER_TARGET + 5 {
        assert!(accepted(
            store.accept_handshake(&target, &secret(n)).await.unwrap()
        ));
    }
    assert_eq!(
        store.unconfirmed_handshakes(&target).await.unwrap().len(),
        MAX_UNCONFIRMED_PER_TARGET
    );
    let span = store.unrecorded_handshakes(&target).await.unwrap();
    let span = span.expect("the span of those not written down");
    assert!(span.first <= span.last);
    assert!(
        store
            .unrecorded_handshakes(&key("/elsewhere"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_registration_that_ended_with_asanas_answer_leaves_no_recovery_records<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    let target = key("/released");
    let first = store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(accepted(
        store.accept_handshake(&target, &secret(1)).await.unwrap()
    ));
    let second = store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(accepted(
        store.accept_handshake(&target, &secret(2)).await.unwrap()
    ));
    let written = |store: B::Store| async move {
        let mut secrets: Vec<HookSecret> = store
            .unconfirmed_handshakes(&key("/released"))
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.secret)
            .collect();
        secrets.sort_by(|a, b| a.expose().cmp(b.expose()));
        secrets
    };
    store.release_handshakes(&first).await.unwrap();
    if backend.reopen().await.is_none() {
        assert!(written(store.clone()).await.is_empty());
        return;
    }
    // The second may still be the one arriving while both were open.
    assert_eq!(written(store.clone()).await, [secret(2)]);
    store.release_handshakes(&second).await.unwrap();
    assert!(written(store.clone()).await.is_empty());
}

async fn a_201_after_its_registration_expired_confirms_a_written_down_handshake<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    let target = key("/expired");
    let registration = store
        .open_registration(&target, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(accepted(
        store.accept_handshake(&target, &secret(7)).await.unwrap()
    ));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(store.pending_secrets(&target).await.unwrap().is_empty());
    let record = StoredSecret::new(target.clone(), "7", secret(7));
    let confirmed = store.confirm(&registration, record).await.unwrap();
    // Durable stores wrote the echoed handshake down: the 201 confirms it.
    // A store that keeps nothing beyond the window cannot.
    assert_eq!(confirmed, backend.reopen().await.is_some());
    let forged = StoredSecret::new(target.clone(), "8", secret(8));
    assert!(!store.confirm(&registration, forged).await.unwrap());
}

/// A second handle on the same storage, as another instance holds it (the
/// memory store's other handles share it within the process).
async fn other_instance<B: Backend>(backend: &B) -> B::Store {
    backend.reopen().await.unwrap_or_else(|| backend.store())
}

async fn what_a_webhook_was_created_with_is_kept_with_its_secret<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    let target = key("/made");
    let filters = vec![WebhookFilter::new("task", "changed").with_fields(["due_on"])];
    let url = "https://hooks.example.com/made";
    let registration = store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(accepted(
        store.accept_handshake(&target, &secret(1)).await.unwrap()
    ));
    let confirmed = StoredSecret::new(target.clone(), "1", secret(1))
        .with_resource("42")
        .with_creation(url, filters.clone());
    assert!(
        store
            .confirm(&registration, confirmed.clone())
            .await
            .unwrap()
    );
    let saved = StoredSecret::new(target.clone(), "2", secret(2))
        .with_resource("43")
        .with_creation(url, Vec::new());
    store.save(saved.clone()).await.unwrap();
    let plain = StoredSecret::new(target.clone(), "3", secret(3));
    store.save(plain.clone()).await.unwrap();
    for store in [Some(store), backend.reopen().await].into_iter().flatten() {
        assert_eq!(store.by_gid("1").await.unwrap().as_ref(), Some(&confirmed));
        assert!(store.by_gid("1").await.unwrap().unwrap().can_recreate());
        assert_eq!(store.by_gid("2").await.unwrap().as_ref(), Some(&saved));
        assert_eq!(store.by_gid("3").await.unwrap().as_ref(), Some(&plain));
        assert!(!plain.can_recreate());
        assert_eq!(
            store.secrets_for(&target).await.unwrap(),
            [confirmed.clone(), saved.clone(), plain.clone()]
        );
    }
}

async fn a_gap_is_recorded_once_and_keeps_its_status<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    let to = chrono::Utc::now();
    let from = Some(to - chrono::Duration::hours(30));
    let cause = GapCause::WebhookGone {
        old_gid: "1".into(),
        new_gid: "2".into(),
    };
    let gap = Gap::open("webhook-gone:1", "42", cause, from, to);
    assert!(store.record_gap(gap.clone()).await.unwrap());
    let again = Gap::open("webhook-gone:1", "43", GapCause::SyncTokenExpired, None, to);
    assert!(!store.record_gap(again).await.unwrap(), "the first is kept");
    let other = Gap::open("sync:42", "42", GapCause::SyncTokenExpired, from, to);
    assert!(store.record_gap(other.clone()).await.unwrap());
    let recovered = GapStatus::Recovered { at: to };
    assert!(
        store
            .set_gap_status("sync:42", recovered.clone())
            .await
            .unwrap()
    );
    assert!(!store.set_gap_status("none", GapStatus::Open).await.unwrap());
    let seen = other_instance(&backend).await.gaps().await.unwrap();
    let ids: Vec<_> = seen.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["webhook-gone:1", "sync:42"], "oldest first");
    assert_eq!(seen[0], gap);
    assert_eq!(seen[1].status, recovered);
    assert_eq!(seen[1].from, other.from);
}

async fn a_lease_has_one_holder_among_instances_until_it_expires<B: Backend>() {
    let backend = B::start().await;
    let ttl = Duration::from_secs(60);
    let mut racers = Vec::new();
    for n in 0..8 {
        let store = if n % 2 == 0 {
            backend.store()
        } else {
            other_instance(&backend).await
        };
        racers.push(tokio::spawn(async move {
            store
                .try_lease("recreate:1", &format!("instance-{n}"), ttl)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for racer in racers {
        winners += usize::from(racer.await.unwrap());
    }
    assert_eq!(
        winners, 1,
        "exactly one of 8 racing instances takes the lease"
    );
    let store = backend.store();
    assert!(
        store
            .try_lease("other", "a", Duration::from_millis(300))
            .await
            .unwrap()
    );
    assert!(!store.try_lease("other", "b", ttl).await.unwrap());
    assert!(
        store
            .try_lease("other", "a", Duration::from_millis(300))
            .await
            .unwrap(),
        "the holder extends it"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        store.try_lease("other", "b", ttl).await.unwrap(),
        "an expired lease is free"
    );
    store.release_lease("other", "a").await.unwrap();
    assert!(
        !store.try_lease("other", "a", ttl).await.unwrap(),
        "only its holder releases it"
    );
    store.release_lease("other", "b").await.unwrap();
    assert!(store.try_lease("other", "a", ttl).await.unwrap());
}

async fn a_sync_token_is_kept_per_resource_and_replaced<B: Backend>() {
    let backend = B::start().await;
    let store = backend.store();
    assert_eq!(store.sync_token("42").await.unwrap(), None);
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let since = chrono::DateTime::from_timestamp_millis(1_780_000_000_123).unwrap();
    store.save_sync_token("42", "first", before).await.unwrap();
    store.save_sync_token("43", "other", before).await.unwrap();
    store.save_sync_token("42", "second", since).await.unwrap();
    let other = other_instance(&backend).await;
    let token = other.sync_token("42").await.unwrap().unwrap();
    assert_eq!(token.token, "second");
    assert!(token.saved_at > before);
    assert_eq!(token.stream_since, since, "to the millisecond");
    assert_eq!(
        other.sync_token("43").await.unwrap().unwrap().token,
        "other"
    );
}

/// Runs every contract test against one backend.
macro_rules! contract {
    ($backend:ident, $module:ident) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn a_handshake_is_accepted_only_during_a_registration() {
                super::a_handshake_is_accepted_only_during_a_registration::<$backend>().await;
            }
            #[tokio::test]
            async fn only_the_secret_of_the_201_is_confirmed() {
                super::only_the_secret_of_the_201_is_confirmed::<$backend>().await;
            }
            #[tokio::test]
            async fn several_webhooks_share_a_target_each_with_its_secret() {
                super::several_webhooks_share_a_target_each_with_its_secret::<$backend>().await;
            }
            #[tokio::test]
            async fn a_flood_of_handshakes_keeps_a_bounded_pending_set_and_asanas_still_confirms()
            {
                super::a_flood_of_handshakes_keeps_a_bounded_pending_set_and_asanas_still_confirms::<
                    $backend,
                >()
                .await;
            }
            #[tokio::test]
            async fn durable_stores_keep_secrets_and_echoed_handshakes_across_a_restart() {
                super::durable_stores_keep_secrets_and_echoed_handshakes_across_a_restart::<
                    $backend,
                >()
                .await;
            }
            #[tokio::test]
            async fn durable_stores_write_down_a_bounded_number_and_the_span_of_the_rest() {
                super::durable_stores_write_down_a_bounded_number_and_the_span_of_the_rest::<
                    $backend,
                >()
                .await;
            }
            #[tokio::test]
            async fn a_registration_that_ended_with_asanas_answer_leaves_no_recovery_records() {
                super::a_registration_that_ended_with_asanas_answer_leaves_no_recovery_records::<
                    $backend,
                >()
                .await;
            }
            #[tokio::test]
            async fn what_a_webhook_was_created_with_is_kept_with_its_secret() {
                super::what_a_webhook_was_created_with_is_kept_with_its_secret::<$backend>().await;
            }
            #[tokio::test]
            async fn a_gap_is_recorded_once_and_keeps_its_status() {
                super::a_gap_is_recorded_once_and_keeps_its_status::<$backend>().await;
            }
            #[tokio::test]
            async fn a_lease_has_one_holder_among_instances_until_it_expires() {
                super::a_lease_has_one_holder_among_instances_until_it_expires::<$backend>().await;
            }
            #[tokio::test]
            async fn a_sync_token_is_kept_per_resource_and_replaced() {
                super::a_sync_token_is_kept_per_resource_and_replaced::<$backend>().await;
            }
            #[tokio::test]
            async fn a_201_after_its_registration_expired_confirms_a_written_down_handshake() {
                super::a_201_after_its_registration_expired_confirms_a_written_down_handshake::<
                    $backend,
                >()
                .await;
            }
        }
    };
}

contract!(Memory, memory);
contract!(File, file);
contract!(Pg, postgres);
