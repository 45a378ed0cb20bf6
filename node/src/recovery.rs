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
use crate::disk::Space;
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
    let mut told = Told::default();
    // Whether the disk was seen full, or the fault says so: only then is
    // reopening safe (see `full_disk`).
    let mut seen_full = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.triggered() => return,
        }
        let space = ctx.disk.measure();
        match &space {
            Ok(s) => {
                seen_full |= s.free_bytes < (s.reserve_bytes / 2).max(MIN_FREE_TO_REOPEN);
                told.measure_failed = false;
            }
            Err(e) if !told.measure_failed => {
                warn!(error = %e, "cannot measure the data directory's free space");
                told.measure_failed = true;
            }
            Err(_) => {}
        }
        let Some(fault) = ctx.store.fault() else {
            continue;
        };
        let measured = space.as_ref().ok().copied();
        let decision = decide(&fault.reason, seen_full, measured);
        let tell = told.changed_to(decision);
        match decision {
            Decision::Reopen => {
                info!(
                    free_bytes = measured.map(|s| s.free_bytes),
                    reason = %fault.reason,
                    "the disk has room again: reopening the store"
                );
                ctx.reopen.send_replace(Some(fault));
                return;
            }
            Decision::WaitForOperator if tell => {
                error!(
                    reason = %fault.reason,
                    "the store failed with room on the disk (a failed sync or a failing device): \
                     it is not reopened by itself, since the kernel may report unwritten pages \
                     as written; check the device, then restart the node"
                );
            }
            Decision::WaitForOperator => {}
            Decision::WaitForSpace if tell => warn!(
                free_bytes = measured.map(|s| s.free_bytes),
                reserve_bytes = measured.map(|s| s.reserve_bytes),
                "the store cannot write; waiting for free space to reopen it"
            ),
            Decision::WaitForSpace => {}
        }
    }
}

/// What the watch has logged: each wait once when it begins (a store that
/// waits for the operator may later see the disk full and wait for space
/// instead), and a failing measurement once until one succeeds.
#[derive(Default)]
struct Told {
    decision: Option<Decision>,
    measure_failed: bool,
}

impl Told {
    /// Whether `decision` is new since the last call.
    fn changed_to(&mut self, decision: Decision) -> bool {
        self.decision.replace(decision) != Some(decision)
    }
}

/// What a faulted store waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A full disk that has room again: reopen by itself.
    Reopen,
    /// A full disk still without room (or not measured): wait.
    WaitForSpace,
    /// Another failure (EIO from a sync): never reopened by itself; the
    /// operator checks the device and restarts the node.
    WaitForOperator,
}

/// Whether a store faulted for `reason` reopens by itself, given whether
/// the disk was `seen_full` since the node started and the last measurement
/// (`None`: it failed).
pub(crate) fn decide(reason: &str, seen_full: bool, space: Option<Space>) -> Decision {
    if !(seen_full || full_disk(reason)) {
        return Decision::WaitForOperator;
    }
    match space {
        Some(s) if s.free_bytes >= s.reserve_bytes.max(MIN_FREE_TO_REOPEN) => Decision::Reopen,
        _ => Decision::WaitForSpace,
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
    fn each_wait_is_told_once_when_it_begins() {
        use super::{Decision, Told};
        let mut told = Told::default();
        assert!(told.changed_to(Decision::WaitForOperator));
        assert!(!told.changed_to(Decision::WaitForOperator));
        // EIO first, then the disk is seen full: the new wait is told too
        // (one flag for both kept it silent).
        assert!(told.changed_to(Decision::WaitForSpace));
        assert!(!told.changed_to(Decision::WaitForSpace));
        assert!(told.changed_to(Decision::Reopen));
    }

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

    use super::{decide, Decision, Space, MIN_FREE_TO_REOPEN};

    const EIO: &str = "flushing the store failed: Input/output error (os error 5)";
    const ENOSPC: &str = "audit log: No space left on device (os error 28)";
    const STUCK: &str = "a flush did not finish within 20 s";

    fn room(free: u64, reserve: u64) -> Option<Space> {
        Some(Space {
            free_bytes: free,
            total_bytes: 1 << 40,
            reserve_bytes: reserve,
        })
    }

    #[test]
    fn an_eio_with_room_on_a_disk_never_seen_full_waits_for_the_operator() {
        let plenty = room(100 << 30, 16 << 20);
        assert_eq!(decide(EIO, false, plenty), Decision::WaitForOperator);
        assert_eq!(decide(EIO, false, None), Decision::WaitForOperator);
        assert_eq!(decide(STUCK, false, plenty), Decision::WaitForOperator);
    }

    #[test]
    fn a_full_disk_reopens_once_it_has_room_for_the_reserve() {
        let reserve = 16 << 20;
        assert_eq!(
            decide(ENOSPC, false, room(reserve - 1, reserve)),
            Decision::WaitForSpace
        );
        assert_eq!(decide(ENOSPC, false, None), Decision::WaitForSpace);
        assert_eq!(
            decide(ENOSPC, false, room(reserve, reserve)),
            Decision::Reopen
        );
        // With no reserve, still room for what a start writes.
        assert_eq!(
            decide(ENOSPC, false, room(MIN_FREE_TO_REOPEN - 1, 0)),
            Decision::WaitForSpace
        );
        assert_eq!(
            decide(ENOSPC, false, room(MIN_FREE_TO_REOPEN, 0)),
            Decision::Reopen
        );
    }

    /// A failure of another kind on a disk seen full (sled's stuck flush
    /// on a full disk, an EIO that a full disk caused) is a full disk.
    #[test]
    fn any_failure_on_a_disk_seen_full_reopens_once_there_is_room() {
        let plenty = room(100 << 30, 16 << 20);
        assert_eq!(decide(STUCK, true, plenty), Decision::Reopen);
        assert_eq!(decide(EIO, true, plenty), Decision::Reopen);
        assert_eq!(decide(EIO, true, room(0, 16 << 20)), Decision::WaitForSpace);
    }
}
