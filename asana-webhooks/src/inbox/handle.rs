//! [`handle_each`]: the consumer loop most applications need, taking
//! events in batches and acknowledging them in groups.

use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::{Inbox, InboxError, InboxItem, Released};

/// The most items [`handle_each`] takes at once.
const MAX_BATCH: usize = 64;

/// The most acknowledgements [`handle_each`] leaves in flight while it goes
/// on with the next events.
const MAX_PENDING_ACKS: usize = 1024;

/// Runs `handler` on every event as it arrives until the inbox is closed.
/// An event the handler returns `Ok` for is acknowledged; one it fails is
/// released ([`InboxItem::release`]), to be retried after a backoff and,
/// after its last allowed attempt, moved to the dead letters, so that a
/// failing event never holds up the others.
///
/// Acknowledgements are not awaited one by one: the next events are handled
/// while they are committed, so that many share a commit. An event counts
/// as handled only once its acknowledgement is committed (a crash before
/// hands it out again), and the function returns only after every
/// acknowledgement it made was committed or failed. Events are taken in
/// batches as large as the handler gets through in a quarter of a lease
/// (at most 64); an event whose lease ran out while the batch was handled
/// is skipped, since it is being handed out again.
///
/// ```no_run
/// # async fn run(inbox: asana_webhooks::inbox::MemoryInbox) {
/// asana_webhooks::inbox::handle_each(inbox, async |item| {
///     println!("{}", item.raw());
///     Ok::<(), std::io::Error>(())
/// })
/// .await;
/// # }
/// ```
pub async fn handle_each<I, F, E>(inbox: I, mut handler: F)
where
    I: Inbox,
    F: AsyncFnMut(&InboxItem) -> Result<(), E>,
    E: std::fmt::Display,
{
    let mut acks = FuturesUnordered::new();
    let mut pace = Pace::default();
    loop {
        let batch = inbox.next_batch(pace.batch()).await;
        if batch.is_empty() {
            break;
        }
        for item in batch {
            if item.lease_left().is_zero() {
                tracing::debug!(
                    id = item.id(),
                    "skipping an event whose lease ran out while its batch was handled"
                );
                continue;
            }
            let started = Instant::now();
            let result = handler(&item).await;
            pace.record(started.elapsed(), item.lease);
            match result {
                Ok(()) => acks.push(item.acknowledge()),
                Err(error) => give_back(item, error).await,
            }
            // Note the commits that already happened, without waiting.
            while let Some(Some(done)) = acks.next().now_or_never() {
                report(done);
            }
            if acks.len() >= MAX_PENDING_ACKS
                && let Some(done) = acks.next().await
            {
                report(done);
            }
        }
    }
    while let Some(done) = acks.next().await {
        report(done);
    }
}

fn report(acknowledged: Result<(), InboxError>) {
    if let Err(e) = acknowledged {
        tracing::warn!(error = %e, "could not acknowledge an event; it will be handed out again");
    }
}

async fn give_back(item: InboxItem, error: impl std::fmt::Display) {
    let (id, attempt) = (item.id(), item.attempt());
    match item.release(&error).await {
        Ok(Released::Retrying { after }) => tracing::warn!(
            id,
            attempt,
            %error,
            retry_in = ?after,
            "the handler failed; the event is retried after a backoff"
        ),
        Ok(Released::DeadLettered) => tracing::error!(
            id,
            attempt,
            %error,
            "the handler failed on the event's last allowed attempt; it moved to the dead letters (Inbox::dead_letters, `asana-webhooks inbox --dead-letters`)"
        ),
        Err(e) => tracing::warn!(
            id,
            error = %e,
            "the handler failed and the event could not be released; it is handed out again when its lease runs out"
        ),
    }
}

/// How many events to take at once: as many as the handler gets through
/// in a quarter of a lease, so that the last of a batch is handled well
/// within its lease; one until the handler has been timed.
#[derive(Default)]
struct Pace {
    /// A handler duration that rises at once with a slow event and falls
    /// slowly after.
    took: Option<Duration>,
    lease: Duration,
}

impl Pace {
    fn record(&mut self, took: Duration, lease: Duration) {
        self.took = Some(match self.took {
            Some(before) => took.max((before * 7 + took) / 8),
            None => took,
        });
        self.lease = lease;
    }

    fn batch(&self) -> usize {
        let Some(took) = self.took else { return 1 };
        let fits = (self.lease / 4).as_secs_f64() / took.as_secs_f64().max(1e-6);
        (fits as usize).clamp(1, MAX_BATCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_fit_a_quarter_lease_and_shrink_at_once_for_a_slow_handler() {
        let mut pace = Pace::default();
        assert_eq!(pace.batch(), 1, "untimed");
        let lease = Duration::from_secs(60);
        pace.record(Duration::from_micros(10), lease);
        assert_eq!(pace.batch(), MAX_BATCH);
        pace.record(Duration::from_secs(5), lease);
        assert_eq!(pace.batch(), 3, "15 s of a 60 s lease at 5 s each");
        pace.record(Duration::from_secs(20), lease);
        assert_eq!(pace.batch(), 1);
    }
}
