//! An inbox in memory: fast, and lost with the process.

use std::time::Duration;

use super::engine::{Batch, Engine, Journal, Loaded};
use super::{DEFAULT_LEASE, DEFAULT_MAX_BYTES, InboxError, Retries};

/// An [`Inbox`](super::Inbox) in memory. **Not durable**: whatever it holds when the
/// process stops is lost, and Asana never delivers it again. For tests,
/// and for applications that accept losing events; otherwise use
/// [`super::FileInbox`].
#[derive(Clone)]
pub struct MemoryInbox {
    engine: Engine,
}

impl std::fmt::Debug for MemoryInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryInbox").finish_non_exhaustive()
    }
}

struct NoJournal;

impl Journal for NoJournal {
    fn load(&mut self) -> Result<Loaded, InboxError> {
        Ok(Loaded::default())
    }

    fn commit(&mut self, _batch: &Batch) -> Result<(), InboxError> {
        Ok(())
    }
}

impl Default for MemoryInbox {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryInbox {
    /// An empty inbox with the default lease and size limit.
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_LEASE, DEFAULT_MAX_BYTES)
    }

    /// An empty inbox whose items are leased for `lease` and which holds
    /// at most `max_bytes` of events.
    pub fn with_limits(lease: Duration, max_bytes: u64) -> Self {
        Self {
            engine: Engine::start(Box::new(NoJournal), lease, max_bytes)
                .expect("an in-memory inbox starts"),
        }
    }

    /// Retries failed items as `retries` says (by default
    /// [`Retries::default`]), for this inbox and every clone of it.
    pub fn with_retries(self, retries: Retries) -> Self {
        self.engine.set_retries(retries);
        self
    }
}

impl MemoryInbox {
    /// See [`Inbox::check_ready`](super::Inbox::check_ready).
    async fn ready(&self) -> Result<(), InboxError> {
        self.engine.probe().await
    }
}

super::engine::inbox_over_engine!(MemoryInbox);
