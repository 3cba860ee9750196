//! Project automation for asana-webhooks. Run `cargo xtask help`.

mod fixes;
mod regen;
mod surface;

use std::process::ExitCode;

const USAGE: &str = "\
cargo xtask <command>

commands:
  regen           derive openapi/webhooks.yaml from openapi/asana_oas.yaml and
                  regenerate asana-webhooks/src/generated.rs with progenitor
  regen --check   regenerate in memory; print a diff and exit 1 when the
                  committed files are out of date
  help            this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["regen"] => regen_cmd(false),
        ["regen", "--check"] => regen_cmd(true),
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
