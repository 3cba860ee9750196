//! Pagination benchmark: walking 20 and 200 pages of 100 webhooks from a
//! local server with the SDK's stream, against a hand-written `reqwest`
//! loop over the same pages, measured in the same run (target: the SDK at
//! least 0.9 of the loop's throughput), and the peak heap during a walk
//! (target: no growth with the number of pages).
//!
//! Run with `cargo bench -p asana-webhooks --bench walk`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use asana_webhooks::Client;
use futures::TryStreamExt;

/// Counts heap bytes in use and their peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Peak heap growth over the baseline while `f` runs.
async fn peak_during<F: Future<Output = usize>>(f: F) -> (usize, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let items = f.await;
    (items, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// Pre-rendered pages: page `i` of `n` as the body Asana would send.
fn pages(n: usize) -> Arc<Vec<bytes::Bytes>> {
    let pages = (0..n)
        .map(|i| {
            let data: Vec<String> = (0..100)
                .map(|j| {
                    format!(
                        r#"{{"gid":"12{:014}","resource_type":"webhook","active":true,"resource":{{"gid":"1100000000000003","resource_type":"project","name":"Project {i}"}},"target":"https://hooks.example.com/asana/{i}/{j}"}}"#,
                        i * 100 + j
                    )
                })
                .collect();
            let next = if i + 1 < n {
                format!(
                    r#"{{"offset":"{0}","path":"/webhooks?limit=100&offset={0}","uri":"https://app.asana.com/api/1.0/webhooks?limit=100&offset={0}"}}"#,
                    i + 1
                )
            } else {
                "null".to_string()
            };
            bytes::Bytes::from(format!(r#"{{"data":[{}],"next_page":{next}}}"#, data.join(",")))
        })
        .collect();
    Arc::new(pages)
}

/// Serves the pages on its own thread and runtime; returns the base URL.
fn serve(pages: Arc<Vec<bytes::Bytes>>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/webhooks",
                axum::routing::get(move |query: axum::extract::RawQuery| {
                    let pages = Arc::clone(&pages);
                    async move {
                        let query = query.0.unwrap_or_default();
                        let offset = query
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("offset="))
                            .and_then(|o| o.parse::<usize>().ok())
                            .unwrap_or(0);
                        (
                            [("content-type", "application/json")],
                            pages[offset.min(pages.len() - 1)].clone(),
                        )
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

async fn sdk_walk(client: &Client) -> usize {
    let mut count = 0;
    let mut stream = std::pin::pin!(client.get_webhooks("1331").limit(100).into_stream());
    while let Some(webhook) = stream.try_next().await.unwrap() {
        count += black_box(webhook.gid.map_or(0, |g| g.len())).min(1);
    }
    count
}

#[derive(serde::Deserialize)]
struct RawPage {
    data: Vec<RawWebhook>,
    next_page: Option<RawNext>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct RawWebhook {
    gid: String,
    resource_type: String,
    active: bool,
    resource: serde_json::Value,
    target: String,
}

#[derive(serde::Deserialize)]
struct RawNext {
    offset: String,
}

async fn reqwest_walk(http: &reqwest::Client, base: &str) -> usize {
    let mut count = 0;
    let mut offset: Option<String> = None;
    loop {
        let mut request = http
            .get(format!("{base}/webhooks"))
            .bearer_auth("t")
            .query(&[("workspace", "1331"), ("limit", "100")]);
        if let Some(offset) = &offset {
            request = request.query(&[("offset", offset)]);
        }
        let page: RawPage = request.send().await.unwrap().json().await.unwrap();
        count += page
            .data
            .iter()
            .map(|w| black_box(w.gid.len()).min(1))
            .sum::<usize>();
        match page.next_page {
            Some(next) => offset = Some(next.offset),
            None => return count,
        }
    }
}

async fn compare(pages_count: usize) -> (f64, usize, usize) {
    let base = serve(pages(pages_count));
    let client = Client::builder()
        .token("t")
        .base_url(&base)
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    sdk_walk(&client).await;
    reqwest_walk(&http, &base).await;

    let rounds = if pages_count > 50 { 7 } else { 21 };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut sdk, mut loop_) = (Vec::new(), Vec::new());
    let (mut sdk_peak, mut loop_peak) = (0, 0);
    for _ in 0..rounds {
        if Instant::now() > deadline {
            break;
        }
        let start = Instant::now();
        let (items, peak) = peak_during(sdk_walk(&client)).await;
        sdk.push(start.elapsed().as_secs_f64());
        assert_eq!(items, pages_count * 100);
        sdk_peak = sdk_peak.max(peak);

        let start = Instant::now();
        let (items, peak) = peak_during(reqwest_walk(&http, &base)).await;
        loop_.push(start.elapsed().as_secs_f64());
        assert_eq!(items, pages_count * 100);
        loop_peak = loop_peak.max(peak);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (sdk_secs, loop_secs) = (median(&mut sdk), median(&mut loop_));
    let ratio = loop_secs / sdk_secs;
    println!(
        "{pages_count:>3} pages: sdk {:7.0} pages/s ({:8.0} webhooks/s); reqwest loop {:7.0} pages/s; ratio {ratio:.2} (target >= 0.9)",
        pages_count as f64 / sdk_secs,
        pages_count as f64 * 100.0 / sdk_secs,
        pages_count as f64 / loop_secs,
    );
    println!(
        "     peak heap during one walk: sdk {} KiB, reqwest loop {} KiB",
        sdk_peak / 1024,
        loop_peak / 1024
    );
    (ratio, sdk_peak, loop_peak)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench -p asana-webhooks --bench walk`");
        return;
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (small_ratio, small_sdk, small_loop) = runtime.block_on(compare(20));
    let (large_ratio, large_sdk, large_loop) = runtime.block_on(compare(200));
    println!(
        "\nsummary: sdk/reqwest throughput 20 pages {small_ratio:.2}, 200 pages {large_ratio:.2}; \
         peak heap 200/20 pages: sdk {:.2}, reqwest loop {:.2} (server allocations included, the same for both); took {:.0?}",
        large_sdk as f64 / small_sdk as f64,
        large_loop as f64 / small_loop as f64,
        started.elapsed()
    );
}
