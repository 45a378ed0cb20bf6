//! Replies carrying the result of executing a request.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::limits::{MAX_BODY_BYTES, MAX_SUBJECT_BYTES};
use super::text::{self, Lines};
use super::{InvalidMessage, Thread};
use crate::ids::MessageId;

/// The execution result (evidence, records, the outcome of a search) for a
/// request. `partial` says more is to come, so the requester does not close
/// its file.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The request this executes.
    pub in_reply_to: MessageId,
    pub subject: String,
    pub body: String,
    #[serde(default)]
    pub partial: bool,
    /// `thread.in_reply_to`, if set, must equal [`Reply::in_reply_to`]: a
    /// reply answering one message while filed under another is rejected.
    #[serde(default)]
    pub thread: Thread,
}

impl Reply {
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        text::required("subject", &self.subject, MAX_SUBJECT_BYTES, Lines::One)?;
        text::required("body", &self.body, MAX_BODY_BYTES, Lines::Many)?;
        match self.thread.in_reply_to {
            Some(t) if t != self.in_reply_to => Err(InvalidMessage::InconsistentReply {
                in_reply_to: self.in_reply_to,
                thread_in_reply_to: t,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_must_agree() {
        let a = MessageId([1; 16]);
        let b = MessageId([2; 16]);
        let mut r = Reply {
            in_reply_to: a,
            subject: "Bank records".into(),
            body: "Attached.".into(),
            partial: true,
            thread: Thread::default(),
        };
        assert!(r.validate().is_ok());
        r.thread = Thread::replying_to(a, &Thread::default());
        assert!(r.validate().is_ok());
        r.thread.in_reply_to = Some(b);
        assert!(matches!(
            r.validate(),
            Err(InvalidMessage::InconsistentReply { .. })
        ));
    }
}
