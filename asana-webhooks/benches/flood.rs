//! The receiver under attack, against the same receiver left alone, in one
//! run: 1,000 genuine deliveries to one target and a genuine registration
//! (open, handshake, confirm) on another, while attackers with no secret
//! send 10,000 forged handshakes to a target whose registration is open
//! and 1 MiB POSTs signed with garbage. Reported: the genuine deliveries'
//! p50/p99 time to the 200 and the process's CPU time, flood against
//! no flood, and what the attackers got.
//!
//! The attack comes from 127.0.0.2 and Asana from 127.0.0.1, as they would
//! from different hosts. Every loop is bounded in count and in time.
//!
//! Run with `cargo bench -p asana-webhooks --bench flood`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use asana_webhooks::HookSecret;
use asana_webhooks::inbox::{Inbox, MemoryInbox};
use asana_webhooks::receiver::Receiver;
use asana_webhooks::secrets::{MemorySecretStore, SecretStore, StoredSecret, TargetKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81";
const GENUINE: usize = 1_000;
const FORGED_HANDSHAKES: usize = 10_000;
const GARBAGE_POSTS: usize = 200;
const LIMIT: Duration = Duration::from_secs(120);

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn delivery(n: usize) -> Vec<u8> {
    format!(
        r#"{{"events":[{{"action":"changed","resource":{{"gid":"{n}","resource_type":"task"}},"created_at":"2026-03-17T10:11:06.611Z","user":null,"parent":null}}]}}"#
    )
    .into_bytes()
}

/// The receiver runs on threads of its own, named so that their CPU time
/// can be told from the clients' (Asana's and the attackers').
const RECEIVER_THREADS: &str = "flood-receiver";

/// User plus system CPU time of the receiver's threads so far (Linux).
fn receiver_cpu_time() -> Duration {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != RECEIVER_THREADS {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime: fields 14 and 15 of the line, 11 and 12 after the name.
        ticks += field(11) + field(12);
    }
    // The kernel counts in USER_HZ ticks, 100 a second on Linux.
    Duration::from_millis(ticks * 10)
}

struct Outcome {
    p50: Duration,
    p99: Duration,
    cpu: Duration,
    registration: Duration,
    forged_answered: u64,
    forged_refused: u64,
    garbage_answered: u64,
}

fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::from(ip)))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

async fn run(flood: bool) -> Outcome {
    let store = MemorySecretStore::new();
    let genuine = TargetKey::from_path_and_query("/hooks/genuine");
    store
        .save(StoredSecret::new(
            genuine.clone(),
            "1",
            HookSecret::new(SECRET),
        ))
        .await
        .expect("saved");
    let attacked = TargetKey::from_path_and_query("/hooks/attacked");
    let inbox = MemoryInbox::new();
    let consumer = inbox.clone();
    tokio::spawn(async move {
        while let Some(item) = consumer.next().await {
            let _ = item.ack().await;
        }
    });
    let receiver = Receiver::builder(store.clone()).build_with_inbox(inbox);
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bound");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("an address").port();
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(RECEIVER_THREADS)
        .enable_all()
        .build()
        .expect("the receiver's runtime");
    server.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
        receiver.serve(listener, std::future::pending()).await
    });
    let base = format!("http://127.0.0.1:{port}/hooks");

    // The attackers' registration window is open for the whole run.
    let window = store
        .open_registration(&attacked, LIMIT)
        .await
        .expect("opened");
    let stop = Arc::new(AtomicBool::new(false));
    let (forged_answered, forged_refused, garbage_answered) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut attackers = Vec::new();
    if flood {
        let attacker = client_from([127, 0, 0, 2]);
        let attack_base = format!("http://127.0.0.2:{port}/hooks");
        for lane in 0..16 {
            let (http, url, stop) = (
                attacker.clone(),
                format!("{attack_base}/attacked"),
                stop.clone(),
            );
            let (ok, refused) = (forged_answered.clone(), forged_refused.clone());
            attackers.push(tokio::spawn(async move {
                for n in (lane..FORGED_HANDSHAKES).step_by(16) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let secret = format!("{n:064x}");
                    match http.post(&url).header("X-Hook-Secret", secret).send().await {
                        Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                        _ => refused.fetch_add(1, Ordering::Relaxed),
                    };
                }
            }));
        }
        let garbage = Arc::new(vec![b'x'; 1 << 20]);
        for lane in 0..4 {
            let (http, stop, garbage) = (attacker.clone(), stop.clone(), garbage.clone());
            let urls = [
                format!("{attack_base}/attacked"),
                format!("{attack_base}/genuine"),
            ];
            let answered = garbage_answered.clone();
            attackers.push(tokio::spawn(async move {
                for n in (lane..GARBAGE_POSTS).step_by(4) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sent = http
                        .post(&urls[n % 2])
                        .header("X-Hook-Signature", "0".repeat(64))
                        .body(garbage.as_ref().clone())
                        .send()
                        .await;
                    if sent.is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        // Let the flood build up before Asana's traffic starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let cpu_before = receiver_cpu_time();
    let started = Instant::now();
    // A genuine registration on a third target, through the receiver.
    let asana = client_from([127, 0, 0, 1]);
    let registered = TargetKey::from_path_and_query("/hooks/registered");
    let registration = store
        .open_registration(&registered, Duration::from_secs(60))
        .await
        .expect("opened");
    let echoed = asana
        .post(format!("{base}/registered"))
        .header("X-Hook-Secret", "a".repeat(64))
        .send()
        .await
        .expect("answered");
    assert!(
        echoed.status().is_success(),
        "the genuine handshake: {}",
        echoed.status()
    );
    let record = StoredSecret::new(registered, "2", HookSecret::new("a".repeat(64)));
    assert!(
        store
            .confirm(&registration, record)
            .await
            .expect("confirmed")
    );
    let registration_took = started.elapsed();

    // Asana's deliveries: 8 at a time, each timed to its 200.
    let mut latencies = Vec::with_capacity(GENUINE);
    let mut lanes = Vec::new();
    for lane in 0..8 {
        let (http, url) = (asana.clone(), format!("{base}/genuine"));
        lanes.push(tokio::spawn(async move {
            let mut times = Vec::new();
            for n in (lane..GENUINE).step_by(8) {
                let body = delivery(n);
                let signature = sign(SECRET, &body);
                let sent = Instant::now();
                loop {
                    let response = http
                        .post(&url)
                        .header("X-Hook-Signature", &signature)
                        .body(body.clone())
                        .send()
                        .await;
                    if response.is_ok_and(|r| r.status().is_success()) {
                        break;
                    }
                    assert!(
                        sent.elapsed() < LIMIT,
                        "a genuine delivery never got its 200"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                times.push(sent.elapsed());
            }
            times
        }));
    }
    for lane in lanes {
        latencies.extend(lane.await.expect("a lane"));
    }
    let cpu = receiver_cpu_time().saturating_sub(cpu_before);
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        let _ = tokio::time::timeout(Duration::from_secs(30), attacker).await;
    }
    let _ = store.close_registration(&window).await;
    server.shutdown_background();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Outcome {
        p50: at(0.50),
        p99: at(0.99),
        cpu,
        registration: registration_took,
        forged_answered: forged_answered.load(Ordering::Relaxed),
        forged_refused: forged_refused.load(Ordering::Relaxed),
        garbage_answered: garbage_answered.load(Ordering::Relaxed),
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let alone = runtime.block_on(run(false));
    let flooded = runtime.block_on(run(true));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "flood: {GENUINE} genuine deliveries (8 at a time) and one genuine registration; receiver CPU measured on its own threads"
    );
    println!(
        "  alone:   p50 {:.2} ms, p99 {:.2} ms, CPU {:.0} ms, registration {:.1} ms",
        ms(alone.p50),
        ms(alone.p99),
        ms(alone.cpu),
        ms(alone.registration)
    );
    println!(
        "  flooded: p50 {:.2} ms, p99 {:.2} ms, CPU {:.0} ms, registration {:.1} ms",
        ms(flooded.p50),
        ms(flooded.p99),
        ms(flooded.cpu),
        ms(flooded.registration)
    );
    println!(
        "  attackers meanwhile: {} forged handshakes answered, {} refused or cut off, {} garbage POSTs of 1 MiB answered",
        flooded.forged_answered, flooded.forged_refused, flooded.garbage_answered
    );
    println!(
        "  ratios flooded/alone: p99 {:.2}, p50 {:.2}, CPU {:.2}",
        ms(flooded.p99) / ms(alone.p99).max(1e-6),
        ms(flooded.p50) / ms(alone.p50).max(1e-6),
        ms(flooded.cpu) / ms(alone.cpu).max(1e-6)
    );
}
