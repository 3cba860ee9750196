//! Tests of spec-diff's verdicts, on synthetic specs and Asana's real history.

use std::collections::BTreeSet;
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
        // The copies vendored in this repository (provenance in
        // openapi/README.md), so that the tests need nothing outside it.
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../openapi/history")
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
fn the_events_api_is_compared_and_a_version_without_it_shows_it_added() {
    // The base has no `/events` path at all: comparable, and the operation
    // appears as added (removed the other way round).
    let events = format!(
        "{}\n  /events:\n    parameters: [{{name: resource, in: query, required: true, schema: {{type: string}}}}]\n    get: {{operationId: getEvents, responses: {{200: {{description: ok}}}}}}",
        base_paths(PARAMS, BODY, SECURITY)
    );
    let added = only_change(spec(&events, WEBHOOK));
    assert!(
        !added.breaking && added.change == "operation added" && added.location == "GET /events",
        "{added:?}"
    );
    let removed = diff(&spec(&events, WEBHOOK), &base()).unwrap();
    assert!(
        removed.len() == 1 && removed[0].breaking,
        "{}",
        render(&removed)
    );
    // A required path-level parameter added to getEvents is named there.
    let sync = events.replace(
        "[{name: resource, in: query, required: true, schema: {type: string}}]",
        "[{name: resource, in: query, required: true, schema: {type: string}}, {name: sync, in: query, required: true, schema: {type: string}}]",
    );
    let changes = diff(&spec(&events, WEBHOOK), &spec(&sync, WEBHOOK)).unwrap();
    assert!(
        changes.len() == 1
            && changes[0].location == "GET /events"
            && changes[0].change == "query parameter `sync` added"
            && changes[0].class == Class::ServerSide,
        "{}",
        render(&changes)
    );
    // Asana's real getEvents is on the surface of every vendored version.
    for version in [history(OLD), history(NEW)] {
        let operations = model::model(version).unwrap();
        assert_eq!(
            operations["GET /events"].operation_id.as_deref(),
            Some("getEvents")
        );
    }
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
    // A length limit makes the generator wrap the string in a validating newtype.
    assert!(
        new_max.breaking
            && new_max.change
                == "generated type changes from String to a validating newtype around String",
        "{new_max:?}"
    );
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
    assert!(
        format.breaking && format.change == "generated type changes from String to DateTime<Utc>",
        "{format:?}"
    );
    // An optional field is an `Option` already: null in answers decodes.
    let nullable = only_change(variant(&WEBHOOK.replace(
        "name: {type: string}",
        "name: {type: string, nullable: true}",
    )));
    assert!(
        nullable.class == Class::NonBreaking && nullable.change == "now nullable",
        "{nullable:?}"
    );
    // A required one turns from `String` into `Option<String>`.
    let required_nullable = only_change(variant(
        &WEBHOOK.replace("gid: {type: string}", "gid: {type: string, nullable: true}"),
    ));
    assert!(
        required_nullable.breaking && required_nullable.change == "now nullable",
        "{required_nullable:?}"
    );
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
        &std::fs::read(crate::regen::workspace_root().join(crate::regen::VENDORED_SPEC)).unwrap(),
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
        "generated type changes from NonZeroU64 to i64"
    );
    // 0..=100 matches no integer type's range exactly: the generator falls
    // back to i64 (0 alone, without the maximum, would give u64).
    let zero = PARAMS.replace("minimum: 1", "minimum: 0");
    let to_zero = only_change(spec(&base_paths(&zero, BODY, SECURITY), WEBHOOK));
    assert_eq!(
        to_zero.change,
        "generated type changes from NonZeroU64 to i64"
    );
    let unsigned = PARAMS.replace("minimum: 1, maximum: 100", "minimum: 0");
    let to_u64 = only_change(spec(&base_paths(&unsigned, BODY, SECURITY), WEBHOOK));
    assert_eq!(
        to_u64.change,
        "generated type changes from NonZeroU64 to u64"
    );
    let width = PARAMS.replace(
        "{type: integer, minimum: 1",
        "{type: integer, format: int32, minimum: 1",
    );
    assert!(only_change(spec(&base_paths(&width, BODY, SECURITY), WEBHOOK)).breaking);
    // Any minimum other than 1 loses the NonZero type, even a tighter one.
    let five = PARAMS.replace("minimum: 1", "minimum: 5");
    let to_five = only_change(spec(&base_paths(&five, BODY, SECURITY), WEBHOOK));
    assert!(to_five.breaking, "{to_five:?}");
    // A tighter bound or a format that keeps the type is Asana's business.
    let tighter = PARAMS.replace("maximum: 100", "maximum: 50");
    let kept = only_change(spec(&base_paths(&tighter, BODY, SECURITY), WEBHOOK));
    assert_eq!(kept.class, Class::ServerSide, "{kept:?}");
    let int64 = PARAMS.replace(
        "{type: integer, minimum: 1",
        "{type: integer, format: int64, minimum: 1",
    );
    let same = only_change(spec(&base_paths(&int64, BODY, SECURITY), WEBHOOK));
    assert!(
        same.class == Class::ServerSide && same.change.starts_with("format changed"),
        "{same:?}"
    );
    // A string format the generator does not map is no type change.
    let uri = base_paths(PARAMS, BODY, SECURITY);
    let changes = diff(
        &spec(&uri, WEBHOOK),
        &spec(
            &uri,
            &WEBHOOK.replace("name: {type: string}", "name: {type: string, format: uri}"),
        ),
    )
    .unwrap();
    assert!(
        changes.len() == 1 && changes[0].class == Class::NonBreaking,
        "{}",
        render(&changes)
    );
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
        any_of.len() == 1 && any_of[0].breaking && any_of[0].change == "anyOf alternatives changed",
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
            && map[0].change == "now allows typed additional properties"
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

#[test]
fn a_field_is_breaking_only_when_it_turns_between_t_and_option() {
    let tags = |extra: &str| {
        webhook_with(&format!(
            "tags: {{type: array, items: {{type: string}}{extra}}}"
        ))
    };
    // An optional array is a `Vec` that defaults to empty: required or not,
    // the field keeps its type.
    let required = diff(
        &tags(""),
        &spec(
            &base_paths(PARAMS, BODY, SECURITY),
            &WEBHOOK
                .replace("required: [gid]", "required: [gid, tags]")
                .replace(
                    "active: {type: boolean}",
                    "active: {type: boolean}, tags: {type: array, items: {type: string}}",
                ),
        ),
    )
    .unwrap();
    assert!(
        required.len() == 1
            && required[0].class == Class::NonBreaking
            && required[0].change == "now required",
        "{}",
        render(&required)
    );
    // In a request the same change is Asana refusing calls without it.
    let before = spec(
        &base_paths(
            PARAMS,
            &BODY.replace(
                "note: {type: string}",
                "note: {type: string}, filters: {type: array, items: {type: string}}",
            ),
            SECURITY,
        ),
        WEBHOOK,
    );
    let after = spec(
        &base_paths(
            PARAMS,
            &BODY
                .replace("required: [resource]", "required: [resource, filters]")
                .replace(
                    "note: {type: string}",
                    "note: {type: string}, filters: {type: array, items: {type: string}}",
                ),
            SECURITY,
        ),
        WEBHOOK,
    );
    let now_required = diff(&before, &after).unwrap();
    assert!(
        now_required.len() == 1 && now_required[0].class == Class::ServerSide,
        "{}",
        render(&now_required)
    );
    // A default on an optional scalar makes the generator drop the `Option`.
    let defaulted = diff(
        &webhook_with("extra: {type: string}"),
        &webhook_with("extra: {type: string, default: x}"),
    )
    .unwrap();
    let field = defaulted
        .iter()
        .find(|c| c.change == "now with a default")
        .unwrap_or_else(|| panic!("{}", render(&defaulted)));
    assert!(field.breaking);
}

#[test]
fn additional_properties_false_refuses_unknown_fields_in_answers() {
    let object = "extra: {type: object, properties: {a: {type: string}}}";
    let closed =
        "extra: {type: object, properties: {a: {type: string}}, additionalProperties: false}";
    let open = "extra: {type: object, properties: {a: {type: string}}, additionalProperties: true}";
    let answers = diff(&webhook_with(object), &webhook_with(closed)).unwrap();
    assert!(
        answers.len() == 1 && answers[0].breaking,
        "{}",
        render(&answers)
    );
    let reopened = diff(&webhook_with(closed), &webhook_with(object)).unwrap();
    assert!(
        reopened.len() == 1 && reopened[0].class == Class::NonBreaking,
        "{}",
        render(&reopened)
    );
    // `true` is what an absent keyword means already.
    assert!(
        diff(&webhook_with(object), &webhook_with(open))
            .unwrap()
            .is_empty()
    );
    // Requests only ever send the listed fields.
    let request = only_change(spec(
        &base_paths(
            PARAMS,
            &BODY.replace(
                "properties: {resource",
                "additionalProperties: false, properties: {resource",
            ),
            SECURITY,
        ),
        WEBHOOK,
    ));
    assert_eq!(request.class, Class::NonBreaking, "{request:?}");
}

#[test]
fn an_operation_opened_to_anonymous_calls_is_an_alternative_added() {
    let open = base_paths(PARAMS, BODY, SECURITY).replace(
        "      security: [{oauth2: ['webhooks:read']}]",
        "      security: []",
    );
    let changes = diff(&base(), &spec(&open, WEBHOOK)).unwrap();
    let mut seen: Vec<(&str, Class)> = changes
        .iter()
        .map(|c| (c.change.as_str(), c.class))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("auth alternative `anonymous` added", Class::ServerSide),
            ("auth alternative `oauth2` removed", Class::ServerSide),
        ],
        "{}",
        render(&changes)
    );
}
