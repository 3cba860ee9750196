//! The webhook secret Asana hands out once, at the handshake.

use std::fmt;

/// The longest handshake secret accepted (see [`HookSecret::is_plausible`]).
pub const MAX_SECRET_LEN: usize = 256;

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

    /// Whether `value` could be a secret Asana sends: at most
    /// [`MAX_SECRET_LEN`] characters from the URL-safe and base64 alphabets
    /// (Asana's are 64 lowercase hex digits). Anything else in a handshake
    /// comes from someone else, and refusing it keeps a flood of huge or
    /// odd secrets out of the stores.
    pub fn is_plausible(value: &str) -> bool {
        !value.is_empty()
            && value.len() <= MAX_SECRET_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_secrets_asana_could_send_are_plausible() {
        assert!(HookSecret::is_plausible(&"0123456789abcdef".repeat(4)));
        assert!(HookSecret::is_plausible("Zm9v+/=-_.~"));
        assert!(HookSecret::is_plausible(&"a".repeat(MAX_SECRET_LEN)));
        assert!(!HookSecret::is_plausible(&"a".repeat(MAX_SECRET_LEN + 1)));
        assert!(!HookSecret::is_plausible(""));
        assert!(!HookSecret::is_plausible("has space"));
        assert!(!HookSecret::is_plausible("quote\""));
        assert!(!HookSecret::is_plausible("café"));
    }
}
