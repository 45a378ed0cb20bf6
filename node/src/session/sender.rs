//! The dialling side of a session: it says hello, writes envelopes within
//! a window, matches each receipt or rejection to what it sent, and offers
//! our checkpoints to the peer as witness.
//!
//! [`Sender`] takes what the peer sent ([`Sender::on_frame`]) and what the
//! node did ([`Sender::sent`], [`Sender::offered`],
//! [`Sender::cosignature_stored`]) and says what to do next ([`Action`]).
//! It does no IO: the node's delivery task reads and writes the stream,
//! touches the store and the audit log, and tells it.

use std::collections::{HashMap, VecDeque};

use comity_protocol::identity::KeyError;
use comity_protocol::receipt::{Receipt, ReceiptError};
use comity_protocol::resend::ResendStatement;
use comity_protocol::session::{RejectReason, SessionFrame, WitnessRefusal};
use comity_protocol::{Digest, Identity, MessageId, NodeId, PeerKeys};

use super::{bounded, frame_name, SessionVersion};

/// What the node should do about a frame from the peer.
#[derive(Debug)]
pub enum Action {
    /// The peer's hello verified: these are its current keys (store the
    /// certificate if it changed). Envelopes may be sent from now on.
    Hello(Box<PeerKeys>),
    /// A verified receipt for a message in flight: record the delivery.
    Delivered {
        id: MessageId,
        digest: Digest,
        receipt: Vec<u8>,
    },
    /// Refused for good: the message has failed.
    Failed { id: MessageId, error: String },
    /// Refused for now: keep the message, record `error` and retry later.
    /// The session is over; the message is still in flight and comes back
    /// with [`Sender::take_unanswered`]. `reseal` when the peer does not
    /// know the key it was sealed to.
    Retry {
        id: MessageId,
        error: String,
        reseal: bool,
    },
    /// The receipt for a message in flight does not verify: record `error`
    /// on the message. The session is over; the message is resent after
    /// reconnecting, and the peer answers again.
    ReceiptRefused { id: MessageId, error: ReceiptError },
    /// A cosignature of the checkpoint offered: verify and store it, then
    /// call [`Sender::cosignature_stored`].
    CheckCosignature { size: u64, line: String },
    /// The witness last cosigned another size: offer again (the next
    /// [`Sender::checkpoint_to_offer`] starts from it).
    OfferAgain,
    /// The witness refused our checkpoint for a reason that is evidence
    /// (rolled back, forked, rewritten): record it and raise an alarm. Each
    /// size once.
    WitnessAlarm {
        size: u64,
        witnessed_size: u64,
        reason: WitnessRefusal,
        detail: String,
    },
    /// (Version 5.) The peer holds the envelope of a message in flight and
    /// wants its attachments: `next[i]` is where attachment `i` resumes
    /// (its chunk count: complete). The message is out of the window and
    /// awaiting them; send them, then call [`Sender::attachments_sent`]
    /// and send the envelope again for its receipt.
    SendAttachments { id: MessageId, next: Vec<u64> },
    /// Nothing to do (a repeated, late or unasked answer); why, for the log.
    Ignore(&'static str),
}

impl Action {
    /// The session cannot go on after this action.
    pub fn ends_session(&self) -> bool {
        matches!(self, Action::Retry { .. } | Action::ReceiptRefused { .. })
    }
}

/// The peer broke the protocol; the session ends, nothing is recorded on
/// any message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SenderError {
    #[error("expected hello, got {0}")]
    ExpectedHello(&'static str),
    #[error("bad encryption key: {0}")]
    BadKey(KeyError),
    #[error("unexpected frame {0}")]
    Unexpected(&'static str),
    #[error("undecodable receipt: {0}")]
    UndecodableReceipt(ReceiptError),
    #[error("no envelope may be sent before the peer's hello")]
    NotOpen,
    #[error("the session has ended")]
    Ended,
    #[error("the peer is no longer pinned")]
    Unpinned,
    #[error("the window of {0} envelopes in flight is full")]
    WindowFull(usize),
    #[error("message {0} is already in flight")]
    AlreadyInFlight(MessageId),
    #[error("the peer asked for the attachments of {id} {rounds} times on this connection and never receipted it")]
    EndlessAttachments { id: MessageId, rounds: u32 },
}

/// Times the peer may ask for one message's attachments on one connection.
/// More than one is honest (a stream of a lost connection still busy at
/// the receiver); without a bound, an acceptor that answers every envelope
/// with `AttachmentsWanted` would have us send it round as fast as the
/// connection allows.
const MAX_WANTED_ROUNDS: u32 = 8;

enum State {
    AwaitingHello,
    Open(Box<PeerKeys>),
    Ended,
}

/// One connection's sending side.
pub struct Sender {
    me: NodeId,
    /// Our earlier ids (identity transitions): envelopes we signed under
    /// one of them before the switch are still ours, and so are receipts
    /// addressed to it.
    earlier: Vec<NodeId>,
    peer: NodeId,
    /// The peer's earlier keys (its identity transitions): a receipt it
    /// signed under one of them, for an envelope it took before its switch,
    /// is its receipt still (it answers a duplicate with the receipt it
    /// gave first).
    peer_earlier: Vec<PeerKeys>,
    state: State,
    window: usize,
    in_flight: InFlight,
    witnessing: Witnessing,
    restoration: Option<Restoration>,
    /// Messages out of the window whose attachments are being sent, in the
    /// order the peer asked for them.
    awaiting_attachments: Vec<MessageId>,
    /// How often the peer asked for each message's attachments on this
    /// connection (until it receipts the message).
    wanted_rounds: HashMap<MessageId, u32>,
    /// Messages this connection cannot carry (attachments on a version
    /// before 5): back in the queue when the session ends.
    aside: Vec<MessageId>,
    version: SessionVersion,
}

/// Our log's restoration, to be presented to this witness until it
/// cosigns the continuation (see [`Sender::restoration_to_present`]).
struct Restoration {
    restored: u64,
    continuation: u64,
    state: RestorationState,
}

#[derive(PartialEq, Eq)]
enum RestorationState {
    /// Not yet presented on this connection.
    Due,
    /// Presented; no answer yet: no other checkpoint is offered meanwhile
    /// (the witness would refuse it for the rollback).
    Awaiting,
    /// Answered (accepted, or refused), or not needed: checkpoints are
    /// offered as usual.
    Settled,
}

impl Sender {
    /// A session from `me` to `peer`, with at most `window` envelopes
    /// unanswered; `cosigned` is the largest size the peer has cosigned
    /// (from the audit log).
    pub fn new(me: NodeId, peer: NodeId, window: usize, cosigned: u64) -> Sender {
        Sender {
            me,
            earlier: Vec::new(),
            peer,
            peer_earlier: Vec::new(),
            state: State::AwaitingHello,
            window: window.max(1),
            in_flight: InFlight::default(),
            witnessing: Witnessing {
                cosigned,
                ..Witnessing::default()
            },
            restoration: None,
            awaiting_attachments: Vec::new(),
            wanted_rounds: HashMap::new(),
            aside: Vec::new(),
            version: SessionVersion::V5,
        }
    }

    /// Also ours: `ids`, the keys this node had before (see `earlier`).
    pub fn with_earlier_ids(mut self, ids: &[NodeId]) -> Sender {
        self.earlier = ids.to_vec();
        self
    }

    /// The peer's keys before its identity transitions (see
    /// `peer_earlier`).
    pub fn with_peer_earlier_keys(mut self, keys: Vec<PeerKeys>) -> Sender {
        self.peer_earlier = keys;
        self
    }

    /// On a connection that settled on `version` (the newest by default).
    pub fn speaking(mut self, version: SessionVersion) -> Sender {
        self.version = version;
        self
    }

    /// Whether messages with attachments may be sent on this connection.
    pub fn carries_attachments(&self) -> bool {
        self.version >= SessionVersion::V5
    }

    /// Our log was restored to size `restored` and continues at the
    /// checkpoint of `continuation`: the peer is shown the restoration
    /// statement first, unless it has cosigned the continuation already.
    pub fn with_restoration(mut self, restored: u64, continuation: u64) -> Sender {
        self.restoration = Some(Restoration {
            restored,
            continuation,
            state: RestorationState::Due,
        });
        self
    }

    /// The restoration to present now, as (restored size, continuation
    /// size), if it is due; `cosigned` as for [`Sender::checkpoint_to_offer`].
    /// Call [`Sender::restoration_presented`] once it is sent.
    pub fn restoration_to_present(&mut self, cosigned: u64) -> Option<(u64, u64)> {
        self.witnessing.cosigned = self.witnessing.cosigned.max(cosigned);
        let cosigned = self.witnessing.cosigned;
        let r = self.restoration.as_mut()?;
        if r.state == RestorationState::Due && cosigned >= r.continuation {
            r.state = RestorationState::Settled;
        }
        (r.state == RestorationState::Due).then_some((r.restored, r.continuation))
    }

    /// The restoration was presented: its answer is a cosignature of the
    /// continuation, or a refusal of it.
    pub fn restoration_presented(&mut self) {
        if let Some(r) = &mut self.restoration {
            r.state = RestorationState::Awaiting;
            self.witnessing.offered = Some((r.restored, r.continuation));
        }
    }

    /// Whether offers wait for the restoration to be presented or answered.
    fn restoration_pending(&self) -> bool {
        self.restoration.as_ref().is_some_and(|r| {
            r.state != RestorationState::Settled && self.witnessing.cosigned < r.continuation
        })
    }

    /// The answer to the restoration (of the continuation's `size`) came.
    fn restoration_answered(&mut self, size: u64) {
        if let Some(r) = &mut self.restoration {
            if r.state == RestorationState::Awaiting && r.continuation == size {
                r.state = RestorationState::Settled;
            }
        }
    }

    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// The peer's verified keys, once its hello arrived.
    pub fn keys(&self) -> Option<&PeerKeys> {
        match &self.state {
            State::Open(k) => Some(k),
            _ => None,
        }
    }

    /// Whether another envelope may be written now.
    pub fn can_send(&self) -> bool {
        matches!(self.state, State::Open(_)) && self.in_flight.len() < self.window
    }

    /// Envelopes written and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Records that the envelope of `id`, whose digest is `digest`, is
    /// being written.
    pub fn sent(&mut self, id: MessageId, digest: Digest) -> Result<(), SenderError> {
        match self.state {
            State::AwaitingHello => return Err(SenderError::NotOpen),
            State::Ended => return Err(SenderError::Ended),
            State::Open(_) => {}
        }
        if self.in_flight.len() >= self.window {
            return Err(SenderError::WindowFull(self.window));
        }
        if !self.in_flight.insert(id, digest) {
            return Err(SenderError::AlreadyInFlight(id));
        }
        Ok(())
    }

    /// Everything written and not answered, in the order it was written
    /// (to be queued again in front when the connection ends).
    pub fn take_unanswered(&mut self) -> Vec<MessageId> {
        self.state = State::Ended;
        let mut ids = self.in_flight.take_all();
        // Their envelopes are held by the peer; sent again, they are
        // answered with where their attachments resume.
        ids.append(&mut self.awaiting_attachments);
        ids.append(&mut self.aside);
        ids
    }

    /// `id` cannot go on this connection: kept aside until it ends.
    pub fn set_aside(&mut self, id: MessageId) {
        self.aside.push(id);
    }

    /// The attachments of `id` are all with the peer: its envelope may be
    /// sent again (for the receipt). `false` if it was not awaiting them
    /// (the session ended meanwhile and took it back).
    pub fn attachments_sent(&mut self, id: &MessageId) -> bool {
        let before = self.awaiting_attachments.len();
        self.awaiting_attachments.retain(|a| a != id);
        self.awaiting_attachments.len() < before
    }

    /// Messages whose attachments are being sent.
    pub fn awaiting_attachments(&self) -> usize {
        self.awaiting_attachments.len()
    }

    /// Whether `id` was written on this connection and not yet answered.
    pub fn is_in_flight(&self, id: &MessageId) -> bool {
        self.in_flight.digest(id).is_some()
    }

    /// A frame from the peer. `pinned` says whether the peer is pinned
    /// *now*: a frame that arrives after it was unpinned (or repinned away
    /// from) ends the session unread, whatever it says.
    ///
    /// `log_size` tells our audit log's size now, asked only for a
    /// witness's refusal: a witness saying it cosigned more than that is
    /// not taken at its word.
    pub fn on_frame(
        &mut self,
        frame: SessionFrame,
        pinned: bool,
        log_size: impl FnOnce() -> u64,
    ) -> Result<Action, SenderError> {
        if !pinned {
            self.state = State::Ended;
            return Err(SenderError::Unpinned);
        }
        let keys = match &self.state {
            State::Ended => return Err(SenderError::Ended),
            State::AwaitingHello => return self.on_hello(frame),
            State::Open(keys) => keys,
        };
        let action = match frame {
            SessionFrame::Receipt(bytes) => {
                let receipt =
                    Receipt::from_bytes(&bytes).map_err(SenderError::UndecodableReceipt)?;
                let id = receipt.statement.message_id;
                let Some(digest) = self.in_flight.digest(&id) else {
                    return Ok(Action::Ignore("receipt for a message not in flight"));
                };
                // Addressed to the id that signed the envelope: an earlier
                // one of ours if it was sealed before our switch (the
                // digest ties the receipt to our envelope all the same).
                let sender = receipt.statement.sender;
                let me = if self.earlier.contains(&sender) {
                    sender
                } else {
                    self.me
                };
                let signer = self
                    .peer_earlier
                    .iter()
                    .find(|k| *k.id() == receipt.statement.recipient)
                    .unwrap_or(keys);
                match receipt.verify(&me, signer, &id, &digest) {
                    Ok(()) => {
                        self.in_flight.answered(&id);
                        self.wanted_rounds.remove(&id);
                        Action::Delivered {
                            id,
                            digest,
                            receipt: bytes,
                        }
                    }
                    Err(error) => Action::ReceiptRefused { id, error },
                }
            }
            SessionFrame::Rejected { id, reason, detail } => {
                let Some(id) = id else {
                    return Ok(Action::Ignore("refusal that names no message"));
                };
                if self.in_flight.digest(&id).is_none() {
                    return Ok(Action::Ignore("refusal of a message not in flight"));
                }
                // The peer's words, bounded before they are kept and shown.
                let error = format!("refused by peer ({reason}): {}", bounded(&detail));
                if reason.is_permanent() {
                    self.in_flight.answered(&id);
                    Action::Failed { id, error }
                } else {
                    Action::Retry {
                        id,
                        error,
                        reseal: reason == RejectReason::UnknownEncryptionKey,
                    }
                }
            }
            SessionFrame::AttachmentsWanted { id, next } => {
                if self.version < SessionVersion::V5 {
                    return Err(SenderError::Unexpected("attachments-wanted"));
                }
                if self.in_flight.digest(&id).is_none() {
                    return Ok(Action::Ignore(
                        "attachments wanted for a message not in flight",
                    ));
                }
                let rounds = self.wanted_rounds.entry(id).or_insert(0);
                *rounds = rounds.saturating_add(1);
                if *rounds > MAX_WANTED_ROUNDS {
                    // Still in flight: taken back when the session ends.
                    return Err(SenderError::EndlessAttachments {
                        id,
                        rounds: *rounds,
                    });
                }
                self.in_flight.answered(&id);
                self.awaiting_attachments.push(id);
                Action::SendAttachments { id, next }
            }
            SessionFrame::Cosigned { size, line } => self.witnessing.on_cosigned(size, line),
            SessionFrame::CheckpointRefused {
                size,
                witnessed_size,
                reason,
                detail,
            } => {
                let action =
                    self.witnessing
                        .on_refused(size, witnessed_size, reason, detail, log_size());
                if !matches!(action, Action::Ignore(_)) {
                    self.restoration_answered(size);
                }
                action
            }
            other => return Err(SenderError::Unexpected(frame_name(&other))),
        };
        if action.ends_session() {
            self.state = State::Ended;
        }
        Ok(action)
    }

    fn on_hello(&mut self, frame: SessionFrame) -> Result<Action, SenderError> {
        let SessionFrame::Hello { cert } = frame else {
            return Err(SenderError::ExpectedHello(frame_name(&frame)));
        };
        let keys = PeerKeys::new(self.peer, cert).map_err(SenderError::BadKey)?;
        let keys = Box::new(keys);
        self.state = State::Open(keys.clone());
        Ok(Action::Hello(keys))
    }

    /// The checkpoint offer to make now, as (old size, new size), if
    /// `newest` (our newest durable checkpoint) has not been offered from
    /// where the witness stands; `cosigned` is the largest size the peer
    /// has cosigned as the audit log knows it now (another session may have
    /// stored one). Call [`Sender::offered`] once it is sent.
    pub fn checkpoint_to_offer(&mut self, newest: u64, cosigned: u64) -> Option<(u64, u64)> {
        self.witnessing.cosigned = self.witnessing.cosigned.max(cosigned);
        if self.restoration_pending() {
            return None;
        }
        let w = &mut self.witnessing;
        let old = w.from();
        (newest > old && w.offered != Some((old, newest))).then_some((old, newest))
    }

    /// The checkpoint of `new` was offered with a proof from `old`.
    pub fn offered(&mut self, old: u64, new: u64) {
        self.witnessing.offered = Some((old, new));
    }

    /// The witness's cosignature on `size` did not verify: further ones for
    /// that size are not checked again (each costs a read and a signature
    /// check).
    pub fn cosignature_failed(&mut self, size: u64) {
        self.witnessing.failed = Some(size);
        self.restoration_answered(size);
    }

    /// The witness's cosignature on `size` verified and is stored.
    pub fn cosignature_stored(&mut self, size: u64) {
        let w = &mut self.witnessing;
        w.cosigned = w.cosigned.max(size);
        w.from = Some(size);
        self.restoration_answered(size);
    }

    /// The largest size the peer cosigned, as far as this session knows.
    pub fn cosigned(&self) -> u64 {
        self.witnessing.cosigned
    }
}

/// Envelopes written and not yet answered.
#[derive(Default)]
struct InFlight {
    /// Send order; answered ids are dropped from the front, so it stays as
    /// long as the window, not the session.
    order: VecDeque<MessageId>,
    digests: HashMap<MessageId, Digest>,
}

impl InFlight {
    fn len(&self) -> usize {
        self.digests.len()
    }

    fn insert(&mut self, id: MessageId, digest: Digest) -> bool {
        if self.digests.contains_key(&id) {
            return false;
        }
        self.digests.insert(id, digest);
        self.order.push_back(id);
        true
    }

    fn digest(&self, id: &MessageId) -> Option<Digest> {
        self.digests.get(id).copied()
    }

    fn answered(&mut self, id: &MessageId) {
        self.digests.remove(id);
        while self
            .order
            .front()
            .is_some_and(|front| !self.digests.contains_key(front))
        {
            self.order.pop_front();
        }
    }

    fn take_all(&mut self) -> Vec<MessageId> {
        let ids = self
            .order
            .drain(..)
            .filter(|id| self.digests.contains_key(id))
            .collect();
        self.digests.clear();
        ids
    }
}

/// This connection's part in having our checkpoints witnessed by the peer.
#[derive(Default)]
struct Witnessing {
    /// The largest size the peer cosigned.
    cosigned: u64,
    /// Where the next proof starts, when the peer said (a refusal for an
    /// old-size mismatch) or cosigned in this session.
    from: Option<u64>,
    /// The (old size, new size) last offered, so each is offered once.
    offered: Option<(u64, u64)>,
    /// The size whose refusal raised an alarm, so a repeated refusal does
    /// not raise it again.
    alarmed: Option<u64>,
    /// The size whose cosignature did not verify.
    failed: Option<u64>,
}

impl Witnessing {
    fn from(&self) -> u64 {
        self.from.unwrap_or(self.cosigned)
    }

    fn offered_size(&self) -> Option<u64> {
        self.offered.map(|(_, size)| size)
    }

    fn on_cosigned(&self, size: u64, line: String) -> Action {
        // Only for what we offered and it has not cosigned yet: a repeated
        // or unasked cosignature costs nothing.
        if self.offered_size() != Some(size) || size <= self.cosigned || self.failed == Some(size) {
            return Action::Ignore("cosignature not asked for");
        }
        Action::CheckCosignature { size, line }
    }

    fn on_refused(
        &mut self,
        size: u64,
        witnessed_size: u64,
        reason: WitnessRefusal,
        detail: String,
        log_size: u64,
    ) -> Action {
        if self.offered_size() != Some(size) || self.alarmed == Some(size) {
            return Action::Ignore("refusal of nothing offered, or repeated");
        }
        if reason == WitnessRefusal::OldSizeMismatch && witnessed_size <= log_size {
            self.from = Some(witnessed_size);
            return Action::OfferAgain;
        }
        self.alarmed = Some(size);
        Action::WitnessAlarm {
            size,
            witnessed_size,
            reason,
            detail: bounded(&detail),
        }
    }
}

/// The frame that carries the envelope `bytes` (digest `digest`) of our
/// message `id` to `to`: when the message resends `resend_of` and the
/// connection speaks version 3, a `ResentEnvelope` with our signed notice;
/// otherwise the envelope alone (a version-2 peer cannot read the notice;
/// the link then stays on this side).
pub fn envelope_frame(
    version: SessionVersion,
    me: &Identity,
    to: NodeId,
    id: MessageId,
    bytes: Vec<u8>,
    digest: Digest,
    resend_of: Option<MessageId>,
) -> Result<SessionFrame, comity_protocol::identity::SignError> {
    Ok(match resend_of {
        Some(original) if version >= SessionVersion::V3 => {
            let statement = ResendStatement {
                sender: me.id(),
                recipient: to,
                message_id: id,
                envelope_digest: digest,
                original,
            };
            SessionFrame::ResentEnvelope {
                envelope: bytes,
                original,
                signature: statement.sign(me)?,
            }
        }
        _ => SessionFrame::Envelope(bytes),
    })
}
