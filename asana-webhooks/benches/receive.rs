//! Receiving benchmarks, each reported as a ratio to a baseline measured in
//! the same run:
//!
//! 1. verify-and-decode throughput for 1 KiB and 256 KiB deliveries against
//!    bare HMAC-SHA256 of the same bytes (target: at least 0.8);
//! 2. verifying against several secrets of one target (webhooks sharing a
//!    URL, the matching secret tried last): the extra time against the extra
//!    bare HMACs it needs (target: about 1.0, no more than the HMACs);
//! 3. receiver requests per second on loopback (served by `Receiver::serve`,
//!    timeouts and connection limit included, as users run it) against a
//!    bare axum handler on `axum::serve` answering 200 to the same requests
//!    (target: at least 0.7), with one and with four secrets on the target;
//! 4. the durable receiver (every delivery committed to a `FileInbox`, with
//!    fsync, before the 200) against the in-memory receiver in the same run
//!    (target: at least 0.5), with p50/p99 time to the 200 (target: p99
//!    under 50 ms), 32 connections, 1 KiB deliveries; beside it, the
//!    consumption rate (events taken and acknowledged per second by
//!    `inbox::handle_each`, and one acknowledgement awaited at a time) from
//!    a `FileInbox` holding a backlog, as a ratio to the events the durable
//!    receiver accepted per second in the same run (target: at least 1, so
//!    that a backlog drains);
//! 5. with `--features postgres`: the PostgreSQL inbox with one and two
//!    receiver instances beside the embedded inbox, and its consumption
//!    rate against its accept rate.
//!
//! Run with `cargo bench -p asana-webhooks --bench receive`; name sections
//! after `--` to run only those (`verify`, `receiver`, `durable`,
//! `postgres`), e.g. `cargo bench -p asana-webhooks --bench receive --
//! durable`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use asana_webhooks::event::parse_delivery;
use asana_webhooks::inbox::{FileInbox, Inbox, MemoryInbox, VerifiedDelivery, handle_each};
use asana_webhooks::receiver::Receiver;
use asana_webhooks::secrets::{MemorySecretStore, SecretStore, StoredSecret, TargetKey};
use asana_webhooks::signature::Signature;
use asana_webhooks::{Delivery, HookSecret, signature};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81";

/// A delivery of realistic events, padded with events to about `size` bytes.
fn delivery_of_size(size: usize) -> Vec<u8> {
    let added = r#"{"user":{"gid":"1213537811762722","resource_type":"user"},"action":"added","parent":{"gid":"1211316915894850","resource_type":"section"},"resource":{"gid":"1234567890987654321","resource_type":"task","resource_subtype":"default_task"},"created_at":"2026-03-17T10:11:06.611Z"}"#;
    let changed = r#"{"user":{"gid":"1213537811762722","resource_type":"user"},"action":"changed","parent":null,"resource":{"gid":"1234567890987654321","resource_type":"task","resource_subtype":"default_task"},"created_at":"2026-03-17T10:11:07.002Z","change":{"field":"assignee","action":"changed","new_value":{"gid":"1213537811762722","resource_type":"user"}}}"#;
    let mut events = Vec::new();
    let mut len = r#"{"events":[]}"#.len();
    while len < size {
        let next = if events.len() % 2 == 0 {
            added
        } else {
            changed
        };
        len += next.len() + 1;
        events.push(next);
    }
    format!(r#"{{"events":[{}]}}"#, events.join(",")).into_bytes()
}

/// Median seconds per iteration over `rounds` rounds of `iterations`.
fn median_secs(rounds: usize, iterations: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_secs_f64() / iterations as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn verify_and_decode(size_name: &str, body: &[u8]) -> f64 {
    let secret = HookSecret::new(SECRET);
    let header = signature::sign(&secret, body);
    let iterations = (64 * 1024 * 1024 / body.len()).clamp(50, 50_000);
    let mb = body.len() as f64 / 1e6;

    let bare = median_secs(7, iterations, || {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(black_box(body));
        black_box(mac.finalize().into_bytes());
    });
    let verify = median_secs(7, iterations, || {
        signature::verify(&secret, black_box(body), Some(&header)).unwrap();
    });
    let decode = median_secs(7, iterations, || {
        black_box(serde_json::from_slice::<Delivery>(black_box(body)).unwrap());
    });
    let both = median_secs(7, iterations, || {
        signature::verify(&secret, black_box(body), Some(&header)).unwrap();
        black_box(serde_json::from_slice::<Delivery>(body).unwrap());
    });
    let parse_floor = median_secs(7, iterations, || {
        black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).unwrap());
    });
    // Four webhooks on the target, the delivery signed by the last one:
    // the receiver's own path (parse the header once, try each secret).
    let others: Vec<HookSecret> = (0..3)
        .map(|n| HookSecret::new(format!("{SECRET}{n}")))
        .collect();
    let one = median_secs(7, iterations, || {
        let parsed = Signature::from_header(Some(&header)).unwrap();
        parsed.verify(&secret, black_box(body)).unwrap();
        black_box(parse_delivery(body).unwrap());
    });
    let four = median_secs(7, iterations, || {
        let parsed = Signature::from_header(Some(&header)).unwrap();
        for other in &others {
            assert!(parsed.verify(other, black_box(body)).is_err());
        }
        parsed.verify(&secret, black_box(body)).unwrap();
        black_box(parse_delivery(body).unwrap());
    });
    println!(
        "    4 secrets on the target vs 1: extra {:.2} us per delivery for 3 extra HMACs of {:.2} us: ratio {:.2} (target about 1.0)",
        (four - one) * 1e6,
        3.0 * bare * 1e6,
        (four - one) / (3.0 * bare)
    );
    let ratio = bare / both;
    println!(
        "verify+decode {size_name:>7}: {:8.1} MB/s; bare HMAC {:8.1} MB/s; ratio {ratio:.2} (target >= 0.8)",
        mb / both,
        mb / bare
    );
    println!(
        "    verify only {:8.1} MB/s, decode only {:8.1} MB/s, JSON parse floor (IgnoredAny) {:8.1} MB/s",
        mb / verify,
        mb / decode,
        mb / parse_floor
    );
    ratio
}

/// Requests per second and the 50th and 99th percentile time to the answer.
#[derive(Clone, Copy, Debug, Default)]
struct Measured {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// Sends `count` signed POSTs from `connections` keep-alive connections;
/// returns requests per second. Bounded in count and in time (20 s).
async fn load(url: &str, body: &[u8], header: &str, count: usize, connections: usize) -> f64 {
    load_timed(url, &|_| body.to_vec(), header, count, connections)
        .await
        .per_second
}

/// Like [`load`], with a body per request (`body(n)`, signed with
/// `header` when it is not empty, else with the benchmark secret), and
/// with latency percentiles.
async fn load_timed(
    url: &str,
    body: &(dyn Fn(usize) -> Vec<u8> + Sync),
    header: &str,
    count: usize,
    connections: usize,
) -> Measured {
    load_spread(&[url], body, header, count, connections).await
}

/// Like [`load_timed`], the connections spread over several receivers
/// (connection `i` to `urls[i % urls.len()]`), as a load balancer would.
async fn load_spread(
    urls: &[&str],
    body: &(dyn Fn(usize) -> Vec<u8> + Sync),
    header: &str,
    count: usize,
    connections: usize,
) -> Measured {
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let per_task = count / connections;
    // Bodies are made before the clock starts.
    let prepared: Vec<Vec<(bytes::Bytes, String)>> = (0..connections)
        .map(|task| {
            (0..per_task)
                .map(|i| {
                    let bytes = body(task * per_task + i);
                    let signature = if header.is_empty() {
                        signature::sign(&HookSecret::new(SECRET), &bytes)
                    } else {
                        header.to_string()
                    };
                    (bytes::Bytes::from(bytes), signature)
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = prepared
        .into_iter()
        .enumerate()
        .map(|(task, requests)| {
            let (client, url) = (client.clone(), urls[task % urls.len()].to_string());
            tokio::spawn(async move {
                let mut times = Vec::with_capacity(requests.len());
                for (body, signature) in requests {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("x-hook-signature", &signature)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status().as_u16(), 200);
                    response.bytes().await.unwrap();
                    times.push(sent.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    times.sort_unstable();
    let percentile = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    Measured {
        per_second: times.len() as f64 / elapsed,
        p50: percentile(0.5),
        p99: percentile(0.99),
    }
}

/// Deliveries with distinct events (so that none is dropped as a repeat).
fn distinct_delivery(n: usize) -> Vec<u8> {
    let template = String::from_utf8(delivery_of_size(1024)).unwrap();
    template
        .replace("1234567890987654321", &format!("{n:019}"))
        .into_bytes()
}

/// Takes and acknowledges every event, as an application would.
fn spawn_consumer(inbox: impl Inbox) {
    tokio::spawn(async move {
        while let Some(item) = inbox.next().await {
            let _ = item.ack().await;
        }
    });
}

/// How events are taken and acknowledged in [`consumption`].
#[derive(Clone, Copy)]
enum Consumer {
    /// `inbox::handle_each`, as an application would.
    HandleEach,
    /// `next()` then `ack().await`, one event at a time.
    OneAtATime,
}

/// Events taken and acknowledged per second from `inbox`, which is first
/// filled with `count` distinct events (1 KiB deliveries, appended 32 at a
/// time); the clock runs from the first take to the last acknowledgement
/// committed. Bounded to 20 s.
async fn consumption<I: Inbox>(inbox: I, count: usize, consumer: Consumer, offset: usize) -> f64 {
    let target = TargetKey::from_path_and_query("/hooks");
    let mut appended = 0;
    let mut n = offset;
    while appended < count {
        let deliveries: Vec<_> = (0..32)
            .map(|_| {
                n += 1;
                VerifiedDelivery::from_body(target.clone(), Some("0".into()), &distinct_delivery(n))
                    .unwrap()
            })
            .collect();
        for result in
            futures::future::join_all(deliveries.into_iter().map(|d| inbox.append(d))).await
        {
            appended += result.unwrap().added;
        }
    }
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(20);
    let consuming = {
        let (inbox, handled) = (inbox.clone(), handled.clone());
        tokio::spawn(async move {
            match consumer {
                Consumer::HandleEach => {
                    handle_each(inbox, async move |item| {
                        black_box(item.raw());
                        handled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok::<(), std::convert::Infallible>(())
                    })
                    .await
                }
                Consumer::OneAtATime => {
                    while let Some(item) = inbox.next().await {
                        black_box(item.raw());
                        item.ack().await.unwrap();
                        handled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        })
    };
    while handled.load(std::sync::atomic::Ordering::SeqCst) < appended && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Closing lets the consumer finish what it acknowledged: the clock stops
    // once every acknowledgement is committed.
    inbox.close();
    consuming.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    handled.load(std::sync::atomic::Ordering::SeqCst) as f64 / elapsed
}

/// Events in one of the benchmark's 1 KiB deliveries.
fn events_per_delivery() -> usize {
    VerifiedDelivery::from_body(
        TargetKey::from_path_and_query("/"),
        None,
        &distinct_delivery(0),
    )
    .unwrap()
    .events
    .len()
}

/// A store holding the benchmark's secret for `/hooks`.
async fn bench_store() -> MemorySecretStore {
    let store = MemorySecretStore::new();
    let key = TargetKey::from_path_and_query("/hooks");
    store
        .save(StoredSecret::new(key, "0", HookSecret::new(SECRET)))
        .await
        .unwrap();
    store
}

/// The in-memory and the durable receiver, 1 KiB deliveries, 32 connections.
async fn durable_throughput() -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store = bench_store().await;
    let memory_inbox = MemoryInbox::new();
    let memory =
        serve_receiver(Receiver::builder(store.clone()).build_with_inbox(memory_inbox.clone()))
            .await;
    let file_inbox = FileInbox::open(dir.path().join("bench.redb"))
        .await
        .unwrap();
    let durable =
        serve_receiver(Receiver::builder(store).build_with_inbox(file_inbox.clone())).await;
    // Consumers acknowledge as they go, as an application would.
    spawn_consumer(memory_inbox);
    spawn_consumer(file_inbox);
    let (count, connections) = (6_000, 32);
    let mut best = (Measured::default(), Measured::default());
    for round in 0..2 {
        let offset = round * 2 * count;
        let m = load_timed(
            &format!("{memory}/hooks"),
            &|n| distinct_delivery(offset + n),
            "",
            count,
            connections,
        )
        .await;
        let d = load_timed(
            &format!("{durable}/hooks"),
            &|n| distinct_delivery(offset + count + n),
            "",
            count,
            connections,
        )
        .await;
        if m.per_second > best.0.per_second {
            best.0 = m;
        }
        if d.per_second > best.1.per_second {
            best.1 = d;
        }
    }
    let (m, d) = best;
    let ratio = d.per_second / m.per_second;
    println!(
        "durable receiver (FileInbox, fsync per group commit): {:8.0} deliveries/s, p50 {:.2?}, p99 {:.2?}",
        d.per_second, d.p50, d.p99
    );
    println!(
        "in-memory receiver (MemoryInbox):                     {:8.0} deliveries/s, p50 {:.2?}, p99 {:.2?}",
        m.per_second, m.p50, m.p99
    );
    println!(
        "durable/in-memory {ratio:.2} (target >= 0.5); durable p99 {:.2?} (target < 50 ms)",
        d.p99
    );
    let accepted = d.per_second * events_per_delivery() as f64;
    let mut consumed = 0.0;
    for (name, consumer) in [
        ("handle_each", Consumer::HandleEach),
        ("next + ack, one at a time", Consumer::OneAtATime),
    ] {
        let inbox = FileInbox::open(dir.path().join(format!("consume-{name}.redb")))
            .await
            .unwrap();
        let rate = consumption(inbox, 4_000, consumer, 10_000_000).await;
        if consumed == 0.0 {
            consumed = rate;
        }
        println!(
            "consumption from FileInbox ({name}): {rate:8.0} events/s; accepted {accepted:8.0} events/s: ratio {:.2}",
            rate / accepted
        );
    }
    println!(
        "FileInbox consumption (handle_each)/acceptance {:.2} (target >= 1)",
        consumed / accepted
    );
    ratio
}

/// Serves a bare axum app (the baseline) on a free port.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Serves a receiver on a free port with `Receiver::serve`, the server the
/// crate ships (timeouts, connection limit), as users run it.
async fn serve_receiver<S: SecretStore>(receiver: Receiver<S>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(receiver.serve(listener, std::future::pending()));
    format!("http://{addr}")
}

/// A receiver whose target has `secrets` webhooks, the one that signs the
/// benchmark's deliveries saved last.
async fn receiver_with_secrets(secrets: usize) -> String {
    let store = MemorySecretStore::new();
    let key = TargetKey::from_path_and_query("/hooks");
    for n in 1..secrets {
        let other = HookSecret::new(format!("{SECRET}{n}"));
        store
            .save(StoredSecret::new(key.clone(), n.to_string(), other))
            .await
            .unwrap();
    }
    store
        .save(StoredSecret::new(key, "0", HookSecret::new(SECRET)))
        .await
        .unwrap();
    let (receiver, mut notifications) = Receiver::builder(store).queue_capacity(65_536).build();
    tokio::spawn(async move { while notifications.recv().await.is_some() {} });
    serve_receiver(receiver).await
}

async fn receiver_throughput() -> f64 {
    let body = delivery_of_size(1024);
    let secret = HookSecret::new(SECRET);
    let header = signature::sign(&secret, &body);
    let sdk = receiver_with_secrets(1).await;
    let sdk_four = receiver_with_secrets(4).await;

    let bare_app = axum::Router::new().fallback(|body: axum::body::Bytes| async move {
        black_box(body);
        axum::http::StatusCode::OK
    });
    let bare = serve(bare_app).await;

    let (count, connections) = (20_000, 32);
    let (mut best_sdk, mut best_bare, mut best_four) = (0f64, 0f64, 0f64);
    let _warm = load(&format!("{bare}/hooks"), &body, &header, 2_000, connections).await;
    for _ in 0..2 {
        best_sdk =
            best_sdk.max(load(&format!("{sdk}/hooks"), &body, &header, count, connections).await);
        best_four = best_four.max(
            load(
                &format!("{sdk_four}/hooks"),
                &body,
                &header,
                count,
                connections,
            )
            .await,
        );
        best_bare =
            best_bare.max(load(&format!("{bare}/hooks"), &body, &header, count, connections).await);
    }
    let ratio = best_sdk / best_bare;
    println!(
        "receiver (1 KiB, {connections} connections): {best_sdk:8.0} req/s; bare axum {best_bare:8.0} req/s; ratio {ratio:.2} (target >= 0.7)"
    );
    println!(
        "receiver with 4 secrets on the target: {best_four:8.0} req/s; {:.2} of one secret, {:.2} of bare axum",
        best_four / best_sdk,
        best_four / best_bare
    );
    ratio
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep it quick then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench -p asana-webhooks --bench receive`");
        return;
    }
    #[cfg(feature = "postgres")]
    if std::env::args().any(|a| a == "--pg-round-trips") {
        // Only the PostgreSQL round-trip measurement (support/pg_round_trips.rs).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(pg_round_trips::measure());
        return;
    }
    // Section names after `--bench` (and its flags) pick what runs.
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    let started = Instant::now();
    let mut summary = Vec::new();
    if wanted("verify") {
        let small = verify_and_decode("1 KiB", &delivery_of_size(1024));
        let large = verify_and_decode("256 KiB", &delivery_of_size(256 * 1024));
        summary.push(format!(
            "verify+decode/HMAC 1 KiB {small:.2}, 256 KiB {large:.2}"
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if wanted("receiver") {
        let served = runtime.block_on(receiver_throughput());
        summary.push(format!("receiver/bare axum {served:.2}"));
    }
    if wanted("durable") {
        let durable = runtime.block_on(durable_throughput());
        summary.push(format!("durable/in-memory {durable:.2}"));
    }
    #[cfg(feature = "postgres")]
    if wanted("postgres") {
        runtime.block_on(postgres_throughput());
    }
    println!(
        "\nsummary: {}; took {:.0?}",
        summary.join("; "),
        started.elapsed()
    );
}

#[cfg(feature = "postgres")]
#[path = "../tests/support/postgres.rs"]
mod support;

#[cfg(feature = "postgres")]
#[path = "support/pg_round_trips.rs"]
mod pg_round_trips;

/// The PostgreSQL inbox with one and with two receiver instances (each its
/// own pool and server, in this process), beside the embedded inbox, in
/// one run. Run with `--features postgres`; needs PostgreSQL's server
/// binaries (the distribution's `postgresql` package).
#[cfg(feature = "postgres")]
async fn postgres_throughput() {
    use asana_webhooks::postgres::{self, PostgresInbox, PostgresSecretStore};
    let db = support::Postgres::start();
    let url = db.url();
    let (mut instances, mut inboxes) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let pool = postgres::connect(&url).await.unwrap();
        postgres::migrate(&pool).await.unwrap();
        let store = PostgresSecretStore::new(pool.clone());
        if instances.is_empty() {
            store
                .save(StoredSecret::new(
                    TargetKey::from_path_and_query("/hooks"),
                    "0",
                    HookSecret::new(SECRET),
                ))
                .await
                .unwrap();
        }
        let inbox = PostgresInbox::new(pool, &url).unwrap();
        spawn_consumer(inbox.clone());
        inboxes.push(inbox.clone());
        instances.push(serve_receiver(Receiver::builder(store).build_with_inbox(inbox)).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = bench_store().await;
    let file_inbox = FileInbox::open(dir.path().join("bench.redb"))
        .await
        .unwrap();
    spawn_consumer(file_inbox.clone());
    let embedded = serve_receiver(Receiver::builder(store).build_with_inbox(file_inbox)).await;

    let (count, connections) = (4_000, 32);
    let one = [format!("{}/hooks", instances[0])];
    let two = [
        format!("{}/hooks", instances[0]),
        format!("{}/hooks", instances[1]),
    ];
    let file = [format!("{embedded}/hooks")];
    let mut results = Vec::new();
    for (round, (name, urls)) in [
        ("embedded FileInbox", &file[..]),
        ("PostgreSQL, 1 instance", &one[..]),
        ("PostgreSQL, 2 instances", &two[..]),
    ]
    .into_iter()
    .enumerate()
    {
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        let offset = 1_000_000 + round * count;
        let m = load_spread(
            &urls,
            &|n| distinct_delivery(offset + n),
            "",
            count,
            connections,
        )
        .await;
        println!(
            "{name:<24} {:8.0} deliveries/s, p50 {:.2?}, p99 {:.2?}",
            m.per_second, m.p50, m.p99
        );
        results.push(m.per_second);
    }
    println!(
        "PostgreSQL/embedded: 1 instance {:.2}, 2 instances {:.2}",
        results[1] / results[0],
        results[2] / results[0]
    );
    let accepted = results[1] * events_per_delivery() as f64;
    // The instances' consumers stop, so that only the measured one takes.
    for inbox in &inboxes {
        inbox.close();
    }
    for (round, (name, consumer)) in [
        ("handle_each", Consumer::HandleEach),
        ("next + ack, one at a time", Consumer::OneAtATime),
    ]
    .into_iter()
    .enumerate()
    {
        // A fresh inbox whose only consumer is the one measured.
        let pool = postgres::connect(&url).await.unwrap();
        let inbox = PostgresInbox::new(pool, &url).unwrap();
        let rate = consumption(inbox, 4_000, consumer, 20_000_000 + round * 100_000).await;
        println!(
            "consumption from PostgresInbox ({name}): {rate:8.0} events/s; accepted (1 instance) {accepted:8.0} events/s: ratio {:.2}",
            rate / accepted
        );
    }
}
