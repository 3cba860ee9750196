//! Rewrites that make each request exactly what Asana expects on the wire.
//!
//! The generated code sends an array query parameter as repeated keys and
//! adds progenitor's `api-version` header; Asana wants `opt_fields` as one
//! comma-joined value and defines no such header.

use reqwest::header::HeaderMap;
use url::Url;

/// Query parameters that Asana declares with `style: form, explode: false`.
const COMMA_JOINED: &[&str] = &["opt_fields"];

/// Headers that the generator adds but Asana does not define.
const UNDECLARED_HEADERS: &[&str] = &["api-version"];

/// Merges every repeated comma-joined parameter into one value, in the order
/// the values were given, at the position of its first occurrence:
/// `opt_fields=a&opt_fields=b` becomes `opt_fields=a,b`. Commas stay literal.
///
/// It works on the query as the generated code encoded it, segment by
/// segment, without decoding and re-encoding it: every request passes
/// through here, and a query without a repeated key is left untouched
/// without allocating.
pub(crate) fn join_comma_params(url: &mut Url) {
    let Some(query) = url.query() else { return };
    let repeated = COMMA_JOINED.iter().any(|joinable| {
        query
            .split('&')
            .filter(|segment| key_of(segment) == *joinable)
            .nth(1)
            .is_some()
    });
    if !repeated {
        return;
    }
    // (key, the segments that carry it): joinable keys gather all their
    // values in one entry, other segments stay as they are.
    let mut merged: Vec<(&str, Vec<&str>)> = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let key = key_of(segment);
        if COMMA_JOINED.contains(&key)
            && let Some((_, values)) = merged.iter_mut().find(|(k, _)| *k == key)
        {
            values.push(segment);
            continue;
        }
        merged.push((key, vec![segment]));
    }
    let mut joined = String::with_capacity(query.len());
    for (key, segments) in &merged {
        if !joined.is_empty() {
            joined.push('&');
        }
        if COMMA_JOINED.contains(key) {
            joined.push_str(key);
            joined.push('=');
            for (n, segment) in segments.iter().enumerate() {
                if n > 0 {
                    joined.push(',');
                }
                joined.push_str(segment.split_once('=').map_or("", |(_, v)| v));
            }
        } else {
            joined.push_str(segments[0]);
        }
    }
    url.set_query(Some(&joined));
}

/// The key of a `key=value` query segment.
fn key_of(segment: &str) -> &str {
    segment.split_once('=').map_or(segment, |(key, _)| key)
}

/// Removes the headers Asana does not define.
pub(crate) fn strip_undeclared_headers(headers: &mut HeaderMap) {
    for name in UNDECLARED_HEADERS {
        headers.remove(*name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_opt_fields_become_one_comma_joined_value() {
        let mut url = Url::parse(
            "https://x/webhooks?limit=5&opt_fields=active&workspace=1&opt_fields=filters.action",
        )
        .unwrap();
        join_comma_params(&mut url);
        assert_eq!(
            url.query(),
            Some("limit=5&opt_fields=active,filters.action&workspace=1")
        );
    }

    #[test]
    fn other_parameters_are_left_alone() {
        let mut url = Url::parse("https://x/webhooks?workspace=a%20b&workspace=c").unwrap();
        join_comma_params(&mut url);
        assert_eq!(url.query(), Some("workspace=a%20b&workspace=c"));
    }

    #[test]
    fn api_version_header_is_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("api-version", "1.0".parse().unwrap());
        headers.insert("accept", "application/json".parse().unwrap());
        strip_undeclared_headers(&mut headers);
        assert!(headers.get("api-version").is_none());
        assert!(headers.get("accept").is_some());
    }
}
