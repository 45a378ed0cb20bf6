//! Free space on the data directory's filesystem, and the reserve kept on
//! it: below the reserve new local submissions are refused, so that what
//! the node must write whatever happens (receipts, checkpoints, audit
//! entries) still fits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use comity_config::Limits;
use serde::Serialize;

/// One measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Space {
    /// Bytes an unprivileged writer may still use.
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// The reserve for this filesystem (`[limits] disk_reserve_mib`,
    /// `disk_reserve_percent`).
    pub reserve_bytes: u64,
}

impl Space {
    /// New local submissions are refused.
    pub fn below_reserve(&self) -> bool {
        self.free_bytes < self.reserve_bytes
    }

    /// Whether an incoming envelope of `len` bytes is deferred: taking it
    /// would leave less than half the reserve. The store keeps the envelope
    /// and its opened body, and sled's log writes both again before it
    /// compacts: four times the envelope bounds what it costs.
    pub fn defers(&self, len: usize) -> bool {
        let need = (self.reserve_bytes / 2).saturating_add(cost(len as u64));
        self.free_bytes < need
    }

    /// This measurement less what `unflushed` bytes of message records
    /// will take once flushed (twice their size: sled's log, then its
    /// compaction).
    pub fn less_unflushed(mut self, unflushed: u64) -> Space {
        self.free_bytes = self.free_bytes.saturating_sub(cost(unflushed) / 2);
        self
    }

    /// Whether a local submission is refused: what is written but not yet
    /// flushed (`unflushed`), what other submissions are about to write
    /// and this one's record (`claimed`, see [`Disk::claim`]) would leave
    /// less than the reserve.
    pub fn refuses_submission(&self, unflushed: u64, claimed: u64) -> bool {
        self.less_unflushed(unflushed.saturating_add(claimed))
            .below_reserve()
    }
}

/// Disk taken by `bytes` of stored envelope, at most (see [`Space::defers`]).
fn cost(bytes: u64) -> u64 {
    bytes.saturating_mul(4)
}

/// The data directory's filesystem, measured on demand (one `statvfs`),
/// with the last measurement kept for status and metrics.
#[derive(Debug)]
pub struct Disk {
    dir: PathBuf,
    limits: Limits,
    free: AtomicU64,
    total: AtomicU64,
    /// Bytes of records that submissions checked against the reserve are
    /// about to write (see [`Disk::claim`]).
    claimed: AtomicU64,
}

/// Bytes a submission is about to write, counted by [`Disk::claimed`] until
/// dropped (once the store counts them as unflushed).
#[derive(Debug)]
pub struct Claim<'a> {
    disk: &'a Disk,
    bytes: u64,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.disk.claimed.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

impl Disk {
    pub fn new(dir: &Path, limits: &Limits) -> Disk {
        let disk = Disk {
            dir: dir.to_path_buf(),
            limits: limits.clone(),
            free: AtomicU64::new(0),
            total: AtomicU64::new(0),
            claimed: AtomicU64::new(0),
        };
        let _ = disk.measure();
        disk
    }

    fn reserve(&self, total: u64) -> u64 {
        self.limits.disk_reserve_bytes(total)
    }

    /// Measures now.
    pub fn measure(&self) -> std::io::Result<Space> {
        let free = fs2::available_space(&self.dir)?;
        let total = fs2::total_space(&self.dir)?;
        self.free.store(free, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        Ok(Space {
            free_bytes: free,
            total_bytes: total,
            reserve_bytes: self.reserve(total),
        })
    }

    /// Counts `bytes` that a submission is about to write, before it is
    /// checked against the reserve: submissions checked at the same time
    /// see each other's.
    pub fn claim(&self, bytes: u64) -> Claim<'_> {
        self.claimed.fetch_add(bytes, Ordering::SeqCst);
        Claim { disk: self, bytes }
    }

    /// Bytes claimed by submissions not yet written, this one's included.
    pub fn claimed(&self) -> u64 {
        self.claimed.load(Ordering::SeqCst)
    }

    /// The last measurement (`None` before the first one succeeded).
    pub fn last(&self) -> Option<Space> {
        let total = self.total.load(Ordering::Relaxed);
        (total > 0).then(|| Space {
            free_bytes: self.free.load(Ordering::Relaxed),
            total_bytes: total,
            reserve_bytes: self.reserve(total),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn space(free_mib: u64, reserve_mib: u64) -> Space {
        Space {
            free_bytes: free_mib * MIB,
            total_bytes: 1024 * MIB,
            reserve_bytes: reserve_mib * MIB,
        }
    }

    #[test]
    fn a_submission_counts_its_own_size_against_the_reserve() {
        // 1 MiB above the reserve: a 4 MiB submission (its record holds the
        // body and its envelope) does not fit; a small one does.
        let s = space(17, 16);
        assert!(!s.below_reserve());
        assert!(s.refuses_submission(0, 8 * MIB));
        assert!(!s.refuses_submission(0, 64 * 1024));
    }

    #[test]
    fn bytes_written_but_not_flushed_count_too() {
        let s = space(20, 16);
        assert!(!s.refuses_submission(0, 64 * 1024));
        assert!(s.refuses_submission(2 * MIB, 64 * 1024));
    }

    #[test]
    fn concurrent_submissions_see_each_others_claims() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::new(dir.path(), &Limits::default());
        let first = disk.claim(3 * MIB);
        let second = disk.claim(5 * MIB);
        assert_eq!(disk.claimed(), 8 * MIB);
        // 9 MiB above the reserve: each alone fits; the two together do not.
        let s = space(25, 16);
        assert!(!s.refuses_submission(0, 3 * MIB));
        assert!(!s.refuses_submission(0, 4 * MIB));
        assert!(s.refuses_submission(0, disk.claimed()));
        drop(first);
        assert_eq!(disk.claimed(), 5 * MIB);
        drop(second);
        assert_eq!(disk.claimed(), 0);
    }
}
