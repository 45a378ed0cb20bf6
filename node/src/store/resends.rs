//! The `resends` tree: a failed outgoing message and the new message that
//! carries its content again, linked both ways.
//!
//! * `a ‖ original` → the resent message's id ("resent as")
//! * `o ‖ resent` → the original's id ("resend of")
//! * `r ‖ sender ‖ id` → original id ‖ signature: a peer's message that it
//!   said (in a signed resend notice) resends its earlier `original`
//!
//! Our two are written while the resent message is staged, before its
//! status (see [`Store::insert_outbound_with`]); a link whose resent message
//! has no status was never accepted and reads as absent. A peer's is
//! written once its message is held.

use comity_protocol::{MessageId, NodeId};

use super::{key, message_id_at, Result, Store};

impl Store {
    /// Links `resent` to `original`. Not flushed: call it while staging
    /// `resent`, before its status.
    pub fn put_resend_link(&self, original: &MessageId, resent: &MessageId) -> Result<()> {
        self.resends
            .insert(key(b'a', &[&original.0]), &resent.0[..])?;
        self.resends
            .insert(key(b'o', &[&resent.0]), &original.0[..])?;
        Ok(())
    }

    /// The accepted message that resent `original`, if any.
    pub fn resent_as(&self, original: &MessageId) -> Result<Option<MessageId>> {
        let Some(v) = self.resends.get(key(b'a', &[&original.0]))? else {
            return Ok(None);
        };
        let resent = message_id_at(&v, 0)?;
        Ok(self.outbound_status(&resent)?.map(|_| resent))
    }

    /// Records that `sender`'s message `id` resends its `original`, as its
    /// notice (with `signature`) says.
    pub fn put_received_resend(
        &self,
        sender: &NodeId,
        id: &MessageId,
        original: &MessageId,
        signature: &[u8; 64],
    ) -> Result<()> {
        let mut v = original.0.to_vec();
        v.extend_from_slice(signature);
        self.resends.insert(key(b'r', &[&sender.0, &id.0]), v)?;
        Ok(())
    }

    /// The earlier message of `sender` that its message `id` resends, if
    /// its notice said so.
    pub fn received_resend_of(&self, sender: &NodeId, id: &MessageId) -> Result<Option<MessageId>> {
        self.resends
            .get(key(b'r', &[&sender.0, &id.0]))?
            .map(|v| message_id_at(&v, 0))
            .transpose()
    }

    /// The original of `resent`, if it is an accepted resend.
    pub fn resend_of(&self, resent: &MessageId) -> Result<Option<MessageId>> {
        match self.resends.get(key(b'o', &[&resent.0]))? {
            Some(v) if self.outbound_status(resent)?.is_some() => Ok(Some(message_id_at(&v, 0)?)),
            _ => Ok(None),
        }
    }
}
