//! What a sandbox counts of the requests it receives.

use std::collections::BTreeMap;

/// The API requests a sandbox received: every request to an API path
/// (`/api/1.0/…`), whatever its answer (401 and 429 included), by Asana's
/// operation id. The token endpoint's grants are counted apart
/// ([`crate::sandbox::OAuthCounts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiRequests {
    /// All of them.
    pub total: u64,
    /// By operation: `getWebhooks`, `createWebhook`, `getWebhook`,
    /// `updateWebhook`, `deleteWebhook`, `getEvents`, and `other` for a
    /// path or method Asana has no operation for.
    pub by_operation: BTreeMap<&'static str, u64>,
}

impl ApiRequests {
    /// The requests to `operation` (an Asana operation id such as
    /// `getWebhooks`).
    pub fn of(&self, operation: &str) -> u64 {
        self.by_operation.get(operation).copied().unwrap_or(0)
    }

    /// The requests received since `earlier`, a count taken before.
    pub fn since(&self, earlier: &ApiRequests) -> ApiRequests {
        let by_operation = self
            .by_operation
            .iter()
            .map(|(op, n)| (*op, n.saturating_sub(earlier.of(op))))
            .filter(|(_, n)| *n > 0)
            .collect();
        ApiRequests {
            total: self.total.saturating_sub(earlier.total),
            by_operation,
        }
    }
}
