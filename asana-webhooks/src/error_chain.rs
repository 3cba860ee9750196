//! An error with its causes on one line: what messages that must say
//! everything (a transport error's reason is in its sources) are made of.
//! A leaf, so that both the errors and the token sources use it.

/// `error`, then each of its sources, joined by `: `.
pub(crate) fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
