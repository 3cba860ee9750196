//! The on-disk inbox on a real filesystem that fills up: commits fail while
//! the disk is full (so the receiver answers 503 and Asana delivers again),
//! and once space is freed the inbox reopens by itself and accepts
//! deliveries again, with nothing committed before lost.
//!
//! A small tmpfs is mounted for it, which needs root (CI runs as root).
//! Elsewhere the test says so and does nothing, unless `CI` is set, where
//! it fails rather than skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use asana_webhooks::inbox::{FileInbox, Inbox, VerifiedDelivery};
use asana_webhooks::secrets::TargetKey;

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root {
            assert!(
                std::env::var_os("CI").is_none(),
                "mounting a small tmpfs needs root, and CI runs as root"
            );
            eprintln!("not root: the full-disk test needs to mount a tmpfs; skipped here");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed");
        Some(Self { _dir: dir, mount })
    }

    fn path(&self) -> &Path {
        &self.mount
    }

    /// Writes a file until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.mount.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        // Bounded: far more chunks than the filesystem can hold.
        for _ in 0..10_000 {
            if file
                .write_all(&chunk)
                .and_then(|()| file.sync_all())
                .is_err()
            {
                return filler;
            }
        }
        panic!("the filesystem never filled up");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn delivery(n: usize, padding: usize) -> VerifiedDelivery {
    let body = format!(
        r#"{{"events":[{{"action":"changed","resource":{{"gid":"{n}","resource_type":"task"}},"created_at":"2026-01-01T00:00:00Z","pad":"{}"}}]}}"#,
        "x".repeat(padding)
    );
    VerifiedDelivery::from_body(
        TargetKey::from_path_and_query("/hooks/disk"),
        Some("1".into()),
        body.as_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_full_disk_stops_the_inbox_only_until_space_is_freed() {
    let Some(disk) = SmallDisk::mount("4m") else {
        return;
    };
    let inbox = FileInbox::open(disk.path().join("inbox.redb"))
        .await
        .unwrap();
    let mut committed = 0;
    for n in 0..5 {
        inbox.append(delivery(n, 100)).await.unwrap();
        committed += 1;
    }
    let filler = disk.fill();
    // Bounded: the disk is full, so a commit fails within a few appends.
    let mut failed = None;
    for n in 5..200 {
        match inbox.append(delivery(n, 16 * 1024)).await {
            Ok(_) => committed += 1,
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let failed = failed.expect("a commit fails on a full disk");
    eprintln!("while full: {failed}");
    // Still refused while full, and quickly (no tight retry loop).
    assert!(inbox.append(delivery(1_000, 100)).await.is_err());

    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    loop {
        match inbox.append(delivery(2_000, 100)).await {
            Ok(_) => {
                committed += 1;
                break;
            }
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the inbox never recovered after space was freed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    eprintln!("recovered {:?} after space was freed", started.elapsed());
    // Everything committed, before and after, is there, once.
    assert_eq!(inbox.stats().await.unwrap().waiting, committed);
    let mut handed_out = 0;
    while handed_out < committed {
        let item = tokio::time::timeout(Duration::from_secs(5), inbox.next())
            .await
            .expect("an item")
            .expect("open");
        item.ack().await.unwrap();
        handed_out += 1;
    }
    assert_eq!(inbox.stats().await.unwrap().waiting, 0);
    inbox.close();
}
