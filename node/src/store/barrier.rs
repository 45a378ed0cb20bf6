//! The write barrier a backup closes: every write to sled passes it, so
//! that the backup can stop all writes, flush, and copy sled's files while
//! nothing changes them (sled 0.34 has no snapshot and rewrites its
//! segments in place: its files are consistent only after a flush with no
//! write in between).
//!
//! A tree of the store is a [`Tree`]: its writing methods pass the barrier
//! (a shared lock, held for one sled call), its reading methods do not. A
//! new tree is opened with [`Tree::open`] and needs nothing else; a new
//! kind of write is added here, taking [`WriteBarrier::pass`] like the
//! others. Nothing in the store writes to a bare `sled::Tree`.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sled::{Batch, IVec};

use super::fault::FaultCell;

/// Also where a failed write is noticed: sled stays in an error state
/// after an I/O error, so the first one faults the store (with its reason:
/// a full disk says `os error 28`, which is what recovery reopens after).
#[derive(Clone, Debug, Default)]
pub(super) struct WriteBarrier(Arc<RwLock<()>>, FaultCell);

/// Proof that the barrier is closed: no write is under way or can start
/// until this is dropped.
pub(super) struct Closed<'a>(#[allow(dead_code)] RwLockWriteGuard<'a, ()>);

impl WriteBarrier {
    /// Writes that fail fault `fault`.
    pub(super) fn new(fault: FaultCell) -> WriteBarrier {
        WriteBarrier(Arc::default(), fault)
    }

    /// Faults the store if `result` is a failed write (an I/O error; a
    /// write refused for another reason, e.g. a compare-and-swap that did
    /// not match, is not a fault).
    fn noticed<T>(&self, result: sled::Result<T>) -> sled::Result<T> {
        if let Err(e @ sled::Error::Io(_)) = &result {
            self.1.set(&format!("store: {e}"));
        }
        result
    }

    /// Held for the duration of one write. Never held across another
    /// `pass` (a waiting backup would make the second one wait forever).
    fn pass(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the writes under way to end and stops new ones.
    pub(super) fn close(&self) -> Closed<'_> {
        Closed(self.0.write().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A sled tree whose writes pass the store's [`WriteBarrier`].
#[derive(Clone, Debug)]
pub(super) struct Tree {
    tree: sled::Tree,
    barrier: WriteBarrier,
}

impl Tree {
    pub(super) fn open(db: &sled::Db, name: &str, barrier: &WriteBarrier) -> sled::Result<Tree> {
        Ok(Tree {
            tree: db.open_tree(name)?,
            barrier: barrier.clone(),
        })
    }

    // --- writes: through the barrier ---

    pub(super) fn insert<K, V>(&self, key: K, value: V) -> sled::Result<Option<IVec>>
    where
        K: AsRef<[u8]>,
        V: Into<IVec>,
    {
        let _pass = self.barrier.pass();
        self.barrier.noticed(self.tree.insert(key, value))
    }

    pub(super) fn remove<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        let _pass = self.barrier.pass();
        self.barrier.noticed(self.tree.remove(key))
    }

    pub(super) fn clear(&self) -> sled::Result<()> {
        let _pass = self.barrier.pass();
        self.barrier.noticed(self.tree.clear())
    }

    pub(super) fn apply_batch(&self, batch: Batch) -> sled::Result<()> {
        let _pass = self.barrier.pass();
        self.barrier.noticed(self.tree.apply_batch(batch))
    }

    /// A write the holder of the closed barrier makes itself (the backup's
    /// checkpoint).
    pub(super) fn insert_closed<K, V>(
        &self,
        _closed: &Closed<'_>,
        key: K,
        value: V,
    ) -> sled::Result<Option<IVec>>
    where
        K: AsRef<[u8]>,
        V: Into<IVec>,
    {
        self.barrier.noticed(self.tree.insert(key, value))
    }

    // --- reads: straight through ---

    pub(super) fn get<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<Option<IVec>> {
        self.tree.get(key)
    }

    pub(super) fn contains_key<K: AsRef<[u8]>>(&self, key: K) -> sled::Result<bool> {
        self.tree.contains_key(key)
    }

    pub(super) fn scan_prefix<P: AsRef<[u8]>>(&self, prefix: P) -> sled::Iter {
        self.tree.scan_prefix(prefix)
    }

    pub(super) fn iter(&self) -> sled::Iter {
        self.tree.iter()
    }

    pub(super) fn range<K: AsRef<[u8]>, R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> sled::Iter {
        self.tree.range(range)
    }
}

/// `Db::generate_id` persists its counter in sled now and then: a write.
pub(super) fn generate_id(db: &sled::Db, barrier: &WriteBarrier) -> sled::Result<u64> {
    let _pass = barrier.pass();
    barrier.noticed(db.generate_id())
}
