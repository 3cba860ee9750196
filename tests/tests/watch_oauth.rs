//! The health watch on an OAuth client whose access tokens end while it
//! runs, against the sandbox's token endpoint: tokens that reach the end of
//! their lifetime (an hour of sandbox time, one real second here) and
//! tokens Asana ends early (`Sandbox::expire_access_tokens`, a 401 on the
//! watch's next check). After each, the watch keeps checking, announces a
//! webhook deleted after it, and no check fails (none of the watch's "the
//! webhook health check failed" is logged).

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use asana_webhooks::inbox::MemoryInbox;
use asana_webhooks::sandbox::{Sandbox, SandboxBuilder, seed};
use asana_webhooks::secrets::{MemorySecretStore, SecretStore, StoredSecret, TargetKey};
use asana_webhooks::watch::{
    HealthChange, HealthPolicy, HealthReport, HealthState, Watch, WatchHandle,
};
use asana_webhooks::{Client, OAuthRefresh, RetryPolicy};
use asana_webhooks_tests::Target;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const CLIENT_ID: &str = "1204519866405712";
const CLIENT_SECRET: &str = "app-secret-Zq81xT";
const REFRESH_TOKEN: &str = "1/refresh-Pm40kW";

/// How often the watch checks.
const INTERVAL: Duration = Duration::from_millis(100);
/// The longest any wait may take, in real time.
const LIMIT: Duration = Duration::from_secs(30);

/// The warnings and errors logged by the crate, as `target: message`.
fn logged() -> &'static Mutex<Vec<String>> {
    static LOG: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&log)));
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        log
    })
}

struct Capture(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::WARN || !meta.target().starts_with("asana_webhooks") {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let line = format!("{}: {}", meta.target(), message.0);
        self.0.lock().unwrap().push(line);
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Logged lines saying a check, a refresh or a retried request failed.
fn failures() -> Vec<String> {
    logged()
        .lock()
        .unwrap()
        .iter()
        .filter(|line| {
            line.contains("health check failed")
                || line.contains("refreshing the OAuth access token failed")
                || line.contains("refused a freshly refreshed")
        })
        .cloned()
        .collect()
}

struct Env {
    sandbox: Sandbox,
    client: Client,
    target: Target,
    store: MemorySecretStore,
}

impl Env {
    async fn start(builder: SandboxBuilder) -> Self {
        logged();
        let sandbox = builder
            .oauth(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
            .start("127.0.0.1:0")
            .await
            .unwrap();
        let client = Client::builder()
            .base_url(sandbox.base_url())
            .oauth(
                OAuthRefresh::new(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
                    .token_url(sandbox.token_url()),
            )
            .retry_policy(RetryPolicy::none())
            .build()
            .unwrap();
        Env {
            sandbox,
            client,
            target: Target::start().await,
            store: MemorySecretStore::new(),
        }
    }

    fn key(&self, path: &str) -> TargetKey {
        TargetKey::from_url(&format!("{}{path}", self.target.base)).unwrap()
    }

    /// A webhook on the task delivering to `path`, its secret stored.
    async fn create(&self, path: &str) -> String {
        let url = format!("{}{path}", self.target.base);
        let created = self
            .client
            .create_webhook(seed::TASK, &url)
            .send()
            .await
            .unwrap();
        let gid = created.webhook.gid.unwrap();
        let record = StoredSecret::new(self.key(path), gid.clone(), created.secret.unwrap());
        self.store.save(record).await.unwrap();
        gid
    }

    /// A watch of `paths`, checking every `INTERVAL`, and its changes; the
    /// first change of each webhook (healthy) already received.
    async fn watch(&self, paths: &[&str]) -> (WatchHandle, broadcast::Receiver<HealthChange>) {
        let targets = paths.iter().map(|p| self.key(p)).collect();
        let handle = Watch::new(
            self.client.clone(),
            seed::WORKSPACE,
            self.store.clone(),
            targets,
        )
        .inbox(MemoryInbox::new())
        .policy(HealthPolicy {
            silence_after: Duration::from_secs(3650 * 24 * 3600),
            ..HealthPolicy::default()
        })
        .interval(INTERVAL)
        .spawn();
        let mut changes = handle.subscribe();
        for _ in paths {
            let change = next_change(&mut changes).await;
            assert_eq!(change.from, None, "{change:?}");
            assert_eq!(change.health.state, HealthState::Healthy, "{change:?}");
        }
        (handle, changes)
    }

    /// Deletes `gid` at the sandbox and waits for the watch to announce it
    /// gone; returns the report of a check that began after the deletion.
    async fn delete_and_see_gone(
        &self,
        handle: &WatchHandle,
        changes: &mut broadcast::Receiver<HealthChange>,
        gid: &str,
    ) -> HealthReport {
        self.client.delete_webhook(gid).send().await.unwrap();
        let deleted = Utc::now();
        let change = next_change(changes).await;
        assert_eq!(change.health.gid, gid, "{change:?}");
        assert_eq!(
            (change.from, change.health.state),
            (Some(HealthState::Healthy), HealthState::Gone)
        );
        report_after(handle, deleted).await
    }
}

async fn next_change(changes: &mut broadcast::Receiver<HealthChange>) -> HealthChange {
    tokio::time::timeout(LIMIT, changes.recv())
        .await
        .expect("a change within the limit")
        .expect("the watch runs")
}

/// The watch's latest report once it was made after `after`.
async fn report_after(handle: &WatchHandle, after: DateTime<Utc>) -> HealthReport {
    let started = Instant::now();
    loop {
        if let Some(report) = handle.latest().filter(|r| r.checked_at > after) {
            return report;
        }
        assert!(
            started.elapsed() < LIMIT,
            "no report after {after}: {:?}; logged {:?}",
            handle.latest().map(|r| r.checked_at),
            logged().lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state(report: &HealthReport, gid: &str) -> HealthState {
    report
        .webhooks
        .iter()
        .find(|w| w.gid == gid)
        .unwrap_or_else(|| panic!("{gid} is not in the report: {report:#?}"))
        .state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_goes_on_while_access_tokens_reach_the_end_of_their_life() {
    // An hour of sandbox time, an access token's life, passes every real
    // second (`expires_in: 1`); the client replaces each token halfway.
    let env = Env::start(Sandbox::builder().time_scale(3600.0)).await;
    let lifetime = Duration::from_secs(1);
    let kept = env.create("/kept").await;
    let first = env.create("/first").await;
    let second = env.create("/second").await;
    let (handle, mut changes) = env.watch(&["/kept", "/first", "/second"]).await;
    let watching = Instant::now();
    let issued_before = env.sandbox.oauth_counts().issued;

    for (round, doomed) in [&first, &second].into_iter().enumerate() {
        // One and a half lifetimes: every token in use when this round
        // began is past its end.
        tokio::time::sleep(lifetime * 3 / 2).await;
        let report = env.delete_and_see_gone(&handle, &mut changes, doomed).await;
        assert_eq!(state(&report, &kept), HealthState::Healthy, "round {round}");
        assert_eq!(state(&report, doomed), HealthState::Gone, "round {round}");
        assert!(failures().is_empty(), "round {round}: {:?}", failures());
    }

    let counts = env.sandbox.oauth_counts();
    let ran = watching.elapsed();
    println!(
        "over {ran:?} of watching ({lifetime:?} a token): {counts:?}, {issued_before} issued before"
    );
    assert!(ran >= lifetime * 3, "{ran:?}");
    // At least one token replaced in each lifetime that passed.
    assert!(
        counts.issued >= issued_before + 3,
        "{counts:?} over {ran:?}"
    );
    assert_eq!(counts.refused_grants, 0, "{counts:?}");
    assert!(failures().is_empty(), "{:?}", failures());
    let latest = handle.latest().expect("a report");
    assert_eq!(state(&latest, &kept), HealthState::Healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_goes_on_after_asana_ends_its_access_token_early() {
    // Real time: an access token lasts an hour, so nothing but the sandbox
    // ending them makes the client fetch another.
    let env = Env::start(Sandbox::builder()).await;
    let kept = env.create("/kept").await;
    let first = env.create("/first").await;
    let second = env.create("/second").await;
    let (handle, mut changes) = env.watch(&["/kept", "/first", "/second"]).await;
    assert_eq!(env.sandbox.oauth_counts().issued, 1);

    for (round, doomed) in [&first, &second].into_iter().enumerate() {
        let before = env.sandbox.oauth_counts();
        env.sandbox.expire_access_tokens();
        // The watch's next check carries the ended token: one 401, one
        // refresh, and the listing again with the new token.
        let started = Instant::now();
        let refreshed = loop {
            let now = env.sandbox.oauth_counts();
            if now.refused_tokens > before.refused_tokens && now.issued > before.issued {
                break now;
            }
            assert!(started.elapsed() < LIMIT, "round {round}: {now:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let report = report_after(&handle, Utc::now()).await;
        assert_eq!(state(&report, &kept), HealthState::Healthy, "round {round}");
        let report = env.delete_and_see_gone(&handle, &mut changes, doomed).await;
        assert_eq!(state(&report, &kept), HealthState::Healthy, "round {round}");
        let after = env.sandbox.oauth_counts();
        assert_eq!(
            (refreshed.refused_tokens, after.refused_tokens),
            (before.refused_tokens + 1, before.refused_tokens + 1),
            "round {round}: one 401, on the watch's check"
        );
        assert_eq!(after.issued, before.issued + 1, "round {round}: {after:?}");
        assert!(failures().is_empty(), "round {round}: {:?}", failures());
    }
    let counts = env.sandbox.oauth_counts();
    println!("two tokens ended early: {counts:?}");
    assert_eq!(
        (counts.issued, counts.refused_tokens, counts.refused_grants),
        (3, 2, 0)
    );
}
