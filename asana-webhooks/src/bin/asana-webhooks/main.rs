//! `asana-webhooks`: manage and receive Asana webhooks from the shell.
//!
//! Exit codes: 0 success, 1 Asana answered an error, 2 bad usage,
//! 3 Asana could not be reached, 4 anything else (secret store, I/O).

mod args;
mod print;

use std::process::ExitCode;

use asana_webhooks::receiver::{Notification, Receiver};
use asana_webhooks::sandbox::{Sandbox, seed};
use asana_webhooks::secrets::FileSecretStore;
use asana_webhooks::types::{WebhookListOptField, WebhookOptField};
use asana_webhooks::{Client, Error, HandshakeExt, RetryPolicy};
use clap::Parser;

use args::{Cli, Command, Listen};

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

async fn listen(cli: &Cli, args: &Listen) -> Result<(), Failure> {
    let store = FileSecretStore::open(&args.secrets).await.map_err(other)?;
    let (receiver, mut notifications) = Receiver::new(store.clone());
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(other)?;
    tracing::info!(addr = %listener.local_addr().map_err(other)?, "listening");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(receiver.serve(listener, async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    }));
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
            let verb = if ensured.created {
                "created"
            } else {
                "reusing existing"
            };
            tracing::info!(%gid, %resource, "{verb} webhook; secret stored in {}", args.secrets.display());
        }
    }
    loop {
        tokio::select! {
            notification = notifications.recv() => match notification {
                Some(Notification::Events { target, webhook_gid, events, undecoded }) => {
                    for event in events {
                        print::json_line(&serde_json::json!({"target": target, "webhook_gid": webhook_gid, "event": event}));
                    }
                    for event in undecoded {
                        print::json_line(&serde_json::json!({"target": target, "webhook_gid": webhook_gid, "undecoded": event.raw, "error": event.error}));
                    }
                }
                Some(Notification::Heartbeat { target, webhook_gid }) => {
                    print::json_line(&serde_json::json!({"target": target, "webhook_gid": webhook_gid, "heartbeat": true}));
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    // Stop accepting, let the requests in flight finish, then exit.
    let _ = stop.send(true);
    let _ = server.await;
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
