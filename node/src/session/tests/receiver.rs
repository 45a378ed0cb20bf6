//! The accepting side: hello first, then what each frame asks.

use comity_protocol::identity::KeyError;
use comity_protocol::session::{RejectReason, SessionFrame, MAX_CHECKPOINT_NOTE, MAX_PROOF_HASHES};
use comity_protocol::Digest;

use super::sender::cosigned;
use super::*;
use crate::session::receiver::{BadStream, Input, Receiver, Step};

/// Input from a peer that is pinned (the pin check itself is tested below).
trait Pinned {
    fn on_input_pinned(&mut self, input: Input) -> Step;
}

impl Pinned for Receiver {
    fn on_input_pinned(&mut self, input: Input) -> Step {
        self.on_input(input, true)
    }
}

// ---- receiver

fn open_receiver() -> Receiver {
    let mut r = Receiver::new(arcadia().id());
    let step = r.on_input_pinned(Input::Frame(hello(&arcadia())));
    assert!(matches!(step, Step::Hello(k) if *k.id() == arcadia().id()));
    r
}

#[test]
fn a_stream_must_start_with_the_peers_hello() {
    let mut r = Receiver::new(arcadia().id());
    let step = r.on_input_pinned(Input::Frame(SessionFrame::Envelope(vec![1])));
    match step {
        Step::Close(bad) => {
            assert_eq!(bad, BadStream::NoHello);
            assert!(bad.before_hello());
        }
        other => panic!("{other:?}"),
    }
    // Nothing more is read from a closed stream.
    assert!(matches!(
        r.on_input_pinned(Input::Frame(hello(&arcadia()))),
        Step::Stop
    ));
}

#[test]
fn a_hello_with_another_nodes_key_closes_the_stream() {
    let mut r = Receiver::new(arcadia().id());
    let step = r.on_input_pinned(Input::Frame(hello(&carpania())));
    assert!(
        matches!(
            step,
            Step::Close(BadStream::BadKey(KeyError::CertForOtherNode { .. }))
        ),
        "{step:?}"
    );
}

#[test]
fn a_stream_ended_before_its_hello_stops_quietly() {
    let mut r = Receiver::new(arcadia().id());
    assert!(matches!(r.on_input_pinned(Input::End), Step::Stop));
}

#[test]
fn after_the_hello_envelopes_are_received_and_checkpoints_witnessed() {
    let mut r = open_receiver();
    assert!(matches!(
        r.on_input_pinned(Input::Frame(SessionFrame::Envelope(vec![7; 3]))),
        Step::Receive { envelope, resends: None } if envelope == vec![7; 3]
    ));
    let step = r.on_input_pinned(Input::Frame(SessionFrame::ResentEnvelope {
        envelope: vec![8; 3],
        original: id(5),
        signature: [6; 64],
    }));
    assert!(
        matches!(&step, Step::Receive { envelope, resends: Some(c) }
            if *envelope == vec![8; 3] && c.original == id(5) && c.signature == [6; 64]),
        "{step:?}"
    );
    let step = r.on_input_pinned(Input::Frame(SessionFrame::Checkpoint {
        note: "note".into(),
        old_size: 3,
        proof: vec![Digest([1; 32])],
    }));
    assert!(
        matches!(&step, Step::Witness { note, old_size: 3, proof } if note == "note" && proof.len() == 1),
        "{step:?}"
    );
    assert!(matches!(r.on_input_pinned(Input::End), Step::Stop));
}

#[test]
fn an_oversize_checkpoint_or_proof_closes_the_stream() {
    for (note, hashes) in [
        ("x".repeat(MAX_CHECKPOINT_NOTE + 1), 0),
        (String::new(), MAX_PROOF_HASHES + 1),
    ] {
        let mut r = open_receiver();
        let step = r.on_input_pinned(Input::Frame(SessionFrame::Checkpoint {
            note,
            old_size: 0,
            proof: vec![Digest([0; 32]); hashes],
        }));
        assert!(
            matches!(step, Step::Close(BadStream::OversizeCheckpoint)),
            "{step:?}"
        );
    }
}

#[test]
fn an_oversize_envelope_is_refused_by_id_and_the_stream_goes_on() {
    let mut r = open_receiver();
    let step = r.on_input_pinned(Input::Oversize {
        len: 99_999_999,
        id: Some(id(4)),
    });
    assert!(
        matches!(step, Step::RejectOversize { id: i, len: 99_999_999 } if i == id(4)),
        "{step:?}"
    );
    assert!(matches!(
        r.on_input_pinned(Input::Frame(SessionFrame::Envelope(vec![1]))),
        Step::Receive { .. }
    ));
}

#[test]
fn an_oversize_frame_that_is_no_envelope_closes_the_stream() {
    let mut r = open_receiver();
    let step = r.on_input_pinned(Input::Oversize { len: 5, id: None });
    assert!(
        matches!(step, Step::Close(BadStream::OversizeFrame(5))),
        "{step:?}"
    );
}

#[test]
fn answers_and_a_second_hello_are_not_for_the_acceptor() {
    for frame in [
        hello(&arcadia()),
        SessionFrame::Receipt(vec![]),
        rejected(None, RejectReason::Invalid, ""),
        cosigned(1),
    ] {
        let mut r = open_receiver();
        let step = r.on_input_pinned(Input::Frame(frame));
        match step {
            Step::Close(bad @ BadStream::Unexpected(_)) => {
                assert!(!bad.before_hello());
                assert_eq!(bad.to_string(), "unexpected frame type");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn undecodable_bytes_close_the_stream_and_nothing_more_is_read() {
    let mut r = open_receiver();
    let step = r.on_input_pinned(Input::Undecodable("bad magic".into()));
    assert!(matches!(step, Step::Close(BadStream::Undecodable(ref w)) if w == "bad magic"));
    assert!(matches!(
        r.on_input_pinned(Input::Frame(SessionFrame::Envelope(vec![1]))),
        Step::Stop
    ));
}

#[test]
fn an_unpinned_peers_hello_is_not_answered() {
    let mut r = Receiver::new(arcadia().id());
    let step = r.on_input(Input::Frame(hello(&arcadia())), false);
    assert!(matches!(step, Step::Unpinned), "{step:?}");
}

#[test]
fn a_frame_after_unpinning_stops_the_stream_and_nothing_more_is_read() {
    let mut r = open_receiver();
    assert!(matches!(
        r.on_input(Input::Frame(SessionFrame::Envelope(vec![1])), true),
        Step::Receive { .. }
    ));
    let step = r.on_input(
        Input::Frame(SessionFrame::Checkpoint {
            note: "note".into(),
            old_size: 0,
            proof: vec![],
        }),
        false,
    );
    assert!(matches!(step, Step::Unpinned), "{step:?}");
    // Pinned again later, the same stream stays closed.
    assert!(matches!(
        r.on_input_pinned(Input::Frame(SessionFrame::Envelope(vec![1]))),
        Step::Stop
    ));
}

fn restoration_frame(continuation: String, proof: Vec<Digest>) -> SessionFrame {
    use comity_protocol::audit::restoration::RestorationStatement;
    use comity_protocol::Timestamp;
    SessionFrame::Restoration {
        statement: Box::new(RestorationStatement {
            node: arcadia().id(),
            restored_size: 4,
            restored_root: Digest([1; 32]),
            backup_time: Timestamp(u64::MAX),
            restored_at: Timestamp(0),
            continuation_size: 5,
            continuation_root: Digest([2; 32]),
        }),
        signature: [0; 64],
        continuation,
        proof,
    }
}

#[test]
fn a_restoration_is_bounded_like_a_checkpoint() {
    let mut r = open_receiver();
    let step = r.on_input_pinned(Input::Frame(restoration_frame("n".into(), vec![])));
    assert!(matches!(step, Step::WitnessRestoration(_)), "{step:?}");
    let long = "n".repeat(MAX_CHECKPOINT_NOTE + 1);
    let step = r.on_input_pinned(Input::Frame(restoration_frame(long, vec![])));
    assert!(
        matches!(step, Step::Close(BadStream::OversizeCheckpoint)),
        "{step:?}"
    );
    let mut r = open_receiver();
    let proof = vec![Digest([0; 32]); MAX_PROOF_HASHES + 1];
    let step = r.on_input_pinned(Input::Frame(restoration_frame("n".into(), proof)));
    assert!(
        matches!(step, Step::Close(BadStream::OversizeCheckpoint)),
        "{step:?}"
    );
}

/// Session protocol 4 added the frame: on a connection that settled on 3
/// the dialler does not speak it, so it is a bad stream.
#[test]
fn a_restoration_on_a_version_3_connection_closes_the_stream() {
    let mut r = Receiver::new(arcadia().id()).speaking(crate::session::SessionVersion::V3);
    assert!(matches!(
        r.on_input_pinned(Input::Frame(hello(&arcadia()))),
        Step::Hello(_)
    ));
    let step = r.on_input_pinned(Input::Frame(restoration_frame("n".into(), vec![])));
    assert!(
        matches!(step, Step::Close(BadStream::Unexpected("restoration"))),
        "{step:?}"
    );
}
