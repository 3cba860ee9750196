//! One task per webhook delivers its queued events (and heartbeats) to the
//! target, retrying with backoff and keeping Asana's bookkeeping. Events
//! whose delivery is lost ([`super::SandboxBuilder::drop_deliveries`])
//! leave the queue unsent, as if delivered: Asana's deliveries are at most
//! once. Heartbeats are never lost.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::model::{FAILURE_WINDOW, HEARTBEAT_EVERY, Webhook};
use super::state::Sandbox;
use crate::hook_secret::HookSecret;
use crate::signature;

const FIRST_BACKOFF: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

enum Plan {
    Wait(Duration, Arc<tokio::sync::Notify>),
    Send {
        events: Vec<Value>,
        target: String,
        secret: HookSecret,
    },
}

fn plan(sandbox: &Sandbox, webhook: &mut Webhook) -> Plan {
    let queued = webhook.pending.len();
    webhook.pending.retain(|q| !q.lost);
    sandbox.count_dropped(queued - webhook.pending.len());
    let now = sandbox.now();
    let clock = &sandbox.settings.clock;
    if let Some(at) = webhook.next_attempt_after.filter(|at| *at > now) {
        return Plan::Wait(clock.until(at), Arc::clone(&webhook.wake));
    }
    let heartbeat_at =
        webhook.last_heartbeat + chrono::Duration::from_std(HEARTBEAT_EVERY).expect("8 hours");
    if !webhook.pending.is_empty() || heartbeat_at <= now {
        return Plan::Send {
            events: webhook.pending.iter().map(|q| q.event.clone()).collect(),
            target: webhook.target.clone(),
            secret: webhook.secret.clone(),
        };
    }
    Plan::Wait(clock.until(heartbeat_at), Arc::clone(&webhook.wake))
}

/// Delivers for webhook `gid` until it is deleted.
pub(crate) async fn run(sandbox: Arc<Sandbox>, gid: String) {
    loop {
        let Some(plan) = sandbox.with_webhook(&gid, |w| plan(&sandbox, w)) else {
            return;
        };
        match plan {
            Plan::Wait(wait, wake) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake.notified() => {}
                }
            }
            Plan::Send {
                events,
                target,
                secret,
            } => {
                let sent = events.len();
                let outcome = post(&sandbox, &target, &secret, events).await;
                let deleted = sandbox
                    .with_webhook(&gid, |w| record(&sandbox, w, sent, outcome))
                    .unwrap_or(true);
                if deleted {
                    let _ = sandbox.delete(&gid);
                    return;
                }
            }
        }
    }
}

async fn post(
    sandbox: &Sandbox,
    target: &str,
    secret: &HookSecret,
    events: Vec<Value>,
) -> Result<(), String> {
    let body = serde_json::to_vec(&json!({ "events": events })).expect("events serialise");
    let response = sandbox
        .http
        .post(target)
        .header("content-type", "application/json")
        .header("x-hook-signature", signature::sign(secret, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("Could not connect: {e}"))?;
    let status = response.status();
    if matches!(status.as_u16(), 200 | 204) {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(format!(
        "{status}\n\n{}",
        text.chars().take(500).collect::<String>()
    ))
}

/// Applies a delivery's outcome; returns whether the webhook must go.
fn record(
    sandbox: &Sandbox,
    webhook: &mut Webhook,
    sent: usize,
    outcome: Result<(), String>,
) -> bool {
    let now = sandbox.now();
    match outcome {
        Ok(()) => {
            webhook.pending.drain(..sent.min(webhook.pending.len()));
            webhook.last_success_at = Some(now);
            webhook.last_heartbeat = now;
            webhook.delivery_retry_count = 0;
            webhook.next_attempt_after = None;
            webhook.failure_deletion_timestamp = None;
            false
        }
        Err(content) => {
            webhook.last_failure_at = Some(now);
            webhook.last_failure_content = Some(content);
            webhook.delivery_retry_count += 1;
            let exponent = (webhook.delivery_retry_count - 1).min(16);
            let backoff = FIRST_BACKOFF.saturating_mul(1 << exponent).min(MAX_BACKOFF);
            webhook.next_attempt_after =
                Some(now + chrono::Duration::from_std(backoff).expect("an hour at most"));
            let deadline = *webhook
                .failure_deletion_timestamp
                .get_or_insert(now + chrono::Duration::from_std(FAILURE_WINDOW).expect("24 hours"));
            deadline <= now
        }
    }
}
