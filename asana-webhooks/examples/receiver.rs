//! A webhook receiver in one file.
//!
//! ```sh
//! # Listen only (secrets of webhooks created earlier are in secrets.json):
//! cargo run -p asana-webhooks --example receiver
//!
//! # Listen, and create a webhook through the handshake. Asana must be able
//! # to reach TARGET (a public HTTPS URL forwarded to LISTEN):
//! ASANA_TOKEN=0/… ASANA_RESOURCE=1204519866405712 \
//! ASANA_TARGET=https://hooks.example.com/asana/project \
//! LISTEN=0.0.0.0:8080 cargo run -p asana-webhooks --example receiver
//! ```
//!
//! Each verified event is printed as one line; Ctrl-C stops it.

use std::time::Duration;

use asana_webhooks::receiver::{Notification, Receiver};
use asana_webhooks::secrets::FileSecretStore;
use asana_webhooks::{Client, HandshakeExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let store = FileSecretStore::open("secrets.json").await?;
    let (receiver, mut notifications) = Receiver::new(store.clone());

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("receiving on http://{}", listener.local_addr()?);
    let server = tokio::spawn(receiver.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    }));

    // The create must run while the receiver is serving: Asana sends the
    // handshake before it answers.
    if let (Ok(token), Ok(resource), Ok(target)) = (
        std::env::var("ASANA_TOKEN"),
        std::env::var("ASANA_RESOURCE"),
        std::env::var("ASANA_TARGET"),
    ) {
        let client = Client::new(token)?;
        let ensured = client
            .create_webhook_with_handshake(&store, resource, target)
            .timeout(Duration::from_secs(30))
            .ensure()
            .await?;
        let verb = if ensured.created {
            "created"
        } else {
            "found existing"
        };
        println!("{verb} webhook {}", ensured.webhook.gid.unwrap_or_default());
    }

    loop {
        tokio::select! {
            notification = notifications.recv() => match notification {
                Some(Notification::Events { target, events, .. }) => {
                    for event in events {
                        println!("{target}: {} {} {}", event.action, event.resource.resource_type, event.resource.gid);
                    }
                }
                Some(Notification::Heartbeat { target, .. }) => println!("{target}: heartbeat"),
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    server.await??;
    Ok(())
}
