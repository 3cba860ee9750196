//! Asana's OAuth token endpoint, played: `POST /-/oauth_token` (outside
//! `/api/1.0`, as at Asana) trades the configured refresh token for access
//! tokens that expire on the sandbox clock, and the API's guard accepts only
//! those while they last. Without [`SandboxBuilder::oauth`] the endpoint
//! refuses every grant and the API takes any bearer token, as before.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::clock::Clock;
use super::{Sandbox, SandboxBuilder, seed};

/// The path of the token endpoint, as at Asana.
pub(crate) const TOKEN_PATH: &str = "/-/oauth_token";

/// The OAuth app and refresh token a sandbox accepts (see
/// [`SandboxBuilder::oauth`]).
#[derive(Clone, Default)]
pub(crate) struct Settings {
    app: Option<App>,
    lifetime: Option<Duration>,
}

#[derive(Clone)]
struct App {
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthSettings")
            .field(
                "client_id",
                &self.app.as_ref().map(|a| a.client_id.as_str()),
            )
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// How often the sandbox's OAuth endpoint and guard said yes and no.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthCounts {
    /// Access tokens issued (refresh-token grants granted).
    pub issued: u64,
    /// Grants refused: wrong client id or secret, unknown or revoked
    /// refresh token, another grant type.
    pub refused_grants: u64,
    /// API requests refused with 401 because their access token was
    /// unknown or expired.
    pub refused_tokens: u64,
}

/// The default lifetime of an access token, in sandbox time: Asana's hour.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

impl SandboxBuilder {
    /// Plays an OAuth app: `POST /-/oauth_token` with
    /// `grant_type=refresh_token` and these client id, client secret and
    /// refresh token (form-encoded, as Asana takes them) issues an access
    /// token, and the API then accepts only unexpired tokens it issued
    /// (401 otherwise). Without it, the API takes any bearer token.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use asana_webhooks::sandbox::{Sandbox, seed};
    /// use asana_webhooks::{Client, OAuthRefresh};
    ///
    /// // Access tokens last an hour of sandbox time: two real seconds here.
    /// let sandbox = Sandbox::builder()
    ///     .time_scale(1800.0)
    ///     .oauth("app-id", "app-secret", "refresh-token")
    ///     .start("127.0.0.1:0")
    ///     .await?;
    /// let client = Client::builder()
    ///     .base_url(sandbox.base_url())
    ///     .oauth(
    ///         OAuthRefresh::new("app-id", "app-secret", "refresh-token")
    ///             .token_url(sandbox.token_url()),
    ///     )
    ///     .build()?;
    /// client.get_webhooks(seed::WORKSPACE).send().await?;
    /// println!("{:?}", sandbox.oauth_counts());
    /// # Ok(()) }
    /// ```
    pub fn oauth(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> Self {
        self.oauth.app = Some(App {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
        });
        self
    }

    /// How long an issued access token lasts, in sandbox time (so
    /// [`SandboxBuilder::time_scale`] shortens it in real time); default an
    /// hour, as at Asana. The grant's `expires_in` gives the real seconds
    /// left (rounded down, at least 1), so that a client refreshes on time.
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.oauth.lifetime = Some(lifetime);
        self
    }
}

impl Sandbox {
    /// The URL of the sandbox's OAuth token endpoint, for
    /// [`crate::OAuthRefresh::token_url`].
    pub fn token_url(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.addr)
    }

    /// How many access tokens were issued and refused so far.
    pub fn oauth_counts(&self) -> OAuthCounts {
        self.oauth.lock().counts
    }

    /// Ends every access token issued so far, as Asana does when it revokes
    /// them: requests carrying one get 401 until a new one is obtained.
    pub fn expire_access_tokens(&self) {
        self.oauth.lock().tokens.clear();
    }

    /// Revokes the refresh token (as a user removing the app's access
    /// does): grants answer `invalid_grant`, and the access tokens issued
    /// with it stop working.
    pub fn revoke_refresh_token(&self) {
        let mut state = self.oauth.lock();
        state.refresh_revoked = true;
        state.tokens.clear();
    }
}

/// The token endpoint and the tokens it issued.
pub(crate) struct Endpoint {
    app: Option<App>,
    lifetime: Duration,
    clock: Clock,
    state: Mutex<Issued>,
}

#[derive(Default)]
struct Issued {
    /// Access token → when it expires (sandbox time).
    tokens: HashMap<String, DateTime<Utc>>,
    refresh_revoked: bool,
    counts: OAuthCounts,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthEndpoint")
            .field("enabled", &self.app.is_some())
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub(crate) fn new(settings: Settings, clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            app: settings.app,
            lifetime: settings.lifetime.unwrap_or(DEFAULT_LIFETIME),
            clock,
            state: Mutex::new(Issued::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Issued> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the API takes this bearer token: any token without an OAuth
    /// app, otherwise one issued here that has not expired.
    pub(crate) fn accepts(&self, token: &str) -> bool {
        if self.app.is_none() {
            return true;
        }
        let now = self.clock.now();
        let mut state = self.lock();
        let valid = state.tokens.get(token).is_some_and(|expiry| now < *expiry);
        if !valid {
            state.counts.refused_tokens += 1;
        }
        valid
    }

    /// A refresh-token grant: the answer Asana would give.
    fn grant(&self, form: &[(String, String)]) -> Response {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let Some(app) = &self.app else {
            self.lock().counts.refused_grants += 1;
            return refusal(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "this sandbox plays no OAuth app: start it with SandboxBuilder::oauth",
            );
        };
        let refused = if field("client_id") != Some(&app.client_id)
            || field("client_secret") != Some(&app.client_secret)
        {
            Some((
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The client id or client secret is wrong.",
            ))
        } else if field("grant_type") != Some("refresh_token") {
            Some((
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The sandbox supports the refresh_token grant only.",
            ))
        } else if field("refresh_token") != Some(&app.refresh_token) || self.lock().refresh_revoked
        {
            Some((
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The refresh token is invalid or has been revoked.",
            ))
        } else {
            None
        };
        if let Some((status, code, description)) = refused {
            self.lock().counts.refused_grants += 1;
            return refusal(status, code, description);
        }
        let now = self.clock.now();
        let expiry =
            now + chrono::Duration::from_std(self.lifetime).unwrap_or(chrono::Duration::MAX);
        let access_token = format!("sandbox-access-{}", random_hex(16));
        {
            let mut state = self.lock();
            state.tokens.retain(|_, expires| *expires > now);
            state.tokens.insert(access_token.clone(), expiry);
            state.counts.issued += 1;
        }
        let expires_in = self.clock.real(self.lifetime).as_secs().max(1);
        json_answer(
            StatusCode::OK,
            json!({
                "access_token": access_token,
                "token_type": "bearer",
                "expires_in": expires_in,
                "data": { "id": seed::USER, "gid": seed::USER, "name": "Sandbox User" },
            }),
        )
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

/// An OAuth error answer (RFC 6749 §5.2), as Asana's token endpoint gives.
fn refusal(status: StatusCode, code: &str, description: &str) -> Response {
    json_answer(
        status,
        json!({ "error": code, "error_description": description }),
    )
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The token endpoint's route, for any router state.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(endpoint: Arc<Endpoint>) -> Router<S> {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .with_state(endpoint)
}

async fn token(State(endpoint): State<Arc<Endpoint>>, body: Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    endpoint.grant(&form)
}
