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

/// The receiver keys a delivery by the resource its webhook watches, so
/// that the Events API's copy of a delivered event, names and all, is
/// recognised; a webhook whose resource is not known keeps the exact key.
#[tokio::test]
async fn a_delivered_event_caught_up_again_is_handed_out_once() {
    use asana_webhooks::inbox::{EventSource, VerifiedDelivery};
    use serde_json::value::RawValue;

    let inbox = MemoryInbox::new();
    let store = MemorySecretStore::new();
    store
        .save(
            StoredSecret::new(
                TargetKey::from_path_and_query("/in"),
                "7",
                HookSecret::new("s"),
            )
            .with_resource("1300"),
        )
        .await
        .unwrap();
    let addr = serve(
        Receiver::builder(store)
            .build_with_inbox(inbox.clone())
            .router(),
    )
    .await;
    let compact = r#"{"user":{"gid":"10","resource_type":"user"},"created_at":"2026-03-17T10:11:06.611Z","action":"added","resource":{"gid":"20","resource_type":"task","resource_subtype":"default_task"},"parent":{"gid":"1300","resource_type":"project"}}"#;
    let named = r#"{"user":{"gid":"10","resource_type":"user","name":"Ada"},"created_at":"2026-03-17T10:11:06.611Z","action":"added","resource":{"gid":"20","resource_type":"task","resource_subtype":"default_task","name":"Ship it"},"parent":{"gid":"1300","resource_type":"project","name":"Roadmap"},"type":"task"}"#;
    let url = format!("http://{addr}/in");
    let body = format!(r#"{{"events":[{compact}]}}"#);
    assert_eq!(post(&url, &body).await.status().as_u16(), 200);
    let caught_up = VerifiedDelivery::from_events_api(
        TargetKey::from_path_and_query("/in"),
        "1300",
        vec![RawValue::from_string(named.to_string()).unwrap()],
    );
    let appended = inbox.append(caught_up).await.unwrap();
    assert_eq!((appended.added, appended.duplicates), (0, 1));
    let item = inbox.next().await.unwrap();
    assert_eq!(
        (
            item.source(),
            item.resource(),
            item.webhook_gid(),
            item.raw()
        ),
        (EventSource::Webhook, Some("1300"), Some("7"), compact)
    );
    assert_eq!(inbox.stats().await.unwrap().waiting, 0);

    // Without the resource (a secret stored without it) only an exact
    // repeat is recognised.
    let other = MemoryInbox::new();
    let url = receiver_with(other.clone()).await;
    assert_eq!(post(&url, &body).await.status().as_u16(), 200);
    let appended = other
        .append(VerifiedDelivery::from_events_api(
            TargetKey::from_path_and_query("/in"),
            "1300",
            vec![RawValue::from_string(named.to_string()).unwrap()],
        ))
        .await
        .unwrap();
    assert_eq!((appended.added, appended.duplicates), (1, 0));
    assert_eq!(other.next().await.unwrap().resource(), None);
}

/// The inbox contract, written once and run against every backend: a
/// failing event retried with backoff and then dead-lettered without
/// holding up the others, attempts that survive a reopen, leases that a
/// consumer loses when they expire, and acknowledgements that keep up with
/// deliveries.
mod contract {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use asana_webhooks::inbox::{
        Appended, EventSource, FileInbox, Inbox, InboxError, InboxItem, MemoryInbox, Released,
        Retries, Selection, VerifiedDelivery, handle_each,
    };
    use asana_webhooks::postgres::PostgresInbox;
    use asana_webhooks::secrets::TargetKey;
    use asana_webhooks_tests::postgres::Postgres;
    use serde_json::value::RawValue;

    /// Opens an inbox of one kind; opening again reaches the same store
    /// (where the kind has one).
    trait Backend {
        type Inbox: Inbox;
        async fn open(&self, lease: Duration, retries: Retries) -> Self::Inbox;
    }

    struct Memory;

    impl Backend for Memory {
        type Inbox = MemoryInbox;
        async fn open(&self, lease: Duration, retries: Retries) -> MemoryInbox {
            MemoryInbox::with_limits(lease, 1 << 30).with_retries(retries)
        }
    }

    struct File(tempfile::TempDir);

    impl File {
        fn new() -> Self {
            Self(tempfile::tempdir().unwrap())
        }
    }

    impl Backend for File {
        type Inbox = FileInbox;
        async fn open(&self, lease: Duration, retries: Retries) -> FileInbox {
            FileInbox::open_with_limits(self.0.path().join("inbox.redb"), lease, 1 << 30)
                .await
                .unwrap()
                .with_retries(retries)
        }
    }

    struct Pg(Postgres);

    impl Pg {
        fn new() -> Self {
            Self(Postgres::start())
        }
    }

    impl Backend for Pg {
        type Inbox = PostgresInbox;
        async fn open(&self, lease: Duration, retries: Retries) -> PostgresInbox {
            PostgresInbox::with_limits(self.0.pool().await, &self.0.url(), lease, 1_000_000)
                .unwrap()
                .with_retries(retries)
        }
    }

    fn delivery(events: &[String]) -> VerifiedDelivery {
        VerifiedDelivery {
            target: TargetKey::from_path_and_query("/t"),
            webhook_gid: Some("9".into()),
            source: EventSource::Webhook,
            resource: None,
            events: events
                .iter()
                .map(|e| RawValue::from_string(e.clone()).unwrap())
                .collect(),
        }
    }

    async fn next(inbox: &impl Inbox) -> InboxItem {
        tokio::time::timeout(Duration::from_secs(10), inbox.next())
            .await
            .expect("an item within 10 s")
            .expect("open")
    }

    /// Polls `done` every 10 ms for at most `limit`; whether it came true.
    async fn within<I: Inbox>(
        limit: Duration,
        inbox: &I,
        mut done: impl FnMut(&asana_webhooks::inbox::InboxStats) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if done(&inbox.stats().await.unwrap()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[derive(Default)]
    struct Seen {
        good: HashSet<String>,
        /// Each attempt at a failing event: its attempt number and when.
        bad: Vec<(u32, Instant)>,
        /// Whether failing events now succeed (after a fix), and the
        /// attempts they succeeded on.
        healed: bool,
        healed_on: Vec<u32>,
    }

    /// One event that always fails beside 20 good ones: the good ones are
    /// all handled at once, the failing one is retried no sooner than its
    /// backoff and then moves to the dead letters after the configured
    /// attempts; re-driven, it comes back with its attempts reset; purged,
    /// it is gone.
    async fn a_failing_event_is_retried_then_dead_lettered_and_blocks_nothing<B: Backend>(
        backend: B,
    ) {
        let backoff = Duration::from_millis(40);
        let retries = Retries::default()
            .with_max_attempts(3)
            .with_backoff(backoff, backoff);
        let inbox = backend.open(Duration::from_secs(30), retries).await;
        let bad = r#"{"bad":1}"#.to_string();
        let mut events = vec![bad.clone()];
        events.extend((0..20).map(|n| format!(r#"{{"good":{n}}}"#)));
        inbox.append(delivery(&events)).await.unwrap();

        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = seen.clone();
        let consumer = tokio::spawn(handle_each(inbox.clone(), async move |item| {
            let mut seen = log.lock().unwrap();
            if item.raw().contains("bad") {
                if seen.healed {
                    seen.healed_on.push(item.attempt());
                    return Ok(());
                }
                seen.bad.push((item.attempt(), Instant::now()));
                return Err("always fails");
            }
            seen.good.insert(item.raw().to_string());
            Ok(())
        }));

        let started = Instant::now();
        assert!(
            within(Duration::from_secs(3), &inbox, |s| s.waiting + s.in_flight
                <= 1)
            .await,
            "the good events are handled at once beside the failing one"
        );
        assert_eq!(seen.lock().unwrap().good.len(), 20);
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            within(Duration::from_secs(20), &inbox, |s| s.dead_letters == 1).await,
            "the failing event ends in the dead letters"
        );
        let stats = inbox.stats().await.unwrap();
        assert_eq!(
            (
                stats.waiting,
                stats.retrying,
                stats.in_flight,
                stats.dead_letters
            ),
            (0, 0, 0, 1),
            "a dead letter blocks nothing and is not waiting"
        );
        let attempts = seen.lock().unwrap().bad.clone();
        assert_eq!(
            attempts.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [1, 2, 3],
            "tried exactly max_attempts times"
        );
        for pair in attempts.windows(2) {
            let gap = pair[1].1 - pair[0].1;
            assert!(
                gap >= backoff / 2,
                "attempt {} came {gap:?} after the one before: not before its backoff",
                pair[1].0
            );
        }
        let dead = inbox.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].raw, bad);
        assert_eq!(dead[0].attempts, 3);
        assert_eq!(dead[0].last_error.as_deref(), Some("always fails"));
        assert_eq!(dead[0].webhook_gid.as_deref(), Some("9"));

        // Re-driven once fixed: handed out again as new, and handled.
        seen.lock().unwrap().healed = true;
        assert_eq!(inbox.redrive_dead_letters(Selection::All).await.unwrap(), 1);
        assert!(
            within(Duration::from_secs(10), &inbox, |s| {
                s.waiting + s.in_flight + s.dead_letters as usize == 0
            })
            .await,
            "the re-driven event is handled and acknowledged"
        );
        assert_eq!(
            seen.lock().unwrap().healed_on,
            [1],
            "its attempts were reset"
        );
        assert!(inbox.dead_letters().await.unwrap().is_empty());

        // Another failing event, purged once dead.
        seen.lock().unwrap().healed = false;
        inbox
            .append(delivery(&[r#"{"bad":2}"#.to_string()]))
            .await
            .unwrap();
        assert!(within(Duration::from_secs(20), &inbox, |s| s.dead_letters == 1).await);
        let id = inbox.dead_letters().await.unwrap()[0].id;
        assert_eq!(
            inbox
                .redrive_dead_letters(Selection::Ids(vec![id + 1000]))
                .await
                .unwrap(),
            0,
            "an id that is no dead letter is ignored"
        );
        assert_eq!(
            inbox
                .purge_dead_letters(Selection::Ids(vec![id]))
                .await
                .unwrap(),
            1
        );
        assert!(inbox.dead_letters().await.unwrap().is_empty());
        let stats = inbox.stats().await.unwrap();
        assert_eq!(
            (stats.waiting, stats.in_flight, stats.dead_letters),
            (0, 0, 0)
        );
        assert_eq!(inbox.purge_dead_letters(Selection::All).await.unwrap(), 0);
        inbox.close();
        tokio::time::timeout(Duration::from_secs(10), consumer)
            .await
            .expect("handle_each returns once the inbox is closed")
            .unwrap();
    }

    /// Failed and unsettled attempts before a reopen count after it, up to
    /// the dead letters, which survive a reopen too.
    async fn attempts_survive_a_reopen<B: Backend>(backend: B) {
        let lease = Duration::from_millis(300);
        let backoff = Duration::from_millis(10);
        let retries = Retries::default()
            .with_max_attempts(3)
            .with_backoff(backoff, backoff);
        let inbox = backend.open(lease, retries).await;
        inbox
            .append(delivery(&[r#"{"n":1}"#.to_string()]))
            .await
            .unwrap();
        let first = next(&inbox).await;
        assert_eq!(first.attempt(), 1);
        assert!(matches!(
            first.release("fails").await.unwrap(),
            Released::Retrying { .. }
        ));
        let second = next(&inbox).await;
        assert_eq!(second.attempt(), 2);
        // The process "dies" holding it.
        drop(second);
        inbox.close();

        let inbox = backend.open(lease, retries).await;
        let third = next(&inbox).await;
        assert_eq!(
            third.attempt(),
            3,
            "the failed and the unsettled attempt before the reopen both count"
        );
        assert_eq!(
            third.release("still fails").await.unwrap(),
            Released::DeadLettered
        );
        inbox.close();

        let inbox = backend.open(lease, retries).await;
        let dead = inbox.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1, "the dead letter survives a reopen");
        assert_eq!(
            (dead[0].attempts, dead[0].last_error.as_deref()),
            (3, Some("still fails"))
        );
        assert_eq!(inbox.stats().await.unwrap().dead_letters, 1);
        assert!(
            tokio::time::timeout(Duration::from_millis(700), inbox.next())
                .await
                .is_err(),
            "a dead letter is not handed out"
        );
        inbox.close();
    }

    /// A and B each held the item until their leases expired; C holds it
    /// now. A's acknowledgement and B's release are refused and change
    /// nothing; C's acknowledgement removes it, once.
    async fn a_stale_lease_can_neither_acknowledge_nor_release<B: Backend>(backend: B) {
        let lease = Duration::from_millis(300);
        let inbox = backend.open(lease, Retries::default()).await;
        inbox
            .append(delivery(&[r#"{"n":1}"#.to_string()]))
            .await
            .unwrap();
        let a = next(&inbox).await;
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let b = next(&inbox).await;
        assert_eq!((b.id(), b.attempt()), (a.id(), 2));
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        let c = next(&inbox).await;
        assert_eq!((c.id(), c.attempt()), (a.id(), 3));
        let id = a.id();

        let refused = a.ack().await.unwrap_err();
        assert!(
            matches!(refused, InboxError::LeaseLost { id: i, attempt: 1 } if i == id),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("handed to another consumer"),
            "{refused}"
        );
        let refused = b.release("too late").await.unwrap_err();
        assert!(
            matches!(refused, InboxError::LeaseLost { attempt: 2, .. }),
            "{refused}"
        );
        let stats = inbox.stats().await.unwrap();
        assert_eq!(
            (stats.waiting, stats.retrying, stats.in_flight),
            (0, 0, 1),
            "still C's, untouched"
        );

        c.ack().await.unwrap();
        let stats = inbox.stats().await.unwrap();
        assert_eq!(
            (stats.waiting, stats.in_flight, stats.dead_letters),
            (0, 0, 0)
        );
        assert!(
            tokio::time::timeout(lease * 2, inbox.next()).await.is_err(),
            "acknowledged once, gone"
        );
        inbox.close();
    }

    /// Taking and acknowledging a backlog with `handle_each` takes not much
    /// longer than committing it did: acknowledgements share commits as
    /// deliveries do, rather than paying one each.
    async fn acknowledging_keeps_up_with_receiving<B: Backend>(backend: B, events: usize) {
        let inbox = backend
            .open(Duration::from_secs(60), Retries::default())
            .await;
        let started = Instant::now();
        let appends = (0..events / 16).map(|d| {
            let inbox = inbox.clone();
            async move {
                let events: Vec<String> =
                    (0..16).map(|n| format!(r#"{{"d":{d},"n":{n}}}"#)).collect();
                inbox.append(delivery(&events)).await.unwrap()
            }
        });
        futures::future::join_all(appends).await;
        let appending = started.elapsed();

        let handled = Arc::new(Mutex::new(0usize));
        let counter = handled.clone();
        let started = Instant::now();
        let consumer = tokio::spawn(handle_each(inbox.clone(), async move |_item| {
            *counter.lock().unwrap() += 1;
            Ok::<(), String>(())
        }));
        let drained = within(Duration::from_secs(60), &inbox, |s| {
            s.waiting + s.in_flight == 0
        })
        .await;
        let consuming = started.elapsed();
        inbox.close();
        consumer.await.unwrap();
        println!(
            "{events} events: committed in {appending:?}, taken and acknowledged in {consuming:?}"
        );
        assert!(drained);
        assert_eq!(*handled.lock().unwrap(), events, "each handled once");
        assert!(
            consuming <= appending * 4 + Duration::from_millis(250),
            "taking and acknowledging {events} events took {consuming:?}, committing them {appending:?}"
        );
    }

    /// The project both webhooks' and the Events API's events belong to,
    /// and the task that changes in it.
    const PROJECT: &str = "1202000000000001";
    const TASK: &str = "1202000000000002";

    /// An assignee change as a webhook delivers it: compact (`resource`
    /// without a name, `new_value` as `{gid, resource_type}`).
    fn compact(created_at: &str, assignee: &str) -> String {
        format!(
            r#"{{"user":{{"gid":"1201","resource_type":"user"}},"created_at":"{created_at}","action":"changed","resource":{{"gid":"{TASK}","resource_type":"task","resource_subtype":"default_task"}},"parent":null,"change":{{"field":"assignee","action":"changed","new_value":{{"gid":"{assignee}","resource_type":"user"}}}}}}"#
        )
    }

    /// The same change as the Events API returns it: names, the
    /// deprecated `type`, keys in another order.
    fn named(created_at: &str, assignee: &str) -> String {
        format!(
            r#"{{"type":"task","action":"changed","created_at":"{created_at}","change":{{"action":"changed","field":"assignee","new_value":{{"gid":"{assignee}","name":"Grace Hopper","resource_type":"user"}}}},"parent":null,"resource":{{"gid":"{TASK}","name":"Ship the release","resource_subtype":"default_task","resource_type":"task"}},"user":{{"gid":"1201","name":"Ada Lovelace","resource_type":"user"}}}}"#
        )
    }

    const T1: &str = "2026-03-17T10:11:06.611Z";
    const T2: &str = "2026-03-17T10:11:06.612Z";

    /// A webhook delivery of `events` by webhook `gid`, watching `resource`.
    fn delivered(gid: &str, resource: &str, events: &[String]) -> VerifiedDelivery {
        let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
        VerifiedDelivery::from_body(
            TargetKey::from_path_and_query("/t"),
            Some(gid.into()),
            body.as_bytes(),
        )
        .unwrap()
        .with_resource(resource)
    }

    /// What the Events API returned for `resource`.
    fn fetched(resource: &str, events: &[String]) -> VerifiedDelivery {
        VerifiedDelivery::from_events_api(
            TargetKey::from_path_and_query("/t"),
            resource,
            events
                .iter()
                .map(|e| RawValue::from_string(e.clone()).unwrap())
                .collect(),
        )
    }

    fn appended(added: usize, duplicates: usize) -> Appended {
        Appended { added, duplicates }
    }

    /// An item as the app sees it: its source, resource, webhook and JSON.
    fn seen(item: &InboxItem) -> (EventSource, Option<String>, Option<String>, String) {
        (
            item.source(),
            item.resource().map(str::to_string),
            item.webhook_gid().map(str::to_string),
            item.raw().to_string(),
        )
    }

    /// One inbox fed by a project's webhook and by the Events API on the
    /// project: an event that arrives both ways, in either order and
    /// either shape, is handed out once (the first copy, with its source)
    /// and the other counted as a duplicate; events that differ in an
    /// identity field are all handed out; the same event for another
    /// watched resource (a webhook on the task) is handed out again. The
    /// source and resource survive a reopen, and go with a dead letter.
    async fn one_event_from_two_sources_is_handed_out_once<B: Backend>(backend: B, durable: bool) {
        let retries = Retries::default().with_max_attempts(1);
        let mut inbox = backend.open(Duration::from_secs(30), retries).await;
        // Delivered by the webhook first, then caught up with the events
        // around it: one is new in created_at, one in the assignee.
        assert_eq!(
            inbox
                .append(delivered("9", PROJECT, &[compact(T1, "1203")]))
                .await
                .unwrap(),
            appended(1, 0)
        );
        let caught_up = [named(T1, "1203"), named(T2, "1203"), named(T1, "1204")];
        assert_eq!(
            inbox.append(fetched(PROJECT, &caught_up)).await.unwrap(),
            appended(2, 1),
            "the delivered event is recognised in its named shape"
        );
        // Caught up first, then delivered (Asana's delivery came late).
        assert_eq!(
            inbox
                .append(delivered("9", PROJECT, &[compact(T2, "1203")]))
                .await
                .unwrap(),
            appended(0, 1),
            "the caught-up event is recognised in its compact shape"
        );
        // A webhook on the task itself: the same change is its event too.
        assert_eq!(
            inbox
                .append(delivered("10", TASK, &[compact(T1, "1203")]))
                .await
                .unwrap(),
            appended(1, 0),
            "one event per watched resource"
        );
        assert_eq!(
            inbox
                .append(fetched(TASK, &[named(T1, "1203")]))
                .await
                .unwrap(),
            appended(0, 1)
        );
        let stats = inbox.stats().await.unwrap();
        assert_eq!((stats.waiting, stats.duplicates_dropped), (4, 3));

        if durable {
            inbox.close();
            inbox = backend.open(Duration::from_secs(30), retries).await;
        }
        let mut items = Vec::new();
        for _ in 0..4 {
            items.push(next(&inbox).await);
        }
        let webhook = |gid: &str, resource: &str, raw: String| {
            (
                EventSource::Webhook,
                Some(resource.to_string()),
                Some(gid.to_string()),
                raw,
            )
        };
        let events_api = |resource: &str, raw: String| {
            (
                EventSource::EventsApi,
                Some(resource.to_string()),
                None,
                raw,
            )
        };
        assert_eq!(
            items.iter().map(seen).collect::<Vec<_>>(),
            [
                webhook("9", PROJECT, compact(T1, "1203")),
                events_api(PROJECT, named(T2, "1203")),
                events_api(PROJECT, named(T1, "1204")),
                webhook("10", TASK, compact(T1, "1203")),
            ],
            "each event once, as it first came, with its source and resource"
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(300), inbox.next())
                .await
                .is_err(),
            "and nothing else"
        );

        // A caught-up event that fails keeps its source in the dead letters.
        let mut items = items.into_iter();
        let first = items.next().unwrap();
        let failing = items.next().unwrap();
        assert_eq!(
            failing.release("no such assignee").await.unwrap(),
            Released::DeadLettered
        );
        first.ack().await.unwrap();
        for item in items {
            item.ack().await.unwrap();
        }
        if durable {
            inbox.close();
            inbox = backend.open(Duration::from_secs(30), retries).await;
        }
        let dead = inbox.dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(
            (
                dead[0].source,
                dead[0].resource.as_deref(),
                dead[0].webhook_gid.as_deref(),
                dead[0].raw.clone()
            ),
            (
                EventSource::EventsApi,
                Some(PROJECT),
                None,
                named(T2, "1203")
            )
        );
        // Re-driven, it is handed out with them again.
        assert_eq!(inbox.redrive_dead_letters(Selection::All).await.unwrap(), 1);
        let redriven = next(&inbox).await;
        assert_eq!(seen(&redriven), events_api(PROJECT, named(T2, "1203")));
        redriven.ack().await.unwrap();
        // Acknowledged or not, a repeat from either source is a repeat.
        assert_eq!(
            inbox
                .append(delivered(
                    "9",
                    PROJECT,
                    &[compact(T1, "1204"), compact(T2, "1203")]
                ))
                .await
                .unwrap(),
            appended(0, 2)
        );
        assert_eq!(
            inbox
                .append(fetched(PROJECT, &[named(T1, "1203")]))
                .await
                .unwrap(),
            appended(0, 1)
        );
        assert_eq!(inbox.stats().await.unwrap().duplicates_dropped, 6);
        inbox.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_event_from_two_sources_is_handed_out_once_memory() {
        one_event_from_two_sources_is_handed_out_once(Memory, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_event_from_two_sources_is_handed_out_once_file() {
        one_event_from_two_sources_is_handed_out_once(File::new(), true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_event_from_two_sources_is_handed_out_once_postgres() {
        one_event_from_two_sources_is_handed_out_once(Pg::new(), true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_event_is_retried_then_dead_lettered_and_blocks_nothing_memory() {
        a_failing_event_is_retried_then_dead_lettered_and_blocks_nothing(Memory).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_event_is_retried_then_dead_lettered_and_blocks_nothing_file() {
        a_failing_event_is_retried_then_dead_lettered_and_blocks_nothing(File::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_event_is_retried_then_dead_lettered_and_blocks_nothing_postgres() {
        a_failing_event_is_retried_then_dead_lettered_and_blocks_nothing(Pg::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attempts_survive_a_reopen_file() {
        attempts_survive_a_reopen(File::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn attempts_survive_a_reopen_postgres() {
        attempts_survive_a_reopen(Pg::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_lease_can_neither_acknowledge_nor_release_memory() {
        a_stale_lease_can_neither_acknowledge_nor_release(Memory).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_lease_can_neither_acknowledge_nor_release_file() {
        a_stale_lease_can_neither_acknowledge_nor_release(File::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_lease_can_neither_acknowledge_nor_release_postgres() {
        a_stale_lease_can_neither_acknowledge_nor_release(Pg::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledging_keeps_up_with_receiving_memory() {
        acknowledging_keeps_up_with_receiving(Memory, 2048).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledging_keeps_up_with_receiving_file() {
        acknowledging_keeps_up_with_receiving(File::new(), 2048).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledging_keeps_up_with_receiving_postgres() {
        acknowledging_keeps_up_with_receiving(Pg::new(), 4096).await;
    }
}
