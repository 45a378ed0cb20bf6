use std::collections::BTreeMap;
use std::path::Path;

use comity_protocol::message::{Body, Consultation, MessageKind, Thread};
use comity_protocol::{Digest, MessageId, NodeId, Timestamp};

use super::super::*;
use super::*;

fn id(n: u64) -> MessageId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_be_bytes());
    MessageId(b)
}

fn body(subject: &str) -> Body {
    Body::Consultation(Consultation {
        regarding: None,
        subject: subject.into(),
        body: "Would you accept a request on this basis?".into(),
        thread: Thread::default(),
    })
}

fn outbound(n: u64, peer: u8, kind: MessageKind, at: u64) -> OutboundMessage {
    OutboundMessage {
        id: id(n),
        peer: NodeId([peer; 32]),
        kind,
        body: body(&format!("sent {n}")),
        created_at: Timestamp(at),
        envelope: None,
        digest: None,
    }
}

fn inbound(n: u64, sender: u8, kind: MessageKind, at: u64) -> InboundMessage {
    InboundMessage {
        id: id(n),
        sender: NodeId([sender; 32]),
        kind,
        body: body(&format!("received {n}")),
        created_at: Timestamp(at - 1),
        received_at: Timestamp(at),
        envelope: vec![1, 2, 3],
        digest: Digest([7; 32]),
        receipt: vec![7; 4],
    }
}

fn status(state: OutboundState) -> OutboundStatus {
    let mut s = OutboundStatus::queued();
    s.state = state;
    s
}

/// Counts made by reading every message record (what the listing's
/// counts must equal).
fn counted_by_reading(store: &Store) -> Counts {
    let mut c = Counts::new();
    for r in store.outbound_all() {
        let (m, s) = r.unwrap();
        *c.entry((HeldState::Outbound(s.state), m.kind)).or_default() += 1;
    }
    for r in store.inbound_all() {
        *c.entry((HeldState::Received, r.unwrap().kind)).or_default() += 1;
    }
    c
}

/// Every message the listing shows for `q`, page after page; and the
/// number of pages.
fn walk(store: &Store, mut q: ListQuery) -> (Vec<(Way, MessageId)>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.list(&q).unwrap();
        pages += 1;
        assert!(page.summaries.len() <= q.limit);
        seen.extend(page.summaries.iter().map(|s| (s.way, s.id)));
        match page.next {
            Some(next) => q.after = Some(next),
            None => return (seen, pages),
        }
        assert!(pages < 100_000, "the walk does not end");
    }
}

async fn reopen(store: Store, dir: &Path) -> Store {
    store.close().await.unwrap();
    // sled's own threads may hold its file lock a moment longer.
    for _ in 0..100 {
        match Store::open(dir) {
            Ok(s) => return s,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    Store::open(dir).unwrap()
}

const KINDS: [MessageKind; 3] = [
    MessageKind::Request,
    MessageKind::SpontaneousInformation,
    MessageKind::StatusUpdate,
];

/// 60 messages sent to peers 1 and 2 and received from peers 1 and 3,
/// interleaved, recorded at 1000, 1010, …; returned in recording order.
fn fill(store: &Store) -> Vec<(Way, MessageId, u8, MessageKind, u64)> {
    let mut out = Vec::new();
    for n in 0..60u64 {
        let at = 1000 + 10 * n;
        let kind = KINDS[(n % 3) as usize];
        if n % 2 == 0 {
            let peer = 1 + (n % 4 == 0) as u8;
            store
                .insert_outbound(&outbound(n, peer, kind, at), &OutboundStatus::queued())
                .unwrap();
            out.push((Way::Sent, id(n), peer, kind, at));
        } else {
            let peer = if n % 3 == 0 { 3 } else { 1 };
            assert!(store
                .insert_inbound_if_new(&inbound(n, peer, kind, at))
                .unwrap()
                .is_none());
            out.push((Way::Received, id(n), peer, kind, at));
        }
    }
    out
}

#[tokio::test]
async fn a_cursor_walk_sees_every_message_once_in_the_order_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let all = fill(&store);
    let expected: Vec<_> = all.iter().map(|m| (m.0, m.1)).collect();
    for limit in [1, 7, 60, 1000] {
        let (seen, pages) = walk(&store, ListQuery::all(limit));
        assert_eq!(seen, expected, "limit {limit}");
        // A full last page knows it is the last: no empty page after it.
        assert_eq!(pages, 60usize.div_ceil(limit), "limit {limit}");
        let mut newest = ListQuery::all(limit);
        newest.newest_first = true;
        let (seen, _) = walk(&store, newest);
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(seen, reversed, "newest first, limit {limit}");
    }
    // The same after a restart, and messages recorded later come after.
    let store = reopen(store, dir.path()).await;
    let sent: Vec<_> = all
        .iter()
        .filter(|m| m.0 == Way::Sent)
        .map(|m| m.1)
        .collect();
    let pending: Vec<_> = store.take_opened().pending.iter().map(|p| p.1).collect();
    assert_eq!(pending, sent, "every message sent is still queued");
    store
        .insert_outbound(
            &outbound(100, 1, MessageKind::Request, 5000),
            &OutboundStatus::queued(),
        )
        .unwrap();
    let (seen, _) = walk(&store, ListQuery::all(9));
    assert_eq!(seen.len(), 61);
    assert_eq!(&seen[..60], &expected[..]);
    assert_eq!(seen[60], (Way::Sent, id(100)));
}

#[tokio::test]
async fn positions_keep_the_order_recorded_when_the_clock_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (n, at) in [(1, 5000), (2, 4000), (3, 3000)] {
        store
            .insert_outbound(
                &outbound(n, 1, MessageKind::Request, at),
                &OutboundStatus::queued(),
            )
            .unwrap();
    }
    let (seen, _) = walk(&store, ListQuery::all(1));
    let ids: Vec<_> = seen.iter().map(|s| s.1).collect();
    assert_eq!(ids, vec![id(1), id(2), id(3)]);
}

#[tokio::test]
async fn filters_list_exactly_the_messages_that_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let all = fill(&store);
    // Some of those sent move on.
    for (i, m) in all.iter().filter(|m| m.0 == Way::Sent).enumerate() {
        let state = [
            OutboundState::Queued,
            OutboundState::Sent,
            OutboundState::Delivered,
            OutboundState::Failed,
        ][i % 4];
        store.put_outbound_status(&m.1, &status(state)).unwrap();
    }
    let state_of = |m: &(Way, MessageId, u8, MessageKind, u64)| match m.0 {
        Way::Received => HeldState::Received,
        Way::Sent => HeldState::Outbound(store.outbound_status(&m.1).unwrap().unwrap().state),
    };
    let mut queries = Vec::new();
    for way in [None, Some(Way::Sent), Some(Way::Received)] {
        for peer in [None, Some(1u8), Some(2), Some(3)] {
            for kind in [None, Some(MessageKind::Request), Some(MessageKind::Reply)] {
                for state in [
                    None,
                    Some(HeldState::Received),
                    Some(HeldState::Outbound(OutboundState::Delivered)),
                ] {
                    for since in [None, Some(1300u64), Some(1301)] {
                        queries.push((way, peer, kind, state, since));
                    }
                }
            }
        }
    }
    let mut nonempty = 0;
    for (way, peer, kind, state, since) in queries {
        let expected: Vec<_> = all
            .iter()
            .filter(|m| {
                way.is_none_or(|w| w == m.0)
                    && peer.is_none_or(|p| p == m.2)
                    && kind.is_none_or(|k| k == m.3)
                    && state.is_none_or(|s| s == state_of(m))
                    && since.is_none_or(|t| m.4 >= t)
            })
            .map(|m| (m.0, m.1))
            .collect();
        nonempty += usize::from(!expected.is_empty());
        let q = ListQuery {
            way,
            peer: peer.map(|p| NodeId([p; 32])),
            kind,
            state,
            since: since.map(Timestamp),
            after: None,
            newest_first: false,
            limit: 4,
        };
        let (seen, _) = walk(&store, q.clone());
        assert_eq!(seen, expected, "{q:?}");
        let (mut newest, _) = walk(
            &store,
            ListQuery {
                newest_first: true,
                ..q.clone()
            },
        );
        newest.reverse();
        assert_eq!(newest, expected, "newest first: {q:?}");
    }
    // The filters are not all trivially empty.
    assert!(nonempty > 100, "{nonempty}");
}

#[tokio::test]
async fn a_filter_that_matches_little_reads_a_bounded_part_per_page() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let n = SCAN_BUDGET as u64 * 2 + 10;
    for i in 0..n {
        let kind = if i == n - 1 {
            MessageKind::Consultation
        } else {
            MessageKind::Request
        };
        store
            .insert_outbound(&outbound(i, 1, kind, 1000 + i), &OutboundStatus::queued())
            .unwrap();
    }
    let mut q = ListQuery::all(100);
    q.kind = Some(MessageKind::Consultation);
    let first = store.list(&q).unwrap();
    assert!(first.summaries.is_empty());
    assert!(first.next.is_some(), "an empty page that is not the last");
    let (seen, pages) = walk(&store, q);
    assert_eq!(seen, vec![(Way::Sent, id(n - 1))]);
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn counts_follow_every_change_and_agree_with_the_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kind = MessageKind::Request;
    for n in 0..4 {
        store
            .insert_outbound(&outbound(n, 1, kind, 1000), &OutboundStatus::queued())
            .unwrap();
    }
    use OutboundState::{Delivered, Failed, Sent};
    // 0 sent twice (no change of state the second time); 3 delivered by a
    // late receipt after it was given up.
    let changes = [(0, Sent), (0, Sent), (1, Sent), (1, Delivered), (2, Failed)];
    for (n, state) in changes.into_iter().chain([(3, Failed), (3, Delivered)]) {
        store.put_outbound_status(&id(n), &status(state)).unwrap();
    }
    store
        .insert_inbound_if_new(&inbound(10, 1, MessageKind::Reply, 2000))
        .unwrap();
    // A duplicate is not a second message.
    store
        .insert_inbound_if_new(&inbound(10, 1, MessageKind::Reply, 2001))
        .unwrap();
    let expected = Counts::from([
        ((HeldState::Outbound(OutboundState::Sent), kind), 1),
        ((HeldState::Outbound(OutboundState::Delivered), kind), 2),
        ((HeldState::Outbound(OutboundState::Failed), kind), 1),
        ((HeldState::Received, MessageKind::Reply), 1),
    ]);
    assert_eq!(store.message_counts(), expected);
    assert_eq!(counted_by_reading(&store), expected);
    let store = reopen(store, dir.path()).await;
    assert_eq!(store.message_counts(), expected);
    let opened = store.take_opened();
    assert_eq!(opened.settled + opened.removed, 0, "{opened:?}");
    let (seen, _) = walk(&store, ListQuery::all(100));
    assert_eq!(seen.len(), 5);
}

/// Writes `n`'s message record and summary, as `insert_outbound` does
/// before the status: what a crash between them leaves.
fn outbound_without_status(store: &Store, msg: &OutboundMessage) {
    store
        .outbox
        .insert(key(b'm', &[&msg.id.0]), encode(msg).unwrap())
        .unwrap();
    store
        .listing
        .add(&Summary::sent(msg, &OutboundStatus::queued()))
        .unwrap();
}

#[tokio::test]
async fn after_a_crash_the_listing_and_counts_agree_with_the_messages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let kind = MessageKind::Request;
    // Complete: queued, delivered, failed, received.
    for n in 0..3 {
        store
            .insert_outbound(&outbound(n, 1, kind, 1000 + n), &OutboundStatus::queued())
            .unwrap();
    }
    store
        .put_outbound_status(&id(1), &status(OutboundState::Delivered))
        .unwrap();
    store
        .put_outbound_status(&id(2), &status(OutboundState::Failed))
        .unwrap();
    store
        .insert_inbound_if_new(&inbound(3, 1, kind, 2000))
        .unwrap();
    // Each prefix a crash can leave of a change (sled recovers writes in
    // order):
    // 1. a message accepted up to its summary, without its status;
    outbound_without_status(&store, &outbound(4, 1, kind, 3000));
    // 2. a status written (delivered), its summary not yet (sent);
    store
        .put_outbound_status(&id(0), &status(OutboundState::Sent))
        .unwrap();
    store
        .outbox
        .insert(
            key(b's', &[&id(0).0]),
            encode(&status(OutboundState::Delivered)).unwrap(),
        )
        .unwrap();
    // 3. a change away from a final state (failed → delivered) with only
    //    its unsettled summary written;
    store
        .listing
        .change_state(
            &id(2),
            HeldState::Outbound(OutboundState::Delivered),
            || Err(StoreError::Encode("the crash".into())),
        )
        .unwrap_err();
    // 4. a message received up to its summary, without its `d` (only the
    //    newest can be: messages are received one at a time).
    let lost = inbound(5, 2, kind, 4000);
    store
        .inbox
        .insert(
            key(b'm', &[&lost.sender.0, &lost.id.0]),
            encode(&lost).unwrap(),
        )
        .unwrap();
    store.listing.add(&Summary::received(&lost)).unwrap();

    let store = reopen(store, dir.path()).await;
    let opened = store.take_opened();
    assert!(!opened.built);
    // 2 and 3 brought in line; 1 and 4 removed.
    assert_eq!((opened.settled, opened.removed), (2, 2), "{opened:?}");
    // The one never accepted is not to be delivered either.
    assert!(opened.pending.is_empty(), "{opened:?}");
    let expected = Counts::from([
        ((HeldState::Outbound(OutboundState::Queued), kind), 0),
        ((HeldState::Outbound(OutboundState::Delivered), kind), 2),
        ((HeldState::Outbound(OutboundState::Failed), kind), 1),
        ((HeldState::Received, kind), 1),
    ])
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect::<BTreeMap<_, _>>();
    assert_eq!(store.message_counts(), expected);
    assert_eq!(counted_by_reading(&store), expected);
    let (seen, _) = walk(&store, ListQuery::all(2));
    assert_eq!(
        seen,
        vec![
            (Way::Sent, id(0)),
            (Way::Sent, id(1)),
            (Way::Sent, id(2)),
            (Way::Received, id(3)),
        ]
    );
    // The message received without its `d` comes again: listed once.
    assert!(store.insert_inbound_if_new(&lost).unwrap().is_none());
    let (seen, _) = walk(&store, ListQuery::all(100));
    assert_eq!(seen.iter().filter(|s| s.1 == id(5)).count(), 1);
    assert_eq!(store.message_counts(), counted_by_reading(&store));
    // Nothing left to settle at the next start.
    let store = reopen(store, dir.path()).await;
    let opened = store.take_opened();
    assert_eq!((opened.settled, opened.removed), (0, 0), "{opened:?}");
    assert_eq!(store.message_counts(), counted_by_reading(&store));
}

/// Writes messages as a store from before the listing did: records only.
fn write_without_listing(store: &Store) {
    for n in 0..5u64 {
        let m = outbound(n, 1, MessageKind::Request, 1000 + 10 * n);
        store
            .outbox
            .insert(key(b'm', &[&m.id.0]), encode(&m).unwrap())
            .unwrap();
        let state = if n < 3 {
            OutboundState::Delivered
        } else {
            OutboundState::Queued
        };
        store
            .outbox
            .insert(key(b's', &[&m.id.0]), encode(&status(state)).unwrap())
            .unwrap();
        let r = inbound(100 + n, 2, MessageKind::Reply, 1005 + 10 * n);
        store
            .inbox
            .insert(key(b'm', &[&r.sender.0, &r.id.0]), encode(&r).unwrap())
            .unwrap();
        store
            .inbox
            .insert(key(b'j', &[&r.id.0, &r.sender.0]), &[][..])
            .unwrap();
        store
            .inbox
            .insert(
                key(b'd', &[&r.sender.0, &r.id.0]),
                encode(&SeenEntry {
                    digest: r.digest,
                    receipt: r.receipt.clone(),
                })
                .unwrap(),
            )
            .unwrap();
    }
}

#[tokio::test]
async fn a_store_from_before_the_listing_gets_it_built_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.listing.tree.clear().unwrap();
    write_without_listing(&store);
    let store = reopen(store, dir.path()).await;
    let opened = store.take_opened();
    assert!(opened.built);
    assert_eq!(opened.summaries, 10);
    assert_eq!(store.message_counts(), counted_by_reading(&store));
    // In the order recorded: sent at 1000, received at 1005, …
    let (seen, _) = walk(&store, ListQuery::all(3));
    let expected: Vec<_> = (0..5)
        .flat_map(|n| [(Way::Sent, id(n)), (Way::Received, id(100 + n))])
        .collect();
    assert_eq!(seen, expected);
    // Those not delivered are still to be sent, found at open and later.
    let at_open: Vec<_> = opened.pending.iter().map(|p| p.1).collect();
    assert_eq!(at_open, vec![id(3), id(4)]);
    let pending: Vec<_> = store
        .pending_outbound(None)
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(pending, vec![id(3), id(4)]);
    // New messages go after, and state changes follow.
    store
        .put_outbound_status(&id(3), &status(OutboundState::Delivered))
        .unwrap();
    store
        .insert_outbound(
            &outbound(50, 1, MessageKind::Request, 1),
            &OutboundStatus::queued(),
        )
        .unwrap();
    let (seen, _) = walk(&store, ListQuery::all(100));
    assert_eq!(seen.last(), Some(&(Way::Sent, id(50))));
    assert_eq!(store.message_counts(), counted_by_reading(&store));
    // Built once: the next open only settles.
    let store = reopen(store, dir.path()).await;
    assert!(!store.take_opened().built);
    assert_eq!(store.message_counts(), counted_by_reading(&store));
}

#[tokio::test]
async fn an_interrupted_building_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.listing.tree.clear().unwrap();
    write_without_listing(&store);
    // A crash after some summaries, before `built`.
    store
        .listing
        .add(&Summary::sent(
            &outbound(0, 1, MessageKind::Request, 1000),
            &status(OutboundState::Delivered),
        ))
        .unwrap();
    let store = reopen(store, dir.path()).await;
    assert!(store.take_opened().built);
    let (seen, _) = walk(&store, ListQuery::all(100));
    assert_eq!(seen.len(), 10, "no summary twice");
    assert_eq!(store.message_counts(), counted_by_reading(&store));
}

#[tokio::test]
async fn counts_and_pages_never_read_a_message_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store);
    let before = store.message_counts();
    // Damage every message record (bodies, envelopes): counting them, as
    // status and metrics once did, now fails.
    for tree in [&store.outbox, &store.inbox] {
        let keys: Vec<_> = tree
            .scan_prefix([b'm'])
            .keys()
            .map(|k| k.unwrap())
            .collect();
        for k in keys {
            tree.insert(k, vec![0xff; 10]).unwrap();
        }
    }
    assert!(store.outbound_all().all(|r| r.is_err()));
    assert!(store.inbound_all().all(|r| r.is_err()));
    assert_eq!(store.message_counts(), before);
    let (seen, _) = walk(&store, ListQuery::all(25));
    assert_eq!(seen.len(), 60);
}

#[test]
fn cursors_read_back_what_they_show_and_nothing_else() {
    let p = Position {
        at: 1_795_363_031_329,
        seq: 42,
    };
    assert_eq!(p.to_string(), "1795363031329.42");
    assert_eq!("1795363031329.42".parse::<Position>().unwrap(), p);
    for bad in [
        "",
        "1",
        "1.",
        ".1",
        "1.2.3",
        "a.1",
        "-1.2",
        "1.+2",
        "99999999999999999999.1",
        "1 .2",
    ] {
        assert!(bad.parse::<Position>().is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn cursors_beyond_either_end_give_empty_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    fill(&store);
    let far = Position {
        at: u64::MAX,
        seq: u64::MAX,
    };
    let zero = Position::default();
    for (newest_first, after, since) in [
        (false, far, None),
        (true, zero, None),
        // Newest first from before `since`: an empty range, read the
        // other way round.
        (true, zero, Some(Timestamp(1300))),
        (false, zero, Some(Timestamp(u64::MAX))),
    ] {
        let q = ListQuery {
            after: Some(after),
            since,
            newest_first,
            ..ListQuery::all(10)
        };
        let page = store.list(&q).unwrap();
        assert!(page.summaries.is_empty() && page.next.is_none(), "{q:?}");
    }
}
