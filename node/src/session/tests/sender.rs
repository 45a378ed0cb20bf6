//! The dialling side: hello, window, answers, witnessing.

use comity_protocol::identity::KeyError;
use comity_protocol::receipt::ReceiptError;
use comity_protocol::session::{RejectReason, SessionFrame, WitnessRefusal};
use comity_protocol::Digest;

use super::*;
use crate::session::sender::{Action, Sender, SenderError};
use crate::session::MAX_PEER_TEXT;

// ---- sender: hello

#[test]
fn the_peers_hello_opens_the_session_with_its_keys() {
    let mut s = Sender::new(arcadia().id(), borduria().id(), 8, 0);
    assert!(!s.can_send());
    assert!(s.keys().is_none());
    let a = s.on_frame(hello(&borduria()), true, || 0).unwrap();
    assert!(matches!(a, Action::Hello(_)));
    assert!(s.can_send());
    assert_eq!(s.keys().map(|k| *k.id()), Some(borduria().id()));
}

#[test]
fn a_first_frame_other_than_hello_ends_the_session() {
    let mut s = Sender::new(arcadia().id(), borduria().id(), 8, 0);
    let e = s
        .on_frame(SessionFrame::Receipt(vec![1, 2, 3]), true, || 0)
        .unwrap_err();
    assert_eq!(e, SenderError::ExpectedHello("receipt"));
}

#[test]
fn a_hello_with_another_nodes_key_is_refused() {
    let mut s = Sender::new(arcadia().id(), borduria().id(), 8, 0);
    let e = s.on_frame(hello(&carpania()), true, || 0).unwrap_err();
    assert!(
        matches!(e, SenderError::BadKey(KeyError::CertForOtherNode { .. })),
        "{e:?}"
    );
    assert!(!s.can_send());
}

#[test]
fn nothing_is_sent_before_the_hello() {
    let mut s = Sender::new(arcadia().id(), borduria().id(), 8, 0);
    assert_eq!(s.sent(id(1), Digest([0; 32])), Err(SenderError::NotOpen));
}

#[test]
fn frames_only_a_dialler_sends_end_the_session() {
    for frame in [
        hello(&borduria()),
        SessionFrame::Envelope(vec![0; 8]),
        SessionFrame::Checkpoint {
            note: String::new(),
            old_size: 0,
            proof: vec![],
        },
    ] {
        let mut s = open_sender(8, 0);
        assert!(matches!(
            s.on_frame(frame, true, || 0),
            Err(SenderError::Unexpected(_))
        ));
    }
}

// ---- sender: window and answers

#[test]
fn the_window_fills_and_empties() {
    let (a, b) = (arcadia(), borduria());
    let mut s = open_sender(2, 0);
    let (d1, r1) = delivered(&a, &b, &b, id(1));
    let (d2, _) = delivered(&a, &b, &b, id(2));
    s.sent(id(1), d1).unwrap();
    assert!(s.can_send());
    s.sent(id(2), d2).unwrap();
    assert!(!s.can_send());
    assert_eq!(s.sent(id(3), d2), Err(SenderError::WindowFull(2)));
    let a1 = s
        .on_frame(SessionFrame::Receipt(r1.clone()), true, || 0)
        .unwrap();
    assert!(
        matches!(a1, Action::Delivered { id: i, digest, receipt } if i == id(1) && digest == d1 && receipt == r1)
    );
    assert!(s.can_send());
    assert_eq!(s.in_flight(), 1);
}

#[test]
fn a_receipt_that_arrives_after_the_peer_was_unpinned_is_not_taken() {
    let (a, b) = (arcadia(), borduria());
    let mut s = open_sender(8, 0);
    let (d1, r1) = delivered(&a, &b, &b, id(1));
    s.sent(id(1), d1).unwrap();
    // A valid receipt, but the pin is gone: the session ends unread and
    // the message is not delivered; it goes back to the queue.
    assert!(matches!(
        s.on_frame(SessionFrame::Receipt(r1.clone()), false, || 0),
        Err(SenderError::Unpinned)
    ));
    assert!(matches!(
        s.on_frame(SessionFrame::Receipt(r1), true, || 0),
        Err(SenderError::Ended)
    ));
    assert_eq!(s.sent(id(2), d1), Err(SenderError::Ended));
    assert_eq!(s.take_unanswered(), vec![id(1)]);
}

#[test]
fn answers_out_of_order_are_matched_to_what_was_sent() {
    let (a, b) = (arcadia(), borduria());
    let mut s = open_sender(8, 0);
    let msgs: Vec<_> = (1..=3)
        .map(|n| (id(n), delivered(&a, &b, &b, id(n))))
        .collect();
    for (i, (d, _)) in &msgs {
        s.sent(*i, *d).unwrap();
    }
    for k in [2, 0, 1] {
        let (i, (d, r)) = &msgs[k];
        match s
            .on_frame(SessionFrame::Receipt(r.clone()), true, || 0)
            .unwrap()
        {
            Action::Delivered {
                id: got, digest, ..
            } => {
                assert_eq!((got, digest), (*i, *d));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.in_flight(), 0);
    assert!(s.take_unanswered().is_empty());
}

#[test]
fn a_receipt_for_something_never_sent_is_ignored() {
    let (a, b) = (arcadia(), borduria());
    let mut s = open_sender(8, 0);
    let (_, r) = delivered(&a, &b, &b, id(9));
    let action = s.on_frame(SessionFrame::Receipt(r), true, || 0).unwrap();
    assert!(matches!(action, Action::Ignore(_)), "{action:?}");
    assert!(s.can_send());
}

#[test]
fn a_receipt_naming_another_envelope_is_refused_and_ends_the_session() {
    let (a, b) = (arcadia(), borduria());
    let mut s = open_sender(8, 0);
    let (_, r) = delivered(&a, &b, &b, id(1));
    // What was written had another digest than what the peer receipted.
    s.sent(id(1), Digest([7; 32])).unwrap();
    let action = s.on_frame(SessionFrame::Receipt(r), true, || 0).unwrap();
    assert!(
        matches!(action, Action::ReceiptRefused { id: i, error: ReceiptError::DigestMismatch { .. } } if i == id(1)),
        "{action:?}"
    );
    assert!(action.ends_session());
    assert!(!s.can_send());
    assert_eq!(s.take_unanswered(), vec![id(1)]);
}

#[test]
fn a_receipt_signed_by_another_node_is_refused() {
    let (a, b, c) = (arcadia(), borduria(), carpania());
    let mut s = open_sender(8, 0);
    let (d, forged) = delivered(&a, &b, &c, id(1));
    s.sent(id(1), d).unwrap();
    let action = s
        .on_frame(SessionFrame::Receipt(forged), true, || 0)
        .unwrap();
    assert!(
        matches!(
            action,
            Action::ReceiptRefused {
                error: ReceiptError::WrongSigner { .. },
                ..
            }
        ),
        "{action:?}"
    );
}

#[test]
fn a_receipt_signed_by_a_key_the_peer_left_by_its_transition_is_taken() {
    // Carpania's key is the one Borduria had before its identity switch:
    // the envelope went to it, and a duplicate is answered with the
    // receipt it signed then.
    let (a, b, c) = (arcadia(), borduria(), carpania());
    let mut s = Sender::new(a.id(), b.id(), 8, 0).with_peer_earlier_keys(vec![c.public().clone()]);
    s.on_frame(hello(&b), true, || 0).unwrap();
    let (d, receipt) = delivered(&a, &c, &c, id(1));
    s.sent(id(1), d).unwrap();
    let action = s
        .on_frame(SessionFrame::Receipt(receipt), true, || 0)
        .unwrap();
    assert!(matches!(action, Action::Delivered { .. }), "{action:?}");
}

#[test]
fn an_undecodable_receipt_ends_the_session_without_touching_the_message() {
    let mut s = open_sender(8, 0);
    s.sent(id(1), Digest([1; 32])).unwrap();
    let e = s
        .on_frame(SessionFrame::Receipt(vec![0xff; 20]), true, || 0)
        .unwrap_err();
    assert!(matches!(e, SenderError::UndecodableReceipt(_)), "{e:?}");
    assert_eq!(s.take_unanswered(), vec![id(1)]);
}

#[test]
fn a_permanent_rejection_fails_the_message_and_frees_its_slot() {
    let mut s = open_sender(1, 0);
    s.sent(id(1), Digest([1; 32])).unwrap();
    assert!(!s.can_send());
    let action = s
        .on_frame(
            rejected(Some(id(1)), RejectReason::IdReused, "id reused"),
            true,
            || 0,
        )
        .unwrap();
    match action {
        Action::Failed { id: i, error } => {
            assert_eq!(i, id(1));
            assert_eq!(error, "refused by peer (id-reused): id reused");
        }
        other => panic!("{other:?}"),
    }
    assert!(s.can_send());
}

#[test]
fn a_transient_rejection_keeps_the_message_for_a_retry() {
    let mut s = open_sender(8, 0);
    s.sent(id(1), Digest([1; 32])).unwrap();
    s.sent(id(2), Digest([2; 32])).unwrap();
    let action = s
        .on_frame(
            rejected(Some(id(2)), RejectReason::Unavailable, "disk"),
            true,
            || 0,
        )
        .unwrap();
    assert!(
        matches!(action, Action::Retry { id: i, reseal: false, .. } if i == id(2)),
        "{action:?}"
    );
    assert!(action.ends_session());
    assert_eq!(s.sent(id(3), Digest([3; 32])), Err(SenderError::Ended));
    assert_eq!(s.take_unanswered(), vec![id(1), id(2)]);
}

#[test]
fn an_unknown_encryption_key_asks_for_resealing() {
    let mut s = open_sender(8, 0);
    s.sent(id(1), Digest([1; 32])).unwrap();
    let action = s
        .on_frame(
            rejected(Some(id(1)), RejectReason::UnknownEncryptionKey, "old key"),
            true,
            || 0,
        )
        .unwrap();
    assert!(
        matches!(action, Action::Retry { reseal: true, .. }),
        "{action:?}"
    );
}

#[test]
fn a_rejection_of_nothing_in_flight_is_ignored() {
    let mut s = open_sender(8, 0);
    s.sent(id(1), Digest([1; 32])).unwrap();
    for frame in [
        rejected(None, RejectReason::Malformed, "bad frame"),
        rejected(Some(id(9)), RejectReason::IdReused, "?"),
    ] {
        let action = s.on_frame(frame, true, || 0).unwrap();
        assert!(matches!(action, Action::Ignore(_)), "{action:?}");
    }
    assert_eq!(s.in_flight(), 1);
}

#[test]
fn a_peers_refusal_text_is_bounded() {
    let mut s = open_sender(8, 0);
    s.sent(id(1), Digest([1; 32])).unwrap();
    let long = "é".repeat(10_000);
    let Action::Failed { error, .. } = s
        .on_frame(
            rejected(Some(id(1)), RejectReason::Invalid, &long),
            true,
            || 0,
        )
        .unwrap()
    else {
        panic!("not failed")
    };
    assert!(
        error.chars().count() <= MAX_PEER_TEXT + 40,
        "{}",
        error.len()
    );
}

#[test]
fn the_same_message_cannot_be_in_flight_twice() {
    let mut s = open_sender(8, 0);
    s.sent(id(1), Digest([1; 32])).unwrap();
    assert_eq!(
        s.sent(id(1), Digest([1; 32])),
        Err(SenderError::AlreadyInFlight(id(1)))
    );
}

#[test]
fn after_a_reconnect_mid_window_the_unanswered_come_back_in_order() {
    let (a, b) = (arcadia(), borduria());
    let mut s = open_sender(8, 0);
    let mut receipts = Vec::new();
    for n in 1..=4 {
        let (d, r) = delivered(&a, &b, &b, id(n));
        s.sent(id(n), d).unwrap();
        receipts.push(r);
    }
    s.on_frame(SessionFrame::Receipt(receipts[1].clone()), true, || 0)
        .unwrap();
    // The connection drops: what was not answered goes back, oldest first.
    assert_eq!(s.take_unanswered(), vec![id(1), id(3), id(4)]);
    // A late receipt on the old session is not acted on.
    assert_eq!(
        s.on_frame(SessionFrame::Receipt(receipts[0].clone()), true, || 0)
            .unwrap_err(),
        SenderError::Ended
    );
    // The new connection starts with an empty window.
    let mut next = open_sender(8, 0);
    assert_eq!(next.in_flight(), 0);
    next.sent(id(1), Digest([1; 32])).unwrap();
}

// ---- sender: witnessing

pub(super) fn cosigned(size: u64) -> SessionFrame {
    SessionFrame::Cosigned {
        size,
        line: format!("— witness {size}"),
    }
}

fn refused(size: u64, witnessed_size: u64, reason: WitnessRefusal) -> SessionFrame {
    SessionFrame::CheckpointRefused {
        size,
        witnessed_size,
        reason,
        detail: "because".into(),
    }
}

#[test]
fn a_checkpoint_is_offered_once_from_what_the_witness_cosigned() {
    let mut s = open_sender(8, 5);
    assert_eq!(s.checkpoint_to_offer(5, 0), None);
    assert_eq!(s.checkpoint_to_offer(10, 0), Some((5, 10)));
    s.offered(5, 10);
    assert_eq!(s.checkpoint_to_offer(10, 0), None);
    assert_eq!(s.checkpoint_to_offer(12, 0), Some((5, 12)));
}

#[test]
fn a_cosignature_of_the_offer_is_checked_and_moves_the_next_proof() {
    let mut s = open_sender(8, 5);
    s.offered(5, 10);
    let action = s.on_frame(cosigned(10), true, || 10).unwrap();
    assert!(
        matches!(&action, Action::CheckCosignature { size: 10, line } if line == "— witness 10"),
        "{action:?}"
    );
    s.cosignature_stored(10);
    assert_eq!(s.cosigned(), 10);
    assert_eq!(s.checkpoint_to_offer(10, 0), None);
    assert_eq!(s.checkpoint_to_offer(14, 0), Some((10, 14)));
}

#[test]
fn a_duplicate_cosignature_is_ignored() {
    let mut s = open_sender(8, 5);
    s.offered(5, 10);
    s.on_frame(cosigned(10), true, || 10).unwrap();
    s.cosignature_stored(10);
    let again = s.on_frame(cosigned(10), true, || 10).unwrap();
    assert!(matches!(again, Action::Ignore(_)), "{again:?}");
}

#[test]
fn a_cosignature_not_asked_for_is_ignored() {
    let mut s = open_sender(8, 5);
    let action = s.on_frame(cosigned(10), true, || 10).unwrap();
    assert!(matches!(action, Action::Ignore(_)), "{action:?}");
    s.offered(5, 10);
    let other = s.on_frame(cosigned(11), true, || 11).unwrap();
    assert!(matches!(other, Action::Ignore(_)), "{other:?}");
}

#[test]
fn an_old_size_mismatch_restarts_the_proof_where_the_witness_is() {
    let mut s = open_sender(8, 5);
    s.offered(5, 10);
    let action = s
        .on_frame(refused(10, 7, WitnessRefusal::OldSizeMismatch), true, || 10)
        .unwrap();
    assert!(matches!(action, Action::OfferAgain), "{action:?}");
    assert_eq!(s.checkpoint_to_offer(10, 0), Some((7, 10)));
}

#[test]
fn a_witness_claiming_more_than_our_log_holds_raises_an_alarm() {
    let mut s = open_sender(8, 5);
    s.offered(5, 10);
    let action = s
        .on_frame(
            refused(10, 50, WitnessRefusal::OldSizeMismatch),
            true,
            || 12,
        )
        .unwrap();
    assert!(
        matches!(
            action,
            Action::WitnessAlarm {
                size: 10,
                witnessed_size: 50,
                ..
            }
        ),
        "{action:?}"
    );
}

#[test]
fn a_refusal_after_a_cosignature_raises_its_alarm_once() {
    let mut s = open_sender(8, 5);
    s.offered(5, 10);
    s.on_frame(cosigned(10), true, || 10).unwrap();
    s.cosignature_stored(10);
    let action = s
        .on_frame(refused(10, 10, WitnessRefusal::Fork), true, || 10)
        .unwrap();
    assert!(
        matches!(
            action,
            Action::WitnessAlarm {
                reason: WitnessRefusal::Fork,
                ..
            }
        ),
        "{action:?}"
    );
    let again = s
        .on_frame(refused(10, 10, WitnessRefusal::Fork), true, || 10)
        .unwrap();
    assert!(matches!(again, Action::Ignore(_)), "{again:?}");
}

#[test]
fn a_restoration_is_presented_first_and_checkpoints_wait_for_its_answer() {
    // Restored to 20, continuing at 22; the witness cosigned 12 (from the
    // backup's store).
    let mut s = open_sender(8, 12).with_restoration(20, 22);
    assert_eq!(
        s.checkpoint_to_offer(25, 0),
        None,
        "nothing before the statement"
    );
    assert_eq!(s.restoration_to_present(0), Some((20, 22)));
    s.restoration_presented();
    assert_eq!(s.restoration_to_present(0), None, "presented once");
    assert_eq!(
        s.checkpoint_to_offer(25, 0),
        None,
        "nothing until it is answered"
    );
    // The cosignature of the continuation is the acknowledgement.
    let action = s.on_frame(cosigned(22), true, || 25).unwrap();
    assert!(
        matches!(action, Action::CheckCosignature { size: 22, .. }),
        "{action:?}"
    );
    s.cosignature_stored(22);
    assert_eq!(s.checkpoint_to_offer(25, 0), Some((22, 25)));
    assert_eq!(s.restoration_to_present(0), None);
}

#[test]
fn a_witness_that_saw_nothing_rolled_back_gets_an_ordinary_proof() {
    let mut s = open_sender(8, 12).with_restoration(20, 22);
    assert_eq!(s.restoration_to_present(0), Some((20, 22)));
    s.restoration_presented();
    // It cosigned only 15 (< 20): prove from there.
    let action = s
        .on_frame(
            refused(22, 15, WitnessRefusal::OldSizeMismatch),
            true,
            || 25,
        )
        .unwrap();
    assert!(matches!(action, Action::OfferAgain), "{action:?}");
    assert_eq!(s.checkpoint_to_offer(25, 0), Some((15, 25)));
    assert_eq!(s.restoration_to_present(0), None);
}

#[test]
fn a_refused_restoration_raises_an_alarm_and_is_not_presented_again() {
    let mut s = open_sender(8, 12).with_restoration(20, 22);
    s.restoration_to_present(0);
    s.restoration_presented();
    let action = s
        .on_frame(refused(22, 30, WitnessRefusal::Shrank), true, || 25)
        .unwrap();
    assert!(
        matches!(
            action,
            Action::WitnessAlarm {
                size: 22,
                reason: WitnessRefusal::Shrank,
                ..
            }
        ),
        "{action:?}"
    );
    assert_eq!(s.restoration_to_present(0), None);
}

#[test]
fn a_witness_that_cosigned_the_continuation_is_not_shown_the_statement() {
    let mut s = open_sender(8, 22).with_restoration(20, 22);
    assert_eq!(s.restoration_to_present(22), None);
    assert_eq!(s.checkpoint_to_offer(25, 22), Some((22, 25)));
}

#[test]
fn a_refusal_of_nothing_offered_is_ignored() {
    let mut s = open_sender(8, 5);
    let action = s
        .on_frame(refused(10, 5, WitnessRefusal::Inconsistent), true, || 10)
        .unwrap();
    assert!(matches!(action, Action::Ignore(_)), "{action:?}");
}

// ---- sender: which frame carries an envelope

#[test]
fn a_resend_carries_its_signed_notice_only_on_a_version_3_connection() {
    use crate::session::sender::envelope_frame;
    use crate::session::SessionVersion;
    use comity_protocol::resend::ResendStatement;

    let (a, b) = (arcadia(), borduria());
    let frame = |version, resend_of| {
        envelope_frame(
            version,
            &a,
            b.id(),
            id(2),
            vec![7; 3],
            Digest([9; 32]),
            resend_of,
        )
        .unwrap()
    };
    assert_eq!(
        frame(SessionVersion::V2, Some(id(1))),
        SessionFrame::Envelope(vec![7; 3])
    );
    assert_eq!(
        frame(SessionVersion::V3, None),
        SessionFrame::Envelope(vec![7; 3])
    );
    let SessionFrame::ResentEnvelope {
        envelope,
        original,
        signature,
    } = frame(SessionVersion::V3, Some(id(1)))
    else {
        panic!("a resend on version 3 is not a ResentEnvelope");
    };
    assert_eq!((envelope, original), (vec![7; 3], id(1)));
    let statement = ResendStatement {
        sender: a.id(),
        recipient: b.id(),
        message_id: id(2),
        envelope_digest: Digest([9; 32]),
        original: id(1),
    };
    assert_eq!(statement.verify(a.public(), &signature), Ok(()));
}

#[test]
fn the_version_is_the_negotiated_alpn() {
    use crate::session::SessionVersion;
    assert_eq!(
        SessionVersion::of_alpn(Some(b"comity/5")),
        SessionVersion::V5
    );
    assert_eq!(
        SessionVersion::of_alpn(Some(b"comity/4")),
        SessionVersion::V4
    );
    assert_eq!(
        SessionVersion::of_alpn(Some(b"comity/3")),
        SessionVersion::V3
    );
    assert_eq!(
        SessionVersion::of_alpn(Some(b"comity/2")),
        SessionVersion::V2
    );
    assert_eq!(SessionVersion::of_alpn(None), SessionVersion::V2);
}
