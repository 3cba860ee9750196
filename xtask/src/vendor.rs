//! `cargo xtask update-spec PATH`: vendor a new official spec file.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{diff, regen, report};

const README: &str = "openapi/README.md";
const CHANGELOG: &str = "CHANGELOG.md";

/// Replaces the value of the `- key: …` provenance line.
fn set_line(text: &str, key: &str, value: &str) -> Result<String> {
    let prefix = format!("- {key}: ");
    if !text.lines().any(|l| l.starts_with(&prefix)) {
        bail!("{README} has no `{prefix}…` line to update; restore it and run again");
    }
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                format!("{prefix}{value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    Ok(lines.join("\n") + "\n")
}

fn today() -> Result<String> {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .context("running `date`")?;
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// Adds `entry` under the changelog's "## Unreleased" heading.
fn changelog(root: &Path, entry: &str) -> Result<()> {
    let path = root.join(CHANGELOG);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Changelog\n".to_string());
    let updated = match text.find("## Unreleased\n") {
        Some(at) => {
            let insert = at + "## Unreleased\n".len();
            format!("{}\n{entry}{}", &text[..insert], &text[insert..])
        }
        None => {
            let (head, rest) = text.split_once('\n').unwrap_or((&text, ""));
            format!("{head}\n\n## Unreleased\n\n{entry}{rest}")
        }
    };
    std::fs::write(&path, updated)?;
    Ok(())
}

/// The CHANGELOG entry of a spec update: one line naming each breaking and
/// server-side change (what `spec-diff --acknowledged-in` looks for), then
/// the grouped markdown report.
fn changelog_entry(old_sha: &str, new_sha: &str, changes: &[diff::Change]) -> String {
    let mut entry = format!("- Asana spec updated: sha256 {old_sha} → {new_sha}.\n");
    for change in changes
        .iter()
        .filter(|c| c.class != diff::Class::NonBreaking)
    {
        entry.push_str(&format!("  - {}: {}\n", change.class.label(), change.id()));
    }
    let markdown = report::render(report::Format::Markdown, changes, &[]);
    entry.push('\n');
    for line in markdown.lines() {
        if line.is_empty() {
            entry.push('\n');
        } else {
            entry.push_str(&format!("  {line}\n"));
        }
    }
    entry
}

/// Vendors `source`, updates provenance, regenerates, reports, and logs it.
pub fn run(source: &str) -> Result<()> {
    let root = regen::workspace_root();
    let vendored = root.join(regen::VENDORED_SPEC);
    let new_bytes = std::fs::read(source).with_context(|| format!("reading {source}"))?;
    let new_yaml: serde_yaml::Value =
        serde_yaml::from_slice(&new_bytes).with_context(|| format!("{source} is not YAML"))?;
    let old_bytes = std::fs::read(&vendored)?;
    let old_yaml: serde_yaml::Value = serde_yaml::from_slice(&old_bytes)?;
    let changes = diff::diff(&old_yaml, &new_yaml)?;

    let (old_sha, new_sha) = (regen::sha256_hex(&old_bytes), regen::sha256_hex(&new_bytes));
    let readme_path = root.join(README);
    let old_readme = std::fs::read_to_string(&readme_path)?;
    let mut readme = set_line(&old_readme, "sha256", &new_sha)?;
    readme = set_line(&readme, "vendored", &today()?)?;
    readme = set_line(
        &readme,
        "source",
        &format!("{source} (fill in the upstream repository and commit)"),
    )?;
    std::fs::write(&vendored, &new_bytes)?;
    std::fs::write(&readme_path, readme)?;

    // Regeneration can refuse the new spec (a spec fix that no longer
    // applies); then nothing is left half-updated.
    let stale = match regen::run(false) {
        Ok(stale) => stale,
        Err(e) => {
            std::fs::write(&vendored, &old_bytes)?;
            std::fs::write(&readme_path, old_readme)?;
            print!("{}", report::render(report::Format::Text, &changes, &[]));
            return Err(e.context(
                "regeneration failed, so the new spec was not vendored; adjust xtask/src/fixes.rs",
            ));
        }
    };
    print!("{}", report::render(report::Format::Text, &changes, &[]));
    let stat = Command::new("git")
        .args([
            "diff",
            "--stat",
            "--",
            "asana-webhooks/src/generated.rs",
            "openapi/webhooks.yaml",
        ])
        .current_dir(&root)
        .output()?;
    println!(
        "\nregenerated: {}\n{}",
        stale.join(", "),
        String::from_utf8_lossy(&stat.stdout)
    );

    changelog(&root, &changelog_entry(&old_sha, &new_sha, &changes))?;
    println!(
        "added to {CHANGELOG} under Unreleased; review, complete the source line in {README}, and commit"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_lines_are_replaced_and_a_missing_one_is_an_error() {
        let text = "# x\n- sha256: aaa\n- vendored: 2020-01-01\n";
        assert_eq!(
            set_line(text, "sha256", "bbb").unwrap(),
            "# x\n- sha256: bbb\n- vendored: 2020-01-01\n"
        );
        assert!(
            set_line(text, "source", "s")
                .unwrap_err()
                .to_string()
                .contains("- source: ")
        );
    }

    #[test]
    fn a_spec_update_entry_names_each_change_to_acknowledge_and_groups_the_report() {
        let changes = vec![
            diff::Change {
                operation: "GET /webhooks".into(),
                section: diff::Section::Security,
                location: "GET /webhooks".into(),
                change: "auth alternative `pat` added".into(),
                class: diff::Class::ServerSide,
                breaking: false,
                reason: "r",
            },
            diff::Change {
                operation: "GET /webhooks".into(),
                section: diff::Section::Parameters,
                location: "GET /webhooks query parameter `limit`".into(),
                change: "removed".into(),
                class: diff::Class::Breaking,
                breaking: true,
                reason: "r",
            },
        ];
        let entry = changelog_entry("old", "new", &changes);
        assert!(
            entry.contains("  - server-side: GET /webhooks: auth alternative `pat` added\n"),
            "{entry}"
        );
        assert!(
            entry.contains("  - breaking: GET /webhooks query parameter `limit`: removed\n"),
            "{entry}"
        );
        assert!(entry.contains("  #### `GET /webhooks`"), "{entry}");
        assert!(entry.contains("1 breaking, 1 server-side"), "{entry}");
    }

    #[test]
    fn changelog_entries_go_under_unreleased() {
        let dir = std::env::temp_dir().join(format!("xtask-changelog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        changelog(&dir, "- first\n").unwrap();
        changelog(&dir, "- second\n").unwrap();
        let text = std::fs::read_to_string(dir.join(CHANGELOG)).unwrap();
        assert_eq!(
            text,
            "# Changelog\n\n## Unreleased\n\n- second\n\n- first\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
