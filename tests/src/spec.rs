//! The vendored OpenAPI description, read at test time: Prism-style example
//! responses built from the `example` of each property, and a checker for
//! the subset of OpenAPI the webhooks surface uses.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The vendored official spec (`openapi/asana_oas.yaml`), parsed once.
pub fn vendored() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../openapi/asana_oas.yaml"
        ))
    })
}

/// The derived webhooks surface (`openapi/webhooks.yaml`), parsed once.
pub fn derived() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        load(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../openapi/webhooks.yaml"
        ))
    })
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    yaml_to_json(yaml)
}

/// YAML to JSON; mapping keys such as the status `200` become strings.
fn yaml_to_json(yaml: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).expect("a YAML number is a JSON number"),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml::to_string(&other)
                            .expect("a scalar key")
                            .trim()
                            .to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

/// Follows `$ref` (local references only) until a schema without one.
pub fn resolve<'a>(spec: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = reference.strip_prefix('#').expect("a local reference");
        schema = spec
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} does not resolve"));
    }
    schema
}

/// The JSON schema of an operation's answer with `status`.
pub fn response_schema<'a>(spec: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let operation = &spec["paths"][path][method];
    let response = resolve(spec, &operation["responses"][status.to_string()]);
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} has no JSON schema for {status}"
    );
    schema
}

/// An example value for `schema`, the way a mock server such as Prism
/// builds one: the schema's own `example` when it has one, else an object
/// of its properties' examples (through `$ref` and `allOf`), a one-item
/// array, or a placeholder of the right type.
pub fn example(spec: &Value, schema: &Value) -> Value {
    let schema = resolve(spec, schema);
    if let Some(example) = schema.get("example") {
        return example.clone();
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        let mut merged = Map::new();
        for part in parts {
            if let Value::Object(fields) = example(spec, part) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        return Value::Object(
            properties
                .iter()
                .map(|(name, s)| (name.clone(), example(spec, s)))
                .collect(),
        );
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => Value::Array(vec![example(spec, &schema["items"])]),
        Some("object") => Value::Object(Map::new()),
        Some("integer") => Value::from(0),
        Some("number") => Value::from(0.0),
        Some("boolean") => Value::Bool(true),
        Some("string") if schema.get("format").and_then(Value::as_str) == Some("date-time") => {
            Value::from("2012-02-22T02:06:58.147Z")
        }
        Some("string") => Value::from("string"),
        _ => Value::Null,
    }
}

/// Checks `value` against `schema`: types, `nullable`, `enum`, RFC 3339
/// `date-time`, through `$ref` and `allOf`, at every depth. Stricter than
/// OpenAPI on purpose, it also refuses properties the schema does not
/// declare. Returns every problem found, each with its JSON path.
pub fn check(spec: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check_at(spec, schema, value, "$", &mut problems);
    problems
}

/// Every property a schema declares, through `$ref` and `allOf`.
fn declared<'a>(spec: &'a Value, schema: &'a Value, out: &mut Map<String, Value>) {
    let schema = resolve(spec, schema);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        out.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        declared(spec, part, out);
    }
}

fn is_nullable(spec: &Value, schema: &Value) -> bool {
    let schema = resolve(spec, schema);
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
        || schema
            .get("allOf")
            .and_then(Value::as_array)
            .is_some_and(|parts| parts.iter().any(|p| is_nullable(spec, p)))
}

fn schema_type<'a>(spec: &'a Value, schema: &'a Value) -> Option<&'a str> {
    let schema = resolve(spec, schema);
    schema.get("type").and_then(Value::as_str).or_else(|| {
        schema
            .get("allOf")
            .and_then(Value::as_array)?
            .iter()
            .find_map(|p| schema_type(spec, p))
    })
}

fn check_at(spec: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let resolved = resolve(spec, schema);
    if value.is_null() {
        if !is_nullable(spec, resolved) {
            problems.push(format!("{at}: null, but the schema is not nullable"));
        }
        return;
    }
    let mut properties = Map::new();
    declared(spec, resolved, &mut properties);
    let kind = schema_type(spec, resolved).or(if properties.is_empty() {
        None
    } else {
        Some("object")
    });
    let ok = match kind {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !ok {
        problems.push(format!(
            "{at}: expected {}, found {value}",
            kind.unwrap_or("?")
        ));
        return;
    }
    if let Some(allowed) = resolved.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if resolved.get("format").and_then(Value::as_str) == Some("date-time")
        && let Some(text) = value.as_str()
        && chrono::DateTime::parse_from_rfc3339(text).is_err()
    {
        problems.push(format!("{at}: {text:?} is not an RFC 3339 date-time"));
    }
    match value {
        Value::Object(fields) if kind == Some("object") => {
            for (name, field) in fields {
                match properties.get(name) {
                    Some(property) => {
                        check_at(spec, property, field, &format!("{at}.{name}"), problems)
                    }
                    None if properties.is_empty() => {}
                    None => problems.push(format!("{at}.{name}: not declared by the schema")),
                }
            }
        }
        Value::Array(items) => {
            let item_schema = resolve(spec, resolved)
                .get("items")
                .cloned()
                .unwrap_or(Value::Null);
            for (i, item) in items.iter().enumerate() {
                check_at(spec, &item_schema, item, &format!("{at}[{i}]"), problems);
            }
        }
        _ => {}
    }
}
