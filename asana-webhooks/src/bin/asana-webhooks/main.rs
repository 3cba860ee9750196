//! `asana-webhooks`: manage and receive Asana webhooks from the shell.
//!
//! Exit codes: 0 success, 1 Asana answered an error, 2 bad usage,
//! 3 Asana could not be reached, 4 anything else (secret store, I/O),
//! 5 `events`: the sync token expired (a gap).

mod args;
mod metrics_server;
mod print;

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use asana_webhooks::inbox::{DEFAULT_MAX_BYTES, FileInbox, Inbox, MemoryInbox};
use asana_webhooks::postgres::{self, PostgresInbox, PostgresSecretStore};
use asana_webhooks::receiver::Receiver;
use asana_webhooks::sandbox::{Sandbox, seed};
use asana_webhooks::secrets::FileSecretStore;
use asana_webhooks::secrets::TargetKey;
use asana_webhooks::secrets::{RecoveryStore, SecretStore};
use asana_webhooks::types::{WebhookListOptField, WebhookOptField};
use asana_webhooks::{Client, Error, HandshakeError, HandshakeExt, RetryPolicy};
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
        Command::Status {
            workspace,
            resource,
            secrets,
            output,
        } => {
            let client = client(&cli)?;
            let store = FileSecretStore::open(secrets).await.map_err(other)?;
            // The targets of the workspace's webhooks (on the resource):
            // each listed webhook is reported, unknown secret when this
            // store cannot verify it.
            let mut request = client.get_webhooks(workspace);
            if let Some(resource) = resource {
                request = request.resource(resource);
            }
            let mut targets: Vec<TargetKey> = request
                .collect_all()
                .await?
                .iter()
                .filter_map(|w| w.target.as_deref())
                .filter_map(|t| TargetKey::from_url(t).ok())
                .collect();
            targets.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            targets.dedup();
            let mut report = asana_webhooks::watch::check::<_, MemoryInbox>(
                &client,
                workspace,
                &store,
                &targets,
                None,
                &Default::default(),
            )
            .await?;
            if let Some(resource) = resource {
                report
                    .webhooks
                    .retain(|w| w.resource.as_deref() == Some(resource.as_str()));
            }
            let gaps = store.gaps().await.map_err(other)?;
            print::health(&report, &gaps, *output);
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
        Command::Events {
            resource,
            since_token,
        } => events(&cli, resource, since_token.as_deref()).await?,
        Command::Listen(listen) => self::listen(&cli, listen).await?,
        Command::Inbox(args) => show_inbox(args).await?,
        Command::Sandbox {
            addr,
            time_scale,
            drop_deliveries,
            drop_seed,
        } => {
            let mut builder = Sandbox::builder()
                .time_scale(*time_scale)
                .drop_deliveries(*drop_deliveries);
            if let Some(seed) = drop_seed {
                builder = builder.drop_seed(*seed);
            }
            let sandbox = builder.start(addr).await.map_err(other)?;
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
/// SIGINT (Ctrl-C) and SIGTERM, registered at once: a signal that comes
/// any time after this returns is a clean stop, never the default death.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

async fn listen(cli: &Cli, args: &Listen) -> Result<(), Failure> {
    let lease = Duration::from_secs(args.lease_seconds.max(1));
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

/// How long a stop lets the deliveries in flight finish: those not
/// answered by then get no answer, and Asana delivers them again.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How long a create whose answer is late goes on in the background after
/// `ensure()` stopped waiting for it.
const SETTLE_TIME: Duration = Duration::from_secs(120);

/// Beyond the settle time: the lookup of a webhook whose create got no
/// answer at all.
const LOOKUP_MARGIN: Duration = Duration::from_secs(30);

async fn serve_and_print<S: SecretStore + RecoveryStore, I: Inbox>(
    cli: &Cli,
    args: &Listen,
    store: S,
    inbox: I,
    location: String,
) -> Result<(), Failure> {
    // Installed first, so that the webhooks' creation is counted too.
    let metrics = match &args.metrics_addr {
        Some(addr) => {
            let handle = metrics_server::install().map_err(other)?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| other(format!("--metrics-addr {addr}: {e}")))?;
            Some((handle, listener))
        }
        None => None,
    };
    // Before the socket accepts anything: from then on a signal stops cleanly.
    let signal = stop_signal().map_err(other)?;
    let receiver = Receiver::builder(store.clone()).build_with_inbox(inbox.clone());
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(other)?;
    tracing::info!(addr = %listener.local_addr().map_err(other)?, inbox = %location, "listening");
    // Aborted when this function returns (the task's handle is dropped
    // only after the receiver stopped, so /readyz says so meanwhile).
    let _metrics_server = match metrics {
        Some((handle, metrics_listener)) => {
            tracing::info!(addr = %metrics_listener.local_addr().map_err(other)?, "serving /metrics, /livez and /readyz");
            Some(AbortOnDrop(metrics_server::spawn(
                metrics_listener,
                handle,
                &receiver,
                inbox.clone(),
            )))
        }
        None => None,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let mut server_stopped = stopped.clone();
    let server = tokio::spawn(receiver.serve(listener, async move {
        let _ = server_stopped.wait_for(|stop| *stop).await;
    }));
    let signalled = Arc::clone(&stop);
    tokio::spawn(async move {
        signal.await;
        tracing::debug!(target: "asana_webhooks::stop", "signal received");
        let _ = signalled.send(true);
    });
    // Standard output has a thread of its own: a reader that stops reading
    // blocks that thread, never a stop.
    let out = print::Lines::spawn().map_err(other)?;
    let mut printer = tokio::spawn(print_events(inbox.clone(), out.clone(), stopped.clone()));

    let mut late = Vec::new();
    let mut ready = Ok(());
    if let Some(target) = &args.target {
        let mut stopping = stopped.clone();
        tokio::select! {
            ensured = ensure_webhooks(cli, args, &store, target, &out, &mut late) => ready = ensured,
            _ = stopping.wait_for(|stop| *stop) => {
                tracing::warn!("stopped before every webhook was ready; start again with the same --resource, --target and --workspace");
            }
        }
    }

    // Catching up what the managed webhooks did not deliver.
    let catch_up = match &args.target {
        Some(target) if ready.is_ok() && !args.no_catch_up && args.catch_up_interval > 0 => {
            let key = TargetKey::from_url(target).map_err(other)?;
            Some(
                asana_webhooks::catchup::CatchUp::new(
                    client(cli)?,
                    store.clone(),
                    inbox.clone(),
                    vec![key],
                )
                .interval(Duration::from_secs(args.catch_up_interval))
                .spawn(),
            )
        }
        _ => None,
    };

    // The health of the webhooks it manages, each change logged to stderr.
    let watch = match (&args.target, &args.workspace) {
        (Some(target), Some(workspace)) if ready.is_ok() && args.watch_interval_seconds > 0 => {
            let key = TargetKey::from_url(target).map_err(other)?;
            let watch = asana_webhooks::watch::Watch::new(
                client(cli)?,
                workspace,
                store.clone(),
                vec![key],
            )
            .inbox(inbox.clone())
            .interval(Duration::from_secs(args.watch_interval_seconds))
            .repair(!args.no_repair)
            .replace_unknown_secrets(args.replace_unknown_secrets);
            Some(watch.spawn())
        }
        _ => None,
    };
    // A gap the watch records is caught up at once.
    let _gaps = match (&watch, &catch_up) {
        (Some(watch), Some(catch_up)) => {
            let mut repairs = watch.repairs();
            let asks = catch_up.asker();
            Some(tokio::spawn(async move {
                while let Ok(repair) = repairs.recv().await {
                    if let asana_webhooks::watch::RepairOutcome::Recreated { gap, .. } = repair {
                        asks.now(gap.resource);
                    }
                }
            }))
        }
        _ => None,
    };

    // Runs until a stop, or until printing fails (a closed pipe).
    let mut printed = None;
    if ready.is_ok() {
        let mut stopping = stopped.clone();
        tokio::select! {
            result = &mut printer => printed = Some(result),
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    }
    let _ = stop.send(true);
    // Stop accepting and answer the requests in flight (each committed and
    // 200, or not and 5xx), for a bounded time; stop printing (an event
    // whose line was not written stays in the inbox, unacknowledged).
    if tokio::time::timeout(STOP_GRACE, server).await.is_err() {
        tracing::warn!(
            "deliveries still in flight after {STOP_GRACE:?} are left unanswered; Asana delivers them again"
        );
    }
    tracing::debug!(target: "asana_webhooks::stop", "receiver stopped");
    let printed = match printed {
        Some(printed) => printed,
        // Bounded too: an event whose acknowledgement is not committed by
        // then is handed out again after a restart.
        None => match tokio::time::timeout(STOP_GRACE, &mut printer).await {
            Ok(printed) => printed,
            Err(_) => {
                printer.abort();
                tracing::warn!(
                    "printing did not stop within {STOP_GRACE:?}; events not acknowledged yet are printed again after a restart"
                );
                Ok(Ok(()))
            }
        },
    };
    tracing::debug!(target: "asana_webhooks::stop", "printing stopped");
    for (resource, watch) in late {
        if !watch.is_finished() {
            watch.abort();
            let workspace = if args.workspace.is_some() {
                ""
            } else {
                " (--workspace is needed to find it)"
            };
            tracing::warn!(
                %resource,
                "stopping while Asana's answer to the create of this webhook is still awaited, so its secret is not stored now; start again with the same --resource, --target and --workspace: the webhook, if Asana created it, is found{workspace} and its secret stored from the handshake this listener wrote down"
            );
        }
    }
    inbox.close();
    tracing::debug!(target: "asana_webhooks::stop", "inbox closed");
    ready?;
    match printed {
        Ok(result) => result,
        Err(e) => Err(other(e)),
    }
}

/// `events`: one JSON line per event since the token, the next token on
/// stderr.
async fn events(cli: &Cli, resource: &str, since: Option<&str>) -> Result<(), Failure> {
    use asana_webhooks::EventsOutcome;
    use std::io::Write;
    let client = client(cli)?;
    let mut token = since.map(str::to_string);
    let mut stdout = std::io::stdout().lock();
    // Bounded: a resource with a flood of events is read 100 pages at a
    // time; the printed token continues.
    for _ in 0..asana_webhooks::catchup::MAX_PAGES_PER_CATCH_UP {
        let mut request = client.get_events(resource);
        if let Some(token) = &token {
            request = request.sync(token);
        }
        match request.send().await? {
            EventsOutcome::SyncExpired { sync, .. } => {
                eprintln!("sync: {sync}");
                return match since {
                    None => {
                        eprintln!(
                            "the stream starts now: run again with --since-token to read what happens from here"
                        );
                        Ok(())
                    }
                    Some(_) => Err(Failure {
                        code: 5,
                        message: format!(
                            "gap: the Events API no longer accepts the token (tokens last 24 hours at most); the events of resource {resource} from the token's time to {} cannot be read; continue with the fresh token above",
                            chrono::Utc::now().to_rfc3339()
                        ),
                    }),
                };
            }
            EventsOutcome::Page(page) => {
                for event in &page.events {
                    writeln!(stdout, "{}", event.raw).map_err(other)?;
                }
                stdout.flush().map_err(other)?;
                token = Some(page.sync);
                if !page.has_more {
                    break;
                }
            }
        }
    }
    if let Some(token) = token {
        eprintln!("sync: {token}");
    }
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Creates (or finds) the webhook of each `--resource`, printing a line for
/// each one ready. A create that times out does not end the listener: its
/// background work goes on for the settle time while this listener runs,
/// and `late` gets a task that prints the webhook's line once its secret
/// is stored.
async fn ensure_webhooks<S: SecretStore>(
    cli: &Cli,
    args: &Listen,
    store: &S,
    target: &str,
    out: &print::Lines,
    late: &mut Vec<(String, tokio::task::JoinHandle<()>)>,
) -> Result<(), Failure> {
    let client = client(cli)?;
    let key = TargetKey::from_url(target).map_err(other)?;
    let timeout = Duration::from_secs(args.create_timeout_seconds.max(1));
    for resource in &args.resources {
        let known = webhooks_of(store, &key, resource).await.map_err(other)?;
        let mut create = client
            .create_webhook_with_handshake(store, resource, target)
            .filters(args.filters.clone())
            .timeout(timeout)
            .settle_time(SETTLE_TIME);
        if let Some(workspace) = &args.workspace {
            create = create.workspace(workspace);
        }
        match create.ensure().await {
            Ok(ensured) => {
                let gid = ensured.webhook.gid.unwrap_or_default();
                out.write(webhook_line(&gid, resource, ensured.created))
                    .await
                    .map_err(other)?;
                tracing::info!(%gid, %resource, "webhook ready");
            }
            Err(Error::Handshake(HandshakeError::Timeout(_))) => {
                let lookup = if args.workspace.is_some() {
                    "looked up"
                } else {
                    "looked up (which needs --workspace)"
                };
                tracing::warn!(
                    "createWebhook for resource {resource} got no answer within {timeout:?}; the listener keeps listening while the create goes on in the background for up to {SETTLE_TIME:?}: a late answer stores the secret and prints the webhook's line; without one the webhook is {lookup} and its secret stored or the webhook deleted"
                );
                let watch = watch_late_create(
                    store.clone(),
                    key.clone(),
                    resource.clone(),
                    known,
                    out.clone(),
                );
                late.push((resource.clone(), tokio::spawn(watch)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The gids of the stored webhooks of `resource` delivering to `key`.
async fn webhooks_of<S: SecretStore>(
    store: &S,
    key: &TargetKey,
    resource: &str,
) -> Result<BTreeSet<String>, asana_webhooks::secrets::StoreError> {
    Ok(store
        .secrets_for(key)
        .await?
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some(resource))
        .filter_map(|r| r.webhook_gid)
        .collect())
}

/// Waits (for the settle time and the lookup after it) until the create
/// that timed out stores a secret for `resource` that is not one of
/// `known`, and prints the webhook's line.
async fn watch_late_create<S: SecretStore>(
    store: S,
    key: TargetKey,
    resource: String,
    known: BTreeSet<String>,
    out: print::Lines,
) {
    let deadline = tokio::time::Instant::now() + SETTLE_TIME + LOOKUP_MARGIN;
    loop {
        match webhooks_of(&store, &key, &resource).await {
            Ok(gids) => {
                if let Some(gid) = gids.into_iter().find(|gid| !known.contains(gid)) {
                    tracing::info!(%gid, %resource, "webhook ready: the create that had timed out stored its secret");
                    if let Err(e) = out.write(webhook_line(&gid, &resource, true)).await {
                        tracing::warn!(error = %e, "could not print the webhook's line");
                    }
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not read the secret store"),
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(
                %resource,
                "the create that had timed out stored no secret, so no webhook of this resource delivers to this listener with a secret it knows (see the messages above); start again with the same arguments"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The line printed for a webhook that is ready.
fn webhook_line(gid: &str, resource: &str, created: bool) -> String {
    serde_json::json!({"webhook_gid": gid, "resource": resource, "created": created}).to_string()
}

/// Prints each event as a JSON line and acknowledges it once the line is
/// written and flushed; stops between events when told to, and also while
/// a line waits for a reader: that event is given back unacknowledged.
async fn print_events<I: Inbox>(
    inbox: I,
    out: print::Lines,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<(), Failure> {
    loop {
        let item = tokio::select! {
            item = inbox.next() => item,
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let Some(item) = item else { break };
        if let Err(undecoded) = item.event() {
            tracing::warn!(id = item.id(), error = %undecoded.error, "an event this tool's types do not read; printed as sent");
        }
        let line = print::event_line(&item).map_err(other)?;
        let written = tokio::select! {
            biased;
            written = out.write(line) => written,
            _ = stopped.wait_for(|stop| *stop) => {
                // Not acknowledged: handed out again after a restart (a
                // release would count the stop as a failed attempt).
                drop(item);
                break;
            }
        };
        written.map_err(other)?;
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
            print::stored_line(id, webhook_gid.as_deref(), received_at, &raw).map_err(other)?;
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    };
    // Work still running on the blocking threads (a file write, say) is
    // crash-safe by design; a stop must not wait for it without bound.
    runtime.shutdown_timeout(STOP_GRACE);
    tracing::debug!(target: "asana_webhooks::stop", "runtime shut down");
    code
}
