//! Asana webhooks, easy and safe.
//!
//! `asana-webhooks` is a client for Asana's webhook API, generated from
//! Asana's own OpenAPI description (so it never drifts from it) with the
//! pieces generation cannot give added by hand: the wire format Asana
//! really expects, the `{"data": …}` envelope unwrapped, the webhook secret
//! kept out of logs, and errors that say what Asana said and what to do.
//!
//! # The whole flow
//!
//! 1. **Create** a webhook with [`Client::create_webhook`]. While that
//!    request is in flight, Asana POSTs a handshake carrying
//!    `X-Hook-Secret` to your target; the target must echo the header. The
//!    201 answer repeats the secret ([`CreatedWebhook::secret`]): store it,
//!    Asana never sends it again.
//! 2. **Receive** deliveries: each is a POST of `{"events": [...]}` signed
//!    with `X-Hook-Signature`, the hex HMAC-SHA256 of the raw body keyed
//!    with the secret. Verify before parsing, answer within 10 seconds, and
//!    answer 200 only once the events are stored: Asana never sends an
//!    acknowledged delivery again. The `receiver` commits each verified
//!    delivery to an `inbox` first (both behind the default `receiver`
//!    feature); your code takes events from the inbox and acknowledges each
//!    once handled (at least once).
//! 3. **Keep them alive**: a `watch::Watch` reads Asana's bookkeeping on
//!    a schedule, reports each webhook's health, and creates again a
//!    webhook Asana deleted, recording the **gap** in which nothing was
//!    delivered; a `catchup::CatchUp` reads what webhooks missed (dropped
//!    deliveries, gaps) from Asana's Events API into the same inbox, where
//!    an event that arrives both ways is handed out once.
//! 4. **Manage** webhooks: list them page by page
//!    ([`Client::get_webhooks`], with the next page's offset never hidden),
//!    read one, replace its filters, delete it.
//!
//! ```no_run
//! # #[cfg(feature = "receiver")]
//! # mod example {
//! use asana_webhooks::inbox::{FileInbox, Inbox};
//! use asana_webhooks::receiver::Receiver;
//! use asana_webhooks::secrets::FileSecretStore;
//! use asana_webhooks::types::{WebhookFilter, WebhookListOptField};
//! use asana_webhooks::{Client, HandshakeExt};
//!
//! # pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::new(std::env::var("ASANA_TOKEN")?)?;
//!
//! // The receiver must be serving before the create: Asana sends the
//! // handshake while createWebhook is in flight.
//! let store = FileSecretStore::open("secrets.json").await?;
//! let inbox = FileInbox::open("inbox.redb").await?;
//! let receiver = Receiver::builder(store.clone()).build_with_inbox(inbox.clone());
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//! tokio::spawn(receiver.serve(listener, std::future::pending()));
//!
//! // 1. Create: a handshake is accepted for this target only while this
//! //    call runs, and its secret is trusted only once it equals the one in
//! //    the 201 answer; then it is stored.
//! let created = client
//!     .create_webhook_with_handshake(&store, "1204519866405712", "https://hooks.example.com/asana")
//!     .workspace("1331")
//!     .filter(WebhookFilter::new("task", "changed").with_fields(["due_on"]))
//!     .send()
//!     .await?;
//! let gid = created.webhook.gid.clone().unwrap_or_default();
//!
//! // 4. Manage: pages keep their `next_page`; streams walk them all.
//! let page = client
//!     .get_webhooks("1331")
//!     .limit(100)
//!     .opt_fields([WebhookListOptField::Active, WebhookListOptField::LastFailureAt])
//!     .send()
//!     .await?;
//! println!("{} webhooks, more after {:?}", page.items.len(), page.next_offset());
//! client.update_webhook(&gid).clear_filters().send().await?;
//!
//! // 2. Receive: each verified delivery was committed to the inbox before
//! //    Asana got its 200; acknowledge each event once handled.
//! while let Some(item) = inbox.next().await {
//!     match item.event() {
//!         Ok(event) => println!("{} {} {}", event.action, event.resource.resource_type, event.resource.gid),
//!         Err(drifted) => eprintln!("kept as sent: {}", drifted.raw),
//!     }
//!     item.ack().await?;
//! }
//! client.delete_webhook(&gid).send().await?;
//! # Ok(())
//! # }
//! # }
//! # fn main() {}
//! ```
//!
//! Outside axum, [`signature::verify`] checks a delivery on its own, and
//! [`event::Delivery`] decodes it.
//!
//! # Retries and limits
//!
//! Every request, generated or hand-written, goes through one transport:
//! 429s wait for `Retry-After`; 500/502/503/504 and broken connections back
//! off exponentially with jitter (never for createWebhook, where a retry
//! could create a second webhook); at most 50 reads and 15 writes are in
//! flight per client. See [`RetryPolicy`] and [`ClientBuilder`].
//!
//! # Features
//!
//! - `receiver` (default): the axum `receiver` module, the `inbox` module
//!   and `HandshakeExt` (create through the handshake). Without it the
//!   crate is the API client alone, with no web server dependencies.
//! - `postgres`: PostgreSQL secret store and inbox (`postgres` module) for
//!   several receiver instances sharing one database.
//! - `sandbox`: a local Asana-compatible server (`sandbox` module).
//! - `cli`: the `asana-webhooks` command line.
//!
//! # Metrics
//!
//! The receiver, the inbox, the watch and every request to Asana record
//! counters and gauges through the [`metrics`](https://docs.rs/metrics)
//! facade; install the exporter of your choice. The [`metrics`]
//! module lists them all.
//!
//! # Errors
//!
//! Every operation returns [`Error`]. A non-2xx answer is [`Error::Api`]
//! with the status, Asana's `errors` (message, help, phrase) and
//! `Retry-After`; its `Display` shows Asana's message and a hint.
//!
//! # Module map
//!
//! Each module uses only modules below it (no module imports one that
//! imports it back):
//!
//! ```text
//! sandbox            a local Asana for tests and demos (feature `sandbox`)
//! catchup            the Events API read into the inbox: what webhooks missed
//! watch              webhook health; gone webhooks created again, gaps recorded
//! receiver           the axum server: handshakes, verification, inbox commits
//! postgres           PostgreSQL secret store and inbox (feature `postgres`)
//! inbox              where verified events wait: engine, memory, file (redb)
//! handshake          create through the handshake; recovery after a lost answer
//! pagination         every page of a listing as a stream
//! events             the Events API: getEvents, its sync token and kept-as-sent events
//! operations         the builders users call, over the generated ones
//! client             Client, ClientBuilder, the hooks every request runs through
//! generated          progenitor's output (types, raw client)
//! request_settings   what every request carries: token source, user agent, retries, limits
//! error              Error, ApiError, HandshakeError
//! auth               token sources: a fixed token, or OAuth refresh (oauth2)
//! retry              retry policy, concurrency limits, which answers to retry
//! secrets            SecretStore, RecoveryStore (gaps, leases, sync tokens): memory and file
//! signature          X-Hook-Signature: HMAC-SHA256 of the raw body
//! event              typed deliveries and events
//! identity           what makes an event the same in webhook and Events API shape
//! metrics            every metric's name and label, recorded through the `metrics` facade
//! hook_secret, filter, wire_fixes, error_chain   leaves: a secret, filters, query and header fixes, an error's causes
//! ```
//!
//! # The generated layer
//!
//! [`types`] holds the request and response types generated from
//! `openapi/webhooks.yaml`; [`generated`] the raw progenitor client, which
//! runs through the same authentication and wire hooks.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
#[cfg(feature = "receiver")]
#[cfg_attr(docsrs, doc(cfg(feature = "receiver")))]
pub mod catchup;
mod client;
mod error;
mod error_chain;
pub mod event;
mod events;
mod filter;
#[cfg(feature = "receiver")]
mod handshake;
mod hook_secret;
mod identity;
#[cfg(feature = "receiver")]
#[cfg_attr(docsrs, doc(cfg(feature = "receiver")))]
pub mod inbox;
pub mod metrics;
mod operations;
mod pagination;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "receiver")]
#[cfg_attr(docsrs, doc(cfg(feature = "receiver")))]
pub mod receiver;
mod request_settings;
mod retry;
#[cfg(feature = "sandbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "sandbox")))]
pub mod sandbox;
pub mod secrets;
pub mod signature;
#[cfg(feature = "receiver")]
#[cfg_attr(docsrs, doc(cfg(feature = "receiver")))]
pub mod watch;
mod wire_fixes;

/// The progenitor client and types, generated by `cargo xtask regen`.
#[allow(missing_docs, clippy::all, rustdoc::all)]
pub mod generated;

pub use auth::{
    ASANA_TOKEN_URL, AuthError, DEFAULT_REFRESH_MARGIN, OAuthRefresh, Token, TokenKind, TokenSource,
};
pub use client::{Client, ClientBuilder, DEFAULT_BASE_URL, DEFAULT_USER_AGENT};
#[cfg(feature = "receiver")]
#[cfg_attr(docsrs, doc(cfg(feature = "receiver")))]
pub use error::HandshakeError;
pub use error::{ApiError, AsanaError, Error};
pub use event::{Delivery, Event, EventAction};
pub use events::{EventsOutcome, EventsPage, FetchedEvent, GetEvents};
pub use generated::types;
#[cfg(feature = "receiver")]
#[cfg_attr(docsrs, doc(cfg(feature = "receiver")))]
pub use handshake::{CreateWithHandshake, DEFAULT_HANDSHAKE_TIMEOUT, EnsuredWebhook, HandshakeExt};
pub use hook_secret::{HookSecret, MAX_SECRET_LEN};
pub use identity::EventIdentity;
pub use retry::{ASANA_MAX_CONCURRENT_READS, ASANA_MAX_CONCURRENT_WRITES, RetryPolicy};
/// The README's examples, compiled as doctests.
#[cfg(all(doctest, feature = "receiver"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub use operations::{
    CreateWebhook, CreatedWebhook, DeleteWebhook, GetWebhook, GetWebhooks, MAX_PAGE_SIZE, NextPage,
    Page, UpdateWebhook, Webhook,
};
