use crate::attachment::InvalidAttachment;
use crate::codec::{DecodeError, EncodeError};
use crate::digest::Digest;
use crate::identity::NodeId;
use crate::ids::MessageId;
use crate::message::{InvalidMessage, MessageKind};
use crate::time::Timestamp;

/// Why an envelope was refused. Each variant is one reason, so the node can
/// log, count and audit it precisely. None of them carries plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is {len} bytes, above the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("cannot decode envelope: {0}")]
    Decode(#[from] DecodeError),
    #[error("envelope is addressed to {recipient}, not to this node")]
    WrongRecipient { recipient: NodeId },
    #[error("envelope is sealed to an encryption key this node does not hold")]
    UnknownEncryptionKey,
    #[error("sender {sender} is not a pinned peer")]
    UnknownSender { sender: NodeId },
    #[error("signature does not verify: the envelope was altered or not made by {sender}")]
    BadSignature { sender: NodeId },
    #[error("envelope is dated {created_at}, more than the allowed skew ahead of now ({now})")]
    FromFuture {
        created_at: Timestamp,
        now: Timestamp,
    },
    #[error("envelope is dated {created_at}, older than the maximum age (now {now})")]
    Stale {
        created_at: Timestamp,
        now: Timestamp,
    },
    #[error(
        "message {id} was already received with this exact envelope (a replay or a retransmission)"
    )]
    AlreadyReceived { id: MessageId, digest: Digest },
    #[error("message id {id} was already received with different content")]
    IdReused {
        id: MessageId,
        first: Digest,
        now: Digest,
    },
    #[error("body does not decrypt (HPKE open failed)")]
    Decrypt,
    #[error("decrypted body does not match the signed commitment")]
    CommitmentMismatch,
    #[error("cannot decode decrypted body: {0}")]
    BodyDecode(DecodeError),
    #[error("header says {header:?} but the body is a {body:?}")]
    KindMismatch {
        header: MessageKind,
        body: MessageKind,
    },
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidMessage),
    #[error("attachments refused: {0}")]
    Attachment(#[from] InvalidAttachment),
}

/// Why a message could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidMessage),
    #[error("sealed envelope would be {len} bytes, above the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("HPKE encryption failed")]
    Encrypt,
    #[error("attachments refused: {0}")]
    Attachment(#[from] InvalidAttachment),
    #[error(transparent)]
    Sign(#[from] crate::identity::SignError),
}
