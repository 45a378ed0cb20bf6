//! Step 6b of the verification (docs/audit.md §5.6): the old log a new
//! log's first entries name, followed across the entries that carry it
//! (its checkpoint at entry 0, then the switches that lead to the
//! checkpoint's signer).

use super::Finding;
use crate::audit::predecessor::{checkpoint_named, follow, settle, Predecessor, PredecessorPart};
use crate::NodeId;

/// The old log's checkpoint, with the keys followed so far.
struct Pending {
    note: String,
    origin: String,
    /// The old log's first key, then each key a switch led to.
    chain: Vec<NodeId>,
}

#[derive(Default)]
pub(super) struct Follower {
    pending: Option<Pending>,
    settled: Option<Predecessor>,
    /// A predecessor entry did not hold: no link is reported.
    failed: bool,
}

fn invalid(entry: u64, why: impl Into<String>) -> Finding {
    let why: String = why.into();
    Finding::PredecessorInvalid {
        entry,
        why: why.chars().take(300).collect(),
    }
}

impl Follower {
    /// Entry `entry` (its position), with what it says if it is a
    /// predecessor entry.
    pub(super) fn on_entry(
        &mut self,
        entry: u64,
        part: Option<Result<PredecessorPart, String>>,
    ) -> Vec<Finding> {
        let mut found = Vec::new();
        // The switches follow the checkpoint without a gap.
        let next_switch = self.pending.as_ref().map(|p| p.chain.len() as u64);
        let is_next_switch =
            matches!(part, Some(Ok(PredecessorPart::Switch(_)))) && next_switch == Some(entry);
        if !is_next_switch {
            found.extend(self.settle());
        }
        let before = found.len();
        match part {
            None => {}
            Some(Err(why)) => found.push(invalid(entry, why)),
            Some(Ok(PredecessorPart::Checkpoint(note))) if entry == 0 => {
                match checkpoint_named(&note) {
                    Ok((node, body)) => {
                        self.pending = Some(Pending {
                            note,
                            origin: body.origin,
                            chain: vec![node],
                        })
                    }
                    Err(e) => found.push(invalid(entry, e.to_string())),
                }
            }
            Some(Ok(PredecessorPart::Switch(s))) if is_next_switch => {
                if let Some(p) = &mut self.pending {
                    match follow(&p.chain, &s) {
                        Ok(new) => p.chain.push(new),
                        Err(why) => {
                            found.push(invalid(entry, format!("the old log's switch: {why}")))
                        }
                    }
                }
            }
            Some(Ok(_)) => found.push(invalid(
                entry,
                "predecessor entries are the log's first: its checkpoint, then its switches",
            )),
        }
        // A finding here ends the predecessor: nothing more is settled.
        if found.len() > before {
            self.pending = None;
        }
        self.failed |= !found.is_empty();
        found
    }

    /// The checkpoint's signature by the last key followed.
    fn settle(&mut self) -> Option<Finding> {
        let p = self.pending.take()?;
        match settle(&p.note, &p.origin, p.chain) {
            Ok(named) => {
                self.settled = Some(named);
                None
            }
            Err(e) => Some(invalid(
                0,
                format!("the checkpoint is not signed by the key the old log had then: {e}"),
            )),
        }
    }

    /// The old log named, once every entry is seen.
    pub(super) fn finish(mut self) -> (Option<Predecessor>, Option<Finding>) {
        let finding = self.settle();
        let failed = self.failed || finding.is_some();
        (self.settled.filter(|_| !failed), finding)
    }
}
