//! The receiver with an inbox: a 200 only once the delivery is committed,
//! 503 whenever it cannot be, repeats dropped, heartbeats recorded.

use std::time::Duration;

use asana_webhooks::HookSecret;
use asana_webhooks::inbox::{FileInbox, Inbox, MemoryInbox};
use asana_webhooks::receiver::Receiver;
use asana_webhooks::secrets::{MemorySecretStore, SecretStore, StoredSecret, TargetKey};
use asana_webhooks_tests::{hmac_hex, serve};

fn event(gid: &str) -> String {
    format!(
        r#"{{"action":"added","resource":{{"gid":"{gid}","resource_type":"task"}},"created_at":"2026-01-01T00:00:00Z"}}"#
    )
}

async fn post(url: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("X-Hook-Signature", hmac_hex("s", body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn receiver_with(inbox: impl Inbox) -> String {
    let store = MemorySecretStore::new();
    store
        .save(StoredSecret::new(
            TargetKey::from_path_and_query("/in"),
            "7",
            HookSecret::new("s"),
        ))
        .await
        .unwrap();
    let addr = serve(Receiver::builder(store).build_with_inbox(inbox).router()).await;
    format!("http://{addr}/in")
}

#[tokio::test]
async fn a_full_inbox_answers_503_and_the_retry_is_taken_once_there_is_room() {
    let inbox = MemoryInbox::with_limits(Duration::from_secs(60), 400);
    let url = receiver_with(inbox.clone()).await;
    let first = format!(r#"{{"events":[{}]}}"#, event("1"));
    let second = format!(r#"{{"events":[{},{}]}}"#, event("2"), event("3"));
    assert_eq!(post(&url, &first).await.status().as_u16(), 200);
    let refused = post(&url, &second).await;
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let item = inbox.next().await.unwrap();
    assert_eq!(item.event().unwrap().resource.gid, "1");
    assert_eq!(item.webhook_gid(), Some("7"));
    item.ack().await.unwrap();
    assert_eq!(
        post(&url, &second).await.status().as_u16(),
        200,
        "Asana's retry"
    );
    let gids: Vec<String> = [inbox.next().await.unwrap(), inbox.next().await.unwrap()]
        .iter()
        .map(|i| i.event().unwrap().resource.gid)
        .collect();
    assert_eq!(gids, ["2", "3"]);
}

#[tokio::test]
async fn a_resent_delivery_is_answered_200_and_its_events_kept_once() {
    let inbox = MemoryInbox::new();
    let url = receiver_with(inbox.clone()).await;
    let body = format!(r#"{{"events":[{},{}]}}"#, event("1"), event("2"));
    for _ in 0..3 {
        assert_eq!(post(&url, &body).await.status().as_u16(), 200);
    }
    let stats = inbox.stats().await.unwrap();
    assert_eq!(stats.waiting, 2);
    assert_eq!(stats.duplicates_dropped, 4);
    assert_eq!(stats.per_webhook.get("7"), Some(&2));
}

#[tokio::test]
async fn heartbeats_are_recorded_and_drifted_events_kept() {
    let inbox = MemoryInbox::new();
    let url = receiver_with(inbox.clone()).await;
    assert_eq!(post(&url, r#"{"events":[]}"#).await.status().as_u16(), 200);
    let body = r#"{"events":[{"action":"added","created_at":null}]}"#;
    assert_eq!(post(&url, body).await.status().as_u16(), 200);
    let stats = inbox.stats().await.unwrap();
    assert!(stats.last_heartbeats.contains_key("7"));
    assert_eq!(
        stats.waiting, 1,
        "the heartbeat is not work; the drifted event is"
    );
    let item = inbox.next().await.unwrap();
    let undecoded = item.event().unwrap_err();
    assert_eq!(undecoded.raw["action"], "added");
    assert_eq!(item.raw(), r#"{"action":"added","created_at":null}"#);
}

#[tokio::test]
async fn an_inbox_that_cannot_commit_answers_503_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = FileInbox::open(dir.path().join("i.redb")).await.unwrap();
    let url = receiver_with(inbox.clone()).await;
    let body = format!(r#"{{"events":[{}]}}"#, event("1"));
    assert_eq!(post(&url, &body).await.status().as_u16(), 200);
    inbox.close();
    let refused = post(&url, &format!(r#"{{"events":[{}]}}"#, event("2"))).await;
    assert_eq!(
        refused.status().as_u16(),
        503,
        "never a 200 for what was not written"
    );
    // Reopened: exactly what was acknowledged is there.
    let reopened = FileInbox::open(dir.path().join("i.redb")).await.unwrap();
    let item = reopened.next().await.unwrap();
    assert_eq!(item.event().unwrap().resource.gid, "1");
    assert_eq!(
        reopened.stats().await.unwrap().in_flight + reopened.stats().await.unwrap().waiting,
        1
    );
}
