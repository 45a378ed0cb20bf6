//! `comity keys rotate-identity` between real nodes on 127.0.0.1: Borduria
//! announces a new identity key. Arcadia learns of it at the next
//! handshake (B closes its connections), holds it pending for its notice
//! period and shows it in `peer list`; messages go on both ways under the
//! current key; the new key waits in a 0600 file; a second announcement is
//! refused; after B restarts it presents the statement again (A, having
//! removed and pinned B again, hears it anew); both audit logs record it
//! and verify.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use comity_tests::{assert_logs_verify, comityd_beside, pair, succeeded, TestNode};
use serde_json::Value;

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

fn comity(node: &TestNode, args: &[&str]) -> Output {
    node.cli(std::path::Path::new(COMITY), args)
}

/// What A shows of BO's pending transition (null: none).
fn rotation_of_bo(a: &TestNode) -> Value {
    a.get("/v1/peers")
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["country"] == "BO")
        .map(|p| p["rotation"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn an_announced_identity_reaches_the_peer_at_once_and_again_after_a_restart() {
    let comityd = comityd_beside(COMITY);
    let (a, mut b) = pair(comityd.to_str().unwrap());
    a.send(&b, "before");
    a.wait_until(Duration::from_secs(30), "first delivered", || {
        a.outbox_count("delivered") == 1
    });

    let out = succeeded(&comity(
        &b,
        &[
            "keys",
            "rotate-identity",
            "--reason",
            "scheduled identity rotation",
            "--json",
        ],
    ));
    let t: Value = serde_json::from_str(&out).unwrap();
    let new = t["new"].as_str().unwrap().to_string();
    assert_eq!(t["old"], b.id.to_string());
    assert_ne!(new, b.id.to_string());
    let effective = t["effective_after"].as_u64().unwrap();
    assert_eq!(
        effective,
        t["created_at"].as_u64().unwrap() + 72 * 3_600_000
    );
    let file = std::path::PathBuf::from(t["next_key_file"].as_str().unwrap());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let keys = succeeded(&comity(&b, &["keys"]));
    assert!(keys.contains("identity transition announced"), "{keys}");

    // A hears it at the next handshake, whichever side dials.
    a.wait_until(Duration::from_secs(20), "A to hold B's transition", || {
        rotation_of_bo(&a)["new"] == new.as_str()
    });
    let r = rotation_of_bo(&a);
    assert_eq!(r["reason"], "scheduled identity rotation");
    assert_eq!(r["effective_after"].as_u64().unwrap(), effective);
    let list = succeeded(&comity(&a, &["peer", "list"]));
    assert!(list.contains("BO: ROTATION PENDING to"), "{list}");

    // One at a time.
    let again = comity(&b, &["keys", "rotate-identity", "--reason", "again"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("announced already"));

    // Messages go on, both ways, under the current keys.
    a.send(&b, "after A");
    b.send(&a, "after B");
    a.wait_until(Duration::from_secs(30), "both delivered", || {
        a.outbox_count("delivered") == 2 && b.outbox_count("delivered") == 1
    });

    // After a restart B presents it again: A forgets it with the peer and
    // hears it anew once B is pinned again.
    b.sigterm();
    b.start();
    succeeded(&comity(&a, &["peer", "remove", "BO"]));
    assert!(rotation_of_bo(&a).is_null());
    let port = b.port.to_string();
    let addr = format!("127.0.0.1:{port}");
    succeeded(&comity(
        &a,
        &[
            "peer",
            "add",
            "--id",
            &b.id.to_string(),
            "--addr",
            &addr,
            "--country",
            "BO",
        ],
    ));
    a.wait_until(Duration::from_secs(20), "A to hear it again", || {
        rotation_of_bo(&a)["new"] == new.as_str()
    });

    let announced = |n: &TestNode, needle: &str| {
        n.get_text("/v1/audit/export")
            .lines()
            .filter(|l| l.contains("identity-transition") && l.contains(needle))
            .count()
    };
    assert_eq!(
        announced(&b, "announced this node's identity transition"),
        1
    );
    assert_eq!(announced(&a, "BO announced an identity transition"), 2);
    assert_logs_verify(&a, &b);
}
