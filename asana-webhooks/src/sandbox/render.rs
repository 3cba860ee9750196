//! What a webhook answer shows: the `opt_fields` a request may ask for,
//! the webhook representation they select, and a listing's `next_page`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::failure::Failure;
use super::model::{Resource, Webhook, timestamp};

/// The opt_fields a webhook answer can include, besides the compact ones.
const OPTIONAL_FIELDS: &[&str] = &[
    "active",
    "created_at",
    "delivery_retry_count",
    "failure_deletion_timestamp",
    "filters",
    "filters.action",
    "filters.fields",
    "filters.resource_subtype",
    "last_failure_at",
    "last_failure_content",
    "last_success_at",
    "next_attempt_after",
    "resource",
    "resource.name",
    "target",
];

/// The extra opt_fields getWebhooks accepts (they select `next_page` keys).
const PAGE_FIELDS: &[&str] = &["offset", "path", "uri"];

/// Parses comma-joined (or repeated) opt_fields and refuses unknown ones;
/// `list` admits the page fields of getWebhooks.
pub(crate) fn opt_fields(values: &[String], list: bool) -> Result<Vec<String>, Failure> {
    let mut fields = Vec::new();
    for field in values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        if !(OPTIONAL_FIELDS.contains(&field) || list && PAGE_FIELDS.contains(&field)) {
            return Err(Failure::new(
                400,
                format!("opt_fields: Unknown field: {field}"),
            ));
        }
        fields.push(field.to_string());
    }
    Ok(fields)
}

/// A webhook in the representation asked for: compact unless
/// `fields` names more. `resource` is the seeded object it watches.
pub(crate) fn webhook(webhook: &Webhook, resource: Option<&Resource>, fields: &[String]) -> Value {
    let has = |f: &str| fields.iter().any(|x| x == f);
    let mut resource_json = json!({
        "gid": webhook.resource,
        "resource_type": resource.map(|r| r.resource_type).unwrap_or("task"),
    });
    if has("resource.name") {
        resource_json["name"] = json!(resource.map(|r| r.name));
    }
    let mut out = json!({
        "gid": webhook.gid,
        "resource_type": "webhook",
        "active": webhook.failure_deletion_timestamp.is_none(),
        "resource": resource_json,
        "target": webhook.target,
    });
    let opt_time = |t: &Option<DateTime<Utc>>| {
        t.as_ref()
            .map(timestamp)
            .map(Value::from)
            .unwrap_or(Value::Null)
    };
    let optional: [(&str, Value); 7] = [
        ("created_at", json!(timestamp(&webhook.created_at))),
        ("last_success_at", opt_time(&webhook.last_success_at)),
        ("last_failure_at", opt_time(&webhook.last_failure_at)),
        ("last_failure_content", json!(webhook.last_failure_content)),
        ("delivery_retry_count", json!(webhook.delivery_retry_count)),
        ("next_attempt_after", opt_time(&webhook.next_attempt_after)),
        (
            "failure_deletion_timestamp",
            opt_time(&webhook.failure_deletion_timestamp),
        ),
    ];
    for (name, value) in optional {
        if has(name) {
            out[name] = value;
        }
    }
    let filter_keys: Vec<&str> = fields
        .iter()
        .filter_map(|f| f.strip_prefix("filters."))
        .collect();
    if has("filters") || !filter_keys.is_empty() {
        let filters: Vec<Value> = webhook
            .filters
            .iter()
            .map(|f| {
                let mut full = serde_json::to_value(f).expect("filters serialise");
                if !has("filters")
                    && let Value::Object(map) = &mut full
                {
                    map.retain(|k, _| k == "resource_type" || filter_keys.contains(&k.as_str()));
                }
                full
            })
            .collect();
        out["filters"] = json!(filters);
    }
    out
}

/// The `next_page` of a listing continuing at offset `token`, repeating
/// the query that asked for it.
pub(crate) fn next_page(
    workspace: &str,
    resource: Option<&str>,
    limit: u32,
    token: &str,
    fields: &[String],
) -> Value {
    let mut path = format!("/webhooks?workspace={workspace}&limit={limit}&offset={token}");
    if let Some(resource) = resource {
        path.push_str(&format!("&resource={resource}"));
    }
    if !fields.is_empty() {
        path.push_str(&format!("&opt_fields={}", fields.join(",")));
    }
    json!({"offset": token, "path": path, "uri": format!("https://app.asana.com/api/1.0{path}")})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn no_opt_fields_is_the_compact_representation() {
        assert_eq!(opt_fields(&[], false), Ok(vec![]));
        assert_eq!(opt_fields(&strings(&["", " , "]), false), Ok(vec![]));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let refused = opt_fields(&strings(&["target,bogus"]), false).unwrap_err();
        assert_eq!(
            refused,
            Failure::new(400, "opt_fields: Unknown field: bogus")
        );
        // A sub-field of something that is not an object here is unknown too.
        let refused = opt_fields(&strings(&["target.name"]), true).unwrap_err();
        assert_eq!(refused.message, "opt_fields: Unknown field: target.name");
    }

    #[test]
    fn comma_joined_and_repeated_fields_are_accepted_in_order() {
        let fields = opt_fields(
            &strings(&["created_at, target", "filters.action", " resource.name "]),
            false,
        );
        assert_eq!(
            fields,
            Ok(strings(&[
                "created_at",
                "target",
                "filters.action",
                "resource.name"
            ]))
        );
    }

    #[test]
    fn page_fields_only_for_listings() {
        assert_eq!(
            opt_fields(&strings(&["offset,path,uri,target"]), true),
            Ok(strings(&["offset", "path", "uri", "target"]))
        );
        for page_field in ["offset", "path", "uri"] {
            assert_eq!(
                opt_fields(&strings(&[page_field]), false),
                Err(Failure::new(
                    400,
                    format!("opt_fields: Unknown field: {page_field}")
                ))
            );
        }
    }

    #[test]
    fn next_page_repeats_the_query() {
        let page = next_page("1", Some("2"), 5, "ab", &strings(&["target", "created_at"]));
        let path =
            "/webhooks?workspace=1&limit=5&offset=ab&resource=2&opt_fields=target,created_at";
        assert_eq!(
            page,
            json!({
                "offset": "ab",
                "path": path,
                "uri": format!("https://app.asana.com/api/1.0{path}"),
            })
        );
        assert_eq!(
            next_page("1", None, 100, "cd", &[])["path"],
            "/webhooks?workspace=1&limit=100&offset=cd"
        );
    }
}
