//! Why a create through the handshake failed.

use std::time::Duration;

/// Why a create through the handshake failed after Asana answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// No answer to createWebhook within the timeout. The create goes on in
    /// the background: a late answer still stores the secret; without one,
    /// the webhook is looked up and its secret stored or the webhook
    /// deleted. Check with [`crate::secrets::SecretStore::secrets_for`] or
    /// `ensure()` later rather than creating again at once.
    #[error(
        "createWebhook got no answer within {0:?}; it goes on in the background and stores the secret if Asana answers"
    )]
    Timeout(Duration),
    /// Asana created the webhook, but no handshake this receiver answered
    /// carried the secret of the 201 answer, so deliveries could not be
    /// trusted. The webhook was deleted if `deleted`.
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
    /// The webhook exists at Asana (a 403 "Duplicated webhook") but its
    /// secret is not in this store, so its deliveries cannot be verified.
    /// (When the create that made it died after its handshake, its secret
    /// is recovered instead, unless a second unconfirmed handshake arrived
    /// at the same time and nobody can tell which was Asana's.)
    #[error(
        "webhook {webhook_gid} already delivers resource {resource} to this target, but its secret is not in this store; delete it (`asana-webhooks delete {webhook_gid}`) and create it again"
    )]
    SecretNotStored {
        /// The existing webhook.
        webhook_gid: String,
        /// Its resource.
        resource: String,
    },
    /// Asana says the webhook exists, but it could not be found: `ensure`
    /// needs the workspace to list the resource's webhooks.
    #[error(
        "Asana says a webhook for resource {resource} and this target exists, but it is not in this store; set the workspace so that it can be looked up"
    )]
    DuplicateNotFound {
        /// The resource.
        resource: String,
    },
}
