//! Test support: a small Asana stand-in on 127.0.0.1.
//!
//! [`FakeAsana`] serves `POST /webhooks` the way Asana does, handshake
//! included: while the create request is open it POSTs `X-Hook-Secret` to
//! the target and fails the create unless the target echoes it. It signs
//! deliveries with its own HMAC code, independent of the crate under test.

pub mod listening;
pub mod postgres;
pub mod spec;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The lowercase hex HMAC-SHA256 of `body` keyed with `secret`.
pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// How the fake answers createWebhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateBehaviour {
    /// Handshake, then 201 with the same secret (what Asana does).
    Normal,
    /// Handshake, then 201 with a different secret.
    MismatchedSecret,
    /// Never handshakes and never answers.
    Hang,
    /// 403 "Duplicated webhook", no handshake.
    Duplicate,
    /// Handshake, then the 201 only after this delay (a slow Asana).
    LateAnswer(Duration),
    /// Handshake, then 400: Asana refuses the create after all (no webhook).
    HandshakeThenRefuse,
    /// Handshake, the webhook is created, and the create never gets an
    /// answer (the connection hangs, as when Asana's answer is lost).
    HandshakeThenHang,
}

#[derive(Default)]
struct Log {
    created: Vec<(String, String, String)>,
    resources: Vec<String>,
    created_at: Vec<chrono::DateTime<chrono::Utc>>,
    deleted: Vec<String>,
    looked_up: Vec<String>,
    next_gid: u64,
}

impl Log {
    /// The live webhook of `resource` delivering to `target`.
    fn live(&self, resource: &str, target: &str) -> Option<String> {
        self.created
            .iter()
            .zip(&self.resources)
            .find(|((gid, t, _), r)| t == target && *r == resource && !self.deleted.contains(gid))
            .map(|((gid, _, _), _)| gid.clone())
    }
}

#[derive(Clone)]
struct FakeState {
    heartbeat_after_handshake: Arc<std::sync::atomic::AtomicBool>,
    behaviour: Arc<Mutex<CreateBehaviour>>,
    log: Arc<Mutex<Log>>,
    http: reqwest::Client,
}

/// The fake Asana server.
pub struct FakeAsana {
    /// Base URL to give `ClientBuilder::base_url`.
    pub base_url: String,
    state: FakeState,
}

impl FakeAsana {
    /// Starts the fake on an ephemeral loopback port.
    pub async fn start() -> Self {
        let state = FakeState {
            heartbeat_after_handshake: Arc::default(),
            behaviour: Arc::new(Mutex::new(CreateBehaviour::Normal)),
            log: Arc::new(Mutex::new(Log {
                next_gid: 1000,
                ..Default::default()
            })),
            http: reqwest::Client::new(),
        };
        let app = axum::Router::new()
            .route("/webhooks", post(create).get(list))
            .route("/webhooks/{gid}", delete(remove).get(get_one))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("http://{addr}"),
            state,
        }
    }

    /// Changes how the next creates are answered.
    pub fn set_behaviour(&self, behaviour: CreateBehaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Whether a signed heartbeat follows each handshake before the 201
    /// answer (Asana may send one there).
    pub fn set_heartbeat_after_handshake(&self, on: bool) {
        self.state
            .heartbeat_after_handshake
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// The gids of the webhooks created and not deleted.
    pub fn live(&self) -> Vec<String> {
        let log = self.state.log.lock().unwrap();
        log.created
            .iter()
            .map(|(gid, _, _)| gid.clone())
            .filter(|gid| !log.deleted.contains(gid))
            .collect()
    }

    /// Adds a webhook of `resource` delivering to `target`, created at
    /// `created_at` by somebody else (its secret is known to nobody here);
    /// returns its gid.
    pub fn plant(
        &self,
        resource: &str,
        target: &str,
        created_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let mut log = self.state.log.lock().unwrap();
        log.next_gid += 1;
        let gid = log.next_gid.to_string();
        log.created
            .push((gid.clone(), target.to_string(), "unknown".into()));
        log.resources.push(resource.to_string());
        log.created_at.push(created_at);
        gid
    }

    /// The gids read one by one (`GET /webhooks/{gid}`), in order.
    pub fn looked_up(&self) -> Vec<String> {
        self.state.log.lock().unwrap().looked_up.clone()
    }

    /// `(gid, target, secret)` of every webhook created.
    pub fn created(&self) -> Vec<(String, String, String)> {
        self.state.log.lock().unwrap().created.clone()
    }

    /// The gids deleted.
    pub fn deleted(&self) -> Vec<String> {
        self.state.log.lock().unwrap().deleted.clone()
    }

    /// A client for this fake.
    pub fn client(&self) -> asana_webhooks::Client {
        asana_webhooks::Client::builder()
            .token("0/fake")
            .base_url(&self.base_url)
            .build()
            .unwrap()
    }
}

fn error(status: StatusCode, message: &str) -> (StatusCode, Json<Value>) {
    (status, Json(json!({"errors": [{"message": message}]})))
}

async fn create(
    State(state): State<FakeState>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let behaviour = *state.behaviour.lock().unwrap();
    let data = &body["data"];
    let (Some(resource), Some(target)) = (data["resource"].as_str(), data["target"].as_str())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "You should specify one of resource",
        );
    };
    // A hang loses the answer whatever it would have been.
    if behaviour == CreateBehaviour::Hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "hung");
    }
    let existing = state.log.lock().unwrap().live(resource, target);
    if existing.is_some() || behaviour == CreateBehaviour::Duplicate {
        return error(StatusCode::FORBIDDEN, "Duplicated webhook");
    }
    let gid = {
        let mut log = state.log.lock().unwrap();
        log.next_gid += 1;
        log.next_gid.to_string()
    };
    let secret = hmac_hex(
        "fake-asana-secret-seed",
        format!("{gid}{target}").as_bytes(),
    );
    let handshake = state
        .http
        .post(target)
        .header("X-Hook-Secret", &secret)
        .send()
        .await;
    let echoed = match handshake {
        Ok(response) if matches!(response.status().as_u16(), 200 | 204) => response
            .headers()
            .get("x-hook-secret")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        _ => None,
    };
    if behaviour == CreateBehaviour::HandshakeThenRefuse {
        return error(StatusCode::BAD_REQUEST, "filters: Invalid filters");
    }
    if echoed.as_deref() != Some(secret.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "The remote server did not respond with the handshake secret.",
        );
    }
    {
        let mut log = state.log.lock().unwrap();
        log.created
            .push((gid.clone(), target.to_string(), secret.clone()));
        log.resources.push(resource.to_string());
        log.created_at.push(chrono::Utc::now());
    }
    if state
        .heartbeat_after_handshake
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        let heartbeat = br#"{"events":[]}"#;
        let _ = state
            .http
            .post(target)
            .header("X-Hook-Signature", hmac_hex(&secret, heartbeat))
            .body(heartbeat.to_vec())
            .send()
            .await;
    }
    match behaviour {
        CreateBehaviour::LateAnswer(delay) => tokio::time::sleep(delay).await,
        CreateBehaviour::HandshakeThenHang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        _ => {}
    }
    let answered_secret = match behaviour {
        CreateBehaviour::MismatchedSecret => "0".repeat(64),
        _ => secret,
    };
    let webhook = json!({"gid": gid, "resource_type": "webhook", "active": true,
        "resource": {"gid": resource, "resource_type": "task"}, "target": target});
    (
        StatusCode::CREATED,
        Json(json!({"data": webhook, "X-Hook-Secret": answered_secret})),
    )
}

async fn list(
    State(state): State<FakeState>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    if !query.contains_key("workspace") {
        return error(StatusCode::BAD_REQUEST, "workspace: Missing input");
    }
    let log = state.log.lock().unwrap();
    let data: Vec<Value> = log
        .created
        .iter()
        .zip(&log.resources)
        .filter(|((gid, _, _), resource)| {
            !log.deleted.contains(gid) && query.get("resource").is_none_or(|r| r == *resource)
        })
        .map(|((gid, target, _), resource)| {
            json!({"gid": gid, "resource_type": "webhook", "active": true,
                "resource": {"gid": resource, "resource_type": "task"}, "target": target})
        })
        .collect();
    (
        StatusCode::OK,
        Json(json!({"data": data, "next_page": null})),
    )
}

async fn remove(State(state): State<FakeState>, Path(gid): Path<String>) -> Json<Value> {
    state.log.lock().unwrap().deleted.push(gid);
    Json(json!({"data": {}}))
}

async fn get_one(
    State(state): State<FakeState>,
    Path(gid): Path<String>,
) -> (StatusCode, Json<Value>) {
    let mut log = state.log.lock().unwrap();
    log.looked_up.push(gid.clone());
    match log.created.iter().position(|(g, _, _)| *g == gid) {
        Some(i) => (
            StatusCode::OK,
            Json(
                json!({"data": {"gid": gid, "resource_type": "webhook", "active": true,
                "target": log.created[i].1,
                "created_at": log.created_at[i].to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}}),
            ),
        ),
        None => error(StatusCode::NOT_FOUND, "webhook: Unknown object"),
    }
}

/// Serves `router` on an ephemeral loopback port; returns its address.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// POSTs a delivery signed with `secret` (or with the given raw signature
/// header) to `url`; returns the status.
pub async fn deliver(url: &str, body: &[u8], signature: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("X-Hook-Signature", signature);
    }
    request.send().await.unwrap().status().as_u16()
}

/// One canned answer of a [`Scripted`] server.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Value,
    /// How long to wait before answering (real time).
    pub delay: Duration,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Answers after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct ScriptState {
    replies: std::collections::VecDeque<Reply>,
    fallback: Option<Reply>,
    requests: Vec<String>,
    in_flight: usize,
    max_in_flight: usize,
}

/// A server that answers requests with a script of replies, in order, and
/// records what it was asked and how many requests overlapped.
#[derive(Clone)]
pub struct Scripted {
    /// Base URL to give `ClientBuilder::base_url`.
    pub base_url: String,
    state: Arc<Mutex<ScriptState>>,
}

impl Scripted {
    /// Starts a server that answers with `replies` in order, then with
    /// `fallback` (or 500 when there is none).
    pub async fn start(replies: Vec<Reply>, fallback: Option<Reply>) -> Self {
        let state = Arc::new(Mutex::new(ScriptState {
            replies: replies.into(),
            fallback,
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(scripted)
            .with_state(Arc::clone(&state));
        let addr = serve(app).await;
        Self {
            base_url: format!("http://{addr}"),
            state,
        }
    }

    /// `METHOD path?query` of every request received, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The most requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }
}

async fn scripted(
    State(state): State<Arc<Mutex<ScriptState>>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let reply = {
        let mut s = state.lock().unwrap();
        s.requests.push(format!("{method} {uri}"));
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        s.replies
            .pop_front()
            .or_else(|| s.fallback.clone())
            .unwrap_or_else(|| {
                Reply::json(500, json!({"errors": [{"message": "script exhausted"}]}))
            })
    };
    tokio::time::sleep(reply.delay).await;
    state.lock().unwrap().in_flight -= 1;
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap(),
        Json(reply.body),
    )
        .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// How a [`Target`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetMode {
    /// Echoes handshakes, answers 200 to deliveries.
    Healthy,
    /// Echoes handshakes, answers 500 to deliveries.
    Failing,
    /// Answers 200 to handshakes without echoing the secret.
    NoEcho,
}

/// A delivery a [`Target`] received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request path and query.
    pub path: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// The `X-Hook-Signature` header.
    pub signature: Option<String>,
}

#[derive(Default)]
struct TargetState {
    mode: Option<TargetMode>,
    handshakes: Vec<(String, String)>,
    deliveries: Vec<Received>,
}

/// A webhook target on 127.0.0.1 that records what Asana (or the sandbox)
/// sends it: handshakes and deliveries, on any path.
#[derive(Clone)]
pub struct Target {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    state: Arc<Mutex<TargetState>>,
}

impl Target {
    /// Starts a healthy target.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(TargetState {
            mode: Some(TargetMode::Healthy),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(target)
            .with_state(Arc::clone(&state));
        let addr = serve(app).await;
        Self {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: TargetMode) {
        self.state.lock().unwrap().mode = Some(mode);
    }

    /// `(path, secret)` of every handshake received.
    pub fn handshakes(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().handshakes.clone()
    }

    /// Every delivery received, in order.
    pub fn deliveries(&self) -> Vec<Received> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// Waits (at most 10 s) until `done` holds for the deliveries.
    pub async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let deliveries = self.deliveries();
            if done(&deliveries) {
                return deliveries;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; got {deliveries:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn target(
    State(state): State<Arc<Mutex<TargetState>>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let mut state = state.lock().unwrap();
    let mode = state.mode.unwrap_or(TargetMode::Healthy);
    if let Some(secret) = headers.get("x-hook-secret").and_then(|v| v.to_str().ok()) {
        state.handshakes.push((path, secret.to_string()));
        let mut response = StatusCode::OK.into_response();
        if mode != TargetMode::NoEcho {
            response
                .headers_mut()
                .insert("x-hook-secret", secret.parse().unwrap());
        }
        return response;
    }
    let signature = headers
        .get("x-hook-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state.deliveries.push(Received {
        path,
        body: body.to_vec(),
        signature,
    });
    match mode {
        TargetMode::Failing => {
            (StatusCode::INTERNAL_SERVER_ERROR, "target is down").into_response()
        }
        _ => StatusCode::OK.into_response(),
    }
}
