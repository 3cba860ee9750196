//! One webhook request, from raw bytes to a queued notification.

use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::mpsc::error::TrySendError;

use super::{Notification, Receiver};
use crate::event::Delivery;
use crate::secret::HookSecret;
use crate::secrets::{SecretStore, StoredSecret, TargetKey};
use crate::signature::{self, SECRET_HEADER, SIGNATURE_HEADER};

fn answer(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

fn store_unavailable(target: &TargetKey, error: &crate::secrets::StoreError) -> Response {
    tracing::error!(%target, %error, "secret store failed during a delivery");
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "the secret store is unavailable\n",
    )
}

pub(super) async fn handle<S: SecretStore>(
    State(receiver): State<Receiver<S>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method != Method::POST {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "webhook endpoints accept POST only\n",
        );
    }
    let inner = &receiver.inner;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > inner.body_limit) {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body exceeds the receiver's limit\n",
        );
    }
    let body = match Limited::new(body, inner.body_limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body exceeds the receiver's limit\n",
            );
        }
        Err(_) => return answer(StatusCode::BAD_REQUEST, "the body could not be read\n"),
    };
    let target =
        TargetKey::from_path_and_query(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));

    if let Some(secret) = headers.get(SECRET_HEADER) {
        return handshake(&receiver, &target, secret).await;
    }
    delivery(&receiver, target, &headers, &body).await
}

async fn handshake<S: SecretStore>(
    receiver: &Receiver<S>,
    target: &TargetKey,
    value: &header::HeaderValue,
) -> Response {
    let inner = &receiver.inner;
    let Some(secret) = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(HookSecret::new)
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            "X-Hook-Secret is empty or not text\n",
        );
    };
    let accepted = match inner.store.accept_handshake(target, &secret).await {
        Ok(true) => true,
        Ok(false) if inner.accept_handshakes_outside_window => {
            tracing::warn!(%target, "accepting a handshake outside a registration window (explicitly enabled)");
            let record = StoredSecret {
                target: target.clone(),
                webhook_gid: None,
                secret: secret.clone(),
            };
            match inner.store.save(record).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(%target, error = %e, "could not store a handshake secret");
                    return answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the secret could not be stored\n",
                    );
                }
            }
        }
        Ok(false) => false,
        Err(e) => {
            tracing::error!(%target, error = %e, "secret store failed during a handshake");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the secret store is unavailable\n",
            );
        }
    };
    if !accepted {
        tracing::warn!(%target, "refused a handshake: no webhook registration is in flight for this target");
        return answer(
            StatusCode::FORBIDDEN,
            "no webhook registration is in flight for this target\n",
        );
    }
    tracing::info!(%target, "answered a webhook handshake");
    let mut response = StatusCode::OK.into_response();
    let mut echoed =
        header::HeaderValue::from_str(secret.expose()).expect("it came from a header value");
    echoed.set_sensitive(true);
    response.headers_mut().insert(SECRET_HEADER, echoed);
    response
}

async fn delivery<S: SecretStore>(
    receiver: &Receiver<S>,
    target: TargetKey,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let store = &receiver.inner.store;
    let signature = headers
        .get(SIGNATURE_HEADER)
        .map(|v| v.to_str().unwrap_or(""));
    let stored = match store.by_target(&target).await {
        Ok(stored) => stored,
        Err(e) => return store_unavailable(&target, &e),
    };
    let mut outcome = stored
        .as_ref()
        .map(|r| signature::verify(&r.secret, body, signature));
    if !matches!(outcome, Some(Ok(()))) {
        // A heartbeat can arrive between the handshake and the 201 answer,
        // while the new secret still waits in the open window.
        match store.pending_secret(&target).await {
            Ok(Some(pending)) => outcome = Some(signature::verify(&pending, body, signature)),
            Ok(None) => {}
            Err(e) => return store_unavailable(&target, &e),
        }
    }
    match outcome {
        None => {
            tracing::warn!(%target, "refused a delivery: no secret is stored for this target");
            return answer(
                StatusCode::UNAUTHORIZED,
                "no webhook secret is known for this target\n",
            );
        }
        Some(Err(e)) => {
            tracing::warn!(%target, error = %e, "refused a delivery");
            return answer(StatusCode::UNAUTHORIZED, "invalid X-Hook-Signature\n");
        }
        Some(Ok(())) => {}
    }

    let delivery: Delivery = match serde_json::from_slice(body) {
        Ok(delivery) => delivery,
        Err(e) => {
            tracing::warn!(%target, error = %e, "a signed delivery is not valid JSON events");
            return answer(
                StatusCode::BAD_REQUEST,
                "the body is not an Asana delivery\n",
            );
        }
    };
    let webhook_gid = stored.and_then(|r| r.webhook_gid);
    let notification = if delivery.is_heartbeat() {
        Notification::Heartbeat {
            target,
            webhook_gid,
        }
    } else {
        Notification::Events {
            target,
            webhook_gid,
            events: delivery.events,
        }
    };
    match receiver.inner.queue.try_send(notification) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(TrySendError::Full(_)) => {
            tracing::warn!("delivery queue full: answering 503 so that Asana retries");
            let mut response = answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "receiver busy, retry later\n",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
            response
        }
        Err(TrySendError::Closed(_)) => {
            tracing::error!("nobody reads the delivery queue any more: answering 503");
            answer(StatusCode::SERVICE_UNAVAILABLE, "receiver shutting down\n")
        }
    }
}
