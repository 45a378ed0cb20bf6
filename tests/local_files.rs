//! What `comityd` writes on its host is its own, whatever the umask it was
//! started with: a data directory it creates is 0700 with 0600 files, and
//! one that others can read is refused at start, as a readable key is.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use comity_tests::TestNode;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");

/// Every directory and file under `dir` with its mode.
fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((
            path.display().to_string(),
            meta.is_dir(),
            meta.permissions().mode() & 0o777,
        ));
        if meta.is_dir() {
            modes(&path, out);
        }
    }
}

fn umask() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Umask:"))
        .unwrap_or("Umask: ?")
        .to_string()
}

#[test]
fn a_data_directory_comityd_creates_is_its_users_alone() {
    // Started under umask 022 whatever this process has: what the files
    // come out as is then comityd's own doing.
    let bin = tempfile::tempdir().unwrap();
    let wrapper = bin.path().join("comityd-umask-022");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\numask 022\nexec '{COMITYD}' \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut a = TestNode::new(
        wrapper.to_str().unwrap(),
        "Ministry of Justice of Arcadia",
        "AR",
    );
    let fresh = a.dir().join("elsewhere/data");
    let fresh_text = fresh.display().to_string();
    println!("test process {}; comityd started under umask 022", umask());
    a.start_with_env(&[("COMITY_DATA_DIR", &fresh_text)]);
    a.sigterm();
    let mut all = vec![(fresh_text.clone(), true, 0)];
    all[0].2 = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    modes(&fresh, &mut all);
    assert!(all.len() > 5, "the store wrote files: {all:?}");
    for (path, is_dir, mode) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode & 0o077, 0, "{path} is {mode:o}, expected {want:o}");
    }
}

#[test]
fn a_data_directory_others_can_read_is_refused_at_start() {
    let a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let open = a.dir().join("open-data");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(COMITYD)
        .arg("--config")
        .arg(a.config_path())
        .env("COMITY_DATA_DIR", &open)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("chmod 700"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&open).unwrap().count(),
        0,
        "nothing written"
    );
}
