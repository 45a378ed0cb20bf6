//! Secret key files: 0600 from creation, refused when others can read them.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use comity_config::keyfile::MAX_KEY_FILE_BYTES;
use comity_config::{load_key_file, write_new_key_file, KeyFileIoError};
use comity_protocol::{Identity, Timestamp};

fn identity() -> Identity {
    Identity::generate(Timestamp::now())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// Every base64 value in the key file: none may appear in an error.
fn secrets(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| l.contains("seed"))
        .map(|l| l.split_whitespace().last().unwrap().to_string())
        .collect()
}

fn assert_no_secrets(err: &KeyFileIoError, secrets: &[String]) {
    let shown = format!("{err} {err:?}");
    for s in secrets {
        assert!(!shown.contains(s.as_str()), "secret leaked in {shown}");
        assert!(!shown.contains(&s[..12]), "secret prefix leaked in {shown}");
    }
}

#[test]
fn writes_0600_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/node.key");
    let id = identity();
    write_new_key_file(&path, &id).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let loaded = load_key_file(&path).unwrap();
    assert_eq!(loaded.id(), id.id());
    assert_eq!(loaded.encryption_cert(), id.encryption_cert());
    chmod(&path, 0o400);
    assert_eq!(load_key_file(&path).unwrap().id(), id.id());
}

#[test]
fn refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let first = identity();
    write_new_key_file(&path, &first).unwrap();
    let e = write_new_key_file(&path, &identity()).unwrap_err();
    assert!(matches!(e, KeyFileIoError::Exists { .. }), "{e:?}");
    assert!(e.to_string().contains("node.key"), "{e}");
    assert_eq!(load_key_file(&path).unwrap().id(), first.id());
}

#[test]
fn refuses_group_or_world_access_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    write_new_key_file(&path, &identity()).unwrap();
    let secrets = secrets(&path);
    for (m, shown) in [
        (0o644, "0644"),
        (0o640, "0640"),
        (0o604, "0604"),
        (0o610, "0610"),
    ] {
        chmod(&path, m);
        let e = load_key_file(&path).unwrap_err();
        assert!(matches!(e, KeyFileIoError::Permissions { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(shown), "{msg}");
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
        assert_no_secrets(&e, &secrets);
    }
}

#[test]
fn refuses_oversize_and_non_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.key");
    std::fs::write(&big, vec![b'#'; MAX_KEY_FILE_BYTES + 1]).unwrap();
    chmod(&big, 0o600);
    let e = load_key_file(&big).unwrap_err();
    assert!(matches!(e, KeyFileIoError::TooLarge { .. }), "{e:?}");

    let e = load_key_file(dir.path()).unwrap_err();
    assert!(matches!(e, KeyFileIoError::NotRegular { .. }), "{e:?}");

    // A FIFO must be refused, not block the node forever.
    let fifo = dir.path().join("fifo.key");
    let made = std::process::Command::new("mkfifo")
        .arg("-m")
        .arg("600")
        .arg(&fifo)
        .status();
    if made.is_ok_and(|s| s.success()) {
        let e = load_key_file(&fifo).unwrap_err();
        assert!(matches!(e, KeyFileIoError::NotRegular { .. }), "{e:?}");
    }

    let e = load_key_file(&dir.path().join("missing.key")).unwrap_err();
    assert!(e.to_string().contains("missing.key"), "{e}");
}

#[test]
fn parse_errors_do_not_echo_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    write_new_key_file(&path, &identity()).unwrap();
    let secrets = secrets(&path);
    let text = std::fs::read_to_string(&path).unwrap();

    // Corrupt one seed and drop the other: still no secret in the error.
    let broken: String = text
        .lines()
        .map(|l| {
            if l.starts_with("identity-seed") {
                format!("{l}!\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, &broken).unwrap();
    chmod(&bad, 0o600);
    let e = load_key_file(&bad).unwrap_err();
    assert!(matches!(e, KeyFileIoError::Parse { .. }), "{e:?}");
    assert_no_secrets(&e, &secrets);

    let shuffled = text.replacen("identity-seed", "identity-sed", 1);
    std::fs::write(&bad, &shuffled).unwrap();
    let e = load_key_file(&bad).unwrap_err();
    assert_no_secrets(&e, &secrets);

    std::fs::write(&bad, b"\xff\xfe").unwrap();
    let e = load_key_file(&bad).unwrap_err();
    assert!(matches!(e, KeyFileIoError::NotUtf8 { .. }), "{e:?}");
}
