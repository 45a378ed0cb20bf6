//! The listing: one small record per message held — no body, no envelope —
//! in the order this node recorded them, and the message counts kept with
//! them. A page of messages, `comity status` and a `/metrics` scrape cost
//! what a page costs, whatever the size of the store.
//!
//! Tree `listing`:
//! * `l ‖ position` → [`Summary`]. A [`Position`] is the time the message
//!   was recorded here (accepted or received, never before the previous
//!   one's) and a sequence number: keys sort in the order of recording.
//! * `o ‖ id` → the position of a message sent (its summary follows its
//!   delivery state).
//! * `built` → [`FORMAT`]: every message has its summary. A store made
//!   before the listing existed has none; [`Listing::open`] builds them.
//!
//! Crash consistency without sled batches (each takes sled's global write
//! lock and writes its log buffer out): the writes of one change go in an
//! order whose every prefix is complete or recognised at open, where the
//! summaries are settled against the message records:
//! * a message sent: `m`, its summary (queued), `o`, its status. A summary
//!   whose status is missing is removed (the message was never accepted).
//! * a change of delivery state: the status, then the summary. A summary
//!   not in a final state is checked at open; a change away from a final
//!   state (a late receipt for a message given up) first writes the
//!   summary unsettled.
//! * a message received: `m`, `j`, its summary, `d`. Messages are received
//!   one at a time (the store's inbound gate), so only the newest received
//!   summary can lack its `d`; if it does it is removed (the peer, without
//!   a receipt, sends the message again).
//!
//! The counts are made from the summaries at open (one pass over these
//! small records) and follow every summary written after, so a crash
//! cannot make them drift from what the listing shows.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bincode::{Decode, Encode};
use comity_protocol::message::MessageKind;
use comity_protocol::{MessageId, NodeId, Timestamp};

use super::barrier::Tree;
use super::{decode, encode, hex_key, key, HeldState, InboundMessage, OutboundMessage};
use super::{OutboundStatus, Result, StoreError, Way};

/// The listing's format (the value of `built`).
const FORMAT: u8 = 1;
const BUILT: &[u8] = b"built";

/// Most summaries one page reads: a filter that matches little returns a
/// short (even empty) page and the cursor to go on from, rather than
/// walking the store.
pub const SCAN_BUDGET: usize = 5000;

/// Where a message is in the listing: when it was recorded here (ms,
/// never less than the previous message's) and a sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    at: u64,
    seq: u64,
}

impl Position {
    fn bytes(self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&self.at.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    fn key(self) -> Vec<u8> {
        key(b'l', &[&self.bytes()])
    }

    fn from_bytes(b: &[u8]) -> Option<Position> {
        let at = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let seq = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        (b.len() == 16).then_some(Position { at, seq })
    }

    fn of_key(k: &[u8]) -> Result<Position> {
        k.get(1..)
            .and_then(Position::from_bytes)
            .ok_or_else(|| StoreError::Corrupt {
                key: hex_key(k),
                why: "not a listing position".into(),
            })
    }

    /// The first position at or after `t`.
    fn at_or_after(t: Timestamp) -> Position {
        Position {
            at: t.as_millis(),
            seq: 0,
        }
    }
}

/// A cursor as the API shows it: `AT.SEQ`.
impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at, self.seq)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a cursor of this node's listing (give back what Comity-Next-Cursor said)")]
pub struct ParsePositionError(String);

impl std::str::FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let bad = || ParsePositionError(s.chars().take(64).collect());
        let (at, seq) = s.split_once('.').ok_or_else(bad)?;
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(at) || !digits(seq) {
            return Err(bad());
        }
        Ok(Position {
            at: at.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// One message as listings show it and counts count it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Summary {
    pub way: Way,
    pub peer: NodeId,
    pub id: MessageId,
    pub kind: MessageKind,
    pub state: HeldState,
    pub created_at: Timestamp,
    /// When this node accepted it (sent) or received it.
    pub recorded_at: Timestamp,
    pub subject: Option<String>,
    /// Whether every write of the change it summarises was made (see the
    /// module doc); listings and counts skip it until then.
    settled: bool,
}

impl Summary {
    pub(super) fn sent(msg: &OutboundMessage, status: &OutboundStatus) -> Summary {
        Summary {
            way: Way::Sent,
            peer: msg.peer,
            id: msg.id,
            kind: msg.kind,
            state: HeldState::Outbound(status.state),
            created_at: msg.created_at,
            recorded_at: msg.created_at,
            subject: msg.body.subject().map(str::to_string),
            settled: true,
        }
    }

    /// Written before its de-duplication entry, under the inbound gate
    /// (see the module doc).
    pub(super) fn received(msg: &InboundMessage) -> Summary {
        Summary {
            way: Way::Received,
            peer: msg.sender,
            id: msg.id,
            kind: msg.kind,
            state: HeldState::Received,
            created_at: msg.created_at,
            recorded_at: msg.received_at,
            subject: msg.body.subject().map(str::to_string),
            settled: true,
        }
    }
}

/// Messages held, by delivery state and kind (the state says the
/// direction).
pub type Counts = BTreeMap<(HeldState, MessageKind), u64>;

/// Which messages a page lists, from where, how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub way: Option<Way>,
    pub peer: Option<NodeId>,
    pub kind: Option<MessageKind>,
    pub state: Option<HeldState>,
    /// Recorded at or after this time.
    pub since: Option<Timestamp>,
    /// Go on after this position (a cursor a page returned).
    pub after: Option<Position>,
    pub newest_first: bool,
    pub limit: usize,
}

impl ListQuery {
    /// Every message, oldest first, `limit` a page.
    pub fn all(limit: usize) -> ListQuery {
        ListQuery {
            way: None,
            peer: None,
            kind: None,
            state: None,
            since: None,
            after: None,
            newest_first: false,
            limit,
        }
    }

    fn matches(&self, s: &Summary) -> bool {
        self.way.is_none_or(|w| w == s.way)
            && self.peer.is_none_or(|p| p == s.peer)
            && self.kind.is_none_or(|k| k == s.kind)
            && self.state.is_none_or(|st| st == s.state)
    }
}

/// One page: the messages, and where the next page starts (`None`: the
/// listing ends here).
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub summaries: Vec<Summary>,
    pub next: Option<Position>,
}

/// A message sent and not yet delivered nor failed: (created, id, peer).
pub type Pending = (Timestamp, MessageId, NodeId);

/// What [`Listing::open`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// The summaries were built from the messages (a store made before the
    /// listing, or whose building was interrupted).
    pub built: bool,
    pub summaries: u64,
    /// Summaries brought in line with their message records after a crash.
    pub settled: u64,
    /// Summaries of changes that never completed, removed.
    pub removed: u64,
    /// The messages to deliver, found on the way (oldest first).
    pub pending: Vec<Pending>,
}

#[derive(Debug, Default)]
struct Book {
    /// The greatest position given.
    last: Position,
    counts: Counts,
}

impl Book {
    fn count(&mut self, s: &Summary, up: bool) {
        let n = self.counts.entry((s.state, s.kind)).or_default();
        *n = if up {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        if *n == 0 {
            self.counts.remove(&(s.state, s.kind));
        }
    }

    fn next_position(&mut self, recorded_at: Timestamp) -> Position {
        self.last = Position {
            at: recorded_at.as_millis().max(self.last.at),
            seq: self.last.seq.saturating_add(1),
        };
        self.last
    }
}

#[derive(Debug)]
pub(super) struct Listing {
    tree: Tree,
    /// Serialises giving positions with writing their summaries (so a
    /// reader never sees a later position before an earlier one), and the
    /// read-modify-write of a summary with its counts.
    book: Mutex<Book>,
}

fn sent_key(id: &MessageId) -> Vec<u8> {
    key(b'o', &[&id.0])
}

impl Listing {
    /// Opens the listing of the store whose message trees are `outbox` and
    /// `inbox`: builds it if it is missing, else settles what a crash left
    /// half-written (see the module doc) and counts.
    pub(super) fn open(tree: Tree, outbox: &Tree, inbox: &Tree) -> Result<(Listing, Opened)> {
        let listing = Listing {
            tree,
            book: Mutex::new(Book::default()),
        };
        let opened = if listing.tree.get(BUILT)?.as_deref() == Some(&[FORMAT][..]) {
            listing.settle_all(outbox, inbox)?
        } else {
            listing.build(outbox, inbox)?
        };
        Ok((listing, opened))
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Summaries for every message of a store that has none (or an
    /// interrupted building): decodes each message once.
    fn build(&self, outbox: &Tree, inbox: &Tree) -> Result<Opened> {
        self.tree.clear()?;
        let mut book = self.lock();
        let mut opened = Opened {
            built: true,
            ..Opened::default()
        };
        let mut seq = 0u64;
        let mut put = |book: &mut Book, s: Summary| -> Result<()> {
            seq += 1;
            let pos = Position {
                at: s.recorded_at.as_millis(),
                seq,
            };
            self.tree.insert(pos.key(), encode(&s)?)?;
            if s.way == Way::Sent {
                self.tree.insert(sent_key(&s.id), &pos.bytes()[..])?;
            }
            book.count(&s, true);
            book.last = book.last.max(pos);
            opened.summaries += 1;
            if s.way == Way::Sent && !s.state.is_final() {
                opened.pending.push((s.created_at, s.id, s.peer));
            }
            Ok(())
        };
        for kv in outbox.scan_prefix([b's']) {
            let (k, v) = kv?;
            let status: OutboundStatus = decode(&k, &v)?;
            let mut mk = k.to_vec();
            mk[0] = b'm';
            let m = outbox.get(&mk)?.ok_or_else(|| StoreError::Corrupt {
                key: hex_key(&k),
                why: "status without message".into(),
            })?;
            let msg: OutboundMessage = decode(&mk, &m)?;
            put(&mut book, Summary::sent(&msg, &status))?;
        }
        for kv in inbox.scan_prefix([b'd']) {
            let (k, _) = kv?;
            let mut mk = k.to_vec();
            mk[0] = b'm';
            // A `d` is written after its message: one without is not
            // ours to list (nor counted before the listing existed).
            let Some(m) = inbox.get(&mk)? else { continue };
            let msg: InboundMessage = decode(&mk, &m)?;
            put(&mut book, Summary::received(&msg))?;
        }
        // Last: a crash before it builds again from scratch.
        self.tree.insert(BUILT, &[FORMAT][..])?;
        book.last.seq = book.last.seq.max(seq);
        opened.pending.sort();
        Ok(opened)
    }

    /// One pass over the summaries: those a crash may have left behind
    /// their records are settled or removed; everything is counted.
    fn settle_all(&self, outbox: &Tree, inbox: &Tree) -> Result<Opened> {
        let mut book = self.lock();
        let mut opened = Opened::default();
        let mut newest_received = None;
        for kv in self.tree.scan_prefix([b'l']) {
            let (k, v) = kv?;
            let pos = Position::of_key(&k)?;
            book.last = book.last.max(pos);
            let mut s: Summary = decode(&k, &v)?;
            let before = s.clone();
            let keep = match s.way {
                Way::Sent if !s.settled || !s.state.is_final() => {
                    let sk = key(b's', &[&s.id.0]);
                    match outbox.get(&sk)? {
                        None => false,
                        Some(v) => {
                            let status: OutboundStatus = decode(&sk, &v)?;
                            s.state = HeldState::Outbound(status.state);
                            s.settled = true;
                            // `o` is written before the status; restore it
                            // should it be missing all the same.
                            if !self.tree.contains_key(sent_key(&s.id))? {
                                self.tree.insert(sent_key(&s.id), &pos.bytes()[..])?;
                            }
                            true
                        }
                    }
                }
                Way::Received => {
                    newest_received = Some((k.clone(), s.clone()));
                    true
                }
                _ => true,
            };
            if !keep {
                if s.way == Way::Sent
                    && self.tree.get(sent_key(&s.id))?.as_deref() == Some(&pos.bytes()[..])
                {
                    self.tree.remove(sent_key(&s.id))?;
                }
                self.tree.remove(&k)?;
                opened.removed += 1;
                continue;
            }
            if s != before {
                self.tree.insert(&k, encode(&s)?)?;
                opened.settled += 1;
            }
            book.count(&s, true);
            opened.summaries += 1;
            if s.way == Way::Sent && !s.state.is_final() {
                opened.pending.push((s.created_at, s.id, s.peer));
            }
        }
        if let Some((k, s)) = newest_received {
            if !inbox.contains_key(key(b'd', &[&s.peer.0, &s.id.0]))? {
                self.tree.remove(&k)?;
                book.count(&s, false);
                opened.summaries -= 1;
                opened.removed += 1;
            }
        }
        Ok(opened)
    }

    /// Writes the summary of a new message at the next position (and, if
    /// it is settled, counts it).
    pub(super) fn add(&self, s: &Summary) -> Result<Position> {
        let mut book = self.lock();
        let pos = book.next_position(s.recorded_at);
        self.tree.insert(pos.key(), encode(s)?)?;
        if s.way == Way::Sent {
            self.tree.insert(sent_key(&s.id), &pos.bytes()[..])?;
        }
        if s.settled {
            book.count(s, true);
        }
        Ok(pos)
    }

    /// Takes back the summary `s` written at `pos` (its message could not
    /// be stored after all).
    pub(super) fn remove(&self, pos: Position, s: &Summary) -> Result<()> {
        let mut book = self.lock();
        self.tree.remove(pos.key())?;
        if s.way == Way::Sent {
            self.tree.remove(sent_key(&s.id))?;
        }
        if s.settled {
            book.count(s, false);
        }
        Ok(())
    }

    /// Runs `write_status` (which writes the new status of sent message
    /// `id`) and brings its summary to `state`, in the order of the module
    /// doc.
    pub(super) fn change_state(
        &self,
        id: &MessageId,
        state: HeldState,
        write_status: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let mut book = self.lock();
        let found = match self.tree.get(sent_key(id))? {
            None => None,
            Some(p) => {
                let pos = Position::from_bytes(&p).ok_or_else(|| StoreError::Corrupt {
                    key: hex_key(&sent_key(id)),
                    why: "not a listing position".into(),
                })?;
                let k = pos.key();
                match self.tree.get(&k)? {
                    None => None,
                    Some(v) => Some((k.clone(), decode::<Summary>(&k, &v)?)),
                }
            }
        };
        let Some((k, mut s)) = found.filter(|(_, s)| s.state != state) else {
            return write_status();
        };
        let old = s.clone();
        s.state = state;
        if old.state.is_final() {
            s.settled = false;
            self.tree.insert(&k, encode(&s)?)?;
            write_status()?;
            s.settled = true;
        } else {
            write_status()?;
        }
        self.tree.insert(&k, encode(&s)?)?;
        if old.settled {
            book.count(&old, false);
        }
        book.count(&s, true);
        Ok(())
    }

    /// Files sent message `id` under peer id `to` (a repin moved it);
    /// counts do not depend on the peer.
    pub(super) fn change_peer(&self, id: &MessageId, to: NodeId) -> Result<()> {
        let _book = self.lock();
        let Some(p) = self.tree.get(sent_key(id))? else {
            return Ok(());
        };
        let pos = Position::from_bytes(&p).ok_or_else(|| StoreError::Corrupt {
            key: hex_key(&sent_key(id)),
            why: "not a listing position".into(),
        })?;
        let k = pos.key();
        if let Some(v) = self.tree.get(&k)? {
            let mut s: Summary = decode(&k, &v)?;
            if s.peer != to {
                s.peer = to;
                self.tree.insert(&k, encode(&s)?)?;
            }
        }
        Ok(())
    }

    pub(super) fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    /// One page of `q`: at most `q.limit` messages, after reading at most
    /// [`SCAN_BUDGET`] summaries.
    pub(super) fn page(&self, q: &ListQuery) -> Result<Page> {
        let since = q.since.map(Position::at_or_after);
        let mut lower = match since {
            Some(p) => Bound::Included(p.key()),
            None => Bound::Included(vec![b'l']),
        };
        let mut upper = Bound::Excluded(vec![b'l' + 1]);
        if let Some(after) = q.after {
            if q.newest_first {
                upper = Bound::Excluded(after.key());
            } else if since.is_none_or(|s| after >= s) {
                lower = Bound::Excluded(after.key());
            }
        }
        let range = self.tree.range::<Vec<u8>, _>((lower, upper));
        let entries: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> =
            if q.newest_first {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
        let mut page = Page::default();
        // The last position read: where the next page goes on from.
        let mut last = None;
        for (read, kv) in entries.enumerate() {
            let (k, v) = kv?;
            if read >= SCAN_BUDGET {
                page.next = last;
                break;
            }
            let s: Summary = decode(&k, &v)?;
            if s.settled && q.matches(&s) {
                // A full page reads on to the next match, so that the last
                // page says it is the last.
                if page.summaries.len() >= q.limit {
                    page.next = last;
                    break;
                }
                page.summaries.push(s);
            }
            last = Some(Position::of_key(&k)?);
        }
        Ok(page)
    }

    /// Every message sent that is not delivered nor failed (for `peer`
    /// only, if given), oldest first.
    pub(super) fn pending(&self, peer: Option<&NodeId>) -> Result<Vec<Summary>> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([b'l']) {
            let (k, v) = kv?;
            let s: Summary = decode(&k, &v)?;
            if s.way == Way::Sent
                && s.settled
                && !s.state.is_final()
                && peer.is_none_or(|p| *p == s.peer)
            {
                out.push(s);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
