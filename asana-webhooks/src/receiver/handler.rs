//! One webhook request, from raw bytes to a queued notification.

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::mpsc::error::TrySendError;

use super::limited_log::{LimitedWarning, refusal};
use super::{ErasedInbox, Notification, Receiver, Sink};
use crate::event::parse_delivery;
use crate::hook_secret::HookSecret;
use crate::inbox::{InboxError, VerifiedDelivery};
use crate::metrics::{self, Delivered, Handshake, Refused, Unavailable};
use crate::secrets::{HandshakeVerdict, SecretStore, StoredSecret, TargetKey};
use crate::signature::{SECRET_HEADER, SIGNATURE_HEADER, Signature};

static UNSIGNED: LimitedWarning = LimitedWarning::new();
static UNKNOWN_TARGET: LimitedWarning = LimitedWarning::new();
static BAD_SIGNATURE: LimitedWarning = LimitedWarning::new();
static HANDSHAKE_REFUSED: LimitedWarning = LimitedWarning::new();
static HANDSHAKE_SUSPICIOUS: LimitedWarning = LimitedWarning::new();
static SLOW_BODY: LimitedWarning = LimitedWarning::new();

/// The largest body a heartbeat can be (`{"events":[]}` with room for
/// whitespace): all that is read, and all that pending secrets are tried
/// on, for a target with no confirmed secret.
const HEARTBEAT_MAX_BYTES: usize = 64;

/// Up to how many bytes of HMAC input are computed on the async worker;
/// more goes to the blocking pool.
const INLINE_HMAC_BYTES: usize = 256 * 1024;

fn answer(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

fn retry_later(text: &'static str, seconds: &'static str) -> Response {
    let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, text);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(seconds),
    );
    response
}

/// The secret store failed: a delivery is answered 503 (recorded here) and
/// so is a handshake (recorded by the caller as a handshake).
fn store_unavailable(target: &TargetKey, error: &crate::secrets::StoreError) -> Response {
    tracing::error!(%target, %error, "secret store failed during a request");
    retry_later("the secret store is unavailable\n", "5")
}

fn delivery_store_unavailable(target: &TargetKey, error: &crate::secrets::StoreError) -> Response {
    metrics::unavailable(Unavailable::SecretStore);
    store_unavailable(target, error)
}

fn too_large() -> Response {
    metrics::refused(Refused::TooLarge);
    unread(answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body exceeds the receiver's limit\n",
    ))
}

/// Marks a refusal (every 4xx answer): the connection is closed after it,
/// so a client that sends nothing genuine keeps no connection slot, and an
/// answer given before the body was read in full does not wait for a body
/// nobody will read.
fn unread(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

pub(super) async fn handle<S: SecretStore>(
    State(receiver): State<Receiver<S>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method != Method::POST {
        metrics::refused(Refused::MethodNotAllowed);
        return unread(answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "webhook endpoints accept POST only\n",
        ));
    }
    let inner = &receiver.inner;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > inner.body_limit) {
        return too_large();
    }
    let target =
        TargetKey::from_path_and_query(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));

    // A handshake carries everything in its headers: its body is never read.
    if let Some(secret) = headers.get(SECRET_HEADER) {
        return handshake(&receiver, &target, secret).await;
    }
    delivery(&receiver, target, &headers, body).await
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
        .filter(|s| HookSecret::is_plausible(s))
        .map(HookSecret::new)
    else {
        refusal!(HANDSHAKE_REFUSED, %target, "refused a handshake whose secret Asana would not send (empty, too long or odd characters)");
        metrics::handshake(Handshake::InvalidSecret);
        return unread(answer(
            StatusCode::BAD_REQUEST,
            "X-Hook-Secret is not a secret Asana would send\n",
        ));
    };
    match inner.store.accept_handshake(target, &secret).await {
        Ok(HandshakeVerdict::Accepted { suspicious }) => {
            metrics::handshake(if suspicious {
                Handshake::Suspicious
            } else {
                Handshake::Accepted
            });
            if suspicious {
                refusal!(HANDSHAKE_SUSPICIOUS, %target, "more handshakes than registrations in flight for this target: someone other than Asana may be sending them; only the secret Asana's 201 answer confirms will be trusted");
            } else {
                tracing::info!(%target, "answered a webhook handshake; its secret is pending until Asana's answer confirms it");
            }
        }
        Ok(HandshakeVerdict::Flooded) => {
            refusal!(HANDSHAKE_SUSPICIOUS, %target, "refused a handshake: too many arrived for this target's registrations (a flood?)");
            metrics::handshake(Handshake::Flooded);
            return unread(retry_later(
                "too many handshakes for this target, retry later\n",
                "5",
            ));
        }
        Ok(_) if inner.accept_handshakes_outside_window => {
            tracing::warn!(%target, "accepting a handshake outside a registration window (explicitly enabled)");
            let record = StoredSecret {
                target: target.clone(),
                webhook_gid: None,
                resource: None,
                target_url: None,
                filters: Vec::new(),
                secret: secret.clone(),
            };
            if let Err(e) = inner.store.save(record).await {
                metrics::handshake(Handshake::StoreUnavailable);
                return store_unavailable(target, &e);
            }
            metrics::handshake(Handshake::OutsideWindow);
        }
        Ok(_) => {
            refusal!(HANDSHAKE_REFUSED, %target, "refused a handshake: no webhook registration is in flight for this target");
            metrics::handshake(Handshake::NoRegistration);
            return unread(answer(
                StatusCode::FORBIDDEN,
                "no webhook registration is in flight for this target\n",
            ));
        }
        Err(e) => {
            metrics::handshake(Handshake::StoreUnavailable);
            return store_unavailable(target, &e);
        }
    }
    let mut response = StatusCode::OK.into_response();
    let mut echoed =
        header::HeaderValue::from_str(secret.expose()).expect("it came from a header value");
    echoed.set_sensitive(true);
    response.headers_mut().insert(SECRET_HEADER, echoed);
    response
}

/// Which secret verified a delivery.
enum Verified {
    /// A stored secret: the delivery is genuine.
    Stored(StoredSecret),
    /// A secret only a handshake brought: good enough for a heartbeat.
    Pending,
}

/// Why a body was not read.
enum BodyError {
    /// It is larger than the limit.
    TooLarge,
    /// Another failure, with its answer.
    Answer(Response),
}

async fn read_body<S: SecretStore>(
    receiver: &Receiver<S>,
    target: &TargetKey,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let inner = &receiver.inner;
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(inner.limits.body_read_timeout, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Ok(Err(_)) => {
            metrics::refused(Refused::UnreadableBody);
            Err(BodyError::Answer(unread(answer(
                StatusCode::BAD_REQUEST,
                "the body could not be read\n",
            ))))
        }
        Err(_) => {
            refusal!(SLOW_BODY, %target, "a request body was not sent within the read timeout");
            metrics::refused(Refused::SlowBody);
            Err(BodyError::Answer(unread(answer(
                StatusCode::REQUEST_TIMEOUT,
                "the body was not sent in time\n",
            ))))
        }
    }
}

/// The stored secret that verifies `body`, if any. Large work (a big body
/// times several secrets) runs on the blocking pool, off the async
/// workers that answer every other request.
async fn verify_stored(
    signature: &Signature,
    stored: Vec<StoredSecret>,
    body: &Bytes,
) -> Option<StoredSecret> {
    let find = |signature: &Signature, stored: Vec<StoredSecret>, body: &[u8]| {
        stored
            .into_iter()
            .find(|record| signature.verify(&record.secret, body).is_ok())
    };
    if body.len().saturating_mul(stored.len()) <= INLINE_HMAC_BYTES {
        return find(signature, stored, body);
    }
    let (signature, body) = (*signature, body.clone());
    tokio::task::spawn_blocking(move || find(&signature, stored, &body))
        .await
        .unwrap_or(None)
}

async fn delivery<S: SecretStore>(
    receiver: &Receiver<S>,
    target: TargetKey,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let store = &receiver.inner.store;
    // Everything that can be refused from the headers is refused before a
    // byte of the body is read.
    let signature = match Signature::from_header(
        headers
            .get(SIGNATURE_HEADER)
            .map(|v| v.to_str().unwrap_or("")),
    ) {
        Ok(signature) => signature,
        Err(e) => {
            refusal!(UNSIGNED, %target, error = %e, "refused a delivery");
            metrics::refused(Refused::Unsigned);
            return unread(answer(
                StatusCode::UNAUTHORIZED,
                "invalid X-Hook-Signature\n",
            ));
        }
    };
    let mut stored = match store.secrets_for(&target).await {
        Ok(stored) => stored,
        Err(e) => return delivery_store_unavailable(&target, &e),
    };
    let mut pending = None;
    if stored.is_empty() {
        match store.pending_secrets(&target).await {
            Ok(secrets) if !secrets.is_empty() => pending = Some(secrets),
            Ok(_) => {
                // A confirm may have turned the only pending secret into a
                // stored one between the two reads: look again.
                stored = match store.fresh_secrets_for(&target).await {
                    Ok(stored) => stored,
                    Err(e) => return delivery_store_unavailable(&target, &e),
                };
                if stored.is_empty() {
                    refusal!(UNKNOWN_TARGET, %target, "refused a delivery: no secret is known for this target");
                    metrics::refused(Refused::UnknownTarget);
                    return unread(answer(
                        StatusCode::UNAUTHORIZED,
                        "no webhook secret is known for this target\n",
                    ));
                }
            }
            Err(e) => return delivery_store_unavailable(&target, &e),
        }
    }
    // With only pending secrets, only a heartbeat can verify: read no more
    // than one. Anything larger waits (503) until the secret is confirmed.
    let limit = if stored.is_empty() {
        HEARTBEAT_MAX_BYTES
    } else {
        receiver.inner.body_limit
    };
    let body = match read_body(receiver, &target, body, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) if stored.is_empty() => return unread(not_confirmed(&target)),
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::Answer(response)) => return response,
    };

    let mut verified = verify_stored(&signature, stored.clone(), &body)
        .await
        .map(Verified::Stored);
    // A pending secret (between the handshake and the 201) can only sign
    // Asana's first heartbeat: it is never tried on anything larger, so
    // however many handshakes someone sent, a delivery costs at most
    // MAX_PENDING_PER_TARGET HMACs of a few bytes.
    if verified.is_none() && body.len() <= HEARTBEAT_MAX_BYTES {
        let pending = match pending {
            Some(pending) => pending,
            None => match store.pending_secrets(&target).await {
                Ok(secrets) => secrets,
                Err(e) => return delivery_store_unavailable(&target, &e),
            },
        };
        if pending.iter().any(|s| signature.verify(s, &body).is_ok()) {
            verified = Some(Verified::Pending);
        }
    }
    if verified.is_none() {
        // A second look before refusing: a confirm may have landed since
        // the first read, storing the secret this delivery is signed with.
        let now = match store.fresh_secrets_for(&target).await {
            Ok(now) => now,
            Err(e) => return delivery_store_unavailable(&target, &e),
        };
        let new: Vec<StoredSecret> = now
            .into_iter()
            .filter(|r| !stored.iter().any(|s| s.secret == r.secret))
            .collect();
        if !new.is_empty() {
            verified = verify_stored(&signature, new, &body)
                .await
                .map(Verified::Stored);
        }
    }
    let confirmed = matches!(verified, Some(Verified::Stored(_)));
    // The verifying webhook, and the resource it watches when its secret
    // says (it keys the inbox's events alike whichever source brings them).
    let (webhook_gid, resource) = match verified {
        None => {
            refusal!(BAD_SIGNATURE, %target, "refused a delivery: the signature matches no secret of this target");
            metrics::refused(Refused::BadSignature);
            return unread(answer(
                StatusCode::UNAUTHORIZED,
                "invalid X-Hook-Signature\n",
            ));
        }
        Some(Verified::Stored(record)) => (record.webhook_gid, record.resource),
        Some(Verified::Pending) => (None, None),
    };

    match &receiver.inner.sink {
        Sink::Queue(queue) => queue_delivery(queue, target, webhook_gid, confirmed, &body),
        Sink::Inbox(inbox) => {
            let inbox = inbox.as_ref();
            commit_delivery(inbox, target, webhook_gid, resource, confirmed, &body).await
        }
    }
}

fn not_json(target: &TargetKey, webhook_gid: Option<&str>, error: &serde_json::Error) -> Response {
    tracing::error!(%target, webhook_gid = webhook_gid.unwrap_or("-"), %error, "a verified delivery is not JSON");
    metrics::refused(Refused::NotJson);
    unread(answer(StatusCode::BAD_REQUEST, "the body is not JSON\n"))
}

fn not_confirmed(target: &TargetKey) -> Response {
    // Anyone can send a handshake while a registration is in flight;
    // until Asana's answer confirms the secret, its events wait.
    tracing::info!(%target, "events signed with a secret not yet confirmed: answering 503 so that Asana delivers them again");
    metrics::unavailable(Unavailable::NotConfirmed);
    retry_later("the webhook's secret is not confirmed yet\n", "2")
}

/// Commits the delivery to the inbox; 200 only once it is durable.
async fn commit_delivery(
    inbox: &dyn ErasedInbox,
    target: TargetKey,
    webhook_gid: Option<String>,
    resource: Option<String>,
    confirmed: bool,
    body: &[u8],
) -> Response {
    let delivery = match VerifiedDelivery::from_body(target.clone(), webhook_gid, body) {
        Ok(delivery) => VerifiedDelivery {
            resource,
            ..delivery
        },
        Err(e) => return not_json(&target, None, &e),
    };
    let result = if delivery.is_heartbeat() {
        inbox
            .heartbeat(&delivery.target, delivery.webhook_gid.as_deref())
            .await
            .map(|()| None)
    } else if !confirmed {
        return not_confirmed(&delivery.target);
    } else {
        let target = delivery.target.clone();
        inbox.append(delivery).await.map(|a| Some((target, a)))
    };
    match result {
        Ok(None) => {
            metrics::delivered(Delivered::Heartbeat);
            StatusCode::OK.into_response()
        }
        Ok(Some((target, appended))) => {
            if appended.duplicates > 0 {
                tracing::debug!(%target, duplicates = appended.duplicates, added = appended.added, "dropped repeated events");
            }
            metrics::delivered(if appended.added > 0 {
                Delivered::Accepted
            } else {
                Delivered::Duplicate
            });
            metrics::events(appended.added, appended.duplicates);
            StatusCode::OK.into_response()
        }
        Err(full @ InboxError::Full { .. }) => {
            tracing::warn!(%full, "inbox full: answering 503 so that Asana retries");
            metrics::unavailable(Unavailable::InboxFull);
            retry_later("receiver busy, retry later\n", "5")
        }
        Err(e) => {
            tracing::error!(error = %e, "could not commit a delivery: answering 503 so that Asana retries");
            metrics::unavailable(Unavailable::InboxFailed);
            retry_later("the delivery could not be stored\n", "5")
        }
    }
}

fn queue_delivery(
    queue: &tokio::sync::mpsc::Sender<Notification>,
    target: TargetKey,
    webhook_gid: Option<String>,
    confirmed: bool,
    body: &[u8],
) -> Response {
    let parsed = match parse_delivery(body) {
        Ok(parsed) => parsed,
        Err(e) => return not_json(&target, webhook_gid.as_deref(), &e),
    };
    let notification = if parsed.is_heartbeat() {
        Notification::Heartbeat {
            target,
            webhook_gid,
        }
    } else if !confirmed {
        return not_confirmed(&target);
    } else {
        Notification::Events {
            target,
            webhook_gid,
            events: parsed.events,
            undecoded: parsed.undecoded,
        }
    };
    let delivered = match &notification {
        Notification::Events {
            events, undecoded, ..
        } => Some(events.len() + undecoded.len()),
        _ => None,
    };
    match queue.try_send(notification) {
        Ok(()) => {
            match delivered {
                Some(events) => {
                    metrics::delivered(Delivered::Accepted);
                    metrics::events(events, 0);
                }
                None => metrics::delivered(Delivered::Heartbeat),
            }
            StatusCode::OK.into_response()
        }
        Err(TrySendError::Full(_)) => {
            tracing::warn!("delivery queue full: answering 503 so that Asana retries");
            metrics::unavailable(Unavailable::QueueFull);
            retry_later("receiver busy, retry later\n", "5")
        }
        Err(TrySendError::Closed(_)) => {
            tracing::error!("nobody reads the delivery queue any more: answering 503");
            metrics::unavailable(Unavailable::QueueClosed);
            retry_later("receiver shutting down\n", "5")
        }
    }
}
