//! A small filesystem of the test's size: a tmpfs mounted on a directory
//! (a node's data directory) until dropped. Mounting needs root; elsewhere
//! a test using it says it is skipped, and under `CI=true` a skip fails.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB (mode 0700) on `dir`, creating it;
    /// `None` when this machine cannot (not root).
    pub fn mount(dir: &Path, mib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let uid = Command::new("id").arg("-u").output().ok();
        let root = uid.is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mounted = root
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700")])
                .arg("tmpfs")
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success());
        if mounted {
            return Some(Tmpfs {
                dir: dir.to_path_buf(),
            });
        }
        let why = if root {
            "mount -t tmpfs failed"
        } else {
            "mounting a tmpfs needs root"
        };
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: a small-disk test cannot be skipped ({why})"
        );
        eprintln!("SKIPPED: {why}; run as root to test a small or full disk");
        None
    }

    /// Grows (or shrinks) the filesystem to `mib` MiB, mounted as it is.
    pub fn grow(&self, mib: u32) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot grow the tmpfs at {}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
