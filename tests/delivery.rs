//! Reliable exactly-once delivery between real `comityd` processes on
//! 127.0.0.1, through restarts, `kill -9` and SIGTERM.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use comity_node::store::OutboundState;
use comity_protocol::receipt::Receipt;
use comity_tests::{Snapshot, TestNode};

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");
const LONG: Duration = Duration::from_secs(60);

fn pair() -> (TestNode, TestNode) {
    let a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let b = TestNode::new(COMITYD, "Attorney General of Borduria", "BO");
    a.pin(&b);
    b.pin(&a);
    (a, b)
}

/// Every id sent by `from` is in `to`'s inbox exactly once, nothing else
/// from `from` is there, and `from` holds a receipt for each that verifies
/// against `to`'s key and the envelope it sent.
fn assert_exactly_once(
    from: &TestNode,
    from_snap: &Snapshot,
    to: &TestNode,
    to_snap: &Snapshot,
    ids: &[String],
) {
    let sent: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(sent.len(), ids.len(), "the API returned duplicate ids");
    let received: Vec<String> = to_snap
        .inbound
        .iter()
        .filter(|m| m.sender == from.id)
        .map(|m| m.id.to_string())
        .collect();
    let received_set: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(
        received.len(),
        received_set.len(),
        "a message was stored twice"
    );
    let missing: Vec<_> = sent.difference(&received_set).take(5).collect();
    let extra: Vec<_> = received_set.difference(&sent).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );

    let mut receipts = 0;
    for (msg, status) in &from_snap.outbound {
        if msg.peer != to.id || !sent.contains(&msg.id.to_string()) {
            continue;
        }
        assert_eq!(
            status.state,
            OutboundState::Delivered,
            "{} not delivered",
            msg.id
        );
        let receipt = Receipt::from_bytes(status.receipt.as_ref().expect("receipt held")).unwrap();
        receipt
            .verify(&from.id, &to.keys, &msg.id, &msg.digest.expect("sealed"))
            .unwrap();
        receipts += 1;
    }
    assert_eq!(receipts, ids.len());
}

#[test]
fn two_nodes_exchange_1000_messages_each_way_at_once() {
    let (mut a, mut b) = pair();
    a.start();
    b.start();
    let started = Instant::now();
    let (a_ids, b_ids) = std::thread::scope(|s| {
        let ab = s.spawn(|| a.send_many(&b, 1000, 4));
        let ba = s.spawn(|| b.send_many(&a, 1000, 4));
        (ab.join().unwrap(), ba.join().unwrap())
    });
    let accepted = started.elapsed();
    a.wait_until(LONG, "1000 delivered A->B", || {
        a.outbox_count("delivered") == 1000
    });
    b.wait_until(LONG, "1000 delivered B->A", || {
        b.outbox_count("delivered") == 1000
    });
    let all = started.elapsed();
    println!(
        "2000 messages (1000 each way): accepted in {:.2} s, all receipts durable after {:.2} s ({:.0} msg/s)",
        accepted.as_secs_f64(),
        all.as_secs_f64(),
        2000.0 / all.as_secs_f64()
    );
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert_exactly_once(&a, &sa, &b, &sb, &a_ids);
    assert_exactly_once(&b, &sb, &a, &sa, &b_ids);
    assert_eq!(sa.rejections + sb.rejections, 0);
}

#[test]
fn messages_queue_while_the_receiver_is_down_and_flow_when_it_starts() {
    let (mut a, mut b) = pair();
    a.start();
    let ids = a.send_many(&b, 200, 2);
    // Nothing can be delivered; the operator sees why.
    a.wait_until(LONG, "the connection error on pending messages", || {
        a.get("/v1/messages?box=outbox")[0]["last_error"].is_string()
    });
    for m in a.get("/v1/messages?box=outbox").as_array().unwrap() {
        assert_eq!(m["state"], "queued", "{m}");
    }
    assert_eq!(a.outbox_count("delivered"), 0);

    b.start();
    a.wait_until(LONG, "200 delivered", || a.outbox_count("delivered") == 200);
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
    assert_exactly_once(&a, &a.snapshot(), &b, &b.snapshot(), &ids);
}

#[test]
fn kill9_of_the_receiver_with_1000_in_flight_loses_and_duplicates_nothing() {
    let (mut a, mut b) = pair();
    a.start();
    // Queue 1000 first so that they leave in one burst when B appears.
    let ids = a.send_many(&b, 1000, 4);
    b.start();
    b.wait_until(LONG, "first messages received", || b.inbox_count() > 0);
    let delivered_before = a.outbox_count("delivered");
    b.kill9();
    println!("killed the receiver with {delivered_before}/1000 receipts at the sender");
    assert!(
        delivered_before < 1000,
        "the burst finished before the kill; test proves nothing"
    );

    b.start();
    a.wait_until(LONG, "1000 delivered after restart", || {
        a.outbox_count("delivered") == 1000
    });
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
    assert_exactly_once(&a, &a.snapshot(), &b, &b.snapshot(), &ids);
}

#[test]
fn kill9_of_the_sender_with_messages_queued_loses_nothing() {
    let (mut a, mut b) = pair();
    a.start();
    let ids = a.send_many(&b, 500, 4);
    a.kill9();
    b.start();
    a.start();
    a.wait_until(LONG, "500 delivered after restart", || {
        a.outbox_count("delivered") == 500
    });
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
    assert_exactly_once(&a, &a.snapshot(), &b, &b.snapshot(), &ids);
}

#[test]
fn sigterm_during_traffic_exits_0_and_loses_or_duplicates_nothing() {
    let (mut a, mut b) = pair();
    a.start();
    let ids = a.send_many(&b, 1000, 4);
    b.start();
    b.wait_until(LONG, "first messages received", || b.inbox_count() > 0);
    let status = b.sigterm();
    assert!(status.success(), "receiver exit status {status}");
    b.start();
    b.wait_until(LONG, "more messages received", || b.inbox_count() > 0);
    let status = a.sigterm();
    assert!(status.success(), "sender exit status {status}");
    a.start();
    a.wait_until(LONG, "1000 delivered", || {
        a.outbox_count("delivered") == 1000
    });
    assert!(a.sigterm().success());
    assert!(b.sigterm().success());
    assert_exactly_once(&a, &a.snapshot(), &b, &b.snapshot(), &ids);
}
