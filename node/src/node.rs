//! A running node: the library API that `comityd`, the admin API and the
//! tests drive.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use comity_config::{Config, KeyFileIoError, PeerConfig};
use comity_protocol::envelope::seal;
use comity_protocol::message::{Body, InvalidMessage};
use comity_protocol::{codec, Identity, MessageId, NodeId, PeerKeys, Timestamp};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::audit::{AuditLog, Fact};
use crate::delivery::{inbound, outbound};
use crate::events::Event;
use crate::peers::{Peer, PeerStatus};
use crate::shutdown::Shutdown;
use crate::store::{InboundMessage, OutboundMessage, OutboundStatus, Rejection, Store, StoreError};
use crate::transport::endpoint::EndpointError;
use crate::transport::{server_endpoint, Pins, TlsIdentity};
use comity_protocol::audit::entry::{Actor, AuditKind};

/// Everything the node's tasks share.
pub(crate) struct Shared {
    pub identity: Identity,
    pub config: Config,
    pub store: Store,
    pub endpoint: quinn::Endpoint,
    pub tls: TlsIdentity,
    pub audit: Arc<AuditLog>,
    pub pins: Pins,
    peers: RwLock<HashMap<NodeId, Arc<Peer>>>,
    events: broadcast::Sender<Event>,
    connections: Mutex<HashMap<NodeId, usize>>,
    /// Peers' verified keys: checking a certificate costs a signature
    /// verification and a trial encapsulation (~175 µs), so it is done once
    /// per certificate, not once per message.
    verified_keys: Mutex<HashMap<NodeId, PeerKeys>>,
    /// Handshakes refused for an unpinned key, every one (the log and the
    /// audit log record only some: see `refusals`).
    handshakes_refused: Arc<std::sync::atomic::AtomicU64>,
    /// Serialises business status updates (see `business.rs`).
    business_gate: tokio::sync::Mutex<()>,
}

impl Shared {
    /// The peer's verified keys from its stored certificate, if known.
    pub fn peer_keys(&self, id: &NodeId) -> Result<Option<PeerKeys>, SubmitError> {
        let Some(cert) = self.store.peer_key(id)? else {
            return Ok(None);
        };
        let mut cache = self.verified_keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = cache.get(id) {
            if k.cert() == &cert {
                return Ok(Some(k.clone()));
            }
        }
        let keys = PeerKeys::new(*id, cert).map_err(|e| SubmitError::Seal(e.to_string()))?;
        cache.insert(*id, keys.clone());
        Ok(Some(keys))
    }

    pub fn emit(&self, event: Event) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    fn peer(&self, id: &NodeId) -> Option<Arc<Peer>> {
        self.peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Reserves one of the peer's allowed inbound connections; released
    /// when the slot is dropped.
    pub fn connection_slot(self: &Arc<Self>, peer: NodeId) -> Option<ConnectionSlot> {
        let mut c = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(peer).or_insert(0);
        if *n >= self.config.limits.max_connections_per_peer as usize {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            shared: self.clone(),
            peer,
        })
    }
}

pub(crate) struct ConnectionSlot {
    shared: Arc<Shared>,
    peer: NodeId,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self
            .shared
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Key(#[from] KeyFileIoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("audit log: {0}")]
    Audit(String),
    #[error("cannot create {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0} is not a pinned peer (see `comity peer list`)")]
    UnknownPeer(NodeId),
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidMessage),
    #[error("message is {len} bytes sealed, above limits.max_message_bytes ({max})")]
    TooLarge { len: usize, max: usize },
    #[error("cannot seal: {0}")]
    Seal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An outgoing message as operators list it.
#[derive(Clone, Debug, Serialize)]
pub struct OutboxEntry {
    pub id: MessageId,
    pub peer: NodeId,
    pub kind: comity_protocol::message::MessageKind,
    pub created_at: Timestamp,
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub has_receipt: bool,
    pub subject: Option<String>,
}

/// How many messages the node holds, by direction, kind and state; counted
/// without holding them all in memory at once.
#[derive(Clone, Debug, Default)]
pub struct MessageCounts {
    pub by: std::collections::BTreeMap<(&'static str, &'static str, &'static str), u64>,
}

impl MessageCounts {
    /// Outbound messages by state.
    pub fn outbound_by_state(&self) -> std::collections::BTreeMap<&'static str, u64> {
        let mut out = std::collections::BTreeMap::new();
        for ((dir, _, state), n) in &self.by {
            if *dir == "outbound" {
                *out.entry(*state).or_default() += n;
            }
        }
        out
    }

    pub fn inbound(&self) -> u64 {
        self.by
            .iter()
            .filter(|((dir, _, _), _)| *dir == "inbound")
            .map(|(_, n)| n)
            .sum()
    }
}

/// A running node. Dropping it without [`Node::shutdown`] stops nothing
/// cleanly; call `shutdown`.
pub struct Node {
    shared: Arc<Shared>,
    shutdown: Shutdown,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.shared.identity.id())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Loads the key file named in `config` and starts.
    pub async fn start(config: Config) -> Result<Node, StartError> {
        let identity = comity_config::load_key_file(&config.node.identity_key)?;
        Self::start_with(config, identity).await
    }

    /// Opens the store, binds the endpoint, starts one sender per pinned
    /// peer and the receiver, and queues every message not yet delivered.
    pub async fn start_with(config: Config, identity: Identity) -> Result<Node, StartError> {
        std::fs::create_dir_all(&config.node.data_dir).map_err(|source| StartError::Io {
            path: config.node.data_dir.display().to_string(),
            source,
        })?;
        let store = Store::open(&config.node.data_dir.join("store"))?;
        let audit = Arc::new(
            AuditLog::open(
                store.clone(),
                &identity.id(),
                config.audit.checkpoint_entries.into(),
                config.audit.enabled,
            )
            .map_err(|e| StartError::Audit(e.to_string()))?,
        );
        audit
            .note(Fact::new(AuditKind::NodeStarted, Actor::Node).detail(env!("CARGO_PKG_VERSION")));
        let tls = TlsIdentity::new(&identity).map_err(EndpointError::from)?;
        let pins = Pins::new(config.peers.iter().map(|p| p.id));
        let (events, _) = broadcast::channel(4096);
        let refused_events = events.clone();
        let refused_audit = audit.clone();
        let limit = crate::refusals::RefusalLimit::new(std::time::Instant::now());
        let handshakes_refused = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let refused_count = handshakes_refused.clone();
        let on_refused = Arc::new(move |key: NodeId| {
            refused_count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if limit.admit(&key, std::time::Instant::now()) {
                warn!(key = %key, "refused a connection from a key that is not pinned");
                refused_audit.note(
                    Fact::new(AuditKind::PeerRefused, Actor::Node)
                        .peer(key)
                        .detail("key presented in a TLS certificate (possession not proven)"),
                );
            }
            let _ = refused_events.send(Event::PeerRefused { key });
        });
        let reset_key = comity_protocol::Digest::of(
            b"comity/v1/quic-stateless-reset-key\0",
            &[&identity.ed25519_secret()[..]],
        );
        let endpoint = server_endpoint(
            config.node.listen,
            &tls,
            pins.clone(),
            on_refused,
            &config.limits,
            &reset_key.0,
        )?;
        let peers = config
            .peers
            .iter()
            .map(|p| (p.id, Arc::new(Peer::new(p.clone()))))
            .collect();
        let shared = Arc::new(Shared {
            identity,
            config,
            store,
            endpoint,
            tls,
            audit,
            pins,
            peers: RwLock::new(peers),
            events,
            connections: Mutex::new(HashMap::new()),
            handshakes_refused,
            business_gate: tokio::sync::Mutex::new(()),
            verified_keys: Mutex::new(HashMap::new()),
        });
        let node = Node {
            shared,
            shutdown: Shutdown::new(),
            tasks: TaskTracker::new(),
        };
        node.requeue_pending()?;
        node.tasks
            .spawn(checkpoints(node.shared.clone(), node.shutdown.signal()));
        node.tasks.spawn(inbound::accept_loop(
            node.shared.clone(),
            node.shutdown.signal(),
            node.tasks.clone(),
        ));
        let peers: Vec<_> = node
            .shared
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for peer in peers {
            let stop = peer.stop.signal();
            node.tasks
                .spawn(outbound::run(node.shared.clone(), peer, stop));
        }
        info!(
            id = %node.id(),
            listen = %node.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            "node started"
        );
        Ok(node)
    }

    /// Puts every message accepted but not delivered back in its peer's
    /// queue, oldest first.
    fn requeue_pending(&self) -> Result<(), StoreError> {
        let mut pending = Vec::new();
        for r in self.shared.store.outbound_all() {
            let (msg, status) = r?;
            if !status.state.is_final() {
                pending.push((msg.created_at, msg.id, msg.peer));
            }
        }
        pending.sort();
        let n = pending.len();
        for (_, id, peer_id) in pending {
            match self.shared.peer(&peer_id) {
                Some(peer) => peer.queue.push(id),
                None => warn!(%id, peer = %peer_id, "pending message for a peer no longer pinned"),
            }
        }
        if n > 0 {
            info!(count = n, "resuming delivery of pending messages");
        }
        Ok(())
    }

    pub fn id(&self) -> NodeId {
        self.shared.identity.id()
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// The UDP address actually bound (useful when listening on port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Accepts a message for `to`: validated, sealed if the peer's key is
    /// known, written and flushed. When this returns, the message will not
    /// be lost.
    pub async fn submit(&self, to: NodeId, body: Body) -> Result<MessageId, SubmitError> {
        self.submit_with(to, body, |_, _| Ok(())).await
    }

    /// [`Node::submit`], with `also` writing more records that become
    /// durable in the same flush as the message (e.g. a business event).
    pub(crate) async fn submit_with(
        &self,
        to: NodeId,
        body: Body,
        also: impl FnOnce(&Store, MessageId) -> Result<(), StoreError>,
    ) -> Result<MessageId, SubmitError> {
        body.validate()?;
        let peer = self.shared.peer(&to).ok_or(SubmitError::UnknownPeer(to))?;
        let max = self.shared.config.limits.max_message_len();
        let id = MessageId::random();
        let created_at = Timestamp::now();
        let mut msg = OutboundMessage {
            id,
            peer: to,
            kind: body.kind(),
            body,
            created_at,
            envelope: None,
            digest: None,
        };
        match self.shared.peer_keys(&to)? {
            Some(keys) => {
                let sealed = seal(
                    &self.shared.identity,
                    &keys,
                    id,
                    created_at,
                    &msg.body,
                    &mut rand::rng(),
                )
                .map_err(|e| SubmitError::Seal(e.to_string()))?;
                if sealed.bytes.len() > max {
                    return Err(SubmitError::TooLarge {
                        len: sealed.bytes.len(),
                        max,
                    });
                }
                msg.envelope = Some(sealed.bytes);
                msg.digest = Some(sealed.digest);
            }
            None => {
                // Sealed at first contact; refuse now what could never fit.
                let len = codec::encode(&msg.body)
                    .map(|b| b.len())
                    .unwrap_or(usize::MAX);
                let sealed_estimate = len.saturating_add(ENVELOPE_OVERHEAD);
                if sealed_estimate > max {
                    return Err(SubmitError::TooLarge {
                        len: sealed_estimate,
                        max,
                    });
                }
            }
        }
        self.shared.audit.note(
            Fact::new(AuditKind::MessageAccepted, Actor::Operator)
                .peer(to)
                .message(id)
                .digest(msg.digest)
                .detail(msg.kind.name()),
        );
        self.shared
            .store
            .insert_outbound(&msg, &OutboundStatus::queued())?;
        also(&self.shared.store, id)?;
        self.shared.store.commit().await?;
        self.shared.emit(Event::Accepted { id, peer: to });
        peer.queue.push(id);
        Ok(id)
    }

    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        self.shared
            .store
            .outbound_all()
            .map(|r| {
                r.map(|(m, s)| OutboxEntry {
                    id: m.id,
                    peer: m.peer,
                    kind: m.kind,
                    created_at: m.created_at,
                    state: s.state.name(),
                    attempts: s.attempts,
                    last_error: self.last_error(&m, &s),
                    delivered_at: s.delivered_at,
                    has_receipt: s.receipt.is_some(),
                    subject: m.body.subject().map(str::to_string),
                })
            })
            .collect()
    }

    /// The message's own last error, or while it is pending, its peer's
    /// (why the connection fails).
    pub fn last_error(&self, m: &OutboundMessage, s: &OutboundStatus) -> Option<String> {
        s.last_error.clone().or_else(|| {
            (!s.state.is_final())
                .then(|| self.shared.peer(&m.peer).and_then(|p| p.last_error()))
                .flatten()
        })
    }

    pub(crate) fn audit_note(&self, fact: Fact<'_>) {
        self.shared.audit.note(fact);
    }

    pub fn audit(&self) -> &AuditLog {
        &self.shared.audit
    }

    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    pub(crate) fn business_gate(&self) -> &tokio::sync::Mutex<()> {
        &self.shared.business_gate
    }

    pub(crate) fn store(&self) -> &Store {
        &self.shared.store
    }

    pub fn outbound(
        &self,
        id: &MessageId,
    ) -> Result<Option<(OutboundMessage, OutboundStatus)>, StoreError> {
        self.shared.store.outbound(id)
    }

    pub fn inbound_by_id(&self, id: &MessageId) -> Result<Option<InboundMessage>, StoreError> {
        self.shared.store.inbound_by_id(id)
    }

    pub fn inbox(&self) -> Result<Vec<InboundMessage>, StoreError> {
        self.shared.store.inbound_all().collect()
    }

    /// Messages held, counted one record at a time.
    pub fn message_counts(&self) -> Result<MessageCounts, StoreError> {
        let mut c = MessageCounts::default();
        for r in self.shared.store.outbound_all() {
            let (m, s) = r?;
            *c.by
                .entry(("outbound", m.kind.name(), s.state.name()))
                .or_default() += 1;
        }
        for r in self.shared.store.inbound_all() {
            *c.by
                .entry(("inbound", r?.kind.name(), "received"))
                .or_default() += 1;
        }
        Ok(c)
    }

    /// Handshakes refused for an unpinned key since start.
    pub fn handshakes_refused(&self) -> u64 {
        self.shared
            .handshakes_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn rejection_count(&self) -> usize {
        self.shared.store.rejection_count()
    }

    pub fn rejections(&self) -> Result<Vec<Rejection>, StoreError> {
        self.shared.store.rejections().collect()
    }

    pub fn peers(&self) -> Vec<PeerStatus> {
        let mut v: Vec<_> = self
            .shared
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|p| p.status())
            .collect();
        v.sort_by(|a, b| a.country.cmp(&b.country));
        v
    }

    /// Pins a new peer at run time: it may connect from now on, a sender
    /// starts for it, and messages still pending for it (from before it was
    /// removed) are queued again. Persisting it in the config is the
    /// caller's job.
    pub fn add_peer(&self, config: PeerConfig) -> Result<(), StoreError> {
        let id = config.id;
        let peer = Arc::new(Peer::new(config));
        {
            let mut peers = self.shared.peers.write().unwrap_or_else(|p| p.into_inner());
            if peers.contains_key(&id) {
                return Ok(());
            }
            peers.insert(id, peer.clone());
        }
        self.shared.pins.insert(id);
        let mut pending = Vec::new();
        for r in self.shared.store.outbound_all() {
            let (m, s) = r?;
            if m.peer == id && !s.state.is_final() {
                pending.push((m.created_at, m.id));
            }
        }
        pending.sort();
        for (_, msg) in pending {
            peer.queue.push(msg);
        }
        let stop = peer.stop.signal();
        self.tasks
            .spawn(outbound::run(self.shared.clone(), peer, stop));
        self.shared
            .audit
            .note(Fact::new(AuditKind::PeerAdded, Actor::Operator).peer(id));
        info!(peer = %id, "peer pinned");
        Ok(())
    }

    /// Unpins a peer: new connections from it are refused, envelopes on its
    /// open connections are refused, its sender stops. Messages pending for
    /// it stay in the outbox (and resume if it is pinned again).
    pub fn remove_peer(&self, id: &NodeId) -> bool {
        self.shared.pins.remove(id);
        let removed = self
            .shared
            .peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        match removed {
            Some(peer) => {
                peer.stop.trigger();
                self.shared
                    .audit
                    .note(Fact::new(AuditKind::PeerRemoved, Actor::Operator).peer(*id));
                info!(peer = %id, "peer unpinned");
                true
            }
            None => false,
        }
    }

    /// Graceful stop: no new work; senders wait briefly for receipts of
    /// what they sent; receivers answer what they hold; the store is
    /// flushed. Safe to call more than once.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        info!("shutting down");
        self.shutdown.trigger();
        for peer in self
            .shared
            .peers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            peer.stop.trigger();
        }
        self.tasks.close();
        if tokio::time::timeout(std::time::Duration::from_secs(10), self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop within 10 s");
        }
        self.shared.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.shared.endpoint.wait_idle(),
        )
        .await;
        let audit = &self.shared.audit;
        audit.note(Fact::new(AuditKind::NodeStopped, Actor::Node));
        if let Err(e) = audit.checkpoint(&self.shared.identity) {
            warn!(error = %e, "cannot sign the final checkpoint");
        }
        self.shared.store.flush()?;
        info!("stopped");
        Ok(())
    }

    /// [`Node::shutdown`], then release the store so the same data
    /// directory can be opened again in this process.
    pub async fn close(self) -> Result<(), StoreError> {
        self.shutdown().await?;
        let store = self.shared.store.clone();
        drop(self);
        store.close().await
    }
}

/// Upper bound of what sealing adds to an encoded body (header, keys,
/// commitment, salt, tag, signature, framing).
const ENVELOPE_OVERHEAD: usize = 512;

/// Signs checkpoints: when enough entries accumulated, or periodically if
/// anything was added. Each one is flushed before peers are offered it.
async fn checkpoints(shared: Arc<Shared>, mut stop: crate::shutdown::ShutdownSignal) {
    let mut tick = tokio::time::interval(shared.config.audit.checkpoint_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.audit.due.notified() => {}
            _ = tick.tick() => {}
            _ = stop.triggered() => return,
        }
        // Sealing syncs the log's files: off the runtime's threads.
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || s.audit.checkpoint(&s.identity)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "cannot sign a checkpoint");
                continue;
            }
            Err(e) => {
                warn!(error = %e, "checkpoint task failed");
                continue;
            }
        }
        // Also publishes checkpoints signed elsewhere (export, proofs).
        let signed = shared.audit.signed();
        match shared.store.commit().await {
            Ok(()) => shared.audit.publish(signed),
            Err(e) => warn!(error = %e, "cannot flush a checkpoint"),
        }
    }
}
