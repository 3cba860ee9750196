//! The create through the handshake: the builder, and the task that owns
//! one registration until Asana answered or the webhook was looked up.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::lookup::{self, Creation};
use super::recovery::{self, Recovery, RecoveryFacts, Refusal, SeenHandshake};
use super::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_SETTLE_TIME};
use crate::client::Client;
use crate::error::{Error, HandshakeError};
use crate::hook_secret::HookSecret;
use crate::operations::{CreateRequest, CreateWebhook, CreatedWebhook, Webhook};
use crate::secrets::{RegistrationId, SecretStore, StoredSecret, TargetKey};
use crate::types::{WebhookFilter, WebhookOptField};

/// Builder for [`HandshakeExt::create_webhook_with_handshake`]: every
/// setting of [`CreateWebhook`] (filters, `opt_fields`, `opt_pretty`), and
/// what the handshake needs besides.
///
/// [`HandshakeExt::create_webhook_with_handshake`]: super::HandshakeExt::create_webhook_with_handshake
#[must_use = "nothing is sent until `send` or `ensure` is awaited"]
#[derive(Debug)]
pub struct CreateWithHandshake<'a, S> {
    client: &'a Client,
    create: CreateRequest,
    store: &'a S,
    workspace: Option<String>,
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
    pub(super) fn new(create: CreateWebhook<'a>, store: &'a S) -> Self {
        let (client, create) = create.detach();
        Self {
            client,
            create,
            store,
            workspace: None,
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            settle: DEFAULT_SETTLE_TIME,
        }
    }

    /// Changes the createWebhook request with one of its own setters.
    fn map_create(mut self, change: impl FnOnce(CreateWebhook<'a>) -> CreateWebhook<'a>) -> Self {
        let (_, create) = change(self.create.attach(self.client)).detach();
        self.create = create;
        self
    }

    /// Adds a filter (see [`CreateWebhook::filter`]).
    pub fn filter(self, filter: WebhookFilter) -> Self {
        self.map_create(|c| c.filter(filter))
    }

    /// Adds several filters.
    pub fn filters(self, filters: impl IntoIterator<Item = WebhookFilter>) -> Self {
        self.map_create(|c| c.filters(filters))
    }

    /// Properties of the created webhook to include in the answer beyond
    /// the compact default (see [`CreateWebhook::opt_fields`]).
    pub fn opt_fields(self, fields: impl IntoIterator<Item = WebhookOptField>) -> Self {
        self.map_create(|c| c.opt_fields(fields))
    }

    /// Asks Asana to indent its JSON (debugging only).
    pub fn opt_pretty(self, pretty: bool) -> Self {
        self.map_create(|c| c.opt_pretty(pretty))
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

    /// Creates the webhook; see
    /// [`HandshakeExt::create_webhook_with_handshake`](super::HandshakeExt::create_webhook_with_handshake).
    pub async fn send(self) -> Result<CreatedWebhook, Error> {
        let key = TargetKey::from_url(self.create.target())?;
        // The registration outlives the background work by a margin, so a
        // handshake that races the end is recorded rather than refused.
        let ttl = self.timeout + self.settle + Duration::from_secs(5);
        let opened_at = Utc::now();
        let registration = self.store.open_registration(&key, ttl).await?;
        let job = Registration {
            client: self.client.clone(),
            store: self.store.clone(),
            id: registration,
            key,
            create: self.create,
            workspace: self.workspace,
            deadline: self.timeout + self.settle,
            opened_at,
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
    /// them arrived within [`RECOVERY_MARGIN`](crate::secrets::RECOVERY_MARGIN)
    /// of the webhook's creation.
    pub async fn ensure(self) -> Result<EnsuredWebhook, Error> {
        let (client, store, workspace) = (self.client, self.store, self.workspace.clone());
        let resource = self.create.resource().to_string();
        let target = self.create.target().to_string();
        let filters = self.create.filters().to_vec();
        match self.send().await {
            Ok(created) => Ok(EnsuredWebhook {
                webhook: created.webhook,
                created: true,
            }),
            Err(Error::Api(api)) if api.is_duplicate_webhook() => {
                let webhook = find_existing(client, store, &resource, &target, workspace).await?;
                let gid = webhook.gid.clone().unwrap_or_default();
                if store.by_gid(&gid).await?.is_none()
                    && !recover_after_restart(client, store, &resource, &target, filters, &gid)
                        .await?
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
        return lookup::list_for_target(client, &workspace, resource, target)
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

/// The facts the recovery decision needs about webhook creation `created`
/// and the `handshakes` echoed for its target.
async fn facts<S: SecretStore>(
    store: &S,
    key: &TargetKey,
    created: Creation,
    handshakes: Vec<SeenHandshake>,
) -> Result<RecoveryFacts, Error> {
    let unrecorded = store
        .unrecorded_handshakes(key)
        .await?
        .map(|span| (span.first, span.last));
    Ok(RecoveryFacts {
        created_at: created.created_at,
        clock_offset: created.clock_offset,
        offset_uncertainty: created.offset_uncertainty,
        handshakes,
        unrecorded,
        now: Utc::now(),
    })
}

/// Stores the secret of webhook `gid`, which exists at Asana without a
/// stored secret, when the recovery decision finds it among the store's
/// unconfirmed handshakes (a process died before the 201). Returns
/// whether it did.
async fn recover_after_restart<S: SecretStore>(
    client: &Client,
    store: &S,
    resource: &str,
    target: &str,
    filters: Vec<WebhookFilter>,
    gid: &str,
) -> Result<bool, Error> {
    let key = TargetKey::from_url(target)?;
    let unconfirmed = store.unconfirmed_handshakes(&key).await?;
    if unconfirmed.is_empty() {
        return Ok(false);
    }
    let Some(created) = lookup::creation(client, gid).await? else {
        return Ok(false);
    };
    if created.target != target {
        return Ok(false);
    }
    let seen = unconfirmed
        .into_iter()
        .map(|u| SeenHandshake::at(u.secret, u.received_at))
        .collect();
    match recovery::decide(&facts(store, &key, created, seen).await?) {
        Recovery::Store(secret) => {
            let record = StoredSecret::new(key, gid, secret)
                .with_resource(resource)
                .with_creation(target, filters);
            store.save(record).await?;
            tracing::warn!(%gid, "stored the secret of a webhook whose create died before Asana's answer (the one handshake echoed when it was created)");
            Ok(true)
        }
        Recovery::Refuse(why) => {
            tracing::warn!(%gid, %key, why = %why.describe(), "the secret of this webhook cannot be recovered");
            Ok(false)
        }
    }
}

/// One registration in flight, owned by its background task.
struct Registration<S> {
    client: Client,
    store: S,
    id: RegistrationId,
    key: TargetKey,
    create: CreateRequest,
    workspace: Option<String>,
    deadline: Duration,
    /// When the registration opened (this machine's clock): every
    /// handshake it collected arrived after this.
    opened_at: DateTime<Utc>,
}

impl<S: SecretStore> Registration<S> {
    async fn run(self) -> Result<CreatedWebhook, Error> {
        let create = self.create.clone().attach(&self.client).send();
        let result = match tokio::time::timeout(self.deadline, create).await {
            Ok(Ok(created)) => {
                let confirmed = self.confirm(created).await;
                // Confirmed, or no webhook left alive with that secret:
                // either way Asana answered and nothing is in doubt.
                if matches!(&confirmed, Ok(_) | Err(Error::Handshake(_))) {
                    self.release().await;
                }
                confirmed
            }
            Ok(Err(e)) if e.as_api().is_some_and(|a| a.status().is_client_error()) => {
                // Asana refused the create: no webhook was made.
                self.release().await;
                Err(e)
            }
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

    /// Tells the store that this registration ended with Asana's answer, so
    /// that the handshakes only it could have received are forgotten.
    async fn release(&self) {
        if let Err(e) = self.store.release_handshakes(&self.id).await {
            // They expire with their retention all the same.
            tracing::warn!(target = %self.key, error = %e, "could not forget the handshakes of a finished registration");
        }
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
            .with_resource(self.create.resource())
            .with_creation(self.create.target(), self.create.filters().to_vec());
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
    /// the webhook created while this registration was open and store the
    /// one secret that the recovery decision finds for it, or delete it.
    /// A webhook of the same resource and target created at another time
    /// is not this create's: it is left alone and reported.
    async fn recover(&self) {
        let (resource, target) = (self.create.resource(), self.create.target());
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
        let closed_at = Utc::now();
        let Some(workspace) = &self.workspace else {
            tracing::error!(
                %resource, %target,
                "createWebhook got no answer after a handshake was echoed, and without the workspace the webhook cannot be looked up; list the resource's webhooks and delete the one for this target"
            );
            return;
        };
        let found = match lookup::list_for_target(&self.client, workspace, resource, target).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(%resource, %target, error = %e, "could not look up a webhook whose create got no answer; check and delete it by hand");
                return;
            }
        };
        // Each candidate arrived while the registration was open.
        let seen: Vec<SeenHandshake> = candidates
            .iter()
            .map(|secret| SeenHandshake {
                secret: secret.clone(),
                earliest: self.opened_at,
                latest: closed_at,
            })
            .collect();
        for webhook in found {
            let Some(gid) = webhook.gid else { continue };
            if self.store.by_gid(&gid).await.ok().flatten().is_some() {
                continue;
            }
            match self.decide_for(&gid, seen.clone()).await {
                Ok(Recovery::Store(secret)) if self.save_recovered(&gid, &secret).await => {}
                Ok(Recovery::Refuse(Refusal::NoHandshake)) => {
                    tracing::warn!(%gid, %resource, %target, "a webhook of this resource and target without a stored secret was not created by this create; left alone: delete it if it is not wanted");
                }
                Ok(Recovery::Refuse(why)) => {
                    let deleted = self.client.delete_webhook(&gid).send().await.is_ok();
                    tracing::warn!(%gid, deleted, why = %why.describe(), "deleted a webhook whose secret could not be told apart");
                }
                Ok(Recovery::Store(_)) => {
                    let deleted = self.client.delete_webhook(&gid).send().await.is_ok();
                    tracing::warn!(%gid, deleted, "deleted a webhook whose recovered secret could not be stored");
                }
                Err(e) => {
                    tracing::error!(%gid, error = %e, "could not read the creation time of a webhook whose create got no answer; check and delete it by hand");
                }
            }
        }
    }

    async fn decide_for(&self, gid: &str, seen: Vec<SeenHandshake>) -> Result<Recovery, Error> {
        let Some(created) = lookup::creation(&self.client, gid).await? else {
            return Err(Error::Decode {
                message: format!("webhook {gid} has no created_at or target"),
            });
        };
        Ok(recovery::decide(
            &facts(&self.store, &self.key, created, seen).await?,
        ))
    }

    async fn save_recovered(&self, gid: &str, secret: &HookSecret) -> bool {
        let record = StoredSecret::new(self.key.clone(), gid, secret.clone())
            .with_resource(self.create.resource())
            .with_creation(self.create.target(), self.create.filters().to_vec());
        match self.store.save(record).await {
            Ok(()) => {
                tracing::warn!(%gid, "createWebhook got no answer; stored the one secret echoed for its target when the webhook was created");
                true
            }
            Err(e) => {
                tracing::error!(%gid, error = %e, "could not store a recovered secret");
                false
            }
        }
    }
}
