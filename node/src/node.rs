//! A running node: the library API that `comityd`, the admin API and the
//! tests drive. A facade over [`Context`]: it starts the node's tasks, stops
//! them, and hands each call to the module that does the work.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use comity_config::{Config, KeyFileIoError, PeerConfig};
use comity_protocol::audit::entry::{Actor, AuditKind};
use comity_protocol::message::{Body, BusinessStatus};
use comity_protocol::{Identity, MessageId, NodeId, Timestamp};
use tokio::sync::broadcast;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::attachments::{Progress, StoredId};
use crate::audit::{AuditError, AuditLog, Fact};
use crate::business::{self, BusinessError};
use crate::context::Context;
use crate::counts::MessageCounts;
use crate::delivery::{accept, send};
use crate::events::Event;
use crate::evidence::{Evidence, ListingError, MessageAttachments, Retrieval, RetrieveError};
use crate::idempotency::IdempotencyKey;
use crate::listing::{self, Listed};
use crate::lookup::{self, FindError, Found, MessageRef};
use crate::outbox::{self, Accepted, OutboxEntry, SubmitError};
use crate::peers::{Peer, PeerError, PeerStatus};
use crate::resend::{self, ResendError};
use crate::shutdown::Shutdown;
use crate::staged::{self, Upload, UploadError};
use crate::stats::{self, Stats};
use crate::storage::Storage;
use crate::store::cut_out::CutOut;
use crate::store::{
    BusinessEvent, HeldAttachment, InboundMessage, OutboundMessage, OutboundStatus, Store, Way,
};
use crate::store::{ListQuery, Position};
use crate::store::{StoreError, StoreFault};
use crate::transport::bind::{bind_udp, BindPatience};
use crate::transport::endpoint::EndpointError;
use crate::transport::handshakes::HandshakeCounts;
use crate::transport::{server_endpoint, Pins, TlsIdentity};
use comity_token::LoadedKeys;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Key(#[from] KeyFileIoError),
    #[error(transparent)]
    IdentityKey(#[from] comity_token::LoadError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    #[error(
        "the configuration pins this node's own id {0} as a peer (a [[peer]] table): remove it"
    )]
    SelfPinned(NodeId),
    #[error(
        "the configuration pins {id} as a peer, a key cut out of {country} by `comity peer repin` \
         (replaced by {replaced_by}): it is never pinned again. In that [[peer]] table set \
         id = \"{replaced_by}\" and add \"{id}\" to repinned_from, after the keys of its \
         rotated_from, which it leaves (a repin interrupted before the file was written), or \
         remove the table"
    )]
    CutOutPinned {
        id: NodeId,
        country: String,
        replaced_by: NodeId,
    },
    #[error(transparent)]
    DataDir(#[from] crate::files::DataDirError),
    #[error("attachment files: {0}")]
    Attachments(#[from] crate::attachments::AttachmentError),
    #[error("restoration: {0}")]
    Restoration(#[from] crate::restoration::RestorationStartError),
    #[error("superseded encryption keys: {0}")]
    PreviousKeys(#[from] crate::keys::PreviousKeyError),
    #[error(transparent)]
    Sign(#[from] comity_protocol::identity::SignError),
    #[error("identity switch: {0}")]
    Switch(#[from] crate::keys::identity::SwitchError),
    #[error(
        "the configuration pins {id}, a key its peer left by an identity transition this node \
         applied (to {new}): in that [[peer]] table set id = \"{new}\" and add \"{id}\" to \
         rotated_from (a move interrupted before the file was written)"
    )]
    RotatedPinned { id: NodeId, new: NodeId },
}

/// The keys cut out by repins, as the store remembers them (also of peers
/// removed since), with those the file names in `repinned_from` recorded
/// too. A file that pins one of them is refused.
fn remembered_cut_out(store: &Store, config: &Config) -> Result<Vec<(NodeId, String)>, StartError> {
    let known = store.cut_out_keys()?;
    for p in &config.peers {
        if let Some((id, c)) = known.iter().find(|(id, _)| *id == p.id) {
            return Err(StartError::CutOutPinned {
                id: *id,
                country: c.country.clone(),
                replaced_by: c.replaced_by,
            });
        }
        for old in &p.repinned_from {
            let record = CutOut {
                country: p.country.to_string(),
                replaced_by: p.id,
                at: Timestamp::now(),
            };
            store.record_cut_out(old, &record)?;
        }
    }
    Ok(store
        .cut_out_keys()?
        .into_iter()
        .map(|(id, c)| (id, c.country))
        .collect())
}

/// A running node. Dropping it without [`Node::shutdown`] stops nothing
/// cleanly; call `shutdown`.
pub struct Node {
    ctx: Arc<Context>,
    shutdown: Shutdown,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.ctx.id())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Loads the key file named in `config` and starts.
    pub async fn start(config: Config) -> Result<Node, StartError> {
        let keys = comity_token::load(&config)?;
        let started = env!("CARGO_PKG_VERSION").to_string();
        Self::start_inner(config, keys, started, BindPatience::None).await
    }

    /// Opens the store, binds the endpoint, starts one sender per pinned
    /// peer and the receiver, and queues every message not yet delivered.
    pub async fn start_with(config: Config, identity: Identity) -> Result<Node, StartError> {
        let started = env!("CARGO_PKG_VERSION").to_string();
        let keys = LoadedKeys {
            identity,
            token: None,
        };
        Self::start_inner(config, keys, started, BindPatience::None).await
    }

    /// [`Node::start`] after the daemon closed this node because its store
    /// could not write (see `recovery`); the `node-started` entry says so.
    pub async fn start_reopened(config: Config, fault: &str) -> Result<Node, StartError> {
        let keys = comity_token::load(&config)?;
        let detail = format!(
            "{}; reopened after the store could not write: {fault}",
            env!("CARGO_PKG_VERSION")
        );
        // The port was this process's a moment ago (see `BindPatience`).
        Self::start_inner(config, keys, detail, BindPatience::AFTER_REOPEN).await
    }

    async fn start_inner(
        config: Config,
        keys: LoadedKeys,
        started: String,
        patience: BindPatience,
    ) -> Result<Node, StartError> {
        let LoadedKeys { identity, token } = keys;
        // A node pinned to itself would deliver to itself and witness its
        // own log; the API refuses it, and so does start for a file edited
        // by hand.
        if config.peers.iter().any(|p| p.id == identity.id()) {
            return Err(StartError::SelfPinned(identity.id()));
        }
        crate::files::prepare_data_dir(&config.node.data_dir)?;
        // The keys a rotation superseded, still opened in their grace period.
        let superseded =
            crate::keys::previous::load(&crate::keys::previous::dir(&config.node.data_dir))?;
        let identity = identity.with_previous_keys(superseded);
        let store = Store::open(&config.node.data_dir.join("store"))?;
        let identity = Arc::new(crate::keys::identity::at_start(&config, &store, identity)?);
        let cut_out = remembered_cut_out(&store, &config)?;
        for p in &config.peers {
            if let Some(a) = store.applied_transition(&p.id)? {
                return Err(StartError::RotatedPinned {
                    id: p.id,
                    new: a.statement.transition.new,
                });
            }
        }
        let attachments = crate::attachments::AttachmentDir::open(&config.node.data_dir)?;
        let audit = Arc::new(AuditLog::open(
            store.clone(),
            identity.clone(),
            config.audit.checkpoint_entries.into(),
            config.audit.enabled,
        )?);
        let identity =
            crate::keys::identity::finish_interrupted(&config, &store, &audit, identity).await?;
        // A node replacing one whose key was lost: its log begins by
        // naming the old one.
        if let Some(p) = audit.begin_after_predecessor(&config.node.data_dir)? {
            info!(node = %p.node, size = p.size, "this log begins after the log of a lost key");
        }
        // First: the restoration entry follows the backup's last one.
        let restoration =
            crate::restoration::on_start(&config.node.data_dir, &audit, &identity).await?;
        audit.note(Fact::new(AuditKind::NodeStarted, Actor::Node).detail(&started));
        let hearing = Arc::new(std::sync::OnceLock::new());
        let (on_statement, statements_heard) = crate::transitions::queue(hearing.clone());
        let tls = TlsIdentity::new(&identity)
            .map_err(EndpointError::from)?
            .with_peer_statements(on_statement);
        let pins = Pins::new(config.peers.iter().map(|p| p.id));
        let (events, _) = broadcast::channel(4096);
        let handshakes_refused = Arc::new(AtomicU64::new(0));
        let refusing = Arc::new(std::sync::OnceLock::new());
        let on_refused = refusal_recorder(
            audit.clone(),
            events.clone(),
            handshakes_refused.clone(),
            refusing.clone(),
        );
        let reset_key = crate::transport::stateless_reset_key(&identity)?;
        let socket = bind_udp(config.node.listen, patience).await?;
        let endpoint = server_endpoint(
            config.node.listen,
            socket,
            &tls,
            pins.clone(),
            on_refused,
            &config.limits,
            &reset_key,
        )?;
        let mut ctx = Context::new(
            identity,
            config,
            store,
            endpoint,
            tls,
            audit,
            pins,
            events,
            handshakes_refused,
            attachments,
        );
        ctx.restoration = restoration;
        ctx.token = token;
        ctx.peers.remember_cut_out(cut_out);
        crate::keys::identity::present_at_start(&ctx);
        let ctx = Arc::new(ctx);
        let _ = refusing.set(Arc::downgrade(&ctx));
        let _ = hearing.set(Arc::downgrade(&ctx));
        let node = Node {
            ctx,
            shutdown: Shutdown::new(),
            tasks: TaskTracker::new(),
        };
        node.requeue_pending()?;
        let pruned = crate::transitions::prune_at_start(&node.ctx)?;
        if pruned > 0 {
            info!(
                count = pruned,
                "dropped identity transitions pending for peers no longer pinned"
            );
        }
        node.tasks.spawn(crate::checkpoints::run(
            node.ctx.clone(),
            node.shutdown.signal(),
        ));
        node.tasks.spawn(crate::recovery::watch(
            node.ctx.clone(),
            node.shutdown.signal(),
        ));
        node.tasks.spawn(crate::idempotency::sweep(
            node.ctx.store.clone(),
            node.ctx.config.limits.max_message_age(),
            node.shutdown.signal(),
        ));
        node.tasks.spawn(crate::staged::sweep(
            node.ctx.clone(),
            node.shutdown.signal(),
        ));
        node.tasks.spawn(crate::delivery::attachments_in::sweep(
            node.ctx.clone(),
            node.shutdown.signal(),
        ));
        node.tasks.spawn(crate::keys::schedule(
            node.ctx.clone(),
            node.shutdown.signal(),
        ));
        node.tasks.spawn(crate::keys::identity::watch(
            node.ctx.clone(),
            node.shutdown.signal(),
        ));
        node.tasks.spawn(crate::transitions::run(
            node.ctx.clone(),
            statements_heard,
            node.shutdown.signal(),
        ));
        node.tasks.spawn(accept::accept_loop(
            node.ctx.clone(),
            node.shutdown.signal(),
            node.tasks.clone(),
        ));
        for peer in node.ctx.peers.all() {
            node.start_sender(peer);
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
        // Found by the pass over the summaries that opening the store made.
        let opened = self.ctx.store.take_opened();
        if opened.built {
            info!(
                messages = opened.summaries,
                "message listing built (a store from before it existed)"
            );
        }
        if opened.settled + opened.removed > 0 {
            info!(
                settled = opened.settled,
                removed = opened.removed,
                "message listing brought in line with the messages after an interrupted stop"
            );
        }
        let mut pending = opened.pending;
        pending.sort();
        let n = pending.len();
        for (_, id, peer_id) in pending {
            if let Some(peer) = self.ctx.peer(&peer_id) {
                peer.queue.push(id);
            } else if let Some(peer) = self.ctx.peers.pinned_instead_of(&peer_id) {
                // A repin interrupted after the configuration was written.
                if self.ctx.move_to_repinned(&id, &peer_id, peer.id())? {
                    peer.queue.push(id);
                }
            } else {
                warn!(%id, peer = %peer_id, "pending message for a peer no longer pinned");
            }
        }
        if n > 0 {
            info!(count = n, "resuming delivery of pending messages");
        }
        Ok(())
    }

    /// The store's state and the data directory's free space (as last
    /// measured, once a second).
    /// The node's encryption keys: the current one's age, the next
    /// scheduled rotation, the superseded ones and when each is destroyed.
    pub fn key_status(&self) -> crate::keys::KeyStatus {
        crate::keys::KeyStatus::of(&self.ctx)
    }

    /// Announces a new identity key, effective `effective_in` from now
    /// (see `keys::identity`).
    pub async fn rotate_identity(
        &self,
        reason: &str,
        effective_in: std::time::Duration,
    ) -> Result<crate::keys::OwnTransition, crate::keys::IdentityRotationError> {
        crate::keys::identity::announce(&self.ctx, reason, effective_in).await
    }

    /// A new encryption key now, by the operator (see `keys`).
    pub async fn rotate_encryption(
        &self,
    ) -> Result<crate::keys::KeyStatus, crate::keys::RotationError> {
        crate::keys::rotate_encryption(&self.ctx, Actor::Operator).await
    }

    pub fn storage(&self) -> Storage {
        Storage::new(self.ctx.store.fault(), self.ctx.disk.last())
    }

    /// Resolves when the store is faulted and the disk has room again: the
    /// caller should [`Node::close`] this node and start it again (see
    /// `recovery`). Never resolves on a healthy store.
    pub async fn reopen_wanted(&self) -> StoreFault {
        let mut rx = self.ctx.reopen.subscribe();
        loop {
            if let Some(f) = rx.borrow_and_update().clone() {
                return f;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    pub fn id(&self) -> NodeId {
        self.ctx.id()
    }

    pub fn config(&self) -> &Config {
        &self.ctx.config
    }

    /// The UDP address actually bound (useful when listening on port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.ctx.endpoint.local_addr()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.ctx.events.subscribe()
    }

    /// Accepts a message for `to`: validated, sealed if the peer's key is
    /// known, written and flushed. When this returns, the message will not
    /// be lost. With a `key`, a retry of the same request gets the same
    /// message (see [`crate::idempotency`]).
    pub async fn submit(
        &self,
        to: NodeId,
        body: Body,
        key: Option<IdempotencyKey>,
    ) -> Result<Accepted, SubmitError> {
        outbox::submit(&self.ctx, to, body, &[], key).await
    }

    /// [`Node::submit`] with staged attachments (uploaded with
    /// [`Node::begin_upload`]), in message order.
    pub async fn submit_with(
        &self,
        to: NodeId,
        body: Body,
        attachments: &[StoredId],
        key: Option<IdempotencyKey>,
    ) -> Result<Accepted, SubmitError> {
        outbox::submit(&self.ctx, to, body, attachments, key).await
    }

    /// Checks an upload of `size` bytes before any of it is read and
    /// claims its space (see [`crate::staged`]).
    pub fn begin_upload(
        &self,
        name: &str,
        media_type: &str,
        size: u64,
    ) -> Result<Upload, UploadError> {
        staged::begin(&self.ctx, name, media_type, size)
    }

    /// Sends a status update about message `id` (see [`business`]).
    pub async fn set_status(
        &self,
        message: impl Into<MessageRef>,
        status: BusinessStatus,
        note: Option<String>,
        key: Option<IdempotencyKey>,
    ) -> Result<Accepted, BusinessError> {
        business::set_status(&self.ctx, message.into(), status, note, key).await
    }

    /// Sends the execution result of request `id` to its requester.
    pub async fn reply(
        &self,
        message: impl Into<MessageRef>,
        subject: String,
        body: String,
        partial: bool,
        attachments: &[StoredId],
        key: Option<IdempotencyKey>,
    ) -> Result<Accepted, BusinessError> {
        business::reply(
            &self.ctx,
            message.into(),
            subject,
            body,
            partial,
            attachments,
            key,
        )
        .await
    }

    /// Sends a failed message again under a new id (see [`crate::resend`]).
    pub async fn resend(
        &self,
        message: impl Into<MessageRef>,
        key: Option<IdempotencyKey>,
    ) -> Result<(Accepted, NodeId), ResendError> {
        resend::resend(&self.ctx, message.into(), key).await
    }

    /// Our message `id`'s attachments (manifests and stored files).
    pub fn outbound_attachments(&self, id: &MessageId) -> Result<Vec<HeldAttachment>, StoreError> {
        self.ctx.store.outbound_attachments(id)
    }

    /// The message that resent `id` (a message this node sent), and the
    /// one `id` resent, if any.
    pub fn resend_links(
        &self,
        id: &MessageId,
    ) -> Result<(Option<MessageId>, Option<MessageId>), StoreError> {
        Ok((self.ctx.store.resent_as(id)?, self.ctx.store.resend_of(id)?))
    }

    /// The earlier message of `sender` that its message `id` resends, as
    /// its signed resend notice said.
    pub fn received_resend_of(
        &self,
        sender: &NodeId,
        id: &MessageId,
    ) -> Result<Option<MessageId>, StoreError> {
        self.ctx.store.received_resend_of(sender, id)
    }

    /// The one message `r` names (see [`crate::lookup`]).
    pub fn find(&self, r: &MessageRef) -> Result<Found, FindError> {
        lookup::find(&self.ctx.store, r)
    }

    /// The business history of a message found, oldest first.
    pub fn business_history(&self, found: &Found) -> Result<Vec<BusinessEvent>, StoreError> {
        let (id, way) = match found {
            Found::Sent(m) => (m.id, Way::Sent),
            Found::Received(m) => (m.id, Way::Received),
        };
        self.ctx.store.business_history(&found.peer(), &id, way)
    }

    /// The outbound status of a message this node sent.
    pub fn outbound_status(&self, id: &MessageId) -> Result<Option<OutboundStatus>, StoreError> {
        self.ctx.store.outbound_status(id)
    }

    pub fn stats(&self) -> Result<Stats, StoreError> {
        stats::collect(&self.ctx)
    }

    /// One page of the message listing, and where the next starts (see
    /// [`crate::listing`]).
    pub fn list_messages(
        &self,
        q: &ListQuery,
    ) -> Result<(Vec<Listed>, Option<Position>), StoreError> {
        listing::page(&self.ctx, q)
    }

    /// Every message sent, bodies decoded (its cost grows with the store:
    /// the admin API lists pages, [`Node::list_messages`]).
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, StoreError> {
        outbox::list(&self.ctx)
    }

    /// The message's own last error, or while it is pending, its peer's.
    pub fn last_error(&self, m: &OutboundMessage, s: &OutboundStatus) -> Option<String> {
        outbox::last_error(&self.ctx, m, s)
    }

    #[cfg(test)]
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Held while the node's keys change (a rotation, an identity switch):
    /// a backup takes it so that its files are of one moment.
    pub async fn keys_steady(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ctx.key_rotation.lock().await
    }

    /// What the evidence functions work with, for one call.
    fn with_evidence<T>(&self, f: impl FnOnce(Evidence<'_>) -> T) -> T {
        let peers: Vec<NodeId> = self.ctx.peers.all().iter().map(|p| p.id()).collect();
        f(Evidence {
            store: &self.ctx.store,
            dir: &self.ctx.attachments,
            progress: &self.ctx.progress,
            audit: &self.ctx.audit,
            peers: &peers,
        })
    }

    /// The attachments of the message `r` names, with their states and
    /// progress (a received message's also while it is still arriving).
    pub fn attachments(&self, r: &MessageRef) -> Result<MessageAttachments, ListingError> {
        self.with_evidence(|e| e.listing(r))
    }

    /// Opens attachment `index` for reading out, recorded in the audit log
    /// and made durable first (blocking: see [`Evidence::open_retrieval`]).
    pub fn open_retrieval(&self, r: &MessageRef, index: usize) -> Result<Retrieval, RetrieveError> {
        self.with_evidence(|e| e.open_retrieval(r, index))
    }

    /// Makes entries recorded so far durable, synchronously (blocking).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.ctx.store.flush()
    }

    /// The progress registry the attachment transfers report to.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.ctx.progress
    }

    pub(crate) fn audit_note(&self, fact: Fact<'_>) {
        self.ctx.audit.note(fact);
    }

    /// Makes everything written so far durable (the group commit).
    pub(crate) async fn commit(&self) -> Result<(), StoreError> {
        self.ctx.store.commit().await
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.ctx.audit
    }

    /// The last checkpoint this node cosigned of a log, as a predecessor
    /// file: `keys` are where to look (oldest first), followed by the
    /// switches this node applied to the newest key it witnessed; the
    /// checkpoint gets this node's cosignature (now), then the switches
    /// that lead to its signer.
    pub fn witnessed_as_predecessor(
        &self,
        keys: &[NodeId],
    ) -> Result<Option<(comity_protocol::audit::predecessor::PredecessorFile, bool)>, StoreError>
    {
        use comity_protocol::audit::predecessor::MAX_PREDECESSOR_SWITCHES;
        let mut keys = keys.to_vec();
        while let Some(last) = keys.last() {
            if keys.len() > 2 * MAX_PREDECESSOR_SWITCHES {
                break;
            }
            match self.ctx.store.applied_transition(last)? {
                Some(a) if !keys.contains(&a.statement.transition.new) => {
                    keys.push(a.statement.transition.new)
                }
                _ => break,
            }
        }
        for key in keys.iter().rev() {
            if let Some(note) = self.ctx.store.witnessed(key)? {
                let (note, cosigned) = self.cosigned_again(note);
                return self.predecessor_file(note).map(|f| Some((f, cosigned)));
            }
        }
        Ok(None)
    }

    /// `note` with this node's cosignature of it, made now (as it was
    /// when it was witnessed), if it still fits a predecessor file; and
    /// whether it does.
    fn cosigned_again(&self, note: String) -> (String, bool) {
        use comity_protocol::audit::checkpoint::{cosign, origin_for};
        use comity_protocol::audit::note::Note;
        let me = self.ctx.audit.signer();
        let now = Timestamp::now().as_millis() / 1000;
        let line = Note::parse(&note)
            .ok()
            .and_then(|n| cosign(&me, &origin_for(&me.id()), n.text(), now).ok());
        match line {
            Some(l)
                if note.len() + l.len()
                    < comity_protocol::audit::predecessor::MAX_PREDECESSOR_NOTE =>
            {
                (format!("{note}{l}\n"), true)
            }
            _ => (note, false),
        }
    }

    /// `note` (a checkpoint cosigned here) with the switches of its log
    /// this node applied, in order, from the key its origin names up to the
    /// key that signed it: what a predecessor file holds.
    fn predecessor_file(
        &self,
        note: String,
    ) -> Result<comity_protocol::audit::predecessor::PredecessorFile, StoreError> {
        use comity_protocol::audit::checkpoint::{node_for_origin, open_checkpoint};
        use comity_protocol::audit::predecessor::MAX_PREDECESSOR_SWITCHES;
        let origin = note.lines().next().unwrap_or_default().to_string();
        let mut switches = Vec::new();
        let Some(mut key) = node_for_origin(&origin) else {
            return Ok(comity_protocol::audit::predecessor::PredecessorFile { note, switches });
        };
        while open_checkpoint(&note, &origin, &key).is_err()
            && switches.len() < MAX_PREDECESSOR_SWITCHES
        {
            let Some(a) = self.ctx.store.applied_transition(&key)? else {
                break;
            };
            key = a.statement.transition.new;
            switches.push(a.statement);
        }
        Ok(comity_protocol::audit::predecessor::PredecessorFile { note, switches })
    }

    /// Every message received, bodies included (its cost grows with the
    /// store: see [`Node::list_messages`]).
    pub fn inbox(&self) -> Result<Vec<InboundMessage>, StoreError> {
        self.ctx.store.inbound_all().collect()
    }

    /// Messages held, by direction, kind and state (kept as messages are
    /// written: nothing is read).
    pub fn message_counts(&self) -> MessageCounts {
        MessageCounts::of(&self.ctx.store)
    }

    /// Handshakes refused for an unpinned key since start.
    pub fn handshakes_refused(&self) -> u64 {
        self.ctx.handshakes_refused()
    }

    /// Peers' transition statements never looked at: their signatures did
    /// not verify, or the queue was full (see `transitions`).
    pub fn statements_not_heard(&self) -> (u64, u64) {
        (
            self.ctx.statements_unverified.load(Ordering::Relaxed),
            self.ctx.statements_dropped.load(Ordering::Relaxed),
        )
    }

    /// Incoming handshakes in progress, and those answered with a Retry,
    /// refused or ignored since start (a flood shows here).
    pub fn incoming_handshakes(&self) -> HandshakeCounts {
        self.ctx.handshakes.counts()
    }

    pub fn rejection_count(&self) -> u64 {
        self.ctx.store.rejection_count()
    }

    pub fn peers(&self) -> Vec<PeerStatus> {
        let now = std::time::Instant::now();
        let mut v: Vec<_> = self
            .ctx
            .peers
            .all()
            .iter()
            .map(|p| {
                let mut s = p.status();
                s.rotation = match crate::transitions::pending_for(&self.ctx, &p.id()) {
                    Ok(r) => r.as_ref().map(Into::into),
                    Err(e) => {
                        warn!(peer = %p.id(), error = %e, "cannot read a pending identity transition");
                        None
                    }
                };
                let b = self.ctx.budgets.status(&p.id(), now);
                s.rejections_suppressed = b.suppressed;
                s.over_budget = b.backing_off;
                s
            })
            .collect();
        v.sort_by(|a, b| a.country.cmp(&b.country));
        v
    }

    /// The operator accepts `peer`'s pending identity transition (see
    /// `transitions`).
    pub async fn accept_rotation(
        &self,
        peer: &NodeId,
        reason: &str,
    ) -> Result<crate::store::transitions::PendingView, crate::transitions::DecisionError> {
        crate::transitions::accept(&self.ctx, peer, reason, Timestamp::now()).await
    }

    /// The operator refuses `peer`'s pending identity transition: the
    /// successor it named is never accepted.
    pub async fn refuse_rotation(
        &self,
        peer: &NodeId,
        reason: &str,
    ) -> Result<NodeId, crate::transitions::DecisionError> {
        crate::transitions::refuse(&self.ctx, peer, reason, Timestamp::now()).await
    }

    /// The pinned peer for `to`: a node id, or a pinned peer's country code.
    pub fn resolve_peer(&self, to: &str) -> Option<NodeId> {
        if let Ok(id) = to.parse::<NodeId>() {
            return Some(id);
        }
        let cc = to.parse::<comity_config::CountryCode>().ok()?;
        self.ctx.peers.by_country(cc.as_str()).map(|p| p.id())
    }

    /// Whether `config` may be pinned now (see [`Node::add_peer`]).
    pub fn check_new_peer(&self, config: &PeerConfig) -> Result<(), PeerError> {
        self.ctx.peers.check_new(&self.id(), config)
    }

    /// Pins a new peer at run time, after checking it (not this node, not
    /// pinned already, no peer for its country yet, a usable address): it
    /// may connect from now on, a sender starts for it, and messages still
    /// pending for it (from before it was removed) are queued again.
    /// Persisting it in the config is the caller's job.
    pub fn add_peer(&self, config: PeerConfig) -> Result<(), AddPeerError> {
        let peer = self.ctx.peers.add(&self.id(), config)?;
        let id = peer.id();
        self.ctx.pins.insert(id);
        self.queue_pending(&peer)?;
        self.start_sender(peer);
        self.ctx
            .audit
            .note(Fact::new(AuditKind::PeerAdded, Actor::Operator).peer(id));
        info!(peer = %id, "peer pinned");
        Ok(())
    }

    fn start_sender(&self, peer: Arc<Peer>) {
        let stop = peer.stop.signal();
        let task = self
            .tasks
            .spawn(send::run(self.ctx.clone(), peer.clone(), stop));
        peer.sender_started(task);
    }

    /// Moves peer `old` to its new key `new`, when its operator reports the
    /// old one stolen or lost (out of band, never on the old key's word):
    /// the old key is unpinned on every path at once (as
    /// [`Node::remove_peer`]) and stays refused; `persist` writes the change
    /// to the configuration (its error is returned as a warning: the key is
    /// cut out all the same); then the messages not yet delivered to the old
    /// key are moved to the new one, to be sealed again for it, and the new
    /// key is pinned. A crash after `persist` is finished at the next start
    /// (see [`Node::requeue_pending`]).
    pub async fn repin_peer<E: std::fmt::Display>(
        &self,
        old: &NodeId,
        new: NodeId,
        address: Option<String>,
        reason: &str,
        persist: impl FnOnce(&PeerConfig) -> Result<(), E>,
    ) -> Result<Repinned, AddPeerError> {
        let (gone, peer) = self.ctx.peers.repin(&self.id(), old, new, address)?;
        self.ctx.pins.remove(old);
        self.ctx.close_connections(old);
        // Nothing the old sender sealed may be written after the move.
        gone.sender_stopped(SENDER_STOP_GRACE).await;
        // From here on the old key is cut: whatever fails below, the new key
        // is pinned and its sender started (what was not moved is moved at
        // the next start), and the answer says what failed.
        let mut warnings = Vec::new();
        let moved = match self.repin_store(old, &peer, reason).await {
            Ok(moved) => moved,
            Err(e) => {
                warnings.push(format!(
                    "the store: {e}; what is pending for the old key moves at the next start"
                ));
                0
            }
        };
        if let Err(e) = persist(&peer.config) {
            warnings.push(e.to_string());
        }
        self.ctx.pins.insert(new);
        if let Err(e) = self.queue_pending(&peer) {
            warnings.push(format!("queueing for the new key: {e}"));
        }
        self.start_sender(peer);
        warn!(peer = %new, old = %old, moved, "peer repinned: its old key is cut out");
        Ok(Repinned {
            moved,
            warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
        })
    }

    /// A repin's durable part, before the file is written: the cut-out key
    /// remembered and the `key-changed` entry, committed first (a crash
    /// after it leaves a store that refuses the old key and a log that says
    /// so); then what was pending for the old key moved to the new one.
    async fn repin_store(
        &self,
        old: &NodeId,
        peer: &Peer,
        reason: &str,
    ) -> Result<usize, StoreError> {
        let new = peer.id();
        let record = CutOut {
            country: peer.config.country.to_string(),
            replaced_by: new,
            at: Timestamp::now(),
        };
        // `old` and, with it, the keys it rotated from (`Peers::repin`
        // moved them all to `repinned_from`).
        for earlier in &peer.config.repinned_from {
            self.ctx.store.record_cut_out(earlier, &record)?;
        }
        // A transition the cut-out key announced is void with it.
        crate::transitions::drop_pending(&self.ctx, old)?;
        let pending = self.ctx.store.pending_outbound(Some(old))?.len();
        let detail =
            format!("repinned from {old} ({pending} pending to be sealed again): {reason}");
        self.ctx.audit.note(
            Fact::new(AuditKind::KeyChanged, Actor::Operator)
                .peer(new)
                .detail(&detail),
        );
        self.ctx.store.commit().await?;
        let moved = self.retarget_pending(old, new)?;
        self.ctx.store.commit().await?;
        Ok(moved)
    }

    /// Moves peer `old` to the successor its pending identity transition
    /// names, if the transition applies now (its effective time and its
    /// notice period or the operator's accept are past): under the
    /// transitions' gate, so that no refusal comes between, the peer table
    /// moves (the old key joins `rotated_from` and is no longer pinned),
    /// the transition is recorded as applied and audited; then, as for a
    /// repin, the old key's connections close, what was pending for it
    /// moves to the new one (kept as sealed: the peer still opens it), and
    /// `persist` writes the change to the configuration. `None`: nothing
    /// applied.
    pub async fn apply_transition<E: std::fmt::Display>(
        &self,
        old: &NodeId,
        now: Timestamp,
        persist: impl FnOnce(&PeerConfig) -> Result<(), E>,
    ) -> Result<Option<Repinned>, AddPeerError> {
        let (gone, peer) = {
            let _one = self
                .ctx
                .transition_gate
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let Some(current) = self.ctx.peer(old) else {
                return Ok(None);
            };
            let Some(statement) = crate::transitions::due_now(&self.ctx, &current, now)? else {
                return Ok(None);
            };
            let t = &statement.transition;
            let (gone, peer) = self.ctx.peers.rotate(&self.id(), old, t.new)?;
            self.ctx.pins.remove(old);
            self.ctx.store.record_applied_transition(
                &crate::store::transitions::AppliedTransition {
                    statement: statement.clone(),
                    applied_at: now,
                },
            )?;
            self.ctx.store.remove_pending_transition(old)?;
            let pending_out = self.ctx.store.pending_outbound(Some(old))?.len();
            let detail = format!(
                "moved {}'s pin from {} to {} by its identity transition ({pending_out} pending moved to the new key): {}",
                peer.config.country, t.old, t.new, t.reason
            );
            self.ctx.audit.note(
                Fact::new(AuditKind::IdentityTransition, Actor::Node)
                    .peer(t.new)
                    .detail(&detail),
            );
            (gone, peer)
        };
        self.ctx.close_connections(old);
        gone.sender_stopped(SENDER_STOP_GRACE).await;
        let mut warnings = Vec::new();
        if let Err(e) = self.ctx.store.commit().await {
            warnings.push(format!("the store: {e}"));
        }
        let new = peer.id();
        let moved = match self.retarget_pending(old, new) {
            Ok(n) => n,
            Err(e) => {
                warnings.push(format!(
                    "the store: {e}; what is pending for the old key moves at the next start"
                ));
                0
            }
        };
        if let Err(e) = self.ctx.store.commit().await {
            warnings.push(format!("the store: {e}"));
        }
        if let Err(e) = persist(&peer.config) {
            warnings.push(e.to_string());
        }
        self.ctx.pins.insert(new);
        if let Err(e) = self.queue_pending(&peer) {
            warnings.push(format!("queueing for the new key: {e}"));
        }
        self.start_sender(peer);
        warn!(peer = %new, old = %old, moved, "a peer's identity transition applied: its pin moved to the new key");
        Ok(Some(Repinned {
            moved,
            warning: (!warnings.is_empty()).then(|| warnings.join("; ")),
        }))
    }

    /// Resolves when a peer's transition was recorded or accepted.
    pub async fn transitions_changed(&self) {
        self.ctx.transitions_changed.notified().await
    }

    /// The peers whose identity transitions apply at `now` (see
    /// [`Node::apply_transition`]), and the earliest time one will.
    pub fn transitions_due(&self, now: Timestamp) -> (Vec<NodeId>, Option<Timestamp>) {
        let mut due = Vec::new();
        let mut next: Option<Timestamp> = None;
        match self.ctx.store.pending_transitions() {
            Ok(all) => {
                for (old, p) in all {
                    let Some(at) = p.applies_at else { continue };
                    let at = at.max(p.statement.transition.effective_after);
                    if at <= now {
                        due.push(old);
                    } else {
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot read the peers' pending identity transitions"),
        }
        (due, next)
    }

    /// Moves what is pending for `old` to `new` (see
    /// [`Context::move_to_repinned`]).
    fn retarget_pending(&self, old: &NodeId, new: NodeId) -> Result<usize, StoreError> {
        let mut moved = 0;
        for s in self.ctx.store.pending_outbound(Some(old))? {
            if self.ctx.move_to_repinned(&s.id, old, new)? {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Queues every message pending for `peer`, oldest first.
    fn queue_pending(&self, peer: &Peer) -> Result<(), StoreError> {
        let mut pending: Vec<_> = self
            .ctx
            .store
            .pending_outbound(Some(&peer.id()))?
            .into_iter()
            .map(|s| (s.created_at, s.id))
            .collect();
        pending.sort();
        for (_, msg) in pending {
            peer.queue.push(msg);
        }
        Ok(())
    }

    /// Unpins a peer, on every path at once: its open connections (both
    /// ways) are closed, new ones are refused in the handshake (there is no
    /// session resumption to get around the check), and any stream or frame
    /// still in flight meets the pin check; its sender stops. Messages
    /// pending for it stay in the outbox (and resume if it is pinned again).
    pub fn remove_peer(&self, id: &NodeId) -> bool {
        self.ctx.pins.remove(id);
        let removed = self.ctx.peers.remove(id);
        self.ctx.close_connections(id);
        match removed {
            Some(peer) => {
                peer.stop.trigger();
                // Not carried over to a later `peer add` of the same key.
                if let Err(e) = crate::transitions::drop_pending(&self.ctx, id) {
                    warn!(peer = %id, error = %e, "cannot drop the peer's pending identity transition");
                }
                self.ctx
                    .audit
                    .note(Fact::new(AuditKind::PeerRemoved, Actor::Operator).peer(*id));
                info!(peer = %id, "peer unpinned");
                true
            }
            None => false,
        }
    }

    /// Graceful stop: no new work; senders wait briefly for receipts of
    /// what they sent; receivers answer what they hold; a last checkpoint
    /// is made durable. Safe to call more than once.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        info!("shutting down");
        self.shutdown.trigger();
        for peer in self.ctx.peers.all() {
            peer.stop.trigger();
        }
        self.tasks.close();
        if tokio::time::timeout(std::time::Duration::from_secs(10), self.tasks.wait())
            .await
            .is_err()
        {
            warn!("some tasks did not stop within 10 s");
        }
        // Attachment checkpoints still committing on blocking threads hold
        // their claims: a node reopened in this process must not take the
        // same files before they are done.
        let claims = self.ctx.attachment_intakes.clone();
        let drained = tokio::time::timeout(std::time::Duration::from_secs(10), async move {
            while !claims.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        });
        if drained.await.is_err() {
            warn!("attachment checkpoints did not finish within 10 s");
        }
        self.ctx.endpoint.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            self.ctx.endpoint.wait_idle(),
        )
        .await;
        let now = std::time::Instant::now();
        for peer in self.ctx.budgets.pending_peers() {
            crate::delivery::refusals::record_summaries(&self.ctx, &peer, now, true);
        }
        let audit = &self.ctx.audit;
        audit.note(Fact::new(AuditKind::NodeStopped, Actor::Node));
        if let Err(e) = audit.durable_checkpoint().await {
            warn!(error = %e, "cannot make the final checkpoint durable");
        }
        // A faulted store is not flushed again: its writes failed, and sled
        // may block in a flush after a failed write.
        if self.ctx.store.fault().is_none() {
            self.ctx.store.flush()?;
        }
        info!("stopped");
        Ok(())
    }

    /// [`Node::shutdown`], then release the store so the same data
    /// directory can be opened again in this process.
    /// The store is released even when the shutdown's last flush fails (a
    /// full disk), so that it can be reopened.
    pub async fn close(self) -> Result<(), StoreError> {
        let stopped = self.shutdown().await;
        let store = self.ctx.store.clone();
        drop(self);
        let closed = store.close().await;
        stopped.and(closed)
    }
}

/// How long a repinned peer's sender may take to stop (its connections are
/// closed, so it ends at once unless a store write holds it).
const SENDER_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`Node::repin_peer`] did.
#[derive(Debug)]
pub struct Repinned {
    /// Messages moved from the old key to the new one.
    pub moved: usize,
    /// Why the configuration file was not changed, if it was not.
    pub warning: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AddPeerError {
    #[error(transparent)]
    Invalid(#[from] PeerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happens on a handshake refused for an unpinned key: counted every
/// time; logged and audited within [`crate::refusals::RefusalLimit`],
/// naming the peer when the key is one cut out of it by a repin (`node`,
/// set once the node's context exists, has the peer table).
fn refusal_recorder(
    audit: Arc<AuditLog>,
    events: broadcast::Sender<Event>,
    count: Arc<AtomicU64>,
    node: Arc<std::sync::OnceLock<std::sync::Weak<Context>>>,
) -> crate::transport::tls::OnRefused {
    let limit = crate::refusals::RefusalLimit::new(std::time::Instant::now());
    Arc::new(move |key: NodeId| {
        count.fetch_add(1, Ordering::Relaxed);
        if limit.admit(&key, std::time::Instant::now()) {
            let cut_out_of = node
                .get()
                .and_then(std::sync::Weak::upgrade)
                .and_then(|ctx| ctx.peers.cut_out_of(&key));
            let detail = match &cut_out_of {
                Some(cc) => {
                    warn!(key = %key, country = %cc, "refused a connection from a key cut out by a repin");
                    format!("key cut out of {cc} by a repin, presented in a TLS certificate (possession not proven)")
                }
                None => {
                    warn!(key = %key, "refused a connection from a key that is not pinned");
                    "key presented in a TLS certificate (possession not proven)".to_string()
                }
            };
            audit.note(
                Fact::new(AuditKind::PeerRefused, Actor::Node)
                    .peer(key)
                    .detail(&detail),
            );
        }
        let _ = events.send(Event::PeerRefused { key });
    })
}

#[cfg(test)]
mod awaited_tests;
#[cfg(test)]
mod staged_tests;
#[cfg(test)]
pub(crate) mod test_node;
