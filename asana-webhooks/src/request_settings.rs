//! What every request of one client carries: the token source (a fixed
//! authorization header, or OAuth access tokens refreshed as they expire),
//! the user agent, the retry policy and the concurrency limits. The generated
//! client holds it as its inner value; the hooks that apply it to each
//! request are implemented where the [`crate::Client`] is built.

use std::fmt;

use reqwest::header::HeaderValue;

use crate::auth::Authorizer;
use crate::retry::{Limits, RetryPolicy};

/// Per-client settings that the request hooks apply; the generated
/// client's inner value.
#[derive(Clone)]
pub struct RequestSettings {
    pub(crate) auth: Authorizer,
    pub(crate) user_agent: HeaderValue,
    pub(crate) retry: RetryPolicy,
    pub(crate) limits: Limits,
}

impl RequestSettings {
    pub(crate) fn new(
        auth: Authorizer,
        user_agent: HeaderValue,
        retry: RetryPolicy,
        limits: Limits,
    ) -> Self {
        Self {
            auth,
            user_agent,
            retry,
            limits,
        }
    }
}

impl fmt::Debug for RequestSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSettings")
            .field("auth", &self.auth)
            .field("user_agent", &self.user_agent)
            .field("retry", &self.retry)
            .field("limits", &self.limits)
            .finish()
    }
}
