//! `cargo xtask spec-diff OLD NEW`: what changed on the webhooks surface
//! between two versions of Asana's spec, and whether it breaks code that
//! uses this SDK.
//!
//! Both versions go through the extraction regen uses (so schemas outside
//! the surface never need to parse), then into a semantic model: `$ref`s
//! resolved, `allOf` merged, path-level parameters folded into their
//! operations, descriptions and examples ignored. A refactor that keeps the
//! meaning is therefore no change.
//!
//! # One rule for "breaking"
//!
//! A change is **breaking** when upgrading this crate breaks its users:
//! code that compiled no longer compiles (a builder method, type, field or
//! enum variant removed or changed, an operation renamed), or answers that
//! decoded no longer decode. A change to Asana's **server-side** contract
//! (a scope added, an auth alternative added or removed, a tighter limit or
//! a newly required input that leaves the generated Rust unchanged) is live
//! at Asana whatever crate version people use: it is reported in its own
//! class and must be named in CHANGELOG.md, but it does not break the
//! crate's semver. Everything else is **non-breaking**.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::surface;

/// How a change affects the crate's users; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Upgrading the crate breaks code that compiled, or answers that decoded.
    Breaking,
    /// Asana's contract changed at Asana: calls that worked may now be
    /// refused, whatever the crate's version.
    ServerSide,
    /// Nothing that worked stops working.
    NonBreaking,
}

impl Class {
    /// The label reports use.
    pub fn label(self) -> &'static str {
        match self {
            Class::Breaking => "breaking",
            Class::ServerSide => "server-side",
            Class::NonBreaking => "non-breaking",
        }
    }
}

/// The part of an operation a change is in, for grouping reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// The operation itself (added, removed, renamed).
    Operation,
    /// Path and query parameters.
    Parameters,
    /// The request body.
    RequestBody,
    /// The answers.
    Responses,
    /// Authentication alternatives and their scopes.
    Security,
}

impl Section {
    /// The heading reports use.
    pub fn label(self) -> &'static str {
        match self {
            Section::Operation => "operation",
            Section::Parameters => "parameters",
            Section::RequestBody => "request body",
            Section::Responses => "responses",
            Section::Security => "security",
        }
    }
}

/// One difference between the two surfaces. Its JSON form is stable:
/// `{operation, section, location, change, class, breaking, reason}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// `METHOD /path`.
    pub operation: String,
    /// Where in the operation.
    pub section: Section,
    /// Where exactly: the operation and the place in it.
    pub location: String,
    /// What changed.
    pub change: String,
    /// Breaking, server-side or non-breaking.
    pub class: Class,
    /// `class == Breaking`, for readers that only care about that.
    pub breaking: bool,
    /// Why it is in its class, in one line.
    pub reason: &'static str,
}

impl Change {
    /// `location: change`, the text a changelog line (or an ignore entry)
    /// must contain to acknowledge the change.
    pub fn id(&self) -> String {
        format!("{}: {}", self.location, self.change)
    }
}

/// Requests and responses break in opposite directions.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// A schema reduced to what matters for compatibility.
#[derive(Debug, Clone, Default, PartialEq)]
struct Schema {
    kind: Option<String>,
    format: Option<String>,
    nullable: bool,
    values: Option<BTreeSet<String>>,
    limits: BTreeMap<String, Value>,
    properties: BTreeMap<String, Schema>,
    required: BTreeSet<String>,
    items: Option<Box<Schema>>,
    /// `oneOf`/`anyOf` alternatives, each as its normalised text (order
    /// does not matter).
    variants: Option<(String, BTreeSet<String>)>,
    /// `additionalProperties`: `Some(None)` for `true`, `Some(Some(..))`
    /// for a schema (a map type either way).
    additional: Option<Option<Box<Schema>>>,
    read_only: bool,
    write_only: bool,
    default: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
struct Parameter {
    required: bool,
    schema: Schema,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Operation {
    parameters: BTreeMap<String, Parameter>,
    body: Option<Schema>,
    responses: BTreeMap<String, Option<Schema>>,
    /// The accepted alternatives: any one is enough. Each maps a scheme to
    /// the scopes it needs.
    security: Vec<BTreeMap<String, BTreeSet<String>>>,
    /// Names the generated method.
    operation_id: Option<String>,
}

const LIMIT_KEYS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Compares two full spec documents.
pub fn diff(old: &serde_yaml::Value, new: &serde_yaml::Value) -> Result<Vec<Change>> {
    let old = model(old).context("reading the old spec")?;
    let new = model(new).context("reading the new spec")?;
    let mut changes = Vec::new();
    for (key, op) in &old {
        match new.get(key) {
            None => push(
                &mut changes,
                Class::Breaking,
                key,
                "operation removed".into(),
                "its SDK method disappears on regeneration",
            ),
            Some(new_op) => diff_operation(key, op, new_op, &mut changes),
        }
    }
    for key in new.keys().filter(|k| !old.contains_key(*k)) {
        push(
            &mut changes,
            Class::NonBreaking,
            key,
            "operation added".into(),
            "a new method; existing code is unaffected",
        );
    }
    Ok(changes)
}

fn model(full: &serde_yaml::Value) -> Result<BTreeMap<String, Operation>> {
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

fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
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

fn parameters(doc: &Value, list: Option<&Value>) -> BTreeMap<String, Parameter> {
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
fn security(requirements: &Value) -> Vec<BTreeMap<String, BTreeSet<String>>> {
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

/// An alternative's name: its schemes joined with `+`.
fn alternative_name(alternative: &BTreeMap<String, BTreeSet<String>>) -> String {
    if alternative.is_empty() {
        return "anonymous".into();
    }
    alternative.keys().cloned().collect::<Vec<_>>().join("+")
}

/// Resolves and merges a schema into the compatibility model.
fn normalize(doc: &Value, schema: &Value, depth: usize) -> Schema {
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
            Some(Value::Bool(true)) => Some(None),
            Some(value @ Value::Object(_)) => {
                Some(Some(Box::new(normalize(doc, value, depth + 1))))
            }
            _ => None,
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

fn merge(into: &mut Schema, from: Schema) {
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
    if from.additional.is_some() {
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

fn push(out: &mut Vec<Change>, class: Class, location: &str, change: String, reason: &'static str) {
    let operation = location
        .splitn(3, ' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let section = if change.starts_with("security") || change.starts_with("auth alternative") {
        Section::Security
    } else if location.contains(" request body") {
        Section::RequestBody
    } else if location.contains(" response ") {
        Section::Responses
    } else if location.contains(" parameter `") || change.contains(" parameter `") {
        Section::Parameters
    } else {
        Section::Operation
    };
    out.push(Change {
        operation,
        section,
        location: location.to_string(),
        change,
        breaking: class == Class::Breaking,
        class,
        reason,
    });
}

fn diff_operation(key: &str, old: &Operation, new: &Operation, out: &mut Vec<Change>) {
    if old.operation_id != new.operation_id {
        push(
            out,
            Class::Breaking,
            key,
            format!(
                "operationId renamed from `{}` to `{}`",
                old.operation_id.as_deref().unwrap_or("-"),
                new.operation_id.as_deref().unwrap_or("-")
            ),
            "the generated method's name changes",
        );
    }
    for (name, param) in &old.parameters {
        match new.parameters.get(name) {
            None => push(
                out,
                Class::Breaking,
                key,
                format!("{name} removed"),
                "its builder method disappears on regeneration",
            ),
            Some(new_param) => {
                if param.required != new_param.required {
                    let (class, reason, state) = if new_param.required {
                        (
                            Class::ServerSide,
                            "Asana refuses calls that leave it out; the builder still compiles",
                            "required",
                        )
                    } else {
                        (
                            Class::NonBreaking,
                            "calls that pass it keep working",
                            "optional",
                        )
                    };
                    push(out, class, key, format!("{name} is now {state}"), reason);
                }
                diff_schema(
                    &format!("{key} {name}"),
                    &param.schema,
                    &new_param.schema,
                    Side::Request,
                    out,
                );
            }
        }
    }
    for (name, param) in new
        .parameters
        .iter()
        .filter(|(n, _)| !old.parameters.contains_key(*n))
    {
        let (class, reason) = if param.required {
            (
                Class::ServerSide,
                "Asana refuses calls without it; existing code still compiles",
            )
        } else {
            (
                Class::NonBreaking,
                "optional; existing calls are unaffected",
            )
        };
        push(out, class, key, format!("{name} added"), reason);
    }
    match (&old.body, &new.body) {
        (Some(a), Some(b)) => diff_schema(&format!("{key} request body"), a, b, Side::Request, out),
        (None, Some(_)) => push(
            out,
            Class::Breaking,
            &format!("{key} request body"),
            "request body added".into(),
            "the generated method takes a body it did not take",
        ),
        (Some(_), None) => push(
            out,
            Class::Breaking,
            &format!("{key} request body"),
            "request body removed".into(),
            "its builder disappears",
        ),
        (None, None) => {}
    }
    for (status, schema) in &old.responses {
        let location = format!("{key} response {status}");
        match new.responses.get(status) {
            None => push(
                out,
                Class::Breaking,
                &location,
                "response removed".into(),
                "the generated return type changes",
            ),
            Some(new_schema) => {
                if let (Some(a), Some(b)) = (schema, new_schema) {
                    diff_schema(&location, a, b, Side::Response, out);
                }
            }
        }
    }
    for status in new
        .responses
        .keys()
        .filter(|s| !old.responses.contains_key(*s))
    {
        let location = format!("{key} response {status}");
        push(
            out,
            Class::NonBreaking,
            &location,
            "response added".into(),
            "a new outcome; existing ones decode as before",
        );
    }
    diff_security(key, &old.security, &new.security, out);
}

/// Security is a list of alternatives, any one of which is enough; they
/// are matched by their schemes, and scopes compared within each.
fn diff_security(
    key: &str,
    old: &[BTreeMap<String, BTreeSet<String>>],
    new: &[BTreeMap<String, BTreeSet<String>>],
    out: &mut Vec<Change>,
) {
    let by_name = |list: &[BTreeMap<String, BTreeSet<String>>]| -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
        list.iter().map(|a| (alternative_name(a), a.clone())).collect()
    };
    let (old, new) = (by_name(old), by_name(new));
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        push(
            out,
            Class::ServerSide,
            key,
            format!("auth alternative `{name}` removed"),
            "calls authenticated only that way are refused by Asana",
        );
    }
    for name in new.keys().filter(|n| !old.contains_key(*n)) {
        push(
            out,
            Class::ServerSide,
            key,
            format!("auth alternative `{name}` added"),
            "another way to authenticate is accepted by Asana",
        );
    }
    for (name, before) in &old {
        let Some(after) = new.get(name) else { continue };
        for (scheme, scopes) in after {
            let had = before.get(scheme).cloned().unwrap_or_default();
            for scope in scopes.difference(&had) {
                push(
                    out,
                    Class::ServerSide,
                    key,
                    format!("security: scope `{scope}` added to alternative `{name}`"),
                    "tokens without it may now be refused by Asana",
                );
            }
            for scope in had.difference(scopes) {
                push(
                    out,
                    Class::NonBreaking,
                    key,
                    format!("security: scope `{scope}` removed from alternative `{name}`"),
                    "tokens that had it still work",
                );
            }
        }
    }
}

fn describe(schema: &Schema) -> String {
    match (&schema.kind, &schema.format) {
        (Some(kind), Some(format)) => format!("{kind} ({format})"),
        (Some(kind), None) => kind.clone(),
        (None, _) => "any".into(),
    }
}

/// The Rust type the generator picks for an integer: bounds decide
/// signedness and `NonZero`, the format the width.
fn integer_type(schema: &Schema) -> Option<String> {
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
fn tighter(key: &str, old: Option<&Value>, new: Option<&Value>) -> Option<bool> {
    let lower_bound = key.starts_with("min") || key == "exclusiveMinimum";
    match (old.and_then(Value::as_f64), new.and_then(Value::as_f64)) {
        (None, Some(_)) => Some(true),
        (Some(_), None) => Some(false),
        (Some(a), Some(b)) if a != b => Some(if lower_bound { b > a } else { b < a }),
        _ => (old != new).then_some(true),
    }
}

fn diff_schema(location: &str, old: &Schema, new: &Schema, side: Side, out: &mut Vec<Change>) {
    let request = side == Side::Request;
    if old.kind != new.kind || old.format != new.format {
        push(
            out,
            Class::Breaking,
            location,
            format!("type changed from {} to {}", describe(old), describe(new)),
            "the generated Rust type changes",
        );
        return;
    }
    if let (Some(a), Some(b)) = (integer_type(old), integer_type(new))
        && a != b
    {
        push(
            out,
            Class::Breaking,
            location,
            format!("generated integer type changes from {a} to {b}"),
            "its bounds changed the generated Rust type",
        );
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
    let same_type = integer_type(old) == integer_type(new);
    let keys: BTreeSet<&String> = old.limits.keys().chain(new.limits.keys()).collect();
    for key in keys {
        let (a, b) = (old.limits.get(key), new.limits.get(key));
        let Some(tighter) = tighter(key, a, b) else {
            continue;
        };
        if !same_type && matches!(key.as_str(), "minimum" | "exclusiveMinimum") {
            // Already reported as a change of the generated type.
            continue;
        }
        let change = format!(
            "{key} changed from {} to {}",
            a.map_or("none".into(), Value::to_string),
            b.map_or("none".into(), Value::to_string)
        );
        let (class, reason) = match (request, tighter) {
            (true, true) => (
                Class::ServerSide,
                "Asana may refuse requests it took before",
            ),
            (true, false) => (Class::NonBreaking, "more requests are accepted"),
            (false, true) => (Class::NonBreaking, "answers stay within the old range"),
            (false, false) => (
                Class::NonBreaking,
                "answers may be wider; the generated type is unchanged",
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

/// Reads a spec given as a file path, or as a git revision (`REV` means
/// `REV:openapi/asana_oas.yaml`; `REV:PATH` names another file).
pub fn load(root: &std::path::Path, spec: &str) -> Result<serde_yaml::Value> {
    let path = root.join(spec);
    let bytes = if std::path::Path::new(spec).is_file() {
        std::fs::read(spec)?
    } else if path.is_file() {
        std::fs::read(&path)?
    } else {
        let object = if spec.contains(':') {
            spec.to_string()
        } else {
            format!("{spec}:{}", crate::regen::VENDORED_SPEC)
        };
        let out = std::process::Command::new("git")
            .args(["show", &object])
            .current_dir(root)
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "`{spec}` is neither a file nor a git revision: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        out.stdout
    };
    serde_yaml::from_slice(&bytes).with_context(|| format!("`{spec}` is not YAML"))
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    fn render(changes: &[Change]) -> String {
        crate::report::render(crate::report::Format::Text, changes, &[])
    }

    fn history(name: &str) -> &'static serde_yaml::Value {
        static OLD: OnceLock<serde_yaml::Value> = OnceLock::new();
        static NEW: OnceLock<serde_yaml::Value> = OnceLock::new();
        let cell = if name.contains("08-05") { &OLD } else { &NEW };
        cell.get_or_init(|| {
            let path = crate::regen::workspace_root()
                .join("../shared/asana-openapi/history")
                .join(name);
            serde_yaml::from_slice(
                &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            )
            .unwrap()
        })
    }

    const OLD: &str = "asana_oas.2024-08-05.61adf42.yaml";
    const NEW: &str = "asana_oas.2024-08-12.1420f3a.yaml";
    const ADDED: [&str; 3] = [
        "delivery_retry_count",
        "failure_deletion_timestamp",
        "next_attempt_after",
    ];

    /// The added or removed names a change is about (a property or an enum value).
    fn subject(change: &Change) -> String {
        let text = format!("{} {}", change.location, change.change);
        let last = text.rsplit('`').nth(1).unwrap_or_default();
        last.to_string()
    }

    #[test]
    fn the_real_august_2024_change_is_three_new_fields_all_non_breaking() {
        let changes = diff(history(OLD), history(NEW)).unwrap();
        assert!(!changes.is_empty());
        assert!(changes.iter().all(|c| !c.breaking), "{}", render(&changes));
        let subjects: BTreeSet<String> = changes.iter().map(subject).collect();
        assert_eq!(
            subjects,
            ADDED.iter().map(|s| s.to_string()).collect(),
            "{}",
            render(&changes)
        );
        let properties = changes
            .iter()
            .filter(|c| c.change.starts_with("added"))
            .count();
        let values = changes
            .iter()
            .filter(|c| c.change.starts_with("enum value"))
            .count();
        // Every operation answering a webhook gains three properties, and
        // every opt_fields enum gains three values.
        assert!(properties >= 3 && values >= 3, "{}", render(&changes));
        assert!(
            changes.iter().any(|c| c.location.contains(
                "GET /webhooks response 200 property `data`[] property `delivery_retry_count`"
            )),
            "{}",
            render(&changes)
        );
    }

    #[test]
    fn the_reverse_direction_is_breaking_removals() {
        let changes = diff(history(NEW), history(OLD)).unwrap();
        assert!(!changes.is_empty());
        assert!(changes.iter().all(|c| c.breaking), "{}", render(&changes));
        assert!(
            changes.iter().all(|c| c.change.contains("removed")),
            "{}",
            render(&changes)
        );
        let subjects: BTreeSet<String> = changes.iter().map(subject).collect();
        assert_eq!(subjects, ADDED.iter().map(|s| s.to_string()).collect());
    }

    #[test]
    fn a_file_against_itself_reports_nothing() {
        assert!(diff(history(NEW), history(NEW)).unwrap().is_empty());
    }

    /// A minimal full spec around a webhooks surface.
    fn spec(paths: &str, schemas: &str) -> serde_yaml::Value {
        let text = format!(
            "openapi: 3.0.0\ninfo: {{title: t, version: '1'}}\nsecurity: [{{oauth2: []}}]\npaths:\n{paths}\n  /tasks: {{get: {{responses: {{200: {{$ref: '#/components/responses/Broken'}}}}}}}}\ncomponents:\n  responses:\n    Broken: {{content: {{application/json: {{schema: {{type: [not, valid]}}}}}}}}\n  schemas:\n    ErrorResponse: {{type: object}}\n    EventResponse: {{type: object}}\n{schemas}\n"
        );
        serde_yaml::from_str(&text).unwrap()
    }

    fn base_paths(get_params: &str, body: &str, security: &str) -> String {
        format!(
            "  /webhooks:\n    get:\n      parameters: [{get_params}]\n      security: [{security}]\n      responses:\n        200: {{content: {{application/json: {{schema: {{type: object, properties: {{data: {{type: array, items: {{$ref: '#/components/schemas/Webhook'}}}}}}}}}}}}}}\n    post:\n      requestBody: {{content: {{application/json: {{schema: {{type: object, properties: {{data: {body}}}}}}}}}}}\n      responses: {{201: {{description: ok}}}}\n  /webhooks/{{webhook_gid}}: {{}}"
        )
    }

    const PARAMS: &str = "{name: workspace, in: query, required: true, schema: {type: string}}, {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}, {name: opt_fields, in: query, schema: {type: array, items: {type: string, enum: [a, b]}}}";
    const BODY: &str = "{type: object, required: [resource], properties: {resource: {type: string}, note: {type: string}}}";
    const SECURITY: &str = "{oauth2: ['webhooks:read']}";
    const WEBHOOK: &str = "    Webhook: {type: object, required: [gid], properties: {gid: {type: string}, active: {type: boolean}, resource: {type: object, properties: {name: {type: string}}}}}";

    fn base() -> serde_yaml::Value {
        spec(&base_paths(PARAMS, BODY, SECURITY), WEBHOOK)
    }

    /// The single change between the base and a variant.
    fn only_change(new: serde_yaml::Value) -> Change {
        let changes = diff(&base(), &new).unwrap();
        assert_eq!(changes.len(), 1, "{}", render(&changes));
        changes.into_iter().next().unwrap()
    }

    #[test]
    fn the_base_against_itself_reports_nothing_although_a_schema_outside_the_surface_is_invalid() {
        assert!(diff(&base(), &base()).unwrap().is_empty());
    }

    #[test]
    fn operations_added_and_removed() {
        let more = base_paths(PARAMS, BODY, SECURITY).replace(
            "  /webhooks/{webhook_gid}: {}",
            "  /webhooks/{webhook_gid}: {delete: {responses: {200: {description: ok}}}}",
        );
        let added = only_change(spec(&more, WEBHOOK));
        assert!(
            !added.breaking
                && added.change == "operation added"
                && added.location == "DELETE /webhooks/{webhook_gid}"
        );
        let removed = diff(&spec(&more, WEBHOOK), &base()).unwrap();
        assert!(removed[0].breaking && removed[0].change == "operation removed");
    }

    #[test]
    fn parameters_added_removed_and_required() {
        let optional = only_change(spec(
            &base_paths(
                &format!("{PARAMS}, {{name: resource, in: query, schema: {{type: string}}}}"),
                BODY,
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(!optional.breaking && optional.change.contains("`resource` added"));
        let required = only_change(spec(
            &base_paths(
                &format!(
                    "{PARAMS}, {{name: resource, in: query, required: true, schema: {{type: string}}}}"
                ),
                BODY,
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert_eq!(required.class, Class::ServerSide, "{required:?}");
        let removed = only_change(spec(
            &base_paths(
                &PARAMS.replace(
                    ", {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 100}}",
                    "",
                ),
                BODY,
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(removed.breaking && removed.change.contains("`limit` removed"));
        let now_optional = only_change(spec(
            &base_paths(
                &PARAMS.replace("required: true", "required: false"),
                BODY,
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(!now_optional.breaking && now_optional.change.contains("now optional"));
    }

    #[test]
    fn parameter_types_constraints_and_enum_values() {
        let retyped = only_change(spec(
            &base_paths(
                &PARAMS.replace(
                    "{name: workspace, in: query, required: true, schema: {type: string}}",
                    "{name: workspace, in: query, required: true, schema: {type: integer}}",
                ),
                BODY,
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(retyped.breaking && retyped.change.contains("type changed"));
        let tighter = only_change(spec(
            &base_paths(
                &PARAMS.replace("maximum: 100", "maximum: 50"),
                BODY,
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(
            tighter.class == Class::ServerSide
                && tighter.change.contains("maximum changed from 100 to 50"),
            "{tighter:?}"
        );
        let looser = only_change(spec(
            &base_paths(
                &PARAMS.replace("maximum: 100", "maximum: 500"),
                BODY,
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(!looser.breaking);
        let new_max = only_change(spec(
            &base_paths(
                &PARAMS.replace(
                    "{type: string}}, {name: limit",
                    "{type: string, maxLength: 20}}, {name: limit",
                ),
                BODY,
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(new_max.class == Class::ServerSide && new_max.change.contains("maxLength"));
        let value_added = only_change(spec(
            &base_paths(
                &PARAMS.replace("enum: [a, b]", "enum: [a, b, c]"),
                BODY,
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(!value_added.breaking && value_added.change == "enum value `c` added");
        let value_removed = only_change(spec(
            &base_paths(&PARAMS.replace("enum: [a, b]", "enum: [a]"), BODY, SECURITY),
            WEBHOOK,
        ));
        assert!(value_removed.breaking && value_removed.change == "enum value `b` removed");
    }

    #[test]
    fn request_properties() {
        let added = only_change(spec(
            &base_paths(
                PARAMS,
                &BODY.replace(
                    "note: {type: string}",
                    "note: {type: string}, extra: {type: string}",
                ),
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(!added.breaking && added.location.contains("property `extra`"));
        let required = only_change(spec(
            &base_paths(
                PARAMS,
                &BODY.replace("required: [resource]", "required: [resource, note]"),
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(required.breaking && required.change == "now required");
        let removed = only_change(spec(
            &base_paths(
                PARAMS,
                &BODY.replace(", note: {type: string}", ""),
                SECURITY,
            ),
            WEBHOOK,
        ));
        assert!(removed.breaking && removed.change == "removed");
    }

    #[test]
    fn response_properties_at_any_depth() {
        let variant = |webhook: &str| spec(&base_paths(PARAMS, BODY, SECURITY), webhook);
        let added = only_change(variant(&WEBHOOK.replace(
            "name: {type: string}",
            "name: {type: string}, color: {type: string}",
        )));
        assert!(
            !added.breaking
                && added
                    .location
                    .ends_with("property `resource` property `color`"),
            "{added:?}"
        );
        let removed = only_change(variant(&WEBHOOK.replace(", active: {type: boolean}", "")));
        assert!(removed.breaking && removed.change == "removed");
        let format = only_change(variant(&WEBHOOK.replace(
            "name: {type: string}",
            "name: {type: string, format: date-time}",
        )));
        assert!(format.breaking && format.change.contains("string (date-time)"));
        let nullable = only_change(variant(&WEBHOOK.replace(
            "name: {type: string}",
            "name: {type: string, nullable: true}",
        )));
        assert!(nullable.breaking && nullable.change == "now nullable");
        let optional = only_change(variant(&WEBHOOK.replace("required: [gid]", "required: []")));
        assert!(optional.breaking && optional.change == "now optional");
    }

    #[test]
    fn security_scopes() {
        let added = only_change(spec(
            &base_paths(
                PARAMS,
                BODY,
                "{oauth2: ['webhooks:read', 'webhooks:admin']}",
            ),
            WEBHOOK,
        ));
        assert!(added.class == Class::ServerSide && added.change.contains("webhooks:admin"));
        assert_eq!(added.section, Section::Security);
        let removed = only_change(spec(&base_paths(PARAMS, BODY, "{oauth2: []}"), WEBHOOK));
        assert!(removed.class == Class::NonBreaking && removed.change.contains("webhooks:read"));
    }

    #[test]
    fn a_ref_refactor_that_keeps_the_meaning_is_no_change() {
        let inlined = base_paths(PARAMS, BODY, SECURITY).replace(
            "{$ref: '#/components/schemas/Webhook'}",
            "{allOf: [{type: object, required: [gid], properties: {gid: {type: string}}}, {$ref: '#/components/schemas/Rest'}]}",
        );
        let rest = "    Rest: {type: object, properties: {active: {type: boolean}, resource: {type: object, properties: {name: {type: string}}}}}";
        let changes = diff(&base(), &spec(&inlined, rest)).unwrap();
        assert!(changes.is_empty(), "{}", render(&changes));
    }

    // --- security as alternatives -------------------------------------

    #[test]
    fn an_alternative_listed_again_is_one_server_side_change_not_five_breaking() {
        let relisted = only_change(spec(
            &base_paths(
                PARAMS,
                BODY,
                &format!("{SECURITY}, {{personalAccessToken: []}}"),
            ),
            WEBHOOK,
        ));
        assert_eq!(relisted.class, Class::ServerSide);
        assert_eq!(
            relisted.change,
            "auth alternative `personalAccessToken` added"
        );
        let dropped = diff(
            &spec(
                &base_paths(
                    PARAMS,
                    BODY,
                    &format!("{SECURITY}, {{personalAccessToken: []}}"),
                ),
                WEBHOOK,
            ),
            &base(),
        )
        .unwrap();
        assert_eq!(dropped.len(), 1, "{}", render(&dropped));
        assert_eq!(
            dropped[0].change,
            "auth alternative `personalAccessToken` removed"
        );
        assert_eq!(dropped[0].class, Class::ServerSide);
    }

    #[test]
    fn the_real_2026_change_adds_oauth_scopes_server_side_only() {
        let vendored: serde_yaml::Value = serde_yaml::from_slice(
            &std::fs::read(crate::regen::workspace_root().join(crate::regen::VENDORED_SPEC))
                .unwrap(),
        )
        .unwrap();
        let changes = diff(history(NEW), &vendored).unwrap();
        assert_eq!(changes.len(), 5, "{}", render(&changes));
        assert!(
            changes.iter().all(|c| c.class == Class::ServerSide
                && c.section == Section::Security
                && c.change.starts_with("security: scope `webhooks:")
                && c.change.ends_with("added to alternative `oauth2`")),
            "{}",
            render(&changes)
        );
    }

    // --- enums and the generated type -----------------------------------

    #[test]
    fn an_enum_that_appears_or_disappears_is_breaking() {
        let plain = PARAMS.replace(
            "items: {type: string, enum: [a, b]}",
            "items: {type: string}",
        );
        let free = spec(&base_paths(&plain, BODY, SECURITY), WEBHOOK);
        let appeared = diff(&free, &base()).unwrap();
        assert_eq!(appeared.len(), 1, "{}", render(&appeared));
        assert!(appeared[0].breaking && appeared[0].change == "now an enum of 2 values");
        let vanished = only_change(free);
        assert!(vanished.breaking && vanished.change.starts_with("no longer an enum"));
    }

    #[test]
    fn bounds_that_change_the_generated_integer_type_are_breaking() {
        let unbounded = PARAMS.replace(
            "{type: integer, minimum: 1, maximum: 100}",
            "{type: integer, maximum: 100}",
        );
        let dropped = only_change(spec(&base_paths(&unbounded, BODY, SECURITY), WEBHOOK));
        assert!(dropped.breaking, "{dropped:?}");
        assert_eq!(
            dropped.change,
            "generated integer type changes from NonZeroU64 to i64"
        );
        let zero = PARAMS.replace("minimum: 1", "minimum: 0");
        let to_zero = only_change(spec(&base_paths(&zero, BODY, SECURITY), WEBHOOK));
        assert_eq!(
            to_zero.change,
            "generated integer type changes from NonZeroU64 to u64"
        );
        let width = PARAMS.replace(
            "{type: integer, minimum: 1",
            "{type: integer, format: int32, minimum: 1",
        );
        assert!(only_change(spec(&base_paths(&width, BODY, SECURITY), WEBHOOK)).breaking);
        // A tighter bound that keeps the type is Asana's business.
        let tighter = PARAMS.replace("minimum: 1", "minimum: 5");
        let kept = only_change(spec(&base_paths(&tighter, BODY, SECURITY), WEBHOOK));
        assert_eq!(kept.class, Class::ServerSide, "{kept:?}");
    }

    #[test]
    fn a_renamed_operation_id_is_breaking() {
        let named = |id: &str| {
            spec(
                &base_paths(PARAMS, BODY, SECURITY).replace(
                    "    get:\n",
                    &format!("    get:\n      operationId: {id}\n"),
                ),
                WEBHOOK,
            )
        };
        let changes = diff(&named("getWebhooks"), &named("listWebhooks")).unwrap();
        assert_eq!(changes.len(), 1, "{}", render(&changes));
        assert!(
            changes[0].breaking
                && changes[0]
                    .change
                    .contains("`getWebhooks` to `listWebhooks`")
        );
        assert_eq!(changes[0].section, Section::Operation);
    }

    #[test]
    fn specs_without_the_extra_schemas_are_comparable() {
        let without = |text: String| {
            let mut value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            let schemas = value["components"]["schemas"].as_mapping_mut().unwrap();
            schemas.remove("ErrorResponse");
            schemas.remove("EventResponse");
            value
        };
        let old = without(serde_yaml::to_string(&base()).unwrap());
        assert!(diff(&old, &base()).unwrap().is_empty());
        assert!(diff(&base(), &old).unwrap().is_empty());
    }

    // --- oneOf, anyOf, additionalProperties, readOnly, writeOnly, default --

    fn webhook_with(extra: &str) -> serde_yaml::Value {
        spec(
            &base_paths(PARAMS, BODY, SECURITY),
            &WEBHOOK.replace(
                "active: {type: boolean}",
                &format!("active: {{type: boolean}}, {extra}"),
            ),
        )
    }

    #[test]
    fn alternatives_maps_access_and_defaults_are_compared() {
        let one_of = "extra: {oneOf: [{type: string}, {type: integer}]}";
        let one_of_more = "extra: {oneOf: [{type: string}, {type: integer}, {type: boolean}]}";
        let changed = diff(&webhook_with(one_of), &webhook_with(one_of_more)).unwrap();
        assert_eq!(changed.len(), 1, "{}", render(&changed));
        assert!(changed[0].breaking && changed[0].change == "oneOf alternatives changed");
        let reordered = "extra: {oneOf: [{type: integer}, {type: string}]}";
        assert!(
            diff(&webhook_with(one_of), &webhook_with(reordered))
                .unwrap()
                .is_empty()
        );
        let any_of = diff(
            &webhook_with("extra: {anyOf: [{type: string}]}"),
            &webhook_with("extra: {anyOf: [{type: string}, {type: integer}]}"),
        )
        .unwrap();
        assert!(
            any_of.len() == 1
                && any_of[0].breaking
                && any_of[0].change == "anyOf alternatives changed",
            "{}",
            render(&any_of)
        );

        let map = diff(
            &webhook_with("extra: {type: object}"),
            &webhook_with("extra: {type: object, additionalProperties: {type: string}}"),
        )
        .unwrap();
        assert!(
            map.len() == 1
                && map[0].breaking
                && map[0].change == "now allows additional properties"
        );
        let values = diff(
            &webhook_with("extra: {type: object, additionalProperties: {type: string}}"),
            &webhook_with("extra: {type: object, additionalProperties: {type: integer}}"),
        )
        .unwrap();
        assert!(
            values.len() == 1 && values[0].breaking && values[0].location.ends_with("{*}"),
            "{}",
            render(&values)
        );

        let read_only = diff(
            &spec(&base_paths(PARAMS, BODY, SECURITY), WEBHOOK),
            &spec(
                &base_paths(
                    PARAMS,
                    &BODY.replace(
                        "note: {type: string}",
                        "note: {type: string, readOnly: true}",
                    ),
                    SECURITY,
                ),
                WEBHOOK,
            ),
        )
        .unwrap();
        assert!(
            read_only.len() == 1
                && read_only[0].class == Class::ServerSide
                && read_only[0].change == "now read-only"
        );
        let write_only = diff(
            &webhook_with("extra: {type: string}"),
            &webhook_with("extra: {type: string, writeOnly: true}"),
        )
        .unwrap();
        assert!(write_only.len() == 1 && write_only[0].class == Class::NonBreaking);

        let default = diff(
            &spec(&base_paths(PARAMS, BODY, SECURITY), WEBHOOK),
            &spec(
                &base_paths(
                    &PARAMS.replace("maximum: 100}", "maximum: 100, default: 20}"),
                    BODY,
                    SECURITY,
                ),
                WEBHOOK,
            ),
        )
        .unwrap();
        assert!(
            default.len() == 1
                && default[0].class == Class::ServerSide
                && default[0].change == "default changed from none to 20",
            "{}",
            render(&default)
        );
    }
}
