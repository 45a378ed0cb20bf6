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

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::{Identity, NodeId};
use crate::time::Timestamp;

const HEADER: &str = "comity-secret-keys v1";
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
}

impl Identity {
    /// The key file's text. Zeroized when dropped.
    pub fn to_key_file(&self) -> Zeroizing<String> {
        let id_seed = Zeroizing::new(STANDARD.encode(self.signing.to_bytes()));
        let enc_seed = Zeroizing::new(STANDARD.encode(&self.encryption_seed[..]));
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

    /// Parses a key file's text.
    pub fn from_key_file(text: &str) -> Result<Identity, KeyFileError> {
        if text.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyFileError::TooLarge { len: text.len() });
        }
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(KeyFileError::BadHeader),
        }
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
        let id_seed = id_seed.ok_or(KeyFileError::Missing("identity-seed"))?;
        let enc_seed = enc_seed.ok_or(KeyFileError::Missing("encryption-seed"))?;
        let created = created.ok_or(KeyFileError::Missing("encryption-created-at"))?;
        let identity = Identity::from_seeds(&id_seed, &enc_seed, created);
        if identity.id() != node_id {
            return Err(KeyFileError::NodeIdMismatch {
                in_file: node_id,
                derived: identity.id(),
            });
        }
        Ok(identity)
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
