//! The sandbox's Events API (`GET /events`) over HTTP on 127.0.0.1, read
//! with `Client::get_events`: the first call's 412 with a token, pages of at
//! most 100 events with `has_more`, events on a task in its project's
//! stream too, forged, foreign and expired tokens answered 412 with a fresh
//! one, resources the Events API cannot follow refused; and deliveries that
//! lose a seeded fraction of their events while the Events API keeps them
//! all. Every answer is checked against the derived spec.

use std::collections::BTreeSet;
use std::time::Duration;

use asana_webhooks::sandbox::{EmittedEvent, Sandbox, SandboxBuilder, seed};
use asana_webhooks::types::EventOptField;
use asana_webhooks::{Client, Delivery, Error, EventsOutcome, EventsPage};
use asana_webhooks_tests::spec::{check, derived, response_schema};
use asana_webhooks_tests::{Received, Target};
use serde_json::{Value, json};

const SYNC_INVALID: &str = "Sync token invalid or too old. If you are attempting to keep resources in sync, you must fetch the full dataset for this query now and use the new sync token for the next sync.";
const HEARTBEAT: &[u8] = br#"{"events":[]}"#;

fn client(sandbox: &Sandbox) -> Client {
    Client::builder()
        .token("sandbox")
        .base_url(sandbox.base_url())
        .build()
        .unwrap()
}

/// Emits a change of field `field` on `resource`.
fn change(sandbox: &Sandbox, resource: &str, field: &str) {
    sandbox
        .emit(EmittedEvent {
            resource: resource.into(),
            action: "changed".into(),
            parent: None,
            field: Some(field.into()),
        })
        .unwrap();
}

/// The changed field of each event, in order.
fn fields(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["change"]["field"].as_str().unwrap().to_string())
        .collect()
}

/// The fields `field_{from}` to `field_{to - 1}`.
fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("field_{i}")).collect()
}

/// A stream's first token: the 412 every stream starts with.
async fn first_token(client: &Client, resource: &str) -> String {
    match client.get_events(resource).send().await.unwrap() {
        EventsOutcome::SyncExpired { sync, errors } => {
            assert_eq!(errors[0].message.as_deref(), Some(SYNC_INVALID));
            sync
        }
        page => panic!("a call without a token is a 412: {page:?}"),
    }
}

/// One call with `sync`, which must answer a page.
async fn page(client: &Client, resource: &str, sync: &str) -> EventsPage {
    match client.get_events(resource).sync(sync).send().await.unwrap() {
        EventsOutcome::Page(page) => page,
        expired => panic!("{sync} should be valid: {expired:?}"),
    }
}

/// Every event after `sync`, page by page (at most 20 pages): the events,
/// the size of each page and the last token.
async fn read_all(client: &Client, resource: &str, sync: &str) -> (Vec<Value>, Vec<usize>, String) {
    let mut sync = sync.to_string();
    let (mut events, mut sizes) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let page = page(client, resource, &sync).await;
        sizes.push(page.events.len());
        events.extend(page.events.into_iter().map(|e| e.raw));
        sync = page.sync;
        if !page.has_more {
            return (events, sizes, sync);
        }
    }
    panic!("more than 20 pages");
}

/// A raw getEvents request: its status and JSON body, checked against the
/// derived spec (the 412 against `SyncTokenResponse`, other errors against
/// `ErrorResponse`).
async fn raw_events(sandbox: &Sandbox, query: &[(&str, &str)]) -> (u16, Value) {
    let url =
        reqwest::Url::parse_with_params(&format!("{}/events", sandbox.base_url()), query).unwrap();
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth("sandbox")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    let spec = derived();
    let schema = match status {
        200 => response_schema(spec, "/events", "get", 200),
        412 => &spec["components"]["schemas"]["SyncTokenResponse"],
        _ => &spec["components"]["schemas"]["ErrorResponse"],
    };
    let problems = check(spec, schema, &body);
    assert!(problems.is_empty(), "{status}: {problems:#?}\n{body:#}");
    (status, body)
}

#[tokio::test]
async fn the_first_call_is_a_412_with_asanas_message_and_a_token() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let (status, body) = raw_events(&sandbox, &[("resource", seed::TASK)]).await;
    assert_eq!(status, 412);
    let sync = body["sync"].as_str().unwrap();
    assert_eq!(
        body,
        json!({"errors": [{"message": SYNC_INVALID}], "sync": sync})
    );
    // The token it hands out starts the stream: nothing yet.
    let client = client(&sandbox);
    let first = first_token(&client, seed::TASK).await;
    let empty = page(&client, seed::TASK, &first).await;
    assert!(empty.events.is_empty() && !empty.has_more);
    // The 200 fits the spec too.
    let (status, body) = raw_events(&sandbox, &[("resource", seed::TASK), ("sync", &first)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], json!([]));
    assert_eq!(body["has_more"], false);
}

#[tokio::test]
async fn two_hundred_fifty_events_come_100_per_page_in_order_exactly_once() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let client = client(&sandbox);
    let start = first_token(&client, seed::TASK).await;
    for field in numbered(0..250) {
        change(&sandbox, seed::TASK, &field);
    }
    let first = page(&client, seed::TASK, &start).await;
    assert!(first.has_more);
    // Asking again with the same token is safe: the same events.
    let again = page(&client, seed::TASK, &start).await;
    assert_eq!(
        again.events.iter().map(|e| &e.raw).collect::<Vec<_>>(),
        first.events.iter().map(|e| &e.raw).collect::<Vec<_>>()
    );

    let (events, sizes, last) = read_all(&client, seed::TASK, &start).await;
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(fields(&events), numbered(0..250));
    let at: Vec<&str> = events
        .iter()
        .map(|e| e["created_at"].as_str().unwrap())
        .collect();
    assert!(at.is_sorted(), "oldest first");
    // Past the last event: nothing more, until something happens.
    let done = page(&client, seed::TASK, &last).await;
    assert!(done.events.is_empty() && !done.has_more);
    change(&sandbox, seed::TASK, "field_250");
    let (more, _, _) = read_all(&client, seed::TASK, &done.sync).await;
    assert_eq!(fields(&more), numbered(250..251));
}

#[tokio::test]
async fn events_on_a_task_are_in_its_projects_stream_with_names() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let client = client(&sandbox);
    let on_task = first_token(&client, seed::TASK).await;
    let on_project = first_token(&client, seed::PROJECT).await;
    change(&sandbox, seed::TASK, "name");
    change(&sandbox, seed::PROJECT, "notes");
    sandbox
        .emit(EmittedEvent {
            resource: seed::TASK.into(),
            action: "added".into(),
            parent: Some(seed::PROJECT.into()),
            field: None,
        })
        .unwrap();

    let (task_events, _, _) = read_all(&client, seed::TASK, &on_task).await;
    let (project_events, _, _) = read_all(&client, seed::PROJECT, &on_project).await;
    // The project's own events are not in its task's stream.
    assert_eq!(task_events.len(), 2);
    assert_eq!(project_events.len(), 3);
    assert_eq!(project_events[0], task_events[0]);
    assert_eq!(project_events[2], task_events[1]);
    let created_at = task_events[0]["created_at"].clone();
    assert_eq!(
        task_events[0],
        json!({
            "user": {"gid": seed::USER, "resource_type": "user", "name": "Sandbox User"},
            "created_at": created_at,
            "action": "changed",
            "resource": {"gid": seed::TASK, "resource_type": "task", "resource_subtype": "default_task", "name": "Sandbox Task"},
            "parent": null,
            "type": "task",
            "change": {"field": "name", "action": "changed"},
        })
    );
    assert_eq!(
        project_events[1]["resource"],
        json!({"gid": seed::PROJECT, "resource_type": "project", "name": "Sandbox Project"})
    );
    assert_eq!(project_events[1]["type"], "project");
    assert_eq!(
        task_events[1]["parent"],
        json!({"gid": seed::PROJECT, "resource_type": "project", "name": "Sandbox Project"})
    );
    // Every event decodes into the crate's typed event.
    let page = page(&client, seed::PROJECT, &on_project).await;
    for fetched in &page.events {
        assert!(fetched.event().is_some(), "{:?}", fetched.decoded);
    }
}

#[tokio::test]
async fn events_api_events_and_deliveries_share_created_at_action_and_change() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let target = Target::start().await;
    let client = client(&sandbox);
    create_webhook(&sandbox, &target, seed::TASK).await;
    target
        .wait_for("the heartbeat", |d| d.iter().any(|r| r.body == HEARTBEAT))
        .await;
    let sync = first_token(&client, seed::TASK).await;
    change(&sandbox, seed::TASK, "assignee");
    let delivered = delivered_events(
        &target
            .wait_for("the event", |d| delivered_events(d).len() == 1)
            .await,
    );
    let (fetched, _, _) = read_all(&client, seed::TASK, &sync).await;
    let (delivered, fetched) = (&delivered[0], &fetched[0]);
    for key in ["created_at", "action", "change"] {
        assert_eq!(delivered[key], fetched[key], "{key}");
    }
    assert_eq!(delivered["resource"]["gid"], fetched["resource"]["gid"]);
    // Deliveries are compact; the Events API names things.
    assert_eq!(delivered["resource"].get("name"), None);
    assert_eq!(delivered["user"].get("name"), None);
    assert_eq!(delivered.get("type"), None);
    assert_eq!(fetched["resource"]["name"], "Sandbox Task");
    assert_eq!(fetched["user"]["name"], "Sandbox User");
    assert_eq!(fetched["type"], "task");
    // One event, two shapes, one identity: catch-up can merge them.
    assert_eq!(
        asana_webhooks::EventIdentity::of(delivered),
        asana_webhooks::EventIdentity::of(fetched)
    );
}

#[tokio::test]
async fn unknown_forged_and_foreign_tokens_are_412_with_a_fresh_token() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let client = client(&sandbox);
    let valid = first_token(&client, seed::TASK).await;
    let for_project = first_token(&client, seed::PROJECT).await;
    let mut flipped = valid.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    // The same position and time under another MAC, or none at all.
    let unsigned = valid[..valid.len() - 24].to_string();
    change(&sandbox, seed::TASK, "name");
    for token in [
        "de4774f6915eae04714ca93bb2f5ee81",
        "5a888cbba4065641bffe1b44dced2fcf:0",
        "not a token",
        "ééééééééééééééééééééééééééééééééé",
        "",
        &flipped,
        &unsigned,
        &for_project,
    ] {
        let outcome = client
            .get_events(seed::TASK)
            .sync(token)
            .send()
            .await
            .unwrap();
        let EventsOutcome::SyncExpired { sync, errors } = outcome else {
            panic!("{token:?} should be refused: {outcome:?}");
        };
        assert_eq!(errors[0].message.as_deref(), Some(SYNC_INVALID));
        // The fresh token starts after the event already emitted.
        let fresh = page(&client, seed::TASK, &sync).await;
        assert!(fresh.events.is_empty(), "{token:?}");
        let (status, _) = raw_events(&sandbox, &[("resource", seed::TASK), ("sync", token)]).await;
        assert_eq!(status, 412);
    }
    // The genuine token still reads the event.
    let (events, _, _) = read_all(&client, seed::TASK, &valid).await;
    assert_eq!(fields(&events), ["name"]);
}

#[tokio::test]
async fn a_token_older_than_24_sandbox_hours_is_412() {
    // Ten sandbox hours per real second.
    let sandbox = Sandbox::builder()
        .time_scale(36_000.0)
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let client = client(&sandbox);
    let token = first_token(&client, seed::TASK).await;
    change(&sandbox, seed::TASK, "name");
    let young = page(&client, seed::TASK, &token).await;
    assert_eq!(young.events.len(), 1);
    // 26 sandbox hours later.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let outcome = client
        .get_events(seed::TASK)
        .sync(&token)
        .send()
        .await
        .unwrap();
    let EventsOutcome::SyncExpired { sync, .. } = outcome else {
        panic!("a token older than 24 h is expired: {outcome:?}");
    };
    // The fresh token works, and the day-old event is gone with it.
    let fresh = page(&client, seed::TASK, &sync).await;
    assert!(fresh.events.is_empty());
}

#[tokio::test]
async fn a_token_whose_unread_events_aged_out_is_412() {
    // Ten sandbox hours per real second.
    let sandbox = Sandbox::builder()
        .time_scale(36_000.0)
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let client = client(&sandbox);
    let start = first_token(&client, seed::TASK).await;
    for field in numbered(0..150) {
        change(&sandbox, seed::TASK, &field);
    }
    // 15 sandbox hours later, the first page: its token is young, but
    // the 50 events it has not read yet were emitted before it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let first = page(&client, seed::TASK, &start).await;
    assert!(first.has_more);
    // 12 hours on the token is valid, but those events are 27 hours old:
    // gone, and the token with them.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let outcome = client
        .get_events(seed::TASK)
        .sync(&first.sync)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(outcome, EventsOutcome::SyncExpired { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn resources_the_events_api_cannot_follow_are_400() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let client = client(&sandbox);
    for (resource, kind) in [
        (seed::WORKSPACE, "workspace"),
        (seed::TEAM, "team"),
        (seed::USER, "user"),
    ] {
        let err = client.get_events(resource).send().await.unwrap_err();
        let Error::Api(api) = &err else {
            panic!("{resource}: {err:?}");
        };
        assert_eq!(api.status().as_u16(), 400);
        assert_eq!(
            api.message(),
            Some(
                format!(
                    "resource: Events can only be requested on a task, project or goal, not on a {kind}"
                )
                .as_str()
            )
        );
        let (status, _) = raw_events(&sandbox, &[("resource", resource), ("sync", "x")]).await;
        assert_eq!(status, 400);
    }
    let (status, body) = raw_events(&sandbox, &[("resource", "999")]).await;
    assert_eq!(status, 404);
    assert_eq!(
        body["errors"][0]["message"],
        "resource: Unknown object: 999"
    );
    let (status, body) = raw_events(&sandbox, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["message"], "resource: Missing input");
}

#[tokio::test]
async fn opt_fields_select_what_each_event_carries() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let client = client(&sandbox);
    let sync = first_token(&client, seed::TASK).await;
    change(&sandbox, seed::TASK, "assignee");
    let outcome = client
        .get_events(seed::TASK)
        .sync(&sync)
        .opt_fields([
            EventOptField::Action,
            EventOptField::ResourceName,
            EventOptField::ChangeNewValue,
        ])
        .send()
        .await
        .unwrap();
    let page = outcome.into_page().unwrap();
    assert_eq!(
        page.events[0].raw,
        json!({
            "action": "changed",
            "resource": {"gid": seed::TASK, "resource_type": "task", "name": "Sandbox Task"},
            "change": {"new_value": {"gid": seed::USER, "resource_type": "user"}},
        })
    );
    let (status, body) = raw_events(
        &sandbox,
        &[
            ("resource", seed::TASK),
            ("sync", &sync),
            ("opt_fields", "action,gid"),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["errors"][0]["message"],
        "opt_fields: Unknown field: gid"
    );
}

/// Creates a webhook on `resource` delivering to `target`.
async fn create_webhook(sandbox: &Sandbox, target: &Target, resource: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/webhooks", sandbox.base_url()))
        .bearer_auth("sandbox")
        .json(&json!({"data": {"resource": resource, "target": format!("{}/hook", target.base)}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

/// The events of every delivery received, in order (heartbeats carry none).
fn delivered_events(received: &[Received]) -> Vec<Value> {
    received
        .iter()
        .flat_map(|r| {
            let delivery: Delivery = serde_json::from_slice(&r.body).unwrap();
            assert!(delivery.events.iter().all(|e| e.resource.gid == seed::TASK));
            let raw: Value = serde_json::from_slice(&r.body).unwrap();
            raw["events"].as_array().unwrap().clone()
        })
        .collect()
}

/// Emits 200 changes on the task to a webhook of a sandbox built by
/// `builder`; returns the fields delivered, in order, the number the
/// sandbox says it dropped, and the fields the Events API has.
async fn deliver_200(builder: SandboxBuilder) -> (Vec<String>, u64, Vec<String>) {
    let sandbox = builder.start("127.0.0.1:0").await.unwrap();
    let target = Target::start().await;
    let client = client(&sandbox);
    create_webhook(&sandbox, &target, seed::TASK).await;
    target
        .wait_for("the heartbeat", |d| d.iter().any(|r| r.body == HEARTBEAT))
        .await;
    let sync = first_token(&client, seed::TASK).await;
    for field in numbered(0..200) {
        change(&sandbox, seed::TASK, &field);
    }
    let received = target
        .wait_for("every event delivered or dropped", |d| {
            delivered_events(d).len() as u64 + sandbox.dropped_events() >= 200
        })
        .await;
    // Nothing more comes: a dropped event is not retried.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.deliveries().len(), received.len());
    let delivered = fields(&delivered_events(&received));
    let (recorded, _, _) = read_all(&client, seed::TASK, &sync).await;
    (delivered, sandbox.dropped_events(), fields(&recorded))
}

/// With the default seed and a fraction of 0.1, this many of the 200
/// deliveries are dropped (20 expected, give or take 4 or so).
const DROPPED_WITH_THE_DEFAULT_SEED: u64 = 27;

#[tokio::test]
async fn a_tenth_of_deliveries_are_dropped_reproducibly_and_the_events_api_has_them_all() {
    let (delivered, dropped, recorded) = deliver_200(Sandbox::builder().drop_deliveries(0.1)).await;
    assert_eq!(dropped, DROPPED_WITH_THE_DEFAULT_SEED);
    assert_eq!(delivered.len() as u64 + dropped, 200);
    // Delivered in order, each once; the Events API has all 200.
    let all = numbered(0..200);
    let mut in_order = delivered.clone();
    in_order.sort_by_key(|f| all.iter().position(|a| a == f).unwrap());
    assert_eq!(delivered, in_order);
    assert_eq!(
        delivered.iter().collect::<BTreeSet<_>>().len(),
        delivered.len()
    );
    assert_eq!(recorded, all);

    // The same seed drops the same events; another seed others.
    let (again, dropped_again, _) = deliver_200(Sandbox::builder().drop_deliveries(0.1)).await;
    assert_eq!((again, dropped_again), (delivered.clone(), dropped));
    let (other, other_dropped, _) =
        deliver_200(Sandbox::builder().drop_deliveries(0.1).drop_seed(7)).await;
    assert_eq!(other.len() as u64 + other_dropped, 200);
    // About a tenth, whatever the seed (more than 5 standard deviations
    // away is not plausible).
    assert!((1..=45).contains(&other_dropped), "{other_dropped}");
    assert_ne!(other, delivered);
    // No drops without the option.
    let (every, none, _) = deliver_200(Sandbox::builder()).await;
    assert_eq!((every, none), (all, 0));
}

#[tokio::test]
async fn heartbeats_are_never_dropped() {
    // Every event delivery dropped; heartbeats every 8 sandbox hours,
    // here every 0.8 s.
    let sandbox = Sandbox::builder()
        .drop_deliveries(1.0)
        .time_scale(36_000.0)
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let target = Target::start().await;
    create_webhook(&sandbox, &target, seed::TASK).await;
    for field in numbered(0..10) {
        change(&sandbox, seed::TASK, &field);
    }
    let received = target.wait_for("three heartbeats", |d| d.len() >= 3).await;
    assert!(received.iter().all(|r| r.body == HEARTBEAT), "{received:?}");
    assert_eq!(sandbox.dropped_events(), 10);
}
