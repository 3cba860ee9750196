//! Extraction of the webhooks surface from Asana's full OpenAPI document.
//!
//! The full document has ~170 paths and some schemas that strict OpenAPI
//! parsers refuse, so everything here works on untyped YAML values: take the
//! webhook paths, follow every `$ref` transitively, and copy only what is
//! reached. Only afterwards is the much smaller result parsed strictly.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};
use serde_yaml::{Mapping, Value};

/// The paths that make up the surface: the webhooks API, and the Events
/// API (`getEvents`), which recovers the events a webhook never delivered.
pub const SURFACE_PATHS: &[&str] = &["/webhooks", "/webhooks/{webhook_gid}", "/events"];

/// Schemas kept although no operation's success answer references them:
/// the error body (referenced only through `components.responses`, kept for
/// clarity) and the event that deliveries carry (referenced by getEvents'
/// answer too, kept in its own right: deliveries use it).
pub const EXTRA_SCHEMAS: &[&str] = &["ErrorResponse", "EventResponse"];

/// Top-level `info` keys worth keeping; the rest is documentation-site data
/// (schema whitelists, public descriptions).
const INFO_KEYS: &[&str] = &[
    "title",
    "description",
    "termsOfService",
    "contact",
    "license",
    "version",
];

/// Returns the webhooks surface of `full`: `openapi`, `info`, `servers`,
/// `security`, the [`SURFACE_PATHS`], and every component they reference,
/// transitively, in the order the full document lists them. Vendor
/// extensions (`x-readme` code samples, `x-insert-after`, …) are dropped:
/// they only drive Asana's documentation site.
pub fn extract(full: &Value) -> Result<Value> {
    extract_with(full, true)
}

/// Like [`extract`], but an extra schema or a surface path a version lacks
/// is left out rather than an error: comparisons look at the operations
/// only, and a path one version lacks shows as its operations added or
/// removed. A document with none of the surface paths is still an error.
pub fn extract_lenient(full: &Value) -> Result<Value> {
    extract_with(full, false)
}

fn extract_with(full: &Value, strict: bool) -> Result<Value> {
    let paths = full
        .get("paths")
        .and_then(Value::as_mapping)
        .context("the spec has no `paths` mapping")?;
    let mut out_paths = Mapping::new();
    for path in SURFACE_PATHS {
        match paths.get(*path) {
            Some(item) => {
                out_paths.insert(Value::from(*path), strip_extensions(item));
            }
            None if strict => bail!("the spec has no path `{path}`"),
            None => {}
        }
    }
    if out_paths.is_empty() {
        bail!("the spec has none of the paths {SURFACE_PATHS:?}");
    }

    // Collect the references reachable from the paths and the extra schemas.
    let mut wanted: BTreeSet<String> = EXTRA_SCHEMAS
        .iter()
        .map(|name| format!("#/components/schemas/{name}"))
        .filter(|reference| strict || resolve(full, reference).is_ok())
        .collect();
    for item in out_paths.values() {
        collect_refs(item, &mut wanted);
    }
    let mut done = BTreeSet::new();
    while let Some(reference) = wanted.iter().find(|r| !done.contains(*r)).cloned() {
        let target = resolve(full, &reference)?;
        let mut found = BTreeSet::new();
        collect_refs(&strip_extensions(target), &mut found);
        wanted.extend(found);
        done.insert(reference);
    }

    let mut out = Mapping::new();
    out.insert(
        "openapi".into(),
        full.get("openapi")
            .cloned()
            .context("no `openapi` version")?,
    );
    let mut info = Mapping::new();
    if let Some(full_info) = full.get("info").and_then(Value::as_mapping) {
        for key in INFO_KEYS {
            if let Some(v) = full_info.get(*key) {
                info.insert(Value::from(*key), v.clone());
            }
        }
    }
    out.insert("info".into(), Value::Mapping(info));
    for key in ["servers", "security"] {
        if let Some(v) = full.get(key) {
            out.insert(key.into(), strip_extensions(v));
        }
    }
    out.insert("paths".into(), Value::Mapping(out_paths));

    let full_components = full
        .get("components")
        .and_then(Value::as_mapping)
        .context("the spec has no `components`")?;
    let mut components = Mapping::new();
    for (section, entries) in full_components {
        let (Some(section_name), Some(entries)) = (section.as_str(), entries.as_mapping()) else {
            continue;
        };
        let mut kept = Mapping::new();
        for (name, value) in entries {
            let Some(name) = name.as_str() else { continue };
            let reference = format!("#/components/{section_name}/{name}");
            // Security schemes are referenced by name from `security`, not by `$ref`.
            if section_name == "securitySchemes" || done.contains(&reference) {
                kept.insert(Value::from(name), strip_extensions(value));
            }
        }
        if !kept.is_empty() {
            components.insert(Value::from(section_name), Value::Mapping(kept));
        }
    }
    out.insert("components".into(), Value::Mapping(components));
    Ok(Value::Mapping(out))
}

/// Follows a local JSON pointer such as `#/components/schemas/Error`.
pub fn resolve<'a>(doc: &'a Value, reference: &str) -> Result<&'a Value> {
    let Some(pointer) = reference.strip_prefix("#/") else {
        bail!("only local references are supported, found `{reference}`");
    };
    let mut node = doc;
    for part in pointer.split('/') {
        let part = part.replace("~1", "/").replace("~0", "~");
        node = node
            .get(part.as_str())
            .with_context(|| format!("`{reference}` does not resolve (no `{part}`)"))?;
    }
    Ok(node)
}

/// Adds every `$ref` string found anywhere below `value` to `out`.
pub fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                if k.as_str() == Some("$ref") {
                    if let Some(r) = v.as_str() {
                        out.insert(r.to_string());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Sequence(seq) => seq.iter().for_each(|v| collect_refs(v, out)),
        Value::Tagged(tagged) => collect_refs(&tagged.value, out),
        _ => {}
    }
}

/// A copy of `value` without any `x-…` keys, at every depth.
pub fn strip_extensions(value: &Value) -> Value {
    match value {
        Value::Mapping(map) => Value::Mapping(
            map.iter()
                .filter(|(k, _)| !k.as_str().is_some_and(|k| k.starts_with("x-")))
                .map(|(k, v)| (k.clone(), strip_extensions(v)))
                .collect(),
        ),
        Value::Sequence(seq) => Value::Sequence(seq.iter().map(strip_extensions).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn keeps_only_reachable_components_and_drops_extensions() {
        let full = yaml(
            r##"
openapi: 3.0.0
info: {title: T, version: "1.0", x-docs-schema-whitelist: [A]}
paths:
  /webhooks:
    get:
      x-readme: {code-samples: []}
      responses:
        200: {$ref: '#/components/responses/Ok'}
  /webhooks/{webhook_gid}: {}
  /events: {}
  /tasks: {get: {responses: {200: {$ref: '#/components/responses/Tasks'}}}}
components:
  responses:
    Ok: {description: ok, content: {application/json: {schema: {$ref: '#/components/schemas/A'}}}}
    Tasks: {description: t}
  schemas:
    A: {type: object, properties: {b: {$ref: '#/components/schemas/B'}}, x-insert-after: gid}
    B: {type: string}
    Unused: {type: string}
    ErrorResponse: {type: object}
    EventResponse: {type: object, properties: {u: {$ref: '#/components/schemas/User'}}}
    User: {type: object}
  securitySchemes:
    token: {type: http, scheme: bearer}
"##,
        );
        let surface = extract(&full).unwrap();
        let schemas = surface["components"]["schemas"].as_mapping().unwrap();
        let names: Vec<_> = schemas.keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(names, ["A", "B", "ErrorResponse", "EventResponse", "User"]);
        assert!(surface["paths"].get("/tasks").is_none());
        assert!(
            surface["paths"]["/webhooks"]["get"]
                .get("x-readme")
                .is_none()
        );
        assert!(schemas["A"].get("x-insert-after").is_none());
        assert!(surface["info"].get("x-docs-schema-whitelist").is_none());
        assert!(surface["components"]["responses"].get("Tasks").is_none());
        assert!(
            surface["components"]["securitySchemes"]
                .get("token")
                .is_some()
        );
    }

    #[test]
    fn a_dangling_reference_is_an_error() {
        let full = yaml(
            r##"
openapi: 3.0.0
info: {title: T, version: "1"}
paths:
  /webhooks: {get: {responses: {200: {$ref: '#/components/responses/Missing'}}}}
  /webhooks/{webhook_gid}: {}
  /events: {}
components: {schemas: {ErrorResponse: {}, EventResponse: {}}}
"##,
        );
        let err = extract(&full).unwrap_err().to_string();
        assert!(err.contains("#/components/responses/Missing"), "{err}");
    }

    #[test]
    fn a_missing_path_is_an_error_for_regen_and_left_out_for_comparisons() {
        let full = yaml(
            r##"
openapi: 3.0.0
info: {title: T, version: "1"}
paths:
  /webhooks: {get: {responses: {200: {description: ok}}}}
  /webhooks/{webhook_gid}: {}
components: {schemas: {ErrorResponse: {}, EventResponse: {}}}
"##,
        );
        let err = extract(&full).unwrap_err().to_string();
        assert!(err.contains("no path `/events`"), "{err}");
        let surface = extract_lenient(&full).unwrap();
        let paths: Vec<_> = surface["paths"]
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(paths, ["/webhooks", "/webhooks/{webhook_gid}"]);

        let unrelated = yaml(
            "openapi: 3.0.0\ninfo: {title: T, version: '1'}\npaths: {/tasks: {}}\ncomponents: {}\n",
        );
        let err = extract_lenient(&unrelated).unwrap_err().to_string();
        assert!(err.contains("none of the paths"), "{err}");
    }
}
