//! The hooks every generated operation runs through: authentication, the
//! wire fixes of [`crate::wire`], the user agent, and (in `exec`) the
//! retries and concurrency limits of [`crate::retry`].
//!
//! The generated client is built with `HooksMode::Expected`, so an operation
//! that bypassed these hooks would not compile.

use std::fmt;

use progenitor_client::{ClientHooks, OperationInfo};
use reqwest::header::{AUTHORIZATION, HeaderValue, USER_AGENT};

use crate::generated;
use crate::retry::{self, Limits, RetryPolicy};
use crate::wire;

/// Per-client state that the hooks need; the generated client's inner value.
#[derive(Clone)]
pub struct Transport {
    authorization: HeaderValue,
    user_agent: HeaderValue,
    retry: RetryPolicy,
    limits: Limits,
}

impl Transport {
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

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("authorization", &"Bearer <redacted>")
            .field("user_agent", &self.user_agent)
            .field("retry", &self.retry)
            .field("limits", &self.limits)
            .finish()
    }
}

impl ClientHooks<Transport> for generated::Client {
    async fn pre<E>(
        &self,
        request: &mut reqwest::Request,
        _info: &OperationInfo,
    ) -> Result<(), progenitor_client::Error<E>> {
        wire::join_comma_params(request.url_mut());
        let headers = request.headers_mut();
        wire::strip_undeclared_headers(headers);
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
