//! Every change made to Asana's webhooks surface before progenitor sees it.
//!
//! This is the one place where the derived spec differs from the official
//! one. Each fix names what it changes and why; a fix whose target is no
//! longer in the spec is an error, so an upstream change can never make a
//! fix silently stop applying (or apply somewhere unexpected).

use anyhow::{Context, Result, bail};
use serde_yaml::{Mapping, Value};

use crate::surface;

/// One documented change to the extracted surface.
pub struct Fix {
    /// Short identifier, listed in the derived spec's header.
    pub name: &'static str,
    /// Why the change is needed.
    pub reason: &'static str,
    apply: fn(&mut Value) -> Result<()>,
}

/// The fixes, applied in this order.
pub const FIXES: &[Fix] = &[
    Fix {
        name: "nullable-webhook-timestamps",
        reason: "Asana answers `null` for the unset timestamps and `last_failure_content` of a \
                 webhook (see the 201 example in createWebhook), which the spec does not mark \
                 nullable; responses must validate against the derived spec.",
        apply: nullable_webhook_timestamps,
    },
    Fix {
        name: "nullable-event-user-parent",
        reason: "Events carry `user: null` for system events and `parent: null` for all but \
                 added/removed, as the EventResponse description itself says.",
        apply: nullable_event_user_parent,
    },
    Fix {
        name: "named-opt-fields-enums",
        reason: "getWebhook, createWebhook and updateWebhook declare the same inline `opt_fields` \
                 enum; progenitor would emit three identical Rust enums. Hoisting them into \
                 `WebhookOptField` (and getWebhooks' larger one into `WebhookListOptField`) gives \
                 users one typed field name per concept. The wire format is unchanged.",
        apply: named_opt_fields_enums,
    },
    Fix {
        name: "plain-filter-items",
        reason: "Filter items are `allOf: [WebhookFilter, {description}, {type: object}]`, which \
                 only adds a description but makes progenitor emit a second, incompatible filter \
                 struct per request type. They become a plain `$ref` to WebhookFilter.",
        apply: plain_filter_items,
    },
    Fix {
        name: "update-filters-absent-or-empty",
        reason: "updateWebhook replaces the whole `filters` array, so `filters: []` (clear them) \
                 must differ from leaving the key out. As a non-nullable optional array, \
                 progenitor skips an empty Vec when serializing; as nullable it becomes \
                 `Option<Vec<_>>`, where `Some(vec![])` is sent as `[]`.",
        apply: update_filters_absent_or_empty,
    },
    Fix {
        name: "error-responses-decoded-by-hand",
        reason: "progenitor drops the HTTP status when an error body is not JSON (an HTML 502 \
                 from a proxy) and cannot know the statuses Asana sends but does not declare \
                 (402, 429, 451, 503). Removing the 4xx/5xx responses from the operations makes \
                 every non-2xx answer reach the one hand-written decoder \
                 (asana-webhooks/src/error.rs) with its status, headers and body. The error \
                 schemas stay in `components`.",
        apply: error_responses_decoded_by_hand,
    },
    Fix {
        name: "text-code-fences",
        reason: "Unlabelled ``` fences in descriptions become rustdoc comments that rustdoc \
                 compiles as Rust doctests (they hold curl and HTTP transcripts); labelling them \
                 `text` keeps them as documentation.",
        apply: text_code_fences,
    },
];

/// Applies every fix to the surface, in order.
pub fn apply_all(surface: &mut Value) -> Result<()> {
    for fix in FIXES {
        (fix.apply)(surface)
            .with_context(|| format!("spec fix `{}` no longer applies", fix.name))?;
    }
    Ok(())
}

/// Walks `path` (mapping keys, or sequence indices written as numbers).
fn at<'a>(root: &'a mut Value, path: &[&str]) -> Result<&'a mut Value> {
    let mut node = root;
    for key in path {
        node = match node {
            Value::Sequence(seq) => {
                let i: usize = key
                    .parse()
                    .with_context(|| format!("`{key}` is not an index"))?;
                seq.get_mut(i).with_context(|| format!("no index {i}"))?
            }
            Value::Mapping(map) => map
                .get_mut(*key)
                .with_context(|| format!("no key `{key}` in {path:?}"))?,
            _ => bail!("`{key}` of {path:?} is not inside a mapping or sequence"),
        };
    }
    Ok(node)
}

fn set(node: &mut Value, key: &str, value: Value) -> Result<()> {
    node.as_mapping_mut()
        .context("expected a mapping")?
        .insert(Value::from(key), value);
    Ok(())
}

fn nullable_webhook_timestamps(spec: &mut Value) -> Result<()> {
    let props = at(
        spec,
        &[
            "components",
            "schemas",
            "WebhookResponse",
            "allOf",
            "1",
            "properties",
        ],
    )?;
    for field in [
        "created_at",
        "last_failure_at",
        "last_failure_content",
        "last_success_at",
        "next_attempt_after",
        "failure_deletion_timestamp",
    ] {
        set(at(props, &[field])?, "nullable", Value::Bool(true))?;
    }
    Ok(())
}

fn nullable_event_user_parent(spec: &mut Value) -> Result<()> {
    let props = at(
        spec,
        &["components", "schemas", "EventResponse", "properties"],
    )?;
    for field in ["user", "parent"] {
        let prop = at(props, &[field])?;
        at(prop, &["allOf"])?;
        set(prop, "nullable", Value::Bool(true))?;
    }
    Ok(())
}

/// The operations whose `opt_fields` enum is hoisted, and the schema name each gets.
const OPT_FIELDS: &[(&str, &str, &str)] = &[
    ("/webhooks", "get", "WebhookListOptField"),
    ("/webhooks", "post", "WebhookOptField"),
    ("/webhooks/{webhook_gid}", "get", "WebhookOptField"),
    ("/webhooks/{webhook_gid}", "put", "WebhookOptField"),
];

fn named_opt_fields_enums(spec: &mut Value) -> Result<()> {
    let mut hoisted: Vec<(&str, Value)> = Vec::new();
    for (path, method, name) in OPT_FIELDS {
        let params = at(spec, &["paths", path, method, "parameters"])?
            .as_sequence_mut()
            .context("parameters is not a list")?;
        let param = params
            .iter_mut()
            .find(|p| p.get("name").and_then(Value::as_str) == Some("opt_fields"))
            .with_context(|| format!("{method} {path} has no opt_fields parameter"))?;
        let items = at(param, &["schema", "items"])?;
        at(items, &["enum"])?;
        let mut schema = items.clone();
        set(
            &mut schema,
            "description",
            Value::from(format!(
                "A property that `opt_fields` can ask {} to include.",
                if *name == "WebhookListOptField" {
                    "getWebhooks"
                } else {
                    "a webhook response"
                }
            )),
        )?;
        match hoisted.iter().find(|(n, _)| n == name) {
            Some((_, existing)) if strip_description(existing) != strip_description(&schema) => {
                bail!("{method} {path}: its opt_fields enum differs from the other `{name}` ones");
            }
            Some(_) => {}
            None => hoisted.push((name, schema)),
        }
        *items = Value::Mapping(Mapping::from_iter([(
            Value::from("$ref"),
            Value::from(format!("#/components/schemas/{name}")),
        )]));
    }
    let schemas = at(spec, &["components", "schemas"])?
        .as_mapping_mut()
        .context("schemas is not a mapping")?;
    for (name, schema) in hoisted {
        if schemas.insert(Value::from(name), schema).is_some() {
            bail!("the spec already has a schema named `{name}`");
        }
    }
    Ok(())
}

fn strip_description(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_mapping_mut() {
        m.remove("description");
    }
    v
}

fn plain_filter_items(spec: &mut Value) -> Result<()> {
    for schema in ["WebhookRequest", "WebhookUpdateRequest"] {
        let items = at(
            spec,
            &[
                "components",
                "schemas",
                schema,
                "properties",
                "filters",
                "items",
            ],
        )?;
        let first = at(items, &["allOf", "0", "$ref"])?.clone();
        if first.as_str() != Some("#/components/schemas/WebhookFilter") {
            bail!("{schema}.filters items no longer start with WebhookFilter");
        }
        *items = Value::Mapping(Mapping::from_iter([(Value::from("$ref"), first)]));
    }
    Ok(())
}

fn update_filters_absent_or_empty(spec: &mut Value) -> Result<()> {
    let filters = at(
        spec,
        &[
            "components",
            "schemas",
            "WebhookUpdateRequest",
            "properties",
            "filters",
        ],
    )?;
    set(filters, "nullable", Value::Bool(true))
}

fn error_responses_decoded_by_hand(spec: &mut Value) -> Result<()> {
    for path in surface::WEBHOOK_PATHS {
        for method in ["get", "post", "put", "delete"] {
            let Ok(responses) = at(spec, &["paths", path, method, "responses"]) else {
                continue;
            };
            let responses = responses
                .as_mapping_mut()
                .context("responses is not a mapping")?;
            let before = responses.len();
            responses.retain(|status, _| !is_error_status(status));
            if responses.len() == before {
                bail!("{method} {path} declares no error response any more");
            }
        }
    }
    Ok(())
}

fn is_error_status(status: &Value) -> bool {
    let code = match status {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    code.is_some_and(|c| c >= 400)
}

fn text_code_fences(spec: &mut Value) -> Result<()> {
    fn walk(v: &mut Value, count: &mut usize) {
        match v {
            Value::Mapping(map) => {
                for (k, v) in map.iter_mut() {
                    if k.as_str() == Some("description") {
                        if let Value::String(s) = v
                            && let Some(fixed) = label_fences(s)
                        {
                            *s = fixed;
                            *count += 1;
                        }
                    } else {
                        walk(v, count);
                    }
                }
            }
            Value::Sequence(seq) => seq.iter_mut().for_each(|v| walk(v, count)),
            _ => {}
        }
    }
    let mut count = 0;
    walk(spec, &mut count);
    if count == 0 {
        bail!("no description has an unlabelled code fence any more");
    }
    Ok(())
}

/// Labels each opening ``` fence that has no language as `text`; `None` when
/// nothing needed a label.
fn label_fences(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 16);
    let mut inside = false;
    let mut changed = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            if !inside && trimmed == "```" {
                out.push_str(&line.replacen("```", "```text", 1));
                changed = true;
            } else {
                out.push_str(line);
            }
            inside = !inside;
        } else {
            out.push_str(line);
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_only_opening_unlabelled_fences() {
        let text = "a\n```\ncurl x\n```\n\n```json\n{}\n```\n";
        assert_eq!(
            label_fences(text).unwrap(),
            "a\n```text\ncurl x\n```\n\n```json\n{}\n```\n"
        );
        assert_eq!(label_fences("```rust\nx\n```"), None);
    }

    #[test]
    fn a_fix_whose_target_is_gone_is_an_error() {
        let mut spec: Value = serde_yaml::from_str("components: {schemas: {}}").unwrap();
        let err = nullable_webhook_timestamps(&mut spec)
            .unwrap_err()
            .to_string();
        assert!(err.contains("WebhookResponse"), "{err}");
    }

    #[test]
    fn differing_opt_fields_enums_are_not_merged() {
        let op = |values: &str| {
            format!(
                "{{parameters: [{{name: opt_fields, in: query, schema: {{type: array, items: {{type: string, enum: [{values}]}}}}}}]}}"
            )
        };
        let doc = format!(
            "paths:\n  /webhooks: {{get: {}, post: {}}}\n  /webhooks/{{webhook_gid}}: {{get: {}, put: {}}}\ncomponents: {{schemas: {{}}}}\n",
            op("a, offset"),
            op("a"),
            op("a"),
            op("a, b")
        );
        let mut spec: Value = serde_yaml::from_str(&doc).unwrap();
        let err = named_opt_fields_enums(&mut spec).unwrap_err().to_string();
        assert!(err.contains("differs"), "{err}");
    }
}
