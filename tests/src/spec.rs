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
/// declare, except in Asana's error objects (see [`ERROR_OBJECT`]).
/// Returns every problem found, each with its JSON path.
pub fn check(spec: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    check_at(spec, schema, value, "$", &mut problems);
    problems
}

/// Asana's error object, the items of `ErrorResponse.errors`: the one
/// schema whose undeclared properties the check lets through.
///
/// The spec declares `message`, `help` and `phrase`, but real Asana error
/// bodies carry more beside them (`error`, `user_message`; the sandbox's
/// "Duplicated webhook" 403 carries `error` too), and a client must never
/// reject an error for an unknown field. Declared
/// properties are still checked; undeclared ones anywhere else (the
/// `ErrorResponse` around the `errors` array, every success answer) are
/// still refused.
pub const ERROR_OBJECT: &str = "/components/schemas/Error";

/// Whether `schema` (through `$ref`) is [`ERROR_OBJECT`] of `spec`.
fn is_error_object(spec: &Value, schema: &Value) -> bool {
    spec.pointer(ERROR_OBJECT)
        .is_some_and(|error| std::ptr::eq(resolve(spec, schema), error))
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
            let extra_keys_allowed = is_error_object(spec, resolved);
            for (name, field) in fields {
                match properties.get(name) {
                    Some(property) => {
                        check_at(spec, property, field, &format!("{at}.{name}"), problems)
                    }
                    None if properties.is_empty() => {}
                    // Asana's error objects carry keys the spec omits.
                    None if extra_keys_allowed => {}
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_response() -> &'static Value {
        &derived()["components"]["schemas"]["ErrorResponse"]
    }

    #[test]
    fn error_objects_may_carry_keys_the_spec_does_not_declare() {
        // The sandbox's answer to a duplicate webhook, shaped like Asana's.
        let duplicate = json!({"errors": [{
            "message": "Duplicated webhook",
            "help": "For more information on API status codes and how to handle them, read the docs on errors: https://developers.asana.com/docs/errors",
            "error": "duplicate_webhook",
            "user_message": "This webhook already exists.",
        }]});
        assert_eq!(
            check(derived(), error_response(), &duplicate),
            Vec::<String>::new()
        );
        // The same through the vendored spec.
        let vendored = vendored();
        let schema = &vendored["components"]["schemas"]["ErrorResponse"];
        assert_eq!(check(vendored, schema, &duplicate), Vec::<String>::new());
    }

    #[test]
    fn declared_keys_of_error_objects_are_still_checked() {
        let wrong = json!({"errors": [{"message": 1, "error": "x"}]});
        let problems = check(derived(), error_response(), &wrong);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("$.errors[0].message: expected string"),
            "{problems:?}"
        );
        let not_an_object = json!({"errors": ["Duplicated webhook"]});
        assert_eq!(check(derived(), error_response(), &not_an_object).len(), 1);
    }

    #[test]
    fn undeclared_keys_outside_error_objects_are_still_refused() {
        let spec = derived();
        let beside_errors = json!({"errors": [], "error": "duplicate_webhook"});
        assert_eq!(
            check(spec, error_response(), &beside_errors),
            vec!["$.error: not declared by the schema".to_string()]
        );
        let webhook = response_schema(spec, "/webhooks/{webhook_gid}", "get", 200);
        let invented = json!({"data": {"gid": "1", "error": "x", "user_message": "y"}});
        assert_eq!(check(spec, webhook, &invented).len(), 2);
    }
}
