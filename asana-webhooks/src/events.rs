//! The Events API (`GET /events`, getEvents): the events on a resource
//! since a sync token, to recover what a webhook never delivered.
//!
//! Asana keeps a resource's events for 24 hours and hands them out through
//! sync tokens. A stream starts with a call without a token, which Asana
//! answers `412 Precondition Failed` with a fresh one
//! ([`EventsOutcome::SyncExpired`]); each later call returns the events
//! since the token it was given, at most 100 ([`EventsPage::has_more`] says
//! more wait), and the token to call with next. Asking again with the
//! current token is safe; older ones cannot be used. Tokens expire after 24
//! hours at most, and an expired one is answered like a first call: the
//! events in between are gone from the stream, and the resource itself must
//! be read again to know its state.
//!
//! The 412 reaches this module by hand, like every other non-2xx answer
//! (`cargo xtask regen` removes the error responses from the generated
//! operations; see the `events-412-sync-token-body` fix), and its body is
//! read with the generated [`SyncTokenResponse`]. Events are kept as Asana
//! sent them next to their typed decode ([`FetchedEvent`]): the Events API's
//! events carry names and fields that deliveries do not, and an event that
//! drifts from what this crate knows must not take its page, and the page's
//! sync token, with it.

use reqwest::StatusCode;

use crate::client::Client;
use crate::error::{ApiError, AsanaError, Error};
use crate::event::{Event, UndecodedEvent};
use crate::operations::{apply_output_options, output_options};
use crate::types::{EventOptField, GetEventsResponse, SyncTokenResponse};

/// What getEvents answered: events, or a fresh sync token. Neither is an
/// error; every other answer is an [`Error`].
#[derive(Debug, Clone, PartialEq)]
pub enum EventsOutcome {
    /// 200: the events since the token sent, and the token to send next.
    Page(EventsPage),
    /// 412: the call had no sync token (every stream's first call), or one
    /// Asana no longer accepts (tokens expire within 24 hours). `sync`
    /// starts the stream again from now: events between the old token and
    /// now cannot be read through it, so read the resource itself to catch
    /// up before relying on the stream.
    SyncExpired {
        /// The fresh token to call getEvents with next.
        sync: String,
        /// Asana's explanation as sent, for example `Sync token invalid or
        /// too old. …`.
        errors: Vec<AsanaError>,
    },
}

impl EventsOutcome {
    /// The token to call getEvents with next, whichever the outcome.
    pub fn sync(&self) -> &str {
        match self {
            EventsOutcome::Page(page) => &page.sync,
            EventsOutcome::SyncExpired { sync, .. } => sync,
        }
    }

    /// The page of events, when Asana sent one.
    pub fn page(&self) -> Option<&EventsPage> {
        match self {
            EventsOutcome::Page(page) => Some(page),
            EventsOutcome::SyncExpired { .. } => None,
        }
    }

    /// The page of events, when Asana sent one.
    pub fn into_page(self) -> Option<EventsPage> {
        match self {
            EventsOutcome::Page(page) => Some(page),
            EventsOutcome::SyncExpired { .. } => None,
        }
    }
}

/// One answer of the Events API: the events since the token sent.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsPage {
    /// The events, at most 100, in the order Asana listed them.
    pub events: Vec<FetchedEvent>,
    /// The token to call with next: it continues after these events.
    pub sync: String,
    /// More events wait: call again with [`EventsPage::sync`] right away.
    pub has_more: bool,
}

impl EventsPage {
    fn from_body(body: GetEventsResponse) -> Result<Self, Error> {
        let sync = body
            .sync
            .filter(|sync| !sync.is_empty())
            .ok_or_else(|| Error::Decode {
                message: "the getEvents answer has no `sync` token".into(),
            })?;
        Ok(EventsPage {
            events: body.data.into_iter().map(FetchedEvent::new).collect(),
            sync,
            has_more: body.has_more.unwrap_or(false),
        })
    }
}

/// One event from the Events API: its JSON as Asana sent it, and its
/// typed decode.
///
/// The Events API's events have the shape of webhook deliveries' (the same
/// [`Event`] decodes both) but carry more: names (`resource.name`,
/// `user.name`, `parent.name`), the deprecated `type`, and whatever
/// `opt_fields` asked for. [`FetchedEvent::raw`] keeps all of it; an event
/// that does not decode (a field missing, or of another type) is kept with
/// the reason in [`FetchedEvent::decoded`] rather than dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedEvent {
    /// The event's JSON as Asana sent it.
    pub raw: serde_json::Value,
    /// The typed event, or why `raw` does not decode into one.
    pub decoded: Result<Event, String>,
}

impl FetchedEvent {
    /// Decodes `raw`, keeping it whether it decodes or not.
    pub fn new(raw: serde_json::Value) -> Self {
        let decoded = <Event as serde::Deserialize>::deserialize(&raw).map_err(|e| e.to_string());
        FetchedEvent { raw, decoded }
    }

    /// The typed event, when `raw` decodes into one.
    pub fn event(&self) -> Option<&Event> {
        self.decoded.as_ref().ok()
    }

    /// The typed event, or the raw JSON and the decoding error, as the
    /// inbox hands out deliveries' events.
    pub fn into_event(self) -> Result<Event, UndecodedEvent> {
        let FetchedEvent { raw, decoded } = self;
        decoded.map_err(|error| UndecodedEvent { raw, error })
    }
}

/// Builder for [`Client::get_events`].
#[must_use = "nothing is sent until `send` is awaited"]
#[derive(Clone, Debug)]
pub struct GetEvents<'a> {
    client: &'a Client,
    resource: String,
    sync: Option<String>,
    opt_fields: Vec<EventOptField>,
    opt_pretty: Option<bool>,
}

impl GetEvents<'_> {
    /// The token from the previous answer ([`EventsOutcome::sync`]):
    /// events since it are returned. Without one, Asana answers
    /// [`EventsOutcome::SyncExpired`] with the stream's first token.
    pub fn sync(mut self, token: impl Into<String>) -> Self {
        self.sync = Some(token.into());
        self
    }

    output_options!(EventOptField);

    /// Sends `GET /events`. A 200 is [`EventsOutcome::Page`], a 412 with a
    /// fresh token [`EventsOutcome::SyncExpired`]; any other answer (and a
    /// 412 without a token) is [`Error::Api`].
    pub async fn send(self) -> Result<EventsOutcome, Error> {
        let mut request = self.client.api.get_events().resource(self.resource);
        if let Some(sync) = self.sync {
            request = request.sync(sync);
        }
        let request = apply_output_options!(request, self);
        // Boxed, as in `error::generated`: the generated future is large.
        match Box::pin(request.send()).await {
            Ok(answer) => EventsPage::from_body(answer.into_inner()).map(EventsOutcome::Page),
            Err(progenitor_client::Error::UnexpectedResponse(response))
                if response.status() == StatusCode::PRECONDITION_FAILED =>
            {
                sync_expired(response).await
            }
            Err(other) => Err(Box::pin(Error::from_generated(other)).await),
        }
    }
}

/// Reads getEvents' 412: its body, `{"errors": [...], "sync": "…"}`, is
/// the generated [`SyncTokenResponse`]; Asana's `errors` are read as for
/// any error answer. Without a token it is an [`Error::Api`].
async fn sync_expired(response: reqwest::Response) -> Result<EventsOutcome, Error> {
    let status = response.status();
    let retry_after = crate::retry::retry_after(response.headers());
    let body = response.bytes().await.map_err(Error::Transport)?;
    let api = ApiError::from_parts(status, retry_after, &body);
    match serde_json::from_slice::<SyncTokenResponse>(&body) {
        Ok(SyncTokenResponse {
            sync: Some(sync), ..
        }) if !sync.is_empty() => Ok(EventsOutcome::SyncExpired {
            sync,
            errors: api.errors().to_vec(),
        }),
        _ => Err(Error::Api(api)),
    }
}

impl Client {
    /// `GET /events`: the events on `resource` (a task, project or goal)
    /// since a sync token; see [`EventsOutcome`] for the answers.
    ///
    /// Asana keeps events for 24 hours and returns at most 100 per call.
    /// The first call of a stream has no token and is answered
    /// [`EventsOutcome::SyncExpired`] with one; each [`EventsOutcome::Page`]
    /// carries the token for the next call, and [`EventsPage::has_more`]
    /// when more events wait. A token expires within 24 hours: Asana then
    /// answers [`EventsOutcome::SyncExpired`] again, and the events since
    /// the old token cannot be read through the stream any more. Asking
    /// again with the current token is safe.
    ///
    /// ```no_run
    /// # async fn run(client: asana_webhooks::Client) -> Result<(), asana_webhooks::Error> {
    /// use asana_webhooks::EventsOutcome;
    /// use asana_webhooks::types::EventOptField;
    ///
    /// // The first call has no token: Asana answers with one.
    /// let mut sync = client.get_events("1204519866405712").send().await?.sync().to_string();
    /// loop {
    ///     let outcome = client
    ///         .get_events("1204519866405712")
    ///         .sync(&sync)
    ///         .opt_fields([EventOptField::Action, EventOptField::ResourceName])
    ///         .send()
    ///         .await?;
    ///     sync = outcome.sync().to_string();
    ///     match outcome {
    ///         EventsOutcome::Page(page) => {
    ///             for fetched in &page.events {
    ///                 match fetched.event() {
    ///                     Some(event) => println!("{} {}", event.action, event.resource.gid),
    ///                     None => eprintln!("kept as sent: {}", fetched.raw),
    ///                 }
    ///             }
    ///             if !page.has_more {
    ///                 tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    ///             }
    ///         }
    ///         // The token expired: the events since it are lost to the
    ///         // stream; read the resource again, then go on with the new one.
    ///         EventsOutcome::SyncExpired { .. } => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn get_events(&self, resource: impl Into<String>) -> GetEvents<'_> {
        GetEvents {
            client: self,
            resource: resource.into(),
            sync: None,
            opt_fields: Vec::new(),
            opt_pretty: None,
        }
    }
}
