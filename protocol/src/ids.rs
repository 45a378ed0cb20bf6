//! Message identifiers.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use rand::RngCore;

/// A message id: 128 random bits chosen by the sender, written as 32
/// lowercase hex digits. Unique per sender; the receiver de-duplicates by it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    pub fn random() -> Self {
        Self::random_from(&mut rand::rng())
    }

    pub fn random_from<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        MessageId(b)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

/// Why a string is not a message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid message id {given:?}: expected 32 hexadecimal digits")]
pub struct ParseMessageIdError {
    pub given: String,
}

impl FromStr for MessageId {
    type Err = ParseMessageIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMessageIdError {
            given: s.chars().take(80).collect(),
        };
        let t = s.trim();
        if t.len() != 32 {
            return Err(err());
        }
        let mut b = [0u8; 16];
        hex::decode_to_slice(t, &mut b).map_err(|_| err())?;
        Ok(MessageId(b))
    }
}

crate::serde_as_text!(MessageId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let id = MessageId([0xab; 16]);
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<MessageId>().unwrap(), id);
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert!("abc".parse::<MessageId>().is_err());
        assert!("zz".repeat(16).parse::<MessageId>().is_err());
    }
}
