//! A node whose identity key is on a PKCS#11 token (SoftHSM2) exchanges
//! messages, receipts and cosignatures with a node whose key is in a file;
//! no identity key is in any of its files; the token says the key cannot
//! leave it; its TLS handshakes are signed by the token; and its
//! encryption key rotates as a file node's does.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use comity_config::TokenKey;
use comity_tests::softhsm::SoftHsm;
use comity_tests::{assert_logs_verify, comityd_beside, test_settings, Settings, TestNode};

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

/// Every file under `dir`, with its contents.
fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(files(&path));
        } else if meta.is_file() {
            out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_node_with_its_identity_key_on_a_token_exchanges_with_a_file_key_node() {
    let Some(hsm) = SoftHsm::new("comity-node") else {
        return;
    };
    let uri = hsm.uri("comity-identity");
    let comityd = comityd_beside(COMITY);
    let comityd = comityd.to_str().unwrap();
    let mut a = TestNode::with_settings(
        comityd,
        "Ministry of Justice of Arcadia",
        "AR",
        Settings {
            identity_token: Some(uri.clone()),
            ..test_settings()
        },
    );
    let mut b = TestNode::new(comityd, "Attorney General of Borduria", "BO");
    a.pin(&b);
    b.pin(&a);

    // No identity key in any file of A: its key file holds the
    // encryption key only, and no file holds the identity seed's field.
    let key_file = std::fs::read_to_string(a.dir().join("keys/encryption.key")).unwrap();
    assert!(key_file.contains("comity-encryption-key v1"), "{key_file}");
    let config = std::fs::read_to_string(a.config_path()).unwrap();
    assert!(
        config.contains(&format!("identity_key = \"{uri}\"")),
        "{config}"
    );
    assert!(!a.dir().join("keys/node.key").exists());

    a.start();
    b.start();
    let shown = a.keys(COMITY, &[]);
    assert_eq!(shown["identity"]["node_id"], a.id.to_string().as_str());
    assert!(
        shown["identity"]["location"]
            .as_str()
            .unwrap()
            .contains("PKCS#11 token \"comity-node\""),
        "{shown}"
    );
    // The token, asked by another session of its own, says the key is
    // sensitive and was never extractable.
    let facts = comity_token::TokenSigner::open(&TokenKey::parse(&uri).unwrap())
        .unwrap()
        .facts()
        .unwrap();
    assert!(
        facts.sensitive && !facts.extractable && facts.never_extractable,
        "{facts:?}"
    );

    for i in 0..5 {
        a.send(&b, &format!("from the token node {i}"));
        b.send(&a, &format!("to the token node {i}"));
    }
    a.wait_until(Duration::from_secs(30), "A's five delivered", || {
        a.outbox_count("delivered") == 5
    });
    b.wait_until(Duration::from_secs(30), "B's five delivered", || {
        b.outbox_count("delivered") == 5
    });
    assert_eq!((a.inbox_count(), b.inbox_count()), (5, 5));

    // Handshakes: each of A's connections is signed by the token. B
    // restarting makes new ones.
    let before = a.keys(COMITY, &[])["identity"].clone();
    let tls_before = before["tls_handshake_signatures"].as_u64().unwrap();
    assert_eq!(before["token_pin_refused"], false, "{before}");
    assert!(tls_before >= 1, "{before}");
    b.sigterm();
    b.start();
    b.send(&a, "after B restarted");
    a.wait_until(
        Duration::from_secs(30),
        "a new handshake, signed by the token",
        || {
            a.inbox_count() == 6
                && a.keys(COMITY, &[])["identity"]["tls_handshake_signatures"]
                    .as_u64()
                    .unwrap()
                    > tls_before
        },
    );
    let after = a.keys(COMITY, &[])["identity"].clone();
    let (tls, token) = (
        after["tls_handshake_signatures"].as_u64().unwrap(),
        after["token_signatures"].as_u64().unwrap(),
    );
    // Five envelopes, six receipts, the handshakes, and checkpoints: all
    // by the token (the process has no other copy of the key).
    assert!(token >= tls + 5 + 6, "token {token}, TLS {tls}: {after}");

    // The encryption key rotates with the identity key on the token: the
    // new certificate is the token's signature.
    let old = a.keys(COMITY, &[])["encryption_key"]
        .as_str()
        .unwrap()
        .to_string();
    let rotated = a.keys(COMITY, &["rotate-encryption"]);
    assert_ne!(rotated["encryption_key"], old.as_str());
    let key_file_after = std::fs::read_to_string(a.dir().join("keys/encryption.key")).unwrap();
    assert!(key_file_after.contains("comity-encryption-key v1"));
    assert_ne!(key_file_after, key_file);
    b.send(&a, "sealed to the rotated key");
    a.wait_until(
        Duration::from_secs(30),
        "delivered after the rotation",
        || a.inbox_count() == 7,
    );

    // Checkpoints signed by the token and cosigned by B, and B's log
    // cosigned by the token, verify offline.
    a.wait_until(Duration::from_secs(30), "both logs witnessed", || {
        a.cosigned_by(&b) > 0 && b.cosigned_by(&a) > 0
    });
    assert_logs_verify(&a, &b);

    a.sigterm();
    b.sigterm();
    let seedless = files(a.dir());
    assert!(seedless.len() > 3);
    for (path, bytes) in &seedless {
        assert!(
            !contains(bytes, b"identity-seed") && !contains(bytes, b"comity-secret-keys"),
            "{} holds an identity key",
            path.display()
        );
    }
    // While B's key file, for comparison, does hold one.
    assert!(files(b.dir())
        .iter()
        .any(|(_, bytes)| contains(bytes, b"identity-seed")));
}
