//! The crate's one error type, and the decoder for Asana's error answers.
//!
//! Every non-2xx answer from Asana reaches [`ApiError::from_response`], with
//! its status and headers, whatever its body holds; `cargo xtask regen`
//! removes the error responses from the generated operations for that reason.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};

/// How much of a body that is not Asana's JSON is kept for the message.
const BODY_EXCERPT_CHARS: usize = 300;

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
    /// The request never got an answer: connection refused, TLS failure,
    /// timeout, or the connection broke while the body was read.
    #[error("could not reach Asana: {}", source_chain(.0))]
    Transport(#[source] reqwest::Error),
    /// Creating a webhook through its handshake failed after Asana answered,
    /// or timed out.
    #[cfg(feature = "receiver")]
    #[error(transparent)]
    Handshake(#[from] crate::handshake::HandshakeError),
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
            _ => false,
        }
    }
}

/// The statuses worth retrying.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// One entry of Asana's `errors` array.
///
/// Asana documents `message`, `help` and `phrase`; real bodies carry more
/// keys (`error`, `user_message`), which are kept in [`AsanaError::extra`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AsanaError {
    /// What went wrong, for example `Duplicated webhook`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where to read more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// 500 answers only: the phrase Asana support asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phrase: Option<String>,
    /// Any other key Asana sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<AsanaError>,
}

/// A non-2xx answer: its status, Asana's `errors`, and `Retry-After`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    status: StatusCode,
    errors: Vec<AsanaError>,
    retry_after: Option<Duration>,
    body_excerpt: Option<String>,
}

impl ApiError {
    /// Reads a non-2xx response. A body that is not Asana's JSON (an HTML
    /// page from a proxy, an empty body) is kept as a short excerpt.
    pub(crate) async fn from_response(response: reqwest::Response) -> Self {
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        Self::from_parts(status, retry_after, &body)
    }

    /// Builds the error from what an answer consists of.
    pub fn from_parts(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Self {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(parsed) => ApiError {
                status,
                errors: parsed.errors,
                retry_after,
                body_excerpt: None,
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let mut excerpt: String = text.chars().take(BODY_EXCERPT_CHARS).collect();
                if excerpt.len() < text.len() {
                    excerpt.push('…');
                }
                ApiError {
                    status,
                    errors: Vec::new(),
                    retry_after,
                    body_excerpt: Some(excerpt),
                }
            }
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Asana's `errors` array; empty when the body was not Asana's JSON.
    pub fn errors(&self) -> &[AsanaError] {
        &self.errors
    }

    /// The first error message, when Asana gave one.
    pub fn message(&self) -> Option<&str> {
        self.errors.iter().find_map(|e| e.message.as_deref())
    }

    /// The phrase of a 500 answer, to quote to Asana support.
    pub fn phrase(&self) -> Option<&str> {
        self.errors.iter().find_map(|e| e.phrase.as_deref())
    }

    /// How long Asana asked to wait (`Retry-After`, in seconds).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The start of the body when it was not Asana's JSON error format.
    pub fn body_excerpt(&self) -> Option<&str> {
        self.body_excerpt.as_deref()
    }

    /// Whether this is Asana's answer to creating a webhook that exists
    /// already (same resource and target for the same user).
    pub fn is_duplicate_webhook(&self) -> bool {
        self.status == StatusCode::FORBIDDEN
            && self
                .message()
                .is_some_and(|m| m.to_ascii_lowercase().contains("duplicate"))
    }

    /// What to do about this error, in one sentence, when there is advice.
    pub fn hint(&self) -> Option<&'static str> {
        Some(match self.status.as_u16() {
            401 => "check the token: it is missing, revoked or expired",
            402 => "this feature needs a paid Asana plan",
            403 if self.is_duplicate_webhook() => {
                "a webhook for this resource and target exists already: list the webhooks and reuse it, or delete it first"
            }
            403 => {
                "the token may lack access to the resource, or the target is refused (Asana rejects localhost and private hosts)"
            }
            404 => "the webhook or resource does not exist, or the token cannot see it",
            429 => "rate limited: wait for Retry-After before sending more",
            500 => {
                "Asana had an internal error: retry later, and quote the phrase to Asana support if it persists"
            }
            502..=504 => "Asana or a proxy in front of it is unavailable: retry later",
            _ => return None,
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Asana answered {}", self.status)?;
        let messages: Vec<&str> = self
            .errors
            .iter()
            .filter_map(|e| e.message.as_deref())
            .collect();
        if !messages.is_empty() {
            write!(f, ": {}", messages.join("; "))?;
        } else if let Some(body) = self.body_excerpt.as_deref().filter(|b| !b.is_empty()) {
            write!(f, " with a body that is not Asana's JSON: {body}")?;
        }
        if let Some(phrase) = self.phrase() {
            write!(f, " (error phrase for Asana support: \"{phrase}\")")?;
        }
        if let Some(wait) = self.retry_after {
            write!(f, " (Retry-After: {}s)", wait.as_secs())?;
        }
        if let Some(hint) = self.hint() {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Parses `Retry-After` given in seconds, the form Asana uses.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// Awaits a generated operation, mapping its error into ours.
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
            Err(e) => Err(Box::pin(from_generated(e)).await),
        }
    }
}

/// Maps the generated layer's error into ours; reads the body of an
/// unexpected (non-2xx) answer.
async fn from_generated(error: progenitor_client::Error<()>) -> Error {
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
        G::UnexpectedResponse(response) => Error::Api(ApiError::from_response(response).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_message_phrase_and_hint() {
        let body = br#"{"errors":[{"message":"Server Error","phrase":"6 sad squid snuggle softly","error":"x"}]}"#;
        let e = ApiError::from_parts(StatusCode::INTERNAL_SERVER_ERROR, None, body);
        let text = e.to_string();
        assert!(
            text.starts_with("Asana answered 500 Internal Server Error: Server Error"),
            "{text}"
        );
        assert!(text.contains("6 sad squid snuggle softly"), "{text}");
        assert_eq!(e.errors()[0].extra["error"], "x");
    }

    #[test]
    fn a_body_that_is_not_json_keeps_the_status_and_an_excerpt() {
        let body = format!("<html>{}</html>", "x".repeat(1000));
        let e = ApiError::from_parts(StatusCode::BAD_GATEWAY, None, body.as_bytes());
        assert!(e.errors().is_empty());
        assert_eq!(
            e.body_excerpt().unwrap().chars().count(),
            BODY_EXCERPT_CHARS + 1
        );
        assert!(
            e.to_string()
                .contains("502 Bad Gateway with a body that is not Asana's JSON: <html>")
        );
    }

    #[test]
    fn retry_after_is_read_from_the_header_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
