//! Retries and client-side concurrency limits, applied once to every
//! request in the transport's `exec` hook (generated and hand-written
//! operations alike).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use tokio::sync::Semaphore;

use crate::metrics::{self, Retry};

/// Asana's per-token limit of concurrent read requests.
pub const ASANA_MAX_CONCURRENT_READS: usize = 50;
/// Asana's per-token limit of concurrent write requests.
pub const ASANA_MAX_CONCURRENT_WRITES: usize = 15;

/// The statuses worth retrying: rate limits and Asana's transient server
/// errors. Error decoding ([`crate::Error::is_retryable`]) and the retry
/// loop both ask this.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Parses `Retry-After` given in seconds, the form Asana uses.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// When and how often a failed request is sent again.
///
/// - 429: after `Retry-After` (or the backoff when the header is missing),
///   for every method: Asana did not process the request.
/// - 500, 502, 503, 504, timeouts and broken connections: after an
///   exponential backoff with jitter, for every method but POST, where a
///   retry could create a second webhook.
/// - connection refused: for every method, the request never left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    max_total_wait: Duration,
    base_delay: Duration,
    max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, backoff 1, 2, 4, 8 s (capped at 16 s), at most 60 s of
    /// waiting in all: what Asana's own clients do.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            max_total_wait: Duration::from_secs(60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(16),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Attempts in all, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The most time spent waiting between attempts of one request; a wait
    /// that would exceed it ends the retries.
    pub fn max_total_wait(mut self, wait: Duration) -> Self {
        self.max_total_wait = wait;
        self
    }

    /// The first backoff delay; it doubles with each attempt.
    pub fn base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The largest backoff delay.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The backoff before attempt `attempt + 1`: base × 2^(attempt-1),
    /// capped, scaled by a random factor in [0.5, 1) so that clients that
    /// failed together do not retry together.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << (attempt - 1).min(16));
        exp.min(self.max_delay).mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Concurrency limits: how many reads and writes may be in flight at once.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    reads: Option<Arc<Semaphore>>,
    writes: Option<Arc<Semaphore>>,
}

impl Limits {
    pub(crate) fn new(reads: Option<usize>, writes: Option<usize>) -> Self {
        let semaphore = |n: usize| Arc::new(Semaphore::new(n.max(1)));
        Self {
            reads: reads.map(semaphore),
            writes: writes.map(semaphore),
        }
    }

    async fn acquire(&self, method: &Method) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = if *method == Method::GET || *method == Method::HEAD {
            &self.reads
        } else {
            &self.writes
        };
        // The semaphores are never closed, so acquiring cannot fail.
        Some(
            Arc::clone(semaphore.as_ref()?)
                .acquire_owned()
                .await
                .expect("never closed"),
        )
    }
}

/// What to do after one attempt.
enum Next {
    Done,
    RetryAfter(Duration, Retry),
}

fn decide(
    policy: &RetryPolicy,
    method: &Method,
    attempt: u32,
    outcome: &reqwest::Result<reqwest::Response>,
) -> Next {
    if attempt >= policy.max_attempts {
        return Next::Done;
    }
    let is_post = *method == Method::POST;
    match outcome {
        Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => Next::RetryAfter(
            retry_after(response.headers()).unwrap_or_else(|| policy.backoff(attempt)),
            Retry::RateLimited,
        ),
        Ok(response) if is_retryable_status(response.status()) && !is_post => {
            Next::RetryAfter(policy.backoff(attempt), Retry::ServerError)
        }
        Ok(_) => Next::Done,
        Err(e) if e.is_connect() && !e.is_timeout() => {
            Next::RetryAfter(policy.backoff(attempt), Retry::Connection)
        }
        Err(e) if (e.is_timeout() || e.is_request()) && !is_post => Next::RetryAfter(
            policy.backoff(attempt),
            if e.is_timeout() {
                Retry::Timeout
            } else {
                Retry::Connection
            },
        ),
        Err(_) => Next::Done,
    }
}

/// Sends `request`, retrying as `policy` allows, each attempt holding a
/// concurrency permit. Returns the last outcome.
pub(crate) async fn execute(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    limits: &Limits,
    request: reqwest::Request,
    operation: &'static str,
) -> reqwest::Result<reqwest::Response> {
    let method = request.method().clone();
    let mut waited = Duration::ZERO;
    let mut attempt = 1;
    let mut pending = request;
    loop {
        // Bodies here are in-memory JSON, so a copy is always possible; a
        // streaming body would simply not be retried.
        let spare = spare_copy(&pending);
        let outcome = {
            let _permit = limits.acquire(&method).await;
            http.execute(pending).await
        };
        // Every attempt counts, by its answer's class (429s apart too).
        metrics::api_request(
            operation,
            outcome.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let (Next::RetryAfter(wait, why), Some(next)) =
            (decide(policy, &method, attempt, &outcome), spare)
        else {
            return outcome;
        };
        if waited + wait > policy.max_total_wait {
            tracing::warn!(
                operation,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "not retrying: the total wait would exceed the limit"
            );
            return outcome;
        }
        let status = outcome.as_ref().ok().map(|r| r.status().as_u16());
        let error = outcome.as_ref().err().map(|e| e.to_string());
        tracing::warn!(
            operation,
            attempt,
            ?status,
            ?error,
            wait_ms = wait.as_millis() as u64,
            "retrying Asana request"
        );
        metrics::api_retry(operation, why);
        drop(outcome);
        tokio::time::sleep(wait).await;
        waited += wait;
        attempt += 1;
        pending = next;
    }
}

/// A copy of `request` to send again. For a request without a body (every
/// GET and DELETE) it skips what `Request::try_clone` always does, writing a
/// timeout entry into the copy's extension map (an allocation per request):
/// the timeout is set only when the original has one, and the generated
/// requests carry no other extension.
pub(crate) fn spare_copy(request: &reqwest::Request) -> Option<reqwest::Request> {
    if request.body().is_some() {
        return request.try_clone();
    }
    let mut copy = reqwest::Request::new(request.method().clone(), request.url().clone());
    *copy.headers_mut() = request.headers().clone();
    *copy.version_mut() = request.version();
    if let Some(timeout) = request.timeout() {
        *copy.timeout_mut() = Some(*timeout);
    }
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_from_the_header_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy::default();
        for attempt in 1..=8 {
            let expected = Duration::from_secs(1u64 << (attempt - 1)).min(Duration::from_secs(16));
            let got = policy.backoff(attempt);
            assert!(
                got >= expected / 2 && got < expected,
                "attempt {attempt}: {got:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn the_spare_copy_is_the_same_request() {
        let url = url::Url::parse("https://x/webhooks/1?opt_fields=active,filters").unwrap();
        let mut request = reqwest::Request::new(Method::GET, url.clone());
        request
            .headers_mut()
            .insert("authorization", "Bearer t".parse().unwrap());
        *request.version_mut() = reqwest::Version::HTTP_11;
        let copy = spare_copy(&request).unwrap();
        assert_eq!(copy.method(), request.method());
        assert_eq!(copy.url(), request.url());
        assert_eq!(copy.headers(), request.headers());
        assert_eq!(copy.version(), request.version());
        assert_eq!(copy.timeout(), None);
        assert!(copy.body().is_none());
        *request.timeout_mut() = Some(Duration::from_secs(3));
        assert_eq!(
            spare_copy(&request).unwrap().timeout(),
            Some(&Duration::from_secs(3))
        );
        let mut put = reqwest::Request::new(Method::PUT, url);
        *put.body_mut() = Some(r#"{"data":{}}"#.into());
        let copy = spare_copy(&put).unwrap();
        assert_eq!(copy.method(), Method::PUT);
        assert_eq!(
            copy.body().and_then(|b| b.as_bytes()),
            Some(&br#"{"data":{}}"#[..])
        );
    }

    #[test]
    fn none_means_one_attempt() {
        assert_eq!(RetryPolicy::none().max_attempts, 1);
        assert_eq!(RetryPolicy::default().max_attempts(0).max_attempts, 1);
    }
}
