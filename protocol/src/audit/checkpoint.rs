//! Checkpoints (`c2sp.org/tlog-checkpoint`) signed by the log's node, and
//! witness cosignatures on them (`c2sp.org/tlog-cosignature`, Ed25519
//! `cosignature/v1`).
//!
//! A checkpoint is the node's signed claim "my log has `size` entries and
//! this root". Peers witness each other: before cosigning, a witness checks
//! the new checkpoint is consistent with the last one it cosigned
//! ([`check_witness_update`]), so the node cannot later show anyone a
//! different history without contradicting a witness's copy.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::merkle::{self, ProofError};
use super::note::{
    key_id, valid_key_name, Note, NoteError, NoteSignature, SIGNATURE_TYPE_COSIGNATURE_V1,
    SIGNATURE_TYPE_ED25519,
};
use crate::digest::Digest;
use crate::identity::{verify_signature, Identity, NodeId};

/// Origins and witness names are `comity.invalid/<node id>`.
///
/// C2SP recommends schema-less URLs as key names to avoid collisions. A
/// node is named by its key, not by a host, and has no URL: `.invalid` is
/// the TLD reserved never to resolve (RFC 2606), so the name cannot be
/// mistaken for, or collide with, a real endpoint.
pub const ORIGIN_PREFIX: &str = "comity.invalid/";

/// First line of the message an Ed25519 `cosignature/v1` signs.
pub const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

/// Largest cosignature timestamp allowed by tlog-cosignature.
pub const MAX_COSIGNATURE_TIMESTAMP: u64 = (1 << 63) - 1;

/// Longest origin line we sign or accept.
pub const MAX_ORIGIN_BYTES: usize = 256;

/// The log origin of `node` (also its name as a witness).
pub fn origin_for(node: &NodeId) -> String {
    format!("{ORIGIN_PREFIX}{node}")
}

/// The node whose origin (or witness name) this is, if it is one of ours.
pub fn node_for_origin(origin: &str) -> Option<NodeId> {
    let id = origin.strip_prefix(ORIGIN_PREFIX)?;
    let node: NodeId = id.parse().ok()?;
    // Only the canonical spelling names the node: one name, one key ID.
    (origin_for(&node) == origin).then_some(node)
}

/// A tree head: origin, size, root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Digest,
}

/// Why a checkpoint or cosignature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed note: {0}")]
    Note(#[from] NoteError),
    #[error(transparent)]
    Sign(#[from] crate::identity::SignError),
    #[error("checkpoint body has {found} lines, needs at least 3 (origin, size, root)")]
    TooFewLines { found: usize },
    #[error("checkpoint origin is empty, too long, or contains a space or '+'")]
    BadOrigin,
    #[error("checkpoint size {text:?} is not a decimal number without leading zeros")]
    BadSize { text: String },
    #[error("checkpoint root is not base64 of 32 bytes")]
    BadRoot,
    #[error("checkpoint has an empty extension line")]
    EmptyExtensionLine,
    #[error("checkpoint is for origin {found:?}, expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("cosignature is by key {found:?}, expected witness {expected:?}")]
    WrongWitnessName { expected: String, found: String },
    #[error("cosignature key ID {found:08x} is not witness {name:?}'s ({expected:08x})")]
    WrongKeyId {
        name: String,
        expected: u32,
        found: u32,
    },
    #[error("cosignature has {len} bytes after the key ID, expected 72 (timestamp, signature)")]
    BadCosignatureLength { len: usize },
    #[error("cosignature timestamp {timestamp} exceeds 2^63-1")]
    BadTimestamp { timestamp: u64 },
    #[error("the cosignature by {name:?} does not verify")]
    BadCosignature { name: String },
    #[error("the witness key is not a valid Ed25519 public key")]
    BadWitnessKey,
}

impl Checkpoint {
    /// The note text: origin, size, base64 root, each ending in a newline.
    /// We emit no extension lines.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root.0)
        )
    }

    /// Parses a checkpoint body (note text). Extension lines are allowed
    /// and ignored, as the spec requires.
    pub fn parse_body(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::MissingFinalNewline)?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(CheckpointError::TooFewLines { found: lines.len() });
        }
        let origin = lines[0];
        if !valid_origin(origin) {
            return Err(CheckpointError::BadOrigin);
        }
        let size = parse_size(lines[1]).ok_or_else(|| CheckpointError::BadSize {
            text: lines[1].chars().take(40).collect(),
        })?;
        if lines[2].len() != 44 {
            return Err(CheckpointError::BadRoot);
        }
        let root: [u8; 32] = BASE64
            .decode(lines[2])
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(CheckpointError::BadRoot)?;
        if lines[3..].iter().any(|l| l.is_empty()) {
            return Err(CheckpointError::EmptyExtensionLine);
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root: Digest(root),
        })
    }
}

fn valid_origin(origin: &str) -> bool {
    origin.len() <= MAX_ORIGIN_BYTES && valid_key_name(origin)
}

/// Decimal, no sign, no leading zeros (except "0" itself).
fn parse_size(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Signs `checkpoint` as a signed note with key name = origin, and returns
/// the full note text. The origin must be a valid key name (the node's is
/// [`origin_for`] its id).
pub fn sign_checkpoint(
    identity: &Identity,
    checkpoint: &Checkpoint,
) -> Result<String, CheckpointError> {
    if !valid_origin(&checkpoint.origin) {
        return Err(CheckpointError::BadOrigin);
    }
    let mut note = Note::new(checkpoint.body())?;
    note.sign_ed25519(identity, &checkpoint.origin)?;
    Ok(note.to_string())
}

/// Parses a signed checkpoint, checks it is for `origin` and signed by
/// `key` (other signatures are ignored), and returns it with its note (for
/// the cosignatures it may carry).
pub fn open_checkpoint(
    text: &str,
    origin: &str,
    key: &NodeId,
) -> Result<(Checkpoint, Note), CheckpointError> {
    let note = Note::parse(text)?;
    let checkpoint = Checkpoint::parse_body(note.text())?;
    if checkpoint.origin != origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.to_string(),
            found: checkpoint.origin,
        });
    }
    note.verify_ed25519(origin, key)?;
    Ok((checkpoint, note))
}

/// [`open_checkpoint`] when only the checkpoint is wanted.
pub fn verify_checkpoint(
    text: &str,
    origin: &str,
    key: &NodeId,
) -> Result<Checkpoint, CheckpointError> {
    open_checkpoint(text, origin, key).map(|(c, _)| c)
}

/// The message a `cosignature/v1` signs.
fn cosigned_message(timestamp: u64, checkpoint_body: &str) -> String {
    format!("{COSIGNATURE_HEADER}time {timestamp}\n{checkpoint_body}")
}

/// The key ID of `witness`'s Ed25519 cosignatures under `witness_name`.
pub fn cosignature_key_id(witness_name: &str, witness: &NodeId) -> u32 {
    key_id(
        witness_name,
        SIGNATURE_TYPE_COSIGNATURE_V1,
        witness.as_bytes(),
    )
}

/// A witness's cosignature on `checkpoint_body` (a checkpoint's note text),
/// as one signature line without its newline. The caller has checked the
/// checkpoint ([`check_witness_update`]) and persisted it before cosigning.
pub fn cosign(
    witness: &Identity,
    witness_name: &str,
    checkpoint_body: &str,
    timestamp_secs: u64,
) -> Result<String, CheckpointError> {
    if !valid_key_name(witness_name) {
        return Err(NoteError::InvalidKeyName {
            name: witness_name.to_string(),
        }
        .into());
    }
    if timestamp_secs > MAX_COSIGNATURE_TIMESTAMP {
        return Err(CheckpointError::BadTimestamp {
            timestamp: timestamp_secs,
        });
    }
    // Only ever cosign something that is a checkpoint body.
    Checkpoint::parse_body(checkpoint_body)?;
    let msg = cosigned_message(timestamp_secs, checkpoint_body);
    let mut signature = Vec::with_capacity(72);
    signature.extend_from_slice(&timestamp_secs.to_be_bytes());
    signature.extend_from_slice(&witness.sign(msg.as_bytes())?);
    let sig = NoteSignature {
        name: witness_name.to_string(),
        key_id: cosignature_key_id(witness_name, &witness.id()),
        signature,
    };
    Ok(sig.to_line())
}

/// Verifies a cosignature line by `witness` (key name `witness_name`) on
/// `checkpoint_body` and returns its timestamp (seconds since the epoch).
pub fn verify_cosignature(
    line: &str,
    witness_name: &str,
    witness: &NodeId,
    checkpoint_body: &str,
) -> Result<u64, CheckpointError> {
    let sig = NoteSignature::parse_line(line)?;
    verify_cosignature_sig(&sig, witness_name, witness, checkpoint_body)
}

/// A witness and its cosignature's timestamp, or why it does not verify.
pub type WitnessSignature = (NodeId, Result<u64, CheckpointError>);

/// The witnesses' signatures on a checkpoint note of `node`'s log: each
/// witness once (its first signature), with its cosignature's timestamp or
/// why it does not verify. The node's own signature is skipped; signatures
/// that name no witness (other key types, unknown names, the node itself
/// posing as a witness, a witness's repeats) are only counted.
pub fn cosigners(note: &Note, origin: &str, node: &NodeId) -> (Vec<WitnessSignature>, u64) {
    let own_key_id = key_id(origin, SIGNATURE_TYPE_ED25519, node.as_bytes());
    let mut out: Vec<WitnessSignature> = Vec::new();
    let mut ignored = 0;
    for sig in note.signatures() {
        if sig.name == origin && sig.key_id == own_key_id {
            continue;
        }
        let witness = node_for_origin(&sig.name)
            .filter(|w| sig.key_id == cosignature_key_id(&sig.name, w))
            .filter(|w| w != node && !out.iter().any(|(seen, _)| seen == w));
        match witness {
            Some(w) => out.push((w, verify_cosignature_sig(sig, &sig.name, &w, note.text()))),
            None => ignored += 1,
        }
    }
    (out, ignored)
}

/// [`verify_cosignature`] for an already parsed signature line.
pub fn verify_cosignature_sig(
    sig: &NoteSignature,
    witness_name: &str,
    witness: &NodeId,
    checkpoint_body: &str,
) -> Result<u64, CheckpointError> {
    if sig.name != witness_name {
        return Err(CheckpointError::WrongWitnessName {
            expected: witness_name.to_string(),
            found: sig.name.clone(),
        });
    }
    let expected = cosignature_key_id(witness_name, witness);
    if sig.key_id != expected {
        return Err(CheckpointError::WrongKeyId {
            name: witness_name.to_string(),
            expected,
            found: sig.key_id,
        });
    }
    let Ok(raw) = <&[u8; 72]>::try_from(sig.signature.as_slice()) else {
        return Err(CheckpointError::BadCosignatureLength {
            len: sig.signature.len(),
        });
    };
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&raw[..8]);
    let timestamp = u64::from_be_bytes(ts);
    if timestamp > MAX_COSIGNATURE_TIMESTAMP {
        return Err(CheckpointError::BadTimestamp { timestamp });
    }
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&raw[8..]);
    let vk = witness
        .verifying_key()
        .map_err(|_| CheckpointError::BadWitnessKey)?;
    let msg = cosigned_message(timestamp, checkpoint_body);
    if !verify_signature(&vk, msg.as_bytes(), &signature) {
        return Err(CheckpointError::BadCosignature {
            name: witness_name.to_string(),
        });
    }
    Ok(timestamp)
}

/// Why a witness refuses to cosign a checkpoint (tlog-witness semantics).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("checkpoint is for origin {found:?}, the witnessed log is {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("checkpoint size {new_size} is smaller than the size {old_size} already cosigned: the log shrank")]
    Shrank { old_size: u64, new_size: u64 },
    #[error("checkpoint at size {size} has a different root than the one already cosigned: the log forked")]
    Fork { size: u64 },
    #[error("consistency proof from size {old_size} to {new_size} does not verify: {error}")]
    Inconsistent {
        old_size: u64,
        new_size: u64,
        error: ProofError,
    },
}

/// The witness's check before cosigning: `new` (already signature-checked)
/// must extend `previous`, the last checkpoint this witness cosigned for
/// the same origin (None if it never did), as `proof` shows.
///
/// On success the witness persists `new` as its latest, then cosigns; on
/// failure it must not cosign, and [`WitnessError::Fork`] or
/// [`WitnessError::Inconsistent`] are evidence of misbehaviour worth an
/// audit entry.
pub fn check_witness_update(
    previous: Option<&Checkpoint>,
    new: &Checkpoint,
    proof: &[Digest],
) -> Result<(), WitnessError> {
    let Some(prev) = previous else {
        return Ok(());
    };
    if prev.origin != new.origin {
        return Err(WitnessError::WrongOrigin {
            expected: prev.origin.clone(),
            found: new.origin.clone(),
        });
    }
    if new.size < prev.size {
        return Err(WitnessError::Shrank {
            old_size: prev.size,
            new_size: new.size,
        });
    }
    if new.size == prev.size && new.root != prev.root {
        return Err(WitnessError::Fork { size: new.size });
    }
    merkle::verify_consistency(prev.size, new.size, &prev.root, &new.root, proof).map_err(|error| {
        WitnessError::Inconsistent {
            old_size: prev.size,
            new_size: new.size,
            error,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn body_parse_rules() {
        let c = Checkpoint {
            origin: "example.com/log".into(),
            size: 0,
            root: merkle::empty_root(),
        };
        assert_eq!(Checkpoint::parse_body(&c.body()).unwrap(), c);
        let root = BASE64.encode([1u8; 32]);
        for bad in [
            format!("o\n01\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n1 \n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
        ] {
            assert!(matches!(
                Checkpoint::parse_body(&bad),
                Err(CheckpointError::BadSize { .. })
            ));
        }
        assert!(Checkpoint::parse_body(&format!("o\n1\n{root}\next\n")).is_ok());
        assert_eq!(
            Checkpoint::parse_body(&format!("o\n1\n{root}\n\n")),
            Err(CheckpointError::EmptyExtensionLine)
        );
        assert_eq!(
            Checkpoint::parse_body("o\n1\nAAAA\n"),
            Err(CheckpointError::BadRoot)
        );
        assert_eq!(
            Checkpoint::parse_body(&format!("o p\n1\n{root}\n")),
            Err(CheckpointError::BadOrigin)
        );
    }

    #[test]
    fn origin_names_the_node() {
        let id = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0)).id();
        let o = origin_for(&id);
        assert_eq!(node_for_origin(&o), Some(id));
        assert_eq!(node_for_origin(&o.to_uppercase()), None);
        assert_eq!(node_for_origin("example.com/x"), None);
    }
}
