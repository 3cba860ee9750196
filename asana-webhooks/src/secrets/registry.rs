//! The state machine behind the in-process stores: records (one per
//! webhook) and registration windows (several registrations per target,
//! collecting pending handshake secrets). Plain data, no I/O: the memory
//! store wraps it in a mutex, the file store persists its records.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::{
    HandshakeVerdict, MAX_PENDING_DIGESTS_PER_TARGET, MAX_PENDING_PER_TARGET,
    MAX_UNCONFIRMED_PER_TARGET, RegistrationId, StoredSecret, TargetKey, UNCONFIRMED_KEPT_FOR,
    UNRECORDED_SPAN_STEP, UnconfirmedHandshake, UnrecordedSpan,
};
use crate::hook_secret::HookSecret;

/// An echoed handshake written down for recovery, tied to the
/// registrations open for its target when it arrived: it was one of
/// theirs, if anyone's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct UnconfirmedEntry {
    #[serde(flatten)]
    pub(crate) handshake: UnconfirmedHandshake,
    /// Absent in files written before entries were tied: such an entry is
    /// only ever dropped by age or by a confirm.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) registrations: Vec<RegistrationId>,
}

#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) records: Vec<StoredSecret>,
    /// Echoed handshakes not confirmed yet; only durable stores fill it.
    pub(crate) unconfirmed: Vec<UnconfirmedEntry>,
    /// Per target, when handshakes past the limit went unrecorded.
    pub(crate) unrecorded: Vec<UnrecordedSpan>,
    /// Gaps, leases and sync tokens.
    pub(crate) recovery: super::recovery::RecoveryBook,
    windows: HashMap<TargetKey, Window>,
}

#[derive(Default)]
struct Window {
    registrations: Vec<Registration>,
    /// The first [`MAX_PENDING_PER_TARGET`] secrets, kept whole: they may
    /// verify a heartbeat.
    pending: Vec<Pending>,
    /// Past them, only a digest of each (up to
    /// [`MAX_PENDING_DIGESTS_PER_TARGET`]): enough for Asana's 201 to
    /// confirm its secret whatever a flood sent before it, at 32 bytes each.
    overflow: HashSet<[u8; 32]>,
}

fn digest(secret: &HookSecret) -> [u8; 32] {
    Sha256::digest(secret.expose().as_bytes()).into()
}

struct Registration {
    id: RegistrationId,
    opened_at: Instant,
    expires_at: Instant,
}

struct Pending {
    secret: HookSecret,
    received_at: Instant,
}

fn kept_for() -> chrono::Duration {
    chrono::Duration::from_std(UNCONFIRMED_KEPT_FOR).expect("25 hours fit")
}

/// Compares two secrets in constant time (for equal lengths).
pub(crate) fn same_secret(a: &HookSecret, b: &HookSecret) -> bool {
    bool::from(a.expose().as_bytes().ct_eq(b.expose().as_bytes()))
}

impl Registry {
    /// Drops expired registrations, and windows left with none (their
    /// unconfirmed secrets with them).
    fn expire(&mut self) {
        let now = Instant::now();
        self.windows.retain(|_, window| {
            window.registrations.retain(|r| r.expires_at > now);
            !window.registrations.is_empty()
        });
    }

    pub(crate) fn open_registration(
        &mut self,
        target: &TargetKey,
        ttl: Duration,
    ) -> RegistrationId {
        self.expire();
        let id = RegistrationId::random();
        let now = Instant::now();
        self.windows
            .entry(target.clone())
            .or_default()
            .registrations
            .push(Registration {
                id: id.clone(),
                opened_at: now,
                expires_at: now + ttl,
            });
        id
    }

    pub(crate) fn accept_handshake(
        &mut self,
        target: &TargetKey,
        secret: &HookSecret,
    ) -> HandshakeVerdict {
        self.expire();
        let Some(window) = self.windows.get_mut(target) else {
            return HandshakeVerdict::NoRegistration;
        };
        let known = window
            .pending
            .iter()
            .any(|p| same_secret(&p.secret, secret));
        if !known {
            if window.pending.len() < MAX_PENDING_PER_TARGET {
                window.pending.push(Pending {
                    secret: secret.clone(),
                    received_at: Instant::now(),
                });
            } else if window.overflow.len() < MAX_PENDING_DIGESTS_PER_TARGET {
                window.overflow.insert(digest(secret));
            } else if !window.overflow.contains(&digest(secret)) {
                return HandshakeVerdict::Flooded;
            }
        }
        HandshakeVerdict::Accepted {
            suspicious: window.pending.len() + window.overflow.len() > window.registrations.len(),
        }
    }

    pub(crate) fn pending_secrets(&mut self, target: &TargetKey) -> Vec<HookSecret> {
        self.expire();
        self.windows
            .get(target)
            .map(|w| w.pending.iter().map(|p| p.secret.clone()).collect())
            .unwrap_or_default()
    }

    /// Takes `record.secret` out of the pending set of its target; saves the
    /// record when it was there. A secret echoed and written down as an
    /// unconfirmed handshake confirms too, even when its registration has
    /// expired meanwhile (a slow disk, a flood): it was echoed by this
    /// receiver, and the 201 says it is the webhook's.
    pub(crate) fn confirm(&mut self, record: StoredSecret) -> bool {
        self.expire();
        let in_window = self.windows.get_mut(&record.target).is_some_and(|window| {
            if let Some(index) = window
                .pending
                .iter()
                .position(|p| same_secret(&p.secret, &record.secret))
            {
                window.pending.remove(index);
                true
            } else {
                window.overflow.remove(&digest(&record.secret))
            }
        });
        let written_down = self.unconfirmed.iter().any(|u| {
            u.handshake.target == record.target && same_secret(&u.handshake.secret, &record.secret)
        });
        if !(in_window || written_down) {
            return false;
        }
        self.save(record);
        true
    }

    pub(crate) fn close_registration(&mut self, id: &RegistrationId) -> Vec<HookSecret> {
        let Some((target, index)) = self.windows.iter().find_map(|(target, window)| {
            window
                .registrations
                .iter()
                .position(|r| &r.id == id)
                .map(|index| (target.clone(), index))
        }) else {
            return Vec::new();
        };
        let window = self.windows.get_mut(&target).expect("found above");
        let registration = window.registrations.remove(index);
        let candidates = window
            .pending
            .iter()
            .filter(|p| p.received_at >= registration.opened_at)
            .map(|p| p.secret.clone())
            .collect();
        if window.registrations.is_empty() {
            self.windows.remove(&target);
        }
        self.expire();
        candidates
    }

    /// Records an echoed handshake for recovery after a restart. Past
    /// [`MAX_UNCONFIRMED_PER_TARGET`] for its target, only the span in which
    /// such handshakes arrived is kept. Entries older than
    /// [`UNCONFIRMED_KEPT_FOR`] are dropped on the way. Returns whether
    /// anything changed (not for a repeat with nothing to drop).
    pub(crate) fn record_unconfirmed(&mut self, handshake: UnconfirmedHandshake) -> bool {
        let oldest = handshake.received_at - kept_for();
        let kept = (self.unconfirmed.len(), self.unrecorded.len());
        self.unconfirmed
            .retain(|u| u.handshake.received_at > oldest);
        self.unrecorded.retain(|u| u.last > oldest);
        let dropped = kept != (self.unconfirmed.len(), self.unrecorded.len());
        let mut of_target = self
            .unconfirmed
            .iter()
            .filter(|u| u.handshake.target == handshake.target);
        if of_target
            .clone()
            .any(|u| same_secret(&u.handshake.secret, &handshake.secret))
        {
            return dropped;
        }
        if of_target.nth(MAX_UNCONFIRMED_PER_TARGET - 1).is_none() {
            let registrations = self
                .windows
                .get(&handshake.target)
                .map(|w| w.registrations.iter().map(|r| r.id.clone()).collect())
                .unwrap_or_default();
            self.unconfirmed.push(UnconfirmedEntry {
                handshake,
                registrations,
            });
            return true;
        }
        match self
            .unrecorded
            .iter_mut()
            .find(|u| u.target == handshake.target)
        {
            // Moved in steps, so that a flood rewrites a durable store at
            // most once a step; recovery distrusts a step more around it.
            Some(span) => {
                let step = chrono::Duration::from_std(UNRECORDED_SPAN_STEP).expect("seconds fit");
                if handshake.received_at < span.last + step {
                    return dropped;
                }
                span.last = handshake.received_at;
            }
            None => self.unrecorded.push(UnrecordedSpan {
                target: handshake.target,
                first: handshake.received_at,
                last: handshake.received_at,
            }),
        }
        true
    }

    /// A registration ended with Asana's answer (its webhook confirmed, or
    /// no webhook made): the handshakes written down while only it (and
    /// other registrations that ended so) was open are nobody's secret, and
    /// would only make recovery refuse for a later create. Returns whether
    /// anything changed.
    pub(crate) fn release_unconfirmed(&mut self, registration: &RegistrationId) -> bool {
        let mut changed = false;
        self.unconfirmed.retain_mut(|entry| {
            let before = entry.registrations.len();
            entry.registrations.retain(|r| r != registration);
            if entry.registrations.len() == before {
                return true;
            }
            changed = true;
            !entry.registrations.is_empty()
        });
        changed
    }

    /// The unconfirmed handshakes of `target` still kept, oldest first.
    pub(crate) fn unconfirmed_for(&self, target: &TargetKey) -> Vec<UnconfirmedHandshake> {
        let oldest = chrono::Utc::now() - kept_for();
        let mut found: Vec<_> = self
            .unconfirmed
            .iter()
            .map(|u| &u.handshake)
            .filter(|u| &u.target == target && u.received_at > oldest)
            .cloned()
            .collect();
        found.sort_by_key(|u| u.received_at);
        found
    }

    pub(crate) fn unrecorded_for(&self, target: &TargetKey) -> Option<UnrecordedSpan> {
        let oldest = chrono::Utc::now() - kept_for();
        self.unrecorded
            .iter()
            .find(|u| &u.target == target && u.last > oldest)
            .cloned()
    }

    /// Saves a record; an unconfirmed handshake with its target and secret
    /// is confirmed by it and forgotten.
    pub(crate) fn save(&mut self, record: StoredSecret) {
        self.unconfirmed.retain(|u| {
            !(u.handshake.target == record.target
                && same_secret(&u.handshake.secret, &record.secret))
        });
        self.records
            .retain(|r| match (&record.webhook_gid, &r.webhook_gid) {
                (Some(gid), Some(other)) if gid == other => false,
                _ => !(r.target == record.target && same_secret(&r.secret, &record.secret)),
            });
        self.records.push(record);
    }

    pub(crate) fn secrets_for(&self, target: &TargetKey) -> Vec<StoredSecret> {
        self.records
            .iter()
            .filter(|r| &r.target == target)
            .cloned()
            .collect()
    }

    pub(crate) fn by_gid(&self, gid: &str) -> Option<StoredSecret> {
        self.records
            .iter()
            .find(|r| r.webhook_gid.as_deref() == Some(gid))
            .cloned()
    }

    pub(crate) fn remove_gid(&mut self, gid: &str) -> Option<StoredSecret> {
        let index = self
            .records
            .iter()
            .position(|r| r.webhook_gid.as_deref() == Some(gid))?;
        Some(self.records.remove(index))
    }

    pub(crate) fn open_windows(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(secret: &str, hours_ago: i64) -> UnconfirmedHandshake {
        UnconfirmedHandshake {
            target: TargetKey::from_path_and_query("/a"),
            secret: HookSecret::new(secret),
            received_at: chrono::Utc::now() - chrono::Duration::hours(hours_ago),
        }
    }

    #[test]
    fn a_handshake_is_released_once_every_registration_it_may_belong_to_ended_cleanly() {
        let mut registry = Registry::default();
        let target = TargetKey::from_path_and_query("/a");
        let first = registry.open_registration(&target, Duration::from_secs(60));
        registry.record_unconfirmed(handshake("while-one", 0));
        let second = registry.open_registration(&target, Duration::from_secs(60));
        registry.record_unconfirmed(handshake("while-two", 0));
        let kept = |registry: &Registry| -> Vec<String> {
            registry
                .unconfirmed_for(&target)
                .iter()
                .map(|u| u.secret.expose().to_string())
                .collect()
        };
        // The first ends cleanly: what only it could have received goes;
        // what arrived while the second was open too stays for it.
        assert!(registry.release_unconfirmed(&first));
        assert_eq!(kept(&registry), ["while-two"]);
        assert!(
            !registry.release_unconfirmed(&first),
            "nothing more to release"
        );
        assert!(registry.release_unconfirmed(&second));
        assert!(kept(&registry).is_empty());
        // An entry written before entries were tied is never released.
        registry.unconfirmed.push(UnconfirmedEntry {
            handshake: handshake("untied", 0),
            registrations: Vec::new(),
        });
        let third = registry.open_registration(&target, Duration::from_secs(60));
        assert!(!registry.release_unconfirmed(&third));
        assert_eq!(kept(&registry), ["untied"]);
    }

    #[test]
    fn unconfirmed_handshakes_are_kept_a_day_and_forgotten_when_saved() {
        let mut registry = Registry::default();
        registry.record_unconfirmed(handshake("old", 26));
        registry.record_unconfirmed(handshake("recent", 1));
        let target = TargetKey::from_path_and_query("/a");
        let kept: Vec<String> = registry
            .unconfirmed_for(&target)
            .iter()
            .map(|u| u.secret.expose().to_string())
            .collect();
        assert_eq!(kept, ["recent"], "older than 25 hours: dropped");
        registry.save(StoredSecret::new(
            target.clone(),
            "1",
            HookSecret::new("recent"),
        ));
        assert!(registry.unconfirmed_for(&target).is_empty());
    }
}
