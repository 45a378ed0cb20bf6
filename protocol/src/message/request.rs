//! Formal requests for cooperation.

use std::fmt;
use std::str::FromStr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::limits::{MAX_BODY_BYTES, MAX_NAME_BYTES, MAX_SUBJECT_BYTES};
use super::parse::{keyword, name_text, prefixed};
use super::text::{self, Lines};
use super::{
    CaseReferences, Date, InvalidMessage, Language, LegalBasis, Offence, ParseValueError, Thread,
};

/// A formal request (UNCAC art. 46(13)-(15): in writing, through the
/// central authority, stating its legal basis, the offence and the facts).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub request_type: RequestType,
    pub legal_basis: LegalBasis,
    /// Required where the request is about a person's liability for a
    /// specific offence (see [`RequestType::requires_offence`]); optional
    /// for, say, service of documents.
    #[serde(default)]
    pub offence: Option<Offence>,
    #[serde(default)]
    pub urgency: Urgency,
    /// The date by which the requesting State needs execution, if any.
    #[serde(default)]
    pub deadline: Option<Date>,
    #[serde(default)]
    pub language: Language,
    #[serde(default)]
    pub case_refs: CaseReferences,
    pub subject: String,
    pub body: String,
    #[serde(default)]
    pub thread: Thread,
}

impl Request {
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        self.request_type.validate()?;
        self.legal_basis.validate()?;
        match &self.offence {
            Some(o) => o.validate()?,
            None if self.request_type.requires_offence() => {
                return Err(InvalidMessage::OffenceRequired {
                    request_type: self.request_type.name(),
                })
            }
            None => {}
        }
        if let Some(d) = &self.deadline {
            d.check("deadline")?;
        }
        self.language.check()?;
        self.case_refs.validate()?;
        text::required("subject", &self.subject, MAX_SUBJECT_BYTES, Lines::One)?;
        text::required("body", &self.body, MAX_BODY_BYTES, Lines::Many)
    }
}

/// What is asked for. It decides which office handles the request and which
/// rules apply (extradition and MLA have different articles and grounds for
/// refusal), so it is typed rather than left to the subject line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Encode, Decode, Serialize, Deserialize)]
pub enum RequestType {
    #[serde(rename = "mla")]
    MutualLegalAssistance,
    #[serde(rename = "extradition")]
    Extradition,
    #[serde(rename = "provisional-arrest")]
    ProvisionalArrest,
    #[serde(rename = "transfer-of-sentenced-persons")]
    TransferOfSentencedPersons,
    #[serde(rename = "transfer-of-proceedings")]
    TransferOfProceedings,
    #[serde(rename = "freezing")]
    FreezingOrSeizure,
    #[serde(rename = "confiscation")]
    Confiscation,
    #[serde(rename = "asset-return")]
    AssetReturn,
    #[serde(rename = "law-enforcement")]
    LawEnforcementCooperation,
    #[serde(rename = "joint-investigation")]
    JointInvestigation,
    #[serde(rename = "videoconference")]
    VideoconferenceHearing,
    #[serde(rename = "service-of-documents")]
    ServiceOfDocuments,
    #[serde(rename = "other")]
    Other(String),
}

impl RequestType {
    /// The CLI values, for help texts and error messages.
    pub const NAMES: &[&str] = &[
        "mla",
        "extradition",
        "provisional-arrest",
        "transfer-of-sentenced-persons",
        "transfer-of-proceedings",
        "freezing",
        "confiscation",
        "asset-return",
        "law-enforcement",
        "joint-investigation",
        "videoconference",
        "service-of-documents",
        "other:TEXT",
    ];

    const FIXED: [RequestType; 12] = [
        RequestType::MutualLegalAssistance,
        RequestType::Extradition,
        RequestType::ProvisionalArrest,
        RequestType::TransferOfSentencedPersons,
        RequestType::TransferOfProceedings,
        RequestType::FreezingOrSeizure,
        RequestType::Confiscation,
        RequestType::AssetReturn,
        RequestType::LawEnforcementCooperation,
        RequestType::JointInvestigation,
        RequestType::VideoconferenceHearing,
        RequestType::ServiceOfDocuments,
    ];

    /// The CLI name, without the text of `other:`.
    /// Extradition, provisional arrest and the transfer of proceedings are
    /// decided offence by offence (dual criminality, speciality): the
    /// requested State cannot act on them without knowing the offence.
    pub fn requires_offence(&self) -> bool {
        matches!(
            self,
            RequestType::Extradition
                | RequestType::ProvisionalArrest
                | RequestType::TransferOfProceedings
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            RequestType::MutualLegalAssistance => "mla",
            RequestType::Extradition => "extradition",
            RequestType::ProvisionalArrest => "provisional-arrest",
            RequestType::TransferOfSentencedPersons => "transfer-of-sentenced-persons",
            RequestType::TransferOfProceedings => "transfer-of-proceedings",
            RequestType::FreezingOrSeizure => "freezing",
            RequestType::Confiscation => "confiscation",
            RequestType::AssetReturn => "asset-return",
            RequestType::LawEnforcementCooperation => "law-enforcement",
            RequestType::JointInvestigation => "joint-investigation",
            RequestType::VideoconferenceHearing => "videoconference",
            RequestType::ServiceOfDocuments => "service-of-documents",
            RequestType::Other(_) => "other",
        }
    }

    /// For people, e.g. "freezing or seizure".
    pub fn description(&self) -> String {
        let s = match self {
            RequestType::MutualLegalAssistance => "mutual legal assistance",
            RequestType::Extradition => "extradition",
            RequestType::ProvisionalArrest => "provisional arrest",
            RequestType::TransferOfSentencedPersons => "transfer of sentenced persons",
            RequestType::TransferOfProceedings => "transfer of criminal proceedings",
            RequestType::FreezingOrSeizure => "freezing or seizure",
            RequestType::Confiscation => "confiscation",
            RequestType::AssetReturn => "return of assets",
            RequestType::LawEnforcementCooperation => "law-enforcement cooperation",
            RequestType::JointInvestigation => "joint investigation",
            RequestType::VideoconferenceHearing => "hearing by videoconference",
            RequestType::ServiceOfDocuments => "service of judicial documents",
            RequestType::Other(text) => return format!("other: {text}"),
        };
        s.to_owned()
    }

    pub fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            RequestType::Other(text) => {
                text::required("request_type.other", text, MAX_NAME_BYTES, Lines::One)
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for RequestType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestType::Other(text) => write!(f, "other:{text}"),
            fixed => f.write_str(fixed.name()),
        }
    }
}

impl FromStr for RequestType {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const WHAT: &str = "request type";
        let valid = Self::NAMES.join(", ");
        if let Some(text) = prefixed(s, "other") {
            return name_text(WHAT, s, text, &valid).map(RequestType::Other);
        }
        let k = keyword(s);
        Self::FIXED
            .into_iter()
            .find(|t| t.name() == k)
            .ok_or_else(|| ParseValueError::new(WHAT, s, valid))
    }
}

/// Urgent means "expeditious handling" (UNCAC art. 46(24), UNTOC 18(24)):
/// e.g. a suspect about to leave, or assets about to be moved.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Encode,
    Decode,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    #[default]
    Normal,
    Urgent,
}

impl Urgency {
    pub const NAMES: &[&str] = &["normal", "urgent"];

    pub fn name(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Urgent => "urgent",
        }
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Urgency {
    type Err = ParseValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match keyword(s).as_str() {
            "normal" => Ok(Urgency::Normal),
            "urgent" => Ok(Urgency::Urgent),
            _ => Err(ParseValueError::one_of("urgency", s, Self::NAMES)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_type_round_trips() {
        let mut all = RequestType::FIXED.to_vec();
        all.push(RequestType::Other("Asset tracing: Step 2".into()));
        assert_eq!(all.len(), RequestType::NAMES.len());
        for (t, name) in all.iter().zip(RequestType::NAMES) {
            let s = t.to_string();
            if !matches!(t, RequestType::Other(_)) {
                assert_eq!(s, *name);
            }
            assert_eq!(s.parse::<RequestType>().unwrap(), *t, "{s}");
            assert_eq!(
                s.to_uppercase().parse::<RequestType>().unwrap().name(),
                t.name()
            );
            let j = serde_json::to_string(t).unwrap();
            assert_eq!(serde_json::from_str::<RequestType>(&j).unwrap(), *t, "{j}");
            assert!(t.validate().is_ok());
            assert!(!t.description().is_empty());
        }
        assert_eq!(
            serde_json::to_string(&RequestType::FreezingOrSeizure).unwrap(),
            "\"freezing\""
        );
    }

    #[test]
    fn case_insensitive() {
        assert_eq!(
            " MLA ".parse::<RequestType>().unwrap(),
            RequestType::MutualLegalAssistance
        );
        assert_eq!(
            "OTHER:Keep Case".parse::<RequestType>().unwrap(),
            RequestType::Other("Keep Case".into())
        );
    }

    #[test]
    fn unknown_lists_valid_values() {
        let e = "mlaa".parse::<RequestType>().unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(r#"unknown request type "mlaa"; valid values: mla, extradition, "#),
            "{msg}"
        );
        assert!(msg.ends_with("other:TEXT"), "{msg}");
        assert!("other:".parse::<RequestType>().is_err());
        assert!("other: \t".parse::<RequestType>().is_err());
    }

    #[test]
    fn other_text_is_validated() {
        assert!(RequestType::Other(" ".into()).validate().is_err());
        assert!(RequestType::Other("a\nb".into()).validate().is_err());
        assert!(RequestType::Other("x".repeat(MAX_NAME_BYTES + 1))
            .validate()
            .is_err());
    }

    #[test]
    fn urgency() {
        assert_eq!(Urgency::default(), Urgency::Normal);
        for u in [Urgency::Normal, Urgency::Urgent] {
            assert_eq!(u.to_string().parse::<Urgency>().unwrap(), u);
            assert_eq!(
                serde_json::to_string(&u).unwrap(),
                format!("\"{}\"", u.name())
            );
        }
        assert_eq!("URGENT".parse::<Urgency>().unwrap(), Urgency::Urgent);
        let e = "soon".parse::<Urgency>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown urgency "soon"; valid values: normal, urgent"#
        );
    }
}
