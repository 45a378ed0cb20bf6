use hpke::aead::{AeadTag, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable, OpModeR};

use super::{
    associated_data, body_commitment, plaintext, CheckedEnvelope, EnvelopeError, EnvelopeHeader,
    OriginProof,
};
use crate::attachment::{check_attachments, AttachmentLimits, CheckedAttachment};
use crate::digest::Digest;
use crate::domain;
use crate::identity::{Identity, Kem};
use crate::message::Body;

const TAG_LEN: usize = 16;

/// A message that decrypted, matched its signed commitment and validated.
#[derive(Clone, Debug)]
pub struct OpenedMessage {
    pub header: EnvelopeHeader,
    pub body: Body,
    /// The attachments the body announces, checked against the limits
    /// given to [`CheckedEnvelope::open_with_limits`] (in message order);
    /// their content arrives separately and is opened with
    /// [`crate::attachment::Opener`].
    pub attachments: Vec<CheckedAttachment>,
    /// Digest of the envelope bytes received; what the receipt names.
    pub envelope_digest: Digest,
    /// What to show a third party to prove the sender sent this body.
    pub proof: OriginProof,
}

impl CheckedEnvelope {
    /// Decrypts and validates the body. Only a checked envelope can be
    /// opened, so no decryption ever happens for unauthenticated input.
    /// Attachments are checked against the default [`AttachmentLimits`].
    pub fn open(self, me: &Identity) -> Result<OpenedMessage, EnvelopeError> {
        self.open_with_limits(me, &AttachmentLimits::default())
    }

    /// [`Self::open`] with the node's attachment limits: a manifest beyond
    /// them is refused here, before any attachment data is accepted.
    pub fn open_with_limits(
        self,
        me: &Identity,
        limits: &AttachmentLimits,
    ) -> Result<OpenedMessage, EnvelopeError> {
        let ciphertext_digest = self.ciphertext_digest;
        let env = self.envelope;
        let aad = associated_data(&env.header, &env.body_commitment);
        let split = env
            .ciphertext
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(EnvelopeError::Decrypt)?;
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&env.encapsulated_key)
            .map_err(|_| EnvelopeError::Decrypt)?;
        let tag = AeadTag::<ChaCha20Poly1305>::from_bytes(&env.ciphertext[split..])
            .map_err(|_| EnvelopeError::Decrypt)?;
        let mut plaintext = env.ciphertext;
        plaintext.truncate(split);
        let key = me
            .decryption_key(&env.header.recipient_key)
            .ok_or(EnvelopeError::UnknownEncryptionKey)?;
        hpke::single_shot_open_in_place_detached::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            key,
            &enc,
            domain::HPKE_INFO,
            &mut plaintext,
            &aad,
            &tag,
        )
        .map_err(|_| EnvelopeError::Decrypt)?;

        // Decoded before the commitment check, which covers only the part
        // before the attachment keys; both are authenticated by the AEAD.
        let content = plaintext::decode(&plaintext).map_err(EnvelopeError::BodyDecode)?;
        plaintext.truncate(content.committed_len);
        if body_commitment(&plaintext) != env.body_commitment {
            return Err(EnvelopeError::CommitmentMismatch);
        }
        let body = content.body;
        if body.kind() != env.header.kind {
            return Err(EnvelopeError::KindMismatch {
                header: env.header.kind,
                body: body.kind(),
            });
        }
        body.validate()?;
        let attachments = check_attachments(body.kind(), content.attachments, limits)?;
        Ok(OpenedMessage {
            proof: OriginProof {
                header: env.header.clone(),
                plaintext,
                ciphertext_digest,
                signature: env.signature,
            },
            header: env.header,
            body,
            attachments,
            envelope_digest: self.digest,
        })
    }
}
