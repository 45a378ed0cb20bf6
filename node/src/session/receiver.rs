//! The accepting side of a session: the peer's hello first, then what each
//! frame asks of the node — receive an envelope, witness a checkpoint,
//! refuse an oversize envelope by name — or why the stream must close.
//!
//! [`Receiver`] does no IO: the node's stream task reads frames, hands
//! them over as [`Input`] with whether the peer is pinned at that moment,
//! and carries out the [`Step`] it gets back.

use comity_protocol::audit::restoration::RestorationStatement;
use comity_protocol::identity::KeyError;
use comity_protocol::session::{SessionFrame, MAX_CHECKPOINT_NOTE, MAX_PROOF_HASHES};
use comity_protocol::{Digest, MessageId, NodeId, PeerKeys};

use super::{frame_name, SessionVersion};

/// What arrived on the stream.
#[derive(Debug)]
pub enum Input {
    Frame(SessionFrame),
    /// A frame longer than this node accepts, skipped unread; `id` if it
    /// was an envelope whose id could be read.
    Oversize {
        len: usize,
        id: Option<MessageId>,
    },
    /// Bytes that do not decode as a frame (the decoder's words).
    Undecodable(String),
    /// The peer finished the stream between frames.
    End,
}

/// What the node should do next.
#[derive(Debug)]
pub enum Step {
    /// The peer's hello verified: answer with ours.
    Hello(Box<PeerKeys>),
    /// (Version 5.) The stream is an attachment stream, not a session:
    /// the peer offers attachment `index` of its message `id`. This
    /// machine is done; [`super::attachment::Intake`] takes the stream.
    AttachmentOffer { id: MessageId, index: u32 },
    /// Check, open and store this envelope; answer with a receipt or a
    /// rejection. With `resends`, it says it resends an earlier message.
    Receive {
        envelope: Vec<u8>,
        resends: Option<ResendClaim>,
    },
    /// Witness the peer's checkpoint; answer with a cosignature or refusal.
    Witness {
        note: String,
        old_size: u64,
        proof: Vec<Digest>,
    },
    /// Check the peer's restoration statement as its witness; answer with
    /// a cosignature of the continuation or a refusal.
    WitnessRestoration(Box<RestorationClaim>),
    /// Refuse envelope `id` as too large (permanently), and go on.
    RejectOversize { id: MessageId, len: usize },
    /// The peer broke the protocol: record it and close the stream after
    /// the answers already due.
    Close(BadStream),
    /// The peer is not pinned (any more): stop reading and answer nothing.
    /// Nothing is recorded; closing is enough.
    Unpinned,
    /// The stream ended cleanly, or had already been closed: stop reading.
    Stop,
}

/// A `ResentEnvelope`'s claim, unchecked: the sender's earlier message
/// and its signature over the resend statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendClaim {
    pub original: MessageId,
    pub signature: [u8; 64],
}

/// A `Restoration` frame's content, unchecked (sizes bounded).
#[derive(Debug)]
pub struct RestorationClaim {
    pub statement: RestorationStatement,
    pub signature: [u8; 64],
    pub continuation: String,
    pub proof: Vec<Digest>,
}

/// How a peer broke the session protocol; recorded as a rejection.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadStream {
    #[error("stream did not start with a hello")]
    NoHello,
    #[error("encryption key refused: {0}")]
    BadKey(KeyError),
    #[error("oversize checkpoint or proof")]
    OversizeCheckpoint,
    #[error("oversize frame ({0} bytes) that is not an envelope")]
    OversizeFrame(usize),
    #[error("unexpected frame type")]
    Unexpected(&'static str),
    #[error("{0}")]
    Undecodable(String),
}

impl BadStream {
    /// Whether the stream gets answers at all: a stream that failed its
    /// hello is stopped without one.
    pub fn before_hello(&self) -> bool {
        matches!(self, BadStream::NoHello | BadStream::BadKey(_))
    }
}

enum State {
    AwaitingHello,
    Open,
    Closed,
}

/// One stream's accepting side.
pub struct Receiver {
    peer: NodeId,
    state: State,
    version: SessionVersion,
}

impl Receiver {
    /// A stream from `peer` (the node id its connection proved).
    pub fn new(peer: NodeId) -> Receiver {
        Receiver {
            peer,
            state: State::AwaitingHello,
            version: SessionVersion::V5,
        }
    }

    /// On a connection that settled on `version` (the newest by default).
    pub fn speaking(mut self, version: SessionVersion) -> Receiver {
        self.version = version;
        self
    }

    /// What to do with `input`; `pinned` is whether the peer is pinned at
    /// this moment (checked for every frame, not once per stream).
    pub fn on_input(&mut self, input: Input, pinned: bool) -> Step {
        if !pinned {
            self.state = State::Closed;
            return Step::Unpinned;
        }
        match self.state {
            State::Closed => Step::Stop,
            State::AwaitingHello => {
                let step = self.on_hello(input);
                self.state = match step {
                    Step::Hello(_) => State::Open,
                    _ => State::Closed,
                };
                step
            }
            State::Open => {
                let step = on_frame(input, self.version);
                if matches!(step, Step::Close(_) | Step::Stop) {
                    self.state = State::Closed;
                }
                step
            }
        }
    }

    fn on_hello(&self, input: Input) -> Step {
        match input {
            Input::End => Step::Stop,
            Input::Frame(SessionFrame::Hello { cert }) => match PeerKeys::new(self.peer, cert) {
                Ok(keys) => Step::Hello(Box::new(keys)),
                Err(e) => Step::Close(BadStream::BadKey(e)),
            },
            Input::Frame(SessionFrame::AttachmentOffer { id, index })
                if self.version >= SessionVersion::V5 =>
            {
                Step::AttachmentOffer { id, index }
            }
            _ => Step::Close(BadStream::NoHello),
        }
    }
}

fn on_frame(input: Input, version: SessionVersion) -> Step {
    match input {
        Input::End => Step::Stop,
        Input::Frame(SessionFrame::Envelope(envelope)) => Step::Receive {
            envelope,
            resends: None,
        },
        // Accepted whatever the connection's version: a node that sends it
        // knows it, and nothing in it is acted on before it is checked.
        Input::Frame(SessionFrame::ResentEnvelope {
            envelope,
            original,
            signature,
        }) => Step::Receive {
            envelope,
            resends: Some(ResendClaim {
                original,
                signature,
            }),
        },
        Input::Frame(SessionFrame::Checkpoint {
            note,
            old_size,
            proof,
        }) => {
            if note.len() > MAX_CHECKPOINT_NOTE || proof.len() > MAX_PROOF_HASHES {
                Step::Close(BadStream::OversizeCheckpoint)
            } else {
                Step::Witness {
                    note,
                    old_size,
                    proof,
                }
            }
        }
        // Only a dialler that negotiated version 4 sends it.
        Input::Frame(f @ SessionFrame::Restoration { .. }) if version < SessionVersion::V4 => {
            Step::Close(BadStream::Unexpected(frame_name(&f)))
        }
        Input::Frame(SessionFrame::Restoration {
            statement,
            signature,
            continuation,
            proof,
        }) => {
            if continuation.len() > MAX_CHECKPOINT_NOTE || proof.len() > MAX_PROOF_HASHES {
                Step::Close(BadStream::OversizeCheckpoint)
            } else {
                Step::WitnessRestoration(Box::new(RestorationClaim {
                    statement: *statement,
                    signature,
                    continuation,
                    proof,
                }))
            }
        }
        Input::Frame(other) => Step::Close(BadStream::Unexpected(frame_name(&other))),
        Input::Oversize { len, id: Some(id) } => Step::RejectOversize { id, len },
        Input::Oversize { len, id: None } => Step::Close(BadStream::OversizeFrame(len)),
        Input::Undecodable(why) => Step::Close(BadStream::Undecodable(why)),
    }
}
