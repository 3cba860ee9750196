//! `cargo xtask spec-diff OLD NEW`: what changed on the webhooks surface
//! between two versions of Asana's spec, and whether it breaks code that
//! uses this SDK.
//!
//! Both versions go through the extraction regen uses (so schemas outside
//! the surface never need to parse), then into a semantic model: `$ref`s
//! resolved, `allOf` merged, path-level parameters folded into their
//! operations, descriptions and examples ignored. A refactor that keeps the
//! meaning is therefore no change.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::surface;

/// One difference between the two surfaces.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Whether code that uses the SDK can break.
    pub breaking: bool,
    /// Where: the operation and the place in it.
    pub location: String,
    /// What changed.
    pub change: String,
    /// Why it is (non-)breaking, in one line.
    pub reason: &'static str,
}

impl Change {
    /// `location: change`, the text a changelog line must contain to
    /// acknowledge a breaking change.
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
    /// `scheme` or `scheme:scope` for every accepted requirement.
    security: BTreeSet<String>,
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
            None => changes.push(Change {
                breaking: true,
                location: key.clone(),
                change: "operation removed".into(),
                reason: "its SDK method disappears on regeneration",
            }),
            Some(new_op) => diff_operation(key, op, new_op, &mut changes),
        }
    }
    for key in new.keys().filter(|k| !old.contains_key(*k)) {
        changes.push(Change {
            breaking: false,
            location: key.clone(),
            change: "operation added".into(),
            reason: "a new method; existing code is unaffected",
        });
    }
    Ok(changes)
}

fn model(full: &serde_yaml::Value) -> Result<BTreeMap<String, Operation>> {
    let surface: Value = serde_json::to_value(surface::extract(full)?)
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
            operations.insert(
                format!("{} {path}", method.to_uppercase()),
                Operation {
                    parameters,
                    body,
                    responses,
                    security,
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

fn security(requirements: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for requirement in requirements.as_array().into_iter().flatten() {
        for (scheme, scopes) in requirement.as_object().into_iter().flatten() {
            out.insert(scheme.clone());
            for scope in scopes
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                out.insert(format!("{scheme}:{scope}"));
            }
        }
    }
    out
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
    if let Some(items) = from.items {
        match &mut into.items {
            Some(existing) => merge(existing, *items),
            None => into.items = Some(items),
        }
    }
}

fn push(
    out: &mut Vec<Change>,
    breaking: bool,
    location: &str,
    change: String,
    reason: &'static str,
) {
    out.push(Change {
        breaking,
        location: location.to_string(),
        change,
        reason,
    });
}

fn diff_operation(key: &str, old: &Operation, new: &Operation, out: &mut Vec<Change>) {
    for (name, param) in &old.parameters {
        match new.parameters.get(name) {
            None => push(
                out,
                true,
                key,
                format!("{name} removed"),
                "its builder method disappears on regeneration",
            ),
            Some(new_param) => {
                if param.required != new_param.required {
                    let (breaking, reason) = if new_param.required {
                        (true, "calls that leave it out are refused")
                    } else {
                        (false, "calls that pass it keep working")
                    };
                    let state = if new_param.required {
                        "required"
                    } else {
                        "optional"
                    };
                    push(out, breaking, key, format!("{name} is now {state}"), reason);
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
        let (breaking, reason) = if param.required {
            (true, "existing calls lack it and are refused")
        } else {
            (false, "optional; existing calls are unaffected")
        };
        push(out, breaking, key, format!("{name} added"), reason);
    }
    match (&old.body, &new.body) {
        (Some(a), Some(b)) => diff_schema(&format!("{key} request body"), a, b, Side::Request, out),
        (None, Some(_)) => push(
            out,
            true,
            key,
            "request body added".into(),
            "existing calls send none",
        ),
        (Some(_), None) => push(
            out,
            true,
            key,
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
                true,
                &location,
                "response removed".into(),
                "code handling it no longer compiles",
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
            false,
            &location,
            "response added".into(),
            "a new outcome; existing ones decode as before",
        );
    }
    for requirement in old.security.difference(&new.security) {
        push(
            out,
            false,
            key,
            format!("security `{requirement}` no longer required"),
            "tokens that had it still work",
        );
    }
    for requirement in new.security.difference(&old.security) {
        push(
            out,
            true,
            key,
            format!("security `{requirement}` now required"),
            "tokens without it are refused",
        );
    }
}

fn describe(schema: &Schema) -> String {
    match (&schema.kind, &schema.format) {
        (Some(kind), Some(format)) => format!("{kind} ({format})"),
        (Some(kind), None) => kind.clone(),
        (None, _) => "any".into(),
    }
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
            true,
            location,
            format!("type changed from {} to {}", describe(old), describe(new)),
            "the generated Rust type changes",
        );
        return;
    }
    if old.nullable != new.nullable {
        let (breaking, reason) = match (request, new.nullable) {
            (false, true) => (true, "answers may now hold null where code expects a value"),
            (false, false) => (false, "answers hold a value where null was allowed"),
            (true, true) => (false, "requests may now send null"),
            (true, false) => (true, "requests that send null are refused"),
        };
        let state = if new.nullable {
            "nullable"
        } else {
            "not nullable"
        };
        push(out, breaking, location, format!("now {state}"), reason);
    }
    if let (Some(a), Some(b)) = (&old.values, &new.values) {
        for value in b.difference(a) {
            let (breaking, reason) = if request {
                (false, "a new value callers may send")
            } else {
                (
                    true,
                    "an answer with it fails to decode into the generated enum",
                )
            };
            push(
                out,
                breaking,
                location,
                format!("enum value `{value}` added"),
                reason,
            );
        }
        for value in a.difference(b) {
            let (breaking, reason) = if request {
                (
                    true,
                    "its generated enum variant disappears and the server refuses it",
                )
            } else {
                (false, "answers no longer carry it")
            };
            push(
                out,
                breaking,
                location,
                format!("enum value `{value}` removed"),
                reason,
            );
        }
    }
    let keys: BTreeSet<&String> = old.limits.keys().chain(new.limits.keys()).collect();
    for key in keys {
        let (a, b) = (old.limits.get(key), new.limits.get(key));
        let Some(tighter) = tighter(key, a, b) else {
            continue;
        };
        let change = format!(
            "{key} changed from {} to {}",
            a.map_or("none".into(), Value::to_string),
            b.map_or("none".into(), Value::to_string)
        );
        let (breaking, reason) = match (request, tighter) {
            (true, true) => (true, "requests valid before may now be refused"),
            (true, false) => (false, "more requests are accepted"),
            (false, true) => (false, "answers stay within the old range"),
            (false, false) => (true, "answers may fall outside the range code relied on"),
        };
        push(out, breaking, location, change, reason);
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
                push(out, true, &at, "removed".into(), reason);
            }
            Some(new_property) => {
                let (was, is) = (old.required.contains(name), new.required.contains(name));
                if was != is {
                    let (breaking, reason) = match (request, is) {
                        (true, true) => (true, "requests that leave it out are refused"),
                        (true, false) => (false, "requests may now leave it out"),
                        (false, true) => (false, "answers always carry it now"),
                        (false, false) => (true, "answers may now leave it out"),
                    };
                    let state = if is { "required" } else { "optional" };
                    push(out, breaking, &at, format!("now {state}"), reason);
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
        let (breaking, reason) = match (request, required) {
            (true, true) => (true, "existing requests lack it and are refused"),
            (true, false) => (false, "optional; existing requests are unaffected"),
            (false, _) => (false, "new data in answers; existing code ignores it"),
        };
        push(
            out,
            breaking,
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
                true,
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

/// The human-readable report.
pub fn render(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes on the webhooks surface\n".into();
    }
    let breaking = changes.iter().filter(|c| c.breaking).count();
    let mut out = format!(
        "{} change(s) on the webhooks surface, {breaking} breaking\n",
        changes.len()
    );
    for change in changes {
        let tag = if change.breaking {
            "BREAKING    "
        } else {
            "non-breaking"
        };
        out.push_str(&format!(
            "{tag}  {}: {}\n              {}\n",
            change.location, change.change, change.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

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
        assert!(required.breaking);
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
            tighter.breaking && tighter.change.contains("maximum changed from 100 to 50"),
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
        assert!(new_max.breaking && new_max.change.contains("maxLength"));
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
        assert!(added.breaking && added.change.contains("webhooks:admin"));
        let removed = only_change(spec(&base_paths(PARAMS, BODY, "{oauth2: []}"), WEBHOOK));
        assert!(!removed.breaking && removed.change.contains("webhooks:read"));
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
}
