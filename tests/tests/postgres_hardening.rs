//! The PostgreSQL backends under conditions a production database brings:
//! connection options in the URL, a role configured for asynchronous
//! commits, an exhausted pool, a flood of handshakes from many connections,
//! and several instances that each keep the secrets they read.

use std::time::Duration;

use asana_webhooks::HookSecret;
use asana_webhooks::inbox::{EventSource, Inbox, VerifiedDelivery};
use asana_webhooks::postgres::{self, PostgresInbox, PostgresSecretStore};
use asana_webhooks::receiver::Receiver;
use asana_webhooks::secrets::{
    HandshakeVerdict, MAX_PENDING_DIGESTS_PER_TARGET, MAX_PENDING_PER_TARGET,
    MAX_UNCONFIRMED_PER_TARGET, MemorySecretStore, SecretStore, StoredSecret, TargetKey,
};
use asana_webhooks_tests::postgres::Postgres;
use asana_webhooks_tests::{deliver, hmac_hex, serve};
use serde_json::value::RawValue;

fn key(target: &str) -> TargetKey {
    TargetKey::from_path_and_query(target)
}

/// A secret Asana could send (64 hex digits), distinct per `n`.
fn secret(n: usize) -> HookSecret {
    HookSecret::new(format!("{n:064x}"))
}

fn delivery(target: &str, events: &[&str]) -> VerifiedDelivery {
    VerifiedDelivery {
        target: key(target),
        webhook_gid: Some("9".into()),
        source: EventSource::Webhook,
        resource: None,
        events: events
            .iter()
            .map(|e| RawValue::from_string(e.to_string()).unwrap())
            .collect(),
    }
}

fn events(gid: &str) -> String {
    format!(
        r#"{{"events":[{{"action":"added","resource":{{"gid":"{gid}","resource_type":"task"}},"created_at":"2026-01-01T00:00:00Z"}}]}}"#
    )
}

/// `url` with one more query parameter.
fn with_param(url: &str, param: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{param}")
}

/// A superuser connection for arranging and inspecting the database.
async fn admin(db: &Postgres) -> postgres::Pool {
    postgres::connect(&db.url()).await.unwrap()
}

/// Connection options in the URL (here a `search_path`) hold on every
/// connection the crate makes: the schema is created there, the store and
/// the inbox (appends and claims, on their separate pools) work there, and
/// nothing lands in `public`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_options_hold_on_every_connection_the_crate_makes() {
    let db = Postgres::start();
    let admin = admin(&db).await;
    admin
        .get()
        .await
        .unwrap()
        .batch_execute("CREATE SCHEMA tenant")
        .await
        .unwrap();
    let url = with_param(&db.url(), "options=-c%20search_path%3Dtenant");
    let pool = postgres::connect(&url).await.unwrap();
    postgres::migrate(&pool).await.unwrap();
    let store = PostgresSecretStore::new(pool.clone());
    let target = key("/hooks/tenant");
    let registration = store
        .open_registration(&target, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(matches!(
        store.accept_handshake(&target, &secret(1)).await.unwrap(),
        HandshakeVerdict::Accepted { .. }
    ));
    assert!(
        store
            .confirm(
                &registration,
                StoredSecret::new(target.clone(), "1", secret(1))
            )
            .await
            .unwrap()
    );
    assert_eq!(store.secrets_for(&target).await.unwrap().len(), 1);

    let inbox = PostgresInbox::with_limits(pool, &url, Duration::from_secs(30), 100).unwrap();
    inbox
        .append(delivery("/hooks/tenant", &[r#"{"n":1}"#]))
        .await
        .unwrap();
    let item = tokio::time::timeout(Duration::from_secs(10), inbox.next())
        .await
        .expect("the claim (on the inbox's own connections) finds the event within 10 s")
        .unwrap();
    item.ack().await.unwrap();
    assert_eq!(inbox.stats().await.unwrap().waiting, 0);

    let client = admin.get().await.unwrap();
    let tables = |schema: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(
                    "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'asana_webhooks%'",
                    &[&schema],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert!(tables("tenant").await > 0);
    assert_eq!(tables("public").await, 0, "nothing lands in public");
}

/// A role whose sessions default to `synchronous_commit = off` would let a
/// 200 precede durability: every session the crate commits on reports
/// `on`, and each commit of the store and of the inbox ran with it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_synchronous_even_when_the_role_says_off() {
    let db = Postgres::start();
    let admin = admin(&db).await;
    admin
        .get()
        .await
        .unwrap()
        .batch_execute(
            "CREATE ROLE app LOGIN SUPERUSER;
             ALTER ROLE app SET synchronous_commit = off;",
        )
        .await
        .unwrap();
    let url = db.url().replace("postgres://postgres@", "postgres://app@");
    let pool = postgres::connect(&url).await.unwrap();
    let show = async |pool: &postgres::Pool| -> String {
        pool.get()
            .await
            .unwrap()
            .query_one("SHOW synchronous_commit", &[])
            .await
            .unwrap()
            .get(0)
    };
    // What the role gives any other session.
    let other = tokio_postgres_session(&url).await;
    assert_eq!(other, "off", "the role's setting");
    assert_eq!(show(&pool).await, "on", "the crate's sessions");
    postgres::migrate(&pool).await.unwrap();
    // Each commit records the setting it ran with.
    admin
        .get()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE commit_settings (tbl text, setting text);
             CREATE FUNCTION record_setting() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO commit_settings VALUES (TG_TABLE_NAME, current_setting('synchronous_commit'));
                 RETURN NULL;
             END $$;
             CREATE TRIGGER r AFTER INSERT ON asana_webhooks_secrets FOR EACH ROW EXECUTE FUNCTION record_setting();
             CREATE TRIGGER r AFTER INSERT ON asana_webhooks_pending FOR EACH ROW EXECUTE FUNCTION record_setting();
             CREATE TRIGGER r AFTER INSERT ON asana_webhooks_inbox FOR EACH ROW EXECUTE FUNCTION record_setting();",
        )
        .await
        .unwrap();
    let store = PostgresSecretStore::new(pool.clone());
    let target = key("/hooks/durable");
    store
        .open_registration(&target, Duration::from_secs(30))
        .await
        .unwrap();
    store.accept_handshake(&target, &secret(1)).await.unwrap();
    store
        .save(StoredSecret::new(target.clone(), "1", secret(2)))
        .await
        .unwrap();
    let inbox = PostgresInbox::with_limits(pool, &url, Duration::from_secs(30), 100).unwrap();
    inbox
        .append(delivery("/hooks/durable", &[r#"{"n":1}"#]))
        .await
        .unwrap();
    let recorded: Vec<(String, String)> = admin
        .get()
        .await
        .unwrap()
        .query("SELECT tbl, setting FROM commit_settings ORDER BY tbl", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        recorded,
        [
            ("asana_webhooks_inbox".to_string(), "on".to_string()),
            ("asana_webhooks_pending".to_string(), "on".to_string()),
            ("asana_webhooks_secrets".to_string(), "on".to_string()),
        ]
    );
}

/// `SHOW synchronous_commit` on a plain connection to `url`.
async fn tokio_postgres_session(url: &str) -> String {
    let (client, connection) = url
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .unwrap()
        .get(0)
}

/// An exhausted pool is an error after the pool's wait timeout, which the
/// receiver answers 503, instead of a request that hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_an_error_not_a_hang() {
    let db = Postgres::start();
    let pool = db.pool().await;
    let store = PostgresSecretStore::new(pool.clone());
    let inbox =
        PostgresInbox::with_limits(pool.clone(), &db.url(), Duration::from_secs(30), 100).unwrap();
    let receiver = Receiver::builder(store.clone()).build_with_inbox(inbox);
    let base = format!("http://{}", serve(receiver.router()).await);
    // Every connection of the pool is taken (by a slow job, say).
    let mut held = Vec::new();
    for _ in 0..pool.status().max_size {
        held.push(pool.get().await.unwrap());
    }
    let started = std::time::Instant::now();
    let lookup = tokio::time::timeout(Duration::from_secs(30), store.secrets_for(&key("/x")))
        .await
        .expect("an exhausted pool hung the lookup for 30 s");
    let error = lookup.unwrap_err().to_string();
    assert!(error.contains("database"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(15));
    let body = events("e1");
    let answered = tokio::time::timeout(
        Duration::from_secs(30),
        deliver(
            &format!("{base}/hooks/busy"),
            body.as_bytes(),
            Some(&hmac_hex("s", body.as_bytes())),
        ),
    )
    .await
    .expect("the receiver answers");
    assert_eq!(answered, 503);
    drop(held);
    assert!(store.secrets_for(&key("/x")).await.unwrap().is_empty());
}

/// Lookups for deliveries nobody can verify (a flood of requests to
/// unknown targets whose queries are slow, here held by a lock) cannot take
/// the connections the inbox commits on: a verified delivery still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_cannot_starve_the_inbox_commits() {
    let db = Postgres::start();
    let pool = db.pool().await;
    let store = PostgresSecretStore::new(pool.clone());
    let inbox =
        PostgresInbox::with_limits(pool.clone(), &db.url(), Duration::from_secs(30), 100).unwrap();
    // Another session holds the secrets table: every lookup waits on it.
    let (locker, connection) = db
        .url()
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute("BEGIN; LOCK TABLE asana_webhooks_secrets IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let lookups: Vec<_> = (0..4 * pool.status().max_size)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.secrets_for(&key(&format!("/unknown/{n}"))).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let appended = tokio::time::timeout(
        Duration::from_secs(20),
        inbox.append(delivery("/hooks/x", &[r#"{"n":1}"#])),
    )
    .await
    .expect("lookups took every connection: the commit waited 20 s")
    .unwrap();
    assert_eq!(appended.added, 1);
    locker.batch_execute("ROLLBACK").await.unwrap();
    for lookup in lookups {
        // Each either answered or gave up waiting; none hangs.
        let _ = tokio::time::timeout(Duration::from_secs(30), lookup)
            .await
            .expect("a lookup ends");
    }
}

/// What a sequence of handshakes, confirms and a close gives, as text, so
/// that two stores can be compared.
async fn handshake_script(store: &impl SecretStore, target: &TargetKey) -> Vec<String> {
    let mut log = Vec::new();
    let registration = store
        .open_registration(target, Duration::from_secs(60))
        .await
        .unwrap();
    let extra = 40;
    for n in 0..MAX_PENDING_PER_TARGET + extra {
        let verdict = store.accept_handshake(target, &secret(n)).await.unwrap();
        if n < 2 || n + 2 >= MAX_PENDING_PER_TARGET + extra || n == MAX_PENDING_PER_TARGET {
            log.push(format!("accept {n}: {verdict:?}"));
        }
    }
    let repeat = store.accept_handshake(target, &secret(3)).await.unwrap();
    log.push(format!("repeat of a whole one: {repeat:?}"));
    let repeat = store
        .accept_handshake(target, &secret(MAX_PENDING_PER_TARGET + 5))
        .await
        .unwrap();
    log.push(format!("repeat of a digest: {repeat:?}"));
    let pending = store.pending_secrets(target).await.unwrap();
    log.push(format!("pending kept whole: {}", pending.len()));
    for (what, n) in [
        ("a whole one", 7),
        ("a digest", MAX_PENDING_PER_TARGET + 9),
        ("never sent", 100_000),
    ] {
        let record = StoredSecret::new(target.clone(), format!("{n}"), secret(n));
        let confirmed = store.confirm(&registration, record).await.unwrap();
        log.push(format!("confirm {what}: {confirmed}"));
    }
    log.push(format!(
        "pending after confirms: {}",
        store.pending_secrets(target).await.unwrap().len()
    ));
    let candidates = store.close_registration(&registration).await.unwrap();
    log.push(format!("candidates at close: {}", candidates.len()));
    log.push(format!(
        "after close: pending {}, stored {}",
        store.pending_secrets(target).await.unwrap().len(),
        store.secrets_for(target).await.unwrap().len()
    ));
    log.push(format!(
        "after close: {:?}",
        store.accept_handshake(target, &secret(1)).await.unwrap()
    ));
    log
}

/// Pending secrets are kept and found by a SHA-256 digest (no index or
/// comparison on the secret text an attacker can probe), bounded like the
/// in-process stores: the same script of handshakes, confirms and a close
/// gives the same answers from PostgreSQL as from memory; past the digests
/// a new handshake is refused as a flood, a repeat still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_secrets_are_found_by_digest_and_bounded_like_in_memory() {
    let db = Postgres::start();
    let pool = db.pool().await;
    let store = PostgresSecretStore::new(pool.clone());
    let target = key("/hooks/flood");
    let in_memory = handshake_script(&MemorySecretStore::new(), &target).await;
    let in_postgres = handshake_script(&store, &target).await;
    assert_eq!(in_postgres, in_memory);
    assert!(
        in_memory.contains(&format!("pending kept whole: {MAX_PENDING_PER_TARGET}")),
        "{in_memory:?}"
    );
    let client = admin(&db).await.get().await.unwrap();
    let on_secret_text: Vec<String> = client
        .query(
            "SELECT i.indexrelid::regclass::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid IN ('asana_webhooks_pending'::regclass, 'asana_webhooks_unconfirmed'::regclass)
               AND a.attname = 'secret'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        on_secret_text.is_empty(),
        "indexes compare handshake secrets as text: {on_secret_text:?}"
    );

    // The digests full: a new handshake is a flood, a repeat is not.
    let registration = store
        .open_registration(&target, Duration::from_secs(60))
        .await
        .unwrap();
    for n in 0..MAX_PENDING_PER_TARGET + 1 {
        store.accept_handshake(&target, &secret(n)).await.unwrap();
    }
    client
        .execute(
            "INSERT INTO asana_webhooks_pending_digests (target, digest)
             SELECT $1, sha256(('filler-' || n)::bytea) FROM generate_series(2, $2::bigint) AS n",
            &[&target.as_str(), &(MAX_PENDING_DIGESTS_PER_TARGET as i64)],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE asana_webhooks_pending_overflow SET digests = $2 WHERE target = $1",
            &[&target.as_str(), &(MAX_PENDING_DIGESTS_PER_TARGET as i32)],
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .accept_handshake(&target, &secret(1_000_000))
            .await
            .unwrap(),
        HandshakeVerdict::Flooded
    );
    assert_eq!(
        store
            .accept_handshake(&target, &secret(MAX_PENDING_PER_TARGET))
            .await
            .unwrap(),
        HandshakeVerdict::Accepted { suspicious: true },
        "a repeat of a kept digest"
    );
    let record = StoredSecret::new(target.clone(), "asana", secret(MAX_PENDING_PER_TARGET));
    assert!(store.confirm(&registration, record).await.unwrap());
}

/// Many handshakes at once from several instances (connections) to one
/// target: exactly `MAX_UNCONFIRMED_PER_TARGET` are written down, the rest
/// only as the unrecorded span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_handshakes_write_down_exactly_the_limit() {
    let db = Postgres::start();
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(PostgresSecretStore::new(db.pool().await));
    }
    let target = key("/hooks/concurrent");
    stores[0]
        .open_registration(&target, Duration::from_secs(120))
        .await
        .unwrap();
    let total = MAX_UNCONFIRMED_PER_TARGET * 2 + 64;
    let accepts: Vec<_> = (0..total)
        .map(|n| {
            let (store, target) = (stores[n % stores.len()].clone(), target.clone());
            tokio::spawn(async move { store.accept_handshake(&target, &secret(n)).await })
        })
        .collect();
    for accept in futures::future::join_all(accepts).await {
        let verdict = accept.unwrap().expect("no handshake fails");
        assert!(matches!(verdict, HandshakeVerdict::Accepted { .. }));
    }
    let written = stores[1].unconfirmed_handshakes(&target).await.unwrap();
    assert_eq!(written.len(), MAX_UNCONFIRMED_PER_TARGET);
    assert!(
        stores[2]
            .unrecorded_handshakes(&target)
            .await
            .unwrap()
            .is_some()
    );
}

/// One receiver instance with its own pool, store and inbox.
struct Instance {
    base: String,
    store: PostgresSecretStore,
}

async fn instance(db: &Postgres, url: &str) -> Instance {
    let pool = postgres::connect(url).await.unwrap();
    postgres::migrate(&pool).await.unwrap();
    let store = PostgresSecretStore::new(pool.clone());
    let inbox = PostgresInbox::with_limits(pool, url, Duration::from_secs(30), 10_000).unwrap();
    let receiver = Receiver::builder(store.clone()).build_with_inbox(inbox);
    let _ = db;
    Instance {
        base: format!("http://{}", serve(receiver.router()).await),
        store,
    }
}

/// Waits (5 s at most) until `count` sessions named `name` listen for
/// secret changes; returns their process ids.
async fn secret_listeners(admin: &postgres::Pool, name: &str, count: usize) -> Vec<i32> {
    let pids = listening(admin, name, count).await;
    assert_eq!(
        pids.len(),
        count,
        "{count} listener(s) named {name} expected within 5 s"
    );
    pids
}

/// The process ids of the sessions named `name` that listen for secret
/// changes, once there are `count` of them or after 5 s.
async fn listening(admin: &postgres::Pool, name: &str, count: usize) -> Vec<i32> {
    let mut pids = Vec::new();
    let client = admin.get().await.unwrap();
    for _ in 0..100 {
        pids = client
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE application_name = $1 AND query = 'LISTEN asana_webhooks_secrets'",
                &[&name],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        if pids.len() == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pids
}

/// Each instance keeps the secrets it read and hears of every change from
/// the database: B serves deliveries from what it keeps (here while another
/// session locks the secrets table), verifies a delivery signed with a
/// secret A just confirmed at once, and when its notification connection is
/// killed it reads from the database until the connection is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_keep_secrets_and_hear_of_every_change() {
    let db = Postgres::start();
    let admin = admin(&db).await;
    let a = instance(&db, &with_param(&db.url(), "application_name=instance-a")).await;
    let b = instance(&db, &with_param(&db.url(), "application_name=instance-b")).await;
    listening(&admin, "instance-b", 1).await;
    let target = key("/hooks/cached");
    let url = format!("{}/hooks/cached", b.base);
    let signed = |secret: &HookSecret, gid: &str| {
        let body = events(gid);
        let signature = hmac_hex(secret.expose(), body.as_bytes());
        (body, signature)
    };
    let send = async |secret: &HookSecret, gid: &str| -> u16 {
        let (body, signature) = signed(secret, gid);
        tokio::time::timeout(
            Duration::from_secs(5),
            deliver(&url, body.as_bytes(), Some(&signature)),
        )
        .await
        .unwrap_or(0)
    };
    a.store
        .save(StoredSecret::new(target.clone(), "1", secret(1)))
        .await
        .unwrap();
    assert_eq!(send(&secret(1), "e1").await, 200);
    // Once more after B's notification connection settled: kept from now on.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(send(&secret(1), "e1-again").await, 200);

    // B answers from what it keeps, without the database's secrets table.
    let (locker, connection) = db
        .url()
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    locker
        .batch_execute("BEGIN; LOCK TABLE asana_webhooks_secrets IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    for n in 0..20 {
        assert_eq!(
            send(&secret(1), &format!("kept-{n}")).await,
            200,
            "B read the secrets table (held by a lock) instead of what it keeps"
        );
    }
    locker.batch_execute("ROLLBACK").await.unwrap();

    // A confirms a second webhook on the target: B verifies its first
    // delivery at once.
    let registration = a
        .store
        .open_registration(&target, Duration::from_secs(30))
        .await
        .unwrap();
    a.store.accept_handshake(&target, &secret(2)).await.unwrap();
    assert!(
        a.store
            .confirm(
                &registration,
                StoredSecret::new(target.clone(), "2", secret(2))
            )
            .await
            .unwrap()
    );
    assert_eq!(send(&secret(2), "e2").await, 200, "no stale secrets on B");
    // A removes the first: B hears of it.
    a.store.remove_gid("1").await.unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if send(&secret(1), "after-remove").await == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "B still verifies a removed secret after 2 s");

    // B's notification connection is killed: B reads from the database
    // until it is back, so it misses nothing meanwhile.
    let pids = secret_listeners(&admin, "instance-b", 1).await;
    admin
        .get()
        .await
        .unwrap()
        .execute("SELECT pg_terminate_backend($1)", &[&pids[0]])
        .await
        .unwrap();
    let client = admin.get().await.unwrap();
    for _ in 0..100 {
        let gone: bool = client
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                &[&pids[0]],
            )
            .await
            .unwrap()
            .get(0);
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.store.remove_gid("2").await.unwrap();
    a.store
        .save(StoredSecret::new(target.clone(), "3", secret(3)))
        .await
        .unwrap();
    assert_eq!(
        send(&secret(2), "stale").await,
        401,
        "a removed secret, unheard"
    );
    assert_eq!(send(&secret(3), "e3").await, 200);
    // The connection comes back, and with it what B keeps.
    let back = secret_listeners(&admin, "instance-b", 1).await;
    assert_ne!(back, pids);
    a.store.remove_gid("3").await.unwrap();
    let mut refused = false;
    for _ in 0..100 {
        if send(&secret(3), "after-reconnect").await == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "B hears of changes again");
    let _ = &b.store;
}

/// As in the in-process stores: Asana's 201 confirms a handshake that was
/// written down even when its registration expired meanwhile (a forged
/// secret still does not), and past the written-down limit the recorded
/// span's end moves a step at a time, not with every handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_201_confirms_a_written_down_handshake_and_the_span_moves_in_steps() {
    let db = Postgres::start();
    let store = PostgresSecretStore::new(db.pool().await);
    let target = key("/hooks/slow");
    let registration = store
        .open_registration(&target, Duration::from_millis(200))
        .await
        .unwrap();
    store.accept_handshake(&target, &secret(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(store.pending_secrets(&target).await.unwrap().is_empty());
    let forged = StoredSecret::new(target.clone(), "9", secret(2));
    assert!(!store.confirm(&registration, forged).await.unwrap());
    let late = StoredSecret::new(target.clone(), "8", secret(1));
    assert!(store.confirm(&registration, late).await.unwrap());
    assert_eq!(store.by_gid("8").await.unwrap().unwrap().secret, secret(1));
    assert!(
        store
            .unconfirmed_handshakes(&target)
            .await
            .unwrap()
            .is_empty(),
        "confirmed, so no longer unconfirmed"
    );

    let flooded = key("/hooks/steps");
    store
        .open_registration(&flooded, Duration::from_secs(60))
        .await
        .unwrap();
    for n in 0..MAX_UNCONFIRMED_PER_TARGET + 20 {
        store.accept_handshake(&flooded, &secret(n)).await.unwrap();
    }
    let span = store
        .unrecorded_handshakes(&flooded)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        span.first, span.last,
        "20 handshakes within one step leave the span's end where it was"
    );
}
