//! A spec reduced to what compatibility depends on.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::surface;

/// `additionalProperties`, in the three forms the generator tells apart.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum Additional {
    /// Absent or `true`: unknown fields are ignored.
    #[default]
    Open,
    /// `false`: unknown fields are refused.
    Closed,
    /// A schema (`{}` included): the values of a map or an `extra` field.
    Typed(Box<Schema>),
}

/// A schema reduced to what matters for compatibility.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Schema {
    pub(super) kind: Option<String>,
    pub(super) format: Option<String>,
    pub(super) nullable: bool,
    pub(super) values: Option<BTreeSet<String>>,
    pub(super) limits: BTreeMap<String, Value>,
    pub(super) properties: BTreeMap<String, Schema>,
    pub(super) required: BTreeSet<String>,
    pub(super) items: Option<Box<Schema>>,
    /// `oneOf`/`anyOf` alternatives, each as its normalised text (order
    /// does not matter).
    pub(super) variants: Option<(String, BTreeSet<String>)>,
    /// `additionalProperties`.
    pub(super) additional: Additional,
    pub(super) read_only: bool,
    pub(super) write_only: bool,
    pub(super) default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Parameter {
    pub(super) required: bool,
    pub(super) schema: Schema,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Operation {
    pub(super) parameters: BTreeMap<String, Parameter>,
    pub(super) body: Option<Schema>,
    pub(super) responses: BTreeMap<String, Option<Schema>>,
    /// The accepted alternatives: any one is enough. Each maps a scheme to
    /// the scopes it needs.
    pub(super) security: Vec<BTreeMap<String, BTreeSet<String>>>,
    /// Names the generated method.
    pub(super) operation_id: Option<String>,
}

pub(super) const LIMIT_KEYS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "multipleOf",
];

pub(super) const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

pub(super) fn model(full: &serde_yaml::Value) -> Result<BTreeMap<String, Operation>> {
    // Schemas outside the operations (EventResponse, ErrorResponse) may be
    // missing from a version: they are not part of what is compared.
    let surface: Value = serde_json::to_value(surface::extract_lenient(full)?)
        .context("the surface is not JSON-compatible")?;
    let mut operations = BTreeMap::new();
    let global_security = surface.get("security").cloned().unwrap_or(Value::Null);
    for (path, item) in surface["paths"].as_object().into_iter().flatten() {
        let shared = parameters(&surface, item.get("parameters"));
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let mut parameters = shared.clone();
            parameters.extend(self::parameters(&surface, op.get("parameters")));
            let body = op
                .pointer("/requestBody")
                .map(|b| resolve(&surface, b))
                .and_then(|b| b.pointer("/content/application~1json/schema"))
                .map(|s| normalize(&surface, s, 0));
            let responses = op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(status, response)| {
                    let response = resolve(&surface, response);
                    let schema = response
                        .pointer("/content/application~1json/schema")
                        .map(|s| normalize(&surface, s, 0));
                    (status.clone(), schema)
                })
                .collect();
            let security = security(op.get("security").unwrap_or(&global_security));
            let operation_id = op
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_string);
            operations.insert(
                format!("{} {path}", method.to_uppercase()),
                Operation {
                    parameters,
                    body,
                    responses,
                    security,
                    operation_id,
                },
            );
        }
    }
    Ok(operations)
}

pub(super) fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..32 {
        let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
            break;
        };
        match reference.strip_prefix('#').and_then(|p| doc.pointer(p)) {
            Some(target) => value = target,
            None => break,
        }
    }
    value
}

pub(super) fn parameters(doc: &Value, list: Option<&Value>) -> BTreeMap<String, Parameter> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| resolve(doc, p))
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?;
            let place = p.get("in")?.as_str()?;
            let schema = p
                .get("schema")
                .map(|s| normalize(doc, s, 0))
                .unwrap_or_default();
            let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
            Some((
                format!("{place} parameter `{name}`"),
                Parameter { required, schema },
            ))
        })
        .collect()
}

/// The security alternatives of an operation (a list: any one suffices).
/// An empty list (`security: []`) means no authentication at all: the one
/// alternative that needs no scheme.
pub(super) fn security(requirements: &Value) -> Vec<BTreeMap<String, BTreeSet<String>>> {
    if requirements.as_array().is_some_and(Vec::is_empty) {
        return vec![BTreeMap::new()];
    }
    requirements
        .as_array()
        .into_iter()
        .flatten()
        .map(|requirement| {
            requirement
                .as_object()
                .into_iter()
                .flatten()
                .map(|(scheme, scopes)| {
                    let scopes = scopes
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect();
                    (scheme.clone(), scopes)
                })
                .collect()
        })
        .collect()
}

/// Resolves and merges a schema into the compatibility model.
pub(super) fn normalize(doc: &Value, schema: &Value, depth: usize) -> Schema {
    let schema = resolve(doc, schema);
    let mut out = Schema::default();
    if depth > 24 {
        return out;
    }
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        merge(&mut out, normalize(doc, part, depth + 1));
    }
    let own = Schema {
        kind: schema
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_string),
        format: schema
            .get("format")
            .and_then(Value::as_str)
            .map(str::to_string),
        nullable: schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        values: schema.get("enum").and_then(Value::as_array).map(|v| {
            v.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect()
        }),
        limits: LIMIT_KEYS
            .iter()
            .filter_map(|k| Some((k.to_string(), schema.get(*k)?.clone())))
            .collect(),
        properties: schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, s)| (name.clone(), normalize(doc, s, depth + 1)))
            .collect(),
        required: schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        items: schema
            .get("items")
            .map(|i| Box::new(normalize(doc, i, depth + 1))),
        variants: ["oneOf", "anyOf"].iter().find_map(|key| {
            let list = schema.get(*key)?.as_array()?;
            let texts = list
                .iter()
                .map(|v| format!("{:?}", normalize(doc, v, depth + 1)))
                .collect();
            Some((key.to_string(), texts))
        }),
        additional: match schema.get("additionalProperties") {
            None | Some(Value::Bool(true)) => Additional::Open,
            Some(Value::Bool(false)) => Additional::Closed,
            Some(value) => Additional::Typed(Box::new(normalize(doc, value, depth + 1))),
        },
        read_only: schema
            .get("readOnly")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        write_only: schema
            .get("writeOnly")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        default: schema.get("default").cloned(),
    };
    merge(&mut out, own);
    if out.kind.is_none() && !out.properties.is_empty() {
        out.kind = Some("object".into());
    }
    out
}

pub(super) fn merge(into: &mut Schema, from: Schema) {
    into.kind = into.kind.take().or(from.kind);
    into.format = into.format.take().or(from.format);
    into.nullable |= from.nullable;
    if from.values.is_some() {
        into.values = from.values;
    }
    into.limits.extend(from.limits);
    for (name, schema) in from.properties {
        match into.properties.get_mut(&name) {
            Some(existing) => merge(existing, schema),
            None => {
                into.properties.insert(name, schema);
            }
        }
    }
    into.required.extend(from.required);
    if from.variants.is_some() {
        into.variants = from.variants;
    }
    if from.additional != Additional::Open {
        into.additional = from.additional;
    }
    into.read_only |= from.read_only;
    into.write_only |= from.write_only;
    if from.default.is_some() {
        into.default = from.default;
    }
    if let Some(items) = from.items {
        match &mut into.items {
            Some(existing) => merge(existing, *items),
            None => into.items = Some(items),
        }
    }
}
