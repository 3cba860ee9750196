//! The sandbox's state: its webhooks behind one lock, shared by the routes
//! and the delivery workers. The rules, representations, offsets and
//! event matching it applies live in their own modules; this one holds the
//! data and changes it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Notify;

use super::accounting::ApiRequests;
use super::clock::Clock;
use super::emit::Emission;
use super::failure::Failure;
use super::model::{
    EmittedEvent, HEARTBEAT_EVERY, NewWebhook, Queued, Resources, Webhook, parse_filters,
    seeded_resources,
};
use super::offsets;
use super::render;
use super::rules;
use super::stream::{self, Streams};
use crate::hook_secret::HookSecret;

pub(crate) struct Settings {
    pub(crate) clock: Clock,
    pub(crate) rate_limit_every: Option<u32>,
    pub(crate) retry_after: Duration,
    pub(crate) offset_ttl: Duration,
    pub(crate) create_answer_delay: Duration,
    /// The fraction of event deliveries lost, in 0..=1.
    pub(crate) drop_fraction: f64,
    /// Seeds the draws that pick the lost deliveries.
    pub(crate) drop_seed: u64,
}

#[derive(Default)]
struct Inner {
    webhooks: BTreeMap<String, Webhook>,
    next_gid: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Draws, in emission order, whether each queued event is lost.
    drops: fastrand::Rng,
}

/// What getEvents answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EventsAnswer {
    /// 200: events since the token, and the next token.
    Page {
        events: Vec<Value>,
        sync: String,
        has_more: bool,
    },
    /// 412: no token, or one not valid (any more): a fresh one.
    Expired { sync: String },
}

/// The sandbox's state, shared by its routes and delivery workers.
pub(crate) struct Sandbox {
    pub(crate) settings: Settings,
    resources: Resources,
    inner: Mutex<Inner>,
    offset_key: HookSecret,
    requests: AtomicU64,
    /// Every API request received, by operation.
    api_requests: Mutex<ApiRequests>,
    /// The Events API's record of every event emitted.
    streams: Mutex<Streams>,
    /// Events whose delivery was lost, per webhook.
    dropped: AtomicU64,
    pub(crate) http: reqwest::Client,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("webhooks", &self.lock().webhooks.len())
            .finish_non_exhaustive()
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

impl Sandbox {
    pub(crate) fn new(settings: Settings) -> Arc<Self> {
        let drops = fastrand::Rng::with_seed(settings.drop_seed);
        Arc::new(Self {
            settings,
            resources: seeded_resources(),
            inner: Mutex::new(Inner {
                next_gid: 1_200_000_000_000_000,
                drops,
                ..Default::default()
            }),
            offset_key: HookSecret::new(random_hex(32)),
            requests: AtomicU64::new(0),
            api_requests: Mutex::new(ApiRequests::default()),
            streams: Mutex::new(Streams::default()),
            dropped: AtomicU64::new(0),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain HTTP client"),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.settings.clock.now()
    }

    pub(crate) fn shutdown(&self) {
        for task in self.lock().tasks.drain(..) {
            task.abort();
        }
    }

    /// Counts an API request to `operation`.
    pub(crate) fn count_request(&self, operation: &'static str) {
        let mut counts = self.api_requests.lock().unwrap_or_else(|p| p.into_inner());
        counts.total += 1;
        *counts.by_operation.entry(operation).or_insert(0) += 1;
    }

    /// The API requests received so far.
    pub(crate) fn api_requests(&self) -> ApiRequests {
        self.api_requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `Some(retry_after)` when this request is one the sandbox rate-limits.
    pub(crate) fn rate_limited(&self) -> Option<Duration> {
        let n = u64::from(self.settings.rate_limit_every?);
        let count = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        count.is_multiple_of(n).then_some(self.settings.retry_after)
    }

    /// `webhook` as `fields` ask, with the seeded resource it watches.
    fn render(&self, webhook: &Webhook, fields: &[String]) -> Value {
        let resource = self.resources.get(webhook.resource.as_str());
        render::webhook(webhook, resource, fields)
    }

    /// Validates a create request; returns the new webhook's gid and secret.
    pub(crate) fn prepare_create(&self, data: &Value) -> Result<NewWebhook, Failure> {
        let valid = rules::check_create(&self.resources, data)?;
        let mut inner = self.lock();
        rules::check_unique(inner.webhooks.values(), valid.resource, valid.target)?;
        inner.next_gid += 1;
        Ok(NewWebhook {
            gid: inner.next_gid.to_string(),
            secret: random_hex(32),
            filters: valid.filters,
            resource: valid.resource.to_string(),
            target: valid.target.to_string(),
        })
    }

    /// Stores a webhook whose handshake succeeded and starts its deliveries.
    pub(crate) fn insert(&self, new: NewWebhook, fields: &[String]) -> Result<Value, Failure> {
        let now = self.now();
        let wake = Arc::new(Notify::new());
        let NewWebhook {
            gid,
            secret,
            filters,
            resource,
            target,
        } = new;
        let webhook = Webhook {
            gid: gid.clone(),
            resource,
            target,
            filters,
            secret: HookSecret::new(secret),
            created_at: now,
            last_success_at: None,
            last_failure_at: None,
            last_failure_content: None,
            delivery_retry_count: 0,
            next_attempt_after: None,
            failure_deletion_timestamp: None,
            // Due at once: Asana sends a heartbeat right after the handshake.
            last_heartbeat: now - chrono::Duration::from_std(HEARTBEAT_EVERY).expect("8 hours"),
            pending: Vec::new(),
            wake,
        };
        let mut inner = self.lock();
        // Checked again: another create may have finished its handshake
        // for the same resource and target in the meantime.
        rules::check_unique(inner.webhooks.values(), &webhook.resource, &webhook.target)?;
        let rendered = self.render(&webhook, fields);
        inner.webhooks.insert(gid.clone(), webhook);
        Ok(rendered)
    }

    /// Keeps a webhook's delivery task, so that shutting down ends it.
    pub(crate) fn track(&self, task: tokio::task::JoinHandle<()>) {
        let mut inner = self.lock();
        inner.tasks.retain(|t| !t.is_finished());
        inner.tasks.push(task);
    }

    pub(crate) fn with_webhook<T>(
        &self,
        gid: &str,
        f: impl FnOnce(&mut Webhook) -> T,
    ) -> Option<T> {
        self.lock().webhooks.get_mut(gid).map(f)
    }

    pub(crate) fn get(&self, gid: &str, fields: &[String]) -> Result<Value, Failure> {
        let inner = self.lock();
        let webhook = inner
            .webhooks
            .get(gid)
            .ok_or_else(|| unknown_webhook(gid))?;
        Ok(self.render(webhook, fields))
    }

    pub(crate) fn update(
        &self,
        gid: &str,
        data: &Value,
        fields: &[String],
    ) -> Result<Value, Failure> {
        let filters = parse_filters(data.get("filters"))?;
        let mut inner = self.lock();
        let webhook = inner
            .webhooks
            .get_mut(gid)
            .ok_or_else(|| unknown_webhook(gid))?;
        if let Some(filters) = filters {
            let resource = self
                .resources
                .get(webhook.resource.as_str())
                .expect("webhooks are on seeded resources");
            rules::check_filters(resource, &filters)?;
            webhook.filters = filters;
        }
        Ok(self.render(webhook, fields))
    }

    pub(crate) fn delete(&self, gid: &str) -> Result<(), Failure> {
        let removed = self
            .lock()
            .webhooks
            .remove(gid)
            .ok_or_else(|| unknown_webhook(gid))?;
        removed.wake.notify_one();
        Ok(())
    }

    /// One page of webhooks in `workspace`, optionally on one resource.
    pub(crate) fn list(
        &self,
        workspace: &str,
        resource: Option<&str>,
        limit: Option<u32>,
        offset: Option<&str>,
        fields: &[String],
    ) -> Result<(Vec<Value>, Option<Value>, bool), Failure> {
        rules::check_list(&self.resources, workspace, limit)?;
        let start = match offset {
            Some(token) => offsets::decode(
                &self.offset_key,
                token,
                self.now(),
                self.settings.offset_ttl,
            )?,
            None => 0,
        };
        let inner = self.lock();
        let matching: Vec<&Webhook> = inner
            .webhooks
            .values()
            .filter(|w| resource.is_none_or(|r| w.resource == r))
            .collect();
        let end = limit.map_or(matching.len(), |l| (start + l as usize).min(matching.len()));
        let items = matching
            .get(start..end)
            .unwrap_or(&[])
            .iter()
            .map(|w| self.render(w, fields))
            .collect();
        // Only a limited listing is paged; the next page starts at `end`.
        let next = limit.filter(|_| end < matching.len()).map(|limit| {
            let token = offsets::encode(&self.offset_key, end, self.now());
            render::next_page(workspace, resource, limit, &token, fields)
        });
        Ok((items, next, limit.is_some()))
    }

    /// Queues `event` for every webhook whose resource is the event's
    /// resource or one of its ancestors and whose filters pass it (a
    /// fraction of them lost, with [`Settings::drop_fraction`]), and
    /// records it in the event streams of its resource and followable
    /// ancestors.
    pub(crate) fn emit(&self, event: EmittedEvent) -> Result<Vec<String>, String> {
        let now = self.now();
        let emission = Emission::new(&self.resources, &event, now)?;
        let fraction = self.settings.drop_fraction;
        let mut inner = self.lock();
        let Inner {
            webhooks, drops, ..
        } = &mut *inner;
        let mut queued = Vec::new();
        for webhook in webhooks.values_mut() {
            if emission.reaches(&webhook.resource, &webhook.filters) {
                webhook.pending.push(Queued {
                    event: emission.body.clone(),
                    lost: fraction > 0.0 && drops.f64() < fraction,
                });
                webhook.wake.notify_one();
                queued.push(webhook.gid.clone());
            }
        }
        // Recorded while the webhooks are still locked: a token handed
        // out after this emit returned is past this event.
        self.streams().record(
            emission.followers.iter().copied(),
            emission.named.clone(),
            now,
        );
        Ok(queued)
    }

    fn streams(&self) -> std::sync::MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `n` more events whose delivery was lost.
    pub(crate) fn count_dropped(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Events whose delivery was lost so far, per webhook.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// getEvents: the events on `resource` since `sync`, or a fresh token
    /// when there is none or it is not valid (any more).
    pub(crate) fn events(
        &self,
        resource: Option<&str>,
        sync: Option<&str>,
        fields: &[String],
    ) -> Result<EventsAnswer, Failure> {
        let gid = resource.ok_or_else(|| Failure::new(400, "resource: Missing input"))?;
        let followed = self
            .resources
            .get(gid)
            .ok_or_else(|| Failure::new(404, format!("resource: Unknown object: {gid}")))?;
        if !followed.followable() {
            return Err(Failure::new(
                400,
                format!(
                    "resource: Events can only be requested on a task, project or goal, not on a {}",
                    followed.resource_type
                ),
            ));
        }
        let now = self.now();
        let mut streams = self.streams();
        let page = sync
            .and_then(|token| stream::decode_sync(&self.offset_key, token, gid, now))
            .and_then(|position| streams.read(gid, position, now));
        Ok(match page {
            Some(page) => EventsAnswer::Page {
                events: page
                    .events
                    .iter()
                    .map(|event| stream::select(event, fields))
                    .collect(),
                sync: stream::encode_sync(&self.offset_key, gid, page.position, now),
                has_more: page.has_more,
            },
            None => EventsAnswer::Expired {
                sync: stream::encode_sync(&self.offset_key, gid, streams.head(), now),
            },
        })
    }
}

fn unknown_webhook(gid: &str) -> Failure {
    Failure::new(404, format!("webhook: Unknown object: {gid}"))
}
