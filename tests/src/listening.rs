//! A receiver served on a fixed address and stopped again, as a listener
//! process that goes down and comes back would be, and a client of a
//! sandbox: what the self-healing and catch-up tests share.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use asana_webhooks::inbox::Inbox;
use asana_webhooks::receiver::Receiver;
use asana_webhooks::sandbox::Sandbox;
use asana_webhooks::secrets::SecretStore;
use asana_webhooks::{Client, RetryPolicy};
use tokio::sync::oneshot;

/// The longest a step of these tests may take, in real time.
pub const LIMIT: Duration = Duration::from_secs(90);

/// A client of `sandbox`, without retries (each request counts once).
pub fn sandbox_client(sandbox: &Sandbox) -> Client {
    Client::builder()
        .token("sandbox")
        .base_url(sandbox.base_url())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap()
}

/// A receiver serving until [`Listening::stop`].
pub struct Listening {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves a receiver of `store` and `inbox` on `addr` (which the previous
/// listener may have just released: bounded retries).
pub async fn listen<S: SecretStore, I: Inbox>(addr: SocketAddr, store: S, inbox: I) -> Listening {
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("bind {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot bind {addr} again: {e}"),
        }
    };
    let receiver = Receiver::builder(store).build_with_inbox(inbox);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(receiver.serve(listener, async {
        let _ = stopped.await;
    }));
    Listening { stop, task }
}

impl Listening {
    /// Stops accepting, answers what is in flight, and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("the listener stops")
            .unwrap()
            .unwrap();
    }
}

/// An address on 127.0.0.1 that was free a moment ago.
pub async fn free_addr() -> SocketAddr {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    probe.local_addr().unwrap()
}

/// Waits (at most [`LIMIT`]) until `done` says yes.
pub async fn until<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < LIMIT, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
