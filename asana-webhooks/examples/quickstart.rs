//! The whole webhook lifecycle in one run, with no Asana account needed.
//!
//! ```sh
//! cargo run -p asana-webhooks --example quickstart --features sandbox
//! ```
//!
//! It starts the embedded Asana sandbox and a receiver that commits every
//! verified delivery to an on-disk inbox before answering 200, creates a
//! webhook through the handshake, triggers events and shows them arriving
//! verified (each acknowledged once printed),
//! lists webhooks page by page, updates the filters, shows the delivery
//! bookkeeping after a failed delivery, and deletes everything.
//!
//! Against real Asana, give a token, a workspace, a resource and a public
//! HTTPS URL that forwards to `LISTEN` (Asana refuses localhost targets):
//!
//! ```sh
//! ASANA_TOKEN=0/… ASANA_WORKSPACE=1331 ASANA_RESOURCE=1204519866405712 \
//! ASANA_TARGET=https://hooks.example.com/quickstart LISTEN=0.0.0.0:8080 \
//! cargo run -p asana-webhooks --example quickstart --features sandbox
//! ```
//! Events cannot be triggered from here then: change the resource in Asana
//! while the example waits for them.

use std::time::Duration;

use asana_webhooks::inbox::{FileInbox, Inbox};
use asana_webhooks::receiver::Receiver;
use asana_webhooks::sandbox::{EmittedEvent, Sandbox, seed};
use asana_webhooks::secrets::{MemorySecretStore, SecretStore};
use asana_webhooks::types::{WebhookFilter, WebhookListOptField, WebhookOptField};
use asana_webhooks::{Client, HandshakeExt};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

/// Prints events from the inbox, acknowledging each once printed, until
/// `count` arrived or `wait` passed.
async fn show_events(inbox: &FileInbox, count: usize, wait: Duration) -> Result<usize> {
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + wait;
    while seen < count {
        let Ok(Some(item)) = tokio::time::timeout_at(deadline, inbox.next()).await else {
            break;
        };
        match item.event() {
            Ok(event) => {
                let change = event
                    .change
                    .as_ref()
                    .map(|c| format!(" ({} changed)", c.field))
                    .unwrap_or_default();
                println!(
                    "    verified event at {}: {} {} {}{change}",
                    item.target(),
                    event.action,
                    event.resource.resource_type,
                    event.resource.gid
                );
            }
            Err(drifted) => println!("    verified event kept as sent: {}", drifted.raw),
        }
        item.ack().await?;
        seen += 1;
    }
    Ok(seen)
}

/// Where the API and the target are: the embedded sandbox, or real Asana.
struct Setup {
    client: Client,
    workspace: String,
    resource: String,
    target: String,
    sandbox: Option<Sandbox>,
}

async fn setup(receiver_url: &str) -> Result<Setup> {
    if let (Ok(token), Ok(workspace), Ok(resource), Ok(target)) = (
        std::env::var("ASANA_TOKEN"),
        std::env::var("ASANA_WORKSPACE"),
        std::env::var("ASANA_RESOURCE"),
        std::env::var("ASANA_TARGET"),
    ) {
        println!("using Asana at {}", asana_webhooks::DEFAULT_BASE_URL);
        return Ok(Setup {
            client: Client::new(token)?,
            workspace,
            resource,
            target,
            sandbox: None,
        });
    }
    // One sandbox hour per real second, so retries and heartbeats show up.
    let sandbox = Sandbox::builder()
        .time_scale(3600.0)
        .start("127.0.0.1:0")
        .await?;
    println!(
        "embedded Asana sandbox at {}\n{}",
        sandbox.base_url(),
        indent(seed::SUMMARY)
    );
    let client = Client::builder()
        .token("sandbox-token")
        .base_url(sandbox.base_url())
        .build()?;
    Ok(Setup {
        client,
        workspace: seed::WORKSPACE.into(),
        resource: seed::PROJECT.into(),
        target: format!("{receiver_url}/hooks/project?tenant=quickstart"),
        sandbox: Some(sandbox),
    })
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

fn emit(
    sandbox: Option<&Sandbox>,
    resource: &str,
    action: &str,
    parent: Option<&str>,
    field: Option<&str>,
) {
    if let Some(sandbox) = sandbox {
        let event = EmittedEvent {
            resource: resource.into(),
            action: action.into(),
            parent: parent.map(Into::into),
            field: field.map(Into::into),
        };
        let queued = sandbox.emit(event).expect("seeded resources");
        println!(
            "    triggered: {action} on {resource} (queued for {} webhook(s))",
            queued.len()
        );
    }
}

#[tokio::main]
async fn main() -> Result {
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:0".into());
    let store = MemorySecretStore::new();
    let dir = tempfile::tempdir()?;
    let inbox = FileInbox::open(dir.path().join("quickstart-inbox.redb")).await?;
    let receiver = Receiver::builder(store.clone()).build_with_inbox(inbox.clone());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let receiver_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(receiver.serve(listener, std::future::pending()));

    step(1, "Start the API and a receiver");
    let Setup {
        client,
        workspace,
        resource,
        target,
        sandbox,
    } = setup(&receiver_url).await?;
    println!("    receiver listening at {receiver_url}");

    step(2, "Create a webhook through the X-Hook-Secret handshake");
    let created = client
        .create_webhook_with_handshake(&store, &resource, &target)
        .send()
        .await?;
    let gid = created.webhook.gid.clone().unwrap_or_default();
    println!("    created webhook {gid} on {resource} -> {target}");
    println!(
        "    secret stored for that target: {:?}",
        store.by_gid(&gid).await?.map(|r| r.secret)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (webhook, at) in inbox.stats().await?.last_heartbeats {
        match webhook.as_str() {
            // Asana's first heartbeat comes before its 201 answer names the webhook.
            "-" => println!("    verified heartbeat at {at}, signed with the secret still pending"),
            _ => println!("    verified heartbeat of webhook {webhook} at {at}"),
        }
    }

    step(3, "Trigger events and watch them arrive verified");
    emit(
        sandbox.as_ref(),
        seed::TASK,
        "changed",
        None,
        Some("due_on"),
    );
    emit(
        sandbox.as_ref(),
        seed::TASK,
        "added",
        Some(seed::PROJECT),
        None,
    );
    let wait = if sandbox.is_some() {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(60)
    };
    let seen = show_events(&inbox, 2, wait).await?;
    println!("    {seen} event(s) verified and handed to this program");

    step(4, "List webhooks page by page");
    let second = if sandbox.is_some() {
        let other = client
            .create_webhook_with_handshake(&store, seed::TASK, format!("{receiver_url}/hooks/task"))
            .send()
            .await?;
        other.webhook.gid
    } else {
        None
    };
    let mut page = client.get_webhooks(&workspace).limit(1).send().await?;
    let mut number = 1;
    loop {
        for webhook in &page.items {
            println!(
                "    page {number}: {} -> {}",
                webhook.gid.as_deref().unwrap_or("?"),
                webhook.target.as_deref().unwrap_or("?")
            );
        }
        let Some(offset) = page.next_offset().map(str::to_string) else {
            break;
        };
        println!("    next_page.offset = {offset}");
        page = client
            .get_webhooks(&workspace)
            .limit(1)
            .offset(offset)
            .send()
            .await?;
        number += 1;
    }
    let all = client
        .get_webhooks(&workspace)
        .opt_fields([WebhookListOptField::Active])
        .collect_all()
        .await?;
    println!(
        "    the stream over every page found {} webhook(s)",
        all.len()
    );

    step(5, "Update the filters: only due-date changes on tasks");
    let updated = client
        .update_webhook(&gid)
        .filters([WebhookFilter::new("task", "changed").with_fields(["due_on"])])
        .opt_fields([WebhookOptField::Filters])
        .send()
        .await?;
    println!("    filters now: {:?}", updated.filters);
    emit(sandbox.as_ref(), seed::TASK, "changed", None, Some("name"));
    emit(
        sandbox.as_ref(),
        seed::TASK,
        "changed",
        None,
        Some("due_on"),
    );
    let seen = show_events(&inbox, 2, Duration::from_secs(2)).await?;
    println!(
        "    {seen} event(s) delivered: the project webhook now gets due_on changes only, the task webhook (no filters) gets both"
    );

    if let (Some(sandbox), Some(second)) = (&sandbox, &second) {
        step(6, "A failed delivery and Asana's bookkeeping");
        // Forget the second webhook's secret: the receiver now refuses its
        // deliveries with 401, as it would a forged one.
        store.remove_gid(second).await?;
        emit(Some(sandbox), seed::TASK, "deleted", None, None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let webhook = client
            .get_webhook(second)
            .opt_fields([
                WebhookOptField::LastSuccessAt,
                WebhookOptField::LastFailureAt,
                WebhookOptField::LastFailureContent,
                WebhookOptField::DeliveryRetryCount,
                WebhookOptField::NextAttemptAfter,
                WebhookOptField::FailureDeletionTimestamp,
            ])
            .send()
            .await?;
        println!("    webhook {second}:");
        println!(
            "      last_success_at            {:?}",
            webhook.last_success_at
        );
        println!(
            "      last_failure_at            {:?}",
            webhook.last_failure_at
        );
        println!(
            "      last_failure_content       {:?}",
            webhook
                .last_failure_content
                .as_deref()
                .map(|c| c.lines().next().unwrap_or(""))
        );
        println!(
            "      delivery_retry_count       {:?}",
            webhook.delivery_retry_count
        );
        println!(
            "      next_attempt_after         {:?}",
            webhook.next_attempt_after
        );
        println!(
            "      failure_deletion_timestamp {:?}",
            webhook.failure_deletion_timestamp
        );
        show_events(&inbox, 1, Duration::from_millis(300)).await?;
        client.delete_webhook(second).send().await?;
        println!("    deleted webhook {second}");
    }

    step(7, "Delete the webhook");
    client.delete_webhook(&gid).send().await?;
    store.remove_gid(&gid).await?;
    let left = client.get_webhooks(&workspace).collect_all().await?;
    println!("    deleted webhook {gid}; {} webhook(s) left", left.len());
    println!("\ndone");
    Ok(())
}
