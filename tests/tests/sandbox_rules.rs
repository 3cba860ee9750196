//! The embedded sandbox behaves as Asana does, over HTTP on 127.0.0.1, and
//! every answer it gives has a shape the spec accepts (checked by code).

use std::time::Duration;

use asana_webhooks::sandbox::{EmittedEvent, Sandbox, seed};
use asana_webhooks::types::{WebhookFilter, WebhookOptField};
use asana_webhooks::{Client, RetryPolicy};
use asana_webhooks_tests::spec::{check, derived, response_schema};
use asana_webhooks_tests::{Target, TargetMode, hmac_hex};
use serde_json::{Value, json};

const EVERY_FIELD: &str = "active,created_at,delivery_retry_count,failure_deletion_timestamp,filters,last_failure_at,last_failure_content,last_success_at,next_attempt_after,resource,resource.name,target";

struct Env {
    sandbox: Sandbox,
    http: reqwest::Client,
    target: Target,
}

impl Env {
    async fn start(sandbox: Sandbox) -> Self {
        Self {
            sandbox,
            http: reqwest::Client::new(),
            target: Target::start().await,
        }
    }

    fn client(&self) -> Client {
        Client::builder()
            .token("sandbox")
            .base_url(self.sandbox.base_url())
            .build()
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    /// Sends a raw request; returns the status and the JSON body.
    async fn raw(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth("sandbox");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn create(&self, resource: &str, path: &str, filters: Value) -> (u16, Value) {
        let target = format!("{}{path}", self.target.base);
        let body = json!({"data": {"resource": resource, "target": target, "filters": filters}});
        self.raw(reqwest::Method::POST, "/webhooks", Some(body))
            .await
    }

    fn emit(
        &self,
        resource: &str,
        action: &str,
        parent: Option<&str>,
        field: Option<&str>,
    ) -> Vec<String> {
        let event = EmittedEvent {
            resource: resource.into(),
            action: action.into(),
            parent: parent.map(Into::into),
            field: field.map(Into::into),
        };
        self.sandbox.emit(event).unwrap()
    }
}

async fn sandbox() -> Sandbox {
    Sandbox::builder().start("127.0.0.1:0").await.unwrap()
}

/// Asserts that `body` fits the spec's schema for this answer.
fn assert_shape(path: &str, method: &str, status: u16, body: &Value) {
    let spec = derived();
    let schema = if status >= 400 {
        &spec["components"]["schemas"]["ErrorResponse"]
    } else {
        response_schema(spec, path, method, status)
    };
    let problems = check(spec, schema, body);
    assert!(
        problems.is_empty(),
        "{method} {path} {status}: {problems:#?}\n{body:#}"
    );
}

#[tokio::test]
async fn requests_need_a_bearer_token() {
    let env = Env::start(sandbox().await).await;
    let response = env
        .http
        .get(env.url("/webhooks?workspace=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["message"], "Not Authorized");
    assert_shape("/webhooks", "get", 401, &body);
}

#[tokio::test]
async fn bodies_must_be_wrapped_in_data_exactly_once() {
    let env = Env::start(sandbox().await).await;
    let target = format!("{}/x", env.target.base);
    for body in [
        json!({"resource": seed::TASK, "target": target}),
        json!({"data": {"data": {"resource": seed::TASK, "target": target}}}),
    ] {
        let (status, answer) = env
            .raw(reqwest::Method::POST, "/webhooks", Some(body))
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            answer["errors"][0]["message"],
            "You should specify one of resource"
        );
        assert_shape("/webhooks", "post", 400, &answer);
    }
}

#[tokio::test]
async fn compact_by_default_opt_fields_and_opt_pretty() {
    let env = Env::start(sandbox().await).await;
    let (status, created) = env.create(seed::TASK, "/compact", json!([])).await;
    assert_eq!(status, 201, "{created}");
    assert_shape("/webhooks", "post", 201, &created);
    let gid = created["data"]["gid"].as_str().unwrap().to_string();
    let keys: Vec<&String> = created["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["active", "gid", "resource", "resource_type", "target"]
    );
    assert_eq!(
        created["data"]["resource"],
        json!({"gid": seed::TASK, "resource_type": "task"})
    );

    let (status, full) = env
        .raw(
            reqwest::Method::GET,
            &format!("/webhooks/{gid}?opt_fields={EVERY_FIELD}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_shape("/webhooks/{webhook_gid}", "get", 200, &full);
    for field in [
        "created_at",
        "last_success_at",
        "delivery_retry_count",
        "filters",
        "failure_deletion_timestamp",
    ] {
        assert!(full["data"].get(field).is_some(), "{field} missing: {full}");
    }
    assert_eq!(full["data"]["resource"]["name"], "Sandbox Task");

    let (status, bad) = env
        .raw(
            reqwest::Method::GET,
            &format!("/webhooks/{gid}?opt_fields=colour"),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_shape("/webhooks/{webhook_gid}", "get", 400, &bad);

    let pretty = env
        .http
        .get(env.url(&format!("/webhooks/{gid}?opt_pretty=true")))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    let text = pretty.text().await.unwrap();
    assert!(text.contains("\n  \"data\""), "{text}");
}

#[tokio::test]
async fn seeded_resources_take_webhooks_and_unknown_ones_are_404() {
    let env = Env::start(sandbox().await).await;
    for (i, resource) in [seed::PROJECT, seed::TASK].into_iter().enumerate() {
        let (status, body) = env
            .create(resource, &format!("/seeded/{i}"), json!([]))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = env.create("999", "/unknown", json!([])).await;
    assert_eq!(status, 404);
    assert_shape("/webhooks", "post", 404, &body);
}

#[tokio::test]
async fn pagination_uses_opaque_offsets_that_expire() {
    let sandbox = Sandbox::builder()
        .time_scale(600.0)
        .offset_ttl(Duration::from_secs(60))
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let env = Env::start(sandbox).await;
    for i in 0..5 {
        assert_eq!(
            env.create(seed::TASK, &format!("/page/{i}"), json!([]))
                .await
                .0,
            201
        );
    }
    let mut offsets = Vec::new();
    let mut path = format!("/webhooks?workspace={}&limit=2", seed::WORKSPACE);
    let mut seen = 0;
    loop {
        let (status, page) = env.raw(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        assert_shape("/webhooks", "get", 200, &page);
        seen += page["data"].as_array().unwrap().len();
        match page["next_page"]["offset"].as_str() {
            Some(offset) => {
                assert!(
                    !offset.chars().all(|c| c.is_ascii_digit()),
                    "offsets are opaque: {offset}"
                );
                offsets.push(offset.to_string());
                path = format!(
                    "/webhooks?workspace={}&limit=2&offset={offset}",
                    seed::WORKSPACE
                );
            }
            None => {
                assert!(
                    page["next_page"].is_null(),
                    "the last page has next_page: null"
                );
                break;
            }
        }
    }
    assert_eq!((seen, offsets.len()), (5, 2));

    let all = env
        .client()
        .get_webhooks(seed::WORKSPACE)
        .limit(2)
        .collect_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 5);

    // Another position with the original signature, and a tampered signature.
    let mut moved = offsets[0].clone();
    moved.replace_range(0..2, "39");
    let mut tampered = offsets[0].clone();
    let last = if tampered.ends_with('0') { "1" } else { "0" };
    tampered.replace_range(tampered.len() - 1.., last);
    for offset in [moved.as_str(), tampered.as_str(), "not-an-offset"] {
        let (status, body) = env
            .raw(
                reqwest::Method::GET,
                &format!(
                    "/webhooks?workspace={}&limit=2&offset={offset}",
                    seed::WORKSPACE
                ),
                None,
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_shape("/webhooks", "get", 400, &body);
    }
    for limit in [0, 101] {
        let (status, _) = env
            .raw(
                reqwest::Method::GET,
                &format!("/webhooks?workspace={}&limit={limit}", seed::WORKSPACE),
                None,
            )
            .await;
        assert_eq!(status, 400);
    }
    // 60 sandbox seconds pass in 0.1 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = env
        .raw(
            reqwest::Method::GET,
            &format!(
                "/webhooks?workspace={}&limit=2&offset={}",
                seed::WORKSPACE,
                offsets[0]
            ),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn a_duplicate_resource_and_target_is_403() {
    let env = Env::start(sandbox().await).await;
    assert_eq!(env.create(seed::TASK, "/dup", json!([])).await.0, 201);
    let (status, body) = env.create(seed::TASK, "/dup", json!([])).await;
    assert_eq!(status, 403);
    assert_eq!(body["errors"][0]["message"], "Duplicated webhook");
    assert_eq!(
        env.target.handshakes().len(),
        1,
        "no handshake for the duplicate"
    );
}

#[tokio::test]
async fn larger_scoped_webhooks_need_whitelisted_filters() {
    let env = Env::start(sandbox().await).await;
    let refused = [
        json!([]),
        json!([{"resource_type": "task", "action": "changed"}]),
        json!([{"resource_type": "project", "action": "changed", "fields": ["name"]}]),
    ];
    for resource in [seed::WORKSPACE, seed::TEAM] {
        for (i, filters) in refused.iter().enumerate() {
            let (status, body) = env
                .create(
                    resource,
                    &format!("/scoped/{resource}/{i}"),
                    filters.clone(),
                )
                .await;
            assert_eq!(status, 400, "{filters}: {body}");
            assert_eq!(
                body["errors"][0]["error"],
                "invalid_filters_for_larger_scoped_webhooks"
            );
        }
        let (status, body) = env
            .create(
                resource,
                &format!("/scoped/{resource}/ok"),
                json!([{"resource_type": "project", "action": "added"}]),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test]
async fn the_handshake_secret_is_the_one_in_the_201_and_an_unechoed_handshake_fails_the_create() {
    let env = Env::start(sandbox().await).await;
    let (status, body) = env.create(seed::TASK, "/hs", json!([])).await;
    assert_eq!(status, 201);
    let (path, secret) = env.target.handshakes().pop().unwrap();
    assert_eq!(path, "/hs");
    assert_eq!(body["X-Hook-Secret"], secret.as_str());
    assert_eq!(secret.len(), 64);

    env.target.set_mode(TargetMode::NoEcho);
    let (status, body) = env.create(seed::PROJECT, "/no-echo", json!([])).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("handshake"),
        "{body}"
    );
    let listed = env
        .client()
        .get_webhooks(seed::WORKSPACE)
        .collect_all()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "the failed create left no webhook");
}

#[tokio::test]
async fn deliveries_are_signed_filtered_and_reach_parent_scopes() {
    let env = Env::start(sandbox().await).await;
    let (_, on_project) = env.create(seed::PROJECT, "/project", json!([])).await;
    let secret = on_project["X-Hook-Secret"].as_str().unwrap().to_string();
    let (_, _) = env
        .create(
            seed::TASK,
            "/task-due",
            json!([{"resource_type": "task", "action": "changed", "fields": ["due_on"]}]),
        )
        .await;

    // First a heartbeat, at the handshake.
    let first = env
        .target
        .wait_for("heartbeats", |d| {
            d.iter().filter(|r| r.body == br#"{"events":[]}"#).count() >= 2
        })
        .await;
    let heartbeat = first.iter().find(|r| r.path == "/project").unwrap();
    assert_eq!(
        heartbeat.signature.as_deref(),
        Some(hmac_hex(&secret, &heartbeat.body).as_str())
    );

    let queued = env.emit(seed::TASK, "changed", None, Some("name"));
    assert_eq!(
        queued.len(),
        1,
        "only the unfiltered project webhook takes a name change"
    );
    env.emit(seed::TASK, "changed", None, Some("due_on"));
    let all = env
        .target
        .wait_for("events", |d| {
            d.iter().filter(|r| r.body != br#"{"events":[]}"#).count() >= 2
        })
        .await;
    let events: Vec<&asana_webhooks_tests::Received> = all
        .iter()
        .filter(|r| r.body != br#"{"events":[]}"#)
        .collect();
    let to_task = events.iter().find(|r| r.path == "/task-due").unwrap();
    let delivery: asana_webhooks::Delivery = serde_json::from_slice(&to_task.body).unwrap();
    assert_eq!(delivery.events.len(), 1);
    assert_eq!(delivery.events[0].change.as_ref().unwrap().field, "due_on");
    for received in events.iter().filter(|r| r.path == "/project") {
        assert_eq!(
            received.signature.as_deref(),
            Some(hmac_hex(&secret, &received.body).as_str())
        );
        let delivery: asana_webhooks::Delivery = serde_json::from_slice(&received.body).unwrap();
        assert!(delivery.events.iter().all(|e| e.resource.gid == seed::TASK));
    }
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_bookkeeping_then_the_webhook_is_deleted() {
    // 24 sandbox hours pass in 2.4 s.
    let env = Env::start(
        Sandbox::builder()
            .time_scale(36000.0)
            .start("127.0.0.1:0")
            .await
            .unwrap(),
    )
    .await;
    env.target.set_mode(TargetMode::Failing);
    let client = env.client();
    let created = client
        .create_webhook(seed::TASK, format!("{}/down", env.target.base))
        .send()
        .await
        .unwrap();
    let gid = created.webhook.gid.unwrap();
    env.target
        .wait_for("a failed delivery", |d| !d.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let fields = [
        WebhookOptField::LastFailureAt,
        WebhookOptField::LastFailureContent,
        WebhookOptField::DeliveryRetryCount,
        WebhookOptField::NextAttemptAfter,
        WebhookOptField::FailureDeletionTimestamp,
        WebhookOptField::CreatedAt,
    ];
    let webhook = client
        .get_webhook(&gid)
        .opt_fields(fields)
        .send()
        .await
        .unwrap();
    let failed_at = webhook.last_failure_at.expect("a failure was recorded");
    assert!(
        webhook
            .last_failure_content
            .as_deref()
            .unwrap()
            .starts_with("500"),
        "{webhook:?}"
    );
    assert!(webhook.delivery_retry_count.unwrap() >= 1);
    assert!(webhook.next_attempt_after.unwrap() > failed_at);
    let deletion = webhook.failure_deletion_timestamp.unwrap();
    let window = deletion - webhook.created_at.unwrap();
    assert!(
        window > chrono::Duration::hours(23) && window <= chrono::Duration::hours(25),
        "{window}"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match client.get_webhook(&gid).send().await {
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => break,
            _ => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the webhook outlived its failure window"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let attempts = env.target.deliveries().len();
    assert!(attempts > 3, "retried {attempts} times before deletion");
}

#[tokio::test]
async fn a_target_that_recovers_resets_the_retry_count() {
    let env = Env::start(
        Sandbox::builder()
            .time_scale(3600.0)
            .start("127.0.0.1:0")
            .await
            .unwrap(),
    )
    .await;
    env.target.set_mode(TargetMode::Failing);
    let client = env.client();
    let gid = client
        .create_webhook(seed::TASK, format!("{}/flaky", env.target.base))
        .send()
        .await
        .unwrap()
        .webhook
        .gid
        .unwrap();
    env.target
        .wait_for("two failed attempts", |d| d.len() >= 2)
        .await;
    env.target.set_mode(TargetMode::Healthy);
    let fields = [
        WebhookOptField::DeliveryRetryCount,
        WebhookOptField::LastSuccessAt,
        WebhookOptField::LastFailureAt,
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let webhook = client
            .get_webhook(&gid)
            .opt_fields(fields)
            .send()
            .await
            .unwrap();
        if webhook.last_success_at.is_some() {
            assert_eq!(webhook.delivery_retry_count, Some(0));
            assert!(webhook.last_success_at > webhook.last_failure_at);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recovered: {webhook:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn injected_rate_limits_carry_retry_after_and_the_client_rides_them_out() {
    let sandbox = Sandbox::builder()
        .rate_limit_every(Some(2), Duration::from_secs(1))
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let env = Env::start(sandbox).await;
    let (first, _) = env
        .raw(
            reqwest::Method::GET,
            &format!("/webhooks?workspace={}", seed::WORKSPACE),
            None,
        )
        .await;
    let second = env
        .http
        .get(env.url(&format!("/webhooks?workspace={}", seed::WORKSPACE)))
        .bearer_auth("t")
        .send()
        .await
        .unwrap();
    assert_eq!(first, 200);
    assert_eq!(second.status().as_u16(), 429);
    assert_eq!(second.headers()["retry-after"], "1");
    let body: Value = second.json().await.unwrap();
    assert_shape("/webhooks", "get", 429, &body);

    let client = env.client();
    for _ in 0..3 {
        client.get_webhooks(seed::WORKSPACE).send().await.unwrap();
    }
    let plain = Client::builder()
        .token("t")
        .base_url(env.sandbox.base_url())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let outcomes = [
        plain.get_webhooks(seed::WORKSPACE).send().await.is_ok(),
        plain.get_webhooks(seed::WORKSPACE).send().await.is_ok(),
    ];
    assert!(
        outcomes.contains(&false),
        "without retries one of two calls meets the 429"
    );
}

#[tokio::test]
async fn every_answer_of_every_operation_fits_the_spec() {
    let env = Env::start(sandbox().await).await;
    let client = env.client();
    let (status, created) = env
        .create(
            seed::TASK,
            "/shape",
            json!([{"resource_type": "task", "action": "changed", "fields": ["due_on"]}]),
        )
        .await;
    assert_eq!(status, 201);
    assert_shape("/webhooks", "post", 201, &created);
    let gid = created["data"]["gid"].as_str().unwrap().to_string();
    env.target
        .wait_for("the heartbeat", |d| !d.is_empty())
        .await;

    for query in ["", &format!("?opt_fields={EVERY_FIELD}")] {
        let (status, body) = env
            .raw(
                reqwest::Method::GET,
                &format!("/webhooks/{gid}{query}"),
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert_shape("/webhooks/{webhook_gid}", "get", 200, &body);
        let list_query = if query.is_empty() {
            String::new()
        } else {
            format!("&opt_fields={EVERY_FIELD},offset,path,uri")
        };
        let (status, body) = env
            .raw(
                reqwest::Method::GET,
                &format!(
                    "/webhooks?workspace={}&limit=1{list_query}",
                    seed::WORKSPACE
                ),
                None,
            )
            .await;
        assert_eq!(status, 200);
        assert_shape("/webhooks", "get", 200, &body);
        let (status, body) = env
            .raw(
                reqwest::Method::PUT,
                &format!("/webhooks/{gid}{query}"),
                Some(json!({"data": {"filters": [{"resource_type": "task", "action": "added"}]}})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_shape("/webhooks/{webhook_gid}", "put", 200, &body);
    }
    let (status, missing) = env.raw(reqwest::Method::GET, "/webhooks/1", None).await;
    assert_eq!(status, 404);
    assert_shape("/webhooks/{webhook_gid}", "get", 404, &missing);
    let (status, deleted) = env
        .raw(reqwest::Method::DELETE, &format!("/webhooks/{gid}"), None)
        .await;
    assert_eq!(status, 200);
    assert_shape("/webhooks/{webhook_gid}", "delete", 200, &deleted);
    client
        .update_webhook(&gid)
        .filters([WebhookFilter::new("task", "added")])
        .send()
        .await
        .unwrap_err();
}

#[test]
fn the_shape_check_can_fail() {
    let spec = derived();
    let schema = response_schema(spec, "/webhooks/{webhook_gid}", "get", 200);
    let good = json!({"data": {"gid": "1", "resource_type": "webhook", "active": true, "last_success_at": null}});
    assert!(check(spec, schema, &good).is_empty());
    let wrong_type = json!({"data": {"gid": 1}});
    assert_eq!(check(spec, schema, &wrong_type).len(), 1);
    let invented = json!({"data": {"gid": "1", "colour": "red"}});
    assert!(check(spec, schema, &invented)[0].contains("colour"));
    let bad_time = json!({"data": {"created_at": "yesterday"}});
    assert!(check(spec, schema, &bad_time)[0].contains("RFC 3339"));
    let null_gid = json!({"data": {"gid": null}});
    assert!(check(spec, schema, &null_gid)[0].contains("not nullable"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_404_in_asanas_format() {
    let env = Env::start(sandbox().await).await;
    for (method, path) in [
        (reqwest::Method::GET, "/tasks"),
        (reqwest::Method::PATCH, "/webhooks"),
        (reqwest::Method::DELETE, "/webhooks"),
        (reqwest::Method::POST, "/webhooks/1"),
    ] {
        let (status, body) = env
            .raw(method.clone(), path, Some(json!({"data": {}})))
            .await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("No matching route"),
            "{body}"
        );
    }
    // Authentication comes first, as for any API request.
    let unauthenticated = env.http.get(env.url("/tasks")).send().await.unwrap();
    assert_eq!(unauthenticated.status().as_u16(), 401);
}

#[tokio::test]
async fn heartbeats_come_every_8_sandbox_hours() {
    // 8 sandbox hours are 0.8 s.
    let env = Env::start(
        Sandbox::builder()
            .time_scale(36000.0)
            .start("127.0.0.1:0")
            .await
            .unwrap(),
    )
    .await;
    let (_, created) = env.create(seed::PROJECT, "/beat", json!([])).await;
    let secret = created["X-Hook-Secret"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let beats = env
        .target
        .wait_for("three heartbeats", |d| d.len() >= 3)
        .await;
    let elapsed = started.elapsed();
    for beat in &beats {
        assert_eq!(beat.body, br#"{"events":[]}"#);
        assert_eq!(
            beat.signature.as_deref(),
            Some(hmac_hex(&secret, &beat.body).as_str())
        );
    }
    // The first comes at once; two more take about 1.6 s.
    assert!(
        elapsed >= Duration::from_millis(1300) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn fields_are_only_valid_on_changed_filters() {
    let env = Env::start(sandbox().await).await;
    let (status, body) = env
        .create(
            seed::TASK,
            "/fields",
            json!([{"resource_type": "task", "action": "added", "fields": ["name"]}]),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`changed`"),
        "{body}"
    );
    let (status, _) = env
        .create(
            seed::TASK,
            "/fields",
            json!([{"resource_type": "task", "action": "changed", "fields": ["name"]}]),
        )
        .await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn next_page_keeps_the_query_it_was_asked_with() {
    let env = Env::start(sandbox().await).await;
    for i in 0..2 {
        assert_eq!(
            env.create(seed::TASK, &format!("/keep/{i}"), json!([]))
                .await
                .0,
            201
        );
    }
    let (_, page) = env
        .raw(
            reqwest::Method::GET,
            &format!(
                "/webhooks?workspace={}&limit=1&opt_fields=created_at",
                seed::WORKSPACE
            ),
            None,
        )
        .await;
    let path = page["next_page"]["path"].as_str().unwrap();
    assert!(
        path.contains("opt_fields=created_at") && path.contains("limit=1"),
        "{path}"
    );
    let (status, next) = env.raw(reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200);
    assert!(next["data"][0]["created_at"].is_string(), "{next}");
}

#[tokio::test]
async fn changes_carry_new_value_only_for_resources() {
    let env = Env::start(sandbox().await).await;
    env.create(seed::TASK, "/values", json!([])).await;
    env.target
        .wait_for("the heartbeat", |d| !d.is_empty())
        .await;
    env.emit(seed::TASK, "changed", None, Some("due_on"));
    env.emit(seed::TASK, "changed", None, Some("assignee"));
    let events: Vec<asana_webhooks::Event> = env
        .target
        .wait_for("two events", |d| {
            d.iter()
                .map(|r| {
                    serde_json::from_slice::<asana_webhooks::Delivery>(&r.body)
                        .unwrap()
                        .events
                        .len()
                })
                .sum::<usize>()
                >= 2
        })
        .await
        .iter()
        .flat_map(|r| {
            serde_json::from_slice::<asana_webhooks::Delivery>(&r.body)
                .unwrap()
                .events
        })
        .collect();
    let due = events
        .iter()
        .find(|e| e.change.as_ref().unwrap().field == "due_on")
        .unwrap();
    assert_eq!(due.change.as_ref().unwrap().new_value, None);
    let assignee = events
        .iter()
        .find(|e| e.change.as_ref().unwrap().field == "assignee")
        .unwrap();
    assert_eq!(
        assignee
            .change
            .as_ref()
            .unwrap()
            .new_resource()
            .unwrap()
            .resource_type,
        "user"
    );
}

#[tokio::test]
async fn a_create_through_the_handshake_sends_its_opt_fields_and_opt_pretty() {
    use asana_webhooks::HandshakeExt;
    use asana_webhooks::receiver::Receiver;
    use asana_webhooks::secrets::MemorySecretStore;

    let sandbox = sandbox().await;
    let (receiver, _notifications) = Receiver::new(MemorySecretStore::new());
    let addr =
        asana_webhooks_tests::serve(axum::Router::new().nest("/hooks", receiver.router())).await;
    let client = Client::builder()
        .token("sandbox")
        .base_url(sandbox.base_url())
        .build()
        .unwrap();
    let created = client
        .create_webhook_with_handshake(
            receiver.store(),
            seed::TASK,
            format!("http://{addr}/hooks/opt"),
        )
        .filter(WebhookFilter::new("task", "changed").with_fields(["due_on"]))
        .opt_fields([WebhookOptField::CreatedAt, WebhookOptField::Filters])
        .opt_pretty(true)
        .send()
        .await
        .unwrap();
    // Compact answers carry neither: they came because they were asked for.
    assert!(created.webhook.created_at.is_some());
    assert_eq!(created.webhook.filters.len(), 1);
    assert_eq!(created.webhook.filters[0].fields, ["due_on"]);
    assert!(created.secret.is_some());
}

#[tokio::test]
async fn paths_outside_the_api_routes_get_asanas_json_404() {
    let env = Env::start(sandbox().await).await;
    // `/webhooks/..` reaches the server as `/api/1.0/`.
    for path in ["/", "/webhooks/..", "/nope"] {
        let (status, body) = env.raw(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 404, "{path}");
        assert_shape(path, "get", status, &body);
        assert_eq!(
            body["errors"][0]["message"], "No matching route for request",
            "{path}"
        );
    }
}
