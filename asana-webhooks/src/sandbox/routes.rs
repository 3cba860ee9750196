//! The sandbox's HTTP surface: Asana's five webhook operations under
//! `/api/1.0`, the OAuth token endpoint `/-/oauth_token`, and the
//! `/sandbox/events` control endpoint.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::failure::Failure;
use super::model::EmittedEvent;
use super::oauth;
use super::render;
use super::sender;
use super::state::{EventsAnswer, Sandbox};
use super::stream;

type Shared = Arc<Sandbox>;

/// What the guard checks against: the sandbox, and the tokens its OAuth
/// endpoint issued.
type Guarded = (Shared, Arc<oauth::Endpoint>);

pub(crate) fn router(sandbox: Shared, tokens: Arc<oauth::Endpoint>) -> Router {
    let api = Router::new()
        .route("/events", get(events))
        .route("/webhooks", get(list).post(create))
        .route("/webhooks/{gid}", get(get_one).put(update).delete(remove))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(middleware::from_fn_with_state(
            (Arc::clone(&sandbox), Arc::clone(&tokens)),
            guard,
        ));
    Router::new()
        .nest("/api/1.0", api)
        .merge(oauth::router(tokens))
        .route("/sandbox/events", post(emit))
        // Paths the nested router does not see, such as `/api/1.0/` (what
        // `/webhooks/..` becomes), get Asana's JSON 404 too.
        .fallback(no_route)
        .with_state(sandbox)
}

/// The query string as (key, value) pairs, repeated keys kept.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>) -> Self {
        let raw = raw.unwrap_or_default();
        Self(
            url::form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn pretty(&self) -> bool {
        self.one("opt_pretty")
            .is_some_and(|v| v.is_empty() || v == "true")
    }
}

fn failure(f: Failure) -> Response {
    let mut response = (
        StatusCode::from_u16(f.status).expect("valid status"),
        axum::Json(f.body()),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn answer(status: StatusCode, body: Value, pretty: bool) -> Response {
    let text = if pretty {
        serde_json::to_string_pretty(&body)
    } else {
        serde_json::to_string(&body)
    };
    let mut response = (status, text.expect("JSON serialises")).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Asana's operation id for a request to `path` (under `/api/1.0`).
fn operation(method: &Method, path: &str) -> &'static str {
    let path = path.strip_prefix("/api/1.0").unwrap_or(path);
    let path = path.strip_suffix('/').unwrap_or(path);
    let one = path
        .strip_prefix("/webhooks/")
        .is_some_and(|gid| !gid.is_empty() && !gid.contains('/'));
    match (method.as_str(), path) {
        ("GET", "/webhooks") => "getWebhooks",
        ("POST", "/webhooks") => "createWebhook",
        ("GET", "/events") => "getEvents",
        ("GET", _) if one => "getWebhook",
        ("PUT", _) if one => "updateWebhook",
        ("DELETE", _) if one => "deleteWebhook",
        _ => "other",
    }
}

/// Every API answer carries the sandbox's own time in `Date`, as Asana's
/// carry Asana's.
async fn guard(State((sandbox, tokens)): State<Guarded>, request: Request, next: Next) -> Response {
    sandbox.count_request(operation(request.method(), request.uri().path()));
    let mut response = check(&sandbox, &tokens, request, next).await;
    let date = sandbox
        .now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(date) = HeaderValue::from_str(&date) {
        response.headers_mut().insert(header::DATE, date);
    }
    response
}

/// Bearer auth (any token, or with an OAuth app only the unexpired ones
/// it issued) and injected rate limits, before any operation.
async fn check(
    sandbox: &Shared,
    tokens: &oauth::Endpoint,
    request: Request,
    next: Next,
) -> Response {
    let authorised = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| !token.trim().is_empty() && tokens.accepts(token.trim()));
    if !authorised {
        return failure(Failure::new(401, "Not Authorized"));
    }
    if let Some(wait) = sandbox.rate_limited() {
        let mut response = failure(Failure::new(
            429,
            "You have made too many requests recently. Please, be chill.",
        ));
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return response;
    }
    next.run(request).await
}

/// Asana answers an unknown path, or a method a path does not take, with
/// a 404 in its error format.
async fn no_route() -> Response {
    failure(Failure::new(404, "No matching route for request"))
}

/// The `data` object of a create, refusing anything else the way Asana
/// does (a missing or doubled envelope reads as a missing `resource`).
fn data(body: &Bytes) -> Result<Value, Failure> {
    data_object(body, "You should specify one of resource")
}

/// The `data` object of a request body, or a 400 saying `missing`.
fn data_object(body: &Bytes, missing: &'static str) -> Result<Value, Failure> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|_| Failure::new(400, "Could not parse request data, invalid JSON"))?;
    match parsed.get("data") {
        Some(data @ Value::Object(_)) => Ok(data.clone()),
        _ => Err(Failure::new(400, missing)),
    }
}

/// The `data` object of an update; without one, the missing input is
/// named rather than the create's `resource`.
fn update_data(body: &Bytes) -> Result<Value, Failure> {
    data_object(body, "data: Missing input")
}

async fn list(State(sandbox): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw);
    let result = (|| {
        let workspace = query
            .one("workspace")
            .ok_or_else(|| Failure::new(400, "workspace: Missing input"))?;
        let limit = match query.one("limit") {
            Some(text) => Some(
                text.parse::<u32>()
                    .map_err(|_| Failure::new(400, "limit: Must be between 1 and 100"))?,
            ),
            None => None,
        };
        let fields = render::opt_fields(&query.all("opt_fields"), true)?;
        let (items, next, paged) = sandbox.list(
            workspace,
            query.one("resource"),
            limit,
            query.one("offset"),
            &fields,
        )?;
        let mut body = json!({ "data": items });
        if paged {
            body["next_page"] = next.unwrap_or(Value::Null);
        }
        Ok::<_, Failure>(body)
    })();
    match result {
        Ok(body) => answer(StatusCode::OK, body, query.pretty()),
        Err(f) => failure(f),
    }
}

async fn create(State(sandbox): State<Shared>, RawQuery(raw): RawQuery, body: Bytes) -> Response {
    let query = Query::parse(raw);
    let prepared = data(&body).and_then(|data| {
        let fields = render::opt_fields(&query.all("opt_fields"), false)?;
        Ok((sandbox.prepare_create(&data)?, fields))
    });
    let (new, fields) = match prepared {
        Ok(ok) => ok,
        Err(f) => return failure(f),
    };
    // The handshake happens while the create request is still open.
    let handshake = sandbox
        .http
        .post(&new.target)
        .header("x-hook-secret", &new.secret)
        .send()
        .await;
    let echoed = match &handshake {
        Ok(response) if matches!(response.status().as_u16(), 200 | 204) => {
            response
                .headers()
                .get("x-hook-secret")
                .and_then(|v| v.to_str().ok())
                == Some(new.secret.as_str())
        }
        _ => false,
    };
    if !echoed {
        let why = match handshake {
            Ok(response) => format!(
                "it answered {} without echoing X-Hook-Secret",
                response.status()
            ),
            Err(e) => format!("it could not be reached: {e}"),
        };
        return failure(Failure::new(
            400,
            format!("The handshake with {} failed: {why}", new.target),
        ));
    }
    let (secret, gid) = (new.secret.clone(), new.gid.clone());
    let inserted = sandbox.insert(new, &fields);
    if inserted.is_ok() {
        sandbox.track(tokio::spawn(sender::run(Arc::clone(&sandbox), gid)));
    }
    let delay = sandbox.settings.create_answer_delay;
    if inserted.is_ok() && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match inserted {
        Ok(rendered) => answer(
            StatusCode::CREATED,
            json!({ "data": rendered, "X-Hook-Secret": secret }),
            query.pretty(),
        ),
        Err(f) => failure(f),
    }
}

async fn get_one(
    State(sandbox): State<Shared>,
    Path(gid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let query = Query::parse(raw);
    match render::opt_fields(&query.all("opt_fields"), false)
        .and_then(|fields| sandbox.get(&gid, &fields))
    {
        Ok(webhook) => answer(StatusCode::OK, json!({ "data": webhook }), query.pretty()),
        Err(f) => failure(f),
    }
}

async fn update(
    State(sandbox): State<Shared>,
    Path(gid): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let query = Query::parse(raw);
    // The webhook first: an unknown gid is a 404 whatever the body says.
    let result = sandbox
        .get(&gid, &[])
        .and_then(|_| update_data(&body))
        .and_then(|data| {
            let fields = render::opt_fields(&query.all("opt_fields"), false)?;
            sandbox.update(&gid, &data, &fields)
        });
    match result {
        Ok(webhook) => answer(StatusCode::OK, json!({ "data": webhook }), query.pretty()),
        Err(f) => failure(f),
    }
}

async fn remove(
    State(sandbox): State<Shared>,
    Path(gid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    match sandbox.delete(&gid) {
        Ok(()) => answer(
            StatusCode::OK,
            json!({ "data": {} }),
            Query::parse(raw).pretty(),
        ),
        Err(f) => failure(f),
    }
}

/// getEvents: the events since the sync token (200), or a fresh token
/// (412) when there is none or it is not valid (any more).
async fn events(State(sandbox): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let query = Query::parse(raw);
    let result = stream::opt_fields(&query.all("opt_fields"))
        .and_then(|fields| sandbox.events(query.one("resource"), query.one("sync"), &fields));
    match result {
        Ok(EventsAnswer::Page {
            events,
            sync,
            has_more,
        }) => answer(
            StatusCode::OK,
            json!({ "data": events, "sync": sync, "has_more": has_more }),
            query.pretty(),
        ),
        Ok(EventsAnswer::Expired { sync }) => answer(
            StatusCode::PRECONDITION_FAILED,
            stream::sync_expired(&sync),
            query.pretty(),
        ),
        Err(f) => failure(f),
    }
}

async fn emit(State(sandbox): State<Shared>, body: Bytes) -> Response {
    let event: EmittedEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            return failure(Failure::new(
                400,
                format!("expected {{\"resource\", \"action\", \"parent\"?, \"field\"?}}: {e}"),
            ));
        }
    };
    match sandbox.emit(event) {
        Ok(queued) => answer(
            StatusCode::ACCEPTED,
            json!({ "data": { "queued_for": queued } }),
            false,
        ),
        Err(message) => failure(Failure::new(404, message)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sandbox::accounting::ApiRequests;

    #[test]
    fn requests_are_counted_by_asana_operation() {
        let cases = [
            (Method::GET, "/webhooks", "getWebhooks"),
            (Method::POST, "/webhooks", "createWebhook"),
            (Method::GET, "/webhooks/12", "getWebhook"),
            (Method::PUT, "/webhooks/12", "updateWebhook"),
            (Method::DELETE, "/api/1.0/webhooks/12", "deleteWebhook"),
            (Method::GET, "/events", "getEvents"),
            (Method::DELETE, "/webhooks", "other"),
            (Method::GET, "/webhooks/12/x", "other"),
            (Method::GET, "/tasks", "other"),
        ];
        for (method, path, expected) in cases {
            assert_eq!(operation(&method, path), expected, "{method} {path}");
        }
        let before = ApiRequests {
            total: 1,
            by_operation: BTreeMap::from([("getWebhooks", 1)]),
        };
        let after = ApiRequests {
            total: 4,
            by_operation: BTreeMap::from([("getWebhooks", 3), ("getWebhook", 1)]),
        };
        let since = after.since(&before);
        assert_eq!(since.total, 3);
        assert_eq!((since.of("getWebhooks"), since.of("getWebhook")), (2, 1));
        assert_eq!(since.of("createWebhook"), 0);
    }
}
