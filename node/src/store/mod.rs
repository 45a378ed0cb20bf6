//! The node's durable state, in sled. Nothing outside this module knows it
//! is sled: keep it that way so the engine can be swapped.
//!
//! The durability rule: a message the CLI was told is accepted is on disk,
//! and a receipt leaves only for a message on disk. sled writes are durable
//! only after a flush.
//! Callers write, then await [`Store::commit`] (group commit) before they
//! tell anyone — the CLI that a message is accepted, a peer that a message
//! is received.
//!
//! Trees and keys:
//! * `outbox`: `m ‖ id` → [`OutboundMessage`], `s ‖ id` → [`OutboundStatus`]
//! * `inbox`: `m ‖ sender ‖ id` → [`InboundMessage`], `d ‖ sender ‖ id` → [`SeenEntry`],
//!   `j ‖ id ‖ sender` → empty (every received message with this id)
//! * `business`: `b ‖ peer ‖ regarding id ‖ way ‖ sequence` → [`BusinessEvent`]:
//!   a message is named by its peer, its id and which way it went (two
//!   peers may use one id; a peer may reuse the id of ours)
//! * `rejections`: sequence (u64 BE) → [`Rejection`]
//! * `peer_keys`: node id → the peer's latest encryption-key certificate
//! * `listing`: a small summary of every message, in the order recorded,
//!   and what the counts are made of (see [`listing`])
//! * `audit`: checkpoints, cosignatures, witness state (see [`audit`]), alarms
//!   (see [`alarms`])
//! * `idempotency`: idempotency key → the message it produced (see [`idempotency`])
//! * `resends`: a failed message ↔ the message that resent it (see [`resends`])
//! * `cut_out`: keys cut out of a peer by a repin (see [`cut_out`])
//! * `transitions`: identity transitions, peers' pending ones and our own
//!   (see [`transitions`])
//!
//! The audit log's entries and tree are files in `audit/` beside sled's
//! `sled/` (see [`audit_files`]); the group commit syncs them first.

pub mod alarms;
mod attachments;
pub mod audit;
pub mod audit_files;
mod barrier;
mod commit;
pub mod cut_out;
mod fault;
pub mod idempotency;
pub mod listing;
pub mod records;
mod resends;
mod snapshot;
pub mod transitions;
pub mod version;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bincode::{Decode, Encode};
use comity_protocol::codec;
use comity_protocol::{EncryptionKeyCert, MessageId, NodeId};

pub use attachments::{AwaitedMessage, Awaiting, HeldAttachment, StagedAttachment};
use audit_files::{AuditFileError, AuditFiles};
use barrier::{Tree, WriteBarrier};
pub use commit::CommitError;
use commit::Committer;
use fault::FaultCell;
pub use fault::StoreFault;
use listing::Listing;
pub use listing::{Counts, ListQuery, Opened, Page, Pending, Position, Summary};
pub use records::*;
pub use snapshot::{Snapshot, SnapshotError, SnapshotFile};

/// sled's page cache (see `Store::open`).
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Records are our own, but a damaged disk is untrusted input too.
const MAX_RECORD: usize = 2 * codec::MAX_FRAME_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store record {key} is damaged: {why}")]
    Corrupt { key: String, why: String },
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Audit(#[from] AuditFileError),
    #[error("cannot encode a record: {0}")]
    Encode(String),
    #[error("another process holds the store at {path} (is comityd already running?)")]
    Locked { path: String },
    #[error("{path}: {source}")]
    Version {
        path: String,
        source: version::VersionError,
    },
    #[error(
        "{path} holds a store of an earlier development version (sled files directly in it, \
         no sled/ and audit/): move it aside and start with an empty data directory"
    )]
    OldLayout { path: String },
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Debug)]
pub struct Store {
    /// The store's directory (`sled/` and `audit/` in it).
    dir: std::path::PathBuf,
    db: sled::Db,
    outbox: Tree,
    inbox: Tree,
    rejections: Tree,
    peer_keys: Tree,
    business: Tree,
    audit: Tree,
    idempotency: Tree,
    resends: Tree,
    attachments: Tree,
    cut_out: Tree,
    transitions: Tree,
    listing: Arc<Listing>,
    /// What opening the listing did (its pending list taken once, by
    /// [`Store::take_opened`]).
    opened: Arc<Mutex<Opened>>,
    /// Rejections recorded: counted at open, then with each one recorded.
    rejections_held: Arc<AtomicU64>,
    audit_files: Arc<AuditFiles>,
    /// Every write to sled passes it; a backup closes it (see [`barrier`]).
    barrier: WriteBarrier,
    /// Held by each flush and by a backup's copy, so that no flush writes
    /// while the copy reads sled's files.
    flush_gate: Arc<Mutex<()>>,
    committer: Committer,
    fault: FaultCell,
    /// Bytes of messages written since the last successful flush: not yet
    /// on disk, so not yet in its free space (see `crate::disk`).
    unflushed: Arc<AtomicU64>,
    flusher: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    /// Serialises "is this (sender, id) new? then insert it", so two copies
    /// of one message arriving at once cannot both be taken as new.
    inbound_gate: Arc<Mutex<()>>,
}

fn encode<T: Encode>(v: &T) -> Result<Vec<u8>> {
    codec::encode(v).map_err(|e| StoreError::Encode(e.to_string()))
}

fn decode<T: Decode<()>>(key: &[u8], bytes: &[u8]) -> Result<T> {
    codec::decode::<T, MAX_RECORD>(bytes).map_err(|e| StoreError::Corrupt {
        key: hex_key(key),
        why: e.to_string(),
    })
}

fn hex_key(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = vec![prefix];
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

impl Store {
    /// Opens (or creates) the store in `dir`. Must run inside a tokio
    /// runtime (the group-commit flusher is a task).
    pub fn open(dir: &Path) -> Result<Store> {
        if dir.join("db").is_file() && !dir.join("sled").exists() {
            return Err(StoreError::OldLayout {
                path: dir.display().to_string(),
            });
        }
        let db = sled::Config::new()
            .path(dir.join("sled"))
            // Only the committer flushes (audit files first): sled's own
            // timer could put an event on disk ahead of its entry.
            .flush_every_ms(None)
            // sled's default cache is 1 GiB and it keeps what it touches:
            // bound it so a node's memory does not grow with its store.
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| match e {
                // sled 0.34 reports a held lock as `Other` with this text.
                sled::Error::Io(ref io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().starts_with("could not acquire lock") =>
                {
                    StoreError::Locked {
                        path: dir.display().to_string(),
                    }
                }
                other => StoreError::Sled(other),
            })?;
        match version::check(&db) {
            Ok(version::Opened::Migrated { from }) => {
                tracing::info!(
                    from,
                    to = version::CURRENT,
                    "store format brought up to date"
                )
            }
            Ok(version::Opened::Current) => {
                tracing::info!(format = version::CURRENT, "store format current")
            }
            Ok(version::Opened::Created) => {
                tracing::info!(format = version::CURRENT, "store created")
            }
            Err(source) => {
                return Err(StoreError::Version {
                    path: dir.display().to_string(),
                    source,
                })
            }
        }
        let fault = FaultCell::default();
        let barrier = WriteBarrier::new(fault.clone());
        let audit = Tree::open(&db, "audit", &barrier)?;
        let (audit_files, recovery) =
            AuditFiles::open(&dir.join("audit"), Store::audit_mark(&audit)?)?;
        if recovery.replayed > 0 {
            tracing::debug!(
                entries = recovery.replayed,
                "audit log: replayed entries after the last checkpoint"
            );
        }
        let audit_files = Arc::new(audit_files);
        let unflushed = Arc::new(AtomicU64::new(0));
        let flush_gate = Arc::new(Mutex::new(()));
        let outbox = Tree::open(&db, "outbox", &barrier)?;
        let inbox = Tree::open(&db, "inbox", &barrier)?;
        let (listing, opened) =
            Listing::open(Tree::open(&db, "listing", &barrier)?, &outbox, &inbox)?;
        let rejections = Tree::open(&db, "rejections", &barrier)?;
        let rejections_held = rejections.iter().keys().count() as u64;
        let (committer, flusher) = Committer::start(
            db.clone(),
            audit_files.clone(),
            fault.clone(),
            unflushed.clone(),
            flush_gate.clone(),
        );
        Ok(Store {
            outbox,
            inbox,
            rejections,
            peer_keys: Tree::open(&db, "peer_keys", &barrier)?,
            business: Tree::open(&db, "business", &barrier)?,
            audit,
            idempotency: Tree::open(&db, "idempotency", &barrier)?,
            resends: Tree::open(&db, "resends", &barrier)?,
            attachments: Tree::open(&db, "attachments", &barrier)?,
            cut_out: Tree::open(&db, "cut_out", &barrier)?,
            transitions: Tree::open(&db, "transitions", &barrier)?,
            listing: Arc::new(listing),
            opened: Arc::new(Mutex::new(opened)),
            rejections_held: Arc::new(AtomicU64::new(rejections_held)),
            audit_files,
            committer,
            fault,
            unflushed,
            flusher: Arc::new(Mutex::new(Some(flusher))),
            barrier,
            flush_gate,
            inbound_gate: Arc::new(Mutex::new(())),
            dir: dir.to_path_buf(),
            db,
        })
    }

    /// Flushes and releases the database. Waits until every other clone of
    /// this `Store` is dropped too (sled keeps its lock until then).
    /// Released even when the last flush fails.
    pub async fn close(self) -> Result<()> {
        let flushed = self.commit().await;
        let flusher = self
            .flusher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(self);
        if let Some(task) = flusher {
            let _ = task.await;
        }
        flushed
    }

    /// Resolves once every write made before the call is on disk.
    pub async fn commit(&self) -> Result<()> {
        Ok(self.committer.commit().await?)
    }

    /// Flushes synchronously (at shutdown).
    pub fn flush(&self) -> Result<()> {
        commit::flush(&self.db, &self.audit_files, &self.flush_gate).map_err(|e| {
            self.fault.set(&e);
            CommitError::Flush(e).into()
        })
    }

    fn count_unflushed(&self, len: usize) {
        self.unflushed.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Bytes of messages written and not yet flushed.
    pub fn unflushed_bytes(&self) -> u64 {
        self.unflushed.load(Ordering::Relaxed)
    }

    /// Why the store cannot write now, if it cannot: a flush failed, or
    /// the audit log stopped after a failed write.
    pub fn fault(&self) -> Option<StoreFault> {
        if let Some(why) = self.audit_files.broken() {
            self.fault.set(&format!("audit log: {why}"));
        }
        self.fault.get()
    }

    // --- outbox ---

    /// Writes a new outgoing message, then its status: a message exists for
    /// every reader once its status does. Two plain inserts, not a batch:
    /// sled writes its log twice for every batch, and sled recovers writes
    /// in order, so a crash between them leaves a message no one sees
    /// (nor was told was accepted).
    /// Its summary goes between the two (see [`listing`]).
    pub fn insert_outbound(&self, msg: &OutboundMessage, status: &OutboundStatus) -> Result<()> {
        self.insert_outbound_with(msg, status, || Ok(()))
    }

    /// [`Store::insert_outbound`] with `attach` writing, between the message
    /// and its status, records that must not outlive a message that was
    /// never accepted (an idempotency key, a resend link): their readers
    /// take one whose message has no status as absent.
    pub fn insert_outbound_with(
        &self,
        msg: &OutboundMessage,
        status: &OutboundStatus,
        attach: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let bytes = encode(msg)?;
        self.count_unflushed(bytes.len());
        self.outbox.insert(key(b'm', &[&msg.id.0]), bytes)?;
        attach()?;
        self.listing.add(&Summary::sent(msg, status))?;
        self.outbox
            .insert(key(b's', &[&msg.id.0]), encode(status)?)?;
        Ok(())
    }

    /// Rewrites the immutable part (once, when sealing).
    pub fn put_outbound_message(&self, msg: &OutboundMessage) -> Result<()> {
        self.outbox.insert(key(b'm', &[&msg.id.0]), encode(msg)?)?;
        Ok(())
    }

    /// Moves a message not yet delivered to `to`, the new id of its peer
    /// (whose old key was cut out by a repin). Its envelope is dropped, to
    /// be sealed again for the new key: the same id and body, so the same
    /// message. Each write is idempotent, so a move interrupted by a crash
    /// is finished by doing it again (the node does at start). `false` if
    /// there was nothing to move (delivered, failed or unknown).
    ///
    /// The caller stops the old id's sender first: a session still sealing
    /// for the old key would write its envelope back over the move.
    pub fn retarget_outbound(&self, id: &MessageId, to: NodeId, why: &str) -> Result<bool> {
        self.move_outbound(id, to, why, true)
    }

    /// Moves an outgoing message not yet final to `to`; `reseal`: its
    /// envelope is dropped, to be sealed again for `to` (a repin), else it
    /// is kept (an identity transition: the peer still opens what was
    /// sealed to its old key, and the same bytes keep a copy it already
    /// holds from being taken for an id reused).
    pub fn move_outbound(
        &self,
        id: &MessageId,
        to: NodeId,
        why: &str,
        reseal: bool,
    ) -> Result<bool> {
        let Some((mut msg, mut status)) = self.outbound(id)? else {
            return Ok(false);
        };
        if status.state.is_final() {
            return Ok(false);
        }
        // The message first (a sender that reads it seals for `to`), then
        // its summary (which queue it goes to at start), then its status.
        msg.peer = to;
        if reseal {
            msg.envelope = None;
            msg.digest = None;
        }
        self.put_outbound_message(&msg)?;
        self.listing.change_peer(id, to)?;
        status.state = OutboundState::Queued;
        status.last_error = Some(why.to_string());
        self.put_outbound_status(id, &status)?;
        Ok(true)
    }

    /// The message's summary follows (see [`listing`]).
    pub fn put_outbound_status(&self, id: &MessageId, status: &OutboundStatus) -> Result<()> {
        let bytes = encode(status)?;
        self.listing
            .change_state(id, HeldState::Outbound(status.state), || {
                self.outbox.insert(key(b's', &[&id.0]), bytes)?;
                Ok(())
            })
    }

    pub fn outbound(&self, id: &MessageId) -> Result<Option<(OutboundMessage, OutboundStatus)>> {
        let mk = key(b'm', &[&id.0]);
        let sk = key(b's', &[&id.0]);
        match (self.outbox.get(&mk)?, self.outbox.get(&sk)?) {
            (Some(m), Some(s)) => Ok(Some((decode(&mk, &m)?, decode(&sk, &s)?))),
            _ => Ok(None),
        }
    }

    /// Only the status of an outgoing message (small; no body or envelope
    /// to decode).
    pub fn outbound_status(&self, id: &MessageId) -> Result<Option<OutboundStatus>> {
        let sk = key(b's', &[&id.0]);
        self.outbox.get(&sk)?.map(|v| decode(&sk, &v)).transpose()
    }

    /// Every outgoing message's status, in id order.
    pub fn outbound_statuses(
        &self,
    ) -> impl Iterator<Item = Result<(MessageId, OutboundStatus)>> + '_ {
        self.outbox.scan_prefix([b's']).map(|kv| {
            let (k, v) = kv?;
            let id = message_id_at(&k, 1)?;
            Ok((id, decode(&k, &v)?))
        })
    }

    /// Every outgoing message with its status, in id order.
    pub fn outbound_all(
        &self,
    ) -> impl Iterator<Item = Result<(OutboundMessage, OutboundStatus)>> + '_ {
        self.outbound_statuses().map(move |r| {
            let (id, status) = r?;
            let mk = key(b'm', &[&id.0]);
            match self.outbox.get(&mk)? {
                None => Err(StoreError::Corrupt {
                    key: hex_key(&mk),
                    why: "status without message".into(),
                }),
                Some(m) => Ok((decode(&mk, &m)?, status)),
            }
        })
    }

    // --- inbox ---

    pub fn seen(&self, sender: &NodeId, id: &MessageId) -> Result<Option<SeenEntry>> {
        let k = key(b'd', &[&sender.0, &id.0]);
        self.inbox.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Inserts a received message unless (sender, id) is already known;
    /// returns the existing entry in that case. The de-duplication entry is
    /// written last (sled recovers writes in order), so once it is on disk
    /// so is the message; after a crash before it, a resent copy is taken
    /// as new and overwrites the same keys.
    pub fn insert_inbound_if_new(&self, msg: &InboundMessage) -> Result<Option<SeenEntry>> {
        let _gate = self.inbound_gate.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = self.seen(&msg.sender, &msg.id)? {
            return Ok(Some(existing));
        }
        let seen = SeenEntry {
            digest: msg.digest,
            receipt: msg.receipt.clone(),
        };
        let bytes = encode(msg)?;
        self.count_unflushed(bytes.len());
        self.inbox
            .insert(key(b'm', &[&msg.sender.0, &msg.id.0]), bytes)?;
        self.inbox
            .insert(key(b'j', &[&msg.id.0, &msg.sender.0]), &[][..])?;
        // Its summary before `d`, under the gate (see [`listing`]).
        let summary = Summary::received(msg);
        let at = self.listing.add(&summary)?;
        let seen = encode(&seen).and_then(|seen| {
            self.inbox
                .insert(key(b'd', &[&msg.sender.0, &msg.id.0]), seen)
                .map_err(StoreError::from)
        });
        if let Err(e) = seen {
            // Not received: the copy the peer sends again gets the summary.
            let _ = self.listing.remove(at, &summary);
            return Err(e);
        }
        Ok(None)
    }

    pub fn inbound(&self, sender: &NodeId, id: &MessageId) -> Result<Option<InboundMessage>> {
        let k = key(b'm', &[&sender.0, &id.0]);
        self.inbox.get(&k)?.map(|v| decode(&k, &v)).transpose()
    }

    /// Every received message with this id, from any sender: a peer may
    /// choose an id another peer used (ids name a message per peer).
    pub fn inbound_by_id(&self, id: &MessageId) -> Result<Vec<InboundMessage>> {
        let mut out = Vec::new();
        for kv in self.inbox.scan_prefix(key(b'j', &[&id.0])) {
            let (k, _) = kv?;
            let sender = k
                .get(17..49)
                .and_then(|s| <[u8; 32]>::try_from(s).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: hex_key(&k),
                    why: "index key too short".into(),
                })?;
            if let Some(m) = self.inbound(&NodeId(sender), id)? {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Every received message, by sender then id: those whose
    /// de-duplication entry is written (see [`Store::insert_inbound_if_new`]).
    pub fn inbound_all(&self) -> impl Iterator<Item = Result<InboundMessage>> + '_ {
        self.inbox.scan_prefix([b'm']).filter_map(move |kv| {
            let (k, v) = match kv {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            let mut d = k.to_vec();
            d[0] = b'd';
            match self.inbox.contains_key(&d) {
                Ok(true) => Some(decode(&k, &v)),
                Ok(false) => None,
                Err(e) => Some(Err(e.into())),
            }
        })
    }

    // --- listing ---

    /// Messages held, by state and kind (kept with the summaries: nothing
    /// is read).
    pub fn message_counts(&self) -> Counts {
        self.listing.counts()
    }

    /// One page of the listing (see [`ListQuery`]).
    pub fn list(&self, q: &ListQuery) -> Result<Page> {
        self.listing.page(q)
    }

    /// Messages sent and not yet delivered nor failed (to `peer` only, if
    /// given), oldest first: one pass over the summaries.
    pub fn pending_outbound(&self, peer: Option<&NodeId>) -> Result<Vec<Summary>> {
        self.listing.pending(peer)
    }

    /// What opening the listing did (built, settled, removed), with the
    /// messages it found still to deliver; the second call has no pending
    /// list (see [`Store::pending_outbound`]).
    pub fn take_opened(&self) -> Opened {
        let mut o = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut o.pending);
        Opened {
            pending,
            ..o.clone()
        }
    }

    // --- business history ---

    /// Appends to the history of message `regarding` that went `way` with
    /// `peer`.
    pub fn append_business(
        &self,
        peer: &NodeId,
        regarding: &MessageId,
        way: Way,
        event: &BusinessEvent,
    ) -> Result<()> {
        let seq = barrier::generate_id(&self.db, &self.barrier)?;
        self.business.insert(
            key(
                b'b',
                &[&peer.0, &regarding.0, &[way.byte()], &seq.to_be_bytes()],
            ),
            encode(event)?,
        )?;
        Ok(())
    }

    /// The business history of message `regarding` that went `way` with
    /// `peer`, oldest first.
    pub fn business_history(
        &self,
        peer: &NodeId,
        regarding: &MessageId,
        way: Way,
    ) -> Result<Vec<BusinessEvent>> {
        self.business
            .scan_prefix(key(b'b', &[&peer.0, &regarding.0, &[way.byte()]]))
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    // --- rejections ---

    pub fn record_rejection(&self, r: &Rejection) -> Result<()> {
        let seq = barrier::generate_id(&self.db, &self.barrier)?;
        self.rejections.insert(seq.to_be_bytes(), encode(r)?)?;
        self.rejections_held.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Rejections recorded (counted at open, then one by one).
    pub fn rejection_count(&self) -> u64 {
        self.rejections_held.load(Ordering::Relaxed)
    }

    pub fn rejections(&self) -> impl Iterator<Item = Result<Rejection>> + '_ {
        self.rejections.iter().map(|kv| {
            let (k, v) = kv?;
            decode(&k, &v)
        })
    }

    // --- peers' encryption keys ---

    pub fn peer_key(&self, peer: &NodeId) -> Result<Option<EncryptionKeyCert>> {
        match self.peer_keys.get(peer.0)? {
            None => Ok(None),
            Some(v) => {
                EncryptionKeyCert::from_bytes(&v)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        key: hex_key(&peer.0),
                        why: e.to_string(),
                    })
            }
        }
    }

    pub fn put_peer_key(&self, cert: &EncryptionKeyCert) -> Result<()> {
        self.peer_keys.insert(cert.node.0, cert.to_bytes())?;
        Ok(())
    }
}

fn node_id_at(k: &[u8], at: usize) -> Result<NodeId> {
    k.get(at..at + 32)
        .and_then(|s| <[u8; 32]>::try_from(s).ok())
        .map(NodeId)
        .ok_or_else(|| StoreError::Corrupt {
            key: hex_key(k),
            why: "key too short".into(),
        })
}

fn message_id_at(k: &[u8], at: usize) -> Result<MessageId> {
    k.get(at..at + 16)
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .map(MessageId)
        .ok_or_else(|| StoreError::Corrupt {
            key: hex_key(k),
            why: "key too short".into(),
        })
}

#[cfg(test)]
mod tests;
