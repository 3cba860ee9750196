//! Tables for people, JSON for scripts.

use std::io::Write;

use asana_webhooks::{CreatedWebhook, Webhook};

use crate::args::Output;

/// Writes one JSON line and flushes it: what a consumer acknowledges after.
pub fn json_line_flushed(value: &serde_json::Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()
}

/// One JSON value on its own line, flushed at once (for pipes).
pub fn json_line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn filters(webhook: &Webhook) -> String {
    if webhook.filters.is_empty() {
        return "-".into();
    }
    webhook
        .filters
        .iter()
        .map(|f| {
            let mut spec = format!(
                "{}:{}",
                or_dash(f.resource_type.as_deref()),
                or_dash(f.action.as_deref())
            );
            if !f.fields.is_empty() {
                spec.push(':');
                spec.push_str(&f.fields.join(","));
            }
            spec
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Several webhooks.
pub fn webhooks(webhooks: &[Webhook], output: Output) {
    if output.json {
        json_line(&serde_json::to_value(webhooks).expect("webhooks serialise"));
        return;
    }
    let rows: Vec<[String; 5]> = webhooks
        .iter()
        .map(|w| {
            [
                or_dash(w.gid.as_deref()),
                or_dash(w.active),
                or_dash(w.resource.as_ref().and_then(|r| r.gid.as_deref())),
                or_dash(w.target.as_deref()),
                filters(w),
            ]
        })
        .collect();
    let header = ["GID", "ACTIVE", "RESOURCE", "TARGET", "FILTERS"].map(String::from);
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in [&header].into_iter().chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    println!("{} webhook(s)", rows.len());
}

/// One webhook with every field.
pub fn webhook(webhook: &Webhook, output: Output) {
    if output.json {
        json_line(&serde_json::to_value(webhook).expect("a webhook serialises"));
        return;
    }
    let resource = webhook.resource.as_ref();
    let lines = [
        ("gid", or_dash(webhook.gid.as_deref())),
        ("active", or_dash(webhook.active)),
        ("resource", or_dash(resource.and_then(|r| r.gid.as_deref()))),
        (
            "resource name",
            or_dash(resource.and_then(|r| r.name.as_deref())),
        ),
        ("target", or_dash(webhook.target.as_deref())),
        ("filters", filters(webhook)),
        ("created_at", or_dash(webhook.created_at)),
        ("last_success_at", or_dash(webhook.last_success_at)),
        ("last_failure_at", or_dash(webhook.last_failure_at)),
        (
            "last_failure_content",
            or_dash(
                webhook
                    .last_failure_content
                    .as_deref()
                    .map(|c| c.replace('\n', " ")),
            ),
        ),
        (
            "delivery_retry_count",
            or_dash(webhook.delivery_retry_count),
        ),
        ("next_attempt_after", or_dash(webhook.next_attempt_after)),
        (
            "failure_deletion_timestamp",
            or_dash(webhook.failure_deletion_timestamp),
        ),
    ];
    for (name, value) in lines {
        println!("{name:27} {value}");
    }
}

/// A created webhook; the secret is printed once, since Asana never repeats it.
pub fn created(created: &CreatedWebhook, output: Output) {
    let secret = created.secret.as_ref().map(|s| s.expose().to_string());
    if output.json {
        json_line(&serde_json::json!({"data": created.webhook, "X-Hook-Secret": secret}));
        return;
    }
    webhook(&created.webhook, output);
    println!("{:27} {}", "secret", or_dash(secret));
    eprintln!("note: store the secret now; Asana never sends it again");
}
