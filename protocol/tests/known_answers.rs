//! Known-answer tests: fixed keys and randomness must give exactly the bytes
//! committed in `vectors/kat-v1.json`, so the wire format cannot drift
//! silently. If a change is deliberate, it is a new wire-format version:
//! regenerate with `COMITY_WRITE_VECTORS=1 cargo test -p comity-protocol
//! --test known_answers` and say so in the commit.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::PathBuf;

use comity_protocol::audit::restoration::RestorationStatement;
use comity_protocol::envelope::{check, seal};
use comity_protocol::message::{
    Body, BusinessStatus, Offence, Restrictions, SpontaneousInformation, StatusUpdate, Thread,
};
use comity_protocol::receipt::Receipt;
use comity_protocol::session::{RejectReason, SessionFrame, LENGTH_PREFIX};
use comity_protocol::transition::IdentityTransition;
use comity_protocol::{Digest, EncryptionKeyCert, Identity, MessageId, Timestamp};
use common::fixtures::*;
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    from: Identity,
    to: Identity,
    id: MessageId,
    created_at: Timestamp,
    rng_seed: u8,
    body: Body,
}

fn cases() -> Vec<Case> {
    let request_id = MessageId([0x11; 16]);
    vec![
        Case {
            name: "urgent MLA request, Arcadia to Borduria, 1 KiB body",
            from: arcadia(),
            to: borduria(),
            id: request_id,
            created_at: NOW,
            rng_seed: 1,
            body: mla_request(1024),
        },
        Case {
            name: "spontaneous information with use restrictions, Carpania to Arcadia",
            from: carpania(),
            to: arcadia(),
            id: MessageId([0x22; 16]),
            created_at: Timestamp(NOW.0 + 1),
            rng_seed: 2,
            body: Body::SpontaneousInformation(SpontaneousInformation {
                subject: "Transfers through shell companies".into(),
                body: "Information obtained in our own investigation.".into(),
                offence: Some(Offence {
                    description: "Laundering of proceeds of crime".into(),
                    iccs: "0703".parse().unwrap(),
                }),
                language: "fr".parse().unwrap(),
                case_refs: Default::default(),
                restrictions: Restrictions {
                    confidential: true,
                    use_restrictions: vec![
                        "Not to be used as evidence without prior consent".into()
                    ],
                },
                thread: Thread::default(),
            }),
        },
        Case {
            name: "status update: registered, Borduria to Arcadia",
            from: borduria(),
            to: arcadia(),
            id: MessageId([0x33; 16]),
            created_at: Timestamp(NOW.0 + 2),
            rng_seed: 3,
            body: Body::StatusUpdate(StatusUpdate {
                regarding: request_id,
                status: BusinessStatus::Registered {
                    reference: "BO-AG-2026-5531".into(),
                },
                note: Some("Assigned to the asset recovery unit.".into()),
            }),
        },
    ]
}

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

fn identity_json(i: &Identity, seeds: (u8, u8)) -> Value {
    json!({
        "identity_seed": hex(&[seeds.0; 32]),
        "encryption_seed": hex(&[seeds.1; 32]),
        "encryption_created_at": i.encryption_cert().created_at.0,
        "node_id": i.id().to_string(),
        "public_key": hex(i.id().as_bytes()),
        "encryption_public_key": hex(&i.encryption_cert().public_key),
        "encryption_key_cert": hex(&i.encryption_cert().to_bytes()),
    })
}

fn compute() -> Value {
    let mut out = Vec::new();
    for c in cases() {
        let sealed = seal(
            &c.from,
            c.to.public(),
            c.id,
            c.created_at,
            &c.body,
            &mut rng(c.rng_seed),
        )
        .unwrap();
        let checked = check(
            &sealed.bytes,
            &c.to,
            &pins(&[&c.from]),
            &no_history(),
            &policy(),
        )
        .unwrap();
        let envelope = checked.envelope.clone();
        let opened = checked.clone().open(&c.to).unwrap();
        assert_eq!(opened.body, c.body);
        let receipt = Receipt::sign(&c.to, &opened, Timestamp(c.created_at.0 + 250)).unwrap();
        out.push(json!({
            "name": c.name,
            "sender_node_id": c.from.id().to_string(),
            "recipient_node_id": c.to.id().to_string(),
            "message_id": c.id.to_string(),
            "created_at": c.created_at.0,
            "rng": format!("ChaCha20 (rand_chacha 0.9) seeded with 32 bytes of 0x{:02x}: 32 bytes commitment salt, then HPKE ephemeral key", c.rng_seed),
            "body_json": serde_json::to_value(&c.body).unwrap(),
            "plaintext": hex(&opened.proof.plaintext),
            "body_commitment": envelope.body_commitment.to_string(),
            "encapsulated_key": hex(&envelope.encapsulated_key),
            "ciphertext_digest": envelope.ciphertext_digest().to_string(),
            "signature": hex(&envelope.signature),
            "envelope": hex(&sealed.bytes),
            "envelope_digest": sealed.digest.to_string(),
            "receipt_received_at": c.created_at.0 + 250,
            "receipt": hex(&receipt.to_bytes().unwrap()),
            "receipt_signature": hex(&receipt.signature),
        }));
    }
    let session_frames: Vec<Value> = session_cases()
        .into_iter()
        .map(|(name, frame)| {
            let (id, reason, detail) = match &frame {
                SessionFrame::Rejected { id, reason, detail } => (*id, *reason, detail.clone()),
                _ => unreachable!("only rejections here"),
            };
            json!({
                "name": name,
                "id": id.map(|i| i.to_string()),
                "reason_index": reason as u32,
                "reason": reason.name(),
                "detail": detail,
                "wire": hex(&frame.to_wire().unwrap()),
            })
        })
        .collect();
    json!({
        "restoration_statements": restoration_cases(),
        "transition_statements": transition_cases(),
        "comment": "Comity known answers: frame format v1, session protocol v2 (ALPN comity/2); see docs/protocol.md. All byte strings are lowercase hex.",
        "identities": {
            "arcadia": identity_json(&arcadia(), (0xa1, 0xa2)),
            "borduria": identity_json(&borduria(), (0xb1, 0xb2)),
            "carpania": identity_json(&carpania(), (0xc1, 0xc2)),
        },
        "cases": out,
        "session_frames": session_frames,
    })
}

/// Session frames whose layout changed in session protocol 2: a rejection
/// names its envelope's id, or none.
fn session_cases() -> Vec<(&'static str, SessionFrame)> {
    vec![
        (
            "rejection of an envelope whose id was read",
            SessionFrame::Rejected {
                id: Some(MessageId([0x11; 16])),
                reason: RejectReason::Stale,
                detail: "x".into(),
            },
        ),
        (
            "rejection of bytes with no readable id",
            SessionFrame::Rejected {
                id: None,
                reason: RejectReason::Malformed,
                detail: "bad frame".into(),
            },
        ),
    ]
}

/// A restoration statement (docs/audit.md §4.6), signed by Arcadia.
fn restoration_cases() -> Vec<Value> {
    let a = arcadia();
    let statement = RestorationStatement {
        node: a.id(),
        restored_size: 4,
        restored_root: Digest([0x44; 32]),
        backup_time: Timestamp(NOW.0 - 3_600_000),
        restored_at: NOW,
        continuation_size: 6,
        continuation_root: Digest([0x66; 32]),
    };
    vec![json!({
        "name": "Arcadia restored to size 4 from a backup an hour old, continuing at 6",
        "node_id": a.id().to_string(),
        "restored_size": statement.restored_size,
        "restored_root": statement.restored_root.to_string(),
        "backup_time": statement.backup_time.0,
        "restored_at": statement.restored_at.0,
        "continuation_size": statement.continuation_size,
        "continuation_root": statement.continuation_root.to_string(),
        "signing_input": hex(&statement.signing_input()),
        "signature": hex(&statement.sign(&a).unwrap()),
    })]
}

/// An identity transition (docs/protocol.md §3.4): Arcadia's identity
/// hands over to a new key, both signing.
fn transition_cases() -> Vec<Value> {
    let old = arcadia();
    let new = comity_protocol::Identity::from_seeds(&[0xa3; 32], &[0xa4; 32], NOW);
    let statement = IdentityTransition {
        old: old.id(),
        new: new.id(),
        created_at: NOW,
        effective_after: Timestamp(NOW.0 + 72 * 3_600_000),
        reason: "scheduled rotation".into(),
    }
    .sign(&old, &new)
    .unwrap();
    vec![json!({
        "name": "Arcadia hands over to the identity of seed a3, effective after 72 h",
        "old_node_id": old.id().to_string(),
        "new_node_id": new.id().to_string(),
        "new_identity_seed": hex(&[0xa3; 32]),
        "created_at": statement.transition.created_at.0,
        "effective_after": statement.transition.effective_after.0,
        "reason": statement.transition.reason,
        "framed": hex(&statement.to_bytes()),
    })]
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/kat-v1.json")
}

#[test]
fn vectors_match_the_committed_file() {
    let computed = compute();
    if std::env::var_os("COMITY_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).unwrap() + "\n";
        std::fs::write(path(), text).unwrap();
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(path()).expect("vectors/kat-v1.json is committed"),
    )
    .unwrap();
    assert_eq!(committed["identities"], computed["identities"]);
    let (want, got) = (
        committed["cases"].as_array().unwrap(),
        computed["cases"].as_array().unwrap(),
    );
    assert_eq!(want.len(), got.len());
    for (w, g) in want.iter().zip(got) {
        for (field, value) in w.as_object().unwrap() {
            assert_eq!(&g[field], value, "case {:?}, field {field}", w["name"]);
        }
    }
    assert_eq!(committed["session_frames"], computed["session_frames"]);
    assert_eq!(
        committed["restoration_statements"],
        computed["restoration_statements"]
    );
    assert_eq!(
        committed["transition_statements"],
        computed["transition_statements"]
    );
}

/// The committed session frames decode to what they say.
#[test]
fn committed_session_frames_decode() {
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let frames = committed["session_frames"].as_array().unwrap();
    assert_eq!(frames.len(), session_cases().len());
    for ((_, frame), want) in session_cases().into_iter().zip(frames) {
        let wire = hex::decode(want["wire"].as_str().unwrap()).unwrap();
        let len = SessionFrame::length(wire[..LENGTH_PREFIX].try_into().unwrap(), 1 << 20).unwrap();
        assert_eq!(len, wire.len() - LENGTH_PREFIX);
        assert_eq!(
            SessionFrame::from_bytes(&wire[LENGTH_PREFIX..]).unwrap(),
            frame
        );
    }
}

/// The committed bytes themselves (not just our recomputation) must pass
/// the checks of the current code.
#[test]
fn committed_envelopes_and_receipts_verify() {
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let ids = [arcadia(), borduria(), carpania()];
    for (c, want) in cases().iter().zip(committed["cases"].as_array().unwrap()) {
        let bytes = hex::decode(want["envelope"].as_str().unwrap()).unwrap();
        let to = ids.iter().find(|i| i.id() == c.to.id()).unwrap();
        let checked = check(&bytes, to, &pins(&[&c.from]), &no_history(), &policy()).unwrap();
        assert_eq!(checked.digest.to_string(), want["envelope_digest"]);
        let opened = checked.open(to).unwrap();
        assert_eq!(opened.body, c.body);

        let receipt =
            Receipt::from_bytes(&hex::decode(want["receipt"].as_str().unwrap()).unwrap()).unwrap();
        receipt
            .verify(&c.from.id(), c.to.public(), &c.id, &opened.envelope_digest)
            .unwrap();
    }
    for (name, i) in ["arcadia", "borduria", "carpania"].iter().zip(&ids) {
        let cert_hex = committed["identities"][name]["encryption_key_cert"]
            .as_str()
            .unwrap();
        let cert = EncryptionKeyCert::from_bytes(&hex::decode(cert_hex).unwrap()).unwrap();
        cert.verify().unwrap();
        assert_eq!(&cert, i.encryption_cert());
    }
}
