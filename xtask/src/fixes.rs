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
                 `WebhookOptField` (getWebhooks' larger one into `WebhookListOptField`, \
                 getEvents' into `EventOptField`) gives users one typed field name per concept. \
                 The wire format is unchanged.",
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
        name: "events-412-sync-token-body",
        reason: "getEvents answers 412 with its own inline body, `{errors, sync}`, next to the \
                 shared ErrorResponse of its other error statuses; progenitor 0.15 accepts one \
                 error body type per operation and panics on two (`assert!(response_types.len() \
                 <= 1)` in `extract_responses`). That 412 is not a failure but how Asana hands \
                 out a sync token (on the first call, and when a token expired). Its body \
                 becomes the named schema `SyncTokenResponse`, generated as a type, and the 412 \
                 leaves the operation: asana-webhooks/src/events.rs decodes it by hand into a \
                 typed outcome carrying the new token.",
        apply: events_412_sync_token_body,
    },
    Fix {
        name: "events-kept-as-sent",
        reason: "getEvents' `data` items are EventResponse. Decoded into the generated struct, \
                 one event that drifts from it (a timestamp in another format, a gid as a \
                 number) fails the whole answer, and with it the page's `sync` token: a caller \
                 asking again with the same token gets the same answer and is stuck. Keys the \
                 schema lacks (deliveries carry `resource_subtype`) would be dropped. The items \
                 become free-form JSON described as EventResponse (`serde_json::Value`); \
                 asana-webhooks/src/events.rs keeps each event as sent next to its typed \
                 decode, as the inbox does for deliveries. EventResponse stays in `components`.",
        apply: events_kept_as_sent,
    },
    Fix {
        name: "error-responses-decoded-by-hand",
        reason: "progenitor drops the HTTP status when an error body is not JSON (an HTML 502 \
                 from a proxy) and cannot know the statuses Asana sends but does not declare \
                 (402, 429, 451, 503). Removing the 4xx/5xx responses from the operations makes \
                 every non-2xx answer reach the one hand-written decoder \
                 (asana-webhooks/src/error/) with its status, headers and body. The error \
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
    FIXES.iter().try_for_each(|fix| fix.apply_to(surface))
}

impl Fix {
    /// Applies this fix alone.
    pub fn apply_to(&self, surface: &mut Value) -> Result<()> {
        (self.apply)(surface).with_context(|| format!("spec fix `{}` no longer applies", self.name))
    }
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

/// The operations whose `opt_fields` enum is hoisted, the schema name each
/// gets, and what the schema's description says the fields are included in.
const OPT_FIELDS: &[(&str, &str, &str, &str)] = &[
    ("/webhooks", "get", "WebhookListOptField", "getWebhooks"),
    ("/webhooks", "post", "WebhookOptField", "a webhook response"),
    (
        "/webhooks/{webhook_gid}",
        "get",
        "WebhookOptField",
        "a webhook response",
    ),
    (
        "/webhooks/{webhook_gid}",
        "put",
        "WebhookOptField",
        "a webhook response",
    ),
    ("/events", "get", "EventOptField", "getEvents"),
];

fn named_opt_fields_enums(spec: &mut Value) -> Result<()> {
    let mut hoisted: Vec<(&str, Value)> = Vec::new();
    for (path, method, name, subject) in OPT_FIELDS {
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
                "A property that `opt_fields` can ask {subject} to include."
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

/// The schema getEvents' 412 body becomes.
const SYNC_TOKEN_RESPONSE: &str = "SyncTokenResponse";

fn events_412_sync_token_body(spec: &mut Value) -> Result<()> {
    let responses = at(spec, &["paths", "/events", "get", "responses"])?
        .as_mapping_mut()
        .context("responses is not a mapping")?;
    let status = responses
        .keys()
        .find(|status| status_code(status) == Some(412))
        .cloned()
        .context("getEvents declares no 412 answer any more")?;
    let mut response = responses.remove(&status).expect("the key was just found");
    let body = at(&mut response, &["content", "application/json", "schema"])?;
    if body.get("$ref").is_some() {
        bail!("getEvents' 412 body is a `$ref` already: it needs no name from this fix");
    }
    for property in ["errors", "sync"] {
        at(body, &["properties", property])
            .with_context(|| format!("getEvents' 412 body has no `{property}` any more"))?;
    }
    let mut schema = body.clone();
    set(
        &mut schema,
        "description",
        Value::from(
            "The body of getEvents' 412 answer (decoded by hand, so this derived spec leaves the \
             412 out of the operation): the request had no sync token, or one Asana no longer \
             accepts. `sync` is a fresh token to call getEvents with next.",
        ),
    )?;
    let schemas = at(spec, &["components", "schemas"])?
        .as_mapping_mut()
        .context("schemas is not a mapping")?;
    if schemas
        .insert(Value::from(SYNC_TOKEN_RESPONSE), schema)
        .is_some()
    {
        bail!("the spec already has a schema named `{SYNC_TOKEN_RESPONSE}`");
    }
    Ok(())
}

fn events_kept_as_sent(spec: &mut Value) -> Result<()> {
    let responses = at(spec, &["paths", "/events", "get", "responses"])?
        .as_mapping_mut()
        .context("responses is not a mapping")?;
    let response = responses
        .iter_mut()
        .find(|(status, _)| status_code(status) == Some(200))
        .map(|(_, response)| response)
        .context("getEvents declares no 200 answer any more")?;
    let items = at(
        response,
        &[
            "content",
            "application/json",
            "schema",
            "properties",
            "data",
            "items",
        ],
    )?;
    let reference = at(items, &["$ref"])?;
    if reference.as_str() != Some("#/components/schemas/EventResponse") {
        bail!("getEvents' `data` items are no longer EventResponse");
    }
    *items = Value::Mapping(Mapping::from_iter([(
        Value::from("description"),
        Value::from(
            "An event (EventResponse), as Asana sent it: decoded by hand, so that an event \
             that drifts from the schema is kept rather than failing the whole answer.",
        ),
    )]));
    Ok(())
}

fn error_responses_decoded_by_hand(spec: &mut Value) -> Result<()> {
    for path in surface::SURFACE_PATHS {
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
    status_code(status).is_some_and(|c| c >= 400)
}

/// A response key as a number: YAML reads `412:` as a number, `'412':` as a string.
fn status_code(status: &Value) -> Option<u64> {
    match status {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
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

    fn vendored_surface() -> Value {
        let path = crate::regen::workspace_root().join(crate::regen::VENDORED_SPEC);
        let full: Value = serde_yaml::from_slice(&std::fs::read(path).unwrap()).unwrap();
        surface::extract(&full).unwrap()
    }

    fn events_responses(spec: &Value) -> Vec<u64> {
        spec["paths"]["/events"]["get"]["responses"]
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(status_code)
            .collect()
    }

    #[test]
    fn the_412_of_get_events_leaves_the_operation_and_its_body_gets_a_name() {
        let mut spec = vendored_surface();
        assert!(events_responses(&spec).contains(&412));
        events_412_sync_token_body(&mut spec).unwrap();
        assert_eq!(events_responses(&spec), [200, 400, 401, 403, 404, 500]);
        let body = &spec["components"]["schemas"][SYNC_TOKEN_RESPONSE];
        assert_eq!(body["properties"]["sync"]["type"], "string");
        assert!(body["properties"]["errors"].is_mapping());
        // Applied twice, its target is gone: an error, not a silent no-op.
        let err = format!("{:#}", events_412_sync_token_body(&mut spec).unwrap_err());
        assert!(err.contains("no 412 answer"), "{err}");
    }

    #[test]
    fn the_412_fix_refuses_a_body_without_sync_or_a_name_taken() {
        let mut no_sync = vendored_surface();
        let responses = at(&mut no_sync, &["paths", "/events", "get", "responses"]).unwrap();
        let (_, response) = responses
            .as_mapping_mut()
            .unwrap()
            .iter_mut()
            .find(|(status, _)| status_code(status) == Some(412))
            .unwrap();
        at(
            response,
            &["content", "application/json", "schema", "properties"],
        )
        .unwrap()
        .as_mapping_mut()
        .unwrap()
        .remove("sync");
        let err = format!(
            "{:#}",
            events_412_sync_token_body(&mut no_sync).unwrap_err()
        );
        assert!(err.contains("no `sync`"), "{err}");

        let mut taken = vendored_surface();
        set(
            at(&mut taken, &["components", "schemas"]).unwrap(),
            SYNC_TOKEN_RESPONSE,
            Value::Null,
        )
        .unwrap();
        let err = format!("{:#}", events_412_sync_token_body(&mut taken).unwrap_err());
        assert!(err.contains("already has a schema"), "{err}");
    }

    #[test]
    fn events_are_kept_as_sent_only_where_they_are_event_responses() {
        let mut spec = vendored_surface();
        events_kept_as_sent(&mut spec).unwrap();
        let items = &spec["paths"]["/events"]["get"]["responses"][&Value::from(200)]["content"]["application/json"]
            ["schema"]["properties"]["data"]["items"];
        assert!(
            items.get("$ref").is_none() && items.get("type").is_none(),
            "{items:?}"
        );
        let err = format!("{:#}", events_kept_as_sent(&mut spec).unwrap_err());
        assert!(err.contains("$ref"), "{err}");
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
