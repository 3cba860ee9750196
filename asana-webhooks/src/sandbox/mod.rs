//! A local, Asana-compatible server for the webhook API: try the whole
//! webhook lifecycle with no Asana account (Asana itself refuses
//! `localhost` targets).
//!
//! It behaves as Asana does for the five webhook operations: bearer-token
//! auth, `{"data": …}` envelopes, the compact representation unless
//! `opt_fields` asks for more, pagination with opaque offsets that expire,
//! the "Duplicated webhook" 403, filter rules for workspace and team
//! webhooks, the real `X-Hook-Secret` handshake, signed and batched
//! deliveries, heartbeats, and retries with the delivery bookkeeping
//! (`last_failure_at`, `delivery_retry_count`, `next_attempt_after`, …) up
//! to deleting a webhook whose target keeps failing for 24 hours.
//!
//! Time can run faster than the wall clock ([`SandboxBuilder::time_scale`])
//! so that hours of retries pass in seconds.
//!
//! It serves Asana's Events API too (`GET /events?resource=…&sync=…`) on
//! tasks and projects: every event it emits is kept for 24 sandbox hours
//! in the stream of its resource and of the project above it (as events
//! reach webhooks on ancestors), with names (`resource.name`, `user.name`,
//! `parent.name`) and `type`, read 100 at a time through signed sync
//! tokens that expire 24 sandbox hours after they were handed out; a
//! call without a token, or with one that is forged, expired or missed
//! events that are gone, gets Asana's 412 with a fresh token. Its
//! deliveries can be made to lose events, as Asana's at-most-once ones
//! may ([`SandboxBuilder::drop_deliveries`]); the Events API still has them.
//!
//! Besides Asana's API it has one control endpoint,
//! `POST /sandbox/events` with `{"resource", "action", "parent"?, "field"?}`,
//! which emits an event as if someone had changed that resource; and, as
//! Asana, an OAuth token endpoint `POST /-/oauth_token` that issues access
//! tokens expiring on the sandbox clock ([`SandboxBuilder::oauth`]).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use asana_webhooks::sandbox::{Sandbox, seed};
//! let sandbox = Sandbox::builder().time_scale(3600.0).start("127.0.0.1:0").await?;
//! let client = asana_webhooks::Client::builder()
//!     .token("any-token")
//!     .base_url(sandbox.base_url())
//!     .build()
//!     .unwrap();
//! let page = client.get_webhooks(seed::WORKSPACE).send().await.unwrap();
//! # Ok(()) }
//! ```

mod accounting;
mod clock;
mod emit;
mod failure;
mod model;
mod oauth;
mod offsets;
mod render;
mod routes;
mod rules;
mod sender;
mod state;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use accounting::ApiRequests;
pub use model::EmittedEvent;
pub use oauth::OAuthCounts;

/// The objects every sandbox starts with, at fixed gids.
pub mod seed {
    /// The workspace ("Sandbox Workspace").
    pub const WORKSPACE: &str = "1100000000000001";
    /// A team in the workspace ("Sandbox Team").
    pub const TEAM: &str = "1100000000000002";
    /// A project of the team ("Sandbox Project").
    pub const PROJECT: &str = "1100000000000003";
    /// A task in the project ("Sandbox Task").
    pub const TASK: &str = "1100000000000004";
    /// The user every request acts as.
    pub const USER: &str = "1100000000000005";

    /// A line per seeded object, for start-up messages and `--help`.
    pub const SUMMARY: &str = "workspace 1100000000000001 (Sandbox Workspace)\n\
        team      1100000000000002 (Sandbox Team, in the workspace)\n\
        project   1100000000000003 (Sandbox Project, in the team)\n\
        task      1100000000000004 (Sandbox Task, in the project)\n\
        user      1100000000000005 (the user every request acts as)";
}

/// The seed of [`SandboxBuilder::drop_seed`] unless another is set.
const DEFAULT_DROP_SEED: u64 = 0x5eed;

/// Settings of a sandbox; start with [`Sandbox::builder`].
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    time_scale: f64,
    rate_limit_every: Option<u32>,
    retry_after: Duration,
    drop_fraction: f64,
    drop_seed: u64,
    offset_ttl: Duration,
    create_answer_delay: Duration,
    clock_ahead: Duration,
    oauth: oauth::Settings,
}

/// A running sandbox. Dropping it stops the server.
#[derive(Debug)]
pub struct Sandbox {
    addr: SocketAddr,
    state: Arc<state::Sandbox>,
    oauth: Arc<oauth::Endpoint>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.server.abort();
        self.state.shutdown();
    }
}

impl Sandbox {
    /// Settings with defaults: real time, no injected rate limits.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder {
            time_scale: 1.0,
            rate_limit_every: None,
            retry_after: Duration::from_secs(1),
            drop_fraction: 0.0,
            drop_seed: DEFAULT_DROP_SEED,
            offset_ttl: Duration::from_secs(600),
            create_answer_delay: Duration::ZERO,
            clock_ahead: Duration::ZERO,
            oauth: oauth::Settings::default(),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give [`crate::ClientBuilder::base_url`].
    pub fn base_url(&self) -> String {
        format!("http://{}/api/1.0", self.addr)
    }

    /// Emits an event, as `POST /sandbox/events` does; returns the gids of
    /// the webhooks it was queued for.
    pub fn emit(&self, event: EmittedEvent) -> Result<Vec<String>, String> {
        self.state.emit(event)
    }

    /// Events whose delivery the sandbox dropped so far
    /// ([`SandboxBuilder::drop_deliveries`]), counted per webhook: an
    /// event dropped for two webhooks counts twice. A dropped event counts
    /// once the webhook's sender has taken it off the queue.
    pub fn dropped_events(&self) -> u64 {
        self.state.dropped()
    }

    /// The API requests received so far (under `/api/1.0`, whatever their
    /// answer), by operation: what a client costs against Asana's rate
    /// limits. Take one count before and [`ApiRequests::since`] after.
    pub fn api_requests(&self) -> ApiRequests {
        self.state.api_requests()
    }

    /// Serves until the task is aborted (for the command line).
    pub async fn wait(mut self) {
        let _ = (&mut self.server).await;
    }
}

impl SandboxBuilder {
    /// Sandbox seconds per real second: 3600 makes an hour pass each
    /// second, so retries, heartbeats (every 8 h) and deletion after 24 h of
    /// failures can be watched. Default 1.
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.time_scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        self
    }

    /// Answers every `n`th API request with 429 and `Retry-After`, to
    /// exercise rate-limit handling. Off by default.
    pub fn rate_limit_every(mut self, n: Option<u32>, retry_after: Duration) -> Self {
        self.rate_limit_every = n.filter(|n| *n > 0);
        self.retry_after = retry_after;
        self
    }

    /// Loses this fraction (0 to 1) of event deliveries, as Asana's
    /// at-most-once deliveries may: each event queued for a webhook is
    /// dropped with this probability, and the webhook's sender takes it off
    /// the queue as if it had been delivered, without sending it and
    /// without retrying it. The event is still in the Events API's streams
    /// (`GET /events`). Heartbeats are never dropped. Which events are
    /// dropped follows from [`SandboxBuilder::drop_seed`] and the order of
    /// emission. Default 0 (none); values outside 0..=1 are clamped, and
    /// NaN is 0.
    pub fn drop_deliveries(mut self, fraction: f64) -> Self {
        self.drop_fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// Seeds the draws of [`SandboxBuilder::drop_deliveries`]: the same
    /// seed and the same events emitted in the same order drop the same
    /// deliveries. Default a fixed seed, so runs are reproducible.
    pub fn drop_seed(mut self, seed: u64) -> Self {
        self.drop_seed = seed;
        self
    }

    /// How long (in sandbox time) a pagination offset stays valid; default 10 min.
    pub fn offset_ttl(mut self, ttl: Duration) -> Self {
        self.offset_ttl = ttl;
        self
    }

    /// Holds each createWebhook answer back this long (real time) after its
    /// handshake succeeded and the webhook exists, as a slow network or a
    /// busy Asana would: to test what happens when the creating process
    /// times out or dies before the 201 arrives. Default none.
    pub fn create_answer_delay(mut self, delay: Duration) -> Self {
        self.create_answer_delay = delay;
        self
    }

    /// Starts the sandbox's clock this far ahead of the system clock, as a
    /// server whose clock differs from the client's: timestamps such as
    /// `created_at` and the `Date` header of every answer follow it.
    /// Default none.
    pub fn clock_ahead(mut self, ahead: Duration) -> Self {
        self.clock_ahead = ahead;
        self
    }

    /// Starts the sandbox on `addr` (use port 0 for any free port).
    pub async fn start(self, addr: &str) -> std::io::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let clock = clock::Clock::new(self.time_scale, self.clock_ahead);
        let oauth = oauth::Endpoint::new(self.oauth, clock);
        let state = state::Sandbox::new(state::Settings {
            clock,
            rate_limit_every: self.rate_limit_every,
            retry_after: self.retry_after,
            offset_ttl: self.offset_ttl,
            create_answer_delay: self.create_answer_delay,
            drop_fraction: self.drop_fraction,
            drop_seed: self.drop_seed,
        });
        let app = routes::router(Arc::clone(&state), Arc::clone(&oauth));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sandbox {
            addr,
            state,
            oauth,
            server,
        })
    }
}
