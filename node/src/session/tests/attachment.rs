//! Attachments in the session: the dialler's side of `AttachmentsWanted`,
//! the acceptor's first frame, and both ends of an attachment stream.

use comity_protocol::session::{AttachmentRefusal, SessionFrame};
use comity_protocol::Digest;

use super::*;
use crate::session::attachment::{Intake, IntakeStep, Outlet, OutletAction, OutletError};
use crate::session::receiver::{BadStream, Input, Receiver, Step};
use crate::session::sender::{Action, SenderError};
use crate::session::SessionVersion;

fn wanted(n: u8, next: Vec<u64>) -> SessionFrame {
    SessionFrame::AttachmentsWanted { id: id(n), next }
}

// ---- the dialler's session: AttachmentsWanted

#[test]
fn wanted_attachments_free_the_window_and_come_back_when_the_session_ends() {
    let mut s = open_sender(1, 0);
    s.sent(id(1), Digest([1; 32])).unwrap();
    assert!(!s.can_send());
    let a = s.on_frame(wanted(1, vec![0, 3]), true, || 0).unwrap();
    assert!(
        matches!(a, Action::SendAttachments { id: i, ref next } if i == id(1) && next == &[0, 3])
    );
    // Out of the window: the next message may go.
    assert!(s.can_send());
    assert_eq!(s.in_flight(), 0);
    assert_eq!(s.awaiting_attachments(), 1);
    s.sent(id(2), Digest([2; 32])).unwrap();
    // The session ends before the transfer did: both are taken back.
    assert_eq!(s.take_unanswered(), vec![id(2), id(1)]);
}

#[test]
fn a_finished_transfer_is_taken_once() {
    let mut s = open_sender(4, 0);
    s.sent(id(1), Digest([1; 32])).unwrap();
    s.on_frame(wanted(1, vec![0]), true, || 0).unwrap();
    assert!(s.attachments_sent(&id(1)));
    assert!(!s.attachments_sent(&id(1)));
    assert!(s.take_unanswered().is_empty());
}

#[test]
fn an_acceptor_that_wants_the_attachments_without_end_ends_the_session() {
    // Each round: the envelope, `AttachmentsWanted`, the transfer (which
    // the acceptor may call complete at once), the envelope again. An
    // acceptor that never receipts would have the dialler go round as
    // fast as the connection allows; a few rounds are honest (a stream
    // still busy from a lost connection), hundreds are not.
    let mut s = open_sender(4, 0);
    let mut rounds = 0;
    let ended = loop {
        rounds += 1;
        assert!(rounds <= 100, "still going round after 100 rounds");
        s.sent(id(1), Digest([1; 32])).unwrap();
        match s.on_frame(wanted(1, vec![3]), true, || 0) {
            Ok(Action::SendAttachments { .. }) => assert!(s.attachments_sent(&id(1))),
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert!(
        rounds > 2,
        "honest rounds are allowed: ended after {rounds}"
    );
    assert!(ended.to_string().contains("attachments"), "{ended}");
    // The message goes back to the queue, not lost.
    assert_eq!(s.take_unanswered(), vec![id(1)]);
}

#[test]
fn attachments_wanted_for_a_message_not_in_flight_are_ignored() {
    let mut s = open_sender(4, 0);
    let a = s.on_frame(wanted(9, vec![0]), true, || 0).unwrap();
    assert!(matches!(a, Action::Ignore(_)), "{a:?}");
    assert_eq!(s.awaiting_attachments(), 0);
}

#[test]
fn attachments_wanted_on_an_older_version_break_the_session() {
    let mut s = Sender::new(arcadia().id(), borduria().id(), 4, 0).speaking(SessionVersion::V4);
    s.on_frame(hello(&borduria()), true, || 0).unwrap();
    s.sent(id(1), Digest([1; 32])).unwrap();
    assert!(!s.carries_attachments());
    let e = s.on_frame(wanted(1, vec![0]), true, || 0).unwrap_err();
    assert_eq!(e, SenderError::Unexpected("attachments-wanted"));
}

#[test]
fn a_message_set_aside_comes_back_when_the_session_ends() {
    let mut s = open_sender(4, 0);
    s.set_aside(id(3));
    assert!(s.can_send());
    assert_eq!(s.take_unanswered(), vec![id(3)]);
}

// ---- the acceptor's first frame

#[test]
fn an_offer_instead_of_a_hello_makes_an_attachment_stream_on_version_5_only() {
    let offer = || {
        Input::Frame(SessionFrame::AttachmentOffer {
            id: id(1),
            index: 2,
        })
    };
    let mut r = Receiver::new(arcadia().id());
    assert!(matches!(
        r.on_input(offer(), true),
        Step::AttachmentOffer { id: i, index: 2 } if i == id(1)
    ));
    // This machine is done with the stream.
    assert!(matches!(r.on_input(Input::End, true), Step::Stop));
    let mut old = Receiver::new(arcadia().id()).speaking(SessionVersion::V4);
    assert!(matches!(
        old.on_input(offer(), true),
        Step::Close(BadStream::NoHello)
    ));
}

#[test]
fn an_offer_after_the_hello_breaks_the_session() {
    let mut r = Receiver::new(arcadia().id());
    assert!(matches!(
        r.on_input(Input::Frame(hello(&arcadia())), true),
        Step::Hello(_)
    ));
    let step = r.on_input(
        Input::Frame(SessionFrame::AttachmentOffer {
            id: id(1),
            index: 0,
        }),
        true,
    );
    assert!(
        matches!(step, Step::Close(BadStream::Unexpected("attachment-offer"))),
        "{step:?}"
    );
}

// ---- the acceptor's attachment stream

fn chunk(index: u64) -> Input {
    Input::Frame(SessionFrame::AttachmentChunk {
        index,
        bytes: vec![index as u8; 4],
    })
}

#[test]
fn the_intake_takes_the_table_first_when_it_asked_for_it() {
    let mut i = Intake::new(true);
    assert!(matches!(
        i.on_input(chunk(0), true),
        IntakeStep::Close(BadStream::Unexpected("attachment-chunk"))
    ));
    assert_eq!(i.on_input(chunk(0), true), IntakeStep::Stop);

    let mut i = Intake::new(true);
    let table = Input::Frame(SessionFrame::AttachmentTable(vec![7; 32]));
    assert_eq!(i.on_input(table, true), IntakeStep::Table(vec![7; 32]));
    assert_eq!(
        i.on_input(chunk(0), true),
        IntakeStep::Chunk {
            index: 0,
            bytes: vec![0; 4]
        }
    );
    // A second table is not a chunk.
    let again = Input::Frame(SessionFrame::AttachmentTable(vec![7; 32]));
    assert!(matches!(i.on_input(again, true), IntakeStep::Close(_)));
}

#[test]
fn the_intake_passes_chunks_through_until_finished_and_reports_truncation() {
    let mut i = Intake::new(false);
    for n in 3..6 {
        assert!(
            matches!(i.on_input(chunk(n), true), IntakeStep::Chunk { index, .. } if index == n)
        );
    }
    assert_eq!(i.on_input(Input::End, true), IntakeStep::Truncated);
    assert_eq!(i.on_input(chunk(6), true), IntakeStep::Stop);

    let mut i = Intake::new(false);
    i.finished();
    assert_eq!(i.on_input(chunk(0), true), IntakeStep::Stop);
}

#[test]
fn the_intake_checks_the_pin_for_every_frame_and_refuses_oddities() {
    let mut i = Intake::new(false);
    assert!(matches!(
        i.on_input(chunk(0), true),
        IntakeStep::Chunk { .. }
    ));
    assert_eq!(i.on_input(chunk(1), false), IntakeStep::Unpinned);
    assert_eq!(i.on_input(chunk(1), true), IntakeStep::Stop);
    for odd in [
        Input::Oversize { len: 99, id: None },
        Input::Undecodable("x".into()),
        Input::Frame(hello(&arcadia())),
    ] {
        let mut i = Intake::new(false);
        assert!(matches!(i.on_input(odd, true), IntakeStep::Close(_)));
    }
}

// ---- the dialler's attachment stream

#[test]
fn an_outlet_sends_from_where_the_acceptor_asks_and_completes_after_the_last_chunk() {
    let (mut o, offer) = Outlet::offer(id(1), 2, 10);
    assert_eq!(
        offer,
        SessionFrame::AttachmentOffer {
            id: id(1),
            index: 2
        }
    );
    let from = SessionFrame::AttachmentFrom {
        from_chunk: 4,
        table: false,
    };
    assert_eq!(
        o.on_frame(from, false),
        Ok(OutletAction::Send {
            from_chunk: 4,
            table: false
        })
    );
    let done = || SessionFrame::AttachmentComplete {
        id: id(1),
        index: 2,
    };
    // Not before every chunk was written.
    assert_eq!(o.on_frame(done(), false), Err(OutletError::EarlyCompletion));

    let (mut o, _) = Outlet::offer(id(1), 2, 10);
    o.on_frame(
        SessionFrame::AttachmentFrom {
            from_chunk: 0,
            table: true,
        },
        false,
    )
    .unwrap();
    assert_eq!(o.on_frame(done(), true), Ok(OutletAction::Complete));
    assert_eq!(o.on_frame(done(), true), Err(OutletError::Over));
}

#[test]
fn an_outlet_refuses_a_start_beyond_the_end_and_another_attachments_completion() {
    let (mut o, _) = Outlet::offer(id(1), 0, 10);
    let beyond = SessionFrame::AttachmentFrom {
        from_chunk: 10,
        table: false,
    };
    assert_eq!(
        o.on_frame(beyond, false),
        Err(OutletError::BeyondEnd {
            from: 10,
            chunks: 10
        })
    );
    let (mut o, _) = Outlet::offer(id(1), 0, 10);
    let other = SessionFrame::AttachmentComplete {
        id: id(1),
        index: 1,
    };
    assert!(matches!(
        o.on_frame(other, false),
        Err(OutletError::OtherAttachment { index: 1, .. })
    ));
    // Complete at once (the acceptor had it all already).
    let (mut o, _) = Outlet::offer(id(1), 0, 10);
    let done = SessionFrame::AttachmentComplete {
        id: id(1),
        index: 0,
    };
    assert_eq!(o.on_frame(done, false), Ok(OutletAction::Complete));
}

#[test]
fn an_outlet_passes_refusals_on_with_their_detail_bounded() {
    let (mut o, _) = Outlet::offer(id(1), 0, 10);
    let refused = SessionFrame::AttachmentRefused {
        reason: AttachmentRefusal::NoRoom,
        next: 3,
        detail: "x".repeat(10_000),
    };
    let Ok(OutletAction::Refused {
        reason,
        next,
        detail,
    }) = o.on_frame(refused, false)
    else {
        panic!("a refusal");
    };
    assert_eq!((reason, next), (AttachmentRefusal::NoRoom, 3));
    assert!(!reason.is_permanent());
    assert_eq!(detail.chars().count(), crate::session::MAX_PEER_TEXT);
    let (mut o, _) = Outlet::offer(id(1), 0, 10);
    let hello = hello(&borduria());
    assert_eq!(
        o.on_frame(hello, false),
        Err(OutletError::Unexpected("hello"))
    );
}
