//! The Events API's side of the sandbox: every event it emits is recorded
//! in the stream of its resource and of each ancestor the Events API can
//! follow (as deliveries reach webhooks on ancestors), kept for 24 sandbox
//! hours, and read through signed sync tokens that expire 24 sandbox hours
//! after they were handed out. Pure; the state holds the streams behind a
//! lock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::failure::Failure;
use super::offsets;
use crate::hook_secret::HookSecret;

/// How long an event stays in its streams, and how long a sync token is
/// valid after it was handed out.
pub(crate) const KEPT: Duration = Duration::from_secs(24 * 3600);
/// Events per answer at most, as Asana limits a sync token to 100.
pub(crate) const PAGE: usize = 100;
/// Events a stream keeps at most, whatever their age: the oldest go
/// first, and a token that had not read them gets a 412, as after 24 h.
pub(crate) const MAX_KEPT: usize = 50_000;

/// Asana's message with every 412 of getEvents.
pub(crate) const SYNC_INVALID: &str = "Sync token invalid or too old. If you are attempting to keep resources in sync, you must fetch the full dataset for this query now and use the new sync token for the next sync.";

/// The opt_fields an Events API answer can select.
const EVENT_FIELDS: &[&str] = &[
    "action",
    "change",
    "change.action",
    "change.added_value",
    "change.field",
    "change.new_value",
    "change.removed_value",
    "created_at",
    "parent",
    "parent.name",
    "resource",
    "resource.name",
    "type",
    "user",
    "user.name",
];

/// One recorded event: its place in the sandbox's order of emission, when
/// it happened, and the event as the Events API returns it.
#[derive(Debug, Clone)]
struct Recorded {
    seq: u64,
    at: DateTime<Utc>,
    event: Arc<Value>,
}

/// The events of one resource, oldest first.
#[derive(Debug, Default)]
struct Stream {
    events: VecDeque<Recorded>,
    /// The `seq` of the last event that left the stream (too old, or one
    /// too many): a token that had not read up to it missed events.
    lost_through: u64,
}

/// Every resource's stream.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// The `seq` of the last event recorded (0: none yet).
    head: u64,
    streams: HashMap<String, Stream>,
}

/// What a valid sync token returns.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page {
    /// The events after the token, oldest first, at most [`PAGE`].
    pub(crate) events: Vec<Arc<Value>>,
    /// Where the next token continues: after the last of `events`.
    pub(crate) position: u64,
    /// More events wait after `events`.
    pub(crate) has_more: bool,
}

impl Streams {
    /// The position a fresh token starts at: after every event so far.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Records `event`, happening at `at`, in the streams of `followers`.
    pub(crate) fn record<'a>(
        &mut self,
        followers: impl IntoIterator<Item = &'a str>,
        event: Value,
        at: DateTime<Utc>,
    ) {
        self.prune(at);
        self.head += 1;
        let recorded = Recorded {
            seq: self.head,
            at,
            event: Arc::new(event),
        };
        for gid in followers {
            let stream = self.streams.entry(gid.to_string()).or_default();
            stream.events.push_back(recorded.clone());
            if stream.events.len() > MAX_KEPT
                && let Some(gone) = stream.events.pop_front()
            {
                stream.lost_through = gone.seq;
            }
        }
    }

    /// Forgets the events older than [`KEPT`] at `now`.
    fn prune(&mut self, now: DateTime<Utc>) {
        let oldest = now - chrono::Duration::from_std(KEPT).expect("24 hours");
        for stream in self.streams.values_mut() {
            while stream.events.front().is_some_and(|e| e.at < oldest) {
                let gone = stream.events.pop_front().expect("a front event");
                stream.lost_through = gone.seq;
            }
        }
    }

    /// The events of `resource`'s stream after `position`, or `None` when
    /// some of them are gone (the token is too old for this stream).
    pub(crate) fn read(
        &mut self,
        resource: &str,
        position: u64,
        now: DateTime<Utc>,
    ) -> Option<Page> {
        self.prune(now);
        let Some(stream) = self.streams.get(resource) else {
            return Some(Page {
                events: Vec::new(),
                position,
                has_more: false,
            });
        };
        if position < stream.lost_through {
            return None;
        }
        // Events are in `seq` order: the first after `position` is found
        // by bisection.
        let start = stream.events.partition_point(|e| e.seq <= position);
        let end = (start + PAGE).min(stream.events.len());
        let events: Vec<&Recorded> = stream.events.range(start..end).collect();
        Some(Page {
            position: events.last().map_or(position, |e| e.seq),
            events: events.iter().map(|e| Arc::clone(&e.event)).collect(),
            has_more: end < stream.events.len(),
        })
    }
}

/// A sync token for `resource` continuing after `position`, handed out at
/// `now`: sealed like page offsets, so that it can be neither forged nor
/// moved to another resource.
pub(crate) fn encode_sync(
    key: &HookSecret,
    resource: &str,
    position: u64,
    now: DateTime<Utc>,
) -> String {
    offsets::seal(
        key,
        &format!("sync:{position}:{}:{resource}", now.timestamp_millis()),
    )
}

/// The position in `token`, if `key` sealed it for `resource` no longer
/// than [`KEPT`] before `now`; `None` for anything else (unknown, forged,
/// for another resource, expired).
pub(crate) fn decode_sync(
    key: &HookSecret,
    token: &str,
    resource: &str,
    now: DateTime<Utc>,
) -> Option<u64> {
    let payload = offsets::open(key, token)?;
    let mut parts = payload.splitn(4, ':');
    let (Some("sync"), Some(position), Some(issued), Some(for_resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let issued = DateTime::from_timestamp_millis(issued.parse().ok()?)?;
    let kept = chrono::Duration::from_std(KEPT).expect("24 hours");
    (for_resource == resource && now - issued <= kept)
        .then(|| position.parse().ok())
        .flatten()
}

/// The 412 body: Asana's message and a fresh token.
pub(crate) fn sync_expired(sync: &str) -> Value {
    json!({"errors": [{"message": SYNC_INVALID}], "sync": sync})
}

/// Parses comma-joined (or repeated) opt_fields of getEvents and refuses
/// unknown ones.
pub(crate) fn opt_fields(values: &[String]) -> Result<Vec<String>, Failure> {
    let mut fields = Vec::new();
    for field in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        if !EVENT_FIELDS.contains(&field) {
            return Err(Failure::new(
                400,
                format!("opt_fields: Unknown field: {field}"),
            ));
        }
        fields.push(field.to_string());
    }
    Ok(fields)
}

/// `event` as `fields` select it: whole without any; otherwise only the
/// fields named, an object (user, resource, parent) as its compact
/// `{gid, resource_type}` plus the sub-fields named (`resource.name`),
/// `change` whole or with the sub-fields named.
pub(crate) fn select(event: &Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return event.clone();
    }
    let mut out = Map::new();
    for field in fields {
        let (top, sub) = match field.split_once('.') {
            Some((top, sub)) => (top, Some(sub)),
            None => (field.as_str(), None),
        };
        let Some(value) = event.get(top) else {
            continue;
        };
        match (top, value) {
            ("user" | "resource" | "parent", Value::Object(object)) => {
                let entry = out.entry(top).or_insert_with(|| {
                    let compact: Map<String, Value> = object
                        .iter()
                        .filter(|(k, _)| matches!(k.as_str(), "gid" | "resource_type"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    Value::Object(compact)
                });
                if let Some(sub) = sub
                    && let Some(v) = object.get(sub)
                {
                    entry[sub] = v.clone();
                }
            }
            ("change", Value::Object(change)) => match sub {
                None => {
                    out.insert(top.into(), value.clone());
                }
                Some(sub) => {
                    let entry = out.entry(top).or_insert_with(|| json!({}));
                    if let Some(v) = change.get(sub) {
                        entry[sub] = v.clone();
                    }
                }
            },
            _ => {
                out.insert(top.into(), value.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> HookSecret {
        HookSecret::new("0123456789abcdef0123456789abcdef")
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    const DAY: i64 = 24 * 3600;

    fn numbers(page: &Page) -> Vec<i64> {
        page.events
            .iter()
            .map(|e| e["n"].as_i64().unwrap())
            .collect()
    }

    #[test]
    fn a_stream_pages_through_its_events_100_at_a_time_in_order() {
        let mut streams = Streams::default();
        let start = streams.head();
        for n in 0..250 {
            streams.record(["task", "project"], json!({"n": n}), at(n));
        }
        let mut position = start;
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        for _ in 0..10 {
            let page = streams.read("task", position, at(300)).unwrap();
            sizes.push(page.events.len());
            seen.extend(numbers(&page));
            position = page.position;
            if !page.has_more {
                break;
            }
        }
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(seen, (0..250).collect::<Vec<_>>());
        // The same token again gives the same answer; the last one nothing.
        let again = streams.read("task", start, at(300)).unwrap();
        assert_eq!(numbers(&again), (0..100).collect::<Vec<_>>());
        let done = streams.read("task", position, at(300)).unwrap();
        assert!(done.events.is_empty() && !done.has_more);
        assert_eq!(done.position, position);
        // The project's stream has them too; another resource's none.
        let project = streams.read("project", start, at(300)).unwrap();
        assert_eq!(project.events.len(), 100);
        let other = streams.read("other", start, at(300)).unwrap();
        assert!(other.events.is_empty() && !other.has_more);
    }

    #[test]
    fn events_after_a_position_only() {
        let mut streams = Streams::default();
        streams.record(["a"], json!({"n": 1}), at(0));
        streams.record(["b"], json!({"n": 2}), at(1));
        let position = streams.head();
        streams.record(["a"], json!({"n": 3}), at(2));
        let page = streams.read("a", position, at(3)).unwrap();
        assert_eq!(numbers(&page), [3]);
        assert_eq!(streams.read("b", position, at(3)).unwrap().events.len(), 0);
    }

    #[test]
    fn events_older_than_a_day_are_gone_and_a_token_that_missed_them_is_refused() {
        let mut streams = Streams::default();
        let start = streams.head();
        streams.record(["a"], json!({"n": 1}), at(0));
        let after_first = streams.head();
        streams.record(["a"], json!({"n": 2}), at(DAY / 2));
        // A day later the first is gone; a token past it still reads on.
        let later = streams.read("a", after_first, at(DAY + 1)).unwrap();
        assert_eq!(numbers(&later), [2]);
        // A token before it missed it: refused.
        assert_eq!(streams.read("a", start, at(DAY + 1)), None);
    }

    #[test]
    fn a_full_stream_forgets_its_oldest_events() {
        let mut streams = Streams::default();
        let start = streams.head();
        for n in 0..=MAX_KEPT as i64 {
            streams.record(["a"], json!({"n": n}), at(0));
        }
        assert_eq!(streams.read("a", start, at(0)), None);
        let page = streams.read("a", start + 1, at(0)).unwrap();
        assert_eq!(numbers(&page)[0], 1);
    }

    #[test]
    fn sync_tokens_are_sealed_bound_to_their_resource_and_expire() {
        let token = encode_sync(&key(), "123", 42, at(0));
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(decode_sync(&key(), &token, "123", at(0)), Some(42));
        assert_eq!(decode_sync(&key(), &token, "123", at(DAY)), Some(42));
        assert_eq!(decode_sync(&key(), &token, "123", at(DAY + 1)), None);
        assert_eq!(decode_sync(&key(), &token, "124", at(0)), None);
        let other_key = encode_sync(&HookSecret::new("another"), "123", 42, at(0));
        assert_eq!(decode_sync(&key(), &other_key, "123", at(0)), None);
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert_eq!(decode_sync(&key(), &forged, "123", at(0)), None);
        // A page offset is no sync token, and a stranger's token neither.
        let offset = offsets::encode(&key(), 42, at(0));
        assert_eq!(decode_sync(&key(), &offset, "123", at(0)), None);
        for stranger in ["", "de4774f6915eae04714ca93bb2f5ee81", "ééé", "sync"] {
            assert_eq!(decode_sync(&key(), stranger, "123", at(0)), None);
        }
        // A resource with colons stays whole.
        let odd = encode_sync(&key(), "1:2", 7, at(0));
        assert_eq!(decode_sync(&key(), &odd, "1:2", at(0)), Some(7));
    }

    #[test]
    fn opt_fields_are_the_event_fields() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            opt_fields(&strings(&["action, resource.name", "change.new_value"])),
            Ok(strings(&["action", "resource.name", "change.new_value"]))
        );
        assert_eq!(
            opt_fields(&strings(&["action,target"])),
            Err(Failure::new(400, "opt_fields: Unknown field: target"))
        );
    }

    #[test]
    fn select_keeps_what_opt_fields_name() {
        let event = json!({
            "user": {"gid": "5", "resource_type": "user", "name": "U"},
            "created_at": "2023-11-14T22:13:20.123Z",
            "action": "changed",
            "resource": {"gid": "4", "resource_type": "task", "resource_subtype": "default_task", "name": "T"},
            "parent": null,
            "type": "task",
            "change": {"field": "assignee", "action": "changed", "new_value": {"gid": "5", "resource_type": "user"}},
        });
        let fields = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(select(&event, &[]), event);
        assert_eq!(
            select(
                &event,
                &fields(&[
                    "action",
                    "resource.name",
                    "user",
                    "change.new_value",
                    "parent"
                ])
            ),
            json!({
                "action": "changed",
                "resource": {"gid": "4", "resource_type": "task", "name": "T"},
                "user": {"gid": "5", "resource_type": "user"},
                "change": {"new_value": {"gid": "5", "resource_type": "user"}},
                "parent": null,
            })
        );
        assert_eq!(
            select(&event, &fields(&["change", "created_at", "type"])),
            json!({"change": event["change"], "created_at": event["created_at"], "type": "task"})
        );
        let added = json!({"action": "added", "parent": {"gid": "3", "resource_type": "project", "name": "P"}});
        assert_eq!(
            select(&added, &fields(&["parent.name", "change.field"])),
            json!({"parent": {"gid": "3", "resource_type": "project", "name": "P"}})
        );
    }
}
