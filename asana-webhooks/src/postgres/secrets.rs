//! [`SecretStore`] in PostgreSQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio::sync::{Semaphore, SemaphorePermit, oneshot};

use super::{PoolOptions, SECRETS_CHANNEL};
use crate::hook_secret::HookSecret;
use crate::secrets::{
    HandshakeVerdict, MAX_PENDING_PER_TARGET, RegistrationId, SecretStore, StoreError,
    StoredSecret, TargetKey, UNCONFIRMED_KEPT_FOR, UnconfirmedHandshake, UnrecordedSpan,
};

/// Secrets and registrations in PostgreSQL, shared by every receiver
/// instance: a handshake may reach any instance, whichever sent the create.
/// Run [`super::migrate`] first.
///
/// Each operation is one statement (the functions of schema version 3),
/// so one round trip and one transaction; handshake secrets are looked up
/// by their SHA-256 digest, and a target's pending handshakes are bounded
/// as in the in-process stores ([`MAX_PENDING_PER_TARGET`] whole, then
/// digests only, then [`HandshakeVerdict::Flooded`]).
///
/// # Secrets kept in memory
///
/// Over a pool made by [`super::connect`] or [`super::connect_with`], the
/// store keeps each target's secrets once read, so that a delivery costs no
/// database round trip, and hears of every change on a connection of its
/// own (`LISTEN`; the database announces each change of a stored secret in
/// the transaction that makes it, whoever makes it): a new, confirmed or
/// removed secret is forgotten as soon as the notification arrives. A
/// secret confirmed elsewhere is never missed meanwhile: the receiver reads
/// the database before it refuses a delivery
/// ([`SecretStore::fresh_secrets_for`]). While the notification connection
/// is down, nothing is kept and every lookup reads the database, until the
/// connection is back (it reconnects every second). Over any other pool,
/// every lookup reads the database.
///
/// # Connections
///
/// Requests that anyone can send (deliveries, handshakes) hold at most
/// half of the pool's connections at a time (at least one): a flood of
/// refused requests whose lookups are slow cannot take the connections
/// the inbox needs on a shared pool (and the inbox commits on connections
/// of its own, see [`super::PostgresInbox`]). Registrations, confirms and
/// saves are not held back by them. A request that waits longer than the
/// pool's wait timeout for either gets an error (answered 503).
#[derive(Clone)]
pub struct PostgresSecretStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// Held by each request-path operation while it uses a connection.
    request_slots: Semaphore,
    request_slot_count: usize,
    wait: Duration,
    cache: Option<Arc<Cache>>,
    /// Dropped with the last handle: ends the notification task.
    _stop: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for PostgresSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSecretStore")
            .field("keeps_secrets", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

pub(super) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A busy pool says so (the receiver answers 503 to any store error).
fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => {
            StoreError::Backend("database busy: no free connection in the pool's wait time".into())
        }
        other => StoreError::Backend(format!("database: {other}")),
    }
}

/// The most targets whose secrets are kept in memory (targets with stored
/// secrets only, so in practice every webhook's).
const CACHED_TARGETS: usize = 16_384;

/// How often the notification connection is checked, and how long the
/// check may take before the connection counts as lost.
const LISTEN_CHECK_EVERY: Duration = Duration::from_secs(10);
const LISTEN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait before making a lost notification connection again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The secrets of targets as last read, valid while the notification
/// connection listens.
///
/// A read that started before a change may finish after its notification
/// was handled; `epoch` (moved by every notification and every change of
/// the connection) lets such a read see that it is stale and keep nothing.
#[derive(Default)]
struct Cache {
    live: AtomicBool,
    epoch: AtomicU64,
    entries: RwLock<HashMap<String, Vec<StoredSecret>>>,
}

impl Cache {
    fn entries_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Vec<StoredSecret>>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, target: &TargetKey) -> Option<Vec<StoredSecret>> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(target.as_str()).cloned()
    }

    /// Called before reading the database: the epoch to keep the result
    /// under, or `None` when nothing may be kept.
    fn before_read(&self) -> Option<u64> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        self.live.load(Ordering::SeqCst).then_some(epoch)
    }

    fn keep(&self, target: &TargetKey, epoch: u64, secrets: &[StoredSecret]) {
        let mut entries = self.entries_mut();
        let current =
            self.live.load(Ordering::SeqCst) && self.epoch.load(Ordering::SeqCst) == epoch;
        if current && (entries.len() < CACHED_TARGETS || entries.contains_key(target.as_str())) {
            entries.insert(target.as_str().to_string(), secrets.to_vec());
        }
    }

    /// Forgets one target's secrets, or all of them.
    fn forget(&self, target: Option<&str>) {
        let mut entries = self.entries_mut();
        match target {
            Some(target) => {
                entries.remove(target);
            }
            None => entries.clear(),
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The notification connection listens (or no longer does): start
    /// from nothing either way.
    fn set_live(&self, live: bool) {
        let mut entries = self.entries_mut();
        entries.clear();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.live.store(live, Ordering::SeqCst);
    }
}

/// Keeps a connection listening for changes of stored secrets and applies
/// them to `cache`; reconnects when it drops, until `stop` fires.
async fn keep_listening(
    config: tokio_postgres::Config,
    cache: Arc<Cache>,
    mut stop: oneshot::Receiver<()>,
) {
    let listen = format!("LISTEN {SECRETS_CHANNEL}");
    loop {
        let session = async {
            let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let relay = async {
                while let Some(message) = messages.next().await {
                    if let tokio_postgres::AsyncMessage::Notification(n) = message? {
                        cache.forget(Some(n.payload()).filter(|p| !p.is_empty()));
                    }
                }
                Ok::<(), tokio_postgres::Error>(())
            };
            let control = async {
                client.batch_execute(&listen).await?;
                cache.set_live(true);
                loop {
                    tokio::time::sleep(LISTEN_CHECK_EVERY).await;
                    // Listening again changes nothing and shows the
                    // connection still answers.
                    match tokio::time::timeout(LISTEN_CHECK_TIMEOUT, client.batch_execute(&listen))
                        .await
                    {
                        Ok(result) => result?,
                        Err(_) => return Ok::<(), tokio_postgres::Error>(()),
                    }
                }
            };
            tokio::select! {
                result = relay => result,
                result = control => result,
            }
        };
        tokio::select! {
            _ = &mut stop => {
                cache.set_live(false);
                return;
            }
            result = session => {
                cache.set_live(false);
                match result {
                    Ok(()) => tracing::warn!("the secrets' notification connection closed; reading secrets from the database until it is back"),
                    Err(e) => tracing::warn!(error = %e, "the secrets' notification connection failed; reading secrets from the database until it is back"),
                }
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(RECONNECT_AFTER) => {}
        }
    }
}

/// A connection taken for a request anyone can send, with its slot.
struct RequestClient<'a> {
    client: deadpool_postgres::Object,
    _slot: SemaphorePermit<'a>,
}

impl std::ops::Deref for RequestClient<'_> {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl PostgresSecretStore {
    /// A store over `pool` (see [`super::connect`]; over a pool made there
    /// it keeps secrets in memory, see the type's docs).
    ///
    /// The notification task is started on the current Tokio runtime;
    /// outside one, the store reads secrets from the database every time.
    pub fn new(pool: Pool) -> Self {
        let request_slot_count = (pool.status().max_size / 2).max(1);
        let wait = pool
            .timeouts()
            .wait
            .unwrap_or(PoolOptions::default().wait_timeout);
        let (cache, stop) = match (
            super::settings_of(&pool),
            tokio::runtime::Handle::try_current(),
        ) {
            (Some(mut config), Ok(runtime)) => {
                if config.get_application_name().is_none() {
                    config.application_name("asana-webhooks secrets");
                }
                let cache = Arc::new(Cache::default());
                let (stop, stopped) = oneshot::channel();
                runtime.spawn(keep_listening(config, Arc::clone(&cache), stopped));
                (Some(cache), Some(stop))
            }
            _ => (None, None),
        };
        Self {
            inner: Arc::new(Inner {
                pool,
                request_slots: Semaphore::new(request_slot_count),
                request_slot_count,
                wait,
                cache,
                _stop: stop,
            }),
        }
    }

    pub(super) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner.pool.get().await.map_err(pool_error)
    }

    /// A connection for a request anyone can send: at most half the pool.
    async fn request_client(&self) -> Result<RequestClient<'_>, StoreError> {
        let slot = tokio::time::timeout(self.inner.wait, self.inner.request_slots.acquire())
            .await
            .map_err(|_| {
                StoreError::Backend(format!(
                    "database busy: all {} connections for requests were taken for {:?}",
                    self.inner.request_slot_count, self.inner.wait
                ))
            })?
            .map_err(backend)?;
        Ok(RequestClient {
            client: self.client().await?,
            _slot: slot,
        })
    }

    /// Forgets what is kept after a change made here (the notification
    /// comes too, a moment later).
    fn forget_kept(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.forget(None);
        }
    }

    /// The stored secrets of `target` from the database; kept when nothing
    /// changed meanwhile.
    async fn read_secrets(&self, target: &TargetKey) -> Result<Vec<StoredSecret>, StoreError> {
        let epoch = self.inner.cache.as_ref().and_then(|c| c.before_read());
        let client = self.request_client().await?;
        let statement = client
            .prepare_cached(
                "SELECT target, webhook_gid, resource, secret, target_url, filters FROM asana_webhooks_secrets WHERE target = $1 ORDER BY id",
            )
            .await
            .map_err(backend)?;
        let rows = client
            .query(&statement, &[&target.as_str()])
            .await
            .map_err(backend)?;
        drop(client);
        let found: Vec<StoredSecret> = rows.iter().map(record).collect();
        if let (Some(cache), Some(epoch)) = (&self.inner.cache, epoch)
            && !found.is_empty()
        {
            cache.keep(target, epoch, &found);
        }
        Ok(found)
    }
}

fn record(row: &tokio_postgres::Row) -> StoredSecret {
    StoredSecret {
        target: TargetKey::from_path_and_query(row.get::<_, &str>("target")),
        webhook_gid: row.get("webhook_gid"),
        resource: row.get("resource"),
        target_url: row.get("target_url"),
        // Written by this crate from the same type; anything unreadable
        // reads as "no filters known" rather than hiding the secret.
        filters: row
            .get::<_, Option<&str>>("filters")
            .and_then(|f| serde_json::from_str(f).ok())
            .unwrap_or_default(),
        secret: HookSecret::new(row.get::<_, String>("secret")),
    }
}

/// The creation facts of `record` as columns: its target URL and its
/// filters as JSON (none when empty).
fn creation(record: &StoredSecret) -> (Option<&str>, Option<String>) {
    let filters = (!record.filters.is_empty())
        .then(|| serde_json::to_string(&record.filters).expect("filters serialise"));
    (record.target_url.as_deref(), filters)
}

/// Sets the creation facts of `record`'s webhook in the transaction that
/// saved or confirmed it, so the secret is never stored without them.
async fn describe(
    tx: &tokio_postgres::Transaction<'_>,
    record: &StoredSecret,
) -> Result<(), StoreError> {
    let (Some(gid), (target_url, filters)) = (&record.webhook_gid, creation(record)) else {
        return Ok(());
    };
    if target_url.is_none() && filters.is_none() {
        return Ok(());
    }
    tx.execute(
        "UPDATE asana_webhooks_secrets SET target_url = $2, filters = $3 WHERE webhook_gid = $1",
        &[gid, &target_url, &filters],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

impl SecretStore for PostgresSecretStore {
    async fn check_ready(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client.execute("SELECT 1", &[]).await.map_err(backend)?;
        Ok(())
    }

    async fn open_registration(
        &self,
        target: &TargetKey,
        ttl: Duration,
    ) -> Result<RegistrationId, StoreError> {
        let id = RegistrationId::random();
        let client = self.client().await?;
        client
            .execute(
                "SELECT asana_webhooks_open_registration($1, $2, $3)",
                &[&id.as_str(), &target.as_str(), &ttl.as_secs_f64()],
            )
            .await
            .map_err(backend)?;
        Ok(id)
    }

    async fn accept_handshake(
        &self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> Result<HandshakeVerdict, StoreError> {
        // Written down (for recovery) in the same transaction, before the
        // echo: see the functions of schema version 3.
        let client = self.request_client().await?;
        let statement = client
            .prepare_cached("SELECT asana_webhooks_accept_handshake($1, $2)")
            .await
            .map_err(backend)?;
        let verdict: String = client
            .query_one(&statement, &[&target.as_str(), &secret.expose()])
            .await
            .map_err(backend)?
            .get(0);
        match verdict.as_str() {
            "no_registration" => Ok(HandshakeVerdict::NoRegistration),
            "flooded" => Ok(HandshakeVerdict::Flooded),
            "accepted" => Ok(HandshakeVerdict::Accepted { suspicious: false }),
            "suspicious" => Ok(HandshakeVerdict::Accepted { suspicious: true }),
            other => Err(StoreError::Backend(format!(
                "unexpected handshake verdict `{other}` from the database"
            ))),
        }
    }

    async fn pending_secrets(&self, target: &TargetKey) -> Result<Vec<HookSecret>, StoreError> {
        let client = self.request_client().await?;
        let statement = client
            .prepare_cached(
                "SELECT secret FROM asana_webhooks_pending p WHERE p.target = $1 AND EXISTS (
                    SELECT 1 FROM asana_webhooks_registrations r WHERE r.target = $1 AND r.expires_at > now())
                 ORDER BY received_at LIMIT $2",
            )
            .await
            .map_err(backend)?;
        let rows = client
            .query(
                &statement,
                &[&target.as_str(), &(MAX_PENDING_PER_TARGET as i64)],
            )
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| HookSecret::new(r.get::<_, String>(0)))
            .collect())
    }

    async fn confirm(
        &self,
        _registration: &RegistrationId,
        record: StoredSecret,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let confirmed: bool = tx
            .query_one(
                "SELECT asana_webhooks_confirm($1, $2, $3, $4)",
                &[
                    &record.target.as_str(),
                    &record.webhook_gid,
                    &record.resource,
                    &record.secret.expose(),
                ],
            )
            .await
            .map_err(backend)?
            .get(0);
        if confirmed {
            describe(&tx, &record).await?;
        }
        tx.commit().await.map_err(backend)?;
        if confirmed {
            self.forget_kept();
        }
        Ok(confirmed)
    }

    async fn release_handshakes(&self, registration: &RegistrationId) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "SELECT asana_webhooks_release_handshakes($1)",
                &[&registration.as_str()],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn close_registration(
        &self,
        registration: &RegistrationId,
    ) -> Result<Vec<HookSecret>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT s FROM asana_webhooks_close_registration($1) AS s",
                &[&registration.as_str()],
            )
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| HookSecret::new(r.get::<_, String>(0)))
            .collect())
    }

    async fn save(&self, record: StoredSecret) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute(
            "SELECT asana_webhooks_save($1, $2, $3, $4)",
            &[
                &record.target.as_str(),
                &record.webhook_gid,
                &record.resource,
                &record.secret.expose(),
            ],
        )
        .await
        .map_err(backend)?;
        describe(&tx, &record).await?;
        tx.commit().await.map_err(backend)?;
        self.forget_kept();
        Ok(())
    }

    async fn secrets_for(&self, target: &TargetKey) -> Result<Vec<StoredSecret>, StoreError> {
        if let Some(kept) = self.inner.cache.as_ref().and_then(|c| c.get(target)) {
            return Ok(kept);
        }
        self.read_secrets(target).await
    }

    async fn fresh_secrets_for(&self, target: &TargetKey) -> Result<Vec<StoredSecret>, StoreError> {
        self.read_secrets(target).await
    }

    async fn by_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT target, webhook_gid, resource, secret, target_url, filters FROM asana_webhooks_secrets WHERE webhook_gid = $1",
                &[&gid],
            )
            .await
            .map_err(backend)?;
        Ok(row.as_ref().map(record))
    }

    async fn unconfirmed_handshakes(
        &self,
        target: &TargetKey,
    ) -> Result<Vec<UnconfirmedHandshake>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT secret, received_at FROM asana_webhooks_unconfirmed
                 WHERE target = $1 AND received_at >= now() - make_interval(secs => $2) ORDER BY received_at",
                &[&target.as_str(), &UNCONFIRMED_KEPT_FOR.as_secs_f64()],
            )
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| UnconfirmedHandshake {
                target: target.clone(),
                secret: HookSecret::new(r.get::<_, String>(0)),
                received_at: r.get::<_, std::time::SystemTime>(1).into(),
            })
            .collect())
    }

    async fn unrecorded_handshakes(
        &self,
        target: &TargetKey,
    ) -> Result<Option<UnrecordedSpan>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT first_at, last_at FROM asana_webhooks_unrecorded
                 WHERE target = $1 AND last_at >= now() - make_interval(secs => $2)",
                &[&target.as_str(), &UNCONFIRMED_KEPT_FOR.as_secs_f64()],
            )
            .await
            .map_err(backend)?;
        Ok(row.map(|r| UnrecordedSpan {
            target: target.clone(),
            first: r.get::<_, std::time::SystemTime>(0).into(),
            last: r.get::<_, std::time::SystemTime>(1).into(),
        }))
    }

    async fn remove_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM asana_webhooks_secrets WHERE webhook_gid = $1 RETURNING target, webhook_gid, resource, secret, target_url, filters",
                &[&gid],
            )
            .await
            .map_err(backend)?;
        self.forget_kept();
        Ok(row.as_ref().map(record))
    }
}
