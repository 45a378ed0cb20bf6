//! No decoder of this crate panics, whatever it is given (design brief,
//! envelope property 5 and the bad-input policy).
//!
//! Every public decoder gets at least 10,000 inputs of three sorts:
//! * purely random bytes or text, which mostly die at the magic or the
//!   first check;
//! * random bytes behind a correct frame header, so that bincode itself
//!   sees them;
//! * mutations of valid encodings (sealed envelopes, receipts, encryption
//!   key certificates, origin proofs, bodies, key files, node ids): bytes
//!   overwritten, bits flipped, runs inserted, deleted or duplicated, the
//!   tail cut off, u64 length fields replaced or spliced in. These get deep.
//!
//! Besides "returns instead of panicking", each test checks what must hold
//! for whatever does decode:
//! * a mutated envelope, receipt, certificate or origin proof is never
//!   accepted unless its bytes are exactly the original's;
//! * everything that decodes re-encodes to the same bytes (the codec is
//!   canonical, so the sender's and the receiver's digests agree);
//! * parsed strings print and parse back to themselves.
//!
//! One test plays a pinned but malicious peer: it signs and encrypts
//! arbitrary plaintext (random bytes, mutated body encodings, a body whose
//! kind disagrees with the header) so that `open` has to decode and
//! validate garbage that passed the outer check.
//!
//! A failure prints the offending input in hex.

mod common;

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use comity_protocol::codec::{self, FrameType, MAX_FRAME_BYTES};
use comity_protocol::envelope::{check, seal, Envelope, EnvelopeHeader, OriginProof, SignedPart};
use comity_protocol::identity::ParseNodeIdError;
use comity_protocol::message::{
    Body, Date, IccsCode, Language, LegalBasis, MessageKind, RequestType, Urgency,
};
use comity_protocol::receipt::Receipt;
use comity_protocol::session::{
    peek_envelope_id, RejectReason, SessionFrame, WitnessRefusal, LENGTH_PREFIX,
};
use comity_protocol::{
    domain, Digest, EncryptionKeyCert, Identity, MessageId, NodeId, PeerKeys, Timestamp,
};
use common::fixtures::*;
use common::strategies::any_body;
use ed25519_dalek::Signer as _;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable as _, OpModeS, Serializable as _};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// At least 10,000 cases per decoder, more where a case is cheap and the
/// decoder is one a peer reaches. No regression files are written (a
/// failure prints its minimal input instead).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Valid encodings to mutate, built once.

/// A valid envelope Borduria received, with everything derived from it.
struct Sample {
    bytes: Vec<u8>,
    body: Body,
    /// Borduria's receipt for it, framed.
    receipt: Vec<u8>,
    /// The origin proof Borduria got on opening it, encoded.
    proof: Vec<u8>,
}

struct World {
    arcadia: Identity,
    borduria: Identity,
    carpania: Identity,
    /// Borduria's pins: Arcadia and Carpania.
    pins: HashMap<NodeId, PeerKeys>,
    /// Borduria's de-duplication index, holding every sample.
    seen: HashMap<(NodeId, MessageId), Digest>,
    samples: Vec<Sample>,
    certs: Vec<Vec<u8>>,
    key_files: Vec<String>,
    node_ids: Vec<String>,
}

static WORLD: LazyLock<World> = LazyLock::new(World::new);

fn world() -> &'static World {
    &WORLD
}

impl World {
    fn new() -> World {
        let (a, b, c) = (arcadia(), borduria(), carpania());
        let pins = pins(&[&a, &c]);
        let mut runner = TestRunner::deterministic();
        let mut bodies = vec![mla_request(1), mla_request(300)];
        for _ in 0..10 {
            let tree = any_body()
                .new_tree(&mut runner)
                .expect("body strategy generates");
            bodies.push(tree.current());
        }
        let mut samples = Vec::new();
        let mut seen = HashMap::new();
        for (i, body) in bodies.into_iter().enumerate() {
            let n = u8::try_from(i).expect("few samples");
            let sender = if i % 2 == 0 { &a } else { &c };
            let id = MessageId([n; 16]);
            let created_at = Timestamp(NOW.0 - 1000 * u64::from(n));
            let sealed =
                seal(sender, b.public(), id, created_at, &body, &mut rng(n)).expect("sample seals");
            let checked = check(&sealed.bytes, &b, &pins, &no_history(), &policy())
                .expect("sample passes the check");
            let opened = checked.open(&b).expect("sample opens");
            let receipt = Receipt::sign(&b, &opened, NOW)
                .expect("a file key signs")
                .to_bytes()
                .expect("receipt encodes");
            let proof = opened.proof.to_bytes().expect("proof encodes");
            seen.insert((sender.id(), id), sealed.digest);
            samples.push(Sample {
                bytes: sealed.bytes,
                body,
                receipt,
                proof,
            });
        }
        let rotated = Identity::from_seeds(&[0xb1; 32], &[0xbb; 32], Timestamp(u64::MAX));
        let certs = [&a, &b, &c, &rotated]
            .iter()
            .map(|i| i.encryption_cert().to_bytes())
            .collect();
        let key_files = [&a, &b, &c, &rotated]
            .iter()
            .map(|i| i.to_key_file().as_str().to_owned())
            .collect();
        let node_ids = [&a, &b, &c].iter().map(|i| i.id().to_string()).collect();
        World {
            arcadia: a,
            borduria: b,
            carpania: c,
            pins,
            seen,
            samples,
            certs,
            key_files,
            node_ids,
        }
    }

    fn identities(&self) -> [&Identity; 3] {
        [&self.arcadia, &self.borduria, &self.carpania]
    }
}

// ---------------------------------------------------------------------------
// Mutations.

/// A value for a u64 field: absolute, or relative to what was there (an
/// off-by-a-few length shifts every later field).
#[derive(Clone, Debug)]
enum U64 {
    Abs(u64),
    Delta(i16),
}

impl U64 {
    fn resolve(&self, old: u64) -> u64 {
        match self {
            U64::Abs(v) => *v,
            U64::Delta(d) => old.wrapping_add_signed(i64::from(*d)),
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Overwrite(Index, u8),
    FlipBit(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Duplicate {
        from: Index,
        len: usize,
        to: Index,
    },
    Truncate(Index),
    /// Overwrites 8 bytes with a u64 (LE). With `plausible`, the position
    /// is one whose 8 bytes already read as a length that fits the rest of
    /// the input, i.e. most likely a real length field.
    SetU64 {
        at: Index,
        plausible: bool,
        value: U64,
    },
    InsertU64(Index, U64),
}

fn any_u64() -> impl Strategy<Value = U64> {
    let frame = MAX_FRAME_BYTES as u64;
    prop_oneof![
        prop_oneof![
            Just(0u64),
            Just(1),
            0u64..300,
            Just(u64::from(u32::MAX)),
            Just(u64::from(u32::MAX) + 1),
            Just(u64::MAX),
            Just(u64::MAX - 7),
            Just(1 << 63),
            Just(frame),
            Just(frame + 1),
            Just(frame / 24),
            (1u64 << 20)..(1u64 << 40),
            any::<u64>(),
        ]
        .prop_map(U64::Abs),
        (-16i16..=16).prop_map(U64::Delta),
    ]
}

/// A byte to write: any, or one that keeps text UTF-8 but may break a rule
/// of the model (controls, blanks, digits, ends of ranges), so that mutated
/// encodings get past the decoder to `validate`.
fn any_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        select(vec![
            0x00, 0x01, b'\t', b'\n', b'\r', 0x1b, b' ', b'-', b':', b'0', b'1', b'9', b'A', b'a',
            b'z', 0x7f, 0x80, 0xc2, 0xff,
        ]),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), any_byte()).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        2 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        2 => (any::<Index>(), vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<Index>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => (any::<Index>(), 1usize..64, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        3 => (any::<Index>(), any::<bool>(), any_u64())
            .prop_map(|(at, plausible, value)| Mutation::SetU64 { at, plausible, value }),
        1 => (any::<Index>(), any_u64()).prop_map(|(i, v)| Mutation::InsertU64(i, v)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    vec(mutation(), 1..=4)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn apply(original: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = original.to_vec();
    for m in mutations {
        apply_one(&mut b, m);
    }
    b
}

fn apply_one(b: &mut Vec<u8>, m: &Mutation) {
    let len = b.len();
    match m {
        Mutation::Overwrite(i, v) if len > 0 => b[i.index(len)] = *v,
        Mutation::FlipBit(i, bit) if len > 0 => b[i.index(len)] ^= 1 << bit,
        Mutation::Insert(i, bytes) => {
            let p = i.index(len + 1);
            b.splice(p..p, bytes.iter().copied());
        }
        Mutation::Delete(i, n) if len > 0 => {
            let p = i.index(len);
            b.drain(p..(p + n).min(len));
        }
        Mutation::Duplicate { from, len: n, to } if len > 0 => {
            let p = from.index(len);
            let chunk = b[p..(p + n).min(len)].to_vec();
            let q = to.index(len + 1);
            b.splice(q..q, chunk);
        }
        Mutation::Truncate(i) => b.truncate(i.index(len + 1)),
        Mutation::SetU64 {
            at,
            plausible,
            value,
        } if len >= 8 => {
            let candidates: Vec<usize> = if *plausible {
                (0..=len - 8)
                    .filter(|&p| {
                        let v = read_u64(b, p);
                        v > 0 && v <= (len - p - 8) as u64
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let p = if candidates.is_empty() {
                at.index(len - 7)
            } else {
                candidates[at.index(candidates.len())]
            };
            let new = value.resolve(read_u64(b, p));
            b[p..p + 8].copy_from_slice(&new.to_le_bytes());
        }
        Mutation::InsertU64(i, value) => {
            let p = i.index(len + 1);
            b.splice(p..p, value.resolve(0).to_le_bytes());
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Input strategies.

fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..600)
}

/// Random bytes behind a correct frame header for `ty` (and now and then
/// a header for another type or version, or a cut-off header).
fn framed_random(ty: FrameType) -> impl Strategy<Value = Vec<u8>> {
    let ty = ty as u8;
    (
        prop_oneof![8 => Just(ty), 1 => 0u8..5],
        prop_oneof![8 => Just(codec::VERSION), 1 => any::<u8>()],
        0usize..=codec::FRAME_HEADER_LEN + 1,
        random_bytes(),
    )
        .prop_map(|(ty, version, header_len, rest)| {
            let mut v = codec::MAGIC.to_vec();
            v.push(version);
            v.push(ty);
            v.truncate(header_len);
            v.extend(rest);
            v
        })
}

/// Random, framed random, or a mutation of one of `originals`.
fn bytes_like(
    frame: Option<FrameType>,
    originals: fn(&'static World) -> Vec<&'static [u8]>,
) -> impl Strategy<Value = Vec<u8>> {
    let framed = match frame {
        Some(ty) => framed_random(ty).boxed(),
        None => random_bytes().boxed(),
    };
    let originals = originals(world());
    prop_oneof![
        1 => random_bytes(),
        1 => framed,
        6 => (select(originals), mutations()).prop_map(|(o, ms)| apply(o, &ms)),
    ]
}

fn envelope_bytes(w: &'static World) -> Vec<&'static [u8]> {
    w.samples.iter().map(|s| s.bytes.as_slice()).collect()
}

fn receipt_bytes(w: &'static World) -> Vec<&'static [u8]> {
    w.samples.iter().map(|s| s.receipt.as_slice()).collect()
}

fn proof_bytes(w: &'static World) -> Vec<&'static [u8]> {
    w.samples.iter().map(|s| s.proof.as_slice()).collect()
}

/// Session frames as they go on a stream, without the length prefix.
fn session_bytes(w: &'static World) -> Vec<&'static [u8]> {
    static FRAMES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    FRAMES
        .get_or_init(|| {
            let mut v: Vec<Vec<u8>> = w
                .samples
                .iter()
                .flat_map(|s| {
                    [
                        SessionFrame::Envelope(s.bytes.clone()),
                        SessionFrame::Receipt(s.receipt.clone()),
                        // The signature's bytes are mutated like the rest;
                        // a valid one is not needed to reach the decoder.
                        SessionFrame::ResentEnvelope {
                            envelope: s.bytes.clone(),
                            original: MessageId([0xee; 16]),
                            signature: [7; 64],
                        },
                    ]
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|f| f.to_wire().expect("encodes")[LENGTH_PREFIX..].to_vec())
                .collect();
            // One valid frame of every other kind, so mutations reach past
            // the variant tag into their fields.
            let cert = EncryptionKeyCert::from_bytes(&w.certs[0]).expect("sample cert");
            let others = [
                SessionFrame::Rejected {
                    id: Some(MessageId([1; 16])),
                    reason: RejectReason::IdReused,
                    detail: "id reused".into(),
                },
                SessionFrame::Hello { cert },
                SessionFrame::Checkpoint {
                    note: "comity.invalid/abc\n7\nq83vEjRWeJASNFZ4kBI0VniQEjRWeJASNFZ4kBI0Vng=\n\n\u{2014} comity.invalid/abc AAAAAA==\n".into(),
                    old_size: 3,
                    proof: vec![Digest([5; 32]), Digest([6; 32])],
                },
                SessionFrame::Cosigned {
                    size: 7,
                    line: "\u{2014} comity.invalid/def AAAAAAAAAAAA\n".into(),
                },
                SessionFrame::CheckpointRefused {
                    size: 7,
                    witnessed_size: 9,
                    reason: WitnessRefusal::Fork,
                    detail: "fork".into(),
                },
            ];
            v.extend(
                others
                    .into_iter()
                    .map(|f| f.to_wire().expect("encodes")[LENGTH_PREFIX..].to_vec()),
            );
            v
        })
        .iter()
        .map(Vec::as_slice)
        .collect()
}

fn cert_bytes(w: &'static World) -> Vec<&'static [u8]> {
    w.certs.iter().map(Vec::as_slice).collect()
}

/// `any_body()` behind a box: its value tree is a deeply nested type whose
/// frames, unoptimised, overflow a test thread's stack inside larger tuples.
fn boxed_body() -> BoxedStrategy<Body> {
    any_body().boxed()
}

fn body_encoding(body: &Body) -> Vec<u8> {
    codec::encode(body).expect("bodies encode")
}

/// Bytes for the body decoder: random, random behind a valid variant tag,
/// or a mutated encoding of an arbitrary valid body.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => random_bytes(),
        1 => (0u32..6, random_bytes()).prop_map(|(tag, rest)| {
            let mut v = tag.to_le_bytes().to_vec();
            v.extend(rest);
            v
        }),
        6 => (boxed_body(), mutations()).prop_map(|(body, ms)| apply(&body_encoding(&body), &ms)),
    ]
}

/// The plaintext a malicious peer encrypts: `salt ‖ encode(body)` with the
/// body mutated, or not at all, or random bytes of any length.
fn plaintext_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..200),
        2 => (any::<[u8; 32]>(), boxed_body()).prop_map(|(salt, body)| {
            let mut v = salt.to_vec();
            v.extend(body_encoding(&body));
            v
        }),
        5 => (any::<[u8; 32]>(), boxed_body(), mutations()).prop_map(|(salt, body, ms)| {
            let mut v = salt.to_vec();
            v.extend(apply(&body_encoding(&body), &ms));
            v
        }),
    ]
}

/// Text as it could come from a file or a command line: arbitrary Unicode
/// (controls included), or arbitrary bytes read lossily.
fn random_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "(?s).{0,80}",
        "\\PC{0,80}",
        random_bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

// ---------------------------------------------------------------------------
// A pinned peer that signs whatever it likes.

/// Builds an envelope the way `seal` does but around arbitrary plaintext
/// and an arbitrary header: it passes the outer check (the sender is
/// pinned and the signature is real) and leaves everything else to `open`.
fn sign_arbitrary(
    sender: &Identity,
    recipient: &PeerKeys,
    header: EnvelopeHeader,
    plaintext: &[u8],
    seed: u8,
) -> Vec<u8> {
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&recipient.cert().public_key)
        .expect("pinned peers have valid keys");
    let body_commitment = Digest::of(domain::BODY_COMMITMENT, &[plaintext]);
    let mut aad = domain::ENVELOPE_AAD.to_vec();
    aad.extend(codec::encode(&header).expect("headers encode"));
    aad.extend_from_slice(body_commitment.as_bytes());
    let mut ciphertext = plaintext.to_vec();
    let (enc, tag) = hpke::single_shot_seal_in_place_detached::<
        ChaCha20Poly1305,
        HkdfSha256,
        X25519HkdfSha256,
        _,
    >(
        &OpModeS::Base,
        &pk,
        domain::HPKE_INFO,
        &mut ciphertext,
        &aad,
        &mut rng(seed),
    )
    .expect("HPKE seals");
    ciphertext.extend_from_slice(&tag.to_bytes());
    let mut envelope = Envelope {
        header,
        encapsulated_key: enc.to_bytes().into(),
        body_commitment,
        ciphertext,
        signature: [0; 64],
    };
    let signed = SignedPart {
        header: envelope.header.clone(),
        body_commitment,
        ciphertext_digest: envelope.ciphertext_digest(),
    };
    let mut input = domain::ENVELOPE_SIGNATURE.to_vec();
    input.extend(codec::encode(&signed).expect("signed parts encode"));
    let key = ed25519_dalek::SigningKey::from_bytes(&sender.ed25519_secret().expect("a file key"));
    envelope.signature = key.sign(&input).to_bytes();
    envelope.to_bytes().expect("envelopes encode")
}

// ---------------------------------------------------------------------------
// Key files, node ids, message ids, CLI values.

fn key_file_line() -> impl Strategy<Value = String> {
    let w = world();
    let valid: Vec<String> = w
        .key_files
        .iter()
        .flat_map(|f| f.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    prop_oneof![
        4 => select(valid),
        1 => Just("comity-secret-keys v1".to_owned()),
        2 => (
            "(node-id|identity-seed|encryption-seed|encryption-created-at|comity-secret-keys|#|)",
            "[ \t]{0,2}",
            "\\PC{0,80}",
        )
            .prop_map(|(f, s, v)| format!("{f}{s}{v}")),
        2 => ("(identity|encryption)-seed", vec(any::<u8>(), 30..35), "[ \t]{1,2}")
            .prop_map(|(f, b, s)| format!("{f}{s}{}", BASE64.encode(b))),
        1 => any::<u64>().prop_map(|t| format!("encryption-created-at {t}")),
        1 => any::<[u8; 32]>().prop_map(|k| format!("node-id {}", NodeId(k))),
        1 => "(?s).{0,60}",
    ]
}

fn key_file_text() -> impl Strategy<Value = String> {
    let w = world();
    let originals: Vec<&'static [u8]> = w.key_files.iter().map(|f| f.as_bytes()).collect();
    prop_oneof![
        1 => random_text(),
        3 => (any::<bool>(), vec(key_file_line(), 0..8), select(vec!["\n", "\r\n"]))
            .prop_map(|(header, mut lines, nl)| {
                if header {
                    lines.insert(0, "comity-secret-keys v1".to_owned());
                }
                lines.join(nl)
            }),
        4 => (select(originals), mutations())
            .prop_map(|(o, ms)| String::from_utf8_lossy(&apply(o, &ms)).into_owned()),
    ]
}

const NODE_ID_CHARS: &str = "abcdefghijklmnopqrstuvwxyz234567ABCXYZ-- \t01890_é";

/// A printed node id with characters replaced, inserted or removed.
fn mutated_node_id() -> impl Strategy<Value = String> {
    let chars: Vec<char> = NODE_ID_CHARS.chars().collect();
    (
        select(world().node_ids.clone()),
        vec((any::<Index>(), select(chars), 0u8..3), 1..4),
    )
        .prop_map(|(id, edits)| {
            let mut s: Vec<char> = id.chars().collect();
            for (i, c, op) in edits {
                match op {
                    0 if !s.is_empty() => {
                        let p = i.index(s.len());
                        s[p] = c;
                    }
                    1 => s.insert(i.index(s.len() + 1), c),
                    _ if !s.is_empty() => {
                        s.remove(i.index(s.len()));
                    }
                    _ => {}
                }
            }
            s.into_iter().collect()
        })
}

/// How an operator might retype a node id: any case, dashes, spaces.
fn reformat(printed: &str, upper: bool, sep: &str) -> String {
    let s = printed.replace('-', sep);
    if upper {
        s.to_ascii_uppercase()
    } else {
        s
    }
}

/// Strings for the `FromStr` of every CLI value: arbitrary text, the valid
/// names in any case and padding, `other:`/`treaty:` with any text,
/// date-, language- and ICCS-shaped strings.
fn value_string() -> impl Strategy<Value = String> {
    let names: Vec<&'static str> = RequestType::NAMES
        .iter()
        .chain(LegalBasis::NAMES)
        .chain(MessageKind::NAMES)
        .chain(Urgency::NAMES)
        .copied()
        .collect();
    prop_oneof![
        2 => random_text(),
        2 => (select(names), any::<u64>(), "[ \t\n]{0,2}", "[ \t\n]{0,2}").prop_map(
            |(name, case, pre, post)| {
                let varied: String = name
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if (case >> (i % 64)) & 1 == 1 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect();
                format!("{pre}{varied}{post}")
            }
        ),
        2 => (
            "[ ]?(other|treaty|OTHER|Treaty|othe|treaties|mla)[ ]?",
            "[:;]?",
            prop_oneof!["(?s).{0,300}", "\\PC{0,300}", "[ ]{0,3}x{250,260}[ ]{0,3}"],
        )
            .prop_map(|(p, colon, text)| format!("{p}{colon}{text}")),
        1 => "[ ]?[0-9]{4}-[0-9]{2}-[0-9]{2}[ ]?",
        1 => "[0-9-]{8,12}",
        1 => "[ ]?[a-zA-Z]{1,4}(-[a-zA-Z0-9]{1,9}){0,5}[ ]?",
        1 => "[ ]?[0-9]{1,7}[ ]?",
    ]
}

/// `s.parse::<T>()`, and if it worked, the value prints and parses back.
fn parses_back<T>(s: &str) -> Result<Option<T>, TestCaseError>
where
    T: std::str::FromStr + std::fmt::Display + std::fmt::Debug + PartialEq,
    T::Err: std::fmt::Debug,
{
    match s.parse::<T>() {
        Err(_) => Ok(None),
        Ok(v) => {
            let printed = v.to_string();
            match printed.parse::<T>() {
                Ok(back) => {
                    prop_assert_eq!(&back, &v, "{:?} printed as {:?}", s, printed);
                    Ok(Some(v))
                }
                Err(e) => Err(TestCaseError::fail(format!(
                    "{s:?} parsed as {v:?}, printed as {printed:?}, which does not parse: {e:?}"
                ))),
            }
        }
    }
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

// ---------------------------------------------------------------------------
// The properties.

proptest! {
    #![proptest_config(config(30_000))]

    /// `Envelope::from_bytes`, `check` and `open`, as Borduria receives.
    #[test]
    fn envelope_check_and_open(bytes in bytes_like(Some(FrameType::Envelope), envelope_bytes)) {
        let w = world();
        let hex = hex::encode(&bytes);
        if let Ok(env) = Envelope::from_bytes(&bytes) {
            prop_assert_eq!(env.to_bytes().ok(), Some(bytes.clone()), "non-canonical: {}", hex);
        }
        let original = w.samples.iter().position(|s| s.bytes == bytes);
        let opened = check(&bytes, &w.borduria, &w.pins, &no_history(), &policy())
            .and_then(|c| c.open(&w.borduria));
        match (opened, original) {
            (Ok(m), Some(i)) => prop_assert_eq!(&m.body, &w.samples[i].body),
            (Err(_), None) => {}
            (Ok(m), None) => {
                return Err(fail(format!("altered envelope opened: {:?}\n{hex}", m.header)))
            }
            (Err(e), Some(_)) => return Err(fail(format!("original refused: {}", e))),
        }
        // Everything valid has been seen already; nothing else verifies.
        prop_assert!(check(&bytes, &w.borduria, &w.pins, &w.seen, &policy()).is_err(), "{}", hex);
        // Nor is anything accepted by a node it is not addressed to.
        let c_pins = pins(&[&w.arcadia, &w.borduria]);
        prop_assert!(check(&bytes, &w.carpania, &c_pins, &no_history(), &policy()).is_err());
    }

    /// `Receipt::from_bytes`, then every verification a sender or third
    /// party can run: only an unaltered receipt verifies.
    #[test]
    fn receipt_decode_and_verify(bytes in bytes_like(Some(FrameType::Receipt), receipt_bytes)) {
        let w = world();
        let hex = hex::encode(&bytes);
        let original = w.samples.iter().position(|s| s.receipt == bytes);
        match Receipt::from_bytes(&bytes) {
            Ok(r) => {
                prop_assert_eq!(r.to_bytes().ok(), Some(bytes.clone()), "non-canonical: {}", hex);
                let verifies = w
                    .identities()
                    .iter()
                    .any(|i| r.verify_signature_only(i.public()).is_ok());
                prop_assert_eq!(verifies, original.is_some(), "{}", hex);
                for sender in [&w.arcadia, &w.carpania] {
                    let s = &r.statement;
                    let b = w.borduria.public();
                    let full = r.verify(&sender.id(), b, &s.message_id, &s.envelope_digest);
                    prop_assert!(full.is_err() || original.is_some(), "{}", hex);
                }
            }
            Err(_) => prop_assert!(original.is_none(), "original refused"),
        }
    }

    /// What a peer's stream delivers: the length prefix, then the frame,
    /// and the id peek used to refuse oversize envelopes by name.
    #[test]
    fn session_frame_decode(bytes in bytes_like(Some(FrameType::Session), session_bytes)) {
        if bytes.len() >= LENGTH_PREFIX {
            let prefix: [u8; LENGTH_PREFIX] = bytes[..LENGTH_PREFIX].try_into().unwrap();
            let _ = SessionFrame::length(prefix, 1 << 20);
        }
        let peeked = peek_envelope_id(&bytes);
        if let Ok(f) = SessionFrame::from_bytes(&bytes) {
            if let SessionFrame::Envelope(e) | SessionFrame::ResentEnvelope { envelope: e, .. } = &f {
                // The peek names the envelope the frame carries.
                if let Ok(env) = Envelope::from_bytes(e) {
                    prop_assert_eq!(peeked, Some(env.header.id));
                }
            }
            let wire = f.to_wire().map_err(|e| fail(e.to_string()))?;
            prop_assert_eq!(&wire[LENGTH_PREFIX..], &bytes[..], "non-canonical session frame");
        }
    }

    /// `OriginProof::from_bytes` and `verify`, as an auditor would.
    #[test]
    fn origin_proof_decode_and_verify(bytes in bytes_like(None, proof_bytes)) {
        let w = world();
        let hex = hex::encode(&bytes);
        let original = w.samples.iter().find(|s| s.proof == bytes);
        match OriginProof::from_bytes(&bytes) {
            Ok(proof) => {
                let again = proof.to_bytes().ok();
                prop_assert_eq!(again, Some(bytes.clone()), "non-canonical: {}", hex);
                match (proof.verify(), original) {
                    (Ok(body), Some(s)) => prop_assert_eq!(&body, &s.body),
                    (Err(_), None) => {}
                    (Ok(body), None) => {
                        return Err(fail(format!("altered proof verified: {body:?}\n{hex}")))
                    }
                    (Err(e), Some(_)) => return Err(fail(format!("original proof refused: {}", e))),
                }
            }
            Err(_) => prop_assert!(original.is_none(), "original refused"),
        }
    }

    /// `codec::decode::<Body>` and `Body::validate`, then what a node does
    /// with a valid body: show it as JSON.
    #[test]
    fn body_decode_and_validate(bytes in body_bytes()) {
        let hex = hex::encode(&bytes);
        if let Ok(body) = codec::decode::<Body, MAX_FRAME_BYTES>(&bytes) {
            prop_assert_eq!(&body_encoding(&body), &bytes, "non-canonical: {}", hex);
            let _ = (body.kind(), body.subject(), body.thread());
            if body.validate().is_ok() {
                let json = serde_json::to_string(&body).expect("bodies serialise");
                let back: Result<Body, _> = serde_json::from_str(&json);
                prop_assert_eq!(back.as_ref().ok(), Some(&body), "{} -> {}", hex, json);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(10_000))]

    /// A pinned sender signs arbitrary plaintext: `open` must decode and
    /// validate it exactly as the body decoder would, and the origin proof
    /// of whatever opens must verify to the same body.
    #[test]
    fn open_from_a_malicious_pinned_peer(
        plaintext in plaintext_bytes(),
        kind in select(MessageKind::ALL.to_vec()),
        from_carpania in any::<bool>(),
        seed in any::<u8>(),
    ) {
        let w = world();
        let sender = if from_carpania { &w.carpania } else { &w.arcadia };
        let header = EnvelopeHeader {
            sender: sender.id(),
            recipient: w.borduria.id(),
            recipient_key: w.borduria.encryption_cert().public_key,
            id: MessageId([seed; 16]),
            kind,
            created_at: NOW,
        };
        let bytes = sign_arbitrary(sender, w.borduria.public(), header, &plaintext, seed);
        let checked = check(&bytes, &w.borduria, &w.pins, &no_history(), &policy());
        let checked = match checked {
            Ok(c) => c,
            Err(e) => return Err(fail(format!("signed by a pinned peer, refused: {e}"))),
        };

        let expected = plaintext
            .get(32..)
            .and_then(|b| codec::decode::<Body, MAX_FRAME_BYTES>(b).ok())
            .filter(|b| b.kind() == kind && b.validate().is_ok());
        let hex = hex::encode(&plaintext);
        match (checked.open(&w.borduria), expected) {
            (Ok(m), Some(b)) => {
                prop_assert_eq!(&m.body, &b);
                prop_assert_eq!(m.proof.verify().ok(), Some(b.clone()));
                let proof = OriginProof::from_bytes(&m.proof.to_bytes().expect("proof encodes"));
                prop_assert_eq!(proof.as_ref().ok(), Some(&m.proof));
            }
            (Err(_), None) => {}
            (Ok(m), None) => {
                return Err(fail(format!("opened an invalid body {:?}\n{hex}", m.body)))
            }
            (Err(e), Some(b)) => {
                return Err(fail(format!("refused a valid body {b:?}: {e}\n{hex}")))
            }
        }
    }

    /// `EncryptionKeyCert::from_bytes`, `verify` and `PeerKeys::new`.
    #[test]
    fn encryption_key_cert_decode_and_verify(
        bytes in bytes_like(Some(FrameType::EncryptionKeyCert), cert_bytes)
    ) {
        let w = world();
        let hex = hex::encode(&bytes);
        let original = w.certs.contains(&bytes);
        match EncryptionKeyCert::from_bytes(&bytes) {
            Ok(cert) => {
                prop_assert_eq!(&cert.to_bytes(), &bytes, "non-canonical: {}", hex);
                prop_assert_eq!(cert.verify().is_ok(), original, "{}", hex);
                let peer = PeerKeys::new(cert.node, cert.clone());
                prop_assert_eq!(peer.is_ok(), original, "{}", hex);
            }
            Err(_) => prop_assert!(!original, "original refused"),
        }
    }

    /// `Identity::from_key_file` on any text; what loads, saves and loads
    /// back as the same identity.
    #[test]
    fn key_file_parse(text in key_file_text()) {
        if let Ok(identity) = Identity::from_key_file(&text) {
            let again = Identity::from_key_file(&identity.to_key_file())
                .map_err(|e| fail(format!("{text:?} loaded, saved, then: {e}")))?;
            prop_assert_eq!(again.id(), identity.id());
            prop_assert_eq!(again.encryption_cert(), identity.encryption_cert());
        }
    }

    /// `NodeId::from_str` on any text, on mistyped ids, and on correctly
    /// printed ids of arbitrary 32-byte strings (valid points or not).
    #[test]
    fn node_id_parse(
        s in prop_oneof![random_text(), mutated_node_id()],
        key in any::<[u8; 32]>(),
        upper in any::<bool>(),
        sep in select(vec!["-", "", " ", " - ", "\t"]),
    ) {
        if let Ok(id) = s.parse::<NodeId>() {
            let cleaned: String = s
                .chars()
                .filter(|c| !matches!(c, '-' | ' ' | '\t'))
                .collect::<String>()
                .to_ascii_lowercase();
            prop_assert_eq!(cleaned, id.to_string().replace('-', ""), "{:?}", s);
        }
        let id = NodeId(key);
        let printed = reformat(&id.to_string(), upper, sep);
        let expected = match id.verifying_key() {
            Ok(_) => Ok(id),
            Err(_) => Err(ParseNodeIdError::NotAKey),
        };
        prop_assert_eq!(printed.parse::<NodeId>(), expected, "{:?}", printed);
    }

    /// `MessageId::from_str`.
    #[test]
    fn message_id_parse(
        s in prop_oneof![
            random_text(),
            "[ \t\n]{0,2}[0-9a-fA-F]{30,34}[ \t\n]{0,2}",
            "[0-9a-fA-Fg-zé ]{32}",
        ]
    ) {
        if let Some(id) = parses_back::<MessageId>(&s)? {
            prop_assert_eq!(id.to_string(), s.trim().to_ascii_lowercase());
        }
    }

    /// Every `FromStr` of the message model on the same strings.
    #[test]
    fn message_value_parse(s in value_string()) {
        if let Some(t) = parses_back::<RequestType>(&s)? {
            prop_assert_eq!(t.validate(), Ok(()), "{:?}", s);
        }
        if let Some(b) = parses_back::<LegalBasis>(&s)? {
            prop_assert_eq!(b.validate(), Ok(()), "{:?}", s);
        }
        parses_back::<IccsCode>(&s)?;
        parses_back::<Date>(&s)?;
        parses_back::<Language>(&s)?;
        parses_back::<Urgency>(&s)?;
        parses_back::<MessageKind>(&s)?;
    }
}
