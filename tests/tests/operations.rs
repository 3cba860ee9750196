//! The five webhook operations against a mock Asana on 127.0.0.1: exact
//! method, path, query string, headers and body on the wire; answers decoded.

use asana_webhooks::types::{WebhookFilter, WebhookListOptField, WebhookOptField};
use asana_webhooks::{Client, DEFAULT_USER_AGENT};
use httpmock::prelude::*;
use serde_json::json;

const TOKEN: &str = "0/test-token";

fn client(server: &MockServer) -> Client {
    Client::builder()
        .token(TOKEN)
        .base_url(server.base_url())
        .build()
        .unwrap()
}

fn webhook_json(gid: &str) -> serde_json::Value {
    json!({
        "gid": gid,
        "resource_type": "webhook",
        "active": true,
        "resource": {"gid": "51648", "resource_type": "project", "name": "Bugs"},
        "target": "https://example.com/hooks/1"
    })
}

/// The raw query string of a request, as it was on the wire.
fn raw_query(req: &HttpMockRequest) -> String {
    req.uri().query().unwrap_or_default().to_string()
}

#[tokio::test]
async fn get_webhooks_sends_every_parameter_and_one_comma_joined_opt_fields() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/webhooks")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("user-agent", DEFAULT_USER_AGENT)
                .header("accept", "application/json")
                .header_missing("api-version")
                .is_true(|req| {
                    raw_query(req)
                        == "limit=50&offset=eyJ0&opt_fields=active,filters.action,offset&opt_pretty=true&resource=51648&workspace=1331"
                });
            then.status(200).json_body(json!({
                "data": [webhook_json("1"), webhook_json("2")],
                "next_page": {"offset": "next-token", "path": "/webhooks?offset=next-token", "uri": "https://app.asana.com/api/1.0/webhooks?offset=next-token"}
            }));
        })
        .await;

    let page = client(&server)
        .get_webhooks("1331")
        .resource("51648")
        .limit(50)
        .offset("eyJ0")
        .opt_fields([
            WebhookListOptField::Active,
            WebhookListOptField::FiltersAction,
            WebhookListOptField::Offset,
        ])
        .opt_pretty(true)
        .send()
        .await
        .unwrap();

    mock.assert_async().await;
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[1].gid.as_deref(), Some("2"));
    assert_eq!(
        page.items[0].resource.as_ref().unwrap().name.as_deref(),
        Some("Bugs")
    );
    assert_eq!(page.next_offset(), Some("next-token"));
}

#[tokio::test]
async fn get_webhooks_last_page_has_no_next_offset() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/webhooks")
                .query_param("workspace", "1")
                .is_true(|req| raw_query(req) == "workspace=1");
            then.status(200)
                .json_body(json!({"data": [], "next_page": null}));
        })
        .await;
    let page = client(&server).get_webhooks("1").send().await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next_offset(), None);
}

#[tokio::test]
async fn page_size_outside_1_to_100_is_refused_before_sending() {
    let server = MockServer::start_async().await;
    let any = server
        .mock_async(|_, then| {
            then.status(200);
        })
        .await;
    for limit in [0, 101] {
        let err = client(&server)
            .get_webhooks("1")
            .limit(limit)
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(err, asana_webhooks::Error::InvalidRequest(_)),
            "{err:?}"
        );
        assert!(err.to_string().contains("1..=100"), "{err}");
    }
    any.assert_calls_async(0).await;
}

#[tokio::test]
async fn create_webhook_wraps_the_body_once_and_returns_the_secret() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(POST)
                .path("/webhooks")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("content-type", "application/json")
                .header_missing("api-version")
                .is_true(|req| raw_query(req) == "opt_fields=filters,created_at")
                .json_body(json!({"data": {
                    "resource": "51648",
                    "target": "https://example.com/hooks/1",
                    "filters": [{"resource_type": "task", "action": "changed", "fields": ["due_on"]}]
                }}));
            then.status(201).json_body(json!({
                "data": webhook_json("43214"),
                "X-Hook-Secret": "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81"
            }));
        })
        .await;

    let created = client(&server)
        .create_webhook("51648", "https://example.com/hooks/1")
        .filter(WebhookFilter::new("task", "changed").with_fields(["due_on"]))
        .opt_fields([WebhookOptField::Filters, WebhookOptField::CreatedAt])
        .send()
        .await
        .unwrap();

    mock.assert_async().await;
    assert_eq!(created.webhook.gid.as_deref(), Some("43214"));
    let secret = created.secret.expect("the 201 body carries the secret");
    assert_eq!(
        secret.expose(),
        "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81"
    );
    assert!(!format!("{secret:?} {secret}").contains("b537"));
}

#[tokio::test]
async fn create_webhook_without_filters_sends_no_filters_key() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(POST)
                .path("/webhooks")
                .json_body(json!({"data": {"resource": "1", "target": "https://e/x"}}));
            then.status(201)
                .json_body(json!({"data": webhook_json("9")}));
        })
        .await;
    let created = client(&server)
        .create_webhook("1", "https://e/x")
        .send()
        .await
        .unwrap();
    mock.assert_async().await;
    assert_eq!(created.secret, None);
}

#[tokio::test]
async fn get_webhook_decodes_nulls_and_unknown_fields() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/webhooks/43214")
                .header_missing("api-version")
                .is_true(|req| {
                    raw_query(req)
                        == "opt_fields=last_success_at,last_failure_at,last_failure_content,filters"
                });
            then.status(200).json_body(json!({"data": {
                "gid": "43214", "resource_type": "webhook", "active": false,
                "resource": {"gid": "8675309", "name": "Bugs"},
                "target": "https://example.com/receive-webhook/7654",
                "last_success_at": null, "last_failure_at": "2026-03-17T10:11:06.611Z",
                "last_failure_content": null, "next_attempt_after": null,
                "failure_deletion_timestamp": null, "created_at": null,
                "filters": [{"resource_type": "task", "action": "added", "something_new": 1}],
                "a_field_asana_adds_later": {"x": 1}
            }}));
        })
        .await;
    let webhook = client(&server)
        .get_webhook("43214")
        .opt_fields([
            WebhookOptField::LastSuccessAt,
            WebhookOptField::LastFailureAt,
            WebhookOptField::LastFailureContent,
            WebhookOptField::Filters,
        ])
        .send()
        .await
        .unwrap();
    mock.assert_async().await;
    assert_eq!(webhook.last_success_at, None);
    assert_eq!(
        webhook.last_failure_at.unwrap().to_rfc3339(),
        "2026-03-17T10:11:06.611+00:00"
    );
    assert_eq!(webhook.filters[0].action.as_deref(), Some("added"));
    assert_eq!(webhook.active, Some(false));
}

#[tokio::test]
async fn update_webhook_distinguishes_clearing_filters_from_leaving_them_out() {
    let server = MockServer::start_async().await;
    let cleared = server
        .mock_async(|when, then| {
            when.method(PUT)
                .path("/webhooks/7")
                .json_body(json!({"data": {"filters": []}}));
            then.status(200)
                .json_body(json!({"data": webhook_json("7")}));
        })
        .await;
    let replaced = server
        .mock_async(|when, then| {
            when.method(PUT)
                .path("/webhooks/8")
                .is_true(|req| raw_query(req) == "opt_fields=filters")
                .json_body(
                    json!({"data": {"filters": [{"resource_type": "project", "action": "added"}]}}),
                );
            then.status(200)
                .json_body(json!({"data": webhook_json("8")}));
        })
        .await;
    let untouched = server
        .mock_async(|when, then| {
            when.method(PUT)
                .path("/webhooks/9")
                .json_body(json!({"data": {}}));
            then.status(200)
                .json_body(json!({"data": webhook_json("9")}));
        })
        .await;

    let client = client(&server);
    assert_eq!(
        client
            .update_webhook("7")
            .clear_filters()
            .send()
            .await
            .unwrap()
            .gid
            .as_deref(),
        Some("7")
    );
    client
        .update_webhook("8")
        .filters([WebhookFilter::new("project", "added")])
        .opt_fields([WebhookOptField::Filters])
        .send()
        .await
        .unwrap();
    client.update_webhook("9").send().await.unwrap();
    cleared.assert_async().await;
    replaced.assert_async().await;
    untouched.assert_async().await;
}

#[tokio::test]
async fn delete_webhook_sends_delete_and_accepts_the_empty_data() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(DELETE)
                .path("/webhooks/12")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header_missing("api-version")
                .is_true(|req| raw_query(req) == "opt_pretty=true");
            then.status(200).json_body(json!({"data": {}}));
        })
        .await;
    client(&server)
        .delete_webhook("12")
        .opt_pretty(true)
        .send()
        .await
        .unwrap();
    mock.assert_async().await;
}

#[tokio::test]
async fn base_url_with_a_path_stem_and_trailing_slash_is_respected() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET).path("/api/1.0/webhooks/5");
            then.status(200)
                .json_body(json!({"data": webhook_json("5")}));
        })
        .await;
    let client = Client::builder()
        .token(TOKEN)
        .base_url(format!("{}/api/1.0/", server.base_url()))
        .build()
        .unwrap();
    client.get_webhook("5").send().await.unwrap();
    mock.assert_async().await;
}

#[tokio::test]
async fn a_caller_supplied_reqwest_client_is_used_with_the_same_hooks() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/webhooks/5")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("x-custom", "1");
            then.status(200)
                .json_body(json!({"data": webhook_json("5")}));
        })
        .await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-custom", "1".parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    let client = Client::builder()
        .token(TOKEN)
        .base_url(server.base_url())
        .reqwest_client(http)
        .build()
        .unwrap();
    client.get_webhook("5").send().await.unwrap();
    mock.assert_async().await;
}
