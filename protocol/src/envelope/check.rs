use std::collections::HashMap;
use std::time::Duration;

use super::{envelope_digest, Envelope, EnvelopeError};
use crate::digest::Digest;
use crate::domain;
use crate::identity::{signing_input, verify_signature, Identity, NodeId, PeerKeys};
use crate::ids::MessageId;
use crate::time::Timestamp;

/// The receiving node's rules for the outer check.
#[derive(Clone, Debug)]
pub struct CheckPolicy {
    /// The receiver's clock (the protocol never reads one).
    pub now: Timestamp,
    /// How far in the future `created_at` may be (clock skew between nodes).
    pub max_future_skew: Duration,
    /// How old `created_at` may be. Senders stop retrying before this.
    pub max_age: Duration,
    /// Largest framed envelope accepted (at most the codec's hard ceiling).
    pub max_envelope_bytes: usize,
}

/// The peers this node has pinned, by node id.
pub trait PinnedPeers {
    fn pinned(&self, id: &NodeId) -> Option<&PeerKeys>;
}

impl PinnedPeers for HashMap<NodeId, PeerKeys> {
    fn pinned(&self, id: &NodeId) -> Option<&PeerKeys> {
        self.get(id)
    }
}

impl PinnedPeers for [PeerKeys] {
    fn pinned(&self, id: &NodeId) -> Option<&PeerKeys> {
        self.iter().find(|p| p.id() == id)
    }
}

/// The receiver's de-duplication index: for a (sender, message id) already
/// accepted, the digest of the envelope that was accepted.
///
/// Ids are scoped by sender so that one peer cannot block another's
/// messages by reusing its ids.
pub trait SeenMessages {
    fn seen(&self, sender: &NodeId, id: &MessageId) -> Option<Digest>;
}

impl SeenMessages for HashMap<(NodeId, MessageId), Digest> {
    fn seen(&self, sender: &NodeId, id: &MessageId) -> Option<Digest> {
        self.get(&(*sender, *id)).copied()
    }
}

/// An envelope that passed the outer check; only this can be opened.
#[derive(Clone, Debug)]
pub struct CheckedEnvelope {
    pub envelope: Envelope,
    /// [`super::envelope_digest`] of the bytes received.
    pub digest: Digest,
    pub(super) sender: PeerKeys,
    /// Computed for the signature check; `open` needs it too.
    pub(super) ciphertext_digest: Digest,
}

impl CheckedEnvelope {
    pub fn sender(&self) -> &PeerKeys {
        &self.sender
    }
}

/// The outer check: everything that can be decided without decrypting.
///
/// In order: size, frame and decoding, recipient, pinned sender, signature,
/// replay, recipient key, time window. The signature is verified before
/// the later checks so that [`EnvelopeError::IdReused`],
/// [`EnvelopeError::UnknownEncryptionKey`], [`EnvelopeError::Stale`] and
/// [`EnvelopeError::FromFuture`] are attributable to the sender, not to
/// whoever forged the bytes; the errors before it are not. Replay comes
/// before the key and time checks so that a retransmission of an envelope
/// already accepted is always answered with its receipt
/// ([`EnvelopeError::AlreadyReceived`]), however old it has become and
/// whatever key this node holds now.
pub fn check(
    bytes: &[u8],
    me: &Identity,
    peers: &(impl PinnedPeers + ?Sized),
    seen: &(impl SeenMessages + ?Sized),
    policy: &CheckPolicy,
) -> Result<CheckedEnvelope, EnvelopeError> {
    if bytes.len() > policy.max_envelope_bytes {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: policy.max_envelope_bytes,
        });
    }
    let envelope = Envelope::from_bytes(bytes)?;
    let h = &envelope.header;
    if !me.answers_to(&h.recipient) {
        return Err(EnvelopeError::WrongRecipient {
            recipient: h.recipient,
        });
    }
    let sender = peers
        .pinned(&h.sender)
        .ok_or(EnvelopeError::UnknownSender { sender: h.sender })?;

    let signed = envelope.signed_part();
    let ciphertext_digest = signed.ciphertext_digest;
    let to_verify = signing_input(domain::ENVELOPE_SIGNATURE, &signed);
    if !verify_signature(sender.verifying_key(), &to_verify, &envelope.signature) {
        return Err(EnvelopeError::BadSignature { sender: h.sender });
    }

    let digest = envelope_digest(bytes);
    if let Some(first) = seen.seen(&h.sender, &h.id) {
        return Err(if first == digest {
            EnvelopeError::AlreadyReceived { id: h.id, digest }
        } else {
            EnvelopeError::IdReused {
                id: h.id,
                first,
                now: digest,
            }
        });
    }
    // After the replay check: a duplicate of a message already accepted is
    // answered with its receipt whatever key it was sealed to (a sender
    // whose receipt was lost must not meet a key since rotated).
    // The current key or a previous one still held (a rotation's grace).
    if me.decryption_key(&h.recipient_key).is_none() {
        return Err(EnvelopeError::UnknownEncryptionKey);
    }
    if h.created_at > policy.now.saturating_add(policy.max_future_skew) {
        return Err(EnvelopeError::FromFuture {
            created_at: h.created_at,
            now: policy.now,
        });
    }
    if h.created_at < policy.now.saturating_sub(policy.max_age) {
        return Err(EnvelopeError::Stale {
            created_at: h.created_at,
            now: policy.now,
        });
    }

    Ok(CheckedEnvelope {
        sender: sender.clone(),
        envelope,
        digest,
        ciphertext_digest,
    })
}
