//! Deterministic sample data: the 1 KiB request and the large, validly
//! signed audit bundle that the benchmarks measure (`protocol/benches`,
//! `bench/`), also usable to test another implementation of the verifier.
//! Only with the `sample` feature: it is not part of the protocol.

use crate::audit::bundle::BundleWriter;
use crate::audit::checkpoint::{cosign, origin_for, sign_checkpoint, Checkpoint};
use crate::audit::entry::{Actor, AuditEntry, AuditKind};
use crate::audit::merkle::{leaf_hash, Frontier};
use crate::audit::note::Note;
use crate::message::{
    Body, CaseReferences, IccsCode, Language, LegalBasis, Offence, Request, RequestType, Thread,
    Urgency,
};
use crate::{Digest, Identity, MessageId, Timestamp};

/// A mutual legal assistance request whose body text is 1 KiB.
pub fn request_1kib() -> Result<Body, SampleError> {
    Ok(Body::Request(Request {
        request_type: RequestType::MutualLegalAssistance,
        legal_basis: LegalBasis::UncacArt46,
        offence: Some(Offence {
            description: "Bribery of a national public official".into(),
            iccs: IccsCode::new("07031").map_err(err)?,
        }),
        urgency: Urgency::Urgent,
        deadline: None,
        language: Language::default(),
        case_refs: CaseReferences::default(),
        subject: "Bank records".into(),
        body: "x".repeat(1024),
        thread: Thread::default(),
    }))
}

/// Why sample data could not be built (for a bundle, only with absurd
/// arguments, such as more entries than a tree holds).
#[derive(Debug, thiserror::Error)]
#[error("building the sample bundle: {0}")]
pub struct SampleError(String);

fn err(e: impl std::fmt::Display) -> SampleError {
    SampleError(e.to_string())
}

/// The two identities of [`sample_bundle`]: the node and its witness.
pub fn sample_identities() -> (Identity, Identity) {
    (
        Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0)),
        Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0)),
    )
}

/// A bundle of `entries` entries shaped like a real log (most name a peer,
/// a message and an envelope digest), with a checkpoint every
/// `checkpoint_every` entries and at the end, each cosigned by the witness
/// of [`sample_identities`].
pub fn sample_bundle(entries: u64, checkpoint_every: u64) -> Result<Vec<u8>, SampleError> {
    let (node, peer) = sample_identities();
    let origin = origin_for(&node.id());
    let capacity = usize::try_from(entries).unwrap_or(0).saturating_mul(450);
    let mut w = BundleWriter::new(Vec::with_capacity(capacity), &node.id()).map_err(err)?;
    let mut frontier = Frontier::new();
    let mut checkpoints = Vec::new();
    for seq in 0..entries {
        let e = AuditEntry {
            seq,
            time: Timestamp(1_700_000_000_000 + seq * 37),
            kind: AuditKind::ALL[(seq % 7) as usize],
            actor: if seq % 5 == 0 {
                Actor::Operator
            } else {
                Actor::Node
            },
            peer: (seq % 10 != 0).then_some(peer.id()),
            message_id: Some(MessageId(u128::from(seq).to_le_bytes())),
            envelope_digest: (seq % 3 != 0).then(|| Digest::of(b"e", &[&seq.to_le_bytes()])),
            detail: if seq % 4 == 0 {
                "registered".into()
            } else {
                String::new()
            },
        };
        let leaf = e.to_leaf().map_err(err)?;
        frontier.push(leaf_hash(&leaf)).map_err(err)?;
        w.write_entry(&leaf).map_err(err)?;
        if (seq + 1) % checkpoint_every.max(1) == 0 || seq + 1 == entries {
            let cp = Checkpoint {
                origin: origin.clone(),
                size: seq + 1,
                root: frontier.root(),
            };
            checkpoints.push(sign_checkpoint(&node, &cp).map_err(err)?);
        }
    }
    for text in &checkpoints {
        let body = Note::parse(text).map_err(err)?.text().to_string();
        let line = cosign(&peer, &origin_for(&peer.id()), &body, 1_700_000_000).map_err(err)?;
        w.write_checkpoint(&format!("{text}{line}\n"))
            .map_err(err)?;
    }
    w.finish().map_err(err)
}
