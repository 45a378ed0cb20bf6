//! A pinned peer that misbehaves, against a real `comityd` on 127.0.0.1.
//!
//! The hostile peer H lives in this test process: its own identity, pinned
//! by node A, speaking QUIC to A with the node's own client configuration
//! and then saying whatever it likes on its streams. Meanwhile a
//! well-behaved node B keeps exchanging messages with A. A must answer
//! every bad envelope with a rejection (and record it), close a stream that
//! breaks the framing without reading or allocating what a length prefix
//! claims, keep serving everyone else, lose or change nothing it accepted,
//! and still stop cleanly on SIGTERM.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use comity_node::store::OutboundState;
use comity_node::transport::tls::SERVER_NAME;
use comity_node::transport::{wire, TlsIdentity};
use comity_protocol::envelope::{seal, Envelope, SealedEnvelope};
use comity_protocol::message::{Body, BusinessStatus, Reply, StatusUpdate, Thread};
use comity_protocol::receipt::Receipt;
use comity_protocol::session::{RejectReason, SessionFrame};
use comity_protocol::{Digest, Identity, MessageId, PeerKeys, Timestamp};
use comity_tests::peer::{answer, assert_closed_by_node, connect, stream, try_connect, ANSWER};
use comity_tests::{free_port, request_body, Snapshot, TestNode};
use quinn::Endpoint;
use rand::RngCore;
use tokio::runtime::Runtime;
use tokio::time::timeout;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");
const LONG: Duration = Duration::from_secs(30);
/// `handshake_timeout_secs` in the test configuration.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------- nodes

/// A and B pin each other; A also pins H (at an address nobody listens on:
/// H only dials). Both nodes are started.
fn setup() -> (TestNode, TestNode, Identity) {
    let h = Identity::generate(Timestamp::now());
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    let mut b = TestNode::new(COMITYD, "Attorney General of Borduria", "BO");
    a.pin(&b);
    b.pin(&a);
    a.pin_as(h.id(), free_port(), "Hostile", "HO");
    a.start();
    b.start();
    (a, b, h)
}

/// Ids accepted by each side of the well-behaved pair.
#[derive(Default)]
struct Traffic {
    b_to_a: Vec<String>,
    a_to_b: Vec<String>,
}

/// Keeps sending from `from` to `to` until `done` (and at least 10).
fn keep_sending(from: &TestNode, to: &TestNode, done: &AtomicBool) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < 10 || !done.load(Ordering::Relaxed) {
        ids.push(from.send(to, &format!("during the attack {}", ids.len())));
    }
    ids
}

/// Runs `attack` while A and B exchange messages in both directions, with
/// traffic delivered before it starts (`attack` gets the ids B sent then)
/// and more sent after it ends; waits until all of it is delivered.
fn under_attack<T>(
    a: &TestNode,
    b: &TestNode,
    attack: impl FnOnce(&[String]) -> T,
) -> (T, Traffic) {
    let mut t = Traffic {
        b_to_a: b.send_many(a, 20, 2),
        a_to_b: a.send_many(b, 20, 2),
    };
    b.wait_until(LONG, "B->A before the attack", || {
        b.outbox_count("delivered") == 20
    });
    a.wait_until(LONG, "A->B before the attack", || {
        a.outbox_count("delivered") == 20
    });

    let done = AtomicBool::new(false);
    /// Stops the senders however the attack ends (a failed assertion in it
    /// would otherwise leave the scope waiting for them forever).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let (result, during_b, during_a) = std::thread::scope(|s| {
        let tb = s.spawn(|| keep_sending(b, a, &done));
        let ta = s.spawn(|| keep_sending(a, b, &done));
        let result = {
            let _stop = Stop(&done);
            attack(&t.b_to_a)
        };
        (result, tb.join().unwrap(), ta.join().unwrap())
    });
    println!(
        "during the attack: {} B->A, {} A->B accepted",
        during_b.len(),
        during_a.len()
    );
    t.b_to_a.extend(during_b);
    t.a_to_b.extend(during_a);

    t.b_to_a.extend(b.send_many(a, 20, 2));
    t.a_to_b.extend(a.send_many(b, 20, 2));
    let (nb, na) = (t.b_to_a.len() as u64, t.a_to_b.len() as u64);
    b.wait_until(LONG, "all B->A delivered", || {
        b.outbox_count("delivered") == nb
    });
    a.wait_until(LONG, "all A->B delivered", || {
        a.outbox_count("delivered") == na
    });
    (result, t)
}

/// `to` holds exactly `ids` from `from`, each once and exactly as `from`
/// sealed it, and `from` holds a verified receipt for each.
fn assert_exchanged(
    from: &TestNode,
    from_snap: &Snapshot,
    to: &TestNode,
    to_snap: &Snapshot,
    ids: &[String],
) {
    let sent: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(sent.len(), ids.len());
    let received: Vec<String> = to_snap
        .inbound
        .iter()
        .filter(|m| m.sender == from.id)
        .map(|m| m.id.to_string())
        .collect();
    let received_set: BTreeSet<&str> = received.iter().map(String::as_str).collect();
    assert_eq!(received.len(), received_set.len(), "stored twice");
    assert_eq!(received_set, sent, "{} -> {}", from.name, to.name);
    let mut receipts = 0;
    for (msg, status) in &from_snap.outbound {
        if msg.peer != to.id {
            continue;
        }
        let held = to_snap
            .inbound
            .iter()
            .find(|m| m.sender == from.id && m.id == msg.id)
            .unwrap();
        assert_eq!(Some(held.digest), msg.digest, "{} changed", msg.id);
        assert_eq!(held.body, msg.body, "{} changed", msg.id);
        assert_eq!(status.state, OutboundState::Delivered, "{}", msg.id);
        let r = Receipt::from_bytes(status.receipt.as_ref().unwrap()).unwrap();
        r.verify(&from.id, &to.keys, &msg.id, &msg.digest.unwrap())
            .unwrap();
        receipts += 1;
    }
    assert_eq!(receipts, ids.len());
}

/// A survived: it answers its admin API and counts the rejections; on
/// SIGTERM both nodes exit 0; every message of the well-behaved pair is
/// held exactly once with its receipt; A holds exactly `from_h` from H,
/// with the digests of what was first accepted; A recorded exactly
/// `rejections` rejections, B none.
fn assert_survived(
    mut a: TestNode,
    mut b: TestNode,
    h: &Identity,
    traffic: &Traffic,
    from_h: &[(MessageId, Digest)],
    rejections: usize,
) {
    assert!(a.is_running(), "A died:\n{}", a.log());
    let info = a.get("/v1/node");
    assert_eq!(info["id"], a.id.to_string());
    assert_eq!(info["rejected"], rejections, "{info}");
    assert_eq!(
        a.inbox_count(),
        (traffic.b_to_a.len() + from_h.len()) as u64
    );

    let started = Instant::now();
    let status = a.sigterm();
    let stopping = started.elapsed();
    println!("A stopped in {:.2} s", stopping.as_secs_f64());
    assert!(status.success(), "A's exit status {status}:\n{}", a.log());
    assert!(
        stopping < Duration::from_secs(10),
        "A took {stopping:?} to stop"
    );
    assert!(b.sigterm().success());
    let (sa, sb) = (a.snapshot(), b.snapshot());
    assert_exchanged(&b, &sb, &a, &sa, &traffic.b_to_a);
    assert_exchanged(&a, &sa, &b, &sb, &traffic.a_to_b);

    let mut got: Vec<(MessageId, Digest)> = sa
        .inbound
        .iter()
        .filter(|m| m.sender == h.id())
        .map(|m| (m.id, m.digest))
        .collect();
    got.sort_by_key(|(id, _)| id.0);
    let mut want = from_h.to_vec();
    want.sort_by_key(|(id, _)| id.0);
    assert_eq!(got, want, "what A holds from H");
    assert_eq!(sa.rejections, rejections, "A's recorded rejections");
    assert_eq!(sb.rejections, 0);
    assert_eq!(sa.inbound.len(), traffic.b_to_a.len() + from_h.len());
}

// ---------------------------------------------------------- the attacker

fn sealed(
    from: &Identity,
    to: &PeerKeys,
    id: MessageId,
    at: Timestamp,
    subject: &str,
) -> SealedEnvelope {
    seal(from, to, id, at, &request_body(subject), &mut rand::rng()).unwrap()
}

fn envelope(bytes: Vec<u8>) -> Vec<u8> {
    SessionFrame::Envelope(bytes).to_wire().unwrap()
}

fn assert_rejected(frame: &SessionFrame, id: MessageId, reason: RejectReason) {
    match frame {
        SessionFrame::Rejected {
            id: got,
            reason: r,
            detail,
        } => {
            assert_eq!((*got, *r), (Some(id), reason), "{detail}");
            println!("rejected {reason}: {detail}");
        }
        other => panic!("expected a {reason} rejection of {id}, got {other:?}"),
    }
}

fn vm_peak_kib(node: &TestNode) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid().unwrap())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPeak:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// ---------------------------------------------------------------- tests

/// Envelopes H has no right to send, pipelined on one stream: each gets
/// its rejection, in order, between receipts for H's legitimate messages;
/// a duplicate gets the very same receipt; a reused id cannot replace what
/// was accepted.
#[test]
fn bad_envelopes_from_a_pinned_peer_are_rejected_and_change_nothing() {
    let (a, b, h) = setup();
    let rt = Runtime::new().unwrap();
    let stranger = Identity::generate(Timestamp::now());

    let (from_h, traffic) = under_attack(&a, &b, |b_ids| {
        rt.block_on(async {
            let (endpoint, conn) = connect(&h, &a).await;
            let (mut send, mut recv, a_keys) = stream(&conn, &h, a.id).await;
            assert_eq!(a_keys.cert(), a.keys.cert(), "A's hello carries its key");
            let now = Timestamp::now();

            let good = sealed(&h, &a_keys, MessageId::random(), now, "legitimate");
            let reused = sealed(&h, &a_keys, good.id, now, "same id, other content");
            let to_b = sealed(&h, &b.keys, MessageId::random(), now, "for Borduria");
            let not_h = sealed(&stranger, &a_keys, MessageId::random(), now, "not from H");
            let month_ago = now.saturating_sub(Duration::from_secs(30 * 86_400));
            let stale = sealed(&h, &a_keys, MessageId::random(), month_ago, "stale");
            let tomorrow = now.saturating_add(Duration::from_secs(86_400));
            let future = sealed(&h, &a_keys, MessageId::random(), tomorrow, "future");
            let mut junk = vec![0u8; 300];
            rand::rng().fill_bytes(&mut junk);
            let forged = sealed(&h, &a_keys, MessageId::random(), now, "forged");
            let mut e = Envelope::from_bytes(&forged.bytes).unwrap();
            e.signature[0] ^= 1;
            let forged_bytes = e.to_bytes().unwrap();
            let good2 = sealed(&h, &a_keys, MessageId::random(), now, "legitimate too");
            // The id of a message B sent A: it must not touch B's message.
            let b_id: MessageId = b_ids[0].parse().unwrap();
            let squat = sealed(&h, &a_keys, b_id, now, "an id B already used");

            // All written before any answer is read: A answers in order.
            let mut out = Vec::new();
            for bytes in [
                &good.bytes,
                &good.bytes,
                &reused.bytes,
                &to_b.bytes,
                &not_h.bytes,
                &stale.bytes,
                &future.bytes,
                &junk,
                &forged_bytes,
                &good2.bytes,
                &squat.bytes,
            ] {
                out.extend(envelope(bytes.clone()));
            }
            send.write_all(&out).await.unwrap();

            let receipt_of = |frame: SessionFrame, s: &SealedEnvelope| match frame {
                SessionFrame::Receipt(bytes) => {
                    Receipt::from_bytes(&bytes)
                        .unwrap()
                        .verify(&h.id(), &a_keys, &s.id, &s.digest)
                        .unwrap();
                    bytes
                }
                other => panic!("expected a receipt for {}, got {other:?}", s.id),
            };
            let first = receipt_of(answer(&mut recv).await, &good);
            let again = receipt_of(answer(&mut recv).await, &good);
            assert_eq!(again, first, "a duplicate gets the same receipt");
            assert_rejected(&answer(&mut recv).await, good.id, RejectReason::IdReused);
            assert_rejected(
                &answer(&mut recv).await,
                to_b.id,
                RejectReason::WrongRecipient,
            );
            assert_rejected(
                &answer(&mut recv).await,
                not_h.id,
                RejectReason::UnknownSender,
            );
            assert_rejected(&answer(&mut recv).await, stale.id, RejectReason::Stale);
            assert_rejected(
                &answer(&mut recv).await,
                future.id,
                RejectReason::FromFuture,
            );
            // Junk has no id to name.
            match answer(&mut recv).await {
                SessionFrame::Rejected {
                    id: None,
                    reason: RejectReason::Malformed,
                    ..
                } => {}
                other => panic!("junk: expected a rejection naming no id, got {other:?}"),
            }
            assert_rejected(
                &answer(&mut recv).await,
                forged.id,
                RejectReason::BadSignature,
            );
            receipt_of(answer(&mut recv).await, &good2);
            // Ids are per sender: H's message with B's id is H's own (a
            // rejection would do as well); B's message stays as it was
            // (checked in `assert_survived`).
            let mut from_h = vec![(good.id, good.digest), (good2.id, good2.digest)];
            match answer(&mut recv).await {
                SessionFrame::Receipt(bytes) => {
                    Receipt::from_bytes(&bytes)
                        .unwrap()
                        .verify(&h.id(), &a_keys, &squat.id, &squat.digest)
                        .unwrap();
                    from_h.push((squat.id, squat.digest));
                }
                SessionFrame::Rejected { id, reason, detail } => {
                    assert_eq!(id, Some(squat.id));
                    println!("an id B used: rejected {reason}: {detail}");
                }
                other => panic!("unexpected answer {other:?}"),
            }

            // Later, on a new connection, the same bytes: the same receipt.
            send.finish().unwrap();
            assert_closed_by_node(&mut recv, "the end of H's stream").await;
            conn.close(0u32.into(), b"done");
            let conn = try_connect(&endpoint, &h, &a).await.unwrap();
            let (mut send, mut recv, _) = stream(&conn, &h, a.id).await;
            send.write_all(&envelope(good.bytes.clone())).await.unwrap();
            let later = receipt_of(answer(&mut recv).await, &good);
            assert_eq!(later, first, "a duplicate gets the same receipt, later too");
            conn.close(0u32.into(), b"done");
            endpoint.wait_idle().await;
            from_h
        })
    });
    // IdReused, WrongRecipient, UnknownSender, Stale, FromFuture, Malformed,
    // BadSignature; and B's id, if A refused it.
    let rejections = 7 + (3 - from_h.len());
    assert_survived(a, b, &h, &traffic, &from_h, rejections);
}

/// Streams that break the session protocol: garbage frames, a length
/// prefix of 1 GiB, frames of the wrong type, no hello, a forged hello, a
/// stream that never finishes its hello, more connections than allowed.
/// A closes each offending stream (or connection) alone: H's connection
/// keeps working, and so does everyone else's.
#[test]
fn a_pinned_peer_breaking_the_stream_protocol_loses_only_its_stream() {
    let (a, b, h) = setup();
    let rt = Runtime::new().unwrap();

    let ((from_h, _still_open), traffic) = under_attack(&a, &b, |_| {
        rt.block_on(async {
            let (endpoint, conn) = connect(&h, &a).await;

            // Half a length prefix, then silence: A gives up on the hello
            // after its handshake timeout. Checked at the end.
            let (mut silent_send, mut silent_recv) = conn.open_bi().await.unwrap();
            silent_send.write_all(&[0, 0]).await.unwrap();
            let silent_since = Instant::now();

            // A frame of the announced length whose bytes are garbage.
            let (mut send, mut recv, a_keys) = stream(&conn, &h, a.id).await;
            let mut garbage = 200u32.to_be_bytes().to_vec();
            garbage.extend((0..200).map(|_| rand::random::<u8>()));
            send.write_all(&garbage).await.unwrap();
            assert_closed_by_node(&mut recv, "a garbage frame").await;

            // A length prefix claiming 1 GiB, then a little: refused on the
            // prefix alone (A closes without waiting for the rest) and
            // without reserving the memory.
            let peak_before = vm_peak_kib(&a);
            let (mut send, mut recv, _) = stream(&conn, &h, a.id).await;
            let mut huge = (1u32 << 30).to_be_bytes().to_vec();
            huge.extend(vec![0x5a; 64 * 1024]);
            let _ = send.write_all(&huge).await; // A may stop reading first
            assert_closed_by_node(&mut recv, "a 1 GiB length prefix").await;
            let grown_mib = vm_peak_kib(&a).saturating_sub(peak_before) / 1024;
            println!("A's peak virtual memory grew by {grown_mib} MiB");
            let claim = "input is 1073741824 bytes, more than the limit";
            assert!(
                a.log().contains(claim),
                "{}",
                comity_tests::tail(&a.log(), 20)
            );
            assert!(
                grown_mib < 512,
                "A reserved {grown_mib} MiB for a 1 GiB claim"
            );

            // A frame that is not A's to receive on this stream.
            let (mut send, mut recv, _) = stream(&conn, &h, a.id).await;
            let receipt_frame = SessionFrame::Receipt(vec![7; 40]).to_wire().unwrap();
            send.write_all(&receipt_frame).await.unwrap();
            assert_closed_by_node(&mut recv, "a receipt frame from the client").await;

            // An envelope before any hello: no hello from A, no receipt.
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            let early = sealed(
                &h,
                &a_keys,
                MessageId::random(),
                Timestamp::now(),
                "too early",
            );
            send.write_all(&envelope(early.bytes)).await.unwrap();
            assert_closed_by_node(&mut recv, "an envelope instead of a hello").await;

            // A hello whose encryption key H's identity did not sign.
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            let mut cert = h.encryption_cert().clone();
            cert.public_key = *stranger_key();
            wire::write_frame(&mut send, &SessionFrame::Hello { cert })
                .await
                .unwrap();
            assert_closed_by_node(&mut recv, "a hello with a forged key").await;

            // After all that, the connection still carries messages.
            let (mut send, mut recv, _) = stream(&conn, &h, a.id).await;
            let fine = sealed(
                &h,
                &a_keys,
                MessageId::random(),
                Timestamp::now(),
                "still fine",
            );
            send.write_all(&envelope(fine.bytes.clone())).await.unwrap();
            match answer(&mut recv).await {
                SessionFrame::Receipt(r) => Receipt::from_bytes(&r)
                    .unwrap()
                    .verify(&h.id(), &a_keys, &fine.id, &fine.digest)
                    .unwrap(),
                other => panic!("expected a receipt, got {other:?}"),
            }

            // Connections: two per peer (the default); a third is closed.
            let second = try_connect(&endpoint, &h, &a).await.unwrap();
            let _ = stream(&second, &h, a.id).await; // A is serving it
            let third = try_connect(&endpoint, &h, &a).await.unwrap();
            match timeout(ANSWER, third.closed()).await {
                Ok(quinn::ConnectionError::ApplicationClosed(c)) => {
                    assert_eq!(c.reason.as_ref(), b"too many connections", "{c:?}");
                }
                Ok(other) => panic!("third connection ended otherwise: {other}"),
                Err(_) => panic!("A accepted a third connection from one peer"),
            }

            // The silent stream was dropped after the handshake timeout.
            assert_closed_by_node(&mut silent_recv, "half a hello").await;
            let waited = silent_since.elapsed();
            println!("silent stream closed after {:.2} s", waited.as_secs_f64());
            assert!(waited >= HANDSHAKE_TIMEOUT - Duration::from_millis(500));
            drop(silent_send);

            // H leaves its connections open, one stream in the middle of a
            // 1 MiB frame: A must still stop promptly and cleanly.
            let (mut send, recv, _) = stream(&conn, &h, a.id).await;
            let mut partial = (1u32 << 20).to_be_bytes().to_vec();
            partial.extend([0x5a; 100]);
            send.write_all(&partial).await.unwrap();
            let kept = (endpoint, conn, second, send, recv);
            (vec![(fine.id, fine.digest)], kept)
        })
    });
    // Recorded: garbage frame, 1 GiB prefix, receipt frame from the
    // client, envelope before any hello, forged hello, and the stream that
    // stalled inside its first length prefix (no hello in time).
    assert_survived(a, b, &h, &traffic, &from_h, 6);
}

/// An X25519 public key that H's identity never signed.
fn stranger_key() -> &'static [u8; 32] {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        Identity::generate(Timestamp::now())
            .encryption_cert()
            .public_key
    })
}

/// GAP (bad input policy: "timeouts"): once A has read a frame's length
/// prefix it waits for the rest with no deadline, and H's keep-alives stop
/// the connection's idle timeout from ever firing. A pinned peer can so
/// hold every stream it may open (2 connections × 16 streams by default),
/// each with a buffer of up to `max_message_bytes` that A allocated from
/// the prefix and filled with what H sent, for as long as it likes.
/// Expected: a frame that stops arriving is dropped after a bounded time
/// (here: within the idle timeout, 5 s, plus a margin).
#[test]
fn a_frame_that_stops_arriving_is_dropped_after_a_timeout() {
    let (a, _b, h) = setup();
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = connect(&h, &a).await;
        let (mut send, mut recv, _) = stream(&conn, &h, a.id).await;
        let mut partial = (1u32 << 20).to_be_bytes().to_vec();
        partial.extend([0x5a; 100]);
        send.write_all(&partial).await.unwrap();
        let started = Instant::now();
        match timeout(
            Duration::from_secs(10),
            wire::read_frame(&mut recv, 1 << 20, std::time::Duration::from_secs(10)),
        )
        .await
        {
            Err(_) => panic!("A still waits for the rest of the frame after 10 s"),
            Ok(Ok(Some(f))) => panic!("A answered half a frame with {f:?}"),
            Ok(Ok(None) | Err(_)) => {
                println!("dropped after {:.1} s", started.elapsed().as_secs_f64());
            }
        }
    });
}

/// Bytes under `dir`, all files.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// A pinned peer writes junk envelope frames as fast as it can: A records
/// the first ones (its budget), then only counts, closes H's connections
/// and refuses new ones for the back-off, while B's messages keep flowing.
#[test]
fn a_pinned_peer_flooding_junk_costs_it_its_sessions_not_our_disk() {
    let (a, b, h) = setup();
    a.send_many(&b, 5, 1);
    a.wait_until(LONG, "a first exchange", || {
        a.outbox_count("delivered") == 5
    });
    let entries_before = a.get("/v1/node")["audit"]["entries"].as_u64().unwrap();
    let rejected_before = a.get("/v1/node")["rejected"].as_u64().unwrap();
    let data = a.dir().join("data");
    let bytes_before = dir_bytes(&data);

    let junk = envelope(vec![0x5a; 5]);
    let done = AtomicBool::new(false);
    let (offered, latencies) = std::thread::scope(|s| {
        // B sends to A meanwhile; each message's time to its receipt.
        let latencies = s.spawn(|| {
            let mut l = Vec::new();
            while !done.load(Ordering::Relaxed) || l.len() < 10 {
                let sent = Instant::now();
                let id = b.send(&a, "during the flood");
                b.wait_until(LONG, "delivery during the flood", || {
                    b.get(&format!("/v1/messages/{id}"))["state"] == "delivered"
                });
                l.push(sent.elapsed());
            }
            l
        });
        let rt = Runtime::new().unwrap();
        let offered = rt.block_on(async {
            let endpoint = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
            let mut offered = 0u64;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
            'attack: while tokio::time::Instant::now() < deadline {
                let Ok(conn) = try_connect(&endpoint, &h, &a).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let Ok((mut send, _recv)) = conn.open_bi().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let hello = SessionFrame::Hello {
                    cert: h.encryption_cert().clone(),
                };
                if wire::write_frame(&mut send, &hello).await.is_err() {
                    continue;
                }
                let batch: Vec<u8> = junk
                    .iter()
                    .copied()
                    .cycle()
                    .take(junk.len() * 1000)
                    .collect();
                while offered < 100_000 {
                    if send.write_all(&batch).await.is_err() {
                        continue 'attack;
                    }
                    offered += 1000;
                }
                // Hold the connection while A reads what it was sent.
                let _ = tokio::time::timeout_at(deadline, conn.closed()).await;
            }
            offered
        });
        done.store(true, Ordering::Relaxed);
        (offered, latencies.join().unwrap())
    });
    // Let A work through whatever of the flood it took in.
    let settle = Instant::now() + Duration::from_secs(20);
    let mut last = u64::MAX;
    while Instant::now() < settle {
        let now = a.get("/v1/node")["rejected"].as_u64().unwrap();
        if now == last {
            break;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(500));
    }
    let rejected = a.get("/v1/node")["rejected"].as_u64().unwrap() - rejected_before;
    let h_status = a
        .get("/v1/peers")
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == h.id().to_string())
        .cloned()
        .unwrap();
    let entries = a.get("/v1/node")["audit"]["entries"].as_u64().unwrap() - entries_before;
    let grown = dir_bytes(&data).saturating_sub(bytes_before);
    let mut ms: Vec<u128> = latencies.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    println!(
        "junk frames written by H: {offered}; A: {rejected} rejections recorded, {} suppressed, over budget: {}, +{entries} audit entries (B's traffic included), +{} KiB in its data dir; B->A during the flood: {} messages, latency p50 {} ms, max {} ms",
        h_status["rejections_suppressed"],
        h_status["over_budget"],
        grown / 1024,
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
    assert!(h_status["rejections_suppressed"].as_u64().unwrap() > 0);
    assert_eq!(h_status["over_budget"], true);
    // The default budget: 100 rejections recorded an hour.
    assert!(rejected <= 100, "{rejected} rejections recorded");
    assert!(
        entries < 200 + 5 * ms.len() as u64,
        "{entries} audit entries"
    );
    assert!(grown < 5 << 20, "data dir grew by {grown} bytes");
}

/// A pinned peer H reuses the id of B's request to A: its message is its
/// own, kept apart, and cannot touch B's — its withdrawal goes into its own
/// history, A answers B's request by naming it `BO/ID`, and a reply from H
/// about B's request is refused.
#[test]
fn a_message_is_named_by_its_peer_as_well_as_its_id() {
    let (a, b, h) = setup();
    let x = b.send(&a, "Bank records of Example Holdings");
    b.wait_until(LONG, "B's request delivered", || {
        b.get(&format!("/v1/messages/{x}"))["state"] == "delivered"
    });
    let x_id: MessageId = x.parse().unwrap();
    // A's own request to H (H only dials: it stays queued at A).
    let y = a
        .client()
        .post(
            "/v1/messages",
            &serde_json::json!({"to": "HO", "body": request_body("A's request to H")}),
        )
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let y_id: MessageId = y.parse().unwrap();
    let rt = Runtime::new().unwrap();
    rt.block_on(async {
        let (_endpoint, conn) = connect(&h, &a).await;
        let (mut send, mut recv, a_keys) = stream(&conn, &h, a.id).await;
        let now = Timestamp::now();
        // H reuses the id of A's message to H itself.
        let mirror = sealed(&h, &a_keys, y_id, now, "H's own, under A's id");
        send.write_all(&envelope(mirror.bytes)).await.unwrap();
        assert!(matches!(answer(&mut recv).await, SessionFrame::Receipt(_)));
        // H's own request under B's id: accepted, not refused (a refusal
        // would tell H which ids exist).
        let squat = sealed(&h, &a_keys, x_id, now, "H's own request");
        send.write_all(&envelope(squat.bytes.clone()))
            .await
            .unwrap();
        assert!(matches!(answer(&mut recv).await, SessionFrame::Receipt(_)));
        // H withdraws its own X.
        let withdraw = seal(
            &h,
            &a_keys,
            MessageId::random(),
            now,
            &Body::StatusUpdate(StatusUpdate {
                regarding: x_id,
                status: BusinessStatus::Withdrawn,
                note: None,
            }),
            &mut rand::rng(),
        )
        .unwrap();
        send.write_all(&envelope(withdraw.bytes)).await.unwrap();
        assert!(matches!(answer(&mut recv).await, SessionFrame::Receipt(_)));
        // A reply from H about B's request is not H's to send.
        let reply = seal(
            &h,
            &a_keys,
            MessageId::random(),
            now,
            &Body::Reply(Reply {
                in_reply_to: x_id,
                subject: "Results".into(),
                body: "Forged results".into(),
                partial: false,
                thread: Thread::default(),
            }),
            &mut rand::rng(),
        )
        .unwrap();
        send.write_all(&envelope(reply.bytes.clone()))
            .await
            .unwrap();
        match answer(&mut recv).await {
            SessionFrame::Rejected {
                reason: RejectReason::Invalid,
                detail,
                ..
            } => println!("H's reply about B's request: refused: {detail}"),
            other => panic!("H's reply about B's request was not refused: {other:?}"),
        }
    });

    // The id alone is ambiguous; each peer's message is found by its peer.
    let client = a.client();
    let err = client.get(&format!("/v1/messages/{x}")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&b.id.to_string()) && text.contains(&h.id().to_string()),
        "{text}"
    );
    let of_b = a.get(&format!("/v1/messages/{x}?peer=BO"));
    assert_eq!(of_b["peer"], b.id.to_string());
    assert_eq!(of_b["history"].as_array().unwrap().len(), 0, "{of_b}");
    let of_h = a.get(&format!("/v1/messages/{}%2F{x}", h.id()));
    assert_eq!(of_h["history"][0]["status"]["status"], "withdrawn");

    // Even peer and id name two here; the way tells them apart.
    let err = client
        .get(&format!("/v1/messages/{y}?peer=HO"))
        .unwrap_err();
    assert!(
        err.to_string().contains("(sent)") && err.to_string().contains("(received)"),
        "{err}"
    );
    let ours = a.get(&format!("/v1/messages/{y}?peer=HO&way=sent"));
    assert_eq!(ours["direction"], "outbound");
    let theirs = a.get(&format!("/v1/messages/{y}?peer=HO&way=received"));
    assert_eq!(theirs["direction"], "inbound");

    // A registers and answers B's request, named BO/ID.
    client
        .post(
            &format!("/v1/messages/{x}/status?peer=BO"),
            &serde_json::json!({"status": {"status": "registered", "reference": "AR-1"}}),
        )
        .unwrap();
    let reply = client
        .post(
            &format!("/v1/messages/{x}/reply?peer=BO"),
            &serde_json::json!({"subject": "Statements", "body": "Attached."}),
        )
        .unwrap();
    let reply_id = reply["id"].as_str().unwrap().to_string();
    a.wait_until(LONG, "the reply delivered to B", || {
        a.get(&format!("/v1/messages/{reply_id}"))["peer"] == b.id.to_string()
            && a.get(&format!("/v1/messages/{reply_id}"))["state"] == "delivered"
    });
    b.wait_until(LONG, "B sees A's registration", || {
        b.get(&format!("/v1/messages/{x}"))["history"]
            .as_array()
            .is_some_and(|h| h.len() == 1)
    });
}

/// Session protocol 3 beside 2. A dialler offering only `comity/2` (a node
/// of the earlier version) is served as before. On `comity/3`, a
/// `ResentEnvelope` whose notice its sender did not sign is refused
/// (`BadSignature`) and links nothing; one it signed is received and A
/// records which earlier message it resends.
#[test]
fn a_version_2_dialler_is_served_and_a_resend_notice_must_be_signed_by_its_sender() {
    use comity_node::transport::tls::{alpn_of, client_tls};
    use comity_protocol::resend::ResendStatement;

    let (a, _b, h) = setup();
    let rt = Runtime::new().unwrap();
    let stranger = Identity::generate(Timestamp::now());
    let original = MessageId::random();
    let (forged, signed) = rt.block_on(async {
        let endpoint = Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let mut tls = client_tls(&TlsIdentity::new(&h).unwrap(), a.id).unwrap();
        tls.alpn_protocols = vec![b"comity/2".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let old = quinn::ClientConfig::new(std::sync::Arc::new(crypto));
        let addr = SocketAddr::from(([127, 0, 0, 1], a.port));
        let conn = timeout(
            ANSWER,
            endpoint.connect_with(old, addr, SERVER_NAME).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(alpn_of(&conn).as_deref(), Some(&b"comity/2"[..]));
        let (mut send, mut recv, a_keys) = stream(&conn, &h, a.id).await;
        let m = sealed(&h, &a_keys, MessageId::random(), Timestamp::now(), "v2");
        send.write_all(&envelope(m.bytes.clone())).await.unwrap();
        assert!(
            matches!(answer(&mut recv).await, SessionFrame::Receipt(_)),
            "a version-2 dialler's envelope is received"
        );

        let (_endpoint, conn) = connect(&h, &a).await;
        // The newest version (5) carries everything 3 does.
        assert_eq!(alpn_of(&conn).as_deref(), Some(&b"comity/5"[..]));
        let (mut send, mut recv, a_keys) = stream(&conn, &h, a.id).await;
        let resent = |m: &SealedEnvelope, by: &Identity| SessionFrame::ResentEnvelope {
            envelope: m.bytes.clone(),
            original,
            signature: ResendStatement {
                sender: h.id(),
                recipient: a.id,
                message_id: m.id,
                envelope_digest: m.digest,
                original,
            }
            .sign(by)
            .unwrap(),
        };
        let now = Timestamp::now();
        let forged = sealed(&h, &a_keys, MessageId::random(), now, "resent, badly");
        let signed = sealed(&h, &a_keys, MessageId::random(), now, "resent");
        for f in [resent(&forged, &stranger), resent(&signed, &h)] {
            send.write_all(&f.to_wire().unwrap()).await.unwrap();
        }
        assert_rejected(
            &answer(&mut recv).await,
            forged.id,
            RejectReason::BadSignature,
        );
        assert!(matches!(answer(&mut recv).await, SessionFrame::Receipt(_)));
        (forged.id, signed.id)
    });
    let shown = a.get(&format!("/v1/messages/{signed}"));
    assert_eq!(shown["resend_of"], original.to_string().as_str(), "{shown}");
    let r = a
        .client()
        .request("GET", &format!("/v1/messages/{forged}"), None)
        .unwrap();
    assert_eq!(
        r.status,
        404,
        "the refused envelope was kept: {}",
        r.value()
    );
}
