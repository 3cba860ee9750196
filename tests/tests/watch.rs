//! The health watch against the sandbox, on its time scale: a webhook whose
//! target fails is reported failing, then about to be deleted (at the
//! sandbox's own deletion time), then healthy once the target recovers; a
//! webhook from which nothing reaches the receiver is reported silent; a
//! deleted one is gone; one whose secret is not stored is reported so.

use std::time::{Duration, Instant};

use asana_webhooks::inbox::MemoryInbox;
use asana_webhooks::sandbox::{EmittedEvent, Sandbox, seed};
use asana_webhooks::secrets::{MemorySecretStore, SecretStore, StoredSecret, TargetKey};
use asana_webhooks::types::WebhookOptField;
use asana_webhooks::watch::{HealthPolicy, HealthReport, HealthState, Watch};
use asana_webhooks::{Client, RetryPolicy};
use asana_webhooks_tests::{Target, TargetMode};

/// Sandbox hours per real second.
const SCALE: f64 = 7200.0;
/// The longest any step may take, in real time.
const LIMIT: Duration = Duration::from_secs(30);

struct Env {
    sandbox: Sandbox,
    client: Client,
    target: Target,
    store: MemorySecretStore,
}

impl Env {
    async fn start() -> Self {
        let sandbox = Sandbox::builder()
            .time_scale(SCALE)
            .start("127.0.0.1:0")
            .await
            .unwrap();
        let client = Client::builder()
            .token("sandbox")
            .base_url(sandbox.base_url())
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.target.base)
    }

    /// Creates a webhook on the task delivering to `path`; stores its
    /// secret when `store` says so. Returns its gid.
    async fn create(&self, path: &str, store: bool) -> String {
        let created = self
            .client
            .create_webhook(seed::TASK, self.url(path))
            .send()
            .await
            .unwrap();
        let gid = created.webhook.gid.unwrap();
        if store {
            let key = TargetKey::from_url(&self.url(path)).unwrap();
            let record = StoredSecret::new(key, gid.clone(), created.secret.unwrap());
            self.store.save(record).await.unwrap();
        }
        gid
    }

    fn watch(&self, paths: &[&str], policy: HealthPolicy) -> Watch<MemorySecretStore, MemoryInbox> {
        let targets = paths
            .iter()
            .map(|p| TargetKey::from_url(&self.url(p)).unwrap())
            .collect();
        Watch::new(
            self.client.clone(),
            seed::WORKSPACE,
            self.store.clone(),
            targets,
        )
        .inbox(MemoryInbox::new())
        .policy(policy)
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

/// Checks until `gid` is in `wanted`; returns that report.
async fn until(
    watch: &Watch<MemorySecretStore, MemoryInbox>,
    gid: &str,
    wanted: HealthState,
) -> HealthReport {
    let started = Instant::now();
    loop {
        let report = watch.check().await.unwrap();
        if state(&report, gid) == wanted {
            return report;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{gid} never became {wanted}: {report:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Silence is not what these tests look at, unless they say so.
fn never_silent() -> HealthPolicy {
    HealthPolicy {
        silence_after: Duration::from_secs(3650 * 24 * 3600),
        ..HealthPolicy::default()
    }
}

#[tokio::test]
async fn a_failing_target_is_reported_failing_then_about_to_be_deleted_then_healthy() {
    let env = Env::start().await;
    let gid = env.create("/failing", true).await;
    let watch = env.watch(&["/failing"], never_silent());
    assert_eq!(
        state(&watch.check().await.unwrap(), &gid),
        HealthState::Healthy
    );

    env.target.set_mode(TargetMode::Failing);
    let event = EmittedEvent {
        resource: seed::TASK.into(),
        action: "changed".into(),
        parent: None,
        field: Some("due_on".into()),
    };
    env.sandbox.emit(event).unwrap();
    let failing = until(&watch, &gid, HealthState::Failing).await;
    let health = failing.webhooks.iter().find(|w| w.gid == gid).unwrap();
    assert!(health.delivery_retry_count.unwrap() >= 1);
    assert!(
        health
            .last_failure_content
            .as_deref()
            .is_some_and(|c| c.contains("500")),
        "{health:?}"
    );

    // Within the horizon of Asana's deletion (the sandbox's clock runs
    // SCALE times faster, and the watch reads Asana's time from its Date).
    let about = until(&watch, &gid, HealthState::AboutToBeDeleted).await;
    let reported = about
        .webhooks
        .iter()
        .find(|w| w.gid == gid)
        .unwrap()
        .failure_deletion_timestamp;
    let at_asana = env
        .client
        .get_webhook(&gid)
        .opt_fields([WebhookOptField::FailureDeletionTimestamp])
        .send()
        .await
        .unwrap()
        .failure_deletion_timestamp;
    assert!(reported.is_some());
    assert_eq!(reported, at_asana, "the sandbox's deletion time");

    env.target.set_mode(TargetMode::Healthy);
    let healthy = until(&watch, &gid, HealthState::Healthy).await;
    let health = healthy.webhooks.iter().find(|w| w.gid == gid).unwrap();
    assert_eq!(health.failure_deletion_timestamp, None);
    assert_eq!(health.delivery_retry_count, Some(0));
    assert_eq!(healthy.requests, 1, "one listing for the whole workspace");
}

#[tokio::test]
async fn a_webhook_whose_heartbeats_never_reach_the_receiver_is_silent() {
    let env = Env::start().await;
    // The target answers Asana, but this receiver's inbox records nothing:
    // heartbeats go somewhere else.
    let gid = env.create("/silent", true).await;
    let watch = env.watch(&["/silent"], HealthPolicy::default());
    assert_eq!(
        state(&watch.check().await.unwrap(), &gid),
        HealthState::Healthy
    );
    let report = until(&watch, &gid, HealthState::Silent).await;
    let health = report.webhooks.iter().find(|w| w.gid == gid).unwrap();
    assert!(health.why.contains("nothing seen here"), "{}", health.why);
}

#[tokio::test]
async fn deleted_and_unverifiable_webhooks_are_reported_and_changes_are_announced_once() {
    let env = Env::start().await;
    let kept = env.create("/kept", true).await;
    let deleted = env.create("/deleted", true).await;
    let unknown = env.create("/unknown", false).await;
    let handle = env
        .watch(&["/kept", "/deleted", "/unknown"], never_silent())
        .interval(Duration::from_millis(100))
        .spawn();
    let mut changes = handle.subscribe();
    let mut first = Vec::new();
    while first.len() < 3 {
        let change = tokio::time::timeout(LIMIT, changes.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(change.from, None, "first sight of each webhook");
        first.push((change.health.gid.clone(), change.health.state));
    }
    first.sort();
    let mut expected = vec![
        (kept.clone(), HealthState::Healthy),
        (deleted.clone(), HealthState::Healthy),
        (unknown.clone(), HealthState::UnknownSecret),
    ];
    expected.sort();
    assert_eq!(first, expected);

    env.client.delete_webhook(&deleted).send().await.unwrap();
    let change = tokio::time::timeout(LIMIT, changes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(change.health.gid, deleted);
    assert_eq!(change.from, Some(HealthState::Healthy));
    assert_eq!(change.health.state, HealthState::Gone);
    // Nothing else changes: each change is announced once, not per check.
    let quiet = tokio::time::timeout(Duration::from_millis(700), changes.recv()).await;
    assert!(quiet.is_err(), "announced again: {quiet:?}");
    let latest = handle.latest().expect("a report");
    assert_eq!(state(&latest, &kept), HealthState::Healthy);
    assert_eq!(state(&latest, &deleted), HealthState::Gone);
}
