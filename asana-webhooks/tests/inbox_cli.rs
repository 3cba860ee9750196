//! `asana-webhooks inbox` shows, lists, re-drives and purges the dead
//! letters of a file inbox.
#![cfg(feature = "cli")]

use std::process::Command;
use std::time::Duration;

use asana_webhooks::inbox::{EventSource, FileInbox, Inbox, Released, Retries, VerifiedDelivery};
use asana_webhooks::secrets::TargetKey;
use serde_json::value::RawValue;

const BIN: &str = env!("CARGO_BIN_EXE_asana-webhooks");

/// Runs `asana-webhooks inbox --inbox <path> <args>`: (exit code, stdout,
/// stderr).
fn inbox(path: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .arg("inbox")
        .arg("--inbox")
        .arg(path)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_inbox_command_shows_lists_redrives_and_purges_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.redb");
    {
        let inbox = FileInbox::open(&path)
            .await
            .unwrap()
            .with_retries(Retries::default().with_max_attempts(1));
        inbox
            .append(VerifiedDelivery {
                target: TargetKey::from_path_and_query("/hooks"),
                webhook_gid: Some("7".into()),
                source: EventSource::Webhook,
                resource: None,
                events: [r#"{"n":1}"#, r#"{"n":2}"#]
                    .iter()
                    .map(|e| RawValue::from_string(e.to_string()).unwrap())
                    .collect(),
            })
            .await
            .unwrap();
        let item = tokio::time::timeout(Duration::from_secs(5), inbox.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            item.release("no handler").await.unwrap(),
            Released::DeadLettered
        );
        inbox.close();
    }

    let (code, out, err) = inbox(&path, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 waiting (0 retrying"), "{out}");
    assert!(
        out.contains("dead letters: 1 (list them with --dead-letters"),
        "{out}"
    );

    let (code, out, err) = inbox(&path, &["--dead-letters"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["event"], serde_json::json!({"n": 1}));
    assert_eq!(lines[0]["attempts"], 1);
    assert_eq!(lines[0]["last_error"], "no handler");
    assert_eq!(lines[0]["webhook_gid"], "7");
    let id = lines[0]["id"].as_u64().unwrap();

    let (code, out, err) = inbox(&path, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (stats["dead_letters"].as_u64(), stats["waiting"].as_u64()),
        (Some(1), Some(1))
    );

    let (code, out, err) = inbox(&path, &["--redrive", "all"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 dead letters moved back"), "{err}");
    assert!(
        out.contains("2 waiting") && out.contains("dead letters: 0"),
        "{out}"
    );

    // Dead again, then purged by id.
    {
        let inbox = FileInbox::open(&path)
            .await
            .unwrap()
            .with_retries(Retries::default().with_max_attempts(1));
        let item = inbox.next().await.unwrap();
        assert_eq!(item.id(), id, "re-driven with its id, first in line");
        item.release("still no handler").await.unwrap();
        inbox.close();
    }
    let (code, _, err) = inbox(&path, &["--purge", &format!("{id},999")]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 dead letters purged"), "{err}");
    let (code, out, _) = inbox(&path, &["--dead-letters"]);
    assert_eq!((code, out.as_str()), (0, ""));

    let (code, _, err) = inbox(&path, &["--purge", "x"]);
    assert_eq!(code, 2, "bad usage");
    assert!(err.contains("`x` is not an id"), "{err}");
}
