//! The crate's one error type, and the decoder for Asana's error answers.
//!
//! Every non-2xx answer from Asana reaches [`ApiError::from_response`], with
//! its status and headers, whatever its body holds; `cargo xtask regen`
//! removes the error responses from the generated operations for that reason.

mod api;
#[cfg(feature = "receiver")]
mod handshake;

use std::time::Duration;

use reqwest::StatusCode;

pub use api::{ApiError, AsanaError};
#[cfg(feature = "receiver")]
pub use handshake::HandshakeError;

use crate::retry::{is_retryable_status, retry_after};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Asana (or a proxy in front of it) answered with a non-2xx status.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The request was refused before anything was sent, for example a page
    /// size outside `1..=100`.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The client could not be built from the settings given.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// No access token could be obtained: the OAuth refresh was refused
    /// (wrong client secret, revoked refresh token) or the token endpoint
    /// could not be reached. Nothing was sent to the API.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The request never got an answer: connection refused, TLS failure,
    /// timeout, or the connection broke while the body was read.
    #[error("could not reach Asana: {}", crate::error_chain::source_chain(.0))]
    Transport(#[source] reqwest::Error),
    /// Creating a webhook through its handshake failed after Asana answered,
    /// or timed out.
    #[cfg(feature = "receiver")]
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The secret store failed.
    #[error(transparent)]
    Store(#[from] crate::secrets::StoreError),
    /// A delivery's signature was refused.
    #[error(transparent)]
    Signature(#[from] crate::signature::SignatureError),
    /// A successful answer whose body does not have the documented shape.
    #[error("Asana's answer could not be decoded: {message}")]
    Decode {
        /// What did not match.
        message: String,
    },
}

impl Error {
    /// The HTTP status of an API error; `None` when no answer arrived.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Api(api) => Some(api.status()),
            Error::Transport(e) => e.status(),
            _ => None,
        }
    }

    /// Asana's `Retry-After`, present on 429 answers.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api(api) => api.retry_after(),
            _ => None,
        }
    }

    /// The API error, when this is one.
    pub fn as_api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(api) => Some(api),
            _ => None,
        }
    }

    /// Whether sending the same request again later could succeed: rate
    /// limits (429), Asana's transient server errors (500, 502, 503, 504),
    /// and connection failures or timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(api) => is_retryable_status(api.status()),
            Error::Transport(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            Error::Auth(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Awaits a generated operation, mapping its error into ours (see
/// [`Error::from_generated`]).
pub(crate) fn generated<T>(
    call: impl std::future::Future<
        Output = Result<progenitor_client::ResponseValue<T>, progenitor_client::Error<()>>,
    >,
) -> impl std::future::Future<Output = Result<progenitor_client::ResponseValue<T>, Error>> {
    // Both futures are large (kilobytes): boxed before the returned future
    // exists, the caller's future holds a pointer instead, and every move
    // of it copies far less.
    let call = Box::pin(call);
    async move {
        match call.await {
            Ok(response) => Ok(response),
            Err(e) => Err(Box::pin(Error::from_generated(e)).await),
        }
    }
}

impl Error {
    /// Maps an error of the generated client ([`crate::Client::generated`])
    /// into this crate's: a non-2xx answer becomes [`Error::Api`] with
    /// Asana's `errors` and `Retry-After` (its body is read here, hence
    /// `async`), a broken connection [`Error::Transport`], a body that does
    /// not decode [`Error::Decode`], a request for which no OAuth access
    /// token could be obtained [`Error::Auth`].
    ///
    /// ```no_run
    /// # async fn run(client: asana_webhooks::Client) -> Result<(), asana_webhooks::Error> {
    /// use asana_webhooks::Error;
    /// let answer = match client.generated().get_webhook().webhook_gid("12").send().await {
    ///     Ok(answer) => answer.into_inner(),
    ///     Err(e) => return Err(Error::from_generated(e).await),
    /// };
    /// println!("{:?}", answer.data.and_then(|webhook| webhook.target));
    /// # Ok(()) }
    /// ```
    pub async fn from_generated(error: progenitor_client::Error<()>) -> Error {
        use progenitor_client::Error as G;
        match error {
            G::InvalidRequest(message) => Error::InvalidRequest(message),
            G::Custom(message) => Error::Config(message),
            G::CommunicationError(e) | G::ResponseBodyError(e) | G::InvalidUpgrade(e) => {
                Error::Transport(e)
            }
            G::ErrorResponse(response) => Error::Api(ApiError::from_parts(
                response.status(),
                retry_after(response.headers()),
                b"",
            )),
            G::InvalidResponsePayload(body, e) => Error::Decode {
                message: format!(
                    "{e} in {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            },
            G::UnexpectedResponse(response) if response.status().is_success() => Error::Decode {
                message: format!("unexpected success status {}", response.status()),
            },
            G::UnexpectedResponse(response) => {
                let extensions = response.extensions();
                if let Some(failure) = extensions.get::<crate::auth::AuthFailure>() {
                    return Error::Auth(failure.0.clone());
                }
                let refreshed = extensions
                    .get::<crate::auth::RefusedAfterRefresh>()
                    .is_some();
                let api = ApiError::from_response(response).await;
                Error::Api(if refreshed {
                    api.refused_after_refresh()
                } else {
                    api
                })
            }
        }
    }
}
