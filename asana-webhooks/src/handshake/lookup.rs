//! Finding a webhook at Asana: by resource and target, or its creation
//! time on this machine's clock.

use chrono::{DateTime, Utc};

use crate::client::Client;
use crate::error::{self, Error};
use crate::operations::{MAX_PAGE_SIZE, Webhook};
use crate::types::WebhookOptField;

/// The webhooks of `resource` in `workspace` whose target is `target`.
pub(super) async fn list_for_target(
    client: &Client,
    workspace: &str,
    resource: &str,
    target: &str,
) -> Result<Vec<Webhook>, Error> {
    let all = client
        .get_webhooks(workspace)
        .resource(resource)
        .limit(MAX_PAGE_SIZE)
        .collect_all()
        .await?;
    Ok(all
        .into_iter()
        .filter(|w| w.target.as_deref() == Some(target))
        .collect())
}

/// When and where a webhook was created, as Asana says, with Asana's clock
/// set against this machine's.
pub(super) struct Creation {
    /// `created_at`, on Asana's clock.
    pub(super) created_at: DateTime<Utc>,
    /// Its target now.
    pub(super) target: String,
    /// Asana's clock minus this machine's, from the answer's `Date`; zero
    /// when the answer had none.
    pub(super) clock_offset: chrono::Duration,
    /// How wrong the offset may be: the `Date`'s one-second resolution
    /// plus half the time the answer took.
    pub(super) offset_uncertainty: chrono::Duration,
}

/// Reads a webhook's `created_at` and target. `None` when Asana's answer
/// lacks either.
pub(super) async fn creation(client: &Client, gid: &str) -> Result<Option<Creation>, Error> {
    let asked_at = Utc::now();
    let response = error::generated(
        client
            .generated()
            .get_webhook()
            .webhook_gid(gid)
            .opt_fields(vec![WebhookOptField::CreatedAt, WebhookOptField::Target])
            .send(),
    )
    .await?;
    let answered_at = Utc::now();
    // `created_at` is Asana's time and handshakes are recorded on ours: a
    // skewed local clock must not move the wrong handshake near it.
    let local = asked_at + (answered_at - asked_at) / 2;
    let clock_offset = response
        .headers()
        .get("date")
        .and_then(|d| d.to_str().ok())
        .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
        .map(|asana_now| asana_now.with_timezone(&Utc) - local)
        .unwrap_or_default();
    let offset_uncertainty = chrono::Duration::seconds(1) + (answered_at - asked_at) / 2;
    let Some(webhook) = response.into_inner().data else {
        return Ok(None);
    };
    Ok(match (webhook.created_at, webhook.target) {
        (Some(created_at), Some(target)) => Some(Creation {
            created_at,
            target,
            clock_offset,
            offset_uncertainty,
        }),
        _ => None,
    })
}
