//! `listen --metrics-addr`: the Prometheus text at `/metrics`, and the
//! receiver's `/livez` and `/readyz`, on a listener of their own (every
//! path of the webhook listener can be a webhook's target, and this one
//! can stay private).

use std::time::Duration;

use asana_webhooks::inbox::Inbox;
use asana_webhooks::receiver::Receiver;
use asana_webhooks::secrets::SecretStore;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How long a scrape waits for the inbox's stats before it answers with
/// the gauges as they were.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// Installs the Prometheus recorder for the whole process; its handle
/// renders what was recorded.
pub fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    asana_webhooks::metrics::describe();
    Ok(handle)
}

/// Serves `/metrics`, `/livez` and `/readyz` on `listener` until the
/// returned task is aborted.
pub fn spawn<S: SecretStore, I: Inbox>(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    receiver: &Receiver<S>,
    inbox: I,
) -> tokio::task::JoinHandle<()> {
    let scrape = move || {
        let (handle, inbox) = (handle.clone(), inbox.clone());
        async move {
            // The inbox gauges are read when somebody looks: no timer, and
            // never staler than the scrape.
            match tokio::time::timeout(STATS_TIMEOUT, inbox.stats()).await {
                Ok(Ok(stats)) => stats.record_metrics(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not read the inbox's stats for /metrics")
                }
                Err(_) => tracing::warn!(
                    "the inbox's stats took longer than {STATS_TIMEOUT:?}; /metrics shows the last ones"
                ),
            }
            handle.run_upkeep();
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                handle.render(),
            )
                .into_response()
        }
    };
    let app = receiver.health_router().route("/metrics", get(scrape));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    })
}
