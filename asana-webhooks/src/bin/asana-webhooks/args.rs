//! The command line's arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use asana_webhooks::inbox::Selection;
use asana_webhooks::types::WebhookFilter;

const ABOUT: &str = "Manage and receive Asana webhooks.";

const LONG_ABOUT: &str = "\
Manage and receive Asana webhooks.

Creating a webhook is a handshake: while the create request is in flight,
Asana POSTs an X-Hook-Secret header to the target, which must echo it; the
secret then signs every delivery, so `listen` creates webhooks itself and
keeps the secret. Asana refuses localhost targets: try everything locally
with `sandbox`, an Asana-compatible server on your machine.";

/// The sandbox's seeded objects, shown by `sandbox --help`.
const SANDBOX_HELP: &str = asana_webhooks::sandbox::seed::SUMMARY;

#[derive(Debug, Parser)]
#[command(name = "asana-webhooks", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// Asana personal access token or OAuth access token.
    #[arg(long, env = "ASANA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,

    /// API base URL (a sandbox prints its own).
    #[arg(long, env = "ASANA_BASE_URL", default_value = asana_webhooks::DEFAULT_BASE_URL, global = true)]
    pub base_url: String,

    /// Attempts per request: 429s, 5xx answers and refused connections are
    /// retried with backoff (1 = no retries).
    #[arg(long, env = "ASANA_MAX_ATTEMPTS", default_value_t = 5, global = true)]
    pub max_attempts: u32,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the webhooks of a workspace, every page.
    List {
        /// The workspace gid.
        #[arg(long)]
        workspace: String,
        /// Only webhooks on this resource.
        #[arg(long)]
        resource: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// The health of the webhooks of a workspace: healthy, failing, about
    /// to be deleted, silent, gone, or unknown secret (not in the secrets
    /// file), with Asana's delivery bookkeeping; then the gaps recorded in
    /// the secrets file (when nothing was delivered, and whether it was
    /// caught up).
    Status {
        /// The workspace gid.
        #[arg(long)]
        workspace: String,
        /// Only webhooks on this resource.
        #[arg(long)]
        resource: Option<String>,
        /// The secrets file that says which webhooks this receiver can verify.
        #[arg(long, default_value = "asana-webhooks-secrets.json")]
        secrets: PathBuf,
        #[command(flatten)]
        output: Output,
    },
    /// Show one webhook with its delivery bookkeeping.
    Get {
        /// The webhook gid.
        gid: String,
        #[command(flatten)]
        output: Output,
    },
    /// Create a webhook. Something must answer the handshake at the
    /// target; use `listen --resource --target` to have this tool do it.
    Create {
        /// The resource gid to watch.
        #[arg(long)]
        resource: String,
        /// The URL Asana delivers to.
        #[arg(long)]
        target: String,
        /// A filter: TYPE[/SUBTYPE]:ACTION[:FIELD,FIELD…], e.g. task:changed:due_on.
        #[arg(long = "filter", value_name = "SPEC", value_parser = parse_filter)]
        filters: Vec<WebhookFilter>,
        #[command(flatten)]
        output: Output,
    },
    /// Replace a webhook's filters, or clear them.
    Update {
        /// The webhook gid.
        gid: String,
        /// A filter: TYPE[/SUBTYPE]:ACTION[:FIELD,FIELD…].
        #[arg(long = "filter", value_name = "SPEC", value_parser = parse_filter, required_unless_present = "clear_filters", conflicts_with = "clear_filters")]
        filters: Vec<WebhookFilter>,
        /// Remove every filter.
        #[arg(long)]
        clear_filters: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a webhook.
    Delete {
        /// The webhook gid.
        gid: String,
    },
    /// Print a resource's events from Asana's Events API, one JSON line
    /// each (as Asana sent it), then the next sync token on stderr
    /// (`sync: TOKEN`) to continue from. Without --since-token the stream
    /// starts now and nothing is printed; an expired token is reported on
    /// stderr as a gap (exit code 5) with the fresh token.
    Events {
        /// The task, project or goal gid.
        #[arg(long)]
        resource: String,
        /// The sync token a previous run printed.
        #[arg(long, value_name = "TOKEN")]
        since_token: Option<String>,
    },
    /// Receive deliveries: commit each verified one to the inbox, answer
    /// 200, print one JSON line per event (the event exactly as Asana sent
    /// it, under "event") and acknowledge it once printed. Stops within
    /// seconds on Ctrl-C or SIGTERM, leaving unprinted events in the inbox.
    Listen(Listen),
    /// Show what waits in a listener's inbox (stop the listener first).
    Inbox(InboxArgs),
    /// Run a local Asana-compatible sandbox.
    #[command(after_help = SANDBOX_HELP)]
    Sandbox {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: String,
        /// Sandbox seconds per real second (3600: an hour per second).
        #[arg(long, default_value_t = 1.0)]
        time_scale: f64,
        /// Lose this fraction (0 to 1) of event deliveries, as Asana's
        /// at-most-once deliveries may (heartbeats never); GET /events
        /// still has the events.
        #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = parse_fraction)]
        drop_deliveries: f64,
        /// Seed of the draws that pick the lost deliveries (default: a
        /// fixed seed, so a run can be repeated).
        #[arg(long, value_name = "SEED")]
        drop_seed: Option<u64>,
    },
    /// Ask a running sandbox (at --base-url) to emit an event.
    Trigger {
        /// The seeded resource that changed.
        #[arg(long)]
        resource: String,
        /// changed, added, removed, deleted or undeleted.
        #[arg(long)]
        action: String,
        /// For added/removed: the parent.
        #[arg(long)]
        parent: Option<String>,
        /// For changed: the field.
        #[arg(long)]
        field: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct Listen {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Serve Prometheus metrics at /metrics, and the liveness (/livez) and
    /// readiness (/readyz) probes, on this address: a listener of its own,
    /// apart from the webhook listener's (keep it private).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
    /// Create (or reuse) a webhook on this resource through the handshake;
    /// give it several times for several webhooks on one target.
    #[arg(long = "resource", value_name = "GID", requires = "target")]
    pub resources: Vec<String>,
    /// The public URL that reaches this listener (with --resource).
    #[arg(long, requires = "resources")]
    pub target: Option<String>,
    /// The workspace of the resources: lets a webhook that exists already,
    /// or whose create got no answer, be looked up.
    #[arg(long, env = "ASANA_WORKSPACE")]
    pub workspace: Option<String>,
    /// Filters for the webhooks created with --resource.
    #[arg(long = "filter", value_name = "SPEC", value_parser = parse_filter)]
    pub filters: Vec<WebhookFilter>,
    /// Where the webhook secrets are kept (JSON, mode 0600).
    #[arg(long, default_value = "asana-webhooks-secrets.json")]
    pub secrets: PathBuf,
    /// Where verified deliveries wait until printed (default: beside the
    /// secrets file). A delivery is answered 200 only once it is here.
    #[arg(long, conflicts_with = "database_url")]
    pub inbox: Option<PathBuf>,
    /// Keep secrets, registrations and the inbox in this PostgreSQL
    /// database instead of files, so that several `listen` processes (on
    /// several machines) share them: postgres://user:password@host/db.
    #[arg(long, env = "ASANA_WEBHOOKS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// How long a printed event may go unacknowledged before it is handed
    /// out again (to this or another instance).
    #[arg(long, default_value_t = 60)]
    pub lease_seconds: u64,
    /// How often to check the health of the webhooks this listener manages
    /// (needs --target and --workspace); each change of state is printed to
    /// stderr. 0 turns the watch off.
    #[arg(long, default_value_t = 300)]
    pub watch_interval_seconds: u64,
    /// Only report a webhook that Asana deleted; by default the watch
    /// creates it again through the handshake (as it was created) and
    /// records the gap in the secret store.
    #[arg(long)]
    pub no_repair: bool,
    /// Delete and create again, through the handshake, a webhook on the
    /// target whose secret is not stored (its deliveries can never verify).
    /// Off by default: it deletes a webhook someone may have made on purpose.
    #[arg(long)]
    pub replace_unknown_secrets: bool,
    /// Do not catch up, through Asana's Events API, the events the managed
    /// webhooks did not deliver.
    #[arg(long)]
    pub no_catch_up: bool,
    /// How often to catch up each managed webhook's resource (needs
    /// --target); a gap the watch records is caught up at once.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub catch_up_interval: u64,
    /// How long to wait for Asana's answer to each createWebhook (with
    /// --resource). A create still unanswered then goes on in the
    /// background for two minutes while the listener keeps listening: a
    /// late answer stores the secret and prints the webhook's line.
    #[arg(long, default_value_t = 30)]
    pub create_timeout_seconds: u64,
}

impl Listen {
    /// The inbox file: `--inbox`, or `asana-webhooks-inbox.redb` beside the
    /// secrets file.
    pub fn inbox_path(&self) -> PathBuf {
        default_inbox(self.inbox.as_ref(), &self.secrets)
    }
}

/// `--inbox` or the default file beside the secrets file.
pub fn default_inbox(inbox: Option<&PathBuf>, secrets: &std::path::Path) -> PathBuf {
    inbox
        .cloned()
        .unwrap_or_else(|| secrets.with_file_name("asana-webhooks-inbox.redb"))
}

#[derive(Debug, Args)]
pub struct InboxArgs {
    /// The inbox file (default: beside the secrets file).
    #[arg(long)]
    pub inbox: Option<PathBuf>,
    /// The secrets file whose neighbour is the default inbox.
    #[arg(long, default_value = "asana-webhooks-secrets.json")]
    pub secrets: PathBuf,
    /// Also print every waiting event, one JSON line each (nothing is
    /// acknowledged).
    #[arg(long)]
    pub print: bool,
    /// Also print every dead letter (an event that failed on each of its
    /// attempts), one JSON line each.
    #[arg(long)]
    pub dead_letters: bool,
    /// Move these dead letters (ids, comma-separated, or `all`) back to the
    /// waiting events, their attempts reset.
    #[arg(long, value_name = "IDS|all", value_parser = parse_selection)]
    pub redrive: Option<Selection>,
    /// Delete these dead letters (ids, comma-separated, or `all`) for good.
    #[arg(long, value_name = "IDS|all", value_parser = parse_selection, conflicts_with = "redrive")]
    pub purge: Option<Selection>,
    #[command(flatten)]
    pub output: Output,
}

/// Parses `all` or comma-separated ids.
pub fn parse_selection(spec: &str) -> Result<Selection, String> {
    if spec.trim() == "all" {
        return Ok(Selection::All);
    }
    spec.split(',')
        .map(|id| {
            id.trim()
                .parse::<u64>()
                .map_err(|_| format!("`{id}` is not an id (ids are numbers; or give `all`)"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Selection::Ids)
}

#[derive(Debug, Args, Clone, Copy)]
pub struct Output {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses `TYPE[/SUBTYPE]:ACTION[:FIELD,FIELD…]`.
pub fn parse_filter(spec: &str) -> Result<WebhookFilter, String> {
    let mut parts = spec.splitn(3, ':');
    let (Some(kind), Some(action)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "`{spec}` is not TYPE[/SUBTYPE]:ACTION[:FIELD,…] (e.g. task:changed:due_on)"
        ));
    };
    let (resource_type, subtype) = match kind.split_once('/') {
        Some((t, s)) => (t, Some(s)),
        None => (kind, None),
    };
    if resource_type.is_empty() || action.is_empty() {
        return Err(format!("`{spec}` needs a resource type and an action"));
    }
    let mut filter = WebhookFilter::new(resource_type, action);
    if let Some(subtype) = subtype.filter(|s| !s.is_empty()) {
        filter = filter.with_subtype(subtype);
    }
    if let Some(fields) = parts.next() {
        filter = filter.with_fields(fields.split(',').map(str::trim).filter(|f| !f.is_empty()));
    }
    Ok(filter)
}

/// Parses a fraction from 0 to 1 (`--drop-deliveries`).
fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("expected a number from 0 to 1, not {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_specs() {
        let f = parse_filter("task/milestone:changed:due_on, name").unwrap();
        assert_eq!(f.resource_type.as_deref(), Some("task"));
        assert_eq!(f.resource_subtype.as_deref(), Some("milestone"));
        assert_eq!(f.fields, ["due_on", "name"]);
        assert!(parse_filter("task").is_err());
        assert!(parse_filter(":changed").is_err());
    }

    #[test]
    fn sandbox_drop_flags() {
        let cli = Cli::try_parse_from([
            "asana-webhooks",
            "sandbox",
            "--drop-deliveries",
            "0.1",
            "--drop-seed",
            "7",
        ])
        .unwrap();
        let Command::Sandbox {
            drop_deliveries,
            drop_seed,
            ..
        } = cli.command
        else {
            panic!("{:?}", cli.command);
        };
        assert_eq!((drop_deliveries, drop_seed), (0.1, Some(7)));
        let defaults = Cli::try_parse_from(["asana-webhooks", "sandbox"]).unwrap();
        let Command::Sandbox {
            drop_deliveries,
            drop_seed,
            ..
        } = defaults.command
        else {
            panic!("{:?}", defaults.command);
        };
        assert_eq!((drop_deliveries, drop_seed), (0.0, None));
        for bad in ["1.5", "-0.1", "NaN", "a tenth"] {
            assert!(parse_fraction(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_fraction("1"), Ok(1.0));
    }

    #[test]
    fn dead_letter_selections() {
        assert_eq!(parse_selection("all").unwrap(), Selection::All);
        assert_eq!(parse_selection("3, 7").unwrap(), Selection::Ids(vec![3, 7]));
        assert!(parse_selection("3,x").unwrap_err().contains("`x`"));
    }
}
