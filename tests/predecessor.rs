//! A node whose identity key was lost (no backup holds it) is replaced by a
//! new identity with a new log, between real nodes on 127.0.0.1: Arcadia
//! hands Borduria's operator the last checkpoint of the old log it
//! cosigned (`comity audit witnessed`); Borduria's new node is made with
//! `comity init --predecessor-checkpoint`, so its log begins by naming the
//! old one; Arcadia repins. The new log verifies, and the verifier reports
//! the link; a checkpoint the old key did not sign is refused at `init`.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
use comity_protocol::audit::checkpoint::Checkpoint;
use comity_protocol::audit::note::Note;
use comity_tests::{comityd_beside, free_port, pair, TestNode};

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

fn comity(args: &[&str]) -> Output {
    Command::new(COMITY)
        .args(args)
        .env_remove("COMITY_CONFIG")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_new_identity_after_a_lost_key_begins_a_log_that_names_the_old_one() {
    let comityd = comityd_beside(COMITY);
    let comityd = comityd.to_str().unwrap();
    let (mut a, mut b) = pair(comityd);
    for i in 0..3 {
        a.send(&b, &format!("before {i}"));
    }
    a.wait_until(Duration::from_secs(30), "delivered", || {
        a.outbox_count("delivered") == 3
    });
    a.wait_until(Duration::from_secs(30), "A cosigned B's log", || {
        b.cosigned_by(&a) > 0
    });

    // Borduria's disk is gone, key and all.
    b.kill9();

    // Arcadia's operator writes out the last checkpoint of B's log it
    // cosigned.
    let work = tempfile::tempdir().unwrap();
    let checkpoint = work.path().join("borduria-old.checkpoint");
    let config_a = a.config_path().to_str().unwrap().to_string();
    let said = ok(comity(&[
        "--config",
        &config_a,
        "audit",
        "witnessed",
        "BO",
        "--out",
        checkpoint.to_str().unwrap(),
    ]));
    assert!(said.contains(&b.id.to_string()), "{said}");
    let note = std::fs::read_to_string(&checkpoint).unwrap();
    let old = Checkpoint::parse_body(Note::parse(&note).unwrap().text()).unwrap();
    assert!(old.size > 0, "{note}");

    // A checkpoint the old key did not sign (its size changed): refused,
    // and nothing is made.
    let forged = work.path().join("forged.checkpoint");
    let mut lines: Vec<String> = note.lines().map(str::to_string).collect();
    lines[1] = (old.size + 1).to_string();
    std::fs::write(&forged, lines.join("\n") + "\n").unwrap();
    let dir = work.path().join("borduria-2");
    let dir_s = dir.to_str().unwrap().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let init = |from: &std::path::Path| {
        comity(&[
            "init",
            "--dir",
            &dir_s,
            "--name",
            "Attorney General of Borduria",
            "--country",
            "BO",
            "--listen",
            &listen,
            "--predecessor-checkpoint",
            from.to_str().unwrap(),
        ])
    };
    let refused = init(&forged);
    assert!(!refused.status.success(), "a forged checkpoint refused");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("does not name a predecessor log"), "{why}");
    assert!(!dir.join("comity.toml").exists(), "nothing made");

    let said = ok(init(&checkpoint));
    assert!(said.contains("whose key was lost"), "{said}");
    let mut b2 = TestNode::open(comityd, &dir.join("comity.toml"));
    let config = comity_config::Config::load(b2.config_path()).unwrap();
    let kept = config.node.data_dir.join(comity_config::PREDECESSOR_FILE);
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", kept.display());
    b2.pin(&a);
    b2.start();

    let repinned = a.cli(
        std::path::Path::new(COMITY),
        &[
            "peer",
            "repin",
            "BO",
            "--id",
            &b2.id.to_string(),
            "--addr",
            &listen,
            "--reason",
            "key lost with its disk; new id read out by phone",
        ],
    );
    assert!(repinned.status.success(), "{repinned:?}");
    a.send(&b2, "after");
    a.wait_until(Duration::from_secs(30), "delivered to B′", || {
        a.outbox_count("delivered") == 4
    });
    a.wait_until(Duration::from_secs(30), "A cosigned B′'s log", || {
        b2.cosigned_by(&a) > 1
    });

    // B′'s log: valid under B′'s key, cosigned by A, and it names the old
    // log at the checkpoint A handed over.
    let bundle = b2.get_text("/v1/audit/export");
    let report = verify_bundle(
        std::io::Cursor::new(bundle.as_bytes()),
        &VerifyOptions {
            expected_node: Some(b2.id),
            required_witnesses: vec![a.id],
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap();
    assert!(report.is_valid(), "{:?}", report.findings);
    // Entry 0 (the verifier reports a predecessor entry nowhere else).
    let p = report.predecessor.clone().unwrap();
    assert_eq!((p.node, p.size, p.root), (b.id, old.size, old.root));

    // The CLI says how the two are linked.
    let file = work.path().join("b2.bundle");
    std::fs::write(&file, &bundle).unwrap();
    let shown = ok(comity(&[
        "audit",
        "verify",
        file.to_str().unwrap(),
        "--node",
        &b2.id.to_string(),
    ]));
    assert!(
        shown.contains(&format!("begins after the log of {}", b.id))
            && shown.contains("linked by the operators' repin, not by a key"),
        "{shown}"
    );

    // A restart does not name it twice.
    b2.sigterm();
    b2.start();
    let again = b2.get_text("/v1/audit/export");
    assert_eq!(again.matches("log-predecessor").count(), 1);
    b2.sigterm();
    a.sigterm();
}
