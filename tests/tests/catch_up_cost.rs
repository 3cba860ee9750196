//! What catching up costs in requests to Asana, counted at the sandbox:
//! one getEvents call per resource a round when nothing happened, one more
//! per 100 events; from that, the hourly cost at the default interval for
//! 1, 100 and 1,000 resources, checked against Asana's free-tier limit.

use asana_webhooks::catchup::{CatchUp, DEFAULT_CATCH_UP_INTERVAL};
use asana_webhooks::inbox::MemoryInbox;
use asana_webhooks::sandbox::{EmittedEvent, Sandbox, seed};
use asana_webhooks::secrets::{MemorySecretStore, TargetKey};
use asana_webhooks::{Client, RetryPolicy};

/// Asana's limit for free workspaces, requests a minute.
const FREE_TIER_PER_MINUTE: f64 = 150.0;

#[tokio::test]
async fn a_round_costs_one_request_per_resource_plus_one_per_100_events() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let client = Client::builder()
        .token("sandbox")
        .base_url(sandbox.base_url())
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let key = TargetKey::from_path_and_query("/hooks");
    let resources = [seed::TASK, seed::PROJECT];
    let mut catch_up = CatchUp::new(
        client,
        MemorySecretStore::new(),
        MemoryInbox::new(),
        Vec::new(),
    );
    for resource in resources {
        catch_up = catch_up.resource(resource, key.clone());
    }
    let calls = |since: &asana_webhooks::sandbox::ApiRequests| sandbox.api_requests().since(since);

    // The first round starts each stream: one call (a 412 with a token).
    let before = sandbox.api_requests();
    catch_up.run_round().await.unwrap();
    assert_eq!(calls(&before).of("getEvents"), 2);

    // Idle rounds: one call per resource, nothing else.
    const ROUNDS: u64 = 5;
    let before = sandbox.api_requests();
    for _ in 0..ROUNDS {
        let reports = catch_up.run_round().await.unwrap();
        assert!(reports.iter().all(|r| r.outcome.as_ref().unwrap().is_ok()));
    }
    let idle = calls(&before);
    assert_eq!(idle.of("getEvents"), ROUNDS * resources.len() as u64);
    assert_eq!(
        idle.total,
        idle.of("getEvents"),
        "no other request: {idle:?}"
    );
    let per_resource_round = idle.of("getEvents") as f64 / (ROUNDS as f64 * resources.len() as f64);

    // 250 events on the task, which the project's stream follows too:
    // three pages each (100, 100, 50).
    for n in 0..250 {
        let field = ["due_on", "name"][n % 2];
        sandbox
            .emit(EmittedEvent {
                resource: seed::TASK.into(),
                action: "changed".into(),
                parent: None,
                field: Some(field.into()),
            })
            .unwrap();
    }
    let before = sandbox.api_requests();
    let reports = catch_up.run_round().await.unwrap();
    let busy = calls(&before).of("getEvents");
    let fetched: usize = reports
        .iter()
        .map(|r| r.outcome.as_ref().unwrap().as_ref().unwrap().fetched)
        .sum();
    assert_eq!(fetched, 500);
    assert_eq!(busy, 6, "one call per 100 events and resource");

    let rounds_an_hour = 3600.0 / DEFAULT_CATCH_UP_INTERVAL.as_secs_f64();
    eprintln!(
        "measured: {per_resource_round} getEvents call per resource and idle round; {busy} calls for 250 events on 2 resources"
    );
    eprintln!(
        "| resources | idle requests an hour at {:?} | a minute |",
        DEFAULT_CATCH_UP_INTERVAL
    );
    for resources in [1.0, 100.0, 1000.0] {
        let hourly = per_resource_round * resources * rounds_an_hour;
        eprintln!("| {resources} | {hourly} | {:.1} |", hourly / 60.0);
        assert!(
            hourly / 60.0 < FREE_TIER_PER_MINUTE / 2.0,
            "{resources} resources cost {hourly} an hour: over half the free tier"
        );
    }
}
