//! Security requirements: a list of alternatives, any one of which is enough.

use std::collections::{BTreeMap, BTreeSet};

use super::{Change, Class, push};

/// An alternative's name: its schemes joined with `+`.
pub(super) fn alternative_name(alternative: &BTreeMap<String, BTreeSet<String>>) -> String {
    if alternative.is_empty() {
        return "anonymous".into();
    }
    alternative.keys().cloned().collect::<Vec<_>>().join("+")
}
/// Security is a list of alternatives, any one of which is enough; they
/// are matched by their schemes, and scopes compared within each.
pub(super) fn diff_security(
    key: &str,
    old: &[BTreeMap<String, BTreeSet<String>>],
    new: &[BTreeMap<String, BTreeSet<String>>],
    out: &mut Vec<Change>,
) {
    let by_name = |list: &[BTreeMap<String, BTreeSet<String>>]| -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
        list.iter().map(|a| (alternative_name(a), a.clone())).collect()
    };
    let (old, new) = (by_name(old), by_name(new));
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        push(
            out,
            Class::ServerSide,
            key,
            format!("auth alternative `{name}` removed"),
            "calls authenticated only that way are refused by Asana",
        );
    }
    for name in new.keys().filter(|n| !old.contains_key(*n)) {
        push(
            out,
            Class::ServerSide,
            key,
            format!("auth alternative `{name}` added"),
            "another way to authenticate is accepted by Asana",
        );
    }
    for (name, before) in &old {
        let Some(after) = new.get(name) else { continue };
        for (scheme, scopes) in after {
            let had = before.get(scheme).cloned().unwrap_or_default();
            for scope in scopes.difference(&had) {
                push(
                    out,
                    Class::ServerSide,
                    key,
                    format!("security: scope `{scope}` added to alternative `{name}`"),
                    "tokens without it may now be refused by Asana",
                );
            }
            for scope in had.difference(scopes) {
                push(
                    out,
                    Class::NonBreaking,
                    key,
                    format!("security: scope `{scope}` removed from alternative `{name}`"),
                    "tokens that had it still work",
                );
            }
        }
    }
}
