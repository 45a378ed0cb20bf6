//! A node whose identity key is on a PKCS#11 token (SoftHSM2) exchanges
//! messages, receipts and cosignatures with a node whose key is in a file;
//! no identity key is in any of its files; the token says the key cannot
//! leave it; its TLS handshakes are signed by the token; its encryption
//! key rotates as a file node's does; and its identity key rotates on the
//! token.
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

    // The identity key rotates on the token: the new key is made there
    // (non-extractable, under its own label), B's operator accepts the
    // transition, A switches and B follows; messages flow both ways under
    // the new key, also after A restarts.
    let old_id = a.id.to_string();
    let t = a
        .client()
        .post(
            "/v1/keys/rotate-identity",
            &serde_json::json!({"reason": "scheduled identity rotation", "effective_in_secs": 1}),
        )
        .unwrap();
    let new = t["new"].as_str().unwrap().to_string();
    assert_ne!(new, old_id);
    let ar = |b: &TestNode| b.get("/v1/peers")[0].clone();
    b.wait_until(
        Duration::from_secs(30),
        "B to hear of A's transition",
        || !ar(&b)["rotation"].is_null(),
    );
    let accepted = b.cli(
        std::path::Path::new(COMITY),
        &[
            "peer",
            "accept-rotation",
            "AR",
            "--reason",
            "confirmed by phone",
        ],
    );
    assert!(accepted.status.success(), "{accepted:?}");
    let node_id = |a: &TestNode| a.keys(COMITY, &[])["identity"]["node_id"].clone();
    a.wait_until(Duration::from_secs(30), "A to switch", || {
        node_id(&a) == new.as_str()
    });
    b.wait_until(Duration::from_secs(30), "B to follow", || {
        ar(&b)["id"] == new.as_str()
    });
    b.send(&a, "to the new key");
    a.wait_until(Duration::from_secs(30), "delivered to the new key", || {
        a.inbox_count() == 8
    });
    a.sigterm();
    a.start();
    let keys = a.keys(COMITY, &[])["identity"].clone();
    assert_eq!(keys["node_id"], new.as_str(), "{keys}");
    assert!(
        keys["location"]
            .as_str()
            .unwrap()
            .contains(&format!("comity-identity-{new}")),
        "{keys}"
    );
    assert_eq!(keys["token_key"]["extractable"], false, "{keys}");
    assert_eq!(keys["token_key"]["local"], true, "{keys}");
    let sent = a.outbox_count("delivered");
    a.send(&b, "signed on the token by the new key");
    a.wait_until(
        Duration::from_secs(30),
        "delivered after the restart",
        || a.outbox_count("delivered") == sent + 1,
    );
    // (B names its witness by A's current id.)
    let by_new = |b: &TestNode| {
        b.get("/v1/node")["audit"]["witnesses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["peer"] == new.as_str())
            .and_then(|w| w["cosigned_size"].as_u64())
            .unwrap_or(0)
    };
    let before = b.get("/v1/node")["audit"]["entries"].as_u64().unwrap();
    a.wait_until(
        Duration::from_secs(30),
        "A's new key cosigns B's log",
        || by_new(&b) >= before,
    );
    a.wait_until(Duration::from_secs(30), "B cosigns past A's switch", || {
        a.cosigned_by(&b) >= a.get("/v1/node")["audit"]["entries"].as_u64().unwrap() - 3
    });
    let bundle = a.get_text("/v1/audit/export");
    let report = comity_protocol::audit::bundle::verify_bundle(
        std::io::Cursor::new(bundle.as_bytes()),
        &comity_protocol::audit::bundle::VerifyOptions {
            expected_node: Some(old_id.parse().unwrap()),
            required_witnesses: vec![b.id],
            allow_unwitnessed_tail: 10,
            threads: 1,
        },
    )
    .unwrap();
    assert!(report.is_valid(), "{:?}", report.findings);
    assert_eq!(report.key_switches.len(), 1);
    assert_eq!(report.key_switches[0].new.to_string(), new);

    a.sigterm();
    b.sigterm();
    // On the token: the first key kept under the URI's label, the new one
    // under its own, never extractable; nothing left half made.
    let base = TokenKey::parse(&uri).unwrap();
    let first = comity_token::TokenSigner::open(&base).unwrap();
    assert_eq!(
        comity_protocol::identity::ExternalSigner::node_id(&*first).to_string(),
        old_id
    );
    let successor = new.parse().unwrap();
    let second =
        comity_token::TokenSigner::open(&comity_token::successor_key(&base, &successor)).unwrap();
    let facts = second.facts().unwrap();
    assert!(
        facts.sensitive && !facts.extractable && facts.never_extractable && facts.local,
        "{facts:?}"
    );
    assert!(matches!(
        comity_token::TokenSigner::open(&comity_token::pending_key(&base)),
        Err(comity_token::TokenError::NoKey { .. })
    ));
    drop((first, second));
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
