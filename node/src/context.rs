//! What a node's tasks share: identity, configuration, store, audit log,
//! endpoint, pins, the pinned peers and their verified keys. Delivery,
//! business and statistics take a [`Context`]; only [`crate::node`] builds
//! one. This module depends on nothing above it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use comity_config::Config;
use comity_protocol::identity::KeyError;
use comity_protocol::{Identity, MessageId, NodeId, PeerKeys};
use tokio::sync::broadcast;

use crate::attachments::{AttachmentDir, IncomingKey, Progress, UploadClaims};
use crate::audit::AuditLog;
use crate::budget::{BudgetLimits, Budgets};
use crate::disk::Disk;
use crate::events::Event;
use crate::idempotency::KeyLocks;
use crate::peers::{Peer, Peers};
use crate::status_gate::StatusGate;
use crate::store::{Store, StoreError, StoreFault};
use crate::transport::handshakes::Handshakes;
use crate::transport::{Pins, TlsIdentity};

pub(crate) struct Context {
    /// Swapped whole when an encryption key rotates (see `keys`).
    identity: std::sync::RwLock<Arc<Identity>>,
    pub config: Config,
    pub store: Store,
    pub endpoint: quinn::Endpoint,
    pub tls: TlsIdentity,
    pub audit: Arc<AuditLog>,
    pub pins: Pins,
    pub peers: Peers,
    pub events: broadcast::Sender<Event>,
    /// Connections open, per peer, both ways (so that unpinning can close
    /// them); inbound ones count against the per-peer limit.
    connections: Mutex<HashMap<NodeId, Vec<Open>>>,
    /// Peers' verified keys: checking a certificate costs a signature
    /// verification and a trial encapsulation (~175 µs), so it is done once
    /// per certificate, not once per message.
    verified_keys: Mutex<HashMap<NodeId, PeerKeys>>,
    /// Handshakes refused for an unpinned key, every one (the log and the
    /// audit log record only some: see `refusals`).
    pub handshakes_refused: Arc<AtomicU64>,
    /// Serialises business status updates, ours and the peers'.
    pub status_gate: StatusGate,
    /// What each peer may make us record (see `budget`).
    pub budgets: Budgets,
    /// Incoming handshakes in progress, and those turned away.
    pub handshakes: Arc<Handshakes>,
    /// The data directory's free space and reserve.
    pub disk: Disk,
    /// Set when the store is faulted and can be reopened (see `recovery`).
    pub reopen: tokio::sync::watch::Sender<Option<StoreFault>>,
    /// Idempotency keys whose requests are being staged.
    pub key_locks: KeyLocks,
    /// The attachment files (`data/attachments/`).
    pub attachments: AttachmentDir,
    /// What uploads in progress have left to write (see `attachments`).
    pub uploads: UploadClaims,
    /// Held while staged attachments are taken into a message or removed
    /// as expired, so that no staged file goes to two messages, or to one
    /// and the bin.
    pub staged_gate: Mutex<()>,
    /// Held while an envelope with attachments is checked against the
    /// bounds on what a peer may have held (count, bytes) and recorded.
    pub awaited_gate: Mutex<()>,
    /// Our restoration statement, if this node was restored from a backup:
    /// presented to each witness until it cosigns the continuation.
    pub restoration: Option<crate::restoration::PendingRestoration>,
    /// Received attachments a stream is writing now: one stream each.
    pub attachment_intakes: Arc<Mutex<std::collections::HashSet<IncomingKey>>>,
    /// How far each attachment transfer under way has got.
    pub progress: Arc<Progress>,
    /// One key rotation or expiry at a time (see `keys`).
    pub key_rotation: tokio::sync::Mutex<()>,
    /// The token holding the identity key, if it is on one.
    pub token: Option<Arc<comity_token::TokenSigner>>,
    /// One decision about a peer's identity transition at a time.
    pub transition_gate: Mutex<()>,
    /// Transition statements of pinned or cut-out keys whose signatures do
    /// not verify (never recorded: their presenter proved nothing).
    pub statements_unverified: AtomicU64,
    /// Verified statements dropped because the queue was full.
    pub statements_dropped: AtomicU64,
    /// Woken when this node announces a transition of its own (the task
    /// that switches at its effective time waits on it).
    pub own_transition_announced: tokio::sync::Notify,
    /// Woken when a peer's transition is recorded as pending or accepted
    /// (the task that applies them waits on it).
    pub transitions_changed: tokio::sync::Notify,
}

/// A stored peer key that no longer verifies.
#[derive(Debug, thiserror::Error)]
pub enum PeerKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored encryption key of {peer} does not verify: {source}")]
    Invalid { peer: NodeId, source: KeyError },
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        identity: Arc<Identity>,
        config: Config,
        store: Store,
        endpoint: quinn::Endpoint,
        tls: TlsIdentity,
        audit: Arc<AuditLog>,
        pins: Pins,
        events: broadcast::Sender<Event>,
        handshakes_refused: Arc<AtomicU64>,
        attachments: AttachmentDir,
    ) -> Context {
        let peers = Peers::new(config.peers.iter().cloned());
        let budgets = Budgets::new(BudgetLimits {
            per_hour: config.limits.rejections_per_hour,
            per_day: config.limits.rejections_per_day,
            backoff: config.limits.over_budget_backoff(),
        });
        let disk = Disk::new(&config.node.data_dir, &config.limits);
        Context {
            disk,
            reopen: tokio::sync::watch::channel(None).0,
            identity: std::sync::RwLock::new(identity),
            config,
            store,
            endpoint,
            tls,
            audit,
            pins,
            peers,
            events,
            connections: Mutex::new(HashMap::new()),
            verified_keys: Mutex::new(HashMap::new()),
            handshakes_refused,
            status_gate: StatusGate::default(),
            budgets,
            handshakes: Arc::default(),
            key_locks: KeyLocks::default(),
            attachments,
            uploads: UploadClaims::default(),
            staged_gate: Mutex::new(()),
            awaited_gate: Mutex::new(()),
            restoration: None,
            attachment_intakes: Arc::default(),
            progress: Arc::default(),
            key_rotation: tokio::sync::Mutex::new(()),
            token: None,
            transition_gate: Mutex::new(()),
            statements_unverified: AtomicU64::new(0),
            statements_dropped: AtomicU64::new(0),
            own_transition_announced: tokio::sync::Notify::new(),
            transitions_changed: tokio::sync::Notify::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.identity().id()
    }

    /// The node's keys now: take it once per use, since a rotation may
    /// replace it at any moment.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the node's keys (same identity key, other encryption keys).
    pub(crate) fn set_identity(&self, next: Arc<Identity>) {
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// The peer's verified keys from its stored certificate, if known.
    pub fn peer_keys(&self, id: &NodeId) -> Result<Option<PeerKeys>, PeerKeyError> {
        let Some(cert) = self.store.peer_key(id)? else {
            return Ok(None);
        };
        let mut cache = self.verified_keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.get(id) {
            if k.cert() == &cert {
                return Ok(Some(k.clone()));
            }
        }
        let keys = PeerKeys::new(*id, cert)
            .map_err(|source| PeerKeyError::Invalid { peer: *id, source })?;
        cache.insert(*id, keys.clone());
        Ok(Some(keys))
    }

    /// The keys `peer` had before its identity transitions moved the pin
    /// (those this node recorded applying), newest first: what they signed
    /// before the peer's switch is the peer's still.
    pub fn earlier_keys(&self, peer: &NodeId) -> Vec<PeerKeys> {
        let Some(p) = self.peer(peer) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for old in p.config.rotated_from.iter().rev() {
            if !matches!(self.store.applied_transition(old), Ok(Some(_))) {
                continue;
            }
            match self.peer_keys(old) {
                Ok(Some(k)) => out.push(k),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(key = %old, error = %e, "a peer's earlier key does not verify")
                }
            }
        }
        out
    }

    pub fn emit(&self, event: Event) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    pub fn peer(&self, id: &NodeId) -> Option<Arc<Peer>> {
        self.peers.get(id)
    }

    /// Moves message `id`, pending for the cut-out key `old`, to `new`, the
    /// key the repin pinned instead (see [`Store::retarget_outbound`]):
    /// whether it moved. The repin, the start after an interrupted one and
    /// a submission that raced one all move messages through here.
    pub fn move_to_repinned(
        &self,
        id: &MessageId,
        old: &NodeId,
        new: NodeId,
    ) -> Result<bool, StoreError> {
        let rotated = self
            .peer(&new)
            .is_some_and(|p| p.config.rotated_from.contains(old));
        if rotated {
            let why = format!("the peer's identity moved from {old} to {new}");
            return self.store.move_outbound(id, new, &why, false);
        }
        let why = format!("repinned: {old} was cut out, to be sealed for {new}");
        self.store.retarget_outbound(id, new, &why)
    }

    pub fn handshakes_refused(&self) -> u64 {
        self.handshakes_refused.load(Ordering::Relaxed)
    }

    /// Registers a connection with `peer` until the slot is dropped; `None`
    /// for an inbound one beyond the peer's allowed number.
    pub fn connection_slot(
        self: &Arc<Self>,
        peer: NodeId,
        conn: &quinn::Connection,
        inbound: bool,
    ) -> Option<ConnectionSlot> {
        let mut c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let open = c.entry(peer).or_default();
        let max = self.config.limits.max_connections_per_peer as usize;
        if inbound && open.iter().filter(|o| o.inbound).count() >= max {
            return None;
        }
        let id = conn.stable_id();
        open.push(Open {
            id,
            inbound,
            conn: conn.clone(),
        });
        Some(ConnectionSlot {
            ctx: self.clone(),
            peer,
            id,
        })
    }

    /// Closes every connection with `peer`, both ways (it was unpinned).
    pub fn close_connections(&self, peer: &NodeId) {
        let open = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(peer)
            .unwrap_or_default();
        for o in open {
            o.conn.close(UNPINNED.into(), b"not pinned");
        }
    }

    /// Closes the connections `peer` opened to us (it went over its
    /// budget); ours to it go on.
    pub fn close_inbound(&self, peer: &NodeId) {
        let c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        for o in c.get(peer).into_iter().flatten().filter(|o| o.inbound) {
            o.conn.close(OVER_BUDGET.into(), b"over budget");
        }
    }

    /// Closes every connection, ours and the peers': after our encryption
    /// key rotated, each peer reconnects and is told the new certificate
    /// (messages in flight are sent again on the next session).
    pub fn close_all_connections(&self) {
        let c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        for o in c.values().flatten() {
            o.conn.close(KEYS_CHANGED.into(), b"keys changed");
        }
    }

    /// Whether `peer` is pinned now. Asked on every connection, stream and
    /// frame, never only at the handshake.
    pub fn is_pinned(&self, peer: &NodeId) -> bool {
        self.pins.contains(peer)
    }
}

/// The QUIC application error code of a connection closed because its peer
/// is not pinned (any more).
pub const UNPINNED: u32 = 4;
/// … because the peer made us reject more than its budget allows; it may
/// come back after the back-off.
pub const OVER_BUDGET: u32 = 5;
/// … because our keys changed; reconnect at once for the new ones.
pub const KEYS_CHANGED: u32 = 6;

struct Open {
    id: usize,
    inbound: bool,
    conn: quinn::Connection,
}

pub(crate) struct ConnectionSlot {
    ctx: Arc<Context>,
    peer: NodeId,
    id: usize,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self
            .ctx
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(open) = c.get_mut(&self.peer) {
            open.retain(|o| o.id != self.id);
            if open.is_empty() {
                c.remove(&self.peer);
            }
        }
    }
}
