//! Asana's error answers: [`ApiError`] and the entries of its `errors`.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use crate::retry::retry_after;

/// How much of a body that is not Asana's JSON is kept for the message.
const BODY_EXCERPT_CHARS: usize = 300;

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
    refused_after_refresh: bool,
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
                refused_after_refresh: false,
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
                    refused_after_refresh: false,
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

    /// Marks a 401 that refused an OAuth access token obtained just before
    /// (after a first 401), for its hint.
    pub(crate) fn refused_after_refresh(mut self) -> Self {
        self.refused_after_refresh = true;
        self
    }

    /// Whether Asana refused even a freshly refreshed OAuth access token
    /// (a 401 to the second try that follows a refresh).
    pub fn is_refused_after_refresh(&self) -> bool {
        self.refused_after_refresh
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
            401 if self.refused_after_refresh => {
                "Asana refused a freshly refreshed OAuth access token too: the refresh token may be revoked or the user may have removed the app's access; have the user authorize the app again"
            }
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
}
