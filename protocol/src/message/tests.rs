//! Tests of the whole body: validation of what a peer could send.

use super::*;
use crate::ids::MessageId;

fn request() -> Request {
    Request {
        request_type: RequestType::MutualLegalAssistance,
        legal_basis: LegalBasis::UncacArt46,
        offence: Some(Offence {
            description: "Bribery of a foreign public official".into(),
            iccs: IccsCode::new("07031").unwrap(),
        }),
        urgency: Urgency::Urgent,
        deadline: Some(Date::new(2026, 6, 30).unwrap()),
        language: Language::new("fr").unwrap(),
        case_refs: CaseReferences {
            sender: Some("CA-2026/17".into()),
            receiver: None,
        },
        subject: "Bank records, account 123".into(),
        body: "Please provide…\n\n1. statements\n\t2. KYC".into(),
        thread: Thread::default(),
    }
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_fixed_int_encoding()
}

#[test]
fn a_good_request_validates_and_round_trips() {
    let b = Body::Request(request());
    assert_eq!(b.kind(), MessageKind::Request);
    assert_eq!(b.subject(), Some("Bank records, account 123"));
    b.validate().unwrap();
    let bytes = bincode::encode_to_vec(&b, bincode_config()).unwrap();
    let (back, n): (Body, usize) = bincode::decode_from_slice(&bytes, bincode_config()).unwrap();
    assert_eq!((back, n), (b.clone(), bytes.len()));
    let j = serde_json::to_value(&b).unwrap();
    assert_eq!(j["kind"], "request");
    assert_eq!(j["request_type"], "mla");
    assert_eq!(j["legal_basis"], "uncac-46");
    assert_eq!(j["deadline"], "2026-06-30");
    assert_eq!(j["offence"]["iccs"], "07031");
    assert_eq!(serde_json::from_value::<Body>(j).unwrap(), b);
}

#[test]
fn json_optional_parts_default_and_unknown_fields_fail() {
    let j = r#"{"kind":"request","request_type":{"other":"Asset tracing"},
        "legal_basis":{"treaty":"Bilateral MLA treaty 2001"},
        "offence":{"description":"Fraud","iccs":"0701"},
        "subject":"s","body":"b"}"#;
    let b: Body = serde_json::from_str(j).unwrap();
    let Body::Request(r) = &b else {
        panic!("not a request: {b:?}")
    };
    assert_eq!(r.urgency, Urgency::Normal);
    assert_eq!(r.language, Language::default());
    assert_eq!(r.thread, Thread::default());
    b.validate().unwrap();
    let typo = j.replace("\"subject\"", "\"subjcet\":\"x\",\"subject\"");
    assert!(serde_json::from_str::<Body>(&typo).is_err());
    let bad_date = j.replace("\"subject\"", "\"deadline\":\"2023-02-29\",\"subject\"");
    assert!(serde_json::from_str::<Body>(&bad_date).is_err());
}

#[test]
fn status_json_form() {
    let b = Body::StatusUpdate(StatusUpdate {
        regarding: MessageId([7; 16]),
        status: BusinessStatus::Postponed {
            reason: "Ongoing investigation".into(),
            until: None,
        },
        note: None,
    });
    let j = serde_json::to_value(&b).unwrap();
    assert_eq!(j["kind"], "status");
    assert_eq!(j["status"]["status"], "postponed");
    assert_eq!(serde_json::from_value::<Body>(j).unwrap(), b);
    assert_eq!(b.subject(), None);
}

#[test]
fn validate_rejects() {
    type Case = (fn(&mut Request), InvalidMessage);
    let cases: Vec<Case> = vec![
        (
            |r| r.subject = String::new(),
            InvalidMessage::Empty { field: "subject" },
        ),
        (
            |r| r.subject = "two\nlines".into(),
            InvalidMessage::ControlCharacter { field: "subject" },
        ),
        (
            |r| r.body = "nul\0".into(),
            InvalidMessage::ControlCharacter { field: "body" },
        ),
        (
            |r| r.subject = "s".repeat(limits::MAX_SUBJECT_BYTES + 1),
            InvalidMessage::TooLong {
                field: "subject",
                max: limits::MAX_SUBJECT_BYTES,
                len: limits::MAX_SUBJECT_BYTES + 1,
            },
        ),
        (
            |r| r.body = "b".repeat(limits::MAX_BODY_BYTES + 1),
            InvalidMessage::TooLong {
                field: "body",
                max: limits::MAX_BODY_BYTES,
                len: limits::MAX_BODY_BYTES + 1,
            },
        ),
        (
            |r| {
                if let Some(o) = r.offence.as_mut() {
                    o.description = " ".into()
                }
            },
            InvalidMessage::Empty {
                field: "offence.description",
            },
        ),
        (
            |r| {
                r.request_type = RequestType::Extradition;
                r.offence = None;
            },
            InvalidMessage::OffenceRequired {
                request_type: "extradition",
            },
        ),
        (
            |r| r.legal_basis = LegalBasis::Treaty(String::new()),
            InvalidMessage::Empty {
                field: "legal_basis.treaty",
            },
        ),
        (
            |r| r.request_type = RequestType::Other("x".repeat(limits::MAX_NAME_BYTES + 1)),
            InvalidMessage::TooLong {
                field: "request_type.other",
                max: limits::MAX_NAME_BYTES,
                len: limits::MAX_NAME_BYTES + 1,
            },
        ),
        (
            |r| r.case_refs.receiver = Some("a\u{1b}[2J".into()),
            InvalidMessage::ControlCharacter {
                field: "case_refs.receiver",
            },
        ),
    ];
    for (mutate, want) in cases {
        let mut r = request();
        mutate(&mut r);
        assert_eq!(Body::Request(r).validate(), Err(want));
    }
    let mut r = request();
    r.body = "b".repeat(limits::MAX_BODY_BYTES);
    assert!(Body::Request(r).validate().is_ok());
}

/// Values the derived decoder accepts but the model does not: built by
/// encoding look-alike structs, as a hostile peer would.
#[test]
fn validate_catches_what_decode_lets_through() {
    #[derive(bincode::Encode)]
    struct RawDate(u16, u8, u8);

    let good = Body::Request(request());
    let enc = |b: &Body| bincode::encode_to_vec(b, bincode_config()).unwrap();
    let good_bytes = enc(&good);

    // Swap the deadline's bytes for 2023-02-29.
    let d = bincode::encode_to_vec(RawDate(2026, 6, 30), bincode_config()).unwrap();
    let bad = bincode::encode_to_vec(RawDate(2023, 2, 29), bincode_config()).unwrap();
    let pos = good_bytes
        .windows(d.len())
        .position(|w| w == d.as_slice())
        .unwrap();
    let mut bytes = good_bytes.clone();
    bytes[pos..pos + d.len()].copy_from_slice(&bad);
    let (decoded, _): (Body, usize) = bincode::decode_from_slice(&bytes, bincode_config()).unwrap();
    assert_eq!(
        decoded.validate(),
        Err(InvalidMessage::BadDate {
            field: "deadline",
            year: 2023,
            month: 2,
            day: 29
        })
    );

    // Same length, invalid ICCS section and non-canonical language.
    for (from, to, want) in [
        (
            &b"07031"[..],
            &b"13031"[..],
            InvalidMessage::BadIccs {
                code: "13031".into(),
            },
        ),
        (
            &b"\x02\0\0\0\0\0\0\0fr"[..],
            &b"\x02\0\0\0\0\0\0\0FR"[..],
            InvalidMessage::BadLanguage { tag: "FR".into() },
        ),
    ] {
        let pos = good_bytes
            .windows(from.len())
            .position(|w| w == from)
            .unwrap();
        let mut bytes = good_bytes.clone();
        bytes[pos..pos + from.len()].copy_from_slice(to);
        let (decoded, _): (Body, usize) =
            bincode::decode_from_slice(&bytes, bincode_config()).unwrap();
        assert_eq!(decoded.validate(), Err(want));
    }
}

#[test]
fn validate_never_panics_on_mutated_bytes() {
    let bytes = bincode::encode_to_vec(Body::Request(request()), bincode_config()).unwrap();
    for i in 0..bytes.len() {
        for v in [0u8, 1, 0x1f, 0x7f, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            let limited = bincode::config::standard()
                .with_fixed_int_encoding()
                .with_limit::<{ 16 * 1024 * 1024 }>();
            if let Ok((body, _)) = bincode::decode_from_slice::<Body, _>(&b, limited) {
                let _ = body.validate();
                let _ = body.kind();
            }
        }
    }
}
