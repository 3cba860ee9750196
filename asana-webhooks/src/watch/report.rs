//! One health check: Asana's bookkeeping for every webhook of a workspace,
//! set beside the receiver's own records.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use super::health::{Clocks, HealthPolicy, HealthState, SeenHere, classify};
use crate::client::Client;
use crate::error::{self, Error};
use crate::inbox::Inbox;
use crate::operations::{MAX_PAGE_SIZE, Webhook};
use crate::secrets::{SecretStore, StoredSecret, TargetKey};
use crate::types::{WebhookFilter, WebhookListOptField};

/// The listing fields a check asks for: everything Asana keeps about a
/// webhook's deliveries.
pub(crate) const HEALTH_FIELDS: [WebhookListOptField; 11] = [
    WebhookListOptField::Active,
    WebhookListOptField::CreatedAt,
    WebhookListOptField::DeliveryRetryCount,
    WebhookListOptField::FailureDeletionTimestamp,
    WebhookListOptField::LastFailureAt,
    WebhookListOptField::LastFailureContent,
    WebhookListOptField::LastSuccessAt,
    WebhookListOptField::NextAttemptAfter,
    WebhookListOptField::Resource,
    WebhookListOptField::Target,
    WebhookListOptField::Filters,
];

/// One webhook's health, with the facts behind it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WebhookHealth {
    /// The webhook's gid.
    pub gid: String,
    /// The resource it watches, when known.
    pub resource: Option<String>,
    /// Where it delivers (Asana's full URL, or the stored path when Asana
    /// no longer has it).
    pub target: Option<String>,
    /// Where it stands.
    pub state: HealthState,
    /// The facts that led to the state, in one sentence.
    pub why: String,
    /// What to do about it.
    pub advice: &'static str,
    /// Asana's `active`.
    pub active: Option<bool>,
    /// Asana's `last_success_at`.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Asana's `last_failure_at`.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Asana's `last_failure_content`.
    pub last_failure_content: Option<String>,
    /// Asana's `delivery_retry_count`.
    pub delivery_retry_count: Option<i64>,
    /// Asana's `next_attempt_after`.
    pub next_attempt_after: Option<DateTime<Utc>>,
    /// Asana's `failure_deletion_timestamp`.
    pub failure_deletion_timestamp: Option<DateTime<Utc>>,
    /// When this receiver last saw a verified heartbeat of it.
    pub last_heartbeat_seen: Option<DateTime<Utc>>,
    /// Its filters (Asana's, or those it was created with when Asana no
    /// longer has it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<WebhookFilter>,
}

/// Every webhook a check looked at.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HealthReport {
    /// When the check ran.
    pub checked_at: DateTime<Utc>,
    /// The webhooks, by gid.
    pub webhooks: Vec<WebhookHealth>,
    /// Listing pages the check read: its requests to Asana, not counting
    /// those the client repeated (after a 429, or after a 401 that
    /// refreshed an OAuth token).
    pub requests: u32,
}

impl HealthReport {
    /// How many webhooks are in each state.
    pub fn counts(&self) -> BTreeMap<HealthState, usize> {
        let mut counts = BTreeMap::new();
        for webhook in &self.webhooks {
            *counts.entry(webhook.state).or_insert(0) += 1;
        }
        counts
    }
}

/// What a listing found, with Asana's clock at the time.
struct Listing {
    webhooks: Vec<Webhook>,
    requests: u32,
    /// Asana's `Date` on the first page; the health fields are Asana's
    /// times and are compared with Asana's clock, not this machine's.
    asana_now: Option<DateTime<Utc>>,
}

/// Lists the workspace's webhooks with their health fields, page by page
/// (one request per 100 webhooks, whatever their number of resources).
async fn list(client: &Client, workspace: &str) -> Result<Listing, Error> {
    let mut listing = Listing {
        webhooks: Vec::new(),
        requests: 0,
        asana_now: None,
    };
    let mut offset: Option<String> = None;
    loop {
        let mut request = client
            .generated()
            .get_webhooks()
            .workspace(workspace)
            .limit(u64::from(MAX_PAGE_SIZE))
            .opt_fields(HEALTH_FIELDS.to_vec());
        if let Some(offset) = offset.take() {
            request = request.offset(offset);
        }
        let response = error::generated(request.send()).await?;
        listing.requests += 1;
        if listing.asana_now.is_none() {
            listing.asana_now = response
                .headers()
                .get("date")
                .and_then(|d| d.to_str().ok())
                .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
                .map(|d| d.with_timezone(&Utc));
        }
        let body = response.into_inner();
        offset = body.next_page.and_then(|p| p.0).and_then(|p| p.offset);
        listing.webhooks.extend(body.data);
        if offset.is_none() {
            return Ok(listing);
        }
    }
}

/// Checks every webhook this receiver manages in `workspace`: those whose
/// secret `store` holds for `targets`, and any webhook at Asana delivering
/// to one of `targets`.
pub async fn check<S: SecretStore, I: Inbox>(
    client: &Client,
    workspace: &str,
    store: &S,
    targets: &[TargetKey],
    inbox: Option<&I>,
    policy: &HealthPolicy,
) -> Result<HealthReport, Error> {
    let Listing {
        webhooks: at_asana,
        requests,
        asana_now,
    } = list(client, workspace).await?;
    let mut stored: Vec<StoredSecret> = Vec::new();
    for target in targets {
        stored.extend(store.secrets_for(target).await?);
    }
    let heartbeats = match inbox {
        Some(inbox) => inbox
            .stats()
            .await
            .map(|s| s.last_heartbeats)
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let local_now = Utc::now();
    let now = Clocks {
        asana: asana_now.unwrap_or(local_now),
        local: local_now,
    };
    let ours: HashSet<&TargetKey> = targets.iter().collect();
    let mut webhooks = Vec::new();
    let mut listed = HashSet::new();
    for webhook in &at_asana {
        let Some(gid) = webhook.gid.clone() else {
            continue;
        };
        let on_our_target = webhook
            .target
            .as_deref()
            .and_then(|t| TargetKey::from_url(t).ok())
            .is_some_and(|key| ours.contains(&key));
        let secret_stored = stored
            .iter()
            .any(|s| s.webhook_gid.as_deref() == Some(&gid));
        if !(on_our_target || secret_stored) {
            continue;
        }
        listed.insert(gid.clone());
        let here = SeenHere {
            secret_stored,
            last_seen: heartbeats.get(&gid).copied(),
            tracks_heartbeats: inbox.is_some(),
        };
        let (state, why) = classify(Some(webhook), here, now, policy);
        webhooks.push(WebhookHealth {
            resource: webhook.resource.as_ref().and_then(|r| r.gid.clone()),
            target: webhook.target.clone(),
            state,
            why,
            advice: state.advice(),
            active: webhook.active,
            last_success_at: webhook.last_success_at,
            last_failure_at: webhook.last_failure_at,
            last_failure_content: webhook.last_failure_content.clone(),
            delivery_retry_count: webhook.delivery_retry_count,
            next_attempt_after: webhook.next_attempt_after,
            failure_deletion_timestamp: webhook.failure_deletion_timestamp,
            last_heartbeat_seen: here.last_seen,
            filters: webhook.filters.clone(),
            gid,
        });
    }
    // Stored secrets whose webhook Asana no longer lists: gone.
    for record in &stored {
        let Some(gid) = record.webhook_gid.clone() else {
            continue;
        };
        if listed.contains(&gid) {
            continue;
        }
        let here = SeenHere {
            secret_stored: true,
            last_seen: heartbeats.get(&gid).copied(),
            tracks_heartbeats: inbox.is_some(),
        };
        let (state, why) = classify(None, here, now, policy);
        webhooks.push(WebhookHealth {
            resource: record.resource.clone(),
            target: Some(
                record
                    .target_url
                    .clone()
                    .unwrap_or_else(|| record.target.to_string()),
            ),
            state,
            why,
            advice: state.advice(),
            active: None,
            last_success_at: None,
            last_failure_at: None,
            last_failure_content: None,
            delivery_retry_count: None,
            next_attempt_after: None,
            failure_deletion_timestamp: None,
            last_heartbeat_seen: here.last_seen,
            filters: record.filters.clone(),
            gid,
        });
    }
    webhooks.sort_by(|a, b| a.gid.cmp(&b.gid));
    Ok(HealthReport {
        checked_at: local_now,
        webhooks,
        requests,
    })
}
