//! What two nodes say to each other on a QUIC stream.
//!
//! The dialing node sends envelopes; the accepting node answers each with a
//! receipt or a rejection, on the same bidirectional stream, pipelined: the
//! sender does not wait for one answer before sending the next envelope.
//!
//! On the stream every frame is a 4-byte big-endian length followed by that
//! many bytes of a framed [`SessionFrame`] (`MAGIC ‖ VERSION ‖ 4 ‖ payload`).
//! Each side's first frame is [`SessionFrame::Hello`].

use bincode::{Decode, Encode};

use crate::attachment::InvalidAttachment;
use crate::audit::restoration::RestorationStatement;
use crate::codec::{self, DecodeError, EncodeError, FrameType, MAX_FRAME_BYTES};
use crate::digest::Digest;
use crate::envelope::EnvelopeError;
use crate::identity::EncryptionKeyCert;
use crate::ids::MessageId;

/// Bytes of the length prefix before every frame on a stream.
pub const LENGTH_PREFIX: usize = 4;
/// Bytes a session frame adds around the envelope it carries, at most:
/// 18 for an `Envelope`, 98 for a `ResentEnvelope`, rounded up.
pub const ENVELOPE_FRAMING: usize = 128;
/// Largest session frame: an envelope at the codec's ceiling plus framing.
pub const MAX_SESSION_FRAME: usize = MAX_FRAME_BYTES + ENVELOPE_FRAMING;

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum SessionFrame {
    /// First frame on each side: the sender's current encryption key, which
    /// the peer verifies against the node id it pinned.
    Hello { cert: EncryptionKeyCert },
    /// A framed envelope (see [`crate::envelope`]).
    Envelope(Vec<u8>),
    /// A framed receipt (see [`crate::receipt`]), sent only once the
    /// envelope is durably stored.
    Receipt(Vec<u8>),
    /// An envelope was refused: the one with this id, or (`None`) bytes
    /// whose id could not be read.
    Rejected {
        id: Option<MessageId>,
        reason: RejectReason,
        detail: String,
    },
    /// The dialler's newest signed checkpoint (C2SP signed note) for the
    /// acceptor to witness, with a consistency proof from `old_size`, the
    /// size the acceptor last cosigned (0 if never).
    Checkpoint {
        note: String,
        old_size: u64,
        proof: Vec<Digest>,
    },
    /// The acceptor's `cosignature/v1` line on the checkpoint of `size`.
    Cosigned { size: u64, line: String },
    /// The acceptor did not cosign the checkpoint of `size`. If
    /// `witnessed_size` differs from the `old_size` sent, the dialler may
    /// retry with a proof from `witnessed_size`; any other refusal is an
    /// alarm.
    CheckpointRefused {
        size: u64,
        witnessed_size: u64,
        reason: WitnessRefusal,
        detail: String,
    },
    /// (Session protocol 3.) An envelope, framed as in `Envelope` and
    /// answered as one, that resends the content of the dialler's earlier
    /// message `original`; `signature` is its sender's over the
    /// [`crate::resend::ResendStatement`] of this envelope and `original`.
    ResentEnvelope {
        envelope: Vec<u8>,
        original: MessageId,
        signature: [u8; 64],
    },
    /// (Session protocol 4.) The dialler's log was restored from a backup:
    /// its signed [`crate::audit::restoration::RestorationStatement`], its
    /// continuation checkpoint as signed (C2SP note), and a consistency
    /// proof from the restored size to it. Answered as a `Checkpoint`: the
    /// acceptor's `Cosigned` on the continuation means it accepted the
    /// statement; `CheckpointRefused` that it did not.
    Restoration {
        /// Boxed: 128 bytes would make every frame value that large.
        statement: Box<RestorationStatement>,
        signature: [u8; 64],
        continuation: String,
        proof: Vec<Digest>,
    },
    /// (Session protocol 5.) The acceptor holds the envelope of `id` (it
    /// verified, and its manifests are within the limits) but not yet all
    /// of its attachments: `next[i]` is the chunk of attachment `i` it
    /// needs next, or that attachment's chunk count when it is complete.
    /// Not a receipt: the dialler sends the attachments on streams of their
    /// own (`AttachmentOffer`), then the same envelope again, which is
    /// answered with the receipt once every attachment is complete.
    AttachmentsWanted { id: MessageId, next: Vec<u64> },
    /// (5.) The first frame of an attachment stream, in place of a hello:
    /// the dialler offers attachment `index` of its message `id`.
    AttachmentOffer { id: MessageId, index: u32 },
    /// (5.) The acceptor's answer to an offer: send the chunks from
    /// `from_chunk` on, in order, after the chunk table if `table`.
    AttachmentFrom { from_chunk: u64, table: bool },
    /// (5.) The attachment's chunk table (§11.4: 32 bytes per chunk).
    AttachmentTable(Vec<u8>),
    /// (5.) Ciphertext chunk `index` of the attachment the stream carries.
    AttachmentChunk { index: u64, bytes: Vec<u8> },
    /// (5.) The acceptor holds the whole attachment, verified against the
    /// signed manifest and durable; the stream ends.
    AttachmentComplete { id: MessageId, index: u32 },
    /// (5.) The acceptor refused the offer or a chunk and ends the stream.
    /// `next` is the chunk it needs next (where a new offer resumes).
    AttachmentRefused {
        reason: AttachmentRefusal,
        next: u64,
        detail: String,
    },
}

/// Why an acceptor refused an attachment stream; whether to offer again
/// depends on it (see [`AttachmentRefusal::is_permanent`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum AttachmentRefusal {
    /// No envelope of that message is held awaiting attachments, or it has
    /// no attachment of that index: offer only after `AttachmentsWanted`.
    NotAwaited,
    /// Not enough free space now; offer again later.
    NoRoom,
    /// Another stream carries this attachment now.
    Busy,
    /// A chunk or the table failed its checks (tag, hash, length, order);
    /// nothing of it was kept: offer again from `next`.
    BadChunk,
    /// The acceptor could not store it (a disk error): offer again later.
    Unavailable,
}

impl AttachmentRefusal {
    /// Offering the same attachment again cannot succeed.
    pub fn is_permanent(self) -> bool {
        matches!(self, AttachmentRefusal::NotAwaited)
    }

    pub fn name(self) -> &'static str {
        match self {
            AttachmentRefusal::NotAwaited => "not-awaited",
            AttachmentRefusal::NoRoom => "no-room",
            AttachmentRefusal::Busy => "busy",
            AttachmentRefusal::BadChunk => "bad-chunk",
            AttachmentRefusal::Unavailable => "unavailable",
        }
    }
}

impl std::fmt::Display for AttachmentRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a witness did not cosign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum WitnessRefusal {
    /// The proof starts from a size other than the one last cosigned:
    /// retry from `witnessed_size`. Not an alarm.
    OldSizeMismatch,
    /// The note is malformed, for another origin, or badly signed.
    BadCheckpoint,
    /// Smaller than what was already cosigned: the log was rolled back.
    Shrank,
    /// Same size as what was cosigned, different root: a fork.
    Fork,
    /// The consistency proof does not verify: history was rewritten.
    Inconsistent,
    /// A well-signed checkpoint of a form Comity nodes do not produce (it
    /// carries extension lines after the root, whose meaning no one
    /// specified): a witness cosigns only what it can state the meaning of.
    UnknownForm,
}

impl WitnessRefusal {
    /// Evidence that the log misbehaved (or was restored from a backup).
    pub fn is_alarm(self) -> bool {
        matches!(
            self,
            WitnessRefusal::Shrank | WitnessRefusal::Fork | WitnessRefusal::Inconsistent
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            WitnessRefusal::OldSizeMismatch => "old-size-mismatch",
            WitnessRefusal::BadCheckpoint => "bad-checkpoint",
            WitnessRefusal::Shrank => "shrank",
            WitnessRefusal::Fork => "fork",
            WitnessRefusal::Inconsistent => "inconsistent",
            WitnessRefusal::UnknownForm => "unknown-form",
        }
    }
}

/// Bounds on the witnessing frames: a checkpoint note is a few hundred
/// bytes, a proof at most 64 hashes (2^64 leaves).
pub const MAX_CHECKPOINT_NOTE: usize = 8 * 1024;
pub const MAX_PROOF_HASHES: usize = 64;

/// Why the receiver refused an envelope: what the sender should do next
/// depends on it (see [`RejectReason::is_permanent`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub enum RejectReason {
    TooLarge,
    Malformed,
    WrongRecipient,
    UnknownEncryptionKey,
    /// Not a pinned peer, or not the peer on this connection.
    UnknownSender,
    BadSignature,
    FromFuture,
    Stale,
    IdReused,
    Decrypt,
    Invalid,
    /// The receiver could not store it now (e.g. disk error): try again.
    Unavailable,
}

impl RejectReason {
    /// Retrying the same envelope cannot succeed. `FromFuture` may succeed
    /// once clocks agree and `UnknownEncryptionKey` after re-sealing, so
    /// neither is permanent; `Unavailable` is the receiver's own trouble.
    pub fn is_permanent(self) -> bool {
        !matches!(
            self,
            RejectReason::FromFuture
                | RejectReason::UnknownEncryptionKey
                | RejectReason::Unavailable
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too-large",
            RejectReason::Malformed => "malformed",
            RejectReason::WrongRecipient => "wrong-recipient",
            RejectReason::UnknownEncryptionKey => "unknown-encryption-key",
            RejectReason::UnknownSender => "unknown-sender",
            RejectReason::BadSignature => "bad-signature",
            RejectReason::FromFuture => "from-future",
            RejectReason::Stale => "stale",
            RejectReason::IdReused => "id-reused",
            RejectReason::Decrypt => "decrypt",
            RejectReason::Invalid => "invalid",
            RejectReason::Unavailable => "unavailable",
        }
    }
}

impl serde::Serialize for RejectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl EnvelopeError {
    /// The reason to tell the sender. `None` for a duplicate, which is
    /// answered with the original receipt instead.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        Some(match self {
            EnvelopeError::TooLarge { .. } => RejectReason::TooLarge,
            EnvelopeError::Decode(_) => RejectReason::Malformed,
            EnvelopeError::WrongRecipient { .. } => RejectReason::WrongRecipient,
            EnvelopeError::UnknownEncryptionKey => RejectReason::UnknownEncryptionKey,
            EnvelopeError::UnknownSender { .. } => RejectReason::UnknownSender,
            EnvelopeError::BadSignature { .. } => RejectReason::BadSignature,
            EnvelopeError::FromFuture { .. } => RejectReason::FromFuture,
            EnvelopeError::Stale { .. } => RejectReason::Stale,
            EnvelopeError::AlreadyReceived { .. } => return None,
            EnvelopeError::IdReused { .. } => RejectReason::IdReused,
            EnvelopeError::Decrypt | EnvelopeError::CommitmentMismatch => RejectReason::Decrypt,
            EnvelopeError::BodyDecode(_)
            | EnvelopeError::KindMismatch { .. }
            | EnvelopeError::Invalid(_) => RejectReason::Invalid,
            // Over this node's attachment limits: as permanent as an
            // envelope over its size limit.
            EnvelopeError::Attachment(
                InvalidAttachment::TooLarge { .. }
                | InvalidAttachment::TotalTooLarge { .. }
                | InvalidAttachment::TooMany { .. },
            ) => RejectReason::TooLarge,
            EnvelopeError::Attachment(_) => RejectReason::Invalid,
        })
    }
}

impl SessionFrame {
    /// `length ‖ frame`, ready to write to a stream.
    pub fn to_wire(&self) -> Result<Vec<u8>, EncodeError> {
        // Sized for the payload up front: a chunk of 1 MiB grown by
        // doubling would be copied about twice more on its way out.
        let mut out = Vec::with_capacity(LENGTH_PREFIX + 128 + self.payload_len());
        out.resize(LENGTH_PREFIX, 0);
        out.extend_from_slice(&codec::MAGIC);
        out.push(codec::VERSION);
        out.push(FrameType::Session as u8);
        codec::encode_into(self, &mut out)?;
        let len = u32::try_from(out.len() - LENGTH_PREFIX)
            .map_err(|_| EncodeError::new("session frame longer than 4 GiB"))?;
        out[..LENGTH_PREFIX].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }

    /// Bytes of the variable-length payload a frame carries (an envelope,
    /// a chunk, a chunk table), for sizing its encoding.
    fn payload_len(&self) -> usize {
        match self {
            SessionFrame::Envelope(e) => e.len(),
            SessionFrame::ResentEnvelope { envelope, .. } => envelope.len(),
            SessionFrame::AttachmentTable(t) => t.len(),
            SessionFrame::AttachmentChunk { bytes, .. } => bytes.len(),
            _ => 0,
        }
    }

    /// Decodes the bytes after the length prefix.
    pub fn from_bytes(bytes: &[u8]) -> Result<SessionFrame, DecodeError> {
        codec::decode_frame::<_, MAX_SESSION_FRAME>(FrameType::Session, bytes)
    }

    /// The frame limit for a reader that takes envelopes of up to
    /// `max_envelope` bytes: room for one in either frame that carries it.
    pub fn limit_for_envelopes(max_envelope: usize) -> usize {
        max_envelope
            .saturating_add(ENVELOPE_FRAMING)
            .min(MAX_SESSION_FRAME)
    }

    /// Reads a length prefix; refuses lengths above `max` before anything
    /// is allocated for the frame.
    pub fn length(prefix: [u8; LENGTH_PREFIX], max: usize) -> Result<usize, DecodeError> {
        let len = u32::from_be_bytes(prefix) as usize;
        if len > max.min(MAX_SESSION_FRAME) {
            return Err(DecodeError::TooLarge {
                len,
                max: max.min(MAX_SESSION_FRAME),
            });
        }
        Ok(len)
    }
}

/// Bytes of an `AttachmentChunk` frame body before its ciphertext: frame
/// header (6) ‖ variant u32 = 13 (4) ‖ chunk index u64 (8) ‖ ciphertext
/// length u64 (8), little-endian as the codec writes them.
pub const CHUNK_FRAME_HEAD: usize = 26;
const CHUNK_VARIANT: u32 = 13;

/// The chunk index, if `head` (a frame body's first [`CHUNK_FRAME_HEAD`]
/// bytes) begins an `AttachmentChunk` whose ciphertext is the rest of a
/// body of `len` bytes: then the ciphertext can be read into a buffer of
/// its own, which is the frame's, instead of decoded out of the body (a
/// copy of every chunk). Any other frame: `None`, and it is decoded whole.
pub fn chunk_frame_index(head: &[u8], len: usize) -> Option<u64> {
    let h = head.get(..CHUNK_FRAME_HEAD)?;
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let is_chunk = h[..4] == codec::MAGIC
        && h[4] == codec::VERSION
        && h[5] == FrameType::Session as u8
        && h[6..10] == CHUNK_VARIANT.to_le_bytes();
    let rest = u64::try_from(len.checked_sub(CHUNK_FRAME_HEAD)?).ok()?;
    (is_chunk && u64_at(18) == rest).then(|| u64_at(10))
}

/// Bytes of a session frame needed by [`peek_envelope_id`].
pub const ENVELOPE_ID_PREFIX: usize = 136;

/// The message id of an `Envelope` or `ResentEnvelope` session frame, read
/// from its first [`ENVELOPE_ID_PREFIX`] bytes without decoding the rest:
/// lets a receiver refuse an envelope larger than it accepts by name
/// (`TooLarge`, a permanent refusal) instead of only closing the stream,
/// which the sender would take for a transient failure and retry.
///
/// Layout: session frame header (6) ‖ variant u32 = 1 or 7 (4) ‖ length
/// u64 (8) ‖ envelope frame header (6) ‖ sender (32) ‖ recipient (32) ‖
/// recipient key (32) ‖ id (16). (Both variants start with the envelope.)
pub fn peek_envelope_id(prefix: &[u8]) -> Option<MessageId> {
    let p = prefix.get(..ENVELOPE_ID_PREFIX)?;
    let header = |at: usize, ty: FrameType| {
        p[at..at + 4] == codec::MAGIC && p[at + 4] == codec::VERSION && p[at + 5] == ty as u8
    };
    let variant = &p[6..10];
    if !header(0, FrameType::Session)
        || (variant != 1u32.to_le_bytes() && variant != 7u32.to_le_bytes())
    {
        return None;
    }
    if !header(18, FrameType::Envelope) {
        return None;
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&p[120..136]);
    Some(MessageId(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Identity, NodeId};
    use crate::time::Timestamp;

    #[test]
    fn frames_round_trip_through_the_wire_form() {
        let id = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0));
        let frames = [
            SessionFrame::Hello {
                cert: id.encryption_cert().clone(),
            },
            SessionFrame::Envelope(vec![1, 2, 3]),
            SessionFrame::Receipt(vec![4; 100]),
            SessionFrame::Rejected {
                id: Some(MessageId([9; 16])),
                reason: RejectReason::IdReused,
                detail: "id reused".into(),
            },
            SessionFrame::Rejected {
                id: None,
                reason: RejectReason::IdReused,
                detail: "id reused".into(),
            },
            SessionFrame::ResentEnvelope {
                envelope: vec![5; 10],
                original: MessageId([6; 16]),
                signature: [7; 64],
            },
        ];
        for f in frames {
            let wire = f.to_wire().unwrap();
            let len = SessionFrame::length(wire[..4].try_into().unwrap(), 1 << 20).unwrap();
            assert_eq!(len, wire.len() - 4);
            assert_eq!(SessionFrame::from_bytes(&wire[4..]).unwrap(), f);
        }
    }

    #[test]
    fn envelope_id_is_found_in_the_frame_prefix() {
        let a = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0));
        let b = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0));
        let body = crate::message::Body::Consultation(crate::message::Consultation {
            regarding: None,
            subject: "s".into(),
            body: "b".into(),
            thread: Default::default(),
        });
        let id = MessageId([0x5a; 16]);
        let sealed =
            crate::envelope::seal(&a, b.public(), id, Timestamp(1), &body, &mut rand::rng())
                .unwrap();
        let resent = SessionFrame::ResentEnvelope {
            envelope: sealed.bytes.clone(),
            original: MessageId([1; 16]),
            signature: [0; 64],
        }
        .to_wire()
        .unwrap();
        // Prefix, header and variant, the envelope with its length, then
        // the original and the signature (docs/protocol.md §8.3).
        assert_eq!(resent.len(), LENGTH_PREFIX + 18 + sealed.bytes.len() + 80);
        assert_eq!(&resent[resent.len() - 80..resent.len() - 64], &[1; 16]);
        assert_eq!(peek_envelope_id(&resent[LENGTH_PREFIX..]), Some(id));
        let wire = SessionFrame::Envelope(sealed.bytes).to_wire().unwrap();
        assert_eq!(peek_envelope_id(&wire[LENGTH_PREFIX..]), Some(id));
        assert_eq!(
            peek_envelope_id(&wire[LENGTH_PREFIX..LENGTH_PREFIX + 100]),
            None
        );
        let hello = SessionFrame::Hello {
            cert: a.encryption_cert().clone(),
        }
        .to_wire()
        .unwrap();
        assert_eq!(peek_envelope_id(&hello[LENGTH_PREFIX..]), None);
    }

    /// An envelope the receiver takes fits its frame limit whether it
    /// comes as an `Envelope` or a `ResentEnvelope`, up to the codec's
    /// ceiling (at `+ 64`, a resent envelope within 34 bytes of the limit
    /// was skipped as oversize and refused as too large).
    #[test]
    fn an_envelope_at_the_limit_fits_either_frame() {
        for max in [4096, 4 * 1024 * 1024, MAX_FRAME_BYTES] {
            let envelope = vec![0u8; max];
            for frame in [
                SessionFrame::Envelope(envelope.clone()),
                SessionFrame::ResentEnvelope {
                    envelope: envelope.clone(),
                    original: MessageId([1; 16]),
                    signature: [2; 64],
                },
            ] {
                let wire = frame.to_wire().unwrap();
                let prefix: [u8; LENGTH_PREFIX] = wire[..LENGTH_PREFIX].try_into().unwrap();
                let limit = SessionFrame::limit_for_envelopes(max);
                assert_eq!(
                    SessionFrame::length(prefix, limit),
                    Ok(wire.len() - LENGTH_PREFIX),
                    "max {max}"
                );
                assert_eq!(SessionFrame::from_bytes(&wire[LENGTH_PREFIX..]), Ok(frame));
            }
        }
    }

    #[test]
    fn a_restoration_frame_is_218_bytes_and_its_note_and_proof() {
        let statement = RestorationStatement {
            node: NodeId([1; 32]),
            restored_size: 4,
            restored_root: Digest([2; 32]),
            backup_time: Timestamp(3),
            restored_at: Timestamp(4),
            continuation_size: 6,
            continuation_root: Digest([5; 32]),
        };
        let frame = SessionFrame::Restoration {
            statement: Box::new(statement),
            signature: [7; 64],
            continuation: "note\n".into(),
            proof: vec![Digest([8; 32]); 3],
        };
        let wire = frame.to_wire().unwrap();
        // docs/protocol.md §8.7.
        assert_eq!(wire.len() - LENGTH_PREFIX, 218 + 5 + 32 * 3);
        assert_eq!(
            &wire[LENGTH_PREFIX + 6..LENGTH_PREFIX + 10],
            &8u32.to_le_bytes()
        );
        assert_eq!(
            SessionFrame::from_bytes(&wire[LENGTH_PREFIX..]).unwrap(),
            frame
        );
    }

    #[test]
    fn oversize_length_prefix_is_refused() {
        assert_eq!(
            SessionFrame::length((u32::MAX).to_be_bytes(), 1 << 20),
            Err(DecodeError::TooLarge {
                len: u32::MAX as usize,
                max: 1 << 20
            })
        );
    }

    #[test]
    fn a_chunk_frame_is_read_by_its_head_as_the_codec_decodes_it() {
        for (index, len) in [(0u64, 0usize), (7, 1), (u64::MAX, 65_552), (3, 1 << 20)] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = SessionFrame::AttachmentChunk {
                index,
                bytes: bytes.clone(),
            };
            let wire = frame.to_wire().unwrap();
            let body = &wire[LENGTH_PREFIX..];
            assert_eq!(chunk_frame_index(body, body.len()), Some(index));
            assert_eq!(&body[CHUNK_FRAME_HEAD..], &bytes[..]);
            assert_eq!(SessionFrame::from_bytes(body).unwrap(), frame);
            // A length that is not the rest of the body: decoded whole.
            assert_eq!(chunk_frame_index(body, body.len() + 1), None);
            assert_eq!(
                chunk_frame_index(&body[..CHUNK_FRAME_HEAD - 1], body.len()),
                None
            );
        }
        for other in [
            SessionFrame::AttachmentTable(vec![5; 64]),
            SessionFrame::Envelope(vec![1; 64]),
            SessionFrame::AttachmentFrom {
                from_chunk: 13,
                table: true,
            },
            SessionFrame::AttachmentsWanted {
                id: MessageId([13; 16]),
                next: vec![13, 13],
            },
        ] {
            let wire = other.to_wire().unwrap();
            let body = &wire[LENGTH_PREFIX..];
            assert_eq!(chunk_frame_index(body, body.len()), None, "{other:?}");
        }
    }
}
