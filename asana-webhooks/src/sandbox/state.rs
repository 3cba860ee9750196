//! The sandbox's objects and the rules Asana applies to them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::clock::Clock;
use super::seed;
use crate::hook_secret::HookSecret;
use crate::signature;

/// Asana sends a heartbeat at the handshake and every 8 hours.
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(8 * 3600);
/// A target failing this long loses its webhook.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(24 * 3600);

pub(crate) struct Settings {
    pub(crate) clock: Clock,
    pub(crate) rate_limit_every: Option<u32>,
    pub(crate) retry_after: Duration,
    pub(crate) offset_ttl: Duration,
    pub(crate) create_answer_delay: Duration,
}

/// An error answer in Asana's format.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) error: Option<&'static str>,
}

impl Failure {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            error: None,
        }
    }

    pub(crate) fn body(&self) -> Value {
        let mut entry = json!({
            "message": self.message,
            "help": "For more information on API status codes and how to handle them, read the docs on errors: https://developers.asana.com/docs/errors",
        });
        if let Some(code) = self.error {
            entry["error"] = json!(code);
        }
        if self.status == 500 {
            entry["phrase"] = json!("6 sandbox squid snuggle softly");
        }
        json!({ "errors": [entry] })
    }
}

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

#[derive(Debug, Clone)]
struct Resource {
    resource_type: &'static str,
    resource_subtype: Option<&'static str>,
    name: &'static str,
    parent: Option<&'static str>,
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
fn parse_filters(value: Option<&Value>) -> Result<Option<Vec<Filter>>, Failure> {
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
    pub(crate) pending: Vec<Value>,
    pub(crate) wake: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    webhooks: BTreeMap<String, Webhook>,
    next_gid: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The sandbox's state, shared by its routes and delivery workers.
pub(crate) struct Sandbox {
    pub(crate) settings: Settings,
    resources: HashMap<&'static str, Resource>,
    inner: Mutex<Inner>,
    offset_key: HookSecret,
    requests: AtomicU64,
    pub(crate) http: reqwest::Client,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("webhooks", &self.lock().webhooks.len())
            .finish_non_exhaustive()
    }
}

/// Filters that webhooks on workspaces, teams and portfolios may use.
const LARGE_SCOPE_WHITELIST: &[(&str, &[&str])] = &[
    (
        "project",
        &["added", "removed", "deleted", "undeleted", "changed"],
    ),
    ("team_membership", &["added", "removed"]),
    ("workspace_membership", &["added", "removed"]),
];

/// The opt_fields a webhook answer can include, besides the compact ones.
const OPTIONAL_FIELDS: &[&str] = &[
    "active",
    "created_at",
    "delivery_retry_count",
    "failure_deletion_timestamp",
    "filters",
    "filters.action",
    "filters.fields",
    "filters.resource_subtype",
    "last_failure_at",
    "last_failure_content",
    "last_success_at",
    "next_attempt_after",
    "resource",
    "resource.name",
    "target",
];

/// The extra opt_fields getWebhooks accepts (they select `next_page` keys).
const PAGE_FIELDS: &[&str] = &["offset", "path", "uri"];

pub(crate) fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect()
}

impl Sandbox {
    pub(crate) fn new(settings: Settings) -> Arc<Self> {
        let resources = HashMap::from([
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
        ]);
        Arc::new(Self {
            settings,
            resources,
            inner: Mutex::new(Inner {
                next_gid: 1_200_000_000_000_000,
                ..Default::default()
            }),
            offset_key: HookSecret::new(random_hex(32)),
            requests: AtomicU64::new(0),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain HTTP client"),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.settings.clock.now()
    }

    pub(crate) fn shutdown(&self) {
        for task in self.lock().tasks.drain(..) {
            task.abort();
        }
    }

    /// `Some(retry_after)` when this request is one the sandbox rate-limits.
    pub(crate) fn rate_limited(&self) -> Option<Duration> {
        let n = u64::from(self.settings.rate_limit_every?);
        let count = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        count.is_multiple_of(n).then_some(self.settings.retry_after)
    }

    /// Parses comma-joined (or repeated) opt_fields and refuses unknown ones.
    pub(crate) fn opt_fields(values: &[String], list: bool) -> Result<Vec<String>, Failure> {
        let mut fields = Vec::new();
        for field in values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            if !(OPTIONAL_FIELDS.contains(&field) || list && PAGE_FIELDS.contains(&field)) {
                return Err(Failure::new(
                    400,
                    format!("opt_fields: Unknown field: {field}"),
                ));
            }
            fields.push(field.to_string());
        }
        Ok(fields)
    }

    /// A webhook in the representation asked for: compact unless
    /// `fields` names more.
    pub(crate) fn render(&self, webhook: &Webhook, fields: &[String]) -> Value {
        let has = |f: &str| fields.iter().any(|x| x == f);
        let resource = &self.resources.get(webhook.resource.as_str());
        let mut resource_json = json!({
            "gid": webhook.resource,
            "resource_type": resource.map(|r| r.resource_type).unwrap_or("task"),
        });
        if has("resource.name") {
            resource_json["name"] = json!(resource.map(|r| r.name));
        }
        let mut out = json!({
            "gid": webhook.gid,
            "resource_type": "webhook",
            "active": webhook.failure_deletion_timestamp.is_none(),
            "resource": resource_json,
            "target": webhook.target,
        });
        let opt_time = |t: &Option<DateTime<Utc>>| {
            t.as_ref()
                .map(timestamp)
                .map(Value::from)
                .unwrap_or(Value::Null)
        };
        let optional: [(&str, Value); 7] = [
            ("created_at", json!(timestamp(&webhook.created_at))),
            ("last_success_at", opt_time(&webhook.last_success_at)),
            ("last_failure_at", opt_time(&webhook.last_failure_at)),
            ("last_failure_content", json!(webhook.last_failure_content)),
            ("delivery_retry_count", json!(webhook.delivery_retry_count)),
            ("next_attempt_after", opt_time(&webhook.next_attempt_after)),
            (
                "failure_deletion_timestamp",
                opt_time(&webhook.failure_deletion_timestamp),
            ),
        ];
        for (name, value) in optional {
            if has(name) {
                out[name] = value;
            }
        }
        let filter_keys: Vec<&str> = fields
            .iter()
            .filter_map(|f| f.strip_prefix("filters."))
            .collect();
        if has("filters") || !filter_keys.is_empty() {
            let filters: Vec<Value> = webhook
                .filters
                .iter()
                .map(|f| {
                    let mut full = serde_json::to_value(f).expect("filters serialise");
                    if !has("filters")
                        && let Value::Object(map) = &mut full
                    {
                        map.retain(|k, _| {
                            k == "resource_type" || filter_keys.contains(&k.as_str())
                        });
                    }
                    full
                })
                .collect();
            out["filters"] = json!(filters);
        }
        out
    }

    fn check_filters(&self, resource: &Resource, filters: &[Filter]) -> Result<(), Failure> {
        if filters
            .iter()
            .any(|f| !f.fields.is_empty() && f.action.as_deref() != Some("changed"))
        {
            return Err(Failure::new(
                400,
                "filters: `fields` is only valid with the `changed` action",
            ));
        }
        if !matches!(resource.resource_type, "workspace" | "team" | "portfolio") {
            return Ok(());
        }
        let allowed = |f: &Filter| {
            f.fields.is_empty()
                && LARGE_SCOPE_WHITELIST.iter().any(|(rt, actions)| {
                    f.resource_type.as_deref() == Some(*rt)
                        && f.action.as_deref().is_some_and(|a| actions.contains(&a))
                })
        };
        if filters.is_empty() || !filters.iter().all(allowed) {
            return Err(Failure {
                status: 400,
                message: format!(
                    "Webhooks on a {} need filters, each from the whitelist (project added/removed/deleted/undeleted/changed, team_membership or workspace_membership added/removed) and without fields",
                    resource.resource_type
                ),
                error: Some("invalid_filters_for_larger_scoped_webhooks"),
            });
        }
        Ok(())
    }

    /// Validates a create request; returns the new webhook's gid and secret.
    pub(crate) fn prepare_create(&self, data: &Value) -> Result<NewWebhook, Failure> {
        let Some(resource_gid) = data.get("resource").and_then(Value::as_str) else {
            return Err(Failure::new(400, "You should specify one of resource"));
        };
        let Some(target) = data.get("target").and_then(Value::as_str) else {
            return Err(Failure::new(400, "target: Missing input"));
        };
        let filters = parse_filters(data.get("filters"))?.unwrap_or_default();
        let Some(resource) = self.resources.get(resource_gid) else {
            return Err(Failure::new(
                404,
                format!("resource: Unknown object: {resource_gid}"),
            ));
        };
        match url::Url::parse(target) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            _ => {
                return Err(Failure::new(
                    400,
                    format!("target: Not a valid URL: {target}"),
                ));
            }
        }
        self.check_filters(resource, &filters)?;
        let mut inner = self.lock();
        if inner
            .webhooks
            .values()
            .any(|w| w.resource == resource_gid && w.target == target)
        {
            return Err(Failure {
                status: 403,
                message: "Duplicated webhook".into(),
                error: Some("duplicate_webhook"),
            });
        }
        inner.next_gid += 1;
        Ok(NewWebhook {
            gid: inner.next_gid.to_string(),
            secret: random_hex(32),
            filters,
            resource: resource_gid.to_string(),
            target: target.to_string(),
        })
    }

    /// Stores a webhook whose handshake succeeded and starts its deliveries.
    pub(crate) fn insert(&self, new: NewWebhook, fields: &[String]) -> Result<Value, Failure> {
        let now = self.now();
        let wake = Arc::new(Notify::new());
        let NewWebhook {
            gid,
            secret,
            filters,
            resource,
            target,
        } = new;
        let webhook = Webhook {
            gid: gid.clone(),
            resource,
            target,
            filters,
            secret: HookSecret::new(secret),
            created_at: now,
            last_success_at: None,
            last_failure_at: None,
            last_failure_content: None,
            delivery_retry_count: 0,
            next_attempt_after: None,
            failure_deletion_timestamp: None,
            // Due at once: Asana sends a heartbeat right after the handshake.
            last_heartbeat: now - chrono::Duration::from_std(HEARTBEAT_EVERY).expect("8 hours"),
            pending: Vec::new(),
            wake,
        };
        let mut inner = self.lock();
        if inner
            .webhooks
            .values()
            .any(|w| w.resource == webhook.resource && w.target == webhook.target)
        {
            return Err(Failure {
                status: 403,
                message: "Duplicated webhook".into(),
                error: Some("duplicate_webhook"),
            });
        }
        let rendered = self.render(&webhook, fields);
        inner.webhooks.insert(gid.clone(), webhook);
        Ok(rendered)
    }

    /// Keeps a webhook's delivery task, so that shutting down ends it.
    pub(crate) fn track(&self, task: tokio::task::JoinHandle<()>) {
        let mut inner = self.lock();
        inner.tasks.retain(|t| !t.is_finished());
        inner.tasks.push(task);
    }

    pub(crate) fn with_webhook<T>(
        &self,
        gid: &str,
        f: impl FnOnce(&mut Webhook) -> T,
    ) -> Option<T> {
        self.lock().webhooks.get_mut(gid).map(f)
    }

    pub(crate) fn get(&self, gid: &str, fields: &[String]) -> Result<Value, Failure> {
        let inner = self.lock();
        let webhook = inner
            .webhooks
            .get(gid)
            .ok_or_else(|| unknown_webhook(gid))?;
        Ok(self.render(webhook, fields))
    }

    pub(crate) fn update(
        &self,
        gid: &str,
        data: &Value,
        fields: &[String],
    ) -> Result<Value, Failure> {
        let filters = parse_filters(data.get("filters"))?;
        let mut inner = self.lock();
        let webhook = inner
            .webhooks
            .get_mut(gid)
            .ok_or_else(|| unknown_webhook(gid))?;
        if let Some(filters) = filters {
            let resource = self
                .resources
                .get(webhook.resource.as_str())
                .expect("webhooks are on seeded resources");
            self.check_filters(resource, &filters)?;
            webhook.filters = filters;
        }
        Ok(self.render(webhook, fields))
    }

    pub(crate) fn delete(&self, gid: &str) -> Result<(), Failure> {
        let removed = self
            .lock()
            .webhooks
            .remove(gid)
            .ok_or_else(|| unknown_webhook(gid))?;
        removed.wake.notify_one();
        Ok(())
    }

    /// One page of webhooks in `workspace`, optionally on one resource.
    pub(crate) fn list(
        &self,
        workspace: &str,
        resource: Option<&str>,
        limit: Option<u32>,
        offset: Option<&str>,
        fields: &[String],
    ) -> Result<(Vec<Value>, Option<Value>, bool), Failure> {
        if self
            .resources
            .get(workspace)
            .is_none_or(|r| r.resource_type != "workspace")
        {
            return Err(Failure::new(
                404,
                format!("workspace: Unknown object: {workspace}"),
            ));
        }
        if limit.is_some_and(|l| !(1..=100).contains(&l)) {
            return Err(Failure::new(400, "limit: Must be between 1 and 100"));
        }
        let start = match offset {
            Some(token) => self.decode_offset(token)?,
            None => 0,
        };
        let inner = self.lock();
        let matching: Vec<&Webhook> = inner
            .webhooks
            .values()
            .filter(|w| resource.is_none_or(|r| w.resource == r))
            .collect();
        let end = limit.map_or(matching.len(), |l| (start + l as usize).min(matching.len()));
        let items = matching
            .get(start..end)
            .unwrap_or(&[])
            .iter()
            .map(|w| self.render(w, fields))
            .collect();
        let next = (limit.is_some() && end < matching.len()).then(|| {
            let token = self.encode_offset(end);
            let mut path = format!("/webhooks?workspace={workspace}&limit={}&offset={token}", limit.unwrap_or(100));
            if let Some(resource) = resource {
                path.push_str(&format!("&resource={resource}"));
            }
            if !fields.is_empty() {
                path.push_str(&format!("&opt_fields={}", fields.join(",")));
            }
            json!({"offset": token, "path": path, "uri": format!("https://app.asana.com/api/1.0{path}")})
        });
        Ok((items, next, limit.is_some()))
    }

    fn encode_offset(&self, position: usize) -> String {
        let payload = format!("{position}:{}", self.now().timestamp_millis());
        let mac = signature::sign(&self.offset_key, payload.as_bytes());
        format!("{}{}", hex::encode(payload), &mac[..24])
    }

    fn decode_offset(&self, token: &str) -> Result<usize, Failure> {
        let invalid = || {
            Failure::new(
                400,
                "offset: Your pagination token is invalid. Only use offsets returned by the API.",
            )
        };
        // Tokens this sandbox hands out are ASCII hex; anything else (a
        // forged token with multi-byte characters would make the split
        // below fall inside a character) is simply invalid.
        if token.len() <= 24 || !token.is_ascii() {
            return Err(invalid());
        }
        let (payload_hex, mac) = token.split_at(token.len() - 24);
        let payload = hex::decode(payload_hex)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(invalid)?;
        if signature::sign(&self.offset_key, payload.as_bytes())[..24] != *mac {
            return Err(invalid());
        }
        let (position, issued) = payload.split_once(':').ok_or_else(invalid)?;
        let issued = DateTime::from_timestamp_millis(issued.parse().map_err(|_| invalid())?)
            .ok_or_else(invalid)?;
        let ttl =
            chrono::Duration::from_std(self.settings.offset_ttl).unwrap_or(chrono::Duration::MAX);
        if self.now() - issued > ttl {
            return Err(Failure::new(
                400,
                "offset: Your pagination token has expired.",
            ));
        }
        position.parse().map_err(|_| invalid())
    }

    /// Queues `event` for every webhook whose resource is the event's
    /// resource or one of its ancestors and whose filters pass it.
    pub(crate) fn emit(&self, event: EmittedEvent) -> Result<Vec<String>, String> {
        let resource = self
            .resources
            .get(event.resource.as_str())
            .ok_or_else(|| format!("unknown resource {}", event.resource))?;
        let parent = match &event.parent {
            Some(gid) => Some((
                gid,
                self.resources
                    .get(gid.as_str())
                    .ok_or_else(|| format!("unknown parent {gid}"))?,
            )),
            None => None,
        };
        let mut body = json!({
            "user": {"gid": seed::USER, "resource_type": "user"},
            "created_at": timestamp(&self.now()),
            "action": event.action,
            "resource": {"gid": event.resource, "resource_type": resource.resource_type},
            "parent": parent.map(|(gid, p)| json!({"gid": gid, "resource_type": p.resource_type})),
        });
        if let Some(subtype) = resource.resource_subtype {
            body["resource"]["resource_subtype"] = json!(subtype);
        }
        if let Some(field) = &event.field {
            // Webhook events carry `new_value` only when it is a resource,
            // as a compact {gid, resource_type}; of the sandbox's objects
            // that is the user, for the assignee field.
            body["change"] = json!({"field": field, "action": "changed"});
            if field == "assignee" {
                body["change"]["new_value"] = json!({"gid": seed::USER, "resource_type": "user"});
            }
        }
        let mut scope = vec![event.resource.as_str()];
        let mut next = resource.parent;
        while let Some(gid) = next {
            scope.push(gid);
            next = self.resources.get(gid).and_then(|r| r.parent);
        }
        let passes = |f: &Filter| {
            f.resource_type
                .as_deref()
                .is_none_or(|t| t == resource.resource_type)
                && f.resource_subtype
                    .as_deref()
                    .is_none_or(|s| Some(s) == resource.resource_subtype)
                && f.action.as_deref().is_none_or(|a| a == event.action)
                && (f.fields.is_empty()
                    || event.field.as_ref().is_some_and(|x| f.fields.contains(x)))
        };
        let mut inner = self.lock();
        let mut queued = Vec::new();
        for webhook in inner.webhooks.values_mut() {
            if scope.contains(&webhook.resource.as_str())
                && (webhook.filters.is_empty() || webhook.filters.iter().any(passes))
            {
                webhook.pending.push(body.clone());
                webhook.wake.notify_one();
                queued.push(webhook.gid.clone());
            }
        }
        Ok(queued)
    }
}

fn unknown_webhook(gid: &str) -> Failure {
    Failure::new(404, format!("webhook: Unknown object: {gid}"))
}
