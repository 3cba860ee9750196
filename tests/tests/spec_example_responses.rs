//! Example answers built from the vendored spec's own `example` values (as
//! a mock server such as Prism builds them) decode into the generated
//! types, without losing a field; so does the 201 example in the
//! createWebhook description.

use asana_webhooks::Webhook;
use asana_webhooks::types::{
    CreateWebhookResponse, DeleteWebhookResponse, GetWebhookResponse, GetWebhooksResponse,
    UpdateWebhookResponse,
};
use asana_webhooks_tests::spec::{example, response_schema, vendored};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The example answer of an operation.
fn example_answer(path: &str, method: &str, status: u16) -> Value {
    let spec = vendored();
    example(spec, response_schema(spec, path, method, status))
}

/// Decodes `json` into `T`, then checks that serialising it again keeps
/// every key and value the example had.
fn decode_losslessly<T: DeserializeOwned + serde::Serialize>(json: &Value) -> T {
    let decoded: T =
        serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}: {json:#}"));
    let again = serde_json::to_value(&decoded).unwrap();
    assert_subset(json, &again, "$");
    decoded
}

fn assert_subset(expected: &Value, actual: &Value, at: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, value) in e {
                let Some(found) = a.get(key) else {
                    panic!("{at}.{key} was lost in decoding")
                };
                assert_subset(value, found, &format!("{at}.{key}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{at}");
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                assert_subset(x, y, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{at}"),
    }
}

fn assert_full_webhook(webhook: &Webhook) {
    assert_eq!(webhook.gid.as_deref(), Some("12345"));
    assert_eq!(webhook.resource_type.as_deref(), Some("webhook"));
    assert_eq!(webhook.active, Some(false));
    assert_eq!(
        webhook.target.as_deref(),
        Some("https://example.com/receive-webhook/7654")
    );
    assert_eq!(
        webhook.resource.as_ref().unwrap().name.as_deref(),
        Some("Bug Task")
    );
    assert_eq!(
        webhook.created_at.unwrap().to_rfc3339(),
        "2012-02-22T02:06:58.147+00:00"
    );
    assert_eq!(webhook.delivery_retry_count, Some(3));
    assert!(
        webhook
            .last_failure_content
            .as_deref()
            .unwrap()
            .starts_with("500 Server Error")
    );
    let filter = &webhook.filters[0];
    assert_eq!(filter.resource_type.as_deref(), Some("task"));
    assert_eq!(filter.action.as_deref(), Some("changed"));
    assert!(
        filter.fields.contains(&"due_on".to_string()),
        "{:?}",
        filter.fields
    );
}

#[test]
fn get_webhooks_example_decodes() {
    let json = example_answer("/webhooks", "get", 200);
    let answer: GetWebhooksResponse = decode_losslessly(&json);
    assert_eq!(answer.data.len(), 1);
    assert_full_webhook(&answer.data[0]);
    let next = answer
        .next_page
        .and_then(|p| p.0)
        .expect("the example has a next page");
    assert_eq!(
        next.offset.as_deref(),
        Some("eyJ0eXAiOJiKV1iQLCJhbGciOiJIUzI1NiJ9")
    );
}

#[test]
fn create_webhook_example_decodes_with_its_secret() {
    let json = example_answer("/webhooks", "post", 201);
    let answer: CreateWebhookResponse = decode_losslessly(&json);
    assert_full_webhook(answer.data.as_ref().unwrap());
    assert_eq!(
        answer.x_hook_secret.as_deref(),
        Some("b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81")
    );
}

#[test]
fn get_and_update_webhook_examples_decode() {
    let get: GetWebhookResponse =
        decode_losslessly(&example_answer("/webhooks/{webhook_gid}", "get", 200));
    assert_full_webhook(get.data.as_ref().unwrap());
    let update: UpdateWebhookResponse =
        decode_losslessly(&example_answer("/webhooks/{webhook_gid}", "put", 200));
    assert_full_webhook(update.data.as_ref().unwrap());
}

#[test]
fn delete_webhook_example_decodes() {
    let json = example_answer("/webhooks/{webhook_gid}", "delete", 200);
    let answer: DeleteWebhookResponse = decode_losslessly(&json);
    assert!(answer.data.unwrap().0.is_empty());
}

/// The JSON after `HTTP/1.1 201` in the createWebhook description.
fn documented_201() -> Value {
    let description = vendored()["paths"]["/webhooks"]["post"]["description"]
        .as_str()
        .unwrap();
    let after = &description[description
        .find("HTTP/1.1 201")
        .expect("the 201 transcript")..];
    let start = after.find('{').unwrap();
    let end = after[start..]
        .find("```")
        .map(|e| start + e)
        .unwrap_or(after.len());
    serde_json::from_str(after[start..end].trim()).unwrap()
}

#[test]
fn the_201_example_in_the_create_description_decodes_with_its_nulls() {
    let json = documented_201();
    assert!(
        json["data"]["last_success_at"].is_null(),
        "the example has nulls: {json}"
    );
    let answer: CreateWebhookResponse = serde_json::from_value(json.clone()).unwrap();
    let webhook = answer.data.unwrap();
    assert_eq!(webhook.gid.as_deref(), Some("43214"));
    assert_eq!(webhook.active, Some(false));
    assert_eq!(webhook.last_success_at, None);
    assert_eq!(webhook.last_failure_at, None);
    assert_eq!(webhook.last_failure_content, None);
    assert_eq!(webhook.resource.unwrap().name.as_deref(), Some("Bugs"));
    assert_eq!(
        answer.x_hook_secret.as_deref(),
        Some("b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81")
    );
    let data: Webhook = serde_json::from_value(json["data"].clone()).unwrap();
    assert_eq!(
        data.target.as_deref(),
        Some("https://example.com/receive-webhook/7654")
    );
}

#[test]
fn the_compact_representation_and_unknown_fields_decode() {
    let compact: Webhook = serde_json::from_str(
        r#"{"gid":"1","resource_type":"webhook","active":true,"resource":{"gid":"2","resource_type":"task","name":"x"},"target":"https://e/x"}"#,
    )
    .unwrap();
    assert_eq!(compact.gid.as_deref(), Some("1"));
    assert!(compact.filters.is_empty() && compact.created_at.is_none());
    let extended: Webhook = serde_json::from_str(
        r#"{"gid":"1","brand_new":{"nested":[1]},"resource":{"gid":"2","color":"red"},"last_success_at":null}"#,
    )
    .unwrap();
    assert_eq!(extended.resource.unwrap().gid.as_deref(), Some("2"));
}
