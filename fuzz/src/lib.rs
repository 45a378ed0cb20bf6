//! What the fuzz targets run, kept in a library so that `cargo test` can
//! replay the seeds without libFuzzer and the example can write them.
//!
//! The identities are those of `protocol/tests/common/fixtures.rs`
//! (Arcadia, Borduria, Carpania with fixed seeds); the receiving node is
//! always Borduria, which pins Arcadia and Carpania.
//!
//! Each function must return for every input. Beyond "no panic" they
//! assert what must hold for whatever is accepted: the codec is canonical
//! (what decodes re-encodes to the same bytes), an opened message is valid
//! and provable to a third party, a loaded key file saves and loads back.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use comity_protocol::codec::{self, MAX_FRAME_BYTES};
use comity_protocol::envelope::{check, seal, CheckPolicy, Envelope, OriginProof};
use comity_protocol::message::{
    Body, BusinessStatus, CaseReferences, Consultation, Date, IccsCode, Language, LegalBasis,
    Offence, Reply, Request, RequestType, Restrictions, SpontaneousInformation, StatusUpdate,
    Thread, Urgency,
};
use comity_protocol::receipt::Receipt;
use comity_protocol::{Digest, Identity, MessageId, NodeId, PeerKeys, Timestamp};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// 2026-11-22T12:00:00Z, the receiver's clock.
pub const NOW: Timestamp = Timestamp(1_795_348_800_000);

pub struct World {
    pub arcadia: Identity,
    pub borduria: Identity,
    pub carpania: Identity,
    /// Borduria's pins.
    pub pins: HashMap<NodeId, PeerKeys>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let created = Timestamp(1_790_000_000_000);
    let arcadia = Identity::from_seeds(&[0xa1; 32], &[0xa2; 32], created);
    let borduria = Identity::from_seeds(&[0xb1; 32], &[0xb2; 32], created);
    let carpania = Identity::from_seeds(&[0xc1; 32], &[0xc2; 32], created);
    let pins = [&arcadia, &carpania]
        .iter()
        .map(|i| (i.id(), i.public().clone()))
        .collect();
    World {
        arcadia,
        borduria,
        carpania,
        pins,
    }
});

pub fn world() -> &'static World {
    &WORLD
}

pub fn policy() -> CheckPolicy {
    CheckPolicy {
        now: NOW,
        max_future_skew: Duration::from_secs(300),
        max_age: Duration::from_secs(14 * 24 * 3600),
        max_envelope_bytes: 4 * 1024 * 1024,
    }
}

/// Borduria receives `data` from the network: decode, outer check, open,
/// receipt.
pub fn envelope_decode(data: &[u8]) {
    let w = world();
    if let Ok(env) = Envelope::from_bytes(data) {
        assert_eq!(
            env.to_bytes().ok().as_deref(),
            Some(data),
            "non-canonical envelope"
        );
    }
    let seen: HashMap<(NodeId, MessageId), Digest> = HashMap::new();
    let Ok(checked) = check(data, &w.borduria, &w.pins, &seen, &policy()) else {
        return;
    };
    let digest = checked.digest;
    let Ok(opened) = checked.open(&w.borduria) else {
        return;
    };
    assert_eq!(opened.envelope_digest, digest);
    let receipt = Receipt::sign(&w.borduria, &opened, NOW);
    assert_eq!(opened.body.validate(), Ok(()), "opened an invalid body");
    assert_eq!(opened.body.kind(), opened.header.kind);
    assert_eq!(
        opened.proof.verify().as_ref(),
        Ok(&opened.body),
        "proof does not verify"
    );
    let h = &opened.header;
    receipt
        .verify(&h.sender, w.borduria.public(), &h.id, &digest)
        .expect("the receipt for an opened message verifies");
}

/// A sender (or a third party) receives a receipt.
pub fn receipt_decode(data: &[u8]) {
    let w = world();
    let Ok(r) = Receipt::from_bytes(data) else {
        return;
    };
    assert_eq!(
        r.to_bytes().ok().as_deref(),
        Some(data),
        "non-canonical receipt"
    );
    for signer in [&w.arcadia, &w.borduria, &w.carpania] {
        let _ = r.verify_signature_only(signer.public());
    }
    let s = &r.statement;
    let _ = r.verify(
        &s.sender,
        w.borduria.public(),
        &s.message_id,
        &s.envelope_digest,
    );
}

/// An auditor is handed an origin proof.
pub fn origin_proof_decode(data: &[u8]) {
    let Ok(proof) = OriginProof::from_bytes(data) else {
        return;
    };
    assert_eq!(
        proof.to_bytes().ok().as_deref(),
        Some(data),
        "non-canonical proof"
    );
    if let Ok(body) = proof.verify() {
        assert_eq!(body.kind(), proof.header.kind);
    }
}

/// A node loads its key file (and an operator pastes a node id).
pub fn key_file_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<NodeId>();
    let _ = text.parse::<MessageId>();
    if let Ok(identity) = Identity::from_key_file(text) {
        let again = Identity::from_key_file(&identity.to_key_file())
            .expect("a loaded key file saves and loads back");
        assert_eq!(again.id(), identity.id());
        assert_eq!(again.encryption_cert(), identity.encryption_cert());
    }
}

/// The decrypted body a peer sent: decode, validate, show as JSON.
pub fn body_decode(data: &[u8]) {
    let Ok(body) = codec::decode::<Body, MAX_FRAME_BYTES>(data) else {
        return;
    };
    assert_eq!(
        codec::encode(&body).ok().as_deref(),
        Some(data),
        "non-canonical body"
    );
    let _ = (body.kind(), body.subject(), body.thread());
    if body.validate().is_ok() {
        let json = serde_json::to_string(&body).expect("a body serialises");
        let back: Body = serde_json::from_str(&json).expect("a valid body's JSON parses");
        assert_eq!(back, body);
    }
}

// ---------------------------------------------------------------------------
// Seeds.

/// One valid body of each kind.
pub fn sample_bodies() -> Vec<(&'static str, Body)> {
    let thread = Thread {
        in_reply_to: Some(MessageId([1; 16])),
        root: Some(MessageId([1; 16])),
    };
    let offence = Offence {
        description: "Bribery of a national public official".into(),
        iccs: IccsCode::new("07031").expect("valid ICCS code"),
    };
    let case_refs = CaseReferences {
        sender: Some("AR-MJ-2026/0147".into()),
        receiver: Some("BD/2026/77".into()),
    };
    vec![
        (
            "request",
            Body::Request(Request {
                request_type: RequestType::MutualLegalAssistance,
                legal_basis: LegalBasis::UncacArt46,
                offence: Some(offence.clone()),
                urgency: Urgency::Urgent,
                deadline: Some(Date::new(2026, 12, 31).expect("valid date")),
                language: Language::new("es-419").expect("valid language"),
                case_refs: case_refs.clone(),
                subject: "Bank records of Example Holdings Ltd".into(),
                body: "Please provide the account statements\nfor 2024-2025.".into(),
                thread: Thread::default(),
            }),
        ),
        (
            "request-other",
            Body::Request(Request {
                request_type: RequestType::Other("Asset tracing".into()),
                legal_basis: LegalBasis::Treaty("Bilateral MLA treaty 1999".into()),
                offence: Some(offence.clone()),
                urgency: Urgency::Normal,
                deadline: None,
                language: Language::default(),
                case_refs: CaseReferences::default(),
                subject: "Tracing".into(),
                body: "x".into(),
                thread: thread.clone(),
            }),
        ),
        (
            "info",
            Body::SpontaneousInformation(SpontaneousInformation {
                subject: "Suspicious transfers".into(),
                body: "Transfers of EUR 2m on 2026-03-01.".into(),
                offence: Some(offence),
                language: Language::new("fr").expect("valid language"),
                case_refs: case_refs.clone(),
                restrictions: Restrictions {
                    confidential: true,
                    use_restrictions: vec!["Intelligence only".into(), "No onward transfer".into()],
                },
                thread: Thread::default(),
            }),
        ),
        (
            "status",
            Body::StatusUpdate(StatusUpdate {
                regarding: MessageId([1; 16]),
                status: BusinessStatus::Postponed {
                    reason: "Ongoing investigation".into(),
                    until: Some(Date::new(2027, 2, 28).expect("valid date")),
                },
                note: Some("We will revert.".into()),
            }),
        ),
        (
            "reply",
            Body::Reply(Reply {
                in_reply_to: MessageId([1; 16]),
                subject: "Re: Bank records".into(),
                body: "Statements attached.".into(),
                partial: true,
                thread: thread.clone(),
            }),
        ),
        (
            "consultation",
            Body::Consultation(Consultation {
                regarding: Some(MessageId([1; 16])),
                subject: "Before refusing".into(),
                body: "Could the request be narrowed?".into(),
                thread,
            }),
        ),
    ]
}

/// Valid inputs for each target, as `(target, file name, bytes)`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let w = world();
    let mut out = Vec::new();
    let no_history: HashMap<(NodeId, MessageId), Digest> = HashMap::new();
    for (i, (name, body)) in sample_bodies().into_iter().enumerate() {
        let n = u8::try_from(i).expect("few samples");
        let (sender, from) = if i % 2 == 0 {
            (&w.arcadia, "arcadia")
        } else {
            (&w.carpania, "carpania")
        };
        let mut rng = ChaCha20Rng::from_seed([n; 32]);
        let sealed = seal(
            sender,
            w.borduria.public(),
            MessageId([n; 16]),
            NOW,
            &body,
            &mut rng,
        )
        .expect("sample bodies seal");
        let checked = check(&sealed.bytes, &w.borduria, &w.pins, &no_history, &policy())
            .expect("sample envelopes pass the check");
        let opened = checked.open(&w.borduria).expect("sample envelopes open");
        let receipt = Receipt::sign(&w.borduria, &opened, NOW);
        out.push((
            "envelope_decode",
            format!("{name}-from-{from}"),
            sealed.bytes,
        ));
        out.push((
            "receipt_decode",
            format!("{name}-from-{from}"),
            receipt.to_bytes().expect("receipts encode"),
        ));
        out.push((
            "origin_proof_decode",
            format!("{name}-from-{from}"),
            opened.proof.to_bytes().expect("proofs encode"),
        ));
        out.push((
            "body_decode",
            name.to_owned(),
            codec::encode(&body).expect("bodies encode"),
        ));
    }
    for (name, identity) in [
        ("arcadia", &w.arcadia),
        ("borduria", &w.borduria),
        ("carpania", &w.carpania),
    ] {
        out.push((
            "key_file_parse",
            name.to_owned(),
            identity.to_key_file().as_bytes().to_vec(),
        ));
        out.push((
            "key_file_parse",
            format!("{name}-node-id"),
            identity.id().to_string().into_bytes(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed runs through its target without a failed assertion, and
    /// the envelope seeds reach all the way to `open`.
    #[test]
    fn seeds_pass_their_targets() {
        for (target, name, bytes) in seeds() {
            match target {
                "envelope_decode" => {
                    envelope_decode(&bytes);
                    let w = world();
                    let seen: HashMap<(NodeId, MessageId), Digest> = HashMap::new();
                    let opened = check(&bytes, &w.borduria, &w.pins, &seen, &policy())
                        .and_then(|c| c.open(&w.borduria));
                    assert!(opened.is_ok(), "{name}: {opened:?}");
                }
                "receipt_decode" => receipt_decode(&bytes),
                "origin_proof_decode" => origin_proof_decode(&bytes),
                "key_file_parse" => key_file_parse(&bytes),
                "body_decode" => body_decode(&bytes),
                other => panic!("unknown target {other}"),
            }
        }
    }

    /// The committed seed directory is what `seeds()` writes.
    #[test]
    fn committed_seeds_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        for (target, name, bytes) in seeds() {
            let path = dir.join(target).join(&name);
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "{} is missing or stale: run `cargo run --example write_seeds`",
                path.display()
            );
        }
    }
}
