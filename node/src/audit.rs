//! The node's audit log: every event an entry in an RFC 6962 Merkle tree,
//! checkpoints signed with the node's key, cosignatures from its peers, and
//! this node's own duties as a witness of theirs. The math and formats are
//! in `comity_protocol::audit`; the bytes live in `store::audit`.
//!
//! Durability: [`AuditLog::record`] writes the entry before the caller
//! writes the event it describes, and both become durable at the caller's
//! next commit, which syncs the log before the rest of the store, so an
//! event on disk never lacks its entry.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use comity_protocol::audit::bundle::BundleWriter;
use comity_protocol::audit::checkpoint::{
    check_witness_update, cosign, open_checkpoint, origin_for, sign_checkpoint, verify_cosignature,
    Checkpoint, WitnessError,
};
use comity_protocol::audit::entry::{Actor, AuditEntry, AuditKind, MAX_DETAIL_BYTES};
use comity_protocol::audit::merkle::{consistency_proof, SubtreeHashes};
use comity_protocol::audit::note::Note;
use comity_protocol::audit::proof_file::InclusionProofFile;
use comity_protocol::session::WitnessRefusal;
use comity_protocol::{Digest, Identity, MessageId, NodeId, Timestamp};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit log: {0}")]
    Log(String),
}

fn log_err(e: impl std::fmt::Display) -> AuditError {
    AuditError::Log(e.to_string())
}

/// Complete subtree hashes, read from the store.
struct StoredHashes<'a>(&'a Store);

impl SubtreeHashes for StoredHashes<'_> {
    type Error = AuditError;

    fn complete(&self, level: u32, index: u64) -> Result<Digest, AuditError> {
        self.0.audit_node(level, index)?.ok_or_else(|| {
            AuditError::Log(format!("missing tree node level {level} index {index}"))
        })
    }
}

/// One fact to record.
pub struct Fact<'a> {
    pub kind: AuditKind,
    pub actor: Actor,
    pub peer: Option<NodeId>,
    pub message: Option<MessageId>,
    pub digest: Option<Digest>,
    pub detail: &'a str,
}

impl<'a> Fact<'a> {
    pub fn new(kind: AuditKind, actor: Actor) -> Self {
        Fact {
            kind,
            actor,
            peer: None,
            message: None,
            digest: None,
            detail: "",
        }
    }

    pub fn peer(mut self, p: NodeId) -> Self {
        self.peer = Some(p);
        self
    }

    pub fn message(mut self, m: MessageId) -> Self {
        self.message = Some(m);
        self
    }

    pub fn digest(mut self, d: Option<Digest>) -> Self {
        self.digest = d;
        self
    }

    pub fn detail(mut self, d: &'a str) -> Self {
        self.detail = d;
        self
    }
}

/// An entry's detail: one line, bounded.
fn clean_detail(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    while out.len() > MAX_DETAIL_BYTES {
        out.pop();
    }
    out
}

/// Alarms kept in the store at most (see [`AuditLog::alarm`]).
pub const MAX_ALARMS: usize = 1000;

pub struct AuditLog {
    store: Store,
    origin: String,
    enabled: bool,
    checkpoint_every: u64,
    /// Woken when enough entries were added for a checkpoint.
    pub due: Notify,
    /// The newest checkpoint's size.
    signed: std::sync::atomic::AtomicU64,
    /// Held while a checkpoint is signed and stored.
    signing: Mutex<()>,
    /// When this process last signed one (for the checkpoint-age metric).
    signed_at: Mutex<Option<Timestamp>>,
    /// The newest checkpoint known to be on disk, for senders to offer to
    /// witnesses (a witness must never cosign what a crash could undo).
    latest: watch::Sender<u64>,
    /// Per witness, the largest size it cosigned.
    cosigned: Mutex<HashMap<NodeId, u64>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log (the store re-read only what followed its last
    /// checkpoint).
    pub fn open(
        store: Store,
        node: &NodeId,
        checkpoint_every: u64,
        enabled: bool,
    ) -> Result<Self, AuditError> {
        let latest = store.newest_checkpoint()?.map(|(s, _)| s).unwrap_or(0);
        let mut cosigned = HashMap::new();
        for (size, witness, _) in store.cosignatures()? {
            let e = cosigned.entry(witness).or_insert(0);
            *e = (*e).max(size);
        }
        Ok(AuditLog {
            store,
            origin: origin_for(node),
            enabled,
            checkpoint_every: checkpoint_every.max(1),
            due: Notify::new(),
            signed: std::sync::atomic::AtomicU64::new(latest),
            signing: Mutex::new(()),
            signed_at: Mutex::new(None),
            latest: watch::channel(latest).0,
            cosigned: Mutex::new(cosigned),
        })
    }

    pub fn size(&self) -> u64 {
        self.store.audit_size()
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Appends one entry (not yet flushed: the caller's commit does that).
    pub fn record(&self, fact: Fact<'_>) -> Result<u64, AuditError> {
        if !self.enabled {
            return Ok(0);
        }
        let detail = clean_detail(fact.detail);
        let seq = self.store.audit_append(|seq| {
            let entry = AuditEntry {
                seq,
                time: Timestamp::now(),
                kind: fact.kind,
                actor: fact.actor,
                peer: fact.peer,
                message_id: fact.message,
                envelope_digest: fact.digest,
                detail,
            };
            let leaf = entry.to_leaf().map_err(|e| e.to_string())?;
            Ok((leaf, fact.message))
        })?;
        let since =
            (seq + 1).saturating_sub(self.signed.load(std::sync::atomic::Ordering::Relaxed));
        if since >= self.checkpoint_every {
            self.due.notify_one();
        }
        Ok(seq)
    }

    /// Logs a failure to record instead of failing the event: the event
    /// already happened. A failed append breaks the log's files, so every
    /// later commit fails and the event is never acknowledged as durable.
    pub fn note(&self, fact: Fact<'_>) {
        if let Err(e) = self.record(fact) {
            warn!(error = %e, "cannot append to the audit log");
        }
    }

    /// Signs a checkpoint of the current tree if it grew since the last.
    /// Returns its size.
    pub fn checkpoint(&self, identity: &Identity) -> Result<Option<u64>, AuditError> {
        if !self.enabled {
            return Ok(None);
        }
        // One at a time (timer, export, proof, shutdown): the stored mark
        // and `signed` only ever grow.
        let _one = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        let size = self.store.audit_size();
        if size == 0 || size <= self.signed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        // Sealing syncs the files up to the size it returns, which may have
        // grown since: the checkpoint is of that size.
        let (mark, root) = self.store.audit_seal()?;
        let size = mark.size;
        let note = sign_checkpoint(
            identity,
            &Checkpoint {
                origin: self.origin.clone(),
                size,
                root,
            },
        )
        .map_err(log_err)?;
        self.store.put_checkpoint(mark, &note)?;
        self.signed
            .store(size, std::sync::atomic::Ordering::Relaxed);
        *self.signed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Timestamp::now());
        Ok(Some(size))
    }

    /// The newest signed checkpoint's size. Read it before a commit, and
    /// [`AuditLog::publish`] it after: the commit covers it.
    pub fn signed(&self) -> u64 {
        self.signed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Offers checkpoint `signed` (see [`AuditLog::signed`]) and those
    /// before it to witnesses. Call only after a commit that made it durable.
    pub fn publish(&self, signed: u64) {
        self.latest.send_if_modified(|l| {
            let newer = signed > *l;
            if newer {
                *l = signed;
            }
            newer
        });
    }

    /// When the newest checkpoint was signed by this process, if it was.
    pub fn latest_checkpoint_time(&self) -> Option<Timestamp> {
        *self.signed_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn latest(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    pub fn cosigned_by(&self, witness: &NodeId) -> u64 {
        *self
            .cosigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(witness)
            .unwrap_or(&0)
    }

    /// What to send a witness: our checkpoint of size `newest` (durable:
    /// the caller has it from [`AuditLog::latest`]) and a proof from
    /// `old_size`, if `newest` is larger.
    pub fn offer(
        &self,
        old_size: u64,
        newest: u64,
    ) -> Result<Option<(u64, String, Vec<Digest>)>, AuditError> {
        if newest <= old_size {
            return Ok(None);
        }
        let Some(note) = self.store.checkpoint_at(newest)? else {
            return Ok(None);
        };
        let proof =
            consistency_proof(&StoredHashes(&self.store), old_size, newest).map_err(log_err)?;
        Ok(Some((newest, note, proof)))
    }

    /// Verifies and stores `witness`'s cosignature on our checkpoint `size`.
    pub fn accept_cosignature(
        &self,
        witness: &NodeId,
        size: u64,
        line: &str,
    ) -> Result<(), AuditError> {
        // A peer names the size: one keyed read, and no re-verification of
        // our own signature, whatever it sends.
        let note = self
            .store
            .checkpoint_at(size)?
            .ok_or_else(|| AuditError::Log(format!("no checkpoint of size {size}")))?;
        let parsed = Note::parse(&note).map_err(log_err)?;
        verify_cosignature(line, &origin_for(witness), witness, parsed.text()).map_err(log_err)?;
        self.store.put_cosignature(size, witness, line)?;
        let mut c = self.cosigned.lock().unwrap_or_else(|p| p.into_inner());
        let e = c.entry(*witness).or_insert(0);
        *e = (*e).max(size);
        Ok(())
    }

    /// The witness's side: checks `peer`'s checkpoint against the last one
    /// cosigned for it, persists it, and returns the cosignature line. The
    /// caller commits before sending the line.
    pub fn witness(
        &self,
        me: &Identity,
        peer: &NodeId,
        note_text: &str,
        old_size: u64,
        proof: &[Digest],
    ) -> Result<Witnessed, Refused> {
        let origin = origin_for(peer);
        let stored = self.store.witnessed(peer).map_err(|e| {
            Refused::new(WitnessRefusal::BadCheckpoint, 0, 0, format!("store: {e}"))
        })?;
        let previous = stored
            .as_deref()
            .and_then(|t| open_checkpoint(t, &origin, peer).ok());
        if let Some((prev, prev_note)) = &previous {
            if stored.as_deref() == Some(note_text) {
                // The one cosigned last, again: sign it again, store nothing.
                let now_secs = Timestamp::now().as_millis() / 1000;
                let line =
                    cosign(me, &origin_for(&me.id()), prev_note.text(), now_secs).map_err(|e| {
                        Refused::new(WitnessRefusal::BadCheckpoint, 0, 0, e.to_string())
                    })?;
                return Ok(Witnessed {
                    size: prev.size,
                    line,
                    new: false,
                });
            }
        }
        let previous = previous.map(|(c, _)| c);
        let witnessed = previous.as_ref().map(|c| c.size).unwrap_or(0);
        let (new, note) = open_checkpoint(note_text, &origin, peer).map_err(|e| {
            Refused::new(WitnessRefusal::BadCheckpoint, 0, witnessed, e.to_string())
        })?;
        let refused =
            |r: WitnessRefusal, detail: String| Refused::new(r, new.size, witnessed, detail);
        if let Some(prev) = &previous {
            if new.size < prev.size {
                let e = WitnessError::Shrank {
                    old_size: prev.size,
                    new_size: new.size,
                };
                return Err(refused(WitnessRefusal::Shrank, e.to_string()));
            }
        }
        if old_size != witnessed {
            return Err(refused(
                WitnessRefusal::OldSizeMismatch,
                format!("last cosigned size is {witnessed}, not {old_size}"),
            ));
        }
        check_witness_update(previous.as_ref(), &new, proof).map_err(|e| match e {
            WitnessError::Fork { .. } => refused(WitnessRefusal::Fork, e.to_string()),
            WitnessError::Shrank { .. } => refused(WitnessRefusal::Shrank, e.to_string()),
            WitnessError::Inconsistent { .. } => {
                refused(WitnessRefusal::Inconsistent, e.to_string())
            }
            WitnessError::WrongOrigin { .. } => {
                refused(WitnessRefusal::BadCheckpoint, e.to_string())
            }
        })?;
        self.store
            .put_witnessed(peer, note_text)
            .map_err(|e| refused(WitnessRefusal::BadCheckpoint, format!("store: {e}")))?;
        let now_secs = Timestamp::now().as_millis() / 1000;
        let line = cosign(me, &origin_for(&me.id()), note.text(), now_secs)
            .map_err(|e| refused(WitnessRefusal::BadCheckpoint, e.to_string()))?;
        Ok(Witnessed {
            size: new.size,
            line,
            new: true,
        })
    }

    /// Records an alarm (kept, and shown in the node's status).
    pub fn alarm(&self, text: &str) {
        warn!(alarm = text, "AUDIT ALARM");
        // A misbehaving peer can cause alarms as often as it likes: the first
        // MAX_ALARMS are kept, the rest are in the log only.
        match self.store.alarm_count() {
            Ok(n) if n >= MAX_ALARMS => {
                warn!(
                    kept = n,
                    "alarm not stored: {MAX_ALARMS} alarms are kept already"
                )
            }
            _ => {
                if let Err(e) = self.store.put_alarm(text) {
                    warn!(error = %e, "cannot store an alarm");
                }
            }
        }
    }

    pub fn alarms(&self) -> Result<Vec<String>, AuditError> {
        Ok(self.store.alarms()?)
    }

    /// Writes the log as a bundle, up to the newest *durable* checkpoint
    /// (sign and commit one first for a fresh export): a bundle never
    /// carries a signature over entries a crash could still undo.
    pub fn export(&self, node: &NodeId, out: impl Write) -> Result<u64, AuditError> {
        let durable = *self.latest.borrow();
        let checkpoints: Vec<(u64, String)> = self
            .store
            .checkpoints()?
            .into_iter()
            .filter(|(s, _)| *s <= durable)
            .collect();
        let size = checkpoints.last().map(|(s, _)| *s).unwrap_or(0);
        let mut w = BundleWriter::new(out, node).map_err(log_err)?;
        for leaf in self.store.audit_leaves(0, size)? {
            let (_, leaf) = leaf.map_err(StoreError::from)?;
            w.write_entry(&leaf).map_err(log_err)?;
        }
        let cosignatures = self.store.cosignatures()?;
        for (s, note) in &checkpoints {
            w.write_checkpoint(note).map_err(log_err)?;
            for (cs, witness, line) in &cosignatures {
                if cs == s {
                    w.write_cosignature(*s, witness, &origin_for(witness), line)
                        .map_err(log_err)?;
                }
            }
        }
        w.finish().map_err(log_err)?;
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
    pub fn proof(&self, node: &NodeId, message: MessageId) -> Result<Proof, AuditError> {
        let seqs = self.store.audit_entries_for(&message)?;
        let Some(last) = seqs.iter().copied().max() else {
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
        let mut leaves = Vec::new();
        for seq in seqs {
            if let Some(leaf) = self.store.audit_leaf(seq)? {
                leaves.push((seq, leaf));
            }
        }
        let file =
            InclusionProofFile::build(&StoredHashes(&self.store), node, message, &note, leaves)
                .map_err(log_err)?;
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

/// A cosignature made as a witness.
#[derive(Debug)]
pub struct Witnessed {
    pub size: u64,
    pub line: String,
    /// False when the checkpoint is the one cosigned last (nothing stored).
    pub new: bool,
}

/// A witness's refusal, as it goes back to the log.
#[derive(Debug)]
pub struct Refused {
    pub reason: WitnessRefusal,
    pub size: u64,
    pub witnessed_size: u64,
    pub detail: String,
}

impl Refused {
    fn new(reason: WitnessRefusal, size: u64, witnessed_size: u64, detail: String) -> Self {
        Refused {
            reason,
            size,
            witnessed_size,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use comity_protocol::audit::merkle::{leaf_hash, Frontier};

    use super::*;

    #[tokio::test]
    async fn the_checkpoint_cosigned_last_is_cosigned_again_without_a_new_record() {
        let dir = tempfile::tempdir().unwrap();
        let me = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0));
        let peer = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(0));
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(store.clone(), &me.id(), 1000, true).unwrap();
        let mut tree = Frontier::new();
        let note_at = |tree: &Frontier| {
            sign_checkpoint(
                &peer,
                &Checkpoint {
                    origin: origin_for(&peer.id()),
                    size: tree.size(),
                    root: tree.root(),
                },
            )
            .unwrap()
        };
        tree.push(leaf_hash(b"one")).unwrap();
        let first = note_at(&tree);
        let w = log.witness(&me, &peer.id(), &first, 0, &[]).unwrap();
        assert!(w.new && w.size == 1);
        // The same note again (from any old size): cosigned, not stored anew.
        let again = log.witness(&me, &peer.id(), &first, 0, &[]).unwrap();
        assert!(!again.new && again.size == 1);
        assert_eq!(
            store.witnessed(&peer.id()).unwrap().as_deref(),
            Some(&first[..])
        );
        // A larger, consistent one is new.
        tree.push(leaf_hash(b"two")).unwrap();
        let second = note_at(&tree);
        let proof = vec![leaf_hash(b"two")];
        let w = log.witness(&me, &peer.id(), &second, 1, &proof).unwrap();
        assert!(w.new && w.size == 2);
    }
}
