//! The generated client and the hand-written builders cannot drift apart
//! silently: every parameter (path, query, header, cookie; through `$ref`
//! and path-level `parameters`) and every request-body field (the fields of
//! `data` in Asana's `{"data": {...}}` envelope, through `$ref` and `allOf`)
//! of every operation in the derived spec (`openapi/webhooks.yaml`) has a
//! public counterpart in [`EXPOSED`], or a reason in [`HIDDEN`].
//!
//! Each entry of [`EXPOSED`] calls the builder method it names, so the table
//! does not compile when the method is gone; an entry that matches nothing
//! in the spec, or says "constructor argument" of something optional (or
//! "setter" of something required), is reported as stale.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use asana_webhooks::secrets::MemorySecretStore;
use asana_webhooks::types::{EventOptField, WebhookFilter, WebhookListOptField, WebhookOptField};
use asana_webhooks::{Client, HandshakeExt};
use asana_webhooks_tests::spec;
use serde_json::{Map, Value, json};

/// A public builder of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Builder {
    GetWebhooks,
    CreateWebhook,
    CreateWithHandshake,
    GetWebhook,
    UpdateWebhook,
    DeleteWebhook,
    GetEvents,
}

impl fmt::Display for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Builder::GetWebhooks => "Client::get_webhooks",
            Builder::CreateWebhook => "Client::create_webhook",
            Builder::CreateWithHandshake => "HandshakeExt::create_webhook_with_handshake",
            Builder::GetWebhook => "Client::get_webhook",
            Builder::UpdateWebhook => "Client::update_webhook",
            Builder::DeleteWebhook => "Client::delete_webhook",
            Builder::GetEvents => "Client::get_events",
        })
    }
}

/// The public builders of each operation: each must reach every parameter
/// and body field of its operation. createWebhook has two.
const BUILDERS: &[(&str, Builder)] = &[
    ("getWebhooks", Builder::GetWebhooks),
    ("createWebhook", Builder::CreateWebhook),
    ("createWebhook", Builder::CreateWithHandshake),
    ("getWebhook", Builder::GetWebhook),
    ("updateWebhook", Builder::UpdateWebhook),
    ("deleteWebhook", Builder::DeleteWebhook),
    ("getEvents", Builder::GetEvents),
];

/// Where a parameter or field travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum In {
    Path,
    Query,
    Header,
    Cookie,
    /// A field of the JSON request body; its name is its path in the body,
    /// such as `data.filters`.
    Body,
}

impl In {
    fn parse(location: &str) -> Option<Self> {
        match location {
            "path" => Some(In::Path),
            "query" => Some(In::Query),
            "header" => Some(In::Header),
            "cookie" => Some(In::Cookie),
            _ => None,
        }
    }
}

impl fmt::Display for In {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            In::Path => "path parameter",
            In::Query => "query parameter",
            In::Header => "header parameter",
            In::Cookie => "cookie parameter",
            In::Body => "body field",
        })
    }
}

/// How a builder exposes a parameter or field.
#[derive(Clone, Copy, Debug)]
enum How {
    /// An argument of the constructor: only for what the spec requires.
    Argument(&'static str),
    /// A method of the builder: only for what the spec leaves optional.
    Setter(&'static str),
}

impl fmt::Display for How {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            How::Argument(call) => write!(f, "constructor argument `{call}`"),
            How::Setter(call) => write!(f, "setter `{call}`"),
        }
    }
}

/// A call of the public API that sets one parameter or field.
type Call = fn(&Client, &MemorySecretStore);

/// A parameter or body field and its public counterpart.
struct Exposed {
    operation: &'static str,
    location: In,
    name: &'static str,
    builder: Builder,
    how: How,
    /// Calls the builder method (or constructor) that `how` names.
    call: Call,
}

/// A parameter or body field that a builder deliberately does not offer.
struct Hidden {
    operation: &'static str,
    location: In,
    name: &'static str,
    builder: Builder,
    reason: &'static str,
}

const fn exposed(
    operation: &'static str,
    location: In,
    name: &'static str,
    builder: Builder,
    how: How,
    call: Call,
) -> Exposed {
    Exposed {
        operation,
        location,
        name,
        builder,
        how,
        call,
    }
}

const RESOURCE: &str = "12345";
const TARGET: &str = "https://example.com/receive-webhook/7654";

fn filter() -> WebhookFilter {
    WebhookFilter::new("task", "changed")
}

/// Every public counterpart, builder by builder.
const EXPOSED: &[Exposed] = &[
    // getWebhooks
    exposed(
        "getWebhooks",
        In::Query,
        "workspace",
        Builder::GetWebhooks,
        How::Argument("get_webhooks(workspace)"),
        |c, _| {
            let _ = c.get_webhooks("1331");
        },
    ),
    exposed(
        "getWebhooks",
        In::Query,
        "resource",
        Builder::GetWebhooks,
        How::Setter(".resource(gid)"),
        |c, _| {
            let _ = c.get_webhooks("1331").resource("51648");
        },
    ),
    exposed(
        "getWebhooks",
        In::Query,
        "limit",
        Builder::GetWebhooks,
        How::Setter(".limit(n)"),
        |c, _| {
            let _ = c.get_webhooks("1331").limit(5);
        },
    ),
    exposed(
        "getWebhooks",
        In::Query,
        "offset",
        Builder::GetWebhooks,
        How::Setter(".offset(token)"),
        |c, _| {
            let _ = c
                .get_webhooks("1331")
                .offset("eyJ0eXAiOJiKV1iQLCJhbGciOiJIUzI1NiJ9");
        },
    ),
    exposed(
        "getWebhooks",
        In::Query,
        "opt_fields",
        Builder::GetWebhooks,
        How::Setter(".opt_fields(fields)"),
        |c, _| {
            let _ = c
                .get_webhooks("1331")
                .opt_fields([WebhookListOptField::CreatedAt]);
        },
    ),
    exposed(
        "getWebhooks",
        In::Query,
        "opt_pretty",
        Builder::GetWebhooks,
        How::Setter(".opt_pretty(bool)"),
        |c, _| {
            let _ = c.get_webhooks("1331").opt_pretty(true);
        },
    ),
    // createWebhook, plain
    exposed(
        "createWebhook",
        In::Body,
        "data.resource",
        Builder::CreateWebhook,
        How::Argument("create_webhook(resource, _)"),
        |c, _| {
            let _ = c.create_webhook(RESOURCE, TARGET);
        },
    ),
    exposed(
        "createWebhook",
        In::Body,
        "data.target",
        Builder::CreateWebhook,
        How::Argument("create_webhook(_, target)"),
        |c, _| {
            let _ = c.create_webhook(RESOURCE, TARGET);
        },
    ),
    exposed(
        "createWebhook",
        In::Body,
        "data.filters",
        Builder::CreateWebhook,
        How::Setter(".filter(f) / .filters(fs)"),
        |c, _| {
            let _ = c
                .create_webhook(RESOURCE, TARGET)
                .filter(filter())
                .filters([filter()]);
        },
    ),
    exposed(
        "createWebhook",
        In::Query,
        "opt_fields",
        Builder::CreateWebhook,
        How::Setter(".opt_fields(fields)"),
        |c, _| {
            let _ = c
                .create_webhook(RESOURCE, TARGET)
                .opt_fields([WebhookOptField::CreatedAt]);
        },
    ),
    exposed(
        "createWebhook",
        In::Query,
        "opt_pretty",
        Builder::CreateWebhook,
        How::Setter(".opt_pretty(bool)"),
        |c, _| {
            let _ = c.create_webhook(RESOURCE, TARGET).opt_pretty(true);
        },
    ),
    // createWebhook, through the handshake
    exposed(
        "createWebhook",
        In::Body,
        "data.resource",
        Builder::CreateWithHandshake,
        How::Argument("create_webhook_with_handshake(store, resource, _)"),
        |c, s| {
            let _ = c.create_webhook_with_handshake(s, RESOURCE, TARGET);
        },
    ),
    exposed(
        "createWebhook",
        In::Body,
        "data.target",
        Builder::CreateWithHandshake,
        How::Argument("create_webhook_with_handshake(store, _, target)"),
        |c, s| {
            let _ = c.create_webhook_with_handshake(s, RESOURCE, TARGET);
        },
    ),
    exposed(
        "createWebhook",
        In::Body,
        "data.filters",
        Builder::CreateWithHandshake,
        How::Setter(".filter(f) / .filters(fs)"),
        |c, s| {
            let _ = c
                .create_webhook_with_handshake(s, RESOURCE, TARGET)
                .filter(filter())
                .filters([filter()]);
        },
    ),
    exposed(
        "createWebhook",
        In::Query,
        "opt_fields",
        Builder::CreateWithHandshake,
        How::Setter(".opt_fields(fields)"),
        |c, s| {
            let _ = c
                .create_webhook_with_handshake(s, RESOURCE, TARGET)
                .opt_fields([WebhookOptField::CreatedAt]);
        },
    ),
    exposed(
        "createWebhook",
        In::Query,
        "opt_pretty",
        Builder::CreateWithHandshake,
        How::Setter(".opt_pretty(bool)"),
        |c, s| {
            let _ = c
                .create_webhook_with_handshake(s, RESOURCE, TARGET)
                .opt_pretty(true);
        },
    ),
    // getWebhook
    exposed(
        "getWebhook",
        In::Path,
        "webhook_gid",
        Builder::GetWebhook,
        How::Argument("get_webhook(gid)"),
        |c, _| {
            let _ = c.get_webhook("43214");
        },
    ),
    exposed(
        "getWebhook",
        In::Query,
        "opt_fields",
        Builder::GetWebhook,
        How::Setter(".opt_fields(fields)"),
        |c, _| {
            let _ = c
                .get_webhook("43214")
                .opt_fields([WebhookOptField::CreatedAt]);
        },
    ),
    exposed(
        "getWebhook",
        In::Query,
        "opt_pretty",
        Builder::GetWebhook,
        How::Setter(".opt_pretty(bool)"),
        |c, _| {
            let _ = c.get_webhook("43214").opt_pretty(true);
        },
    ),
    // updateWebhook
    exposed(
        "updateWebhook",
        In::Path,
        "webhook_gid",
        Builder::UpdateWebhook,
        How::Argument("update_webhook(gid)"),
        |c, _| {
            let _ = c.update_webhook("43214");
        },
    ),
    exposed(
        "updateWebhook",
        In::Body,
        "data.filters",
        Builder::UpdateWebhook,
        How::Setter(".filters(fs) / .clear_filters()"),
        |c, _| {
            let _ = c.update_webhook("43214").filters([filter()]);
            let _ = c.update_webhook("43214").clear_filters();
        },
    ),
    exposed(
        "updateWebhook",
        In::Query,
        "opt_fields",
        Builder::UpdateWebhook,
        How::Setter(".opt_fields(fields)"),
        |c, _| {
            let _ = c
                .update_webhook("43214")
                .opt_fields([WebhookOptField::CreatedAt]);
        },
    ),
    exposed(
        "updateWebhook",
        In::Query,
        "opt_pretty",
        Builder::UpdateWebhook,
        How::Setter(".opt_pretty(bool)"),
        |c, _| {
            let _ = c.update_webhook("43214").opt_pretty(true);
        },
    ),
    // deleteWebhook
    exposed(
        "deleteWebhook",
        In::Path,
        "webhook_gid",
        Builder::DeleteWebhook,
        How::Argument("delete_webhook(gid)"),
        |c, _| {
            let _ = c.delete_webhook("43214");
        },
    ),
    exposed(
        "deleteWebhook",
        In::Query,
        "opt_pretty",
        Builder::DeleteWebhook,
        How::Setter(".opt_pretty(bool)"),
        |c, _| {
            let _ = c.delete_webhook("43214").opt_pretty(true);
        },
    ),
    // getEvents (`resource`, `sync` and `opt_pretty` through its path's
    // `parameters`)
    exposed(
        "getEvents",
        In::Query,
        "resource",
        Builder::GetEvents,
        How::Argument("get_events(resource)"),
        |c, _| {
            let _ = c.get_events(RESOURCE);
        },
    ),
    exposed(
        "getEvents",
        In::Query,
        "sync",
        Builder::GetEvents,
        How::Setter(".sync(token)"),
        |c, _| {
            let _ = c
                .get_events(RESOURCE)
                .sync("de4774f6915eae04714ca93bb2f5ee81");
        },
    ),
    exposed(
        "getEvents",
        In::Query,
        "opt_fields",
        Builder::GetEvents,
        How::Setter(".opt_fields(fields)"),
        |c, _| {
            let _ = c
                .get_events(RESOURCE)
                .opt_fields([EventOptField::ResourceName]);
        },
    ),
    exposed(
        "getEvents",
        In::Query,
        "opt_pretty",
        Builder::GetEvents,
        How::Setter(".opt_pretty(bool)"),
        |c, _| {
            let _ = c.get_events(RESOURCE).opt_pretty(true);
        },
    ),
];

/// What the builders deliberately leave out, each with its reason.
///
/// Nothing today: the derived spec lists no parameter that progenitor or
/// the client supplies by itself (authentication, `Content-Type` and the
/// user agent come from the security schemes and the client, not from
/// `parameters`), and every parameter Asana documents for these six
/// operations is offered, `opt_pretty` included (deleteWebhook and
/// getEvents have it too, through their paths' `parameters`).
const HIDDEN: &[Hidden] = &[];

/// One parameter or body field of one operation in the spec.
#[derive(Debug)]
struct Item {
    operation: String,
    location: In,
    name: String,
    required: bool,
}

/// What the spec declares: its operations, their parameters and body
/// fields, and what could not be enumerated (which the check reports as
/// missing rather than skipping it).
#[derive(Default)]
struct Surface {
    operations: Vec<String>,
    items: Vec<Item>,
    unreadable: Vec<String>,
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn surface(spec: &Value) -> Surface {
    let mut surface = Surface::default();
    let Some(paths) = spec.get("paths").and_then(Value::as_object) else {
        surface.unreadable.push("the spec has no `paths`".into());
        return surface;
    };
    for (path, item) in paths {
        let item = spec::resolve(spec, item);
        for method in METHODS {
            let Some(operation) = item.get(*method) else {
                continue;
            };
            let Some(id) = operation.get("operationId").and_then(Value::as_str) else {
                surface
                    .unreadable
                    .push(format!("{} {path}: no operationId", method.to_uppercase()));
                continue;
            };
            surface.operations.push(id.to_string());
            parameters(spec, id, item, operation, &mut surface);
            body(spec, id, operation, &mut surface);
        }
    }
    surface
}

/// The path's `parameters` and the operation's, which override those of
/// the path with the same name and location.
fn parameters(spec: &Value, id: &str, path: &Value, operation: &Value, surface: &mut Surface) {
    let mut found: Vec<Item> = Vec::new();
    let declared = [path, operation]
        .into_iter()
        .filter_map(|v| v.get("parameters").and_then(Value::as_array))
        .flatten();
    for parameter in declared {
        let parameter = spec::resolve(spec, parameter);
        let name = parameter.get("name").and_then(Value::as_str);
        let location = parameter.get("in").and_then(Value::as_str);
        let (Some(name), Some(location)) = (name, location.and_then(In::parse)) else {
            surface.unreadable.push(format!(
                "{id}: a parameter without a name or location: {parameter}"
            ));
            continue;
        };
        let required = location == In::Path
            || parameter.get("required").and_then(Value::as_bool) == Some(true);
        found.retain(|p| (p.location, p.name.as_str()) != (location, name));
        found.push(Item {
            operation: id.to_string(),
            location,
            name: name.to_string(),
            required,
        });
    }
    surface.items.extend(found);
}

/// The fields of the JSON request body: those of `data`, named `data.x`,
/// and any beside `data` by their own name.
fn body(spec: &Value, id: &str, operation: &Value, surface: &mut Surface) {
    let Some(request_body) = operation.get("requestBody") else {
        return;
    };
    let request_body = spec::resolve(spec, request_body);
    let Some(content) = request_body.get("content").and_then(Value::as_object) else {
        surface
            .unreadable
            .push(format!("{id}: a request body without content"));
        return;
    };
    for (media_type, media) in content {
        if media_type != "application/json" {
            surface
                .unreadable
                .push(format!("{id}: a {media_type} request body"));
            continue;
        }
        let envelope = match fields(spec, &media["schema"]) {
            Ok(envelope) => envelope,
            Err(why) => {
                surface.unreadable.push(format!("{id}: request body {why}"));
                continue;
            }
        };
        for (name, (schema, required)) in envelope {
            if name != "data" {
                surface.items.push(Item {
                    operation: id.to_string(),
                    location: In::Body,
                    name,
                    required,
                });
                continue;
            }
            match fields(spec, &schema) {
                Ok(data) => surface
                    .items
                    .extend(data.into_iter().map(|(field, (_, required))| Item {
                        operation: id.to_string(),
                        location: In::Body,
                        name: format!("data.{field}"),
                        required,
                    })),
                Err(why) => surface
                    .unreadable
                    .push(format!("{id}: request body `data` {why}")),
            }
        }
    }
}

/// The properties of an object schema (through `$ref` and `allOf`), each
/// with its schema and whether it is required.
fn fields(spec: &Value, schema: &Value) -> Result<BTreeMap<String, (Value, bool)>, String> {
    let mut properties = Map::new();
    let mut required = BTreeSet::new();
    collect(spec, schema, &mut properties, &mut required)?;
    if properties.is_empty() {
        return Err("declares no properties to enumerate".into());
    }
    Ok(properties
        .into_iter()
        .map(|(name, schema)| {
            let is_required = required.contains(&name);
            (name, (schema, is_required))
        })
        .collect())
}

fn collect(
    spec: &Value,
    schema: &Value,
    out: &mut Map<String, Value>,
    required: &mut BTreeSet<String>,
) -> Result<(), String> {
    let schema = spec::resolve(spec, schema);
    for combinator in ["oneOf", "anyOf"] {
        if schema.get(combinator).is_some() {
            return Err(format!(
                "uses `{combinator}`, which this check cannot enumerate"
            ));
        }
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        out.extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    required.extend(
        schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string),
    );
    for part in schema
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect(spec, part, out, required)?;
    }
    Ok(())
}

/// What the check found: parameters and fields without a public
/// counterpart, and table entries that are no longer true.
#[derive(Debug, Default, PartialEq)]
struct Report {
    missing: Vec<String>,
    stale: Vec<String>,
}

/// Checks `spec` against the tables given.
fn check(
    spec: &Value,
    builders: &[(&str, Builder)],
    exposed: &[Exposed],
    hidden: &[Hidden],
) -> Report {
    let surface = surface(spec);
    let mut report = Report {
        missing: surface.unreadable.clone(),
        stale: Vec::new(),
    };
    let builders_of = |operation: &str| -> Vec<Builder> {
        builders
            .iter()
            .filter(|(o, _)| *o == operation)
            .map(|(_, b)| *b)
            .collect()
    };
    for operation in &surface.operations {
        if builders_of(operation).is_empty() {
            report
                .missing
                .push(format!("{operation}: no public builder"));
        }
    }
    for item in &surface.items {
        for builder in builders_of(&item.operation) {
            let matches = |operation: &str, location: In, name: &str, b: Builder| {
                (operation, location, name, b)
                    == (
                        item.operation.as_str(),
                        item.location,
                        item.name.as_str(),
                        builder,
                    )
            };
            let exposed: Vec<&Exposed> = exposed
                .iter()
                .filter(|e| matches(e.operation, e.location, e.name, e.builder))
                .collect();
            let is_hidden = hidden
                .iter()
                .any(|h| matches(h.operation, h.location, h.name, h.builder));
            let what = format!("{}: {} `{}`", item.operation, item.location, item.name);
            if exposed.is_empty() && !is_hidden {
                report
                    .missing
                    .push(format!("{what} has no counterpart in {builder}"));
            }
            if !exposed.is_empty() && is_hidden {
                report.stale.push(format!(
                    "{what} is listed as hidden from {builder}, but is exposed"
                ));
            }
            if exposed.len() > 1 {
                report.stale.push(format!(
                    "{what} is listed {} times for {builder}",
                    exposed.len()
                ));
            }
            for entry in exposed {
                match (entry.how, item.required) {
                    (How::Argument(_), false) => report.stale.push(format!(
                        "{what} is optional, but the table says {builder} takes it as a {}",
                        entry.how
                    )),
                    (How::Setter(_), true) => report.stale.push(format!(
                        "{what} is required, but the table says {builder} takes it through a {}",
                        entry.how
                    )),
                    _ => {}
                }
            }
        }
    }
    let in_spec = |operation: &str, location: In, name: &str| {
        surface.items.iter().any(|i| {
            (i.operation.as_str(), i.location, i.name.as_str()) == (operation, location, name)
        })
    };
    for (operation, builder) in builders {
        if !surface.operations.iter().any(|o| o == operation) {
            report.stale.push(format!(
                "{operation}: the table gives it {builder}, but the spec has no such operation"
            ));
        }
    }
    let entries = exposed
        .iter()
        .map(|e| (e.operation, e.location, e.name, e.builder, "exposes"))
        .chain(
            hidden
                .iter()
                .map(|h| (h.operation, h.location, h.name, h.builder, "hides")),
        );
    for (operation, location, name, builder, verb) in entries {
        if !builders.contains(&(operation, builder)) {
            report.stale.push(format!(
                "{operation}: the table {verb} {location} `{name}` in {builder}, which is not a builder of {operation}"
            ));
        } else if !in_spec(operation, location, name) {
            report.stale.push(format!(
                "{operation}: the table {verb} {location} `{name}` in {builder}, but the spec has no such {location}"
            ));
        }
    }
    report
}

/// The parameters and body fields of `spec` that no public builder offers
/// and [`HIDDEN`] does not explain.
fn missing_counterparts(spec: &Value) -> Vec<String> {
    check(spec, BUILDERS, EXPOSED, HIDDEN).missing
}

/// The entries of [`BUILDERS`], [`EXPOSED`] and [`HIDDEN`] that are no
/// longer true of `spec`.
fn stale_entries(spec: &Value) -> Vec<String> {
    check(spec, BUILDERS, EXPOSED, HIDDEN).stale
}

fn client() -> Client {
    Client::builder().token("0/parity").build().unwrap()
}

/// A copy of the derived spec with `change` applied.
fn changed(change: impl FnOnce(&mut Value)) -> Value {
    let mut spec = spec::derived().clone();
    change(&mut spec);
    spec
}

fn at<'a>(spec: &'a mut Value, pointer: &str) -> &'a mut Value {
    spec.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("{pointer} is not in the derived spec"))
}

fn push(spec: &mut Value, pointer: &str, value: Value) {
    at(spec, pointer)
        .as_array_mut()
        .unwrap_or_else(|| panic!("{pointer} is not an array"))
        .push(value);
}

const GET_WEBHOOKS: &str = "/paths/~1webhooks/get";
const ONE_WEBHOOK: &str = "/paths/~1webhooks~1{webhook_gid}";

#[test]
fn every_parameter_and_body_field_has_a_public_counterpart() {
    let spec = spec::derived();
    assert_eq!(
        missing_counterparts(spec),
        Vec::<String>::new(),
        "expose these in the builders and add them to EXPOSED, or add them to HIDDEN with a reason"
    );
    assert_eq!(
        stale_entries(spec),
        Vec::<String>::new(),
        "correct or remove these entries of BUILDERS, EXPOSED or HIDDEN"
    );
    // The calls run, not only compile.
    let (client, store) = (client(), MemorySecretStore::new());
    for entry in EXPOSED {
        (entry.call)(&client, &store);
    }
}

#[test]
fn a_new_query_parameter_and_a_new_body_field_are_named() {
    let new_parameter = changed(|spec| {
        push(
            spec,
            &format!("{ONE_WEBHOOK}/get/parameters"),
            json!({"name": "opt_new_thing", "in": "query", "required": false,
                   "schema": {"type": "boolean"}}),
        );
    });
    let missing = missing_counterparts(&new_parameter);
    println!("new query parameter: {missing:#?}");
    assert_eq!(
        missing,
        ["getWebhook: query parameter `opt_new_thing` has no counterpart in Client::get_webhook"]
    );
    assert_eq!(stale_entries(&new_parameter), Vec::<String>::new());

    let new_field = changed(|spec| {
        let request = at(spec, "/components/schemas/WebhookRequest/properties");
        request["delivery_mode"] = json!({"type": "string", "example": "batched"});
    });
    let missing = missing_counterparts(&new_field);
    println!("new createWebhook body field: {missing:#?}");
    assert_eq!(
        missing,
        [
            "createWebhook: body field `data.delivery_mode` has no counterpart in Client::create_webhook",
            "createWebhook: body field `data.delivery_mode` has no counterpart in HandshakeExt::create_webhook_with_handshake",
        ]
    );
    assert_eq!(stale_entries(&new_field), Vec::<String>::new());
}

#[test]
fn refs_path_level_parameters_allof_and_new_operations_are_followed() {
    // A header parameter through `$ref`, on the path: its three operations.
    let header = changed(|spec| {
        at(spec, "/components/parameters")["request_id"] =
            json!({"name": "X-Request-Id", "in": "header", "schema": {"type": "string"}});
        push(
            spec,
            &format!("{ONE_WEBHOOK}/parameters"),
            json!({"$ref": "#/components/parameters/request_id"}),
        );
    });
    assert_eq!(
        missing_counterparts(&header),
        [
            "getWebhook: header parameter `X-Request-Id` has no counterpart in Client::get_webhook",
            "updateWebhook: header parameter `X-Request-Id` has no counterpart in Client::update_webhook",
            "deleteWebhook: header parameter `X-Request-Id` has no counterpart in Client::delete_webhook",
        ]
    );

    // A field of `data` through `allOf`, and one beside `data`.
    let nested = changed(|spec| {
        let envelope = at(
            spec,
            &format!("{ONE_WEBHOOK}/put/requestBody/content/application~1json/schema/properties"),
        );
        envelope["data"] = json!({"allOf": [
            {"$ref": "#/components/schemas/WebhookUpdateRequest"},
            {"properties": {"paused": {"type": "boolean"}}},
        ]});
        envelope["sync"] = json!({"type": "boolean"});
    });
    assert_eq!(
        missing_counterparts(&nested),
        [
            "updateWebhook: body field `data.paused` has no counterpart in Client::update_webhook",
            "updateWebhook: body field `sync` has no counterpart in Client::update_webhook",
        ]
    );

    // An operation without a builder.
    let operation = changed(|spec| {
        at(spec, ONE_WEBHOOK)["patch"] = json!({"operationId": "patchWebhook", "responses": {}});
    });
    assert_eq!(
        missing_counterparts(&operation),
        ["patchWebhook: no public builder"]
    );
}

#[test]
fn stale_and_untrue_entries_are_named() {
    // `limit` gone from the spec: its entry matches nothing.
    let no_limit = changed(|spec| {
        at(spec, &format!("{GET_WEBHOOKS}/parameters"))
            .as_array_mut()
            .unwrap()
            .retain(|p| p["$ref"] != "#/components/parameters/limit");
    });
    assert_eq!(missing_counterparts(&no_limit), Vec::<String>::new());
    assert_eq!(
        stale_entries(&no_limit),
        [
            "getWebhooks: the table exposes query parameter `limit` in Client::get_webhooks, but the spec has no such query parameter"
        ]
    );

    // `workspace` optional: "constructor argument" is no longer true.
    let optional_workspace = changed(|spec| {
        let parameters = at(spec, &format!("{GET_WEBHOOKS}/parameters"));
        for parameter in parameters.as_array_mut().unwrap() {
            if parameter["name"] == "workspace" {
                parameter["required"] = json!(false);
            }
        }
    });
    assert_eq!(
        stale_entries(&optional_workspace),
        [
            "getWebhooks: query parameter `workspace` is optional, but the table says Client::get_webhooks takes it as a constructor argument `get_webhooks(workspace)`"
        ]
    );

    // `filters` required at create: a setter is no longer enough.
    let required_filters = changed(|spec| {
        push(
            spec,
            "/components/schemas/WebhookRequest/required",
            json!("filters"),
        );
    });
    assert_eq!(
        stale_entries(&required_filters),
        [
            "createWebhook: body field `data.filters` is required, but the table says Client::create_webhook takes it through a setter `.filter(f) / .filters(fs)`",
            "createWebhook: body field `data.filters` is required, but the table says HandshakeExt::create_webhook_with_handshake takes it through a setter `.filter(f) / .filters(fs)`",
        ]
    );

    // Hidden entries: one explains a new parameter, one hides what is
    // exposed, one names nothing in the spec.
    let spec = changed(|spec| {
        push(
            spec,
            &format!("{GET_WEBHOOKS}/parameters"),
            json!({"name": "opt_new_thing", "in": "query", "schema": {"type": "boolean"}}),
        );
    });
    let hidden = [
        Hidden {
            operation: "getWebhooks",
            location: In::Query,
            name: "opt_new_thing",
            builder: Builder::GetWebhooks,
            reason: "an experiment of Asana's",
        },
        Hidden {
            operation: "getWebhooks",
            location: In::Query,
            name: "limit",
            builder: Builder::GetWebhooks,
            reason: "wrongly hidden",
        },
        Hidden {
            operation: "deleteWebhook",
            location: In::Query,
            name: "opt_fields",
            builder: Builder::DeleteWebhook,
            reason: "deleteWebhook answers an empty object",
        },
    ];
    assert!(hidden.iter().all(|h| !h.reason.is_empty()));
    assert_eq!(
        check(&spec, BUILDERS, EXPOSED, &hidden),
        Report {
            missing: Vec::new(),
            stale: vec![
                "getWebhooks: query parameter `limit` is listed as hidden from Client::get_webhooks, but is exposed".into(),
                "deleteWebhook: the table hides query parameter `opt_fields` in Client::delete_webhook, but the spec has no such query parameter".into(),
            ],
        }
    );

    // A builder listed for an operation the spec does not have.
    let builders = [BUILDERS, &[("listWebhookEvents", Builder::GetWebhooks)]].concat();
    assert_eq!(
        check(spec::derived(), &builders, EXPOSED, HIDDEN).stale,
        [
            "listWebhookEvents: the table gives it Client::get_webhooks, but the spec has no such operation"
        ]
    );
}
