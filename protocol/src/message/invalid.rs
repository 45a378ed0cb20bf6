//! Why a message is not acceptable.

use crate::ids::MessageId;

/// A message that decodes but breaks a rule of the model. Field names are
/// paths as in the JSON form (`case_refs.sender`), so the user or the
/// peer's operator can find the culprit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} is too long: {len} bytes, at most {max} allowed")]
    TooLong {
        field: &'static str,
        max: usize,
        len: usize,
    },
    #[error(
        "{field} contains a control character (only newline, tab and carriage return, \
         and only in multi-line text)"
    )]
    ControlCharacter { field: &'static str },
    #[error("{field}: {year:04}-{month:02}-{day:02} is not a calendar date")]
    BadDate {
        field: &'static str,
        year: u16,
        month: u8,
        day: u8,
    },
    #[error("offence.iccs: {code:?} is not an ICCS code (2, 4, 5 or 6 digits, section 01 to 11)")]
    BadIccs { code: String },
    #[error("language: {tag:?} is not a canonical language tag")]
    BadLanguage { tag: String },
    #[error("restrictions.use_restrictions: {count} restrictions, at most {max} allowed")]
    TooManyRestrictions { max: usize, count: usize },
    #[error("a {request_type} request must name the offence (description and ICCS code)")]
    OffenceRequired { request_type: &'static str },
    #[error("reply answers {in_reply_to} but its thread says it answers {thread_in_reply_to}")]
    InconsistentReply {
        in_reply_to: MessageId,
        thread_in_reply_to: MessageId,
    },
}
