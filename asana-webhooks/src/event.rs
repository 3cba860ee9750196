//! Typed deliveries: what Asana POSTs to a webhook's target.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One delivery: `{"events": [...]}`. An empty list is a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The events, in no guaranteed order. A retried delivery may repeat
    /// events already seen.
    pub events: Vec<Event>,
}

impl Delivery {
    /// A heartbeat: Asana checks that the target is alive (at the handshake
    /// and every 8 hours). Answering it keeps the webhook from being deleted.
    pub fn is_heartbeat(&self) -> bool {
        self.events.is_empty()
    }
}

/// An event that does not decode into [`Event`] (Asana's payloads drift:
/// a field missing, null, or of another type). It is handed over as Asana
/// sent it rather than dropped: a delivery is never replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UndecodedEvent {
    /// The event's JSON as delivered (for a body that is JSON but has no
    /// `events` array: the whole body).
    pub raw: serde_json::Value,
    /// Why it did not decode.
    pub error: String,
}

/// A verified delivery, split into the events that decode and those that
/// do not. Built by [`parse_delivery`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedDelivery {
    /// The events that decode into [`Event`].
    pub events: Vec<Event>,
    /// The events (or the body) that do not, kept as sent.
    pub undecoded: Vec<UndecodedEvent>,
}

impl ParsedDelivery {
    /// A heartbeat: `{"events": []}`.
    pub fn is_heartbeat(&self) -> bool {
        self.events.is_empty() && self.undecoded.is_empty()
    }
}

/// Parses a verified delivery leniently: every event that decodes is
/// typed, every other one is kept as raw JSON with its decoding error, so
/// nothing a signed delivery carried is lost. Fails only when the body is
/// not JSON at all.
///
/// ```
/// let body = br#"{"events":[{"action":"added","created_at":null,"resource":{"gid":"1","resource_type":"task"}}]}"#;
/// let parsed = asana_webhooks::event::parse_delivery(body).unwrap();
/// assert!(parsed.events.is_empty());
/// assert_eq!(parsed.undecoded[0].raw["resource"]["gid"], "1");
/// ```
pub fn parse_delivery(body: &[u8]) -> Result<ParsedDelivery, serde_json::Error> {
    // The common case decodes in one pass; only a drifted body pays for
    // the event-by-event path.
    if let Ok(delivery) = serde_json::from_slice::<Delivery>(body) {
        return Ok(ParsedDelivery {
            events: delivery.events,
            undecoded: Vec::new(),
        });
    }
    let value: serde_json::Value = serde_json::from_slice(body)?;
    let mut parsed = ParsedDelivery::default();
    match value {
        serde_json::Value::Object(mut object)
            if object.get("events").is_some_and(|e| e.is_array()) =>
        {
            let Some(serde_json::Value::Array(events)) = object.remove("events") else {
                unreachable!("checked above")
            };
            for raw in events {
                match Event::deserialize(&raw) {
                    Ok(event) => parsed.events.push(event),
                    Err(e) => parsed.undecoded.push(UndecodedEvent {
                        raw,
                        error: e.to_string(),
                    }),
                }
            }
        }
        other => parsed.undecoded.push(UndecodedEvent {
            raw: other,
            error: "the delivery is JSON but not an object with an `events` array".into(),
        }),
    }
    Ok(parsed)
}

/// A change to a resource, as delivered to a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Who made the change; `None` for system events.
    #[serde(default)]
    pub user: Option<Resource>,
    /// The resource that changed.
    pub resource: Resource,
    /// For `added`/`removed`: what the resource was added to or removed from.
    #[serde(default)]
    pub parent: Option<Resource>,
    /// What happened to the resource.
    pub action: EventAction,
    /// When it happened.
    #[serde(deserialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// For `changed`: which field changed, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
}

/// A compact reference to an Asana object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Resource {
    /// Its globally unique identifier.
    pub gid: String,
    /// Its type: `task`, `project`, `story`, `user`, …
    pub resource_type: String,
    /// Its subtype, for example `default_task` or `milestone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_subtype: Option<String>,
    /// Its name; deliveries usually leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What happened to an event's resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventAction {
    /// A field of the resource changed (see [`Event::change`]).
    Changed,
    /// The resource was added to its parent.
    Added,
    /// The resource was removed from its parent.
    Removed,
    /// The resource was deleted.
    Deleted,
    /// The resource was restored after deletion.
    Undeleted,
    /// An action this crate does not know yet, kept as sent.
    Other(String),
}

impl EventAction {
    /// The action as Asana spells it.
    pub fn as_str(&self) -> &str {
        match self {
            EventAction::Changed => "changed",
            EventAction::Added => "added",
            EventAction::Removed => "removed",
            EventAction::Deleted => "deleted",
            EventAction::Undeleted => "undeleted",
            EventAction::Other(other) => other,
        }
    }
}

impl From<&str> for EventAction {
    fn from(value: &str) -> Self {
        match value {
            "changed" => EventAction::Changed,
            "added" => EventAction::Added,
            "removed" => EventAction::Removed,
            "deleted" => EventAction::Deleted,
            "undeleted" => EventAction::Undeleted,
            other => EventAction::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for EventAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventAction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventAction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor(|text: &str| Ok(EventAction::from(text))))
    }
}

/// Hands a string to `F` without copying it first (serde's `Cow<str>`
/// always allocates); deliveries are decoded on the receiver's hot path.
struct StrVisitor<F>(F);

impl<T, F: FnOnce(&str) -> Result<T, String>> serde::de::Visitor<'_> for StrVisitor<F> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
        (self.0)(text).map_err(E::custom)
    }
}

/// Parses Asana's RFC 3339 timestamps with chrono's dedicated RFC 3339
/// parser, faster than its general `FromStr` that serde would use.
fn rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    deserializer.deserialize_str(StrVisitor(|text: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("`{text}` is not an RFC 3339 timestamp: {e}"))
    }))
}

/// How a field of the resource changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The field, for example `assignee` or `due_on`.
    pub field: String,
    /// `changed`, `added` or `removed` (the field's value, not the resource).
    pub action: EventAction,
    /// The new value, for `changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_value: Option<serde_json::Value>,
    /// The value added to a list field, for `added`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_value: Option<serde_json::Value>,
    /// The value removed from a list field, for `removed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_value: Option<serde_json::Value>,
}

impl Change {
    /// The new value as a compact resource (`{gid, resource_type}`), when it is one.
    pub fn new_resource(&self) -> Option<Resource> {
        as_resource(self.new_value.as_ref())
    }

    /// The added value as a compact resource, when it is one.
    pub fn added_resource(&self) -> Option<Resource> {
        as_resource(self.added_value.as_ref())
    }

    /// The removed value as a compact resource, when it is one.
    pub fn removed_resource(&self) -> Option<Resource> {
        as_resource(self.removed_value.as_ref())
    }
}

fn as_resource(value: Option<&serde_json::Value>) -> Option<Resource> {
    serde_json::from_value(value?.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example delivery from Asana's documentation.
    const EXAMPLE: &str = r#"{"events":[{"user":{"gid":"1213537811762722","resource_type":"user"},"action":"added","parent":{"gid":"1211316915894850","resource_type":"section"},"resource":{"gid":"1234567890987654321","resource_type":"task","resource_subtype":"default_task"},"created_at":"2026-03-17T10:11:06.611Z"}]}"#;

    #[test]
    fn asanas_example_delivery_decodes() {
        let delivery: Delivery = serde_json::from_str(EXAMPLE).unwrap();
        assert!(!delivery.is_heartbeat());
        let event = &delivery.events[0];
        assert_eq!(event.action, EventAction::Added);
        assert_eq!(event.user.as_ref().unwrap().gid, "1213537811762722");
        assert_eq!(event.parent.as_ref().unwrap().resource_type, "section");
        assert_eq!(
            event.resource.resource_subtype.as_deref(),
            Some("default_task")
        );
        assert_eq!(
            event.created_at.to_rfc3339(),
            "2026-03-17T10:11:06.611+00:00"
        );
        assert!(event.change.is_none());
    }

    #[test]
    fn heartbeat_system_events_unknown_actions_and_fields() {
        let heartbeat: Delivery = serde_json::from_str(r#"{"events":[]}"#).unwrap();
        assert!(heartbeat.is_heartbeat());
        let body = r#"{"events":[{"user":null,"parent":null,"action":"reticulated","type":"task","new_key":1,
            "resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z",
            "change":{"field":"assignee","action":"changed","new_value":{"gid":"9","resource_type":"user"}}}]}"#;
        let delivery: Delivery = serde_json::from_str(body).unwrap();
        let event = &delivery.events[0];
        assert_eq!(event.user, None);
        assert_eq!(event.action, EventAction::Other("reticulated".into()));
        assert_eq!(event.action.as_str(), "reticulated");
        let change = event.change.as_ref().unwrap();
        assert_eq!(change.new_resource().unwrap().gid, "9");
        assert_eq!(change.added_resource(), None);
    }

    #[test]
    fn a_bad_timestamp_is_a_clear_decoding_error() {
        let body = r#"{"events":[{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":"yesterday"}]}"#;
        let err = serde_json::from_str::<Delivery>(body)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`yesterday` is not an RFC 3339 timestamp"),
            "{err}"
        );
        let offset = r#"{"events":[{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-03-17T12:11:06.611+02:00"}]}"#;
        let delivery: Delivery = serde_json::from_str(offset).unwrap();
        assert_eq!(
            delivery.events[0].created_at.to_rfc3339(),
            "2026-03-17T10:11:06.611+00:00"
        );
    }

    /// Shapes Asana's payloads have drifted into (or could): each must be
    /// handed over, never refused, and never take the good events with it.
    #[test]
    fn drifted_events_are_kept_raw_and_the_good_ones_still_decode() {
        let good = r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}"#;
        let drifted = [
            r#"{"action":"added","resource":{"gid":"1","resource_type":"task"}}"#,
            r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":null}"#,
            r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00"}"#,
            r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":1767225600}"#,
            r#"{"resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"action":"added","created_at":"2026-01-01T00:00:00Z"}"#,
            r#"{"action":"changed","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z","change":{"action":"changed"}}"#,
            r#"{"action":"added","resource":{"gid":1,"resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}"#,
            r#""not an object""#,
            r#"42"#,
            r#"null"#,
        ];
        for shape in drifted {
            let body = format!(r#"{{"events":[{good},{shape},{good}]}}"#);
            let parsed = parse_delivery(body.as_bytes()).unwrap();
            assert_eq!(parsed.events.len(), 2, "{shape}");
            assert_eq!(parsed.undecoded.len(), 1, "{shape}");
            let expected: serde_json::Value = serde_json::from_str(shape).unwrap();
            assert_eq!(parsed.undecoded[0].raw, expected);
            assert!(!parsed.undecoded[0].error.is_empty());
        }
    }

    #[test]
    fn json_without_an_events_array_is_kept_whole_and_non_json_is_an_error() {
        for body in [r#"{"event":[]}"#, r#"{"events":{}}"#, "[]", r#""x""#] {
            let parsed = parse_delivery(body.as_bytes()).unwrap();
            assert!(parsed.events.is_empty());
            assert_eq!(parsed.undecoded.len(), 1, "{body}");
            assert!(!parsed.is_heartbeat());
        }
        assert!(parse_delivery(b"not json").is_err());
        assert!(parse_delivery(br#"{"events":[]}"#).unwrap().is_heartbeat());
    }

    #[test]
    fn a_change_to_a_plain_value_is_not_a_resource() {
        let change: Change =
            serde_json::from_str(r#"{"field":"name","action":"changed","new_value":"Renamed"}"#)
                .unwrap();
        assert_eq!(change.new_resource(), None);
        assert_eq!(change.new_value.unwrap(), "Renamed");
    }
}
