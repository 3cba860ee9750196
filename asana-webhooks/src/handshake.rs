//! Creating a webhook through its handshake, with the secret stored safely.
//!
//! The create runs in a task of its own: when the caller stops waiting (a
//! timeout, or a dropped future) the request to Asana goes on, so that a
//! late 201 answer still confirms and stores the secret. When no answer
//! ever comes but a handshake was echoed, the webhook may exist at Asana;
//! the task then looks it up (with the workspace, see
//! [`CreateWithHandshake::workspace`]) and stores the one secret that can
//! be its, or deletes it. No live webhook is left whose secret was echoed
//! but not stored.
//!
//! When the process itself dies between the handshake and the 201, a
//! durable store still holds the echoed handshake, and the next
//! [`CreateWithHandshake::ensure`] stores its secret (see
//! [`crate::secrets`], "A process that dies between the handshake and the
//! 201").

use std::time::Duration;

use tokio::sync::oneshot;

use crate::client::Client;
use crate::error::{Error, HandshakeError};
use crate::hook_secret::HookSecret;
use crate::operations::{CreatedWebhook, Webhook};
use crate::secrets::{RECOVERY_MARGIN, RegistrationId, SecretStore, StoredSecret, TargetKey};
use crate::types::{WebhookFilter, WebhookOptField};

/// How long a create waits for Asana (and so for the handshake) by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a create whose caller stopped waiting goes on in the
/// background, by default, before it looks the webhook up instead.
pub const DEFAULT_SETTLE_TIME: Duration = Duration::from_secs(120);

/// Adds handshake-aware creation to [`Client`].
pub trait HandshakeExt {
    /// Creates a webhook on `resource` delivering to `target`, answering the
    /// handshake through a receiver that shares `store`.
    ///
    /// It opens a registration for the target (several may be in flight
    /// for one target), sends createWebhook, lets the receiver answer
    /// Asana's handshake while the request is in flight, and stores the
    /// secret only when it equals the one in the 201 answer: a handshake
    /// from anyone else never becomes a trusted secret. Should Asana's
    /// answer be late, see [`HandshakeError::Timeout`].
    fn create_webhook_with_handshake<'a, S: SecretStore>(
        &'a self,
        store: &'a S,
        resource: impl Into<String>,
        target: impl Into<String>,
    ) -> CreateWithHandshake<'a, S>;
}

impl HandshakeExt for Client {
    fn create_webhook_with_handshake<'a, S: SecretStore>(
        &'a self,
        store: &'a S,
        resource: impl Into<String>,
        target: impl Into<String>,
    ) -> CreateWithHandshake<'a, S> {
        CreateWithHandshake {
            client: self,
            store,
            resource: resource.into(),
            target: target.into(),
            workspace: None,
            filters: Vec::new(),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            settle: DEFAULT_SETTLE_TIME,
        }
    }
}

/// Builder for [`HandshakeExt::create_webhook_with_handshake`].
#[must_use = "nothing is sent until `send` or `ensure` is awaited"]
#[derive(Debug)]
pub struct CreateWithHandshake<'a, S> {
    client: &'a Client,
    store: &'a S,
    resource: String,
    target: String,
    workspace: Option<String>,
    filters: Vec<WebhookFilter>,
    timeout: Duration,
    settle: Duration,
}

/// The webhook [`CreateWithHandshake::ensure`] found or made.
#[derive(Debug, Clone, PartialEq)]
pub struct EnsuredWebhook {
    /// The webhook.
    pub webhook: Webhook,
    /// `true` when it was created now, `false` when it existed already with
    /// its secret in the store.
    pub created: bool,
}

impl<'a, S: SecretStore> CreateWithHandshake<'a, S> {
    /// Adds a filter (see [`crate::CreateWebhook::filter`]).
    pub fn filter(mut self, filter: WebhookFilter) -> Self {
        self.filters.push(filter);
        self
    }

    /// Adds several filters.
    pub fn filters(mut self, filters: impl IntoIterator<Item = WebhookFilter>) -> Self {
        self.filters.extend(filters);
        self
    }

    /// The workspace of the resource. With it, a create whose answer never
    /// came can look its webhook up (getWebhooks needs the workspace), and
    /// [`ensure`](Self::ensure) can find an existing webhook that this store
    /// does not know. Strongly recommended.
    pub fn workspace(mut self, workspace: impl Into<String>) -> Self {
        self.workspace = Some(workspace.into());
        self
    }

    /// How long to wait for Asana's answer; default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long the create goes on in the background after the caller
    /// stopped waiting; default 120 s.
    pub fn settle_time(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Creates the webhook; see [`HandshakeExt::create_webhook_with_handshake`].
    pub async fn send(self) -> Result<CreatedWebhook, Error> {
        let key = TargetKey::from_url(&self.target)?;
        // The registration outlives the background work by a margin, so a
        // handshake that races the end is recorded rather than refused.
        let ttl = self.timeout + self.settle + Duration::from_secs(5);
        let registration = self.store.open_registration(&key, ttl).await?;
        let job = Registration {
            client: self.client.clone(),
            store: self.store.clone(),
            id: registration,
            key,
            resource: self.resource,
            target: self.target,
            workspace: self.workspace,
            filters: self.filters,
            deadline: self.timeout + self.settle,
        };
        let (tx, rx) = oneshot::channel();
        // A task of its own, so that neither a timeout nor a dropped caller
        // abandons a request that Asana may still answer.
        tokio::spawn(async move {
            let _ = tx.send(job.run().await);
        });
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Decode {
                message: "the create task ended without an answer".into(),
            }),
            Err(_) => Err(HandshakeError::Timeout(self.timeout).into()),
        }
    }

    /// Like [`CreateWithHandshake::send`], but when Asana answers 403
    /// "Duplicated webhook", finds the existing webhook of this resource and
    /// target (listing the resource's webhooks when the workspace is set)
    /// and returns it when its secret is stored; otherwise fails with
    /// [`HandshakeError::SecretNotStored`] saying what to do.
    ///
    /// A webhook whose secret is not stored because the process that
    /// created it died between the handshake and Asana's answer gets its
    /// secret from the store's unconfirmed handshakes, when exactly one of
    /// them arrived within [`RECOVERY_MARGIN`] of the webhook's creation.
    pub async fn ensure(self) -> Result<EnsuredWebhook, Error> {
        let (client, store) = (self.client, self.store);
        let (resource, target, workspace) = (
            self.resource.clone(),
            self.target.clone(),
            self.workspace.clone(),
        );
        match self.send().await {
            Ok(created) => Ok(EnsuredWebhook {
                webhook: created.webhook,
                created: true,
            }),
            Err(Error::Api(api)) if api.is_duplicate_webhook() => {
                let webhook = find_existing(client, store, &resource, &target, workspace).await?;
                let gid = webhook.gid.clone().unwrap_or_default();
                if store.by_gid(&gid).await?.is_none()
                    && !recover_after_restart(client, store, &resource, &target, &gid).await?
                {
                    return Err(HandshakeError::SecretNotStored {
                        webhook_gid: gid,
                        resource,
                    }
                    .into());
                }
                Ok(EnsuredWebhook {
                    webhook,
                    created: false,
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// The webhook of `resource` delivering to `target`: listed at Asana when
/// the workspace is known, else taken from the store's records.
async fn find_existing<S: SecretStore>(
    client: &Client,
    store: &S,
    resource: &str,
    target: &str,
    workspace: Option<String>,
) -> Result<Webhook, Error> {
    let not_found = || HandshakeError::DuplicateNotFound {
        resource: resource.to_string(),
    };
    if let Some(workspace) = workspace {
        return list_for_target(client, &workspace, resource, target)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| not_found().into());
    }
    let key = TargetKey::from_url(target)?;
    let known = store
        .secrets_for(&key)
        .await?
        .into_iter()
        .find(|r| r.resource.as_deref() == Some(resource))
        .and_then(|r| r.webhook_gid)
        .ok_or_else(not_found)?;
    let webhook = client.get_webhook(known).send().await?;
    if webhook.target.as_deref() != Some(target) {
        return Err(not_found().into());
    }
    Ok(webhook)
}

/// Stores the secret of webhook `gid`, which exists at Asana without a
/// stored secret, when the store kept exactly one unconfirmed handshake for
/// its target from within [`RECOVERY_MARGIN`] of its creation: the one
/// Asana sent for it (a process died before the 201). Returns whether it
/// did.
async fn recover_after_restart<S: SecretStore>(
    client: &Client,
    store: &S,
    resource: &str,
    target: &str,
    gid: &str,
) -> Result<bool, Error> {
    let key = TargetKey::from_url(target)?;
    let unconfirmed = store.unconfirmed_handshakes(&key).await?;
    if unconfirmed.is_empty() {
        return Ok(false);
    }
    let asked_at = chrono::Utc::now();
    let response = crate::error::generated(
        client
            .generated()
            .get_webhook()
            .webhook_gid(gid)
            .opt_fields(vec![WebhookOptField::CreatedAt, WebhookOptField::Target])
            .send(),
    )
    .await?;
    // Asana's clock against this machine's, from the answer's `Date`
    // (second resolution): `created_at` is Asana's time, `received_at`
    // ours, and a skewed local clock must not move the wrong handshake
    // into the margin.
    let skew = response
        .headers()
        .get("date")
        .and_then(|d| d.to_str().ok())
        .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        .map(|asana_now| {
            let local = asked_at + (chrono::Utc::now() - asked_at) / 2;
            asana_now.with_timezone(&chrono::Utc) - local
        })
        .unwrap_or_default();
    let Some(webhook) = response.into_inner().data else {
        return Ok(false);
    };
    let (Some(created_at), Some(target_now)) = (webhook.created_at, webhook.target.as_deref())
    else {
        return Ok(false);
    };
    if target_now != target {
        return Ok(false);
    }
    // On this machine's clock.
    let created_here = created_at - skew;
    let margin = chrono::Duration::from_std(RECOVERY_MARGIN).expect("fits");
    // A second more for the `Date` resolution: distrust errs wide.
    let wide = margin + chrono::Duration::seconds(1);
    if let Some(span) = store.unrecorded_handshakes(&key).await?
        && span.first - wide <= created_here
        && created_here <= span.last + wide
    {
        tracing::warn!(%gid, %key, "handshakes beyond the store's limit went unrecorded when this webhook was created (a flood?); none can be trusted as its secret");
        return Ok(false);
    }
    let near: Vec<_> = unconfirmed
        .iter()
        .filter(|u| (u.received_at - created_here).abs() <= margin)
        .collect();
    let [only] = near.as_slice() else {
        if near.len() > 1 {
            tracing::warn!(%gid, %key, handshakes = near.len(), "several unconfirmed handshakes arrived when this webhook was created; none can be trusted as its secret");
        }
        return Ok(false);
    };
    let record = StoredSecret::new(key, gid, only.secret.clone()).with_resource(resource);
    store.save(record).await?;
    tracing::warn!(%gid, "stored the secret of a webhook whose create died before Asana's answer (the one handshake echoed when it was created)");
    Ok(true)
}

/// The webhooks of `resource` in `workspace` whose target is `target`.
async fn list_for_target(
    client: &Client,
    workspace: &str,
    resource: &str,
    target: &str,
) -> Result<Vec<Webhook>, Error> {
    let all = client
        .get_webhooks(workspace)
        .resource(resource)
        .limit(crate::operations::MAX_PAGE_SIZE)
        .collect_all()
        .await?;
    Ok(all
        .into_iter()
        .filter(|w| w.target.as_deref() == Some(target))
        .collect())
}

/// One registration in flight, owned by its background task.
struct Registration<S> {
    client: Client,
    store: S,
    id: RegistrationId,
    key: TargetKey,
    resource: String,
    target: String,
    workspace: Option<String>,
    filters: Vec<WebhookFilter>,
    deadline: Duration,
}

impl<S: SecretStore> Registration<S> {
    async fn run(self) -> Result<CreatedWebhook, Error> {
        let create = self
            .client
            .create_webhook(&self.resource, &self.target)
            .filters(self.filters.clone())
            .send();
        let result = match tokio::time::timeout(self.deadline, create).await {
            Ok(Ok(created)) => self.confirm(created).await,
            Ok(Err(e)) if e.as_api().is_some_and(|a| a.status().is_client_error()) => Err(e),
            // No answer (or none that says what happened): the webhook may
            // exist with a secret that was echoed.
            Ok(Err(e)) => {
                self.recover().await;
                Err(e)
            }
            Err(_) => {
                self.recover().await;
                Err(HandshakeError::Timeout(self.deadline).into())
            }
        };
        if let Err(e) = self.store.close_registration(&self.id).await {
            // The registration still expires with its TTL.
            tracing::warn!(target = %self.key, error = %e, "could not close a registration");
        }
        result
    }

    /// Stores the 201's secret when a handshake brought it; deletes the
    /// webhook otherwise, since its deliveries could not be verified.
    async fn confirm(&self, created: CreatedWebhook) -> Result<CreatedWebhook, Error> {
        let gid = created.webhook.gid.clone().ok_or_else(|| Error::Decode {
            message: "the createWebhook answer has no gid".into(),
        })?;
        let Some(secret) = created.secret.clone() else {
            return Err(self
                .delete_because(gid, "the 201 answer carries no X-Hook-Secret")
                .await);
        };
        let record = StoredSecret::new(self.key.clone(), gid.clone(), secret)
            .with_resource(self.resource.clone());
        match self.store.confirm(&self.id, record).await {
            Ok(true) => Ok(created),
            Ok(false) => Err(self
                .delete_because(gid, "no handshake with that secret reached this receiver")
                .await),
            Err(e) => {
                // A webhook whose secret is lost cannot be verified: remove it.
                let _ = self.client.delete_webhook(&gid).send().await;
                Err(e.into())
            }
        }
    }

    async fn delete_because(&self, gid: String, reason: &'static str) -> Error {
        let deleted = self.client.delete_webhook(&gid).send().await.is_ok();
        HandshakeError::SecretMismatch {
            webhook_gid: gid,
            reason,
            deleted,
        }
        .into()
    }

    /// After a create that got no answer: if a handshake was echoed, find
    /// the webhook and store the one secret that can be its, or delete it.
    async fn recover(&self) {
        let candidates = match self.store.close_registration(&self.id).await {
            Ok(candidates) => candidates,
            Err(e) => {
                tracing::error!(target = %self.key, error = %e, "could not read the handshakes of a create that got no answer");
                return;
            }
        };
        if candidates.is_empty() {
            // Asana creates nothing without an echoed handshake.
            return;
        }
        let Some(workspace) = &self.workspace else {
            tracing::error!(
                resource = %self.resource, target = %self.target,
                "createWebhook got no answer after a handshake was echoed, and without the workspace the webhook cannot be looked up; list the resource's webhooks and delete the one for this target"
            );
            return;
        };
        let found = match list_for_target(&self.client, workspace, &self.resource, &self.target)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(resource = %self.resource, target = %self.target, error = %e, "could not look up a webhook whose create got no answer; check and delete it by hand");
                return;
            }
        };
        for webhook in found {
            let Some(gid) = webhook.gid else { continue };
            if self.store.by_gid(&gid).await.ok().flatten().is_some() {
                continue;
            }
            if let [secret] = candidates.as_slice()
                && self.save_recovered(&gid, secret).await
            {
                continue;
            }
            let deleted = self.client.delete_webhook(&gid).send().await.is_ok();
            tracing::warn!(%gid, deleted, candidates = candidates.len(), "deleted a webhook whose secret could not be told apart");
        }
    }

    async fn save_recovered(&self, gid: &str, secret: &HookSecret) -> bool {
        let record = StoredSecret::new(self.key.clone(), gid, secret.clone())
            .with_resource(self.resource.clone());
        match self.store.save(record).await {
            Ok(()) => {
                tracing::warn!(%gid, "createWebhook got no answer; stored the one secret echoed for its target");
                true
            }
            Err(e) => {
                tracing::error!(%gid, error = %e, "could not store a recovered secret");
                false
            }
        }
    }
}
