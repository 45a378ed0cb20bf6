use hpke::aead::{AeadTag, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::{Deserializable, OpModeR};

use super::{
    associated_data, body_commitment, CheckedEnvelope, EnvelopeError, EnvelopeHeader, OriginProof,
    Plaintext,
};
use crate::codec::{self, MAX_FRAME_BYTES};
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
    /// Digest of the envelope bytes received; what the receipt names.
    pub envelope_digest: Digest,
    /// What to show a third party to prove the sender sent this body.
    pub proof: OriginProof,
}

impl CheckedEnvelope {
    /// Decrypts and validates the body. Only a checked envelope can be
    /// opened, so no decryption ever happens for unauthenticated input.
    pub fn open(self, me: &Identity) -> Result<OpenedMessage, EnvelopeError> {
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
        hpke::single_shot_open_in_place_detached::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            me.encryption_key(),
            &enc,
            domain::HPKE_INFO,
            &mut plaintext,
            &aad,
            &tag,
        )
        .map_err(|_| EnvelopeError::Decrypt)?;

        if body_commitment(&plaintext) != env.body_commitment {
            return Err(EnvelopeError::CommitmentMismatch);
        }
        let body = decode_body(&plaintext)?;
        if body.kind() != env.header.kind {
            return Err(EnvelopeError::KindMismatch {
                header: env.header.kind,
                body: body.kind(),
            });
        }
        body.validate()?;
        Ok(OpenedMessage {
            proof: OriginProof {
                header: env.header.clone(),
                plaintext,
                ciphertext_digest,
                signature: env.signature,
            },
            header: env.header,
            body,
            envelope_digest: self.digest,
        })
    }
}

pub(super) fn decode_body(plaintext: &[u8]) -> Result<Body, EnvelopeError> {
    let p: Plaintext =
        codec::decode::<_, MAX_FRAME_BYTES>(plaintext).map_err(EnvelopeError::BodyDecode)?;
    Ok(p.body)
}
