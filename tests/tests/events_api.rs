//! getEvents (`GET /events`) against a mock Asana on 127.0.0.1: the query
//! on the wire (one comma-joined `opt_fields`), a page with `sync` and
//! `has_more`, each event kept as sent next to its typed decode, the 412
//! that hands out a sync token as a typed outcome, and the other error
//! answers as `Error::Api`.

use asana_webhooks::types::EventOptField;
use asana_webhooks::{Client, DEFAULT_USER_AGENT, Error, EventAction, EventsOutcome};
use httpmock::prelude::*;
use serde_json::json;

const TOKEN: &str = "0/test-token";
const PROJECT: &str = "1204519866405712";

fn client(server: &MockServer) -> Client {
    Client::builder()
        .token(TOKEN)
        .base_url(server.base_url())
        .build()
        .unwrap()
}

/// The raw query string of a request, as it was on the wire.
fn raw_query(req: &HttpMockRequest) -> String {
    req.uri().query().unwrap_or_default().to_string()
}

/// An event as the Events API returns it: compact objects with names, and
/// the deprecated `type`.
fn named_event() -> serde_json::Value {
    json!({
        "user": {"gid": "1213537811762722", "resource_type": "user", "name": "Greg Sanchez"},
        "resource": {"gid": "1234567890987654321", "resource_type": "task", "name": "Fix the build"},
        "type": "task",
        "action": "changed",
        "parent": null,
        "created_at": "2026-03-17T10:11:06.611Z",
        "change": {
            "field": "assignee",
            "action": "changed",
            "new_value": {"gid": "1213537811762722", "resource_type": "user", "name": "Greg Sanchez"}
        }
    })
}

/// Asana's 412 body: its message and a fresh token.
fn sync_body(sync: &str) -> serde_json::Value {
    json!({
        "errors": [{"message": "Sync token invalid or too old. If you are attempting to keep resources in sync, you must fetch the full dataset for this query now and use the new sync token for the next sync."}],
        "sync": sync
    })
}

#[tokio::test]
async fn a_page_decodes_with_sync_has_more_names_and_every_event_kept_as_sent() {
    let server = MockServer::start_async().await;
    let drifted = json!({"action": "added", "resource": {"gid": 42, "resource_type": "task"}, "created_at": "2026-03-17T10:11:07Z"});
    let mock = server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/events")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header("user-agent", DEFAULT_USER_AGENT)
                .header("accept", "application/json")
                .header_missing("api-version")
                .is_true(|req| {
                    raw_query(req)
                        == "opt_fields=action,resource.name,user.name,change.new_value&opt_pretty=true&resource=1204519866405712&sync=de4774f6915eae04714ca93bb2f5ee81"
                });
            then.status(200).json_body(json!({
                "data": [named_event(), drifted],
                "sync": "edfc0896b370b7a479886d316131bf5c",
                "has_more": true
            }));
        })
        .await;

    let outcome = client(&server)
        .get_events(PROJECT)
        .sync("de4774f6915eae04714ca93bb2f5ee81")
        .opt_fields([
            EventOptField::Action,
            EventOptField::ResourceName,
            EventOptField::UserName,
        ])
        .opt_fields([EventOptField::ChangeNewValue])
        .opt_pretty(true)
        .send()
        .await
        .unwrap();

    mock.assert_async().await;
    assert_eq!(outcome.sync(), "edfc0896b370b7a479886d316131bf5c");
    let page = outcome.into_page().expect("a 200 is a page");
    assert!(page.has_more);
    assert_eq!(page.sync, "edfc0896b370b7a479886d316131bf5c");
    assert_eq!(page.events.len(), 2);

    let first = &page.events[0];
    let event = first.event().expect("the named event decodes");
    assert_eq!(event.action, EventAction::Changed);
    assert_eq!(event.resource.name.as_deref(), Some("Fix the build"));
    assert_eq!(
        event.user.as_ref().unwrap().name.as_deref(),
        Some("Greg Sanchez")
    );
    assert_eq!(event.parent, None);
    let change = event.change.as_ref().unwrap();
    assert_eq!(change.new_resource().unwrap().gid, "1213537811762722");
    // What the typed event has no field for is still there, as sent.
    assert_eq!(first.raw, named_event());
    assert_eq!(first.raw["type"], "task");

    // The drifted event does not take the page with it.
    let second = page.events[1].clone();
    assert!(second.event().is_none());
    let error = second.decoded.as_ref().unwrap_err();
    assert!(error.contains("invalid type: integer `42`"), "{error}");
    let undecoded = second.into_event().unwrap_err();
    assert_eq!(undecoded.raw["resource"]["gid"], 42);
    assert!(!undecoded.error.is_empty());
}

#[tokio::test]
async fn a_first_call_without_a_token_gets_one_as_a_typed_outcome() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/events")
                .is_true(|req| raw_query(req) == format!("resource={PROJECT}"));
            then.status(412)
                .json_body(sync_body("de4774f6915eae04714ca93bb2f5ee81"));
        })
        .await;

    let outcome = client(&server).get_events(PROJECT).send().await.unwrap();

    mock.assert_async().await;
    assert_eq!(outcome.sync(), "de4774f6915eae04714ca93bb2f5ee81");
    assert!(outcome.page().is_none());
    let EventsOutcome::SyncExpired { sync, errors } = outcome else {
        panic!("a 412 with a token is SyncExpired: {outcome:?}");
    };
    assert_eq!(sync, "de4774f6915eae04714ca93bb2f5ee81");
    assert!(
        errors[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("Sync token invalid or too old")
    );
}

#[tokio::test]
async fn an_expired_token_is_answered_with_a_fresh_one_and_the_stream_goes_on() {
    let server = MockServer::start_async().await;
    let expired = server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/events")
                .query_param("resource", PROJECT)
                .query_param("sync", "expired-token");
            then.status(412)
                .header("content-type", "application/json")
                .body(r#"{"errors":[{"message":"Sync token invalid or too old.","help":"x"}],"sync":"fresh-token","extra":1}"#);
        })
        .await;
    let fresh = server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/events")
                .query_param("resource", PROJECT)
                .query_param("sync", "fresh-token");
            // `has_more` left out: no more events.
            then.status(200)
                .json_body(json!({"data": [], "sync": "next-token"}));
        })
        .await;

    let client = client(&server);
    let outcome = client
        .get_events(PROJECT)
        .sync("expired-token")
        .send()
        .await
        .unwrap();
    let EventsOutcome::SyncExpired { sync, errors } = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(sync, "fresh-token");
    assert_eq!(errors[0].help.as_deref(), Some("x"));

    let next = client
        .get_events(PROJECT)
        .sync(outcome.sync())
        .send()
        .await
        .unwrap();
    let page = next.page().expect("a page");
    assert!(page.events.is_empty());
    assert!(!page.has_more);
    assert_eq!(next.sync(), "next-token");
    expired.assert_async().await;
    fresh.assert_async().await;
}

#[tokio::test]
async fn bad_request_unauthorized_and_a_412_without_a_token_stay_api_errors() {
    let server = MockServer::start_async().await;
    let cases = [
        (
            "400",
            400,
            json!({"errors": [{"message": "resource: Missing input", "help": "For more information on API status codes and how to handle them, read the docs on errors: https://developers.asana.com/docs/errors"}]}),
        ),
        (
            "401",
            401,
            json!({"errors": [{"message": "Not Authorized"}]}),
        ),
        (
            "412",
            412,
            json!({"errors": [{"message": "Precondition failed"}]}),
        ),
    ];
    for (resource, status, body) in &cases {
        server
            .mock_async(|when, then| {
                when.method(GET)
                    .path("/events")
                    .query_param("resource", *resource);
                then.status(*status).json_body(body.clone());
            })
            .await;
    }

    for (resource, status, body) in cases {
        let err = client(&server)
            .get_events(resource)
            .send()
            .await
            .unwrap_err();
        let Error::Api(api) = &err else {
            panic!("{status}: {err:?}");
        };
        assert_eq!(api.status().as_u16(), status);
        assert_eq!(
            api.message(),
            body["errors"][0]["message"].as_str(),
            "{err}"
        );
        assert!(!err.is_retryable());
    }
    let err = client(&server).get_events("401").send().await.unwrap_err();
    assert!(err.to_string().contains("check the token"), "{err}");
}

#[tokio::test]
async fn a_page_without_a_sync_token_is_a_decode_error() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.method(GET).path("/events");
            then.status(200)
                .json_body(json!({"data": [named_event()], "has_more": false}));
        })
        .await;
    let err = client(&server)
        .get_events(PROJECT)
        .sync("t")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("`sync`"), "{err}");
}
