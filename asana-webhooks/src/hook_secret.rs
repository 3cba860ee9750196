//! The webhook secret Asana hands out once, at the handshake.

use std::fmt;

/// A webhook's `X-Hook-Secret`: the key of every delivery's signature.
///
/// Asana sends it once, during the handshake and in the 201 answer, never
/// again: store it. `Debug` and `Display` never show it; call
/// [`HookSecret::expose`] where the raw value is really needed.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct HookSecret(String);

impl HookSecret {
    /// Wraps a secret as received (it is used as is, not hex-decoded).
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The raw secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HookSecret(<redacted>)")
    }
}

impl fmt::Display for HookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
