//! The domain model: what central authorities say to each other.
//!
//! Every type here is plain data with derived codecs. The derived bincode
//! decoder checks only structure, so a body from a peer is untrusted until
//! [`Body::validate`] has accepted it; that check is total and never panics.
//! CLI-style strings (`mla`, `uncac-46`, `treaty:NAME`, `2026-03-09`, …)
//! parse with `FromStr`, case-insensitively, failing with a
//! [`ParseValueError`] that lists the valid values.

mod consultation;
mod date;
mod info;
mod invalid;
mod kind;
mod language;
mod legal_basis;
pub mod limits;
mod offence;
mod parse;
mod refs;
mod reply;
mod request;
mod status;
mod status_rule;
mod text;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

pub use consultation::Consultation;
pub use date::Date;
pub use info::{Restrictions, SpontaneousInformation};
pub use invalid::InvalidMessage;
pub use kind::MessageKind;
pub use language::Language;
pub use legal_basis::LegalBasis;
pub use offence::{IccsCode, Offence, ICCS_SECTION_NAMES};
pub use parse::ParseValueError;
pub use refs::{CaseReferences, Thread};
pub use reply::Reply;
pub use request::{Request, RequestType, Urgency};
pub use status::{BusinessStatus, InvalidTransition, StatusUpdate};
pub use status_rule::{check_status, Side, StatusRefusal};

/// The content of a message: what is encrypted and signed inside an
/// envelope. Its [`kind`](Body::kind) is also carried outside the
/// encryption, and the two must agree.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Body {
    #[serde(rename = "request")]
    Request(Request),
    #[serde(rename = "info")]
    SpontaneousInformation(SpontaneousInformation),
    #[serde(rename = "status")]
    StatusUpdate(StatusUpdate),
    #[serde(rename = "reply")]
    Reply(Reply),
    #[serde(rename = "consultation")]
    Consultation(Consultation),
}

impl Body {
    pub fn kind(&self) -> MessageKind {
        match self {
            Body::Request(_) => MessageKind::Request,
            Body::SpontaneousInformation(_) => MessageKind::SpontaneousInformation,
            Body::StatusUpdate(_) => MessageKind::StatusUpdate,
            Body::Reply(_) => MessageKind::Reply,
            Body::Consultation(_) => MessageKind::Consultation,
        }
    }

    /// Everything the decoder cannot check: text limits and content, dates,
    /// ICCS codes, language tags, restriction counts. Run on every body
    /// from a peer before it is stored or shown, and on every body before
    /// it is sealed, so a node never sends what its peer would reject.
    /// Reports the first problem found.
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            Body::Request(r) => r.validate(),
            Body::SpontaneousInformation(i) => i.validate(),
            Body::StatusUpdate(s) => s.validate(),
            Body::Reply(r) => r.validate(),
            Body::Consultation(c) => c.validate(),
        }
    }

    /// The subject line, for listings; status updates have none.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Body::Request(r) => Some(&r.subject),
            Body::SpontaneousInformation(i) => Some(&i.subject),
            Body::StatusUpdate(_) => None,
            Body::Reply(r) => Some(&r.subject),
            Body::Consultation(c) => Some(&c.subject),
        }
    }

    /// The thread, for listings; a status update belongs to the thread of
    /// the message it is [`regarding`](StatusUpdate::regarding).
    pub fn thread(&self) -> Option<&Thread> {
        match self {
            Body::Request(r) => Some(&r.thread),
            Body::SpontaneousInformation(i) => Some(&i.thread),
            Body::StatusUpdate(_) => None,
            Body::Reply(r) => Some(&r.thread),
            Body::Consultation(c) => Some(&c.thread),
        }
    }
}

#[cfg(test)]
mod tests;
