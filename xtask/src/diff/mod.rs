//! `cargo xtask spec-diff OLD NEW`: what changed on the webhooks surface
//! between two versions of Asana's spec, and whether it breaks code that
//! uses this SDK.
//!
//! Both versions go through the extraction regen uses (so schemas outside
//! the surface never need to parse), then into a semantic model: `$ref`s
//! resolved, `allOf` merged, path-level parameters folded into their
//! operations, descriptions and examples ignored. A refactor that keeps the
//! meaning is therefore no change.
//!
//! # One rule for "breaking"
//!
//! A change is **breaking** when upgrading this crate breaks its users:
//! code that compiled no longer compiles (a builder method, type, field or
//! enum variant removed or changed, an operation renamed), or answers that
//! decoded no longer decode. A change to Asana's **server-side** contract
//! (a scope added, an auth alternative added or removed, a tighter limit or
//! a newly required input that leaves the generated Rust unchanged) is live
//! at Asana whatever crate version people use: it is reported in its own
//! class and must be named in CHANGELOG.md, but it does not break the
//! crate's semver. Everything else is **non-breaking**.

mod load;
mod model;
mod rust_type;
mod schema;
mod security;
#[cfg(test)]
mod tests;

use anyhow::{Context, Result};

use model::Operation;
use schema::{Side, diff_schema};
use security::diff_security;

pub use load::load;

/// How a change affects the crate's users; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Upgrading the crate breaks code that compiled, or answers that decoded.
    Breaking,
    /// Asana's contract changed at Asana: calls that worked may now be
    /// refused, whatever the crate's version.
    ServerSide,
    /// Nothing that worked stops working.
    NonBreaking,
}

impl Class {
    /// The label reports use.
    pub fn label(self) -> &'static str {
        match self {
            Class::Breaking => "breaking",
            Class::ServerSide => "server-side",
            Class::NonBreaking => "non-breaking",
        }
    }
}

/// The part of an operation a change is in, for grouping reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// The operation itself (added, removed, renamed).
    Operation,
    /// Path and query parameters.
    Parameters,
    /// The request body.
    RequestBody,
    /// The answers.
    Responses,
    /// Authentication alternatives and their scopes.
    Security,
}

impl Section {
    /// The heading reports use.
    pub fn label(self) -> &'static str {
        match self {
            Section::Operation => "operation",
            Section::Parameters => "parameters",
            Section::RequestBody => "request body",
            Section::Responses => "responses",
            Section::Security => "security",
        }
    }
}

/// One difference between the two surfaces. Its JSON form is stable:
/// `{operation, section, location, change, class, breaking, reason}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// `METHOD /path`.
    pub operation: String,
    /// Where in the operation.
    pub section: Section,
    /// Where exactly: the operation and the place in it.
    pub location: String,
    /// What changed.
    pub change: String,
    /// Breaking, server-side or non-breaking.
    pub class: Class,
    /// `class == Breaking`, for readers that only care about that.
    pub breaking: bool,
    /// Why it is in its class, in one line.
    pub reason: &'static str,
}

impl Change {
    /// `location: change`, the text a changelog line (or an ignore entry)
    /// must contain to acknowledge the change.
    pub fn id(&self) -> String {
        format!("{}: {}", self.location, self.change)
    }
}

/// Compares two full spec documents.
pub fn diff(old: &serde_yaml::Value, new: &serde_yaml::Value) -> Result<Vec<Change>> {
    let old = model::model(old).context("reading the old spec")?;
    let new = model::model(new).context("reading the new spec")?;
    let mut changes = Vec::new();
    for (key, op) in &old {
        match new.get(key) {
            None => push(
                &mut changes,
                Class::Breaking,
                key,
                "operation removed".into(),
                "its SDK method disappears on regeneration",
            ),
            Some(new_op) => diff_operation(key, op, new_op, &mut changes),
        }
    }
    for key in new.keys().filter(|k| !old.contains_key(*k)) {
        push(
            &mut changes,
            Class::NonBreaking,
            key,
            "operation added".into(),
            "a new method; existing code is unaffected",
        );
    }
    Ok(changes)
}

pub(super) fn push(
    out: &mut Vec<Change>,
    class: Class,
    location: &str,
    change: String,
    reason: &'static str,
) {
    let operation = location
        .splitn(3, ' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let section = if change.starts_with("security") || change.starts_with("auth alternative") {
        Section::Security
    } else if location.contains(" request body") {
        Section::RequestBody
    } else if location.contains(" response ") {
        Section::Responses
    } else if location.contains(" parameter `") || change.contains(" parameter `") {
        Section::Parameters
    } else {
        Section::Operation
    };
    out.push(Change {
        operation,
        section,
        location: location.to_string(),
        change,
        breaking: class == Class::Breaking,
        class,
        reason,
    });
}

fn diff_operation(key: &str, old: &Operation, new: &Operation, out: &mut Vec<Change>) {
    if old.operation_id != new.operation_id {
        push(
            out,
            Class::Breaking,
            key,
            format!(
                "operationId renamed from `{}` to `{}`",
                old.operation_id.as_deref().unwrap_or("-"),
                new.operation_id.as_deref().unwrap_or("-")
            ),
            "the generated method's name changes",
        );
    }
    for (name, param) in &old.parameters {
        match new.parameters.get(name) {
            None => push(
                out,
                Class::Breaking,
                key,
                format!("{name} removed"),
                "its builder method disappears on regeneration",
            ),
            Some(new_param) => {
                if param.required != new_param.required {
                    let (class, reason, state) = if new_param.required {
                        (
                            Class::ServerSide,
                            "Asana refuses calls that leave it out; the builder still compiles",
                            "required",
                        )
                    } else {
                        (
                            Class::NonBreaking,
                            "calls that pass it keep working",
                            "optional",
                        )
                    };
                    push(out, class, key, format!("{name} is now {state}"), reason);
                }
                diff_schema(
                    &format!("{key} {name}"),
                    &param.schema,
                    &new_param.schema,
                    Side::Request,
                    out,
                );
            }
        }
    }
    for (name, param) in new
        .parameters
        .iter()
        .filter(|(n, _)| !old.parameters.contains_key(*n))
    {
        let (class, reason) = if param.required {
            (
                Class::ServerSide,
                "Asana refuses calls without it; existing code still compiles",
            )
        } else {
            (
                Class::NonBreaking,
                "optional; existing calls are unaffected",
            )
        };
        push(out, class, key, format!("{name} added"), reason);
    }
    match (&old.body, &new.body) {
        (Some(a), Some(b)) => diff_schema(&format!("{key} request body"), a, b, Side::Request, out),
        (None, Some(_)) => push(
            out,
            Class::Breaking,
            &format!("{key} request body"),
            "request body added".into(),
            "the generated method takes a body it did not take",
        ),
        (Some(_), None) => push(
            out,
            Class::Breaking,
            &format!("{key} request body"),
            "request body removed".into(),
            "its builder disappears",
        ),
        (None, None) => {}
    }
    for (status, schema) in &old.responses {
        let location = format!("{key} response {status}");
        match new.responses.get(status) {
            None => push(
                out,
                Class::Breaking,
                &location,
                "response removed".into(),
                "the generated return type changes",
            ),
            Some(new_schema) => {
                if let (Some(a), Some(b)) = (schema, new_schema) {
                    diff_schema(&location, a, b, Side::Response, out);
                }
            }
        }
    }
    for status in new
        .responses
        .keys()
        .filter(|s| !old.responses.contains_key(*s))
    {
        let location = format!("{key} response {status}");
        push(
            out,
            Class::NonBreaking,
            &location,
            "response added".into(),
            "a new outcome; existing ones decode as before",
        );
    }
    diff_security(key, &old.security, &new.security, out);
}
