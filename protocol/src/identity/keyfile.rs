//! The text form of a node's secret keys.
//!
//! Only the format lives here (this crate does no I/O); writing the file
//! with mode 0600 and refusing loose permissions is `comity-config`'s job.
//!
//! ```text
//! # Comity node secret keys. SECRET: keep this file mode 0600.
//! comity-secret-keys v1
//! node-id <printed node id>
//! identity-seed <base64 of the 32-byte Ed25519 secret key>
//! encryption-seed <base64 of the 32-byte X25519 DeriveKeyPair input>
//! encryption-created-at <milliseconds since the Unix epoch>
//! ```
//!
//! The encryption-key certificate is re-signed on load (Ed25519 is
//! deterministic), and `node-id` is checked against the identity seed so a
//! file pasted together from two nodes is refused.
//!
//! A node whose identity key is on a hardware token has no identity seed
//! to keep: its file holds the encryption key only, under its own header
//! so that neither kind is ever mistaken for the other.
//!
//! ```text
//! # Comity node encryption key (the identity key is on a token). SECRET: mode 0600.
//! comity-encryption-key v1
//! node-id <printed node id: the token's key>
//! encryption-seed <base64>
//! encryption-created-at <milliseconds since the Unix epoch>
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use std::sync::Arc;

use super::{ExternalSigner, Identity, IdentityKey, NodeId, SignError};
use crate::time::Timestamp;

const HEADER: &str = "comity-secret-keys v1";
const ENCRYPTION_ONLY_HEADER: &str = "comity-encryption-key v1";
/// A key file is a few hundred bytes; anything larger is not one.
pub const MAX_KEY_FILE_BYTES: usize = 4096;

/// Why a key file was refused. Never contains secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file is {len} bytes; a Comity key file is at most {MAX_KEY_FILE_BYTES}")]
    TooLarge { len: usize },
    #[error("not a Comity key file (first line must be {HEADER:?})")]
    BadHeader,
    #[error("line {line}: unknown field {field:?}")]
    UnknownField { line: usize, field: String },
    #[error("field {0:?} appears twice")]
    Duplicate(&'static str),
    #[error("field {0:?} is missing")]
    Missing(&'static str),
    #[error("line {line}: field {field:?} has an invalid value")]
    BadValue { line: usize, field: &'static str },
    #[error("the node-id line ({in_file}) does not match the identity key ({derived})")]
    NodeIdMismatch { in_file: NodeId, derived: NodeId },
    #[error("this file holds the encryption key of a node whose identity key is on a token; configure the token (identity_key = \"pkcs11:…\")")]
    IdentityKeyOnToken,
    #[error("this file holds an identity seed, but the identity key is configured on a token")]
    IdentityKeyInFile,
    #[error("the encryption-key certificate could not be signed: {0}")]
    Sign(#[from] SignError),
}

/// What a key file says, before any key is used.
struct Fields {
    encryption_only: bool,
    node_id: NodeId,
    identity_seed: Option<Zeroizing<[u8; 32]>>,
    encryption_seed: Zeroizing<[u8; 32]>,
    created: Timestamp,
}

impl Identity {
    /// The key file's text: both seeds, or only the encryption seed when
    /// the identity key is on a token. Zeroized when dropped.
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let enc_seed = Zeroizing::new(STANDARD.encode(&self.encryption_seed[..]));
        let signing = match &self.key {
            IdentityKey::Seed(k) => k,
            IdentityKey::External(..) => {
                return Zeroizing::new(format!(
                    "# Comity node encryption key (the identity key is on a token). SECRET: mode 0600.\n\
                     {ENCRYPTION_ONLY_HEADER}\n\
                     node-id {}\n\
                     encryption-seed {}\n\
                     encryption-created-at {}\n",
                    self.id(),
                    enc_seed.as_str(),
                    self.cert.created_at.as_millis()
                ))
            }
        };
        let id_seed = Zeroizing::new(STANDARD.encode(signing.to_bytes()));
        Zeroizing::new(format!(
            "# Comity node secret keys. SECRET: keep this file mode 0600.\n\
             {HEADER}\n\
             node-id {}\n\
             identity-seed {}\n\
             encryption-seed {}\n\
             encryption-created-at {}\n",
            self.id(),
            id_seed.as_str(),
            enc_seed.as_str(),
            self.cert.created_at.as_millis()
        ))
    }

    /// Parses a key file holding both seeds.
    pub fn from_key_file(text: &str) -> Result<Identity, KeyFileError> {
        let f = parse(text)?;
        let Some(id_seed) = f.identity_seed else {
            return Err(KeyFileError::IdentityKeyOnToken);
        };
        let identity = Identity::from_seeds(&id_seed, &f.encryption_seed, f.created);
        if identity.id() != f.node_id {
            return Err(KeyFileError::NodeIdMismatch {
                in_file: f.node_id,
                derived: identity.id(),
            });
        }
        Ok(identity)
    }

    /// Parses the encryption-key file of a node whose identity key `signer`
    /// holds; the file's node id must be the token key's.
    pub fn from_encryption_key_file(
        text: &str,
        signer: Arc<dyn ExternalSigner>,
    ) -> Result<Identity, KeyFileError> {
        let f = parse(text)?;
        if !f.encryption_only {
            return Err(KeyFileError::IdentityKeyInFile);
        }
        if signer.node_id() != f.node_id {
            return Err(KeyFileError::NodeIdMismatch {
                in_file: f.node_id,
                derived: signer.node_id(),
            });
        }
        Ok(Identity::with_external_key(
            signer,
            &f.encryption_seed,
            f.created,
        )?)
    }
}

/// The node id a key file of either kind names, without using a key.
pub fn node_id_in_key_file(text: &str) -> Result<NodeId, KeyFileError> {
    Ok(parse(text)?.node_id)
}

fn parse(text: &str) -> Result<Fields, KeyFileError> {
    {
        if text.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyFileError::TooLarge { len: text.len() });
        }
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let encryption_only = match lines.next() {
            Some((_, HEADER)) => false,
            Some((_, ENCRYPTION_ONLY_HEADER)) => true,
            _ => return Err(KeyFileError::BadHeader),
        };
        let mut node_id: Option<NodeId> = None;
        let mut id_seed: Option<Zeroizing<[u8; 32]>> = None;
        let mut enc_seed: Option<Zeroizing<[u8; 32]>> = None;
        let mut created: Option<Timestamp> = None;
        for (line, l) in lines {
            let (field, value) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let value = value.trim();
            match field {
                "node-id" => {
                    let v = value.parse().map_err(|_| KeyFileError::BadValue {
                        line,
                        field: "node-id",
                    })?;
                    set_once(&mut node_id, v, "node-id")?;
                }
                "identity-seed" => set_once(
                    &mut id_seed,
                    seed(value, line, "identity-seed")?,
                    "identity-seed",
                )?,
                "encryption-seed" => set_once(
                    &mut enc_seed,
                    seed(value, line, "encryption-seed")?,
                    "encryption-seed",
                )?,
                "encryption-created-at" => {
                    let v = value.parse().map_err(|_| KeyFileError::BadValue {
                        line,
                        field: "encryption-created-at",
                    })?;
                    set_once(&mut created, Timestamp(v), "encryption-created-at")?;
                }
                other => {
                    // Echo the name only if it looks like one: a damaged
                    // line may hold a secret.
                    let looks_like_a_name = other.len() <= 32
                        && other.chars().all(|c| c.is_ascii_lowercase() || c == '-');
                    return Err(KeyFileError::UnknownField {
                        line,
                        field: if looks_like_a_name {
                            other.to_string()
                        } else {
                            "(not shown)".to_string()
                        },
                    });
                }
            }
        }
        let node_id = node_id.ok_or(KeyFileError::Missing("node-id"))?;
        match (encryption_only, &id_seed) {
            (false, None) => return Err(KeyFileError::Missing("identity-seed")),
            // An identity seed in a token node's file is a mix-up.
            (true, Some(_)) => return Err(KeyFileError::Duplicate("identity-seed")),
            _ => {}
        }
        let encryption_seed = enc_seed.ok_or(KeyFileError::Missing("encryption-seed"))?;
        let created = created.ok_or(KeyFileError::Missing("encryption-created-at"))?;
        Ok(Fields {
            encryption_only,
            node_id,
            identity_seed: id_seed,
            encryption_seed,
            created,
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, v: T, field: &'static str) -> Result<(), KeyFileError> {
    if slot.is_some() {
        return Err(KeyFileError::Duplicate(field));
    }
    *slot = Some(v);
    Ok(())
}

fn seed(
    value: &str,
    line: usize,
    field: &'static str,
) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let bad = || KeyFileError::BadValue { line, field };
    let bytes = Zeroizing::new(STANDARD.decode(value).map_err(|_| bad())?);
    let mut out = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(bad());
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(1_700_000_000_000));
        let text = a.to_key_file();
        let b = Identity::from_key_file(&text).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.encryption_cert(), b.encryption_cert());
    }

    #[test]
    fn refuses_mixed_files_and_junk() {
        let a = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0));
        let b = Identity::from_seeds(&[3; 32], &[2; 32], Timestamp(0));
        let a_text = a.to_key_file();
        let b_text = b.to_key_file();
        let a_id_line = a_text.lines().find(|l| l.starts_with("node-id")).unwrap();
        let b_id_line = b_text.lines().find(|l| l.starts_with("node-id")).unwrap();
        let mixed = b_text.replace(b_id_line, a_id_line);
        assert!(matches!(
            Identity::from_key_file(&mixed),
            Err(KeyFileError::NodeIdMismatch { .. })
        ));
        assert_eq!(
            Identity::from_key_file("hello").unwrap_err(),
            KeyFileError::BadHeader
        );
        let dup = format!("{}identity-seed AAAA\n", a_text.as_str());
        assert!(Identity::from_key_file(&dup).is_err());
        let missing: String = a_text
            .lines()
            .filter(|l| !l.starts_with("encryption-seed"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            Identity::from_key_file(&missing).unwrap_err(),
            KeyFileError::Missing("encryption-seed")
        );
    }

    /// A key "elsewhere": a seed this test holds, signing on request.
    struct Elsewhere(ed25519_dalek::SigningKey);

    impl ExternalSigner for Elsewhere {
        fn node_id(&self) -> NodeId {
            NodeId(self.0.verifying_key().to_bytes())
        }
        fn sign(&self, input: &[u8]) -> Result<[u8; 64], SignError> {
            use ed25519_dalek::Signer as _;
            Ok(self.0.sign(input).to_bytes())
        }
        fn describe(&self) -> String {
            "a test signer".into()
        }
    }

    fn elsewhere(seed: u8) -> Arc<dyn ExternalSigner> {
        Arc::new(Elsewhere(ed25519_dalek::SigningKey::from_bytes(
            &[seed; 32],
        )))
    }

    #[test]
    fn a_token_nodes_file_holds_the_encryption_key_only() {
        let a = Identity::with_external_key(elsewhere(9), &[2; 32], Timestamp(7)).unwrap();
        let text = a.to_key_file();
        assert!(text.contains(ENCRYPTION_ONLY_HEADER));
        assert!(!text.contains("identity-seed"));
        let b = Identity::from_encryption_key_file(&text, elsewhere(9)).unwrap();
        assert_eq!(b.id(), a.id());
        assert_eq!(b.encryption_cert(), a.encryption_cert());
        assert_eq!(node_id_in_key_file(&text).unwrap(), a.id());
        assert!(b.ed25519_secret().is_none());
        // Neither kind is read as the other, nor with another node's key.
        assert_eq!(
            Identity::from_key_file(&text).unwrap_err(),
            KeyFileError::IdentityKeyOnToken
        );
        let seeds = Identity::from_seeds(&[9; 32], &[2; 32], Timestamp(7)).to_key_file();
        assert!(matches!(
            Identity::from_encryption_key_file(&seeds, elsewhere(9)),
            Err(KeyFileError::IdentityKeyInFile)
        ));
        assert!(matches!(
            Identity::from_encryption_key_file(&text, elsewhere(8)),
            Err(KeyFileError::NodeIdMismatch { .. })
        ));
        let with_seed = text.replace(
            "encryption-seed",
            "identity-seed CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\nencryption-seed",
        );
        assert_eq!(
            Identity::from_encryption_key_file(&with_seed, elsewhere(9)).unwrap_err(),
            KeyFileError::Duplicate("identity-seed")
        );
    }

    #[test]
    fn a_damaged_secret_line_is_not_echoed() {
        let a = Identity::from_seeds(&[9; 32], &[2; 32], Timestamp(0));
        let text = a.to_key_file().replace("identity-seed ", "identity-seed:");
        let err = Identity::from_key_file(&text).unwrap_err().to_string();
        assert!(!err.contains("CQkJ"), "{err}");
        assert!(err.contains("not shown"), "{err}");
    }

    #[test]
    fn errors_never_echo_secret_values() {
        let a = Identity::from_seeds(&[9; 32], &[2; 32], Timestamp(0));
        let text = a.to_key_file().replace("identity-seed ", "identity-seed !");
        let err = Identity::from_key_file(&text).unwrap_err().to_string();
        assert!(!err.contains("CQkJ"), "{err}");
    }
}
