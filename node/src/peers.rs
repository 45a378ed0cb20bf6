//! Pinned peers at run time: the set of them, each one's queue of
//! messages to send and the state operators see (`peer list`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

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
    /// Rejections of its input counted but not recorded one by one (over
    /// its budget), since start.
    pub rejections_suppressed: u64,
    /// Whether its inbound connections are refused now (over its budget).
    pub over_budget: bool,
    /// The keys this peer was pinned with before, cut out by its operator
    /// (`peer repin`), oldest first: refused like any unpinned key.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repinned_from: Vec<NodeId>,
    /// The keys this peer had before its identity transitions moved the
    /// pin, oldest first: shown as "rotated from".
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rotated_from: Vec<NodeId>,
    /// Its identity transitions wait for the operator's accept.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub confirm_rotation: bool,
    /// The identity transition it announced, not applied yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<crate::store::transitions::PendingView>,
}

#[derive(Debug)]
pub struct Peer {
    pub config: PeerConfig,
    pub queue: SendQueue,
    /// Stops this peer's sender (when the peer is removed, or at shutdown).
    pub stop: crate::shutdown::Shutdown,
    /// The sender's task, once started: awaited when the peer is repinned,
    /// so that nothing it sealed for the old key is written after the move.
    sender: Mutex<Option<tokio::task::JoinHandle<()>>>,
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
            sender: Mutex::new(None),
            state: Mutex::new(PeerState::default()),
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Keeps the handle of the sender started for this peer.
    pub fn sender_started(&self, task: tokio::task::JoinHandle<()>) {
        *self.sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// Stops the sender and waits until its task has ended (aborted at its
    /// next await after `grace`: store writes are not awaits, so none is
    /// cut in half).
    pub async fn sender_stopped(&self, grace: std::time::Duration) {
        self.stop.trigger();
        let task = self.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
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
            rejections_suppressed: 0,
            over_budget: false,
            repinned_from: self.config.repinned_from.clone(),
            rotated_from: self.config.rotated_from.clone(),
            confirm_rotation: self.config.confirm_rotation,
            rotation: None,
        }
    }
}

/// Why a peer cannot be pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("that is this node's own id")]
    OwnId,
    #[error("node {0} is already pinned; remove it first")]
    AlreadyPinned(NodeId),
    #[error("a peer for {0} is already pinned; remove it first")]
    CountryTaken(String),
    #[error("address {address:?}: {why}")]
    BadAddress { address: String, why: String },
    #[error(
        "node {id} is the key {country} was repinned from (cut out); it is never pinned again"
    )]
    CutOut { id: NodeId, country: String },
    #[error("node {0} is not pinned")]
    NotPinned(NodeId),
}

/// The pinned peers, by node id, and every key ever cut out of one.
#[derive(Debug, Default)]
pub struct Peers {
    peers: RwLock<HashMap<NodeId, Arc<Peer>>>,
    /// Cut-out key → the country of the peer it was cut out of. Kept when
    /// the peer is removed (taken with `peers`, after it).
    cut_out: RwLock<HashMap<NodeId, String>>,
}

impl Peers {
    pub fn new(configs: impl IntoIterator<Item = PeerConfig>) -> Peers {
        let peers: HashMap<_, _> = configs
            .into_iter()
            .map(|c| (c.id, Arc::new(Peer::new(c))))
            .collect();
        let cut_out = peers
            .values()
            .flat_map(|p| {
                let country = p.config.country.to_string();
                p.config
                    .repinned_from
                    .iter()
                    .map(move |id| (*id, country.clone()))
            })
            .collect();
        Peers {
            peers: RwLock::new(peers),
            cut_out: RwLock::new(cut_out),
        }
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeId, Arc<Peer>>> {
        self.peers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<NodeId, Arc<Peer>>> {
        self.peers.write().unwrap_or_else(|p| p.into_inner())
    }

    fn cut(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeId, String>> {
        self.cut_out.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &NodeId) -> Option<Arc<Peer>> {
        self.table().get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Peer>> {
        self.table().values().cloned().collect()
    }

    /// The pinned peer for a country, if any.
    pub fn by_country(&self, country: &str) -> Option<Arc<Peer>> {
        self.table()
            .values()
            .find(|p| p.config.country.as_str() == country)
            .cloned()
    }

    /// Whether `config` may be pinned beside the peers pinned now, by
    /// node `me`.
    pub fn check_new(&self, me: &NodeId, config: &PeerConfig) -> Result<(), PeerError> {
        check(&self.table(), &self.cut(), me, config)
    }

    /// Checks `config` and adds it, under one lock: two additions at once
    /// cannot both take the same id or country.
    pub fn add(&self, me: &NodeId, config: PeerConfig) -> Result<Arc<Peer>, PeerError> {
        let mut peers = self.table_mut();
        check(&peers, &self.cut(), me, &config)?;
        let peer = Arc::new(Peer::new(config));
        peers.insert(peer.id(), peer.clone());
        Ok(peer)
    }

    /// Unpins `id`. The keys it was repinned from stay cut out.
    pub fn remove(&self, id: &NodeId) -> Option<Arc<Peer>> {
        self.table_mut().remove(id)
    }

    /// The peer whose earlier key `id` was: cut out by a repin, or left by
    /// an identity transition (see [`PeerConfig::had`]).
    pub fn pinned_instead_of(&self, id: &NodeId) -> Option<Arc<Peer>> {
        self.table().values().find(|p| p.config.had(id)).cloned()
    }

    /// The country `id` was cut out of, if it was (also of a peer removed
    /// since, or recorded in the store only).
    pub fn cut_out_of(&self, id: &NodeId) -> Option<String> {
        self.cut().get(id).cloned()
    }

    /// Every key cut out so far.
    pub fn cut_out_ids(&self) -> Vec<NodeId> {
        self.cut_out
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Keys cut out earlier, as the store remembers them.
    pub fn remember_cut_out(&self, keys: impl IntoIterator<Item = (NodeId, String)>) {
        let mut cut = self.cut_out.write().unwrap_or_else(|p| p.into_inner());
        for (id, country) in keys {
            cut.entry(id).or_insert(country);
        }
    }

    /// Replaces peer `old` by the same peer under its new key `new` (at
    /// `address` if given), under one lock, after the same checks as a new
    /// peer (not this node, not pinned, not cut out of any peer): the old
    /// entry and the new one, whose sender is not started yet.
    pub fn repin(
        &self,
        me: &NodeId,
        old: &NodeId,
        new: NodeId,
        address: Option<String>,
    ) -> Result<(Arc<Peer>, Arc<Peer>), PeerError> {
        let mut peers = self.table_mut();
        let mut cut = self.cut_out.write().unwrap_or_else(|p| p.into_inner());
        let config = repinned(&peers, &cut, me, old, new, address, Move::Repin)?;
        let gone = peers.remove(old).ok_or(PeerError::NotPinned(*old))?;
        // The keys it rotated from go with it (`repinned` moved them).
        for id in &config.repinned_from {
            cut.insert(*id, config.country.to_string());
        }
        let peer = Arc::new(Peer::new(config));
        peers.insert(new, peer.clone());
        Ok((gone, peer))
    }

    /// Replaces peer `old` by the same peer under `new`, the successor its
    /// identity transition names, like [`Peers::repin`] except that `old`
    /// joins the peer's `rotated_from` and is not cut out.
    pub fn rotate(
        &self,
        me: &NodeId,
        old: &NodeId,
        new: NodeId,
    ) -> Result<(Arc<Peer>, Arc<Peer>), PeerError> {
        let mut peers = self.table_mut();
        let cut = self.cut();
        let config = repinned(&peers, &cut, me, old, new, None, Move::Rotation)?;
        let gone = peers.remove(old).ok_or(PeerError::NotPinned(*old))?;
        let peer = Arc::new(Peer::new(config));
        peers.insert(new, peer.clone());
        Ok((gone, peer))
    }
}

/// How a peer's pin moves to a new key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Move {
    /// By its operator's word out of band: the old key is cut out.
    Repin,
    /// By the peer's identity transition: the old key is left.
    Rotation,
}

fn repinned(
    peers: &HashMap<NodeId, Arc<Peer>>,
    cut: &HashMap<NodeId, String>,
    me: &NodeId,
    old: &NodeId,
    new: NodeId,
    address: Option<String>,
    how: Move,
) -> Result<PeerConfig, PeerError> {
    let current = peers.get(old).ok_or(PeerError::NotPinned(*old))?;
    let mut config = current.config.clone();
    config.id = new;
    match how {
        // The identity's whole key history is cut out: a key it rotated
        // from must not speak for the new node (nor name its log).
        Move::Repin => {
            let earlier = std::mem::take(&mut config.rotated_from);
            config.repinned_from.extend(earlier);
            config.repinned_from.push(*old);
        }
        Move::Rotation => config.rotated_from.push(*old),
    }
    if let Some(a) = address {
        config.address = a;
    }
    let others: HashMap<_, _> = peers
        .iter()
        .filter(|(id, _)| *id != old)
        .map(|(id, p)| (*id, p.clone()))
        .collect();
    if config.had(&new) {
        return Err(PeerError::CutOut {
            id: new,
            country: config.country.to_string(),
        });
    }
    check(&others, cut, me, &config)?;
    Ok(config)
}

fn check(
    peers: &HashMap<NodeId, Arc<Peer>>,
    cut: &HashMap<NodeId, String>,
    me: &NodeId,
    config: &PeerConfig,
) -> Result<(), PeerError> {
    if config.id == *me {
        return Err(PeerError::OwnId);
    }
    if peers.contains_key(&config.id) {
        return Err(PeerError::AlreadyPinned(config.id));
    }
    if let Some(country) = cut.get(&config.id) {
        return Err(PeerError::CutOut {
            id: config.id,
            country: country.clone(),
        });
    }
    if peers.values().any(|p| p.config.country == config.country) {
        return Err(PeerError::CountryTaken(config.country.to_string()));
    }
    comity_config::parse_host_port(&config.address).map_err(|e| PeerError::BadAddress {
        address: config.address.clone(),
        why: e.to_string(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use comity_protocol::{Identity, Timestamp};

    fn config(seed: u8, country: &str) -> PeerConfig {
        PeerConfig {
            id: Identity::from_seeds(&[seed; 32], &[seed; 32], Timestamp(0)).id(),
            address: "127.0.0.1:7400".into(),
            name: String::new(),
            country: country.parse().unwrap(),
            repinned_from: Vec::new(),
            rotated_from: Vec::new(),
            confirm_rotation: false,
        }
    }

    #[test]
    fn a_peer_is_pinned_once_per_id_and_per_country() {
        let me = config(1, "AR").id;
        let peers = Peers::default();
        let bo = config(2, "BO");
        assert!(peers.add(&me, bo.clone()).is_ok());
        assert_eq!(
            peers.add(&me, bo.clone()).unwrap_err(),
            PeerError::AlreadyPinned(bo.id)
        );
        assert_eq!(
            peers.add(&me, config(3, "BO")).unwrap_err(),
            PeerError::CountryTaken("BO".into())
        );
        assert_eq!(
            peers.add(&me, config(1, "CA")).unwrap_err(),
            PeerError::OwnId
        );
        let mut bad = config(4, "DE");
        bad.address = "no port".into();
        assert!(matches!(
            peers.add(&me, bad).unwrap_err(),
            PeerError::BadAddress { .. }
        ));
        assert_eq!(peers.all().len(), 1);
        assert_eq!(
            peers.check_new(&me, &config(3, "BO")),
            Err(PeerError::CountryTaken("BO".into()))
        );
        assert!(peers.remove(&bo.id).is_some());
        assert!(peers.add(&me, bo).is_ok());
    }

    #[test]
    fn a_repin_keeps_the_peer_under_its_new_key_and_the_old_one_is_never_pinned_again() {
        let me = config(1, "AR").id;
        let peers = Peers::default();
        let bo = config(2, "BO");
        let ca = config(3, "CA");
        peers.add(&me, bo.clone()).unwrap();
        peers.add(&me, ca.clone()).unwrap();
        let new = config(4, "BO").id;
        assert_eq!(
            peers.repin(&me, &bo.id, ca.id, None).unwrap_err(),
            PeerError::AlreadyPinned(ca.id)
        );
        assert_eq!(
            peers.repin(&me, &bo.id, me, None).unwrap_err(),
            PeerError::OwnId
        );
        assert!(matches!(
            peers.repin(&me, &bo.id, bo.id, None).unwrap_err(),
            PeerError::CutOut { .. }
        ));
        assert_eq!(
            peers
                .repin(&me, &new, config(5, "BO").id, None)
                .unwrap_err(),
            PeerError::NotPinned(new)
        );
        let (gone, peer) = peers
            .repin(&me, &bo.id, new, Some("127.0.0.1:7500".into()))
            .unwrap();
        assert_eq!(gone.id(), bo.id);
        assert_eq!(peer.id(), new);
        assert_eq!(peer.config.country.as_str(), "BO");
        assert_eq!(peer.config.address, "127.0.0.1:7500");
        assert_eq!(peer.config.repinned_from, vec![bo.id]);
        assert!(peers.get(&bo.id).is_none());
        assert_eq!(peers.pinned_instead_of(&bo.id).map(|p| p.id()), Some(new));
        // The cut-out key, under any country, is never pinned again.
        let mut again = bo.clone();
        again.country = "DE".parse().unwrap();
        assert_eq!(
            peers.add(&me, again).unwrap_err(),
            PeerError::CutOut {
                id: bo.id,
                country: "BO".into()
            }
        );
        assert!(matches!(
            peers.repin(&me, &ca.id, bo.id, None).unwrap_err(),
            PeerError::CutOut { .. }
        ));
        assert!(matches!(
            peers.repin(&me, &new, bo.id, None).unwrap_err(),
            PeerError::CutOut { .. }
        ));
        assert_eq!(peers.all().len(), 2);
    }

    #[test]
    fn a_key_cut_out_stays_cut_out_when_its_peer_is_removed() {
        let me = config(1, "AR").id;
        let peers = Peers::default();
        let bo = config(2, "BO");
        peers.add(&me, bo.clone()).unwrap();
        let new = config(4, "BO");
        peers.repin(&me, &bo.id, new.id, None).unwrap();
        assert!(peers.remove(&new.id).is_some());
        // Neither under its country nor under another one.
        for cc in ["BO", "XX"] {
            let mut again = bo.clone();
            again.country = cc.parse().unwrap();
            assert_eq!(
                peers.add(&me, again).unwrap_err(),
                PeerError::CutOut {
                    id: bo.id,
                    country: "BO".into()
                }
            );
        }
        assert_eq!(peers.cut_out_of(&bo.id).as_deref(), Some("BO"));
        // The new key may come back (it was never cut out).
        peers.add(&me, new.clone()).unwrap();
        // Keys the store remembers (a peer removed in an earlier run).
        let peers = Peers::new([new]);
        peers.remember_cut_out([(bo.id, "BO".to_string())]);
        assert!(matches!(
            peers.add(&me, config(2, "XX")).unwrap_err(),
            PeerError::CutOut { .. }
        ));
    }
}
