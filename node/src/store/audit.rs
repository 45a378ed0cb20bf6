//! The audit log's storage. Entries and the Merkle tree are in
//! append-only files ([`super::audit_files`]); what is small and rare is in
//! the sled tree `audit`:
//!
//! Keys (`size`, `seq` are u64 big-endian):
//! * `k` → the [`Mark`] recovery starts from (written with each checkpoint)
//! * `c ‖ size` → signed checkpoint note
//! * `s ‖ size ‖ witness` → cosignature line
//! * `w ‖ peer` → the last checkpoint of `peer` this node cosigned (as witness)
//! * `h ‖ peer ‖ size` → the root of `peer`'s checkpoint of `size` this
//!   node cosigned; the newest [`MAX_WITNESSED_ROOTS`] per peer, counted in
//!   `n ‖ peer` (u64): what a restoration statement is checked against
//! * `r ‖ peer` → the last restoration statement of `peer` this node
//!   accepted, with its signature (bincode)
//! * alarms: see [`super::alarms`] (`p`, `q`, and the old `a`)

use comity_protocol::audit::restoration::RestorationStatement;
use comity_protocol::{Digest, MessageId, NodeId};

pub use super::audit_files::{Leaves, Mark};
use super::{key, Result, Store, StoreError};

fn corrupt(k: &[u8], why: &str) -> StoreError {
    StoreError::Corrupt {
        key: super::hex_key(k),
        why: why.into(),
    }
}

fn text(k: &[u8], v: &[u8]) -> Result<String> {
    String::from_utf8(v.to_vec()).map_err(|_| corrupt(k, "not UTF-8"))
}

/// The big-endian u64 at `k[at..at + 8]`.
fn u64_at(k: &[u8], at: usize) -> Option<u64> {
    k.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

/// A `c ‖ size` record: (size, note text).
fn checkpoint_record(k: &[u8], v: &[u8]) -> Result<(u64, String)> {
    let size = u64_at(k, 1).ok_or_else(|| corrupt(k, "bad checkpoint key"))?;
    Ok((size, text(k, v)?))
}

impl Store {
    /// Appends the entry `build(seq)` makes for the next sequence number;
    /// it is on its way to disk before this returns, and durable at the
    /// next commit, before anything written after it.
    pub fn audit_append<F>(&self, build: F) -> Result<u64>
    where
        F: FnOnce(
            u64,
        ) -> std::result::Result<
            (Vec<u8>, Option<MessageId>),
            comity_protocol::audit::EntryError,
        >,
    {
        Ok(self.audit_files.append(build)?)
    }

    pub fn audit_size(&self) -> u64 {
        self.audit_files.size()
    }

    /// Syncs the log's files and returns the size, root and [`Mark`] they
    /// are synced to; store the mark with [`Store::put_checkpoint`].
    pub fn audit_seal(&self) -> Result<(Mark, Digest)> {
        Ok(self.audit_files.seal()?)
    }

    /// Syncs the log, then appends `build(size)` before any other entry
    /// (see [`super::audit_files::AuditFiles::seal_and_append`]); returns
    /// the mark and root of the log before it.
    pub fn audit_seal_and_append<F>(&self, build: F) -> Result<(Mark, Digest)>
    where
        F: FnOnce(
            u64,
        ) -> std::result::Result<
            (Vec<u8>, Option<MessageId>),
            comity_protocol::audit::EntryError,
        >,
    {
        Ok(self.audit_files.seal_and_append(build)?)
    }

    pub fn audit_leaf(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.audit_files.leaf(seq)?)
    }

    /// Leaves `from..to` in order.
    pub fn audit_leaves(&self, from: u64, to: u64) -> Result<Leaves> {
        Ok(self.audit_files.leaves(from, to)?)
    }

    pub fn audit_node(&self, level: u32, index: u64) -> Result<Option<Digest>> {
        Ok(self.audit_files.node(level, index)?)
    }

    /// Sequence numbers of the entries naming `message`.
    pub fn audit_entries_for(&self, message: &MessageId) -> Result<Vec<u64>> {
        Ok(self.audit_files.entries_for(message)?)
    }

    pub(super) fn audit_mark(tree: &super::barrier::Tree) -> Result<Mark> {
        match tree.get(b"k")? {
            None => Ok(Mark::default()),
            Some(v) => Mark::from_bytes(&v).ok_or_else(|| corrupt(b"k", "bad audit mark")),
        }
    }

    /// Stores a checkpoint and, with it, the mark of the files it was
    /// sealed at (see [`Store::audit_seal`]).
    pub fn put_checkpoint(&self, mark: Mark, note: &str) -> Result<()> {
        self.audit
            .insert(key(b'c', &[&mark.size.to_be_bytes()]), note.as_bytes())?;
        self.audit.insert(&b"k"[..], &mark.to_bytes()[..])?;
        Ok(())
    }

    /// Stores a checkpoint of a size below the mark's (the old key's last,
    /// signed again at start after a crash lost it: see
    /// `AuditLog::finish_switch`).
    pub fn put_checkpoint_only(&self, size: u64, note: &str) -> Result<()> {
        self.audit
            .insert(key(b'c', &[&size.to_be_bytes()]), note.as_bytes())?;
        Ok(())
    }

    /// The checkpoint of exactly `size`, if this node signed one.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>> {
        let k = key(b'c', &[&size.to_be_bytes()]);
        self.audit.get(&k)?.map(|v| text(&k, &v)).transpose()
    }

    /// The newest checkpoint, without reading the others.
    pub fn newest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        match self.audit.scan_prefix([b'c']).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                checkpoint_record(&k, &v).map(Some)
            }
        }
    }

    /// Every checkpoint this node signed, by increasing size.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>> {
        self.audit
            .scan_prefix([b'c'])
            .map(|kv| {
                let (k, v) = kv?;
                checkpoint_record(&k, &v)
            })
            .collect()
    }

    pub fn put_cosignature(&self, size: u64, witness: &NodeId, line: &str) -> Result<()> {
        self.audit.insert(
            key(b's', &[&size.to_be_bytes(), &witness.0]),
            line.as_bytes(),
        )?;
        Ok(())
    }

    /// Every cosignature received: (checkpoint size, witness, line).
    pub fn cosignatures(&self) -> Result<Vec<(u64, NodeId, String)>> {
        self.audit
            .scan_prefix([b's'])
            .map(|kv| {
                let (k, v) = kv?;
                let size = u64_at(&k, 1);
                let witness = k.get(9..41).and_then(|b| <[u8; 32]>::try_from(b).ok());
                let line = String::from_utf8(v.to_vec()).ok();
                match (size, witness, line) {
                    (Some(s), Some(w), Some(l)) => Ok((s, NodeId(w), l)),
                    _ => Err(corrupt(&k, "bad cosignature record")),
                }
            })
            .collect()
    }

    pub fn witnessed(&self, peer: &NodeId) -> Result<Option<String>> {
        let k = key(b'w', &[&peer.0]);
        self.audit.get(&k)?.map(|v| text(&k, &v)).transpose()
    }

    pub fn put_witnessed(&self, peer: &NodeId, note: &str) -> Result<()> {
        self.audit.insert(key(b'w', &[&peer.0]), note.as_bytes())?;
        Ok(())
    }

    /// Keeps the root of `peer`'s checkpoint of `size`, cosigned now; drops
    /// the oldest beyond [`MAX_WITNESSED_ROOTS`].
    pub fn put_witnessed_root(&self, peer: &NodeId, size: u64, root: &Digest) -> Result<()> {
        let k = key(b'h', &[&peer.0, &size.to_be_bytes()]);
        if self.audit.insert(&k, &root.0[..])?.is_some() {
            return Ok(());
        }
        let count_key = key(b'n', &[&peer.0]);
        let mut count = match self.audit.get(&count_key)? {
            Some(v) => u64_at(&v, 0).ok_or_else(|| corrupt(&count_key, "bad count"))?,
            None => 0,
        } + 1;
        if count > MAX_WITNESSED_ROOTS {
            if let Some(kv) = self.audit.scan_prefix(key(b'h', &[&peer.0])).next() {
                self.audit.remove(kv?.0)?;
                count -= 1;
            }
        }
        self.audit.insert(count_key, &count.to_be_bytes()[..])?;
        Ok(())
    }

    /// Forgets the roots kept of `peer`'s checkpoints larger than `size`:
    /// after a restoration to `size` they are of a history that is gone.
    /// At most [`MAX_WITNESSED_ROOTS`] removals.
    pub fn drop_witnessed_roots_above(&self, peer: &NodeId, size: u64) -> Result<()> {
        let Some(from) = size.checked_add(1) else {
            return Ok(());
        };
        let start = key(b'h', &[&peer.0, &from.to_be_bytes()]);
        let end = key(b'h', &[&peer.0, &u64::MAX.to_be_bytes()]);
        let mut dropped = 0u64;
        for kv in self.audit.range(start..=end) {
            self.audit.remove(kv?.0)?;
            dropped += 1;
        }
        if dropped > 0 {
            let count_key = key(b'n', &[&peer.0]);
            let count = match self.audit.get(&count_key)? {
                Some(v) => u64_at(&v, 0).ok_or_else(|| corrupt(&count_key, "bad count"))?,
                None => 0,
            };
            self.audit
                .insert(count_key, &count.saturating_sub(dropped).to_be_bytes()[..])?;
        }
        Ok(())
    }

    /// The root of `peer`'s checkpoint of `size` this node cosigned, if it
    /// still keeps it.
    pub fn witnessed_root(&self, peer: &NodeId, size: u64) -> Result<Option<Digest>> {
        let k = key(b'h', &[&peer.0, &size.to_be_bytes()]);
        self.audit
            .get(&k)?
            .map(|v| {
                <[u8; 32]>::try_from(&v[..])
                    .map(Digest)
                    .map_err(|_| corrupt(&k, "bad root"))
            })
            .transpose()
    }

    /// The last restoration statement of `peer` accepted, and its signature.
    pub fn accepted_restoration(
        &self,
        peer: &NodeId,
    ) -> Result<Option<(RestorationStatement, [u8; 64])>> {
        let k = key(b'r', &[&peer.0]);
        self.audit
            .get(&k)?
            .map(|v| super::decode(&k, &v))
            .transpose()
    }

    /// A restoration of `peer` accepted: `continuation` becomes the last
    /// checkpoint cosigned for it and `statement` the last restoration, in
    /// one batch — a flush between the two would leave the continuation
    /// cosigned without its statement, and a retry would then take the
    /// continuation for what had been cosigned before.
    pub fn put_accepted_restoration(
        &self,
        peer: &NodeId,
        continuation: &str,
        statement: &RestorationStatement,
        signature: &[u8; 64],
    ) -> Result<()> {
        let v = super::encode(&(statement, signature))?;
        let mut batch = sled::Batch::default();
        batch.insert(key(b'w', &[&peer.0]), continuation.as_bytes());
        batch.insert(key(b'r', &[&peer.0]), v);
        self.audit.apply_batch(batch)?;
        Ok(())
    }
}

/// Roots of cosigned checkpoints kept per peer: 40 bytes each. A backup
/// made a few thousand checkpoints before the last one a witness cosigned
/// is still checked exactly; for an older one the witness can only check
/// the sizes.
pub const MAX_WITNESSED_ROOTS: u64 = 4096;
