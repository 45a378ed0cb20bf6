//! The printable node id operators read to each other when they pin.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use data_encoding::BASE32_NOPAD;
use ed25519_dalek::VerifyingKey;

use super::KeyError;
use crate::digest::Digest;
use crate::domain;

/// A node's Ed25519 public key, the thing operators pin.
///
/// Printed as RFC 4648 base32 (lowercase, no padding) of the 32-byte key
/// followed by a 3-byte checksum, in seven groups of eight characters:
/// `abcdefgh-ijklmnop-…`. The alphabet has no 0/1/8/9, so it survives being
/// read over the phone; the checksum catches a mistyped character with
/// probability 1 − 2⁻²⁴. Parsing ignores case, spaces and dashes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct NodeId(pub [u8; 32]);

const CHECKSUM_LEN: usize = 3;
const ENCODED_LEN: usize = 56; // (32 + 3) bytes * 8 / 5
const GROUP: usize = 8;

/// Why a string is not a node id. Each variant tells the operator what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseNodeIdError {
    #[error("a node id has {expected} letters and digits (dashes optional), this one has {found}")]
    WrongLength { expected: usize, found: usize },
    #[error("character {character:?} at position {position} cannot appear in a node id (letters a-z and digits 2-7 only)")]
    BadCharacter { character: char, position: usize },
    #[error(
        "checksum mismatch: the node id was mistyped or misread; compare it again with its owner"
    )]
    Checksum,
    #[error("the node id does not encode a valid Ed25519 public key")]
    NotAKey,
}

impl NodeId {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn checksum(key: &[u8; 32]) -> [u8; CHECKSUM_LEN] {
        let d = Digest::of(domain::NODE_ID_CHECKSUM, &[key]);
        [d.0[0], d.0[1], d.0[2]]
    }

    /// The Ed25519 key; fails for byte strings that are not a valid point or
    /// are of small order (such keys could "verify" forged signatures).
    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadIdentityKey)?;
        // Non-canonical encodings (y >= p) decompress, but strict RFC 8032
        // implementations refuse them: so do we. (`to_bytes` would return
        // the input as given; compressing the point again re-encodes it.)
        if vk.is_weak() || vk.to_edwards().compress().to_bytes() != self.0 {
            return Err(KeyError::BadIdentityKey);
        }
        Ok(vk)
    }

    /// The first group of the printed id, for log lines and tables.
    pub fn short(&self) -> String {
        self.to_string()[..GROUP].to_string()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 32 + CHECKSUM_LEN];
        raw[..32].copy_from_slice(&self.0);
        raw[32..].copy_from_slice(&Self::checksum(&self.0));
        let enc = BASE32_NOPAD.encode(&raw).to_ascii_lowercase();
        for (i, chunk) in enc.as_bytes().chunks(GROUP).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            // Base32 output is ASCII.
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut cleaned = String::with_capacity(ENCODED_LEN);
        for (position, c) in s.chars().enumerate() {
            match c {
                '-' | ' ' | '\t' => continue,
                'a'..='z' | '2'..='7' => cleaned.push(c.to_ascii_uppercase()),
                'A'..='Z' => cleaned.push(c),
                _ => {
                    return Err(ParseNodeIdError::BadCharacter {
                        character: c,
                        position,
                    })
                }
            }
            if cleaned.len() > ENCODED_LEN {
                break;
            }
        }
        if cleaned.len() != ENCODED_LEN {
            return Err(ParseNodeIdError::WrongLength {
                expected: ENCODED_LEN,
                found: cleaned.len(),
            });
        }
        let raw = BASE32_NOPAD
            .decode(cleaned.as_bytes())
            // 56 characters of the alphabet always decode; a non-canonical
            // final character is the only remaining failure: a typo.
            .map_err(|_| ParseNodeIdError::Checksum)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[..32]);
        if raw[32..] != Self::checksum(&key) {
            return Err(ParseNodeIdError::Checksum);
        }
        let id = NodeId(key);
        id.verifying_key().map_err(|_| ParseNodeIdError::NotAKey)?;
        Ok(id)
    }
}

crate::serde_as_text!(NodeId);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::time::Timestamp;

    fn id() -> NodeId {
        Identity::from_seeds(&[7; 32], &[8; 32], Timestamp(0)).id()
    }

    #[test]
    fn prints_seven_groups_and_parses_back() {
        let id = id();
        let s = id.to_string();
        assert_eq!(s.len(), 56 + 6);
        assert_eq!(s.split('-').count(), 7);
        assert_eq!(s.parse::<NodeId>().unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<NodeId>().unwrap(), id);
        assert_eq!(s.replace('-', "").parse::<NodeId>().unwrap(), id);
        assert_eq!(s.replace('-', " ").parse::<NodeId>().unwrap(), id);
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let s = id().to_string().replace('-', "");
        let alphabet = "abcdefghijklmnopqrstuvwxyz234567";
        for pos in 0..s.len() {
            for c in alphabet.chars() {
                if s.as_bytes()[pos] as char == c {
                    continue;
                }
                let mut t = s.clone().into_bytes();
                t[pos] = c as u8;
                let t = String::from_utf8(t).unwrap();
                assert!(
                    t.parse::<NodeId>().is_err(),
                    "typo at {pos} -> {c} accepted"
                );
            }
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let s = id().to_string();
        assert_eq!(
            s[..20].parse::<NodeId>(),
            Err(ParseNodeIdError::WrongLength {
                expected: 56,
                found: 18
            })
        );
        let bad = format!("0{}", &s[1..]);
        assert_eq!(
            bad.parse::<NodeId>(),
            Err(ParseNodeIdError::BadCharacter {
                character: '0',
                position: 0
            })
        );
        let msg = ParseNodeIdError::Checksum.to_string();
        assert!(msg.contains("mistyped"));
    }

    #[test]
    fn non_canonical_key_encoding_is_refused() {
        // y = p + 3 (p = 2^255 - 19) decompresses to a point, but is not the
        // canonical encoding of it.
        let mut y = [0xffu8; 32];
        y[0] = 0xf0;
        y[31] = 0x7f;
        assert!(
            VerifyingKey::from_bytes(&y).is_ok(),
            "premise: it decompresses"
        );
        assert_eq!(NodeId(y).verifying_key(), Err(KeyError::BadIdentityKey));
    }

    #[test]
    fn swapped_adjacent_characters_are_caught() {
        let s = id().to_string().replace('-', "");
        for pos in 0..s.len() - 1 {
            let mut t = s.clone().into_bytes();
            if t[pos] == t[pos + 1] {
                continue;
            }
            t.swap(pos, pos + 1);
            let t = String::from_utf8(t).unwrap();
            assert!(t.parse::<NodeId>().is_err(), "swap at {pos} accepted");
        }
    }
}
