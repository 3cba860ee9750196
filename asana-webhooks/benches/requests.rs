//! Per-request overhead: `client.get_webhook(gid).opt_fields([Active,
//! Filters]).send()` against a hand-written `reqwest` request to the same
//! local server decoding into `serde_json::Value`, sequentially and with 32
//! requests in flight, over 16 rounds of 1,000 requests in one run. Each
//! round measures every side back to back, in an order rotated from round to
//! round so that no side always runs on a warmer or busier machine; a
//! round's ratio compares neighbours in time, and the summary gives the
//! median and quartiles of the rounds' ratios (target: the SDK at 1.0 or
//! more of raw reqwest).
//!
//! Run with `cargo bench -p asana-webhooks --bench requests`. Add
//! `-- --breakdown` to also measure the SDK without its timeout and without
//! retries and concurrency limits (where the time goes), and
//! `-- --only NAME [--in-flight N]` (`raw` or a variant's name) to run
//! one side alone, for a profiler.

use std::hint::black_box;
use std::time::{Duration, Instant};

use asana_webhooks::Client;
use asana_webhooks::types::WebhookOptField;
use futures::StreamExt;

const GID: &str = "1204519866405712";
const REQUESTS: usize = 1_000;
const ROUNDS: usize = 16;

/// A webhook as Asana answers getWebhook with two opt_fields.
const BODY: &str = r#"{"data":{"gid":"1204519866405712","resource_type":"webhook","active":true,"resource":{"gid":"1100000000000003","resource_type":"project","name":"Launch plan"},"target":"https://hooks.example.com/asana/launch","filters":[{"resource_type":"task","resource_subtype":"milestone","action":"changed","fields":["due_on","assignee"]},{"resource_type":"project","action":"added"}]}}"#;

async fn server() -> String {
    let app = axum::Router::new().route(
        "/webhooks/{gid}",
        axum::routing::get(|| async {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                BODY,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn sdk_one(client: &Client) {
    let webhook = client
        .get_webhook(GID)
        .opt_fields([WebhookOptField::Active, WebhookOptField::Filters])
        .send()
        .await
        .unwrap();
    black_box(webhook);
}

async fn raw_one(http: &reqwest::Client, url: &str) {
    let value: serde_json::Value = http
        .get(url)
        .header("authorization", "Bearer 0/bench")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    black_box(value);
}

/// Requests per second for `REQUESTS` calls of `one`, `in_flight` at once.
async fn rate<F: Future<Output = ()>>(in_flight: usize, one: impl Fn() -> F) -> f64 {
    let start = Instant::now();
    futures::stream::iter(0..REQUESTS)
        .map(|_| one())
        .buffer_unordered(in_flight)
        .collect::<Vec<()>>()
        .await;
    REQUESTS as f64 / start.elapsed().as_secs_f64()
}

/// A client variant measured against raw reqwest.
struct Variant {
    name: &'static str,
    client: Client,
}

fn variants(base: &str) -> Vec<Variant> {
    let builder = || {
        Client::builder()
            .token("0/bench")
            .base_url(base)
            .timeout(Duration::from_secs(10))
    };
    let mut variants = vec![Variant {
        name: "sdk",
        client: builder().build().unwrap(),
    }];
    if std::env::args().any(|a| a == "--breakdown") {
        variants.push(Variant {
            name: "sdk, no timeout",
            client: builder()
                .reqwest_client(reqwest::Client::new())
                .build()
                .unwrap(),
        });
        variants.push(Variant {
            name: "sdk, no retry or limits",
            client: builder()
                .retry_policy(asana_webhooks::RetryPolicy::none())
                .max_concurrent_reads(None)
                .build()
                .unwrap(),
        });
    }
    variants
}

/// The median of sorted values.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    (sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("run with `cargo bench -p asana-webhooks --bench requests`");
        return;
    }
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let base = server().await;
        if std::env::var_os("KEEPER").is_some() {
            tokio::spawn(async {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        let variants = variants(&base);
        let http = reqwest::Client::new();
        let url = format!("{base}/webhooks/{GID}?opt_fields=active,filters");
        // Warm every connection pool.
        rate(32, || raw_one(&http, &url)).await;
        for variant in &variants {
            rate(32, || sdk_one(&variant.client)).await;
        }
        if let Some(side) = only {
            // One side alone, sequential, for a profiler: five batches, so
            // that the warm-up above is small beside them.
            let in_flight = args
                .iter()
                .position(|a| a == "--in-flight")
                .and_then(|i| args.get(i + 1)?.parse().ok())
                .unwrap_or(1);
            for _ in 0..5 {
                let per_s = match variants.iter().find(|v| v.name == side) {
                    Some(v) => rate(in_flight, || sdk_one(&v.client)).await,
                    None => rate(in_flight, || raw_one(&http, &url)).await,
                };
                println!("{side} alone: {per_s:.0} req/s");
            }
            return;
        }
        for in_flight in [1, 32] {
            let mut ratios = vec![Vec::new(); variants.len()];
            let mut raw_rates = Vec::new();
            for round in 0..ROUNDS {
                // Rotate the order so that no side always runs first.
                let sides = variants.len() + 1;
                let mut rates = vec![0.0; sides];
                for k in 0..sides {
                    let side = (round + k) % sides;
                    rates[side] = match variants.get(side) {
                        Some(v) => rate(in_flight, || sdk_one(&v.client)).await,
                        None => rate(in_flight, || raw_one(&http, &url)).await,
                    };
                }
                let raw = rates[sides - 1];
                raw_rates.push(raw);
                for (n, rate) in rates.iter().take(variants.len()).enumerate() {
                    ratios[n].push(rate / raw);
                }
            }
            raw_rates.sort_by(f64::total_cmp);
            println!(
                "{in_flight:>2} in flight: raw reqwest median {:.0} req/s",
                median(&raw_rates)
            );
            for (variant, ratios) in variants.iter().zip(&mut ratios) {
                ratios.sort_by(f64::total_cmp);
                println!(
                    "{in_flight:>2} in flight: {:<24} / raw reqwest: median {:.3}, quartiles {:.3}..{:.3}, range {:.2}..{:.2} (target >= 1.0)",
                    variant.name,
                    median(ratios),
                    ratios[ROUNDS / 4],
                    ratios[ROUNDS - 1 - ROUNDS / 4],
                    ratios[0],
                    ratios[ROUNDS - 1],
                );
            }
        }
    });
}
