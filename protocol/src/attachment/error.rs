//! What can be wrong with an attachment's manifest or one of its chunks.

use crate::message::MessageKind;

/// Which rule an attachment name breaks (see [`super::check_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameRule {
    #[error("it is empty")]
    Empty,
    #[error("it is {len} bytes, at most {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("it contains a path separator (/ or \\)")]
    Separator,
    #[error("it is . or contains ..")]
    Dots,
    #[error("it contains a control character")]
    ControlCharacter,
    #[error("it contains an invisible or direction-changing character")]
    Invisible,
    #[error("it contains a character file systems forbid (< > : \" | ? *)")]
    Forbidden,
    #[error("it begins or ends with white space, or ends with a dot")]
    Edges,
    #[error("it is a reserved device name (CON, NUL, COM1, LPT1, ...)")]
    Reserved,
}

/// Which rule a media type breaks (see [`super::check_media_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaTypeRule {
    #[error("it is {len} bytes, at most {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("it has no '/' between type and subtype")]
    NoSlash,
    #[error("its type or subtype is empty")]
    EmptyPart,
    #[error("its type or subtype is longer than 127 characters")]
    PartTooLong,
    #[error(
        "it has a character other than lowercase letters, digits and !#$&-^_.+ \
         (parameters such as '; charset=' are not allowed)"
    )]
    BadCharacter,
}

/// A manifest (list) that is refused before any attachment data flows.
/// `index` is the attachment's position in the message, from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAttachment {
    #[error("a {kind} message carries no attachments")]
    NotOnKind { kind: MessageKind },
    #[error("{count} attachments, at most {max} allowed per message")]
    TooMany { count: usize, max: usize },
    #[error("attachment {index}: name {name:?} is refused: {rule}")]
    BadName {
        index: usize,
        /// The name as [`super::escaped`] prints it.
        name: String,
        rule: NameRule,
    },
    #[error("attachment {index}: the name {name:?} is already used by attachment {first}")]
    DuplicateName {
        index: usize,
        first: usize,
        name: String,
    },
    #[error("attachment {index}: media type {media_type:?} is refused: {rule}")]
    BadMediaType {
        index: usize,
        media_type: String,
        rule: MediaTypeRule,
    },
    #[error("attachment {index} is {size} bytes, above the limit of {max}")]
    TooLarge { index: usize, size: u64, max: u64 },
    #[error("the attachments total {total} bytes, above the limit of {max} per message")]
    TotalTooLarge { total: u64, max: u64 },
    #[error("attachment {index}: chunk size {found}, but {expected} is required for its size")]
    WrongChunkSize {
        index: usize,
        found: u32,
        expected: u32,
    },
    #[error("{manifests} manifests but {keys} content keys")]
    KeyCount { manifests: usize, keys: usize },
}

/// A chunk (or the chunk table) that is refused. Nothing refused changes the
/// state of a [`super::Sealer`] or [`super::Opener`]: the next chunk needed
/// stays the same, which is where the sender resumes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk {got} out of order: chunk {expected} is needed next")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("chunk {got} is after the last chunk ({count} chunks in all)")]
    AfterLast { count: u64, got: u64 },
    #[error("chunk {index} is {got} bytes, more than its {expected}: beyond the signed size")]
    BeyondSize {
        index: u64,
        expected: usize,
        got: usize,
    },
    #[error("chunk {index} is {got} bytes, fewer than its {expected}")]
    Short {
        index: u64,
        expected: usize,
        got: usize,
    },
    #[error(
        "chunk {index} fails its authentication tag: altered, out of place, \
         or from another attachment or message"
    )]
    BadTag { index: u64 },
    #[error("chunk {index} decrypts but its hash is not the signed tree's leaf")]
    HashMismatch { index: u64 },
    #[error("the whole file's SHA-256 is not the one in the signed manifest")]
    DigestMismatch,
    #[error("the stream ended after {next} of {count} chunks (truncated)")]
    Truncated { next: u64, count: u64 },
    #[error("the chunk table is {got} bytes; {expected} expected ({chunks} leaves of 32 bytes)")]
    TableLength {
        expected: usize,
        got: usize,
        chunks: u64,
    },
    #[error("the chunk table does not hash to the signed tree root")]
    TableRootMismatch,
    #[error("the chunk table is for another attachment")]
    TableForAnotherAttachment,
    #[error("resume point {next} is not a chunk of this attachment ({count} chunks)")]
    BadResumePoint { next: u64, count: u64 },
}

impl ChunkError {
    /// Chunk `index` must be exactly `expected` bytes long.
    pub(crate) fn check_len(index: u64, expected: usize, got: usize) -> Result<(), ChunkError> {
        match got.cmp(&expected) {
            std::cmp::Ordering::Greater => Err(ChunkError::BeyondSize {
                index,
                expected,
                got,
            }),
            std::cmp::Ordering::Less => Err(ChunkError::Short {
                index,
                expected,
                got,
            }),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }
}
