//! Proptest strategies producing valid message bodies of every kind.
//!
//! Everything generated passes `Body::validate`: text has no control
//! characters (except newline, tab, carriage return in multi-line fields),
//! is never blank, and stays within `limits`.

use comity_protocol::message::{
    Body, BusinessStatus, CaseReferences, Consultation, Date, IccsCode, Language, LegalBasis,
    Offence, Reply, Request, RequestType, Restrictions, SpontaneousInformation, StatusUpdate,
    Thread, Urgency,
};
use comity_protocol::MessageId;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// One line of unicode text, 1 to 40 characters, not blank.
pub fn one_line() -> impl Strategy<Value = String> {
    "\\PC{1,40}".prop_filter("not blank", |s| !s.trim().is_empty())
}

/// Multi-line unicode text, not blank.
pub fn multi_line() -> impl Strategy<Value = String> {
    "[\\PC\n\t\r]{1,200}".prop_filter("not blank", |s| !s.trim().is_empty())
}

pub fn any_message_id() -> impl Strategy<Value = MessageId> {
    any::<[u8; 16]>().prop_map(MessageId)
}

pub fn any_date() -> impl Strategy<Value = Date> {
    (1u16..=9999, 1u8..=12, 1u8..=31)
        .prop_filter_map("not a calendar date", |(y, m, d)| Date::new(y, m, d).ok())
}

pub fn any_language() -> impl Strategy<Value = Language> {
    let fixed = prop_oneof![
        Just("en"),
        Just("fr"),
        Just("es-419"),
        Just("zh-Hant-TW"),
        Just("sr-Latn"),
        Just("ar")
    ]
    .prop_map(str::to_owned);
    let generated = "[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8}){0,2}";
    prop_oneof![fixed, generated]
        .prop_map(|s| Language::new(&s).expect("generated language tag is valid"))
}

pub fn any_iccs() -> impl Strategy<Value = IccsCode> {
    (
        1u8..=11,
        prop_oneof![Just(String::new()), "[0-9]{2}", "[0-9]{3}", "[0-9]{4}"],
    )
        .prop_map(|(section, rest)| {
            IccsCode::new(&format!("{section:02}{rest}")).expect("generated ICCS code is valid")
        })
}

pub fn any_offence() -> impl Strategy<Value = Offence> {
    (multi_line(), any_iccs()).prop_map(|(description, iccs)| Offence { description, iccs })
}

pub fn any_request_type() -> impl Strategy<Value = RequestType> {
    prop_oneof![
        Just(RequestType::MutualLegalAssistance),
        Just(RequestType::Extradition),
        Just(RequestType::ProvisionalArrest),
        Just(RequestType::TransferOfSentencedPersons),
        Just(RequestType::TransferOfProceedings),
        Just(RequestType::FreezingOrSeizure),
        Just(RequestType::Confiscation),
        Just(RequestType::AssetReturn),
        Just(RequestType::LawEnforcementCooperation),
        Just(RequestType::JointInvestigation),
        Just(RequestType::VideoconferenceHearing),
        Just(RequestType::ServiceOfDocuments),
        one_line().prop_map(RequestType::Other),
    ]
}

pub fn any_legal_basis() -> impl Strategy<Value = LegalBasis> {
    prop_oneof![
        Just(LegalBasis::UntocArt16),
        Just(LegalBasis::UntocArt18),
        Just(LegalBasis::UncacArt44),
        Just(LegalBasis::UncacArt46),
        Just(LegalBasis::Vienna1988Art6),
        Just(LegalBasis::Vienna1988Art7),
        one_line().prop_map(LegalBasis::Treaty),
        Just(LegalBasis::Reciprocity),
        one_line().prop_map(LegalBasis::Other),
    ]
}

pub fn any_urgency() -> impl Strategy<Value = Urgency> {
    prop_oneof![Just(Urgency::Normal), Just(Urgency::Urgent)]
}

pub fn any_case_refs() -> impl Strategy<Value = CaseReferences> {
    (option::of(one_line()), option::of(one_line()))
        .prop_map(|(sender, receiver)| CaseReferences { sender, receiver })
}

pub fn any_thread() -> impl Strategy<Value = Thread> {
    (option::of(any_message_id()), option::of(any_message_id()))
        .prop_map(|(in_reply_to, root)| Thread { in_reply_to, root })
}

pub fn any_restrictions() -> impl Strategy<Value = Restrictions> {
    (any::<bool>(), vec(multi_line(), 0..4)).prop_map(|(confidential, use_restrictions)| {
        Restrictions {
            confidential,
            use_restrictions,
        }
    })
}

pub fn any_request() -> impl Strategy<Value = Request> {
    (
        (
            any_request_type(),
            any_legal_basis(),
            option::of(any_offence()),
            any_urgency(),
            option::of(any_date()),
        ),
        (
            any_language(),
            any_case_refs(),
            one_line(),
            multi_line(),
            any_thread(),
        ),
    )
        .prop_map(
            |(
                (request_type, legal_basis, offence, urgency, deadline),
                (language, case_refs, subject, body, thread),
            )| Request {
                // Types that need an offence always get one.
                offence: match offence {
                    None if request_type.requires_offence() => Some(Offence {
                        description: "Laundering of proceeds of crime".into(),
                        iccs: IccsCode::new("0703").expect("valid"),
                    }),
                    o => o,
                },
                request_type,
                legal_basis,
                urgency,
                deadline,
                language,
                case_refs,
                subject,
                body,
                thread,
            },
        )
}

pub fn any_spontaneous_information() -> impl Strategy<Value = SpontaneousInformation> {
    (
        one_line(),
        multi_line(),
        option::of(any_offence()),
        any_language(),
        any_case_refs(),
        any_restrictions(),
        any_thread(),
    )
        .prop_map(
            |(subject, body, offence, language, case_refs, restrictions, thread)| {
                SpontaneousInformation {
                    subject,
                    body,
                    offence,
                    language,
                    case_refs,
                    restrictions,
                    thread,
                }
            },
        )
}

pub fn any_business_status() -> impl Strategy<Value = BusinessStatus> {
    prop_oneof![
        one_line().prop_map(|reference| BusinessStatus::Registered { reference }),
        Just(BusinessStatus::InExecution),
        multi_line().prop_map(|details| BusinessStatus::AdditionalInformationNeeded { details }),
        Just(BusinessStatus::PartiallyExecuted),
        Just(BusinessStatus::Executed),
        multi_line().prop_map(|grounds| BusinessStatus::Refused { grounds }),
        (multi_line(), option::of(any_date()))
            .prop_map(|(reason, until)| BusinessStatus::Postponed { reason, until }),
        Just(BusinessStatus::Withdrawn),
        Just(BusinessStatus::Acknowledged),
    ]
}

pub fn any_status_update() -> impl Strategy<Value = StatusUpdate> {
    (
        any_message_id(),
        any_business_status(),
        option::of(multi_line()),
    )
        .prop_map(|(regarding, status, note)| StatusUpdate {
            regarding,
            status,
            note,
        })
}

/// A reply whose thread, when it names what it answers, agrees with
/// `in_reply_to` (as `Reply::validate` requires).
pub fn any_reply() -> impl Strategy<Value = Reply> {
    (
        any_message_id(),
        one_line(),
        multi_line(),
        any::<bool>(),
        any::<bool>(),
        option::of(any_message_id()),
    )
        .prop_map(
            |(in_reply_to, subject, body, partial, threaded, root)| Reply {
                in_reply_to,
                subject,
                body,
                partial,
                thread: Thread {
                    in_reply_to: threaded.then_some(in_reply_to),
                    root,
                },
            },
        )
}

pub fn any_consultation() -> impl Strategy<Value = Consultation> {
    (
        option::of(any_message_id()),
        one_line(),
        multi_line(),
        any_thread(),
    )
        .prop_map(|(regarding, subject, body, thread)| Consultation {
            regarding,
            subject,
            body,
            thread,
        })
}

/// A valid body of any kind.
pub fn any_body() -> impl Strategy<Value = Body> {
    prop_oneof![
        any_request().prop_map(Body::Request),
        any_spontaneous_information().prop_map(Body::SpontaneousInformation),
        any_status_update().prop_map(Body::StatusUpdate),
        any_reply().prop_map(Body::Reply),
        any_consultation().prop_map(Body::Consultation),
    ]
}
