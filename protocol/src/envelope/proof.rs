use bincode::{Decode, Encode};

use super::{body_commitment, plaintext, EnvelopeError, EnvelopeHeader, SignedPart};
use crate::attachment::{check_manifests, AttachmentLimits, AttachmentManifest};
use crate::codec::{self, FrameType, MAX_FRAME_BYTES};
use crate::digest::Digest;
use crate::domain;
use crate::identity::{signing_input, verify_signature};
use crate::message::Body;

/// Proof of origin: the recipient can hand this to a third party (a court,
/// an auditor), who checks with nothing but the sender's node id that the
/// sender signed exactly this body to this recipient at this time.
///
/// It reveals the plaintext (that is its purpose) and nothing else: no
/// secret key, and the ciphertext only by digest.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct OriginProof {
    pub header: EnvelopeHeader,
    /// `salt ‖ encode(body)`, then the attachment manifests if any: the
    /// committed part of the sealed plaintext, without the content keys.
    pub plaintext: Vec<u8>,
    pub ciphertext_digest: Digest,
    pub signature: [u8; 64],
}

impl OriginProof {
    /// Verifies the proof against the sender named in its header and returns
    /// the body the sender signed. It proves who signed what, to whom and
    /// when they said it was; judging whether that time was plausible is the
    /// reader's business. The attachments' manifests, if any, are checked
    /// but not returned: see [`Self::verify_with_attachments`].
    pub fn verify(&self) -> Result<Body, EnvelopeError> {
        self.verify_with_attachments().map(|(body, _)| body)
    }

    /// [`Self::verify`], also returning the attachment manifests the sender
    /// signed (names, sizes, tree roots, whole-file SHA-256), checked
    /// against the protocol's rules ([`AttachmentLimits::ceiling`]: the
    /// verifier does not know the recipient's configured limits).
    pub fn verify_with_attachments(
        &self,
    ) -> Result<(Body, Vec<AttachmentManifest>), EnvelopeError> {
        let sender = self.header.sender;
        let key = sender
            .verifying_key()
            .map_err(|_| EnvelopeError::UnknownSender { sender })?;
        let signed = SignedPart {
            header: self.header.clone(),
            body_commitment: body_commitment(&self.plaintext),
            ciphertext_digest: self.ciphertext_digest,
        };
        let input = signing_input(domain::ENVELOPE_SIGNATURE, &signed);
        if !verify_signature(&key, &input, &self.signature) {
            return Err(EnvelopeError::BadSignature { sender });
        }
        let (body, manifests) =
            plaintext::decode_committed(&self.plaintext).map_err(EnvelopeError::BodyDecode)?;
        if body.kind() != self.header.kind {
            return Err(EnvelopeError::KindMismatch {
                header: self.header.kind,
                body: body.kind(),
            });
        }
        body.validate()?;
        check_manifests(body.kind(), &manifests, &AttachmentLimits::ceiling())?;
        Ok((body, manifests))
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, codec::EncodeError> {
        codec::encode_frame(FrameType::OriginProof, self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, codec::DecodeError> {
        codec::decode_frame::<_, MAX_FRAME_BYTES>(FrameType::OriginProof, bytes)
    }
}
