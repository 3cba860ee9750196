//! `X-Hook-Signature` verification, usable from any web framework.
//!
//! Asana signs each delivery with the lowercase hex HMAC-SHA256 of the raw
//! request body, keyed with the webhook's secret exactly as received. Check
//! it on the bytes you were sent, before parsing anything: re-serialised
//! JSON does not have the same bytes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::hook_secret::HookSecret;

/// The header that carries a delivery's signature.
pub const SIGNATURE_HEADER: &str = "x-hook-signature";

/// The header that carries the secret during the handshake.
pub const SECRET_HEADER: &str = "x-hook-secret";

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The request has no `X-Hook-Signature` header.
    #[error("the delivery has no X-Hook-Signature header")]
    Missing,
    /// The header is not 64 hex digits (a SHA-256 HMAC).
    #[error("X-Hook-Signature is not 64 hex digits")]
    Malformed,
    /// The signature does not match the body and secret: the body was
    /// changed, or it was signed with another webhook's secret.
    #[error("X-Hook-Signature does not match the body (tampered, or signed with another secret)")]
    Mismatch,
}

/// Checks `signature` (the `X-Hook-Signature` value, if the request had
/// one) against the raw `body`, in constant time.
///
/// ```
/// use asana_webhooks::{HookSecret, signature::{sign, verify}};
/// let secret = HookSecret::new("b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81");
/// let body = br#"{"events":[]}"#;
/// let header = sign(&secret, body);
/// assert!(verify(&secret, body, Some(&header)).is_ok());
/// assert!(verify(&secret, b"{\"events\": []}", Some(&header)).is_err());
/// ```
pub fn verify(
    secret: &HookSecret,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    Signature::from_header(signature)?.verify(secret, body)
}

/// A parsed `X-Hook-Signature`: parse once, then check it against each
/// secret of a target (several webhooks may share one).
#[derive(Clone, Copy)]
pub struct Signature([u8; 32]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signature(..)")
    }
}

impl Signature {
    /// Parses the header value, if the request had one.
    pub fn from_header(signature: Option<&str>) -> Result<Self, SignatureError> {
        let signature = signature.ok_or(SignatureError::Missing)?.trim();
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(signature, &mut bytes).map_err(|_| SignatureError::Malformed)?;
        Ok(Self(bytes))
    }

    /// Checks the signature against `body` keyed with `secret`, in
    /// constant time.
    pub fn verify(&self, secret: &HookSecret, body: &[u8]) -> Result<(), SignatureError> {
        let mut mac = mac(secret);
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&self.0)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// The `X-Hook-Signature` value for `body`: lowercase hex HMAC-SHA256.
/// Useful for tests and for local servers that play Asana.
pub fn sign(secret: &HookSecret, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn mac(secret: &HookSecret) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes any key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // HMAC-SHA256 of "The quick brown fox jumps over the lazy dog" keyed with "key" (RFC 4231 style example).
        let secret = HookSecret::new("key");
        let body = b"The quick brown fox jumps over the lazy dog";
        assert_eq!(
            sign(&secret, body),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let secret = HookSecret::new("s");
        let body = b"{}";
        let good = sign(&secret, body);
        assert_eq!(verify(&secret, body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(&secret, body, Some("zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secret, body, Some(&good[..62])),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&secret, b"{ }", Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&HookSecret::new("t"), body, Some(&good)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(&secret, body, Some(&good)), Ok(()));
    }
}
