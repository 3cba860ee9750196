//! The recovery decision: which echoed handshake, if any, carries the
//! secret of a webhook whose 201 answer never reached this process.
//!
//! Pure: it looks only at times and records, so every branch is tested
//! here without Asana, a store or a clock. Two paths use it:
//!
//! - **after a restart** ([`super::CreateWithHandshake::ensure`]): the
//!   durable store's unconfirmed handshakes, each with the time it arrived;
//! - **after a lost 201** (the create's own task): the handshakes its
//!   registration collected, each known to have arrived while the
//!   registration was open.
//!
//! Asana's own handshake for a webhook always arrives while Asana creates
//! it, so it is among the handshakes near the webhook's `created_at`. When
//! exactly one is there, it is Asana's; a second one (a forgery, another
//! create) or handshakes that went unrecorded near that time (a flood)
//! make the secret impossible to tell, and nothing is trusted.

use chrono::{DateTime, Duration, Utc};

use crate::hook_secret::HookSecret;
use crate::secrets::{RECOVERY_MARGIN, UNCONFIRMED_KEPT_FOR, UNRECORDED_SPAN_STEP};

/// An echoed, unconfirmed handshake and when it arrived, on this machine's
/// clock: at some instant in `earliest..=latest` (one instant when the
/// store recorded it exactly).
#[derive(Debug, Clone)]
pub(crate) struct SeenHandshake {
    pub(crate) secret: HookSecret,
    pub(crate) earliest: DateTime<Utc>,
    pub(crate) latest: DateTime<Utc>,
}

impl SeenHandshake {
    /// A handshake recorded with the instant it arrived.
    pub(crate) fn at(secret: HookSecret, received_at: DateTime<Utc>) -> Self {
        Self {
            secret,
            earliest: received_at,
            latest: received_at,
        }
    }

    /// How far its arrival may have been from `t`, at the least.
    fn distance_to(&self, t: DateTime<Utc>) -> Duration {
        if t < self.earliest {
            self.earliest - t
        } else if t > self.latest {
            t - self.latest
        } else {
            Duration::zero()
        }
    }
}

/// What the decision looks at.
#[derive(Debug, Clone)]
pub(crate) struct RecoveryFacts {
    /// The webhook's `created_at`, on Asana's clock.
    pub(crate) created_at: DateTime<Utc>,
    /// Asana's clock minus this machine's (read from the `Date` of an
    /// answer); zero when unknown.
    pub(crate) clock_offset: Duration,
    /// The `Date` header's resolution (one second) and the time the answer
    /// took: how wrong `clock_offset` may be.
    pub(crate) offset_uncertainty: Duration,
    /// The target's echoed handshakes that no 201 confirmed.
    pub(crate) handshakes: Vec<SeenHandshake>,
    /// When handshakes beyond the store's limit arrived without being
    /// written down (first, last), if any did.
    pub(crate) unrecorded: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Now, on this machine's clock.
    pub(crate) now: DateTime<Utc>,
}

/// What the decision says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// This is the webhook's secret: store it.
    Store(HookSecret),
    /// No secret can be trusted for it.
    Refuse(Refusal),
}

/// Why no secret can be trusted; every reason concerns the handshakes near
/// the webhook's creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No unconfirmed handshake arrived near the webhook's creation: it was
    /// not created by a create this store saw (or its handshake is older
    /// than the store keeps them).
    NoHandshake,
    /// Several did: nobody can tell which one was Asana's.
    SeveralHandshakes(usize),
    /// Handshakes that went unrecorded (beyond the per-target limit)
    /// arrived near the webhook's creation: Asana's may be among them.
    UnrecordedHandshakes,
}

impl Refusal {
    /// A sentence for logs and errors.
    pub(crate) fn describe(self) -> String {
        match self {
            Refusal::NoHandshake => {
                "no unconfirmed handshake arrived when it was created".into()
            }
            Refusal::SeveralHandshakes(n) => {
                format!("{n} unconfirmed handshakes arrived when it was created, and nobody can tell which was Asana's")
            }
            Refusal::UnrecordedHandshakes => "handshakes beyond the store's limit went unrecorded when it was created (a flood?), and Asana's may be among them".into(),
        }
    }
}

/// Decides which secret, if any, is the webhook's.
///
/// The webhook's creation is moved onto this machine's clock with the
/// offset; a handshake counts as near it within [`RECOVERY_MARGIN`]. The
/// unrecorded span is distrusted wider, by the offset's uncertainty and the
/// step in which the span's end is recorded too:
/// distrust errs wide, trust errs narrow. Handshakes older than
/// [`UNCONFIRMED_KEPT_FOR`] are ignored, as stores forget them.
pub(crate) fn decide(facts: &RecoveryFacts) -> Recovery {
    let created_here = facts.created_at - facts.clock_offset;
    let margin = Duration::from_std(RECOVERY_MARGIN).expect("minutes fit");
    let kept_since = facts.now - Duration::from_std(UNCONFIRMED_KEPT_FOR).expect("hours fit");
    if let Some((first, last)) = facts.unrecorded {
        // The span's end is recorded in steps: it may be a step late.
        let step = Duration::from_std(UNRECORDED_SPAN_STEP).expect("seconds fit");
        let wide = margin + facts.offset_uncertainty + step;
        if last >= kept_since && first - wide <= created_here && created_here <= last + wide {
            return Recovery::Refuse(Refusal::UnrecordedHandshakes);
        }
    }
    let near: Vec<&SeenHandshake> = facts
        .handshakes
        .iter()
        .filter(|h| h.latest >= kept_since)
        .filter(|h| h.distance_to(created_here) <= margin)
        .collect();
    match near.as_slice() {
        [] => Recovery::Refuse(Refusal::NoHandshake),
        [only] => Recovery::Store(only.secret.clone()),
        several => Recovery::Refuse(Refusal::SeveralHandshakes(several.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn secret(s: &str) -> HookSecret {
        HookSecret::new(s)
    }

    /// A webhook created at t(0) on Asana's clock, both clocks agreeing,
    /// looked at a minute later, with these handshakes.
    fn facts(handshakes: Vec<SeenHandshake>) -> RecoveryFacts {
        RecoveryFacts {
            created_at: t(0),
            clock_offset: Duration::zero(),
            offset_uncertainty: Duration::seconds(1),
            handshakes,
            unrecorded: None,
            now: t(60),
        }
    }

    fn margin() -> i64 {
        RECOVERY_MARGIN.as_secs() as i64
    }

    #[test]
    fn one_handshake_inside_the_margin_is_the_secret() {
        let decided = decide(&facts(vec![SeenHandshake::at(secret("asana"), t(-2))]));
        assert_eq!(decided, Recovery::Store(secret("asana")));
        // At the very edge of the margin, on either side, it still counts.
        for edge in [-margin(), margin()] {
            let decided = decide(&facts(vec![SeenHandshake::at(secret("asana"), t(edge))]));
            assert_eq!(decided, Recovery::Store(secret("asana")), "at {edge} s");
        }
    }

    #[test]
    fn two_handshakes_inside_the_margin_are_refused() {
        let decided = decide(&facts(vec![
            SeenHandshake::at(secret("forged"), t(-30)),
            SeenHandshake::at(secret("asana"), t(-1)),
        ]));
        assert_eq!(decided, Recovery::Refuse(Refusal::SeveralHandshakes(2)));
    }

    #[test]
    fn one_handshake_beside_an_unrecorded_span_is_refused() {
        let mut f = facts(vec![SeenHandshake::at(secret("forged"), t(-1))]);
        // The flood ended just before the margin (and the `Date`
        // uncertainty) around the creation: still too near.
        f.unrecorded = Some((t(-3_600), t(-margin() - 1)));
        assert_eq!(decide(&f), Recovery::Refuse(Refusal::UnrecordedHandshakes));
        // A flood an hour before is far enough.
        f.unrecorded = Some((t(-7_200), t(-3_600)));
        assert_eq!(decide(&f), Recovery::Store(secret("forged")));
    }

    #[test]
    fn one_handshake_outside_the_margin_is_not_the_secret() {
        for when in [-margin() - 1, margin() + 1, -86_400] {
            let decided = decide(&facts(vec![SeenHandshake::at(secret("old"), t(when))]));
            assert_eq!(
                decided,
                Recovery::Refuse(Refusal::NoHandshake),
                "at {when} s"
            );
        }
        // One outside beside one inside: the inside one is the secret.
        let decided = decide(&facts(vec![
            SeenHandshake::at(secret("old"), t(-margin() - 60)),
            SeenHandshake::at(secret("asana"), t(1)),
        ]));
        assert_eq!(decided, Recovery::Store(secret("asana")));
    }

    #[test]
    fn asana_clock_ahead_is_corrected_by_the_offset() {
        // Asana's clock runs 20 minutes ahead: its created_at reads t(1200)
        // for what is t(0) here, where the handshake arrived.
        let mut f = facts(vec![SeenHandshake::at(secret("asana"), t(0))]);
        f.created_at = t(1_200);
        f.clock_offset = Duration::seconds(1_200);
        assert_eq!(decide(&f), Recovery::Store(secret("asana")));
        // Without the correction the handshake would be 20 minutes off.
        f.clock_offset = Duration::zero();
        assert_eq!(decide(&f), Recovery::Refuse(Refusal::NoHandshake));
    }

    #[test]
    fn asana_clock_behind_is_corrected_by_the_offset() {
        // A forged handshake at t(0) here, Asana's at t(-900); Asana's
        // clock runs 15 minutes behind, so its created_at reads t(-1800).
        let mut f = facts(vec![
            SeenHandshake::at(secret("forged"), t(0)),
            SeenHandshake::at(secret("asana"), t(-900)),
        ]);
        f.created_at = t(-1_800);
        f.clock_offset = Duration::seconds(-900);
        assert_eq!(decide(&f), Recovery::Store(secret("asana")));
        // Read without the offset, neither is near t(-1800): refused.
        f.clock_offset = Duration::zero();
        assert_eq!(decide(&f), Recovery::Refuse(Refusal::NoHandshake));
    }

    #[test]
    fn entries_older_than_the_retention_are_ignored() {
        let kept = UNCONFIRMED_KEPT_FOR.as_secs() as i64;
        // A webhook created just over the retention ago, its handshake
        // beside it: stores forget such entries, and so does the decision.
        let mut f = facts(vec![SeenHandshake::at(secret("asana"), t(0))]);
        f.now = t(kept + 1);
        assert_eq!(decide(&f), Recovery::Refuse(Refusal::NoHandshake));
        f.now = t(kept - 1);
        assert_eq!(decide(&f), Recovery::Store(secret("asana")));
        // An old unrecorded span no longer blocks.
        let mut f = facts(vec![SeenHandshake::at(secret("asana"), t(kept + 10))]);
        f.created_at = t(kept + 10);
        f.now = t(kept + 20);
        f.unrecorded = Some((t(kept + 5), t(kept + 6)));
        assert_eq!(decide(&f), Recovery::Refuse(Refusal::UnrecordedHandshakes));
        f.unrecorded = Some((t(-10), t(5)));
        f.created_at = t(0);
        f.handshakes = vec![SeenHandshake::at(secret("late"), t(100))];
        // The span ended more than the retention before now: ignored.
        assert_eq!(decide(&f), Recovery::Store(secret("late")));
    }

    #[test]
    fn handshakes_known_only_by_their_registration_window() {
        // The lost-201 path: a registration open from t(-10) to t(140)
        // collected one handshake.
        let within = |s: &str| SeenHandshake {
            secret: secret(s),
            earliest: t(-10),
            latest: t(140),
        };
        // Its webhook, created during the registration: stored.
        assert_eq!(
            decide(&facts(vec![within("asana")])),
            Recovery::Store(secret("asana"))
        );
        // A stale webhook of the same resource and target, created a day
        // earlier, with an attacker's handshake the only one in the
        // window: never stored.
        let mut stale = facts(vec![within("attacker")]);
        stale.created_at = t(-86_400);
        assert_eq!(decide(&stale), Recovery::Refuse(Refusal::NoHandshake));
        // Created a little before the window opened: still within the margin.
        let mut early = facts(vec![within("asana")]);
        early.created_at = t(-10 - margin());
        assert_eq!(decide(&early), Recovery::Store(secret("asana")));
        early.created_at = t(-11 - margin());
        assert_eq!(decide(&early), Recovery::Refuse(Refusal::NoHandshake));
    }
}
