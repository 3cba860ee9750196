//! Sandbox time: the wall clock at start, plus real elapsed time × scale.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    started_real: Instant,
    started_at: DateTime<Utc>,
    scale: f64,
}

impl Clock {
    /// A clock `ahead` of the system clock, running `scale` times as fast.
    pub(crate) fn new(scale: f64, ahead: Duration) -> Self {
        Self {
            started_real: Instant::now(),
            started_at: Utc::now()
                + chrono::Duration::from_std(ahead).unwrap_or(chrono::Duration::zero()),
            scale,
        }
    }

    /// The current sandbox time.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        let elapsed = self.started_real.elapsed().mul_f64(self.scale);
        self.started_at + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }

    /// The real duration that `sandbox` of sandbox time takes.
    pub(crate) fn real(&self, sandbox: Duration) -> Duration {
        sandbox.div_f64(self.scale)
    }

    /// The real time left until sandbox time `at`.
    pub(crate) fn until(&self, at: DateTime<Utc>) -> Duration {
        (at - self.now())
            .to_std()
            .map(|d| self.real(d))
            .unwrap_or(Duration::ZERO)
    }
}
