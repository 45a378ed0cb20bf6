//! Sealed envelopes: how one node sends one message to another.
//!
//! An envelope is signed by the sender's Ed25519 identity key and its body is
//! encrypted with HPKE (RFC 9180, base mode, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305) to the recipient's X25519 key.
//!
//! The life of an envelope, in the order the types enforce:
//! 1. [`seal`] → [`SealedEnvelope`] (bytes to send, their digest).
//! 2. [`check`] → [`CheckedEnvelope`]: the cheap outer check — size, frame,
//!    recipient, pinned sender, signature, time window, replay — before any
//!    decryption or storage.
//! 3. [`CheckedEnvelope::open`] → [`OpenedMessage`]: decrypt, check the body
//!    commitment, decode and validate the message.
//!
//! Guarantees (see `docs/protocol.md` for the byte layout):
//! * only the recipient can read the body;
//! * the signature covers the header (sender, recipient, recipient key, id,
//!   kind, time), a hiding commitment to the plaintext and a digest of the
//!   ciphertext, so nothing can be spliced, re-addressed or re-encrypted
//!   to a third node without the signature failing or the recipient check
//!   refusing it;
//! * the header and commitment are also the AEAD's associated data;
//! * the [`OriginProof`] in an opened message lets the recipient later show a
//!   third party exactly what the sender signed, without any secret key.

mod check;
mod error;
mod open;
mod plaintext;
mod proof;
mod seal;

use bincode::{Decode, Encode};

use crate::codec::{self, FrameType, MAX_FRAME_BYTES};
use crate::digest::Digest;
use crate::domain;
use crate::identity::NodeId;
use crate::ids::MessageId;
use crate::message::MessageKind;
use crate::time::Timestamp;

pub use check::{check, CheckPolicy, CheckedEnvelope, PinnedPeers, SeenMessages};
pub use error::{EnvelopeError, SealError};
pub use open::OpenedMessage;
pub use proof::OriginProof;
#[cfg(feature = "hostile")]
pub use seal::seal_unchecked;
pub use seal::{seal, seal_with_attachments, SealedEnvelope};

/// The cleartext part of an envelope: signed, and the AEAD's associated data.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct EnvelopeHeader {
    pub sender: NodeId,
    pub recipient: NodeId,
    /// The recipient's X25519 key this envelope is sealed to (from its
    /// signed [`crate::EncryptionKeyCert`]); lets keys rotate.
    pub recipient_key: [u8; 32],
    pub id: MessageId,
    pub kind: MessageKind,
    pub created_at: Timestamp,
}

/// An envelope as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Envelope {
    pub header: EnvelopeHeader,
    /// HPKE encapsulated key (`enc`), an X25519 public key.
    pub encapsulated_key: [u8; 32],
    /// `SHA-256(BODY_COMMITMENT ‖ committed plaintext)` (the plaintext
    /// without its attachment keys, see `plaintext.rs`); it starts with 32
    /// secret random bytes, so this reveals nothing about the body.
    pub body_commitment: Digest,
    /// ChaCha20-Poly1305 ciphertext followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
    /// Ed25519 over [`ENVELOPE_SIGNATURE`](crate::domain::ENVELOPE_SIGNATURE) ‖ encode([`SignedPart`]).
    pub signature: [u8; 64],
}

/// What the sender's signature covers.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignedPart {
    pub header: EnvelopeHeader,
    pub body_commitment: Digest,
    /// `SHA-256(CIPHERTEXT_DIGEST ‖ encapsulated_key ‖ ciphertext)`.
    pub ciphertext_digest: Digest,
}

impl Envelope {
    pub fn to_bytes(&self) -> Result<Vec<u8>, codec::EncodeError> {
        codec::encode_frame(FrameType::Envelope, self)
    }

    /// Decodes a framed envelope; allocates at most [`MAX_FRAME_BYTES`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, codec::DecodeError> {
        codec::decode_frame::<_, MAX_FRAME_BYTES>(FrameType::Envelope, bytes)
    }

    pub fn ciphertext_digest(&self) -> Digest {
        ciphertext_digest(&self.encapsulated_key, &self.ciphertext)
    }

    pub(crate) fn signed_part(&self) -> SignedPart {
        SignedPart {
            header: self.header.clone(),
            body_commitment: self.body_commitment,
            ciphertext_digest: self.ciphertext_digest(),
        }
    }
}

/// The digest receipts and the audit log use to name an envelope: over the
/// exact framed bytes. The codec is canonical (one encoding per value), so
/// the sender's and the recipient's digests agree.
pub fn envelope_digest(framed_bytes: &[u8]) -> Digest {
    Digest::of(domain::ENVELOPE_DIGEST, &[framed_bytes])
}

pub(crate) fn ciphertext_digest(enc: &[u8; 32], ciphertext: &[u8]) -> Digest {
    Digest::of(domain::CIPHERTEXT_DIGEST, &[enc, ciphertext])
}

pub(crate) fn body_commitment(plaintext: &[u8]) -> Digest {
    Digest::of(domain::BODY_COMMITMENT, &[plaintext])
}

/// `ENVELOPE_AAD ‖ encode(header) ‖ body_commitment`.
pub(crate) fn associated_data(header: &EnvelopeHeader, commitment: &Digest) -> Vec<u8> {
    let mut aad = domain::ENVELOPE_AAD.to_vec();
    // A header is arrays and integers: encoding into a Vec cannot fail.
    let _ = codec::encode_into(header, &mut aad);
    aad.extend_from_slice(&commitment.0);
    aad
}
