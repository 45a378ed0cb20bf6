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
//! again by its sender; what was acknowledged is on disk.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

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
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.triggered() => return,
        }
        let space = ctx.disk.measure();
        let Some(fault) = ctx.store.fault() else {
            continue;
        };
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
