//! Tables for people, JSON for scripts.

use std::io::{self, Write};

use asana_webhooks::inbox::InboxItem;
use asana_webhooks::{CreatedWebhook, Webhook};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::args::Output;

/// Standard output on a thread of its own, for `listen`: a write that a
/// reader who stopped reading blocks holds only that thread, so neither
/// the runtime nor a stop waits for it (the process ends without it).
#[derive(Clone)]
pub struct Lines {
    lines: std::sync::mpsc::Sender<(String, oneshot::Sender<io::Result<()>>)>,
}

impl Lines {
    /// Starts the thread.
    pub fn spawn() -> io::Result<Self> {
        let (lines, to_write) =
            std::sync::mpsc::channel::<(String, oneshot::Sender<io::Result<()>>)>();
        std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                for (mut line, written) in to_write {
                    line.push('\n');
                    let mut out = io::stdout().lock();
                    let result = out.write_all(line.as_bytes()).and_then(|()| out.flush());
                    drop(out);
                    let _ = written.send(result);
                }
            })?;
        Ok(Self { lines })
    }

    /// Writes `line` (one line, without its newline) and flushes it;
    /// completes once it is written, or failed.
    pub async fn write(&self, line: String) -> io::Result<()> {
        let gone = || io::Error::other("the standard output thread ended");
        let (written, done) = oneshot::channel();
        self.lines.send((line, written)).map_err(|_| gone())?;
        done.await.map_err(|_| gone())?
    }
}

/// An event as `listen` prints it: the event exactly as Asana sent it
/// under `event` (on one line), beside what the inbox knows of it.
pub fn event_line(item: &InboxItem) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Line<'a> {
        id: u64,
        target: &'a str,
        webhook_gid: Option<&'a str>,
        /// `webhook` or `events_api` (caught up).
        source: &'static str,
        resource: Option<&'a str>,
        attempt: u32,
        event: &'a RawValue,
    }
    let event = one_line(item.raw())?;
    serde_json::to_string(&Line {
        id: item.id(),
        target: item.target().as_str(),
        webhook_gid: item.webhook_gid(),
        source: item.source().as_str(),
        resource: item.resource(),
        attempt: item.attempt(),
        event: &event,
    })
}

/// A stored event as `inbox --print` prints it, the event as sent.
pub fn stored_line(
    id: u64,
    webhook_gid: Option<&str>,
    received_at: chrono::DateTime<chrono::Utc>,
    raw: &str,
) -> io::Result<()> {
    #[derive(Serialize)]
    struct Line<'a> {
        id: u64,
        webhook_gid: Option<&'a str>,
        received_at: chrono::DateTime<chrono::Utc>,
        event: &'a RawValue,
    }
    let event = one_line(raw)?;
    let line = serde_json::to_string(&Line {
        id,
        webhook_gid,
        received_at,
        event: &event,
    })?;
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// The JSON text `raw` unchanged, unless it spans several lines: then
/// without the whitespace between its tokens (the text of its strings,
/// its numbers and the order of its keys stay as they are).
fn one_line(raw: &str) -> serde_json::Result<Box<RawValue>> {
    if !raw.contains(['\n', '\r']) {
        return RawValue::from_string(raw.to_string());
    }
    let mut compact = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            compact.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            compact.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            compact.push(c);
        }
    }
    RawValue::from_string(compact)
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
    table(["GID", "ACTIVE", "RESOURCE", "TARGET", "FILTERS"], &rows);
    println!("{} webhook(s)", rows.len());
}

/// Prints aligned columns under a header.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let header = header.map(String::from);
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in [&header].into_iter().chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// The health table of `asana-webhooks status`.
pub fn health(
    report: &asana_webhooks::watch::HealthReport,
    gaps: &[asana_webhooks::secrets::Gap],
    output: Output,
) {
    if output.json {
        let mut value = serde_json::to_value(report).expect("a report serialises");
        value["gaps"] = serde_json::to_value(gaps).expect("gaps serialise");
        json_line(&value);
        return;
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        or_dash(t.map(|t| t.format("%Y-%m-%d %H:%M:%SZ")))
    };
    let rows: Vec<[String; 8]> = report
        .webhooks
        .iter()
        .map(|w| {
            let failure = match (&w.last_failure_at, &w.last_failure_content) {
                (Some(at), content) => format!(
                    "{} {}",
                    at.format("%Y-%m-%d %H:%M:%SZ"),
                    content
                        .as_deref()
                        .unwrap_or("")
                        .lines()
                        .next()
                        .unwrap_or("")
                ),
                (None, _) => "-".into(),
            };
            [
                w.gid.clone(),
                w.state.to_string(),
                or_dash(w.resource.as_deref()),
                time(w.last_success_at),
                failure,
                or_dash(w.delivery_retry_count),
                time(w.failure_deletion_timestamp),
                time(w.last_heartbeat_seen),
            ]
        })
        .collect();
    table(
        [
            "GID",
            "STATE",
            "RESOURCE",
            "LAST SUCCESS",
            "LAST FAILURE",
            "RETRIES",
            "DELETION",
            "HEARTBEAT SEEN",
        ],
        &rows,
    );
    for w in report.webhooks.iter().filter(|w| w.state.is_bad()) {
        println!("{} is {}: {}; {}", w.gid, w.state, w.why, w.advice);
    }
    println!(
        "{} webhook(s), {} request(s) to Asana",
        rows.len(),
        report.requests
    );
    gap_lines(gaps);
}

/// The recorded gaps, one line each: when nothing was delivered, and
/// whether its events were caught up.
fn gap_lines(gaps: &[asana_webhooks::secrets::Gap]) {
    use asana_webhooks::secrets::GapStatus;
    for gap in gaps {
        let from = gap
            .from
            .map_or_else(|| "the unknown start".to_string(), |f| f.to_rfc3339());
        let status = match &gap.status {
            GapStatus::Open => "not caught up yet".to_string(),
            GapStatus::Recovered { at } => format!("caught up at {}", at.to_rfc3339()),
            GapStatus::Unrecoverable { reason } => format!("cannot be recovered: {reason}"),
            _ => "unknown status".to_string(),
        };
        println!(
            "gap {} on resource {} ({}): from {from} to {}; {status}",
            gap.id,
            gap.resource,
            gap.cause.as_str(),
            gap.to.to_rfc3339()
        );
    }
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

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn an_event_on_one_line_is_kept_byte_for_byte() {
        let raw = r#"{"type":"task", "b":12345678901234567890123,"a":[1.50,"x"]}"#;
        assert_eq!(one_line(raw).unwrap().get(), raw);
    }

    #[test]
    fn an_event_on_several_lines_loses_only_the_space_between_tokens() {
        let raw = "{\n  \"z\": \"a \\\" b\\n c\",\r\n\t\"a\": [1.50, {\"k\" : null}]\n}";
        assert_eq!(
            one_line(raw).unwrap().get(),
            r#"{"z":"a \" b\n c","a":[1.50,{"k":null}]}"#
        );
    }
}
