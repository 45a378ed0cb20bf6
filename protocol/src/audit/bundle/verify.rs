//! The [`Assembler`]: applies parsed lines in file order and checks them —
//! the header, the entry sequence, checkpoints against the recomputed
//! tree and each other, cosignatures, required witnesses — into a
//! [`Report`].

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::parse::{BatchOut, CosignatureIn, EntryProblem, HeaderIn, Item};
use super::{
    CheckpointSummary, EntryRange, Finding, KeySwitch, Report, Restoration, VerifyOptions,
    WitnessSummary, FORMAT, MAX_FINDINGS, MAX_RESTORATIONS,
};
use crate::audit::checkpoint::{
    cosigners, open_checkpoint, origin_for, verify_cosignature_sig, Checkpoint, CheckpointError,
};
use crate::audit::merkle::{self, MemoryTree};
use crate::audit::note::{Note, NoteError, NoteSignature};
use crate::digest::Digest;
use crate::identity::NodeId;

/// Switch entries a log may hold: one key change a year for a long life is
/// a handful; more is a log built to make the verifier work.
const MAX_SWITCHES: usize = 1000;

#[derive(PartialEq)]
enum Phase {
    Start,
    Entries,
    Tail,
}

pub(super) struct Assembler {
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
    restorations: Vec<Restoration>,
    /// Switch entries, by entry position (the first [`MAX_SWITCHES`]).
    switches: Vec<(u64, super::SwitchIn)>,
    /// The position of the first switch entry beyond [`MAX_SWITCHES`].
    switches_beyond: Option<u64>,
    /// The old log the first entries name, if they are predecessor entries.
    predecessor: super::predecessor::Follower,
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
    pub(super) fn new() -> Self {
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
            restorations: Vec::new(),
            switches: Vec::new(),
            switches_beyond: None,
            predecessor: super::predecessor::Follower::default(),
            findings: Findings {
                kept: Vec::new(),
                omitted: 0,
            },
        }
    }

    /// Takes batches in any order and applies them in file order.
    pub(super) fn accept(&mut self, out: BatchOut) {
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
            Item::Entry {
                hash,
                seq,
                problem,
                restoration,
                switch,
                predecessor,
            } => {
                if let Some(r) = restoration {
                    if self.restorations.len() < MAX_RESTORATIONS {
                        self.restorations.push(*r);
                    }
                }
                if self.phase == Phase::Tail {
                    self.findings.push(Finding::Malformed {
                        line,
                        why: "entry after checkpoint or cosignature lines (not counted)".into(),
                    });
                    return;
                }
                let entry = self.leaf_hashes.len() as u64;
                self.leaf_hashes.push(hash);
                for f in self.predecessor.on_entry(entry, predecessor.map(|p| *p)) {
                    self.findings.push(f);
                }
                if let Some(sw) = switch {
                    if self.switches.len() < MAX_SWITCHES {
                        self.switches.push((entry, *sw));
                    } else {
                        self.switches_beyond.get_or_insert(entry);
                    }
                }
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

    pub(super) fn finish(mut self, options: &VerifyOptions) -> Report {
        let entries = self.leaf_hashes.len() as u64;
        let (predecessor, finding) = std::mem::take(&mut self.predecessor).finish();
        if let Some(f) = finding {
            self.findings.push(f);
        }
        let mut report = Report {
            origin: None,
            node_id: None,
            node_pinned: options.expected_node.is_some(),
            lines: self.lines,
            entries,
            checkpoints: 0,
            newest_checkpoint: None,
            witnesses: Vec::new(),
            unwitnessed: None,
            ignored_signatures: 0,
            findings: Vec::new(),
            findings_omitted: 0,
            restorations: std::mem::take(&mut self.restorations),
            key_switches: Vec::new(),
            predecessor,
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
        for r in &report.restorations {
            self.check_restoration(r, &tree);
        }
        if let Some(node) = node {
            let origin = origin_for(&node);
            self.check_log(&node, &origin, &tree, options, &mut report);
            report.origin = Some(origin);
            report.node_id = Some(node);
        } else {
            // Whether it names a log of this log's keys is unknown.
            report.predecessor = None;
        }
        report.findings = self.findings.kept;
        report.findings_omitted = self.findings.omitted;
        report
    }

    /// A `log-restored` entry states the size and root the log was restored
    /// to: it must be entry N of the log, and the first N entries must have
    /// that root (a `peer-restored` entry is about another log: shown only).
    fn check_restoration(&mut self, r: &Restoration, tree: &MemoryTree) {
        if r.kind != crate::audit::entry::AuditKind::LogRestored {
            return;
        }
        let entry = r.entry;
        let why = match (r.restored_size, r.restored_root.as_deref()) {
            (Some(size), _) if size != entry => {
                format!("it says the log was restored to size {size}, but it is entry {entry}")
            }
            (Some(size), Some(root)) => match tree.root_at(size) {
                Ok(at) if at.to_string() == root => return,
                Ok(at) => {
                    format!("it says the root at size {size} was {root}, the entries give {at}")
                }
                // Entry N is in the log, so the first N are too.
                Err(_) => return,
            },
            _ => "its detail does not name restored-size and restored-root".to_string(),
        };
        self.findings.push(Finding::RestorationMismatch {
            entry,
            why: why.chars().take(300).collect(),
        });
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
        let chain = self.key_chain(node, origin, tree, report);
        // The key that signs a checkpoint of `size`: the last one switched
        // to by an entry inside it.
        let key_for = |size: u64| {
            chain
                .iter()
                .rev()
                .find(|(from, _)| from.is_none_or(|at| at < size))
                .map_or(*node, |(_, k)| *k)
        };
        let own_key = |k: &NodeId| chain.iter().any(|(_, c)| c == k);
        // A log cannot be its own predecessor: its key would vouch for it.
        if let Some(p) = &report.predecessor {
            if std::iter::once(&p.node).chain(&p.later_keys).any(own_key) {
                self.findings.push(Finding::PredecessorInvalid {
                    entry: 0,
                    why: "it names a log of this node's own keys".into(),
                });
                report.predecessor = None;
            }
        }
        // Nor do they count as its witnesses.
        if let Some(p) = &mut report.predecessor {
            p.cosigned_by.retain(|w| !own_key(w));
        }
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
            let claimed_size = Note::parse(text)
                .ok()
                .and_then(|n| Checkpoint::parse_body(n.text()).ok())
                .map(|c| c.size);
            let signer = claimed_size.map_or(*node, key_for);
            let (cp, note) = match open_checkpoint(text, origin, &signer) {
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
                    self.findings.push(Finding::CheckpointSignatureInvalid {
                        line: *line,
                        size: claimed_size.unwrap_or(0),
                    });
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
            let (signers, ignored) = cosigners(&note, origin, &signer);
            report.ignored_signatures += ignored;
            for (witness, verified) in signers {
                // An earlier (or later) key of the node is the node.
                if own_key(&witness) {
                    self.findings.push(Finding::NodeAsWitness {
                        line: *line,
                        size: cp.size,
                    });
                    continue;
                }
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
            // Wherever it is placed, the node's own signature is no
            // witness's (inside a note, `cosigners` skips it).
            if own_key(&witness) {
                self.findings.push(Finding::NodeAsWitness {
                    line: *line,
                    size: c.checkpoint_size,
                });
                continue;
            }
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
                // A required witness must vouch for the whole log: its
                // newest cosigned size, plus the tail the auditor accepts
                // unwitnessed, must reach every entry.
                for w in &options.required_witnesses {
                    let newest = cosigned
                        .get(w)
                        .and_then(|(sizes, _)| sizes.last().copied())
                        .unwrap_or(0);
                    if newest.saturating_add(options.allow_unwitnessed_tail) < entries {
                        self.findings.push(Finding::MissingCosignature {
                            witness: *w,
                            size: newest,
                            entries,
                        });
                    }
                }
                report.newest_checkpoint = Some(CheckpointSummary {
                    size: cp.size,
                    root: cp.root,
                });
            }
        }
        // Entries from the largest size any witness cosigned on: vouched
        // for by the node's own signature alone.
        let witnessed = cosigned
            .values()
            .filter_map(|(sizes, _)| sizes.last().copied())
            .max()
            .unwrap_or(0)
            .min(entries);
        report.unwitnessed = (witnessed < entries).then_some(EntryRange {
            from: witnessed,
            to: entries,
        });
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

    /// The log's keys: its first (`from` = `None`), then each successor a
    /// switch entry names (`from` = the entry: checkpoints larger than it
    /// are signed by the successor), if the switch holds: its statement
    /// verifies against the key current at the entry, names a key not in
    /// the chain yet, is effective by the entry's time, and the current key
    /// signed a checkpoint of the log up to the entry (size = its position)
    /// with the entries' root — so that the history before a switch rests
    /// on the key it switched from. A switch that does not hold moves
    /// nothing.
    fn key_chain(
        &mut self,
        node: &NodeId,
        origin: &str,
        tree: &MemoryTree,
        report: &mut Report,
    ) -> Vec<(Option<u64>, NodeId)> {
        // The checkpoints by size, parsed once.
        let mut by_size: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for (_, text) in &self.checkpoints {
            if let Some(size) = Note::parse(text)
                .ok()
                .and_then(|n| Checkpoint::parse_body(n.text()).ok())
                .map(|c| c.size)
            {
                by_size.entry(size).or_default().push(text.as_str());
            }
        }
        let signed_at = |key: &NodeId, size: u64| {
            let root = tree.root_at(size).ok();
            by_size.get(&size).is_some_and(|texts| {
                texts.iter().any(|t| {
                    open_checkpoint(t, origin, key).is_ok_and(|(cp, _)| Some(cp.root) == root)
                })
            })
        };
        let mut chain = vec![(None, *node)];
        let mut current = *node;
        let mut findings = Vec::new();
        for (entry, (time, sw)) in std::mem::take(&mut self.switches) {
            let why = match sw {
                Err(why) => why,
                Ok(s) => match s.verify(&current) {
                    Err(e) => e.to_string(),
                    Ok(()) if chain.iter().any(|(_, k)| *k == s.transition.new) => {
                        "it names one of the log's earlier keys".to_string()
                    }
                    Ok(()) if time < s.transition.effective_after => format!(
                        "the entry's time {} ms is before the statement's effective_after {} ms",
                        time.0, s.transition.effective_after.0
                    ),
                    Ok(()) if !signed_at(&current, entry) => format!(
                        "no checkpoint of size {entry} signed by {current}: the history before the switch must be signed by the key it switches from"
                    ),
                    Ok(()) => {
                        let t = s.transition;
                        report.key_switches.push(KeySwitch {
                            entry,
                            old: t.old,
                            new: t.new,
                            effective_after: t.effective_after,
                            reason: t.reason,
                        });
                        chain.push((Some(entry), t.new));
                        current = t.new;
                        continue;
                    }
                },
            };
            findings.push(Finding::SwitchInvalid {
                entry,
                current,
                why: why.chars().take(300).collect(),
            });
        }
        if let Some(entry) = self.switches_beyond {
            findings.push(Finding::SwitchInvalid {
                entry,
                current,
                why: format!(
                    "more than {MAX_SWITCHES} switch entries in one log; the rest are not followed"
                ),
            });
        }
        for f in findings {
            self.findings.push(f);
        }
        chain
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
