//! The README's first command: `comity demo` runs the three-country story
//! to the end, every audit bundle verifies, and it exits 0.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

#[test]
fn the_demo_runs_to_completion_and_every_audit_log_verifies() {
    let keep = tempfile::tempdir().unwrap();
    let out = Command::new(COMITY)
        .args(["demo", "--keep"])
        .arg(keep.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("VERIFIED audit log of").count(),
        3,
        "{stdout}"
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert_eq!(stdout.matches("stopped: exit 0").count(), 3, "{stdout}");
    assert!(
        stdout.contains("registered -> in-execution -> executed"),
        "{stdout}"
    );
    assert!(stdout.contains("RESTRICTION"), "{stdout}");
    // The evidence: each digest as attached and as read out on the other side.
    for file in ["request-letter.pdf", "account-statements-2022-2025.zip"] {
        assert!(stdout.contains(file), "{stdout}");
    }
    assert_eq!(
        stdout.matches("read out and verified at").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("refused"), "{stdout}");
    // --keep leaves the network for inspection.
    for cc in ["ar", "bo", "ca"] {
        assert!(keep.path().join(cc).join("comity.toml").exists());
        assert!(keep.path().join(cc).join("audit-bundle.jsonl").exists());
    }
}
