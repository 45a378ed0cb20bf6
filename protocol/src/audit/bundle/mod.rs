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

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::identity::NodeId;

// `write` writes bundles. Verifying: `parse` turns each line into an item
// on worker threads, `verify` applies the items in file order and checks
// them, `driver` reads the input and runs the workers.
mod driver;
mod parse;
mod predecessor;
mod verify;
mod write;

pub use driver::verify_bundle;
pub use write::{BundleWriteError, BundleWriter};

/// The `format` of the header line.
pub const FORMAT: &str = "comity-audit-bundle/v1";

/// Longest line read; longer ones are reported and skipped, never buffered.
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// Findings kept in a report; the rest are only counted, so a bundle of
/// garbage cannot exhaust memory.
pub const MAX_FINDINGS: usize = 1000;

/// A cosignature kept apart from its checkpoint's note: the one line
/// shape both written (`write`) and read (`parse`).
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

/// What the auditor knows independently of the bundle.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// The node whose log this must be, as pinned out of band: the log's
    /// *first* key, which names it for life (after the node switched to a
    /// new identity key too). Without it the header's key is believed,
    /// which proves only that the bundle is self-consistent: require
    /// witnesses too.
    pub expected_node: Option<NodeId>,
    /// Witnesses whose cosignatures must cover the whole log (less
    /// `allow_unwitnessed_tail` entries at its end).
    pub required_witnesses: Vec<NodeId>,
    /// How many of the newest entries a required witness may leave
    /// uncosigned (0: it must have cosigned the checkpoint of every entry).
    pub allow_unwitnessed_tail: u64,
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
    #[error("entry {entry}: the log-restored entry does not match the log: {why}")]
    RestorationMismatch { entry: u64, why: String },
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
    #[error(
        "required witness {witness} cosigned the log only up to size {size} of {entries} entries"
    )]
    MissingCosignature {
        witness: NodeId,
        /// The largest size it cosigned (0: none).
        size: u64,
        entries: u64,
    },
    #[error("line {line}: a cosignature by the node itself (one of the log's keys) on the checkpoint at size {size}: a node cannot witness its own log (not counted)")]
    NodeAsWitness { line: u64, size: u64 },
    #[error("entry {entry}: a switch to a new identity key that does not hold: {why}; the log's key stays {current}")]
    SwitchInvalid {
        entry: u64,
        current: NodeId,
        why: String,
    },
    #[error("entry {entry}: a predecessor entry that does not hold: {why}")]
    PredecessorInvalid { entry: u64, why: String },
}

/// Entries `from..to` (0-based, `to` excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EntryRange {
    pub from: u64,
    pub to: u64,
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
    /// Entries no witness cosigned (from the largest size any witness
    /// cosigned to the end): attested by the node's own signature only.
    pub unwitnessed: Option<EntryRange>,
    /// Note signatures by keys this verifier does not know (ignored).
    pub ignored_signatures: u64,
    pub findings: Vec<Finding>,
    /// Findings beyond [`MAX_FINDINGS`], counted but not kept.
    pub findings_omitted: u64,
    /// Restorations the log records (the first [`MAX_RESTORATIONS`]): its
    /// own from a backup, and peers' it accepted as their witness.
    pub restorations: Vec<Restoration>,
    /// The node's switches to a new identity key that hold, in order:
    /// checkpoints after each are signed by its `new` key.
    pub key_switches: Vec<KeySwitch>,
    /// The log this one follows after a lost key, as its first entry names
    /// it (its checkpoint's signature checked): linked by the operators'
    /// repin, not by a key.
    pub predecessor: Option<crate::audit::predecessor::Predecessor>,
}

/// A switch entry as parsed: its time, and its statement (or why not).
type SwitchIn = (
    crate::time::Timestamp,
    Result<crate::transition::TransitionStatement, String>,
);

/// A switch entry whose statement verifies against the key current at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeySwitch {
    /// The entry's position: checkpoints of a larger size are signed by `new`.
    pub entry: u64,
    pub old: NodeId,
    pub new: NodeId,
    pub effective_after: crate::time::Timestamp,
    pub reason: String,
}

/// Restoration entries a report lists.
pub const MAX_RESTORATIONS: usize = 100;

/// A `log-restored` or `peer-restored` entry, as the log states it. The
/// figures are the entry's detail (`key value` pairs). For `log-restored`
/// the verifier checks that the entry is entry `restored_size` and that the
/// entries before it have `restored_root` ([`Finding::RestorationMismatch`]
/// otherwise); a `peer-restored` entry is about another log, and is the
/// witness's word, signed into its log like any entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restoration {
    /// The entry's seq.
    pub entry: u64,
    pub kind: super::entry::AuditKind,
    /// The restored peer, for `peer-restored`.
    pub peer: Option<NodeId>,
    /// The size the log was restored to.
    pub restored_size: Option<u64>,
    pub restored_root: Option<String>,
    /// For `peer-restored`: the size the witness had cosigned, so the lost
    /// entries are `restored_size .. witnessed_size` (seqs).
    pub witnessed_size: Option<u64>,
    pub witnessed_root: Option<String>,
    pub backup_time_ms: Option<u64>,
}

impl Restoration {
    pub(crate) fn of(entry: &super::entry::AuditEntry) -> Option<Restoration> {
        use super::entry::AuditKind;
        if !matches!(entry.kind, AuditKind::LogRestored | AuditKind::PeerRestored) {
            return None;
        }
        let value = |key: &str| {
            let mut words = entry.detail.split(' ');
            while let Some(w) = words.next() {
                if w == key {
                    return words.next().map(str::to_string);
                }
            }
            None
        };
        let number = |key: &str| value(key).and_then(|v| v.parse().ok());
        Some(Restoration {
            entry: entry.seq,
            kind: entry.kind,
            peer: entry.peer,
            restored_size: number("restored-size"),
            restored_root: value("restored-root"),
            witnessed_size: number("witnessed-size"),
            witnessed_root: value("witnessed-root"),
            backup_time_ms: number("backup-time"),
        })
    }
}

impl Report {
    /// True if nothing at all was found wrong.
    pub fn is_valid(&self) -> bool {
        self.findings.is_empty() && self.findings_omitted == 0
    }
}
