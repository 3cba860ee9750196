//! Building a [`Client`]: token, base URL, user agent, TLS and timeouts.

use std::fmt;
use std::time::Duration;

use progenitor_client::{ClientHooks, OperationInfo};
use reqwest::header::{AUTHORIZATION, HeaderValue, USER_AGENT};

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

    /// An OAuth access token.
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

    fn header(&self) -> Result<HeaderValue, Error> {
        let mut value =
            HeaderValue::try_from(format!("Bearer {}", self.secret.trim())).map_err(|_| {
                Error::Config("the token contains characters not allowed in an HTTP header".into())
            })?;
        value.set_sensitive(true);
        Ok(value)
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
    token: Option<Token>,
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
            token: None,
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
    /// The access token (required).
    pub fn token(mut self, token: impl Into<Token>) -> Self {
        self.token = Some(token.into());
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
        let token = self.token.ok_or_else(|| {
            Error::Config("no token: call ClientBuilder::token with an Asana access token".into())
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
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.connect_timeout)
                .tls_certs_merge(self.root_certificates)
                .build()
                .map_err(|e| Error::Config(format!("the HTTP client could not be built: {e}")))?,
        };
        let limits = Limits::new(self.max_reads, self.max_writes);
        let settings = RequestSettings::new(token.header()?, user_agent, self.retry, limits);
        Ok(Client {
            api: generated::Client::new_with_client(&base_url, http, settings),
        })
    }
}

/// The hooks every generated operation runs through: authentication, the
/// wire fixes of [`crate::wire_fixes`], the user agent, and (in `exec`) the
/// retries and concurrency limits of [`crate::retry`]. The generated client
/// is built with `HooksMode::Expected`, so an operation that bypassed them
/// would not compile.
impl ClientHooks<RequestSettings> for generated::Client {
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        _info: &OperationInfo,
    ) -> Result<(), progenitor_client::Error<E>> {
        wire_fixes::join_comma_params(request.url_mut());
        let headers = request.headers_mut();
        wire_fixes::strip_undeclared_headers(headers);
        headers.insert(AUTHORIZATION, self.inner.authorization.clone());
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
        Box::pin(retry::execute(
            &self.client,
            &self.inner.retry,
            &self.inner.limits,
            request,
            info.operation_id,
        ))
        .await
    }
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
