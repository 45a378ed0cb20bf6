//! The legal basis a request relies on.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::limits::MAX_NAME_BYTES;
use super::parse::{keyword, name_text, prefixed};
use super::text::{self, Lines};
use super::{InvalidMessage, ParseValueError};

/// The instrument under which cooperation is sought. The requested State
/// checks its obligations against it, so it is a typed field rather than
/// prose. The multilateral articles are named; anything else is a
/// named treaty, reciprocity (comity without a treaty) or other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
pub enum LegalBasis {
    /// UN Convention against Transnational Organized Crime, art. 16 (extradition).
    #[serde(rename = "untoc-16")]
    UntocArt16,
    /// UNTOC art. 18 (mutual legal assistance).
    #[serde(rename = "untoc-18")]
    UntocArt18,
    /// UN Convention against Corruption, art. 44 (extradition).
    #[serde(rename = "uncac-44")]
    UncacArt44,
    /// UNCAC art. 46 (mutual legal assistance).
    #[serde(rename = "uncac-46")]
    UncacArt46,
    /// 1988 UN Drug Convention, art. 6 (extradition).
    #[serde(rename = "1988-6")]
    Vienna1988Art6,
    /// 1988 UN Drug Convention, art. 7 (mutual legal assistance).
    #[serde(rename = "1988-7")]
    Vienna1988Art7,
    /// A bilateral or regional treaty, by name.
    #[serde(rename = "treaty")]
    Treaty(String),
    #[serde(rename = "reciprocity")]
    Reciprocity,
    #[serde(rename = "other")]
    Other(String),
}

impl LegalBasis {
    /// The CLI values, for help texts and error messages.
    pub const NAMES: &[&str] = &[
        "untoc-16",
        "untoc-18",
        "uncac-44",
        "uncac-46",
        "1988-6",
        "1988-7",
        "treaty:NAME",
        "reciprocity",
        "other:TEXT",
    ];

    const FIXED: [LegalBasis; 7] = [
        LegalBasis::UntocArt16,
        LegalBasis::UntocArt18,
        LegalBasis::UncacArt44,
        LegalBasis::UncacArt46,
        LegalBasis::Vienna1988Art6,
        LegalBasis::Vienna1988Art7,
        LegalBasis::Reciprocity,
    ];

    /// The CLI name, without the text of `treaty:` / `other:`.
    pub fn name(&self) -> &'static str {
        match self {
            LegalBasis::UntocArt16 => "untoc-16",
            LegalBasis::UntocArt18 => "untoc-18",
            LegalBasis::UncacArt44 => "uncac-44",
            LegalBasis::UncacArt46 => "uncac-46",
            LegalBasis::Vienna1988Art6 => "1988-6",
            LegalBasis::Vienna1988Art7 => "1988-7",
            LegalBasis::Treaty(_) => "treaty",
            LegalBasis::Reciprocity => "reciprocity",
            LegalBasis::Other(_) => "other",
        }
    }

    /// For people: what the instrument is and what the article covers.
    pub fn description(&self) -> String {
        match self {
            LegalBasis::UntocArt16 => "UNTOC art. 16 (extradition)".to_owned(),
            LegalBasis::UntocArt18 => "UNTOC art. 18 (mutual legal assistance)".to_owned(),
            LegalBasis::UncacArt44 => "UNCAC art. 44 (extradition)".to_owned(),
            LegalBasis::UncacArt46 => "UNCAC art. 46 (mutual legal assistance)".to_owned(),
            LegalBasis::Vienna1988Art6 => "1988 Drug Convention art. 6 (extradition)".to_owned(),
            LegalBasis::Vienna1988Art7 => {
                "1988 Drug Convention art. 7 (mutual legal assistance)".to_owned()
            }
            LegalBasis::Treaty(name) => format!("treaty: {name}"),
            LegalBasis::Reciprocity => "reciprocity (no treaty)".to_owned(),
            LegalBasis::Other(text) => format!("other: {text}"),
        }
    }

    pub fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            LegalBasis::Treaty(name) => {
                text::required("legal_basis.treaty", name, MAX_NAME_BYTES, Lines::One)
            }
            LegalBasis::Other(text) => {
                text::required("legal_basis.other", text, MAX_NAME_BYTES, Lines::One)
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for LegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LegalBasis::Treaty(name) => write!(f, "treaty:{name}"),
            LegalBasis::Other(text) => write!(f, "other:{text}"),
            fixed => f.write_str(fixed.name()),
        }
    }
}

impl FromStr for LegalBasis {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const WHAT: &str = "legal basis";
        let valid = Self::NAMES.join(", ");
        if let Some(text) = prefixed(s, "treaty") {
            return name_text(WHAT, s, text, &valid).map(LegalBasis::Treaty);
        }
        if let Some(text) = prefixed(s, "other") {
            return name_text(WHAT, s, text, &valid).map(LegalBasis::Other);
        }
        let k = keyword(s);
        Self::FIXED
            .into_iter()
            .find(|b| b.name() == k)
            .ok_or_else(|| ParseValueError::new(WHAT, s, valid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<LegalBasis> {
        let mut v = LegalBasis::FIXED.to_vec();
        v.push(LegalBasis::Treaty(
            "European Convention on Extradition 1957".into(),
        ));
        v.push(LegalBasis::Other("Memorandum of understanding".into()));
        v
    }

    #[test]
    fn round_trips() {
        for b in all() {
            let s = b.to_string();
            assert_eq!(s.parse::<LegalBasis>().unwrap(), b, "{s}");
            let j = serde_json::to_string(&b).unwrap();
            assert_eq!(serde_json::from_str::<LegalBasis>(&j).unwrap(), b, "{j}");
        }
        for name in [
            "untoc-16",
            "untoc-18",
            "uncac-44",
            "uncac-46",
            "1988-6",
            "1988-7",
            "reciprocity",
        ] {
            assert_eq!(name.parse::<LegalBasis>().unwrap().to_string(), name);
        }
    }

    #[test]
    fn case_insensitive_and_trimmed() {
        assert_eq!(
            " UNCAC-46 ".parse::<LegalBasis>().unwrap(),
            LegalBasis::UncacArt46
        );
        assert_eq!(
            "Treaty: Ljubljana-The Hague "
                .parse::<LegalBasis>()
                .unwrap(),
            LegalBasis::Treaty("Ljubljana-The Hague".into())
        );
    }

    #[test]
    fn rejects_and_lists_valid() {
        let e = "uncac-47".parse::<LegalBasis>().unwrap_err();
        assert_eq!(e.what, "legal basis");
        assert!(
            e.valid.contains("uncac-46") && e.valid.contains("treaty:NAME"),
            "{e}"
        );
        assert!("treaty:".parse::<LegalBasis>().is_err());
        assert!("treaty:  ".parse::<LegalBasis>().is_err());
        assert!("other:".parse::<LegalBasis>().is_err());
        assert!(format!("treaty:{}", "x".repeat(257))
            .parse::<LegalBasis>()
            .is_err());
        assert!("treaty:a\u{1b}b".parse::<LegalBasis>().is_err());
        assert!("treaty".parse::<LegalBasis>().is_err());
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            LegalBasis::UncacArt46.description(),
            "UNCAC art. 46 (mutual legal assistance)"
        );
        assert_eq!(LegalBasis::Treaty("X".into()).description(), "treaty: X");
    }
}
