//! The receiving side end to end: a fake Asana on 127.0.0.1 creates
//! webhooks through the handshake and delivers signed events to a real
//! receiver. Signatures are computed by the test support code, not by the
//! crate under test.

use std::time::Duration;

use asana_webhooks::receiver::{Notification, Notifications, Receiver};
use asana_webhooks::secrets::{
    FileSecretStore, MemorySecretStore, SecretStore, StoredSecret, TargetKey,
};
use asana_webhooks::{Error, EventAction, HandshakeError, HandshakeExt, HookSecret};
use asana_webhooks_tests::{CreateBehaviour, FakeAsana, deliver, hmac_hex, serve};

const EXAMPLE: &str = r#"{"events":[{"user":{"gid":"1213537811762722","resource_type":"user"},"action":"added","parent":{"gid":"1211316915894850","resource_type":"section"},"resource":{"gid":"1234567890987654321","resource_type":"task","resource_subtype":"default_task"},"created_at":"2026-03-17T10:11:06.611Z"}]}"#;

async fn next(notifications: &mut Notifications) -> Notification {
    tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("a notification")
        .expect("open")
}

/// A store that already holds `secret` for the target `path`.
async fn store_with(path: &str, secret: &str) -> MemorySecretStore {
    let store = MemorySecretStore::new();
    let record = StoredSecret::new(
        TargetKey::from_path_and_query(path),
        "1",
        HookSecret::new(secret),
    );
    store.save(record).await.unwrap();
    store
}

/// A receiver mounted at `/hooks` of a server on 127.0.0.1.
async fn receiver<S: SecretStore>(store: S) -> (String, Receiver<S>, Notifications) {
    let (receiver, notifications) = Receiver::new(store);
    let addr = serve(axum::Router::new().nest("/hooks", receiver.router())).await;
    (format!("http://{addr}/hooks"), receiver, notifications)
}

#[tokio::test]
async fn create_handshake_delivery_and_heartbeat() {
    let asana = FakeAsana::start().await;
    let (base, receiver, mut notifications) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/project-1?tenant=7");

    let created = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "111", &target)
        .send()
        .await
        .unwrap();
    let gid = created.webhook.gid.clone().unwrap();
    let (_, _, secret) = asana.created().pop().unwrap();
    assert_eq!(created.secret.as_ref().unwrap().expose(), secret);
    let stored = receiver.store().by_gid(&gid).await.unwrap().unwrap();
    assert_eq!(stored.target.as_str(), "/hooks/project-1?tenant=7");
    assert_eq!(stored.secret.expose(), secret);

    assert_eq!(
        deliver(
            &target,
            EXAMPLE.as_bytes(),
            Some(&hmac_hex(&secret, EXAMPLE.as_bytes()))
        )
        .await,
        200
    );
    match next(&mut notifications).await {
        Notification::Events {
            target,
            webhook_gid,
            events,
            undecoded,
        } => {
            assert!(undecoded.is_empty());
            assert_eq!(target.as_str(), "/hooks/project-1?tenant=7");
            assert_eq!(webhook_gid.as_deref(), Some(gid.as_str()));
            assert_eq!(events[0].action, EventAction::Added);
            assert_eq!(events[0].resource.gid, "1234567890987654321");
        }
        other => panic!("expected events, got {other:?}"),
    }

    let heartbeat = br#"{"events":[]}"#;
    assert_eq!(
        deliver(&target, heartbeat, Some(&hmac_hex(&secret, heartbeat))).await,
        200
    );
    assert!(matches!(
        next(&mut notifications).await,
        Notification::Heartbeat { .. }
    ));
}

#[tokio::test]
async fn a_handshake_outside_a_window_is_refused_and_changes_nothing() {
    let store = MemorySecretStore::new();
    let key = TargetKey::from_path_and_query("/hooks/a");
    let original = StoredSecret::new(key.clone(), "1", HookSecret::new("original"));
    store.save(original.clone()).await.unwrap();
    let (base, receiver, _notifications) = receiver(store).await;

    let response = reqwest::Client::new()
        .post(format!("{base}/a"))
        .header("X-Hook-Secret", "attacker-secret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(response.headers().get("x-hook-secret").is_none());
    assert_eq!(
        receiver.store().secrets_for(&key).await.unwrap(),
        [original]
    );
}

#[tokio::test]
async fn the_explicit_opt_in_accepts_a_handshake_outside_a_window() {
    let (receiver, _notifications) = Receiver::builder(MemorySecretStore::new())
        .accept_handshakes_outside_window(true)
        .build();
    let addr = serve(receiver.router()).await;
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/x"))
        .header("X-Hook-Secret", "s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-hook-secret"], "s3cret");
    let stored = receiver
        .store()
        .secrets_for(&TargetKey::from_path_and_query("/x"))
        .await
        .unwrap();
    assert_eq!(stored[0].secret.expose(), "s3cret");
}

#[tokio::test]
async fn bad_signatures_get_401_and_never_reach_the_handler() {
    let store = store_with("/hooks/a", "right").await;
    let (base, _receiver, mut notifications) = receiver(store).await;
    let url = format!("{base}/a");
    let body = EXAMPLE.as_bytes();
    let good = hmac_hex("right", body);
    let tampered = EXAMPLE.replace("added", "removed");

    assert_eq!(
        deliver(&url, tampered.as_bytes(), Some(&good)).await,
        401,
        "tampered body"
    );
    assert_eq!(
        deliver(&url, body, Some(&hmac_hex("wrong", body))).await,
        401,
        "wrong secret"
    );
    assert_eq!(deliver(&url, body, None).await, 401, "missing header");
    assert_eq!(
        deliver(&url, body, Some("not-hex")).await,
        401,
        "malformed header"
    );
    assert_eq!(
        deliver(&url, body, Some(&good[..40])).await,
        401,
        "short header"
    );
    assert_eq!(
        deliver(&format!("{base}/unknown"), body, Some(&good)).await,
        401,
        "no secret for target"
    );
    assert!(
        notifications.try_recv().is_none(),
        "nothing reached the handler"
    );

    let not_json = b"this is not json";
    assert_eq!(
        deliver(&url, not_json, Some(&hmac_hex("right", not_json))).await,
        400,
        "signed but not JSON at all"
    );
    assert_eq!(deliver(&url, body, Some(&good)).await, 200);
    assert!(matches!(
        next(&mut notifications).await,
        Notification::Events { .. }
    ));
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let store = store_with("/a", "s").await;
    let (receiver, mut notifications) = Receiver::builder(store).body_limit(1024).build();
    let addr = serve(receiver.router()).await;
    let big = format!(r#"{{"events":[],"padding":"{}"}}"#, "x".repeat(2048));
    assert_eq!(
        deliver(
            &format!("http://{addr}/a"),
            big.as_bytes(),
            Some(&hmac_hex("s", big.as_bytes()))
        )
        .await,
        413
    );
    // Also when the length is not declared up front (chunked).
    let stream = futures_body(big.clone().into_bytes());
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/a"))
        .header("X-Hook-Signature", hmac_hex("s", big.as_bytes()))
        .body(stream)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert!(notifications.try_recv().is_none());
}

fn futures_body(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(512).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn unknown_actions_and_fields_are_accepted() {
    let store = store_with("/hooks/a", "s").await;
    let (base, _receiver, mut notifications) = receiver(store).await;
    let body = br#"{"events":[{"user":null,"action":"teleported","resource":{"gid":"1","resource_type":"task","new":true},"created_at":"2026-01-01T00:00:00Z","surprise":[1]}],"also":"new"}"#;
    assert_eq!(
        deliver(&format!("{base}/a"), body, Some(&hmac_hex("s", body))).await,
        200
    );
    match next(&mut notifications).await {
        Notification::Events { events, .. } => {
            assert_eq!(events[0].action, EventAction::Other("teleported".into()));
            assert_eq!(events[0].user, None);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_full_queue_answers_503_and_the_retried_delivery_arrives() {
    let store = store_with("/a", "s").await;
    let (receiver, mut notifications) = Receiver::builder(store).queue_capacity(1).build();
    let addr = serve(receiver.router()).await;
    let url = format!("http://{addr}/a");
    let first = EXAMPLE.as_bytes();
    let second = EXAMPLE.replace("1234567890987654321", "42");
    let second = second.as_bytes();

    assert_eq!(deliver(&url, first, Some(&hmac_hex("s", first))).await, 200);
    assert_eq!(
        deliver(&url, second, Some(&hmac_hex("s", second))).await,
        503,
        "queue full"
    );
    // The handler catches up; Asana retries the refused delivery.
    let Notification::Events { events, .. } = next(&mut notifications).await else {
        panic!()
    };
    assert_eq!(events[0].resource.gid, "1234567890987654321");
    assert_eq!(
        deliver(&url, second, Some(&hmac_hex("s", second))).await,
        200,
        "retry accepted"
    );
    let Notification::Events { events, .. } = next(&mut notifications).await else {
        panic!()
    };
    assert_eq!(events[0].resource.gid, "42");
}

#[tokio::test]
async fn the_file_store_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.json");
    let asana = FakeAsana::start().await;
    let (target, gid, secret) = {
        let (base, receiver, _n) = receiver(FileSecretStore::open(&path).await.unwrap()).await;
        let target = format!("{base}/p");
        let created = asana
            .client()
            .create_webhook_with_handshake(receiver.store(), "1", &target)
            .send()
            .await
            .unwrap();
        (
            target,
            created.webhook.gid.unwrap(),
            created.secret.unwrap(),
        )
    };
    // A new process: a new store from the same file and a new receiver.
    let reopened = FileSecretStore::open(&path).await.unwrap();
    assert_eq!(reopened.by_gid(&gid).await.unwrap().unwrap().secret, secret);
    let (base, _receiver, mut notifications) = receiver(reopened).await;
    let url = format!("{base}/p");
    assert_eq!(url.rsplit('/').next(), target.rsplit('/').next());
    assert_eq!(
        deliver(
            &url,
            EXAMPLE.as_bytes(),
            Some(&hmac_hex(secret.expose(), EXAMPLE.as_bytes()))
        )
        .await,
        200
    );
    assert!(matches!(
        next(&mut notifications).await,
        Notification::Events { .. }
    ));
}

#[tokio::test]
async fn concurrent_creates_on_one_receiver_each_get_their_own_secret() {
    let asana = FakeAsana::start().await;
    let (base, receiver, mut notifications) = receiver(MemorySecretStore::new()).await;
    let client = asana.client();
    let creates = (0..8).map(|i| {
        let target = format!("{base}/project-{i}");
        let (client, store) = (client.clone(), receiver.store().clone());
        tokio::spawn(async move {
            client
                .create_webhook_with_handshake(&store, i.to_string(), &target)
                .send()
                .await
        })
    });
    let created: Vec<_> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let mut secrets: Vec<String> = created
        .iter()
        .map(|c| c.secret.as_ref().unwrap().expose().to_string())
        .collect();
    secrets.sort();
    secrets.dedup();
    assert_eq!(secrets.len(), 8, "eight distinct secrets");

    // Several webhooks on one receiver: each delivery is checked with its own target's secret.
    let (zero, one) = (&created[0], &created[1]);
    let body = EXAMPLE.as_bytes();
    let zero_sig = hmac_hex(zero.secret.as_ref().unwrap().expose(), body);
    assert_eq!(
        deliver(&format!("{base}/project-1"), body, Some(&zero_sig)).await,
        401,
        "another target's secret"
    );
    assert_eq!(
        deliver(&format!("{base}/project-0"), body, Some(&zero_sig)).await,
        200
    );
    let Notification::Events { webhook_gid, .. } = next(&mut notifications).await else {
        panic!()
    };
    assert_eq!(webhook_gid, zero.webhook.gid);
    assert_ne!(zero.webhook.gid, one.webhook.gid);
}

#[tokio::test]
async fn a_create_whose_handshake_never_comes_times_out_and_closes_its_registration() {
    let asana = FakeAsana::start().await;
    asana.set_behaviour(CreateBehaviour::Hang);
    let (base, receiver, _n) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/slow");
    let err = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "1", &target)
        .timeout(Duration::from_millis(200))
        .settle_time(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Handshake(HandshakeError::Timeout(_))),
        "{err:?}"
    );
    assert!(err.to_string().contains("in the background"), "{err}");
    // Once the background work gave up, the registration is closed: a late
    // (or forged) handshake is refused and nothing was stored.
    let closed = || async { handshake_status(&target).await == 403 };
    assert!(eventually(closed).await, "the registration was closed");
    let key = TargetKey::from_url(&target).unwrap();
    assert!(receiver.store().secrets_for(&key).await.unwrap().is_empty());
}

#[tokio::test]
async fn dropping_the_create_future_still_closes_the_registration() {
    let asana = FakeAsana::start().await;
    asana.set_behaviour(CreateBehaviour::Hang);
    let (base, receiver, _n) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/dropped");
    let store = receiver.store().clone();
    let client = asana.client();
    let task = tokio::spawn({
        let (store, target) = (store.clone(), target.clone());
        async move {
            client
                .create_webhook_with_handshake(&store, "1", &target)
                .timeout(Duration::from_secs(1))
                .settle_time(Duration::from_millis(300))
                .send()
                .await
        }
    });
    let open = || async { handshake_status(&target).await == 200 };
    assert!(eventually(open).await, "the create opened its registration");
    task.abort();
    let _ = task.await;
    // The request to Asana goes on in the background (timeout + settle
    // time); when it gives up, the registration closes.
    let closed = || async { handshake_status(&target).await == 403 };
    assert!(eventually(closed).await, "the registration was closed");
}

/// The status a handshake POST to `url` gets.
async fn handshake_status(url: &str) -> u16 {
    let response = reqwest::Client::new()
        .post(url)
        .header("X-Hook-Secret", "probe")
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// Polls `check` every 20 ms for at most 5 s.
async fn eventually<F: Future<Output = bool>>(check: impl Fn() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn a_secret_mismatch_deletes_the_new_webhook() {
    let asana = FakeAsana::start().await;
    asana.set_behaviour(CreateBehaviour::MismatchedSecret);
    let (base, receiver, _n) = receiver(MemorySecretStore::new()).await;
    let err = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "1", format!("{base}/m"))
        .send()
        .await
        .unwrap_err();
    let Error::Handshake(HandshakeError::SecretMismatch {
        webhook_gid,
        deleted,
        ..
    }) = &err
    else {
        panic!("{err:?}")
    };
    assert!(*deleted);
    assert_eq!(asana.deleted(), vec![webhook_gid.clone()]);
    assert_eq!(receiver.store().by_gid(webhook_gid).await.unwrap(), None);
}

#[tokio::test]
async fn ensure_returns_the_existing_webhook_on_a_duplicate() {
    let asana = FakeAsana::start().await;
    let (base, receiver, _n) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/e");
    let first = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "1", &target)
        .ensure()
        .await
        .unwrap();
    assert!(first.created);

    // Found through the store's record of its resource…
    let again = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "1", &target)
        .ensure()
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.webhook.gid, first.webhook.gid);
    // …and through Asana's list when the workspace is given.
    let listed = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "1", &target)
        .workspace("9")
        .ensure()
        .await
        .unwrap();
    assert_eq!(listed.webhook.gid, first.webhook.gid);
}

/// Point 2: with several webhooks on one target, `ensure` must return the
/// one of its own resource, not whichever the target has.
#[tokio::test]
async fn ensure_finds_the_webhook_of_its_resource_among_several_on_one_target() {
    let asana = FakeAsana::start().await;
    let (base, receiver, _n) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/shared");
    let client = asana.client();
    let mut gids = Vec::new();
    for resource in ["100", "200", "300"] {
        let created = client
            .create_webhook_with_handshake(receiver.store(), resource, &target)
            .send()
            .await
            .unwrap();
        gids.push(created.webhook.gid.unwrap());
    }
    for (resource, gid) in ["100", "200", "300"].iter().zip(&gids) {
        for workspace in [None, Some("9")] {
            let mut request =
                client.create_webhook_with_handshake(receiver.store(), *resource, &target);
            if let Some(workspace) = workspace {
                request = request.workspace(workspace);
            }
            let ensured = request.ensure().await.unwrap();
            assert!(!ensured.created);
            assert_eq!(
                ensured.webhook.gid.as_ref(),
                Some(gid),
                "resource {resource}, workspace {workspace:?}"
            );
        }
    }
}

#[tokio::test]
async fn ensure_says_when_the_webhook_exists_but_its_secret_is_not_stored() {
    let asana = FakeAsana::start().await;
    let (base, receiver, _n) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/lost");
    let created = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "1", &target)
        .send()
        .await
        .unwrap();
    let gid = created.webhook.gid.unwrap();
    // The secret is lost (another machine, a wiped store…).
    receiver.store().remove_gid(&gid).await.unwrap();

    let err = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "1", &target)
        .workspace("9")
        .ensure()
        .await
        .unwrap_err();
    let Error::Handshake(HandshakeError::SecretNotStored { webhook_gid, .. }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(webhook_gid, &gid);
    let message = err.to_string();
    assert!(
        message.contains("delete it") && message.contains(&gid),
        "{message}"
    );

    // Without the workspace it cannot be looked up, and says so.
    let err = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "1", &target)
        .ensure()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Handshake(HandshakeError::DuplicateNotFound { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("workspace"), "{err}");
}
