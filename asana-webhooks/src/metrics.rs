//! Metrics, recorded through the [`metrics`](https://docs.rs/metrics)
//! facade: the library records, the application installs the exporter it
//! likes (Prometheus, StatsD, OpenTelemetry…). Without a recorder every
//! call is a no-op. Call [`describe`] once the recorder is installed, so
//! that exporters that show help texts and units have them.
//!
//! Every name and label is defined here and nowhere else. Label values
//! come from fixed sets (an enum's variants, a generated operation's id):
//! never a gid, a target or a URL, so the number of series stays bounded.
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `asana_webhooks_deliveries_total` | counter | `outcome`: `accepted`, `duplicate`, `heartbeat` | verified deliveries answered 200: with new events, with repeats only, or a heartbeat |
//! | `asana_webhooks_deliveries_refused_total` | counter | `reason`: `method_not_allowed`, `too_large`, `unsigned`, `unknown_target`, `bad_signature`, `slow_body`, `unreadable_body`, `not_json` | deliveries answered 4xx |
//! | `asana_webhooks_deliveries_unavailable_total` | counter | `reason`: `store_unavailable`, `not_confirmed`, `inbox_full`, `inbox_failed`, `queue_full`, `queue_closed` | deliveries answered 503 (Asana delivers them again) |
//! | `asana_webhooks_events_total` | counter | `outcome`: `accepted`, `duplicate` | events of verified deliveries: committed, or dropped as repeats |
//! | `asana_webhooks_handshakes_total` | counter | `outcome`: `accepted`, `suspicious`, `outside_window`, `invalid_secret`, `no_registration`, `flooded`, `store_unavailable` | `X-Hook-Secret` handshakes received |
//! | `asana_webhooks_inbox_events` | gauge | `state`: `ready`, `retrying`, `in_flight`, `dead_letter` | events in the inbox |
//! | `asana_webhooks_inbox_bytes` | gauge | | bytes of events stored |
//! | `asana_webhooks_inbox_oldest_event_age_seconds` | gauge | | age of the oldest event not yet acknowledged; 0 when none |
//! | `asana_webhooks_inbox_lease_expiries_total` | counter | | hand-outs whose lease expired before an acknowledgement or release |
//! | `asana_webhooks_inbox_dead_letters_total` | counter | | events moved to the dead letters after their last attempt |
//! | `asana_webhooks_api_requests_total` | counter | `operation`, `status`: `2xx`, `3xx`, `4xx`, `5xx`, `error` | requests sent to Asana (each attempt), by answer class; `error`: no answer |
//! | `asana_webhooks_api_retries_total` | counter | `operation`, `reason`: `rate_limited`, `server_error`, `connection`, `timeout` | attempts sent again |
//! | `asana_webhooks_api_rate_limited_total` | counter | `operation` | 429 answers from Asana |
//! | `asana_webhooks_watched_webhooks` | gauge | `state`: `healthy`, `failing`, `about_to_be_deleted`, `silent`, `gone`, `unknown_secret` | webhooks per health state at the watch's last check |
//! | `asana_webhooks_watch_checks_total` | counter | `outcome`: `ok`, `failed` | health checks run by the watch |
//! | `asana_webhooks_repairs_total` | counter | `outcome`: `recreated`, `impossible`, `failed` | webhooks the watch tried to create again (another instance's repairs are not counted here) |
//! | `asana_webhooks_gaps_total` | counter | `cause`: `webhook_gone`, `unknown_secret_replaced`, `sync_token_expired` | gaps recorded by this process |
//! | `asana_webhooks_gaps_settled_total` | counter | `status`: `recovered`, `unrecoverable` | gaps whose events the catch-up recovered, or found it cannot |
//! | `asana_webhooks_catch_up_events_total` | counter | `outcome`: `added`, `duplicate` | events read from the Events API: new to the inbox, or delivered already |
//! | `asana_webhooks_catch_up_runs_total` | counter | `outcome`: `ok`, `not_followable`, `failed` | catch-ups of one resource |
//!
//! The three inbox gauges are set by `inbox::InboxStats::record_metrics`
//! (feature `receiver`): call it with `Inbox::stats` on a timer, or just
//! before each scrape, as `asana-webhooks listen --metrics-addr` does. The
//! counters are recorded where things happen.
//!
//! `operation` is the generated operation's name: `create_webhook`,
//! `delete_webhook`, `get_events`, `get_webhook`, `get_webhooks` or
//! `update_webhook`.

// The helpers of the receiver, the inbox and the watch go unused without
// the `receiver` feature.
#![cfg_attr(not(feature = "receiver"), allow(dead_code))]

use ::metrics::{Unit, counter, describe_counter, describe_gauge};

/// Verified deliveries answered 200, by `outcome`.
pub const DELIVERIES: &str = "asana_webhooks_deliveries_total";
/// Deliveries answered 4xx, by `reason`.
pub const DELIVERIES_REFUSED: &str = "asana_webhooks_deliveries_refused_total";
/// Deliveries answered 503, by `reason`.
pub const DELIVERIES_UNAVAILABLE: &str = "asana_webhooks_deliveries_unavailable_total";
/// Events of verified deliveries, by `outcome`.
pub const EVENTS: &str = "asana_webhooks_events_total";
/// Handshakes received, by `outcome`.
pub const HANDSHAKES: &str = "asana_webhooks_handshakes_total";
/// Events in the inbox, by `state`.
pub const INBOX_EVENTS: &str = "asana_webhooks_inbox_events";
/// Bytes of events stored in the inbox.
pub const INBOX_BYTES: &str = "asana_webhooks_inbox_bytes";
/// Age of the oldest event not yet acknowledged, in seconds.
pub const INBOX_OLDEST_AGE: &str = "asana_webhooks_inbox_oldest_event_age_seconds";
/// Hand-outs whose lease expired.
pub const INBOX_LEASE_EXPIRIES: &str = "asana_webhooks_inbox_lease_expiries_total";
/// Events moved to the dead letters.
pub const INBOX_DEAD_LETTERS: &str = "asana_webhooks_inbox_dead_letters_total";
/// Requests sent to Asana, by `operation` and `status`.
pub const API_REQUESTS: &str = "asana_webhooks_api_requests_total";
/// Attempts sent again, by `operation` and `reason`.
pub const API_RETRIES: &str = "asana_webhooks_api_retries_total";
/// 429 answers, by `operation`.
pub const API_RATE_LIMITED: &str = "asana_webhooks_api_rate_limited_total";
/// Webhooks per health state at the watch's last check.
pub const WATCHED_WEBHOOKS: &str = "asana_webhooks_watched_webhooks";
/// Webhooks the watch tried to create again, by `outcome`.
pub const REPAIRS: &str = "asana_webhooks_repairs_total";
/// Gaps recorded, by `cause`.
pub const GAPS: &str = "asana_webhooks_gaps_total";
/// Gaps settled by the catch-up, by `status`.
pub const GAPS_SETTLED: &str = "asana_webhooks_gaps_settled_total";
/// Events read from the Events API, by `outcome`.
pub const CATCH_UP_EVENTS: &str = "asana_webhooks_catch_up_events_total";
/// Catch-ups of one resource, by `outcome`.
pub const CATCH_UP_RUNS: &str = "asana_webhooks_catch_up_runs_total";
/// The label of a gap's cause.
pub const LABEL_CAUSE: &str = "cause";

/// Health checks run by the watch, by `outcome`.
pub const WATCH_CHECKS: &str = "asana_webhooks_watch_checks_total";

/// The label of outcomes.
pub const LABEL_OUTCOME: &str = "outcome";
/// The label of reasons.
pub const LABEL_REASON: &str = "reason";
/// The label of states.
pub const LABEL_STATE: &str = "state";
/// The label of Asana operations.
pub const LABEL_OPERATION: &str = "operation";
/// The label of answer classes.
pub const LABEL_STATUS: &str = "status";

/// Registers the help text and unit of every metric with the installed
/// recorder. Call it once, after installing the recorder.
pub fn describe() {
    describe_counter!(
        DELIVERIES,
        Unit::Count,
        "Verified deliveries answered 200: accepted (new events), duplicate (repeats only), heartbeat."
    );
    describe_counter!(
        DELIVERIES_REFUSED,
        Unit::Count,
        "Deliveries answered 4xx, by reason."
    );
    describe_counter!(
        DELIVERIES_UNAVAILABLE,
        Unit::Count,
        "Deliveries answered 503 (Asana delivers them again), by reason."
    );
    describe_counter!(
        EVENTS,
        Unit::Count,
        "Events of verified deliveries: accepted (committed) or duplicate (dropped as a repeat)."
    );
    describe_counter!(
        HANDSHAKES,
        Unit::Count,
        "X-Hook-Secret handshakes received, by outcome."
    );
    describe_gauge!(INBOX_EVENTS, Unit::Count, "Events in the inbox, by state.");
    describe_gauge!(
        INBOX_BYTES,
        Unit::Bytes,
        "Bytes of events stored in the inbox."
    );
    describe_gauge!(
        INBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest inbox event not yet acknowledged (0 when none)."
    );
    describe_counter!(
        INBOX_LEASE_EXPIRIES,
        Unit::Count,
        "Inbox hand-outs whose lease expired before an acknowledgement or release."
    );
    describe_counter!(
        INBOX_DEAD_LETTERS,
        Unit::Count,
        "Inbox events moved to the dead letters after their last attempt."
    );
    describe_counter!(
        API_REQUESTS,
        Unit::Count,
        "Requests sent to Asana (each attempt), by operation and answer class."
    );
    describe_counter!(
        API_RETRIES,
        Unit::Count,
        "Requests to Asana sent again, by operation and reason."
    );
    describe_counter!(
        API_RATE_LIMITED,
        Unit::Count,
        "429 answers from Asana, by operation."
    );
    describe_gauge!(
        WATCHED_WEBHOOKS,
        Unit::Count,
        "Webhooks per health state at the watch's last check."
    );
    describe_counter!(
        WATCH_CHECKS,
        Unit::Count,
        "Webhook health checks run by the watch, by outcome."
    );
    describe_counter!(
        REPAIRS,
        Unit::Count,
        "Webhooks the watch tried to create again: recreated, impossible (not stored as created), failed."
    );
    describe_counter!(GAPS, Unit::Count, "Gaps recorded, by cause.");
    describe_counter!(
        GAPS_SETTLED,
        Unit::Count,
        "Gaps the catch-up settled: recovered, or unrecoverable."
    );
    describe_counter!(
        CATCH_UP_EVENTS,
        Unit::Count,
        "Events read from the Events API: added (missed by the webhook) or duplicate."
    );
    describe_counter!(
        CATCH_UP_RUNS,
        Unit::Count,
        "Catch-ups of one resource: ok, not_followable, failed."
    );
}

/// Defines an enum of label values with their text.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(dead_code)]
        pub(crate) enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in order.
            #[allow(dead_code)]
            pub(crate) const ALL: &[Self] = &[$(Self::$variant,)+];

            /// The label value.
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }
    };
}

label_values!(
    /// A delivery answered 200.
    Delivered {
        Accepted => "accepted",
        Duplicate => "duplicate",
        Heartbeat => "heartbeat",
    }
);

label_values!(
    /// Why a delivery was answered 4xx.
    Refused {
        MethodNotAllowed => "method_not_allowed",
        TooLarge => "too_large",
        Unsigned => "unsigned",
        UnknownTarget => "unknown_target",
        BadSignature => "bad_signature",
        SlowBody => "slow_body",
        UnreadableBody => "unreadable_body",
        NotJson => "not_json",
    }
);

label_values!(
    /// Why a delivery was answered 503.
    Unavailable {
        SecretStore => "store_unavailable",
        NotConfirmed => "not_confirmed",
        InboxFull => "inbox_full",
        InboxFailed => "inbox_failed",
        QueueFull => "queue_full",
        QueueClosed => "queue_closed",
    }
);

label_values!(
    /// What became of a handshake.
    Handshake {
        Accepted => "accepted",
        Suspicious => "suspicious",
        OutsideWindow => "outside_window",
        InvalidSecret => "invalid_secret",
        NoRegistration => "no_registration",
        Flooded => "flooded",
        StoreUnavailable => "store_unavailable",
    }
);

label_values!(
    /// Why a request to Asana was sent again.
    Retry {
        RateLimited => "rate_limited",
        ServerError => "server_error",
        Connection => "connection",
        Timeout => "timeout",
    }
);

/// A delivery answered 200.
pub(crate) fn delivered(outcome: Delivered) {
    counter!(DELIVERIES, LABEL_OUTCOME => outcome.as_str()).increment(1);
}

/// Events committed and dropped as repeats.
pub(crate) fn events(accepted: usize, duplicates: usize) {
    if accepted > 0 {
        counter!(EVENTS, LABEL_OUTCOME => Delivered::Accepted.as_str()).increment(accepted as u64);
    }
    if duplicates > 0 {
        counter!(EVENTS, LABEL_OUTCOME => Delivered::Duplicate.as_str())
            .increment(duplicates as u64);
    }
}

/// A delivery answered 4xx.
pub(crate) fn refused(reason: Refused) {
    counter!(DELIVERIES_REFUSED, LABEL_REASON => reason.as_str()).increment(1);
}

/// A delivery answered 503.
pub(crate) fn unavailable(reason: Unavailable) {
    counter!(DELIVERIES_UNAVAILABLE, LABEL_REASON => reason.as_str()).increment(1);
}

/// A handshake and what became of it.
pub(crate) fn handshake(outcome: Handshake) {
    counter!(HANDSHAKES, LABEL_OUTCOME => outcome.as_str()).increment(1);
}

/// `n` inbox leases expired.
pub(crate) fn lease_expired(n: u64) {
    if n > 0 {
        counter!(INBOX_LEASE_EXPIRIES).increment(n);
    }
}

/// `n` inbox events moved to the dead letters.
pub(crate) fn dead_lettered(n: u64) {
    if n > 0 {
        counter!(INBOX_DEAD_LETTERS).increment(n);
    }
}

/// The answer class of one attempt: `2xx`…`5xx`, or `error` without one.
pub(crate) fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        // 1xx never reaches a client; anything else is not HTTP.
        _ => "error",
    }
}

/// One attempt sent to Asana, with its answer's status (`None`: none).
pub(crate) fn api_request(operation: &'static str, status: Option<u16>) {
    counter!(API_REQUESTS, LABEL_OPERATION => operation, LABEL_STATUS => status_class(status))
        .increment(1);
    if status == Some(429) {
        counter!(API_RATE_LIMITED, LABEL_OPERATION => operation).increment(1);
    }
}

/// An attempt about to be sent again.
pub(crate) fn api_retry(operation: &'static str, reason: Retry) {
    counter!(API_RETRIES, LABEL_OPERATION => operation, LABEL_REASON => reason.as_str())
        .increment(1);
}

/// Sets the inbox gauges (see `inbox::InboxStats::record_metrics`).
pub(crate) fn inbox_gauges(gauges: InboxGauges) {
    use ::metrics::gauge;
    for (state, value) in [
        ("ready", gauges.ready),
        ("retrying", gauges.retrying),
        ("in_flight", gauges.in_flight),
        ("dead_letter", gauges.dead_letters),
    ] {
        gauge!(INBOX_EVENTS, LABEL_STATE => state).set(value as f64);
    }
    gauge!(INBOX_BYTES).set(gauges.bytes as f64);
    gauge!(INBOX_OLDEST_AGE).set(gauges.oldest_age.as_secs_f64());
}

/// What the inbox gauges show.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct InboxGauges {
    pub(crate) ready: u64,
    pub(crate) retrying: u64,
    pub(crate) in_flight: u64,
    pub(crate) dead_letters: u64,
    pub(crate) bytes: u64,
    pub(crate) oldest_age: std::time::Duration,
}

/// Sets the per-state webhook gauge from a check: `counts` holds every
/// state's label value (so that one that empties drops to 0) and count.
pub(crate) fn watched_webhooks(counts: &[(&'static str, u64)]) {
    for (state, count) in counts {
        ::metrics::gauge!(WATCHED_WEBHOOKS, LABEL_STATE => *state).set(*count as f64);
    }
}

/// A watch check that succeeded or failed.
pub(crate) fn watch_check(ok: bool) {
    counter!(WATCH_CHECKS, LABEL_OUTCOME => if ok { "ok" } else { "failed" }).increment(1);
}

/// A repair's outcome: `recreated`, `impossible` or `failed`.
pub(crate) fn repair(outcome: &'static str) {
    counter!(REPAIRS, LABEL_OUTCOME => outcome).increment(1);
}

/// A gap recorded, by its cause's label.
pub(crate) fn gap(cause: &'static str) {
    counter!(GAPS, LABEL_CAUSE => cause).increment(1);
}

/// A gap settled: `recovered` or `unrecoverable`.
pub(crate) fn gap_settled(status: &'static str) {
    counter!(GAPS_SETTLED, LABEL_STATUS => status).increment(1);
}

/// One catch-up of a resource: its outcome, and the events it added and
/// found delivered already.
pub(crate) fn catch_up(outcome: &'static str, added: usize, duplicates: usize) {
    counter!(CATCH_UP_RUNS, LABEL_OUTCOME => outcome).increment(1);
    if added > 0 {
        counter!(CATCH_UP_EVENTS, LABEL_OUTCOME => "added").increment(added as u64);
    }
    if duplicates > 0 {
        counter!(CATCH_UP_EVENTS, LABEL_OUTCOME => "duplicate").increment(duplicates as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    /// A metric's name, sorted labels and value.
    type Sample = (String, Vec<(String, String)>, f64);

    /// Every (name, labels, value) recorded while `f` ran; a counter's
    /// value as a float.
    fn recorded(f: impl FnOnce()) -> Vec<Sample> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        ::metrics::with_local_recorder(&recorder, f);
        let mut all: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| {
                let key = key.key();
                let mut labels: Vec<(String, String)> = key
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect();
                labels.sort();
                let value = match value {
                    DebugValue::Counter(n) => n as f64,
                    DebugValue::Gauge(g) => g.into_inner(),
                    DebugValue::Histogram(_) => f64::NAN,
                };
                (key.name().to_string(), labels, value)
            })
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_values_are_snake_case_and_distinct() {
        let all: Vec<&str> = Refused::ALL
            .iter()
            .map(|r| r.as_str())
            .chain(Unavailable::ALL.iter().map(|r| r.as_str()))
            .chain(Retry::ALL.iter().map(|r| r.as_str()))
            .collect();
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "{all:?}");
        for group in [
            Delivered::ALL
                .iter()
                .map(|v| v.as_str())
                .collect::<Vec<_>>(),
            Handshake::ALL.iter().map(|v| v.as_str()).collect(),
            all,
        ] {
            for value in group {
                assert!(
                    value.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{value}"
                );
            }
        }
    }

    #[test]
    fn api_attempts_count_by_class_and_429s_apart() {
        let got = recorded(|| {
            api_request("get_webhooks", Some(200));
            api_request("get_webhooks", Some(429));
            api_request("get_webhooks", Some(429));
            api_request("create_webhook", None);
            api_retry("get_webhooks", Retry::RateLimited);
        });
        let counter = |name: &str, pairs: &[(&str, &str)]| {
            got.iter()
                .find(|(n, l, _)| n == name && *l == labels(pairs))
                .map(|(_, _, v)| *v)
        };
        assert_eq!(
            counter(
                API_REQUESTS,
                &[("operation", "get_webhooks"), ("status", "4xx")]
            ),
            Some(2.0)
        );
        assert_eq!(
            counter(
                API_REQUESTS,
                &[("operation", "create_webhook"), ("status", "error")]
            ),
            Some(1.0)
        );
        assert_eq!(
            counter(API_RATE_LIMITED, &[("operation", "get_webhooks")]),
            Some(2.0)
        );
        assert_eq!(
            counter(
                API_RETRIES,
                &[("operation", "get_webhooks"), ("reason", "rate_limited")]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn inbox_gauges_are_set_per_state() {
        let got = recorded(|| {
            inbox_gauges(InboxGauges {
                ready: 3,
                retrying: 2,
                dead_letters: 1,
                bytes: 700,
                oldest_age: std::time::Duration::from_millis(1500),
                ..InboxGauges::default()
            })
        });
        let value = |name: &str, pairs: &[(&str, &str)]| {
            got.iter()
                .find(|(n, l, _)| n == name && *l == labels(pairs))
                .map(|(_, _, v)| *v)
                .unwrap()
        };
        assert_eq!(value(INBOX_EVENTS, &[("state", "ready")]), 3.0);
        assert_eq!(value(INBOX_EVENTS, &[("state", "in_flight")]), 0.0);
        assert_eq!(value(INBOX_BYTES, &[]), 700.0);
        assert_eq!(value(INBOX_OLDEST_AGE, &[]), 1.5);
    }
}
