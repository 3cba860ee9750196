//! Where a [`crate::Client`]'s access token comes from: a fixed [`Token`]
//! (a personal access token, which does not expire), or an OAuth refresh
//! token ([`OAuthRefresh`]) that the client trades for access tokens at
//! Asana's token endpoint whenever the current one is about to expire (they
//! last an hour), and once more when Asana answers 401.
//!
//! The refresh-token grant itself is the `oauth2` crate's; this module gives
//! it the client's own `reqwest` client, keeps one refresh in flight at a
//! time for all the requests of a client, and turns its failures into an
//! [`AuthError`] that names no secret.
//!
//! Secrets stay out of every `Debug` output, error message and tracing
//! field: the client id and the token endpoint's error codes are the most
//! any of them shows, and the `Authorization` headers built here are marked
//! sensitive.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AsyncHttpClient, AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet,
    HttpClientError, HttpRequest, HttpResponse, RefreshToken, RequestTokenError, TokenResponse,
    TokenUrl,
};
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use tokio::time::Instant;

/// Asana's OAuth token endpoint (`POST`, form-encoded), where refresh tokens
/// are traded for access tokens.
pub const ASANA_TOKEN_URL: &str = "https://app.asana.com/-/oauth_token";

/// How long before its expiry an OAuth access token is replaced: 5 minutes
/// (for a token that lives less than twice as long, half its lifetime).
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The lifetime assumed for an access token whose answer has no
/// `expires_in`: Asana's hour.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);

/// After a refresh failed while the current token was still valid, how
/// long requests keep using it before the next attempt.
const RETRY_REFRESH_AFTER: Duration = Duration::from_secs(10);

/// An Asana access token, sent as `Authorization: Bearer …`.
///
/// Its `Debug` output never shows the token, and the header built from it is
/// marked sensitive so that HTTP-level logging redacts it too.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    kind: TokenKind,
    secret: String,
}

/// Where a [`Token`] came from; both kinds are sent the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenKind {
    /// A personal access token from the Asana developer console.
    PersonalAccessToken,
    /// An OAuth access token obtained for a user.
    OAuthAccessToken,
}

impl Token {
    /// A personal access token.
    pub fn personal_access_token(token: impl Into<String>) -> Self {
        Self {
            kind: TokenKind::PersonalAccessToken,
            secret: token.into(),
        }
    }

    /// An OAuth access token. It is used as it is, never refreshed: for a
    /// client that runs longer than the token's hour, use [`OAuthRefresh`].
    pub fn oauth_access_token(token: impl Into<String>) -> Self {
        Self {
            kind: TokenKind::OAuthAccessToken,
            secret: token.into(),
        }
    }

    /// Which kind of token this is.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The sensitive `Authorization` header; `None` when the token holds
    /// characters a header cannot.
    pub(crate) fn header(&self) -> Option<HeaderValue> {
        bearer(&self.secret)
    }
}

impl From<String> for Token {
    /// Treats the string as a personal access token.
    fn from(token: String) -> Self {
        Token::personal_access_token(token)
    }
}

impl From<&str> for Token {
    /// Treats the string as a personal access token.
    fn from(token: &str) -> Self {
        Token::personal_access_token(token)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `Bearer <token>`, marked sensitive.
fn bearer(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {}", token.trim())).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// An OAuth app's credentials and a user's refresh token: the client trades
/// them for access tokens at Asana's token endpoint
/// (`grant_type=refresh_token`), before each access token expires and once
/// more when Asana refuses one with 401.
///
/// `Debug` shows the client id and the token URL only.
///
/// ```
/// use std::time::Duration;
/// use asana_webhooks::{Client, OAuthRefresh};
///
/// let client = Client::builder()
///     .oauth(
///         OAuthRefresh::new("1204519866405712", "app-client-secret", "1/refresh-token")
///             // Asana's own endpoint unless told otherwise; a sandbox's in tests.
///             .token_url(asana_webhooks::ASANA_TOKEN_URL)
///             .refresh_margin(Duration::from_secs(300)),
///     )
///     .build()?;
/// # Ok::<(), asana_webhooks::Error>(())
/// ```
#[derive(Clone)]
pub struct OAuthRefresh {
    client_id: ClientId,
    client_secret: ClientSecret,
    refresh_token: RefreshToken,
    token_url: String,
    margin: Duration,
}

impl OAuthRefresh {
    /// The OAuth app's client id and client secret (Asana's developer
    /// console) and a refresh token the app obtained for a user.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> Self {
        Self {
            client_id: ClientId::new(client_id.into()),
            client_secret: ClientSecret::new(client_secret.into()),
            refresh_token: RefreshToken::new(refresh_token.into()),
            token_url: ASANA_TOKEN_URL.to_string(),
            margin: DEFAULT_REFRESH_MARGIN,
        }
    }

    /// The token endpoint; default [`ASANA_TOKEN_URL`]. Point it at a
    /// sandbox's (`Sandbox::token_url`, feature `sandbox`) in tests.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = url.into();
        self
    }

    /// How long before its expiry an access token is replaced; default
    /// [`DEFAULT_REFRESH_MARGIN`]. A token that lives less than twice the
    /// margin is replaced halfway through its life.
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The OAuth app's client id (not a secret).
    pub fn client_id(&self) -> &str {
        self.client_id.as_str()
    }
}

impl fmt::Debug for OAuthRefresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthRefresh")
            .field("client_id", &self.client_id.as_str())
            .field("client_secret", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("token_url", &self.token_url)
            .field("refresh_margin", &self.margin)
            .finish()
    }
}

/// Where a client's access token comes from; give it to
/// [`crate::ClientBuilder::token_source`] (or use
/// [`crate::ClientBuilder::token`] and [`crate::ClientBuilder::oauth`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TokenSource {
    /// One token for the client's whole life: a personal access token (they
    /// do not expire) or an OAuth access token (which does, after an hour).
    Fixed(Token),
    /// Access tokens obtained and refreshed with an OAuth refresh token.
    OAuth(OAuthRefresh),
}

impl From<Token> for TokenSource {
    fn from(token: Token) -> Self {
        TokenSource::Fixed(token)
    }
}

impl From<OAuthRefresh> for TokenSource {
    fn from(refresh: OAuthRefresh) -> Self {
        TokenSource::OAuth(refresh)
    }
}

/// Why no OAuth access token could be obtained: what [`crate::Error::Auth`]
/// holds. Its messages name no secret (the client secret, the refresh token
/// and access tokens never appear in them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The token endpoint refused the refresh with an OAuth error code:
    /// `invalid_client` (wrong client id or secret), `invalid_grant` (the
    /// refresh token is revoked, expired or another app's), …
    #[error(
        "Asana refused to refresh the OAuth access token: {code}{}; {}",
        description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default(),
        refused_hint(code)
    )]
    Refused {
        /// The OAuth error code, such as `invalid_grant`.
        code: String,
        /// The endpoint's `error_description`, when it gave one.
        description: Option<String>,
    },
    /// The token endpoint could not be reached, or broke off its answer.
    #[error(
        "could not reach the OAuth token endpoint {token_url} to refresh the access token: {message}; requests fail until it answers, so retry later"
    )]
    Unreachable {
        /// The token endpoint.
        token_url: String,
        /// What went wrong on the way.
        message: String,
    },
    /// The token endpoint answered with something that is not a token nor
    /// an OAuth error.
    #[error(
        "the OAuth token endpoint {token_url} answered{} with something other than a token: {message}; check the token URL",
        status.map(|s| format!(" {s}")).unwrap_or_default()
    )]
    BadAnswer {
        /// The token endpoint.
        token_url: String,
        /// The HTTP status of the answer, when one arrived.
        status: Option<u16>,
        /// What did not match.
        message: String,
    },
}

fn refused_hint(code: &str) -> &'static str {
    match code {
        "invalid_client" | "unauthorized_client" => {
            "check the OAuth app's client id and client secret (Asana's developer console)"
        }
        "invalid_grant" => {
            "the refresh token is revoked, expired or was issued to another app: have the user authorize the app again and configure the new refresh token"
        }
        _ => "check the OAuth settings: client id, client secret, refresh token and token URL",
    }
}

impl AuthError {
    /// Whether trying again later could succeed: the endpoint was
    /// unreachable or answered with a server error.
    pub fn is_retryable(&self) -> bool {
        match self {
            AuthError::Unreachable { .. } => true,
            AuthError::BadAnswer { status, .. } => {
                status.is_none_or(|s| s >= 500 || s == StatusCode::TOO_MANY_REQUESTS.as_u16())
            }
            AuthError::Refused { .. } => false,
        }
    }

    /// The OAuth error code of a refused refresh, such as `invalid_grant`.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            AuthError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Carried by the answer the transport makes up when no access token could
/// be had, so that [`crate::Error::from_generated`] returns
/// [`crate::Error::Auth`].
#[derive(Debug, Clone)]
pub(crate) struct AuthFailure(pub(crate) AuthError);

/// Marks a 401 that came after the access token had just been refreshed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefusedAfterRefresh;

/// The answer standing in for a request that could not be authorized:
/// a 401 in Asana's error format (for callers of the generated client) that
/// carries the [`AuthError`] itself.
pub(crate) fn failure_response(error: AuthError) -> reqwest::Response {
    let body = serde_json::json!({ "errors": [{ "message": error.to_string() }] }).to_string();
    let mut response = oauth2::http::Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(body)
        .expect("a static status and header");
    response.extensions_mut().insert(AuthFailure(error));
    reqwest::Response::from(response)
}

/// The header to send, and which access token it holds.
#[derive(Clone)]
pub(crate) struct Authorization {
    pub(crate) header: HeaderValue,
    generation: u64,
}

/// A client's token source at work.
#[derive(Clone)]
pub(crate) enum Authorizer {
    Fixed(HeaderValue),
    OAuth(Arc<Refresher>),
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authorizer::Fixed(_) => f.write_str("Fixed(Bearer <redacted>)"),
            Authorizer::OAuth(refresher) => f
                .debug_struct("OAuth")
                .field("client_id", &refresher.client_id)
                .field("token_url", &refresher.token_url)
                .field("refreshes", &refresher.refreshes.load(Ordering::Relaxed))
                .finish_non_exhaustive(),
        }
    }
}

impl Authorizer {
    /// A fixed token's header (already marked sensitive).
    pub(crate) fn fixed(header: HeaderValue) -> Self {
        debug_assert!(header.is_sensitive());
        Authorizer::Fixed(header)
    }

    /// An OAuth source; refreshes go through `http`. Fails when the token
    /// URL is not an http(s) URL.
    pub(crate) fn oauth(refresh: OAuthRefresh, http: reqwest::Client) -> Result<Self, String> {
        let url = url::Url::parse(&refresh.token_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                format!(
                    "the OAuth token URL `{}` is not an http(s) URL",
                    refresh.token_url
                )
            })?;
        let oauth = BasicClient::new(refresh.client_id.clone())
            .set_client_secret(refresh.client_secret.clone())
            // Asana takes client_id and client_secret in the form body.
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(TokenUrl::from_url(url));
        Ok(Authorizer::OAuth(Arc::new(Refresher {
            oauth,
            client_id: refresh.client_id.as_str().to_string(),
            client_secret: refresh.client_secret,
            refresh_token: Mutex::new(refresh.refresh_token),
            token_url: refresh.token_url,
            margin: refresh.margin,
            http,
            current: RwLock::new(None),
            attempts: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(Attempts::default()),
        })))
    }

    /// Whether a 401 answer is worth a refresh and a second try.
    pub(crate) fn refreshes(&self) -> bool {
        matches!(self, Authorizer::OAuth(_))
    }

    /// The header for the next request: a fixed token's, or the current
    /// OAuth access token, refreshed first when it is about to expire.
    pub(crate) async fn current(&self) -> Result<Authorization, AuthError> {
        match self {
            Authorizer::Fixed(header) => Ok(Authorization {
                header: header.clone(),
                generation: 0,
            }),
            Authorizer::OAuth(refresher) => refresher.current().await,
        }
    }

    /// A new access token after Asana refused the one in `refused` with 401
    /// (unless another request has replaced it already).
    pub(crate) async fn after_unauthorized(
        &self,
        refused: &Authorization,
    ) -> Result<Authorization, AuthError> {
        match self {
            Authorizer::Fixed(_) => Ok(refused.clone()),
            Authorizer::OAuth(refresher) => refresher.after_unauthorized(refused.generation).await,
        }
    }
}

/// The access token in use.
#[derive(Clone)]
struct Current {
    header: HeaderValue,
    /// When to replace it.
    refresh_at: Instant,
    /// When it stops working.
    expires_at: Instant,
    generation: u64,
}

/// The outcome of the latest refresh attempt, for the requests that waited
/// on it.
#[derive(Default)]
struct Attempts {
    last_failure: Option<AuthError>,
    /// While the current token is still valid after a failed refresh, no
    /// new attempt before this.
    not_before: Option<Instant>,
}

/// Obtains and refreshes OAuth access tokens, one refresh at a time for all
/// the requests of a client.
pub(crate) struct Refresher {
    oauth: BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>,
    client_id: String,
    client_secret: ClientSecret,
    refresh_token: Mutex<RefreshToken>,
    token_url: String,
    margin: Duration,
    http: reqwest::Client,
    current: RwLock<Option<Current>>,
    /// Refresh attempts finished (read before waiting for `refreshing`, to
    /// tell whether an attempt ended meanwhile).
    attempts: AtomicU64,
    /// Access tokens obtained.
    refreshes: AtomicU64,
    /// Held for the whole of a refresh: one in flight at a time.
    refreshing: tokio::sync::Mutex<Attempts>,
}

impl Refresher {
    fn snapshot(&self) -> Option<Current> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn current(&self) -> Result<Authorization, AuthError> {
        let now = Instant::now();
        match self.snapshot() {
            Some(current) if now < current.refresh_at => Ok(authorization(&current)),
            _ => {
                self.refresh(|current| Instant::now() < current.refresh_at, true)
                    .await
            }
        }
    }

    async fn after_unauthorized(&self, refused: u64) -> Result<Authorization, AuthError> {
        self.refresh(|current| current.generation != refused, false)
            .await
    }

    /// Refreshes unless, once it is this request's turn, the token in use
    /// is `good_enough` already (another request refreshed it), or the
    /// attempt that ran meanwhile failed (its error is shared). With
    /// `keep_valid`, a token that has not expired yet is used when a
    /// refresh fails for a reason that may pass.
    async fn refresh(
        &self,
        good_enough: impl Fn(&Current) -> bool,
        keep_valid: bool,
    ) -> Result<Authorization, AuthError> {
        let seen = self.attempts.load(Ordering::SeqCst);
        let mut attempts = self.refreshing.lock().await;
        let current = self.snapshot();
        let now = Instant::now();
        let still_valid = current
            .as_ref()
            .filter(|c| keep_valid && now < c.expires_at);
        if let Some(current) = current.as_ref().filter(|c| good_enough(c)) {
            return Ok(authorization(current));
        }
        if self.attempts.load(Ordering::SeqCst) != seen
            && let Some(error) = &attempts.last_failure
        {
            return match still_valid {
                Some(current) if error.is_retryable() => Ok(authorization(current)),
                _ => Err(error.clone()),
            };
        }
        if let (Some(current), Some(not_before)) = (still_valid, attempts.not_before)
            && now < not_before
        {
            return Ok(authorization(current));
        }
        attempts.last_failure = None;
        attempts.not_before = None;
        let fetched = self.fetch().await;
        // Counted once finished, so that a request that began waiting while
        // this attempt ran sees it as one it may share.
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match fetched {
            Ok((header, lifetime)) => {
                let received = Instant::now();
                let generation = current.map_or(0, |c| c.generation) + 1;
                let next = Current {
                    header,
                    refresh_at: received + lifetime - self.margin.min(lifetime / 2),
                    expires_at: received + lifetime,
                    generation,
                };
                let authorized = authorization(&next);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(next);
                self.refreshes.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    client_id = %self.client_id,
                    expires_in_s = lifetime.as_secs(),
                    "obtained a new OAuth access token"
                );
                Ok(authorized)
            }
            Err(error) => {
                attempts.last_failure = Some(error.clone());
                match still_valid {
                    Some(current) if error.is_retryable() => {
                        tracing::warn!(
                            client_id = %self.client_id,
                            %error,
                            "refreshing the OAuth access token failed; the current one is still valid and stays in use"
                        );
                        attempts.not_before = Some(Instant::now() + RETRY_REFRESH_AFTER);
                        Ok(authorization(current))
                    }
                    _ => {
                        tracing::warn!(
                            client_id = %self.client_id,
                            %error,
                            "refreshing the OAuth access token failed"
                        );
                        Err(error)
                    }
                }
            }
        }
    }

    /// One refresh-token grant at the token endpoint: the new access
    /// token's header and lifetime. A rotated refresh token replaces the
    /// old one.
    async fn fetch(&self) -> Result<(HeaderValue, Duration), AuthError> {
        let refresh_token = self
            .refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let http = TokenHttp {
            http: self.http.clone(),
            status: Mutex::new(None),
        };
        let answer = self
            .oauth
            .exchange_refresh_token(&refresh_token)
            .request_async(&http)
            .await;
        let status = http
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|s| s.as_u16());
        let token = answer.map_err(|e| self.describe(e, status))?;
        let header = bearer(token.access_token().secret()).ok_or_else(|| AuthError::BadAnswer {
            token_url: self.token_url.clone(),
            status,
            message: "the access token holds characters not allowed in an HTTP header".into(),
        })?;
        if let Some(rotated) = token.refresh_token() {
            *self.refresh_token.lock().unwrap_or_else(|p| p.into_inner()) = rotated.clone();
        }
        Ok((header, token.expires_in().unwrap_or(ASSUMED_LIFETIME)))
    }

    /// The `oauth2` crate's error, with nothing of the request's secrets or
    /// of the answer's body in it.
    fn describe(
        &self,
        error: RequestTokenError<HttpClientError<reqwest::Error>, BasicErrorResponse>,
        status: Option<u16>,
    ) -> AuthError {
        let bad_answer = |message: String| AuthError::BadAnswer {
            token_url: self.token_url.clone(),
            status,
            message,
        };
        match error {
            RequestTokenError::ServerResponse(response) => AuthError::Refused {
                code: response.error().as_ref().to_string(),
                description: response
                    .error_description()
                    .map(|d| self.scrub(d.chars().take(300).collect())),
            },
            RequestTokenError::Request(HttpClientError::Reqwest(e)) => AuthError::Unreachable {
                token_url: self.token_url.clone(),
                message: crate::error_chain::source_chain(&e.without_url()),
            },
            RequestTokenError::Request(e) => AuthError::Unreachable {
                token_url: self.token_url.clone(),
                message: e.to_string(),
            },
            RequestTokenError::Parse(e, _body) => {
                let path = e.path().to_string();
                bad_answer(match e.inner().classify() {
                    serde_json::error::Category::Data if path != "." => {
                        format!("`{path}` is missing or has the wrong type")
                    }
                    serde_json::error::Category::Data => "a JSON body of the wrong shape".into(),
                    _ => "a body that is not JSON".into(),
                })
            }
            RequestTokenError::Other(message) => bad_answer(self.scrub(message)),
        }
    }

    /// `text` with the client secret and the refresh token blacked out,
    /// should the endpoint have echoed either.
    fn scrub(&self, mut text: String) -> String {
        let refresh_token = self
            .refresh_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .secret()
            .clone();
        for secret in [self.client_secret.secret(), &refresh_token] {
            if !secret.trim().is_empty() {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }
}

/// The `oauth2` crate's HTTP client trait over the workspace's `reqwest`
/// (its own `reqwest` feature pins an older major version). It notes the
/// answer's status, which the crate's errors do not keep.
struct TokenHttp {
    http: reqwest::Client,
    status: Mutex<Option<StatusCode>>,
}

impl<'c> AsyncHttpClient<'c> for TokenHttp {
    type Error = HttpClientError<reqwest::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(Box::new)?;
            let response = self.http.execute(request).await.map_err(Box::new)?;
            *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(response.status());
            let mut answer = oauth2::http::Response::builder()
                .status(response.status())
                .version(response.version());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await.map_err(Box::new)?;
            answer.body(body.to_vec()).map_err(HttpClientError::Http)
        })
    }
}

fn authorization(current: &Current) -> Authorization {
    Authorization {
        header: current.header.clone(),
        generation: current.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_secret() {
        let refresh = OAuthRefresh::new("app-id", "app-secret-xyz", "refresh-xyz");
        let source = TokenSource::from(refresh.clone());
        let authorizer = Authorizer::oauth(refresh.clone(), reqwest::Client::new()).unwrap();
        let text = format!("{refresh:?} {source:?} {authorizer:?}");
        assert!(!text.contains("xyz"), "{text}");
        assert!(text.contains("app-id"), "{text}");
        let fixed = Authorizer::fixed(Token::from("pat-xyz").header().unwrap());
        assert!(!format!("{fixed:?}").contains("xyz"));
    }

    #[test]
    fn a_token_url_that_is_not_http_is_refused() {
        let refresh = OAuthRefresh::new("a", "b", "c").token_url("ftp://x/token");
        let err = Authorizer::oauth(refresh, reqwest::Client::new()).unwrap_err();
        assert!(err.contains("not an http(s) URL"), "{err}");
    }

    #[test]
    fn refused_refreshes_say_what_to_do() {
        let revoked = AuthError::Refused {
            code: "invalid_grant".into(),
            description: None,
        };
        assert!(revoked.to_string().contains("authorize the app again"));
        assert!(!revoked.is_retryable());
        let wrong = AuthError::Refused {
            code: "invalid_client".into(),
            description: Some("bad secret".into()),
        };
        assert!(wrong.to_string().contains("client secret"), "{wrong}");
        assert_eq!(wrong.oauth_error(), Some("invalid_client"));
        let down = AuthError::BadAnswer {
            token_url: ASANA_TOKEN_URL.into(),
            status: Some(503),
            message: "a body that is not JSON".into(),
        };
        assert!(down.is_retryable());
        assert!(down.to_string().contains("answered 503"), "{down}");
    }

    #[test]
    fn the_stand_in_answer_carries_the_error() {
        let error = AuthError::Refused {
            code: "invalid_grant".into(),
            description: None,
        };
        let response = failure_response(error.clone());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.extensions().get::<AuthFailure>().map(|f| &f.0),
            Some(&error)
        );
    }
}
