//! The receiving side under attack and drift: several webhooks on one
//! target, concurrent registrations, forged handshakes during a
//! registration, creates whose answer is late or lost, payloads that drift
//! from the spec, and clients that are slow on purpose. Each test is named
//! for the defect it pins down.

use std::time::Duration;

use asana_webhooks::receiver::{Notification, Notifications, Receiver};
use asana_webhooks::secrets::{MemorySecretStore, SecretStore, StoredSecret, TargetKey};
use asana_webhooks::{Error, HandshakeError, HandshakeExt, HookSecret};
use asana_webhooks_tests::{CreateBehaviour, FakeAsana, deliver, hmac_hex, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EVENT: &str = r#"{"user":{"gid":"9","resource_type":"user"},"action":"changed","resource":{"gid":"42","resource_type":"task"},"created_at":"2026-03-17T10:11:06.611Z","change":{"field":"name","action":"changed"}}"#;

fn events_body() -> String {
    format!(r#"{{"events":[{EVENT}]}}"#)
}

async fn next(notifications: &mut Notifications) -> Notification {
    tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("a notification")
        .expect("open")
}

async fn receiver(
    store: MemorySecretStore,
) -> (String, Receiver<MemorySecretStore>, Notifications) {
    let (receiver, notifications) = Receiver::new(store);
    let addr = serve(axum::Router::new().nest("/hooks", receiver.router())).await;
    (format!("http://{addr}/hooks"), receiver, notifications)
}

async fn post_handshake(url: &str, secret: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("X-Hook-Secret", secret)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
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

/// The secret the fake Asana handed out for webhook `gid`.
fn secret_of(asana: &FakeAsana, gid: &str) -> String {
    asana
        .created()
        .into_iter()
        .find(|(g, _, _)| g == gid)
        .map(|(_, _, secret)| secret)
        .expect("created")
}

// 1. Several webhooks on one target lose all but the last secret.
#[tokio::test]
async fn several_webhooks_on_one_target_each_verify_with_their_own_secret() {
    let asana = FakeAsana::start().await;
    let (base, receiver, mut notifications) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/workspace");
    let client = asana.client();
    let mut gids = Vec::new();
    for resource in ["1", "2", "3"] {
        let created = client
            .create_webhook_with_handshake(receiver.store(), resource, &target)
            .send()
            .await
            .unwrap();
        gids.push(created.webhook.gid.unwrap());
    }
    let key = TargetKey::from_url(&target).unwrap();
    assert_eq!(receiver.store().secrets_for(&key).await.unwrap().len(), 3);

    let body = events_body();
    for gid in &gids {
        let signature = hmac_hex(&secret_of(&asana, gid), body.as_bytes());
        assert_eq!(
            deliver(&target, body.as_bytes(), Some(&signature)).await,
            200,
            "webhook {gid}"
        );
        let Notification::Events { webhook_gid, .. } = next(&mut notifications).await else {
            panic!("events expected")
        };
        assert_eq!(
            webhook_gid.as_ref(),
            Some(gid),
            "names the webhook whose secret matched"
        );
    }

    // Removing one webhook's secret leaves the others verifying.
    receiver.store().remove_gid(&gids[0]).await.unwrap();
    let first = hmac_hex(&secret_of(&asana, &gids[0]), body.as_bytes());
    assert_eq!(deliver(&target, body.as_bytes(), Some(&first)).await, 401);
    let second = hmac_hex(&secret_of(&asana, &gids[1]), body.as_bytes());
    assert_eq!(deliver(&target, body.as_bytes(), Some(&second)).await, 200);
}

// 3. Concurrent registrations to one target fail with WindowBusy.
#[tokio::test]
async fn four_concurrent_registrations_to_one_target_all_succeed() {
    let asana = FakeAsana::start().await;
    let (base, receiver, mut notifications) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/one-endpoint");
    let client = asana.client();
    let creates = ["workspace", "team", "project", "task"].map(|resource| {
        let (client, store, target) = (client.clone(), receiver.store().clone(), target.clone());
        tokio::spawn(async move {
            client
                .create_webhook_with_handshake(&store, resource, &target)
                .send()
                .await
        })
    });
    let mut gids = Vec::new();
    for create in futures::future::join_all(creates).await {
        let created = create
            .unwrap()
            .expect("no create fails because another is in flight");
        gids.push(created.webhook.gid.unwrap());
    }
    let key = TargetKey::from_url(&target).unwrap();
    let stored = receiver.store().secrets_for(&key).await.unwrap();
    assert_eq!(stored.len(), 4);
    for gid in &gids {
        let record = receiver.store().by_gid(gid).await.unwrap().unwrap();
        assert_eq!(
            record.secret.expose(),
            secret_of(&asana, gid),
            "each create confirmed its own secret"
        );
        let body = events_body();
        let signature = hmac_hex(record.secret.expose(), body.as_bytes());
        assert_eq!(
            deliver(&target, body.as_bytes(), Some(&signature)).await,
            200
        );
        assert!(matches!(
            next(&mut notifications).await,
            Notification::Events { .. }
        ));
    }
}

// 4. Forgery inside the registration window.
#[tokio::test]
async fn a_forged_handshake_during_a_registration_never_verifies_events() {
    let asana = FakeAsana::start().await;
    asana.set_behaviour(CreateBehaviour::LateAnswer(Duration::from_millis(800)));
    let (base, receiver, mut notifications) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/attacked");
    let create = tokio::spawn({
        let (client, store, target) = (asana.client(), receiver.store().clone(), target.clone());
        async move {
            client
                .create_webhook_with_handshake(&store, "1", &target)
                .send()
                .await
        }
    });
    // Wait for Asana's handshake, then play the attacker inside the window.
    assert!(eventually(|| async { !asana.created().is_empty() }).await);
    assert_eq!(
        post_handshake(&target, "attacker-secret").await,
        200,
        "a handshake is answered while a registration is in flight"
    );
    let body = events_body();
    let forged = hmac_hex("attacker-secret", body.as_bytes());
    assert_ne!(
        deliver(&target, body.as_bytes(), Some(&forged)).await,
        200,
        "events signed with an unconfirmed secret are not accepted"
    );

    let created = create
        .await
        .unwrap()
        .expect("the real create still succeeds");
    let gid = created.webhook.gid.unwrap();
    assert_eq!(
        deliver(&target, body.as_bytes(), Some(&forged)).await,
        401,
        "after the window the attacker's secret is gone"
    );
    assert!(
        notifications.try_recv().is_none(),
        "no forged event reached the application"
    );
    let key = TargetKey::from_url(&target).unwrap();
    let stored = receiver.store().secrets_for(&key).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].webhook_gid.as_deref(), Some(gid.as_str()));
    let genuine = hmac_hex(&secret_of(&asana, &gid), body.as_bytes());
    assert_eq!(deliver(&target, body.as_bytes(), Some(&genuine)).await, 200);
}

// 4. …while Asana's own heartbeat right after the handshake is answered,
// and its events wait for the 201 instead of being trusted early.
#[tokio::test]
async fn the_pending_secret_answers_the_heartbeat_and_holds_events_until_confirmed() {
    let asana = FakeAsana::start().await;
    asana.set_heartbeat_after_handshake(true);
    asana.set_behaviour(CreateBehaviour::LateAnswer(Duration::from_millis(600)));
    let (base, receiver, mut notifications) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/heartbeat");
    let create = tokio::spawn({
        let (client, store, target) = (asana.client(), receiver.store().clone(), target.clone());
        async move {
            client
                .create_webhook_with_handshake(&store, "1", &target)
                .send()
                .await
        }
    });
    let Notification::Heartbeat { webhook_gid, .. } = next(&mut notifications).await else {
        panic!("the heartbeat before the 201 is answered")
    };
    assert_eq!(webhook_gid, None, "not confirmed yet");
    let (gid, _, secret) = asana.created().pop().unwrap();
    let body = events_body();
    let signature = hmac_hex(&secret, body.as_bytes());
    let early = reqwest::Client::new()
        .post(&target)
        .header("X-Hook-Signature", &signature)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        early.status().as_u16(),
        503,
        "events wait for the confirmation"
    );
    assert!(early.headers().contains_key("retry-after"));
    create.await.unwrap().unwrap();
    assert_eq!(
        deliver(&target, body.as_bytes(), Some(&signature)).await,
        200,
        "Asana's retry is accepted"
    );
    let Notification::Events { webhook_gid, .. } = next(&mut notifications).await else {
        panic!()
    };
    assert_eq!(webhook_gid, Some(gid));
}

/// After a create that timed out: the secret of the webhook Asana made
/// ends up stored (`why` says how), and its deliveries verify.
async fn secret_recovered_after_timeout(
    asana: &FakeAsana,
    store: &MemorySecretStore,
    notifications: &mut Notifications,
    target: &str,
    err: Error,
    why: &str,
) -> String {
    assert!(
        matches!(err, Error::Handshake(HandshakeError::Timeout(_))),
        "{err:?}"
    );
    let (gid, _, secret) = asana.created().pop().unwrap();
    assert!(
        eventually(|| {
            let (store, gid) = (store.clone(), gid.clone());
            async move { store.by_gid(&gid).await.unwrap().is_some() }
        })
        .await,
        "{why}"
    );
    let body = events_body();
    let signature = hmac_hex(&secret, body.as_bytes());
    assert_eq!(
        deliver(target, body.as_bytes(), Some(&signature)).await,
        200
    );
    assert!(matches!(
        next(notifications).await,
        Notification::Events { .. }
    ));
    gid
}

// 5. A create that times out loses its secret.
#[tokio::test]
async fn a_create_answered_after_its_timeout_still_stores_its_secret() {
    let asana = FakeAsana::start().await;
    asana.set_behaviour(CreateBehaviour::LateAnswer(Duration::from_millis(700)));
    let (base, receiver, mut notifications) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/late");
    let err = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "1", &target)
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    let why = "the late 201 stored the secret";
    let gid = secret_recovered_after_timeout(
        &asana,
        receiver.store(),
        &mut notifications,
        &target,
        err,
        why,
    )
    .await;
    assert_eq!(asana.live(), [gid]);
}

#[tokio::test]
async fn a_create_whose_answer_never_comes_is_looked_up_and_its_secret_stored() {
    let asana = FakeAsana::start().await;
    asana.set_behaviour(CreateBehaviour::HandshakeThenHang);
    let (base, receiver, mut notifications) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/lost-answer");
    let err = asana
        .client()
        .create_webhook_with_handshake(receiver.store(), "77", &target)
        .workspace("1")
        .timeout(Duration::from_millis(200))
        .settle_time(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    let why = "the webhook was found by listing the resource and its one echoed secret stored";
    secret_recovered_after_timeout(
        &asana,
        receiver.store(),
        &mut notifications,
        &target,
        err,
        why,
    )
    .await;
}

#[tokio::test]
async fn a_create_without_answer_and_with_a_forged_handshake_deletes_its_webhook() {
    let asana = FakeAsana::start().await;
    asana.set_behaviour(CreateBehaviour::HandshakeThenHang);
    let (base, receiver, _notifications) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/ambiguous");
    let create = tokio::spawn({
        let (client, store, target) = (asana.client(), receiver.store().clone(), target.clone());
        async move {
            client
                .create_webhook_with_handshake(&store, "77", &target)
                .workspace("1")
                .timeout(Duration::from_millis(300))
                .settle_time(Duration::from_millis(300))
                .send()
                .await
        }
    });
    assert!(eventually(|| async { !asana.created().is_empty() }).await);
    assert_eq!(post_handshake(&target, "forged").await, 200);
    assert!(create.await.unwrap().is_err());
    // Two candidate secrets: no way to tell which is the webhook's, so the
    // webhook is deleted rather than left alive with no verifiable secret.
    assert!(
        eventually(|| async { asana.live().is_empty() }).await,
        "deleted"
    );
    let key = TargetKey::from_url(&target).unwrap();
    assert!(receiver.store().secrets_for(&key).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_lost_answer_never_gives_a_stale_webhook_an_attackers_secret() {
    // A webhook of the same resource and target exists from a day ago, its
    // secret unknown here; a create gets no answer (Asana's 403 was lost)
    // and the only handshake its registration saw is an attacker's.
    let asana = FakeAsana::start().await;
    let (base, receiver, _notifications) = receiver(MemorySecretStore::new()).await;
    let target = format!("{base}/stale");
    let stale = asana.plant(
        "77",
        &target,
        chrono::Utc::now() - chrono::Duration::days(1),
    );
    asana.set_behaviour(CreateBehaviour::Hang);
    let create = tokio::spawn({
        let (client, store, target) = (asana.client(), receiver.store().clone(), target.clone());
        async move {
            client
                .create_webhook_with_handshake(&store, "77", &target)
                .workspace("1")
                .timeout(Duration::from_millis(300))
                .settle_time(Duration::from_millis(300))
                .send()
                .await
        }
    });
    assert!(eventually(|| async { post_handshake(&target, "attacker").await == 200 }).await);
    assert!(create.await.unwrap().is_err());
    // The lookup ran (it read the stale webhook's creation time)…
    assert!(eventually(|| async { asana.looked_up().contains(&stale) }).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // …and trusted nothing: the webhook was created a day before the
    // registration, so no handshake it saw can be its. It is not this
    // create's to delete either.
    let key = TargetKey::from_url(&target).unwrap();
    assert!(receiver.store().secrets_for(&key).await.unwrap().is_empty());
    assert!(receiver.store().by_gid(&stale).await.unwrap().is_none());
    assert_eq!(asana.live(), [stale]);
}

// 6. A signed delivery refused for its shape loses every event in it.
#[tokio::test]
async fn a_signed_delivery_is_never_refused_for_its_shape() {
    let store = MemorySecretStore::new();
    let key = TargetKey::from_path_and_query("/hooks/drift");
    store
        .save(StoredSecret::new(key, "5", HookSecret::new("s")))
        .await
        .unwrap();
    let (base, _receiver, mut notifications) = receiver(store).await;
    let url = format!("{base}/drift");
    let good = r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}"#;
    let drifted = [
        r#"{"action":"added","resource":{"gid":"1","resource_type":"task"}}"#,
        r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":null}"#,
        r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00"}"#,
        r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":1767225600}"#,
        r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":"January 1st"}"#,
        r#"{"resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}"#,
        r#"{"action":null,"resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}"#,
        r#"{"action":"added","created_at":"2026-01-01T00:00:00Z"}"#,
        r#"{"action":"added","resource":null,"created_at":"2026-01-01T00:00:00Z"}"#,
        r#"{"action":"changed","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z","change":{"action":"changed"}}"#,
        r#"{"action":"added","resource":{"gid":1,"resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}"#,
        r#"{"action":"added","resource":{"resource_type":"task"},"created_at":"2026-01-01T00:00:00Z"}"#,
        r#"{"action":"added","resource":{"gid":"1","resource_type":"task"},"created_at":"2026-01-01T00:00:00Z","user":"someone"}"#,
        r#""an event as a string""#,
        r#"42"#,
        r#"null"#,
        r#"[]"#,
    ];
    for shape in drifted {
        let body = format!(r#"{{"events":[{good},{shape}]}}"#);
        assert_eq!(
            deliver(&url, body.as_bytes(), Some(&hmac_hex("s", body.as_bytes()))).await,
            200,
            "{shape}"
        );
        let Notification::Events {
            events,
            undecoded,
            webhook_gid,
            ..
        } = next(&mut notifications).await
        else {
            panic!("{shape}")
        };
        assert_eq!(webhook_gid.as_deref(), Some("5"));
        assert_eq!(
            events.len(),
            1,
            "the good event of the batch is kept: {shape}"
        );
        assert_eq!(undecoded.len(), 1, "{shape}");
        assert_eq!(
            undecoded[0].raw,
            serde_json::from_str::<serde_json::Value>(shape).unwrap()
        );
    }
    // JSON that is not even an events object is handed over whole.
    let odd = br#"{"something":"else"}"#;
    assert_eq!(deliver(&url, odd, Some(&hmac_hex("s", odd))).await, 200);
    let Notification::Events { undecoded, .. } = next(&mut notifications).await else {
        panic!()
    };
    assert_eq!(undecoded[0].raw["something"], "else");
}

/// A receiver served by `Receiver::serve` with short limits.
async fn served_with_limits(store: MemorySecretStore) -> (std::net::SocketAddr, Notifications) {
    let (receiver, notifications) = Receiver::builder(store)
        .header_read_timeout(Duration::from_millis(400))
        .idle_timeout(Duration::from_millis(400))
        .body_read_timeout(Duration::from_millis(400))
        .max_connections(8)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(receiver.serve(listener, std::future::pending()));
    (addr, notifications)
}

/// Reads until the server closes the connection; returns what it sent,
/// or `None` if it was still open after `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&received).into_owned())
}

// 7. Slow or unauthenticated clients hold the server.
#[tokio::test]
async fn idle_and_trickling_connections_are_closed() {
    let (addr, _n) = served_with_limits(MemorySecretStore::new()).await;
    // A connection that never sends a byte.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut idle, Duration::from_secs(3))
            .await
            .is_some(),
        "idle connection closed"
    );

    // Headers trickled a byte at a time, slower than the header timeout allows.
    let mut trickle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        b"POST /hooks/x HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut cut = false;
    for byte in request {
        if trickle.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert!(
        cut || closed_within(&mut trickle, Duration::from_secs(3))
            .await
            .is_some(),
        "trickled headers cut off"
    );

    // A kept-alive connection that goes quiet after one request.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /hooks/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut kept, Duration::from_secs(3))
        .await
        .expect("closed after idling");
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
}

#[tokio::test]
async fn unsigned_or_unknown_large_bodies_are_refused_before_they_are_read() {
    let store = MemorySecretStore::new();
    store
        .save(StoredSecret::new(
            TargetKey::from_path_and_query("/known"),
            "1",
            HookSecret::new("s"),
        ))
        .await
        .unwrap();
    let (addr, _n) = served_with_limits(store).await;
    let cases = [
        ("/known", ""),
        (
            "/unknown",
            &*format!("X-Hook-Signature: {}\r\n", "a".repeat(64)),
        ),
        ("/known", "X-Hook-Signature: not-hex\r\n"),
    ];
    for (path, extra) in cases {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Declares 1 MiB and sends none of it: the answer must not wait for it.
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1048000\r\n{extra}\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf))
            .await
            .expect("answered before any body byte was sent")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 401"),
            "{path} {extra}"
        );
        // …and the connection is closed at once, not left waiting for a
        // body nobody will read (the idle timeout here is 400 ms).
        assert!(
            closed_within(&mut stream, Duration::from_millis(250))
                .await
                .is_some(),
            "{path} {extra}: closed after the refusal"
        );
    }
}

#[tokio::test]
async fn stalled_bodies_are_cut_off_and_the_server_keeps_serving() {
    let store = MemorySecretStore::new();
    store
        .save(StoredSecret::new(
            TargetKey::from_path_and_query("/known"),
            "1",
            HookSecret::new("s"),
        ))
        .await
        .unwrap();
    let (addr, mut notifications) = served_with_limits(store).await;
    // More stalled uploads than the connection limit, each with a plausible
    // signature and a known target.
    let mut stalled = Vec::new();
    for _ in 0..16 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /known HTTP/1.1\r\nHost: x\r\nContent-Length: 1048000\r\nX-Hook-Signature: {}\r\n\r\n{{\"events\":",
            "a".repeat(64)
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    for stream in &mut stalled {
        assert!(
            closed_within(stream, Duration::from_secs(5))
                .await
                .is_some(),
            "a stalled upload was cut off"
        );
    }
    // Genuine deliveries still get through.
    let body = events_body();
    let signature = hmac_hex("s", body.as_bytes());
    assert_eq!(
        deliver(
            &format!("http://{addr}/known"),
            body.as_bytes(),
            Some(&signature)
        )
        .await,
        200
    );
    assert!(matches!(
        next(&mut notifications).await,
        Notification::Events { .. }
    ));
}

/// A flood of forged handshakes while a registration is in flight can
/// neither grow a durable store without bound nor block the create: past
/// the per-target limit each one is still answered, and only the span in
/// which they arrived is written down (recovery then trusts nothing there).
#[tokio::test]
async fn a_flood_of_handshakes_is_answered_but_written_down_only_up_to_the_limit() {
    use asana_webhooks::secrets::{FileSecretStore, MAX_UNCONFIRMED_PER_TARGET};
    let dir = tempfile::tempdir().unwrap();
    let store = FileSecretStore::open(dir.path().join("secrets.json"))
        .await
        .unwrap();
    let (receiver, _notifications) = Receiver::new(store.clone());
    let addr = serve(axum::Router::new().nest("/hooks", receiver.router())).await;
    let url = format!("http://{addr}/hooks/flooded");
    let key = TargetKey::from_path_and_query("/hooks/flooded");
    store
        .open_registration(&key, Duration::from_secs(60))
        .await
        .unwrap();
    for n in 0..MAX_UNCONFIRMED_PER_TARGET + 2 {
        assert_eq!(post_handshake(&url, &format!("forged-{n}")).await, 200);
    }
    assert_eq!(
        store.unconfirmed_handshakes(&key).await.unwrap().len(),
        MAX_UNCONFIRMED_PER_TARGET
    );
    let span = store.unrecorded_handshakes(&key).await.unwrap().unwrap();
    assert!(span.first <= span.last);
}

/// Serves a receiver built by `builder` on 127.0.0.1 with
/// `Receiver::serve`; returns its address and the notifications.
async fn serve_built(
    builder: asana_webhooks::receiver::ReceiverBuilder<MemorySecretStore>,
) -> (std::net::SocketAddr, Notifications) {
    let (receiver, notifications) = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(receiver.serve(listener, std::future::pending()));
    (addr, notifications)
}

/// A store that knows the secret `s` for the target `/genuine`.
async fn genuine_store() -> MemorySecretStore {
    let store = MemorySecretStore::new();
    store
        .save(StoredSecret::new(
            TargetKey::from_path_and_query("/genuine"),
            "1",
            HookSecret::new("s"),
        ))
        .await
        .unwrap();
    store
}

/// Plays one of many useless clients: connects, and every `every` sends
/// an unsigned `GET` on the same connection for as long as the server keeps
/// it open, then connects again. Bounded by `until` and in rounds.
async fn useless_client(addr: std::net::SocketAddr, every: Duration, until: tokio::time::Instant) {
    for _ in 0..1000 {
        if tokio::time::Instant::now() >= until {
            return;
        }
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
                .await
        else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        for _ in 0..1000 {
            tokio::time::sleep(every).await;
            if tokio::time::Instant::now() >= until
                || stream
                    .write_all(b"GET /genuine HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .is_err()
            {
                break;
            }
            let mut buf = [0u8; 1024];
            match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    let answer = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    if answer.contains("connection: close") {
                        break;
                    }
                }
                _ => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One signed delivery on a fresh connection; its status, or `None` when
/// no answer came within `limit`.
async fn signed_delivery(addr: std::net::SocketAddr, limit: Duration) -> Option<u16> {
    let body = events_body();
    let signature = hmac_hex("s", body.as_bytes());
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(limit)
        .build()
        .unwrap();
    let response = client
        .post(format!("http://{addr}/genuine"))
        .header("X-Hook-Signature", signature)
        .body(body)
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

// 8. Many keep-alive connections that only ever send unsigned requests
// hold every connection slot, and Asana's deliveries wait in the backlog.
#[tokio::test]
async fn useless_keep_alive_connections_do_not_keep_genuine_deliveries_out() {
    let (addr, mut notifications) =
        serve_built(Receiver::builder(genuine_store().await).max_connections(64)).await;
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    // Almost four times as many useless clients as there are slots, each
    // sending a GET every 2 s: even if each lost its connection at its
    // first GET, those waiting for a slot would fill it for longer than
    // the deliveries may wait, unless slots are taken back.
    let useless: Vec<_> = (0..240)
        .map(|_| tokio::spawn(useless_client(addr, Duration::from_secs(2), until)))
        .collect();
    // Let them take the slots.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let started = std::time::Instant::now();
    let deliveries = (0..6).map(|_| tokio::spawn(signed_delivery(addr, Duration::from_secs(4))));
    let answers: Vec<Option<u16>> = futures::future::join_all(deliveries)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let took = started.elapsed();
    for client in &useless {
        client.abort();
    }
    eprintln!("6 genuine deliveries among 240 useless connections: {answers:?} in {took:?}");
    assert_eq!(
        answers,
        vec![Some(200); 6],
        "every genuine delivery is answered within 4 s"
    );
    for _ in 0..6 {
        assert!(matches!(
            next(&mut notifications).await,
            Notification::Events { .. }
        ));
    }
}

/// A request with a body, as raw bytes.
fn raw_post(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    )
}

// 9. A refused request keeps its connection, for the next useless one.
#[tokio::test]
async fn every_refusal_closes_its_connection() {
    // Long idle and header timeouts: only the refusal can close.
    let (addr, _notifications) = serve_built(
        Receiver::builder(genuine_store().await)
            .header_read_timeout(Duration::from_secs(30))
            .idle_timeout(Duration::from_secs(30)),
    )
    .await;
    let body = events_body();
    let good = hmac_hex("s", body.as_bytes());
    let wrong = hmac_hex("not-the-secret", body.as_bytes());
    let cases = [
        ("GET /genuine HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 405),
        (raw_post("/genuine", "", &body), 401),
        (
            raw_post("/genuine", &format!("X-Hook-Signature: {wrong}\r\n"), &body),
            401,
        ),
        (
            raw_post("/unknown", &format!("X-Hook-Signature: {good}\r\n"), &body),
            401,
        ),
        (raw_post("/genuine", "X-Hook-Secret: forged\r\n", ""), 403),
        (raw_post("/genuine", "X-Hook-Secret: \r\n", ""), 400),
        (
            "POST /genuine HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n".to_string(),
            413,
        ),
    ];
    for (request, status) in cases {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = closed_within(&mut stream, Duration::from_secs(1))
            .await
            .unwrap_or_else(|| panic!("{status}: the connection is closed after the refusal"));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }

    // A genuine delivery keeps its connection for the next one.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = raw_post("/genuine", &format!("X-Hook-Signature: {good}\r\n"), &body);
    for _ in 0..2 {
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200 "), "{answer}");
        assert!(!answer.contains("connection: close"), "{answer}");
    }
}

// 10. A client that pipelines requests and never reads the answers holds
// its connection for good: once the answers fill the buffers hyper stops
// reading, and with it its header and idle timers.
#[tokio::test]
async fn a_client_that_never_reads_its_answers_loses_its_connection() {
    // Handshakes echo their 4 kB secret: answers as large as the requests.
    let (addr, _notifications) = serve_built(
        Receiver::builder(MemorySecretStore::new())
            .accept_handshakes_outside_window(true)
            .header_read_timeout(Duration::from_secs(30))
            .idle_timeout(Duration::from_secs(30))
            .write_timeout(Duration::from_millis(300)),
    )
    .await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = raw_post(
        "/pipelined",
        &format!("X-Hook-Secret: {}\r\n", "s".repeat(4000)),
        "",
    );
    // Batches of pipelined requests until the connection is dropped; once
    // the server stops reading, a write waits until then.
    let batch = request.repeat(10);
    let started = std::time::Instant::now();
    let mut last_progress = started;
    let mut sent = 0usize;
    let dropped = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..10_000 {
            if let Err(e) = stream.write_all(batch.as_bytes()).await {
                return Some(e);
            }
            sent += 10;
            last_progress = std::time::Instant::now();
        }
        None
    })
    .await;
    let stalled_for = last_progress.elapsed();
    eprintln!(
        "{sent} pipelined requests written in {:?}, the connection dropped {stalled_for:?} after the last write went through, {:?} after the start: {dropped:?}",
        last_progress - started,
        started.elapsed(),
    );
    assert!(
        matches!(dropped, Ok(Some(_))),
        "the connection is dropped: {dropped:?}"
    );
    assert!(
        stalled_for < Duration::from_millis(300 + 1000),
        "within the write timeout of the last write, not {stalled_for:?}"
    );
}

// 11. A connection that keeps sending genuine requests lives for good.
#[tokio::test]
async fn a_connection_is_closed_at_its_maximum_age() {
    let (addr, _notifications) = serve_built(
        Receiver::builder(genuine_store().await)
            .header_read_timeout(Duration::from_secs(30))
            .idle_timeout(Duration::from_secs(30))
            .max_connection_age(Duration::from_millis(500)),
    )
    .await;
    let body = r#"{"events":[]}"#;
    let request = raw_post(
        "/genuine",
        &format!("X-Hook-Signature: {}\r\n", hmac_hex("s", body.as_bytes())),
        body,
    );
    let opened = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut answered = 0;
    for _ in 0..30 {
        if stream.write_all(request.as_bytes()).await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                let answer = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                assert!(answer.starts_with("http/1.1 200 "), "{answer}");
                answered += 1;
                if answer.contains("connection: close") {
                    break;
                }
            }
            Ok(_) => break,
            Err(_) => panic!("no answer"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let age = opened.elapsed();
    assert!(
        closed_within(&mut stream, Duration::from_secs(1))
            .await
            .is_some(),
        "closed"
    );
    assert!(answered >= 3, "served until its age: {answered}");
    assert!(
        age >= Duration::from_millis(500) && age < Duration::from_millis(1500),
        "closed at its maximum age, not after {age:?}"
    );
}

// 12. One address takes every slot.
#[tokio::test]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    let (addr, mut notifications) = serve_built(
        Receiver::builder(genuine_store().await)
            .header_read_timeout(Duration::from_secs(30))
            .idle_timeout(Duration::from_secs(30))
            .body_read_timeout(Duration::from_secs(30))
            .max_connections_per_ip(4),
    )
    .await;
    // Four connections that send nothing fill this address's share…
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // …and a delivery takes the place of one of them.
    assert_eq!(
        signed_delivery(addr, Duration::from_secs(2)).await,
        Some(200)
    );
    assert!(matches!(
        next(&mut notifications).await,
        Notification::Events { .. }
    ));
    let mut closed = 0;
    for stream in &mut idle {
        if closed_within(stream, Duration::from_millis(200))
            .await
            .is_some()
        {
            closed += 1;
        }
    }
    assert!(closed >= 1, "an idle connection made room");
    drop(idle);

    // Four uploads in progress are busy: a fifth connection from the same
    // address is closed at once, unanswered.
    let head = format!(
        "POST /genuine HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nX-Hook-Signature: {}\r\n\r\n{{",
        "a".repeat(64)
    );
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        busy.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fifth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let answer = closed_within(&mut fifth, Duration::from_secs(1))
        .await
        .expect("closed at once");
    assert_eq!(answer, "", "closed without an answer");
    for stream in &mut busy {
        assert!(
            closed_within(stream, Duration::from_millis(100))
                .await
                .is_none(),
            "the uploads in progress are left alone"
        );
    }
}
