//! The `resends` tree: a failed outgoing message and the new message that
//! carries its content again, linked both ways.
//!
//! * `a ‖ original` → the resent message's id ("resent as")
//! * `o ‖ resent` → the original's id ("resend of")
//!
//! Both are written while the resent message is staged, before its status
//! (see [`Store::insert_outbound_with`]); a link whose resent message has no
//! status was never accepted and reads as absent.

use comity_protocol::MessageId;

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

    /// The original of `resent`, if it is an accepted resend.
    pub fn resend_of(&self, resent: &MessageId) -> Result<Option<MessageId>> {
        match self.resends.get(key(b'o', &[&resent.0]))? {
            Some(v) if self.outbound_status(resent)?.is_some() => Ok(Some(message_id_at(&v, 0)?)),
            _ => Ok(None),
        }
    }
}
