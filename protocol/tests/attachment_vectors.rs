//! Known answers for attachments: a small multi-chunk attachment (its key,
//! nonce prefix, chunks, tree, manifest) and the envelope that carries it.
//! Fixed keys and randomness must give exactly the bytes committed in
//! `vectors/kat-attachment-v1.json`, which `vectors/verify_kat.py` checks
//! independently. Regenerate deliberately with `COMITY_WRITE_VECTORS=1
//! cargo test -p comity-protocol --test attachment_vectors`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::PathBuf;

use comity_protocol::attachment::{
    chunk_leaf_hash, AttachmentLimits, ChunkTable, Opener, Sealer, TAG_BYTES,
};
use comity_protocol::codec;
use comity_protocol::domain::ATTACHMENT_CHUNK_AAD;
use comity_protocol::envelope::{check, seal_with_attachments};
use comity_protocol::message::{Body, Reply, Thread};
use comity_protocol::receipt::Receipt;
use comity_protocol::{Digest, MessageId, Timestamp};
use common::fixtures::*;
use serde_json::{json, Value};

/// 2 × 64 KiB + 1000 bytes: two full chunks and a short last one.
const SIZE: usize = 2 * 65_536 + 1000;

fn plaintext() -> Vec<u8> {
    (0..SIZE).map(|i| (i % 251) as u8).collect()
}

fn body() -> Body {
    Body::Reply(Reply {
        in_reply_to: MessageId([0x11; 16]),
        subject: "Execution: bank statements of Example Holdings Ltd".into(),
        body: "The statements for 2025 are attached.".into(),
        partial: false,
        thread: Thread::default(),
    })
}

fn compute() -> Value {
    let (from, to) = (borduria(), arcadia());
    let plain = plaintext();
    let mut sealer = Sealer::new(
        "bank-statements-2025.pdf",
        "application/pdf",
        SIZE as u64,
        &AttachmentLimits::default(),
        &mut rng(0x61),
    )
    .unwrap();
    let mut chunks = Vec::new();
    let mut at = 0;
    while let Some((_, len)) = sealer.next_chunk() {
        chunks.push(sealer.seal_chunk(plain[at..at + len].to_vec()).unwrap());
        at += len;
    }
    let sealed = sealer.finish().unwrap();
    let m = &sealed.manifest;
    let leaves: Vec<Digest> = chunks.iter().map(|c| c.leaf).collect();

    let id = MessageId([0x55; 16]);
    let created_at = Timestamp(NOW.0 + 3);
    let envelope = seal_with_attachments(
        &from,
        to.public(),
        id,
        created_at,
        &body(),
        std::slice::from_ref(&sealed),
        &AttachmentLimits::default(),
        &mut rng(0x62),
    )
    .unwrap();
    let checked = check(
        &envelope.bytes,
        &to,
        &pins(&[&from]),
        &no_history(),
        &policy(),
    )
    .unwrap();
    let env = checked.envelope.clone();
    let opened = checked.open(&to).unwrap();
    assert_eq!(opened.body, body());

    // The receiver's side, on the same bytes: table, then every chunk.
    let att = &opened.attachments[0];
    let table = ChunkTable::verify(att, &ChunkTable::encode(&leaves)).unwrap();
    let mut opener = Opener::new(att, table).unwrap();
    let mut back = Vec::new();
    for c in &chunks {
        back.extend(
            opener
                .open_chunk(c.index, c.ciphertext.clone())
                .unwrap()
                .plaintext,
        );
    }
    assert!(opener.is_complete());
    assert_eq!(back, plain);

    let receipt = Receipt::sign(&to, &opened, Timestamp(created_at.0 + 250)).unwrap();
    let mut list = Vec::new();
    codec::encode_into(&vec![m.clone()], &mut list).unwrap();
    let key = &sealed.key;
    let chunk_json: Vec<Value> = chunks
        .iter()
        .map(|c| {
            let mut nonce = key.nonce_prefix().to_vec();
            nonce.extend_from_slice(&(c.index as u32).to_be_bytes());
            nonce.push(u8::from(c.last));
            let n = c.ciphertext.len();
            json!({
                "index": c.index,
                "last": c.last,
                "nonce": hex::encode(&nonce),
                "plaintext_len": n - TAG_BYTES,
                "leaf_hash": c.leaf.to_string(),
                "tag": hex::encode(&c.ciphertext[n - TAG_BYTES..]),
                "ciphertext": hex::encode(&c.ciphertext),
            })
        })
        .collect();
    // The leaf of chunk 0, recomputed the direct way.
    assert_eq!(leaves[0], chunk_leaf_hash(&plain[..65_536]));

    json!({
        "comment": "Comity known answers for attachments (docs/protocol.md §11): one 132072-byte attachment in 64 KiB chunks, sealed with STREAM (ChaCha20-Poly1305, nonce = prefix[7] || u32 BE index || last flag), carried in a reply from Borduria to Arcadia. Identities as in kat-v1.json. All byte strings are lowercase hex.",
        "identities": {
            "arcadia": { "identity_seed": hex::encode([0xa1; 32]), "encryption_seed": hex::encode([0xa2; 32]) },
            "borduria": { "identity_seed": hex::encode([0xb1; 32]), "encryption_seed": hex::encode([0xb2; 32]) },
        },
        "attachment": {
            "plaintext_rule": "byte i is i mod 251",
            "size": m.size,
            "name": m.name,
            "media_type": m.media_type,
            "chunk_size": m.chunk_size,
            "rng": "ChaCha20 (rand_chacha 0.9) seeded with 32 bytes of 0x61: 32 bytes content key, then 7 bytes nonce prefix",
            "content_key": hex::encode(key.key_bytes()),
            "nonce_prefix": hex::encode(key.nonce_prefix()),
            "aad": hex::encode(ATTACHMENT_CHUNK_AAD),
            "chunks": chunk_json,
            "chunk_table": hex::encode(ChunkTable::encode(&leaves)),
            "tree_root": m.tree_root.to_string(),
            "sha256": m.sha256.to_string(),
            "manifest_list_encoding": hex::encode(&list),
        },
        "envelope": {
            "sender_node_id": from.id().to_string(),
            "recipient_node_id": to.id().to_string(),
            "message_id": id.to_string(),
            "created_at": created_at.0,
            "rng": "ChaCha20 (rand_chacha 0.9) seeded with 32 bytes of 0x62: 32 bytes commitment salt, then HPKE ephemeral key",
            "body_json": serde_json::to_value(body()).unwrap(),
            "committed_plaintext": hex::encode(&opened.proof.plaintext),
            "body_commitment": env.body_commitment.to_string(),
            "encapsulated_key": hex::encode(env.encapsulated_key),
            "ciphertext_digest": env.ciphertext_digest().to_string(),
            "envelope": hex::encode(&envelope.bytes),
            "envelope_digest": envelope.digest.to_string(),
            "receipt_received_at": created_at.0 + 250,
            "receipt": hex::encode(receipt.to_bytes().unwrap()),
        },
    })
}

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/kat-attachment-v1.json")
}

#[test]
fn attachment_vectors_match_the_committed_file() {
    let computed = compute();
    if std::env::var_os("COMITY_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&computed).unwrap() + "\n";
        std::fs::write(path(), text).unwrap();
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(path()).expect("vectors/kat-attachment-v1.json is committed"),
    )
    .unwrap();
    for part in ["identities", "attachment", "envelope"] {
        for (field, value) in committed[part].as_object().unwrap() {
            assert_eq!(&computed[part][field], value, "{part}.{field}");
        }
        assert_eq!(
            committed[part].as_object().unwrap().len(),
            computed[part].as_object().unwrap().len(),
            "{part}: fields"
        );
    }
}

/// The committed bytes themselves open with the current code.
#[test]
fn committed_attachment_opens() {
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let (from, to) = (borduria(), arcadia());
    let e = &committed["envelope"];
    let bytes = hex::decode(e["envelope"].as_str().unwrap()).unwrap();
    let opened = check(&bytes, &to, &pins(&[&from]), &no_history(), &policy())
        .unwrap()
        .open(&to)
        .unwrap();
    let a = &committed["attachment"];
    let att = &opened.attachments[0];
    assert_eq!(att.manifest().tree_root.to_string(), a["tree_root"]);
    let table = ChunkTable::verify(
        att,
        &hex::decode(a["chunk_table"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let mut o = Opener::new(att, table).unwrap();
    let mut back = Vec::new();
    for c in a["chunks"].as_array().unwrap() {
        let ct = hex::decode(c["ciphertext"].as_str().unwrap()).unwrap();
        back.extend(
            o.open_chunk(c["index"].as_u64().unwrap(), ct)
                .unwrap()
                .plaintext,
        );
    }
    assert!(o.is_complete());
    assert_eq!(back, plaintext());
}
