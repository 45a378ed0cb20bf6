//! Consultations between central authorities.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::limits::{MAX_BODY_BYTES, MAX_SUBJECT_BYTES};
use super::text::{self, Lines};
use super::{InvalidMessage, Thread};
use crate::ids::MessageId;

/// Informal exchange before a formal request (is this admissible, what is
/// needed?) or before refusing or postponing (UNCAC art. 46(26): consult
/// to see whether assistance can be given subject to conditions).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consultation {
    /// The request consulted about, if one exists yet.
    #[serde(default)]
    pub regarding: Option<MessageId>,
    pub subject: String,
    pub body: String,
    #[serde(default)]
    pub thread: Thread,
}

impl Consultation {
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        text::required("subject", &self.subject, MAX_SUBJECT_BYTES, Lines::One)?;
        text::required("body", &self.body, MAX_BODY_BYTES, Lines::Many)
    }
}
