//! What the health watch costs against Asana's rate limits, counted at the
//! sandbox (`Sandbox::api_requests`, every request that reaches its API):
//! the requests of each check for 1, 100, 101 and 1,000 managed webhooks, and
//! what they make an hour at the default interval. The figures in the
//! `watch` module's documentation and in README.md come from this test
//! (`cargo test -p asana-webhooks-tests --test watch_cost -- --nocapture`
//! prints them).

use std::time::{Duration, Instant};

use asana_webhooks::inbox::MemoryInbox;
use asana_webhooks::sandbox::{ApiRequests, Sandbox, seed};
use asana_webhooks::secrets::{MemorySecretStore, SecretStore, StoredSecret, TargetKey};
use asana_webhooks::watch::{DEFAULT_WATCH_INTERVAL, HealthPolicy, HealthState, Watch};
use asana_webhooks::{Client, RetryPolicy};
use asana_webhooks_tests::Target;
use futures::StreamExt;

/// Checks measured for each number of webhooks.
const CHECKS: usize = 3;
/// Asana's rate limit for free workspaces, requests a minute.
const FREE_TIER_PER_MINUTE: u64 = 150;
/// The most one page of a listing holds.
const PAGE: usize = 100;

/// A sandbox holding `n` webhooks on the seeded task, each delivering to a
/// path of its own and with its secret stored.
struct Workspace {
    sandbox: Sandbox,
    client: Client,
    store: MemorySecretStore,
    targets: Vec<TargetKey>,
    _target: Target,
}

impl Workspace {
    async fn with(n: usize) -> Self {
        let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
        let client = Client::builder()
            .token("sandbox")
            .base_url(sandbox.base_url())
            .retry_policy(RetryPolicy::none())
            .build()
            .unwrap();
        let target = Target::start().await;
        let store = MemorySecretStore::new();
        let created: Vec<TargetKey> = futures::stream::iter(0..n)
            .map(|i| {
                let (client, store) = (client.clone(), store.clone());
                let url = format!("{}/hooks/{i}", target.base);
                async move {
                    let created = client
                        .create_webhook(seed::TASK, &url)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("webhook {i}: {e}"));
                    let key = TargetKey::from_url(&url).unwrap();
                    let record = StoredSecret::new(
                        key.clone(),
                        created.webhook.gid.unwrap(),
                        created.secret.unwrap(),
                    );
                    store.save(record).await.unwrap();
                    key
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        Workspace {
            sandbox,
            client,
            store,
            targets: created,
            _target: target,
        }
    }

    /// A watch of the webhooks delivering to `targets`.
    fn watch(&self, targets: &[TargetKey]) -> Watch<MemorySecretStore, MemoryInbox> {
        Watch::new(
            self.client.clone(),
            seed::WORKSPACE,
            self.store.clone(),
            targets.to_vec(),
        )
        .inbox(MemoryInbox::new())
        .policy(HealthPolicy {
            silence_after: Duration::from_secs(3650 * 24 * 3600),
            ..HealthPolicy::default()
        })
    }

    /// Runs `CHECKS` checks and returns the requests each made at the
    /// sandbox, asserting that every one is a listing page, that the
    /// report counts them alike, and that it holds the `managed` webhooks,
    /// all healthy.
    async fn measure(&self, targets: &[TargetKey], managed: usize) -> Vec<u64> {
        let watch = self.watch(targets);
        let mut per_check = Vec::new();
        for _ in 0..CHECKS {
            let before = self.sandbox.api_requests();
            let report = watch.check().await.unwrap();
            let made: ApiRequests = self.sandbox.api_requests().since(&before);
            assert_eq!(
                made.of("getWebhooks"),
                made.total,
                "a check only lists: {made:?}"
            );
            assert_eq!(u64::from(report.requests), made.total, "{made:?}");
            assert_eq!(report.webhooks.len(), managed);
            assert_eq!(
                report.counts().get(&HealthState::Healthy),
                Some(&managed),
                "{:?}",
                report.counts()
            );
            per_check.push(made.total);
        }
        per_check
    }
}

/// Requests an hour at the default interval, for `per_check` a check.
fn per_hour(per_check: u64) -> u64 {
    let checks_an_hour = 3600 / DEFAULT_WATCH_INTERVAL.as_secs();
    per_check * checks_an_hour
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_costs_one_listing_request_per_100_webhooks_of_the_workspace() {
    assert_eq!(DEFAULT_WATCH_INTERVAL, Duration::from_secs(300));
    let mut lines = Vec::new();
    let mut hourly_for_1000 = 0;
    for n in [1, 100, 101, 1000] {
        let started = Instant::now();
        let workspace = Workspace::with(n).await;
        let created_in = started.elapsed();
        let started = Instant::now();
        let per_check = workspace.measure(&workspace.targets, n).await;
        let checks_took = started.elapsed() / CHECKS as u32;
        let expected = n.div_ceil(PAGE) as u64;
        assert_eq!(
            per_check,
            vec![expected; CHECKS],
            "requests per check for {n} webhooks"
        );
        let hourly = per_hour(expected);
        lines.push(format!(
            "{n:>5} managed webhooks: {per_check:?} requests in {CHECKS} checks \
             ({expected} a check, {hourly} an hour at the default interval; \
             a check took {checks_took:?}, creating them {created_in:?})"
        ));
        if n == 1000 {
            hourly_for_1000 = hourly;
            // The cost follows the workspace's webhooks, not the managed
            // ones: the listing has to page through all of them.
            let one = workspace.measure(&workspace.targets[..1], 1).await;
            assert_eq!(one, vec![expected; CHECKS], "1 managed of {n}");
            lines.push(format!(
                "    1 managed of {n} in the workspace: {one:?} requests in {CHECKS} checks"
            ));
        }
    }
    // A design check, not a timing one: at the default interval the watch
    // of 1,000 webhooks uses a small fraction of the free tier's budget
    // (under a tenth of it in any minute, even with all of a check's
    // requests falling in the same minute).
    let per_minute_budget = FREE_TIER_PER_MINUTE;
    assert!(
        hourly_for_1000 * 10 < per_minute_budget * 60,
        "{hourly_for_1000} an hour"
    );
    assert!(
        (1000usize.div_ceil(PAGE) as u64) * 10 < per_minute_budget,
        "one check's burst"
    );
    lines.push(format!(
        "budget: {hourly_for_1000} requests an hour for 1,000 webhooks = {:.1} a minute, \
         against Asana's free-tier limit of {FREE_TIER_PER_MINUTE} a minute ({:.2} %)",
        hourly_for_1000 as f64 / 60.0,
        hourly_for_1000 as f64 / 60.0 / FREE_TIER_PER_MINUTE as f64 * 100.0
    ));
    for line in lines {
        println!("{line}");
    }
}
