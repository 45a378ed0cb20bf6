//! Attachments between two real nodes on 127.0.0.1, sent with
//! `comity send … --attach`: delivered with the message (the receipt only
//! once they are verified and durable on the receiver), byte for byte, and
//! through kill -9 of either node part-way, with what a resume sends again
//! bounded by a stream window, 2 MiB not yet durable and a chunk, and through a path that loses,
//! duplicates and reorders datagrams.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use comity_node::attachments::{PlaintextReader, StoredAttachment};
use comity_node::store::Store;
use comity_protocol::attachment::{check_attachments, AttachmentLimits};
use comity_protocol::message::MessageKind;
use comity_protocol::{MessageId, NodeId};
use comity_tests::relay::{Impairment, Relay};
use comity_tests::{assert_logs_verify, comityd_beside, pair, request_args, TestNode};
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const COMITY: &str = env!("CARGO_BIN_EXE_comity");

fn comity(node: &TestNode, args: &[&str]) -> Output {
    Command::new(COMITY)
        .arg("--config")
        .arg(node.config_path())
        .args(args)
        .output()
        .unwrap()
}

/// A file of `len` random bytes in `dir`, and its SHA-256.
fn random_file(dir: &Path, name: &str, len: usize) -> (PathBuf, [u8; 32]) {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    let mut hash = Sha256::new();
    let mut rng = rand::rng();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        rng.fill_bytes(&mut buf[..n]);
        std::io::Write::write_all(&mut f, &buf[..n]).unwrap();
        hash.update(&buf[..n]);
        left -= n;
    }
    (path, hash.finalize().into())
}

/// `comity send request` from `a` to `to` with `files` attached: the id.
fn send_with(a: &TestNode, to: &str, files: &[&Path]) -> String {
    let mut args = request_args(
        to,
        "Bank records of Zeta Holdings",
        "The statements and the extraction are attached.",
        &["--json"],
    );
    for f in files {
        args.push("--attach");
        args.push(f.to_str().unwrap());
    }
    let out = comity(a, &args);
    assert!(
        out.status.success(),
        "send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["id"].as_str().unwrap().to_string()
}

fn received_dir(b: &TestNode, from: NodeId, id: &str) -> PathBuf {
    b.dir()
        .join("data/attachments/received")
        .join(hex::encode(from.0))
        .join(id)
}

/// SHA-256 of each of the message's attachments as stopped node `b`
/// holds them, decrypted and verified as retrieval reads them.
fn digests_held(b: &TestNode, from: NodeId, id: &str) -> Vec<[u8; 32]> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let id: MessageId = id.parse().unwrap();
    let held = rt.block_on(async {
        let store = Store::open(&b.dir().join("data/store")).unwrap();
        let held = store.inbound_attachments(&from, &id).unwrap();
        store.close().await.unwrap();
        held
    });
    let checked = check_attachments(
        MessageKind::Request,
        held.iter().map(|h| h.sealed.clone()).collect(),
        &AttachmentLimits::ceiling(),
    )
    .unwrap();
    let dir = received_dir(b, from, &id.to_string());
    checked
        .iter()
        .map(|c| {
            let stored =
                StoredAttachment::open(&dir.join(c.index().to_string()), c.manifest()).unwrap();
            let mut reader = PlaintextReader::new(stored, c).unwrap();
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
            }
            hash.finalize().into()
        })
        .collect()
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn a_request_is_delivered_with_its_attachments_byte_for_byte() {
    let (mut a, mut b) = pair(comityd_beside(COMITY).to_str().unwrap());
    let work = tempfile::tempdir().unwrap();
    let (letter, letter_sha) = random_file(work.path(), "letter.pdf", 300_000);
    let (evidence, evidence_sha) = random_file(work.path(), "extraction.bin", 9 << 20);
    let id = send_with(&a, "BO", &[&letter, &evidence]);
    // The operator may delete the originals once `send` returned.
    std::fs::remove_file(&letter).unwrap();
    std::fs::remove_file(&evidence).unwrap();
    // Small messages sent meanwhile are delivered too (their latency
    // meanwhile is the bench's to measure).
    for i in 0..5 {
        a.send(&b, &format!("meanwhile {i}"));
    }
    a.wait_until(Duration::from_secs(60), "all delivered", || {
        a.outbox_count("delivered") == 6
    });
    assert_eq!(b.inbox_count(), 6);
    let export_b = b.get_text("/v1/audit/export");
    let export_a = a.get_text("/v1/audit/export");
    assert_eq!(count(&export_b, "\"attachment-received\""), 2, "B's log");
    assert_eq!(count(&export_a, "\"attachment-sent\""), 2, "A's log");
    assert_logs_verify(&a, &b);
    b.sigterm();
    assert_eq!(
        digests_held(&b, a.id, &id),
        vec![letter_sha, evidence_sha],
        "what B holds is what A's operator attached"
    );
    a.sigterm();
}

/// Bytes of `path`, or 0 if it is not there.
fn len_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn a_large_attachment_survives_kill_9_of_the_receiver_then_of_the_sender() {
    let (mut a, mut b) = pair(comityd_beside(COMITY).to_str().unwrap());
    let work = tempfile::tempdir().unwrap();
    const SIZE: usize = 256 << 20;
    let (file, sha) = random_file(work.path(), "server-image.bin", SIZE);
    let started = Instant::now();
    let id = send_with(&a, "BO", &[&file]);
    println!("accepted after {:?}", started.elapsed());
    let part = received_dir(&b, a.id, &id).join("0.part");
    let at = |fraction: f64, what: &str, b: &TestNode| {
        let want = (SIZE as f64 * fraction) as u64;
        b.wait_until(Duration::from_secs(120), what, || len_of(&part) >= want);
        println!("{what} after {:?}", started.elapsed());
    };
    at(0.3, "30 % on the receiver", &b);
    b.kill9();
    b.start();
    at(0.6, "60 % on the receiver", &b);
    a.kill9();
    a.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    while a.outbox_count("delivered") != 1 {
        assert!(
            Instant::now() < deadline,
            "not delivered; the receiver's log:\n{}",
            b.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("delivered after {:?}", started.elapsed());
    assert_eq!(b.inbox_count(), 1);
    assert!(!part.exists(), "the partial file is gone once complete");

    // What was sent more than once: chunks handed to the connection (A's
    // log, both of its runs) beyond the chunks the attachment has.
    let handed = count(&a.log(), "attachment chunk handed to the connection");
    let resent = handed.saturating_sub(SIZE >> 20);
    println!(
        "chunks handed to the connection: {handed}, sent again: {resent} MiB over 2 interruptions"
    );
    // Per interruption: the 4 MiB stream window, at most 2 MiB written but
    // not yet durable, and the chunk being written (docs/protocol.md
    // §11.5.1), so at most 7 chunks of 1 MiB.
    assert!(resent <= 14, "{resent} MiB sent again");
    assert_logs_verify(&a, &b);
    b.sigterm();
    assert_eq!(digests_held(&b, a.id, &id), vec![sha]);
    a.sigterm();
}

#[test]
fn a_32_mib_attachment_arrives_intact_through_a_lossy_path() {
    let d = comityd_beside(COMITY);
    let d = d.to_str().unwrap();
    let mut a = TestNode::new(d, "Ministry of Justice of Arcadia", "AR");
    let mut b = TestNode::new(d, "Attorney General of Borduria", "BO");
    // A reaches B only through the relay; B reaches A directly.
    let bad = Impairment {
        loss: 0.2,
        duplicate: 0.05,
        reorder: 0.1,
    };
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], b.port)), bad, 7);
    a.pin_as(b.id, relay.port, "Attorney General of Borduria", "BO");
    b.pin(&a);
    a.start();
    b.start();
    let work = tempfile::tempdir().unwrap();
    let (file, sha) = random_file(work.path(), "cctv.mp4", 32 << 20);
    let started = Instant::now();
    let id = send_with(&a, "BO", &[&file]);
    a.wait_until(
        Duration::from_secs(240),
        "delivered through the relay",
        || a.outbox_count("delivered") == 1,
    );
    let s = &relay.stats;
    println!(
        "delivered after {:?}; relay: {} forwarded, {} dropped, {} duplicated, {} reordered",
        started.elapsed(),
        s.forwarded.load(Ordering::Relaxed),
        s.dropped.load(Ordering::Relaxed),
        s.duplicated.load(Ordering::Relaxed),
        s.reordered.load(Ordering::Relaxed),
    );
    assert!(
        s.dropped.load(Ordering::Relaxed) > 1000,
        "the path was lossy"
    );
    assert_eq!(b.inbox_count(), 1);
    b.sigterm();
    assert_eq!(digests_held(&b, a.id, &id), vec![sha]);
    a.sigterm();
}

/// A's own stored copy damaged on its disk after `send` returned: B refuses
/// the bad chunk once; A then checks each chunk before it goes, finds its
/// copy damaged and fails the message with that reason, instead of
/// offering it again and again until B cuts it off. A's next message is
/// delivered.
#[test]
fn a_sender_whose_own_copy_is_damaged_fails_the_message_and_is_not_cut_off() {
    let (mut a, mut b) = pair(comityd_beside(COMITY).to_str().unwrap());
    b.sigterm();
    let work = tempfile::tempdir().unwrap();
    let (file, _) = random_file(work.path(), "statements.pdf", 3 << 20);
    let id = send_with(&a, "BO", &[&file]);
    let sent = a.dir().join("data/attachments/sent");
    let copies: Vec<PathBuf> = std::fs::read_dir(&sent)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    // One byte inside the second chunk's ciphertext.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&copies[0])
        .unwrap();
    let at = (1 << 20) + 16 + 1000;
    let mut byte = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut byte, at).unwrap();
    byte[0] ^= 0x01;
    std::os::unix::fs::FileExt::write_all_at(&f, &byte, at).unwrap();
    drop(f);
    b.start();
    a.wait_until(Duration::from_secs(60), "the message failed", || {
        a.outbox_count("failed") == 1
    });
    let out = comity(&a, &["show", &id, "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = shown.to_string();
    assert!(
        error.contains("our stored copy of attachment 0 is damaged"),
        "{error}"
    );
    // The damaged chunk went once, was refused once, and never again.
    let log = a.log();
    let damaged: u64 = error
        .split("damaged: chunk ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chunk named in {error}"));
    assert_eq!(count(&log, &format!("chunk={damaged}\n")), 1, "{log}");
    assert_eq!(count(&log, "attachment refused for now"), 1, "{log}");
    a.send(&b, "after the damaged one");
    a.wait_until(Duration::from_secs(30), "the next delivered", || {
        a.outbox_count("delivered") == 1
    });
    assert_eq!(b.inbox_count(), 1);
    assert_eq!(
        count(&a.get_text("/v1/audit/export"), "\"message-failed\""),
        1
    );
    a.sigterm();
    b.sigterm();
}

/// A's own copy cut short on its disk: the message fails at once with
/// that reason (it can never be sent), and A's sessions with B go on.
#[test]
fn a_sender_whose_own_copy_is_cut_short_fails_the_message_and_sends_the_next() {
    let (mut a, mut b) = pair(comityd_beside(COMITY).to_str().unwrap());
    b.sigterm();
    let work = tempfile::tempdir().unwrap();
    let (file, _) = random_file(work.path(), "statements.pdf", 1 << 20);
    let id = send_with(&a, "BO", &[&file]);
    let sent = a.dir().join("data/attachments/sent");
    let copy = std::fs::read_dir(&sent)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let len = std::fs::metadata(&copy).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&copy)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    b.start();
    a.wait_until(Duration::from_secs(30), "the message failed", || {
        a.outbox_count("failed") == 1
    });
    let out = comity(&a, &["show", &id, "--json"]);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        shown.contains("our stored copy of attachment 0 is damaged"),
        "{shown}"
    );
    a.send(&b, "after the cut one");
    a.wait_until(Duration::from_secs(30), "the next delivered", || {
        a.outbox_count("delivered") == 1
    });
    a.sigterm();
    b.sigterm();
}
