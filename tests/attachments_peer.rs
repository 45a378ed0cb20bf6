//! Attachments from a pinned peer played by this test process (H) to a
//! real `comityd` (A) on 127.0.0.1, frame by frame: A holds the envelope
//! and asks for the attachments instead of receipting it; it takes each on
//! a stream of its own, verifies every chunk before it is written, resumes
//! where its copy is durable (after a broken stream and after kill -9),
//! refuses what does not belong, and receipts the message only once every
//! attachment is complete.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use comity_node::attachments::{PlaintextReader, StoredAttachment};
use comity_node::transport::wire;
use comity_protocol::attachment::{
    check_attachments, AttachmentLimits, ChunkTable, SealedAttachment, SealedChunk, Sealer,
};
use comity_protocol::envelope::{seal_with_attachments, SealedEnvelope};
use comity_protocol::receipt::Receipt;
use comity_protocol::session::{AttachmentRefusal, RejectReason, SessionFrame};
use comity_protocol::{Identity, MessageId, PeerKeys, Timestamp};
use comity_tests::peer::{answer, assert_closed_by_node, connect, stream};
use comity_tests::tmpfs::Tmpfs;
use comity_tests::{free_port, request_body, test_settings, Settings, TestNode};
use quinn::{Connection, RecvStream, SendStream};
use rand::RngCore;
use tokio::runtime::Runtime;

const COMITYD: &str = env!("CARGO_BIN_EXE_comityd");

/// A, with H pinned (H only dials), started.
fn node_with_hostile(limits: &str) -> (TestNode, Identity) {
    let h = Identity::generate(Timestamp::now());
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    a.pin_as(h.id(), free_port(), "Hostile", "HO");
    if !limits.is_empty() {
        let path = a.config_path().to_path_buf();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = if text.contains("[limits]\n") {
            text.replacen("[limits]\n", &format!("[limits]\n{limits}\n"), 1)
        } else {
            format!("{text}\n[limits]\n{limits}\n")
        };
        std::fs::write(&path, text).unwrap();
    }
    a.start();
    (a, h)
}

/// A file of `len` random bytes, sealed as H's node would when copying it
/// in: its manifest and key, and its ciphertext chunks.
struct File {
    plain: Vec<u8>,
    sealed: SealedAttachment,
    chunks: Vec<SealedChunk>,
}

impl File {
    fn new(name: &str, len: usize) -> File {
        let mut plain = vec![0u8; len];
        rand::rng().fill_bytes(&mut plain);
        let mut s = Sealer::new(
            name,
            "application/octet-stream",
            len as u64,
            &AttachmentLimits::ceiling(),
            &mut rand::rng(),
        )
        .unwrap();
        let mut chunks = Vec::new();
        let mut at = 0;
        while let Some((_, n)) = s.next_chunk() {
            chunks.push(s.seal_chunk(plain[at..at + n].to_vec()).unwrap());
            at += n;
        }
        File {
            plain,
            sealed: s.finish().unwrap(),
            chunks,
        }
    }

    fn table(&self) -> Vec<u8> {
        ChunkTable::encode(&self.chunks.iter().map(|c| c.leaf).collect::<Vec<_>>())
    }

    fn chunk(&self, i: usize) -> SessionFrame {
        SessionFrame::AttachmentChunk {
            index: i as u64,
            bytes: self.chunks[i].ciphertext.clone(),
        }
    }
}

fn sealed_request(h: &Identity, a: &PeerKeys, id: MessageId, files: &[&File]) -> SealedEnvelope {
    let attachments: Vec<SealedAttachment> = files.iter().map(|f| f.sealed.clone()).collect();
    seal_with_attachments(
        h,
        a,
        id,
        Timestamp::now(),
        &request_body("Bank records with their statements attached"),
        &attachments,
        &AttachmentLimits::ceiling(),
        &mut rand::rng(),
    )
    .unwrap()
}

async fn send(s: &mut SendStream, frame: &SessionFrame) {
    wire::write_frame(s, frame).await.unwrap();
}

/// Sends the envelope on the session stream and returns A's answer.
async fn offer_envelope(
    s: &mut SendStream,
    r: &mut RecvStream,
    env: &SealedEnvelope,
) -> SessionFrame {
    send(s, &SessionFrame::Envelope(env.bytes.clone())).await;
    answer(r).await
}

fn wanted(frame: &SessionFrame, id: MessageId) -> Vec<u64> {
    match frame {
        SessionFrame::AttachmentsWanted { id: got, next } if *got == id => next.clone(),
        other => panic!("expected AttachmentsWanted for {id}, got {other:?}"),
    }
}

/// Opens an attachment stream offering attachment `index` of `id`; A's
/// first answer.
async fn offer(
    conn: &Connection,
    id: MessageId,
    index: u32,
) -> (SendStream, RecvStream, SessionFrame) {
    let (mut s, mut r) = conn.open_bi().await.unwrap();
    send(&mut s, &SessionFrame::AttachmentOffer { id, index }).await;
    let first = answer(&mut r).await;
    (s, r, first)
}

fn assert_refused(frame: &SessionFrame, reason: AttachmentRefusal, next: u64) {
    match frame {
        SessionFrame::AttachmentRefused {
            reason: r,
            next: n,
            detail,
        } => {
            assert_eq!((*r, *n), (reason, next), "{detail}");
            println!("refused {reason} at {next}: {detail}");
        }
        other => panic!("expected refusal {reason} at {next}, got {other:?}"),
    }
}

/// Asks A (with the envelope again) until attachment `index` resumes at
/// `at`: A writes chunks in order, each durable before the next is read.
async fn wait_for_next(
    s: &mut SendStream,
    r: &mut RecvStream,
    env: &SealedEnvelope,
    index: usize,
    at: u64,
) -> Vec<u64> {
    let id = env_id(env);
    for _ in 0..50 {
        let next = wanted(&offer_envelope(s, r, env).await, id);
        if next[index] == at {
            return next;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("attachment {index} never resumed at {at}");
}

fn env_id(env: &SealedEnvelope) -> MessageId {
    comity_protocol::envelope::Envelope::from_bytes(&env.bytes)
        .unwrap()
        .header
        .id
}

/// A's copy of attachment `index`, decrypted and verified as retrieval
/// reads it.
fn read_back(a: &TestNode, h: &Identity, id: MessageId, index: usize, file: &File) -> Vec<u8> {
    let path = a
        .dir()
        .join("data/attachments/received")
        .join(hex(&h.id().0))
        .join(hex(&id.0))
        .join(index.to_string());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
    let checked = check_attachments(
        comity_protocol::message::MessageKind::Request,
        vec![file.sealed.clone()],
        &AttachmentLimits::ceiling(),
    )
    .unwrap();
    let stored = StoredAttachment::open(&path, &file.sealed.manifest).unwrap();
    let mut reader = PlaintextReader::new(stored, &checked[0]).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut out).unwrap();
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn attachments_arrive_before_the_receipt_and_resume_where_they_were_durable() {
    let (mut a, h) = node_with_hostile("");
    let rt = Runtime::new().unwrap();
    // 3 MiB in 64 KiB chunks (48), and a small annex.
    let big = File::new("statements.bin", 3 << 20);
    let annex = File::new("annex.txt", 10);
    assert_eq!(big.chunks.len(), 48);
    let id = MessageId::random();
    let env = rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        let env = sealed_request(&h, &keys, id, &[&big, &annex]);
        // Held, not receipted: both wanted from the start, twice alike.
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env).await, id),
            vec![0, 0]
        );
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env).await, id),
            vec![0, 0]
        );

        // The big one: table and 20 chunks, then the stream breaks off.
        let (mut as_, mut ar, first) = offer(&conn, id, 0).await;
        assert_eq!(
            first,
            SessionFrame::AttachmentFrom {
                from_chunk: 0,
                table: true
            }
        );
        send(&mut as_, &SessionFrame::AttachmentTable(big.table())).await;
        for i in 0..20 {
            send(&mut as_, &big.chunk(i)).await;
        }
        as_.finish().unwrap();
        assert_closed_by_node(&mut ar, "a stream that ended early").await;
        wait_for_next(&mut s, &mut r, &env, 0, 20).await;
        env
    });
    assert_eq!(
        a.inbox_count(),
        0,
        "nothing received before its attachments"
    );

    // kill -9 of A: what was durable is where it resumes.
    a.kill9();
    a.start();
    rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, _) = stream(&conn, &h, a.id).await;
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env).await, id),
            vec![20, 0]
        );

        // Out of order, a chunk of the other attachment, a corrupted one:
        // each refused, nothing kept, the point unchanged.
        let (mut as_, mut ar, first) = offer(&conn, id, 0).await;
        assert_eq!(
            first,
            SessionFrame::AttachmentFrom {
                from_chunk: 20,
                table: false
            }
        );
        send(&mut as_, &big.chunk(21)).await;
        assert_refused(&answer(&mut ar).await, AttachmentRefusal::BadChunk, 20);

        let (mut as_, mut ar, _) = offer(&conn, id, 0).await;
        let foreign = SessionFrame::AttachmentChunk {
            index: 20,
            bytes: annex.chunks[0].ciphertext.clone(),
        };
        send(&mut as_, &foreign).await;
        assert_refused(&answer(&mut ar).await, AttachmentRefusal::BadChunk, 20);

        let (mut as_, mut ar, _) = offer(&conn, id, 0).await;
        let mut bad = big.chunks[20].ciphertext.clone();
        bad[100] ^= 1;
        send(
            &mut as_,
            &SessionFrame::AttachmentChunk {
                index: 20,
                bytes: bad,
            },
        )
        .await;
        assert_refused(&answer(&mut ar).await, AttachmentRefusal::BadChunk, 20);

        // An offer of an attachment the message does not have.
        let (_, _, first) = offer(&conn, id, 2).await;
        assert_refused(&first, AttachmentRefusal::NotAwaited, 0);
        // Of a message A does not hold.
        let (_, _, first) = offer(&conn, MessageId::random(), 0).await;
        assert_refused(&first, AttachmentRefusal::NotAwaited, 0);

        // The rest, then the annex.
        let (mut as_, mut ar, first) = offer(&conn, id, 0).await;
        assert_eq!(
            first,
            SessionFrame::AttachmentFrom {
                from_chunk: 20,
                table: false
            }
        );
        for i in 20..48 {
            send(&mut as_, &big.chunk(i)).await;
        }
        assert_eq!(
            answer(&mut ar).await,
            SessionFrame::AttachmentComplete { id, index: 0 }
        );
        let (mut as_, mut ar, first) = offer(&conn, id, 1).await;
        assert_eq!(
            first,
            SessionFrame::AttachmentFrom {
                from_chunk: 0,
                table: true
            }
        );
        send(&mut as_, &SessionFrame::AttachmentTable(annex.table())).await;
        send(&mut as_, &annex.chunk(0)).await;
        assert_eq!(
            answer(&mut ar).await,
            SessionFrame::AttachmentComplete { id, index: 1 }
        );
        // Offered again: complete at once.
        let (_, _, first) = offer(&conn, id, 1).await;
        assert_eq!(first, SessionFrame::AttachmentComplete { id, index: 1 });

        // Now the receipt, over the envelope H sent.
        let receipt = match offer_envelope(&mut s, &mut r, &env).await {
            SessionFrame::Receipt(bytes) => Receipt::from_bytes(&bytes).unwrap(),
            other => panic!("expected the receipt, got {other:?}"),
        };
        let a_keys = PeerKeys::new(a.id, a.identity().encryption_cert().clone()).unwrap();
        receipt.verify(&h.id(), &a_keys, &id, &env.digest).unwrap();
    });
    assert_eq!(a.inbox_count(), 1);
    assert_eq!(read_back(&a, &h, id, 0, &big), big.plain);
    assert_eq!(read_back(&a, &h, id, 1, &annex), annex.plain);
    let log = a.log();
    assert!(log.contains("attachment received and verified"), "{log}");
}

#[test]
fn attachments_over_the_limits_are_refused_before_any_data() {
    let (a, h) = node_with_hostile("max_attachment_bytes = 1048576");
    let rt = Runtime::new().unwrap();
    let big = File::new("too-large.bin", (1 << 20) + 1);
    rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        let id = MessageId::random();
        let env = sealed_request(&h, &keys, id, &[&big]);
        match offer_envelope(&mut s, &mut r, &env).await {
            SessionFrame::Rejected {
                id: got,
                reason,
                detail,
            } => {
                assert_eq!(
                    (got, reason),
                    (Some(id), RejectReason::TooLarge),
                    "{detail}"
                );
                assert!(reason.is_permanent());
            }
            other => panic!("expected a too-large refusal, got {other:?}"),
        }
        // Nothing is held for it: its attachments are not awaited.
        let (_, _, first) = offer(&conn, id, 0).await;
        assert_refused(&first, AttachmentRefusal::NotAwaited, 0);
    });
    let received = a.dir().join("data/attachments/received");
    assert_eq!(std::fs::read_dir(&received).unwrap().count(), 0);
    assert_eq!(a.inbox_count(), 0);
}

/// Two messages held at once, each of whose attachment fits above the
/// reserve, and both streams begun before either wrote a byte: together
/// they would eat into the reserve, so the second is refused `no-room`
/// part-way (each chunk is measured), not written until the disk is
/// below the reserve.
#[test]
fn streams_begun_at_once_do_not_fill_the_disk_past_the_reserve() {
    let h = Identity::generate(Timestamp::now());
    let settings = Settings {
        disk_reserve_mib: Some(24),
        disk_reserve_percent: Some(0),
        ..test_settings()
    };
    let mut a = TestNode::with_settings(COMITYD, "Ministry of Justice of Arcadia", "AR", settings);
    a.pin_as(h.id(), free_port(), "Hostile", "HO");
    let data = a.dir().join("data");
    let Some(_disk) = Tmpfs::mount(&data, 64) else {
        return;
    };
    a.start();
    let disk = a.get("/v1/node")["storage"]["disk"].clone();
    let (free, reserve) = (
        disk["free_bytes"].as_u64().unwrap(),
        disk["reserve_bytes"].as_u64().unwrap(),
    );
    assert_eq!(reserve, 24 << 20, "{disk}");
    // Each fits above the reserve with a third to spare; both do not.
    let len = ((free - reserve) / 3 * 2) as usize;
    let (one, two) = (File::new("one.bin", len), File::new("two.bin", len));
    let rt = Runtime::new().unwrap();
    let (refusal, chunks) = rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        let (id1, id2) = (MessageId::random(), MessageId::random());
        let env1 = sealed_request(&h, &keys, id1, &[&one]);
        let env2 = sealed_request(&h, &keys, id2, &[&two]);
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env1).await, id1),
            vec![0]
        );
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env2).await, id2),
            vec![0]
        );
        let from = SessionFrame::AttachmentFrom {
            from_chunk: 0,
            table: true,
        };
        let (mut s1, mut r1, first1) = offer(&conn, id1, 0).await;
        let (mut s2, mut r2, first2) = offer(&conn, id2, 0).await;
        assert_eq!((first1, first2), (from.clone(), from));

        // Both tables first: each is checked against the free space (both
        // fit) and each file begun, as when a dialler sends several
        // messages' attachments at once.
        send(&mut s1, &SessionFrame::AttachmentTable(one.table())).await;
        send(&mut s2, &SessionFrame::AttachmentTable(two.table())).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..one.chunks.len() {
            send(&mut s1, &one.chunk(i)).await;
        }
        assert_eq!(
            answer(&mut r1).await,
            SessionFrame::AttachmentComplete { id: id1, index: 0 }
        );
        // The node stops reading when it refuses: writes may fail then.
        let mut sent = 0;
        for i in 0..two.chunks.len() {
            if wire::write_frame(&mut s2, &two.chunk(i)).await.is_err() {
                break;
            }
            sent = i + 1;
        }
        println!(
            "{sent} of {} chunks of the second written",
            two.chunks.len()
        );
        (answer(&mut r2).await, two.chunks.len() as u64)
    });
    // Not below the reserve by more than the chunk being written.
    let now = fs2::available_space(&data).unwrap();
    println!("free {free} before, {now} after; reserve {reserve}");
    match refusal {
        SessionFrame::AttachmentRefused { reason, next, .. } => {
            assert_eq!(reason, AttachmentRefusal::NoRoom, "{refusal:?}");
            assert!(next > 0 && next < chunks, "{refusal:?}");
        }
        other => panic!("expected no-room part-way, got {other:?}"),
    }
    assert!(now + (1 << 20) >= reserve, "{now} free");
    assert_eq!(a.inbox_count(), 0);
}

/// An offer answered, then silence: the stream is given up after the
/// stall timeout (the tests' handshake timeout, 3 s) and its attachment is free for the next
/// offer, instead of being held (`busy`) for as long as the connection
/// lives (which also kept the message from ever being given up).
#[test]
fn an_offer_followed_by_silence_does_not_hold_the_attachment() {
    let (a, h) = node_with_hostile("");
    let rt = Runtime::new().unwrap();
    let file = File::new("statements.bin", 200_000);
    rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        let id = MessageId::random();
        let env = sealed_request(&h, &keys, id, &[&file]);
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env).await, id),
            vec![0]
        );
        let from = SessionFrame::AttachmentFrom {
            from_chunk: 0,
            table: true,
        };
        let (_s1, mut r1, first) = offer(&conn, id, 0).await;
        assert_eq!(first, from);
        // Nothing more on it, the stream left open.
        assert_closed_by_node(&mut r1, "an offer followed by silence").await;
        let (mut s2, mut r2, again) = offer(&conn, id, 0).await;
        assert_eq!(again, from, "the silent stream still holds the attachment");
        send(&mut s2, &SessionFrame::AttachmentTable(file.table())).await;
        for i in 0..file.chunks.len() {
            send(&mut s2, &file.chunk(i)).await;
        }
        assert_eq!(
            answer(&mut r2).await,
            SessionFrame::AttachmentComplete { id, index: 0 }
        );
    });
}

/// A peer that keeps sending bad input on attachment streams (a chunk of
/// index u64::MAX, a frame announced at 4 GiB, one of 16 MiB) is refused each time,
/// never crashes the node, and is cut off by its budget of rejections
/// (5 an hour here): its connection is closed.
#[test]
fn a_peer_that_keeps_sending_bad_chunks_is_cut_off() {
    let (a, h) = node_with_hostile("rejections_per_hour = 5");
    let rt = Runtime::new().unwrap();
    let file = File::new("statements.bin", 200_000);
    let rounds = rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        let id = MessageId::random();
        let env = sealed_request(&h, &keys, id, &[&file]);
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env).await, id),
            vec![0]
        );
        for round in 0..20u32 {
            let Ok((mut s1, mut r1)) = conn.open_bi().await else {
                return round;
            };
            let offer = SessionFrame::AttachmentOffer { id, index: 0 };
            if wire::write_frame(&mut s1, &offer).await.is_err() {
                return round;
            }
            let read = wire::read_frame(&mut r1, 1 << 20, Duration::from_secs(5));
            let Ok(Ok(Some(first))) = tokio::time::timeout(Duration::from_secs(5), read).await
            else {
                return round;
            };
            let table = match first {
                SessionFrame::AttachmentFrom { table, .. } => table,
                other => panic!("round {round}: {other:?}"),
            };
            if table {
                send(&mut s1, &SessionFrame::AttachmentTable(file.table())).await;
            }
            match round % 3 {
                0 => {
                    let bad = SessionFrame::AttachmentChunk {
                        index: u64::MAX,
                        bytes: file.chunks[0].ciphertext.clone(),
                    };
                    let _ = wire::write_frame(&mut s1, &bad).await;
                }
                // A frame announced at 4 GiB.
                1 => {
                    let _ = s1.write_all(&u32::MAX.to_be_bytes()).await;
                }
                // A frame of 16 MiB, sent whole.
                _ => {
                    let _ = s1.write_all(&(16u32 << 20).to_be_bytes()).await;
                    let _ = s1.write_all(&vec![0u8; 16 << 20]).await;
                }
            }
            let read = wire::read_frame(&mut r1, 1 << 20, Duration::from_secs(5));
            match tokio::time::timeout(Duration::from_secs(5), read).await {
                Ok(Ok(Some(SessionFrame::AttachmentRefused { reason, next, .. }))) => {
                    assert_eq!((reason, next), (AttachmentRefusal::BadChunk, 0));
                }
                Ok(Ok(Some(other))) => panic!("round {round}: {other:?}"),
                Ok(_) => return round,
                Err(_) => panic!("round {round}: no answer within 5 s"),
            }
        }
        panic!("still connected after 20 rounds of bad chunks");
    });
    println!("cut off in round {rounds}");
    assert!(rounds <= 7, "cut off only in round {rounds}");
    // Alive, and the bad input was recorded.
    assert_eq!(a.get("/v1/node")["storage"]["writable"], true);
    assert!(a.log().contains("over its budget"), "{}", a.log());
}

/// Attachment streams name the message by (the connection's peer, id):
/// a second pinned peer G cannot offer chunks for H's held message, and H
/// cannot replace its held envelope with another of the same id (other
/// attachments): `id-reused`.
#[test]
fn another_peer_cannot_feed_a_held_message_nor_can_it_be_replaced() {
    let h = Identity::generate(Timestamp::now());
    let g = Identity::generate(Timestamp::now());
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    a.pin_as(h.id(), free_port(), "Hostile", "HO");
    a.pin_as(g.id(), free_port(), "Grabber", "GR");
    a.start();
    let rt = Runtime::new().unwrap();
    let (file, other) = (File::new("one.bin", 100_000), File::new("two.bin", 100_000));
    rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        let id = MessageId::random();
        let env = sealed_request(&h, &keys, id, &[&file]);
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env).await, id),
            vec![0]
        );

        let (_gep, gconn) = connect(&g, &a).await;
        let (_, _, first) = offer(&gconn, id, 0).await;
        assert_refused(&first, AttachmentRefusal::NotAwaited, 0);

        let replacement = sealed_request(&h, &keys, id, &[&other]);
        match offer_envelope(&mut s, &mut r, &replacement).await {
            SessionFrame::Rejected { reason, .. } => assert_eq!(reason, RejectReason::IdReused),
            other => panic!("expected id-reused, got {other:?}"),
        }
        // The held one is untouched: it still takes its own attachment.
        let (mut s1, mut r1, first) = offer(&conn, id, 0).await;
        assert_eq!(
            first,
            SessionFrame::AttachmentFrom {
                from_chunk: 0,
                table: true
            }
        );
        send(&mut s1, &SessionFrame::AttachmentTable(file.table())).await;
        for i in 0..file.chunks.len() {
            send(&mut s1, &file.chunk(i)).await;
        }
        assert_eq!(
            answer(&mut r1).await,
            SessionFrame::AttachmentComplete { id, index: 0 }
        );
        assert!(matches!(
            offer_envelope(&mut s, &mut r, &env).await,
            SessionFrame::Receipt(_)
        ));
    });
    assert_eq!(a.inbox_count(), 1);
}

/// A reply to a request A never sent to H is refused (`invalid`) when it
/// arrives, before its attachments are asked for: nothing is held for it,
/// and no attachment data is written for a message that would be refused
/// once they were all there (and then kept until given up, days later).
#[test]
fn a_reply_to_a_message_never_sent_is_refused_before_its_attachments() {
    use comity_protocol::message::{Body, Reply, Thread};
    let (a, h) = node_with_hostile("");
    let rt = Runtime::new().unwrap();
    let file = File::new("records.bin", 100_000);
    rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        let id = MessageId::random();
        let body = Body::Reply(Reply {
            in_reply_to: MessageId::random(),
            subject: "Records".into(),
            body: "Attached.".into(),
            partial: false,
            thread: Thread::default(),
        });
        let env = seal_with_attachments(
            &h,
            &keys,
            id,
            Timestamp::now(),
            &body,
            std::slice::from_ref(&file.sealed),
            &AttachmentLimits::ceiling(),
            &mut rand::rng(),
        )
        .unwrap();
        match offer_envelope(&mut s, &mut r, &env).await {
            SessionFrame::Rejected { reason, detail, .. } => {
                assert_eq!(reason, RejectReason::Invalid, "{detail}")
            }
            other => panic!("expected invalid at once, got {other:?}"),
        }
        let (_, _, first) = offer(&conn, id, 0).await;
        assert_refused(&first, AttachmentRefusal::NotAwaited, 0);
    });
}

/// Names a hostile peer may put in a manifest it signs (its node would
/// never seal them): each envelope is refused `invalid` when opened,
/// before anything is held or written, nothing appears outside the data
/// directory (the name is never a path), and A goes on taking H's next
/// message with a proper name.
#[test]
fn manifest_names_that_are_paths_or_tricks_are_refused() {
    use comity_protocol::envelope::seal_unchecked;
    let (a, h) = node_with_hostile("");
    let rt = Runtime::new().unwrap();
    let hostile = [
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        "evidence\0.pdf",
        "line\nbreak.txt",
        "CON",
        "report\u{202E}fdp.exe",
        "C:evil.txt",
    ];
    rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        for name in hostile {
            let mut file = File::new("statement.pdf", 70_000);
            file.sealed.manifest.name = name.to_string();
            let id = MessageId::random();
            let env = seal_unchecked(
                &h,
                &keys,
                id,
                Timestamp::now(),
                &request_body("Bank records with their statements attached"),
                std::slice::from_ref(&file.sealed),
                &mut rand::rng(),
            )
            .unwrap();
            match offer_envelope(&mut s, &mut r, &env).await {
                SessionFrame::Rejected {
                    id: got,
                    reason,
                    detail,
                } => {
                    assert_eq!((got, reason), (Some(id), RejectReason::Invalid), "{name:?}");
                    assert!(reason.is_permanent(), "{name:?}");
                    println!("{name:?}: refused: {detail}");
                }
                other => panic!("{name:?}: expected invalid, got {other:?}"),
            }
            let (_, _, first) = offer(&conn, id, 0).await;
            assert_refused(&first, AttachmentRefusal::NotAwaited, 0);
        }
        // Still serving H: a proper name is held and asked for.
        let good = File::new("statement.pdf", 70_000);
        let env = sealed_request(&h, &keys, MessageId::random(), &[&good]);
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env).await, env_id(&env)),
            vec![0]
        );
    });
    let data = a.dir().join("data");
    for p in [
        data.join("attachments/etc/passwd"),
        data.join("etc/passwd"),
        a.dir().join("etc/passwd"),
    ] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    let received = data.join("attachments/received");
    let files: Vec<_> = walk(&received);
    assert!(files.is_empty(), "files under received/: {files:?}");
    assert_eq!(a.inbox_count(), 0);
}

/// Every file below `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Here H is the acceptor: A dials it with a message whose 32 MiB
/// attachment H asks for, takes the offer, and then never reads the
/// stream. Once the flow-control windows are full A's writes take nothing
/// more; it must give up on the stream (and its session) after the stall
/// time rather than hold the transfer for as long as the connection lives.
#[test]
fn an_acceptor_that_stops_reading_an_attachment_is_given_up_on() {
    use comity_client::upload::attachment_path;
    use comity_node::transport::{server_endpoint, Pins, TlsIdentity};
    use std::sync::Arc;

    let h = Identity::generate(Timestamp::now());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let listen = socket.local_addr().unwrap();
    let mut a = TestNode::new(COMITYD, "Ministry of Justice of Arcadia", "AR");
    a.pin_as(h.id(), listen.port(), "Hostile", "HO");
    a.start();
    let mut content = vec![0u8; 32 << 20];
    rand::rng().fill_bytes(&mut content);
    let uploaded = a
        .client()
        .upload(
            &attachment_path("image.bin", "application/octet-stream"),
            &mut &content[..],
            content.len() as u64,
            &mut |_| {},
        )
        .unwrap();
    let body = serde_json::json!({
        "to": "HO",
        "body": request_body("A server image"),
        "attachments": [uploaded["attachment"]],
    });
    let r = a
        .client()
        .request_with(
            "POST",
            "/v1/messages",
            &[],
            Some(body.to_string().as_bytes()),
        )
        .unwrap();
    assert!(r.status < 300, "{}: {:?}", r.status, r.value());

    let rt = Runtime::new().unwrap();
    let stall = rt.block_on(async {
        let ep = server_endpoint(
            listen,
            socket,
            &TlsIdentity::new(&h).unwrap(),
            Pins::new([a.id]),
            Arc::new(|_| {}),
            &comity_config::Limits::default(),
            &[9; 32],
        )
        .unwrap();
        let incoming = tokio::time::timeout(Duration::from_secs(20), ep.accept())
            .await
            .expect("A dials H")
            .unwrap();
        let conn = incoming.await.unwrap();
        let (mut s, mut r) = conn.accept_bi().await.unwrap();
        match answer(&mut r).await {
            SessionFrame::Hello { .. } => {}
            other => panic!("expected A's hello, got {other:?}"),
        }
        let hello = SessionFrame::Hello {
            cert: h.encryption_cert().clone(),
        };
        send(&mut s, &hello).await;
        let id = loop {
            let bytes = match answer(&mut r).await {
                SessionFrame::Envelope(b) => b,
                SessionFrame::ResentEnvelope { envelope, .. } => envelope,
                _ => continue,
            };
            break comity_protocol::envelope::Envelope::from_bytes(&bytes)
                .unwrap()
                .header
                .id;
        };
        send(
            &mut s,
            &SessionFrame::AttachmentsWanted { id, next: vec![0] },
        )
        .await;
        let (mut as_, mut ar) = conn.accept_bi().await.unwrap();
        match answer(&mut ar).await {
            SessionFrame::AttachmentOffer { id: got, index: 0 } if got == id => {}
            other => panic!("expected the offer, got {other:?}"),
        }
        let from = SessionFrame::AttachmentFrom {
            from_chunk: 0,
            table: true,
        };
        send(&mut as_, &from).await;
        // Not another byte read: A's writes stall once the windows fill.
        let since = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(30), conn.closed())
            .await
            .expect("A still holds an attachment stream nobody reads after 30 s");
        drop((as_, ar, s, r));
        since.elapsed()
    });
    println!("A ended the session {stall:?} after the offer was taken");
    // Logged once the session has returned, a moment after it closed the
    // connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !a.log().contains("the peer stopped taking the attachment")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = a.log();
    assert!(
        log.contains("the peer stopped taking the attachment"),
        "A's log does not say why: {log}"
    );
}

/// The receipt names the evidence only if its file is there whole: an
/// attachment taken complete, whose file is then cut short on A's disk
/// (storage that lost bytes), makes A answer the envelope `unavailable`,
/// not with a receipt; put back whole, the same envelope is receipted.
#[test]
fn no_receipt_for_an_attachment_whose_file_is_no_longer_whole() {
    let (a, h) = node_with_hostile("");
    let rt = Runtime::new().unwrap();
    let file = File::new("records.bin", 150_000);
    let id = MessageId::random();
    rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        let env = sealed_request(&h, &keys, id, &[&file]);
        assert_eq!(
            wanted(&offer_envelope(&mut s, &mut r, &env).await, id),
            vec![0]
        );
        let (mut s1, mut r1, _) = offer(&conn, id, 0).await;
        send(&mut s1, &SessionFrame::AttachmentTable(file.table())).await;
        for i in 0..file.chunks.len() {
            send(&mut s1, &file.chunk(i)).await;
        }
        assert_eq!(
            answer(&mut r1).await,
            SessionFrame::AttachmentComplete { id, index: 0 }
        );
        let path = a
            .dir()
            .join("data/attachments/received")
            .join(hex(&h.id().0))
            .join(hex(&id.0))
            .join("0");
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() - 1]).unwrap();
        match offer_envelope(&mut s, &mut r, &env).await {
            SessionFrame::Rejected { reason, detail, .. } => {
                assert_eq!(reason, RejectReason::Unavailable, "{detail}")
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
        assert_eq!(a.inbox_count(), 0);
        std::fs::write(&path, &whole).unwrap();
        assert!(matches!(
            offer_envelope(&mut s, &mut r, &env).await,
            SessionFrame::Receipt(_)
        ));
    });
    assert_eq!(a.inbox_count(), 1);
}

/// A peer that begins messages with attachments and finishes none takes
/// at most its share of the disk: past
/// `limits.max_incomplete_attachment_bytes_per_peer` its next message is
/// deferred (retriable, nothing held for it), and taken once one of the
/// earlier ones is complete.
#[test]
fn a_peer_that_finishes_no_attachment_gets_only_its_share() {
    let (a, h) = node_with_hostile(
        "max_attachment_bytes = 1048576\nmax_message_attachment_bytes = 1048576\n\
         max_incomplete_attachment_bytes_per_peer = 1048576",
    );
    let rt = Runtime::new().unwrap();
    let files: Vec<File> = (0..3)
        .map(|i| File::new(&format!("part-{i}.bin"), 400 << 10))
        .collect();
    rt.block_on(async {
        let (_ep, conn) = connect(&h, &a).await;
        let (mut s, mut r, keys) = stream(&conn, &h, a.id).await;
        let envs: Vec<SealedEnvelope> = files
            .iter()
            .map(|f| sealed_request(&h, &keys, MessageId::random(), &[f]))
            .collect();
        // Two held: 800 KiB of the 1 MiB share.
        for env in &envs[..2] {
            assert_eq!(
                wanted(&offer_envelope(&mut s, &mut r, env).await, env_id(env)),
                vec![0]
            );
        }
        // The third would pass it: deferred, not refused for good.
        match offer_envelope(&mut s, &mut r, &envs[2]).await {
            SessionFrame::Rejected { id, reason, detail } => {
                assert_eq!(
                    (id, reason),
                    (Some(env_id(&envs[2])), RejectReason::Unavailable)
                );
                assert!(!reason.is_permanent());
                assert!(
                    detail.contains("max_incomplete_attachment_bytes_per_peer"),
                    "{detail}"
                );
            }
            other => panic!("expected a deferral, got {other:?}"),
        }
        let (_, _, first) = offer(&conn, env_id(&envs[2]), 0).await;
        assert_refused(&first, AttachmentRefusal::NotAwaited, 0);

        // The first completes and is receipted: the third is taken now.
        let first_id = env_id(&envs[0]);
        let (mut as_, mut ar, _) = offer(&conn, first_id, 0).await;
        send(&mut as_, &SessionFrame::AttachmentTable(files[0].table())).await;
        for i in 0..files[0].chunks.len() {
            send(&mut as_, &files[0].chunk(i)).await;
        }
        assert_eq!(
            answer(&mut ar).await,
            SessionFrame::AttachmentComplete {
                id: first_id,
                index: 0
            }
        );
        assert!(matches!(
            offer_envelope(&mut s, &mut r, &envs[0]).await,
            SessionFrame::Receipt(_)
        ));
        assert_eq!(
            wanted(
                &offer_envelope(&mut s, &mut r, &envs[2]).await,
                env_id(&envs[2])
            ),
            vec![0]
        );
    });
    assert_eq!(a.inbox_count(), 1);
}
