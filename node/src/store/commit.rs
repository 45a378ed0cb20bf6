//! Group commit: many writers, one `flush` for all of them.
//!
//! A writer applies its writes, then awaits [`Committer::commit`]. The
//! flusher task takes every request waiting at that moment and flushes
//! once; a request that arrives during a flush is served by the next one, so
//! every awaited commit covers the writes made before it was requested.

use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<(), String>>;

#[derive(Clone, Debug)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Reply>,
}

impl Committer {
    /// Starts the flusher on the current tokio runtime. The task ends, and
    /// releases its handle on the database, when every `Committer` clone is
    /// dropped; the returned handle says when.
    pub fn start(db: sled::Db) -> (Committer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(db, rx));
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

async fn run(db: sled::Db, mut rx: mpsc::UnboundedReceiver<Reply>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        for reply in batch.drain(..) {
            let _ = reply.send(result.clone());
        }
    }
}
