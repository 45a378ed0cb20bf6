//! Receipts: the recipient's signed statement that it durably holds an
//! envelope — non-repudiation of receipt, as AS4 receipts give.
//!
//! The receiver signs only after the message is flushed to its disk; the
//! sender keeps the receipt as proof of delivery.

use bincode::{Decode, Encode};

use crate::codec::{self, DecodeError, EncodeError, FrameType};
use crate::digest::Digest;
use crate::domain;
use crate::envelope::OpenedMessage;
use crate::identity::{signing_input, verify_signature, Identity, NodeId, PeerKeys, SignError};
use crate::ids::MessageId;
use crate::time::Timestamp;

/// A framed receipt is 190 bytes.
pub const MAX_RECEIPT_BYTES: usize = 1024;

/// What the receipt states; signed by `recipient`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ReceiptStatement {
    /// The message's sender, to whom the receipt is addressed.
    pub sender: NodeId,
    /// The message's recipient, who signs.
    pub recipient: NodeId,
    pub message_id: MessageId,
    /// [`crate::envelope::envelope_digest`] of the envelope received.
    pub envelope_digest: Digest,
    pub received_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Receipt {
    pub statement: ReceiptStatement,
    /// Ed25519 by `statement.recipient` over `RECEIPT_SIGNATURE ‖ encode(statement)`.
    pub signature: [u8; 64],
}

/// Why a receipt was refused by the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("cannot decode receipt: {0}")]
    Decode(#[from] DecodeError),
    #[error("receipt is addressed to {found}, not to this node")]
    NotForMe { found: NodeId },
    #[error("receipt is signed by {found}, but the message went to {expected}")]
    WrongSigner { expected: NodeId, found: NodeId },
    #[error("receipt is for message {found}, expected {expected}")]
    WrongMessage {
        expected: MessageId,
        found: MessageId,
    },
    #[error("receipt names envelope digest {found}, but the envelope sent has digest {expected}")]
    DigestMismatch { expected: Digest, found: Digest },
    #[error("receipt signature does not verify")]
    BadSignature,
}

impl Receipt {
    /// Signs a receipt for a message this node opened, validated and is
    /// about to store durably (the caller sends it only after the flush).
    /// Only an opened message can be receipted: a receipt never vouches for
    /// a body that failed to decrypt or validate.
    pub fn sign(
        me: &Identity,
        opened: &OpenedMessage,
        received_at: Timestamp,
    ) -> Result<Receipt, SignError> {
        Self::sign_statement(
            me,
            ReceiptStatement {
                sender: opened.header.sender,
                recipient: me.id(),
                message_id: opened.header.id,
                envelope_digest: opened.envelope_digest,
                received_at,
            },
        )
    }

    fn sign_statement(me: &Identity, statement: ReceiptStatement) -> Result<Receipt, SignError> {
        let signature = me.sign(&signing_input(domain::RECEIPT_SIGNATURE, &statement))?;
        Ok(Receipt {
            statement,
            signature,
        })
    }

    /// The sender's check: this receipt is from `recipient`, addressed to
    /// `me`, for the message `id` whose envelope had `digest`.
    pub fn verify(
        &self,
        me: &NodeId,
        recipient: &PeerKeys,
        id: &MessageId,
        digest: &Digest,
    ) -> Result<(), ReceiptError> {
        let s = &self.statement;
        if s.sender != *me {
            return Err(ReceiptError::NotForMe { found: s.sender });
        }
        if s.recipient != *recipient.id() {
            return Err(ReceiptError::WrongSigner {
                expected: *recipient.id(),
                found: s.recipient,
            });
        }
        if s.message_id != *id {
            return Err(ReceiptError::WrongMessage {
                expected: *id,
                found: s.message_id,
            });
        }
        if s.envelope_digest != *digest {
            return Err(ReceiptError::DigestMismatch {
                expected: *digest,
                found: s.envelope_digest,
            });
        }
        self.verify_signature_only(recipient)
    }

    /// Checks only that `signer` is the recipient named and signed it (for a
    /// third party holding the receipt and the recipient's keys).
    pub fn verify_signature_only(&self, signer: &PeerKeys) -> Result<(), ReceiptError> {
        if self.statement.recipient != *signer.id() {
            return Err(ReceiptError::WrongSigner {
                expected: *signer.id(),
                found: self.statement.recipient,
            });
        }
        let input = signing_input(domain::RECEIPT_SIGNATURE, &self.statement);
        if verify_signature(signer.verifying_key(), &input, &self.signature) {
            Ok(())
        } else {
            Err(ReceiptError::BadSignature)
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        codec::encode_frame(FrameType::Receipt, self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Receipt, ReceiptError> {
        Ok(codec::decode_frame::<_, MAX_RECEIPT_BYTES>(
            FrameType::Receipt,
            bytes,
        )?)
    }
}
