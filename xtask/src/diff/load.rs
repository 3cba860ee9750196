//! Reading a spec version from a file or from git history.

use anyhow::{Context, Result};

/// Reads a spec given as a file path, or as a git revision (`REV` means
/// `REV:openapi/asana_oas.yaml`; `REV:PATH` names another file).
pub fn load(root: &std::path::Path, spec: &str) -> Result<serde_yaml::Value> {
    let path = root.join(spec);
    let bytes = if std::path::Path::new(spec).is_file() {
        std::fs::read(spec)?
    } else if path.is_file() {
        std::fs::read(&path)?
    } else {
        let object = if spec.contains(':') {
            spec.to_string()
        } else {
            format!("{spec}:{}", crate::regen::VENDORED_SPEC)
        };
        let out = std::process::Command::new("git")
            .args(["show", &object])
            .current_dir(root)
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "`{spec}` is neither a file nor a git revision: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        out.stdout
    };
    serde_yaml::from_slice(&bytes).with_context(|| format!("`{spec}` is not YAML"))
}
