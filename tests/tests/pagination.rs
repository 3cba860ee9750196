//! Walking every page of getWebhooks.

use asana_webhooks::{Client, Error};
use asana_webhooks_tests::{Reply, Scripted};
use futures::TryStreamExt;
use serde_json::json;

fn page(gids: &[&str], next: Option<&str>) -> Reply {
    let data: Vec<_> = gids
        .iter()
        .map(|g| json!({"gid": g, "resource_type": "webhook", "active": true}))
        .collect();
    let next_page = next
        .map(|o| json!({"offset": o, "path": format!("/webhooks?offset={o}"), "uri": "https://x"}));
    Reply::json(200, json!({"data": data, "next_page": next_page}))
}

fn client(server: &Scripted) -> Client {
    Client::builder()
        .token("t")
        .base_url(&server.base_url)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_three_page_walk_follows_every_offset() {
    let server = Scripted::start(
        vec![
            page(&["1", "2"], Some("o1")),
            page(&["3", "4"], Some("o2")),
            page(&["5"], None),
        ],
        None,
    )
    .await;
    let all = client(&server)
        .get_webhooks("ws")
        .resource("r")
        .limit(2)
        .collect_all()
        .await
        .unwrap();
    let gids: Vec<_> = all.iter().map(|w| w.gid.clone().unwrap()).collect();
    assert_eq!(gids, ["1", "2", "3", "4", "5"]);
    assert_eq!(
        server.requests(),
        [
            "GET /webhooks?limit=2&resource=r&workspace=ws",
            "GET /webhooks?limit=2&offset=o1&resource=r&workspace=ws",
            "GET /webhooks?limit=2&offset=o2&resource=r&workspace=ws",
        ]
    );
}

#[tokio::test]
async fn the_default_page_size_is_the_maximum_and_pages_are_fetched_lazily() {
    let server = Scripted::start(vec![page(&["1"], Some("o1")), page(&["2"], None)], None).await;
    let client = client(&server);
    let mut stream = std::pin::pin!(client.get_webhooks("ws").into_stream());
    assert_eq!(
        stream.try_next().await.unwrap().unwrap().gid.as_deref(),
        Some("1")
    );
    assert_eq!(
        server.requests(),
        ["GET /webhooks?limit=100&workspace=ws"],
        "second page not fetched yet"
    );
    assert_eq!(
        stream.try_next().await.unwrap().unwrap().gid.as_deref(),
        Some("2")
    );
    assert!(stream.try_next().await.unwrap().is_none());
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn an_empty_list_yields_nothing() {
    let server = Scripted::start(vec![page(&[], None)], None).await;
    assert!(
        client(&server)
            .get_webhooks("ws")
            .collect_all()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn page_sizes_0_and_101_are_refused_without_a_request() {
    let server = Scripted::start(vec![], None).await;
    for limit in [0, 101] {
        let err = client(&server)
            .get_webhooks("ws")
            .limit(limit)
            .collect_all()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
    }
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn an_expired_offset_ends_the_stream_with_that_error() {
    let expired = Reply::json(
        400,
        json!({"errors": [{"message": "offset: Your pagination token has expired."}]}),
    );
    let server = Scripted::start(vec![page(&["1"], Some("old")), expired], None).await;
    let client = client(&server);
    let mut stream = std::pin::pin!(client.get_webhooks("ws").into_stream());
    assert_eq!(
        stream.try_next().await.unwrap().unwrap().gid.as_deref(),
        Some("1")
    );
    let err = stream.try_next().await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(400));
    assert!(
        err.to_string().contains("pagination token has expired"),
        "{err}"
    );
    assert!(
        stream.try_next().await.unwrap().is_none(),
        "the stream ends after its error"
    );
    assert_eq!(server.requests().len(), 2);
}
