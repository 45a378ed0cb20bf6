//! ISO 3166-1 alpha-2 country codes: how operators address peers (`--to CC`).

use std::fmt;
use std::str::FromStr;

use crate::error::excerpt;

/// Two ASCII uppercase letters, e.g. `FR`. Lowercase input is normalised.
///
/// Only the shape is checked, not ISO's list of assigned codes, so the
/// user-assigned codes (`XA`…`XZ`, `AA`, `ZZ`, …) work for tests and demos.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

/// What to tell an operator whose country code was refused.
pub(crate) const COUNTRY_FIX: &str = "write the two letters, e.g. \"FR\" for France";

/// Why a string is not a country code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a two-letter country code (ISO 3166-1 alpha-2)")]
pub struct ParseCountryError {
    input: String,
}

impl CountryCode {
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl FromStr for CountryCode {
    type Err = ParseCountryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => Ok(CountryCode([
                a.to_ascii_uppercase(),
                b.to_ascii_uppercase(),
            ])),
            _ => Err(ParseCountryError { input: excerpt(s) }),
        }
    }
}

impl TryFrom<&str> for CountryCode {
    type Error = ParseCountryError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

comity_protocol::serde_as_text!(CountryCode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_normalises() {
        assert_eq!("fr".parse::<CountryCode>().unwrap().as_str(), "FR");
        assert_eq!(" Bo ".parse::<CountryCode>().unwrap().to_string(), "BO");
    }

    #[test]
    fn refuses_other_shapes() {
        for bad in ["", "F", "FRA", "Arcadia", "F1", "É1", "ÉÉ", "12"] {
            let e = bad.parse::<CountryCode>().unwrap_err();
            assert!(e.to_string().contains("ISO 3166-1 alpha-2"), "{e}");
        }
    }

    #[test]
    fn serde_is_the_string() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct T {
            c: CountryCode,
        }
        let t: T = toml::from_str("c = \"ar\"").unwrap();
        assert_eq!(toml::to_string(&t).unwrap().trim(), "c = \"AR\"");
        assert!(toml::from_str::<T>("c = \"ARC\"").is_err());
    }
}
