//! Creating a webhook through its handshake, with the secret stored safely.

use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::client::Client;
use crate::error::Error;
use crate::secret::HookSecret;
use crate::secrets::{SecretStore, StoreError, StoredSecret, TargetKey};
use crate::types::WebhookFilter;
use crate::webhooks::{CreatedWebhook, Webhook};

/// How long a create waits for Asana (and so for the handshake) by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a create through the handshake failed after Asana answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// No answer to createWebhook within the timeout. The window is closed;
    /// Asana may still have created the webhook, so list before retrying.
    #[error("createWebhook got no answer within {0:?}; the registration window is closed")]
    Timeout(Duration),
    /// Asana created the webhook, but the handshake this receiver answered
    /// did not carry the secret of the 201 answer (or there was none), so
    /// deliveries could not be trusted. The webhook was deleted if `deleted`.
    #[error(
        "the handshake secret does not match the one in Asana's answer for webhook {webhook_gid} ({reason}); {}",
        if *.deleted { "the webhook was deleted" } else { "deleting the webhook failed: delete it by hand" }
    )]
    SecretMismatch {
        /// The webhook Asana created.
        webhook_gid: String,
        /// What did not match.
        reason: &'static str,
        /// Whether the webhook was deleted again.
        deleted: bool,
    },
}

/// Adds handshake-aware creation to [`Client`].
pub trait HandshakeExt {
    /// Creates a webhook on `resource` delivering to `target`, answering the
    /// handshake through a receiver that shares `store`.
    ///
    /// It opens the registration window for the target, sends
    /// createWebhook, lets the receiver answer Asana's handshake while the
    /// request is in flight, checks that the handshake's secret equals the
    /// one in the 201 answer, and stores it under the webhook's gid and
    /// target. The window is closed on every outcome, including when the
    /// returned future is dropped.
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
            filters: Vec::new(),
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
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
    filters: Vec<WebhookFilter>,
    timeout: Duration,
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

/// Closes a registration window when dropped without being closed, so that
/// a cancelled create never leaves a window open.
struct WindowGuard<S: SecretStore> {
    store: S,
    target: TargetKey,
    open: bool,
}

impl<S: SecretStore> WindowGuard<S> {
    async fn close(mut self) -> Result<Option<HookSecret>, StoreError> {
        self.open = false;
        self.store.close_window(&self.target).await
    }
}

impl<S: SecretStore> Drop for WindowGuard<S> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let (store, target) = (self.store.clone(), self.target.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = store.close_window(&target).await;
                });
            }
            // Without a runtime the window still expires with its TTL.
            Err(_) => tracing::warn!(%target, "registration window left to expire"),
        }
    }
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

    /// How long to wait for Asana's answer; default 30 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Creates the webhook; see [`HandshakeExt::create_webhook_with_handshake`].
    pub async fn send(self) -> Result<CreatedWebhook, Error> {
        {
            let target = TargetKey::from_url(&self.target)?;
            // The window outlives the request by a little, so a handshake
            // that races the timeout is still recorded rather than refused.
            self.store
                .open_window(&target, self.timeout + Duration::from_secs(1))
                .await?;
            let guard = WindowGuard {
                store: self.store.clone(),
                target: target.clone(),
                open: true,
            };

            let create = self
                .client
                .create_webhook(&self.resource, &self.target)
                .filters(self.filters.clone())
                .send();
            let answered = tokio::time::timeout(self.timeout, create).await;
            let handshake = guard.close().await?;
            let created = match answered {
                Err(_) => return Err(HandshakeError::Timeout(self.timeout).into()),
                Ok(result) => result?,
            };
            let gid = created.webhook.gid.clone().ok_or_else(|| Error::Decode {
                message: "the createWebhook answer has no gid".into(),
            })?;

            let confirmed = match (&handshake, &created.secret) {
                (Some(received), Some(answered)) => bool::from(
                    received
                        .expose()
                        .as_bytes()
                        .ct_eq(answered.expose().as_bytes()),
                )
                .then_some(received.clone())
                .ok_or("they differ"),
                (None, _) => Err("no handshake reached this receiver"),
                (Some(_), None) => Err("the 201 answer carries no X-Hook-Secret"),
            };
            let secret = match confirmed {
                Ok(secret) => secret,
                Err(reason) => {
                    let deleted = self.client.delete_webhook(&gid).send().await.is_ok();
                    return Err(HandshakeError::SecretMismatch {
                        webhook_gid: gid,
                        reason,
                        deleted,
                    }
                    .into());
                }
            };
            let record = StoredSecret {
                target,
                webhook_gid: Some(gid.clone()),
                secret,
            };
            if let Err(e) = self.store.save(record).await {
                // A webhook whose secret is lost cannot be verified: remove it.
                let _ = self.client.delete_webhook(&gid).send().await;
                return Err(e.into());
            }
            Ok(created)
        }
    }

    /// Like [`CreateWithHandshake::send`], but when Asana answers 403
    /// "Duplicated webhook" and the store already holds the secret for this
    /// target, returns that existing webhook instead of failing.
    pub async fn ensure(self) -> Result<EnsuredWebhook, Error> {
        let (client, store, target) = (self.client, self.store, self.target.clone());
        match self.send().await {
            Ok(created) => Ok(EnsuredWebhook {
                webhook: created.webhook,
                created: true,
            }),
            Err(Error::Api(api)) if api.is_duplicate_webhook() => {
                let key = TargetKey::from_url(&target)?;
                match store.by_target(&key).await?.and_then(|r| r.webhook_gid) {
                    Some(gid) => {
                        let webhook = client.get_webhook(gid).send().await?;
                        Ok(EnsuredWebhook {
                            webhook,
                            created: false,
                        })
                    }
                    None => Err(Error::Api(api)),
                }
            }
            Err(e) => Err(e),
        }
    }
}
