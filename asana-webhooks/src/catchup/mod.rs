//! Gap-free: the events a webhook never delivered, caught up through
//! Asana's Events API into the same inbox.
//!
//! Webhooks deliver at most once: a delivery Asana drops, and every event
//! while a webhook is deleted or not yet created again, is never sent. Asana
//! keeps the same events for 24 hours behind the Events API. A [`CatchUp`]
//! reads them, per resource, into the inbox the receiver fills, marked
//! [`EventsApi`](crate::inbox::EventSource::EventsApi); the inbox knows an
//! event it already has from either source (by its
//! [`EventIdentity`](crate::EventIdentity)) and hands it out once.
//!
//! ```text
//! every interval, and at once for a gap the watch records
//!   lease "catch-up:<resource>" (one instance per interval)
//!   token = store.sync_token(resource)
//!   getEvents(resource, token) ──▶ page ──▶ inbox.append (committed)
//!                                        ──▶ store.save_sync_token(next)
//!                               ──▶ 412   ──▶ gap (from the token's time to now), fresh token
//! gaps of the resource the stream covers ──▶ Recovered, others ──▶ Unrecoverable
//! ```
//!
//! A token is saved only after the events before it are committed: a crash
//! in between repeats them (dropped as duplicates), never skips them. A
//! token Asana no longer accepts (they last 24 hours at most) is a
//! [`Gap`] with [`GapCause::SyncTokenExpired`], never a silent restart.
//! Resources the Events API cannot follow (workspaces, teams, portfolios)
//! are reported ([`CatchUpError::NotFollowable`]), once, and their gaps
//! marked unrecoverable.
//!
//! With the [watch](crate::watch), a webhook created again is caught up
//! at once:
//!
//! ```no_run
//! # async fn run(client: asana_webhooks::Client, store: asana_webhooks::secrets::FileSecretStore,
//! #              inbox: asana_webhooks::inbox::FileInbox) {
//! use asana_webhooks::catchup::CatchUp;
//! use asana_webhooks::secrets::TargetKey;
//! use asana_webhooks::watch::{RepairOutcome, Watch};
//!
//! let target = TargetKey::from_url("https://hooks.example.com/asana").unwrap();
//! let catch_up = CatchUp::new(client.clone(), store.clone(), inbox.clone(), vec![target.clone()]).spawn();
//! let watch = Watch::new(client, "1331", store, vec![target]).inbox(inbox).spawn();
//! let mut repairs = watch.repairs();
//! while let Ok(repair) = repairs.recv().await {
//!     if let RepairOutcome::Recreated { gap, .. } = repair {
//!         catch_up.now(gap.resource);
//!     }
//! }
//! # }
//! ```
//!
//! **Cost.** One request per resource per interval when nothing happened,
//! plus one per 100 events; at the default interval of 15 minutes, 4 an
//! hour per resource: 4, 400 and 4,000 an hour for 1, 100 and 1,000
//! resources (the last is 67 a minute of Asana's 150).

mod sync;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, mpsc};

pub use sync::{CatchUpRun, MAX_PAGES_PER_CATCH_UP};

use crate::client::Client;
use crate::error::Error;
use crate::inbox::{Inbox, InboxError};
use crate::secrets::{Gap, GapCause, GapStatus, RecoveryStore, SecretStore, StoreError, TargetKey};

/// How often each resource is caught up, by default.
pub const DEFAULT_CATCH_UP_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Why a catch-up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatchUpError {
    /// The Events API cannot follow this resource (only tasks, projects
    /// and goals): what its webhook misses cannot be recovered.
    #[error(
        "the Events API cannot follow resource {resource} ({message}): events its webhook misses cannot be recovered"
    )]
    NotFollowable {
        /// The resource.
        resource: String,
        /// Asana's explanation.
        message: String,
    },
    /// Asana answered with an error, or could not be reached.
    #[error("catching up resource {resource}: {source}")]
    Api {
        /// The resource.
        resource: String,
        /// What went wrong.
        #[source]
        source: Error,
    },
    /// The secret store (tokens, gaps, leases) failed.
    #[error("catching up: {0}")]
    Store(#[from] StoreError),
    /// The inbox refused the events (full, or its storage failed); the
    /// token was not moved past them, so they are read again next time.
    #[error("catching up: {0}")]
    Inbox(#[from] InboxError),
}

impl CatchUpError {
    fn from_api(resource: &str, error: Error) -> Self {
        match error.as_api() {
            Some(api) if api.status() == reqwest::StatusCode::BAD_REQUEST => {
                CatchUpError::NotFollowable {
                    resource: resource.to_string(),
                    message: api.to_string(),
                }
            }
            _ => CatchUpError::Api {
                resource: resource.to_string(),
                source: error,
            },
        }
    }
}

/// What a round of catch-up did for one resource.
#[derive(Debug)]
pub struct CatchUpReport {
    /// The resource.
    pub resource: String,
    /// The run, or why it failed. `None` when another instance holds the
    /// resource for this interval.
    pub outcome: Option<Result<CatchUpRun, CatchUpError>>,
    /// Gaps of the resource whose status this run settled.
    pub settled: Vec<Gap>,
}

/// Catches up the resources of managed webhooks; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct CatchUp<S, I> {
    client: Client,
    store: S,
    inbox: I,
    targets: Vec<TargetKey>,
    resources: BTreeMap<String, TargetKey>,
    interval: Duration,
    holder: String,
}

impl<S: SecretStore + RecoveryStore, I: Inbox> CatchUp<S, I> {
    /// Catches up, into `inbox`, the resource of every webhook whose secret
    /// `store` holds for `targets` (read again each round, so a webhook
    /// created again is followed at once).
    pub fn new(client: Client, store: S, inbox: I, targets: Vec<TargetKey>) -> Self {
        Self {
            client,
            store,
            inbox,
            targets,
            resources: BTreeMap::new(),
            interval: DEFAULT_CATCH_UP_INTERVAL,
            holder: format!("catch-up-{:016x}", fastrand::u64(..)),
        }
    }

    /// Follows `resource` too, whatever the stored webhooks; its events
    /// are stored as if delivered to `target`.
    pub fn resource(mut self, resource: impl Into<String>, target: TargetKey) -> Self {
        self.resources.insert(resource.into(), target);
        self
    }

    /// How often to catch up each resource; default 15 minutes.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The resources followed now, each with the target its events are
    /// stored under: those given, and those of the stored webhooks of the
    /// targets.
    pub async fn resources(&self) -> Result<BTreeMap<String, TargetKey>, StoreError> {
        let mut resources = self.resources.clone();
        for target in &self.targets {
            for record in self.store.secrets_for(target).await? {
                if let Some(resource) = record.resource {
                    resources.entry(resource).or_insert_with(|| target.clone());
                }
            }
        }
        Ok(resources)
    }

    /// Catches up one resource now, whatever the interval and the other
    /// instances (on demand, or for a gap), and settles its open gaps.
    pub async fn run_now(&self, resource: &str) -> CatchUpReport {
        let target = match self.resources().await {
            Ok(resources) => resources.get(resource).cloned(),
            Err(e) => {
                return CatchUpReport {
                    resource: resource.to_string(),
                    outcome: Some(Err(e.into())),
                    settled: Vec::new(),
                };
            }
        };
        let target = target.unwrap_or_else(|| TargetKey::from_path_and_query("/"));
        self.run_resource(resource, &target).await
    }

    /// Catches up `resource`, its events stored under `target`, and
    /// settles its open gaps.
    async fn run_resource(&self, resource: &str, target: &TargetKey) -> CatchUpReport {
        let outcome =
            sync::catch_up(&self.client, &self.store, &self.inbox, resource, target).await;
        match &outcome {
            Ok(run) => {
                crate::metrics::catch_up("ok", run.added, run.duplicates);
                if let Some(gap) = &run.gap {
                    crate::metrics::gap(gap.cause.as_str());
                }
            }
            Err(CatchUpError::NotFollowable { .. }) => {
                crate::metrics::catch_up("not_followable", 0, 0)
            }
            Err(_) => crate::metrics::catch_up("failed", 0, 0),
        }
        let settled = match &outcome {
            Ok(run) => self.settle(resource, Some(run), None).await,
            Err(e @ CatchUpError::NotFollowable { .. }) => {
                self.settle(resource, None, Some(e.to_string())).await
            }
            Err(_) => Vec::new(),
        };
        CatchUpReport {
            resource: resource.to_string(),
            outcome: Some(outcome),
            settled,
        }
    }

    /// One round: each resource that no instance caught up within the
    /// interval (a lease per resource, held for the interval).
    pub async fn run_round(&self) -> Result<Vec<CatchUpReport>, StoreError> {
        let mut reports = Vec::new();
        // Read once a round: each resource's target goes with it.
        for (resource, target) in self.resources().await? {
            let lease = format!("catch-up:{resource}");
            if !self
                .store
                .try_lease(&lease, &self.holder, self.interval)
                .await?
            {
                reports.push(CatchUpReport {
                    resource,
                    outcome: None,
                    settled: Vec::new(),
                });
                continue;
            }
            reports.push(self.run_resource(&resource, &target).await);
        }
        Ok(reports)
    }

    /// Settles the open gaps of `resource` that ended before this run: a
    /// gap whose whole span the stream covers is recovered; one it covers
    /// only in part, or not at all, is not.
    async fn settle(
        &self,
        resource: &str,
        run: Option<&CatchUpRun>,
        not_followable: Option<String>,
    ) -> Vec<Gap> {
        let Ok(gaps) = self.store.gaps().await else {
            return Vec::new();
        };
        let now = Utc::now();
        let mut settled = Vec::new();
        for mut gap in gaps {
            let is_webhook_gap = matches!(
                gap.cause,
                GapCause::WebhookGone { .. } | GapCause::UnknownSecretReplaced { .. }
            );
            if gap.resource != resource
                || gap.status != GapStatus::Open
                || !is_webhook_gap
                || gap.to > now
            {
                continue;
            }
            let status = match (run, &not_followable) {
                (_, Some(why)) => GapStatus::Unrecoverable { reason: why.clone() },
                (Some(run), None) => match (run.stream_since, gap.from) {
                    (Some(since), Some(from)) if since <= from => GapStatus::Recovered { at: now },
                    (Some(since), Some(_)) => GapStatus::Unrecoverable {
                        reason: format!(
                            "the Events API stream of this resource reaches back to {} only (it keeps 24 hours, and a token expires after 24 hours): events before that are lost; those after it are in the inbox",
                            since.to_rfc3339()
                        ),
                    },
                    (_, None) => GapStatus::Unrecoverable {
                        reason: "the gap's start is unknown (nothing was ever heard from the webhook): events before the stream began may be lost".into(),
                    },
                    (None, Some(_)) => continue,
                },
                (None, None) => continue,
            };
            if self
                .store
                .set_gap_status(&gap.id, status.clone())
                .await
                .is_ok()
            {
                crate::metrics::gap_settled(match status {
                    GapStatus::Recovered { .. } => "recovered",
                    _ => "unrecoverable",
                });
                gap.status = status;
                settled.push(gap);
            }
        }
        settled
    }

    /// Runs a round every interval, and a resource at once when asked
    /// ([`CatchUpHandle::now`], for example for a gap the watch recorded),
    /// in a task of its own, until the returned handle is dropped.
    pub fn spawn(self) -> CatchUpHandle {
        let (reports, _) = broadcast::channel(1024);
        let (asks, asked) = mpsc::channel(1024);
        let unfollowable = Arc::new(Mutex::new(BTreeSet::new()));
        let task = tokio::spawn(run(self, asked, reports.clone(), Arc::clone(&unfollowable)));
        CatchUpHandle {
            reports,
            asks,
            unfollowable,
            task,
        }
    }
}

/// A running catch-up. Dropping it stops it.
#[derive(Debug)]
pub struct CatchUpHandle {
    reports: broadcast::Sender<Arc<CatchUpReport>>,
    asks: mpsc::Sender<String>,
    unfollowable: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CatchUpHandle {
    /// Every report from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CatchUpReport>> {
        self.reports.subscribe()
    }

    /// Catches `resource` up at once (queued behind the run under way).
    /// `false` when too many requests wait already or it stopped.
    pub fn now(&self, resource: impl Into<String>) -> bool {
        self.asks.try_send(resource.into()).is_ok()
    }

    /// A handle that asks for catch-ups ([`CatchUpAsker::now`]) from
    /// another task, without keeping the catch-up running.
    pub fn asker(&self) -> CatchUpAsker {
        CatchUpAsker(self.asks.clone())
    }

    /// The resources found that the Events API cannot follow.
    pub fn not_followable(&self) -> BTreeSet<String> {
        self.unfollowable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Asks a running catch-up for a resource at once (see
/// [`CatchUpHandle::asker`]).
#[derive(Debug, Clone)]
pub struct CatchUpAsker(mpsc::Sender<String>);

impl CatchUpAsker {
    /// Like [`CatchUpHandle::now`].
    pub fn now(&self, resource: impl Into<String>) -> bool {
        self.0.try_send(resource.into()).is_ok()
    }
}

impl Drop for CatchUpHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run<S: SecretStore + RecoveryStore, I: Inbox>(
    catch_up: CatchUp<S, I>,
    mut asked: mpsc::Receiver<String>,
    reports: broadcast::Sender<Arc<CatchUpReport>>,
    unfollowable: Arc<Mutex<BTreeSet<String>>>,
) {
    let mut ticks = tokio::time::interval(catch_up.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        let round = tokio::select! {
            _ = ticks.tick() => match catch_up.run_round().await {
                Ok(round) => round,
                Err(e) => {
                    tracing::error!(error = %e, "catch-up could not read its resources from the secret store; trying again at the next interval");
                    continue;
                }
            },
            Some(resource) = asked.recv() => vec![catch_up.run_now(&resource).await],
        };
        for report in round {
            announce(&report, &mut reported, &unfollowable);
            let _ = reports.send(Arc::new(report));
        }
    }
}

/// One log line per thing an operator should know; a resource that cannot
/// be followed is reported once.
fn announce(
    report: &CatchUpReport,
    reported: &mut HashSet<String>,
    unfollowable: &Mutex<BTreeSet<String>>,
) {
    let resource = &report.resource;
    match &report.outcome {
        None => {}
        Some(Ok(run)) => {
            if let Some(gap) = &run.gap {
                let from = gap.from.map(|f| f.to_rfc3339()).unwrap_or_default();
                tracing::error!(%resource, gap.from = %from, gap.to = %gap.to.to_rfc3339(), "the Events API no longer had this resource's events since the saved sync token: events in the gap may be lost");
            }
            if run.added > 0 {
                tracing::warn!(%resource, added = run.added, duplicates = run.duplicates, "caught up events the webhook had not delivered");
            }
        }
        Some(Err(e @ CatchUpError::NotFollowable { .. })) => {
            unfollowable
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(resource.clone());
            if reported.insert(resource.clone()) {
                tracing::error!(%resource, error = %e, "this resource's missed events cannot be recovered");
            }
        }
        Some(Err(e)) => {
            tracing::error!(%resource, error = %e, "catch-up failed; trying again at the next interval")
        }
    }
    for gap in &report.settled {
        match &gap.status {
            GapStatus::Recovered { .. } => {
                tracing::info!(%resource, gap = %gap.id, "the events of the gap were caught up")
            }
            GapStatus::Unrecoverable { reason } => {
                tracing::error!(%resource, gap = %gap.id, %reason, "the events of the gap cannot all be recovered")
            }
            _ => {}
        }
    }
}
