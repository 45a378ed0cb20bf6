//! Pinned peers at run time: each one's queue of messages to send and the
//! state operators see (`peer list`).

use std::collections::VecDeque;
use std::sync::Mutex;

use comity_config::PeerConfig;
use comity_protocol::{MessageId, NodeId, Timestamp};
use serde::Serialize;
use tokio::sync::Notify;

/// Messages waiting to be written to one peer, oldest first.
#[derive(Debug, Default)]
pub struct SendQueue {
    ids: Mutex<VecDeque<MessageId>>,
    notify: Notify,
}

impl SendQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<MessageId>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, id: MessageId) {
        self.lock().push_back(id);
        self.notify.notify_one();
    }

    /// Puts messages whose delivery was interrupted back in front, in order.
    pub fn requeue_front(&self, ids: impl DoubleEndedIterator<Item = MessageId>) {
        let mut q = self.lock();
        for id in ids.rev() {
            q.push_front(id);
        }
        drop(q);
        self.notify.notify_one();
    }

    pub fn pop(&self) -> Option<MessageId> {
        self.lock().pop_front()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Waits until something is pushed (returns at once if a push came
    /// since the last wait).
    pub async fn wait(&self) {
        self.notify.notified().await
    }
}

/// What operators see of a peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerStatus {
    pub id: NodeId,
    pub name: String,
    pub country: String,
    pub address: String,
    pub connected: bool,
    pub last_contact: Option<Timestamp>,
    pub last_error: Option<String>,
    /// When the sender will next try to connect, while backing off.
    pub next_attempt: Option<Timestamp>,
    /// Messages accepted for this peer and not yet delivered.
    pub pending: usize,
}

#[derive(Debug)]
pub struct Peer {
    pub config: PeerConfig,
    pub queue: SendQueue,
    /// Stops this peer's sender (when the peer is removed, or at shutdown).
    pub stop: crate::shutdown::Shutdown,
    state: Mutex<PeerState>,
}

#[derive(Debug, Default)]
struct PeerState {
    connected: bool,
    last_contact: Option<Timestamp>,
    last_error: Option<String>,
    next_attempt: Option<Timestamp>,
    in_flight: usize,
}

impl Peer {
    pub fn new(config: PeerConfig) -> Peer {
        Peer {
            config,
            queue: SendQueue::default(),
            stop: crate::shutdown::Shutdown::new(),
            state: Mutex::new(PeerState::default()),
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn contact(&self) {
        let mut s = self.state();
        s.last_contact = Some(Timestamp::now());
    }

    pub fn set_connected(&self, connected: bool) {
        let mut s = self.state();
        s.connected = connected;
        if connected {
            s.last_contact = Some(Timestamp::now());
            s.last_error = None;
            s.next_attempt = None;
        }
    }

    /// Records a failed attempt and when the next one will be.
    pub fn set_error(&self, error: String, next_attempt: Timestamp) {
        let mut s = self.state();
        s.connected = false;
        s.last_error = Some(error);
        s.next_attempt = Some(next_attempt);
    }

    pub fn last_error(&self) -> Option<String> {
        self.state().last_error.clone()
    }

    pub fn set_in_flight(&self, n: usize) {
        self.state().in_flight = n;
    }

    pub fn status(&self) -> PeerStatus {
        let s = self.state();
        PeerStatus {
            id: self.config.id,
            name: self.config.name.clone(),
            country: self.config.country.to_string(),
            address: self.config.address.clone(),
            connected: s.connected,
            last_contact: s.last_contact,
            last_error: s.last_error.clone(),
            next_attempt: s.next_attempt,
            pending: s.in_flight + self.queue.len(),
        }
    }
}
