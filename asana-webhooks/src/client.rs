//! Building a [`Client`]: token source, base URL, user agent, TLS and
//! timeouts; and the hooks every request runs through.

use std::time::Duration;

use progenitor_client::{ClientHooks, OperationInfo};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue, USER_AGENT};

use crate::auth::{self, Authorizer, OAuthRefresh, Token, TokenSource};
use crate::error::Error;
use crate::generated;
use crate::request_settings::RequestSettings;
use crate::retry::{
    self, ASANA_MAX_CONCURRENT_READS, ASANA_MAX_CONCURRENT_WRITES, Limits, RetryPolicy,
};
use crate::wire_fixes;

/// Asana's production API.
pub const DEFAULT_BASE_URL: &str = "https://app.asana.com/api/1.0";

/// The user agent sent unless another one is configured.
pub const DEFAULT_USER_AGENT: &str = concat!("asana-webhooks/", env!("CARGO_PKG_VERSION"));

/// A client for Asana's webhook API.
///
/// Cheap to clone: clones share one connection pool. See the crate
/// documentation for the operations.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) api: generated::Client,
}

impl Client {
    /// A client for Asana's production API with default settings.
    ///
    /// ```
    /// let client = asana_webhooks::Client::new("0/123abc")?;
    /// # Ok::<(), asana_webhooks::Error>(())
    /// ```
    pub fn new(token: impl Into<Token>) -> Result<Self, Error> {
        Self::builder().token(token).build()
    }

    /// A builder for every setting.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &str {
        &self.api.baseurl
    }

    /// The generated progenitor client underneath, for anything this crate
    /// does not wrap. Requests made through it still go through the same
    /// authentication and wire hooks.
    pub fn generated(&self) -> &generated::Client {
        &self.api
    }
}

/// Settings for a [`Client`]; start with [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    source: Option<TokenSource>,
    base_url: String,
    user_agent: String,
    timeout: Duration,
    connect_timeout: Duration,
    root_certificates: Vec<reqwest::Certificate>,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    max_reads: Option<usize>,
    max_writes: Option<usize>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            source: None,
            base_url: DEFAULT_BASE_URL.to_string(),
            user_agent: DEFAULT_USER_AGENT.to_string(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            root_certificates: Vec::new(),
            http: None,
            retry: RetryPolicy::default(),
            max_reads: Some(ASANA_MAX_CONCURRENT_READS),
            max_writes: Some(ASANA_MAX_CONCURRENT_WRITES),
        }
    }
}

impl ClientBuilder {
    /// A fixed access token: a personal access token, or an OAuth access
    /// token used as it is. This, [`ClientBuilder::oauth`] or
    /// [`ClientBuilder::token_source`] is required; the last call wins.
    pub fn token(mut self, token: impl Into<Token>) -> Self {
        self.source = Some(TokenSource::Fixed(token.into()));
        self
    }

    /// OAuth access tokens obtained with a refresh token, for a client that
    /// runs longer than an access token's hour: a token is replaced before
    /// it expires, and once more when Asana answers 401 (the request is then
    /// sent again, once). One refresh runs at a time, shared by every
    /// request of the client (and of its clones). A refresh that fails
    /// makes the request fail with [`Error::Auth`].
    ///
    /// Refreshes use the same HTTP settings as the API requests (the
    /// [`ClientBuilder::reqwest_client`] when one is given; otherwise a
    /// client with this builder's timeouts and certificates that does not
    /// follow redirects, so the secrets go nowhere but the token URL).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), asana_webhooks::Error> {
    /// use asana_webhooks::{Client, OAuthRefresh};
    ///
    /// let client = Client::builder()
    ///     .oauth(OAuthRefresh::new(
    ///         std::env::var("ASANA_CLIENT_ID").unwrap_or_default(),
    ///         std::env::var("ASANA_CLIENT_SECRET").unwrap_or_default(),
    ///         std::env::var("ASANA_REFRESH_TOKEN").unwrap_or_default(),
    ///     ))
    ///     .build()?;
    /// // Months later, still authorized: each request carries a current token.
    /// let page = client.get_webhooks("1331").send().await?;
    /// # Ok(()) }
    /// ```
    pub fn oauth(mut self, refresh: OAuthRefresh) -> Self {
        self.source = Some(TokenSource::OAuth(refresh));
        self
    }

    /// Where the access token comes from: a [`Token`] or an
    /// [`OAuthRefresh`] (see [`ClientBuilder::token`] and
    /// [`ClientBuilder::oauth`]).
    pub fn token_source(mut self, source: impl Into<TokenSource>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Where the API lives; default [`DEFAULT_BASE_URL`]. Point it at a local
    /// server in tests. A trailing `/` is ignored.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// The `User-Agent` header; default [`DEFAULT_USER_AGENT`].
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// The limit for a whole request, answer included; default 60 s.
    /// (createWebhook waits for the handshake, so keep it generous.)
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The limit for opening a connection; default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts one more root certificate besides the system's, for a TLS
    /// proxy or a local test server.
    pub fn add_root_certificate(mut self, certificate: reqwest::Certificate) -> Self {
        self.root_certificates.push(certificate);
        self
    }

    /// Uses a caller-built `reqwest::Client` (connection pool, proxy, TLS);
    /// the timeout and certificate settings of this builder are then not used.
    pub fn reqwest_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// How failed requests are retried; default [`RetryPolicy::default`].
    /// [`RetryPolicy::none`] switches retrying off.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The most GET requests in flight at once; further ones wait in the
    /// client. Default 50, Asana's per-token limit; `None` for no limit.
    pub fn max_concurrent_reads(mut self, limit: Option<usize>) -> Self {
        self.max_reads = limit;
        self
    }

    /// The most POST, PUT and DELETE requests in flight at once. Default 15,
    /// Asana's per-token limit; `None` for no limit.
    pub fn max_concurrent_writes(mut self, limit: Option<usize>) -> Self {
        self.max_writes = limit;
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, Error> {
        let source = self.source.ok_or_else(|| {
            Error::Config(
                "no token: call ClientBuilder::token with an Asana access token, or ClientBuilder::oauth with a refresh token".into(),
            )
        })?;
        let base_url = self.base_url.trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base_url)
            .map_err(|e| Error::Config(format!("base URL `{base_url}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "base URL `{base_url}` must use http or https"
            )));
        }
        let user_agent = HeaderValue::try_from(self.user_agent)
            .map_err(|_| Error::Config("the user agent is not a valid header value".into()))?;
        let http_client = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.connect_timeout)
                .tls_certs_merge(self.root_certificates.iter().cloned())
                .redirect(redirects)
                .build()
                .map_err(|e| Error::Config(format!("the HTTP client could not be built: {e}")))
        };
        let http = match &self.http {
            Some(http) => http.clone(),
            None => http_client(reqwest::redirect::Policy::default())?,
        };
        let auth = match source {
            TokenSource::Fixed(token) => Authorizer::fixed(token.header().ok_or_else(|| {
                Error::Config("the token contains characters not allowed in an HTTP header".into())
            })?),
            TokenSource::OAuth(refresh) => {
                let token_http = match &self.http {
                    Some(http) => http.clone(),
                    None => http_client(reqwest::redirect::Policy::none())?,
                };
                Authorizer::oauth(refresh, token_http).map_err(Error::Config)?
            }
        };
        let limits = Limits::new(self.max_reads, self.max_writes);
        let settings = RequestSettings::new(auth, user_agent, self.retry, limits);
        Ok(Client {
            api: generated::Client::new_with_client(&base_url, http, settings),
        })
    }
}

/// The hooks every generated operation runs through: the wire fixes of
/// [`crate::wire_fixes`] and the user agent (in `pre`); authentication, the
/// retries and concurrency limits of [`crate::retry`], and the one refresh
/// and second try after a 401 with an OAuth token source (in `exec`). The
/// generated client is built with `HooksMode::Expected`, so an operation
/// that bypassed them would not compile.
///
/// Authentication happens in `exec` rather than `pre` because a token
/// source can fail (a refused refresh), and `pre` can only fail with
/// progenitor's string errors: `exec` answers such a request with a
/// stand-in 401 that carries the [`crate::AuthError`], which
/// [`Error::from_generated`] turns into [`Error::Auth`].
impl ClientHooks<RequestSettings> for generated::Client {
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        _info: &OperationInfo,
    ) -> Result<(), progenitor_client::Error<E>> {
        wire_fixes::join_comma_params(request.url_mut());
        let headers = request.headers_mut();
        wire_fixes::strip_undeclared_headers(headers);
        headers.insert(USER_AGENT, self.inner.user_agent.clone());
        Ok(())
    }

    async fn exec(
        &self,
        request: reqwest::Request,
        info: &OperationInfo,
    ) -> reqwest::Result<reqwest::Response> {
        // Boxed: the retry loop holds reqwest's request future and a spare
        // request; inline, they would make every operation's future (and
        // each move of it) kilobytes larger.
        Box::pin(send_authorized(self, request, info.operation_id)).await
    }
}

/// Sends `request` with the token source's current `Authorization`
/// through the retry loop. With an OAuth source, a 401 answer gets one
/// refresh (shared with any other request that saw the same token refused)
/// and one more try; a 401 to that try is marked, for its error's hint.
async fn send_authorized(
    api: &generated::Client,
    mut request: reqwest::Request,
    operation: &'static str,
) -> reqwest::Result<reqwest::Response> {
    let settings = &api.inner;
    let authorization = match settings.auth.current().await {
        Ok(authorization) => authorization,
        Err(error) => return Ok(auth::failure_response(error)),
    };
    request
        .headers_mut()
        .insert(AUTHORIZATION, authorization.header.clone());
    let second_try = if settings.auth.refreshes() {
        retry::spare_copy(&request)
    } else {
        None
    };
    let outcome = send(api, request, operation).await;
    let Some(mut second_try) = second_try else {
        return outcome;
    };
    let unauthorized = outcome
        .as_ref()
        .is_ok_and(|response| response.status() == StatusCode::UNAUTHORIZED);
    if !unauthorized {
        return outcome;
    }
    drop(outcome);
    tracing::info!(
        operation,
        "Asana refused the OAuth access token (401): refreshing it and sending the request once more"
    );
    let authorization = match settings.auth.after_unauthorized(&authorization).await {
        Ok(authorization) => authorization,
        Err(error) => return Ok(auth::failure_response(error)),
    };
    second_try
        .headers_mut()
        .insert(AUTHORIZATION, authorization.header);
    let mut outcome = send(api, second_try, operation).await;
    if let Ok(response) = &mut outcome
        && response.status() == StatusCode::UNAUTHORIZED
    {
        tracing::warn!(
            operation,
            "Asana refused a freshly refreshed OAuth access token (401)"
        );
        response.extensions_mut().insert(auth::RefusedAfterRefresh);
    }
    outcome
}

/// One request through the retry loop and the concurrency limits.
async fn send(
    api: &generated::Client,
    request: reqwest::Request,
    operation: &'static str,
) -> reqwest::Result<reqwest::Response> {
    let settings = &api.inner;
    retry::execute(
        &api.client,
        &settings.retry,
        &settings.limits,
        request,
        operation,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let client = Client::new("0/very-secret-token").unwrap();
        let text = format!(
            "{client:?} {:?}",
            Token::oauth_access_token("0/very-secret-token")
        );
        assert!(!text.contains("very-secret-token"), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }

    #[test]
    fn bad_settings_are_refused_with_a_reason() {
        let no_token = Client::builder().build().unwrap_err().to_string();
        assert!(no_token.contains("no token"), "{no_token}");
        let bad_url = Client::builder()
            .token("t")
            .base_url("ftp://x")
            .build()
            .unwrap_err()
            .to_string();
        assert!(bad_url.contains("http or https"), "{bad_url}");
        let bad_token = Client::new("a\nb").unwrap_err().to_string();
        assert!(bad_token.contains("not allowed"), "{bad_token}");
    }
}
