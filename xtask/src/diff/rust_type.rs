//! The Rust type the generator picks for a schema.

use serde_json::Value;

use super::model::Schema;

pub(super) fn describe(schema: &Schema) -> String {
    match (&schema.kind, &schema.format) {
        (Some(kind), Some(format)) => format!("{kind} ({format})"),
        (Some(kind), None) => kind.clone(),
        (None, _) => "any".into(),
    }
}

/// The Rust type the generator picks for an integer: bounds decide
/// signedness and `NonZero`, the format the width.
pub(super) fn integer_type(schema: &Schema) -> Option<String> {
    if schema.kind.as_deref() != Some("integer") {
        return None;
    }
    let minimum = schema
        .limits
        .get("minimum")
        .and_then(Value::as_f64)
        .or_else(|| {
            schema
                .limits
                .get("exclusiveMinimum")
                .and_then(Value::as_f64)
                .map(|m| m + 1.0)
        });
    let width = if schema.format.as_deref() == Some("int32") {
        32
    } else {
        64
    };
    Some(match minimum {
        Some(m) if m >= 1.0 => format!("NonZeroU{width}"),
        Some(m) if m >= 0.0 => format!("u{width}"),
        _ => format!("i{width}"),
    })
}

/// Whether a limit got tighter (`true`), looser (`false`), or cannot tell.
pub(super) fn tighter(key: &str, old: Option<&Value>, new: Option<&Value>) -> Option<bool> {
    let lower_bound = key.starts_with("min") || key == "exclusiveMinimum";
    match (old.and_then(Value::as_f64), new.and_then(Value::as_f64)) {
        (None, Some(_)) => Some(true),
        (Some(_), None) => Some(false),
        (Some(a), Some(b)) if a != b => Some(if lower_bound { b > a } else { b < a }),
        _ => (old != new).then_some(true),
    }
}
