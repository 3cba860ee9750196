//! OAuth token sources: a client on a refresh token keeps working while
//! access tokens expire, refreshes once after a 401, shares one refresh
//! between concurrent requests, and fails with a typed error that names no
//! secret. Against the embedded sandbox's token endpoint (and a scripted
//! server for a second 401), all on 127.0.0.1.

use std::time::Duration;

use asana_webhooks::sandbox::{Sandbox, seed};
use asana_webhooks::{AuthError, Client, Error, OAuthRefresh};
use httpmock::prelude::*;
use serde_json::json;

const CLIENT_ID: &str = "1204519866405712";
const CLIENT_SECRET: &str = "app-secret-Zq81xT";
const REFRESH_TOKEN: &str = "1/refresh-Pm40kW";

async fn sandbox(builder: asana_webhooks::sandbox::SandboxBuilder) -> Sandbox {
    builder
        .oauth(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
        .start("127.0.0.1:0")
        .await
        .unwrap()
}

fn client_with_secret(sandbox: &Sandbox, secret: &str) -> Client {
    Client::builder()
        .base_url(sandbox.base_url())
        .oauth(OAuthRefresh::new(CLIENT_ID, secret, REFRESH_TOKEN).token_url(sandbox.token_url()))
        .build()
        .unwrap()
}

fn client(sandbox: &Sandbox) -> Client {
    client_with_secret(sandbox, CLIENT_SECRET)
}

/// Neither the secrets nor any access token the sandbox issues.
fn assert_no_secret(text: &str) {
    for secret in [
        CLIENT_SECRET,
        REFRESH_TOKEN,
        "Zq81xT",
        "Pm40kW",
        "sandbox-access-",
    ] {
        assert!(!text.contains(secret), "`{secret}` shown in: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_working_over_several_token_lifetimes() {
    // An hour of sandbox time passes every three real seconds: each access
    // token lasts 3 s (`expires_in: 3`), and the client replaces it halfway,
    // so no request ever carries an expired one. Six and a half real
    // seconds are more than two sandbox hours.
    let sandbox = sandbox(Sandbox::builder().time_scale(1200.0)).await;
    let client = client(&sandbox);
    let start = std::time::Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_millis(6500) {
        client
            .get_webhooks(seed::WORKSPACE)
            .send()
            .await
            .unwrap_or_else(|e| panic!("call {calls} after {:?}: {e}", start.elapsed()));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counts = sandbox.oauth_counts();
    assert!(calls >= 20, "{calls} calls");
    // Tokens at about 0, 1.5, 3, 4.5 and 6 s, each before the last expired.
    assert!(
        (4..=7).contains(&counts.issued),
        "{counts:?} over {calls} calls"
    );
    assert_eq!(counts.refused_tokens, 0, "{counts:?}");
    assert_eq!(counts.refused_grants, 0, "{counts:?}");
}

#[tokio::test]
async fn a_token_expired_at_the_sandbox_gets_one_refresh_and_the_call_succeeds() {
    let sandbox = sandbox(Sandbox::builder()).await;
    let client = client(&sandbox);
    client.get_webhooks(seed::WORKSPACE).send().await.unwrap();
    assert_eq!(sandbox.oauth_counts().issued, 1);

    sandbox.expire_access_tokens();
    client.get_webhooks(seed::WORKSPACE).send().await.unwrap();
    let counts = sandbox.oauth_counts();
    assert_eq!((counts.issued, counts.refused_tokens), (2, 1), "{counts:?}");

    // The new token stays in use.
    client.get_webhooks(seed::WORKSPACE).send().await.unwrap();
    assert_eq!(sandbox.oauth_counts().issued, 2);
}

#[tokio::test]
async fn a_wrong_client_secret_is_an_auth_error_that_names_no_secret() {
    let sandbox = sandbox(Sandbox::builder()).await;
    let client = client_with_secret(&sandbox, "wrong-secret-Zq81xT");
    let error = client
        .get_webhooks(seed::WORKSPACE)
        .send()
        .await
        .unwrap_err();
    let Error::Auth(AuthError::Refused { code, .. }) = &error else {
        panic!("expected a refused refresh: {error:?}");
    };
    assert_eq!(code, "invalid_client");
    assert!(!error.is_retryable());
    let display = error.to_string();
    assert!(display.contains("client secret"), "{display}");
    assert_no_secret(&display);
    assert_no_secret(&format!("{error:?}"));
    assert_no_secret(&format!("{client:?}"));
    assert_no_secret(&format!(
        "{:?}",
        OAuthRefresh::new(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
    ));
    // Nothing reached the API without a token.
    let counts = sandbox.oauth_counts();
    assert_eq!(
        (counts.issued, counts.refused_grants, counts.refused_tokens),
        (0, 1, 0)
    );
}

#[tokio::test]
async fn a_revoked_refresh_token_is_an_auth_error_saying_to_authorize_again() {
    let sandbox = sandbox(Sandbox::builder()).await;
    let client = client(&sandbox);
    client.get_webhooks(seed::WORKSPACE).send().await.unwrap();

    sandbox.revoke_refresh_token();
    let error = client
        .get_webhooks(seed::WORKSPACE)
        .send()
        .await
        .unwrap_err();
    let Error::Auth(auth) = &error else {
        panic!("expected an auth error: {error:?}");
    };
    assert_eq!(auth.oauth_error(), Some("invalid_grant"));
    let display = error.to_string();
    assert!(display.contains("authorize the app again"), "{display}");
    assert_no_secret(&display);
    assert_no_secret(&format!("{error:?}"));
    // The 401, one refresh attempt, and no second try of the request.
    let counts = sandbox.oauth_counts();
    assert_eq!(
        (counts.issued, counts.refused_grants, counts.refused_tokens),
        (1, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_refresh() {
    let sandbox = sandbox(Sandbox::builder()).await;
    let client = client(&sandbox);
    let batch = || {
        futures::future::join_all(
            (0..20).map(|_| async { client.get_webhooks(seed::WORKSPACE).send().await }),
        )
    };

    // The first token: one grant for twenty requests.
    for result in batch().await {
        result.unwrap();
    }
    assert_eq!(sandbox.oauth_counts().issued, 1);

    // All twenty see their token refused; one refresh serves them all.
    sandbox.expire_access_tokens();
    for result in batch().await {
        result.unwrap();
    }
    let counts = sandbox.oauth_counts();
    assert_eq!(counts.issued, 2, "{counts:?}");
    assert!((1..=20).contains(&counts.refused_tokens), "{counts:?}");
}

/// A token endpoint that takes 300 ms per grant, so that requests started
/// together are all waiting while the first grant is in flight.
async fn slow_token_endpoint(
    server: &MockServer,
    status: u16,
    body: serde_json::Value,
) -> httpmock::Mock<'_> {
    server
        .mock_async(|when, then| {
            when.method(POST).path("/-/oauth_token");
            then.status(status)
                .delay(Duration::from_millis(300))
                .header("content-type", "application/json")
                .json_body(body);
        })
        .await
}

fn client_of(server: &MockServer) -> Client {
    Client::builder()
        .base_url(server.url("/api/1.0"))
        .oauth(
            OAuthRefresh::new(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
                .token_url(server.url("/-/oauth_token")),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn concurrent_requests_wait_for_one_slow_grant() {
    let server = MockServer::start_async().await;
    let grant = slow_token_endpoint(
        &server,
        200,
        json!({"access_token": "2/access", "token_type": "bearer", "expires_in": 3600}),
    )
    .await;
    let api = server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/api/1.0/webhooks/1")
                .header("authorization", "Bearer 2/access");
            then.status(200)
                .header("content-type", "application/json")
                .json_body(json!({"data": {"gid": "1", "resource_type": "webhook"}}));
        })
        .await;
    let client = client_of(&server);
    let results = futures::future::join_all((0..20).map(|_| client.get_webhook("1").send())).await;
    for result in results {
        result.unwrap();
    }
    assert_eq!(grant.calls_async().await, 1);
    assert_eq!(api.calls_async().await, 20);
}

#[tokio::test]
async fn concurrent_requests_share_one_failed_grant() {
    let server = MockServer::start_async().await;
    let grant = slow_token_endpoint(
        &server,
        401,
        json!({"error": "invalid_client", "error_description": "The client secret is wrong."}),
    )
    .await;
    let client = client_of(&server);
    let results = futures::future::join_all((0..10).map(|_| client.get_webhook("1").send())).await;
    for result in results {
        let error = result.unwrap_err();
        let Error::Auth(auth) = &error else {
            panic!("expected an auth error: {error:?}");
        };
        assert_eq!(auth.oauth_error(), Some("invalid_client"));
    }
    assert_eq!(grant.calls_async().await, 1);
}

#[tokio::test]
async fn a_second_401_after_a_refresh_is_the_api_error_with_a_hint() {
    let server = MockServer::start_async().await;
    let grant = server
        .mock_async(|when, then| {
            when.method(POST)
                .path("/-/oauth_token")
                .form_urlencoded_tuple("grant_type", "refresh_token")
                .form_urlencoded_tuple("client_id", CLIENT_ID)
                .form_urlencoded_tuple("client_secret", CLIENT_SECRET)
                .form_urlencoded_tuple("refresh_token", REFRESH_TOKEN);
            then.status(200)
                .header("content-type", "application/json")
                .json_body(
                    json!({"access_token": "2/access", "token_type": "bearer", "expires_in": 3600}),
                );
        })
        .await;
    let refused = server
        .mock_async(|when, then| {
            when.method(GET)
                .path("/api/1.0/webhooks/1")
                .header("authorization", "Bearer 2/access");
            then.status(401)
                .header("content-type", "application/json")
                .json_body(json!({"errors": [{"message": "Not Authorized"}]}));
        })
        .await;
    let client = Client::builder()
        .base_url(server.url("/api/1.0"))
        .oauth(
            OAuthRefresh::new(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
                .token_url(server.url("/-/oauth_token")),
        )
        .build()
        .unwrap();
    let error = client.get_webhook("1").send().await.unwrap_err();
    let api = error.as_api().expect("the API's own 401");
    assert_eq!(api.status().as_u16(), 401);
    assert!(api.is_refused_after_refresh());
    let display = error.to_string();
    assert!(display.contains("Not Authorized"), "{display}");
    assert!(
        display.contains("the refresh token may be revoked"),
        "{display}"
    );
    // One refresh and one second try, no more.
    assert_eq!(refused.calls_async().await, 2);
    assert_eq!(grant.calls_async().await, 2);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_a_retryable_auth_error() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sandbox = sandbox(Sandbox::builder()).await;
    let client = Client::builder()
        .base_url(sandbox.base_url())
        .oauth(
            OAuthRefresh::new(CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
                .token_url(format!("http://127.0.0.1:{port}/-/oauth_token")),
        )
        .build()
        .unwrap();
    let error = client
        .get_webhooks(seed::WORKSPACE)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::Auth(AuthError::Unreachable { .. })),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_no_secret(&error.to_string());
    assert_no_secret(&format!("{error:?}"));
}

#[tokio::test]
async fn without_an_oauth_app_the_sandbox_takes_any_bearer_token() {
    let sandbox = Sandbox::builder().start("127.0.0.1:0").await.unwrap();
    let client = Client::builder()
        .token("any-token")
        .base_url(sandbox.base_url())
        .build()
        .unwrap();
    client.get_webhooks(seed::WORKSPACE).send().await.unwrap();
    // With an OAuth app, a token it did not issue is refused.
    let strict = sandbox_with_app().await;
    let error = Client::builder()
        .token("any-token")
        .base_url(strict.base_url())
        .build()
        .unwrap()
        .get_webhooks(seed::WORKSPACE)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(401));
}

async fn sandbox_with_app() -> Sandbox {
    sandbox(Sandbox::builder()).await
}
