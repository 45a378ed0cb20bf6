//! Attachment streams (session protocol 5), both ends, without IO.
//!
//! The dialler opens a stream per attachment and offers it
//! (`AttachmentOffer`); the acceptor answers where to begin
//! (`AttachmentFrom`), takes the chunk table if it asked for it and the
//! chunks in order, and ends with `AttachmentComplete`, or with
//! `AttachmentRefused` at the first thing it cannot take. The chunks
//! themselves are checked by the protocol's `Opener` (tag, hash, order,
//! length) on the acceptor; these machines only check what each side may
//! say when.

use comity_protocol::session::{AttachmentRefusal, SessionFrame};
use comity_protocol::MessageId;

use super::frame_name;
use super::receiver::{BadStream, Input};

/// The acceptor's side of an attachment stream, once its offer was
/// answered with `AttachmentFrom`.
#[derive(Debug)]
pub struct Intake {
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Table,
    Chunk,
    Done,
}

/// What the acceptor's node should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum IntakeStep {
    /// Verify the chunk table and begin the file.
    Table(Vec<u8>),
    /// Verify the chunk and make it durable.
    Chunk { index: u64, bytes: Vec<u8> },
    /// The dialler ended the stream before the last chunk: keep what is
    /// durable; a new offer resumes from it.
    Truncated,
    /// The dialler broke the protocol: record it and close.
    Close(BadStream),
    /// The dialler is not pinned (any more): stop, answer nothing.
    Unpinned,
    /// Nothing more is read on this stream.
    Stop,
}

impl Intake {
    /// After answering `AttachmentFrom { table, .. }`.
    pub fn new(table: bool) -> Intake {
        Intake {
            expect: if table { Expect::Table } else { Expect::Chunk },
        }
    }

    /// What to do with `input`; `pinned` is checked for every frame.
    pub fn on_input(&mut self, input: Input, pinned: bool) -> IntakeStep {
        if !pinned {
            self.expect = Expect::Done;
            return IntakeStep::Unpinned;
        }
        let step = match (self.expect, input) {
            (Expect::Done, _) => return IntakeStep::Stop,
            (Expect::Table, Input::Frame(SessionFrame::AttachmentTable(bytes))) => {
                self.expect = Expect::Chunk;
                return IntakeStep::Table(bytes);
            }
            (Expect::Chunk, Input::Frame(SessionFrame::AttachmentChunk { index, bytes })) => {
                return IntakeStep::Chunk { index, bytes };
            }
            (_, Input::End) => IntakeStep::Truncated,
            (_, Input::Frame(other)) => {
                IntakeStep::Close(BadStream::Unexpected(frame_name(&other)))
            }
            (_, Input::Oversize { len, .. }) => IntakeStep::Close(BadStream::OversizeFrame(len)),
            (_, Input::Undecodable(why)) => IntakeStep::Close(BadStream::Undecodable(why)),
        };
        self.expect = Expect::Done;
        step
    }

    /// The node refused something or has the whole attachment: the stream
    /// is over.
    pub fn finished(&mut self) {
        self.expect = Expect::Done;
    }
}

/// The dialler's side of one attachment stream.
#[derive(Debug)]
pub struct Outlet {
    id: MessageId,
    index: u32,
    chunks: u64,
    state: OutletState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutletState {
    Offered,
    Sending,
    Done,
}

/// What the dialler's node should do about the acceptor's answer.
#[derive(Debug, PartialEq, Eq)]
pub enum OutletAction {
    /// Send the chunks from `from_chunk` on, the chunk table first if
    /// `table`; then wait for the next answer.
    Send { from_chunk: u64, table: bool },
    /// The acceptor holds the whole attachment, verified and durable.
    Complete,
    /// The acceptor refused; `next` is where a new offer resumes.
    Refused {
        reason: AttachmentRefusal,
        next: u64,
        detail: String,
    },
}

/// The acceptor broke the protocol on an attachment stream.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutletError {
    #[error("unexpected frame {0} on an attachment stream")]
    Unexpected(&'static str),
    #[error("asked to begin at chunk {from} of an attachment of {chunks} chunks")]
    BeyondEnd { from: u64, chunks: u64 },
    #[error("completion named another attachment ({id} #{index})")]
    OtherAttachment { id: MessageId, index: u32 },
    #[error("completion before the last chunk was sent")]
    EarlyCompletion,
    #[error("the stream is over")]
    Over,
}

impl Outlet {
    /// Offers attachment `index` (of `chunks` chunks) of message `id`:
    /// the machine, and the frame to write first.
    pub fn offer(id: MessageId, index: u32, chunks: u64) -> (Outlet, SessionFrame) {
        let outlet = Outlet {
            id,
            index,
            chunks,
            state: OutletState::Offered,
        };
        (outlet, SessionFrame::AttachmentOffer { id, index })
    }

    /// The acceptor's answer. `all_sent` says whether every chunk from the
    /// one asked for to the last has been written.
    pub fn on_frame(
        &mut self,
        frame: SessionFrame,
        all_sent: bool,
    ) -> Result<OutletAction, OutletError> {
        let action = match (self.state, frame) {
            (OutletState::Done, _) => return Err(OutletError::Over),
            (OutletState::Offered, SessionFrame::AttachmentFrom { from_chunk, table }) => {
                if from_chunk >= self.chunks {
                    self.state = OutletState::Done;
                    return Err(OutletError::BeyondEnd {
                        from: from_chunk,
                        chunks: self.chunks,
                    });
                }
                self.state = OutletState::Sending;
                return Ok(OutletAction::Send { from_chunk, table });
            }
            (_, SessionFrame::AttachmentComplete { id, index }) => {
                if id != self.id || index != self.index {
                    Err(OutletError::OtherAttachment { id, index })
                } else if self.state == OutletState::Sending && !all_sent {
                    Err(OutletError::EarlyCompletion)
                } else {
                    Ok(OutletAction::Complete)
                }
            }
            (
                _,
                SessionFrame::AttachmentRefused {
                    reason,
                    next,
                    detail,
                },
            ) => Ok(OutletAction::Refused {
                reason,
                next,
                detail: super::bounded(&detail),
            }),
            (_, other) => Err(OutletError::Unexpected(frame_name(&other))),
        };
        self.state = OutletState::Done;
        action
    }
}
