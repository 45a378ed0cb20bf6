//! Group commit: many writers, one `flush` for all of them.
//!
//! A writer applies its writes, then awaits [`Committer::commit`]. The
//! flusher task takes every request waiting at that moment and flushes
//! once; a request that arrives during a flush is served by the next one, so
//! every awaited commit covers the writes made before it was requested.
//!
//! A flush syncs the audit log's files, then sled: an event sled makes
//! durable always has its entry on disk already. With no commit asked
//! for, it still flushes once a second (sled's own timer is off).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::audit_files::AuditFiles;
use super::fault::FaultCell;

/// Flush at least this often, so writes no one awaited reach the disk.
const IDLE_FLUSH: Duration = Duration::from_secs(1);

/// A flush not done by then is taken as failed: sled 0.34 can wait forever
/// for a log buffer whose write failed (seen on a full disk).
const STUCK_FLUSH: Duration = Duration::from_secs(20);

type Reply = oneshot::Sender<Result<(), String>>;

#[derive(Clone, Debug)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Reply>,
}

impl Committer {
    /// Starts the flusher on the current tokio runtime. The task ends, and
    /// releases its handle on the database, when every `Committer` clone is
    /// dropped; the returned handle says when.
    /// A failed flush is recorded in `fault`.
    /// What a successful flush wrote is taken off `unflushed`.
    pub(super) fn start(
        db: sled::Db,
        audit: Arc<AuditFiles>,
        fault: FaultCell,
        unflushed: Arc<AtomicU64>,
        gate: Arc<Mutex<()>>,
    ) -> (Committer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(db, audit, fault, unflushed, gate, rx));
        (Committer { tx }, task)
    }

    /// Resolves once everything written before this call is on disk.
    pub async fn commit(&self) -> Result<(), CommitError> {
        let (reply, wait) = oneshot::channel();
        self.tx.send(reply).map_err(|_| CommitError::Stopped)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CommitError::Flush(e)),
            Err(_) => Err(CommitError::Stopped),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("flushing the store failed: {0}")]
    Flush(String),
    #[error("the store is shut down")]
    Stopped,
}

/// The audit files first, then sled (see the module doc). `gate` keeps it
/// from writing while a backup copies sled's files.
pub(super) fn flush(db: &sled::Db, audit: &AuditFiles, gate: &Mutex<()>) -> Result<(), String> {
    let _gate = gate.lock().unwrap_or_else(|p| p.into_inner());
    audit.sync().map_err(|e| e.to_string())?;
    db.flush().map(|_| ()).map_err(|e| e.to_string())
}

async fn run(
    db: sled::Db,
    audit: Arc<AuditFiles>,
    fault: FaultCell,
    unflushed: Arc<AtomicU64>,
    gate: Arc<Mutex<()>>,
    mut rx: mpsc::UnboundedReceiver<Reply>,
) {
    let mut batch = Vec::new();
    let mut stuck = false;
    let mut idle = tokio::time::interval(IDLE_FLUSH);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            first = rx.recv() => match first {
                Some(first) => batch.push(first),
                None => break,
            },
            _ = idle.tick() => {}
        }
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        // Written before the flush starts, so covered by it.
        let covered = unflushed.load(Ordering::Relaxed);
        let result = if stuck {
            Err("an earlier flush never finished".to_string())
        } else {
            let (d, a, g) = (db.clone(), audit.clone(), gate.clone());
            let task = tokio::task::spawn_blocking(move || flush(&d, &a, &g));
            match tokio::time::timeout(STUCK_FLUSH, task).await {
                Ok(done) => done.unwrap_or_else(|e| Err(format!("flush task failed: {e}"))),
                Err(_) => {
                    // The blocked thread keeps its handle on the database:
                    // only a new process can open it again (see `recovery`).
                    stuck = true;
                    Err(format!(
                        "a flush did not finish within {} s",
                        STUCK_FLUSH.as_secs()
                    ))
                }
            }
        };
        // Never retried as if it had worked: the store stays faulted until
        // it is reopened, and reopening re-reads what is on disk.
        match &result {
            Ok(()) => {
                let _ = unflushed.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(covered))
                });
            }
            Err(e) => fault.set(e),
        }
        for reply in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
        idle.reset();
    }
}
