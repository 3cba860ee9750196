//! Per-request overhead: `client.get_webhook(gid).opt_fields([Active,
//! Filters]).send()` against a hand-written `reqwest` request to the same
//! local server decoding into `serde_json::Value`, sequentially and with 32
//! requests in flight, over 4 rounds of 3,000 requests in one run, the
//! order flipped every round (A B, B A, …) so that neither side always runs
//! on a warmer machine (target: the SDK at 1.0 or more of raw reqwest).
//!
//! Run with `cargo bench -p asana-webhooks --bench requests`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use asana_webhooks::Client;
use asana_webhooks::types::WebhookOptField;
use futures::StreamExt;

const GID: &str = "1204519866405712";
const REQUESTS: usize = 3_000;
const ROUNDS: usize = 4;

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

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench -p asana-webhooks --bench requests`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let base = server().await;
        let client = Client::builder()
            .token("0/bench")
            .base_url(&base)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let http = reqwest::Client::new();
        let url = format!("{base}/webhooks/{GID}?opt_fields=active,filters");
        // Warm both connection pools.
        rate(32, || raw_one(&http, &url)).await;
        rate(32, || sdk_one(&client)).await;
        for in_flight in [1, 32] {
            let mut ratios = Vec::new();
            for round in 0..ROUNDS {
                let (sdk, raw) = if round % 2 == 0 {
                    let sdk = rate(in_flight, || sdk_one(&client)).await;
                    (sdk, rate(in_flight, || raw_one(&http, &url)).await)
                } else {
                    let raw = rate(in_flight, || raw_one(&http, &url)).await;
                    (rate(in_flight, || sdk_one(&client)).await, raw)
                };
                println!(
                    "{in_flight:>2} in flight, round {round}: sdk {sdk:8.0} req/s, raw reqwest {raw:8.0} req/s, ratio {:.2}",
                    sdk / raw
                );
                ratios.push(sdk / raw);
            }
            ratios.sort_by(f64::total_cmp);
            println!(
                "{in_flight:>2} in flight: sdk/raw reqwest {:.2}..{:.2}, median {:.2} (target >= 1.0)",
                ratios[0],
                ratios[ROUNDS - 1],
                (ratios[ROUNDS / 2 - 1] + ratios[ROUNDS / 2]) / 2.0
            );
        }
    });
}
