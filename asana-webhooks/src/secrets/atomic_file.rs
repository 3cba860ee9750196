//! Files replaced atomically: a new version is written beside the old one
//! (created exclusively, mode 0600, flushed), renamed over it, and the
//! directory flushed, so a crash leaves the old or the new contents and
//! never a mix. [`Stamp`] tells one version of a file from the next.

use std::io::Write;
use std::path::{Path, PathBuf};

/// What the names of temporary files carry after the file's own name.
pub(crate) const TEMP_INFIX: &str = ".tmp.";

/// What tells one version of the file from the next (a rename changes the
/// inode; a rewrite in place changes the time or the length).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

impl Stamp {
    /// The stamp of the version whose metadata this is.
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        Stamp {
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(meta),
            #[cfg(not(unix))]
            inode: 0,
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// The stamp of the file at `path`; `None` when there is no file.
pub(crate) fn stamp(path: &Path) -> std::io::Result<Option<Stamp>> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(Stamp::of(&meta))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A fresh temporary file name beside `path`.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        "{TEMP_INFIX}{}.{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    path.with_file_name(name)
}

/// Writes the full new contents to a new temporary file (created
/// exclusively, so never through a planted file or symlink, with mode 0600
/// from the start) and flushes it to disk.
pub(crate) fn write_temp(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let temp = temp_path(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

/// Renames the temporary file over `path` and flushes the directory entry.
pub(crate) fn commit(temp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(temp, path)?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Replaces the file at `path` with `bytes`; returns the new version's
/// stamp (exact while the caller keeps other writers out).
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<Stamp> {
    let temp = write_temp(path, bytes)?;
    #[cfg(test)]
    slow_disk::wait(path);
    commit(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })?;
    Ok(Stamp::of(&std::fs::metadata(path)?))
}

/// Removes the temporary files that writes to `path` left behind when
/// their process was killed. Call it only while no writer can be active
/// (under the writers' lock). A failure names the path it concerns.
pub(crate) fn remove_stale_temps(path: &Path) -> Result<(), (PathBuf, std::io::Error)> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let mut prefix = name.to_os_string();
    prefix.push(TEMP_INFIX);
    let prefix = prefix.to_string_lossy().into_owned();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((dir.to_path_buf(), e)),
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let stale = entry.path();
            tracing::info!(path = %stale.display(), "removing a temporary file left by an interrupted write");
            std::fs::remove_file(&stale).map_err(|e| (stale.clone(), e))?;
        }
    }
    Ok(())
}

/// Tests make the writes to one file slow, as a busy disk does.
#[cfg(test)]
pub(crate) mod slow_disk {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::Duration;

    static SLOW: Mutex<Option<(PathBuf, Duration)>> = Mutex::new(None);

    /// Every write to `path` takes `delay` longer between its flush and its
    /// rename.
    pub(crate) fn set(path: &Path, delay: Duration) {
        *SLOW.lock().unwrap() = Some((path.to_path_buf(), delay));
    }

    pub(super) fn wait(path: &Path) {
        let delay = match &*SLOW.lock().unwrap() {
            Some((slow, delay)) if slow == path => *delay,
            _ => return,
        };
        std::thread::sleep(delay);
    }
}
