//! The `asana-webhooks` command line end to end: a sandbox process, a
//! listener process, and the management commands, all on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_asana-webhooks");
const WORKSPACE: &str = "1100000000000001";
const PROJECT: &str = "1100000000000003";
const TASK: &str = "1100000000000004";

/// A background process whose stdout lines arrive on a channel; killed on drop.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_remove("ASANA_TOKEN")
            .env_remove("ASANA_BASE_URL")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        Self { child, lines }
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
