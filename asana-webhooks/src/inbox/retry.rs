//! How a failed event is retried, and when it is given up on: each inbox
//! hands an event out at most [`Retries::max_attempts`] times, waiting a
//! growing, jittered backoff after each failure, and then moves it to its
//! dead letters ([`DeadLetter`]), where it blocks nothing until an operator
//! re-drives or purges it.

use std::time::Duration;

use serde::Serialize;

use super::{EventSource, StoredEvent};
use crate::event::{Event, UndecodedEvent};
use crate::secrets::TargetKey;

/// How many times an event is handed out before it moves to the dead
/// letters, unless [`Retries::with_max_attempts`] says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// The backoff after an event's first failure, by default; each further
/// failure doubles it.
pub const DEFAULT_FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The longest backoff between two attempts, by default.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// How an inbox retries events whose handling failed
/// ([`InboxItem::release`](super::InboxItem::release), or a lease that
/// expired) and when it gives up on them. Set it with each inbox's
/// `with_retries`.
///
/// ```
/// use std::time::Duration;
/// use asana_webhooks::inbox::Retries;
///
/// let retries = Retries::default()
///     .with_max_attempts(5)
///     .with_backoff(Duration::from_millis(500), Duration::from_secs(60));
/// assert_eq!(retries.max_attempts(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    max_attempts: u32,
    first_backoff: Duration,
    max_backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            first_backoff: DEFAULT_FIRST_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl Retries {
    /// Hands an event out at most `max_attempts` times (at least once);
    /// when its last attempt fails it moves to the dead letters.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Waits `first` after an event's first failure, doubling the wait
    /// after each further one up to `max` (at least `first`).
    pub fn with_backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// The most times an event is handed out.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The backoff after the first failure.
    pub fn first_backoff(&self) -> Duration {
        self.first_backoff
    }

    /// The longest backoff.
    pub fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// The wait before an event whose `attempt`-th attempt failed is handed
    /// out again: [`first_backoff`](Self::first_backoff) doubled for each
    /// earlier failure, at most [`max_backoff`](Self::max_backoff), of
    /// which a random part up to a half is left out so that events failing
    /// together do not all come back together. Never less than half the
    /// doubled value.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let full = self
            .first_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff);
        let half = full / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Whether an event handed out `attempts` times has had all its tries.
    pub(crate) fn spent(&self, attempts: u32) -> bool {
        attempts >= self.max_attempts
    }
}

/// What became of an item given back with
/// [`InboxItem::release`](super::InboxItem::release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Released {
    /// It is handed out again after this backoff, and not before.
    Retrying {
        /// The backoff (jittered; see [`Retries::backoff_after`]).
        after: Duration,
    },
    /// That was its last allowed attempt: it moved to the dead letters.
    DeadLettered,
}

/// An event that failed on each of its allowed attempts and now waits, out
/// of everyone's way, for an operator: listed by
/// [`Inbox::dead_letters`](super::Inbox::dead_letters), re-driven by
/// [`Inbox::redrive_dead_letters`](super::Inbox::redrive_dead_letters) or
/// purged by [`Inbox::purge_dead_letters`](super::Inbox::purge_dead_letters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its id in its inbox (kept when re-driven).
    pub id: u64,
    /// The target it was delivered to.
    pub target: TargetKey,
    /// The webhook whose secret verified it (`None` for the Events API).
    pub webhook_gid: Option<String>,
    /// Where it came from.
    pub source: EventSource,
    /// The watched resource it belongs to, when known.
    pub resource: Option<String>,
    /// When the receiver committed it.
    pub received_at: chrono::DateTime<chrono::Utc>,
    /// When it moved to the dead letters.
    pub dead_at: chrono::DateTime<chrono::Utc>,
    /// How many times it was handed out.
    pub attempts: u32,
    /// What the last failed attempt said, when it said something.
    pub last_error: Option<String>,
    /// The event's JSON exactly as Asana sent it.
    pub raw: String,
}

impl DeadLetter {
    pub(crate) fn new(
        event: &StoredEvent,
        attempts: u32,
        last_error: Option<String>,
        dead_at_ms: u64,
    ) -> Self {
        Self {
            id: event.id,
            target: event.target.clone(),
            webhook_gid: event.webhook_gid.clone(),
            source: event.source,
            resource: event.resource.clone(),
            received_at: super::timestamp(event.received_at_ms),
            dead_at: super::timestamp(dead_at_ms),
            attempts,
            last_error,
            raw: event.event.get().to_string(),
        }
    }

    /// The typed event, or the raw JSON and the decoding error.
    pub fn event(&self) -> Result<Event, UndecodedEvent> {
        super::decode(&self.raw)
    }
}

/// Which dead letters an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every dead letter.
    All,
    /// Those with these ids (ids that are not dead letters are ignored).
    Ids(Vec<u64>),
}

impl Selection {
    pub(crate) fn contains(&self, id: u64) -> bool {
        match self {
            Self::All => true,
            Self::Ids(ids) => ids.contains(&id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_limit_and_keeps_at_least_half() {
        let retries =
            Retries::default().with_backoff(Duration::from_millis(100), Duration::from_millis(350));
        for _ in 0..100 {
            let first = retries.backoff_after(1);
            assert!(
                (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first),
                "{first:?}"
            );
            let third = retries.backoff_after(3);
            assert!(
                (Duration::from_millis(175)..=Duration::from_millis(350)).contains(&third),
                "capped: {third:?}"
            );
            assert!(retries.backoff_after(u32::MAX) <= Duration::from_millis(350));
        }
        let spread: std::collections::HashSet<Duration> =
            (0..20).map(|_| retries.backoff_after(2)).collect();
        assert!(spread.len() > 1, "jittered");
    }

    #[test]
    fn at_least_one_attempt() {
        let retries = Retries::default().with_max_attempts(0);
        assert_eq!(retries.max_attempts(), 1);
        assert!(!retries.spent(0));
        assert!(retries.spent(1));
        assert_eq!(Retries::default().max_attempts(), DEFAULT_MAX_ATTEMPTS);
    }
}
