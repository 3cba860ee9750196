//! What every request of one client carries: the authorization header, the
//! user agent, the retry policy and the concurrency limits. The generated
//! client holds it as its inner value; the hooks that apply it to each
//! request are implemented where the [`crate::Client`] is built.

use std::fmt;

use reqwest::header::HeaderValue;

use crate::retry::{Limits, RetryPolicy};

/// Per-client settings that the request hooks apply; the generated
/// client's inner value.
#[derive(Clone)]
pub struct RequestSettings {
    pub(crate) authorization: HeaderValue,
    pub(crate) user_agent: HeaderValue,
    pub(crate) retry: RetryPolicy,
    pub(crate) limits: Limits,
}

impl RequestSettings {
    /// `authorization` must already be marked sensitive.
    pub(crate) fn new(
        authorization: HeaderValue,
        user_agent: HeaderValue,
        retry: RetryPolicy,
        limits: Limits,
    ) -> Self {
        debug_assert!(authorization.is_sensitive());
        Self {
            authorization,
            user_agent,
            retry,
            limits,
        }
    }
}

impl fmt::Debug for RequestSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSettings")
            .field("authorization", &"Bearer <redacted>")
            .field("user_agent", &self.user_agent)
            .field("retry", &self.retry)
            .field("limits", &self.limits)
            .finish()
    }
}
