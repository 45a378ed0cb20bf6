//! C2SP signed notes (`c2sp.org/signed-note`): text followed by signature
//! lines, the envelope of checkpoints and cosignatures.
//!
//! Parsing is strict (a note either has exactly the standard form or is
//! refused with the reason) and bounded; it never panics.
//!
//! Note signatures sign the note text verbatim, without a Comity domain
//! string. They cannot be confused with Comity's other signatures: those
//! all sign inputs starting `comity/v1/…\0`, and a note contains no NUL.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::identity::{verify_signature, Identity, NodeId};

/// Longest note accepted (text and signatures).
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted; the spec requires at least 16.
pub const MAX_SIGNATURES: usize = 100;
/// Longest key name accepted.
pub const MAX_KEY_NAME_BYTES: usize = 256;
/// Longest decoded signature (key ID and signature) accepted; room for
/// post-quantum signatures of other logs' witnesses, which we ignore.
pub const MAX_SIGNATURE_BYTES: usize = 5 * 1024;

/// Signature type byte of plain Ed25519 note signatures.
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;
/// Signature type byte of timestamped Ed25519 cosignatures (tlog-cosignature).
pub const SIGNATURE_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// The start of every signature line: em dash, space.
pub const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// Why a text is not a well-formed signed note, or a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error(transparent)]
    Sign(#[from] crate::identity::SignError),
    #[error("note is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error(
        "note has a control character (U+{code:04X}) at byte {position}; only newlines are allowed"
    )]
    ControlCharacter { code: u32, position: usize },
    #[error("note does not end with a newline")]
    MissingFinalNewline,
    #[error("note has no blank line separating the text from the signatures")]
    NoSignatureBlock,
    #[error("note text is empty")]
    EmptyText,
    #[error("note has no signature lines")]
    NoSignatures,
    #[error("note has more than {max} signatures")]
    TooManySignatures { max: usize },
    #[error("signature line {line} does not start with an em dash and a space")]
    BadSignaturePrefix { line: usize },
    #[error("signature line {line} has no space between key name and signature")]
    MissingSignature { line: usize },
    #[error("signature line {line}: key name is empty, too long, or contains a space or '+'")]
    BadKeyName { line: usize },
    #[error("signature line {line}: signature is not canonical base64")]
    BadBase64 { line: usize },
    #[error("signature line {line}: signature has {len} bytes, expected 5 to {max}")]
    BadSignatureLength { line: usize, len: usize, max: usize },
    #[error("key name {name:?} is empty, too long, or contains a space or '+'")]
    InvalidKeyName { name: String },
    #[error("no signature by key {name:?} (key ID {key_id:08x}) on the note")]
    NoSignatureByKey { name: String, key_id: u32 },
    #[error("the signature by key {name:?} does not verify")]
    BadSignature { name: String },
    #[error("the key is not a valid Ed25519 public key")]
    BadKey,
}

/// One signature line: key name, key ID, signature bytes (after the key ID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Parses one signature line; a single trailing newline is allowed.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge {
                len: line.len(),
                max: MAX_NOTE_BYTES,
            });
        }
        check_no_controls(line)?;
        Self::parse_numbered(line, 1)
    }

    fn parse_numbered(line: &str, n: usize) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix(SIGNATURE_LINE_PREFIX)
            .ok_or(NoteError::BadSignaturePrefix { line: n })?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::MissingSignature { line: n })?;
        if !valid_key_name(name) {
            return Err(NoteError::BadKeyName { line: n });
        }
        // Reject before decoding anything implausibly long.
        if b64.len() > MAX_SIGNATURE_BYTES.div_ceil(3) * 4 {
            return Err(NoteError::BadSignatureLength {
                line: n,
                len: b64.len() / 4 * 3,
                max: MAX_SIGNATURE_BYTES,
            });
        }
        let raw = BASE64
            .decode(b64)
            .map_err(|_| NoteError::BadBase64 { line: n })?;
        if raw.len() < 5 || raw.len() > MAX_SIGNATURE_BYTES {
            return Err(NoteError::BadSignatureLength {
                line: n,
                len: raw.len(),
                max: MAX_SIGNATURE_BYTES,
            });
        }
        let key_id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        Ok(NoteSignature {
            name: name.to_string(),
            key_id,
            signature: raw[4..].to_vec(),
        })
    }

    /// The line, `— <name> <base64(key ID ‖ signature)>`, without newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.signature);
        format!(
            "{SIGNATURE_LINE_PREFIX}{} {}",
            self.name,
            BASE64.encode(raw)
        )
    }
}

/// Key names must be non-empty, bounded, without Unicode spaces or '+'.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_KEY_NAME_BYTES
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// `SHA-256(name ‖ "\n" ‖ type ‖ public key)[:4]`, big-endian.
pub fn key_id(name: &str, signature_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([signature_type]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn check_no_controls(s: &str) -> Result<(), NoteError> {
    match s
        .char_indices()
        .find(|&(_, c)| (c as u32) < 0x20 && c != '\n')
    {
        Some((position, c)) => Err(NoteError::ControlCharacter {
            code: c as u32,
            position,
        }),
        None => Ok(()),
    }
}

/// A signed note: its text (ending in a newline) and its signature lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// A note with `text` and no signatures yet.
    pub fn new(text: impl Into<String>) -> Result<Self, NoteError> {
        let text = text.into();
        check_text(&text)?;
        Ok(Note {
            text,
            signatures: Vec::new(),
        })
    }

    /// Parses a complete signed note.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        if s.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge {
                len: s.len(),
                max: MAX_NOTE_BYTES,
            });
        }
        check_no_controls(s)?;
        if !s.ends_with('\n') {
            return Err(NoteError::MissingFinalNewline);
        }
        // The text ends at the last blank line: signature lines are never
        // empty, so that is the last "\n\n".
        let split = s.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        check_text(text)?;
        if sigs.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let mut signatures = Vec::new();
        // `sigs` ends with '\n'; every line before it is one signature.
        for (i, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            signatures.push(NoteSignature::parse_numbered(line, i + 1)?);
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// The signed text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature line (e.g. a witness's cosignature).
    pub fn push_signature(&mut self, sig: NoteSignature) -> Result<(), NoteError> {
        if self.signatures.len() == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        if !valid_key_name(&sig.name) {
            return Err(NoteError::InvalidKeyName { name: sig.name });
        }
        self.signatures.push(sig);
        Ok(())
    }

    /// Signs the text with the node's identity key as key `name`. Crate
    /// private: the crate decides which texts a node key signs.
    pub(crate) fn sign_ed25519(
        &mut self,
        identity: &Identity,
        name: &str,
    ) -> Result<(), NoteError> {
        let sig = NoteSignature {
            name: name.to_string(),
            key_id: key_id(name, SIGNATURE_TYPE_ED25519, identity.id().as_bytes()),
            signature: identity.sign(self.text.as_bytes())?.to_vec(),
        };
        self.push_signature(sig)
    }

    /// Verifies the Ed25519 signature of key `name` with public key `key`.
    /// Signatures by other keys are ignored, as the spec requires; if the
    /// key signed more than once, every one of its signatures must verify.
    pub fn verify_ed25519(&self, name: &str, key: &NodeId) -> Result<(), NoteError> {
        let vk = key.verifying_key().map_err(|_| NoteError::BadKey)?;
        let id = key_id(name, SIGNATURE_TYPE_ED25519, key.as_bytes());
        let mut found = false;
        for s in self
            .signatures
            .iter()
            .filter(|s| s.name == name && s.key_id == id)
        {
            let sig: &[u8; 64] =
                s.signature
                    .as_slice()
                    .try_into()
                    .map_err(|_| NoteError::BadSignature {
                        name: name.to_string(),
                    })?;
            if !verify_signature(&vk, self.text.as_bytes(), sig) {
                return Err(NoteError::BadSignature {
                    name: name.to_string(),
                });
            }
            found = true;
        }
        if found {
            Ok(())
        } else {
            Err(NoteError::NoSignatureByKey {
                name: name.to_string(),
                key_id: id,
            })
        }
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge {
            len: text.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    check_no_controls(text)?;
    if text.is_empty() {
        return Err(NoteError::EmptyText);
    }
    if !text.ends_with('\n') {
        return Err(NoteError::MissingFinalNewline);
    }
    Ok(())
}

impl std::fmt::Display for Note {
    /// The full note: text, blank line, one line per signature.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for s in &self.signatures {
            f.write_str(&s.to_line())?;
            f.write_str("\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn sign_parse_verify() {
        let id = Identity::from_seeds(&[1; 32], &[2; 32], Timestamp(0));
        let mut n = Note::new("hello\nworld\n").unwrap();
        n.sign_ed25519(&id, "example.com/k").unwrap();
        let text = n.to_string();
        let back = Note::parse(&text).unwrap();
        assert_eq!(back, n);
        back.verify_ed25519("example.com/k", &id.id()).unwrap();
        assert!(matches!(
            back.verify_ed25519("example.com/other", &id.id()),
            Err(NoteError::NoSignatureByKey { .. })
        ));
    }

    /// golang.org/x/mod/sumdb/note's documented example: our signer
    /// reproduces the published note byte for byte.
    #[test]
    fn reproduces_go_reference_note() {
        let skey = BASE64
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        assert_eq!(skey[0], SIGNATURE_TYPE_ED25519);
        let seed: [u8; 32] = skey[1..].try_into().unwrap();
        let id = Identity::from_seeds(&seed, &[0; 32], Timestamp(0));
        let mut n = Note::new(
            "If you think cryptography is the answer to your problem,\n\
             then you don't know what your problem is.\n",
        )
        .unwrap();
        n.sign_ed25519(&id, "PeterNeumann").unwrap();
        assert_eq!(n.signatures()[0].key_id, 0xc74f20a3);
        assert_eq!(
            n.to_string(),
            "If you think cryptography is the answer to your problem,\n\
             then you don't know what your problem is.\n\
             \n\
             \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
    }

    #[test]
    fn refuses_malformed() {
        let sig = "\u{2014} k AAAAAAE=\n";
        assert!(Note::parse(&format!("a\n\n{sig}")).is_ok());
        assert_eq!(Note::parse("a\n\n"), Err(NoteError::NoSignatures));
        assert_eq!(
            Note::parse(&format!("a\n\n{}", sig.trim_end())),
            Err(NoteError::MissingFinalNewline)
        );
        assert_eq!(
            Note::parse(&format!("a\n{sig}")),
            Err(NoteError::NoSignatureBlock)
        );
        assert_eq!(
            Note::parse(&format!("a\r\n\n{sig}")),
            Err(NoteError::ControlCharacter {
                code: 0x0d,
                position: 1
            })
        );
        assert_eq!(
            Note::parse("a\n\n- k AAAAAAE=\n"),
            Err(NoteError::BadSignaturePrefix { line: 1 })
        );
        assert_eq!(
            Note::parse("a\n\n\u{2014} k+x AAAAAAE=\n"),
            Err(NoteError::BadKeyName { line: 1 })
        );
        assert_eq!(
            Note::parse("a\n\n\u{2014} k AAAAAA==\n"),
            Err(NoteError::BadSignatureLength {
                line: 1,
                len: 4,
                max: MAX_SIGNATURE_BYTES
            })
        );
        assert_eq!(
            Note::parse("a\n\n\u{2014} k AAAAAAF=\n"),
            Err(NoteError::BadBase64 { line: 1 })
        );
        // The text ends at the *last* blank line.
        let n = Note::parse(&format!("a\n\n{sig}\n{sig}")).unwrap();
        assert_eq!(n.text(), format!("a\n\n{sig}"));
        assert_eq!(
            Note::parse(&format!("a\n\n{sig}x\n")),
            Err(NoteError::BadSignaturePrefix { line: 2 })
        );
    }
}
