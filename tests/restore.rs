//! Restore is a protocol question: a node restored from a backup is a
//! rollback for its witnesses, which hold checkpoints newer than the backup.
//! With real processes: A is backed up while it sends to B, goes on sending
//! (B cosigns beyond the backup), is restored from the backup into its own
//! data directory and started. B checks A's restoration statement, records
//! the gap in its log and as an acknowledged `restored` alarm (not a fork),
//! and cosigns A's log again; A's later messages are delivered; both logs
//! verify offline and name the restoration.
#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use comity_protocol::audit::bundle::{verify_bundle, Report, VerifyOptions};
use comity_protocol::audit::AuditKind;
use comity_protocol::NodeId;
use comity_tests::{comityd_beside, pair, TestNode};
use serde_json::Value;

const COMITY: &str = env!("CARGO_BIN_EXE_comity");
const LONG: Duration = Duration::from_secs(60);

fn comity(args: &[&str]) -> Output {
    Command::new(COMITY).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The largest size of `node`'s log that `witness` cosigned, as `node` knows.
fn cosigned_by(node: &TestNode, witness: &TestNode) -> u64 {
    node.get("/v1/node")["audit"]["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["peer"].as_str() == Some(witness.id.to_string().as_str()))
        .and_then(|w| w["cosigned_size"].as_u64())
        .unwrap_or(0)
}

fn alarms(node: &TestNode) -> Vec<Value> {
    node.get("/v1/alarms")["alarms"].as_array().unwrap().clone()
}

fn verify(bundle: &str, node: NodeId, witness: NodeId) -> Report {
    verify_bundle(
        Cursor::new(bundle.as_bytes()),
        &VerifyOptions {
            expected_node: Some(node),
            required_witnesses: vec![witness],
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap()
}

/// Waits for `f`; on a timeout shows the warnings and errors of both logs.
fn wait(a: &TestNode, b: &TestNode, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LONG;
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let notable = |n: &TestNode| {
        n.log()
            .lines()
            .filter(|l| {
                (l.contains("WARN")
                    || l.contains("ERROR")
                    || l.contains("panicked")
                    || l.contains("reject"))
                    && !l.contains("over budget")
            })
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    };
    panic!(
        "timed out waiting for {what}\n--- A ---\n{}\n--- B ---\n{}",
        notable(a),
        notable(b)
    );
}

fn delivered(node: &TestNode, id: &str) -> bool {
    node.get(&format!("/v1/messages/{id}"))["state"].as_str() == Some("delivered")
}

#[test]
fn a_restored_node_is_witnessed_again_and_its_gap_stays_on_record() {
    let (mut a, mut b) = pair(comityd_beside(COMITY).to_str().unwrap());
    let work = tempfile::tempdir().unwrap();
    // Delivered before the backup: messages accepted before A first met B
    // are sealed only when sent, and one still unsealed in the backup is
    // sealed anew after the restore, which B, holding the first sealing,
    // refuses as `id-reused` (a limit of restoring, not of witnessing).
    let first = a.send_many(&b, 20, 2);
    wait(&a, &b, "the first messages delivered", || {
        first.iter().all(|id| delivered(&a, id))
    });

    // A superseded encryption key, in its grace period: in the backup too.
    let config = a.config_path().to_str().unwrap().to_string();
    let o = comity(&["--config", &config, "keys", "rotate-encryption", "--json"]);
    assert!(o.status.success(), "rotation failed: {}", text(&o.stderr));
    let rotated: Value = serde_json::from_slice(&o.stdout).unwrap();
    let superseded = rotated["previous"][0]["encryption_key"].clone();
    assert!(superseded.is_string(), "{rotated}");

    // The backup, taken while A sends to B.
    let pass = work.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let pass = pass.to_str().unwrap().to_string();
    let stop = AtomicBool::new(false);
    let o = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                a.send(&b, &format!("during backup {i}"));
                i += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let o = comity(&[
            "--config",
            &config,
            "backup",
            "--out",
            work.path().to_str().unwrap(),
            "--passphrase-file",
            &pass,
            "--json",
        ]);
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        o
    });
    assert!(o.status.success(), "backup failed: {}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let file = v["path"].as_str().unwrap().to_string();
    let n = v["checkpoint"].as_u64().unwrap();

    // A goes on: B cosigns a checkpoint beyond the backup. These entries
    // are what the restore loses.
    let lost: Vec<String> = (0..10)
        .map(|i| a.send(&b, &format!("after the backup {i}")))
        .collect();
    wait(&a, &b, "B cosigns beyond the backup", || {
        lost.iter().all(|id| delivered(&a, id)) && cosigned_by(&a, &b) > n
    });
    let m = cosigned_by(&a, &b);
    a.sigterm();

    // Restored into its own (emptied) data directory.
    let data = a.dir().join("data");
    assert!(data.join("store").is_dir(), "A's store is not in {data:?}");
    std::fs::remove_dir_all(&data).unwrap();
    let o = comity(&[
        "--config",
        &config,
        "restore",
        &file,
        "--passphrase-file",
        &pass,
    ]);
    assert!(o.status.success(), "restore failed: {}", text(&o.stderr));
    assert!(
        data.join("restored-from-backup.json").is_file(),
        "restore left no marker"
    );
    let started = std::time::Instant::now();
    a.start();
    assert_eq!(
        a.get("/v1/keys")["previous"][0]["encryption_key"],
        superseded,
        "the superseded key came back with the restore"
    );

    // B accepts the statement: an acknowledged `restored` alarm naming the
    // gap, no fork or rollback alarm, nothing unacknowledged.
    b.wait_until(LONG, "B accepts A's restoration", || {
        alarms(&b).iter().any(|x| x["kind"] == "restored")
    });
    eprintln!(
        "restored to {n} (B had cosigned {m}): B accepted the restoration {} ms after A's start began",
        started.elapsed().as_millis()
    );
    let b_alarms = alarms(&b);
    let restored = b_alarms.iter().find(|x| x["kind"] == "restored").unwrap();
    assert_eq!(restored["peer"].as_str(), Some(a.id.to_string().as_str()));
    assert_eq!(
        restored["acknowledged"]["by"].as_str(),
        Some("restoration-statement"),
        "{restored}"
    );
    let t = restored["text"].as_str().unwrap();
    assert!(
        t.contains(&format!("at size {n} ")) && t.contains(", as cosigned"),
        "{t}"
    );
    assert!(
        b_alarms.iter().all(|x| x["kind"] == "restored"),
        "B raised other alarms: {b_alarms:?}"
    );
    assert!(
        b.get("/v1/node")["audit"]["alarms"]
            .as_array()
            .unwrap()
            .is_empty(),
        "an unacknowledged alarm on B"
    );

    // A's messages after the restore are delivered, and B cosigns A's log
    // as it goes on.
    let after: Vec<String> = (0..5)
        .map(|i| a.send(&b, &format!("after the restore {i}")))
        .collect();
    wait(
        &a,
        &b,
        "A's messages after the restore are delivered",
        || after.iter().all(|id| delivered(&a, id)),
    );
    let failed = a.get("/v1/messages?state=failed");
    assert_eq!(
        failed.as_array().map(Vec::len),
        Some(0),
        "A's messages refused after the restore: {failed}"
    );
    assert!(
        alarms(&a).is_empty(),
        "A has alarms (a witness refused its checkpoints?): {:?}",
        alarms(&a)
    );

    // A's log verifies with B required as witness, and shows the restoration
    // at entry n.
    let bundle = a.get_text("/v1/audit/export");
    let report = verify(&bundle, a.id, b.id);
    assert!(report.is_valid(), "{:?}", report.findings);
    assert!(
        cosigned_by(&a, &b) > n + 1,
        "B cosigned only {}",
        cosigned_by(&a, &b)
    );
    let own: Vec<_> = report
        .restorations
        .iter()
        .filter(|r| r.kind == AuditKind::LogRestored)
        .collect();
    assert_eq!(own.len(), 1, "{:?}", report.restorations);
    assert_eq!(own[0].entry, n);
    assert_eq!(own[0].restored_size, Some(n));
    // The CLI says so too.
    let path = work.path().join("a.bundle");
    std::fs::write(&path, &bundle).unwrap();
    let o = comity(&[
        "audit",
        "verify",
        path.to_str().unwrap(),
        "--node",
        &a.id.to_string(),
        "--witness",
        &b.id.to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stdout));
    assert!(
        text(&o.stdout).contains(&format!(
            "entry {n}: this log was restored from a backup at size {n}"
        )),
        "{}",
        text(&o.stdout)
    );

    // B's log verifies (A, restored, witnesses it again) and holds the
    // restoration entry naming N and M.
    let bundle = b.get_text("/v1/audit/export");
    let report = verify(&bundle, b.id, a.id);
    assert!(report.is_valid(), "{:?}", report.findings);
    let peer: Vec<_> = report
        .restorations
        .iter()
        .filter(|r| r.kind == AuditKind::PeerRestored)
        .collect();
    assert_eq!(peer.len(), 1, "{:?}", report.restorations);
    assert_eq!(peer[0].peer, Some(a.id));
    assert_eq!(peer[0].restored_size, Some(n));
    let witnessed = peer[0].witnessed_size.unwrap();
    assert!(witnessed >= m && witnessed > n, "{witnessed} vs {m}, {n}");

    // Restarted, A presents nothing again and B records nothing again.
    a.sigterm();
    a.start();
    let one = a.send(&b, "after the restart");
    a.wait_until(LONG, "delivered after the restart", || delivered(&a, &one));
    assert_eq!(
        alarms(&b)
            .iter()
            .filter(|x| x["kind"] == "restored")
            .count(),
        1
    );
    assert!(!Path::new(&data.join("restored-from-backup.json")).exists());
    a.sigterm();
    b.sigterm();
}
