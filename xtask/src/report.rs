//! Reports of a spec diff for people and machines, and the ignore file that
//! records accepted changes once.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use crate::diff::{Change, Class};

/// How to print a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text for a terminal.
    Text,
    /// Markdown for a pull request or CHANGELOG.md.
    Markdown,
    /// GitHub Actions workflow annotations.
    Github,
    /// JSON: `{version: 1, summary, changes, ignored}`.
    Json,
}

impl Format {
    /// Parses `--format`'s value.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "text" => Format::Text,
            "markdown" | "md" => Format::Markdown,
            "github" => Format::Github,
            "json" => Format::Json,
            other => bail!("unknown format `{other}` (text, markdown, github or json)"),
        })
    }
}

/// An accepted change, with why it was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    /// The change's id (`location: change`).
    pub id: String,
    /// Why it is accepted.
    pub reason: String,
}

/// Reads an ignore file: one entry per line, `ID -- REASON`, where ID is a
/// change's `location: change` as reports print it; `#` starts a comment.
/// An entry without a reason is an error.
pub fn parse_ignore(text: &str) -> Result<Vec<Ignored>> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((id, reason)) = line.split_once(" --") else {
            bail!(
                "line {}: expected `ID -- REASON`, found `{line}`",
                number + 1
            );
        };
        if reason.trim().is_empty() {
            bail!("line {}: `{}` has no reason", number + 1, id.trim());
        }
        entries.push(Ignored {
            id: id.trim().to_string(),
            reason: reason.trim().to_string(),
        });
    }
    Ok(entries)
}

/// Counts per class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Breaking changes not ignored.
    pub breaking: usize,
    /// Server-side changes not ignored.
    pub server_side: usize,
    /// Non-breaking changes.
    pub non_breaking: usize,
    /// Changes the ignore file accepts.
    pub ignored: usize,
}

/// Splits `changes` into those reported and those an ignore entry accepts.
pub fn apply_ignore(
    changes: Vec<Change>,
    ignore: &[Ignored],
) -> (Vec<Change>, Vec<(Change, String)>) {
    let mut kept = Vec::new();
    let mut ignored = Vec::new();
    for change in changes {
        match ignore.iter().find(|entry| entry.id == change.id()) {
            Some(entry) => ignored.push((change, entry.reason.clone())),
            None => kept.push(change),
        }
    }
    (kept, ignored)
}

/// The ignore entries that match no change: stale once Asana or the diff
/// moved on, so they are pointed out rather than kept silently.
pub fn unused<'a>(ignore: &'a [Ignored], ignored: &[(Change, String)]) -> Vec<&'a Ignored> {
    ignore
        .iter()
        .filter(|entry| !ignored.iter().any(|(change, _)| change.id() == entry.id))
        .collect()
}

/// Escapes a workflow command's message: GitHub reads `%`, CR and LF.
fn escape_message(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property, where `:` and `,` also end it.
fn escape_property(text: &str) -> String {
    escape_message(text).replace(':', "%3A").replace(',', "%2C")
}

/// The counts of a report.
pub fn summary(changes: &[Change], ignored: usize) -> Summary {
    let count = |class| changes.iter().filter(|c| c.class == class).count();
    Summary {
        breaking: count(Class::Breaking),
        server_side: count(Class::ServerSide),
        non_breaking: count(Class::NonBreaking),
        ignored,
    }
}

/// Changes grouped by operation, then by section, in a stable order.
fn grouped(changes: &[Change]) -> BTreeMap<&str, BTreeMap<&'static str, Vec<&Change>>> {
    let mut groups: BTreeMap<&str, BTreeMap<&'static str, Vec<&Change>>> = BTreeMap::new();
    for change in changes {
        groups
            .entry(change.operation.as_str())
            .or_default()
            .entry(change.section.label())
            .or_default()
            .push(change);
    }
    groups
}

/// Renders a report.
pub fn render(format: Format, changes: &[Change], ignored: &[(Change, String)]) -> String {
    let summary = summary(changes, ignored.len());
    match format {
        Format::Json => {
            let ignored: Vec<serde_json::Value> = ignored
                .iter()
                .map(|(change, reason)| serde_json::json!({"change": change, "accepted_because": reason}))
                .collect();
            let value = serde_json::json!({
                "version": 1,
                "summary": summary,
                "changes": changes,
                "ignored": ignored,
            });
            serde_json::to_string_pretty(&value).expect("serialises") + "\n"
        }
        Format::Github => changes
            .iter()
            .map(|c| {
                let level = match c.class {
                    Class::Breaking => "error",
                    Class::ServerSide => "warning",
                    Class::NonBreaking => "notice",
                };
                format!(
                    "::{level} title={}::{}\n",
                    escape_property(&format!("{} spec change", c.class.label())),
                    escape_message(&format!("{}: {} ({})", c.location, c.change, c.reason))
                )
            })
            .collect(),
        Format::Markdown => markdown(changes, ignored, summary),
        Format::Text => text(changes, ignored, summary),
    }
}

fn headline(summary: Summary, total: usize) -> String {
    format!(
        "{total} change(s) on the webhooks surface: {} breaking, {} server-side, {} non-breaking{}",
        summary.breaking,
        summary.server_side,
        summary.non_breaking,
        if summary.ignored > 0 {
            format!(", {} ignored", summary.ignored)
        } else {
            String::new()
        }
    )
}

fn text(changes: &[Change], ignored: &[(Change, String)], summary: Summary) -> String {
    if changes.is_empty() && ignored.is_empty() {
        return "no changes on the webhooks surface\n".into();
    }
    let mut out = headline(summary, changes.len()) + "\n";
    for (operation, sections) in grouped(changes) {
        out.push_str(&format!("\n{operation}\n"));
        for (section, list) in sections {
            out.push_str(&format!("  {section}\n"));
            for c in list {
                out.push_str(&format!(
                    "    {:<12}  {}: {}\n                  {}\n",
                    c.class.label(),
                    c.location,
                    c.change,
                    c.reason
                ));
            }
        }
    }
    for (c, reason) in ignored {
        out.push_str(&format!(
            "\nignored ({}): {} -- {reason}\n",
            c.class.label(),
            c.id()
        ));
    }
    out
}

/// A markdown code span that may itself hold backticks.
fn code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

fn markdown(changes: &[Change], ignored: &[(Change, String)], summary: Summary) -> String {
    if changes.is_empty() && ignored.is_empty() {
        return "No changes on the webhooks surface.\n".into();
    }
    let mut out = format!("{}.\n", headline(summary, changes.len()));
    for (operation, sections) in grouped(changes) {
        out.push_str(&format!("\n#### `{operation}`\n\n"));
        for (section, list) in sections {
            for c in list {
                out.push_str(&format!(
                    "- **{}** ({section}) {}: {}. {}\n",
                    c.class.label(),
                    code(&c.location),
                    c.change,
                    c.reason
                ));
            }
        }
    }
    if !ignored.is_empty() {
        out.push_str("\nAccepted in `.spec-diff-ignore`:\n\n");
        for (c, reason) in ignored {
            out.push_str(&format!("- {}: {reason}\n", code(&c.id())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_entries_need_a_reason() {
        let entries =
            parse_ignore("# accepted\nGET /x: removed -- Asana never sent it\n\n").unwrap();
        assert_eq!(
            entries,
            [Ignored {
                id: "GET /x: removed".into(),
                reason: "Asana never sent it".into()
            }]
        );
        assert!(
            parse_ignore("GET /x: removed")
                .unwrap_err()
                .to_string()
                .contains("ID -- REASON")
        );
        assert!(
            parse_ignore("GET /x: removed --  ")
                .unwrap_err()
                .to_string()
                .contains("no reason")
        );
    }

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(code("a"), "`a`");
        assert_eq!(code("GET /x property `y`"), "`` GET /x property `y` ``");
    }

    fn sample() -> Change {
        Change {
            operation: "GET /webhooks".into(),
            section: crate::diff::Section::Parameters,
            location: "GET /webhooks query parameter `limit`".into(),
            change: "maximum changed from 100 to 50%".into(),
            class: Class::ServerSide,
            breaking: false,
            reason: "Asana may refuse requests it took before",
        }
    }

    /// The JSON shape is documented as stable: this pins it key by key.
    #[test]
    fn the_json_shape_is_stable() {
        let ignored = vec![(sample(), "accepted".to_string())];
        let report: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &[sample()], &ignored)).unwrap();
        let change = serde_json::json!({
            "operation": "GET /webhooks",
            "section": "parameters",
            "location": "GET /webhooks query parameter `limit`",
            "change": "maximum changed from 100 to 50%",
            "class": "server-side",
            "breaking": false,
            "reason": "Asana may refuse requests it took before",
        });
        assert_eq!(
            report,
            serde_json::json!({
                "version": 1,
                "summary": {"breaking": 0, "server_side": 1, "non_breaking": 0, "ignored": 1},
                "changes": [change.clone()],
                "ignored": [{"change": change, "accepted_because": "accepted"}],
            })
        );
    }

    #[test]
    fn github_annotations_are_escaped() {
        assert_eq!(
            render(Format::Github, &[sample()], &[]),
            "::warning title=server-side spec change::GET /webhooks query parameter `limit`: \
             maximum changed from 100 to 50%25 (Asana may refuse requests it took before)\n"
        );
    }

    #[test]
    fn stale_ignore_entries_are_found() {
        let entries = parse_ignore(&format!(
            "{} -- accepted\nGET /gone: removed -- long ago\n",
            sample().id()
        ))
        .unwrap();
        let (kept, ignored) = apply_ignore(vec![sample()], &entries);
        assert!(kept.is_empty());
        let stale: Vec<&str> = unused(&entries, &ignored)
            .iter()
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(stale, ["GET /gone: removed"]);
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse("markdown").unwrap(), Format::Markdown);
        assert!(Format::parse("yaml").is_err());
    }
}
