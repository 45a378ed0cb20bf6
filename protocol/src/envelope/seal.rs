use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::rand_core::{CryptoRng, RngCore};
use hpke::{OpModeS, Serializable};

use super::{
    associated_data, body_commitment, envelope_digest, plaintext, Envelope, EnvelopeHeader,
    SealError,
};
use crate::attachment::{check_manifests, AttachmentLimits, AttachmentManifest, SealedAttachment};
use crate::codec::MAX_FRAME_BYTES;
use crate::digest::Digest;
use crate::domain;
use crate::identity::{signing_input, Identity, Kem, PeerKeys};
use crate::ids::MessageId;
use crate::message::Body;
use crate::time::Timestamp;

/// A sealed envelope ready to store and send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedEnvelope {
    pub id: MessageId,
    /// The framed envelope: exactly what goes on the wire.
    pub bytes: Vec<u8>,
    /// [`envelope_digest`] of `bytes`, what the receipt will name.
    pub digest: Digest,
}

/// Signs and encrypts `body` from `sender` to `recipient`.
///
/// `rng` supplies the HPKE ephemeral key and the commitment salt; pass
/// `&mut rand::rng()` in production and a seeded generator for test vectors.
/// The message is validated first: a node never sends what it would refuse.
pub fn seal<R: CryptoRng + RngCore>(
    sender: &Identity,
    recipient: &PeerKeys,
    id: MessageId,
    created_at: Timestamp,
    body: &Body,
    rng: &mut R,
) -> Result<SealedEnvelope, SealError> {
    seal_with_attachments(
        sender,
        recipient,
        id,
        created_at,
        body,
        &[],
        &AttachmentLimits::default(),
        rng,
    )
}

/// [`seal`] with attachments: their manifests (checked against `limits`
/// as the recipient will check them) and content keys go into the sealed
/// plaintext after the body. The content itself is sealed separately, once,
/// by a [`crate::attachment::Sealer`]; sealing the message again (a resend,
/// another recipient key) reuses the same keys and ciphertext.
#[allow(clippy::too_many_arguments)] // seal's arguments, plus two
pub fn seal_with_attachments<R: CryptoRng + RngCore>(
    sender: &Identity,
    recipient: &PeerKeys,
    id: MessageId,
    created_at: Timestamp,
    body: &Body,
    attachments: &[SealedAttachment],
    limits: &AttachmentLimits,
    rng: &mut R,
) -> Result<SealedEnvelope, SealError> {
    body.validate()?;
    let manifests: Vec<AttachmentManifest> =
        attachments.iter().map(|a| a.manifest.clone()).collect();
    check_manifests(body.kind(), &manifests, limits)?;
    seal_unchecked(sender, recipient, id, created_at, body, attachments, rng)
}

/// [`seal_with_attachments`] without checking the body or the manifests:
/// what a hostile peer can send. Outside this module only for the tests of
/// a receiver's checks (re-exported with feature `hostile`, never enabled
/// in a node).
pub fn seal_unchecked<R: CryptoRng + RngCore>(
    sender: &Identity,
    recipient: &PeerKeys,
    id: MessageId,
    created_at: Timestamp,
    body: &Body,
    attachments: &[SealedAttachment],
    rng: &mut R,
) -> Result<SealedEnvelope, SealError> {
    let header = EnvelopeHeader {
        sender: sender.id(),
        recipient: *recipient.id(),
        recipient_key: recipient.cert().public_key,
        id,
        kind: body.kind(),
        created_at,
    };

    let mut salt = [0u8; 32];
    rng.fill_bytes(&mut salt);
    let (mut plaintext, committed_len) = plaintext::encode(salt, body, attachments)?;
    let commitment = body_commitment(&plaintext[..committed_len]);
    let aad = associated_data(&header, &commitment);

    let (enc, tag) =
        hpke::single_shot_seal_in_place_detached::<ChaCha20Poly1305, HkdfSha256, Kem, R>(
            &OpModeS::Base,
            recipient.encryption_key(),
            domain::HPKE_INFO,
            &mut plaintext,
            &aad,
            rng,
        )
        .map_err(|_| SealError::Encrypt)?;
    let mut ciphertext = plaintext;
    ciphertext.extend_from_slice(&tag.to_bytes());

    let mut envelope = Envelope {
        header,
        encapsulated_key: enc.to_bytes().into(),
        body_commitment: commitment,
        ciphertext,
        signature: [0u8; 64],
    };
    let to_sign = signing_input(domain::ENVELOPE_SIGNATURE, &envelope.signed_part());
    envelope.signature = sender.sign(&to_sign)?;

    let bytes = envelope.to_bytes()?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(SealError::TooLarge {
            len: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    Ok(SealedEnvelope {
        id,
        digest: envelope_digest(&bytes),
        bytes,
    })
}
