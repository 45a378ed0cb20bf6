//! Attachments in sealed envelopes: what the signature, the origin proof and
//! the receipt cover, and what is refused before any attachment data.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use comity_protocol::attachment::{
    AttachmentLimits, ChunkTable, InvalidAttachment, Opener, SealedAttachment, SealedChunk, Sealer,
};
use comity_protocol::envelope::{check, seal, seal_with_attachments, EnvelopeError, SealError};
use comity_protocol::message::{Body, BusinessStatus, Reply, StatusUpdate, Thread};
use comity_protocol::receipt::Receipt;
use comity_protocol::session::RejectReason;
use comity_protocol::{Digest, MessageId};
use common::fixtures::*;

fn reply() -> Body {
    Body::Reply(Reply {
        in_reply_to: MessageId([0x11; 16]),
        subject: "Bank statements".into(),
        body: "The statements are attached.".into(),
        partial: false,
        thread: Thread::default(),
    })
}

fn sealed_file(name: &str, plain: &[u8], seed: u8) -> (SealedAttachment, Vec<SealedChunk>) {
    let mut s = Sealer::new(
        name,
        "application/pdf",
        plain.len() as u64,
        &AttachmentLimits::default(),
        &mut rng(seed),
    )
    .unwrap();
    let mut chunks = Vec::new();
    let mut at = 0;
    while let Some((_, len)) = s.next_chunk() {
        chunks.push(s.seal_chunk(plain[at..at + len].to_vec()).unwrap());
        at += len;
    }
    (s.finish().unwrap(), chunks)
}

#[test]
fn attachments_travel_signed_and_open_with_their_keys() {
    let (from, to) = (borduria(), arcadia());
    let plain: Vec<u8> = (0..150_000u32).map(|i| (i % 253) as u8).collect();
    let (a, chunks) = sealed_file("statements.pdf", &plain, 40);
    let (b, _) = sealed_file("annex.pdf", b"%PDF-1.7 tiny", 41);
    let sealed = seal_with_attachments(
        &from,
        to.public(),
        MessageId([0x44; 16]),
        NOW,
        &reply(),
        &[a.clone(), b.clone()],
        &AttachmentLimits::default(),
        &mut rng(42),
    )
    .unwrap();
    let checked = check(
        &sealed.bytes,
        &to,
        &pins(&[&from]),
        &no_history(),
        &policy(),
    )
    .unwrap();
    let opened = checked.open(&to).unwrap();
    assert_eq!(opened.body, reply());
    assert_eq!(opened.attachments.len(), 2);
    assert_eq!(opened.attachments[0].manifest(), &a.manifest);
    assert_eq!(opened.attachments[1].name(), "annex.pdf");
    assert_eq!(opened.attachments[1].to_sealed(), b);

    // The key that came inside the envelope opens the content.
    let att = &opened.attachments[0];
    let leaves: Vec<Digest> = chunks.iter().map(|c| c.leaf).collect();
    let table = ChunkTable::verify(att, &ChunkTable::encode(&leaves)).unwrap();
    let mut o = Opener::new(att, table).unwrap();
    let mut out = Vec::new();
    for c in &chunks {
        out.extend(
            o.open_chunk(c.index, c.ciphertext.clone())
                .unwrap()
                .plaintext,
        );
    }
    assert!(o.is_complete());
    assert_eq!(out, plain);

    // The origin proof shows the manifests, verifiably, and no key.
    let (body, manifests) = opened.proof.verify_with_attachments().unwrap();
    assert_eq!(body, reply());
    assert_eq!(manifests, vec![a.manifest.clone(), b.manifest.clone()]);
    assert_eq!(opened.proof.verify().unwrap(), reply());
    for key in [a.key.key_bytes(), b.key.key_bytes()] {
        assert!(!opened.proof.plaintext.windows(32).any(|w| w == key));
        let proof_bytes = opened.proof.to_bytes().unwrap();
        assert!(!proof_bytes.windows(32).any(|w| w == key));
    }
    // A proof whose manifest was changed no longer verifies.
    let mut forged = opened.proof.clone();
    let at = forged
        .plaintext
        .windows(a.manifest.sha256.0.len())
        .position(|w| w == a.manifest.sha256.0)
        .unwrap();
    forged.plaintext[at] ^= 1;
    assert!(matches!(
        forged.verify_with_attachments(),
        Err(EnvelopeError::BadSignature { .. })
    ));

    // The receipt names the envelope, which holds the manifests and keys.
    let receipt = Receipt::sign(&to, &opened, NOW).unwrap();
    receipt
        .verify(
            &from.id(),
            to.public(),
            &MessageId([0x44; 16]),
            &sealed.digest,
        )
        .unwrap();
}

#[test]
fn resealing_does_not_touch_the_content() {
    // The same sealed attachment in two envelopes (a resend, another key):
    // the manifests and keys are equal, so the stored ciphertext serves both.
    let (from, to) = (borduria(), arcadia());
    let (a, _) = sealed_file("x.pdf", b"evidence", 43);
    let mut opened = Vec::new();
    for (id, seed) in [(0x45u8, 44u8), (0x46, 45)] {
        let s = seal_with_attachments(
            &from,
            to.public(),
            MessageId([id; 16]),
            NOW,
            &reply(),
            std::slice::from_ref(&a),
            &AttachmentLimits::default(),
            &mut rng(seed),
        )
        .unwrap();
        let c = check(&s.bytes, &to, &pins(&[&from]), &no_history(), &policy()).unwrap();
        opened.push(c.open(&to).unwrap().attachments.remove(0).to_sealed());
    }
    assert_eq!(opened[0], a);
    assert_eq!(opened[1], a);
}

#[test]
fn a_manifest_over_the_receivers_limit_is_refused_at_open() {
    let (from, to) = (borduria(), arcadia());
    let (a, _) = sealed_file("big.pdf", &vec![7u8; 5000], 46);
    let s = seal_with_attachments(
        &from,
        to.public(),
        MessageId([0x47; 16]),
        NOW,
        &reply(),
        &[a],
        &AttachmentLimits::default(),
        &mut rng(47),
    )
    .unwrap();
    let strict = AttachmentLimits {
        max_attachment_bytes: 4096,
        ..AttachmentLimits::default()
    };
    let c = check(&s.bytes, &to, &pins(&[&from]), &no_history(), &policy()).unwrap();
    let e = c.open_with_limits(&to, &strict).unwrap_err();
    assert_eq!(
        e,
        EnvelopeError::Attachment(InvalidAttachment::TooLarge {
            index: 0,
            size: 5000,
            max: 4096
        })
    );
    assert_eq!(e.reject_reason(), Some(RejectReason::TooLarge));
}

#[test]
fn a_sender_cannot_seal_what_the_rules_refuse() {
    let (from, to) = (borduria(), arcadia());
    let (a, _) = sealed_file("x.pdf", b"x", 48);
    let status = Body::StatusUpdate(StatusUpdate {
        regarding: MessageId([0x11; 16]),
        status: BusinessStatus::InExecution,
        note: None,
    });
    let e = seal_with_attachments(
        &from,
        to.public(),
        MessageId([0x48; 16]),
        NOW,
        &status,
        std::slice::from_ref(&a),
        &AttachmentLimits::default(),
        &mut rng(48),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        SealError::Attachment(InvalidAttachment::NotOnKind { .. })
    ));
    // A manifest with a path for a name, made by hand.
    let mut evil = a.clone();
    evil.manifest.name = "../../etc/passwd".into();
    let e = seal_with_attachments(
        &from,
        to.public(),
        MessageId([0x49; 16]),
        NOW,
        &reply(),
        &[evil],
        &AttachmentLimits::default(),
        &mut rng(49),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        SealError::Attachment(InvalidAttachment::BadName { .. })
    ));
}

#[test]
fn no_attachments_seal_exactly_as_before() {
    let (from, to) = (borduria(), arcadia());
    let plain = seal(
        &from,
        to.public(),
        MessageId([0x50; 16]),
        NOW,
        &reply(),
        &mut rng(50),
    )
    .unwrap();
    let with_none = seal_with_attachments(
        &from,
        to.public(),
        MessageId([0x50; 16]),
        NOW,
        &reply(),
        &[],
        &AttachmentLimits::default(),
        &mut rng(50),
    )
    .unwrap();
    assert_eq!(plain.bytes, with_none.bytes);
    let c = check(&plain.bytes, &to, &pins(&[&from]), &no_history(), &policy()).unwrap();
    assert!(c.open(&to).unwrap().attachments.is_empty());
}
