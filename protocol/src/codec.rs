//! The one place where values become bytes and bytes become values.
//!
//! Everything on the wire is bincode 2 with a fixed configuration:
//! little-endian, fixed-width integers (`u64` lengths), no variable-length
//! integers. Keeping the codec behind this module means it can be swapped
//! without touching the rest of the crate.
//!
//! Guarantees of every decode here, whatever the input:
//! * it never panics;
//! * it never allocates more than its limit: a length field is checked
//!   against the limit before anything is reserved for it;
//! * it rejects trailing bytes, so one value has exactly one encoding on the
//!   wire.

use bincode::config::{self, Configuration, Fixint, LittleEndian, NoLimit};
use bincode::{Decode, Encode};

/// First four bytes of every Comity frame.
pub const MAGIC: [u8; 4] = *b"CMTY";
/// The wire-format version this crate speaks.
pub const VERSION: u8 = 1;
/// Magic, version, frame type.
pub const FRAME_HEADER_LEN: usize = 6;

/// Hard ceiling on any single decoded value (16 MiB). Configured limits
/// (e.g. a node's maximum message size) may only be lower.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// What a framed byte string contains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    Envelope = 1,
    Receipt = 2,
    EncryptionKeyCert = 3,
    Session = 4,
    OriginProof = 5,
    /// One audit-log entry: the exact bytes of a Merkle leaf.
    AuditEntry = 6,
    /// An identity transition signed by the old and the new key.
    IdentityTransition = 7,
}

impl FrameType {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(FrameType::Envelope),
            2 => Some(FrameType::Receipt),
            3 => Some(FrameType::EncryptionKeyCert),
            4 => Some(FrameType::Session),
            5 => Some(FrameType::OriginProof),
            6 => Some(FrameType::AuditEntry),
            7 => Some(FrameType::IdentityTransition),
            _ => None,
        }
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("input ends too early (truncated)")]
    Truncated,
    #[error("{extra} unexpected bytes after the end of the value")]
    TrailingBytes { extra: usize },
    #[error("a length field claims more than the limit of {max} bytes")]
    LengthExceedsLimit { max: usize },
    #[error("not a Comity frame (bad magic)")]
    BadMagic,
    #[error("unsupported wire-format version {found} (this node speaks {VERSION})")]
    UnsupportedVersion { found: u8 },
    #[error("unknown frame type {found}")]
    UnknownFrameType { found: u8 },
    #[error("expected a {expected:?} frame, found {found:?}")]
    WrongFrameType {
        expected: FrameType,
        found: FrameType,
    },
    #[error("malformed value: {0}")]
    Malformed(String),
}

/// Encoding into memory cannot fail for the types of this crate; the error
/// exists only so that no code path has to panic if that ever changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode value: {0}")]
pub struct EncodeError(String);

impl EncodeError {
    pub fn new(why: &str) -> Self {
        EncodeError(why.to_string())
    }
}

fn encode_config() -> Configuration<LittleEndian, Fixint, NoLimit> {
    config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
}

/// Encodes one value (no frame header).
pub fn encode<T: Encode>(value: &T) -> Result<Vec<u8>, EncodeError> {
    bincode::encode_to_vec(value, encode_config()).map_err(|e| EncodeError(e.to_string()))
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Encode>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    bincode::encode_into_std_write(value, out, encode_config())
        .map(|_| ())
        .map_err(|e| EncodeError(e.to_string()))
}

/// Decodes exactly one value from `bytes`, allocating at most `LIMIT` bytes.
pub fn decode<T: Decode<()>, const LIMIT: usize>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > LIMIT {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: LIMIT,
        });
    }
    let cfg = encode_config().with_limit::<LIMIT>();
    let (value, used) = bincode::decode_from_slice(bytes, cfg).map_err(|e| map_error(e, LIMIT))?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Decodes one value from the start of `bytes`, allocating at most `LIMIT`
/// bytes, and returns it with the number of bytes it used. For layouts
/// where a value is followed by an optional part (the sealed plaintext).
pub fn decode_prefix<T: Decode<()>, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), DecodeError> {
    if bytes.len() > LIMIT {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: LIMIT,
        });
    }
    let cfg = encode_config().with_limit::<LIMIT>();
    bincode::decode_from_slice(bytes, cfg).map_err(|e| map_error(e, LIMIT))
}

/// Encodes `value` behind a frame header: `MAGIC ‖ VERSION ‖ frame type`.
pub fn encode_frame<T: Encode>(ty: FrameType, value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(ty as u8);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Checks a frame header and returns the payload after it.
pub fn frame_payload(expected: FrameType, bytes: &[u8]) -> Result<&[u8], DecodeError> {
    if bytes.len() < FRAME_HEADER_LEN {
        return if MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
            Err(DecodeError::Truncated)
        } else {
            Err(DecodeError::BadMagic)
        };
    }
    if bytes[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if bytes[4] != VERSION {
        return Err(DecodeError::UnsupportedVersion { found: bytes[4] });
    }
    let found =
        FrameType::from_u8(bytes[5]).ok_or(DecodeError::UnknownFrameType { found: bytes[5] })?;
    if found != expected {
        return Err(DecodeError::WrongFrameType { expected, found });
    }
    Ok(&bytes[FRAME_HEADER_LEN..])
}

/// Decodes a framed value of type `expected`, allocating at most `LIMIT` bytes.
pub fn decode_frame<T: Decode<()>, const LIMIT: usize>(
    expected: FrameType,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    if bytes.len() > LIMIT {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: LIMIT,
        });
    }
    decode::<T, LIMIT>(frame_payload(expected, bytes)?)
}

fn map_error(e: bincode::error::DecodeError, limit: usize) -> DecodeError {
    use bincode::error::DecodeError as B;
    match e {
        B::UnexpectedEnd { .. } => DecodeError::Truncated,
        B::LimitExceeded => DecodeError::LengthExceedsLimit { max: limit },
        other => DecodeError::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Encode, Decode)]
    struct Sample {
        a: u32,
        b: Vec<u8>,
        c: String,
    }

    fn sample() -> Sample {
        Sample {
            a: 7,
            b: vec![1, 2, 3],
            c: "héllo".into(),
        }
    }

    #[test]
    fn round_trip_framed() {
        let bytes = encode_frame(FrameType::Receipt, &sample()).unwrap();
        assert_eq!(&bytes[..6], b"CMTY\x01\x02");
        let back: Sample = decode_frame::<_, 1024>(FrameType::Receipt, &bytes).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn fixed_int_little_endian_layout() {
        let bytes = encode(&sample()).unwrap();
        // u32 a, then u64 length 3 and the bytes, then u64 length and UTF-8.
        assert_eq!(&bytes[..4], &7u32.to_le_bytes());
        assert_eq!(&bytes[4..12], &3u64.to_le_bytes());
        assert_eq!(&bytes[12..15], &[1, 2, 3]);
        assert_eq!(&bytes[15..23], &6u64.to_le_bytes());
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut bytes = encode(&sample()).unwrap();
        bytes.push(0);
        assert_eq!(
            decode::<Sample, 1024>(&bytes),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn rejects_truncation_at_every_length() {
        let bytes = encode_frame(FrameType::Receipt, &sample()).unwrap();
        for n in 0..bytes.len() {
            let r = decode_frame::<Sample, 1024>(FrameType::Receipt, &bytes[..n]);
            assert_eq!(r, Err(DecodeError::Truncated), "prefix of {n} bytes");
        }
    }

    #[test]
    fn huge_length_field_is_refused_without_allocating() {
        let mut bytes = encode(&sample()).unwrap();
        // Claim a 4 GiB vector.
        bytes[4..12].copy_from_slice(&(4u64 << 30).to_le_bytes());
        assert_eq!(
            decode::<Sample, 1024>(&bytes),
            Err(DecodeError::LengthExceedsLimit { max: 1024 })
        );
    }

    #[test]
    fn refuses_bad_headers() {
        let bytes = encode_frame(FrameType::Receipt, &sample()).unwrap();
        let mut b = bytes.clone();
        b[0] = b'X';
        assert_eq!(
            decode_frame::<Sample, 1024>(FrameType::Receipt, &b),
            Err(DecodeError::BadMagic)
        );
        let mut b = bytes.clone();
        b[4] = 9;
        assert_eq!(
            decode_frame::<Sample, 1024>(FrameType::Receipt, &b),
            Err(DecodeError::UnsupportedVersion { found: 9 })
        );
        assert_eq!(
            decode_frame::<Sample, 1024>(FrameType::Envelope, &bytes),
            Err(DecodeError::WrongFrameType {
                expected: FrameType::Envelope,
                found: FrameType::Receipt
            })
        );
        let mut b = bytes;
        b[5] = 200;
        assert_eq!(
            decode_frame::<Sample, 1024>(FrameType::Receipt, &b),
            Err(DecodeError::UnknownFrameType { found: 200 })
        );
    }

    #[test]
    fn oversize_input_is_refused_before_parsing() {
        let bytes = vec![0u8; 2048];
        assert_eq!(
            decode::<Sample, 1024>(&bytes),
            Err(DecodeError::TooLarge {
                len: 2048,
                max: 1024
            })
        );
    }
}
