//! Catching up through the Events API, against the sandbox: deliveries the
//! sandbox drops reach the app through the catch-up, once; a receiver down
//! for more than a sandbox day loses nothing while catch-up runs; a whole
//! process down that long loses what Asana no longer serves, and says so;
//! two PostgreSQL instances poll each resource once per interval; a crash
//! between committing events and saving the token repeats, never loses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use asana_webhooks::catchup::{CatchUp, CatchUpError};
use asana_webhooks::inbox::{EventSource, FileInbox, Inbox, MemoryInbox};
use asana_webhooks::postgres::{PostgresInbox, PostgresSecretStore};
use asana_webhooks::sandbox::{EmittedEvent, Sandbox, seed};
use asana_webhooks::secrets::{
    FileSecretStore, Gap, GapCause, GapStatus, HandshakeVerdict, MemorySecretStore, RecoveryStore,
    RegistrationId, SecretStore, StoreError, StoredSecret, SyncToken, TargetKey,
    UnconfirmedHandshake, UnrecordedSpan,
};
use asana_webhooks::watch::{RepairOutcome, Watch};
use asana_webhooks::{Client, EventIdentity, HandshakeExt, HookSecret};
use asana_webhooks_tests::listening::{LIMIT, free_addr, listen, sandbox_client, until};
use asana_webhooks_tests::postgres::Postgres;

/// The seed of the sandbox's dropped deliveries (fixed, so a failure
/// replays: `ASANA_WEBHOOKS_DROP_SEED` explores others).
const DROP_SEED: u64 = 19;

fn drop_seed() -> u64 {
    let seed = std::env::var("ASANA_WEBHOOKS_DROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DROP_SEED);
    eprintln!("sandbox drop seed {seed} (replay with ASANA_WEBHOOKS_DROP_SEED={seed})");
    seed
}

/// The n-th event: a change of one of a few fields, so that events told
/// apart only by their time are rare (the sandbox's clock gives each its
/// own `created_at` too).
fn change(n: usize) -> EmittedEvent {
    const FIELDS: [&str; 5] = ["due_on", "name", "notes", "assignee", "completed"];
    EmittedEvent {
        resource: seed::TASK.into(),
        action: "changed".into(),
        parent: None,
        field: Some(FIELDS[n % FIELDS.len()].into()),
    }
}

/// What the app saw: each event's identity, how often, and from where.
#[derive(Default, Debug)]
struct Seen {
    times: HashMap<EventIdentity, usize>,
    by_source: HashMap<EventSource, usize>,
}

impl Seen {
    fn distinct(&self) -> usize {
        self.times.len()
    }
    fn duplicates(&self) -> usize {
        self.times.values().map(|n| n - 1).sum()
    }
}

/// Takes (and acknowledges) what waits in `inbox` now.
async fn drain<I: Inbox>(inbox: &I, seen: &mut Seen) {
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(300), inbox.next()).await
    {
        let raw: serde_json::Value = serde_json::from_str(item.raw()).unwrap();
        *seen.times.entry(EventIdentity::of(&raw)).or_default() += 1;
        *seen.by_source.entry(item.source()).or_default() += 1;
        item.ack().await.unwrap();
    }
}

/// A webhook on the task, created through the handshake of a receiver on
/// `addr`; returns its gid.
async fn create<S: SecretStore>(client: &Client, store: &S, url: &str) -> String {
    client
        .create_webhook_with_handshake(store, seed::TASK, url)
        .workspace(seed::WORKSPACE)
        .send()
        .await
        .unwrap()
        .webhook
        .gid
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenth_of_deliveries_dropped_every_one_of_1000_events_reaches_the_app_once() {
    let sandbox = Sandbox::builder()
        .time_scale(60.0)
        .drop_deliveries(0.1)
        .drop_seed(drop_seed())
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let client = sandbox_client(&sandbox);
    let dir = tempfile::tempdir().unwrap();
    let store = FileSecretStore::open(dir.path().join("secrets.json"))
        .await
        .unwrap();
    let inbox = FileInbox::open(dir.path().join("inbox")).await.unwrap();
    let addr = free_addr().await;
    let url = format!("http://{addr}/hooks/catch-up");
    let key = TargetKey::from_url(&url).unwrap();
    let listening = listen(addr, store.clone(), inbox.clone()).await;
    create(&client, &store, &url).await;
    let catch_up = CatchUp::new(client.clone(), store.clone(), inbox.clone(), vec![key]);
    // The stream starts before the first event.
    let first = catch_up.run_now(seed::TASK).await;
    assert!(first.outcome.unwrap().unwrap().started);

    const EVENTS: usize = 1000;
    for n in 0..EVENTS {
        sandbox.emit(change(n)).unwrap();
    }
    let mut seen = Seen::default();
    let started = Instant::now();
    let mut caught_up = 0;
    while seen.distinct() < EVENTS {
        assert!(
            started.elapsed() < LIMIT,
            "only {} of {EVENTS} events arrived: {seen:?}",
            seen.distinct()
        );
        drain(&inbox, &mut seen).await;
        let report = catch_up.run_now(seed::TASK).await;
        caught_up += report.outcome.unwrap().unwrap().added;
    }
    // Late deliveries and one more catch-up: nothing arrives twice.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = catch_up.run_now(seed::TASK).await;
    caught_up += report.outcome.unwrap().unwrap().added;
    drain(&inbox, &mut seen).await;

    let dropped = sandbox.dropped_events();
    eprintln!(
        "{EVENTS} events: {dropped} deliveries dropped, {caught_up} caught up, by source {:?}",
        seen.by_source
    );
    assert_eq!(seen.distinct(), EVENTS, "losses");
    assert_eq!(seen.duplicates(), 0, "duplicates");
    assert!(dropped > 0, "the sandbox dropped deliveries");
    // Every dropped event came through the catch-up; so may some whose
    // delivery was still on its way when a catch-up ran (the delivery
    // then found it there and was dropped as a repeat).
    assert!(
        caught_up as u64 >= dropped,
        "{caught_up} caught up, {dropped} dropped"
    );
    assert_eq!(seen.by_source[&EventSource::EventsApi], caught_up);
    assert!(
        store.gaps().await.unwrap().is_empty(),
        "no gap: the stream never broke"
    );
    listening.stop().await;
}

/// A receiver down over a sandbox day: one event per sandbox hour while
/// its webhook fails and is deleted. Returns how many were emitted.
async fn a_day_and_more_of_events(sandbox: &Sandbox, while_down: impl AsyncFnMut()) -> usize {
    let mut while_down = while_down;
    // 7200x: a real half second is a sandbox hour; 30 of them.
    for n in 0..30 {
        sandbox.emit(change(n)).unwrap();
        while_down().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    30
}

struct DayEnv {
    sandbox: Sandbox,
    client: Client,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    url: String,
    key: TargetKey,
}

impl DayEnv {
    async fn start() -> Self {
        let sandbox = Sandbox::builder()
            .time_scale(7200.0)
            .start("127.0.0.1:0")
            .await
            .unwrap();
        let addr = free_addr().await;
        let url = format!("http://{addr}/hooks/day");
        DayEnv {
            client: sandbox_client(&sandbox),
            sandbox,
            dir: tempfile::tempdir().unwrap(),
            key: TargetKey::from_url(&url).unwrap(),
            addr,
            url,
        }
    }

    async fn open(&self) -> (FileSecretStore, FileInbox) {
        (
            FileSecretStore::open(self.dir.path().join("secrets.json"))
                .await
                .unwrap(),
            FileInbox::open(self.dir.path().join("inbox"))
                .await
                .unwrap(),
        )
    }

    fn catch_up(
        &self,
        store: &FileSecretStore,
        inbox: &FileInbox,
    ) -> CatchUp<FileSecretStore, FileInbox> {
        CatchUp::new(
            self.client.clone(),
            store.clone(),
            inbox.clone(),
            vec![self.key.clone()],
        )
        .resource(seed::TASK, self.key.clone())
    }

    fn watch(
        &self,
        store: &FileSecretStore,
        inbox: &FileInbox,
    ) -> Watch<FileSecretStore, FileInbox> {
        Watch::new(
            self.client.clone(),
            seed::WORKSPACE,
            store.clone(),
            vec![self.key.clone()],
        )
        .inbox(inbox.clone())
    }

    /// Until the sandbox deleted the webhook.
    async fn deleted(&self, gid: &str) {
        until(
            "Asana deletes the webhook after a day of failures",
            || async { self.client.get_webhook(gid).send().await.is_err() },
        )
        .await;
    }
}

/// A receiver that answers nothing for 30 sandbox hours (a bad deploy, an
/// expired certificate) while its process keeps catching up: Asana deletes
/// the webhook, the watch creates it again, and every event of the outage
/// reaches the app once, through the Events API; the gap is recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_30_sandbox_hours_loses_nothing_while_catch_up_runs() {
    let env = DayEnv::start().await;
    let (store, inbox) = env.open().await;
    let catch_up = env.catch_up(&store, &inbox);
    // The stream starts with the webhook.
    assert!(
        catch_up
            .run_now(seed::TASK)
            .await
            .outcome
            .unwrap()
            .unwrap()
            .started
    );
    let listening = listen(env.addr, store.clone(), inbox.clone()).await;
    let gid = create(&env.client, &store, &env.url).await;
    env.sandbox.emit(change(0)).unwrap();
    let mut seen = Seen::default();
    until("the first event is delivered", || {
        let inbox = inbox.clone();
        async move { inbox.stats().await.unwrap().waiting > 0 }
    })
    .await;
    drain(&inbox, &mut seen).await;
    listening.stop().await;

    let mut runs = 0;
    let emitted = a_day_and_more_of_events(&env.sandbox, async || {
        runs += 1;
        if runs % 2 == 0 {
            catch_up.run_now(seed::TASK).await.outcome.unwrap().unwrap();
        }
    })
    .await;
    env.deleted(&gid).await;

    let listening = listen(env.addr, store.clone(), inbox.clone()).await;
    let (_, repairs) = env.watch(&store, &inbox).check_and_repair().await.unwrap();
    let [(_, Ok(RepairOutcome::Recreated { gap, .. }))] = &repairs[..] else {
        panic!("the webhook is created again: {repairs:?}");
    };
    let report = catch_up.run_now(seed::TASK).await;
    assert_eq!(report.settled.len(), 1, "{report:?}");
    assert!(matches!(
        report.settled[0].status,
        GapStatus::Recovered { .. }
    ));
    assert_eq!(report.settled[0].id, gap.id);
    for n in 0..3 {
        env.sandbox.emit(change(n)).unwrap();
    }
    let total = 1 + emitted + 3;
    let started = Instant::now();
    while seen.distinct() < total && started.elapsed() < LIMIT {
        drain(&inbox, &mut seen).await;
        catch_up.run_now(seed::TASK).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    catch_up.run_now(seed::TASK).await;
    drain(&inbox, &mut seen).await;
    eprintln!("by source: {:?}", seen.by_source);
    assert_eq!(seen.distinct(), total, "losses: {seen:?}");
    assert_eq!(seen.duplicates(), 0, "duplicates");
    assert!(seen.by_source[&EventSource::EventsApi] >= emitted);
    let gaps = store.gaps().await.unwrap();
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(matches!(gaps[0].status, GapStatus::Recovered { .. }));
    listening.stop().await;
}

/// The whole process down for 30 sandbox hours: its sync token is older
/// than Asana's 24 hours, so the Events API cannot serve the outage any
/// more (it answers 412 with a token from now; Asana keeps the events but
/// no longer hands them out to that token). Nothing is invented: both gaps
/// are reported unrecoverable with their bounds, and events after the
/// restart arrive once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_down_for_30_sandbox_hours_reports_what_asana_no_longer_serves() {
    let env = DayEnv::start().await;
    let (store, inbox) = env.open().await;
    let catch_up = env.catch_up(&store, &inbox);
    catch_up.run_now(seed::TASK).await.outcome.unwrap().unwrap();
    let listening = listen(env.addr, store.clone(), inbox.clone()).await;
    let gid = create(&env.client, &store, &env.url).await;
    env.sandbox.emit(change(0)).unwrap();
    let mut seen = Seen::default();
    until("the first event is delivered", || {
        let inbox = inbox.clone();
        async move { inbox.stats().await.unwrap().waiting > 0 }
    })
    .await;
    drain(&inbox, &mut seen).await;
    catch_up.run_now(seed::TASK).await.outcome.unwrap().unwrap();
    let token_saved = store
        .sync_token(seed::TASK)
        .await
        .unwrap()
        .unwrap()
        .saved_at;
    listening.stop().await;
    drop(catch_up);
    inbox.close();
    drop((store, inbox));

    a_day_and_more_of_events(&env.sandbox, async || {}).await;
    env.deleted(&gid).await;

    let (store, inbox) = env.open().await;
    let restarted = chrono::Utc::now();
    let listening = listen(env.addr, store.clone(), inbox.clone()).await;
    let (_, repairs) = env.watch(&store, &inbox).check_and_repair().await.unwrap();
    assert!(
        matches!(&repairs[..], [(_, Ok(RepairOutcome::Recreated { .. }))]),
        "{repairs:?}"
    );
    let report = env.catch_up(&store, &inbox).run_now(seed::TASK).await;
    let run = report.outcome.unwrap().unwrap();
    let expired = run.gap.expect("the expired token is a gap");
    assert_eq!(expired.cause, GapCause::SyncTokenExpired);
    assert_eq!(expired.from, Some(token_saved), "from the token's time");
    assert!(expired.to >= restarted);
    assert!(matches!(expired.status, GapStatus::Unrecoverable { .. }));
    assert_eq!(report.settled.len(), 1, "the webhook's gap is settled");
    assert!(matches!(
        report.settled[0].status,
        GapStatus::Unrecoverable { .. }
    ));
    let gaps = store.gaps().await.unwrap();
    assert_eq!(gaps.len(), 2, "{gaps:?}");

    for n in 0..3 {
        env.sandbox.emit(change(n)).unwrap();
    }
    let catch_up = env.catch_up(&store, &inbox);
    let started = Instant::now();
    while seen.distinct() < 4 && started.elapsed() < LIMIT {
        drain(&inbox, &mut seen).await;
        catch_up.run_now(seed::TASK).await;
    }
    drain(&inbox, &mut seen).await;
    assert_eq!(
        seen.distinct(),
        4,
        "the first and the 3 after the restart: {seen:?}"
    );
    assert_eq!(seen.duplicates(), 0);
    listening.stop().await;
}

/// One instance of a receiver behind a load balancer, on PostgreSQL.
async fn pg_instance(db: &Postgres) -> (PostgresSecretStore, PostgresInbox) {
    let pool = db.pool().await;
    (
        PostgresSecretStore::new(pool.clone()),
        PostgresInbox::new(pool, &db.url()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgresql_instances_poll_each_resource_once_an_interval_and_lose_nothing() {
    let db = Postgres::start();
    let sandbox = Sandbox::builder()
        .time_scale(60.0)
        .drop_deliveries(0.1)
        .drop_seed(drop_seed())
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let client = sandbox_client(&sandbox);
    let (a, b) = (pg_instance(&db).await, pg_instance(&db).await);
    let addr = free_addr().await;
    let url = format!("http://{addr}/hooks/shared");
    let key = TargetKey::from_url(&url).unwrap();
    let listening = listen(addr, a.0.clone(), a.1.clone()).await;
    create(&client, &a.0, &url).await;
    const INTERVAL: Duration = Duration::from_secs(1);
    let handles = [&a, &b].map(|(store, inbox)| {
        CatchUp::new(
            client.clone(),
            store.clone(),
            inbox.clone(),
            vec![key.clone()],
        )
        .interval(INTERVAL)
        .spawn()
    });
    let mut reports = handles.each_ref().map(|h| h.subscribe());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let window = Instant::now();
    let polls_before = sandbox.api_requests();
    const EVENTS: usize = 300;
    let mut seen = Seen::default();
    for n in 0..EVENTS {
        sandbox.emit(change(n)).unwrap();
        if n % 30 == 29 {
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }
    let started = Instant::now();
    while seen.distinct() < EVENTS && started.elapsed() < LIMIT {
        drain(&b.1, &mut seen).await;
    }
    tokio::time::sleep(2 * INTERVAL).await;
    drain(&b.1, &mut seen).await;
    let elapsed = window.elapsed();
    let calls = sandbox.api_requests().since(&polls_before).of("getEvents");
    drop(handles);
    let mut polls = 0;
    for receiver in &mut reports {
        while let Ok(report) = receiver.try_recv() {
            polls += usize::from(report.outcome.is_some());
        }
    }
    let intervals = elapsed.as_secs_f64() / INTERVAL.as_secs_f64();
    eprintln!(
        "{elapsed:?} ({intervals:.1} intervals): {polls} polls, {calls} getEvents calls; {} dropped; by source {:?}",
        sandbox.dropped_events(),
        seen.by_source
    );
    assert_eq!(seen.distinct(), EVENTS, "losses");
    assert_eq!(seen.duplicates(), 0, "duplicates");
    assert!(
        (polls as f64) <= intervals + 2.0,
        "{polls} polls in {intervals:.1} intervals: the resource was polled by both instances"
    );
    // A loaded machine may delay ticks: only that it kept polling.
    assert!(polls >= 2, "kept polling: {polls}");
    listening.stop().await;
}

/// A store whose next sync-token save fails, as if the process died after
/// the inbox committed a page and before the token moved past it.
#[derive(Clone)]
struct DiesBeforeTheToken {
    inner: MemorySecretStore,
    armed: Arc<AtomicBool>,
}

impl SecretStore for DiesBeforeTheToken {
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
        self.inner.secrets_for(target).await
    }
    async fn by_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        self.inner.by_gid(gid).await
    }
    async fn remove_gid(&self, gid: &str) -> Result<Option<StoredSecret>, StoreError> {
        self.inner.remove_gid(gid).await
    }
    async fn unconfirmed_handshakes(
        &self,
        target: &TargetKey,
    ) -> Result<Vec<UnconfirmedHandshake>, StoreError> {
        self.inner.unconfirmed_handshakes(target).await
    }
    async fn unrecorded_handshakes(
        &self,
        target: &TargetKey,
    ) -> Result<Option<UnrecordedSpan>, StoreError> {
        self.inner.unrecorded_handshakes(target).await
    }
}

impl RecoveryStore for DiesBeforeTheToken {
    async fn record_gap(&self, gap: Gap) -> Result<bool, StoreError> {
        self.inner.record_gap(gap).await
    }
    async fn gaps(&self) -> Result<Vec<Gap>, StoreError> {
        self.inner.gaps().await
    }
    async fn set_gap_status(&self, id: &str, status: GapStatus) -> Result<bool, StoreError> {
        self.inner.set_gap_status(id, status).await
    }
    async fn try_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.inner.try_lease(name, holder, ttl).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.inner.release_lease(name, holder).await
    }
    async fn sync_token(&self, resource: &str) -> Result<Option<SyncToken>, StoreError> {
        self.inner.sync_token(resource).await
    }
    async fn save_sync_token(
        &self,
        resource: &str,
        token: &str,
        stream_since: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Backend("the process died here".into()));
        }
        self.inner
            .save_sync_token(resource, token, stream_since)
            .await
    }
}

#[tokio::test]
async fn a_crash_between_committing_events_and_saving_the_token_repeats_and_loses_none() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let store = DiesBeforeTheToken {
        inner: MemorySecretStore::new(),
        armed: Arc::new(AtomicBool::new(false)),
    };
    let inbox = MemoryInbox::new();
    let key = TargetKey::from_path_and_query("/hooks/task");
    let catch_up = CatchUp::new(
        sandbox_client(&sandbox),
        store.clone(),
        inbox.clone(),
        Vec::new(),
    )
    .resource(seed::TASK, key);
    assert!(
        catch_up
            .run_now(seed::TASK)
            .await
            .outcome
            .unwrap()
            .unwrap()
            .started
    );
    let token_before = store.sync_token(seed::TASK).await.unwrap().unwrap().token;
    for n in 0..5 {
        sandbox.emit(change(n)).unwrap();
    }
    store.armed.store(true, Ordering::SeqCst);
    let crashed = catch_up.run_now(seed::TASK).await.outcome.unwrap();
    assert!(
        matches!(crashed, Err(CatchUpError::Store(_))),
        "{crashed:?}"
    );
    assert_eq!(
        store.sync_token(seed::TASK).await.unwrap().unwrap().token,
        token_before,
        "the token did not move"
    );
    let mut seen = Seen::default();
    drain(&inbox, &mut seen).await;
    assert_eq!(seen.distinct(), 5, "committed before the crash");

    // Started again: the same page is read, its events are repeats.
    let run = catch_up.run_now(seed::TASK).await.outcome.unwrap().unwrap();
    assert_eq!((run.fetched, run.added, run.duplicates), (5, 0, 5));
    assert_ne!(
        store.sync_token(seed::TASK).await.unwrap().unwrap().token,
        token_before
    );
    for n in 5..7 {
        sandbox.emit(change(n)).unwrap();
    }
    let run = catch_up.run_now(seed::TASK).await.outcome.unwrap().unwrap();
    assert_eq!((run.fetched, run.added), (2, 2));
    drain(&inbox, &mut seen).await;
    assert_eq!(seen.distinct(), 7);
    assert_eq!(seen.duplicates(), 0, "the app saw each event once");
}

/// A webhook on a workspace cannot be caught up: the Events API follows
/// tasks, projects and goals only. It is reported, and its gap marked
/// unrecoverable, never skipped in silence.
#[tokio::test]
async fn a_resource_the_events_api_cannot_follow_is_reported_and_its_gap_unrecoverable() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let store = MemorySecretStore::new();
    let key = TargetKey::from_path_and_query("/hooks/workspace");
    let now = chrono::Utc::now();
    let gap = Gap::open(
        "webhook-gone:1",
        seed::WORKSPACE,
        GapCause::WebhookGone {
            old_gid: "1".into(),
            new_gid: "2".into(),
        },
        Some(now - chrono::Duration::hours(2)),
        now,
    );
    store.record_gap(gap).await.unwrap();
    let catch_up = CatchUp::new(
        sandbox_client(&sandbox),
        store.clone(),
        MemoryInbox::new(),
        Vec::new(),
    )
    .resource(seed::WORKSPACE, key)
    .interval(Duration::from_millis(200));
    let report = catch_up.run_now(seed::WORKSPACE).await;
    let error = report.outcome.unwrap().unwrap_err();
    assert!(
        matches!(error, CatchUpError::NotFollowable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("cannot be recovered"), "{error}");
    let [settled] = &report.settled[..] else {
        panic!("the gap is settled: {:?}", report.settled);
    };
    let GapStatus::Unrecoverable { reason } = &settled.status else {
        panic!("{settled:?}");
    };
    assert!(reason.contains("task, project or goal"), "{reason}");
    assert_eq!(store.gaps().await.unwrap()[0].status, settled.status);

    // Running, it is listed among the resources that cannot be followed.
    let handle = catch_up.spawn();
    let started = Instant::now();
    while handle.not_followable().is_empty() {
        assert!(started.elapsed() < LIMIT, "never reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        handle.not_followable().into_iter().collect::<Vec<_>>(),
        [seed::WORKSPACE]
    );
}

/// The receiver-down scenario with two PostgreSQL-backed instances behind
/// a load balancer: both run the catch-up and the watch; the resource is
/// polled once per interval, the webhook created again once, and every
/// event reaches the app once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgresql_instances_lose_nothing_while_the_receiver_is_down_for_30_sandbox_hours() {
    let db = Postgres::start();
    let env = DayEnv::start().await;
    let (a, b) = (pg_instance(&db).await, pg_instance(&db).await);
    const INTERVAL: Duration = Duration::from_secs(1);
    let catch_ups = [&a, &b].map(|(store, inbox)| {
        CatchUp::new(
            env.client.clone(),
            store.clone(),
            inbox.clone(),
            vec![env.key.clone()],
        )
        .resource(seed::TASK, env.key.clone())
        .interval(INTERVAL)
        .spawn()
    });
    let mut reports = catch_ups.each_ref().map(|h| h.subscribe());
    until("the stream has begun", || {
        let store = a.0.clone();
        async move { store.sync_token(seed::TASK).await.unwrap().is_some() }
    })
    .await;
    let listening = listen(env.addr, a.0.clone(), a.1.clone()).await;
    let gid = create(&env.client, &a.0, &env.url).await;
    env.sandbox.emit(change(0)).unwrap();
    let mut seen = Seen::default();
    until("the first event is delivered", || {
        let inbox = b.1.clone();
        async move { inbox.stats().await.unwrap().waiting > 0 }
    })
    .await;
    drain(&b.1, &mut seen).await;
    listening.stop().await;

    let window = Instant::now();
    let emitted = a_day_and_more_of_events(&env.sandbox, async || {}).await;
    env.deleted(&gid).await;

    let listening = listen(env.addr, a.0.clone(), a.1.clone()).await;
    let watch = |store: &PostgresSecretStore, inbox: &PostgresInbox| {
        Watch::new(
            env.client.clone(),
            seed::WORKSPACE,
            store.clone(),
            vec![env.key.clone()],
        )
        .inbox(inbox.clone())
    };
    let (wa, wb) = (watch(&a.0, &a.1), watch(&b.0, &b.1));
    let (ra, rb) = tokio::join!(wa.check_and_repair(), wb.check_and_repair());
    let recreated = [ra.unwrap().1, rb.unwrap().1]
        .into_iter()
        .flatten()
        .filter(|(_, o)| matches!(o, Ok(RepairOutcome::Recreated { .. })))
        .count();
    assert_eq!(recreated, 1, "one instance creates it again");
    for n in 0..3 {
        env.sandbox.emit(change(n)).unwrap();
    }
    let total = 1 + emitted + 3;
    let started = Instant::now();
    while seen.distinct() < total && started.elapsed() < LIMIT {
        drain(&b.1, &mut seen).await;
    }
    until("the gap is settled", || {
        let store = b.0.clone();
        async move {
            store
                .gaps()
                .await
                .unwrap()
                .iter()
                .all(|g| g.status != GapStatus::Open)
        }
    })
    .await;
    tokio::time::sleep(2 * INTERVAL).await;
    drain(&b.1, &mut seen).await;
    let elapsed = window.elapsed();
    drop(catch_ups);
    let mut polls = 0;
    for receiver in &mut reports {
        while let Ok(report) = receiver.try_recv() {
            polls += usize::from(report.outcome.is_some());
        }
    }
    let gaps = b.0.gaps().await.unwrap();
    eprintln!(
        "{polls} polls; by source {:?}; gaps {gaps:?}",
        seen.by_source
    );
    assert_eq!(seen.distinct(), total, "losses");
    assert_eq!(seen.duplicates(), 0, "duplicates");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(
        matches!(gaps[0].status, GapStatus::Recovered { .. }),
        "{gaps:?}"
    );
    // Polls over the whole test, whose window started a little after the
    // first poll: at most one an interval, plus the start and the end.
    let intervals = elapsed.as_secs_f64() / INTERVAL.as_secs_f64();
    assert!(
        (polls as f64) <= intervals + 4.0,
        "{polls} polls in {intervals:.1} intervals"
    );
    listening.stop().await;
}
