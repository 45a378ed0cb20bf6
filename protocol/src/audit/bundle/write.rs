//! Writing a bundle: [`BundleWriter`] and the serde shapes of its lines.

use std::borrow::Cow;
use std::io::{self, Write};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;

use super::{CosignatureRecord, FORMAT};
use crate::audit::checkpoint::{origin_for, Checkpoint, CheckpointError};
use crate::audit::entry::{AuditEntry, EntryError};
use crate::audit::note::{Note, NoteError, NoteSignature};
use crate::identity::NodeId;

#[derive(Serialize)]
struct HeaderOut<'a> {
    format: &'a str,
    origin: &'a str,
    node_id: &'a NodeId,
    public_key: String,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    entry: u64,
    leaf: &'a str,
    fields: &'a AuditEntry,
}

#[derive(Serialize)]
struct CheckpointOut<'a> {
    checkpoint: &'a str,
}

#[derive(Serialize)]
struct CosignatureOut<'a> {
    cosignature: CosignatureRecord<'a>,
}

/// Why a bundle could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleWriteError {
    #[error("cannot write the bundle: {0}")]
    Io(#[from] io::Error),
    #[error("entry {position} of the export is not a valid audit leaf: {error}")]
    Entry { position: u64, error: EntryError },
    #[error("entries must all come before the first checkpoint")]
    EntryAfterCheckpoint,
    #[error("checkpoint is malformed: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("checkpoint is for origin {found:?}, this bundle is for {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("checkpoints must be written in increasing size: {size} after {previous}")]
    CheckpointOrder { size: u64, previous: u64 },
    #[error("cosignature line is malformed: {0}")]
    Cosignature(NoteError),
    #[error("cannot encode a bundle line: {0}")]
    Json(String),
}

/// Writes a bundle line by line to any `Write` (wrap files in a
/// `BufWriter`): the header on creation, then entries in order, then
/// checkpoints in increasing size and cosignatures.
///
/// The exporter should sign a fresh checkpoint covering every exported
/// entry and write it last: the verifier reports entries no checkpoint
/// covers.
#[derive(Debug)]
pub struct BundleWriter<W: Write> {
    out: W,
    origin: String,
    entries: u64,
    in_tail: bool,
    last_checkpoint: Option<u64>,
    b64: String,
    line: Vec<u8>,
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle of `node`'s log by writing the header line.
    pub fn new(out: W, node: &NodeId) -> Result<Self, BundleWriteError> {
        let origin = origin_for(node);
        let header = HeaderOut {
            format: FORMAT,
            origin: &origin,
            node_id: node,
            public_key: hex::encode(node.as_bytes()),
        };
        let mut line = Vec::with_capacity(4096);
        serde_json::to_writer(&mut line, &header)
            .map_err(|e| BundleWriteError::Json(e.to_string()))?;
        let mut w = BundleWriter {
            out,
            origin,
            entries: 0,
            in_tail: false,
            last_checkpoint: None,
            b64: String::new(),
            line,
        };
        w.line.push(b'\n');
        w.out.write_all(&w.line)?;
        Ok(w)
    }

    fn write_line<T: Serialize>(&mut self, value: &T) -> Result<(), BundleWriteError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)
            .map_err(|e| BundleWriteError::Json(e.to_string()))?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        Ok(())
    }

    /// Writes the next entry: its exact leaf bytes, and the decoded fields.
    pub fn write_entry(&mut self, leaf: &[u8]) -> Result<(), BundleWriteError> {
        if self.in_tail {
            return Err(BundleWriteError::EntryAfterCheckpoint);
        }
        let entry = AuditEntry::from_leaf(leaf).map_err(|error| BundleWriteError::Entry {
            position: self.entries,
            error,
        })?;
        let mut b64 = std::mem::take(&mut self.b64);
        b64.clear();
        BASE64.encode_string(leaf, &mut b64);
        let r = self.write_line(&EntryOut {
            entry: entry.seq,
            leaf: &b64,
            fields: &entry,
        });
        self.b64 = b64;
        r?;
        self.entries += 1;
        Ok(())
    }

    /// Writes a signed checkpoint (note text, possibly with cosignatures).
    pub fn write_checkpoint(&mut self, note_text: &str) -> Result<(), BundleWriteError> {
        let note = Note::parse(note_text).map_err(CheckpointError::from)?;
        let cp = Checkpoint::parse_body(note.text())?;
        if cp.origin != self.origin {
            return Err(BundleWriteError::WrongOrigin {
                expected: self.origin.clone(),
                found: cp.origin,
            });
        }
        if let Some(previous) = self.last_checkpoint {
            if cp.size < previous {
                return Err(BundleWriteError::CheckpointOrder {
                    size: cp.size,
                    previous,
                });
            }
        }
        self.write_line(&CheckpointOut {
            checkpoint: note_text,
        })?;
        self.in_tail = true;
        self.last_checkpoint = Some(cp.size);
        Ok(())
    }

    /// Writes a witness's cosignature line on the checkpoint of that size.
    pub fn write_cosignature(
        &mut self,
        checkpoint_size: u64,
        witness: &NodeId,
        witness_name: &str,
        line: &str,
    ) -> Result<(), BundleWriteError> {
        NoteSignature::parse_line(line).map_err(BundleWriteError::Cosignature)?;
        let line = line.strip_suffix('\n').unwrap_or(line);
        self.write_line(&CosignatureOut {
            cosignature: CosignatureRecord {
                checkpoint_size,
                witness: Cow::Owned(witness.to_string()),
                witness_name: Cow::Borrowed(witness_name),
                line: Cow::Borrowed(line),
            },
        })?;
        self.in_tail = true;
        Ok(())
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> Result<W, BundleWriteError> {
        self.out.flush()?;
        Ok(self.out)
    }
}
