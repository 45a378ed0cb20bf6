//! The audit log of real nodes: peers cosign each other's checkpoints, an
//! exported bundle verifies offline and every tampering is caught, and a
//! node restored from an old copy of its database is refused by its
//! witness, which raises an alarm.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::Cursor;
use std::time::Duration;

use comity_node::store::OutboundState;
use comity_protocol::audit::bundle::{verify_bundle, Report, VerifyOptions};
use comity_protocol::audit::checkpoint::{origin_for, sign_checkpoint, Checkpoint};
use comity_protocol::audit::entry::{AuditEntry, AuditKind};
use comity_protocol::{Digest, MessageId};
use comity_tests::TestNode;
use serde_json::Value;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");
const LONG: Duration = Duration::from_secs(60);

fn pair() -> (TestNode, TestNode) {
    let a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let b = TestNode::new(COMITYD, "Attorney General of Borduria", "BO");
    a.pin(&b);
    b.pin(&a);
    (a, b)
}

fn alarms(node: &TestNode) -> Vec<String> {
    node.get("/v1/node")["audit"]["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn verify(bundle: &str, node: &TestNode, witness: Option<&TestNode>) -> Report {
    let options = VerifyOptions {
        expected_node: Some(node.id),
        required_witnesses: witness.map(|w| vec![w.id]).unwrap_or_default(),
        allow_unwitnessed_tail: 0,
        threads: 1,
    };
    verify_bundle(Cursor::new(bundle.as_bytes()), &options).unwrap()
}

fn findings(r: &Report) -> Vec<String> {
    r.findings
        .iter()
        .map(|f| {
            serde_json::to_value(f).unwrap()["finding"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Line numbers (0-based) of the entry lines of a bundle.
fn entry_lines(lines: &[&str]) -> Vec<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("{\"entry\""))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn peers_cosign_checkpoints_and_an_export_verifies_and_exposes_any_tampering() {
    let (mut a, mut b) = pair();
    a.start();
    b.start();
    let ids = a.send_many(&b, 30, 2);
    b.send_many(&a, 30, 2);
    a.wait_until(LONG, "delivered", || a.outbox_count("delivered") == 30);
    a.wait_until(LONG, "B's cosignature on A's log", || a.cosigned_by(&b) > 0);
    b.wait_until(LONG, "A's cosignature on B's log", || b.cosigned_by(&a) > 0);

    let bundle = a.get_text("/v1/audit/export");
    // The export ends with a fresh checkpoint covering every entry, and it
    // waited for the connected witness to cosign that one too: a fresh
    // export is witnessed to its end.
    let report = verify(&bundle, &a, None);
    assert!(report.is_valid(), "{:?}", report.findings);
    assert_eq!(report.unwitnessed, None, "every entry cosigned");
    let witnessed = verify(&bundle, &a, Some(&b));
    assert!(witnessed.is_valid(), "{:?}", witnessed.findings);
    let b_cosigned = report.witnesses.iter().find(|w| w.witness == b.id).unwrap();
    assert!(b_cosigned.cosigned_checkpoints >= 1);
    // A's 30 messages: accepted, sent, receipt received; B's: received, receipt sent.
    assert!(report.entries >= 150, "{} entries", report.entries);
    // Entries carry digests and metadata, never the body.
    assert!(!bundle.contains("Please provide the bank records"));
    assert!(bundle.contains(&ids[0]));

    let lines: Vec<&str> = bundle.lines().collect();
    let entries = entry_lines(&lines);
    let rebuild = |ls: Vec<String>| ls.join("\n") + "\n";
    let owned = || lines.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // One byte of one entry's leaf.
    let mut ls = owned();
    let target = entries[10];
    let mut v: Value = serde_json::from_str(&ls[target]).unwrap();
    let leaf = v["leaf"].as_str().unwrap().to_string();
    let mut bytes = base64_decode(&leaf);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    v["leaf"] = Value::from(base64_encode(&bytes));
    ls[target] = v.to_string();
    let r = verify(&rebuild(ls), &a, None);
    assert!(!r.is_valid());
    assert!(
        findings(&r)
            .iter()
            .any(|f| f.starts_with("entry") || f == "checkpoint-root-mismatch"),
        "{:?}",
        r.findings
    );

    // An entry deleted.
    let mut ls = owned();
    ls.remove(entries[20]);
    let r = verify(&rebuild(ls), &a, None);
    assert!(!r.is_valid());
    assert!(
        findings(&r).contains(&"sequence-gap".to_string()),
        "{:?}",
        r.findings
    );

    // Two entries swapped.
    let mut ls = owned();
    ls.swap(entries[5], entries[6]);
    let r = verify(&rebuild(ls), &a, None);
    assert!(
        findings(&r).contains(&"sequence-gap".to_string()),
        "{:?}",
        r.findings
    );

    // The tail truncated (checkpoints kept).
    let mut ls = owned();
    let cut = entries.len() - 5;
    for i in entries[cut..].iter().rev() {
        ls.remove(*i);
    }
    let r = verify(&rebuild(ls), &a, None);
    assert!(
        findings(&r).contains(&"checkpoint-beyond-log".to_string()),
        "{:?}",
        r.findings
    );

    // A checkpoint's signature replaced.
    let mut ls = owned();
    let cp = ls
        .iter()
        .position(|l| l.starts_with("{\"checkpoint\""))
        .unwrap();
    let mut v: Value = serde_json::from_str(&ls[cp]).unwrap();
    let note = v["checkpoint"].as_str().unwrap().to_string();
    let sig_at = note.rfind("— ").unwrap();
    let (body, sig_line) = note.split_at(sig_at);
    let mut sig_line = sig_line.to_string();
    let flip_at = sig_line.len() - 6;
    let c = sig_line.as_bytes()[flip_at];
    sig_line.replace_range(flip_at..flip_at + 1, if c == b'A' { "B" } else { "A" });
    v["checkpoint"] = Value::from(format!("{body}{sig_line}"));
    ls[cp] = v.to_string();
    let r = verify(&rebuild(ls), &a, None);
    assert!(!r.is_valid());
    assert!(
        findings(&r).iter().any(|f| f.starts_with("checkpoint")),
        "{:?}",
        r.findings
    );

    // A checkpoint from a forked log: signed by A's real key, same origin,
    // a size the log has, another root.
    let mut ls = owned();
    let forged = sign_checkpoint(
        &a.identity(),
        &Checkpoint {
            origin: origin_for(&a.id),
            size: 40,
            root: Digest([7; 32]),
        },
    )
    .unwrap();
    let at = ls
        .iter()
        .position(|l| l.starts_with("{\"checkpoint\""))
        .unwrap();
    ls.insert(at, serde_json::json!({ "checkpoint": forged }).to_string());
    let r = verify(&rebuild(ls), &a, None);
    assert!(!r.is_valid());
    assert!(
        findings(&r)
            .iter()
            .any(|f| f == "checkpoint-root-mismatch" || f == "checkpoints-inconsistent"),
        "{:?}",
        r.findings
    );

    // The offline CLI says the same, with its exit code.
    let comity = std::path::Path::new(COMITYD).with_file_name("comity");
    if comity.exists() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.jsonl");
        std::fs::write(&good, &bundle).unwrap();
        let out = std::process::Command::new(&comity)
            .args([
                "audit",
                "verify",
                good.to_str().unwrap(),
                "--node",
                &a.id.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut ls = owned();
        ls.remove(entries[3]);
        let bad = dir.path().join("bad.jsonl");
        std::fs::write(&bad, rebuild(ls)).unwrap();
        let out = std::process::Command::new(&comity)
            .args(["audit", "verify", bad.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stdout).contains("PROBLEM"));
    }

    // An inclusion proof for one message, checked offline.
    let proof = a.get_text(&format!("/v1/audit/proof/{}", ids[0]));
    let report = comity_protocol::audit::proof_file::verify_inclusion_file(&proof).unwrap();
    assert_eq!(report.message_id.to_string(), ids[0]);
    assert!(
        report.entries.len() >= 3,
        "accepted, sent, receipt received"
    );

    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
}

#[test]
fn a_node_rolled_back_to_an_old_database_is_refused_by_its_witness() {
    let (mut a, mut b) = pair();
    a.start();
    b.start();
    a.send_many(&b, 10, 1);
    a.wait_until(LONG, "first cosignature", || a.cosigned_by(&b) > 0);
    assert!(a.sigterm().success());
    let backup = tempfile::tempdir().unwrap();
    copy_dir(&a.dir().join("data"), &backup.path().join("data"));

    // A goes on; B cosigns a larger log.
    a.start();
    let before = a.cosigned_by(&b);
    a.send_many(&b, 60, 2);
    a.wait_until(LONG, "a newer cosignature", || {
        a.cosigned_by(&b) > before + 60
    });
    assert!(a.sigterm().success());

    // A is restored from the old copy.
    std::fs::remove_dir_all(a.dir().join("data")).unwrap();
    copy_dir(&backup.path().join("data"), &a.dir().join("data"));
    a.start();
    a.send_many(&b, 5, 1);
    b.wait_until(LONG, "the witness's alarm", || !alarms(&b).is_empty());
    let b_alarms = alarms(&b);
    assert!(b_alarms[0].contains(&a.id.to_string()), "{b_alarms:?}");
    a.wait_until(LONG, "the alarm at the node itself", || {
        !alarms(&a).is_empty()
    });
    assert!(
        alarms(&a)[0].contains("refused our checkpoint"),
        "{:?}",
        alarms(&a)
    );

    // Each alarm names the peer it is about, by its pinned country.
    let b_listed = b.get("/v1/alarms");
    assert_eq!(b_listed["alarms"][0]["country"], "AR", "{b_listed}");
    assert_eq!(b_listed["alarms"][0]["kind"], "peer-checkpoint");
    let a_listed = a.get("/v1/alarms");
    assert_eq!(a_listed["alarms"][0]["country"], "BO", "{a_listed}");
    assert_eq!(a_listed["alarms"][0]["kind"], "checkpoint-refused");

    // B recorded the refusal in its own log.
    let bundle = b.get_text("/v1/audit/export");
    assert!(bundle.contains("checkpoint-refused"));
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
}

/// The (kind, message) of every entry in a bundle.
fn logged(bundle: &str) -> std::collections::HashSet<(AuditKind, MessageId)> {
    bundle
        .lines()
        .filter(|l| l.starts_with("{\"entry\""))
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let leaf = base64_decode(v["leaf"].as_str().unwrap());
            let e = AuditEntry::from_leaf(&leaf).unwrap();
            e.message_id.map(|m| (e.kind, m))
        })
        .collect()
}

#[test]
fn after_kill9_of_both_nodes_every_event_on_disk_has_its_entry() {
    let (mut a, mut b) = pair();
    a.start();
    a.send_many(&b, 600, 4);
    b.start();
    // A receipt at A means B has flushed what it names: the kill then
    // lands with something on B's disk (B's inbox count alone is not
    // durable yet).
    a.wait_until(LONG, "first messages delivered", || {
        a.outbox_count("delivered") > 0
    });
    b.kill9();
    a.kill9();
    // What the stores hold after the crash, before anything else happens.
    let (sa, sb) = (a.snapshot(), b.snapshot());
    let delivered: Vec<MessageId> = sa
        .outbound
        .iter()
        .filter(|(_, s)| s.state == OutboundState::Delivered)
        .map(|(m, _)| m.id)
        .collect();
    println!(
        "after kill -9: A holds {} messages, {} delivered; B holds {}",
        sa.outbound.len(),
        delivered.len(),
        sb.inbound.len()
    );
    assert!(
        !sb.inbound.is_empty() && delivered.len() < 600,
        "the kill did not land mid-traffic; the test proves nothing"
    );

    // Each node alone (its peer down, so nothing new arrives): export.
    let export = |n: &mut TestNode| {
        n.start();
        let bundle = n.get_text("/v1/audit/export");
        assert!(n.sigterm().success());
        let report = verify(&bundle, n, None);
        assert!(report.findings.is_empty(), "{:?}", findings(&report));
        logged(&bundle)
    };
    let (la, lb) = (export(&mut a), export(&mut b));
    for (m, _) in &sa.outbound {
        assert!(
            la.contains(&(AuditKind::MessageAccepted, m.id)),
            "{:?}",
            m.id
        );
    }
    for id in &delivered {
        assert!(la.contains(&(AuditKind::ReceiptReceived, *id)), "{id:?}");
    }
    for m in &sb.inbound {
        assert!(
            lb.contains(&(AuditKind::MessageReceived, m.id)),
            "{:?}",
            m.id
        );
    }
}

/// Copies a directory tree as an operator restoring a backup would: the
/// directories 0700 (comityd refuses a data directory others can read).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(to)
        .unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
