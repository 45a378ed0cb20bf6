//! Node identities.
//!
//! A node is its Ed25519 identity key: the [`NodeId`] operators pin is that
//! public key. Encryption uses a separate X25519 key whose public half is
//! signed by the identity key ([`EncryptionKeyCert`]), so it can rotate
//! without re-pinning.

mod keyfile;
mod node_id;
mod signer;

use bincode::{Decode, Encode};
use std::sync::Arc;

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, Serializable};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::codec::{self, DecodeError, FrameType};
use crate::domain;
use crate::time::Timestamp;

pub use keyfile::{node_id_in_key_file, KeyFileError, MAX_KEY_FILE_BYTES};
pub use node_id::{NodeId, ParseNodeIdError};
use signer::IdentityKey;
pub use signer::{ExternalSigner, SignError};

/// The HPKE KEM of the envelope: DHKEM(X25519, HKDF-SHA256).
pub(crate) type Kem = X25519HkdfSha256;
pub(crate) type KemPrivateKey = <Kem as hpke::Kem>::PrivateKey;
pub(crate) type KemPublicKey = <Kem as hpke::Kem>::PublicKey;

/// Why a key or a signature over a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a valid Ed25519 public key")]
    BadIdentityKey,
    #[error("not a valid X25519 public key")]
    BadEncryptionKey,
    #[error("encryption key is signed by {found}, expected {expected}")]
    CertForOtherNode { expected: NodeId, found: NodeId },
    #[error("the identity key's signature over the encryption key does not verify")]
    BadCertSignature,
    #[error("cannot decode encryption-key certificate: {0}")]
    Decode(#[from] DecodeError),
}

/// The signed statement "node N encrypts to X25519 key K since T".
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct EncryptionKeyCert {
    pub node: NodeId,
    pub public_key: [u8; 32],
    pub created_at: Timestamp,
    pub signature: [u8; 64],
}

#[derive(Encode)]
struct EncryptionKeyCertSigned<'a> {
    node: &'a NodeId,
    public_key: &'a [u8; 32],
    created_at: Timestamp,
}

impl EncryptionKeyCert {
    const MAX_BYTES: usize = 1024;

    fn signed_bytes(&self) -> Vec<u8> {
        let body = EncryptionKeyCertSigned {
            node: &self.node,
            public_key: &self.public_key,
            created_at: self.created_at,
        };
        signing_input(domain::ENCRYPTION_KEY_SIGNATURE, &body)
    }

    /// Checks the signature and that the key can be encrypted to.
    pub fn verify(&self) -> Result<(), KeyError> {
        let vk = self.node.verifying_key()?;
        let sig = Signature::from_bytes(&self.signature);
        vk.verify_strict(&self.signed_bytes(), &sig)
            .map_err(|_| KeyError::BadCertSignature)?;
        usable_encryption_key(&self.public_key)?;
        Ok(())
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A fixed-size struct of arrays and integers always encodes.
        codec::encode_frame(FrameType::EncryptionKeyCert, self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        Ok(codec::decode_frame::<_, { Self::MAX_BYTES }>(
            FrameType::EncryptionKeyCert,
            bytes,
        )?)
    }
}

/// What a node knows about a pinned peer: its identity and a verified
/// encryption key. Constructing one verifies the certificate, so holding a
/// `PeerKeys` means the keys belong together.
#[derive(Clone, Debug)]
pub struct PeerKeys {
    id: NodeId,
    verifying: VerifyingKey,
    encryption: KemPublicKey,
    cert: EncryptionKeyCert,
}

impl PeerKeys {
    /// Accepts `cert` only if it is a valid certificate by the pinned `id`.
    pub fn new(id: NodeId, cert: EncryptionKeyCert) -> Result<Self, KeyError> {
        if cert.node != id {
            return Err(KeyError::CertForOtherNode {
                expected: id,
                found: cert.node,
            });
        }
        cert.verify()?;
        let verifying = id.verifying_key()?;
        let encryption = usable_encryption_key(&cert.public_key)?;
        Ok(PeerKeys {
            id,
            verifying,
            encryption,
            cert,
        })
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    pub fn cert(&self) -> &EncryptionKeyCert {
        &self.cert
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    pub(crate) fn encryption_key(&self) -> &KemPublicKey {
        &self.encryption
    }
}

/// A node's secret keys. Never printed: `Debug` shows only the node id.
pub struct Identity {
    key: IdentityKey,
    encryption: KemPrivateKey,
    encryption_seed: Zeroizing<[u8; 32]>,
    cert: EncryptionKeyCert,
    peer_keys: PeerKeys,
    /// Encryption keys superseded by a rotation and still opened (the
    /// grace period is the node's to enforce), newest first.
    previous: Vec<PreviousEncryptionKey>,
    /// This node's earlier identity keys, left by identity transitions:
    /// envelopes addressed to them (sealed before the peer moved its pin)
    /// are still this node's.
    earlier_ids: Vec<NodeId>,
}

/// An encryption key superseded by a rotation: envelopes sealed to it are
/// still opened until its holder drops it. Never printed.
#[derive(Clone)]
pub struct PreviousEncryptionKey {
    private: KemPrivateKey,
    seed: Zeroizing<[u8; 32]>,
    public_key: [u8; 32],
    created_at: Timestamp,
}

impl std::fmt::Debug for PreviousEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviousEncryptionKey")
            .field("public_key", &hex::encode(self.public_key))
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl PreviousEncryptionKey {
    /// The key `DeriveKeyPair(seed)` made at `created_at`.
    pub fn from_seed(seed: &[u8; 32], created_at: Timestamp) -> Self {
        let (private, public) = Kem::derive_keypair(seed);
        PreviousEncryptionKey {
            private,
            seed: Zeroizing::new(*seed),
            public_key: public.to_bytes().into(),
            created_at,
        }
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The secret seed, for the node's key store only.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Fresh keys from the operating system's random generator.
    pub fn generate(now: Timestamp) -> Self {
        Self::generate_from(&mut rand::rng(), now)
    }

    pub fn generate_from<R: RngCore + ?Sized>(rng: &mut R, now: Timestamp) -> Self {
        let mut id_seed = Zeroizing::new([0u8; 32]);
        let mut enc_seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut id_seed[..]);
        rng.fill_bytes(&mut enc_seed[..]);
        Self::from_seeds(&id_seed, &enc_seed, now)
    }

    /// Deterministic keys from two 32-byte seeds: the Ed25519 secret key, and
    /// the input keying material of HPKE's `DeriveKeyPair` for X25519.
    pub fn from_seeds(
        identity_seed: &[u8; 32],
        encryption_seed: &[u8; 32],
        created_at: Timestamp,
    ) -> Self {
        let key = IdentityKey::Seed(Arc::new(SigningKey::from_bytes(identity_seed)));
        match Self::certify(key, encryption_seed, created_at) {
            Ok(identity) => identity,
            // A seed in memory always signs.
            Err(_) => unreachable!("an in-memory Ed25519 key does not fail to sign"),
        }
    }

    /// An identity whose key is held by `signer` (a hardware token), with
    /// the encryption key made from `encryption_seed` at `created_at`. The
    /// certificate is the token's signature, checked under its public key
    /// (as every signature it makes is), so a token that signs wrongly is
    /// found now, not by peers.
    pub fn with_external_key(
        signer: Arc<dyn ExternalSigner>,
        encryption_seed: &[u8; 32],
        created_at: Timestamp,
    ) -> Result<Self, SignError> {
        Self::certify(IdentityKey::external(signer)?, encryption_seed, created_at)
    }

    fn certify(
        key: IdentityKey,
        encryption_seed: &[u8; 32],
        created_at: Timestamp,
    ) -> Result<Self, SignError> {
        let (encryption, enc_pub) = Kem::derive_keypair(encryption_seed);
        let node = key.node_id();
        let mut cert = EncryptionKeyCert {
            node,
            public_key: enc_pub.to_bytes().into(),
            created_at,
            signature: [0u8; 64],
        };
        cert.signature = key.sign(&cert.signed_bytes())?;
        let peer_keys = PeerKeys {
            id: node,
            verifying: key.verifying_key(),
            encryption: enc_pub,
            cert: cert.clone(),
        };
        Ok(Identity {
            key,
            encryption,
            encryption_seed: Zeroizing::new(*encryption_seed),
            cert,
            peer_keys,
            previous: Vec::new(),
            earlier_ids: Vec::new(),
        })
    }

    /// The same identity with a new encryption key made from `seed` at
    /// `created_at`, certified by the identity key; the current one joins
    /// the previous keys (still opened until dropped).
    pub fn with_new_encryption_key(
        &self,
        seed: &[u8; 32],
        created_at: Timestamp,
    ) -> Result<Identity, SignError> {
        let mut next = Self::certify(self.key.clone(), seed, created_at)?;
        next.previous.push(PreviousEncryptionKey::from_seed(
            &self.encryption_seed,
            self.cert.created_at,
        ));
        next.previous.extend(self.previous.iter().cloned());
        next.earlier_ids = self.earlier_ids.clone();
        Ok(next)
    }

    /// The same identity also opening envelopes sealed to `previous` (a
    /// key equal to the current one is ignored), newest first.
    pub fn with_previous_keys(mut self, previous: Vec<PreviousEncryptionKey>) -> Identity {
        let current = self.cert.public_key;
        self.previous
            .extend(previous.into_iter().filter(|p| p.public_key != current));
        self.previous
            .sort_by_key(|p| std::cmp::Reverse(p.created_at));
        self.previous.dedup_by_key(|p| p.public_key);
        self
    }

    /// The same identity without the previous keys `drop` selects.
    pub fn without_previous_keys(
        &self,
        mut drop: impl FnMut(&PreviousEncryptionKey) -> bool,
    ) -> Identity {
        Identity {
            key: self.key.clone(),
            encryption: self.encryption.clone(),
            encryption_seed: self.encryption_seed.clone(),
            cert: self.cert.clone(),
            peer_keys: self.peer_keys.clone(),
            previous: self.previous.iter().filter(|p| !drop(p)).cloned().collect(),
            earlier_ids: self.earlier_ids.clone(),
        }
    }

    /// `next`, a new identity key this one hands over to, taking along
    /// what is still this node's: this identity's id (and its earlier
    /// ones) as earlier ids, and its encryption keys as previous keys
    /// (opened until the node drops them), so that what peers sealed
    /// before they moved their pin is still opened.
    pub fn handed_over_to(&self, next: Identity) -> Identity {
        let mut previous = vec![PreviousEncryptionKey::from_seed(
            &self.encryption_seed,
            self.cert.created_at,
        )];
        previous.extend(self.previous.iter().cloned());
        let next = next.with_previous_keys(previous);
        let mut earlier = vec![self.id()];
        earlier.extend(self.earlier_ids.iter().copied());
        next.with_earlier_ids(earlier)
    }

    /// The same identity also answering to `ids`, earlier identity keys of
    /// this node (its own id is ignored).
    pub fn with_earlier_ids(mut self, ids: Vec<NodeId>) -> Identity {
        let me = self.id();
        for id in ids {
            if id != me && !self.earlier_ids.contains(&id) {
                self.earlier_ids.push(id);
            }
        }
        self
    }

    /// This node's earlier identity keys, newest first.
    pub fn earlier_ids(&self) -> &[NodeId] {
        &self.earlier_ids
    }

    /// Whether an envelope addressed to `id` is this node's: its id now or
    /// an earlier one.
    pub fn answers_to(&self, id: &NodeId) -> bool {
        *id == self.id() || self.earlier_ids.contains(id)
    }

    /// The encryption keys superseded and still opened, newest first.
    pub fn previous_keys(&self) -> &[PreviousEncryptionKey] {
        &self.previous
    }

    /// Each superseded key with when it was superseded: the creation time
    /// of the key that followed it (the next newer one, or the current).
    pub fn superseded_keys(&self) -> impl Iterator<Item = (&PreviousEncryptionKey, Timestamp)> {
        let mut successor = self.cert.created_at;
        self.previous.iter().map(move |p| {
            let at = successor;
            successor = p.created_at;
            (p, at)
        })
    }

    /// The current encryption key's secret seed, for the key file only.
    pub fn encryption_seed(&self) -> &[u8; 32] {
        &self.encryption_seed
    }

    pub fn id(&self) -> NodeId {
        self.peer_keys.id
    }

    /// What peers need to pin and encrypt to this node.
    pub fn public(&self) -> &PeerKeys {
        &self.peer_keys
    }

    pub fn encryption_cert(&self) -> &EncryptionKeyCert {
        &self.cert
    }

    /// Signs `domain ‖ message` (domain separation is the caller's choice of
    /// a constant from [`crate::domain`]).
    pub(crate) fn sign(&self, signing_input: &[u8]) -> Result<[u8; 64], SignError> {
        self.key.sign(signing_input)
    }

    /// The identity key as a signer of other protocols' inputs: the TLS
    /// handshake and the transport certificate (both domain-separated by
    /// their own formats).
    pub fn signer(&self) -> IdentitySigner {
        IdentitySigner(self.key.clone())
    }

    /// The secret key of the encryption key `public_key`: the current one
    /// or a previous one still held.
    pub(crate) fn decryption_key(&self, public_key: &[u8; 32]) -> Option<&KemPrivateKey> {
        if *public_key == self.cert.public_key {
            return Some(&self.encryption);
        }
        self.previous
            .iter()
            .find(|p| p.public_key == *public_key)
            .map(|p| &p.private)
    }

    /// The Ed25519 secret when it is in memory (a key file); `None` when
    /// it is on a token and cannot be had.
    pub fn ed25519_secret(&self) -> Option<Zeroizing<[u8; 32]>> {
        match &self.key {
            IdentityKey::Seed(k) => Some(Zeroizing::new(k.to_bytes())),
            IdentityKey::External(..) => None,
        }
    }

    /// Where the identity key is, for operators: "key file" or the token's
    /// description.
    pub fn key_location(&self) -> String {
        match &self.key {
            IdentityKey::Seed(_) => "key file".to_string(),
            IdentityKey::External(s, _) => s.describe(),
        }
    }
}

/// The identity key, for signing what other protocols define (TLS 1.3's
/// CertificateVerify, the transport's self-signed certificate). Cheap to
/// clone; never shows the key.
#[derive(Clone)]
pub struct IdentitySigner(IdentityKey);

impl IdentitySigner {
    pub fn node_id(&self) -> NodeId {
        self.0.node_id()
    }

    /// A pure Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        self.0.sign(message)
    }
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("IdentitySigner")
            .field(&self.node_id())
            .finish()
    }
}

/// Any 32 bytes decode as an X25519 key, but a low-order point gives an
/// all-zero shared secret, which HPKE refuses: a trial encapsulation (with
/// a fixed ephemeral key; nothing is sent) finds such keys when the
/// certificate is checked rather than at the first seal.
fn usable_encryption_key(bytes: &[u8; 32]) -> Result<KemPublicKey, KeyError> {
    let key = KemPublicKey::from_bytes(bytes).map_err(|_| KeyError::BadEncryptionKey)?;
    let mut fixed = FixedEphemeral;
    hpke::setup_sender::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, Kem, FixedEphemeral>(
        &hpke::OpModeS::Base,
        &key,
        b"",
        &mut fixed,
    )
    .map_err(|_| KeyError::BadEncryptionKey)?;
    Ok(key)
}

/// A constant "random" source, only for the trial encapsulation above.
struct FixedEphemeral;

impl hpke::rand_core::RngCore for FixedEphemeral {
    fn next_u32(&mut self) -> u32 {
        0x5a5a_5a5a
    }
    fn next_u64(&mut self) -> u64 {
        0x5a5a_5a5a_5a5a_5a5a
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(0x5a);
    }
}

impl hpke::rand_core::CryptoRng for FixedEphemeral {}

/// `domain ‖ encode(value)`: the bytes every Comity signature covers.
pub(crate) fn signing_input<T: Encode>(domain: &[u8], value: &T) -> Vec<u8> {
    let mut out = domain.to_vec();
    // Our signed structs are plain arrays, integers and byte strings:
    // encoding into a Vec cannot fail.
    let _ = codec::encode_into(value, &mut out);
    out
}

/// Verifies an Ed25519 signature strictly (no malleable or small-order keys).
pub(crate) fn verify_signature(
    key: &VerifyingKey,
    signing_input: &[u8],
    signature: &[u8; 64],
) -> bool {
    key.verify_strict(signing_input, &Signature::from_bytes(signature))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_verifies_and_binds_node() {
        let a = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(5));
        let b = Identity::from_seeds(&[3; 32], &[4; 32], Timestamp(5));
        assert!(a.encryption_cert().verify().is_ok());
        assert!(PeerKeys::new(a.id(), a.encryption_cert().clone()).is_ok());
        assert_eq!(
            PeerKeys::new(b.id(), a.encryption_cert().clone()).unwrap_err(),
            KeyError::CertForOtherNode {
                expected: b.id(),
                found: a.id()
            }
        );
        let mut forged = a.encryption_cert().clone();
        forged.public_key = b.encryption_cert().public_key;
        assert_eq!(forged.verify(), Err(KeyError::BadCertSignature));
    }

    #[test]
    fn low_order_encryption_key_is_refused_even_when_signed() {
        let a = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(5));
        let mut cert = a.encryption_cert().clone();
        cert.public_key = [0u8; 32];
        cert.signature = a.sign(&cert.signed_bytes()).unwrap();
        assert_eq!(cert.verify(), Err(KeyError::BadEncryptionKey));
        assert_eq!(
            PeerKeys::new(a.id(), cert).unwrap_err(),
            KeyError::BadEncryptionKey
        );
    }

    #[test]
    fn cert_bytes_round_trip() {
        let a = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(5));
        let bytes = a.encryption_cert().to_bytes();
        assert_eq!(
            &EncryptionKeyCert::from_bytes(&bytes).unwrap(),
            a.encryption_cert()
        );
    }

    #[test]
    fn debug_does_not_show_secrets() {
        let a = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(5));
        let s = format!("{a:?}");
        assert!(s.contains(&a.id().to_string()));
        assert!(!s.contains("0101"));
    }
}
