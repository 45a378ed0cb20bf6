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

use comity_protocol::attachment::{
    check_attachments, check_manifests, AttachmentLimits, AttachmentManifest, CheckedAttachment,
    ChunkTable, SealedChunk, Sealer,
};
use comity_protocol::audit::bundle::{verify_bundle, BundleWriter, Finding, VerifyOptions};
use comity_protocol::audit::checkpoint::{
    check_witness_update, cosign, cosigners, open_checkpoint, origin_for, sign_checkpoint,
    verify_cosignature, Checkpoint, CheckpointError, WitnessError,
};
use comity_protocol::audit::entry::{Actor, AuditEntry, AuditKind};
use comity_protocol::audit::merkle::{leaf_hash, MemoryTree};
use comity_protocol::audit::note::{Note, NoteError, NoteSignature, MAX_SIGNATURES};
use comity_protocol::audit::proof_file::{
    verify_inclusion_file, InclusionProofFile, ProofFileError,
};
use comity_protocol::codec::{self, MAX_FRAME_BYTES};
use comity_protocol::envelope::{check, seal, CheckPolicy, Envelope, OriginProof};
use comity_protocol::message::{
    Body, BusinessStatus, CaseReferences, Consultation, Date, IccsCode, Language, LegalBasis,
    MessageKind, Offence, Reply, Request, RequestType, Restrictions, SpontaneousInformation, StatusUpdate,
    Thread, Urgency,
};
use comity_protocol::receipt::Receipt;
use comity_protocol::session::{
    peek_envelope_id, RejectReason, SessionFrame, WitnessRefusal, LENGTH_PREFIX,
    MAX_CHECKPOINT_NOTE, MAX_PROOF_HASHES, MAX_SESSION_FRAME,
};
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
// Session frames, witnessing, audit files.
//
// These return how far an input got (a short label), so that
// `cargo run --release --example outcomes -- TARGET DIR…` can count, over a
// corpus, how many inputs reached the signature, proof and consistency
// checks. The fuzz targets ignore the label.

/// Entries in Arcadia's audit log, the log of the witnessing and audit
/// seeds (witnessed by Borduria and Carpania).
pub const LOG_SIZE: u64 = 8;

/// The message that entries 1, 4 and 6 of the log name.
pub const PROVEN_MESSAGE: MessageId = MessageId([7; 16]);

/// Arcadia's log: its leaves, its tree and a signed checkpoint (no
/// cosignatures) at every size `0..=LOG_SIZE`.
pub struct AuditLog {
    pub leaves: Vec<Vec<u8>>,
    pub tree: MemoryTree,
    pub checkpoints: Vec<String>,
}

static AUDIT_LOG: LazyLock<AuditLog> = LazyLock::new(|| {
    let w = world();
    let origin = origin_for(&w.arcadia.id());
    let mut tree = MemoryTree::new();
    let mut leaves = Vec::new();
    let mut checkpoints = vec![sign_checkpoint(
        &w.arcadia,
        &Checkpoint {
            origin: origin.clone(),
            size: 0,
            root: tree.root(),
        },
    )
    .expect("the empty checkpoint signs")];
    for seq in 0..LOG_SIZE {
        let n = u8::try_from(seq).expect("small log");
        let entry = AuditEntry {
            seq,
            time: Timestamp(NOW.0 - 60_000 * (LOG_SIZE - seq)),
            kind: AuditKind::ALL[usize::from(n) % AuditKind::ALL.len()],
            actor: if seq % 3 == 0 {
                Actor::Operator
            } else {
                Actor::Node
            },
            peer: Some(if seq % 2 == 0 {
                w.borduria.id()
            } else {
                w.carpania.id()
            }),
            message_id: Some(if matches!(seq, 1 | 4 | 6) {
                PROVEN_MESSAGE
            } else {
                MessageId([n; 16])
            }),
            envelope_digest: (seq % 3 != 2).then(|| Digest::of(b"e", &[&seq.to_le_bytes()])),
            detail: if seq % 4 == 0 {
                "registered".into()
            } else {
                String::new()
            },
        };
        let leaf = entry.to_leaf().expect("sample entries encode");
        tree.push(leaf_hash(&leaf));
        leaves.push(leaf);
        let cp = Checkpoint {
            origin: origin.clone(),
            size: seq + 1,
            root: tree.root(),
        };
        checkpoints.push(sign_checkpoint(&w.arcadia, &cp).expect("checkpoints sign"));
    }
    AuditLog {
        leaves,
        tree,
        checkpoints,
    }
});

pub fn audit_log() -> &'static AuditLog {
    &AUDIT_LOG
}

/// The time witnesses put in their cosignatures (seconds).
pub const COSIGN_SECS: u64 = NOW.0 / 1000;

/// `witness`'s cosignature line on Arcadia's checkpoint at `size`.
pub fn cosignature_on(witness: &Identity, size: u64) -> String {
    let text = &audit_log().checkpoints[usize::try_from(size).expect("small log")];
    let body = Note::parse(text).expect("own checkpoints parse");
    cosign(
        witness,
        &origin_for(&witness.id()),
        body.text(),
        COSIGN_SECS,
    )
    .expect("cosigning a checkpoint works")
}

/// What Borduria, witnessing `peer`, does with a `Checkpoint` frame (the
/// sequence of `AuditLog::witness` in node/src/audit/witness.rs), given
/// the checkpoint it last cosigned (`previous`). On success it cosigns, and
/// the cosignature must verify.
pub fn witness_checkpoint(
    peer: &Identity,
    previous: Option<&Checkpoint>,
    note_text: &str,
    old_size: u64,
    proof: &[Digest],
) -> &'static str {
    let w = world();
    let origin = origin_for(&peer.id());
    let witnessed = previous.map_or(0, |c| c.size);
    let (new, note) = match open_checkpoint(note_text, &origin, &peer.id()) {
        Ok(x) => x,
        Err(CheckpointError::Note(NoteError::BadSignature { .. })) => return "bad-signature",
        Err(CheckpointError::Note(NoteError::NoSignatureByKey { .. })) => return "no-signature",
        Err(CheckpointError::WrongOrigin { .. }) => return "wrong-origin",
        Err(_) => return "unparsed",
    };
    if note.text() != new.body() {
        return "unknown-form";
    }
    if let Some(prev) = previous {
        if new.size < prev.size {
            return "shrank";
        }
    }
    if old_size != witnessed {
        return "old-size-mismatch";
    }
    let outcome = match check_witness_update(previous, &new, proof) {
        Ok(()) if previous.is_none() => "first-cosigned",
        Ok(()) => "consistent-cosigned",
        Err(WitnessError::Fork { .. }) => return "fork",
        Err(WitnessError::Inconsistent { .. }) => return "inconsistent",
        Err(WitnessError::Shrank { .. }) => return "shrank",
        Err(WitnessError::WrongOrigin { .. }) => return "wrong-origin",
    };
    if let Some(prev) = previous {
        assert!(new.size >= prev.size);
        if new.size == prev.size {
            assert_eq!(new.root, prev.root, "cosigned a fork");
        }
    }
    let me = origin_for(&w.borduria.id());
    let line = cosign(&w.borduria, &me, note.text(), COSIGN_SECS)
        .expect("a witness cosigns what it checked");
    assert_eq!(
        verify_cosignature(&line, &me, &w.borduria.id(), note.text()),
        Ok(COSIGN_SECS),
        "own cosignature does not verify"
    );
    let mut cosigned = note.clone();
    cosigned
        .push_signature(NoteSignature::parse_line(&line).expect("own line parses"))
        .ok();
    let (found, _) = cosigners(&cosigned, &origin, &peer.id());
    assert!(
        found
            .iter()
            .any(|(id, r)| *id == w.borduria.id() && *r == Ok(COSIGN_SECS))
            || note.signatures().len() >= MAX_SIGNATURES
            || note.signatures().iter().any(|s| s.name == me),
        "the cosigned note does not show the witness"
    );
    outcome
}

/// Reads `N` bytes off the front of `data`.
fn take<'a, const N: usize>(data: &mut &'a [u8]) -> Option<&'a [u8; N]> {
    let (head, rest) = data.split_first_chunk::<N>()?;
    *data = rest;
    Some(head)
}

/// A pinned peer's checkpoint note reaching its witness (Borduria).
///
/// Input: `flags (1) ‖ old_size (8, LE) ‖ previous root (32) ‖ n (1) ‖ n
/// proof hashes (32 each) ‖ note`. Flags: bit 0, the peer signs what it
/// likes: `note` is `size (8, LE) ‖ root (32) ‖ more signature lines`, and
/// the target signs the checkpoint as the peer (a pinned peer can sign
/// anything, so this is what it can send); bit 1, Borduria already
/// cosigned the checkpoint `(old_size, previous root)`; bit 2, the peer is
/// Carpania instead of Arcadia.
pub fn checkpoint_note(data: &[u8]) -> &'static str {
    let w = world();
    let mut d = data;
    let (Some(&[flags]), Some(old), Some(prev_root), Some(&[n])) = (
        take::<1>(&mut d),
        take::<8>(&mut d),
        take::<32>(&mut d),
        take::<1>(&mut d),
    ) else {
        return "short";
    };
    let old_size = u64::from_le_bytes(*old);
    let n = usize::from(n) % (MAX_PROOF_HASHES + 1);
    if d.len() < n * 32 {
        return "short";
    }
    let (hashes, rest) = d.split_at(n * 32);
    let proof: Vec<Digest> = hashes
        .chunks_exact(32)
        .map(|c| Digest(c.try_into().expect("32-byte chunks")))
        .collect();
    let peer = if flags & 4 == 0 {
        &w.arcadia
    } else {
        &w.carpania
    };
    let origin = origin_for(&peer.id());
    let text = if flags & 1 != 0 {
        let mut r = rest;
        let (Some(size), Some(root)) = (take::<8>(&mut r), take::<32>(&mut r)) else {
            return "short";
        };
        let cp = Checkpoint {
            origin: origin.clone(),
            size: u64::from_le_bytes(*size),
            root: Digest(*root),
        };
        let Ok(more) = std::str::from_utf8(r) else {
            return "not-utf8";
        };
        sign_checkpoint(peer, &cp).expect("the peer signs a checkpoint") + more
    } else {
        match std::str::from_utf8(rest) {
            Ok(t) => t.to_owned(),
            Err(_) => return "not-utf8",
        }
    };
    if text.len() > MAX_CHECKPOINT_NOTE {
        return "too-long";
    }
    // Whatever parses as a note: its display parses back to it, and each
    // signature line is checked as a cosignature by both other fixtures.
    if let Ok(note) = Note::parse(&text) {
        assert_eq!(
            Note::parse(&note.to_string()).as_ref(),
            Ok(&note),
            "a note does not survive display and parse"
        );
        for sig in note.signatures() {
            let line = sig.to_line();
            for witness in [&w.borduria, &w.carpania, &w.arcadia] {
                let name = origin_for(&witness.id());
                let _ = verify_cosignature(&line, &name, &witness.id(), note.text());
            }
        }
        let _ = cosigners(&note, &origin, &peer.id());
    }
    let previous = (flags & 2 != 0).then(|| Checkpoint {
        origin: origin.clone(),
        size: old_size,
        root: Digest(*prev_root),
    });
    witness_checkpoint(peer, previous.as_ref(), &text, old_size, &proof)
}

/// A frame a pinned peer (Arcadia) sends Borduria: `length (4, BE) ‖
/// frame`, as read off the stream.
pub fn session_frame_decode(data: &[u8]) -> &'static str {
    let w = world();
    let Some((prefix, frame)) = data.split_first_chunk::<LENGTH_PREFIX>() else {
        return "short";
    };
    let length = SessionFrame::length(*prefix, MAX_SESSION_FRAME);
    let peeked = peek_envelope_id(frame);
    let Ok(decoded) = SessionFrame::from_bytes(frame) else {
        return "undecodable";
    };
    let wire = decoded.to_wire().expect("a decoded frame encodes");
    assert_eq!(&wire[LENGTH_PREFIX..], frame, "non-canonical session frame");
    let own_prefix: [u8; LENGTH_PREFIX] = wire[..LENGTH_PREFIX].try_into().expect("4 bytes");
    assert_eq!(
        SessionFrame::length(own_prefix, MAX_SESSION_FRAME),
        Ok(frame.len())
    );
    if length != Ok(frame.len()) {
        return "bad-length-prefix";
    }
    match &decoded {
        SessionFrame::Hello { cert } => {
            let pinned = PeerKeys::new(w.arcadia.id(), cert.clone());
            if pinned.is_ok() {
                "hello-verified"
            } else {
                "hello-refused"
            }
        }
        SessionFrame::Envelope(bytes) => {
            if let Ok(env) = Envelope::from_bytes(bytes) {
                assert_eq!(peeked, Some(env.header.id), "peeked the wrong id");
            }
            envelope_decode(bytes);
            "envelope"
        }
        SessionFrame::Receipt(bytes) => {
            receipt_decode(bytes);
            "receipt"
        }
        SessionFrame::Rejected { reason, .. } => {
            let _ = (reason.name(), reason.is_permanent());
            "rejected"
        }
        SessionFrame::Checkpoint {
            note,
            old_size,
            proof,
        } => {
            if note.len() > MAX_CHECKPOINT_NOTE || proof.len() > MAX_PROOF_HASHES {
                return "checkpoint-too-large";
            }
            let log = audit_log();
            let previous = usize::try_from(*old_size)
                .ok()
                .and_then(|i| log.checkpoints.get(i))
                .filter(|_| *old_size > 0)
                .map(|t| {
                    open_checkpoint(t, &origin_for(&w.arcadia.id()), &w.arcadia.id())
                        .expect("own checkpoints open")
                        .0
                });
            witness_checkpoint(&w.arcadia, previous.as_ref(), note, *old_size, proof)
        }
        SessionFrame::Cosigned { size, line } => {
            // Arcadia cosigned one of Borduria's checkpoints; here, of the
            // fixture log's, at `size`.
            let Some(text) = usize::try_from(*size)
                .ok()
                .and_then(|i| audit_log().checkpoints.get(i))
            else {
                return "cosigned-unknown-size";
            };
            let body = Note::parse(text).expect("own checkpoints parse");
            let name = origin_for(&w.arcadia.id());
            match verify_cosignature(line, &name, &w.arcadia.id(), body.text()) {
                Ok(_) => "cosignature-verified",
                Err(_) => "cosignature-refused",
            }
        }
        SessionFrame::CheckpointRefused { reason, .. } => {
            let _ = (reason.name(), reason.is_alarm());
            "checkpoint-refused"
        }
        SessionFrame::ResentEnvelope {
            envelope,
            original,
            signature,
        } => {
            let Ok(env) = Envelope::from_bytes(envelope) else {
                envelope_decode(envelope);
                return "resent-envelope";
            };
            assert_eq!(peeked, Some(env.header.id), "peeked the wrong id");
            envelope_decode(envelope);
            // The notice as Borduria checks it, for Arcadia's envelope.
            let statement = comity_protocol::resend::ResendStatement {
                sender: env.header.sender,
                recipient: env.header.recipient,
                message_id: env.header.id,
                envelope_digest: comity_protocol::envelope::envelope_digest(envelope),
                original: *original,
            };
            match statement.verify(w.arcadia.public(), signature) {
                Ok(()) => "resend-notice-verified",
                Err(_) => "resend-notice-refused",
            }
        }
    }
}

/// An auditor is handed a bundle: verified without pins (1 and 2
/// threads, same report) and pinned to Arcadia, requiring Carpania and
/// Borduria as witnesses.
pub fn bundle_verify(data: &[u8]) -> &'static str {
    let w = world();
    let run = |options: VerifyOptions| {
        verify_bundle(data, &options).expect("reading a byte slice cannot fail")
    };
    let one = run(VerifyOptions {
        threads: 1,
        ..VerifyOptions::default()
    });
    // The parallel driver must find exactly what one thread finds. Its
    // threads cost more than the verification of a small input, so a
    // quarter of the inputs (chosen by length) are also run with two.
    if data.len() % 4 == 0 {
        let two = run(VerifyOptions {
            threads: 2,
            ..VerifyOptions::default()
        });
        assert_eq!(one, two, "1 and 2 threads disagree");
    }
    let pinned = run(VerifyOptions {
        expected_node: Some(w.arcadia.id()),
        required_witnesses: vec![w.carpania.id(), w.borduria.id()],
        allow_unwitnessed_tail: 0,
        threads: 1,
    });
    assert_eq!(pinned.entries, one.entries);
    // The pin replaces the header's key: checkpoints are checked against
    // Arcadia's, so the counts agree only when the header names Arcadia.
    if one.node_id == Some(w.arcadia.id()) {
        assert_eq!(pinned.checkpoints, one.checkpoints);
    }
    assert!(pinned.node_pinned && !one.node_pinned);
    if pinned.is_valid() {
        assert!(one.is_valid(), "valid when pinned, invalid when not");
        assert_eq!(one.node_id, Some(w.arcadia.id()));
    }
    if one.is_valid() {
        let newest = one
            .newest_checkpoint
            .as_ref()
            .expect("a valid bundle has a checkpoint");
        assert_eq!(newest.size, one.entries);
    }
    let has = |f: fn(&Finding) -> bool| one.findings.iter().any(f);
    if pinned.is_valid() {
        "valid-pinned"
    } else if one.is_valid() {
        "valid-unpinned"
    } else if has(|f| {
        matches!(
            f,
            Finding::CheckpointsInconsistent { .. } | Finding::CheckpointRootMismatch { .. }
        )
    }) {
        "root-or-consistency-refused"
    } else if has(|f| matches!(f, Finding::CosignatureInvalid { .. })) {
        "cosignature-refused"
    } else if one.checkpoints > 0 {
        "signed-checkpoint-other-finding"
    } else if has(|f| matches!(f, Finding::CheckpointSignatureInvalid { .. })) {
        "checkpoint-signature-refused"
    } else if one.entries > 0 {
        "entries-no-signed-checkpoint"
    } else if one.node_id.is_some() {
        "header-only"
    } else {
        "no-header"
    }
}

/// An auditor (or a court) is handed an inclusion proof file.
pub fn proof_file_verify(data: &[u8]) -> &'static str {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not-utf8";
    };
    match verify_inclusion_file(text) {
        Ok(report) => {
            assert!(!report.entries.is_empty());
            for e in &report.entries {
                assert_eq!(e.message_id, Some(report.message_id));
                assert!(e.seq < report.checkpoint_size);
            }
            let file: InclusionProofFile =
                serde_json::from_str(text).expect("a verified proof file parses");
            assert_eq!(
                verify_inclusion_file(&file.to_json()).as_ref(),
                Ok(&report),
                "a verified proof file re-serialised does not verify the same"
            );
            if report.cosigners.is_empty() {
                "verified"
            } else {
                "verified-cosigned"
            }
        }
        Err(e) => match e {
            ProofFileError::TooLarge { .. }
            | ProofFileError::Json(_)
            | ProofFileError::UnsupportedFormat { .. }
            | ProofFileError::WrongOrigin { .. } => "unparsed",
            ProofFileError::Checkpoint(CheckpointError::Note(
                NoteError::BadSignature { .. } | NoteError::NoSignatureByKey { .. },
            )) => "checkpoint-signature-refused",
            ProofFileError::Checkpoint(_) => "checkpoint-malformed",
            ProofFileError::CosignatureInvalid { .. } => "cosignature-refused",
            ProofFileError::Inclusion { .. } => "inclusion-refused",
            _ => "entry-refused",
        },
    }
}

/// Runs one of the labelled targets by name.
pub fn run_labelled(target: &str, data: &[u8]) -> Option<&'static str> {
    Some(match target {
        "session_frame_decode" => session_frame_decode(data),
        "checkpoint_note" => checkpoint_note(data),
        "bundle_verify" => bundle_verify(data),
        "proof_file_verify" => proof_file_verify(data),
        _ => return None,
    })
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
    let mut frames: Vec<(&'static str, SessionFrame)> = Vec::new();
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
        if i == 0 {
            // A resend notice as Arcadia signs it, and one whose signature
            // does not cover the frame's `original`.
            let original = MessageId([0xee; 16]);
            let signature = comity_protocol::resend::ResendStatement {
                sender: sender.id(),
                recipient: w.borduria.id(),
                message_id: MessageId([n; 16]),
                envelope_digest: comity_protocol::envelope::envelope_digest(&sealed.bytes),
                original,
            }
            .sign(sender);
            frames.push((
                "resent-envelope",
                SessionFrame::ResentEnvelope {
                    envelope: sealed.bytes.clone(),
                    original,
                    signature,
                },
            ));
            frames.push((
                "resent-envelope-bad-notice",
                SessionFrame::ResentEnvelope {
                    envelope: sealed.bytes.clone(),
                    original: MessageId([0xef; 16]),
                    signature,
                },
            ));
            frames.push(("envelope", SessionFrame::Envelope(sealed.bytes.clone())));
            frames.push((
                "receipt",
                SessionFrame::Receipt(receipt.to_bytes().expect("receipts encode")),
            ));
        }
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
    out.extend(session_seeds(frames));
    out.extend(witness_seeds());
    out.extend(audit_file_seeds());
    out
}

/// A session frame of every variant, as read off the stream.
fn session_seeds(
    mut frames: Vec<(&'static str, SessionFrame)>,
) -> Vec<(&'static str, String, Vec<u8>)> {
    let w = world();
    let log = audit_log();
    let consistency = log
        .tree
        .consistency_proof(3, LOG_SIZE)
        .expect("the log has the proof");
    frames.extend([
        (
            "hello",
            SessionFrame::Hello {
                cert: w.arcadia.encryption_cert().clone(),
            },
        ),
        (
            "rejected",
            SessionFrame::Rejected {
                id: Some(MessageId([9; 16])),
                reason: RejectReason::IdReused,
                detail: "id reused".into(),
            },
        ),
        (
            "rejected-no-id",
            SessionFrame::Rejected {
                id: None,
                reason: RejectReason::Malformed,
                detail: "malformed".into(),
            },
        ),
        (
            "checkpoint-first",
            SessionFrame::Checkpoint {
                note: log.checkpoints[5].clone(),
                old_size: 0,
                proof: Vec::new(),
            },
        ),
        (
            "checkpoint-consistent",
            SessionFrame::Checkpoint {
                note: log.checkpoints[8].clone(),
                old_size: 3,
                proof: consistency,
            },
        ),
        (
            "cosigned",
            SessionFrame::Cosigned {
                size: LOG_SIZE,
                line: cosignature_on(&w.arcadia, LOG_SIZE),
            },
        ),
        (
            "checkpoint-refused",
            SessionFrame::CheckpointRefused {
                size: 8,
                witnessed_size: 5,
                reason: WitnessRefusal::OldSizeMismatch,
                detail: "last cosigned size is 5, not 3".into(),
            },
        ),
    ]);
    frames
        .into_iter()
        .map(|(name, f)| {
            (
                "session_frame_decode",
                name.to_owned(),
                f.to_wire().expect("frames encode"),
            )
        })
        .collect()
}

/// `checkpoint_note`'s input: see there.
pub fn checkpoint_input(
    flags: u8,
    old_size: u64,
    previous_root: Digest,
    proof: &[Digest],
    note: &[u8],
) -> Vec<u8> {
    let mut v = vec![flags];
    v.extend_from_slice(&old_size.to_le_bytes());
    v.extend_from_slice(&previous_root.0);
    v.push(u8::try_from(proof.len()).expect("short proof"));
    for h in proof {
        v.extend_from_slice(&h.0);
    }
    v.extend_from_slice(note);
    v
}

/// Arcadia's signed checkpoints with a consistent proof from what Borduria
/// cosigned before (and a few refusals), for `checkpoint_note`.
fn witness_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let w = world();
    let log = audit_log();
    let root = |n: u64| log.tree.root_at(n).expect("in the log");
    let proof = |a: u64, b: u64| log.tree.consistency_proof(a, b).expect("in the log");
    let cp = |n: u64| log.checkpoints[usize::try_from(n).expect("small")].clone();
    let cosigned_8 = format!("{}{}\n", cp(8), cosignature_on(&w.carpania, 8));
    let mut signed_by_peer = LOG_SIZE.to_le_bytes().to_vec();
    signed_by_peer.extend_from_slice(&root(LOG_SIZE).0);
    let carpania_cp = sign_checkpoint(
        &w.carpania,
        &Checkpoint {
            origin: origin_for(&w.carpania.id()),
            size: 6,
            root: root(6),
        },
    )
    .expect("signs");
    let none = Digest([0; 32]);
    [
        ("first", checkpoint_input(0, 0, none, &[], cp(5).as_bytes())),
        (
            "consistent-3-8",
            checkpoint_input(2, 3, root(3), &proof(3, 8), cp(8).as_bytes()),
        ),
        (
            "consistent-5-8-cosigned",
            checkpoint_input(2, 5, root(5), &proof(5, 8), cosigned_8.as_bytes()),
        ),
        (
            "consistent-1-7",
            checkpoint_input(2, 1, root(1), &proof(1, 7), cp(7).as_bytes()),
        ),
        (
            "same-size",
            checkpoint_input(2, 6, root(6), &[], cp(6).as_bytes()),
        ),
        (
            "peer-signs-4-8",
            checkpoint_input(3, 4, root(4), &proof(4, 8), &signed_by_peer),
        ),
        (
            "carpania-consistent-2-6",
            checkpoint_input(6, 2, root(2), &proof(2, 6), carpania_cp.as_bytes()),
        ),
    ]
    .into_iter()
    .map(|(name, bytes)| ("checkpoint_note", name.to_owned(), bytes))
    .collect()
}

/// Arcadia's log exported with `BundleWriter` (checkpoints cosigned by
/// Carpania in the note and by Borduria on separate lines), and inclusion
/// proof files built from it.
fn audit_file_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let w = world();
    let log = audit_log();
    let mut out = Vec::new();
    let bundle = |entries: u64, checkpoints: &[u64]| {
        let mut b = BundleWriter::new(Vec::new(), &w.arcadia.id()).expect("header writes");
        for leaf in &log.leaves[..usize::try_from(entries).expect("small")] {
            b.write_entry(leaf).expect("entries write");
        }
        for &n in checkpoints {
            let text = &log.checkpoints[usize::try_from(n).expect("small")];
            b.write_checkpoint(&format!("{text}{}\n", cosignature_on(&w.carpania, n)))
                .expect("checkpoints write");
            b.write_cosignature(
                n,
                &w.borduria.id(),
                &origin_for(&w.borduria.id()),
                &cosignature_on(&w.borduria, n),
            )
            .expect("cosignatures write");
        }
        b.finish().expect("a Vec takes the bundle")
    };
    out.push((
        "bundle_verify",
        "full".to_owned(),
        bundle(LOG_SIZE, &[3, 6, 8]),
    ));
    out.push(("bundle_verify", "one-entry".to_owned(), bundle(1, &[1])));
    let proof_file = |message: MessageId, size: u64, cosigned: bool| {
        let text = &log.checkpoints[usize::try_from(size).expect("small")];
        let text = if cosigned {
            format!(
                "{text}{}\n{}\n",
                cosignature_on(&w.carpania, size),
                cosignature_on(&w.borduria, size)
            )
        } else {
            text.clone()
        };
        let leaves = log
            .leaves
            .iter()
            .enumerate()
            .take(usize::try_from(size).expect("small"))
            .map(|(i, l)| (u64::try_from(i).expect("small"), l.clone()))
            .filter(|(_, l)| {
                AuditEntry::from_leaf(l)
                    .expect("own leaves decode")
                    .message_id
                    == Some(message)
            });
        InclusionProofFile::build(&log.tree, &w.arcadia.id(), message, &text, leaves)
            .expect("the proof builds")
            .to_json()
            .into_bytes()
    };
    out.push((
        "proof_file_verify",
        "three-entries-cosigned".to_owned(),
        proof_file(PROVEN_MESSAGE, LOG_SIZE, true),
    ));
    out.push((
        "proof_file_verify",
        "one-entry".to_owned(),
        proof_file(MessageId([0; 16]), 3, false),
    ));
    out.push((
        "proof_file_verify",
        "two-entries-size-5".to_owned(),
        proof_file(PROVEN_MESSAGE, 5, true),
    ));
    let a = &*ATTACHMENT;
    let manifest = a.checked.manifest().clone();
    let mut second = manifest.clone();
    second.name = "annex.pdf".into();
    second.media_type = "application/pdf".into();
    out.push((
        "attachment_manifest_decode",
        "two".to_owned(),
        codec::encode(&vec![manifest, second]).expect("manifests encode"),
    ));
    let with_flags = |flags: u8, bytes: &[u8]| [&[flags][..], bytes].concat();
    out.push((
        "attachment_chunk_open",
        "chunk-0".to_owned(),
        with_flags(0, &a.chunks[0].ciphertext),
    ));
    out.push((
        "attachment_chunk_open",
        "chunk-1-after-0".to_owned(),
        with_flags(1 | 1 << 1, &a.chunks[1].ciphertext),
    ));
    out.push((
        "attachment_chunk_open",
        "table".to_owned(),
        with_flags(8, &a.table),
    ));
    out
}

// ---------------------------------------------------------------------------
// Attachments.

/// A manifest list as it follows the body in a sealed plaintext: decode,
/// re-encode (canonical), check for every kind; a list that passes has a
/// JSON form that parses back.
pub fn attachment_manifest_decode(data: &[u8]) {
    let Ok(list) = codec::decode::<Vec<AttachmentManifest>, MAX_FRAME_BYTES>(data) else {
        return;
    };
    assert_eq!(
        codec::encode(&list).ok().as_deref(),
        Some(data),
        "non-canonical manifest list"
    );
    for kind in MessageKind::ALL {
        if check_manifests(kind, &list, &AttachmentLimits::default()).is_ok() {
            let json = serde_json::to_string(&list).expect("manifests serialise");
            let back: Vec<AttachmentManifest> =
                serde_json::from_str(&json).expect("a checked manifest's JSON parses");
            assert_eq!(back, list);
        }
    }
}

/// The attachment the chunk target opens: 64 KiB + 100 bytes, two chunks.
pub struct FuzzAttachment {
    pub checked: CheckedAttachment,
    pub table: Vec<u8>,
    pub chunks: Vec<SealedChunk>,
    pub plaintext: Vec<u8>,
}

pub static ATTACHMENT: LazyLock<FuzzAttachment> = LazyLock::new(|| {
    let plaintext: Vec<u8> = (0..65_636u32).map(|i| (i % 251) as u8).collect();
    let mut rng = ChaCha20Rng::from_seed([0x61; 32]);
    let limits = AttachmentLimits::default();
    let mut sealer = Sealer::new(
        "evidence.bin",
        "application/octet-stream",
        plaintext.len() as u64,
        &limits,
        &mut rng,
    )
    .expect("a valid attachment");
    let mut chunks = Vec::new();
    let mut at = 0;
    while let Some((_, len)) = sealer.next_chunk() {
        chunks.push(
            sealer
                .seal_chunk(plaintext[at..at + len].to_vec())
                .expect("right length"),
        );
        at += len;
    }
    let sealed = sealer.finish().expect("all chunks sealed");
    let checked = check_attachments(MessageKind::Reply, vec![sealed], &limits)
        .expect("it checks")
        .remove(0);
    let leaves: Vec<Digest> = chunks.iter().map(|c| c.leaf).collect();
    FuzzAttachment {
        checked,
        table: ChunkTable::encode(&leaves),
        chunks,
        plaintext,
    }
});

/// `flags (1) ‖ bytes`. Flag bit 3: `bytes` is a chunk table, checked
/// against the attachment. Otherwise bits 1–2 are a chunk index and `bytes`
/// its ciphertext, offered to an opener that (bit 0) first opened the
/// genuine chunk 0. Whatever is accepted must be the genuine bytes: only
/// they carry valid tags and leaves.
pub fn attachment_chunk_open(data: &[u8]) {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let a = &*ATTACHMENT;
    let table = ChunkTable::verify(&a.checked, &a.table).expect("the genuine table verifies");
    if flags & 8 != 0 {
        if ChunkTable::verify(&a.checked, bytes).is_ok() {
            assert_eq!(bytes, a.table.as_slice(), "a forged chunk table verified");
        }
        return;
    }
    let mut opener = comity_protocol::attachment::Opener::new(&a.checked, table)
        .expect("the table is this attachment's");
    if flags & 1 != 0 {
        opener
            .open_chunk(0, a.chunks[0].ciphertext.clone())
            .expect("the genuine chunk 0 opens");
    }
    let index = u64::from((flags >> 1) & 3);
    let before = opener.next_chunk();
    match opener.open_chunk(index, bytes.to_vec()) {
        Ok(opened) => {
            let i = usize::try_from(index).expect("small");
            assert_eq!(bytes, a.chunks[i].ciphertext.as_slice(), "a forged chunk opened");
            let start = i * 65_536;
            assert_eq!(
                opened.plaintext.as_slice(),
                &a.plaintext[start..start + opened.plaintext.len()]
            );
            assert_eq!(opened.complete, i == 1);
        }
        Err(_) => assert_eq!(opener.next_chunk(), before, "a refused chunk changed the state"),
    }
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
                "attachment_manifest_decode" => attachment_manifest_decode(&bytes),
                "attachment_chunk_open" => attachment_chunk_open(&bytes),
                "session_frame_decode"
                | "checkpoint_note"
                | "bundle_verify"
                | "proof_file_verify" => {
                    let reached = run_labelled(target, &bytes).expect("a target");
                    let expected = match (target, name.as_str()) {
                        ("session_frame_decode", "hello") => "hello-verified",
                        ("session_frame_decode", "envelope") => "envelope",
                        ("session_frame_decode", "receipt") => "receipt",
                        ("session_frame_decode", "checkpoint-first") => "first-cosigned",
                        ("session_frame_decode", "checkpoint-consistent") => "consistent-cosigned",
                        ("session_frame_decode", "cosigned") => "cosignature-verified",
                        ("session_frame_decode", "resent-envelope") => "resend-notice-verified",
                        ("session_frame_decode", "resent-envelope-bad-notice") => {
                            "resend-notice-refused"
                        }
                        ("session_frame_decode", n) => n.trim_end_matches("-no-id"),
                        ("checkpoint_note", "first") => "first-cosigned",
                        ("checkpoint_note", _) => "consistent-cosigned",
                        ("bundle_verify", _) => "valid-pinned",
                        ("proof_file_verify", "one-entry") => "verified",
                        ("proof_file_verify", _) => "verified-cosigned",
                        _ => unreachable!(),
                    };
                    assert_eq!(reached, expected, "{target}/{name}");
                }
                other => panic!("unknown target {other}"),
            }
        }
    }

    /// Inputs that once failed a target (`regressions/<target>/`) pass it.
    /// `bundle_verify/crash-d826…`: a bundle whose header is unreadable;
    /// pinned, its checkpoints are checked against Arcadia's key and two
    /// verify, unpinned none do (the target wrongly asserted equal counts).
    #[test]
    fn regressions_pass_their_targets() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
        let mut n = 0;
        for target in std::fs::read_dir(&dir).expect("regressions/ exists") {
            let target = target.expect("readable");
            let name = target.file_name().into_string().expect("utf-8 name");
            for input in std::fs::read_dir(target.path()).expect("readable") {
                let bytes = std::fs::read(input.expect("readable").path()).expect("readable");
                run_labelled(&name, &bytes).expect("a labelled target");
                n += 1;
            }
        }
        assert!(n > 0);
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
