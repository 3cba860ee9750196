//! Liveness and readiness, for probes (Kubernetes, load balancers).
//!
//! [`Receiver::health_router`] answers two paths:
//!
//! | path | 200 | 503 |
//! |---|---|---|
//! | `GET /livez` | `{"status":"live"}`: the probe was answered, and the receiver's [`serve`](Receiver::serve) loop, if one was started, still runs | `{"status":"not live","reason":…}`: every serve loop has ended (stopped or panicked) |
//! | `GET /readyz` | `{"status":"ready"}`: the secret store is reachable and the inbox takes commits ([`SecretStore::check_ready`], [`Inbox::check_ready`](crate::inbox::Inbox::check_ready)) | `{"status":"not ready","component":…,"reason":…}`: the first check that failed or took longer than [`DEFAULT_PROBE_TIMEOUT`] |
//!
//! Serve it on a listener of its own (`asana-webhooks listen
//! --metrics-addr` serves it beside `/metrics`), never under the
//! receiver's router: every path and query the receiver answers can be a
//! webhook's target (whatever URL the webhook was created with), so no
//! path there can be set aside without possibly taking one a webhook
//! already delivers to; and a port of its own can stay private while the
//! receiver's faces Asana.
//!
//! Readiness goes 503 once the serve loops ended too, so a load balancer
//! stops sending while a listener drains.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Receiver, Sink};
use crate::secrets::SecretStore;

/// How long each readiness check may take before the receiver is reported
/// not ready: 2 s.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the receiver is not ready.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NotReady {
    /// What failed: `secret_store`, `inbox`, `queue` or `receiver`.
    pub component: &'static str,
    /// What it said.
    pub reason: String,
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} not ready: {}", self.component, self.reason)
    }
}

impl std::error::Error for NotReady {}

/// How many serve loops were started and still run.
#[derive(Debug, Default)]
pub(crate) struct Serving {
    started: AtomicUsize,
    running: AtomicUsize,
}

impl Serving {
    /// Counts a serve loop as running until the guard is dropped (at its
    /// end, or while a panic unwinds).
    pub(crate) fn start(&self) -> ServingGuard<'_> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.running.fetch_add(1, Ordering::SeqCst);
        ServingGuard(self)
    }

    /// Whether serve loops were started and all of them ended.
    fn ended(&self) -> bool {
        self.running.load(Ordering::SeqCst) == 0 && self.started.load(Ordering::SeqCst) > 0
    }
}

/// A running serve loop; see [`Serving::start`].
pub(crate) struct ServingGuard<'a>(&'a Serving);

impl Drop for ServingGuard<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs a check within the probe timeout.
async fn bounded<E: std::fmt::Display>(
    component: &'static str,
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), NotReady> {
    match tokio::time::timeout(DEFAULT_PROBE_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(NotReady {
            component,
            reason: e.to_string(),
        }),
        Err(_) => Err(NotReady {
            component,
            reason: format!("no answer within {DEFAULT_PROBE_TIMEOUT:?}"),
        }),
    }
}

impl<S: SecretStore> Receiver<S> {
    /// Whether the receiver can take deliveries now: its serve loops (if
    /// any was started) run, the secret store is reachable and writable,
    /// and the inbox takes commits (or, without one, somebody reads the
    /// queue). Each check has [`DEFAULT_PROBE_TIMEOUT`].
    pub async fn check_ready(&self) -> Result<(), NotReady> {
        if self.inner.serving.ended() {
            return Err(NotReady {
                component: "receiver",
                reason: "the receiver stopped serving".into(),
            });
        }
        bounded("secret_store", self.inner.store.check_ready()).await?;
        match &self.inner.sink {
            Sink::Inbox(inbox) => bounded("inbox", inbox.check_ready()).await,
            Sink::Queue(queue) if queue.is_closed() => Err(NotReady {
                component: "queue",
                reason: "nobody reads the notifications any more".into(),
            }),
            Sink::Queue(_) => Ok(()),
        }
    }

    /// Whether the receiver is alive: false once every serve loop started
    /// with [`serve`](Self::serve) has ended. A receiver only mounted
    /// elsewhere ([`router`](Self::router)) is alive while the process
    /// answers.
    pub fn is_live(&self) -> bool {
        !self.inner.serving.ended()
    }

    /// An axum router answering `GET /livez` and `GET /readyz`; serve it
    /// on a listener of its own, not under [`router`](Self::router):
    /// every path and query the receiver answers may be a webhook's
    /// target, so none can be set aside there, and a port of its own can
    /// stay private while the receiver's faces Asana.
    ///
    /// | path | 200 | 503 |
    /// |---|---|---|
    /// | `/livez` | `{"status":"live"}` | `{"status":"not live","reason":…}`: every [`serve`](Self::serve) loop started has ended |
    /// | `/readyz` | `{"status":"ready"}` | `{"status":"not ready","component":…,"reason":…}`: the first failed [`check_ready`](Self::check_ready) check |
    pub fn health_router(&self) -> axum::Router {
        let live = self.clone();
        let ready = self.clone();
        axum::Router::new()
            .route("/livez", get(move || livez(live.clone())))
            .route("/readyz", get(move || readyz(ready.clone())))
    }
}

async fn livez<S: SecretStore>(receiver: Receiver<S>) -> Response {
    if receiver.is_live() {
        Json(serde_json::json!({"status": "live"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                serde_json::json!({"status": "not live", "reason": "the receiver stopped serving"}),
            ),
        )
            .into_response()
    }
}

async fn readyz<S: SecretStore>(receiver: Receiver<S>) -> Response {
    match receiver.check_ready().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(not_ready) => {
            tracing::warn!(component = not_ready.component, reason = %not_ready.reason, "readiness probe: not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "status": "not ready",
                    "component": not_ready.component,
                    "reason": not_ready.reason,
                })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::{FileInbox, Inbox, MemoryInbox};
    use crate::secrets::{FileSecretStore, MemorySecretStore};

    /// Serves `router` on a free port; its base URL.
    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        base
    }

    async fn get(base: &str, path: &str) -> (u16, serde_json::Value) {
        let response = reqwest::get(format!("{base}{path}")).await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    #[tokio::test]
    async fn ready_while_store_and_inbox_work_and_not_once_their_directory_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let store = FileSecretStore::open(data.join("secrets.json"))
            .await
            .unwrap();
        let inbox = FileInbox::open(data.join("inbox.redb")).await.unwrap();
        let receiver = Receiver::builder(store).build_with_inbox(inbox.clone());
        let health = serve(receiver.health_router()).await;
        assert_eq!(
            get(&health, "/readyz").await,
            (200, serde_json::json!({"status": "ready"}))
        );
        assert_eq!(get(&health, "/livez").await.0, 200);

        std::fs::remove_dir_all(&data).unwrap();
        let (status, body) = get(&health, "/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["status"], "not ready");
        assert_eq!(body["component"], "secret_store", "{body}");
        assert_eq!(get(&health, "/livez").await.0, 200, "alive all the same");

        // The store's directory is back, the inbox file is not: the inbox
        // is the one not ready.
        std::fs::create_dir(&data).unwrap();
        let (status, body) = get(&health, "/readyz").await;
        assert_eq!(
            (status, body["component"].as_str()),
            (503, Some("inbox")),
            "{body}"
        );
        inbox.close();
    }

    #[tokio::test]
    async fn a_closed_inbox_is_not_ready_and_an_ended_serve_loop_not_live() {
        let inbox = MemoryInbox::new();
        let receiver = Receiver::builder(MemorySecretStore::new()).build_with_inbox(inbox.clone());
        let health = serve(receiver.health_router()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(receiver.clone().serve(listener, async {
            let _ = stopped.await;
        }));
        tokio::task::yield_now().await;
        assert_eq!(get(&health, "/livez").await.0, 200);
        assert_eq!(get(&health, "/readyz").await.0, 200);
        inbox.close();
        let (status, body) = get(&health, "/readyz").await;
        assert_eq!(
            (status, body["component"].as_str()),
            (503, Some("inbox")),
            "{body}"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        let (status, body) = get(&health, "/livez").await;
        assert_eq!((status, body["status"].as_str()), (503, Some("not live")));
        assert_eq!(get(&health, "/readyz").await.1["component"], "receiver");
    }
}
