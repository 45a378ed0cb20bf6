//! Maxima for every text field, in bytes of UTF-8.
//!
//! They bound what an untrusted peer can make us store and show, and they are
//! part of the protocol: both sides enforce the same numbers in
//! [`Body::validate`](super::Body::validate).

/// Subject line of any message.
pub const MAX_SUBJECT_BYTES: usize = 512;
/// A case reference (either side's) or a registration reference.
pub const MAX_REFERENCE_BYTES: usize = 128;
/// A status note, refusal grounds, details of additional information
/// needed, or a postponement reason.
pub const MAX_NOTE_BYTES: usize = 8 * 1024;
/// One use restriction on spontaneous information.
pub const MAX_RESTRICTION_BYTES: usize = 1024;
/// Number of use restrictions on one piece of spontaneous information.
pub const MAX_RESTRICTIONS: usize = 32;
/// Free-text description of an offence.
pub const MAX_OFFENCE_DESCRIPTION_BYTES: usize = 1024;
/// The text of `other:TEXT` and `treaty:NAME` values.
pub const MAX_NAME_BYTES: usize = 256;
/// A language tag (the BCP 47 recommended minimum buffer).
pub const MAX_LANGUAGE_BYTES: usize = 35;
/// The body of a request, spontaneous information, reply or consultation.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
