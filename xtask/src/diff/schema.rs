//! Comparing two schemas at one place of an operation.

use std::collections::BTreeSet;

use serde_json::Value;

use super::model::{Additional, Schema};
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
    diff_value(location, old, new, side, false, out);
}

/// Whether a struct field is generated as `Option<T>`: when it is nullable,
/// or optional with neither a default nor an empty value of its own (an
/// optional array or map is a plain `Vec`/map that defaults to empty).
fn option_field(schema: &Schema, required: bool) -> bool {
    let empty_value = schema.kind.as_deref() == Some("array")
        || (schema.kind.as_deref() == Some("object")
            && schema.properties.is_empty()
            && schema.additional != Additional::Closed);
    schema.nullable || (!required && schema.default.is_none() && !empty_value)
}

/// Compares a property's field: whether it is required, nullable or has a
/// default decides between `T` and `Option<T>`; only that is breaking.
fn diff_field(
    at: &str,
    old: (&Schema, bool),
    new: (&Schema, bool),
    side: Side,
    out: &mut Vec<Change>,
) {
    let ((before, was), (after, is)) = (old, new);
    let state = |flag: bool, yes: &str, no: &str| format!("now {}", if flag { yes } else { no });
    if option_field(before, was) != option_field(after, is) {
        let change = if was != is {
            state(is, "required", "optional")
        } else if before.nullable != after.nullable {
            state(after.nullable, "nullable", "not nullable")
        } else {
            state(
                after.default.is_some(),
                "with a default",
                "without a default",
            )
        };
        push(
            out,
            Class::Breaking,
            at,
            change,
            "the generated field changes between `T` and `Option<T>`",
        );
    } else {
        let request = side == Side::Request;
        if was != is {
            let (class, reason) = if request && is {
                (
                    Class::ServerSide,
                    "Asana refuses requests without it; the generated field keeps its type",
                )
            } else {
                (Class::NonBreaking, "the generated field keeps its type")
            };
            push(out, class, at, state(is, "required", "optional"), reason);
        }
        if before.nullable != after.nullable {
            let (class, reason) = if request && !after.nullable {
                (
                    Class::ServerSide,
                    "Asana refuses requests that send null; the generated field keeps its type",
                )
            } else {
                (
                    Class::NonBreaking,
                    "the generated field is an `Option` either way",
                )
            };
            push(
                out,
                class,
                at,
                state(after.nullable, "nullable", "not nullable"),
                reason,
            );
        }
    }
}

fn diff_value(
    location: &str,
    old: &Schema,
    new: &Schema,
    side: Side,
    as_field: bool,
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
    diff_additional(location, old, new, side, out);
    if old.nullable != new.nullable && !as_field {
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
                diff_field(&at, (property, was), (new_property, is), side, out);
                diff_value(&at, property, new_property, side, true, out);
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

/// `additionalProperties`, as the generator reads it: on an object without
/// properties it decides the map's value type; on a struct, a schema adds a
/// flattened `extra` map and `false` refuses unknown fields when decoding.
fn diff_additional(location: &str, old: &Schema, new: &Schema, side: Side, out: &mut Vec<Change>) {
    let is_struct = !new.properties.is_empty();
    let mut report =
        |class, change: &str, reason| push(out, class, location, change.into(), reason);
    match (&old.additional, &new.additional) {
        (Additional::Typed(a), Additional::Typed(b)) => {
            diff_schema(&format!("{location}{{*}}"), a, b, side, out)
        }
        (Additional::Open, Additional::Closed) if is_struct => {
            if side == Side::Response {
                report(
                    Class::Breaking,
                    "no longer allows additional properties",
                    "the generated struct refuses unknown fields: answers carrying one no longer decode",
                )
            } else {
                report(
                    Class::NonBreaking,
                    "no longer allows additional properties",
                    "requests only ever send the listed fields",
                )
            }
        }
        (Additional::Closed, Additional::Open) if is_struct => report(
            Class::NonBreaking,
            "allows additional properties",
            "the generated struct stops refusing unknown fields",
        ),
        (a, b) if a == b => {}
        (_, Additional::Typed(_)) => report(
            Class::Breaking,
            "now allows typed additional properties",
            "the generated type becomes (or gains) a map of them",
        ),
        (Additional::Typed(_), _) => report(
            Class::Breaking,
            "no longer allows typed additional properties",
            "the generated map of them disappears",
        ),
        _ => report(
            Class::Breaking,
            "additional properties changed",
            "an object without properties turns between a map and an empty struct",
        ),
    }
}
