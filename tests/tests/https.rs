//! HTTPS works out of the box (rustls): a local TLS server with a
//! self-signed certificate that the test trusts, and one it does not.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use asana_webhooks::{Client, Error, RetryPolicy};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Serves HTTPS on 127.0.0.1 for `localhost`; returns the port, the
/// certificate in PEM, and the Authorization headers it saw.
async fn tls_server() -> (u16, String, Arc<Mutex<Vec<String>>>) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = generated.cert.pem();
    let cert = CertificateDer::from(generated.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, log) = (acceptor.clone(), Arc::clone(&log));
            tokio::spawn(async move {
                // A refused handshake (the untrusting client) ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let auth = request
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    log.lock().unwrap().push(format!(
                        "{} {} {auth}",
                        request.method(),
                        request.uri().path()
                    ));
                    async move {
                        let body =
                            r#"{"data":{"gid":"123","resource_type":"webhook","active":true}}"#;
                        let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
                        response
                            .headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, cert_pem, seen)
}

#[tokio::test]
async fn https_to_a_trusted_local_server_works() {
    let (port, pem, seen) = tls_server().await;
    let client = Client::builder()
        .token("tls-test-token")
        .base_url(format!("https://localhost:{port}"))
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let webhook = client.get_webhook("123").send().await.unwrap();
    assert_eq!(webhook.gid.as_deref(), Some("123"));
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["GET /webhooks/123 Bearer tls-test-token"]
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let (port, _pem, seen) = tls_server().await;
    let client = Client::builder()
        .token("tls-test-token")
        .base_url(format!("https://localhost:{port}"))
        .retry_policy(RetryPolicy::none())
        .build()
        .unwrap();
    let err = client.get_webhook("123").send().await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    let text = err.to_string().to_lowercase();
    assert!(text.contains("certificate"), "{text}");
    assert!(seen.lock().unwrap().is_empty(), "no request got through");
}
