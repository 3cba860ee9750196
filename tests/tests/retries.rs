//! Retries and concurrency limits, on every operation.
//!
//! Waits run on tokio's paused clock, which jumps ahead whenever the test
//! only waits for a timer, so a 2-second Retry-After takes no real time.
//! The clients here use a plain `reqwest::Client` (no request timeout),
//! whose timer would otherwise be what the paused clock jumps to.

use std::time::Duration;

use asana_webhooks::{Client, RetryPolicy};
use asana_webhooks_tests::{Reply, Scripted};
use serde_json::json;

fn ok_webhook() -> Reply {
    Reply::json(
        200,
        json!({"data": {"gid": "1", "resource_type": "webhook"}}),
    )
}

fn created() -> Reply {
    Reply::json(201, json!({"data": {"gid": "1"}, "X-Hook-Secret": "s"}))
}

fn unavailable() -> Reply {
    Reply::json(503, json!({"errors": [{"message": "Service Unavailable"}]}))
}

fn client_with(server: &Scripted, policy: RetryPolicy) -> Client {
    Client::builder()
        .token("t")
        .base_url(&server.base_url)
        .reqwest_client(reqwest::Client::new())
        .retry_policy(policy)
        .build()
        .unwrap()
}

fn client(server: &Scripted) -> Client {
    client_with(server, RetryPolicy::default())
}

#[tokio::test(start_paused = true)]
async fn a_429_waits_for_retry_after_then_succeeds() {
    let limited = Reply::json(429, json!({"errors": [{"message": "Rate limited"}]}))
        .header("retry-after", "2");
    let server = Scripted::start(vec![limited, ok_webhook()], None).await;
    let start = tokio::time::Instant::now();
    let webhook = client(&server).get_webhook("1").send().await.unwrap();
    assert_eq!(webhook.gid.as_deref(), Some("1"));
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn two_503s_then_200_succeeds_after_two_retries() {
    let server = Scripted::start(vec![unavailable(), unavailable(), ok_webhook()], None).await;
    let start = tokio::time::Instant::now();
    client(&server).get_webhook("1").send().await.unwrap();
    assert_eq!(server.requests().len(), 3);
    // Backoffs of 1 s and 2 s, each scaled by a jitter factor in [0.5, 1).
    assert!(
        start.elapsed() >= Duration::from_millis(1500),
        "waited {:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn exhausted_attempts_return_the_last_error() {
    let server = Scripted::start(vec![], Some(unavailable())).await;
    let err = client_with(&server, RetryPolicy::default().max_attempts(3))
        .get_webhook("1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert!(err.to_string().contains("Service Unavailable"), "{err}");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_total_wait_limit_ends_retries() {
    let limited = Reply::json(429, json!({"errors": [{"message": "Rate limited"}]}))
        .header("retry-after", "120");
    let server = Scripted::start(vec![limited, ok_webhook()], None).await;
    let err = client(&server).get_webhook("1").send().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(
        server.requests().len(),
        1,
        "a 120 s wait exceeds the default 60 s budget"
    );
}

#[tokio::test(start_paused = true)]
async fn retrying_can_be_switched_off() {
    let server = Scripted::start(vec![unavailable(), ok_webhook()], None).await;
    let err = client_with(&server, RetryPolicy::none())
        .get_webhook("1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_answered_500_is_not_retried() {
    let failed = Reply::json(
        500,
        json!({"errors": [{"message": "Server Error", "phrase": "6 sad squid"}]}),
    );
    let server = Scripted::start(vec![failed, created()], None).await;
    let err = client(&server)
        .create_webhook("1", "https://e/x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(500));
    assert_eq!(
        server.requests(),
        ["POST /webhooks"],
        "a retry could create a second webhook"
    );
}

#[tokio::test(start_paused = true)]
async fn a_post_answered_429_is_retried() {
    let limited = Reply::json(429, json!({"errors": [{"message": "Rate limited"}]}))
        .header("retry-after", "1");
    let server = Scripted::start(vec![limited, created()], None).await;
    let created = client(&server)
        .create_webhook("1", "https://e/x")
        .send()
        .await
        .unwrap();
    assert_eq!(created.webhook.gid.as_deref(), Some("1"));
    assert_eq!(server.requests(), ["POST /webhooks", "POST /webhooks"]);
}

#[tokio::test(start_paused = true)]
async fn puts_and_deletes_are_retried_after_a_503() {
    let server = Scripted::start(
        vec![
            unavailable(),
            ok_webhook(),
            unavailable(),
            Reply::json(200, json!({"data": {}})),
        ],
        None,
    )
    .await;
    let client = client(&server);
    client
        .update_webhook("1")
        .clear_filters()
        .send()
        .await
        .unwrap();
    client.delete_webhook("1").send().await.unwrap();
    assert_eq!(
        server.requests(),
        [
            "PUT /webhooks/1",
            "PUT /webhooks/1",
            "DELETE /webhooks/1",
            "DELETE /webhooks/1"
        ]
    );
}

#[tokio::test]
async fn sixteen_concurrent_writes_never_have_more_than_fifteen_in_flight() {
    // Long enough that all fifteen permitted requests overlap even on a busy machine.
    let slow = Reply::json(200, json!({"data": {}})).delayed(Duration::from_millis(600));
    let server = Scripted::start(vec![], Some(slow)).await;
    let client = client(&server);
    let deletes = (0..16).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.delete_webhook(i.to_string()).send().await })
    });
    for result in futures::future::join_all(deletes).await {
        result.unwrap().unwrap();
    }
    assert_eq!(server.requests().len(), 16);
    assert_eq!(server.max_in_flight(), 15);
}

#[tokio::test]
async fn the_write_limit_is_configurable() {
    let slow = Reply::json(200, json!({"data": {}})).delayed(Duration::from_millis(300));
    let server = Scripted::start(vec![], Some(slow)).await;
    let client = Client::builder()
        .token("t")
        .base_url(&server.base_url)
        .max_concurrent_writes(Some(2))
        .build()
        .unwrap();
    let deletes = (0..6).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.delete_webhook(i.to_string()).send().await })
    });
    futures::future::join_all(deletes).await;
    assert_eq!(server.max_in_flight(), 2);
}
