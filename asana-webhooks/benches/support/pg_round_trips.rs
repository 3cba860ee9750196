//! Deliveries per second and database round trips per delivery of
//! PostgreSQL-backed receivers, with one and with two instances.
//!
//! Every connection an instance makes goes through a counting proxy on
//! 127.0.0.1: one for its secret store's URL, one for its inbox's. A round
//! trip is counted each time a client sends after the server last answered
//! (pipelined requests sent together count once). The inbox's count
//! includes the consumer that claims and acknowledges every event (read
//! once it has taken them all), and the inbox's own statistics queries.
//!
//! Run with `cargo bench -p asana-webhooks --bench receive --features
//! postgres -- --bench --pg-round-trips`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asana_webhooks::postgres::{self, PostgresInbox, PostgresSecretStore};
use asana_webhooks::receiver::Receiver;
use asana_webhooks::secrets::{SecretStore, StoredSecret, TargetKey};
use asana_webhooks::{HookSecret, signature};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP proxy to `upstream` that counts round trips.
struct CountingProxy {
    port: u16,
    round_trips: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(upstream: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&round_trips);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    // Whether the server spoke since the client last sent.
                    let answered = Arc::new(std::sync::atomic::AtomicBool::new(true));
                    let to_server = {
                        let answered = Arc::clone(&answered);
                        async move {
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                let n = match client_read.read(&mut buf).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                };
                                if answered.swap(false, Ordering::SeqCst) {
                                    counter.fetch_add(1, Ordering::Relaxed);
                                }
                                if server_write.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                            let _ = server_write.shutdown().await;
                        }
                    };
                    let to_client = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match server_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            answered.store(true, Ordering::SeqCst);
                            if client_write.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = client_write.shutdown().await;
                    };
                    tokio::join!(to_server, to_client);
                });
            }
        });
        Self { port, round_trips }
    }

    fn count(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }
}

/// `postgres://…@127.0.0.1:PORT/…` through `port` instead.
fn via(url: &str, port: u16) -> String {
    let (head, tail) = url.rsplit_once(':').expect("a port in the URL");
    let rest = tail.split_once('/').map_or("", |(_, rest)| rest);
    format!("{head}:{port}/{rest}")
}

fn upstream_port(url: &str) -> u16 {
    let tail = url.rsplit_once(':').unwrap().1;
    tail.split('/').next().unwrap().parse().unwrap()
}

/// One instance: a store and an inbox, each on its own proxy.
struct Instance {
    base: String,
    inbox: PostgresInbox,
    store_proxy: CountingProxy,
    inbox_proxy: CountingProxy,
}

async fn instance(url: &str, first: bool) -> Instance {
    let upstream = upstream_port(url);
    let store_proxy = CountingProxy::start(upstream).await;
    let inbox_proxy = CountingProxy::start(upstream).await;
    let store_url = via(url, store_proxy.port);
    let inbox_url = via(url, inbox_proxy.port);
    let pool = postgres::connect(&store_url).await.unwrap();
    postgres::migrate(&pool).await.unwrap();
    let store = PostgresSecretStore::new(pool);
    if first {
        store
            .save(StoredSecret::new(
                TargetKey::from_path_and_query("/hooks"),
                "0",
                HookSecret::new(super::SECRET),
            ))
            .await
            .unwrap();
    }
    let inbox_pool = postgres::connect(&inbox_url).await.unwrap();
    let inbox = PostgresInbox::new(inbox_pool, &inbox_url).unwrap();
    super::spawn_consumer(inbox.clone());
    let base =
        super::serve_receiver(Receiver::builder(store).build_with_inbox(inbox.clone())).await;
    Instance {
        base,
        inbox,
        store_proxy,
        inbox_proxy,
    }
}

/// Sends `count` signed deliveries with distinct events from `connections`
/// keep-alive connections spread over `urls`; returns deliveries per second.
async fn send(urls: &[String], first: usize, count: usize, connections: usize) -> f64 {
    let client = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    let secret = HookSecret::new(super::SECRET);
    let per_task = count / connections;
    let prepared: Vec<Vec<(bytes::Bytes, String)>> = (0..connections)
        .map(|task| {
            (0..per_task)
                .map(|i| {
                    let body = super::distinct_delivery(first + task * per_task + i);
                    let header = signature::sign(&secret, &body);
                    (bytes::Bytes::from(body), header)
                })
                .collect()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = Instant::now();
    let tasks: Vec<_> = prepared
        .into_iter()
        .enumerate()
        .map(|(task, requests)| {
            let (client, url) = (client.clone(), format!("{}/hooks", urls[task % urls.len()]));
            tokio::spawn(async move {
                let mut sent = 0usize;
                for (body, header) in requests {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let response = client
                        .post(&url)
                        .header("x-hook-signature", &header)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status().as_u16(), 200);
                    response.bytes().await.unwrap();
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        sent += task.await.unwrap();
    }
    sent as f64 / started.elapsed().as_secs_f64()
}

/// Waits until no event waits or is held (30 s at most).
async fn drained(inbox: &PostgresInbox) {
    use asana_webhooks::inbox::Inbox;
    for _ in 0..300 {
        let stats = inbox.stats().await.unwrap();
        if stats.waiting + stats.in_flight == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints deliveries/s and round trips per delivery for one and two
/// instances.
pub async fn measure() {
    let db = super::support::Postgres::start();
    let url = db.url();
    let a = instance(&url, true).await;
    let b = instance(&url, false).await;
    let (count, connections) = (4_000, 32);
    let mut offset = 3_000_000;
    for (name, instances) in [("1 instance ", vec![&a]), ("2 instances", vec![&a, &b])] {
        let urls: Vec<String> = instances.iter().map(|i| i.base.clone()).collect();
        // Warm: connections made, statements prepared, secrets read.
        send(&urls, offset, 512, connections).await;
        offset += 1_000;
        drained(&a.inbox).await;
        let before: Vec<(u64, u64)> = instances
            .iter()
            .map(|i| (i.store_proxy.count(), i.inbox_proxy.count()))
            .collect();
        let per_second = send(&urls, offset, count, connections).await;
        offset += count;
        // The consumers take and acknowledge everything committed (30 s at
        // most), so that their round trips are counted too.
        drained(&a.inbox).await;
        let (mut store, mut inbox) = (0, 0);
        for (i, (s, n)) in instances.iter().zip(before) {
            store += i.store_proxy.count() - s;
            inbox += i.inbox_proxy.count() - n;
        }
        let per = |n: u64| n as f64 / count as f64;
        println!(
            "PostgreSQL round trips, {name}: {per_second:8.0} deliveries/s; per delivery: secret store {:.2}, inbox {:.2} (with its consumer), total {:.2}",
            per(store),
            per(inbox),
            per(store + inbox)
        );
    }
}
