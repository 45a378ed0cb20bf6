//! A node whose identity key was lost (no backup holds it) is replaced by a
//! new identity with a new log, between real nodes on 127.0.0.1: Arcadia
//! hands Borduria's operator the last checkpoint of the old log it
//! cosigned (`comity audit witnessed`); Borduria's new node is made with
//! `comity init --predecessor-checkpoint`, so its log begins by naming the
//! old one; Arcadia repins. The new log verifies, and the verifier reports
//! the link; a checkpoint the old key did not sign is refused at `init`.
//! Also for a node whose old log had switched keys before it was lost: the
//! witness hands over the switches that lead to the checkpoint's signer.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use comity_protocol::audit::bundle::{verify_bundle, Report, VerifyOptions};
use comity_protocol::audit::checkpoint::Checkpoint;
use comity_protocol::audit::note::Note;
use comity_protocol::audit::predecessor::PredecessorFile;
use comity_protocol::NodeId;
use comity_tests::{comityd_beside, free_port, pair_without_notice, TestNode};
use serde_json::json;

const COMITY: &str = env!("CARGO_BIN_EXE_comity");
const LONG: Duration = Duration::from_secs(30);

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

/// Arcadia (no notice for a peer's transition) and Borduria, each
/// pinning the other, started, one message delivered.
fn pair(comityd: &str) -> (TestNode, TestNode) {
    let (a, b) = pair_without_notice(comityd);
    a.send(&b, "before");
    a.wait_until(LONG, "delivered", || a.outbox_count("delivered") == 1);
    (a, b)
}

/// `comity init` of Borduria's new node in `dir`, naming `checkpoint`.
fn init_naming(dir: &Path, listen: &str, checkpoint: &Path) -> Output {
    comity(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--name",
        "Attorney General of Borduria",
        "--country",
        "BO",
        "--listen",
        listen,
        "--predecessor-checkpoint",
        checkpoint.to_str().unwrap(),
    ])
}

/// Borduria's node is gone, key and all: Arcadia writes out the last
/// checkpoint of its log it cosigned, the new node is made naming it and
/// started, Arcadia repins BO to it and witnesses its new log. Returns the
/// new node, the file Arcadia wrote, and the new log's verified report.
fn replace_lost(
    comityd: &str,
    a: &TestNode,
    work: &Path,
    check_file: impl FnOnce(&Path, &str),
) -> (TestNode, PredecessorFile, Report) {
    let checkpoint = work.join("borduria-old.checkpoint");
    let said = ok(a.cli(
        Path::new(COMITY),
        &[
            "audit",
            "witnessed",
            "BO",
            "--out",
            checkpoint.to_str().unwrap(),
        ],
    ));
    let file = PredecessorFile::parse(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    let dir = work.join("borduria-2");
    let listen = format!("127.0.0.1:{}", free_port());
    check_file(&dir, &listen);

    let said_init = ok(init_naming(&dir, &listen, &checkpoint));
    assert!(said_init.contains("whose key was lost"), "{said_init}");
    let mut b2 = TestNode::open(comityd, &dir.join("comity.toml"));
    let config = comity_config::Config::load(b2.config_path()).unwrap();
    let kept = config.node.data_dir.join(comity_config::PREDECESSOR_FILE);
    let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", kept.display());
    b2.pin(a);
    b2.start();

    let id = b2.id.to_string();
    let reason = "key lost with its disk; new id read out by phone";
    let repin = [
        "peer", "repin", "BO", "--id", &id, "--addr", &listen, "--reason", reason,
    ];
    ok(a.cli(Path::new(COMITY), &repin));
    let delivered = a.outbox_count("delivered");
    a.send(&b2, "after");
    a.wait_until(LONG, "delivered to B′", || {
        a.outbox_count("delivered") == delivered + 1
    });
    a.wait_until(LONG, "A cosigned B′'s log", || b2.cosigned_by(a) > 1);

    // B′'s log verifies under B′'s key, cosigned by A.
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
    // The CLI says how the two logs are linked.
    let path = work.join("b2.bundle");
    std::fs::write(&path, &bundle).unwrap();
    let shown = ok(comity(&[
        "audit",
        "verify",
        path.to_str().unwrap(),
        "--node",
        &id,
    ]));
    assert!(
        shown.contains("linked by the operators' repin, not by a key")
            && shown.contains(&format!("that checkpoint is cosigned by {}", a.id)),
        "{shown}"
    );
    // A, which handed the checkpoint over, cosigned it (again).
    let named = report.predecessor.as_ref().unwrap();
    assert_eq!(named.cosigned_by, vec![a.id]);
    assert!(said.contains("(cosigned again now)"), "{said}");
    (b2, file, report)
}

fn size_of(note: &str) -> Checkpoint {
    Checkpoint::parse_body(Note::parse(note).unwrap().text()).unwrap()
}

#[test]
fn a_new_identity_after_a_lost_key_begins_a_log_that_names_the_old_one() {
    let comityd = comityd_beside(COMITY);
    let comityd = comityd.to_str().unwrap();
    let (mut a, mut b) = pair(comityd);
    a.wait_until(LONG, "A cosigned B's log", || b.cosigned_by(&a) > 0);
    b.kill9();

    let work = tempfile::tempdir().unwrap();
    let (mut b2, file, report) = replace_lost(comityd, &a, work.path(), |dir, listen| {
        // A checkpoint the old key did not sign (its size changed):
        // refused, and nothing is made.
        let good = std::fs::read_to_string(work.path().join("borduria-old.checkpoint")).unwrap();
        let size = size_of(&good).size;
        let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
        lines[1] = (size + 1).to_string();
        let forged = work.path().join("forged.checkpoint");
        std::fs::write(&forged, lines.join("\n") + "\n").unwrap();
        let refused = init_naming(dir, listen, &forged);
        assert!(!refused.status.success(), "a forged checkpoint refused");
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(why.contains("does not name a predecessor log"), "{why}");
        assert!(!dir.join("comity.toml").exists(), "nothing made");
    });
    assert!(file.switches.is_empty());
    let old = size_of(&file.note);
    assert!(old.size > 0);
    // Entry 0 (the verifier reports a predecessor nowhere else) names the
    // old log at the checkpoint A handed over.
    let p = report.predecessor.unwrap();
    assert_eq!((p.node, p.size, p.root), (b.id, old.size, old.root));
    assert!(p.later_keys.is_empty());

    // A restart does not name it twice.
    b2.sigterm();
    b2.start();
    let again = b2.get_text("/v1/audit/export");
    assert_eq!(again.matches("log-predecessor").count(), 1);
    b2.sigterm();
    a.sigterm();
}

#[test]
fn a_log_that_switched_keys_before_its_key_was_lost_is_named_through_its_switch() {
    let comityd = comityd_beside(COMITY);
    let comityd = comityd.to_str().unwrap();
    let (mut a, mut b) = pair(comityd);
    let first: NodeId = b.id;
    let t = b
        .client()
        .post(
            "/v1/keys/rotate-identity",
            &json!({"reason": "scheduled identity rotation", "effective_in_secs": 1}),
        )
        .unwrap();
    let new: NodeId = t["new"].as_str().unwrap().parse().unwrap();
    let bo = |a: &TestNode| a.get("/v1/peers")[0]["id"].clone();
    a.wait_until(LONG, "A to move its pin", || bo(&a) == new.to_string());
    // A cosigns a checkpoint of B's log signed by B's new key.
    let after_switch = b.get("/v1/node")["audit"]["entries"].as_u64().unwrap();
    a.send(&b, "after the switch");
    a.wait_until(LONG, "A cosigned past the switch", || {
        b.cosigned_by(&a) > after_switch
    });
    b.kill9();

    let work = tempfile::tempdir().unwrap();
    let (b2, file, report) = replace_lost(comityd, &a, work.path(), |_, _| {});
    assert_eq!(file.switches.len(), 1, "the switch leads to the signer");
    let p = report.predecessor.unwrap();
    assert_eq!(p.node, first, "named by the old log's first key");
    assert_eq!(p.later_keys, vec![new]);
    assert_eq!(p.size, size_of(&file.note).size);
    assert!(p.size > after_switch);
    // The repin cut out the identity's whole key history: the key it
    // rotated from speaks no more for BO than the one it had last.
    let config = comity_config::Config::load(a.config_path()).unwrap();
    let pinned = config.peer_by_id(&b2.id).unwrap();
    assert_eq!(pinned.repinned_from, vec![first, new]);
    assert!(pinned.rotated_from.is_empty());
    let first_s = first.to_string();
    let add_first_is_refused = |a: &TestNode| {
        let args = [
            "peer",
            "add",
            "--id",
            &first_s,
            "--addr",
            "127.0.0.1:1",
            "--country",
            "XX",
        ];
        let again = a.cli(Path::new(COMITY), &args);
        assert!(!again.status.success(), "{again:?}");
        assert!(String::from_utf8_lossy(&again.stderr).contains("cut out"));
    };
    add_first_is_refused(&a);
    // Also once BO is unpinned and A restarted: the store remembers every
    // key cut out.
    ok(a.cli(Path::new(COMITY), &["peer", "remove", "BO"]));
    a.sigterm();
    a.start();
    add_first_is_refused(&a);
    drop(b2);
    a.sigterm();
}
