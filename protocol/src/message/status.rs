//! Business status of a request (or acknowledgement of information).

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use super::limits::{MAX_NOTE_BYTES, MAX_REFERENCE_BYTES};
use super::text::{self, Lines};
use super::{Date, InvalidMessage};
use crate::ids::MessageId;

/// Where a request stands, said by the side that can know it. This is the
/// business acknowledgement, distinct from the signed delivery receipt:
/// a receipt proves the node stored the message, a status says what the
/// authority did with it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusUpdate {
    /// The request (or spontaneous information) this status is about.
    pub regarding: MessageId,
    pub status: BusinessStatus,
    #[serde(default)]
    pub note: Option<String>,
}

impl StatusUpdate {
    pub fn validate(&self) -> Result<(), InvalidMessage> {
        self.status.validate()?;
        text::optional("note", self.note.as_deref(), MAX_NOTE_BYTES, Lines::Many)
    }
}

/// The status values. All but [`Withdrawn`](Self::Withdrawn) are sent by
/// the receiving (requested) authority; `Withdrawn` by the requester.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BusinessStatus {
    /// Registered under the receiver's own case reference.
    Registered {
        reference: String,
    },
    InExecution,
    /// Execution cannot proceed without more from the requester (UNCAC
    /// art. 46(16)).
    AdditionalInformationNeeded {
        details: String,
    },
    PartiallyExecuted,
    Executed,
    /// Refusal must give reasons (UNCAC art. 46(23)).
    Refused {
        grounds: String,
    },
    /// Postponed, e.g. because execution would interfere with an ongoing
    /// investigation (UNCAC art. 46(25)).
    Postponed {
        reason: String,
        until: Option<Date>,
    },
    /// The requester no longer needs execution.
    Withdrawn,
    /// The receiver has seen spontaneous information and accepts its
    /// restrictions (UNCAC art. 46(5)).
    Acknowledged,
}

impl BusinessStatus {
    /// The CLI names, in declaration order.
    pub const NAMES: &[&str] = &[
        "registered",
        "in-execution",
        "additional-information-needed",
        "partially-executed",
        "executed",
        "refused",
        "postponed",
        "withdrawn",
        "acknowledged",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            BusinessStatus::Registered { .. } => "registered",
            BusinessStatus::InExecution => "in-execution",
            BusinessStatus::AdditionalInformationNeeded { .. } => "additional-information-needed",
            BusinessStatus::PartiallyExecuted => "partially-executed",
            BusinessStatus::Executed => "executed",
            BusinessStatus::Refused { .. } => "refused",
            BusinessStatus::Postponed { .. } => "postponed",
            BusinessStatus::Withdrawn => "withdrawn",
            BusinessStatus::Acknowledged => "acknowledged",
        }
    }

    /// Final statuses close the matter: nothing may follow them.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            BusinessStatus::Executed
                | BusinessStatus::Refused { .. }
                | BusinessStatus::Withdrawn
                | BusinessStatus::Acknowledged
        )
    }

    /// Whether the requester (the sender of the original message) sends this
    /// status; otherwise the receiving authority does.
    pub fn sent_by_requester(&self) -> bool {
        matches!(self, BusinessStatus::Withdrawn)
    }

    /// Whether this status may follow `previous`, the latest status of the
    /// same request (`None` if there is none yet). The rules:
    ///
    /// * nothing follows a final status (executed, refused, withdrawn,
    ///   acknowledged);
    /// * `registered` and `acknowledged` are only ever the first status:
    ///   registration is the receiver's first act and gives the reference
    ///   every later status relates to, so it is not repeated (asking for
    ///   more information happens *after* registration);
    /// * `refused` and `withdrawn` may come first or after any non-final
    ///   status: a request can be refused outright, or withdrawn before the
    ///   receiver says anything;
    /// * in-execution, additional-information-needed, partially-executed,
    ///   executed and postponed need an earlier (non-final) status, i.e. the
    ///   request must have been registered, and may follow one another in
    ///   any order (execution resumes after more information or a
    ///   postponement; partial results may repeat).
    ///
    /// Not checked here, because they need context this value lacks: that
    /// `acknowledged` is only for spontaneous information (and the others
    /// only for requests), and that the requester sends `withdrawn` and the
    /// receiver everything else ([`sent_by_requester`](Self::sent_by_requester)).
    pub fn may_follow(&self, previous: Option<&BusinessStatus>) -> Result<(), InvalidTransition> {
        let err = |reason| {
            Err(InvalidTransition {
                from: previous.map(BusinessStatus::name),
                to: self.name(),
                reason,
            })
        };
        match previous {
            Some(p) if p.is_final() => err("the earlier status is final"),
            Some(_) => match self {
                BusinessStatus::Registered { .. } => err("registration is only the first status"),
                BusinessStatus::Acknowledged => err("acknowledgement is only the first status"),
                _ => Ok(()),
            },
            None => match self {
                BusinessStatus::Registered { .. }
                | BusinessStatus::Acknowledged
                | BusinessStatus::Refused { .. }
                | BusinessStatus::Withdrawn => Ok(()),
                _ => err("the request must be registered first"),
            },
        }
    }

    pub fn validate(&self) -> Result<(), InvalidMessage> {
        match self {
            BusinessStatus::Registered { reference } => text::required(
                "status.reference",
                reference,
                MAX_REFERENCE_BYTES,
                Lines::One,
            ),
            BusinessStatus::AdditionalInformationNeeded { details } => {
                text::required("status.details", details, MAX_NOTE_BYTES, Lines::Many)
            }
            BusinessStatus::Refused { grounds } => {
                text::required("status.grounds", grounds, MAX_NOTE_BYTES, Lines::Many)
            }
            BusinessStatus::Postponed { reason, until } => {
                text::required("status.reason", reason, MAX_NOTE_BYTES, Lines::Many)?;
                match until {
                    Some(d) => d.check("status.until"),
                    None => Ok(()),
                }
            }
            BusinessStatus::InExecution
            | BusinessStatus::PartiallyExecuted
            | BusinessStatus::Executed
            | BusinessStatus::Withdrawn
            | BusinessStatus::Acknowledged => Ok(()),
        }
    }
}

/// A status that may not follow the previous one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status {to} may not follow {}: {reason}", from_name(.from))]
pub struct InvalidTransition {
    /// The previous status, `None` if there was none.
    pub from: Option<&'static str>,
    pub to: &'static str,
    pub reason: &'static str,
}

fn from_name(from: &Option<&'static str>) -> String {
    match from {
        Some(f) => format!("status {f}"),
        None => "no status (it would be the first)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<BusinessStatus> {
        vec![
            BusinessStatus::Registered {
                reference: "R-1".into(),
            },
            BusinessStatus::InExecution,
            BusinessStatus::AdditionalInformationNeeded {
                details: "d".into(),
            },
            BusinessStatus::PartiallyExecuted,
            BusinessStatus::Executed,
            BusinessStatus::Refused {
                grounds: "g".into(),
            },
            BusinessStatus::Postponed {
                reason: "r".into(),
                until: Some(Date::new(2027, 1, 31).unwrap()),
            },
            BusinessStatus::Withdrawn,
            BusinessStatus::Acknowledged,
        ]
    }

    fn registered() -> BusinessStatus {
        BusinessStatus::Registered {
            reference: "R-1".into(),
        }
    }

    #[test]
    fn names_match_list_and_serde() {
        let all = all();
        assert_eq!(all.len(), BusinessStatus::NAMES.len());
        for (s, name) in all.iter().zip(BusinessStatus::NAMES) {
            assert_eq!(s.name(), *name);
            assert!(s.validate().is_ok());
            let j = serde_json::to_value(s).unwrap();
            assert_eq!(j["status"], *name);
            assert_eq!(serde_json::from_value::<BusinessStatus>(j).unwrap(), *s);
        }
    }

    #[test]
    fn finals() {
        let finals: Vec<&str> = all()
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.name())
            .collect();
        assert_eq!(finals, ["executed", "refused", "withdrawn", "acknowledged"]);
    }

    #[test]
    fn normal_path() {
        let reg = registered();
        assert!(reg.may_follow(None).is_ok());
        assert!(BusinessStatus::InExecution.may_follow(Some(&reg)).is_ok());
        assert!(BusinessStatus::Executed
            .may_follow(Some(&BusinessStatus::InExecution))
            .is_ok());
    }

    #[test]
    fn nothing_follows_a_final_status() {
        for prev in all().into_iter().filter(BusinessStatus::is_final) {
            for next in all() {
                let e = next.may_follow(Some(&prev)).unwrap_err();
                assert_eq!(e.from, Some(prev.name()));
                assert_eq!(e.to, next.name());
            }
        }
        let e = registered()
            .may_follow(Some(&BusinessStatus::Executed))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "status registered may not follow status executed: the earlier status is final"
        );
    }

    #[test]
    fn first_statuses() {
        let firsts: Vec<&str> = all()
            .iter()
            .filter(|s| s.may_follow(None).is_ok())
            .map(|s| s.name())
            .collect();
        assert_eq!(
            firsts,
            ["registered", "refused", "withdrawn", "acknowledged"]
        );
        let e = BusinessStatus::Executed.may_follow(None).unwrap_err();
        assert_eq!(e.from, None);
        assert!(e.to_string().contains("registered first"), "{e}");
    }

    #[test]
    fn registered_and_acknowledged_only_first() {
        for prev in all().into_iter().filter(|s| !s.is_final()) {
            assert!(registered().may_follow(Some(&prev)).is_err());
            assert!(BusinessStatus::Acknowledged
                .may_follow(Some(&prev))
                .is_err());
            assert!(BusinessStatus::Withdrawn.may_follow(Some(&prev)).is_ok());
            assert!(BusinessStatus::Refused {
                grounds: "g".into()
            }
            .may_follow(Some(&prev))
            .is_ok());
        }
    }

    #[test]
    fn execution_resumes_after_more_information() {
        let ain = BusinessStatus::AdditionalInformationNeeded {
            details: "d".into(),
        };
        assert!(ain.may_follow(Some(&registered())).is_ok());
        assert!(BusinessStatus::InExecution.may_follow(Some(&ain)).is_ok());
        assert!(BusinessStatus::PartiallyExecuted
            .may_follow(Some(&BusinessStatus::PartiallyExecuted))
            .is_ok());
    }

    #[test]
    fn validate_rejects_bad_fields() {
        let bad = [
            BusinessStatus::Registered {
                reference: "".into(),
            },
            BusinessStatus::Registered {
                reference: "a\nb".into(),
            },
            BusinessStatus::Refused {
                grounds: " ".into(),
            },
            BusinessStatus::AdditionalInformationNeeded {
                details: "x".repeat(MAX_NOTE_BYTES + 1),
            },
            BusinessStatus::Postponed {
                reason: "r\0".into(),
                until: None,
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
        let u = StatusUpdate {
            regarding: MessageId([0; 16]),
            status: BusinessStatus::Executed,
            note: Some(String::new()),
        };
        assert_eq!(u.validate(), Err(InvalidMessage::Empty { field: "note" }));
    }
}
