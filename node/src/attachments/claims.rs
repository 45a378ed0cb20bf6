//! Space that uploads in progress are about to write. Each copy-in checks
//! the reserve against free space as measured, which does not yet show what
//! other copy-ins still have to write: two uploads that each fit could
//! together overrun the reserve. Every upload therefore claims what it has
//! left to write in one ledger, and measures free space less the others'
//! claims ([`ClaimedSpace`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::space::{stored_len, SpaceSource};
use crate::disk::Space;

/// Bytes that uploads in progress have still to write, all together.
#[derive(Debug, Default, Clone)]
pub struct UploadClaims {
    total: Arc<AtomicU64>,
}

/// One upload's claim: what it has left to write. Shrinks as the upload
/// reads its source; released when dropped (done, failed or abandoned).
#[derive(Debug)]
pub struct UploadClaim {
    total: Arc<AtomicU64>,
    left: AtomicU64,
}

impl UploadClaims {
    /// Claims the stored length of an attachment of `size` bytes. Claimed
    /// before the upload measures, so uploads checked at the same moment
    /// count each other.
    pub fn claim(&self, size: u64) -> UploadClaim {
        let bytes = stored_len(size);
        self.total.fetch_add(bytes, Ordering::SeqCst);
        UploadClaim {
            total: self.total.clone(),
            left: AtomicU64::new(bytes),
        }
    }

    /// What all uploads in progress have left to write.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }
}

impl UploadClaim {
    /// The upload has `left` bytes still to write (never grows the claim).
    pub fn shrink_to(&self, left: u64) {
        let mut now = self.left.load(Ordering::SeqCst);
        while left < now {
            match self
                .left
                .compare_exchange(now, left, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    self.total.fetch_sub(now - left, Ordering::SeqCst);
                    return;
                }
                Err(actual) => now = actual,
            }
        }
    }

    pub fn left(&self) -> u64 {
        self.left.load(Ordering::SeqCst)
    }
}

impl Drop for UploadClaim {
    fn drop(&mut self) {
        self.total
            .fetch_sub(self.left.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Free space as `inner` measures it, less what the other uploads in
/// progress have left to write (this upload's own claim excluded: its
/// copy-in counts what it still needs itself).
pub struct ClaimedSpace<'a> {
    pub inner: &'a dyn SpaceSource,
    pub claims: &'a UploadClaims,
    pub own: &'a UploadClaim,
}

impl SpaceSource for ClaimedSpace<'_> {
    fn measure(&self) -> std::io::Result<Space> {
        let mut s = self.inner.measure()?;
        let others = self.claims.total().saturating_sub(self.own.left());
        s.free_bytes = s.free_bytes.saturating_sub(others);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Space);

    impl SpaceSource for Fixed {
        fn measure(&self) -> std::io::Result<Space> {
            Ok(self.0)
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn each_upload_sees_what_the_others_still_have_to_write() {
        let claims = UploadClaims::default();
        let disk = Fixed(Space {
            free_bytes: 100 * MIB,
            total_bytes: 1000 * MIB,
            reserve_bytes: 10 * MIB,
        });
        let a = claims.claim(40 * MIB);
        let b = claims.claim(30 * MIB);
        let seen_by_a = ClaimedSpace {
            inner: &disk,
            claims: &claims,
            own: &a,
        }
        .measure()
        .unwrap();
        assert_eq!(seen_by_a.free_bytes, 100 * MIB - b.left());
        // b has written most of its file: a sees only what b has left.
        b.shrink_to(MIB);
        b.shrink_to(2 * MIB); // never grows again
        assert_eq!(claims.total(), a.left() + MIB);
        drop(b);
        assert_eq!(claims.total(), a.left());
        drop(a);
        assert_eq!(claims.total(), 0);
    }
}
