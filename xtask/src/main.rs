//! Project automation for asana-webhooks. Run `cargo xtask help`.

mod diff;
mod fixes;
mod regen;
mod report;
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
  spec-diff OLD NEW [--format text|markdown|github|json] [--json]
                  [--ignore-file FILE] [--acknowledged-in FILE] [--allow-breaking]
                  compare the webhooks surfaces of two spec versions (files, or
                  git revisions of openapi/asana_oas.yaml), grouped by operation.
                  Each change is one of:
                    breaking     upgrading the crate breaks its users: code that
                                 compiled no longer compiles (a method, type,
                                 field or enum variant removed or changed, a
                                 field turning between T and Option<T>, a
                                 format or bound that changes the generated
                                 type, an operationId renamed), or answers
                                 that decoded no longer decode
                    server-side  Asana's contract changed at Asana, whatever the
                                 crate version (a scope added, an auth
                                 alternative added or removed, a tighter limit
                                 or a newly required input that leaves the
                                 generated Rust unchanged): calls that worked
                                 may now be refused. Not breaking for semver,
                                 but it must be named in CHANGELOG.md
                    non-breaking nothing that worked stops working
                  --ignore-file (default .spec-diff-ignore when present) lists
                  accepted changes, one `ID -- REASON` per line; ID is a
                  change's `location: change` as reports print it.
                  --acknowledged-in FILE: every breaking and server-side change
                  must be named in FILE (CHANGELOG.md), by its ID; named ones
                  then pass.
                  exit 0: nothing breaking, or every breaking change accepted
                  (named with --acknowledged-in, in the ignore file, or
                  --allow-breaking); 1: a breaking change not accepted, or,
                  with --acknowledged-in, a breaking or server-side change not
                  named; 2: could not compare (missing file, unparsable spec,
                  bad arguments)
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
        // "Could not check" must not read as "breaking" (exit 1).
        ExitCode::from(2)
    })
}

/// The value after `flag`.
fn value<'a>(flag: &str, rest: &mut std::slice::Iter<'_, &'a str>) -> anyhow::Result<&'a str> {
    rest.next()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
}

fn spec_diff_cmd(old: &str, new: &str, flags: &[&str]) -> anyhow::Result<ExitCode> {
    let (mut format, mut allow, mut acknowledged, mut ignore_file) =
        (report::Format::Text, false, None, None);
    let mut rest = flags.iter();
    while let Some(flag) = rest.next() {
        match *flag {
            "--json" => format = report::Format::Json,
            "--format" => format = report::Format::parse(value("--format", &mut rest)?)?,
            "--allow-breaking" => allow = true,
            "--acknowledged-in" => acknowledged = Some(value("--acknowledged-in", &mut rest)?),
            "--ignore-file" => ignore_file = Some(value("--ignore-file", &mut rest)?),
            other => anyhow::bail!("unknown flag `{other}`\n\n{USAGE}"),
        }
    }
    let root = regen::workspace_root();
    let ignore = match ignore_file {
        Some(file) => std::fs::read_to_string(root.join(file))
            .map_err(|e| anyhow::anyhow!("reading {file}: {e}"))?,
        None => std::fs::read_to_string(root.join(".spec-diff-ignore")).unwrap_or_default(),
    };
    let ignore = report::parse_ignore(&ignore)?;
    let changes = diff::diff(&diff::load(&root, old)?, &diff::load(&root, new)?)?;
    let (changes, ignored) = report::apply_ignore(changes, &ignore);
    for entry in report::unused(&ignore, &ignored) {
        eprintln!("note: ignore entry matches no change: {}", entry.id);
    }
    print!("{}", report::render(format, &changes, &ignored));

    let breaking = changes.iter().any(|c| c.class == diff::Class::Breaking);
    let mut failed = breaking && !allow;
    if let Some(file) = acknowledged {
        let text = std::fs::read_to_string(root.join(file))
            .map_err(|e| anyhow::anyhow!("reading {file}: {e}"))?;
        let unnamed: Vec<String> = changes
            .iter()
            .filter(|c| c.class != diff::Class::NonBreaking)
            .map(diff::Change::id)
            .filter(|id| !text.contains(id.as_str()))
            .collect();
        if !unnamed.is_empty() && !allow {
            eprintln!(
                "{} breaking or server-side change(s) not named in {file}:\n  {}",
                unnamed.len(),
                unnamed.join("\n  ")
            );
            failed = true;
        } else {
            failed = false;
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
