//! The inclusion proof for one message: the log entries that name it, each
//! with its RFC 9162 audit path to a signed (and cosigned) checkpoint.
//!
//! It is what a central authority hands a court to show "we sent / we
//! received this message, and it is in our tamper-evident log", without
//! exporting the whole log. One JSON object; see `docs/audit.md`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::checkpoint::{cosigners, open_checkpoint, origin_for, Checkpoint, CheckpointError};
use super::custody::{chain_of_custody, AttachmentCustody};
use super::entry::{AuditEntry, EntryError};
use super::merkle::{self, ProofError, SubtreeHashes, TreeError};
use super::note::Note;
use crate::digest::Digest;
use crate::identity::NodeId;
use crate::ids::MessageId;

/// The `format` of a proof file.
pub const PROOF_FORMAT: &str = "comity-audit-proof/v1";
/// Largest proof file accepted.
pub const MAX_PROOF_FILE_BYTES: usize = 4 << 20;
/// Most entries in one proof file (a message has a handful of events).
pub const MAX_PROOF_ENTRIES: usize = 1000;

/// The proof file as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofFile {
    pub format: String,
    pub origin: String,
    pub node_id: NodeId,
    pub message_id: MessageId,
    /// The signed checkpoint note, with any cosignature lines.
    pub checkpoint: String,
    pub entries: Vec<ProofEntry>,
}

/// One entry and its audit path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofEntry {
    /// Leaf index in the log (= the entry's `seq`).
    pub index: u64,
    /// Base64 of the exact leaf bytes.
    pub leaf: String,
    /// The decoded leaf, for reading; checked against `leaf`.
    pub fields: AuditEntry,
    /// RFC 9162 inclusion path, nearest the leaf first, hex.
    pub proof: Vec<Digest>,
}

/// Why a proof file could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofBuildError<E> {
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("leaf {index}: {error}")]
    Entry { index: u64, error: EntryError },
    #[error("leaf {index} has seq {seq}: leaf index and seq must agree")]
    IndexNotSeq { index: u64, seq: u64 },
    #[error("leaf {index} does not name the message")]
    NotThisMessage { index: u64 },
    #[error("leaf {index} is not covered by the checkpoint of size {size}")]
    BeyondCheckpoint { index: u64, size: u64 },
    #[error("cannot compute the inclusion proof: {0}")]
    Tree(TreeError<E>),
    #[error("a proof needs at least one entry")]
    NoEntries,
}

/// Why a proof file does not prove what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofFileError {
    #[error("proof file is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("not a proof file: {0}")]
    Json(String),
    #[error("unsupported proof format {found:?} (this verifier reads {PROOF_FORMAT})")]
    UnsupportedFormat { found: String },
    #[error("origin is {found:?}, but node {node} has origin {expected:?}")]
    WrongOrigin {
        node: NodeId,
        expected: String,
        found: String,
    },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("the cosignature by witness {witness} does not verify: {error}")]
    CosignatureInvalid {
        witness: NodeId,
        error: CheckpointError,
    },
    #[error("the proof file has no entries")]
    NoEntries,
    #[error("the proof file has more than {max} entries")]
    TooManyEntries { max: usize },
    #[error("entry {index}: leaf is not base64")]
    LeafBase64 { index: u64 },
    #[error("entry {index}: leaf is not an audit entry: {error}")]
    Leaf { index: u64, error: EntryError },
    #[error("entry {index}: the fields shown differ from those in the leaf bytes")]
    FieldsMismatch { index: u64 },
    #[error("entry {index}: the leaf has seq {seq}: leaf index and seq must agree")]
    IndexNotSeq { index: u64, seq: u64 },
    #[error("entry {index} does not name message {message_id}")]
    NotThisMessage { index: u64, message_id: MessageId },
    #[error("entry {index} is not included in the checkpoint: {error}")]
    Inclusion { index: u64, error: ProofError },
}

/// A witness's valid cosignature on the proof's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cosigner {
    pub witness: NodeId,
    /// Seconds since the epoch.
    pub timestamp: u64,
}

/// What a valid proof file proves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProofReport {
    pub origin: String,
    pub node_id: NodeId,
    pub message_id: MessageId,
    pub checkpoint_size: u64,
    pub checkpoint_root: Digest,
    /// Witnesses whose cosignatures on the checkpoint verified.
    pub cosigners: Vec<Cosigner>,
    /// Signatures by keys this verifier does not know (ignored).
    pub ignored_signatures: u64,
    /// The entries, each proven included, in file order.
    pub entries: Vec<AuditEntry>,
    /// The attachments' chains of custody, from the entries above.
    pub custody: Vec<AttachmentCustody>,
}

impl InclusionProofFile {
    /// Builds the proof of `leaves` (leaf index, exact leaf bytes), which
    /// must all name `message_id`, against the signed checkpoint
    /// `checkpoint_text`, with audit paths computed from `store`.
    pub fn build<S: SubtreeHashes + ?Sized>(
        store: &S,
        node_id: &NodeId,
        message_id: MessageId,
        checkpoint_text: &str,
        leaves: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<Self, ProofBuildError<S::Error>> {
        let note = Note::parse(checkpoint_text).map_err(CheckpointError::from)?;
        let cp = Checkpoint::parse_body(note.text())?;
        let mut entries = Vec::new();
        for (index, leaf) in leaves {
            let fields = AuditEntry::from_leaf(&leaf)
                .map_err(|error| ProofBuildError::Entry { index, error })?;
            if fields.seq != index {
                return Err(ProofBuildError::IndexNotSeq {
                    index,
                    seq: fields.seq,
                });
            }
            if fields.message_id != Some(message_id) {
                return Err(ProofBuildError::NotThisMessage { index });
            }
            if index >= cp.size {
                return Err(ProofBuildError::BeyondCheckpoint {
                    index,
                    size: cp.size,
                });
            }
            let proof =
                merkle::inclusion_proof(store, index, cp.size).map_err(ProofBuildError::Tree)?;
            entries.push(ProofEntry {
                index,
                leaf: BASE64.encode(&leaf),
                fields,
                proof,
            });
        }
        if entries.is_empty() {
            return Err(ProofBuildError::NoEntries);
        }
        Ok(InclusionProofFile {
            format: PROOF_FORMAT.to_string(),
            origin: origin_for(node_id),
            node_id: *node_id,
            message_id,
            checkpoint: checkpoint_text.to_string(),
            entries,
        })
    }

    /// The file's text: pretty-printed JSON with a final newline.
    pub fn to_json(&self) -> String {
        // Strings, integers and hex digests always serialize.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Verifies a proof file: the checkpoint is signed by the file's node for
/// its origin, every cosignature on it by a Comity witness verifies, and
/// every entry names the message, matches its leaf, and is included in the
/// checkpoint's tree.
///
/// Whether the node and witnesses are the ones the reader trusts is for
/// the reader to compare: the report names them.
pub fn verify_inclusion_file(text: &str) -> Result<ProofReport, ProofFileError> {
    if text.len() > MAX_PROOF_FILE_BYTES {
        return Err(ProofFileError::TooLarge {
            len: text.len(),
            max: MAX_PROOF_FILE_BYTES,
        });
    }
    let file: InclusionProofFile =
        serde_json::from_str(text).map_err(|e| ProofFileError::Json(e.to_string()))?;
    if file.format != PROOF_FORMAT {
        return Err(ProofFileError::UnsupportedFormat {
            found: file.format.chars().take(80).collect(),
        });
    }
    let expected = origin_for(&file.node_id);
    if file.origin != expected {
        return Err(ProofFileError::WrongOrigin {
            node: file.node_id,
            expected,
            found: file.origin.chars().take(300).collect(),
        });
    }
    let (cp, note) = open_checkpoint(&file.checkpoint, &file.origin, &file.node_id)?;

    let (signers, ignored_signatures) = cosigners(&note, &file.origin, &file.node_id);
    let mut witnesses = Vec::new();
    for (witness, verified) in signers {
        let timestamp =
            verified.map_err(|error| ProofFileError::CosignatureInvalid { witness, error })?;
        witnesses.push(Cosigner { witness, timestamp });
    }

    if file.entries.is_empty() {
        return Err(ProofFileError::NoEntries);
    }
    if file.entries.len() > MAX_PROOF_ENTRIES {
        return Err(ProofFileError::TooManyEntries {
            max: MAX_PROOF_ENTRIES,
        });
    }
    let mut entries = Vec::with_capacity(file.entries.len());
    for e in file.entries {
        let index = e.index;
        let leaf = BASE64
            .decode(e.leaf.as_bytes())
            .map_err(|_| ProofFileError::LeafBase64 { index })?;
        let decoded =
            AuditEntry::from_leaf(&leaf).map_err(|error| ProofFileError::Leaf { index, error })?;
        if decoded != e.fields {
            return Err(ProofFileError::FieldsMismatch { index });
        }
        if decoded.seq != index {
            return Err(ProofFileError::IndexNotSeq {
                index,
                seq: decoded.seq,
            });
        }
        if decoded.message_id != Some(file.message_id) {
            return Err(ProofFileError::NotThisMessage {
                index,
                message_id: file.message_id,
            });
        }
        merkle::verify_inclusion(
            index,
            cp.size,
            &merkle::leaf_hash(&leaf),
            &e.proof,
            &cp.root,
        )
        .map_err(|error| ProofFileError::Inclusion { index, error })?;
        entries.push(decoded);
    }
    Ok(ProofReport {
        origin: file.origin,
        node_id: file.node_id,
        message_id: file.message_id,
        checkpoint_size: cp.size,
        checkpoint_root: cp.root,
        cosigners: witnesses,
        ignored_signatures,
        custody: chain_of_custody(&entries),
        entries,
    })
}
