//! Where webhook secrets and registrations in flight live.
//!
//! A secret arrives once (in the handshake and the 201 answer) and signs
//! every delivery after that: losing it makes the webhook useless, leaking
//! it lets anyone forge deliveries. A [`SecretStore`] keeps one secret per
//! webhook, several per target (webhooks on different resources may share
//! one URL), and the registrations in flight during which a handshake for a
//! target is accepted.
//!
//! # Registrations and the handshake
//!
//! ```text
//! create                         store                          receiver
//! open_registration(target) ──▶ window open
//!                                                   ◀── handshake: accept_handshake
//!                               secret *pending*         (echoed; verifies heartbeats only)
//! 201 with X-Hook-Secret ─────▶ confirm(secret == 201's)
//!                               secret stored ──────────▶ verifies deliveries
//! close_registration ─────────▶ unconfirmed secrets discarded
//! ```
//!
//! A secret that only came through a handshake is never trusted for events:
//! anyone who can reach the endpoint can send a handshake while a
//! registration is in flight. Only the 201 answer, which comes from Asana
//! over TLS, confirms it. Several registrations for one target may be in
//! flight at once; each confirms the secret of its own 201 answer.
//!
//! Several receiver instances behind a load balancer share state by sharing
//! one store implementation (a database); [`MemorySecretStore`] and
//! [`FileSecretStore`] serve one machine.
//!
//! # A process that dies between the handshake and the 201
//!
//! The webhook then exists at Asana, its secret was echoed, and the 201
//! that carried it went to a dead process. Durable stores keep every echoed
//! handshake until a 201 confirms it ([`SecretStore::unconfirmed_handshakes`]),
//! so that the next `ensure()` (which gets Asana's "Duplicated webhook"
//! answer, and needs the workspace to find the webhook) can store the
//! secret: the one unconfirmed handshake of the target that arrived within
//! [`RECOVERY_MARGIN`] of the webhook's `created_at` (Asana's clock, set
//! against this machine's by the `Date` of Asana's answer). Asana's own
//! handshake for that webhook is always among them, so when exactly one is
//! there it is Asana's; when a second one (a forgery, or another create) is
//! there too, or when handshakes beyond [`MAX_UNCONFIRMED_PER_TARGET`] went
//! unrecorded near that time (a flood), nothing is trusted and the error
//! says to delete and re-create the webhook.

mod atomic_file;
mod file;
mod memory;
mod recovery;
mod registry;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use file::FileSecretStore;
pub use memory::MemorySecretStore;
pub use recovery::{GAPS_KEPT_FOR, Gap, GapCause, GapStatus, RecoveryStore, SyncToken};

use crate::hook_secret::HookSecret;
use crate::types::WebhookFilter;

/// The part of a target URL that tells the webhooks on one receiver apart:
/// its path and query, for example `/hooks/asana?project=42`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TargetKey(String);

impl TargetKey {
    /// The key of a full target URL (`https://example.com/hooks/1?x=y` →
    /// `/hooks/1?x=y`).
    pub fn from_url(target: &str) -> Result<Self, StoreError> {
        let url = url::Url::parse(target).map_err(|e| StoreError::InvalidTarget {
            target: target.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_path_and_query(&match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }))
    }

    /// The key of a request's path and query as a receiver sees it.
    pub fn from_path_and_query(path_and_query: &str) -> Self {
        let trimmed = path_and_query.trim();
        if trimmed.is_empty() {
            Self("/".to_string())
        } else if trimmed.starts_with('/') {
            Self(trimmed.to_string())
        } else {
            Self(format!("/{trimmed}"))
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TargetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A webhook's secret with what identifies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Where the webhook delivers.
    pub target: TargetKey,
    /// The webhook's gid, once Asana's 201 answer gave it. `None` only for
    /// secrets accepted by the explicit outside-a-window opt-in.
    pub webhook_gid: Option<String>,
    /// The resource the webhook watches, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The full target URL it was created with, when this SDK created it:
    /// with the resource and the filters, what re-creates it once Asana
    /// deleted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    /// The filters it was created with (empty: none, or not known).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<WebhookFilter>,
    /// The secret.
    pub secret: HookSecret,
}

impl StoredSecret {
    /// A confirmed webhook's record.
    pub fn new(target: TargetKey, webhook_gid: impl Into<String>, secret: HookSecret) -> Self {
        Self {
            target,
            webhook_gid: Some(webhook_gid.into()),
            resource: None,
            target_url: None,
            filters: Vec::new(),
            secret,
        }
    }

    /// Records the watched resource too.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Records what the webhook was created with (its full target URL and
    /// its filters), so that it can be created again the same way.
    pub fn with_creation(
        mut self,
        target_url: impl Into<String>,
        filters: Vec<WebhookFilter>,
    ) -> Self {
        self.target_url = Some(target_url.into());
        self.filters = filters;
        self
    }

    /// Whether it can be created again as it was: its resource and full
    /// target URL are known.
    pub fn can_recreate(&self) -> bool {
        self.resource.is_some() && self.target_url.is_some()
    }
}

/// Identifies one registration in flight (one create through the
/// handshake). Unique across processes, so that a shared store can tell
/// the registrations of several instances apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegistrationId(String);

impl RegistrationId {
    /// A new random id (128 bits).
    pub fn random() -> Self {
        Self(format!(
            "{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        ))
    }

    /// An id read back from storage.
    pub fn from_string(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RegistrationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How far apart a webhook's `created_at` (Asana's clock) and the arrival of
/// its handshake (this machine's clock) may be for the handshake to count as
/// that webhook's after a restart.
pub const RECOVERY_MARGIN: Duration = Duration::from_secs(300);

/// How long durable stores keep an echoed handshake that no 201 confirmed:
/// a little longer than Asana keeps retrying a webhook whose deliveries
/// fail before deleting it.
pub const UNCONFIRMED_KEPT_FOR: Duration = Duration::from_secs(25 * 3600);

/// The most unconfirmed handshakes a durable store writes down per target,
/// so that a flood of forged handshakes cannot grow it without bound. A
/// handshake beyond them is still answered (refusing it would let a flood
/// block every create), but only the span of time in which such handshakes
/// arrived is kept ([`SecretStore::unrecorded_handshakes`]), and recovery
/// trusts nothing near it.
pub const MAX_UNCONFIRMED_PER_TARGET: usize = 256;

/// The most handshake secrets a registration window keeps whole per target
/// (they may verify a heartbeat, so each costs an HMAC of a heartbeat).
pub const MAX_PENDING_PER_TARGET: usize = 256;

/// Past [`MAX_PENDING_PER_TARGET`], how many more a window keeps as a
/// digest only, so that Asana's 201 can still confirm its secret after a
/// flood of forged handshakes. A handshake past these too is answered 503
/// ([`HandshakeVerdict::Flooded`]); if it was Asana's, its create fails and
/// can be tried again.
pub const MAX_PENDING_DIGESTS_PER_TARGET: usize = 65_536;

/// How far the recorded end of an [`UnrecordedSpan`] moves at a time: a
/// flood past [`MAX_UNCONFIRMED_PER_TARGET`] rewrites a durable store at
/// most once per step, and recovery distrusts one step more around it.
pub const UNRECORDED_SPAN_STEP: Duration = Duration::from_secs(10);

/// A handshake this receiver answered (echoed) whose secret no 201 has
/// confirmed yet, kept by durable stores so that a create whose process
/// died before Asana's answer can still get its secret stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnconfirmedHandshake {
    /// The target the handshake came to.
    pub target: TargetKey,
    /// Its `X-Hook-Secret`.
    pub secret: HookSecret,
    /// When it arrived (this machine's clock).
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// What [`SecretStore::accept_handshake`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeVerdict {
    /// No registration for the target is in flight: refuse it.
    NoRegistration,
    /// So many handshakes arrived for the target during its registrations
    /// that no more can be kept (see [`MAX_PENDING_DIGESTS_PER_TARGET`]):
    /// answer 503, a genuine sender retries.
    Flooded,
    /// Accepted and kept as pending (unconfirmed) for the target.
    Accepted {
        /// More handshakes arrived than registrations are in flight for
        /// the target: someone other than Asana may be talking to the
        /// endpoint. The secret is still only pending, so it can do no harm.
        suspicious: bool,
    },
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading or writing the backing storage failed.
    #[error("secret store {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The backing file exists but is not a secret store.
    #[error("secret store {path} is unreadable ({reason}); it was left untouched")]
    Corrupt {
        /// The file involved.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The target is not an absolute URL.
    #[error("target `{target}` is not an absolute URL: {reason}")]
    InvalidTarget {
        /// The target given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A database or other backend failed.
    #[error("secret store backend: {0}")]
    Backend(String),
}

/// Storage for webhook secrets and registrations in flight.
///
/// Implementations are cheap-to-clone handles to shared state. Every method
/// is async and is one atomic step, so that a store can live in a database
/// shared by several receiver processes.
pub trait SecretStore: Clone + Send + Sync + 'static {
    /// Starts a registration for `target`, open for `ttl` at most. While at
    /// least one registration of a target is open, handshakes for it are
    /// accepted as pending secrets. Several may be open at once.
    fn open_registration(
        &self,
        target: &TargetKey,
        ttl: Duration,
    ) -> impl Future<Output = Result<RegistrationId, StoreError>> + Send;

    /// Records a handshake's secret as pending if a registration for
    /// `target` is open. Stored secrets are never touched.
    fn accept_handshake(
        &self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> impl Future<Output = Result<HandshakeVerdict, StoreError>> + Send;

    /// The pending (unconfirmed) secrets of `target`. They may verify a
    /// heartbeat, never events.
    fn pending_secrets(
        &self,
        target: &TargetKey,
    ) -> impl Future<Output = Result<Vec<HookSecret>, StoreError>> + Send;

    /// Confirms `record.secret` (the one in Asana's 201 answer): when it is
    /// pending for `record.target`, it stops being pending and `record` is
    /// saved, atomically, and `true` is returned. When no handshake brought
    /// that secret, nothing changes and `false` is returned.
    fn confirm(
        &self,
        registration: &RegistrationId,
        record: StoredSecret,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Ends a registration and returns the secrets that handshakes brought
    /// for its target since it opened and that nobody confirmed (the
    /// candidates for a create whose answer never came). When it was the
    /// last registration of its target, every unconfirmed secret is
    /// discarded. Closing a closed registration returns nothing.
    fn close_registration(
        &self,
        registration: &RegistrationId,
    ) -> impl Future<Output = Result<Vec<HookSecret>, StoreError>> + Send;

    /// Saves a secret: it replaces the record of the same webhook gid (or,
    /// without a gid, the same target and secret); other webhooks' secrets
    /// of the target are kept. Durable stores return once it is durable.
    fn save(&self, record: StoredSecret) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every secret stored for a target, one per webhook.
    fn secrets_for(
        &self,
        target: &TargetKey,
    ) -> impl Future<Output = Result<Vec<StoredSecret>, StoreError>> + Send;

    /// Like [`secrets_for`](Self::secrets_for), read from the backing
    /// storage itself, past any copy a store keeps in memory: what the
    /// receiver looks at before it refuses a delivery, so that a secret
    /// that another instance confirmed a moment ago is never missed. The
    /// default is `secrets_for`.
    fn fresh_secrets_for(
        &self,
        target: &TargetKey,
    ) -> impl Future<Output = Result<Vec<StoredSecret>, StoreError>> + Send {
        self.secrets_for(target)
    }

    /// The secret stored for a webhook gid.
    fn by_gid(
        &self,
        gid: &str,
    ) -> impl Future<Output = Result<Option<StoredSecret>, StoreError>> + Send;

    /// Forgets the secret of a webhook gid (after deleting the webhook);
    /// the other secrets of its target stay.
    fn remove_gid(
        &self,
        gid: &str,
    ) -> impl Future<Output = Result<Option<StoredSecret>, StoreError>> + Send;

    /// The registration ended with Asana's answer: its webhook's secret was
    /// confirmed, or Asana made no webhook (a 4xx, or a 201 whose secret no
    /// handshake brought, after which the webhook was deleted). The
    /// handshakes written down for recovery while it was open (and no other
    /// registration still in doubt was) are nobody's secret: durable stores
    /// forget them, so that an honest failure never makes recovery refuse
    /// a later create. Not called when the outcome is unknown (no answer).
    /// Stores that keep no unconfirmed handshakes do nothing (the default).
    fn release_handshakes(
        &self,
        registration: &RegistrationId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = registration;
        async { Ok(()) }
    }

    /// The handshakes for `target` that this store echoed and that no 201
    /// confirmed since (see the module docs), oldest first. Durable stores
    /// record each one before it is echoed, forget it once its secret is
    /// saved, and keep it for [`UNCONFIRMED_KEPT_FOR`] otherwise. Stores
    /// that do not outlive their process return none (the default).
    fn unconfirmed_handshakes(
        &self,
        target: &TargetKey,
    ) -> impl Future<Output = Result<Vec<UnconfirmedHandshake>, StoreError>> + Send {
        let _ = target;
        async { Ok(Vec::new()) }
    }

    /// When handshakes for `target` beyond [`MAX_UNCONFIRMED_PER_TARGET`]
    /// were echoed without being written down (within the last
    /// [`UNCONFIRMED_KEPT_FOR`]): the first and last time one arrived.
    /// Recovery trusts no unconfirmed handshake near that span, since the
    /// one Asana sent may be among those not written down. Stores that do
    /// not outlive their process return none (the default).
    fn unrecorded_handshakes(
        &self,
        target: &TargetKey,
    ) -> impl Future<Output = Result<Option<UnrecordedSpan>, StoreError>> + Send {
        let _ = target;
        async { Ok(None) }
    }

    /// Whether the store can serve the receiver now: its storage answers
    /// and takes writes. For readiness probes (the receiver's
    /// `check_ready`), so cheap:
    /// a file store reads its file if it changed and creates and removes a
    /// file beside it; a database store runs one trivial query. Stores
    /// held in memory are always ready (the default).
    fn check_ready(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }
}

/// The span of time in which handshakes for a target were echoed without
/// being written down (see [`MAX_UNCONFIRMED_PER_TARGET`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnrecordedSpan {
    /// The target.
    pub target: TargetKey,
    /// When the first of them arrived.
    pub first: chrono::DateTime<chrono::Utc>,
    /// When the last of them arrived.
    pub last: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keys_keep_path_and_query_only() {
        let key = TargetKey::from_url("https://example.com:8443/hooks/1?project=42#frag").unwrap();
        assert_eq!(key.as_str(), "/hooks/1?project=42");
        assert_eq!(
            TargetKey::from_url("https://example.com").unwrap().as_str(),
            "/"
        );
        assert_eq!(
            TargetKey::from_path_and_query("hooks"),
            TargetKey::from_path_and_query("/hooks")
        );
        assert!(matches!(
            TargetKey::from_url("/relative"),
            Err(StoreError::InvalidTarget { .. })
        ));
    }

    #[test]
    fn registration_ids_are_distinct() {
        let a = RegistrationId::random();
        let b = RegistrationId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 32);
    }
}
