//! Project automation for asana-webhooks. Run `cargo xtask help`.

mod diff;
mod fixes;
mod regen;
mod surface;
mod vendor;

use std::process::ExitCode;

const USAGE: &str = "\
cargo xtask <command>

commands:
  regen           derive openapi/webhooks.yaml from openapi/asana_oas.yaml and
                  regenerate asana-webhooks/src/generated.rs with progenitor
  regen --check   regenerate in memory; print a diff and exit 1 when the
                  committed files are out of date
  spec-diff OLD NEW [--json] [--allow-breaking] [--acknowledged-in FILE]
                  compare the webhooks surfaces of two spec versions (files, or
                  git revisions of openapi/asana_oas.yaml); exit 1 on a breaking
                  change unless allowed, or named in FILE (e.g. CHANGELOG.md)
  update-spec PATH
                  vendor a new official spec: provenance, regen, spec-diff,
                  CHANGELOG entry
  help            this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["regen"] => regen_cmd(false),
        ["regen", "--check"] => regen_cmd(true),
        ["spec-diff", old, new, flags @ ..] => spec_diff_cmd(old, new, flags),
        ["update-spec", path] => vendor::run(path).map(|()| ExitCode::SUCCESS),
        ["help"] | ["--help"] | ["-h"] | [] => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprint!("unknown arguments {args:?}\n\n{USAGE}");
            Ok(ExitCode::from(2))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn spec_diff_cmd(old: &str, new: &str, flags: &[&str]) -> anyhow::Result<ExitCode> {
    let (mut json, mut allow, mut acknowledged) = (false, false, None);
    let mut rest = flags.iter();
    while let Some(flag) = rest.next() {
        match *flag {
            "--json" => json = true,
            "--allow-breaking" => allow = true,
            "--acknowledged-in" => {
                acknowledged = Some(
                    *rest
                        .next()
                        .ok_or_else(|| anyhow::anyhow!("--acknowledged-in needs a file"))?,
                )
            }
            other => anyhow::bail!("unknown flag `{other}`\n\n{USAGE}"),
        }
    }
    let root = regen::workspace_root();
    let changes = diff::diff(&diff::load(&root, old)?, &diff::load(&root, new)?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&changes)?);
    } else {
        print!("{}", diff::render(&changes));
    }
    let acknowledged_text = match acknowledged {
        Some(file) => std::fs::read_to_string(root.join(file)).unwrap_or_default(),
        None => String::new(),
    };
    let unacknowledged: Vec<String> = changes
        .iter()
        .filter(|c| c.breaking)
        .map(diff::Change::id)
        .filter(|id| !acknowledged_text.contains(id.as_str()))
        .collect();
    if unacknowledged.is_empty() || allow {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} breaking change(s) not acknowledged{}:\n  {}",
        unacknowledged.len(),
        acknowledged.map(|f| format!(" in {f}")).unwrap_or_default(),
        unacknowledged.join("\n  ")
    );
    Ok(ExitCode::FAILURE)
}

fn regen_cmd(check: bool) -> anyhow::Result<ExitCode> {
    let stale = regen::run(check)?;
    if check && !stale.is_empty() {
        eprintln!(
            "out of date: {}\nrun `cargo xtask regen` and commit the result",
            stale.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    if check {
        println!("generated code is in sync with {}", regen::VENDORED_SPEC);
    } else if stale.is_empty() {
        println!("nothing changed");
    } else {
        println!("regenerated {}", stale.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}
