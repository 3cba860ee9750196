//! The `asana-webhooks` command line end to end: a sandbox process, a
//! listener process, and the management commands, all on 127.0.0.1.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_asana-webhooks");
const WORKSPACE: &str = "1100000000000001";
const PROJECT: &str = "1100000000000003";
const TASK: &str = "1100000000000004";

/// A background process whose stdout lines arrive on a channel; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Its standard error so far (only with [`Running::start_logged`]).
    stderr: Arc<Mutex<String>>,
}

impl Running {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::spawn(args, envs, false)
    }

    /// Like [`Running::start`], keeping what it writes to standard error.
    fn start_logged(args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::spawn(args, envs, true)
    }

    fn spawn(args: &[&str], envs: &[(&str, &str)], logged: bool) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("ASANA_TOKEN")
            .env_remove("ASANA_BASE_URL")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if logged {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut all = stderr.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
            });
        }
        Self {
            child,
            lines,
            stderr,
        }
    }

    /// What it wrote to standard error so far.
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The next stdout line that contains `needle`, within 10 s.
    fn line_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line with {needle:?} within 10 s"));
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running sandbox process and the base URL it printed.
fn sandbox() -> (Running, String) {
    let sandbox = Running::start(
        &["sandbox", "--addr", "127.0.0.1:0", "--time-scale", "3600"],
        &[],
    );
    let banner = sandbox.line_with("--base-url");
    let base_url = banner.rsplit(' ').next().unwrap().to_string();
    (sandbox, base_url)
}

/// Runs a command to completion: (exit code, stdout, stderr).
fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("ASANA_TOKEN")
        .env_remove("ASANA_BASE_URL")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_whole_lifecycle_from_the_command_line() {
    let (_sandbox, base_url) = sandbox();
    let env = [
        ("ASANA_TOKEN", "cli-token"),
        ("ASANA_BASE_URL", base_url.as_str()),
    ];

    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let target = format!("http://{addr}/hooks/project");
    let listener = Running::start(
        &[
            "listen",
            "--addr",
            &addr,
            "--resource",
            PROJECT,
            "--target",
            &target,
            "--secrets",
            secrets.to_str().unwrap(),
        ],
        &env,
    );
    let ready: serde_json::Value =
        serde_json::from_str(&listener.line_with("\"created\"")).unwrap();
    assert_eq!(ready["created"], true);
    assert_eq!(ready["resource"], PROJECT);
    let stored = std::fs::read_to_string(&secrets).unwrap();
    assert!(
        stored.contains("/hooks/project"),
        "the secret is persisted: {stored}"
    );

    let (code, out, _) = run(
        &[
            "trigger",
            "--resource",
            TASK,
            "--action",
            "changed",
            "--field",
            "due_on",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let event: serde_json::Value = serde_json::from_str(&listener.line_with("\"event\"")).unwrap();
    assert_eq!(event["event"]["action"], "changed");
    assert_eq!(event["event"]["change"]["field"], "due_on");
    assert_eq!(event["event"]["resource"]["gid"], TASK);

    let (code, out, _) = run(&["list", "--workspace", WORKSPACE, "--json"], &env);
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let gid = listed[0]["gid"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["target"], target.as_str());

    let (code, table, _) = run(&["list", "--workspace", WORKSPACE], &env);
    assert_eq!(code, 0);
    assert!(
        table.starts_with("GID") && table.contains(&gid) && table.contains("1 webhook(s)"),
        "{table}"
    );

    let (code, out, _) = run(
        &["update", &gid, "--filter", "task:changed:due_on", "--json"],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let updated: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(updated["filters"][0]["fields"][0], "due_on");

    let (code, out, _) = run(&["update", &gid, "--clear-filters", "--json"], &env);
    assert_eq!(code, 0);
    let cleared: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        cleared
            .get("filters")
            .is_none_or(|f| f.as_array().is_some_and(|a| a.is_empty())),
        "{cleared}"
    );

    let (code, out, _) = run(&["get", &gid], &env);
    assert_eq!(code, 0);
    assert!(
        out.contains("last_success_at") && out.contains("delivery_retry_count"),
        "{out}"
    );

    let (code, _, err) = run(
        &["create", "--resource", PROJECT, "--target", &target],
        &env,
    );
    assert_eq!(code, 1, "a duplicate is an Asana error");
    assert!(
        err.contains("Duplicated webhook") && err.contains("exists already"),
        "{err}"
    );

    let (code, out, _) = run(&["delete", &gid], &env);
    assert_eq!(code, 0);
    assert!(out.contains(&gid));
    let (code, _, err) = run(&["get", &gid], &env);
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");
}

#[test]
fn exit_codes_say_what_kind_of_failure_it_was() {
    let (code, _, err) = run(&["list", "--workspace", "1"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("ASANA_TOKEN"), "{err}");

    let (code, _, _) = run(&["update", "1"], &[("ASANA_TOKEN", "t")]);
    assert_eq!(code, 2, "update needs --filter or --clear-filters");

    let (code, _, err) = run(
        &[
            "create",
            "--resource",
            "1",
            "--target",
            "https://x/y",
            "--filter",
            "nonsense",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("TYPE[/SUBTYPE]:ACTION"), "{err}");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/api/1.0");
    let (code, _, err) = run(
        &["get", "1", "--max-attempts", "1"],
        &[("ASANA_TOKEN", "t"), ("ASANA_BASE_URL", &base)],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("could not reach Asana"), "{err}");
}

#[test]
fn help_teaches_the_handshake_and_lists_the_seeded_objects() {
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("X-Hook-Secret") && out.contains("echo"),
        "{out}"
    );
    let (_, out, _) = run(&["sandbox", "--help"], &[]);
    for gid in [WORKSPACE, PROJECT, TASK] {
        assert!(out.contains(gid), "{out}");
    }
}

#[test]
fn listen_runs_several_webhooks_on_one_target() {
    let (_sandbox, base_url) = sandbox();
    let env = [
        ("ASANA_TOKEN", "cli-token"),
        ("ASANA_BASE_URL", base_url.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let addr = format!("127.0.0.1:{}", free_port());
    let target = format!("http://{addr}/hooks/all");
    let listener = Running::start(
        &[
            "listen",
            "--addr",
            &addr,
            "--resource",
            PROJECT,
            "--resource",
            TASK,
            "--workspace",
            WORKSPACE,
            "--target",
            &target,
            "--secrets",
            secrets.to_str().unwrap(),
        ],
        &env,
    );
    // Both handshakes went through: two secrets on one target.
    listener.line_with("\"created\"");
    listener.line_with("\"created\"");
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&secrets).unwrap()).unwrap();
    let records = stored["webhooks"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{stored}");
    assert!(records.iter().all(|r| r["target"] == "/hooks/all"));

    // A change to the task reaches both webhooks (the task's own and the
    // project's); each delivery is verified with its own webhook's secret.
    let (code, out, _) = run(
        &[
            "trigger",
            "--resource",
            TASK,
            "--action",
            "changed",
            "--field",
            "name",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let mut gids = std::collections::BTreeSet::new();
    for _ in 0..2 {
        let line: serde_json::Value =
            serde_json::from_str(&listener.line_with("\"event\"")).unwrap();
        assert_eq!(line["event"]["resource"]["gid"], TASK);
        gids.insert(line["webhook_gid"].as_str().unwrap().to_string());
    }
    let expected: std::collections::BTreeSet<String> = records
        .iter()
        .map(|r| r["webhook_gid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        gids, expected,
        "each webhook's deliveries were verified and printed"
    );
}

/// Where the killed listener keeps its secrets.
enum Engine {
    File,
    Postgres(support::Postgres),
}

/// A listener killed between the handshake and Asana's 201 answer: the
/// sandbox holds every 201 back for a minute, so the webhook exists at
/// Asana with a secret that only the echoed handshake carried.
struct KilledBefore201 {
    runtime: tokio::runtime::Runtime,
    sandbox: asana_webhooks::sandbox::Sandbox,
    client: asana_webhooks::Client,
    env: Vec<(&'static str, String)>,
    args: Vec<String>,
    engine: Engine,
    secrets: std::path::PathBuf,
    key: asana_webhooks::secrets::TargetKey,
    gid: String,
    _dir: tempfile::TempDir,
}

impl KilledBefore201 {
    /// Starts a listener that creates a webhook on the project, waits until
    /// the handshake and the heartbeat after it were answered, sends
    /// `forged` handshakes to it (as anyone who can reach it could), and
    /// kills it.
    fn run(engine: Engine, forged: &[&str]) -> Self {
        Self::run_seeded(engine, forged, &[], Duration::ZERO)
    }

    /// Like [`Self::run`], the file store first holding `seeded`
    /// unconfirmed handshakes (secret, minutes ago) for the target, and
    /// the played Asana's clock `ahead` of this machine's.
    fn run_seeded(
        engine: Engine,
        forged: &[&str],
        seeded: &[(&str, i64)],
        ahead: Duration,
    ) -> Self {
        use asana_webhooks::sandbox::Sandbox;
        use asana_webhooks::types::WebhookOptField;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let sandbox = runtime
            .block_on(
                Sandbox::builder()
                    .create_answer_delay(Duration::from_secs(60))
                    .clock_ahead(ahead)
                    .start("127.0.0.1:0"),
            )
            .unwrap();
        let base_url = sandbox.base_url();
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets.json");
        let addr = format!("127.0.0.1:{}", free_port());
        let target = format!("http://{addr}/hooks/project");
        let mut args: Vec<String> = [
            "listen",
            "--addr",
            &addr,
            "--resource",
            PROJECT,
            "--workspace",
            WORKSPACE,
            "--target",
            &target,
        ]
        .map(String::from)
        .to_vec();
        match &engine {
            Engine::File => args.extend(["--secrets".into(), secrets.display().to_string()]),
            Engine::Postgres(db) => args.extend(["--database-url".into(), db.url()]),
        }
        let env = vec![
            ("ASANA_TOKEN", "cli-token".to_string()),
            ("ASANA_BASE_URL", base_url.clone()),
        ];
        let client = asana_webhooks::Client::builder()
            .token("cli-token")
            .base_url(&base_url)
            .build()
            .unwrap();
        let mut killed = Self {
            runtime,
            sandbox,
            client,
            env,
            args,
            engine,
            secrets,
            key: asana_webhooks::secrets::TargetKey::from_url(&target).unwrap(),
            gid: String::new(),
            _dir: dir,
        };
        if !seeded.is_empty() {
            let unconfirmed: Vec<serde_json::Value> = seeded
                .iter()
                .map(|(secret, minutes_ago)| {
                    let at = chrono::Utc::now() - chrono::Duration::minutes(*minutes_ago);
                    serde_json::json!({
                        "target": killed.key.as_str(),
                        "secret": secret,
                        "received_at": at.to_rfc3339(),
                    })
                })
                .collect();
            let file =
                serde_json::json!({"version": 3, "webhooks": [], "unconfirmed": unconfirmed});
            std::fs::write(&killed.secrets, file.to_string()).unwrap();
        }
        let mut first = killed.start();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        killed.gid = loop {
            let heartbeat_answered = killed.webhooks().into_iter().next().and_then(|w| {
                let webhook = killed
                    .runtime
                    .block_on(
                        killed
                            .client
                            .get_webhook(w.gid?)
                            .opt_fields([WebhookOptField::LastSuccessAt])
                            .send(),
                    )
                    .unwrap();
                webhook.last_success_at.and(webhook.gid)
            });
            if let Some(gid) = heartbeat_answered {
                break gid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no webhook with an answered heartbeat after 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        for secret in forged {
            let echoed = killed.runtime.block_on(async {
                reqwest::Client::new()
                    .post(&target)
                    .header("x-hook-secret", *secret)
                    .send()
                    .await
                    .unwrap()
            });
            assert_eq!(echoed.status(), 200, "the window is open: echoed");
        }
        first.child.kill().unwrap();
        first.child.wait().unwrap();
        killed
    }

    fn start(&self) -> Running {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Running::start(&args, &env)
    }

    fn webhooks(&self) -> Vec<asana_webhooks::Webhook> {
        self.runtime
            .block_on(self.client.get_webhooks(WORKSPACE).send())
            .unwrap()
            .items
    }

    /// What the listener's store holds for the target: the gids of its
    /// stored secrets, and how many unconfirmed handshakes it keeps.
    fn stored(&self) -> (Vec<String>, usize) {
        use asana_webhooks::secrets::{FileSecretStore, SecretStore};
        async fn read(
            store: impl SecretStore,
            key: &asana_webhooks::secrets::TargetKey,
        ) -> (Vec<String>, usize) {
            let gids = store
                .secrets_for(key)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|r| r.webhook_gid)
                .collect();
            (gids, store.unconfirmed_handshakes(key).await.unwrap().len())
        }
        self.runtime.block_on(async {
            match &self.engine {
                Engine::File => {
                    read(
                        FileSecretStore::open(&self.secrets).await.unwrap(),
                        &self.key,
                    )
                    .await
                }
                Engine::Postgres(db) => {
                    let pool = asana_webhooks::postgres::connect(&db.url()).await.unwrap();
                    read(
                        asana_webhooks::postgres::PostgresSecretStore::new(pool),
                        &self.key,
                    )
                    .await
                }
            }
        })
    }
}

/// Killed between the handshake and the 201, the listener loses no secret:
/// restarted, its `ensure()` gets "Duplicated webhook", finds the webhook,
/// stores the one handshake secret it had written down before echoing it,
/// and the webhook's deliveries are verified and printed.
fn no_secret_lost_by_a_kill_before_the_201(engine: Engine, asana_ahead: Duration) {
    use asana_webhooks::sandbox::EmittedEvent;
    let killed = KilledBefore201::run_seeded(engine, &[], &[], asana_ahead);
    let gid = killed.gid.clone();
    assert_eq!(
        killed.stored(),
        (vec![], 1),
        "killed before the 201: no secret confirmed, the echoed handshake kept"
    );

    // Restarted: the webhook is found and its secret stored.
    let second = killed.start();
    let line: serde_json::Value = serde_json::from_str(&second.line_with("\"created\"")).unwrap();
    assert_eq!(line["webhook_gid"], gid.as_str(), "{line}");
    assert_eq!(line["created"], false, "{line}");
    assert_eq!(killed.stored(), (vec![gid.clone()], 0));
    assert_eq!(
        killed.webhooks().len(),
        1,
        "the same webhook, not a new one"
    );

    // Its deliveries are verified with the recovered secret and printed.
    let queued = killed
        .sandbox
        .emit(EmittedEvent {
            resource: TASK.to_string(),
            action: "changed".to_string(),
            parent: None,
            field: Some("name".to_string()),
        })
        .unwrap();
    assert_eq!(queued, std::slice::from_ref(&gid));
    let event: serde_json::Value = serde_json::from_str(&second.line_with("\"event\"")).unwrap();
    assert_eq!(event["webhook_gid"], gid.as_str(), "{event}");
    assert_eq!(event["event"]["resource"]["gid"], TASK, "{event}");
}

#[test]
fn sigkill_between_handshake_and_201_loses_no_secret() {
    no_secret_lost_by_a_kill_before_the_201(Engine::File, Duration::ZERO);
}

/// The same with Asana's clock 20 minutes ahead of this machine's: its
/// `created_at` is read against the local clock through the `Date` of its
/// answer, so the handshake is still found within the 5-minute margin.
#[test]
fn sigkill_between_handshake_and_201_loses_no_secret_with_asana_clock_ahead() {
    no_secret_lost_by_a_kill_before_the_201(Engine::File, Duration::from_secs(20 * 60));
}

#[test]
fn sigkill_between_handshake_and_201_loses_no_secret_in_postgres() {
    no_secret_lost_by_a_kill_before_the_201(
        Engine::Postgres(support::Postgres::start()),
        Duration::ZERO,
    );
}

/// A forged handshake echoed in the same window makes the recovery
/// ambiguous: nothing is trusted, and the restarted listener stops with an
/// error that says to delete and re-create the webhook.
#[test]
fn a_forged_handshake_in_the_window_is_never_trusted_after_a_kill() {
    let killed = KilledBefore201::run(Engine::File, &["forged-by-someone-else"]);
    assert_eq!(killed.stored(), (vec![], 2));
    restart_refuses_to_trust(&killed);
    assert_eq!(killed.stored(), (vec![], 2), "no secret stored");
}

/// A flood that filled the store's limit of unconfirmed handshakes earlier,
/// then one forged handshake just before Asana's (written down as the last
/// one that fits, while Asana's is only answered): the forged one is the
/// only one written down near the webhook's creation, and it must still
/// not be trusted, because handshakes went unrecorded then.
#[test]
fn a_forged_handshake_alone_on_record_after_a_flood_is_never_trusted() {
    let limit = asana_webhooks::secrets::MAX_UNCONFIRMED_PER_TARGET;
    let old: Vec<String> = (1..limit).map(|n| format!("flooded-{n}")).collect();
    let mut seeded: Vec<(&str, i64)> = old.iter().map(|s| (s.as_str(), 20)).collect();
    seeded.push(("forged-just-before-asana", 0));
    let killed = KilledBefore201::run_seeded(Engine::File, &[], &seeded, Duration::ZERO);
    let (stored, unconfirmed) = killed.stored();
    assert!(stored.is_empty());
    assert_eq!(unconfirmed, limit, "Asana's handshake was not written down");
    restart_refuses_to_trust(&killed);
    assert!(killed.stored().0.is_empty(), "no secret stored");
}

/// Restarts the killed listener and checks that it stops with the error
/// that names the webhook and says to delete it.
fn restart_refuses_to_trust(killed: &KilledBefore201) {
    let mut second = Command::new(BIN)
        .args(&killed.args)
        .env_remove("ASANA_TOKEN")
        .env_remove("ASANA_BASE_URL")
        .envs(killed.env.iter().map(|(k, v)| (*k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("the restarted listener trusted a secret and kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "it must not start listening: {status}");
    assert!(
        stderr.contains(&killed.gid) && stderr.contains("delete it"),
        "{stderr}"
    );
}

/// The secret stored for webhook `gid` in the secrets file at `path`.
fn stored_secret(
    runtime: &tokio::runtime::Runtime,
    path: &std::path::Path,
    gid: &str,
) -> asana_webhooks::HookSecret {
    use asana_webhooks::secrets::{FileSecretStore, SecretStore};
    runtime.block_on(async {
        FileSecretStore::open(path)
            .await
            .unwrap()
            .by_gid(gid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no secret stored for webhook {gid}"))
            .secret
    })
}

/// POSTs `body` to `target` signed with `secret`, as Asana delivers;
/// returns the answer's status.
fn deliver(
    runtime: &tokio::runtime::Runtime,
    target: &str,
    secret: &asana_webhooks::HookSecret,
    body: &str,
) -> u16 {
    let signature = asana_webhooks::signature::sign(secret, body.as_bytes());
    runtime.block_on(async {
        reqwest::Client::new()
            .post(target)
            .header("content-type", "application/json")
            .header("x-hook-signature", signature)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

/// A listener on a fresh address with a webhook on the project (created
/// through the sandbox at `base_url`): (its arguments, its target, the
/// secrets file, the directory that holds it).
fn listen_args(base_url: &str) -> (Vec<String>, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let addr = format!("127.0.0.1:{}", free_port());
    let target = format!("http://{addr}/hooks/project");
    let args = [
        "listen",
        "--addr",
        &addr,
        "--resource",
        PROJECT,
        "--workspace",
        WORKSPACE,
        "--target",
        &target,
        "--secrets",
        secrets.to_str().unwrap(),
        "--base-url",
        base_url,
        "--token",
        "cli-token",
    ]
    .map(String::from)
    .to_vec();
    (args, target, secrets, dir)
}

/// `listen` prints each event exactly as Asana sent it: the fields this
/// crate's typed `Event` does not hold (`type`, from Asana's own
/// EventResponse schema, and whatever Asana adds later) are on the printed
/// line too, since the event is acknowledged (deleted) once printed. An
/// event sent over several lines is still printed on one.
#[test]
fn listen_prints_every_field_of_the_delivered_event() {
    let (_sandbox, base_url) = sandbox();
    let (args, target, secrets, _dir) = listen_args(&base_url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listener = Running::start(&args, &[]);
    let ready: serde_json::Value =
        serde_json::from_str(&listener.line_with("\"created\"")).unwrap();
    let gid = ready["webhook_gid"].as_str().unwrap().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let secret = stored_secret(&runtime, &secrets, &gid);

    let compact = format!(
        r#"{{"type":"task","user":{{"gid":"1100000000000002","resource_type":"user"}},"created_at":"2024-05-01T12:00:00.123Z","action":"changed","resource":{{"gid":"{TASK}","resource_type":"task","resource_subtype":"default_task","name":"Ship it"}},"parent":null,"change":{{"field":"assignee","action":"changed","new_value":{{"gid":"1100000000000002","resource_type":"user"}},"added_value":null,"removed_value":null}},"future_field":{{"x":1,"list":[1.5,"two",null]}},"big":12345678901234567890}}"#
    );
    let multiline = format!(
        "{{\n  \"type\": \"story\",\n  \"action\": \"added\",\n  \"resource\": {{\"gid\": \"1100000000000099\", \"resource_type\": \"story\"}},\n  \"parent\": {{\"gid\": \"{TASK}\", \"resource_type\": \"task\"}},\n  \"created_at\": \"2024-05-01T12:00:01.000Z\",\n  \"text\": \"line one\\nline two\",\n  \"future_field\": {{\"x\": 2}}\n}}"
    );
    let body = format!("{{\"events\":[{compact},{multiline}]}}");
    assert_eq!(deliver(&runtime, &target, &secret, &body), 200);

    for sent in [&compact, &multiline] {
        let text = listener.line_with("\"event\"");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        let expected: serde_json::Value = serde_json::from_str(sent).unwrap();
        assert_eq!(
            line["event"], expected,
            "the printed event is the delivered one, every field kept: {text}"
        );
        assert_eq!(line["webhook_gid"], gid.as_str(), "{text}");
        assert_eq!(line["target"], "/hooks/project", "{text}");
        if sent == &compact {
            assert!(
                text.contains(&compact),
                "a one-line event is printed byte for byte as sent: {text}"
            );
        }
    }
}

/// A create whose 201 comes after `listen`'s create timeout, but within
/// the settle time, does not end `listen`: it goes on listening, says so
/// truthfully, and stores the secret when the late answer arrives; the
/// webhook's deliveries are then verified and printed.
#[test]
fn listen_keeps_running_after_a_create_timeout_and_stores_the_late_secret() {
    use asana_webhooks::sandbox::EmittedEvent;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sandbox = runtime
        .block_on(
            asana_webhooks::sandbox::Sandbox::builder()
                .create_answer_delay(Duration::from_secs(4))
                .start("127.0.0.1:0"),
        )
        .unwrap();
    let (mut args, _target, secrets, _dir) = listen_args(&sandbox.base_url());
    args.extend(["--create-timeout-seconds".into(), "1".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut listener = Running::start_logged(&args, &[]);

    // Asana's 201 comes 4 s after the handshake; the create times out
    // after 1 s. The listener must still be there when it comes.
    let deadline = started + Duration::from_secs(15);
    let ready = loop {
        if let Ok(line) = listener.lines.recv_timeout(Duration::from_millis(100))
            && line.contains("\"created\"")
        {
            break line;
        }
        if let Some(status) = listener.child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "listen ended ({status}) {:?} after starting, before Asana's late 201; stderr:\n{}",
                started.elapsed(),
                listener.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no webhook line within 15 s; stderr:\n{}",
            listener.stderr()
        );
    };
    let waited = started.elapsed();
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(ready["created"], true, "{ready}");
    assert_eq!(ready["resource"], PROJECT, "{ready}");
    assert!(
        waited >= Duration::from_secs(3),
        "the line comes with the late 201, not before: {waited:?}"
    );
    let gid = ready["webhook_gid"].as_str().unwrap().to_string();
    stored_secret(&runtime, &secrets, &gid);
    let stderr = listener.stderr();
    assert!(
        stderr.contains("no answer within") && stderr.contains("keeps listening"),
        "the timeout is reported as what it is: {stderr}"
    );
    assert!(
        !stderr.contains("error:"),
        "no error after the timeout: {stderr}"
    );

    // The stored secret verifies the webhook's deliveries.
    let queued = sandbox
        .emit(EmittedEvent {
            resource: TASK.to_string(),
            action: "changed".to_string(),
            parent: None,
            field: Some("name".to_string()),
        })
        .unwrap();
    assert_eq!(queued, std::slice::from_ref(&gid));
    let event: serde_json::Value = serde_json::from_str(&listener.line_with("\"event\"")).unwrap();
    assert_eq!(event["webhook_gid"], gid.as_str(), "{event}");
    assert_eq!(event["event"]["resource"]["gid"], TASK, "{event}");
    assert!(listener.child.try_wait().unwrap().is_none());
}

/// How long a stop may take.
const STOP_BOUND: Duration = Duration::from_secs(5);

/// Sends `signal` (TERM, INT) to `child` and waits for it to end; fails
/// unless it ends within [`STOP_BOUND`]. Returns how long it took.
fn stop_with(child: &mut Child, signal: &str, while_: &str) -> Duration {
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let waited = signalled.elapsed();
        assert!(
            waited < Duration::from_secs(25),
            "listen still runs {waited:?} after SIG{signal} ({while_})"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    assert!(
        took < STOP_BOUND,
        "a stop takes at most {STOP_BOUND:?}, this one {took:?} ({while_})"
    );
    assert!(exited.success(), "a stop is a clean exit: {exited}");
    took
}

/// A listener stopped while the answer to its create is still awaited
/// (after its create timeout, within the settle time) stops within
/// [`STOP_BOUND`] and says what becomes of the webhook: started again with
/// the same arguments, it finds the webhook and stores its secret.
#[test]
fn a_stop_while_a_late_create_is_awaited_says_a_restart_stores_its_secret() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sandbox = runtime
        .block_on(
            asana_webhooks::sandbox::Sandbox::builder()
                .create_answer_delay(Duration::from_secs(60))
                .start("127.0.0.1:0"),
        )
        .unwrap();
    let (args, _target, secrets, _dir) = listen_args(&sandbox.base_url());
    let mut first_args = args.clone();
    first_args.extend(["--create-timeout-seconds".into(), "1".into()]);
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let mut first = Running::start_logged(&first_args, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !first.stderr().contains("keeps listening") {
        assert!(
            Instant::now() < deadline,
            "no create timeout reported; stderr:\n{}",
            first.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = stop_with(&mut first.child, "TERM", "a create awaits its answer");
    eprintln!("SIGTERM with a create awaited: listen ended {took:?} after the signal");
    std::thread::sleep(Duration::from_millis(200));
    let stderr = first.stderr();
    assert!(
        stderr.contains(PROJECT)
            && stderr.contains("start again with the same --resource, --target and --workspace"),
        "{stderr}"
    );

    // Started again, it finds the webhook Asana created and stores its
    // secret from the handshake the first one wrote down.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let second = Running::start(&args, &[]);
    let line: serde_json::Value = serde_json::from_str(&second.line_with("\"created\"")).unwrap();
    assert_eq!(line["created"], false, "{line}");
    let gid = line["webhook_gid"].as_str().unwrap();
    stored_secret(&runtime, &secrets, gid);
}

/// A listener whose standard output nobody reads, stopped with `signal`
/// once its printing is blocked on the full pipe: it exits within
/// [`STOP_BOUND`], and every event it did not print whole is still in its
/// inbox.
fn a_listener_nobody_reads_stops_on(signal: &str) {
    let (_sandbox, base_url) = sandbox();
    let (args, target, secrets, _dir) = listen_args(&base_url);
    let mut listener = Command::new(BIN)
        .args(&args)
        .env_remove("ASANA_TOKEN")
        .env_remove("ASANA_BASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct KillOnDrop<'a>(&'a mut Child);
    impl Drop for KillOnDrop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Read up to the webhook's line, then never again.
    let mut stdout = BufReader::new(listener.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&first).unwrap();
    let gid = ready["webhook_gid"].as_str().unwrap().to_string();
    let listener = KillOnDrop(&mut listener);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let secret = stored_secret(&runtime, &secrets, &gid);

    // 400 events of about 1 KiB: far more than a pipe holds (64 KiB).
    let padding = "p".repeat(1000);
    let total = 400u64;
    for batch in 0..total / 10 {
        let events: Vec<String> = (batch * 10..batch * 10 + 10)
            .map(|n| {
                format!(
                    r#"{{"user":null,"created_at":"2024-05-01T12:00:00.000Z","action":"changed","resource":{{"gid":"{}","resource_type":"task"}},"parent":null,"change":{{"field":"name","action":"changed"}},"padding":"{padding}"}}"#,
                    1_200_000_000_000_000 + n
                )
            })
            .collect();
        let body = format!("{{\"events\":[{}]}}", events.join(","));
        assert_eq!(
            deliver(&runtime, &target, &secret, &body),
            200,
            "delivery {batch}"
        );
    }
    // Let the printer run into the full pipe.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(listener.0.try_wait().unwrap().is_none());

    let took = stop_with(&mut *listener.0, signal, "its stdout is full and unread");
    eprintln!("SIG{signal}: listen ended {took:?} after the signal");
    drop(listener);

    // What reached the pipe whole was printed; everything else waits in
    // the inbox (unacknowledged, so a restart prints it).
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let gid_of = |line: &serde_json::Value| {
        line["event"]["resource"]["gid"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            - 1_200_000_000_000_000
    };
    let printed: std::collections::BTreeSet<u64> = rest
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| gid_of(&serde_json::from_str(l).unwrap()))
        .collect();
    let (code, out, err) = run(
        &["inbox", "--secrets", secrets.to_str().unwrap(), "--print"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let waiting: std::collections::BTreeSet<u64> = out
        .lines()
        .map(|l| gid_of(&serde_json::from_str(l).unwrap()))
        .collect();
    assert!(
        (printed.len() as u64) < total && !waiting.is_empty(),
        "the pipe was full: {} printed",
        printed.len()
    );
    let lost: Vec<u64> = (0..total)
        .filter(|n| !printed.contains(n) && !waiting.contains(n))
        .collect();
    assert!(
        lost.is_empty(),
        "events neither printed nor in the inbox: {lost:?}"
    );
    eprintln!(
        "SIG{signal}: {} events printed whole, {} left in the inbox",
        printed.len(),
        waiting.len()
    );
}

#[test]
fn listen_with_unread_stdout_stops_on_sigterm() {
    a_listener_nobody_reads_stops_on("TERM");
}

#[test]
fn listen_with_unread_stdout_stops_on_sigint() {
    a_listener_nobody_reads_stops_on("INT");
}

#[test]
fn status_reports_each_webhooks_health_and_what_to_do() {
    let (_sandbox, base_url) = sandbox();
    let env = [
        ("ASANA_TOKEN", "cli-token"),
        ("ASANA_BASE_URL", base_url.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let listen = |resource: &str, name: &str| {
        // Each listener its own directory: its inbox lives beside its secrets.
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        let secrets = dir.path().join(name).join("secrets.json");
        let addr = format!("127.0.0.1:{}", free_port());
        let target = format!("http://{addr}/hooks/status");
        let listener = Running::start_logged(
            &[
                "listen",
                "--addr",
                &addr,
                "--resource",
                resource,
                "--workspace",
                WORKSPACE,
                "--target",
                &target,
                "--secrets",
                secrets.to_str().unwrap(),
                "--watch-interval-seconds",
                "1",
            ],
            &env,
        );
        let created = listener.line_with("\"created\"");
        let gid = serde_json::from_str::<serde_json::Value>(&created).unwrap()["webhook_gid"]
            .as_str()
            .unwrap()
            .to_string();
        (listener, secrets, gid)
    };
    let (ours_listener, secrets, ours) = listen(TASK, "ours");
    // Another receiver's webhook on the project: its secret is not ours.
    let (_theirs, _, theirs) = listen(PROJECT, "theirs");
    let status = |json: bool| {
        let mut args = vec![
            "status",
            "--workspace",
            WORKSPACE,
            "--secrets",
            secrets.to_str().unwrap(),
        ];
        if json {
            args.push("--json");
        }
        let (code, out, err) = run(&args, &env);
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    let report: serde_json::Value = serde_json::from_str(status(true).trim()).unwrap();
    let state = |report: &serde_json::Value, gid: &str| {
        report["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["gid"] == gid)
            .map(|w| w["state"].as_str().unwrap().to_string())
    };
    assert_eq!(
        state(&report, &ours).as_deref(),
        Some("healthy"),
        "{report:#}"
    );
    assert_eq!(state(&report, &theirs).as_deref(), Some("unknown_secret"));
    let table = status(false);
    assert!(table.contains("unknown secret"), "{table}");
    assert!(table.contains("delete it and create it again"), "{table}");

    // Deleted at Asana: gone, with what to do.
    let (code, _, err) = run(&["delete", &ours], &env);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value = serde_json::from_str(status(true).trim()).unwrap();
    assert_eq!(state(&report, &ours).as_deref(), Some("gone"), "{report:#}");
    // The listener's own watch says so on stderr, with what to do.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ours_listener.stderr().contains("state=gone") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let logged = ours_listener.stderr();
    assert!(logged.contains("webhook health changed"), "{logged}");
    assert!(logged.contains("state=gone"), "{logged}");
    assert!(logged.contains("re-create it"), "{logged}");
}

#[test]
fn events_prints_a_resources_events_from_a_token_and_reports_an_expired_one_as_a_gap() {
    let (_sandbox, base_url) = sandbox();
    let env = [
        ("ASANA_TOKEN", "cli-token"),
        ("ASANA_BASE_URL", base_url.as_str()),
    ];
    let token_of = |stderr: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("sync: "))
            .unwrap_or_else(|| panic!("no token in {stderr}"))
            .to_string()
    };
    // Without a token the stream starts now: nothing printed, a token.
    let (code, out, err) = run(&["events", "--resource", TASK], &env);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "", "nothing before the stream began");
    let first = token_of(&err);

    for field in ["due_on", "name", "notes"] {
        let (code, out, err) = run(
            &[
                "trigger",
                "--resource",
                TASK,
                "--action",
                "changed",
                "--field",
                field,
            ],
            &env,
        );
        assert_eq!(code, 0, "{out}{err}");
    }
    let (code, out, err) = run(
        &["events", "--resource", TASK, "--since-token", &first],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fields: Vec<&str> = events
        .iter()
        .map(|e| e["change"]["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["due_on", "name", "notes"],
        "in order, as JSON lines"
    );
    assert_eq!(events[0]["resource"]["gid"], TASK);
    let next = token_of(&err);
    assert_ne!(next, first);
    // From the token printed: nothing new.
    let (code, out, err) = run(
        &["events", "--resource", TASK, "--since-token", &next],
        &env,
    );
    assert_eq!((code, out.as_str()), (0, ""), "{err}");

    // A token Asana no longer accepts: a gap on stderr, exit code 5.
    let (code, out, err) = run(
        &["events", "--resource", TASK, "--since-token", "not-a-token"],
        &env,
    );
    assert_eq!(code, 5, "{out}{err}");
    assert!(err.contains("gap:"), "{err}");
    assert!(!token_of(&err).is_empty());
    // A resource the Events API cannot follow: Asana's error, exit code 1.
    let (code, _, err) = run(&["events", "--resource", WORKSPACE], &env);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("task, project or goal"), "{err}");
}

/// The value of the sample `series` (name and labels as Prometheus
/// prints them) in a scrape; `None` when it is not there.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.trim().parse().unwrap())
    })
}

/// GET `url`: (status, body).
fn get(runtime: &tokio::runtime::Runtime, url: &str) -> (u16, String) {
    runtime.block_on(async {
        let response = reqwest::get(url).await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    })
}

/// `promtool check metrics` on a scrape: its lints hold (counters named
/// `_total`, help texts, base units). promtool comes from the
/// distribution's `prometheus` package, which .ci/run installs: in CI
/// (`CI` set) a missing promtool fails the test; elsewhere it says so and
/// checks the rest.
fn promtool_accepts(scrape: &str) {
    use std::io::Write;
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool not found: install the distribution's `prometheus` package (`apt-get install -y prometheus`; .ci/run does)"
            );
            eprintln!(
                "promtool not found (apt-get install -y prometheus): the scrape's lint check is not run here"
            );
            return;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `listen --metrics-addr` counts a genuine delivery as accepted and a
/// forged one as refused for its bad signature, serves them as valid
/// Prometheus text, and answers the probes: live and ready, then not ready
/// once the directory of its secrets and inbox is gone.
#[test]
fn listen_serves_metrics_and_probes_on_their_own_address() {
    let (_sandbox, base_url) = sandbox();
    let (mut args, target, secrets, dir) = listen_args(&base_url);
    let metrics = format!("http://127.0.0.1:{}", free_port());
    args.extend(["--metrics-addr".into(), metrics["http://".len()..].into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listener = Running::start(&args, &[]);
    let ready: serde_json::Value =
        serde_json::from_str(&listener.line_with("\"created\"")).unwrap();
    let gid = ready["webhook_gid"].as_str().unwrap().to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let secret = stored_secret(&runtime, &secrets, &gid);

    const ACCEPTED: &str = r#"asana_webhooks_deliveries_total{outcome="accepted"}"#;
    const FORGED: &str = r#"asana_webhooks_deliveries_refused_total{reason="bad_signature"}"#;
    let (status, before) = get(&runtime, &format!("{metrics}/metrics"));
    assert_eq!(status, 200, "{before}");
    assert_eq!(sample(&before, ACCEPTED), None, "{before}");
    assert!(
        sample(
            &before,
            r#"asana_webhooks_handshakes_total{outcome="accepted"}"#
        ) >= Some(1.0),
        "the webhook's handshake: {before}"
    );
    assert!(
        sample(
            &before,
            r#"asana_webhooks_api_requests_total{operation="create_webhook",status="2xx"}"#
        ) >= Some(1.0),
        "the create: {before}"
    );

    let body = format!(
        r#"{{"events":[{{"action":"changed","resource":{{"gid":"{TASK}","resource_type":"task"}},"created_at":"2024-05-01T12:00:00.000Z"}}]}}"#
    );
    assert_eq!(deliver(&runtime, &target, &secret, &body), 200);
    let forger = asana_webhooks::HookSecret::new("not-the-webhooks-secret");
    assert_eq!(deliver(&runtime, &target, &forger, &body), 401);
    listener.line_with("\"event\"");

    let (status, after) = get(&runtime, &format!("{metrics}/metrics"));
    assert_eq!(status, 200);
    assert_eq!(sample(&after, ACCEPTED), Some(1.0), "{after}");
    assert_eq!(
        sample(&after, FORGED).unwrap_or(0.0) - sample(&before, FORGED).unwrap_or(0.0),
        1.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, r#"asana_webhooks_events_total{outcome="accepted"}"#),
        Some(1.0),
        "{after}"
    );
    assert!(
        sample(&after, r#"asana_webhooks_inbox_events{state="ready"}"#).is_some(),
        "the inbox gauges are read at each scrape: {after}"
    );
    assert!(
        after.contains("# HELP asana_webhooks_deliveries_total"),
        "{after}"
    );
    promtool_accepts(&after);

    assert_eq!(get(&runtime, &format!("{metrics}/livez")).0, 200);
    let (status, text) = get(&runtime, &format!("{metrics}/readyz"));
    assert_eq!((status, text.as_str()), (200, r#"{"status":"ready"}"#));
    std::fs::remove_dir_all(dir.path()).unwrap();
    let (status, text) = get(&runtime, &format!("{metrics}/readyz"));
    assert_eq!(status, 503, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["status"], "not ready", "{text}");
    assert_eq!(get(&runtime, &format!("{metrics}/livez")).0, 200);
    // The webhook listener never answers the probes' paths as probes.
    let (status, _) = get(&runtime, &target.replace("/hooks/project", "/readyz"));
    assert_eq!(status, 405);
}

/// `listen` catches up what the sandbox's dropped deliveries missed: with
/// a third of them lost, every triggered event is printed exactly once,
/// those caught up marked `events_api`.
#[test]
fn listen_catches_up_dropped_deliveries_and_prints_each_event_once() {
    let sandbox = Running::start(
        &[
            "sandbox",
            "--addr",
            "127.0.0.1:0",
            "--drop-deliveries",
            "0.3",
            "--drop-seed",
            "7",
        ],
        &[],
    );
    let banner = sandbox.line_with("--base-url");
    let base_url = banner.rsplit(' ').next().unwrap().to_string();
    let env = [
        ("ASANA_TOKEN", "cli-token"),
        ("ASANA_BASE_URL", base_url.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let addr = format!("127.0.0.1:{}", free_port());
    let target = format!("http://{addr}/hooks/task");
    let listener = Running::start_logged(
        &[
            "listen",
            "--addr",
            &addr,
            "--resource",
            TASK,
            "--workspace",
            WORKSPACE,
            "--target",
            &target,
            "--secrets",
            secrets.to_str().unwrap(),
            "--catch-up-interval",
            "1",
        ],
        &env,
    );
    listener.line_with("\"created\"");
    const EVENTS: usize = 20;
    let fields = ["due_on", "name", "notes", "assignee"];
    for n in 0..EVENTS {
        let field = fields[n % fields.len()];
        let (code, out, err) = run(
            &[
                "trigger",
                "--resource",
                TASK,
                "--action",
                "changed",
                "--field",
                field,
            ],
            &env,
        );
        assert_eq!(code, 0, "{out}{err}");
    }
    let mut seen = std::collections::HashMap::new();
    let mut by_source = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < EVENTS {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = listener.lines.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "{} of {EVENTS} events printed within 60 s; stderr:\n{}",
                seen.len(),
                listener.stderr()
            )
        });
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        if line.get("event").is_none() {
            continue;
        }
        let identity = asana_webhooks::EventIdentity::of(&line["event"]);
        *seen.entry(identity).or_insert(0) += 1;
        *by_source
            .entry(line["source"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
        assert_eq!(line["resource"], TASK);
    }
    // Two more catch-up intervals: nothing is printed twice.
    let extra = listener.lines.recv_timeout(Duration::from_secs(3));
    assert!(extra.is_err(), "printed again: {extra:?}");
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    let caught_up = by_source.get("events_api").copied().unwrap_or(0);
    assert!(
        caught_up > 0,
        "a third dropped, some caught up: {by_source:?}"
    );
    assert_eq!(by_source.values().sum::<usize>(), EVENTS);
}

/// `status` ends with the gaps recorded in the secrets file, with their
/// bounds and whether they were caught up.
#[test]
fn status_reports_the_recorded_gaps() {
    use asana_webhooks::secrets::{FileSecretStore, Gap, GapCause, GapStatus, RecoveryStore};
    let (_sandbox, base_url) = sandbox();
    let env = [
        ("ASANA_TOKEN", "cli-token"),
        ("ASANA_BASE_URL", base_url.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let to = chrono::Utc::now();
    runtime.block_on(async {
        let store = FileSecretStore::open(&secrets).await.unwrap();
        let cause = GapCause::WebhookGone {
            old_gid: "1".into(),
            new_gid: "2".into(),
        };
        let mut gap = Gap::open("webhook-gone:1", TASK, cause, None, to);
        gap.status = GapStatus::Unrecoverable {
            reason: "the stream began later".into(),
        };
        store.record_gap(gap).await.unwrap();
    });
    let args = [
        "status",
        "--workspace",
        WORKSPACE,
        "--secrets",
        secrets.to_str().unwrap(),
    ];
    let (code, out, err) = run(&args, &env);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "gap webhook-gone:1 on resource {TASK} (webhook_gone): from the unknown start to {}; cannot be recovered: the stream began later",
            to.to_rfc3339()
        )),
        "{out}"
    );
    let (code, out, err) = run(&[&args[..], &["--json"]].concat(), &env);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["gaps"][0]["id"], "webhook-gone:1");
    assert_eq!(report["gaps"][0]["status"]["status"], "unrecoverable");
}

/// `listen` with the watch: a webhook deleted behind its back is created
/// again through the handshake, the gap recorded (and shown by `status`),
/// and events flow again.
#[test]
fn listen_creates_a_deleted_webhook_again_and_records_the_gap() {
    let (_sandbox, base_url) = sandbox();
    let env = [
        ("ASANA_TOKEN", "cli-token"),
        ("ASANA_BASE_URL", base_url.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    let addr = format!("127.0.0.1:{}", free_port());
    let target = format!("http://{addr}/hooks/heal");
    let listener = Running::start_logged(
        &[
            "listen",
            "--addr",
            &addr,
            "--resource",
            TASK,
            "--workspace",
            WORKSPACE,
            "--target",
            &target,
            "--secrets",
            secrets.to_str().unwrap(),
            "--watch-interval-seconds",
            "1",
            "--catch-up-interval",
            "1",
        ],
        &env,
    );
    let created: serde_json::Value =
        serde_json::from_str(&listener.line_with("\"created\"")).unwrap();
    let old = created["webhook_gid"].as_str().unwrap().to_string();
    let (code, out, err) = run(&["delete", &old], &env);
    assert_eq!(code, 0, "{out}{err}");

    let deadline = Instant::now() + Duration::from_secs(30);
    while !listener.stderr().contains("webhook created again") {
        assert!(
            Instant::now() < deadline,
            "not created again within 30 s; stderr:\n{}",
            listener.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = |json: bool| {
        let mut args = vec![
            "status",
            "--workspace",
            WORKSPACE,
            "--secrets",
            secrets.to_str().unwrap(),
        ];
        if json {
            args.push("--json");
        }
        let (code, out, err) = run(&args, &env);
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    let report: serde_json::Value = serde_json::from_str(status(true).trim()).unwrap();
    let webhooks = report["webhooks"].as_array().unwrap();
    assert_eq!(webhooks.len(), 1, "{report}");
    assert_ne!(webhooks[0]["gid"], old.as_str());
    assert_eq!(webhooks[0]["state"], "healthy");
    assert_eq!(report["gaps"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["gaps"][0]["cause"]["old_gid"], old.as_str());
    assert_eq!(report["gaps"][0]["resource"], TASK);

    let (code, out, err) = run(
        &[
            "trigger",
            "--resource",
            TASK,
            "--action",
            "changed",
            "--field",
            "name",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    let line: serde_json::Value = serde_json::from_str(&listener.line_with("\"event\"")).unwrap();
    assert_eq!(line["event"]["resource"]["gid"], TASK);
    // Delivered by the new webhook (or, should a catch-up run first,
    // caught up: both are the event flowing again).
    if line["source"] == "webhook" {
        assert_eq!(line["webhook_gid"], webhooks[0]["gid"]);
    }
}
