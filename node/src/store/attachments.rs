//! The `attachments` tree: what the store knows about attachment files,
//! beside the message records (which keep their format). The files
//! themselves are in `data/attachments/` (see [`crate::attachments`]).
//!
//! * `t ‖ stored id` → [`StagedAttachment`]: a file copied in through the
//!   admin API and not yet part of a message.
//! * `s ‖ id` → the attachments of our outgoing message `id`, in order.
//! * `r ‖ sender ‖ id` → the attachments of `sender`'s message `id`.
//! * `w ‖ sender ‖ id` → [`AwaitedMessage`]: `sender`'s message `id` is
//!   held (its attachments above) and not yet in the inbox, because some
//!   of its attachments have not arrived; removed once it is received.
//!
//! The values hold content keys: they are encoded with the protocol's
//! codec, have no serde form, and never reach JSON, logs or the audit log.

use bincode::{Decode, Encode};
use comity_protocol::attachment::SealedAttachment;
use comity_protocol::message::MessageKind;
use comity_protocol::{Digest, MessageId, NodeId, Timestamp};

use super::{decode, encode, key, Result, Store};
use crate::attachments::StoredId;

/// One attachment of a message as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct HeldAttachment {
    /// The manifest the message carries and the content key.
    pub sealed: SealedAttachment,
    /// The sender's copy in `attachments/sent/` (ours only; a received
    /// attachment's file is named by peer, message and index).
    pub stored: Option<StoredId>,
}

/// A file copied in and waiting to be attached to a message.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StagedAttachment {
    pub sealed: SealedAttachment,
    pub stored: StoredId,
    pub staged_at: Timestamp,
}

/// A peer's message whose envelope verified and whose attachments are
/// arriving: what an attachment stream checks its offer against.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AwaitedMessage {
    /// The envelope's digest: another envelope with the same id is another
    /// message (refused as `id-reused`).
    pub digest: Digest,
    pub kind: MessageKind,
    pub since: Timestamp,
}

/// What one peer's messages awaiting their attachments hold.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Awaiting {
    pub messages: usize,
    pub bytes: u64,
}

impl Store {
    /// Records a copied-in file as staged. Not flushed: the caller commits
    /// before it answers.
    pub fn put_staged_attachment(&self, staged: &StagedAttachment) -> Result<()> {
        self.attachments
            .insert(key(b't', &[&staged.stored.0]), encode(staged)?)?;
        Ok(())
    }

    pub fn staged_attachment(&self, stored: &StoredId) -> Result<Option<StagedAttachment>> {
        let k = key(b't', &[&stored.0]);
        self.attachments
            .get(&k)?
            .map(|v| decode(&k, &v))
            .transpose()
    }

    /// Every staged file, oldest first (for the clean-up of ones never
    /// attached).
    pub fn staged_attachments(&self) -> Result<Vec<StagedAttachment>> {
        let mut all = Vec::new();
        for item in self.attachments.scan_prefix([b't']) {
            let (k, v) = item?;
            all.push(decode::<StagedAttachment>(&k, &v)?);
        }
        all.sort_by_key(|s| s.staged_at);
        Ok(all)
    }

    /// Every sender's copy a record names: staged, or an attachment of one
    /// of our messages (a resend names the same copies as its original).
    pub fn named_sent_copies(&self) -> Result<std::collections::HashSet<StoredId>> {
        let mut named = std::collections::HashSet::new();
        for item in self.attachments.scan_prefix([b't']) {
            let (k, v) = item?;
            named.insert(decode::<StagedAttachment>(&k, &v)?.stored);
        }
        for item in self.attachments.scan_prefix([b's']) {
            let (k, v) = item?;
            let held: Vec<HeldAttachment> = decode(&k, &v)?;
            named.extend(held.into_iter().filter_map(|h| h.stored));
        }
        Ok(named)
    }

    /// Forgets a staged file (attached to a message, or cleaned up).
    pub fn remove_staged_attachment(&self, stored: &StoredId) -> Result<()> {
        self.attachments.remove(key(b't', &[&stored.0]))?;
        Ok(())
    }

    /// The attachments of our message `id`, written while it is staged,
    /// before its status (as the resend links are).
    pub fn put_outbound_attachments(&self, id: &MessageId, items: &[HeldAttachment]) -> Result<()> {
        self.attachments
            .insert(key(b's', &[&id.0]), encode(&items.to_vec())?)?;
        Ok(())
    }

    /// Whether our message `id` has attachments (one key lookup).
    pub fn has_outbound_attachments(&self, id: &MessageId) -> Result<bool> {
        Ok(self.attachments.contains_key(key(b's', &[&id.0]))?)
    }

    /// Our message `id`'s attachments; empty when it has none.
    pub fn outbound_attachments(&self, id: &MessageId) -> Result<Vec<HeldAttachment>> {
        let k = key(b's', &[&id.0]);
        match self.attachments.get(&k)? {
            Some(v) => decode(&k, &v),
            None => Ok(Vec::new()),
        }
    }

    pub fn put_inbound_attachments(
        &self,
        sender: &NodeId,
        id: &MessageId,
        items: &[HeldAttachment],
    ) -> Result<()> {
        self.attachments
            .insert(key(b'r', &[&sender.0, &id.0]), encode(&items.to_vec())?)?;
        Ok(())
    }

    /// `sender`'s message `id`'s attachments; empty when it has none.
    pub fn inbound_attachments(
        &self,
        sender: &NodeId,
        id: &MessageId,
    ) -> Result<Vec<HeldAttachment>> {
        let k = key(b'r', &[&sender.0, &id.0]);
        match self.attachments.get(&k)? {
            Some(v) => decode(&k, &v),
            None => Ok(Vec::new()),
        }
    }

    /// Records that `sender`'s message `id` awaits its attachments (with
    /// them, [`Store::put_inbound_attachments`]). Not flushed: the answer
    /// that asks for the attachments goes after the next commit.
    pub fn put_awaited(
        &self,
        sender: &NodeId,
        id: &MessageId,
        awaited: &AwaitedMessage,
    ) -> Result<()> {
        self.attachments
            .insert(key(b'w', &[&sender.0, &id.0]), encode(awaited)?)?;
        Ok(())
    }

    pub fn awaited(&self, sender: &NodeId, id: &MessageId) -> Result<Option<AwaitedMessage>> {
        let k = key(b'w', &[&sender.0, &id.0]);
        self.attachments
            .get(&k)?
            .map(|v| decode(&k, &v))
            .transpose()
    }

    /// The message is received (in the inbox) or given up.
    pub fn remove_awaited(&self, sender: &NodeId, id: &MessageId) -> Result<()> {
        self.attachments.remove(key(b'w', &[&sender.0, &id.0]))?;
        Ok(())
    }

    /// What `sender`'s messages awaiting their attachments hold: how many,
    /// counting up to `stop` (a cap needs no more), and the sum of
    /// `size_of` each of their attachments' sizes (of those counted).
    pub fn awaited_from(
        &self,
        sender: &NodeId,
        stop: usize,
        size_of: impl Fn(u64) -> u64,
    ) -> Result<Awaiting> {
        let mut held = Awaiting::default();
        for item in self.attachments.scan_prefix(key(b'w', &[&sender.0])) {
            let (k, _) = item?;
            let id = super::message_id_at(&k, 33)?;
            for a in self.inbound_attachments(sender, &id)? {
                held.bytes = held.bytes.saturating_add(size_of(a.sealed.manifest.size));
            }
            held.messages += 1;
            if held.messages >= stop {
                break;
            }
        }
        Ok(held)
    }

    /// Every message awaiting its attachments: (sender, id, record).
    pub fn all_awaited(&self) -> Result<Vec<(NodeId, MessageId, AwaitedMessage)>> {
        let mut all = Vec::new();
        for item in self.attachments.scan_prefix([b'w']) {
            let (k, v) = item?;
            let sender = super::node_id_at(&k, 1)?;
            let id = super::message_id_at(&k, 33)?;
            all.push((sender, id, decode::<AwaitedMessage>(&k, &v)?));
        }
        Ok(all)
    }

    /// Forgets `sender`'s message `id` and its attachments (given up on).
    pub fn remove_inbound_attachments(&self, sender: &NodeId, id: &MessageId) -> Result<()> {
        self.attachments.remove(key(b'r', &[&sender.0, &id.0]))?;
        self.attachments.remove(key(b'w', &[&sender.0, &id.0]))?;
        Ok(())
    }
}
