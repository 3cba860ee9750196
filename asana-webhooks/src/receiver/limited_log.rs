//! Warnings that a flood of bad requests cannot turn into a flood of log
//! lines: at most one `warn` per kind every 10 seconds, the rest at `debug`,
//! with the count of those held back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const INTERVAL: Duration = Duration::from_secs(10);

/// One kind of refusal's warning budget.
#[derive(Debug, Default)]
pub(crate) struct LimitedWarning {
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl LimitedWarning {
    pub(crate) const fn new() -> Self {
        Self {
            last_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// Whether this occurrence may be logged at `warn`; if so, also the
    /// number of occurrences held back since the last one.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= INTERVAL.as_millis() as u64
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Logs a refusal: `warn` within the budget of `$limit`, `debug` otherwise.
macro_rules! refusal {
    ($limit:expr, $($field:tt)+) => {
        match $limit.allow() {
            Some(held_back) => tracing::warn!(held_back, $($field)+),
            None => tracing::debug!($($field)+),
        }
    };
}
pub(crate) use refusal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_of_a_burst_is_a_warning() {
        let limit = LimitedWarning::new();
        assert_eq!(limit.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(limit.allow(), None);
        }
        // Pretend the interval passed.
        limit.last_ms.store(0, Ordering::Relaxed);
        assert_eq!(limit.allow(), Some(1000));
    }
}
