//! The kind of a message, as bound into the envelope.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::ParseValueError;

/// What a message is. The kind travels outside the encrypted body (in the
/// envelope header, as its bincode variant index, a u32 from 0) so a node
/// can route and rate-limit before decrypting;
/// the opened body must then agree with it ([`Body::kind`](super::Body::kind)).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode, Serialize, Deserialize,
)]
pub enum MessageKind {
    #[serde(rename = "request")]
    Request,
    #[serde(rename = "info")]
    SpontaneousInformation,
    #[serde(rename = "status")]
    StatusUpdate,
    #[serde(rename = "reply")]
    Reply,
    #[serde(rename = "consultation")]
    Consultation,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] = [
        MessageKind::Request,
        MessageKind::SpontaneousInformation,
        MessageKind::StatusUpdate,
        MessageKind::Reply,
        MessageKind::Consultation,
    ];

    /// The CLI names, in code order.
    pub const NAMES: &[&str] = &["request", "info", "status", "reply", "consultation"];

    /// A stable number for the kind (1–5), for logs and statistics. Not what
    /// the wire carries: envelopes encode the kind as its variant index (0–4).
    pub fn code(self) -> u8 {
        match self {
            MessageKind::Request => 1,
            MessageKind::SpontaneousInformation => 2,
            MessageKind::StatusUpdate => 3,
            MessageKind::Reply => 4,
            MessageKind::Consultation => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Whether messages of this kind carry content (a subject and a body)
    /// and so may carry attachments: all but status updates.
    pub fn carries_content(self) -> bool {
        !matches!(self, MessageKind::StatusUpdate)
    }

    /// The CLI name (`request`, `info`, `status`, `reply`, `consultation`).
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Request => "request",
            MessageKind::SpontaneousInformation => "info",
            MessageKind::StatusUpdate => "status",
            MessageKind::Reply => "reply",
            MessageKind::Consultation => "consultation",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MessageKind {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let k = super::parse::keyword(s);
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == k)
            .ok_or_else(|| ParseValueError::one_of("message kind", s, Self::NAMES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_fixed() {
        let codes: Vec<u8> = MessageKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes, [1, 2, 3, 4, 5]);
        for k in MessageKind::ALL {
            assert_eq!(MessageKind::from_code(k.code()), Some(k));
        }
        assert_eq!(MessageKind::from_code(0), None);
        assert_eq!(MessageKind::from_code(6), None);
        assert_eq!(MessageKind::from_code(255), None);
    }

    #[test]
    fn names_round_trip() {
        for (k, name) in MessageKind::ALL.iter().zip(MessageKind::NAMES) {
            assert_eq!(k.to_string(), *name);
            assert_eq!(name.parse::<MessageKind>().unwrap(), *k);
            assert_eq!(name.to_uppercase().parse::<MessageKind>().unwrap(), *k);
            assert_eq!(serde_json::to_string(k).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<MessageKind>(&format!("\"{name}\"")).unwrap(),
                *k
            );
        }
        assert_eq!(
            " Info ".parse::<MessageKind>().unwrap(),
            MessageKind::SpontaneousInformation
        );
    }

    #[test]
    fn unknown_lists_valid() {
        let e = "requests".parse::<MessageKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown message kind "requests"; valid values: request, info, status, reply, consultation"#
        );
    }
}
