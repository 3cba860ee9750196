//! Webhooks that stay alive for months: a watch that reads Asana's
//! bookkeeping for every webhook this receiver manages, sets it beside the
//! receiver's own records, and reports each change of health once.
//!
//! Asana deletes a webhook after 24 hours of failed deliveries and stops
//! sending to it without telling anybody; it warns only in fields nobody
//! reads (`last_failure_at`, `delivery_retry_count`,
//! `failure_deletion_timestamp`, …). The watch reads them on a schedule:
//!
//! | state | means |
//! |---|---|
//! | healthy | Asana delivers and the receiver hears from it |
//! | failing | deliveries fail, Asana retries (`last_failure_content` says why) |
//! | about to be deleted | `failure_deletion_timestamp` is within the horizon |
//! | silent | active at Asana, yet no heartbeat reached the receiver |
//! | gone | Asana no longer has it: no event is sent |
//! | unknown secret | it delivers here but its secret is not stored |
//!
//! ```no_run
//! # async fn run(client: asana_webhooks::Client, store: asana_webhooks::secrets::FileSecretStore,
//! #              inbox: asana_webhooks::inbox::FileInbox) {
//! use asana_webhooks::secrets::TargetKey;
//! use asana_webhooks::watch::Watch;
//!
//! let target = TargetKey::from_url("https://hooks.example.com/asana").unwrap();
//! let watch = Watch::new(client, "1331", store, vec![target]).inbox(inbox).spawn();
//! let mut changes = watch.subscribe();
//! while let Ok(change) = changes.recv().await {
//!     eprintln!("webhook {} is now {}: {}", change.health.gid, change.health.state, change.health.advice);
//! }
//! # }
//! ```
//!
//! One check costs one request per 100 webhooks of the workspace, whether
//! this receiver manages them or not (a listing with the health fields,
//! 100 a page), through the client's limiter, and nothing per webhook,
//! resource or secret. Measured at the sandbox by `tests/tests/watch_cost.rs`
//! (every request that reached its API, over 3 checks each; it prints
//! them):
//!
//! | webhooks | requests a check | an hour at the default 5 minutes |
//! |---:|---:|---:|
//! | 1 | 1 | 12 |
//! | 100 | 1 | 12 |
//! | 101 | 2 | 24 |
//! | 1,000 | 10 | 120 |
//!
//! 1 webhook managed among 1,000 in the workspace costs as much as 1,000.
//! 120 an hour is 2 a minute, 1.3 % of Asana's free-tier limit of 150 a
//! minute. Retries come on top: a 429 retried, or a check that meets an
//! OAuth access token Asana ended early (one 401, then the listing again
//! with a new token: `tests/tests/watch_oauth.rs`); an OAuth client also
//! asks the token endpoint, outside the API, for a new access token about
//! once an hour.

mod health;
mod repair;
mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

pub use health::{Clocks, HEARTBEAT_INTERVAL, HealthPolicy, HealthState, SeenHere, classify};
pub use repair::{REPAIR_LEASE, RepairOutcome};
pub use report::{HealthReport, WebhookHealth, check};

use crate::client::Client;
use crate::inbox::{Inbox, MemoryInbox};
use crate::secrets::{RecoveryStore, SecretStore, TargetKey};

/// How often the watch checks, by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// After a failed repair, how long before the first retry; each further
/// failure doubles it, up to [`REPAIR_BACKOFF_MAX`]. A retry happens at the
/// first check after that.
pub const REPAIR_BACKOFF_FIRST: Duration = Duration::from_secs(30);

/// The longest wait between two attempts to repair one webhook.
pub const REPAIR_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// A webhook whose state changed (or that was seen for the first time).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HealthChange {
    /// Its state at the previous check; `None` the first time it is seen.
    pub from: Option<HealthState>,
    /// Its health now.
    pub health: WebhookHealth,
}

/// A watch, configured; [`Watch::spawn`] starts it.
#[derive(Debug)]
pub struct Watch<S, I = MemoryInbox> {
    client: Client,
    workspace: String,
    store: S,
    targets: Vec<TargetKey>,
    inbox: Option<I>,
    policy: HealthPolicy,
    interval: Duration,
    repair: bool,
    replace_unknown: bool,
    /// Names this instance in the store's leases.
    holder: String,
}

impl<S: SecretStore> Watch<S> {
    /// Watches the webhooks of `workspace` that deliver to `targets` or
    /// whose secret `store` holds for them.
    pub fn new(
        client: Client,
        workspace: impl Into<String>,
        store: S,
        targets: Vec<TargetKey>,
    ) -> Self {
        Self {
            client,
            workspace: workspace.into(),
            store,
            targets,
            inbox: None,
            policy: HealthPolicy::default(),
            interval: DEFAULT_WATCH_INTERVAL,
            repair: true,
            replace_unknown: false,
            holder: format!("watch-{:016x}", fastrand::u64(..)),
        }
    }
}

impl<S: SecretStore, I: Inbox> Watch<S, I> {
    /// The inbox whose recorded heartbeats tell a silent webhook apart.
    pub fn inbox<J: Inbox>(self, inbox: J) -> Watch<S, J> {
        Watch {
            client: self.client,
            workspace: self.workspace,
            store: self.store,
            targets: self.targets,
            inbox: Some(inbox),
            policy: self.policy,
            interval: self.interval,
            repair: self.repair,
            replace_unknown: self.replace_unknown,
            holder: self.holder,
        }
    }

    /// The classification's thresholds.
    pub fn policy(mut self, policy: HealthPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How often to check; default 5 minutes.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Whether a webhook that Asana deleted is created again (through the
    /// handshake, as it was created) and its gap recorded; default `true`.
    /// Needs a receiver that shares the store, to answer the handshake.
    pub fn repair(mut self, repair: bool) -> Self {
        self.repair = repair;
        self
    }

    /// Whether a webhook on one of the targets whose secret is not stored
    /// (its deliveries can never verify) is deleted and created again
    /// through the handshake; default `false`, since it deletes a webhook
    /// that someone else may have made on purpose.
    pub fn replace_unknown_secrets(mut self, replace: bool) -> Self {
        self.replace_unknown = replace;
        self
    }

    /// Runs one check now.
    pub async fn check(&self) -> Result<HealthReport, crate::Error> {
        check(
            &self.client,
            &self.workspace,
            &self.store,
            &self.targets,
            self.inbox.as_ref(),
            &self.policy,
        )
        .await
    }
}

impl<S: SecretStore + RecoveryStore, I: Inbox> Watch<S, I> {
    /// Repairs what `report` found gone (and, when opted in, what has an
    /// unknown secret), one webhook after the other. Failures are in the
    /// list, one per webhook; they never stop the others.
    pub async fn repair_all(
        &self,
        report: &HealthReport,
    ) -> Vec<(String, Result<RepairOutcome, crate::Error>)> {
        let mut outcomes = Vec::new();
        for health in &report.webhooks {
            if let Some(outcome) = self.repair_one(health).await {
                outcomes.push((health.gid.clone(), outcome));
            }
        }
        outcomes
    }

    /// Checks now and repairs what the check found (see
    /// [`Watch::repair`]).
    pub async fn check_and_repair(
        &self,
    ) -> Result<
        (
            HealthReport,
            Vec<(String, Result<RepairOutcome, crate::Error>)>,
        ),
        crate::Error,
    > {
        let report = self.check().await?;
        let repairs = self.repair_all(&report).await;
        Ok((report, repairs))
    }

    async fn repair_one(
        &self,
        health: &WebhookHealth,
    ) -> Option<Result<RepairOutcome, crate::Error>> {
        let (client, workspace, store, holder) =
            (&self.client, &self.workspace, &self.store, &self.holder);
        match health.state {
            HealthState::Gone if self.repair => {
                Some(repair::recreate(client, workspace, store, holder, health).await)
            }
            HealthState::UnknownSecret if self.replace_unknown => {
                Some(repair::replace(client, workspace, store, holder, health).await)
            }
            _ => None,
        }
    }

    /// Starts checking (and repairing) on the schedule, in a task of its
    /// own, until the returned handle is dropped.
    pub fn spawn(self) -> WatchHandle {
        let (changes, _) = broadcast::channel(1024);
        let (repairs, _) = broadcast::channel(1024);
        let latest = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run(
            self,
            changes.clone(),
            repairs.clone(),
            Arc::clone(&latest),
        ));
        WatchHandle {
            changes,
            repairs,
            latest,
            task,
        }
    }
}

/// A running watch. Dropping it stops the watch.
#[derive(Debug)]
pub struct WatchHandle {
    changes: broadcast::Sender<HealthChange>,
    repairs: broadcast::Sender<RepairOutcome>,
    latest: Arc<Mutex<Option<HealthReport>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WatchHandle {
    /// Every change of a webhook's state from now on (a slow receiver
    /// misses the oldest ones, and is told how many).
    pub fn subscribe(&self) -> broadcast::Receiver<HealthChange> {
        self.changes.subscribe()
    }

    /// Every repair from now on: each webhook created again, with its gap
    /// (already recorded in the store), and each that cannot be.
    pub fn repairs(&self) -> broadcast::Receiver<RepairOutcome> {
        self.repairs.subscribe()
    }

    /// The report of the last check that succeeded.
    pub fn latest(&self) -> Option<HealthReport> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Failed repairs per webhook: how many in a row, and when to try again.
#[derive(Default)]
struct Backoff(HashMap<String, (u32, Instant)>);

impl Backoff {
    fn due(&self, gid: &str) -> bool {
        self.0
            .get(gid)
            .is_none_or(|(_, next)| Instant::now() >= *next)
    }

    fn failed(&mut self, gid: &str) -> Duration {
        let failures = self.0.get(gid).map_or(0, |(n, _)| *n);
        let wait = REPAIR_BACKOFF_FIRST
            .saturating_mul(1 << failures.min(16))
            .min(REPAIR_BACKOFF_MAX);
        self.0
            .insert(gid.to_string(), (failures + 1, Instant::now() + wait));
        wait
    }

    fn succeeded(&mut self, gid: &str) {
        self.0.remove(gid);
    }
}

async fn run<S: SecretStore + RecoveryStore, I: Inbox>(
    watch: Watch<S, I>,
    changes: broadcast::Sender<HealthChange>,
    repairs: broadcast::Sender<RepairOutcome>,
    latest: Arc<Mutex<Option<HealthReport>>>,
) {
    let mut states: HashMap<String, HealthState> = HashMap::new();
    let mut backoff = Backoff::default();
    let mut ticks = tokio::time::interval(watch.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let report = match watch.check().await {
            Ok(report) => {
                crate::metrics::watch_check(true);
                record_states(&report);
                report
            }
            Err(e) => {
                crate::metrics::watch_check(false);
                tracing::error!(workspace = %watch.workspace, error = %e, "the webhook health check failed; the next one runs at the next interval");
                continue;
            }
        };
        for health in &report.webhooks {
            let from = states.insert(health.gid.clone(), health.state);
            if from == Some(health.state) {
                continue;
            }
            announce(from, health);
            let _ = changes.send(HealthChange {
                from,
                health: health.clone(),
            });
        }
        for health in &report.webhooks {
            if !backoff.due(&health.gid) {
                continue;
            }
            let Some(outcome) = watch.repair_one(health).await else {
                continue;
            };
            match outcome {
                Ok(outcome) => {
                    backoff.succeeded(&health.gid);
                    match &outcome {
                        RepairOutcome::Recreated { gap, .. } => {
                            crate::metrics::repair("recreated");
                            crate::metrics::gap(gap.cause.as_str());
                        }
                        RepairOutcome::Impossible { .. } => crate::metrics::repair("impossible"),
                        RepairOutcome::NotHere => {}
                    }
                    announce_repair(&outcome);
                    if outcome != RepairOutcome::NotHere {
                        let _ = repairs.send(outcome);
                    }
                }
                Err(e) => {
                    crate::metrics::repair("failed");
                    let wait = backoff.failed(&health.gid);
                    tracing::error!(gid = %health.gid, error = %e, retry_in = ?wait, "could not create the deleted webhook again; retrying later");
                }
            }
        }
        *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }
}

fn announce_repair(outcome: &RepairOutcome) {
    match outcome {
        RepairOutcome::Recreated {
            old_gid,
            new_gid,
            gap,
        } => {
            let from = gap
                .from
                .map_or_else(|| "unknown".to_string(), |f| f.to_rfc3339());
            tracing::error!(%old_gid, %new_gid, resource = %gap.resource, gap.from = %from, gap.to = %gap.to.to_rfc3339(), "webhook created again; events in the gap were not delivered and are recorded for catch-up")
        }
        RepairOutcome::Impossible { gid, reason } => {
            tracing::error!(%gid, %reason, "the deleted webhook cannot be created again")
        }
        RepairOutcome::NotHere => {}
    }
}

/// Sets the gauge of webhooks per state from a report, every state
/// included (one that empties reads 0).
fn record_states(report: &HealthReport) {
    let mut counts: Vec<(&'static str, u64)> = HealthState::ALL
        .iter()
        .map(|state| (state.label(), 0))
        .collect();
    for health in &report.webhooks {
        if let Some(count) = counts.iter_mut().find(|(l, _)| *l == health.state.label()) {
            count.1 += 1;
        }
    }
    crate::metrics::watched_webhooks(&counts);
}

/// One structured event per change: warn or error for the bad states.
fn announce(from: Option<HealthState>, health: &WebhookHealth) {
    let from = from.map_or("new".to_string(), |s| s.to_string());
    let (gid, state, why, advice) = (&health.gid, health.state, &health.why, health.advice);
    match state {
        HealthState::Healthy => {
            tracing::info!(%gid, %from, %state, %why, "webhook health changed")
        }
        HealthState::Failing | HealthState::Silent => {
            tracing::warn!(%gid, %from, %state, %why, %advice, "webhook health changed")
        }
        _ => tracing::error!(%gid, %from, %state, %why, %advice, "webhook health changed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_failing_repair_waits_longer_each_time_up_to_the_cap_and_a_success_resets_it() {
        let mut backoff = Backoff::default();
        assert!(backoff.due("1"), "never tried: due");
        let waits: Vec<Duration> = (0..9).map(|_| backoff.failed("1")).collect();
        assert_eq!(waits[0], REPAIR_BACKOFF_FIRST);
        assert_eq!(waits[1], REPAIR_BACKOFF_FIRST * 2);
        assert_eq!(waits[2], REPAIR_BACKOFF_FIRST * 4);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*waits.last().unwrap(), REPAIR_BACKOFF_MAX, "capped");
        assert!(!backoff.due("1"));
        assert!(backoff.due("2"), "another webhook is not held back");
        tokio::time::advance(REPAIR_BACKOFF_MAX).await;
        assert!(backoff.due("1"));
        backoff.succeeded("1");
        assert_eq!(
            backoff.failed("1"),
            REPAIR_BACKOFF_FIRST,
            "reset by a success"
        );
    }
}
