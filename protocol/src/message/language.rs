//! The language a message is written in.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::limits::MAX_LANGUAGE_BYTES;
use super::{InvalidMessage, ParseValueError};

const VALID: &str = "a language tag such as en, fr, es-419 or zh-Hant-TW (2-3 letters, \
                     then -subtags of 2-8 letters or digits, at most 35 characters)";

/// A BCP 47-style language tag. The receiving authority needs it to route a
/// message to translation (UNCAC art. 46(14): requests in a language
/// acceptable to the requested State).
///
/// Stored in canonical case (`en`, `zh-Hant-TW`, `es-419`) so that equal
/// languages compare equal; extensions and private-use (`-x-`) singletons
/// are not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Language(String);

impl Language {
    pub fn new(tag: &str) -> Result<Self, ParseValueError> {
        canonical(tag.trim())
            .map(Language)
            .ok_or_else(|| ParseValueError::new("language", tag, VALID))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The primary language subtag, e.g. `zh` for `zh-Hant-TW`.
    pub fn primary(&self) -> &str {
        self.0.split('-').next().unwrap_or_default()
    }

    /// True for a value built here; a decoded value must be checked.
    pub(crate) fn is_valid(&self) -> bool {
        canonical(&self.0).is_some_and(|c| c == self.0)
    }

    pub(crate) fn check(&self) -> Result<(), InvalidMessage> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(InvalidMessage::BadLanguage {
                tag: super::parse::truncate(&self.0),
            })
        }
    }
}

/// The canonical form of a syntactically valid tag: primary lowercase,
/// 2-letter (region) subtags uppercase, 4-letter (script) subtags titlecase,
/// everything else lowercase.
fn canonical(tag: &str) -> Option<String> {
    if tag.is_empty() || tag.len() > MAX_LANGUAGE_BYTES || !tag.is_ascii() {
        return None;
    }
    let mut parts = tag.split('-');
    let primary = parts.next()?;
    if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let mut out = primary.to_ascii_lowercase();
    for sub in parts {
        if !(2..=8).contains(&sub.len()) || !sub.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        out.push('-');
        let alpha = sub.bytes().all(|b| b.is_ascii_alphabetic());
        match sub.len() {
            2 if alpha => out.push_str(&sub.to_ascii_uppercase()),
            4 if alpha => {
                let lower = sub.to_ascii_lowercase();
                let (first, rest) = lower.split_at(1);
                out.push_str(&first.to_ascii_uppercase());
                out.push_str(rest);
            }
            _ => out.push_str(&sub.to_ascii_lowercase()),
        }
    }
    Some(out)
}

impl Default for Language {
    /// English, the most common working language between central authorities.
    fn default() -> Self {
        Language("en".to_owned())
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Language {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Language::new(s)
    }
}

impl Serialize for Language {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Language {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Language::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_canonicalises() {
        for (given, want) in [
            ("en", "en"),
            ("EN", "en"),
            (" fr ", "fr"),
            ("en-gb", "en-GB"),
            ("zh-hant-tw", "zh-Hant-TW"),
            ("es-419", "es-419"),
            ("sr-LATN", "sr-Latn"),
            ("de-ch-1996", "de-CH-1996"),
            ("sgn-ase", "sgn-ase"),
        ] {
            let l = Language::new(given).unwrap();
            assert_eq!(l.as_str(), want, "{given}");
            assert!(l.is_valid());
            assert_eq!(l.to_string().parse::<Language>().unwrap(), l);
        }
        assert_eq!(Language::new("zh-Hant").unwrap().primary(), "zh");
        assert_eq!(Language::default().as_str(), "en");
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "e",
            "engl",
            "e1",
            "en-",
            "en--gb",
            "en-x-foo",
            "en-toolongsub",
            "en_GB",
            "én",
            "en gb",
            "en-GB-oed-abcdefgh-abcdefgh-abcdefgh",
        ] {
            assert!(Language::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn non_canonical_decoded_value_is_invalid() {
        assert!(!Language("EN".to_owned()).is_valid());
        assert!(!Language("xx-".to_owned()).is_valid());
    }

    #[test]
    fn serde_validates() {
        let l: Language = serde_json::from_str("\"pt-br\"").unwrap();
        assert_eq!(l.as_str(), "pt-BR");
        assert_eq!(serde_json::to_string(&l).unwrap(), "\"pt-BR\"");
        assert!(serde_json::from_str::<Language>("\"p\"").is_err());
    }
}
