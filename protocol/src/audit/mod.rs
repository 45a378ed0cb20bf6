//! The tamper-evident audit log: its math and its formats.
//!
//! * [`merkle`]: RFC 9162 Merkle tree hashing, inclusion and consistency
//!   proofs and their verification, the incremental [`Frontier`] the node
//!   appends with, and the in-memory [`MemoryTree`] verifiers use.
//! * [`entry`]: what one entry records ([`AuditEntry`]) and its leaf bytes.
//! * [`note`]: C2SP signed notes.
//! * [`checkpoint`]: C2SP checkpoints signed by the node, Ed25519
//!   `cosignature/v1` cosignatures by witnessing peers.
//! * [`bundle`]: the export an auditor verifies offline, and its verifier.
//! * [`proof_file`]: an inclusion proof for one message.
//! * [`custody`]: an attachment's chain of custody, from its entries.
//! * [`restoration`]: a restored node's signed statement of the entries
//!   its witnesses saw that the backup lost.
//! * [`switch`]: the entry by which a log moves to its node's new
//!   identity key.
//!
//! Storage is the node's business: it implements [`SubtreeHashes`] over
//! its store. The formats are specified in `docs/audit.md`.

pub mod bundle;
pub mod checkpoint;
pub mod custody;
pub mod entry;
pub mod merkle;
pub mod note;
pub mod predecessor;
pub mod proof_file;
pub mod restoration;
pub mod switch;

pub use bundle::{verify_bundle, BundleWriter, Finding, Report, VerifyOptions};
pub use checkpoint::{
    check_witness_update, cosign, open_checkpoint, origin_for, sign_checkpoint, verify_checkpoint,
    verify_cosignature, Checkpoint, CheckpointError, WitnessError,
};
pub use entry::{Actor, AuditEntry, AuditKind, EntryError};
pub use merkle::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root, subtree_hash,
    verify_consistency, verify_inclusion, Frontier, MemoryTree, ProofError, SubtreeHashes,
    TreeError,
};
pub use proof_file::{verify_inclusion_file, InclusionProofFile, ProofReport};
