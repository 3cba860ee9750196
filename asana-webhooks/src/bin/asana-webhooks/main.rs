//! `asana-webhooks`: manage and receive Asana webhooks from the shell.
//!
//! Exit codes: 0 success, 1 Asana answered an error, 2 bad usage,
//! 3 Asana could not be reached, 4 anything else (secret store, I/O).

mod args;
mod print;

use std::process::ExitCode;

use asana_webhooks::inbox::{DEFAULT_MAX_BYTES, FileInbox, Inbox};
use asana_webhooks::postgres::{self, PostgresInbox, PostgresSecretStore};
use asana_webhooks::receiver::Receiver;
use asana_webhooks::sandbox::{Sandbox, seed};
use asana_webhooks::secrets::FileSecretStore;
use asana_webhooks::secrets::SecretStore;
use asana_webhooks::types::{WebhookListOptField, WebhookOptField};
use asana_webhooks::{Client, Error, HandshakeExt, RetryPolicy};
use clap::Parser;

use args::{Cli, Command, InboxArgs, Listen, default_inbox};

/// A failure with what to tell the user and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::Api(_) => 1,
            Error::InvalidRequest(_) | Error::Config(_) => 2,
            Error::Transport(_) => 3,
            _ => 4,
        };
        let mut message = error.to_string();
        if let Some(api) = error.as_api()
            && api.status() == reqwest::StatusCode::FORBIDDEN
            && !api.is_duplicate_webhook()
        {
            message.push_str(
                "\nnote: Asana refuses targets on localhost or private hosts; use a public HTTPS URL, or `asana-webhooks sandbox` to work locally",
            );
        }
        Failure { code, message }
    }
}

fn other(message: impl std::fmt::Display) -> Failure {
    Failure {
        code: 4,
        message: message.to_string(),
    }
}

const WEBHOOK_FIELDS: [WebhookOptField; 10] = [
    WebhookOptField::Active,
    WebhookOptField::CreatedAt,
    WebhookOptField::Filters,
    WebhookOptField::LastSuccessAt,
    WebhookOptField::LastFailureAt,
    WebhookOptField::LastFailureContent,
    WebhookOptField::DeliveryRetryCount,
    WebhookOptField::NextAttemptAfter,
    WebhookOptField::FailureDeletionTimestamp,
    WebhookOptField::ResourceName,
];

fn client(cli: &Cli) -> Result<Client, Failure> {
    let Some(token) = cli.token.clone().filter(|t| !t.trim().is_empty()) else {
        return Err(Failure {
            code: 2,
            message: "no token: pass --token or set ASANA_TOKEN".into(),
        });
    };
    Ok(Client::builder()
        .token(token)
        .base_url(&cli.base_url)
        .retry_policy(RetryPolicy::default().max_attempts(cli.max_attempts))
        .build()?)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::List {
            workspace,
            resource,
            output,
        } => {
            let client = client(&cli)?;
            let mut request = client.get_webhooks(workspace).opt_fields([
                WebhookListOptField::Active,
                WebhookListOptField::Filters,
                WebhookListOptField::LastFailureAt,
            ]);
            if let Some(resource) = resource {
                request = request.resource(resource);
            }
            print::webhooks(&request.collect_all().await?, *output);
        }
        Command::Get { gid, output } => {
            let webhook = client(&cli)?
                .get_webhook(gid)
                .opt_fields(WEBHOOK_FIELDS)
                .send()
                .await?;
            print::webhook(&webhook, *output);
        }
        Command::Create {
            resource,
            target,
            filters,
            output,
        } => {
            let created = client(&cli)?
                .create_webhook(resource, target)
                .filters(filters.clone())
                .opt_fields(WEBHOOK_FIELDS)
                .send()
                .await?;
            print::created(&created, *output);
        }
        Command::Update {
            gid,
            filters,
            clear_filters,
            output,
        } => {
            let client = client(&cli)?;
            let request = client.update_webhook(gid).opt_fields(WEBHOOK_FIELDS);
            let request = if *clear_filters {
                request.clear_filters()
            } else {
                request.filters(filters.clone())
            };
            print::webhook(&request.send().await?, *output);
        }
        Command::Delete { gid } => {
            client(&cli)?.delete_webhook(gid).send().await?;
            println!("deleted webhook {gid}");
        }
        Command::Listen(listen) => self::listen(&cli, listen).await?,
        Command::Inbox(args) => show_inbox(args).await?,
        Command::Sandbox { addr, time_scale } => {
            let sandbox = Sandbox::builder()
                .time_scale(*time_scale)
                .start(addr)
                .await
                .map_err(other)?;
            println!(
                "Asana sandbox listening; use --base-url {}",
                sandbox.base_url()
            );
            println!("seeded objects:\n{}", seed::SUMMARY);
            tokio::select! {
                _ = sandbox.wait() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Command::Trigger {
            resource,
            action,
            parent,
            field,
        } => {
            let origin = cli
                .base_url
                .trim_end_matches('/')
                .trim_end_matches("/api/1.0");
            let body = serde_json::json!({"resource": resource, "action": action, "parent": parent, "field": field});
            let response = reqwest::Client::new()
                .post(format!("{origin}/sandbox/events"))
                .json(&body)
                .send()
                .await
                .map_err(|e| Failure {
                    code: 3,
                    message: format!("could not reach the sandbox at {origin}: {e}"),
                })?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(Failure {
                    code: 1,
                    message: format!("the sandbox answered {status}: {text}"),
                });
            }
            println!("{text}");
        }
    }
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn listen(cli: &Cli, args: &Listen) -> Result<(), Failure> {
    let lease = std::time::Duration::from_secs(args.lease_seconds.max(1));
    match &args.database_url {
        Some(url) => {
            let pool = postgres::connect(url).await.map_err(other)?;
            postgres::migrate(&pool).await.map_err(other)?;
            let store = PostgresSecretStore::new(pool.clone());
            let inbox = PostgresInbox::with_limits(pool, url, lease, postgres::DEFAULT_MAX_EVENTS)
                .map_err(other)?;
            serve_and_print(cli, args, store, inbox, "postgresql".into()).await
        }
        None => {
            let store = FileSecretStore::open(&args.secrets).await.map_err(other)?;
            let inbox = FileInbox::open_with_limits(args.inbox_path(), lease, DEFAULT_MAX_BYTES)
                .await
                .map_err(other)?;
            let location = inbox.path().display().to_string();
            serve_and_print(cli, args, store, inbox, location).await
        }
    }
}

async fn serve_and_print<S: SecretStore, I: Inbox>(
    cli: &Cli,
    args: &Listen,
    store: S,
    inbox: I,
    location: String,
) -> Result<(), Failure> {
    let receiver = Receiver::builder(store.clone()).build_with_inbox(inbox.clone());
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(other)?;
    tracing::info!(addr = %listener.local_addr().map_err(other)?, inbox = %location, "listening");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut server_stopped = stopped.clone();
    let server = tokio::spawn(receiver.serve(listener, async move {
        let _ = server_stopped.wait_for(|stop| *stop).await;
    }));
    tokio::spawn(async move {
        stop_signal().await;
        let _ = stop.send(true);
    });
    let printer = tokio::spawn(print_events(inbox.clone(), stopped.clone()));

    if let Some(target) = &args.target {
        let client = client(cli)?;
        for resource in &args.resources {
            let mut create = client
                .create_webhook_with_handshake(&store, resource, target)
                .filters(args.filters.clone());
            if let Some(workspace) = &args.workspace {
                create = create.workspace(workspace);
            }
            let ensured = create.ensure().await?;
            let gid = ensured.webhook.gid.unwrap_or_default();
            print::json_line(
                &serde_json::json!({"webhook_gid": gid, "resource": resource, "created": ensured.created}),
            );
            tracing::info!(%gid, %resource, "webhook ready");
        }
    }
    // Stop accepting, answer the requests in flight (each committed and
    // 200, or not and 5xx), then stop printing and close the inbox.
    let _ = server.await;
    let printed = printer.await;
    inbox.close();
    match printed {
        Ok(result) => result,
        Err(e) => Err(other(e)),
    }
}

/// Prints each event as a JSON line and acknowledges it once the line is
/// written and flushed; stops between events when told to.
async fn print_events<I: Inbox>(
    inbox: I,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Failure> {
    loop {
        let item = tokio::select! {
            item = inbox.next() => item,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let Some(item) = item else { break };
        let mut line = serde_json::json!({
            "id": item.id(),
            "target": item.target(),
            "webhook_gid": item.webhook_gid(),
            "attempt": item.attempt(),
        });
        match item.event() {
            Ok(event) => line["event"] = serde_json::to_value(event).map_err(other)?,
            Err(undecoded) => {
                line["undecoded"] = undecoded.raw;
                line["error"] = undecoded.error.into();
            }
        }
        print::json_line_flushed(&line).map_err(other)?;
        item.ack().await.map_err(other)?;
    }
    Ok(())
}

async fn show_inbox(args: &InboxArgs) -> Result<(), Failure> {
    let inbox = FileInbox::open(default_inbox(args.inbox.as_ref(), &args.secrets))
        .await
        .map_err(other)?;
    if let Some(which) = &args.redrive {
        let moved = inbox
            .redrive_dead_letters(which.clone())
            .await
            .map_err(other)?;
        eprintln!("{moved} dead letters moved back to the waiting events");
    }
    if let Some(which) = &args.purge {
        let purged = inbox
            .purge_dead_letters(which.clone())
            .await
            .map_err(other)?;
        eprintln!("{purged} dead letters purged");
    }
    let stats = inbox.stats().await.map_err(other)?;
    if args.print {
        for (id, webhook_gid, received_at, raw) in inbox.stored() {
            let event: serde_json::Value =
                serde_json::from_str(&raw).unwrap_or(serde_json::Value::String(raw));
            print::json_line(
                &serde_json::json!({"id": id, "webhook_gid": webhook_gid, "received_at": received_at, "event": event}),
            );
        }
    }
    if args.dead_letters {
        for dead in inbox.dead_letters().await.map_err(other)? {
            let mut line = serde_json::to_value(&dead).map_err(other)?;
            // The event as JSON, as `--print` shows it.
            line["event"] =
                serde_json::from_str(&dead.raw).unwrap_or(serde_json::Value::String(dead.raw));
            if let Some(line) = line.as_object_mut() {
                line.remove("raw");
            }
            print::json_line(&line);
        }
    }
    if args.print || args.dead_letters {
        // The lines alone.
    } else if args.output.json {
        print::json_line(&serde_json::to_value(&stats).map_err(other)?);
    } else {
        println!(
            "{} waiting ({} retrying after a failure), {} in flight, {} bytes",
            stats.waiting, stats.retrying, stats.in_flight, stats.bytes
        );
        println!(
            "dead letters: {}{}",
            stats.dead_letters,
            if stats.dead_letters > 0 {
                " (list them with --dead-letters; --redrive or --purge them)"
            } else {
                ""
            }
        );
        println!(
            "oldest: {}",
            stats.oldest.map_or("-".to_string(), |t| t.to_rfc3339())
        );
        println!("duplicates dropped: {}", stats.duplicates_dropped);
        for (gid, count) in &stats.per_webhook {
            println!("webhook {gid}: {count} waiting");
        }
        for (gid, at) in &stats.last_heartbeats {
            println!("webhook {gid}: last heartbeat {}", at.to_rfc3339());
        }
    }
    inbox.close();
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
