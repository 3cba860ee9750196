//! `cargo xtask spec-diff` as CI runs it: exit codes (0 nothing breaking,
//! 1 breaking, 2 could not compare), formats, the ignore file and the
//! CHANGELOG acknowledgement, on the real spec history.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_xtask");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An earlier official spec, vendored in this repository (provenance in
/// openapi/README.md), so that the tests need nothing outside it.
fn history(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../openapi/history")
        .join(name)
        .display()
        .to_string()
}

const V1: &str = "asana_oas.2024-08-05.61adf42.yaml";
const V2: &str = "asana_oas.2024-08-12.1420f3a.yaml";

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("spec-diff")
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_whole_history_gets_the_right_verdicts() {
    let vendored = root().join("openapi/asana_oas.yaml").display().to_string();
    let (v1, v2) = (history(V1), history(V2));
    // 2024-08: three new fields and enum values, nothing breaking.
    let (code, out, _) = run(&[&v1, &v2]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "24 change(s) on the webhooks surface: 0 breaking, 0 server-side, 24 non-breaking"
        ),
        "{out}"
    );
    // 2024-08 → 2026-06: OAuth scopes added to one alternative: server-side.
    let (code, out, _) = run(&[&v2, &vendored]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 breaking, 5 server-side"), "{out}");
    // Both steps at once: the same 24 additions and 5 scopes, nothing breaking.
    let (code, out, _) = run(&[&v1, &vendored]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "29 change(s) on the webhooks surface: 0 breaking, 5 server-side, 24 non-breaking"
        ),
        "{out}"
    );
    // Back in time: the fields and values disappear, which breaks.
    let (code, out, _) = run(&[&v2, &v1]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = run(&[&vendored, &vendored]);
    assert_eq!(
        (code, out.as_str()),
        (0, "no changes on the webhooks surface\n")
    );
}

#[test]
fn errors_exit_2_not_1() {
    let (code, _, err) = run(&["no-such-file.yaml", "openapi/asana_oas.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-such-file.yaml"), "{err}");
    let dir = tempfile_dir();
    let broken = dir.join("broken.yaml");
    std::fs::write(&broken, "openapi: [unclosed").unwrap();
    let (code, _, err) = run(&[broken.to_str().unwrap(), "openapi/asana_oas.yaml"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&[
        "openapi/asana_oas.yaml",
        "openapi/asana_oas.yaml",
        "--frobnicate",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown flag"), "{err}");
    let (code, _, err) = run(&[
        "openapi/asana_oas.yaml",
        "openapi/asana_oas.yaml",
        "--format",
        "yaml",
    ]);
    assert_eq!(code, 2, "{err}");
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "xtask-spec-diff-{}-{}",
        std::process::id(),
        line!()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn formats_ignore_file_and_acknowledgement() {
    let (v1, v2) = (history(V1), history(V2));
    let vendored = root().join("openapi/asana_oas.yaml").display().to_string();

    let (code, out, _) = run(&[&v2, &v1, "--format", "json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["version"], 1);
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(
        report["summary"]["breaking"].as_u64().unwrap() as usize,
        changes.len()
    );
    for change in changes {
        for key in [
            "operation",
            "section",
            "location",
            "change",
            "class",
            "breaking",
            "reason",
        ] {
            assert!(!change[key].is_null(), "{key} missing in {change}");
        }
    }

    let (_, github, _) = run(&[&v2, &v1, "--format", "github"]);
    assert!(
        github
            .lines()
            .all(|l| l.starts_with("::error title=breaking spec change::")),
        "{github}"
    );
    let (_, markdown, _) = run(&[&v2, &vendored, "--format", "markdown"]);
    assert!(
        markdown.contains("#### `GET /webhooks`")
            && markdown.contains("**server-side** (security)"),
        "{markdown}"
    );

    // Every breaking change accepted once, with a reason: exit 0.
    let dir = tempfile_dir();
    let ignore = dir.join("ignore");
    let ids: Vec<String> = changes
        .iter()
        .map(|c| {
            format!(
                "{}: {} -- downgrading on purpose",
                c["location"].as_str().unwrap(),
                c["change"].as_str().unwrap()
            )
        })
        .collect();
    std::fs::write(&ignore, format!("# accepted\n{}\n", ids.join("\n"))).unwrap();
    let (code, out, _) = run(&[&v2, &v1, "--ignore-file", ignore.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ignored"), "{out}");
    std::fs::write(&ignore, "GET /webhooks: removed --\n").unwrap();
    let (code, _, err) = run(&[&v2, &v1, "--ignore-file", ignore.to_str().unwrap()]);
    assert_eq!(code, 2, "an entry without a reason: {err}");

    // Server-side changes must be named in the changelog, but do not fail alone.
    let changelog = dir.join("CHANGELOG.md");
    std::fs::write(&changelog, "nothing yet\n").unwrap();
    let (code, _, err) = run(&[
        &v2,
        &vendored,
        "--acknowledged-in",
        changelog.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("5 breaking or server-side change(s) not named"),
        "{err}"
    );
    let named: Vec<String> = [
        "DELETE /webhooks/{webhook_gid}",
        "GET /webhooks",
        "GET /webhooks/{webhook_gid}",
        "POST /webhooks",
        "PUT /webhooks/{webhook_gid}",
    ]
    .iter()
    .zip(["delete", "read", "read", "write", "write"])
    .map(|(op, scope)| {
        format!(
            "- server-side: {op}: security: scope `webhooks:{scope}` added to alternative `oauth2`"
        )
    })
    .collect();
    std::fs::write(&changelog, named.join("\n")).unwrap();
    let (code, _, err) = run(&[
        &v2,
        &vendored,
        "--acknowledged-in",
        changelog.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
}
