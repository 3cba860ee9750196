//! The identity of an event that both of Asana's shapes share: the compact
//! one webhooks deliver and the named one the Events API returns.
//!
//! The same change reaches an app twice when the Events API catches up
//! what a webhook may have missed, and the two copies differ: webhook
//! events are compact (`resource` without `name`, `change.new_value` as
//! `{gid, resource_type}`), Events API events carry names and may carry
//! more keys (`type`, `resource_subtype`, names of users and parents). The
//! canonical JSON of the whole event therefore tells them apart; this
//! identity does not.
//!
//! It is made of: the resource's gid, the action, `created_at` (as sent),
//! the user's gid, the parent's gid, the change's field and action, and
//! the change's `new_value`, `added_value` and `removed_value`, each
//! reduced to its gid when it is an object with one (the value itself
//! otherwise). Everything else, names and subtypes and keys Asana may add,
//! is tolerated: two events that differ only there are the same event.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// What makes an event the same event in either shape: a SHA-256 over the
/// identity fields (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventIdentity([u8; 32]);

impl EventIdentity {
    /// The identity of `event`, in either shape. Fields that are missing
    /// count as empty, so any JSON value has an identity.
    pub fn of(event: &Value) -> Self {
        let mut hash = Sha256::new();
        let mut field = |value: Option<String>| {
            // Length-prefixed, with absence distinct from the empty string,
            // so that no two different field lists hash alike.
            match value {
                Some(text) => {
                    hash.update([1]);
                    hash.update((text.len() as u64).to_be_bytes());
                    hash.update(text.as_bytes());
                }
                None => hash.update([0]),
            }
        };
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        let gid = |v: Option<&Value>| text(v.and_then(|o| o.get("gid")));
        field(gid(event.get("resource")));
        field(text(event.get("action")));
        field(text(event.get("created_at")));
        field(gid(event.get("user")));
        field(gid(event.get("parent")));
        let change = event.get("change");
        field(text(change.and_then(|c| c.get("field"))));
        field(text(change.and_then(|c| c.get("action"))));
        for key in ["new_value", "added_value", "removed_value"] {
            field(change.and_then(|c| c.get(key)).map(value_identity));
        }
        Self(hash.finalize().into())
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A change's value as both shapes agree on it: a resource by its gid,
/// anything else as its JSON.
fn value_identity(value: &Value) -> String {
    match value.get("gid").and_then(Value::as_str) {
        Some(gid) => format!("gid:{gid}"),
        None => format!("json:{value}"),
    }
}

impl fmt::Display for EventIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for EventIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventIdentity({self})")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// One change as a webhook delivers it.
    fn compact() -> Value {
        json!({
            "user": {"gid": "10", "resource_type": "user"},
            "created_at": "2026-03-17T10:11:06.611Z",
            "action": "changed",
            "resource": {"gid": "20", "resource_type": "task", "resource_subtype": "default_task"},
            "parent": null,
            "change": {"field": "assignee", "action": "changed",
                       "new_value": {"gid": "10", "resource_type": "user"}}
        })
    }

    /// The same change as the Events API returns it.
    fn named() -> Value {
        json!({
            "user": {"gid": "10", "resource_type": "user", "name": "Ada"},
            "created_at": "2026-03-17T10:11:06.611Z",
            "action": "changed",
            "resource": {"gid": "20", "resource_type": "task", "name": "Ship it"},
            "parent": null,
            "type": "task",
            "change": {"field": "assignee", "action": "changed",
                       "new_value": {"gid": "10", "resource_type": "user", "name": "Ada"}}
        })
    }

    #[test]
    fn the_same_event_in_either_shape_has_one_identity() {
        assert_eq!(EventIdentity::of(&compact()), EventIdentity::of(&named()));
        // Key order and keys Asana may add later do not matter either.
        let mut later = named();
        later["future_field"] = json!({"x": 1});
        assert_eq!(EventIdentity::of(&compact()), EventIdentity::of(&later));
        // An added/removed event with a named parent.
        let added = json!({"action": "added", "created_at": "t", "resource": {"gid": "1"},
                           "parent": {"gid": "2", "resource_type": "project"}, "user": {"gid": "3"}});
        let mut named_added = added.clone();
        named_added["parent"]["name"] = json!("Roadmap");
        named_added["resource"]["name"] = json!("A task");
        assert_eq!(EventIdentity::of(&added), EventIdentity::of(&named_added));
    }

    #[test]
    fn events_that_differ_in_any_identity_field_differ() {
        let base = EventIdentity::of(&compact());
        type Change = (&'static str, fn(&mut Value));
        let changes: [Change; 10] = [
            ("resource", |e| e["resource"]["gid"] = json!("21")),
            ("action", |e| e["action"] = json!("removed")),
            ("created_at", |e| {
                e["created_at"] = json!("2026-03-17T10:11:06.612Z")
            }),
            ("user", |e| e["user"]["gid"] = json!("11")),
            ("no user", |e| e["user"] = Value::Null),
            ("parent", |e| e["parent"] = json!({"gid": "30"})),
            ("change.field", |e| e["change"]["field"] = json!("due_on")),
            ("change.action", |e| e["change"]["action"] = json!("added")),
            ("change.new_value", |e| {
                e["change"]["new_value"]["gid"] = json!("12")
            }),
            ("change.added_value", |e| {
                e["change"]["added_value"] = json!({"gid": "5"})
            }),
        ];
        let mut seen = std::collections::HashSet::from([base]);
        for (what, change) in changes {
            let mut event = compact();
            change(&mut event);
            let identity = EventIdentity::of(&event);
            assert_ne!(identity, base, "{what} changed, yet the identity did not");
            assert!(seen.insert(identity), "{what} collides with another change");
        }
    }

    #[test]
    fn values_that_are_not_resources_count_as_their_json() {
        let mut a = compact();
        a["change"]["new_value"] = json!("2026-04-01");
        let mut b = compact();
        b["change"]["new_value"] = json!("2026-04-02");
        assert_ne!(EventIdentity::of(&a), EventIdentity::of(&b));
        // A missing value is not an empty one.
        let mut absent = compact();
        absent["change"]
            .as_object_mut()
            .unwrap()
            .remove("new_value");
        let mut empty = compact();
        empty["change"]["new_value"] = json!("");
        assert_ne!(EventIdentity::of(&absent), EventIdentity::of(&empty));
        // Any JSON has an identity.
        assert_eq!(EventIdentity::of(&json!(42)), EventIdentity::of(&json!(42)));
        assert_eq!(EventIdentity::of(&json!(null)).to_string().len(), 64);
    }
}
