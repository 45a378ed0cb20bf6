//! Parsing one bundle line into an [`Item`], with its leaf decoded, hashed
//! and compared with the fields shown. Runs on the worker threads, so it
//! knows nothing of the lines around it.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize;

use super::{CosignatureRecord, MAX_LINE_BYTES};
use crate::audit::entry::{Actor, AuditEntry, AuditKind};
use crate::audit::merkle;
use crate::digest::Digest;
use crate::identity::NodeId;

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

pub(super) struct HeaderIn {
    pub(super) format: String,
    pub(super) origin: String,
    pub(super) node_id: String,
    pub(super) public_key: String,
}

pub(super) struct CosignatureIn {
    pub(super) checkpoint_size: u64,
    pub(super) witness: String,
    pub(super) witness_name: String,
    pub(super) line: String,
}

pub(super) enum EntryProblem {
    Undecodable(String),
    FieldsMismatch,
}

pub(super) enum Item {
    Header(HeaderIn),
    Entry {
        hash: Digest,
        seq: Option<u64>,
        problem: Option<EntryProblem>,
        /// A restoration the entry records, own or a peer's.
        restoration: Option<Box<super::Restoration>>,
        /// The node's switch to a new identity key it records, if it is
        /// one: the entry's time and its statement.
        switch: Option<Box<super::SwitchIn>>,
        /// The old log it names, if it is a predecessor entry.
        predecessor: Option<Box<Result<crate::audit::predecessor::PredecessorPart, String>>>,
    },
    Checkpoint(String),
    Cosignature(CosignatureIn),
    Malformed(String),
}

pub(super) enum LineState {
    Complete,
    TooLong,
    NoFinalNewline,
}

pub(super) struct Batch {
    pub(super) no: u64,
    pub(super) first_line: u64,
    pub(super) buf: Vec<u8>,
    pub(super) lines: Vec<(usize, usize, LineState)>,
}

pub(super) struct BatchOut {
    pub(super) no: u64,
    /// Each item with its 1-based line number.
    pub(super) items: Vec<(u64, Item)>,
}

/// Per-worker buffers, reused across lines.
#[derive(Default)]
pub(super) struct Scratch {
    leaf: Vec<u8>,
    peers: PeerCache,
}

pub(super) fn process_batch(batch: Batch, scratch: &mut Scratch) -> BatchOut {
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
                    restoration: super::Restoration::of(&entry).map(Box::new),
                    switch: crate::audit::switch::switch_of(&entry)
                        .map(|statement| Box::new((entry.time, statement))),
                    predecessor: crate::audit::predecessor::predecessor_part(&entry).map(Box::new),
                }
            }
            Err(e) => Item::Entry {
                hash,
                seq: None,
                problem: Some(EntryProblem::Undecodable(e.to_string())),
                restoration: None,
                switch: None,
                predecessor: None,
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
