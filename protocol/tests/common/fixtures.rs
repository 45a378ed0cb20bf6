//! Three fictional central authorities with fixed keys, and sample messages.

use std::collections::HashMap;
use std::time::Duration;

use comity_protocol::envelope::CheckPolicy;
use comity_protocol::message::{
    Body, CaseReferences, IccsCode, Language, LegalBasis, Offence, Request, RequestType, Thread,
    Urgency,
};
use comity_protocol::{Digest, Identity, MessageId, NodeId, PeerKeys, Timestamp};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// 2026-11-22T12:00:00Z
pub const NOW: Timestamp = Timestamp(1_795_348_800_000);

pub fn arcadia() -> Identity {
    Identity::from_seeds(&[0xa1; 32], &[0xa2; 32], Timestamp(1_790_000_000_000))
}

pub fn borduria() -> Identity {
    Identity::from_seeds(&[0xb1; 32], &[0xb2; 32], Timestamp(1_790_000_000_000))
}

pub fn carpania() -> Identity {
    Identity::from_seeds(&[0xc1; 32], &[0xc2; 32], Timestamp(1_790_000_000_000))
}

/// Each node's pins: everyone pins everyone else.
pub fn pins(of: &[&Identity]) -> HashMap<NodeId, PeerKeys> {
    of.iter().map(|i| (i.id(), i.public().clone())).collect()
}

pub fn no_history() -> HashMap<(NodeId, MessageId), Digest> {
    HashMap::new()
}

pub fn policy() -> CheckPolicy {
    CheckPolicy {
        now: NOW,
        max_future_skew: Duration::from_secs(300),
        max_age: Duration::from_secs(14 * 24 * 3600),
        max_envelope_bytes: 4 * 1024 * 1024,
    }
}

pub fn rng(seed: u8) -> ChaCha20Rng {
    ChaCha20Rng::from_seed([seed; 32])
}

pub fn mla_request(body_len: usize) -> Body {
    Body::Request(Request {
        request_type: RequestType::MutualLegalAssistance,
        legal_basis: LegalBasis::UncacArt46,
        offence: Some(Offence {
            description: "Bribery of a national public official".into(),
            iccs: IccsCode::new("07031").expect("valid ICCS code"),
        }),
        urgency: Urgency::Urgent,
        deadline: None,
        language: Language::default(),
        case_refs: CaseReferences {
            sender: Some("AR-MJ-2026/0147".into()),
            receiver: None,
        },
        subject: "Bank records of Example Holdings Ltd".into(),
        body: "x".repeat(body_len),
        thread: Thread::default(),
    })
}
