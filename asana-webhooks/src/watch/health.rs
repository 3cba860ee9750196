//! Classifying one webhook's health from Asana's bookkeeping and the
//! receiver's own records. Pure: every rule is tested here without Asana.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::operations::Webhook;

/// Asana sends a heartbeat to every webhook this often (facts: at the
/// handshake and every 8 hours).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(8 * 3600);

/// The thresholds of the classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPolicy {
    /// A webhook whose `failure_deletion_timestamp` is this close is about
    /// to be deleted (default 12 hours: half of Asana's 24-hour window).
    pub deletion_horizon: Duration,
    /// A webhook from which nothing was seen for this long, although Asana
    /// says it is active, is silent (default: the heartbeat interval plus
    /// one hour).
    pub silence_after: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            deletion_horizon: Duration::from_secs(12 * 3600),
            silence_after: HEARTBEAT_INTERVAL + Duration::from_secs(3600),
        }
    }
}

/// Where a webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthState {
    /// Asana delivers and the receiver hears from it.
    Healthy,
    /// Asana's deliveries fail and it is retrying them.
    Failing,
    /// Asana will delete it soon unless a delivery succeeds.
    AboutToBeDeleted,
    /// Asana says it is active, yet nothing (not even a heartbeat) reached
    /// the receiver for longer than heartbeats allow.
    Silent,
    /// Asana no longer has it (deleted after a day of failures, or by
    /// someone): no event is sent any more.
    Gone,
    /// It delivers to one of this receiver's targets, but its secret is not
    /// stored: none of its deliveries can be verified.
    UnknownSecret,
}

impl HealthState {
    /// Every state.
    pub(crate) const ALL: [HealthState; 6] = [
        HealthState::Healthy,
        HealthState::Failing,
        HealthState::AboutToBeDeleted,
        HealthState::Silent,
        HealthState::Gone,
        HealthState::UnknownSecret,
    ];

    /// Its name in JSON, and its label value in [`crate::metrics`].
    pub(crate) fn label(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Failing => "failing",
            HealthState::AboutToBeDeleted => "about_to_be_deleted",
            HealthState::Silent => "silent",
            HealthState::Gone => "gone",
            HealthState::UnknownSecret => "unknown_secret",
        }
    }

    /// Whether an operator must act (or the watch repairs it).
    pub fn is_bad(self) -> bool {
        !matches!(self, HealthState::Healthy)
    }

    /// What to do about it, in one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            HealthState::Healthy => "nothing to do",
            HealthState::Failing => {
                "the target answers Asana with errors or cannot be reached: read last_failure_content and fix the receiver before Asana deletes the webhook"
            }
            HealthState::AboutToBeDeleted => {
                "Asana deletes the webhook at failure_deletion_timestamp unless a delivery succeeds: fix the receiver now; events after that are lost until it is re-created"
            }
            HealthState::Silent => {
                "no heartbeat reached this receiver: check that Asana can reach the target (DNS, TLS, firewall, load balancer) and that this instance records heartbeats"
            }
            HealthState::Gone => {
                "Asana deleted the webhook: re-create it (the watch does, when asked to) and catch up the events of the gap"
            }
            HealthState::UnknownSecret => {
                "its deliveries can never be verified: delete it and create it again through the handshake"
            }
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthState::Healthy => "healthy",
            HealthState::Failing => "failing",
            HealthState::AboutToBeDeleted => "about to be deleted",
            HealthState::Silent => "silent",
            HealthState::Gone => "gone",
            HealthState::UnknownSecret => "unknown secret",
        })
    }
}

/// What the receiver itself knows of a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeenHere {
    /// Whether its secret is stored.
    pub secret_stored: bool,
    /// When a verified heartbeat or delivery of it last arrived.
    pub last_seen: Option<DateTime<Utc>>,
    /// Whether `last_seen` is known at all (an inbox records heartbeats).
    /// Without it, Asana's `last_success_at` stands in: a webhook is then
    /// silent only when Asana itself delivered nothing for that long.
    pub tracks_heartbeats: bool,
}

/// Now, on both clocks: Asana's times (retries, deletion, creation) are
/// compared with Asana's clock (the `Date` of its answer), the receiver's
/// (`last_seen`) with this machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    /// Asana's clock.
    pub asana: DateTime<Utc>,
    /// This machine's clock.
    pub local: DateTime<Utc>,
}

impl Clocks {
    /// Both clocks at one instant that they agree on.
    pub fn agreeing(now: DateTime<Utc>) -> Self {
        Self {
            asana: now,
            local: now,
        }
    }
}

/// Classifies a webhook. `at_asana` is Asana's record, `None` when Asana
/// no longer has it. Returns the state and the facts that led to it.
pub fn classify(
    at_asana: Option<&Webhook>,
    here: SeenHere,
    now: Clocks,
    policy: &HealthPolicy,
) -> (HealthState, String) {
    let Some(webhook) = at_asana else {
        return (
            HealthState::Gone,
            "Asana no longer lists it or answers 404 for it".into(),
        );
    };
    if !here.secret_stored {
        return (
            HealthState::UnknownSecret,
            "it delivers to this receiver's target but its secret is not stored".into(),
        );
    }
    let horizon =
        chrono::Duration::from_std(policy.deletion_horizon).unwrap_or(chrono::Duration::MAX);
    if let Some(deletion) = webhook.failure_deletion_timestamp
        && deletion <= now.asana + horizon
    {
        return (
            HealthState::AboutToBeDeleted,
            format!(
                "Asana deletes it at {deletion} ({} retries so far){}",
                webhook.delivery_retry_count.unwrap_or(0),
                last_failure(webhook)
            ),
        );
    }
    let failed_last = match (webhook.last_failure_at, webhook.last_success_at) {
        (Some(failure), Some(success)) => failure > success,
        (Some(_), None) => true,
        _ => false,
    };
    if webhook.delivery_retry_count.unwrap_or(0) > 0
        || webhook.failure_deletion_timestamp.is_some()
        || webhook.active == Some(false)
        || failed_last && webhook.next_attempt_after.is_some()
    {
        return (
            HealthState::Failing,
            format!(
                "{} retries pending, next attempt {}{}",
                webhook.delivery_retry_count.unwrap_or(0),
                webhook
                    .next_attempt_after
                    .map_or("unknown".to_string(), |t| t.to_string()),
                last_failure(webhook)
            ),
        );
    }
    let silence = chrono::Duration::from_std(policy.silence_after).unwrap_or(chrono::Duration::MAX);
    // Without anything seen here, the webhook's creation is the baseline:
    // its first heartbeat comes at the handshake.
    let asana_baseline = if here.tracks_heartbeats {
        webhook.created_at
    } else {
        webhook.last_success_at.or(webhook.created_at)
    };
    let quiet_for = match (here.last_seen, asana_baseline) {
        (Some(seen), _) => Some((seen, now.local - seen)),
        (None, Some(since)) => Some((since, now.asana - since)),
        (None, None) => None,
    };
    if let Some((since, quiet)) = quiet_for
        && quiet > silence
    {
        return (
            HealthState::Silent,
            format!(
                "nothing seen here since {since}, although Asana says it is active (last success {})",
                webhook
                    .last_success_at
                    .map_or("never".to_string(), |t| t.to_string())
            ),
        );
    }
    (
        HealthState::Healthy,
        match here.last_seen {
            Some(seen) => format!("last seen here {seen}"),
            None => "active at Asana".into(),
        },
    )
}

fn last_failure(webhook: &Webhook) -> String {
    match (&webhook.last_failure_at, &webhook.last_failure_content) {
        (Some(at), Some(content)) => format!("; last failure at {at}: {}", excerpt(content)),
        (Some(at), None) => format!("; last failure at {at}"),
        _ => String::new(),
    }
}

/// The start of a failure's content: Asana keeps the target's answer, which
/// can be long.
fn excerpt(content: &str) -> String {
    let mut text: String = content.chars().take(200).collect();
    if text.len() < content.len() {
        text.push('…');
    }
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_are_the_json_names() {
        for state in HealthState::ALL {
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::from(state.label())
            );
        }
    }

    fn t(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + chrono::Duration::hours(hours)
    }

    fn webhook() -> Webhook {
        Webhook {
            gid: Some("1".into()),
            active: Some(true),
            created_at: Some(t(-100)),
            last_success_at: Some(t(-1)),
            ..Default::default()
        }
    }

    fn seen(hours: i64) -> SeenHere {
        SeenHere {
            secret_stored: true,
            last_seen: Some(t(hours)),
            tracks_heartbeats: true,
        }
    }

    fn state(webhook: Option<&Webhook>, here: SeenHere) -> HealthState {
        classify(
            webhook,
            here,
            Clocks::agreeing(t(0)),
            &HealthPolicy::default(),
        )
        .0
    }

    #[test]
    fn a_webhook_that_delivers_and_is_heard_is_healthy() {
        assert_eq!(state(Some(&webhook()), seen(-1)), HealthState::Healthy);
    }

    #[test]
    fn a_webhook_asana_no_longer_has_is_gone() {
        assert_eq!(state(None, seen(-1)), HealthState::Gone);
    }

    #[test]
    fn a_webhook_whose_secret_is_not_stored_cannot_be_verified() {
        let here = SeenHere::default();
        assert_eq!(state(Some(&webhook()), here), HealthState::UnknownSecret);
    }

    #[test]
    fn retries_pending_are_failing_with_the_last_failure() {
        let mut w = webhook();
        w.delivery_retry_count = Some(3);
        w.last_failure_at = Some(t(0));
        w.last_failure_content = Some("500 Internal Server Error\n\noops".into());
        w.next_attempt_after = Some(t(1));
        let (state, why) = classify(
            Some(&w),
            seen(-1),
            Clocks::agreeing(t(0)),
            &HealthPolicy::default(),
        );
        assert_eq!(state, HealthState::Failing);
        assert!(why.contains("3 retries pending"), "{why}");
        assert!(why.contains("500 Internal Server Error  oops"), "{why}");
        // Inactive at Asana is failing too.
        let inactive = Webhook {
            active: Some(false),
            ..webhook()
        };
        assert_eq!(state_of(&inactive), HealthState::Failing);
    }

    fn state_of(w: &Webhook) -> HealthState {
        state(Some(w), seen(-1))
    }

    #[test]
    fn a_deletion_within_the_horizon_is_about_to_be_deleted() {
        let horizon = HealthPolicy::default().deletion_horizon.as_secs() as i64 / 3600;
        let mut w = webhook();
        w.delivery_retry_count = Some(9);
        w.failure_deletion_timestamp = Some(t(horizon));
        assert_eq!(state_of(&w), HealthState::AboutToBeDeleted);
        // Further away: failing, not yet about to be deleted.
        w.failure_deletion_timestamp = Some(t(horizon + 1));
        assert_eq!(state_of(&w), HealthState::Failing);
    }

    #[test]
    fn nothing_seen_for_longer_than_heartbeats_allow_is_silent() {
        let silence = HealthPolicy::default().silence_after.as_secs() as i64 / 3600;
        assert_eq!(
            state(Some(&webhook()), seen(-silence)),
            HealthState::Healthy
        );
        assert_eq!(
            state(Some(&webhook()), seen(-silence - 1)),
            HealthState::Silent
        );
        // Never seen here: measured from its creation.
        let never = SeenHere {
            secret_stored: true,
            last_seen: None,
            tracks_heartbeats: true,
        };
        let young = Webhook {
            created_at: Some(t(-1)),
            ..webhook()
        };
        assert_eq!(state(Some(&young), never), HealthState::Healthy);
        assert_eq!(state(Some(&webhook()), never), HealthState::Silent);
        // Without heartbeat records, Asana's last success stands in.
        let untracked = SeenHere {
            tracks_heartbeats: false,
            ..never
        };
        assert_eq!(state(Some(&webhook()), untracked), HealthState::Healthy);
        let long_quiet = Webhook {
            last_success_at: Some(t(-silence - 1)),
            ..webhook()
        };
        assert_eq!(state(Some(&long_quiet), untracked), HealthState::Silent);
    }

    #[test]
    fn every_state_says_what_to_do() {
        for s in [
            HealthState::Healthy,
            HealthState::Failing,
            HealthState::AboutToBeDeleted,
            HealthState::Silent,
            HealthState::Gone,
            HealthState::UnknownSecret,
        ] {
            assert!(!s.advice().is_empty());
            assert_eq!(s.is_bad(), s != HealthState::Healthy);
        }
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    #[test]
    fn asanas_times_are_read_on_asanas_clock_and_ours_on_ours() {
        let local = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        // Asana's clock runs a day ahead of this machine's.
        let asana = local + chrono::Duration::hours(24);
        let now = Clocks { asana, local };
        let policy = HealthPolicy::default();
        let webhook = Webhook {
            gid: Some("1".into()),
            active: Some(true),
            created_at: Some(asana - chrono::Duration::hours(100)),
            delivery_retry_count: Some(5),
            failure_deletion_timestamp: Some(asana + chrono::Duration::hours(2)),
            ..Default::default()
        };
        let heard = SeenHere {
            secret_stored: true,
            last_seen: Some(local - chrono::Duration::minutes(5)),
            tracks_heartbeats: true,
        };
        // Two hours from deletion on Asana's clock (26 on ours).
        assert_eq!(
            classify(Some(&webhook), heard, now, &policy).0,
            HealthState::AboutToBeDeleted
        );
        // Heard five minutes ago on our clock: not silent, whatever
        // Asana's clock says.
        let healthy = Webhook {
            delivery_retry_count: None,
            failure_deletion_timestamp: None,
            ..webhook
        };
        assert_eq!(
            classify(Some(&healthy), heard, now, &policy).0,
            HealthState::Healthy
        );
    }
}
