//! The Rust type the generator (progenitor 0.15 through typify 0.8) picks
//! for a scalar schema.
//!
//! Whether a change of `format`, `minimum`, `maximum` or a string limit is
//! breaking depends only on whether the generated type changes: an integer
//! with `minimum: 1` is a `NonZeroU64`, one with `minimum: 5` an `i64`, a
//! string with `maxLength` a validating newtype. These rules restate what
//! typify does (its `convert_integer`, `convert_number`, `convert_string`),
//! so that spec-diff can tell a limit Asana enforces from a type users see.

use serde_json::Value;

use super::model::Schema;

/// How a schema reads in a report: its type and format.
pub(super) fn describe(schema: &Schema) -> String {
    match (&schema.kind, &schema.format) {
        (Some(kind), Some(format)) => format!("{kind} ({format})"),
        (Some(kind), None) => kind.clone(),
        (None, _) => "any".into(),
    }
}

/// The generated Rust type of a scalar schema; `None` for objects, arrays,
/// enums and untyped schemas, which are compared structurally instead.
pub(super) fn scalar(schema: &Schema) -> Option<String> {
    if schema.values.is_some() {
        return None;
    }
    Some(match schema.kind.as_deref()? {
        "boolean" => "bool".into(),
        "number" if schema.format.as_deref() == Some("float") => "f32".into(),
        "number" => "f64".into(),
        "integer" => integer(schema),
        "string" => string(schema),
        _ => return None,
    })
}

fn number(schema: &Schema, key: &str) -> Option<f64> {
    schema.limits.get(key).and_then(Value::as_f64)
}

/// A string's type: a few formats map to dedicated types; otherwise any
/// length or pattern limit makes a newtype that validates on construction
/// and on decoding.
fn string(schema: &Schema) -> String {
    match schema.format.as_deref() {
        Some("uuid") => "Uuid".into(),
        Some("date") => "NaiveDate".into(),
        Some("date-time") => "DateTime<Utc>".into(),
        Some("ip") => "IpAddr".into(),
        Some("ipv4") => "Ipv4Addr".into(),
        Some("ipv6") => "Ipv6Addr".into(),
        _ if ["minLength", "maxLength", "pattern"]
            .iter()
            .any(|k| schema.limits.contains_key(*k)) =>
        {
            "a validating newtype around String".into()
        }
        _ => "String".into(),
    }
}

/// Integer formats from the most to the least restrictive: the format
/// name, the Rust type, its `NonZero` form, and its range.
const INTEGERS: &[(&str, &str, &str, f64, f64)] = &[
    ("int8", "i8", "NonZeroU8", i8::MIN as f64, i8::MAX as f64),
    ("uint8", "u8", "NonZeroU8", u8::MIN as f64, u8::MAX as f64),
    (
        "int16",
        "i16",
        "NonZeroU16",
        i16::MIN as f64,
        i16::MAX as f64,
    ),
    (
        "uint16",
        "u16",
        "NonZeroU16",
        u16::MIN as f64,
        u16::MAX as f64,
    ),
    ("int", "i32", "NonZeroU32", i32::MIN as f64, i32::MAX as f64),
    (
        "int32",
        "i32",
        "NonZeroU32",
        i32::MIN as f64,
        i32::MAX as f64,
    ),
    (
        "uint",
        "u32",
        "NonZeroU32",
        u32::MIN as f64,
        u32::MAX as f64,
    ),
    (
        "uint32",
        "u32",
        "NonZeroU32",
        u32::MIN as f64,
        u32::MAX as f64,
    ),
    (
        "int64",
        "i64",
        "NonZeroU64",
        i64::MIN as f64,
        i64::MAX as f64,
    ),
    (
        "uint64",
        "u64",
        "NonZeroU64",
        u64::MIN as f64,
        u64::MAX as f64,
    ),
];

/// An integer's type. A known format whose range holds the bounds decides
/// the width (`NonZero` when the minimum is exactly 1); otherwise the
/// bounds must match a type's range exactly (or the minimum be 1), and
/// anything else is an `i64`.
fn integer(schema: &Schema) -> String {
    let mut min = match (
        number(schema, "minimum"),
        number(schema, "exclusiveMinimum"),
    ) {
        (Some(m), Some(e)) => Some(m.max(e + 1.0)),
        (m, e) => m.or(e.map(|e| e + 1.0)),
    };
    let mut max = match (
        number(schema, "maximum"),
        number(schema, "exclusiveMaximum"),
    ) {
        (Some(m), Some(e)) => Some(m.min(e - 1.0)),
        (m, e) => m.or(e.map(|e| e - 1.0)),
    };
    let multiple = schema.limits.contains_key("multipleOf");
    if let Some((_, ty, nonzero, lo, hi)) = INTEGERS
        .iter()
        .find(|(name, ..)| Some(*name) == schema.format.as_deref())
    {
        let fits = min.is_none_or(|m| m >= *lo) && max.is_none_or(|m| m <= *hi);
        if fits && !multiple {
            return if min == Some(1.0) { nonzero } else { ty }.to_string();
        }
        min = min.or(Some(*lo));
        max = max.or(Some(*hi));
    }
    let same = |a: f64, b: f64| (a - b).abs() <= f64::EPSILON;
    let found = INTEGERS
        .iter()
        .rev()
        .find_map(|(_, ty, nonzero, lo, hi)| match (min, max) {
            (Some(1.0), _) => Some(*nonzero),
            (Some(m), None) if same(*lo, m) => Some(*ty),
            (None, Some(m)) if same(*hi, m) => Some(*ty),
            (Some(a), Some(b)) if same(*lo, a) && same(*hi, b) => Some(*ty),
            _ => None,
        });
    found.unwrap_or("i64").to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn of(yaml: &str) -> Option<String> {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        scalar(&super::super::model::normalize(&Value::Null, &value, 0))
    }

    #[test]
    fn integers_follow_the_generators_rules() {
        for (schema, ty) in [
            ("{type: integer}", "i64"),
            ("{type: integer, minimum: 1, maximum: 100}", "NonZeroU64"),
            ("{type: integer, minimum: 0}", "u64"),
            ("{type: integer, minimum: 5}", "i64"),
            ("{type: integer, exclusiveMinimum: 0}", "NonZeroU64"),
            ("{type: integer, maximum: 100}", "i64"),
            ("{type: integer, format: int32}", "i32"),
            ("{type: integer, format: int32, minimum: 0}", "i32"),
            ("{type: integer, format: int32, minimum: 1}", "NonZeroU32"),
            ("{type: integer, format: int64}", "i64"),
            ("{type: integer, format: uint8, maximum: 100}", "u8"),
            ("{type: integer, format: int32, maximum: 1e12}", "i64"),
            ("{type: integer, format: int32, multipleOf: 2}", "i32"),
            (
                "{type: integer, format: int32, minimum: 0, multipleOf: 2}",
                "i64",
            ),
            ("{type: integer, minimum: 0, maximum: 255}", "u8"),
        ] {
            assert_eq!(of(schema).as_deref(), Some(ty), "{schema}");
        }
    }

    #[test]
    fn strings_numbers_and_non_scalars() {
        for (schema, ty) in [
            ("{type: string}", Some("String")),
            ("{type: string, format: uri}", Some("String")),
            ("{type: string, format: date-time}", Some("DateTime<Utc>")),
            ("{type: string, format: date}", Some("NaiveDate")),
            (
                "{type: string, maxLength: 3}",
                Some("a validating newtype around String"),
            ),
            ("{type: string, format: uuid, maxLength: 3}", Some("Uuid")),
            ("{type: string, enum: [a]}", None),
            ("{type: number}", Some("f64")),
            ("{type: number, format: double}", Some("f64")),
            ("{type: number, format: float}", Some("f32")),
            ("{type: boolean}", Some("bool")),
            ("{type: array, items: {type: string}}", None),
            ("{type: object}", None),
        ] {
            assert_eq!(of(schema).as_deref(), ty, "{schema}");
        }
    }
}
