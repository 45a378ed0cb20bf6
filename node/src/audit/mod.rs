//! The node's audit log: every event an entry in an RFC 6962 Merkle tree,
//! checkpoints signed with the node's key, cosignatures from its peers
//! ([`witness`]: offers, and this node's duties as a witness of theirs),
//! exports and proofs for auditors ([`export`]). The math and formats are
//! in `comity_protocol::audit`; the bytes live in `store::audit`.
//!
//! Durability: [`AuditLog::record`] writes the entry before the caller
//! writes the event it describes, and both become durable at the caller's
//! next commit, which syncs the log before the rest of the store, so an
//! event on disk never lacks its entry.

mod export;
mod fact;
#[cfg(test)]
mod predecessor_tests;
#[cfg(test)]
mod switch_tests;
#[cfg(test)]
mod tests;
mod witness;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use comity_protocol::audit::bundle::BundleWriteError;
use comity_protocol::audit::checkpoint::{
    origin_for, sign_checkpoint, Checkpoint, CheckpointError,
};
use comity_protocol::audit::entry::{Actor, AuditEntry, AuditKind};
use comity_protocol::audit::merkle::{SubtreeHashes, TreeError};
use comity_protocol::audit::proof_file::ProofBuildError;
use comity_protocol::audit::switch::switch_detail;
use comity_protocol::transition::TransitionStatement;
use comity_protocol::{Digest, Identity, NodeId, Timestamp};
use tokio::sync::{watch, Notify};
use tracing::warn;

use crate::store::alarms::{
    cut, AckError, Alarm, AlarmAck, AlarmCounts, AlarmKind, MAX_ALARM_TEXT,
};
use crate::store::{Store, StoreError};

pub use export::Proof;
use fact::clean_detail;
pub use fact::Fact;
pub use witness::{Refused, RestorationGap, RestorationWitnessed, Witnessed};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit tree: {0}")]
    Tree(#[from] TreeError<HashReadError>),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("no checkpoint of size {0} in this log")]
    NoCheckpoint(u64),
    #[error("writing the bundle: {0}")]
    Bundle(#[from] BundleWriteError),
    #[error("building the proof: {0}")]
    Proof(#[from] ProofBuildError<HashReadError>),
    #[error("the checkpoint task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("backup: {0}")]
    Snapshot(#[from] crate::store::SnapshotError),
    #[error("the audit log is disabled: a backup ends at a checkpoint")]
    Disabled,
    #[error("the node is switching to its new identity key; try again in a moment")]
    Switching,
    #[error("the predecessor checkpoint {}: {why}", path.display())]
    Predecessor {
        path: std::path::PathBuf,
        why: String,
    },
}

/// Why a subtree hash could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HashReadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("missing tree node level {level} index {index}")]
    Missing { level: u32, index: u64 },
}

/// Complete subtree hashes, read from the store.
struct StoredHashes<'a>(&'a Store);

impl SubtreeHashes for StoredHashes<'_> {
    type Error = HashReadError;

    fn complete(&self, level: u32, index: u64) -> Result<Digest, HashReadError> {
        self.0
            .audit_node(level, index)?
            .ok_or(HashReadError::Missing { level, index })
    }
}

pub struct AuditLog {
    store: Store,
    /// Signs checkpoints and, as a witness, cosignatures: the node's
    /// identity key now (an identity switch replaces it, see
    /// [`AuditLog::switch`]).
    signer: std::sync::RwLock<Arc<Identity>>,
    /// Named by the log's first key, for life.
    origin: String,
    first_key: NodeId,
    enabled: bool,
    checkpoint_every: u64,
    /// Woken when enough entries were added for a checkpoint.
    pub due: Notify,
    /// The newest checkpoint's size.
    signed: AtomicU64,
    /// The log's size just after the newest entry that calls for a
    /// checkpoint ([`Fact::calls_for_checkpoint`]); none is due unless it
    /// exceeds `signed`.
    wanted: AtomicU64,
    /// Held while a checkpoint is signed and stored.
    signing: Mutex<()>,
    /// Set from the switch entry until the new key signs
    /// ([`AuditLog::sign_with`]): no checkpoint is signed meanwhile, since
    /// neither key may sign one after the entry before the switch is
    /// durable.
    switching: std::sync::atomic::AtomicBool,
    /// When this process last signed one (for the checkpoint-age metric).
    signed_at: Mutex<Option<Timestamp>>,
    /// The newest checkpoint known to be on disk, for senders to offer to
    /// witnesses (a witness must never cosign what a crash could undo).
    latest: watch::Sender<u64>,
    /// Per witness, the largest size it cosigned.
    cosigned: Mutex<HashMap<NodeId, u64>>,
    /// Woken when a cosignature is stored.
    cosigned_changed: Notify,
    /// Per witness, checkpoints offered to it since start (session frames:
    /// what witnessing costs on the wire).
    offers: Mutex<HashMap<NodeId, u64>>,
    /// Held while an alarm is stored (and its bucket trimmed) or acknowledged.
    alarming: Mutex<()>,
    /// Sizes of the checkpoints backups ended at since start (the newest
    /// few): offered to each witness on the way to the newest, so that a
    /// witness holds the root a restoration from that backup names.
    backup_checkpoints: Mutex<std::collections::BTreeSet<u64>>,
}

/// Backup checkpoints remembered for offering (see `backup_checkpoints`).
const BACKUP_CHECKPOINTS_KEPT: usize = 16;

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log (the store re-read only what followed its last
    /// checkpoint).
    pub fn open(
        store: Store,
        signer: Arc<Identity>,
        checkpoint_every: u64,
        enabled: bool,
    ) -> Result<Self, AuditError> {
        let latest = store.newest_checkpoint()?.map(|(s, _)| s).unwrap_or(0);
        let mut cosigned = HashMap::new();
        for (size, witness, _) in store.cosignatures()? {
            let e = cosigned.entry(witness).or_insert(0);
            *e = (*e).max(size);
        }
        let moved = store.migrate_alarms()?;
        if moved > 0 {
            tracing::info!(
                moved,
                "old-format alarms moved to the unknown peer's alarms"
            );
        }
        // Entries replayed after the last checkpoint may be of any kind:
        // all of them call for one.
        let wanted = store.audit_size();
        // Recorded from the first start of a build that switches keys: a
        // node that never switched is named by its key now.
        let first = match store.log_first_key()? {
            Some(first) => first,
            None => {
                store.set_log_first_key(&signer.id())?;
                signer.id()
            }
        };
        Ok(AuditLog {
            store,
            origin: origin_for(&first),
            first_key: first,
            signer: std::sync::RwLock::new(signer),
            enabled,
            checkpoint_every: checkpoint_every.max(1),
            due: Notify::new(),
            signed: AtomicU64::new(latest),
            wanted: AtomicU64::new(wanted),
            signing: Mutex::new(()),
            switching: std::sync::atomic::AtomicBool::new(false),
            signed_at: Mutex::new(None),
            latest: watch::channel(latest).0,
            cosigned: Mutex::new(cosigned),
            cosigned_changed: Notify::new(),
            offers: Mutex::new(HashMap::new()),
            alarming: Mutex::new(()),
            backup_checkpoints: Mutex::new(Default::default()),
        })
    }

    pub fn size(&self) -> u64 {
        self.store.audit_size()
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// At a new node's first start: the old log named by the predecessor
    /// file `comity init --predecessor-checkpoint` left in `data_dir`, as
    /// the log's first entries (`log-predecessor`). A start that crashed
    /// part way through them finishes them; a log that began otherwise is
    /// left alone. Returns the old log, if the entries were written now.
    pub fn begin_after_predecessor(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<Option<comity_protocol::audit::predecessor::Predecessor>, AuditError> {
        use comity_protocol::audit::predecessor::{PredecessorFile, MAX_PREDECESSOR_FILE};
        if !self.enabled {
            return Ok(None);
        }
        // Once the log holds anything else, the file is no longer read.
        let size = self.size();
        if size > 0 {
            let last = self.entry(size - 1)?;
            if last.is_none_or(|e| e.kind != AuditKind::LogPredecessor) {
                return Ok(None);
            }
        }
        let path = data_dir.join(comity_config::PREDECESSOR_FILE);
        let failed = |why: String| AuditError::Predecessor {
            path: path.clone(),
            why,
        };
        let mut text = String::new();
        match std::fs::File::open(&path) {
            // A few KiB (a signed checkpoint is public: no mode required).
            Ok(f) => std::io::Read::read_to_string(
                &mut std::io::Read::take(f, MAX_PREDECESSOR_FILE + 1),
                &mut text,
            )
            .map_err(|e| failed(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e.to_string())),
        };
        if text.len() as u64 > MAX_PREDECESSOR_FILE {
            return Err(failed(format!("above {MAX_PREDECESSOR_FILE} bytes")));
        }
        let file = PredecessorFile::parse(&text).map_err(|e| failed(e.to_string()))?;
        let (old, details) = file.checked_entries().map_err(|e| failed(e.to_string()))?;
        let begun_so = (0..size).all(|seq| {
            let d = details.get(seq as usize);
            matches!(self.entry(seq), Ok(Some(e)) if e.kind == AuditKind::LogPredecessor && Some(&e.detail) == d)
        });
        if size as usize >= details.len() || !begun_so {
            return Ok(None);
        }
        for d in &details[size as usize..] {
            self.record(Fact::new(AuditKind::LogPredecessor, Actor::Operator).detail(d))?;
        }
        Ok(Some(old))
    }

    /// The key the log was begun under, which names it for life (an
    /// export names it, and a verifier follows the switches from it).
    pub fn first_key(&self) -> NodeId {
        self.first_key
    }

    /// The key that signs checkpoints now.
    pub fn signer(&self) -> Arc<Identity> {
        self.signer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Switches the log to the new key of `statement`: signs a checkpoint
    /// of everything so far with the key now, appends the switch entry
    /// right after it (no other entry between them) and marks the switch
    /// in the store; no checkpoint is signed then until the caller, once
    /// its commit made this durable, hands the log to the new key
    /// ([`AuditLog::sign_with`]). A crash before the commit is finished at
    /// the next start ([`AuditLog::finish_switch`]). Returns the entry's
    /// sequence number.
    pub fn switch(&self, statement: &TransitionStatement) -> Result<u64, AuditError> {
        if !self.enabled {
            return Err(AuditError::Disabled);
        }
        let _one = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        let detail = switch_detail(statement);
        let (mark, root) = self.store.audit_seal_and_append(|seq| {
            AuditEntry {
                seq,
                time: Timestamp::now(),
                kind: AuditKind::IdentityTransition,
                actor: Actor::Node,
                peer: None,
                message_id: None,
                envelope_digest: None,
                detail: detail.clone(),
            }
            .to_leaf()
            .map(|leaf| (leaf, None))
        })?;
        let seq = mark.size;
        self.switching.store(true, Ordering::Relaxed);
        self.sign_switch_checkpoint(mark, root)?;
        self.store.set_own_switch(statement, seq)?;
        Ok(seq)
    }

    /// From now on `next` signs checkpoints and cosignatures: called once
    /// the switch ([`AuditLog::switch`] or [`AuditLog::finish_switch`]) is
    /// durable.
    pub fn sign_with(&self, next: Arc<Identity>) {
        let _one = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        *self.signer.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.switching.store(false, Ordering::Relaxed);
        let size = self.size();
        self.wanted.fetch_max(size, Ordering::Relaxed);
        self.due.notify_one();
    }

    /// The checkpoint note of `size` and `root`, signed by the key now.
    fn signed_note(&self, size: u64, root: Digest) -> Result<String, AuditError> {
        Ok(sign_checkpoint(
            &self.signer(),
            &Checkpoint {
                origin: self.origin.clone(),
                size,
                root,
            },
        )?)
    }

    /// The old key's checkpoint just before the switch entry.
    fn sign_switch_checkpoint(
        &self,
        mark: crate::store::audit::Mark,
        root: Digest,
    ) -> Result<(), AuditError> {
        let note = self.signed_note(mark.size, root)?;
        self.store.put_checkpoint(mark, &note)?;
        self.signed.fetch_max(mark.size, Ordering::Relaxed);
        Ok(())
    }

    /// At start, for a node still on the old key of its own `statement`:
    /// the switch entry, if a crash left it in the log without the mark
    /// (the entry reached the file, the store's records of it did not).
    /// Returns its sequence number; the caller then finishes the switch.
    pub fn interrupted_switch(
        &self,
        statement: &TransitionStatement,
    ) -> Result<Option<u64>, AuditError> {
        let detail = switch_detail(statement);
        let from = self.signed.load(Ordering::Relaxed);
        for seq in from..self.size() {
            if let Some(e) = self.entry(seq)? {
                if e.kind == AuditKind::IdentityTransition
                    && e.actor == Actor::Node
                    && e.detail == detail
                {
                    return Ok(Some(seq));
                }
            }
        }
        Ok(None)
    }

    /// Finishes a switch whose entry is at `seq` but whose checkpoint and
    /// mark were lost to a crash (or a failed write): the old key (still
    /// this process's) signs the checkpoint of size `seq` and the switch is
    /// marked; then, once durable, [`AuditLog::sign_with`].
    pub fn finish_switch(
        &self,
        statement: &TransitionStatement,
        seq: u64,
    ) -> Result<(), AuditError> {
        let _one = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        self.switching.store(true, Ordering::Relaxed);
        if self.store.checkpoint_at(seq)?.is_none() {
            let root = comity_protocol::audit::merkle::root(&StoredHashes(&self.store), seq)?;
            let note = self.signed_note(seq, root)?;
            self.store.put_checkpoint_only(seq, &note)?;
        }
        self.store.set_own_switch(statement, seq)?;
        Ok(())
    }

    /// Our signed checkpoint of `size`, if there is one.
    pub fn checkpoint_note(&self, size: u64) -> Result<Option<String>, AuditError> {
        Ok(self.store.checkpoint_at(size)?)
    }

    /// The entry at `seq`, if the log holds one this build can read.
    pub fn entry(&self, seq: u64) -> Result<Option<AuditEntry>, AuditError> {
        Ok(self
            .store
            .audit_leaf(seq)?
            .and_then(|leaf| AuditEntry::from_leaf(&leaf).ok()))
    }

    /// Appends one entry (not yet flushed: the caller's commit does that).
    pub fn record(&self, fact: Fact<'_>) -> Result<u64, AuditError> {
        if !self.enabled {
            return Ok(0);
        }
        let detail = clean_detail(fact.detail);
        let calls = fact.calls_for_checkpoint();
        let seq = self.store.audit_append(|seq| {
            let entry = AuditEntry {
                seq,
                time: Timestamp::now(),
                kind: fact.kind,
                actor: fact.actor,
                peer: fact.peer,
                message_id: fact.message,
                envelope_digest: fact.digest,
                detail,
            };
            let leaf = entry.to_leaf()?;
            Ok((leaf, fact.message))
        })?;
        if calls {
            self.wanted.fetch_max(seq + 1, Ordering::Relaxed);
            let since = (seq + 1).saturating_sub(self.signed.load(Ordering::Relaxed));
            if since >= self.checkpoint_every {
                self.due.notify_one();
            }
        }
        Ok(seq)
    }

    /// Logs a failure to record instead of failing the event: the event
    /// already happened. A failed append breaks the log's files, so every
    /// later commit fails and the event is never acknowledged as durable.
    pub fn note(&self, fact: Fact<'_>) {
        if let Err(e) = self.record(fact) {
            warn!(error = %e, "cannot append to the audit log");
        }
    }

    /// Signs a checkpoint of the current tree if an entry that calls for
    /// one was added since the last (witnessing alone does not). Returns its
    /// size.
    fn checkpoint(&self) -> Result<Option<u64>, AuditError> {
        if !self.enabled {
            return Ok(None);
        }
        // One at a time (timer, export, proof, shutdown): the stored mark
        // and `signed` only ever grow.
        let _one = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        if self.switching.load(Ordering::Relaxed)
            || self.wanted.load(Ordering::Relaxed) <= self.signed.load(Ordering::Relaxed)
        {
            return Ok(None);
        }
        // Sealing syncs the files up to the size it returns, which may have
        // grown since: the checkpoint is of that size.
        let (mark, root) = self.store.audit_seal()?;
        let size = mark.size;
        let note = self.signed_note(size, root)?;
        self.store.put_checkpoint(mark, &note)?;
        self.signed.store(size, Ordering::Relaxed);
        *self.signed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Timestamp::now());
        Ok(Some(size))
    }

    /// Signs a checkpoint over everything so far, if anything but
    /// witnessing was added since the last (off the runtime's threads:
    /// sealing syncs the log's files), commits the store, and only
    /// then offers it — and any checkpoint signed before it — to witnesses.
    /// When this returns, nothing handed out over the log can be undone by
    /// a crash. The one way a checkpoint becomes durable: the periodic task,
    /// exports, proofs and shutdown all come here.
    /// Returns the size of the newest durable checkpoint.
    pub async fn durable_checkpoint(self: &Arc<Self>) -> Result<u64, AuditError> {
        let log = self.clone();
        tokio::task::spawn_blocking(move || log.checkpoint()).await??;
        // Read before the commit, so the commit covers it (it may have been
        // signed by another caller).
        let signed = self.signed.load(Ordering::Relaxed);
        self.store.commit().await?;
        self.publish(signed);
        Ok(signed)
    }

    /// Copies the store into `into` (see [`Store::snapshot`]), ending at a
    /// checkpoint signed for the copy while writes are stopped. Durable and
    /// offered to witnesses when this returns.
    pub async fn snapshot(
        self: &Arc<Self>,
        into: std::path::PathBuf,
    ) -> Result<crate::store::Snapshot, AuditError> {
        if !self.enabled {
            return Err(AuditError::Disabled);
        }
        if self.switching.load(Ordering::Relaxed) {
            return Err(AuditError::Switching);
        }
        let log = self.clone();
        let snapshot = tokio::task::spawn_blocking(move || {
            // Taken before the barrier closes: a signer that holds it would
            // wait on the barrier to store its checkpoint.
            let _one = log.signing.lock().unwrap_or_else(|p| p.into_inner());
            let snapshot = log.store.snapshot(&into, |size, root| {
                sign_checkpoint(
                    &log.signer(),
                    &Checkpoint {
                        origin: log.origin.clone(),
                        size,
                        root,
                    },
                )
                .map_err(|e| e.to_string())
            })?;
            log.signed.fetch_max(snapshot.size, Ordering::Relaxed);
            *log.signed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Timestamp::now());
            Ok::<_, AuditError>(snapshot)
        })
        .await??;
        // The snapshot flushed the checkpoint; the commit covers whatever
        // raced it.
        self.store.commit().await?;
        {
            let mut kept = self
                .backup_checkpoints
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            kept.insert(snapshot.size);
            while kept.len() > BACKUP_CHECKPOINTS_KEPT {
                kept.pop_first();
            }
        }
        self.publish(snapshot.size);
        Ok(snapshot)
    }

    /// Waits until each of `witnesses` has cosigned the checkpoint of
    /// `size` (or a later one), at most `wait`; returns those that have not.
    /// Publishing a checkpoint is what asks them (each peer's sender offers
    /// it), so this only waits.
    pub async fn await_cosignatures(
        &self,
        witnesses: &[NodeId],
        size: u64,
        wait: std::time::Duration,
    ) -> Vec<NodeId> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.cosigned_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let missing: Vec<NodeId> = witnesses
                .iter()
                .filter(|w| self.cosigned_by(w) < size)
                .copied()
                .collect();
            if missing.is_empty() || tokio::time::Instant::now() >= deadline {
                return missing;
            }
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    /// Offers checkpoint `signed` and those before it to witnesses. Only
    /// after a commit that made it durable.
    fn publish(&self, signed: u64) {
        self.latest.send_if_modified(|l| {
            let newer = signed > *l;
            if newer {
                *l = signed;
            }
            newer
        });
    }

    /// When the newest checkpoint was signed by this process, if it was.
    pub fn latest_checkpoint_time(&self) -> Option<Timestamp> {
        *self.signed_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn latest(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Records an alarm about `peer` (kept, and shown in the node's
    /// status). A misbehaving peer can cause alarms as often as it likes:
    /// only its newest are kept, the rest counted (see
    /// [`crate::store::alarms::MAX_ALARMS_PER_PEER`]), so it cannot hide
    /// another peer's.
    pub fn alarm(&self, peer: NodeId, kind: AlarmKind, reason: &str, text: &str) {
        warn!(alarm = text, peer = %peer.short(), "AUDIT ALARM");
        self.keep_alarm(peer, kind, reason, text, None);
    }

    /// An alarm acknowledged as it is raised, by `by` (an event whose
    /// evidence checked out, such as a restoration statement): shown, not
    /// counted as unacknowledged.
    pub fn alarm_acknowledged(
        &self,
        peer: NodeId,
        kind: AlarmKind,
        reason: &str,
        text: &str,
        by: &str,
    ) {
        tracing::info!(alarm = text, peer = %peer.short(), by, "audit alarm, acknowledged");
        let ack = AlarmAck {
            at: Timestamp::now(),
            by: by.to_string(),
        };
        self.keep_alarm(peer, kind, reason, text, Some(ack));
    }

    fn keep_alarm(
        &self,
        peer: NodeId,
        kind: AlarmKind,
        reason: &str,
        text: &str,
        acknowledged: Option<AlarmAck>,
    ) {
        let _one = self.alarming.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.store.next_alarm_id().and_then(|id| {
            self.store.put_alarm(&Alarm {
                id,
                peer: Some(peer),
                time: Some(Timestamp::now()),
                kind,
                reason: cut(reason, 64),
                text: cut(text, MAX_ALARM_TEXT),
                acknowledged,
            })
        });
        if let Err(e) = stored {
            warn!(error = %e, "cannot store an alarm");
        }
    }

    /// Every alarm kept, newest first.
    pub fn alarms(&self) -> Result<Vec<Alarm>, AuditError> {
        Ok(self.store.alarms()?)
    }

    /// Per peer: alarms kept, unacknowledged and suppressed.
    pub fn alarm_counts(&self) -> Result<Vec<AlarmCounts>, AuditError> {
        Ok(self.store.alarm_counts()?)
    }

    /// How many alarms kept are not acknowledged.
    pub fn unacknowledged_alarms(&self) -> Result<u64, AuditError> {
        Ok(self.alarm_counts()?.iter().map(|c| c.unacknowledged).sum())
    }

    /// Acknowledges alarm `id` on behalf of `by` and records it in the log
    /// (not yet durable: the caller commits).
    pub fn ack_alarm(&self, id: u64, by: Actor) -> Result<Alarm, AckError> {
        let _one = self.alarming.lock().unwrap_or_else(|p| p.into_inner());
        let alarm = self.store.ack_alarm(
            id,
            AlarmAck {
                at: Timestamp::now(),
                by: by.as_str().to_string(),
            },
        )?;
        let detail = format!("alarm ack {id}");
        let mut fact = Fact::new(AuditKind::AdminAction, by).detail(&detail);
        if let Some(p) = alarm.peer {
            fact = fact.peer(p);
        }
        self.note(fact);
        Ok(alarm)
    }
}
