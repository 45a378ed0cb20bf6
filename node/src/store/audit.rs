//! The audit log's storage: one sled tree, so that an entry, the tree nodes
//! it completes and the new frontier are written in one atomic batch.
//!
//! Keys (`seq`, `size`, `index` are u64 big-endian):
//! * `e ‖ seq` → leaf bytes
//! * `n ‖ level (u8) ‖ index` → hash of the complete subtree
//! * `f` → the frontier (size and right-edge hashes)
//! * `m ‖ message id ‖ seq` → () (entries naming a message, for proofs)
//! * `c ‖ size` → signed checkpoint note
//! * `s ‖ size ‖ witness` → cosignature line
//! * `w ‖ peer` → the last checkpoint of `peer` this node cosigned (as witness)
//! * `a ‖ seq` → an alarm (JSON text)

use comity_protocol::{Digest, MessageId, NodeId};

use super::{key, Result, Store, StoreError};

/// What one append writes.
pub struct AuditAppend<'a> {
    pub seq: u64,
    pub leaf: &'a [u8],
    pub nodes: &'a [(u32, u64, Digest)],
    pub frontier: &'a [u8],
    pub message: Option<MessageId>,
}

fn corrupt(k: &[u8], why: &str) -> StoreError {
    StoreError::Corrupt {
        key: super::hex_key(k),
        why: why.into(),
    }
}

fn node_key(level: u32, index: u64) -> Vec<u8> {
    let level = u8::try_from(level).unwrap_or(u8::MAX);
    key(b'n', &[&[level], &index.to_be_bytes()])
}

impl Store {
    pub fn audit_append(&self, a: &AuditAppend<'_>) -> Result<()> {
        let mut batch = sled::Batch::default();
        batch.insert(key(b'e', &[&a.seq.to_be_bytes()]), a.leaf);
        for (level, index, hash) in a.nodes {
            batch.insert(node_key(*level, *index), &hash.0[..]);
        }
        batch.insert(&b"f"[..], a.frontier);
        if let Some(m) = a.message {
            batch.insert(key(b'm', &[&m.0, &a.seq.to_be_bytes()]), &[][..]);
        }
        self.audit.apply_batch(batch)?;
        Ok(())
    }

    pub fn audit_frontier(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.audit.get(b"f")?.map(|v| v.to_vec()))
    }

    pub fn audit_leaf(&self, seq: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .audit
            .get(key(b'e', &[&seq.to_be_bytes()]))?
            .map(|v| v.to_vec()))
    }

    /// Leaves from `from` on, in order.
    pub fn audit_leaves(&self, from: u64) -> impl Iterator<Item = Result<(u64, Vec<u8>)>> + '_ {
        self.audit
            .range(key(b'e', &[&from.to_be_bytes()])..key(b'e', &[&u64::MAX.to_be_bytes()]))
            .map(|kv| {
                let (k, v) = kv?;
                let seq = k
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt(&k, "bad entry key"))?;
                Ok((seq, v.to_vec()))
            })
    }

    pub fn audit_node(&self, level: u32, index: u64) -> Result<Option<Digest>> {
        let k = node_key(level, index);
        match self.audit.get(&k)? {
            None => Ok(None),
            Some(v) => <[u8; 32]>::try_from(&v[..])
                .map(|b| Some(Digest(b)))
                .map_err(|_| corrupt(&k, "hash is not 32 bytes")),
        }
    }

    /// Sequence numbers of the entries naming `message`.
    pub fn audit_entries_for(&self, message: &MessageId) -> Result<Vec<u64>> {
        self.audit
            .scan_prefix(key(b'm', &[&message.0]))
            .map(|kv| {
                let (k, _) = kv?;
                k.get(17..25)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt(&k, "bad message index key"))
            })
            .collect()
    }

    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<()> {
        self.audit
            .insert(key(b'c', &[&size.to_be_bytes()]), note.as_bytes())?;
        Ok(())
    }

    /// The checkpoint of exactly `size`, if this node signed one.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>> {
        let k = key(b'c', &[&size.to_be_bytes()]);
        match self.audit.get(&k)? {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|_| corrupt(&k, "not UTF-8")),
        }
    }

    /// The newest checkpoint, without reading the others.
    pub fn newest_checkpoint(&self) -> Result<Option<(u64, String)>> {
        match self.audit.scan_prefix([b'c']).next_back() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                let size = k
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt(&k, "bad checkpoint key"))?;
                let text = String::from_utf8(v.to_vec()).map_err(|_| corrupt(&k, "not UTF-8"))?;
                Ok(Some((size, text)))
            }
        }
    }

    /// Every checkpoint this node signed, by increasing size.
    pub fn checkpoints(&self) -> Result<Vec<(u64, String)>> {
        self.audit
            .scan_prefix([b'c'])
            .map(|kv| {
                let (k, v) = kv?;
                let size = k
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| corrupt(&k, "bad checkpoint key"))?;
                let text = String::from_utf8(v.to_vec()).map_err(|_| corrupt(&k, "not UTF-8"))?;
                Ok((size, text))
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
                let size = k
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes);
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
        match self.audit.get(&k)? {
            None => Ok(None),
            Some(v) => String::from_utf8(v.to_vec())
                .map(Some)
                .map_err(|_| corrupt(&k, "not UTF-8")),
        }
    }

    pub fn put_witnessed(&self, peer: &NodeId, note: &str) -> Result<()> {
        self.audit.insert(key(b'w', &[&peer.0]), note.as_bytes())?;
        Ok(())
    }

    pub fn put_alarm(&self, text: &str) -> Result<()> {
        let seq = self.db.generate_id()?;
        self.audit
            .insert(key(b'a', &[&seq.to_be_bytes()]), text.as_bytes())?;
        Ok(())
    }

    pub fn alarms(&self) -> Result<Vec<String>> {
        self.audit
            .scan_prefix([b'a'])
            .map(|kv| {
                let (k, v) = kv?;
                String::from_utf8(v.to_vec()).map_err(|_| corrupt(&k, "not UTF-8"))
            })
            .collect()
    }
}
