//! Spontaneous information and the restrictions that come with it.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::limits::{MAX_BODY_BYTES, MAX_RESTRICTIONS, MAX_RESTRICTION_BYTES, MAX_SUBJECT_BYTES};
use super::text::{self, Lines};
use super::{CaseReferences, InvalidMessage, Language, Offence, Thread};

/// Information sent without a prior request (UNCAC art. 46(4), UNTOC
/// art. 18(4)), e.g. so the receiver can open its own investigation.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpontaneousInformation {
    pub subject: String,
    pub body: String,
    #[serde(default)]
    pub offence: Option<Offence>,
    #[serde(default)]
    pub language: Language,
    #[serde(default)]
    pub case_refs: CaseReferences,
    #[serde(default)]
    pub restrictions: Restrictions,
    #[serde(default)]
    pub thread: Thread,
}

impl SpontaneousInformation {
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        text::required("subject", &self.subject, MAX_SUBJECT_BYTES, Lines::One)?;
        text::required("body", &self.body, MAX_BODY_BYTES, Lines::Many)?;
        if let Some(o) = &self.offence {
            o.validate()?;
        }
        self.language.check()?;
        self.case_refs.validate()?;
        self.restrictions.validate()
    }
}

/// Conditions the sender attaches (UNCAC art. 46(5), UNTOC art. 18(5)): the
/// receiver must comply with a request for confidentiality or restrictions
/// on use, which is why the receiver is shown them and acknowledges them
/// with [`BusinessStatus::Acknowledged`](super::BusinessStatus::Acknowledged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restrictions {
    /// Keep the information confidential, even the fact it was received.
    #[serde(default)]
    pub confidential: bool,
    /// Each one a separate condition, e.g. "not to be used as evidence
    /// without prior consent".
    #[serde(default)]
    pub use_restrictions: Vec<String>,
}

impl Restrictions {
    pub fn is_empty(&self) -> bool {
        !self.confidential && self.use_restrictions.is_empty()
    }

    pub fn validate(&self) -> Result<(), InvalidMessage> {
        let count = self.use_restrictions.len();
        if count > MAX_RESTRICTIONS {
            return Err(InvalidMessage::TooManyRestrictions {
                max: MAX_RESTRICTIONS,
                count,
            });
        }
        for r in &self.use_restrictions {
            text::required(
                "restrictions.use_restrictions",
                r,
                MAX_RESTRICTION_BYTES,
                Lines::Many,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> SpontaneousInformation {
        SpontaneousInformation {
            subject: "Transfers to shell companies".into(),
            body: "Details…\n".into(),
            offence: None,
            language: Language::default(),
            case_refs: CaseReferences::default(),
            restrictions: Restrictions::default(),
            thread: Thread::default(),
        }
    }

    #[test]
    fn restrictions_empty() {
        assert!(Restrictions::default().is_empty());
        assert!(!Restrictions {
            confidential: true,
            use_restrictions: vec![]
        }
        .is_empty());
        assert!(!Restrictions {
            confidential: false,
            use_restrictions: vec!["intelligence only".into()]
        }
        .is_empty());
    }

    #[test]
    fn restriction_limits() {
        let mut i = info();
        i.restrictions.use_restrictions = vec!["r".into(); MAX_RESTRICTIONS];
        assert!(i.validate().is_ok());
        i.restrictions.use_restrictions.push("one too many".into());
        assert_eq!(
            i.validate(),
            Err(InvalidMessage::TooManyRestrictions {
                max: MAX_RESTRICTIONS,
                count: MAX_RESTRICTIONS + 1
            })
        );
        i.restrictions.use_restrictions = vec!["".into()];
        assert!(matches!(i.validate(), Err(InvalidMessage::Empty { .. })));
        i.restrictions.use_restrictions = vec!["x".repeat(MAX_RESTRICTION_BYTES + 1)];
        assert!(matches!(i.validate(), Err(InvalidMessage::TooLong { .. })));
    }

    #[test]
    fn serde_defaults_optional_parts() {
        let i: SpontaneousInformation =
            serde_json::from_str(r#"{"subject":"s","body":"b"}"#).unwrap();
        assert_eq!(i.language.as_str(), "en");
        assert!(i.restrictions.is_empty());
        assert!(i.validate().is_ok());
        assert!(serde_json::from_str::<SpontaneousInformation>(
            r#"{"subject":"s","body":"b","restriction":{}}"#
        )
        .is_err());
    }
}
