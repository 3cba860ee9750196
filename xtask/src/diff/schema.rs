//! Comparing two schemas at one place of an operation.

use std::collections::BTreeSet;

use serde_json::Value;

use super::model::Schema;
use super::rust_type::{self, describe, tighter};
use super::{Change, Class, push};

/// Requests and responses break in opposite directions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

pub(super) fn diff_schema(
    location: &str,
    old: &Schema,
    new: &Schema,
    side: Side,
    out: &mut Vec<Change>,
) {
    let request = side == Side::Request;
    if old.kind != new.kind {
        push(
            out,
            Class::Breaking,
            location,
            format!("type changed from {} to {}", describe(old), describe(new)),
            "the generated Rust type changes",
        );
        return;
    }
    let (old_type, new_type) = (rust_type::scalar(old), rust_type::scalar(new));
    let type_changed = old_type != new_type && old_type.is_some() && new_type.is_some();
    if type_changed {
        push(
            out,
            Class::Breaking,
            location,
            format!(
                "generated type changes from {} to {}",
                old_type.as_deref().unwrap_or_default(),
                new_type.as_deref().unwrap_or_default()
            ),
            "its format or limits changed the generated Rust type",
        );
    } else if old.format != new.format {
        let change = format!("format changed from {} to {}", describe(old), describe(new));
        let (class, reason) = if request && new.format.is_some() {
            (
                Class::ServerSide,
                "the generated type is unchanged; Asana may refuse values it took before",
            )
        } else {
            (Class::NonBreaking, "the generated type is unchanged")
        };
        push(out, class, location, change, reason);
    }
    match (&old.variants, &new.variants) {
        (Some(a), Some(b)) if a != b => push(
            out,
            Class::Breaking,
            location,
            format!("{} alternatives changed", b.0),
            "the generated enum of alternatives changes",
        ),
        (None, Some(b)) => push(
            out,
            Class::Breaking,
            location,
            format!("now one of {} alternatives ({})", b.1.len(), b.0),
            "the generated Rust type becomes an enum of alternatives",
        ),
        (Some(a), None) => push(
            out,
            Class::Breaking,
            location,
            format!("no longer {} alternatives", a.0),
            "the generated enum of alternatives disappears",
        ),
        _ => {}
    }
    match (&old.additional, &new.additional) {
        (None, Some(_)) => push(
            out,
            Class::Breaking,
            location,
            "now allows additional properties".into(),
            "the generated Rust type becomes a map",
        ),
        (Some(_), None) => push(
            out,
            Class::Breaking,
            location,
            "no longer allows additional properties".into(),
            "the generated map type disappears",
        ),
        (Some(Some(a)), Some(Some(b))) => diff_schema(&format!("{location}{{*}}"), a, b, side, out),
        (Some(None), Some(Some(_))) | (Some(Some(_)), Some(None)) => push(
            out,
            Class::Breaking,
            location,
            "additional properties' type changed".into(),
            "the generated map's value type changes",
        ),
        _ => {}
    }
    if old.nullable != new.nullable {
        let (class, reason) = match (request, new.nullable) {
            (false, true) => (
                Class::Breaking,
                "answers may hold null where the generated type has none",
            ),
            (false, false) => (
                Class::NonBreaking,
                "answers hold a value where null was allowed",
            ),
            (true, true) => (Class::NonBreaking, "requests may now send null"),
            (true, false) => (Class::ServerSide, "Asana refuses requests that send null"),
        };
        let state = if new.nullable {
            "nullable"
        } else {
            "not nullable"
        };
        push(out, class, location, format!("now {state}"), reason);
    }
    if old.read_only != new.read_only || old.write_only != new.write_only {
        let state = match (new.read_only, new.write_only) {
            (true, _) => "read-only",
            (_, true) => "write-only",
            _ => "read-write",
        };
        let (class, reason) = match (request, new.read_only, new.write_only) {
            (true, true, _) => (Class::ServerSide, "Asana ignores it in requests now"),
            (false, _, true) => (Class::NonBreaking, "answers stop carrying it"),
            _ => (Class::NonBreaking, "the generated type is unchanged"),
        };
        push(out, class, location, format!("now {state}"), reason);
    }
    if old.default != new.default {
        let show = |v: &Option<Value>| v.as_ref().map_or("none".into(), Value::to_string);
        let (class, reason) = if request {
            (
                Class::ServerSide,
                "Asana assumes another value when it is left out",
            )
        } else {
            (
                Class::NonBreaking,
                "an absent value decodes to another default",
            )
        };
        push(
            out,
            class,
            location,
            format!(
                "default changed from {} to {}",
                show(&old.default),
                show(&new.default)
            ),
            reason,
        );
    }
    match (&old.values, &new.values) {
        (Some(a), Some(b)) => {
            for value in b.difference(a) {
                let (class, reason) = if request {
                    (Class::NonBreaking, "a new value callers may send")
                } else {
                    (
                        Class::Breaking,
                        "an answer with it fails to decode into the generated enum",
                    )
                };
                push(
                    out,
                    class,
                    location,
                    format!("enum value `{value}` added"),
                    reason,
                );
            }
            for value in a.difference(b) {
                push(
                    out,
                    Class::Breaking,
                    location,
                    format!("enum value `{value}` removed"),
                    "its generated enum variant disappears",
                );
            }
        }
        (None, Some(b)) => push(
            out,
            Class::Breaking,
            location,
            format!("now an enum of {} values", b.len()),
            "the generated Rust type changes from a string to an enum",
        ),
        (Some(a), None) => push(
            out,
            Class::Breaking,
            location,
            format!("no longer an enum (had {} values)", a.len()),
            "the generated enum becomes a plain string",
        ),
        (None, None) => {}
    }
    // Limits that changed the generated type were reported as that; the
    // others are Asana's to enforce, except that a validating string
    // newtype also checks answers when it decodes them.
    let validating = new_type.as_deref().is_some_and(|t| t.contains("newtype"));
    let keys: BTreeSet<&String> = old.limits.keys().chain(new.limits.keys()).collect();
    for key in keys.into_iter().filter(|_| !type_changed) {
        let (a, b) = (old.limits.get(key), new.limits.get(key));
        let Some(tighter) = tighter(key, a, b) else {
            continue;
        };
        let change = format!(
            "{key} changed from {} to {}",
            a.map_or("none".into(), Value::to_string),
            b.map_or("none".into(), Value::to_string)
        );
        let (class, reason) = match (request, tighter) {
            (true, true) => (
                Class::ServerSide,
                "Asana may refuse requests it took before; the generated type is unchanged",
            ),
            (true, false) => (Class::NonBreaking, "more requests are accepted"),
            (false, true) if validating => (
                Class::Breaking,
                "the generated newtype refuses answers it decoded before",
            ),
            (false, true) => (
                Class::NonBreaking,
                "answers stay within the old range; the generated type does not check it",
            ),
            (false, false) => (
                Class::NonBreaking,
                "answers may be wider; the generated type does not check it",
            ),
        };
        push(out, class, location, change, reason);
    }
    for (name, property) in &old.properties {
        let at = format!("{location} property `{name}`");
        match new.properties.get(name) {
            None => {
                let reason = if request {
                    "requests that set it fail to compile"
                } else {
                    "code that reads it no longer compiles"
                };
                push(out, Class::Breaking, &at, "removed".into(), reason);
            }
            Some(new_property) => {
                let (was, is) = (old.required.contains(name), new.required.contains(name));
                if was != is {
                    let state = if is { "required" } else { "optional" };
                    push(
                        out,
                        Class::Breaking,
                        &at,
                        format!("now {state}"),
                        "the generated field changes between `T` and `Option<T>`",
                    );
                }
                diff_schema(&at, property, new_property, side, out);
            }
        }
    }
    for (name, property) in new
        .properties
        .iter()
        .filter(|(n, _)| !old.properties.contains_key(*n))
    {
        let at = format!("{location} property `{name}`");
        let required = new.required.contains(name);
        let (class, reason) = match (request, required) {
            (true, true) => (
                Class::Breaking,
                "a required field without default: existing struct literals no longer compile",
            ),
            (true, false) => (
                Class::NonBreaking,
                "optional; existing requests are unaffected",
            ),
            (false, _) => (
                Class::NonBreaking,
                "new data in answers; existing code ignores it",
            ),
        };
        push(
            out,
            class,
            &at,
            format!("added ({})", describe(property)),
            reason,
        );
    }
    match (&old.items, &new.items) {
        (Some(a), Some(b)) => diff_schema(&format!("{location}[]"), a, b, side, out),
        (None, Some(_)) | (Some(_), None) => {
            push(
                out,
                Class::Breaking,
                location,
                "array items changed".into(),
                "the generated Rust type changes",
            );
        }
        (None, None) => {}
    }
}
