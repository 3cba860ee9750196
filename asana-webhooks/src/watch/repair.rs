//! Self-healing: a webhook Asana deleted is created again through the
//! handshake, as it was created (resource, target URL, filters, all stored
//! with its secret), and the interval in which it delivered nothing is
//! recorded as a [`Gap`].
//!
//! Each repair runs under a lease of the store
//! ([`RecoveryStore::try_lease`]), and re-reads the store once it holds
//! it: of several instances sharing a store, one re-creates and the others
//! find the work done. Every step is safe to repeat after a crash:
//!
//! 1. the create goes through [`CreateWithHandshake::ensure`], which finds
//!    a webhook that an earlier, interrupted attempt created;
//! 2. the gap is recorded under an id made from the old webhook's gid, so
//!    recording it again keeps the first;
//! 3. only then is the old webhook's secret forgotten, which is what marks
//!    the repair done.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::client::Client;
use crate::error::Error;
use crate::handshake::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_SETTLE_TIME, HandshakeExt};
use crate::secrets::{Gap, GapCause, RecoveryStore, SecretStore};
use crate::types::WebhookFilter;

use super::report::WebhookHealth;

/// How long one instance holds a repair before another may take it over:
/// longer than a create through the handshake can take, so that two
/// instances never create at once, yet short enough that a repair whose
/// instance died is taken up again within minutes.
pub const REPAIR_LEASE: Duration =
    Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT.as_secs() + DEFAULT_SETTLE_TIME.as_secs() + 30);

/// What one repair did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RepairOutcome {
    /// The webhook was created again; the gap says what it missed.
    Recreated {
        /// The webhook that Asana had deleted (or that was replaced).
        old_gid: String,
        /// The webhook in its place.
        new_gid: String,
        /// The interval in which nothing was delivered.
        gap: Gap,
    },
    /// Another instance holds the repair, or finished it already.
    NotHere,
    /// It cannot be created again as it was; the reason says why.
    Impossible {
        /// The webhook.
        gid: String,
        /// Why.
        reason: String,
    },
}

/// Creates a webhook that Asana deleted again, and records the gap.
pub(crate) async fn recreate<S: SecretStore + RecoveryStore>(
    client: &Client,
    workspace: &str,
    store: &S,
    holder: &str,
    health: &WebhookHealth,
) -> Result<RepairOutcome, Error> {
    let old_gid = health.gid.clone();
    let lease = format!("recreate:{old_gid}");
    under_lease(store, &lease, holder, async {
        // Read again under the lease: an instance that finished the repair
        // forgot the old secret.
        let Some(record) = store.by_gid(&old_gid).await? else {
            return Ok(RepairOutcome::NotHere);
        };
        let (Some(resource), Some(target_url)) = (record.resource.clone(), record.target_url.clone())
        else {
            return Ok(RepairOutcome::Impossible {
                gid: old_gid.clone(),
                reason: "its secret was stored without the resource and target URL it was created with (stored by an older version, or by hand): create it again yourself".into(),
            });
        };
        let (new_gid, created_at) =
            create(client, workspace, store, &resource, &target_url, record.filters).await?;
        let cause = GapCause::WebhookGone {
            old_gid: old_gid.clone(),
            new_gid: new_gid.clone(),
        };
        let gap = Gap::open(
            format!("webhook-gone:{old_gid}"),
            resource,
            cause,
            health.last_heartbeat_seen,
            created_at,
        );
        store.record_gap(gap.clone()).await?;
        store.remove_gid(&old_gid).await?;
        Ok(RepairOutcome::Recreated {
            old_gid: old_gid.clone(),
            new_gid,
            gap,
        })
    })
    .await
}

/// Deletes a webhook on one of our targets whose secret is not stored (its
/// deliveries can never verify) and creates it again through the
/// handshake. Only when the user opted in.
pub(crate) async fn replace<S: SecretStore + RecoveryStore>(
    client: &Client,
    workspace: &str,
    store: &S,
    holder: &str,
    health: &WebhookHealth,
) -> Result<RepairOutcome, Error> {
    let old_gid = health.gid.clone();
    let (Some(resource), Some(target_url)) = (health.resource.clone(), health.target.clone())
    else {
        return Ok(RepairOutcome::Impossible {
            gid: old_gid,
            reason: "Asana's listing gave no resource or target for it".into(),
        });
    };
    let lease = format!("replace:{old_gid}");
    under_lease(store, &lease, holder, async {
        // Asana refuses a second webhook on one resource and target, so
        // the old one goes first. A process that dies between the delete
        // and the create leaves no webhook and no record: the webhook was
        // useless already (nothing it sent could be verified), and the
        // app's own create at its next start makes it again.
        match client.delete_webhook(&old_gid).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_api()
                    .is_some_and(|a| a.status() == reqwest::StatusCode::NOT_FOUND) => {}
            Err(e) => return Err(e),
        }
        let (new_gid, created_at) = create(
            client,
            workspace,
            store,
            &resource,
            &target_url,
            health.filters.clone(),
        )
        .await?;
        let gap = Gap::open(
            format!("unknown-secret:{old_gid}"),
            resource,
            GapCause::UnknownSecretReplaced {
                old_gid: old_gid.clone(),
                new_gid: new_gid.clone(),
            },
            None,
            created_at,
        );
        store.record_gap(gap.clone()).await?;
        Ok(RepairOutcome::Recreated {
            old_gid: old_gid.clone(),
            new_gid,
            gap,
        })
    })
    .await
}

/// Runs `repair` under the lease `name`, or answers `NotHere` when
/// another instance holds it. The lease is given up afterwards: a failed
/// repair is tried again by the next check of any instance, a finished
/// one leaves nothing to guard.
async fn under_lease<S: RecoveryStore>(
    store: &S,
    name: &str,
    holder: &str,
    repair: impl std::future::Future<Output = Result<RepairOutcome, Error>>,
) -> Result<RepairOutcome, Error> {
    if !store.try_lease(name, holder, REPAIR_LEASE).await? {
        return Ok(RepairOutcome::NotHere);
    }
    let outcome = repair.await;
    let _ = store.release_lease(name, holder).await;
    outcome
}

/// Creates (or finds, after an interrupted attempt) the webhook; returns
/// its gid and the time from which it surely delivers: when the create
/// returned, on this machine's clock like the gap's start (events between
/// Asana's creation and then fall inside the gap, which errs on the side
/// of catching up a little more).
async fn create<S: SecretStore>(
    client: &Client,
    workspace: &str,
    store: &S,
    resource: &str,
    target_url: &str,
    filters: Vec<WebhookFilter>,
) -> Result<(String, DateTime<Utc>), Error> {
    let ensured = client
        .create_webhook_with_handshake(store, resource, target_url)
        .filters(filters)
        .workspace(workspace)
        .ensure()
        .await?;
    let gid = ensured.webhook.gid.clone().ok_or_else(|| Error::Decode {
        message: "the created webhook has no gid".into(),
    })?;
    Ok((gid, Utc::now()))
}
