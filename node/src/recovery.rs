//! Recovery from a store that cannot write (a full disk, a failed sync).
//!
//! A failed write or sync is never retried as if it had worked: sled stays
//! in an error state after an I/O error, and after a failed `fdatasync` the
//! kernel may have dropped the pages. So while the store is faulted the
//! node refuses submissions and defers incoming envelopes (the sender
//! retries), and once the disk has room again it asks to be reopened: the
//! daemon stops it and starts it again from disk, in the same process,
//! exactly as at start-up (the audit log's tail is recovered and checked,
//! sled replays what it made durable). What was never acknowledged is sent
//! again by its sender; what was acknowledged is on disk. Only a full disk
//! is recovered from so: after another failure (EIO from a sync) the
//! kernel may hold pages it will never write, and the node waits for its
//! operator.

use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::context::Context;
use crate::shutdown::ShutdownSignal;

/// How often the disk is measured and the store's state looked at.
const POLL: Duration = Duration::from_secs(1);

/// Free space a reopened store needs at least, even with no reserve
/// configured: sled and the audit log write at start.
const MIN_FREE_TO_REOPEN: u64 = 1024 * 1024;

/// Measures the disk every second; once the store is faulted and the disk
/// has room again, sets `ctx.reopen` and ends.
pub(crate) async fn watch(ctx: Arc<Context>, mut stop: ShutdownSignal) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut told = false;
    // Whether the disk was seen full, or the fault says so: only then is
    // reopening safe (see `full_disk`).
    let mut seen_full = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.triggered() => return,
        }
        let space = ctx.disk.measure();
        if let Ok(s) = &space {
            seen_full |= s.free_bytes < (s.reserve_bytes / 2).max(MIN_FREE_TO_REOPEN);
        }
        let Some(fault) = ctx.store.fault() else {
            continue;
        };
        if !(seen_full || full_disk(&fault.reason)) {
            if !told {
                error!(
                    reason = %fault.reason,
                    "the store failed with room on the disk (a failed sync or a failing device): \
                     it is not reopened by itself, since the kernel may report unwritten pages \
                     as written; check the device, then restart the node"
                );
                told = true;
            }
            continue;
        }
        match space {
            Ok(s) if s.free_bytes >= s.reserve_bytes.max(MIN_FREE_TO_REOPEN) => {
                info!(
                    free_bytes = s.free_bytes,
                    reason = %fault.reason,
                    "the disk has room again: reopening the store"
                );
                ctx.reopen.send_replace(Some(fault));
                return;
            }
            Ok(s) => {
                if !told {
                    warn!(
                        free_bytes = s.free_bytes,
                        reserve_bytes = s.reserve_bytes,
                        "the store cannot write; waiting for free space to reopen it"
                    );
                    told = true;
                }
            }
            Err(e) => warn!(error = %e, "cannot measure the data directory's free space"),
        }
    }
}

/// Whether a fault's reason is a full disk or quota (ENOSPC, EDQUOT): the
/// write was refused, nothing was half-done behind the kernel's back. After
/// any other failure (EIO from a sync above all) the page cache may hold
/// pages the kernel will never write, and a reopen would read them as
/// durable.
fn full_disk(reason: &str) -> bool {
    reason.contains("os error 28") || reason.contains("os error 122")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_full_disk_or_quota_is_a_full_disk() {
        assert!(super::full_disk(
            "audit log: No space left on device (os error 28)"
        ));
        assert!(super::full_disk("Disk quota exceeded (os error 122)"));
        assert!(!super::full_disk(
            "fdatasync: Input/output error (os error 5)"
        ));
        assert!(!super::full_disk("a flush did not finish within 20 s"));
    }
}
