//! Signed page offsets: a listing's position and the time it was handed
//! out, hex-encoded and followed by a truncated HMAC, so that a client can
//! neither forge a position nor keep using an offset past its TTL (as
//! Asana's opaque, expiring offsets behave). The Events API's sync tokens
//! are sealed the same way ([`seal`], [`open`]).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::failure::Failure;
use crate::hook_secret::HookSecret;
use crate::signature;

/// Hex digits of the HMAC kept at the end of a token.
const MAC_LEN: usize = 24;

/// `payload` in hex, followed by its HMAC with `key` (truncated).
pub(crate) fn seal(key: &HookSecret, payload: &str) -> String {
    let mac = signature::sign(key, payload.as_bytes());
    format!("{}{}", hex::encode(payload), &mac[..MAC_LEN])
}

/// The payload `key` sealed into `token`, or `None` for anything else
/// (another key, a changed digit, not hex, not ASCII, too short).
pub(crate) fn open(key: &HookSecret, token: &str) -> Option<String> {
    // Tokens this sandbox hands out are ASCII hex; anything else (a
    // forged token with multi-byte characters would make the split
    // below fall inside a character) is simply invalid.
    if token.len() <= MAC_LEN || !token.is_ascii() {
        return None;
    }
    let (payload_hex, mac) = token.split_at(token.len() - MAC_LEN);
    let payload = hex::decode(payload_hex)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())?;
    (signature::sign(key, payload.as_bytes())[..MAC_LEN] == *mac).then_some(payload)
}

/// The offset for `position`, issued at `now` and signed with `key`.
pub(crate) fn encode(key: &HookSecret, position: usize, now: DateTime<Utc>) -> String {
    seal(key, &format!("{position}:{}", now.timestamp_millis()))
}

/// The position in `token`, if `key` signed it no longer than `ttl`
/// before `now`.
pub(crate) fn decode(
    key: &HookSecret,
    token: &str,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<usize, Failure> {
    let invalid = || {
        Failure::new(
            400,
            "offset: Your pagination token is invalid. Only use offsets returned by the API.",
        )
    };
    let payload = open(key, token).ok_or_else(invalid)?;
    let (position, issued) = payload.split_once(':').ok_or_else(invalid)?;
    let issued = DateTime::from_timestamp_millis(issued.parse().map_err(|_| invalid())?)
        .ok_or_else(invalid)?;
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    if now - issued > ttl {
        return Err(Failure::new(
            400,
            "offset: Your pagination token has expired.",
        ));
    }
    position.parse().map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(600);
    const INVALID: &str =
        "offset: Your pagination token is invalid. Only use offsets returned by the API.";

    fn key() -> HookSecret {
        HookSecret::new("0123456789abcdef0123456789abcdef")
    }

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(millis).unwrap()
    }

    fn refused(token: &str, now: DateTime<Utc>) -> (u16, String) {
        let f = decode(&key(), token, now, TTL).unwrap_err();
        (f.status, f.message)
    }

    #[test]
    fn a_token_is_its_payload_in_hex_then_the_mac() {
        let token = encode(&key(), 7, at(1_700_000_000_123));
        let payload = "7:1700000000123";
        assert_eq!(token.len(), 2 * payload.len() + MAC_LEN);
        assert_eq!(&token[..2 * payload.len()], hex::encode(payload));
        assert_eq!(
            &token[2 * payload.len()..],
            &signature::sign(&key(), payload.as_bytes())[..MAC_LEN]
        );
    }

    #[test]
    fn round_trip_within_the_ttl() {
        let issued = at(1_700_000_000_000);
        for position in [0, 1, 42, 10_000] {
            let token = encode(&key(), position, issued);
            assert_eq!(decode(&key(), &token, issued, TTL), Ok(position));
            // The TTL itself is still valid; only past it is a token expired.
            let last = issued + chrono::Duration::seconds(600);
            assert_eq!(decode(&key(), &token, last, TTL), Ok(position));
        }
    }

    #[test]
    fn expired_tokens_are_refused() {
        let issued = at(1_700_000_000_000);
        let token = encode(&key(), 3, issued);
        let late = issued + chrono::Duration::milliseconds(600_001);
        assert_eq!(
            refused(&token, late),
            (400, "offset: Your pagination token has expired.".into())
        );
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let now = at(1_700_000_000_000);
        let token = encode(&key(), 3, now);
        // One MAC digit changed.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert_eq!(refused(&forged, now), (400, INVALID.into()));
        // Another position with the old MAC.
        let mac = &token[token.len() - MAC_LEN..];
        let moved = format!("{}{mac}", hex::encode("9:1700000000000"));
        assert_eq!(refused(&moved, now), (400, INVALID.into()));
        // Signed with another key.
        let other = encode(&HookSecret::new("another key"), 3, now);
        assert_eq!(refused(&other, now), (400, INVALID.into()));
        // Too short to hold a MAC, or not hex.
        assert_eq!(refused(&token[..MAC_LEN], now), (400, INVALID.into()));
        assert_eq!(refused(&"z".repeat(40), now), (400, INVALID.into()));
    }

    #[test]
    fn non_ascii_tokens_are_refused_without_panicking() {
        let now = at(1_700_000_000_000);
        let token = encode(&key(), 3, now);
        // A two-byte character across the point where the MAC starts: a
        // plain split there would panic.
        let split = token.len() - MAC_LEN;
        let forged = format!("{}é{}", &token[..split - 1], &token[split + 1..]);
        assert_eq!(forged.len(), token.len());
        assert!(!forged.is_char_boundary(split));
        assert_eq!(refused(&forged, now), (400, INVALID.into()));
        assert_eq!(refused(&"é".repeat(20), now), (400, INVALID.into()));
    }
}
