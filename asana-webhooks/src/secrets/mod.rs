//! Where webhook secrets and open registration windows live.
//!
//! A secret arrives once (in the handshake and the 201 answer) and signs
//! every delivery after that: losing it makes the webhook useless, leaking
//! it lets anyone forge deliveries. A [`SecretStore`] keeps each secret
//! under its target (what the receiver sees) and its webhook gid (what the
//! API returns), together with the registration windows during which a
//! handshake is accepted. Several receiver instances behind a load balancer
//! share state by sharing one store implementation.

mod file;
mod memory;

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use file::FileSecretStore;
pub use memory::MemorySecretStore;

use crate::secret::HookSecret;

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
    /// The webhook's gid, once Asana's 201 answer gave it.
    pub webhook_gid: Option<String>,
    /// The secret.
    pub secret: HookSecret,
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
    /// A registration for this target is already in flight.
    #[error("a webhook registration for target {0} is already in flight; wait for it to finish")]
    WindowBusy(TargetKey),
    /// The target is not an absolute URL.
    #[error("target `{target}` is not an absolute URL: {reason}")]
    InvalidTarget {
        /// The target given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Storage for webhook secrets and registration windows.
///
/// Implementations are cheap-to-clone handles to shared state. Every method
/// is async so that a store can live in a database or a cache shared by
/// several receiver processes.
pub trait SecretStore: Clone + Send + Sync + 'static {
    /// Opens the registration window of `target` for `ttl`: until it is
    /// closed or expires, one handshake for `target` is accepted. Fails with
    /// [`StoreError::WindowBusy`] while another window for `target` is open.
    fn open_window(
        &self,
        target: &TargetKey,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a handshake's secret if a window for `target` is open;
    /// returns whether it was. Stored secrets are not touched.
    fn accept_handshake(
        &self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The secret a handshake left in the open window of `target`, if any.
    fn pending_secret(
        &self,
        target: &TargetKey,
    ) -> impl Future<Output = Result<Option<HookSecret>, StoreError>> + Send;

    /// Closes the window of `target` and returns the handshake secret it
    /// received, if any. Closing a closed window is not an error.
    fn close_window(
        &self,
        target: &TargetKey,
    ) -> impl Future<Output = Result<Option<HookSecret>, StoreError>> + Send;

    /// Saves a secret, replacing the one stored for its target (and for its
    /// gid). Durable stores return only once it is durable.
    fn save(&self, record: StoredSecret) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The secret stored for a target.
    fn by_target(
        &self,
        target: &TargetKey,
    ) -> impl Future<Output = Result<Option<StoredSecret>, StoreError>> + Send;

    /// The secret stored for a webhook gid.
    fn by_gid(
        &self,
        gid: &str,
    ) -> impl Future<Output = Result<Option<StoredSecret>, StoreError>> + Send;

    /// Forgets the secret of a webhook gid (after deleting the webhook).
    fn remove_gid(
        &self,
        gid: &str,
    ) -> impl Future<Output = Result<Option<StoredSecret>, StoreError>> + Send;
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
}
