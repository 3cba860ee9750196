//! The sandbox's objects: the seeded resources, webhooks and their
//! filters, the events it emits, and the timing constants Asana uses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;

use super::failure::Failure;
use super::seed;
use crate::hook_secret::HookSecret;

/// Asana sends a heartbeat at the handshake and every 8 hours.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(8 * 3600);
/// A target failing this long loses its webhook.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// An event to emit, as `POST /sandbox/events` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EmittedEvent {
    /// The gid of a seeded resource that changed.
    pub resource: String,
    /// `changed`, `added`, `removed`, `deleted` or `undeleted`.
    pub action: String,
    /// For `added`/`removed`: the gid of the seeded parent.
    #[serde(default)]
    pub parent: Option<String>,
    /// For `changed`: the field that changed.
    #[serde(default)]
    pub field: Option<String>,
}

/// A seeded object webhooks can watch.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub(crate) resource_type: &'static str,
    pub(crate) resource_subtype: Option<&'static str>,
    pub(crate) name: &'static str,
    /// The resource it lives in: events on it reach webhooks on its
    /// ancestors too.
    pub(crate) parent: Option<&'static str>,
}

impl Resource {
    /// Whether the Events API can follow it: tasks, projects and goals
    /// (not workspaces, teams, portfolios or users).
    pub(crate) fn followable(&self) -> bool {
        matches!(self.resource_type, "task" | "project" | "goal")
    }
}

/// The seeded resources by gid.
pub(crate) type Resources = HashMap<&'static str, Resource>;

/// The objects every sandbox starts with (see [`super::seed`]).
pub(crate) fn seeded_resources() -> Resources {
    HashMap::from([
        (
            seed::WORKSPACE,
            Resource {
                resource_type: "workspace",
                resource_subtype: None,
                name: "Sandbox Workspace",
                parent: None,
            },
        ),
        (
            seed::TEAM,
            Resource {
                resource_type: "team",
                resource_subtype: None,
                name: "Sandbox Team",
                parent: Some(seed::WORKSPACE),
            },
        ),
        (
            seed::PROJECT,
            Resource {
                resource_type: "project",
                resource_subtype: None,
                name: "Sandbox Project",
                parent: Some(seed::TEAM),
            },
        ),
        (
            seed::TASK,
            Resource {
                resource_type: "task",
                resource_subtype: Some("default_task"),
                name: "Sandbox Task",
                parent: Some(seed::PROJECT),
            },
        ),
        (
            seed::USER,
            Resource {
                resource_type: "user",
                resource_subtype: None,
                name: "Sandbox User",
                parent: None,
            },
        ),
    ])
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
pub(crate) struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resource_subtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) action: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) fields: Vec<String>,
}

/// The `filters` of a create or update: `None` when absent or `null`
/// (the derived spec declares update's `filters` nullable; Asana documents
/// no meaning for `null`, so it changes nothing here, like leaving the
/// field out). Every filter must be a JSON object: serde would otherwise
/// read `["task", null, "changed"]` as a filter.
pub(crate) fn parse_filters(value: Option<&Value>) -> Result<Option<Vec<Filter>>, Failure> {
    let invalid = |why: String| Failure::new(400, format!("filters: Invalid filters: {why}"));
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Object(_) => {
                    serde_json::from_value(item.clone()).map_err(|e| invalid(e.to_string()))
                }
                other => Err(invalid(format!(
                    "each filter must be an object, not {other}"
                ))),
            })
            .collect::<Result<Vec<Filter>, _>>()
            .map(Some),
        Some(other) => Err(invalid(format!(
            "expected an array of filters, not {other}"
        ))),
    }
}

/// A validated create request, waiting for its handshake.
pub(crate) struct NewWebhook {
    pub(crate) gid: String,
    pub(crate) secret: String,
    pub(crate) filters: Vec<Filter>,
    pub(crate) resource: String,
    pub(crate) target: String,
}

pub(crate) struct Webhook {
    pub(crate) gid: String,
    pub(crate) resource: String,
    pub(crate) target: String,
    pub(crate) filters: Vec<Filter>,
    pub(crate) secret: HookSecret,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) last_success_at: Option<DateTime<Utc>>,
    pub(crate) last_failure_at: Option<DateTime<Utc>>,
    pub(crate) last_failure_content: Option<String>,
    pub(crate) delivery_retry_count: u32,
    pub(crate) next_attempt_after: Option<DateTime<Utc>>,
    pub(crate) failure_deletion_timestamp: Option<DateTime<Utc>>,
    pub(crate) last_heartbeat: DateTime<Utc>,
    pub(crate) pending: Vec<Queued>,
    pub(crate) wake: Arc<Notify>,
}

/// An event in a webhook's queue.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    /// The event as deliveries carry it.
    pub(crate) event: Value,
    /// Its delivery is lost ([`super::SandboxBuilder::drop_deliveries`]):
    /// the sender takes it off the queue as if it had been delivered,
    /// without sending it.
    pub(crate) lost: bool,
}

/// A time as Asana writes it: RFC 3339 in UTC with milliseconds.
pub(crate) fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn filters_absent_or_null_change_nothing() {
        assert_eq!(parse_filters(None), Ok(None));
        assert_eq!(parse_filters(Some(&Value::Null)), Ok(None));
    }

    #[test]
    fn filters_parse_into_their_fields() {
        let value = json!([{"resource_type": "task", "action": "changed", "fields": ["name"]}]);
        assert_eq!(
            parse_filters(Some(&value)),
            Ok(Some(vec![Filter {
                resource_type: Some("task".into()),
                resource_subtype: None,
                action: Some("changed".into()),
                fields: vec!["name".into()],
            }]))
        );
    }

    #[test]
    fn a_filter_that_is_not_an_object_is_refused() {
        let value = json!(["task", null, "changed"]);
        let refused = parse_filters(Some(&value)).unwrap_err();
        assert_eq!(refused.status, 400);
        assert_eq!(
            refused.message,
            "filters: Invalid filters: each filter must be an object, not \"task\""
        );
        let refused = parse_filters(Some(&json!({"action": "added"}))).unwrap_err();
        assert_eq!(
            refused.message,
            "filters: Invalid filters: expected an array of filters, not {\"action\":\"added\"}"
        );
    }

    #[test]
    fn timestamps_have_milliseconds_and_a_z() {
        let t = DateTime::from_timestamp_millis(1_700_000_000_123).unwrap();
        assert_eq!(timestamp(&t), "2023-11-14T22:13:20.123Z");
    }
}
