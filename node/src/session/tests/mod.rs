//! The session core without sockets: each test feeds frames and node events
//! and asserts the one action or error that must come out. Fixtures here;
//! the dialler's tests in `sender.rs`, the acceptor's in `receiver.rs`.

mod attachment;
mod receiver;
mod sender;

use std::collections::HashMap;
use std::time::Duration;

use comity_protocol::envelope::{check, seal, CheckPolicy};
use comity_protocol::message::{Body, Consultation};
use comity_protocol::receipt::Receipt;
use comity_protocol::session::{RejectReason, SessionFrame};
use comity_protocol::{Digest, Identity, MessageId, Timestamp};

use super::sender::{Action, Sender};

pub(super) fn arcadia() -> Identity {
    Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0))
}

pub(super) fn borduria() -> Identity {
    Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0))
}

pub(super) fn carpania() -> Identity {
    Identity::from_seeds(&[5; 32], &[6; 32], Timestamp(0))
}

pub(super) fn hello(of: &Identity) -> SessionFrame {
    SessionFrame::Hello {
        cert: of.encryption_cert().clone(),
    }
}

pub(super) fn id(n: u8) -> MessageId {
    MessageId([n; 16])
}

/// An envelope from `from` to `to`, and the receipt `signer` signs for it
/// after opening it as `to` would.
pub(super) fn delivered(
    from: &Identity,
    to: &Identity,
    signer: &Identity,
    id: MessageId,
) -> (Digest, Vec<u8>) {
    let body = Body::Consultation(Consultation {
        regarding: None,
        subject: "Before a formal request".into(),
        body: "Would a request for bank records be admissible?".into(),
        thread: Default::default(),
    });
    let now = Timestamp::now();
    let sealed = seal(from, to.public(), id, now, &body, &mut rand::rng()).unwrap();
    let policy = CheckPolicy {
        now,
        max_future_skew: Duration::from_secs(60),
        max_age: Duration::from_secs(3600),
        max_envelope_bytes: 1 << 20,
    };
    let seen: HashMap<_, _> = HashMap::new();
    let opened = check(
        &sealed.bytes,
        to,
        std::slice::from_ref(from.public()),
        &seen,
        &policy,
    )
    .unwrap()
    .open(to)
    .unwrap();
    let receipt = Receipt::sign(signer, &opened, now)
        .unwrap()
        .to_bytes()
        .unwrap();
    (sealed.digest, receipt)
}

/// A sender from Arcadia to Borduria past the hello.
pub(super) fn open_sender(window: usize, cosigned: u64) -> Sender {
    let mut s = Sender::new(arcadia().id(), borduria().id(), window, cosigned);
    let a = s.on_frame(hello(&borduria()), true, || 0).unwrap();
    assert!(matches!(a, Action::Hello(k) if *k.id() == borduria().id()));
    s
}

pub(super) fn rejected(id: Option<MessageId>, reason: RejectReason, detail: &str) -> SessionFrame {
    SessionFrame::Rejected {
        id,
        reason,
        detail: detail.into(),
    }
}
