//! The listing and the retrieval against a real store, audit log and
//! attachment files, put in place with the attachment module's own copy-in
//! and receive steps (no network).

use std::fs;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use comity_protocol::attachment::{
    check_attachments, AttachmentLimits, CheckedAttachment, SealedAttachment, SMALL_CHUNK_BYTES,
    TAG_BYTES,
};
use comity_protocol::audit::entry::{Actor, AuditEntry, AuditKind};
use comity_protocol::message::{Body, Consultation, MessageKind, Thread};
use comity_protocol::{Digest, Identity, MessageId, NodeId, Timestamp};
use sha2::{Digest as _, Sha256};

use super::*;
use crate::attachments::{
    Accepted, AttachmentDir, CopiedIn, Direction, Incoming, IncomingKey, Progress, Receiving,
    SpaceSource, StoredAttachment, TransferKey,
};
use crate::disk::Space;
use crate::store::{
    AwaitedMessage, HeldAttachment, InboundMessage, OutboundMessage, OutboundState, OutboundStatus,
};

const CHUNK: u64 = SMALL_CHUNK_BYTES as u64;
const MIB: u64 = 1 << 20;
/// Two peers with real keys (a proof file's entries must name valid ones).
fn peer(which: usize) -> NodeId {
    static PEERS: std::sync::OnceLock<[NodeId; 2]> = std::sync::OnceLock::new();
    PEERS.get_or_init(|| {
        [
            Identity::generate(Timestamp::now()).id(),
            Identity::generate(Timestamp::now()).id(),
        ]
    })[which]
}

struct Plenty;

impl SpaceSource for Plenty {
    fn measure(&self) -> std::io::Result<Space> {
        Ok(Space {
            free_bytes: u64::MAX / 4,
            total_bytes: u64::MAX / 2,
            reserve_bytes: 0,
        })
    }
}

fn data(n: u64, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 13)) as u8 ^ seed)
        .collect()
}

fn body() -> Body {
    Body::Consultation(Consultation {
        regarding: None,
        subject: "Bank statements".into(),
        body: "Attached.".into(),
        thread: Thread::default(),
    })
}

struct Fx {
    _tmp: tempfile::TempDir,
    store: Store,
    dir: AttachmentDir,
    /// Where the peer's node keeps its copies (the source of "received" files).
    peer_dir: AttachmentDir,
    progress: Progress,
    audit: Arc<AuditLog>,
    peers: Vec<NodeId>,
    node_id: NodeId,
}

impl Fx {
    async fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let identity = Arc::new(Identity::generate(Timestamp::now()));
        let node_id = identity.id();
        let audit = Arc::new(AuditLog::open(store.clone(), identity, 1000, true).unwrap());
        Fx {
            dir: AttachmentDir::open(&tmp.path().join("ours")).unwrap(),
            peer_dir: AttachmentDir::open(&tmp.path().join("theirs")).unwrap(),
            _tmp: tmp,
            store,
            progress: Progress::new(),
            audit,
            peers: vec![peer(0), peer(1)],
            node_id,
        }
    }

    fn ev(&self) -> Evidence<'_> {
        Evidence {
            store: &self.store,
            dir: &self.dir,
            progress: &self.progress,
            audit: &self.audit,
            peers: &self.peers,
        }
    }

    fn copy(dir: &AttachmentDir, name: &str, bytes: &[u8]) -> CopiedIn {
        dir.copy_in(
            &Plenty,
            &AttachmentLimits::default(),
            name,
            "application/octet-stream",
            bytes.len() as u64,
            bytes,
        )
        .unwrap()
    }

    /// Our message `id` to peer(0), queued, with these files attached.
    fn sent(&self, id: u8, files: &[(&str, &[u8])]) -> MessageId {
        let id = MessageId([id; 16]);
        let msg = OutboundMessage {
            id,
            peer: peer(0),
            kind: MessageKind::Consultation,
            body: body(),
            created_at: Timestamp(1),
            envelope: None,
            digest: None,
        };
        let held: Vec<HeldAttachment> = files
            .iter()
            .map(|(name, bytes)| {
                let c = Self::copy(&self.dir, name, bytes);
                HeldAttachment {
                    sealed: c.sealed,
                    stored: Some(c.id),
                }
            })
            .collect();
        self.store.put_outbound_attachments(&id, &held).unwrap();
        self.store
            .insert_outbound(&msg, &OutboundStatus::queued())
            .unwrap();
        id
    }

    fn set_state(&self, id: MessageId, state: OutboundState) {
        let mut s = OutboundStatus::queued();
        s.state = state;
        self.store.put_outbound_status(&id, &s).unwrap();
    }

    /// `sender`'s message `id`: its manifests stored, and of each file the
    /// first `chunks[i]` chunks received (all of them: complete).
    fn arriving(
        &self,
        sender: NodeId,
        id: u8,
        files: &[(&str, &[u8])],
        chunks: &[u64],
    ) -> (MessageId, Vec<SealedAttachment>) {
        let id = MessageId([id; 16]);
        let copies: Vec<CopiedIn> = files
            .iter()
            .map(|(n, b)| Self::copy(&self.peer_dir, n, b))
            .collect();
        let sealed: Vec<SealedAttachment> = copies.iter().map(|c| c.sealed.clone()).collect();
        let held: Vec<HeldAttachment> = sealed
            .iter()
            .map(|s| HeldAttachment {
                sealed: s.clone(),
                stored: None,
            })
            .collect();
        // As the receiver holds an envelope awaiting its attachments.
        self.store
            .put_inbound_attachments(&sender, &id, &held)
            .unwrap();
        let awaited = AwaitedMessage {
            digest: Digest([0; 32]),
            kind: MessageKind::Consultation,
            since: Timestamp::now(),
        };
        self.store.put_awaited(&sender, &id, &awaited).unwrap();
        let checked = checked_all(&sealed);
        for (i, c) in copies.iter().enumerate() {
            let key = IncomingKey {
                peer: sender,
                message: id,
                index: i,
            };
            let source = StoredAttachment::open(&c.path, &c.sealed.manifest).unwrap();
            let Incoming::NotStarted(n) = self.dir.incoming(&key, &checked[i]).unwrap() else {
                panic!("fresh");
            };
            let mut r: Receiving = n.begin(&source.table_bytes().unwrap(), &Plenty).unwrap();
            for k in 0..chunks[i].min(source.chunk_count()) {
                match r.accept_durably(k, source.read_chunk(k).unwrap()).unwrap() {
                    Accepted::Next(_) | Accepted::Complete(_) => {}
                }
            }
        }
        (id, sealed)
    }

    /// The inbox record that appears once every attachment is complete.
    fn received_record(&self, sender: NodeId, id: MessageId) {
        self.store
            .insert_inbound_if_new(&InboundMessage {
                id,
                sender,
                kind: MessageKind::Consultation,
                body: body(),
                created_at: Timestamp(1),
                received_at: Timestamp(2),
                envelope: vec![1, 2, 3],
                digest: Digest([5; 32]),
                receipt: vec![6; 4],
            })
            .unwrap();
    }

    fn received_path(
        &self,
        sender: NodeId,
        id: MessageId,
        index: usize,
        suffix: &str,
    ) -> std::path::PathBuf {
        self.dir
            .root()
            .join("received")
            .join(hex::encode(sender.0))
            .join(hex::encode(id.0))
            .join(format!("{index}{suffix}"))
    }

    fn entries(&self, kind: AuditKind) -> Vec<AuditEntry> {
        (0..self.audit.size())
            .filter_map(|s| self.audit.entry(s).unwrap())
            .filter(|e| e.kind == kind)
            .collect()
    }
}

fn checked_all(sealed: &[SealedAttachment]) -> Vec<CheckedAttachment> {
    check_attachments(
        MessageKind::Consultation,
        sealed.to_vec(),
        &AttachmentLimits::default(),
    )
    .unwrap()
}

fn by_id(id: MessageId) -> MessageRef {
    MessageRef::from(id)
}

fn read_all(r: &mut Retrieval) -> (Vec<u8>, Option<RetrievalAborted>) {
    let mut out = Vec::new();
    loop {
        match r.next_piece(64 * 1024) {
            Ok(Some(p)) => out.extend_from_slice(&p),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

#[tokio::test]
async fn our_attachments_are_queued_sending_sent_from_the_progress_and_the_message() {
    let fx = Fx::new().await;
    let a = data(3 * MIB + 17, 1);
    let b = data(10, 2);
    let id = fx.sent(1, &[("statements.pdf", &a), ("note.txt", &b)]);
    let ev = fx.ev();
    let l = ev.listing(&by_id(id)).unwrap();
    assert_eq!(
        (l.peer, l.arriving, l.attachments.len()),
        (peer(0), false, 2)
    );
    let v = &l.attachments[0];
    assert_eq!(v.state, AttachmentState::Queued);
    assert_eq!(
        (v.index, v.bytes_done, v.rate, v.eta_seconds),
        (0, 0, None, None)
    );
    assert_eq!(v.manifest.name, "statements.pdf");
    assert_eq!(v.manifest.sha256, Digest(Sha256::digest(&a).into()));

    // Never the key: the JSON has the manifest's fields and the state, only.
    let json = serde_json::to_value(&l).unwrap();
    let mut keys: Vec<&str> = json["attachments"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "bytes_done",
            "chunk_size",
            "eta_seconds",
            "index",
            "media_type",
            "name",
            "rate",
            "sha256",
            "size",
            "state",
            "tree_root"
        ]
    );
    assert_eq!(json["attachments"][1]["state"], "queued");
    assert_eq!(json["direction"], "outbound");

    // The transfer reports: 1 MiB in 0.5 s.
    let key = TransferKey {
        direction: Direction::Outbound,
        peer: peer(0),
        message: id,
        index: 0,
    };
    let t0 = Instant::now();
    fx.progress.update_at(key, 0, a.len() as u64, t0);
    fx.progress
        .update_at(key, MIB, a.len() as u64, t0 + Duration::from_millis(500));
    let v = ev.view(&ev.message(&by_id(id)).unwrap(), 0).unwrap();
    assert_eq!((v.state, v.bytes_done), (AttachmentState::Sending, MIB));
    let rate = v.rate.unwrap();
    assert!((rate - 2.0 * MIB as f64).abs() < 1.0, "{rate}");
    // (3 MiB + 17 − 1 MiB) at 2 MiB/s, rounded up.
    assert_eq!(v.eta_seconds, Some(2));

    // Finished (the peer verified it): sent, while the other is queued.
    fx.progress.finished(key);
    let l = ev.listing(&by_id(id)).unwrap();
    assert_eq!(l.attachments[0].state, AttachmentState::Sent);
    assert_eq!(l.attachments[0].bytes_done, a.len() as u64);
    assert_eq!(l.attachments[0].rate, None);
    assert_eq!(l.attachments[1].state, AttachmentState::Queued);

    // Delivered: every attachment sent. Failed: failed.
    fx.set_state(id, OutboundState::Delivered);
    let l = ev.listing(&by_id(id)).unwrap();
    assert!(l
        .attachments
        .iter()
        .all(|v| v.state == AttachmentState::Sent));
    let other = fx.sent(2, &[("x.bin", &b)]);
    fx.set_state(other, OutboundState::Failed);
    assert_eq!(
        ev.listing(&by_id(other)).unwrap().attachments[0].state,
        AttachmentState::Failed
    );
    // A message without attachments lists none.
    let none = fx.sent(3, &[]);
    assert!(ev.listing(&by_id(none)).unwrap().attachments.is_empty());
    assert!(matches!(
        ev.listing(&by_id(MessageId([99; 16]))),
        Err(ListingError::Find(FindError::NotFound(_)))
    ));
}

#[tokio::test]
async fn their_attachments_are_listed_while_arriving_without_touching_the_files() {
    let fx = Fx::new().await;
    let a = data(20, 3);
    let b = data(5 * CHUNK, 4);
    let (id, _) = fx.arriving(peer(0), 1, &[("letter.pdf", &a), ("image.dd", &b)], &[1, 2]);
    // A torn write past the durable point, as a transfer in the middle of
    // chunk 2 leaves it: a listing must not cut it back (the transfer owns
    // the file; `AttachmentDir::incoming` would truncate it).
    let part = fx.received_path(peer(0), id, 1, ".part");
    let len = fs::metadata(&part).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .unwrap()
        .write_all_at(&[0xAA; 1000], len)
        .unwrap();

    let ev = fx.ev();
    let l = ev.listing(&by_id(id)).unwrap();
    assert!(l.arriving);
    assert_eq!(l.peer, peer(0));
    assert_eq!(l.attachments[0].state, AttachmentState::Complete);
    assert_eq!(l.attachments[0].bytes_done, 20);
    assert_eq!(l.attachments[1].state, AttachmentState::Receiving);
    assert_eq!(l.attachments[1].bytes_done, 2 * CHUNK);
    assert_eq!(
        fs::metadata(&part).unwrap().len(),
        len + 1000,
        "left as it was"
    );

    // The registry is ahead of the disk between resume points.
    let key = TransferKey {
        direction: Direction::Inbound,
        peer: peer(0),
        message: id,
        index: 1,
    };
    fx.progress.update(key, 2 * CHUNK + 100, 5 * CHUNK);
    assert_eq!(
        ev.listing(&by_id(id)).unwrap().attachments[1].bytes_done,
        2 * CHUNK + 100
    );

    // Another pinned peer's message with the same id: ambiguous by id
    // alone, found when the peer is named.
    fx.arriving(peer(1), 1, &[("other.txt", &a)], &[0]);
    match ev.listing(&by_id(id)) {
        Err(ListingError::Find(FindError::Ambiguous { found, .. })) => {
            assert_eq!(found.len(), 2)
        }
        other => panic!("{other:?}"),
    }
    let named = MessageRef {
        id,
        peer: Some(peer(1)),
        way: None,
    };
    let l = ev.listing(&named).unwrap();
    assert_eq!(
        (l.peer, l.attachments[0].state),
        (peer(1), AttachmentState::Receiving)
    );
    assert_eq!(l.attachments[0].manifest.name, "other.txt");
}

#[tokio::test]
async fn a_retrieval_is_recorded_before_any_byte_and_yields_the_verified_plaintext() {
    let fx = Fx::new().await;
    let a = data(3 * CHUNK + 17, 5);
    let id = fx.sent(1, &[("statements.pdf", &a)]);
    let ev = fx.ev();
    let mut r = ev.open_retrieval(&by_id(id), 0).unwrap();
    // Recorded (and flushed) already, before a byte was read.
    let got = fx.entries(AuditKind::AttachmentRetrieved);
    assert_eq!(got.len(), 1);
    let e = &got[0];
    let sha = Digest(Sha256::digest(&a).into());
    assert_eq!(
        e.detail,
        format!("attachment 0 size {} sha256 {sha}", a.len())
    );
    assert_eq!(
        (e.actor, e.peer, e.message_id),
        (Actor::Operator, Some(peer(0)), Some(id))
    );
    assert_eq!(r.manifest.size, a.len() as u64);
    let (plain, aborted) = read_all(&mut r);
    assert!(aborted.is_none());
    assert_eq!(plain, a);
    assert_eq!(
        fx.entries(AuditKind::AttachmentRetrieved).len(),
        1,
        "one entry per read"
    );
    assert_eq!(fx.progress.counts().retrieved, 1);

    // A received one, once the message is in the inbox, with its digest.
    let b = data(2 * CHUNK, 6);
    let (rid, _) = fx.arriving(peer(1), 2, &[("image.dd", &b)], &[2]);
    fx.received_record(peer(1), rid);
    let mut r = ev.open_retrieval(&by_id(rid), 0).unwrap();
    assert_eq!(read_all(&mut r).0, b);
    let last = fx.entries(AuditKind::AttachmentRetrieved).pop().unwrap();
    assert_eq!(last.envelope_digest, Some(Digest([5; 32])));
    assert_eq!(last.peer, Some(peer(1)));
}

#[tokio::test]
async fn a_tampered_stored_chunk_stops_the_read_before_its_plaintext_and_is_recorded() {
    let fx = Fx::new().await;
    let b = data(5 * CHUNK, 7);
    let (id, _) = fx.arriving(peer(0), 1, &[("image.dd", &b)], &[5]);
    fx.received_record(peer(0), id);
    // One bit of chunk 2's ciphertext flipped on disk.
    let file = fx.received_path(peer(0), id, 0, "");
    let at = 2 * (CHUNK + TAG_BYTES as u64) + 10;
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&file)
        .unwrap();
    let mut byte = [0u8];
    f.read_exact_at(&mut byte, at).unwrap();
    f.write_all_at(&[byte[0] ^ 1], at).unwrap();

    let ev = fx.ev();
    let mut r = ev.open_retrieval(&by_id(id), 0).unwrap();
    let (plain, aborted) = read_all(&mut r);
    let aborted = aborted.expect("the read must fail");
    // Chunks 0 and 1, verified, and not one byte of chunk 2.
    assert_eq!(plain.len() as u64, 2 * CHUNK);
    assert_eq!(plain, b[..2 * CHUNK as usize]);
    assert_eq!(aborted.after, 2 * CHUNK);
    // Asked again, it hands out nothing more and records nothing more.
    assert!(r.next_piece(10).is_err());
    assert_eq!(r.done(), 2 * CHUNK);
    let got = fx.entries(AuditKind::AttachmentRetrieved);
    assert_eq!(got.len(), 2, "{got:?}");
    let sha = Digest(Sha256::digest(&b).into());
    let start = format!("attachment 0 size {} sha256 {sha}", b.len());
    assert_eq!(got[0].detail, start);
    assert!(
        got[1]
            .detail
            .starts_with(&format!("{start} aborted after {} bytes: ", 2 * CHUNK)),
        "{}",
        got[1].detail
    );
    assert!(got[1].detail.contains("chunk 2"), "{}", got[1].detail);
}

#[tokio::test]
async fn a_chunk_table_not_matching_the_signed_root_refuses_the_read_and_is_recorded() {
    let fx = Fx::new().await;
    let a = data(2 * CHUNK, 8);
    let id = fx.sent(1, &[("a.bin", &a)]);
    let held = fx.store.outbound_attachments(&id).unwrap();
    let path = fx.dir.sent_path(held[0].stored.unwrap());
    let len = fs::metadata(&path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0u8; 4], len - 4).unwrap();
    let e = fx.ev().open_retrieval(&by_id(id), 0).unwrap_err();
    assert!(matches!(e, RetrieveError::Unreadable { .. }), "{e}");
    let got = fx.entries(AuditKind::AttachmentRetrieved);
    assert_eq!(got.len(), 2);
    assert!(
        got[1].detail.contains("aborted after 0 bytes"),
        "{}",
        got[1].detail
    );
}

#[tokio::test]
async fn incomplete_and_unknown_attachments_are_refused_unrecorded() {
    let fx = Fx::new().await;
    let a = data(20, 9);
    let b = data(3 * CHUNK, 10);
    let (id, _) = fx.arriving(peer(0), 1, &[("a.txt", &a), ("b.bin", &b)], &[1, 1]);
    let ev = fx.ev();
    match ev.open_retrieval(&by_id(id), 1).unwrap_err() {
        RetrieveError::Incomplete { view, .. } => {
            assert_eq!(
                (view.state, view.bytes_done),
                (AttachmentState::Receiving, CHUNK)
            )
        }
        e => panic!("{e}"),
    }
    // Attachment 0 is complete, but the message is not received yet.
    assert!(matches!(
        ev.open_retrieval(&by_id(id), 0).unwrap_err(),
        RetrieveError::MessageArriving { .. }
    ));
    assert!(matches!(
        ev.open_retrieval(&by_id(id), 2).unwrap_err(),
        RetrieveError::NoSuchAttachment { count: 2, .. }
    ));
    assert!(matches!(
        ev.open_retrieval(&by_id(MessageId([3; 16])), 0)
            .unwrap_err(),
        RetrieveError::Find(FindError::NotFound(_))
    ));
    assert!(fx.entries(AuditKind::AttachmentRetrieved).is_empty());
}

#[tokio::test]
async fn the_message_proof_holds_its_read_outs_as_a_chain_of_custody() {
    use crate::audit::Proof;
    use comity_protocol::audit::custody::CustodyEvent;
    use comity_protocol::audit::proof_file::verify_inclusion_file;

    let fx = Fx::new().await;
    let b = data(2 * CHUNK + 3, 11);
    let (id, _) = fx.arriving(peer(0), 1, &[("image.dd", &b)], &[3]);
    fx.received_record(peer(0), id);
    let mut r = fx.ev().open_retrieval(&by_id(id), 0).unwrap();
    assert_eq!(read_all(&mut r).0, b);
    fx.audit.durable_checkpoint().await.unwrap();
    let Proof::File(json) = fx.audit.proof(&fx.node_id, id, Some(peer(0))).unwrap() else {
        panic!("no proof");
    };
    let report = verify_inclusion_file(&json).unwrap();
    assert!(report
        .entries
        .iter()
        .any(|e| e.kind == AuditKind::AttachmentRetrieved));
    assert_eq!(report.custody.len(), 1);
    let step = &report.custody[0].steps[0];
    assert_eq!(step.event, CustodyEvent::Retrieved);
    assert_eq!(step.size, Some(b.len() as u64));
    assert_eq!(step.sha256, Some(Digest(Sha256::digest(&b).into())));
    assert_eq!(step.envelope_digest, Some(Digest([5; 32])));
    assert!(report.custody[0].consistent);
}
