//! An identity switch between real nodes on 127.0.0.1. Borduria announces
//! a new identity key effective in a few seconds while messages flow both
//! ways; at its effective time B switches (a last checkpoint under the old
//! key, the switch entry, the key file replaced) and Arcadia, whose notice
//! is 0 h here, moves its pin (the configuration file too). Every message
//! is delivered exactly once — those sealed or signed under the old keys
//! included — replies and status updates about messages of before the
//! switch are taken, B's log verifies as one log from its first key with
//! one switch, and B carries on under the new key after a restart.
#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::time::Duration;

use comity_protocol::audit::bundle::{verify_bundle, VerifyOptions};
use comity_tests::{comityd_beside, pair_without_notice, succeeded, TestNode};
use serde_json::{json, Value};

const COMITY: &str = env!("CARGO_BIN_EXE_comity");
const LONG: Duration = Duration::from_secs(60);

fn comity(node: &TestNode, args: &[&str]) -> Output {
    node.cli(std::path::Path::new(COMITY), args)
}

fn node_id(n: &TestNode) -> String {
    n.get("/v1/keys")["identity"]["node_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn bo(a: &TestNode) -> Value {
    a.get("/v1/peers")
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["country"] == "BO")
        .cloned()
        .unwrap()
}

/// Arcadia (no notice for a peer's transition: a test) and Borduria,
/// each pinning the other, started.
fn switching_pair() -> (TestNode, TestNode) {
    let comityd = comityd_beside(COMITY);
    pair_without_notice(comityd.to_str().unwrap())
}

#[test]
fn a_node_switches_to_its_new_identity_and_its_peer_follows_without_losing_a_message() {
    let (a, mut b) = switching_pair();
    let old = b.id.to_string();

    // Before: one request each way, delivered.
    let to_b = a.send(&b, "before, to B");
    let to_a = b.send(&a, "before, to A");
    a.wait_until(LONG, "the first two delivered", || {
        a.outbox_count("delivered") == 1 && b.outbox_count("delivered") == 1
    });

    // B announces a switch 3 s ahead; both go on sending through it.
    let t = b
        .client()
        .post(
            "/v1/keys/rotate-identity",
            &json!({"reason": "scheduled identity rotation", "effective_in_secs": 3}),
        )
        .unwrap();
    let new = t["new"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    const N: usize = 40;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..N {
                a.send(&b, &format!("during, to B {i}"));
                std::thread::sleep(Duration::from_millis(150));
            }
        });
        for i in 0..N {
            b.send(&a, &format!("during, to A {i}"));
            std::thread::sleep(Duration::from_millis(150));
        }
    });

    b.wait_until(LONG, "B to switch", || node_id(&b) == new);
    a.wait_until(LONG, "A to move its pin", || bo(&a)["id"] == new.as_str());
    assert_eq!(bo(&a)["rotated_from"], json!([old]));
    assert!(bo(&a)["rotation"].is_null());

    // Replies and status updates about messages of before the switch.
    let reply = b
        .client()
        .post(
            &format!("/v1/messages/{to_b}/reply"),
            &json!({"subject": "Bank records", "body": "Attached."}),
        )
        .unwrap();
    assert!(reply["id"].is_string(), "{reply}");
    let status = a
        .client()
        .post(
            &format!("/v1/messages/{to_a}/status"),
            &json!({"status": {"status": "registered", "reference": "AR-2026-17"}}),
        )
        .unwrap();
    assert!(status["id"].is_string(), "{status}");
    let total = 1 + N as u64 + 1;
    a.wait_until(LONG, "everything delivered both ways", || {
        a.outbox_count("delivered") == total && b.outbox_count("delivered") == total
    });
    // Exactly once: each side received what the other delivered.
    assert_eq!(a.inbox_count(), total);
    assert_eq!(b.inbox_count(), total);
    assert_eq!(a.outbox_count("failed") + b.outbox_count("failed"), 0);

    // A's file follows; `peer list` says so.
    let file = std::fs::read_to_string(a.config_path()).unwrap();
    assert!(file.contains(&format!("id = \"{new}\"")), "{file}");
    assert!(file.contains("rotated_from"), "{file}");
    let list = succeeded(&comity(&a, &["peer", "list"]));
    assert!(list.contains("BO: rotated from"), "{list}");

    // B's key file holds the new key; the announced one's file is gone.
    let key_file = comity_config::Config::load(b.config_path())
        .unwrap()
        .node
        .identity_key;
    let next = comity_config::next_key_path(&key_file);
    assert!(!next.exists(), "{}", next.display());
    assert_eq!(b.identity().id().to_string(), new);

    // After a restart B is its new self, and delivery goes on.
    b.sigterm();
    b.start();
    assert_eq!(node_id(&b), new);
    b.send(&a, "after the restart");
    b.wait_until(LONG, "delivered after the restart", || {
        b.outbox_count("delivered") == total + 1
    });

    // B's log: one log from its first key, one switch, checkpoints after it
    // under the new key, and A (pinned to both keys in turn) a witness.
    let bundle = b.get_text("/v1/audit/export");
    let report = verify_bundle(
        std::io::Cursor::new(bundle.as_bytes()),
        &VerifyOptions {
            expected_node: Some(old.parse().unwrap()),
            required_witnesses: vec![a.id],
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap();
    assert!(report.is_valid(), "{:?}", report.findings);
    assert_eq!(report.key_switches.len(), 1, "{:?}", report.key_switches);
    let path = b.dir().join("bo.bundle");
    std::fs::write(&path, &bundle).unwrap();
    let out = succeeded(&comity(
        &b,
        &["audit", "verify", path.to_str().unwrap(), "--node", &old],
    ));
    assert!(out.contains(&format!("from {old} to {new}")), "{out}");
    // A's own log verifies, cosigned by B under both keys in turn.
    let report = verify_bundle(
        std::io::Cursor::new(a.get_text("/v1/audit/export").as_bytes()),
        &VerifyOptions {
            expected_node: Some(a.id),
            required_witnesses: vec![new.parse().unwrap()],
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap();
    assert!(report.is_valid(), "{:?}", report.findings);
}

#[test]
fn messages_sealed_and_signed_under_the_old_keys_are_delivered_after_the_switch() {
    let (mut a, b) = switching_pair();
    let old = b.id.to_string();
    a.send(&b, "first contact");
    a.wait_until(LONG, "first contact", || a.outbox_count("delivered") == 1);

    // A is down while B accepts messages for it (sealed and signed with
    // B's old key) and switches.
    a.sigterm();
    for i in 0..5 {
        b.send(&a, &format!("signed by the old key {i}"));
    }
    let t = b
        .client()
        .post(
            "/v1/keys/rotate-identity",
            &json!({"reason": "scheduled identity rotation", "effective_in_secs": 1}),
        )
        .unwrap();
    let new = t["new"].as_str().unwrap().to_string();
    b.wait_until(LONG, "B to switch", || node_id(&b) == new);

    // A comes back still pinning the old key and accepts messages for B
    // (sealed to B's old encryption key, addressed to its old id); it
    // learns of the switch from B's certificate and moves its pin.
    a.start();
    for i in 0..5 {
        a.send(&b, &format!("sealed for the old key {i}"));
    }
    a.wait_until(LONG, "A to move its pin", || bo(&a)["id"] == new.as_str());
    a.wait_until(LONG, "all delivered both ways", || {
        a.outbox_count("delivered") == 6 && b.outbox_count("delivered") == 5
    });
    assert_eq!(a.inbox_count(), 5);
    assert_eq!(b.inbox_count(), 6);
    // What B signed before its switch is filed under the key that signed
    // it.
    let listed = a.get(&format!("/v1/messages?peer={old}"));
    let from_old = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "inbound" && m["peer"] == old.as_str())
        .count();
    assert_eq!(from_old, 5, "{listed}");
}

/// The must-show run: 1,000 messages A→B (and 200 back) while A rotates
/// its encryption key twice and B its identity, B killed with `kill -9` at
/// the moment its switch is due. Every receipt verifies, under B's old key
/// or its new one.
#[test]
fn a_thousand_messages_cross_two_encryption_rotations_and_an_identity_switch_with_a_kill() {
    use comity_protocol::receipt::Receipt;
    let (a, mut b) = switching_pair();
    let old = b.id.to_string();
    let mut new = String::new();
    let mut sent_to_b = Vec::new();
    const TO_B: usize = 1000;
    const TO_A: usize = 200;
    // In batches, so that sending spans the rotations: B's before its
    // switch is due, A's through it and the kill.
    let batches = |from: &TestNode, to: &TestNode, n: usize, gap: Duration| {
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.extend(from.send_many(to, n / 10, 2));
            std::thread::sleep(gap);
        }
        ids
    };
    let old_keys = b.identity().public().clone();
    std::thread::scope(|s| {
        let to_b = s.spawn(|| batches(&a, &b, TO_B, Duration::from_millis(400)));
        let to_a = s.spawn(|| batches(&b, &a, TO_A, Duration::from_millis(100)));
        std::thread::sleep(Duration::from_millis(300));
        a.keys(COMITY, &["rotate-encryption"]);
        let t = b
            .client()
            .post(
                "/v1/keys/rotate-identity",
                &json!({"reason": "scheduled identity rotation", "effective_in_secs": 2}),
            )
            .unwrap();
        let due = t["effective_after"].as_u64().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        a.keys(COMITY, &["rotate-encryption"]);
        assert_eq!(to_a.join().unwrap().len(), TO_A);
        // kill -9 at the switch's due time, wherever the switch has got to.
        let now = comity_protocol::Timestamp::now().0;
        std::thread::sleep(Duration::from_millis(due.saturating_sub(now)));
        let pid = b.pid().unwrap().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
        assert!(killed.unwrap().success());
        sent_to_b = to_b.join().unwrap();
        new = t["new"].as_str().unwrap().to_string();
    });
    b.kill9(); // reaps it
    b.start();
    b.wait_until(LONG, "B to be its new self", || node_id(&b) == new);
    a.wait_until(LONG, "A to move its pin", || bo(&a)["id"] == new.as_str());
    a.wait_until(LONG, "1,000 delivered", || {
        a.outbox_count("delivered") == TO_B as u64 && b.outbox_count("delivered") == TO_A as u64
    });
    assert_eq!(sent_to_b.len(), TO_B);
    assert_eq!(a.inbox_count(), TO_A as u64);
    assert_eq!(b.inbox_count(), TO_B as u64);
    assert_eq!(a.outbox_count("failed") + b.outbox_count("failed"), 0);
    assert_eq!(
        a.get("/v1/keys")["previous"].as_array().map(Vec::len),
        Some(2),
        "A's two superseded encryption keys"
    );

    // Every receipt A holds verifies, under the key B had when it took
    // the envelope.
    let new_keys = b.identity().public().clone();
    let (mut by_old, mut by_new) = (0, 0);
    for id in &sent_to_b {
        let m = a.get(&format!("/v1/messages/{id}"));
        let bytes = hex::decode(m["receipt"].as_str().unwrap()).unwrap();
        let r = Receipt::from_bytes(&bytes).unwrap();
        if r.verify_signature_only(&old_keys).is_ok() {
            by_old += 1;
        } else {
            r.verify_signature_only(&new_keys).unwrap();
            by_new += 1;
        }
    }
    assert_eq!(by_old + by_new, TO_B);
    assert!(by_old > 0 && by_new > 0, "old {by_old}, new {by_new}");

    // Both logs verify: B's from its first key with one switch.
    let report = verify_bundle(
        std::io::Cursor::new(b.get_text("/v1/audit/export").as_bytes()),
        &VerifyOptions {
            expected_node: Some(old.parse().unwrap()),
            required_witnesses: vec![a.id],
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap();
    assert!(report.is_valid(), "{:?}", report.findings);
    assert_eq!(report.key_switches.len(), 1, "{:?}", report.key_switches);
    let report = verify_bundle(
        std::io::Cursor::new(a.get_text("/v1/audit/export").as_bytes()),
        &VerifyOptions {
            expected_node: Some(a.id),
            required_witnesses: vec![new.parse().unwrap()],
            allow_unwitnessed_tail: 0,
            threads: 1,
        },
    )
    .unwrap();
    assert!(report.is_valid(), "{:?}", report.findings);
}
