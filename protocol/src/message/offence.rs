//! The offence a request or spontaneous information concerns.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::limits::MAX_OFFENCE_DESCRIPTION_BYTES;
use super::text::{self, Lines};
use super::{InvalidMessage, ParseValueError};

/// The offence in the sender's words, plus an ICCS code so that both sides
/// can count cases by offence category (e.g. for UNODC statistics) without
/// reading free text.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offence {
    pub description: String,
    pub iccs: IccsCode,
}

impl Offence {
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        text::required(
            "offence.description",
            &self.description,
            MAX_OFFENCE_DESCRIPTION_BYTES,
            Lines::Many,
        )?;
        if self.iccs.is_valid() {
            Ok(())
        } else {
            Err(InvalidMessage::BadIccs {
                code: super::parse::truncate(&self.iccs.0),
            })
        }
    }
}

/// Titles of the 11 level-1 sections of the UNODC International
/// Classification of Crime for Statistical Purposes (ICCS 2015), in order.
pub const ICCS_SECTION_NAMES: [&str; 11] = [
    "Acts leading to death or intending to cause death",
    "Acts causing harm or intending to cause harm to the person",
    "Injurious acts of a sexual nature",
    "Acts against property involving violence or threat against a person",
    "Acts against property only",
    "Acts involving controlled psychoactive substances or other drugs",
    "Acts involving fraud, deception or corruption",
    "Acts against public order, authority and provisions of the State",
    "Acts against public safety and state security",
    "Acts against the natural environment",
    "Other criminal acts not elsewhere classified",
];

const VALID: &str = "an ICCS code of 2, 4, 5 or 6 digits starting with a section 01 to 11 \
                     (e.g. 07, 0703, 07031)";

/// An ICCS code at level 1 to 4 (`07`, `0703`, `07031`, `070311`).
///
/// Only the syntax and the section are checked: the full code list is
/// revised by UNODC and a node must not reject a message because its copy
/// is older than the sender's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct IccsCode(String);

impl IccsCode {
    pub fn new(code: &str) -> Result<Self, ParseValueError> {
        let t = code.trim();
        if is_valid(t) {
            Ok(IccsCode(t.to_owned()))
        } else {
            Err(ParseValueError::new("ICCS code", code, VALID))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The level-1 section, 1 to 11; 0 for an unchecked decoded value.
    pub fn section(&self) -> u8 {
        section_of(&self.0).unwrap_or(0)
    }

    /// The title of the level-1 section ("unknown section" for an unchecked
    /// decoded value, so display code never has to handle an error).
    pub fn section_name(&self) -> &'static str {
        usize::from(self.section())
            .checked_sub(1)
            .and_then(|i| ICCS_SECTION_NAMES.get(i))
            .copied()
            .unwrap_or("unknown section")
    }

    /// The ICCS level, 1 to 4 (0 for an unchecked decoded value).
    pub fn level(&self) -> u8 {
        match self.0.len() {
            2 => 1,
            4 => 2,
            5 => 3,
            6 => 4,
            _ => 0,
        }
    }

    /// True for a value built here; a decoded value must be checked.
    pub(crate) fn is_valid(&self) -> bool {
        is_valid(&self.0)
    }
}

fn section_of(code: &str) -> Option<u8> {
    match code.as_bytes() {
        [a @ b'0'..=b'9', b @ b'0'..=b'9', ..] => Some((a - b'0') * 10 + (b - b'0')),
        _ => None,
    }
}

fn is_valid(code: &str) -> bool {
    matches!(code.len(), 2 | 4 | 5 | 6)
        && code.bytes().all(|b| b.is_ascii_digit())
        && section_of(code).is_some_and(|s| (1..=11).contains(&s))
}

impl fmt::Display for IccsCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IccsCode {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IccsCode::new(s)
    }
}

impl Serialize for IccsCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IccsCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IccsCode::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_levels_1_to_4() {
        for (code, level) in [
            ("01", 1),
            ("0703", 2),
            ("07031", 3),
            ("070311", 4),
            ("11", 1),
        ] {
            let c = IccsCode::new(code).unwrap();
            assert_eq!(c.level(), level);
            assert_eq!(c.to_string().parse::<IccsCode>().unwrap(), c);
        }
        assert_eq!(IccsCode::new(" 0703 ").unwrap().as_str(), "0703");
    }

    #[test]
    fn rejects() {
        for bad in [
            "", "0", "7", "00", "12", "99", "003", "070", "0703111", "07a1", "+701", "-7", "0٧",
            "07 03",
        ] {
            assert!(IccsCode::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sections() {
        let c = IccsCode::new("07031").unwrap();
        assert_eq!(c.section(), 7);
        assert_eq!(
            c.section_name(),
            "Acts involving fraud, deception or corruption"
        );
        assert_eq!(
            IccsCode::new("11").unwrap().section_name(),
            ICCS_SECTION_NAMES[10]
        );
        assert_eq!(
            IccsCode::new("01").unwrap().section_name(),
            ICCS_SECTION_NAMES[0]
        );
    }

    #[test]
    fn unchecked_values_do_not_panic() {
        for raw in ["", "x", "99", "00", "0é"] {
            let c = IccsCode(raw.to_owned());
            assert!(!c.is_valid());
            let _ = (c.section(), c.section_name(), c.level());
        }
        assert_eq!(IccsCode("99".to_owned()).section_name(), "unknown section");
    }

    #[test]
    fn serde_validates() {
        let c: IccsCode = serde_json::from_str("\"0501\"").unwrap();
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"0501\"");
        assert!(serde_json::from_str::<IccsCode>("\"1201\"").is_err());
    }
}
