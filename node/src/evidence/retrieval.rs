//! Reading an attachment's plaintext out (`comity attachment get`): every
//! chunk decrypted and checked again as it is read, and every retrieval an
//! audit entry.
//!
//! The entry (`attachment-retrieved`, actor operator, detail `attachment I
//! size S sha256 H`) is recorded and made durable *before* the first byte
//! is handed out: the evidence leaves the node as the read proceeds, so a
//! client that stops one byte short, or a node killed mid-read, must not
//! leave a read-out unrecorded. A read that fails a check (a chunk altered
//! or lost on disk) records a second entry, the same detail followed by
//! `aborted after B bytes: REASON`. A client that hangs up early is not
//! recorded again: the first entry already says the evidence was read out.

use std::sync::Arc;

use comity_protocol::attachment::{AttachmentManifest, CheckedAttachment};
use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::{Digest, MessageId, NodeId};
use std::io::Read;

use super::{AttachmentView, Evidence, HeldMessage, Holder};
use crate::attachments::{AttachmentError, IncomingKey, PlaintextReader, StoredAttachment};
use crate::audit::{AuditError, AuditLog, Fact};
use crate::lookup::{FindError, MessageRef};
use crate::store::StoreError;

/// Why an attachment cannot be read out.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    #[error(transparent)]
    Find(#[from] FindError),
    #[error("message {id} has {count} attachments; there is no attachment {index}")]
    NoSuchAttachment {
        id: MessageId,
        index: usize,
        count: usize,
    },
    #[error(
        "attachment {} of message {id} is still arriving ({} of {} bytes): it can be read out once complete",
        view.index, view.bytes_done, view.manifest.size
    )]
    Incomplete {
        id: MessageId,
        view: Box<AttachmentView>,
    },
    #[error(
        "attachment {} of message {id} is complete, but the message is still arriving (other attachments are not): it can be read out once the message is received",
        view.index
    )]
    MessageArriving {
        id: MessageId,
        view: Box<AttachmentView>,
    },
    /// The stored copy is missing or does not match its signed manifest;
    /// recorded in the audit log.
    #[error("attachment {index} of message {id} cannot be read: {source}")]
    Unreadable {
        id: MessageId,
        index: usize,
        source: AttachmentError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
}

/// A read that stopped at a chunk failing its checks: no byte of that
/// chunk was handed out. Already recorded in the audit log (not yet
/// committed).
#[derive(Debug, thiserror::Error)]
#[error("attachment {index} of message {message}: read aborted after {after} bytes: {reason}")]
pub struct RetrievalAborted {
    pub message: MessageId,
    pub index: usize,
    pub after: u64,
    pub reason: String,
}

/// An attachment being read out, audited, one chunk in memory.
pub struct Retrieval {
    pub message: MessageId,
    pub peer: NodeId,
    pub index: usize,
    /// The signed manifest: `size` is the exact length that will be read.
    pub manifest: AttachmentManifest,
    reader: PlaintextReader,
    done: u64,
    /// A check failed: nothing more is read (or recorded again).
    failed: bool,
    audit: Arc<AuditLog>,
    digest: Option<Digest>,
}

impl std::fmt::Debug for Retrieval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrieval")
            .field("message", &self.message)
            .field("index", &self.index)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// The audit detail naming an attachment read out.
fn detail(index: usize, m: &AttachmentManifest) -> String {
    format!("attachment {index} size {} sha256 {}", m.size, m.sha256)
}

/// The `attachment-retrieved` entry about `held` with `detail`.
fn retrieved<'a>(held: &HeldMessage, detail: &'a str) -> Fact<'a> {
    Fact::new(AuditKind::AttachmentRetrieved, Actor::Operator)
        .peer(held.peer())
        .message(held.id())
        .digest(held.envelope_digest())
        .detail(detail)
}

/// Longest failure reason kept in an entry (the detail stays one short line).
const MAX_REASON: usize = 300;

fn reason_of(e: &dyn std::fmt::Display) -> String {
    crate::store::alarms::cut(&e.to_string(), MAX_REASON)
}

impl Evidence<'_> {
    /// Opens attachment `index` of the message `r` names for reading out,
    /// after recording the retrieval and committing the store (so the
    /// entry is durable before any plaintext leaves). Blocking file reads:
    /// call it off the async threads.
    pub fn open_retrieval(&self, r: &MessageRef, index: usize) -> Result<Retrieval, RetrieveError> {
        let held = self.message(r)?;
        let id = held.id();
        let count = held.attachments.len();
        if index >= count {
            return Err(RetrieveError::NoSuchAttachment { id, index, count });
        }
        let view = self
            .view(&held, index)
            .map_err(|source| RetrieveError::Unreadable { id, index, source })?;
        if !view.state.is_retrievable() {
            return Err(RetrieveError::Incomplete {
                id,
                view: Box::new(view),
            });
        }
        if matches!(held.holder, Holder::Arriving { .. }) {
            return Err(RetrieveError::MessageArriving {
                id,
                view: Box::new(view),
            });
        }
        let manifest = view.manifest;
        let started = detail(index, &manifest);
        self.audit.record(retrieved(&held, &started))?;
        let opened = self.reader(&held, index);
        let reader = match opened {
            Ok(reader) => reader,
            Err(source) => {
                tracing::warn!(message = %id, index, error = %source, "attachment cannot be read out");
                let aborted = format!("{started} aborted after 0 bytes: {}", reason_of(&source));
                self.audit.note(retrieved(&held, &aborted));
                self.store.flush()?;
                return Err(RetrieveError::Unreadable { id, index, source });
            }
        };
        self.store.flush()?;
        self.progress.retrieved();
        Ok(Retrieval {
            message: id,
            peer: held.peer(),
            index,
            manifest,
            reader,
            done: 0,
            failed: false,
            audit: self.audit.clone(),
            digest: held.envelope_digest(),
        })
    }

    /// The verified plaintext of attachment `index`: the sender's copy, or
    /// the received file.
    fn reader(&self, held: &HeldMessage, index: usize) -> Result<PlaintextReader, AttachmentError> {
        let checked = checked(held, index)?;
        let manifest = checked.manifest();
        let stored = match &held.holder {
            Holder::Sent { .. } => {
                let stored_id =
                    held.attachments[index]
                        .stored
                        .ok_or_else(|| AttachmentError::Corrupt {
                            path: self.dir.root().join("sent"),
                            problem: "the store names no sender's copy of this attachment".into(),
                        })?;
                StoredAttachment::open(&self.dir.sent_path(stored_id), manifest)?
            }
            Holder::Received(_) | Holder::Arriving { .. } => {
                let key = IncomingKey {
                    peer: held.peer(),
                    message: held.id(),
                    index,
                };
                self.dir
                    .open_received(&key, manifest)?
                    .ok_or_else(|| AttachmentError::Corrupt {
                        path: self.dir.root().join("received"),
                        problem: "the complete file is not there".into(),
                    })?
            }
        };
        PlaintextReader::new(stored, &checked)
    }
}

/// Attachment `index` of `held` with its manifests checked again (a
/// store written by another version must not bypass the rules), against
/// the protocol's widest limits: it was accepted under the limits of its
/// day, and a stricter configuration since must not lock it away.
fn checked(held: &HeldMessage, index: usize) -> Result<CheckedAttachment, AttachmentError> {
    let kind = match &held.holder {
        Holder::Sent { message, .. } => message.kind,
        Holder::Received(m) => m.kind,
        // Not read out (see `open_retrieval`); any kind that carries content.
        Holder::Arriving { .. } => comity_protocol::message::MessageKind::Request,
    };
    let sealed = held.attachments.iter().map(|a| a.sealed.clone()).collect();
    crate::attachments::checked_again(kind, sealed, index)
}

impl Retrieval {
    /// Bytes handed out so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// The next verified plaintext, at most `max` bytes; `None` at the end
    /// (every chunk and the whole-file SHA-256 verified). On a failed check
    /// records the abort (commit afterwards) and hands out nothing more.
    pub fn next_piece(&mut self, max: usize) -> Result<Option<Vec<u8>>, RetrievalAborted> {
        if self.failed {
            return Err(self.aborted("an earlier chunk failed its check".into()));
        }
        let mut buf = vec![0u8; max.max(1)];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    buf.truncate(n);
                    self.done += n as u64;
                    return Ok(Some(buf));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = true;
                    return Err(self.abort(&e));
                }
            }
        }
    }

    fn abort(&self, e: &std::io::Error) -> RetrievalAborted {
        let reason = reason_of(e);
        tracing::warn!(
            message = %self.message,
            index = self.index,
            after = self.done,
            error = %reason,
            "attachment read-out aborted: the stored copy failed its check"
        );
        self.audit.note(
            Fact::new(AuditKind::AttachmentRetrieved, Actor::Operator)
                .peer(self.peer)
                .message(self.message)
                .digest(self.digest)
                .detail(&format!(
                    "{} aborted after {} bytes: {reason}",
                    detail(self.index, &self.manifest),
                    self.done
                )),
        );
        self.aborted(reason)
    }

    fn aborted(&self, reason: String) -> RetrievalAborted {
        RetrievalAborted {
            message: self.message,
            index: self.index,
            after: self.done,
            reason,
        }
    }
}
