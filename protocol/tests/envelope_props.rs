//! Envelope properties for arbitrary messages, not just the fixed samples
//! of `envelope.rs`:
//! * whatever valid body, id and time (within the receiver's window) one
//!   node seals to another, the receiver checks and opens exactly that body
//!   and header, and the receipt it signs verifies for the sender;
//! * any single flipped bit of a sealed envelope is refused, by the check
//!   or at the latest when opening.

mod common;

use std::collections::HashMap;
use std::sync::LazyLock;

use comity_protocol::envelope::{
    check, envelope_digest, seal, Envelope, EnvelopeError, OriginProof,
};
use comity_protocol::message::Body;
use comity_protocol::receipt::{Receipt, ReceiptError};
use comity_protocol::{Digest, Identity, MessageId, NodeId, PeerKeys, Timestamp};
use common::fixtures::*;
use common::strategies::{any_body, any_message_id};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Sealing costs about 0.3 ms, so a few hundred cases; no regression files.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 500,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

struct Nodes {
    all: [Identity; 3],
    /// Everyone pins everyone.
    pins: HashMap<NodeId, PeerKeys>,
}

static NODES: LazyLock<Nodes> = LazyLock::new(|| {
    let all = [arcadia(), borduria(), carpania()];
    let pins = pins(&[&all[0], &all[1], &all[2]]);
    Nodes { all, pins }
});

/// `any_body()` behind a box: unoptimised, its deeply nested value tree
/// overflows a test thread's stack inside larger tuples.
fn body() -> BoxedStrategy<Body> {
    any_body().boxed()
}

/// Sender and recipient: two different nodes.
fn pair() -> impl Strategy<Value = (usize, usize)> {
    (0usize..3, 1usize..3).prop_map(|(from, d)| (from, (from + d) % 3))
}

/// A creation time the receiver accepts: from `max_age` ago to
/// `max_future_skew` ahead, both ends included.
fn created_at() -> impl Strategy<Value = Timestamp> {
    let p = policy();
    let oldest = p.now.saturating_sub(p.max_age).as_millis();
    let newest = p.now.saturating_add(p.max_future_skew).as_millis();
    prop_oneof![
        1 => Just(oldest),
        1 => Just(newest),
        1 => Just(p.now.as_millis()),
        6 => oldest..=newest,
    ]
    .prop_map(Timestamp)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn seal_check_open_round_trips_and_the_receipt_verifies(
        body in body(),
        id in any_message_id(),
        created_at in created_at(),
        (from, to) in pair(),
        seed in any::<[u8; 32]>(),
        received_at in any::<u64>().prop_map(Timestamp),
    ) {
        let n = &*NODES;
        let (sender, recipient) = (&n.all[from], &n.all[to]);
        let third = &n.all[3 - from - to];

        let mut rng = ChaCha20Rng::from_seed(seed);
        let sealed = seal(sender, recipient.public(), id, created_at, &body, &mut rng)
            .expect("a valid body seals");
        prop_assert_eq!(sealed.id, id);
        prop_assert_eq!(sealed.digest, envelope_digest(&sealed.bytes));

        // What travels in the clear is exactly what was asked for.
        let envelope = Envelope::from_bytes(&sealed.bytes).expect("a sealed envelope decodes");
        let h = &envelope.header;
        prop_assert_eq!(h.sender, sender.id());
        prop_assert_eq!(h.recipient, recipient.id());
        prop_assert_eq!(h.recipient_key, recipient.encryption_cert().public_key);
        prop_assert_eq!(h.id, id);
        prop_assert_eq!(h.kind, body.kind());
        prop_assert_eq!(h.created_at, created_at);
        prop_assert_eq!(envelope.to_bytes().ok(), Some(sealed.bytes.clone()));

        let checked = check(&sealed.bytes, recipient, &n.pins, &no_history(), &policy())
            .expect("the recipient accepts it");
        prop_assert_eq!(checked.digest, sealed.digest);
        prop_assert_eq!(checked.sender().id(), &sender.id());

        let opened = checked.open(recipient).expect("the recipient opens it");
        prop_assert_eq!(&opened.body, &body);
        prop_assert_eq!(&opened.header, &envelope.header);
        prop_assert_eq!(opened.envelope_digest, sealed.digest);

        // A third party convinced by the origin proof alone.
        let proof = OriginProof::from_bytes(&opened.proof.to_bytes().expect("proof encodes"))
            .expect("proof decodes");
        prop_assert_eq!(proof.verify(), Ok(body.clone()));
        prop_assert_eq!(&proof.header, &envelope.header);

        // The receipt, as the sender gets it over the wire.
        let receipt = Receipt::sign(recipient, &opened, received_at).unwrap();
        let wire = receipt.to_bytes().expect("receipt encodes");
        let receipt = Receipt::from_bytes(&wire).expect("receipt decodes");
        prop_assert_eq!(
            receipt.verify(&sender.id(), recipient.public(), &id, &sealed.digest),
            Ok(())
        );
        prop_assert_eq!(receipt.statement.received_at, received_at);
        // ...and not for anyone else, nor as anyone else's.
        let for_third = receipt.verify(&third.id(), recipient.public(), &id, &sealed.digest);
        prop_assert_eq!(for_third, Err(ReceiptError::NotForMe { found: sender.id() }));
        prop_assert!(receipt.verify_signature_only(sender.public()).is_err());

        // Nobody else accepts the envelope, and the recipient accepts it once.
        prop_assert_eq!(
            check(&sealed.bytes, third, &n.pins, &no_history(), &policy()).err(),
            Some(EnvelopeError::WrongRecipient { recipient: recipient.id() })
        );
        let seen: HashMap<(NodeId, MessageId), Digest> =
            HashMap::from([((sender.id(), id), sealed.digest)]);
        prop_assert_eq!(
            check(&sealed.bytes, recipient, &n.pins, &seen, &policy()).err(),
            Some(EnvelopeError::AlreadyReceived { id, digest: sealed.digest })
        );
    }

    #[test]
    fn any_single_flipped_bit_is_refused(
        body in body(),
        id in any_message_id(),
        created_at in created_at(),
        (from, to) in pair(),
        seed in any::<[u8; 32]>(),
        bits in vec(any::<Index>(), 16),
    ) {
        let n = &*NODES;
        let (sender, recipient) = (&n.all[from], &n.all[to]);
        let mut rng = ChaCha20Rng::from_seed(seed);
        let sealed = seal(sender, recipient.public(), id, created_at, &body, &mut rng)
            .expect("a valid body seals");
        for bit in bits {
            let i = bit.index(sealed.bytes.len() * 8);
            let mut bytes = sealed.bytes.clone();
            bytes[i / 8] ^= 1 << (i % 8);
            let r = check(&bytes, recipient, &n.pins, &no_history(), &policy())
                .and_then(|c| c.open(recipient));
            prop_assert!(r.is_err(), "bit {} of {} flipped was accepted", i, bytes.len() * 8);
        }
    }
}
