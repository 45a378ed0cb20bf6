//! What auditors are handed: the whole log as a bundle, and an inclusion
//! proof for one message.

use std::io::Write;

use comity_protocol::audit::bundle::BundleWriter;
use comity_protocol::audit::checkpoint::origin_for;
use comity_protocol::audit::entry::AuditEntry;
use comity_protocol::audit::proof_file::InclusionProofFile;
use comity_protocol::{MessageId, NodeId};
use tracing::info;

use super::{AuditError, AuditLog, StoredHashes};
use crate::store::StoreError;

impl AuditLog {
    /// Writes the log as a bundle, up to the newest *durable* checkpoint
    /// (sign and commit one first for a fresh export): a bundle never
    /// carries a signature over entries a crash could still undo.
    pub fn export(&self, node: &NodeId, out: impl Write) -> Result<u64, AuditError> {
        self.export_up_to(node, *self.latest.borrow(), out)
    }

    /// [`AuditLog::export`] up to the durable checkpoint of size `upto`
    /// (the one whose cosignatures an export waited for), even if newer
    /// ones were signed since.
    pub fn export_up_to(
        &self,
        node: &NodeId,
        upto: u64,
        out: impl Write,
    ) -> Result<u64, AuditError> {
        let durable = (*self.latest.borrow()).min(upto);
        let checkpoints: Vec<(u64, String)> = self
            .store
            .checkpoints()?
            .into_iter()
            .filter(|(s, _)| *s <= durable)
            .collect();
        let size = checkpoints.last().map(|(s, _)| *s).unwrap_or(0);
        let mut w = BundleWriter::new(out, node)?;
        for leaf in self.store.audit_leaves(0, size)? {
            let (_, leaf) = leaf.map_err(StoreError::from)?;
            w.write_entry(&leaf)?;
        }
        let cosignatures = self.store.cosignatures()?;
        for (s, note) in &checkpoints {
            w.write_checkpoint(note)?;
            for (cs, witness, line) in &cosignatures {
                if cs == s {
                    w.write_cosignature(*s, witness, &origin_for(witness), line)?;
                }
            }
        }
        w.finish()?;
        info!(
            entries = size,
            checkpoints = checkpoints.len(),
            "audit log exported"
        );
        Ok(size)
    }

    /// An inclusion proof of every entry naming `message`, against the
    /// newest durable checkpoint covering them, preferring one a witness
    /// cosigned.
    ///
    /// With `peer`, only the entries about the message of that peer (or of
    /// no peer): two peers' messages may share an id.
    pub fn proof(
        &self,
        node: &NodeId,
        message: MessageId,
        peer: Option<NodeId>,
    ) -> Result<Proof, AuditError> {
        let mut leaves = Vec::new();
        for seq in self.store.audit_entries_for(&message)? {
            let Some(leaf) = self.store.audit_leaf(seq)? else {
                continue;
            };
            let of_peer = match (peer, AuditEntry::from_leaf(&leaf)) {
                (None, _) => true,
                (Some(p), Ok(e)) => e.peer.is_none_or(|ep| ep == p),
                (Some(_), Err(_)) => false,
            };
            if of_peer {
                leaves.push((seq, leaf));
            }
        }
        let Some(last) = leaves.iter().map(|(s, _)| *s).max() else {
            return Ok(Proof::NoEntries);
        };
        let durable = *self.latest.borrow();
        let cosignatures = self.store.cosignatures()?;
        let checkpoints: Vec<(u64, String)> = self
            .store
            .checkpoints()?
            .into_iter()
            .filter(|(s, _)| *s > last && *s <= durable)
            .collect();
        let chosen = checkpoints
            .iter()
            .rev()
            .find(|(s, _)| cosignatures.iter().any(|(cs, _, _)| cs == s))
            .or_else(|| checkpoints.last());
        let Some((size, note)) = chosen else {
            return Ok(Proof::NotCovered);
        };
        let mut note = note.clone();
        for (cs, _, line) in &cosignatures {
            if cs == size {
                note.push_str(line.trim_end_matches('\n'));
                note.push('\n');
            }
        }
        let file =
            InclusionProofFile::build(&StoredHashes(&self.store), node, message, &note, leaves)?;
        Ok(Proof::File(file.to_json()))
    }
}

/// The outcome of [`AuditLog::proof`].
#[derive(Debug)]
pub enum Proof {
    /// No entry names the message.
    NoEntries,
    /// No durable checkpoint covers the entries yet: sign and commit one.
    NotCovered,
    File(String),
}
