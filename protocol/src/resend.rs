//! Resend notices: the sender's signed statement that an envelope carries
//! again the content of an earlier message of its own that did not reach
//! the recipient (it expired, or was refused), so that the recipient can
//! link the two — and tell, if the earlier one did arrive after all, that
//! the second is not a new request.
//!
//! Sent beside the envelope in a [`crate::session::SessionFrame::ResentEnvelope`]
//! (session protocol 3); the envelope itself is unchanged, so the notice
//! adds nothing a peer of session protocol 2 would have to read.

use bincode::{Decode, Encode};

use crate::digest::Digest;
use crate::domain;
use crate::identity::{signing_input, verify_signature, Identity, NodeId, PeerKeys};
use crate::ids::MessageId;

/// What the notice states; signed by `sender`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ResendStatement {
    pub sender: NodeId,
    pub recipient: NodeId,
    /// The new message, in the envelope the notice comes with.
    pub message_id: MessageId,
    /// [`crate::envelope::envelope_digest`] of that envelope.
    pub envelope_digest: Digest,
    /// The sender's earlier message whose content it carries.
    pub original: MessageId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResendNoticeError {
    #[error("the resend notice is not signed by the envelope's sender")]
    BadSignature,
}

impl ResendStatement {
    /// Ed25519 by `me` (the sender) over `RESEND_NOTICE_SIGNATURE ‖
    /// encode(statement)`.
    pub fn sign(&self, me: &Identity) -> Result<[u8; 64], crate::identity::SignError> {
        me.sign(&signing_input(domain::RESEND_NOTICE_SIGNATURE, self))
    }

    /// The recipient's check, with the sender's pinned keys; the other
    /// fields come from the checked envelope, not from the frame.
    pub fn verify(&self, sender: &PeerKeys, signature: &[u8; 64]) -> Result<(), ResendNoticeError> {
        let input = signing_input(domain::RESEND_NOTICE_SIGNATURE, self);
        if *sender.id() == self.sender
            && verify_signature(sender.verifying_key(), &input, signature)
        {
            Ok(())
        } else {
            Err(ResendNoticeError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn statement(a: &Identity, b: &Identity) -> ResendStatement {
        ResendStatement {
            sender: a.id(),
            recipient: b.id(),
            message_id: MessageId([2; 16]),
            envelope_digest: Digest([3; 32]),
            original: MessageId([1; 16]),
        }
    }

    #[test]
    fn a_notice_verifies_only_for_what_its_sender_signed() {
        let a = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0));
        let b = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0));
        let s = statement(&a, &b);
        let sig = s.sign(&a).unwrap();
        assert_eq!(s.verify(a.public(), &sig), Ok(()));
        // Another signer, or any field changed, fails.
        assert!(s.verify(b.public(), &s.sign(&b).unwrap()).is_err());
        let mut other = s.clone();
        other.original = MessageId([9; 16]);
        assert!(other.verify(a.public(), &sig).is_err());
        let mut other = s.clone();
        other.envelope_digest = Digest([9; 32]);
        assert!(other.verify(a.public(), &sig).is_err());
        let mut bad = sig;
        bad[0] ^= 1;
        assert!(s.verify(a.public(), &bad).is_err());
        // The signing input is the domain and the 128-byte statement.
        let input = signing_input(domain::RESEND_NOTICE_SIGNATURE, &s);
        assert_eq!(input.len(), domain::RESEND_NOTICE_SIGNATURE.len() + 128);
    }
}
