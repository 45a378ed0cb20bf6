//! The entries with which a node's new log, begun under a new identity
//! after its old key was lost, names the old log: its last checkpoint that
//! a witness cosigned. The two logs are linked by the operators who
//! repinned the node (out of band), not by a key: the old key signed no
//! hand-over.
//!
//! A witness hands the checkpoint over as a **predecessor file**
//! ([`PredecessorFile`]): the checkpoint note as the old log's key signed
//! it, then, if that log had switched keys before the note was signed, one
//! line `identity-switch <base64>` per switch, in order (the framed
//! statements that lead from the log's first key to the note's signer).
//!
//! The new log's entries 0, 1, … are `log-predecessor`, actor `operator`:
//! entry 0's detail is [`PREDECESSOR_PREFIX`] and the note in standard
//! base64 with padding; each switch follows as one more entry,
//! [`PREDECESSOR_SWITCH_PREFIX`] and the framed statement in base64. A
//! verifier checks the chain from the key the note's origin names and the
//! note's signature by the chain's last key, and reports the link
//! (docs/audit.md §5.6, step 6b).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;

use super::checkpoint::{cosigners, node_for_origin, open_checkpoint, Checkpoint};
use super::entry::{Actor, AuditEntry, AuditKind};
use super::note::Note;
use crate::transition::TransitionStatement;
use crate::{Digest, NodeId};

/// How the first predecessor entry's detail begins.
pub const PREDECESSOR_PREFIX: &str =
    "begins after a lost identity key; linked by the operators' repin to the log whose last cosigned checkpoint is ";

/// How each later predecessor entry's detail begins (a switch of the old
/// log, leading to the key that signed its checkpoint).
pub const PREDECESSOR_SWITCH_PREFIX: &str =
    "the log named before had switched keys by transition statement ";

/// The largest checkpoint note a predecessor file carries (its base64 and
/// the prefix stay within an entry's detail).
pub const MAX_PREDECESSOR_NOTE: usize = 600;

/// The most switches of the old log a predecessor file carries.
pub const MAX_PREDECESSOR_SWITCHES: usize = 16;

/// The largest predecessor file: its note and its switch lines (each at
/// most 16 + 684 bytes) fit well within it.
pub const MAX_PREDECESSOR_FILE: u64 = 64 << 10;

/// How a switch line of a predecessor file begins.
const SWITCH_LINE: &str = "identity-switch ";

/// The old log, as the new log's first entries name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Predecessor {
    /// The old log's node (its first key, which names it).
    pub node: NodeId,
    pub size: u64,
    pub root: Digest,
    /// The keys the old log switched to before the checkpoint, in order;
    /// the last signed it (empty: the first key did).
    pub later_keys: Vec<NodeId>,
    /// The witnesses whose valid cosignature the checkpoint carries (the
    /// peer that handed it over adds its own): pin them to know whose word
    /// "last cosigned" is.
    pub cosigned_by: Vec<NodeId>,
}

/// Why a checkpoint cannot name a predecessor.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PredecessorError {
    #[error("the note is {0} bytes, above {MAX_PREDECESSOR_NOTE}")]
    TooLong(usize),
    #[error("more than {MAX_PREDECESSOR_SWITCHES} switches")]
    TooManySwitches,
    #[error("not a checkpoint note: {0}")]
    NotACheckpoint(String),
    #[error("its origin {0:?} names no node")]
    NoNode(String),
    #[error("switch {index}: {why}")]
    BadSwitch { index: usize, why: String },
    #[error(
        "not signed by the key the log had (its first key, or the last its switches lead to): {0}"
    )]
    BadSignature(String),
}

/// A witness's word on an old log: its checkpoint and the switches that
/// lead to the checkpoint's signer (not yet checked: see
/// [`PredecessorFile::check`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PredecessorFile {
    pub note: String,
    pub switches: Vec<TransitionStatement>,
}

impl PredecessorFile {
    /// Parses the file's text (at most a few KiB: the caller bounds it).
    pub fn parse(text: &str) -> Result<PredecessorFile, PredecessorError> {
        let (note, rest) = match text.find(&format!("\n{SWITCH_LINE}")) {
            Some(at) => text.split_at(at + 1),
            None => (text, ""),
        };
        let mut switches = Vec::new();
        for (index, line) in rest.lines().enumerate() {
            if switches.len() == MAX_PREDECESSOR_SWITCHES {
                return Err(PredecessorError::TooManySwitches);
            }
            let bad = |why: String| PredecessorError::BadSwitch { index, why };
            let b64 = line
                .strip_prefix(SWITCH_LINE)
                .ok_or_else(|| bad(format!("a line that is not `{}…`", SWITCH_LINE.trim_end())))?;
            switches.push(statement_from_base64(b64).map_err(bad)?);
        }
        Ok(PredecessorFile {
            note: note.to_string(),
            switches,
        })
    }

    /// The file's text: the note, then a line per switch.
    pub fn to_text(&self) -> String {
        let mut text = self.note.clone();
        for s in &self.switches {
            text.push_str(SWITCH_LINE);
            text.push_str(&BASE64.encode(s.to_bytes()));
            text.push('\n');
        }
        text
    }

    /// Checks the chain and the note's signature, and returns the old log.
    pub fn check(&self) -> Result<Predecessor, PredecessorError> {
        let (node, body) = checkpoint_named(&self.note)?;
        let mut chain = vec![node];
        for (index, s) in self.switches.iter().enumerate() {
            chain
                .push(follow(&chain, s).map_err(|why| PredecessorError::BadSwitch { index, why })?);
        }
        settle(&self.note, &body.origin, chain).map_err(PredecessorError::BadSignature)
    }

    /// The details of the new log's first entries (checked first).
    pub fn entry_details(&self) -> Result<Vec<String>, PredecessorError> {
        self.checked_entries().map(|(_, details)| details)
    }

    /// The old log and the details of the new log's first entries.
    pub fn checked_entries(&self) -> Result<(Predecessor, Vec<String>), PredecessorError> {
        Ok((self.check()?, self.details()))
    }

    fn details(&self) -> Vec<String> {
        let mut details = vec![format!("{PREDECESSOR_PREFIX}{}", BASE64.encode(&self.note))];
        for s in &self.switches {
            details.push(format!(
                "{PREDECESSOR_SWITCH_PREFIX}{}",
                BASE64.encode(s.to_bytes())
            ));
        }
        details
    }
}

/// The node `note`'s origin names, and its body (its signature unchecked).
pub(crate) fn checkpoint_named(note: &str) -> Result<(NodeId, Checkpoint), PredecessorError> {
    if note.len() > MAX_PREDECESSOR_NOTE {
        return Err(PredecessorError::TooLong(note.len()));
    }
    let parsed = Note::parse(note).map_err(|e| PredecessorError::NotACheckpoint(e.to_string()))?;
    let body = Checkpoint::parse_body(parsed.text())
        .map_err(|e| PredecessorError::NotACheckpoint(e.to_string()))?;
    let node = node_for_origin(&body.origin)
        .ok_or_else(|| PredecessorError::NoNode(body.origin.clone()))?;
    Ok((node, body))
}

/// The old log `note` names, if its chain's last key signed it under
/// `origin` (`chain`: the log's first key, then the keys its switches led
/// to); the witnesses' valid cosignatures it carries are listed.
pub(crate) fn settle(
    note: &str,
    origin: &str,
    mut chain: Vec<NodeId>,
) -> Result<Predecessor, String> {
    let signer = *chain.last().ok_or("an empty chain")?;
    let (c, parsed) = open_checkpoint(note, origin, &signer).map_err(|e| e.to_string())?;
    let cosigned_by = cosigners(&parsed, origin, &signer)
        .0
        .into_iter()
        .filter(|(w, ok)| ok.is_ok() && !chain.contains(w))
        .map(|(w, _)| w)
        .collect();
    let later_keys = chain.split_off(1);
    Ok(Predecessor {
        node: chain[0],
        size: c.size,
        root: c.root,
        later_keys,
        cosigned_by,
    })
}

/// The key `s` leads to from the chain's last: it must verify against
/// that key and name a key the chain did not have.
pub(crate) fn follow(chain: &[NodeId], s: &TransitionStatement) -> Result<NodeId, String> {
    if chain.len() > MAX_PREDECESSOR_SWITCHES {
        return Err(format!("more than {MAX_PREDECESSOR_SWITCHES} switches"));
    }
    let current = chain.last().ok_or("an empty chain")?;
    s.verify(current).map_err(|e| e.to_string())?;
    let new = s.transition.new;
    if chain.contains(&new) {
        return Err(format!("it leads back to {new}, a key the log had"));
    }
    Ok(new)
}

fn statement_from_base64(b64: &str) -> Result<TransitionStatement, String> {
    let bytes = BASE64
        .decode(b64)
        .map_err(|e| format!("the statement is not base64: {e}"))?;
    TransitionStatement::from_bytes(&bytes)
        .map_err(|e| format!("the statement does not decode: {e}"))
}

/// What one predecessor entry says, decoded (not yet checked: the chain
/// spans entries).
#[derive(Debug)]
pub enum PredecessorPart {
    /// Entry 0's: the old log's checkpoint note.
    Checkpoint(String),
    /// A later one's: a switch of the old log.
    Switch(Box<TransitionStatement>),
}

/// What a predecessor entry says: `None` if `entry` is not one; an error
/// (in words) if it is but does not decode.
pub fn predecessor_part(entry: &AuditEntry) -> Option<Result<PredecessorPart, String>> {
    if entry.kind != AuditKind::LogPredecessor {
        return None;
    }
    if entry.actor != Actor::Operator
        || entry.peer.is_some()
        || entry.message_id.is_some()
        || entry.envelope_digest.is_some()
    {
        return Some(Err(
            "a predecessor entry has actor operator and names no peer or message".into(),
        ));
    }
    let d = &entry.detail;
    Some(if let Some(b64) = d.strip_prefix(PREDECESSOR_PREFIX) {
        BASE64
            .decode(b64)
            .map_err(|e| format!("the checkpoint is not base64: {e}"))
            .and_then(|b| String::from_utf8(b).map_err(|_| "the checkpoint is not UTF-8".into()))
            .map(PredecessorPart::Checkpoint)
    } else if let Some(b64) = d.strip_prefix(PREDECESSOR_SWITCH_PREFIX) {
        statement_from_base64(b64).map(|s| PredecessorPart::Switch(Box::new(s)))
    } else {
        Err("its detail does not begin as a predecessor entry's".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::checkpoint::{origin_for, sign_checkpoint};
    use crate::transition::IdentityTransition;
    use crate::{Identity, Timestamp};

    fn ident(seed: u8) -> Identity {
        Identity::from_seeds(&[seed; 32], &[seed.wrapping_add(100); 32], Timestamp(0))
    }

    fn switch(old: &Identity, new: &Identity) -> TransitionStatement {
        IdentityTransition {
            old: old.id(),
            new: new.id(),
            created_at: Timestamp(1_700_000_000_000),
            effective_after: Timestamp(1_700_000_000_000),
            reason: "scheduled rotation".into(),
        }
        .sign(old, new)
        .unwrap()
    }

    fn note_of(first: &Identity, signer: &Identity) -> String {
        let cp = Checkpoint {
            origin: origin_for(&first.id()),
            size: 12,
            root: Digest([3; 32]),
        };
        sign_checkpoint(signer, &cp).unwrap()
    }

    #[test]
    fn a_checkpoint_signed_after_switches_names_its_log_through_them() {
        let (a, b, c, thief) = (ident(1), ident(2), ident(3), ident(4));
        let file = PredecessorFile {
            note: note_of(&a, &c),
            switches: vec![switch(&a, &b), switch(&b, &c)],
        };
        let again = PredecessorFile::parse(&file.to_text()).unwrap();
        assert_eq!(again, file);
        let p = again.check().unwrap();
        assert_eq!((p.node, p.size), (a.id(), 12));
        assert_eq!(p.later_keys, vec![b.id(), c.id()]);

        // Without the switches, the note is not the first key's.
        let alone = PredecessorFile {
            note: file.note.clone(),
            switches: vec![],
        };
        assert!(matches!(
            alone.check(),
            Err(PredecessorError::BadSignature(_))
        ));
        // Out of order, or a switch by a key the log never had.
        let swapped = PredecessorFile {
            note: file.note.clone(),
            switches: vec![switch(&b, &c), switch(&a, &b)],
        };
        assert!(matches!(
            swapped.check(),
            Err(PredecessorError::BadSwitch { index: 0, .. })
        ));
        let stolen = PredecessorFile {
            note: note_of(&a, &thief),
            switches: vec![switch(&a, &b), switch(&c, &thief)],
        };
        assert!(matches!(
            stolen.check(),
            Err(PredecessorError::BadSwitch { index: 1, .. })
        ));
        // A switch back to a key the log had.
        let back = PredecessorFile {
            note: note_of(&a, &a),
            switches: vec![switch(&a, &b), switch(&b, &a)],
        };
        assert!(matches!(
            back.check(),
            Err(PredecessorError::BadSwitch { index: 1, .. })
        ));
        // A line that is not a switch.
        let junk = format!("{}identity-switch AAAA\n", file.note);
        assert!(matches!(
            PredecessorFile::parse(&junk),
            Err(PredecessorError::BadSwitch { index: 0, .. })
        ));
    }

    #[test]
    fn sixteen_switches_are_followed_and_a_seventeenth_refused() {
        let keys: Vec<Identity> = (10..28).map(ident).collect();
        let chained = |n: usize| PredecessorFile {
            note: note_of(&keys[0], &keys[n]),
            switches: (0..n).map(|i| switch(&keys[i], &keys[i + 1])).collect(),
        };
        let sixteen = chained(16);
        let again = PredecessorFile::parse(&sixteen.to_text()).unwrap();
        assert_eq!(again.check().unwrap().later_keys.len(), 16);
        let seventeen = chained(17);
        assert_eq!(
            PredecessorFile::parse(&seventeen.to_text()),
            Err(PredecessorError::TooManySwitches)
        );
        assert!(matches!(
            seventeen.check(),
            Err(PredecessorError::BadSwitch { index: 16, .. })
        ));
    }

    #[test]
    fn every_detail_fits_an_entry() {
        use crate::audit::entry::MAX_DETAIL_BYTES;
        let (a, b) = (ident(1), ident(2));
        let mut long = switch(&a, &b);
        long.transition.reason = "x".repeat(200);
        let long = long.transition.clone().sign(&a, &b).unwrap();
        let mut note = note_of(&a, &b);
        // The largest note a file may carry.
        let pad = MAX_PREDECESSOR_NOTE - note.len();
        note = note.replacen("\n\n", &format!("\n{}\n\n", "e".repeat(pad - 1)), 1);
        assert_eq!(note.len(), MAX_PREDECESSOR_NOTE);
        let file = PredecessorFile {
            note,
            switches: vec![long],
        };
        for d in file.details() {
            assert!(d.len() <= MAX_DETAIL_BYTES, "{}", d.len());
        }
    }
}
