//! References that tie messages together and to each side's case files.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::limits::MAX_REFERENCE_BYTES;
use super::text::{self, Lines};
use super::InvalidMessage;
use crate::ids::MessageId;

/// Where a message sits in a conversation, so both sides can show the
/// exchange about one case as one thread. Both absent for a message that
/// starts a conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thread {
    /// The message this one answers or follows up.
    #[serde(default)]
    pub in_reply_to: Option<MessageId>,
    /// The first message of the conversation.
    #[serde(default)]
    pub root: Option<MessageId>,
}

impl Thread {
    /// The thread of a message answering `parent`, whose own thread is
    /// `parent_thread`: the root carries over, or is the parent itself.
    pub fn replying_to(parent: MessageId, parent_thread: &Thread) -> Thread {
        Thread {
            in_reply_to: Some(parent),
            root: Some(parent_thread.root.unwrap_or(parent)),
        }
    }
}

/// Each authority files a case under its own reference; carrying both lets
/// either side quote the other's in correspondence outside Comity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseReferences {
    #[serde(default)]
    pub sender: Option<String>,
    #[serde(default)]
    pub receiver: Option<String>,
}

impl CaseReferences {
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        text::optional(
            "case_refs.sender",
            self.sender.as_deref(),
            MAX_REFERENCE_BYTES,
            Lines::One,
        )?;
        text::optional(
            "case_refs.receiver",
            self.receiver.as_deref(),
            MAX_REFERENCE_BYTES,
            Lines::One,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replying_keeps_root() {
        let a = MessageId([1; 16]);
        let b = MessageId([2; 16]);
        let t1 = Thread::replying_to(a, &Thread::default());
        assert_eq!(t1.root, Some(a));
        let t2 = Thread::replying_to(b, &t1);
        assert_eq!((t2.in_reply_to, t2.root), (Some(b), Some(a)));
    }

    #[test]
    fn references_are_one_line_and_bounded() {
        let ok = CaseReferences {
            sender: Some("MLA/2026/0042".into()),
            receiver: None,
        };
        assert!(ok.validate().is_ok());
        let bad = CaseReferences {
            sender: None,
            receiver: Some("A\nB".into()),
        };
        assert_eq!(
            bad.validate(),
            Err(InvalidMessage::ControlCharacter {
                field: "case_refs.receiver"
            })
        );
        let long = CaseReferences {
            sender: Some("x".repeat(MAX_REFERENCE_BYTES + 1)),
            receiver: None,
        };
        assert!(matches!(
            long.validate(),
            Err(InvalidMessage::TooLong { .. })
        ));
        let empty = CaseReferences {
            sender: Some(String::new()),
            receiver: None,
        };
        assert!(matches!(
            empty.validate(),
            Err(InvalidMessage::Empty { .. })
        ));
    }
}
