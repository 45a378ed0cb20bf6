//! Encryption-key rotation between two real nodes on 127.0.0.1: envelopes
//! sealed to a superseded key are opened in its grace period; after it the
//! key is destroyed, and an envelope sealed to it is refused with a
//! retriable error, sealed again by its sender to the current key, and
//! delivered once.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comity_tests::{assert_logs_verify, comityd_beside, pair, TestNode};

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

fn previous_files(node: &TestNode) -> usize {
    std::fs::read_dir(node.dir().join("data/keys/previous"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `n` requests A→B submitted while B is down (so sealed to the key A
/// knows now), then A stopped.
fn queued_while_b_is_down(a: &mut TestNode, b: &TestNode, n: usize) {
    for i in 0..n {
        a.send(b, &format!("queued {i}"));
    }
    a.sigterm();
}

#[test]
fn sealed_to_a_superseded_key_opens_in_grace_and_is_sealed_again_after() {
    let (mut a, mut b) = pair(comityd_beside(COMITY).to_str().unwrap());
    a.send(&b, "first");
    a.wait_until(Duration::from_secs(30), "first delivered", || {
        a.outbox_count("delivered") == 1
    });
    let k1 = b.keys(COMITY, &[])["encryption_key"]
        .as_str()
        .unwrap()
        .to_string();

    // In the grace period: sealed to K1, B has moved to K2.
    b.sigterm();
    queued_while_b_is_down(&mut a, &b, 3);
    b.start();
    let rotated = b.keys(COMITY, &["rotate-encryption"]);
    let k2 = rotated["encryption_key"].as_str().unwrap().to_string();
    assert_ne!(k1, k2);
    assert_eq!(rotated["previous"][0]["encryption_key"], k1.as_str());
    assert_eq!(previous_files(&b), 1);
    let shown = b.get("/v1/node")["keys"].clone();
    assert_eq!(
        shown["encryption_key"],
        k2.as_str(),
        "comity status shows it"
    );
    assert_eq!(shown["previous"].as_array().unwrap().len(), 1);
    a.start();
    a.wait_until(Duration::from_secs(30), "the three delivered", || {
        a.outbox_count("delivered") == 4
    });
    assert!(
        !a.log().contains("unknown-encryption-key"),
        "opened with the superseded key, not refused"
    );

    // After it: sealed to K2, B moves to K3 and its grace period is 0.
    b.sigterm();
    queued_while_b_is_down(&mut a, &b, 3);
    b.start();
    let k3 = b.keys(COMITY, &["rotate-encryption"])["encryption_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(k3, k2);
    b.sigterm();
    let config = std::fs::read_to_string(b.config_path()).unwrap();
    assert!(
        config.contains("\nencryption_grace_days = 14\n"),
        "{config}"
    );
    let config = config.replace(
        "\nencryption_grace_days = 14\n",
        "\nencryption_grace_days = 0\n",
    );
    std::fs::write(b.config_path(), config).unwrap();
    b.start();
    b.wait_until(Duration::from_secs(20), "K1 and K2 destroyed", || {
        b.log()
            .matches("superseded encryption key destroyed")
            .count()
            == 2
    });
    assert_eq!(previous_files(&b), 0, "the superseded keys' files are gone");
    assert!(b.keys(COMITY, &[])["previous"]
        .as_array()
        .unwrap()
        .is_empty());
    a.start();
    a.wait_until(
        Duration::from_secs(60),
        "the three sealed again and delivered",
        || a.outbox_count("delivered") == 7,
    );
    assert_eq!(b.inbox_count(), 7, "each delivered once");
    assert!(
        a.log().contains("unknown-encryption-key"),
        "A was told to seal again"
    );
    let export = b.get_text("/v1/audit/export");
    assert_eq!(export.matches("own encryption key rotated").count(), 2);
    assert_eq!(
        export.matches("own encryption key").count(),
        4,
        "2 rotated, 2 destroyed"
    );
    assert_logs_verify(&a, &b);
    a.sigterm();
    b.sigterm();
}
