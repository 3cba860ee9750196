//! Non-2xx answers become typed errors with the status, Asana's `errors`
//! and `Retry-After`, whatever the body holds.

use std::time::Duration;

use asana_webhooks::{Client, Error, RetryPolicy};
use httpmock::prelude::*;
use serde_json::json;

async fn error_for(
    status: u16,
    body: Option<serde_json::Value>,
    retry_after: Option<&str>,
) -> Error {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(GET).path("/webhooks/1");
            let then = then.status(status);
            let then = match retry_after {
                Some(v) => then.header("retry-after", v),
                None => then,
            };
            match body {
                Some(body) => {
                    then.json_body(body);
                }
                None => {
                    then.header("content-type", "text/html")
                        .body("<html><body><h1>502 Bad Gateway</h1></body></html>");
                }
            }
        })
        .await;
    // Retries have their own tests; here each status is decoded as it comes.
    let client = Client::builder()
        .token("t")
        .base_url(server.base_url())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    client.get_webhook("1").send().await.unwrap_err()
}

fn asana_error(message: &str) -> serde_json::Value {
    json!({"errors": [{"message": message, "help": "For more information on API status codes and how to handle them, read the docs on errors: https://developers.asana.com/docs/errors"}]})
}

#[tokio::test]
async fn bad_request_401_404_show_asanas_message() {
    for (status, message) in [
        (400, "workspace: Missing input"),
        (401, "Not Authorized"),
        (404, "webhook: Unknown object: 1"),
    ] {
        let err = error_for(status, Some(asana_error(message)), None).await;
        assert_eq!(err.status().map(|s| s.as_u16()), Some(status));
        let api = err.as_api().expect("an API error");
        assert_eq!(api.message(), Some(message));
        assert!(
            api.errors()[0]
                .help
                .as_deref()
                .unwrap()
                .contains("docs on errors")
        );
        assert!(err.to_string().contains(message), "{err}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn duplicate_webhook_403_is_recognised_and_explained() {
    let body = json!({"errors": [{"error": "duplicate_webhook", "message": "Duplicated webhook", "user_message": "You already have this webhook"}]});
    let err = error_for(403, Some(body), None).await;
    let api = err.as_api().unwrap();
    assert!(api.is_duplicate_webhook());
    assert_eq!(
        api.errors()[0].extra["user_message"],
        "You already have this webhook"
    );
    let text = err.to_string();
    assert!(text.contains("403 Forbidden: Duplicated webhook"), "{text}");
    assert!(text.contains("exists already"), "{text}");
}

#[tokio::test]
async fn rate_limit_429_carries_retry_after() {
    let err = error_for(
        429,
        Some(asana_error("You have made too many requests recently.")),
        Some("2"),
    )
    .await;
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert!(err.is_retryable());
    assert!(err.to_string().contains("Retry-After: 2s"), "{err}");
}

#[tokio::test]
async fn server_error_500_shows_the_phrase_for_support() {
    let body =
        json!({"errors": [{"message": "Server Error", "phrase": "6 sad squid snuggle softly"}]});
    let err = error_for(500, Some(body), None).await;
    assert_eq!(
        err.as_api().unwrap().phrase(),
        Some("6 sad squid snuggle softly")
    );
    assert!(
        err.to_string().contains("\"6 sad squid snuggle softly\""),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_non_json_502_from_a_proxy_still_gives_the_status() {
    let err = error_for(502, None, None).await;
    assert_eq!(err.status().map(|s| s.as_u16()), Some(502));
    let api = err.as_api().unwrap();
    assert!(api.errors().is_empty());
    assert!(api.body_excerpt().unwrap().contains("502 Bad Gateway"));
    assert!(
        err.to_string()
            .starts_with("Asana answered 502 Bad Gateway with a body that is not Asana's JSON"),
        "{err}"
    );
}

#[tokio::test]
async fn a_connection_refused_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = Client::builder()
        .token("t")
        .base_url(format!("http://127.0.0.1:{port}"))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = client.get_webhook("1").send().await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(
        err.to_string().starts_with("could not reach Asana"),
        "{err}"
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_success_without_data_is_a_decode_error() {
    let err = {
        let server = MockServer::start_async().await;
        server
            .mock_async(|when, then| {
                when.method(GET).path("/webhooks/1");
                then.status(200).json_body(json!({}));
            })
            .await;
        let client = Client::builder()
            .token("t")
            .base_url(server.base_url())
            .build()
            .unwrap();
        client.get_webhook("1").send().await.unwrap_err()
    };
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
}
