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
//! One check costs one request per 100 webhooks of the workspace (a
//! listing with the health fields), through the client's limiter: at the
//! default interval of 5 minutes, 12 requests an hour for up to 100
//! webhooks, 120 for 1,000 — far below Asana's 150 a minute.

mod health;
mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

pub use health::{Clocks, HEARTBEAT_INTERVAL, HealthPolicy, HealthState, SeenHere, classify};
pub use report::{HealthReport, WebhookHealth, check};

use crate::client::Client;
use crate::inbox::{Inbox, MemoryInbox};
use crate::secrets::{SecretStore, TargetKey};

/// How often the watch checks, by default.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(5 * 60);

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

    /// Starts checking on the schedule, in a task of its own, until the
    /// returned handle is dropped.
    pub fn spawn(self) -> WatchHandle {
        let (changes, _) = broadcast::channel(1024);
        let latest = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run(self, changes.clone(), Arc::clone(&latest)));
        WatchHandle {
            changes,
            latest,
            task,
        }
    }
}

/// A running watch. Dropping it stops the watch.
#[derive(Debug)]
pub struct WatchHandle {
    changes: broadcast::Sender<HealthChange>,
    latest: Arc<Mutex<Option<HealthReport>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WatchHandle {
    /// Every change of a webhook's state from now on (a slow receiver
    /// misses the oldest ones, and is told how many).
    pub fn subscribe(&self) -> broadcast::Receiver<HealthChange> {
        self.changes.subscribe()
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

async fn run<S: SecretStore, I: Inbox>(
    watch: Watch<S, I>,
    changes: broadcast::Sender<HealthChange>,
    latest: Arc<Mutex<Option<HealthReport>>>,
) {
    let mut states: HashMap<String, HealthState> = HashMap::new();
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
        *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
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
