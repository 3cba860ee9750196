//! Self-healing against the sandbox, on its time scale: a listener stopped
//! for more than a day (in sandbox time) finds, once started again, that
//! Asana deleted its webhook; the watch creates it again through the
//! handshake, records the gap with its bounds, and later events arrive.
//! Two PostgreSQL-backed instances repairing at once create it once.

use std::net::SocketAddr;

use asana_webhooks::HandshakeExt;
use asana_webhooks::inbox::{FileInbox, Inbox};
use asana_webhooks::postgres::{PostgresInbox, PostgresSecretStore};
use asana_webhooks::sandbox::{EmittedEvent, Sandbox, seed};
use asana_webhooks::secrets::{
    FileSecretStore, GapCause, GapStatus, RecoveryStore, SecretStore, TargetKey,
};
use asana_webhooks::watch::{HealthState, RepairOutcome, Watch};
use asana_webhooks_tests::listening::{LIMIT, free_addr, listen, sandbox_client, until};
use asana_webhooks_tests::postgres::Postgres;
use tokio::sync::oneshot;

/// Sandbox seconds per real second: a sandbox day lasts 12 real seconds.
const SCALE: f64 = 7200.0;

fn changed() -> EmittedEvent {
    EmittedEvent {
        resource: seed::TASK.into(),
        action: "changed".into(),
        parent: None,
        field: Some("due_on".into()),
    }
}

/// The next event in `inbox` (acknowledged), within the limit.
async fn next_event<I: Inbox>(inbox: &I) -> asana_webhooks::Event {
    let item = tokio::time::timeout(LIMIT, inbox.next())
        .await
        .expect("an event arrives")
        .expect("the inbox is open");
    let event = item.event().expect("a decodable event");
    item.ack().await.unwrap();
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_down_for_more_than_a_day_gets_its_webhook_back_and_the_gap_recorded() {
    let sandbox = Sandbox::builder()
        .time_scale(SCALE)
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let client = sandbox_client(&sandbox);
    let dir = tempfile::tempdir().unwrap();
    let (secrets_path, inbox_path) = (dir.path().join("secrets.json"), dir.path().join("inbox"));
    let addr = free_addr().await;
    let url = format!("http://{addr}/hooks/asana");
    let key = TargetKey::from_url(&url).unwrap();

    // Up: the webhook is created through the handshake and delivers.
    let store = FileSecretStore::open(&secrets_path).await.unwrap();
    let inbox = FileInbox::open(&inbox_path).await.unwrap();
    let listening = listen(addr, store.clone(), inbox.clone()).await;
    let created = client
        .create_webhook_with_handshake(&store, seed::TASK, &url)
        .workspace(seed::WORKSPACE)
        .send()
        .await
        .unwrap();
    let old_gid = created.webhook.gid.unwrap();
    sandbox.emit(changed()).unwrap();
    assert_eq!(next_event(&inbox).await.resource.gid, seed::TASK);
    until("a heartbeat is recorded", || async {
        inbox
            .stats()
            .await
            .unwrap()
            .last_heartbeats
            .contains_key(&old_gid)
    })
    .await;

    // Down: the process stops; what it last heard is on disk.
    listening.stop().await;
    inbox.close();
    drop((store, inbox));
    sandbox.emit(changed()).unwrap();
    until(
        "Asana deletes the webhook after a day of failures",
        || async { client.get_webhook(&old_gid).send().await.is_err() },
    )
    .await;
    // Sent to nobody: the webhook is gone.
    sandbox.emit(changed()).unwrap();

    // Up again, a new process on the same files.
    let store = FileSecretStore::open(&secrets_path).await.unwrap();
    let inbox = FileInbox::open(&inbox_path).await.unwrap();
    let last_heard = inbox.stats().await.unwrap().last_heartbeats[&old_gid];
    let listening = listen(addr, store.clone(), inbox.clone()).await;
    let watch = Watch::new(
        client.clone(),
        seed::WORKSPACE,
        store.clone(),
        vec![key.clone()],
    )
    .inbox(inbox.clone());
    let before = chrono::Utc::now();
    let (report, repairs) = watch.check_and_repair().await.unwrap();
    let after = chrono::Utc::now();
    let old = report.webhooks.iter().find(|w| w.gid == old_gid).unwrap();
    assert_eq!(old.state, HealthState::Gone);
    let [
        (
            gid,
            Ok(RepairOutcome::Recreated {
                old_gid: was,
                new_gid,
                gap,
            }),
        ),
    ] = &repairs[..]
    else {
        panic!("one repair that created the webhook again: {repairs:?}");
    };
    assert_eq!((gid, was), (&old_gid, &old_gid));
    assert_ne!(new_gid, &old_gid);

    // The gap: from the last thing heard to the new webhook's creation.
    assert_eq!(gap.resource, seed::TASK);
    assert_eq!(gap.from, Some(last_heard), "from the last heartbeat heard");
    assert!(
        before <= gap.to && gap.to <= after,
        "{gap:?} not within the repair"
    );
    assert_eq!(
        gap.cause,
        GapCause::WebhookGone {
            old_gid: old_gid.clone(),
            new_gid: new_gid.clone()
        }
    );
    assert_eq!(gap.status, GapStatus::Open);
    // Durable: a new process reads it, once.
    let reopened = FileSecretStore::open(&secrets_path).await.unwrap();
    assert_eq!(reopened.gaps().await.unwrap(), std::slice::from_ref(gap));
    assert!(reopened.by_gid(&old_gid).await.unwrap().is_none());
    let record = reopened.by_gid(new_gid).await.unwrap().unwrap();
    assert_eq!(record.target_url.as_deref(), Some(url.as_str()));
    assert_eq!(record.resource.as_deref(), Some(seed::TASK));

    // The webhook at Asana is the same as before, and healthy.
    let now_at_asana = client.get_webhook(new_gid).send().await.unwrap();
    assert_eq!(now_at_asana.target.as_deref(), Some(url.as_str()));
    assert_eq!(
        now_at_asana.resource.and_then(|r| r.gid).as_deref(),
        Some(seed::TASK)
    );
    let (report, repairs) = watch.check_and_repair().await.unwrap();
    assert!(repairs.is_empty(), "nothing left to repair: {repairs:?}");
    assert_eq!(report.webhooks.len(), 1, "{report:#?}");
    assert_eq!(report.webhooks[0].gid, *new_gid);
    assert_eq!(report.webhooks[0].state, HealthState::Healthy);

    // Events after the repair arrive, verified with the new secret.
    sandbox.emit(changed()).unwrap();
    let event = next_event(&inbox).await;
    assert_eq!(event.resource.gid, seed::TASK);
    assert_eq!(event.action.as_str(), "changed");
    assert_eq!(reopened.gaps().await.unwrap().len(), 1);
    listening.stop().await;
}

/// One instance of a receiver behind a load balancer, on PostgreSQL.
struct Instance<S, I> {
    store: S,
    inbox: I,
}

async fn instance(db: &Postgres) -> Instance<PostgresSecretStore, PostgresInbox> {
    let pool = db.pool().await;
    Instance {
        store: PostgresSecretStore::new(pool.clone()),
        inbox: PostgresInbox::new(pool, &db.url()).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgresql_create_a_deleted_webhook_again_exactly_once() {
    let db = Postgres::start();
    let (a, b) = (instance(&db).await, instance(&db).await);
    two_instances_create_a_deleted_webhook_again_exactly_once(a, b).await;
}

/// Two watches sharing one secrets file (each change made under the
/// file's lock, so its lease is one too), running as they do in `listen`:
/// only the process that receives the target can answer the handshake of
/// a create, so the other's attempt fails and backs off, and the webhook
/// is created again once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_watches_on_one_secrets_file_create_a_deleted_webhook_again_once() {
    let sandbox = Sandbox::builder()
        .time_scale(SCALE)
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let client = sandbox_client(&sandbox);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let (store_a, store_b) = (
        FileSecretStore::open(&path).await.unwrap(),
        FileSecretStore::open(&path).await.unwrap(),
    );
    let inbox = FileInbox::open(dir.path().join("inbox")).await.unwrap();
    let addr = free_addr().await;
    let url = format!("http://{addr}/hooks/file");
    let key = TargetKey::from_url(&url).unwrap();
    let listening = listen(addr, store_a.clone(), inbox.clone()).await;
    let gid = client
        .create_webhook_with_handshake(&store_a, seed::TASK, &url)
        .workspace(seed::WORKSPACE)
        .send()
        .await
        .unwrap()
        .webhook
        .gid
        .unwrap();
    client.delete_webhook(&gid).send().await.unwrap();

    let watches = [&store_a, &store_b].map(|store| {
        Watch::new(
            client.clone(),
            seed::WORKSPACE,
            store.clone(),
            vec![key.clone()],
        )
        .inbox(inbox.clone())
        .interval(std::time::Duration::from_millis(200))
        .spawn()
    });
    let mut repairs = watches.each_ref().map(|w| w.repairs());
    until("the webhook is created again", || {
        let store = store_b.clone();
        let key = key.clone();
        let gid = gid.clone();
        async move {
            let stored = store.secrets_for(&key).await.unwrap();
            stored.len() == 1 && stored[0].webhook_gid.as_deref() != Some(gid.as_str())
        }
    })
    .await;
    // A few more checks of both: nothing else is created.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    drop(watches);
    let mut recreated = 0;
    for receiver in &mut repairs {
        while let Ok(outcome) = receiver.try_recv() {
            recreated += usize::from(matches!(outcome, RepairOutcome::Recreated { .. }));
        }
    }
    assert_eq!(recreated, 1);
    let live = client
        .get_webhooks(seed::WORKSPACE)
        .resource(seed::TASK)
        .send()
        .await
        .unwrap()
        .items;
    let ours = live
        .iter()
        .filter(|w| w.target.as_deref() == Some(url.as_str()))
        .count();
    assert_eq!(ours, 1, "{live:?}");
    assert_eq!(store_b.gaps().await.unwrap().len(), 1);
    listening.stop().await;
}

async fn two_instances_create_a_deleted_webhook_again_exactly_once<S, I>(
    a: Instance<S, I>,
    b: Instance<S, I>,
) where
    S: SecretStore + RecoveryStore,
    I: Inbox,
{
    let sandbox = Sandbox::builder()
        .time_scale(SCALE)
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let client = sandbox_client(&sandbox);
    // The load balancer sends the target to instance a; both share the
    // store, so b's watch sees the same secrets.
    let addr = free_addr().await;
    let url = format!("http://{addr}/hooks/shared");
    let key = TargetKey::from_url(&url).unwrap();
    let listening = listen(addr, a.store.clone(), a.inbox.clone()).await;

    for round in 0..3 {
        let gid = client
            .create_webhook_with_handshake(&a.store, seed::TASK, &url)
            .workspace(seed::WORKSPACE)
            .ensure()
            .await
            .unwrap()
            .webhook
            .gid
            .unwrap();
        // Asana deletes it (as after a day of failures).
        client.delete_webhook(&gid).send().await.unwrap();

        let watch_a = Watch::new(
            client.clone(),
            seed::WORKSPACE,
            a.store.clone(),
            vec![key.clone()],
        )
        .inbox(a.inbox.clone());
        let watch_b = Watch::new(
            client.clone(),
            seed::WORKSPACE,
            b.store.clone(),
            vec![key.clone()],
        )
        .inbox(b.inbox.clone());
        // Both check and repair at once; a repair that failed (with a
        // secrets file, only the process that receives the target can
        // answer its handshake) is tried again at the next check, as the
        // watch's backoff does. Bounded: three checks.
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let (ra, rb) = tokio::join!(watch_a.check_and_repair(), watch_b.check_and_repair());
            outcomes.extend([ra.unwrap().1, rb.unwrap().1].into_iter().flatten());
            if outcomes
                .iter()
                .any(|(_, o)| matches!(o, Ok(RepairOutcome::Recreated { .. })))
            {
                break;
            }
        }
        let recreated = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Ok(RepairOutcome::Recreated { .. })))
            .count();
        assert_eq!(recreated, 1, "round {round}: {outcomes:?}");
        assert!(
            outcomes.iter().all(|(_, o)| match o {
                Ok(o) => matches!(o, RepairOutcome::Recreated { .. } | RepairOutcome::NotHere),
                Err(e) => e.to_string().contains("handshake"),
            }),
            "round {round}: {outcomes:?}"
        );

        // One webhook at Asana on the target, its secret stored once.
        let live = client
            .get_webhooks(seed::WORKSPACE)
            .resource(seed::TASK)
            .send()
            .await
            .unwrap()
            .items;
        let ours: Vec<_> = live
            .iter()
            .filter(|w| w.target.as_deref() == Some(url.as_str()))
            .collect();
        assert_eq!(ours.len(), 1, "round {round}: {live:?}");
        let stored = b.store.secrets_for(&key).await.unwrap();
        assert_eq!(stored.len(), 1, "round {round}: {stored:?}");
        assert_eq!(stored[0].webhook_gid, ours[0].gid);
        let gaps = b.store.gaps().await.unwrap();
        assert_eq!(gaps.len(), round + 1, "one gap per deletion: {gaps:?}");
        // The next round starts from the webhook just created.
        client
            .delete_webhook(ours[0].gid.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        a.store
            .remove_gid(ours[0].gid.as_deref().unwrap())
            .await
            .unwrap();
    }
    listening.stop().await;
}

/// Answers every handshake on `addr` (echoes its secret) until stopped:
/// another tool's receiver, whose secrets this one never sees.
async fn foreign_receiver(addr: SocketAddr) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    use axum::http::{HeaderMap, HeaderValue};
    let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
        let mut answer = HeaderMap::new();
        if let Some(secret) = headers.get("x-hook-secret") {
            answer.insert("x-hook-secret", secret.clone());
        }
        answer.insert("content-length", HeaderValue::from_static("0"));
        (axum::http::StatusCode::OK, answer)
    });
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_an_unknown_secret_is_replaced_only_when_opted_in() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let client = sandbox_client(&sandbox);
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr().await;
    let url = format!("http://{addr}/hooks/unknown");
    let key = TargetKey::from_url(&url).unwrap();
    // Another tool made a webhook on this target, and kept its secret.
    let (stop, task) = foreign_receiver(addr).await;
    let filter = asana_webhooks::types::WebhookFilter::new("task", "changed");
    let foreign = client
        .create_webhook(seed::TASK, &url)
        .filter(filter.clone())
        .send()
        .await
        .unwrap()
        .webhook
        .gid
        .unwrap();
    let _ = stop.send(());
    task.await.unwrap();

    let store = FileSecretStore::open(dir.path().join("secrets.json"))
        .await
        .unwrap();
    let inbox = FileInbox::open(dir.path().join("inbox")).await.unwrap();
    let listening = listen(addr, store.clone(), inbox.clone()).await;

    // By default it is reported, never touched.
    let watch = Watch::new(
        client.clone(),
        seed::WORKSPACE,
        store.clone(),
        vec![key.clone()],
    )
    .inbox(inbox.clone());
    let (report, repairs) = watch.check_and_repair().await.unwrap();
    assert_eq!(report.webhooks[0].gid, foreign);
    assert_eq!(report.webhooks[0].state, HealthState::UnknownSecret);
    assert!(repairs.is_empty(), "{repairs:?}");
    assert!(client.get_webhook(&foreign).send().await.is_ok());

    // Opted in: deleted, created again through this receiver's handshake
    // with the same filters, and its events verify here.
    let watch = watch.replace_unknown_secrets(true);
    let (_, repairs) = watch.check_and_repair().await.unwrap();
    let [
        (
            _,
            Ok(RepairOutcome::Recreated {
                old_gid,
                new_gid,
                gap,
            }),
        ),
    ] = &repairs[..]
    else {
        panic!("one replacement: {repairs:?}");
    };
    assert_eq!(old_gid, &foreign);
    assert!(
        client.get_webhook(&foreign).send().await.is_err(),
        "deleted"
    );
    let made = client
        .get_webhook(new_gid)
        .opt_fields([
            asana_webhooks::types::WebhookOptField::Filters,
            asana_webhooks::types::WebhookOptField::Target,
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(made.filters, [filter]);
    assert_eq!(made.target.as_deref(), Some(url.as_str()));
    assert!(matches!(gap.cause, GapCause::UnknownSecretReplaced { .. }));
    assert_eq!(store.gaps().await.unwrap(), std::slice::from_ref(gap));
    let (report, repairs) = watch.check_and_repair().await.unwrap();
    assert!(repairs.is_empty(), "{repairs:?}");
    assert_eq!(report.webhooks.len(), 1);
    assert_eq!(report.webhooks[0].state, HealthState::Healthy);
    sandbox.emit(changed()).unwrap();
    assert_eq!(next_event(&inbox).await.resource.gid, seed::TASK);
    listening.stop().await;
}
