//! `comity peer repin`, between real nodes on 127.0.0.1: Borduria's key is
//! presumed stolen, its operator makes a new identity (B′) and reads its id
//! out by phone; Arcadia repins. The messages queued for the old key reach
//! the new one exactly once; the old key is refused from then on (and the
//! refusal recorded), across a restart; the configuration file keeps its
//! comments and remembers the key cut out; both audit logs verify.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::Duration;

use comity_tests::{assert_logs_verify, comityd_beside, pair, TestNode};
use serde_json::Value;

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

/// `comity --config A ARGS` against `node`.
fn comity(node: &TestNode, args: &[&str]) -> Output {
    Command::new(COMITY)
        .arg("--config")
        .arg(node.config_path())
        .args(args)
        .env_remove("COMITY_CONFIG")
        .output()
        .unwrap()
}

/// `peer add` of `old`'s key under `country` fails, saying it is cut out.
fn assert_add_refused_as_cut_out(node: &TestNode, old: &TestNode, country: &str) {
    let id = old.id.to_string();
    let args = [
        "peer",
        "add",
        "--id",
        &id,
        "--addr",
        "127.0.0.1:1",
        "--country",
        country,
    ];
    let again = comity(node, &args);
    assert!(!again.status.success(), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("cut out"), "{stderr}");
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Subjects in `node`'s inbox, with how often each was delivered.
fn inbox_subjects(node: &TestNode) -> HashMap<String, usize> {
    let list = node.get("/v1/messages?box=inbox&limit=1000");
    let mut seen = HashMap::new();
    for m in list.as_array().unwrap() {
        *seen
            .entry(m["subject"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    seen
}

#[test]
fn a_repinned_peer_gets_what_was_queued_for_its_stolen_key_and_the_old_key_stays_out() {
    let comityd = comityd_beside(COMITY);
    let comityd = comityd.to_str().unwrap();
    let (mut a, mut b) = pair(comityd);
    a.send(&b, "before");
    a.wait_until(Duration::from_secs(30), "first delivered", || {
        a.outbox_count("delivered") == 1
    });

    // Borduria's key is presumed stolen: its node goes down; Arcadia keeps
    // submitting (to the old key, as it knows no other yet).
    b.sigterm();
    let queued: Vec<String> = (0..5).map(|i| a.send(&b, &format!("queued {i}"))).collect();
    let before = std::fs::read_to_string(a.config_path()).unwrap();

    // Borduria's new identity, at a new address.
    let mut b2 = TestNode::new(comityd, "Attorney General of Borduria", "BO");
    b2.pin(&a);
    b2.start();

    // A key that is not the new one: refused, nothing changes.
    let bad = comity(
        &a,
        &[
            "peer",
            "repin",
            "BO",
            "--id",
            &a.id.to_string(),
            "--reason",
            "x",
        ],
    );
    assert!(!bad.status.success(), "own id refused");
    let no_reason = comity(
        &a,
        &[
            "peer",
            "repin",
            "BO",
            "--id",
            &b2.id.to_string(),
            "--reason",
            " ",
        ],
    );
    assert!(!no_reason.status.success(), "a reason is required");
    assert!(
        String::from_utf8_lossy(&no_reason.stderr).contains("reason"),
        "{}",
        String::from_utf8_lossy(&no_reason.stderr)
    );
    assert_eq!(a.get("/v1/peers")[0]["id"], b.id.to_string());

    let addr = format!("127.0.0.1:{}", b2.port);
    let done = json_of(&comity(
        &a,
        &[
            "peer",
            "repin",
            "BO",
            "--id",
            &b2.id.to_string(),
            "--addr",
            &addr,
            "--reason",
            "key presumed stolen; new id read out by phone, 2026-12-03",
            "--json",
        ],
    ));
    assert_eq!(done["old"], b.id.to_string());
    assert_eq!(done["id"], b2.id.to_string());
    assert_eq!(done["moved"], 5, "{done}");
    assert_eq!(done["persisted"], true, "{done}");

    a.wait_until(
        Duration::from_secs(30),
        "the queued delivered to B′",
        || a.outbox_count("delivered") == 6,
    );
    let got = inbox_subjects(&b2);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(
        (0..5).all(|i| got.get(&format!("queued {i}")) == Some(&1)),
        "each queued message exactly once at B′: {got:?}"
    );
    for id in &queued {
        let m = a.get(&format!("/v1/messages/{id}"));
        assert_eq!(m["peer"], b2.id.to_string(), "{m}");
    }

    // The configuration: new id and address, the old key remembered, every
    // comment kept.
    let after = std::fs::read_to_string(a.config_path()).unwrap();
    for line in before.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(after.contains(line), "comment {line:?} kept:\n{after}");
    }
    let config = comity_config::Config::load(a.config_path()).unwrap();
    let bo = config.peer_by_id(&b2.id).unwrap();
    assert_eq!(bo.repinned_from, vec![b.id]);
    assert_eq!(bo.address, addr);
    let list = comity(&a, &["peer", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("BO: repinned from"), "{list}");

    // The old key may not be pinned back, under any country.
    assert_add_refused_as_cut_out(&a, &b, "DE");

    // The thief's node (the old key) calls, after A restarts too: refused,
    // and the refusal is in A's audit log.
    a.sigterm();
    a.start();
    b.start();
    b.send(&a, "from the stolen key");
    a.wait_until(Duration::from_secs(30), "the old key refused", || {
        a.get_text("/v1/audit/export").lines().any(|l| {
            l.contains("peer-refused")
                && l.contains(&b.id.to_string())
                && l.contains("key cut out of BO by a repin")
        })
    });
    assert_eq!(a.inbox_count(), 0, "nothing from the old key accepted");
    let export = a.get_text("/v1/audit/export");
    let changed: Vec<&str> = export
        .lines()
        .filter(|l| l.contains("key-changed") && l.contains("repinned from"))
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].contains("presumed stolen") && changed[0].contains(&b2.id.to_string()));

    // After the move, traffic goes on with B′ and both logs verify.
    a.send(&b2, "after");
    a.wait_until(Duration::from_secs(30), "the last delivered", || {
        a.outbox_count("delivered") == 7
    });
    b.sigterm();
    a.wait_until(Duration::from_secs(30), "B′ cosigned A's log", || {
        a.cosigned_by(&b2) > 0
    });
    assert_logs_verify(&a, &b2);

    // Removing the peer does not forget its stolen key: it is not pinned
    // back, through the API or through the file.
    let removed = comity(&a, &["peer", "remove", "BO"]);
    assert!(removed.status.success(), "{removed:?}");
    assert_add_refused_as_cut_out(&a, &b, "XX");
    a.sigterm();
    a.pin_as(b.id, b.port, "Thief", "XX");
    let local: &mut comity_client::local::LocalNode = &mut a;
    let refused = local.start_with_env(&[]).unwrap_err().to_string();
    assert!(refused.contains("cut out of BO"), "{refused}");
    b2.sigterm();
}
