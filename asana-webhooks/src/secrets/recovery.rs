//! What recovery must remember beside the secrets: the **gaps** (intervals
//! in which Asana sent a resource's events nowhere), the **leases** that let
//! one of several instances do a repair alone, and the Events API **sync
//! tokens** that mark how far a resource was caught up.
//!
//! A [`RecoveryStore`] keeps them in the same storage as the secrets
//! (memory, the secrets file, PostgreSQL), so that a receiver that outlives
//! a restart remembers its gaps too.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// How long a store keeps a gap after it was recorded. Asana keeps events
/// for 24 hours only, so a gap older than a month is history.
pub const GAPS_KEPT_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// An interval in which Asana delivered a resource's events nowhere (a
/// webhook deleted, then re-created), or in which they may have been
/// missed (an Events API sync token that expired).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// What identifies it: recording the same gap twice keeps the first.
    pub id: String,
    /// The resource whose events fall in it.
    pub resource: String,
    /// Why it opened.
    pub cause: GapCause,
    /// Its start: the last time this receiver heard from the webhook (a
    /// verified heartbeat), or the sync token's time. `None` when nothing
    /// was ever heard, so the gap reaches back as far as anyone can look.
    /// On this machine's clock, like `to`; both err on the wide side.
    pub from: Option<DateTime<Utc>>,
    /// Its end: from then on events flow again (on this machine's clock).
    pub to: DateTime<Utc>,
    /// When it was recorded (this machine's clock).
    pub recorded_at: DateTime<Utc>,
    /// Whether its events were caught up.
    pub status: GapStatus,
}

/// Why a gap opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GapCause {
    /// Asana deleted the webhook; the watch created `new_gid` in its place.
    WebhookGone {
        /// The deleted webhook.
        old_gid: String,
        /// The one created in its place.
        new_gid: String,
    },
    /// A webhook whose secret was not stored was deleted and created again
    /// (only when the user opted in): nothing it delivered could be
    /// verified.
    UnknownSecretReplaced {
        /// The webhook deleted.
        old_gid: String,
        /// The one created in its place.
        new_gid: String,
    },
    /// The Events API no longer knew the stored sync token: events between
    /// the token's time and the fresh token's may be missing.
    SyncTokenExpired,
}

impl GapCause {
    /// Its name as in metrics and JSON: `webhook_gone`,
    /// `unknown_secret_replaced` or `sync_token_expired`.
    pub fn as_str(&self) -> &'static str {
        match self {
            GapCause::WebhookGone { .. } => "webhook_gone",
            GapCause::UnknownSecretReplaced { .. } => "unknown_secret_replaced",
            GapCause::SyncTokenExpired => "sync_token_expired",
        }
    }
}

/// Whether a gap's events were recovered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GapStatus {
    /// Nobody recovered its events yet.
    Open,
    /// Its events were caught up (through the Events API).
    Recovered {
        /// When.
        at: DateTime<Utc>,
    },
    /// Its events cannot be recovered; the reason says why.
    Unrecoverable {
        /// Why (the Events API keeps 24 hours, cannot follow the resource, …).
        reason: String,
    },
}

impl Gap {
    /// A gap that is still open, recorded now.
    pub fn open(
        id: impl Into<String>,
        resource: impl Into<String>,
        cause: GapCause,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Self {
        Self {
            id: id.into(),
            resource: resource.into(),
            cause,
            from,
            to,
            recorded_at: Utc::now(),
            status: GapStatus::Open,
        }
    }
}

/// An Events API sync token and when it was saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncToken {
    /// The token (opaque).
    pub token: String,
    /// When it was saved (this machine's clock).
    pub saved_at: DateTime<Utc>,
    /// When the unbroken stream it continues began (the first token, or
    /// the fresh one after an expired token): every event of the resource
    /// since then was read through it.
    pub stream_since: DateTime<Utc>,
}

/// Storage for gaps, leases and sync tokens, beside the secrets.
///
/// Like [`super::SecretStore`]: cheap-to-clone handles, each method one
/// atomic step, shared by every instance that shares the store.
pub trait RecoveryStore: Clone + Send + Sync + 'static {
    /// Records `gap` unless a gap with its id is recorded already; returns
    /// whether it was new. Durable stores return once it is durable. Gaps
    /// older than [`GAPS_KEPT_FOR`] are forgotten.
    fn record_gap(&self, gap: Gap) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every gap kept, oldest recorded first.
    fn gaps(&self) -> impl Future<Output = Result<Vec<Gap>, StoreError>> + Send;

    /// Sets a gap's status; `false` when no gap has that id.
    fn set_gap_status(
        &self,
        id: &str,
        status: GapStatus,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes the lease `name` for `holder` for `ttl`: `true` when it was
    /// free, had expired, or was `holder`'s already (then it is extended).
    /// While a lease is held, every other holder gets `false`: the work it
    /// guards is done by one instance at a time.
    fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives the lease up if `holder` holds it.
    fn release_lease(
        &self,
        name: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The sync token saved for `resource`.
    fn sync_token(
        &self,
        resource: &str,
    ) -> impl Future<Output = Result<Option<SyncToken>, StoreError>> + Send;

    /// Saves `token` for `resource`, continuing the stream that began at
    /// `stream_since`, replacing the previous one. Durable stores return
    /// once it is durable.
    fn save_sync_token(
        &self,
        resource: &str,
        token: &str,
        stream_since: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A lease as the in-process stores keep it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Lease {
    pub(crate) holder: String,
    pub(crate) expires_at: DateTime<Utc>,
}

/// Gaps, leases and sync tokens as plain data: the memory store keeps it
/// behind its mutex, the file store in its file. No I/O.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecoveryBook {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) gaps: Vec<Gap>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) leases: BTreeMap<String, Lease>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) sync_tokens: BTreeMap<String, SyncToken>,
}

impl RecoveryBook {
    pub(crate) fn is_empty(&self) -> bool {
        self.gaps.is_empty() && self.leases.is_empty() && self.sync_tokens.is_empty()
    }

    /// Returns whether the gap was new (and so whether anything changed).
    pub(crate) fn record_gap(&mut self, gap: Gap, now: DateTime<Utc>) -> bool {
        let kept_for = chrono::Duration::from_std(GAPS_KEPT_FOR).expect("a month fits");
        self.gaps.retain(|g| g.recorded_at + kept_for > now);
        if self.gaps.iter().any(|g| g.id == gap.id) {
            return false;
        }
        self.gaps.push(gap);
        true
    }

    pub(crate) fn set_gap_status(&mut self, id: &str, status: GapStatus) -> bool {
        match self.gaps.iter_mut().find(|g| g.id == id) {
            Some(gap) => {
                gap.status = status;
                true
            }
            None => false,
        }
    }

    pub(crate) fn try_lease(
        &mut self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> bool {
        if let Some(lease) = self.leases.get(name)
            && lease.holder != holder
            && lease.expires_at > now
        {
            return false;
        }
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        self.leases.insert(
            name.to_string(),
            Lease {
                holder: holder.to_string(),
                expires_at: now
                    .checked_add_signed(ttl)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            },
        );
        // Expired leases of others go with the write.
        self.leases.retain(|_, l| l.expires_at > now);
        true
    }

    /// Returns whether anything changed.
    pub(crate) fn release_lease(&mut self, name: &str, holder: &str) -> bool {
        if self.leases.get(name).is_some_and(|l| l.holder == holder) {
            self.leases.remove(name);
            return true;
        }
        false
    }

    pub(crate) fn save_sync_token(
        &mut self,
        resource: &str,
        token: &str,
        stream_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        self.sync_tokens.insert(
            resource.to_string(),
            SyncToken {
                token: token.to_string(),
                saved_at: now,
                stream_since,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(id: &str, recorded_at: DateTime<Utc>) -> Gap {
        Gap {
            recorded_at,
            ..Gap::open(id, "42", GapCause::SyncTokenExpired, None, recorded_at)
        }
    }

    #[test]
    fn a_gap_is_recorded_once_and_forgotten_after_its_retention() {
        let now = Utc::now();
        let mut book = RecoveryBook::default();
        assert!(book.record_gap(gap("a", now), now));
        assert!(!book.record_gap(gap("a", now), now), "the same id twice");
        let later = now + chrono::Duration::from_std(GAPS_KEPT_FOR).unwrap();
        assert!(book.record_gap(gap("b", later), later));
        assert_eq!(
            book.gaps.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
            ["b"],
            "a gap as old as the retention is forgotten"
        );
    }

    #[test]
    fn a_lease_belongs_to_one_holder_until_it_expires_or_is_released() {
        let now = Utc::now();
        let ttl = Duration::from_secs(60);
        let mut book = RecoveryBook::default();
        assert!(book.try_lease("x", "a", ttl, now));
        assert!(!book.try_lease("x", "b", ttl, now));
        assert!(book.try_lease("x", "a", ttl, now), "the holder extends it");
        assert!(!book.release_lease("x", "b"), "only the holder releases");
        assert!(!book.try_lease("x", "b", ttl, now + chrono::Duration::seconds(59)));
        assert!(book.try_lease("x", "b", ttl, now + chrono::Duration::seconds(61)));
        assert!(book.release_lease("x", "b"));
        assert!(book.try_lease("x", "a", ttl, now));
    }

    #[test]
    fn a_status_is_set_only_on_a_recorded_gap() {
        let now = Utc::now();
        let mut book = RecoveryBook::default();
        book.record_gap(gap("a", now), now);
        assert!(book.set_gap_status("a", GapStatus::Recovered { at: now }));
        assert!(!book.set_gap_status("b", GapStatus::Open));
        assert_eq!(book.gaps[0].status, GapStatus::Recovered { at: now });
    }
}
