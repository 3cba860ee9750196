//! Rewrites that make each request exactly what Asana expects on the wire.
//!
//! The generated code sends an array query parameter as repeated keys and
//! adds progenitor's `api-version` header; Asana wants `opt_fields` as one
//! comma-joined value and defines no such header.

use reqwest::header::{HeaderMap, HeaderName};
use url::Url;

/// Query parameters that Asana declares with `style: form, explode: false`.
const COMMA_JOINED: &[&str] = &["opt_fields"];

/// Headers that the generator adds but Asana does not define (as header
/// names, so that removing one needs no parsing of the name).
const UNDECLARED_HEADERS: [HeaderName; 1] = [HeaderName::from_static("api-version")];

/// Merges every repeated comma-joined parameter into one value, in the order
/// the values were given, at the position of its first occurrence:
/// `opt_fields=a&opt_fields=b` becomes `opt_fields=a,b`. Commas stay literal.
///
/// It works on the query as the generated code encoded it, segment by
/// segment, without decoding and re-encoding it. Every request passes
/// through here, so it makes one pass per joinable key and at most one
/// allocation, and leaves a query without a repeated key untouched.
pub(crate) fn join_comma_params(url: &mut Url) {
    for key in COMMA_JOINED {
        let Some(query) = url.query() else { return };
        if let Some(joined) = join_key(query, key) {
            url.set_query(Some(&joined));
        }
    }
}

/// `query` with the values of every `key=…` segment merged into the first
/// one, or `None` when `key` occurs less than twice (nothing to merge). The
/// copy is only made on reaching the second occurrence: up to there, the
/// query is already as it should be.
fn join_key(query: &str, key: &str) -> Option<String> {
    // Where the values of `key` end: in `query` until the copy exists, then
    // in the copy.
    let mut values_end = None;
    // A bare first `key` (no `=`) gets its `=` when a value joins it.
    let mut bare_first = false;
    let mut joined: Option<String> = None;
    let mut start = 0;
    for segment in query.split('&') {
        match (value_of(segment, key), values_end) {
            (Some(_), None) => {
                values_end = Some(start + segment.len());
                bare_first = segment.len() == key.len();
            }
            (Some(value), Some(end)) => {
                // At the second occurrence, copy what came before it
                // (without the `&` that led here).
                let out = joined.get_or_insert_with(|| {
                    let mut out = String::with_capacity(query.len() + 1);
                    out.push_str(&query[..start - 1]);
                    out
                });
                let separator = if std::mem::take(&mut bare_first) {
                    "=,"
                } else {
                    ","
                };
                out.insert_str(end, separator);
                out.insert_str(end + separator.len(), value);
                values_end = Some(end + separator.len() + value.len());
            }
            (None, _) => {
                if let Some(out) = joined.as_mut() {
                    out.push('&');
                    out.push_str(segment);
                }
            }
        }
        start += segment.len() + 1;
    }
    joined
}

/// The value of a `key=value` (or bare `key`) segment, if its key is `key`.
fn value_of<'a>(segment: &'a str, key: &str) -> Option<&'a str> {
    match segment.strip_prefix(key)? {
        "" => Some(""),
        rest => rest.strip_prefix('='),
    }
}

/// Removes the headers Asana does not define.
pub(crate) fn strip_undeclared_headers(headers: &mut HeaderMap) {
    for name in &UNDECLARED_HEADERS {
        headers.remove(name);
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
    fn a_single_occurrence_and_lookalike_keys_are_left_alone() {
        for query in [
            "opt_fields=active",
            "opt_fieldsx=a&opt_fieldsx=b",
            "xopt_fields=a&opt_fields=b",
            "limit=5",
        ] {
            assert_eq!(join_key(query, "opt_fields"), None, "{query}");
        }
    }

    /// The single-pass join agrees with a plain model (split, group, join)
    /// on every query of up to four segments drawn from keys that are,
    /// resemble, or differ from the joinable one.
    #[test]
    fn the_join_agrees_with_a_plain_model_on_every_small_query() {
        fn model(query: &str, key: &str) -> Option<String> {
            let segments: Vec<&str> = query.split('&').collect();
            let values: Vec<&str> = segments.iter().filter_map(|s| value_of(s, key)).collect();
            if values.len() < 2 {
                return None;
            }
            let mut out: Vec<String> = Vec::new();
            let mut merged = false;
            for segment in segments {
                match value_of(segment, key) {
                    Some(_) if merged => {}
                    Some(_) => {
                        merged = true;
                        out.push(format!("{key}={}", values.join(",")));
                    }
                    None => out.push(segment.to_string()),
                }
            }
            Some(out.join("&"))
        }
        let pieces = [
            "opt_fields=a",
            "opt_fields=b%2Cc",
            "opt_fields",
            "opt_fields=",
            "opt_fieldsx=d",
            "limit=5",
            "",
        ];
        let mut checked = 0;
        let mut queries: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
        for _ in 1..4 {
            let longer: Vec<String> = queries
                .iter()
                .flat_map(|q| pieces.iter().map(move |p| format!("{q}&{p}")))
                .collect();
            for query in queries.iter().chain(&longer) {
                assert_eq!(
                    join_key(query, "opt_fields"),
                    model(query, "opt_fields"),
                    "{query}"
                );
                checked += 1;
            }
            queries = longer;
        }
        assert!(checked > 2_000, "{checked}");
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
