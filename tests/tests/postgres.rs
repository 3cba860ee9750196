//! Several receiver instances sharing one PostgreSQL database (a real
//! server, started for these tests): a create through one instance whose
//! handshake lands on another, concurrent creates from both, forged
//! handshakes, and an inbox whose leases move between instances.

use std::time::Duration;

use asana_webhooks::inbox::{EventSource, Inbox, VerifiedDelivery};
use asana_webhooks::postgres::{self, PostgresInbox, PostgresSecretStore};
use asana_webhooks::receiver::Receiver;
use asana_webhooks::secrets::{SecretStore, TargetKey};
use asana_webhooks::{HandshakeExt, HookSecret};
use asana_webhooks_tests::postgres::Postgres;
use asana_webhooks_tests::{CreateBehaviour, FakeAsana, deliver, hmac_hex, serve};
use serde_json::value::RawValue;

/// One receiver instance: its own pool, store, inbox and server.
struct Instance {
    base: String,
    store: PostgresSecretStore,
    inbox: PostgresInbox,
}

async fn instance(db: &Postgres, lease: Duration) -> Instance {
    let pool = db.pool().await;
    let store = PostgresSecretStore::new(pool.clone());
    let inbox = PostgresInbox::with_limits(pool, &db.url(), lease, 10_000).unwrap();
    let receiver = Receiver::builder(store.clone()).build_with_inbox(inbox.clone());
    let addr = serve(receiver.router()).await;
    Instance {
        base: format!("http://{addr}"),
        store,
        inbox,
    }
}

fn events(gid: &str) -> String {
    format!(
        r#"{{"events":[{{"action":"added","resource":{{"gid":"{gid}","resource_type":"task"}},"created_at":"2026-01-01T00:00:00Z"}}]}}"#
    )
}

async fn next_gid(inbox: &PostgresInbox) -> (String, asana_webhooks::inbox::InboxItem) {
    let item = tokio::time::timeout(Duration::from_secs(10), inbox.next())
        .await
        .expect("an event within 10 s")
        .expect("open");
    (item.event().unwrap().resource.gid, item)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_through_one_instance_whose_handshake_lands_on_another_succeeds() {
    let db = Postgres::start();
    let (a, b) = (
        instance(&db, Duration::from_secs(30)).await,
        instance(&db, Duration::from_secs(30)).await,
    );
    let asana = FakeAsana::start().await;
    // The load balancer sends Asana's handshake to B; A sends the create.
    let target = format!("{}/hooks/shared", b.base);
    let created = asana
        .client()
        .create_webhook_with_handshake(&a.store, "1", &target)
        .send()
        .await
        .expect("the handshake answered by B confirms A's create");
    let gid = created.webhook.gid.unwrap();
    let secret = created.secret.unwrap();
    assert_eq!(b.store.by_gid(&gid).await.unwrap().unwrap().secret, secret);
    let gid_for_items = gid.clone();

    // Deliveries spread over both instances are all verified and land in
    // the one inbox.
    for (n, base) in [&a.base, &b.base, &a.base, &b.base].iter().enumerate() {
        let body = events(&format!("e{n}"));
        let signature = hmac_hex(secret.expose(), body.as_bytes());
        assert_eq!(
            deliver(
                &format!("{base}/hooks/shared"),
                body.as_bytes(),
                Some(&signature)
            )
            .await,
            200
        );
    }
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (event, item) = next_gid(if seen.len() % 2 == 0 {
            &a.inbox
        } else {
            &b.inbox
        })
        .await;
        assert_eq!(item.webhook_gid(), Some(gid_for_items.as_str()));
        item.ack().await.unwrap();
        seen.push(event);
    }
    seen.sort();
    assert_eq!(seen, ["e0", "e1", "e2", "e3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_from_both_instances_to_one_target_all_succeed() {
    let db = Postgres::start();
    let (a, b) = (
        instance(&db, Duration::from_secs(30)).await,
        instance(&db, Duration::from_secs(30)).await,
    );
    let asana = FakeAsana::start().await;
    let target = format!("{}/hooks/one", a.base);
    let creates = (0..4).map(|n| {
        let store = if n % 2 == 0 {
            a.store.clone()
        } else {
            b.store.clone()
        };
        let (client, target) = (asana.client(), target.clone());
        tokio::spawn(async move {
            client
                .create_webhook_with_handshake(&store, format!("r{n}"), &target)
                .send()
                .await
        })
    });
    let mut gids = Vec::new();
    for create in futures::future::join_all(creates).await {
        gids.push(
            create
                .unwrap()
                .expect("no create fails")
                .webhook
                .gid
                .unwrap(),
        );
    }
    let key = TargetKey::from_url(&target).unwrap();
    assert_eq!(a.store.secrets_for(&key).await.unwrap().len(), 4);
    for (gid, _, secret) in asana.created() {
        assert_eq!(
            b.store.by_gid(&gid).await.unwrap().unwrap().secret.expose(),
            secret
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_handshake_on_another_instance_never_verifies_events() {
    let db = Postgres::start();
    let (a, b) = (
        instance(&db, Duration::from_secs(30)).await,
        instance(&db, Duration::from_secs(30)).await,
    );
    let asana = FakeAsana::start().await;
    asana.set_behaviour(CreateBehaviour::LateAnswer(Duration::from_millis(800)));
    let target = format!("{}/hooks/f", a.base);
    let create = tokio::spawn({
        let (client, store, target) = (asana.client(), a.store.clone(), target.clone());
        async move {
            client
                .create_webhook_with_handshake(&store, "1", &target)
                .send()
                .await
        }
    });
    for _ in 0..200 {
        if !asana.created().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The attacker talks to instance B during the registration.
    let forged_url = format!("{}/hooks/f", b.base);
    let answered = reqwest::Client::new()
        .post(&forged_url)
        .header("X-Hook-Secret", "attacker")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status().as_u16(), 200);
    let body = events("forged");
    let forged = hmac_hex("attacker", body.as_bytes());
    assert_ne!(
        deliver(&forged_url, body.as_bytes(), Some(&forged)).await,
        200
    );
    create.await.unwrap().unwrap();
    assert_eq!(
        deliver(&forged_url, body.as_bytes(), Some(&forged)).await,
        401
    );
    assert_eq!(a.inbox.stats().await.unwrap().waiting, 0);
    let key = TargetKey::from_url(&target).unwrap();
    assert_eq!(b.store.secrets_for(&key).await.unwrap().len(), 1);
}

fn delivery(events: &[&str]) -> VerifiedDelivery {
    VerifiedDelivery {
        target: TargetKey::from_path_and_query("/hooks/x"),
        webhook_gid: Some("9".into()),
        source: EventSource::Webhook,
        resource: None,
        events: events
            .iter()
            .map(|e| RawValue::from_string(e.to_string()).unwrap())
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_lease_moves_to_the_other_instance_and_repeats_are_dropped() {
    let db = Postgres::start();
    let a = instance(&db, Duration::from_millis(500)).await;
    let b = instance(&db, Duration::from_millis(500)).await;
    let appended = a
        .inbox
        .append(delivery(&[r#"{"n":1}"#, r#"{"n":2}"#]))
        .await
        .unwrap();
    assert_eq!(appended.added, 2);
    let again = b.inbox.append(delivery(&[r#"{ "n": 1 }"#])).await.unwrap();
    assert_eq!(
        (again.added, again.duplicates),
        (0, 1),
        "a repeat through the other instance"
    );

    let first = a.inbox.next().await.unwrap();
    let second = b.inbox.next().await.unwrap();
    assert_ne!(
        first.id(),
        second.id(),
        "SKIP LOCKED: each instance its own event"
    );
    second.ack().await.unwrap();
    // Instance A "dies" holding its event; B gets it once the lease ran out.
    let held = first.id();
    drop(first);
    let started = std::time::Instant::now();
    let moved = tokio::time::timeout(Duration::from_secs(10), b.inbox.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.id(), held);
    assert_eq!(moved.attempt(), 2);
    assert!(started.elapsed() >= Duration::from_millis(300));
    moved.ack().await.unwrap();
    let stats = b.inbox.stats().await.unwrap();
    assert_eq!(
        (stats.waiting, stats.in_flight, stats.duplicates_dropped),
        (0, 0, 1)
    );
}

/// An echoed handshake is committed before the echo and outlives the
/// instance (and its registration) until a 201 confirms its secret, so that
/// a create whose process died before Asana's answer can be recovered by
/// any instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_handshake_outlives_its_instance_until_confirmed() {
    let db = Postgres::start();
    let a = instance(&db, Duration::from_secs(30)).await;
    let b = instance(&db, Duration::from_secs(30)).await;
    let target = TargetKey::from_path_and_query("/hooks/recover");
    a.store
        .open_registration(&target, Duration::from_millis(200))
        .await
        .unwrap();
    let secret = HookSecret::new("echoed-then-the-creator-died");
    a.store.accept_handshake(&target, &secret).await.unwrap();
    // The registration expires (its process is gone); the handshake stays.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(b.store.pending_secrets(&target).await.unwrap().is_empty());
    let unconfirmed = b.store.unconfirmed_handshakes(&target).await.unwrap();
    assert_eq!(unconfirmed.len(), 1);
    assert_eq!(unconfirmed[0].secret, secret);
    let age = chrono::Utc::now() - unconfirmed[0].received_at;
    assert!(age < chrono::Duration::seconds(30), "{age}");

    // Saving the secret (what recovery does) forgets the handshake.
    let record = asana_webhooks::secrets::StoredSecret::new(target.clone(), "77", secret);
    b.store.save(record).await.unwrap();
    assert!(
        a.store
            .unconfirmed_handshakes(&target)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The database writes every pending handshake down itself (a trigger), so
/// that an instance of an older build on the same database, which inserts
/// pending handshakes and nothing else, cannot leave Asana's handshake
/// unrecorded; past the per-target limit only the span is kept; and
/// `migrate` refuses a schema newer than it knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_writes_down_every_pending_handshake_whoever_inserts_it() {
    use asana_webhooks::secrets::MAX_UNCONFIRMED_PER_TARGET;
    let db = Postgres::start();
    let a = instance(&db, Duration::from_secs(30)).await;
    let pool = db.pool().await;
    let client = pool.get().await.unwrap();
    // What an older build does when it accepts a handshake.
    client
        .execute(
            "INSERT INTO asana_webhooks_pending (target, secret) VALUES ('/hooks/old', 'echoed-by-an-old-build')",
            &[],
        )
        .await
        .unwrap();
    let old = TargetKey::from_path_and_query("/hooks/old");
    let kept = a.store.unconfirmed_handshakes(&old).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].secret.expose(), "echoed-by-an-old-build");

    let flooded = TargetKey::from_path_and_query("/hooks/flooded");
    a.store
        .open_registration(&flooded, Duration::from_secs(30))
        .await
        .unwrap();
    for n in 0..MAX_UNCONFIRMED_PER_TARGET + 2 {
        let secret = HookSecret::new(format!("flood-{n}"));
        a.store.accept_handshake(&flooded, &secret).await.unwrap();
    }
    assert_eq!(
        a.store
            .unconfirmed_handshakes(&flooded)
            .await
            .unwrap()
            .len(),
        MAX_UNCONFIRMED_PER_TARGET
    );
    let span = a
        .store
        .unrecorded_handshakes(&flooded)
        .await
        .unwrap()
        .unwrap();
    assert!(span.first <= span.last);
    assert!(a.store.unrecorded_handshakes(&old).await.unwrap().is_none());

    client
        .execute(
            "INSERT INTO asana_webhooks_schema (version) VALUES (99)",
            &[],
        )
        .await
        .unwrap();
    let refused = postgres::migrate(&pool).await.unwrap_err().to_string();
    assert!(refused.contains("version 99"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_inbox_refuses_and_migrations_are_idempotent() {
    let db = Postgres::start();
    let pool = postgres::connect(&db.url()).await.unwrap();
    assert_eq!(
        postgres::migrate(&pool).await.unwrap(),
        postgres::SCHEMA_VERSION
    );
    assert_eq!(
        postgres::migrate(&pool).await.unwrap(),
        postgres::SCHEMA_VERSION,
        "running it again changes nothing"
    );
    let inbox = PostgresInbox::with_limits(pool, &db.url(), Duration::from_secs(30), 2).unwrap();
    inbox.append(delivery(&[r#"{"n":1}"#])).await.unwrap();
    let err = inbox
        .append(delivery(&[r#"{"n":2}"#, r#"{"n":3}"#]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            asana_webhooks::inbox::InboxError::Full {
                waiting: 1,
                limit: 2,
                unit: asana_webhooks::inbox::LimitUnit::Events,
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("1 events waiting"), "{err}");
    assert_eq!(
        inbox.stats().await.unwrap().waiting,
        1,
        "none of the refused delivery"
    );
    inbox
        .heartbeat(&TargetKey::from_path_and_query("/hooks/x"), Some("9"))
        .await
        .unwrap();
    assert!(
        inbox
            .stats()
            .await
            .unwrap()
            .last_heartbeats
            .contains_key("9")
    );
    // A secret store on the same database works at once.
    let store = PostgresSecretStore::new(db.pool().await);
    store
        .save(asana_webhooks::secrets::StoredSecret::new(
            TargetKey::from_path_and_query("/a"),
            "1",
            HookSecret::new("s"),
        ))
        .await
        .unwrap();
    assert_eq!(
        store
            .remove_gid("1")
            .await
            .unwrap()
            .unwrap()
            .secret
            .expose(),
        "s"
    );
}

/// A database at schema version 6 with an event waiting and a dead
/// letter, migrated to version 7: both load as a webhook's, of no known
/// resource, and new events keep their source and resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_before_version_7_load_as_webhook_events() {
    let db = Postgres::start();
    let pool = postgres::connect(&db.url()).await.unwrap();
    let schema = postgres::schema();
    let version_7 = schema
        .find("ALTER TABLE asana_webhooks_inbox\n    ADD COLUMN source")
        .expect("version 7 adds the source");
    let client = pool.get().await.unwrap();
    client.batch_execute(&schema[..version_7]).await.unwrap();
    client
        .batch_execute(
            "CREATE TABLE asana_webhooks_schema (version integer NOT NULL);
             INSERT INTO asana_webhooks_schema (version) SELECT generate_series(1, 6);
             INSERT INTO asana_webhooks_inbox (target, webhook_gid, event)
                 VALUES ('/hooks/x', '9', '{\"n\":1}');
             INSERT INTO asana_webhooks_dead_letters
                 (id, target, webhook_gid, received_at, event, attempts, last_error)
                 VALUES (1000, '/hooks/x', '9', now(), '{\"n\":2}', 3, 'x');",
        )
        .await
        .unwrap();
    assert_eq!(postgres::migrate(&pool).await.unwrap(), 7);
    assert_eq!(postgres::SCHEMA_VERSION, 7);
    let inbox = PostgresInbox::new(pool, &db.url()).unwrap();
    let item = inbox.next().await.unwrap();
    assert_eq!(
        (
            item.raw(),
            item.source(),
            item.resource(),
            item.webhook_gid()
        ),
        (r#"{"n":1}"#, EventSource::Webhook, None, Some("9"))
    );
    item.ack().await.unwrap();
    let dead = inbox.dead_letters().await.unwrap();
    assert_eq!(
        (
            dead[0].raw.as_str(),
            dead[0].source,
            dead[0].resource.as_deref()
        ),
        (r#"{"n":2}"#, EventSource::Webhook, None)
    );
    inbox
        .append(VerifiedDelivery::from_events_api(
            TargetKey::from_path_and_query("/hooks/x"),
            "1300",
            vec![RawValue::from_string(r#"{"n":3}"#.into()).unwrap()],
        ))
        .await
        .unwrap();
    let item = inbox.next().await.unwrap();
    assert_eq!(
        (item.source(), item.resource(), item.webhook_gid()),
        (EventSource::EventsApi, Some("1300"), None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_share_commits_and_each_gets_its_own_count() {
    let db = Postgres::start();
    let a = instance(&db, Duration::from_secs(30)).await;
    // 60 deliveries at once: each has one event of its own and one that
    // every delivery repeats.
    let appends = (0..60).map(|n| {
        let inbox = a.inbox.clone();
        tokio::spawn(async move {
            let own = format!(r#"{{"n":{n}}}"#);
            inbox.append(delivery(&[&own, r#"{"shared":true}"#])).await
        })
    });
    let mut added = 0;
    let mut duplicates = 0;
    for result in futures::future::join_all(appends).await {
        let appended = result.unwrap().unwrap();
        assert_eq!(appended.added + appended.duplicates, 2);
        added += appended.added;
        duplicates += appended.duplicates;
    }
    assert_eq!(
        (added, duplicates),
        (61, 59),
        "the shared event is kept once"
    );
    let stats = a.inbox.stats().await.unwrap();
    assert_eq!(stats.waiting, 61);
    assert_eq!(stats.duplicates_dropped, 59);
}

/// The rules the database applies by itself (the trigger of schema version
/// 2) are the Rust constants, written by `migrate` (again on every run):
/// exactly `MAX_UNCONFIRMED_PER_TARGET` handshakes of a target are written
/// down and the next one only as a span, and what is older than
/// `UNCONFIRMED_KEPT_FOR` is dropped while what is just younger is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_applies_the_rust_rules_at_their_edges() {
    use asana_webhooks::secrets::{
        MAX_PENDING_DIGESTS_PER_TARGET, MAX_PENDING_PER_TARGET, MAX_UNCONFIRMED_PER_TARGET,
        UNCONFIRMED_KEPT_FOR, UNRECORDED_SPAN_STEP,
    };
    use std::collections::BTreeMap;
    let db = Postgres::start();
    let a = instance(&db, Duration::from_secs(30)).await;
    let pool = db.pool().await;
    let client = pool.get().await.unwrap();
    let settings = async || -> BTreeMap<String, i64> {
        client
            .query("SELECT name, value FROM asana_webhooks_settings", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    };
    let expected = BTreeMap::from([
        (
            "max_unconfirmed_per_target".to_string(),
            MAX_UNCONFIRMED_PER_TARGET as i64,
        ),
        (
            "unconfirmed_kept_for_seconds".to_string(),
            UNCONFIRMED_KEPT_FOR.as_secs() as i64,
        ),
        (
            "max_pending_per_target".to_string(),
            MAX_PENDING_PER_TARGET as i64,
        ),
        (
            "max_pending_digests_per_target".to_string(),
            MAX_PENDING_DIGESTS_PER_TARGET as i64,
        ),
        (
            "unrecorded_span_step_seconds".to_string(),
            UNRECORDED_SPAN_STEP.as_secs() as i64,
        ),
    ]);
    assert_eq!(settings().await, expected);
    // A database left with other rules gets this build's back from migrate.
    client
        .execute("UPDATE asana_webhooks_settings SET value = 1", &[])
        .await
        .unwrap();
    postgres::migrate(&pool).await.unwrap();
    assert_eq!(settings().await, expected);

    // Exactly the limit is written down (one statement of as many rows,
    // each written down by the trigger)…
    let edge = TargetKey::from_path_and_query("/hooks/edge");
    client
        .execute(
            "INSERT INTO asana_webhooks_pending (target, secret)
             SELECT $1, 'edge-' || n FROM generate_series(1, $2::bigint) AS n",
            &[&edge.as_str(), &(MAX_UNCONFIRMED_PER_TARGET as i64)],
        )
        .await
        .unwrap();
    assert_eq!(
        a.store.unconfirmed_handshakes(&edge).await.unwrap().len(),
        MAX_UNCONFIRMED_PER_TARGET
    );
    assert!(
        a.store
            .unrecorded_handshakes(&edge)
            .await
            .unwrap()
            .is_none(),
        "the limit itself fits"
    );
    // …and the next one only as a span.
    client
        .execute(
            "INSERT INTO asana_webhooks_pending (target, secret) VALUES ($1, 'one-too-many')",
            &[&edge.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(
        a.store.unconfirmed_handshakes(&edge).await.unwrap().len(),
        MAX_UNCONFIRMED_PER_TARGET
    );
    assert!(
        a.store
            .unrecorded_handshakes(&edge)
            .await
            .unwrap()
            .is_some()
    );

    // Kept for UNCONFIRMED_KEPT_FOR: a minute either side of it.
    let minute = Duration::from_secs(60);
    let (younger, older) = (
        (UNCONFIRMED_KEPT_FOR - minute).as_secs_f64(),
        (UNCONFIRMED_KEPT_FOR + minute).as_secs_f64(),
    );
    client
        .execute(
            "INSERT INTO asana_webhooks_unconfirmed (target, secret, received_at) VALUES
                 ('/hooks/aged', 'younger', now() - make_interval(secs => $1)),
                 ('/hooks/aged', 'older', now() - make_interval(secs => $2));
             ",
            &[&younger, &older],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO asana_webhooks_unrecorded (target, first_at, last_at) VALUES
                 ('/hooks/span-younger', now() - make_interval(secs => $1), now() - make_interval(secs => $1)),
                 ('/hooks/span-older', now() - make_interval(secs => $2), now() - make_interval(secs => $2))",
            &[&younger, &older],
        )
        .await
        .unwrap();
    // Any handshake makes the trigger drop what is too old.
    client
        .execute(
            "INSERT INTO asana_webhooks_pending (target, secret) VALUES ('/hooks/other', 'x')",
            &[],
        )
        .await
        .unwrap();
    let left = async |sql: &str| -> Vec<String> {
        client
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    assert_eq!(
        left("SELECT secret FROM asana_webhooks_unconfirmed WHERE target = '/hooks/aged'").await,
        ["younger"]
    );
    assert_eq!(
        left("SELECT target FROM asana_webhooks_unrecorded WHERE target LIKE '/hooks/span-%'")
            .await,
        ["/hooks/span-younger"]
    );
}

/// The inbox forgets a repeat's key once it is older than
/// `DEDUPE_HORIZON`, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_are_recognised_for_the_dedupe_horizon_and_no_longer() {
    use asana_webhooks::inbox::DEDUPE_HORIZON;
    let db = Postgres::start();
    let pool = db.pool().await;
    let client = pool.get().await.unwrap();
    let minute = Duration::from_secs(60);
    let inbox = |pool| PostgresInbox::with_limits(pool, &db.url(), Duration::from_secs(30), 100);
    let first = inbox(pool.clone()).unwrap();
    first.append(delivery(&[r#"{"n":"old"}"#])).await.unwrap();
    client
        .execute(
            "UPDATE asana_webhooks_seen SET seen_at = now() - make_interval(secs => $1)",
            &[&(DEDUPE_HORIZON + minute).as_secs_f64()],
        )
        .await
        .unwrap();
    first
        .append(delivery(&[r#"{"n":"recent"}"#]))
        .await
        .unwrap();
    client
        .execute(
            "UPDATE asana_webhooks_seen SET seen_at = now() - make_interval(secs => $1)
             WHERE seen_at > now() - make_interval(secs => $2)",
            &[
                &(DEDUPE_HORIZON - minute).as_secs_f64(),
                &DEDUPE_HORIZON.as_secs_f64(),
            ],
        )
        .await
        .unwrap();
    // A new inbox forgets old keys on its first append.
    let second = inbox(pool.clone()).unwrap();
    second.append(delivery(&[r#"{"n":"new"}"#])).await.unwrap();
    let old = second.append(delivery(&[r#"{"n":"old"}"#])).await.unwrap();
    assert_eq!(
        (old.added, old.duplicates),
        (1, 0),
        "past the horizon: forgotten"
    );
    let recent = second
        .append(delivery(&[r#"{"n":"recent"}"#]))
        .await
        .unwrap();
    assert_eq!(
        (recent.added, recent.duplicates),
        (0, 1),
        "within the horizon: still a repeat"
    );
}

/// The dead letters live in the database: an event one instance gave up on
/// is listed, re-driven and handed out by another, and an instance whose
/// lease expired cannot touch the event the other one holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_leases_are_shared_by_every_instance() {
    use asana_webhooks::inbox::{InboxError, Released, Retries, Selection};
    let db = Postgres::start();
    let a = instance(&db, Duration::from_millis(300)).await;
    let b = instance(&db, Duration::from_millis(300)).await;
    // A gives up after one attempt; B allows the default ten.
    let (a, b) = (
        a.inbox
            .with_retries(Retries::default().with_max_attempts(1)),
        b.inbox,
    );
    a.append(delivery(&[r#"{"n":1}"#])).await.unwrap();
    let item = a.next().await.unwrap();
    let id = item.id();
    assert_eq!(
        item.release("no handler for this").await.unwrap(),
        Released::DeadLettered
    );
    let dead = b.dead_letters().await.unwrap();
    assert_eq!(
        (dead.len(), dead[0].id, dead[0].last_error.as_deref()),
        (1, id, Some("no handler for this"))
    );
    assert_eq!(b.stats().await.unwrap().dead_letters, 1);
    assert_eq!(
        b.redrive_dead_letters(Selection::Ids(vec![id]))
            .await
            .unwrap(),
        1
    );
    let (_, first) = next_gid_raw(&a).await;
    assert_eq!(
        (first.id(), first.attempt()),
        (id, 1),
        "same id, attempts reset"
    );
    // A's lease runs out while it works; B takes the event over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, second) = next_gid_raw(&b).await;
    assert_eq!(second.id(), id);
    let refused = first.ack().await.unwrap_err();
    assert!(matches!(refused, InboxError::LeaseLost { .. }), "{refused}");
    second.ack().await.unwrap();
    let stats = a.stats().await.unwrap();
    assert_eq!(
        (stats.waiting, stats.in_flight, stats.dead_letters),
        (0, 0, 0)
    );
}

async fn next_gid_raw(inbox: &PostgresInbox) -> (String, asana_webhooks::inbox::InboxItem) {
    let item = tokio::time::timeout(Duration::from_secs(10), inbox.next())
        .await
        .expect("an event within 10 s")
        .expect("open");
    (item.raw().to_string(), item)
}
