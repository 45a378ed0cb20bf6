//! The envelope's guarantees, one test per way of attacking it.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::HashMap;
use std::time::Duration;

use comity_protocol::codec::DecodeError;
use comity_protocol::envelope::{check, seal, Envelope, EnvelopeError};
use comity_protocol::receipt::{Receipt, ReceiptError};
use comity_protocol::{MessageId, Timestamp};
use common::fixtures::*;

fn sealed_a_to_b() -> (comity_protocol::envelope::SealedEnvelope, MessageId) {
    let (a, b) = (arcadia(), borduria());
    let id = MessageId([7; 16]);
    let s = seal(&a, b.public(), id, NOW, &mla_request(1024), &mut rng(1)).unwrap();
    (s, id)
}

#[test]
fn seal_check_open_round_trip() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, id) = sealed_a_to_b();
    let checked = check(&sealed.bytes, &b, &pins(&[&a]), &no_history(), &policy()).unwrap();
    assert_eq!(checked.digest, sealed.digest);
    let opened = checked.open(&b).unwrap();
    assert_eq!(opened.header.id, id);
    assert_eq!(opened.header.sender, a.id());
    assert_eq!(opened.body, mla_request(1024));
}

#[test]
fn body_is_not_in_the_clear() {
    let (sealed, _) = sealed_a_to_b();
    let needle = b"Bank records of Example Holdings";
    assert!(!sealed.bytes.windows(needle.len()).any(|w| w == needle));
}

#[test]
fn every_flipped_bit_is_refused() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, _) = sealed_a_to_b();
    let peers = pins(&[&a]);
    for i in 0..sealed.bytes.len() * 8 {
        let mut bytes = sealed.bytes.clone();
        bytes[i / 8] ^= 1 << (i % 8);
        let r = check(&bytes, &b, &peers, &no_history(), &policy()).and_then(|c| c.open(&b));
        assert!(r.is_err(), "bit {i} flipped was accepted");
    }
}

#[test]
fn flipped_bit_in_ciphertext_or_signature_is_a_bad_signature() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, _) = sealed_a_to_b();
    let n = sealed.bytes.len();
    // Last 64 bytes: signature; the 100 bytes before: ciphertext.
    for pos in [n - 1, n - 64, n - 100] {
        let mut bytes = sealed.bytes.clone();
        bytes[pos] ^= 0x10;
        let err = check(&bytes, &b, &pins(&[&a]), &no_history(), &policy()).unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::BadSignature { sender: a.id() },
            "byte {pos}"
        );
    }
}

#[test]
fn changed_header_field_is_a_bad_signature() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, _) = sealed_a_to_b();
    let original = Envelope::from_bytes(&sealed.bytes).unwrap();
    let mut edits: Vec<Envelope> = Vec::new();
    let mut e = original.clone();
    e.header.id = MessageId([8; 16]);
    edits.push(e);
    let mut e = original.clone();
    e.header.created_at = Timestamp(NOW.0 - 1);
    edits.push(e);
    let mut e = original.clone();
    e.header.kind = comity_protocol::message::MessageKind::Consultation;
    edits.push(e);
    let mut e = original.clone();
    e.body_commitment.0[0] ^= 1;
    edits.push(e);
    for e in edits {
        let err = check(
            &e.to_bytes().unwrap(),
            &b,
            &pins(&[&a]),
            &no_history(),
            &policy(),
        )
        .unwrap_err();
        assert_eq!(err, EnvelopeError::BadSignature { sender: a.id() });
    }
}

#[test]
fn wrong_recipient_is_refused_before_decryption() {
    let (a, c) = (arcadia(), carpania());
    let (sealed, _) = sealed_a_to_b();
    let err = check(&sealed.bytes, &c, &pins(&[&a]), &no_history(), &policy()).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::WrongRecipient {
            recipient: borduria().id()
        }
    );
}

#[test]
fn unpinned_signer_is_refused() {
    let b = borduria();
    let (sealed, _) = sealed_a_to_b();
    // Borduria pins only Carpania.
    let err = check(
        &sealed.bytes,
        &b,
        &pins(&[&carpania()]),
        &no_history(),
        &policy(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::UnknownSender {
            sender: arcadia().id()
        }
    );
}

/// Borduria, having received a message signed by Arcadia, re-encrypts it to
/// Carpania to make it look as if Arcadia had told Carpania.
#[test]
fn surreptitious_forwarding_is_refused_by_the_third_node() {
    let (a, b, c) = (arcadia(), borduria(), carpania());
    let (sealed, _) = sealed_a_to_b();
    let opened = check(&sealed.bytes, &b, &pins(&[&a]), &no_history(), &policy())
        .unwrap()
        .open(&b)
        .unwrap();
    let original = Envelope::from_bytes(&sealed.bytes).unwrap();

    // The re-encryption: same plaintext, sealed by B (the only one who can)
    // to Carpania's key, keeping Arcadia's signature.
    let b_to_c = seal(
        &b,
        c.public(),
        opened.header.id,
        NOW,
        &opened.body,
        &mut rng(9),
    )
    .unwrap();
    let reencrypted = Envelope::from_bytes(&b_to_c.bytes).unwrap();

    // (1) Header re-addressed to Carpania, sender still Arcadia.
    let mut forged = reencrypted.clone();
    forged.header.sender = a.id();
    forged.signature = original.signature;
    let err = check(
        &forged.to_bytes().unwrap(),
        &c,
        &pins(&[&a, &b]),
        &no_history(),
        &policy(),
    )
    .unwrap_err();
    assert_eq!(err, EnvelopeError::BadSignature { sender: a.id() });

    // (2) Arcadia's signed header kept as is (still says "to Borduria"),
    // new ciphertext for Carpania.
    let mut forged = original.clone();
    forged.encapsulated_key = reencrypted.encapsulated_key;
    forged.ciphertext = reencrypted.ciphertext.clone();
    let err = check(
        &forged.to_bytes().unwrap(),
        &c,
        &pins(&[&a, &b]),
        &no_history(),
        &policy(),
    )
    .unwrap_err();
    assert_eq!(err, EnvelopeError::WrongRecipient { recipient: b.id() });

    // (3) The whole original envelope, untouched, passed on.
    let err = check(
        &sealed.bytes,
        &c,
        &pins(&[&a, &b]),
        &no_history(),
        &policy(),
    )
    .unwrap_err();
    assert_eq!(err, EnvelopeError::WrongRecipient { recipient: b.id() });
}

#[test]
fn replay_of_a_known_id_is_detected_and_told_apart_from_reuse() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, id) = sealed_a_to_b();
    let mut seen = HashMap::new();
    seen.insert((a.id(), id), sealed.digest);
    let err = check(&sealed.bytes, &b, &pins(&[&a]), &seen, &policy()).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::AlreadyReceived {
            id,
            digest: sealed.digest
        }
    );

    // The same id sealed again by Arcadia with other content.
    let other = seal(&a, b.public(), id, NOW, &mla_request(10), &mut rng(2)).unwrap();
    let err = check(&other.bytes, &b, &pins(&[&a]), &seen, &policy()).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::IdReused {
            id,
            first: sealed.digest,
            now: other.digest
        }
    );

    // Ids are per sender: Carpania using the same id is not a replay.
    let c = carpania();
    let from_c = seal(&c, b.public(), id, NOW, &mla_request(10), &mut rng(3)).unwrap();
    assert!(check(&from_c.bytes, &b, &pins(&[&a, &c]), &seen, &policy()).is_ok());
}

#[test]
fn retransmission_of_an_accepted_envelope_is_answered_even_when_old() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, id) = sealed_a_to_b();
    let mut seen = HashMap::new();
    seen.insert((a.id(), id), sealed.digest);
    let mut later = policy();
    later.now = NOW.saturating_add(Duration::from_secs(30 * 24 * 3600));
    assert_eq!(
        check(&sealed.bytes, &b, &pins(&[&a]), &seen, &later).unwrap_err(),
        EnvelopeError::AlreadyReceived {
            id,
            digest: sealed.digest
        }
    );
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    let (a, b) = (arcadia(), borduria());
    let p = policy();
    let future = Timestamp(NOW.0 + 301_000);
    let s = seal(
        &a,
        b.public(),
        MessageId([1; 16]),
        future,
        &mla_request(5),
        &mut rng(4),
    )
    .unwrap();
    assert_eq!(
        check(&s.bytes, &b, &pins(&[&a]), &no_history(), &p).unwrap_err(),
        EnvelopeError::FromFuture {
            created_at: future,
            now: NOW
        }
    );
    let old = NOW.saturating_sub(Duration::from_secs(15 * 24 * 3600));
    let s = seal(
        &a,
        b.public(),
        MessageId([2; 16]),
        old,
        &mla_request(5),
        &mut rng(5),
    )
    .unwrap();
    assert_eq!(
        check(&s.bytes, &b, &pins(&[&a]), &no_history(), &p).unwrap_err(),
        EnvelopeError::Stale {
            created_at: old,
            now: NOW
        }
    );
    // Just inside both bounds.
    for t in [
        Timestamp(NOW.0 + 299_000),
        NOW.saturating_sub(Duration::from_secs(13 * 24 * 3600)),
    ] {
        let s = seal(
            &a,
            b.public(),
            MessageId([3; 16]),
            t,
            &mla_request(5),
            &mut rng(6),
        )
        .unwrap();
        assert!(check(&s.bytes, &b, &pins(&[&a]), &no_history(), &p).is_ok());
    }
}

#[test]
fn truncated_input_is_refused_at_every_length() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, _) = sealed_a_to_b();
    for n in 0..sealed.bytes.len() {
        let err = check(
            &sealed.bytes[..n],
            &b,
            &pins(&[&a]),
            &no_history(),
            &policy(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::Decode(DecodeError::Truncated),
            "length {n}"
        );
    }
}

#[test]
fn length_field_claiming_gigabytes_is_refused_without_allocating() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, _) = sealed_a_to_b();
    // Frame header 6, header 32+32+32+16+4+8 = 124, enc 32, commitment 32:
    // the ciphertext length (u64 LE) starts at byte 194.
    let at = 6 + 124 + 32 + 32;
    let mut bytes = sealed.bytes.clone();
    let original_len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert_eq!(original_len, (sealed.bytes.len() - at - 8 - 64) as u64);
    bytes[at..at + 8].copy_from_slice(&(3u64 << 30).to_le_bytes());
    let err = check(&bytes, &b, &pins(&[&a]), &no_history(), &policy()).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::Decode(DecodeError::LengthExceedsLimit { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn trailing_bytes_are_refused() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, _) = sealed_a_to_b();
    let mut bytes = sealed.bytes.clone();
    bytes.extend_from_slice(&[0, 0, 0]);
    let err = check(&bytes, &b, &pins(&[&a]), &no_history(), &policy()).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::Decode(DecodeError::TrailingBytes { extra: 3 })
    );
}

#[test]
fn oversize_envelope_is_refused_before_decoding() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, _) = sealed_a_to_b();
    let mut p = policy();
    p.max_envelope_bytes = 512;
    let err = check(&sealed.bytes, &b, &pins(&[&a]), &no_history(), &p).unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::TooLarge {
            len: sealed.bytes.len(),
            max: 512
        }
    );
}

#[test]
fn envelope_sealed_to_an_old_encryption_key_is_refused() {
    let a = arcadia();
    let b_old = borduria();
    let (sealed, _) = sealed_a_to_b();
    // Borduria rotated its encryption key (same identity, new X25519 key).
    let b_new = comity_protocol::Identity::from_seeds(&[0xb1; 32], &[0xbb; 32], NOW);
    assert_eq!(b_new.id(), b_old.id());
    let err = check(
        &sealed.bytes,
        &b_new,
        &pins(&[&a]),
        &no_history(),
        &policy(),
    )
    .unwrap_err();
    assert_eq!(err, EnvelopeError::UnknownEncryptionKey);
}

#[test]
fn after_a_rotation_the_previous_key_opens_until_it_is_dropped() {
    let a = arcadia();
    let b_old = borduria();
    let (old_sealed, _) = sealed_a_to_b();
    let later = NOW.saturating_add(Duration::from_secs(60));
    let b = b_old.with_new_encryption_key(&[0xbc; 32], later).unwrap();
    assert_eq!(b.id(), b_old.id());
    assert_ne!(b.encryption_cert(), b_old.encryption_cert());
    assert!(
        b.public().cert().verify().is_ok(),
        "certified by the identity key"
    );
    assert_eq!(b.previous_keys().len(), 1);
    // Sealed to the previous key: still opened.
    let checked = check(
        &old_sealed.bytes,
        &b,
        &pins(&[&a]),
        &no_history(),
        &policy(),
    )
    .unwrap();
    assert_eq!(checked.open(&b).unwrap().body, mla_request(1024));
    // Sealed to the new one: opened; the old identity cannot.
    let id = MessageId([8; 16]);
    let new_sealed = seal(&a, b.public(), id, NOW, &mla_request(64), &mut rng(2)).unwrap();
    let checked = check(
        &new_sealed.bytes,
        &b,
        &pins(&[&a]),
        &no_history(),
        &policy(),
    )
    .unwrap();
    assert_eq!(checked.open(&b).unwrap().body, mla_request(64));
    assert_eq!(
        check(
            &new_sealed.bytes,
            &b_old,
            &pins(&[&a]),
            &no_history(),
            &policy()
        )
        .unwrap_err(),
        EnvelopeError::UnknownEncryptionKey
    );
    // A second rotation keeps both earlier keys; dropping the oldest
    // refuses what was sealed to it.
    let b2 = b
        .with_new_encryption_key(&[0xbd; 32], later.saturating_add(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(b2.previous_keys().len(), 2);
    // Each superseded when the key after it was made, newest first.
    let superseded: Vec<_> = b2
        .superseded_keys()
        .map(|(k, at)| (k.created_at(), at))
        .collect();
    let second = later.saturating_add(Duration::from_secs(1));
    let first = b_old.encryption_cert().created_at;
    assert_eq!(superseded, vec![(later, second), (first, later)]);
    assert!(check(
        &old_sealed.bytes,
        &b2,
        &pins(&[&a]),
        &no_history(),
        &policy()
    )
    .is_ok());
    let dropped = b2.without_previous_keys(|k| k.created_at() < later);
    assert_eq!(dropped.previous_keys().len(), 1);
    assert_eq!(
        check(
            &old_sealed.bytes,
            &dropped,
            &pins(&[&a]),
            &no_history(),
            &policy()
        )
        .unwrap_err(),
        EnvelopeError::UnknownEncryptionKey
    );
    assert!(check(
        &new_sealed.bytes,
        &dropped,
        &pins(&[&a]),
        &no_history(),
        &policy()
    )
    .is_ok());
    // Reloaded from its parts (key file and previous keys): the same.
    let reloaded = comity_protocol::Identity::from_seeds(
        &[0xb1; 32],
        &[0xbd; 32],
        b2.encryption_cert().created_at,
    )
    .with_previous_keys(
        b2.previous_keys()
            .iter()
            .map(|k| {
                comity_protocol::identity::PreviousEncryptionKey::from_seed(
                    k.seed(),
                    k.created_at(),
                )
            })
            .collect(),
    );
    assert_eq!(reloaded.encryption_cert(), b2.encryption_cert());
    assert!(check(
        &old_sealed.bytes,
        &reloaded,
        &pins(&[&a]),
        &no_history(),
        &policy()
    )
    .is_ok());
}

#[test]
fn a_duplicate_is_answered_with_its_receipt_after_the_encryption_key_rotated() {
    let a = arcadia();
    let (sealed, id) = sealed_a_to_b();
    let mut seen = HashMap::new();
    seen.insert((a.id(), id), sealed.digest);
    // Borduria accepted it, then rotated its encryption key; the receipt was
    // lost and Arcadia sends the same bytes again.
    let b_new = comity_protocol::Identity::from_seeds(&[0xb1; 32], &[0xbb; 32], NOW);
    assert_eq!(
        check(&sealed.bytes, &b_new, &pins(&[&a]), &seen, &policy()).unwrap_err(),
        EnvelopeError::AlreadyReceived {
            id,
            digest: sealed.digest
        }
    );
}

#[test]
fn origin_proof_convinces_a_third_party_and_nothing_else() {
    let (a, b) = (arcadia(), borduria());
    let (sealed, _) = sealed_a_to_b();
    let opened = check(&sealed.bytes, &b, &pins(&[&a]), &no_history(), &policy())
        .unwrap()
        .open(&b)
        .unwrap();
    // An auditor with only the proof's bytes.
    let bytes = opened.proof.to_bytes().unwrap();
    let proof = comity_protocol::envelope::OriginProof::from_bytes(&bytes).unwrap();
    assert_eq!(proof.verify().unwrap(), mla_request(1024));
    assert_eq!(proof.header.sender, a.id());
    assert_eq!(proof.header.recipient, b.id());

    // Borduria cannot make Arcadia say something else.
    let mut altered = proof.clone();
    let n = altered.plaintext.len();
    altered.plaintext[n - 1] ^= 1;
    assert_eq!(
        altered.verify().unwrap_err(),
        EnvelopeError::BadSignature { sender: a.id() }
    );
}

#[test]
fn receipt_is_verified_by_the_sender() {
    let (a, b, c) = (arcadia(), borduria(), carpania());
    let (sealed, id) = sealed_a_to_b();
    let opened = check(&sealed.bytes, &b, &pins(&[&a]), &no_history(), &policy())
        .unwrap()
        .open(&b)
        .unwrap();
    let receipt = Receipt::sign(&b, &opened, NOW).unwrap();
    let bytes = receipt.to_bytes().unwrap();
    let back = Receipt::from_bytes(&bytes).unwrap();
    back.verify(&a.id(), b.public(), &id, &sealed.digest)
        .unwrap();

    assert_eq!(
        back.verify(&a.id(), c.public(), &id, &sealed.digest),
        Err(ReceiptError::WrongSigner {
            expected: c.id(),
            found: b.id()
        })
    );
    assert!(matches!(
        back.verify(&a.id(), b.public(), &MessageId([0; 16]), &sealed.digest),
        Err(ReceiptError::WrongMessage { .. })
    ));
    assert!(matches!(
        back.verify(&a.id(), b.public(), &id, &comity_protocol::Digest([0; 32])),
        Err(ReceiptError::DigestMismatch { .. })
    ));
    assert!(matches!(
        back.verify(&c.id(), b.public(), &id, &sealed.digest),
        Err(ReceiptError::NotForMe { .. })
    ));
    let mut forged = back.clone();
    forged.statement.received_at = Timestamp(1);
    assert_eq!(
        forged.verify(&a.id(), b.public(), &id, &sealed.digest),
        Err(ReceiptError::BadSignature)
    );
    // A receipt signed by someone else but claiming to be Borduria's.
    let mut by_c = Receipt::sign(&c, &opened, NOW).unwrap();
    by_c.statement.recipient = b.id();
    assert_eq!(
        by_c.verify(&a.id(), b.public(), &id, &sealed.digest),
        Err(ReceiptError::BadSignature)
    );
    // A third party checking a signature names who should have signed.
    assert!(back.verify_signature_only(b.public()).is_ok());
    assert!(matches!(
        back.verify_signature_only(c.public()),
        Err(ReceiptError::WrongSigner { .. })
    ));
    // Receipt frames are not envelopes and vice versa.
    assert!(Receipt::from_bytes(&sealed.bytes).is_err());
    assert!(Envelope::from_bytes(&bytes).is_err());
}

#[test]
fn decoding_is_canonical_so_digests_agree() {
    let (sealed, _) = sealed_a_to_b();
    let env = Envelope::from_bytes(&sealed.bytes).unwrap();
    assert_eq!(env.to_bytes().unwrap(), sealed.bytes);
}
