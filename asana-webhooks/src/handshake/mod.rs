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
//!
//! - `create`: the builder and the task that owns a registration;
//! - `lookup`: finding a webhook at Asana, with its creation time set
//!   against this machine's clock;
//! - `recovery`: the pure decision of which echoed handshake, if any, is a
//!   webhook's secret, shared by both recovery paths.

mod create;
mod lookup;
mod recovery;

use std::time::Duration;

pub use create::{CreateWithHandshake, EnsuredWebhook};

use crate::client::Client;
use crate::secrets::SecretStore;

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
    /// answer be late, see [`crate::HandshakeError::Timeout`].
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
        CreateWithHandshake::new(self.create_webhook(resource, target), store)
    }
}
