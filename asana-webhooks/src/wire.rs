//! Rewrites that make each request exactly what Asana expects on the wire.
//!
//! The generated code sends an array query parameter as repeated keys and
//! adds progenitor's `api-version` header; Asana wants `opt_fields` as one
//! comma-joined value and defines no such header.

use reqwest::header::HeaderMap;
use url::Url;
use url::form_urlencoded::byte_serialize;

/// Query parameters that Asana declares with `style: form, explode: false`.
const COMMA_JOINED: &[&str] = &["opt_fields"];

/// Headers that the generator adds but Asana does not define.
const UNDECLARED_HEADERS: &[&str] = &["api-version"];

/// Merges every repeated comma-joined parameter into one value, in the order
/// the values were given, at the position of its first occurrence:
/// `opt_fields=a&opt_fields=b` becomes `opt_fields=a,b`. Commas stay literal.
pub(crate) fn join_comma_params(url: &mut Url) {
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if !pairs
        .iter()
        .any(|(k, _)| COMMA_JOINED.contains(&k.as_str()))
    {
        return;
    }
    let mut merged: Vec<(String, Vec<String>)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        let joinable = COMMA_JOINED.contains(&key.as_str());
        match merged.iter_mut().find(|(k, _)| joinable && *k == key) {
            Some((_, values)) => values.push(value),
            None => merged.push((key, vec![value])),
        }
    }
    let query = merged
        .iter()
        .map(|(key, values)| {
            let encoded: Vec<String> = values
                .iter()
                .map(|v| byte_serialize(v.as_bytes()).collect())
                .collect();
            format!(
                "{}={}",
                byte_serialize(key.as_bytes()).collect::<String>(),
                encoded.join(",")
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    url.set_query(Some(&query));
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
