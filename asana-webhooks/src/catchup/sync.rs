//! One catch-up of one resource: the events since its stored sync token,
//! page by page, committed to the inbox before the token that follows them
//! is saved, so that a crash repeats events (the inbox drops the repeats)
//! and never skips one.

use chrono::Utc;

use super::CatchUpError;
use crate::client::Client;
use crate::events::EventsOutcome;
use crate::inbox::{Inbox, VerifiedDelivery};
use crate::secrets::{Gap, GapCause, GapStatus, RecoveryStore, TargetKey};

/// The most pages one catch-up reads (100 events each); the rest waits for
/// the next one, so that a resource with a flood of events cannot hold a
/// catch-up for ever.
pub const MAX_PAGES_PER_CATCH_UP: u32 = 100;

/// What one catch-up of a resource did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatchUpRun {
    /// The resource.
    pub resource: String,
    /// Requests made to Asana.
    pub calls: u32,
    /// Events the Events API returned.
    pub fetched: usize,
    /// Of those, events new to the inbox (the webhook had not delivered
    /// them).
    pub added: usize,
    /// Of those, events the inbox had already (delivered by the webhook,
    /// or by an earlier catch-up).
    pub duplicates: usize,
    /// The stream started now: there was no stored token, so nothing
    /// before now can be read through it.
    pub started: bool,
    /// The stored token had expired: what may be missing.
    pub gap: Option<Gap>,
    /// When the unbroken stream this catch-up continued began: every event
    /// of the resource since then has been read (see
    /// [`SyncToken::stream_since`](crate::secrets::SyncToken::stream_since)).
    pub stream_since: Option<chrono::DateTime<Utc>>,
    /// More events wait than one catch-up reads.
    pub more_waiting: bool,
}

/// Reads the events of `resource` since its stored token into `inbox`, as
/// if delivered to `target`.
pub(crate) async fn catch_up<S: RecoveryStore, I: Inbox>(
    client: &Client,
    store: &S,
    inbox: &I,
    resource: &str,
    target: &TargetKey,
) -> Result<CatchUpRun, CatchUpError> {
    let stored = store.sync_token(resource).await?;
    let mut token = stored.as_ref().map(|t| t.token.clone());
    // When the token in use was saved: where a gap would start.
    let mut saved_at = stored.as_ref().map(|t| t.saved_at);
    let mut run = CatchUpRun {
        resource: resource.to_string(),
        stream_since: stored.as_ref().map(|t| t.stream_since),
        ..CatchUpRun::default()
    };
    while run.calls < MAX_PAGES_PER_CATCH_UP {
        let mut request = client.get_events(resource);
        if let Some(token) = &token {
            request = request.sync(token);
        }
        let outcome = request
            .send()
            .await
            .map_err(|e| CatchUpError::from_api(resource, e))?;
        run.calls += 1;
        match outcome {
            EventsOutcome::SyncExpired { sync, .. } => {
                match saved_at {
                    // The token we kept no longer works: what happened
                    // since it was saved cannot be read through the stream.
                    Some(from) => {
                        let mut gap = Gap::open(
                            format!("sync-expired:{resource}:{}", from.timestamp_millis()),
                            resource,
                            GapCause::SyncTokenExpired,
                            Some(from),
                            Utc::now(),
                        );
                        gap.status = GapStatus::Unrecoverable {
                            reason: "the Events API no longer accepted the sync token saved at the gap's start (tokens last 24 hours at most): its events since then are gone from the stream; those the webhook delivered are in the inbox".into(),
                        };
                        store.record_gap(gap.clone()).await?;
                        run.gap = Some(gap);
                    }
                    None => run.started = true,
                }
                // A fresh token holds no events from before now: a new
                // stream begins.
                let now = Utc::now();
                store.save_sync_token(resource, &sync, now).await?;
                run.stream_since = Some(now);
                return Ok(run);
            }
            EventsOutcome::Page(page) => {
                run.fetched += page.events.len();
                if !page.events.is_empty() {
                    let events = page
                        .events
                        .iter()
                        .map(|e| serde_json::value::to_raw_value(&e.raw).expect("JSON is JSON"))
                        .collect();
                    let delivery =
                        VerifiedDelivery::from_events_api(target.clone(), resource, events);
                    let appended = inbox.append(delivery).await?;
                    run.added += appended.added;
                    run.duplicates += appended.duplicates;
                }
                // Only now: the events it moves past are committed.
                let since = run.stream_since.unwrap_or_else(Utc::now);
                store.save_sync_token(resource, &page.sync, since).await?;
                saved_at = Some(Utc::now());
                token = Some(page.sync);
                if !page.has_more {
                    return Ok(run);
                }
            }
        }
    }
    run.more_waiting = true;
    Ok(run)
}
