//! The audit bundle: a node's whole log, exported for an auditor who trusts
//! nothing but the node's id (and, better, its witnesses' ids).
//!
//! JSON Lines, so a log of millions of entries streams in bounded memory:
//!
//! ```text
//! {"format":"comity-audit-bundle/v1","origin":"comity.invalid/<id>","node_id":"<id>","public_key":"<hex>"}
//! {"entry":0,"leaf":"<base64 of the exact leaf bytes>","fields":{…decoded AuditEntry…}}
//! …one line per entry, in order…
//! {"checkpoint":"<signed note text, possibly with cosignature lines>"}
//! {"cosignature":{"checkpoint_size":n,"witness":"<id>","witness_name":"…","line":"— …"}}
//! ```
//!
//! [`verify_bundle`] recomputes everything from the leaf bytes; the
//! `fields` are only a readable copy, checked against the leaf. The format
//! and algorithm are specified in `docs/audit.md`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, BufRead, Read as _, Write};
use std::sync::{mpsc, Arc, Mutex};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::checkpoint::{
    cosigners, open_checkpoint, origin_for, verify_cosignature_sig, Checkpoint, CheckpointError,
};
use super::entry::{Actor, AuditEntry, AuditKind, EntryError};
use super::merkle::{self, MemoryTree};
use super::note::{Note, NoteError, NoteSignature};
use crate::digest::Digest;
use crate::identity::NodeId;

/// The `format` of the header line.
pub const FORMAT: &str = "comity-audit-bundle/v1";

/// Longest line read; longer ones are reported and skipped, never buffered.
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// Findings kept in a report; the rest are only counted, so a bundle of
/// garbage cannot exhaust memory.
pub const MAX_FINDINGS: usize = 1000;

/// Lines handed to a worker at once.
const BATCH_LINES: usize = 4096;
/// Bytes of lines handed to a worker at once.
const BATCH_BYTES: usize = 4 << 20;

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

/// A cosignature kept apart from its checkpoint's note.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CosignatureRecord<'a> {
    checkpoint_size: u64,
    #[serde(borrow)]
    witness: Cow<'a, str>,
    #[serde(borrow)]
    witness_name: Cow<'a, str>,
    #[serde(borrow)]
    line: Cow<'a, str>,
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

/// What the auditor knows independently of the bundle.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The node whose log this must be, as pinned out of band. Without it
    /// the header's key is believed, which proves only that the bundle is
    /// self-consistent: require witnesses too.
    pub expected_node: Option<NodeId>,
    /// Witnesses that must have cosigned the newest checkpoint.
    pub required_witnesses: Vec<NodeId>,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
}

/// One thing wrong with a bundle, and where. `entry` is the 0-based
/// position of an entry line among the entry lines (its leaf index in the
/// recomputed tree); `line` is the 1-based line number in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "finding", rename_all = "kebab-case")]
pub enum Finding {
    #[error("line {line}: {why}")]
    Malformed { line: u64, why: String },
    #[error("the first line is not a bundle header")]
    MissingHeader,
    #[error("unsupported bundle format {found:?} (this verifier reads {FORMAT})")]
    UnsupportedFormat { found: String },
    #[error("line {line}: origin {found:?}, expected {expected:?}")]
    WrongOrigin {
        line: u64,
        expected: String,
        found: String,
    },
    #[error("the header's public key does not match its node id")]
    PublicKeyMismatch,
    #[error("the bundle is from node {found}, not from the expected node {expected}")]
    UnexpectedNode { expected: NodeId, found: NodeId },
    #[error("entry {entry} (line {line}): leaf is not a valid audit entry: {why}")]
    EntryUndecodable { entry: u64, line: u64, why: String },
    #[error("entry {entry} (line {line}): the fields shown differ from those in the leaf bytes")]
    EntryFieldsMismatch { entry: u64, line: u64 },
    #[error("entry {entry}: sequence number {found} where {expected} was expected: entries missing, duplicated or reordered")]
    SequenceGap {
        entry: u64,
        expected: u64,
        found: u64,
    },
    #[error("line {line}: checkpoint is malformed: {why}")]
    CheckpointMalformed { line: u64, why: String },
    #[error("line {line}: checkpoint at size {size} is not validly signed by the node")]
    CheckpointSignatureInvalid { line: u64, size: u64 },
    #[error("checkpoint at size {size} comes after one at the larger size {previous}")]
    CheckpointOutOfOrder { size: u64, previous: u64 },
    #[error("checkpoint at size {size} covers more than the {entries} entries in the bundle: the log was truncated")]
    CheckpointBeyondLog { size: u64, entries: u64 },
    #[error("checkpoint at size {size} has root {checkpoint_root}, but the entries give {expected_root}: entries were altered, removed or reordered, or the checkpoint is from a fork")]
    CheckpointRootMismatch {
        size: u64,
        expected_root: Digest,
        checkpoint_root: Digest,
    },
    #[error("checkpoints at sizes {older} and {newer} are inconsistent: the log was rewritten or forked")]
    CheckpointsInconsistent { older: u64, newer: u64 },
    #[error("no validly signed checkpoint: nothing attests the {entries} entries")]
    NoCheckpoint { entries: u64 },
    #[error("the newest checkpoint covers {checkpointed} of {entries} entries: the rest are not attested")]
    EntriesNotCheckpointed { checkpointed: u64, entries: u64 },
    #[error("cosignature by witness {witness} on the checkpoint at size {size} does not verify")]
    CosignatureInvalid { size: u64, witness: NodeId },
    #[error("line {line}: cosignature by {witness} is for a checkpoint at size {size}, which the bundle lacks")]
    CosignatureForUnknownCheckpoint {
        line: u64,
        size: u64,
        witness: NodeId,
    },
    #[error("required witness {witness} did not cosign the newest checkpoint (size {size})")]
    MissingCosignature { witness: NodeId, size: u64 },
}

/// The newest checkpoint a report vouches for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointSummary {
    pub size: u64,
    pub root: Digest,
}

/// A witness's valid cosignatures in the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WitnessSummary {
    pub witness: NodeId,
    /// Distinct checkpoint sizes it validly cosigned.
    pub cosigned_checkpoints: u64,
    pub newest_size: u64,
    /// Newest cosignature time, seconds since the epoch.
    pub newest_timestamp: u64,
}

/// What verification found. The bundle verified if [`Report::is_valid`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub origin: Option<String>,
    pub node_id: Option<NodeId>,
    /// Whether the node key was given by the auditor (not just the bundle).
    pub node_pinned: bool,
    pub lines: u64,
    pub entries: u64,
    /// Checkpoints with a valid signature by the node.
    pub checkpoints: u64,
    pub newest_checkpoint: Option<CheckpointSummary>,
    pub witnesses: Vec<WitnessSummary>,
    /// Note signatures by keys this verifier does not know (ignored).
    pub ignored_signatures: u64,
    pub findings: Vec<Finding>,
    /// Findings beyond [`MAX_FINDINGS`], counted but not kept.
    pub findings_omitted: u64,
}

impl Report {
    /// True if nothing at all was found wrong.
    pub fn is_valid(&self) -> bool {
        self.findings.is_empty() && self.findings_omitted == 0
    }
}

// ---------------------------------------------------------------- parsing

/// One line as read: only the key set tells what kind it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn<'a> {
    #[serde(borrow)]
    format: Option<Cow<'a, str>>,
    #[serde(borrow)]
    origin: Option<Cow<'a, str>>,
    #[serde(borrow)]
    node_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    public_key: Option<Cow<'a, str>>,
    entry: Option<u64>,
    #[serde(borrow)]
    leaf: Option<Cow<'a, str>>,
    #[serde(borrow)]
    fields: Option<FieldsIn<'a>>,
    #[serde(borrow)]
    checkpoint: Option<Cow<'a, str>>,
    #[serde(borrow)]
    cosignature: Option<CosignatureRecord<'a>>,
}

/// The `fields` of an entry line, compared with the leaf without parsing
/// node ids (which would cost a curve-point check per entry).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsIn<'a> {
    seq: u64,
    time: u64,
    kind: AuditKind,
    actor: Actor,
    #[serde(borrow, default)]
    peer: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    envelope_digest: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detail: Cow<'a, str>,
}

struct HeaderIn {
    format: String,
    origin: String,
    node_id: String,
    public_key: String,
}

struct CosignatureIn {
    checkpoint_size: u64,
    witness: String,
    witness_name: String,
    line: String,
}

enum EntryProblem {
    Undecodable(String),
    FieldsMismatch,
}

enum Item {
    Header(HeaderIn),
    Entry {
        hash: Digest,
        seq: Option<u64>,
        problem: Option<EntryProblem>,
    },
    Checkpoint(String),
    Cosignature(CosignatureIn),
    Malformed(String),
}

enum LineState {
    Complete,
    TooLong,
    NoFinalNewline,
}

struct Batch {
    no: u64,
    first_line: u64,
    buf: Vec<u8>,
    lines: Vec<(usize, usize, LineState)>,
}

struct BatchOut {
    no: u64,
    /// Each item with its 1-based line number.
    items: Vec<(u64, Item)>,
}

/// Per-worker buffers, reused across lines.
#[derive(Default)]
struct Scratch {
    leaf: Vec<u8>,
    peers: PeerCache,
}

fn process_batch(batch: Batch, scratch: &mut Scratch) -> BatchOut {
    let mut items = Vec::with_capacity(batch.lines.len());
    for (i, (start, end, state)) in batch.lines.iter().enumerate() {
        let line = batch.first_line + i as u64;
        match state {
            LineState::TooLong => items.push((
                line,
                Item::Malformed(format!("line is longer than {MAX_LINE_BYTES} bytes")),
            )),
            LineState::Complete => {
                items.push((line, process_line(&batch.buf[*start..*end], scratch)));
            }
            LineState::NoFinalNewline => {
                // Report the cut, and still use what the line says.
                items.push((
                    line,
                    Item::Malformed("the file ends in the middle of a line: truncated?".into()),
                ));
                items.push((line, process_line(&batch.buf[*start..*end], scratch)));
            }
        }
    }
    BatchOut {
        no: batch.no,
        items,
    }
}

fn process_line(bytes: &[u8], scratch: &mut Scratch) -> Item {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Item::Malformed("line is not UTF-8".into());
    };
    let line: LineIn<'_> = match serde_json::from_str(text) {
        Ok(l) => l,
        Err(e) => return Item::Malformed(format!("not a bundle line: {e}")),
    };
    let kinds = [
        line.format.is_some(),
        line.entry.is_some(),
        line.checkpoint.is_some(),
        line.cosignature.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Item::Malformed(
            "a line must have exactly one of \"format\", \"entry\", \"checkpoint\", \"cosignature\""
                .into(),
        );
    }
    let header_keys = line.origin.is_some() || line.node_id.is_some() || line.public_key.is_some();
    let entry_keys = line.leaf.is_some() || line.fields.is_some();
    if let Some(format) = line.format {
        if entry_keys {
            return Item::Malformed("header line with entry keys".into());
        }
        let (Some(origin), Some(node_id), Some(public_key)) =
            (line.origin, line.node_id, line.public_key)
        else {
            return Item::Malformed(
                "header needs \"origin\", \"node_id\" and \"public_key\"".into(),
            );
        };
        return Item::Header(HeaderIn {
            format: format.into_owned(),
            origin: origin.into_owned(),
            node_id: node_id.into_owned(),
            public_key: public_key.into_owned(),
        });
    }
    if header_keys {
        return Item::Malformed("header keys on a line that is not the header".into());
    }
    if let Some(label) = line.entry {
        let (Some(leaf_b64), Some(fields)) = (line.leaf, line.fields) else {
            return Item::Malformed("entry line needs \"leaf\" and \"fields\"".into());
        };
        scratch.leaf.clear();
        if BASE64
            .decode_vec(leaf_b64.as_bytes(), &mut scratch.leaf)
            .is_err()
        {
            return Item::Malformed("entry leaf is not canonical base64".into());
        }
        let hash = merkle::leaf_hash(&scratch.leaf);
        return match AuditEntry::from_leaf(&scratch.leaf) {
            Ok(entry) => {
                let same = label == entry.seq && fields_match(&fields, &entry, &mut scratch.peers);
                Item::Entry {
                    hash,
                    seq: Some(entry.seq),
                    problem: (!same).then_some(EntryProblem::FieldsMismatch),
                }
            }
            Err(e) => Item::Entry {
                hash,
                seq: None,
                problem: Some(EntryProblem::Undecodable(e.to_string())),
            },
        };
    }
    if entry_keys {
        return Item::Malformed("entry keys on a line that is not an entry".into());
    }
    if let Some(cp) = line.checkpoint {
        return Item::Checkpoint(cp.into_owned());
    }
    if let Some(c) = line.cosignature {
        return Item::Cosignature(CosignatureIn {
            checkpoint_size: c.checkpoint_size,
            witness: c.witness.into_owned(),
            witness_name: c.witness_name.into_owned(),
            line: c.line.into_owned(),
        });
    }
    Item::Malformed("empty line object".into())
}

/// Whether the displayed fields are the leaf's. Strings must be in the
/// canonical form the crate prints (lowercase hex, dashed node id).
fn fields_match(f: &FieldsIn<'_>, e: &AuditEntry, scratch: &mut PeerCache) -> bool {
    fn hex_same(s: &Option<Cow<'_, str>>, v: Option<&[u8]>) -> bool {
        match (s, v) {
            (None, None) => true,
            (Some(s), Some(v)) => is_lower_hex_of(s.as_bytes(), v),
            _ => false,
        }
    }
    let peer_same = match (&f.peer, &e.peer) {
        (None, None) => true,
        (Some(s), Some(p)) => scratch.display(p) == s.as_ref(),
        _ => false,
    };
    f.seq == e.seq
        && f.time == e.time.0
        && f.kind == e.kind
        && f.actor == e.actor
        && f.detail == e.detail
        && hex_same(&f.message_id, e.message_id.as_ref().map(|m| &m.0[..]))
        && hex_same(
            &f.envelope_digest,
            e.envelope_digest.as_ref().map(|d| &d.0[..]),
        )
        && peer_same
}

/// `s` is exactly the lowercase hex of `bytes`.
fn is_lower_hex_of(s: &[u8], bytes: &[u8]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    s.len() == bytes.len() * 2
        && bytes.iter().zip(s.chunks_exact(2)).all(|(b, pair)| {
            pair[0] == DIGITS[usize::from(b >> 4)] && pair[1] == DIGITS[usize::from(b & 0xf)]
        })
}

/// The printed form of the last peer seen: logs name few peers, and
/// printing a node id costs a hash.
#[derive(Default)]
struct PeerCache {
    last: Option<(NodeId, String)>,
}

impl PeerCache {
    fn display(&mut self, id: &NodeId) -> &str {
        if self.last.as_ref().is_none_or(|(n, _)| n != id) {
            self.last = Some((*id, id.to_string()));
        }
        self.last.as_ref().map_or("", |(_, s)| s.as_str())
    }
}

// ---------------------------------------------------------------- assembly

#[derive(PartialEq)]
enum Phase {
    Start,
    Entries,
    Tail,
}

struct Assembler {
    pending: BTreeMap<u64, BatchOut>,
    next_batch: u64,
    phase: Phase,
    header: Option<HeaderIn>,
    leaf_hashes: Vec<Digest>,
    expected_seq: u64,
    checkpoints: Vec<(u64, String)>,
    cosignatures: Vec<(u64, CosignatureIn)>,
    lines: u64,
    findings: Findings,
}

struct Findings {
    kept: Vec<Finding>,
    omitted: u64,
}

impl Findings {
    fn push(&mut self, f: Finding) {
        if self.kept.len() < MAX_FINDINGS {
            self.kept.push(f);
        } else {
            self.omitted += 1;
        }
    }
}

impl Assembler {
    fn new() -> Self {
        Assembler {
            pending: BTreeMap::new(),
            next_batch: 0,
            phase: Phase::Start,
            header: None,
            leaf_hashes: Vec::new(),
            expected_seq: 0,
            checkpoints: Vec::new(),
            cosignatures: Vec::new(),
            lines: 0,
            findings: Findings {
                kept: Vec::new(),
                omitted: 0,
            },
        }
    }

    /// Takes batches in any order and applies them in file order.
    fn accept(&mut self, out: BatchOut) {
        self.pending.insert(out.no, out);
        while let Some(out) = self.pending.remove(&self.next_batch) {
            self.apply(out);
            self.next_batch += 1;
        }
    }

    fn apply(&mut self, out: BatchOut) {
        for (line, item) in out.items {
            self.lines = self.lines.max(line);
            self.apply_item(line, item);
        }
    }

    fn apply_item(&mut self, line: u64, item: Item) {
        if self.phase == Phase::Start && !matches!(item, Item::Header(_)) {
            self.findings.push(Finding::MissingHeader);
            self.phase = Phase::Entries;
        }
        match item {
            Item::Header(h) => {
                if self.phase == Phase::Start {
                    self.header = Some(h);
                    self.phase = Phase::Entries;
                } else {
                    self.findings.push(Finding::Malformed {
                        line,
                        why: "a header may only be the first line".into(),
                    });
                }
            }
            Item::Entry { hash, seq, problem } => {
                if self.phase == Phase::Tail {
                    self.findings.push(Finding::Malformed {
                        line,
                        why: "entry after checkpoint or cosignature lines (not counted)".into(),
                    });
                    return;
                }
                let entry = self.leaf_hashes.len() as u64;
                self.leaf_hashes.push(hash);
                match problem {
                    Some(EntryProblem::Undecodable(why)) => self
                        .findings
                        .push(Finding::EntryUndecodable { entry, line, why }),
                    Some(EntryProblem::FieldsMismatch) => self
                        .findings
                        .push(Finding::EntryFieldsMismatch { entry, line }),
                    None => {}
                }
                match seq {
                    Some(found) => {
                        if found != self.expected_seq {
                            self.findings.push(Finding::SequenceGap {
                                entry,
                                expected: self.expected_seq,
                                found,
                            });
                        }
                        self.expected_seq = found.saturating_add(1);
                    }
                    None => self.expected_seq = self.expected_seq.saturating_add(1),
                }
            }
            Item::Checkpoint(text) => {
                self.phase = Phase::Tail;
                self.checkpoints.push((line, text));
            }
            Item::Cosignature(c) => {
                self.phase = Phase::Tail;
                self.cosignatures.push((line, c));
            }
            Item::Malformed(why) => self.findings.push(Finding::Malformed { line, why }),
        }
    }

    fn finish(mut self, options: &VerifyOptions) -> Report {
        let entries = self.leaf_hashes.len() as u64;
        let mut report = Report {
            origin: None,
            node_id: None,
            node_pinned: options.expected_node.is_some(),
            lines: self.lines,
            entries,
            checkpoints: 0,
            newest_checkpoint: None,
            witnesses: Vec::new(),
            ignored_signatures: 0,
            findings: Vec::new(),
            findings_omitted: 0,
        };
        if self.phase == Phase::Start {
            // An empty file.
            self.findings.push(Finding::MissingHeader);
        }
        let header = self.header.take();
        let header_node = header.as_ref().and_then(|h| self.check_header(h));
        let node = match (options.expected_node, header_node) {
            (Some(expected), Some(found)) if expected != found => {
                self.findings
                    .push(Finding::UnexpectedNode { expected, found });
                Some(expected)
            }
            (Some(n), _) | (None, Some(n)) => Some(n),
            (None, None) => None,
        };
        let tree = MemoryTree::from_leaf_hashes(std::mem::take(&mut self.leaf_hashes));
        if let Some(node) = node {
            let origin = origin_for(&node);
            self.check_log(&node, &origin, &tree, options, &mut report);
            report.origin = Some(origin);
            report.node_id = Some(node);
        }
        report.findings = self.findings.kept;
        report.findings_omitted = self.findings.omitted;
        report
    }

    /// Checks the header against itself; returns its node if readable.
    fn check_header(&mut self, h: &HeaderIn) -> Option<NodeId> {
        if h.format != FORMAT {
            self.findings.push(Finding::UnsupportedFormat {
                found: h.format.chars().take(80).collect(),
            });
        }
        let node: NodeId = match h.node_id.parse() {
            Ok(n) => n,
            Err(e) => {
                self.findings.push(Finding::Malformed {
                    line: 1,
                    why: format!("header node_id: {e}"),
                });
                return None;
            }
        };
        let expected = origin_for(&node);
        if h.origin != expected {
            self.findings.push(Finding::WrongOrigin {
                line: 1,
                expected,
                found: h.origin.chars().take(300).collect(),
            });
        }
        if h.public_key != hex::encode(node.as_bytes()) {
            self.findings.push(Finding::PublicKeyMismatch);
        }
        Some(node)
    }

    fn check_log(
        &mut self,
        node: &NodeId,
        origin: &str,
        tree: &MemoryTree,
        options: &VerifyOptions,
        report: &mut Report,
    ) {
        let entries = tree.size();
        let mut valid: Vec<(Checkpoint, Note)> = Vec::new();
        let mut cosigned: BTreeMap<NodeId, (BTreeSet<u64>, u64)> = BTreeMap::new();
        let checkpoints = std::mem::take(&mut self.checkpoints);
        // Copies of one checkpoint are checked once, so that each
        // cosignature below meets at most one note per distinct body: a
        // bundle repeating a genuine checkpoint cannot make the work grow
        // with the square of its length.
        let mut seen_lines: HashSet<&str> = HashSet::new();
        let mut seen_bodies: HashSet<String> = HashSet::new();
        for (line, text) in &checkpoints {
            if !seen_lines.insert(text.as_str()) {
                continue;
            }
            let (cp, note) = match open_checkpoint(text, origin, node) {
                Ok(v) => v,
                Err(CheckpointError::WrongOrigin { expected, found }) => {
                    self.findings.push(Finding::WrongOrigin {
                        line: *line,
                        expected,
                        found: found.chars().take(300).collect(),
                    });
                    continue;
                }
                Err(CheckpointError::Note(
                    NoteError::NoSignatureByKey { .. } | NoteError::BadSignature { .. },
                )) => {
                    let size = Note::parse(text)
                        .ok()
                        .and_then(|n| Checkpoint::parse_body(n.text()).ok())
                        .map_or(0, |c| c.size);
                    self.findings
                        .push(Finding::CheckpointSignatureInvalid { line: *line, size });
                    continue;
                }
                Err(e) => {
                    self.findings.push(Finding::CheckpointMalformed {
                        line: *line,
                        why: e.to_string(),
                    });
                    continue;
                }
            };
            if let Some((prev, _)) = valid.last() {
                if cp.size < prev.size {
                    self.findings.push(Finding::CheckpointOutOfOrder {
                        size: cp.size,
                        previous: prev.size,
                    });
                } else {
                    self.check_consistency(prev, &cp, tree);
                }
            }
            if cp.size > entries {
                self.findings.push(Finding::CheckpointBeyondLog {
                    size: cp.size,
                    entries,
                });
            } else if let Ok(expected_root) = tree.root_at(cp.size) {
                if expected_root != cp.root {
                    self.findings.push(Finding::CheckpointRootMismatch {
                        size: cp.size,
                        expected_root,
                        checkpoint_root: cp.root,
                    });
                }
            }
            let (signers, ignored) = cosigners(&note, origin, node);
            report.ignored_signatures += ignored;
            for (witness, verified) in signers {
                match verified {
                    Ok(ts) => record_cosignature(&mut cosigned, witness, cp.size, ts),
                    Err(_) => self.findings.push(Finding::CosignatureInvalid {
                        size: cp.size,
                        witness,
                    }),
                }
            }
            if seen_bodies.insert(note.text().to_string()) {
                valid.push((cp, note));
            }
        }

        let cosignatures = std::mem::take(&mut self.cosignatures);
        for (line, c) in &cosignatures {
            let witness: NodeId = match c.witness.parse() {
                Ok(w) => w,
                Err(e) => {
                    self.findings.push(Finding::Malformed {
                        line: *line,
                        why: format!("cosignature witness: {e}"),
                    });
                    continue;
                }
            };
            let sig = match NoteSignature::parse_line(&c.line) {
                Ok(s) => s,
                Err(e) => {
                    self.findings.push(Finding::Malformed {
                        line: *line,
                        why: format!("cosignature line: {e}"),
                    });
                    continue;
                }
            };
            let targets: Vec<&(Checkpoint, Note)> = valid
                .iter()
                .filter(|(cp, _)| cp.size == c.checkpoint_size)
                .collect();
            if targets.is_empty() {
                self.findings
                    .push(Finding::CosignatureForUnknownCheckpoint {
                        line: *line,
                        size: c.checkpoint_size,
                        witness,
                    });
                continue;
            }
            let ok = targets.iter().find_map(|(_, note)| {
                verify_cosignature_sig(&sig, &c.witness_name, &witness, note.text()).ok()
            });
            match ok {
                Some(ts) => record_cosignature(&mut cosigned, witness, c.checkpoint_size, ts),
                None => self.findings.push(Finding::CosignatureInvalid {
                    size: c.checkpoint_size,
                    witness,
                }),
            }
        }

        report.checkpoints = valid.len() as u64;
        let newest = valid.iter().map(|(cp, _)| cp).max_by_key(|cp| cp.size);
        match newest {
            None => self.findings.push(Finding::NoCheckpoint { entries }),
            Some(cp) => {
                if cp.size < entries {
                    self.findings.push(Finding::EntriesNotCheckpointed {
                        checkpointed: cp.size,
                        entries,
                    });
                }
                for w in &options.required_witnesses {
                    let has = cosigned
                        .get(w)
                        .is_some_and(|(sizes, _)| sizes.contains(&cp.size));
                    if !has {
                        self.findings.push(Finding::MissingCosignature {
                            witness: *w,
                            size: cp.size,
                        });
                    }
                }
                report.newest_checkpoint = Some(CheckpointSummary {
                    size: cp.size,
                    root: cp.root,
                });
            }
        }
        report.witnesses = cosigned
            .into_iter()
            .map(|(witness, (sizes, ts))| WitnessSummary {
                witness,
                cosigned_checkpoints: sizes.len() as u64,
                newest_size: sizes.last().copied().unwrap_or(0),
                newest_timestamp: ts,
            })
            .collect();
    }

    /// Successive checkpoints must be consistent. Where both lie within
    /// the log, a consistency proof is built from the recomputed tree and
    /// checked with the RFC 9162 algorithm, as a witness would.
    fn check_consistency(&mut self, older: &Checkpoint, newer: &Checkpoint, tree: &MemoryTree) {
        let inconsistent = if newer.size <= tree.size() {
            match tree.consistency_proof(older.size, newer.size) {
                Ok(proof) => merkle::verify_consistency(
                    older.size,
                    newer.size,
                    &older.root,
                    &newer.root,
                    &proof,
                )
                .is_err(),
                Err(_) => true,
            }
        } else {
            older.size == newer.size && older.root != newer.root
        };
        if inconsistent {
            self.findings.push(Finding::CheckpointsInconsistent {
                older: older.size,
                newer: newer.size,
            });
        }
    }
}

fn record_cosignature(
    cosigned: &mut BTreeMap<NodeId, (BTreeSet<u64>, u64)>,
    witness: NodeId,
    size: u64,
    timestamp: u64,
) {
    let e = cosigned.entry(witness).or_default();
    e.0.insert(size);
    e.1 = e.1.max(timestamp);
}

// ---------------------------------------------------------------- driver

/// Verifies a bundle read from `reader` and reports every problem found.
///
/// Only reading can fail (`Err`); everything wrong with the content is a
/// [`Finding`] in the report. Uses [`VerifyOptions::threads`] workers to
/// parse and hash entries; memory is about 64 bytes per entry (the tree).
pub fn verify_bundle<R: BufRead>(reader: R, options: &VerifyOptions) -> io::Result<Report> {
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.threads
    }
    .clamp(1, 64);
    let mut assembler = Assembler::new();
    let (work_tx, work_rx) = mpsc::sync_channel::<Batch>(threads * 2);
    // Shared by the workers only: if they all stopped, sending fails
    // instead of blocking for ever.
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::channel::<BatchOut>();
    std::thread::scope(|s| -> io::Result<()> {
        for _ in 0..threads {
            let rx = Arc::clone(&work_rx);
            let tx = done_tx.clone();
            s.spawn(move || {
                let mut scratch = Scratch::default();
                loop {
                    let next = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok(batch) = next else { return };
                    if tx.send(process_batch(batch, &mut scratch)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        drop(work_rx);
        let read = read_batches(reader, |batch| {
            let sent = work_tx.send(batch).is_ok();
            while let Ok(out) = done_rx.try_recv() {
                assembler.accept(out);
            }
            sent
        });
        drop(work_tx);
        for out in done_rx {
            assembler.accept(out);
        }
        read
    })?;
    Ok(assembler.finish(options))
}

/// Splits the input into batches of whole lines, each line bounded.
fn read_batches<R: BufRead>(mut reader: R, mut send: impl FnMut(Batch) -> bool) -> io::Result<()> {
    let mut no = 0u64;
    let mut line_no = 0u64;
    loop {
        let mut batch = Batch {
            no,
            first_line: line_no + 1,
            buf: Vec::with_capacity(BATCH_BYTES / 4),
            lines: Vec::with_capacity(BATCH_LINES),
        };
        let mut eof = false;
        while batch.lines.len() < BATCH_LINES && batch.buf.len() < BATCH_BYTES {
            let start = batch.buf.len();
            let n = (&mut reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut batch.buf)?;
            if n == 0 {
                eof = true;
                break;
            }
            line_no += 1;
            if batch.buf.last() == Some(&b'\n') {
                let end = batch.buf.len() - 1;
                batch.lines.push((start, end, LineState::Complete));
            } else if n > MAX_LINE_BYTES {
                batch.buf.truncate(start);
                reader.skip_until(b'\n')?;
                batch.lines.push((start, start, LineState::TooLong));
            } else {
                let end = batch.buf.len();
                batch.lines.push((start, end, LineState::NoFinalNewline));
            }
        }
        if !batch.lines.is_empty() && !send(batch) {
            return Ok(());
        }
        if eof {
            return Ok(());
        }
        no += 1;
    }
}
